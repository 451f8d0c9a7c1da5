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

void gw_lease_timetolive(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    int64_t id = 0;
    bool keys = false;
    if (!gw_parse_root(r, &d, &root))
        return;
    if (!codec_read_i64(&d, codec_field(&root, "ID", NULL), &id) ||
        !codec_read_bool(&d, codec_field(&root, "keys", NULL), &keys)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    struct srv_lease_ttl t;
    ms_err e = srv_lease_timetolive(r->gw->srv, id, keys, r->a, &t);
    if (e) {
        gw_reply_error(r, e, NULL);
        return;
    }
    struct buf b;
    struct mjson_w w;
    gw_json_begin(r, &b, &w, true);
    if (t.id) {
        mjson_w_key(&w, "ID");
        codec_write_i64(&w, t.id);
    }
    if (t.ttl) {
        mjson_w_key(&w, "TTL");
        codec_write_i64(&w, t.ttl);
    }
    if (t.granted) {
        mjson_w_key(&w, "grantedTTL");
        codec_write_i64(&w, t.granted);
    }
    if (t.n_keys) {
        mjson_w_key(&w, "keys");
        mjson_w_arr(&w);
        for (size_t i = 0; i < t.n_keys; i++)
            codec_write_b64(&w, t.keys[i], t.key_lens[i]);
        mjson_w_arr_end(&w);
    }
    mjson_w_obj_end(&w);
    gw_reply(r, 200, &b);
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

void gw_lease_keepalive(struct gw_req *r)
{
    struct buf b;
    struct mjson_w w;
    size_t off = 0;
    int msgs = 0;
    buf_init(&b);
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
            if (msgs == 0) {
                buf_fini(&b);
                gw_reply_decode_error(r, d.msg);
                return;
            }
            break; /* a later one: the request side just ends */
        }
        off += used;
        msgs++;
        int64_t ttl = 0;
        ms_err e = srv_lease_renew(r->gw->srv, id, &ttl);
        if (e) {
            if (msgs == 1) {
                buf_fini(&b);
                gw_reply_stream_error(r, e, NULL);
                return;
            }
            break;
        }
        mjson_w_init(&w, &b);
        mjson_w_obj(&w);
        mjson_w_key(&w, "result");
        mjson_w_obj(&w);
        gw_json_header(r, &w, true);
        if (id) {
            mjson_w_key(&w, "ID");
            codec_write_i64(&w, id);
        }
        if (ttl) {
            mjson_w_key(&w, "TTL");
            codec_write_i64(&w, ttl);
        }
        mjson_w_obj_end(&w);
        mjson_w_obj_end(&w);
        buf_putc(&b, '\n');
    }
    gw_stream_start(r);
    gw_reply(r, 200, &b);
}
