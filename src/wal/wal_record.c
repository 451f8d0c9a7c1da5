/* wal_record.c - framing of WAL records: u32 length of type + payload (so never 0: a zero
 * length is the end of the data), u32 rolling CRC-32C, u8 type, payload.
 *
 * Decoding is strict and never reads past avail. A record that runs past the end of the
 * segment, or whose CRC fails while it contains a zeroed 512-byte run, is reported as torn (a
 * write cut short by a crash into preallocated zeros); other failures are corruption. A small
 * record torn at a sector boundary has no such run: wal_record_torn_sectors, which knows the
 * record's place in the file, tells it from damage (as etcd's isTornEntry does).
 */
#include "metastore/buf.h"
#include "metastore/crc32c.h"
#include "metastore/wal.h"

#define WAL_HDR    9
#define WAL_SECTOR 512 /* the smallest unit a disk writes whole, or not at all */

static uint32_t rec_crc(uint32_t chain, uint8_t type, const uint8_t *p, size_t len)
{
    uint32_t c = crc32c(chain, &type, 1);
    return crc32c(c, p, len);
}

void wal_record_encode(struct buf *out, enum wal_rec_type type, const uint8_t *payload, size_t len,
                       uint32_t *crc)
{
    uint8_t hdr[WAL_HDR];
    *crc = rec_crc(*crc, (uint8_t)type, payload, len);
    be32_put(hdr, (uint32_t)len + 1);
    be32_put(hdr + 4, *crc);
    hdr[8] = (uint8_t)type;
    buf_append(out, hdr, WAL_HDR);
    buf_append(out, payload, len);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* A run of 512 zero bytes: what a sector that never reached the disk looks like. */
static bool has_zero_run(const uint8_t *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        run = p[i] ? 0 : run + 1;
        if (run >= 512)
            return true;
    }
    return false;
}

enum wal_dec wal_record_decode(const uint8_t *p, size_t avail, uint32_t crc, struct wal_rec *rec,
                               size_t *consumed)
{
    if (avail < WAL_HDR)
        return all_zero(p, avail) ? WAL_DEC_END : WAL_DEC_TORN;
    uint32_t flen = be32_get(p);
    if (flen == 0)
        return all_zero(p, WAL_HDR) ? WAL_DEC_END : WAL_DEC_CORRUPT;
    if (flen > WAL_MAX_RECORD_BYTES)
        return WAL_DEC_CORRUPT;
    uint32_t len = flen - 1;
    if ((size_t)len > avail - WAL_HDR)
        return WAL_DEC_TORN;
    uint32_t want = be32_get(p + 4);
    uint8_t type = p[8];
    const uint8_t *payload = p + WAL_HDR;
    if (rec_crc(crc, type, payload, len) != want)
        return has_zero_run(p, WAL_HDR + (size_t)len) ? WAL_DEC_TORN : WAL_DEC_CORRUPT;
    if (type < WAL_REC_CRC || type > WAL_REC_SNAPSHOT)
        return WAL_DEC_CORRUPT;
    rec->type = (enum wal_rec_type)type;
    rec->payload = payload;
    rec->len = len;
    rec->crc = want;
    *consumed = WAL_HDR + (size_t)len;
    return WAL_DEC_OK;
}

bool wal_record_past_end(const uint8_t *p, size_t avail)
{
    return avail < WAL_HDR || (size_t)be32_get(p) > avail - WAL_HDR + 1;
}

bool wal_record_torn_sectors(const uint8_t *p, size_t avail, uint32_t crc, uint64_t file_off)
{
    if (avail < WAL_HDR)
        return false;
    uint32_t flen = be32_get(p);
    if (flen == 0 || flen > WAL_MAX_RECORD_BYTES || (size_t)(flen - 1) > avail - WAL_HDR)
        return false;
    size_t n = WAL_HDR + (size_t)(flen - 1);
    if (rec_crc(crc, p[8], p + WAL_HDR, n - WAL_HDR) == be32_get(p + 4))
        return false;
    /* The record's pieces between sector boundaries of the file. A sector that never reached
     * the disk still holds the preallocated zeros, past the record too, to the sector's end. */
    for (size_t at = 0; at < n;) {
        size_t to_boundary = WAL_SECTOR - (size_t)((file_off + at) % WAL_SECTOR);
        size_t chunk = to_boundary < n - at ? to_boundary : n - at;
        size_t sector_rest = to_boundary < avail - at ? to_boundary : avail - at;
        if (all_zero(p + at, chunk) && all_zero(p + at + chunk, sector_rest - chunk))
            return true;
        at += chunk;
    }
    return false;
}
