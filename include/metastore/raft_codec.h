/* raft_codec.h - binary encoding of raft messages, entries, hard state, snapshot metadata and
 * conf changes, shared by the WAL, the peer transport and the simulator.
 *
 * Every encoding starts with a version byte (RAFT_CODEC_VERSION) and uses LEB128 varints for
 * integers. Decoders take untrusted bytes: they check every length against what remains and
 * against the hard caps below before allocating, reject unknown versions, types and trailing
 * bytes, and never abort. Decoded data pointers borrow from the input buffer, which must
 * therefore outlive the decoded value.
 *
 * Standalone records (entry, hard state, snapshot metadata) carry no CRC: the WAL frames them
 * with its own length and CRC32C. A message (the transport's unit) ends with a CRC32C of all
 * its preceding bytes, so corruption anywhere is detected.
 */
#ifndef METASTORE_RAFT_CODEC_H
#define METASTORE_RAFT_CODEC_H

#include "metastore/buf.h"
#include "metastore/err.h"
#include "metastore/raft.h"

#include <stddef.h>
#include <stdint.h>

#define RAFT_CODEC_VERSION 1

/* Hard caps on decoded input (a peer cannot make us allocate more than its input justifies). */
#define RAFT_CODEC_MAX_MSG_BYTES   (256u << 20) /* one encoded message */
#define RAFT_CODEC_MAX_ENTRY_BYTES (64u << 20)  /* one entry's data */
#define RAFT_CODEC_MAX_ENTRIES     (1u << 20)   /* entries in one message */
#define RAFT_CODEC_MAX_CC_CTX      (1u << 20)   /* a conf change's context */

/* Append the encoding of m to out. Allocation failure is reported by buf_failed(out).
 * @return MS_OK; MS_E_BAD_REQUEST if m cannot be encoded (unknown type or entry type, more
 * than RAFT_CODEC_MAX_ENTRIES entries, an entry above RAFT_CODEC_MAX_ENTRY_BYTES). */
ms_err raft_msg_encode(const struct raft_msg *m, struct buf *out);

/* Decode exactly len bytes into *out. out->entries is a malloc'ed array (free it with
 * raft_msg_decoded_fini); entry data borrows from p.
 * @return MS_OK; MS_E_DATA_CORRUPT on any malformed, truncated, oversized or corrupted input
 * (out is then left empty); MS_E_NOMEM if the entries array cannot be allocated. */
ms_err raft_msg_decode(const uint8_t *p, size_t len, struct raft_msg *out);

/* Free what raft_msg_decode allocated and zero *m. Accepts a zeroed message. */
void raft_msg_decoded_fini(struct raft_msg *m);

/* One entry, as a WAL record payload. raft_entry_decode consumes exactly len bytes; out->data
 * borrows from p. MS_E_DATA_CORRUPT on malformed input. */
void raft_entry_encode(const struct raft_entry *e, struct buf *out);
ms_err raft_entry_decode(const uint8_t *p, size_t len, struct raft_entry *out);

/* The hard state, as a WAL record payload. Encoders append to out (allocation failure shows in
 * buf_failed); the decoder consumes exactly len bytes, MS_E_DATA_CORRUPT otherwise. */
void raft_hard_state_encode(const struct raft_hard_state *hs, struct buf *out);
ms_err raft_hard_state_decode(const uint8_t *p, size_t len, struct raft_hard_state *out);

/* Snapshot metadata including its configuration, as a WAL record payload (decoding validates:
 * sorted, unique, non-zero ids, no id both voter and learner, at most RAFT_MAX_NODES in all;
 * MS_E_DATA_CORRUPT otherwise). */
void raft_snapshot_meta_encode(const struct raft_snapshot_meta *s, struct buf *out);
ms_err raft_snapshot_meta_decode(const uint8_t *p, size_t len, struct raft_snapshot_meta *out);

/* A conf change, the data of a RAFT_ENTRY_CONF_CHANGE entry. The decoder consumes exactly len
 * bytes (MS_E_DATA_CORRUPT otherwise, including an unknown type); out->ctx borrows from p. */
void raft_cc_encode(const struct raft_conf_change *cc, struct buf *out);
ms_err raft_cc_decode(const uint8_t *p, size_t len, struct raft_conf_change *out);

#endif
