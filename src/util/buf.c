/* buf.c - growable byte buffer with sticky failure, and the rd read cursor. */
#include "metastore/buf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = false;
}

void buf_fini(struct buf *b)
{
    free(b->p);
    buf_init(b);
}

bool buf_reserve(struct buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->cap - b->len >= n)
        return true;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

bool buf_reserve_exact(struct buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->cap - b->len >= n)
        return true;
    if (n > SIZE_MAX - b->len) {
        b->failed = true;
        return false;
    }
    uint8_t *p = realloc(b->p, b->len + n);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = b->len + n;
    return true;
}

void buf_append_slow(struct buf *b, const void *p, size_t n)
{
    if (n == 0 || !buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void buf_puts(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[256];
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof(tmp)) {
        buf_append(b, tmp, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_put_u64(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_append(b, tmp + i, sizeof(tmp) - i);
}

void buf_put_i64(struct buf *b, int64_t v)
{
    if (v < 0) {
        buf_putc(b, '-');
        buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        buf_put_u64(b, (uint64_t)v);
    }
}

void buf_put_be32(struct buf *b, uint32_t v)
{
    uint8_t t[4];
    be32_put(t, v);
    buf_append(b, t, 4);
}

void buf_put_be64(struct buf *b, uint64_t v)
{
    uint8_t t[8];
    be64_put(t, v);
    buf_append(b, t, 8);
}

void buf_put_uvarint(struct buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    buf_append(b, t, n);
}

uint8_t *buf_steal(struct buf *b, size_t *len)
{
    uint8_t *p = b->p;
    *len = b->len;
    buf_init(b);
    return p;
}

void rd_init(struct rd *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->err = false;
}

const uint8_t *rd_bytes(struct rd *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

uint8_t rd_u8(struct rd *r)
{
    const uint8_t *p = rd_bytes(r, 1);
    return p ? p[0] : 0;
}

uint32_t rd_be32(struct rd *r)
{
    const uint8_t *p = rd_bytes(r, 4);
    return p ? be32_get(p) : 0;
}

uint64_t rd_be64(struct rd *r)
{
    const uint8_t *p = rd_bytes(r, 8);
    return p ? be64_get(p) : 0;
}

void buf_put_lbytes(struct buf *b, const uint8_t *p, size_t n)
{
    buf_put_uvarint(b, n);
    buf_append(b, p, n);
}

const uint8_t *rd_lbytes(struct rd *r, size_t *n)
{
    uint64_t len = rd_uvarint(r);
    if (len > rd_left(r)) {
        r->err = true;
        *n = 0;
        return NULL;
    }
    *n = (size_t)len;
    return rd_bytes(r, *n);
}

uint64_t rd_uvarint(struct rd *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        const uint8_t *p = rd_bytes(r, 1);
        if (!p)
            return 0;
        if (shift == 63 && *p > 1) {
            r->err = true;
            return 0;
        }
        v |= (uint64_t)(*p & 0x7f) << shift;
        if (!(*p & 0x80))
            return v;
    }
    r->err = true;
    return 0;
}
