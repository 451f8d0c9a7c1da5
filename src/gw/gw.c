/* gw.c - the HTTP side of the gateway: listeners, limits, routing, replies, and the life of
 * a request.
 *
 * Routing copies etcd 3.4's observable behaviour (reference §1): Go path cleaning with 301,
 * the gateway's "Not Found\n" / "Method Not Allowed\n" under /v3/ and /v3beta/, Go's "404 page
 * not found\n" elsewhere, OPTIONS answered everywhere, CORS headers on every response.
 * A request that waits for the server is linked in gw->pending and holds the connection's
 * close callback: whichever of "reply" and "connection closed" comes first frees it. A request
 * ends in gw_reply or gw_abandon, and both free it through req_release.
 */
#include "codec.h"
#include "gw_int.h"

#include "metastore/log.h"
#include "metastore/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GW_TIMEOUT_MS  60000       /* read, write and keep-alive idle limits */
#define GW_MAX_HEADERS (256 << 10) /* request line and headers */
#define GW_MAX_CONNS   (1u << 20)  /* in practice the fd limit binds first */
#define GRPC_OVERHEAD  (512 << 10) /* etcd grpcOverheadBytes */

struct gw_route {
    const char *path; /* below /v3 */
    gw_handler_fn fn; /* NULL: known to etcd, not implemented here yet */
    const char *rpc;  /* the gRPC method etcd's gateway calls, counted in grpc_server_* */
    const char *type; /* its kind, as grpc_server_*'s grpc_type label says it */
};

#define KV(m)    "/etcdserverpb.KV/" m, "unary"
#define LEASE(m) "/etcdserverpb.Lease/" m, "unary"
#define MEMB(m)  "/etcdserverpb.Cluster/" m, "unary"
#define MAINT(m) "/etcdserverpb.Maintenance/" m, "unary"
#define AUTH(m)  "/etcdserverpb.Auth/" m, "unary"
#define ELECT(m) "/v3electionpb.Election/" m, "unary"

