#define _GNU_SOURCE /* renameat2 */
/* srv_snap.c - copies of the whole backend, made in slices across loop turns: periodic
 * snapshots of the memory backend, backups for /v3/maintenance/snapshot, and LMDB defrag; and
 * the reverse, a snapshot from the leader loaded into a new backend in slices (install).
 *
 * A copy starts at the applied index A (revision R): every bucket but "key" is copied at once
 * (they are small), then the "key" bucket is copied up to revision R in slices. MVCC records
 * never change once written and physical compaction waits while a copy runs, so the result
 * is exactly the state at A even though writes continue meanwhile. A defrag then copies the
 * records written since (revisions above R) and the small buckets again, and swaps the new
 * LMDB environment in. Only one copy runs at a time; requests queue behind it.
 *
 * An install reads the leader's file a slice at a time into a new backend while the old one
 * serves on (nothing is applied meanwhile: the Ready that carries the snapshot waits for it);
 * once the file has verified to its end, the new backend takes the old one's place at once.
 *
 * Files: member/snap/ (snapshots, backups), member/db.defrag (a defrag's new environment),
 * member/db.install (an install's) and, where the file system cannot exchange two names
 * atomically, member/db.old for the moment of the swap. A crash at any point of a defrag or an
 * install leaves a state srv_defrag_recover puts right. */
#include "srv_int.h"

#include "metastore/clock.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/log.h"
#include "metastore/skiplist.h"
#include "metastore/snap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_SLICE    20000   /* key records per loop turn, at most */
#define COPY_SLICE_NS 1000000 /* ... and a turn's copying stops after 1 ms */
#define INSTALL_SLICE 2000    /* records of a snapshot from the leader per loop turn */
#define SNAP_KEEP     2       /* snapshot files kept */

struct srv_copy {
    enum copy_kind kind;
    uint64_t waiter; /* backup/defrag caller, 0 for the periodic snapshot */
    struct snap_header hdr;
    struct snap_writer *w; /* snapshot, backup */
    struct snap_reader *r; /* install: the snapshot being loaded */
    struct kv_restore *kr; /* install: the key index, built as the key bucket loads */
    struct be *dst;        /* defrag, install */
    struct be_txn *dtxn;
    char path[4400];
    uint8_t next[KV_REVKEY_LEN + 1]; /* first key bucket key still to copy */
    size_t next_len;
    uint8_t bound[KV_REVKEY_LEN + 1]; /* key bucket keys >= bound were written after start */
    size_t bound_len;
    uint64_t slices, slice_max_ns;                     /* install: how many, the longest */
    enum { COPYING, SYNCING_FILE, SYNCING_DIR } phase; /* snapshot: its syncs, off the loop */
    int dir_fd;                                        /* SYNCING_DIR */
};

static ms_err sink(struct srv_copy *c, enum be_bucket b, const uint8_t *k, size_t kl,
                   const uint8_t *v, size_t vl)
{
    if (c->w)
        return snap_writer_put(c->w, b, k, kl, v, vl);
    return be_put(c->dtxn, b, k, kl, v, vl);
}

/* Copy [from, to) of bucket b (NULL: open ends), at most max records and until the monotonic
 * clock passes deadline_ns (0: no deadline); *next is where it stopped (or *done). */
static ms_err copy_range(struct srv *s, struct srv_copy *c, enum be_bucket b, const uint8_t *from,
                         size_t from_len, const uint8_t *to, size_t to_len, size_t max,
                         uint64_t deadline_ns, bool *done)
{
    struct be_cursor *cur;
    struct be_val k, v;
    ms_err e = be_cursor_open(s->wtxn, b, &cur);
    if (e)
        return e;
    size_t n = 0;
    *done = false;
    for (e = be_cursor_seek(cur, from, from_len, &k, &v); e == MS_OK;
         e = be_cursor_next(cur, &k, &v)) {
        if (to && sl_keycmp(k.p, k.len, to, to_len) >= 0)
            break;
        if (n == max || (deadline_ns && n && n % 64 == 0 && clock_now_ns() >= deadline_ns)) {
            /* Resume here next turn (keys in "key" are at most 18 bytes). */
            if (k.len <= sizeof(c->next)) {
                memcpy(c->next, k.p, k.len);
                c->next_len = k.len;
            }
            be_cursor_close(cur);
            return MS_OK;
        }
        if ((e = sink(c, b, k.p, k.len, v.p, v.len)) != MS_OK)
            break;
        n++;
    }
    be_cursor_close(cur);
    if (e == MS_OK || e == MS_E_NOT_EXIST) {
        *done = true;
        return MS_OK;
    }
    return e;
}

static ms_err copy_small_buckets(struct srv *s, struct srv_copy *c)
{
    for (int b = 0; b < BE_BUCKET_COUNT_; b++) {
        if (b == BE_BUCKET_KEY)
            continue;
        bool done;
        ms_err e = copy_range(s, c, (enum be_bucket)b, NULL, 0, NULL, 0, SIZE_MAX, 0, &done);
        if (e)
            return e;
    }
    return MS_OK;
}

void srv_snap_dir(const struct srv *s, char *out, size_t cap)
{
    snprintf(out, cap, "%s/member/snap", s->cfg.data_dir);
}

static void arm(struct srv *s)
{
    struct timeval now = {0, 0};
    evtimer_add(s->copies.copy_ev, &now);
}

