/* fs.h - small file-system helpers shared by the modules that own files (wal, server, peer). */
#ifndef METASTORE_FS_H
#define METASTORE_FS_H

#include "metastore/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* mkdir -p with mode 0700: 0, or -1 with errno set. */
int fs_mkdirs(const char *path);

/* fsync a directory, so that names created, renamed or removed in it are durable.
 * MS_E_IO on failure (errno set). */
ms_err fs_sync_dir(const char *dir);

/* Unlink the files of dir whose names start with prefix and end with one of the suffixes
 * (NULL-terminated): what an earlier run left behind. Returns how many went (0 without dir). */
size_t fs_remove_leftovers(const char *dir, const char *prefix, const char *const *suffixes);

/* An fsync or fdatasync submitted through Linux AIO (IOCB_CMD_FSYNC/FDSYNC, Linux 4.18+), one
 * at a time, its completion signalled on an eventfd: the caller's event loop goes on while the
 * disk works. */
struct fs_async_sync;

/* NULL when this system cannot (errno set): the caller syncs in place. */
struct fs_async_sync *fs_async_sync_create(void);

/* Waits for a sync in flight, then frees. */
void fs_async_sync_destroy(struct fs_async_sync *a);

/* Readable once the sync in flight completes. */
int fs_async_sync_fd(const struct fs_async_sync *a);

/* Submit fdatasync (data_only) or fsync of fd. 0, or -1 with errno when it was not submitted
 * (EBUSY: one is in flight; EINVAL: not for this file): then sync in place. */
int fs_async_sync_start(struct fs_async_sync *a, int fd, bool data_only);

/* True while a sync is submitted and not yet reaped. */
bool fs_async_sync_busy(const struct fs_async_sync *a);

/* Reap the sync in flight, waiting for it or not: true once it completed, *res 0 or -errno
 * (a failing reap counts as a failed sync). False when not yet, or when none is in flight.
 * The eventfd is left as it is: a reap that waited leaves the loop its wake-up. */
bool fs_async_sync_reap(struct fs_async_sync *a, bool wait, int *res);

/* Read the eventfd's signal, in the loop's callback before reaping (a signal that comes after
 * the reap is then a wake-up that finds nothing). */
void fs_async_sync_clear(struct fs_async_sync *a);

/* Files removed a step at a time: freeing a large file's blocks costs in proportion to its
 * size (one unlink of 64 MiB took an event loop 30 ms on an idle ext4, over 100 ms beside a
 * busy one), so a loop hands such files here, under a name nothing else uses (renamed within
 * one directory), and shrinks them from a timer. Before a file added since is shrunk, the
 * directory is synced, so that its new name is durable: after a power loss, a file cut short
 * must not come back under its old name. */
struct fs_trash;

/* The trash for files renamed within dir (copied). NULL when out of memory. */
struct fs_trash *fs_trash_create(const char *dir);

/* Frees t; the files still in it stay on disk (their owner removes them at its next start). */
void fs_trash_destroy(struct fs_trash *t);

/* Take path (copied). False when out of memory: then remove it at once. */
bool fs_trash_add(struct fs_trash *t, const char *path);

/* Shrink the oldest file by up to bytes (> 0), removing it once empty; after an add, the first
 * step syncs the directory instead (a failed sync is tried again at the next step, errno
 * set, nothing shrunk meanwhile). True while files remain. A startup that finds such files
 * left over may unlink them at once. */
bool fs_trash_step(struct fs_trash *t, uint64_t bytes);

#endif
