/* raft.h - the Raft consensus core: a pure, deterministic state machine.
 *
 * The core follows etcd-io/raft closely (raft.go, rawnode.go, tracker/, quorum/): elections with
 * PreVote and CheckQuorum, the leader no-op and current-term commit rule, per-peer flow control,
 * ReadIndex, learners, one-at-a-time membership changes, leadership transfer and snapshots. It
 * does no I/O, reads no clock and draws randomness only from a PRNG seeded by the config. The
 * caller (the server's ready step, or the simulator) owns the disk, the network and time:
 *
 *   inputs:  raft_tick, raft_step, raft_propose, raft_propose_conf_change, raft_read_index,
 *            raft_campaign, raft_transfer_leader, raft_report_unreachable, raft_report_snapshot,
 *            raft_apply_conf_change
 *   outputs: raft_ready -> persist / send / apply -> raft_advance   (contract: docs/raft.md)
 *
 * The stable log is read through struct raft_log_ops; struct raft_mem (below) is an in-memory
 * implementation that the server fills from its WAL on restart and appends to after persisting.
 *
 * Errors are ms_err values. A proposal the core cannot accept is "dropped" and returns one of
 * MS_E_NO_LEADER, MS_E_NOT_LEADER, MS_E_LEADER_CHANGED or MS_E_TOO_MANY_REQUESTS
 * (raft_err_is_dropped); a dropped proposal is certainly not in the log. Out-of-memory aborts
 * the process (ms_fatal), as a half-updated consensus state must never be observed.
 *
 * Nothing here is thread-safe; one struct raft belongs to one loop.
 */
#ifndef METASTORE_RAFT_H
#define METASTORE_RAFT_H

#include "metastore/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most members (voters plus learners) a configuration may hold. etcd recommends 3-7 voters. */
#define RAFT_MAX_NODES 32

/* The "no node" id: no leader, no vote. Node ids are never 0. */
#define RAFT_NONE 0

/* raft_msg.ctx of a MsgVote/MsgPreVote sent by a leadership transfer (etcd campaignTransfer):
 * it bypasses the CheckQuorum lease. */
#define RAFT_CTX_TRANSFER 1

enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_CANDIDATE = 1,
    RAFT_LEADER = 2,
    RAFT_PRE_CANDIDATE = 3,
};

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0,      /* opaque application data (may be empty: the leader no-op) */
    RAFT_ENTRY_CONF_CHANGE = 1, /* data is a raft_conf_change encoded by raft_cc_encode */
};

/* Message types. Values are part of the wire format (raft_codec.h); never renumber. The local
 * ones are generated inside the core and rejected by raft_step. */
enum raft_msg_type {
    RAFT_MSG_HUP = 0,              /* local: start an election */
    RAFT_MSG_BEAT = 1,             /* local: leader heartbeat tick */
    RAFT_MSG_PROP = 2,             /* proposal, forwarded from a follower to the leader */
    RAFT_MSG_APP = 3,              /* append entries */
    RAFT_MSG_APP_RESP = 4,         /* append response (reject + hint on mismatch) */
    RAFT_MSG_VOTE = 5,             /* request vote */
    RAFT_MSG_VOTE_RESP = 6,        /* vote response */
    RAFT_MSG_SNAP = 7,             /* install snapshot (metadata; data travels beside it) */
    RAFT_MSG_HEARTBEAT = 8,        /* leader heartbeat */
    RAFT_MSG_HEARTBEAT_RESP = 9,   /* heartbeat response */
    RAFT_MSG_UNREACHABLE = 10,     /* local: raft_report_unreachable */
    RAFT_MSG_SNAP_STATUS = 11,     /* local: raft_report_snapshot */
    RAFT_MSG_CHECK_QUORUM = 12,    /* local: leader quorum check */
    RAFT_MSG_TRANSFER_LEADER = 13, /* transfer request, forwarded to the leader */
    RAFT_MSG_TIMEOUT_NOW = 14,     /* leader to transferee: campaign now */
    RAFT_MSG_READ_INDEX = 15,      /* read index request, forwarded to the leader */
    RAFT_MSG_READ_INDEX_RESP = 16, /* read index answer to a follower */
    RAFT_MSG_PRE_VOTE = 17,        /* pre-vote request (term + 1, term not bumped) */
    RAFT_MSG_PRE_VOTE_RESP = 18,   /* pre-vote response */
    RAFT_MSG_TYPE_COUNT_ = 19,
};