static const struct gw_route ROUTES[] = {
    {"/kv/range", gw_kv_range, KV("Range")},
    {"/kv/put", gw_kv_put, KV("Put")},
    {"/kv/deleterange", gw_kv_deleterange, KV("DeleteRange")},
    {"/kv/txn", gw_kv_txn, KV("Txn")},
    {"/kv/compaction", gw_kv_compaction, KV("Compact")},
    {"/watch", gw_watch, "/etcdserverpb.Watch/Watch", "bidi_stream"},
    {"/lease/grant", gw_lease_grant, LEASE("LeaseGrant")},
    {"/lease/revoke", gw_lease_revoke, LEASE("LeaseRevoke")},
    {"/kv/lease/revoke", gw_lease_revoke, LEASE("LeaseRevoke")},
    {"/lease/keepalive", gw_lease_keepalive, "/etcdserverpb.Lease/LeaseKeepAlive", "bidi_stream"},
    {"/lease/timetolive", gw_lease_timetolive, LEASE("LeaseTimeToLive")},
    {"/kv/lease/timetolive", gw_lease_timetolive, LEASE("LeaseTimeToLive")},
    {"/lease/leases", gw_lease_leases, LEASE("LeaseLeases")},
    {"/kv/lease/leases", gw_lease_leases, LEASE("LeaseLeases")},
    {"/cluster/member/add", gw_cluster_member_add, MEMB("MemberAdd")},
    {"/cluster/member/remove", gw_cluster_member_remove, MEMB("MemberRemove")},
    {"/cluster/member/update", gw_cluster_member_update, MEMB("MemberUpdate")},
    {"/cluster/member/list", gw_cluster_member_list, MEMB("MemberList")},
    {"/cluster/member/promote", gw_cluster_member_promote, MEMB("MemberPromote")},
    {"/maintenance/alarm", gw_maint_alarm, MAINT("Alarm")},
    {"/maintenance/status", gw_maint_status, MAINT("Status")},
    {"/maintenance/defragment", gw_maint_defrag, MAINT("Defragment")},
    {"/maintenance/hash", gw_maint_hash, MAINT("Hash")},
    {"/maintenance/snapshot", gw_maint_snapshot, "/etcdserverpb.Maintenance/Snapshot",
     "server_stream"},
    {"/maintenance/transfer-leadership", gw_maint_move_leader, MAINT("MoveLeader")},
    {"/auth/enable", gw_auth_enable, AUTH("AuthEnable")},
    {"/auth/disable", gw_auth_disable, AUTH("AuthDisable")},
    {"/auth/authenticate", gw_auth_authenticate, AUTH("Authenticate")},
    {"/auth/user/add", gw_auth_user_add, AUTH("UserAdd")},
    {"/auth/user/get", gw_auth_user_get, AUTH("UserGet")},
    {"/auth/user/list", gw_auth_user_list, AUTH("UserList")},
    {"/auth/user/delete", gw_auth_user_delete, AUTH("UserDelete")},
    {"/auth/user/changepw", gw_auth_user_changepw, AUTH("UserChangePassword")},
    {"/auth/user/grant", gw_auth_user_grant, AUTH("UserGrantRole")},
    {"/auth/user/revoke", gw_auth_user_revoke, AUTH("UserRevokeRole")},
    {"/auth/role/add", gw_auth_role_add, AUTH("RoleAdd")},
    {"/auth/role/get", gw_auth_role_get, AUTH("RoleGet")},
    {"/auth/role/list", gw_auth_role_list, AUTH("RoleList")},
    {"/auth/role/delete", gw_auth_role_delete, AUTH("RoleDelete")},
    {"/auth/role/grant", gw_auth_role_grant, AUTH("RoleGrantPermission")},
    {"/auth/role/revoke", gw_auth_role_revoke, AUTH("RoleRevokePermission")},
    {"/lock/lock", gw_lock_lock, "/v3lockpb.Lock/Lock", "unary"},
    {"/lock/unlock", gw_lock_unlock, "/v3lockpb.Lock/Unlock", "unary"},
    {"/election/campaign", gw_election_campaign, ELECT("Campaign")},
    {"/election/proclaim", gw_election_proclaim, ELECT("Proclaim")},
    {"/election/leader", gw_election_leader, ELECT("Leader")},
    {"/election/observe", gw_election_observe, "/v3electionpb.Election/Observe", "server_stream"},
    {"/election/resign", gw_election_resign, ELECT("Resign")},
};

#undef KV
#undef LEASE
#undef MEMB
#undef MAINT
#undef AUTH
#undef ELECT

/* Headers every response carries (etcd's CORS handler), then room for a few more. */
#define HDR(n, v) ((struct http_hdr){n, sizeof(n) - 1, v, sizeof(v) - 1})
#define MAX_HDRS  8

struct hdrs {
    struct http_hdr h[MAX_HDRS];
    size_t n;
};

static void hdrs_init(struct hdrs *h)
{
    h->h[0] = HDR("Access-Control-Allow-Headers", "accept, content-type, authorization");
    h->h[1] = HDR("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE");
    h->h[2] = HDR("Access-Control-Allow-Origin", "*");
    h->n = 3;
}

static void hdrs_add(struct hdrs *h, const char *name, const char *value)
{
    if (h->n < MAX_HDRS)
        h->h[h->n++] = (struct http_hdr){name, strlen(name), value, strlen(value)};
}

/* Send a plain-text reply on a request that has no gw_req. */
static void send_text(struct http_request *req, int status, const char *body, const char *allow)
{
    struct hdrs h;
    hdrs_init(&h);
    if (allow)
        hdrs_add(&h, "Allow", allow);
    hdrs_add(&h, "Content-Type", "text/plain; charset=utf-8");
    if (status >= 400)
        hdrs_add(&h, "X-Content-Type-Options", "nosniff");
    http_respond(req, status, h.h, h.n, body, body ? strlen(body) : 0);
}

