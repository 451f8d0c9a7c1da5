/* be.h - the storage backend contract: ordered byte-key buckets inside transactions.
 *
 * Two implementations pass the same suite (tests/unit/test_be.c): be_skiplist (memory) and
 * be_lmdb. The server is single-threaded, so at most one write transaction exists at a time;
 * it may be long-lived (spanning loop turns) and serves reads too: a write transaction sees
 * its own writes. Nested write transactions (parent != NULL) let one applied entry be rolled
 * back without losing the rest of the batch.
 *
 * Lifetimes (as LMDB's MDB_val, lmdb.h 278): bytes returned by get and cursors are BORROWED
 * and stay valid until the next update of the same transaction or its end, whichever comes
 * first. Copy them to keep them. Cursors must be closed before their transaction ends.
 * Deleting the record under a cursor is allowed; the next cursor_next returns its successor.
 *
 * Isolation: a read transaction begun while a write transaction is open may or may not see
 * the uncommitted writes (memory: yes; LMDB: no). The server reads through its write txn.
 *
 * Errors: MS_E_NOT_EXIST (no such key / cursor at end), MS_E_NO_SPACE (the store is full),
 * MS_E_NOMEM, MS_E_IO, MS_E_DATA_CORRUPT.
 */
#ifndef METASTORE_BE_H
#define METASTORE_BE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/err.h"

/* The fixed set of buckets (etcd's schema names in comments). */
enum be_bucket {
    BE_BUCKET_KEY = 0,    /* "key": revision -> KeyValue record */
    BE_BUCKET_META,       /* "meta": consistent index, compaction state */
    BE_BUCKET_LEASE,      /* "lease" */
    BE_BUCKET_AUTH,       /* "auth" */
    BE_BUCKET_AUTH_USERS, /* "authUsers" */
    BE_BUCKET_AUTH_ROLES, /* "authRoles" */
    BE_BUCKET_MEMBERS,    /* "members" */
    BE_BUCKET_MEMBERS_RM, /* "members_removed" */
    BE_BUCKET_ALARM,      /* "alarm" */
    BE_BUCKET_COUNT_
};

/* Name of a bucket (etcd's spelling), static string. */
const char *be_bucket_name(enum be_bucket b);

struct be_val {
    const uint8_t *p;
    size_t len;
};

struct be;
struct be_txn;
struct be_cursor;

struct be_stats {
    uint64_t size_bytes;   /* file or heap size (etcd dbSize) */
    uint64_t in_use_bytes; /* bytes holding live data (etcd dbSizeInUse) */
};

struct be_ops {
    const char *name;
    /* Begin a transaction. parent: NULL, or the open write txn for a nested one. */
    ms_err (*txn_begin)(struct be *be, struct be_txn *parent, bool write, struct be_txn **out);
    /* Commit (a nested txn folds into its parent). Frees the txn even on error. */
    ms_err (*txn_commit)(struct be_txn *t);
    /* Undo the txn's writes and free it. */
    void (*txn_abort)(struct be_txn *t);
    ms_err (*get)(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                  struct be_val *out);
    ms_err (*put)(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                  const uint8_t *v, size_t vlen);
    /* Delete k; MS_E_NOT_EXIST if absent. */
    ms_err (*del)(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen);
    ms_err (*cursor_open)(struct be_txn *t, enum be_bucket b, struct be_cursor **out);
    void (*cursor_close)(struct be_cursor *c);
    /* Position at the first key >= k (k NULL: the first key). */
    ms_err (*cursor_seek)(struct be_cursor *c, const uint8_t *k, size_t klen, struct be_val *key,
                          struct be_val *val);
    /* Position at the last key. */
    ms_err (*cursor_last)(struct be_cursor *c, struct be_val *key, struct be_val *val);
    ms_err (*cursor_next)(struct be_cursor *c, struct be_val *key, struct be_val *val);
    ms_err (*cursor_prev)(struct be_cursor *c, struct be_val *key, struct be_val *val);
    void (*stats)(struct be *be, struct be_stats *out);
    /* Make everything committed so far durable (no-op for memory). */
    ms_err (*sync)(struct be *be);
    void (*close)(struct be *be);
};

