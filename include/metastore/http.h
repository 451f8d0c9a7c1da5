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
struct tls_ctx;
struct tls_conn;
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
    size_t max_header_bytes;       /* request line + headers; beyond: 431 and close */
    size_t max_body_bytes;         /* beyond: 413 and close */
    uint32_t read_timeout_ms;      /* a started request must arrive within this */
    uint32_t write_timeout_ms;     /* pending output must make progress within this */
    uint32_t idle_timeout_ms;      /* a keep-alive connection with nothing to do */
    uint32_t max_conns;            /* beyond: new connections are closed at once */
    uint32_t handshake_timeout_ms; /* TLS: the handshake must complete within this (0: 10 s) */
    bool host_required;            /* an HTTP/1.1 request without Host is 400 (RFC 9112 3.2) */
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
/* The same with TLS (tls.h; a server context, borrowed: it must outlive s). A connection starts
 * with the handshake, bounded by handshake_timeout_ms; one that fails is logged (info) and
 * closed, and one that opened with plain HTTP is first answered as Go's TLS server does
 * ("HTTP/1.0 400 Bad Request" and "Client sent an HTTP request to an HTTPS server."). */
int http_server_listen_tls(struct http_server *s, const char *host, uint16_t port,
                           struct tls_ctx *tls);
/* Close the listeners and every connection (close callbacks run), then free. Accepts NULL. */
void http_server_destroy(struct http_server *s);

/* HTTP/2 with prior knowledge (RFC 9113 3.3): a new connection whose first bytes are the client
 * preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" is given to fn, with the bytes read so far
 * (the preface among them; borrowed for the call). fn owns fd from then on, also when it
 * returns false (then it has closed it), and tls (the connection's TLS state after the
 * handshake, or NULL on a plain listener; tls_conn_free before closing fd). Over TLS the same
 * preface decides (ALPN "h2" is negotiated for clients that offer only h2). Without fn such a
 * connection is answered 505. */
#define HTTP_H2_PREFACE     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define HTTP_H2_PREFACE_LEN 24
typedef bool (*http_h2_fn)(void *ctx, int fd, struct tls_conn *tls, const void *p, size_t len);
void http_server_set_h2(struct http_server *s, http_h2_fn fn, void *ctx);

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

/* A complete response. Content-Length is added (on an answer to HEAD only if len > 0, as Go's
 * server does; the body itself is not sent to HEAD); hdrs are extra headers (Content-Type among
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
/* Until r's response ends, the peer's end of input closes the connection as a reset would (the
 * close callback runs), as for a stream: for a request that waits on its client's behalf (a
 * lock), whose client may leave by shutting down its side only. Go's net/http likewise cancels
 * a request's context when its connection reads EOF. */
void http_set_eof_closes(struct http_request *r);
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
    HTTP_PARSE_BAD_URI = 7,  /* a target url.ParseRequestURI refuses (a '%' not starting an
                              * escape before the query; not "*", no leading '/' nor scheme):
                              * 400 (BAD, NO_HOST and HDR_BIG too) in Go's own bytes */
};

/* Parse one request from p[0..len) into r, whose hdrs must point to HTTP_MAX_HEADERS
 * entries (kept; everything else in r is overwritten). The buffer is modified in place (a
 * chunked body is compacted). *expect_continue is set when the headers are complete, the client
 * sent "Expect: 100-continue" and the body has not arrived yet. */
enum http_parse http_parse_request(char *p, size_t len, const struct http_limits *lim,
                                   struct http_request *r, size_t *used, bool *expect_continue);

/* How a response's body is framed (RFC 9112 6.3). */
enum http_body_framing {
    HTTP_BODY_NONE,    /* no body: a HEAD request, or status 1xx, 204, 304 */
    HTTP_BODY_LENGTH,  /* content_length bytes */
    HTTP_BODY_CHUNKED, /* chunked (it wins over a Content-Length sent beside it) */
    HTTP_BODY_CLOSE,   /* everything until the server closes */
};

struct http_response {
    int status; /* 100..999 */
    int minor;  /* HTTP/1.minor */
    const char *reason;
    size_t reason_len;
    struct http_hdr *hdrs; /* room for HTTP_MAX_HEADERS, provided before parsing */
    size_t n_hdrs;
    enum http_body_framing framing;
    uint64_t content_length; /* HTTP_BODY_LENGTH */
    bool keep_alive;         /* the connection may carry another request after this one */
};

/* Parse a response's status line and header fields from p[0..len) into r (hdrs as for
 * http_parse_request); *used is the head's size, the body starts there. head: the request was
 * HEAD (no body follows whatever the headers say). OK, MORE, BAD, HDR_BIG (the head is over
 * max_header_bytes) or VERSION (not HTTP/1.x). */
enum http_parse http_parse_response(char *p, size_t len, size_t max_header_bytes, bool head,
                                    struct http_response *r, size_t *used);
/* Header value by name (case-insensitive), or NULL; *len set. */
const char *http_response_header(const struct http_response *r, const char *name, size_t *len);

