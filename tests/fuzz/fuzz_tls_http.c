/* fuzz_tls_http.c - the TLS-fronted HTTP entry point: what a client's bytes reach on a TLS
 * listener. The first input byte picks the path:
 *   even: the rest is the client's first flight, raw (a ClientHello, plain HTTP, garbage): the
 *         server's handshake must fail or wait, never crash, and plain HTTP is recognised only
 *         when the bytes start as a request does;
 *   odd:  a real client completes the handshake, then sends the rest as application data in
 *         pieces of 1 to 256 bytes (sizes from the input); the server reads it through TLS as
 *         the connection does (chunks, pending records) and hands the bytes to the request
 *         parser, which must stay inside them; the bytes read must equal those sent.
 * Both ends sit on a socket pair; contexts are made once (auto TLS: no files needed). */
#include "fuzz.h"
#include "metastore/http.h"
#include "metastore/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct tls_ctx *g_server, *g_client;
static const struct http_limits LIM = {.max_header_bytes = 2048, .max_body_bytes = 4096};

static void init(void)
{
    if (g_server)
        return;
    static const char *const hosts[] = {"127.0.0.1"};
    struct tls_config sc = {.auto_tls = true, .hosts = hosts, .n_hosts = 1};
    struct tls_config cc = {.auto_tls = true};
    char msg[256];
    g_server = tls_ctx_server(&sc, msg, sizeof(msg));
    g_client = tls_ctx_client(&cc, msg, sizeof(msg));
    if (!g_server || !g_client)
        abort();
}

static void parse_all(char *buf, size_t len)
{
    static struct http_hdr store[HTTP_MAX_HEADERS];
    size_t off = 0;
    while (off < len) {
        struct http_request r = {.hdrs = store};
        size_t used = 0;
        bool cont;
        enum http_parse p = http_parse_request(buf + off, len - off, &LIM, &r, &used, &cont);
        if (p != HTTP_PARSE_OK)
            return;
        if (used == 0 || used > len - off || r.body_len > LIM.max_body_bytes)
            abort();
        if (r.body_len && (r.body < buf + off || r.body + r.body_len > buf + off + used))
            abort();
        off += used;
    }
}

static void raw_flight(int sfd, int cfd, const uint8_t *data, size_t size)
{
    struct tls_conn *s = tls_accept(g_server, sfd);
    if (!s)
        abort();
    if (size > 60000)
        size = 60000; /* the socket pair's buffer */
    if (size && write(cfd, data, size) < 0)
        abort();
    shutdown(cfd, SHUT_WR);
    enum tls_step st = TLS_WANT_READ;
    for (int i = 0; i < 64 && st == TLS_WANT_READ; i++)
        st = tls_handshake(s);
    if (st == TLS_DONE)
        abort(); /* no client completes a handshake without answers */
    /* HTTP is recognised only on bytes that start as a request. */
    if (st == TLS_FAILED && tls_got_http(s) && (size < 3 || data[0] < 'A' || data[0] > 'Z'))
        abort();
    if (st == TLS_FAILED && !tls_why(s)[0])
        abort();
    tls_conn_free(s);
}

static void app_data(int sfd, int cfd, const uint8_t *data, size_t size)
{
    struct tls_conn *s = tls_accept(g_server, sfd);
    struct tls_conn *c = tls_connect(g_client, cfd, "127.0.0.1");
    if (!s || !c)
        abort();
    enum tls_step ss = TLS_WANT_READ, cs = TLS_WANT_READ;
    for (int i = 0; i < 64 && (ss != TLS_DONE || cs != TLS_DONE); i++) {
        if (cs != TLS_DONE)
            cs = tls_handshake(c);
        if (ss != TLS_DONE)
            ss = tls_handshake(s);
        if (cs == TLS_FAILED || ss == TLS_FAILED)
            abort();
    }
    if (ss != TLS_DONE || cs != TLS_DONE)
        abort();
    /* Piece sizes come from the data itself: 1 + byte % 256. */
    char *got = malloc(size + 1);
    size_t sent = 0, recvd = 0;
    for (int guard = 0; guard < 100000 && recvd < size; guard++) {
        if (sent < size) {
            size_t piece = 1 + data[sent] % 256;
            if (piece > size - sent)
                piece = size - sent;
            ssize_t w = tls_write(c, data + sent, piece);
            if (w > 0)
                sent += (size_t)w;
            else if (errno != EAGAIN)
                abort();
        }
        char chunk[700];
        for (;;) {
            ssize_t r = tls_read(s, chunk, sizeof(chunk));
            if (r > 0) {
                if ((size_t)r > size - recvd)
                    abort();
                memcpy(got + recvd, chunk, (size_t)r);
                recvd += (size_t)r;
                continue;
            }
            if (r < 0 && errno == EAGAIN && !tls_pending(s))
                break;
            abort();
        }
    }
    if (recvd != size || memcmp(got, data, size) != 0)
        abort();
    parse_all(got, size);
    tls_close_notify(c);
    char end[8];
    if (tls_read(s, end, sizeof(end)) != 0)
        abort();
    free(got);
    tls_conn_free(c);
    tls_conn_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    init();
    int fd[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) != 0)
        abort();
    fcntl(fd[0], F_SETFL, O_NONBLOCK);
    fcntl(fd[1], F_SETFL, O_NONBLOCK);
    if (data[0] & 1)
        app_data(fd[0], fd[1], data + 1, size - 1 > 16384 ? 16384 : size - 1);
    else
        raw_flight(fd[0], fd[1], data + 1, size - 1);
    close(fd[0]);
    close(fd[1]);
    return 0;
}
