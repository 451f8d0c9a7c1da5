/* http_client.c - a client connection: connect without blocking, send requests, hand the
 * response over as it arrives.
 *
 * Owns one socket, its read and write events, an input buffer (the response head and chunk
 * framing; body bytes are handed over from it as they come) and an output buffer. As on the
 * server side no callback runs nested in an API call: an error found inside one, and the rest
 * of a paused body, wait for a deferred event. The wire grammar is http_parse.c's (the status
 * line and header fields under the server's field rules; chunks with the same size-line, CRLF
 * and trailer checks), so both sides accept and refuse the same bytes.
 */
#define _GNU_SOURCE
#include "http_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK (16u << 10)
#define LINE_ROOM  8192 /* input room for framing lines (a chunk-size line is at most 4096) */

/* The client's life:
 *
 *   CONNECTING ── connected (TLS: and the handshake done) ── a request queued ──▶ HEAD,
 *                                                             none ──▶ IDLE
 *   IDLE ──────── http_client_request* ───────────▶ HEAD
 *   HEAD ──────── the response head ──────────────▶ BODY (or, with no body, as BODY's end)
 *   BODY ──────── the end: reusable ──────────────▶ IDLE,  not ──▶ DONE
 *   any but DONE ── an error ─────────────────────▶ FAILED
 *
 * DONE and FAILED are closed: the socket is gone and no callback runs again. Not states:
 * busy (a request is in progress: from the request call to its response's end; it may be
 * queued while CONNECTING), body_open (a chunked request body not ended yet), paused (the
 * consumer stopped the body), and the event bookkeeping. */
enum client_state {
    CL_CONNECTING,
    CL_IDLE,
    CL_HEAD,
    CL_BODY,
    CL_DONE,
    CL_FAILED,
};

/* Where a chunked response body is. */
enum chunk_state {
    CH_SIZE,    /* a chunk-size line */
    CH_DATA,    /* chunk data, left bytes of it */
    CH_CRLF,    /* the CRLF after the data */
    CH_TRAILER, /* trailer lines, up to the empty one */
};

struct http_client {
    struct http_client_opts o;
    int fd;
    struct tls_conn *tls; /* with o.tls: created once the TCP connection is up */
    uint64_t hs_deadline; /* the handshake must be done by then (clock_now_ms) */
    char sni[64];         /* the host the server's certificate must name */
    struct event *rd;
    struct event *wr;
    struct event *defer; /* a deferred error, or the rest of a resumed body */
    enum client_state state;
    bool busy;
    bool body_open;
    bool head_req; /* the request in progress is HEAD */
    bool paused;
    bool rd_on;                   /* rd is added ... */
    bool rd_timed;                /* ... with the response timeout */
    bool wr_on;                   /* wr is added (connecting, or output waits) */
    bool drain_due;               /* output waited: on_drain once it is all written */
    bool in_loop;                 /* inside one of our event callbacks */
    bool close_asked;             /* http_client_close inside a callback: free on the way out */
    enum http_client_err err_due; /* 0, or an error for the deferred event to report */
    char host[64];                /* "a.b.c.d:port" or "[v6]:port", the Host field */
    struct buf in;
    size_t in_off; /* bytes of `in` already taken */
    struct buf out;
    size_t out_off;
    struct http_response resp;
    struct http_hdr hdrs[HTTP_MAX_HEADERS];
    uint64_t left; /* body bytes still to come: a length, or the chunk's data */
    enum chunk_state chunk;
    size_t trailer_bytes;
};

static const char *const ERR_TEXT[] = {
    [HTTP_CLIENT_E_CONNECT] = "connection refused or unreachable",
    [HTTP_CLIENT_E_CLOSED] = "connection closed by the server",
    [HTTP_CLIENT_E_MALFORMED] = "malformed response",
    [HTTP_CLIENT_E_TOO_BIG] = "response head too large",
    [HTTP_CLIENT_E_TIMEOUT] = "timed out",
    [HTTP_CLIENT_E_IO] = "socket error or out of memory",
    [HTTP_CLIENT_E_TLS] = "TLS handshake failed",
};

