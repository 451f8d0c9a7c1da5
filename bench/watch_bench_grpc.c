/* watch_bench_grpc.c - watch_bench's gRPC door: the same fan-out through etcd's gRPC API, over
 * HTTP/2 cleartext with prior knowledge (libnghttp2, driven from watch_bench's epoll loop).
 *
 * Watchers: --streams calls of /etcdserverpb.Watch/Watch, spread over --watch-conns HTTP/2
 * connections (one each by default, as a client per watcher would), each sending its share of
 * the --watchers WatchCreateRequests on one key and staying open. Puts: unary
 * /etcdserverpb.KV/Put calls on --conns connections, at most --window streams in flight on each.
 * The messages are encoded and read by hand: only the fields the benchmark needs.
 */
#define _GNU_SOURCE
#include "watch_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metastore/buf.h"

#define STREAM_WINDOW (1 << 20) /* each stream's receive window */
#define CONN_WINDOW   (1 << 24) /* each connection's */

/* One unary Put in flight: its request message and what its answer said. */
struct put {
    bool used;
    uint8_t msg[64]; /* gRPC prefix + PutRequest */
    size_t len;
    size_t off;
    int http_status;
    int grpc_status; /* -1 until the trailers */
    char message[128];
};

/* One HTTP/2 connection, carrying watch streams or puts. */
struct h2 {
    int fd;
    int ep;
    nghttp2_session *s;
    bool putter;
    bool blocked;     /* the last send met a full socket: wait for EPOLLOUT */
    bool pollout;     /* EPOLLOUT is registered */
    struct put *puts; /* putter: --window slots */
    long inflight;
};

/* One Watch call. */
struct wstream {
    struct h2 *h;
    struct buf req; /* the framed WatchCreateRequests */
    size_t req_off;
    struct buf in; /* response bytes not yet read as whole messages */
    long watchers;
    long created;
    long events;
};

static struct h2 *watch_conns, *put_conns;
static struct wstream *streams;
static long n_watch_conns, n_put_conns, n_streams;
static long got_events, got_acks; /* counted by the callbacks, taken by grpc_ready */

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "watch_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* ---- protobuf by hand ---- */

static void pb_bytes(struct buf *b, unsigned field, const void *p, size_t n)
{
    buf_put_uvarint(b, (uint64_t)field << 3 | 2);
    buf_put_lbytes(b, p, n);
}

/* Read one field: its number, and a length-delimited field's bytes (others are skipped). */
static bool pb_field(struct rd *r, unsigned *field, const uint8_t **p, size_t *n, uint64_t *v)
{
    uint64_t tag = rd_uvarint(r);
    *field = (unsigned)(tag >> 3);
    *p = NULL;
    *n = 0;
    *v = 0;
    switch (tag & 7) {
    case 0:
        *v = rd_uvarint(r);
        break;
    case 1:
        rd_bytes(r, 8);
        break;
    case 2:
        *p = rd_lbytes(r, n);
        break;
    case 5:
        rd_bytes(r, 4);
        break;
    default:
        r->err = true;
    }
    return !r->err;
}

/* An Event: the send time in its kv.value. */
static void read_event(const uint8_t *p, size_t n, uint64_t now)
{
    struct rd r, kv;
    unsigned f;
    const uint8_t *q, *val = NULL;
    size_t qn, vn = 0;
    uint64_t v;
    rd_init(&r, p, n);
    while (rd_left(&r) && pb_field(&r, &f, &q, &qn, &v)) {
        if (f != 2 || !q)
            continue;
        rd_init(&kv, q, qn);
        while (rd_left(&kv) && pb_field(&kv, &f, &q, &qn, &v))
            if (f == 5 && q) {
                val = q;
                vn = qn;
            }
    }
    wb_event(now, (const char *)val, val ? vn : 0);
}

