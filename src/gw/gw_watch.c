/* gw_watch.c - POST /v3/watch: the etcd watch stream over a chunked HTTP response
 * (reference §6), and the watch hub's sink.
 *
 * A request body holds WatchRequest objects back to back. The HTTP layer hands us the whole
 * body, so every message is handled at once (etcd also holds its answers until the body is
 * complete); a decoding error on the first message is a 500 with code 2, a later one just ends the
 * request side. The response starts with the first WatchResponse and never ends by itself:
 * the stream lives until the client goes away, then every watcher of it is freed at once.
 *
 * Memory is bounded by the server's one policy for every front door (srv.h): the HTTP layer
 * reports every change of a stream's pending output, which we pass on (srv_watch_set_buffered),
 * and events go out only when srv_watch_try says so (the stream under its limit, the
 * server-wide budget has room); refused ones make the watchers victims, and the server wakes
 * the stream once its output drained or the budget fits it. An events array is encoded once
 * per batch and cache slot and copied into each stream's output.
 *
 * After the body, the connection reads only to notice the client closing (the HTTP layer then
 * calls our close callback); bytes the client sends meanwhile are dropped. Nothing touches the
 * HTTP request once its connection closed.
 *
 * All of this state is struct gw_watch, created with the gateway and touched by this file
 * alone; a stream outlives the gw_req that opened it (gw_abandon frees that once the body is
 * handled).
 */
#include "codec.h"
#include "gw_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define CHUNK_FRAMING 20          /* "%zx\r\n" before a chunk and "\r\n" after it */
#define FLUSH_TURN    (16u << 20) /* output one flush event offers the sockets in a loop turn */
#define FLUSH_STREAM  (2u << 20)  /* what one stream counts for at most (a socket takes less) */

/* An encoded events tail shared by the streams of one batch. */
struct gw_blob {
    size_t refs;
    size_t len;
    char data[];
};

/* The watch side of the gateway (gw->watch). */
struct gw_watch {
    struct srv *srv;
    size_t grpc_max;                 /* etcd's gRPC message limit: fragments stay under it */
    struct gw_watch_stream *streams; /* doubly linked */
    size_t stream_limit;             /* output bytes before a stream's body waits */
    size_t stream_low;               /* ... and the level under which it goes on */
    struct buf ebuf;                 /* encoding scratch (events, control tails) */
    struct buf hdr;                  /* {"result":{"header":{...} for hdr_rev / hdr_term */
    int64_t hdr_rev;
    uint64_t hdr_term;
    struct event *retry_ev;        /* paused bodies and streams blocked by OOM */
    struct event *flush_ev;        /* writes the dirty streams after the loop turn's callbacks */
    struct gw_watch_stream *dirty; /* streams with output to flush, by dprev/dnext */
    struct event *leader_ev;       /* checks the leader while streams require one */
    size_t n_require_leader;
    uint64_t leaderless_max_ms; /* a stream that requires a leader ends after this without */
};

/* One watch stream: a POST /v3/watch whose chunked response stays open. */
struct gw_watch_stream {
    struct gw_watch *w;
    struct http_request *req;
    struct watch_stream *ws;
    bool started; /* the 200 and headers are out */
    bool blocked; /* output refused for want of memory; retried when the output is low */
    bool armed;   /* the body is handled; the stream writes its own output */
    bool dirty;   /* in w->dirty: output to flush after this loop turn's callbacks */
    char *rest;   /* the part of the body not handled yet (output was full), owned */
    size_t rest_len;
    size_t rest_off;
    size_t out; /* pending output as last reported to the hub */
    struct gw_watch_stream *prev;
    struct gw_watch_stream *next;
    struct gw_watch_stream *dprev;
    struct gw_watch_stream *dnext;
    char *token; /* the request's auth token (owned), checked at each create; NULL: none */
    size_t token_len;
    bool require_leader; /* Grpc-Metadata-hasleader: ended when the leader is lost */
    const char *rpc;     /* the gRPC method counted for the stream (the request's) */
    const char *rpc_type;
    int rpc_code; /* how it ends: Canceled (the client left) unless set */
};

