/* tls.c - TLS contexts (certificates, CAs, client-certificate rules, cipher suites, ALPN) and
 * connections on non-blocking sockets, on OpenSSL's libssl.
 *
 * A connection is an SSL object reading and writing its descriptor directly (a socket BIO);
 * nothing here waits or loops on the socket: each call does what the socket allows and says
 * which readiness it waits for. Buffers are released while a connection is idle
 * (SSL_MODE_RELEASE_BUFFERS), so an idle TLS connection costs a few KiB, not two 16 KiB records.
 * Renegotiation is refused (TLS 1.2), so a read never has to write on its own initiative except
 * for TLS 1.3's key updates, which tls_wants_write reports.
 */
#include "metastore/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTO_TLS_DAYS 365 /* etcd's selfSignedCertValidity default: one year */

struct tls_ctx {
    SSL_CTX *ssl;
    bool server;
    bool verify; /* a client that checks the server's certificate and name */
    char *allowed_cn;
};

struct tls_conn {
    SSL *ssl;
    bool wants_write;
    bool got_http;
    char why[160];
};

/* ---- contexts ---- */

static void ssl_err_msg(const char *what, char *msg, size_t msgsz)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(msg, msgsz, "%s%s%s", what, r ? ": " : "", r ? r : "");
    ERR_clear_error();
}

/* etcd's allowed CN (baseConfig's VerifyPeerCertificate): the verified leaf's CN must match. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok || X509_STORE_CTX_get_error_depth(x) != 0)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct tls_ctx *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t || !t->allowed_cn)
        return ok;
    char cn[256];
    X509_NAME *name = X509_get_subject_name(X509_STORE_CTX_get_current_cert(x));
    int n = name ? X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof(cn)) : -1;
    if (n < 0 || (size_t)n != strlen(t->allowed_cn) || strcmp(cn, t->allowed_cn) != 0) {
        X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    return ok;
}

/* ALPN (server): "http/1.1" if offered, else "h2", else none. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    const unsigned char *h2 = NULL;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int l = in[i];
        if (i + 1 + l > inlen)
            break;
        const unsigned char *p = in + i + 1;
        if (l == 8 && memcmp(p, "http/1.1", 8) == 0) {
            *out = p;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        if (l == 2 && memcmp(p, "h2", 2) == 0)
            h2 = p;
        i += 1 + l;
    }
    if (!h2)
        return SSL_TLSEXT_ERR_NOACK;
    *out = h2;
    *outlen = 2;
    return SSL_TLSEXT_ERR_OK;
}

/* Go's TLS 1.3 suites cannot be configured in Go (crypto/tls ignores them in CipherSuites):
 * accepted and ignored here too. */
static bool tls13_suite(const char *name)
{
    return strcmp(name, "TLS_AES_128_GCM_SHA256") == 0 ||
           strcmp(name, "TLS_AES_256_GCM_SHA384") == 0 ||
           strcmp(name, "TLS_CHACHA20_POLY1305_SHA256") == 0;
}

/* etcd's --cipher-suites (Go's IANA names, tlsutil.GetCipherSuite) → OpenSSL's cipher list for
 * TLS 1.2, in the order given. */
