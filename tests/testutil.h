/* testutil.h - helpers shared by the test suites (never linked into the server). */
#ifndef METASTORE_TESTUTIL_H
#define METASTORE_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Run one suite with Check's runner; returns the process exit code. */
int tu_run_suite(Suite *s);

/* The number in a JSON answer's "field":"N" (etcd's int64 fields are strings), or absent when
 * the field is not there (etcd leaves out zero values). */
long tu_json_num(const char *json, const char *field, long absent);
/* The string value of "field":"..." (the first one) into out: true if there is one, closed, that
 * fits in cap bytes with its NUL; else false and out is "". json may be NULL. */
bool tu_json_str(const char *json, const char *field, char *out, size_t cap);

/* CLOCK_MONOTONIC in milliseconds, and a sleep of ms milliseconds. */
int64_t tu_now_ms(void);
void tu_sleep_ms(int ms);

/* A fresh temporary directory under $TMPDIR (or /tmp); caller frees the string and may
 * remove the tree with tu_rmtree. */
char *tu_mkdtemp(const char *prefix);
void tu_rmtree(const char *path);

/* Certificates for TLS tests, made with the openssl command in dir (bounded; fails the test if
 * openssl fails): ca.crt/ca.key (CN test-ca); server.crt/.key (CN server, for IP 127.0.0.1 and
 * localhost, server and client use: members use it too); alice, root and intruder .crt/.key
 * (client certificates with those CNs, from ca; intruder's is also for 127.0.0.1);
 * expired.crt/.key (CN alice, from ca, valid in January 2020 only); other-ca.crt and
 * other.crt/.key (CN alice, from another CA). */
void tu_make_certs(const char *dir);

/* Standard base64 (with padding) of the C string s into out (room for 4/3 + 4). */
void tu_b64(const char *s, char *out);
/* The decimal text of this server's member ID (from /v3/cluster/member/list) into out. */
void tu_member_id(int port, char *out, size_t cap);

/* How many file descriptors process pid (0: this process) has open, from /proc. */
int tu_open_fds(int pid);
/* The resident set of process pid in KiB (VmRSS), -1 if unknown. */
long tu_rss_kb(int pid);
/* Its anonymous part (RssAnon): what the process allocated, without mapped files' pages. */
long tu_rss_anon_kb(int pid);

/* Compare a byte string with a C string. */
int tu_bytes_eq(const uint8_t *p, size_t n, const char *s);

/* pre, then open n times, inner, close n times, post: deeply nested JSON (caller frees). */
char *tu_nested(const char *pre, size_t n, const char *open, const char *inner, const char *close,
                const char *post);

#endif

/* ---- integration harness: the real server binary over loopback HTTP ---- */

struct tu_server {
    int pid;
    int port;
    char *dir; /* data directory (removed by tu_server_stop unless keep_dir) */
    char log[4096];
};

/* Pick a free port and make a fresh directory (the data dir is <dir>/data) without starting
 * anything: for tests that prepare the data dir first, then call tu_server_restart. */
void tu_server_init(struct tu_server *s);
/* Start $METASTORE_BIN on a free 127.0.0.1 port with a fresh data dir, plus extra flags
 * (NULL-terminated, may be NULL). Waits (bounded) until /health answers. */
void tu_server_start(struct tu_server *s, const char *const *extra);
/* The same with, under ASan, a small quarantine, so that the server's resident memory follows
 * what it really holds (freed buffers would otherwise stay resident): for memory bounds. */
void tu_server_start_lean(struct tu_server *s, const char *const *extra);
/* Start the binary as tu_server_start does (s from tu_server_init) without waiting for it;
 * tu_server_wait_healthy then waits (bounded) until /health answers 200. For the members of a
 * cluster, which are healthy only once a leader is elected. */
void tu_server_launch(struct tu_server *s, const char *const *extra);
/* The same with one more environment variable for the server ("NAME=value", or NULL), this
 * process's environment left alone (other threads may be reading it). */
void tu_server_launch_env(struct tu_server *s, const char *const *extra, const char *env);
void tu_server_wait_healthy(struct tu_server *s);
/* The same without failing the test, tries rounds of about 10 ms: 1 once /health answers 200,
 * 0 when the tries are spent, -1 if the process exited (its wait status in *status, pid 0). */