enum raft_read_only {
    RAFT_READ_ONLY_SAFE = 0,  /* ReadIndex confirmed by a heartbeat quorum (default) */
    RAFT_READ_ONLY_LEASE = 1, /* leader answers from its lease; requires check_quorum */
};

enum raft_cc_type {
    RAFT_CC_ADD_NODE = 0,
    RAFT_CC_REMOVE_NODE = 1,
    RAFT_CC_UPDATE_NODE = 2,
    RAFT_CC_ADD_LEARNER = 3,
};

enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0,
    RAFT_PROGRESS_REPLICATE = 1,
    RAFT_PROGRESS_SNAPSHOT = 2,
};

/* One log entry. Who owns data depends on where the entry is seen; each function says. */
struct raft_entry {
    uint64_t term;
    uint64_t index;
    enum raft_entry_type type;
    size_t len;
    const uint8_t *data; /* len bytes; may be NULL when len == 0 */
};

/* Persisted before any reply that depends on it (docs/raft.md, Ready contract). */
struct raft_hard_state {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

/* Volatile state the server may want to observe (leader changes). */
struct raft_soft_state {
    uint64_t lead;
    enum raft_role role;
};

/* A membership configuration (single-step changes only; joint consensus is not exposed). Ids are
 * sorted ascending, without duplicates, and no id is both voter and learner. */
struct raft_conf_state {
    size_t n_voters;
    size_t n_learners;
    uint64_t voters[RAFT_MAX_NODES];
    uint64_t learners[RAFT_MAX_NODES];
};

/* Snapshot metadata. The snapshot's data (the state machine at index) is the server's business:
 * it is streamed beside MsgSnap and restored when a Ready carries the snapshot. */
struct raft_snapshot_meta {
    uint64_t index;
    uint64_t term;
    struct raft_conf_state conf;
};

/* A membership change, the payload of a RAFT_ENTRY_CONF_CHANGE entry. ctx is opaque (etcd puts
 * the member's JSON there). */
struct raft_conf_change {
    enum raft_cc_type type;
    uint64_t node_id;
    size_t ctx_len;
    const uint8_t *ctx;
};

/* A Raft message. Fields a type does not use are zero. */
struct raft_msg {
    enum raft_msg_type type;
    uint64_t to;
    uint64_t from;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    uint64_t reject_hint;
    uint64_t ctx; /* read-index request context, heartbeat read round, RAFT_CTX_TRANSFER */
    bool reject;
    size_t n_entries;
    struct raft_entry *entries;
    /* RAFT_MSG_SNAP only. The transport streams the state machine beside it and may send a
     * newer snapshot than the one named (etcd's merged snapshot: the sender's state at its
     * applied index, with that index, term and configuration): see docs/raft.md. */
    struct raft_snapshot_meta snap;
};

/* A confirmed linearizable read: serve the request tagged ctx once applied >= index. */
struct raft_read_state {
    uint64_t index;
    uint64_t ctx;
};

/* The stable log as the core reads it (etcd raft.Storage). Every index is absolute. The log holds
 * entries [first_index, last_index]; the entry at first_index - 1 is the snapshot (or the empty
 * log's sentinel 0/0) and only its term is known. Functions are called synchronously from inside
 * raft_* calls and must not call back into the core. */
struct raft_log_ops {
    /* Index of the first available entry (snapshot index + 1). */
    uint64_t (*first_index)(void *ctx);
    /* Index of the last entry (the snapshot index when no entries follow it). */
    uint64_t (*last_index)(void *ctx);
    /* Term of entry i for first_index - 1 <= i <= last_index. MS_E_COMPACTED if i is below,
     * MS_E_NOT_EXIST if above. */
    ms_err (*term)(void *ctx, uint64_t i, uint64_t *out);
    /* Entries [lo, hi) with first_index <= lo < hi <= last_index + 1, stopping once their
     * encoded size (raft_entry_size) exceeds max_bytes, but always at least one. *out is
     * borrowed and stays valid until the storage is next modified. MS_E_COMPACTED if lo is
     * below first_index. */
    ms_err (*entries)(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                      const struct raft_entry **out, size_t *n);
    /* Metadata of the latest snapshot (index 0 when there is none). */
    void (*snapshot)(void *ctx, struct raft_snapshot_meta *out);
};

struct raft_config {
    uint64_t id;                            /* this node, != RAFT_NONE */
    int election_tick;                      /* default 10; must exceed heartbeat_tick */
    int heartbeat_tick;                     /* default 1 */
    bool pre_vote;                          /* default on */
    bool check_quorum;                      /* default on */
    enum raft_read_only read_only;          /* default RAFT_READ_ONLY_SAFE */
    uint64_t max_size_per_msg;              /* bytes per MsgApp; 0 = one entry. default 1 MiB */
    size_t max_inflight_msgs;               /* MsgApp in flight per peer, default 256 */
    uint64_t max_inflight_bytes;            /* 0 = unlimited (default) */
    uint64_t max_uncommitted_bytes;         /* leader drops proposals beyond; 0 = unlimited */
    uint64_t max_committed_bytes_per_ready; /* 0 = max_size_per_msg */
    bool step_down_on_removal;              /* default on */
    bool disable_proposal_forwarding;       /* default off */
    uint64_t applied; /* last applied index at restart; entries <= it are not handed out */
    uint64_t seed;    /* PRNG seed for election timeouts */
    const struct raft_log_ops *log; /* the stable log; borrowed, must outlive the core */
    void *log_ctx;
};

/* The output of one raft_ready call. Every pointer is owned by the core and stays valid until
 * the matching raft_advance, whatever else is called in between. */
struct raft_ready {
    bool soft_changed; /* soft differs from the previous Ready */
    struct raft_soft_state soft;
    bool hard_changed; /* hard must be persisted */
    struct raft_hard_state hard;
    bool has_snapshot; /* persist, restore the state machine from it, then the entries */
    struct raft_snapshot_meta snapshot;
    size_t n_entries; /* append to the log, replacing any suffix from entries[0].index on */
    const struct raft_entry *entries;
    size_t n_committed; /* durable and committed: apply in order */
    const struct raft_entry *committed;
    size_t n_msgs; /* may be sent at once, before persisting */
    const struct raft_msg *msgs;
    size_t n_msgs_after_persist; /* send only once this Ready's state is durable */
    const struct raft_msg *msgs_after_persist;
    size_t n_read_states;
    const struct raft_read_state *read_states;
    bool must_sync; /* entries, snapshot or term/vote changed: fdatasync before
                       msgs_after_persist (a commit-only change may skip it) */
};

struct raft_progress_status {
    uint64_t id;
    uint64_t match;
    uint64_t next;
    enum raft_progress_state state;
    uint64_t pending_snapshot;
    size_t inflight;
    bool learner;
    bool recent_active;
    bool paused;
};

struct raft_status {
    uint64_t id;
    struct raft_hard_state hard;
    struct raft_soft_state soft;
    uint64_t applied;
    uint64_t first_index;
    uint64_t last_index;
    uint64_t lead_transferee;
    bool learner;
    uint64_t pending_snapshot; /* index of a snapshot taken in and not yet in a Ready (0: none) */
    /* Leader: the index of the last conf change proposed. While it is above applied, another
     * proposed change becomes an empty entry (one at a time). */
    uint64_t pending_conf_index;
    struct raft_conf_state conf;
    size_t n_progress; /* leader only */
    struct raft_progress_status progress[RAFT_MAX_NODES];
};

struct raft;

/* ---- lifecycle ---- */

/* Fill cfg with etcd's defaults for node id (log, log_ctx and seed stay 0/NULL). */
void raft_config_default(struct raft_config *cfg, uint64_t id);

/* Create a core.
 * @param[in] cfg   validated and copied; cfg->log must outlive the core.
 * @param[in] hs    the persisted hard state, or NULL for none. Its commit may not exceed the
 *                  log's last index; below the snapshot index it is raised to it.
 * @param[in] cs    the configuration of the latest snapshot, or NULL for an empty one (a node
 *                  that will be bootstrapped or learn its membership from the leader). The
 *                  snapshot's index and term themselves are read from cfg->log (the entry at
 *                  first_index - 1), which is what RAFT.md §3.1 calls snap_meta.
 * @param[out] out  the core, owned by the caller (raft_destroy).
 * @return MS_OK; MS_E_BAD_REQUEST if cfg or the initial state is invalid. */
ms_err raft_create(const struct raft_config *cfg, const struct raft_hard_state *hs,
                   const struct raft_conf_state *cs, struct raft **out);

/* Free the core and everything it owns, including an un-advanced Ready. Accepts NULL. */
void raft_destroy(struct raft *r);

/* Bootstrap a fresh cluster (etcd --initial-cluster): append one AddNode conf change per voter at
 * term 1 as entries 1..n, commit them and apply them. The next Ready carries them for persisting;
 * the one after hands them back committed (applying them again is harmless).
 * @return MS_E_BAD_REQUEST if the log is not empty, n is 0 or above RAFT_MAX_NODES, or an id
 * is RAFT_NONE or repeated. */
ms_err raft_bootstrap(struct raft *r, const uint64_t *voters, size_t n);
/* raft_bootstrap with a context for each voter's AddNode entry (ctxs[i] of ctx_lens[i] bytes,
 * copied; etcd puts the member's record there, so that a member that joins later and replays the
 * log learns the initial members from it). */
ms_err raft_bootstrap_ctx(struct raft *r, const uint64_t *voters, const uint8_t *const *ctxs,
                          const size_t *ctx_lens, size_t n);

/* ---- inputs ---- */

/* Advance logical time by one tick (the server ticks every heartbeat interval, 100 ms). */
void raft_tick(struct raft *r);

/* Step a message received from a peer. m is borrowed for the call; the core copies what it
 * keeps. Messages with a term below ours are answered or ignored as Raft requires.
 * @return MS_OK; MS_E_BAD_REQUEST for a local message type, m->to not this node or a malformed
 * message (entries out of sequence, a term or index of 2^62 or more, ...), which is dropped;
 * MS_E_NOT_EXIST for a response from a node that is not in the configuration; a dropped-proposal
 * error (raft_err_is_dropped) for a forwarded proposal this node cannot take. Whatever the peer
 * sends, the core never aborts. */
ms_err raft_step(struct raft *r, const struct raft_msg *m);

/* Propose data (copied) as a normal entry. MS_OK means appended (leader) or forwarded (follower):
 * the outcome is known only when the entry is applied or the request times out. A dropped
 * proposal returns a raft_err_is_dropped error; MS_E_REQUEST_TOO_LARGE if len exceeds
 * RAFT_CODEC_MAX_ENTRY_BYTES (it could not travel). */
ms_err raft_propose(struct raft *r, const uint8_t *data, size_t len);

/* Propose a membership change. While one is pending (appended, not applied) the leader turns
 * another into an empty normal entry and still returns MS_OK; the caller learns from the applied
 * entries that it did not take effect. Same drops as raft_propose; MS_E_BAD_REQUEST if cc is
 * invalid (node 0, unknown type). */
ms_err raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc);

