/* fuzz_b64.c - base64 decoding never writes past its bound; valid input re-encodes to text
 * that decodes to the same bytes. */
#include "fuzz.h"
#include "metastore/b64.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out = malloc(b64_decoded_max(size) + 1);
    size_t n, off;
    if (!out)
        return 0;
    if (b64_decode((const char *)data, size, out, &n, &off) == 0) {
        if (n > b64_decoded_max(size))
            abort();
        char *enc = malloc(b64_encoded_len(n) + 1);
        uint8_t *back = malloc(n + 4);
        size_t el = b64_encode(out, n, enc), bl;
        if (b64_decode(enc, el, back, &bl, &off) != 0 || bl != n || memcmp(back, out, n) != 0)
            abort();
        free(enc);
        free(back);
    } else if (off > size) {
        abort();
    }
    free(out);
    return 0;
}
