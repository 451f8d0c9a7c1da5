/* test_grpc.c - integration: gRPC on the client port, from a client on nghttp2 written for the
 * tests, for what etcdctl cannot reach: errors as Trailers-Only, unknown methods, oversized and
 * truncated messages, RST_STREAM and abrupt disconnects mid-call, garbage after the preface,
 * many concurrent streams, the same request through both front doors; the Watch service's
 * many watchers on one stream, cancel, progress, compaction, fragments and a reader that stops
 * reading; the Lock and Election services: a waiting lock reset or cut off gives its place up,
 * Observe's stream freed on reset and disconnect, and bounded for a reader that stops reading;
 * the Cluster service's changes on one member (etcd's checks, answers and root-only rule).
 * After every test the server must still answer and stop cleanly (ASan: whatever a call held is
 * freed).
 */
#define _GNU_SOURCE
#include "metastore/buf.h"
#include "metastore/sha256.h"
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct tu_server srv;

static void setup(void)
{
    tu_server_start(&srv, NULL);
}

static void teardown(void)
{
    struct tu_resp r;
    tu_http(srv.port, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    tu_resp_free(&r);
    tu_server_stop(&srv);
}

/* ---- a small blocking gRPC client ---- */

#define MAX_CALLS 1100

struct call {
    int http_status;
    int grpc_status; /* -1 until seen */
    char message[256];
    struct buf data; /* response DATA (framed messages) */
    bool closed;
    uint32_t rst; /* error code of the stream's close */
};

/* A request body being sent (owned by the client, freed with it). */
struct body {
    struct buf b;
    size_t off;
    bool keep_open; /* no END_STREAM after it: the request side stays open */
    struct body *next;
};

struct gc {
    const char *token; /* sent as the "token" metadata of every call, when set */
    int fd;
    nghttp2_session *s;
    struct call calls[MAX_CALLS];
    struct body *bodies;
    bool goaway;
    uint32_t goaway_code;
    int pings; /* PINGs received from the server (not ACKs) */
    bool eof;
};

static struct call *call_of(struct gc *g, int32_t id)
{
    size_t i = (size_t)(id - 1) / 2;
    return id > 0 && i < MAX_CALLS ? &g->calls[i] : NULL;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *user)
{
    (void)s, (void)flags;
    struct call *c = call_of(user, f->hd.stream_id);
    if (!c)
        return 0;
    if (nl == 7 && memcmp(name, ":status", 7) == 0)
        c->http_status = atoi((const char *)value);
    else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
        c->grpc_status = atoi((const char *)value);
    else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0)
        snprintf(c->message, sizeof(c->message), "%.*s", (int)vl, (const char *)value);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t len,
                   void *user)
{
    (void)s, (void)flags;
    struct call *c = call_of(user, id);
    if (c)
        buf_append(&c->data, p, len);
    return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
    (void)s;
    struct call *c = call_of(user, id);
    if (c) {
        c->closed = true;
        c->rst = code;
    }
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    (void)s;
    struct gc *g = user;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        g->goaway = true;
        g->goaway_code = f->goaway.error_code;
    }
    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        g->pings++;
    return 0;
}

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *dst, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)s, (void)id, (void)user;
    struct body *b = src->ptr;
    size_t left = b->b.len - b->off;
    size_t n = left < len ? left : len;
    if (!n && b->keep_open)
        return NGHTTP2_ERR_DEFERRED;
    memcpy(dst, b->b.p + b->off, n);
    b->off += n;
    if (b->off == b->b.len && !b->keep_open)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* A client; without ping_ack it leaves the server's PINGs unanswered (a dead peer); with
 * no_credit it never gives the server's streams window back (a reader that never reads). */
static struct gc *gc_open_opt2(int port, bool preface, bool ping_ack, bool no_credit)
{
    struct gc *g = calloc(1, sizeof(*g));
    g->fd = tu_connect(port);
    ck_assert_int_ge(g->fd, 0);
    for (size_t i = 0; i < MAX_CALLS; i++) {
        g->calls[i].grpc_status = -1;
        buf_init(&g->calls[i].data);
    }
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_ping_ack(opt, !ping_ack);
    nghttp2_option_set_no_auto_window_update(opt, no_credit);
    ck_assert_int_eq(nghttp2_session_client_new2(&g->s, cb, g, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (preface)
        nghttp2_submit_settings(g->s, NGHTTP2_FLAG_NONE, NULL, 0);
    return g;
}

static struct gc *gc_open_opt(int port, bool preface, bool ping_ack)
{
    return gc_open_opt2(port, preface, ping_ack, false);
}

static struct gc *gc_open(int port, bool preface)
{
    return gc_open_opt(port, preface, true);
}

static void gc_free(struct gc *g)
{
    nghttp2_session_del(g->s);
    if (g->fd >= 0)
        close(g->fd);
    for (size_t i = 0; i < MAX_CALLS; i++)
        buf_fini(&g->calls[i].data);
    while (g->bodies) {
        struct body *b = g->bodies;
        g->bodies = b->next;
        buf_fini(&b->b);
        free(b);
    }
    free(g);
}

static int32_t gc_call_opt(struct gc *g, const char *path, const void *msg, size_t len, bool frame,
                           const char *timeout, bool keep_open);

/* Start a call: path, then the message bytes framed (or raw when !frame), then the half-close. */
static int32_t gc_call(struct gc *g, const char *path, const void *msg, size_t len, bool frame,
                       const char *timeout)
{
    return gc_call_opt(g, path, msg, len, frame, timeout, false);
}

/* The same; with keep_open the request side stays open (a stream). */
static int32_t gc_call_opt(struct gc *g, const char *path, const void *msg, size_t len, bool frame,
                           const char *timeout, bool keep_open)
{
    nghttp2_nv nv[8];
    size_t n = 0;
#define NVS(a, b) (nghttp2_nv){(uint8_t *)(a), (uint8_t *)(b), strlen(a), strlen(b), 0}
    nv[n++] = NVS(":method", "POST");
    nv[n++] = NVS(":scheme", "http");
    nv[n++] = NVS(":path", path);
    nv[n++] = NVS(":authority", "127.0.0.1");
    nv[n++] = NVS("content-type", "application/grpc");
    nv[n++] = NVS("te", "trailers");
    if (timeout)
        nv[n++] = NVS("grpc-timeout", timeout);
    if (g->token)
        nv[n++] = NVS("token", g->token);
    struct body *b = calloc(1, sizeof(*b));
    buf_init(&b->b);
    b->keep_open = keep_open;
    b->next = g->bodies;
    g->bodies = b;
    if (frame) {
        buf_putc(&b->b, 0);
        buf_put_be32(&b->b, (uint32_t)len);
    }
    buf_append(&b->b, msg, len);
    nghttp2_data_provider dp = {.source.ptr = b, .read_callback = body_read};
    int32_t id =
        nghttp2_submit_request(g->s, NULL, nv, n, b->b.len || keep_open ? &dp : NULL, NULL);
    ck_assert_int_gt(id, 0);
    ck_assert_ptr_nonnull(call_of(g, id));
    return id;
}

/* Write what nghttp2 has, read what comes, until done(g, arg) or timeout_ms or the end of the
 * connection. Returns done's last verdict. */
static bool gc_pump(struct gc *g, bool (*done)(struct gc *g, void *arg), void *arg, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    while (!done(g, arg) && tu_now_ms() < end && !g->eof) {
        const uint8_t *p;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(g->s, &p)) > 0)
            tu_send_all(g->fd, (const char *)p, (size_t)n);
        struct pollfd pf = {.fd = g->fd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0)
            continue;
        uint8_t in[16384];
        ssize_t r = read(g->fd, in, sizeof(in));
        if (r <= 0) {
            g->eof = true;
            break;
        }
        if (nghttp2_session_mem_recv(g->s, in, (size_t)r) < 0) {
            g->eof = true;
            break;
        }
    }
    return done(g, arg);
}

static bool stream_closed(struct gc *g, void *arg)
{
    return call_of(g, *(int32_t *)arg)->closed;
}

struct range {
    int32_t first, last;
};

static bool all_closed(struct gc *g, void *arg)
{
    struct range *r = arg;
    for (int32_t id = r->first; id <= r->last; id += 2)
        if (!call_of(g, id)->closed)
            return false;
    return true;
}

static bool never(struct gc *g, void *arg)
{
    (void)g, (void)arg;
    return false;
}

/* One unary call to its end. */
static struct call *unary(struct gc *g, const char *path, const void *msg, size_t len)
{
    int32_t id = gc_call(g, path, msg, len, true, NULL);
    ck_assert_msg(gc_pump(g, stream_closed, &id, 10000), "%s: no answer", path);
    return call_of(g, id);
}

/* ---- protobuf by hand: field n as bytes or varint ---- */

static void pb_bytes(struct buf *b, unsigned n, const void *p, size_t len)
{
    buf_put_uvarint(b, (uint64_t)n << 3 | 2);
    buf_put_uvarint(b, len);
    buf_append(b, p, len);
}

static void pb_varint(struct buf *b, unsigned n, uint64_t v)
{
    buf_put_uvarint(b, (uint64_t)n << 3);
    buf_put_uvarint(b, v);
}

static bool contains(const struct buf *b, const char *s)
{
    return b->len >= strlen(s) && memmem(b->p, b->len, s, strlen(s)) != NULL;
}

/* ---- tests ---- */