/* ---- blobs ---- */

static void blob_unref(struct gw_blob *b)
{
    if (b && --b->refs == 0)
        free(b);
}

static struct gw_blob *blob_from(struct buf *b)
{
    if (buf_failed(b))
        return NULL;
    struct gw_blob *blob = malloc(sizeof(*blob) + b->len);
    if (!blob)
        return NULL;
    blob->refs = 1;
    blob->len = b->len;
    memcpy(blob->data, b->p, b->len);
    return blob;
}

/* ---- output ---- */

static void start_reply(struct gw_watch_stream *st)
{
    gw_http_stream_start(st->req);
    st->started = true;
}

/* Queue one response: a, b, then the blob, in one chunk. */
static bool write_resp(struct gw_watch_stream *st, const void *a, size_t an, const void *b,
                       size_t bn, struct gw_blob *blob)
{
    struct iovec v[3] = {{(void *)a, an}, {(void *)b, bn}, {NULL, 0}};
    if (blob) {
        v[2].iov_base = blob->data;
        v[2].iov_len = blob->len;
    }
    if (!http_stream_queue(st->req, v, 3))
        return false;
    if (st->rpc)
        srv_rpc_count(st->w->srv, st->rpc, st->rpc_type, SRV_RPC_SENT, 0);
    return true;
}

/* {"result":{"header":{...} for revision rev (0: no revision), cached while rev and the term
 * stay. */
static const struct buf *header_for(struct gw_watch *w, int64_t rev, struct srv_header *h)
{
    srv_header(w->srv, h);
    h->revision = rev;
    if (w->hdr.len && w->hdr_rev == rev && w->hdr_term == h->raft_term && !w->hdr.failed)
        return &w->hdr;
    w->hdr.len = 0;
    codec_watch_open(&w->hdr, h, rev != 0);
    w->hdr_rev = rev;
    w->hdr_term = h->raft_term;
    return &w->hdr;
}

/* A response built whole in w->ebuf: header, then what tail writes. */
static bool send_whole(struct gw_watch_stream *st, int64_t rev, const struct buf *tail)
{
    struct srv_header h;
    const struct buf *hdr = header_for(st->w, rev, &h);
    return !buf_failed(tail) && write_resp(st, hdr->p, hdr->len, tail->p, tail->len, NULL);
}

static bool send_ctrl(struct gw_watch_stream *st, const struct watch_resp *r)
{
    struct buf *t = &st->w->ebuf;
    t->len = 0;
    codec_watch_ctrl_tail(t, r);
    return send_whole(st, r->kind == WATCH_RESP_COMPACTED ? 0 : r->revision, t);
}

/* etcd sendFragments: a response of two or more events whose protobuf size reaches the gRPC
 * limit goes out in pieces marked "fragment":true, the last one unmarked; a piece takes events
 * while its size (flag included) stays under the limit, and always at least one. */
static bool send_fragments(struct gw_watch_stream *st, const struct watch_resp *r, size_t base)
{
    const struct kv_event *ev = r->batch->events;
    struct buf *t = &st->w->ebuf;
    size_t i = 0;
    while (i < r->n_idx) {
        size_t size = base, j = i;
        for (; j < r->n_idx; j++) {
            size_t es =
                codec_watch_event_field_size(codec_watch_event_size(&ev[r->idx[j]], r->prev_kv));
            if (j > i && size + es >= st->w->grpc_max)
                break;
            size += es;
        }
        t->len = 0;
        codec_watch_id(t, r->watch_id);
        codec_watch_events_tail(t, ev, r->idx + i, j - i, r->prev_kv, j < r->n_idx);
        if (!send_whole(st, r->revision, t))
            return false;
        i = j;
    }
    return true;
}

