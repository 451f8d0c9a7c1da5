/* kv_range.c - range reads (etcd mvcc rangeKeys + the etcdserver Range apply rules).
 *
 * count is taken over the index before limit and filters; records are read only for what
 * the answer needs; sorting is stable with key order breaking ties. We do not copy etcd 3.4's
 * NONE-order + non-KEY-target + limit truncation quirk (reference §5.2): such a request sorts
 * the whole range ascending, as an explicit ASCEND does.
 */
#include "kv_store_int.h"

#include "metastore/arena.h"
#include "metastore/be.h"

#include <stdlib.h>
#include <string.h>

/* True if key (klen) is past the end of span. */
static bool past_end(const struct kv_span *s, const uint8_t *key, size_t klen)
{
    switch (s->end_kind) {
    case KV_END_NONE:
        return sl_keycmp(key, klen, s->key, s->key_len) != 0;
    case KV_END_KEY:
        return sl_keycmp(key, klen, s->end, s->end_len) >= 0;
    case KV_END_ALL:
        return false;
    }
    return true;
}

struct hit {
    struct kv_rev mod;
};

static int sort_target_cmp(const struct kv_kv *a, const struct kv_kv *b, int64_t target)
{
    switch (target) {
    case KV_SORT_VERSION:
        return kv_cmp_i64(a->version, b->version);
    case KV_SORT_CREATE:
        return kv_cmp_i64(a->create_revision, b->create_revision);
    case KV_SORT_MOD:
        return kv_cmp_i64(a->mod_revision, b->mod_revision);
    case KV_SORT_VALUE:
        return sl_keycmp(a->value, a->value_len, b->value, b->value_len);
    default:
        return sl_keycmp(a->key, a->key_len, b->key, b->key_len);
    }
}

struct sort_key {
    int64_t target;
    bool desc;
};

static bool kv_before(const struct kv_kv *a, const struct kv_kv *b, const struct sort_key *sk)
{
    int c = sort_target_cmp(a, b, sk->target);
    if (c == 0) /* ties stay in key order whatever the direction (observed on etcd) */
        return sl_keycmp(a->key, a->key_len, b->key, b->key_len) < 0;
    return sk->desc ? c > 0 : c < 0;
}

/* Bottom-up merge sort of v[0..n) using tmp[0..n). */
static void sort_kvs(struct kv_kv *v, struct kv_kv *tmp, size_t n, const struct sort_key *sk)
{
    struct kv_kv *src = v, *dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = kv_before(&src[j], &src[i], sk) ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        struct kv_kv *t = src;
        src = dst;
        dst = t;
    }
    if (src != v)
        memcpy(v, src, n * sizeof(*v));
}

static bool filtered_out(const struct kv_range_req *r, const struct kv_kv *kv)
{
    if (r->min_mod_revision > 0 && kv->mod_revision < r->min_mod_revision)
        return true;
    if (r->max_mod_revision > 0 && kv->mod_revision > r->max_mod_revision)
        return true;
    if (r->min_create_revision > 0 && kv->create_revision < r->min_create_revision)
        return true;
    if (r->max_create_revision > 0 && kv->create_revision > r->max_create_revision)
        return true;
    return false;
}