/* One WatchResponse: created (3), canceled (4) with its reason (6), events (11). */
static void read_response(struct wstream *w, const uint8_t *p, size_t n, uint64_t now)
{
    struct rd r;
    unsigned f;
    const uint8_t *q;
    size_t qn;
    uint64_t v;
    bool canceled = false;
    char reason[160] = "";
    rd_init(&r, p, n);
    while (rd_left(&r) && pb_field(&r, &f, &q, &qn, &v)) {
        if (f == 3 && v)
            w->created++;
        else if (f == 4 && v)
            canceled = true;
        else if (f == 6 && q)
            snprintf(reason, sizeof(reason), "%.*s", (int)qn, (const char *)q);
        else if (f == 11 && q) {
            read_event(q, qn, now);
            w->events++;
            got_events++;
        }
    }
    if (r.err)
        fail("a WatchResponse that does not parse", NULL);
    if (canceled)
        fail("watch canceled", reason);
}

/* The whole gRPC messages in w->in. */
static void read_messages(struct wstream *w)
{
    uint64_t now = wb_now_ns();
    size_t off = 0;
    while (w->in.len - off >= 5) {
        uint32_t len = be32_get(w->in.p + off + 1);
        if (w->in.p[off])
            fail("a compressed message", NULL);
        if (w->in.len - off - 5 < len)
            break;
        read_response(w, w->in.p + off + 5, len, now);
        off += 5 + (size_t)len;
    }
    memmove(w->in.p, w->in.p + off, w->in.len - off);
    w->in.len -= off;
}

/* ---- nghttp2 callbacks ---- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *p, size_t n, int flags, void *user)
{
    (void)s, (void)flags;
    struct h2 *h = user;
    ssize_t w = send(h->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
        h->blocked = true;
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    return w < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : w;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
    (void)flags;
    struct h2 *h = user;
    if (!h->putter) {
        if (nl == 11 && !memcmp(name, "grpc-status", 11) && strcmp((const char *)value, "0"))
            fail("the watch call ended with grpc-status", (const char *)value);
        return 0;
    }
    struct put *p = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!p)
        return 0;
    if (nl == 7 && !memcmp(name, ":status", 7))
        p->http_status = atoi((const char *)value);
    else if (nl == 11 && !memcmp(name, "grpc-status", 11))
        p->grpc_status = atoi((const char *)value);
    else if (nl == 12 && !memcmp(name, "grpc-message", 12))
        snprintf(p->message, sizeof(p->message), "%.*s", (int)vl, (const char *)value);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
                   void *user)
{
    (void)flags;
    struct h2 *h = user;
    if (h->putter)
        return 0; /* a PutResponse: its trailers say whether it worked */
    struct wstream *w = nghttp2_session_get_stream_user_data(s, id);
    if (!w)
        return 0;
    buf_append(&w->in, p, n);
    if (buf_failed(&w->in))
        fail("out of memory", NULL);
    read_messages(w);
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    struct h2 *h = user;
    if (!h->putter)
        fail("the server closed a watch stream", nghttp2_http2_strerror(code));
    struct put *p = nghttp2_session_get_stream_user_data(s, id);
    if (!p)
        return 0;
    if (code || p->http_status != 200 || p->grpc_status != 0) {
        fprintf(stderr,
                "watch_bench: put failed: HTTP/2 error %u, :status %d, grpc-status %d (%s)\n", code,
                p->http_status, p->grpc_status, p->message);
        exit(1);
    }
    p->used = false;
    h->inflight--;
    got_acks++;
    return 0;
}

static ssize_t read_body(uint8_t *dst, size_t len, uint32_t *flags, const uint8_t *src, size_t *off,
                         size_t total, bool keep_open)
{
    size_t n = total - *off < len ? total - *off : len;
    if (!n && keep_open)
        return NGHTTP2_ERR_DEFERRED;
    memcpy(dst, src + *off, n);
    *off += n;
    if (*off == total && !keep_open)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static ssize_t watch_body(nghttp2_session *s, int32_t id, uint8_t *dst, size_t len, uint32_t *flags,
                          nghttp2_data_source *src, void *user)
{
    (void)s, (void)id, (void)user;
    struct wstream *w = src->ptr;
    return read_body(dst, len, flags, w->req.p, &w->req_off, w->req.len, true);
}

static ssize_t put_body(nghttp2_session *s, int32_t id, uint8_t *dst, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)s, (void)id, (void)user;
    struct put *p = src->ptr;
    return read_body(dst, len, flags, p->msg, &p->off, p->len, false);
}

/* ---- connections ---- */