static void req_unlink(struct gw_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (r->gw->pending == r)
        r->gw->pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* etcd's gateway is a gRPC client of its own server, so its calls show in grpc_server_*: a
 * request counts as the call of its route's method (started, its message received, each
 * answer message sent, handled with the answer's code; Canceled when the client left). */
static void rpc_count(struct gw_req *r, enum srv_rpc_event ev, int code)
{
    if (r->rpc)
        srv_rpc_count(r->gw->srv, r->rpc, r->rpc_type, ev, code);
}

/* The one release path of a request, answered or not. srv_id is zero once srv's callback
 * ran or its submission failed; a request ending while srv still owes it one cancels it. */
static void req_release(struct gw_req *r)
{
    rpc_count(r, SRV_RPC_HANDLED, r->answered ? r->rpc_code : MS_GRPC_CANCELED);
    if (r->srv_id)
        srv_cancel(r->gw->srv, r->srv_id);
    req_unlink(r);
    buf_fini(&r->newest);
    arena_pool_give(&r->gw->arenas, r->a);
    free(r);
}

void gw_abandon(struct gw_req *r)
{
    req_release(r);
}

/* The client went away before we replied: the HTTP layer drops the request, we free the
 * rest. */
static void gw_on_conn_close(void *arg)
{
    gw_abandon(arg);
}

void gw_reply(struct gw_req *r, int status, struct buf *body)
{
    struct buf none;
    if (!body) {
        buf_init(&none);
        body = &none;
    }
    /* The answer is ours to finish: a close from now on is the HTTP layer's alone. */
    http_set_close_cb(r->req, NULL, NULL);
    r->answered = true;
    if (status != 200 && r->rpc_code == MS_GRPC_OK)
        r->rpc_code = MS_GRPC_UNKNOWN;
    if (r->streamed) {
        if (r->newest.len)
            gw_stream_chunk(r, &r->newest);
        if (body->len && r->rpc_code == MS_GRPC_OK)
            gw_stream_chunk(r, body); /* a message, counted there */
        else if (body->len && !buf_failed(body))
            http_stream_write(r->req, body->p, body->len); /* the error: a status, no message */
        buf_fini(body);
        http_stream_end(r->req);
    } else {
        if (r->rpc_code == MS_GRPC_OK && body->len)
            rpc_count(r, SRV_RPC_SENT, 0);
        struct hdrs h;
        hdrs_init(&h);
        hdrs_add(&h, "Content-Type", "application/json");
        if (buf_failed(body)) {
            buf_fini(body);
            status = 500;
        }
        if (status == 200)
            hdrs_add(&h, "Grpc-Metadata-Content-Type", "application/grpc");
        http_respond_buf(r->req, status, h.h, h.n, body);
    }
    req_release(r);
}

void gw_reply_error(struct gw_req *r, ms_err e, const char *msg)
{
    struct buf b;
    buf_init(&b);
    if (!msg || !*msg)
        msg = ms_err_msg(e);
    r->rpc_code = (int)ms_err_grpc(e);
    codec_error(&b, msg, r->rpc_code);
    gw_reply(r, ms_err_http_status(e), &b);
}

void gw_json_header(struct gw_req *r, struct mjson_w *w, bool revision)
{
    struct srv_header h;
    srv_header(r->gw->srv, &h);
    mjson_w_key(w, "header");
    codec_header(w, &h, revision);
}

void gw_json_begin(struct gw_req *r, struct buf *b, struct mjson_w *w, bool revision)
{
    buf_init(b);
    mjson_w_init(w, b);
    mjson_w_obj(w);
    gw_json_header(r, w, revision);
}

bool gw_parse_root(struct gw_req *r, struct mjson_dec *d, struct mjson_val *root)
{
    mjson_dec_init(d, r->a);
    if (!codec_root(d, r->body, r->body_len, root)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d->msg);
        return false;
    }
    return true;
}

bool gw_parse_empty(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    return gw_parse_root(r, &d, &root);
}

static void gw_on_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct gw_req *r = ctx;
    r->srv_id = 0; /* srv is done with us */
    if (err) {
        gw_reply_error(r, err, NULL);
        return;
    }
    struct srv_header h;
    struct buf b;
    struct mjson_w w;
    buf_init(&b);
    if (res->type == SRV_REQ_RANGE) {
        /* One allocation for the whole answer: base64 text plus ~160 bytes of fields per
         * key-value. */
        size_t est = 256;
        for (size_t i = 0; i < res->u.range.n_kvs; i++)
            est += (res->u.range.kvs[i].key_len + res->u.range.kvs[i].value_len) / 3 * 4 + 168;
        buf_reserve(&b, est);
    }
    if (r->encode) {
        r->encode(r, res, &b);
    } else {
        srv_header(r->gw->srv, &h);
        h.revision = res->revision;
        mjson_w_init(&w, &b);
        codec_result(&w, &h, res);
    }
    gw_reply(r, 200, &b);
}