int tu_server_wait_up(struct tu_server *s, int tries, int *status);
/* Start again on the same port and data dir (restart after stop/kill). */
void tu_server_restart(struct tu_server *s, const char *const *extra);
/* SIGTERM, wait (bounded), and check the exit status is 0 (ASan/LSan make it non-zero on
 * leaks and errors). Keeps the directory when keep_dir. */
void tu_server_stop_keep(struct tu_server *s, int keep_dir);
void tu_server_stop(struct tu_server *s);
/* SIGKILL and reap. */
void tu_server_kill(struct tu_server *s);

struct tu_resp {
    int status;
    char *headers; /* raw header block, NUL-terminated */
    char *body;    /* NUL-terminated (chunked bodies are joined) */
    size_t body_len;
    bool refused; /* no connection (status -1): the request was never sent */
};

/* One request on a fresh connection (Connection: close). body may be NULL. */
void tu_http(int port, const char *method, const char *path, const char *body, struct tu_resp *out);
/* The value of the unlabelled metric name in /metrics (the test fails without it). */
long tu_metric(int port, const char *name);
/* The same with extra header lines (each ending in "\r\n"; NULL for none). */
void tu_http_hdr(int port, const char *method, const char *path, const char *headers,
                 const char *body, struct tu_resp *out);
/* POST path with a JSON body; returns the body with header IDs normalised (see tu_norm).
 * The caller frees. */
char *tu_post(int port, const char *path, const char *body, int *status);
void tu_resp_free(struct tu_resp *r);
/* Replace "cluster_id":"N", "member_id":"N", "raft_term":"N" with fixed text so responses
 * compare literally: C, M and T. Returns a new string. */
char *tu_norm(const char *json);
/* Case-insensitive header lookup in a raw header block; returns a copy (static, one per thread,
 * until the thread's next call) or NULL. */
const char *tu_header(const struct tu_resp *r, const char *name);

/* Raw socket helpers for hostile-client tests. */
/* A loopback TCP port free at the time of the call. */
int tu_free_port(void);
int tu_connect(int port);
/* A connection whose receive buffer is rcvbuf bytes (set before connecting, so the TCP window
 * stays small): once the test stops reading, the server's output backs up at once. */
int tu_connect_rcvbuf(int port, int rcvbuf);
void tu_send_all(int fd, const char *data, size_t len);
/* Read until EOF or timeout_ms; returns bytes read into a malloc'd NUL-terminated buffer, their
 * count in *len unless len is NULL. */
char *tu_read_all(int fd, int timeout_ms, size_t *len);

/* Run $METASTORE_BIN with args (NULL-terminated) and envp (NULL: empty environment), bounded
 * by timeout_ms; returns the exit status (-1 on timeout) and the joined stdout+stderr in *out
 * (malloc'd). */
int tu_run(const char *const *args, char *const *envp, int timeout_ms, char **out);
/* The same for another program (bin: its path). */
int tu_run_bin(const char *bin, const char *const *args, char *const *envp, int timeout_ms,
               char **out);
/* The same for any program: argv[0] looked up in PATH, this process's environment. */
int tu_exec(const char *const *argv, int timeout_ms, char **out);

/* Fetch /v3/maintenance/snapshot from port into path (the backup file), checking the stream as
 * a client would: 32 KiB pieces, remaining_bytes counting down, no header, and a last message
 * holding the SHA-256 of everything before it. */
void tu_fetch_snapshot(int port, const char *path);

/* Send n POSTs to path over 32 keep-alive connections, pipelined (request i on connection
 * i % 32), and read the n answers. statuses[i] gets each status (may be NULL). Returns how
 * many answers were read. */
size_t tu_pipeline(int port, const char *path, char *const *bodies, size_t n, int *statuses);

/* The kernel's queues of the loopback TCP connection local_port -> remote_port (open or closing),
 * as /proc/net/tcp shows them: *tx bytes written on that socket and not yet acknowledged by the
 * peer (still to be delivered), *rx bytes received and not yet read. 0 if there is no such
 * connection, else 1. With tu_local_port (the local port of a connected socket, or -1) a test
 * sees what a server has sent on a connection that the client has not read. */
int tu_tcp_queues(int local_port, int remote_port, long *tx, long *rx);
int tu_local_port(int fd);
