/* gw_lock.c - etcd's lock and election services on the gateway: /v3/lock/{lock,unlock} and
 * /v3/election/{campaign,proclaim,leader,observe,resign}.
 *
 * Only the JSON: a body becomes a struct srv_lock_req and the server runs it (srv_lock_submit,
 * srv_election_observe: the session, the txns, the waits, the errors); its result becomes
 * etcd's answer. Observe's lines go through gw_stream_newest: a reader that stops reading holds
 * a bounded amount of memory, skips values it has not been sent and ends with the latest, as
 * over gRPC. From the submit on, the request holds the connection's close callback and the
 * peer's end of input counts as a close, so a client that leaves gives its place up (srv_cancel)
 * and nothing it started outlives it. Errors are etcd's texts with code 2 (Unknown, HTTP 500):
 * etcd's services get them from their own client and hand them on as plain errors.
 */
#include "codec.h"
#include "gw_int.h"

#include <string.h>

static void lk_fail(struct gw_req *r, ms_err e)
{
    gw_reply_error(r, MS_E_UNKNOWN, ms_err_msg(e));
}

/* Start an answer with the server's header at revision rev. */
static void answer_begin(struct gw_req *r, struct buf *b, struct mjson_w *w, int64_t rev)
{
    struct srv_header h;
    srv_header(r->gw->srv, &h);
    h.revision = rev;
    buf_init(b);
    mjson_w_init(w, b);
    mjson_w_obj(w);
    mjson_w_key(w, "header");
    codec_header(w, &h, true);
}

static void on_done(void *ctx, ms_err err, const struct srv_lock_result *res)
{
    struct gw_req *r = ctx;
    r->srv_id = 0;
    if (err) {
        lk_fail(r, err);
        return;
    }
    struct buf b;
    struct mjson_w w;
    const struct srv_leader_key *l = &res->leader;
    answer_begin(r, &b, &w, res->revision);
    switch (res->op) {
    case SRV_LOCK_LOCK:
        mjson_w_key(&w, "key");
        codec_write_b64(&w, l->key, l->key_len);
        break;
    case SRV_ELECT_CAMPAIGN:
        mjson_w_key(&w, "leader");
        mjson_w_obj(&w);
        if (l->name_len) {
            mjson_w_key(&w, "name");
            codec_write_b64(&w, l->name, l->name_len);
        }
        mjson_w_key(&w, "key");
        codec_write_b64(&w, l->key, l->key_len);
        mjson_w_key(&w, "rev");
        codec_write_i64(&w, l->rev);
        if (l->lease) {
            mjson_w_key(&w, "lease");
            codec_write_i64(&w, l->lease);
        }
        mjson_w_obj_end(&w);
        break;
    case SRV_ELECT_LEADER:
        mjson_w_key(&w, "kv");
        codec_kv(&w, res->kv);
        break;
    case SRV_LOCK_UNLOCK:
    case SRV_ELECT_PROCLAIM:
    case SRV_ELECT_RESIGN:
        break;
    }
    mjson_w_obj_end(&w);
    gw_reply(r, 200, &b);
}

/* From now on the request waits: a close (or the peer's end of input) abandons it. */
static void lk_hold(struct gw_req *r)
{
    gw_wait(r);
    http_set_eof_closes(r->req);
}

static void lk_submit(struct gw_req *r, struct srv_lock_req *req)
{
    ms_err e = gw_auth_resolve(r);
    req->caller = r->caller;
    if (!e)
        e = srv_lock_submit(r->gw->srv, req, on_done, r, &r->srv_id);
    if (e) {
        r->srv_id = 0;
        lk_fail(r, e);
        return;
    }
    lk_hold(r);
}