/* Does r need fragmenting (etcd: size without the flag >= limit, and two events or more)? */
static bool needs_fragments(const struct gw_watch *w, const struct watch_resp *r,
                            const struct srv_header *h)
{
    if (!r->fragment || r->n_idx < 2)
        return false;
    size_t size = codec_watch_base_size(h, r->watch_id, false);
    for (size_t i = 0; i < r->n_idx && size < w->grpc_max; i++)
        size += codec_watch_event_field_size(
            codec_watch_event_size(&r->batch->events[r->idx[i]], r->prev_kv));
    return size >= w->grpc_max;
}

/* The output of a fragmented response, roughly (its JSON is about 4/3 of the protobuf size,
 * base64): the budget is asked once, before the first piece. */
static size_t fragments_size(const struct watch_resp *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_idx; i++)
        n += codec_watch_event_size(&r->batch->events[r->idx[i]], r->prev_kv);
    return n + n / 2;
}

enum send_result { SEND_OK, SEND_NOMEM, SEND_OVER_BUDGET };

/* May n more bytes of events go out on st? If not, the server makes st wait. */
static bool admitted(struct gw_watch_stream *st, size_t n)
{
    return srv_watch_try(st->w->srv, st->ws, n);
}

/* The hot path: the header (cached per revision), the watcher's id, and the events encoded
 * once per cache slot of the batch. */
static enum send_result send_events(struct gw_watch_stream *st, const struct watch_resp *r)
{
    struct gw_watch *w = st->w;
    struct srv_header h;
    const struct buf *hdr = header_for(w, r->revision, &h);
    if (needs_fragments(w, r, &h)) {
        if (!admitted(st, fragments_size(r)))
            return SEND_OVER_BUDGET;
        return send_fragments(st, r, codec_watch_base_size(&h, r->watch_id, true)) ? SEND_OK
                                                                                   : SEND_NOMEM;
    }
    struct gw_blob *blob = r->batch->cache ? r->batch->cache[r->slot] : NULL;
    bool owned = false;
    if (!blob) {
        w->ebuf.len = 0;
        codec_watch_events_tail(&w->ebuf, r->batch->events, r->idx, r->n_idx, r->prev_kv, false);
        blob = blob_from(&w->ebuf);
        if (blob && r->batch->cache)
            r->batch->cache[r->slot] = blob; /* the batch's reference, dropped by release */
        else
            owned = blob != NULL;
    }
    char wid[48];
    size_t wl = codec_watch_id_text(wid, r->watch_id);
    enum send_result res = SEND_NOMEM;
    if (blob && !admitted(st, hdr->len + wl + blob->len + CHUNK_FRAMING))
        res = SEND_OVER_BUDGET;
    else if (blob && write_resp(st, hdr->p, hdr->len, wid, wl, blob))
        res = SEND_OK;
    if (owned)
        blob_unref(blob);
    return res;
}

/* ---- flushing ----
 *
 * Responses are queued, not written: the streams that got output are written by one event
 * that runs after every callback of this loop turn (after the ready step, so nothing reaches a
 * socket before its batch is committed), one write per stream however many responses it got.
 * What the socket does not take is written by the HTTP layer when it can. One run offers the
 * sockets about FLUSH_TURN bytes, then yields the loop for a turn: a large value fanned out to
 * thousands of streams is gigabytes of copying into the kernel, and other clients must not wait
 * for all of it. */

static void dirty_remove(struct gw_watch_stream *st)
{
    if (!st->dirty)
        return;
    if (st->dprev)
        st->dprev->dnext = st->dnext;
    else
        st->w->dirty = st->dnext;
    if (st->dnext)
        st->dnext->dprev = st->dprev;
    st->dprev = st->dnext = NULL;
    st->dirty = false;
}

