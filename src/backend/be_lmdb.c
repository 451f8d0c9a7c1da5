/* be_lmdb.c - the LMDB backend: one named database per bucket in one environment.
 *
 * The only file that includes <lmdb.h>; LMDB return codes are mapped to ms_err here
 * (MDB_MAP_FULL -> MS_E_NO_SPACE). An error LMDB reports as an errno (a full disk, an I/O
 * error) is logged here with the file and the errno text, since ms_err keeps neither.
 * Commits sync their data pages but not their meta page (MDB_NOMETASYNC): a commit is durable
 * once the next one (or be_sync) returns. The server decides how often to commit (DESIGN.md
 * §3). Never opened with MDB_NOSYNC, but for a scratch environment (be_lmdb_open_scratch).
 */
#include "metastore/be.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/log.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

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
    bool syncs; /* commits fsync (all but a scratch environment) */
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

/* map_rc for a call that may reach the disk: an errno is logged with the data file, what was
 * being done and the free space left, because the caller only sees MS_E_IO or NO_SPACE. A full
 * disk shows as ENOSPC, or as EIO when LMDB's write stopped part-way. */
static ms_err disk_rc(const struct be_lmdb *be, const char *what, int rc)
{
    struct statvfs fs;
    if (rc > 0 && rc != ENOMEM) {
        unsigned long long avail =
            statvfs(be->path, &fs) == 0 ? (unsigned long long)fs.f_bavail * fs.f_frsize : 0;
        log_error("backend: %s failed on %s: %s (the file system has %llu bytes free)", what,
                  be->path, strerror(rc), avail);
    }
    return map_rc(rc);
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
        return disk_rc(be, "begin a transaction", rc);
    }
    t->hdr.ops = &lmdb_ops;
    t->be = be;
    t->write = write;
    *out = t;
    return MS_OK;
}

static ms_err lm_txn_commit(struct be_txn *t)
{
    struct be_lmdb *be = t->be;
    if (t->write)
        be->size_stale = true; /* pages reach the file only at commit */
    if (t->write && be->syncs)
        faultpt_slow_fsync(); /* the commit syncs its data pages */
    int rc = mdb_txn_commit(t->txn);
    free(t);
    return disk_rc(be, "commit", rc);
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
    return disk_rc(t->be, "put", mdb_put(t->txn, t->be->dbi[b], &key, &val, 0));
}

