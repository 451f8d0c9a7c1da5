/* test_gw_kv.c - integration: the real binary on a loopback port, the KV endpoints over HTTP,
 * compared with what etcd 3.4.23 answers for the same requests (reference §5; header IDs are
 * normalised to C, M and T).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct tu_server srv;

static void setup(void)
{
    tu_server_start(&srv, NULL);
}

static void teardown(void)
{
    tu_server_stop(&srv);
}

#define H(r)                                                                                       \
    "{\"cluster_id\":\"C\",\"member_id\":\"M\",\"revision\":\"" #r "\",\"raft_term\":\"T\"}"

/* POST and compare the normalised body and the status. */
#define EXPECT(path, body, want_status, want)                                                      \
    do {                                                                                           \
        int st_;                                                                                   \
        char *got_ = tu_post(srv.port, path, body, &st_);                                          \
        ck_assert_msg(st_ == (want_status), "%s %s: status %d want %d (%s)", path, body, st_,      \
                      want_status, got_);                                                          \
        ck_assert_msg(strcmp(got_, want) == 0, "%s %s:\n got  %s\n want %s", path, body, got_,     \
                      want);                                                                       \
        free(got_);                                                                                \
    } while (0)

#define ERR(msg, code) "{\"error\":\"" msg "\",\"message\":\"" msg "\",\"code\":" #code "}"

START_TEST(put_and_range)
{
    EXPECT("/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}", 200, "{\"header\":" H(2) "}");
    EXPECT("/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFyMg==\",\"prev_kv\":true}", 200,
           "{\"header\":" H(3) ",\"prev_kv\":{\"key\":\"Zm9v\",\"create_revision\":\"2\","
                               "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}}");
    EXPECT("/v3/kv/put", "{\"key\":\"bmV3a2V5\",\"value\":\"dg==\",\"prev_kv\":true}", 200,
           "{\"header\":" H(4) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\"}", 200,
           "{\"header\":" H(4) ",\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
                               "\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"YmFyMg==\"}],"
                               "\"count\":\"1\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"bm9wZQ==\"}", 200, "{\"header\":" H(4) "}");
    /* An empty value is omitted. */
    EXPECT("/v3/kv/put", "{\"key\":\"ZW1wdHk=\"}", 200, "{\"header\":" H(5) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"ZW1wdHk=\"}", 200,
           "{\"header\":" H(5) ",\"kvs\":[{\"key\":\"ZW1wdHk=\",\"create_revision\":\"5\","
                               "\"mod_revision\":\"5\",\"version\":\"1\"}],\"count\":\"1\"}");
    /* A put with a lease that exists attaches the key to it; an unknown lease is refused. */
    EXPECT("/v3/kv/put", "{\"key\":\"bGs=\",\"value\":\"djE=\",\"lease\":\"999\"}", 404,
           "{\"error\":\"etcdserver: requested lease not found\",\"message\":\"etcdserver: "
           "requested lease not found\",\"code\":5}");
    EXPECT("/v3/lease/grant", "{\"TTL\":300,\"ID\":1234}", 200,
           "{\"header\":" H(5) ",\"ID\":\"1234\",\"TTL\":\"300\"}");
    EXPECT("/v3/kv/put", "{\"key\":\"bGs=\",\"value\":\"djE=\",\"lease\":\"1234\"}", 200,
           "{\"header\":" H(6) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"bGs=\",\"keys_only\":true}", 200,
           "{\"header\":" H(6) ",\"kvs\":[{\"key\":\"bGs=\",\"create_revision\":\"6\","
                               "\"mod_revision\":\"6\",\"version\":\"1\",\"lease\":\"1234\"}],"
                               "\"count\":\"1\"}");
    /* ignore_value + ignore_lease keep both and still bump the version. */
    EXPECT("/v3/kv/put", "{\"key\":\"bGs=\",\"ignore_value\":true,\"ignore_lease\":true}", 200,
           "{\"header\":" H(7) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"bGs=\"}", 200,
           "{\"header\":" H(7) ",\"kvs\":[{\"key\":\"bGs=\",\"create_revision\":\"6\","
                               "\"mod_revision\":\"7\",\"version\":\"2\",\"value\":\"djE=\","
                               "\"lease\":\"1234\"}],\"count\":\"1\"}");
    /* A put without lease detaches it. */
    EXPECT("/v3/kv/put", "{\"key\":\"bGs=\",\"value\":\"djI=\"}", 200, "{\"header\":" H(8) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"bGs=\"}", 200,
           "{\"header\":" H(8) ",\"kvs\":[{\"key\":\"bGs=\",\"create_revision\":\"6\","
                               "\"mod_revision\":\"8\",\"version\":\"3\",\"value\":\"djI=\"}],"
                               "\"count\":\"1\"}");
}
END_TEST

