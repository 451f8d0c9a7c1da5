/* test_http_client.c - the HTTP/1.1 client against the module's own server (and a raw socket
 * that answers canned bytes) on 127.0.0.1, everything in one event loop: plain and chunked
 * responses, a streamed body taken piece by piece with a pause, a chunked request body, and
 * every way a response can fail (cut, malformed, refused, silent). */
#define _GNU_SOURCE
#include "metastore/buf.h"
#include "metastore/http.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct http_limits LIM = {.max_header_bytes = 4096,
                                       .max_body_bytes = 1 << 20,
                                       .read_timeout_ms = 5000,
                                       .write_timeout_ms = 5000,
                                       .idle_timeout_ms = 60000,
                                       .max_conns = 100};

static struct event_base *base;
static struct http_server *hs;
static int port;

/* ---- the server side ---- */

#define STREAM_PIECES 20
#define FLOOD_BYTES   (8u << 20)
#define FLOOD_PIECE   (64u << 10)

static struct http_request *streaming; /* /stream, fed by the timer */
static struct event *stream_ev;
static int stream_sent;
static struct http_request *flooding; /* /flood, fed by its drain callback */
static size_t flood_sent;
static struct http_request *held; /* /hold: never answered */

static void on_stream_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!streaming)
        return;
    if (stream_sent == STREAM_PIECES) {
        http_stream_end(streaming);
        streaming = NULL;
        return;
    }
    char piece[16];
    int k = snprintf(piece, sizeof(piece), "piece-%02d\n", stream_sent++);
    http_stream_write(streaming, piece, (size_t)k);
    struct timeval tv = {0, 5000};
    event_add(stream_ev, &tv);
}

static void on_flood_drain(void *arg)
{
    (void)arg;
    static char piece[FLOOD_PIECE];
    if (flood_sent == FLOOD_BYTES) {
        http_stream_end(flooding);
        flooding = NULL;
        return;
    }
    memset(piece, 'a' + (int)(flood_sent / FLOOD_PIECE) % 26, sizeof(piece));
    flood_sent += sizeof(piece);
    http_stream_write(flooding, piece, sizeof(piece));
}

static void on_held_close(void *arg)
{
    (void)arg;
    held = NULL;
}

static bool is(const struct http_request *r, const char *path)
{
    return r->target_len == strlen(path) && memcmp(r->target, path, r->target_len) == 0;
}

static void handler(void *ctx, struct http_request *r)
{
    (void)ctx;
    static const struct http_hdr h[] = {{"Content-Type", 12, "text/plain", 10},
                                        {"X-Test", 6, "yes", 3}};
    if (is(r, "/plain")) {
        http_respond(r, 200, h, 2, "hello world", 11);
    } else if (is(r, "/echo")) {
        http_respond(r, 201, h, 1, r->body, r->body_len);
    } else if (is(r, "/stream")) {
        http_stream_start(r, 200, h, 1);
        streaming = r;
        stream_sent = 0;
        struct timeval tv = {0, 5000};
        event_add(stream_ev, &tv);
    } else if (is(r, "/flood")) {
        http_stream_start(r, 200, h, 1);
        flooding = r;
        flood_sent = 0;
        http_set_drain_cb(r, 0, on_flood_drain, NULL);
    } else if (is(r, "/cut")) {
        http_stream_start(r, 200, h, 1);
        http_stream_write(r, "part", 4);
        http_abort(r);
    } else if (is(r, "/hold")) {
        held = r;
        http_set_close_cb(r, on_held_close, NULL);
    } else {
        http_respond(r, 404, h, 1, "no", 2);
    }
}

static void server_up(void)
{
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    hs = http_server_create(base, &LIM, handler, NULL);
    ck_assert_ptr_nonnull(hs);
    port = 0;
    for (int tries = 0; tries < 20 && !port; tries++) {
        int p = tu_free_port();
        if (http_server_listen(hs, "127.0.0.1", (uint16_t)p) == 0)
            port = p;
    }
    ck_assert_int_ne(port, 0);
    stream_ev = evtimer_new(base, on_stream_tick, NULL);
    streaming = flooding = held = NULL;
}

static void server_down(void)
{
    http_server_destroy(hs);
    event_free(stream_ev);
    event_base_free(base);
    hs = NULL;
    base = NULL;
}