static ms_err lm_del(struct be_txn *t, enum be_bucket b, const uint8_t *k, size_t klen)
{
    if ((unsigned)b >= BE_BUCKET_COUNT_ || !t->write)
        return MS_E_INTERNAL;
    MDB_val key = {klen, (void *)(uintptr_t)k};
    return disk_rc(t->be, "delete", mdb_del(t->txn, t->be->dbi[b], &key, NULL));
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
    faultpt_slow_fsync();
    return disk_rc(be, "sync", mdb_env_sync(be->env, 1));
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

/* ---- the length check before LMDB maps the file ----
 *
 * LMDB maps data.mdb and reads pages through the map, so a file cut short (a copy that
 * stopped, a file system that lost its tail) kills the process with SIGBUS at the first page
 * past the end, with nothing logged. The file is checked first, read with pread only.
 *
 * The newest meta page records the last page number used (mm_last_pg) and the page size. A
 * sound file need not reach (last_pg + 1) * psize: pages freed in the transaction that
 * allocated them are never written, and stay on the free list until reused (then they are
 * written, with pwrite, which extends the file). So a file shorter than that is truncated
 * only if a page past its end is not on the free list; the free list is walked to tell.
 *
 * The layout is LMDB 0.9's on-disk format (mdb.c: MDB_page, MDB_meta, MDB_db, MDB_node) for
 * 64-bit builds; it is native-endian, as LMDB's own, and decoded here as little-endian. Anything
 * unexpected (another format, a 32-bit or big-endian build) is left to mdb_env_open, which
 * checks the meta pages itself.
 *
 * The free list names each page in 8 bytes and lives in the file's own pages, so it cannot
 * name more missing pages than an eighth of the file's size: a meta page that needs more (a
 * damaged mm_last_pg) is refused before anything is allocated for the walk. */

enum {
    LMF_PAGEHDR = 16,              /* sizeof the page header: pgno, pad, flags, lower, upper */
    LMF_PAGE_FLAGS = 10,           /* uint16 mp_flags */
    LMF_PAGE_LOWER = 12,           /* uint16 mp_lower: end of the node offsets */
    LMF_PAGE_OVPAGES = 12,         /* uint32 mp_pages of an overflow page */
    LMF_META = LMF_PAGEHDR,        /* the meta follows the page header */
    LMF_MAGIC = LMF_META + 0,      /* uint32 mm_magic */
    LMF_VERSION = LMF_META + 4,    /* uint32 mm_version */
    LMF_PSIZE = LMF_META + 24,     /* uint32 mm_dbs[FREE_DBI].md_pad */
    LMF_FREE_ROOT = LMF_META + 64, /* pgno mm_dbs[FREE_DBI].md_root */
    LMF_LAST_PG = LMF_META + 120,  /* pgno mm_last_pg */
    LMF_TXNID = LMF_META + 128,    /* txnid mm_txnid */
    LMF_META_END = LMF_META + 136,
    LMF_NODEHDR = 8, /* mn_lo, mn_hi, mn_flags, mn_ksize */
};
#define LMF_MAGIC_VALUE 0xBEEFC0DEu
#define LMF_P_BRANCH    0x01u
#define LMF_P_LEAF      0x02u
#define LMF_F_BIGDATA   0x01u /* node flag: the data is on overflow pages */
#define LMF_MAX_DEPTH   64
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ &&                        \
    UINTPTR_MAX == UINT64_MAX
#define LMF_LAYOUT_KNOWN 1 /* the host is the little-endian 64-bit layout decoded here */
#else
#define LMF_LAYOUT_KNOWN 0
#endif

static uint16_t ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint32_t ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t ld64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* The data file's pages [have, want) are past its end; free, one bit per page from have,
 * marks those on the free list. */
struct lmf_walk {
    int fd;
    uint32_t psize;
    uint64_t have;
    uint64_t want;
    uint8_t *page; /* LMF_MAX_DEPTH pages, one per level of the tree */
    uint8_t *free;
};

/* Read n pages from pgno into buf (n * psize bytes); false if any is past the end. */
static bool lmf_read(struct lmf_walk *w, uint64_t pgno, uint64_t n, uint8_t *buf)
{
    if (pgno >= w->have || n > w->have - pgno)
        return false;
    size_t len = (size_t)(n * w->psize);
    return pread(w->fd, buf, len, (off_t)(pgno * w->psize)) == (ssize_t)len;
}

/* Mark the page numbers of one free-list record (an MDB_IDL: a count, then the numbers). */
static void lmf_mark(struct lmf_walk *w, const uint8_t *idl, size_t len)
{
    if (len < 8)
        return;
    uint64_t n = ld64(idl);
    for (uint64_t i = 1; i <= n && (i + 1) * 8 <= len; i++) {
        uint64_t pg = ld64(idl + i * 8);
        if (pg >= w->have && pg < w->want)
            w->free[(pg - w->have) / 8] |= (uint8_t)(1u << (pg - w->have) % 8);
    }
}

/* Walk the free-list tree below pgno; false if it cannot be read. */
static bool lmf_walk(struct lmf_walk *w, uint64_t pgno, int depth)
{
    if (depth >= LMF_MAX_DEPTH)
        return false;
    uint8_t *p = w->page + (size_t)depth * w->psize;
    if (!lmf_read(w, pgno, 1, p))
        return false;
    uint16_t flags = ld16(p + LMF_PAGE_FLAGS), lower = ld16(p + LMF_PAGE_LOWER);
    if (lower < LMF_PAGEHDR || lower > w->psize)
        return false;
    for (size_t i = 0; i < (size_t)(lower - LMF_PAGEHDR) / 2; i++) {
        size_t off = ld16(p + LMF_PAGEHDR + 2 * i);
        if (off + LMF_NODEHDR > w->psize)
            return false;
        const uint8_t *node = p + off;
        uint64_t lo = ld16(node), hi = ld16(node + 2), nflags = ld16(node + 4);
        size_t data = off + LMF_NODEHDR + ld16(node + 6);
        if (flags & LMF_P_BRANCH) {
            if (!lmf_walk(w, lo | hi << 16 | nflags << 32, depth + 1))
                return false;
            continue;
        }
        if (!(flags & LMF_P_LEAF))
            return false;
        size_t len = (size_t)(lo | hi << 16);
        if (!(nflags & LMF_F_BIGDATA)) {
            if (data + len > w->psize)
                return false;
            lmf_mark(w, p + data, len);
            continue;
        }
        if (data + 8 > w->psize)
            return false;
        uint64_t ov = ld64(p + data);
        uint64_t pages = (LMF_PAGEHDR + (uint64_t)len + w->psize - 1) / w->psize;
        if (pages > w->have)
            return false;
        uint8_t *big = malloc((size_t)(pages * w->psize));
        bool ok = big && lmf_read(w, ov, pages, big);
        if (ok)
            lmf_mark(w, big + LMF_PAGEHDR, len);
        free(big);
        if (!ok)
            return false;
    }
    return true;
}

/* Refuse a data.mdb shorter than its meta page says, unless only free pages are missing. */
static ms_err check_length(const char *path)
{
    uint8_t meta[2][LMF_META_END];
    struct stat sb;
    ms_err e = MS_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MS_OK; /* a new environment, or an error mdb_env_open reports */
    if (!LMF_LAYOUT_KNOWN || fstat(fd, &sb) != 0 ||
        pread(fd, meta[0], sizeof(meta[0]), 0) != (ssize_t)sizeof(meta[0]) ||
        ld32(meta[0] + LMF_MAGIC) != LMF_MAGIC_VALUE || ld32(meta[0] + LMF_VERSION) != 1)
        goto out_close;
    uint32_t psize = ld32(meta[0] + LMF_PSIZE);
    if (psize < 512 || psize > 65536 || (psize & (psize - 1)) != 0)
        goto out_close;
    /* Transaction N writes meta page N % 2; the newer one is the database. */
    const uint8_t *m = meta[0];
    if (pread(fd, meta[1], sizeof(meta[1]), psize) == (ssize_t)sizeof(meta[1]) &&
        ld32(meta[1] + LMF_MAGIC) == LMF_MAGIC_VALUE &&
        ld64(meta[1] + LMF_TXNID) > ld64(meta[0] + LMF_TXNID))
        m = meta[1];
    uint64_t last = ld64(m + LMF_LAST_PG), size = (uint64_t)sb.st_size, have = size / psize;
    if (last < have)
        goto out_close; /* every page is in the file */
    if (last - have >= have * (psize / 8)) {
        log_error("backend: %s is damaged or truncated: it has %llu bytes but its meta page "
                  "says it uses %llu pages of %u bytes, more than its free list could account "
                  "for; restore it from a backup",
                  path, (unsigned long long)size, (unsigned long long)last + 1, psize);
        e = MS_E_DATA_CORRUPT;
        goto out_close;
    }
    uint64_t want = last + 1;
    struct lmf_walk w = {.fd = fd, .psize = psize, .have = have, .want = want};
    uint64_t root = ld64(m + LMF_FREE_ROOT);
    w.page = malloc((size_t)LMF_MAX_DEPTH * psize);
    w.free = calloc((size_t)((want - have + 7) / 8), 1);
    if (!w.page || !w.free) {
        e = MS_E_NOMEM;
        goto out_free;
    }
    bool sound = root == UINT64_MAX || lmf_walk(&w, root, 0); /* ~0: no free list */
    for (uint64_t i = 0; sound && i < want - have; i++)
        sound = w.free[i / 8] >> i % 8 & 1u;
    if (!sound) {
        log_error("backend: %s is truncated: it has %llu bytes but its meta page needs %llu "
                  "(%llu pages of %u bytes); restore it from a backup",
                  path, (unsigned long long)size, (unsigned long long)(want * psize),
                  (unsigned long long)want, psize);
        e = MS_E_DATA_CORRUPT;
    }
out_free:
    free(w.page);
    free(w.free);
out_close:
    close(fd);
    return e;
}

static struct be *open_env(const char *dir, uint64_t map_size, unsigned flags, ms_err *err)
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
    be->syncs = !(flags & MDB_NOSYNC);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        log_error("backend: cannot create %s: %s", dir, strerror(errno));
        *err = MS_E_IO;
        goto out_free;
    }
    if ((*err = check_length(be->path)) != MS_OK)
        goto out_free;
    if ((rc = mdb_env_create(&be->env)) != 0)
        goto out_rc;
    if ((rc = mdb_env_set_maxdbs(be->env, BE_BUCKET_COUNT_ + 4)) != 0)
        goto out_rc;
    if ((rc = mdb_env_set_mapsize(be->env, (size_t)map_size)) != 0)
        goto out_rc;
    /* MDB_NOTLS: transactions are not tied to threads (we have one). */
    if ((rc = mdb_env_open(be->env, dir, MDB_NOTLS | flags, 0600)) != 0)
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

struct be *be_lmdb_open(const char *dir, uint64_t map_size, ms_err *err)
{
    /* MDB_NOMETASYNC: a commit syncs its data pages, then writes its meta page unsynced (the
     * next commit's sync or be_sync takes it). LMDB keeps its integrity; a crash may undo the
     * last commit, which the server's WAL applies again (RAFT.md §3.4). Never MDB_NOSYNC. */
    return open_env(dir, map_size, MDB_NOMETASYNC, err);
}

struct be *be_lmdb_open_scratch(const char *dir, uint64_t map_size, ms_err *err)
{
    return open_env(dir, map_size, MDB_NOSYNC, err);
}
