/* gw.c - the HTTP side of the gateway: listeners, limits, routing, replies, and the life of
 * a request.
 *
 * Routing copies etcd 3.4's observable behaviour (reference §1): Go path cleaning with 301,
 * the gateway's "Not Found\n" / "Method Not Allowed\n" under /v3/ and /v3beta/, Go's "404 page
 * not found\n" elsewhere, OPTIONS answered everywhere, CORS headers on every response.
 * A request that waits for the server is linked in gw->pending and holds the connection's
 * close callback: whichever of "reply" and "connection closed" comes first frees it.
 */
#include "codec.h"
#include "gw_int.h"

#include "metastore/log.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GW_TIMEOUT_SECS 60
#define GW_MAX_HEADERS  (256 << 10)
#define GRPC_OVERHEAD   (512 << 10) /* etcd grpcOverheadBytes */

struct gw_route {
    const char *path; /* below /v3 */
    gw_handler_fn fn; /* NULL: known to etcd, not implemented here yet */
};

static const struct gw_route ROUTES[] = {
    {"/kv/range", gw_kv_range},
    {"/kv/put", gw_kv_put},
    {"/kv/deleterange", gw_kv_deleterange},
    {"/kv/txn", gw_kv_txn},
    {"/kv/compaction", gw_kv_compaction},
    {"/watch", gw_watch},
    {"/lease/grant", gw_lease_grant},
    {"/lease/revoke", gw_lease_revoke},
    {"/kv/lease/revoke", gw_lease_revoke},
    {"/lease/keepalive", gw_lease_keepalive},
    {"/lease/timetolive", gw_lease_timetolive},
    {"/kv/lease/timetolive", gw_lease_timetolive},
    {"/lease/leases", gw_lease_leases},
    {"/kv/lease/leases", gw_lease_leases},
    {"/cluster/member/add", NULL},
    {"/cluster/member/remove", NULL},
    {"/cluster/member/update", NULL},
    {"/cluster/member/list", gw_cluster_member_list},
    {"/cluster/member/promote", NULL},
    {"/maintenance/alarm", gw_maint_alarm},
    {"/maintenance/status", gw_maint_status},
    {"/maintenance/defragment", gw_maint_defrag},
    {"/maintenance/hash", gw_maint_hash},
    {"/maintenance/snapshot", gw_maint_snapshot},
    {"/maintenance/transfer-leadership", NULL},
    {"/auth/enable", NULL},
    {"/auth/disable", NULL},
    {"/auth/authenticate", NULL},
    {"/auth/user/add", NULL},
    {"/auth/user/get", NULL},
    {"/auth/user/list", NULL},
    {"/auth/user/delete", NULL},
    {"/auth/user/changepw", NULL},
    {"/auth/user/grant", NULL},
    {"/auth/user/revoke", NULL},
    {"/auth/role/add", NULL},
    {"/auth/role/get", NULL},
    {"/auth/role/list", NULL},
    {"/auth/role/delete", NULL},
    {"/auth/role/grant", NULL},
    {"/auth/role/revoke", NULL},
    {"/lock/lock", NULL},
    {"/lock/unlock", NULL},
    {"/election/campaign", NULL},
    {"/election/proclaim", NULL},
    {"/election/leader", NULL},
    {"/election/observe", NULL},
    {"/election/resign", NULL},
};

static void add_common_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Access-Control-Allow-Headers", "accept, content-type, authorization");
    evhttp_add_header(h, "Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE");
    evhttp_add_header(h, "Access-Control-Allow-Origin", "*");
}

/* Send a plain-text reply on a request that has no gw_req. */
static void send_text(struct evhttp_request *req, int status, const char *body, const char *allow)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *b = evbuffer_new();
    if (allow)
        evhttp_add_header(h, "Allow", allow);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    if (status >= 400)
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (b && body)
        evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, status, ms_http_reason(status), b);
    if (b)
        evbuffer_free(b);
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

static void gw_req_free(struct gw_req *r)
{
    if (r->srv_id)
        srv_cancel(r->gw->srv, r->srv_id);
    req_unlink(r);
    arena_destroy(r->a);
    free(r);
}

void gw_req_abandon(struct gw_req *r)
{
    gw_req_free(r);
}

/* The client went away before we replied: evhttp frees the request, we free the rest. */
static void gw_on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct gw_req *r = arg;
    (void)evcon;
    gw_req_free(r);
}

static void detach(struct gw_req *r)
{
    evhttp_connection_set_closecb(r->evcon, NULL, NULL);
}

void gw_req_release(struct gw_req *r)
{
    detach(r);
    r->srv_id = 0;
    gw_req_free(r);
}

