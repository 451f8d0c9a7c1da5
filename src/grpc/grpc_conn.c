/* grpc_conn.c - one HTTP/2 connection (nghttp2 as a state machine, fed and drained from the
 * loop) and the gRPC calls on its streams.
 *
 * Input is read into a stack buffer and given to nghttp2 at once; its callbacks create calls,
 * take their headers and feed DATA to each call's deframer, which hands whole messages to the
 * method. Output goes the other way: a call's framed messages wait in call->out until nghttp2's
 * data source takes them; nghttp2's frames are copied to the connection's buffer and written.
 * Nothing is written from inside nghttp2's callbacks (in_recv): the reader flushes after.
 *
 * Memory: a request message is refused above max_recv before anything is allocated for it;
 * the deframers of one connection hold at most in_high() bytes before reading pauses; frames
 * are made only while less than OUT_HIGH bytes wait for the socket, and reading pauses too
 * then (a client that never reads stops being read). A stream's request bytes are credited
 * back (WINDOW_UPDATE) only while its call holds less than CALL_HOLD bytes of unsent output,
 * so a client that sends requests on a stream (watch creates, keepalives) without reading the
 * answers is held to one window of requests. A stream's end (its status sent and its
 * request side done, or a RST_STREAM) frees the call; a connection's end frees them all.
 */
#include "grpc_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK           (16u << 10)
#define OUT_HIGH             (256u << 10) /* no new frames are made while this much waits */
#define IN_HIGH              (64u << 20)  /* partial request messages a connection may hold */
#define IN_KEEP              (64u << 10)  /* a message buffer kept for the next message */
#define MAX_STREAMS          4096         /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define GRPC_MAX_HEADER_LIST (16u << 10)  /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced per stream */
#define PING_IDLE_MS         (2 * 3600 * 1000) /* grpc-go: pings without calls closer than 2 h strike */
#define MAX_STRIKES          2                 /* grpc-go's maxPingStrikes */
#define CALL_HOLD            (256u << 10) /* a call's unsent output above which its input waits */
#define CALL_BACKLOG         (16u << 10)  /* ... and its unanswered requests */

static void conn_flush(struct grpc_conn *c);

/* Output made by an API call (a completion from the server's ready step) is written once per
 * loop turn per connection, from the module's due event: the answers of every call a ready
 * step completes leave in one write per connection, as on HTTP/1.1. */
static void conn_flush_later(struct grpc_conn *c)
{
    if (c->flush_due || c->in_recv || c->dead)
        return; /* the reader flushes after nghttp2 returns */
    c->flush_due = true;
    c->due_next = c->g->due;
    c->g->due = c;
    event_active(c->g->due_ev, EV_TIMEOUT, 1);
}

void grpc_on_due(evutil_socket_t fd, short what, void *arg)
{
    struct grpc *g = arg;
    (void)fd, (void)what;
    while (g->due) {
        struct grpc_conn *c = g->due;
        g->due = c->due_next;
        c->flush_due = false;
        conn_flush(c);
    }
}

/* ---- calls ---- */

static struct grpc_call *call_create(struct grpc_conn *c, int32_t stream_id)
{
    struct grpc_call *call = calloc(1, sizeof(*call));
    if (!call)
        return NULL;
    call->a = arena_pool_take(&c->g->arenas);
    if (!call->a) {
        free(call);
        return NULL;
    }
    call->conn = c;
    call->stream_id = stream_id;
    grpc_deframer_init(&call->in);
    buf_init(&call->out);
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    c->n_calls++;
    c->g->n_calls++;
    return call;
}

/* etcd's grpc_server_* counters for call's method (called once the method is known). */
static void count(struct grpc_call *call, enum srv_rpc_event ev, int code)
{
    static const char *const TYPE[] = {"unary", "server_stream", "bidi_stream"};
    if (call->m)
        srv_rpc_count(call->conn->g->srv, call->m->path, TYPE[call->m->kind], ev, code);
}

static void call_free(struct grpc_call *call)
{
    struct grpc_conn *c = call->conn;
    if (call->state == GRPC_CALL_OPEN)
        count(call, SRV_RPC_HANDLED, MS_GRPC_CANCELED); /* reset or cut off by the client */
    if (call->srv_id)
        srv_cancel(c->g->srv, call->srv_id);
    if (call->m && call->m->on_free)
        call->m->on_free(call);
    if (call->deadline)
        event_free(call->deadline);
    grpc_leader_watch(call, false);
    c->in_held -= call->in.msg.cap;
    grpc_deframer_fini(&call->in);
    buf_fini(&call->out);
    free(call->message);
    free(call->token);
    arena_pool_give(&c->g->arenas, call->a);
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    c->n_calls--;
    c->g->n_calls--;
    free(call);
}

