/* buf.h - a growable byte buffer (used by encoders and tests).
 *
 * Growth failures are sticky: after one failed allocation every append is a no-op and
 * buf_failed() is true, so encoders check once at the end instead of at every append.
 */
#ifndef METASTORE_BUF_H
#define METASTORE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
    uint8_t *p;  /* owned; NULL until the first append */
    size_t len;  /* bytes in use */
    size_t cap;  /* bytes allocated */
    bool failed; /* an allocation failed; contents are incomplete */
};

void buf_init(struct buf *b);
/* Free the storage. The struct may be reused after buf_init. */
void buf_fini(struct buf *b);
/* Make room for n more bytes. Returns false (and sets failed) on OOM or overflow. */
bool buf_reserve(struct buf *b, size_t n);
/* The same, growing to exactly len + n (for a size known in advance, not doubled). */
bool buf_reserve_exact(struct buf *b, size_t n);
void buf_append_slow(struct buf *b, const void *p, size_t n);
/* Appends: inline while the capacity suffices (the common case in encoders). */
static inline void buf_append(struct buf *b, const void *p, size_t n)
{
    if (b->cap - b->len >= n && !b->failed) {
        if (n)
            memcpy(b->p + b->len, p, n);
        b->len += n;
        return;
    }
    buf_append_slow(b, p, n);
}
static inline void buf_putc(struct buf *b, char c)
{
    if (b->len < b->cap && !b->failed) {
        b->p[b->len++] = (uint8_t)c;
        return;
    }
    buf_append_slow(b, &c, 1);
}
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Decimal text of v. */
void buf_put_i64(struct buf *b, int64_t v);
void buf_put_u64(struct buf *b, uint64_t v);
/* Fixed-width big-endian integers (binary codecs). */
void buf_put_be32(struct buf *b, uint32_t v);
void buf_put_be64(struct buf *b, uint64_t v);
/* LEB128 unsigned varint. */
void buf_put_uvarint(struct buf *b, uint64_t v);
/* A byte string as its uvarint length and its bytes (read back with rd_lbytes). */
void buf_put_lbytes(struct buf *b, const uint8_t *p, size_t n);
/* Bytes buf_put_uvarint takes for v (also a protobuf varint's size). */
static inline size_t buf_uvarint_len(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}
static inline bool buf_failed(const struct buf *b)
{
    return b->failed;
}
/* Hand the storage to the caller (who frees it with free()); b is left empty. */
uint8_t *buf_steal(struct buf *b, size_t *len);

/* A read cursor over borrowed bytes, for binary decoders. Reads past the end set err and
 * return zero; decoders check rd.err once at the end. */
struct rd {
    const uint8_t *p;
    size_t len;
    size_t off;
    bool err;
};
void rd_init(struct rd *r, const uint8_t *p, size_t len);
uint8_t rd_u8(struct rd *r);
uint32_t rd_be32(struct rd *r);
uint64_t rd_be64(struct rd *r);
uint64_t rd_uvarint(struct rd *r);
/* Borrow n bytes; NULL (and err) if fewer remain. */
const uint8_t *rd_bytes(struct rd *r, size_t n);
/* Borrow a byte string written by buf_put_lbytes; NULL, *n 0 (and err) if it runs past the
 * end. */
const uint8_t *rd_lbytes(struct rd *r, size_t *n);
static inline size_t rd_left(const struct rd *r)
{
    return r->len - r->off;
}

/* Big-endian helpers on raw memory. */
static inline void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}
static inline void be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline uint32_t be32_get(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Value of a hex digit, or -1. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
