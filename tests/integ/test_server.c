/* test_server.c - integration: flags, environment and config file; persistence across a
 * restart on LMDB; the memory backend; the data directory lock; graceful stop. */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

START_TEST(flags)
{
    char *out;
    const char *help[] = {"--help", NULL};
    ck_assert_int_eq(tu_run(help, NULL, 10000, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--listen-client-urls"));
    ck_assert_ptr_nonnull(strstr(out, "--max-txn-ops"));
    free(out);
    const char *ver[] = {"--version", NULL};
    ck_assert_int_eq(tu_run(ver, NULL, 10000, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "metastore Version:"));
    free(out);

    struct {
        const char *args[4];
        const char *msg;
    } bad[] = {
        {{"--bogus", NULL}, "flag provided but not defined: -bogus"},
        {{"--name", NULL}, "flag needs an argument: -name"},
        {{"extra", NULL}, "unexpected argument"},
        {{"--listen-client-urls", "127.0.0.1:2379", NULL}, "has no scheme"},
        {{"--listen-client-urls", "https://127.0.0.1:2379", NULL}, "TLS"},
        {{"--listen-client-urls=http://127.0.0.1:99999", NULL}, "want http://host:port"},
        {{"--max-txn-ops", "-1", NULL}, "invalid value"},
        {{"--max-request-bytes", "lots", NULL}, "invalid value"},
        {{"--log-level", "loud", NULL}, "--log-level"},
        {{"--backend", "rocksdb", NULL}, "want lmdb or memory"},
        {{"--initial-cluster-state", "old", NULL}, "want new or existing"},
        {{"--initial-cluster", "other=http://127.0.0.1:2380", NULL}, "couldn't find local name"},
        {{"--election-timeout", "100", NULL}, "at least 5 times"},
        {{"--config-file", "/nonexistent/metastore.json", NULL}, "config file"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = tu_run(bad[i].args, NULL, 10000, &out);
        ck_assert_msg(rc == 2, "%s: exit %d (%s)", bad[i].args[0], rc, out);
        ck_assert_msg(strstr(out, bad[i].msg) != NULL, "%s: [%s] lacks [%s]", bad[i].args[0], out,
                      bad[i].msg);
        free(out);
    }
    /* Environment variables are checked the same way. */
    char *env[] = {"ETCD_LOG_LEVEL=loud", NULL};
    ck_assert_int_eq(tu_run(NULL, env, 10000, &out), 2);
    ck_assert_ptr_nonnull(strstr(out, "--log-level"));
    free(out);
}
END_TEST

START_TEST(env_and_config_file)
{
    /* Flags from the environment: the server comes up where ETCD_* says. */
    struct tu_server s;
    tu_server_start(&s, NULL);
    int port = s.port;
    char *dir = s.dir; /* ours once the server stops */
    tu_server_stop_keep(&s, 1);

    char url[96], data[4300], cfgpath[4300];
    snprintf(url, sizeof(url), "ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:%d", port);
    snprintf(data, sizeof(data), "ETCD_DATA_DIR=%s/env", dir);
    char *env[] = {url, data, "ETCD_LOG_LEVEL=warn", "ETCD_NAME=envnode", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        const char *bin = getenv("METASTORE_BIN");
        execle(bin, bin, (char *)NULL, env);
        _exit(127);
    }
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        struct tu_resp r;
        tu_http(port, "POST", "/v3/cluster/member/list", "{}", &r);
        ok = r.status == 200 && strstr(r.body, "\"name\":\"envnode\"") != NULL;
        tu_resp_free(&r);
        if (!ok)
            tu_sleep_ms(20);
    }
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(ok, "server configured from the environment did not answer");
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* A JSON config file with etcd's key names; other flags are then ignored. */
    snprintf(cfgpath, sizeof(cfgpath), "%s/metastore.json", dir);
    FILE *f = fopen(cfgpath, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "{\"name\":\"filenode\",\"data-dir\":\"%s/file\",\"listen-client-urls\":"
            "\"http://127.0.0.1:%d\",\"log-level\":\"warn\",\"max-txn-ops\":2,"
            "\"backend\":\"memory\"}",
            dir, port);
    fclose(f);
    pid = fork();
    if (pid == 0) {
        const char *bin = getenv("METASTORE_BIN");
        execl(bin, bin, "--config-file", cfgpath, "--name", "ignored", (char *)NULL);
        _exit(127);
    }
    ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        struct tu_resp r;
        tu_http(port, "POST", "/v3/cluster/member/list", "{}", &r);
        ok = r.status == 200 && strstr(r.body, "\"name\":\"filenode\"") != NULL;
        tu_resp_free(&r);
        if (!ok)
            tu_sleep_ms(20);
    }
    ck_assert(ok);
    /* max-txn-ops 2 from the file is in force. */
    int st;
    char *got = tu_post(port, "/v3/kv/txn",
                        "{\"success\":[{\"request_range\":{\"key\":\"YQ==\"}},{\"request_range\":"
                        "{\"key\":\"YQ==\"}},{\"request_range\":{\"key\":\"YQ==\"}}]}",
                        &st);
    ck_assert_int_eq(st, 400);
    ck_assert_ptr_nonnull(strstr(got, "too many operations"));
    free(got);
    kill(pid, SIGINT);
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(persistence_lmdb)
{
    struct tu_server s;
    tu_server_start(&s, NULL);
    char body[128];
    for (int i = 0; i < 50; i++) {
        snprintf(body, sizeof(body), "{\"key\":\"a2V5\",\"value\":\"%s\"}",
                 i % 2 ? "MQ==" : "Mg==");
        free(tu_post(s.port, "/v3/kv/put", body, NULL));
    }
    free(tu_post(s.port, "/v3/kv/put", "{\"key\":\"b3RoZXI=\",\"value\":\"eA==\"}", NULL));
    free(tu_post(s.port, "/v3/kv/compaction", "{\"revision\":20,\"physical\":true}", NULL));
    char *range1 =
        tu_post(s.port, "/v3/kv/range", "{\"key\":\"AA==\",\"range_end\":\"AA==\"}", NULL);
    char *hist1 = tu_post(s.port, "/v3/kv/range", "{\"key\":\"a2V5\",\"revision\":25}", NULL);
    char *hash1 = tu_post(s.port, "/v3/maintenance/hash", "{}", NULL);
    tu_server_stop_keep(&s, 1);
    tu_server_restart(&s, NULL);
    char *range2 =
        tu_post(s.port, "/v3/kv/range", "{\"key\":\"AA==\",\"range_end\":\"AA==\"}", NULL);
    char *hist2 = tu_post(s.port, "/v3/kv/range", "{\"key\":\"a2V5\",\"revision\":25}", NULL);
    char *hash2 = tu_post(s.port, "/v3/maintenance/hash", "{}", NULL);
    ck_assert_str_eq(range1, range2);
    ck_assert_str_eq(hist1, hist2);
    ck_assert_str_eq(hash1, hash2);
    ck_assert_ptr_nonnull(strstr(range2, "\"revision\":\"52\""));
    int st;
    char *c = tu_post(s.port, "/v3/kv/range", "{\"key\":\"a2V5\",\"revision\":19}", &st);
    ck_assert_int_eq(st, 400);
    ck_assert_ptr_nonnull(strstr(c, "compacted"));
    free(c);
    /* The next write continues the revision sequence. */
    c = tu_post(s.port, "/v3/kv/put", "{\"key\":\"bmV4dA==\"}", NULL);
    ck_assert_ptr_nonnull(strstr(c, "\"revision\":\"53\""));
    free(c);
    free(range1);
    free(range2);
    free(hist1);
    free(hist2);
    free(hash1);
    free(hash2);

    /* A second server on the same data directory is refused. */
    char url[64], data[4200], *out;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port + 1 > 65535 ? 1 : s.port + 1);
    snprintf(data, sizeof(data), "%s/data", s.dir);
    const char *args[] = {"--listen-client-urls", url, "--data-dir", data, NULL};
    int rc = tu_run(args, NULL, 10000, &out);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(out, "in use by another process") != NULL, "%s", out);
    free(out);
    tu_server_stop(&s);
}
END_TEST