START_TEST(unary_kv_and_errors)
{
    struct gc *g = gc_open(srv.port, true);
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "gkey", 4);
    pb_bytes(&m, 2, "gvalue", 6);
    struct call *c = unary(g, "/etcdserverpb.KV/Put", m.p, m.len);
    ck_assert_int_eq(c->http_status, 200);
    ck_assert_int_eq(c->grpc_status, 0);
    ck_assert_uint_gt(c->data.len, 5); /* a PutResponse with its header */
    buf_fini(&m);
    /* the same key through the JSON gateway */
    int status;
    char *j = tu_post(srv.port, "/v3/kv/range", "{\"key\":\"Z2tleQ==\"}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(j, "\"value\":\"Z3ZhbHVl\""));
    free(j);
    /* and back through gRPC */
    buf_init(&m);
    pb_bytes(&m, 1, "gkey", 4);
    c = unary(g, "/etcdserverpb.KV/Range", m.p, m.len);
    ck_assert_int_eq(c->grpc_status, 0);
    ck_assert(contains(&c->data, "gvalue"));
    buf_fini(&m);
    /* etcd's error as Trailers-Only: no DATA */
    buf_init(&m);
    pb_bytes(&m, 2, "v", 1);
    c = unary(g, "/etcdserverpb.KV/Put", m.p, m.len);
    ck_assert_int_eq(c->grpc_status, 3);
    ck_assert_str_eq(c->message, "etcdserver: key is not provided");
    ck_assert_uint_eq(c->data.len, 0);
    buf_fini(&m);
    /* a future revision: OutOfRange */
    buf_init(&m);
    pb_bytes(&m, 1, "gkey", 4);
    pb_varint(&m, 4, 1000);
    c = unary(g, "/etcdserverpb.KV/Range", m.p, m.len);
    ck_assert_int_eq(c->grpc_status, 11);
    ck_assert_str_eq(c->message, "etcdserver: mvcc: required revision is a future revision");
    buf_fini(&m);
    /* unknown method and service, grpc-go's texts */
    c = unary(g, "/etcdserverpb.KV/Nope", "", 0);
    ck_assert_int_eq(c->grpc_status, 12);
    ck_assert_str_eq(c->message, "unknown method Nope for service etcdserverpb.KV");
    c = unary(g, "/foo.Bar/Baz", "", 0);
    ck_assert_int_eq(c->grpc_status, 12);
    ck_assert_str_eq(c->message, "unknown service foo.Bar");
    /* not a protobuf message */
    c = unary(g, "/etcdserverpb.KV/Range", "\xff\xff\xff", 3);
    ck_assert_int_eq(c->grpc_status, 13);
    /* an empty message is a RangeRequest without a key */
    c = unary(g, "/etcdserverpb.KV/Range", NULL, 0);
    ck_assert_int_eq(c->grpc_status, 3);
    /* no message at all, a truncated one, a truncated prefix: etcd's Unknown "EOF" and
     * "unexpected EOF" */
    int32_t id = gc_call(g, "/etcdserverpb.KV/Range", NULL, 0, false, NULL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(g, id)->grpc_status, 2);
    ck_assert_str_eq(call_of(g, id)->message, "EOF");
    id = gc_call(g, "/etcdserverpb.KV/Range",
                 "\0\0\0\0\x09"
                 "ab",
                 7, false, NULL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(g, id)->grpc_status, 2);
    ck_assert_str_eq(call_of(g, id)->message, "unexpected EOF");
    id = gc_call(g, "/etcdserverpb.KV/Range", "\0\0\0", 3, false, NULL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(g, id)->grpc_status, 2);
    ck_assert_str_eq(call_of(g, id)->message, "unexpected EOF");
    /* two messages on a unary call: the first is the request, the rest is not read (etcd) */
    struct buf two;
    buf_init(&two);
    for (int i = 0; i < 2; i++) {
        struct buf req;
        buf_init(&req);
        pb_bytes(&req, 1, i ? "two" : "one", 3);
        pb_bytes(&req, 2, "v", 1);
        buf_putc(&two, 0);
        buf_put_be32(&two, (uint32_t)req.len);
        buf_append(&two, req.p, req.len);
        buf_fini(&req);
    }
    id = gc_call(g, "/etcdserverpb.KV/Put", two.p, two.len, false, NULL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(g, id)->grpc_status, 0);
    buf_fini(&two);
    gc_free(g);
}
END_TEST

/* The connection still answers a Range. */
static void still_answers(struct gc *g)
{
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "k", 1);
    ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Range", m.p, m.len)->grpc_status, 0);
    buf_fini(&m);
}

START_TEST(oversized_message)
{
    /* etcd's limit: --max-request-bytes (1.5 MiB) + 512 KiB; refused from the prefix alone */
    struct gc *g = gc_open(srv.port, true);
    int32_t id = gc_call(g, "/etcdserverpb.KV/Put", "\0\x7f\0\0\0", 5, false, NULL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    struct call *c = call_of(g, id);
    ck_assert_int_eq(c->grpc_status, 8);
    ck_assert_str_eq(c->message, "grpc: received message larger than max (2130706432 vs. 2097152)");
    still_answers(g); /* the connection goes on */
    gc_free(g);
}
END_TEST

START_TEST(reset_and_disconnect_free_calls)
{
    /* RST_STREAM in the middle of a message, then of a call that was answered */
    struct gc *g = gc_open(srv.port, true);
    static char big[64 << 10];
    int32_t id = gc_call(g, "/etcdserverpb.KV/Put", "\0\0\x10\0\0", 5, false, NULL);
    gc_pump(g, never, NULL, 100);
    nghttp2_submit_rst_stream(g->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    gc_pump(g, never, NULL, 100);
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "k", 1);
    pb_bytes(&m, 2, big, sizeof(big));
    ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Put", m.p, m.len)->grpc_status, 0);
    /* many calls in flight, then the connection is cut */
    for (int i = 0; i < 200; i++)
        gc_call(g, "/etcdserverpb.KV/Put", m.p, m.len, true, NULL);
    gc_pump(g, never, NULL, 50);
    buf_fini(&m);
    gc_free(g);
    /* garbage after the preface: a GOAWAY, then the close */
    int fd = tu_connect(srv.port);
    const char junk[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nthis is not a frame at all, no no no";
    tu_send_all(fd, junk, sizeof(junk) - 1);
    size_t n;
    char *out = tu_read_all(fd, 5000, &n);
    close(fd);
    ck_assert_uint_ge(n, 9);
    bool goaway = false;
    for (size_t i = 0; i + 9 <= n;) { /* frames: 3-byte length, type, flags, stream */
        size_t len =
            (size_t)(uint8_t)out[i] << 16 | (size_t)(uint8_t)out[i + 1] << 8 | (uint8_t)out[i + 2];
        goaway |= out[i + 3] == 7;
        i += 9 + len;
    }
    ck_assert(goaway);
    free(out);
}
END_TEST

/* 40 Puts of 1.1 MB on one connection, their DATA interleaved as a multiplexing client sends
 * them: every one completes. Each partial message once held a buffer of twice its size (its
 * length rounded up), and at 64 MiB held the connection stopped reading with none complete. */
START_TEST(many_large_puts)
{
    struct gc *g = gc_open(srv.port, true);
    struct range r = {0, 0};
    size_t vlen = 1100000;
    char *val = malloc(vlen);
    ck_assert_ptr_nonnull(val);
    memset(val, 'v', vlen);
    char key[32];
    for (int i = 0; i < 40; i++) {
        struct buf m;
        buf_init(&m);
        int k = snprintf(key, sizeof(key), "large/%02d", i);
        pb_bytes(&m, 1, key, (size_t)k);
        pb_bytes(&m, 2, val, vlen);
        int32_t id = gc_call(g, "/etcdserverpb.KV/Put", m.p, m.len, true, NULL);
        buf_fini(&m);
        if (!r.first)
            r.first = id;
        r.last = id;
    }
    free(val);
    ck_assert_msg(gc_pump(g, all_closed, &r, 60000), "the connection stalled");
    for (int32_t id = r.first; id <= r.last; id += 2)
        ck_assert_int_eq(call_of(g, id)->grpc_status, 0);
    gc_free(g);
}
END_TEST

START_TEST(many_concurrent_streams)
{
    /* 1,000 calls open at once on one connection, all answered */
    struct gc *g = gc_open(srv.port, true);
    struct range r = {0, 0};
    char key[32];
    for (int i = 0; i < 1000; i++) {
        struct buf m;
        buf_init(&m);
        int k = snprintf(key, sizeof(key), "many/%04d", i);
        pb_bytes(&m, 1, key, (size_t)k);
        pb_bytes(&m, 2, "v", 1);
        int32_t id = gc_call(g, "/etcdserverpb.KV/Put", m.p, m.len, true, NULL);
        buf_fini(&m);
        if (!r.first)
            r.first = id;
        r.last = id;
    }
    ck_assert(gc_pump(g, all_closed, &r, 60000));
    for (int32_t id = r.first; id <= r.last; id += 2)
        ck_assert_int_eq(call_of(g, id)->grpc_status, 0);
    /* count them through the gateway */
    int status;
    char *j =
        tu_post(srv.port, "/v3/kv/range",
                "{\"key\":\"bWFueS8=\",\"range_end\":\"bWFueTA=\",\"count_only\":true}", &status);
    ck_assert_ptr_nonnull(strstr(j, "\"count\":\"1000\""));
    free(j);
    gc_free(g);
}
END_TEST

/* Read a varint at *i of p[0..n); false past the end. */
static bool varint_at(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *i < n && shift < 64; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

START_TEST(stream_and_deadline)
{
    /* LeaseKeepAlive is bidirectional: each request is answered at once (an unknown lease with
     * TTL 0); a stream the client keeps open ends at its grpc-timeout with DeadlineExceeded */
    struct gc *g = gc_open(srv.port, true);
    struct buf m;
    buf_init(&m);
    pb_varint(&m, 1, 12345);
    int32_t id =
        gc_call_opt(g, "/etcdserverpb.Lease/LeaseKeepAlive", m.p, m.len, true, "300m", true);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    struct call *c = call_of(g, id);
    ck_assert_int_eq(c->grpc_status, 4);
    ck_assert_str_eq(c->message, "context deadline exceeded");
    ck_assert_uint_ge(c->data.len, 5);             /* the answer came before the deadline */
    ck_assert(contains(&c->data, "\x10\xb9\x60")); /* ID = 12345 */
    /* a zero deadline, in any unit, has passed already (it is not "no deadline") */
    id = gc_call_opt(g, "/etcdserverpb.Lease/LeaseKeepAlive", m.p, m.len, true, "0S", true);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(g, id)->grpc_status, 4);
    buf_fini(&m);
    gc_free(g);
}
END_TEST

static bool pb_next(const uint8_t *m, size_t n, size_t *i, uint64_t *tag, uint64_t *v,
                    const uint8_t **p, size_t *len);

START_TEST(keepalive_pipelined)
{
    /* Requests sent before their answers are answered one by one, in order; the client's
     * half-close ends the stream once every one is answered (etcd: OK). */
    struct gc *g = gc_open(srv.port, true);
    struct buf all, m;
    buf_init(&all);
    for (int i = 1; i <= 5; i++) {
        buf_init(&m);
        pb_varint(&m, 1, (uint64_t)(1000 + i));
        buf_putc(&all, 0);
        buf_put_be32(&all, (uint32_t)m.len);
        buf_append(&all, m.p, m.len);
        buf_fini(&m);
    }
    int32_t id =
        gc_call_opt(g, "/etcdserverpb.Lease/LeaseKeepAlive", all.p, all.len, false, NULL, false);
    buf_fini(&all);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    struct call *c = call_of(g, id);
    ck_assert_int_eq(c->grpc_status, 0);
    size_t off = 0;
    for (int i = 1; i <= 5; i++) {
        ck_assert_uint_ge(c->data.len - off, 5);
        size_t len = (size_t)c->data.p[off + 3] << 8 | c->data.p[off + 4];
        const uint8_t *p = c->data.p + off + 5;
        uint64_t tag, v = 0, got = 0;
        for (size_t j = 0; j < len;) {
            const uint8_t *q;
            size_t ql;
            ck_assert(pb_next(p, len, &j, &tag, &v, &q, &ql));
            if (tag == (2 << 3))
                got = v;
        }
        ck_assert_uint_eq(got, (uint64_t)(1000 + i));
        off += 5 + len;
    }
    ck_assert_uint_eq(off, c->data.len);
    gc_free(g);
}
END_TEST

/* POST path body to the gateway, expecting 200; returns the body (the caller frees). */
static char *gw_ok(const char *path, const char *body)
{
    int st;
    char *b = tu_post(srv.port, path, body, &st);
    ck_assert_msg(st == 200, "%s %s: %d %s", path, body, st, b);
    return b;
}

/* The token of user (the caller frees). */
static char *login(const char *user, const char *pw)
{
    char body[200];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"password\":\"%s\"}", user, pw);
    char *b = gw_ok("/v3/auth/authenticate", body);
    char *t = strstr(b, "\"token\":\"");
    ck_assert_ptr_nonnull(t);
    t += 9;
    char *token = strndup(t, (size_t)(strchr(t, '"') - t));
    free(b);
    return token;
}

START_TEST(auth_maint_root)
{
    /* with auth enabled (through the gateway), Hash, Snapshot and Defragment need root, as in
     * etcd, and say so in auth's own words (code Unknown) */
    free(gw_ok("/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"rootpw\"}"));
    free(gw_ok("/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"));
    free(gw_ok("/v3/auth/user/add", "{\"name\":\"alice\",\"password\":\"alicepw\"}"));
    free(gw_ok("/v3/auth/role/add", "{\"name\":\"reader\"}"));
    free(gw_ok("/v3/auth/role/grant", "{\"name\":\"reader\",\"perm\":{\"permType\":\"READ\","
                                      "\"key\":\"AA==\",\"range_end\":\"AA==\"}}"));
    free(gw_ok("/v3/auth/user/grant", "{\"user\":\"alice\",\"role\":\"reader\"}"));
    free(gw_ok("/v3/auth/enable", "{}"));
    char *alice = login("alice", "alicepw");
    char *root = login("root", "rootpw");

    struct gc *g = gc_open(srv.port, true);
    g->token = alice;
    struct call *c = unary(g, "/etcdserverpb.Maintenance/Hash", NULL, 0);
    ck_assert_int_eq(c->grpc_status, 2);
    ck_assert_str_eq(c->message, "auth: permission denied");
    c = unary(g, "/etcdserverpb.Maintenance/Snapshot", NULL, 0);
    ck_assert_int_eq(c->grpc_status, 2);
    ck_assert_uint_eq(c->data.len, 0); /* not a byte of the store */
    c = unary(g, "/etcdserverpb.Maintenance/Defragment", NULL, 0);
    ck_assert_int_eq(c->grpc_status, 2);
    g->token = NULL;
    c = unary(g, "/etcdserverpb.Maintenance/Snapshot", NULL, 0);
    ck_assert_int_eq(c->grpc_status, 2);
    ck_assert_str_eq(c->message, "auth: user name is empty");
    g->token = root;
    ck_assert_int_eq(unary(g, "/etcdserverpb.Maintenance/Hash", NULL, 0)->grpc_status, 0);
    ck_assert_int_eq(unary(g, "/etcdserverpb.Maintenance/Snapshot", NULL, 0)->grpc_status, 0);
    gc_free(g);
    free(alice);
    free(root);
}
END_TEST

START_TEST(too_many_pings)
{
    /* etcd permits no pings without calls (grpc-go: closer than 2 h is a strike); the third
     * strike ends the connection with GOAWAY ENHANCE_YOUR_CALM */
    struct gc *g = gc_open(srv.port, true);
    for (int i = 0; i < 5 && !g->goaway; i++) {
        nghttp2_submit_ping(g->s, NGHTTP2_FLAG_NONE, NULL);
        gc_pump(g, never, NULL, 100);
    }
    gc_pump(g, never, NULL, 2000);
    ck_assert(g->goaway);
    ck_assert_uint_eq(g->goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    ck_assert(g->eof);
    gc_free(g);
    /* a client that pings between calls' answers is fine */
    g = gc_open(srv.port, true);
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "k", 1);
    for (int i = 0; i < 6; i++) {
        nghttp2_submit_ping(g->s, NGHTTP2_FLAG_NONE, NULL);
        ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Range", m.p, m.len)->grpc_status, 0);
    }
    ck_assert(!g->goaway);
    buf_fini(&m);
    gc_free(g);
}
END_TEST

static bool gone(struct gc *g, void *arg)
{
    (void)arg;
    return g->eof;
}

START_TEST(keepalive_closes_dead_peers)
{
    /* a peer that answers no ping is closed after interval + timeout; one that answers stays */
    struct tu_server ka;
    const char *extra[] = {"--grpc-keepalive-interval", "1s", "--grpc-keepalive-timeout", "1s",
                           NULL};
    tu_server_start(&ka, extra);
    struct gc *dead = gc_open_opt(ka.port, true, false);
    struct gc *live = gc_open(ka.port, true);
    int64_t start = tu_now_ms();
    ck_assert(gc_pump(dead, gone, NULL, 20000));
    ck_assert_int_ge(tu_now_ms() - start, 1900);
    ck_assert_int_ge(dead->pings, 1);
    gc_pump(live, never, NULL, 3000);
    ck_assert(!live->eof);
    ck_assert_int_ge(live->pings, 1);
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "k", 1);
    ck_assert_int_eq(unary(live, "/etcdserverpb.KV/Range", m.p, m.len)->grpc_status, 0);
    buf_fini(&m);
    gc_free(dead);
    gc_free(live);
    tu_server_stop(&ka);
}
END_TEST

