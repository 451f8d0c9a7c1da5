/* skiplist.c - ordered byte-key map (Pugh's skiplist, p = 1/4, at most 24 levels), with a hash
 * table beside it for exact lookups.
 *
 * Owns its nodes and their keys, never the values. Invariant: level-0 links visit every node in
 * ascending key order; a node of height h is linked on levels 0..h-1; every node is in exactly
 * one hash bucket.
 *
 * The hash table makes sl_find and sl_insert of an existing key one or two cache misses instead
 * of a walk down every level (with 100,000 keys that walk took a tenth of a cluster's CPU under
 * puts). It holds at most one node per bucket on average: when it fills, a table twice as large
 * takes over, and the old one's buckets move over a few per insert or remove, so no single call
 * pays for the whole move. The hash is SipHash-1-3 under a key drawn at creation, so a client
 * that chooses keys cannot choose collisions. Only lookups depend on it, never an order.
 */
#include "metastore/skiplist.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define SL_MAX_LEVEL 24
#define HASH_MIN_CAP 16
#define REHASH_STEP  4 /* old buckets moved per insert or remove */

struct sl_node {
    void *val;
    struct sl_node *hnext; /* the next node in its hash bucket */
    uint32_t klen;
    uint8_t height;
    struct sl_node *next[]; /* height pointers, then the key bytes */
};

struct sl {
    struct sl_node *head; /* sentinel with SL_MAX_LEVEL links and no key */
    int level;            /* highest level in use (1..SL_MAX_LEVEL) */
    size_t count;
    size_t mem;
    uint64_t rng;
    uint64_t hkey[2];     /* SipHash key */
    struct sl_node **tab; /* buckets, a power of two of them (NULL until the first insert) */
    size_t cap;
    struct sl_node **old; /* while growing: the previous table, buckets below old_pos moved */
    size_t old_cap;
    size_t old_pos;
};

static uint8_t *node_keyp(const struct sl_node *n)
{
    return (uint8_t *)(n->next + n->height);
}

int sl_keycmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t m = alen < blen ? alen : blen;
    int c = m ? memcmp(a, b, m) : 0;
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int node_cmp(const struct sl_node *n, const uint8_t *key, size_t len)
{
    return sl_keycmp(node_keyp(n), n->klen, key, len);
}

/* ---- the point index ---- */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

