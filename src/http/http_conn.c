/* http_conn.c - a server connection: read, parse, hand out, answer, stream, close.
 *
 * A connection has one persistent read event (so a peer that goes away is noticed even while we
 * are busy with its request), a write event added only while output is pending, an input buffer
 * holding the active request, a second buffer for bytes that arrive meanwhile, and an output
 * buffer written with write(2) as soon as there is something to write. Closing a connection
 * from inside an API call is deferred to the loop, so no callback of ours ever runs nested in
 * the caller's own call.
 *
 * On a TLS listener the connection first runs the handshake (HANDSHAKE state, driven by the
 * same two events), then reads and writes through tls.h instead of read(2)/write(2). TLS may
 * hold decrypted bytes the socket no longer signals: the read event is made active again while
 * it does, so each callback still reads one bounded chunk.
 */
#define _GNU_SOURCE
#include "http_int.h"

#include "metastore/buf.h"
#include "metastore/clock.h"
#include "metastore/err.h"
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK           (16u << 10)
#define OUT_KEEP             (64u << 10)  /* output capacity kept by an idle connection */
#define DIRECT_BODY          (8u << 10)   /* bodies from this size are written without a copy */
#define OUT_HIGH             (256u << 10) /* unsent output above which a connection stops parsing */
#define OUT_LOW              (64u << 10)  /* ... and under which it goes on */
#define LINGER_MS            2000         /* a closing connection drains input this long at most */
#define LINGER_BYTES         (4u << 20)   /* ... and this much at most */
#define TLS_HANDSHAKE_RECORD 0x16         /* the first byte of a TLS client's first record */

/* The one way a connection changes state: the transitions of the diagram in http_int.h. */
static void conn_set_state(struct http_conn *c, enum http_conn_state next)
{
#define TO(s) (1u << (s))
    static const unsigned ends = TO(HTTP_CONN_DYING) | TO(HTTP_CONN_CLOSED);
    static const unsigned allowed[] = {
        [HTTP_CONN_HANDSHAKE] = TO(HTTP_CONN_READING) | ends,
        [HTTP_CONN_READING] = TO(HTTP_CONN_ACTIVE) | TO(HTTP_CONN_FLUSHING) | ends,
        [HTTP_CONN_ACTIVE] =
            TO(HTTP_CONN_STREAMING) | TO(HTTP_CONN_READING) | TO(HTTP_CONN_FLUSHING) | ends,
        [HTTP_CONN_STREAMING] = TO(HTTP_CONN_READING) | TO(HTTP_CONN_FLUSHING) | ends,
        [HTTP_CONN_FLUSHING] = TO(HTTP_CONN_LINGERING) | ends,
        [HTTP_CONN_LINGERING] = ends,
        [HTTP_CONN_DYING] = TO(HTTP_CONN_CLOSED),
        [HTTP_CONN_CLOSED] = 0,
    };
#undef TO
    assert(allowed[c->state] & (1u << next));
    c->state = next;
}

bool http_conn_has_request(const struct http_conn *c)
{
    return c->state == HTTP_CONN_ACTIVE || c->state == HTTP_CONN_STREAMING;
}

/* Input is read and dropped: a stream that needs no more, or a lingering close. */
static bool drops_input(const struct http_conn *c)
{
    return c->drop_input || c->state == HTTP_CONN_LINGERING;
}

/* The handler no longer holds its request (or has let it go): no callback of its runs. */
static void let_go(struct http_conn *c)
{
    c->close_cb = NULL;
    c->drain_cb = NULL;
    c->out_cb = NULL;
    c->eof_closes = false;
}

/* The socket's bytes, through TLS on a TLS listener: read(2) and write(2)'s results. */
static ssize_t conn_read(struct http_conn *c, void *p, size_t n)
{
    if (!c->tls)
        return read(c->fd, p, n);
    ssize_t r = tls_read(c->tls, p, n);
    if (r < 0 && errno == EAGAIN && tls_wants_write(c->tls) && !c->wr_added) {
        /* A TLS 1.3 key update must be answered before reading on: wait for the socket. */
        c->rd_wants_wr = true;
        event_add(c->wr, NULL);
        c->wr_added = true;
    }
    return r;
}

