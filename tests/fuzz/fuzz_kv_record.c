/* fuzz_kv_record.c - MVCC record and revision-key decoding: strict, and stable through a
 * re-encode. */
#include "fuzz.h"
#include "metastore/buf.h"
#include "metastore/kv.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kv_kv kv;
    if (kv_record_decode(data, size, &kv)) {
        struct buf b;
        buf_init(&b);
        kv_record_encode(&kv, &b);
        if (buf_failed(&b))
            abort();
        struct kv_kv kv2;
        if (!kv_record_decode(b.p, b.len, &kv2) || kv2.key_len != kv.key_len ||
            kv2.value_len != kv.value_len || kv2.lease != kv.lease || kv2.version != kv.version ||
            kv2.mod_revision != kv.mod_revision || kv2.create_revision != kv.create_revision)
            abort();
        buf_fini(&b);
    }
    struct kv_rev r;
    bool tomb;
    if (kv_rev_decode(data, size, &r, &tomb)) {
        uint8_t k[KV_REVKEY_LEN + 1];
        size_t kl;
        kv_rev_encode(r, tomb, k, &kl);
        if (kl != size || memcmp(k, data, kl) != 0)
            abort();
    }
    return 0;
}
