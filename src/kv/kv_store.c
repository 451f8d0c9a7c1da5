/* kv_store.c - the MVCC store: open/restore, write transactions (put, delete), accessors.
 *
 * Owns the key index and the revision counters. Every record write goes through the caller's
 * backend transaction; the index is updated at once (a write sees its own changes, as etcd's
 * storeTxnWrite) and kv_write_abort undoes those index changes in reverse order.
 * Must not call lease or watch code: lease existence is a callback, events are returned.
 */
#include "kv_int.h"

#include "metastore/arena.h"
#include "metastore/grow.h"
#include "metastore/be.h"
#include "metastore/buf.h"
#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

#include "kv_store_int.h"

static ms_err meta_get_i64(struct be_txn *txn, const char *name, int64_t *out, bool *found)
{
    uint64_t v = 0;
    ms_err e = be_get_u64(txn, BE_BUCKET_META, name, &v, found);
    *out = (int64_t)v;
    return e;
}

ms_err kv_meta_put_i64(struct be_txn *txn, const char *name, int64_t v)
{
    return be_put_u64(txn, BE_BUCKET_META, name, (uint64_t)v);
}

/* An index being rebuilt from the key bucket's records, in revision order (etcd restore). */
struct kv_restore {
    struct kv_index ix;
    int64_t max_main;
};

struct kv_restore *kv_restore_begin(void)
{
    struct kv_restore *r = calloc(1, sizeof(*r));
    if (r && !kv_index_init(&r->ix)) {
        free(r);
        return NULL;
    }
    return r;
}

ms_err kv_restore_record(struct kv_restore *r, const uint8_t *k, size_t kl, const uint8_t *v,
                         size_t vl)
{
    struct kv_rev rev;
    bool tomb;
    struct kv_kv rec;
    if (!kv_rev_decode(k, kl, &rev, &tomb) || !kv_record_decode(v, vl, &rec)) {
        log_error("kv: corrupt record in bucket key (%zu-byte key)", kl);
        return MS_E_DATA_CORRUPT;
    }
    if (!kv_index_restore(&r->ix, &rec, rev, tomb))
        return MS_E_NOMEM;
    if (rev.main > r->max_main)
        r->max_main = rev.main;
    return MS_OK;
}

void kv_restore_abort(struct kv_restore *r)
{
    if (!r)
        return;
    kv_index_fini(&r->ix);
    free(r);
}

/* Every record of the key bucket into r. */
static ms_err restore_scan(struct kv_restore *r, struct be_txn *txn)
{
    struct be_cursor *c;
    struct be_val k, v;
    ms_err e = be_cursor_open(txn, BE_BUCKET_KEY, &c);
    if (e)
        return e;
    for (e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v))
        if ((e = kv_restore_record(r, k.p, k.len, v.p, v.len)) != MS_OK)
            break;
    be_cursor_close(c);
    return e == MS_E_NOT_EXIST ? MS_OK : e;
}

/* A store with r's index (r is consumed) and txn's compaction state; NULL with *err. */
static struct kv_store *open_restored(struct kv_restore *r, struct be_txn *txn, ms_err *err)
{
    struct kv_store *kv = calloc(1, sizeof(*kv));
    int64_t finished = 0, scheduled = 0;
    bool have_finished = false, have_scheduled = false;
    if (!kv) {
        kv_restore_abort(r);
        *err = MS_E_NOMEM;
        return NULL;
    }
    buf_init(&kv->scratch);
    kv->ix = r->ix;
    int64_t max_main = r->max_main;
    free(r);
    if ((*err = meta_get_i64(txn, KV_META_FINISHED_COMPACT, &finished, &have_finished)) != MS_OK ||
        (*err = meta_get_i64(txn, KV_META_SCHEDULED_COMPACT, &scheduled, &have_scheduled)) !=
            MS_OK) {
        kv_store_close(kv);
        return NULL;
    }
    kv->compact_rev = finished;
    kv->compacted = have_finished || have_scheduled;
    kv->rev = max_main > 1 ? max_main : 1;
    /* Keys up to the compaction point may all be gone: never report less than it. */
    if (kv->rev < kv->compact_rev)
        kv->rev = kv->compact_rev;
    if (scheduled > finished) {
        /* A compaction was cut short by a stop: redo it (etcd does the same). */
        kv_compact_begin(kv, scheduled);
    }
    return kv;
}

