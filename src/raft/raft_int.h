/* raft_int.h - internals of the raft core, shared by the files of src/raft only.
 *
 * Layout follows etcd-io/raft: raft_log.c is raftLog + unstable, raft_progress.c is tracker/
 * and quorum/, raft_conf.c is confchange/, raft_read.c is read_only.go, raft.c and
 * raft_step.c are raft.go, raft_ready.c is rawnode.go. Planted-bug toggles (RAFT_BUG_*) are
 * compile-time defines used only by the simulator's bug-detection builds (docs/testing.md).
 */
#ifndef METASTORE_RAFT_INT_H
#define METASTORE_RAFT_INT_H

#include "metastore/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- allocation: the core aborts on OOM (see raft.h) ---- */
void *raft_xmalloc(size_t n);
void *raft_xcalloc(size_t n, size_t size);
void *raft_xrealloc(void *p, size_t n);

/* ---- entry and message vectors (raft_msg.c) ---- */

/* A vector of entries that own their data. */
struct raft_ents {
    struct raft_entry *v;
    size_t n;
    size_t cap;
};

/* dst gets a malloc'ed copy of src's data. */
void raft_entry_copy(struct raft_entry *dst, const struct raft_entry *src);
void raft_entry_fini(struct raft_entry *e);
void raft_ents_push_copy(struct raft_ents *a, const struct raft_entry *e);
/* Free entries [n, a->n) and shrink to n. */
void raft_ents_truncate(struct raft_ents *a, size_t n);
/* Free the first k entries and shift the rest down. */
void raft_ents_drop_front(struct raft_ents *a, size_t k);
void raft_ents_fini(struct raft_ents *a);
/* Move the array out of a into (*v, *n); a is left empty. */
void raft_ents_steal(struct raft_ents *a, struct raft_entry **v, size_t *n);
uint64_t raft_ents_payload(const struct raft_entry *v, size_t n);
uint64_t raft_ents_size(const struct raft_entry *v, size_t n);

/* A vector of messages that own their entries. */
struct raft_msgs {
    struct raft_msg *v;
    size_t n;
    size_t cap;
};

/* Append m, taking ownership of its entries. */
void raft_msgs_push(struct raft_msgs *q, const struct raft_msg *m);
/* Free every message, keep the storage. */
void raft_msgs_clear(struct raft_msgs *q);
void raft_msgs_fini(struct raft_msgs *q);

/* ---- the log (raft_log.c) ---- */

/* Entries not yet known to be in stable storage, and a snapshot being installed. */
struct raft_unstable {
    bool has_snap;
    bool snap_in_progress; /* handed out in a Ready, not yet advanced */
    struct raft_snapshot_meta snap;
    struct raft_ents ents;       /* ents.v[i].index == offset + i */
    uint64_t offset;             /* index of ents.v[0] */
    uint64_t offset_in_progress; /* entries below this were handed out in a Ready */
};

struct raft_log {
    const struct raft_log_ops *ops;
    void *ctx;
    struct raft_unstable u;
    uint64_t committed;
    uint64_t applying; /* highest index handed out for applying */
    uint64_t applied;
    uint64_t max_applying_bytes;
    uint64_t applying_bytes;
    bool applying_paused;
};

typedef bool (*raft_ent_visit_fn)(void *arg, const struct raft_entry *e);

void raft_log_init(struct raft_log *l, const struct raft_log_ops *ops, void *ctx,
                   uint64_t max_applying_bytes);
void raft_log_fini(struct raft_log *l);
uint64_t raft_log_first_index(const struct raft_log *l);
uint64_t raft_log_last_index(const struct raft_log *l);
/* Term of entry i; false if compacted away or beyond the end. */
bool raft_log_term(const struct raft_log *l, uint64_t i, uint64_t *t);
/* Term of entry i, 0 when unknown. */
uint64_t raft_log_term_or0(const struct raft_log *l, uint64_t i);
uint64_t raft_log_last_term(const struct raft_log *l);
bool raft_log_match_term(const struct raft_log *l, uint64_t i, uint64_t t);
/* Is a log ending at (index, term) at least as up to date as ours? */
bool raft_log_is_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term);
/* Append entries received after (prev_index, prev_term) and commit up to min(commit, last new).
 * False when our log does not contain (prev_index, prev_term). *lastnew is the last index
 * covered by the message. */
