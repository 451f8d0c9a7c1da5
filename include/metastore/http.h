/* http.h - a small HTTP/1.1 server on non-blocking sockets and plain libevent events, made for
 * the gateway's load: many short requests on keep-alive connections, plus long streams.
 * Layer L1: it knows no other module but util.
 *
 * Why not evhttp: its per-request header lists, printf'd headers and read/write event toggling
 * cost more than everything else in a request (profile in docs/benchmarks.md). Here a
 * connection has one persistent read event, a write event only while output is pending, one
 * input buffer and one output buffer; a response is written with one write(2) when the socket
 * takes it.
 *
 * Lifetimes: a request and everything it points to (method, target, headers, body) stays valid
 * from the handler call until its response ends (http_respond*, http_stream_end) or its
 * connection closes; in the latter case the close callback, if set, is called first, and the
 * request must not be touched afterwards. Requests of one connection are handled one at a time
 * in order; bytes of later pipelined requests wait in the connection's buffer, and none is
 * parsed while the connection's unsent output is above a threshold (a client that pipelines and
 * never reads holds a bounded amount of memory; reading pauses too, so TCP pushes back).
 *
 * End of input: a peer that shuts down its sending side gets the answers to the requests it
 * sent completely, then the connection closes; a stream (and its close callback) ends at once.
 * A connection the server closes while the peer may still be sending (after an error such as
 * 413, or "Connection: close") first shuts down its own sending side and reads and drops input
 * for a bounded time and size, so the answer is not destroyed by a reset.
 */
#ifndef METASTORE_HTTP_H
#define METASTORE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct buf;
struct http_server;
struct http_conn;

enum http_method {
    HTTP_GET,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_HEAD,
    HTTP_OPTIONS,
    HTTP_PATCH,
    HTTP_OTHER,
};

