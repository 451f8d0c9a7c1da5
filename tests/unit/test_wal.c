/* test_wal.c - the write-ahead log: framing, replay, torn tails, corruption, rollover,
 * release, conflict truncation. */
#define _GNU_SOURCE
#include "metastore/buf.h"
#include "metastore/snap.h"
#include "metastore/wal.h"
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dir;

static void setup(void)
{
    dir = tu_mkdtemp("ms-test-wal");
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

static void put_entries(struct wal *w, uint64_t from, uint64_t to, uint64_t term)
{
    for (uint64_t i = from; i <= to; i++) {
        char data[64];
        int n = snprintf(data, sizeof(data), "entry-%llu-term-%llu", (unsigned long long)i,
                         (unsigned long long)term);
        struct raft_entry e = {.term = term,
                               .index = i,
                               .type = RAFT_ENTRY_NORMAL,
                               .len = (size_t)n,
                               .data = (const uint8_t *)data};
        struct raft_hard_state hs = {.term = term, .vote = 1, .commit = i};
        ck_assert_int_eq(wal_append(w, &hs, &e, 1), MS_OK);
    }
}

static void check_entries(const struct wal_log *l, uint64_t from, uint64_t to, uint64_t term)
{
    ck_assert_uint_eq(l->n_entries, to - from + 1);
    for (size_t k = 0; k < l->n_entries; k++) {
        const struct raft_entry *e = &l->entries[k];
        char want[64];
        int n = snprintf(want, sizeof(want), "entry-%llu-term-%llu", (unsigned long long)(from + k),
                         (unsigned long long)term);
        ck_assert_uint_eq(e->index, from + k);
        ck_assert_uint_eq(e->len, (size_t)n);
        ck_assert(memcmp(e->data, want, (size_t)n) == 0);
    }
}

static int count_segments(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".wal") && !strstr(e->d_name, ".tmp") && !strstr(e->d_name, ".del"))
            n++;
    closedir(d);
    return n;
}

/* Released segments not yet removed, and their bytes. */
static int count_released(long *bytes)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    *bytes = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, ".wal.del"))
            continue;
        char path[4300];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ck_assert_int_eq(stat(path, &st), 0);
        *bytes += st.st_size;
        n++;
    }
    closedir(d);
    return n;
}

/* Path of the segment with the highest (first: lowest) sequence number. */
static void segment_path(int last, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char best[300] = "";
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, ".wal") || strstr(e->d_name, ".tmp") || strstr(e->d_name, ".del"))
            continue;
        if (!best[0] || (last ? strcmp(e->d_name, best) > 0 : strcmp(e->d_name, best) < 0))
            snprintf(best, sizeof(best), "%s", e->d_name);
    }
    closedir(d);
    snprintf(out, cap, "%s/%s", dir, best);
}

/* A new log in dir with segments of seg_bytes (0: default) holding entries 1..n, synced. */
static void write_log(uint64_t seg_bytes, uint64_t n, uint64_t term)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, seg_bytes, &w, &l), MS_OK);
    wal_log_fini(&l);
    put_entries(w, 1, n, term);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    wal_close(w);
}

/* A new log in dir with segments of seg_bytes holding entries 1..n (term 1), synced every
 * batch entries: segments roll at a sync once full. */
static void write_rolled_log(uint64_t seg_bytes, uint64_t n, uint64_t batch)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, seg_bytes, &w, &l), MS_OK);
    wal_log_fini(&l);
    for (uint64_t i = 1; i <= n; i += batch) {
        put_entries(w, i, i + batch - 1, 1);
        ck_assert_int_eq(wal_sync(w), MS_OK);
    }
    wal_close(w);
}

/* Walk the valid records of a segment's bytes (the first seeds the chain), stopping at the
 * first record boundary at or past limit. Returns that offset; *crc is the chain value there. */
static size_t walk_records(const uint8_t *data, size_t size, size_t limit, uint32_t *crc)
{
    size_t end = 0, used;
    struct wal_rec r;
    *crc = be32_get(data + 9);
    while (end < limit &&
           wal_record_decode(data + end, size - end, *crc, &r, &used) == WAL_DEC_OK) {
        *crc = r.crc;
        end += used;
    }
    return end;
}

