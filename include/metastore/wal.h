/* wal.h - the write-ahead log: raft entries, hard state and snapshot markers in segment files.
 *
 * Layout: <dir>/<seq:016x>-<index:016x>.wal, seq counting from 0, index the first entry index
 * the segment was opened for. Segments are preallocated (64 MiB by default). Each starts with a
 * CRC record (the chain value so far), a metadata record, the current hard state and the latest
 * snapshot marker, so releasing old segments never loses them.
 *
 * Records are framed as: u32 length of type + payload, u32 CRC-32C, u8 type, payload. The CRC is
 * rolling: it covers the record's type and payload and is seeded with the previous record's CRC, so
 * lost or reordered records are detected too (etcd wal/encoder.go in spirit).
 *
 * Durability: wal_append only buffers; wal_sync writes the batch with one write and one
 * fdatasync (group commit: everything appended in one loop turn shares one sync), and
 * wal_sync_begin/wal_sync_end do the same with the fdatasync in the kernel's hands (Linux AIO),
 * its completion signalled on wal_sync_fd(). After a
 * segment is created or renamed, its directory is fsynced too.
 *
 * Opening: the last segment may end in a torn record (a crash during a write): the log is cut
 * there (the rest of the file zeroed, its size kept). Anything else that fails to decode (bad
 * CRC without a torn sector, a gap between segments, trailing garbage in a sealed segment) stops
 * the server with a message naming the file and the offset. So does a segment shorter than
 * seg_bytes whose records run to its end: segments are preallocated, so that file lost its tail
 * (it was truncated), it was not torn by a crash.
 *
 * Snapshot markers: the newest one read wins (a segment header repeats an older one). The
 * entries of the oldest segment left start at the index in its name, whatever its header's
 * marker says; from there on the log must have no gap.
 */
#ifndef METASTORE_WAL_H
#define METASTORE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/err.h"
#include "metastore/metrics.h"
#include "metastore/raft.h"

#define WAL_SEGMENT_BYTES_DEFAULT (64u << 20)
#define WAL_MAX_RECORD_BYTES      (80u << 20)

enum wal_rec_type {
    WAL_REC_CRC = 1,        /* payload: u32 chain value at the start of the segment */
    WAL_REC_META = 2,       /* payload: opaque metadata given at creation */
    WAL_REC_ENTRY = 3,      /* payload: raft_entry_encode */
    WAL_REC_HARD_STATE = 4, /* payload: raft_hard_state_encode */
    WAL_REC_SNAPSHOT = 5,   /* payload: raft_snapshot_meta_encode */
};

struct wal;

/* What the log holds after opening: the latest hard state and snapshot marker, the metadata, and
 * the entries with index >= from_index in log order (a later entry with an index already seen
 * replaces it and everything after it, as raft appends do). Entry data borrows from the log and
 * lives until wal_log_fini. */
struct wal_log {
    struct raft_hard_state hs;
    bool has_snapshot;
    struct raft_snapshot_meta snap;
    uint8_t *meta;
    size_t meta_len;
    struct raft_entry *entries;
    size_t n_entries;
    void *store_; /* owns the entry bytes */
};

void wal_log_fini(struct wal_log *l);

struct wal_stats {
    uint64_t fsyncs;
    uint64_t bytes_written;
    uint64_t segments;
    struct metrics_hist fsync_seconds; /* etcd_disk_wal_fsync_duration_seconds */
};

/* Open the WAL in dir (created with one segment if it has none). Reads every segment, keeps the
 * entries with index >= from_index in *log, truncates a torn tail. meta/meta_len are written
 * into a new log (ignored for an existing one). seg_bytes is the segment size (0: default); keep
 * it the same for a directory, since a segment shorter than it whose records run to its end is
 * taken for a truncated one.
 * On corruption returns MS_E_DATA_CORRUPT having logged the file and offset. */
ms_err wal_open(const char *dir, uint64_t from_index, const uint8_t *meta, size_t meta_len,
                uint64_t seg_bytes, struct wal **out, struct wal_log *log);

/* Close (no sync). Accepts NULL. */
void wal_close(struct wal *w);

/* Buffer records for the next wal_sync: a hard state (NULL: none) and entries. */
ms_err wal_append(struct wal *w, const struct raft_hard_state *hs, const struct raft_entry *ents,
                  size_t n);

