/* fuzz_jwt.c - the JWT parser and verifier take any bytes: no crash, no read past the input;
 * nothing unsigned verifies; a token signed here verifies. */
#include "fuzz.h"
#include "metastore/arena.h"
#include "metastore/auth.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct auth_jwt *jwt;

static void setup(void)
{
    char dir[] = "/tmp/fuzz-jwt-XXXXXX", pub[64], priv[64], opts[256], msg[256];
    if (!mkdtemp(dir))
        abort();
    snprintf(pub, sizeof(pub), "%s/pub.pem", dir);
    snprintf(priv, sizeof(priv), "%s/priv.pem", dir);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FILE *f = fopen(priv, "w");
    FILE *g = fopen(pub, "w");
    if (!k || !f || !g || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_PUBKEY(g, k) != 1)
        abort();
    fclose(f);
    fclose(g);
    EVP_PKEY_free(k);
    snprintf(opts, sizeof(opts), "pub-key=%s,priv-key=%s,sign-method=ES256", pub, priv);
    jwt = auth_jwt_open(opts, msg, sizeof(msg));
    unlink(pub);
    unlink(priv);
    rmdir(dir);
    if (!jwt)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!jwt)
        setup();
    struct arena *a = arena_create(1024);
    struct auth_jwt_parts pt;
    struct auth_bytes user;
    uint64_t rev;
    /* A copy the size of the input: reads past it are caught by the sanitizers. */
    uint8_t *in = malloc(size ? size : 1);
    memcpy(in, data, size);
    if (auth_jwt_parse(in, size, a, &pt) == MS_OK && pt.signed_len > size)
        abort();
    if (auth_jwt_verify(jwt, in, size, 1000, a, &user, &rev) == MS_OK)
        abort(); /* no input forges an ES256 signature */
    /* The claims of the input as a user name: a signed token round-trips. */
    char *tok;
    size_t n;
    if (auth_jwt_sign(jwt, (struct auth_bytes){in, size > 64 ? 64 : size}, size, 1000, &tok, &n) !=
        MS_OK)
        abort();
    if (auth_jwt_verify(jwt, (uint8_t *)tok, n, 1000, a, &user, &rev) != MS_OK || rev != size)
        abort();
    free(tok);
    free(in);
    arena_destroy(a);
    return 0;
}