struct kv_store *kv_store_open(struct be_txn *txn, ms_err *err)
{
    struct kv_restore *r = kv_restore_begin();
    if (!r) {
        *err = MS_E_NOMEM;
        return NULL;
    }
    if ((*err = restore_scan(r, txn)) != MS_OK) {
        kv_restore_abort(r);
        return NULL;
    }
    return open_restored(r, txn, err);
}

static void write_free(struct kv_write *w)
{
    if (!w)
        return;
    free(w->undo);
    free(w->ev);
    free(w);
}

void kv_store_close(struct kv_store *kv)
{
    if (!kv)
        return;
    write_free(kv->spare);
    kv_index_fini(&kv->ix);
    buf_fini(&kv->scratch);
    free(kv);
}

ms_err kv_restore_end(struct kv_store *kv, struct kv_restore *r, struct be_txn *txn)
{
    ms_err e;
    struct kv_store *fresh = open_restored(r, txn, &e);
    if (!fresh)
        return e;
    fresh->lease_fn = kv->lease_fn;
    fresh->lease_ctx = kv->lease_ctx;
    write_free(kv->spare);
    kv_index_fini(&kv->ix);
    buf_fini(&kv->scratch);
    *kv = *fresh;
    free(fresh);
    return MS_OK;
}

void kv_set_lease_check(struct kv_store *kv, kv_lease_exists_fn fn, void *ctx)
{
    kv->lease_fn = fn;
    kv->lease_ctx = ctx;
}

int64_t kv_current_rev(const struct kv_store *kv)
{
    return kv->rev;
}

int64_t kv_compact_rev(const struct kv_store *kv)
{
    return kv->compact_rev;
}

size_t kv_live_keys(const struct kv_store *kv)
{
    return kv->ix.live;
}

size_t kv_index_keys(const struct kv_store *kv)
{
    return sl_count(kv->ix.map);
}

bool kv_lease_exists(const struct kv_store *kv, int64_t lease)
{
    return lease == 0 || !kv->lease_fn || kv->lease_fn(kv->lease_ctx, lease);
}

ms_err kv_read_record(struct be_txn *txn, struct kv_rev rev, struct kv_kv *out)
{
    uint8_t k[KV_REVKEY_LEN + 1];
    size_t kl;
    struct be_val v;
    kv_rev_encode(rev, false, k, &kl);
    ms_err e = be_get(txn, BE_BUCKET_KEY, k, kl, &v);
    if (e == MS_E_NOT_EXIST) {
        log_error("kv: index names revision %lld_%lld but its record is missing",
                  (long long)rev.main, (long long)rev.sub);
        return MS_E_DATA_CORRUPT;
    }
    if (e)
        return e;
    if (!kv_record_decode(v.p, v.len, out))
        return MS_E_DATA_CORRUPT;
    return MS_OK;
}

bool kv_copy_kv(struct arena *a, struct kv_kv *dst, const struct kv_kv *src, bool with_value)
{
    *dst = *src;
    dst->key = arena_memdup(a, src->key, src->key_len);
    if (!dst->key)
        return false;
    if (with_value && src->value_len) {
        dst->value = arena_memdup(a, src->value, src->value_len);
        if (!dst->value)
            return false;
    } else if (!with_value) {
        dst->value = NULL;
        dst->value_len = 0;
    }
    return true;
}

/* Current state of key as seen by w (its own writes included): *found false if not live.
 * The record is copied into w's arena. */
static ms_err write_lookup(struct kv_write *w, const uint8_t *key, size_t klen, struct kv_kv *out,
                           bool *found)
{
    struct sl_node *n = sl_find(w->kv->ix.map, key, klen);
    struct kv_at at;
    *found = false;
    if (!n || !kv_keyidx_get(sl_node_val(n), w->rev, &at))
        return MS_OK;
    struct kv_kv rec;
    ms_err e = kv_read_record(w->txn, at.mod, &rec);
    if (e)
        return e;
    if (!kv_copy_kv(w->a, out, &rec, true))
        return MS_E_NOMEM;
    *found = true;
    return MS_OK;
}