static ssize_t conn_write(struct http_conn *c, const void *p, size_t n)
{
    if (!c->tls)
        return write(c->fd, p, n);
    ssize_t r = tls_write(c->tls, p, n);
    if (r < 0 && errno == EAGAIN && !tls_wants_write(c->tls))
        errno = EPROTO; /* would wait for input: renegotiation, which is refused */
    return r;
}

/* TLS holds decrypted input the socket will not signal: read it from the loop. */
static void tls_rearm(struct http_conn *c)
{
    if (c->tls && c->rd_on && tls_pending(c->tls))
        event_active(c->rd, EV_READ, 1);
}

static void conn_free(struct http_conn *c)
{
    struct http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (c->drain_due) {
        struct http_conn **pp = &s->due;
        while (*pp != c)
            pp = &(*pp)->due_next;
        *pp = c->due_next;
    }
    event_free(c->rd);
    event_free(c->wr);
    tls_conn_free(c->tls);
    if (c->fd >= 0)
        close(c->fd);
    buf_fini(&c->in);
    buf_fini(&c->more);
    buf_fini(&c->out);
    free(c->req.hdrs);
    free(c);
}

void http_conn_close_now(struct http_conn *c)
{
    /* CLOSED first: whatever the close callback calls on the request is a no-op. */
    conn_set_state(c, HTTP_CONN_CLOSED);
    http_conn_fn fn = c->close_cb;
    let_go(c);
    if (fn)
        fn(c->close_arg);
    conn_free(c);
}

/* Close c later (from inside an API call). */
static void conn_close_later(struct http_conn *c)
{
    if (c->state == HTTP_CONN_DYING || c->state == HTTP_CONN_CLOSED)
        return;
    conn_set_state(c, HTTP_CONN_DYING);
    event_del(c->rd);
    c->rd_on = false;
    if (c->wr_added) {
        event_del(c->wr);
        c->wr_added = false;
    }
    c->reap_next = c->srv->reap;
    c->srv->reap = c;
    event_active(c->srv->reap_ev, EV_TIMEOUT, 1);
}

void http_on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    while (s->reap) {
        struct http_conn *c = s->reap;
        s->reap = c->reap_next;
        http_conn_close_now(c);
    }
}

static void process_input(struct http_conn *c);

/* Unparsed input held: the active request's bytes and those after them. */
static size_t buffered(const struct http_conn *c)
{
    return c->in.len - c->in_off + c->more.len;
}

/* Input held before reading pauses: the largest request plus a read. Chunk framing is not
 * counted in the body limit, so a legal chunked request can still need more (1-byte chunks take
 * 6 bytes each): process_input refuses it with 413 rather than wait. */
static size_t in_room(const struct http_server *s)
{
    return s->lim.max_header_bytes + s->lim.max_body_bytes + READ_CHUNK;
}

/* Read while there is room for input and the output is not backed up (TCP then pushes back on a
 * client that sends and never reads). A stream that drops its input and a lingering close read
 * always, to see the peer go. */
static void read_update(struct http_conn *c)
{
    bool want = c->state != HTTP_CONN_DYING && !c->peer_eof &&
                (drops_input(c) || (!c->out_blocked && buffered(c) < in_room(c->srv)));
    if (want == c->rd_on)
        return;
    if (want)
        event_add(c->rd, NULL);
    else
        event_del(c->rd);
    c->rd_on = want;
    tls_rearm(c);
}

/* Our side is done. The peer may still be sending (an upload we refused, requests pipelined
 * after "Connection: close"), and closing with unread input resets the connection, which can
 * destroy the answer on its way: send FIN, then read and drop input, bounded in time and size,
 * until the peer closes too. */