/* k/a..k/e at revisions 2..6, k/b again at 7. */
static void put_k(void)
{
    const char *keys[] = {"ay9h", "ay9i", "ay9j", "ay9k", "ay9l"};
    const char *vals[] = {"dmFsLWE=", "dmFsLWI=", "dmFsLWM=", "dmFsLWQ=", "dmFsLWU="};
    char body[128];
    for (int i = 0; i < 5; i++) {
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", keys[i], vals[i]);
        free(tu_post(srv.port, "/v3/kv/put", body, NULL));
    }
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"ay9i\",\"value\":\"dmFsLWIy\"}", NULL));
}

#define KV_A                                                                                       \
    "{\"key\":\"ay9h\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","        \
    "\"value\":\"dmFsLWE=\"}"
#define KV_B2                                                                                      \
    "{\"key\":\"ay9i\",\"create_revision\":\"3\",\"mod_revision\":\"7\",\"version\":\"2\","        \
    "\"value\":\"dmFsLWIy\"}"
#define KV_B1                                                                                      \
    "{\"key\":\"ay9i\",\"create_revision\":\"3\",\"mod_revision\":\"3\",\"version\":\"1\","        \
    "\"value\":\"dmFsLWI=\"}"
#define KV_C                                                                                       \
    "{\"key\":\"ay9j\",\"create_revision\":\"4\",\"mod_revision\":\"4\",\"version\":\"1\","        \
    "\"value\":\"dmFsLWM=\"}"
#define KV_D                                                                                       \
    "{\"key\":\"ay9k\",\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\","        \
    "\"value\":\"dmFsLWQ=\"}"
#define KV_E                                                                                       \
    "{\"key\":\"ay9l\",\"create_revision\":\"6\",\"mod_revision\":\"6\",\"version\":\"1\","        \
    "\"value\":\"dmFsLWU=\"}"

START_TEST(range_options)
{
    put_k();
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"limit\":2}", 200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_A "," KV_B2 "],\"more\":true,\"count\":\"5\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"limit\":\"2\"}", 200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_A "," KV_B2 "],\"more\":true,\"count\":\"5\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"limit\":5}", 200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_A "," KV_B2 "," KV_C "," KV_D "," KV_E
                               "],\"count\":\"5\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"count_only\":true}", 200,
           "{\"header\":" H(7) ",\"count\":\"5\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"count_only\":true,\"limit\":1}", 200,
           "{\"header\":" H(7) ",\"count\":\"5\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"revision\":3}", 200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_A "," KV_B1 "],\"count\":\"2\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"revision\":1}", 200,
           "{\"header\":" H(7) "}");
    /* "\0" range ends. */
    EXPECT("/v3/kv/range", "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"count_only\":true}", 200,
           "{\"header\":" H(7) ",\"count\":\"5\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay9j\",\"range_end\":\"AA==\",\"count_only\":true}", 200,
           "{\"header\":" H(7) ",\"count\":\"3\"}");
    /* Sorting. */
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_order\":\"DESCEND\",\"limit\":2}", 200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_E "," KV_D "],\"more\":true,\"count\":\"5\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_order\":2,\"limit\":1}",
           200, "{\"header\":" H(7) ",\"kvs\":[" KV_E "],\"more\":true,\"count\":\"5\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_target\":\"VERSION\",\"sort_order\":"
           "\"DESCEND\"}",
           200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_B2 "," KV_A "," KV_C "," KV_D "," KV_E
                               "],\"count\":\"5\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_target\":\"MOD\",\"limit\":1}", 200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_A "],\"more\":true,\"count\":\"5\"}");
    /* Filters apply after counting. */
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"min_mod_revision\":5}", 200,
           "{\"header\":" H(7) ",\"kvs\":[" KV_B2 "," KV_D "," KV_E "],\"count\":\"5\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"min_create_revision\":4,"
           "\"max_create_revision\":5,\"keys_only\":true}",
           200,
           "{\"header\":" H(7) ",\"kvs\":[{\"key\":\"ay9j\",\"create_revision\":\"4\","
                               "\"mod_revision\":\"4\",\"version\":\"1\"},{\"key\":\"ay9k\","
                               "\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":"
                               "\"1\"}],\"count\":\"5\"}");
    /* camelCase wins over snake_case whatever the order. */
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"rangeEnd\":\"ay9i\",\"count_only\":true}",
           200, "{\"header\":" H(7) ",\"count\":\"1\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"rangeEnd\":\"ay9i\",\"range_end\":\"azA=\",\"countOnly\":true}",
           200, "{\"header\":" H(7) ",\"count\":\"1\"}");
    /* Anything after the first JSON value is ignored; unknown fields too; null = absent. */
    EXPECT("/v3/kv/range", "{\"key\":\"ay9h\",\"count_only\":true} xyz", 200,
           "{\"header\":" H(7) ",\"count\":\"1\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay9h\",\"bogus\":[1,{\"x\":null}],\"limit\":null,"
           "\"range_end\":null,\"count_only\":true}",
           200, "{\"header\":" H(7) ",\"count\":\"1\"}");
    /* An out-of-range sort order is accepted and sorts nothing (etcd 3.4), so any target goes
     * with it; a bad target that would be sorted by is refused (etcd 3.4 crashes). */
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_order\":7,\"count_only\":true}", 200,
           "{\"header\":" H(7) ",\"count\":\"5\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_order\":99,\"sort_target\":99,"
           "\"count_only\":true}",
           200, "{\"header\":" H(7) ",\"count\":\"5\"}");
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_order\":-1,\"sort_target\":-1,"
           "\"count_only\":true}",
           200, "{\"header\":" H(7) ",\"count\":\"5\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_target\":9}", 400,
           ERR("etcdserver: invalid sort option", 3));
    EXPECT("/v3/kv/range",
           "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"sort_order\":\"DESCEND\",\"sort_target\":"
           "-1}",
           400, ERR("etcdserver: invalid sort option", 3));
    /* Future and compacted revisions. */
    EXPECT("/v3/kv/range", "{\"key\":\"ay9h\",\"revision\":8}", 400,
           ERR("etcdserver: mvcc: required revision is a future revision", 11));
    EXPECT("/v3/kv/range", "{\"key\":\"ay9h\",\"revision\":-1,\"count_only\":true}", 200,
           "{\"header\":" H(7) ",\"count\":\"1\"}");
}
END_TEST