static void *arena_alloc_cb(void *ctx, size_t n)
{
    return arena_alloc(ctx, n ? n : 1);
}

static void arena_free_cb(void *ctx, void *p)
{
    (void)ctx;
    (void)p;
}

void grpc_allocator(struct arena *a, ProtobufCAllocator *out)
{
    out->alloc = arena_alloc_cb;
    out->free = arena_free_cb;
    out->allocator_data = a;
}

void grpc_header_fill(struct srv *srv, Etcdserverpb__ResponseHeader *h, int64_t revision)
{
    struct srv_header sh;
    srv_header(srv, &sh);
    etcdserverpb__response_header__init(h);
    h->cluster_id = sh.cluster_id;
    h->member_id = sh.member_id;
    h->raft_term = sh.raft_term;
    h->revision = revision < 0 ? sh.revision : revision;
}

Etcdserverpb__ResponseHeader *grpc_header(struct grpc_call *call, int64_t revision, bool full)
{
    Etcdserverpb__ResponseHeader *h = arena_alloc(call->a, sizeof(*h));
    if (!h)
        return NULL;
    if (full) {
        grpc_header_fill(grpc_call_srv(call), h, revision ? revision : -1);
    } else {
        etcdserverpb__response_header__init(h);
        h->revision = revision;
    }
    return h;
}

void grpc_call_bad_message(struct grpc_call *call, const char *type)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "grpc: error unmarshalling request: proto: %s: illegal message",
             type);
    grpc_call_finish(call, MS_GRPC_INTERNAL, msg);
}

ProtobufCMessage *grpc_call_unpack(struct grpc_call *call, const ProtobufCMessageDescriptor *d,
                                   const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &al, len, p);
    if (!m)
        grpc_call_bad_message(call, d->short_name);
    return m;
}

#define NV(n, v, vl)                                                                               \
    ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl),                             \
                  NGHTTP2_NV_FLAG_NO_COPY_NAME})

static ssize_t data_read(nghttp2_session *s, int32_t stream_id, uint8_t *dst, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user);

/* grpc-message is percent-encoded (PROTOCOL-HTTP2.md): bytes outside 0x20..0x7e and '%'. */
static size_t pct_encode(const char *m, char *out, size_t room)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)m; *p && n + 4 < room; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = 0;
    return n;
}

/* The status as trailers (after data) or as a Trailers-Only response (nothing sent yet). */
static int submit_status(struct grpc_call *call, bool trailers_only)
{
    char code[12], msg[1024];
    int cl = snprintf(code, sizeof(code), "%d", call->status);
    size_t ml = pct_encode(call->message ? call->message : "", msg, sizeof(msg));
    nghttp2_nv nv[4];
    size_t n = 0;
    if (trailers_only) {
        nv[n++] = NV(":status", "200", 3);
        nv[n++] = NV("content-type", "application/grpc", 16);
    }
    nv[n++] = NV("grpc-status", code, (size_t)cl);
    if (ml)
        nv[n++] = NV("grpc-message", msg, ml);
    if (trailers_only)
        return nghttp2_submit_response(call->conn->h2, call->stream_id, nv, n, NULL);
    return nghttp2_submit_trailer(call->conn->h2, call->stream_id, nv, n);
}

static bool send_headers(struct grpc_call *call)
{
    if (call->headers_sent)
        return true;
    nghttp2_nv nv[2] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16)};
    nghttp2_data_provider dp = {.source.ptr = call, .read_callback = data_read};
    if (nghttp2_submit_response(call->conn->h2, call->stream_id, nv, 2, &dp) != 0)
        return false;
    call->headers_sent = true;
    return true;
}