static void conn_end(struct http_conn *c)
{
    if (c->tls && !c->peer_eof)
        tls_close_notify(c->tls);
    if (c->peer_eof || shutdown(c->fd, SHUT_WR) != 0) {
        conn_close_later(c);
        return;
    }
    conn_set_state(c, HTTP_CONN_LINGERING);
    c->linger_end_ms = clock_now_ms() + LINGER_MS;
    c->linger_left = LINGER_BYTES;
    buf_fini(&c->in);
    buf_fini(&c->more);
    c->in_off = c->in_used = 0;
    read_update(c);
}

static void out_changed(struct http_conn *c)
{
    if (c->out_cb)
        c->out_cb(c->out_arg);
}

/* Most of a large output buffer is written but the peer is slow: keep only the tail, so the
 * memory a connection holds follows the bytes it has pending (watch budget). */
static void out_shrink(struct http_conn *c)
{
    size_t left = c->out.len - c->out_off;
    if (c->out.cap <= OUT_KEEP || left > c->out.cap / 4)
        return;
    struct buf tail;
    buf_init(&tail);
    buf_append(&tail, c->out.p + c->out_off, left);
    if (buf_failed(&tail)) {
        buf_fini(&tail);
        return;
    }
    buf_fini(&c->out);
    c->out = tail;
    c->out_off = 0;
}

static bool flush_out(struct http_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = conn_write(c, c->out.p + c->out_off, c->out.len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->progress_ms = clock_now_ms();
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->wr_added) {
                event_add(c->wr, NULL);
                c->wr_added = true;
                c->progress_ms = clock_now_ms(); /* the write timeout starts now */
            }
            out_shrink(c);
            return true;
        }
        conn_close_later(c);
        return false;
    }
    c->out.len = 0;
    c->out_off = 0;
    if (c->out.cap > OUT_KEEP)
        buf_fini(&c->out); /* a burst is over: give its memory back */
    if (c->wr_added && !c->rd_wants_wr) {
        event_del(c->wr);
        c->wr_added = false;
    }
    if (c->state == HTTP_CONN_FLUSHING) {
        conn_end(c);
        return false;
    }
    return true;
}

/* Write what we can. Returns false if the connection broke (it is then closing). */
static bool flush(struct http_conn *c)
{
    bool ok = flush_out(c);
    out_changed(c);
    return ok;
}

static size_t pending(const struct http_conn *c)
{
    return c->out.len - c->out_off;
}

/* Before appending: move the unwritten tail to the front once most of the buffer is sent. */
static void out_compact(struct http_conn *c)
{
    if (c->out_off && c->out_off >= c->out.len / 2) {
        memmove(c->out.p, c->out.p + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
}

static void handshake(struct http_conn *c);
static void on_read(evutil_socket_t fd, short what, void *arg);

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)what;
    if (c->state == HTTP_CONN_HANDSHAKE) {
        handshake(c);
        return;
    }
    if (c->rd_wants_wr) {
        c->rd_wants_wr = false;
        if (!pending(c)) {
            event_del(c->wr);
            c->wr_added = false;
        }
        on_read(fd, EV_READ, c);
        return;
    }
    if (!flush(c))
        return;
    if (http_conn_has_request(c) && c->drain_cb && pending(c) <= c->drain_low) {
        c->drain_cb(c->drain_arg);
    } else if (c->out_blocked && pending(c) <= OUT_LOW) {
        c->out_blocked = false;
        process_input(c);
        read_update(c);
    }
}

/* After a write made inside an API call: a due drain callback runs from the loop. */
static void drain_check(struct http_conn *c)
{
    if (!http_conn_has_request(c) || !c->drain_cb || c->drain_due || pending(c) > c->drain_low)
        return;
    c->drain_due = true;
    c->due_next = c->srv->due;
    c->srv->due = c;
    event_active(c->srv->due_ev, EV_TIMEOUT, 1);
}