/* Run the loop until something calls loopexit, at most limit_ms. */
static void run_loop(int limit_ms)
{
    struct timeval tv = {limit_ms / 1000, (limit_ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

/* ---- what a client saw ---- */

struct seen {
    int status;
    char x_test[16];
    struct buf body;
    int pieces; /* on_body calls */
    int heads;
    int dones;
    bool reusable;
    enum http_client_err err; /* 0: none */
    int errors;
    int pause_at; /* pause after this many pieces (0: never) */
    bool paused;
    struct http_client *c;
    bool stop_on_done; /* loopexit when the response ends */
};

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    buf_init(&s->body);
    s->stop_on_done = true;
}

static void on_head(void *arg, const struct http_response *resp)
{
    struct seen *s = arg;
    s->heads++;
    s->status = resp->status;
    size_t n;
    const char *v = http_response_header(resp, "x-test", &n);
    if (v && n < sizeof(s->x_test)) {
        memcpy(s->x_test, v, n);
        s->x_test[n] = 0;
    }
}

static bool on_body(void *arg, const void *p, size_t len)
{
    struct seen *s = arg;
    ck_assert(!s->paused); /* nothing is handed over while paused */
    buf_append(&s->body, p, len);
    s->pieces++;
    if (s->pause_at && s->pieces == s->pause_at) {
        s->paused = true;
        return false;
    }
    return true;
}

static void on_done(void *arg, bool reusable)
{
    struct seen *s = arg;
    s->dones++;
    s->reusable = reusable;
    if (s->stop_on_done)
        event_base_loopexit(base, NULL);
}

static void on_error(void *arg, enum http_client_err err)
{
    struct seen *s = arg;
    s->errors++;
    s->err = err;
    event_base_loopexit(base, NULL);
}

static struct http_client *open_client(struct seen *s, int to_port, uint32_t response_timeout)
{
    struct http_client_opts o = {.max_header_bytes = 4096,
                                 .connect_timeout_ms = 2000,
                                 .response_timeout_ms = response_timeout,
                                 .write_timeout_ms = 2000,
                                 .on_head = on_head,
                                 .on_body = on_body,
                                 .on_done = on_done,
                                 .on_error = on_error,
                                 .arg = s};
    struct http_client *c = http_client_open(base, "127.0.0.1", (uint16_t)to_port, &o);
    ck_assert_ptr_nonnull(c);
    s->c = c;
    return c;
}

static bool body_is(const struct seen *s, const char *want)
{
    return s->body.len == strlen(want) &&
           (!s->body.len || memcmp(s->body.p, want, s->body.len) == 0);
}

/* ---- tests ---- */

/* A plain answer, then more requests on the same connection: an echo, a HEAD. */
START_TEST(client_plain)
{
    int fds = tu_open_fds(0);
    server_up();
    struct seen s;
    seen_init(&s);
    struct http_client *c = open_client(&s, port, 2000);
    ck_assert_int_eq(http_client_request(c, "GET", "/plain", NULL, 0, NULL, 0), 0);
    /* One request at a time. */
    ck_assert_int_eq(http_client_request(c, "GET", "/plain", NULL, 0, NULL, 0), -1);
    run_loop(5000);
    ck_assert_int_eq(s.errors, 0);
    ck_assert_int_eq(s.dones, 1);
    ck_assert_int_eq(s.status, 200);
    ck_assert_str_eq(s.x_test, "yes");
    ck_assert(body_is(&s, "hello world"));
    ck_assert(s.reusable);

    buf_fini(&s.body);
    buf_init(&s.body);
    static const struct http_hdr ct = {"Content-Type", 12, "application/octet-stream", 24};
    ck_assert_int_eq(http_client_request(c, "POST", "/echo", &ct, 1, "some bytes", 10), 0);
    run_loop(5000);
    ck_assert_int_eq(s.dones, 2);
    ck_assert_int_eq(s.status, 201);
    ck_assert(body_is(&s, "some bytes"));
    ck_assert(s.reusable);

    /* HEAD: a Content-Length and no body. */
    buf_fini(&s.body);
    buf_init(&s.body);
    ck_assert_int_eq(http_client_request(c, "HEAD", "/plain", NULL, 0, NULL, 0), 0);
    run_loop(5000);
    ck_assert_int_eq(s.dones, 3);
    ck_assert_int_eq(s.status, 200);
    ck_assert_uint_eq(s.body.len, 0);
    struct http_stats st;
    http_server_stats(hs, &st);
    ck_assert_uint_eq(st.conns, 1); /* all three on one connection */
    ck_assert_int_eq(s.errors, 0);
    http_client_close(c);
    buf_fini(&s.body);
    server_down();
    ck_assert_int_eq(tu_open_fds(0), fds);
}
END_TEST

/* A chunked body sent piece by piece, and a chunked response streamed back. */
START_TEST(client_chunked_request)
{
    server_up();
    struct seen s;
    seen_init(&s);
    struct http_client *c = open_client(&s, port, 2000);
    ck_assert_int_eq(http_client_request_start(c, "POST", "/echo", NULL, 0), 0);
    ck_assert_int_eq(http_client_write(c, "ab", 2), 0);
    ck_assert_int_eq(http_client_write(c, "cde", 3), 0);
    ck_assert_int_eq(http_client_end(c), 0);
    ck_assert_int_eq(http_client_write(c, "x", 1), -1); /* the body has ended */
    run_loop(5000);
    ck_assert_int_eq(s.errors, 0);
    ck_assert_int_eq(s.status, 201);
    ck_assert(body_is(&s, "abcde"));
    ck_assert(s.reusable);
    http_client_close(c);
    buf_fini(&s.body);
    server_down();
}
END_TEST

static struct seen *resume_seen;
static size_t resume_len;
static size_t pending_seen; /* the server's unsent /flood output when the pause ends */

/* While paused nothing more arrived, and the server's output backed up; then go on. */
static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pending_seen = flooding ? http_pending(flooding) : 0;
    ck_assert_uint_eq(resume_seen->body.len, resume_len);
    resume_seen->paused = false;
    http_client_resume(resume_seen->c);
}

/* GET path, pause after pause_at pieces for pause_ms, then take the rest to the end. */
static struct http_client *get_with_pause(struct seen *s, const char *path, int pause_at,
                                          int pause_ms)
{
    seen_init(s);
    s->pause_at = pause_at;
    struct http_client *c = open_client(s, port, 5000);
    ck_assert_int_eq(http_client_request(c, "GET", path, NULL, 0, NULL, 0), 0);
    while (!s->paused && !s->errors && !s->dones) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    ck_assert(s->paused);
    resume_seen = s;
    resume_len = s->body.len;
    struct event *ev = evtimer_new(base, on_resume, NULL);
    struct timeval tv = {0, pause_ms * 1000};
    event_add(ev, &tv);
    run_loop(20000);
    event_free(ev);
    ck_assert_int_eq(s->errors, 0);
    ck_assert_int_eq(s->dones, 1);
    return c;
}

/* A streamed response taken piece by piece, paused for a while in the middle. */
START_TEST(client_stream_pieces)
{
    server_up();
    struct seen s;
    struct http_client *c = get_with_pause(&s, "/stream", 3, 100);
    struct buf want;
    buf_init(&want);
    for (int i = 0; i < STREAM_PIECES; i++)
        buf_printf(&want, "piece-%02d\n", i);
    ck_assert(s.body.len == want.len && memcmp(s.body.p, want.p, want.len) == 0);
    /* Pieces came as they were written, not as one body at the end. */
    ck_assert_int_ge(s.pieces, STREAM_PIECES / 2);
    buf_fini(&want);
    http_client_close(c);
    buf_fini(&s.body);
    server_down();
}
END_TEST

/* A consumer that pauses stops the reading: the server holds its output, nothing is lost. */
START_TEST(client_backpressure)
{
    server_up();
    struct seen s;
    struct http_client *c = get_with_pause(&s, "/flood", 1, 300);
    ck_assert_uint_eq(s.body.len, FLOOD_BYTES);
    ck_assert_uint_gt(pending_seen, 0);
    for (size_t i = 0; i < FLOOD_BYTES; i += FLOOD_PIECE)
        ck_assert_int_eq(s.body.p[i], 'a' + (int)(i / FLOOD_PIECE) % 26);
    http_client_close(c);
    buf_fini(&s.body);
    server_down();
}
END_TEST

/* The server cuts a stream after its first chunk: the piece arrives, then an error. */
START_TEST(client_server_closes_mid_body)
{
    server_up();
    struct seen s;
    seen_init(&s);
    struct http_client *c = open_client(&s, port, 2000);
    ck_assert_int_eq(http_client_request(c, "GET", "/cut", NULL, 0, NULL, 0), 0);
    run_loop(5000);
    ck_assert_int_eq(s.heads, 1);
    ck_assert(body_is(&s, "part"));
    ck_assert_int_eq(s.dones, 0);
    ck_assert_int_eq(s.errors, 1);
    ck_assert_int_eq(s.err, HTTP_CLIENT_E_CLOSED);
    /* Closed: no further request. */
    ck_assert_int_eq(http_client_request(c, "GET", "/plain", NULL, 0, NULL, 0), -1);
    http_client_close(c);
    buf_fini(&s.body);
    server_down();
}
END_TEST

/* ---- a raw server: answers each connection with canned bytes once the request is in, then
 * shuts down its sending side ---- */

struct raw {
    int lfd;
    int port;
    const char *answer;
    size_t answer_len;
    struct event *lev;
    int fds[8];
    struct event *evs[8];
    int n;
};

static void on_raw_read(evutil_socket_t fd, short what, void *arg)
{
    struct raw *r = arg;
    (void)what;
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n <= 0)
        return;
    tu_send_all(fd, r->answer, r->answer_len);
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < r->n; i++)
        if (r->fds[i] == fd)
            event_del(r->evs[i]);
}

