/* fs.h - small file-system helpers shared by the modules that own files (wal, server). */
#ifndef METASTORE_FS_H
#define METASTORE_FS_H

#include "metastore/err.h"

/* mkdir -p with mode 0700: 0, or -1 with errno set. */
int fs_mkdirs(const char *path);

/* fsync a directory, so that names created, renamed or removed in it are durable.
 * MS_E_IO on failure (errno set). */
ms_err fs_sync_dir(const char *dir);

#endif
