/* test_http.c - the HTTP/1.1 module: the request parser on its own, then the server in-process
 * on a loopback port driven by a client in a child process. */
#define _GNU_SOURCE
#include "metastore/buf.h"
#include "metastore/http.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const struct http_limits LIM = {.max_header_bytes = 1024,
                                       .max_body_bytes = 4096,
                                       .read_timeout_ms = 2000,
                                       .write_timeout_ms = 2000,
                                       .idle_timeout_ms = 60000,
                                       .max_conns = 100};

static enum http_parse parse(const char *in, struct http_request *r, size_t *used, bool *cont,
                             char **keep)
{
    static struct http_hdr store[HTTP_MAX_HEADERS];
    *keep = strdup(in);
    r->hdrs = store;
    return http_parse_request(*keep, strlen(in), &LIM, r, used, cont);
}

START_TEST(parse_basic)
{
    struct http_request r;
    size_t used, vl;
    bool cont;
    char *b;
    const char *req = "POST /v3/kv/range?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                      "X-Pad:   spaced value  \r\n\r\nhello";
    ck_assert_int_eq(parse(req, &r, &used, &cont, &b), HTTP_PARSE_OK);
    ck_assert_uint_eq(used, strlen(req));
    ck_assert_int_eq(r.method, HTTP_POST);
    ck_assert_int_eq(r.minor, 1);
    ck_assert(r.target_len == 16 && memcmp(r.target, "/v3/kv/range?x=1", 16) == 0);
    ck_assert(r.body_len == 5 && memcmp(r.body, "hello", 5) == 0);
    const char *v = http_header(&r, "x-pad", &vl);
    ck_assert(v && vl == 12 && memcmp(v, "spaced value", 12) == 0);
    free(b);
    /* Pipelined: only the first request is consumed. */
    ck_assert_int_eq(parse("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n\r\n", &r, &used, &cont, &b),
                     HTTP_PARSE_OK);
    ck_assert_uint_eq(used, 18);
    ck_assert_int_eq(r.minor, 0);
    ck_assert_uint_eq(r.body_len, 0);
    free(b);
    /* Bare LF line ends are accepted. */
    ck_assert_int_eq(parse("DELETE /x HTTP/1.1\nA: b\n\n", &r, &used, &cont, &b), HTTP_PARSE_OK);
    ck_assert_int_eq(r.method, HTTP_DELETE);
    free(b);
}
END_TEST

START_TEST(parse_incomplete_and_limits)
{
    struct http_request r;
    size_t used;
    bool cont;
    char *b;
    ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Le", &r, &used, &cont, &b), HTTP_PARSE_MORE);
    free(b);
    ck_assert_int_eq(
        parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", &r, &used, &cont, &b),
        HTTP_PARSE_MORE);
    ck_assert(!cont);
    free(b);
    ck_assert_int_eq(parse("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
                           &r, &used, &cont, &b),
                     HTTP_PARSE_MORE);
    ck_assert(cont);
    free(b);
    ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", &r, &used, &cont, &b),
                     HTTP_PARSE_BODY_BIG);
    free(b);
    char big[2000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ck_assert_int_eq(parse(big, &r, &used, &cont, &b), HTTP_PARSE_HDR_BIG);
    free(b);
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\n folded: x\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(parse(bad[i], &r, &used, &cont, &b) == HTTP_PARSE_BAD, "%s", bad[i]);
        free(b);
    }
    ck_assert_int_eq(parse("GET / HTTP/2.0\r\n\r\n", &r, &used, &cont, &b), HTTP_PARSE_VERSION);
    free(b);
}
END_TEST

START_TEST(parse_chunked)
{
    struct http_request r;
    size_t used;
    bool cont;
    char *b;
    const char *req = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    ck_assert_int_eq(parse(req, &r, &used, &cont, &b), HTTP_PARSE_OK);
    ck_assert_uint_eq(used, strlen(req) - 4);
    ck_assert(r.body_len == 12 && memcmp(r.body, "hello, world", 12) == 0);
    free(b);
    /* Every prefix is incomplete, never an error and never a wrong answer. */
    for (size_t n = 0; n < strlen(req) - 4; n++) {
        char *c = strndup(req, n);
        enum http_parse p = http_parse_request(c, n, &LIM, &r, &used, &cont);
        ck_assert_msg(p == HTTP_PARSE_MORE, "prefix %zu: %d", n, p);
        free(c);
    }
    /* A chunked body over the limit. */
    char over[6000];
    int k = snprintf(over, sizeof(over),
                     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "1388\r\n");
    memset(over + k, 'x', sizeof(over) - (size_t)k - 1);
    over[sizeof(over) - 1] = 0;
    ck_assert_int_eq(parse(over, &r, &used, &cont, &b), HTTP_PARSE_BODY_BIG);
    free(b);
}
END_TEST