static bool set_ciphers(SSL_CTX *ctx, const char *list, char *msg, size_t msgsz)
{
    char *out = calloc(1, strlen(list) * 2 + 64);
    if (!out) {
        snprintf(msg, msgsz, "out of memory");
        return false;
    }
    STACK_OF(SSL_CIPHER) *all = NULL;
    SSL *probe = NULL;
    bool ok = false;
    /* Every cipher this libssl knows, to look up IANA names in. */
    SSL_CTX *any = SSL_CTX_new(TLS_method());
    if (!any || !SSL_CTX_set_cipher_list(any, "ALL:COMPLEMENTOFALL") || !(probe = SSL_new(any)) ||
        !(all = SSL_get_ciphers(probe))) {
        ssl_err_msg("cannot list cipher suites", msg, msgsz);
        goto out;
    }
    for (const char *s = list; *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char name[128];
        if (len >= sizeof(name))
            len = sizeof(name) - 1;
        memcpy(name, s, len);
        name[len] = 0;
        s += len + (comma ? 1 : 0);
        if (!*name)
            continue;
        /* tlsutil's two aliases without the hash. */
        const char *want = name;
        if (strcmp(name, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305") == 0)
            want = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";
        else if (strcmp(name, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305") == 0)
            want = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";
        if (tls13_suite(want))
            continue;
        const char *ossl = NULL;
        for (int i = 0; i < sk_SSL_CIPHER_num(all); i++) {
            const SSL_CIPHER *c = sk_SSL_CIPHER_value(all, i);
            const char *std = SSL_CIPHER_standard_name(c);
            if (std && strcmp(std, want) == 0) {
                ossl = SSL_CIPHER_get_name(c);
                break;
            }
        }
        if (!ossl) {
            snprintf(msg, msgsz, "unexpected TLS cipher suite \"%s\"", name);
            goto out;
        }
        if (*out)
            strcat(out, ":");
        strcat(out, ossl);
    }
    if (*out && !SSL_CTX_set_cipher_list(ctx, out)) {
        ssl_err_msg("cannot set the cipher suites", msg, msgsz);
        goto out;
    }
    ok = true;
out:
    SSL_free(probe);
    SSL_CTX_free(any);
    free(out);
    return ok;
}

/* etcd's SelfCert: a new ECDSA P-521 key and a certificate signed with it, organisation "etcd",
 * valid for a year, for the given hosts (IP addresses or DNS names). */
static bool self_cert(SSL_CTX *ctx, const struct tls_config *cfg, char *msg, size_t msgsz)
{
    bool ok = false;
    EVP_PKEY *key = EVP_EC_gen("P-521");
    X509 *x = X509_new();
    char *san = NULL;
    if (!key || !x)
        goto fail;
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
        BN_free(bn);
        goto fail;
    }
    BN_free(bn);
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"etcd", -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, name) || !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)AUTO_TLS_DAYS * 86400) ||
        !X509_set_pubkey(x, key))
        goto fail;
    size_t need = 1;
    for (size_t i = 0; i < cfg->n_hosts; i++)
        need += strlen(cfg->hosts[i]) + 5;
    san = calloc(1, need);
    if (!san)
        goto fail;
    for (size_t i = 0; i < cfg->n_hosts; i++) {
        unsigned char ip[16];
        const char *h = cfg->hosts[i];
        bool is_ip = inet_pton(AF_INET, h, ip) == 1 || inet_pton(AF_INET6, h, ip) == 1;
        if (*san)
            strcat(san, ",");
        strcat(san, is_ip ? "IP:" : "DNS:");
        strcat(san, h);
    }
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, "serverAuth,clientAuth"},
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_subject_alt_name, san},
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        if (!*exts[i].value)
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);
        if (!e)
            goto fail;
        int added = X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
        if (!added)
            goto fail;
    }
    if (!X509_sign(x, key, EVP_sha512()) || SSL_CTX_use_certificate(ctx, x) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1)
        goto fail;
    ok = true;
    goto out;
fail:
    ssl_err_msg("cannot make a self-signed certificate", msg, msgsz);
out:
    free(san);
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

