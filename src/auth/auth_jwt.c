/* auth_jwt.c - etcd's JWT tokens (auth/jwt.go): header.claims.signature, base64url without
 * padding; claims {"exp","revision","username"}; signed with RS256/384/512, PS256/384/512 or
 * ES256/384/512 through OpenSSL's libcrypto, or HS256/384/512 (HMAC keyed with the priv-key
 * file's bytes, as etcd's hmacKey; no pub-key).
 *
 * Options come as etcd's --auth-token value: "jwt,pub-key=PATH,priv-key=PATH,
 * sign-method=METHOD,ttl=DURATION" (ttl default 5m; without priv-key the member only verifies).
 * A token is accepted when it has three parts, its header names the configured algorithm, its
 * signature verifies with the public key, its claims hold a username (string) and a revision
 * (number), and exp (if present) is in the future. Anything else is an invalid token.
 */
#include "auth_int.h"

#include "metastore/arena.h"
#include "metastore/json.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN 8192

enum kind { K_RSA, K_PSS, K_EC, K_HMAC };

struct method {
    const char *name;
    enum kind kind;
    int bits; /* SHA-2 size */
    int ec_bytes;
};

static const struct method METHODS[] = {
    {"RS256", K_RSA, 256, 0},  {"RS384", K_RSA, 384, 0},  {"RS512", K_RSA, 512, 0},
    {"PS256", K_PSS, 256, 0},  {"PS384", K_PSS, 384, 0},  {"PS512", K_PSS, 512, 0},
    {"ES256", K_EC, 256, 32},  {"ES384", K_EC, 384, 48},  {"ES512", K_EC, 512, 66},
    {"HS256", K_HMAC, 256, 0}, {"HS384", K_HMAC, 384, 0}, {"HS512", K_HMAC, 512, 0},
};

struct auth_jwt {
    const struct method *m;
    EVP_PKEY *pub;
    EVP_PKEY *priv;  /* NULL: verify only */
    uint8_t *secret; /* HS*: the priv-key file's bytes sign and verify (etcd's hmacKey) */
    size_t secret_len;
    uint64_t ttl_s;
    char header[96]; /* base64url of {"alg":..,"typ":"JWT"} */
    size_t header_len;
};

static const EVP_MD *md_of(const struct method *m)
{
    return m->bits == 256 ? EVP_sha256() : m->bits == 384 ? EVP_sha384() : EVP_sha512();
}

/* ---- base64url without padding ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64url_encode(const uint8_t *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = B64URL[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = B64URL[v & 63];
    }
    return o;
}

static int b64url_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Strict: no padding, no other characters, no stray bits. out has room for n * 3 / 4 + 1. */
static bool b64url_decode(const uint8_t *s, size_t n, uint8_t *out, size_t *out_len)
{
    if (n % 4 == 1)
        return false;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(s[i]);
        if (v < 0)
            return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return false;
    *out_len = o;
    return true;
}

/* ---- options ---- */

/* A Go duration ("5m", "300s", "1h30m", "1.5h" not accepted) in seconds. */
static bool parse_duration(const char *s, uint64_t *out)
{
    uint64_t total_ms = 0;
    if (!*s)
        return false;
    while (*s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s)
            return false;
        uint64_t unit;
        if (strncmp(end, "ms", 2) == 0) {
            unit = 1, end += 2;
        } else if (*end == 's') {
            unit = 1000, end++;
        } else if (*end == 'm') {
            unit = 60000, end++;
        } else if (*end == 'h') {
            unit = 3600000, end++;
        } else {
            return false;
        }
        if (v > UINT64_MAX / unit / 2)
            return false;
        total_ms += v * unit;
        s = end;
    }
    *out = total_ms / 1000;
    return *out > 0;
}

static EVP_PKEY *load_key(const char *path, bool priv, char *msg, size_t msgsz)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(msg, msgsz, "--auth-token: cannot open %s", path);
        return NULL;
    }
    EVP_PKEY *k =
        priv ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!k)
        snprintf(msg, msgsz, "--auth-token: %s holds no PEM %s key", path,
                 priv ? "private" : "public");
    return k;
}

void auth_jwt_close(struct auth_jwt *j)
{
    if (!j)
        return;
    EVP_PKEY_free(j->pub);
    EVP_PKEY_free(j->priv);
    if (j->secret)
        OPENSSL_cleanse(j->secret, j->secret_len);
    free(j->secret);
    free(j);
}