void gw_submit(struct gw_req *r)
{
    size_t psz = codec_proto_size(&r->sreq);
    if (psz > r->gw->grpc_max) {
        char msg[128];
        snprintf(msg, sizeof(msg), "grpc: received message larger than max (%zu vs. %zu)", psz,
                 r->gw->grpc_max);
        gw_reply_error(r, MS_E_MSG_TOO_LARGE, msg);
        return;
    }
    /* etcd answers keepalives and time-to-lives without looking at the token. */
    bool tokens = r->sreq.type != SRV_REQ_LEASE_TTL && r->sreq.type != SRV_REQ_LEASE_KEEPALIVE;
    if (tokens && !gw_auth_caller(r))
        return;
    ms_err e = MS_OK;
    if (r->sreq.type == SRV_REQ_AUTH) {
        r->sreq.u.auth.has_who = r->caller.has_user;
        r->sreq.u.auth.who = r->caller.user;
    } else {
        e = srv_auth_check(r->gw->srv, &r->caller, &r->sreq);
        r->sreq.checked = true; /* and again when it applies */
        r->sreq.caller = r->caller;
    }
    if (!e)
        e = srv_submit(r->gw->srv, &r->sreq, gw_on_done, r, &r->srv_id);
    if (e) {
        r->srv_id = 0;
        gw_reply_error(r, e, NULL);
        return;
    }
    gw_wait(r);
}

void gw_wait(struct gw_req *r)
{
    /* Now waiting: own the connection's close callback until the reply goes out. */
    r->next = r->gw->pending;
    if (r->next)
        r->next->prev = r;
    r->gw->pending = r;
    http_set_close_cb(r->req, gw_on_conn_close, r);
}

void gw_done_cb(void *ctx, ms_err err, const struct srv_result *res)
{
    gw_on_done(ctx, err, res);
}

void gw_http_stream_start(struct http_request *req)
{
    struct hdrs h;
    hdrs_init(&h);
    hdrs_add(&h, "Content-Type", "application/json");
    hdrs_add(&h, "Grpc-Metadata-Content-Type", "application/grpc");
    http_stream_start(req, 200, h.h, h.n);
}

void gw_stream_start(struct gw_req *r)
{
    gw_http_stream_start(r->req);
    r->streamed = true;
}

void gw_stream_chunk(struct gw_req *r, struct buf *b)
{
    if (!buf_failed(b)) {
        http_stream_write(r->req, b->p, b->len);
        rpc_count(r, SRV_RPC_SENT, 0);
    }
    buf_fini(b);
}

/* The output has drained: the chunk held back goes now. */
static void on_newest_drained(void *arg)
{
    struct gw_req *r = arg;
    http_set_drain_cb(r->req, 0, NULL, NULL);
    gw_stream_chunk(r, &r->newest);
}

void gw_stream_newest(struct gw_req *r, struct buf *b)
{
    if (!r->newest.len && http_pending(r->req) < GW_STREAM_HOLD) {
        gw_stream_chunk(r, b);
        return;
    }
    if (buf_failed(b)) {
        buf_fini(b);
        return;
    }
    buf_fini(&r->newest);
    r->newest = *b;
    buf_init(b);
    http_set_drain_cb(r->req, 0, on_newest_drained, r);
}

void gw_reply_decode_error(struct gw_req *r, const char *msg)
{
    /* The first message fails to decode: grpc-gateway answers 500, code 2 (Unknown) (§4.3). */
    struct buf b;
    buf_init(&b);
    r->rpc_code = MS_GRPC_UNKNOWN;
    codec_error(&b, msg, 2);
    gw_reply(r, 500, &b);
}

