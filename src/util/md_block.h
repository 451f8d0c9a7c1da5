/* md_block.h - what SHA-1 and SHA-256 share (util's private header): 64-byte blocks fed from a
 * buffer, Merkle-Damgard padding with the bit length, and the big-endian output words. Each
 * hash keeps its own state and block function; h points at its words. */
#ifndef METASTORE_MD_BLOCK_H
#define METASTORE_MD_BLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Compress one 64-byte block into the state behind h. */
typedef void (*md_block_fn)(uint32_t *h, const uint8_t *p);

static inline void md_update(uint32_t *h, md_block_fn block, uint64_t *len, uint8_t buf[64],
                             size_t *n, const void *data, size_t size)
{
    const uint8_t *p = data;
    *len += size;
    while (size) {
        size_t take = 64 - *n < size ? 64 - *n : size;
        memcpy(buf + *n, p, take);
        *n += take;
        p += take;
        size -= take;
        if (*n == 64) {
            block(h, buf);
            *n = 0;
        }
    }
}

/* Pad, append the length in bits, and write n_words state words big-endian to out. */
static inline void md_final(uint32_t *h, md_block_fn block, uint64_t *len, uint8_t buf[64],
                            size_t *n, uint8_t *out, int n_words)
{
    uint64_t bits = *len * 8;
    uint8_t pad = 0x80;
    md_update(h, block, len, buf, n, &pad, 1);
    pad = 0;
    while (*n != 56)
        md_update(h, block, len, buf, n, &pad, 1);
    uint8_t l[8];
    for (int i = 0; i < 8; i++)
        l[i] = (uint8_t)(bits >> (56 - 8 * i));
    md_update(h, block, len, buf, n, l, 8);
    for (int i = 0; i < n_words; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

#endif
