/* fuzz_peer_frame.c - libFuzzer target for the peer transport's frame decoder.
 *
 * The input is a stream as a dialer reads it: frames parsed one after another under a 1 MiB
 * cap, each message checked as the transport checks it (from 2, to 1), snapshot ends parsed.
 * Whatever parses must re-frame to the same bytes; the parser must never read past the input,
 * and a frame it accepts must fit the cap. Then every prefix of the input must parse to MORE
 * or to the same first frame, as pieces arriving over TCP would.
 */
#include "fuzz.h"
#include "metastore/peer.h"
#include "metastore/raft_codec.h"

#include <stdlib.h>
#include <string.h>

#define CAP (1u << 20)

static void die_if(int cond)
{
    if (cond)
        abort();
}

static void check_frame(const struct peer_frame *f)
{
    uint8_t hdr[PEER_FRAME_HDR];
    peer_frame_header(hdr, f->type, (uint32_t)f->len);
    die_if(memcmp(hdr, f->payload - PEER_FRAME_HDR, PEER_FRAME_HDR) != 0);
    struct raft_msg m;
    if ((f->type == PEER_FRAME_MSG || f->type == PEER_FRAME_SNAP_BEGIN) &&
        peer_frame_msg(f, 2, 1, &m) == MS_OK) {
        die_if(m.from != 2 || m.to != 1 || raft_msg_type_is_local(m.type));
        die_if((m.type == RAFT_MSG_SNAP) != (f->type == PEER_FRAME_SNAP_BEGIN));
        raft_msg_decoded_fini(&m);
    }
    uint64_t size;
    uint32_t crc;
    if (peer_frame_snap_end(f, &size, &crc) == MS_OK)
        die_if(f->len != PEER_SNAP_END_BYTES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (int i = 0; i < 1000 && off < size; i++) {
        struct peer_frame f;
        size_t used = 0;
        enum peer_parse r = peer_frame_parse(data + off, size - off, CAP, &f, &used);
        if (r != PEER_PARSE_OK)
            break;
        die_if(used != PEER_FRAME_HDR + f.len || used > size - off || f.len > CAP);
        check_frame(&f);
        off += used;
    }
    struct peer_frame first;
    size_t first_used = 0;
    enum peer_parse whole = peer_frame_parse(data, size, CAP, &first, &first_used);
    for (size_t n = 0; n < size && n < 64; n++) {
        struct peer_frame f;
        size_t used;
        enum peer_parse r = peer_frame_parse(data, n, CAP, &f, &used);
        if (r == PEER_PARSE_BAD)
            die_if(whole != PEER_PARSE_BAD);
        if (r == PEER_PARSE_OK)
            die_if(whole != PEER_PARSE_OK || used != first_used);
    }
    return 0;
}
