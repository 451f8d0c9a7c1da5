/* test_lease.c - integration: the lease routes (reference §7), expiry timing bounds,
 * keepalive, revoke in one revision, 10,000 leases expiring together while reads go on,
 * leases across a restart, bad input. */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct tu_server srv;

static void setup(void)
{
    tu_server_start(&srv, NULL);
}

static void teardown(void)
{
    tu_server_stop(&srv);
}

#define H(r)                                                                                       \
    "{\"cluster_id\":\"C\",\"member_id\":\"M\",\"revision\":\"" #r "\",\"raft_term\":\"T\"}"
#define ERR(msg, code) "{\"error\":\"" msg "\",\"message\":\"" msg "\",\"code\":" #code "}"

#define EXPECT(path, body, want_status, want)                                                      \
    do {                                                                                           \
        int st_;                                                                                   \
        char *got_ = tu_post(srv.port, path, body, &st_);                                          \
        ck_assert_msg(st_ == (want_status), "%s %s: status %d want %d (%s)", path, body, st_,      \
                      want_status, got_);                                                          \
        ck_assert_msg(strcmp(got_, want) == 0, "%s %s:\n got  %s\n want %s", path, body, got_,     \
                      want);                                                                       \
        free(got_);                                                                                \
    } while (0)

static int key_count(const char *key_b64)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"count_only\":true}", key_b64);
    char *got = tu_post(srv.port, "/v3/kv/range", body, NULL);
    int n = (int)tu_json_num(got, "count", 0);
    free(got);
    return n;
}