static ssize_t data_read(nghttp2_session *s, int32_t stream_id, uint8_t *dst, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct grpc_call *call = src->ptr;
    (void)s, (void)stream_id, (void)user;
    size_t left = call->out.len - call->out_off;
    if (left) {
        size_t n = left < length ? left : length;
        memcpy(dst, call->out.p + call->out_off, n);
        call->out_off += n;
        if (call->unconsumed && left - n < CALL_HOLD / 4 && call->backlog < CALL_BACKLOG / 4)
            call->conn->credit_due = true; /* given back after nghttp2 returns */
        if (call->out_off == call->out.len) {
            call->out.len = call->out_off = 0;
            if (call->out.cap > (64u << 10))
                buf_fini(&call->out);
        }
        return (ssize_t)n;
    }
    if (call->state == GRPC_CALL_OPEN && call->m && call->m->on_drain) {
        /* A server stream makes its next message only now: memory follows the reader. */
        call->m->on_drain(call);
        if (call->out.len > call->out_off)
            return data_read(s, stream_id, dst, length, flags, src, user);
    }
    if (call->state == GRPC_CALL_FINISHED) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (submit_status(call, false) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    call->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

static void resume(struct grpc_call *call)
{
    if (call->deferred) {
        call->deferred = false;
        nghttp2_session_resume_data(call->conn->h2, call->stream_id);
    }
}

/* After appending a message to call->out: false, and the call finished, if memory ran out. */
static bool queued(struct grpc_call *call)
{
    if (!buf_failed(&call->out))
        return true;
    buf_fini(&call->out);
    call->out_off = 0;
    grpc_call_finish(call, MS_GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
    return false;
}

bool grpc_call_queue(struct grpc_call *call, const ProtobufCMessage *m)
{
    if (call->state != GRPC_CALL_OPEN)
        return false;
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_frame_prefix(&call->out, n);
    if (buf_reserve(&call->out, n)) {
        protobuf_c_message_pack(m, call->out.p + call->out.len);
        call->out.len += n;
    }
    if (!queued(call))
        return false;
    count(call, SRV_RPC_SENT, 0);
    return true;
}

void grpc_call_set_backlog(struct grpc_call *call, size_t bytes)
{
    call->backlog = bytes;
    if (call->unconsumed && bytes < CALL_BACKLOG / 4 && grpc_call_pending(call) < CALL_HOLD / 4) {
        call->conn->credit_due = true;
        conn_flush_later(call->conn);
    }
}

bool grpc_call_queue_parts(struct grpc_call *call, const struct grpc_part *parts, size_t n)
{
    if (call->state != GRPC_CALL_OPEN)
        return false;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += parts[i].len;
    grpc_frame_prefix(&call->out, len);
    for (size_t i = 0; i < n; i++)
        buf_append(&call->out, parts[i].p, parts[i].len);
    if (!queued(call))
        return false;
    count(call, SRV_RPC_SENT, 0);
    return true;
}

bool grpc_call_send(struct grpc_call *call, const ProtobufCMessage *m)
{
    if (!grpc_call_queue(call, m))
        return false;
    grpc_call_start_stream(call);
    return call->state == GRPC_CALL_OPEN;
}

void grpc_call_start_stream(struct grpc_call *call)
{
    if (call->state != GRPC_CALL_OPEN)
        return;
    if (!send_headers(call)) {
        grpc_call_finish(call, MS_GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
        return;
    }
    resume(call);
    conn_flush_later(call->conn);
}

void grpc_call_finish(struct grpc_call *call, enum ms_grpc_code code, const char *message)
{
    if (call->state != GRPC_CALL_OPEN)
        return;
    call->state = GRPC_CALL_FINISHED;
    call->status = (int)code;
    count(call, SRV_RPC_HANDLED, (int)code);
    call->message = message && *message ? strdup(message) : NULL;
    if (call->deadline)
        event_del(call->deadline);
    struct grpc_conn *c = call->conn;
    if (!call->headers_sent) {
        if (submit_status(call, true) != 0)
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
    } else {
        resume(call);
    }
    conn_flush_later(c);
}

void grpc_call_reply(struct grpc_call *call, const ProtobufCMessage *m)
{
    /* headers, message and trailers leave in one write */
    if (!grpc_call_queue(call, m))
        return;
    if (!send_headers(call)) {
        grpc_call_finish(call, MS_GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
        return;
    }
    grpc_call_finish(call, MS_GRPC_OK, NULL);
}

Etcdserverpb__ResponseHeader *grpc_done_header(struct grpc_call *call, ms_err err,
                                               const struct srv_result *res)
{
    call->srv_id = 0;
    if (err) {
        grpc_call_fail(call, err, NULL);
        return NULL;
    }
    Etcdserverpb__ResponseHeader *h = grpc_header(call, res->revision, true);
    if (!h)
        grpc_call_fail(call, MS_E_NOMEM, NULL);
    return h;
}

void grpc_call_fail(struct grpc_call *call, ms_err e, const char *msg)
{
    grpc_call_finish(call, ms_err_grpc(e), msg ? msg : ms_err_msg(e));
}

/* The call's caller: the user its token names, else (--client-cert-auth) its connection's
 * verified certificate's CN, else nobody (etcd's AuthInfoFromCtx). */
ms_err grpc_call_caller(struct grpc_call *call, struct auth_caller *out)
{
    struct grpc_conn *c = call->conn;
    if (call->token)
        return srv_auth_user(c->g->srv, (const uint8_t *)call->token, call->token_len, out);
    if (c->cn)
        srv_auth_cert_user(c->g->srv, (const uint8_t *)c->cn, strlen(c->cn), out);
    return MS_OK;
}

ms_err grpc_call_auth(struct grpc_call *call, bool admin)
{
    struct auth_caller caller = {false, {NULL, 0}, 0};
    ms_err e = grpc_call_caller(call, &caller);
    if (!e && admin)
        e = srv_auth_admin(call->conn->g->srv, &caller);
    return e;
}

bool grpc_call_maint_auth(struct grpc_call *call, bool admin)
{
    ms_err e = grpc_call_auth(call, admin);
    if (e == MS_OK)
        return true;
    grpc_call_fail(call, srv_auth_raw_err(e), NULL);
    return false;
}

void grpc_call_submit(struct grpc_call *call, srv_done_fn done)
{
    struct srv *srv = call->conn->g->srv;
    struct auth_caller caller = {false, {NULL, 0}, 0};
    ms_err e = MS_OK;
    /* etcd's permission checks, as on the gateway (keepalive and time-to-live look at none);
     * an auth request carries its caller, whose rights are checked when it applies. */
    if (call->sreq.type != SRV_REQ_LEASE_TTL && call->sreq.type != SRV_REQ_LEASE_KEEPALIVE) {
        e = grpc_call_caller(call, &caller);
        if (!e && call->sreq.type == SRV_REQ_AUTH) {
            /* the name is the store's until the next change: keep a copy */
            const uint8_t *who =
                caller.has_user
                    ? arena_memdup(call->a, caller.user.p, caller.user.len ? caller.user.len : 1)
                    : NULL;
            if (caller.has_user && !who)
                e = MS_E_NOMEM;
            call->sreq.u.auth.has_who = caller.has_user;
            call->sreq.u.auth.who = (struct auth_bytes){who, caller.user.len};
        } else if (!e) {
            e = srv_auth_check(srv, &caller, &call->sreq);
            call->sreq.checked = true; /* and again when it applies */
            call->sreq.caller = caller;
        }
    }
    if (e) {
        grpc_call_fail(call, e, NULL);
        return;
    }
    e = srv_submit(srv, &call->sreq, done, call, &call->srv_id);
    if (e) {
        call->srv_id = 0;
        grpc_call_fail(call, e, NULL);
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct grpc_call *call = arg;
    (void)fd, (void)what;
    if (call->srv_id) {
        srv_cancel(call->conn->g->srv, call->srv_id);
        call->srv_id = 0;
    }
    grpc_call_finish(call, MS_GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
}

/* grpc-timeout: at most 8 digits and a unit (H M S m u n). 0 if absent or malformed. */
static uint64_t parse_timeout(const uint8_t *v, size_t len)
{
    if (len < 2 || len > 9)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    uint64_t ms;
    switch (v[len - 1]) {
    case 'H':
        ms = n * 3600000;
        break;
    case 'M':
        ms = n * 60000;
        break;
    case 'S':
        ms = n * 1000;
        break;
    case 'm':
        ms = n;
        break;
    case 'u':
        ms = n / 1000;
        break;
    case 'n':
        ms = n / 1000000;
        break;
    default:
        return 0;
    }
    return ms ? ms : 1; /* under a millisecond, or zero, has passed already: not "none" */
}

/* The request's headers are complete: find the method, check the call, arm the deadline. */
static void call_begin(struct grpc_call *call)
{
    if (call->bad_method || call->bad_content_type) {
        /* Not gRPC: grpc-go answers 415 (content type) or 405 (method) without gRPC status. */
        nghttp2_nv nv[1] = {NV(":status", call->bad_method ? "405" : "415", 3)};
        call->state = GRPC_CALL_FINISHED;
        nghttp2_submit_response(call->conn->h2, call->stream_id, nv, 1, NULL);
        return;
    }
    size_t pl = strlen(call->path);
    call->m = grpc_method_find(call->path, pl);
    if (!call->m) {
        /* grpc-go's texts (server.go handleStream) */
        char msg[320];
        const char *slash = pl > 1 ? strchr(call->path + 1, '/') : NULL;
        if (call->path[0] != '/' || !slash)
            snprintf(msg, sizeof(msg), "malformed method name: \"%s\"", call->path);
        else if (grpc_service_known(call->path + 1, (size_t)(slash - call->path - 1)))
            snprintf(msg, sizeof(msg), "unknown method %s for service %.*s", slash + 1,
                     (int)(slash - call->path - 1), call->path + 1);
        else
            snprintf(msg, sizeof(msg), "unknown service %.*s", (int)(slash - call->path - 1),
                     call->path + 1);
        grpc_call_finish(call, MS_GRPC_UNIMPLEMENTED, msg);
        return;
    }
    count(call, SRV_RPC_STARTED, 0);
    /* etcd's interceptors (v3rpc/interceptor.go), in their order: a learner serves Status and
     * serializable Ranges only (grpc_kv_range looks at the range), so every stream is refused
     * at its open; metadata hasleader=true is refused at once without a leader, and a stream is
     * ended once the member has had none for a while (grpc.c). */
    if (srv_is_learner(grpc_call_srv(call)) && call->m->on_msg != grpc_maint_status &&
        call->m->on_msg != grpc_kv_range) {
        grpc_call_fail(call, MS_E_LEARNER_RPC, NULL);
        return;
    }
    if (call->require_leader) {
        if (!srv_has_leader(grpc_call_srv(call))) {
            grpc_call_fail(call, MS_E_NO_LEADER, NULL);
            return;
        }
        if (call->m->kind != GRPC_UNARY)
            grpc_leader_watch(call, true);
    }
    if (call->timeout_ms) {
        call->deadline = evtimer_new(call->conn->g->base, on_deadline, call);
        struct timeval tv = {(time_t)(call->timeout_ms / 1000),
                             (suseconds_t)(call->timeout_ms % 1000) * 1000};
        if (!call->deadline || evtimer_add(call->deadline, &tv) != 0)
            grpc_call_finish(call, MS_GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
    }
}

static void call_data(struct grpc_call *call, const uint8_t *p, size_t len)
{
    struct grpc_conn *c = call->conn;
    size_t max = c->g->max_recv;
    while (len && call->state == GRPC_CALL_OPEN) {
        size_t used;
        size_t cap = call->in.msg.cap;
        enum grpc_deframe r = grpc_deframe(&call->in, p, len, max, &used);
        c->in_held += call->in.msg.cap - cap;
        p += used;
        len -= used;
        if (r == GRPC_DEFRAME_MORE)
            return;
        if (r == GRPC_DEFRAME_TOO_LARGE) {
            char msg[128];
            snprintf(msg, sizeof(msg), "grpc: received message larger than max (%zu vs. %zu)",
                     call->in.want, max);
            grpc_call_finish(call, MS_GRPC_RESOURCE_EXHAUSTED, msg);
            return;
        }
        if (r == GRPC_DEFRAME_COMPRESSED) {
            grpc_call_finish(call, MS_GRPC_INTERNAL,
                             "grpc: compressed flag set with identity or empty encoding");
            return;
        }
        call->n_msgs++;
        count(call, SRV_RPC_RECEIVED, 0);
        /* A call that takes one request reads one, as grpc-go's server does: what follows is
         * not read (failing the call would say "failed" of a write that is applied). */
        if (call->m->kind == GRPC_BIDI || call->n_msgs == 1)
            call->m->on_msg(call, call->in.msg.p, call->in.msg.len);
        cap = call->in.msg.cap;
        grpc_deframer_next(&call->in, IN_KEEP);
        c->in_held -= cap - call->in.msg.cap;
    }
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    struct grpc_conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct grpc_call *call = call_create(c, f->hd.stream_id);
    if (!call)
        return nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                         NGHTTP2_REFUSED_STREAM) == 0
                   ? 0
                   : NGHTTP2_ERR_CALLBACK_FAILURE;
    call->bad_content_type = true; /* until one is seen */
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, call);
    return 0;
}

static bool has_prefix(const uint8_t *v, size_t len, const char *p)
{
    size_t n = strlen(p);
    return len >= n && memcmp(v, p, n) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags, (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!call)
        return 0;
    /* nghttp2 does not hold a peer to the header list size we announce, and HPACK lets a few
     * bytes on the wire name a large header again and again: past the limit the stream is
     * reset, as grpc-go does. */
    call->header_bytes += namelen + valuelen + 32;
    if (call->header_bytes > GRPC_MAX_HEADER_LIST)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        size_t n = valuelen < sizeof(call->path) - 1 ? valuelen : sizeof(call->path) - 1;
        memcpy(call->path, value, n);
        call->path[n] = 0;
    } else if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        call->bad_method = !(valuelen == 4 && memcmp(value, "POST", 4) == 0);
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        /* "application/grpc", optionally followed by "+proto" or ";..." */
        call->bad_content_type = !has_prefix(value, valuelen, "application/grpc") ||
                                 (valuelen > 16 && value[16] != '+' && value[16] != ';');
    } else if (namelen == 9 && memcmp(name, "hasleader", 9) == 0) {
        call->require_leader = valuelen == 4 && memcmp(value, "true", 4) == 0;
    } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        call->timeout_ms = parse_timeout(value, valuelen);
    } else if ((namelen == 5 && memcmp(name, "token", 5) == 0) ||
               (namelen == 13 && memcmp(name, "authorization", 13) == 0 && !call->token_md)) {
        /* etcd reads the token from metadata "token", else "authorization". The last one sent
         * counts. */
        char *t = malloc(valuelen + 1);
        if (t) {
            memcpy(t, value, valuelen);
            t[valuelen] = 0;
            free(call->token);
            call->token = t;
            call->token_len = valuelen;
            call->token_md = namelen == 5;
        }
    }
    return 0;
}

/* A client's PING, judged as grpc-go's server does (http2_server.go handlePing): closer to the
 * one before than --grpc-keepalive-min-time while calls are open, or than 2 hours while none
 * is (etcd does not permit pings without streams), is a strike, unless we sent HEADERS or DATA
 * since; past two strikes the connection ends with GOAWAY ENHANCE_YOUR_CALM "too_many_pings". */
static void client_ping(struct grpc_conn *c)
{
    uint64_t now = clock_now_ms(), last = c->last_ping_rx_ms;
    c->last_ping_rx_ms = now;
    if (c->reset_strikes) {
        c->reset_strikes = false;
        c->ping_strikes = 0;
        return;
    }
    uint64_t min = c->n_calls ? c->g->ka_min_ms : PING_IDLE_MS;
    if (last && now - last < min)
        c->ping_strikes++;
    if (c->ping_strikes > MAX_STRIKES && !c->goaway_close) {
        static const char why[] = "too_many_pings";
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2),
                              NGHTTP2_ENHANCE_YOUR_CALM, (const uint8_t *)why, sizeof(why) - 1);
        c->goaway_close = true;
    }
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        client_ping(user);
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!call)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        call_begin(call);
    if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    call->half_closed = true;
    if (call->state != GRPC_CALL_OPEN)
        return 0;
    /* A message cut short, or none where one is due: grpc-go's server reads io.ErrUnexpectedEOF
     * or io.EOF and answers them with code Unknown and their text, as etcd does. */
    bool cut = call->in.hdr_len &&
               (call->in.hdr_len < sizeof(call->in.hdr) || call->in.msg.len < call->in.want);
    if (cut) {
        grpc_call_finish(call, MS_GRPC_UNKNOWN, "unexpected EOF");
    } else if (call->m->kind != GRPC_BIDI && call->n_msgs == 0) {
        grpc_call_finish(call, MS_GRPC_UNKNOWN, "EOF");
    } else if (call->m->on_end) {
        call->m->on_end(call);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags, (void)user;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
    if (call && call->state == GRPC_CALL_OPEN && call->m)
        call_data(call, data, len);
    /* The connection's window is credited at once (the calls' deframers are bounded by
     * IN_HIGH); the stream's only while its call's output is low. */
    nghttp2_session_consume_connection(s, len);
    call = nghttp2_session_get_stream_user_data(s, stream_id); /* the call may have ended */
    if (call && (grpc_call_pending(call) >= CALL_HOLD || call->backlog >= CALL_BACKLOG))
        call->unconsumed += len;
    else
        nghttp2_session_consume_stream(s, stream_id, len);
    return 0;
}

/* Credit back the request bytes of calls whose output went low again. */
static void give_credit(struct grpc_conn *c)
{
    c->credit_due = false;
    for (struct grpc_call *call = c->calls; call; call = call->next) {
        if (call->unconsumed && grpc_call_pending(call) < CALL_HOLD / 4 &&
            call->backlog < CALL_BACKLOG / 4) {
            nghttp2_session_consume_stream(c->h2, call->stream_id, call->unconsumed);
            call->unconsumed = 0;
        }
    }
}

/* The status went out while the client may still send: reset its side (NO_ERROR), so the
 * stream and its call end now (grpc-go does the same once a handler returns). */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    if (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA)
        ((struct grpc_conn *)user)->reset_strikes = true;
    if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (call && !call->half_closed)
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t code, void *user)
{
    (void)code, (void)user;
    struct grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
    if (call) {
        nghttp2_session_set_stream_user_data(s, stream_id, NULL);
        call_free(call);
    }
    return 0;
}