/* An HMAC secret: the whole file, as etcd reads it (ioutil.ReadFile), 1 byte to 64 KiB. */
static bool load_secret(struct auth_jwt *j, const char *path, char *msg, size_t msgsz)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, msgsz, "--auth-token: cannot open %s", path);
        return false;
    }
    size_t cap = 64u << 10;
    j->secret = malloc(cap + 1);
    size_t n = j->secret ? fread(j->secret, 1, cap + 1, f) : 0;
    fclose(f);
    if (!j->secret || n == 0 || n > cap) {
        snprintf(msg, msgsz, "--auth-token: %s must hold 1 byte to 64 KiB of secret", path);
        return false;
    }
    j->secret_len = n;
    return true;
}

static bool key_fits(const struct auth_jwt *j, const EVP_PKEY *k)
{
    int id = EVP_PKEY_get_base_id(k);
    return j->m->kind == K_EC ? id == EVP_PKEY_EC : id == EVP_PKEY_RSA;
}

struct auth_jwt *auth_jwt_open(const char *opts, char *msg, size_t msgsz)
{
    struct auth_jwt *j = calloc(1, sizeof(*j));
    char *copy = strdup(opts);
    if (!j || !copy) {
        snprintf(msg, msgsz, "out of memory");
        goto fail;
    }
    j->ttl_s = 300;
    const char *pub = NULL, *priv = NULL, *method = NULL;
    char *save = NULL;
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            snprintf(msg, msgsz, "--auth-token: option %s has no value", kv);
            goto fail;
        }
        *eq = 0;
        const char *v = eq + 1;
        if (strcmp(kv, "pub-key") == 0) {
            pub = v;
        } else if (strcmp(kv, "priv-key") == 0) {
            priv = v;
        } else if (strcmp(kv, "sign-method") == 0) {
            method = v;
        } else if (strcmp(kv, "ttl") == 0) {
            if (!parse_duration(v, &j->ttl_s)) {
                snprintf(msg, msgsz, "--auth-token: invalid ttl %s", v);
                goto fail;
            }
        } else {
            snprintf(msg, msgsz, "--auth-token: unknown JWT option %s", kv);
            goto fail;
        }
    }
    for (size_t i = 0; method && i < sizeof(METHODS) / sizeof(METHODS[0]); i++)
        if (strcmp(method, METHODS[i].name) == 0)
            j->m = &METHODS[i];
    if (!j->m) {
        snprintf(msg, msgsz,
                 "--auth-token: sign-method must be one of RS256, RS384, RS512, "
                 "PS256, PS384, PS512, ES256, ES384, ES512, HS256, HS384, HS512");
        goto fail;
    }
    if (j->m->kind == K_HMAC) {
        /* etcd's hmacKey: the private key file is the shared secret; no public key. */
        if (!priv) {
            snprintf(msg, msgsz, "--auth-token: priv-key (the shared secret) is required for %s",
                     j->m->name);
            goto fail;
        }
        if (!load_secret(j, priv, msg, msgsz))
            goto fail;
    } else if (!pub) {
        snprintf(msg, msgsz, "--auth-token: pub-key is required");
        goto fail;
    }
    if (j->m->kind != K_HMAC && (!(j->pub = load_key(pub, false, msg, msgsz)) ||
                                 (priv && !(j->priv = load_key(priv, true, msg, msgsz)))))
        goto fail;
    if (j->m->kind != K_HMAC && (!key_fits(j, j->pub) || (j->priv && !key_fits(j, j->priv)))) {
        snprintf(msg, msgsz, "--auth-token: the keys do not suit %s", j->m->name);
        goto fail;
    }
    char hdr[64];
    int n = snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", j->m->name);
    j->header_len = b64url_encode((const uint8_t *)hdr, (size_t)n, j->header);
    free(copy);
    return j;
fail:
    free(copy);
    auth_jwt_close(j);
    return NULL;
}

bool auth_jwt_can_sign(const struct auth_jwt *j)
{
    return j->priv != NULL || j->secret != NULL;
}

/* HS*: the MAC of the signed part into out (room for EVP_MAX_MD_SIZE); its length, 0 on
 * failure. */
static size_t hmac_of(const struct auth_jwt *j, const uint8_t *p, size_t n, uint8_t *out)
{
    unsigned int len = 0;
    if (!HMAC(md_of(j->m), j->secret, (int)j->secret_len, p, n, out, &len))
        return 0;
    return len;
}

/* ---- signatures ---- */