/* SipHash-1-3 (one round per word, three to finish) of the key under l's hash key. */
static uint64_t key_hash(const struct sl *l, const uint8_t *p, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ l->hkey[0];
    uint64_t v1 = 0x646f72616e646f6dULL ^ l->hkey[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ l->hkey[0];
    uint64_t v3 = 0x7465646279746573ULL ^ l->hkey[1];
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static bool node_is(const struct sl_node *n, const uint8_t *key, size_t len)
{
    return n->klen == len && (!len || memcmp(node_keyp(n), key, len) == 0);
}

static struct sl_node *chain_find(struct sl_node *n, const uint8_t *key, size_t len)
{
    while (n && !node_is(n, key, len))
        n = n->hnext;
    return n;
}

static struct sl_node *hash_find(const struct sl *l, const uint8_t *key, size_t len, uint64_t h)
{
    if (!l->tab)
        return NULL;
    if (l->old) {
        size_t b = (size_t)h & (l->old_cap - 1);
        struct sl_node *n = b >= l->old_pos ? chain_find(l->old[b], key, len) : NULL;
        if (n)
            return n;
    }
    return chain_find(l->tab[(size_t)h & (l->cap - 1)], key, len);
}

static void hash_link(struct sl *l, struct sl_node *n, uint64_t h)
{
    struct sl_node **b = &l->tab[(size_t)h & (l->cap - 1)];
    n->hnext = *b;
    *b = n;
}

static bool chain_unlink(struct sl_node **b, const struct sl_node *n)
{
    for (; *b; b = &(*b)->hnext) {
        if (*b == n) {
            *b = n->hnext;
            return true;
        }
    }
    return false;
}

static void hash_unlink(struct sl *l, const struct sl_node *n, uint64_t h)
{
    if (l->old) {
        size_t b = (size_t)h & (l->old_cap - 1);
        if (b >= l->old_pos && chain_unlink(&l->old[b], n))
            return;
    }
    chain_unlink(&l->tab[(size_t)h & (l->cap - 1)], n);
}

/* Move up to k buckets of the old table into the current one. */
static void rehash_step(struct sl *l, size_t k)
{
    for (; l->old && k; k--) {
        struct sl_node *n = l->old[l->old_pos];
        while (n) {
            struct sl_node *next = n->hnext;
            hash_link(l, n, key_hash(l, node_keyp(n), n->klen));
            n = next;
        }
        if (++l->old_pos == l->old_cap) {
            free(l->old);
            l->mem -= l->old_cap * sizeof(*l->old);
            l->old = NULL;
        }
    }
}

/* Room for one more node at one per bucket: a table twice as large when full. */
static bool hash_reserve(struct sl *l)
{
    if (l->tab && l->count < l->cap)
        return true;
    rehash_step(l, SIZE_MAX); /* an earlier move is long finished at these rates; be sure */
    size_t cap = l->tab ? l->cap * 2 : HASH_MIN_CAP;
    struct sl_node **t = calloc(cap, sizeof(*t));
    if (!t)
        return false;
    l->old = l->tab;
    l->old_cap = l->cap;
    l->old_pos = 0;
    l->tab = t;
    l->cap = cap;
    l->mem += cap * sizeof(*t);
    return true;
}

static uint64_t sl_rand(struct sl *l)
{
    /* xorshift64*: deterministic per seed. */
    uint64_t x = l->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    l->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int random_height(struct sl *l)
{
    uint64_t r = sl_rand(l);
    int h = 1;
    while (h < SL_MAX_LEVEL && (r & 3) == 0) {
        h++;
        r >>= 2;
    }
    return h;
}

static struct sl_node *node_create(int height, const uint8_t *key, size_t len)
{
    struct sl_node *n = malloc(sizeof(*n) + (size_t)height * sizeof(n->next[0]) + len);
    if (!n)
        return NULL;
    n->val = NULL;
    n->hnext = NULL;
    n->klen = (uint32_t)len;
    n->height = (uint8_t)height;
    for (int i = 0; i < height; i++)
        n->next[i] = NULL;
    if (len)
        memcpy(node_keyp(n), key, len);
    return n;
}

struct sl *sl_create(uint64_t seed)
{
    struct sl *l = malloc(sizeof(*l));
    if (!l)
        return NULL;
    l->head = node_create(SL_MAX_LEVEL, NULL, 0);
    if (!l->head) {
        free(l);
        return NULL;
    }
    l->level = 1;
    l->count = 0;
    l->mem = 0;
    l->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
    if (getrandom(l->hkey, sizeof(l->hkey), GRND_NONBLOCK) != (ssize_t)sizeof(l->hkey)) {
        /* No entropy yet (early boot): a key that at least differs per list and process. */
        l->hkey[0] = sl_rand(l) ^ (uint64_t)(uintptr_t)l;
        l->hkey[1] = sl_rand(l) ^ (uint64_t)(uintptr_t)&l;
    }
    l->tab = NULL;
    l->cap = 0;
    l->old = NULL;
    l->old_cap = 0;
    l->old_pos = 0;
    return l;
}

void sl_destroy(struct sl *l, void (*free_val)(void *val))
{
    if (!l)
        return;
    struct sl_node *n = l->head->next[0];
    while (n) {
        struct sl_node *next = n->next[0];
        if (free_val && n->val)
            free_val(n->val);
        free(n);
        n = next;
    }
    free(l->tab);
    free(l->old);
    free(l->head);
    free(l);
}

size_t sl_count(const struct sl *l)
{
    return l->count;
}

size_t sl_mem(const struct sl *l)
{
    return l->mem;
}

/* Fill prev[i] with the last node on level i whose key is < key. */
static void find_prev(const struct sl *l, const uint8_t *key, size_t len, struct sl_node **prev)
{
    struct sl_node *x = l->head;
    for (int i = l->level - 1; i >= 0; i--) {
        while (x->next[i] && node_cmp(x->next[i], key, len) < 0)
            x = x->next[i];
        prev[i] = x;
    }
}

/* Last node on level 0 with key < key (head if none). */
static struct sl_node *find_lt(const struct sl *l, const uint8_t *key, size_t len)
{
    struct sl_node *x = l->head;
    for (int i = l->level - 1; i >= 0; i--)
        while (x->next[i] && node_cmp(x->next[i], key, len) < 0)
            x = x->next[i];
    return x;
}

struct sl_node *sl_find(const struct sl *l, const uint8_t *key, size_t len)
{
    return hash_find(l, key, len, key_hash(l, key, len));
}

struct sl_node *sl_seek_ge(const struct sl *l, const uint8_t *key, size_t len)
{
    if (!key || !len)
        return l->head->next[0];
    return find_lt(l, key, len)->next[0];
}

struct sl_node *sl_seek_lt(const struct sl *l, const uint8_t *key, size_t len)
{
    if (!key && !len)
        return sl_last(l);
    struct sl_node *n = find_lt(l, key, len);
    return n == l->head ? NULL : n;
}

struct sl_node *sl_first(const struct sl *l)
{
    return l->head->next[0];
}

struct sl_node *sl_last(const struct sl *l)
{
    struct sl_node *x = l->head;
    for (int i = l->level - 1; i >= 0; i--)
        while (x->next[i])
            x = x->next[i];
    return x == l->head ? NULL : x;
}

struct sl_node *sl_next(const struct sl_node *n)
{
    return n->next[0];
}

bool sl_insert(struct sl *l, const uint8_t *key, size_t len, void *val, struct sl_node **out,
               bool *existed)
{
    struct sl_node *prev[SL_MAX_LEVEL];
    if (len > UINT32_MAX)
        return false;
    uint64_t hash = key_hash(l, key, len);
    struct sl_node *n = hash_find(l, key, len, hash);
    if (n) {
        *out = n;
        *existed = true;
        return true;
    }
    if (!hash_reserve(l))
        return false;
    int h = random_height(l);
    n = node_create(h, key, len);
    if (!n)
        return false;
    find_prev(l, key, len, prev);
    n->val = val;
    if (h > l->level) {
        for (int i = l->level; i < h; i++)
            prev[i] = l->head;
        l->level = h;
    }
    for (int i = 0; i < h; i++) {
        n->next[i] = prev[i]->next[i];
        prev[i]->next[i] = n;
    }
    hash_link(l, n, hash);
    rehash_step(l, REHASH_STEP);
    l->count++;
    l->mem += sizeof(*n) + (size_t)h * sizeof(n->next[0]) + len;
    *out = n;
    *existed = false;
    return true;
}

void *sl_remove(struct sl *l, const uint8_t *key, size_t len, bool *found)
{
    struct sl_node *prev[SL_MAX_LEVEL];
    uint64_t hash = key_hash(l, key, len);
    struct sl_node *n = hash_find(l, key, len, hash);
    if (!n) {
        if (found)
            *found = false;
        return NULL;
    }
    find_prev(l, key, len, prev);
    for (int i = 0; i < n->height; i++)
        prev[i]->next[i] = n->next[i];
    hash_unlink(l, n, hash);
    rehash_step(l, REHASH_STEP);
    while (l->level > 1 && !l->head->next[l->level - 1])
        l->level--;
    void *val = n->val;
    l->count--;
    l->mem -= sizeof(*n) + (size_t)n->height * sizeof(n->next[0]) + n->klen;
    free(n);
    if (found)
        *found = true;
    return val;
}

const uint8_t *sl_node_key(const struct sl_node *n, size_t *len)
{
    *len = n->klen;
    return node_keyp(n);
}

void *sl_node_val(const struct sl_node *n)
{
    return n->val;
}

void sl_node_set_val(struct sl_node *n, void *val)
{
    n->val = val;
}
