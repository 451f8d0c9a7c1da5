/* kv_store_int.h - the store and write structs shared by the kv_*.c files. */
#ifndef METASTORE_KV_STORE_INT_H
#define METASTORE_KV_STORE_INT_H

#include "kv_int.h"

#include "metastore/buf.h"

#include <string.h>

struct kv_store {
    struct kv_index ix;
    int64_t rev;                 /* current revision */
    int64_t compact_rev;         /* history below this is gone */
    bool compacted;              /* compacted at least once (maybe at 0) */
    int64_t compact_pending;     /* records <= this still to remove (0: none) */
    struct kv_rev compact_next;  /* where the removal resumes */
    kv_lease_exists_fn lease_fn; /* NULL: accept every lease */
    void *lease_ctx;
    struct buf scratch;     /* record encoding */
    struct kv_write *spare; /* a finished write kept with its arrays for the next (or NULL) */
};

/* Compact the index at rev; the removal of older records is scheduled from the start. */
static inline void kv_compact_begin(struct kv_store *kv, int64_t rev)
{
    kv_index_compact(&kv->ix, rev);
    kv->compact_rev = rev;
    kv->compacted = true;
    kv->compact_pending = rev;
    memset(&kv->compact_next, 0, sizeof(kv->compact_next));
}

/* Whether a read at rev (<= 0: the current revision cur) can be served: MS_E_FUTURE_REV above
 * cur, MS_E_COMPACTED below the compaction. */
static inline ms_err kv_read_rev_check(const struct kv_store *kv, int64_t rev, int64_t cur)
{
    if (rev > cur)
        return MS_E_FUTURE_REV;
    if (rev > 0 && rev < kv->compact_rev)
        return MS_E_COMPACTED;
    return MS_OK;
}

struct kv_undo {
    const uint8_t *key; /* in the write's arena */
    size_t klen;
    bool tomb;
    bool remove_node;
    struct kv_rev prev_modified;
};

struct kv_write {
    struct kv_store *kv;
    struct be_txn *txn;
    struct arena *a;
    int64_t rev; /* main revision of this write */
    int64_t sub; /* changes so far */
    struct kv_undo *undo;
    size_t n_undo;
    size_t cap_undo;
    struct kv_event *ev;
    size_t n_ev;
    size_t cap_ev;
};

/* Range as seen at current revision cur (the header revision). */
ms_err kv_range_in(struct kv_store *kv, struct be_txn *txn, const struct kv_range_req *req,
                   int64_t cur, struct arena *a, struct kv_range_resp *out);
/* Read the record stored at rev (not a tombstone). */
ms_err kv_read_record(struct be_txn *txn, struct kv_rev rev, struct kv_kv *out);
/* Deep copy of src's bytes into a. */
bool kv_copy_kv(struct arena *a, struct kv_kv *dst, const struct kv_kv *src, bool with_value);
bool kv_lease_exists(const struct kv_store *kv, int64_t lease);
ms_err kv_meta_put_i64(struct be_txn *txn, const char *name, int64_t v);

#endif
