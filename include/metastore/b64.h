/* b64.h - standard base64 with padding, decoded as strictly as Go's base64.StdEncoding
 * (the etcd gateway's decoder), including its error offsets. */
#ifndef METASTORE_B64_H
#define METASTORE_B64_H

#include <stddef.h>
#include <stdint.h>

/* Encoded length of n bytes (with padding). */
static inline size_t b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* Upper bound on the decoded length of n input characters. */
static inline size_t b64_decoded_max(size_t n)
{
    return n / 4 * 3 + 3;
}

/* Encode src[0..n) into out, which has room for b64_encoded_len(n). Returns bytes written. */
size_t b64_encode(const uint8_t *src, size_t n, char *out);

/* Decode src[0..n) into out (room for b64_decoded_max(n)). Carriage returns and newlines are
 * skipped, as Go does. Returns 0 and sets *out_len, or -1 and sets *err_off to the offset
 * Go reports in "illegal base64 data at input byte N". */
int b64_decode(const char *src, size_t n, uint8_t *out, size_t *out_len, size_t *err_off);

#endif