START_TEST(snapshot_stream)
{
    /* enough data for several 32 KiB messages */
    struct gc *g = gc_open(srv.port, true);
    static char val[20000];
    memset(val, 'v', sizeof(val));
    for (int i = 0; i < 20; i++) {
        struct buf m;
        char key[16];
        buf_init(&m);
        int k = snprintf(key, sizeof(key), "snap/%02d", i);
        pb_bytes(&m, 1, key, (size_t)k);
        pb_bytes(&m, 2, val, sizeof(val));
        ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Put", m.p, m.len)->grpc_status, 0);
        buf_fini(&m);
    }
    struct call *c = unary(g, "/etcdserverpb.Maintenance/Snapshot", NULL, 0);
    ck_assert_int_eq(c->grpc_status, 0);
    /* SnapshotResponse: remaining_bytes = 2, blob = 3; the last blob is the SHA-256 */
    struct buf all; /* every blob; the last one starts at last_off */
    buf_init(&all);
    size_t last_off = 0, msgs = 0;
    uint64_t prev_remaining = UINT64_MAX;
    for (size_t off = 0; off < c->data.len;) {
        ck_assert_uint_ge(c->data.len - off, 5);
        size_t len = (size_t)c->data.p[off + 1] << 24 | (size_t)c->data.p[off + 2] << 16 |
                     (size_t)c->data.p[off + 3] << 8 | c->data.p[off + 4];
        const uint8_t *m = c->data.p + off + 5;
        ck_assert_uint_le(len, c->data.len - off - 5);
        ck_assert_uint_le(len, (32u << 10) + 16);
        uint64_t remaining = 0;
        for (size_t i = 0; i < len;) {
            uint64_t tag, v;
            ck_assert(varint_at(m, len, &i, &tag));
            ck_assert(varint_at(m, len, &i, &v));
            if (tag == (2 << 3))
                remaining = v;
            if (tag == (3 << 3 | 2)) {
                ck_assert_uint_le(v, len - i);
                last_off = all.len;
                buf_append(&all, m + i, v);
                i += v;
            }
        }
        ck_assert_uint_le(remaining, prev_remaining);
        prev_remaining = remaining;
        msgs++;
        off += 5 + len;
    }
    ck_assert_uint_ge(msgs, 3);
    ck_assert_uint_eq(prev_remaining, 0);
    ck_assert_uint_eq(all.len - last_off, 32);
    ck_assert_uint_gt(last_off, 20 * sizeof(val));
    ck_assert(memcmp(all.p, "MSSNAP01", 8) == 0);
    uint8_t digest[32];
    struct sha256 sh;
    sha256_init(&sh);
    sha256_update(&sh, all.p, last_off);
    sha256_final(&sh, digest);
    ck_assert(memcmp(digest, all.p + last_off, 32) == 0);
    buf_fini(&all);
    gc_free(g);
}
END_TEST

/* ---- Watch ---- */

#define MAX_EVS 1024

/* One WatchResponse, decoded by hand. */
struct wresp {
    int64_t header_rev;
    int64_t watch_id;
    bool created, canceled, fragment;
    int64_t compact;
    char reason[160];
    size_t n_ev;
    struct {
        int type;
        char key[64];
        size_t value_len;
        int64_t mod;
        bool prev;
    } ev[MAX_EVS];
};

/* Field after field of m[0..n): tag, then a varint (*v) or bytes (*p, *len). */
static bool pb_next(const uint8_t *m, size_t n, size_t *i, uint64_t *tag, uint64_t *v,
                    const uint8_t **p, size_t *len)
{
    if (*i >= n || !varint_at(m, n, i, tag))
        return false;
    if ((*tag & 7) == 0)
        return varint_at(m, n, i, v);
    if ((*tag & 7) != 2 || !varint_at(m, n, i, v) || *v > n - *i)
        return false;
    *p = m + *i;
    *len = (size_t)*v;
    *i += *len;
    return true;
}