void http_on_due(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    while (s->due) {
        struct http_conn *c = s->due;
        s->due = c->due_next;
        c->drain_due = false;
        if (http_conn_has_request(c) && c->drain_cb && pending(c) <= c->drain_low)
            c->drain_cb(c->drain_arg);
    }
}

/* Before appending to `in` (no request active): move the unparsed tail to the front once the
 * answered bytes before it are at least as many, so each byte moves O(1) times. */
static void in_compact(struct http_conn *c)
{
    size_t rest = c->in.len - c->in_off;
    if (c->in_off && c->in_off >= rest) {
        memmove(c->in.p, c->in.p + c->in_off, rest);
        c->in.len = rest;
        c->in_off = 0;
    }
}

/* The active request's response has ended: drop its bytes, go on with the next one. */
static void request_done(struct http_conn *c)
{
    let_go(c);
    conn_set_state(c, !c->keep_alive || c->drop_input ? HTTP_CONN_FLUSHING : HTTP_CONN_READING);
    c->in_off += c->in_used;
    c->in_used = 0;
    if (c->more.len) {
        in_compact(c);
        buf_append(&c->in, c->more.p, c->more.len);
        c->more.len = 0;
        if (c->more.cap > OUT_KEEP)
            buf_fini(&c->more); /* a burst is over: give its memory back */
    }
    if (c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
        if (c->in.cap > OUT_KEEP)
            buf_fini(&c->in); /* a burst is over: give its memory back */
    }
    if (!flush(c))
        return;
    if (c->state == HTTP_CONN_READING && !c->processing)
        process_input(c);
    read_update(c); /* room again for input held back behind this request */
}

static void append_date(struct http_server *s, struct buf *b)
{
    time_t now = time(NULL);
    if (now != s->date_t) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        s->date_t = now;
    }
    buf_puts(b, s->date);
}

static void status_line(struct http_conn *c, int status)
{
    buf_puts(&c->out, c->req.minor ? "HTTP/1.1 " : "HTTP/1.0 ");
    buf_put_i64(&c->out, status);
    buf_putc(&c->out, ' ');
    buf_puts(&c->out, ms_http_reason(status));
    buf_puts(&c->out, "\r\n");
}

static void put_headers(struct http_conn *c, const struct http_hdr *hdrs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_append(&c->out, hdrs[i].name, hdrs[i].name_len);
        buf_puts(&c->out, ": ");
        buf_append(&c->out, hdrs[i].value, hdrs[i].value_len);
        buf_puts(&c->out, "\r\n");
    }
    append_date(c->srv, &c->out);
}

/* As Go: "close" only to HTTP/1.1 (a 1.0 answer without "keep-alive" says the close by itself),
 * "keep-alive" to a 1.0 request that asked for it. */
static void put_connection(struct http_conn *c)
{
    if (!c->keep_alive && c->req.minor >= 1)
        buf_puts(&c->out, "Connection: close\r\n");
    else if (c->keep_alive && c->req.minor == 0)
        buf_puts(&c->out, "Connection: keep-alive\r\n");
}

static void respond(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n,
                    const void *body, size_t len)
{
    struct http_conn *c = r->conn;
    if (c->state == HTTP_CONN_DYING)
        let_go(c);
    if (c->state != HTTP_CONN_ACTIVE)
        return;
    out_compact(c);
    bool idle = pending(c) == 0 && !c->wr_added;
    status_line(c, status);
    put_headers(c, hdrs, n);
    put_connection(c);
    /* Go's server gives an answer to HEAD a length only when the handler wrote a body
     * (server.go, chunkWriter.writeHeader: "!isHEAD || len(p) > 0"): etcd's 301 to HEAD has
     * none. */
    if (r->method != HTTP_HEAD || len) {
        buf_puts(&c->out, "Content-Length: ");
        buf_put_u64(&c->out, len);
        buf_puts(&c->out, "\r\n");
    }
    buf_puts(&c->out, "\r\n");
    if (r->method == HTTP_HEAD)
        len = 0;
    if (len >= DIRECT_BODY && idle && !c->tls && !buf_failed(&c->out)) {
        /* A large body goes out with the head in one writev, without a copy; only what the
         * socket does not take is buffered. */
        size_t head = c->out.len - c->out_off;
        struct iovec v[2] = {{c->out.p + c->out_off, head}, {(void *)body, len}};
        ssize_t wn = writev(c->fd, v, 2);
        if (wn < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close_later(c);
            return;
        }
        size_t done = wn > 0 ? (size_t)wn : 0;
        if (done > 0)
            c->progress_ms = clock_now_ms();
        if (done >= head) {
            c->out.len = c->out_off = 0;
            done -= head;
            body = (const char *)body + done;
            len -= done;
        } else {
            c->out_off += done;
        }
    }
    buf_append(&c->out, body, len);
    if (buf_failed(&c->out)) {
        conn_close_later(c);
        return;
    }
    request_done(c);
}

