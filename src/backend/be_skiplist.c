/* be_skiplist.c - the in-memory backend: one skiplist per bucket.
 *
 * Owns the lists and every value blob. A write transaction keeps an undo log; the old value
 * blobs it replaces stay alive in that log until the top-level commit, which is what makes
 * borrowed bytes valid until the end of the transaction. Reads see the latest state (there is
 * one thread and the server reads through its write transaction).
 * Durability is not this file's business: the WAL and snapshots provide it.
 */
#include "metastore/be.h"
#include "metastore/grow.h"
#include "metastore/skiplist.h"

#include <stdlib.h>
#include <string.h>

struct blob {
    size_t len;
    uint8_t data[];
};

struct undo {
    enum be_bucket bucket;
    uint8_t *key; /* owned copy */
    size_t klen;
    struct blob *old; /* value before the change, NULL if the key was absent */
};

struct be_txn {
    struct be_txn_hdr hdr;
    struct be_sl *be;
    struct be_txn *parent;
    bool write;
    struct undo *undo;
    size_t n_undo;
    size_t cap_undo;
};

struct be_cursor {
    struct be_txn_hdr hdr;
    struct be_sl *be;
    enum be_bucket bucket;
    struct sl_node *node; /* NULL: unpositioned or past the end */
    uint64_t mods;        /* bucket modification count when node was taken */
    uint8_t *key;         /* copy of node's key, to re-seek after modifications */
    size_t klen;
    size_t kcap;
};

struct be_sl {
    struct be base;
    struct sl *lists[BE_BUCKET_COUNT_];
    uint64_t mods[BE_BUCKET_COUNT_];
    struct be_txn *wtxn; /* innermost open write txn */
    size_t blob_bytes;
};

static const struct be_ops sl_ops;

static struct blob *blob_create(struct be_sl *be, const uint8_t *v, size_t n)
{
    struct blob *b = malloc(sizeof(*b) + n);
    if (!b)
        return NULL;
    b->len = n;
    if (n)
        memcpy(b->data, v, n);
    be->blob_bytes += sizeof(*b) + n;
    return b;
}

static void blob_destroy(struct be_sl *be, struct blob *b)
{
    if (!b)
        return;
    be->blob_bytes -= sizeof(*b) + b->len;
    free(b);
}

static void free_blob_cb(void *p)
{
    free(p);
}

static ms_err sl_txn_begin(struct be *base, struct be_txn *parent, bool write, struct be_txn **out)
{
    struct be_sl *be = (struct be_sl *)base;
    if (write && be->wtxn != parent)
        return MS_E_INTERNAL; /* one write txn at a time; nested only under the innermost */
    if (parent && !write)
        return MS_E_INTERNAL;
    struct be_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return MS_E_NOMEM;
    t->hdr.ops = &sl_ops;
    t->be = be;
    t->parent = parent;
    t->write = write;
    if (write)
        be->wtxn = t;
    *out = t;
    return MS_OK;
}

static void txn_free(struct be_txn *t)
{
    if (t->write)
        t->be->wtxn = t->parent;
    free(t->undo);
    free(t);
}

static ms_err sl_txn_commit(struct be_txn *t)
{
    struct be_sl *be = t->be;
    if (t->parent) {
        /* Fold our undo records into the parent so its abort still undoes them. */
        struct be_txn *p = t->parent;
        if (p->cap_undo - p->n_undo < t->n_undo) {
            size_t cap = p->n_undo + t->n_undo;
            struct undo *u = realloc(p->undo, cap * sizeof(*u));
            if (!u) {
                be->wtxn = t; /* keep t current so abort can run */
                sl_ops.txn_abort(t);
                return MS_E_NOMEM;
            }
            p->undo = u;
            p->cap_undo = cap;
        }
        memcpy(p->undo + p->n_undo, t->undo, t->n_undo * sizeof(*t->undo));
        p->n_undo += t->n_undo;
        t->n_undo = 0;
    } else {
        for (size_t i = 0; i < t->n_undo; i++) {
            blob_destroy(be, t->undo[i].old);
            free(t->undo[i].key);
        }
    }
    txn_free(t);
    return MS_OK;
}