static void decode_kv(const uint8_t *m, size_t n, char *key, size_t *vlen, int64_t *mod)
{
    uint64_t tag, v;
    const uint8_t *p;
    size_t len;
    for (size_t i = 0; pb_next(m, n, &i, &tag, &v, &p, &len);) {
        if (tag == (1 << 3 | 2))
            snprintf(key, 64, "%.*s", (int)len, (const char *)p);
        else if (tag == (3 << 3))
            *mod = (int64_t)v;
        else if (tag == (5 << 3 | 2))
            *vlen = len;
    }
}

static void decode_wresp(const uint8_t *m, size_t n, struct wresp *r)
{
    memset(r, 0, sizeof(*r));
    uint64_t tag, v;
    const uint8_t *p;
    size_t len;
    for (size_t i = 0; pb_next(m, n, &i, &tag, &v, &p, &len);) {
        switch (tag) {
        case 1 << 3 | 2: { /* header: revision = 3 */
            uint64_t t2, v2;
            const uint8_t *p2;
            size_t l2;
            for (size_t j = 0; pb_next(p, len, &j, &t2, &v2, &p2, &l2);)
                if (t2 == (3 << 3))
                    r->header_rev = (int64_t)v2;
            break;
        }
        case 2 << 3:
            r->watch_id = (int64_t)v;
            break;
        case 3 << 3:
            r->created = v;
            break;
        case 4 << 3:
            r->canceled = v;
            break;
        case 5 << 3:
            r->compact = (int64_t)v;
            break;
        case 6 << 3 | 2:
            snprintf(r->reason, sizeof(r->reason), "%.*s", (int)len, (const char *)p);
            break;
        case 7 << 3:
            r->fragment = v;
            break;
        case 11 << 3 | 2: {
            ck_assert_uint_lt(r->n_ev, MAX_EVS);
            uint64_t t2, v2;
            const uint8_t *p2;
            size_t l2;
            int64_t prev_mod = 0;
            size_t prev_len = 0;
            char prev_key[64];
            for (size_t j = 0; pb_next(p, len, &j, &t2, &v2, &p2, &l2);) {
                if (t2 == (1 << 3))
                    r->ev[r->n_ev].type = (int)v2;
                else if (t2 == (2 << 3 | 2))
                    decode_kv(p2, l2, r->ev[r->n_ev].key, &r->ev[r->n_ev].value_len,
                              &r->ev[r->n_ev].mod);
                else if (t2 == (3 << 3 | 2)) {
                    decode_kv(p2, l2, prev_key, &prev_len, &prev_mod);
                    r->ev[r->n_ev].prev = true;
                }
            }
            r->n_ev++;
            break;
        }
        default:
            break;
        }
    }
}

/* The responses of call id decoded so far, from *off on: the next one into r. */
static bool next_wresp(struct gc *g, int32_t id, size_t *off, struct wresp *r)
{
    struct buf *d = &call_of(g, id)->data;
    if (d->len - *off < 5)
        return false;
    size_t len = (size_t)d->p[*off + 1] << 24 | (size_t)d->p[*off + 2] << 16 |
                 (size_t)d->p[*off + 3] << 8 | d->p[*off + 4];
    if (d->len - *off - 5 < len)
        return false;
    decode_wresp(d->p + *off + 5, len, r);
    *off += 5 + len;
    return true;
}

struct wwait {
    int32_t id;
    size_t off;
    struct wresp r;
};

/* Is a whole response there (without taking it)? */
static bool has_wresp(struct gc *g, void *arg)
{
    struct wwait *w = arg;
    size_t off = w->off;
    return next_wresp(g, w->id, &off, &w->r);
}

/* The next response of the stream, waiting for it (bounded). */
static struct wresp *wnext(struct gc *g, struct wwait *w)
{
    ck_assert_msg(gc_pump(g, has_wresp, w, 10000), "no watch response");
    ck_assert(next_wresp(g, w->id, &w->off, &w->r));
    return &w->r;
}

/* The body of the client's open stream (the last one started). */
static struct body *g_stream_body(struct gc *g)
{
    struct body *b = g->bodies;
    for (; b; b = b->next)
        if (b->keep_open)
            break;
    ck_assert_ptr_nonnull(b);
    return b;
}

/* Queue one request on an open stream's body. */
static void wsend(struct gc *g, int32_t id, const struct buf *m)
{
    struct body *b = g_stream_body(g);
    buf_putc(&b->b, 0);
    buf_put_be32(&b->b, (uint32_t)m->len);
    buf_append(&b->b, m->p, m->len);
    nghttp2_session_resume_data(g->s, id);
}

/* A WatchRequest with a create_request (field 1): key, range_end, start, id, options. */
static void wcreate(struct buf *out, const char *key, const char *end, int64_t start, int64_t id,
                    bool prev_kv, bool fragment, bool progress)
{
    struct buf c;
    buf_init(&c);
    pb_bytes(&c, 1, key, strlen(key));
    if (end)
        pb_bytes(&c, 2, end, strlen(end));
    if (start)
        pb_varint(&c, 3, (uint64_t)start);
    if (progress)
        pb_varint(&c, 4, 1);
    if (prev_kv)
        pb_varint(&c, 6, 1);
    if (id)
        pb_varint(&c, 7, (uint64_t)id);
    if (fragment)
        pb_varint(&c, 8, 1);
    buf_init(out);
    pb_bytes(out, 1, c.p, c.len);
    buf_fini(&c);
}

static int64_t put_kv(struct gc *g, const char *key, const void *val, size_t vlen)
{
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, key, strlen(key));
    pb_bytes(&m, 2, val, vlen);
    struct call *c = unary(g, "/etcdserverpb.KV/Put", m.p, m.len);
    ck_assert_int_eq(c->grpc_status, 0);
    buf_fini(&m);
    return 0;
}