/* ---- the socket ---- */

static size_t pending(const struct grpc_conn *c)
{
    return c->out.len - c->out_off;
}

/* TLS holds decrypted input the socket will not signal: read it from the loop. */
static void tls_rearm(struct grpc_conn *c)
{
    if (c->tls && c->rd_on && tls_pending(c->tls))
        event_active(c->rd, EV_READ, 1);
}

/* What a connection's partial request messages may hold before reading pauses: IN_HIGH, and
 * at least twice the largest message, so that one of them can always complete. Each message
 * holds only its own size (reserved exactly), and only until it is handed out. */
static size_t in_high(const struct grpc *g)
{
    return 2 * g->max_recv > IN_HIGH ? 2 * g->max_recv : IN_HIGH;
}

static void read_update(struct grpc_conn *c)
{
    bool want = !c->dead && pending(c) < OUT_HIGH && c->in_held < in_high(c->g);
    if (want == c->rd_on)
        return;
    if (want)
        event_add(c->rd, NULL);
    else
        event_del(c->rd);
    c->rd_on = want;
    tls_rearm(c);
}

static void conn_flush(struct grpc_conn *c)
{
    if (c->in_recv || c->in_send || c->dead)
        return;
    for (;;) {
        if (c->credit_due)
            give_credit(c);
        while (pending(c) < OUT_HIGH) {
            const uint8_t *data;
            c->in_send = true;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            c->in_send = false;
            if (n < 0) {
                grpc_conn_kill(c);
                return;
            }
            if (n == 0)
                break;
            if (c->out_off && c->out_off == c->out.len)
                c->out.len = c->out_off = 0;
            buf_append(&c->out, data, (size_t)n);
        }
        if (buf_failed(&c->out)) {
            grpc_conn_kill(c);
            return;
        }
        if (!pending(c) && c->credit_due)
            continue; /* the WINDOW_UPDATEs go out now */
        if (!pending(c))
            break;
        ssize_t w = c->tls ? tls_write(c->tls, c->out.p + c->out_off, pending(c))
                           : write(c->fd, c->out.p + c->out_off, pending(c));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0) {
            grpc_conn_kill(c);
            return;
        }
        c->out_off += (size_t)w;
        if (c->out_off == c->out.len) {
            c->out.len = c->out_off = 0;
            if (c->out.cap > (256u << 10))
                buf_fini(&c->out);
        }
    }
    bool want_wr = pending(c) > 0;
    if (want_wr != c->wr_on) {
        if (want_wr)
            event_add(c->wr, NULL);
        else
            event_del(c->wr);
        c->wr_on = want_wr;
    }
    if (!pending(c) && !nghttp2_session_want_write(c->h2) &&
        (c->goaway_close || !nghttp2_session_want_read(c->h2))) {
        grpc_conn_kill(c); /* GOAWAY exchanged, or a fatal protocol error answered */
        return;
    }
    read_update(c);
}

