/* kv_txn.c - Txn apply (etcd apply.go).
 *
 * Apply follows etcd: every compare of the whole nested tree is evaluated against the state
 * before the txn runs, the chosen path is checked (ignore_* keys exist, leases exist, range
 * revisions valid) before anything is written, then the path executes in one write. Compare
 * semantics are etcd's compareKV, including its answers for unknown targets and results.
 * Requests were validated before they were proposed (kv_check.c).
 */
#include "kv_store_int.h"

#include "metastore/grow.h"

#include "metastore/arena.h"

#include <stdlib.h>
#include <string.h>

/* etcd compareKV. */
static bool compare_kv(const struct kv_cmp *c, const struct kv_kv *kv)
{
    int result = 0;
    int64_t want = c->set == c->target ? c->number : 0;
    switch (c->target) {
    case KV_CMP_VALUE: {
        const uint8_t *v = c->set == KV_CMP_VALUE ? c->value : NULL;
        size_t vl = c->set == KV_CMP_VALUE ? c->value_len : 0;
        result = sl_keycmp(kv->value, kv->value_len, v, vl);
        break;
    }
    case KV_CMP_CREATE:
        result = kv_cmp_i64(kv->create_revision, want);
        break;
    case KV_CMP_MOD:
        result = kv_cmp_i64(kv->mod_revision, want);
        break;
    case KV_CMP_VERSION:
        result = kv_cmp_i64(kv->version, want);
        break;
    case KV_CMP_LEASE:
        result = kv_cmp_i64(kv->lease, want);
        break;
    default:
        break;
    }
    switch (c->result) {
    case KV_CMP_EQUAL:
        return result == 0;
    case KV_CMP_NOT_EQUAL:
        return result != 0;
    case KV_CMP_GREATER:
        return result > 0;
    case KV_CMP_LESS:
        return result < 0;
    default:
        return true;
    }
}

/* etcd applyCompare: every key in the range must pass; an empty range compares as a zero kv,
 * except that VALUE on nothing is always false. */
static ms_err apply_compare(struct kv_store *kv, struct be_txn *txn, int64_t cur, struct arena *a,
                            const struct kv_cmp *c, bool *ok)
{
    struct kv_range_req rr = {.span = c->span};
    struct kv_range_resp resp;
    ms_err e = kv_range_in(kv, txn, &rr, cur, a, &resp);
    if (e) {
        *ok = false; /* etcd: a failed read makes the compare false */
        return MS_OK;
    }
    if (resp.n_kvs == 0) {
        struct kv_kv zero = {0};
        *ok = c->target != KV_CMP_VALUE && compare_kv(c, &zero);
        return MS_OK;
    }
    for (size_t i = 0; i < resp.n_kvs; i++) {
        if (!compare_kv(c, &resp.kvs[i])) {
            *ok = false;
            return MS_OK;
        }
    }
    *ok = true;
    return MS_OK;
}

struct txn_path {
    bool *v;
    size_t n;
    size_t cap;
};

static bool path_push(struct txn_path *p, bool b)
{
    bool *n = ms_grow(p->v, &p->cap, p->n + 1, sizeof(*n), 8);
    if (!n)
        return false;
    p->v = n;
    p->v[p->n++] = b;
    return true;
}

/* etcd compareToPath: one bool per txn on the chosen path, depth first. */
static ms_err compare_to_path(struct kv_store *kv, struct be_txn *txn, int64_t cur, struct arena *a,
                              const struct kv_txn_req *r, struct txn_path *p)
{
    bool ok = true;
    for (size_t i = 0; i < r->n_cmps && ok; i++) {
        ms_err e = apply_compare(kv, txn, cur, a, &r->cmps[i], &ok);
        if (e)
            return e;
    }
    if (!path_push(p, ok))
        return MS_E_NOMEM;
    const struct kv_op *ops = ok ? r->success : r->failure;
    size_t n = ok ? r->n_success : r->n_failure;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type != KV_OP_TXN || !ops[i].u.txn)
            continue;
        ms_err e = compare_to_path(kv, txn, cur, a, ops[i].u.txn, p);
        if (e)
            return e;
    }
    return MS_OK;
}