START_TEST(watch_stream_many_ids)
{
    struct gc *g = gc_open(srv.port, true);
    struct gc *w = gc_open(srv.port, true);
    put_kv(g, "wa", "0", 1); /* 2 */
    struct buf m;
    wcreate(&m, "wa", NULL, 0, 0, false, false, false);
    int32_t id = gc_call_opt(w, "/etcdserverpb.Watch/Watch", m.p, m.len, true, NULL, true);
    buf_fini(&m);
    struct wwait ww = {.id = id};
    struct wresp *r = wnext(w, &ww);
    ck_assert(r->created && !r->canceled);
    ck_assert_int_eq(r->watch_id, 0);
    ck_assert_int_eq(r->header_rev, 2);
    /* a prefix watcher with its own id and prev_kv, from revision 1 (history) */
    wcreate(&m, "w", "x", 1, 7, true, false, false);
    wsend(w, id, &m);
    buf_fini(&m);
    r = wnext(w, &ww);
    ck_assert(r->created);
    ck_assert_int_eq(r->watch_id, 7);
    r = wnext(w, &ww);
    ck_assert_int_eq(r->watch_id, 7);
    ck_assert_uint_eq(r->n_ev, 1);
    ck_assert_str_eq(r->ev[0].key, "wa");
    /* the same id again: etcd's create failure */
    wcreate(&m, "w", NULL, 0, 7, false, false, false);
    wsend(w, id, &m);
    buf_fini(&m);
    r = wnext(w, &ww);
    ck_assert(r->created && r->canceled);
    ck_assert_int_eq(r->watch_id, -1);
    ck_assert_str_eq(r->reason, "mvcc: duplicate watch ID provided on the WatchStream");
    /* a put reaches both watchers; the prefix one with its prev_kv */
    put_kv(g, "wa", "1", 1); /* 3 */
    bool seen0 = false, seen7 = false;
    for (int i = 0; i < 2; i++) {
        r = wnext(w, &ww);
        ck_assert_uint_eq(r->n_ev, 1);
        ck_assert_int_eq(r->ev[0].mod, 3);
        ck_assert_int_eq(r->header_rev, 3);
        ck_assert_int_eq(r->ev[0].prev, r->watch_id == 7);
        seen0 |= r->watch_id == 0;
        seen7 |= r->watch_id == 7;
    }
    ck_assert(seen0 && seen7);
    /* cancel 7 (field 2 of WatchRequest), then a progress request (field 3) */
    struct buf c;
    buf_init(&c);
    pb_varint(&c, 1, 7);
    buf_init(&m);
    pb_bytes(&m, 2, c.p, c.len);
    wsend(w, id, &m);
    buf_fini(&m);
    buf_fini(&c);
    r = wnext(w, &ww);
    ck_assert(r->canceled && !r->created);
    ck_assert_int_eq(r->watch_id, 7);
    buf_init(&m);
    pb_bytes(&m, 3, "", 0);
    wsend(w, id, &m);
    buf_fini(&m);
    r = wnext(w, &ww);
    ck_assert_int_eq(r->watch_id, -1);
    ck_assert_int_eq(r->header_rev, 3);
    ck_assert(!r->created && !r->canceled && r->n_ev == 0);
    /* only watcher 0 is left */
    put_kv(g, "wb", "2", 1); /* 4: no watcher */
    put_kv(g, "wa", "3", 1); /* 5 */
    r = wnext(w, &ww);
    ck_assert_int_eq(r->watch_id, 0);
    ck_assert_int_eq(r->ev[0].mod, 5);
    /* compaction: a watcher from before it is cancelled with compact_revision */
    buf_init(&m);
    pb_varint(&m, 1, 4);
    ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Compact", m.p, m.len)->grpc_status, 0);
    buf_fini(&m);
    wcreate(&m, "wa", NULL, 2, 0, false, false, false);
    wsend(w, id, &m);
    buf_fini(&m);
    r = wnext(w, &ww);
    ck_assert(r->created);
    ck_assert_int_eq(r->watch_id, 1);
    r = wnext(w, &ww);
    ck_assert(r->canceled);
    ck_assert_int_eq(r->watch_id, 1);
    ck_assert_int_eq(r->compact, 4);
    ck_assert_int_eq(r->header_rev, 0);
    /* a request that is not a WatchRequest ends the stream as grpc-go's codec does */
    buf_init(&m);
    buf_append(&m, "\xff\xff", 2);
    wsend(w, id, &m);
    buf_fini(&m);
    ck_assert(gc_pump(w, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(w, id)->grpc_status, 13);
    gc_free(w);
    gc_free(g);
}
END_TEST

/* With auth on, a watch stream's token is checked for each create request: the stream's later
 * requests are decoded into a reset arena, and the token must outlive that. */
START_TEST(watch_with_token)
{
    free(gw_ok("/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"rootpw\"}"));
    free(gw_ok("/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"));
    free(gw_ok("/v3/auth/enable", "{}"));
    char *root = login("root", "rootpw");
    struct gc *g = gc_open(srv.port, true), *w = gc_open(srv.port, true);
    g->token = w->token = root;
    struct buf m;
    wcreate(&m, "tk", NULL, 0, 0, false, false, false);
    int32_t id = gc_call_opt(w, "/etcdserverpb.Watch/Watch", m.p, m.len, true, NULL, true);
    buf_fini(&m);
    struct wwait ww = {.id = id};
    struct wresp *r = wnext(w, &ww);
    ck_assert_msg(r->created && !r->canceled, "create refused: %s", r->reason);
    /* a second create on the same stream, after the arena's reset */
    wcreate(&m, "tk2", NULL, 0, 5, false, false, false);
    wsend(w, id, &m);
    buf_fini(&m);
    r = wnext(w, &ww);
    ck_assert_msg(r->created && !r->canceled, "second create refused: %s", r->reason);
    ck_assert_int_eq(r->watch_id, 5);
    put_kv(g, "tk2", "v", 1);
    r = wnext(w, &ww);
    ck_assert_int_eq(r->watch_id, 5);
    ck_assert_uint_eq(r->n_ev, 1);
    ck_assert_str_eq(r->ev[0].key, "tk2");
    gc_free(g);
    gc_free(w);
    free(root);
}
END_TEST

static bool call_closed(struct gc *g, void *arg)
{
    return call_of(g, *(int32_t *)arg)->closed;
}

/* Request headers past the announced header list size reset the stream. HPACK lets a client
 * name one large header many times for a byte each; before the limit was enforced, such a
 * request made the server copy every repetition. The connection serves on. */
START_TEST(header_list_limit)
{
    struct gc *g = gc_open(srv.port, true);
    static char big[4001];
    memset(big, 't', 4000);
    /* 8 x 4000 bytes of metadata: over 16 KiB */
    nghttp2_nv nv[14];
    size_t n = 0;
    nv[n++] = NVS(":method", "POST");
    nv[n++] = NVS(":scheme", "http");
    nv[n++] = NVS(":path", "/etcdserverpb.KV/Range");
    nv[n++] = NVS(":authority", "127.0.0.1");
    nv[n++] = NVS("content-type", "application/grpc");
    nv[n++] = NVS("te", "trailers");
    for (int i = 0; i < 8; i++)
        nv[n++] = NVS("x-pad", big);
    int32_t id = nghttp2_submit_request(g->s, NULL, nv, n, NULL, NULL);
    ck_assert_int_gt(id, 0);
    ck_assert_ptr_nonnull(call_of(g, id));
    ck_assert(gc_pump(g, call_closed, &id, 5000));
    ck_assert_int_ne(call_of(g, id)->rst, 0);
    ck_assert_int_eq(call_of(g, id)->grpc_status, -1);
    still_answers(g);
    gc_free(g);
}
END_TEST

START_TEST(watch_fragments)
{
    /* Two events of 0.7 MiB, each with its 0.7 MiB prev_kv: 2.8 MiB, over etcd's 2 MiB limit.
     * A watcher that accepts fragments gets two responses (fragment set on the first), one
     * that does not gets one. */
    static char big[700 << 10];
    memset(big, 'f', sizeof(big));
    struct gc *g = gc_open(srv.port, true);
    put_kv(g, "fa", big, sizeof(big)); /* 2 */
    put_kv(g, "fb", big, sizeof(big)); /* 3 */
    struct gc *w = gc_open(srv.port, true);
    struct buf m;
    wcreate(&m, "f", "g", 0, 1, true, true, false);
    int32_t id = gc_call_opt(w, "/etcdserverpb.Watch/Watch", m.p, m.len, true, NULL, true);
    buf_fini(&m);
    wcreate(&m, "f", "g", 0, 2, true, false, false);
    wsend(w, id, &m);
    buf_fini(&m);
    struct wwait ww = {.id = id};
    ck_assert(wnext(w, &ww)->created);
    ck_assert(wnext(w, &ww)->created);
    /* one txn puts both keys again */
    struct buf t, op, put;
    buf_init(&t);
    for (int i = 0; i < 2; i++) {
        buf_init(&put);
        pb_bytes(&put, 1, i ? "fb" : "fa", 2);
        pb_bytes(&put, 2, big, sizeof(big) - 100);
        buf_init(&op);
        pb_bytes(&op, 2, put.p, put.len); /* RequestOp.request_put */
        pb_bytes(&t, 2, op.p, op.len);    /* TxnRequest.success */
        buf_fini(&op);
        buf_fini(&put);
    }
    ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Txn", t.p, t.len)->grpc_status, 0);
    buf_fini(&t);
    int frags = 0, whole = 0;
    for (int i = 0; i < 3; i++) {
        struct wresp *r = wnext(w, &ww);
        if (r->watch_id == 1) {
            ck_assert_uint_eq(r->n_ev, 1);
            ck_assert(r->ev[0].prev);
            ck_assert_str_eq(r->ev[0].key, frags ? "fb" : "fa");
            ck_assert_int_eq(r->fragment, frags == 0);
            frags++;
        } else {
            ck_assert_int_eq(r->watch_id, 2);
            ck_assert_uint_eq(r->n_ev, 2);
            ck_assert(!r->fragment);
            whole++;
        }
    }
    ck_assert_int_eq(frags, 2);
    ck_assert_int_eq(whole, 1);
    gc_free(w);
    gc_free(g);
}
END_TEST

START_TEST(watch_slow_reader_bounded)
{
    /* A client that stops reading its watch stream: the server holds at most the stream limit
     * (plus one response) for it, while a gateway watcher of the same hub gets every event;
     * once the client reads, it gets every event in order, from history. */
    struct tu_server s;
    const char *extra[] = {"--watch-stream-buffer-bytes", "65536", NULL};
    tu_server_start(&s, extra);
    struct gc *w = gc_open(s.port, true);
    struct buf m;
    wcreate(&m, "s/", "s0", 0, 0, false, false, false);
    int32_t id = gc_call_opt(w, "/etcdserverpb.Watch/Watch", m.p, m.len, true, NULL, true);
    buf_fini(&m);
    struct wwait ww = {.id = id};
    ck_assert(wnext(w, &ww)->created);
    struct gc *g = gc_open(s.port, true);
    static char val[8 << 10];
    memset(val, 's', sizeof(val));
    enum { N = 400 }; /* 3.2 MB of values */
    long max_buffered = 0;
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "s/%04d", i);
        put_kv(g, key, val, sizeof(val));
        if (i % 50 == 49) {
            long b = tu_metric(s.port, "metastore_watch_stream_buffered_bytes");
            max_buffered = b > max_buffered ? b : max_buffered;
        }
    }
    ck_assert_int_le(max_buffered, 65536 + 2 * (long)sizeof(val));
    ck_assert_int_gt(tu_metric(s.port, "metastore_watch_victims_total"), 0);
    /* now read: every event, in order */
    int64_t next = 2;
    while (next < N + 2) {
        struct wresp *r = wnext(w, &ww);
        ck_assert(!r->canceled);
        for (size_t i = 0; i < r->n_ev; i++) {
            ck_assert_int_eq(r->ev[i].mod, next);
            ck_assert_uint_eq(r->ev[i].value_len, sizeof(val));
            next++;
        }
    }
    gc_free(w);
    gc_free(g);
    /* the stream's output is released with it */
    long left = 1;
    for (int64_t end = tu_now_ms() + 10000; left && tu_now_ms() < end; tu_sleep_ms(20))
        left = tu_metric(s.port, "metastore_watch_stream_buffered_bytes");
    ck_assert_int_eq(left, 0);
    ck_assert_int_eq(tu_metric(s.port, "etcd_debugging_mvcc_watcher_total"), 0);
    tu_server_stop(&s);
}
END_TEST

START_TEST(watch_requests_unread_bounded)
{
    /* A client that sends create and cancel requests without taking the answers (it gives
     * no window back): they pile up only until the server withholds the stream's request
     * window, so the server's memory stays bounded; another client is served meanwhile, and
     * the client's close frees the stream. */
    struct gc *w = gc_open_opt2(srv.port, true, true, true);
    struct buf m, reqs, c;
    wcreate(&m, "u", NULL, 0, 0, false, false, false);
    int32_t id = gc_call_opt(w, "/etcdserverpb.Watch/Watch", m.p, m.len, true, NULL, true);
    buf_fini(&m);
    /* 200,000 create + cancel pairs: about 4 MB of requests, 12 MB of answers */
    buf_init(&reqs);
    buf_init(&c);
    pb_varint(&c, 1, 1);
    struct buf cancel;
    buf_init(&cancel);
    pb_bytes(&cancel, 2, c.p, c.len);
    wcreate(&m, "u", NULL, 0, 1, false, false, false);
    for (int i = 0; i < 200000; i++) {
        buf_putc(&reqs, 0);
        buf_put_be32(&reqs, (uint32_t)m.len);
        buf_append(&reqs, m.p, m.len);
        buf_putc(&reqs, 0);
        buf_put_be32(&reqs, (uint32_t)cancel.len);
        buf_append(&reqs, cancel.p, cancel.len);
    }
    buf_fini(&m);
    buf_fini(&c);
    buf_fini(&cancel);
    struct body *b = g_stream_body(w);
    buf_append(&b->b, reqs.p, reqs.len);
    buf_fini(&reqs);
    nghttp2_session_resume_data(w->s, id);
    /* send what the windows let through */
    gc_pump(w, never, NULL, 3000);
    /* the server stopped crediting the stream: its answers stay bounded, and most requests
     * never left */
    long held = tu_metric(srv.port, "metastore_watch_stream_buffered_bytes");
    ck_assert_int_le(held, 1 << 20);
    ck_assert_uint_lt(b->off, 2u << 20);
    /* another client is served meanwhile */
    struct gc *g = gc_open(srv.port, true);
    put_kv(g, "other", "v", 1);
    gc_free(g);
    gc_free(w); /* abrupt close: the server frees the stream and its answers (ASan) */
}
END_TEST

/* The sample of name with labels in /metrics (the test fails without it). */
static long sample(const char *name, const char *labels)
{
    char full[512];
    snprintf(full, sizeof(full), "%s{%s}", name, labels);
    return tu_metric(srv.port, full);
}