START_TEST(routes)
{
    EXPECT("/v3/lease/grant", "{\"TTL\":300,\"ID\":1234}", 200,
           "{\"header\":" H(1) ",\"ID\":\"1234\",\"TTL\":\"300\"}");
    EXPECT("/v3/lease/grant", "{\"TTL\":300,\"ID\":1234}", 412,
           ERR("etcdserver: lease already exists", 9));
    EXPECT("/v3/lease/grant", "{\"TTL\":1,\"ID\":\"-7\"}", 200,
           "{\"header\":" H(1) ",\"ID\":\"-7\",\"TTL\":\"2\"}");
    EXPECT("/v3/lease/grant", "{\"TTL\":-5,\"ID\":5}", 200,
           "{\"header\":" H(1) ",\"ID\":\"5\",\"TTL\":\"2\"}");
    EXPECT("/v3/lease/grant", "{\"TTL\":9000000001}", 400,
           ERR("etcdserver: too large lease TTL", 11));
    /* "ttl"/"id" are not the field names: TTL 0 (the minimum) and an assigned ID. */
    int st;
    char *got = tu_post(srv.port, "/v3/lease/grant", "{\"ttl\":61,\"id\":4321}", &st);
    ck_assert_int_eq(st, 200);
    ck_assert_ptr_nonnull(strstr(got, "\"TTL\":\"2\""));
    ck_assert_ptr_null(strstr(got, "\"ID\":\"4321\""));
    free(got);
    EXPECT("/v3/lease/grant", "{\"TTL\":\"abc\"}", 400,
           ERR("invalid character 'a' looking for beginning of value", 3));
    EXPECT("/v3/lease/grant", "{\"TTL\":2.5}", 400,
           ERR("json: cannot unmarshal number 2.5 into Go value of type int64", 3));
    /* Keys attach; timetolive lists them; unknown leases. */
    EXPECT("/v3/kv/put", "{\"key\":\"bGs=\",\"value\":\"djE=\",\"lease\":1234}", 200,
           "{\"header\":" H(2) "}");
    EXPECT("/v3/kv/put", "{\"key\":\"bGsy\",\"value\":\"djI=\",\"lease\":1234}", 200,
           "{\"header\":" H(3) "}");
    EXPECT("/v3/kv/put", "{\"key\":\"eA==\",\"lease\":999}", 404,
           ERR("etcdserver: requested lease not found", 5));
    EXPECT("/v3/kv/txn", "{\"success\":[{\"request_put\":{\"key\":\"eA==\",\"lease\":999}}]}", 404,
           ERR("etcdserver: requested lease not found", 5));
    got = tu_post(srv.port, "/v3/lease/timetolive", "{\"ID\":1234,\"keys\":true}", &st);
    ck_assert_int_eq(st, 200);
    ck_assert_msg(strstr(got, "\"ID\":\"1234\",\"TTL\":\"29") &&
                      strstr(got, "\"grantedTTL\":\"300\",\"keys\":[\"bGs=\",\"bGsy\"]}"),
                  "%s", got);
    free(got);
    EXPECT("/v3/lease/timetolive", "{\"ID\":999}", 200,
           "{\"header\":" H(3) ",\"ID\":\"999\",\"TTL\":\"-1\"}");
    EXPECT("/v3/kv/lease/timetolive", "{}", 200, "{\"header\":" H(3) ",\"TTL\":\"-1\"}");
    /* The ID list (order is unspecified in etcd; ours is ascending). */
    got = tu_post(srv.port, "/v3/lease/leases", "{}", &st);
    ck_assert_ptr_nonnull(strstr(got, "{\"ID\":\"1234\"}"));
    ck_assert_ptr_nonnull(strstr(got, "{\"ID\":\"-7\"}"));
    free(got);
    got = tu_post(srv.port, "/v3/kv/lease/leases", "{}", &st);
    ck_assert_int_eq(st, 200);
    free(got);
    /* Keepalive: one result per message, unknown lease without TTL, {} without ID. */
    struct tu_resp r;
    tu_http(srv.port, "POST", "/v3/lease/keepalive", "{\"ID\":1234} {\"ID\":999}\n{}", &r);
    ck_assert_int_eq(r.status, 200);
    char *norm = tu_norm(r.body);
    ck_assert_str_eq(norm,
                     "{\"result\":{\"header\":" H(3) ",\"ID\":\"1234\",\"TTL\":\"300\"}}\n"
                                                     "{\"result\":{\"header\":" H(
                                                         3) ",\"ID\":\"999\"}}\n"
                                                            "{\"result\":{\"header\":" H(3) "}}\n");
    free(norm);
    tu_resp_free(&r);
    tu_http(srv.port, "POST", "/v3/lease/keepalive", "", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "");
    tu_resp_free(&r);
    tu_http(srv.port, "POST", "/v3/lease/keepalive", "{\"ID\":", &r);
    ck_assert_int_eq(r.status, 500);
    ck_assert_str_eq(r.body, ERR("unexpected EOF", 2));
    tu_resp_free(&r);
    /* No legacy alias for grant and keepalive (etcd 3.4). */
    tu_http(srv.port, "POST", "/v3/kv/lease/grant", "{}", &r);
    ck_assert_int_eq(r.status, 404);
    tu_resp_free(&r);
    /* Revoke deletes both keys in one revision. */
    EXPECT("/v3/lease/revoke", "{\"ID\":1234}", 200, "{\"header\":" H(4) "}");
    EXPECT("/v3/lease/revoke", "{\"ID\":1234}", 404,
           ERR("etcdserver: requested lease not found", 5));
    EXPECT("/v3/kv/lease/revoke", "{}", 404, ERR("etcdserver: requested lease not found", 5));
    EXPECT("/v3/kv/range",
           "{\"key\":\"bGs=\",\"range_end\":\"bHQ=\",\"revision\":3,\"count_only\":true}", 200,
           "{\"header\":" H(4) ",\"count\":\"2\"}");
    EXPECT("/v3/kv/range", "{\"key\":\"bGs=\",\"range_end\":\"bHQ=\",\"count_only\":true}", 200,
           "{\"header\":" H(4) "}");
    /* A put without lease detaches; ignore_lease keeps it. */
    EXPECT("/v3/lease/grant", "{\"TTL\":300,\"ID\":77}", 200,
           "{\"header\":" H(4) ",\"ID\":\"77\",\"TTL\":\"300\"}");
    EXPECT("/v3/kv/put", "{\"key\":\"YQ==\",\"lease\":77}", 200, "{\"header\":" H(5) "}");
    EXPECT("/v3/kv/put", "{\"key\":\"YQ==\",\"ignore_lease\":true}", 200, "{\"header\":" H(6) "}");
    EXPECT("/v3/kv/put", "{\"key\":\"Yg==\",\"lease\":77}", 200, "{\"header\":" H(7) "}");
    EXPECT("/v3/kv/put", "{\"key\":\"Yg==\"}", 200, "{\"header\":" H(8) "}");
    got = tu_post(srv.port, "/v3/lease/timetolive", "{\"ID\":77,\"keys\":true}", NULL);
    ck_assert_ptr_nonnull(strstr(got, "\"keys\":[\"YQ==\"]}"));
    free(got);
}
END_TEST

