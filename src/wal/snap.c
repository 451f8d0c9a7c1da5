/* snap.c - snapshot files: a buffered writer (one write per 256 KiB) and a verifying reader.
 * Owns the file being written; never the records it is given. */
#include "metastore/snap.h"

#include "metastore/buf.h"
#include "metastore/crc32c.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/log.h"
#include "metastore/sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAGIC "MSSNAP01"
#define SNAP_HDR   32
#define SNAP_FLUSH (256u << 10)
#define SNAP_REC   1
#define SNAP_END   0

struct snap_writer {
    int fd;
    char *path;
    char *tmp;
    struct buf b;
    uint32_t crc;
    uint64_t written;
};

static ms_err flush(struct snap_writer *w)
{
    if (buf_failed(&w->b))
        return MS_E_NOMEM;
    w->crc = crc32c(w->crc, w->b.p, w->b.len);
    size_t off = 0;
    while (off < w->b.len) {
        ssize_t n = write(w->fd, w->b.p + off, w->b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return errno == ENOSPC ? MS_E_NO_SPACE : MS_E_IO;
        off += (size_t)n;
    }
    w->written += w->b.len;
    w->b.len = 0;
    return MS_OK;
}

struct snap_writer *snap_writer_create(const char *path, const struct snap_header *h, ms_err *err)
{
    struct snap_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        *err = MS_E_NOMEM;
        return NULL;
    }
    w->fd = -1;
    buf_init(&w->b);
    w->path = strdup(path);
    size_t tl = strlen(path) + 5;
    w->tmp = malloc(tl);
    if (!w->path || !w->tmp) {
        *err = MS_E_NOMEM;
        goto out_free;
    }
    snprintf(w->tmp, tl, "%s.tmp", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        log_error("snapshot: cannot create %s: %s", w->tmp, strerror(errno));
        *err = MS_E_IO;
        goto out_free;
    }
    buf_append(&w->b, SNAP_MAGIC, 8);
    buf_put_be64(&w->b, h->index);
    buf_put_be64(&w->b, h->term);
    buf_put_be64(&w->b, (uint64_t)h->revision);
    return w;

out_free:
    snap_writer_abort(w);
    return NULL;
}

ms_err snap_writer_put(struct snap_writer *w, enum be_bucket b, const uint8_t *k, size_t klen,
                       const uint8_t *v, size_t vlen)
{
    buf_putc(&w->b, SNAP_REC);
    buf_putc(&w->b, (char)b);
    buf_put_uvarint(&w->b, klen);
    buf_append(&w->b, k, klen);
    buf_put_uvarint(&w->b, vlen);
    buf_append(&w->b, v, vlen);
    return w->b.len >= SNAP_FLUSH ? flush(w) : (buf_failed(&w->b) ? MS_E_NOMEM : MS_OK);
}

uint64_t snap_writer_size(const struct snap_writer *w)
{
    return w->written + w->b.len;
}

/* The temp file and its descriptor go (a failed finish, which may keep w; and abort). */
static void drop_tmp(struct snap_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->tmp)
        unlink(w->tmp);
    free(w->tmp);
    w->tmp = NULL;
}

static ms_err sync_parent(const char *path)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    return fs_sync_dir(dir);
}

ms_err snap_writer_seal(struct snap_writer *w, int *fd)
{
    buf_putc(&w->b, SNAP_END);
    /* The CRC covers everything before it, including the end byte. */
    uint32_t crc = crc32c(w->crc, w->b.p, w->b.len);
    buf_put_be32(&w->b, crc);
    ms_err e = flush(w);
    if (e) {
        log_error("snapshot: cannot finish %s: %s", w->path, strerror(errno));
        drop_tmp(w);
        return e;
    }
    *fd = w->fd;
    return MS_OK;
}

ms_err snap_writer_publish(struct snap_writer *w)
{
    if (rename(w->tmp, w->path) != 0) {
        log_error("snapshot: cannot finish %s: %s", w->path, strerror(errno));
        drop_tmp(w);
        return MS_E_IO;
    }
    close(w->fd);
    w->fd = -1;
    free(w->tmp);
    w->tmp = NULL; /* the file is in place: abort leaves it */
    return MS_OK;
}

