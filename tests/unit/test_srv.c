/* test_srv.c - the server module's log entry codec: every request kind survives a round trip,
 * and truncated or corrupted entries are refused without a crash. */
#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/srv.h"
#include "srv_int.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define B(s) (const uint8_t *)(s), (sizeof(s) - 1)

static struct kv_txn_req inner = {
    .failure =
        (struct kv_op[]){{.type = KV_OP_DELETE,
                          .u.del = {.span = {.key = B("d"), .end = B("e"), .end_kind = KV_END_KEY},
                                    .prev_kv = true}}},
    .n_failure = 1,
};

static struct kv_cmp cmps[2] = {
    {.span = {.key = B("k"), .end_kind = KV_END_ALL},
     .target = KV_CMP_VALUE,
     .result = KV_CMP_NOT_EQUAL,
     .set = KV_CMP_VALUE,
     .value = B("v")},
    {.span = {.key = B("k2")}, .target = 9, .result = -3, .set = -1, .number = INT64_MIN},
};

static struct kv_op succ[4] = {
    {.type = KV_OP_PUT,
     .u.put =
         {.key = B("p"), .value = B("val"), .lease = -7, .prev_kv = true, .ignore_lease = false}},
    {.type = KV_OP_RANGE,
     .u.range = {.span = {.key = B("r")},
                 .limit = 5,
                 .revision = 3,
                 .sort_order = 2,
                 .sort_target = 4,
                 .keys_only = true,
                 .count_only = true,
                 .min_mod_revision = 1,
                 .max_create_revision = INT64_MAX}},
    {.type = KV_OP_TXN, .u.txn = &inner},
    {.type = KV_OP_NONE},
};

static void encode(const struct srv_req *r, uint64_t id, struct buf *b)
{
    buf_init(b);
    srv_entry_encode(id, r, b);
    ck_assert(!buf_failed(b));
}

START_TEST(roundtrip)
{
    struct srv_req reqs[4] = {
        {.type = SRV_REQ_PUT, .u.put = {.key = B("a"), .value = B(""), .ignore_value = true}},
        {.type = SRV_REQ_DELETE, .u.del = {.span = {.key = B("a"), .end_kind = KV_END_ALL}}},
        {.type = SRV_REQ_TXN,
         .u.txn = {.cmps = cmps, .n_cmps = 2, .success = succ, .n_success = 4}},
        {.type = SRV_REQ_COMPACT, .u.compact = {.revision = 42, .physical = true}},
    };
    for (int i = 0; i < 4; i++) {
        struct buf b, b2;
        encode(&reqs[i], 1000u + (uint64_t)i, &b);
        struct arena *a = arena_create(256);
        struct srv_req out;
        uint64_t id;
        ck_assert(srv_entry_decode(b.p, b.len, a, &id, &out));
        ck_assert_uint_eq(id, 1000u + (uint64_t)i);
        ck_assert_int_eq(out.type, reqs[i].type);
        /* Re-encoding the decoded request gives the same bytes. */
        encode(&out, id, &b2);
        ck_assert_uint_eq(b.len, b2.len);
        ck_assert(memcmp(b.p, b2.p, b.len) == 0);
        if (out.type == SRV_REQ_TXN) {
            ck_assert_int_eq(out.u.txn.cmps[1].number, INT64_MIN);
            ck_assert_int_eq(out.u.txn.success[0].u.put.lease, -7);
            ck_assert_int_eq(out.u.txn.success[1].u.range.max_create_revision, INT64_MAX);
            ck_assert_int_eq(out.u.txn.success[2].u.txn->failure[0].u.del.span.end_kind,
                             KV_END_KEY);
            ck_assert_int_eq(out.u.txn.success[3].type, KV_OP_NONE);
        }
        buf_fini(&b);
        buf_fini(&b2);
        arena_destroy(a);
    }
}
END_TEST