/* Check the ops on the chosen path before anything is written (etcd checkRequests). */
static ms_err check_path(struct kv_store *kv, struct be_txn *txn, int64_t cur, struct arena *a,
                         const struct kv_txn_req *r, const bool *path, size_t *pi)
{
    bool ok = path[(*pi)++];
    const struct kv_op *ops = ok ? r->success : r->failure;
    size_t n = ok ? r->n_success : r->n_failure;
    for (size_t i = 0; i < n; i++) {
        const struct kv_op *op = &ops[i];
        ms_err e = MS_OK;
        if (op->type == KV_OP_TXN) {
            e = check_path(kv, txn, cur, a, op->u.txn, path, pi);
        } else if (op->type == KV_OP_PUT) {
            const struct kv_put_req *p = &op->u.put;
            if (p->ignore_value || p->ignore_lease) {
                struct kv_range_req rr = {.span = {.key = p->key, .key_len = p->key_len},
                                          .count_only = true};
                struct kv_range_resp resp;
                e = kv_range_in(kv, txn, &rr, cur, a, &resp);
                if (!e && resp.count == 0)
                    e = MS_E_KEY_NOT_FOUND;
            }
            if (!e && !kv_lease_exists(kv, p->lease))
                e = MS_E_LEASE_NOT_FOUND;
        } else if (op->type == KV_OP_RANGE) {
            e = kv_read_rev_check(kv, op->u.range.revision, cur);
        }
        if (e)
            return e;
    }
    return MS_OK;
}

static ms_err exec_txn(struct kv_write *w, const struct kv_txn_req *r, const bool *path, size_t *pi,
                       struct kv_txn_resp *out)
{
    bool ok = path[(*pi)++];
    const struct kv_op *ops = ok ? r->success : r->failure;
    size_t n = ok ? r->n_success : r->n_failure;
    out->succeeded = ok;
    out->n_resps = n;
    out->resps = n ? arena_calloc(w->a, n, sizeof(*out->resps)) : NULL;
    if (n && !out->resps)
        return MS_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        struct kv_op_resp *res = &out->resps[i];
        ms_err e;
        res->type = ops[i].type;
        switch (ops[i].type) {
        case KV_OP_RANGE:
            e = kv_write_range(w, &ops[i].u.range, &res->u.range);
            break;
        case KV_OP_PUT:
            e = kv_write_put(w, &ops[i].u.put, &res->u.put);
            break;
        case KV_OP_DELETE:
            e = kv_write_del(w, &ops[i].u.del, &res->u.del);
            break;
        case KV_OP_TXN:
            res->u.txn = arena_calloc(w->a, 1, sizeof(*res->u.txn));
            e = res->u.txn ? exec_txn(w, ops[i].u.txn, path, pi, res->u.txn) : MS_E_NOMEM;
            break;
        default:
            e = MS_E_KEY_NOT_FOUND;
            break;
        }
        if (e)
            return e;
    }
    return MS_OK;
}

ms_err kv_write_txn(struct kv_write *w, const struct kv_txn_req *req, struct kv_txn_resp *out)
{
    struct txn_path path = {0};
    int64_t cur = kv_write_rev(w);
    size_t pi = 0;
    memset(out, 0, sizeof(*out));
    ms_err e = compare_to_path(w->kv, w->txn, cur, w->a, req, &path);
    if (!e)
        e = check_path(w->kv, w->txn, cur, w->a, req, path.v, &pi);
    pi = 0;
    if (!e)
        e = exec_txn(w, req, path.v, &pi, out);
    free(path.v);
    if (e)
        return e;
    /* Each inner response keeps the revision of its own point in the txn, as etcd's
     * storeTxnWrite answers: a read sees the store's revision until an earlier op wrote, a put
     * the new one, a delete the new one once anything was written. */
    out->revision = kv_write_rev(w);
    return MS_OK;
}