/* The last segment: its path, its bytes (*size of them; the caller frees), where its records
 * end (*end) and the chain value there (*crc). */
static uint8_t *last_segment(char *path, size_t cap, size_t *size, size_t *end, uint32_t *crc)
{
    segment_path(1, path, cap);
    int fd = open(path, O_RDONLY);
    struct stat sb;
    ck_assert_int_eq(fstat(fd, &sb), 0);
    uint8_t *data = malloc((size_t)sb.st_size);
    ck_assert_int_eq(pread(fd, data, (size_t)sb.st_size, 0), sb.st_size);
    close(fd);
    *size = (size_t)sb.st_size;
    *end = walk_records(data, *size, SIZE_MAX, crc);
    return data;
}

START_TEST(record_framing)
{
    struct buf b;
    buf_init(&b);
    uint32_t crc = 0;
    wal_record_encode(&b, WAL_REC_ENTRY, (const uint8_t *)"hello", 5, &crc);
    uint32_t crc2 = crc;
    wal_record_encode(&b, WAL_REC_META, (const uint8_t *)"", 0, &crc2);
    struct wal_rec r;
    size_t used;
    ck_assert_int_eq(wal_record_decode(b.p, b.len, 0, &r, &used), WAL_DEC_OK);
    ck_assert_int_eq(r.type, WAL_REC_ENTRY);
    ck_assert_uint_eq(r.len, 5);
    ck_assert_uint_eq(used, 14);
    ck_assert_int_eq(wal_record_decode(b.p + used, b.len - used, crc, &r, &used), WAL_DEC_OK);
    /* The chain matters: the second record does not verify against a wrong seed. */
    ck_assert_int_eq(wal_record_decode(b.p + 14, b.len - 14, 0, &r, &used), WAL_DEC_CORRUPT);
    /* Cut short: torn. Zeros: end. A flipped bit: corrupt. */
    ck_assert_int_eq(wal_record_decode(b.p, 10, 0, &r, &used), WAL_DEC_TORN);
    uint8_t zeros[32] = {0};
    ck_assert_int_eq(wal_record_decode(zeros, sizeof(zeros), 0, &r, &used), WAL_DEC_END);
    ck_assert_int_eq(wal_record_decode(zeros, 4, 0, &r, &used), WAL_DEC_END);
    b.p[11] ^= 1;
    ck_assert_int_eq(wal_record_decode(b.p, b.len, 0, &r, &used), WAL_DEC_CORRUPT);
    /* An absurd length is corruption, not a reason to read on. */
    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 3};
    ck_assert_int_eq(wal_record_decode(big, sizeof(big), 0, &r, &used), WAL_DEC_CORRUPT);
    /* Past the end: a frame (14 bytes) cut short or a header that does not fit; a zero header
     * that fits is the end of the data inside the file. */
    ck_assert(!wal_record_past_end(b.p, 14));
    ck_assert(wal_record_past_end(b.p, 13));
    ck_assert(wal_record_past_end(b.p, 8));
    ck_assert(wal_record_past_end(zeros, 0));
    ck_assert(!wal_record_past_end(zeros, 9));
    buf_fini(&b);
}
END_TEST

