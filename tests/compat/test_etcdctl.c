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
 */
#define _GNU_SOURCE
#include "etcd_proc.h"
#include "testutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
};

static const struct cmd CMDS[] = {
    {{"put", "foo", "bar"}, NULL},
    {{"put", "foo2", "baz", "--prev-kv"}, NULL},
    {{"put", "foo2", "qux", "--prev-kv", "-w", "json"}, NULL},
    {{"put", "fop", "1"}, NULL},
    {{"get", "foo"}, NULL},
    {{"get", "foo", "-w", "json"}, NULL},
    {{"get", "foo", "-w", "fields"}, NULL},
    {{"get", "foo", "-w", "table"}, NULL},
    {{"get", "foo", "--hex"}, NULL},
    {{"get", "--prefix", "foo"}, NULL},
    {{"get", "--prefix", "fo", "--sort-by=MODIFY", "--order=DESCEND"}, NULL},
    {{"get", "--prefix", "fo", "--sort-by=VALUE", "--order=ASCEND", "-w", "json"}, NULL},
    {{"get", "--prefix", "fo", "--sort-by=VERSION"}, NULL},
    {{"get", "--prefix", "fo", "--sort-by=CREATE", "--order=DESCEND", "--keys-only"}, NULL},
    {{"get", "", "--from-key", "--keys-only"}, NULL},
    {{"get", "foo", "--from-key", "--limit", "2", "-w", "json"}, NULL},
    {{"get", "foo", "fop"}, NULL},
    {{"get", "foo", "--rev", "2"}, NULL},
    {{"get", "foo", "--rev", "99"}, NULL},
    {{"get", "foo2", "--print-value-only"}, NULL},
    {{"get", "--prefix", "foo", "--keys-only", "-w", "json"}, NULL},
    {{"get", "foo", "--consistency=s"}, NULL},
    {{"get", "nothing"}, NULL},
    {{"get", "nothing", "-w", "json"}, NULL},
    {{"put", "", "x"}, NULL},
    {{"get", ""}, NULL},
    {{"put", "leased", "v", "--lease", "1234"}, NULL},
    {{"put", "foo", "--ignore-value"}, NULL},
    {{"put", "foo", "newer"}, NULL},
    {{"put", "nothing", "--ignore-value"}, NULL},
    {{"del", "nothing"}, NULL},
    {{"del", "--prev-kv", "foo"}, NULL},
    {{"del", "--prefix", "foo", "-w", "json"}, NULL},
    {{"del", "fop", "--prev-kv", "-w", "json"}, NULL},
    {{"put", "a", "1"}, NULL},
    {{"put", "b", "2"}, NULL},
    {{"txn", "-i"}, "value(\"a\") = \"1\"\n\nput a 10\nget b\ndel nothing\n\nput b 20\n\n"},
    {{"txn", "-i", "-w", "json"}, "value(\"a\") = \"1\"\n\nput a 11\n\nget a\nget b\n\n"},
    {{"txn", "-i"}, "mod(\"b\") > \"0\"\nversion(\"a\") = \"2\"\n\nget a --prefix\n\n\n"},
    {{"txn", "-i", "-w", "json"}, "create(\"zz\") = \"0\"\n\nput zz 1\nput zz 2\n\n\n"},
    {{"txn", "-i", "-w", "fields"}, "\n\nput c 3\n\n\n"},
    {{"get", "", "--from-key", "-w", "json"}, NULL},
    {{"compaction", "3"}, NULL},
    {{"compaction", "3"}, NULL},
    {{"compaction", "99"}, NULL},
    {{"get", "a", "--rev", "2"}, NULL},
    {{"get", "a", "--rev", "3"}, NULL},
    {{"compaction", "--physical", "4"}, NULL},
    {{"get", "", "--from-key"}, NULL},
    /* leases */
    {{"lease", "grant", "600"}, NULL},
    {{"put", "lk1", "v", "--lease", "$L"}, NULL},
    {{"get", "lk1", "-w", "json"}, NULL},
    {{"lease", "timetolive", "$L"}, NULL},
    /* one key only: etcd lists a lease's keys in Go's map order (random) */
    {{"lease", "timetolive", "$L", "--keys"}, NULL},
    {{"lease", "timetolive", "$L", "--keys", "-w", "json"}, NULL},
    {{"put", "lk2", "v", "--lease=$L", "-w", "json"}, NULL},
    {{"lease", "list"}, NULL},
    {{"lease", "list", "-w", "json"}, NULL},
    {{"lease", "keep-alive", "--once", "$L"}, NULL},
    {{"lease", "keep-alive", "--once", "$L", "-w", "json"}, NULL},
    {{"lease", "revoke", "$L"}, NULL},
    {{"get", "lk1"}, NULL},
    {{"lease", "timetolive", "$L"}, NULL},
    {{"lease", "revoke", "$L"}, NULL},
    {{"lease", "keep-alive", "--once", "$L"}, NULL},
    {{"lease", "list"}, NULL},
    {{"lease", "grant", "0"}, NULL},
    {{"lease", "grant", "10", "-w", "json"}, NULL},
    {{"lease", "grant", "9999999999"}, NULL},
    {{"put", "nolease", "v", "--lease", "abc"}, NULL},
    /* maintenance and cluster */
    {{"endpoint", "status", "-w", "json"}, NULL},
    {{"alarm", "list"}, NULL},
    {{"alarm", "list", "-w", "json"}, NULL},
    {{"alarm", "disarm"}, NULL},
    {{"defrag"}, NULL},
    {{"member", "list", "-w", "json"}, NULL},
    {{"snapshot", "save", "$D/snap.db"}, NULL},
    {{"get", "", "--from-key", "--keys-only"}, NULL},
};

struct server {
    int port;
    const char *dir;
    char lease_hex[24]; /* the last ID "lease grant" printed, "" before */
    char lease_dec[24];
};

/* Run etcdctl against endpoint port with args and input; *out gets stdout and stderr joined
 * (malloc'd). Returns the exit status, -1 if it had to be killed. */
static int run_ctl(const char *bin, struct server *sv, const struct cmd *c, char **out)
{
    static char subst[12][4400];
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
    /* The input is far below a pipe's buffer: written whole before the child reads. */
    if (c->in && write(in[1], c->in, strlen(c->in)) != (ssize_t)strlen(c->in))
        ck_abort_msg("cannot write etcdctl's input");
    close(in[1]);
    int64_t end = tu_now_ms() + RUN_MS;
    *out = tu_read_all(o[0], RUN_MS, NULL);
    close(o[0]);
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
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
