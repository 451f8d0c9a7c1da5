/* test_cluster.c - member and cluster IDs against etcd's, bootstrap checks, member records. */
#include "metastore/cluster.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static struct cfg *cfg;
static struct cluster_boot *boot;
static char msg[512];

static void setup(void)
{
    cfg = calloc(1, sizeof(*cfg));
    boot = calloc(1, sizeof(*boot));
    ck_assert_ptr_nonnull(cfg);
    ck_assert_ptr_nonnull(boot);
    msg[0] = 0;
}

static void teardown(void)
{
    free(cfg);
    free(boot);
}

static void urls(const char *s, struct cfg_url *u, size_t *n)
{
    char m[128];
    ck_assert_msg(cfg_parse_urls(s, u, CFG_MAX_URLS, n, m, sizeof(m)), "%s", m);
}

/* name, token and advertised peer URLs of this member; then the members as "name", "urls". */
static void flags(const char *name, const char *token, const char *advertise, ...)
{
    snprintf(cfg->name, sizeof(cfg->name), "%s", name);
    snprintf(cfg->initial_cluster_token, sizeof(cfg->initial_cluster_token), "%s", token);
    urls(advertise, cfg->initial_advertise_peer, &cfg->n_initial_advertise_peer);
    urls("http://127.0.0.1:2379", cfg->advertise_client, &cfg->n_advertise_client);
    va_list ap;
    va_start(ap, advertise);
    const char *n;
    while ((n = va_arg(ap, const char *))) {
        struct cfg_member *m = &cfg->initial_cluster[cfg->n_initial_cluster++];
        snprintf(m->name, sizeof(m->name), "%s", n);
        urls(va_arg(ap, const char *), m->peer_urls, &m->n_peer_urls);
    }
    va_end(ap);
}

/* Observed with etcd 3.4.23: one member started with --name x --initial-cluster-token T
 * --initial-advertise-peer-urls http://127.0.0.1:35015 --initial-cluster
 * x=http://127.0.0.1:35015 reported these in /v3/maintenance/status's header. */
START_TEST(single_member_ids_match_etcd)
{
    flags("x", "T", "http://127.0.0.1:35015", "x", "http://127.0.0.1:35015", NULL);
    ck_assert_msg(cluster_bootstrap(cfg, boot, msg, sizeof(msg)), "%s", msg);
    ck_assert_uint_eq(boot->member_id, 15815220854227704290ULL);
    ck_assert_uint_eq(boot->cluster_id, 14105882745601752939ULL);
    ck_assert_uint_eq(boot->n_members, 1);
    ck_assert_uint_eq(boot->members[0].id, boot->member_id);
    ck_assert_str_eq(boot->members[0].name, "x");
    ck_assert_uint_eq(boot->members[0].n_client_urls, 1);
    ck_assert_str_eq(boot->members[0].client_urls[0].text, "http://127.0.0.1:2379");
}
END_TEST

/* Observed with etcd 3.4.23: a 3-member cluster n1..n3 on peer ports 23801..23803 with
 * --initial-cluster-token research-cluster (member/list and status on each member). */
START_TEST(three_member_ids_match_etcd)
{
    flags("n2", "research-cluster", "http://127.0.0.1:23802", "n1", "http://127.0.0.1:23801", "n2",
          "http://127.0.0.1:23802", "n3", "http://127.0.0.1:23803", NULL);
    ck_assert_msg(cluster_bootstrap(cfg, boot, msg, sizeof(msg)), "%s", msg);
    ck_assert_uint_eq(boot->cluster_id, 3535220251871867773ULL);
    ck_assert_uint_eq(boot->member_id, 7640403491131205001ULL);
    ck_assert_uint_eq(boot->n_members, 3);
    /* Sorted by ID, as etcd lists them; only this member knows its client URLs. */
    ck_assert_uint_eq(boot->members[0].id, 1220754971442003425ULL);
    ck_assert_str_eq(boot->members[0].name, "n1");
    ck_assert_uint_eq(boot->members[0].n_client_urls, 0);
    ck_assert_uint_eq(boot->members[1].id, 7640403491131205001ULL);
    ck_assert_uint_eq(boot->members[1].n_client_urls, 1);
    ck_assert_uint_eq(boot->members[2].id, 11095856449588169908ULL);
    ck_assert_str_eq(boot->members[2].peer_urls[0].text, "http://127.0.0.1:23803");
}
END_TEST

START_TEST(ids_sort_their_inputs)
{
    struct cfg_url a[2], b[2];
    size_t n;
    urls("http://10.0.0.1:2380,http://10.0.0.2:2380", a, &n);
    urls("http://10.0.0.2:2380,http://10.0.0.1:2380", b, &n);
    ck_assert_uint_eq(cluster_member_id(a, 2, "t"), cluster_member_id(b, 2, "t"));
    ck_assert_uint_ne(cluster_member_id(a, 2, "t"), cluster_member_id(a, 2, "u"));
    uint64_t x[3] = {3, 1, 2}, y[3] = {1, 2, 3};
    ck_assert_uint_eq(cluster_id(x, 3), cluster_id(y, 3));
}
END_TEST

