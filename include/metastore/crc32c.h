/* crc32c.h - CRC-32C (Castagnoli), for WAL records, snapshots and the keyspace hash. */
#ifndef METASTORE_CRC32C_H
#define METASTORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend crc (0 to start) over p[0..n). */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
