/* kv_index.c - the in-memory key index (etcd key_index.go + index.go semantics).
 *
 * Owns every kv_keyidx and its generations. Invariants: revisions inside a key only grow; every
 * generation but the last ends with its tombstone; an index entry whose only generation is
 * empty is removed. Compaction follows current etcd: a tombstone at exactly the compaction
 * revision is kept (so a watcher starting there still sees the delete, etcd #19179).
 */
#include "kv_int.h"

#include <stdlib.h>
#include <string.h>

static void keyidx_free(void *p)
{
    struct kv_keyidx *ki = p;
    if (!ki)
        return;
    for (uint32_t i = 0; i < ki->ngen; i++)
        free(ki->gens[i].revs);
    free(ki->gens);
    free(ki);
}

bool kv_index_init(struct kv_index *ix)
{
    ix->map = sl_create(0x6B76u);
    ix->live = 0;
    return ix->map != NULL;
}

void kv_index_fini(struct kv_index *ix)
{
    sl_destroy(ix->map, keyidx_free);
    ix->map = NULL;
}

static bool gen_append(struct kv_gen *g, struct kv_rev rev)
{
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 1;
        struct kv_rev *r = realloc(g->revs, cap * sizeof(*r));
        if (!r)
            return false;
        g->revs = r;
        g->cap = cap;
    }
    g->revs[g->n++] = rev;
    return true;
}

static struct kv_gen *keyidx_add_gen(struct kv_keyidx *ki)
{
    if (ki->ngen == ki->capgen) {
        uint32_t cap = ki->capgen ? ki->capgen * 2 : 1;
        struct kv_gen *g = realloc(ki->gens, cap * sizeof(*g));
        if (!g)
            return NULL;
        ki->gens = g;
        ki->capgen = cap;
    }
    struct kv_gen *g = &ki->gens[ki->ngen++];
    memset(g, 0, sizeof(*g));
    return g;
}

static struct kv_gen *last_gen(const struct kv_keyidx *ki)
{
    return &ki->gens[ki->ngen - 1];
}

bool kv_keyidx_is_live(const struct kv_keyidx *ki)
{
    return ki->ngen > 0 && last_gen(ki)->n > 0;
}

static bool keyidx_is_empty(const struct kv_keyidx *ki)
{
    return ki->ngen == 0 || (ki->ngen == 1 && ki->gens[0].n == 0);
}

/* Find or create the index entry for key. */
static struct kv_keyidx *index_get_or_create(struct kv_index *ix, const uint8_t *key, size_t klen,
                                             bool *created_node)
{
    struct sl_node *n;
    bool existed;
    if (!sl_insert(ix->map, key, klen, NULL, &n, &existed))
        return NULL;
    *created_node = !existed;
    if (existed)
        return sl_node_val(n);
    struct kv_keyidx *ki = calloc(1, sizeof(*ki));
    if (!ki || !keyidx_add_gen(ki)) {
        free(ki);
        sl_remove(ix->map, key, klen, NULL);
        return NULL;
    }
    sl_node_set_val(n, ki);
    return ki;
}

static bool keyidx_put(struct kv_index *ix, struct kv_keyidx *ki, struct kv_rev rev)
{
    struct kv_gen *g = last_gen(ki);
    bool creating = g->n == 0;
    if (!gen_append(g, rev))
        return false;
    if (creating) {
        g->created = rev;
        ix->live++;
    }
    g->ver++;
    ki->modified = rev;
    return true;
}

struct kv_keyidx *kv_index_put(struct kv_index *ix, const uint8_t *key, size_t klen,
                               struct kv_rev rev, bool *created_node, struct kv_rev *prev_modified)
{
    struct kv_keyidx *ki = index_get_or_create(ix, key, klen, created_node);
    if (!ki)
        return NULL;
    if (prev_modified)
        *prev_modified = ki->modified;
    if (!keyidx_put(ix, ki, rev)) {
        if (*created_node)
            keyidx_free(sl_remove(ix->map, key, klen, NULL));
        return NULL;
    }
    return ki;
}

ms_err kv_index_tombstone(struct kv_index *ix, const uint8_t *key, size_t klen, struct kv_rev rev,
                          struct kv_rev *prev_modified)
{
    struct sl_node *n = sl_find(ix->map, key, klen);
    if (!n)
        return MS_E_NOT_EXIST;
    struct kv_keyidx *ki = sl_node_val(n);
    if (!kv_keyidx_is_live(ki))
        return MS_E_NOT_EXIST;
    if (prev_modified)
        *prev_modified = ki->modified;
    /* Reserve the new generation first so a failure leaves nothing half done. */
    if (ki->ngen == ki->capgen) {
        uint32_t cap = ki->capgen * 2;
        struct kv_gen *g = realloc(ki->gens, cap * sizeof(*g));
        if (!g)
            return MS_E_NOMEM;
        ki->gens = g;
        ki->capgen = cap;
    }
    if (!keyidx_put(ix, ki, rev))
        return MS_E_NOMEM;
    keyidx_add_gen(ki);
    ix->live--;
    return MS_OK;
}