/* HashKV at a revision: its hash and the compaction revision from the response. */
static struct call *hash_kv(struct gc *g, int64_t rev, uint64_t *hash, uint64_t *compact)
{
    struct buf m;
    buf_init(&m);
    if (rev)
        pb_varint(&m, 1, (uint64_t)rev);
    struct call *c = unary(g, "/etcdserverpb.Maintenance/HashKV", m.p, m.len);
    buf_fini(&m);
    *hash = *compact = 0;
    if (c->grpc_status != 0)
        return c;
    ck_assert_uint_ge(c->data.len, 5);
    const uint8_t *p = c->data.p + 5;
    size_t n = c->data.len - 5, i = 0, len;
    uint64_t tag, v;
    const uint8_t *q;
    while (pb_next(p, n, &i, &tag, &v, &q, &len)) {
        if (tag == (2 << 3))
            *hash = v;
        else if (tag == (3 << 3))
            *compact = v;
    }
    return c;
}

static long json_num(const char *json, const char *field)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", field);
    const char *at = strstr(json, pat);
    ck_assert_msg(at, "%s lacks %s", json, field);
    at += strlen(pat);
    if (*at == '"')
        at++;
    return strtol(at, NULL, 10);
}

/* HashKV: the records up to a revision, etcd's errors below the compaction and above the
 * current revision; at the current revision it is the Hash of the whole store. */
START_TEST(maint_hash_kv)
{
    char *b = gw_ok("/v3/kv/put", "{\"key\":\"aDE=\",\"value\":\"MQ==\"}");
    long r1 = json_num(b, "revision");
    free(b);
    b = gw_ok("/v3/kv/put", "{\"key\":\"aDI=\",\"value\":\"Mg==\"}");
    long r2 = json_num(b, "revision");
    free(b);
    b = gw_ok("/v3/maintenance/hash", "{}");
    uint64_t whole = (uint64_t)json_num(b, "hash");
    free(b);
    struct gc *g = gc_open(srv.port, true);
    uint64_t h0, h1, h2, cr;
    ck_assert_int_eq(hash_kv(g, 0, &h0, &cr)->grpc_status, 0);
    ck_assert_uint_eq(h0, whole);
    ck_assert_uint_eq(cr, 0);
    ck_assert_int_eq(hash_kv(g, r2, &h2, &cr)->grpc_status, 0);
    ck_assert_uint_eq(h2, h0);
    ck_assert_int_eq(hash_kv(g, r1, &h1, &cr)->grpc_status, 0);
    ck_assert_uint_ne(h1, h0);
    char body[64];
    snprintf(body, sizeof(body), "{\"revision\":\"%ld\",\"physical\":true}", r1);
    free(gw_ok("/v3/kv/compaction", body));
    struct call *c = hash_kv(g, r1, &h1, &cr);
    ck_assert_int_eq(c->grpc_status, 11);
    ck_assert_str_eq(c->message, "etcdserver: mvcc: required revision has been compacted");
    c = hash_kv(g, r2 + 10, &h1, &cr);
    ck_assert_int_eq(c->grpc_status, 11);
    ck_assert_str_eq(c->message, "etcdserver: mvcc: required revision is a future revision");
    ck_assert_int_eq(hash_kv(g, 0, &h0, &cr)->grpc_status, 0);
    ck_assert_uint_eq(cr, (uint64_t)r1);
    gc_free(g);
}
END_TEST

START_TEST(server_metrics)
{
    /* etcd's go-grpc-prometheus counters, by method, type and code */
    struct gc *g = gc_open(srv.port, true);
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "mk", 2);
    pb_bytes(&m, 2, "v", 1);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Put", m.p, m.len)->grpc_status, 0);
    buf_fini(&m);
    buf_init(&m);
    pb_bytes(&m, 2, "v", 1); /* no key */
    ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Put", m.p, m.len)->grpc_status, 3);
    buf_fini(&m);
    ck_assert_int_eq(unary(g, "/etcdserverpb.KV/Nope", NULL, 0)->grpc_status, 12);
    /* a watch stream: one request, one answer, then the client resets it */
    wcreate(&m, "mk", NULL, 0, 0, false, false, false);
    int32_t id = gc_call_opt(g, "/etcdserverpb.Watch/Watch", m.p, m.len, true, NULL, true);
    buf_fini(&m);
    struct wwait ww = {.id = id};
    ck_assert(wnext(g, &ww)->created);
    nghttp2_submit_rst_stream(g->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    gc_pump(g, never, NULL, 100);
    gc_free(g);
    /* The gateway's calls count as the same methods, as etcd's gateway is a gRPC client of its
     * server: one put, one without a key, one range. */
    free(gw_ok("/v3/kv/put", "{\"key\":\"bWs=\",\"value\":\"dg==\"}"));
    int st;
    free(tu_post(srv.port, "/v3/kv/put", "{\"value\":\"dg==\"}", &st));
    ck_assert_int_eq(st, 400);
    free(gw_ok("/v3/kv/range", "{\"key\":\"bWs=\"}"));
    /* A gateway keepalive: one request, one answer ending the stream, one message each way. */
    char *grant = gw_ok("/v3/lease/grant", "{\"TTL\":60}");
    char ka[96];
    snprintf(ka, sizeof(ka), "{\"ID\":\"%ld\"}", tu_json_num(grant, "ID", 0));
    free(grant);
    free(gw_ok("/v3/lease/keepalive", ka));
#define KA                                                                                         \
    "grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\""
    ck_assert_int_eq(sample("grpc_server_msg_received_total", KA), 1);
    ck_assert_int_eq(sample("grpc_server_msg_sent_total", KA), 1);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"OK\"," KA), 1);
#undef KA
#define PUT   "grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\""
#define RANGE "grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\""
#define WATCH "grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\""
    ck_assert_int_eq(sample("grpc_server_started_total", PUT), 5);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"OK\"," PUT), 3);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"InvalidArgument\"," PUT), 2);
    ck_assert_int_eq(sample("grpc_server_msg_received_total", PUT), 5);
    ck_assert_int_eq(sample("grpc_server_msg_sent_total", PUT), 3);
    ck_assert_int_eq(sample("grpc_server_started_total", RANGE), 1);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"OK\"," RANGE), 1);
    ck_assert_int_eq(sample("grpc_server_msg_sent_total", RANGE), 1);
    ck_assert_int_eq(sample("grpc_server_started_total", WATCH), 1);
    ck_assert_int_eq(sample("grpc_server_msg_received_total", WATCH), 1);
    ck_assert_int_eq(sample("grpc_server_msg_sent_total", WATCH), 1);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"Canceled\"," WATCH), 1);
#undef PUT
#undef RANGE
#undef WATCH
}
END_TEST

/* ---- the Lock and Election services ---- */

/* The bytes of field f (the first occurrence) of message m[0..n); false if absent. */
static bool pb_field(const uint8_t *m, size_t n, unsigned f, const uint8_t **p, size_t *len)
{
    uint64_t tag, v;
    for (size_t i = 0; pb_next(m, n, &i, &tag, &v, p, len);)
        if (tag == ((uint64_t)f << 3 | 2))
            return true;
    return false;
}

/* The k-th (from 0) framed message of a call's data; false if it has not come (whole). */
static bool nth_msg(const struct call *c, size_t k, const uint8_t **m, size_t *n)
{
    size_t off = 0;
    for (size_t i = 0;; i++) {
        if (c->data.len - off < 5)
            return false;
        const uint8_t *h = c->data.p + off;
        size_t len = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
        if (c->data.len - off - 5 < len)
            return false;
        if (i == k) {
            *m = h + 5;
            *n = len;
            return true;
        }
        off += 5 + len;
    }
}

/* A LockRequest (name, lease) or a CampaignRequest (name, lease, value). */
static void named_req(struct buf *m, const char *name, int64_t lease, const char *value)
{
    buf_init(m);
    pb_bytes(m, 1, name, strlen(name));
    if (lease)
        pb_varint(m, 2, (uint64_t)lease);
    if (value)
        pb_bytes(m, 3, value, strlen(value));
}

/* Field f of the answer's first message, copied into out (NUL-terminated). */
static void answer_field(const struct call *c, unsigned f, char *out, size_t cap)
{
    const uint8_t *m, *p;
    size_t n, len;
    ck_assert_msg(nth_msg(c, 0, &m, &n), "no answer message (status %d %s)", c->grpc_status,
                  c->message);
    ck_assert(pb_field(m, n, f, &p, &len));
    ck_assert_uint_lt(len, cap);
    memcpy(out, p, len);
    out[len] = 0;
}

static struct call *lock_call(struct gc *g, const char *name, int64_t lease)
{
    struct buf m;
    named_req(&m, name, lease, NULL);
    struct call *c = unary(g, "/v3lockpb.Lock/Lock", m.p, m.len);
    buf_fini(&m);
    return c;
}

static struct call *unlock_call(struct gc *g, const char *key)
{
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, key, strlen(key));
    struct call *c = unary(g, "/v3lockpb.Lock/Unlock", m.p, m.len);
    buf_fini(&m);
    return c;
}

/* Proclaim (value) or Resign (value NULL) with the LeaderKey message leader[0..n). */
static struct call *leader_call(struct gc *g, const uint8_t *leader, size_t n, const char *value)
{
    struct buf m;
    buf_init(&m);
    if (leader)
        pb_bytes(&m, 1, leader, n);
    if (value)
        pb_bytes(&m, 2, value, strlen(value));
    struct call *c = unary(
        g, value ? "/v3electionpb.Election/Proclaim" : "/v3electionpb.Election/Resign", m.p, m.len);
    buf_fini(&m);
    return c;
}

/* The leader's value from a LeaderResponse (k-th message of c) into out. */
static bool leader_value(const struct call *c, size_t k, char *out, size_t cap)
{
    const uint8_t *m, *kv, *v;
    size_t n, kvl, vl;
    if (!nth_msg(c, k, &m, &n) || !pb_field(m, n, 2, &kv, &kvl) || !pb_field(kv, kvl, 5, &v, &vl))
        return false;
    snprintf(out, cap, "%.*s", (int)vl, (const char *)v);
    return true;
}

static void expect_error(const struct call *c, const char *msg)
{
    ck_assert_int_eq(c->grpc_status, 2); /* Unknown, as from etcd's services */
    ck_assert_str_eq(c->message, msg);
}

/* Pump g until metric name reads want (bounded). */
static void await_metric(struct gc *g, int port, const char *name, long want)
{
    long got = -1;
    for (int64_t end = tu_now_ms() + 10000; tu_now_ms() < end; gc_pump(g, never, NULL, 20))
        if ((got = tu_metric(port, name)) == want)
            return;
    ck_abort_msg("%s: %ld, expected %ld", name, got, want);
}