static void on_raw_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct raw *r = arg;
    (void)what;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0 || r->n == 8) {
        if (fd >= 0)
            close(fd);
        return;
    }
    r->fds[r->n] = fd;
    r->evs[r->n] = event_new(base, fd, EV_READ | EV_PERSIST, on_raw_read, r);
    event_add(r->evs[r->n], NULL);
    r->n++;
}

static void raw_up(struct raw *r, const char *answer, size_t len)
{
    memset(r, 0, sizeof(*r));
    r->answer = answer;
    r->answer_len = len;
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(r->lfd, 8), 0);
    ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&a, &al), 0);
    r->port = ntohs(a.sin_port);
    r->lev = event_new(base, r->lfd, EV_READ | EV_PERSIST, on_raw_accept, r);
    event_add(r->lev, NULL);
}

static void raw_down(struct raw *r)
{
    for (int i = 0; i < r->n; i++) {
        event_free(r->evs[i]);
        close(r->fds[i]);
    }
    event_free(r->lev);
    close(r->lfd);
}

#define LIT(s) s, sizeof(s) - 1

/* Canned answers: what the client makes of each. */
START_TEST(client_raw_answers)
{
    static const struct {
        const char *answer;
        size_t len;
        enum http_client_err err; /* 0: a complete response */
        const char *body;
    } cases[] = {
        {LIT("HTTP/1.1 2x0 OK\r\n\r\n"), HTTP_CLIENT_E_MALFORMED, ""},
        {LIT("HTTP/1.1 200\r\nNo colon\r\n\r\n"), HTTP_CLIENT_E_MALFORMED, ""},
        {LIT("SSH-2.0-OpenSSH\r\n\r\n"), HTTP_CLIENT_E_MALFORMED, ""},
        {LIT("HTTP/2.0 200 OK\r\n\r\n"), HTTP_CLIENT_E_MALFORMED, ""},
        {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
         HTTP_CLIENT_E_MALFORMED, ""},
        {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\n0\r\n\r\n"),
         HTTP_CLIENT_E_MALFORMED, "ab"},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"), HTTP_CLIENT_E_CLOSED, "short"},
        {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
         HTTP_CLIENT_E_CLOSED, "hello"},
        {LIT("HTTP/1.1 200 OK\r\nContent-Len"), HTTP_CLIENT_E_CLOSED, ""},
        {LIT(""), HTTP_CLIENT_E_CLOSED, ""},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA"), HTTP_CLIENT_E_MALFORMED,
         "abc"},
        /* complete ones */
        {LIT("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 0,
         "ok"},
        {LIT("HTTP/1.0 200 OK\r\n\r\nuntil the close"), 0, "until the close"},
        {LIT("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"), 0, ""},
        {LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nTrailer: t\r\n\r\n"),
         0, "abcd"},
    };
    server_up();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct raw r;
        raw_up(&r, cases[i].answer, cases[i].len);
        struct seen s;
        seen_init(&s);
        s.stop_on_done = !cases[i].err;
        struct http_client *c = open_client(&s, r.port, 2000);
        ck_assert_int_eq(http_client_request(c, "GET", "/", NULL, 0, NULL, 0), 0);
        run_loop(5000);
        ck_assert_msg(s.err == cases[i].err, "case %zu: error %d (%s), want %d", i, s.err,
                      s.err ? http_client_strerror(s.err) : "-", cases[i].err);
        ck_assert_msg(body_is(&s, cases[i].body), "case %zu: body %.*s", i, (int)s.body.len,
                      (const char *)s.body.p);
        if (!cases[i].err)
            ck_assert_msg(s.dones == 1 && s.errors == 0, "case %zu", i);
        http_client_close(c);
        buf_fini(&s.body);
        raw_down(&r);
    }
    server_down();
}
END_TEST