START_TEST(append_and_replay)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, (const uint8_t *)"meta", 4, 0, &w, &l), MS_OK);
    ck_assert_uint_eq(l.n_entries, 0);
    wal_log_fini(&l);
    put_entries(w, 1, 100, 2);
    ck_assert(wal_dirty(w));
    ck_assert_int_eq(wal_sync(w), MS_OK);
    ck_assert(!wal_dirty(w));
    struct wal_stats st;
    wal_get_stats(w, &st);
    ck_assert_uint_eq(st.fsyncs, 1); /* 100 entries, one sync */
    ck_assert_uint_eq(st.fsync_seconds.count, 1);
    /* Nothing buffered: no system call. */
    ck_assert_int_eq(wal_sync(w), MS_OK);
    wal_get_stats(w, &st);
    ck_assert_uint_eq(st.fsyncs, 1);
    put_entries(w, 101, 150, 2);
    /* Not synced: lost on "crash" (close without sync). */
    wal_close(w);

    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    check_entries(&l, 1, 100, 2);
    ck_assert_uint_eq(l.hs.term, 2);
    ck_assert_uint_eq(l.hs.commit, 100);
    ck_assert_uint_eq(l.meta_len, 4);
    ck_assert(memcmp(l.meta, "meta", 4) == 0);
    wal_log_fini(&l);
    /* Appending continues after the replayed end. */
    put_entries(w, 101, 120, 2);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 50, NULL, 0, 0, &w, &l), MS_OK);
    check_entries(&l, 50, 120, 2);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

START_TEST(conflict_truncation)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    wal_log_fini(&l);
    put_entries(w, 1, 10, 1);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    /* A new leader rewrites from index 6 in term 3. */
    put_entries(w, 6, 8, 3);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    ck_assert_uint_eq(l.n_entries, 8);
    ck_assert_uint_eq(l.entries[4].term, 1);
    ck_assert_uint_eq(l.entries[5].term, 3);
    ck_assert_uint_eq(l.entries[7].index, 8);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

START_TEST(torn_tail_truncated)
{
    struct wal *w;
    struct wal_log l;
    write_log(0, 20, 1);
    /* Simulate a crash in the middle of the next write: half a record after the last one. */
    char path[4200];
    size_t size, end;
    uint32_t crc;
    free(last_segment(path, sizeof(path), &size, &end, &crc));
    int fd = open(path, O_RDWR);
    struct buf b;
    buf_init(&b);
    uint8_t payload[2000];
    memset(payload, 'x', sizeof(payload));
    wal_record_encode(&b, WAL_REC_ENTRY, payload, sizeof(payload), &crc);
    ck_assert_int_eq(pwrite(fd, b.p, 700, (off_t)end), 700); /* the rest never reached disk */
    buf_fini(&b);
    close(fd);

    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    check_entries(&l, 1, 20, 1);
    wal_log_fini(&l);
    /* The tear is zeroed in place: the segment keeps its preallocated size. */
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_size, WAL_SEGMENT_BYTES_DEFAULT);
    put_entries(w, 21, 25, 1);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    check_entries(&l, 1, 25, 1);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

START_TEST(corruption_detected)
{
    struct wal *w;
    struct wal_log l;
    /* Small segments so that the damage lands in a sealed one. */
    write_rolled_log(4096, 200, 10);
    ck_assert_int_ge(count_segments(), 3);
    char path[4200];
    segment_path(0, path, sizeof(path));
    int fd = open(path, O_RDWR);
    uint8_t c;
    ck_assert_int_eq(pread(fd, &c, 1, 200), 1);
    c ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, 200), 1);
    close(fd);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 4096, &w, &l), MS_E_DATA_CORRUPT);
    /* Restored, it reads back whole. */
    fd = open(path, O_RDWR);
    c ^= 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, 200), 1);
    close(fd);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 4096, &w, &l), MS_OK);
    check_entries(&l, 1, 200, 1);
    wal_log_fini(&l);
    wal_close(w);
    /* A missing middle segment is corruption too. */
    DIR *d = opendir(dir);
    struct dirent *e;
    char mid[4300] = "";
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "0000000000000001-", 17) == 0)
            snprintf(mid, sizeof(mid), "%s/%s", dir, e->d_name);
    closedir(d);
    ck_assert(mid[0]);
    ck_assert_int_eq(unlink(mid), 0);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 4096, &w, &l), MS_E_DATA_CORRUPT);
}
END_TEST

/* Snapshots every 150 entries with small segments, each followed by the release of the
 * segments it covers, as the memory backend does. The oldest segment left then starts with a
 * header whose marker is an older snapshot than the one before its first entry. Nothing here
 * depends on this version's writer: older ones laid the files out the same way. */