static void mark_dirty(struct gw_watch_stream *st)
{
    struct gw_watch *w = st->w;
    if (!st->armed || st->dirty || !w->flush_ev)
        return;
    st->dirty = true;
    st->dprev = NULL;
    st->dnext = w->dirty;
    if (w->dirty)
        w->dirty->dprev = st;
    w->dirty = st;
    event_active(w->flush_ev, EV_TIMEOUT, 1);
}

static void on_watch_flush(evutil_socket_t fd, short what, void *arg)
{
    struct gw_watch *w = arg;
    (void)fd;
    (void)what;
    size_t offered = 0;
    while (w->dirty && offered < FLUSH_TURN) {
        struct gw_watch_stream *st = w->dirty;
        size_t n = http_pending(st->req);
        offered += n < FLUSH_STREAM ? n : FLUSH_STREAM;
        dirty_remove(st);
        http_flush(st->req);
    }
    if (w->dirty) {
        /* A timeout of zero runs after the loop's next poll, so sockets get their turn. */
        static const struct timeval next_turn = {0, 0};
        event_add(w->flush_ev, &next_turn);
    }
}

/* ---- the hub's sink ---- */

static void retry_later(struct gw_watch *w, int ms);
static void block(struct gw_watch_stream *st);

static bool sink_send(void *sink_ctx, void *stream_ctx, const struct watch_resp *r)
{
    struct gw_watch *w = sink_ctx;
    struct gw_watch_stream *st = stream_ctx;
    if (!st->started)
        start_reply(st);
    mark_dirty(st);
    if (r->kind != WATCH_RESP_EVENTS)
        return send_ctrl(st, r);
    switch (send_events(st, r)) {
    case SEND_OK:
        return true;
    case SEND_OVER_BUDGET:
        return false; /* the server wakes the stream */
    case SEND_NOMEM:
        break;
    }
    /* Out of memory: the watcher retries from history, after a drain or a short wait. */
    block(st);
    retry_later(w, 100);
    return false;
}

static void sink_release(void *sink_ctx, void *cached)
{
    (void)sink_ctx;
    blob_unref(cached);
}

static const struct watch_sink GW_WATCH_SINK = {.send = sink_send, .release = sink_release};

/* The HTTP layer: st's pending output changed. May run inside the sink (http_stream_queue),
 * so it only takes note. */
static void on_output(void *arg)
{
    struct gw_watch_stream *st = arg;
    size_t now = http_pending(st->req);
    if (now == st->out)
        return;
    st->out = now;
    srv_watch_set_buffered(st->w->srv, st->ws, now);
}

/* ---- stream life ---- */

static void stream_free(struct gw_watch_stream *st)
{
    struct gw_watch *w = st->w;
    if (st->rpc)
        srv_rpc_count(w->srv, st->rpc, st->rpc_type, SRV_RPC_HANDLED, st->rpc_code);
    if (st->require_leader && --w->n_require_leader == 0)
        evtimer_del(w->leader_ev);
    dirty_remove(st);
    http_set_out_cb(st->req, NULL, NULL);
    srv_watch_close(w->srv, st->ws); /* releases the stream's output from the hub's sum */
    free(st->rest);
    free(st->token);
    if (st->prev)
        st->prev->next = st->next;
    else
        w->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    free(st);
}

/* The connection is going away (client closed, write error or timeout, or shutdown). */
static void on_stream_close(void *arg)
{
    stream_free(arg);
}

static void resume(struct gw_watch_stream *st);

/* The output went under the low mark: watchers blocked by OOM resume, a paused body goes on. Runs
 * from the loop (the HTTP layer defers it), so writing to the stream here is safe. */
static void on_drain(void *arg)
{
    struct gw_watch_stream *st = arg;
    http_set_drain_cb(st->req, 0, NULL, NULL); /* set again below if still needed */
    if (st->blocked) {
        st->blocked = false;
        srv_watch_writable(st->w->srv, st->ws);
    }
    if (st->rest)
        resume(st);
    mark_dirty(st);
}

