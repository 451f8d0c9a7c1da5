/* gw_lock.c - etcd's lock and election services: /v3/lock/{lock,unlock} and
 * /v3/election/{campaign,proclaim,leader,observe,resign}.
 *
 * Built as etcd 3.4's v3lock and v3election servers build them on its concurrency package
 * (mutex.go, election.go, key.go): a session (the caller's lease, or a fresh 60 s one for lease
 * 0), txns and ranges on the name's prefix "name/", and the server's waits (srv_wait_deletes,
 * srv_observe). Every step runs from the previous one's completion; the request holds the
 * connection's close callback from its first step on, and the peer's end of input counts as a
 * close, so a client that leaves gives its place up (srv_cancel: the server deletes the waiting
 * key) and nothing it started outlives it. Errors are etcd's texts with code 2 (Unknown, HTTP
 * 500): etcd's services get them from their own client and hand them on as plain errors.
 *
 * Unlike etcd 3.4 (#11456), a lock or campaign is answered only while its lease is alive: the
 * answer's header revision and the key's create revision are the fencing token.
 */
#include "codec.h"
#include "gw_int.h"

#include <stdio.h>
#include <string.h>

#define SESSION_TTL 60 /* etcd concurrency.NewSession's default TTL */

enum lk_op { LK_LOCK, LK_CAMPAIGN, LK_PROCLAIM, LK_RESIGN };

/* One request's state, in its arena. */
struct lk {
    struct gw_req *r;
    enum lk_op op;
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
    int64_t lease;
    uint8_t *prefix; /* name + "/" */
    size_t prefix_len;
    const uint8_t *key; /* name/<lease in hex>, or the leader key given */
    size_t key_len;
    int64_t rev;     /* the key's create revision */
    int64_t hdr_rev; /* the answer's header revision (campaign: its first txn's) */
    bool linked;     /* gw_wait done: the close callback is ours */
};

static void lk_fail(struct lk *lk, ms_err e)
{
    gw_reply_error(lk->r, MS_E_UNKNOWN, ms_err_msg(e));
}

/* From now on the request waits: a close (or the peer's end of input) abandons it. */
static void lk_hold(struct lk *lk)
{
    if (lk->linked)
        return;
    lk->linked = true;
    gw_wait(lk->r);
    http_set_eof_closes(lk->r->req);
}

static void lk_submit(struct lk *lk, const struct srv_req *req, srv_done_fn fn)
{
    struct gw_req *r = lk->r;
    ms_err e = srv_submit(r->gw->srv, req, fn, lk, &r->srv_id);
    if (e) {
        r->srv_id = 0;
        lk_fail(lk, e);
        return;
    }
    lk_hold(lk);
}

static struct lk *lk_create(struct gw_req *r, enum lk_op op)
{
    struct lk *lk = arena_calloc(r->a, 1, sizeof(*lk));
    if (!lk) {
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return NULL;
    }
    lk->r = r;
    lk->op = op;
    return lk;
}

/* "name/" in the arena. */
static bool lk_prefix(struct lk *lk)
{
    lk->prefix_len = lk->name_len + 1;
    lk->prefix = arena_alloc(lk->r->a, lk->prefix_len);
    if (!lk->prefix)
        return false;
    if (lk->name_len)
        memcpy(lk->prefix, lk->name, lk->name_len);
    lk->prefix[lk->name_len] = '/';
    return true;
}

/* The session's key, "name/" and the lease in hex as Go's %x writes an int64. */
static bool lk_own_key(struct lk *lk)
{
    char hex[24];
    int n = lk->lease < 0 ? snprintf(hex, sizeof(hex), "-%llx", -(unsigned long long)lk->lease)
                          : snprintf(hex, sizeof(hex), "%llx", (unsigned long long)lk->lease);
    uint8_t *k = arena_alloc(lk->r->a, lk->prefix_len + (size_t)n);
    if (!k)
        return false;
    memcpy(k, lk->prefix, lk->prefix_len);
    memcpy(k + lk->prefix_len, hex, (size_t)n);
    lk->key = k;
    lk->key_len = lk->prefix_len + (size_t)n;
    return true;
}

