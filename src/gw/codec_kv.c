/* codec_kv.c - etcd KV messages <-> JSON (RangeRequest, PutRequest, DeleteRangeRequest,
 * TxnRequest, CompactionRequest and their responses), plus their protobuf sizes.
 *
 * Output follows proto3 JSON as grpc-gateway writes it (reference §2): original field names,
 * int64 as strings, zero values omitted, fields in proto field order. Where etcd 3.4 decides
 * a doubly-set union at random (reference §17) we reject the request.
 */
#include "codec.h"

#include <string.h>

static const char *const SORT_ORDER[] = {"NONE", "ASCEND", "DESCEND"};
static const char *const SORT_TARGET[] = {"KEY", "VERSION", "CREATE", "MOD", "VALUE"};
static const char *const CMP_RESULT[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
static const char *const CMP_TARGET[] = {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static ms_err bad(struct mjson_dec *d)
{
    (void)d;
    return MS_E_BAD_REQUEST;
}

bool codec_decode_span(struct mjson_dec *d, const struct mjson_val *o, struct kv_span *s)
{
    memset(s, 0, sizeof(*s));
    if (!codec_read_bytes(d, codec_field(o, "key", NULL), &s->key, &s->key_len))
        return false;
    const uint8_t *end = NULL;
    size_t end_len = 0;
    if (!codec_read_bytes(d, codec_field(o, "range_end", "rangeEnd"), &end, &end_len))
        return false;
    kv_span_set(s, s->key, s->key_len, end, end_len);
    return true;
}

ms_err codec_decode_range(struct mjson_dec *d, const struct mjson_val *o, struct kv_range_req *r)
{
    memset(r, 0, sizeof(*r));
    if (!codec_decode_span(d, o, &r->span) ||
        !codec_read_i64(d, codec_field(o, "limit", NULL), &r->limit) ||
        !codec_read_i64(d, codec_field(o, "revision", NULL), &r->revision) ||
        !codec_read_enum(d, codec_field(o, "sort_order", "sortOrder"), SORT_ORDER, N_OF(SORT_ORDER),
                         "etcdserverpb.RangeRequest_SortOrder", &r->sort_order) ||
        !codec_read_enum(d, codec_field(o, "sort_target", "sortTarget"), SORT_TARGET,
                         N_OF(SORT_TARGET), "etcdserverpb.RangeRequest_SortTarget",
                         &r->sort_target) ||
        !codec_read_bool(d, codec_field(o, "serializable", NULL), &r->serializable) ||
        !codec_read_bool(d, codec_field(o, "keys_only", "keysOnly"), &r->keys_only) ||
        !codec_read_bool(d, codec_field(o, "count_only", "countOnly"), &r->count_only) ||
        !codec_read_i64(d, codec_field(o, "min_mod_revision", "minModRevision"),
                        &r->min_mod_revision) ||
        !codec_read_i64(d, codec_field(o, "max_mod_revision", "maxModRevision"),
                        &r->max_mod_revision) ||
        !codec_read_i64(d, codec_field(o, "min_create_revision", "minCreateRevision"),
                        &r->min_create_revision) ||
        !codec_read_i64(d, codec_field(o, "max_create_revision", "maxCreateRevision"),
                        &r->max_create_revision))
        return bad(d);
    return MS_OK;
}

ms_err codec_decode_put(struct mjson_dec *d, const struct mjson_val *o, struct kv_put_req *r)
{
    memset(r, 0, sizeof(*r));
    if (!codec_read_bytes(d, codec_field(o, "key", NULL), &r->key, &r->key_len) ||
        !codec_read_bytes(d, codec_field(o, "value", NULL), &r->value, &r->value_len) ||
        !codec_read_i64(d, codec_field(o, "lease", NULL), &r->lease) ||
        !codec_read_bool(d, codec_field(o, "prev_kv", "prevKv"), &r->prev_kv) ||
        !codec_read_bool(d, codec_field(o, "ignore_value", "ignoreValue"), &r->ignore_value) ||
        !codec_read_bool(d, codec_field(o, "ignore_lease", "ignoreLease"), &r->ignore_lease))
        return bad(d);
    return MS_OK;
}

ms_err codec_decode_del(struct mjson_dec *d, const struct mjson_val *o, struct kv_del_req *r)
{
    memset(r, 0, sizeof(*r));
    if (!codec_decode_span(d, o, &r->span) ||
        !codec_read_bool(d, codec_field(o, "prev_kv", "prevKv"), &r->prev_kv))
        return bad(d);
    return MS_OK;
}

static bool decode_cmp(struct mjson_dec *d, const struct mjson_val *o, struct kv_cmp *c)
{
    memset(c, 0, sizeof(*c));
    c->set = -1;
    if (!codec_decode_span(d, o, &c->span) ||
        !codec_read_enum(d, codec_field(o, "target", NULL), CMP_TARGET, N_OF(CMP_TARGET),
                         "etcdserverpb.Compare_CompareTarget", &c->target) ||
        !codec_read_enum(d, codec_field(o, "result", NULL), CMP_RESULT, N_OF(CMP_RESULT),
                         "etcdserverpb.Compare_CompareResult", &c->result))
        return false;
    static const struct {
        const char *name;
        const char *camel;
        int which;
    } members[] = {
        {"version", NULL, KV_CMP_VERSION},
        {"create_revision", "createRevision", KV_CMP_CREATE},
        {"mod_revision", "modRevision", KV_CMP_MOD},
        {"value", NULL, KV_CMP_VALUE},
        {"lease", NULL, KV_CMP_LEASE},
    };
    for (size_t i = 0; i < N_OF(members); i++) {
        const struct mjson_val *v = codec_field(o, members[i].name, members[i].camel);
        if (!v)
            continue;
        if (c->set != -1)
            return mjson_dec_fail(d, "etcdserver: a compare sets more than one of version, "
                                     "create_revision, mod_revision, value and lease");
        c->set = members[i].which;
        bool ok = members[i].which == KV_CMP_VALUE
                      ? codec_read_bytes(d, v, &c->value, &c->value_len)
                      : codec_read_i64(d, v, &c->number);
        if (!ok)
            return false;
    }
    return true;
}

static bool decode_ops(struct mjson_dec *d, const struct mjson_val *v, struct kv_op **ops,
                       size_t *n, int depth)
{
    const struct mjson_val *items;
    if (!codec_read_arr(d, v, &items, n))
        return false;
    *ops = NULL;
    if (*n == 0)
        return true;
    *ops = arena_calloc(d->a, *n, sizeof(**ops));
    if (!*ops)
        return mjson_dec_fail(d, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        const struct mjson_val *op;
        if (!codec_read_msg(d, &items[i], &op))
            return false;
        struct kv_op *o = &(*ops)[i];
        o->type = KV_OP_NONE;
        /* The members in field order, each decoded before the next is looked up. */
        for (unsigned k = 0; op && k < KV_OP_N_TYPES; k++) {
            const struct kv_op_desc *kd = &kv_op_table[k];
            const struct mjson_val *m;
            if (!kd->json)
                continue;
            if (!codec_read_msg(d, codec_field(op, kd->json, kd->json_camel), &m))
                return false;
            if (!m)
                continue;
            if (o->type != KV_OP_NONE)
                return mjson_dec_fail(d, "etcdserver: a request op sets more than one of "
                                         "request_range, request_put, request_delete_range and "
                                         "request_txn");
            o->type = (enum kv_op_type)k;
            ms_err e = MS_OK;
            switch (o->type) {
            case KV_OP_RANGE:
                e = codec_decode_range(d, m, &o->u.range);
                break;
            case KV_OP_PUT:
                e = codec_decode_put(d, m, &o->u.put);
                break;
            case KV_OP_DELETE:
                e = codec_decode_del(d, m, &o->u.del);
                break;
            case KV_OP_TXN:
                o->u.txn = arena_calloc(d->a, 1, sizeof(*o->u.txn));
                if (!o->u.txn)
                    return mjson_dec_fail(d, "out of memory");
                e = codec_decode_txn(d, m, o->u.txn, depth + 1);
                break;
            case KV_OP_NONE:
                break;
            }
            if (e)
                return false;
        }
    }
    return true;
}

ms_err codec_decode_txn(struct mjson_dec *d, const struct mjson_val *o, struct kv_txn_req *r,
                        int depth)
{
    /* The JSON parser's depth limit comes first: see KV_MAX_TXN_DEPTH. */
    memset(r, 0, sizeof(*r));
    if (depth > KV_MAX_TXN_DEPTH)
        return mjson_dec_fail(d, "etcdserver: transactions nested too deeply"), bad(d);
    const struct mjson_val *items;
    if (!codec_read_arr(d, codec_field(o, "compare", NULL), &items, &r->n_cmps))
        return bad(d);
    if (r->n_cmps) {
        r->cmps = arena_calloc(d->a, r->n_cmps, sizeof(*r->cmps));
        if (!r->cmps)
            return mjson_dec_fail(d, "out of memory"), bad(d);
    }
    for (size_t i = 0; i < r->n_cmps; i++) {
        const struct mjson_val *c;
        if (!codec_read_msg(d, &items[i], &c))
            return bad(d);
        if (c && !decode_cmp(d, c, &r->cmps[i]))
            return bad(d);
        if (!c)
            r->cmps[i].set = -1;
    }
    if (!decode_ops(d, codec_field(o, "success", NULL), &r->success, &r->n_success, depth) ||
        !decode_ops(d, codec_field(o, "failure", NULL), &r->failure, &r->n_failure, depth))
        return bad(d);
    return MS_OK;
}

ms_err codec_decode_compact(struct mjson_dec *d, const struct mjson_val *o,
                            struct srv_compact_req *r)
{
    memset(r, 0, sizeof(*r));
    if (!codec_read_i64(d, codec_field(o, "revision", NULL), &r->revision) ||
        !codec_read_bool(d, codec_field(o, "physical", NULL), &r->physical))
        return bad(d);
    return MS_OK;
}

/* ---- protobuf sizes (proto3: zero values take no bytes) ---- */

static size_t sz_range(const struct kv_range_req *r)
{
    return sz_bytes(1, r->span.key_len) +
           sz_bytes(2, r->span.end_kind == KV_END_ALL ? 1 : r->span.end_len) + sz_int(3, r->limit) +
           sz_int(4, r->revision) + sz_int(5, r->sort_order) + sz_int(6, r->sort_target) +
           sz_int(7, r->serializable) + sz_int(8, r->keys_only) + sz_int(9, r->count_only) +
           sz_int(10, r->min_mod_revision) + sz_int(11, r->max_mod_revision) +
           sz_int(12, r->min_create_revision) + sz_int(13, r->max_create_revision);
}

static size_t sz_put(const struct kv_put_req *r)
{
    return sz_bytes(1, r->key_len) + sz_bytes(2, r->value_len) + sz_int(3, r->lease) +
           sz_int(4, r->prev_kv) + sz_int(5, r->ignore_value) + sz_int(6, r->ignore_lease);
}

static size_t sz_del(const struct kv_del_req *r)
{
    return sz_bytes(1, r->span.key_len) +
           sz_bytes(2, r->span.end_kind == KV_END_ALL ? 1 : r->span.end_len) +
           sz_int(3, r->prev_kv);
}

/* A txn's size through kv_txn_walk: each op is a RequestOp (field 2 of TxnRequest: success,
 * 3: failure) around its message; a nested txn's message is sized by sz_txn_end. */
static size_t sz_op(void *ctx, const struct kv_op *op, bool success, size_t val)
{
    (void)ctx;
    switch (op->type) {
    case KV_OP_RANGE:
        val = sz_range(&op->u.range);
        break;
    case KV_OP_PUT:
        val = sz_put(&op->u.put);
        break;
    case KV_OP_DELETE:
        val = sz_del(&op->u.del);
        break;
    case KV_OP_TXN:
    case KV_OP_NONE:
        break;
    }
    unsigned field = (unsigned)op->type < KV_OP_N_TYPES ? kv_op_table[op->type].field : 0;
    return sz_msg(success ? 2 : 3, field ? sz_msg(field, val) : 0);
}

static size_t sz_txn_end(void *ctx, const struct kv_txn_req *t, size_t success, size_t failure)
{
    (void)ctx;
    size_t total = success + failure;
    for (size_t i = 0; i < t->n_cmps; i++) {
        const struct kv_cmp *c = &t->cmps[i];
        size_t inner = sz_int(1, c->result) + sz_int(2, c->target) + sz_bytes(3, c->span.key_len) +
                       sz_bytes(64, c->span.end_kind == KV_END_ALL ? 1 : c->span.end_len);
        if (c->set == KV_CMP_VALUE)
            inner += 1 + buf_uvarint_len(c->value_len) + c->value_len;
        else if (c->set >= 0)
            inner += 1 + buf_uvarint_len((uint64_t)c->number);
        total += sz_msg(1, inner);
    }
    return total;
}

static const struct kv_visit sz_visit = {.op_end = sz_op, .txn_end = sz_txn_end};

size_t codec_proto_size(const struct srv_req *req)
{
    switch (req->type) {
    case SRV_REQ_RANGE:
        return sz_range(&req->u.range);
    case SRV_REQ_PUT:
        return sz_put(&req->u.put);
    case SRV_REQ_DELETE:
        return sz_del(&req->u.del);
    case SRV_REQ_TXN: {
        size_t n = 0;
        kv_txn_walk(&req->u.txn, &sz_visit, NULL, &n);
        return n;
    }
    case SRV_REQ_COMPACT:
        return sz_int(1, req->u.compact.revision) + sz_int(2, req->u.compact.physical);
    case SRV_REQ_DEFRAG:
    case SRV_REQ_MEMBER_ATTR:
    case SRV_REQ_MOVE_LEADER:
    case SRV_REQ_MEMBER_ADD:
    case SRV_REQ_MEMBER_REMOVE:
    case SRV_REQ_MEMBER_UPDATE:
    case SRV_REQ_MEMBER_PROMOTE:
        return 0;
    case SRV_REQ_LEASE_GRANT:
    case SRV_REQ_LEASE_REVOKE:
        return sz_int(1, req->u.lease.ttl) + sz_int(2, req->u.lease.id);
    case SRV_REQ_LEASE_KEEPALIVE:
    case SRV_REQ_LEASE_TTL:
        return sz_int(1, req->u.lease.id);
    case SRV_REQ_ALARM:
        return sz_int(1, req->u.alarm.action) + sz_int(2, (int64_t)req->u.alarm.member_id) +
               sz_int(3, req->u.alarm.alarm);
    case SRV_REQ_AUTH: {
        const struct auth_req *a = &req->u.auth;
        size_t perm =
            sz_int(1, a->perm_type) + sz_bytes(2, a->key.len) + sz_bytes(3, a->range_end.len);
        return sz_bytes(1, a->name.len) + sz_bytes(2, a->password.len) + sz_bytes(2, a->role.len) +
               (a->op == AUTH_OP_ROLE_GRANT ? sz_bytes(2, perm) : 0);
    }
    }
    return 0;
}

/* ---- responses ---- */

void codec_header(struct mjson_w *w, const struct srv_header *h, bool with_revision)
{
    mjson_w_obj(w);
    if (h->cluster_id) {
        mjson_w_key(w, "cluster_id");
        codec_write_u64(w, h->cluster_id);
    }
    if (h->member_id) {
        mjson_w_key(w, "member_id");
        codec_write_u64(w, h->member_id);
    }
    if (with_revision && h->revision) {
        mjson_w_key(w, "revision");
        codec_write_i64(w, h->revision);
    }
    if (h->raft_term) {
        mjson_w_key(w, "raft_term");
        codec_write_u64(w, h->raft_term);
    }
    mjson_w_obj_end(w);
}

static void inner_header(struct mjson_w *w, int64_t rev)
{
    mjson_w_key(w, "header");
    mjson_w_obj(w);
    if (rev) {
        mjson_w_key(w, "revision");
        codec_write_i64(w, rev);
    }
    mjson_w_obj_end(w);
}

void codec_kv(struct mjson_w *w, const struct kv_kv *kv)
{
    mjson_w_obj(w);
    if (kv->key_len) {
        MJSON_W_KEY(w, "key");
        codec_write_b64(w, kv->key, kv->key_len);
    }
    if (kv->create_revision) {
        MJSON_W_KEY(w, "create_revision");
        codec_write_i64(w, kv->create_revision);
    }
    if (kv->mod_revision) {
        MJSON_W_KEY(w, "mod_revision");
        codec_write_i64(w, kv->mod_revision);
    }
    if (kv->version) {
        MJSON_W_KEY(w, "version");
        codec_write_i64(w, kv->version);
    }
    if (kv->value_len) {
        MJSON_W_KEY(w, "value");
        codec_write_b64(w, kv->value, kv->value_len);
    }
    if (kv->lease) {
        MJSON_W_KEY(w, "lease");
        codec_write_i64(w, kv->lease);
    }
    mjson_w_obj_end(w);
}

static void kvs(struct mjson_w *w, const char *name, const struct kv_kv *v, size_t n)
{
    if (!n)
        return;
    mjson_w_key(w, name);
    mjson_w_arr(w);
    for (size_t i = 0; i < n; i++)
        codec_kv(w, &v[i]);
    mjson_w_arr_end(w);
}

static void range_body(struct mjson_w *w, const struct kv_range_resp *r)
{
    kvs(w, "kvs", r->kvs, r->n_kvs);
    if (r->more) {
        mjson_w_key(w, "more");
        mjson_w_bool(w, true);
    }
    if (r->count) {
        mjson_w_key(w, "count");
        codec_write_i64(w, r->count);
    }
}

static void put_body(struct mjson_w *w, const struct kv_put_resp *r)
{
    if (r->prev_kv) {
        mjson_w_key(w, "prev_kv");
        codec_kv(w, r->prev_kv);
    }
}

static void del_body(struct mjson_w *w, const struct kv_del_resp *r)
{
    if (r->deleted) {
        mjson_w_key(w, "deleted");
        codec_write_i64(w, r->deleted);
    }
    kvs(w, "prev_kvs", r->prev_kvs, r->n_prev_kvs);
}

static void txn_body(struct mjson_w *w, const struct kv_txn_resp *t)
{
    if (t->succeeded) {
        mjson_w_key(w, "succeeded");
        mjson_w_bool(w, true);
    }
    if (!t->n_resps)
        return;
    mjson_w_key(w, "responses");
    mjson_w_arr(w);
    for (size_t i = 0; i < t->n_resps; i++) {
        const struct kv_op_resp *r = &t->resps[i];
        mjson_w_obj(w);
        if ((unsigned)r->type < KV_OP_N_TYPES && kv_op_table[r->type].resp_json) {
            mjson_w_key(w, kv_op_table[r->type].resp_json);
            mjson_w_obj(w);
            switch (r->type) {
            case KV_OP_RANGE:
                inner_header(w, r->u.range.revision);
                range_body(w, &r->u.range);
                break;
            case KV_OP_PUT:
                inner_header(w, r->u.put.revision);
                put_body(w, &r->u.put);
                break;
            case KV_OP_DELETE:
                inner_header(w, r->u.del.revision);
                del_body(w, &r->u.del);
                break;
            case KV_OP_TXN:
                inner_header(w, 0); /* etcd leaves a nested txn's header empty */
                txn_body(w, r->u.txn);
                break;
            case KV_OP_NONE:
                break;
            }
            mjson_w_obj_end(w);
        }
        mjson_w_obj_end(w);
    }
    mjson_w_arr_end(w);
}

void codec_result(struct mjson_w *w, const struct srv_header *h, const struct srv_result *r)
{
    mjson_w_obj(w);
    mjson_w_key(w, "header");
    codec_header(w, h, true);
    switch (r->type) {
    case SRV_REQ_RANGE:
        range_body(w, &r->u.range);
        break;
    case SRV_REQ_PUT:
        put_body(w, &r->u.put);
        break;
    case SRV_REQ_DELETE:
        del_body(w, &r->u.del);
        break;
    case SRV_REQ_TXN:
        txn_body(w, &r->u.txn);
        break;
    case SRV_REQ_COMPACT:
    case SRV_REQ_ALARM:
    case SRV_REQ_DEFRAG:
    case SRV_REQ_LEASE_REVOKE:
    case SRV_REQ_MEMBER_ATTR:
    case SRV_REQ_LEASE_KEEPALIVE: /* the lease routes encode these themselves */
    case SRV_REQ_LEASE_TTL:
    case SRV_REQ_MOVE_LEADER:
    case SRV_REQ_MEMBER_ADD:
    case SRV_REQ_MEMBER_REMOVE:
    case SRV_REQ_MEMBER_UPDATE:
    case SRV_REQ_MEMBER_PROMOTE:
        break;
    case SRV_REQ_AUTH:
        codec_auth_body(w, &r->u.auth);
        break;
    case SRV_REQ_LEASE_GRANT:
        mjson_w_key(w, "ID");
        codec_write_i64(w, r->u.lease.id);
        if (r->u.lease.ttl) {
            mjson_w_key(w, "TTL");
            codec_write_i64(w, r->u.lease.ttl);
        }
        break;
    }
    mjson_w_obj_end(w);
}

static const char *const ALARM_ACTION[] = {"GET", "ACTIVATE", "DEACTIVATE"};
static const char *const ALARM_TYPE[] = {"NONE", "NOSPACE", "CORRUPT"};

const char *codec_alarm_name(int64_t alarm)
{
    return alarm >= 0 && alarm < (int64_t)N_OF(ALARM_TYPE) ? ALARM_TYPE[alarm] : "NONE";
}

ms_err codec_decode_alarm(struct mjson_dec *d, const struct mjson_val *o, struct srv_alarm_req *r)
{
    memset(r, 0, sizeof(*r));
    if (!codec_read_enum(d, codec_field(o, "action", NULL), ALARM_ACTION, N_OF(ALARM_ACTION),
                         "etcdserverpb.AlarmRequest_AlarmAction", &r->action) ||
        !codec_read_u64(d, codec_field(o, "memberID", NULL), &r->member_id) ||
        !codec_read_enum(d, codec_field(o, "alarm", NULL), ALARM_TYPE, N_OF(ALARM_TYPE),
                         "etcdserverpb.AlarmType", &r->alarm))
        return bad(d);
    return MS_OK;
}

void codec_alarms(struct mjson_w *w, const struct srv_alarm *a, size_t n)
{
    /* AlarmResponse has a header field, but etcd's gateway answers without it (reference §9). */
    mjson_w_obj(w);
    if (n) {
        mjson_w_key(w, "alarms");
        mjson_w_arr(w);
        for (size_t i = 0; i < n; i++) {
            mjson_w_obj(w);
            if (a[i].member_id) {
                mjson_w_key(w, "memberID");
                codec_write_u64(w, a[i].member_id);
            }
            if (a[i].alarm) {
                mjson_w_key(w, "alarm");
                mjson_w_cstr(w, codec_alarm_name(a[i].alarm));
            }
            mjson_w_obj_end(w);
        }
        mjson_w_arr_end(w);
    }
    mjson_w_obj_end(w);
}

void codec_error(struct buf *b, const char *msg, int code)
{
    struct mjson_w w;
    mjson_w_init(&w, b);
    mjson_w_obj(&w);
    mjson_w_key(&w, "error");
    mjson_w_cstr(&w, msg);
    mjson_w_key(&w, "message");
    mjson_w_cstr(&w, msg);
    mjson_w_key(&w, "code");
    mjson_w_num(&w, code);
    mjson_w_obj_end(&w);
}