/* Request a linearizable read tagged ctx. The answer is a raft_read_state{index, ctx} in a
 * later Ready; without a leader the request is dropped silently (retry after a timeout, as
 * etcd's readIndexRetryTime). */
void raft_read_index(struct raft *r, uint64_t ctx);

/* Start an election now (with PreVote if configured). No-op on a leader or a learner. */
void raft_campaign(struct raft *r);

/* Ask the leader (directly, or forwarded by a follower) to hand leadership to `to`. */
void raft_transfer_leader(struct raft *r, uint64_t to);

/* Tell the leader that a message to id could not be delivered: its progress drops to probe. */
void raft_report_unreachable(struct raft *r, uint64_t id);

/* Tell the leader whether the snapshot sent to id was applied (ok) or failed. */
void raft_report_snapshot(struct raft *r, uint64_t id, bool ok);

/* Apply a committed conf change entry (decoded with raft_cc_decode) to the configuration. Called
 * by the server when the entry is applied, never when it is appended.
 * @param[out] out  the resulting configuration (may be NULL).
 * @return MS_OK; MS_E_BAD_REQUEST if the change is impossible (removing the last voter). */
ms_err raft_apply_conf_change(struct raft *r, const struct raft_conf_change *cc,
                              struct raft_conf_state *out);