static void h2_open(struct h2 *h, const struct wb_opts *o, int ep, bool putter)
{
    h->fd = wb_dial(o);
    h->ep = ep;
    h->putter = putter;
    if (fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK) != 0)
        wb_die("fcntl");
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        fail("nghttp2_session_callbacks_new", NULL);
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rv = nghttp2_session_client_new(&h->s, cb, h);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        fail("nghttp2_session_client_new", nghttp2_strerror(rv));
    nghttp2_settings_entry set[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW}};
    nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, set, 2);
    nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = h};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &ev) != 0)
        wb_die("epoll_ctl");
    if (putter) {
        h->puts = calloc((size_t)o->window, sizeof(*h->puts));
        if (!h->puts)
            wb_die("calloc");
    }
}

/* Send what the session has; what the socket does not take waits for EPOLLOUT. */
static void h2_flush(struct h2 *h)
{
    h->blocked = false;
    int rv = nghttp2_session_send(h->s);
    if (rv != 0)
        fail("HTTP/2 send", nghttp2_strerror(rv));
    if (h->blocked != h->pollout) {
        struct epoll_event ev = {.events = EPOLLIN | (h->blocked ? EPOLLOUT : 0u), .data.ptr = h};
        if (epoll_ctl(h->ep, EPOLL_CTL_MOD, h->fd, &ev) != 0)
            wb_die("epoll_ctl");
        h->pollout = h->blocked;
    }
}

static int32_t submit(struct h2 *h, const char *path, nghttp2_data_provider *dp, void *data)
{
#define NV(a, b) {(uint8_t *)(a), (uint8_t *)(b), sizeof(a) - 1, strlen(b), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[] = {NV(":method", "POST"),
                       NV(":scheme", "http"),
                       NV(":path", path),
                       NV(":authority", "bench"),
                       NV("content-type", "application/grpc"),
                       NV("te", "trailers")};
#undef NV
    int32_t id = nghttp2_submit_request(h->s, NULL, nv, sizeof(nv) / sizeof(nv[0]), dp, data);
    if (id < 0)
        fail("nghttp2_submit_request", nghttp2_strerror(id));
    return id;
}

static void take_input(void *arg, const uint8_t *p, size_t n)
{
    struct h2 *h = arg;
    ssize_t rv = nghttp2_session_mem_recv(h->s, p, n);
    if (rv < 0)
        fail("HTTP/2 receive", nghttp2_strerror((int)rv));
}

static bool h2_read(struct h2 *h)
{
    if (!wb_read(h->fd, take_input, h))
        return false;
    h2_flush(h); /* SETTINGS and PING acks, WINDOW_UPDATEs */
    return true;
}

static bool grpc_ready(void *conn, uint32_t epoll_events, long *events, long *acks)
{
    struct h2 *h = conn;
    if (epoll_events & EPOLLOUT)
        h2_flush(h);
    bool open = !(epoll_events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || h2_read(h);
    *events += got_events;
    *acks += got_acks;
    got_events = got_acks = 0;
    return open;
}

/* Open the connections in batches (a burst of connects would overflow the listen backlog);
 * stream i goes on connection i % watch_conns. Waits until every watcher is created. */
static void grpc_open_watchers(const struct wb_opts *o, int ep, uint64_t deadline)
{
    n_watch_conns = o->watch_conns;
    n_streams = o->streams;
    watch_conns = calloc((size_t)n_watch_conns, sizeof(*watch_conns));
    streams = calloc((size_t)n_streams, sizeof(*streams));
    if (!watch_conns || !streams)
        wb_die("calloc");
    uint8_t create[64];
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, WB_KEY, strlen(WB_KEY)); /* WatchCreateRequest.key */
    struct buf wr;
    buf_init(&wr);
    pb_bytes(&wr, 1, m.p, m.len); /* WatchRequest.create_request */
    create[0] = 0;
    be32_put(create + 1, (uint32_t)wr.len);
    memcpy(create + 5, wr.p, wr.len);
    size_t create_len = 5 + wr.len;
    buf_fini(&m);
    buf_fini(&wr);
    struct epoll_event evs[256];
    long events = 0, acks = 0;
    for (long base = 0; base < n_watch_conns; base += 200) {
        long end = base + 200 < n_watch_conns ? base + 200 : n_watch_conns;
        for (long c = base; c < end; c++)
            h2_open(&watch_conns[c], o, ep, false);
        for (long c = 0; c < n_streams; c++) {
            if (c % n_watch_conns < base || c % n_watch_conns >= end)
                continue;
            struct wstream *w = &streams[c];
            w->h = &watch_conns[c % n_watch_conns];
            w->watchers = o->watchers / o->streams + (c < o->watchers % o->streams);
            buf_init(&w->req);
            buf_init(&w->in);
            for (long k = 0; k < w->watchers; k++)
                buf_append(&w->req, create, create_len);
            if (buf_failed(&w->req))
                fail("out of memory", NULL);
            nghttp2_data_provider dp = {.source.ptr = w, .read_callback = watch_body};
            submit(w->h, "/etcdserverpb.Watch/Watch", &dp, w);
        }
        for (long c = base; c < end; c++)
            h2_flush(&watch_conns[c]);
        for (long c = 0; c < n_streams; c++)
            while (c % n_watch_conns >= base && c % n_watch_conns < end &&
                   streams[c].created < streams[c].watchers) {
                if (wb_now_ns() > deadline)
                    fail("watchers not created in time", NULL);
                int n = epoll_wait(ep, evs, 256, 50);
                for (int k = 0; k < n; k++)
                    if (!grpc_ready(evs[k].data.ptr, evs[k].events, &events, &acks))
                        fail("connection closed during create", NULL);
            }
    }
}

