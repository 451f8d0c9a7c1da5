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

/* A lease answer's ID and TTL, each left out when zero (as etcd's JSON omits them). */
static void write_id_ttl(struct mjson_w *w, const struct srv_result *res)
{
    if (res->u.lease.id) {
        mjson_w_key(w, "ID");
        codec_write_i64(w, res->u.lease.id);
    }
    if (res->u.lease.ttl) {
        mjson_w_key(w, "TTL");
        codec_write_i64(w, res->u.lease.ttl);
    }
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
    write_id_ttl(&w, res);
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

/* A keepalive stream's messages, read from the body one at a time and answered one after the
 * other, each answer a chunk of the stream as it comes (as etcd's gateway streams them). */
struct keepalive {
    size_t off;  /* the next message in the body */
    size_t done; /* answers sent */
};

/* Answers waiting for the socket before the next message is taken: a body of tiny messages
 * (2 bytes each, about 120 bytes of answer) must not turn into a mountain of output. */
#define KEEPALIVE_HIGH (64u << 10)

static bool keepalive_next(struct gw_req *r);

static void keepalive_end(struct gw_req *r)
{
    if (!r->streamed)
        gw_stream_start(r);
    gw_reply(r, 200, NULL);
}

static void on_keepalive_drain(void *arg)
{
    struct gw_req *r = arg;
    http_set_drain_cb(r->req, 0, NULL, NULL);
    keepalive_next(r);
}

static void keepalive_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct gw_req *r = ctx;
    struct keepalive *k = r->route;
    r->srv_id = 0;
    if (err && k->done == 0) {
        gw_reply_stream_error(r, err, NULL);
        return;
    }
    if (err) {
        keepalive_end(r); /* a later one: the answers so far, then the stream ends */
        return;
    }
    struct buf out;
    struct mjson_w w;
    buf_init(&out);
    mjson_w_init(&w, &out);
    mjson_w_obj(&w);
    mjson_w_key(&w, "result");
    mjson_w_obj(&w);
    gw_json_header(r, &w, true);
    write_id_ttl(&w, res);
    mjson_w_obj_end(&w);
    mjson_w_obj_end(&w);
    buf_putc(&out, '\n');
    if (!r->streamed)
        gw_stream_start(r);
    gw_stream_chunk(r, &out);
    k->done++;
    keepalive_next(r);
}

/* Take the body's next message and ask for its keepalive (true: r waits, for the answer or for
 * the output to drain), or end the stream (r is freed). A message that does not decode is the
 * request's error if it is the first, else the request side's end. */
static bool keepalive_next(struct gw_req *r)
{
    struct keepalive *k = r->route;
    if (r->streamed && http_pending(r->req) >= KEEPALIVE_HIGH) {
        http_set_drain_cb(r->req, KEEPALIVE_HIGH / 4, on_keepalive_drain, r);
        return true;
    }
    /* Skip the blanks between messages; the body's end ends the stream. */
    k->off = mjson_skip_ws(r->body, r->body_len, k->off);
    if (k->off >= r->body_len) {
        keepalive_end(r);
        return false;
    }
    /* Each message is decoded in an arena of its own, from the gateway's pool: r's would grow
     * with every one. */
    struct arena_pool *pool = &r->gw->arenas; /* r may be freed before a goes back */
    struct arena *a = arena_pool_take(pool);
    if (!a) {
        if (k->done == 0)
            gw_reply_error(r, MS_E_NOMEM, NULL);
        else
            keepalive_end(r);
        return false;
    }
    struct mjson_dec d;
    struct mjson_val v;
    size_t used;
    int64_t id = 0;
    mjson_dec_init(&d, a);
    bool ok = mjson_parse_next(&d, r->body + k->off, r->body_len - k->off, &v, &used) &&
              codec_root_value(&d, &v) && codec_read_i64(&d, codec_field(&v, "ID", NULL), &id);
    if (!ok) {
        if (k->done == 0)
            gw_reply_decode_error(r, d.msg);
        else
            keepalive_end(r);
        arena_pool_give(pool, a);
        return false;
    }
    arena_pool_give(pool, a);
    k->off += used;
    struct srv_req q = {.type = SRV_REQ_LEASE_KEEPALIVE, .u.lease = {.id = id}};
    ms_err e = srv_submit(r->gw->srv, &q, keepalive_done, r, &r->srv_id);
    if (!e)
        return true;
    r->srv_id = 0;
    if (k->done == 0)
        gw_reply_stream_error(r, e, NULL);
    else
        keepalive_end(r);
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
    r->route = k;
    if (keepalive_next(r))
        gw_wait(r);
}