const char *http_client_strerror(enum http_client_err e)
{
    if ((size_t)e >= sizeof(ERR_TEXT) / sizeof(ERR_TEXT[0]) || !ERR_TEXT[e])
        return "unknown error";
    return ERR_TEXT[e];
}

static void set_state(struct http_client *c, enum client_state next)
{
#define TO(s) (1u << (s))
    static const unsigned allowed[] = {
        [CL_CONNECTING] = TO(CL_IDLE) | TO(CL_HEAD) | TO(CL_FAILED),
        [CL_IDLE] = TO(CL_HEAD) | TO(CL_FAILED),
        [CL_HEAD] = TO(CL_BODY) | TO(CL_FAILED),
        [CL_BODY] = TO(CL_IDLE) | TO(CL_DONE) | TO(CL_FAILED),
        [CL_DONE] = 0,
        [CL_FAILED] = 0,
    };
#undef TO
    assert(allowed[c->state] & (1u << next));
    c->state = next;
}

static bool is_open(const struct http_client *c)
{
    return c->state != CL_DONE && c->state != CL_FAILED;
}

static void ms_to_tv(uint32_t ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* The socket and its events go; the client stays for the caller to close. */
static void disconnect(struct http_client *c)
{
    if (c->fd < 0)
        return;
    event_del(c->rd);
    event_del(c->wr);
    c->rd_on = c->wr_on = false;
    tls_conn_free(c->tls);
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
}

static void client_free(struct http_client *c)
{
    disconnect(c);
    if (c->rd)
        event_free(c->rd);
    if (c->wr)
        event_free(c->wr);
    if (c->defer)
        event_free(c->defer);
    buf_fini(&c->in);
    buf_fini(&c->out);
    free(c);
}

void http_client_close(struct http_client *c)
{
    if (!c)
        return;
    if (c->in_loop) {
        /* Inside one of c's callbacks: the event callback frees c on its way out. */
        disconnect(c);
        c->close_asked = true;
        return;
    }
    client_free(c);
}

/* From the loop only: close and report. */
static void fail(struct http_client *c, enum http_client_err e)
{
    if (!is_open(c))
        return;
    disconnect(c);
    set_state(c, CL_FAILED);
    c->busy = false;
    if (c->o.on_error)
        c->o.on_error(c->o.arg, e);
}

/* From inside an API call: the error is reported from the loop. */
static void fail_later(struct http_client *c, enum http_client_err e)
{
    if (!c->err_due)
        c->err_due = e;
    disconnect(c);
    event_active(c->defer, EV_TIMEOUT, 1);
}

/* Read while connected, not closed and not paused; with the response timeout while a response
 * is awaited or read. */
static void rd_update(struct http_client *c)
{
    if (c->state == CL_CONNECTING)
        return; /* connecting and the handshake arm the events themselves */
    bool want = c->fd >= 0 && is_open(c) && !c->paused;
    bool timed = want && (c->state == CL_HEAD || c->state == CL_BODY) && c->o.response_timeout_ms;
    if (want == c->rd_on && timed == c->rd_timed)
        return;
    if (!want) {
        event_del(c->rd);
    } else {
        struct timeval tv;
        ms_to_tv(c->o.response_timeout_ms, &tv);
        event_add(c->rd, timed ? &tv : NULL);
        if (c->tls && tls_pending(c->tls))
            event_active(c->rd, EV_READ, 1); /* decrypted bytes the socket will not signal */
    }
    c->rd_on = want;
    c->rd_timed = timed;
}

/* The write event: while connecting (connect timeout) or while output waits (write timeout). */
static void wr_arm(struct http_client *c, uint32_t timeout_ms)
{
    struct timeval tv;
    ms_to_tv(timeout_ms, &tv);
    event_add(c->wr, timeout_ms ? &tv : NULL);
    c->wr_on = true;
}

/* Write what the socket takes. false on a socket error (nothing reported yet). */
static bool flush(struct http_client *c)
{
    if (c->fd < 0 || c->state == CL_CONNECTING)
        return true;
    while (c->out_off < c->out.len) {
        ssize_t n = c->tls ? tls_write(c->tls, c->out.p + c->out_off, c->out.len - c->out_off)
                           : write(c->fd, c->out.p + c->out_off, c->out.len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            if (c->wr_on)
                wr_arm(c, c->o.write_timeout_ms); /* progress: the write timeout starts again */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->wr_on)
                wr_arm(c, c->o.write_timeout_ms);
            c->drain_due = c->o.on_drain != NULL;
            return true;
        }
        return false;
    }
    c->out.len = c->out_off = 0;
    if (c->wr_on) {
        event_del(c->wr);
        c->wr_on = false;
    }
    return true;
}

