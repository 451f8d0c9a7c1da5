/* skiplist.c - ordered byte-key map (Pugh's skiplist, p = 1/4, at most 24 levels).
 *
 * Owns its nodes and their keys, never the values. Invariant: level-0 links visit every node in
 * ascending key order; a node of height h is linked on levels 0..h-1.
 */
#include "metastore/skiplist.h"

#include <stdlib.h>
#include <string.h>

#define SL_MAX_LEVEL 24

struct sl_node {
    void *val;
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
    struct sl_node *n = find_lt(l, key, len)->next[0];
    return (n && node_cmp(n, key, len) == 0) ? n : NULL;
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
    find_prev(l, key, len, prev);
    struct sl_node *n = prev[0]->next[0];
    if (n && node_cmp(n, key, len) == 0) {
        *out = n;
        *existed = true;
        return true;
    }
    int h = random_height(l);
    n = node_create(h, key, len);
    if (!n)
        return false;
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
    l->count++;
    l->mem += sizeof(*n) + (size_t)h * sizeof(n->next[0]) + len;
    *out = n;
    *existed = false;
    return true;
}

void *sl_remove(struct sl *l, const uint8_t *key, size_t len, bool *found)
{
    struct sl_node *prev[SL_MAX_LEVEL];
    find_prev(l, key, len, prev);
    struct sl_node *n = prev[0]->next[0];
    if (!n || node_cmp(n, key, len) != 0) {
        if (found)
            *found = false;
        return NULL;
    }
    for (int i = 0; i < n->height; i++)
        prev[i]->next[i] = n->next[i];
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