static bool ctx_setup(EVP_MD_CTX *c, const struct auth_jwt *j, EVP_PKEY *k, bool sign)
{
    EVP_PKEY_CTX *pc = NULL;
    int ok = sign ? EVP_DigestSignInit(c, &pc, md_of(j->m), NULL, k)
                  : EVP_DigestVerifyInit(c, &pc, md_of(j->m), NULL, k);
    if (ok != 1)
        return false;
    if (j->m->kind == K_PSS && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
                                EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) != 1))
        return false;
    return true;
}

/* JWS ECDSA signatures are r || s, each ec_bytes long; OpenSSL speaks DER. */
static bool der_to_raw(const struct method *m, const uint8_t *der, size_t len, uint8_t *out)
{
    const uint8_t *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (!sig)
        return false;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    bool ok = BN_bn2binpad(r, out, m->ec_bytes) == m->ec_bytes &&
              BN_bn2binpad(s, out + m->ec_bytes, m->ec_bytes) == m->ec_bytes;
    ECDSA_SIG_free(sig);
    return ok;
}

static uint8_t *raw_to_der(const struct method *m, const uint8_t *raw, size_t len, size_t *der_len)
{
    if (len != (size_t)m->ec_bytes * 2)
        return NULL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, m->ec_bytes, NULL);
    BIGNUM *s = BN_bin2bn(raw + m->ec_bytes, m->ec_bytes, NULL);
    uint8_t *der = NULL;
    if (sig && r && s && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = s = NULL; /* owned by sig now */
        int n = i2d_ECDSA_SIG(sig, &der);
        *der_len = n > 0 ? (size_t)n : 0;
        if (n <= 0)
            der = NULL;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return der;
}

ms_err auth_jwt_sign(const struct auth_jwt *j, struct auth_bytes user, uint64_t revision,
                     uint64_t now_s, char **out, size_t *out_len)
{
    if (!auth_jwt_can_sign(j))
        return MS_E_INTERNAL; /* etcd ErrVerifyOnly */
    /* Claims in Go's map order (keys sorted), the username escaped as JSON. */
    struct buf claims;
    buf_init(&claims);
    struct mjson_w w;
    mjson_w_init(&w, &claims);
    mjson_w_obj(&w);
    MJSON_W_KEY(&w, "exp");
    mjson_w_num(&w, (int64_t)(now_s + j->ttl_s));
    MJSON_W_KEY(&w, "revision");
    mjson_w_num(&w, (int64_t)revision);
    MJSON_W_KEY(&w, "username");
    mjson_w_str(&w, (const char *)user.p, user.len);
    mjson_w_obj_end(&w);
    size_t cap = j->header_len + 1 + claims.len * 4 / 3 + 4 + 1 + 1024 + 1;
    char *tok = malloc(cap);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t sig[1024], raw[132];
    size_t sig_len = sizeof(sig);
    ms_err e = MS_E_INTERNAL;
    if (!tok || !c || buf_failed(&claims)) {
        e = MS_E_NOMEM;
        goto out;
    }
    size_t n = 0;
    memcpy(tok, j->header, j->header_len);
    n += j->header_len;
    tok[n++] = '.';
    n += b64url_encode(claims.p, claims.len, tok + n);
    if (j->m->kind == K_HMAC) {
        if (!(sig_len = hmac_of(j, (const uint8_t *)tok, n, sig)))
            goto out;
    } else if (!ctx_setup(c, j, j->priv, true) ||
               EVP_DigestSign(c, sig, &sig_len, (const uint8_t *)tok, n) != 1) {
        goto out;
    }
    const uint8_t *s = sig;
    if (j->m->kind == K_EC) {
        if (!der_to_raw(j->m, sig, sig_len, raw))
            goto out;
        s = raw;
        sig_len = (size_t)j->m->ec_bytes * 2;
    }
    if (n + 1 + sig_len * 4 / 3 + 4 >= cap)
        goto out;
    tok[n++] = '.';
    n += b64url_encode(s, sig_len, tok + n);
    tok[n] = 0;
    *out = tok;
    *out_len = n;
    tok = NULL;
    e = MS_OK;
out:
    free(tok);
    EVP_MD_CTX_free(c);
    buf_fini(&claims);
    return e;
}