/* ---- reading the response ---- */

static bool deliver(struct http_client *c, const uint8_t *p, size_t len)
{
    if (!len || !c->o.on_body)
        return true;
    if (!c->o.on_body(c->o.arg, p, len))
        c->paused = true;
    return !c->close_asked;
}

/* The response has ended (the input taken so far is its last byte). */
static void response_end(struct http_client *c)
{
    bool reusable = c->resp.keep_alive && !c->body_open && c->fd >= 0;
    c->busy = false;
    if (reusable) {
        set_state(c, CL_IDLE);
    } else {
        disconnect(c);
        set_state(c, CL_DONE);
    }
    rd_update(c);
    if (c->o.on_done)
        c->o.on_done(c->o.arg, reusable);
}

/* The head at the input's front: parse it, skip interim responses, tell the caller. 1 when
 * done with it, 0 for more input, -1 when c failed or was closed. */
static int take_head(struct http_client *c)
{
    char *p = (char *)c->in.p + c->in_off;
    size_t len = c->in.len - c->in_off, used;
    c->resp.hdrs = c->hdrs;
    enum http_parse st =
        http_parse_response(p, len, c->o.max_header_bytes, c->head_req, &c->resp, &used);
    if (st == HTTP_PARSE_MORE)
        return 0;
    if (st != HTTP_PARSE_OK) {
        fail(c, st == HTTP_PARSE_HDR_BIG ? HTTP_CLIENT_E_TOO_BIG : HTTP_CLIENT_E_MALFORMED);
        return -1;
    }
    c->in_off += used;
    if (c->resp.status < 200) {
        /* 100 Continue and the like come before the answer; 101 would switch protocols. */
        if (c->resp.status == 101) {
            fail(c, HTTP_CLIENT_E_MALFORMED);
            return -1;
        }
        return 1;
    }
    set_state(c, CL_BODY);
    c->left = c->resp.content_length;
    c->chunk = CH_SIZE;
    c->trailer_bytes = 0;
    if (c->o.on_head)
        c->o.on_head(c->o.arg, &c->resp);
    if (c->close_asked)
        return -1;
    if (c->resp.framing == HTTP_BODY_NONE || (c->resp.framing == HTTP_BODY_LENGTH && c->left == 0))
        response_end(c);
    return c->close_asked ? -1 : 1;
}

/* One step of a chunked body. 1 to go on, 0 for more input, -1 when c failed or closed. */
static int take_chunked(struct http_client *c)
{
    const char *p = (const char *)c->in.p + c->in_off;
    size_t len = c->in.len - c->in_off, n = 0;
    enum http_parse st = HTTP_PARSE_OK;
    bool last = false;
    uint64_t size = 0;
    switch (c->chunk) {
    case CH_SIZE:
        st = http_chunk_line(p, len, &size, &n);
        if (st == HTTP_PARSE_OK) {
            c->left = size;
            c->chunk = size ? CH_DATA : CH_TRAILER;
        }
        break;
    case CH_DATA:
        n = len < c->left ? len : (size_t)c->left;
        if (!n)
            return 0;
        c->left -= n;
        c->in_off += n;
        if (!c->left)
            c->chunk = CH_CRLF;
        return deliver(c, (const uint8_t *)p, n) ? 1 : -1;
    case CH_CRLF:
        st = http_chunk_crlf(p, len);
        n = 2;
        if (st == HTTP_PARSE_OK)
            c->chunk = CH_SIZE;
        break;
    case CH_TRAILER:
        st = http_trailer_line(p, len, &n, &last);
        c->trailer_bytes += st == HTTP_PARSE_OK ? n : 0;
        if ((st == HTTP_PARSE_MORE ? c->trailer_bytes + len : c->trailer_bytes) >
            c->o.max_header_bytes) {
            fail(c, HTTP_CLIENT_E_TOO_BIG); /* the trailers count as a head */
            return -1;
        }
        break;
    }
    if (st == HTTP_PARSE_MORE)
        return 0;
    if (st != HTTP_PARSE_OK) {
        fail(c, HTTP_CLIENT_E_MALFORMED);
        return -1;
    }
    c->in_off += n;
    if (last) {
        response_end(c);
        return c->close_asked ? -1 : 1;
    }
    return 1;
}

