/* sim.h - the deterministic cluster simulator (RAFT.md §4.2).
 *
 * One process runs up to SIM_MAX_IDS nodes, each the production raft core over a raft_mem log,
 * with every message and disk record going through the production codec. Everything else is
 * simulated and driven by one seeded PRNG: time (an event queue in milliseconds), the network
 * (delay, loss, duplication, reordering, corruption, symmetric and asymmetric partitions), the
 * disk (records are volatile until a simulated fsync completes; a crash keeps the synced ones
 * plus a random prefix of the rest), crashes and restarts, pauses, membership changes, leader
 * transfers, snapshots with log compaction, and clients running put/get/cas against a small
 * key-value state machine. After every event sim_check_* verifies the invariants of RAFT.md
 * §4.3; at the end the client history goes through the linearizability checker.
 *
 * A run is a pure function of its seed: rerun the seed to replay it, with -v for the trace.
 */
#ifndef SIM_H
#define SIM_H

#include "metastore/buf.h"
#include "metastore/raft.h"
#include "sim_lincheck.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_IDS     7 /* node ids 1..7; at most 5 are members at a time */
#define SIM_MAX_MEMBERS 5
#define SIM_KEYS        6
#define SIM_CLIENTS     5 /* the last one only chases new leaders with reads */
#define SIM_CHASER      (SIM_CLIENTS - 1)
#define SIM_TRACE_LINES 600
#define SIM_IN_SNAPS    4

/* ---- options and results (the driver's view) ---- */

struct sim_opts {
    uint64_t seed;
    bool verbose;      /* print every trace line as it happens */
    uint64_t chaos_ms; /* length of the fault phase (default 20 s) */
    uint64_t heal_ms;  /* bound on the liveness phase (default 20 s) */
};

struct sim_result {
    bool failed;
    char what[512]; /* the violated invariant */
    uint64_t events;
    uint64_t sim_ms;
    uint64_t ops_ok;
    uint64_t ops_unknown;
    uint64_t ops_failed;
    uint64_t leaders; /* distinct (term, leader) pairs */
    uint64_t crashes;
    uint64_t snapshots_sent;
    uint64_t conf_changes;
    uint64_t early_applies; /* Readies whose committed entries were applied before persisting */
    uint64_t now_applies;   /* raft_committed_now batches applied while a Ready persisted */
    bool lin_gave_up;
};

/* Run one seed. Returns 0 if every invariant held, 1 otherwise (res->what says which). */
int sim_run(const struct sim_opts *o, struct sim_result *res);

/* ---- internals shared by sim_*.c ---- */

enum sim_ev {
    EV_TICK,
    EV_DELIVER,
    EV_SYNC,
    EV_CLIENT,
    EV_CLIENT_TIMEOUT,
    EV_RESTART,
    EV_RESUME,
    EV_FAULT,
    EV_HEAL_LINKS,
    EV_MEMBERSHIP,
    EV_TRANSFER,
    EV_HEAL,
    EV_PROBE,
    EV_KILL,
    EV_ISOLATE,
};

struct sim_event {
    uint64_t time;
    uint64_t seq; /* insertion order breaks ties: determinism */
    enum sim_ev type;
    uint64_t node;
    uint64_t a;
    uint64_t b;
    void *p; /* owned payload (a packet) */
};

/* A message on the wire: its encoding, plus the snapshot data a MsgSnap streams beside it. */
struct sim_packet {
    uint64_t from;
    uint64_t to;
    enum raft_msg_type type;
    size_t len;
    uint8_t *bytes;
    size_t blob_len;
    uint8_t *blob;
    bool corrupt; /* a bit was flipped in flight */
};

enum sim_rec_type { REC_ENTRY, REC_HARD, REC_SNAP };

/* One WAL record: a codec encoding; snapshots carry the state machine image too. */
struct sim_record {
    enum sim_rec_type type;
    size_t len;
    uint8_t *p;
    size_t blob_len;
    uint8_t *blob;
};

struct sim_disk {
    struct sim_record *v;
    size_t n;
    size_t cap;
    size_t synced; /* records [0, synced) survive a crash */
};

/* The state machine: one register per key, plus what a snapshot must carry. */
struct sim_kv {
    uint64_t val[SIM_KEYS];
};

/* A node's log as its Readies described it (to check log invariants). Entry i, base < i <=
 * base + n, is at [i - base - 1]; prefix hashes chain from base_prefix. */
struct sim_view {
    uint64_t base;
    uint64_t base_term;
    uint64_t base_prefix;
    bool base_known; /* base_prefix is meaningful */
    size_t n;
    size_t cap;
    uint64_t *term;
    uint64_t *prefix;
    uint8_t *cc; /* 1 for conf change entries */
};

