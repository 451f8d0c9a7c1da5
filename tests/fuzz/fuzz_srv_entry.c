/* fuzz_srv_entry.c - log entry decoding: anything that decodes must re-encode to the same
 * bytes. */
#include "fuzz.h"
#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/srv.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena *a = arena_create(1024);
    if (!a)
        return 0;
    struct srv_req r;
    uint64_t id;
    if (srv_entry_decode(data, size, a, &id, &r)) {
        struct buf b;
        buf_init(&b);
        srv_entry_encode(id, &r, &b);
        /* Flags bytes may carry unused bits that decoding drops: compare decoded forms. */
        struct srv_req r2;
        uint64_t id2;
        if (buf_failed(&b) || !srv_entry_decode(b.p, b.len, a, &id2, &r2) || id2 != id ||
            r2.type != r.type)
            abort();
        struct buf b2;
        buf_init(&b2);
        srv_entry_encode(id2, &r2, &b2);
        if (b2.len != b.len || memcmp(b.p, b2.p, b.len) != 0)
            abort();
        buf_fini(&b);
        buf_fini(&b2);
    }
    arena_destroy(a);
    return 0;
}
