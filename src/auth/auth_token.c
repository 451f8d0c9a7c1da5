/* auth_token.c - etcd's simple tokens (auth/simple_token.go): token -> user, each living
 * ttl_ms after its last use.
 *
 * A chained hash table finds a token; a list in order of last use (oldest first) finds the
 * expired ones: every add and lookup first drops the expired head of the list, so memory is
 * bounded by the tokens used within one TTL.
 */
#include "auth_int.h"

#include "metastore/arena.h"
#include "metastore/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct auth_token {
    struct auth_token *chain; /* next in the bucket */
    struct auth_token *older;
    struct auth_token *newer;
    uint64_t expires_ms;
    uint64_t hash;
    uint8_t *user;
    size_t user_len;
    size_t len;
    uint8_t tok[]; /* len bytes */
};

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void auth_tokens_init(struct auth_tokens *t, uint64_t ttl_ms)
{
    memset(t, 0, sizeof(*t));
    t->ttl_ms = ttl_ms;
}

static void unlink_lru(struct auth_tokens *t, struct auth_token *k)
{
    if (k->older)
        k->older->newer = k->newer;
    else
        t->oldest = k->newer;
    if (k->newer)
        k->newer->older = k->older;
    else
        t->newest = k->older;
    k->older = k->newer = NULL;
}

static void push_newest(struct auth_tokens *t, struct auth_token *k)
{
    k->older = t->newest;
    k->newer = NULL;
    if (t->newest)
        t->newest->newer = k;
    else
        t->oldest = k;
    t->newest = k;
}

static void drop(struct auth_tokens *t, struct auth_token *k)
{
    struct auth_token **pp = &t->buckets[k->hash & (t->cap - 1)];
    while (*pp != k)
        pp = &(*pp)->chain;
    *pp = k->chain;
    unlink_lru(t, k);
    t->n--;
    free(k->user);
    free(k);
}

static void expire(struct auth_tokens *t, uint64_t now_ms)
{
    while (t->oldest && t->oldest->expires_ms <= now_ms)
        drop(t, t->oldest);
}

void auth_tokens_clear(struct auth_tokens *t)
{
    while (t->oldest)
        drop(t, t->oldest);
}

void auth_tokens_fini(struct auth_tokens *t)
{
    auth_tokens_clear(t);
    free(t->buckets);
    t->buckets = NULL;
    t->cap = 0;
}

static bool grow(struct auth_tokens *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    struct auth_token **b = calloc(cap, sizeof(*b));
    if (!b)
        return false;
    for (size_t i = 0; i < t->cap; i++) {
        struct auth_token *k = t->buckets[i];
        while (k) {
            struct auth_token *next = k->chain;
            k->chain = b[k->hash & (cap - 1)];
            b[k->hash & (cap - 1)] = k;
            k = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->cap = cap;
    return true;
}

ms_err auth_tokens_add(struct auth_tokens *t, const uint8_t *tok, size_t len, const uint8_t *user,
                       size_t user_len, uint64_t now_ms)
{
    expire(t, now_ms);
    if (t->n + 1 > t->cap / 2 && !grow(t))
        return MS_E_NOMEM;
    struct auth_token *k = calloc(1, sizeof(*k) + len);
    uint8_t *u = malloc(user_len + 1);
    if (!k || !u) {
        free(k);
        free(u);
        return MS_E_NOMEM;
    }
    memcpy(k->tok, tok, len);
    k->len = len;
    memcpy(u, user, user_len);
    k->user = u;
    k->user_len = user_len;
    k->hash = fnv1a(tok, len);
    k->expires_ms = now_ms + t->ttl_ms;
    k->chain = t->buckets[k->hash & (t->cap - 1)];
    t->buckets[k->hash & (t->cap - 1)] = k;
    push_newest(t, k);
    t->n++;
    return MS_OK;
}

void auth_tokens_drop_user(struct auth_tokens *t, const uint8_t *user, size_t len)
{
    struct auth_token *k = t->oldest;
    while (k) {
        struct auth_token *next = k->newer;
        if (auth_bytes_cmp(k->user, k->user_len, user, len) == 0)
            drop(t, k);
        k = next;
    }
}

ms_err auth_token_user(struct auth_store *as, const uint8_t *tok, size_t len, uint64_t now_ms,
                       struct auth_caller *out)
{
    if (as->jwt) {
        if (!as->jwt_arena && !(as->jwt_arena = arena_create(4096)))
            return MS_E_NOMEM;
        arena_reset(as->jwt_arena);
        out->has_user = true;
        return auth_jwt_verify(as->jwt, tok, len, (uint64_t)time(NULL), as->jwt_arena, &out->user,
                               &out->revision);
    }
    struct auth_tokens *t = &as->tokens;
    expire(t, now_ms);
    if (!t->cap)
        return MS_E_INVALID_AUTH_TOKEN;
    uint64_t h = fnv1a(tok, len);
    for (struct auth_token *k = t->buckets[h & (t->cap - 1)]; k; k = k->chain) {
        if (k->hash == h && k->len == len && memcmp(k->tok, tok, len) == 0) {
            /* etcd resetSimpleToken: a used token lives another TTL. */
            k->expires_ms = now_ms + t->ttl_ms;
            unlink_lru(t, k);
            push_newest(t, k);
            *out = (struct auth_caller){true, {k->user, k->user_len}, as->revision};
            return MS_OK;
        }
    }
    return MS_E_INVALID_AUTH_TOKEN;
}

size_t auth_token_count(const struct auth_store *as)
{
    return as->tokens.n;
}

void auth_token_prefix(char out[17])
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uint8_t rnd[16];
    size_t got = 0;
    while (got < sizeof(rnd)) {
        ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            ms_fatal("getrandom: %s", strerror(errno));
    }
    for (size_t i = 0; i < 16; i++)
        out[i] = letters[rnd[i] % (sizeof(letters) - 1)];
    out[16] = 0;
}