/* ---- outputs ---- */

/* True if raft_ready would return something to do (false while a Ready is outstanding). */
bool raft_has_ready(const struct raft *r);

/* Collect the pending work into rd. The caller must, in this order (docs/raft.md):
 *  1. send rd->msgs (at once is fine);
 *  2. persist rd->snapshot, rd->entries, rd->hard (fdatasync if rd->must_sync), then append
 *     them to the stable log (raft_mem_apply_snapshot / raft_mem_append / raft_mem_set_hard);
 *  3. send rd->msgs_after_persist;
 *  4. apply rd->committed in order (raft_apply_conf_change for conf changes) and serve
 *     rd->read_states once applied reaches their index;
 *  5. call raft_advance.
 * Other raft_* inputs may be called between raft_ready and raft_advance; raft_ready may not.
 * @return MS_OK; MS_E_BAD_REQUEST if the previous Ready was not advanced (rd untouched). */
ms_err raft_ready(struct raft *r, struct raft_ready *rd);

/* Acknowledge that the last Ready was fully handled: self-acknowledgements are stepped, the
 * persisted entries become stable and the applied index moves. The Ready's memory is freed.
 * @param[in] rd  the Ready returned by the last raft_ready (or NULL); passing another one is a
 *                programming error (asserted). A no-op when no Ready is outstanding. */
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* While a Ready is outstanding and its committed entries are applied: the entries committed
 * since that are stable here already (persisted by an earlier Ready), so that they need not wait
 * for the outstanding Ready's fdatasync. A leader learns most commits this way: its followers'
 * acknowledgements arrive while its next batch is being persisted. The caller applies them in
 * order (as rd->committed, conf changes included) before any other input, then calls
 * raft_advance_committed. Never hands out an entry twice, nor one that is not stable.
 * @param[out] ents  the entries, owned by the core until raft_advance_committed
 * @return their number; 0 when there are none (or no Ready is outstanding). */
