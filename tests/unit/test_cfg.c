/* test_cfg.c - configuration: defaults, flag syntaxes, environment precedence, validation. */
#include "metastore/cfg.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *devnull;

static void setup(void)
{
    devnull = fopen("/dev/null", "w");
}

static void teardown(void)
{
    fclose(devnull);
}

static enum cfg_result load(struct cfg *c, const char *const *argv, char **envp)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return cfg_load(c, argc, (char **)argv, envp, devnull, devnull);
}

START_TEST(defaults)
{
    struct cfg c;
    const char *argv[] = {"metastore", NULL};
    ck_assert_int_eq(load(&c, argv, NULL), CFG_OK);
    ck_assert_str_eq(c.name, "default");
    ck_assert_str_eq(c.data_dir, "default.metastore");
    ck_assert_uint_eq(c.n_listen_client, 1);
    ck_assert_str_eq(c.listen_client[0].host, "localhost");
    ck_assert_uint_eq(c.listen_client[0].port, 2379);
    ck_assert_uint_eq(c.max_request_bytes, 1572864);
    ck_assert_uint_eq(c.max_txn_ops, 128);
    ck_assert_int_eq(c.backend, CFG_BACKEND_LMDB);
    ck_assert_uint_eq(c.watch_total_buffer_bytes, 64u << 20);
    ck_assert_uint_eq(c.n_initial_cluster, 1);
    ck_assert_str_eq(c.initial_cluster[0].name, "default");
    ck_assert_str_eq(c.initial_cluster[0].peer_urls[0].text, "http://localhost:2380");
}
END_TEST

START_TEST(flag_forms_and_env)
{
    struct cfg c;
    const char *argv[] = {"metastore",
                          "--name=n1",
                          "-data-dir",
                          "/tmp/x",
                          "--listen-client-urls",
                          "http://127.0.0.1:1,http://[::1]:2/",
                          "--backend",
                          "memory",
                          "-max-txn-ops=7",
                          NULL};
    char *env[] = {"ETCD_NAME=ignored", "ETCD_MAX_REQUEST_BYTES=100",
                   "ETCD_WATCH_TOTAL_BUFFER_BYTES=4194304", "PATH=/bin", NULL};
    ck_assert_int_eq(load(&c, argv, env), CFG_OK);
    ck_assert_str_eq(c.name, "n1"); /* the flag beats the variable */
    ck_assert_str_eq(c.data_dir, "/tmp/x");
    ck_assert_uint_eq(c.n_listen_client, 2);
    ck_assert_str_eq(c.listen_client[1].host, "::1");
    ck_assert_str_eq(c.listen_client[1].text, "http://[::1]:2");
    ck_assert_int_eq(c.backend, CFG_BACKEND_MEMORY);
    ck_assert_uint_eq(c.max_txn_ops, 7);
    ck_assert_uint_eq(c.max_request_bytes, 100);
    ck_assert_uint_eq(c.watch_total_buffer_bytes, 4194304);
    const char *argv0[] = {"metastore", "--watch-total-buffer-bytes", "0", NULL};
    ck_assert_int_eq(load(&c, argv0, NULL), CFG_OK);
    ck_assert_uint_eq(c.watch_total_buffer_bytes, 0); /* no budget */
    /* The default data dir follows the name; initial cluster follows the peer URLs. */
    const char *argv2[] = {
        "metastore", "--name", "n2", "--initial-advertise-peer-urls", "http://10.0.0.1:2380", NULL};
    ck_assert_int_eq(load(&c, argv2, NULL), CFG_OK);
    ck_assert_str_eq(c.data_dir, "n2.metastore");
    ck_assert_str_eq(c.initial_cluster[0].peer_urls[0].text, "http://10.0.0.1:2380");
}
END_TEST

START_TEST(cluster_flags)
{
    struct cfg c;
    const char *argv[] = {"metastore",
                          "--name",
                          "b",
                          "--initial-cluster",
                          "a=http://127.0.0.1:1,b=http://127.0.0.1:2,c=http://127.0.0.1:3",
                          "--pre-vote=false",
                          NULL};
    ck_assert_int_eq(load(&c, argv, NULL), CFG_OK);
    ck_assert_uint_eq(c.n_initial_cluster, 3);
    ck_assert_str_eq(c.initial_cluster[2].name, "c");
    ck_assert_uint_eq(c.initial_cluster[2].peer_urls[0].port, 3);
    ck_assert(!c.pre_vote);
    /* A Go bool flag alone means true, and takes no separate value. */
    const char *on[] = {"metastore", "--pre-vote", NULL};
    ck_assert_int_eq(load(&c, on, NULL), CFG_OK);
    ck_assert(c.pre_vote);
    const char *dflt[] = {"metastore", NULL};
    ck_assert_int_eq(load(&c, dflt, NULL), CFG_OK);
    ck_assert(c.pre_vote); /* etcd 3.5's default */
    char *env[] = {"ETCD_PRE_VOTE=0", NULL};
    ck_assert_int_eq(load(&c, dflt, env), CFG_OK);
    ck_assert(!c.pre_vote);
    ck_assert(c.strict_reconfig_check && !c.initial_cluster_existing); /* etcd's defaults */
    const char *join[] = {"metastore", "--strict-reconfig-check=false", "--initial-cluster-state",
                          "existing", NULL};
    ck_assert_int_eq(load(&c, join, NULL), CFG_OK);
    ck_assert(!c.strict_reconfig_check && c.initial_cluster_existing);
}
END_TEST

