/* wal.c - WAL segments: create, read back, append, sync, cut, release.
 *
 * Owns the directory's segment files and the descriptor of the one being written. Invariants:
 * the bytes of the active segment past `off` are zero (preallocated), `crc` is the chain value
 * after everything written and buffered, and every segment header repeats the hard state and
 * snapshot marker current when it was cut. Blocking calls are wal_sync's write + fdatasync,
 * and creating a segment (every segment_bytes of log).
 *
 * wal_sync_begin/wal_sync_end are the asynchronous form: the write goes to the page cache at
 * once and the fdatasync is submitted through Linux AIO (fs_async_sync), whose completion
 * signals an eventfd the caller's loop watches. One sync is in flight at a time; records
 * buffered meanwhile wait for the next one. Where AIO is missing or refuses FDSYNC, the begin
 * call syncs in place and says so.
 */
#define _GNU_SOURCE /* fallocate(FALLOC_FL_PUNCH_HOLE) */
#include "metastore/grow.h"
#include "metastore/wal.h"

#include "metastore/buf.h"
#include "metastore/clock.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct seg {
    uint64_t seq;
    uint64_t index;
};

struct wal {
    char *dir;
    uint64_t seg_bytes;
    int fd;       /* active segment */
    uint64_t off; /* end of written data in the active segment */
    uint32_t crc; /* chain value after the last buffered record */
    struct buf pending;
    struct seg *segs; /* ascending seq; the last is active */
    size_t n_segs;
    size_t cap_segs;
    struct raft_hard_state hs;
    bool has_snap;
    struct raft_snapshot_meta snap;
    uint8_t *meta;
    size_t meta_len;
    uint64_t last_index;
    struct wal_stats stats;
    struct buf scratch;
    /* Asynchronous sync: NULL when unavailable. */
    struct fs_async_sync *as;
    bool reaped;    /* reaped by wal_sync, not yet claimed by wal_sync_end */
    int reaped_res; /* its result (0 or -errno) */
    uint64_t t_submit;
    /* Released segments, renamed to *.wal.del and shrunk a step at a time (wal_release_step):
     * one unlink of a 64 MiB segment takes the caller 30 ms on an idle ext4, over 100 ms
     * beside a busy one. */
    struct fs_trash *gone; /* syncs the directory before it shrinks what was renamed */
};

static ms_err aio_init(struct wal *w);
static void aio_fini(struct wal *w);

/* Entry bytes kept for the caller after opening. */
struct store {
    uint8_t **blocks;
    size_t n;
    size_t cap;
};

static void seg_path(const struct wal *w, const struct seg *s, char *out, size_t cap,
                     const char *suffix)
{
    snprintf(out, cap, "%s/%016" PRIx64 "-%016" PRIx64 ".wal%s", w->dir, s->seq, s->index, suffix);
}

static bool push_seg(struct wal *w, struct seg s)
{
    struct seg *n = ms_grow(w->segs, &w->cap_segs, w->n_segs + 1, sizeof(*n), 8);
    if (!n)
        return false;
    w->segs = n;
    w->segs[w->n_segs++] = s;
    return true;
}

static void buffer_record(struct wal *w, enum wal_rec_type type, const struct buf *payload)
{
    wal_record_encode(&w->pending, type, payload->p, payload->len, &w->crc);
}

/* The records every segment starts with. */
static void buffer_header(struct wal *w)
{
    uint8_t c[4];
    be32_put(c, w->crc);
    wal_record_encode(&w->pending, WAL_REC_CRC, c, 4, &w->crc);
    wal_record_encode(&w->pending, WAL_REC_META, w->meta, w->meta_len, &w->crc);
    w->scratch.len = 0;
    raft_hard_state_encode(&w->hs, &w->scratch);
    buffer_record(w, WAL_REC_HARD_STATE, &w->scratch);
    if (w->has_snap) {
        w->scratch.len = 0;
        raft_snapshot_meta_encode(&w->snap, &w->scratch);
        buffer_record(w, WAL_REC_SNAPSHOT, &w->scratch);
    }
}

static ms_err write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return MS_E_IO;
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return MS_OK;
}

/* Give the file at least len bytes, zeros past its data. Where the file system cannot reserve
 * the blocks, the size is still set (a sparse tail): the segment being written is at least
 * seg_bytes long, so a shorter one whose records run to its end is damage (read_segment).
 * Returns 0 or an errno value. */
