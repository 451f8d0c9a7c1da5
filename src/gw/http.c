/* http.c - HTTP/1.1 server: accept, parse, respond, stream, time out.
 *
 * Owns its listeners and connections. A connection has one persistent read event (so a peer
 * that goes away is noticed even while we are busy with its request), a write event added only
 * while output is pending, an input buffer holding the active request, a second buffer for
 * bytes that arrive meanwhile, and an output buffer written with write(2) as soon as there is
 * something to write. Closing a connection from inside an API call is deferred to the loop, so
 * no callback of ours ever runs nested in the caller's own call.
 */
#define _GNU_SOURCE
#include "http.h"

#include "metastore/buf.h"
#include "metastore/clock.h"
#include "metastore/err.h"
#include "metastore/log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK    (16u << 10)
#define MAX_LISTENERS 16
#define OUT_KEEP      (64u << 10)  /* output capacity kept by an idle connection */
#define DIRECT_BODY   (8u << 10)   /* bodies from this size are written without a copy */
#define ACCEPT_PAUSE  100          /* ms without accepting after running out of fds */
#define OUT_HIGH      (256u << 10) /* unsent output above which a connection stops parsing */
#define OUT_LOW       (64u << 10)  /* ... and under which it goes on */
#define LINGER_MS     2000         /* a closing connection drains input this long at most */
#define LINGER_BYTES  (4u << 20)   /* ... and this much at most */
#define FD_WARN_MS    10000        /* at most one "out of file descriptors" line this often */
#define RECLAIM_BATCH 16           /* idle connections closed per shortage */
#define RECLAIM_PAUSE 100          /* ms without scanning after a scan found nothing idle */
#define FD_MARGIN     128          /* descriptors kept from connections for storage ... */
#define FD_MARGIN_DIV 4            /* ... or this fraction of a smaller limit */

struct http_conn {
    struct http_server *srv;
    int fd;
    struct event *rd;
    struct event *wr;
    bool wr_added;
    struct buf in;   /* [in_off..) the active request's bytes, then later or partial ones */
    struct buf more; /* bytes read while a request is active (`in` must not move then) */
    size_t in_off;   /* bytes of `in` already answered */
    size_t in_used;  /* bytes of `in` from in_off the active request takes */
    struct buf out;
    size_t out_off;
    struct http_request req;
    bool active; /* a request was handed out and its response has not ended */
    bool streaming;
    bool chunked;     /* the stream uses chunked encoding */
    bool keep_alive;  /* of the active request */
    bool close_after; /* close once the output is written */
    bool sent_continue;
    bool dying;       /* closing: waiting in the server's reap list */
    bool processing;  /* inside process_input */
    bool rd_on;       /* the read event is added */
    bool out_blocked; /* parsing waits for the output to drain under OUT_LOW */
    bool peer_eof;    /* the peer will send nothing more */
    bool lingering;   /* answered and shut down for writing: draining input, then close */
    http_conn_fn close_cb;
    void *close_arg;
    http_conn_fn drain_cb;
    void *drain_arg;
    size_t drain_low;
    http_conn_fn out_cb; /* pending output changed (http_set_out_cb) */
    void *out_arg;
    bool drain_due;       /* in the server's due list: drain_cb runs from the loop */
    bool drop_input;      /* the stream needs no more input: read and drop */
    uint64_t started_ms;  /* first byte of the current request */
    uint64_t progress_ms; /* last byte written while output was pending */
    uint64_t idle_ms;     /* last activity */
    uint64_t linger_end_ms;
    size_t linger_left; /* input bytes a lingering close still drops */
    struct http_conn *prev;
    struct http_conn *next;
    struct http_conn *reap_next;
    struct http_conn *due_next;
};

