/* test_tls.c - the tls module over socket pairs, both ends driven by the test without a loop:
 * handshakes (self-signed and CA-issued), bytes both ways in pieces larger than a record,
 * the end of the stream, client certificates (verified CN, missing, from another CA, a CN not
 * allowed), the server's name checked by the client, plain HTTP sent to a TLS server, and the
 * errors of context creation. Certificates come from the openssl command (tu_make_certs). */
#include "metastore/tls.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char *g_dir;
static char g_path[16][4200];

static const char *path(int slot, const char *name)
{
    snprintf(g_path[slot], sizeof(g_path[slot]), "%s/%s", g_dir, name);
    return g_path[slot];
}

static void certs_setup(void)
{
    g_dir = tu_mkdtemp("mstlsu");
    tu_make_certs(g_dir);
}

static void certs_teardown(void)
{
    tu_rmtree(g_dir);
    free(g_dir);
}

struct pair {
    int fd[2]; /* [0] server, [1] client */
    struct tls_conn *s, *c;
};

static void pair_open(struct pair *p, struct tls_ctx *server, struct tls_ctx *client,
                      const char *host)
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
    for (int i = 0; i < 2; i++)
        fcntl(p->fd[i], F_SETFL, O_NONBLOCK);
    p->s = tls_accept(server, p->fd[0]);
    p->c = client ? tls_connect(client, p->fd[1], host) : NULL;
    ck_assert_ptr_nonnull(p->s);
}

static void pair_close(struct pair *p)
{
    tls_conn_free(p->s);
    tls_conn_free(p->c);
    close(p->fd[0]);
    close(p->fd[1]);
}

/* Step both handshakes until each is done or failed (bounded). */
static void handshake(struct pair *p, enum tls_step *ss, enum tls_step *cs)
{
    *ss = *cs = TLS_WANT_READ;
    for (int i = 0; i < 100; i++) {
        if (*cs != TLS_DONE && *cs != TLS_FAILED)
            *cs = tls_handshake(p->c);
        if (*ss != TLS_DONE && *ss != TLS_FAILED)
            *ss = tls_handshake(p->s);
        bool s_end = *ss == TLS_DONE || *ss == TLS_FAILED;
        bool c_end = *cs == TLS_DONE || *cs == TLS_FAILED;
        if (s_end && c_end)
            return;
        if ((*ss == TLS_FAILED && *cs != TLS_DONE) || (*cs == TLS_FAILED && *ss != TLS_DONE))
            return; /* the other side waits for bytes that will not come */
    }
    ck_abort_msg("the handshake did not end");
}

static struct tls_ctx *server_ctx(const struct tls_config *cfg)
{
    char msg[512];
    struct tls_ctx *t = tls_ctx_server(cfg, msg, sizeof(msg));
    ck_assert_msg(t != NULL, "%s", msg);
    return t;
}

static struct tls_ctx *client_ctx(const struct tls_config *cfg)
{
    char msg[512];
    struct tls_ctx *t = tls_ctx_client(cfg, msg, sizeof(msg));
    ck_assert_msg(t != NULL, "%s", msg);
    return t;
}

/* Send n bytes from a to b through TLS, pumping both ends; returns what b read. */
static char *transfer(struct tls_conn *a, struct tls_conn *b, const char *data, size_t n)
{
    char *got = malloc(n + 1);
    size_t sent = 0, recvd = 0;
    for (int i = 0; i < 100000 && recvd < n; i++) {
        if (sent < n) {
            ssize_t w = tls_write(a, data + sent, n - sent);
            ck_assert_msg(w > 0 || errno == EAGAIN, "write: %s", strerror(errno));
            if (w > 0)
                sent += (size_t)w;
        }
        ssize_t r = tls_read(b, got + recvd, n - recvd);
        ck_assert_msg(r > 0 || (r < 0 && errno == EAGAIN), "read %zd: %s", r, strerror(errno));
        if (r > 0)
            recvd += (size_t)r;
    }
    ck_assert_uint_eq(recvd, n);
    got[n] = 0;
    return got;
}

