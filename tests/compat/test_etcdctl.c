/* test_etcdctl.c - etcdctl 3.4 (Debian's etcd-client) over gRPC against a fresh etcd and a
 * fresh metastore: the same commands in the same order must print the same text and exit alike,
 * once cluster IDs, member IDs and raft terms are normalised. Skipped (77) without etcd or
 * etcdctl.
 *
 * The command list is the matrix for the services metastore serves over gRPC; each row
 * is one etcdctl invocation, with text for its standard input where it reads one (txn -i).
 * Lease IDs differ between servers: "$L" in an argument is the ID the last "lease grant" printed
 * on that server, and the ID (in hex and in decimal) reads "LEASE" in both outputs. "$D" is the
 * test's directory. Sizes, raft indexes and ports differ by nature and are normalised too.
 *
 * A watch runs until it is cancelled: its row names a put to make while it runs (then) and the
 * text that ends it (until, seen until_n times), after which etcdctl is stopped. Watches start
 * from a past revision, so what they print does not depend on when they were set up. Several
 * watches of one interactive etcdctl print from goroutines of their own: their lines are
 * compared sorted.
 *
 * lock and elect run as one scenario per server (etcdctl left running, stopped with SIGINT as a
 * user stops it): a lock around a command, a second lock waiting for the first, an election
 * with an observer, resign on SIGINT, the next leader. Their transcripts are compared with the
 * session IDs in keys normalised.
 */
#define _GNU_SOURCE
#include "etcd_proc.h"
#include "metastore/buf.h"
#include "testutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_MS 20000 /* one etcdctl run, dial and command timeouts included */

/* $ETCDCTL_BIN if set, else /usr/bin/etcdctl; NULL if not executable. */
static const char *etcdctl_bin(void)
{
    const char *e = getenv("ETCDCTL_BIN");
    if (!e)
        e = "/usr/bin/etcdctl";
    return access(e, X_OK) == 0 ? e : NULL;
}

struct cmd {
    const char *args[12]; /* after the global flags; NULL-terminated */
    const char *in;       /* standard input, or NULL */
    const char *then[6];  /* watch: a command to run once it started */
    const char *until;    /* watch: stop it once its output holds this until_n times */
    int until_n;
    bool sort; /* compare the output's lines sorted */
};

#define WATCH(...) .then = {__VA_ARGS__}