START_TEST(bootstrap_refusals)
{
    flags("a", "t", "http://127.0.0.1:2380", "b", "http://127.0.0.1:2380", NULL);
    ck_assert(!cluster_bootstrap(cfg, boot, msg, sizeof(msg)));
    ck_assert_str_eq(msg, "couldn't find local name \"a\" in the initial cluster configuration");

    memset(cfg, 0, sizeof(*cfg));
    flags("a", "t", "http://127.0.0.1:2381", "a", "http://127.0.0.1:2380", NULL);
    ck_assert(!cluster_bootstrap(cfg, boot, msg, sizeof(msg)));
    ck_assert_str_eq(msg, "--initial-cluster has a=http://127.0.0.1:2380 but missing from "
                          "--initial-advertise-peer-urls=http://127.0.0.1:2381 "
                          "(\"http://127.0.0.1:2381\"(resolved from \"http://127.0.0.1:2381\") "
                          "!= \"http://127.0.0.1:2380\"(resolved from \"http://127.0.0.1:2380\"))");

    memset(cfg, 0, sizeof(*cfg));
    flags("a", "t", "http://127.0.0.1:2380,http://127.0.0.1:2381", "a", "http://127.0.0.1:2380",
          NULL);
    ck_assert(!cluster_bootstrap(cfg, boot, msg, sizeof(msg)));
    ck_assert_str_eq(msg, "--initial-advertise-peer-urls has http://127.0.0.1:2381 but missing "
                          "from --initial-cluster=a=http://127.0.0.1:2380,a=http://127.0.0.1:2381");

    memset(cfg, 0, sizeof(*cfg));
    flags("a", "t", "http://127.0.0.1:2380", "a", "http://127.0.0.1:2380,http://127.0.0.1:2381",
          NULL);
    ck_assert(!cluster_bootstrap(cfg, boot, msg, sizeof(msg)));
    ck_assert_str_eq(msg, "--initial-cluster has a=http://127.0.0.1:2381 but missing from "
                          "--initial-advertise-peer-urls=http://127.0.0.1:2380 "
                          "(len([\"http://127.0.0.1:2380\"]) != "
                          "len([\"http://127.0.0.1:2380\" \"http://127.0.0.1:2381\"]))");

    memset(cfg, 0, sizeof(*cfg));
    flags("b", "t", "http://127.0.0.1:2380", "b", "http://127.0.0.1:2380", "ab",
          "http://127.0.0.1:2380", NULL);
    ck_assert(!cluster_bootstrap(cfg, boot, msg, sizeof(msg)));
    ck_assert_str_eq(msg, "initial cluster ab=http://127.0.0.1:2380,b=http://127.0.0.1:2380 "
                          "has duplicate url");
}
END_TEST

/* A data directory given to the wrong member, or left by another cluster, is refused; the
 * member's own, single members, and a member of a cluster whose members changed are not. */
START_TEST(owner_checks)
{
    flags("b", "t", "http://127.0.0.1:2382", "a", "http://127.0.0.1:2380", "b",
          "http://127.0.0.1:2382", "c", "http://127.0.0.1:2384", NULL);
    ck_assert(cluster_bootstrap(cfg, boot, msg, sizeof(msg)));
    uint64_t a = 0, b = boot->member_id, cid = boot->cluster_id;
    for (size_t i = 0; i < boot->n_members; i++)
        if (strcmp(boot->members[i].name, "a") == 0)
            a = boot->members[i].id;
    ck_assert(cluster_check_owner(boot, "b", b, cid, msg, sizeof(msg)));

    ck_assert(!cluster_check_owner(boot, "b", a, cid, msg, sizeof(msg)));
    char want[512];
    snprintf(want, sizeof(want),
             "the data directory belongs to member a (%016llx) of cluster %016llx, not to member b "
             "(%016llx): give each member its own --data-dir",
             (unsigned long long)a, (unsigned long long)cid, (unsigned long long)b);
    ck_assert_str_eq(msg, want);

    /* Another token: every ID differs. */
    ck_assert(!cluster_check_owner(boot, "b", b ^ 1, cid ^ 1, msg, sizeof(msg)));
    ck_assert_msg(strstr(msg, "it holds another cluster's data") != NULL, "%s", msg);

    /* A member of this directory's cluster, after members were added or removed. */
    ck_assert(cluster_check_owner(boot, "b", a, cid ^ 1, msg, sizeof(msg)));

    /* One member: a restart may change anything. */
    memset(cfg, 0, sizeof(*cfg));
    flags("a", "t", "http://127.0.0.1:2380", "a", "http://127.0.0.1:2380", NULL);
    ck_assert(cluster_bootstrap(cfg, boot, msg, sizeof(msg)));
    ck_assert(cluster_check_owner(boot, "a", 7, 9, msg, sizeof(msg)));
}
END_TEST