START_TEST(self_signed)
{
    const char *hosts[] = {"127.0.0.1", "localhost"};
    struct tls_config sc = {.auto_tls = true, .hosts = hosts, .n_hosts = 2};
    struct tls_config cc = {.auto_tls = true};
    struct tls_ctx *s = server_ctx(&sc), *c = client_ctx(&cc);
    struct pair p;
    pair_open(&p, s, c, "127.0.0.1");
    enum tls_step ss, cs;
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(ss, TLS_DONE);
    ck_assert_int_eq(cs, TLS_DONE);
    ck_assert(!tls_alpn_h2(p.s)); /* the client offered no ALPN */
    /* No client certificate was asked for: no CN. */
    char cn[64];
    ck_assert_uint_eq(tls_peer_cn(p.s, cn, sizeof(cn)), 0);
    /* 300 KB each way: many records, partial writes, reads that leave records buffered. */
    size_t n = 300000;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7);
    char *got = transfer(p.c, p.s, data, n);
    ck_assert_int_eq(memcmp(got, data, n), 0);
    free(got);
    got = transfer(p.s, p.c, data, n);
    ck_assert_int_eq(memcmp(got, data, n), 0);
    free(got);
    free(data);
    /* A small read leaves the rest of the record inside: tls_pending says so. */
    ck_assert_int_eq(tls_write(p.c, "hello", 5), 5);
    char b[2];
    ssize_t r = -1;
    for (int i = 0; i < 100 && r < 0; i++)
        r = tls_read(p.s, b, 2);
    ck_assert_int_eq(r, 2);
    ck_assert(tls_pending(p.s));
    char rest[8];
    ck_assert_int_eq(tls_read(p.s, rest, sizeof(rest)), 3);
    ck_assert(!tls_pending(p.s));
    /* Nothing more: EAGAIN, waiting for input. */
    ck_assert_int_eq(tls_read(p.s, rest, sizeof(rest)), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert(!tls_wants_write(p.s));
    /* close_notify ends the other side's stream; so does a bare FIN. */
    tls_close_notify(p.c);
    ck_assert_int_eq(tls_read(p.s, rest, sizeof(rest)), 0);
    pair_close(&p);
    pair_open(&p, s, c, "127.0.0.1");
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(ss, TLS_DONE);
    shutdown(p.fd[1], SHUT_WR);
    ck_assert_int_eq(tls_read(p.s, rest, sizeof(rest)), 0);
    pair_close(&p);
    tls_ctx_destroy(s);
    tls_ctx_destroy(c);
}
END_TEST

START_TEST(client_certs)
{
    struct tls_config sc = {.cert_file = path(0, "server.crt"),
                            .key_file = path(1, "server.key"),
                            .trusted_ca_file = path(2, "ca.crt"),
                            .client_cert_auth = true};
    struct tls_ctx *s = server_ctx(&sc);
    struct tls_config alice = {.cert_file = path(3, "alice.crt"),
                               .key_file = path(4, "alice.key"),
                               .trusted_ca_file = g_path[2]};
    struct tls_ctx *c = client_ctx(&alice);
    struct pair p;
    enum tls_step ss, cs;
    /* A certificate from the CA: its CN is known. */
    pair_open(&p, s, c, "127.0.0.1");
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(ss, TLS_DONE);
    ck_assert_int_eq(cs, TLS_DONE);
    char cn[64];
    ck_assert_uint_eq(tls_peer_cn(p.s, cn, sizeof(cn)), 5);
    ck_assert_str_eq(cn, "alice");
    ck_assert_uint_eq(tls_peer_cn(p.s, cn, 5), 0); /* no room: no name rather than a cut one */
    /* The client verified the server: its CN too. */
    ck_assert_uint_eq(tls_peer_cn(p.c, cn, sizeof(cn)), 6);
    ck_assert_str_eq(cn, "server");
    pair_close(&p);
    /* The server's certificate is not for this name: the client refuses. */
    pair_open(&p, s, c, "10.1.2.3");
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(cs, TLS_FAILED);
    ck_assert_msg(strstr(tls_why(p.c), "certificate verify failed"), "%s", tls_why(p.c));
    pair_close(&p);
    tls_ctx_destroy(c);
    /* No client certificate. */
    struct tls_config anon = {.trusted_ca_file = g_path[2]};
    c = client_ctx(&anon);
    pair_open(&p, s, c, "127.0.0.1");
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(ss, TLS_FAILED);
    ck_assert_str_eq(tls_why(p.s), "tls: client didn't provide a certificate");
    pair_close(&p);
    tls_ctx_destroy(c);
    /* A certificate from another CA. */
    struct tls_config other = {.cert_file = path(5, "other.crt"),
                               .key_file = path(6, "other.key"),
                               .trusted_ca_file = g_path[2]};
    c = client_ctx(&other);
    pair_open(&p, s, c, "127.0.0.1");
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(ss, TLS_FAILED);
    ck_assert_msg(strstr(tls_why(p.s), "certificate verify failed"), "%s", tls_why(p.s));
    pair_close(&p);
    tls_ctx_destroy(c);
    /* An expired certificate. */
    struct tls_config expired = {.cert_file = path(7, "expired.crt"),
                                 .key_file = path(8, "expired.key"),
                                 .trusted_ca_file = g_path[2]};
    c = client_ctx(&expired);
    pair_open(&p, s, c, "127.0.0.1");
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(ss, TLS_FAILED);
    ck_assert_msg(strstr(tls_why(p.s), "expired"), "%s", tls_why(p.s));
    pair_close(&p);
    tls_ctx_destroy(c);
    /* The client checks the server against another CA. */
    struct tls_config wrong_ca = {
        .cert_file = g_path[3], .key_file = g_path[4], .trusted_ca_file = path(9, "other-ca.crt")};
    c = client_ctx(&wrong_ca);
    pair_open(&p, s, c, "127.0.0.1");
    handshake(&p, &ss, &cs);
    ck_assert_int_eq(cs, TLS_FAILED);
    pair_close(&p);
    tls_ctx_destroy(c);
    tls_ctx_destroy(s);
}
END_TEST