static void free_buf_cb(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

void gw_reply_json(struct gw_req *r, int status, struct buf *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (status == 200)
        evhttp_add_header(h, "Grpc-Metadata-Content-Type", "application/grpc");
    struct evbuffer *b = evbuffer_new();
    if (b && !buf_failed(body)) {
        size_t len;
        uint8_t *p = buf_steal(body, &len);
        if (p && evbuffer_add_reference(b, p, len, free_buf_cb, p) != 0)
            free(p);
    } else {
        status = 500;
    }
    buf_fini(body);
    detach(r);
    evhttp_send_reply(r->req, status, ms_http_reason(status), b);
    if (b)
        evbuffer_free(b);
    r->srv_id = 0;
    gw_req_free(r);
}

void gw_reply_error(struct gw_req *r, ms_err e, const char *msg)
{
    struct buf b;
    buf_init(&b);
    if (!msg || !*msg)
        msg = ms_err_msg(e);
    codec_error(&b, msg, (int)ms_err_grpc(e));
    gw_reply_json(r, ms_err_http_status(e), &b);
}

void gw_reply_text(struct gw_req *r, int status, const char *body)
{
    detach(r);
    send_text(r->req, status, body, NULL);
    r->srv_id = 0;
    gw_req_free(r);
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
    struct jw w;
    buf_init(&b);
    if (r->encode) {
        r->encode(r, res, &b);
    } else {
        srv_header(r->gw->srv, &h);
        h.revision = res->revision;
        jw_init(&w, &b);
        codec_result(&w, &h, res);
    }
    gw_reply_json(r, 200, &b);
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
    ms_err e = srv_submit(r->gw->srv, &r->sreq, gw_on_done, r, &r->srv_id);
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
    evhttp_connection_set_closecb(r->evcon, gw_on_conn_close, r);
}

void gw_done_cb(void *ctx, ms_err err, const struct srv_result *res)
{
    gw_on_done(ctx, err, res);
}

void gw_stream_start(struct gw_req *r)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Grpc-Metadata-Content-Type", "application/grpc");
    evhttp_send_reply_start(r->req, 200, "OK");
}

void gw_stream_chunk(struct gw_req *r, struct buf *b,
                     void (*sent)(struct evhttp_connection *, void *), void *arg)
{
    struct evbuffer *e = evbuffer_new();
    if (e) {
        size_t len;
        uint8_t *p = buf_steal(b, &len);
        if (p && evbuffer_add_reference(e, p, len, free_buf_cb, p) != 0)
            free(p);
        evhttp_send_reply_chunk_with_cb(r->req, e, sent, arg);
        evbuffer_free(e);
    }
    buf_fini(b);
}

void gw_stream_end(struct gw_req *r)
{
    detach(r);
    evhttp_send_reply_end(r->req);
    r->srv_id = 0;
    gw_req_free(r);
}

void gw_stream_error(struct gw_req *r, ms_err e, const char *msg)
{
    /* grpc-gateway's envelope for a stream that fails before its first message (§4.3). */
    struct buf b;
    struct jw w;
    int status = ms_err_http_status(e);
    buf_init(&b);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "error");
    jw_obj(&w);
    jw_key(&w, "grpc_code");
    jw_num(&w, ms_err_grpc(e));
    jw_key(&w, "http_code");
    jw_num(&w, status);
    jw_key(&w, "message");
    jw_cstr(&w, msg && *msg ? msg : ms_err_msg(e));
    jw_key(&w, "http_status");
    jw_cstr(&w, ms_http_reason(status));
    jw_obj_end(&w);
    jw_obj_end(&w);
    gw_reply_json(r, status, &b);
}

/* Go's path.Clean, keeping a trailing slash (net/http cleanPath). out has room for
 * strlen(p) + 2. */
static void clean_path(const char *p, char *out)
{
    size_t n = strlen(p), o = 0;
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
}

static struct gw_req *req_create(struct gw *gw, struct evhttp_request *req)
{
    struct gw_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->gw = gw;
    r->req = req;
    r->evcon = evhttp_request_get_connection(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    r->a = arena_create(len + 4096);
    char *body = r->a ? arena_alloc(r->a, len + 1) : NULL;
    if (!body) {
        arena_destroy(r->a);
        free(r);
        return NULL;
    }
    evbuffer_copyout(in, body, len);
    body[len] = 0;
    r->body = body;
    r->body_len = len;
    return r;
}

static void route_v3(struct gw *gw, struct evhttp_request *req, const char *sub)
{
    const struct gw_route *rt = NULL;
    for (size_t i = 0; i < sizeof(ROUTES) / sizeof(ROUTES[0]); i++)
        if (strcmp(ROUTES[i].path, sub) == 0)
            rt = &ROUTES[i];
    if (!rt) {
        send_text(req, 404, "Not Found\n", NULL);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        send_text(req, 405, "Method Not Allowed\n", NULL);
        return;
    }
    struct gw_req *r = req_create(gw, req);
    if (!r) {
        send_text(req, 503, "out of memory\n", NULL);
        return;
    }
    if (!rt->fn) {
        gw_reply_error(r, MS_E_UNIMPLEMENTED, NULL);
        return;
    }
    rt->fn(r);
}

static void get_only(struct evhttp_request *req, void (*fn)(struct gw *, struct evhttp_request *),
                     struct gw *gw)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        send_text(req, 405, "Method Not Allowed\n", "GET");
        return;
    }
    fn(gw, req);
}

