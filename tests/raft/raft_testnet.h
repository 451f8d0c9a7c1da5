/* raft_testnet.h - an in-process cluster for the raft paper and interaction tests.
 *
 * Nodes 1..n each run the production core over a raft_mem log. Ready batches are handled in
 * the contract's order (persist, then apply, then advance); every message a node emits lands in
 * one FIFO queue that the test delivers explicitly (tn_deliver*) or all at once (tn_stabilize).
 * Links can be cut per direction. With a trace buffer set, every Ready and delivery is described
 * in a stable text format that the interaction tests compare against golden files.
 */
#ifndef RAFT_TESTNET_H
#define RAFT_TESTNET_H

#include "metastore/buf.h"
#include "metastore/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TN_MAX 8

struct tn_node {
    uint64_t id;
    bool present;
    struct raft *r;
    struct raft_mem *mem;
    struct raft_config cfg;
    struct raft_conf_state conf; /* configuration as last applied */
    size_t n_applied;            /* normal entries applied (with data) */
    char applied[64][32];        /* their data as text (first 64) */
    uint64_t applied_index;
};

struct tn {
    size_t n;
    struct tn_node nodes[TN_MAX + 1]; /* by id, 1..TN_MAX */
    struct raft_msg *q;               /* messages in flight, owned copies */
    size_t qn;
    size_t qcap;
    bool cut[TN_MAX + 1][TN_MAX + 1]; /* cut[from][to] drops messages */
    struct buf *trace;                /* optional */
    size_t n_read_states;
    struct raft_read_state read_states[64]; /* collected from all nodes, in order */
};

/* Options for tn_add_nodes; zero means the etcd default except where noted. */
struct tn_opts {
    bool no_pre_vote;
    bool no_check_quorum;
    bool lease_reads;
    bool no_step_down;
    bool disable_forwarding;
    int election_tick;
    uint64_t max_size_per_msg; /* 0 = unlimited (not the 1 MiB default) */
    size_t max_inflight;
    uint64_t max_uncommitted;
    uint64_t snap_index; /* start from a snapshot at this index (term 1) */
    uint64_t seed;
};

void tn_init(struct tn *t);
void tn_fini(struct tn *t);

/* Add nodes first..first+count-1 whose configuration is voters (and learners), starting from
 * an empty log or the snapshot in o. */
void tn_add_nodes(struct tn *t, uint64_t first, size_t count, const uint64_t *voters,
                  size_t n_voters, const uint64_t *learners, size_t n_learners,
                  const struct tn_opts *o);

/* Append empty entries with the given terms to node id's stored log, set its stored term and
 * restart it (to build the divergent logs of the paper's figures). */
void tn_set_log(struct tn *t, uint64_t id, const uint64_t *terms, size_t n, uint64_t term);

/* Rebuild node id's core from its stored log and hard state (a restart). */
void tn_restart(struct tn *t, uint64_t id);

struct raft *tn_raft(struct tn *t, uint64_t id);

/* Handle every Ready of node id; emitted messages go to the queue. Returns true if there was
 * any. */
bool tn_process_ready(struct tn *t, uint64_t id);

/* Deliver queued messages addressed to id (0: to anyone) in order; returns how many. Messages
 * over cut links are dropped. Each delivered message is stepped, then the target's Readies are
 * processed only if process is true. */
size_t tn_deliver(struct tn *t, uint64_t id, bool process);

/* Process and deliver until nothing is left (bounded). */
void tn_stabilize(struct tn *t);

/* Drop every queued message (to id, or all when id is 0). */
void tn_drop(struct tn *t, uint64_t id);

/* Count queued messages of a type (from/to 0 = any). */
size_t tn_count(const struct tn *t, enum raft_msg_type type, uint64_t from, uint64_t to);

/* Cut or restore both directions between a and b. */
void tn_cut(struct tn *t, uint64_t a, uint64_t b, bool cut);
/* Cut id off from everyone (or heal with cut = false). */
void tn_isolate(struct tn *t, uint64_t id, bool cut);
void tn_heal(struct tn *t);

/* Tick node id n times, processing nothing. */
void tn_tick(struct tn *t, uint64_t id, int n);

/* Describe things (for traces and failure messages). */
void tn_fmt_entry(struct buf *b, const struct raft_entry *e);
void tn_fmt_msg(struct buf *b, const struct raft_msg *m);
void tn_fmt_log(struct tn *t, uint64_t id, struct buf *b);
void tn_fmt_status(struct tn *t, uint64_t id, struct buf *b);

#endif