START_TEST(delete_range)
{
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"cy9h\",\"value\":\"YQ==\"}", NULL));
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"cy9i\",\"value\":\"Yg==\"}", NULL));
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"cy9j\",\"value\":\"Yw==\"}", NULL));
    EXPECT("/v3/kv/deleterange", "{\"key\":\"cy9h\",\"prev_kv\":true}", 200,
           "{\"header\":" H(5) ",\"deleted\":\"1\",\"prev_kvs\":[{\"key\":\"cy9h\","
                               "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":"
                               "\"1\",\"value\":\"YQ==\"}]}");
    EXPECT("/v3/kv/deleterange", "{\"key\":\"cy96eno=\"}", 200, "{\"header\":" H(5) "}");
    EXPECT("/v3/kv/deleterange", "{\"key\":\"cy8=\",\"range_end\":\"czA=\"}", 200,
           "{\"header\":" H(6) ",\"deleted\":\"2\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"cy8=\",\"range_end\":\"czA=\",\"revision\":5}", 200,
           "{\"header\":" H(6) ",\"kvs\":[{\"key\":\"cy9i\",\"create_revision\":\"3\","
                               "\"mod_revision\":\"3\",\"version\":\"1\",\"value\":\"Yg==\"},{"
                               "\"key\":\"cy9j\",\"create_revision\":\"4\",\"mod_revision\":"
                               "\"4\",\"version\":\"1\",\"value\":\"Yw==\"}],\"count\":\"2\"}");
}
END_TEST

START_TEST(txn)
{
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}", NULL));
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFyMg==\"}", NULL));
    const char *t = "{\"compare\":[{\"key\":\"Zm9v\",\"target\":\"VALUE\",\"result\":\"EQUAL\","
                    "\"value\":\"YmFyMg==\"}],\"success\":[{\"request_put\":{\"key\":\"Zm9v\","
                    "\"value\":\"YmFyMw==\",\"prev_kv\":true}},{\"request_range\":{\"key\":"
                    "\"Zm9v\"}}],\"failure\":[{\"request_range\":{\"key\":\"Zm9v\"}}]}";