void gw_reply_stream_error(struct gw_req *r, ms_err e, const char *msg)
{
    struct buf b;
    buf_init(&b);
    gw_stream_error_body(&b, e, msg);
    r->rpc_code = (int)ms_err_grpc(e);
    gw_reply(r, ms_err_http_status(e), &b);
}

void gw_stream_error_body(struct buf *b, ms_err e, const char *msg)
{
    /* grpc-gateway's envelope for a stream that fails (§4.3). */
    struct mjson_w w;
    int status = ms_err_http_status(e);
    mjson_w_init(&w, b);
    mjson_w_obj(&w);
    mjson_w_key(&w, "error");
    mjson_w_obj(&w);
    mjson_w_key(&w, "grpc_code");
    mjson_w_num(&w, ms_err_grpc(e));
    mjson_w_key(&w, "http_code");
    mjson_w_num(&w, status);
    mjson_w_key(&w, "message");
    mjson_w_cstr(&w, msg && *msg ? msg : ms_err_msg(e));
    mjson_w_key(&w, "http_status");
    mjson_w_cstr(&w, ms_http_reason(status));
    mjson_w_obj_end(&w);
    mjson_w_obj_end(&w);
}

/* Go's path.Clean, keeping a trailing slash (net/http cleanPath). out has room for
 * strlen(p) + 2. */
static size_t clean_path(const char *p, size_t n, char *out)
{
    size_t o = 0;
    bool trailing = n > 1 && p[n - 1] == '/';
    out[o++] = '/';
    size_t i = 0;
    while (i < n) {
        while (i < n && p[i] == '/')
            i++;
        size_t s = i;
        while (i < n && p[i] != '/')
            i++;
        size_t len = i - s;
        if (len == 0 || (len == 1 && p[s] == '.'))
            continue;
        if (len == 2 && p[s] == '.' && p[s + 1] == '.') {
            /* Drop the last element. */
            if (o > 1) {
                o--;
                while (o > 1 && out[o - 1] != '/')
                    o--;
                if (o > 1)
                    o--;
            }
            continue;
        }
        if (o > 1)
            out[o++] = '/';
        memcpy(out + o, p + s, len);
        o += len;
    }
    if (trailing && o > 1)
        out[o++] = '/';
    out[o] = 0;
    return o;
}

bool gw_require_leader(const struct http_request *req)
{
    size_t len;
    const char *v = http_header(req, "Grpc-Metadata-Hasleader", &len);
    return v && len == 4 && memcmp(v, "true", 4) == 0;
}

static struct gw_req *req_create(struct gw *gw, struct http_request *req)
{
    struct gw_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->gw = gw;
    r->req = req;
    size_t len = req->body_len;
    /* Room for the body and 4 KiB of work at least, in a kept arena when it fits. */
    r->a = len + 4096 <= GW_ARENA_FIRST ? arena_pool_take(&gw->arenas) : arena_create(len + 4096);
    char *body = r->a ? arena_alloc(r->a, len + 1) : NULL;
    if (!body) {
        arena_destroy(r->a);
        free(r);
        return NULL;
    }
    /* A copy, NUL-terminated, that outlives the HTTP layer's buffer (streams keep it). */
    if (len)
        memcpy(body, req->body, len);
    body[len] = 0;
    r->body = body;
    r->body_len = len;
    return r;
}