static void grpc_open_putters(const struct wb_opts *o, int ep)
{
    n_put_conns = o->conns;
    put_conns = calloc((size_t)n_put_conns, sizeof(*put_conns));
    if (!put_conns)
        wb_die("calloc");
    for (long i = 0; i < n_put_conns; i++)
        h2_open(&put_conns[i], o, ep, true);
}

static long grpc_put(const struct wb_opts *o, long i, long max)
{
    struct h2 *h = &put_conns[i];
    long n = 0;
    for (long k = 0; k < o->window && h->inflight < o->window && n < max; k++) {
        struct put *p = &h->puts[k];
        if (p->used)
            continue;
        char ts[24];
        int tn = snprintf(ts, sizeof(ts), "%" PRIu64, wb_now_ns());
        struct buf m;
        buf_init(&m);
        pb_bytes(&m, 1, WB_KEY, strlen(WB_KEY)); /* PutRequest.key */
        pb_bytes(&m, 2, ts, (size_t)tn);         /* PutRequest.value */
        *p = (struct put){.used = true, .len = 5 + m.len, .grpc_status = -1};
        be32_put(p->msg + 1, (uint32_t)m.len);
        memcpy(p->msg + 5, m.p, m.len);
        buf_fini(&m);
        nghttp2_data_provider dp = {.source.ptr = p, .read_callback = put_body};
        submit(h, "/etcdserverpb.KV/Put", &dp, p);
        h->inflight++;
        n++;
    }
    h2_flush(h);
    return n;
}

static void h2_close(struct h2 *h)
{
    nghttp2_session_del(h->s);
    close(h->fd);
    free(h->puts);
}

static bool grpc_finish(const struct wb_opts *o)
{
    bool ok = true;
    for (long i = 0; i < n_streams; i++) {
        struct wstream *w = &streams[i];
        if (ok && w->events != w->watchers * o->puts) {
            fprintf(stderr, "watch_bench: stream %ld got %ld events, want %ld\n", i, w->events,
                    w->watchers * o->puts);
            ok = false;
        }
    }
    /* The sessions go first: they may still hold a stream's user data. */
    for (long i = 0; i < n_watch_conns; i++)
        h2_close(&watch_conns[i]);
    for (long i = 0; i < n_put_conns; i++)
        h2_close(&put_conns[i]);
    for (long i = 0; i < n_streams; i++) {
        buf_fini(&streams[i].req);
        buf_fini(&streams[i].in);
    }
    free(streams);
    free(watch_conns);
    free(put_conns);
    return ok;
}

const struct wb_door wb_grpc = {
    .open_watchers = grpc_open_watchers,
    .open_putters = grpc_open_putters,
    .put = grpc_put,
    .ready = grpc_ready,
    .finish = grpc_finish,
};