START_TEST(memory_backend)
{
    struct tu_server s;
    const char *extra[] = {"--backend", "memory", NULL};
    tu_server_start(&s, extra);
    char *got = tu_post(s.port, "/v3/kv/put", "{\"key\":\"YQ==\",\"value\":\"Yg==\"}", NULL);
    ck_assert_ptr_nonnull(strstr(got, "\"revision\":\"2\""));
    free(got);
    got = tu_post(s.port, "/v3/kv/range", "{\"key\":\"YQ==\"}", NULL);
    ck_assert_ptr_nonnull(strstr(got, "\"value\":\"Yg==\""));
    free(got);
    tu_server_stop(&s);
}
END_TEST

/* The Raft core runs the member: a new member bootstraps its configuration at term 1 and elects
 * itself at term 2 (etcd's single member answers raft_term 2 too); every start is an election
 * (term + 1) whose no-op entry takes one index; each write takes one index; the member leads. */
static void raft_state(int port, long *term, long *index, long *applied)
{
    struct tu_resp r;
    tu_http(port, "POST", "/v3/maintenance/status", "{}", &r);
    const char *st = r.body;
    char member[32], want[64];
    tu_member_id(port, member, sizeof(member));
    snprintf(want, sizeof(want), "\"leader\":\"%s\"", member);
    ck_assert_msg(strstr(st, want) != NULL, "%s", st);
    *term = tu_json_num(st, "raftTerm", -1);
    *index = tu_json_num(st, "raftIndex", -1);
    *applied = tu_json_num(st, "raftAppliedIndex", -1);
    ck_assert_msg(tu_json_num(st, "raft_term", -1) == *term, "%s", st);
    tu_resp_free(&r);
}