static void route_v3(struct gw *gw, struct http_request *req, const char *sub)
{
    const struct gw_route *rt = NULL;
    for (size_t i = 0; i < sizeof(ROUTES) / sizeof(ROUTES[0]) && !rt; i++)
        if (strcmp(ROUTES[i].path, sub) == 0)
            rt = &ROUTES[i];
    if (!rt) {
        send_text(req, 404, "Not Found\n", NULL);
        return;
    }
    if (req->method != HTTP_POST) {
        send_text(req, 405, "Method Not Allowed\n", NULL);
        return;
    }
    struct gw_req *r = req_create(gw, req);
    if (!r) {
        send_text(req, 503, "out of memory\n", NULL);
        return;
    }
    r->rpc = rt->rpc;
    r->rpc_type = rt->type;
    rpc_count(r, SRV_RPC_STARTED, 0);
    rpc_count(r, SRV_RPC_RECEIVED, 0);
    if (!rt->fn) {
        gw_reply_error(r, MS_E_UNIMPLEMENTED, NULL);
        return;
    }
    bool stream = rt->fn == gw_watch || rt->fn == gw_lease_keepalive ||
                  rt->fn == gw_election_observe || rt->fn == gw_maint_snapshot;
    /* etcd's interceptors: a learner serves status and serializable ranges only (gw_kv_range
     * looks at the range); a caller that asked for a leader is refused at once without one. */
    ms_err e = MS_OK;
    if (rt->fn != gw_maint_status && rt->fn != gw_kv_range && srv_is_learner(gw->srv))
        e = MS_E_LEARNER_RPC;
    else if (gw_require_leader(req) && !srv_has_leader(gw->srv))
        e = MS_E_NO_LEADER;
    if (e) {
        if (stream)
            gw_reply_stream_error(r, e, NULL);
        else
            gw_reply_error(r, e, NULL);
        return;
    }
    rt->fn(r);
}

static void get_only(struct http_request *req, void (*fn)(struct gw *, struct http_request *),
                     struct gw *gw)
{
    if (req->method != HTTP_GET) {
        send_text(req, 405, "Method Not Allowed\n", "GET");
        return;
    }
    fn(gw, req);
}

static void serve_health(struct gw *gw, struct http_request *req)
{
    const struct srv_alarm *alarms;
    size_t n;
    srv_alarms(gw->srv, &alarms, &n);
    if (n || !srv_has_leader(gw->srv)) {
        /* etcd: unhealthy without a leader or while any alarm is raised, answered as Go's
         * http.Error. */
        send_text(req, 503, "{\"health\":\"false\"}\n", NULL);
        return;
    }
    struct hdrs h;
    hdrs_init(&h);
    hdrs_add(&h, "Content-Type", "text/plain; charset=utf-8");
    http_respond(req, 200, h.h, h.n, "{\"health\":\"true\"}", 17);
}

static void serve_version(struct gw *gw, struct http_request *req)
{
    (void)gw;
    static const char body[] =
        "{\"etcdserver\":\"" MS_ETCD_VERSION "\",\"etcdcluster\":\"" MS_ETCD_CLUSTER_VERSION "\"}";
    struct hdrs h;
    hdrs_init(&h);
    hdrs_add(&h, "Content-Type", "application/json");
    http_respond(req, 200, h.h, h.n, body, sizeof(body) - 1);
}

static void serve_metrics(struct gw *gw, struct http_request *req)
{
    struct buf b;
    buf_init(&b);
    srv_metrics_text(gw->srv, &b);
    gw_watch_metrics(gw->watch, &b);
    struct hdrs h;
    hdrs_init(&h);
    hdrs_add(&h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    if (buf_failed(&b)) {
        buf_fini(&b);
        send_text(req, 503, "out of memory\n", NULL);
        return;
    }
    http_respond_buf(req, 200, h.h, h.n, &b);
}

static bool has_prefix(const char *s, const char *p, const char **rest)
{
    size_t n = strlen(p);
    if (strncmp(s, p, n) != 0)
        return false;
    *rest = s + n;
    return true;
}

/* Percent-decode p[0..n) into out (room for n + 1), NUL-terminated; returns the decoded length.
 * A %00 is a byte of the path like any other, as in Go (etcd routes "/v3/%00" to the gateway,
 * which does not find it). A '%' that starts no escape never gets here: the HTTP layer answers
 * Go's 400 to it. */
static size_t uri_decode(const char *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < n && (hi = hex_digit(p[i + 1])) >= 0 &&
            (lo = hex_digit(p[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = p[i];
        }
    }
    out[o] = 0;
    return o;
}

/* Append s[0..n) as Go's url.URL.EscapedPath writes a path: unreserved bytes and
 * $&+,/:;=@ stay, every other byte becomes %XX. */
static void put_escaped_path(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr("-_.~$&+,/:;=@", c))) {
            buf_putc(b, (char)c);
        } else {
            buf_putc(b, '%');
            buf_putc(b, hex[c >> 4]);
            buf_putc(b, hex[c & 15]);
        }
    }
}