bool raft_log_maybe_append(struct raft_log *l, uint64_t prev_index, uint64_t prev_term,
                           uint64_t commit, const struct raft_entry *ents, size_t n,
                           uint64_t *lastnew);
/* Append (copies), truncating any conflicting unstable suffix; returns the new last index. */
uint64_t raft_log_append(struct raft_log *l, const struct raft_entry *ents, size_t n);
/* Largest index <= index whose term is <= term, and that term (etcd findConflictByTerm). */
uint64_t raft_log_find_conflict_by_term(const struct raft_log *l, uint64_t index, uint64_t term,
                                        uint64_t *term_out);
void raft_log_commit_to(struct raft_log *l, uint64_t c);
bool raft_log_maybe_commit(struct raft_log *l, uint64_t index, uint64_t term);
void raft_log_applied_to(struct raft_log *l, uint64_t i, uint64_t size);
void raft_log_accept_applying(struct raft_log *l, uint64_t i, uint64_t size);
void raft_log_accept_unstable(struct raft_log *l);
void raft_log_stable_to(struct raft_log *l, uint64_t index, uint64_t term);
void raft_log_stable_snap_to(struct raft_log *l, uint64_t i);
void raft_log_restore(struct raft_log *l, const struct raft_snapshot_meta *s);
/* The snapshot to send a lagging follower (unstable one first, else storage's). */
void raft_log_snapshot(const struct raft_log *l, struct raft_snapshot_meta *out);
bool raft_log_has_snapshot_pending(const struct raft_log *l);
/* Copies of entries [lo, hi) limited to max_bytes (at least one), appended to out.
 * MS_E_COMPACTED if lo is below the first index. */
ms_err raft_log_slice(const struct raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                      struct raft_ents *out);
/* Visit entries [lo, hi) in order until fn returns false. MS_E_COMPACTED if lo is too low. */
ms_err raft_log_scan(const struct raft_log *l, uint64_t lo, uint64_t hi, raft_ent_visit_fn fn,
                     void *arg);
/* Unstable entries not yet handed out (borrowed). */
size_t raft_log_next_unstable(const struct raft_log *l, const struct raft_entry **out);
bool raft_log_has_next_unstable_snap(const struct raft_log *l);
bool raft_log_has_next_committed(const struct raft_log *l);
/* Copies of the next committed, durable entries to apply. */
void raft_log_next_committed(const struct raft_log *l, struct raft_ents *out);

/* ---- progress, inflights and quorums (raft_progress.c) ---- */

struct raft_inflight {
    uint64_t index;
    uint64_t bytes;
};

/* A ring of in-flight MsgApp (last index, bytes), etcd tracker/inflights.go. */
struct raft_inflights {
    size_t start;
    size_t count;
    size_t size; /* max messages */
    uint64_t bytes;
    uint64_t max_bytes; /* 0 = unlimited */
    size_t cap;         /* allocated slots, grows up to size */
    struct raft_inflight *buf;
};

struct raft_progress {
    uint64_t id;
    uint64_t match;
    uint64_t next;
    uint64_t sent_commit;
    uint64_t pending_snapshot;
    enum raft_progress_state state;
    bool recent_active;
    bool flow_paused;
    bool append_due; /* an append (empty if nothing is new) waits for the next Ready */
    bool learner;
    struct raft_inflights inf;
};

/* A majority configuration: sorted ids. */
struct raft_majority {
    size_t n;
    uint64_t ids[RAFT_MAX_NODES];
};