struct http_server {
    struct event_base *base;
    struct http_limits lim;
    http_handler_fn fn;
    void *ctx;
    struct event *listeners[MAX_LISTENERS];
    int lfds[MAX_LISTENERS];
    size_t n_listeners;
    struct http_conn *conns;
    size_t n_conns;
    struct http_conn *reap;
    struct event *reap_ev;
    struct event *sweep_ev;
    struct http_conn *due; /* connections whose drain callback is due */
    struct event *due_ev;
    struct event *accept_ev; /* re-enables the listeners after running out of fds */
    int reserve_fd;          /* given up to accept-and-close when out of fds */
    int fd_cap;              /* a connection's descriptor must be below this */
    uint64_t reclaim_ms;     /* no scan for idle connections before this */
    size_t reclaim_scans;    /* for http_server_stats */
    size_t refused_total;
    bool fd_warned; /* fd shortage reports: the last one's time, then counts since */
    uint64_t fd_warn_ms;
    size_t fd_short, fd_reclaimed, fd_refused;
    char date[64];
    time_t date_t;
};

/* ---- parsing ---- */

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool eq_ci(const char *a, size_t al, const char *b)
{
    size_t bl = strlen(b);
    return al == bl && strncasecmp(a, b, bl) == 0;
}

/* Does a comma-separated header value list contain token t? */
static bool has_token(const char *v, size_t vl, const char *t)
{
    size_t tl = strlen(t), i = 0;
    while (i < vl) {
        while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vl && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, t, tl) == 0)
            return true;
    }
    return false;
}

const char *http_header(const struct http_request *r, const char *name, size_t *len)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        if (eq_ci(r->hdrs[i].name, r->hdrs[i].name_len, name)) {
            *len = r->hdrs[i].value_len;
            return r->hdrs[i].value;
        }
    }
    *len = 0;
    return NULL;
}