#define FOO3                                                                                       \
    "{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"4\",\"version\":\"3\","        \
    "\"value\":\"YmFyMw==\"}"
    EXPECT("/v3/kv/txn", t, 200,
           "{\"header\":" H(4) ",\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":"
                               "{\"revision\":\"4\"},\"prev_kv\":{\"key\":\"Zm9v\","
                               "\"create_revision\":\"2\",\"mod_revision\":\"3\",\"version\":"
                               "\"2\",\"value\":\"YmFyMg==\"}}},{\"response_range\":{\"header\":"
                               "{\"revision\":\"4\"},\"kvs\":[" FOO3 "],\"count\":\"1\"}}]}");
    EXPECT("/v3/kv/txn", t, 200,
           "{\"header\":" H(4) ",\"responses\":[{\"response_range\":{\"header\":{\"revision\":"
                               "\"4\"},\"kvs\":[" FOO3 "],\"count\":\"1\"}}]}");
    EXPECT("/v3/kv/txn", "{}", 200, "{\"header\":" H(4) ",\"succeeded\":true}");
    /* A failed compare with no failure ops. */
    EXPECT("/v3/kv/txn",
           "{\"compare\":[{\"key\":\"Zm9v\",\"target\":\"VERSION\",\"result\":\"LESS\","
           "\"version\":1}]}",
           200, "{\"header\":" H(4) "}");
    /* Nested txn whose inner compare fails; two writes share one revision. */
    EXPECT("/v3/kv/txn",
           "{\"success\":[{\"request_txn\":{\"compare\":[{\"key\":\"Zm9v\",\"target\":\"MOD\","
           "\"result\":\"GREATER\",\"mod_revision\":100}],\"failure\":[{\"request_put\":{\"key\":"
           "\"aW4=\",\"value\":\"MQ==\"}},{\"request_range\":{\"key\":\"aW4=\"}}]}},"
           "{\"request_put\":{\"key\":\"b3V0\"}}]}",
           200,
           "{\"header\":" H(5) ",\"succeeded\":true,\"responses\":[{\"response_txn\":{\"header\":"
                               "{},\"responses\":[{\"response_put\":{\"header\":{\"revision\":"
                               "\"5\"}}},{\"response_range\":{\"header\":{\"revision\":\"5\"},"
                               "\"kvs\":[{\"key\":\"aW4=\",\"create_revision\":\"5\","
                               "\"mod_revision\":\"5\",\"version\":\"1\",\"value\":\"MQ==\"}],"
                               "\"count\":\"1\"}}]}},{\"response_put\":{\"header\":{"
                               "\"revision\":\"5\"}}}]}");
    /* Read-only txn and a delete of nothing: no new revision. */
    EXPECT("/v3/kv/txn", "{\"success\":[{\"request_delete_range\":{\"key\":\"bm9uZQ==\"}}]}", 200,
           "{\"header\":" H(5) ",\"succeeded\":true,\"responses\":[{\"response_delete_range\":{"
                               "\"header\":{\"revision\":\"5\"}}}]}");
    /* VALUE compare on a missing key is false even for NOT_EQUAL; VERSION = 0 is true. */
    EXPECT("/v3/kv/txn",
           "{\"compare\":[{\"key\":\"bm9uZQ==\",\"target\":\"VALUE\",\"result\":\"NOT_EQUAL\","
           "\"value\":\"eA==\"}]}",
           200, "{\"header\":" H(5) "}");
    EXPECT("/v3/kv/txn", "{\"compare\":[{\"key\":\"bm9uZQ==\",\"target\":\"VERSION\"}]}", 200,
           "{\"header\":" H(5) ",\"succeeded\":true}");
    /* Compare over an empty range: VERSION EQUAL 0 true, VALUE EQUAL "" false. */
    EXPECT("/v3/kv/txn",
           "{\"compare\":[{\"key\":\"bm90aGluZy8=\",\"range_end\":\"bm90aGluZzA=\","
           "\"target\":\"VERSION\",\"version\":0}]}",
           200, "{\"header\":" H(5) ",\"succeeded\":true}");
    /* Errors. */
    EXPECT(
        "/v3/kv/txn",
        "{\"success\":[{\"request_put\":{\"key\":\"YQ==\"}},{\"request_put\":{\"key\":\"YQ==\"}}]}",
        400, ERR("etcdserver: duplicate key given in txn request", 3));
    EXPECT("/v3/kv/txn",
           "{\"success\":[{\"request_put\":{\"key\":\"YQ==\"}},{\"request_delete_range\":{\"key\":"
           "\"AA==\",\"range_end\":\"Yg==\"}}]}",
           400, ERR("etcdserver: duplicate key given in txn request", 3));
    EXPECT("/v3/kv/txn",
           "{\"success\":[{\"request_put\":{\"key\":\"YQ==\"}}],\"failure\":[{\"request_put\":{"
           "\"key\":\"YQ==\"}}]}",
           200,
           "{\"header\":" H(6) ",\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":"
                               "{\"revision\":\"6\"}}}]}");
    EXPECT("/v3/kv/txn",
           "{\"success\":[{\"request_delete_range\":{\"key\":\"YQ==\"}},{\"request_delete_range\":"
           "{\"key\":\"YQ==\"}}]}",
           200,
           "{\"header\":" H(7) ",\"succeeded\":true,\"responses\":[{\"response_delete_range\":{"
                               "\"header\":{\"revision\":\"7\"},\"deleted\":\"1\"}},{"
                               "\"response_delete_range\":{\"header\":{\"revision\":\"7\"}}}]}");
    EXPECT("/v3/kv/txn",
           "{\"success\":[{\"request_put\":{\"key\":\"eg==\"}},{\"request_txn\":{\"success\":[{"
           "\"request_put\":{\"key\":\"eg==\"}}]}}]}",
           400, ERR("etcdserver: duplicate key given in txn request", 3));
    EXPECT("/v3/kv/txn", "{\"success\":[{}]}", 400, ERR("etcdserver: key not found", 3));
    EXPECT("/v3/kv/txn", "{\"success\":[{\"request_put\":{\"value\":\"eA==\"}}]}", 400,
           ERR("etcdserver: key is not provided", 3));
    EXPECT("/v3/kv/txn", "{\"compare\":[{\"target\":\"VERSION\"}]}", 400,
           ERR("etcdserver: key is not provided", 3));
    EXPECT("/v3/kv/txn", "{\"success\":[{\"request_range\":{}}]}", 400,
           ERR("etcdserver: key is not provided", 3));
    /* A range at a compacted revision inside the txn fails the whole txn. */
    free(tu_post(srv.port, "/v3/kv/compaction", "{\"revision\":4}", NULL));
    EXPECT("/v3/kv/txn",
           "{\"success\":[{\"request_put\":{\"key\":\"cQ==\"}},{\"request_range\":{\"key\":"
           "\"Zm9v\",\"revision\":2}}]}",
           400, ERR("etcdserver: mvcc: required revision has been compacted", 11));
    /* Two members of one union: etcd picks at random, we refuse. */
    int st;
    free(tu_post(srv.port, "/v3/kv/txn",
                 "{\"success\":[{\"request_range\":{\"key\":\"YQ==\"},\"request_delete_range\":{"
                 "\"key\":\"YQ==\"}}]}",
                 &st));
    ck_assert_int_eq(st, 400);
    free(tu_post(srv.port, "/v3/kv/txn",
                 "{\"compare\":[{\"key\":\"YQ==\",\"version\":1,\"createRevision\":2}]}", &st));
    ck_assert_int_eq(st, 400);
}
END_TEST