START_TEST(corrupt_entries)
{
    struct srv_req r = {.type = SRV_REQ_TXN,
                        .u.txn = {.cmps = cmps, .n_cmps = 2, .success = succ, .n_success = 4}};
    struct buf b;
    encode(&r, 7, &b);
    struct arena *a = arena_create(256);
    struct srv_req out;
    uint64_t id;
    /* Every strict prefix is refused. */
    for (size_t n = 0; n < b.len; n++)
        ck_assert_msg(!srv_entry_decode(b.p, n, a, &id, &out), "prefix %zu accepted", n);
    /* A trailing byte is refused. */
    uint8_t *longer = malloc(b.len + 1);
    memcpy(longer, b.p, b.len);
    longer[b.len] = 0;
    ck_assert(!srv_entry_decode(longer, b.len + 1, a, &id, &out));
    free(longer);
    /* Flipping each byte either still decodes or is refused, never crashes. */
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.p[i] ^= (uint8_t)(1 << bit);
            srv_entry_decode(b.p, b.len, a, &id, &out);
            b.p[i] ^= (uint8_t)(1 << bit);
        }
        arena_reset(a);
    }
    /* Unknown version and type. */
    uint8_t bad[] = {2, 2, 0};
    ck_assert(!srv_entry_decode(bad, sizeof(bad), a, &id, &out));
    uint8_t bad2[] = {1, 99, 0};
    ck_assert(!srv_entry_decode(bad2, sizeof(bad2), a, &id, &out));
    /* A huge declared count with few bytes is refused before allocating. */
    uint8_t huge[] = {1, SRV_REQ_TXN, 0, 0xff, 0xff, 0xff, 0xff, 0x0f};
    ck_assert(!srv_entry_decode(huge, sizeof(huge), a, &id, &out));
    arena_destroy(a);
    buf_fini(&b);
}
END_TEST

START_TEST(compactor_periodic)
{
    /* retention 10 s: a revision is recorded every second and the one recorded 10 s ago is
     * compacted, first after 10 s, then (period < 1 h) every period. */
    struct srv_compactor c;
    uint64_t t = 1000000;
    int64_t rev = 100;
    srv_compactor_init(&c, false, 10000, t, rev);
    ck_assert_uint_eq(c.interval_ms, 1000);
    int64_t got = 0, first_at = 0;
    int compactions = 0;
    for (int i = 1; i <= 40; i++) {
        t += 1000;
        rev += 10; /* 10 revisions per second */
        int64_t r = srv_compactor_tick(&c, t, rev);
        if (r) {
            compactions++;
            if (!first_at)
                first_at = i;
            /* Always a revision from about one retention period ago. */
            ck_assert_int_le(r, rev - 100);
            ck_assert_int_ge(r, rev - 120);
            ck_assert_int_gt(r, got);
            got = r;
        }
    }
    ck_assert_int_eq(first_at, 10);
    ck_assert_int_ge(compactions, 3);
    ck_assert_int_le(compactions, 4);
    /* Long retention: checks are capped at 6 minutes, compaction every hour at most. */
    srv_compactor_init(&c, false, 24ULL * 3600 * 1000, t, rev);
    ck_assert_uint_eq(c.interval_ms, 360000);
    /* Disabled. */
    srv_compactor_init(&c, false, 0, t, rev);
    ck_assert_uint_eq(c.interval_ms, 0);
    ck_assert_int_eq(srv_compactor_tick(&c, t + 1000000, rev), 0);
}
END_TEST

START_TEST(compactor_revision)
{
    struct srv_compactor c;
    srv_compactor_init(&c, true, 1000, 0, 1);
    ck_assert_uint_eq(c.interval_ms, 300000);
    ck_assert_int_eq(srv_compactor_tick(&c, 300000, 500), 0);    /* not enough history */
    ck_assert_int_eq(srv_compactor_tick(&c, 600000, 1500), 500); /* current - retention */
    ck_assert_int_eq(srv_compactor_tick(&c, 900000, 1500), 0);   /* nothing new */
    ck_assert_int_eq(srv_compactor_tick(&c, 1200000, 4000), 3000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("srv");
    TCase *tc = tcase_create("entry");
    tcase_add_test(tc, roundtrip);
    tcase_add_test(tc, corrupt_entries);
    suite_add_tcase(s, tc);
    tc = tcase_create("compactor");
    tcase_add_test(tc, compactor_periodic);
    tcase_add_test(tc, compactor_revision);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