/* Test hook: METASTORE_CRASH_AT=<point> ends the process at that point as a crash would
 * (no cleanup, nothing flushed), so the tests can check what a restart recovers. */
static bool crash_armed(const char *point)
{
    const char *at = getenv("METASTORE_CRASH_AT");
    return at && strcmp(at, point) == 0;
}

static void crash_point(const char *point)
{
    if (crash_armed(point))
        _exit(86);
}

static void member_path(const struct srv *s, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/member%s%s", s->cfg.data_dir, *name ? "/" : "", name);
}

static ms_err rmtree_lmdb(const char *dir)
{
    char p[4500];
    snprintf(p, sizeof(p), "%.4400s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%.4400s/lock.mdb", dir);
    unlink(p);
    return rmdir(dir) == 0 || errno == ENOENT ? MS_OK : MS_E_IO;
}

/* The memory backend has applied --snapshot-count entries since its last snapshot. */
static bool snapshot_due(const struct srv *s)
{
    return s->cfg.backend == CFG_BACKEND_MEMORY &&
           srv_applied(s) - s->copies.last_snap_index >= s->cfg.snapshot_count;
}

static void copy_free(struct srv_copy *c)
{
    if (c->phase == SYNCING_DIR)
        close(c->dir_fd);
    snap_writer_abort(c->w);
    snap_reader_close(c->r);
    kv_restore_abort(c->kr);
    if (c->dtxn)
        be_txn_abort(c->dtxn);
    be_close(c->dst);
    free(c);
}

static ms_err copy_start(struct srv *s, const struct srv_op *op, struct srv_copy **out)
{
    struct srv_copy *c = calloc(1, sizeof(*c));
    ms_err e = MS_OK;
    if (!c)
        return MS_E_NOMEM;
    c->kind = op->kind;
    c->waiter = op->waiter;
    c->hdr = (struct snap_header){
        .index = srv_applied(s), .term = srv_applied_term(s), .revision = kv_current_rev(s->kv)};
    kv_rev_encode((struct kv_rev){kv_current_rev(s->kv) + 1, 0}, false, c->bound, &c->bound_len);
    char dir[4200];
    srv_snap_dir(s, dir, sizeof(dir));
    if (c->kind == COPY_DEFRAG) {
        member_path(s, "db.defrag", c->path, sizeof(c->path));
        rmtree_lmdb(c->path); /* leftovers of an interrupted defrag */
        c->dst = be_lmdb_open(c->path, srv_lmdb_map_size(s), &e);
        if (!c->dst || (e = be_txn_begin(c->dst, NULL, true, &c->dtxn)) != MS_OK)
            goto out_free;
    } else {
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            e = MS_E_IO;
            goto out_free;
        }
        if (c->kind == COPY_SNAPSHOT)
            snprintf(c->path, sizeof(c->path), "%.4200s/snap-%016llx.snap", dir,
                     (unsigned long long)c->hdr.index);
        else
            snprintf(c->path, sizeof(c->path), "%.4200s/backup-%016llx.snap", dir,
                     (unsigned long long)c->waiter);
        c->w = snap_writer_create(c->path, &c->hdr, &e);
        if (!c->w)
            goto out_free;
    }
    if ((e = copy_small_buckets(s, c)) != MS_OK)
        goto out_free;
    *out = c;
    return MS_OK;

out_free:
    copy_free(c);
    return e;
}

bool srv_snap_trash_step(struct srv *s, uint64_t bytes)
{
    return s->copies.trash && fs_trash_step(s->copies.trash, bytes);
}

/* Keep the newest SNAP_KEEP snapshot files; the older ones leave their names at once
 * (*.snap.del) and are removed in steps. */
static void prune_snapshots(struct srv *s)
{
    char dir[4200];
    srv_snap_dir(s, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (!d)
        return;
    char names[64][32];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 64)
        if (strncmp(de->d_name, "snap-", 5) == 0 && strlen(de->d_name) == 26)
            snprintf(names[n++], sizeof(names[0]), "%.30s", de->d_name);
    closedir(d);
    /* Names sort by index (fixed-width hex). */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char t[32];
                memcpy(t, names[i], sizeof(t));
                memcpy(names[i], names[j], sizeof(t));
                memcpy(names[j], t, sizeof(t));
            }
    for (size_t i = 0; i + SNAP_KEEP < n; i++) {
        char path[4300], del[4310];
        snprintf(path, sizeof(path), "%.4200s/%.32s", dir, names[i]);
        snprintf(del, sizeof(del), "%s.del", path);
        if (rename(path, del) != 0)
            unlink(path); /* at once, as before */
        else if (!s->copies.trash || !fs_trash_add(s->copies.trash, del))
            unlink(del);
    }
}

static const char *kind_name(enum copy_kind k)
{
    switch (k) {
    case COPY_SNAPSHOT:
        return "snapshot";
    case COPY_BACKUP:
        return "backup";
    case COPY_DEFRAG:
        return "defrag";
    case COPY_INSTALL:
        break;
    }
    return "snapshot install";
}

/* Put the complete, synced environment in dir in place of member/db. Both hold the same
 * state (the server committed it to the old one just before), so a crash at any step loses
 * nothing: srv_defrag_recover keeps whichever whole environment sits at, or next to, db. */