/* Two majorities (incoming, outgoing); outgoing is empty outside joint consensus, which the
 * public API does not expose yet (RAFT.md §3.3: built as joint from day one). */
struct raft_joint {
    struct raft_majority in;
    struct raft_majority out;
};

enum raft_vote_result { RAFT_VOTE_PENDING = 0, RAFT_VOTE_LOST = 1, RAFT_VOTE_WON = 2 };

struct raft_vote {
    uint64_t id;
    bool granted;
};

struct raft_tracker {
    struct raft_joint voters;
    struct raft_majority learners;
    size_t n; /* progress entries, sorted by id */
    struct raft_progress prs[RAFT_MAX_NODES];
    size_t n_votes;
    struct raft_vote votes[RAFT_MAX_NODES];
    size_t max_inflight;
    uint64_t max_inflight_bytes;
};

/* Acked index of id for quorum computations; false if id has none. */
typedef bool (*raft_acked_fn)(void *arg, uint64_t id, uint64_t *index);

bool raft_majority_has(const struct raft_majority *c, uint64_t id);
void raft_majority_add(struct raft_majority *c, uint64_t id);
void raft_majority_del(struct raft_majority *c, uint64_t id);
/* Largest index acked by a majority (UINT64_MAX for an empty config). */
uint64_t raft_majority_committed(const struct raft_majority *c, raft_acked_fn fn, void *arg);
uint64_t raft_joint_committed(const struct raft_joint *c, raft_acked_fn fn, void *arg);
bool raft_joint_has(const struct raft_joint *c, uint64_t id);

void raft_inflights_init(struct raft_inflights *in, size_t size, uint64_t max_bytes);
void raft_inflights_fini(struct raft_inflights *in);
void raft_inflights_add(struct raft_inflights *in, uint64_t index, uint64_t bytes);
void raft_inflights_free_le(struct raft_inflights *in, uint64_t to);
bool raft_inflights_full(const struct raft_inflights *in);
void raft_inflights_reset(struct raft_inflights *in);

void raft_pr_become_probe(struct raft_progress *pr);
void raft_pr_become_replicate(struct raft_progress *pr);
void raft_pr_become_snapshot(struct raft_progress *pr, uint64_t snap_index);
void raft_pr_sent_entries(struct raft_progress *pr, size_t n, uint64_t bytes);
bool raft_pr_can_bump_commit(const struct raft_progress *pr, uint64_t index);
bool raft_pr_maybe_update(struct raft_progress *pr, uint64_t n);
bool raft_pr_maybe_decr_to(struct raft_progress *pr, uint64_t rejected, uint64_t match_hint);
bool raft_pr_is_paused(const struct raft_progress *pr);

void raft_tracker_init(struct raft_tracker *t, size_t max_inflight, uint64_t max_inflight_bytes);
void raft_tracker_fini(struct raft_tracker *t);
struct raft_progress *raft_tracker_get(struct raft_tracker *t, uint64_t id);
const struct raft_progress *raft_tracker_cget(const struct raft_tracker *t, uint64_t id);
/* Insert a fresh progress for id (kept sorted); returns it. */
struct raft_progress *raft_tracker_insert(struct raft_tracker *t, uint64_t id, uint64_t next,
                                          bool learner);
void raft_tracker_remove(struct raft_tracker *t, uint64_t id);
uint64_t raft_tracker_committed(const struct raft_tracker *t);
bool raft_tracker_quorum_active(const struct raft_tracker *t);
bool raft_tracker_is_singleton(const struct raft_tracker *t);
void raft_tracker_reset_votes(struct raft_tracker *t);
void raft_tracker_record_vote(struct raft_tracker *t, uint64_t id, bool granted);
enum raft_vote_result raft_tracker_tally(const struct raft_tracker *t);
/* Sorted ids of all voters (incoming and outgoing). */
size_t raft_tracker_voter_ids(const struct raft_tracker *t, uint64_t *out);

