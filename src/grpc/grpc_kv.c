/* grpc_kv.c - etcd's KV service: RangeRequest, PutRequest, DeleteRangeRequest, TxnRequest and
 * CompactionRequest become the server requests the JSON gateway makes (srv.h, kv.h); results
 * become the protobuf responses. Every check and limit is the server's, so both front doors
 * answer alike.
 *
 * Decoded messages live in the call's arena (protobuf-c allocates from it), and so do the
 * requests' byte strings, which point into them. A txn's nesting is measured on the wire before
 * protobuf-c (which recurses once per level) unpacks it.
 */
#include "grpc_int.h"

#include "metastore/kv.h"

#include <stdio.h>
#include <string.h>

/* ---- requests ---- */

static void span_from(struct kv_span *s, ProtobufCBinaryData key, ProtobufCBinaryData end)
{
    kv_span_set(s, key.data, key.len, end.data, end.len);
}

static void range_from(struct kv_range_req *r, const Etcdserverpb__RangeRequest *m)
{
    memset(r, 0, sizeof(*r));
    span_from(&r->span, m->key, m->range_end);
    r->limit = m->limit;
    r->revision = m->revision;
    r->sort_order = m->sort_order;
    r->sort_target = m->sort_target;
    r->serializable = m->serializable;
    r->keys_only = m->keys_only;
    r->count_only = m->count_only;
    r->min_mod_revision = m->min_mod_revision;
    r->max_mod_revision = m->max_mod_revision;
    r->min_create_revision = m->min_create_revision;
    r->max_create_revision = m->max_create_revision;
}

static void put_from(struct kv_put_req *r, const Etcdserverpb__PutRequest *m)
{
    memset(r, 0, sizeof(*r));
    r->key = m->key.data;
    r->key_len = m->key.len;
    r->value = m->value.data;
    r->value_len = m->value.len;
    r->lease = m->lease;
    r->prev_kv = m->prev_kv;
    r->ignore_value = m->ignore_value;
    r->ignore_lease = m->ignore_lease;
}

static void del_from(struct kv_del_req *r, const Etcdserverpb__DeleteRangeRequest *m)
{
    memset(r, 0, sizeof(*r));
    span_from(&r->span, m->key, m->range_end);
    r->prev_kv = m->prev_kv;
}

static void cmp_from(struct kv_cmp *c, const Etcdserverpb__Compare *m)
{
    memset(c, 0, sizeof(*c));
    span_from(&c->span, m->key, m->range_end);
    c->target = m->target;
    c->result = m->result;
    c->set = -1;
    switch (m->target_union_case) {
    case ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION:
        c->set = KV_CMP_VERSION;
        c->number = m->version;
        break;
    case ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION:
        c->set = KV_CMP_CREATE;
        c->number = m->create_revision;
        break;
    case ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION:
        c->set = KV_CMP_MOD;
        c->number = m->mod_revision;
        break;
    case ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE:
        c->set = KV_CMP_VALUE;
        c->value = m->value.data;
        c->value_len = m->value.len;
        break;
    case ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE:
        c->set = KV_CMP_LEASE;
        c->number = m->lease;
        break;
    default:
        break;
    }
}

static bool txn_from(struct arena *a, struct kv_txn_req *t, const Etcdserverpb__TxnRequest *m);