/* Parse len bytes (NULs included) from a private copy. */
static enum http_parse parse_n(const char *in, size_t len, struct http_request *r)
{
    static struct http_hdr store[HTTP_MAX_HEADERS];
    char *c = malloc(len + 1);
    size_t used;
    bool cont;
    memcpy(c, in, len);
    r->hdrs = store;
    enum http_parse p = http_parse_request(c, len, &LIM, r, &used, &cont);
    free(c);
    return p;
}

#define PARSE_LIT(s, r) parse_n(s, sizeof(s) - 1, r)

/* Chunk sizes near 2^64 once wrapped the bound checks (out + size > max): the compacting pass
 * then moved SIZE_MAX bytes. */
START_TEST(parse_chunk_size_overflow)
{
    struct http_request r;
    const char *te = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *bodies[] = {
        "1\r\nA\r\nFFFFFFFFFFFFFFFF\r\n0\r\n\r\n", /* out + size wraps to 0 */
        "FFFFFFFFFFFFFFFF\r\nA\r\n0\r\n\r\n",      /* size + 1 wraps to 0 */
        "1001\r\n",                                /* over the limit, data not sent */
        "1\r\nA\r\nFFFFFFFFFFFFF000\r\n",          /* 4096 - 1 + size wraps */
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char req[256];
        int k = snprintf(req, sizeof(req), "%s%s", te, bodies[i]);
        ck_assert_msg(parse_n(req, (size_t)k, &r) == HTTP_PARSE_BODY_BIG, "%s", bodies[i]);
    }
    /* Seventeen digits do not fit 64 bits. */
    ck_assert_int_eq(PARSE_LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "10000000000000000\r\n",
                               &r),
                     HTTP_PARSE_BAD);
}
END_TEST

/* RFC 9112 framing: what is ambiguous is refused (or closes the connection), control bytes are
 * errors instead of silent ends of a string. */