struct sim_read {
    uint64_t ctx;
    size_t op;      /* index into the history */
    uint64_t index; /* read state index once known, else 0 */
    bool have_index;
};

struct sim_node {
    uint64_t id;
    bool started; /* ever started (member or joining) */
    bool up;
    bool paused;
    bool retired; /* removed from the cluster and shut down */
    uint64_t incarnation;
    struct raft *r;
    struct raft_mem *mem;
    struct raft_config cfg;
    struct sim_disk disk;
    struct sim_kv kv;
    uint64_t applied;
    struct raft_conf_state conf; /* as applied */
    uint64_t snap_index;         /* latest snapshot, local or installed */
    /* snapshots received in MsgSnaps, by index, until a Ready installs one (as a server keeps
     * received snapshot files by name: the core may install an older one than the last
     * received, or ignore one) */
    uint64_t in_snap_index[SIM_IN_SNAPS];
    size_t in_snap_len[SIM_IN_SNAPS];
    uint8_t *in_snap_blob[SIM_IN_SNAPS];
    /* the Ready being persisted, and its snapshot's data */
    bool rd_out;
    bool rd_applied; /* the Ready in flight was applied before its persisting */
    struct raft_ready rd;
    uint8_t *rd_snap_blob;
    size_t rd_snap_len;
    /* pending client requests */
    size_t n_props;
    size_t props[SIM_CLIENTS * 4]; /* history indexes of writes proposed here */
    size_t n_reads;
    struct sim_read reads[SIM_CLIENTS * 4];
    uint64_t resume_at;
    uint64_t missed_ticks;
    uint64_t tick_ms;
    int crash_stage; /* crash point chosen for the Ready in flight (0: none) */
    bool retire_pending;
    /* invariant bookkeeping */
    struct sim_view view;
    uint64_t seen_commit; /* highest commit index whose entries went into the committed table */
    uint64_t last_commit; /* commit and applied never regress within a life */
    uint64_t last_applied;
    uint64_t checked_commit;
    uint64_t snapshot_every;
};

enum sim_op_status { OP_PENDING, OP_OK, OP_FAILED, OP_UNKNOWN };

struct sim_op {
    size_t client;
    uint64_t id; /* unique across the run */
    struct lc_op lc;
    enum sim_op_status status;
    uint64_t node;
    uint64_t min_read_index; /* highest acked write index when a read was invoked */
    bool probe;
};

struct sim_client {
    bool busy;
    size_t op;
    uint64_t last_value[SIM_KEYS]; /* what it last saw, for CAS expectations */
};

/* Fault and workload knobs, drawn per seed (swarm testing). */
struct sim_knobs {
    size_t voters;      /* initial voters (3 or 5) */
    unsigned p_drop;    /* per mille */
    unsigned p_dup;     /* per mille */
    unsigned p_corrupt; /* per mille */
    unsigned p_slow;    /* per mille of messages delayed 100-1000 ms */
    uint64_t max_delay; /* ms, normal delivery delay 1..max_delay */
    unsigned p_async;   /* per cent of syncs that take 1..max_sync ms */
    uint64_t max_sync;
    unsigned p_crash_point;        /* per mille of Readies that crash the node mid-way */
    unsigned p_apply_early;        /* per cent of Readies applied before persisting */
    unsigned p_kill_leader;        /* per mille of new leaders crashed within 300 ms (buggify) */
    unsigned p_target_leader;      /* per mille of crashes and isolations aimed at the leader */
    unsigned p_isolate_new_leader; /* per mille of new leaders cut off within 10 ms */
    unsigned p_isolate_proposer;   /* per mille of writes after which the leader is cut off */
    unsigned p_isolate_acker;      /* per mille of acked writes after which it is cut off */
    uint64_t fault_every;          /* mean ms between faults */
    uint64_t max_size_per_msg;
    size_t max_inflight;
    uint64_t snapshot_every; /* applied entries between snapshots */
    uint64_t catchup_keep;   /* entries kept behind a snapshot */
    bool membership;
    bool transfers;
    unsigned think_ms;
};

struct sim_vote {
    uint64_t node;
    uint64_t term;
    uint64_t cand;
};

struct sim_hent {
    uint64_t k1;
    uint64_t k2;
    uint64_t v;
    bool full;
};

/* Open-addressing map (k1, k2) -> v for the invariant tables. */
struct sim_hmap {
    struct sim_hent *t;
    size_t cap;
    size_t used;
};

/* What every node applied or knew committed, by index. */
struct sim_logent {
    uint64_t term;
    uint64_t hash;   /* the entry's own hash */
    uint64_t prefix; /* hash of the log up to here */
    bool prefix_known;
    uint64_t commit_term; /* lowest term in which a node reported it committed */
    bool known;
};