/* Nothing listens: connect fails, reported from the loop. */
START_TEST(client_refused)
{
    server_up();
    struct seen s;
    seen_init(&s);
    int free_port = tu_free_port();
    struct http_client *c = open_client(&s, free_port, 2000);
    ck_assert_int_eq(http_client_request(c, "GET", "/plain", NULL, 0, NULL, 0), 0);
    ck_assert_int_eq(s.errors, 0); /* not from inside the call */
    run_loop(5000);
    ck_assert_int_eq(s.errors, 1);
    ck_assert_int_eq(s.err, HTTP_CLIENT_E_CONNECT);
    ck_assert_int_eq(s.heads, 0);
    http_client_close(c);
    buf_fini(&s.body);
    /* Not a numeric address. */
    struct http_client_opts o = {0};
    ck_assert_ptr_null(http_client_open(base, "localhost", 80, &o));
    server_down();
}
END_TEST

/* A server that never answers: the response timeout fires. */
START_TEST(client_timeout)
{
    server_up();
    struct seen s;
    seen_init(&s);
    struct http_client *c = open_client(&s, port, 200);
    ck_assert_int_eq(http_client_request(c, "GET", "/hold", NULL, 0, NULL, 0), 0);
    int64_t t0 = tu_now_ms();
    run_loop(5000);
    int64_t took = tu_now_ms() - t0;
    ck_assert_int_eq(s.errors, 1);
    ck_assert_int_eq(s.err, HTTP_CLIENT_E_TIMEOUT);
    ck_assert_msg(took >= 150 && took < 2000, "timed out after %lld ms", (long long)took);
    http_client_close(c);
    buf_fini(&s.body);
    server_down();
}
END_TEST

