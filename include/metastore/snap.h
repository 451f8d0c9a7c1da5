/* snap.h - snapshot files: every bucket of a backend at one applied index.
 *
 * Format: "MSSNAP01", u64 index, u64 term, u64 revision (big-endian), then records
 * [u8 1][u8 bucket][uvarint key length][key][uvarint value length][value], then [u8 0] and a
 * CRC-32C of every preceding byte. Written through a temp file, fdatasync, rename and a
 * directory fsync, so a snapshot file either is whole or does not exist.
 *
 * The same file serves the memory backend's durability (with the WAL), the backup stream of
 * /v3/maintenance/snapshot, and `metastore --restore-snapshot`.
 */
#ifndef METASTORE_SNAP_H
#define METASTORE_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/be.h"
#include "metastore/err.h"

struct snap_header {
    uint64_t index; /* last applied raft index in the snapshot */
    uint64_t term;
    int64_t revision; /* MVCC revision at that index */
};

struct snap_writer;

/* Create path (written as path.tmp until snap_writer_finish). NULL with *err on failure. */
struct snap_writer *snap_writer_create(const char *path, const struct snap_header *h, ms_err *err);
ms_err snap_writer_put(struct snap_writer *w, enum be_bucket b, const uint8_t *k, size_t klen,
                       const uint8_t *v, size_t vlen);
/* Bytes written so far. */
uint64_t snap_writer_size(const struct snap_writer *w);
/* Trailer, fdatasync, rename into place, directory fsync; frees w. */
ms_err snap_writer_finish(struct snap_writer *w);
/* The same in steps, for a caller that syncs without waiting: snap_writer_seal writes the
 * trailer and gives the file to sync (fdatasync); once it is durable, snap_writer_publish
 * renames it into place (the caller then syncs its directory) and snap_writer_abort frees w,
 * leaving the file. On failure both have dropped the temp file (w is still to be freed). */
ms_err snap_writer_seal(struct snap_writer *w, int *fd);
ms_err snap_writer_publish(struct snap_writer *w);
/* After snap_writer_seal, the rest in place: fdatasync, snap_writer_publish, directory fsync
 * (w is still to be freed). */
ms_err snap_writer_persist(struct snap_writer *w);
/* Drop the temp file; frees w. Accepts NULL. */
void snap_writer_abort(struct snap_writer *w);

typedef ms_err (*snap_record_fn)(void *ctx, enum be_bucket b, const uint8_t *k, size_t klen,
                                 const uint8_t *v, size_t vlen);

/* Read and verify a whole snapshot file: the header, then each record to fn (may be NULL to only
 * verify). MS_E_DATA_CORRUPT (logged with the offset) on any damage. A file in etcd's saved
 * layout (the snapshot zero-padded to a multiple of 512 bytes, then its SHA-256: what
 * `etcdctl snapshot save` writes from the gRPC stream) is read as the snapshot inside. */
ms_err snap_read(const char *path, struct snap_header *h, snap_record_fn fn, void *ctx);

/* A snapshot file read a slice at a time, so that loading a large one does not hold the
 * caller for long: the header at open, then the records in order. The CRC is checked as the
 * records go by, so a damaged file is known only at the end: load into something that can be
 * thrown away. Reads this format only (not etcd's saved layout). */
struct snap_reader;

/* Map path and read its header into *h. NULL with *err (MS_E_DATA_CORRUPT, logged, for a file
 * that is not a snapshot). */
struct snap_reader *snap_reader_open(const char *path, struct snap_header *h, ms_err *err);
/* Hand up to max records to fn. *done once the end is read and the whole file verified;
 * MS_E_DATA_CORRUPT on damage, or fn's error. */
ms_err snap_reader_next(struct snap_reader *r, size_t max, snap_record_fn fn, void *ctx,
                        bool *done);
/* Accepts NULL. */
void snap_reader_close(struct snap_reader *r);

/* The newest snapshot file in dir (names snap-<index:016x>.snap) that verifies; returns false
 * if there is none. Older or damaged ones are left alone. */
bool snap_find_latest(const char *dir, char *out, size_t cap, struct snap_header *h);

/* Decode a snapshot held in memory (for tests and fuzzing). */
ms_err snap_decode(const uint8_t *p, size_t len, struct snap_header *h, snap_record_fn fn,
                   void *ctx);

#endif