void kv_index_undo(struct kv_index *ix, const uint8_t *key, size_t klen, bool tomb,
                   bool remove_node, struct kv_rev prev_modified)
{
    struct sl_node *n = sl_find(ix->map, key, klen);
    if (!n)
        return;
    struct kv_keyidx *ki = sl_node_val(n);
    if (tomb) {
        ki->ngen--; /* drop the empty generation the tombstone opened */
        ix->live++;
    }
    struct kv_gen *g = last_gen(ki);
    g->n--;
    g->ver--;
    if (g->n == 0)
        ix->live--;
    ki->modified = prev_modified;
    if (remove_node)
        keyidx_free(sl_remove(ix->map, key, klen, NULL));
}

/* etcd keyIndex.findGeneration: the generation holding the key's state at rev, or NULL. */
static const struct kv_gen *find_gen(const struct kv_keyidx *ki, int64_t rev)
{
    for (uint32_t i = ki->ngen; i-- > 0;) {
        const struct kv_gen *g = &ki->gens[i];
        if (g->n == 0)
            continue;
        if (i != ki->ngen - 1 && g->revs[g->n - 1].main <= rev)
            return NULL; /* tombstoned at or before rev */
        if (g->revs[0].main <= rev)
            return g;
    }
    return NULL;
}

bool kv_keyidx_get(const struct kv_keyidx *ki, int64_t at_rev, struct kv_at *out)
{
    const struct kv_gen *g = find_gen(ki, at_rev);
    if (!g)
        return false;
    /* Latest revision <= at_rev: binary search on the ascending revs. */
    uint32_t lo = 0, hi = g->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (g->revs[mid].main <= at_rev)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    out->mod = g->revs[lo - 1];
    out->created = g->created;
    out->ver = g->ver - (int64_t)(g->n - lo);
    return true;
}

bool kv_index_restore(struct kv_index *ix, const struct kv_kv *kv, struct kv_rev rev, bool tomb)
{
    bool created_node;
    struct kv_keyidx *ki = index_get_or_create(ix, kv->key, kv->key_len, &created_node);
    if (!ki)
        return false;
    if (tomb) {
        if (kv_keyidx_is_live(ki))
            return kv_index_tombstone(ix, kv->key, kv->key_len, rev, NULL) == MS_OK;
        /* Only the tombstone survived compaction (etcd restoreTombstone). */
        struct kv_gen *g = last_gen(ki);
        if (!gen_append(g, rev))
            return false;
        g->created = (struct kv_rev){0, 0};
        g->ver = 1;
        ki->modified = rev;
        return keyidx_add_gen(ki) != NULL;
    }
    struct kv_gen *g = last_gen(ki);
    if (g->n > 0 || !created_node)
        return keyidx_put(ix, ki, rev);
    /* First record seen for this key: earlier ones may be compacted away, so take created
     * and version from the record itself (etcd keyIndex.restore). */
    if (!gen_append(g, rev))
        return false;
    g->created = (struct kv_rev){kv->create_revision, 0};
    g->ver = kv->version;
    ki->modified = rev;
    ix->live++;
    return true;
}

/* Compact one key; returns true if the key became empty and must be removed. */
static bool keyidx_compact(struct kv_keyidx *ki, int64_t at_rev)
{
    uint32_t gi = 0;
    /* First generation that includes at_rev or was created after it. */
    while (gi + 1 < ki->ngen) {
        const struct kv_gen *g = &ki->gens[gi];
        if (g->n > 0 && g->revs[g->n - 1].main >= at_rev)
            break;
        gi++;
    }
    struct kv_gen *g = &ki->gens[gi];
    /* Keep the latest revision <= at_rev and everything after it. */
    uint32_t keep_from = 0;
    for (uint32_t i = g->n; i-- > 0;) {
        if (g->revs[i].main <= at_rev) {
            keep_from = i;
            break;
        }
    }
    if (keep_from > 0) {
        memmove(g->revs, g->revs + keep_from, (g->n - keep_from) * sizeof(*g->revs));
        g->n -= keep_from;
    }
    if (gi > 0) {
        for (uint32_t i = 0; i < gi; i++)
            free(ki->gens[i].revs);
        memmove(ki->gens, ki->gens + gi, (ki->ngen - gi) * sizeof(*ki->gens));
        ki->ngen -= gi;
    }
    return keyidx_is_empty(ki);
}

void kv_index_compact(struct kv_index *ix, int64_t at_rev)
{
    struct sl_node *n = sl_first(ix->map);
    while (n) {
        struct sl_node *next = sl_next(n);
        struct kv_keyidx *ki = sl_node_val(n);
        if (keyidx_compact(ki, at_rev)) {
            size_t klen;
            const uint8_t *k = sl_node_key(n, &klen);
            sl_remove(ix->map, k, klen, NULL);
            keyidx_free(ki);
        }
        n = next;
    }
}

bool kv_index_has_rev(const struct kv_index *ix, const uint8_t *key, size_t klen, struct kv_rev rev)
{
    struct sl_node *n = sl_find(ix->map, key, klen);
    if (!n)
        return false;
    const struct kv_keyidx *ki = sl_node_val(n);
    for (uint32_t i = 0; i < ki->ngen; i++) {
        const struct kv_gen *g = &ki->gens[i];
        if (g->n == 0 || kv_rev_cmp(rev, g->revs[0]) < 0 || kv_rev_cmp(rev, g->revs[g->n - 1]) > 0)
            continue;
        uint32_t lo = 0, hi = g->n;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            int c = kv_rev_cmp(g->revs[mid], rev);
            if (c == 0)
                return true;
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        return false;
    }
    return false;
}