size_t raft_committed_now(struct raft *r, const struct raft_entry **ents);

/* True if raft_committed_now would return entries. */
bool raft_has_committed_now(const struct raft *r);

/* The entries of the last raft_committed_now are applied: the applied index moves, and their
 * memory is freed. A no-op when none are out. */
void raft_advance_committed(struct raft *r);

/* Fill st with a snapshot of the core's state. */
void raft_status(const struct raft *r, struct raft_status *st);

/* ---- small helpers ---- */

/* True if e is one of the errors a dropped proposal returns. */
bool raft_err_is_dropped(ms_err e);

/* Size of an entry as counted against max_size_per_msg and friends (its encoded size). */
uint64_t raft_entry_size(const struct raft_entry *e);

/* Human-readable names as static strings ("MsgApp", "StateLeader", "StateProbe"), with a
 * "...Unknown" name for values out of range. */
const char *raft_msg_type_name(enum raft_msg_type t);
const char *raft_role_name(enum raft_role role);
const char *raft_progress_state_name(enum raft_progress_state s);

/* True for message types that never travel between nodes (HUP, BEAT, ...). */
bool raft_msg_type_is_local(enum raft_msg_type t);

/* Free what a message owns (its entries array and their data) and zero it, for messages built
 * by raft_msg_copy. Not for messages in a Ready or decoded by raft_msg_decode. */