/* Hand over what the input holds, as far as the consumer lets us. */
static void process(struct http_client *c)
{
    int r = 1;
    while (r > 0 && !c->paused && is_open(c)) {
        size_t avail = c->in.len - c->in_off;
        if (c->state == CL_IDLE || c->state == CL_CONNECTING) {
            if (avail) /* nothing was asked: not an answer to us */
                fail(c, HTTP_CLIENT_E_MALFORMED);
            return;
        }
        if (c->state == CL_HEAD) {
            r = take_head(c);
        } else if (c->resp.framing == HTTP_BODY_CHUNKED) {
            r = take_chunked(c);
        } else if (!avail) {
            r = 0;
        } else {
            size_t n = avail;
            if (c->resp.framing == HTTP_BODY_LENGTH && n > c->left)
                n = (size_t)c->left;
            const uint8_t *p = c->in.p + c->in_off;
            c->in_off += n;
            c->left -= c->resp.framing == HTTP_BODY_LENGTH ? n : 0;
            r = deliver(c, p, n) ? 1 : -1;
            if (r > 0 && c->resp.framing == HTTP_BODY_LENGTH && !c->left) {
                response_end(c);
                r = c->close_asked ? -1 : 1;
            }
        }
    }
    if (r >= 0)
        rd_update(c);
}

/* The server closed its side. */
static void on_eof(struct http_client *c)
{
    if (c->state == CL_BODY && c->resp.framing == HTTP_BODY_CLOSE) {
        response_end(c);
        return;
    }
    fail(c, HTTP_CLIENT_E_CLOSED);
}

static void read_some(struct http_client *c)
{
    size_t room =
        (c->o.max_header_bytes > LINE_ROOM ? c->o.max_header_bytes : LINE_ROOM) + READ_CHUNK;
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
    } else if (c->in_off) {
        memmove(c->in.p, c->in.p + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in.len >= room) {
        /* Full, and no verdict on what it holds: a head or framing line over every limit. */
        fail(c, HTTP_CLIENT_E_TOO_BIG);
        return;
    }
    if (!buf_reserve(&c->in, room - c->in.len)) {
        fail(c, HTTP_CLIENT_E_IO);
        return;
    }
    ssize_t n = c->tls ? tls_read(c->tls, c->in.p + c->in.len, room - c->in.len)
                       : read(c->fd, c->in.p + c->in.len, room - c->in.len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        fail(c, errno == ECONNRESET || errno == EPIPE ? HTTP_CLIENT_E_CLOSED : HTTP_CLIENT_E_IO);
        return;
    }
    if (n == 0) {
        on_eof(c);
        return;
    }
    c->in.len += (size_t)n;
    process(c);
    if (!c->close_asked && c->tls && c->rd_on && tls_pending(c->tls))
        event_active(c->rd, EV_READ, 1); /* decrypted bytes the socket will not signal */
}

/* ---- events ---- */

/* Every event callback runs its work through here: a close asked inside frees c at the end. */
static void run(struct http_client *c, void (*fn)(struct http_client *c, short what), short what)
{
    c->in_loop = true;
    fn(c, what);
    c->in_loop = false;
    if (c->close_asked)
        client_free(c);
}

/* Connected (and, with TLS, the handshake done): requests go out. */
static void connected(struct http_client *c)
{
    event_del(c->wr);
    c->wr_on = false;
    event_del(c->rd);
    c->rd_on = c->rd_timed = false;
    set_state(c, c->busy ? CL_HEAD : CL_IDLE);
    rd_update(c);
}