static void sl_txn_abort(struct be_txn *t)
{
    struct be_sl *be = t->be;
    for (size_t i = t->n_undo; i-- > 0;) {
        struct undo *u = &t->undo[i];
        struct sl *l = be->lists[u->bucket];
        be->mods[u->bucket]++;
        if (!u->old) {
            blob_destroy(be, sl_remove(l, u->key, u->klen, NULL));
        } else {
            struct sl_node *n;
            bool existed;
            if (sl_insert(l, u->key, u->klen, u->old, &n, &existed)) {
                if (existed) {
                    blob_destroy(be, sl_node_val(n));
                    sl_node_set_val(n, u->old);
                }
            } else {
                /* Out of memory while restoring: nothing sane is left to do. */
                abort();
            }
        }
        free(u->key);
    }
    t->n_undo = 0;
    txn_free(t);
}

static bool undo_push(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                      struct blob *old)
{
    struct undo *u = ms_grow(t->undo, &t->cap_undo, t->n_undo + 1, sizeof(*u), 16);
    if (!u)
        return false;
    t->undo = u;
    uint8_t *kc = malloc(klen ? klen : 1);
    if (!kc)
        return false;
    if (klen)
        memcpy(kc, k, klen);
    t->undo[t->n_undo++] = (struct undo){.bucket = b, .key = kc, .klen = klen, .old = old};
    return true;
}

static ms_err sl_get(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                     struct be_val *out)
{
    if ((unsigned)b >= BE_BUCKET_COUNT_)
        return MS_E_INTERNAL;
    struct sl_node *n = sl_find(t->be->lists[b], k, klen);
    if (!n)
        return MS_E_NOT_EXIST;
    struct blob *v = sl_node_val(n);
    out->p = v->data;
    out->len = v->len;
    return MS_OK;
}

static ms_err sl_put(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                     const uint8_t *v, size_t vlen)
{
    struct be_sl *be = t->be;
    if (!t->write || be->wtxn != t || (unsigned)b >= BE_BUCKET_COUNT_)
        return MS_E_INTERNAL;
    struct blob *nv = blob_create(be, v, vlen);
    if (!nv)
        return MS_E_NOMEM;
    struct sl_node *n;
    bool existed;
    if (!sl_insert(be->lists[b], k, klen, nv, &n, &existed)) {
        blob_destroy(be, nv);
        return MS_E_NOMEM;
    }
    struct blob *old = existed ? sl_node_val(n) : NULL;
    if (!undo_push(t, b, k, klen, old)) {
        if (existed)
            blob_destroy(be, nv);
        else
            blob_destroy(be, sl_remove(be->lists[b], k, klen, NULL));
        return MS_E_NOMEM;
    }
    if (existed)
        sl_node_set_val(n, nv);
    else
        be->mods[b]++;
    return MS_OK;
}

static ms_err sl_del(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen)
{
    struct be_sl *be = t->be;
    if (!t->write || be->wtxn != t || (unsigned)b >= BE_BUCKET_COUNT_)
        return MS_E_INTERNAL;
    struct sl_node *n = sl_find(be->lists[b], k, klen);
    if (!n)
        return MS_E_NOT_EXIST;
    if (!undo_push(t, b, k, klen, sl_node_val(n)))
        return MS_E_NOMEM;
    sl_remove(be->lists[b], k, klen, NULL);
    be->mods[b]++;
    return MS_OK;
}

static ms_err sl_cursor_open(struct be_txn *t, enum be_bucket b, struct be_cursor **out)
{
    if ((unsigned)b >= BE_BUCKET_COUNT_)
        return MS_E_INTERNAL;
    struct be_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return MS_E_NOMEM;
    c->hdr.ops = &sl_ops;
    c->be = t->be;
    c->bucket = b;
    *out = c;
    return MS_OK;
}

static void sl_cursor_close(struct be_cursor *c)
{
    free(c->key);
    free(c);
}