/* Wait for the output to drain under the low mark (on_drain). */
static void block(struct gw_watch_stream *st)
{
    st->blocked = true;
    if (st->armed)
        http_set_drain_cb(st->req, st->w->stream_low, on_drain, st);
}

static struct gw_watch_stream *stream_create(struct gw_watch *w, struct http_request *req)
{
    struct gw_watch_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->w = w;
    st->req = req;
    st->ws = srv_watch_open(w->srv, &GW_WATCH_SINK, w, st);
    if (!st->ws) {
        free(st);
        return NULL;
    }
    http_set_out_cb(req, on_output, st);
    st->next = w->streams;
    if (st->next)
        st->next->prev = st;
    w->streams = st;
    return st;
}

/* The body is handled: from now on the stream owns the connection's close callback, and the
 * connection reads only to notice the client closing. */
static void stream_arm(struct gw_watch_stream *st)
{
    http_stream_drop_input(st->req);
    http_set_close_cb(st->req, on_stream_close, st);
    st->armed = true;
    if (st->blocked || st->rest)
        http_set_drain_cb(st->req, st->w->stream_low, on_drain, st);
    mark_dirty(st);
}

static void dispatch(struct gw_watch *w, struct gw_watch_stream *st, struct codec_watch_req *m)
{
    const char *refused;
    switch (m->kind) {
    case CODEC_WATCH_CREATE:
        if ((refused = srv_auth_watch(w->srv, (const uint8_t *)st->token, st->token_len, NULL,
                                      &m->create.span)) != NULL)
            srv_watch_refuse(w->srv, st->ws, refused);
        else
            srv_watch_create(w->srv, st->ws, &m->create);
        break;
    case CODEC_WATCH_CANCEL:
        srv_watch_cancel(w->srv, st->ws, m->cancel_id);
        break;
    case CODEC_WATCH_PROGRESS:
        srv_watch_progress(w->srv, st->ws);
        break;
    case CODEC_WATCH_NONE:
        break;
    }
}

enum run_result {
    RUN_DONE,        /* every message handled, or a later one failed to decode */
    RUN_PAUSED,      /* the output is full: the rest waits for it to drain (*off) */
    RUN_FIRST_ERROR, /* the first message failed to decode (d->msg) */
};

/* Handle the messages of body[*off..len). Answers pile up in the stream's output: past the
 * stream limit the rest of the body waits, so a body of cheap requests cannot make the
 * server buffer without bound (etcd gets the same from gRPC flow control). */
static enum run_result run_messages(struct gw_watch_stream *st, struct mjson_dec *d,
                                    const char *body, size_t len, size_t *off, bool first)
{
    for (;;) {
        *off = mjson_skip_ws(body, len, *off);
        if (*off >= len)
            return RUN_DONE;
        if (!first && http_pending(st->req) >= st->w->stream_limit)
            return RUN_PAUSED;
        struct mjson_val v;
        struct codec_watch_req m;
        size_t used = 0;
        if (!mjson_parse_next(d, body + *off, len - *off, &v, &used) || !codec_root_value(d, &v) ||
            codec_decode_watch(d, &v, &m) != MS_OK)
            return first ? RUN_FIRST_ERROR : RUN_DONE; /* etcd closes the request side quietly */
        *off += used;
        first = false;
        dispatch(st->w, st, &m);
    }
}

/* Keep the unhandled rest of a body for later. False on OOM (the rest is dropped, as if the
 * client had stopped sending). */
static bool keep_rest(struct gw_watch_stream *st, const char *p, size_t n)
{
    st->rest = malloc(n);
    if (!st->rest)
        return false;
    memcpy(st->rest, p, n);
    st->rest_len = n;
    st->rest_off = 0;
    return true;
}

