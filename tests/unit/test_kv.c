/* test_kv.c - MVCC store: revisions, ranges, txns, compaction, restore, history.
 * Usage: test_kv <memory|lmdb>. */
#include "metastore/arena.h"
#include "metastore/be.h"
#include "metastore/kv.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *backend_name = "memory";
static struct be *be;
static char *dir;
static struct be_txn *txn;
static struct kv_store *kv;
static struct arena *ar;

static void open_be(void)
{
    ms_err err;
    if (strcmp(backend_name, "lmdb") == 0) {
        if (!dir)
            dir = tu_mkdtemp("ms-test-kv");
        be = be_lmdb_open(dir, 256u << 20, &err);
    } else {
        be = be_skiplist_open();
    }
    ck_assert_ptr_nonnull(be);
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &txn), MS_OK);
    kv = kv_store_open(txn, &err);
    ck_assert_ptr_nonnull(kv);
}

static void setup(void)
{
    ar = arena_create(4096);
    open_be();
}

static void teardown(void)
{
    kv_store_close(kv);
    if (txn)
        be_txn_commit(txn);
    txn = NULL;
    be_close(be);
    arena_destroy(ar);
    if (dir) {
        tu_rmtree(dir);
        free(dir);
        dir = NULL;
    }
}

/* Commit, close everything but the data, and reopen (restore from the backend). On the
 * memory backend the backend object itself survives. */
static void reopen(void)
{
    kv_store_close(kv);
    ck_assert_int_eq(be_txn_commit(txn), MS_OK);
    ms_err err;
    if (strcmp(backend_name, "lmdb") == 0) {
        be_close(be);
        be = be_lmdb_open(dir, 256u << 20, &err);
        ck_assert_ptr_nonnull(be);
    }
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &txn), MS_OK);
    kv = kv_store_open(txn, &err);
    ck_assert_ptr_nonnull(kv);
}

#define B(s) (const uint8_t *)(s), strlen(s)

static int64_t put(const char *k, const char *v)
{
    struct kv_write *w;
    struct kv_put_resp r;
    struct kv_put_req req = {.key = (const uint8_t *)k,
                             .key_len = strlen(k),
                             .value = (const uint8_t *)v,
                             .value_len = strlen(v)};
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ck_assert_int_eq(kv_write_put(w, &req, &r), MS_OK);
    struct kv_event *ev;
    size_t n;
    kv_write_end(w, &ev, &n);
    ck_assert_uint_eq(n, 1);
    return r.revision;
}

static int64_t del(const char *k, const char *end, int64_t *deleted)
{
    struct kv_write *w;
    struct kv_del_resp r;
    struct kv_del_req req = {.span = {.key = (const uint8_t *)k, .key_len = strlen(k)}};
    if (end) {
        req.span.end = (const uint8_t *)end;
        req.span.end_len = strlen(end);
        req.span.end_kind = strlen(end) ? KV_END_KEY : KV_END_ALL;
    }
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ck_assert_int_eq(kv_write_del(w, &req, &r), MS_OK);
    struct kv_event *ev;
    size_t n;
    kv_write_end(w, &ev, &n);
    ck_assert_uint_eq(n, (size_t)r.deleted);
    if (deleted)
        *deleted = r.deleted;
    return r.revision;
}

static ms_err get_at(const char *k, int64_t rev, struct kv_range_resp *out)
{
    struct kv_range_req req = {.span = {.key = (const uint8_t *)k, .key_len = strlen(k)},
                               .revision = rev};
    return kv_range(kv, txn, &req, ar, out);
}

static struct kv_range_resp prefix(const char *p, int64_t limit)
{
    struct kv_range_resp r;
    char end[64];
    snprintf(end, sizeof(end), "%s", p);
    end[strlen(end) - 1]++;
    struct kv_range_req req = {.span = {.key = (const uint8_t *)p,
                                        .key_len = strlen(p),
                                        .end = (const uint8_t *)end,
                                        .end_len = strlen(end),
                                        .end_kind = KV_END_KEY},
                               .limit = limit};
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    return r;
}