/* The fields of a lock, campaign, leader or observe request (value: campaign only). */
static bool parse_named(struct gw_req *r, struct srv_lock_req *req)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return false;
    bool leased = req->op == SRV_LOCK_LOCK || req->op == SRV_ELECT_CAMPAIGN;
    if (!codec_read_bytes(&d, codec_field(&root, "name", NULL), &req->name, &req->name_len) ||
        (leased && !codec_read_i64(&d, codec_field(&root, "lease", NULL), &req->lease)) ||
        (req->op == SRV_ELECT_CAMPAIGN &&
         !codec_read_bytes(&d, codec_field(&root, "value", NULL), &req->value, &req->value_len))) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return false;
    }
    return true;
}

static void named_op(struct gw_req *r, enum srv_lock_op op)
{
    struct srv_lock_req req = {.op = op};
    if (parse_named(r, &req))
        lk_submit(r, &req);
}

void gw_lock_lock(struct gw_req *r)
{
    named_op(r, SRV_LOCK_LOCK);
}

void gw_election_campaign(struct gw_req *r)
{
    named_op(r, SRV_ELECT_CAMPAIGN);
}

void gw_election_leader(struct gw_req *r)
{
    named_op(r, SRV_ELECT_LEADER);
}

/* Proclaim and resign name a leader key: {"leader":{"name","key","rev","lease"}}. */
static void leader_op(struct gw_req *r, enum srv_lock_op op)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    struct srv_lock_req req = {.op = op};
    struct srv_leader_key *l = &req.leader;
    const struct mjson_val *leader;
    if (!codec_read_msg(&d, codec_field(&root, "leader", NULL), &leader) ||
        (leader &&
         (!codec_read_bytes(&d, codec_field(leader, "name", NULL), &l->name, &l->name_len) ||
          !codec_read_bytes(&d, codec_field(leader, "key", NULL), &l->key, &l->key_len) ||
          !codec_read_i64(&d, codec_field(leader, "rev", NULL), &l->rev) ||
          !codec_read_i64(&d, codec_field(leader, "lease", NULL), &l->lease))) ||
        (op == SRV_ELECT_PROCLAIM &&
         !codec_read_bytes(&d, codec_field(&root, "value", NULL), &req.value, &req.value_len))) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    req.has_leader = leader != NULL;
    lk_submit(r, &req);
}

void gw_election_proclaim(struct gw_req *r)
{
    leader_op(r, SRV_ELECT_PROCLAIM);
}

void gw_election_resign(struct gw_req *r)
{
    leader_op(r, SRV_ELECT_RESIGN);
}

void gw_lock_unlock(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    struct srv_lock_req req = {.op = SRV_LOCK_UNLOCK};
    if (!codec_read_bytes(&d, codec_field(&root, "key", NULL), &req.key, &req.key_len)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    lk_submit(r, &req);
}

/* ---- observe: a stream of {"result":{"header","kv"}} lines, one per leader change ---- */

static void on_observed(void *ctx, int64_t revision, const struct kv_kv *kv)
{
    struct gw_req *r = ctx;
    struct srv_header h;
    struct buf b;
    struct mjson_w w;
    srv_header(r->gw->srv, &h);
    h.revision = revision;
    buf_init(&b);
    mjson_w_init(&w, &b);
    mjson_w_obj(&w);
    mjson_w_key(&w, "result");
    mjson_w_obj(&w);
    mjson_w_key(&w, "header");
    codec_header(&w, &h, true);
    mjson_w_key(&w, "kv");
    codec_kv(&w, kv);
    mjson_w_obj_end(&w);
    mjson_w_obj_end(&w);
    buf_putc(&b, '\n');
    /* grpc-gateway sends the status and headers with the first message. */
    if (!r->streamed)
        gw_stream_start(r);
    gw_stream_newest(r, &b);
}

void gw_election_observe(struct gw_req *r)
{
    struct srv_lock_req req = {.op = SRV_ELECT_LEADER};
    if (!parse_named(r, &req))
        return;
    ms_err e = gw_auth_resolve(r);
    if (!e)
        e = srv_election_observe(r->gw->srv, req.name, req.name_len, &r->caller, on_observed, r,
                                 &r->srv_id);
    if (e) {
        r->srv_id = 0;
        lk_fail(r, e);
        return;
    }
    lk_hold(r);
}
