/* fuzz_wal_record.c - the WAL record decoder over a whole segment's worth of bytes: walk the
 * records as the reader does (the first seeds the chain) and decode each payload with the raft
 * codec. Nothing may read out of bounds; a decoded record must re-encode to the same bytes. */
#include "fuzz.h"
#include "metastore/buf.h"
#include "metastore/raft_codec.h"
#include "metastore/wal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    uint32_t crc = size >= 13 ? be32_get(data + 9) : 0;
    for (int n = 0; n < 10000; n++) {
        struct wal_rec r;
        size_t used;
        if (wal_record_decode(data + off, size - off, crc, &r, &used) != WAL_DEC_OK)
            break;
        struct buf b;
        buf_init(&b);
        uint32_t c2 = crc;
        wal_record_encode(&b, r.type, r.payload, r.len, &c2);
        if (b.len != used || memcmp(b.p, data + off, used) != 0 || c2 != r.crc)
            abort();
        buf_fini(&b);
        struct raft_entry e;
        struct raft_hard_state hs;
        struct raft_snapshot_meta sm;
        switch (r.type) {
        case WAL_REC_ENTRY:
            raft_entry_decode(r.payload, r.len, &e);
            break;
        case WAL_REC_HARD_STATE:
            raft_hard_state_decode(r.payload, r.len, &hs);
            break;
        case WAL_REC_SNAPSHOT:
            raft_snapshot_meta_decode(r.payload, r.len, &sm);
            break;
        default:
            break;
        }
        crc = r.crc;
        off += used;
    }
    return 0;
}