struct sim {
    struct sim_opts opts;
    struct sim_result *res;
    struct sim_knobs k;
    uint64_t rng;
    uint64_t now;
    uint64_t seq;
    uint64_t end;
    uint64_t clients_stop;
    bool healing;
    bool churn;    /* the seed drew the leader-churn profile */
    bool fig8;     /* ... or its Figure 8 variant */
    bool quiesced; /* clients paused for the liveness probe */
    uint64_t heal_at;
    /* events */
    struct sim_event *heap;
    size_t nheap;
    size_t capheap;
    /* cluster */
    struct sim_node nodes[SIM_MAX_IDS + 1];
    bool cut[SIM_MAX_IDS + 1][SIM_MAX_IDS + 1]; /* cut[from][to] */
    uint64_t partition_epoch;
    bool removed[SIM_MAX_IDS + 1]; /* removed from the configuration: never comes back */
    /* clients and history */
    struct sim_client clients[SIM_CLIENTS];
    struct sim_op *ops;
    size_t nops;
    size_t capops;
    uint64_t max_acked_index;
    /* liveness probe */
    int probe_stage; /* 0 idle, 1 read pending/ok, 2 write, 3 done */
    bool probe_busy;
    /* invariant tables */
    uint64_t *leader_of_term;
    size_t nterms;
    struct sim_vote *votes;
    size_t nvotes;
    size_t capvotes;
    struct sim_hmap lm; /* (index, term) -> prefix hash */
    struct sim_logent *committed;
    size_t ncommitted;
    struct sim_logent *applied; /* term/prefix of what was applied at each index */
    size_t napplied;
    uint64_t max_committed;
    /* trace */
    struct buf line;
    char *trace[SIM_TRACE_LINES];
    size_t trace_head;
    size_t trace_n;
    bool failed;
};

/* sim_run.c */
uint64_t sim_rand(struct sim *s);
uint64_t sim_range(struct sim *s, uint64_t lo, uint64_t hi); /* [lo, hi] */
bool sim_chance(struct sim *s, unsigned per_mille);
void sim_schedule(struct sim *s, uint64_t delay, enum sim_ev type, uint64_t node, uint64_t a,
                  uint64_t b, void *p);
void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_op_done(struct sim *s, size_t op, enum sim_op_status st, uint64_t out);
/* A node became leader of a new term (called by the checker). */
void sim_new_leader(struct sim *s, uint64_t id);

/* sim_node.c */
void sim_node_start(struct sim *s, uint64_t id, const uint64_t *bootstrap, size_t n);
void sim_node_crash(struct sim *s, uint64_t id);
void sim_node_restart(struct sim *s, uint64_t id);
void sim_node_flush(struct sim *s, uint64_t id);
void sim_node_sync_done(struct sim *s, uint64_t id, uint64_t incarnation);
void sim_node_deliver(struct sim *s, struct sim_packet *pk);
void sim_node_free(struct sim_node *n);
bool sim_node_serving(const struct sim *s, uint64_t id);
/* Submit client op to node; false if the node refused it at once (op then failed). */
void sim_node_submit(struct sim *s, uint64_t id, size_t op);
/* Shut node id down for good (removed from the cluster). */
void sim_node_retire(struct sim *s, uint64_t id);
void sim_node_pause(struct sim *s, uint64_t id, uint64_t ms);
void sim_node_resume(struct sim *s, uint64_t id);
void sim_node_tick(struct sim *s, uint64_t id, uint64_t incarnation);

/* Drop a finished or timed-out request from node id's pending lists. */
void sim_node_forget(struct sim *s, uint64_t id, size_t op);

/* sim_check.c */
void sim_check_init(struct sim *s);
void sim_check_fini(struct sim *s);
void sim_view_fini(struct sim_view *v);
/* A Ready of node id: its snapshot and entries update the view (before persistence). */
void sim_check_ready(struct sim *s, uint64_t id, const struct raft_ready *rd);
/* A message leaves node from; durable is that node's synced disk. */
void sim_check_send(struct sim *s, uint64_t from, const struct raft_msg *m);
/* Node id applied entry e. */
void sim_check_apply(struct sim *s, uint64_t id, const struct raft_entry *e);
/* Node id applies committed entry e before persisting its Ready: the disk must hold it. */
void sim_check_durable(struct sim *s, uint64_t id, const struct raft_entry *e);
/* Node id restarted: rebuild its view from the durable log. */
void sim_check_restart(struct sim *s, uint64_t id);
/* The leader's commit index must only cover entries durable on a quorum of the configuration
 * in force: checked before every Ready (a Ready may apply a conf change) and after events. */
void sim_check_commit(struct sim *s, uint64_t id);
/* After every event. */
void sim_check_step(struct sim *s);
/* At the end of the run. */
void sim_check_final(struct sim *s);
uint64_t sim_hash_bytes(const uint8_t *p, size_t n);

#endif