/* A range of the first-created key under the prefix (etcd WithFirstCreate), its end in a. */
static bool first_create(struct arena *a, const uint8_t *prefix, size_t len,
                         struct kv_range_req *out)
{
    uint8_t *end = arena_alloc(a, len);
    if (!end)
        return false;
    memset(out, 0, sizeof(*out));
    kv_span_prefix(&out->span, prefix, len, end);
    out->sort_order = KV_SORT_ASCEND;
    out->sort_target = KV_SORT_CREATE;
    out->limit = 1;
    return true;
}

/* Start an answer with the server's header at revision rev. */
static void answer_begin(struct lk *lk, struct buf *b, struct mjson_w *w, int64_t rev)
{
    struct srv_header h;
    srv_header(lk->r->gw->srv, &h);
    h.revision = rev;
    buf_init(b);
    mjson_w_init(w, b);
    mjson_w_obj(w);
    mjson_w_key(w, "header");
    codec_header(w, &h, true);
}

static void answer_header(struct lk *lk, int64_t rev)
{
    struct buf b;
    struct mjson_w w;
    answer_begin(lk, &b, &w, rev);
    mjson_w_obj_end(&w);
    gw_reply(lk->r, 200, &b);
}

/* The lock or campaign is won at revision rev (its waits are over). */
static void lk_won(struct lk *lk, int64_t rev)
{
    if (!srv_lease_alive(lk->r->gw->srv, lk->lease)) {
        /* etcd 3.4 would answer here with a key its expired lease already lost (#11456). */
        lk_fail(lk, MS_E_LEASE_NOT_FOUND);
        return;
    }
    struct buf b;
    struct mjson_w w;
    if (lk->op == LK_LOCK) {
        answer_begin(lk, &b, &w, rev);
        mjson_w_key(&w, "key");
        codec_write_b64(&w, lk->key, lk->key_len);
    } else {
        answer_begin(lk, &b, &w, lk->hdr_rev);
        mjson_w_key(&w, "leader");
        mjson_w_obj(&w);
        if (lk->name_len) {
            mjson_w_key(&w, "name");
            codec_write_b64(&w, lk->name, lk->name_len);
        }
        mjson_w_key(&w, "key");
        codec_write_b64(&w, lk->key, lk->key_len);
        mjson_w_key(&w, "rev");
        codec_write_i64(&w, lk->rev);
        if (lk->lease) {
            mjson_w_key(&w, "lease");
            codec_write_i64(&w, lk->lease);
        }
        mjson_w_obj_end(&w);
    }
    mjson_w_obj_end(&w);
    gw_reply(lk->r, 200, &b);
}

static void on_waited(void *ctx, ms_err err, int64_t revision)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    lk_won(lk, revision);
}

/* Wait for every key created before ours under the prefix to go (etcd waitDeletes). */
static void lk_wait_deletes(struct lk *lk)
{
    struct gw_req *r = lk->r;
    ms_err e = srv_wait_deletes(r->gw->srv, lk->prefix, lk->prefix_len, lk->key, lk->key_len,
                                lk->rev, on_waited, lk, &r->srv_id);
    if (e) {
        r->srv_id = 0;
        lk_fail(lk, e);
    }
}

/* ---- lock ---- */

static void on_lock_txn(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    const struct kv_txn_resp *t = &res->u.txn;
    lk->rev = res->revision;
    if (!t->succeeded) /* this session holds or waits already: reuse its key */
        lk->rev = t->resps[0].u.range.n_kvs ? t->resps[0].u.range.kvs[0].create_revision : 0;
    const struct kv_range_resp *owner = &t->resps[1].u.range;
    if (owner->n_kvs == 0 || owner->kvs[0].create_revision == lk->rev) {
        lk_won(lk, res->revision);
        return;
    }
    lk_wait_deletes(lk);
}