/* Each response inside a txn carries the revision at its own point of the txn (etcd 3.4's
 * storeTxnWrite): before the first write the store's, after it the new one; nested too. */
START_TEST(txn_inner_revisions)
{
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"YQ==\",\"value\":\"YQ==\"}", NULL));
    EXPECT("/v3/kv/txn",
           "{\"success\":[{\"request_range\":{\"key\":\"YQ==\",\"count_only\":true}},"
           "{\"request_delete_range\":{\"key\":\"eg==\"}},{\"request_txn\":{\"success\":[{"
           "\"request_range\":{\"key\":\"eg==\"}}]}},{\"request_put\":{\"key\":\"Yg==\"}},"
           "{\"request_range\":{\"key\":\"eg==\"}},{\"request_delete_range\":{\"key\":\"eg==\"}},"
           "{\"request_txn\":{\"success\":[{\"request_range\":{\"key\":\"eg==\"}}]}}]}",
           200,
           "{\"header\":" H(3) ",\"succeeded\":true,\"responses\":[{\"response_range\":{"
                               "\"header\":{\"revision\":\"2\"},\"count\":\"1\"}},{"
                               "\"response_delete_range\":{\"header\":{\"revision\":\"2\"}}},{"
                               "\"response_txn\":{\"header\":{},\"succeeded\":true,"
                               "\"responses\":[{\"response_range\":{\"header\":{\"revision\":"
                               "\"2\"}}}]}},{\"response_put\":{\"header\":{\"revision\":\"3\"}}},"
                               "{\"response_range\":{\"header\":{\"revision\":\"3\"}}},{"
                               "\"response_delete_range\":{\"header\":{\"revision\":\"3\"}}},{"
                               "\"response_txn\":{\"header\":{},\"succeeded\":true,"
                               "\"responses\":[{\"response_range\":{\"header\":{\"revision\":"
                               "\"3\"}}}]}}]}");
}
END_TEST

/* Go's ServeMux 301 to the cleaned path: Content-Type only for GET and HEAD, a body only for
 * GET, the Location escaped as url.URL writes a path, and "/v3beta" not found. */
START_TEST(redirects)
{
    static const struct {
        const char *method, *target, *location, *ctype, *body;
    } c[] = {
        {"POST", "//v3/kv/range", "/v3/kv/range", NULL, ""},
        {"POST", "/v3", "/v3/", NULL, ""},
        {"PUT", "/v3/kv/../kv/range?x=1", "/v3/kv/range?x=1", NULL, ""},
        {"GET", "//v3/kv/range", "/v3/kv/range", "text/html; charset=utf-8",
         "<a href=\"/v3/kv/range\">Moved Permanently</a>.\n\n"},
        {"GET", "//v3/kv/range?", "/v3/kv/range", "text/html; charset=utf-8",
         "<a href=\"/v3/kv/range\">Moved Permanently</a>.\n\n"},
        {"GET", "//v3/a%20b!*$&+,;=:@~?x=<y>&z", "/v3/a%20b%21%2A$&+,;=:@~?x=<y>&z",
         "text/html; charset=utf-8",
         "<a href=\"/v3/a%20b%21%2A$&amp;+,;=:@~?x=&lt;y&gt;&amp;z\">Moved Permanently</a>.\n\n"},
        {"GET", "//v3/%C3%A9?%C3%A9\xC3\xA9", "/v3/%C3%A9?%C3%A9%c3%a9", "text/html; charset=utf-8",
         "<a href=\"/v3/%C3%A9?%C3%A9\xC3\xA9\">Moved Permanently</a>.\n\n"},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct tu_resp r;
        tu_http(srv.port, c[i].method, c[i].target, NULL, &r);
        ck_assert_msg(r.status == 301, "%s %s: %d", c[i].method, c[i].target, r.status);
        ck_assert_str_eq(tu_header(&r, "Location"), c[i].location);
        const char *ct = tu_header(&r, "Content-Type");
        ck_assert_msg(c[i].ctype ? ct && strcmp(ct, c[i].ctype) == 0 : !ct, "%s %s: type %s",
                      c[i].method, c[i].target, ct ? ct : "(none)");
        ck_assert_str_eq(r.body, c[i].body);
        tu_resp_free(&r);
    }
    struct tu_resp r;
    tu_http(srv.port, "GET", "/v3beta", NULL, &r);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.body, "404 page not found\n");
    tu_resp_free(&r);
}
END_TEST

