/* etcd_proc.h - a real etcd for the differential suites: found, started on free loopback
 * ports with its data in a given directory, and stopped by its pid. */
#ifndef METASTORE_TESTS_ETCD_PROC_H
#define METASTORE_TESTS_ETCD_PROC_H

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
/* SIGTERM and reap. */
void etcd_stop(pid_t pid);

#endif