START_TEST(snapshots_release_rolled_segments)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 4096, &w, &l), MS_OK);
    wal_log_fini(&l);
    uint64_t snap_index = 0;
    for (uint64_t i = 1; i <= 1000; i += 10) {
        put_entries(w, i, i + 9, 3);
        ck_assert_int_eq(wal_sync(w), MS_OK);
        if ((i + 9) % 150 == 0) {
            snap_index = i + 9;
            struct raft_snapshot_meta m = {.index = snap_index, .term = 3};
            ck_assert_int_eq(wal_append_snapshot(w, &m), MS_OK);
            ck_assert_int_eq(wal_sync(w), MS_OK);
            ck_assert_int_eq(wal_release_before(w, snap_index + 1), MS_OK);
        }
    }
    ck_assert_uint_eq(snap_index, 900);
    ck_assert_int_ge(count_segments(), 2);
    char first[4200];
    segment_path(0, first, sizeof(first));
    ck_assert_ptr_null(strstr(first, "/0000000000000000-")); /* the first ones are gone */
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, snap_index + 1, NULL, 0, 4096, &w, &l), MS_OK);
    ck_assert(l.has_snapshot);
    ck_assert_uint_eq(l.snap.index, snap_index);
    check_entries(&l, snap_index + 1, 1000, 3);
    wal_log_fini(&l);
    wal_close(w);
    /* The name is checked too: an oldest segment that claims to start earlier than its first
     * entry has a hole before that entry. */
    char *dash = strrchr(first, '-');
    unsigned long long idx = strtoull(dash + 1, NULL, 16);
    ck_assert_uint_gt(idx, 5);
    char moved[4300];
    snprintf(moved, sizeof(moved), "%.*s-%016llx.wal", (int)(dash - first), first, idx - 5);
    ck_assert_int_eq(rename(first, moved), 0);
    ck_assert_int_eq(wal_open(dir, snap_index + 1, NULL, 0, 4096, &w, &l), MS_E_DATA_CORRUPT);
}
END_TEST

/* Segments are preallocated: one cut short inside its records lost acknowledged entries, and
 * the log refuses to open rather than drop them as a torn tail. */
START_TEST(truncated_segment_refused)
{
    struct wal *w;
    struct wal_log l;
    write_log(1 << 20, 3000, 1);
    char path[4200];
    size_t size, end;
    uint32_t crc;
    uint8_t *copy = last_segment(path, sizeof(path), &size, &end, &crc);
    ck_assert_uint_gt(end, 60000);
    /* Cut in the middle of a record, and exactly after one: both refused. */
    for (int cut = 0; cut < 2; cut++) {
        off_t at = cut ? (off_t)walk_records(copy, size, end / 2, &crc) : (off_t)(end / 2);
        if (cut)
            ck_assert_int_ne(at, (off_t)(end / 2)); /* the middle is inside a record */
        int fd = open(path, O_RDWR);
        ck_assert_int_eq(ftruncate(fd, at), 0);
        close(fd);
        ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 1 << 20, &w, &l), MS_E_DATA_CORRUPT);
        /* Nothing was changed by the refusal: put back, it all reads again. */
        struct stat sb;
        ck_assert_int_eq(stat(path, &sb), 0);
        ck_assert_int_eq(sb.st_size, at);
        fd = open(path, O_RDWR);
        ck_assert_int_eq(pwrite(fd, copy, size, 0), (ssize_t)size);
        close(fd);
        ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 1 << 20, &w, &l), MS_OK);
        check_entries(&l, 1, 3000, 1);
        wal_log_fini(&l);
        wal_close(w);
    }
    free(copy);
    /* Cut inside the zeros after the data: nothing is lost, it opens (at its full size again)
     * and appends. */
    ck_assert_int_eq(truncate(path, (off_t)end + 100), 0);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 1 << 20, &w, &l), MS_OK);
    check_entries(&l, 1, 3000, 1);
    wal_log_fini(&l);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_size, 1 << 20);
    put_entries(w, 3001, 3010, 1);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 1 << 20, &w, &l), MS_OK);
    check_entries(&l, 1, 3010, 1);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