/* The leadership a Campaign (name, fresh session, value) won: its LeaderKey message. */
struct leadership {
    uint8_t key[256];
    size_t len;
};

static void campaign(struct gc *g, const char *name, const char *value, struct leadership *out)
{
    struct buf m;
    named_req(&m, name, 0, value);
    struct call *c = unary(g, "/v3electionpb.Election/Campaign", m.p, m.len);
    buf_fini(&m);
    ck_assert_int_eq(c->grpc_status, 0);
    const uint8_t *msg, *leader;
    size_t n;
    ck_assert(nth_msg(c, 0, &msg, &n) && pb_field(msg, n, 2, &leader, &out->len));
    ck_assert_uint_lt(out->len, sizeof(out->key));
    memcpy(out->key, leader, out->len);
}

START_TEST(lock_election_calls)
{
    /* Lock and Unlock, a second session waiting its turn; Campaign, Leader, Proclaim, Resign;
     * etcd's errors, each with code Unknown and etcd's text */
    struct gc *g = gc_open(srv.port, true);
    struct call *c = lock_call(g, "L", 0);
    ck_assert_int_eq(c->grpc_status, 0);
    char key1[128], key2[128];
    answer_field(c, 2, key1, sizeof(key1));
    ck_assert(strncmp(key1, "L/", 2) == 0);
    struct buf m;
    named_req(&m, "L", 0, NULL);
    int32_t id = gc_call(g, "/v3lockpb.Lock/Lock", m.p, m.len, true, NULL);
    buf_fini(&m);
    await_metric(g, srv.port, "metastore_lock_waiters", 1);
    ck_assert(!call_of(g, id)->closed);
    ck_assert_int_eq(unlock_call(g, key1)->grpc_status, 0);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(g, id)->grpc_status, 0);
    answer_field(call_of(g, id), 2, key2, sizeof(key2));
    ck_assert_str_ne(key1, key2);
    ck_assert_int_eq(unlock_call(g, key2)->grpc_status, 0);
    /* errors */
    expect_error(lock_call(g, "L", 999), "etcdserver: requested lease not found");
    expect_error(unlock_call(g, ""), "etcdserver: key is not provided");
    buf_init(&m);
    pb_bytes(&m, 1, "E", 1);
    expect_error(unary(g, "/v3electionpb.Election/Leader", m.p, m.len), "election: no leader");
    expect_error(leader_call(g, NULL, 0, NULL), "\"leader\" field must be provided");
    expect_error(leader_call(g, NULL, 0, "v"), "\"leader\" field must be provided");
    struct buf lk;
    buf_init(&lk);
    pb_bytes(&lk, 1, "E", 1);
    pb_bytes(&lk, 2, "E/1", 3);
    pb_varint(&lk, 3, 5);
    expect_error(leader_call(g, lk.p, lk.len, "v"), "election: not leader");
    ck_assert_int_eq(leader_call(g, lk.p, lk.len, NULL)->grpc_status, 0); /* not leading: OK */
    buf_fini(&lk);
    ck_assert_int_eq(unary(g, "/v3lockpb.Lock/Lock", "\xff", 1)->grpc_status, 13);
    /* an election */
    struct leadership l;
    campaign(g, "E", "v1", &l);
    char v[64];
    c = unary(g, "/v3electionpb.Election/Leader", m.p, m.len);
    ck_assert(leader_value(c, 0, v, sizeof(v)));
    ck_assert_str_eq(v, "v1");
    ck_assert_int_eq(leader_call(g, l.key, l.len, "v2")->grpc_status, 0);
    c = unary(g, "/v3electionpb.Election/Leader", m.p, m.len);
    ck_assert(leader_value(c, 0, v, sizeof(v)));
    ck_assert_str_eq(v, "v2");
    ck_assert_int_eq(leader_call(g, l.key, l.len, NULL)->grpc_status, 0);
    expect_error(unary(g, "/v3electionpb.Election/Leader", m.p, m.len), "election: no leader");
    buf_fini(&m);
    gc_free(g);
    /* counted as etcd counts them */
#define LOCK "grpc_method=\"Lock\",grpc_service=\"v3lockpb.Lock\",grpc_type=\"unary\""
    ck_assert_int_eq(sample("grpc_server_started_total", LOCK), 4);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"OK\"," LOCK), 2);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"Unknown\"," LOCK), 1);
#undef LOCK
}
END_TEST

/* The count of keys under prefix (a RangeRequest with count_only). */
static long count_prefix(struct gc *g, const char *prefix, const char *end)
{
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, prefix, strlen(prefix));
    pb_bytes(&m, 2, end, strlen(end));
    pb_varint(&m, 9, 1);
    struct call *c = unary(g, "/etcdserverpb.KV/Range", m.p, m.len);
    buf_fini(&m);
    ck_assert_int_eq(c->grpc_status, 0);
    const uint8_t *msg, *p;
    size_t n, len;
    uint64_t tag, v;
    ck_assert(nth_msg(c, 0, &msg, &n));
    for (size_t i = 0; pb_next(msg, n, &i, &tag, &v, &p, &len);)
        if (tag == (4 << 3))
            return (long)v;
    return 0;
}