/* Buffer a snapshot marker: entries up to m->index are covered by a snapshot. */
ms_err wal_append_snapshot(struct wal *w, const struct raft_snapshot_meta *m);

/* Write everything buffered with one write and one fdatasync, then start a new segment if the
 * current one is full. Waits first for an asynchronous sync in flight (which wal_sync_end
 * still claims). Nothing buffered and nothing in flight: no system call. MS_E_IO on failure (the
 * caller must stop: the state of the file is unknown). */
ms_err wal_sync(struct wal *w);

/* The asynchronous form of wal_sync, for the event loop (one at a time). Writes everything
 * buffered and submits its fdatasync without waiting. *started is false when the records are
 * durable on return: nothing was buffered, or this system cannot sync asynchronously and the
 * call synced in place. When *started is true, wal_sync_fd() becomes readable once the sync
 * completes: call wal_sync_end then. Records buffered meanwhile wait for the next begin.
 * MS_E_INTERNAL if the sync before was not claimed by wal_sync_end; MS_E_IO as wal_sync. */
ms_err wal_sync_begin(struct wal *w, bool *started);

/* Readable when an asynchronous sync completes; -1 if syncs are never asynchronous here. */
int wal_sync_fd(const struct wal *w);

/* Claim the sync started by wal_sync_begin: *done is true once it has completed (also when
 * wal_sync waited for it meanwhile) and its records are durable; false on a wake-up that was
 * not its completion. Starts a new segment if the active one is full. MS_E_IO if the
 * fdatasync failed (the caller must stop). */
ms_err wal_sync_end(struct wal *w, bool *done);

/* True if records are buffered and not yet synced. */
bool wal_dirty(const struct wal *w);

/* Release whole segments all of whose entries are below index (never the segment being
 * written): they leave the log at once (renamed *.wal.del) and their files go in steps of
 * wal_release_step. Call only once the state up to index is durable elsewhere (backend commit
 * or snapshot). */
ms_err wal_release_before(struct wal *w, uint64_t index);

/* Shrink the oldest released file by up to bytes, removing it once empty, so that no call
 * holds the caller long (freeing a file's blocks costs in proportion to its size). The first
 * step after a release syncs the directory instead, so that no segment can come back from a
 * crash cut short. True while released files remain. Whatever remains at close is removed by
 * the next open. */
bool wal_release_step(struct wal *w, uint64_t bytes);

void wal_get_stats(const struct wal *w, struct wal_stats *out);

/* ---- record framing (exposed for tests and fuzzing) ---- */

enum wal_dec {
    WAL_DEC_OK = 0,
    WAL_DEC_END = 1,     /* a zero length field: preallocated space, no more records */
    WAL_DEC_TORN = 2,    /* a partial record: past the end, or a zeroed sector inside it */
    WAL_DEC_CORRUPT = 3, /* anything else */
};

struct wal_rec {
    enum wal_rec_type type;
    const uint8_t *payload; /* borrows from the input */
    size_t len;
    uint32_t crc;
};

/* Append one framed record to out; *crc is the chain value, updated. */
struct buf;
void wal_record_encode(struct buf *out, enum wal_rec_type type, const uint8_t *payload, size_t len,
                       uint32_t *crc);

/* Decode the record at p (avail bytes left in the segment), checking it against chain value
 * crc. On WAL_DEC_OK, *rec is filled and *consumed is the frame size. */
enum wal_dec wal_record_decode(const uint8_t *p, size_t avail, uint32_t crc, struct wal_rec *rec,
                               size_t *consumed);

/* True if the bytes at p (avail left in the segment) do not hold a whole frame: the header, or
 * the length it declares, runs past avail. Data that ends there ran into the end of the file
 * (a zero header, the end of the data, fits in a preallocated segment). */
bool wal_record_past_end(const uint8_t *p, size_t avail);

/* True if the record at p (avail bytes left in the segment), which starts at byte file_off of
 * its file, looks like a write cut short by a crash: its frame fits in avail and its check
 * against chain value crc fails, and one of its pieces between 512-byte boundaries of the file
 * is all zeros, to the end of that sector (one that never reached the disk). wal_record_decode
 * reports such a record of under 512 bytes as corrupt: it does not know the file offset. Only
 * the segment being written can end in a tear. */
bool wal_record_torn_sectors(const uint8_t *p, size_t avail, uint32_t crc, uint64_t file_off);

#endif