void http_respond(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n,
                  const void *body, size_t len)
{
    respond(r, status, hdrs, n, body, len);
}

void http_respond_buf(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n,
                      struct buf *b)
{
    respond(r, status, hdrs, n, b->p, b->len);
    buf_fini(b);
}

void http_stream_start(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n)
{
    struct http_conn *c = r->conn;
    if (c->state != HTTP_CONN_ACTIVE)
        return;
    conn_set_state(c, HTTP_CONN_STREAMING);
    c->chunked = r->minor >= 1;
    if (!c->chunked)
        c->keep_alive = false; /* HTTP/1.0: the stream ends when the connection does */
    status_line(c, status);
    put_headers(c, hdrs, n);
    put_connection(c);
    if (c->chunked)
        buf_puts(&c->out, "Transfer-Encoding: chunked\r\n");
    buf_puts(&c->out, "\r\n");
    if (flush(c))
        drain_check(c);
}

bool http_stream_queue(struct http_request *r, const struct iovec *parts, int n)
{
    struct http_conn *c = r->conn;
    if (c->state != HTTP_CONN_STREAMING)
        return false;
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += parts[i].iov_len;
    if (!len)
        return true;
    out_compact(c);
    if (c->chunked) {
        char hex[24];
        int k = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        buf_append(&c->out, hex, (size_t)k);
    }
    for (int i = 0; i < n; i++)
        buf_append(&c->out, parts[i].iov_base, parts[i].iov_len);
    if (c->chunked)
        buf_puts(&c->out, "\r\n");
    if (buf_failed(&c->out)) {
        conn_close_later(c);
        return false;
    }
    out_changed(c);
    return true;
}

void http_flush(struct http_request *r)
{
    struct http_conn *c = r->conn;
    if (c->state == HTTP_CONN_DYING || c->wr_added)
        return; /* the write event is on: it writes as soon as the socket takes more */
    if (flush(c))
        drain_check(c);
}

void http_stream_write(struct http_request *r, const void *p, size_t len)
{
    struct iovec v = {(void *)p, len};
    if (http_stream_queue(r, &v, 1))
        http_flush(r);
}

void http_stream_drop_input(struct http_request *r)
{
    struct http_conn *c = r->conn;
    c->drop_input = true;
    c->keep_alive = false;
    free(c->req.hdrs);
    c->req.hdrs = NULL;
    c->req.n_hdrs = 0;
    c->req.target = NULL;
    c->req.target_len = 0;
    c->req.body = NULL;
    c->req.body_len = 0;
    buf_fini(&c->in);
    buf_fini(&c->more);
    c->in_off = c->in_used = 0;
    read_update(c); /* reading may have been paused with a full buffer */
}

void http_stream_end(struct http_request *r)
{
    struct http_conn *c = r->conn;
    if (c->state == HTTP_CONN_DYING)
        let_go(c);
    if (c->state != HTTP_CONN_STREAMING)
        return;
    if (c->chunked)
        buf_puts(&c->out, "0\r\n\r\n");
    request_done(c);
}