START_TEST(lock_waiter_reset_gives_place_up)
{
    /* A waiting Lock cancelled by RST_STREAM, another by its connection's end: each waiter is
     * freed and its key deleted, so the next waiter gets the lock as soon as the holder
     * unlocks (else it would wait for the cancelled waiters' 60 s session leases) */
    struct gc *g = gc_open(srv.port, true);
    struct call *c = lock_call(g, "R", 0);
    ck_assert_int_eq(c->grpc_status, 0);
    char holder[128];
    answer_field(c, 2, holder, sizeof(holder));
    struct buf m;
    named_req(&m, "R", 0, NULL);
    int32_t id = gc_call(g, "/v3lockpb.Lock/Lock", m.p, m.len, true, NULL);
    struct gc *g2 = gc_open(srv.port, true);
    gc_call(g2, "/v3lockpb.Lock/Lock", m.p, m.len, true, NULL);
    for (int i = 0; i < 5; i++)
        gc_pump(g2, never, NULL, 20);
    await_metric(g, srv.port, "metastore_lock_waiters", 2);
    ck_assert_int_eq(count_prefix(g, "R/", "R0"), 3);
    nghttp2_submit_rst_stream(g->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    gc_free(g2);
    await_metric(g, srv.port, "metastore_lock_waiters", 0);
    await_metric(g, srv.port, "metastore_lock_requests", 0);
    long left = 0;
    for (int64_t end = tu_now_ms() + 10000; tu_now_ms() < end; tu_sleep_ms(20))
        if ((left = count_prefix(g, "R/", "R0")) == 1)
            break;
    ck_assert_int_eq(left, 1); /* the holder's key alone */
    id = gc_call(g, "/v3lockpb.Lock/Lock", m.p, m.len, true, NULL);
    buf_fini(&m);
    await_metric(g, srv.port, "metastore_lock_waiters", 1);
    ck_assert_int_eq(unlock_call(g, holder)->grpc_status, 0);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    ck_assert_int_eq(call_of(g, id)->grpc_status, 0);
    gc_free(g);
}
END_TEST

static bool has_msgs(struct gc *g, void *arg)
{
    const int32_t *a = arg; /* stream id, messages wanted */
    const uint8_t *m;
    size_t n;
    return nth_msg(call_of(g, a[0]), (size_t)a[1] - 1, &m, &n);
}

START_TEST(observe_stream)
{
    /* Observe: nothing until a leader, then each proclamation; a reset stream and a dropped
     * connection free their observers */
    struct gc *g = gc_open(srv.port, true);
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "O", 1);
    int32_t id = gc_call(g, "/v3electionpb.Election/Observe", m.p, m.len, true, NULL);
    await_metric(g, srv.port, "metastore_lock_waiters", 1);
    ck_assert_uint_eq(call_of(g, id)->data.len, 0);
    struct gc *g2 = gc_open(srv.port, true);
    struct leadership l;
    campaign(g2, "O", "v1", &l);
    int32_t want[2] = {id, 1};
    ck_assert(gc_pump(g, has_msgs, want, 10000));
    char v[64];
    ck_assert(leader_value(call_of(g, id), 0, v, sizeof(v)));
    ck_assert_str_eq(v, "v1");
    ck_assert_int_eq(leader_call(g2, l.key, l.len, "v2")->grpc_status, 0);
    want[1] = 2;
    ck_assert(gc_pump(g, has_msgs, want, 10000));
    ck_assert(leader_value(call_of(g, id), 1, v, sizeof(v)));
    ck_assert_str_eq(v, "v2");
    nghttp2_submit_rst_stream(g->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    ck_assert(gc_pump(g, stream_closed, &id, 10000));
    await_metric(g, srv.port, "metastore_lock_waiters", 0);
    /* an observer of a standing leader hears of it at once; then its connection goes */
    struct gc *g3 = gc_open(srv.port, true);
    int32_t id3 = gc_call(g3, "/v3electionpb.Election/Observe", m.p, m.len, true, NULL);
    want[0] = id3;
    want[1] = 1;
    ck_assert(gc_pump(g3, has_msgs, want, 10000));
    ck_assert(leader_value(call_of(g3, id3), 0, v, sizeof(v)));
    ck_assert_str_eq(v, "v2");
    ck_assert_int_eq(tu_metric(srv.port, "metastore_lock_waiters"), 1);
    gc_free(g3);
    await_metric(g, srv.port, "metastore_lock_waiters", 0);
    buf_fini(&m);
    gc_free(g);
    gc_free(g2);
#define OBS                                                                                        \
    "grpc_method=\"Observe\",grpc_service=\"v3electionpb.Election\",grpc_type=\"server_stream\""
    ck_assert_int_eq(sample("grpc_server_started_total", OBS), 2);
    ck_assert_int_eq(sample("grpc_server_msg_sent_total", OBS), 3);
    ck_assert_int_eq(sample("grpc_server_handled_total", "grpc_code=\"Canceled\"," OBS), 2);
#undef OBS
}
END_TEST

START_TEST(observe_slow_reader_bounded)
{
    /* An observer that stops reading while the leader proclaims 3 MB of values: the server
     * queues a bounded amount for it and keeps only the newest value aside; once the client
     * reads, it gets values in order, ending with the last one */
    struct gc *w = gc_open_opt2(srv.port, true, true, true);
    struct buf m;
    buf_init(&m);
    pb_bytes(&m, 1, "S", 1);
    int32_t id = gc_call(w, "/v3electionpb.Election/Observe", m.p, m.len, true, NULL);
    buf_fini(&m);
    await_metric(w, srv.port, "metastore_lock_waiters", 1);
    struct gc *g = gc_open(srv.port, true);
    struct leadership l;
    campaign(g, "S", "first", &l);
    enum { N = 400 };
    static char val[8 << 10];
    for (int i = 0; i < N; i++) {
        memset(val, 'a' + i % 26, sizeof(val) - 1);
        snprintf(val, 8, "%04d:", i);
        val[5] = 'x';
        ck_assert_int_eq(leader_call(g, l.key, l.len, val)->grpc_status, 0);
        if (i % 100 == 0)
            gc_pump(w, never, NULL, 20); /* it takes what its window allows, then no more */
    }
#define OBS                                                                                        \
    "grpc_method=\"Observe\",grpc_service=\"v3electionpb.Election\",grpc_type=\"server_stream\""
    long sent = sample("grpc_server_msg_sent_total", OBS);
    ck_assert_int_le(sent, (65535 + (64 << 10)) / (8 << 10) + 4);
    /* now read */
    nghttp2_submit_window_update(w->s, NGHTTP2_FLAG_NONE, 0, 64 << 20);
    nghttp2_submit_window_update(w->s, NGHTTP2_FLAG_NONE, id, 64 << 20);
    int last = -1;
    for (int64_t end = tu_now_ms() + 10000; last != N - 1 && tu_now_ms() < end;) {
        gc_pump(w, never, NULL, 20);
        char v[16];
        int k;
        last = -2;
        for (size_t i = 0; leader_value(call_of(w, id), i, v, sizeof(v)); i++) {
            k = strncmp(v, "first", 5) == 0 ? -1 : atoi(v);
            ck_assert_int_gt(k, last); /* in order */
            last = k;
        }
    }
    ck_assert_int_eq(last, N - 1);
    ck_assert_int_le(sample("grpc_server_msg_sent_total", OBS), sent + 2);
#undef OBS
    gc_free(w);
    await_metric(g, srv.port, "metastore_lock_waiters", 0);
    gc_free(g);
}
END_TEST

/* ---- the Cluster service ---- */

/* A member as a Member*Response carries it. */
struct mem {
    uint64_t id;
    char url[64]; /* the first peer URL */
    bool named;
    bool client_urls;
    bool learner;
};

/* The members under field of the answer of c (members: 2, but 3 in a MemberAddResponse, whose
 * member is 2) into out (at most 4), and how many. */
static size_t members_of(const struct call *c, unsigned field, struct mem out[4])
{
    const uint8_t *m, *p, *q;
    size_t n, len, ql, k = 0;
    uint64_t tag, v, t2, v2;
    ck_assert_msg(nth_msg(c, 0, &m, &n), "no answer (status %d %s)", c->grpc_status, c->message);
    for (size_t i = 0; pb_next(m, n, &i, &tag, &v, &p, &len);) {
        if (tag != ((uint64_t)field << 3 | 2) || k == 4)
            continue;
        struct mem *o = &out[k++];
        memset(o, 0, sizeof(*o));
        for (size_t j = 0; pb_next(p, len, &j, &t2, &v2, &q, &ql);) {
            if (t2 == (1 << 3))
                o->id = v2;
            else if (t2 == (2 << 3 | 2))
                o->named = true;
            else if (t2 == (3 << 3 | 2) && !o->url[0] && ql < sizeof(o->url))
                memcpy(o->url, q, ql);
            else if (t2 == (4 << 3 | 2))
                o->client_urls = true;
            else if (t2 == (5 << 3))
                o->learner = v2 != 0;
        }
    }
    return k;
}

/* A Cluster request: the ID (field 1, when not 0) and a peer URL (field 2); for MemberAdd, the
 * peer URL (field 1) and isLearner (field 2). */
static struct call *member_call(struct gc *g, const char *method, uint64_t id, const char *url,
                                bool learner)
{
    char path[64];
    snprintf(path, sizeof(path), "/etcdserverpb.Cluster/%s", method);
    bool add = strcmp(method, "MemberAdd") == 0;
    struct buf m;
    buf_init(&m);
    if (id)
        pb_varint(&m, 1, id);
    if (url)
        pb_bytes(&m, add ? 1 : 2, url, strlen(url));
    if (learner)
        pb_varint(&m, 2, 1);
    struct call *c = unary(g, path, m.p, m.len);
    buf_fini(&m);
    return c;
}

static void expect_code(const struct call *c, int code, const char *msg)
{
    ck_assert_int_eq(c->grpc_status, code);
    ck_assert_str_eq(c->message, msg);
}

/* MemberAdd, Remove, Update and Promote on one member: etcd's checks and answers, root only
 * with auth on; etcdctl's member commands. */
START_TEST(cluster_members)
{
    struct gc *g = gc_open(srv.port, true);
    struct mem ms[4];
    struct call *c = unary(g, "/etcdserverpb.Cluster/MemberList", NULL, 0);
    ck_assert_int_eq(c->grpc_status, 0);
    ck_assert_uint_eq(members_of(c, 2, ms), 1);
    uint64_t self = ms[0].id;
    ck_assert_uint_ne(self, 0);
    ck_assert(ms[0].named && ms[0].client_urls && !ms[0].learner);

    expect_code(member_call(g, "MemberAdd", 0, "not a url", false), 3,
                "etcdserver: given member URLs are invalid");
    expect_code(member_call(g, "MemberRemove", 42, NULL, false), 5, "etcdserver: member not found");
    expect_code(member_call(g, "MemberPromote", self, NULL, false), 9,
                "etcdserver: can only promote a learner member");
    expect_code(member_call(g, "MemberUpdate", 0, "http://127.0.0.1:1", false), 5,
                "etcdserver: member not found");
    ck_assert_int_eq(unary(g, "/etcdserverpb.Cluster/MemberUpdate", "\xff", 1)->grpc_status, 13);

    /* an update answers with the members as they are after it */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", tu_free_port());
    c = member_call(g, "MemberUpdate", self, url, false);
    ck_assert_int_eq(c->grpc_status, 0);
    ck_assert_uint_eq(members_of(c, 2, ms), 1);
    ck_assert_uint_eq(ms[0].id, self);
    ck_assert_str_eq(ms[0].url, url);

    /* a lone member that cannot listen for peers (the default http://localhost:2380: the peer
     * transport needs a numeric address) refuses an add it could never reach; cluster_grow_one
     * adds a learner to a lone member that can */
    char lurl[64];
    snprintf(lurl, sizeof(lurl), "http://127.0.0.1:%d", tu_free_port());
    expect_code(member_call(g, "MemberAdd", 0, lurl, true), 14, "etcdserver: unhealthy cluster");
    c = unary(g, "/etcdserverpb.Cluster/MemberList", NULL, 0);
    ck_assert_uint_eq(members_of(c, 2, ms), 1);

    /* etcdctl's member commands */
    if (access("/usr/bin/etcdctl", X_OK) == 0) {
        char ep[64], hex[32], peers[96];
        snprintf(ep, sizeof(ep), "--endpoints=127.0.0.1:%d", srv.port);
        snprintf(hex, sizeof(hex), "%" PRIx64, self);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", tu_free_port());
        snprintf(peers, sizeof(peers), "--peer-urls=%s", url);
        char *env[] = {"ETCDCTL_API=3", NULL};
        char *out;
        const char *update[] = {ep, "member", "update", hex, peers, NULL};
        int rc = tu_run_bin("/usr/bin/etcdctl", update, env, 20000, &out);
        ck_assert_msg(rc == 0 && strstr(out, "updated"), "%d: %s", rc, out);
        free(out);
        const char *list[] = {ep, "member", "list", NULL};
        rc = tu_run_bin("/usr/bin/etcdctl", list, env, 20000, &out);
        ck_assert_msg(rc == 0 && strstr(out, hex) && strstr(out, url), "%d: %s", rc, out);
        free(out);
    }

    /* with auth on, only root changes the membership (etcd's converted errors) */
    free(gw_ok("/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"rootpw\"}"));
    free(gw_ok("/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"));
    free(gw_ok("/v3/auth/user/add", "{\"name\":\"alice\",\"password\":\"alicepw\"}"));
    free(gw_ok("/v3/auth/enable", "{}"));
    char *alice = login("alice", "alicepw");
    char *root = login("root", "rootpw");
    g->token = alice;
    expect_code(member_call(g, "MemberRemove", 42, NULL, false), 7,
                "etcdserver: permission denied");
    g->token = NULL;
    expect_code(member_call(g, "MemberRemove", 42, NULL, false), 3,
                "etcdserver: user name is empty");
    g->token = root;
    expect_code(member_call(g, "MemberRemove", 42, NULL, false), 5, "etcdserver: member not found");
    gc_free(g);
    free(alice);
    free(root);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("grpc");
    TCase *tc = tcase_create("grpc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, unary_kv_and_errors);
    tcase_add_test(tc, oversized_message);
    tcase_add_test(tc, reset_and_disconnect_free_calls);
    tcase_add_test(tc, many_concurrent_streams);
    tcase_add_test(tc, many_large_puts);
    tcase_add_test(tc, snapshot_stream);
    tcase_add_test(tc, stream_and_deadline);
    tcase_add_test(tc, keepalive_pipelined);
    tcase_add_test(tc, auth_maint_root);
    tcase_add_test(tc, too_many_pings);
    tcase_add_test(tc, keepalive_closes_dead_peers);
    tcase_add_test(tc, watch_stream_many_ids);
    tcase_add_test(tc, watch_fragments);
    tcase_add_test(tc, watch_with_token);
    tcase_add_test(tc, header_list_limit);
    tcase_add_test(tc, watch_slow_reader_bounded);
    tcase_add_test(tc, watch_requests_unread_bounded);
    tcase_add_test(tc, server_metrics);
    tcase_add_test(tc, maint_hash_kv);
    tcase_add_test(tc, lock_election_calls);
    tcase_add_test(tc, lock_waiter_reset_gives_place_up);
    tcase_add_test(tc, observe_stream);
    tcase_add_test(tc, observe_slow_reader_bounded);
    tcase_add_test(tc, cluster_members);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