/* Open the log with segments of seg_bytes: entries 1..n (term 1) read back; append n more
 * and open again: 1..2n read back. */
static void reopen_and_append(uint64_t seg_bytes, uint64_t n)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, seg_bytes, &w, &l), MS_OK);
    check_entries(&l, 1, n, 1);
    wal_log_fini(&l);
    put_entries(w, n + 1, 2 * n, 1);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, seg_bytes, &w, &l), MS_OK);
    check_entries(&l, 1, 2 * n, 1);
    wal_log_fini(&l);
    wal_close(w);
}

/* Sealed segments end where their data ends, at or past the segment size they were written
 * with: reopened with a larger size (or written by a version that left them shorter), they
 * are whole, not truncated. Only the segment being written is held to the size. */
START_TEST(sealed_segment_shorter_than_size)
{
    write_rolled_log(4096, 400, 20);
    ck_assert_int_ge(count_segments(), 3);
    char first[4200];
    segment_path(0, first, sizeof(first));
    struct stat sb;
    ck_assert_int_eq(stat(first, &sb), 0);
    ck_assert_int_lt(sb.st_size, 8192);
    reopen_and_append(8192, 400);
}
END_TEST

/* A small record straddling a 512-byte boundary whose second sector never reached the disk
 * fails its CRC without a 512-byte zero run: in the last segment it is a torn tail, cut off
 * with everything after it. A CRC failure without a zeroed sector stays corruption. */
START_TEST(torn_sector_small_record)
{
    struct wal *w;
    struct wal_log l;
    write_log(0, 200, 1);
    char path[4200];
    size_t size, end;
    uint32_t crc;
    uint8_t *data = last_segment(path, sizeof(path), &size, &end, &crc);
    /* The last entry record with a sector boundary inside it. */
    size_t at = 0, torn = 0, boundary = 0, used;
    uint64_t torn_index = 0, entries = 0;
    struct wal_rec r;
    crc = be32_get(data + 9);
    while (at < end && wal_record_decode(data + at, size - at, crc, &r, &used) == WAL_DEC_OK) {
        if (r.type == WAL_REC_ENTRY) {
            entries++;
            size_t b = (at / 512 + 1) * 512;
            if (b < at + used) {
                torn = at;
                boundary = b;
                torn_index = entries;
            }
        }
        crc = r.crc;
        at += used;
    }
    ck_assert_uint_eq(entries, 200);
    ck_assert_uint_gt(torn_index, 100);
    ck_assert_uint_lt(boundary - torn, 512);

    int fd = open(path, O_RDWR);
    /* A flipped byte in that record (no zeroed sector): refused. */
    uint8_t c = data[torn + 10] ^ 0x40;
    ck_assert_int_eq(pwrite(fd, &c, 1, (off_t)torn + 10), 1);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_E_DATA_CORRUPT);
    ck_assert_int_eq(pwrite(fd, data + torn + 10, 1, (off_t)torn + 10), 1);
    /* The sectors from the boundary on never reached the disk. */
    uint8_t *zeros = calloc(1, end - boundary);
    ck_assert_int_eq(pwrite(fd, zeros, end - boundary, (off_t)boundary), (ssize_t)(end - boundary));
    free(zeros);
    close(fd);
    reopen_and_append(0, torn_index - 1);

    /* The record decoder alone, on the torn bytes: the sector is found only with the offset. */
    uint32_t chain = be32_get(data + 9);
    at = 0;
    while (at < torn && wal_record_decode(data + at, size - at, chain, &r, &used) == WAL_DEC_OK) {
        chain = r.crc;
        at += used;
    }
    ck_assert_uint_eq(at, torn);
    memset(data + boundary, 0, end - boundary);
    ck_assert_int_eq(wal_record_decode(data + torn, size - torn, chain, &r, &used),
                     WAL_DEC_CORRUPT);
    ck_assert(wal_record_torn_sectors(data + torn, size - torn, chain, torn));
    ck_assert(!wal_record_torn_sectors(data + torn, size - torn, chain, torn + 256));
    free(data);
}
END_TEST