/* Go's htmlEscape (the href of a redirect's body). */
static void put_html(struct buf *b, const char *s, size_t n)
{
    static const char from[] = "&<>\"'";
    static const char *const to[] = {"&amp;", "&lt;", "&gt;", "&#34;", "&#39;"};
    for (size_t i = 0; i < n; i++) {
        const char *m = s[i] ? strchr(from, s[i]) : NULL;
        if (m)
            buf_puts(b, to[m - from]);
        else
            buf_putc(b, s[i]);
    }
}

/* The 301 of Go's ServeMux to a cleaned path (reference §1.1): Location is the path escaped
 * as url.URL writes it, "/" added for the subtree root, then "?" and the raw query if there is
 * one, with bytes above 0x7f as lower-case %xx (http.Redirect's hexEscapeNonASCII). Only GET
 * and HEAD get a Content-Type, and only GET the little HTML body. */
static void send_redirect(struct http_request *req, const char *clean, size_t clean_len, bool slash,
                          const char *query, size_t query_len)
{
    struct buf url, loc, body;
    buf_init(&url);
    buf_init(&loc);
    buf_init(&body);
    put_escaped_path(&url, clean, clean_len);
    if (slash)
        buf_putc(&url, '/');
    if (query_len) {
        buf_putc(&url, '?');
        buf_append(&url, query, query_len);
    }
    for (size_t i = 0; i < url.len; i++) {
        unsigned char c = url.p[i];
        if (c < 0x80)
            buf_putc(&loc, (char)c);
        else
            buf_printf(&loc, "%%%x", c);
    }
    buf_putc(&loc, 0);
    bool get = req->method == HTTP_GET;
    if (get) {
        buf_puts(&body, "<a href=\"");
        put_html(&body, (const char *)url.p, url.len);
        buf_puts(&body, "\">Moved Permanently</a>.\n\n");
    }
    struct hdrs h;
    hdrs_init(&h);
    if (get || req->method == HTTP_HEAD)
        hdrs_add(&h, "Content-Type", "text/html; charset=utf-8");
    if (buf_failed(&url) || buf_failed(&loc) || buf_failed(&body)) {
        send_text(req, 503, "out of memory\n", NULL);
    } else {
        hdrs_add(&h, "Location", (const char *)loc.p);
        http_respond(req, 301, h.h, h.n, (const char *)body.p, body.len);
    }
    buf_fini(&url);
    buf_fini(&loc);
    buf_fini(&body);
}

static void gw_on_request(void *arg, struct http_request *req)
{
    struct gw *gw = arg;
    if (req->method == HTTP_OPTIONS) {
        struct hdrs h;
        hdrs_init(&h);
        http_respond(req, 200, h.h, h.n, NULL, 0);
        return;
    }
    const char *q = memchr(req->target, '?', req->target_len);
    size_t plen = q ? (size_t)(q - req->target) : req->target_len;
    size_t qlen = q ? req->target_len - plen : 0;
    char *path = malloc(plen + 1);
    char *clean = malloc(plen + 2);
    if (!path || !clean) {
        free(path);
        free(clean);
        send_text(req, 503, "out of memory\n", NULL);
        return;
    }
    size_t path_len = uri_decode(req->target, plen, path);
    if (path[0] != '/') {
        send_text(req, 404, "404 page not found\n", NULL);
        goto out;
    }
    size_t clean_len = clean_path(path, path_len, clean);
    const char *sub;
    /* "/v3/" is a subtree of etcd's mux, so "/v3" redirects to it; "/v3beta/" is rewritten
     * before the mux and "/v3beta" is not found. */
    bool is_root = clean_len == 3 && memcmp(clean, "/v3", 3) == 0;
    bool nul = memchr(clean, 0, clean_len) != NULL; /* no route has one */
    if (clean_len != path_len || memcmp(clean, path, path_len) != 0 || is_root) {
        send_redirect(req, clean, clean_len, is_root, q ? q + 1 : NULL, qlen ? qlen - 1 : 0);
    } else if (nul && (has_prefix(clean, "/v3/", &sub) || has_prefix(clean, "/v3beta/", &sub))) {
        send_text(req, 404, "Not Found\n", NULL);
    } else if (nul) {
        send_text(req, 404, "404 page not found\n", NULL);
    } else if (has_prefix(clean, "/v3/", &sub) || has_prefix(clean, "/v3beta/", &sub)) {
        route_v3(gw, req, sub - 1);
    } else if (strcmp(clean, "/health") == 0) {
        get_only(req, serve_health, gw);
    } else if (strcmp(clean, "/version") == 0) {
        get_only(req, serve_version, gw);
    } else if (strcmp(clean, "/metrics") == 0) {
        get_only(req, serve_metrics, gw);
    } else {
        send_text(req, 404, "404 page not found\n", NULL);
    }
out:
    free(clean);
    free(path);
}