static int preallocate(int fd, uint64_t len)
{
    int rc = posix_fallocate(fd, 0, (off_t)len);
    if (rc != EOPNOTSUPP && rc != EINVAL)
        return rc;
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return errno;
    if ((uint64_t)sb.st_size < len && ftruncate(fd, (off_t)len) != 0)
        return errno;
    return 0;
}

/* Create segment s: temp file, preallocate, header, sync, rename, sync dir. On success the
 * new segment is active (fd, off). */
static ms_err create_segment(struct wal *w, struct seg s)
{
    char tmp[4200], path[4200];
    seg_path(w, &s, tmp, sizeof(tmp), ".tmp");
    seg_path(w, &s, path, sizeof(path), "");
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("wal: cannot create %s: %s", tmp, strerror(errno));
        return MS_E_IO;
    }
    int rc = preallocate(fd, w->seg_bytes);
    if (rc != 0) {
        log_error("wal: cannot preallocate %s: %s", tmp, strerror(rc));
        close(fd);
        unlink(tmp);
        return rc == ENOSPC ? MS_E_NO_SPACE : MS_E_IO;
    }
    /* Only the header goes into the new file: records still buffered would be chained to the
     * old one (callers write them first). */
    if (w->pending.len) {
        close(fd);
        unlink(tmp);
        return MS_E_INTERNAL;
    }
    buffer_header(w);
    ms_err e = write_all(fd, w->pending.p, w->pending.len, 0);
    uint64_t off = w->pending.len;
    w->pending.len = 0;
    if (!e)
        faultpt_slow_fsync();
    if (!e && fdatasync(fd) != 0)
        e = MS_E_IO;
    if (!e && rename(tmp, path) != 0)
        e = MS_E_IO;
    if (!e)
        e = fs_sync_dir(w->dir);
    if (e || !push_seg(w, s)) {
        log_error("wal: cannot finish segment %s: %s", path, strerror(errno));
        close(fd);
        return e ? e : MS_E_NOMEM;
    }
    if (w->fd >= 0)
        close(w->fd);
    w->fd = fd;
    w->off = off;
    w->stats.segments++;
    return MS_OK;
}

/* ---- reading back ---- */

struct reader {
    struct wal *w;
    struct wal_log *log;
    uint64_t from;
    size_t cap_entries;
    struct store st;
    bool have_crc; /* the chain is seeded */
};

static uint8_t *store_copy(struct store *st, const uint8_t *p, size_t n)
{
    uint8_t **b = ms_grow(st->blocks, &st->cap, st->n + 1, sizeof(*b), 64);
    if (!b)
        return NULL;
    st->blocks = b;
    uint8_t *c = malloc(n ? n : 1);
    if (!c)
        return NULL;
    memcpy(c, p, n);
    st->blocks[st->n++] = c;
    return c;
}

static ms_err take_entry(struct reader *r, const struct wal_rec *rec)
{
    struct raft_entry e;
    if (raft_entry_decode(rec->payload, rec->len, &e) != MS_OK)
        return MS_E_DATA_CORRUPT;
    struct wal *w = r->w;
    struct wal_log *l = r->log;
    if (w->last_index && e.index > w->last_index + 1)
        return MS_E_DATA_CORRUPT; /* a hole in the log */
    /* A rewrite of an index replaces it and everything after it (raft conflict). */
    while (l->n_entries && l->entries[l->n_entries - 1].index >= e.index)
        l->n_entries--;
    w->last_index = e.index;
    if (e.index < r->from)
        return MS_OK;
    struct raft_entry *n = ms_grow(l->entries, &r->cap_entries, l->n_entries + 1, sizeof(*n), 256);
    if (!n)
        return MS_E_NOMEM;
    l->entries = n;
    if (e.len) {
        e.data = store_copy(&r->st, e.data, e.len);
        if (!e.data)
            return MS_E_NOMEM;
    }
    l->entries[l->n_entries++] = e;
    return MS_OK;
}