static const struct cmd CMDS[] = {
    {.args = {"put", "foo", "bar"}},
    {.args = {"put", "foo2", "baz", "--prev-kv"}},
    {.args = {"put", "foo2", "qux", "--prev-kv", "-w", "json"}},
    {.args = {"put", "fop", "1"}},
    {.args = {"get", "foo"}},
    {.args = {"get", "foo", "-w", "json"}},
    {.args = {"get", "foo", "-w", "fields"}},
    {.args = {"get", "foo", "-w", "table"}},
    {.args = {"get", "foo", "--hex"}},
    {.args = {"get", "--prefix", "foo"}},
    {.args = {"get", "--prefix", "fo", "--sort-by=MODIFY", "--order=DESCEND"}},
    {.args = {"get", "--prefix", "fo", "--sort-by=VALUE", "--order=ASCEND", "-w", "json"}},
    {.args = {"get", "--prefix", "fo", "--sort-by=VERSION"}},
    {.args = {"get", "--prefix", "fo", "--sort-by=CREATE", "--order=DESCEND", "--keys-only"}},
    {.args = {"get", "", "--from-key", "--keys-only"}},
    {.args = {"get", "foo", "--from-key", "--limit", "2", "-w", "json"}},
    {.args = {"get", "foo", "fop"}},
    {.args = {"get", "foo", "--rev", "2"}},
    {.args = {"get", "foo", "--rev", "99"}},
    {.args = {"get", "foo2", "--print-value-only"}},
    {.args = {"get", "--prefix", "foo", "--keys-only", "-w", "json"}},
    {.args = {"get", "foo", "--consistency=s"}},
    {.args = {"get", "nothing"}},
    {.args = {"get", "nothing", "-w", "json"}},
    {.args = {"put", "", "x"}},
    {.args = {"get", ""}},
    {.args = {"put", "leased", "v", "--lease", "1234"}},
    {.args = {"put", "foo", "--ignore-value"}},
    {.args = {"put", "foo", "newer"}},
    {.args = {"put", "nothing", "--ignore-value"}},
    {.args = {"del", "nothing"}},
    {.args = {"del", "--prev-kv", "foo"}},
    {.args = {"del", "--prefix", "foo", "-w", "json"}},
    {.args = {"del", "fop", "--prev-kv", "-w", "json"}},
    {.args = {"put", "a", "1"}},
    {.args = {"put", "b", "2"}},
    {.args = {"txn", "-i"},
     .in = "value(\"a\") = \"1\"\n\nput a 10\nget b\ndel nothing\n\nput b 20\n\n"},
    {.args = {"txn", "-i", "-w", "json"},
     .in = "value(\"a\") = \"1\"\n\nput a 11\n\nget a\nget b\n\n"},
    {.args = {"txn", "-i"},
     .in = "mod(\"b\") > \"0\"\nversion(\"a\") = \"2\"\n\nget a --prefix\n\n\n"},
    {.args = {"txn", "-i", "-w", "json"},
     .in = "create(\"zz\") = \"0\"\n\nput zz 1\nput zz 2\n\n\n"},
    {.args = {"txn", "-i", "-w", "fields"}, .in = "\n\nput c 3\n\n\n"},
    {.args = {"get", "", "--from-key", "-w", "json"}},
    /* watch: history from revision 1 (all of it until the compaction below), then the put */
    {.args = {"put", "w/a", "1"}},
    {.args = {"put", "w/b", "2"}},
    {.args = {"del", "w/a"}},
    {.args = {"watch", "w/a", "--rev", "1"},
     WATCH("put", "w/a", "end1"),
     .until = "end1",
     .until_n = 1},
    {.args = {"watch", "--prefix", "w/", "--rev", "1", "--prev-kv"},
     WATCH("put", "w/c", "end2"),
     .until = "end2",
     .until_n = 1},
    /* -w json and fields print each response: history only (a live event may join the
     * history's response or not, as the timing goes, on etcd as here) */
    {.args = {"watch", "w/a", "w/c", "--rev", "2", "-w", "json"},
     WATCH("get", "w/a"),
     .until = "ZW5kMQ==",
     .until_n = 1},
    {.args = {"watch", "", "--from-key", "--rev", "5", "-w", "fields"},
     WATCH("get", "w/a"),
     .until = "end2",
     .until_n = 1},
    /* several watches on one stream */
    {.args = {"watch", "-i"},
     .in = "watch w/c --rev 1\nwatch w/ --prefix --rev 1 --prev-kv\nwatch zzz\n",
     WATCH("put", "w/c", "end4"),
     .until = "end4",
     .until_n = 2,
     .sort = true},
    {.args = {"compaction", "3"}},
    {.args = {"compaction", "3"}},
    {.args = {"compaction", "99"}},
    {.args = {"get", "a", "--rev", "2"}},
    {.args = {"get", "a", "--rev", "3"}},
    {.args = {"compaction", "--physical", "4"}},
    /* a watch from before the compaction is cancelled by the server */
    {.args = {"watch", "a", "--rev", "1"}},
    {.args = {"watch", "--prefix", "", "--rev", "2", "-w", "json"}},
    {.args = {"get", "", "--from-key"}},
    /* leases */
    {.args = {"lease", "grant", "600"}},
    {.args = {"put", "lk1", "v", "--lease", "$L"}},
    {.args = {"get", "lk1", "-w", "json"}},
    {.args = {"lease", "timetolive", "$L"}},
    /* one key only: etcd lists a lease's keys in Go's map order (random) */
    {.args = {"lease", "timetolive", "$L", "--keys"}},
    {.args = {"lease", "timetolive", "$L", "--keys", "-w", "json"}},
    {.args = {"put", "lk2", "v", "--lease=$L", "-w", "json"}},
    {.args = {"lease", "list"}},
    {.args = {"lease", "list", "-w", "json"}},
    {.args = {"lease", "keep-alive", "--once", "$L"}},
    {.args = {"lease", "keep-alive", "--once", "$L", "-w", "json"}},
    {.args = {"lease", "revoke", "$L"}},
    {.args = {"get", "lk1"}},
    {.args = {"lease", "timetolive", "$L"}},
    {.args = {"lease", "revoke", "$L"}},
    {.args = {"lease", "keep-alive", "--once", "$L"}},
    {.args = {"lease", "list"}},
    {.args = {"lease", "grant", "0"}},
    {.args = {"lease", "grant", "10", "-w", "json"}},
    {.args = {"lease", "grant", "9999999999"}},
    {.args = {"put", "nolease", "v", "--lease", "abc"}},
    /* maintenance and cluster */
    {.args = {"endpoint", "status", "-w", "json"}},
    {.args = {"alarm", "list"}},
    {.args = {"alarm", "list", "-w", "json"}},
    {.args = {"alarm", "disarm"}},
    {.args = {"defrag"}},
    {.args = {"member", "list", "-w", "json"}},
    /* users, roles and auth (with auth on, every call needs a user; it ends disabled) */
    {.args = {"user", "add", "root", "--new-user-password=rootpw"}},
    {.args = {"user", "add", "alice", "--new-user-password=apw"}},
    {.args = {"user", "add", "alice", "--new-user-password=x"}},
    {.args = {"role", "add", "reader"}},
    {.args = {"role", "add", "reader"}},
    {.args = {"role", "grant-permission", "reader", "read", "foo"}},
    {.args = {"role", "grant-permission", "reader", "--prefix", "readwrite", "bar"}},
    {.args = {"role", "grant-permission", "reader", "write", "a", "c"}},
    {.args = {"user", "grant-role", "alice", "reader"}},
    {.args = {"user", "grant-role", "alice", "nothing"}},
    {.args = {"user", "get", "alice"}},
    {.args = {"user", "get", "alice", "-w", "json"}},
    {.args = {"user", "get", "nobody"}},
    {.args = {"user", "list"}},
    {.args = {"role", "get", "reader"}},
    {.args = {"role", "get", "reader", "-w", "json"}},
    {.args = {"role", "list"}},
    {.args = {"auth", "enable"}},
    {.args = {"get", "foo"}},
    {.args = {"--user", "alice:apw", "get", "foo"}},
    {.args = {"--user", "alice:apw", "put", "bar1", "x"}},
    {.args = {"--user", "alice:apw", "put", "foo", "x"}},
    {.args = {"--user", "alice:wrong", "get", "foo"}},
    {.args = {"--user", "alice:apw", "user", "list"}},
    {.args = {"--user", "root:rootpw", "role", "revoke-permission", "reader", "foo"}},
    {.args = {"--user", "root:rootpw", "role", "revoke-permission", "reader", "nothing"}},
    {.args = {"--user", "root:rootpw", "user", "passwd", "alice", "--interactive=false"},
     .in = "newpw\n"},
    {.args = {"--user", "alice:newpw", "get", "bar1"}},
    {.args = {"--user", "alice:newpw", "get", "foo"}},
    {.args = {"--user", "root:rootpw", "user", "revoke-role", "alice", "reader"}},
    {.args = {"--user", "root:rootpw", "auth", "disable"}},
    {.args = {"user", "delete", "alice"}},
    {.args = {"role", "delete", "reader"}},
    {.args = {"role", "delete", "reader"}},
    {.args = {"user", "list", "-w", "json"}},
    {.args = {"snapshot", "save", "$D/snap.db"}},
    {.args = {"get", "", "--from-key", "--keys-only"}},
};

