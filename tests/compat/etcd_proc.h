/* etcd_proc.h - a real etcd for the differential suites: found, started on free loopback
 * ports with its data in a given directory, and stopped by its pid. Alone, or as one member of
 * a cluster. */
#ifndef METASTORE_TESTS_ETCD_PROC_H
#define METASTORE_TESTS_ETCD_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* $ETCD_BIN if set (NULL when it is not executable), else /usr/bin/etcd, else NULL. */
const char *etcd_bin(void);
/* What a differential suite's main returns when there is no etcd to compare with: 77 (meson's
 * skip, never a pass) without one, a failure for an $ETCD_BIN that is not executable, and -1
 * when etcd is there. name prefixes the message. */
int etcd_missing(const char *name);
/* Start etcd with its data and log in dir; waits (bounded) until /health answers. *cport is
 * its client port. */
pid_t etcd_start(const char *etcd, const char *dir, int *cport);

/* One member of a cluster on 127.0.0.1, as its flags say it: --name, the client port
 * (--listen-client-urls and --advertise-client-urls), the peer port (--listen-peer-urls and
 * --initial-advertise-peer-urls), --initial-cluster ("name=peer URL,..."),
 * --initial-cluster-state ("new" or "existing") and --initial-cluster-token (NULL: etcd's
 * default). All strings are borrowed for the call only. */
struct etcd_member {
    const char *name;
    int client_port;
    int peer_port;
    const char *initial_cluster;
    const char *state;
    const char *token;
};
/* Start that member with its data in dir/etcd and its log in dir/etcd.log, without waiting:
 * the members of a new cluster answer /health only once enough of them run to elect a leader.
 * Returns its pid. */
pid_t etcd_member_launch(const char *etcd, const char *dir, const struct etcd_member *m);
/* Wait until the server on port (etcd or metastore) answers GET /health with 200: true; false
 * when process pid exits first or timeout_ms pass. */
bool etcd_wait_healthy(pid_t pid, int port, int timeout_ms);
/* Wait up to timeout_ms for process pid to exit, reaping it: true with its wait status in
 * *status, false if it still runs. */
bool etcd_wait_exit(pid_t pid, int timeout_ms, int *status);
/* SIGTERM, reap within 20 s, else SIGKILL and reap. Returns the wait status. */
int etcd_stop(pid_t pid);

#endif