static ms_err take_record(struct reader *r, const struct wal_rec *rec, bool first_in_seg)
{
    struct wal *w = r->w;
    if (first_in_seg != (rec->type == WAL_REC_CRC))
        return MS_E_DATA_CORRUPT;
    switch (rec->type) {
    case WAL_REC_CRC:
        return rec->len == 4 ? MS_OK : MS_E_DATA_CORRUPT;
    case WAL_REC_META: {
        free(w->meta);
        w->meta = malloc(rec->len ? rec->len : 1);
        if (!w->meta)
            return MS_E_NOMEM;
        memcpy(w->meta, rec->payload, rec->len);
        w->meta_len = rec->len;
        return MS_OK;
    }
    case WAL_REC_ENTRY:
        return take_entry(r, rec);
    case WAL_REC_HARD_STATE:
        return raft_hard_state_decode(rec->payload, rec->len, &w->hs) == MS_OK ? MS_OK
                                                                               : MS_E_DATA_CORRUPT;
    case WAL_REC_SNAPSHOT: {
        struct raft_snapshot_meta m;
        if (raft_snapshot_meta_decode(rec->payload, rec->len, &m) != MS_OK)
            return MS_E_DATA_CORRUPT;
        /* A segment's header repeats the marker that was newest when the segment was cut; it
         * never replaces a newer one. */
        if (w->has_snap && m.index < w->snap.index)
            return MS_OK;
        w->snap = m;
        w->has_snap = true;
        /* Entries the snapshot covers are no longer needed: the log may go on after it. */
        if (w->last_index < w->snap.index)
            w->last_index = w->snap.index;
        return MS_OK;
    }
    }
    return MS_E_DATA_CORRUPT;
}

/* Zero [off, size) of a segment after a torn record, keeping the file's size: the next
 * reader must find the end of the data at off, and a crash during the repair must not leave
 * a segment shorter than its preallocation (that is damage). */
static ms_err zero_tail(int fd, uint64_t off, uint64_t size)
{
    static const uint8_t zeros[65536];
    if (off >= size)
        return MS_OK;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)(size - off)) == 0) {
        /* Reserve the punched blocks again, as at creation; without them writes still work. */
        (void)posix_fallocate(fd, (off_t)off, (off_t)(size - off));
    } else {
        for (uint64_t at = off; at < size;) {
            size_t n = size - at < sizeof(zeros) ? (size_t)(size - at) : sizeof(zeros);
            if (write_all(fd, zeros, n, at) != MS_OK)
                return MS_E_IO;
            at += n;
        }
    }
    return fdatasync(fd) == 0 ? MS_OK : MS_E_IO;
}