START_TEST(rollover_and_release)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 8192, &w, &l), MS_OK);
    wal_log_fini(&l);
    for (uint64_t i = 1; i <= 1000; i += 50) {
        put_entries(w, i, i + 49, 7);
        ck_assert_int_eq(wal_sync(w), MS_OK);
    }
    int before = count_segments();
    ck_assert_int_ge(before, 5);
    struct raft_snapshot_meta snap = {.index = 600, .term = 7};
    ck_assert_int_eq(wal_append_snapshot(w, &snap), MS_OK);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    ck_assert_int_eq(wal_release_before(w, 600), MS_OK);
    int after = count_segments();
    ck_assert_int_lt(after, before);
    ck_assert_int_ge(after, 1);
    /* The released files go in steps of at most the bytes asked for, oldest first. */
    long left;
    int released = count_released(&left);
    ck_assert_int_eq(released, before - after);
    ck_assert_int_ge(left, (long)released * 8192);
    /* The first step makes the new names durable and shrinks nothing. */
    ck_assert(wal_release_step(w, 3000));
    long same;
    ck_assert_int_eq(count_released(&same), released);
    ck_assert_int_eq(same, left);
    long all = left;
    int steps = 0;
    for (bool more = true; more && steps < 1000; steps++) {
        more = wal_release_step(w, 3000);
        long now;
        int files = count_released(&now);
        ck_assert_int_gt(left - now, 0);
        ck_assert_int_le(left - now, 3000); /* 3,000 bytes, or a file's rest with the file */
        ck_assert(left - now == 3000 || files < released);
        released = files;
        left = now;
    }
    ck_assert_int_ge(steps, all / 3000);
    ck_assert_int_eq(count_released(&left), 0);
    ck_assert(!wal_release_step(w, 3000));
    wal_close(w);
    /* The hard state survives in the remaining segments' headers and records. */
    ck_assert_int_eq(wal_open(dir, 601, NULL, 0, 8192, &w, &l), MS_OK);
    ck_assert_uint_eq(l.hs.term, 7);
    ck_assert_uint_eq(l.hs.commit, 1000);
    ck_assert(l.has_snapshot);
    ck_assert_uint_eq(l.snap.index, 600);
    check_entries(&l, 601, 1000, 7);
    wal_log_fini(&l);
    /* Releasing everything keeps the active segment. */
    ck_assert_int_eq(wal_release_before(w, 100000), MS_OK);
    ck_assert_int_eq(count_segments(), 1);
    wal_close(w);
    /* A leftover temp segment from an interrupted cut is removed at open. */
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s/00000000000000ff-0000000000000000.wal.tmp", dir);
    int fd = open(tmp, O_CREAT | O_WRONLY, 0600);
    close(fd);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 8192, &w, &l), MS_OK);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    wal_log_fini(&l);
    /* So is a released one that a stop left partly removed. */
    for (uint64_t i = 1001; i <= 2000; i += 50) {
        put_entries(w, i, i + 49, 7);
        ck_assert_int_eq(wal_sync(w), MS_OK);
    }
    ck_assert_int_eq(wal_release_before(w, 1900), MS_OK);
    ck_assert(wal_release_step(w, 1000)); /* the directory's sync */
    ck_assert(wal_release_step(w, 1000)); /* a first shrink */
    ck_assert_int_ge(count_released(&left), 1);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 1900, NULL, 0, 8192, &w, &l), MS_OK);
    ck_assert_int_eq(count_released(&left), 0);
    check_entries(&l, 1900, 2000, 7);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

/* Wait (bounded) for the asynchronous sync in flight and claim it. */
static void wait_synced(struct wal *w)
{
    bool done = false;
    for (int i = 0; i < 1000 && !done; i++) {
        struct pollfd p = {.fd = wal_sync_fd(w), .events = POLLIN};
        ck_assert_int_ge(poll(&p, 1, 10), 0);
        ck_assert_int_eq(wal_sync_end(w, &done), MS_OK);
    }
    ck_assert(done);
}