ms_err kv_range_in(struct kv_store *kv, struct be_txn *txn, const struct kv_range_req *req,
                   int64_t cur, struct arena *a, struct kv_range_resp *out)
{
    const struct kv_span *s = &req->span;
    memset(out, 0, sizeof(*out));
    out->revision = cur;

    int64_t rev = req->revision;
    ms_err e = kv_read_rev_check(kv, rev, cur);
    if (e)
        return e;
    if (rev <= 0)
        rev = cur;

    bool has_filter = req->min_mod_revision || req->max_mod_revision || req->min_create_revision ||
                      req->max_create_revision;
    bool sorting = req->sort_order != KV_SORT_NONE || req->sort_target != KV_SORT_KEY;
    size_t fetch = SIZE_MAX;
    if (!has_filter && !sorting && req->limit > 0 && (uint64_t)req->limit < SIZE_MAX - 1)
        fetch = (size_t)req->limit + 1;
    /* The first or last key by create or mod revision (etcd's WithFirstCreate and
     * WithLastCreate, which locks and elections run on every step) is chosen on the index:
     * one record is read, not every key of the prefix. */
    bool top1 = req->limit == 1 &&
                (req->sort_target == KV_SORT_CREATE || req->sort_target == KV_SORT_MOD) &&
                (req->sort_order == KV_SORT_NONE || req->sort_order == KV_SORT_ASCEND ||
                 req->sort_order == KV_SORT_DESCEND);
    int64_t best = 0;
    size_t matched = 0; /* top1: keys past the filters */

    /* Pass 1: walk the index, count, remember the revisions we will read. */
    size_t n = 0, cap = 0;
    struct hit *hits = NULL;
    int64_t count = 0;
    struct sl_node *node = s->end_kind == KV_END_NONE ? sl_find(kv->ix.map, s->key, s->key_len)
                                                      : sl_seek_ge(kv->ix.map, s->key, s->key_len);
    if (s->end_kind == KV_END_KEY && sl_keycmp(s->key, s->key_len, s->end, s->end_len) >= 0)
        node = NULL;
    for (; node; node = sl_next(node)) {
        size_t klen;
        const uint8_t *key = sl_node_key(node, &klen);
        if (past_end(s, key, klen))
            break;
        struct kv_at at;
        if (!kv_keyidx_get(sl_node_val(node), rev, &at))
            continue;
        count++;
        if (req->count_only || n >= fetch)
            continue;
        if (top1) {
            struct kv_kv idx = {.create_revision = at.created.main, .mod_revision = at.mod.main};
            if (has_filter && filtered_out(req, &idx))
                continue;
            matched++;
            int64_t v = req->sort_target == KV_SORT_CREATE ? idx.create_revision : idx.mod_revision;
            /* Strictly better only: ties keep key order, as the stable sort does. */
            if (n && (req->sort_order == KV_SORT_DESCEND ? v <= best : v >= best))
                continue;
            best = v;
            n = 0;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct hit *h = realloc(hits, ncap * sizeof(*h));
            if (!h) {
                free(hits);
                return MS_E_NOMEM;
            }
            hits = h;
            cap = ncap;
        }
        hits[n++].mod = at.mod;
        if (s->end_kind == KV_END_NONE)
            break;
    }
    out->count = count;
    if (req->count_only || n == 0) {
        free(hits);
        return MS_OK;
    }

    /* Pass 2: read the records into the arena. */
    struct kv_kv *kvs = arena_alloc(a, n * sizeof(*kvs));
    if (!kvs) {
        free(hits);
        return MS_E_NOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct kv_kv rec;
        e = kv_read_record(txn, hits[i].mod, &rec);
        if (e) {
            free(hits);
            return e;
        }
        if (has_filter && filtered_out(req, &rec))
            continue;
        /* Sorting by value needs the values even for keys_only. */
        bool with_value = !req->keys_only || req->sort_target == KV_SORT_VALUE;
        if (!kv_copy_kv(a, &kvs[m], &rec, with_value)) {
            free(hits);
            return MS_E_NOMEM;
        }
        m++;
    }
    free(hits);

    if (sorting && m > 1) {
        int64_t order = req->sort_order;
        if (order == KV_SORT_NONE)
            order = KV_SORT_ASCEND; /* non-KEY target with no order: ascending (etcd) */
        if (order == KV_SORT_ASCEND || order == KV_SORT_DESCEND) {
            struct sort_key sk = {.target = req->sort_target, .desc = order == KV_SORT_DESCEND};
            struct kv_kv *tmp = arena_alloc(a, m * sizeof(*tmp));
            if (!tmp)
                return MS_E_NOMEM;
            sort_kvs(kvs, tmp, m, &sk);
        }
    }
    if (req->keys_only) {
        for (size_t i = 0; i < m; i++) {
            kvs[i].value = NULL;
            kvs[i].value_len = 0;
        }
    }
    if (req->limit > 0 && m > (uint64_t)req->limit) {
        m = (size_t)req->limit;
        out->more = true;
    }
    if (top1 && matched > 1)
        out->more = true;
    out->kvs = kvs;
    out->n_kvs = m;
    return MS_OK;
}

ms_err kv_range(struct kv_store *kv, struct be_txn *txn, const struct kv_range_req *req,
                struct arena *a, struct kv_range_resp *out)
{
    return kv_range_in(kv, txn, req, kv->rev, a, out);
}

ms_err kv_foreach_leased(struct kv_store *kv, struct be_txn *txn, kv_leased_fn fn, void *ctx)
{
    for (struct sl_node *n = sl_first(kv->ix.map); n; n = sl_next(n)) {
        struct kv_at at;
        if (!kv_keyidx_get(sl_node_val(n), kv->rev, &at))
            continue;
        struct kv_kv rec;
        ms_err e = kv_read_record(txn, at.mod, &rec);
        if (e)
            return e;
        if (rec.lease && (e = fn(ctx, &rec)) != MS_OK)
            return e;
    }
    return MS_OK;
}