/* Read one segment. *end_off is where appending continues (last segment only). */
static ms_err read_segment(struct reader *r, const struct seg *s, bool last, uint64_t *end_off)
{
    struct wal *w = r->w;
    char path[4200];
    seg_path(w, s, path, sizeof(path), "");
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        log_error("wal: cannot open %s: %s", path, strerror(errno));
        return MS_E_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return MS_E_IO;
    }
    size_t size = (size_t)sb.st_size;
    const uint8_t *p = NULL;
    if (size) {
        p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return MS_E_IO;
        }
    }
    size_t off = 0;
    ms_err e = MS_OK;
    bool first = true;
    for (;;) {
        struct wal_rec rec;
        size_t used;
        /* The first record of a segment seeds the chain: its payload is the chain value. */
        uint32_t chain = w->crc;
        if (first && size - off >= 13 && be32_get(p + off) == 5 && p[off + 8] == WAL_REC_CRC) {
            uint32_t seed = be32_get(p + off + 9);
            if (r->have_crc && seed != w->crc) {
                log_error("wal: %s: chain value %08x at offset 0 does not continue the previous "
                          "segment (%08x)",
                          path, seed, w->crc);
                e = MS_E_DATA_CORRUPT;
                break;
            }
            chain = seed;
        }
        enum wal_dec d = wal_record_decode(p + off, size - off, chain, &rec, &used);
        /* A small record whose write was cut short at a sector boundary. */
        if (d == WAL_DEC_CORRUPT && last && !first &&
            wal_record_torn_sectors(p + off, size - off, chain, off))
            d = WAL_DEC_TORN;
        if ((d == WAL_DEC_END || d == WAL_DEC_TORN) && last && size < w->seg_bytes &&
            wal_record_past_end(p + off, size - off)) {
            /* A crash tears a record inside the preallocated zeros, or past the preallocated
             * size: a segment being written whose records run into an end short of it lost
             * its tail. Sealed segments are cut only once their data reaches the segment size
             * (or the size a previous run was given), so their data runs to their end; one
             * cut short shows as an incomplete last record or as a next segment whose chain
             * value does not continue it. */
            log_error("wal: %s is %zu bytes, less than the %llu bytes every segment is "
                      "preallocated to, and its records run to its end at offset %zu: the file "
                      "was cut short and acknowledged writes after that point are lost (restore "
                      "the data directory from a backup)",
                      path, size, (unsigned long long)w->seg_bytes, off);
            e = MS_E_DATA_CORRUPT;
            break;
        }
        if (d == WAL_DEC_END && !first)
            break;
        if (d == WAL_DEC_TORN && last && !first) {
            log_warn("wal: %s: torn record at offset %zu, truncating the log there", path, off);
            e = zero_tail(fd, off, size);
            break;
        }
        if (d != WAL_DEC_OK) {
            log_error("wal: %s: %s record at offset %zu", path,
                      d == WAL_DEC_TORN ? "incomplete" : "corrupt", off);
            e = MS_E_DATA_CORRUPT;
            break;
        }
        w->crc = rec.crc;
        r->have_crc = true;
        e = take_record(r, &rec, first);
        if (e) {
            log_error("wal: %s: invalid %s record at offset %zu", path, first ? "first" : "content",
                      off);
            break;
        }
        first = false;
        off += used;
    }
    if (p)
        munmap((void *)p, size);
    /* Cut short inside its zeros, the segment lost nothing; appends continue in it, so it gets
     * its full size back (a later tear must not look like truncation). */
    if (last && !e && size < w->seg_bytes) {
        int rc = preallocate(fd, w->seg_bytes);
        if (rc != 0 || fdatasync(fd) != 0) {
            log_error("wal: cannot extend %s to %llu bytes: %s", path,
                      (unsigned long long)w->seg_bytes, strerror(rc ? rc : errno));
            e = MS_E_IO;
        }
    }
    if (last && !e) {
        w->fd = fd;
        *end_off = off;
    } else {
        close(fd);
    }
    return e;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct seg *x = a, *y = b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static ms_err list_segments(struct wal *w)
{
    DIR *d = opendir(w->dir);
    if (!d)
        return MS_E_IO;
    struct dirent *de;
    ms_err e = MS_OK;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t nl = strlen(n);
        if (nl > 4 && (strcmp(n + nl - 4, ".tmp") == 0 || strcmp(n + nl - 4, ".del") == 0)) {
            /* A segment whose creation never finished (nothing in it was acknowledged), or a
             * released one not yet removed. */
            char path[4200];
            snprintf(path, sizeof(path), "%s/%s", w->dir, n);
            unlink(path);
            continue;
        }
        struct seg s;
        char tail[8];
        if (nl != 37 || sscanf(n, "%16" SCNx64 "-%16" SCNx64 "%7s", &s.seq, &s.index, tail) != 3 ||
            strcmp(tail, ".wal") != 0)
            continue;
        if (!push_seg(w, s)) {
            e = MS_E_NOMEM;
            break;
        }
    }
    closedir(d);
    if (!e && w->n_segs)
        qsort(w->segs, w->n_segs, sizeof(*w->segs), cmp_seg);
    for (size_t i = 1; !e && i < w->n_segs; i++) {
        if (w->segs[i].seq != w->segs[i - 1].seq + 1) {
            log_error("wal: %s: segment %016" PRIx64 " follows %016" PRIx64
                      ": a segment is missing",
                      w->dir, w->segs[i].seq, w->segs[i - 1].seq);
            e = MS_E_DATA_CORRUPT;
        }
    }
    return e;
}

void wal_log_fini(struct wal_log *l)
{
    struct store *st = l->store_;
    if (st) {
        for (size_t i = 0; i < st->n; i++)
            free(st->blocks[i]);
        free(st->blocks);
        free(st);
    }
    free(l->entries);
    free(l->meta);
    memset(l, 0, sizeof(*l));
}

