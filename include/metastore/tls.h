/* tls.h - TLS on non-blocking sockets with OpenSSL's libssl, for the client port (the HTTP/1.1
 * gateway and gRPC) and the peer port, as etcd's flags configure it (--cert-file, --key-file,
 * --trusted-ca-file, --client-cert-auth, --auto-tls, --cipher-suites and the --peer-* set).
 * Layer L0: it knows no other module and no event loop. A connection is driven by its owner's
 * events: tls_handshake, tls_read and tls_write never block and say which way the socket must
 * become ready before the call is worth repeating.
 *
 * As etcd 3.4 (pkg/transport/listener.go): TLS 1.2 at least; a server with a trusted CA file or
 * --client-cert-auth requires and verifies a client certificate; an allowed CN is checked on the
 * verified peer certificate on both sides; --auto-tls makes a self-signed certificate (ECDSA
 * P-521, organisation "etcd", one year, the hosts as subject alternative names) at start, and a
 * client with one does not verify the server (InsecureSkipVerify). A client that verifies checks
 * the server's name or IP address as well.
 *
 * ALPN: the server takes "http/1.1" when the client offers it, else "h2": browsers and curl
 * (which offer both) get the HTTP/1.1 gateway, gRPC clients (which offer only "h2") get HTTP/2.
 */
#ifndef METASTORE_TLS_H
#define METASTORE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tls_ctx;
struct tls_conn;

struct tls_config {
    const char *cert_file;       /* PEM certificate (chain); with key_file, or auto_tls */
    const char *key_file;        /* PEM private key */
    const char *trusted_ca_file; /* PEM CAs verifying the other side; NULL: none */
    bool client_cert_auth;       /* server: require a client certificate the CAs verify */
    bool auto_tls;               /* no files: a self-signed certificate made now */
    const char *cipher_suites;   /* Go's (IANA) names, comma-separated; NULL or "": defaults */
    const char *allowed_cn;      /* the verified peer certificate's CN must be this; NULL: any */
    const char *const *hosts;    /* auto_tls: names and IP addresses the certificate is for */
    size_t n_hosts;
};

/* A server or client context. NULL with msg filled (unreadable files, a key that does not match
 * the certificate, an unknown cipher suite: etcd's "unexpected TLS cipher suite %q", out of
 * memory). Owned by the caller: tls_ctx_destroy, after every connection made from it. */
struct tls_ctx *tls_ctx_server(const struct tls_config *cfg, char *msg, size_t msgsz);
struct tls_ctx *tls_ctx_client(const struct tls_config *cfg, char *msg, size_t msgsz);
void tls_ctx_destroy(struct tls_ctx *t); /* accepts NULL */

/* A connection on fd (connected, non-blocking), server side (tls_accept) or client side
 * (tls_connect; host: the name or IP address the server's certificate must be for, checked when
 * the context verifies). fd stays the caller's: tls_conn_free does not close it. NULL on OOM. */
struct tls_conn *tls_accept(struct tls_ctx *t, int fd);
struct tls_conn *tls_connect(struct tls_ctx *t, int fd, const char *host);
void tls_conn_free(struct tls_conn *c); /* accepts NULL */

enum tls_step {
    TLS_DONE = 0,   /* the handshake is complete */
    TLS_WANT_READ,  /* call again when fd is readable */
    TLS_WANT_WRITE, /* call again when fd is writable */
    TLS_FAILED,     /* the handshake failed: tls_why says why; close the connection */
};
/* Go on with the handshake. */
enum tls_step tls_handshake(struct tls_conn *c);
/* Why the handshake or the connection failed ("client didn't provide a certificate", "first
 * record does not look like a TLS handshake", OpenSSL's reason...); static or owned by c. */
const char *tls_why(const struct tls_conn *c);
/* The first bytes a server got were plain HTTP (a method name): the caller may answer so. */
bool tls_got_http(const struct tls_conn *c);

/* As read(2) and write(2) on the decrypted stream, after the handshake: > 0 bytes; read 0 at the
 * end of the stream (close_notify or the peer's FIN); -1 with errno EAGAIN when the socket must
 * become ready (tls_wants_write says which way), EPROTO or another errno on a failure. tls_write
 * may take part of the bytes. */
ssize_t tls_read(struct tls_conn *c, void *p, size_t n);
ssize_t tls_write(struct tls_conn *c, const void *p, size_t n);
/* The last call that gave EAGAIN waits for the socket to become writable (else readable). */
bool tls_wants_write(const struct tls_conn *c);
/* Decrypted bytes wait inside c: read again without waiting for the socket. */
bool tls_pending(const struct tls_conn *c);
/* Send close_notify if the socket takes it now (best effort, never waits). */
void tls_close_notify(struct tls_conn *c);

/* The negotiated ALPN protocol is "h2". */
bool tls_alpn_h2(const struct tls_conn *c);
/* The verified peer certificate's subject CN, NUL-terminated in out (cap bytes); its length, or
 * 0 when there is no verified certificate or it has no CN (or it is longer than cap - 1). */
size_t tls_peer_cn(const struct tls_conn *c, char *out, size_t cap);

#endif