ms_err snap_writer_persist(struct snap_writer *w)
{
    ms_err e = MS_OK;
    faultpt_slow_fsync();
    if (fdatasync(w->fd) != 0) {
        log_error("snapshot: cannot finish %s: %s", w->path, strerror(errno));
        drop_tmp(w);
        e = MS_E_IO;
    }
    if (!e)
        e = snap_writer_publish(w);
    if (!e && (e = sync_parent(w->path)) != MS_OK)
        log_error("snapshot: cannot finish %s: %s", w->path, strerror(errno));
    return e;
}

ms_err snap_writer_finish(struct snap_writer *w)
{
    int fd;
    ms_err e = snap_writer_seal(w, &fd);
    if (!e)
        e = snap_writer_persist(w);
    snap_writer_abort(w);
    return e;
}

void snap_writer_abort(struct snap_writer *w)
{
    if (!w)
        return;
    drop_tmp(w);
    buf_fini(&w->b);
    free(w->path);
    free(w);
}

/* The next record of r into *rec: SNAP_REC, SNAP_END, or -1 on damage. */
struct snap_rec {
    enum be_bucket b;
    const uint8_t *k, *v;
    size_t kl, vl;
};

static int next_record(struct rd *r, struct snap_rec *rec)
{
    uint8_t t = rd_u8(r);
    if (r->err)
        return -1;
    if (t == SNAP_END)
        return SNAP_END;
    if (t != SNAP_REC)
        return -1;
    uint8_t b = rd_u8(r);
    uint64_t kl = rd_uvarint(r);
    if (kl > rd_left(r))
        return -1;
    rec->k = rd_bytes(r, (size_t)kl);
    uint64_t vl = rd_uvarint(r);
    if (vl > rd_left(r))
        return -1;
    rec->v = rd_bytes(r, (size_t)vl);
    if (r->err || b >= BE_BUCKET_COUNT_)
        return -1;
    rec->b = (enum be_bucket)b;
    rec->kl = (size_t)kl;
    rec->vl = (size_t)vl;
    return SNAP_REC;
}

static void read_header(const uint8_t *p, struct snap_header *h)
{
    h->index = be64_get(p + 8);
    h->term = be64_get(p + 16);
    h->revision = (int64_t)be64_get(p + 24);
}

ms_err snap_decode(const uint8_t *p, size_t len, struct snap_header *h, snap_record_fn fn,
                   void *ctx)
{
    if (len < SNAP_HDR + 5 || memcmp(p, SNAP_MAGIC, 8) != 0)
        return MS_E_DATA_CORRUPT;
    if (crc32c(0, p, len - 4) != be32_get(p + len - 4))
        return MS_E_DATA_CORRUPT;
    read_header(p, h);
    struct rd r;
    rd_init(&r, p + SNAP_HDR, len - SNAP_HDR - 4);
    for (;;) {
        struct snap_rec rec;
        int t = next_record(&r, &rec);
        if (t == SNAP_END)
            return rd_left(&r) == 0 ? MS_OK : MS_E_DATA_CORRUPT;
        if (t < 0)
            return MS_E_DATA_CORRUPT;
        if (fn) {
            ms_err e = fn(ctx, rec.b, rec.k, rec.kl, rec.v, rec.vl);
            if (e)
                return e;
        }
    }
}

struct snap_reader {
    const uint8_t *p; /* the file, mapped */
    size_t len;
    struct rd r;  /* the records: everything between the header and the CRC */
    size_t crced; /* bytes of p the CRC has covered */
    uint32_t crc;
};

