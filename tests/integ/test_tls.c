/* test_tls.c - integration: TLS on the client port of the real server, with certificates the
 * test makes with the openssl command, and curl and etcdctl as the clients (etcd's own tools
 * and flags). Every server also listens on a plain port: the harness waits for /health there,
 * and every refusal is followed by a check that the server still serves.
 *
 * Cases (one meson test each):
 * client     - curl with the CA and a client certificate: put, range, a 1 MiB value, two
 *              requests on one connection; refused: a wrong CA, an expired client certificate,
 *              one from another CA, none under --client-cert-auth, plain HTTP to the TLS port
 *              (Go's 400 answer), TLS to the plain port; etcdctl (gRPC over TLS) put, get and
 *              watch.
 * cn_user    - auth enabled, --client-cert-auth: over gRPC a call without a token is the user
 *              its certificate names (alice reads her range, cannot write nor watch outside
 *              it; root may do all); a token wins over the certificate;
 *              the JSON gateway ignores the CN as etcd 3.4's does.
 * auto_tls   - --auto-tls: a self-signed certificate for the listen hosts; curl -k works, curl
 *              verifying with the test CA does not.
 * flags      - an https URL without a certificate, half a key pair, an unknown cipher suite:
 *              etcd's errors and exit status 2 or 1; --cipher-suites limits TLS 1.2.
 * deadline   - a client that opens the TLS port and sends nothing is closed after the handshake
 *              deadline (10 s).
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tls_env {
    char *dir; /* certificates */
    char path[8][4200];
    struct tu_server s;
    int tport; /* the https port */
    char url[64];
};

static const char *cert(struct tls_env *e, int slot, const char *name)
{
    snprintf(e->path[slot], sizeof(e->path[slot]), "%s/%s", e->dir, name);
    return e->path[slot];
}

/* The certificates, in a fresh directory. */
static void tls_certs(struct tls_env *e)
{
    e->dir = tu_mkdtemp("mstls");
    tu_make_certs(e->dir);
}

/* A server with a plain and an https listener and the extra flags (after tls_certs). */
static void tls_launch(struct tls_env *e, const char *const *flags)
{
    tu_server_init(&e->s);
    do
        e->tport = tu_free_port();
    while (e->tport == e->s.port);
    static char urls[128];
    snprintf(urls, sizeof(urls), "http://127.0.0.1:%d,https://127.0.0.1:%d", e->s.port, e->tport);
    snprintf(e->url, sizeof(e->url), "https://127.0.0.1:%d", e->tport);
    const char *argv[32] = {"--listen-client-urls", urls};
    int n = 2;
    for (int i = 0; flags && flags[i] && n < 31; i++)
        argv[n++] = flags[i];
    argv[n] = NULL;
    tu_server_launch(&e->s, argv);
    tu_server_wait_healthy(&e->s);
}

static void tls_start(struct tls_env *e, const char *const *flags)
{
    tls_certs(e);
    tls_launch(e, flags);
}

static void tls_stop(struct tls_env *e)
{
    tu_server_stop(&e->s);
    tu_rmtree(e->dir);
    free(e->dir);
}