/* The header must name our algorithm (etcd: "invalid signing method" otherwise). */
static bool header_ok(const struct auth_jwt *j, const uint8_t *p, size_t n, struct arena *a)
{
    uint8_t *raw = arena_alloc(a, n * 3 / 4 + 1);
    size_t len;
    struct mjson_dec d;
    struct mjson_val v;
    mjson_dec_init(&d, a);
    if (!raw || !b64url_decode(p, n, raw, &len) ||
        !mjson_parse_whole(&d, (const char *)raw, len, &v) || v.type != MJSON_OBJ)
        return false;
    const struct mjson_val *alg = mjson_get(&v, "alg");
    return alg && alg->type == MJSON_STR && alg->n == strlen(j->m->name) &&
           memcmp(alg->s, j->m->name, alg->n) == 0;
}

/* A JSON number that is a whole number >= 0 (Go reads it as float64). */
static bool whole_number(const struct mjson_val *v, uint64_t *out)
{
    if (!v || v->type != MJSON_NUM || v->n == 0 || v->n > 20)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->s[i] < '0' || v->s[i] > '9' || x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(v->s[i] - '0');
    }
    *out = x;
    return true;
}

ms_err auth_jwt_parse(const uint8_t *tok, size_t len, struct arena *a, struct auth_jwt_parts *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0 || len > MAX_TOKEN)
        return MS_E_INVALID_AUTH_TOKEN;
    const uint8_t *d1 = memchr(tok, '.', len);
    const uint8_t *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return MS_E_INVALID_AUTH_TOKEN;
    out->header = (struct auth_bytes){tok, (size_t)(d1 - tok)};
    out->signed_len = (size_t)(d2 - tok);
    size_t cl = (size_t)(d2 - d1 - 1), sl = len - out->signed_len - 1;
    uint8_t *claims = arena_alloc(a, cl * 3 / 4 + 1);
    uint8_t *sig = arena_alloc(a, sl * 3 / 4 + 1);
    size_t claims_len;
    struct mjson_dec d;
    struct mjson_val v;
    mjson_dec_init(&d, a);
    if (!claims || !sig || !b64url_decode(d1 + 1, cl, claims, &claims_len) ||
        !b64url_decode(d2 + 1, sl, sig, &out->sig.len) ||
        !mjson_parse_whole(&d, (const char *)claims, claims_len, &v) || v.type != MJSON_OBJ)
        return MS_E_INVALID_AUTH_TOKEN;
    out->sig.p = sig;
    const struct mjson_val *user = mjson_get(&v, "username");
    const struct mjson_val *exp = mjson_get(&v, "exp");
    if (!user || user->type != MJSON_STR ||
        !whole_number(mjson_get(&v, "revision"), &out->revision))
        return MS_E_INVALID_AUTH_TOKEN;
    out->user = (struct auth_bytes){(const uint8_t *)user->s, user->n};
    if (exp) {
        if (!whole_number(exp, &out->exp))
            return MS_E_INVALID_AUTH_TOKEN;
        out->has_exp = true;
    }
    return MS_OK;
}

ms_err auth_jwt_verify(const struct auth_jwt *j, const uint8_t *tok, size_t len, uint64_t now_s,
                       struct arena *a, struct auth_bytes *user, uint64_t *revision)
{
    struct auth_jwt_parts pt;
    if (auth_jwt_parse(tok, len, a, &pt) || !header_ok(j, pt.header.p, pt.header.len, a))
        return MS_E_INVALID_AUTH_TOKEN;
    if (pt.has_exp && pt.exp <= now_s)
        return MS_E_INVALID_AUTH_TOKEN;
    if (j->m->kind == K_HMAC) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        size_t mac_len = hmac_of(j, tok, pt.signed_len, mac);
        if (!mac_len || mac_len != pt.sig.len || CRYPTO_memcmp(mac, pt.sig.p, mac_len) != 0)
            return MS_E_INVALID_AUTH_TOKEN;
        *user = pt.user;
        *revision = pt.revision;
        return MS_OK;
    }
    const uint8_t *sig = pt.sig.p;
    size_t sig_len = pt.sig.len;
    uint8_t *der = NULL;
    if (j->m->kind == K_EC) {
        if (!(der = raw_to_der(j->m, pt.sig.p, pt.sig.len, &sig_len)))
            return MS_E_INVALID_AUTH_TOKEN;
        sig = der;
    }
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && ctx_setup(c, j, j->pub, false) &&
              EVP_DigestVerify(c, sig, sig_len, tok, pt.signed_len) == 1;
    EVP_MD_CTX_free(c);
    OPENSSL_free(der);
    if (!ok)
        return MS_E_INVALID_AUTH_TOKEN;
    *user = pt.user;
    *revision = pt.revision;
    return MS_OK;
}
