/* kv_compact.c - compaction, the keyspace hash, and history reads for watchers.
 *
 * Compaction is split as etcd's: kv_compact moves the compaction point and compacts the index
 * at once (reads below it fail immediately); kv_compact_step then deletes superseded records
 * in bounded slices so a large keyspace never stalls the loop. A record at or below the point
 * is superseded when the index no longer names its revision.
 */
#include "kv_store_int.h"

#include "metastore/arena.h"
#include "metastore/be.h"
#include "metastore/crc32c.h"
#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

ms_err kv_compact(struct kv_store *kv, struct be_txn *txn, int64_t rev)
{
    /* etcd's compaction point is -1 until the first compaction: that one may be at 0. */
    if (rev <= (kv->compacted ? kv->compact_rev : -1))
        return MS_E_COMPACTED;
    if (rev > kv->rev)
        return MS_E_FUTURE_REV;
    ms_err e = kv_meta_put_i64(txn, KV_META_SCHEDULED_COMPACT, rev);
    if (e)
        return e;
    kv_compact_begin(kv, rev);
    return MS_OK;
}

bool kv_compact_pending(const struct kv_store *kv)
{
    return kv->compact_pending != 0;
}

bool kv_compact_step(struct kv_store *kv, struct be_txn *txn, size_t budget, ms_err *err)
{
    *err = MS_OK;
    if (!kv->compact_pending)
        return true;
    struct be_cursor *c;
    struct be_val k, v;
    uint8_t start[KV_REVKEY_LEN + 1];
    size_t sl;
    if ((*err = be_cursor_open(txn, BE_BUCKET_KEY, &c)) != MS_OK)
        return false;
    kv_rev_encode(kv->compact_next, false, start, &sl);
    ms_err e = be_cursor_seek(c, start, sl, &k, &v);
    bool done = false;
    for (size_t n = 0; n < budget; n++) {
        if (e == MS_E_NOT_EXIST) {
            done = true;
            break;
        }
        if (e) {
            *err = e;
            break;
        }
        struct kv_rev rev;
        bool tomb;
        struct kv_kv rec;
        if (!kv_rev_decode(k.p, k.len, &rev, &tomb) || !kv_record_decode(v.p, v.len, &rec)) {
            *err = MS_E_DATA_CORRUPT;
            break;
        }
        if (rev.main > kv->compact_pending) {
            done = true;
            break;
        }
        kv->compact_next = (struct kv_rev){rev.main, rev.sub + 1};
        if (!kv_index_has_rev(&kv->ix, rec.key, rec.key_len, rev)) {
            uint8_t kcopy[KV_REVKEY_LEN + 1];
            size_t kl = k.len;
            memcpy(kcopy, k.p, kl);
            if ((*err = be_del(txn, BE_BUCKET_KEY, kcopy, kl)) != MS_OK)
                break;
        }
        e = be_cursor_next(c, &k, &v);
    }
    be_cursor_close(c);
    if (*err)
        return false;
    if (done) {
        if ((*err = kv_meta_put_i64(txn, KV_META_FINISHED_COMPACT, kv->compact_pending)))
            return false;
        kv->compact_pending = 0;
    }
    return done;
}

ms_err kv_hash_kv(struct kv_store *kv, struct be_txn *txn, int64_t rev, uint32_t *out,
                  int64_t *compact_rev)
{
    *compact_rev = kv->compact_rev;
    if (rev > 0 && rev <= kv->compact_rev)
        return MS_E_COMPACTED;
    if (rev > kv->rev)
        return MS_E_FUTURE_REV;
    if (rev <= 0)
        rev = kv->rev;
    struct be_cursor *c;
    struct be_val k, v;
    uint32_t h = crc32c(0, "key", 3);
    ms_err e = be_cursor_open(txn, BE_BUCKET_KEY, &c);
    if (e)
        return e;
    /* Records in revision order: those up to rev. */
    for (e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v)) {
        struct kv_rev r;
        bool tomb;
        if (!kv_rev_decode(k.p, k.len, &r, &tomb)) {
            e = MS_E_DATA_CORRUPT;
            break;
        }
        if (r.main > rev)
            break;
        h = crc32c(h, k.p, k.len);
        h = crc32c(h, v.p, v.len);
    }
    be_cursor_close(c);
    if (e != MS_OK && e != MS_E_NOT_EXIST)
        return e;
    *out = h;
    return MS_OK;
}

ms_err kv_hash(struct kv_store *kv, struct be_txn *txn, uint32_t *out)
{
    int64_t compact_rev;
    return kv_hash_kv(kv, txn, 0, out, &compact_rev);
}

ms_err kv_history(struct kv_store *kv, struct be_txn *txn, int64_t from, int64_t to,
                  size_t max_events, struct arena *a, struct kv_event **events, size_t *n,
                  int64_t *next)
{
    *events = NULL;
    *n = 0;
    *next = from;
    if (from < kv->compact_rev)
        return MS_E_COMPACTED;
    if (to > kv->rev)
        to = kv->rev;
    if (from > to) {
        *next = to + 1 > from ? to + 1 : from;
        return MS_OK;
    }
    struct be_cursor *c;
    struct be_val k, v;
    uint8_t start[KV_REVKEY_LEN + 1];
    size_t sl;
    ms_err e = be_cursor_open(txn, BE_BUCKET_KEY, &c);
    if (e)
        return e;
    size_t cap = 0;
    struct kv_event *ev = NULL;
    int64_t last_main = 0;
    kv_rev_encode((struct kv_rev){from, 0}, false, start, &sl);
    for (e = be_cursor_seek(c, start, sl, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v)) {
        struct kv_rev rev;
        bool tomb;
        struct kv_kv rec;
        if (!kv_rev_decode(k.p, k.len, &rev, &tomb) || !kv_record_decode(v.p, v.len, &rec)) {
            e = MS_E_DATA_CORRUPT;
            break;
        }
        if (rev.main > to)
            break;
        /* Stop only between revisions: one revision's events travel together. */
        if (*n >= max_events && rev.main != last_main) {
            *next = rev.main;
            be_cursor_close(c);
            goto out;
        }
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct kv_event *ne = arena_alloc(a, ncap * sizeof(*ne));
            if (!ne) {
                e = MS_E_NOMEM;
                break;
            }
            if (*n)
                memcpy(ne, ev, *n * sizeof(*ne));
            ev = ne;
            cap = ncap;
        }
        struct kv_event *x = &ev[(*n)++];
        memset(x, 0, sizeof(*x));
        if (!kv_copy_kv(a, &x->kv, &rec, !tomb)) {
            e = MS_E_NOMEM;
            break;
        }
        if (tomb) {
            x->type = KV_EVENT_DELETE;
            x->kv.mod_revision = rev.main;
        }
        last_main = rev.main;
    }
    be_cursor_close(c);
    if (e != MS_OK && e != MS_E_NOT_EXIST) {
        *n = 0;
        return e;
    }
    *next = to + 1;
out:
    *events = ev;
    return MS_OK;
}
