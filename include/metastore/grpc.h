/* grpc.h - etcd's gRPC API on the client port: HTTP/2 cleartext (nghttp2, driven from the
 * loop, no threads), gRPC's length-prefixed messages, and the services, each call turned into
 * the same server request the JSON gateway makes (srv.h). Layer L4, beside gw.
 *
 * Connections come from the gateway's HTTP/1.1 server, which hands over those that open with
 * the HTTP/2 preface (http_server_set_h2). Every call ends in grpc-status and grpc-message
 * trailers (Trailers-Only when nothing else was sent); a RST_STREAM or a closed connection
 * cancels what the call waits for and frees it.
 */
#ifndef METASTORE_GRPC_H
#define METASTORE_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/buf.h"
#include "metastore/err.h"

struct event_base;
struct srv;
struct grpc;
struct tls_conn;

/* NULL on OOM with *err set. The server is borrowed and must outlive the result. */
struct grpc *grpc_create(struct event_base *base, struct srv *srv, ms_err *err);
/* Send GOAWAY on every connection, write what can be written without waiting, close them,
 * cancel every call. Accepts NULL. */
void grpc_destroy(struct grpc *g);
/* Take over a client connection (fd, non-blocking) that opened with the HTTP/2 preface; p holds
 * the bytes read so far, preface included (borrowed). fd and tls (its TLS state after the
 * handshake, or NULL) are owned from now on, also on failure (false: out of memory, closed).
 * Under --client-cert-auth, a call without a token is its verified client certificate's CN's
 * (etcd's AuthInfoFromTLS). */
bool grpc_accept(struct grpc *g, int fd, struct tls_conn *tls, const void *p, size_t len);

/* Open connections and calls (for tests and metrics). */
struct grpc_stats {
    size_t conns;
    size_t calls;
};
void grpc_stats(const struct grpc *g, struct grpc_stats *out);

/* ---- message framing (gRPC over HTTP/2: a 1-byte compressed flag, a 4-byte big-endian
 * length, the message), exposed for tests and fuzzing ---- */

enum grpc_deframe {
    GRPC_DEFRAME_MORE = 0,       /* every byte taken, no message complete */
    GRPC_DEFRAME_MSG = 1,        /* a message is complete in d->msg (*used bytes taken) */
    GRPC_DEFRAME_TOO_LARGE = 2,  /* its length is over max: d->want says how long */
    GRPC_DEFRAME_COMPRESSED = 3, /* the compressed flag is set (no compressor is offered) */
};

struct grpc_deframer {
    uint8_t hdr[5];
    size_t hdr_len; /* bytes of hdr read */
    size_t want;    /* the message's length, once hdr is complete */
    struct buf msg; /* the message so far */
};

void grpc_deframer_init(struct grpc_deframer *d);
void grpc_deframer_fini(struct grpc_deframer *d);
/* After a message was handed out: start the next one, giving its buffer back if larger than
 * keep (so that a stream that once received a large message does not hold its size). */
void grpc_deframer_next(struct grpc_deframer *d, size_t keep);
/* Take bytes of p[0..len) until a message is complete or they run out; the message (in
 * d->msg) stays valid until the next call, which starts the next one. Nothing is allocated
 * beyond the length announced, and never for a length over max. */
enum grpc_deframe grpc_deframe(struct grpc_deframer *d, const uint8_t *p, size_t len, size_t max,
                               size_t *used);
/* Append the 5-byte prefix of an uncompressed message of len bytes. */
void grpc_frame_prefix(struct buf *out, size_t len);

#endif