/* The remaining TTL of lease id as timetolive reports it (whole seconds, rounded down), or
 * -1 for none. */
static long ttl_of(long id)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"ID\":%ld}", id);
    char *got = tu_post(srv.port, "/v3/lease/timetolive", body, NULL);
    long ttl = tu_json_num(got, "TTL", -100);
    free(got);
    return ttl;
}

/* Poll (bounded) until lease id has run down to ttl whole seconds: a second or more of the
 * server's clock has passed on it. */
static void wait_ttl(long id, long ttl)
{
    long now = -100;
    for (int64_t end = tu_now_ms() + 10000; (now = ttl_of(id)) > ttl; tu_sleep_ms(20))
        ck_assert_msg(tu_now_ms() < end, "lease %ld stayed at TTL %ld", id, now);
    ck_assert_int_eq(now, ttl);
}

/* A keepalive body of many messages sent by a client that does not read: the answers are
 * made only as fast as they leave (they used to pile up whole, about 12 bytes of answer per
 * byte of request, then be copied once more), and every one arrives once the client reads. */
START_TEST(keepalive_unread_bounded)
{
    /* A server of its own with a small ASan quarantine: freed memory is then given back. */
    struct tu_server ls;
    tu_server_start_lean(&ls, NULL);
    free(tu_post(ls.port, "/v3/lease/grant", "{\"TTL\":300,\"ID\":77}", NULL));
    enum { N = 150000 };
    const char msg[] = "{\"ID\":77}";
    size_t blen = (sizeof(msg) - 1) * N;
    char head[200];
    int hl = snprintf(head, sizeof(head),
                      "POST /v3/lease/keepalive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      blen);
    char *req = malloc((size_t)hl + blen);
    ck_assert_ptr_nonnull(req);
    memcpy(req, head, (size_t)hl);
    for (size_t i = 0; i < N; i++)
        memcpy(req + hl + i * (sizeof(msg) - 1), msg, sizeof(msg) - 1);
    long base = tu_rss_kb(ls.pid);
    int fd = tu_connect(ls.port);
    ck_assert_int_ge(fd, 0);
    tu_send_all(fd, req, (size_t)hl + blen);
    free(req);
    long peak = base;
    for (int64_t end = tu_now_ms() + 3000; tu_now_ms() < end; tu_sleep_ms(50)) {
        long kb = tu_rss_kb(ls.pid);
        peak = kb > peak ? kb : peak;
    }
    fprintf(stderr, "keepalive unread: RSS %ld -> %ld KiB\n", base, peak);
    /* The body's two copies (1.5 MB each, ASan's shadow and redzones besides) take about
     * 10 MB; the answers made whole took 89 MB more. */
    ck_assert_msg(peak - base < 32 * 1024, "server RSS grew by %ld KiB", peak - base);
    size_t n;
    char *out = tu_read_all(fd, 60000, &n);
    close(fd);
    /* One pass (strstr from each match would rescan the rest under ASan: 23 MB each time). */
    static const char ttl[] = "\"TTL\":\"300\"";
    size_t answers = 0;
    for (size_t i = 0; i + sizeof(ttl) - 1 <= n; i++)
        answers += out[i] == '"' && memcmp(out + i, ttl, sizeof(ttl) - 1) == 0;
    free(out);
    ck_assert_uint_eq(answers, N);
    tu_server_stop(&ls);
}
END_TEST

START_TEST(expiry_bounds)
{
    /* TTL 3: the keys must exist until 3 s after the last keepalive and be gone by 4 s. The
     * lessor's arithmetic is checked to the millisecond on a fake clock in the unit suite;
     * here the server's keepalive route, its expiry timer and the revoke. */
    EXPECT("/v3/lease/grant", "{\"TTL\":3,\"ID\":10}", 200,
           "{\"header\":" H(1) ",\"ID\":\"10\",\"TTL\":\"3\"}");
    EXPECT("/v3/kv/put", "{\"key\":\"ZXhwL2E=\",\"value\":\"eA==\",\"lease\":10}", 200,
           "{\"header\":" H(2) "}");
    EXPECT("/v3/kv/put", "{\"key\":\"ZXhwL2I=\",\"value\":\"eA==\",\"lease\":10}", 200,
           "{\"header\":" H(3) "}");
    /* Once a second or more of the lease has gone (under 2 s left: "1"), a keepalive restores
     * the full TTL (over 2 s left: "2"). */
    wait_ttl(10, 1);
    uint64_t before = tu_now_ms();
    struct tu_resp r;
    tu_http(srv.port, "POST", "/v3/lease/keepalive", "{\"ID\":10}", &r);
    uint64_t last = tu_now_ms();
    ck_assert_ptr_nonnull(strstr(r.body, "\"TTL\":\"3\""));
    tu_resp_free(&r);
    ck_assert_int_ge(ttl_of(10), 2);
    /* Then silence: poll until the keys go. */
    uint64_t gone = 0;
    while (!gone && tu_now_ms() - last < 10000) {
        if (key_count("ZXhwL2E=") == 0)
            gone = tu_now_ms();
        else
            tu_sleep_ms(20);
    }
    ck_assert_msg(gone, "keys never expired");
    /* The server renewed after `before`, so no absence may be seen before before + TTL. */
    ck_assert_msg(gone - before >= 3000, "keys expired %llu ms after the keepalive, before the TTL",
                  (unsigned long long)(gone - before));
    uint64_t after = gone - last;
    printf("lease: keys expired %llu ms after the last keepalive (TTL 3 s)\n",
           (unsigned long long)after);
    ck_assert_msg(after <= 4000, "keys expired after %llu ms, more than TTL + 1 s",
                  (unsigned long long)after);
    /* Both keys went in one revision, and the lease is gone. */
    EXPECT("/v3/kv/range", "{\"key\":\"ZXhw\",\"range_end\":\"ZXhx\",\"count_only\":true}", 200,
           "{\"header\":" H(4) "}");
    EXPECT("/v3/lease/timetolive", "{\"ID\":10}", 200,
           "{\"header\":" H(4) ",\"ID\":\"10\",\"TTL\":\"-1\"}");
    tu_http(srv.port, "POST", "/v3/lease/keepalive", "{\"ID\":10}", &r);
    ck_assert_ptr_null(strstr(r.body, "TTL"));
    tu_resp_free(&r);
}
END_TEST

START_TEST(many_leases_expire_together)
{
    enum { N = 10000 };
    char **bodies = malloc(N * sizeof(char *));
    int *st = malloc(N * sizeof(int));
    for (int i = 0; i < N; i++) {
        bodies[i] = malloc(128);
        snprintf(bodies[i], 128, "{\"TTL\":10,\"ID\":%d}", 100000 + i);
    }
    uint64_t t_grant = tu_now_ms();
    ck_assert_uint_eq(tu_pipeline(srv.port, "/v3/lease/grant", bodies, N, st), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(st[i], 200);
        char key[32], kb[48];
        snprintf(key, sizeof(key), "many/%05d", i);
        tu_b64(key, kb);
        snprintf(bodies[i], 128, "{\"key\":\"%s\",\"lease\":%d}", kb, 100000 + i);
    }
    ck_assert_uint_eq(tu_pipeline(srv.port, "/v3/kv/put", bodies, N, st), N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(st[i], 200);
    uint64_t start = tu_now_ms();
    printf("lease: %d grants and %d puts took %llu ms\n", N, N,
           (unsigned long long)(start - t_grant));
    /* While they expire, reads keep being answered quickly. */
    uint64_t worst = 0;
    int left = N;
    while (left > 0 && tu_now_ms() - start < 40000) {
        uint64_t t0 = tu_now_ms();
        char *got =
            tu_post(srv.port, "/v3/kv/range",
                    "{\"key\":\"bWFueS8=\",\"range_end\":\"bWFueTA=\",\"count_only\":true}", NULL);
        uint64_t took = tu_now_ms() - t0;
        if (took > worst)
            worst = took;
        left = (int)tu_json_num(got, "count", 0);
        free(got);
        tu_sleep_ms(20);
    }
    ck_assert_int_eq(left, 0);
    ck_assert_msg(worst < 5000, "a read took %llu ms during the mass expiry",
                  (unsigned long long)worst);
    char *got = tu_post(srv.port, "/v3/lease/leases", "{}", NULL);
    ck_assert_ptr_null(strstr(got, "\"leases\""));
    free(got);
    printf("lease: %d leases expired, slowest read meanwhile %llu ms\n", N,
           (unsigned long long)worst);
    for (int i = 0; i < N; i++)
        free(bodies[i]);
    free(bodies);
    free(st);
}
END_TEST

START_TEST(leases_survive_restart)
{
    EXPECT("/v3/lease/grant", "{\"TTL\":60,\"ID\":42}", 200,
           "{\"header\":" H(1) ",\"ID\":\"42\",\"TTL\":\"60\"}");
    EXPECT("/v3/kv/put", "{\"key\":\"cg==\",\"lease\":42}", 200, "{\"header\":" H(2) "}");
    /* Let the lease run down by a second (58.x s left) before the restart. */
    wait_ttl(42, 58);
    tu_server_stop_keep(&srv, 1);
    tu_server_restart(&srv, NULL);
    /* The lease is back with its key, its expiry restarted at the full TTL. */
    char *got = tu_post(srv.port, "/v3/lease/timetolive", "{\"ID\":42,\"keys\":true}", NULL);
    ck_assert_msg(strstr(got, "\"TTL\":\"59\"") || strstr(got, "\"TTL\":\"60\""), "%s", got);
    ck_assert_ptr_nonnull(strstr(got, "\"keys\":[\"cg==\"]"));
    free(got);
    /* And after SIGKILL too (replayed from the WAL). */
    EXPECT("/v3/lease/grant", "{\"TTL\":60,\"ID\":43}", 200,
           "{\"header\":" H(2) ",\"ID\":\"43\",\"TTL\":\"60\"}");
    EXPECT("/v3/kv/put", "{\"key\":\"cw==\",\"lease\":43}", 200, "{\"header\":" H(3) "}");
    tu_server_kill(&srv);
    tu_server_restart(&srv, NULL);
    got = tu_post(srv.port, "/v3/lease/timetolive", "{\"ID\":43,\"keys\":true}", NULL);
    ck_assert_ptr_nonnull(strstr(got, "\"keys\":[\"cw==\"]"));
    free(got);
    EXPECT("/v3/lease/revoke", "{\"ID\":42}", 200, "{\"header\":" H(4) "}");
    EXPECT("/v3/kv/range", "{\"key\":\"cg==\",\"count_only\":true}", 200, "{\"header\":" H(4) "}");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("lease");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, routes);
    tcase_add_test(tc, keepalive_unread_bounded);
    tcase_add_test(tc, expiry_bounds);
    tcase_add_test(tc, many_leases_expire_together);
    tcase_add_test(tc, leases_survive_restart);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