static void swap_in(const struct srv *s, const char *dir, const char *what)
{
    char member[4200], db[4300], old[4300];
    member_path(s, "", member, sizeof(member));
    member_path(s, "db", db, sizeof(db));
    member_path(s, "db.old", old, sizeof(old));
    /* The name data.mdb inside dir must be durable before dir takes db's place. */
    if (fs_sync_dir(dir) != MS_OK)
        ms_fatal("%s: cannot sync %s: %s", what, dir, strerror(errno));
    crash_point("defrag_before_swap");
    /* One atomic exchange: db is the new environment, dir the old one. The test hook for the
     * fallback's middle state takes the fallback. */
    int rc = crash_armed("defrag_between_renames")
                 ? (errno = EINVAL, -1)
                 : renameat2(AT_FDCWD, dir, AT_FDCWD, db, RENAME_EXCHANGE);
    if (rc == 0) {
        if (fs_sync_dir(member) != MS_OK)
            ms_fatal("%s: cannot sync %s: %s", what, member, strerror(errno));
        crash_point("defrag_after_swap");
        rmtree_lmdb(dir);
        return;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        ms_fatal("%s: cannot swap %s and %s: %s", what, dir, db, strerror(errno));
    /* No exchange on this file system: two renames, each made durable before the next. */
    rmtree_lmdb(old);
    if (rename(db, old) != 0 || fs_sync_dir(member) != MS_OK)
        ms_fatal("%s: cannot move %s to %s: %s", what, db, old, strerror(errno));
    crash_point("defrag_between_renames");
    if (rename(dir, db) != 0 || fs_sync_dir(member) != MS_OK)
        ms_fatal("%s: cannot move %s to %s: %s", what, dir, db, strerror(errno));
    rmtree_lmdb(old);
}

/* The new environment c->dst (complete and synced) in place of the old one, reopened at the
 * usual path as the store. */
static void swap_env(struct srv *s, struct srv_copy *c)
{
    const char *what = kind_name(c->kind);
    be_txn_abort(s->wtxn);
    s->wtxn = NULL;
    be_close(s->be);
    s->be = NULL;
    be_close(c->dst);
    c->dst = NULL;
    char db[4300];
    member_path(s, "db", db, sizeof(db));
    swap_in(s, c->path, what);
    ms_err e;
    s->be = be_lmdb_open(db, srv_lmdb_map_size(s), &e);
    if (!s->be)
        ms_fatal("%s: cannot reopen %s: %s", what, db, ms_err_name(e));
    if ((e = be_txn_begin(s->be, NULL, true, &s->wtxn)) != MS_OK)
        ms_fatal("%s: cannot begin a transaction: %s", what, ms_err_name(e));
}

/* Defrag's last step: what changed since the start, then swap the environments. */
static ms_err defrag_finish(struct srv *s, struct srv_copy *c)
{
    bool done;
    ms_err e = copy_range(s, c, BE_BUCKET_KEY, c->bound, c->bound_len, NULL, 0, SIZE_MAX, 0, &done);
    /* The small buckets again, from scratch. */
    for (int b = 0; !e && b < BE_BUCKET_COUNT_; b++) {
        if (b == BE_BUCKET_KEY)
            continue;
        struct be_cursor *cur;
        struct be_val k, v;
        if ((e = be_cursor_open(c->dtxn, (enum be_bucket)b, &cur)) != MS_OK)
            break;
        uint8_t kbuf[512];
        while ((e = be_cursor_seek(cur, NULL, 0, &k, &v)) == MS_OK && k.len <= sizeof(kbuf)) {
            memcpy(kbuf, k.p, k.len);
            if ((e = be_del(c->dtxn, (enum be_bucket)b, kbuf, k.len)) != MS_OK)
                break;
        }
        be_cursor_close(cur);
        if (e == MS_E_NOT_EXIST)
            e = MS_OK;
    }
    if (!e)
        e = copy_small_buckets(s, c);
    /* The live store first, durable at the index the copy holds: a crash once the copy is
     * durable then finds db.defrag no newer than db, as recovery expects (the applies of the
     * last 100 ms are in the copy, read through the write txn, and were not yet in db). */
    if (!e) {
        srv_commit(s);
        e = be_sync(s->be);
    }
    if (!e) {
        e = be_txn_commit(c->dtxn);
        c->dtxn = NULL;
    }
    if (!e)
        e = be_sync(c->dst);
    if (e)
        return e;
    crash_point("defrag_copy_synced");
    swap_env(s, c);
    return MS_OK;
}

static void complete_op(struct srv *s, struct srv_copy *c, ms_err e)
{
    struct srv_op_waiter *w = NULL;
    for (size_t i = 0; i < s->copies.n_waiting; i++)
        if (s->copies.waiting[i].waiter == c->waiter)
            w = &s->copies.waiting[i];
    int fd = -1;
    uint64_t size = 0;
    if (c->kind == COPY_BACKUP && c->path[0]) {
        /* The file goes from the directory at once; the caller reads it through fd. */
        struct stat sb = {0};
        if (w && !e && ((fd = open(c->path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0))
            e = MS_E_IO;
        size = fd >= 0 && !e ? (uint64_t)sb.st_size : 0;
        unlink(c->path);
        if (e && fd >= 0) {
            close(fd);
            fd = -1;
        }
    }
    if (!w)
        return; /* cancelled */
    struct srv_op_waiter we = *w;
    *w = s->copies.waiting[--s->copies.n_waiting];
    if (c->kind == COPY_BACKUP) {
        we.backup_done(we.ctx, e, fd, size);
    } else {
        struct srv_result res = {.type = SRV_REQ_DEFRAG, .revision = kv_current_rev(s->kv)};
        we.done(we.ctx, e, e ? NULL : &res);
    }
}

/* The snapshot file is durable under its name: the WAL may now record it. */
static void snapshot_saved(struct srv *s, struct srv_copy *c)
{
    /* The older files go first, into the trash that the hook's release of WAL segments below
     * the snapshot starts emptying. */
    prune_snapshots(s);
    s->hooks.snapshot_saved(s, c->hdr.index, c->hdr.term);
    s->copies.last_snap_index = c->hdr.index;
    log_info("snapshot at index %llu (revision %lld) saved", (unsigned long long)c->hdr.index,
             (long long)c->hdr.revision);
}

/* The end of a snapshot finished off the loop (or failed on the way). */
static void snapshot_end(struct srv *s, struct srv_copy *c, ms_err e)
{
    if (e)
        log_error("snapshot failed: %s", ms_err_name(e));
    else
        snapshot_saved(s, c);
    s->copies.copy = NULL;
    complete_op(s, c, e);
    copy_free(c);
}

/* A snapshot's fdatasync and its directory's fsync go through Linux AIO: on a busy disk each
 * took 12-73 ms in the loop. Once the file's is submitted, on_copy_synced goes on; if it cannot
 * be, the rest is done here, in place. */
static void finish_snapshot(struct srv *s, struct srv_copy *c)
{
    int fd;
    ms_err e = snap_writer_seal(c->w, &fd);
    if (!e && fs_async_sync_start(s->copies.sync, fd, true) == 0) {
        c->phase = SYNCING_FILE;
        return;
    }
    if (!e)
        e = snap_writer_persist(c->w);
    snapshot_end(s, c, e);
}

static void finish(struct srv *s, struct srv_copy *c)
{
    ms_err e = MS_OK;
    switch (c->kind) {
    case COPY_SNAPSHOT: {
        e = snap_writer_finish(c->w);
        c->w = NULL;
        if (!e)
            snapshot_saved(s, c);
        break;
    }
    case COPY_BACKUP:
        e = snap_writer_finish(c->w);
        c->w = NULL;
        break;
    case COPY_DEFRAG:
        e = defrag_finish(s, c);
        break;
    case COPY_INSTALL:
        break; /* install_slice finishes it */
    }
    if (e)
        log_error("%s failed: %s", kind_name(c->kind), ms_err_name(e));
    complete_op(s, c, e);
    copy_free(c);
}

/* Start the next queued operation, or a periodic snapshot that is due. */
static void start_next(struct srv *s)
{
    while (!s->copies.copy && s->copies.n_queued) {
        struct srv_op op = s->copies.queued[0];
        memmove(s->copies.queued, s->copies.queued + 1, --s->copies.n_queued * sizeof(op));
        if (op.kind == COPY_DEFRAG && s->cfg.backend == CFG_BACKEND_MEMORY) {
            /* Nothing to reclaim: the skiplist frees memory as records go. */
            struct srv_copy none = {.kind = op.kind, .waiter = op.waiter};
            complete_op(s, &none, MS_OK);
            continue;
        }
        struct srv_copy *c;
        ms_err e = copy_start(s, &op, &c);
        if (e) {
            struct srv_copy fake = {.kind = op.kind, .waiter = op.waiter};
            complete_op(s, &fake, e);
            continue;
        }
        s->copies.copy = c;
    }
    if (!s->copies.copy && snapshot_due(s)) {
        struct srv_op op = {.kind = COPY_SNAPSHOT};
        if (copy_start(s, &op, &s->copies.copy) != MS_OK)
            log_error("cannot start a snapshot");
    }
    if (s->copies.copy && s->copies.copy->phase == COPYING)
        arm(s);
}

static void install_slice(struct srv *s, struct srv_copy *c);

static void on_copy(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    struct srv_copy *c = s->copies.copy;
    (void)fd;
    (void)what;
    if (!c) {
        start_next(s);
        return;
    }
    if (c->phase != COPYING)
        return; /* a snapshot's syncs are in flight: on_copy_synced goes on */
    if (c->kind == COPY_INSTALL) {
        install_slice(s, c);
        start_next(s);
        return;
    }
    bool done;
    const uint8_t *from = c->next_len ? c->next : NULL;
    ms_err e = copy_range(s, c, BE_BUCKET_KEY, from, c->next_len, c->bound, c->bound_len,
                          COPY_SLICE, clock_now_ns() + COPY_SLICE_NS, &done);
    if (!e && c->kind == COPY_DEFRAG)
        faultpt_hit("defrag"); /* a slice copied, the copy neither finished nor swapped in */
    if (e) {
        log_error("copy of the backend failed: %s", ms_err_name(e));
        complete_op(s, c, e);
        s->copies.copy = NULL;
        copy_free(c);
    } else if (done && c->kind == COPY_SNAPSHOT && s->copies.sync) {
        finish_snapshot(s, c);
    } else if (done) {
        s->copies.copy = NULL;
        finish(s, c);
    }
    start_next(s);
}

/* The snapshot's file, then its directory, is durable. */
static void on_copy_synced(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    struct srv_copy *c = s->copies.copy;
    int res;
    (void)fd;
    (void)what;
    fs_async_sync_clear(s->copies.sync);
    if (!fs_async_sync_reap(s->copies.sync, false, &res) || !c || c->phase == COPYING)
        return;
    ms_err e = MS_OK;
    char dir[4200];
    srv_snap_dir(s, dir, sizeof(dir));
    if (res < 0) {
        log_error("snapshot: cannot sync %s: %s", c->phase == SYNCING_FILE ? c->path : dir,
                  strerror(-res));
        e = MS_E_IO;
    } else if (c->phase == SYNCING_FILE && (e = snap_writer_publish(c->w)) == MS_OK) {
        c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->dir_fd >= 0 && fs_async_sync_start(s->copies.sync, c->dir_fd, false) == 0) {
            c->phase = SYNCING_DIR;
            return;
        }
        if (c->dir_fd >= 0)
            close(c->dir_fd);
        c->phase = COPYING; /* no descriptor left to close */
        if ((e = fs_sync_dir(dir)) != MS_OK)
            log_error("snapshot: cannot sync %s: %s", dir, strerror(errno));
    }
    snapshot_end(s, c, e);
    start_next(s);
}

void srv_copy_poll(struct srv *s)
{
    if (!s->copies.copy && (s->copies.n_queued || snapshot_due(s)))
        arm(s);
}

bool srv_copy_running(const struct srv *s)
{
    return s->copies.copy != NULL;
}

static ms_err enqueue(struct srv *s, struct srv_op op, uint64_t *id)
{
    if (s->copies.n_queued == SRV_MAX_OPS || s->copies.n_waiting == SRV_MAX_OPS)
        return MS_E_TOO_MANY_REQUESTS;
    op.waiter = ++s->next_id;
    s->copies.queued[s->copies.n_queued++] = op;
    s->copies.waiting[s->copies.n_waiting++] = (struct srv_op_waiter){
        .waiter = op.waiter, .backup_done = op.backup_done, .done = op.done, .ctx = op.ctx};
    *id = op.waiter;
    arm(s);
    return MS_OK;
}

ms_err srv_backup(struct srv *s, srv_backup_fn done, void *ctx, uint64_t *id)
{
    return enqueue(s, (struct srv_op){.kind = COPY_BACKUP, .backup_done = done, .ctx = ctx}, id);
}

ms_err srv_defrag(struct srv *s, srv_done_fn done, void *ctx, uint64_t *id)
{
    return enqueue(s, (struct srv_op){.kind = COPY_DEFRAG, .done = done, .ctx = ctx}, id);
}

bool srv_cancel_op(struct srv *s, uint64_t id)
{
    for (size_t i = 0; i < s->copies.n_waiting; i++) {
        if (s->copies.waiting[i].waiter == id) {
            s->copies.waiting[i] = s->copies.waiting[--s->copies.n_waiting];
            return true;
        }
    }
    return false;
}

void srv_snap_fini(struct srv *s)
{
    struct srv_copy *c = s->copies.copy;
    if (s->copies.sync_ev)
        event_free(s->copies.sync_ev);
    s->copies.sync_ev = NULL;
    fs_async_sync_destroy(s->copies.sync); /* waits for a sync in flight */
    s->copies.sync = NULL;
    fs_trash_destroy(s->copies.trash); /* the rest goes at the next start (srv_snap_init) */
    s->copies.trash = NULL;
    if (c && c->kind == COPY_INSTALL)
        unlink(c->path); /* a snapshot from the leader, half loaded: it is sent again */
    if (c)
        copy_free(c);
    s->copies.copy = NULL;
    if (s->copies.copy_ev)
        event_free(s->copies.copy_ev);
    s->copies.copy_ev = NULL;
}

/* The applied index of the LMDB environment in dir (0 if it has none). *readable is false
 * when LMDB finds it damaged; other errors (memory, I/O) are returned. */
static ms_err env_index(const struct srv *s, const char *dir, uint64_t *index, bool *readable)
{
    ms_err e;
    struct be_txn *t;
    bool found;
    *index = 0;
    *readable = false;
    struct be *be = be_lmdb_open(dir, srv_lmdb_map_size(s), &e);
    if (!be)
        return e == MS_E_DATA_CORRUPT ? MS_OK : e;
    if ((e = be_txn_begin(be, NULL, false, &t)) == MS_OK) {
        e = be_get_u64(t, BE_BUCKET_META, SRV_META_CONSISTENT_INDEX, index, &found);
        be_txn_abort(t);
    }
    be_close(be);
    if (e == MS_E_DATA_CORRUPT) {
        *index = 0;
        return MS_OK;
    }
    *readable = e == MS_OK;
    return e;
}

/* Rename from to to inside member/ and make it durable; logs and returns MS_E_IO on failure.
 * how says what the move is ("to" or "back to") in that log line. */
static ms_err move_synced(const char *member, const char *from, const char *to, const char *how)
{
    if (rename(from, to) != 0 || fs_sync_dir(member) != MS_OK) {
        log_error("cannot move %s %s %s: %s", from, how, to, strerror(errno));
        return MS_E_IO;
    }
    return MS_OK;
}

/* Move the environment at dir to member/db.discarded, where it is kept for the operator. One
 * set aside before is replaced (each start keeps the last one). */
static ms_err set_aside(const struct srv *s, const char *dir)
{
    char member[4200], discarded[4300];
    struct stat sb;
    member_path(s, "", member, sizeof(member));
    member_path(s, "db.discarded", discarded, sizeof(discarded));
    if (stat(discarded, &sb) == 0) {
        log_warn("replacing %s, set aside by an earlier start, with %s", discarded, dir);
        if (rmtree_lmdb(discarded) != MS_OK) {
            log_error("cannot remove %s to set %s aside: %s", discarded, dir, strerror(errno));
            return MS_E_IO;
        }
    }
    if (move_synced(member, dir, discarded, "to") != MS_OK)
        return MS_E_IO;
    log_warn("moved %s aside to %s", dir, discarded);
    return MS_OK;
}

/* db and db.old are both there: keep the one with the higher applied index. This version's
 * fallback leaves two copies of one state (a tie: db stays). An earlier version that swapped
 * without syncing or recovering could leave db.old holding the store and, once restarted, a
 * fresh empty db beside it: db.old wins, and db is set aside rather than removed. *index is
 * the applied index of what stays at db. */
static ms_err settle_old(const struct srv *s, uint64_t *index)
{
    char member[4200], db[4300], old[4300];
    uint64_t i_db, i_old;
    bool r_db, r_old;
    ms_err e;
    member_path(s, "", member, sizeof(member));
    member_path(s, "db", db, sizeof(db));
    member_path(s, "db.old", old, sizeof(old));
    if ((e = env_index(s, db, &i_db, &r_db)) != MS_OK ||
        (e = env_index(s, old, &i_old, &r_old)) != MS_OK) {
        log_error("cannot read %s and %s to tell which one to keep: %s", db, old, ms_err_name(e));
        return e;
    }
    if (!r_db && !r_old) {
        log_error("neither %s nor %s, left by an interrupted defragment, can be read: restore "
                  "the store from a backup",
                  db, old);
        return MS_E_DATA_CORRUPT;
    }
    if (r_db && (!r_old || i_db >= i_old)) {
        *index = i_db;
        if (!r_old)
            return set_aside(s, old);
        if (rmtree_lmdb(old) != MS_OK)
            log_warn("cannot remove %s left by a defragment: %s", old, strerror(errno));
        else
            log_info("removed %s (applied index %llu) left by a defragment; %s (index %llu) is "
                     "kept",
                     old, (unsigned long long)i_old, db, (unsigned long long)i_db);
        return MS_OK;
    }
    if (r_db)
        log_warn("%s holds applied index %llu but %s only %llu: an interrupted defragment left "
                 "the store in %s; it goes back to %s",
                 old, (unsigned long long)i_old, db, (unsigned long long)i_db, old, db);
    else
        log_warn("%s cannot be read and %s holds applied index %llu: an interrupted defragment "
                 "left the store in %s; it goes back to %s",
                 db, old, (unsigned long long)i_old, old, db);
    if ((e = set_aside(s, db)) != MS_OK || (e = move_synced(member, old, db, "back to")) != MS_OK)
        return e;
    *index = i_old;
    return MS_OK;
}

/* What a defrag interrupted by a crash leaves in member/, and what is kept:
 *   db, db.defrag          before the swap (a partial or unused copy) or after the exchange
 *                          (the old environment): db is whole either way, db.defrag goes
 *   db.old, db.defrag      the fallback stopped between its renames: db.old, the store as it
 *                          was, goes back to db; db.defrag goes
 *   db, db.old             the fallback stopped after its renames: both hold the same state,
 *                          db.old goes; where db.old holds the higher applied index (an
 *                          earlier version's crash, then a start on a fresh db), db is set
 *                          aside to db.discarded and db.old goes back to db (settle_old)
 * db.defrag is a copy of the store and never holds more: one whose applied index is above
 * db's is not one of these states, and neither is db.defrag without db or db.old. Both are
 * refused rather than lose the copy, or start empty. */
ms_err srv_defrag_recover(struct srv *s)
{
    char member[4200], db[4300], old[4300], tmp[4300];
    struct stat sb;
    uint64_t i_db = 0, i_tmp;
    bool known = false, r_tmp;
    ms_err e;
    member_path(s, "", member, sizeof(member));
    member_path(s, "db", db, sizeof(db));
    member_path(s, "db.old", old, sizeof(old));
    member_path(s, "db.defrag", tmp, sizeof(tmp));
    char install[4300];
    member_path(s, "db.install", install, sizeof(install));
    if (stat(install, &sb) == 0) {
        /* A snapshot from the leader, loaded short of its swap (the leader sends it again), or
         * the old store the swap left there. */
        if (rmtree_lmdb(install) != MS_OK) {
            log_error("cannot remove %s left by a snapshot install: %s", install, strerror(errno));
            return MS_E_IO;
        }
        log_info("removed %s left by an interrupted snapshot install", install);
    }
    bool have_db = stat(db, &sb) == 0, have_old = stat(old, &sb) == 0;
    if (!have_db && have_old) {
        if (move_synced(member, old, db, "back to") != MS_OK)
            return MS_E_IO;
        log_warn("an interrupted defragment left the store in %s: moved back to %s", old, db);
        have_db = true;
    } else if (have_db && have_old) {
        if ((e = settle_old(s, &i_db)) != MS_OK)
            return e;
        known = true;
    }
    if (stat(tmp, &sb) != 0)
        return MS_OK;
    if (!have_db) {
        log_error("%s is missing but %s is there: not starting with an empty store", db, tmp);
        return MS_E_IO;
    }
    bool r_db = true;
    if ((!known && (e = env_index(s, db, &i_db, &r_db)) != MS_OK) ||
        (e = env_index(s, tmp, &i_tmp, &r_tmp)) != MS_OK) {
        log_error("cannot read %s and %s to tell whether %s can go: %s", db, tmp, tmp,
                  ms_err_name(e));
        return e;
    }
    if (r_tmp && (!r_db || i_tmp > i_db)) {
        char what[64] = "cannot be read";
        if (r_db)
            snprintf(what, sizeof(what), "holds only %llu", (unsigned long long)i_db);
        log_error("%s, left by a defragment, holds applied index %llu and %s %s: not removing "
                  "it; move the one to keep to %s and remove the other",
                  tmp, (unsigned long long)i_tmp, db, what, db);
        return MS_E_DATA_CORRUPT;
    }
    if (rmtree_lmdb(tmp) != MS_OK)
        log_warn("cannot remove %s left by a defragment: %s", tmp, strerror(errno));
    else
        log_info("removed %s left by an interrupted defragment", tmp);
    return MS_OK;
}

/* ---- loading ---- */

static bool is_identity(enum be_bucket b, const uint8_t *k, size_t kl)
{
    return b == BE_BUCKET_META &&
           ((kl == strlen(SRV_META_MEMBER_ID) && memcmp(k, SRV_META_MEMBER_ID, kl) == 0) ||
            (kl == strlen(SRV_META_CLUSTER_ID) && memcmp(k, SRV_META_CLUSTER_ID, kl) == 0));
}

/* Every record but the member's identity: a snapshot may come from the leader, and the WAL
 * (memory backend) or the backend itself (LMDB install) keeps this member's own. */
static ms_err load_record(void *ctx, enum be_bucket b, const uint8_t *k, size_t kl,
                          const uint8_t *v, size_t vl)
{
    if (is_identity(b, k, kl))
        return MS_OK;
    return be_put(ctx, b, k, kl, v, vl);
}

/* ---- installing a snapshot from the leader ---- */

/* The member's identity, from the store it had into the new one. */
static ms_err copy_identity(struct srv *s, struct be_txn *dst)
{
    static const char *const keys[] = {SRV_META_MEMBER_ID, SRV_META_CLUSTER_ID};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        struct be_val v;
        ms_err e = be_get(s->wtxn, BE_BUCKET_META, (const uint8_t *)keys[i], strlen(keys[i]), &v);
        if (e == MS_E_NOT_EXIST)
            continue; /* the memory backend before its first snapshot: the WAL holds it */
        if (e || (e = be_put(dst, BE_BUCKET_META, (const uint8_t *)keys[i], strlen(keys[i]), v.p,
                             v.len)) != MS_OK)
            return e;
    }
    return MS_OK;
}

/* The whole file is in c->dtxn: make it the store. */
static ms_err install_finish(struct srv *s, struct srv_copy *c)
{
    ms_err e = copy_identity(s, c->dtxn);
    if (e)
        return e;
    if (s->cfg.backend == CFG_BACKEND_MEMORY) {
        /* The file is the memory backend's snapshot at its index from now on. */
        char dir[4200], dst[4300];
        srv_snap_dir(s, dir, sizeof(dir));
        fs_mkdirs(dir);
        snprintf(dst, sizeof(dst), "%s/snap-%016llx.snap", dir, (unsigned long long)c->hdr.index);
        if (rename(c->path, dst) != 0 || fs_sync_dir(dir) != 0) {
            log_error("cannot keep the installed snapshot as %s: %s", dst, strerror(errno));
            return MS_E_IO;
        }
        s->copies.last_snap_index = c->hdr.index;
        be_txn_abort(s->wtxn);
        be_close(s->be);
        s->be = c->dst;
        s->wtxn = c->dtxn;
        c->dst = NULL;
        c->dtxn = NULL;
        return MS_OK;
    }
    e = be_txn_commit(c->dtxn);
    c->dtxn = NULL;
    if (e || (e = be_sync(c->dst)) != MS_OK)
        return e;
    unlink(c->path);
    member_path(s, "db.install", c->path, sizeof(c->path));
    swap_env(s, c);
    return MS_OK;
}

static ms_err install_record(void *ctx, enum be_bucket b, const uint8_t *k, size_t kl,
                             const uint8_t *v, size_t vl)
{
    struct srv_copy *c = ctx;
    ms_err e = load_record(c->dtxn, b, k, kl, v, vl);
    if (!e && b == BE_BUCKET_KEY)
        e = kv_restore_record(c->kr, k, kl, v, vl);
    return e;
}

/* One slice of the file into the new backend, committed (so that the final commit writes
 * little); at the end, the swap and the installed hook. */
static void install_slice(struct srv *s, struct srv_copy *c)
{
    bool done;
    uint64_t t0 = clock_now_ns();
    ms_err e = snap_reader_next(c->r, INSTALL_SLICE, install_record, c, &done);
    if (!e && !done) {
        e = be_txn_commit(c->dtxn);
        c->dtxn = NULL; /* a commit ends the txn, also when it fails */
        if (!e)
            e = be_txn_begin(c->dst, NULL, true, &c->dtxn);
    }
    c->slices++;
    if (!e)
        faultpt_hit("snapshot_install"); /* earlier slices committed, the swap still to come */
    if (clock_now_ns() - t0 > c->slice_max_ns)
        c->slice_max_ns = clock_now_ns() - t0;
    if (!e && !done)
        return; /* start_next arms the next slice */
    s->copies.copy = NULL;
    uint64_t t1 = clock_now_ns();
    if (!e)
        e = install_finish(s, c);
    struct snap_header h = c->hdr;
    struct kv_restore *kr = c->kr;
    c->kr = NULL;
    if (e) {
        unlink(c->path);
        kv_restore_abort(kr);
        kr = NULL;
    } else {
        log_info("loaded the snapshot at index %llu in %llu slices, the longest %llu ms, the "
                 "swap %llu ms",
                 (unsigned long long)h.index, (unsigned long long)c->slices,
                 (unsigned long long)(c->slice_max_ns / 1000000),
                 (unsigned long long)((clock_now_ns() - t1) / 1000000));
    }
    copy_free(c);
    s->hooks.installed(s, e, &h, kr);
}

ms_err srv_snap_install(struct srv *s, const char *path)
{
    struct srv_copy *c = calloc(1, sizeof(*c));
    ms_err e;
    if (!c)
        return MS_E_NOMEM;
    c->kind = COPY_INSTALL;
    snprintf(c->path, sizeof(c->path), "%s", path);
    if (!(c->r = snap_reader_open(path, &c->hdr, &e)))
        goto fail;
    if (s->cfg.backend == CFG_BACKEND_MEMORY) {
        e = MS_E_NOMEM;
        if (!(c->dst = be_skiplist_open()))
            goto fail;
    } else {
        char dir[4300];
        member_path(s, "db.install", dir, sizeof(dir));
        rmtree_lmdb(dir); /* an earlier install that stopped short */
        if (!(c->dst = be_lmdb_open_scratch(dir, srv_lmdb_map_size(s), &e)))
            goto fail;
    }
    if ((e = be_txn_begin(c->dst, NULL, true, &c->dtxn)) != MS_OK)
        goto fail;
    e = MS_E_NOMEM;
    if (!(c->kr = kv_restore_begin()))
        goto fail;
    if (s->copies.copy) {
        /* A copy reads the store that is about to be replaced: it fails. */
        struct srv_copy *old = s->copies.copy;
        log_warn("a snapshot from the leader replaces the store: the running %s fails",
                 kind_name(old->kind));
        complete_op(s, old, MS_E_INTERNAL);
        copy_free(old);
    }
    s->copies.copy = c;
    arm(s);
    return MS_OK;

fail:
    copy_free(c);
    return e;
}

bool srv_snap_installing(const struct srv *s)
{
    return s->copies.copy && s->copies.copy->kind == COPY_INSTALL;
}

ms_err srv_snap_load(struct srv *s)
{
    char dir[4200], path[4300];
    struct snap_header h;
    srv_snap_dir(s, dir, sizeof(dir));
    if (!snap_find_latest(dir, path, sizeof(path), &h))
        return MS_OK;
    ms_err e = snap_read(path, &h, load_record, s->wtxn);
    if (e)
        return e;
    s->copies.last_snap_index = h.index;
    log_info("loaded snapshot %s (index %llu, revision %lld)", path, (unsigned long long)h.index,
             (long long)h.revision);
    return MS_OK;
}

ms_err srv_snap_init(struct srv *s)
{
    s->copies.copy_ev = evtimer_new(s->base, on_copy, s);
    if (!s->copies.copy_ev)
        return MS_E_NOMEM;
    /* What a stop left in member/snap: snapshot files being written (.tmp) or pruned (.del),
     * and backups made for a client or a follower. None is of use now; each is the size of
     * the store. */
    char dir[4200];
    srv_snap_dir(s, dir, sizeof(dir));
    static const char *const snaps[] = {".snap.tmp", ".snap.del", NULL};
    static const char *const backups[] = {".snap", ".snap.tmp", NULL};
    size_t gone =
        fs_remove_leftovers(dir, "snap-", snaps) + fs_remove_leftovers(dir, "backup-", backups);
    if (gone)
        log_info("removed %zu snapshot files a stop left in %s", gone, dir);
    if (s->cfg.backend != CFG_BACKEND_MEMORY)
        return MS_OK; /* LMDB makes no snapshot files */
    if (!(s->copies.trash = fs_trash_create(dir)))
        return MS_E_NOMEM;
    const char *no_aio = getenv("METASTORE_WAL_NO_AIO");
    if (no_aio && *no_aio && strcmp(no_aio, "0") != 0)
        return MS_OK; /* syncs in place, as the WAL's */
    if (!(s->copies.sync = fs_async_sync_create())) {
        log_info("snapshot files sync in the loop: no Linux AIO here (%s)", strerror(errno));
        return MS_OK;
    }
    s->copies.sync_ev = event_new(s->base, fs_async_sync_fd(s->copies.sync), EV_READ | EV_PERSIST,
                                  on_copy_synced, s);
    if (!s->copies.sync_ev || event_add(s->copies.sync_ev, NULL) != 0)
        return MS_E_NOMEM;
    return MS_OK;
}