static void close_in_body(void *arg, const struct http_response *resp)
{
    (void)resp;
    struct seen *s = arg;
    s->heads++;
    http_client_close(s->c);
    event_base_loopexit(base, NULL);
}

/* Closing from inside a callback: no other callback runs, nothing leaks. */
START_TEST(client_close_in_callback)
{
    server_up();
    struct seen s;
    seen_init(&s);
    struct http_client_opts o = {.on_head = close_in_body,
                                 .on_body = on_body,
                                 .on_done = on_done,
                                 .on_error = on_error,
                                 .arg = &s};
    s.c = http_client_open(base, "127.0.0.1", (uint16_t)port, &o);
    ck_assert_ptr_nonnull(s.c);
    ck_assert_int_eq(http_client_request(s.c, "GET", "/plain", NULL, 0, NULL, 0), 0);
    run_loop(5000);
    run_loop(50);
    ck_assert_int_eq(s.heads, 1);
    ck_assert_int_eq(s.pieces + s.dones + s.errors, 0);
    buf_fini(&s.body);
    server_down();
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    Suite *s = suite_create("http_client");
    TCase *tc = tcase_create("client");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, client_plain);
    tcase_add_test(tc, client_chunked_request);
    tcase_add_test(tc, client_stream_pieces);
    tcase_add_test(tc, client_backpressure);
    tcase_add_test(tc, client_server_closes_mid_body);
    tcase_add_test(tc, client_raw_answers);
    tcase_add_test(tc, client_refused);
    tcase_add_test(tc, client_timeout);
    tcase_add_test(tc, client_close_in_callback);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
