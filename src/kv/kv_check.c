/* kv_check.c - request validation before a request is proposed (etcd v3rpc key.go checks).
 *
 * Empty keys, options that contradict each other, ops with no member, op counts per txn list
 * (the budget a nested txn inherits from the txns above it), and the duplicate-write rule of
 * etcd's checkIntervals. Errors are etcd's, in etcd's order: the first problem met in request
 * order wins, and the op counts of the whole tree are checked before any duplicate.
 */
#include "kv_int.h"

#include "metastore/grow.h"

#include <stdlib.h>
#include <string.h>

ms_err kv_check_put(const struct kv_put_req *r)
{
    if (r->key_len == 0)
        return MS_E_EMPTY_KEY;
    if (r->ignore_value && r->value_len != 0)
        return MS_E_VALUE_PROVIDED;
    if (r->ignore_lease && r->lease != 0)
        return MS_E_LEASE_PROVIDED;
    return MS_OK;
}

ms_err kv_check_range(const struct kv_range_req *r)
{
    if (r->span.key_len == 0)
        return MS_E_EMPTY_KEY;
    /* etcd 3.4 crashes when it sorts by an unknown target (NONE sorts ASCEND by a target that
     * is not KEY); newer etcd rejects it like this. An unknown order never sorts: 3.4 answers
     * in key order, and so do we. */
    bool sorts = r->sort_order >= KV_SORT_NONE && r->sort_order <= KV_SORT_DESCEND;
    if (sorts && (r->sort_target < KV_SORT_KEY || r->sort_target > KV_SORT_VALUE))
        return MS_E_INVALID_SORT_OPTION;
    return MS_OK;
}

ms_err kv_check_del(const struct kv_del_req *r)
{
    if (r->span.key_len == 0)
        return MS_E_EMPTY_KEY;
    return MS_OK;
}

/* ---- op counts, keys and members of a txn tree (etcd checkTxnRequest) ---- */

static size_t txn_opc(const struct kv_txn_req *r)
{
    size_t opc = r->n_cmps;
    if (opc < r->n_success)
        opc = r->n_success;
    if (opc < r->n_failure)
        opc = r->n_failure;
    return opc;
}

/* ctx: the ops a txn's lists may hold, max_ops less the counts of the txns above it (etcd
 * passes maxTxnOps - opc down). */
static ms_err budget_enter(void *ctx, const struct kv_txn_req *r)
{
    size_t *left = ctx, opc = txn_opc(r);
    if (opc > *left)
        return MS_E_TOO_MANY_OPS;
    for (size_t i = 0; i < r->n_cmps; i++)
        if (r->cmps[i].span.key_len == 0)
            return MS_E_EMPTY_KEY;
    *left -= opc;
    return MS_OK;
}

static size_t budget_leave(void *ctx, const struct kv_txn_req *r, size_t success, size_t failure)
{
    (void)success, (void)failure;
    *(size_t *)ctx += txn_opc(r);
    return 0;
}

static ms_err check_op(void *ctx, const struct kv_op *op)
{
    (void)ctx;
    switch (op->type) {
    case KV_OP_RANGE:
        return kv_check_range(&op->u.range);
    case KV_OP_PUT:
        return kv_check_put(&op->u.put);
    case KV_OP_DELETE:
        return kv_check_del(&op->u.del);
    case KV_OP_TXN:
        return op->u.txn ? MS_OK : MS_E_KEY_NOT_FOUND;
    case KV_OP_NONE:
        break;
    }
    return MS_E_KEY_NOT_FOUND; /* no member set */
}

static const struct kv_visit check_visit = {
    .txn = budget_enter,
    .op = check_op,
    .txn_end = budget_leave,
};

/* ---- duplicate writes (etcd checkIntervals) ---- */

struct ivl {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *end; /* NULL: the single key */
    size_t end_len;
    bool to_inf; /* range_end "\0" */
};

struct keyset {
    struct ivl *dels;
    size_t n_dels, cap_dels;
    const struct kv_put_req **puts;
    size_t n_puts, cap_puts;
};

static void keyset_fini(struct keyset *k)
{
    free(k->dels);
    free(k->puts);
}

static bool dels_cover(const struct keyset *k, const uint8_t *key, size_t klen)
{
    for (size_t i = 0; i < k->n_dels; i++) {
        const struct ivl *d = &k->dels[i];
        int c = sl_keycmp(key, klen, d->key, d->key_len);
        if (c < 0)
            continue;
        if (d->to_inf)
            return true;
        if (!d->end ? c == 0 : sl_keycmp(key, klen, d->end, d->end_len) < 0)
            return true;
    }
    return false;
}