static void raft_node(const char *backend)
{
    struct tu_server s;
    const char *extra[] = {"--backend", backend, NULL};
    tu_server_start(&s, extra);
    long term, index, applied;
    raft_state(s.port, &term, &index, &applied);
    ck_assert_int_eq(term, 2);
    ck_assert_int_eq(index, 2); /* the bootstrap's conf change, the leader's no-op */
    ck_assert_int_eq(applied, 2);
    for (int i = 0; i < 3; i++)
        free(tu_post(s.port, "/v3/kv/put", "{\"key\":\"YQ==\"}", NULL));
    raft_state(s.port, &term, &index, &applied);
    ck_assert_int_eq(term, 2);
    ck_assert_int_eq(index, 5);
    ck_assert_int_eq(applied, 5);
    struct tu_resp m;
    tu_http(s.port, "GET", "/metrics", NULL, &m);
    ck_assert_ptr_nonnull(strstr(m.body, "\netcd_server_is_leader 1\n"));
    ck_assert_ptr_nonnull(strstr(m.body, "\netcd_server_proposals_pending 0\n"));
    tu_resp_free(&m);
    for (int restart = 1; restart <= 2; restart++) {
        tu_server_stop_keep(&s, 1);
        tu_server_restart(&s, extra);
        raft_state(s.port, &term, &index, &applied);
        ck_assert_int_eq(term, 2 + restart);
        ck_assert_int_eq(index, 5 + restart);
        ck_assert_int_eq(applied, 5 + restart);
    }
    char *got = tu_post(s.port, "/v3/kv/range", "{\"key\":\"YQ==\"}", NULL);
    ck_assert_ptr_nonnull(strstr(got, "\"version\":\"3\""));
    free(got);
    tu_server_stop(&s);
}

START_TEST(raft_node_lmdb)
{
    raft_node("lmdb");
}
END_TEST

START_TEST(raft_node_memory)
{
    raft_node("memory");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("server");
    TCase *tc = tcase_create("lifecycle");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, flags);
    tcase_add_test(tc, env_and_config_file);
    tcase_add_test(tc, persistence_lmdb);
    tcase_add_test(tc, memory_backend);
    tcase_add_test(tc, raft_node_lmdb);
    tcase_add_test(tc, raft_node_memory);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