/* Find the end of the header block: returns the offset just past the empty line, or 0. */
static size_t header_end(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n')
            return i + 2;
        if (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static enum http_method method_of(const char *m, size_t n)
{
    static const struct {
        const char *s;
        enum http_method m;
    } t[] = {{"GET", HTTP_GET},       {"POST", HTTP_POST}, {"PUT", HTTP_PUT},
             {"DELETE", HTTP_DELETE}, {"HEAD", HTTP_HEAD}, {"OPTIONS", HTTP_OPTIONS},
             {"PATCH", HTTP_PATCH}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strlen(t[i].s) == n && memcmp(t[i].s, m, n) == 0)
            return t[i].m;
    return HTTP_OTHER;
}

/* May byte c appear in a field value, a chunk extension or a trailer? HTAB, SP, VCHAR and
 * obs-text (RFC 9110 5.5); a NUL, DEL or bare CR is an error, never a silent cut. */
static bool is_field_byte(unsigned char c)
{
    return c >= 0x20 ? c != 0x7f : c == '\t';
}

/* The end of the line starting at p[i]: CRLF (or a bare LF) after field bytes only. Returns OK
 * with *next just past the LF, MORE, or BAD. */
static enum http_parse line_end(const char *p, size_t len, size_t i, size_t *next)
{
    while (i < len && is_field_byte((unsigned char)p[i]))
        i++;
    if (i < len && p[i] == '\r')
        i++;
    if (i == len)
        return HTTP_PARSE_MORE;
    if (p[i] != '\n')
        return HTTP_PARSE_BAD;
    *next = i + 1;
    return HTTP_PARSE_OK;
}

#define CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions, as Go's limit */

/* Walk a chunked body at p[0..len): *end is where the message ends, *body_len the data size.
 * Returns MORE, OK, BAD or BODY_BIG. When compact is set, the data is moved to p[0..).
 * Sizes come from the peer: every bound is checked as `size > room`, never as a sum that an
 * attacker's size could wrap around. */
static enum http_parse chunked(char *p, size_t len, size_t max, size_t *end, size_t *body_len,
                               bool compact)
{
    size_t i = 0, out = 0;
    enum http_parse st;
    for (;;) {
        /* chunk-size [BWS ; ext] CRLF: nothing but whitespace or an extension may follow the
         * digits ("0x12" is an error, not a last chunk). */
        size_t s = i;
        uint64_t size = 0;
        while (i < len && isxdigit((unsigned char)p[i])) {
            if (size > (UINT64_MAX >> 4))
                return HTTP_PARSE_BAD;
            int c = (unsigned char)p[i];
            size = size * 16 + (uint64_t)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
            i++;
        }
        if (i == len)
            return len - s > CHUNK_LINE_MAX ? HTTP_PARSE_BAD : HTTP_PARSE_MORE;
        if (i == s)
            return HTTP_PARSE_BAD;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i < len && p[i] != ';' && p[i] != '\r' && p[i] != '\n')
            return HTTP_PARSE_BAD;
        st = line_end(p, len, i, &i);
        if (st != HTTP_PARSE_OK)
            return st == HTTP_PARSE_MORE && len - s > CHUNK_LINE_MAX ? HTTP_PARSE_BAD : st;
        if (i - s > CHUNK_LINE_MAX)
            return HTTP_PARSE_BAD;
        if (size == 0)
            break;
        if (size > max - out) /* out <= max holds */
            return HTTP_PARSE_BODY_BIG;
        if (len - i <= size) /* the data and at least the first byte after it */
            return HTTP_PARSE_MORE;
        if (compact)
            memmove(p + out, p + i, (size_t)size);
        out += (size_t)size;
        i += (size_t)size;
        /* CRLF after the data, a bare LF is an error (as in Go; a size line may end in one) */
        if (p[i] != '\r')
            return HTTP_PARSE_BAD;
        if (++i == len)
            return HTTP_PARSE_MORE;
        if (p[i] != '\n')
            return HTTP_PARSE_BAD;
        i++;
    }
    /* trailers (dropped, but no control bytes in them), then an empty line */
    for (;;) {
        size_t s = i;
        st = line_end(p, len, i, &i);
        if (st != HTTP_PARSE_OK)
            return st;
        if (i - s == 1 || (i - s == 2 && p[s] == '\r'))
            break;
    }
    *end = i;
    *body_len = out;
    return HTTP_PARSE_OK;
}

/* The client sent "Expect: 100-continue" and waits for it before the body. */
static bool wants_continue(const struct http_request *r)
{
    size_t v;
    const char *e = http_header(r, "Expect", &v);
    return e && eq_ci(e, v, "100-continue");
}

enum http_parse http_parse_request(char *p, size_t len, const struct http_limits *lim,
                                   struct http_request *r, size_t *used, bool *expect_continue)
{
    *expect_continue = false;
    /* Leading blank lines are tolerated (RFC 9112 2.2). */
    size_t lead = 0;
    while (lead < len && (p[lead] == '\r' || p[lead] == '\n'))
        lead++;
    if (lead > lim->max_header_bytes)
        return HTTP_PARSE_BAD; /* a flood of them, not a request */
    size_t hend = header_end(p + lead, len - lead);
    if (!hend)
        return len - lead > lim->max_header_bytes ? HTTP_PARSE_HDR_BIG : HTTP_PARSE_MORE;
    if (hend > lim->max_header_bytes)
        return HTTP_PARSE_HDR_BIG;
    char *h = p + lead;
    struct http_hdr *store = r->hdrs;
    memset(r, 0, sizeof(*r));
    r->hdrs = store;
    /* Request line. */
    size_t i = 0;
    while (i < hend && is_tchar((unsigned char)h[i]))
        i++;
    if (i == 0 || h[i] != ' ')
        return HTTP_PARSE_BAD;
    r->method = method_of(h, i);
    size_t t = ++i;
    /* A control byte (a NUL above all) ends nothing: it makes the request bad. */
    while (i < hend && (unsigned char)h[i] > ' ' && h[i] != 0x7f)
        i++;
    if (i == t || h[i] != ' ')
        return HTTP_PARSE_BAD;
    r->target = h + t;
    r->target_len = i - t;
    i++;
    if (hend - i < 8 || memcmp(h + i, "HTTP/", 5) != 0)
        return HTTP_PARSE_BAD;
    if (h[i + 5] != '1' || h[i + 6] != '.' || !isdigit((unsigned char)h[i + 7]))
        return isdigit((unsigned char)h[i + 5]) ? HTTP_PARSE_VERSION : HTTP_PARSE_BAD;
    r->minor = h[i + 7] - '0';
    i += 8;
    if (h[i] == '\r')
        i++;
    if (h[i] != '\n')
        return HTTP_PARSE_BAD;
    i++;
    /* Header fields. */
    bool is_chunked = false, have_len = false;
    uint64_t clen = 0;
    size_t n_host = 0;
    while (i < hend) {
        if (h[i] == '\n' || (h[i] == '\r' && h[i + 1] == '\n'))
            break;
        size_t ns = i;
        while (i < hend && is_tchar((unsigned char)h[i]))
            i++;
        if (i == ns || h[i] != ':')
            return HTTP_PARSE_BAD; /* also obsolete line folding */
        size_t ne = i++;
        while (h[i] == ' ' || h[i] == '\t')
            i++;
        size_t vs = i;
        if (line_end(h, hend, i, &i) != HTTP_PARSE_OK)
            return HTTP_PARSE_BAD; /* a NUL, DEL or bare CR in the value */
        size_t ve = i - 1;
        while (ve > vs && (h[ve - 1] == '\r' || h[ve - 1] == ' ' || h[ve - 1] == '\t'))
            ve--;
        if (r->n_hdrs == HTTP_MAX_HEADERS)
            return HTTP_PARSE_HDR_BIG;
        struct http_hdr *hd = &r->hdrs[r->n_hdrs++];
        *hd = (struct http_hdr){h + ns, ne - ns, h + vs, ve - vs};
        if (eq_ci(hd->name, hd->name_len, "Content-Length")) {
            uint64_t v = 0;
            if (hd->value_len == 0)
                return HTTP_PARSE_BAD;
            for (size_t k = 0; k < hd->value_len; k++) {
                if (!isdigit((unsigned char)hd->value[k]) || v > UINT64_MAX / 10 - 9)
                    return HTTP_PARSE_BAD;
                v = v * 10 + (uint64_t)(hd->value[k] - '0');
            }
            if (have_len && v != clen)
                return HTTP_PARSE_BAD;
            have_len = true;
            clen = v;
        } else if (eq_ci(hd->name, hd->name_len, "Host")) {
            if (++n_host > 1)
                return HTTP_PARSE_BAD; /* RFC 9112 3.2 */
        } else if (eq_ci(hd->name, hd->name_len, "Transfer-Encoding")) {
            /* Only a single "chunked" (RFC 9112 6.1): another coding, chunked twice or not
             * last ("chunked, identity") leaves the length unknown. */
            if (is_chunked || !eq_ci(hd->value, hd->value_len, "chunked"))
                return HTTP_PARSE_BAD;
            is_chunked = true;
        }
    }
    if (!n_host && r->minor >= 1 && lim->host_required)
        return HTTP_PARSE_NO_HOST;
    /* Both framings (RFC 9112 6.1): chunked wins, as in Go, and the connection closes after
     * the answer, so bytes a proxy took for this body can never be read as a request. */
    r->must_close = is_chunked && (have_len || r->minor == 0);
    size_t hdr_total = lead + hend;
    size_t blen;
    if (is_chunked) {
        size_t end;
        enum http_parse c =
            chunked(p + hdr_total, len - hdr_total, lim->max_body_bytes, &end, &blen, false);
        if (c == HTTP_PARSE_MORE) {
            *expect_continue = wants_continue(r);
            return HTTP_PARSE_MORE;
        }
        if (c != HTTP_PARSE_OK)
            return c;
        chunked(p + hdr_total, len - hdr_total, lim->max_body_bytes, &end, &blen, true);
        r->body = p + hdr_total;
        r->body_len = blen;
        *used = hdr_total + end;
        return HTTP_PARSE_OK;
    }
    if (clen > lim->max_body_bytes)
        return HTTP_PARSE_BODY_BIG;
    blen = (size_t)clen;
    if (len - hdr_total < blen) {
        *expect_continue = wants_continue(r);
        return HTTP_PARSE_MORE;
    }
    r->body = p + hdr_total;
    r->body_len = blen;
    *used = hdr_total + blen;
    return HTTP_PARSE_OK;
}

/* ---- connections ---- */

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
    close(c->fd);
    buf_fini(&c->in);
    buf_fini(&c->more);
    buf_fini(&c->out);
    free(c->req.hdrs);
    free(c);
}