START_TEST(txn_limits)
{
    /* 128 ops pass, 129 do not. */
    size_t cap = 129 * 64 + 64;
    char *body = malloc(cap);
    for (int n = 128; n <= 129; n++) {
        size_t o = (size_t)snprintf(body, cap, "{\"success\":[");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(body + o, cap - o, "%s{\"request_range\":{\"key\":\"YQ==\"}}",
                                  i ? "," : "");
        snprintf(body + o, cap - o, "]}");
        int st;
        char *got = tu_post(srv.port, "/v3/kv/txn", body, &st);
        if (n == 128)
            ck_assert_int_eq(st, 200);
        else
            ck_assert_str_eq(got, ERR("etcdserver: too many operations in txn request", 3));
        free(got);
    }
    free(body);
    /* Nesting is bounded by the op budget alone, as in etcd 3.4: 129 levels of one op pass,
     * 130 do not. */
    for (size_t n = 128; n <= 129; n++) {
        char *deep = tu_nested("", n, "{\"success\":[{\"request_txn\":", "{}", "}]}", "");
        int st;
        char *got = tu_post(srv.port, "/v3/kv/txn", deep, &st);
        if (n == 128)
            ck_assert_msg(st == 200, "%zu levels: %d %s", n + 1, st, got);
        else
            ck_assert_str_eq(got, ERR("etcdserver: too many operations in txn request", 3));
        free(got);
        free(deep);
    }
}
END_TEST