bool grpc_conn_feed(struct grpc_conn *c, const uint8_t *p, size_t len)
{
    c->in_recv = true;
    ssize_t n = nghttp2_session_mem_recv(c->h2, p, len);
    c->in_recv = false;
    if (n < 0) {
        /* nghttp2 has queued a GOAWAY for most protocol errors: send it, then close. */
        log_debug("grpc: closing a connection: %s", nghttp2_strerror((int)n));
        conn_flush(c);
        grpc_conn_kill(c);
        return false;
    }
    conn_flush(c);
    return !c->dead;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct grpc_conn *c = arg;
    uint8_t b[READ_CHUNK];
    (void)what;
    ssize_t n = c->tls ? tls_read(c->tls, b, sizeof(b)) : read(fd, b, sizeof(b));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        grpc_conn_kill(c);
        return;
    }
    c->last_rx_ms = clock_now_ms();
    if (grpc_conn_feed(c, b, (size_t)n))
        tls_rearm(c);
}

static void ka_arm(struct grpc_conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->ka, &tv);
}

/* The server's keepalive (grpc-go's keepalive.ServerParameters Time and Timeout): after
 * --grpc-keepalive-interval without a byte from the client, a PING; if nothing at all arrives
 * within --grpc-keepalive-timeout after it, the connection is closed. */