void http_abort(struct http_request *r)
{
    struct http_conn *c = r->conn;
    let_go(c);
    conn_close_later(c);
}

size_t http_pending(const struct http_request *r)
{
    return pending(r->conn);
}

void http_set_close_cb(struct http_request *r, http_conn_fn fn, void *arg)
{
    r->conn->close_cb = fn;
    r->conn->close_arg = arg;
}

void http_set_eof_closes(struct http_request *r)
{
    r->conn->eof_closes = true;
}

void http_set_out_cb(struct http_request *r, http_conn_fn fn, void *arg)
{
    r->conn->out_cb = fn;
    r->conn->out_arg = arg;
}

void http_set_drain_cb(struct http_request *r, size_t low, http_conn_fn fn, void *arg)
{
    r->conn->drain_cb = fn;
    r->conn->drain_arg = arg;
    r->conn->drain_low = low;
    if (fn)
        drain_check(r->conn);
}

/* An error of ours before any handler saw the request: the input held is taken as the
 * request's, and the connection closes after the answer. */
static void fail_begin(struct http_conn *c)
{
    conn_set_state(c, HTTP_CONN_ACTIVE);
    c->keep_alive = false;
    c->req.conn = c;
    c->req.minor = 1;
    c->req.method = HTTP_OTHER;
    c->in_used = c->in.len - c->in_off;
}

/* Answer "<status> <reason>" with a Date and a length, and close. */
static void fail(struct http_conn *c, int status)
{
    fail_begin(c);
    static const struct http_hdr ct = {"Content-Type", 12, "text/plain; charset=utf-8", 25};
    const char *text = ms_http_reason(status);
    char body[96];
    int k = snprintf(body, sizeof(body), "%d %s", status, text);
    respond(&c->req, status, &ct, 1, body, (size_t)k);
}

/* Go's own bytes for a request it cannot read (net/http server.go, conn.serve): no Date, no
 * length, "<status> <reason><why>" as the status line's end and as the body, then the close.
 * etcd answers so a malformed request, a target url.ParseRequestURI refuses, a missing Host and
 * header fields over the limit. */
static void fail_go(struct http_conn *c, int status, const char *why)
{
    fail_begin(c);
    const char *text = ms_http_reason(status);
    out_compact(c);
    buf_printf(&c->out,
               "HTTP/1.1 %d %s%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Connection: close\r\n\r\n%d %s%s",
               status, text, why, status, text, why);
    if (buf_failed(&c->out)) {
        conn_close_later(c);
        return;
    }
    request_done(c);
}

/* A fresh connection opening with the HTTP/2 preface goes to the server's h2_fn with its fd and
 * the bytes read (from on_read only: c is freed here). True when c is gone or must wait for
 * more bytes to tell. */
static bool h2_handoff(struct http_conn *c)
{
    size_t have = c->in.len - c->in_off;
    size_t n = have < HTTP_H2_PREFACE_LEN ? have : HTTP_H2_PREFACE_LEN;
    if (memcmp(c->in.p + c->in_off, HTTP_H2_PREFACE, n) != 0) {
        c->h2_maybe = false;
        return false;
    }
    if (have < HTTP_H2_PREFACE_LEN)
        return !c->peer_eof;
    struct http_server *s = c->srv;
    int fd = c->fd;
    struct tls_conn *tls = c->tls;
    c->fd = -1; /* the h2 side owns it now */
    c->tls = NULL;
    struct buf in = c->in;
    size_t off = c->in_off;
    buf_init(&c->in);
    conn_set_state(c, HTTP_CONN_CLOSED);
    conn_free(c);
    s->h2_fn(s->h2_ctx, fd, tls, in.p + off, in.len - off);
    buf_fini(&in);
    return true;
}