/* ---- membership (raft_conf.c) ---- */

/* Apply one simple change in place. MS_E_BAD_REQUEST (tracker untouched) if it would leave no
 * voter, has node 0 or an unknown type. */
ms_err raft_conf_apply(struct raft_tracker *t, const struct raft_conf_change *cc,
                       uint64_t last_index);
/* Reset t to configuration cs (all progress fresh). MS_E_BAD_REQUEST if cs is invalid. */
ms_err raft_conf_restore(struct raft_tracker *t, const struct raft_conf_state *cs,
                         uint64_t last_index);
void raft_conf_state_of(const struct raft_tracker *t, struct raft_conf_state *out);
/* Check a conf state's shape (sorted, unique, non-zero, disjoint, within caps). */
bool raft_conf_state_valid(const struct raft_conf_state *cs);

/* ---- read-only requests (raft_read.c) ---- */

struct raft_read_req {
    uint64_t from; /* requesting node (the leader itself for local reads) */
    uint64_t ctx;
    uint64_t index; /* commit index when the request arrived */
};

struct raft_read_ack {
    uint64_t id;
    uint64_t round;
};

/* etcd read_only.go: requests wait for a heartbeat round confirmed by a quorum. Rounds are
 * numbered by request position, so one ack confirms every earlier request. */
struct raft_readonly {
    enum raft_read_only option;
    size_t n_acks;
    struct raft_read_ack acks[RAFT_MAX_NODES];
    struct raft_read_req *q; /* unconfirmed requests q[head..n) */
    size_t head;
    size_t n;
    size_t cap;
    uint64_t confirmed; /* requests confirmed so far (positions) */
};

void raft_readonly_init(struct raft_readonly *ro, enum raft_read_only option);
void raft_readonly_fini(struct raft_readonly *ro);
/* Drop every pending request and ack (a term change). */
void raft_readonly_reset(struct raft_readonly *ro);
void raft_readonly_add(struct raft_readonly *ro, uint64_t commit, uint64_t from, uint64_t ctx);
void raft_readonly_recv_ack(struct raft_readonly *ro, uint64_t from, uint64_t round);
/* The round to put in heartbeats (0 when nothing is pending). */
uint64_t raft_readonly_ctx(const struct raft_readonly *ro);
/* Pop the requests a quorum of voters has now confirmed into *out (malloc'ed, caller frees). */
size_t raft_readonly_advance(struct raft_readonly *ro, const struct raft_joint *voters,
                             struct raft_read_req **out);

/* ---- the core (raft.c, raft_step.c, raft_ready.c) ---- */

struct raft_read_states {
    struct raft_read_state *v;
    size_t n;
    size_t cap;
};

/* The Ready handed out and not yet advanced, owned by the core. */
struct raft_batch {
    bool out; /* a Ready is outstanding */
    struct raft_entry *entries;
    size_t n_entries;
    struct raft_entry *committed;
    size_t n_committed;
    struct raft_msgs msgs;
    struct raft_msgs after;
    struct raft_read_states reads;
    struct raft_msgs steps_on_advance; /* self-acks stepped by raft_advance */
    bool stable_resp;                  /* mark entries/snapshot stable on advance */
    uint64_t stable_term;              /* our term when the Ready was taken */
    uint64_t stable_index;             /* last unstable entry then (0: none) */
    uint64_t stable_log_term;
    bool stable_snap;
    uint64_t stable_snap_index;
    uint64_t applied_index; /* last committed entry handed out (0: none) */
    uint64_t applied_bytes;
    uint64_t applied_payload;
    /* raft_committed_now's entries, out until raft_advance_committed */
    struct raft_entry *now;
    size_t n_now;
    uint64_t now_bytes;
    uint64_t now_payload;
};

