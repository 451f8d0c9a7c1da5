/* peer_frame.c - the transport's frames: a version byte, a type byte, a big-endian 32-bit
 * payload length, the payload. Pure functions on borrowed bytes (fuzzed by fuzz_peer_frame);
 * they allocate nothing but what raft_msg_decode does, and never abort on input.
 */
#include "metastore/peer.h"

#include "metastore/buf.h"
#include "metastore/raft_codec.h"

static bool frame_type_known(uint8_t t)
{
    return t >= PEER_FRAME_MSG && t <= PEER_FRAME_APP;
}

/* The payload lengths a type allows. Empty messages do not exist (a message is at least its
 * version byte and CRC), and an empty data frame would be a frame doing nothing. */
static bool frame_len_ok(uint8_t t, uint32_t len)
{
    switch (t) {
    case PEER_FRAME_SNAP_END:
        return len == PEER_SNAP_END_BYTES;
    case PEER_FRAME_SNAP_ABORT:
    case PEER_FRAME_HEARTBEAT:
        return len == 0;
    default:
        return len > 0;
    }
}

enum peer_parse peer_frame_parse(const uint8_t *p, size_t len, size_t max_payload,
                                 struct peer_frame *out, size_t *used)
{
    if (len >= 1 && p[0] != PEER_FRAME_VERSION)
        return PEER_PARSE_BAD;
    if (len >= 2 && !frame_type_known(p[1]))
        return PEER_PARSE_BAD;
    if (len < PEER_FRAME_HDR)
        return PEER_PARSE_MORE;
    uint32_t n = be32_get(p + 2);
    if (n > max_payload || !frame_len_ok(p[1], n))
        return PEER_PARSE_BAD;
    if (len - PEER_FRAME_HDR < n)
        return PEER_PARSE_MORE;
    out->type = (enum peer_frame_type)p[1];
    out->payload = p + PEER_FRAME_HDR;
    out->len = n;
    *used = PEER_FRAME_HDR + (size_t)n;
    return PEER_PARSE_OK;
}

void peer_frame_header(uint8_t out[PEER_FRAME_HDR], enum peer_frame_type type, uint32_t len)
{
    out[0] = PEER_FRAME_VERSION;
    out[1] = (uint8_t)type;
    be32_put(out + 2, len);
}

ms_err peer_frame_msg(const struct peer_frame *f, uint64_t from, uint64_t to, struct raft_msg *out)
{
    if (f->type != PEER_FRAME_MSG && f->type != PEER_FRAME_SNAP_BEGIN)
        return MS_E_DATA_CORRUPT;
    ms_err e = raft_msg_decode(f->payload, f->len, out);
    if (e != MS_OK)
        return e;
    bool snap = out->type == RAFT_MSG_SNAP;
    if (raft_msg_type_is_local(out->type) || snap != (f->type == PEER_FRAME_SNAP_BEGIN) ||
        out->from != from || out->to != to) {
        raft_msg_decoded_fini(out);
        return MS_E_DATA_CORRUPT;
    }
    return MS_OK;
}

ms_err peer_frame_snap_end(const struct peer_frame *f, uint64_t *size, uint32_t *crc)
{
    if (f->type != PEER_FRAME_SNAP_END || f->len != PEER_SNAP_END_BYTES)
        return MS_E_DATA_CORRUPT;
    *size = be64_get(f->payload);
    *crc = be32_get(f->payload + 8);
    return MS_OK;
}