/* Every backend object starts with this header. */
struct be {
    const struct be_ops *ops;
};

/* In-memory backend. NULL on OOM. Close with be_close. */
struct be *be_skiplist_open(void);

/* LMDB backend in directory dir (created if missing); map_size is the hard size limit in
 * bytes. A commit is durable once the next commit or be_sync returns (MDB_NOMETASYNC: a crash
 * may undo the last commit, never break the store). On failure returns NULL and sets *err (logged
 * with the path): MS_E_DATA_CORRUPT also for a data.mdb shorter than its meta page says, which LMDB
 * would map and die on (SIGBUS). Later errors LMDB reports as an errno (a full disk) are logged
 * with the file and errno. */
struct be *be_lmdb_open(const char *dir, uint64_t map_size, ms_err *err);
/* The same for an environment that is thrown away if the process stops before it is used (a
 * snapshot being loaded): commits are not synced, be_sync makes everything durable at once. */
struct be *be_lmdb_open_scratch(const char *dir, uint64_t map_size, ms_err *err);

static inline ms_err be_txn_begin(struct be *be, struct be_txn *parent, bool write,
                                  struct be_txn **out)
{
    return be->ops->txn_begin(be, parent, write, out);
}

/* Every transaction and cursor begins with a pointer to its backend's ops. */
struct be_txn_hdr {
    const struct be_ops *ops;
};

static inline const struct be_ops *be_txn_ops_(struct be_txn *t)
{
    return ((struct be_txn_hdr *)(void *)t)->ops;
}

static inline const struct be_ops *be_cursor_ops_(struct be_cursor *c)
{
    return ((struct be_txn_hdr *)(void *)c)->ops;
}

static inline ms_err be_txn_commit(struct be_txn *t)
{
    return be_txn_ops_(t)->txn_commit(t);
}

static inline void be_txn_abort(struct be_txn *t)
{
    be_txn_ops_(t)->txn_abort(t);
}

static inline ms_err be_get(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                            struct be_val *out)
{
    return be_txn_ops_(t)->get(t, b, k, klen, out);
}

static inline ms_err be_put(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen,
                            const uint8_t *v, size_t vlen)
{
    return be_txn_ops_(t)->put(t, b, k, klen, v, vlen);
}

static inline ms_err be_del(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen)
{
    return be_txn_ops_(t)->del(t, b, k, klen);
}

static inline ms_err be_cursor_open(struct be_txn *t, enum be_bucket b, struct be_cursor **out)
{
    return be_txn_ops_(t)->cursor_open(t, b, out);
}

static inline void be_cursor_close(struct be_cursor *c)
{
    if (c)
        be_cursor_ops_(c)->cursor_close(c);
}

static inline ms_err be_cursor_seek(struct be_cursor *c, const uint8_t *k, size_t klen,
                                    struct be_val *key, struct be_val *val)
{
    return be_cursor_ops_(c)->cursor_seek(c, k, klen, key, val);
}

static inline ms_err be_cursor_last(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    return be_cursor_ops_(c)->cursor_last(c, key, val);
}

static inline ms_err be_cursor_next(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    return be_cursor_ops_(c)->cursor_next(c, key, val);
}

static inline ms_err be_cursor_prev(struct be_cursor *c, struct be_val *key, struct be_val *val)
{
    return be_cursor_ops_(c)->cursor_prev(c, key, val);
}

static inline void be_stats(struct be *be, struct be_stats *out)
{
    be->ops->stats(be, out);
}

static inline ms_err be_sync(struct be *be)
{
    return be->ops->sync(be);
}

/* A big-endian u64 stored under a NUL-terminated name (counters in "meta"). *found false and
 * MS_OK if absent; MS_E_DATA_CORRUPT if the stored value is not 8 bytes. */
ms_err be_get_u64(struct be_txn *t, enum be_bucket b, const char *name, uint64_t *out, bool *found);
ms_err be_put_u64(struct be_txn *t, enum be_bucket b, const char *name, uint64_t v);

/* Close the backend. No transaction may be open. Accepts NULL. */
static inline void be_close(struct be *be)
{
    if (be)
        be->ops->close(be);
}

#endif