/* One step of the client's TLS handshake; the events wait for what it needs, bounded by the
 * connect timeout. false when it failed (reported). */
static bool handshake(struct http_client *c)
{
    if (!c->tls) {
        c->tls = tls_connect(c->o.tls, c->fd, c->sni);
        if (!c->tls) {
            fail(c, HTTP_CLIENT_E_IO);
            return false;
        }
        c->hs_deadline = c->o.connect_timeout_ms ? clock_now_ms() + c->o.connect_timeout_ms : 0;
    }
    enum tls_step st = tls_handshake(c->tls);
    if (st == TLS_FAILED) {
        log_warn("TLS handshake with %s failed: %s", c->host, tls_why(c->tls));
        fail(c, HTTP_CLIENT_E_TLS);
        return false;
    }
    if (st == TLS_DONE) {
        connected(c);
        return true;
    }
    uint64_t now = clock_now_ms();
    if (c->hs_deadline && now >= c->hs_deadline) {
        fail(c, HTTP_CLIENT_E_TIMEOUT);
        return false;
    }
    struct timeval tv;
    ms_to_tv(c->hs_deadline ? (uint32_t)(c->hs_deadline - now) : 0, &tv);
    struct event *on = st == TLS_WANT_READ ? c->rd : c->wr;
    struct event *off = st == TLS_WANT_READ ? c->wr : c->rd;
    event_del(off);
    event_add(on, c->hs_deadline ? &tv : NULL);
    c->rd_on = st == TLS_WANT_READ;
    c->wr_on = st == TLS_WANT_WRITE;
    return false;
}

static void do_read(struct http_client *c, short what)
{
    if (what & EV_TIMEOUT) {
        fail(c, HTTP_CLIENT_E_TIMEOUT);
        return;
    }
    if (c->state == CL_CONNECTING) {
        if (handshake(c) && !flush(c))
            fail(c, HTTP_CLIENT_E_IO);
        return;
    }
    read_some(c);
}

static void do_write(struct http_client *c, short what)
{
    if (what & EV_TIMEOUT) {
        fail(c, HTTP_CLIENT_E_TIMEOUT);
        return;
    }
    if (c->state == CL_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (!c->tls && (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err)) {
            fail(c, HTTP_CLIENT_E_CONNECT);
            return;
        }
        if (!c->o.tls)
            connected(c);
        else if (!handshake(c))
            return;
    }
    if (!flush(c)) {
        fail(c, errno == EPIPE || errno == ECONNRESET ? HTTP_CLIENT_E_CLOSED : HTTP_CLIENT_E_IO);
        return;
    }
    if (c->drain_due && c->out.len == 0) {
        c->drain_due = false;
        c->o.on_drain(c->o.arg);
    }
}

static void do_defer(struct http_client *c, short what)
{
    (void)what;
    if (c->err_due) {
        enum http_client_err e = c->err_due;
        c->err_due = 0;
        fail(c, e);
        return;
    }
    process(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    run(arg, do_read, what);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    run(arg, do_write, what);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    run(arg, do_defer, what);
}

/* ---- the API ---- */

struct http_client *http_client_open(struct event_base *base, const char *host, uint16_t port,
                                     const struct http_client_opts *opts)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        sl = sizeof(*a6);
    } else {
        return NULL;
    }
    struct http_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->o = *opts;
    if (!c->o.max_header_bytes)
        c->o.max_header_bytes = HTTP_CLIENT_HEADER_BYTES;
    snprintf(c->host, sizeof(c->host), ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
             (unsigned)port);
    snprintf(c->sni, sizeof(c->sni), "%s", host);
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto out_free;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->rd = event_new(base, c->fd, EV_READ | EV_PERSIST, on_read, c);
    c->wr = event_new(base, c->fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->defer = event_new(base, -1, 0, on_defer, c);
    if (!c->rd || !c->wr || !c->defer)
        goto out_free;
    c->state = CL_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
        /* Refused at once (as loopback may be): reported from the loop like any other. */
        fail_later(c, HTTP_CLIENT_E_CONNECT);
        return c;
    }
    /* Connected at once or not, the write event says so: one path for both. */
    wr_arm(c, c->o.connect_timeout_ms);
    return c;

