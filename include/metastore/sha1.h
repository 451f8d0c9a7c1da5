/* sha1.h - SHA-1 (FIPS 180-4). Not for security: etcd derives member and cluster IDs with it. */
#ifndef METASTORE_SHA1_H
#define METASTORE_SHA1_H

#include <stddef.h>
#include <stdint.h>

struct sha1 {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
};

void sha1_init(struct sha1 *c);
void sha1_update(struct sha1 *c, const void *p, size_t n);
void sha1_final(struct sha1 *c, uint8_t out[20]);

#endif