static bool ops_from(struct arena *a, struct kv_op **out, size_t *n_out,
                     Etcdserverpb__RequestOp *const *ops, size_t n)
{
    *out = n ? arena_calloc(a, n, sizeof(**out)) : NULL;
    *n_out = n;
    if (n && !*out)
        return false;
    for (size_t i = 0; i < n; i++) {
        struct kv_op *op = &(*out)[i];
        const Etcdserverpb__RequestOp *m = ops[i];
        switch (m->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            op->type = KV_OP_RANGE;
            range_from(&op->u.range, m->request_range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            op->type = KV_OP_PUT;
            put_from(&op->u.put, m->request_put);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            op->type = KV_OP_DELETE;
            del_from(&op->u.del, m->request_delete_range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            op->type = KV_OP_TXN;
            op->u.txn = arena_calloc(a, 1, sizeof(*op->u.txn));
            if (!op->u.txn || !txn_from(a, op->u.txn, m->request_txn))
                return false;
            break;
        default:
            op->type = KV_OP_NONE;
            break;
        }
    }
    return true;
}

static bool txn_from(struct arena *a, struct kv_txn_req *t, const Etcdserverpb__TxnRequest *m)
{
    memset(t, 0, sizeof(*t));
    t->n_cmps = m->n_compare;
    if (m->n_compare) {
        t->cmps = arena_calloc(a, m->n_compare, sizeof(*t->cmps));
        if (!t->cmps)
            return false;
        for (size_t i = 0; i < m->n_compare; i++)
            cmp_from(&t->cmps[i], m->compare[i]);
    }
    return ops_from(a, &t->success, &t->n_success, m->success, m->n_success) &&
           ops_from(a, &t->failure, &t->n_failure, m->failure, m->n_failure);
}

/* How deep txns nest in a TxnRequest on the wire (TxnRequest.success = 2, .failure = 3 hold
 * RequestOps; RequestOp.request_txn = 4 holds a TxnRequest), without unpacking. false when
 * deeper than max or not even framed as protobuf (unpacking then says so). */
static bool nest_ok(const uint8_t *p, size_t len, bool is_txn, unsigned depth, unsigned max)
{
    struct rd r;
    rd_init(&r, p, len);
    while (rd_left(&r) > 0) {
        uint64_t tag = rd_uvarint(&r);
        if (r.err)
            return true;
        switch (tag & 7) {
        case 0:
            rd_uvarint(&r);
            break;
        case 1:
            rd_bytes(&r, 8);
            break;
        case 5:
            rd_bytes(&r, 4);
            break;
        case 2: {
            uint64_t n = rd_uvarint(&r);
            const uint8_t *q = r.err || n > rd_left(&r) ? NULL : rd_bytes(&r, (size_t)n);
            if (!q)
                return true;
            uint64_t field = tag >> 3;
            if (is_txn && (field == 2 || field == 3) && !nest_ok(q, (size_t)n, false, depth, max))
                return false;
            if (!is_txn && field == 4 &&
                (depth + 1 > max || !nest_ok(q, (size_t)n, true, depth + 1, max)))
                return false;
            break;
        }
        default:
            return true;
        }
        if (r.err)
            return true;
    }
    return true;
}

/* ---- responses ---- */

void grpc_kv_from(Mvccpb__KeyValue *m, const struct kv_kv *v)
{
    mvccpb__key_value__init(m);
    m->key.data = (uint8_t *)v->key;
    m->key.len = v->key_len;
    m->value.data = (uint8_t *)v->value;
    m->value.len = v->value_len;
    m->create_revision = v->create_revision;
    m->mod_revision = v->mod_revision;
    m->version = v->version;
    m->lease = v->lease;
}

static Mvccpb__KeyValue **kvs_to(struct arena *a, const struct kv_kv *v, size_t n)
{
    Mvccpb__KeyValue **out = arena_calloc(a, n ? n : 1, sizeof(*out));
    Mvccpb__KeyValue *m = arena_calloc(a, n ? n : 1, sizeof(*m));
    if (!out || !m)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        grpc_kv_from(&m[i], &v[i]);
        out[i] = &m[i];
    }
    return out;
}

static Etcdserverpb__RangeResponse *range_to(struct grpc_call *call, const struct kv_range_resp *r,
                                             Etcdserverpb__ResponseHeader *h)
{
    Etcdserverpb__RangeResponse *m = arena_alloc(call->a, sizeof(*m));
    if (!m || !h)
        return NULL;
    etcdserverpb__range_response__init(m);
    m->header = h;
    m->kvs = kvs_to(call->a, r->kvs, r->n_kvs);
    m->n_kvs = r->n_kvs;
    m->more = r->more;
    m->count = r->count;
    return m->kvs ? m : NULL;
}

static Etcdserverpb__PutResponse *put_to(struct grpc_call *call, const struct kv_put_resp *r,
                                         Etcdserverpb__ResponseHeader *h)
{
    Etcdserverpb__PutResponse *m = arena_alloc(call->a, sizeof(*m));
    if (!m || !h)
        return NULL;
    etcdserverpb__put_response__init(m);
    m->header = h;
    if (r->prev_kv) {
        Mvccpb__KeyValue **kv = kvs_to(call->a, r->prev_kv, 1);
        if (!kv)
            return NULL;
        m->prev_kv = kv[0];
    }
    return m;
}

static Etcdserverpb__DeleteRangeResponse *
del_to(struct grpc_call *call, const struct kv_del_resp *r, Etcdserverpb__ResponseHeader *h)
{
    Etcdserverpb__DeleteRangeResponse *m = arena_alloc(call->a, sizeof(*m));
    if (!m || !h)
        return NULL;
    etcdserverpb__delete_range_response__init(m);
    m->header = h;
    m->deleted = r->deleted;
    m->prev_kvs = kvs_to(call->a, r->prev_kvs, r->n_prev_kvs);
    m->n_prev_kvs = r->n_prev_kvs;
    return m->prev_kvs ? m : NULL;
}

static Etcdserverpb__TxnResponse *txn_to(struct grpc_call *call, const struct kv_txn_resp *t,
                                         Etcdserverpb__ResponseHeader *h)
{
    Etcdserverpb__TxnResponse *m = arena_alloc(call->a, sizeof(*m));
    Etcdserverpb__ResponseOp **ops =
        arena_calloc(call->a, t->n_resps ? t->n_resps : 1, sizeof(*ops));
    Etcdserverpb__ResponseOp *op = arena_calloc(call->a, t->n_resps ? t->n_resps : 1, sizeof(*op));
    if (!m || !h || !ops || !op)
        return NULL;
    etcdserverpb__txn_response__init(m);
    m->header = h;
    m->succeeded = t->succeeded;
    m->responses = ops;
    m->n_responses = t->n_resps;
    for (size_t i = 0; i < t->n_resps; i++) {
        const struct kv_op_resp *r = &t->resps[i];
        etcdserverpb__response_op__init(&op[i]);
        ops[i] = &op[i];
        void *sub = NULL;
        /* Inside a txn, etcd's headers carry the revision only (a nested txn's none). */
        switch (r->type) {
        case KV_OP_RANGE:
            op[i].response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
            sub = op[i].response_range =
                range_to(call, &r->u.range, grpc_header(call, r->u.range.revision, false));
            break;
        case KV_OP_PUT:
            op[i].response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
            sub = op[i].response_put =
                put_to(call, &r->u.put, grpc_header(call, r->u.put.revision, false));
            break;
        case KV_OP_DELETE:
            op[i].response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
            sub = op[i].response_delete_range =
                del_to(call, &r->u.del, grpc_header(call, r->u.del.revision, false));
            break;
        case KV_OP_TXN:
            op[i].response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
            sub = op[i].response_txn = txn_to(call, r->u.txn, grpc_header(call, 0, false));
            break;
        case KV_OP_NONE:
            sub = &op[i];
            break;
        }
        if (!sub)
            return NULL;
    }
    return m;
}

/* The completion of every KV call: the result as its response message. */
static void on_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    Etcdserverpb__ResponseHeader *h = grpc_done_header(call, err, res);
    if (!h)
        return;
    const ProtobufCMessage *m = NULL;
    switch (res->type) {
    case SRV_REQ_RANGE:
        m = (const ProtobufCMessage *)range_to(call, &res->u.range, h);
        break;
    case SRV_REQ_PUT:
        m = (const ProtobufCMessage *)put_to(call, &res->u.put, h);
        break;
    case SRV_REQ_DELETE:
        m = (const ProtobufCMessage *)del_to(call, &res->u.del, h);
        break;
    case SRV_REQ_TXN:
        m = (const ProtobufCMessage *)txn_to(call, &res->u.txn, h);
        break;
    case SRV_REQ_COMPACT: {
        Etcdserverpb__CompactionResponse *c = arena_alloc(call->a, sizeof(*c));
        if (c) {
            etcdserverpb__compaction_response__init(c);
            c->header = h;
            m = (const ProtobufCMessage *)c;
        }
        break;
    }
    default:
        grpc_call_fail(call, MS_E_INTERNAL, NULL);
        return;
    }
    if (!m) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    grpc_call_reply(call, m);
}