START_TEST(invalid)
{
    struct cfg c;
    const char *bad[][4] = {
        {"metastore", "--nope", NULL},
        {"metastore", "--name", NULL},
        {"metastore", "--listen-client-urls", "http://h", NULL},
        {"metastore", "--listen-client-urls", "", NULL},
        {"metastore", "--max-request-bytes", "0", NULL},
        {"metastore", "--max-txn-ops", "12x", NULL},
        {"metastore", "--watch-total-buffer-bytes", "-1", NULL},
        {"metastore", "--initial-cluster", "a=http://h:1,b=http://h:2", NULL}, /* no "default" */
        {"metastore", "--pre-vote=maybe", NULL},
        {"metastore", "--strict-reconfig-check=maybe", NULL},
        {"metastore", "--initial-cluster", "noequals", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(load(&c, bad[i], NULL) == CFG_BAD, "%s %s accepted", bad[i][1],
                      bad[i][2] ? bad[i][2] : "");
    const char *help[] = {"metastore", "-h", NULL};
    ck_assert_int_eq(load(&c, help, NULL), CFG_EXIT);
}
END_TEST

START_TEST(urls)
{
    struct cfg_url u[CFG_MAX_URLS];
    size_t n;
    char msg[256];
    ck_assert(cfg_parse_urls("http://a:1,,http://b:2", u, CFG_MAX_URLS, &n, msg, sizeof(msg)));
    ck_assert_uint_eq(n, 2);
    ck_assert(!cfg_parse_urls("ftp://a:1", u, CFG_MAX_URLS, &n, msg, sizeof(msg)));
    ck_assert(!cfg_parse_urls("http://:1", u, CFG_MAX_URLS, &n, msg, sizeof(msg)));
    ck_assert(!cfg_parse_urls("http://a:1x", u, CFG_MAX_URLS, &n, msg, sizeof(msg)));
    ck_assert(!cfg_parse_urls("http://[::1:1", u, CFG_MAX_URLS, &n, msg, sizeof(msg)));
    ck_assert(!cfg_parse_urls("http://a:1,http://a:2,http://a:3,http://a:4,http://a:5,"
                              "http://a:6,http://a:7,http://a:8,http://a:9",
                              u, CFG_MAX_URLS, &n, msg, sizeof(msg)));
}
END_TEST

/* etcd's config file nests the TLS settings under client-transport-security and
 * peer-transport-security; both spellings reach the same fields. */
START_TEST(config_file_transport_security)
{
    char *dir = tu_mkdtemp("ms-test-cfg");
    ck_assert_ptr_nonnull(dir);
    char path[4200];
    snprintf(path, sizeof(path), "%s/c.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"name\":\"n1\",\"client-transport-security\":{\"cert-file\":\"/c.crt\","
          "\"key-file\":\"/c.key\",\"client-cert-auth\":true,\"trusted-ca-file\":\"/ca.crt\"},"
          "\"peer-transport-security\":{\"cert-file\":\"/p.crt\",\"key-file\":\"/p.key\","
          "\"auto-tls\":false,\"allowed-cn\":\"member\",\"client-cert-auth\":true}}",
          f);
    fclose(f);
    struct cfg c;
    const char *argv[] = {"metastore", "--config-file", path, NULL};
    ck_assert_int_eq(load(&c, argv, NULL), CFG_OK);
    ck_assert_str_eq(c.name, "n1");
    ck_assert_str_eq(c.client_tls.cert_file, "/c.crt");
    ck_assert_str_eq(c.client_tls.key_file, "/c.key");
    ck_assert_str_eq(c.client_tls.trusted_ca_file, "/ca.crt");
    ck_assert(c.client_tls.client_cert_auth);
    ck_assert_str_eq(c.peer_tls.cert_file, "/p.crt");
    ck_assert_str_eq(c.peer_tls.key_file, "/p.key");
    ck_assert_str_eq(c.peer_tls.allowed_cn, "member");
    ck_assert(c.peer_tls.client_cert_auth);
    ck_assert(!c.peer_tls.auto_tls);
    /* A wrong type inside is refused like one outside. */
    f = fopen(path, "w");
    fputs("{\"peer-transport-security\":{\"cert-file\":[1]}}", f);
    fclose(f);
    ck_assert_int_ne(load(&c, argv, NULL), CFG_OK);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cfg");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, flag_forms_and_env);
    tcase_add_test(tc, cluster_flags);
    tcase_add_test(tc, invalid);
    tcase_add_test(tc, urls);
    tcase_add_test(tc, config_file_transport_security);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
