/* test_gw_http.c - integration: the HTTP layer (routing texts, methods, aliases, framing) and
 * hostile clients (huge headers and bodies, slow and vanishing clients, many connections).
 * After every test the server must still answer and must stop cleanly (no sanitizer report).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tu_server srv;

static void setup(void)
{
    tu_server_start(&srv, NULL);
}

static void teardown(void)
{
    /* Still alive and serving? */
    struct tu_resp r;
    tu_http(srv.port, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    tu_resp_free(&r);
    tu_server_stop(&srv);
}

static void expect(const char *method, const char *path, const char *body, int status,
                   const char *want_body, const char *want_ctype)
{
    struct tu_resp r;
    tu_http(srv.port, method, path, body, &r);
    ck_assert_msg(r.status == status, "%s %s: status %d want %d", method, path, r.status, status);
    if (want_body)
        ck_assert_msg(strcmp(r.body, want_body) == 0, "%s %s: body [%s] want [%s]", method, path,
                      r.body, want_body);
    if (want_ctype) {
        const char *ct = tu_header(&r, "Content-Type");
        ck_assert_msg(ct && strcmp(ct, want_ctype) == 0, "%s %s: content-type %s", method, path,
                      ct ? ct : "(none)");
    }
    ck_assert_str_eq(tu_header(&r, "Access-Control-Allow-Origin"), "*");
    tu_resp_free(&r);
}

START_TEST(routing)
{
    const char *tp = "text/plain; charset=utf-8";
    expect("GET", "/v3/kv/range", NULL, 405, "Method Not Allowed\n", tp);
    expect("PUT", "/v3/kv/range", "{}", 405, "Method Not Allowed\n", tp);
    expect("DELETE", "/v3/kv/range", NULL, 405, "Method Not Allowed\n", tp);
    expect("POST", "/v3/kv/bogus", "{}", 404, "Not Found\n", tp);
    expect("POST", "/v3/", "{}", 404, "Not Found\n", tp);
    expect("POST", "/v3/kv/range/", "{\"key\":\"Zm9v\"}", 404, "Not Found\n", tp);
    expect("GET", "/nope", NULL, 404, "404 page not found\n", tp);
    expect("GET", "/", NULL, 404, "404 page not found\n", tp);
    expect("POST", "/V3/KV/RANGE", "{\"key\":\"Zm9v\"}", 404, "404 page not found\n", tp);
    expect("POST", "/v3alpha/kv/range", "{\"key\":\"Zm9v\"}", 404, "404 page not found\n", tp);
    expect("POST", "/v3beta/bogus", "{}", 404, "Not Found\n", tp);
    expect("OPTIONS", "/v3/kv/bogus", NULL, 200, "", NULL);
    expect("OPTIONS", "/v3/kv/range", NULL, 200, "", NULL);
    /* Aliases, percent-encoding and ignored query strings all reach the route. */
    expect("POST", "/v3beta/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}", 200, NULL,
           "application/json");
    expect("POST", "/v3/kv/%72ange?limit=1", "{\"key\":\"Zm9v\",\"count_only\":true}", 200, NULL,
           "application/json");
    /* Not built yet: a clear gRPC Unimplemented error, not a misleading 404. */
    expect("POST", "/v3/auth/user/list", "{}", 501, NULL, "application/json");

    struct tu_resp r;
    tu_http(srv.port, "POST", "//v3/kv/range", "{}", &r);
    ck_assert_int_eq(r.status, 301);
    ck_assert_str_eq(tu_header(&r, "Location"), "/v3/kv/range");
    tu_resp_free(&r);
    tu_http(srv.port, "POST", "/v3", "{}", &r);
    ck_assert_int_eq(r.status, 301);
    ck_assert_str_eq(tu_header(&r, "Location"), "/v3/");
    tu_resp_free(&r);
    tu_http(srv.port, "POST", "/v3/kv/../kv/range", "{}", &r);
    ck_assert_int_eq(r.status, 301);
    ck_assert_str_eq(tu_header(&r, "Location"), "/v3/kv/range");
    tu_resp_free(&r);
}
END_TEST

