/* gw_lease.c - the lease routes under /v3/lease/ (and the /v3/kv/lease/ aliases of etcd 3.4).
 *
 * Grant and revoke go through the log; keepalive, timetolive and leases are answered at once.
 * The fields are spelled exactly TTL and ID (proto names declared that way: "ttl"/"id" are
 * ignored, as by etcd's gateway). Keepalive is a stream: one {"result":...}\n per message of
 * the request body, ending when the body does (reference §7).
 */
#include "codec.h"
#include "gw_int.h"

void gw_lease_grant(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_LEASE_GRANT;
    if (!codec_read_i64(&d, codec_field(&root, "TTL", NULL), &r->sreq.u.lease.ttl) ||
        !codec_read_i64(&d, codec_field(&root, "ID", NULL), &r->sreq.u.lease.id)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    gw_submit(r);
}

void gw_lease_revoke(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_LEASE_REVOKE;
    if (!codec_read_i64(&d, codec_field(&root, "ID", NULL), &r->sreq.u.lease.id)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    gw_submit(r);
}

/* The leader's answer (remaining and granted TTL), and the attached keys from here. */
static void ttl_encode(struct gw_req *r, const struct srv_result *res, struct buf *b)
{
    const bool *keys = r->route;
    struct mjson_w w;
    const uint8_t **kv = NULL;
    size_t *lens = NULL, n = 0;
    if (*keys && res->u.lease.ttl >= 0 &&
        srv_lease_keys(r->gw->srv, res->u.lease.id, r->a, &kv, &lens, &n) != MS_OK)
        b->failed = true;
    mjson_w_init(&w, b);
    mjson_w_obj(&w);
    gw_json_header(r, &w, true);
    if (res->u.lease.id) {
        mjson_w_key(&w, "ID");
        codec_write_i64(&w, res->u.lease.id);
    }
    if (res->u.lease.ttl) {
        mjson_w_key(&w, "TTL");
        codec_write_i64(&w, res->u.lease.ttl);
    }
    if (res->u.lease.granted) {
        mjson_w_key(&w, "grantedTTL");
        codec_write_i64(&w, res->u.lease.granted);
    }
    if (n) {
        mjson_w_key(&w, "keys");
        mjson_w_arr(&w);
        for (size_t i = 0; i < n; i++)
            codec_write_b64(&w, kv[i], lens[i]);
        mjson_w_arr_end(&w);
    }
    mjson_w_obj_end(&w);
}

void gw_lease_timetolive(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    int64_t id = 0;
    bool *keys = arena_alloc(r->a, sizeof(*keys));
    if (!keys) {
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return;
    }
    *keys = false;
    if (!gw_parse_root(r, &d, &root))
        return;
    if (!codec_read_i64(&d, codec_field(&root, "ID", NULL), &id) ||
        !codec_read_bool(&d, codec_field(&root, "keys", NULL), keys)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    r->sreq = (struct srv_req){.type = SRV_REQ_LEASE_TTL, .u.lease = {.id = id}};
    r->route = keys;
    r->encode = ttl_encode;
    gw_submit(r);
}

void gw_lease_leases(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    int64_t *ids;
    size_t n;
    ms_err e = srv_lease_list(r->gw->srv, r->a, &ids, &n);
    if (e) {
        gw_reply_error(r, e, NULL);
        return;
    }
    struct buf b;
    struct mjson_w w;
    gw_json_begin(r, &b, &w, true);
    if (n) {
        mjson_w_key(&w, "leases");
        mjson_w_arr(&w);
        for (size_t i = 0; i < n; i++) {
            mjson_w_obj(&w);
            mjson_w_key(&w, "ID");
            codec_write_i64(&w, ids[i]);
            mjson_w_obj_end(&w);
        }
        mjson_w_arr_end(&w);
    }
    mjson_w_obj_end(&w);
    gw_reply(r, 200, &b);
}

/* A keepalive stream's messages, answered one after the other. */
struct keepalive {
    int64_t *ids;
    size_t n;
    size_t next; /* the one being answered */
    struct buf out;
};

static bool keepalive_next(struct gw_req *r);

static void keepalive_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct gw_req *r = ctx;
    struct keepalive *k = r->route;
    r->srv_id = 0;
    if (err && k->next == 0) {
        buf_fini(&k->out);
        gw_reply_stream_error(r, err, NULL);
        return;
    }
    if (err) {
        k->n = k->next; /* a later one: the answers so far, then the stream ends */
    } else {
        struct mjson_w w;
        mjson_w_init(&w, &k->out);
        mjson_w_obj(&w);
        mjson_w_key(&w, "result");
        mjson_w_obj(&w);
        gw_json_header(r, &w, true);
        if (res->u.lease.id) {
            mjson_w_key(&w, "ID");
            codec_write_i64(&w, res->u.lease.id);
        }
        if (res->u.lease.ttl) {
            mjson_w_key(&w, "TTL");
            codec_write_i64(&w, res->u.lease.ttl);
        }
        mjson_w_obj_end(&w);
        mjson_w_obj_end(&w);
        buf_putc(&k->out, '\n');
        k->next++;
    }
    keepalive_next(r);
}

/* Ask for the next keepalive (true: r waits for it), or end the stream with every answer (r
 * is freed). */
static bool keepalive_next(struct gw_req *r)
{
    struct keepalive *k = r->route;
    if (k->next < k->n) {
        struct srv_req q = {.type = SRV_REQ_LEASE_KEEPALIVE, .u.lease = {.id = k->ids[k->next]}};
        ms_err e = srv_submit(r->gw->srv, &q, keepalive_done, r, &r->srv_id);
        if (!e)
            return true;
        r->srv_id = 0;
        if (k->next == 0) {
            buf_fini(&k->out);
            gw_reply_stream_error(r, e, NULL);
            return false;
        }
    }
    gw_stream_start(r);
    gw_reply(r, 200, &k->out);
    return false;
}

void gw_lease_keepalive(struct gw_req *r)
{
    struct keepalive *k = arena_alloc(r->a, sizeof(*k));
    if (!k) {
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return;
    }
    memset(k, 0, sizeof(*k));
    size_t off = 0, cap = 0;
    for (;;) {
        /* Skip the blanks between messages; the body's end ends the stream. */
        off = mjson_skip_ws(r->body, r->body_len, off);
        if (off >= r->body_len)
            break;
        struct mjson_dec d;
        struct mjson_val v;
        size_t used;
        int64_t id = 0;
        mjson_dec_init(&d, r->a);
        if (!mjson_parse_next(&d, r->body + off, r->body_len - off, &v, &used) ||
            !codec_root_value(&d, &v) || !codec_read_i64(&d, codec_field(&v, "ID", NULL), &id)) {
            if (k->n == 0) {
                gw_reply_decode_error(r, d.msg);
                return;
            }
            break; /* a later one: the request side just ends */
        }
        off += used;
        if (k->n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            int64_t *ids = arena_alloc(r->a, nc * sizeof(*ids));
            if (!ids) {
                gw_reply_error(r, MS_E_NOMEM, NULL);
                return;
            }
            if (k->n)
                memcpy(ids, k->ids, k->n * sizeof(*ids));
            k->ids = ids;
            cap = nc;
        }
        k->ids[k->n++] = id;
    }
    buf_init(&k->out);
    r->route = k;
    if (keepalive_next(r))
        gw_wait(r);
}
