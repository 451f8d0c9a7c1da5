/* srv_codec.c - the binary form of a request inside a log entry.
 *
 * Layout: version byte, request type, request id (uvarint), who asked (version 2: flags, then
 * the user and the auth revision of a checked request), then the request's fields in a fixed
 * order. Version 1 entries (no caller) still decode. Integers are zig-zag varints, byte strings a
 * uvarint length and the bytes. Decoding is strict (every length checked against what remains,
 * nesting depth capped) because entries come back from disk and from peers.
 */
#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/log.h"
#include "metastore/srv.h"

#include <string.h>

#define ENTRY_V1       1
#define ENTRY_V2       2 /* with the caller */
#define CALLER_CHECKED 1
#define CALLER_USER    2
#define MAX_LIST_COUNT 1000000

static void put_i64(struct buf *b, int64_t v)
{
    buf_put_uvarint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static int64_t get_i64(struct rd *r)
{
    uint64_t u = rd_uvarint(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static void put_span(struct buf *b, const struct kv_span *s)
{
    buf_put_lbytes(b, s->key, s->key_len);
    buf_putc(b, (char)s->end_kind);
    buf_put_lbytes(b, s->end, s->end_len);
}

static void get_span(struct rd *r, struct kv_span *s)
{
    s->key = rd_lbytes(r, &s->key_len);
    uint8_t k = rd_u8(r);
    if (k > KV_END_ALL)
        r->err = true;
    s->end_kind = (enum kv_end_kind)k;
    s->end = rd_lbytes(r, &s->end_len);
}

static void put_range(struct buf *b, const struct kv_range_req *q)
{
    put_span(b, &q->span);
    put_i64(b, q->limit);
    put_i64(b, q->revision);
    put_i64(b, q->sort_order);
    put_i64(b, q->sort_target);
    buf_putc(b, (char)(q->serializable | q->keys_only << 1 | q->count_only << 2));
    put_i64(b, q->min_mod_revision);
    put_i64(b, q->max_mod_revision);
    put_i64(b, q->min_create_revision);
    put_i64(b, q->max_create_revision);
}

static void get_range(struct rd *r, struct kv_range_req *q)
{
    get_span(r, &q->span);
    q->limit = get_i64(r);
    q->revision = get_i64(r);
    q->sort_order = get_i64(r);
    q->sort_target = get_i64(r);
    uint8_t f = rd_u8(r);
    q->serializable = f & 1;
    q->keys_only = f & 2;
    q->count_only = f & 4;
    q->min_mod_revision = get_i64(r);
    q->max_mod_revision = get_i64(r);
    q->min_create_revision = get_i64(r);
    q->max_create_revision = get_i64(r);
}

static void put_put(struct buf *b, const struct kv_put_req *q)
{
    buf_put_lbytes(b, q->key, q->key_len);
    buf_put_lbytes(b, q->value, q->value_len);
    put_i64(b, q->lease);
    buf_putc(b, (char)(q->prev_kv | q->ignore_value << 1 | q->ignore_lease << 2));
}

static void get_put(struct rd *r, struct kv_put_req *q)
{
    q->key = rd_lbytes(r, &q->key_len);
    q->value = rd_lbytes(r, &q->value_len);
    q->lease = get_i64(r);
    uint8_t f = rd_u8(r);
    q->prev_kv = f & 1;
    q->ignore_value = f & 2;
    q->ignore_lease = f & 4;
}

static void put_del(struct buf *b, const struct kv_del_req *q)
{
    put_span(b, &q->span);
    buf_putc(b, (char)q->prev_kv);
}

static void get_del(struct rd *r, struct kv_del_req *q)
{
    get_span(r, &q->span);
    q->prev_kv = rd_u8(r) & 1;
}

/* A txn through kv_txn_walk: its compares, then each branch as a count and its ops, each op
 * as its type byte and its fields (a nested txn's follow as the walk goes into it). */
static ms_err put_txn(void *ctx, const struct kv_txn_req *t)
{
    struct buf *b = ctx;
    buf_put_uvarint(b, t->n_cmps);
    for (size_t i = 0; i < t->n_cmps; i++) {
        const struct kv_cmp *c = &t->cmps[i];
        put_span(b, &c->span);
        put_i64(b, c->target);
        put_i64(b, c->result);
        put_i64(b, c->set);
        put_i64(b, c->number);
        buf_put_lbytes(b, c->value, c->value_len);
    }
    return MS_OK;
}

static ms_err put_count(void *ctx, bool success, size_t n)
{
    (void)success;
    buf_put_uvarint(ctx, n);
    return MS_OK;
}

static ms_err put_op(void *ctx, const struct kv_op *op)
{
    struct buf *b = ctx;
    buf_putc(b, (char)op->type);
    switch (op->type) {
    case KV_OP_RANGE:
        put_range(b, &op->u.range);
        break;
    case KV_OP_PUT:
        put_put(b, &op->u.put);
        break;
    case KV_OP_DELETE:
        put_del(b, &op->u.del);
        break;
    case KV_OP_TXN:
    case KV_OP_NONE:
        break;
    }
    return MS_OK;
}

static const struct kv_visit put_visit = {
    .txn = put_txn,
    .branch = put_count,
    .op = put_op,
};

static bool get_txn(struct rd *r, struct arena *a, struct kv_txn_req *t, int depth);

static bool get_count(struct rd *r, size_t *n)
{
    uint64_t c = rd_uvarint(r);
    /* Every element takes at least one byte: a count beyond what remains is corrupt. */
    if (c > rd_left(r) || c > MAX_LIST_COUNT) {
        r->err = true;
        return false;
    }
    *n = (size_t)c;
    return !r->err;
}

static bool get_ops(struct rd *r, struct arena *a, struct kv_op **ops, size_t *n, int depth)
{
    if (!get_count(r, n))
        return false;
    *ops = NULL;
    if (*n == 0)
        return true;
    *ops = arena_calloc(a, *n, sizeof(**ops));
    if (!*ops)
        return false;
    for (size_t i = 0; i < *n && !r->err; i++) {
        struct kv_op *op = &(*ops)[i];
        uint8_t t = rd_u8(r);
        switch (t) {
        case KV_OP_RANGE:
            get_range(r, &op->u.range);
            break;
        case KV_OP_PUT:
            get_put(r, &op->u.put);
            break;
        case KV_OP_DELETE:
            get_del(r, &op->u.del);
            break;
        case KV_OP_TXN:
            op->u.txn = arena_calloc(a, 1, sizeof(*op->u.txn));
            if (!op->u.txn || !get_txn(r, a, op->u.txn, depth + 1))
                return false;
            break;
        case KV_OP_NONE:
            break;
        default:
            return false;
        }
        op->type = (enum kv_op_type)t;
    }
    return !r->err;
}

static bool get_txn(struct rd *r, struct arena *a, struct kv_txn_req *t, int depth)
{
    if (depth > KV_MAX_TXN_DEPTH || !get_count(r, &t->n_cmps))
        return false;
    if (t->n_cmps) {
        t->cmps = arena_calloc(a, t->n_cmps, sizeof(*t->cmps));
        if (!t->cmps)
            return false;
    }
    for (size_t i = 0; i < t->n_cmps && !r->err; i++) {
        struct kv_cmp *c = &t->cmps[i];
        get_span(r, &c->span);
        c->target = get_i64(r);
        c->result = get_i64(r);
        int64_t set = get_i64(r);
        if (set < -1 || set > KV_CMP_LEASE)
            return false;
        c->set = (int)set;
        c->number = get_i64(r);
        c->value = rd_lbytes(r, &c->value_len);
    }
    return get_ops(r, a, &t->success, &t->n_success, depth) &&
           get_ops(r, a, &t->failure, &t->n_failure, depth);
}

void srv_entry_encode(uint64_t id, const struct srv_req *req, struct buf *out)
{
    buf_putc(out, ENTRY_V2);
    buf_putc(out, (char)req->type);
    buf_put_uvarint(out, id);
    bool user = req->checked && req->caller.has_user;
    buf_putc(out, (char)((req->checked ? CALLER_CHECKED : 0) | (user ? CALLER_USER : 0)));
    if (user) {
        buf_put_lbytes(out, req->caller.user.p, req->caller.user.len);
        buf_put_uvarint(out, req->caller.revision);
    }
    switch (req->type) {
    case SRV_REQ_RANGE:
        put_range(out, &req->u.range);
        break;
    case SRV_REQ_PUT:
        put_put(out, &req->u.put);
        break;
    case SRV_REQ_DELETE:
        put_del(out, &req->u.del);
        break;
    case SRV_REQ_TXN: {
        /* Only nesting deeper than validation (kv_check_txn) lets through stops the walk. */
        ms_err e = kv_txn_walk(&req->u.txn, &put_visit, out, NULL);
        MS_ASSERT(e == MS_OK);
        break;
    }
    case SRV_REQ_COMPACT:
        put_i64(out, req->u.compact.revision);
        buf_putc(out, (char)req->u.compact.physical);
        break;
    case SRV_REQ_ALARM:
        put_i64(out, req->u.alarm.action);
        buf_put_uvarint(out, req->u.alarm.member_id);
        put_i64(out, req->u.alarm.alarm);
        break;
    case SRV_REQ_LEASE_GRANT:
    case SRV_REQ_LEASE_REVOKE:
        put_i64(out, req->u.lease.id);
        put_i64(out, req->u.lease.ttl);
        break;
    case SRV_REQ_MEMBER_ATTR:
        buf_put_uvarint(out, req->u.member.id);
        buf_put_lbytes(out, (const uint8_t *)req->u.member.name, req->u.member.name_len);
        buf_put_lbytes(out, (const uint8_t *)req->u.member.client_urls,
                       req->u.member.client_urls_len);
        break;
    case SRV_REQ_AUTH:
        auth_req_encode(&req->u.auth, out);
        break;
    case SRV_REQ_DEFRAG:
    case SRV_REQ_LEASE_KEEPALIVE: /* never in the log */
    case SRV_REQ_LEASE_TTL:
    case SRV_REQ_MOVE_LEADER:
    case SRV_REQ_MEMBER_ADD: /* srv_member_*: conf changes */
    case SRV_REQ_MEMBER_REMOVE:
    case SRV_REQ_MEMBER_UPDATE:
    case SRV_REQ_MEMBER_PROMOTE:
        break;
    }
}

bool srv_entry_decode(const uint8_t *p, size_t len, struct arena *a, uint64_t *id,
                      struct srv_req *req)
{
    struct rd r;
    rd_init(&r, p, len);
    memset(req, 0, sizeof(*req));
    uint8_t version = rd_u8(&r);
    if (version != ENTRY_V1 && version != ENTRY_V2)
        return false;
    uint8_t type = rd_u8(&r);
    *id = rd_uvarint(&r);
    if (version == ENTRY_V2) {
        uint8_t flags = rd_u8(&r);
        if (flags & ~(CALLER_CHECKED | CALLER_USER) || flags == CALLER_USER)
            return false;
        req->checked = flags & CALLER_CHECKED;
        if (flags & CALLER_USER) {
            req->caller.has_user = true;
            req->caller.user.p = rd_lbytes(&r, &req->caller.user.len);
            req->caller.revision = rd_uvarint(&r);
        }
    }
    switch (type) {
    case SRV_REQ_RANGE:
        get_range(&r, &req->u.range);
        break;
    case SRV_REQ_PUT:
        get_put(&r, &req->u.put);
        break;
    case SRV_REQ_DELETE:
        get_del(&r, &req->u.del);
        break;
    case SRV_REQ_TXN:
        if (!get_txn(&r, a, &req->u.txn, 0))
            return false;
        break;
    case SRV_REQ_COMPACT:
        req->u.compact.revision = get_i64(&r);
        req->u.compact.physical = rd_u8(&r) & 1;
        break;
    case SRV_REQ_ALARM:
        req->u.alarm.action = get_i64(&r);
        req->u.alarm.member_id = rd_uvarint(&r);
        req->u.alarm.alarm = get_i64(&r);
        break;
    case SRV_REQ_LEASE_GRANT:
    case SRV_REQ_LEASE_REVOKE:
        req->u.lease.id = get_i64(&r);
        req->u.lease.ttl = get_i64(&r);
        break;
    case SRV_REQ_MEMBER_ATTR:
        req->u.member.id = rd_uvarint(&r);
        req->u.member.name = (const char *)rd_lbytes(&r, &req->u.member.name_len);
        req->u.member.client_urls = (const char *)rd_lbytes(&r, &req->u.member.client_urls_len);
        break;
    case SRV_REQ_AUTH:
        if (!auth_req_decode(&r, &req->u.auth))
            return false;
        break;
    default:
        return false;
    }
    req->type = (enum srv_req_type)type;
    return !r.err && rd_left(&r) == 0;
}