START_TEST(health_version)
{
    expect("GET", "/health", NULL, 200, "{\"health\":\"true\"}", "text/plain; charset=utf-8");
    expect("GET", "/health?serializable=true", NULL, 200, "{\"health\":\"true\"}", NULL);
    expect("GET", "/version", NULL, 200, "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\"}",
           "application/json");
    struct tu_resp r;
    tu_http(srv.port, "POST", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(tu_header(&r, "Allow"), "GET");
    ck_assert_str_eq(r.body, "Method Not Allowed\n");
    tu_resp_free(&r);
    tu_http(srv.port, "POST", "/version", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    tu_resp_free(&r);
    /* A successful gateway answer carries grpc-gateway's metadata header. */
    tu_http(srv.port, "POST", "/v3/maintenance/status", "{}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(tu_header(&r, "Grpc-Metadata-Content-Type"), "application/grpc");
    ck_assert_ptr_nonnull(strstr(r.body, "\"version\":\"3.4.23\""));
    tu_resp_free(&r);
}
END_TEST

/* Send raw bytes, read the whole answer (the request asks to close). */
static char *raw_exchange(const char *req, size_t len, int timeout_ms)
{
    int fd = tu_connect(srv.port);
    ck_assert_int_ge(fd, 0);
    tu_send_all(fd, req, len);
    size_t n;
    char *out = tu_read_all(fd, timeout_ms, &n);
    close(fd);
    return out;
}

START_TEST(framing)
{
    /* HTTP/1.0 */
    const char *r10 = "POST /v3/kv/put HTTP/1.0\r\nContent-Length: 29\r\n\r\n"
                      "{\"key\":\"YQ==\",\"value\":\"Yg==\"}";
    char *out = raw_exchange(r10, strlen(r10), 5000);
    ck_assert_msg(strncmp(out, "HTTP/1.0 200", 12) == 0 || strncmp(out, "HTTP/1.1 200", 12) == 0,
                  "%s", out);
    free(out);
    /* A chunked request body. */
    const char *rc = "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: close\r\n\r\n8\r\n{\"key\":\"\r\n9\r\nYQ==\",\"co\r\n"
                     "f\r\nunt_only\":true}\r\n0\r\n\r\n";
    out = raw_exchange(rc, strlen(rc), 5000);
    ck_assert_msg(strstr(out, "200 OK") && strstr(out, "\"count\":\"1\""), "%s", out);
    free(out);
    /* Expect: 100-continue. */
    const char *re = "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     "Connection: close\r\nContent-Length: 14\r\n\r\n{\"key\":\"YQ==\"}";
    out = raw_exchange(re, strlen(re), 5000);
    ck_assert_msg(strstr(out, "200 OK") && strstr(out, "\"kvs\""), "%s", out);
    free(out);
    /* Two requests on one keep-alive connection, sent back to back. */
    const char *rp = "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n"
                     "{\"key\":\"YQ==\"}"
                     "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n"
                     "Connection: close\r\n\r\n{\"key\":\"YQ==\"}";
    out = raw_exchange(rp, strlen(rp), 5000);
    char *second = strstr(out, "HTTP/1.1 200");
    ck_assert_ptr_nonnull(second);
    ck_assert_msg(strstr(second + 1, "HTTP/1.1 200") != NULL, "%s", out);
    free(out);
}
END_TEST

START_TEST(hostile_clients)
{
    /* A header block far over the limit: refused, connection closed. */
    size_t hl = 512 << 10;
    char *big = malloc(hl + 256);
    int k = sprintf(big, "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + k, 'h', hl);
    strcpy(big + k + hl, "\r\nContent-Length: 2\r\n\r\n{}");
    char *out = raw_exchange(big, strlen(big), 5000);
    ck_assert_msg(strstr(out, "200 OK") == NULL, "oversized header accepted");
    free(out);
    free(big);

    /* Garbage instead of HTTP. */
    out = raw_exchange("\x01\x02 not http at all\r\n\r\n", 22, 3000);
    ck_assert(strstr(out, "200 OK") == NULL);
    free(out);

    /* A slow client holding a half-sent request does not block others. */
    int slow = tu_connect(srv.port);
    ck_assert_int_ge(slow, 0);
    tu_send_all(slow, "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Len", 44);
    /* A client that announces a body and vanishes half-way. */
    int gone = tu_connect(srv.port);
    ck_assert_int_ge(gone, 0);
    const char *half =
        "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"key\":";
    tu_send_all(gone, half, strlen(half));
    close(gone);
    struct tu_resp r;
    tu_http(srv.port, "POST", "/v3/kv/put", "{\"key\":\"YQ==\",\"value\":\"Yg==\"}", &r);
    ck_assert_int_eq(r.status, 200);
    tu_resp_free(&r);
    close(slow);

    /* Many connections opened and dropped without a word, some mid-headers. */
    for (int i = 0; i < 200; i++) {
        int fd = tu_connect(srv.port);
        ck_assert_int_ge(fd, 0);
        if (i % 2)
            tu_send_all(fd, "POST /v3/kv/range HTTP/1.1\r\n", 28);
        close(fd);
    }
    /* Requests whose replies the client never reads. */
    for (int i = 0; i < 50; i++) {
        int fd = tu_connect(srv.port);
        const char *q = "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n"
                        "{\"key\":\"YQ==\"}";
        tu_send_all(fd, q, strlen(q));
        close(fd);
    }
    tu_http(srv.port, "POST", "/v3/kv/range", "{\"key\":\"YQ==\",\"count_only\":true}", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"count\":\"1\""));
    tu_resp_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gw_http");
    TCase *tc = tcase_create("http");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, routing);
    tcase_add_test(tc, health_version);
    tcase_add_test(tc, framing);
    tcase_add_test(tc, hostile_clients);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