static void member(struct cluster_member *m)
{
    memset(m, 0, sizeof(*m));
    m->id = 0x10f0fe2dbe97bde1ULL;
    strcpy(m->name, "n1");
    urls("http://127.0.0.1:23801,http://[::1]:23801", m->peer_urls, &m->n_peer_urls);
    urls("http://127.0.0.1:23791", m->client_urls, &m->n_client_urls);
    m->is_learner = true;
}

START_TEST(record_round_trip)
{
    struct cluster_member m, d;
    member(&m);
    struct buf b;
    buf_init(&b);
    cluster_member_encode(&m, &b);
    ck_assert(!b.failed);
    ck_assert_int_eq(cluster_member_decode(b.p, b.len, &d), MS_OK);
    ck_assert_uint_eq(d.id, m.id);
    ck_assert_str_eq(d.name, "n1");
    ck_assert(d.is_learner);
    ck_assert_uint_eq(d.n_peer_urls, 2);
    ck_assert_str_eq(d.peer_urls[1].text, m.peer_urls[1].text);
    ck_assert_str_eq(d.peer_urls[1].host, "::1");
    ck_assert_uint_eq(d.peer_urls[1].port, 23801);
    ck_assert_uint_eq(d.n_client_urls, 1);
    ck_assert_str_eq(d.client_urls[0].text, "http://127.0.0.1:23791");
    /* An unpublished member: no name, no client URLs. */
    m.name[0] = 0;
    m.n_client_urls = 0;
    m.is_learner = false;
    b.len = 0;
    cluster_member_encode(&m, &b);
    ck_assert_int_eq(cluster_member_decode(b.p, b.len, &d), MS_OK);
    ck_assert_str_eq(d.name, "");
    ck_assert_uint_eq(d.n_client_urls, 0);
    ck_assert(!d.is_learner);
    buf_fini(&b);
    uint8_t k[CLUSTER_KEY_LEN];
    cluster_member_key(0x0102030405060708ULL, k);
    ck_assert_mem_eq(k, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
}
END_TEST

START_TEST(record_rejects)
{
    struct cluster_member m, d;
    member(&m);
    struct buf b;
    buf_init(&b);
    cluster_member_encode(&m, &b);
    uint8_t *p = malloc(b.len + 1);
    /* Every truncation, and a trailing byte. */
    for (size_t n = 0; n < b.len; n++)
        ck_assert_int_eq(cluster_member_decode(b.p, n, &d), MS_E_DATA_CORRUPT);
    memcpy(p, b.p, b.len);
    p[b.len] = 0;
    ck_assert_int_eq(cluster_member_decode(p, b.len + 1, &d), MS_E_DATA_CORRUPT);
    /* Unknown version, unknown flag, ID 0. */
    memcpy(p, b.p, b.len);
    p[0] = 2;
    ck_assert_int_eq(cluster_member_decode(p, b.len, &d), MS_E_DATA_CORRUPT);
    memcpy(p, b.p, b.len);
    p[9] |= 0x02;
    ck_assert_int_eq(cluster_member_decode(p, b.len, &d), MS_E_DATA_CORRUPT);
    memcpy(p, b.p, b.len);
    memset(p + 1, 0, 8);
    ck_assert_int_eq(cluster_member_decode(p, b.len, &d), MS_E_DATA_CORRUPT);
    /* A URL that is not one: "http:" -> "xttp:" in the first peer URL (after the name). */
    memcpy(p, b.p, b.len);
    size_t url0 = 10 + 2 + strlen(m.name) + 1 + 2;
    ck_assert_int_eq(p[url0], 'h');
    p[url0] = 'x';
    ck_assert_int_eq(cluster_member_decode(p, b.len, &d), MS_E_DATA_CORRUPT);
    /* No peer URL at all. */
    m.n_peer_urls = 0;
    b.len = 0;
    cluster_member_encode(&m, &b);
    ck_assert_int_eq(cluster_member_decode(b.p, b.len, &d), MS_E_DATA_CORRUPT);
    free(p);
    buf_fini(&b);
}
END_TEST

static Suite *cluster_suite(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = tcase_create("ids");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, single_member_ids_match_etcd);
    tcase_add_test(tc, three_member_ids_match_etcd);
    tcase_add_test(tc, ids_sort_their_inputs);
    suite_add_tcase(s, tc);
    tc = tcase_create("bootstrap");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, bootstrap_refusals);
    tcase_add_test(tc, owner_checks);
    suite_add_tcase(s, tc);
    tc = tcase_create("record");
    tcase_add_test(tc, record_round_trip);
    tcase_add_test(tc, record_rejects);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(cluster_suite());
}