/* Remember n as the cursor position and return its key/value. */
static ms_err cursor_at(struct be_cursor *c, struct sl_node *n, struct be_val *key,
                        struct be_val *val)
{
    c->node = n;
    if (!n)
        return MS_E_NOT_EXIST;
    size_t klen;
    const uint8_t *k = sl_node_key(n, &klen);
    if (klen > c->kcap) {
        uint8_t *nk = realloc(c->key, klen);
        if (!nk) {
            c->node = NULL;
            return MS_E_NOMEM;
        }
        c->key = nk;
        c->kcap = klen;
    }
    if (klen)
        memcpy(c->key, k, klen);
    c->klen = klen;
    c->mods = c->be->mods[c->bucket];
    struct blob *v = sl_node_val(n);
    if (key) {
        key->p = k;
        key->len = klen;
    }
    if (val) {
        val->p = v->data;
        val->len = v->len;
    }
    return MS_OK;
}

static ms_err sl_cursor_seek(struct be_cursor *c, const uint8_t *k, size_t klen, struct be_val *key,
                             struct be_val *val)
{
    return cursor_at(c, sl_seek_ge(c->be->lists[c->bucket], k, klen), key, val);
}

static ms_err sl_cursor_last(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    return cursor_at(c, sl_last(c->be->lists[c->bucket]), key, val);
}

static ms_err sl_cursor_next(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    if (!c->node)
        return MS_E_NOT_EXIST;
    struct sl *l = c->be->lists[c->bucket];
    struct sl_node *n;
    if (c->mods == c->be->mods[c->bucket]) {
        n = sl_next(c->node);
    } else {
        /* The bucket changed under us (our node may be gone): find the successor by key. */
        n = sl_seek_ge(l, c->key, c->klen);
        if (n) {
            size_t nl;
            const uint8_t *nk = sl_node_key(n, &nl);
            if (sl_keycmp(nk, nl, c->key, c->klen) == 0)
                n = sl_next(n);
        }
    }
    return cursor_at(c, n, key, val);
}

static ms_err sl_cursor_prev(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    if (!c->node)
        return MS_E_NOT_EXIST;
    return cursor_at(c, sl_seek_lt(c->be->lists[c->bucket], c->key, c->klen), key, val);
}

static void sl_stats(struct be *base, struct be_stats *out)
{
    struct be_sl *be = (struct be_sl *)base;
    size_t mem = be->blob_bytes;
    for (int i = 0; i < BE_BUCKET_COUNT_; i++)
        mem += sl_mem(be->lists[i]);
    out->size_bytes = mem;
    out->in_use_bytes = mem;
}

static ms_err sl_sync(struct be *base)
{
    (void)base;
    return MS_OK;
}

static void sl_close(struct be *base)
{
    struct be_sl *be = (struct be_sl *)base;
    for (int i = 0; i < BE_BUCKET_COUNT_; i++)
        sl_destroy(be->lists[i], free_blob_cb);
    free(be);
}

static const struct be_ops sl_ops = {
    .name = "memory",
    .txn_begin = sl_txn_begin,
    .txn_commit = sl_txn_commit,
    .txn_abort = sl_txn_abort,
    .get = sl_get,
    .put = sl_put,
    .del = sl_del,
    .cursor_open = sl_cursor_open,
    .cursor_close = sl_cursor_close,
    .cursor_seek = sl_cursor_seek,
    .cursor_last = sl_cursor_last,
    .cursor_next = sl_cursor_next,
    .cursor_prev = sl_cursor_prev,
    .stats = sl_stats,
    .sync = sl_sync,
    .close = sl_close,
};

struct be *be_skiplist_open(void)
{
    struct be_sl *be = calloc(1, sizeof(*be));
    if (!be)
        return NULL;
    be->base.ops = &sl_ops;
    for (int i = 0; i < BE_BUCKET_COUNT_; i++) {
        be->lists[i] = sl_create(0x5EED0000u + (uint64_t)i);
        if (!be->lists[i]) {
            sl_close(&be->base);
            return NULL;
        }
    }
    return &be->base;
}