/* Begin a sync: asynchronous where the kernel has AIO fdsync, in place otherwise (and also
 * when a segment change just synced what was buffered). */
static bool begin(struct wal *w)
{
    bool started;
    ck_assert_int_eq(wal_sync_begin(w, &started), MS_OK);
    ck_assert(!started || wal_sync_fd(w) >= 0);
    return started;
}

START_TEST(async_sync)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    wal_log_fini(&l);
    bool started;
    /* Nothing buffered: nothing to start. */
    ck_assert_int_eq(wal_sync_begin(w, &started), MS_OK);
    ck_assert(!started);
    put_entries(w, 1, 10, 3);
    if (wal_sync_fd(w) >= 0) {
        ck_assert(begin(w));
        /* One at a time: a second begin before the first is claimed is refused. */
        put_entries(w, 11, 20, 3);
        ck_assert_int_eq(wal_sync_begin(w, &started), MS_E_INTERNAL);
        wait_synced(w);
        /* A wake-up with nothing in flight is not a completion. */
        bool done = true;
        ck_assert_int_eq(wal_sync_end(w, &done), MS_OK);
        ck_assert(!done);
        ck_assert(wal_dirty(w)); /* 11..20 wait for the next sync */
        ck_assert(begin(w));
        wait_synced(w);
    } else {
        ck_assert(!begin(w));
        put_entries(w, 11, 20, 3);
        ck_assert(!begin(w));
    }
    ck_assert(!wal_dirty(w));
    struct wal_stats st;
    wal_get_stats(w, &st);
    ck_assert_uint_eq(st.fsyncs, 2);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    check_entries(&l, 1, 20, 3);
    ck_assert_uint_eq(l.hs.commit, 20);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

/* wal_sync waits for the asynchronous sync in flight, which wal_sync_end still claims; then
 * nothing is left to begin. */
START_TEST(async_then_blocking_sync)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    wal_log_fini(&l);
    put_entries(w, 1, 5, 4);
    bool started = begin(w);
    put_entries(w, 6, 9, 4);
    ck_assert_int_eq(wal_sync(w), MS_OK);
    if (started)
        wait_synced(w);
    ck_assert_int_eq(wal_sync_begin(w, &started), MS_OK);
    ck_assert(!started);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 0, &w, &l), MS_OK);
    check_entries(&l, 1, 9, 4);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

/* Small segments and records appended while each sync is in flight: every segment change
 * happens with records buffered, and the log still reads back whole and in order. */
START_TEST(async_rollover)
{
    struct wal *w;
    struct wal_log l;
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 4096, &w, &l), MS_OK);
    wal_log_fini(&l);
    put_entries(w, 1, 10, 5);
    bool in_flight = begin(w);
    for (uint64_t i = 11; i <= 2000; i += 10) {
        put_entries(w, i, i + 9, 5);
        if (in_flight)
            wait_synced(w);
        in_flight = begin(w);
    }
    if (in_flight)
        wait_synced(w);
    ck_assert_int_ge(count_segments(), 10);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 4096, &w, &l), MS_OK);
    check_entries(&l, 1, 2000, 5);
    ck_assert_uint_eq(l.hs.commit, 2000);
    wal_log_fini(&l);
    /* A close with a sync in flight waits for it. */
    put_entries(w, 2001, 2010, 5);
    begin(w);
    wal_close(w);
    ck_assert_int_eq(wal_open(dir, 0, NULL, 0, 4096, &w, &l), MS_OK);
    check_entries(&l, 1, 2010, 5);
    wal_log_fini(&l);
    wal_close(w);
}
END_TEST

/* Counts the records a reader hands up and checks they come in the order written. */
struct seen {
    size_t n;
};

