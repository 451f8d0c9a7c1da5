/* watch_index.c - how the hub finds the synced watchers of a key.
 *
 * Watchers that watch exactly the same key or range share one watch_set. Single-key sets sit in
 * a chained hash table; range sets ([key, end) or every key >= key) in an interval tree: a
 * treap ordered by (start, end) whose nodes also point at the node with the largest end of
 * their subtree, so a stabbing query visits only subtrees that can contain the key
 * (O(log n + matches)). Treap priorities come from a per-index xorshift generator, so the
 * shape is deterministic. Nothing here knows about streams or delivery.
 */
#include "watch_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- hashing ---- */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t watch_hash_bytes(const uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = mix64(h ^ v) + 0x9e3779b97f4a7c15ULL;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    return mix64(h ^ v ^ ((uint64_t)n << 59));
}

/* ---- chained hash table ---- */

static bool htab_grow(struct watch_htab *t)
{
    size_t nb = t->nb ? t->nb * 2 : 16;
    struct watch_hnode **b = calloc(nb, sizeof(*b));
    if (!b)
        return false;
    for (size_t i = 0; i < t->nb; i++) {
        struct watch_hnode *n = t->b[i];
        while (n) {
            struct watch_hnode *next = n->next;
            size_t j = (size_t)n->hash & (nb - 1);
            n->next = b[j];
            b[j] = n;
            n = next;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
    return true;
}

bool watch_htab_insert(struct watch_htab *t, struct watch_hnode *node)
{
    if (t->n + 1 > t->nb && !htab_grow(t) && t->nb == 0)
        return false;
    size_t j = (size_t)node->hash & (t->nb - 1);
    node->next = t->b[j];
    t->b[j] = node;
    t->n++;
    return true;
}

void watch_htab_remove(struct watch_htab *t, struct watch_hnode *node)
{
    struct watch_hnode **pp = &t->b[(size_t)node->hash & (t->nb - 1)];
    while (*pp && *pp != node)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = node->next;
        t->n--;
    }
    node->next = NULL;
}

struct watch_hnode *watch_htab_first(const struct watch_htab *t, uint64_t hash)
{
    if (!t->nb)
        return NULL;
    struct watch_hnode *n = t->b[(size_t)hash & (t->nb - 1)];
    while (n && n->hash != hash)
        n = n->next;
    return n;
}

struct watch_hnode *watch_htab_next(const struct watch_hnode *node)
{
    struct watch_hnode *n = node->next;
    while (n && n->hash != node->hash)
        n = n->next;
    return n;
}

void watch_htab_fini(struct watch_htab *t)
{
    free(t->b);
    memset(t, 0, sizeof(*t));
}

/* Compare the ends of two range sets: KV_END_ALL is +infinity. */
static int end_cmp(const struct watch_set *a, const struct watch_set *b)
{
    bool ai = a->kind == KV_END_ALL, bi = b->kind == KV_END_ALL;
    if (ai || bi)
        return ai && bi ? 0 : ai ? 1 : -1;
    return sl_keycmp(a->end, a->end_len, b->end, b->end_len);
}

/* Tree order: start, then end. */
static int set_cmp(const struct watch_set *a, const struct watch_set *b)
{
    int c = sl_keycmp(a->key, a->key_len, b->key, b->key_len);
    return c ? c : end_cmp(a, b);
}

/* Does the set's range reach beyond point p (end > p)? */
static bool end_after(const struct watch_set *s, const uint8_t *p, size_t n)
{
    return s->kind == KV_END_ALL || sl_keycmp(s->end, s->end_len, p, n) > 0;
}

/* ---- treap ---- */

static void update(struct watch_set *n)
{
    const struct watch_set *m = n;
    if (n->left && end_cmp(n->left->max, m) > 0)
        m = n->left->max;
    if (n->right && end_cmp(n->right->max, m) > 0)
        m = n->right->max;
    n->max = m;
}

static struct watch_set *rotate_right(struct watch_set *n)
{
    struct watch_set *l = n->left;
    n->left = l->right;
    l->right = n;
    update(n);
    update(l);
    return l;
}

static struct watch_set *rotate_left(struct watch_set *n)
{
    struct watch_set *r = n->right;
    n->right = r->left;
    r->left = n;
    update(n);
    update(r);
    return r;
}

static struct watch_set *tree_insert(struct watch_set *n, struct watch_set *x)
{
    if (!n)
        return x;
    if (set_cmp(x, n) < 0) {
        n->left = tree_insert(n->left, x);
        if (n->left->prio > n->prio)
            return rotate_right(n);
    } else {
        n->right = tree_insert(n->right, x);
        if (n->right->prio > n->prio)
            return rotate_left(n);
    }
    update(n);
    return n;
}

static struct watch_set *tree_merge(struct watch_set *a, struct watch_set *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (a->prio > b->prio) {
        a->right = tree_merge(a->right, b);
        update(a);
        return a;
    }
    b->left = tree_merge(a, b->left);
    update(b);
    return b;
}

static struct watch_set *tree_remove(struct watch_set *n, const struct watch_set *x)
{
    if (!n)
        return NULL;
    if (n == x)
        return tree_merge(n->left, n->right);
    if (set_cmp(x, n) < 0)
        n->left = tree_remove(n->left, x);
    else
        n->right = tree_remove(n->right, x);
    update(n);
    return n;
}

static void tree_stab(const struct watch_set *n, const uint8_t *p, size_t len, watch_set_fn fn,
                      void *ctx)
{
    while (n && end_after(n->max, p, len)) {
        tree_stab(n->left, p, len, fn, ctx);
        if (sl_keycmp(n->key, n->key_len, p, len) > 0)
            return; /* this start and every start to the right are past p */
        if (end_after(n, p, len))
            fn(ctx, (struct watch_set *)n);
        n = n->right;
    }
}

static void tree_free(struct watch_set *n)
{
    while (n) {
        tree_free(n->left);
        struct watch_set *r = n->right;
        free(n);
        n = r;
    }
}

/* ---- sets ---- */

static struct watch_set *set_create(const uint8_t *key, size_t key_len, const uint8_t *end,
                                    size_t end_len, enum kv_end_kind kind)
{
    if (kind != KV_END_KEY)
        end_len = 0;
    struct watch_set *s = calloc(1, sizeof(*s) + key_len + end_len);
    if (!s)
        return NULL;
    uint8_t *b = (uint8_t *)(s + 1);
    if (key_len)
        memcpy(b, key, key_len);
    if (end_len)
        memcpy(b + key_len, end, end_len);
    s->key = b;
    s->key_len = key_len;
    s->end = b + key_len;
    s->end_len = end_len;
    s->kind = kind;
    s->max = s;
    return s;
}

static uint64_t next_prio(struct watch_index *ix)
{
    uint64_t x = ix->rng ? ix->rng : 0x853c49e6748fea9bULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ix->rng = x;
    return x;
}

#define KEY_SEED 0x51ed270b27fdd4a3ULL

struct watch_set *watch_index_get(struct watch_index *ix, const uint8_t *key, size_t key_len,
                                  const uint8_t *end, size_t end_len, enum kv_end_kind kind)
{
    if (kind == KV_END_NONE) {
        uint64_t hash = watch_hash_bytes(key, key_len, KEY_SEED);
        for (struct watch_hnode *n = watch_htab_first(&ix->keys, hash); n; n = watch_htab_next(n)) {
            struct watch_set *s = (struct watch_set *)n;
            if (sl_keycmp(s->key, s->key_len, key, key_len) == 0)
                return s;
        }
        struct watch_set *s = set_create(key, key_len, NULL, 0, kind);
        if (!s)
            return NULL;
        s->hn.hash = hash;
        if (!watch_htab_insert(&ix->keys, &s->hn)) {
            free(s);
            return NULL;
        }
        return s;
    }
    struct watch_set probe = {.key = key,
                              .key_len = key_len,
                              .end = end,
                              .end_len = kind == KV_END_KEY ? end_len : 0,
                              .kind = kind};
    for (struct watch_set *n = ix->root; n;) {
        int c = set_cmp(&probe, n);
        if (c == 0)
            return n;
        n = c < 0 ? n->left : n->right;
    }
    struct watch_set *s = set_create(key, key_len, end, end_len, kind);
    if (!s)
        return NULL;
    s->prio = next_prio(ix);
    ix->root = tree_insert(ix->root, s);
    ix->n_ranges++;
    return s;
}

void watch_index_drop(struct watch_index *ix, struct watch_set *s)
{
    if (s->kind == KV_END_NONE) {
        watch_htab_remove(&ix->keys, &s->hn);
    } else {
        ix->root = tree_remove(ix->root, s);
        ix->n_ranges--;
    }
    free(s);
}

void watch_index_match(const struct watch_index *ix, const uint8_t *key, size_t key_len,
                       watch_set_fn fn, void *ctx)
{
    if (ix->keys.n) {
        uint64_t hash = watch_hash_bytes(key, key_len, KEY_SEED);
        for (struct watch_hnode *n = watch_htab_first(&ix->keys, hash); n; n = watch_htab_next(n)) {
            struct watch_set *s = (struct watch_set *)n;
            if (sl_keycmp(s->key, s->key_len, key, key_len) == 0) {
                fn(ctx, s);
                break;
            }
        }
    }
    tree_stab(ix->root, key, key_len, fn, ctx);
}

void watch_index_fini(struct watch_index *ix)
{
    for (size_t i = 0; i < ix->keys.nb; i++) {
        struct watch_hnode *n = ix->keys.b[i];
        while (n) {
            struct watch_hnode *next = n->next;
            free(n);
            n = next;
        }
    }
    watch_htab_fini(&ix->keys);
    tree_free(ix->root);
    ix->root = NULL;
    ix->n_ranges = 0;
}

static long check_node(const struct watch_set *n, const struct watch_set *lo,
                       const struct watch_set *hi)
{
    if (!n)
        return 0;
    if ((lo && set_cmp(lo, n) >= 0) || (hi && set_cmp(n, hi) >= 0))
        return -1;
    if ((n->left && n->left->prio > n->prio) || (n->right && n->right->prio > n->prio))
        return -1;
    const struct watch_set *m = n;
    if (n->left && end_cmp(n->left->max, m) > 0)
        m = n->left->max;
    if (n->right && end_cmp(n->right->max, m) > 0)
        m = n->right->max;
    if (end_cmp(m, n->max) != 0)
        return -1;
    long l = check_node(n->left, lo, n), r = check_node(n->right, n, hi);
    return l < 0 || r < 0 ? -1 : l + r + 1;
}

long watch_index_check(const struct watch_index *ix)
{
    long n = check_node(ix->root, NULL, NULL);
    return n >= 0 && (size_t)n != ix->n_ranges ? -1 : n;
}