static void process_input(struct http_conn *c)
{
    c->h2_maybe = false; /* on_read looked first */
    c->processing = true;
    while (c->state == HTTP_CONN_READING && c->in.len > c->in_off) {
        size_t used;
        bool cont;
        if (pending(c) > OUT_HIGH) {
            /* The client does not read its answers: make no more until it does. */
            c->out_blocked = true;
            break;
        }
        if (!c->started_ms)
            c->started_ms = clock_now_ms();
        if (!c->req.hdrs && !(c->req.hdrs = malloc(HTTP_MAX_HEADERS * sizeof(struct http_hdr)))) {
            conn_close_later(c);
            break;
        }
        if (!c->tls && c->in.p[c->in_off] == TLS_HANDSHAKE_RECORD) {
            /* A TLS client on a plain port (no request starts with this byte): refuse at once
             * rather than wait for a line end that may never come; curl then reports "wrong
             * version number". */
            log_info("a TLS handshake on a plain HTTP port: answered 400");
            fail_go(c, 400, "");
            break;
        }
        enum http_parse p = http_parse_request((char *)c->in.p + c->in_off, c->in.len - c->in_off,
                                               &c->srv->lim, &c->req, &used, &cont);
        if (p == HTTP_PARSE_MORE && c->in.len - c->in_off >= in_room(c->srv)) {
            /* Reading has paused (read_update) and the request is still not whole: it never
             * will be. */
            fail(c, 413);
            break;
        }
        if (p == HTTP_PARSE_MORE) {
            if (cont && !c->sent_continue) {
                c->sent_continue = true;
                buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                flush(c);
            }
            break;
        }
        if (p == HTTP_PARSE_BAD || p == HTTP_PARSE_BAD_URI || p == HTTP_PARSE_HDR_BIG) {
            fail_go(c, p == HTTP_PARSE_HDR_BIG ? 431 : 400, "");
            break;
        }
        if (p == HTTP_PARSE_NO_HOST) {
            fail_go(c, 400, ": missing required Host header");
            break;
        }
        if (p != HTTP_PARSE_OK) {
            fail(c, p == HTTP_PARSE_BODY_BIG ? 413 : 505);
            break;
        }
        c->req.conn = c;
        c->in_used = used;
        conn_set_state(c, HTTP_CONN_ACTIVE);
        c->sent_continue = false;
        c->started_ms = 0;
        size_t v;
        const char *conn_hdr = http_header(&c->req, "Connection", &v);
        c->keep_alive = c->req.minor >= 1 ? !(conn_hdr && http_has_token(conn_hdr, v, "close"))
                                          : (conn_hdr && http_has_token(conn_hdr, v, "keep-alive"));
        if (c->req.must_close)
            c->keep_alive = false;
        c->srv->fn(c->srv->ctx, &c->req);
    }
    c->processing = false;
    if (c->peer_eof && c->state == HTTP_CONN_READING && !c->out_blocked) {
        /* Every complete request is answered and no byte more will come. */
        conn_set_state(c, HTTP_CONN_FLUSHING);
        if (!pending(c))
            conn_close_later(c);
    }
}

/* The peer sent its last byte (or shut down its sending side). A stream ends as if closed;
 * otherwise the requests it sent complete are answered first. */
static void peer_done(struct http_conn *c)
{
    if (c->state == HTTP_CONN_STREAMING || c->eof_closes || drops_input(c) ||
        (!http_conn_has_request(c) && !buffered(c) && !pending(c))) {
        http_conn_close_now(c);
        return;
    }
    c->peer_eof = true;
    read_update(c);
    if (!http_conn_has_request(c))
        process_input(c);
}

/* Go's TLS server's answer to plain HTTP (crypto/tls's RecordHeaderError in net/http). */
#define PLAIN_TO_TLS                                                                               \
    "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