/* The compare "the caller's key was created at rev" (0: the key does not exist). */
static struct kv_cmp own_created_at(const struct lk *lk, int64_t rev)
{
    return (struct kv_cmp){.span = {.key = lk->key, .key_len = lk->key_len},
                           .target = KV_CMP_CREATE,
                           .result = KV_CMP_EQUAL,
                           .set = KV_CMP_CREATE,
                           .number = rev};
}

/* Put the caller's value on its key, under its lease. */
static struct kv_op own_put(const struct lk *lk)
{
    return (struct kv_op){.type = KV_OP_PUT,
                          .u.put = {.key = lk->key,
                                    .key_len = lk->key_len,
                                    .value = lk->value,
                                    .value_len = lk->value_len,
                                    .lease = lk->lease}};
}

/* etcd Mutex.Lock's txn: create the key under the lease unless it exists, and read the
 * first-created key of the prefix (the holder) either way. */
static void lk_lock(struct lk *lk)
{
    struct kv_cmp cmp = own_created_at(lk, 0);
    struct kv_op then[2], els[2];
    memset(then, 0, sizeof(then));
    memset(els, 0, sizeof(els));
    then[0].type = KV_OP_PUT;
    then[0].u.put = (struct kv_put_req){.key = lk->key, .key_len = lk->key_len, .lease = lk->lease};
    els[0].type = KV_OP_RANGE;
    els[0].u.range.span = (struct kv_span){.key = lk->key, .key_len = lk->key_len};
    then[1].type = els[1].type = KV_OP_RANGE;
    if (!first_create(lk->r->a, lk->prefix, lk->prefix_len, &then[1].u.range)) {
        lk_fail(lk, MS_E_NOMEM);
        return;
    }
    els[1].u.range = then[1].u.range;
    struct srv_req req = {.type = SRV_REQ_TXN,
                          .u.txn = {.cmps = &cmp,
                                    .n_cmps = 1,
                                    .success = then,
                                    .n_success = 2,
                                    .failure = els,
                                    .n_failure = 2}};
    lk_submit(lk, &req, on_lock_txn);
}

/* ---- campaign ---- */

static void on_campaign_proclaim(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (!err && !res->u.txn.succeeded)
        err = MS_E_ELECTION_NOT_LEADER;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    lk_wait_deletes(lk);
}

/* Put value on key if key is still the one created at lk->rev (etcd Election.Proclaim). */
static void lk_proclaim_txn(struct lk *lk, srv_done_fn fn)
{
    struct kv_cmp cmp = own_created_at(lk, lk->rev);
    struct kv_op put = own_put(lk);
    struct srv_req req = {.type = SRV_REQ_TXN,
                          .u.txn = {.cmps = &cmp, .n_cmps = 1, .success = &put, .n_success = 1}};
    lk_submit(lk, &req, fn);
}

static void on_campaign_txn(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    const struct kv_txn_resp *t = &res->u.txn;
    lk->rev = lk->hdr_rev = res->revision;
    if (!t->succeeded && t->resps[0].u.range.n_kvs) {
        /* The session campaigns already: keep its key, and its place; a new value is
         * proclaimed. */
        const struct kv_kv *kv = &t->resps[0].u.range.kvs[0];
        lk->rev = kv->create_revision;
        if (kv->value_len != lk->value_len ||
            (kv->value_len && memcmp(kv->value, lk->value, kv->value_len) != 0)) {
            lk_proclaim_txn(lk, on_campaign_proclaim);
            return;
        }
    }
    lk_wait_deletes(lk);
}