/* Deepest txn nesting taken over gRPC. protobuf-c recurses twice per level while unpacking;
 * this keeps that well inside the stack. etcd limits each txn's lists (--max-txn-ops), and a
 * request nested this deep is refused with the same error. */
#define GRPC_MAX_TXN_DEPTH 512

ms_err grpc_kv_decode(enum srv_req_type type, const uint8_t *p, size_t len, struct arena *a,
                      struct srv_req *out)
{
    ProtobufCAllocator al;
    grpc_allocator(a, &al);
    memset(out, 0, sizeof(*out));
    out->type = type;
    switch (type) {
    case SRV_REQ_RANGE: {
        Etcdserverpb__RangeRequest *m = etcdserverpb__range_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        range_from(&out->u.range, m);
        return MS_OK;
    }
    case SRV_REQ_PUT: {
        Etcdserverpb__PutRequest *m = etcdserverpb__put_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        put_from(&out->u.put, m);
        return MS_OK;
    }
    case SRV_REQ_DELETE: {
        Etcdserverpb__DeleteRangeRequest *m =
            etcdserverpb__delete_range_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        del_from(&out->u.del, m);
        return MS_OK;
    }
    case SRV_REQ_TXN: {
        if (!nest_ok(p, len, true, 0, GRPC_MAX_TXN_DEPTH))
            return MS_E_TOO_MANY_OPS;
        Etcdserverpb__TxnRequest *m = etcdserverpb__txn_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        return txn_from(a, &out->u.txn, m) ? MS_OK : MS_E_NOMEM;
    }
    case SRV_REQ_COMPACT: {
        Etcdserverpb__CompactionRequest *m = etcdserverpb__compaction_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        out->u.compact.revision = m->revision;
        out->u.compact.physical = m->physical;
        return MS_OK;
    }
    default:
        return MS_E_UNIMPLEMENTED;
    }
}