struct gw *gw_create(struct event_base *base, struct srv *srv, ms_err *err)
{
    const struct cfg *cfg = srv_cfg(srv);
    struct gw *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        *err = MS_E_NOMEM;
        return NULL;
    }
    gw->base = base;
    gw->srv = srv;
    gw->grpc_max = (size_t)cfg->max_request_bytes + GRPC_OVERHEAD;
    /* JSON carries bytes as base64 (4/3) plus escapes: allow twice the gRPC limit so that
     * oversized requests get etcd's own errors rather than a bare 413. */
    gw->max_body = gw->grpc_max * 2 + (64 << 10);
    struct http_limits lim = {.max_header_bytes = GW_MAX_HEADERS,
                              .max_body_bytes = gw->max_body,
                              .read_timeout_ms = GW_TIMEOUT_MS,
                              .write_timeout_ms = GW_TIMEOUT_MS,
                              .idle_timeout_ms = GW_TIMEOUT_MS,
                              .max_conns = GW_MAX_CONNS,
                              .host_required = true};
    arena_pool_init(&gw->arenas, GW_ARENA_FIRST);
    gw->http = http_server_create(base, &lim, gw_on_request, gw);
    if (!gw->http) {
        *err = MS_E_NOMEM;
        goto out_free;
    }
    gw->watch = gw_watch_create(base, srv, gw->grpc_max);
    if (!gw->watch) {
        *err = MS_E_NOMEM;
        goto out_free;
    }
    if (cfg_tls_used(cfg, false)) {
        struct tls_config tc;
        const char *hosts[CFG_MAX_URLS];
        char msg[512];
        cfg_tls_config(cfg, false, &tc, hosts);
        gw->tls = tls_ctx_server(&tc, msg, sizeof(msg));
        if (!gw->tls) {
            log_error("client TLS: %s", msg);
            *err = MS_E_IO;
            goto out_free;
        }
        log_info("client TLS: cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %s%s",
                 tc.auto_tls ? "(generated)" : tc.cert_file,
                 tc.auto_tls ? "(generated)" : tc.key_file, tc.trusted_ca_file,
                 tc.client_cert_auth ? "true" : "false", tc.auto_tls ? ", auto-tls" : "");
    }
    for (size_t i = 0; i < cfg->n_listen_client; i++) {
        const struct cfg_url *u = &cfg->listen_client[i];
        bool https = strcmp(u->scheme, "https") == 0;
        if (http_server_listen_tls(gw->http, u->host, u->port, https ? gw->tls : NULL) != 0) {
            log_error("cannot listen on %s", u->text);
            *err = MS_E_IO;
            goto out_free;
        }
        log_info("serving client traffic on %s", u->text);
    }
    return gw;

out_free:
    gw_destroy(gw);
    return NULL;
}

void gw_set_h2(struct gw *gw, http_h2_fn fn, void *ctx)
{
    http_server_set_h2(gw->http, fn, ctx);
}

void gw_destroy(struct gw *gw)
{
    if (!gw)
        return;
    /* Closing the HTTP server closes every connection; their close callbacks free waiting
     * requests and streams. */
    http_server_destroy(gw->http);
    while (gw->pending)
        gw_abandon(gw->pending);
    gw_watch_destroy(gw->watch);
    tls_ctx_destroy(gw->tls); /* after every connection made from it */
    arena_pool_fini(&gw->arenas);
    free(gw);
}