START_TEST(put_revisions_and_versions)
{
    ck_assert_int_eq(kv_current_rev(kv), 1);
    ck_assert_int_eq(put("foo", "bar"), 2);
    ck_assert_int_eq(put("foo", "bar2"), 3);
    ck_assert_int_eq(put("new", "v"), 4);
    struct kv_range_resp r;
    ck_assert_int_eq(get_at("foo", 0, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 1);
    ck_assert_int_eq(r.count, 1);
    ck_assert_int_eq(r.revision, 4);
    ck_assert(tu_bytes_eq(r.kvs[0].value, r.kvs[0].value_len, "bar2"));
    ck_assert_int_eq(r.kvs[0].create_revision, 2);
    ck_assert_int_eq(r.kvs[0].mod_revision, 3);
    ck_assert_int_eq(r.kvs[0].version, 2);
    /* Historical read: header still says the current revision. */
    ck_assert_int_eq(get_at("foo", 2, &r), MS_OK);
    ck_assert(tu_bytes_eq(r.kvs[0].value, r.kvs[0].value_len, "bar"));
    ck_assert_int_eq(r.kvs[0].version, 1);
    ck_assert_int_eq(r.revision, 4);
    ck_assert_int_eq(get_at("foo", 1, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 0);
    ck_assert_int_eq(get_at("foo", 5, &r), MS_E_FUTURE_REV);
    ck_assert_int_eq(get_at("nope", 0, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 0);
    ck_assert_int_eq(r.count, 0);
}
END_TEST

START_TEST(delete_and_recreate)
{
    put("a", "1"); /* 2 */
    put("a", "2"); /* 3 */
    int64_t d;
    ck_assert_int_eq(del("a", NULL, &d), 4);
    ck_assert_int_eq(d, 1);
    ck_assert_int_eq(del("a", NULL, &d), 4); /* nothing deleted: no new revision */
    ck_assert_int_eq(d, 0);
    ck_assert_int_eq(kv_live_keys(kv), 0);
    struct kv_range_resp r;
    ck_assert_int_eq(get_at("a", 0, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 0);
    ck_assert_int_eq(get_at("a", 3, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 1);
    ck_assert_int_eq(put("a", "3"), 5);
    ck_assert_int_eq(get_at("a", 0, &r), MS_OK);
    ck_assert_int_eq(r.kvs[0].version, 1);
    ck_assert_int_eq(r.kvs[0].create_revision, 5);
    /* Multi-key delete takes one revision with sub-revisions. */
    put("p/1", "x");
    put("p/2", "x");
    put("p/3", "x");
    ck_assert_int_eq(del("p/", "p0", &d), 9);
    ck_assert_int_eq(d, 3);
    /* range_end "\0" means every key >= key. */
    put("z1", "x");
    put("z2", "x");
    ck_assert_int_eq(del("a", "", &d), 12);
    ck_assert_int_eq(d, 3);
    ck_assert_int_eq(kv_live_keys(kv), 0);
}
END_TEST

START_TEST(range_limit_sort_filters)
{
    put("k/a", "val-a");  /* 2 */
    put("k/b", "val-b");  /* 3 */
    put("k/c", "c");      /* 4 */
    put("k/d", "d");      /* 5 */
    put("k/e", "e");      /* 6 */
    put("k/b", "val-b2"); /* 7 */
    put("other", "o");
    struct kv_range_resp r = prefix("k/", 2);
    ck_assert_uint_eq(r.n_kvs, 2);
    ck_assert(r.more);
    ck_assert_int_eq(r.count, 5);
    r = prefix("k/", 5);
    ck_assert(!r.more);
    r = prefix("k/", -1);
    ck_assert_uint_eq(r.n_kvs, 5);

    struct kv_range_req req = {.span = {.key = B("k/"), .end = B("k0"), .end_kind = KV_END_KEY},
                               .count_only = true,
                               .limit = 1};
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 0);
    ck_assert_int_eq(r.count, 5);
    ck_assert(!r.more);

    /* min_mod_revision filters after counting. */
    memset(&req, 0, sizeof(req));
    req.span = (struct kv_span){.key = B("k/"), .end = B("k0"), .end_kind = KV_END_KEY};
    req.min_mod_revision = 5;
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 3);
    ck_assert_int_eq(r.count, 5);

    /* VERSION DESCEND: k/b (v2) first, ties in key order. */
    memset(&req, 0, sizeof(req));
    req.span = (struct kv_span){.key = B("k/"), .end = B("k0"), .end_kind = KV_END_KEY};
    req.sort_target = KV_SORT_VERSION;
    req.sort_order = KV_SORT_DESCEND;
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    const char *want[] = {"k/b", "k/a", "k/c", "k/d", "k/e"};
    for (int i = 0; i < 5; i++)
        ck_assert(tu_bytes_eq(r.kvs[i].key, r.kvs[i].key_len, want[i]));
    /* MOD with no order sorts ascending by mod revision. */
    req.sort_target = KV_SORT_MOD;
    req.sort_order = KV_SORT_NONE;
    req.limit = 1;
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    ck_assert(tu_bytes_eq(r.kvs[0].key, r.kvs[0].key_len, "k/a"));
    ck_assert(r.more);
    /* KEY DESCEND with limit. */
    req.sort_target = KV_SORT_KEY;
    req.sort_order = KV_SORT_DESCEND;
    req.limit = 2;
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    ck_assert(tu_bytes_eq(r.kvs[0].key, r.kvs[0].key_len, "k/e"));
    ck_assert(tu_bytes_eq(r.kvs[1].key, r.kvs[1].key_len, "k/d"));
    /* VALUE ascending, keys only: values dropped after sorting. */
    req.sort_target = KV_SORT_VALUE;
    req.sort_order = KV_SORT_ASCEND;
    req.limit = 0;
    req.keys_only = true;
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    ck_assert(tu_bytes_eq(r.kvs[0].key, r.kvs[0].key_len, "k/c"));
    ck_assert(tu_bytes_eq(r.kvs[4].key, r.kvs[4].key_len, "k/b"));
    ck_assert_uint_eq(r.kvs[0].value_len, 0);
    ck_assert_int_eq(r.kvs[0].version, 1);

    /* key > range_end: nothing. */
    memset(&req, 0, sizeof(req));
    req.span = (struct kv_span){.key = B("k/z"), .end = B("k/a"), .end_kind = KV_END_KEY};
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    ck_assert_int_eq(r.count, 0);
    /* "\0" end: every key >= key. */
    req.span = (struct kv_span){.key = B("k/c"), .end_kind = KV_END_ALL};
    ck_assert_int_eq(kv_range(kv, txn, &req, ar, &r), MS_OK);
    ck_assert_int_eq(r.count, 4);
}
END_TEST

static struct kv_txn_resp *run_txn(const struct kv_txn_req *t, ms_err want)
{
    struct kv_write *w;
    struct kv_txn_resp *r = arena_calloc(ar, 1, sizeof(*r));
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ms_err e = kv_write_txn(w, t, r);
    ck_assert_int_eq(e, want);
    if (e) {
        kv_write_abort(w);
        return NULL;
    }
    struct kv_event *ev;
    size_t n;
    kv_write_end(w, &ev, &n);
    return r;
}

START_TEST(txn_compare_semantics)
{
    put("foo", "bar2"); /* 2 */
    struct kv_cmp c = {.span = {.key = B("foo")},
                       .target = KV_CMP_VALUE,
                       .result = KV_CMP_EQUAL,
                       .set = KV_CMP_VALUE,
                       .value = B("bar2")};
    struct kv_op succ[2] = {
        {.type = KV_OP_PUT, .u.put = {.key = B("foo"), .value = B("bar3"), .prev_kv = true}},
        {.type = KV_OP_RANGE, .u.range = {.span = {.key = B("foo")}}},
    };
    struct kv_op fail[1] = {{.type = KV_OP_RANGE, .u.range = {.span = {.key = B("foo")}}}};
    struct kv_txn_req t = {
        .cmps = &c, .n_cmps = 1, .success = succ, .n_success = 2, .failure = fail, .n_failure = 1};
    ck_assert_int_eq(kv_check_txn(&t, 128), MS_OK);
    struct kv_txn_resp *r = run_txn(&t, MS_OK);
    ck_assert(r->succeeded);
    ck_assert_int_eq(r->revision, 3);
    ck_assert_uint_eq(r->n_resps, 2);
    ck_assert_int_eq(r->resps[0].u.put.revision, 3);
    ck_assert(tu_bytes_eq(r->resps[0].u.put.prev_kv->value, r->resps[0].u.put.prev_kv->value_len,
                          "bar2"));
    /* The range after the put sees it. */
    ck_assert(tu_bytes_eq(r->resps[1].u.range.kvs[0].value, r->resps[1].u.range.kvs[0].value_len,
                          "bar3"));
    ck_assert_int_eq(r->resps[1].u.range.revision, 3);
    /* Same again: compare now false, failure branch, no new revision. */
    r = run_txn(&t, MS_OK);
    ck_assert(!r->succeeded);
    ck_assert_int_eq(r->revision, 3);
    ck_assert_int_eq(kv_current_rev(kv), 3);

    /* VALUE compare on a missing key is false even for NOT_EQUAL. */
    struct kv_cmp c2 = {.span = {.key = B("missing")},
                        .target = KV_CMP_VALUE,
                        .result = KV_CMP_NOT_EQUAL,
                        .set = KV_CMP_VALUE,
                        .value = B("x")};
    struct kv_txn_req t2 = {.cmps = &c2, .n_cmps = 1};
    ck_assert(!run_txn(&t2, MS_OK)->succeeded);
    /* VERSION EQUAL 0 on a missing key is true. */
    struct kv_cmp c3 = {.span = {.key = B("missing")},
                        .target = KV_CMP_VERSION,
                        .result = KV_CMP_EQUAL,
                        .set = KV_CMP_VERSION,
                        .number = 0};
    t2.cmps = &c3;
    ck_assert(run_txn(&t2, MS_OK)->succeeded);
    /* A compare whose union member does not match the target compares against zero. */
    struct kv_cmp c4 = {.span = {.key = B("foo")},
                        .target = KV_CMP_VERSION,
                        .result = KV_CMP_GREATER,
                        .set = KV_CMP_VALUE,
                        .value = B("zzz")};
    t2.cmps = &c4;
    ck_assert(run_txn(&t2, MS_OK)->succeeded);
    /* Empty txn succeeds. */
    struct kv_txn_req empty = {0};
    ck_assert(run_txn(&empty, MS_OK)->succeeded);
}
END_TEST

START_TEST(txn_nested_and_errors)
{
    put("a", "1"); /* 2 */
    struct kv_cmp inner_c = {.span = {.key = B("a")},
                             .target = KV_CMP_VALUE,
                             .result = KV_CMP_EQUAL,
                             .set = KV_CMP_VALUE,
                             .value = B("nope")};
    struct kv_op inner_fail[2] = {
        {.type = KV_OP_PUT, .u.put = {.key = B("b"), .value = B("2")}},
        {.type = KV_OP_RANGE, .u.range = {.span = {.key = B("b")}}},
    };
    struct kv_txn_req inner = {
        .cmps = &inner_c, .n_cmps = 1, .failure = inner_fail, .n_failure = 2};
    struct kv_op outer_succ[2] = {
        {.type = KV_OP_TXN, .u.txn = &inner},
        {.type = KV_OP_PUT, .u.put = {.key = B("c"), .value = B("3")}},
    };
    struct kv_txn_req outer = {.success = outer_succ, .n_success = 2};
    ck_assert_int_eq(kv_check_txn(&outer, 128), MS_OK);
    struct kv_txn_resp *r = run_txn(&outer, MS_OK);
    ck_assert(r->succeeded);
    ck_assert_int_eq(r->revision, 3);
    struct kv_txn_resp *in = r->resps[0].u.txn;
    ck_assert(!in->succeeded);
    ck_assert_int_eq(in->resps[0].u.put.revision, 3);
    ck_assert_uint_eq(in->resps[1].u.range.n_kvs, 1);

    /* Duplicate writes in one branch. */
    struct kv_op dup[2] = {
        {.type = KV_OP_PUT, .u.put = {.key = B("x")}},
        {.type = KV_OP_PUT, .u.put = {.key = B("x")}},
    };
    struct kv_txn_req td = {.success = dup, .n_success = 2};
    ck_assert_int_eq(kv_check_txn(&td, 128), MS_E_DUPLICATE_KEY);
    /* Same key in success and failure is fine. */
    struct kv_txn_req tsf = {.success = dup, .n_success = 1, .failure = dup + 1, .n_failure = 1};
    ck_assert_int_eq(kv_check_txn(&tsf, 128), MS_OK);
    /* Put covered by a delete range. */
    struct kv_op pd[2] = {
        {.type = KV_OP_DELETE,
         .u.del = {.span = {.key = B("w"), .end = B("y"), .end_kind = KV_END_KEY}}},
        {.type = KV_OP_PUT, .u.put = {.key = B("x")}},
    };
    td.success = pd;
    ck_assert_int_eq(kv_check_txn(&td, 128), MS_E_DUPLICATE_KEY);
    /* Two deletes of one key are allowed. */
    struct kv_op dd[2] = {
        {.type = KV_OP_DELETE, .u.del = {.span = {.key = B("a")}}},
        {.type = KV_OP_DELETE, .u.del = {.span = {.key = B("a")}}},
    };
    td.success = dd;
    ck_assert_int_eq(kv_check_txn(&td, 128), MS_OK);
    r = run_txn(&td, MS_OK);
    ck_assert_int_eq(r->resps[0].u.del.deleted, 1);
    ck_assert_int_eq(r->resps[1].u.del.deleted, 0);
    /* Outer put + nested put of the same key. */
    struct kv_op nested_put = {.type = KV_OP_PUT, .u.put = {.key = B("q")}};
    struct kv_txn_req nt = {.success = &nested_put, .n_success = 1};
    struct kv_op on[2] = {{.type = KV_OP_TXN, .u.txn = &nt},
                          {.type = KV_OP_PUT, .u.put = {.key = B("q")}}};
    td.success = on;
    ck_assert_int_eq(kv_check_txn(&td, 128), MS_E_DUPLICATE_KEY);
    /* Too many ops, empty op, empty keys. */
    struct kv_op many[129];
    for (int i = 0; i < 129; i++)
        many[i] = (struct kv_op){.type = KV_OP_RANGE, .u.range = {.span = {.key = B("k")}}};
    struct kv_txn_req tm = {.success = many, .n_success = 129};
    ck_assert_int_eq(kv_check_txn(&tm, 128), MS_E_TOO_MANY_OPS);
    tm.n_success = 128;
    ck_assert_int_eq(kv_check_txn(&tm, 128), MS_OK);
    struct kv_op none = {.type = KV_OP_NONE};
    struct kv_txn_req tn = {.success = &none, .n_success = 1};
    ck_assert_int_eq(kv_check_txn(&tn, 128), MS_E_KEY_NOT_FOUND);
    struct kv_cmp ec = {.target = KV_CMP_VERSION};
    struct kv_txn_req te = {.cmps = &ec, .n_cmps = 1};
    ck_assert_int_eq(kv_check_txn(&te, 128), MS_E_EMPTY_KEY);

    /* A range at a compacted revision inside the taken branch fails the whole txn, and
     * nothing is written. */
    int64_t before = kv_current_rev(kv);
    ck_assert_int_eq(kv_compact(kv, txn, before), MS_OK);
    struct kv_op bad[2] = {
        {.type = KV_OP_PUT, .u.put = {.key = B("zz")}},
        {.type = KV_OP_RANGE, .u.range = {.span = {.key = B("a")}, .revision = 2}},
    };
    struct kv_txn_req tb = {.success = bad, .n_success = 2};
    run_txn(&tb, MS_E_COMPACTED);
    ck_assert_int_eq(kv_current_rev(kv), before);
    /* ignore_value on a missing key. */
    struct kv_op iv = {.type = KV_OP_PUT, .u.put = {.key = B("missing"), .ignore_value = true}};
    struct kv_txn_req ti = {.success = &iv, .n_success = 1};
    run_txn(&ti, MS_E_KEY_NOT_FOUND);
}
END_TEST

/* Each inner response reports the revision at its own point of the txn (etcd storeTxnWrite):
 * reads and deletes of nothing before the first write see the store's revision, a put and
 * everything after a write the new one, nested txns included. */
START_TEST(txn_inner_revisions)
{
    put("a", "1"); /* 2 */
    struct kv_op inner_ops[2] = {
        {.type = KV_OP_RANGE, .u.range = {.span = {.key = B("a")}}},
        {.type = KV_OP_DELETE, .u.del = {.span = {.key = B("none")}}},
    };
    struct kv_txn_req inner = {.success = inner_ops, .n_success = 2};
    struct kv_op ops[6] = {
        {.type = KV_OP_RANGE, .u.range = {.span = {.key = B("a")}}},
        {.type = KV_OP_DELETE, .u.del = {.span = {.key = B("none")}}},
        {.type = KV_OP_TXN, .u.txn = &inner},
        {.type = KV_OP_PUT, .u.put = {.key = B("b")}},
        {.type = KV_OP_RANGE, .u.range = {.span = {.key = B("a")}}},
        {.type = KV_OP_TXN, .u.txn = &inner},
    };
    struct kv_txn_req t = {.success = ops, .n_success = 6};
    struct kv_txn_resp *r = run_txn(&t, MS_OK);
    ck_assert_int_eq(r->revision, 3);
    ck_assert_int_eq(r->resps[0].u.range.revision, 2);
    ck_assert_int_eq(r->resps[1].u.del.revision, 2);
    ck_assert_int_eq(r->resps[2].u.txn->resps[0].u.range.revision, 2);
    ck_assert_int_eq(r->resps[2].u.txn->resps[1].u.del.revision, 2);
    ck_assert_int_eq(r->resps[3].u.put.revision, 3);
    ck_assert_int_eq(r->resps[4].u.range.revision, 3);
    ck_assert_int_eq(r->resps[5].u.txn->resps[0].u.range.revision, 3);
    ck_assert_int_eq(r->resps[5].u.txn->resps[1].u.del.revision, 3);
    /* A delete that removes a key reports the new revision, and so does what follows. */
    struct kv_op d[2] = {
        {.type = KV_OP_DELETE, .u.del = {.span = {.key = B("a")}}},
        {.type = KV_OP_RANGE, .u.range = {.span = {.key = B("b")}}},
    };
    struct kv_txn_req td = {.success = d, .n_success = 2};
    r = run_txn(&td, MS_OK);
    ck_assert_int_eq(r->resps[0].u.del.revision, 4);
    ck_assert_int_eq(r->resps[1].u.range.revision, 4);
}
END_TEST

static bool no_leases(void *ctx, int64_t lease)
{
    (void)ctx;
    return lease == 7;
}

START_TEST(put_options)
{
    struct kv_write *w;
    struct kv_put_resp r;
    kv_set_lease_check(kv, no_leases, NULL);
    struct kv_put_req req = {.key = B("k"), .value = B("v"), .lease = 7};
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ck_assert_int_eq(kv_write_put(w, &req, &r), MS_OK);
    struct kv_event *ev;
    size_t n;
    kv_write_end(w, &ev, &n);
    /* ignore_value keeps the value, ignore_lease the lease; both still bump the version. */
    struct kv_put_req iv = {
        .key = B("k"), .ignore_value = true, .ignore_lease = true, .prev_kv = true};
    ck_assert_int_eq(kv_check_put(&iv), MS_OK);
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ck_assert_int_eq(kv_write_put(w, &iv, &r), MS_OK);
    kv_write_end(w, &ev, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert(ev[0].has_prev);
    ck_assert_int_eq(ev[0].prev.lease, 7);
    struct kv_range_resp rr;
    ck_assert_int_eq(get_at("k", 0, &rr), MS_OK);
    ck_assert(tu_bytes_eq(rr.kvs[0].value, rr.kvs[0].value_len, "v"));
    ck_assert_int_eq(rr.kvs[0].lease, 7);
    ck_assert_int_eq(rr.kvs[0].version, 2);
    /* A put without lease detaches. */
    put("k", "v2");
    ck_assert_int_eq(get_at("k", 0, &rr), MS_OK);
    ck_assert_int_eq(rr.kvs[0].lease, 0);
    /* Unknown lease. */
    struct kv_put_req bad = {.key = B("k"), .lease = 8};
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ck_assert_int_eq(kv_write_put(w, &bad, &r), MS_E_LEASE_NOT_FOUND);
    kv_write_abort(w);
    /* Validation errors. */
    struct kv_put_req e1 = {.key = B("k"), .value = B("x"), .ignore_value = true};
    ck_assert_int_eq(kv_check_put(&e1), MS_E_VALUE_PROVIDED);
    struct kv_put_req e2 = {.key = B("k"), .lease = 3, .ignore_lease = true};
    ck_assert_int_eq(kv_check_put(&e2), MS_E_LEASE_PROVIDED);
    struct kv_put_req e3 = {0};
    ck_assert_int_eq(kv_check_put(&e3), MS_E_EMPTY_KEY);
}
END_TEST

static ms_err count_leased(void *ctx, const struct kv_kv *rec)
{
    int *n = ctx;
    ck_assert_int_eq(rec->lease, 7);
    (*n)++;
    return MS_OK;
}

START_TEST(foreach_leased)
{
    struct kv_write *w;
    struct kv_put_resp r;
    struct kv_event *ev;
    size_t n_ev;
    const char *keys[] = {"l1", "l2", "plain", "l3"};
    for (int i = 0; i < 4; i++) {
        struct kv_put_req req = {
            .key = (const uint8_t *)keys[i], .key_len = strlen(keys[i]), .lease = i == 2 ? 0 : 7};
        ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
        ck_assert_int_eq(kv_write_put(w, &req, &r), MS_OK);
        kv_write_end(w, &ev, &n_ev);
    }
    del("l3", NULL, NULL);
    put("l2", "now without lease");
    int n = 0;
    ck_assert_int_eq(kv_foreach_leased(kv, txn, count_leased, &n), MS_OK);
    ck_assert_int_eq(n, 1); /* l1 only */
}
END_TEST

START_TEST(abort_undoes_index)
{
    put("a", "1"); /* 2 */
    put("b", "1"); /* 3 */
    struct kv_write *w;
    struct kv_put_resp pr;
    struct kv_del_resp dr;
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    struct kv_put_req p1 = {.key = B("a"), .value = B("2")};
    struct kv_put_req p2 = {.key = B("c"), .value = B("new")};
    struct kv_del_req d1 = {.span = {.key = B("b")}};
    ck_assert_int_eq(kv_write_put(w, &p1, &pr), MS_OK);
    ck_assert_int_eq(kv_write_put(w, &p2, &pr), MS_OK);
    ck_assert_int_eq(kv_write_del(w, &d1, &dr), MS_OK);
    kv_write_abort(w);
    ck_assert_int_eq(kv_current_rev(kv), 3);
    ck_assert_int_eq(kv_live_keys(kv), 2);
    ck_assert_uint_eq(kv_index_keys(kv), 2);
    /* The index no longer names the aborted revisions. A later write reuses revision 4. */
    put("a", "3");
    struct kv_range_resp r;
    ck_assert_int_eq(get_at("a", 0, &r), MS_OK);
    ck_assert_int_eq(r.kvs[0].version, 2);
    ck_assert_int_eq(r.kvs[0].mod_revision, 4);
    ck_assert_int_eq(get_at("b", 0, &r), MS_OK);
    ck_assert_uint_eq(r.n_kvs, 1);
}
END_TEST

static size_t count_records(void)
{
    struct be_cursor *c;
    struct be_val k, v;
    size_t n = 0;
    ck_assert_int_eq(be_cursor_open(txn, BE_BUCKET_KEY, &c), MS_OK);
    for (ms_err e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v))
        n++;
    be_cursor_close(c);
    return n;
}

START_TEST(compaction)
{
    put("a", "1");        /* 2 */
    put("a", "2");        /* 3 */
    put("b", "1");        /* 4 */
    del("b", NULL, NULL); /* 5 */
    put("a", "3");        /* 6 */
    put("c", "1");        /* 7 */
    del("c", NULL, NULL); /* 8 */
    ck_assert_uint_eq(count_records(), 7);
    /* The first compaction may be at 0 (etcd's point starts at -1), once. */
    ck_assert_int_eq(kv_compact(kv, txn, -1), MS_E_COMPACTED);
    ck_assert_int_eq(kv_compact(kv, txn, 0), MS_OK);
    ck_assert_int_eq(kv_compact(kv, txn, 0), MS_E_COMPACTED);
    ck_assert_int_eq(kv_compact(kv, txn, 9), MS_E_FUTURE_REV);
    ck_assert_int_eq(kv_compact(kv, txn, 5), MS_OK);
    ck_assert_int_eq(kv_compact(kv, txn, 5), MS_E_COMPACTED);
    struct kv_range_resp r;
    ck_assert_int_eq(get_at("a", 4, &r), MS_E_COMPACTED);
    ck_assert_int_eq(get_at("a", 5, &r), MS_OK); /* at the compact revision is fine */
    ck_assert(tu_bytes_eq(r.kvs[0].value, r.kvs[0].value_len, "2"));
    ms_err err;
    size_t steps = 0;
    while (!kv_compact_step(kv, txn, 1, &err)) {
        ck_assert_int_eq(err, MS_OK);
        steps++;
    }
    ck_assert_uint_ge(steps, 3);
    ck_assert(!kv_compact_pending(kv));
    /* Kept: a@3 (latest <= 5), b's tombstone @5 (at the compact revision), a@6, c@7, c@8. */
    ck_assert_uint_eq(count_records(), 5);
    struct kv_event *ev;
    size_t n;
    int64_t next;
    ck_assert_int_eq(kv_history(kv, txn, 5, 100, 100, ar, &ev, &n, &next), MS_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ev[0].type, KV_EVENT_DELETE);
    ck_assert(tu_bytes_eq(ev[0].kv.key, ev[0].kv.key_len, "b"));
    ck_assert_int_eq(ev[0].kv.mod_revision, 5);
    ck_assert_int_eq(kv_history(kv, txn, 4, 100, 100, ar, &ev, &n, &next), MS_E_COMPACTED);
    /* Compacting past the tombstone drops it too. */
    ck_assert_int_eq(kv_compact(kv, txn, 8), MS_OK);
    while (!kv_compact_step(kv, txn, 100, &err))
        ck_assert_int_eq(err, MS_OK);
    ck_assert_uint_eq(count_records(), 2); /* a@6, c's tombstone @8 */
    ck_assert_int_eq(get_at("a", 0, &r), MS_OK);
    ck_assert_int_eq(r.kvs[0].version, 3);
    ck_assert_int_eq(r.kvs[0].create_revision, 2);
    /* After restore the same answers hold. */
    uint32_t h1, h2;
    ck_assert_int_eq(kv_hash(kv, txn, &h1), MS_OK);
    reopen();
    ck_assert_int_eq(kv_compact_rev(kv), 8);
    ck_assert_int_eq(kv_current_rev(kv), 8);
    ck_assert_int_eq(get_at("a", 0, &r), MS_OK);
    ck_assert_int_eq(r.kvs[0].version, 3);
    ck_assert_int_eq(r.kvs[0].create_revision, 2);
    ck_assert_int_eq(kv_hash(kv, txn, &h2), MS_OK);
    ck_assert_uint_eq(h1, h2);
    ck_assert_int_eq(put("a", "4"), 9);
}
END_TEST

/* A restore in pieces, as a snapshot install feeds it: the key bucket's records one at a
 * time through kv_restore_record, then kv_restore_end. */
static void restore_in_pieces(void)
{
    struct kv_restore *r = kv_restore_begin();
    ck_assert_ptr_nonnull(r);
    struct be_cursor *c;
    struct be_val k, v;
    ck_assert_int_eq(be_cursor_open(txn, BE_BUCKET_KEY, &c), MS_OK);
    ms_err e;
    for (e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v))
        ck_assert_int_eq(kv_restore_record(r, k.p, k.len, v.p, v.len), MS_OK);
    ck_assert_int_eq(e, MS_E_NOT_EXIST);
    be_cursor_close(c);
    ck_assert_int_eq(kv_restore_end(kv, r, txn), MS_OK);
}

/* A random workload, then a restore (how) must answer every read identically. */
static void restore_check(void (*how)(void))
{
    char k[16], v[16];
    uint64_t x = 12345;
    for (int i = 0; i < 2000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        snprintf(k, sizeof(k), "k%02d", (int)((x >> 33) % 50));
        snprintf(v, sizeof(v), "v%d", i);
        if ((x >> 20) % 5 == 0)
            del(k, NULL, NULL);
        else
            put(k, v);
        if (i == 1000) {
            ck_assert_int_eq(kv_compact(kv, txn, kv_current_rev(kv) - 100), MS_OK);
            ms_err err;
            while (!kv_compact_step(kv, txn, 64, &err))
                ck_assert_int_eq(err, MS_OK);
        }
    }
    int64_t rev = kv_current_rev(kv);
    int64_t crev = kv_compact_rev(kv);
    struct kv_range_resp before[60];
    for (int64_t r = crev; r <= rev; r += 97) {
        struct kv_range_req req = {.span = {.key = B("k"), .end_kind = KV_END_ALL}, .revision = r};
        ck_assert_int_eq(kv_range(kv, txn, &req, ar, &before[(r - crev) / 97]), MS_OK);
    }
    uint32_t h1, h2;
    ck_assert_int_eq(kv_hash(kv, txn, &h1), MS_OK);
    how();
    ck_assert_int_eq(kv_current_rev(kv), rev);
    ck_assert_int_eq(kv_compact_rev(kv), crev);
    ck_assert_int_eq(kv_hash(kv, txn, &h2), MS_OK);
    ck_assert_uint_eq(h1, h2);
    for (int64_t r = crev; r <= rev; r += 97) {
        struct kv_range_resp after;
        struct kv_range_req req = {.span = {.key = B("k"), .end_kind = KV_END_ALL}, .revision = r};
        ck_assert_int_eq(kv_range(kv, txn, &req, ar, &after), MS_OK);
        struct kv_range_resp *b = &before[(r - crev) / 97];
        ck_assert_uint_eq(after.n_kvs, b->n_kvs);
        for (size_t i = 0; i < after.n_kvs; i++) {
            ck_assert_uint_eq(after.kvs[i].key_len, b->kvs[i].key_len);
            ck_assert(memcmp(after.kvs[i].key, b->kvs[i].key, b->kvs[i].key_len) == 0);
            ck_assert_uint_eq(after.kvs[i].value_len, b->kvs[i].value_len);
            ck_assert(memcmp(after.kvs[i].value, b->kvs[i].value, b->kvs[i].value_len) == 0);
            ck_assert_int_eq(after.kvs[i].mod_revision, b->kvs[i].mod_revision);
            ck_assert_int_eq(after.kvs[i].create_revision, b->kvs[i].create_revision);
            ck_assert_int_eq(after.kvs[i].version, b->kvs[i].version);
        }
    }
}

START_TEST(restore_equals_live)
{
    restore_check(reopen);
}
END_TEST

START_TEST(restore_in_pieces_equals_live)
{
    restore_check(restore_in_pieces);
}
END_TEST

START_TEST(history_slices)
{
    for (int i = 0; i < 50; i++) {
        char k[8];
        snprintf(k, sizeof(k), "h%d", i % 7);
        put(k, "v");
    }
    /* A multi-key delete is one revision of 7 events: slices never split it. */
    del("h", "", NULL); /* revision 52 */
    struct kv_event *ev;
    size_t n, total = 0;
    int64_t from = 2, next;
    int slices = 0;
    while (from <= kv_current_rev(kv)) {
        ck_assert_int_eq(kv_history(kv, txn, from, kv_current_rev(kv), 5, ar, &ev, &n, &next),
                         MS_OK);
        ck_assert_uint_gt(n, 0);
        for (size_t i = 1; i < n; i++)
            ck_assert_int_ge(ev[i].kv.mod_revision, ev[i - 1].kv.mod_revision);
        ck_assert_int_gt(next, from);
        total += n;
        from = next;
        slices++;
    }
    ck_assert_uint_eq(total, 57);
    ck_assert_int_ge(slices, 10);
}
END_TEST

/* ---- the op table and the walk (kv_req.c) ---- */

START_TEST(op_table_rows)
{
    /* etcd's RequestOp / ResponseOp members, in field order. */
    static const char *const names[][3] = {
        {"request_range", "requestRange", "response_range"},
        {"request_put", "requestPut", "response_put"},
        {"request_delete_range", "requestDeleteRange", "response_delete_range"},
        {"request_txn", "requestTxn", "response_txn"},
    };
    for (unsigned t = 0; t < KV_OP_NONE; t++) {
        ck_assert_str_eq(kv_op_table[t].json, names[t][0]);
        ck_assert_str_eq(kv_op_table[t].json_camel, names[t][1]);
        ck_assert_str_eq(kv_op_table[t].resp_json, names[t][2]);
        ck_assert_uint_eq(kv_op_table[t].field, t + 1);
        ck_assert(kv_op_table[t].writes == (t == KV_OP_PUT || t == KV_OP_DELETE));
    }
    ck_assert_ptr_null(kv_op_table[KV_OP_NONE].json);
    ck_assert_uint_eq(kv_op_table[KV_OP_NONE].field, 0);
    ck_assert(!kv_op_table[KV_OP_NONE].writes);
}
END_TEST

/* A visitor that writes down what it is shown: T<compares> ... ) per txn, S<n> / F<n> per
 * branch, one letter per op. Leaves count 1, a txn its costlier branch; 'p' may fail. */
struct trace {
    char s[128];
    ms_err fail_put;
};

static void trace_add(struct trace *t, const char *w)
{
    size_t n = strlen(t->s);
    snprintf(t->s + n, sizeof(t->s) - n, "%s", w);
}

static ms_err trace_txn(void *ctx, const struct kv_txn_req *r)
{
    char w[16];
    snprintf(w, sizeof(w), "T%zu ", r->n_cmps);
    trace_add(ctx, w);
    return MS_OK;
}

static ms_err trace_branch(void *ctx, bool success, size_t n)
{
    char w[16];
    snprintf(w, sizeof(w), "%c%zu ", success ? 'S' : 'F', n);
    trace_add(ctx, w);
    return MS_OK;
}

static ms_err trace_op(void *ctx, const struct kv_op *op)
{
    struct trace *t = ctx;
    trace_add(t, (const char *[]){"r ", "p ", "d ", "t ", "n "}[op->type]);
    return op->type == KV_OP_PUT ? t->fail_put : MS_OK;
}

static size_t trace_op_end(void *ctx, const struct kv_op *op, bool success, size_t val)
{
    (void)ctx, (void)success;
    return op->type == KV_OP_TXN ? val : 1;
}

static size_t trace_txn_end(void *ctx, const struct kv_txn_req *r, size_t success, size_t failure)
{
    (void)r;
    trace_add(ctx, ") ");
    return success > failure ? success : failure;
}

static const struct kv_visit trace_visit = {
    .txn = trace_txn,
    .branch = trace_branch,
    .op = trace_op,
    .op_end = trace_op_end,
    .txn_end = trace_txn_end,
};

START_TEST(walk_order_and_values)
{
    struct kv_op inner_s[1] = {{.type = KV_OP_PUT, .u.put = {.key = B("p")}}};
    struct kv_op inner_f[2] = {{.type = KV_OP_DELETE, .u.del = {.span = {.key = B("d")}}},
                               {.type = KV_OP_NONE}};
    struct kv_txn_req inner = {
        .success = inner_s, .n_success = 1, .failure = inner_f, .n_failure = 2};
    struct kv_cmp c = {.span = {.key = B("c")}, .set = -1};
    struct kv_op root_s[2] = {{.type = KV_OP_RANGE, .u.range = {.span = {.key = B("r")}}},
                              {.type = KV_OP_TXN, .u.txn = &inner}};
    struct kv_op root_f[1] = {{.type = KV_OP_PUT, .u.put = {.key = B("q")}}};
    struct kv_txn_req root = {.cmps = &c,
                              .n_cmps = 1,
                              .success = root_s,
                              .n_success = 2,
                              .failure = root_f,
                              .n_failure = 1};
    struct trace t = {.fail_put = MS_OK};
    size_t val = 0;
    ck_assert_int_eq(kv_txn_walk(&root, &trace_visit, &t, &val), MS_OK);
    ck_assert_str_eq(t.s, "T1 S2 r t T0 S1 p F2 d n ) F1 p ) ");
    /* inner: max(1, 2) = 2; root: max(1 + 2, 1) = 3 */
    ck_assert_uint_eq(val, 3);
    /* The first error stops the walk and is returned. */
    t = (struct trace){.fail_put = MS_E_EMPTY_KEY};
    ck_assert_int_eq(kv_txn_walk(&root, &trace_visit, &t, &val), MS_E_EMPTY_KEY);
    ck_assert_str_eq(t.s, "T1 S2 r t T0 S1 p ");
    /* Writes: the put in the root's failure branch, or the nested put and delete. */
    ck_assert(kv_txn_writes(&root));
    root.n_failure = 0;
    ck_assert(kv_txn_writes(&root));
    inner_s[0].type = KV_OP_RANGE;
    inner_f[0].type = KV_OP_RANGE;
    ck_assert(!kv_txn_writes(&root));
}
END_TEST

static ms_err count_txn(void *ctx, const struct kv_txn_req *r)
{
    (void)r;
    ++*(size_t *)ctx;
    return MS_OK;
}

/* A chain of txns, each holding the next as its only success op, the last a put: every
 * walker sees the same tree down to KV_MAX_TXN_DEPTH, and none goes deeper. */
START_TEST(walk_depth_bound)
{
    size_t levels = KV_MAX_TXN_DEPTH + 2;
    struct kv_txn_req *txns = calloc(levels, sizeof(*txns));
    struct kv_op *ops = calloc(levels, sizeof(*ops));
    ck_assert(txns && ops);
    for (size_t i = 0; i < levels; i++) {
        ops[i] = i + 1 < levels ? (struct kv_op){.type = KV_OP_TXN, .u.txn = &txns[i + 1]}
                                : (struct kv_op){.type = KV_OP_PUT, .u.put = {.key = B("k")}};
        txns[i] = (struct kv_txn_req){.success = &ops[i], .n_success = 1};
    }
    /* From txns[1]: depths 0 .. KV_MAX_TXN_DEPTH. */
    const struct kv_txn_req *ok = &txns[1];
    size_t n = levels - 1;
    static const struct kv_visit count = {.txn = count_txn};
    size_t seen = 0, val;
    ck_assert_int_eq(kv_txn_walk(ok, &count, &seen, &val), MS_OK);
    ck_assert_uint_eq(seen, n);
    seen = 0;
    ck_assert_int_eq(kv_txn_walk(&txns[0], &count, &seen, &val), MS_E_BAD_REQUEST);
    ck_assert_uint_eq(seen, n);
    /* Each level takes one op of the budget: n levels need n. */
    ck_assert_int_eq(kv_check_txn(ok, n), MS_OK);
    ck_assert_int_eq(kv_check_txn(ok, n - 1), MS_E_TOO_MANY_OPS);
    ck_assert(kv_txn_writes(ok));
    ops[levels - 1] = (struct kv_op){.type = KV_OP_NONE};
    ck_assert_int_eq(kv_check_txn(ok, n), MS_E_KEY_NOT_FOUND);
    ck_assert(!kv_txn_writes(ok));
    free(ops);
    free(txns);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1)
        backend_name = argv[1];
    Suite *s = suite_create(strcmp(backend_name, "lmdb") == 0 ? "kv_lmdb" : "kv_memory");
    struct {
        const char *name;
        const TTest *tests[5];
    } cases[] = {
        {"rev", {put_revisions_and_versions, delete_and_recreate, put_options, NULL}},
        {"lease", {foreach_leased, NULL}},
        {"range", {range_limit_sort_filters, NULL}},
        {"txn",
         {txn_compare_semantics, txn_nested_and_errors, txn_inner_revisions, abort_undoes_index,
          NULL}},
        {"compact",
         {compaction, restore_equals_live, restore_in_pieces_equals_live, history_slices, NULL}},
        {"req", {op_table_rows, walk_order_and_values, walk_depth_bound, NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        for (int j = 0; cases[i].tests[j]; j++)
            tcase_add_test(tc, cases[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}