static bool puts_has(const struct keyset *k, const uint8_t *key, size_t klen)
{
    for (size_t i = 0; i < k->n_puts; i++)
        if (sl_keycmp(k->puts[i]->key, k->puts[i]->key_len, key, klen) == 0)
            return true;
    return false;
}

static bool add_del(struct keyset *k, struct ivl d)
{
    struct ivl *n = ms_grow(k->dels, &k->cap_dels, k->n_dels + 1, sizeof(*n), 8);
    if (!n)
        return false;
    k->dels = n;
    k->dels[k->n_dels++] = d;
    return true;
}

static bool add_put(struct keyset *k, const struct kv_put_req *p)
{
    const struct kv_put_req **n = ms_grow(k->puts, &k->cap_puts, k->n_puts + 1, sizeof(*n), 8);
    if (!n)
        return false;
    k->puts = n;
    k->puts[k->n_puts++] = p;
    return true;
}

static ms_err check_intervals(const struct kv_op *ops, size_t n, struct keyset *out)
{
    ms_err e = MS_OK;
    /* This level's deletes first, to check the puts of nested txns against them. */
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type != KV_OP_DELETE)
            continue;
        const struct kv_span *s = &ops[i].u.del.span;
        struct ivl d = {.key = s->key, .key_len = s->key_len};
        if (s->end_kind == KV_END_KEY) {
            d.end = s->end;
            d.end_len = s->end_len;
        } else if (s->end_kind == KV_END_ALL) {
            d.to_inf = true;
        }
        if (!add_del(out, d))
            return MS_E_NOMEM;
    }
    for (size_t i = 0; i < n && !e; i++) {
        if (ops[i].type != KV_OP_TXN || !ops[i].u.txn)
            continue;
        const struct kv_txn_req *t = ops[i].u.txn;
        struct keyset then = {0}, els = {0};
        if ((e = check_intervals(t->success, t->n_success, &then)) == MS_OK)
            e = check_intervals(t->failure, t->n_failure, &els);
        for (size_t j = 0; !e && j < then.n_puts; j++) {
            const struct kv_put_req *p = then.puts[j];
            if (puts_has(out, p->key, p->key_len) || dels_cover(out, p->key, p->key_len))
                e = MS_E_DUPLICATE_KEY;
            else if (!add_put(out, p))
                e = MS_E_NOMEM;
        }
        for (size_t j = 0; !e && j < els.n_puts; j++) {
            const struct kv_put_req *p = els.puts[j];
            bool in_then = puts_has(&then, p->key, p->key_len);
            if ((puts_has(out, p->key, p->key_len) && !in_then) ||
                dels_cover(out, p->key, p->key_len))
                e = MS_E_DUPLICATE_KEY;
            else if (!in_then && !add_put(out, p))
                e = MS_E_NOMEM;
        }
        for (size_t j = 0; !e && j < then.n_dels; j++)
            if (!add_del(out, then.dels[j]))
                e = MS_E_NOMEM;
        for (size_t j = 0; !e && j < els.n_dels; j++)
            if (!add_del(out, els.dels[j]))
                e = MS_E_NOMEM;
        keyset_fini(&then);
        keyset_fini(&els);
    }
    for (size_t i = 0; i < n && !e; i++) {
        if (ops[i].type != KV_OP_PUT)
            continue;
        const struct kv_put_req *p = &ops[i].u.put;
        if (puts_has(out, p->key, p->key_len) || dels_cover(out, p->key, p->key_len))
            e = MS_E_DUPLICATE_KEY;
        else if (!add_put(out, p))
            e = MS_E_NOMEM;
    }
    return e;
}

ms_err kv_check_txn(const struct kv_txn_req *r, size_t max_ops)
{
    size_t left = max_ops;
    ms_err e = kv_txn_walk(r, &check_visit, &left, NULL);
    if (e)
        return e;
    struct keyset ks = {0};
    e = check_intervals(r->success, r->n_success, &ks);
    keyset_fini(&ks);
    if (e)
        return e;
    memset(&ks, 0, sizeof(ks));
    e = check_intervals(r->failure, r->n_failure, &ks);
    keyset_fini(&ks);
    return e;
}