ms_err wal_open(const char *dir, uint64_t from_index, const uint8_t *meta, size_t meta_len,
                uint64_t seg_bytes, struct wal **out, struct wal_log *log)
{
    memset(log, 0, sizeof(*log));
    struct wal *w = calloc(1, sizeof(*w));
    ms_err e = MS_OK;
    if (!w)
        return MS_E_NOMEM;
    w->fd = -1;
    w->seg_bytes = seg_bytes ? seg_bytes : WAL_SEGMENT_BYTES_DEFAULT;
    buf_init(&w->pending);
    buf_init(&w->scratch);
    metrics_hist_init(&w->stats.fsync_seconds, 0.001, 2);
    w->dir = strdup(dir);
    if (!w->dir) {
        e = MS_E_NOMEM;
        goto out_close;
    }
    if (fs_mkdirs(dir) != 0) {
        log_error("wal: cannot create %s: %s", dir, strerror(errno));
        e = MS_E_IO;
        goto out_close;
    }
    if ((e = list_segments(w)) != MS_OK)
        goto out_close;
    if (w->n_segs == 0) {
        w->meta = malloc(meta_len ? meta_len : 1);
        if (!w->meta) {
            e = MS_E_NOMEM;
            goto out_close;
        }
        if (meta_len)
            memcpy(w->meta, meta, meta_len);
        w->meta_len = meta_len;
        if ((e = create_segment(w, (struct seg){0, 0})) != MS_OK)
            goto out_close;
    } else {
        struct reader r = {.w = w, .log = log, .from = from_index};
        uint64_t end = 0;
        /* The oldest segment left is named after its first entry; the entries before it went
         * with released segments. Its header's snapshot marker is older than that entry (the
         * newest when the segment was cut), so it cannot tell where the log resumes. */
        w->last_index = w->segs[0].index ? w->segs[0].index - 1 : 0;
        for (size_t i = 0; i < w->n_segs && !e; i++)
            e = read_segment(&r, &w->segs[i], i + 1 == w->n_segs, &end);
        log->store_ = malloc(sizeof(struct store));
        if (log->store_)
            *(struct store *)log->store_ = r.st;
        else {
            for (size_t i = 0; i < r.st.n; i++)
                free(r.st.blocks[i]);
            free(r.st.blocks);
            if (!e)
                e = MS_E_NOMEM;
        }
        if (e)
            goto out_close;
        w->off = end;
        w->stats.segments = w->n_segs;
    }
    log->hs = w->hs;
    log->has_snapshot = w->has_snap;
    log->snap = w->snap;
    if (w->meta_len) {
        log->meta = malloc(w->meta_len);
        if (!log->meta) {
            e = MS_E_NOMEM;
            goto out_close;
        }
        memcpy(log->meta, w->meta, w->meta_len);
        log->meta_len = w->meta_len;
    }
    if ((e = aio_init(w)) != MS_OK)
        goto out_close;
    *out = w;
    return MS_OK;

out_close:
    wal_log_fini(log);
    wal_close(w);
    return e;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    aio_fini(w);
    if (w->fd >= 0)
        close(w->fd);
    fs_trash_destroy(w->gone); /* what is left of the released segments goes at the next open */
    buf_fini(&w->pending);
    buf_fini(&w->scratch);
    free(w->segs);
    free(w->meta);
    free(w->dir);
    free(w);
}

ms_err wal_append(struct wal *w, const struct raft_hard_state *hs, const struct raft_entry *ents,
                  size_t n)
{
    for (size_t i = 0; i < n; i++) {
        w->scratch.len = 0;
        raft_entry_encode(&ents[i], &w->scratch);
        if (buf_failed(&w->scratch) || w->scratch.len > WAL_MAX_RECORD_BYTES)
            return buf_failed(&w->scratch) ? MS_E_NOMEM : MS_E_REQUEST_TOO_LARGE;
        buffer_record(w, WAL_REC_ENTRY, &w->scratch);
        w->last_index = ents[i].index;
    }
    if (hs) {
        w->hs = *hs;
        w->scratch.len = 0;
        raft_hard_state_encode(hs, &w->scratch);
        buffer_record(w, WAL_REC_HARD_STATE, &w->scratch);
    }
    return buf_failed(&w->pending) ? MS_E_NOMEM : MS_OK;
}