/* ---- client ----
 *
 * One connection to one server (the peer transport's side), driven by the caller's loop. One
 * request at a time; the response's body is handed over piece by piece as it arrives, so a
 * response may stream for as long as the connection lives. Every callback runs from the loop,
 * never nested in an API call of the caller's. After on_error or a final on_done no callback
 * runs again; http_client_close frees the client in every case (also from inside a callback).
 *
 * Memory is bounded: input is read into one buffer of max_header_bytes plus 16 KiB, body bytes
 * are handed over from it as they come, and reading stops while the consumer has paused it
 * (TCP then pushes back on the server). Output waits in one buffer; http_client_pending says how
 * much, and the caller bounds it (on_drain tells when it is all written). */

struct http_client;

enum http_client_err {
    HTTP_CLIENT_E_CONNECT = 1, /* the connection could not be made (refused, unreachable) */
    HTTP_CLIENT_E_CLOSED,      /* the server closed or reset the connection before the end */
    HTTP_CLIENT_E_MALFORMED,   /* the response is not HTTP/1.x as RFC 9112 has it */
    HTTP_CLIENT_E_TOO_BIG,     /* the response head is over max_header_bytes */
    HTTP_CLIENT_E_TIMEOUT,     /* connecting, writing or the response took too long */
    HTTP_CLIENT_E_IO,          /* another socket error, or out of memory */
    HTTP_CLIENT_E_TLS,         /* the TLS handshake failed (the reason is logged) */
};

/* Text for an error ("connection refused or unreachable", ...); static. */
const char *http_client_strerror(enum http_client_err e);

/* The status line and headers of the response arrived. resp and what it points to are
 * borrowed for the call only. 1xx interim responses are skipped, never shown. */
typedef void (*http_client_head_fn)(void *arg, const struct http_response *resp);
/* A piece of the response body (chunked framing removed), borrowed for the call only. Return
 * false to pause: nothing more is read or handed over until http_client_resume. */
typedef bool (*http_client_body_fn)(void *arg, const void *p, size_t len);
/* The response is complete. reusable: the client is connected and idle, and may carry the next
 * request (which may be sent from inside this call); otherwise it is closed. */
typedef void (*http_client_done_fn)(void *arg, bool reusable);
/* The connection failed; it is closed, and the request in progress (if any) is lost. */
typedef void (*http_client_error_fn)(void *arg, enum http_client_err err);
/* Every byte queued so far has been written (after a write the socket did not take at once). */
typedef void (*http_client_drain_fn)(void *arg);

#define HTTP_CLIENT_HEADER_BYTES (64u << 10) /* max_header_bytes when 0 is given */

struct http_client_opts {
    size_t max_header_bytes;       /* a response head (or trailers) above: E_TOO_BIG */
    uint32_t connect_timeout_ms;   /* 0: none */
    uint32_t response_timeout_ms;  /* while a response is awaited or read, the longest silence
                                    * from the server (not counted while paused); 0: none */
    uint32_t write_timeout_ms;     /* queued output must make progress this often; 0: none */
    http_client_head_fn on_head;   /* may be NULL */
    http_client_body_fn on_body;   /* may be NULL (the body is dropped) */
    http_client_done_fn on_done;   /* may be NULL */
    http_client_error_fn on_error; /* may be NULL */
    http_client_drain_fn on_drain; /* may be NULL */
    void *arg;                     /* the callbacks' first argument */
    struct tls_ctx *tls;           /* a client context: TLS to the server (borrowed), or NULL;
                                    * the handshake is part of connecting (connect_timeout_ms) */
};

/* Connect to host:port, a numeric IPv4 or IPv6 address, without blocking: requests may be sent
 * at once and go out once connected. A connection that fails later is reported by on_error.
 * NULL if host is not a numeric address, or out of memory or descriptors. Owned by the caller:
 * http_client_close. */
struct http_client *http_client_open(struct event_base *base, const char *host, uint16_t port,
                                     const struct http_client_opts *opts);
/* Close the connection (if still open) and free c; no callback runs afterwards. Called from
 * inside one of c's callbacks, the free waits until that callback returns. Accepts NULL. */
void http_client_close(struct http_client *c);

/* Send a request: "method target HTTP/1.1", a Host field (the address connected to), hdrs,
 * Content-Length, and the body (copied). 0, or -1 if c cannot take a request now (another one
 * is in progress, or c is closed). Write errors are reported by on_error, from the loop. */
int http_client_request(struct http_client *c, const char *method, const char *target,
                        const struct http_hdr *hdrs, size_t n, const void *body, size_t len);
/* The same with a chunked body that follows: http_client_write sends one chunk (len > 0;
 * copied), http_client_end the last one. The response may arrive (and end) before the body
 * does; the connection is then not reused. 0 or -1 as above. */
int http_client_request_start(struct http_client *c, const char *method, const char *target,
                              const struct http_hdr *hdrs, size_t n);
int http_client_write(struct http_client *c, const void *p, size_t len);
int http_client_end(struct http_client *c);
/* Bytes queued and not yet written. */
size_t http_client_pending(const struct http_client *c);
/* Go on after on_body returned false: the rest is handed over from the loop. */
void http_client_resume(struct http_client *c);

#endif