/* Go on with the TLS handshake; once complete, the connection reads requests. */
static void handshake(struct http_conn *c)
{
    enum tls_step st = tls_handshake(c->tls);
    if (st == TLS_FAILED) {
        char who[INET6_ADDRSTRLEN + 8] = "?";
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
            const void *a = ss.ss_family == AF_INET6
                                ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
            inet_ntop(ss.ss_family, a, who, sizeof(who));
        }
        log_info("rejected connection from \"%s\" (error \"%s\")", who, tls_why(c->tls));
        if (tls_got_http(c->tls)) {
            /* Best effort, then read what the client sent (up to a bound) so the close does not
             * reset the connection and destroy the answer on its way. */
            ssize_t w = write(c->fd, PLAIN_TO_TLS, sizeof(PLAIN_TO_TLS) - 1);
            if (w > 0 && shutdown(c->fd, SHUT_WR) == 0) {
                char sink[4096];
                for (int i = 0; i < 16 && read(c->fd, sink, sizeof(sink)) > 0; i++)
                    ;
            }
        }
        http_conn_close_now(c);
        return;
    }
    bool want_wr = st == TLS_WANT_WRITE;
    if (want_wr != c->wr_added) {
        if (want_wr)
            event_add(c->wr, NULL);
        else
            event_del(c->wr);
        c->wr_added = want_wr;
    }
    if (st != TLS_DONE)
        return;
    conn_set_state(c, HTTP_CONN_READING);
    c->started_ms = 0;
    c->idle_ms = clock_now_ms();
    /* Bytes after the handshake's wait in the socket (its read event fires) or, already
     * decrypted, inside TLS. A read that finds nothing would make OpenSSL keep a 16 KiB record
     * buffer for as long as the connection stays idle. */
    tls_rearm(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state == HTTP_CONN_HANDSHAKE) {
        handshake(c);
        return;
    }
    if (drops_input(c)) {
        char sink[16384];
        ssize_t n = conn_read(c, sink, sizeof(sink));
        if (n > 0 && c->state == HTTP_CONN_LINGERING) {
            if ((size_t)n >= c->linger_left) {
                /* Enough: a reset now cannot hurt an answer read long ago. */
                http_conn_close_now(c);
                return;
            }
            c->linger_left -= (size_t)n;
        } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            http_conn_close_now(c);
            return;
        }
        tls_rearm(c);
        return;
    }
    bool busy = http_conn_has_request(c);
    struct buf *dst = busy ? &c->more : &c->in;
    if (!busy)
        in_compact(c);
    if (!buf_reserve(dst, READ_CHUNK)) {
        http_conn_close_now(c);
        return;
    }
    ssize_t n = conn_read(c, dst->p + dst->len, dst->cap - dst->len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        http_conn_close_now(c);
        return;
    }
    if (n == 0) {
        peer_done(c);
        return;
    }
    dst->len += (size_t)n;
    c->idle_ms = clock_now_ms();
    if (c->h2_maybe && !c->started_ms)
        c->started_ms = c->idle_ms; /* the read timeout covers the wait for the whole preface */
    if (!busy && c->h2_maybe && h2_handoff(c))
        return;
    if (!busy)
        process_input(c);
    read_update(c);
    tls_rearm(c);
}

bool http_conn_idle(const struct http_conn *c)
{
    return !http_conn_has_request(c) && c->state != HTTP_CONN_DYING && c->in.len == c->in_off &&
           !c->more.len && !pending(c);
}

struct http_conn *http_conn_create(struct http_server *s, int fd, struct tls_ctx *tls)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct http_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->srv = s;
    c->fd = fd;
    c->state = tls ? HTTP_CONN_HANDSHAKE : HTTP_CONN_READING;
    c->rd = event_new(s->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wr = event_new(s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    if (tls)
        c->tls = tls_accept(tls, fd);
    if (!c->rd || !c->wr || (tls && !c->tls) || event_add(c->rd, NULL) != 0) {
        if (c->rd)
            event_free(c->rd);
        if (c->wr)
            event_free(c->wr);
        tls_conn_free(c->tls);
        free(c);
        return NULL;
    }
    if (tls)
        c->started_ms = clock_now_ms(); /* the handshake deadline runs from here */
    c->rd_on = true;
    c->h2_maybe = s->h2_fn != NULL;
    c->idle_ms = clock_now_ms();
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    return c;
}
