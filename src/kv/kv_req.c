/* kv_req.c - a request as a tree: the op table and the walk over a txn's ops.
 *
 * A txn's success and failure lists hold ops, and an op may be a txn again. What is fixed per
 * op type (the names etcd's gateway uses, the protobuf field number, whether it writes) is one
 * row of kv_op_table. Readers of the tree (validation's op budget, the log entry encoding,
 * protobuf sizes, quota cost, the read-only test) are visitors of kv_txn_walk, which recurses
 * once per nesting level, at most KV_MAX_TXN_DEPTH deep, and allocates nothing. Decoders build
 * the tree and keep their own descent under the same cap; the duplicate-write check and the
 * apply follow orders of their own (etcd's checkIntervals, the path the compares chose).
 */
#include "metastore/kv.h"

const struct kv_op_desc kv_op_table[KV_OP_N_TYPES] = {
    [KV_OP_RANGE] = {"request_range", "requestRange", "response_range", 1, false},
    [KV_OP_PUT] = {"request_put", "requestPut", "response_put", 2, true},
    [KV_OP_DELETE] = {"request_delete_range", "requestDeleteRange", "response_delete_range", 3,
                      true},
    [KV_OP_TXN] = {"request_txn", "requestTxn", "response_txn", 4, false},
    [KV_OP_NONE] = {NULL, NULL, NULL, 0, false},
};

static ms_err walk(const struct kv_txn_req *t, const struct kv_visit *v, void *ctx, unsigned depth,
                   size_t *val)
{
    ms_err e;
    if (depth > KV_MAX_TXN_DEPTH)
        return MS_E_BAD_REQUEST;
    if (v->txn && (e = v->txn(ctx, t)) != MS_OK)
        return e;
    size_t sum[2] = {0, 0}; /* success, failure */
    for (int b = 0; b < 2; b++) {
        const struct kv_op *ops = b ? t->failure : t->success;
        size_t n = b ? t->n_failure : t->n_success;
        if (v->branch && (e = v->branch(ctx, !b, n)) != MS_OK)
            return e;
        for (size_t i = 0; i < n; i++) {
            const struct kv_op *op = &ops[i];
            size_t x = 0;
            if (v->op && (e = v->op(ctx, op)) != MS_OK)
                return e;
            if (op->type == KV_OP_TXN && op->u.txn &&
                (e = walk(op->u.txn, v, ctx, depth + 1, &x)) != MS_OK)
                return e;
            sum[b] += v->op_end ? v->op_end(ctx, op, !b, x) : x;
        }
    }
    size_t mine = v->txn_end ? v->txn_end(ctx, t, sum[0], sum[1]) : sum[0] + sum[1];
    if (val)
        *val = mine;
    return MS_OK;
}

ms_err kv_txn_walk(const struct kv_txn_req *t, const struct kv_visit *v, void *ctx, size_t *val)
{
    return walk(t, v, ctx, 0, val);
}

static size_t count_write(void *ctx, const struct kv_op *op, bool success, size_t val)
{
    (void)ctx, (void)success;
    return val + ((unsigned)op->type < KV_OP_N_TYPES && kv_op_table[op->type].writes);
}

bool kv_txn_writes(const struct kv_txn_req *t)
{
    static const struct kv_visit writes = {.op_end = count_write};
    size_t n = 0;
    kv_txn_walk(t, &writes, NULL, &n);
    return n > 0;
}
