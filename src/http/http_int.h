/* http_int.h - private structures of the http module (never included from outside src/http).
 *
 * http_parse.c owns the wire grammar, http_conn.c a server connection's life (read, answer,
 * stream, close), http_server.c the listeners, descriptor limits and timeouts.
 */
#ifndef METASTORE_HTTP_INT_H
#define METASTORE_HTTP_INT_H

#include "metastore/buf.h"
#include "metastore/http.h"
#include "metastore/tls.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTP_MAX_LISTENERS 16

/* A server connection's life. One request at a time is handed out; the end of its response
 * ends the request, and the connection reads the next one or closes:
 *
 *   HANDSHAKE ── the TLS handshake completed (TLS listeners only) ─────▶ READING
 *   READING ──── a request parsed, or refused (fail) ─────────────────▶ ACTIVE
 *   ACTIVE ───── http_stream_start ───────────────────────────────────▶ STREAMING
 *   ACTIVE, STREAMING ── response ended ── keep-alive ────────────────▶ READING
 *                                      └── not keep-alive ────────────▶ FLUSHING
 *   READING ──── the peer is done and every request answered ─────────▶ FLUSHING
 *   FLUSHING ─── output written, FIN sent ────────────────────────────▶ LINGERING
 *   LINGERING ── the peer closes, or time or bytes run out ───────────▶ CLOSED
 *
 * Any state but CLOSED may go to DYING (closed from inside an API call: events removed, in the
 * server's reap list, freed from the loop) or to CLOSED (closed from a loop callback: the close
 * callback runs, then the connection is freed); DYING goes to CLOSED only. In DYING a request
 * may still be held by its handler: ending its response only lets go of it.
 *
 * Not states but flags, because they combine with several states: peer_eof (the peer's sending
 * side is done; seen in READING, ACTIVE or FLUSHING), drop_input (the stream gave up its input;
 * kept through FLUSHING), and the event and re-entrancy bookkeeping (rd_on, wr_added,
 * processing, out_blocked, drain_due). */
enum http_conn_state {
    HTTP_CONN_HANDSHAKE, /* TLS: the handshake runs (bounded by handshake_timeout_ms) */
    HTTP_CONN_READING,   /* no request handed out: input is parsed as it comes */
    HTTP_CONN_ACTIVE,    /* a request is with the handler, no response begun */
    HTTP_CONN_STREAMING, /* the handler's response is a stream, not yet ended */
    HTTP_CONN_FLUSHING,  /* no more requests: close once the output is written */
    HTTP_CONN_LINGERING, /* answered and shut down for writing: input dropped until the end */
    HTTP_CONN_DYING,     /* closed from inside an API call: waiting in the reap list */
    HTTP_CONN_CLOSED,    /* being freed: close callback running */
};

struct http_conn {
    struct http_server *srv;
    int fd;
    struct tls_conn *tls; /* NULL on a plain listener; all I/O goes through it otherwise */
    bool rd_wants_wr;     /* a TLS read waits for the socket to take a write */
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
    enum http_conn_state state; /* changed by conn_set_state only */
    bool chunked;               /* the stream uses chunked encoding */
    bool keep_alive;            /* of the active request */
    bool sent_continue;
    bool processing;  /* inside process_input */
    bool rd_on;       /* the read event is added */
    bool out_blocked; /* parsing waits for the output to drain under OUT_LOW */
    bool peer_eof;    /* the peer will send nothing more */
    bool eof_closes;  /* the request's peer ending its input closes at once */
    bool h2_maybe;    /* no request yet, and the bytes so far may be the HTTP/2 preface */
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

struct http_listener {
    struct http_server *srv;
    struct event *ev;
    int fd;
    struct tls_ctx *tls; /* borrowed: TLS on this listener's connections, or NULL */
};

struct http_server {
    struct event_base *base;
    struct http_limits lim;
    http_handler_fn fn;
    void *ctx;
    http_h2_fn h2_fn; /* takes connections that open with the HTTP/2 preface */
    void *h2_ctx;
    struct http_listener listeners[HTTP_MAX_LISTENERS];
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

/* ---- http_parse.c ---- */

/* Does a comma-separated header value list contain token t (case-insensitive)? */
bool http_has_token(const char *v, size_t vl, const char *t);
/* The pieces of a chunked body (RFC 9112 7.1), for a decoder that goes as bytes come. Each
 * looks at p[0..len) only and returns OK, MORE (no verdict yet) or BAD.
 * http_chunk_line: a chunk-size line with its extensions; *size, and *next just past it. A line
 * longer than 4096 bytes (Go's limit) is BAD, so MORE never asks for more than that.
 * http_chunk_crlf: the CRLF after a chunk's data (2 bytes; a bare LF is BAD, as in Go).
 * http_trailer_line: a trailer line, or the empty line ending the body (*last); *next past it.
 * Nothing bounds the trailers: the caller does. */
enum http_parse http_chunk_line(const char *p, size_t len, uint64_t *size, size_t *next);
enum http_parse http_chunk_crlf(const char *p, size_t len);
enum http_parse http_trailer_line(const char *p, size_t len, size_t *next, bool *last);

/* ---- http_conn.c ---- */

/* A connection on an accepted, non-blocking descriptor fd, linked into s; with tls, it starts
 * with the TLS handshake. NULL on failure (fd is then still the caller's). */
struct http_conn *http_conn_create(struct http_server *s, int fd, struct tls_ctx *tls);
/* Close c from a loop callback (not nested in a caller's API call): the close callback of an
 * active request runs now, then c is freed. */
void http_conn_close_now(struct http_conn *c);
/* Nothing asked, nothing buffered, nothing to send. */
bool http_conn_idle(const struct http_conn *c);
/* A request of c's is with the handler (ACTIVE or STREAMING). */
bool http_conn_has_request(const struct http_conn *c);
/* The server's deferred events: close the connections closed from inside API calls, and run
 * the drain callbacks that became due there. */
void http_on_reap(evutil_socket_t fd, short what, void *arg);
void http_on_due(evutil_socket_t fd, short what, void *arg);

#endif