/* The server still serves on its plain port. */
static void still_up(struct tls_env *e)
{
    struct tu_resp r;
    tu_http(e->s.port, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    tu_resp_free(&r);
}

/* curl with args after "curl -sS --max-time 10"; its exit status, output in *out. */
static int curl(const char *const *args, char **out)
{
    const char *argv[40] = {"curl", "-sS", "--max-time", "10"};
    int n = 4;
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return tu_exec(argv, 20000, out);
}

static int etcdctl(struct tls_env *e, const char *const *args, char **out)
{
    setenv("ETCDCTL_API", "3", 1);
    const char *argv[40] = {"etcdctl", "--endpoints",       e->url, "--dial-timeout",
                            "5s",      "--command-timeout", "10s"};
    int n = 7;
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return tu_exec(argv, 30000, out);
}

static void url_of(struct tls_env *e, const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", e->url, path);
}

/* Start with --client-cert-auth and the given certificate paths known after the certs exist. */
static void start_cert_auth(struct tls_env *e, bool client_cert_auth)
{
    tls_certs(e);
    const char *flags[] = {"--cert-file",
                           cert(e, 0, "server.crt"),
                           "--key-file",
                           cert(e, 1, "server.key"),
                           "--trusted-ca-file",
                           cert(e, 2, "ca.crt"),
                           client_cert_auth ? "--client-cert-auth" : NULL,
                           NULL};
    tls_launch(e, flags);
}

START_TEST(client)
{
    struct tls_env e;
    start_cert_auth(&e, true);
    char put_url[128], range_url[128], health_url[128];
    url_of(&e, "/v3/kv/put", put_url, sizeof(put_url));
    url_of(&e, "/v3/kv/range", range_url, sizeof(range_url));
    url_of(&e, "/health", health_url, sizeof(health_url));
    char *out;
    /* With the CA and alice's certificate: put, then range. */
    const char *ok_put[] = {"--cacert",
                            cert(&e, 0, "ca.crt"),
                            "--cert",
                            cert(&e, 1, "alice.crt"),
                            "--key",
                            cert(&e, 2, "alice.key"),
                            put_url,
                            "-d",
                            "{\"key\":\"YQ==\",\"value\":\"Yg==\"}",
                            NULL};
    ck_assert_int_eq(curl(ok_put, &out), 0);
    ck_assert_msg(strstr(out, "\"revision\":\"2\""), "%s", out);
    free(out);
    /* Two requests on one kept-alive connection (curl reuses it for the second URL). */
    const char *ok_range[] = {"--cacert", e.path[0], "--cert", e.path[1],
                              "--key",    e.path[2], "-d",     "{\"key\":\"YQ==\"}",
                              range_url,  range_url, NULL};
    ck_assert_int_eq(curl(ok_range, &out), 0);
    char *first = strstr(out, "\"value\":\"Yg==\"");
    ck_assert_msg(first && strstr(first + 1, "\"value\":\"Yg==\""), "%s", out);
    free(out);
    /* A value of 1 MiB both ways: records, partial writes and reads of buffered records. */
    {
        size_t vlen = 1 << 20;
        char *raw = malloc(vlen + 1);
        for (size_t i = 0; i < vlen; i++)
            raw[i] = (char)('a' + i % 26);
        raw[vlen] = 0;
        char *b64 = malloc(vlen * 4 / 3 + 8);
        tu_b64(raw, b64);
        char *body = malloc(strlen(b64) + 64);
        sprintf(body, "{\"key\":\"Yg==\",\"value\":\"%s\"}", b64);
        char bodyf[4300];
        snprintf(bodyf, sizeof(bodyf), "%s/big.json", e.dir);
        FILE *f = fopen(bodyf, "w");
        ck_assert_ptr_nonnull(f);
        fputs(body, f);
        fclose(f);
        char at[4310];
        snprintf(at, sizeof(at), "@%s", bodyf);
        const char *big_put[] = {"--cacert", e.path[0], "--cert", e.path[1], "--key",
                                 e.path[2],  put_url,   "-d",     at,        NULL};
        ck_assert_int_eq(curl(big_put, &out), 0);
        free(out);
        const char *big_get[] = {"--cacert", e.path[0], "--cert",
                                 e.path[1],  "--key",   e.path[2],
                                 range_url,  "-d",      "{\"key\":\"Yg==\"}",
                                 NULL};
        ck_assert_int_eq(curl(big_get, &out), 0);
        ck_assert_msg(strstr(out, b64) != NULL, "the 1 MiB value came back different");
        free(out);
        free(body);
        free(b64);
        free(raw);
    }
    /* Refused, each with the server still serving afterwards (exit status 0 of want: any
     * failure): the server's certificate checked against another CA; an expired client
     * certificate; one from another CA; none under --client-cert-auth. */
    const struct {
        const char *ca, *crt, *key;
        int want;
    } refused[] = {
        {"other-ca.crt", "alice.crt", "alice.key", 60},
        {"ca.crt", "expired.crt", "expired.key", 0},
        {"ca.crt", "other.crt", "other.key", 0},
        {"ca.crt", NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *args[] = {
            "--cacert", cert(&e, 3, refused[i].ca), health_url, NULL, NULL, NULL, NULL, NULL};
        if (refused[i].crt) {
            args[2] = "--cert";
            args[3] = cert(&e, 4, refused[i].crt);
            args[4] = "--key";
            args[5] = cert(&e, 5, refused[i].key);
            args[6] = health_url;
        }
        int rc = curl(args, &out);
        ck_assert_msg(refused[i].want ? rc == refused[i].want : rc != 0, "%s: curl %d: %s",
                      refused[i].crt ? refused[i].crt : refused[i].ca, rc, out);
        ck_assert_msg(!strstr(out, "true"), "%s", out);
        free(out);
        still_up(&e);
    }
    /* Plain HTTP to the TLS port: Go's answer, then the close. */
    struct tu_resp r;
    tu_http(e.tport, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 400);
    ck_assert_msg(strstr(r.body, "Client sent an HTTP request to an HTTPS server."), "%s", r.body);
    tu_resp_free(&r);
    still_up(&e);
    /* TLS to the plain port: curl sees no TLS server there (OpenSSL: wrong version number). */
    char plain_https[128];
    snprintf(plain_https, sizeof(plain_https), "https://127.0.0.1:%d/health", e.s.port);
    const char *tls_plain[] = {"--cacert", e.path[0], plain_https, NULL};
    ck_assert_int_eq(curl(tls_plain, &out), 35);
    free(out);
    still_up(&e);
    /* etcdctl: gRPC over TLS (ALPN h2) with the same certificates. */
    const char *put[] = {"--cacert", e.path[0], "--cert", e.path[1], "--key",
                         e.path[2],  "put",     "k1",     "v1",      NULL};
    ck_assert_int_eq(etcdctl(&e, put, &out), 0);
    ck_assert_msg(strstr(out, "OK"), "%s", out);
    free(out);
    const char *get[] = {"--cacert", e.path[0], "--cert", e.path[1], "--key",
                         e.path[2],  "get",     "k1",     NULL};
    ck_assert_int_eq(etcdctl(&e, get, &out), 0);
    ck_assert_msg(strstr(out, "k1\nv1"), "%s", out);
    free(out);
    /* A watch over TLS from revision 1 sees the put (etcdctl watches until it is stopped: the
     * bounded wait ends it). */
    {
        const char *w[] = {"etcdctl", "--endpoints", e.url,   "--cacert", e.path[0],
                           "--cert",  e.path[1],     "--key", e.path[2],  "watch",
                           "--rev",   "1",           "k1",    NULL};
        ck_assert_int_eq(tu_exec(w, 5000, &out), -1); /* still watching when stopped */
        ck_assert_msg(strstr(out, "PUT\nk1\nv1"), "%s", out);
        free(out);
    }
    /* etcdctl without a client certificate is refused as well. */
    const char *get_nocert[] = {"--cacert", e.path[0], "get", "k1", NULL};
    ck_assert_int_ne(etcdctl(&e, get_nocert, &out), 0);
    free(out);
    still_up(&e);
    tls_stop(&e);
}
END_TEST

static void post_ok(int port, const char *path, const char *body, const char *tok)
{
    char hdr[512] = "";
    if (tok)
        snprintf(hdr, sizeof(hdr), "Authorization: %s\r\n", tok);
    struct tu_resp r;
    tu_http_hdr(port, "POST", path, hdr, body, &r);
    ck_assert_msg(r.status == 200, "%s %s: %d %s", path, body, r.status, r.body);
    tu_resp_free(&r);
}

static void auth_setup(int port)
{
    post_ok(port, "/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"rootpw\"}", NULL);
    post_ok(port, "/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}", NULL);
    post_ok(port, "/v3/auth/user/add", "{\"name\":\"alice\",\"password\":\"alicepw\"}", NULL);
    post_ok(port, "/v3/auth/role/add", "{\"name\":\"reader\"}", NULL);
    /* READ on [k/, k0) */
    post_ok(port, "/v3/auth/role/grant",
            "{\"name\":\"reader\",\"perm\":{\"permType\":\"READ\",\"key\":\"ay8=\",\"range_end\":"
            "\"azA=\"}}",
            NULL);
    post_ok(port, "/v3/auth/user/grant", "{\"user\":\"alice\",\"role\":\"reader\"}", NULL);
    post_ok(port, "/v3/kv/put", "{\"key\":\"ay9h\",\"value\":\"MQ==\"}", NULL); /* k/a = 1 */
    post_ok(port, "/v3/auth/enable", "{}", NULL);
}

START_TEST(cn_user)
{
    struct tls_env e;
    start_cert_auth(&e, true);
    auth_setup(e.s.port);
    const char *ca = e.path[2];
    char *out;
    /* alice's certificate, no token: she reads her range ... */
    const char *get[] = {
        "--cacert", ca,    "--cert", cert(&e, 3, "alice.crt"), "--key", cert(&e, 4, "alice.key"),
        "get",      "k/a", NULL};
    ck_assert_int_eq(etcdctl(&e, get, &out), 0);
    ck_assert_msg(strstr(out, "k/a\n1"), "%s", out);
    free(out);
    /* ... and may not write. */
    const char *put[] = {"--cacert", ca,    "--cert", e.path[3], "--key",
                         e.path[4],  "put", "k/a",    "2",       NULL};
    ck_assert_int_ne(etcdctl(&e, put, &out), 0);
    ck_assert_msg(strstr(out, "permission denied"), "%s", out);
    free(out);
    /* A token wins over the certificate: root's password with alice's certificate writes. */
    const char *put_root[] = {"--cacert", ca,        "--cert", e.path[3],
                              "--key",    e.path[4], "--user", "root:rootpw",
                              "put",      "k/a",     "3",      NULL};
    ck_assert_int_eq(etcdctl(&e, put_root, &out), 0);
    free(out);
    /* A watch outside her range is refused for the CN's user (etcd's isWatchPermitted). */
    const char *watch[] = {"--cacert", ca,      "--cert", e.path[3], "--key",
                           e.path[4],  "watch", "x",      NULL};
    ck_assert_int_ne(etcdctl(&e, watch, &out), 0);
    ck_assert_msg(strstr(out, "permission denied"), "%s", out);
    free(out);
    /* root's certificate: root without a password. */
    const char *put_cert_root[] = {
        "--cacert", ca,  "--cert", cert(&e, 5, "root.crt"), "--key", cert(&e, 6, "root.key"), "put",
        "k/b",      "4", NULL};
    ck_assert_int_eq(etcdctl(&e, put_cert_root, &out), 0);
    free(out);
    /* The gateway does not take the CN (etcd 3.4 drops it for gateway requests). */
    char range_url[128];
    url_of(&e, "/v3/kv/range", range_url, sizeof(range_url));
    const char *gw[] = {
        "--cacert",           ca,  "--cert", e.path[3], "--key", e.path[4], range_url, "-d",
        "{\"key\":\"ay9h\"}", NULL};
    ck_assert_int_eq(curl(gw, &out), 0);
    ck_assert_msg(strstr(out, "user name is empty"), "%s", out);
    free(out);
    tls_stop(&e);
}
END_TEST

START_TEST(cn_ignored_without_client_cert_auth)
{
    /* A trusted CA file alone requires client certificates (etcd 3.4), but without
     * --client-cert-auth their CN names nobody. */
    struct tls_env e;
    start_cert_auth(&e, false);
    auth_setup(e.s.port);
    char *out;
    const char *get[] = {"--cacert", e.path[2],
                         "--cert",   cert(&e, 3, "alice.crt"),
                         "--key",    cert(&e, 4, "alice.key"),
                         "get",      "k/a",
                         NULL};
    ck_assert_int_ne(etcdctl(&e, get, &out), 0);
    ck_assert_msg(strstr(out, "user name is empty"), "%s", out);
    free(out);
    const char *nocert[] = {"--cacert", e.path[2], "get", "k/a", NULL};
    ck_assert_int_ne(etcdctl(&e, nocert, &out), 0);
    free(out);
    tls_stop(&e);
}
END_TEST

START_TEST(auto_tls)
{
    struct tls_env e;
    const char *flags[] = {"--auto-tls", NULL};
    tls_start(&e, flags);
    char health_url[128], *out;
    url_of(&e, "/health", health_url, sizeof(health_url));
    const char *insecure[] = {"-k", health_url, NULL};
    ck_assert_int_eq(curl(insecure, &out), 0);
    ck_assert_msg(strstr(out, "\"health\":\"true\""), "%s", out);
    free(out);
    const char *verify[] = {"--cacert", cert(&e, 0, "ca.crt"), health_url, NULL};
    ck_assert_int_eq(curl(verify, &out), 60);
    free(out);
    /* The certificate is for the listen host, and made by "etcd". */
    const char *show[] = {"sh", "-c",
                          "echo | openssl s_client -connect \"$0\" 2>/dev/null | "
                          "openssl x509 -noout -subject -ext subjectAltName",
                          e.url + 8, NULL};
    ck_assert_int_eq(tu_exec(show, 20000, &out), 0);
    ck_assert_msg(strstr(out, "O = etcd") && strstr(out, "IP Address:127.0.0.1"), "%s", out);
    free(out);
    tls_stop(&e);
}
END_TEST

START_TEST(bad_flags)
{
    char *out;
    const char *no_cert[] = {"--listen-client-urls", "https://127.0.0.1:1", NULL};
    ck_assert_int_eq(tu_run(no_cert, NULL, 20000, &out), 2);
    ck_assert_msg(strstr(out, "TLS key/cert (--cert-file, --key-file) must be provided for client "
                              "url https://127.0.0.1:1 with HTTPS scheme"),
                  "%s", out);
    free(out);
    const char *half[] = {"--cert-file", "/nonexistent.crt", NULL};
    ck_assert_int_eq(tu_run(half, NULL, 20000, &out), 2);
    ck_assert_msg(strstr(out, "KeyFile and CertFile must both be present"), "%s", out);
    free(out);
    const char *peer_no_cert[] = {"--listen-peer-urls", "https://127.0.0.1:1", NULL};
    ck_assert_int_eq(tu_run(peer_no_cert, NULL, 20000, &out), 2);
    ck_assert_msg(strstr(out, "must be provided for peer url"), "%s", out);
    free(out);

    /* An unknown cipher suite stops the start with etcd's words. */
    struct tu_server s;
    tu_server_init(&s);
    char *dir = tu_mkdtemp("mstls");
    tu_make_certs(dir);
    char crt[4200], key[4200], url[64], data[4300];
    snprintf(crt, sizeof(crt), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", s.port);
    snprintf(data, sizeof(data), "%s/data", s.dir);
    const char *bad_suite[] = {"--listen-client-urls",
                               url,
                               "--cert-file",
                               crt,
                               "--key-file",
                               key,
                               "--data-dir",
                               data,
                               "--cipher-suites",
                               "TLS_NO_SUCH_SUITE",
                               NULL};
    ck_assert_int_ne(tu_run(bad_suite, NULL, 20000, &out), 0);
    ck_assert_msg(strstr(out, "unexpected TLS cipher suite \\\"TLS_NO_SUCH_SUITE\\\""), "%s", out);
    free(out);
    tu_rmtree(s.dir);
    free(s.dir);
    tu_rmtree(dir);
    free(dir);

    /* --cipher-suites limits TLS 1.2 to the suites named. */
    struct tls_env e;
    tls_certs(&e);
    const char *suite[] = {"--cert-file",
                           cert(&e, 0, "server.crt"),
                           "--key-file",
                           cert(&e, 1, "server.key"),
                           "--cipher-suites",
                           "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                           NULL};
    tls_launch(&e, suite);
    char health_url[128];
    url_of(&e, "/health", health_url, sizeof(health_url));
    const char *named[] = {"--cacert",  cert(&e, 2, "ca.crt"),           "--tls-max", "1.2",
                           "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256", health_url,  NULL};
    ck_assert_int_eq(curl(named, &out), 0);
    free(out);
    const char *other[] = {"--cacert", e.path[2],   "--tls-max",
                           "1.2",      "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384",
                           health_url, NULL};
    ck_assert_int_ne(curl(other, &out), 0);
    free(out);
    still_up(&e);
    tls_stop(&e);
}
END_TEST

START_TEST(deadline)
{
    struct tls_env e;
    const char *flags[] = {"--auto-tls", NULL};
    tls_start(&e, flags);
    int fd = tu_connect(e.tport);
    ck_assert_int_ge(fd, 0);
    int64_t t0 = tu_now_ms();
    size_t len;
    char *got = tu_read_all(fd, 20000, &len); /* EOF when the server gives up */
    int64_t took = tu_now_ms() - t0;
    ck_assert_uint_eq(len, 0);
    ck_assert_msg(took >= 9000 && took < 15000, "closed after %lld ms", (long long)took);
    free(got);
    close(fd);
    still_up(&e);
    tls_stop(&e);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tls");
    const struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"client", client},
        {"cn_user", cn_user},
        {"cn_ignored_without_client_cert_auth", cn_ignored_without_client_cert_auth},
        {"auto_tls", auto_tls},
        {"flags", bad_flags},
        {"deadline", deadline},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}