static struct tls_ctx *ctx_create(const struct tls_config *cfg, bool server, char *msg,
                                  size_t msgsz)
{
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(msg, msgsz, "out of memory");
        return NULL;
    }
    t->server = server;
    t->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!t->ssl) {
        ssl_err_msg("cannot create a TLS context", msg, msgsz);
        goto fail;
    }
    SSL_CTX_set_app_data(t->ssl, t);
    SSL_CTX_set_min_proto_version(t->ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                    SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    if (cfg->allowed_cn && *cfg->allowed_cn && !(t->allowed_cn = strdup(cfg->allowed_cn))) {
        snprintf(msg, msgsz, "out of memory");
        goto fail;
    }
    bool files = cfg->cert_file && *cfg->cert_file && cfg->key_file && *cfg->key_file;
    if (files) {
        if (SSL_CTX_use_certificate_chain_file(t->ssl, cfg->cert_file) != 1) {
            char what[600];
            snprintf(what, sizeof(what), "cannot read the certificate %s", cfg->cert_file);
            ssl_err_msg(what, msg, msgsz);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(t->ssl, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
                ssl_err_msg("the key does not match the certificate", msg, msgsz);
                goto fail;
            }
            char what[600];
            snprintf(what, sizeof(what), "cannot read the key %s", cfg->key_file);
            ssl_err_msg(what, msg, msgsz);
            goto fail;
        }
        if (SSL_CTX_check_private_key(t->ssl) != 1) {
            ssl_err_msg("the key does not match the certificate", msg, msgsz);
            goto fail;
        }
    } else if (cfg->auto_tls) {
        if (!self_cert(t->ssl, cfg, msg, msgsz))
            goto fail;
    } else if (server) {
        snprintf(msg, msgsz, "KeyFile and CertFile must both be present[key: %s, cert: %s]",
                 cfg->key_file ? cfg->key_file : "", cfg->cert_file ? cfg->cert_file : "");
        goto fail;
    }
    bool ca = cfg->trusted_ca_file && *cfg->trusted_ca_file;
    if (ca && SSL_CTX_load_verify_locations(t->ssl, cfg->trusted_ca_file, NULL) != 1) {
        char what[600];
        snprintf(what, sizeof(what), "cannot read the trusted CA file %s", cfg->trusted_ca_file);
        ssl_err_msg(what, msg, msgsz);
        goto fail;
    }
    if (server) {
        /* etcd 3.4 ServerConfig: a trusted CA file or --client-cert-auth requires and verifies
         * a client certificate. */
        if (ca || cfg->client_cert_auth) {
            SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                               verify_cb);
            if (ca) {
                STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->trusted_ca_file);
                if (names)
                    SSL_CTX_set_client_CA_list(t->ssl, names);
            }
        }
        SSL_CTX_set_alpn_select_cb(t->ssl, alpn_cb, NULL);
        SSL_CTX_set_num_tickets(t->ssl, 1); /* as Go's server */
    } else {
        /* A self-signed client does not verify (etcd: selfCert → InsecureSkipVerify). */
        t->verify = !(cfg->auto_tls && !files);
        if (t->verify && !ca && SSL_CTX_set_default_verify_paths(t->ssl) != 1) {
            ssl_err_msg("cannot load the system's CAs", msg, msgsz);
            goto fail;
        }
        SSL_CTX_set_verify(t->ssl, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                           t->verify ? verify_cb : NULL);
    }
    if (cfg->cipher_suites && *cfg->cipher_suites &&
        !set_ciphers(t->ssl, cfg->cipher_suites, msg, msgsz))
        goto fail;
    return t;
fail:
    tls_ctx_destroy(t);
    return NULL;
}

struct tls_ctx *tls_ctx_server(const struct tls_config *cfg, char *msg, size_t msgsz)
{
    return ctx_create(cfg, true, msg, msgsz);
}

struct tls_ctx *tls_ctx_client(const struct tls_config *cfg, char *msg, size_t msgsz)
{
    return ctx_create(cfg, false, msg, msgsz);
}

void tls_ctx_destroy(struct tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ssl);
    free(t->allowed_cn);
    free(t);
}

/* ---- connections ---- */

static struct tls_conn *conn_create(struct tls_ctx *t, int fd)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ssl = SSL_new(t->ssl);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        tls_conn_free(c);
        return NULL;
    }
    return c;
}

struct tls_conn *tls_accept(struct tls_ctx *t, int fd)
{
    struct tls_conn *c = conn_create(t, fd);
    if (c)
        SSL_set_accept_state(c->ssl);
    return c;
}

struct tls_conn *tls_connect(struct tls_ctx *t, int fd, const char *host)
{
    struct tls_conn *c = conn_create(t, fd);
    if (!c)
        return NULL;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, host);
    if (t->verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1
                  : X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1) {
            tls_conn_free(c);
            return NULL;
        }
    }
    SSL_set_connect_state(c->ssl);
    return c;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);
    free(c);
}