/* etcd Election.Campaign's txn: create the key with the value unless it exists, else read it. */
static void lk_campaign(struct lk *lk)
{
    struct kv_cmp cmp = own_created_at(lk, 0);
    struct kv_op put = own_put(lk);
    struct kv_op get = {.type = KV_OP_RANGE,
                        .u.range.span = {.key = lk->key, .key_len = lk->key_len}};
    struct srv_req req = {.type = SRV_REQ_TXN,
                          .u.txn = {.cmps = &cmp,
                                    .n_cmps = 1,
                                    .success = &put,
                                    .n_success = 1,
                                    .failure = &get,
                                    .n_failure = 1}};
    lk_submit(lk, &req, on_campaign_txn);
}

/* ---- proclaim, resign ---- */

static void on_proclaim(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (!err && !res->u.txn.succeeded)
        err = MS_E_ELECTION_NOT_LEADER;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    answer_header(lk, res->revision);
}

static void on_resign(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    answer_header(lk, res->revision);
}

/* Delete key if it is still the one created at lk->rev (etcd Election.Resign: not being the
 * leader is no error). */
static void lk_resign(struct lk *lk)
{
    struct kv_cmp cmp = own_created_at(lk, lk->rev);
    struct kv_op del = {.type = KV_OP_DELETE,
                        .u.del.span = {.key = lk->key, .key_len = lk->key_len}};
    struct srv_req req = {.type = SRV_REQ_TXN,
                          .u.txn = {.cmps = &cmp, .n_cmps = 1, .success = &del, .n_success = 1}};
    lk_submit(lk, &req, on_resign);
}

/* ---- the session, then the operation ---- */

static void lk_run(struct lk *lk)
{
    switch (lk->op) {
    case LK_LOCK:
        if (lk_own_key(lk))
            lk_lock(lk);
        else
            lk_fail(lk, MS_E_NOMEM);
        break;
    case LK_CAMPAIGN:
        if (lk_own_key(lk))
            lk_campaign(lk);
        else
            lk_fail(lk, MS_E_NOMEM);
        break;
    case LK_PROCLAIM:
        lk_proclaim_txn(lk, on_proclaim);
        break;
    case LK_RESIGN:
        lk_resign(lk);
        break;
    }
}

static void on_session(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    lk->lease = res->u.lease.id;
    lk_run(lk);
}

/* etcd's services open a session on the lease given; with none they grant one of 60 s that
 * nobody keeps alive (the session is orphaned at once). */
static void lk_start(struct lk *lk)
{
    if (lk->lease) {
        lk_run(lk);
        return;
    }
    struct srv_req req = {.type = SRV_REQ_LEASE_GRANT, .u.lease = {.ttl = SESSION_TTL}};
    lk_submit(lk, &req, on_session);
}

/* name (and, with value_too, value) and lease of a lock or campaign request. */
static struct lk *lk_parse(struct gw_req *r, enum lk_op op)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return NULL;
    struct lk *lk = lk_create(r, op);
    if (!lk)
        return NULL;
    if (!codec_read_bytes(&d, codec_field(&root, "name", NULL), &lk->name, &lk->name_len) ||
        !codec_read_i64(&d, codec_field(&root, "lease", NULL), &lk->lease) ||
        (op == LK_CAMPAIGN &&
         !codec_read_bytes(&d, codec_field(&root, "value", NULL), &lk->value, &lk->value_len))) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return NULL;
    }
    if (!lk_prefix(lk)) {
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return NULL;
    }
    return lk;
}

void gw_lock_lock(struct gw_req *r)
{
    struct lk *lk = lk_parse(r, LK_LOCK);
    if (lk)
        lk_start(lk);
}

void gw_election_campaign(struct gw_req *r)
{
    struct lk *lk = lk_parse(r, LK_CAMPAIGN);
    if (lk)
        lk_start(lk);
}