/* Close c from a loop callback (not nested in a caller's API call): the close callback of an
 * active request runs now. */
static void conn_close_now(struct http_conn *c)
{
    c->out_cb = NULL;
    if (c->active && c->close_cb) {
        http_conn_fn fn = c->close_cb;
        c->close_cb = NULL;
        c->active = false;
        fn(c->close_arg);
    }
    conn_free(c);
}

/* Close c later (from inside an API call). */
static void conn_close_later(struct http_conn *c)
{
    if (c->dying)
        return;
    c->dying = true;
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

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    while (s->reap) {
        struct http_conn *c = s->reap;
        s->reap = c->reap_next;
        conn_close_now(c);
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
    bool want = !c->dying && !c->peer_eof &&
                (c->drop_input || (!c->out_blocked && buffered(c) < in_room(c->srv)));
    if (want == c->rd_on)
        return;
    if (want)
        event_add(c->rd, NULL);
    else
        event_del(c->rd);
    c->rd_on = want;
}

/* Our side is done. The peer may still be sending (an upload we refused, requests pipelined
 * after "Connection: close"), and closing with unread input resets the connection, which can
 * destroy the answer on its way: send FIN, then read and drop input, bounded in time and size,
 * until the peer closes too. */
static void conn_end(struct http_conn *c)
{
    if (c->peer_eof || c->dying || shutdown(c->fd, SHUT_WR) != 0) {
        conn_close_later(c);
        return;
    }
    c->lingering = true;
    c->linger_end_ms = clock_now_ms() + LINGER_MS;
    c->linger_left = LINGER_BYTES;
    c->drop_input = true;
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
        ssize_t n = write(c->fd, c->out.p + c->out_off, c->out.len - c->out_off);
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
    if (c->wr_added) {
        event_del(c->wr);
        c->wr_added = false;
    }
    if (!c->active && c->close_after) {
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

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)fd;
    (void)what;
    if (!flush(c))
        return;
    if (c->active && c->drain_cb && pending(c) <= c->drain_low) {
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
    if (!c->active || !c->drain_cb || c->drain_due || c->dying || pending(c) > c->drain_low)
        return;
    c->drain_due = true;
    c->due_next = c->srv->due;
    c->srv->due = c;
    event_active(c->srv->due_ev, EV_TIMEOUT, 1);
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    while (s->due) {
        struct http_conn *c = s->due;
        s->due = c->due_next;
        c->drain_due = false;
        if (c->active && !c->dying && c->drain_cb && pending(c) <= c->drain_low)
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
    c->active = false;
    c->streaming = false;
    c->close_cb = NULL;
    c->drain_cb = NULL;
    c->out_cb = NULL;
    if (!c->keep_alive || c->drop_input)
        c->close_after = true;
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
    if (!c->close_after && !c->dying && !c->processing)
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

static void put_connection(struct http_conn *c)
{
    if (!c->keep_alive)
        buf_puts(&c->out, "Connection: close\r\n");
    else if (c->req.minor == 0)
        buf_puts(&c->out, "Connection: keep-alive\r\n");
}

static void respond(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n,
                    const void *body, size_t len)
{
    struct http_conn *c = r->conn;
    if (!c->active || c->streaming)
        return;
    out_compact(c);
    bool idle = pending(c) == 0 && !c->wr_added && !c->dying;
    status_line(c, status);
    put_headers(c, hdrs, n);
    put_connection(c);
    buf_puts(&c->out, "Content-Length: ");
    buf_put_u64(&c->out, len);
    buf_puts(&c->out, "\r\n\r\n");
    if (r->method == HTTP_HEAD)
        len = 0;
    if (len >= DIRECT_BODY && idle && !buf_failed(&c->out)) {
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
    if (!c->active || c->streaming)
        return;
    c->streaming = true;
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
    if (!c->active || !c->streaming || c->dying)
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
    if (c->dying || c->wr_added)
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
    if (!c->active || !c->streaming)
        return;
    if (c->chunked)
        buf_puts(&c->out, "0\r\n\r\n");
    request_done(c);
}

void http_abort(struct http_request *r)
{
    struct http_conn *c = r->conn;
    c->close_cb = NULL;
    c->drain_cb = NULL;
    c->out_cb = NULL;
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

/* An error of ours before any handler saw the request: answer "<status> <reason><why>" and
 * close. */
static void fail(struct http_conn *c, int status, const char *why)
{
    c->active = true;
    c->keep_alive = false;
    c->req.conn = c;
    c->req.minor = 1;
    c->req.method = HTTP_OTHER;
    c->in_used = c->in.len - c->in_off;
    static const struct http_hdr ct = {"Content-Type", 12, "text/plain; charset=utf-8", 25};
    const char *text = ms_http_reason(status);
    char body[96];
    int k = snprintf(body, sizeof(body), "%d %s%s", status, text, why);
    respond(&c->req, status, &ct, 1, body, (size_t)k);
}

static void process_input(struct http_conn *c)
{
    c->processing = true;
    while (!c->active && !c->dying && !c->close_after && c->in.len > c->in_off) {
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
        enum http_parse p = http_parse_request((char *)c->in.p + c->in_off, c->in.len - c->in_off,
                                               &c->srv->lim, &c->req, &used, &cont);
        if (p == HTTP_PARSE_MORE && c->in.len - c->in_off >= in_room(c->srv)) {
            /* Reading has paused (read_update) and the request is still not whole: it never
             * will be. */
            fail(c, 413, "");
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
        if (p != HTTP_PARSE_OK) {
            fail(c,
                 p == HTTP_PARSE_HDR_BIG    ? 431
                 : p == HTTP_PARSE_BODY_BIG ? 413
                 : p == HTTP_PARSE_VERSION  ? 505
                                            : 400,
                 p == HTTP_PARSE_NO_HOST ? ": missing required Host header" : "");
            break;
        }
        c->req.conn = c;
        c->in_used = used;
        c->active = true;
        c->sent_continue = false;
        c->started_ms = 0;
        size_t v;
        const char *conn_hdr = http_header(&c->req, "Connection", &v);
        c->keep_alive = c->req.minor >= 1 ? !(conn_hdr && has_token(conn_hdr, v, "close"))
                                          : (conn_hdr && has_token(conn_hdr, v, "keep-alive"));
        if (c->req.must_close)
            c->keep_alive = false;
        c->srv->fn(c->srv->ctx, &c->req);
    }
    c->processing = false;
    if (c->peer_eof && !c->active && !c->dying && !c->close_after && !c->out_blocked) {
        /* Every complete request is answered and no byte more will come. */
        c->close_after = true;
        if (!pending(c))
            conn_close_later(c);
    }
}

/* The peer sent its last byte (or shut down its sending side). A stream ends as if closed;
 * otherwise the requests it sent complete are answered first. */
static void peer_done(struct http_conn *c)
{
    if (c->streaming || c->drop_input || (!c->active && !buffered(c) && !pending(c))) {
        conn_close_now(c);
        return;
    }
    c->peer_eof = true;
    read_update(c);
    if (!c->active)
        process_input(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    (void)what;
    if (c->drop_input) {
        char sink[16384];
        ssize_t n = read(fd, sink, sizeof(sink));
        if (n > 0 && c->lingering) {
            if ((size_t)n >= c->linger_left)
                conn_close_now(c); /* enough: a reset now cannot hurt an answer read long ago */
            else
                c->linger_left -= (size_t)n;
        } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_close_now(c);
        }
        return;
    }
    struct buf *dst = c->active ? &c->more : &c->in;
    if (!c->active)
        in_compact(c);
    if (!buf_reserve(dst, READ_CHUNK)) {
        conn_close_now(c);
        return;
    }
    ssize_t n = read(fd, dst->p + dst->len, dst->cap - dst->len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        conn_close_now(c);
        return;
    }
    if (n == 0) {
        peer_done(c);
        return;
    }
    dst->len += (size_t)n;
    c->idle_ms = clock_now_ms();
    if (!c->active)
        process_input(c);
    read_update(c);
}

/* Nothing asked, nothing buffered, nothing to send. */
static bool conn_idle(const struct http_conn *c)
{
    return !c->active && !c->dying && c->in.len == c->in_off && !c->more.len && !pending(c);
}

/* Out of descriptors: close up to RECLAIM_BATCH connections idle for HTTP_RECLAIM_IDLE_MS,
 * oldest first (a keep-alive connection may be closed at any time, RFC 9112 9.5). Returns how
 * many were closed. A scan walks every connection: after one that found none, there is no
 * other for RECLAIM_PAUSE, so a flood of new clients against busy ones costs no scan each. */
static size_t reclaim_idle(struct http_server *s)
{
    uint64_t now = clock_now_ms();
    if (now < s->reclaim_ms)
        return 0;
    s->reclaim_scans++;
    size_t n = 0;
    for (; n < RECLAIM_BATCH; n++) {
        struct http_conn *old = NULL;
        for (struct http_conn *c = s->conns; c; c = c->next)
            if (conn_idle(c) && now - c->idle_ms >= HTTP_RECLAIM_IDLE_MS &&
                (!old || c->idle_ms < old->idle_ms))
                old = c;
        if (!old)
            break;
        conn_close_now(old);
    }
    if (!n)
        s->reclaim_ms = now + RECLAIM_PAUSE;
    return n;
}

/* Connections may take descriptors up to the soft limit less a margin: the rest stays free for
 * storage (WAL segments, snapshots, LMDB, defragment, directory syncs), which fails hard
 * without one. The kernel hands out the lowest free descriptor, so a connection whose
 * descriptor is at or above the cap means every one below is taken. */
static void fd_cap_update(struct http_server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > INT_MAX) {
        s->fd_cap = INT_MAX;
        return;
    }
    rlim_t margin =
        rl.rlim_cur / FD_MARGIN_DIV < FD_MARGIN ? rl.rlim_cur / FD_MARGIN_DIV : FD_MARGIN;
    s->fd_cap = (int)(rl.rlim_cur - margin);
}

static void fd_warn(struct http_server *s);

/* A connection got descriptor fd at or above the cap: close idle connections and move it to a
 * freed descriptor, or refuse it. Returns its descriptor, or -1 if refused. */
static int over_cap(struct http_server *s, int fd)
{
    size_t k = reclaim_idle(s);
    s->fd_reclaimed += k;
    int low = k ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    close(fd);
    if (low >= s->fd_cap) {
        close(low);
        low = -1;
    }
    if (low < 0) {
        s->fd_refused++;
        s->refused_total++;
    }
    fd_warn(s);
    return low;
}

/* The reserve descriptor was lost (reopening it failed, as with ENFILE): try again. */
static void reserve_fd_retry(struct http_server *s)
{
    if (s->reserve_fd < 0)
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors and nothing to reclaim: accept one waiting connection on the reserve
 * descriptor and close it, so the client learns at once instead of waiting unseen in the
 * backlog. 1 if one was refused, 0 if none was waiting, -1 if that failed too. */
static int refuse_one(struct http_server *s, int lfd)
{
    if (s->reserve_fd < 0)
        return -1;
    close(s->reserve_fd);
    s->reserve_fd = -1;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    int err = errno;
    if (fd >= 0)
        close(fd);
    reserve_fd_retry(s);
    if (fd >= 0)
        return 1;
    return err == EAGAIN || err == EWOULDBLOCK ? 0 : -1;
}

/* One line per FD_WARN_MS at most, with what happened since the last one. */
static void fd_warn(struct http_server *s)
{
    uint64_t now = clock_now_ms();
    s->fd_short++;
    if (s->fd_warned && now - s->fd_warn_ms < FD_WARN_MS)
        return;
    log_warn("out of file descriptors with %zu connections open: %zu times since the last report, "
             "%zu idle connections closed, %zu new ones refused",
             s->n_conns, s->fd_short, s->fd_reclaimed, s->fd_refused);
    s->fd_warned = true;
    s->fd_warn_ms = now;
    s->fd_short = s->fd_reclaimed = s->fd_refused = 0;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)what;
    for (int burst = 0; burst < 64; burst++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EMFILE || err == ENFILE) {
                size_t k = reclaim_idle(s);
                int refused = k ? 0 : refuse_one(s, lfd);
                s->fd_reclaimed += k;
                s->fd_refused += refused > 0;
                s->refused_total += refused > 0;
                if (k || refused >= 0) {
                    fd_warn(s);
                    if (k || refused > 0)
                        continue;
                    return;
                }
            }
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                /* The listener stays readable: stop polling it for a while, or the loop
                 * spins. Waiting clients stay in the backlog. */
                for (size_t i = 0; i < s->n_listeners; i++)
                    event_del(s->listeners[i]);
                struct timeval tv = {0, ACCEPT_PAUSE * 1000};
                event_add(s->accept_ev, &tv);
                fd_warn(s);
            }
            return;
        }
        if (fd >= s->fd_cap && (fd = over_cap(s, fd)) < 0)
            continue;
        if (s->n_conns >= s->lim.max_conns) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct http_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = s;
        c->fd = fd;
        c->rd = event_new(s->base, fd, EV_READ | EV_PERSIST, on_read, c);
        c->wr = event_new(s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
        if (!c->rd || !c->wr || event_add(c->rd, NULL) != 0) {
            if (c->rd)
                event_free(c->rd);
            if (c->wr)
                event_free(c->wr);
            free(c);
            close(fd);
            continue;
        }
        c->rd_on = true;
        c->idle_ms = clock_now_ms();
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
    }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    reserve_fd_retry(s);
    for (size_t i = 0; i < s->n_listeners; i++)
        event_add(s->listeners[i], NULL);
}

/* Once a second: connections that are too slow or idle too long go. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    uint64_t now = clock_now_ms();
    reserve_fd_retry(s);
    fd_cap_update(s); /* the limit may have been changed from outside (prlimit) */
    struct http_conn *c = s->conns;
    while (c) {
        struct http_conn *next = c->next;
        bool out_stuck = c->out.len > c->out_off && now - c->progress_ms > s->lim.write_timeout_ms;
        bool read_slow =
            !c->active && c->started_ms && now - c->started_ms > s->lim.read_timeout_ms;
        bool idle = conn_idle(c) && now - c->idle_ms > s->lim.idle_timeout_ms;
        bool lingered = c->lingering && now >= c->linger_end_ms;
        if (!c->dying && (out_stuck || read_slow || idle || lingered))
            conn_close_now(c);
        c = next;
    }
}

struct http_server *http_server_create(struct event_base *base, const struct http_limits *lim,
                                       http_handler_fn fn, void *ctx)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->base = base;
    s->lim = *lim;
    s->fn = fn;
    s->ctx = ctx;
    s->reserve_fd = -1;
    reserve_fd_retry(s);
    fd_cap_update(s);
    s->reap_ev = event_new(base, -1, 0, on_reap, s);
    s->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, s);
    s->due_ev = event_new(base, -1, 0, on_due, s);
    s->accept_ev = evtimer_new(base, on_accept_resume, s);
    struct timeval second = {1, 0};
    if (!s->reap_ev || !s->sweep_ev || !s->due_ev || !s->accept_ev ||
        event_add(s->sweep_ev, &second) != 0) {
        http_server_destroy(s);
        return NULL;
    }
    return s;
}

int http_server_listen(struct http_server *s, const char *host, uint16_t port)
{
    if (s->n_listeners == MAX_LISTENERS)
        return -1;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", (unsigned)port);
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    struct event *ev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_accept, s);
    if (!ev || event_add(ev, NULL) != 0) {
        if (ev)
            event_free(ev);
        close(fd);
        return -1;
    }
    s->listeners[s->n_listeners] = ev;
    s->lfds[s->n_listeners++] = fd;
    return 0;
}

void http_server_destroy(struct http_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_listeners; i++) {
        event_free(s->listeners[i]);
        close(s->lfds[i]);
    }
    if (s->reap_ev)
        on_reap(-1, 0, s);
    while (s->conns)
        conn_close_now(s->conns);
    if (s->reap_ev)
        event_free(s->reap_ev);
    if (s->sweep_ev)
        event_free(s->sweep_ev);
    if (s->due_ev)
        event_free(s->due_ev);
    if (s->accept_ev)
        event_free(s->accept_ev);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    free(s);
}

void http_server_stats(const struct http_server *s, struct http_stats *out)
{
    *out = (struct http_stats){.conns = s->n_conns,
                               .fd_cap = s->fd_cap,
                               .reclaim_scans = s->reclaim_scans,
                               .refused = s->refused_total};
}
