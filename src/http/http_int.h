/* http_int.h - private structures of the http module (never included from outside src/http).
 *
 * http_parse.c owns the wire grammar, http_conn.c a server connection's life (read, answer,
 * stream, close), http_server.c the listeners, descriptor limits and timeouts.
 */
#ifndef METASTORE_HTTP_INT_H
#define METASTORE_HTTP_INT_H

#include "metastore/buf.h"
#include "metastore/http.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTP_MAX_LISTENERS 16

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
    struct event *listeners[HTTP_MAX_LISTENERS];
    int lfds[HTTP_MAX_LISTENERS];
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

/* ---- http_conn.c ---- */

/* A connection on an accepted, non-blocking descriptor fd, linked into s. NULL on failure (fd
 * is then still the caller's). */
struct http_conn *http_conn_create(struct http_server *s, int fd);
/* Close c from a loop callback (not nested in a caller's API call): the close callback of an
 * active request runs now, then c is freed. */
void http_conn_close_now(struct http_conn *c);
/* Nothing asked, nothing buffered, nothing to send. */
bool http_conn_idle(const struct http_conn *c);
/* The server's deferred events: close the connections closed from inside API calls, and run
 * the drain callbacks that became due there. */
void http_on_reap(evutil_socket_t fd, short what, void *arg);
void http_on_due(evutil_socket_t fd, short what, void *arg);

#endif