/* Continue a paused body. */
static void resume(struct gw_watch_stream *st)
{
    struct arena *a = arena_create(4096);
    if (!a)
        return; /* retried on the next drain */
    struct mjson_dec d;
    mjson_dec_init(&d, a);
    if (run_messages(st, &d, st->rest, st->rest_len, &st->rest_off, false) == RUN_DONE) {
        free(st->rest);
        st->rest = NULL;
        st->rest_len = st->rest_off = 0;
    } else {
        http_set_drain_cb(st->req, st->w->stream_low, on_drain, st);
    }
    arena_destroy(a);
}

/* After an allocation failure: blocked or paused streams whose output is low try again. */
static void on_watch_retry(evutil_socket_t fd, short what, void *arg)
{
    struct gw_watch *w = arg;
    (void)fd;
    (void)what;
    for (struct gw_watch_stream *st = w->streams, *next; st; st = next) {
        next = st->next;
        if (st->armed && (st->blocked || st->rest) && http_pending(st->req) <= w->stream_low)
            on_drain(st);
    }
}

static void retry_later(struct gw_watch *w, int ms)
{
    struct timeval tv = {0, ms * 1000};
    if (w->retry_ev && !evtimer_pending(w->retry_ev, NULL))
        evtimer_add(w->retry_ev, &tv);
}

/* End a stream whose caller required a leader: the error as its last line (etcd's
 * interceptor cancels such streams after 3 election timeouts without a leader). */
static void end_no_leader(struct gw_watch_stream *st)
{
    struct buf b;
    buf_init(&b);
    gw_stream_error_body(&b, MS_E_NO_LEADER, NULL);
    buf_putc(&b, '\n');
    st->rpc_code = (int)ms_err_grpc(MS_E_NO_LEADER);
    if (!st->started)
        start_reply(st);
    struct iovec v = {b.p, b.len};
    if (!buf_failed(&b))
        http_stream_queue(st->req, &v, 1);
    buf_fini(&b);
    struct http_request *req = st->req;
    http_set_close_cb(req, NULL, NULL);
    stream_free(st);
    http_stream_end(req);
}

static void on_leader_check(evutil_socket_t fd, short what, void *arg)
{
    struct gw_watch *w = arg;
    (void)fd;
    (void)what;
    if (srv_leaderless_ms(w->srv) < w->leaderless_max_ms)
        return;
    for (struct gw_watch_stream *st = w->streams, *next; st; st = next) {
        next = st->next;
        if (st->require_leader && st->armed)
            end_no_leader(st);
    }
}

void gw_watch(struct gw_req *r)
{
    struct gw_watch_stream *st = stream_create(r->gw->watch, r->req);
    if (!st) {
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return;
    }
    if (gw_require_leader(r->req)) {
        struct gw_watch *w = st->w;
        st->require_leader = true;
        if (w->n_require_leader++ == 0) {
            uint64_t ms = w->leaderless_max_ms / 6 ? w->leaderless_max_ms / 6 : 1;
            struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
            evtimer_add(w->leader_ev, &tv);
        }
    }
    size_t n;
    const char *tok = http_header(r->req, "Grpc-Metadata-Token", &n);
    if (!tok)
        tok = http_header(r->req, "Authorization", &n);
    if (tok && !(st->token = malloc(n + 1))) {
        stream_free(st);
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return;
    }
    if (tok) {
        memcpy(st->token, tok, n);
        st->token[n] = 0;
        st->token_len = n;
    }
    struct mjson_dec d;
    size_t off = 0;
    mjson_dec_init(&d, r->a);
    switch (run_messages(st, &d, r->body, r->body_len, &off, true)) {
    case RUN_FIRST_ERROR:
        stream_free(st);
        gw_reply_decode_error(r, d.msg);
        return;
    case RUN_PAUSED:
        keep_rest(st, r->body + off, r->body_len - off);
        break;
    case RUN_DONE:
        break;
    }
    /* Even with nothing to answer yet the request stays open, as etcd's does: the stream has
     * taken over the HTTP request, the gw_req is done, and the stream counts the call. */
    st->rpc = r->rpc;
    st->rpc_type = r->rpc_type;
    st->rpc_code = MS_GRPC_CANCELED;
    r->rpc = NULL;
    gw_abandon(r);
    stream_arm(st);
}

