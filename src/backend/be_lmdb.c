/* be_lmdb.c - the LMDB backend: one named database per bucket in one environment.
 *
 * The only file that includes <lmdb.h>; LMDB return codes are mapped to ms_err here
 * (MDB_MAP_FULL -> MS_E_NO_SPACE). Commits use LMDB's default full sync; the server decides
 * how often to commit (DESIGN.md §3). Never opened with MDB_NOSYNC.
 */
#include "metastore/be.h"
#include "metastore/log.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct be_txn {
    struct be_txn_hdr hdr;
    struct be_lmdb *be;
    MDB_txn *txn;
    bool write;
};

struct be_cursor {
    struct be_txn_hdr hdr;
    MDB_cursor *cur;
};

struct be_lmdb {
    struct be base;
    MDB_env *env;
    MDB_dbi dbi[BE_BUCKET_COUNT_];
    char *path;         /* data file, for stats */
    uint64_t file_size; /* its size, read again after a commit (stats run per write request) */
    bool size_stale;
};

static const struct be_ops lmdb_ops;

static ms_err map_rc(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return MS_OK;
    case MDB_NOTFOUND:
        return MS_E_NOT_EXIST;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return MS_E_NO_SPACE;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return MS_E_DATA_CORRUPT;
    case ENOMEM:
        return MS_E_NOMEM;
    case ENOSPC:
        return MS_E_NO_SPACE;
    default:
        return rc > 0 ? MS_E_IO : MS_E_INTERNAL;
    }
}

static ms_err lm_txn_begin(struct be *base, struct be_txn *parent, bool write, struct be_txn **out)
{
    struct be_lmdb *be = (struct be_lmdb *)base;
    struct be_txn *t = calloc(1, sizeof(*t));
    if (!t)
        return MS_E_NOMEM;
    int rc = mdb_txn_begin(be->env, parent ? parent->txn : NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc) {
        free(t);
        return map_rc(rc);
    }
    t->hdr.ops = &lmdb_ops;
    t->be = be;
    t->write = write;
    *out = t;
    return MS_OK;
}

static ms_err lm_txn_commit(struct be_txn *t)
{
    if (t->write)
        t->be->size_stale = true; /* pages reach the file only at commit */
    int rc = mdb_txn_commit(t->txn);
    free(t);
    return map_rc(rc);
}

static void lm_txn_abort(struct be_txn *t)
{
    mdb_txn_abort(t->txn);
    free(t);
}

static ms_err lm_get(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                     struct be_val *out)
{
    if ((unsigned)b >= BE_BUCKET_COUNT_)
        return MS_E_INTERNAL;
    MDB_val key = {klen, (void *)(uintptr_t)k};
    MDB_val val;
    int rc = mdb_get(t->txn, t->be->dbi[b], &key, &val);
    if (rc)
        return map_rc(rc);
    out->p = val.mv_data;
    out->len = val.mv_size;
    return MS_OK;
}

static ms_err lm_put(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                     const uint8_t *v, size_t vlen)
{
    if ((unsigned)b >= BE_BUCKET_COUNT_ || !t->write)
        return MS_E_INTERNAL;
    MDB_val key = {klen, (void *)(uintptr_t)k};
    MDB_val val = {vlen, (void *)(uintptr_t)(v ? v : (const uint8_t *)"")};
    return map_rc(mdb_put(t->txn, t->be->dbi[b], &key, &val, 0));
}

static ms_err lm_del(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen)
{
    if ((unsigned)b >= BE_BUCKET_COUNT_ || !t->write)
        return MS_E_INTERNAL;
    MDB_val key = {klen, (void *)(uintptr_t)k};
    return map_rc(mdb_del(t->txn, t->be->dbi[b], &key, NULL));
}

static ms_err lm_cursor_open(struct be_txn *t, enum be_bucket b, struct be_cursor **out)
{
    if ((unsigned)b >= BE_BUCKET_COUNT_)
        return MS_E_INTERNAL;
    struct be_cursor *c = calloc(1, sizeof(*c));
    if (!c)
        return MS_E_NOMEM;
    int rc = mdb_cursor_open(t->txn, t->be->dbi[b], &c->cur);
    if (rc) {
        free(c);
        return map_rc(rc);
    }
    c->hdr.ops = &lmdb_ops;
    *out = c;
    return MS_OK;
}

static void lm_cursor_close(struct be_cursor *c)
{
    mdb_cursor_close(c->cur);
    free(c);
}

static ms_err cursor_get(struct be_cursor *c, MDB_val *k, MDB_cursor_op op, struct be_val *key,
                         struct be_val *val)
{
    MDB_val v;
    int rc = mdb_cursor_get(c->cur, k, &v, op);
    if (rc)
        return map_rc(rc);
    if (key) {
        key->p = k->mv_data;
        key->len = k->mv_size;
    }
    if (val) {
        val->p = v.mv_data;
        val->len = v.mv_size;
    }
    return MS_OK;
}