/* A finished write: kept for the next one (its struct and arrays are a calloc and two reallocs
 * a write otherwise), unless one is kept already or its arrays grew large (a big txn). */
static void write_keep(struct kv_write *w)
{
    struct kv_store *kv = w->kv;
    if (kv->spare || w->cap_undo > 64 || w->cap_ev > 64) {
        write_free(w);
        return;
    }
    kv->spare = w;
}

ms_err kv_write_begin(struct kv_store *kv, struct be_txn *txn, struct arena *a,
                      struct kv_write **out)
{
    struct kv_write *w = kv->spare;
    kv->spare = NULL;
    if (!w && !(w = calloc(1, sizeof(*w))))
        return MS_E_NOMEM;
    w->kv = kv;
    w->sub = 0;
    w->n_undo = 0;
    w->n_ev = 0;
    w->txn = txn;
    w->a = a;
    w->rev = kv->rev + 1;
    *out = w;
    return MS_OK;
}

int64_t kv_write_rev(const struct kv_write *w)
{
    return w->sub > 0 ? w->rev : w->kv->rev;
}

static bool undo_push(struct kv_write *w, const uint8_t *key, size_t klen, bool tomb,
                      bool created_node, struct kv_rev prev_modified)
{
    struct kv_undo *u = ms_grow(w->undo, &w->cap_undo, w->n_undo + 1, sizeof(*u), 8);
    if (!u)
        return false;
    w->undo = u;
    w->undo[w->n_undo++] = (struct kv_undo){.key = key,
                                            .klen = klen,
                                            .tomb = tomb,
                                            .remove_node = created_node,
                                            .prev_modified = prev_modified};
    return true;
}

static struct kv_event *event_push(struct kv_write *w)
{
    struct kv_event *v = ms_grow(w->ev, &w->cap_ev, w->n_ev + 1, sizeof(*v), 8);
    if (!v)
        return NULL;
    w->ev = v;
    struct kv_event *e = &w->ev[w->n_ev++];
    memset(e, 0, sizeof(*e));
    return e;
}

static ms_err put_record(struct kv_write *w, struct kv_rev rev, bool tomb, const struct kv_kv *rec)
{
    uint8_t k[KV_REVKEY_LEN + 1];
    size_t kl;
    struct buf *b = &w->kv->scratch;
    b->len = 0;
    kv_record_encode(rec, b);
    if (buf_failed(b)) {
        buf_fini(b);
        return MS_E_NOMEM;
    }
    kv_rev_encode(rev, tomb, k, &kl);
    return be_put(w->txn, BE_BUCKET_KEY, k, kl, b->p, b->len);
}

ms_err kv_write_put(struct kv_write *w, const struct kv_put_req *req, struct kv_put_resp *out)
{
    struct kv_kv prev;
    bool found;
    ms_err e;

    memset(out, 0, sizeof(*out));
    if (req->key_len == 0)
        return MS_E_EMPTY_KEY;
    if ((e = write_lookup(w, req->key, req->key_len, &prev, &found)) != MS_OK)
        return e;
    if ((req->ignore_value || req->ignore_lease) && !found)
        return MS_E_KEY_NOT_FOUND;
    if (!req->ignore_lease && !kv_lease_exists(w->kv, req->lease))
        return MS_E_LEASE_NOT_FOUND;

    struct kv_kv kv = {0};
    kv.key = arena_memdup(w->a, req->key, req->key_len);
    kv.key_len = req->key_len;
    if (!kv.key)
        return MS_E_NOMEM;
    if (req->ignore_value) {
        kv.value = prev.value;
        kv.value_len = prev.value_len;
    } else if (req->value_len) {
        kv.value = arena_memdup(w->a, req->value, req->value_len);
        kv.value_len = req->value_len;
        if (!kv.value)
            return MS_E_NOMEM;
    }
    kv.lease = req->ignore_lease ? prev.lease : req->lease;
    kv.create_revision = found ? prev.create_revision : w->rev;
    kv.version = found ? prev.version + 1 : 1;
    kv.mod_revision = w->rev;

    struct kv_rev rev = {w->rev, w->sub}, prev_mod;
    if ((e = put_record(w, rev, false, &kv)) != MS_OK)
        return e;
    bool created_node;
    if (!kv_index_put(&w->kv->ix, kv.key, kv.key_len, rev, &created_node, &prev_mod))
        return MS_E_NOMEM;
    if (!undo_push(w, kv.key, kv.key_len, false, created_node, prev_mod)) {
        kv_index_undo(&w->kv->ix, kv.key, kv.key_len, false, created_node, prev_mod);
        return MS_E_NOMEM;
    }
    w->sub++;
    struct kv_event *ev = event_push(w);
    if (!ev)
        return MS_E_NOMEM;
    ev->type = KV_EVENT_PUT;
    ev->kv = kv;
    if (found) {
        ev->prev = prev;
        ev->has_prev = true;
    }
    out->revision = w->rev;
    if (req->prev_kv && found) {
        out->prev_kv = arena_alloc(w->a, sizeof(*out->prev_kv));
        if (!out->prev_kv)
            return MS_E_NOMEM;
        *out->prev_kv = prev;
    }
    return MS_OK;
}