static void serve_health(struct gw *gw, struct evhttp_request *req)
{
    const struct srv_alarm *alarms;
    size_t n;
    srv_alarms(gw->srv, &alarms, &n);
    if (n) {
        /* etcd: unhealthy while any alarm is raised, answered as Go's http.Error. */
        send_text(req, 503, "{\"health\":\"false\"}\n", NULL);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    if (b)
        evbuffer_add(b, "{\"health\":\"true\"}", 17);
    evhttp_send_reply(req, 200, "OK", b);
    if (b)
        evbuffer_free(b);
}

static void serve_version(struct gw *gw, struct evhttp_request *req)
{
    (void)gw;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(h, "Content-Type", "application/json");
    if (b)
        evbuffer_add_printf(b, "{\"etcdserver\":\"%s\",\"etcdcluster\":\"%s\"}", MS_ETCD_VERSION,
                            MS_ETCD_CLUSTER_VERSION);
    evhttp_send_reply(req, 200, "OK", b);
    if (b)
        evbuffer_free(b);
}

static void serve_metrics(struct gw *gw, struct evhttp_request *req)
{
    struct buf b;
    buf_init(&b);
    srv_metrics_text(gw->srv, &b);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    if (out && !buf_failed(&b)) {
        evbuffer_add(out, b.p, b.len);
        gw_watch_metrics(gw, out);
    }
    buf_fini(&b);
    evhttp_send_reply(req, out ? 200 : 503, out ? "OK" : "Service Unavailable", out);
    if (out)
        evbuffer_free(out);
}

static bool has_prefix(const char *s, const char *p, const char **rest)
{
    size_t n = strlen(p);
    if (strncmp(s, p, n) != 0)
        return false;
    *rest = s + n;
    return true;
}

static void gw_on_request(struct evhttp_request *req, void *arg)
{
    struct gw *gw = arg;
    add_common_headers(req);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_OPTIONS) {
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    const char *uri = evhttp_request_get_uri(req);
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    char *raw = malloc(plen + 1);
    if (!raw) {
        send_text(req, 503, "out of memory\n", NULL);
        return;
    }
    memcpy(raw, uri, plen);
    raw[plen] = 0;
    size_t dlen;
    char *path = evhttp_uridecode(raw, 0, &dlen);
    free(raw);
    if (!path || strlen(path) != dlen || path[0] != '/') {
        free(path);
        send_text(req, 404, "404 page not found\n", NULL);
        return;
    }
    char *clean = malloc(dlen + 2);
    if (!clean) {
        free(path);
        send_text(req, 503, "out of memory\n", NULL);
        return;
    }
    clean_path(path, clean);
    const char *sub;
    if (strcmp(clean, path) != 0 || strcmp(clean, "/v3") == 0 || strcmp(clean, "/v3beta") == 0) {
        /* net/http redirects to the cleaned path, and "/v3" to the "/v3/" subtree. */
        struct evbuffer *loc = evbuffer_new();
        if (loc) {
            evbuffer_add_printf(
                loc, "%s%s%s", clean,
                strcmp(clean, "/v3") == 0 || strcmp(clean, "/v3beta") == 0 ? "/" : "", q ? q : "");
            evbuffer_add(loc, "", 1);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Location",
                              (const char *)evbuffer_pullup(loc, -1));
            evbuffer_free(loc);
        }
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/html; charset=utf-8");
        evhttp_send_reply(req, 301, "Moved Permanently", NULL);
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
    gw->http = evhttp_new(base);
    if (!gw->http) {
        *err = MS_E_NOMEM;
        goto out_free;
    }
    evhttp_set_max_body_size(gw->http, (ev_ssize_t)gw->max_body);
    evhttp_set_max_headers_size(gw->http, GW_MAX_HEADERS);
    evhttp_set_timeout(gw->http, GW_TIMEOUT_SECS);
    evhttp_set_allowed_methods(gw->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(gw->http, gw_on_request, gw);
    gw_watch_init(gw);
    for (size_t i = 0; i < cfg->n_listen_client; i++) {
        const struct cfg_url *u = &cfg->listen_client[i];
        if (!evhttp_bind_socket_with_handle(gw->http, u->host, u->port)) {
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

void gw_destroy(struct gw *gw)
{
    if (!gw)
        return;
    /* evhttp_free closes every connection; their close callbacks free waiting requests. */
    if (gw->http)
        evhttp_free(gw->http);
    while (gw->pending)
        gw_req_free(gw->pending);
    gw_watch_fini(gw);
    free(gw);
}