struct server {
    int port;
    const char *dir;
    char lease_hex[24]; /* the last ID "lease grant" printed, "" before */
    char lease_dec[24];
};

static int run_ctl(const char *bin, struct server *sv, const struct cmd *c, char **out);

static size_t count(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/* A watch row: etcdctl runs until its output holds c->until c->until_n times (or RUN_MS),
 * c->then runs meanwhile; then it is stopped. *out as run_ctl's; returns 0 when it got there,
 * else its exit status (-1 if it had to be killed). */
static int run_watch(const char *bin, int pid_in, int out_fd, pid_t pid, struct server *sv,
                     const struct cmd *c, char **out)
{
    struct cmd then = {.in = NULL};
    for (int i = 0; i < 6 && c->then[i]; i++)
        then.args[i] = c->then[i];
    char *tout;
    int trc = run_ctl(bin, sv, &then, &tout);
    ck_assert_msg(trc == 0, "%s: %s", c->then[0], tout);
    free(tout);
    size_t len = 0, cap = 4096;
    char *b = malloc(cap);
    b[0] = 0;
    int64_t end = tu_now_ms() + RUN_MS;
    bool eof = false;
    while (!eof && count(b, c->until) < (size_t)c->until_n && tu_now_ms() < end) {
        struct pollfd pf = {.fd = out_fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        if (len + 4096 > cap)
            b = realloc(b, cap *= 2);
        ssize_t n = read(out_fd, b + len, cap - len - 1);
        if (n <= 0) {
            eof = true;
            break;
        }
        len += (size_t)n;
        b[len] = 0;
    }
    bool there = count(b, c->until) >= (size_t)c->until_n;
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    if (pid_in >= 0)
        close(pid_in);
    close(out_fd);
    *out = b;
    if (there)
        return 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Start etcdctl against sv with c's arguments ("$L", "$D" substituted); *in_fd and *out_fd
 * get its standard input and its joined standard output and error. Returns its pid. */
static pid_t spawn_ctl(const char *bin, struct server *sv, const struct cmd *c, int *in_fd,
                       int *out_fd)
{
    char subst[12][4400];
    char ep[64];
    snprintf(ep, sizeof(ep), "--endpoints=http://127.0.0.1:%d", sv->port);
    const char *argv[24] = {bin, ep, "--dial-timeout=5s", "--command-timeout=10s"};
    int n = 4;
    for (int i = 0; c->args[i]; i++) {
        const char *l = strstr(c->args[i], "$L");
        const char *d = strstr(c->args[i], "$D");
        if (l || d) {
            const char *at = l ? l : d;
            snprintf(subst[i], sizeof(subst[i]), "%.*s%s%s", (int)(at - c->args[i]), c->args[i],
                     l ? sv->lease_hex : sv->dir, at + 2);
            argv[n++] = subst[i];
        } else {
            argv[n++] = c->args[i];
        }
    }
    argv[n] = NULL;
    int in[2], o[2];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(o), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(o[1], 1);
        dup2(o[1], 2);
        close(in[1]);
        close(o[0]);
        char *env[] = {"ETCDCTL_API=3", "PATH=/usr/bin:/bin", NULL};
        execve(bin, (char *const *)argv, env);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    *in_fd = in[1];
    *out_fd = o[0];
    return pid;
}

/* Run etcdctl against endpoint port with args and input; *out gets stdout and stderr joined
 * (malloc'd). Returns the exit status, -1 if it had to be killed. */
static int run_ctl(const char *bin, struct server *sv, const struct cmd *c, char **out)
{
    int in, out_fd;
    pid_t pid = spawn_ctl(bin, sv, c, &in, &out_fd);
    /* The input is far below a pipe's buffer: written whole before the child reads. */
    if (c->in && write(in, c->in, strlen(c->in)) != (ssize_t)strlen(c->in))
        ck_abort_msg("cannot write etcdctl's input");
    if (c->until) /* an interactive watch ends at the end of its input: keep it open */
        return run_watch(bin, in, out_fd, pid, sv, c, out);
    close(in);
    int64_t end = tu_now_ms() + RUN_MS;
    *out = tu_read_all(out_fd, RUN_MS, NULL);
    close(out_fd);
    int status;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && tu_now_ms() < end)
        tu_sleep_ms(5);
    if (w != pid) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    /* the ID as printed (%016x: leading zeros included), and in decimal */
    const char *g = strstr(*out, "lease ");
    char hex[24];
    if (strcmp(c->args[0], "lease") == 0 && strcmp(c->args[1], "grant") == 0 && g &&
        sscanf(g, "lease %16[0-9a-f] granted", hex) == 1) {
        snprintf(sv->lease_hex, sizeof(sv->lease_hex), "%s", hex);
        snprintf(sv->lease_dec, sizeof(sv->lease_dec), "%llu", strtoull(hex, NULL, 16));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Replace the digits after each of the markers with a letter, the server's lease ID (hex or
 * decimal, as a whole word) with LEASE, drop clientv3's retry log lines (they carry a random
 * client ID and a time), so both servers' outputs compare. A lease's remaining TTL depends on
 * when the command ran, so it is a marker too. */
static char *norm(const char *s, const struct server *sv)
{
    static const char *const marks[] = {
        "\"cluster_id\":",  "\"member_id\":",  "\"raft_term\":", "\"ClusterID\" : ",
        "\"MemberID\" : ",  "\"RaftTerm\" : ", "cluster ",       "member ",
        "remaining(",       "\"ttl\":",        "\"ID\":",        "\"dbSize\":",
        "\"dbSizeInUse\":", "\"leader\":",     "\"raftIndex\":", "\"raftAppliedIndex\":",
        "127.0.0.1:",
    };
    size_t len = strlen(s);
    char *out = malloc(len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        const char *ids[] = {sv->lease_hex, sv->lease_dec};
        size_t idl = 0;
        for (int x = 0; x < 2 && !idl; x++) {
            size_t l = strlen(ids[x]);
            if (l && strncmp(s + i, ids[x], l) == 0 &&
                (i == 0 || !isalnum((unsigned char)s[i - 1])) && !isalnum((unsigned char)s[i + l]))
                idl = l;
        }
        if (idl) { /* LEASE is never longer than the ID: the output fits */
            memcpy(out + k, "LEASE", idl < 5 ? idl : 5);
            k += idl < 5 ? idl : 5;
            i += idl;
            continue;
        }
        if ((i == 0 || s[i - 1] == '\n') && strncmp(s + i, "{\"level\":", 9) == 0) {
            while (i < len && s[i] != '\n')
                i++;
            i += i < len;
            continue;
        }
        size_t m;
        for (m = 0; m < sizeof(marks) / sizeof(marks[0]); m++)
            if (strncmp(s + i, marks[m], strlen(marks[m])) == 0)
                break;
        if (m < sizeof(marks) / sizeof(marks[0])) {
            size_t ml = strlen(marks[m]);
            memcpy(out + k, s + i, ml);
            k += ml;
            i += ml;
            if (i < len && s[i] >= '0' && s[i] <= '9') {
                while (i < len && ((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                    i++;
                out[k++] = 'N';
            }
            continue;
        }
        out[k++] = s[i++];
    }
    out[k] = 0;
    return out;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* s with its lines sorted (in place). */
static void sort_lines(char *s)
{
    size_t n = count(s, "\n") + 1, k = 0;
    char **lines = calloc(n, sizeof(*lines));
    char *copy = strdup(s);
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        lines[k++] = l;
    qsort(lines, k, sizeof(*lines), cmp_line);
    s[0] = 0;
    for (size_t i = 0; i < k; i++) {
        strcat(s, lines[i]);
        strcat(s, "\n");
    }
    free(lines);
    free(copy);
}

START_TEST(etcdctl_kv_same_as_etcd)
{
    const char *etcd = etcd_bin(), *ctl = etcdctl_bin();
    ck_assert(etcd && ctl); /* main skips the suite without them */
    char *dir = tu_mkdtemp("ms-etcdctl-etcd");
    int cport;
    pid_t pid = etcd_start(etcd, dir, &cport);
    /* the same member layout as etcd_start's: name default, one peer URL on 127.0.0.1 */
    struct tu_server ms;
    char purl[64], ic[96];
    int pport = tu_free_port();
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", pport);
    snprintf(ic, sizeof(ic), "default=%s", purl);
    const char *extra[] = {"--name",
                           "default",
                           "--listen-peer-urls",
                           purl,
                           "--initial-advertise-peer-urls",
                           purl,
                           "--initial-cluster",
                           ic,
                           NULL};
    tu_server_start(&ms, extra);
    struct server se = {.port = cport, .dir = dir}, sm = {.port = ms.port, .dir = dir};
    int bad = 0;
    for (size_t i = 0; i < sizeof(CMDS) / sizeof(CMDS[0]); i++) {
        char *a, *b;
        int ra = run_ctl(ctl, &se, &CMDS[i], &a);
        int rb = run_ctl(ctl, &sm, &CMDS[i], &b);
        char *na = norm(a, &se), *nb = norm(b, &sm);
        if (CMDS[i].sort) {
            sort_lines(na);
            sort_lines(nb);
        }
        if (ra != rb || strcmp(na, nb) != 0) {
            bad++;
            fprintf(stderr, "etcdctl %s %s ...: etcd (exit %d):\n%s\nmetastore (exit %d):\n%s\n",
                    CMDS[i].args[0], CMDS[i].args[1] ? CMDS[i].args[1] : "", ra, a, rb, b);
        }
        free(na);
        free(nb);
        free(a);
        free(b);
    }
    /* The snapshot etcdctl saved from metastore (the second run of the command) restores with
     * metastore's own tool into a store with the same keys. */
    char snap[4400], data[4400], *out;
    snprintf(snap, sizeof(snap), "%s/snap.db", dir);
    struct tu_server rs;
    tu_server_init(&rs);
    snprintf(data, sizeof(data), "%s/data", rs.dir);
    const char *rargs[] = {"--restore-snapshot", snap, "--data-dir", data, NULL};
    int rc = tu_run(rargs, NULL, 20000, &out);
    ck_assert_msg(rc == 0, "restore: %s", out);
    free(out);
    tu_server_restart(&rs, NULL);
    const char *body = "{\"key\":\"AA==\",\"range_end\":\"AA==\"}";
    char *r1 = tu_post(ms.port, "/v3/kv/range", body, NULL);
    char *r2 = tu_post(rs.port, "/v3/kv/range", body, NULL);
    ck_assert_str_eq(r1, r2);
    free(r1);
    free(r2);
    tu_server_stop(&rs);
    tu_server_stop(&ms);
    etcd_stop(pid);
    tu_rmtree(dir);
    free(dir);
    ck_assert_int_eq(bad, 0);
}
END_TEST

/* ---- lock and elect: etcdctl runs etcd's concurrency recipes (a session with keepalives, txns,
 * watches of the key just before its own) over KV, Lease and Watch ---- */

/* An etcdctl left running, and what it printed so far. */
struct bg {
    pid_t pid;
    int in;
    int out;
    char *buf;
    size_t len;
    size_t cap;
};

static void bg_start(struct bg *b, const char *bin, struct server *sv, const struct cmd *c)
{
    b->pid = spawn_ctl(bin, sv, c, &b->in, &b->out);
    b->cap = 4096;
    b->len = 0;
    b->buf = malloc(b->cap);
    b->buf[0] = 0;
}

/* Read b's output until it holds what (n times) or ms pass or it ends; whether it got there. */
static bool bg_wait_for(struct bg *b, const char *what, size_t n, int ms)
{
    int64_t end = tu_now_ms() + ms;
    while (count(b->buf, what) < n && tu_now_ms() < end) {
        struct pollfd pf = {.fd = b->out, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0)
            continue;
        if (b->len + 1024 > b->cap)
            b->buf = realloc(b->buf, b->cap *= 2);
        ssize_t r = read(b->out, b->buf + b->len, b->cap - b->len - 1);
        if (r <= 0)
            break;
        b->len += (size_t)r;
        b->buf[b->len] = 0;
    }
    return count(b->buf, what) >= n;
}

/* Send sig (0: none, it ends by itself) and wait for the end: its exit status (-1: killed after
 * RUN_MS); the rest of its output is read. */
static int bg_end(struct bg *b, int sig)
{
    if (sig)
        kill(b->pid, sig);
    bg_wait_for(b, "\x01never", 1, RUN_MS); /* to the end of its output */
    int status;
    pid_t w;
    int64_t end = tu_now_ms() + RUN_MS;
    while ((w = waitpid(b->pid, &status, WNOHANG)) == 0 && tu_now_ms() < end)
        tu_sleep_ms(5);
    if (w != b->pid) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &status, 0);
    }
    close(b->in);
    close(b->out);
    return w == b->pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Append step's exit status and output to t, with the session IDs in keys ("name/<lease in
 * hex>") made "name/ID"; frees b's output. */
static void note(struct buf *t, const char *step, int rc, char *out)
{
    char head[128];
    snprintf(head, sizeof(head), "%s: exit %d\n", step, rc);
    buf_append(t, head, strlen(head));
    for (const char *p = out; *p;) {
        buf_putc(t, *p);
        if (*p++ == '/' && isxdigit((unsigned char)*p)) {
            buf_append(t, "ID", 2);
            while (isxdigit((unsigned char)*p))
                p++;
        }
    }
    free(out);
}

#define CTL(...) (&(struct cmd){.args = {__VA_ARGS__}})

/* The same scenario against one server; its transcript in t. */
static void lock_scenario(const char *bin, struct server *sv, struct buf *t)
{
    char *out;
    int rc = run_ctl(bin, sv, CTL("lock", "lk1", "--", "echo", "hi"), &out);
    note(t, "lock with a command", rc, out);
    rc = run_ctl(bin, sv, CTL("lock", "--ttl=9999999999", "lk1"), &out);
    note(t, "lock with a TTL too large", rc, out);
    /* contention: the second waits until the first exits (SIGINT: it unlocks) */
    struct bg a, b;
    bg_start(&a, bin, sv, CTL("lock", "lk2"));
    ck_assert_msg(bg_wait_for(&a, "lk2/", 1, RUN_MS), "first lock: %s", a.buf);
    bg_start(&b, bin, sv, CTL("lock", "lk2", "--", "echo", "second"));
    /* it cannot get the lock while the first holds it (a bounded look, not a timing goal) */
    bool early = bg_wait_for(&b, "second", 1, 1000);
    buf_append(t, early ? "second ran early\n" : "second waits\n", early ? 17 : 13);
    note(t, "first lock, SIGINT", bg_end(&a, SIGINT), a.buf);
    ck_assert_msg(bg_wait_for(&b, "second", 1, RUN_MS), "second lock: %s", b.buf);
    note(t, "second lock", bg_end(&b, 0), b.buf);
    rc = run_ctl(bin, sv, CTL("get", "--prefix", "lk"), &out);
    note(t, "lock keys left", rc, out);
    /* an election: a leader, an observer, resign on SIGINT, the next leader */
    struct bg e1, o, e2;
    bg_start(&e1, bin, sv, CTL("elect", "el", "p1"));
    ck_assert_msg(bg_wait_for(&e1, "p1", 1, RUN_MS), "elect p1: %s", e1.buf);
    bg_start(&o, bin, sv, CTL("elect", "-l", "el"));
    ck_assert_msg(bg_wait_for(&o, "p1", 1, RUN_MS), "observe: %s", o.buf);
    note(t, "elect p1, SIGINT", bg_end(&e1, SIGINT), e1.buf);
    rc = run_ctl(bin, sv, CTL("get", "--prefix", "el/"), &out);
    note(t, "election keys after resign", rc, out);
    bg_start(&e2, bin, sv, CTL("elect", "el", "p2"));
    ck_assert_msg(bg_wait_for(&e2, "p2", 1, RUN_MS), "elect p2: %s", e2.buf);
    ck_assert_msg(bg_wait_for(&o, "p2", 1, RUN_MS), "observe: %s", o.buf);
    note(t, "elect p2, SIGINT", bg_end(&e2, SIGINT), e2.buf);
    note(t, "observer, SIGINT", bg_end(&o, SIGINT), o.buf);
    rc = run_ctl(bin, sv, CTL("elect", "el"), &out);
    note(t, "elect without a proposal", rc, out);
}

START_TEST(etcdctl_lock_elect_same_as_etcd)
{
    const char *etcd = etcd_bin(), *ctl = etcdctl_bin();
    ck_assert(etcd && ctl);
    char *dir = tu_mkdtemp("ms-etcdctl-lock");
    int cport;
    pid_t pid = etcd_start(etcd, dir, &cport);
    struct tu_server ms;
    tu_server_start(&ms, NULL);
    struct server se = {.port = cport, .dir = dir}, sm = {.port = ms.port, .dir = dir};
    struct buf te, tm;
    buf_init(&te);
    buf_init(&tm);
    lock_scenario(ctl, &se, &te);
    lock_scenario(ctl, &sm, &tm);
    buf_putc(&te, 0);
    buf_putc(&tm, 0);
    char *ne = norm((const char *)te.p, &se), *nm = norm((const char *)tm.p, &sm);
    if (strcmp(ne, nm) != 0)
        fprintf(stderr, "etcd:\n%s\nmetastore:\n%s\n", ne, nm);
    ck_assert_str_eq(ne, nm);
    ck_assert_ptr_null(strstr(nm, "second ran early"));
    free(ne);
    free(nm);
    buf_fini(&te);
    buf_fini(&tm);
    tu_server_stop(&ms);
    etcd_stop(pid);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    int missing = etcd_missing("etcdctl");
    if (missing >= 0)
        return missing;
    if (!etcdctl_bin()) {
        printf("etcdctl: no /usr/bin/etcdctl (install etcd-client or set ETCDCTL_BIN): "
               "SKIPPED\n");
        return 77;
    }
    Suite *s = suite_create("etcdctl");
    TCase *tc = tcase_create("kv");
    tcase_set_timeout(tc, 280);
    tcase_add_test(tc, etcdctl_kv_same_as_etcd);
    tcase_add_test(tc, etcdctl_lock_elect_same_as_etcd);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