static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct grpc_conn *c = arg;
    struct grpc *g = c->g;
    (void)fd, (void)what;
    uint64_t now = clock_now_ms();
    if (c->ping_out) {
        if (c->last_rx_ms >= c->ping_sent_ms) {
            c->ping_out = false;
        } else if (now - c->ping_sent_ms >= g->ka_timeout_ms) {
            log_debug("grpc: closing a connection silent for %llu ms after a ping",
                      (unsigned long long)(now - c->ping_sent_ms));
            grpc_conn_kill(c);
            return;
        } else {
            ka_arm(c, g->ka_timeout_ms - (now - c->ping_sent_ms));
            return;
        }
    }
    uint64_t idle = now - c->last_rx_ms;
    if (idle < g->ka_interval_ms) {
        ka_arm(c, g->ka_interval_ms - idle);
        return;
    }
    nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
    c->ping_out = g->ka_timeout_ms > 0;
    c->ping_sent_ms = now;
    conn_flush(c);
    if (!c->dead)
        ka_arm(c, c->ping_out ? g->ka_timeout_ms : g->ka_interval_ms);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    conn_flush(arg);
}

void grpc_conn_goaway(struct grpc_conn *c)
{
    if (c->dead)
        return;
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
    conn_flush(c);
}

struct grpc_conn *grpc_conn_create(struct grpc *g, int fd, struct tls_conn *tls)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct grpc_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    char cn[256];
    if (tls && srv_cfg(g->srv)->client_tls.client_cert_auth && tls_peer_cn(tls, cn, sizeof(cn)) &&
        !(c->cn = strdup(cn))) {
        free(c);
        return NULL;
    }
    c->g = g;
    c->fd = fd;
    c->tls = tls;
    buf_init(&c->out);
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(c->cn);
        free(c);
        return NULL;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    /* grpc-go takes any :authority: clientv3 dials some endpoints as "passthrough:///http://h:p"
     * and sends "http://h:p", which nghttp2's HTTP checks refuse with a PROTOCOL_ERROR. The
     * checks a gRPC call needs (method, path, content type) are ours, in on_header. */
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(c->cn);
        free(c);
        return NULL;
    }
    nghttp2_option_set_no_http_messaging(opt, 1);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* on_data_chunk credits the windows */
    int rc = nghttp2_session_server_new3(&c->h2, cb, c, opt, &g->h2_mem);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        free(c->cn);
        free(c);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GRPC_MAX_HEADER_LIST},
    };
    c->rd = event_new(g->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wr = event_new(g->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    if (!c->rd || !c->wr ||
        nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0) {
        if (c->rd)
            event_free(c->rd);
        if (c->wr)
            event_free(c->wr);
        nghttp2_session_del(c->h2);
        free(c->cn);
        free(c);
        return NULL;
    }
    c->last_rx_ms = clock_now_ms();
    if (g->ka_interval_ms) {
        c->ka = evtimer_new(g->base, on_keepalive, c);
        if (!c->ka) {
            event_free(c->rd);
            event_free(c->wr);
            nghttp2_session_del(c->h2);
            free(c->cn);
            free(c);
            return NULL;
        }
        ka_arm(c, g->ka_interval_ms);
    }
    c->next = g->conns;
    if (g->conns)
        g->conns->prev = c;
    g->conns = c;
    g->n_conns++;
    return c;
}

void grpc_conn_free(struct grpc_conn *c)
{
    struct grpc *g = c->g;
    if (c->flush_due) {
        struct grpc_conn **pp = &g->due;
        while (*pp != c)
            pp = &(*pp)->due_next;
        *pp = c->due_next;
    }
    while (c->calls)
        call_free(c->calls);
    nghttp2_session_del(c->h2);
    event_free(c->rd);
    event_free(c->wr);
    if (c->ka)
        event_free(c->ka);
    tls_conn_free(c->tls);
    free(c->cn);
    close(c->fd);
    buf_fini(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g->n_conns--;
    free(c);
}