/* Proclaim and resign name a leader key: {"leader":{"name","key","rev","lease"}}. */
static void leader_op(struct gw_req *r, enum lk_op op)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    struct lk *lk = lk_create(r, op);
    if (!lk)
        return;
    const struct mjson_val *leader;
    if (!codec_read_msg(&d, codec_field(&root, "leader", NULL), &leader) ||
        (leader &&
         (!codec_read_bytes(&d, codec_field(leader, "name", NULL), &lk->name, &lk->name_len) ||
          !codec_read_bytes(&d, codec_field(leader, "key", NULL), &lk->key, &lk->key_len) ||
          !codec_read_i64(&d, codec_field(leader, "rev", NULL), &lk->rev) ||
          !codec_read_i64(&d, codec_field(leader, "lease", NULL), &lk->lease))) ||
        (op == LK_PROCLAIM &&
         !codec_read_bytes(&d, codec_field(&root, "value", NULL), &lk->value, &lk->value_len))) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    if (!leader) {
        lk_fail(lk, MS_E_ELECTION_NO_LEADER_KEY);
        return;
    }
    lk_start(lk);
}

void gw_election_proclaim(struct gw_req *r)
{
    leader_op(r, LK_PROCLAIM);
}

void gw_election_resign(struct gw_req *r)
{
    leader_op(r, LK_RESIGN);
}

/* ---- unlock, leader ---- */

static void on_unlock(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    answer_header(lk, res->revision);
}

void gw_lock_unlock(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    struct lk *lk = lk_create(r, LK_LOCK);
    if (!lk)
        return;
    if (!codec_read_bytes(&d, codec_field(&root, "key", NULL), &lk->key, &lk->key_len)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    struct srv_req req = {.type = SRV_REQ_DELETE,
                          .u.del.span = {.key = lk->key, .key_len = lk->key_len}};
    lk_submit(lk, &req, on_unlock);
}

static void on_leader(void *ctx, ms_err err, const struct srv_result *res)
{
    struct lk *lk = ctx;
    lk->r->srv_id = 0;
    if (!err && res->u.range.n_kvs == 0)
        err = MS_E_ELECTION_NO_LEADER;
    if (err) {
        lk_fail(lk, err);
        return;
    }
    struct buf b;
    struct mjson_w w;
    answer_begin(lk, &b, &w, res->revision);
    mjson_w_key(&w, "kv");
    codec_kv(&w, &res->u.range.kvs[0]);
    mjson_w_obj_end(&w);
    gw_reply(lk->r, 200, &b);
}

/* name of a leader or observe request, and its prefix. */
static struct lk *name_only(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return NULL;
    struct lk *lk = lk_create(r, LK_CAMPAIGN);
    if (!lk)
        return NULL;
    if (!codec_read_bytes(&d, codec_field(&root, "name", NULL), &lk->name, &lk->name_len)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return NULL;
    }
    if (!lk_prefix(lk)) {
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return NULL;
    }
    return lk;
}

void gw_election_leader(struct gw_req *r)
{
    struct lk *lk = name_only(r);
    if (!lk)
        return;
    /* A range is borrowed until its completion: it lives in the request. */
    r->sreq.type = SRV_REQ_RANGE;
    if (!first_create(r->a, lk->prefix, lk->prefix_len, &r->sreq.u.range)) {
        lk_fail(lk, MS_E_NOMEM);
        return;
    }
    lk_submit(lk, &r->sreq, on_leader);
}

/* ---- observe: a stream of {"result":{"header","kv"}} lines, one per leader change ---- */

static void on_observed(void *ctx, int64_t revision, const struct kv_kv *kv)
{
    struct lk *lk = ctx;
    struct gw_req *r = lk->r;
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
    gw_stream_chunk(r, &b);
}

void gw_election_observe(struct gw_req *r)
{
    struct lk *lk = name_only(r);
    if (!lk)
        return;
    ms_err e = srv_observe(r->gw->srv, lk->prefix, lk->prefix_len, on_observed, lk, &r->srv_id);
    if (e) {
        r->srv_id = 0;
        lk_fail(lk, e);
        return;
    }
    lk_hold(lk);
}