ms_err wal_append_snapshot(struct wal *w, const struct raft_snapshot_meta *m)
{
    w->snap = *m;
    w->has_snap = true;
    /* As the reader does: the log may continue right after the snapshot, and the next
     * segment is named after that. */
    if (w->last_index < m->index)
        w->last_index = m->index;
    w->scratch.len = 0;
    raft_snapshot_meta_encode(m, &w->scratch);
    buffer_record(w, WAL_REC_SNAPSHOT, &w->scratch);
    return buf_failed(&w->pending) ? MS_E_NOMEM : MS_OK;
}

bool wal_dirty(const struct wal *w)
{
    return w->pending.len > 0;
}

/* ---- syncing ---- */

static ms_err write_pending(struct wal *w)
{
    ms_err e = write_all(w->fd, w->pending.p, w->pending.len, w->off);
    if (e) {
        log_error("wal: write failed: %s", strerror(errno));
        return e;
    }
    w->stats.bytes_written += w->pending.len;
    w->off += w->pending.len;
    w->pending.len = 0;
    return MS_OK;
}

static void count_sync(struct wal *w, uint64_t t0)
{
    metrics_hist_observe(&w->stats.fsync_seconds, (double)(clock_now_ns() - t0) / 1e9);
    w->stats.fsyncs++;
}

/* Write and fdatasync what is buffered, waiting for it. */
static ms_err sync_now(struct wal *w)
{
    if (!w->pending.len)
        return MS_OK;
    uint64_t t0 = clock_now_ns();
    ms_err e = write_pending(w);
    if (!e) {
        faultpt_hit("wal_before_sync");
        faultpt_slow_fsync();
    }
    if (!e && fdatasync(w->fd) != 0) {
        log_error("wal: fdatasync failed: %s", strerror(errno));
        e = MS_E_IO;
    }
    if (!e) {
        count_sync(w, t0);
        faultpt_hit("wal_after_sync");
    }
    return e;
}

/* Start a new segment once the active one is full and no sync is in flight on it. Records
 * buffered meanwhile were chained to the old segment: they are written and synced there
 * first (once per segment, a blocking sync). */
static ms_err maybe_rotate(struct wal *w)
{
    if (w->off < w->seg_bytes)
        return MS_OK;
    ms_err e = sync_now(w);
    if (e)
        return e;
    struct seg s = {w->segs[w->n_segs - 1].seq + 1, w->last_index + 1};
    return create_segment(w, s);
}

/* A sync submitted and not yet reaped. */
static bool in_flight(const struct wal *w)
{
    return w->as && fs_async_sync_busy(w->as);
}

static bool submit_sync(struct wal *w)
{
    return fs_async_sync_start(w->as, w->fd, true) == 0;
}

/* Reap the sync in flight, waiting for it or not. True once reaped (result in reaped_res; a
 * failing io_getevents counts as a failed sync, never as "not yet": its wake-up is spent). */
static bool aio_reap(struct wal *w, bool wait)
{
    int res;
    if (!fs_async_sync_reap(w->as, wait, &res))
        return false;
    w->reaped = true;
    w->reaped_res = res;
    if (!w->reaped_res)
        count_sync(w, w->t_submit);
    return true;
}

static void aio_fini(struct wal *w)
{
    fs_async_sync_destroy(w->as); /* waits for a sync in flight */
    w->as = NULL;
}

/* Set up the asynchronous sync and try it once on the active segment: a kernel without
 * IOCB_CMD_FDSYNC (before 4.18) refuses it, and then every sync waits in the loop. An I/O error
 * from the probe is the disk's, not AIO's: the open fails, as a failed fdatasync would. */
static ms_err aio_init(struct wal *w)
{
    const char *why = NULL;
    const char *off = getenv("METASTORE_WAL_NO_AIO");
    if (off && *off && strcmp(off, "0") != 0)
        why = "METASTORE_WAL_NO_AIO is set";
    else if (!(w->as = fs_async_sync_create()))
        why = strerror(errno);
    else if (!submit_sync(w))
        why = strerror(errno);
    else {
        struct wal_stats before = w->stats; /* the probe is not one of the log's syncs */
        w->t_submit = clock_now_ns();
        aio_reap(w, true);
        w->reaped = false;
        w->stats = before;
        int res = -w->reaped_res;
        if (res == EINVAL || res == EOPNOTSUPP || res == ENOSYS)
            why = strerror(res);
        else if (res) {
            log_error("wal: fdatasync failed: %s", strerror(res));
            return MS_E_IO;
        }
        /* Drain the probe's signal; one arriving late is a spurious wake-up, which
         * wal_sync_end tells apart. */
        fs_async_sync_clear(w->as);
    }
    if (why) {
        log_info("wal: asynchronous fdatasync unavailable (%s): syncs wait in the loop", why);
        aio_fini(w);
    }
    return MS_OK;
}