ms_err kv_write_del(struct kv_write *w, const struct kv_del_req *req, struct kv_del_resp *out)
{
    ms_err e;
    memset(out, 0, sizeof(*out));
    if (req->span.key_len == 0)
        return MS_E_EMPTY_KEY;

    /* Collect the live keys first (state including this write's earlier changes). */
    struct kv_range_req rr = {.span = req->span};
    struct kv_range_resp live;
    if ((e = kv_range_in(w->kv, w->txn, &rr, w->rev, w->a, &live)) != MS_OK)
        return e;

    for (size_t i = 0; i < live.n_kvs; i++) {
        struct kv_kv *prev = &live.kvs[i];
        struct kv_rev rev = {w->rev, w->sub}, prev_mod;
        struct kv_kv tomb = {.key = prev->key, .key_len = prev->key_len};
        if ((e = put_record(w, rev, true, &tomb)) != MS_OK)
            return e;
        if ((e = kv_index_tombstone(&w->kv->ix, prev->key, prev->key_len, rev, &prev_mod)) != MS_OK)
            return e;
        if (!undo_push(w, prev->key, prev->key_len, true, false, prev_mod)) {
            kv_index_undo(&w->kv->ix, prev->key, prev->key_len, true, false, prev_mod);
            return MS_E_NOMEM;
        }
        w->sub++;
        struct kv_event *ev = event_push(w);
        if (!ev)
            return MS_E_NOMEM;
        ev->type = KV_EVENT_DELETE;
        ev->kv.key = prev->key;
        ev->kv.key_len = prev->key_len;
        ev->kv.mod_revision = w->rev;
        ev->prev = *prev;
        ev->has_prev = true;
    }
    out->deleted = (int64_t)live.n_kvs;
    out->revision = kv_write_rev(w);
    if (req->prev_kv && live.n_kvs) {
        out->prev_kvs = live.kvs;
        out->n_prev_kvs = live.n_kvs;
    }
    return MS_OK;
}

ms_err kv_write_range(struct kv_write *w, const struct kv_range_req *req, struct kv_range_resp *out)
{
    return kv_range_in(w->kv, w->txn, req, kv_write_rev(w), w->a, out);
}

void kv_write_end(struct kv_write *w, struct kv_event **events, size_t *n_events)
{
    if (w->sub > 0)
        w->kv->rev = w->rev;
    *events = NULL;
    *n_events = 0;
    if (w->n_ev) {
        *events = arena_memdup(w->a, w->ev, w->n_ev * sizeof(*w->ev));
        if (*events)
            *n_events = w->n_ev;
        else
            log_error("kv: out of memory publishing %zu events", w->n_ev);
    }
    write_keep(w);
}

void kv_write_abort(struct kv_write *w)
{
    for (size_t i = w->n_undo; i-- > 0;) {
        struct kv_undo *u = &w->undo[i];
        kv_index_undo(&w->kv->ix, u->key, u->klen, u->tomb, u->remove_node, u->prev_modified);
    }
    write_keep(w);
}