/* Go's words for the failures an operator meets most, else OpenSSL's reason. */
static void set_why(struct tls_conn *c)
{
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    const char *w = NULL;
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
        switch (reason) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            w = SSL_is_server(c->ssl) ? "tls: client didn't provide a certificate" : NULL;
            break;
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
            c->got_http = true;
            w = "client sent an HTTP request to an HTTPS server";
            break;
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_UNKNOWN_PROTOCOL:
            w = "tls: first record does not look like a TLS handshake";
            break;
        case SSL_R_CERTIFICATE_VERIFY_FAILED: {
            long v = SSL_get_verify_result(c->ssl);
            if (v == X509_V_ERR_APPLICATION_VERIFICATION) {
                w = "client certificate authentication failed";
            } else {
                snprintf(c->why, sizeof(c->why), "tls: certificate verify failed: %s",
                         X509_verify_cert_error_string(v));
                ERR_clear_error();
                return;
            }
            break;
        }
        default:
            break;
        }
    }
    if (!w && e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(c->why, sizeof(c->why), "tls: %s", r ? r : "handshake failure");
    } else if (!w) {
        snprintf(c->why, sizeof(c->why), "%s", errno ? strerror(errno) : "connection closed");
    } else {
        snprintf(c->why, sizeof(c->why), "%s", w);
    }
    ERR_clear_error();
}

enum tls_step tls_handshake(struct tls_conn *c)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1)
        return TLS_DONE;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_WANT_WRITE;
    default:
        set_why(c);
        return TLS_FAILED;
    }
}

const char *tls_why(const struct tls_conn *c)
{
    return c->why[0] ? c->why : "tls: handshake failure";
}

bool tls_got_http(const struct tls_conn *c)
{
    return c->got_http;
}

/* Map an SSL_read/SSL_write outcome to read(2)'s and write(2)'s. */
static ssize_t io_result(struct tls_conn *c, int r, size_t done)
{
    if (r == 1) {
        c->wants_write = false;
        return (ssize_t)done;
    }
    int saved = errno;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        c->wants_write = false;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->wants_write = true;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        set_why(c);
        errno = saved ? saved : ECONNRESET;
        return -1;
    default:
        set_why(c);
        errno = EPROTO;
        return -1;
    }
}

ssize_t tls_read(struct tls_conn *c, void *p, size_t n)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_read_ex(c->ssl, p, n, &got);
    return io_result(c, r, got);
}

ssize_t tls_write(struct tls_conn *c, const void *p, size_t n)
{
    size_t put = 0;
    if (!n)
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_write_ex(c->ssl, p, n, &put);
    return io_result(c, r, put);
}

bool tls_wants_write(const struct tls_conn *c)
{
    return c->wants_write;
}

bool tls_pending(const struct tls_conn *c)
{
    return SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl);
}

void tls_close_notify(struct tls_conn *c)
{
    ERR_clear_error();
    if (SSL_is_init_finished(c->ssl))
        SSL_shutdown(c->ssl);
    ERR_clear_error();
}

bool tls_alpn_h2(const struct tls_conn *c)
{
    const unsigned char *p;
    unsigned int len;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

size_t tls_peer_cn(const struct tls_conn *c, char *out, size_t cap)
{
    if (!cap)
        return 0;
    out[0] = 0;
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    if (!x || SSL_get_verify_result(c->ssl) != X509_V_OK)
        return 0;
    /* Only a certificate the context verified counts (etcd reads VerifiedChains). */
    if (!(SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER))
        return 0;
    X509_NAME *name = X509_get_subject_name(x);
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (idx < 0)
        return 0;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n <= 0 || (size_t)n >= cap || memchr(utf8, 0, (size_t)n)) {
        OPENSSL_free(utf8);
        return 0;
    }
    memcpy(out, utf8, (size_t)n);
    out[n] = 0;
    OPENSSL_free(utf8);
    return (size_t)n;
}