ms_err wal_sync(struct wal *w)
{
    if (buf_failed(&w->pending))
        return MS_E_NOMEM;
    if (in_flight(w))
        aio_reap(w, true);
    if (w->reaped && w->reaped_res < 0) {
        log_error("wal: fdatasync failed: %s", strerror(-w->reaped_res));
        return MS_E_IO;
    }
    ms_err e = sync_now(w);
    return e ? e : maybe_rotate(w);
}

int wal_sync_fd(const struct wal *w)
{
    return w->as ? fs_async_sync_fd(w->as) : -1;
}

ms_err wal_sync_begin(struct wal *w, bool *started)
{
    *started = false;
    if (buf_failed(&w->pending))
        return MS_E_NOMEM;
    if (in_flight(w) || w->reaped)
        return MS_E_INTERNAL; /* the one before is not claimed yet */
    if (!w->pending.len)
        return MS_OK;
    if (!w->as) {
        ms_err e = sync_now(w);
        return e ? e : maybe_rotate(w);
    }
    ms_err e = write_pending(w);
    if (e)
        return e;
    faultpt_hit("wal_before_sync");
    w->t_submit = clock_now_ns();
    if (!submit_sync(w)) {
        /* EAGAIN and the like: sync this batch in place, try again next time. */
        log_warn("wal: asynchronous fdatasync not submitted: %s", strerror(errno));
        faultpt_slow_fsync();
        if (fdatasync(w->fd) != 0) {
            log_error("wal: fdatasync failed: %s", strerror(errno));
            return MS_E_IO;
        }
        count_sync(w, w->t_submit);
        faultpt_hit("wal_after_sync");
        return maybe_rotate(w);
    }
    *started = true;
    return MS_OK;
}

ms_err wal_sync_end(struct wal *w, bool *done)
{
    *done = false;
    if (w->as)
        fs_async_sync_clear(w->as);
    if (in_flight(w) && !aio_reap(w, false))
        return MS_OK; /* not yet */
    if (!w->reaped)
        return MS_OK;
    w->reaped = false;
    *done = true;
    if (w->reaped_res < 0) {
        log_error("wal: fdatasync failed: %s", strerror(-w->reaped_res));
        return MS_E_IO;
    }
    faultpt_hit("wal_after_sync");
    return maybe_rotate(w);
}

ms_err wal_release_before(struct wal *w, uint64_t index)
{
    /* Segment i holds entries from segs[i].index up to segs[i+1].index - 1. Renamed out of the
     * log, oldest first, the rest stays a contiguous run of segments. The renames need no
     * directory sync here: a whole segment that comes back after a crash only holds entries
     * that the next open skips. Before a released file is shrunk, though, its new name must be
     * durable (wal_release_step syncs the directory first): a segment that came back cut short
     * would stop the open as damaged. */
    size_t drop = 0;
    ms_err e = MS_OK;
    while (drop + 1 < w->n_segs && w->segs[drop + 1].index <= index) {
        char path[4200], del[4200];
        seg_path(w, &w->segs[drop], path, sizeof(path), "");
        seg_path(w, &w->segs[drop], del, sizeof(del), ".del");
        if (rename(path, del) != 0 && errno != ENOENT) {
            log_error("wal: cannot release %s: %s", path, strerror(errno));
            e = MS_E_IO;
            break;
        }
        if (!w->gone)
            w->gone = fs_trash_create(w->dir);
        if (!w->gone || !fs_trash_add(w->gone, del))
            unlink(del); /* no room to remember it: removed at once, whole */
        drop++;
    }
    memmove(w->segs, w->segs + drop, (w->n_segs - drop) * sizeof(*w->segs));
    w->n_segs -= drop;
    return e;
}

bool wal_release_step(struct wal *w, uint64_t bytes)
{
    return w->gone && fs_trash_step(w->gone, bytes);
}

void wal_get_stats(const struct wal *w, struct wal_stats *out)
{
    *out = w->stats;
    out->segments = w->n_segs;
}