static ms_err lm_cursor_seek(struct be_cursor *c, const uint8_t *k, size_t klen, struct be_val *key,
                             struct be_val *val)
{
    MDB_val mk = {klen, (void *)(uintptr_t)k};
    if (!k || !klen)
        return cursor_get(c, &mk, MDB_FIRST, key, val);
    return cursor_get(c, &mk, MDB_SET_RANGE, key, val);
}

static ms_err lm_cursor_last(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    MDB_val mk = {0, NULL};
    return cursor_get(c, &mk, MDB_LAST, key, val);
}

static ms_err lm_cursor_next(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    MDB_val mk = {0, NULL};
    return cursor_get(c, &mk, MDB_NEXT, key, val);
}

static ms_err lm_cursor_prev(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    MDB_val mk = {0, NULL};
    return cursor_get(c, &mk, MDB_PREV, key, val);
}

static void lm_stats(struct be *base, struct be_stats *out)
{
    struct be_lmdb *be = (struct be_lmdb *)base;
    MDB_envinfo info;
    MDB_stat st;
    struct stat sb;
    memset(out, 0, sizeof(*out));
    if (mdb_env_info(be->env, &info) == 0 && mdb_env_stat(be->env, &st) == 0)
        out->in_use_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    if (be->size_stale && stat(be->path, &sb) == 0) {
        be->file_size = (uint64_t)sb.st_size;
        be->size_stale = false;
    }
    out->size_bytes = be->file_size;
    if (out->size_bytes < out->in_use_bytes)
        out->size_bytes = out->in_use_bytes;
}

static ms_err lm_sync(struct be *base)
{
    struct be_lmdb *be = (struct be_lmdb *)base;
    return map_rc(mdb_env_sync(be->env, 1));
}

static void lm_close(struct be *base)
{
    struct be_lmdb *be = (struct be_lmdb *)base;
    if (be->env)
        mdb_env_close(be->env);
    free(be->path);
    free(be);
}

static const struct be_ops lmdb_ops = {
    .name = "lmdb",
    .txn_begin = lm_txn_begin,
    .txn_commit = lm_txn_commit,
    .txn_abort = lm_txn_abort,
    .get = lm_get,
    .put = lm_put,
    .del = lm_del,
    .cursor_open = lm_cursor_open,
    .cursor_close = lm_cursor_close,
    .cursor_seek = lm_cursor_seek,
    .cursor_last = lm_cursor_last,
    .cursor_next = lm_cursor_next,
    .cursor_prev = lm_cursor_prev,
    .stats = lm_stats,
    .sync = lm_sync,
    .close = lm_close,
};

struct be *be_lmdb_open(const char *dir, uint64_t map_size, ms_err *err)
{
    struct be_lmdb *be = calloc(1, sizeof(*be));
    int rc;
    if (!be) {
        *err = MS_E_NOMEM;
        return NULL;
    }
    be->base.ops = &lmdb_ops;
    size_t plen = strlen(dir) + sizeof("/data.mdb");
    be->path = malloc(plen);
    if (!be->path) {
        *err = MS_E_NOMEM;
        goto out_free;
    }
    snprintf(be->path, plen, "%s/data.mdb", dir);
    be->size_stale = true;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("backend: cannot create %s: %s", dir, strerror(errno));
        *err = MS_E_IO;
        goto out_free;
    }
    if ((rc = mdb_env_create(&be->env)) != 0)
        goto out_rc;
    if ((rc = mdb_env_set_maxdbs(be->env, BE_BUCKET_COUNT_ + 4)) != 0)
        goto out_rc;
    if ((rc = mdb_env_set_mapsize(be->env, (size_t)map_size)) != 0)
        goto out_rc;
    /* MDB_NOTLS: transactions are not tied to threads (we have one). No MDB_NOSYNC. */
    if ((rc = mdb_env_open(be->env, dir, MDB_NOTLS, 0600)) != 0)
        goto out_rc;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(be->env, NULL, 0, &txn)) != 0)
        goto out_rc;
    for (int i = 0; i < BE_BUCKET_COUNT_; i++) {
        rc = mdb_dbi_open(txn, be_bucket_name((enum be_bucket)i), MDB_CREATE, &be->dbi[i]);
        if (rc) {
            mdb_txn_abort(txn);
            goto out_rc;
        }
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        goto out_rc;
    return &be->base;

out_rc:
    log_error("backend: lmdb open %s: %s", dir, mdb_strerror(rc));
    *err = map_rc(rc);
out_free:
    lm_close(&be->base);
    return NULL;
}