START_TEST(compaction)
{
    for (int i = 0; i < 10; i++)
        free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"Yw==\",\"value\":\"dg==\"}", NULL));
    EXPECT("/v3/kv/compaction", "{\"revision\":5,\"physical\":true}", 200,
           "{\"header\":" H(11) "}");
    EXPECT("/v3/kv/compaction", "{\"revision\":5}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
    EXPECT("/v3/kv/compaction", "{\"revision\":3}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
    EXPECT("/v3/kv/compaction", "{}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
    EXPECT("/v3/kv/compaction", "{\"revision\":100}", 400,
           ERR("etcdserver: mvcc: required revision is a future revision", 11));
    EXPECT("/v3/kv/range", "{\"key\":\"Yw==\",\"revision\":4}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
    EXPECT("/v3/kv/range", "{\"key\":\"Yw==\",\"revision\":5}", 200,
           "{\"header\":" H(11) ",\"kvs\":[{\"key\":\"Yw==\",\"create_revision\":\"2\","
                                "\"mod_revision\":\"5\",\"version\":\"4\",\"value\":\"dg==\"}],"
                                "\"count\":\"1\"}");
    EXPECT("/v3/kv/compaction", "{\"revision\":8}", 200, "{\"header\":" H(11) "}");
}
END_TEST

START_TEST(compaction_at_zero)
{
    /* etcd's compaction point is -1 until the first compaction, so a fresh store takes one at
     * revision 0 ({} too), once; it is remembered across a restart. */
    EXPECT("/v3/kv/compaction", "{\"revision\":-1}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
    EXPECT("/v3/kv/compaction", "{}", 200, "{\"header\":" H(1) "}");
    EXPECT("/v3/kv/compaction", "{\"revision\":0,\"physical\":true}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
    EXPECT("/v3/kv/put", "{\"key\":\"Yw==\",\"value\":\"dg==\"}", 200, "{\"header\":" H(2) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"Yw==\",\"count_only\":true}", 200,
           "{\"header\":" H(2) ",\"count\":\"1\"}");
    tu_server_stop_keep(&srv, 1);
    tu_server_restart(&srv, NULL);
    EXPECT("/v3/kv/compaction", "{\"revision\":0}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
    EXPECT("/v3/kv/compaction", "{\"revision\":1,\"physical\":true}", 200, "{\"header\":" H(2) "}");
    EXPECT("/v3/kv/compaction", "{\"revision\":1}", 400,
           ERR("etcdserver: mvcc: required revision has been compacted", 11));
}
END_TEST

/* {"key":"Zm9v","count_only":true,"x":[[...1...]]} with `levels` arrays (malloc'd). */
static char *deep_body(size_t levels)
{
    return tu_nested("{\"key\":\"Zm9v\",\"count_only\":true,\"x\":", levels, "[", "1", "]", "}");
}

START_TEST(wire_limits)
{
    /* Nesting: etcd's decoder (Go's encoding/json) takes 10000 open containers, counting the
     * body's own object, and refuses the 10001st. */
    char *ok = deep_body(9999), *over = deep_body(10000);
    EXPECT("/v3/kv/range", ok, 200, "{\"header\":" H(1) "}");
    EXPECT("/v3/kv/range", over, 400, ERR("invalid character '[' exceeded max depth", 3));
    free(ok);
    free(over);
    /* Enums: any int32 is taken; errors name the enum's Go type. */
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"sort_order\":2147483648}", 400,
           ERR("json: cannot unmarshal number 2147483648 into Go value of type "
               "etcdserverpb.RangeRequest_SortOrder",
               3));
    EXPECT("/v3/kv/txn", "{\"compare\":[{\"key\":\"Zm9v\",\"target\":true}]}", 400,
           ERR("json: cannot unmarshal bool into Go value of type "
               "etcdserverpb.Compare_CompareTarget",
               3));
    /* bytes as an array of byte values. */
    EXPECT("/v3/kv/put", "{\"key\":[102,111,111],\"value\":[]}", 200, "{\"header\":" H(2) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\"}", 200,
           "{\"header\":" H(2) ",\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
                               "\"mod_revision\":\"2\",\"version\":\"1\"}],\"count\":\"1\"}");
    /* An unknown compare result holds (etcd compareKV). */
    EXPECT(
        "/v3/kv/txn",
        "{\"compare\":[{\"key\":\"Zm9v\",\"result\":99,\"target\":\"VALUE\",\"value\":\"eA==\"}]}",
        200, "{\"header\":" H(2) ",\"succeeded\":true}");
    EXPECT("/v3/kv/range", "{\"key\":[256]}", 400,
           ERR("json: cannot unmarshal number 256 into Go value of type uint8", 3));
    EXPECT("/v3/kv/range", "{\"key\":[]}", 400, ERR("etcdserver: key is not provided", 3));
    /* An integer in a string is a document of its own, escapes and all. */
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":\"-\"}", 400,
           ERR("invalid character ' ' in numeric literal", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":\"[1\"}", 400,
           ERR("unexpected end of JSON input", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":\"\\u0031\"}", 400,
           ERR("invalid character '\\\\\\\\' looking for beginning of value", 3));
}
END_TEST

START_TEST(request_errors)
{
    EXPECT("/v3/kv/put", "{\"value\":\"YQ==\"}", 400, ERR("etcdserver: key is not provided", 3));
    EXPECT("/v3/kv/range", "{}", 400, ERR("etcdserver: key is not provided", 3));
    EXPECT("/v3/kv/range", "", 400, ERR("etcdserver: key is not provided", 3));
    EXPECT("/v3/kv/range", "null", 400, ERR("etcdserver: key is not provided", 3));
    EXPECT("/v3/kv/deleterange", "{}", 400, ERR("etcdserver: key is not provided", 3));
    EXPECT("/v3/kv/put", "{\"key\":\"YQ==\",\"value\":\"YQ==\",\"ignore_value\":true}", 400,
           ERR("etcdserver: value is provided", 3));
    EXPECT("/v3/kv/put", "{\"key\":\"YQ==\",\"lease\":5,\"ignore_lease\":true}", 400,
           ERR("etcdserver: lease is provided", 3));
    EXPECT("/v3/kv/put", "{\"key\":\"bm9wZQ==\",\"ignore_value\":true}", 400,
           ERR("etcdserver: key not found", 3));
    EXPECT("/v3/kv/put", "{\"key\":\"bm9wZQ==\",\"ignore_lease\":true}", 400,
           ERR("etcdserver: key not found", 3));
    /* Decoder errors, worded as Go's. */
    EXPECT("/v3/kv/range", "{\"key\":", 400, ERR("unexpected EOF", 3));
    EXPECT("/v3/kv/range", "[1,2]", 400,
           ERR("json: cannot unmarshal array into Go value of type map[string]json.RawMessage", 3));
    EXPECT(
        "/v3/kv/range", "\"abc\"", 400,
        ERR("json: cannot unmarshal string into Go value of type map[string]json.RawMessage", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"!!!notbase64\"}", 400,
           ERR("illegal base64 data at input byte 0", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9vYg\"}", 400,
           ERR("illegal base64 data at input byte 4", 3));
    EXPECT("/v3/kv/put", "{\"key\":\"-_-_\",\"value\":\"-_8=\"}", 400,
           ERR("illegal base64 data at input byte 0", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":true}", 400,
           ERR("json: cannot unmarshal bool into Go value of type int64", 3));
    EXPECT("/v3/kv/range", "{\"key\":123}", 400,
           ERR("json: cannot unmarshal number into Go value of type []uint8", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":2.5}", 400,
           ERR("json: cannot unmarshal number 2.5 into Go value of type int64", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":2.0}", 400,
           ERR("json: cannot unmarshal number 2.0 into Go value of type int64", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":1e1}", 400,
           ERR("json: cannot unmarshal number 1e1 into Go value of type int64", 3));
    EXPECT(
        "/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":99999999999999999999}", 400,
        ERR("json: cannot unmarshal number 99999999999999999999 into Go value of type int64", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":\"abc\"}", 400,
           ERR("invalid character 'a' looking for beginning of value", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"count_only\":\"true\"}", 400,
           ERR("json: cannot unmarshal string into Go value of type bool", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"sort_order\":\"BOGUS\"}", 400,
           ERR("unknown value \\\"BOGUS\\\" for enum etcdserverpb.RangeRequest_SortOrder", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"sort_order\":\"descend\"}", 400,
           ERR("unknown value \\\"descend\\\" for enum etcdserverpb.RangeRequest_SortOrder", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"sort_order\":\"<a&b>\"}", 400,
           ERR("unknown value \\\"\\u003ca\\u0026b\\u003e\\\" for enum "
               "etcdserverpb.RangeRequest_SortOrder",
               3));
    EXPECT("/v3/kv/txn", "{\"success\":{}}", 400,
           ERR("json: cannot unmarshal object into Go value of type []json.RawMessage", 3));
    EXPECT("/v3/kv/range", "{\"key\" \"x\"}", 400,
           ERR("invalid character '\\\"' after object key", 3));
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\",\"limit\":1 2}", 400,
           ERR("invalid character '2' after object key:value pair", 3));
    EXPECT("/v3/kv/range", "xyz", 400,
           ERR("invalid character 'x' looking for beginning of value", 3));
    /* Standard base64 with padding and JSON escapes are fine. */
    EXPECT("/v3/kv/range", "{\"key\":\"+/+/\"}", 200, "{\"header\":" H(1) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"Zm9v\\n\",\"count_only\":true}", 200,
           "{\"header\":" H(1) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"\\u005am9v\",\"count_only\":true}", 200,
           "{\"header\":" H(1) "}");
}
END_TEST

START_TEST(size_limits)
{
    /* 1,600,000-byte value: over --max-request-bytes. 1,500,000: fine. 2,200,000: over the
     * gRPC limit (429). */
    size_t sizes[] = {1600000, 1500000, 2200000};
    for (int i = 0; i < 3; i++) {
        size_t raw = sizes[i], enc = (raw + 2) / 3 * 4;
        char *body = malloc(enc + 64);
        size_t o = (size_t)sprintf(body, "{\"key\":\"YmlnZw==\",\"value\":\"");
        /* "aaa" is "YWFh" in base64. */
        for (size_t k = 0; k < raw / 3; k++) {
            memcpy(body + o, "YWFh", 4);
            o += 4;
        }
        if (raw % 3) {
            memcpy(body + o, raw % 3 == 1 ? "YQ==" : "YWE=", 4);
            o += 4;
        }
        strcpy(body + o, "\"}");
        int st;
        char *got = tu_post(srv.port, "/v3/kv/put", body, &st);
        if (i == 0) {
            ck_assert_int_eq(st, 400);
            ck_assert_str_eq(got, ERR("etcdserver: request is too large", 3));
        } else if (i == 1) {
            ck_assert_int_eq(st, 200);
            ck_assert_str_eq(got, "{\"header\":" H(2) "}");
        } else {
            ck_assert_int_eq(st, 429);
            ck_assert_str_eq(got, ERR("grpc: received message larger than max (2200011 vs. "
                                      "2097152)",
                                      8));
        }
        free(got);
        free(body);
    }
    /* A body far over every limit is refused by the HTTP layer and the server stays up. */
    size_t huge = 8u << 20;
    char *body = malloc(huge + 1);
    memset(body, 'a', huge);
    body[huge] = 0;
    struct tu_resp r;
    tu_http(srv.port, "POST", "/v3/kv/put", body, &r);
    ck_assert_int_eq(r.status, 413);
    tu_resp_free(&r);
    free(body);
    EXPECT("/v3/kv/range", "{\"key\":\"YmlnZw==\",\"count_only\":true}", 200,
           "{\"header\":" H(2) ",\"count\":\"1\"}");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gw_kv");
    struct {
        const char *name;
        const TTest *tests[5];
    } cases[] = {
        {"put_range", {put_and_range, range_options, delete_range, NULL}},
        {"txn", {txn, txn_limits, txn_inner_revisions, NULL}},
        {"compact", {compaction, compaction_at_zero, NULL}},
        {"errors", {request_errors, size_limits, wire_limits, redirects, NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        for (int j = 0; cases[i].tests[j]; j++)
            tcase_add_test(tc, cases[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}