struct http_hdr {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

#define HTTP_MAX_HEADERS 64

struct http_request {
    struct http_conn *conn;
    enum http_method method;
    const char *target; /* request-target as sent (path and query) */
    size_t target_len;
    int minor;             /* HTTP/1.minor */
    struct http_hdr *hdrs; /* room for HTTP_MAX_HEADERS, provided before parsing */
    size_t n_hdrs;
    const char *body; /* the whole body, chunked encoding removed */
    size_t body_len;
    bool must_close; /* framing was ambiguous (RFC 9112 6.1): close after the answer */
};

struct http_limits {
    size_t max_header_bytes;   /* request line + headers; beyond: 431 and close */
    size_t max_body_bytes;     /* beyond: 413 and close */
    uint32_t read_timeout_ms;  /* a started request must arrive within this */
    uint32_t write_timeout_ms; /* pending output must make progress within this */
    uint32_t idle_timeout_ms;  /* a keep-alive connection with nothing to do */
    uint32_t max_conns;        /* beyond: new connections are closed at once */
    bool host_required;        /* an HTTP/1.1 request without Host is 400 (RFC 9112 3.2) */
};

/* Out of file descriptors, the server closes keep-alive connections idle for this long (oldest
 * first) to serve new ones; with none to close, a new connection is accepted and closed at once
 * (a reserve descriptor makes that possible) instead of waiting unseen in the backlog.
 * Connections never take the last descriptors: those from the soft limit (RLIMIT_NOFILE, read at
 * creation and once a second) less min(128, limit / 4) up are kept for the rest of the process
 * (storage opens files as it goes and cannot do without), and a connection that would take one
 * of them is treated as above. After a scan for idle connections that found none, there is no
 * other for 100 ms. */
#define HTTP_RECLAIM_IDLE_MS 1000

typedef void (*http_handler_fn)(void *ctx, struct http_request *req);
typedef void (*http_conn_fn)(void *arg);

/* NULL on OOM. The handler must eventually end every request it gets. */
struct http_server *http_server_create(struct event_base *base, const struct http_limits *lim,
                                       http_handler_fn fn, void *ctx);
/* Listen on host:port (numeric or a name). 0 or -1. */
int http_server_listen(struct http_server *s, const char *host, uint16_t port);
/* Close the listeners and every connection (close callbacks run), then free. Accepts NULL. */
void http_server_destroy(struct http_server *s);

/* Counters, for tests and metrics. */
struct http_stats {
    size_t conns;         /* open connections */
    int fd_cap;           /* a connection's descriptor is below this */
    size_t reclaim_scans; /* scans for idle connections to close */
    size_t refused;       /* connections accepted and closed at once for want of descriptors */
};
void http_server_stats(const struct http_server *s, struct http_stats *out);

/* Header value by name (case-insensitive), or NULL; *len set. */
const char *http_header(const struct http_request *r, const char *name, size_t *len);

/* A complete response. Content-Length is added; hdrs are extra headers (Content-Type among
 * them). The body is copied (http_respond) or taken (http_respond_buf: b is left empty). */
void http_respond(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n,
                  const void *body, size_t len);
void http_respond_buf(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n,
                      struct buf *b);

/* A streamed response: chunked on HTTP/1.1, until close on HTTP/1.0.
 * http_stream_write sends one chunk now (as far as the socket takes it);
 * http_stream_queue appends one chunk made of n parts without writing, and http_flush writes
 * what is queued: a caller producing many chunks in one loop turn writes them with one
 * syscall. */
void http_stream_start(struct http_request *r, int status, const struct http_hdr *hdrs, size_t n);
void http_stream_write(struct http_request *r, const void *p, size_t len);
struct iovec;
bool http_stream_queue(struct http_request *r, const struct iovec *parts, int n);
void http_flush(struct http_request *r);
void http_stream_end(struct http_request *r);
/* The request's headers and body are no longer needed (the stream has taken what it keeps):
 * their memory is freed, and bytes the client sends from now on are read and dropped, so a
 * close is still noticed. The connection closes when the stream ends. */
void http_stream_drop_input(struct http_request *r);
/* Cut r's connection without ending its response (the client sees it incomplete). The close
 * callback is not called: the caller has let go of r already. */
void http_abort(struct http_request *r);

/* Bytes waiting to be written on r's connection. */
size_t http_pending(const struct http_request *r);
/* fn(arg) when the connection fails or closes before r's response ends: a reset, a failed
 * write, a write or read timeout, or the peer's end of input while r is a stream. A peer that
 * only shuts down its sending side while a plain request is pending still gets the answer, and
 * fn is not called. While reading is paused (the input buffer is full, or unsent output is above
 * its threshold) a peer's close is noticed at the next write or timeout only. */
void http_set_close_cb(struct http_request *r, http_conn_fn fn, void *arg);
/* fn(arg) whenever the bytes waiting to be written on r's connection (http_pending) change:
 * after a chunk is queued and after a write. It may run inside http_stream_queue, http_flush
 * and http_stream_start, so fn must only take note. Cleared when r's response ends or its
 * connection closes (before the close callback runs); NULL clears it. */
void http_set_out_cb(struct http_request *r, http_conn_fn fn, void *arg);
/* fn(arg) once r's connection's pending output is at most low bytes after a write (also after
 * a write made by http_stream_write / http_flush: the call is then deferred to the loop, never
 * nested). The callback stays set until changed; NULL clears it. */
void http_set_drain_cb(struct http_request *r, size_t low, http_conn_fn fn, void *arg);

/* ---- parsing, exposed for tests and fuzzing ---- */

enum http_parse {
    HTTP_PARSE_MORE = 0,     /* need more bytes */
    HTTP_PARSE_OK = 1,       /* *r filled, *used bytes form the request */
    HTTP_PARSE_BAD = 2,      /* malformed: 400 */
    HTTP_PARSE_HDR_BIG = 3,  /* headers over the limit: 431 */
    HTTP_PARSE_BODY_BIG = 4, /* body over the limit: 413 */
    HTTP_PARSE_VERSION = 5,  /* not HTTP/1.x: 505 */
    HTTP_PARSE_NO_HOST = 6,  /* HTTP/1.1 without Host, lim->host_required: 400 (two are BAD) */
};

/* Parse one request from p[0..len) into r, whose hdrs must point to HTTP_MAX_HEADERS
 * entries (kept; everything else in r is overwritten). The buffer is modified in place (a
 * chunked body is compacted). *expect_continue is set when the headers are complete, the client
 * sent "Expect: 100-continue" and the body has not arrived yet. */
enum http_parse http_parse_request(char *p, size_t len, const struct http_limits *lim,
                                   struct http_request *r, size_t *used, bool *expect_continue);

#endif