/* ---- gateway hooks ---- */

struct gw_watch *gw_watch_create(struct event_base *base, struct srv *srv, size_t grpc_max)
{
    struct gw_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    const struct cfg *cfg = srv_cfg(srv);
    w->srv = srv;
    w->grpc_max = grpc_max;
    w->stream_limit =
        cfg->watch_stream_buffer_bytes ? (size_t)cfg->watch_stream_buffer_bytes : (size_t)1 << 20;
    w->stream_low = w->stream_limit / 4;
    buf_init(&w->ebuf);
    buf_init(&w->hdr);
    w->retry_ev = evtimer_new(base, on_watch_retry, w);
    w->flush_ev = event_new(base, -1, 0, on_watch_flush, w);
    w->leader_ev = event_new(base, -1, EV_PERSIST, on_leader_check, w);
    w->leaderless_max_ms = 3 * cfg->election_ms;
    return w;
}

void gw_watch_destroy(struct gw_watch *w)
{
    if (!w)
        return;
    /* Closing the HTTP server closed the connections and their callbacks freed the streams;
     * any left are freed here. */
    while (w->streams)
        stream_free(w->streams);
    if (w->retry_ev)
        event_free(w->retry_ev);
    if (w->flush_ev)
        event_free(w->flush_ev);
    if (w->leader_ev)
        event_free(w->leader_ev);
    buf_fini(&w->ebuf);
    buf_fini(&w->hdr);
    free(w);
}

void gw_watch_metrics(struct gw_watch *w, struct buf *out)
{
    struct watch_stats ws;
    srv_watch_stats(w->srv, &ws);
    buf_printf(out,
               "# HELP etcd_debugging_mvcc_watch_stream_total Total number of watch "
               "streams.\n"
               "# TYPE etcd_debugging_mvcc_watch_stream_total gauge\n"
               "etcd_debugging_mvcc_watch_stream_total %zu\n"
               "# HELP etcd_debugging_mvcc_watcher_total Total number of watchers.\n"
               "# TYPE etcd_debugging_mvcc_watcher_total gauge\n"
               "etcd_debugging_mvcc_watcher_total %zu\n"
               "# HELP etcd_debugging_mvcc_slow_watcher_total Total number of unsynced "
               "slow watchers.\n"
               "# TYPE etcd_debugging_mvcc_slow_watcher_total gauge\n"
               "etcd_debugging_mvcc_slow_watcher_total %zu\n"
               "# HELP metastore_watch_events_sent_total Events handed to watch "
               "streams.\n"
               "# TYPE metastore_watch_events_sent_total counter\n"
               "metastore_watch_events_sent_total %llu\n"
               "# HELP metastore_watch_victims_total Times a watcher's stream was full "
               "and it fell back to history.\n"
               "# TYPE metastore_watch_victims_total counter\n"
               "metastore_watch_victims_total %llu\n"
               "# HELP metastore_watch_stream_buffered_bytes Bytes waiting in watch "
               "stream output buffers.\n"
               "# TYPE metastore_watch_stream_buffered_bytes gauge\n"
               "metastore_watch_stream_buffered_bytes %zu\n"
               "# HELP metastore_watch_buffer_budget_bytes Budget of output all watch streams "
               "may buffer (--watch-total-buffer-bytes; 0: none).\n"
               "# TYPE metastore_watch_buffer_budget_bytes gauge\n"
               "metastore_watch_buffer_budget_bytes %llu\n",
               ws.streams, ws.watchers, ws.unsynced + ws.victims,
               (unsigned long long)ws.events_sent, (unsigned long long)ws.victimized, ws.buffered,
               (unsigned long long)srv_cfg(w->srv)->watch_total_buffer_bytes);
}