static ms_err check_record(void *ctx, enum be_bucket b, const uint8_t *k, size_t kl,
                           const uint8_t *v, size_t vl)
{
    struct seen *s = ctx;
    char want[32];
    int n = snprintf(want, sizeof(want), "k%05zu", s->n);
    ck_assert_int_eq(b, (int)(s->n % BE_BUCKET_COUNT_));
    ck_assert_uint_eq(kl, (size_t)n);
    ck_assert(memcmp(k, want, kl) == 0);
    ck_assert_uint_eq(vl, s->n % 300);
    ck_assert(vl == 0 || (v[0] == 'v' && v[vl - 1] == 'v'));
    s->n++;
    return MS_OK;
}

static void write_snapshot(const char *path, size_t records)
{
    struct snap_header h = {.index = 77, .term = 3, .revision = 50};
    ms_err e;
    struct snap_writer *w = snap_writer_create(path, &h, &e);
    ck_assert_ptr_nonnull(w);
    uint8_t v[300];
    memset(v, 'v', sizeof(v));
    for (size_t i = 0; i < records; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "k%05zu", i);
        ck_assert_int_eq(snap_writer_put(w, (enum be_bucket)(i % BE_BUCKET_COUNT_),
                                         (const uint8_t *)k, (size_t)n, v, i % 300),
                         MS_OK);
    }
    ck_assert_int_eq(snap_writer_finish(w), MS_OK);
}

/* Read path in slices of 7 records; returns the reader's last answer. */
static ms_err read_slices(const char *path, struct seen *seen)
{
    struct snap_header h;
    ms_err e;
    struct snap_reader *r = snap_reader_open(path, &h, &e);
    if (!r)
        return e;
    ck_assert_uint_eq(h.index, 77);
    ck_assert_uint_eq(h.term, 3);
    ck_assert_int_eq(h.revision, 50);
    bool done = false;
    for (int turns = 0; !done && turns < 1000; turns++)
        if ((e = snap_reader_next(r, 7, check_record, seen, &done)) != MS_OK)
            break;
    snap_reader_close(r);
    return done ? MS_OK : e;
}

/* The slice reader hands up every record in order, and finds damage anywhere by the end. */
START_TEST(snapshot_reader_slices)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/snap-1.snap", dir);
    write_snapshot(path, 1000);
    struct seen seen = {0};
    ck_assert_int_eq(read_slices(path, &seen), MS_OK);
    ck_assert_uint_eq(seen.n, 1000);

    /* One value byte flipped: the records parse, the CRC at the end does not match. */
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t c;
    off_t at = sb.st_size / 2;
    ck_assert_int_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x01;
    ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
    seen.n = 0;
    ck_assert_int_eq(read_slices(path, &seen), MS_E_DATA_CORRUPT);
    /* Cut short: damaged too, never read past the end. */
    c ^= 0x01;
    ck_assert_int_eq(pwrite(fd, &c, 1, at), 1);
    ck_assert_int_eq(ftruncate(fd, sb.st_size - 9), 0);
    close(fd);
    seen.n = 0;
    ck_assert_int_eq(read_slices(path, &seen), MS_E_DATA_CORRUPT);
    /* Not a snapshot at all. */
    fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert_int_eq(write(fd, "not a snapshot, not at all, really", 34), 34);
    close(fd);
    seen.n = 0;
    ck_assert_int_eq(read_slices(path, &seen), MS_E_DATA_CORRUPT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("wal");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, record_framing);
    tcase_add_test(tc, append_and_replay);
    tcase_add_test(tc, conflict_truncation);
    tcase_add_test(tc, torn_tail_truncated);
    tcase_add_test(tc, corruption_detected);
    tcase_add_test(tc, rollover_and_release);
    tcase_add_test(tc, snapshots_release_rolled_segments);
    tcase_add_test(tc, truncated_segment_refused);
    tcase_add_test(tc, sealed_segment_shorter_than_size);
    tcase_add_test(tc, torn_sector_small_record);
    tcase_add_test(tc, async_sync);
    tcase_add_test(tc, async_then_blocking_sync);
    tcase_add_test(tc, async_rollover);
    tcase_add_test(tc, snapshot_reader_slices);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