out_free:
    client_free(c);
    return NULL;
}

/* No CR, LF or NUL (they would end a line or a field early), and not empty. */
static bool clean(const char *s, bool no_space)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s == '\r' || *s == '\n' || (no_space && (*s == ' ' || *s == '\t')))
            return false;
    return true;
}

static int begin(struct http_client *c, const char *method, const char *target,
                 const struct http_hdr *hdrs, size_t n)
{
    if (c->busy || (c->state != CL_IDLE && c->state != CL_CONNECTING) || c->err_due ||
        !clean(method, true) || !clean(target, true))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (memchr(hdrs[i].name, '\n', hdrs[i].name_len) ||
            memchr(hdrs[i].name, '\r', hdrs[i].name_len) ||
            memchr(hdrs[i].value, '\n', hdrs[i].value_len) ||
            memchr(hdrs[i].value, '\r', hdrs[i].value_len))
            return -1;
    c->busy = true;
    c->head_req = strcmp(method, "HEAD") == 0;
    buf_puts(&c->out, method);
    buf_putc(&c->out, ' ');
    buf_puts(&c->out, target);
    buf_puts(&c->out, " HTTP/1.1\r\nHost: ");
    buf_puts(&c->out, c->host);
    buf_puts(&c->out, "\r\n");
    for (size_t i = 0; i < n; i++) {
        buf_append(&c->out, hdrs[i].name, hdrs[i].name_len);
        buf_puts(&c->out, ": ");
        buf_append(&c->out, hdrs[i].value, hdrs[i].value_len);
        buf_puts(&c->out, "\r\n");
    }
    if (c->state == CL_IDLE) {
        set_state(c, CL_HEAD);
        rd_update(c); /* the response timeout runs from now */
    }
    return 0;
}

/* Write what was queued; a failure is reported from the loop. */
static int send_queued(struct http_client *c)
{
    if (buf_failed(&c->out)) {
        fail_later(c, HTTP_CLIENT_E_IO);
        return 0;
    }
    if (!flush(c))
        fail_later(c,
                   errno == EPIPE || errno == ECONNRESET ? HTTP_CLIENT_E_CLOSED : HTTP_CLIENT_E_IO);
    return 0;
}

int http_client_request(struct http_client *c, const char *method, const char *target,
                        const struct http_hdr *hdrs, size_t n, const void *body, size_t len)
{
    if (begin(c, method, target, hdrs, n) != 0)
        return -1;
    buf_puts(&c->out, "Content-Length: ");
    buf_put_u64(&c->out, len);
    buf_puts(&c->out, "\r\n\r\n");
    buf_append(&c->out, body, len);
    return send_queued(c);
}

int http_client_request_start(struct http_client *c, const char *method, const char *target,
                              const struct http_hdr *hdrs, size_t n)
{
    if (begin(c, method, target, hdrs, n) != 0)
        return -1;
    buf_puts(&c->out, "Transfer-Encoding: chunked\r\n\r\n");
    c->body_open = true;
    return send_queued(c);
}

int http_client_write(struct http_client *c, const void *p, size_t len)
{
    if (!c->body_open || !is_open(c) || c->err_due || !len)
        return -1;
    char hex[24];
    int k = snprintf(hex, sizeof(hex), "%zx\r\n", len);
    buf_append(&c->out, hex, (size_t)k);
    buf_append(&c->out, p, len);
    buf_puts(&c->out, "\r\n");
    return send_queued(c);
}

int http_client_end(struct http_client *c)
{
    if (!c->body_open || !is_open(c) || c->err_due)
        return -1;
    c->body_open = false;
    buf_puts(&c->out, "0\r\n\r\n");
    return send_queued(c);
}

size_t http_client_pending(const struct http_client *c)
{
    return c->out.len - c->out_off;
}

void http_client_resume(struct http_client *c)
{
    if (!c->paused)
        return;
    c->paused = false;
    event_active(c->defer, EV_TIMEOUT, 1);
}