/* Decode, then submit; a message that does not unpack gets grpc-go's codec error. */
static void start(struct grpc_call *call, enum srv_req_type type, const char *name,
                  const uint8_t *p, size_t len)
{
    ms_err e = grpc_kv_decode(type, p, len, call->a, &call->sreq);
    /* A learner serves serializable ranges only (etcd's isRPCSupportedForLearner; the other
     * methods were refused at the call's open). */
    if (!e && type == SRV_REQ_RANGE && !call->sreq.u.range.serializable &&
        srv_is_learner(grpc_call_srv(call)))
        e = MS_E_LEARNER_RPC;
    if (e == MS_E_BAD_REQUEST) {
        char msg[160];
        snprintf(msg, sizeof(msg), "grpc: error unmarshalling request: proto: %s: illegal message",
                 name);
        grpc_call_finish(call, MS_GRPC_INTERNAL, msg);
        return;
    }
    if (e) {
        grpc_call_fail(call, e, NULL);
        return;
    }
    grpc_call_submit(call, on_done);
}

void grpc_kv_range(struct grpc_call *call, const uint8_t *p, size_t len)
{
    start(call, SRV_REQ_RANGE, "RangeRequest", p, len);
}

void grpc_kv_put(struct grpc_call *call, const uint8_t *p, size_t len)
{
    start(call, SRV_REQ_PUT, "PutRequest", p, len);
}

void grpc_kv_delete_range(struct grpc_call *call, const uint8_t *p, size_t len)
{
    start(call, SRV_REQ_DELETE, "DeleteRangeRequest", p, len);
}

void grpc_kv_txn(struct grpc_call *call, const uint8_t *p, size_t len)
{
    start(call, SRV_REQ_TXN, "TxnRequest", p, len);
}

void grpc_kv_compact(struct grpc_call *call, const uint8_t *p, size_t len)
{
    start(call, SRV_REQ_COMPACT, "CompactionRequest", p, len);
}