void raft_msg_free(struct raft_msg *m);

/* Deep-copy src into *dst (entries and their data are copied). Free with raft_msg_free. */
void raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src);

/* True if cs contains id as voter (or learner, with learners set). */
bool raft_conf_has(const struct raft_conf_state *cs, uint64_t id, bool learners);

/* ---- in-memory stable log (etcd MemoryStorage) ----
 * Holds the snapshot metadata, the entries after it and the hard state. The server fills it from
 * its WAL on restart and appends each Ready's snapshot, entries and hard state after persisting
 * them. Entry data is copied in. raft_mem_ops/raft_mem as the ctx make a struct raft_log_ops. */
struct raft_mem;

extern const struct raft_log_ops raft_mem_ops;

/* An empty log (sentinel 0/0, first index 1). Owned by the caller; aborts on OOM. */
struct raft_mem *raft_mem_create(void);

/* Free the log and every entry's data; entries borrowed from it become invalid. Accepts NULL. */
void raft_mem_destroy(struct raft_mem *m);

/* Append entries (data copied). entries[0].index may be at most last_index + 1; an existing
 * suffix from there on is replaced. Entries at or below the snapshot index are skipped.
 * @return MS_E_BAD_REQUEST on a gap or non-contiguous indexes. */
ms_err raft_mem_append(struct raft_mem *m, const struct raft_entry *ents, size_t n);

/* Replace the whole log by a snapshot (a follower installing one).
 * @return MS_E_COMPACTED if s is not newer than the current snapshot. */
ms_err raft_mem_apply_snapshot(struct raft_mem *m, const struct raft_snapshot_meta *s);

/* Record a snapshot taken locally at applied index i with configuration cs and drop entries
 * [first, i - keep] (keep entries for slow followers, etcd SnapshotCatchUpEntries).
 * @return MS_E_COMPACTED if i is not above the current snapshot index, MS_E_NOT_EXIST if i is
 * beyond the last index. */
ms_err raft_mem_snapshot(struct raft_mem *m, uint64_t i, const struct raft_conf_state *cs,
                         uint64_t keep);

/* Discard entries before compact_index (it becomes the sentinel).
 * @return MS_E_COMPACTED if already compacted, MS_E_NOT_EXIST if beyond the last index. */
ms_err raft_mem_compact(struct raft_mem *m, uint64_t compact_index);

/* Record the hard state last persisted (copied). The core never reads it back: it is kept here
 * for the server's convenience (restart, status). */
void raft_mem_set_hard(struct raft_mem *m, const struct raft_hard_state *hs);

/* The hard state last recorded with raft_mem_set_hard (zero if none). */
void raft_mem_hard(const struct raft_mem *m, struct raft_hard_state *out);

/* The latest snapshot's metadata (index 0 when none). */
void raft_mem_snapshot_meta(const struct raft_mem *m, struct raft_snapshot_meta *out);

/* Index of the first entry held (sentinel + 1) and of the last one (the sentinel's when the log
 * holds no entries). */
uint64_t raft_mem_first_index(const struct raft_mem *m);
uint64_t raft_mem_last_index(const struct raft_mem *m);

/* Borrow entry i (first_index <= i <= last_index), valid until the next modification. NULL when
 * out of range. */
const struct raft_entry *raft_mem_entry(const struct raft_mem *m, uint64_t i);

#endif