START_TEST(allowed_cn)
{
    struct tls_config sc = {.cert_file = path(0, "server.crt"),
                            .key_file = path(1, "server.key"),
                            .trusted_ca_file = path(2, "ca.crt"),
                            .client_cert_auth = true,
                            .allowed_cn = "root"};
    struct tls_ctx *s = server_ctx(&sc);
    struct pair p;
    enum tls_step ss, cs;
    const char *names[][2] = {{"alice.crt", "alice.key"}, {"root.crt", "root.key"}};
    for (int i = 0; i < 2; i++) {
        struct tls_config cc = {.cert_file = path(3, names[i][0]),
                                .key_file = path(4, names[i][1]),
                                .trusted_ca_file = g_path[2]};
        struct tls_ctx *c = client_ctx(&cc);
        pair_open(&p, s, c, "127.0.0.1");
        handshake(&p, &ss, &cs);
        if (i == 0) {
            ck_assert_int_eq(ss, TLS_FAILED);
            ck_assert_str_eq(tls_why(p.s), "client certificate authentication failed");
        } else {
            ck_assert_int_eq(ss, TLS_DONE);
        }
        pair_close(&p);
        tls_ctx_destroy(c);
    }
    tls_ctx_destroy(s);
}
END_TEST

START_TEST(plain_http)
{
    const char *hosts[] = {"127.0.0.1"};
    struct tls_config sc = {.auto_tls = true, .hosts = hosts, .n_hosts = 1};
    struct tls_ctx *s = server_ctx(&sc);
    struct pair p;
    pair_open(&p, s, NULL, NULL);
    const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    ck_assert_int_eq(write(p.fd[1], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    ck_assert_int_eq(tls_handshake(p.s), TLS_FAILED);
    ck_assert(tls_got_http(p.s));
    pair_close(&p);
    /* Garbage that is not HTTP either. */
    pair_open(&p, s, NULL, NULL);
    ck_assert_int_eq(write(p.fd[1], "\x01\x02\x03\x04\x05\x06", 6), 6);
    ck_assert_int_eq(tls_handshake(p.s), TLS_FAILED);
    ck_assert(!tls_got_http(p.s));
    pair_close(&p);
    /* Nothing yet: the handshake waits. */
    pair_open(&p, s, NULL, NULL);
    ck_assert_int_eq(tls_handshake(p.s), TLS_WANT_READ);
    pair_close(&p);
    tls_ctx_destroy(s);
}
END_TEST

START_TEST(config_errors)
{
    char msg[512];
    struct tls_config none = {0};
    ck_assert_ptr_null(tls_ctx_server(&none, msg, sizeof(msg)));
    ck_assert_msg(strstr(msg, "KeyFile and CertFile must both be present"), "%s", msg);
    struct tls_config missing = {.cert_file = "/nonexistent.crt", .key_file = "/nonexistent.key"};
    ck_assert_ptr_null(tls_ctx_server(&missing, msg, sizeof(msg)));
    ck_assert_msg(strstr(msg, "cannot read the certificate /nonexistent.crt"), "%s", msg);
    struct tls_config mismatch = {.cert_file = path(0, "server.crt"),
                                  .key_file = path(1, "alice.key")};
    ck_assert_ptr_null(tls_ctx_server(&mismatch, msg, sizeof(msg)));
    ck_assert_msg(strstr(msg, "the key does not match the certificate"), "%s", msg);
    struct tls_config bad_ca = {.cert_file = g_path[0],
                                .key_file = path(1, "server.key"),
                                .trusted_ca_file = "/nonexistent-ca.crt"};
    ck_assert_ptr_null(tls_ctx_server(&bad_ca, msg, sizeof(msg)));
    ck_assert_msg(strstr(msg, "cannot read the trusted CA file"), "%s", msg);
    struct tls_config suites = {.cert_file = g_path[0],
                                .key_file = g_path[1],
                                .cipher_suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"
                                                 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,"
                                                 "TLS_AES_128_GCM_SHA256"};
    struct tls_ctx *t = tls_ctx_server(&suites, msg, sizeof(msg));
    ck_assert_msg(t != NULL, "%s", msg);
    tls_ctx_destroy(t);
    suites.cipher_suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_BOGUS";
    ck_assert_ptr_null(tls_ctx_server(&suites, msg, sizeof(msg)));
    ck_assert_str_eq(msg, "unexpected TLS cipher suite \"TLS_BOGUS\"");
    tls_ctx_destroy(NULL);
    tls_conn_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("self_signed");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, self_signed);
    suite_add_tcase(s, tc);
    const struct {
        const char *name;
        const TTest *fn;
    } cases[] = {{"client_certs", client_certs},
                 {"allowed_cn", allowed_cn},
                 {"plain_http", plain_http},
                 {"config_errors", config_errors}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 60);
        tcase_add_checked_fixture(tc, certs_setup, certs_teardown);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}