struct raft {
    uint64_t id;
    uint64_t term;
    uint64_t vote;
    struct raft_log log;
    uint64_t max_msg_size;
    uint64_t max_uncommitted; /* UINT64_MAX = unlimited */
    struct raft_tracker trk;
    enum raft_role state;
    bool is_learner;
    struct raft_msgs msgs;       /* to send at once */
    struct raft_msgs msgs_after; /* to send after persistence; may include self-acks */
    uint64_t lead;
    uint64_t lead_transferee;
    bool appends_due; /* some peer's append_due is set */
    uint64_t pending_conf_index;
    uint64_t uncommitted_size;
    struct raft_readonly ro;
    int election_elapsed;
    int heartbeat_elapsed;
    bool check_quorum;
    bool pre_vote;
    int heartbeat_timeout;
    int election_timeout;
    int randomized_election_timeout;
    bool disable_forwarding;
    bool step_down_on_removal;
    struct raft_msgs pending_reads; /* MsgReadIndex waiting for a commit in this term */
    /* Proposals forwarded by other members that this one could not take (it was handing
     * leadership over, or knew no leader): kept for the next leader (raft_transfer_props_flush),
     * their entry bytes, and ticks since the first. */
    struct raft_msgs transfer_props;
    uint64_t transfer_props_bytes;
    int transfer_props_ticks;
    struct raft_read_states read_states;
    uint64_t rng;
    /* RawNode part */
    struct raft_soft_state prev_soft;
    struct raft_hard_state prev_hard;
    struct raft_batch rd;
};

/* raft.c */
void raft_send(struct raft *r, struct raft_msg *m);
void raft_become_follower(struct raft *r, uint64_t term, uint64_t lead);
void raft_become_leader(struct raft *r);
void raft_hup(struct raft *r, bool transfer);
void raft_campaign_internal(struct raft *r, int kind);
bool raft_maybe_send_append(struct raft *r, uint64_t to, bool send_if_empty);
/* An append to one peer, or to every peer: sent at the next Ready, so that what a loop turn
 * proposes and commits goes to each peer as one message, not one per proposal or ack. */
void raft_send_append(struct raft *r, uint64_t to);
void raft_bcast_append(struct raft *r);
/* Send the appends left due (raft_ready calls it first). */
void raft_flush_appends(struct raft *r);
void raft_bcast_heartbeat(struct raft *r);
bool raft_append_entries(struct raft *r, struct raft_entry *ents, size_t n);
bool raft_maybe_commit(struct raft *r);
void raft_send_timeout_now(struct raft *r, uint64_t to);
bool raft_committed_entry_in_current_term(const struct raft *r);
bool raft_promotable(const struct raft *r);
void raft_applied_to(struct raft *r, uint64_t index, uint64_t size);
void raft_reduce_uncommitted(struct raft *r, uint64_t s);
bool raft_restore(struct raft *r, const struct raft_snapshot_meta *s);
void raft_switch_config_effects(struct raft *r);
#ifdef RAFT_BUG_CONF_ON_APPEND
/* Planted bug: switch configuration when a conf change is appended, not when applied. */
void raft_bug_conf_on_append(struct raft *r, const struct raft_entry *ents, size_t n);
#endif

enum { RAFT_CAMPAIGN_PRE = 0, RAFT_CAMPAIGN_ELECTION = 1, RAFT_CAMPAIGN_TRANSFER = 2 };

/* raft_step.c */
ms_err raft_step_internal(struct raft *r, const struct raft_msg *m);
/* Hand the forwarded proposals kept (during a leadership transfer or without a leader) on: to
 * the leader once one is known, or to the log if this node leads again (a transfer given up).
 * Dropped after two election timeouts without either (their proposers time out, as they would
 * have). */
void raft_transfer_props_flush(struct raft *r);
void raft_release_pending_reads(struct raft *r);

/* raft_ready.c */
void raft_read_states_push(struct raft_read_states *v, uint64_t index, uint64_t ctx);
void raft_batch_free(struct raft_batch *b);

#endif