START_TEST(parse_strict_framing)
{
    struct http_request r;
    const char *bad[] = {
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x12\r\n012345678901234567\r\n"
        "0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2 x\r\nab\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;a\rb\r\nab\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\x7f"
        "b\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\x01\r\n\r\n",
        "GET /a\x7f"
        "b HTTP/1.1\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse_n(bad[i], strlen(bad[i]), &r) == HTTP_PARSE_BAD, "%zu: %s", i, bad[i]);
    /* A NUL in the target or in a header value: bad, not a shorter string. */
    ck_assert_int_eq(PARSE_LIT("POST /v3/kv/range\0junk HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r),
                     HTTP_PARSE_BAD);
    ck_assert_int_eq(PARSE_LIT("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", &r), HTTP_PARSE_BAD);
    /* Both framings: chunked wins and the connection must close after the answer. */
    ck_assert_int_eq(PARSE_LIT("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: "
                               "chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
                               &r),
                     HTTP_PARSE_OK);
    ck_assert(r.must_close && r.body_len == 2);
    ck_assert_int_eq(PARSE_LIT("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
                               "2 ;name=\"v\"\r\nab\r\n0\r\n\r\n",
                               &r),
                     HTTP_PARSE_OK);
    ck_assert(!r.must_close && r.body_len == 2);
    /* Tabs and obs-text are field bytes. */
    ck_assert_int_eq(PARSE_LIT("GET /\xc3\xa9 HTTP/1.1\r\nX-A: a\tb \xc3\xa9\r\n\r\n", &r),
                     HTTP_PARSE_OK);
    ck_assert_int_eq(PARSE_LIT("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nab", &r),
                     HTTP_PARSE_OK);
    ck_assert(!r.must_close);
}
END_TEST

/* ---- the server, in-process ---- */

static struct event_base *base;
static struct http_server *hs;
static struct http_request *held; /* a request answered later (async) */
static int closes;                /* close callbacks of /hold streams */
static int pieces;                /* /big: pieces written so far */
#define BIG_PIECE (32 << 10)
/* /large's body and /big's stream are larger than a socket takes while its peer reads nothing
 * (the send buffer grows up to tcp_wmem's maximum, 4 MiB by default; the client's receive
 * buffer is set small): twice that maximum plus 1 MiB, set by server_roundtrip. */
static size_t large_len;
#define BIG_PIECES ((int)(large_len / BIG_PIECE))

/* The kernel's largest TCP send buffer (the third field of tcp_wmem), 4 MiB if unknown. */
static size_t wmem_max(void)
{
    unsigned long lo, def, max = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    if (f) {
        if (fscanf(f, "%lu %lu %lu", &lo, &def, &max) != 3)
            max = 0;
        fclose(f);
    }
    return max ? (size_t)max : (size_t)4 << 20;
}

static void on_hold_close(void *arg)
{
    (void)arg;
    closes++;
}

/* /big: each piece once the one before has left (as the snapshot stream does). */
static void on_big_drain(void *arg)
{
    struct http_request *r = arg;
    static char piece[BIG_PIECE];
    if (pieces == BIG_PIECES) {
        http_stream_end(r);
        return;
    }
    memset(piece, 'a' + pieces % 26, sizeof(piece));
    pieces++;
    http_stream_write(r, piece, sizeof(piece));
}

static void handler(void *ctx, struct http_request *r)
{
    (void)ctx;
    static const struct http_hdr ct = {"Content-Type", 12, "text/plain", 10};
    if (r->target_len == 6 && memcmp(r->target, "/async", 6) == 0) {
        held = r; /* answered by the timer below */
        return;
    }
    if (r->target_len == 7 && memcmp(r->target, "/stream", 7) == 0) {
        http_stream_start(r, 200, &ct, 1);
        http_stream_write(r, "one\n", 4);
        http_stream_write(r, "two\n", 4);
        http_stream_end(r);
        return;
    }
    if (r->target_len == 6 && memcmp(r->target, "/large", 6) == 0) {
        /* More than the socket takes at once: the rest is buffered. */
        size_t n = large_len;
        char *big = malloc(n);
        ck_assert_ptr_nonnull(big);
        for (size_t i = 0; i < n; i++)
            big[i] = (char)('a' + i % 23);
        http_respond(r, 200, &ct, 1, big, n);
        free(big);
        return;
    }
    if (r->target_len == 6 && memcmp(r->target, "/queue", 6) == 0) {
        /* Two chunks queued, one of three parts, written by one flush. */
        struct iovec v[3] = {{"a", 1}, {"", 0}, {"bc", 2}};
        http_stream_start(r, 200, &ct, 1);
        ck_assert(http_stream_queue(r, v, 3));
        ck_assert(http_stream_queue(r, v + 2, 1));
        http_flush(r);
        http_stream_end(r);
        return;
    }
    if (r->target_len == 4 && memcmp(r->target, "/big", 4) == 0) {
        pieces = 0;
        http_stream_start(r, 200, &ct, 1);
        http_set_drain_cb(r, 0, on_big_drain, r);
        return;
    }
    if (r->target_len == 5 && memcmp(r->target, "/hold", 5) == 0) {
        http_stream_start(r, 200, &ct, 1);
        http_stream_write(r, "held\n", 5);
        http_stream_drop_input(r);
        http_set_close_cb(r, on_hold_close, NULL);
        return;
    }
    if (r->target_len == 7 && memcmp(r->target, "/pieces", 7) == 0) {
        char body[32];
        int k = snprintf(body, sizeof(body), "pieces=%d", pieces);
        http_respond(r, 200, &ct, 1, body, (size_t)k);
        return;
    }
    if (r->target_len == 7 && memcmp(r->target, "/closes", 7) == 0) {
        char body[32];
        int k = snprintf(body, sizeof(body), "closes=%d", closes);
        http_respond(r, 200, &ct, 1, body, (size_t)k);
        return;
    }
    if (r->target_len == 6 && memcmp(r->target, "/abort", 6) == 0) {
        http_stream_start(r, 200, &ct, 1);
        http_stream_write(r, "part", 4);
        http_abort(r);
        return;
    }
    if (r->target_len == 5 && memcmp(r->target, "/stop", 5) == 0) {
        http_respond(r, 200, &ct, 1, "bye", 3);
        event_base_loopexit(base, NULL);
        return;
    }
    char body[128];
    int k = snprintf(body, sizeof(body), "%.*s:%zu", (int)r->target_len, r->target, r->body_len);
    http_respond(r, 200, &ct, 1, body, (size_t)k);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (held) {
        http_respond(held, 202, NULL, 0, "late", 4);
        held = NULL;
    }
}

static char *exchange(int port, const char *req, int timeout_ms)
{
    int fd = tu_connect(port);
    ck_assert_int_ge(fd, 0);
    tu_send_all(fd, req, strlen(req));
    size_t n;
    char *out = tu_read_all(fd, timeout_ms, &n);
    close(fd);
    return out;
}

/* Bytes of the answers on our connection fd that the kernel holds (sent by the server, not yet
 * read by us), or -1. */
static long in_kernel(int port, int fd)
{
    long stx, srx, ctx, crx;
    int lp = tu_local_port(fd);
    if (!tu_tcp_queues(port, lp, &stx, &srx) || !tu_tcp_queues(lp, port, &ctx, &crx))
        return -1;
    return stx + crx;
}

/* A connection whose receive buffer stays small (64 KiB asked; no autotuning), or -1. */
static int connect_small_rcvbuf(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 64 << 10;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The number in "pieces=N" from /pieces, or -1. */
static int big_pieces(int port)
{
    char *o = exchange(port, "GET /pieces HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    char *p = strstr(o, "pieces=");
    int n = p ? atoi(p + 7) : -1;
    free(o);
    return n;
}

/* The client side, in a child: exits 0 if every answer is right. */
static int client(int port)
{
    char *o = exchange(port, "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    if (!strstr(o, "HTTP/1.1 200 OK\r\n") || !strstr(o, "Content-Length: 4\r\n") ||
        !strstr(o, "\r\n\r\n/a:0") || !strstr(o, "Date: "))
        return 1;
    free(o);
    /* Keep-alive + pipelining: three requests, three answers in order. */
    o = exchange(port,
                 "POST /1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\n\r\n"
                 "GET /3 HTTP/1.1\r\nConnection: close\r\n\r\n",
                 3000);
    char *p1 = strstr(o, "/1:3"), *p2 = strstr(o, "/2:0"), *p3 = strstr(o, "/3:0");
    if (!p1 || !p2 || !p3 || p1 > p2 || p2 > p3)
        return 2;
    free(o);
    /* An async answer, then another request on the same connection. */
    o = exchange(
        port, "GET /async HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    if (!strstr(o, "HTTP/1.1 202 Accepted") && !strstr(o, "HTTP/1.1 202 Unknown"))
        return 3;
    if (!strstr(o, "/after:0"))
        return 4;
    free(o);
    /* A chunked request and a chunked stream back. */
    o = exchange(port,
                 "POST /ch HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 "2\r\nab\r\n0\r\n\r\n",
                 3000);
    if (!strstr(o, "/ch:2"))
        return 5;
    free(o);
    o = exchange(port, "GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    if (!strstr(o, "Transfer-Encoding: chunked") ||
        !strstr(o, "4\r\none\n\r\n4\r\ntwo\n\r\n0\r\n\r\n"))
        return 6;
    free(o);
    /* HTTP/1.0: no chunking, the stream ends with the connection. */
    o = exchange(port, "GET /stream HTTP/1.0\r\n\r\n", 3000);
    if (!strstr(o, "HTTP/1.0 200") || strstr(o, "chunked") || !strstr(o, "one\ntwo\n"))
        return 7;
    free(o);
    /* Expect: 100-continue. */
    int fd = tu_connect(port);
    const char *h = "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
                    "Connection: close\r\n\r\n";
    tu_send_all(fd, h, strlen(h));
    size_t n;
    char *c100 = tu_read_all(fd, 300, &n);
    if (!strstr(c100, "HTTP/1.1 100 Continue"))
        return 8;
    free(c100);
    tu_send_all(fd, "xy", 2);
    o = tu_read_all(fd, 3000, &n);
    close(fd);
    if (!strstr(o, "/e:2"))
        return 9;
    free(o);
    /* Errors: oversized headers, oversized body, garbage, HTTP/2. */
    char big[2048];
    memset(big, 'h', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
    o = exchange(port, big, 3000);
    if (!strstr(o, " 431 "))
        return 10;
    free(o);
    o = exchange(port, "POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", 3000);
    if (!strstr(o, " 413 "))
        return 11;
    free(o);
    o = exchange(port, "\x01\x02garbage\r\n\r\n", 3000);
    if (!strstr(o, " 400 "))
        return 12;
    free(o);
    o = exchange(port, "GET / HTTP/2.0\r\n\r\n", 3000);
    if (!strstr(o, " 505 "))
        return 13;
    free(o);
    /* A large body, read late: every byte arrives, in order. The handler writes what the
     * socket takes (until EAGAIN) and buffers the rest: once the answer has begun to arrive
     * and another request has been answered since (so the handler has returned), the bytes
     * the kernel holds must fall short of the body, the rest waiting in the server for us. */
    fd = connect_small_rcvbuf(port);
    tu_send_all(fd, "GET /large HTTP/1.1\r\nConnection: close\r\n\r\n",
                strlen("GET /large HTTP/1.1\r\nConnection: close\r\n\r\n"));
    long held_k = 0;
    for (int i = 0; i < 500 && (held_k = in_kernel(port, fd)) <= 0; i++)
        usleep(10 * 1000);
    if (held_k <= 0)
        return 22;
    free(exchange(port, "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n", 3000));
    held_k = in_kernel(port, fd);
    if (held_k < 0 || held_k >= (long)large_len)
        return 23; /* the socket took the whole body: no late-reader path was taken */
    o = tu_read_all(fd, 10000, &n);
    close(fd);
    char *lb = strstr(o, "\r\n\r\n");
    if (!lb || n - (size_t)(lb + 4 - o) != large_len)
        return 20;
    lb += 4;
    for (size_t i = 0; i < large_len; i++)
        if (lb[i] != (char)('a' + i % 23))
            return 21;
    free(o);
    /* Queued chunks go out with one flush. */
    o = exchange(port, "GET /queue HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    if (!strstr(o, "\r\n\r\n3\r\nabc\r\n2\r\nbc\r\n0\r\n\r\n"))
        return 15;
    free(o);
    /* A stream paced by the drain callback reaches its end though the client starts late. The
     * client reads only once the stream is seen waiting for it: fewer than all pieces written
     * and fewer bytes in the kernel than those pieces (a piece is written only when the one
     * before has left, so the server holds the rest of the last one, refused by the socket). */
    fd = connect_small_rcvbuf(port);
    tu_send_all(fd, "GET /big HTTP/1.0\r\n\r\n", strlen("GET /big HTTP/1.0\r\n\r\n"));
    bool waiting = false;
    for (int i = 0; i < 500 && !waiting; i++) {
        int made = big_pieces(port);
        long k = in_kernel(port, fd);
        if (made == BIG_PIECES)
            return 24; /* the stream ended with nobody reading: nothing was paced */
        waiting = made > 0 && k >= 0 && k < (long)made * BIG_PIECE;
        if (!waiting)
            usleep(10 * 1000);
    }
    if (!waiting)
        return 25;
    o = tu_read_all(fd, 10000, &n);
    close(fd);
    char *body = strstr(o, "\r\n\r\n");
    if (!body || n - (size_t)(body + 4 - o) != (size_t)BIG_PIECES * BIG_PIECE)
        return 16;
    free(o);
    /* A stream that drops its input: stray bytes are read and dropped, the close is seen. */
    for (int i = 0; i < 3; i++) {
        fd = tu_connect(port);
        tu_send_all(fd, "GET /hold HTTP/1.1\r\n\r\n", strlen("GET /hold HTTP/1.1\r\n\r\n"));
        for (int k = 0; k < 2000; k++)
            tu_send_all(fd, "stray bytes nobody reads\n", strlen("stray bytes nobody reads\n"));
        char *held_out = tu_read_all(fd, 300, &n);
        if (!strstr(held_out, "held\n"))
            return 17;
        free(held_out);
        close(fd);
    }
    int seen = 0;
    for (int tries = 0; tries < 100 && !seen; tries++) {
        o = exchange(port, "GET /closes HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
        seen = strstr(o, "closes=3") != NULL;
        free(o);
        if (!seen)
            usleep(20 * 1000);
    }
    if (!seen)
        return 18;
    /* An aborted stream ends without its last chunk. */
    o = exchange(port, "GET /abort HTTP/1.1\r\n\r\n", 3000);
    if (!strstr(o, "4\r\npart\r\n") || strstr(o, "0\r\n\r\n"))
        return 19;
    free(o);
    /* A client that disappears mid-request, and many that come and go. */
    for (int i = 0; i < 50; i++) {
        fd = tu_connect(port);
        tu_send_all(fd, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 44);
        close(fd);
    }
    o = exchange(port, "GET /stop HTTP/1.1\r\nConnection: close\r\n\r\n", 3000);
    if (!strstr(o, "bye"))
        return 14;
    free(o);
    return 0;
}

START_TEST(server_roundtrip)
{
    large_len = (2 * wmem_max() + (1u << 20)) / BIG_PIECE * BIG_PIECE;
    base = event_base_new();
    hs = http_server_create(base, &LIM, handler, NULL);
    ck_assert_ptr_nonnull(hs);
    int port = 0;
    for (int tries = 0; tries < 20 && !port; tries++) {
        int p = 20000 + (int)(getpid() * 7 + tries * 131) % 30000;
        if (http_server_listen(hs, "127.0.0.1", (uint16_t)p) == 0)
            port = p;
    }
    ck_assert_int_ne(port, 0);
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 50000};
    event_add(tick, &tv);
    pid_t pid = fork();
    if (pid == 0)
        _exit(client(port));
    struct timeval limit = {20, 0};
    event_base_loopexit(base, &limit);
    event_base_dispatch(base);
    int status;
    waitpid(pid, &status, 0);
    event_free(tick);
    http_server_destroy(hs);
    event_base_free(base);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client check %d failed",
                  WEXITSTATUS(status));
}
END_TEST

/* ---- floods that never make a request, and descriptors kept from connections ---- */

/* Blank lines before a request count against the header limit, and a chunk-size line of
 * digits only against the chunk-line limit: both were "need more" without end. */
START_TEST(parse_endless_lines)
{
    struct http_request r;
    size_t used;
    bool cont;
    char *b;
    char flood[3000];
    for (size_t i = 0; i + 1 < sizeof(flood); i += 2)
        memcpy(flood + i, "\r\n", 2);
    flood[sizeof(flood) - 1] = 0;
    ck_assert_int_eq(parse(flood, &r, &used, &cont, &b), HTTP_PARSE_BAD);
    free(b);
    const char *head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    char *zeros = malloc(strlen(head) + 5001);
    ck_assert_ptr_nonnull(zeros);
    strcpy(zeros, head);
    memset(zeros + strlen(head), '0', 5000);
    zeros[strlen(head) + 5000] = 0;
    ck_assert_int_eq(parse(zeros, &r, &used, &cont, &b), HTTP_PARSE_BAD);
    free(b);
    /* Under the limit it may still be a size line on its way. */
    zeros[strlen(head) + 100] = 0;
    ck_assert_int_eq(parse(zeros, &r, &used, &cont, &b), HTTP_PARSE_MORE);
    free(b);
    free(zeros);
}
END_TEST

static http_h2_fn serve_h2; /* installed by serve_client when set */

/* Runs the in-process server with lim until a client (in a child) asks for /stop or limit_s
 * passes; returns the client's exit status. */
static int serve_client(const struct http_limits *lim, http_handler_fn fn, int (*cl)(int port),
                        int limit_s)
{
    base = event_base_new();
    hs = http_server_create(base, lim, fn, NULL);
    ck_assert_ptr_nonnull(hs);
    if (serve_h2)
        http_server_set_h2(hs, serve_h2, NULL);
    int port = 0;
    for (int tries = 0; tries < 20 && !port; tries++) {
        int p = 20000 + (int)(getpid() * 11 + tries * 137) % 30000;
        if (http_server_listen(hs, "127.0.0.1", (uint16_t)p) == 0)
            port = p;
    }
    ck_assert_int_ne(port, 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(cl(port));
    struct timeval tv = {limit_s, 0};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    int status;
    waitpid(pid, &status, 0);
    http_server_destroy(hs);
    event_base_free(base);
    hs = NULL;
    base = NULL;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

/* Send what the peer takes within timeout_ms; errors end it quietly. */
static void send_for(int fd, const char *p, size_t len, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    while (len && tu_now_ms() < end) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
}

/* 4000 body bytes (under the 4096 limit) in 1-byte chunks with an extension each: 140 KB on
 * the wire, far more than the server buffers (headers + body limit + a read). Answered 413 at
 * once, not dropped at the read timeout. */
static int chunk_flood_client(int port)
{
    struct buf req;
    buf_init(&req);
    buf_puts(&req, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 4000; i++)
        buf_puts(&req, "1;ext=aaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n");
    buf_puts(&req, "0\r\n\r\n");
    int fd = tu_connect(port);
    if (fd < 0)
        return 1;
    send_for(fd, (const char *)req.p, req.len, 1000);
    buf_fini(&req);
    size_t n;
    char *o = tu_read_all(fd, 1000, &n);
    close(fd);
    int rc = strstr(o, "HTTP/1.1 413 ") ? 0 : 2;
    free(o);
    free(exchange(port, "GET /stop HTTP/1.1\r\nConnection: close\r\n\r\n", 3000));
    return rc;
}

START_TEST(server_chunk_framing_over_room)
{
    ck_assert_int_eq(serve_client(&LIM, handler, chunk_flood_client, 20), 0);
}
END_TEST

/* The HTTP/2 side of the test: answers "h2:" and the bytes it was given, then closes. */
static bool echo_h2(void *ctx, int fd, struct tls_conn *tls, const void *p, size_t len)
{
    (void)ctx;
    (void)tls;
    char head[32];
    int k = snprintf(head, sizeof(head), "h2:%zu:", len);
    send_for(fd, head, (size_t)k, 1000);
    send_for(fd, p, len, 1000);
    close(fd);
    return true;
}

/* The preface in two pieces (a prefix of it is not yet a verdict) goes to the h2 handler with
 * every byte read; a request line that only starts like it, and plain HTTP/1.1, stay here. */
static int h2_client(int port)
{
    int fd = tu_connect(port);
    if (fd < 0)
        return 1;
    send_for(fd, HTTP_H2_PREFACE, 10, 1000);
    usleep(100 * 1000);
    send_for(fd, HTTP_H2_PREFACE + 10, HTTP_H2_PREFACE_LEN - 10, 1000);
    size_t n;
    char *o = tu_read_all(fd, 2000, &n);
    close(fd);
    int rc = n >= 6 + HTTP_H2_PREFACE_LEN && strncmp(o, "h2:", 3) == 0 &&
                     memcmp(o + n - HTTP_H2_PREFACE_LEN, HTTP_H2_PREFACE, HTTP_H2_PREFACE_LEN) == 0
                 ? 0
                 : 2;
    free(o);
    char *r = exchange(port, "PRI * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 2000);
    if (!r || strncmp(r, "h2:", 3) == 0 || strncmp(r, "HTTP/1.1 ", 9) != 0)
        rc = 3;
    free(r);
    r = exchange(port, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 2000);
    if (!r || strncmp(r, "HTTP/1.1 200", 12) != 0)
        rc = 4;
    free(r);
    free(exchange(port, "GET /stop HTTP/1.1\r\nConnection: close\r\n\r\n", 3000));
    return rc;
}

/* A client that sends a prefix of the preface and stops is closed at the read timeout, as one
 * that stops in the middle of a request line is (it used to stay open, holding a descriptor). */
static int preface_stall_client(int port)
{
    int fd = tu_connect(port);
    if (fd < 0)
        return 1;
    send_for(fd, "PRI", 3, 1000);
    int64_t t0 = tu_now_ms();
    size_t n;
    char *o = tu_read_all(fd, 8000, &n);
    int64_t took = tu_now_ms() - t0;
    free(o);
    close(fd);
    free(exchange(port, "GET /stop HTTP/1.1\r\nConnection: close\r\n\r\n", 3000));
    return took < 6000 ? 0 : 2;
}

/* serve_client with echo_h2 as the HTTP/2 side. */
static int serve_client_h2(int (*cl)(int port))
{
    serve_h2 = echo_h2;
    int rc = serve_client(&LIM, handler, cl, 20);
    serve_h2 = NULL;
    return rc;
}

START_TEST(server_h2_preface_timeout)
{
    ck_assert_int_eq(serve_client_h2(preface_stall_client), 0);
}
END_TEST

START_TEST(server_h2_handoff)
{
    ck_assert_int_eq(serve_client_h2(h2_client), 0);
}
END_TEST

/* /fds: how many of 8 files the server can open now; /stats: its counters. */
static void cap_handler(void *ctx, struct http_request *r)
{
    char body[128];
    int k;
    if (r->target_len == 4 && memcmp(r->target, "/fds", 4) == 0) {
        int fds[8], got = 0;
        for (int i = 0; i < 8; i++)
            if ((fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
                got++;
        for (int i = 0; i < 8; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        k = snprintf(body, sizeof(body), "fds=%d", got);
    } else if (r->target_len == 6 && memcmp(r->target, "/stats", 6) == 0) {
        struct http_stats st;
        http_server_stats(hs, &st);
        k = snprintf(body, sizeof(body), "scans=%zu refused=%zu conns=%zu", st.reclaim_scans,
                     st.refused, st.conns);
    } else {
        handler(ctx, r);
        return;
    }
    http_respond(r, 200, NULL, 0, body, (size_t)k);
}

/* One answer on a keep-alive connection, or NULL. */
static char *ask(int fd, const char *req)
{
    tu_send_all(fd, req, strlen(req));
    size_t n;
    char *o = tu_read_all(fd, 500, &n);
    return o;
}

enum { BUSY = 60, FLOOD = 200 };

static int cap_client(int port)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max; /* the child's own connections need their descriptors */
    setrlimit(RLIMIT_NOFILE, &rl);
    int check = tu_connect(port);
    if (check < 0)
        return 1;
    char *o = ask(check, "GET /x HTTP/1.1\r\n\r\n");
    int ok = strstr(o, "/x:0") != NULL;
    free(o);
    if (!ok)
        return 2;
    /* Busy connections, each in the middle of a request, beyond what the server may hold. */
    int busy[BUSY];
    for (int i = 0; i < BUSY; i++) {
        busy[i] = tu_connect(port);
        if (busy[i] >= 0)
            tu_send_all(busy[i], "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", 42);
    }
    usleep(300 * 1000);
    o = ask(check, "GET /fds HTTP/1.1\r\n\r\n");
    ok = strstr(o, "fds=8") != NULL;
    if (!ok)
        fprintf(stderr, "the server with busy connections: %s\n", o);
    free(o);
    if (!ok)
        return 3;
    /* A flood of new clients against busy connections only: refused, with few scans. */
    for (int i = 0; i < FLOOD; i++) {
        int fd = tu_connect(port);
        if (fd >= 0)
            close(fd);
    }
    usleep(300 * 1000);
    o = ask(check, "GET /stats HTTP/1.1\r\n\r\n");
    size_t scans = 0, refused = 0;
    char *p = strstr(o, "scans=");
    if (!p || sscanf(p, "scans=%zu refused=%zu", &scans, &refused) != 2)
        return 4;
    free(o);
    fprintf(stderr, "flood: %zu scans, %zu refused\n", scans, refused);
    if (refused < FLOOD / 2)
        return 5;
    if (scans * 10 > refused)
        return 6;
    for (int i = 0; i < BUSY; i++)
        if (busy[i] >= 0)
            close(busy[i]);
    close(check);
    free(exchange(port, "GET /stop HTTP/1.1\r\nConnection: close\r\n\r\n", 3000));
    return 0;
}

/* Under a small descriptor limit, connections beyond the cap are refused and the server keeps
 * descriptors to open files with; new clients against busy ones cost one scan per 100 ms. */
START_TEST(server_fd_cap)
{
    struct rlimit was, low;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
    low = was;
    low.rlim_cur = (rlim_t)tu_open_fds(0) + 48;
    ck_assert_uint_le(low.rlim_cur, was.rlim_max);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = serve_client(&LIM, cap_handler, cap_client, 30);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &was), 0);
    ck_assert_msg(rc == 0, "client check %d failed", rc);
}
END_TEST

/* RFC 9112 3.2: two Host fields are 400; none on HTTP/1.1 is too when the server asks for it
 * (the gateway does, as Go's server). After chunk data only CRLF, as in Go; a chunk-size line
 * may end in a bare LF (Go accepts it). */
START_TEST(parse_host_and_chunk_lf)
{
    struct http_request r;
    size_t used;
    bool cont;
    char *b;
    ck_assert_int_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", &r, &used, &cont, &b),
                     HTTP_PARSE_BAD);
    free(b);
    struct http_limits lim = LIM;
    lim.host_required = true;
    static struct http_hdr store[HTTP_MAX_HEADERS];
    r.hdrs = store;
    char none[] = "GET / HTTP/1.1\r\nA: b\r\n\r\n";
    ck_assert_int_eq(http_parse_request(none, strlen(none), &lim, &r, &used, &cont),
                     HTTP_PARSE_NO_HOST);
    char old[] = "GET / HTTP/1.0\r\n\r\n";
    ck_assert_int_eq(http_parse_request(old, strlen(old), &lim, &r, &used, &cont), HTTP_PARSE_OK);
    char one[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    ck_assert_int_eq(http_parse_request(one, strlen(one), &lim, &r, &used, &cont), HTTP_PARSE_OK);
    const char *lf_data = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\n0\r\n\r\n";
    ck_assert_int_eq(parse(lf_data, &r, &used, &cont, &b), HTTP_PARSE_BAD);
    free(b);
    const char *lf_size = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n0\n\r\n";
    ck_assert_int_eq(parse(lf_size, &r, &used, &cont, &b), HTTP_PARSE_OK);
    ck_assert(r.body_len == 2 && memcmp(r.body, "ab", 2) == 0);
    free(b);
}
END_TEST

/* A '%' in the target before the query must start an escape of two hex digits, and the target
 * must be "*", start with '/' or have a scheme, or the request is refused as Go's
 * url.ParseRequestURI refuses it (before the Host field is looked at). */
START_TEST(parse_bad_escape)
{
    struct http_request r;
    struct http_limits lim = LIM;
    lim.host_required = true;
    static struct http_hdr store[HTTP_MAX_HEADERS];
    const char *bad[] = {"GET /v3/%zz HTTP/1.1\r\n\r\n",  "GET /%2 HTTP/1.1\r\n\r\n",
                         "GET /a% HTTP/1.1\r\n\r\n",      "GET /%%41 HTTP/1.1\r\n\r\n",
                         "GET *%zz HTTP/1.1\r\n\r\n",     "GET http://x/%g0 HTTP/1.1\r\n\r\n",
                         "GET /%zz?q=1 HTTP/1.1\r\n\r\n", "GET foo HTTP/1.1\r\n\r\n",
                         "GET foo?/ HTTP/1.1\r\n\r\n",    "GET :x HTTP/1.1\r\n\r\n",
                         "GET 1a:/ HTTP/1.1\r\n\r\n",     "GET ** HTTP/1.1\r\n\r\n",
                         "GET ?x HTTP/1.1\r\n\r\n",       "OPTIONS *?x HTTP/1.1\r\n\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *c = strdup(bad[i]);
        size_t used;
        bool cont;
        r.hdrs = store;
        ck_assert_msg(http_parse_request(c, strlen(c), &lim, &r, &used, &cont) ==
                          HTTP_PARSE_BAD_URI,
                      "%s", bad[i]);
        free(c);
    }
    const char *good[] = {
        "GET /v3/%7a%7A HTTP/1.1\r\nHost: a\r\n\r\n", "GET /?q=%zz&r=% HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n",       "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n", "GET a+b-c.d:x HTTP/1.1\r\nHost: a\r\n\r\n"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        ck_assert_msg(parse_n(good[i], strlen(good[i]), &r) == HTTP_PARSE_OK, "%s", good[i]);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, parse_basic);
    tcase_add_test(tc, parse_incomplete_and_limits);
    tcase_add_test(tc, parse_chunked);
    tcase_add_test(tc, parse_chunk_size_overflow);
    tcase_add_test(tc, parse_strict_framing);
    tcase_add_test(tc, parse_endless_lines);
    tcase_add_test(tc, parse_host_and_chunk_lf);
    tcase_add_test(tc, parse_bad_escape);
    suite_add_tcase(s, tc);
    tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, server_roundtrip);
    tcase_add_test(tc, server_chunk_framing_over_room);
    tcase_add_test(tc, server_fd_cap);
    tcase_add_test(tc, server_h2_handoff);
    tcase_add_test(tc, server_h2_preface_timeout);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