struct snap_reader *snap_reader_open(const char *path, struct snap_header *h, ms_err *err)
{
    struct snap_reader *r = calloc(1, sizeof(*r));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    *err = MS_E_NOMEM;
    if (!r || fd < 0 || fstat(fd, &sb) != 0) {
        *err = r ? MS_E_IO : MS_E_NOMEM;
        goto fail;
    }
    *err = MS_E_DATA_CORRUPT;
    if (sb.st_size < SNAP_HDR + 5)
        goto fail;
    r->len = (size_t)sb.st_size;
    r->p = mmap(NULL, r->len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (r->p == MAP_FAILED) {
        r->p = NULL;
        *err = MS_E_IO;
        goto fail;
    }
    if (memcmp(r->p, SNAP_MAGIC, 8) != 0)
        goto fail;
    close(fd);
    read_header(r->p, h);
    rd_init(&r->r, r->p + SNAP_HDR, r->len - SNAP_HDR - 4);
    return r;

fail:
    if (fd >= 0)
        close(fd);
    if (*err == MS_E_DATA_CORRUPT)
        log_error("snapshot: %s is damaged", path);
    snap_reader_close(r);
    return NULL;
}

ms_err snap_reader_next(struct snap_reader *r, size_t max, snap_record_fn fn, void *ctx, bool *done)
{
    *done = false;
    ms_err e = MS_OK;
    for (size_t i = 0; i < max && !e && !*done; i++) {
        struct snap_rec rec;
        int t = next_record(&r->r, &rec);
        if (t < 0 || (t == SNAP_END && rd_left(&r->r) != 0))
            e = MS_E_DATA_CORRUPT;
        else if (t == SNAP_END)
            *done = true;
        else
            e = fn(ctx, rec.b, rec.k, rec.kl, rec.v, rec.vl);
    }
    /* The CRC follows the records read so far; at the end it covers everything before it. */
    size_t upto = r->len - 4 - rd_left(&r->r);
    r->crc = crc32c(r->crc, r->p + r->crced, upto - r->crced);
    r->crced = upto;
    if (*done && r->crc != be32_get(r->p + r->len - 4))
        e = MS_E_DATA_CORRUPT;
    if (e == MS_E_DATA_CORRUPT)
        *done = false;
    return e;
}

void snap_reader_close(struct snap_reader *r)
{
    if (!r)
        return;
    if (r->p)
        munmap((void *)r->p, r->len);
    free(r);
}

/* etcd's layout of a saved snapshot, as etcdctl snapshot save writes what the gRPC stream
 * sends: the data zero-padded to a multiple of 512 bytes, then the SHA-256 of both (etcd's
 * restore tells it by size % 512 == 32). The snapshot's own length inside such a file, found
 * by its CRC among the trailing zeros; len when p is not laid out so. */
static size_t etcd_layout_len(const uint8_t *p, size_t len)
{
    if (len % 512 != 32 || len < 512 + 32)
        return len;
    size_t body = len - 32;
    uint8_t d[32];
    struct sha256 sh;
    sha256_init(&sh);
    sha256_update(&sh, p, body);
    sha256_final(&sh, d);
    if (memcmp(d, p + body, 32) != 0)
        return len;
    size_t z = body; /* the trailing zeros (at most 511 of padding) start at z or later */
    while (z > SNAP_HDR + 5 && p[z - 1] == 0 && body - z < 511)
        z--;
    uint32_t crc = crc32c(0, p, z - 4);
    for (size_t n = z; n <= body; n++) {
        if (crc == be32_get(p + n - 4))
            return n;
        crc = crc32c(crc, p + n - 4, 1);
    }
    return len;
}

ms_err snap_read(const char *path, struct snap_header *h, snap_record_fn fn, void *ctx)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MS_E_IO;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < SNAP_HDR + 5) {
        close(fd);
        return MS_E_DATA_CORRUPT;
    }
    size_t len = (size_t)sb.st_size;
    const uint8_t *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return MS_E_IO;
    ms_err e = snap_decode(p, etcd_layout_len(p, len), h, fn, ctx);
    munmap((void *)p, len);
    if (e == MS_E_DATA_CORRUPT)
        log_error("snapshot: %s is damaged", path);
    return e;
}

bool snap_find_latest(const char *dir, char *out, size_t cap, struct snap_header *h)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *de;
    uint64_t best = 0;
    bool found = false;
    char name[64];
    while ((de = readdir(d)) != NULL) {
        uint64_t idx;
        char tail[8];
        if (strlen(de->d_name) != 26 ||
            sscanf(de->d_name, "snap-%16" SCNx64 "%7s", &idx, tail) != 2 ||
            strcmp(tail, ".snap") != 0)
            continue;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct snap_header sh;
        if ((!found || idx > best) && snap_read(path, &sh, NULL, NULL) == MS_OK) {
            best = idx;
            found = true;
            *h = sh;
            snprintf(name, sizeof(name), "%.60s", de->d_name);
        }
    }
    closedir(d);
    if (found)
        snprintf(out, cap, "%s/%s", dir, name);
    return found;
}
