/* kv_int.h - private structures of the kv module (never included from outside src/kv). */
#ifndef METASTORE_KV_INT_H
#define METASTORE_KV_INT_H

#include "metastore/kv.h"
#include "metastore/skiplist.h"

#include <stdint.h>

/* One life of a key: from creation to its tombstone (etcd generation). */
struct kv_gen {
    int64_t ver;           /* versions in this generation */
    struct kv_rev created; /* first revision */
    struct kv_rev *revs;   /* ascending; a tombstone, if any, is the last */
    uint32_t n;
    uint32_t cap;
};

/* Every revision of one user key (etcd keyIndex). The last generation is the current one; it
 * is empty when the key is deleted (or not yet created). */
struct kv_keyidx {
    struct kv_rev modified;
    struct kv_gen *gens;
    uint32_t ngen;
    uint32_t capgen;
};

struct kv_index {
    struct sl *map; /* user key -> struct kv_keyidx * */
    size_t live;    /* keys whose current generation is non-empty */
};

/* Result of looking a key up at a revision. */
struct kv_at {
    struct kv_rev mod;
    struct kv_rev created;
    int64_t ver;
};

bool kv_index_init(struct kv_index *ix);
void kv_index_fini(struct kv_index *ix);
/* Append rev to key's current generation (creating the key). NULL on OOM. *created_node tells
 * whether the index node was new; *prev_modified (if not NULL) receives the key's modified
 * revision before the call ({0,0} for a new node), for kv_index_undo. */
struct kv_keyidx *kv_index_put(struct kv_index *ix, const uint8_t *key, size_t klen,
                               struct kv_rev rev, bool *created_node, struct kv_rev *prev_modified);
/* Append tombstone rev and start a new generation. MS_E_NOT_EXIST if the key is not live.
 * *prev_modified as for kv_index_put. */
ms_err kv_index_tombstone(struct kv_index *ix, const uint8_t *key, size_t klen, struct kv_rev rev,
                          struct kv_rev *prev_modified);
/* Undo the last kv_index_put (tomb false) or kv_index_tombstone (tomb true) on key; remove the
 * node if remove_node. prev_modified is restored. */
void kv_index_undo(struct kv_index *ix, const uint8_t *key, size_t klen, bool tomb,
                   bool remove_node, struct kv_rev prev_modified);
/* Look up the key's state at revision at_rev. */
bool kv_keyidx_get(const struct kv_keyidx *ki, int64_t at_rev, struct kv_at *out);
bool kv_keyidx_is_live(const struct kv_keyidx *ki);
/* Rebuild from a stored record at rev (restore at start). */
bool kv_index_restore(struct kv_index *ix, const struct kv_kv *kv, struct kv_rev rev, bool tomb);
/* Compact every key at at_rev (etcd treeIndex.Compact). */
void kv_index_compact(struct kv_index *ix, int64_t at_rev);
/* True if rev is still referenced by key's index (the record must be kept). */
bool kv_index_has_rev(const struct kv_index *ix, const uint8_t *key, size_t klen,
                      struct kv_rev rev);

/* -1, 0 or 1 as a < b, a == b, a > b. */
static inline int kv_cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

static inline int kv_rev_cmp(struct kv_rev a, struct kv_rev b)
{
    if (a.main != b.main)
        return a.main < b.main ? -1 : 1;
    if (a.sub != b.sub)
        return a.sub < b.sub ? -1 : 1;
    return 0;
}

/* Meta bucket keys (etcd schema names). */
#define KV_META_SCHEDULED_COMPACT "scheduledCompactRev"
#define KV_META_FINISHED_COMPACT  "finishedCompactRev"

#endif
