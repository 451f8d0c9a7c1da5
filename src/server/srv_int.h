/* srv_int.h - the server struct and the functions shared by the srv_*.c files. */
#ifndef METASTORE_SRV_INT_H
#define METASTORE_SRV_INT_H

#include "metastore/arena.h"
#include "metastore/auth.h"
#include "metastore/be.h"
#include "metastore/buf.h"
#include "metastore/cluster.h"
#include "metastore/kv.h"
#include "metastore/lease.h"
#include "metastore/metrics.h"
#include "metastore/raft.h"
#include "metastore/srv.h"
#include "metastore/wal.h"
#include "metastore/watch.h"
#include "wait.h"

#include "metastore/grow.h"

#include <event2/event.h>

/* A caller to complete once the batch is durable. */
struct srv_done {
    uint64_t id;
    ms_err err;
    struct srv_result *res; /* in the scratch arena; NULL with err */
};

/* Counters for /metrics (etcd's names where the meaning is the same). */
struct srv_counters {
    uint64_t proposals_committed;
    uint64_t proposals_applied;
    uint64_t proposals_failed;
    uint64_t ready_batches; /* ready steps that wrote to the WAL */
    uint64_t puts;
    uint64_t ranges;
    uint64_t deletes;
    uint64_t txns;
    uint64_t backend_commits;
    uint64_t leases_revoked;
    struct metrics_hist backend_commit_seconds;
};

#define SRV_MAX_ALARMS 64
#define SRV_MAX_OPS    64

enum copy_kind { COPY_SNAPSHOT, COPY_BACKUP, COPY_DEFRAG, COPY_INSTALL };

/* A backup or defrag waiting to run or to finish (srv_snap.c). */
struct srv_op {
    enum copy_kind kind;
    uint64_t waiter;
    srv_backup_fn backup_done;
    srv_done_fn done;
    void *ctx;
};

struct srv_op_waiter {
    uint64_t waiter;
    srv_backup_fn backup_done;
    srv_done_fn done;
    void *ctx;
};

struct srv_copy;
struct snap_header;

#define SRV_COMPACTOR_REVS 16

/* Auto compaction state (srv_compactor.c). */
struct srv_compactor {
    bool revision_mode;
    uint64_t retention;   /* ms (periodic) or revisions; 0: off */
    uint64_t interval_ms; /* how often srv_compactor_tick runs */
    uint64_t period_ms;
    uint64_t compact_interval_ms;
    uint64_t base_interval_ms;
    uint64_t last_success_ms;
    int64_t last_rev;
    int64_t revs[SRV_COMPACTOR_REVS];
    size_t n_revs;
    size_t n_keep;
};

void srv_compactor_init(struct srv_compactor *c, bool revision_mode, uint64_t retention,
                        uint64_t now_ms, int64_t current_rev);
/* The revision to compact to now, or 0. */
int64_t srv_compactor_tick(struct srv_compactor *c, uint64_t now_ms, int64_t current_rev);

/* This member's Raft node (srv_node.c). */
struct node_held;
struct node_deadline;
struct node_snap_out;
struct node_promote;
struct node_conf;
struct peer;
struct srv_node {
    struct raft *raft;
    struct raft_mem *mem; /* the stable log as the core reads it: entries after a base */
    struct wal *wal;
    struct raft_ready rd; /* outstanding while rd_out: its sync is in flight */
    bool rd_out;
    bool ready_pending;     /* ready_ev is active for this loop turn */
    struct event *ready_ev; /* the ready step */
    struct event *sync_ev;  /* the WAL's asynchronous sync completed */
    struct event *tick_ev;
    struct event *release_ev; /* removes released WAL segments a step at a time */
#ifdef MS_PLANT_ACK_BEFORE_FSYNC
    struct event *plant_flush_ev; /* PLANTED BUG: writes the WAL 300 ms after the acks */
#endif
    uint64_t tick_ms; /* monotonic time of the last whole tick */
    uint64_t term;    /* as persisted */
    uint64_t lead;
    enum raft_role role;
    uint64_t leader_changes;         /* leaders seen (etcd_server_leader_changes_seen_total) */
    uint64_t lost_ms;                /* when the member last knew no leader (monotonic) */
    struct peer *peer;               /* the transport; NULL while the member is alone */
    struct tls_ctx *peer_tls_server; /* the https peer listeners' TLS (owned), or NULL */
    struct tls_ctx *peer_tls_client; /* TLS to https peer URLs (owned), or NULL */
    uint64_t read_ctx;               /* the last ReadIndex context */
    struct node_held *held;          /* proposals waiting for a leader, oldest first */
    struct node_held *held_tail;
    size_t n_held;
    size_t held_bytes;
    struct node_deadline *deadlines; /* ring of proposals in flight, by deadline */
    size_t head_deadline;
    size_t n_deadlines;
    size_t cap_deadlines;
    uint64_t heartbeat_failures;     /* messages to a peer dropped (unreachable reports) */
    uint64_t mem_bytes;              /* entry data held in mem (about: see trim_log) */
    uint64_t trim_to;                /* a trim under way frees the entries below this */
    struct node_snap_out *snaps_out; /* snapshots being made or sent to followers */
    char snap_in[4400];              /* a snapshot received from the leader, not installed */
    uint64_t snap_in_index;
    uint64_t install_ms;  /* when the install of the Ready's snapshot started */
    uint64_t move_waiter; /* srv_move_leader's caller (0: none), its target and deadline */
    uint64_t move_target;
    uint64_t move_deadline_ms;
    struct node_conf *confs;       /* conf changes proposed until applied */
    struct node_promote *promotes; /* promotes asked of the leader, waiting */
    bool removed;                  /* this member was removed: it stops (stop_ev) */
    struct event *stop_ev;
    void (*left)(void *ctx); /* a leadership transfer before stopping is in progress */
    void *left_ctx;
    uint64_t left_deadline_ms;
};

/* What the backend holds about the log at start (srv.c reads it, srv_node.c starts from it). */
struct srv_durable {
    uint64_t applied;      /* consistent index */
    uint64_t applied_term; /* its term; 0 if the data directory predates recording it */
    uint64_t legacy_term;  /* the term recorded before the WAL existed */
    bool have_conf;
    struct raft_conf_state conf;   /* the configuration at the applied index */
    bool have_id;                  /* the member and cluster IDs are in the backend */
    struct cluster_boot *boot;     /* without them: the initial cluster of the flags (owned) */
    bool boot_ok;                  /* the flags passed etcd's bootstrap checks */
    struct cluster_member *joined; /* joining a cluster: its members, as it gave them (owned) */
    size_t n_joined;
    char boot_msg[512]; /* else why not */
};

struct srv_node_status {
    uint64_t term;
    uint64_t commit;
    uint64_t last_index;
    uint64_t lead;
    bool is_leader;
    uint64_t leader_changes;
    struct raft_conf_state conf;
};

/* Reads waiting for the next ready step (srv_read.c), ids in arrival order; with peers, the
 * batches waiting for their ReadIndex, oldest first. */
struct srv_read_batch;
struct srv_reads {
    uint64_t *ids;
    size_t n;
    size_t cap;
    struct srv_read_batch *head;
    struct srv_read_batch *tail;
    size_t n_asking;  /* batches asked and not yet confirmed (one round's) */
    size_t n_unasked; /* batches waiting for the next round */
};

/* A ReadIndex request not answered this long is sent again (etcd readIndexRetryTime). */
#define SRV_READ_RETRY_MS 500

/* The backend's write txn and what it holds durably (srv_store.c). */
struct srv_store {
    bool lazy_commit;      /* LMDB: commit on a timer; the WAL carries durability meanwhile */
    uint64_t applied;      /* last applied index (consistent index), in the write txn */
    uint64_t applied_term; /* its term */
    uint64_t committed;    /* highest index in the last commit (durable after the next one) */
    uint64_t durable;      /* highest index known durable in the backend */
    struct event *commit_ev;
};

/* The apply of entries (srv_apply.c). */
struct srv_applier {
    struct srv_done *dones; /* completions of the current batch */
    size_t n_dones;
    size_t cap_dones;
    uint64_t *compact_waiters; /* ids waiting for a physical compaction to finish */
    size_t n_compact_waiters;
    size_t cap_compact_waiters;
    struct event *compact_ev; /* the physical compaction's slices */
    bool self_published;      /* this member's attributes were applied since it started */
};

/* Snapshots, backups and defragmentation: copies of the backend (srv_snap.c). */
struct fs_async_sync;
struct srv_copies {
    struct srv_copy *copy; /* in progress */
    struct event *copy_ev;
    struct fs_async_sync *sync; /* a snapshot's file and directory syncs (NULL: in place) */
    struct event *sync_ev;
    struct fs_trash *trash;   /* snapshot files pruned, removed a step at a time */
    uint64_t last_snap_index; /* memory backend: index of the newest snapshot file */
    struct srv_op queued[SRV_MAX_OPS];
    size_t n_queued;
    struct srv_op_waiter waiting[SRV_MAX_OPS];
    size_t n_waiting;
};

/* The lessor kept in step with the log, and its expiry timer (srv_lease.c). */
struct srv_lease_ask;
struct srv_leases {
    struct lease_mgr *lessor;
    struct event *ev;
    uint64_t id_gen;
    struct srv_lease_ask *asks; /* keepalives and time-to-lives waiting for an answer */
};

/* Alarms (srv_alarm.c). */
struct srv_alarms {
    struct srv_alarm v[SRV_MAX_ALARMS];
    size_t n;
    struct srv_alarm cleared; /* the last alarm deactivated (answer of a DEACTIVATE) */
};

/* The auth store, the password hasher and the requests they hold (srv_auth.c). */
struct srv_auth_op;
struct srv_auth {
    struct auth_store *store;
    struct auth_hasher *hasher;
    struct event *ev;        /* the hasher's eventfd */
    struct srv_auth_op *ops; /* with the hasher or waiting for their entry */
};

/* The watch hub and its loop events (srv_watch.c). */
struct srv_watching {
    struct watch_hub *hub;
    struct event *sync_ev;     /* catch-up rounds, armed while watchers are unsynced */
    struct event *progress_ev; /* progress_notify ticks */
    struct event *wake_ev;     /* streams whose wait for output room is over */
    struct event *trim_ev;     /* gives freed output memory back to the system */
    size_t trim_high;          /* most output buffered since the last trim */
    struct kv_event *pending;  /* events applied in this batch, not yet delivered */
    size_t n_pending, cap_pending;
    size_t pending_bytes; /* their keys and values */
};

/* The waits of the lock and election services (srv_lock.c). */
struct srv_waiter;
struct srv_lock_key;
struct srv_locks {
    struct wait ids;               /* waiter by id (ctx: the waiter) */
    struct srv_waiter *all;        /* every waiter */
    struct srv_lock_key **buckets; /* the keys waiters watch, by hash */
    size_t cap;                    /* buckets, a power of two (0: none yet) */
    size_t n_keys;
    struct srv_waiter *due_head; /* waiters to look again, in order */
    struct srv_waiter *due_tail;
    struct srv_waiter *prefix_waiters; /* observers waiting for a first put */
    struct event *due_ev;
    struct arena *a; /* lookups; reset after each */
    size_t n_waiters;
    uint64_t wakeups; /* waiters woken by the deletion of the key they watched */
    uint64_t lookups;
    uint64_t granted;
};

/* The lock and election services' requests in flight (srv_lockop.c). */
struct srv_lockops {
    struct wait ids; /* request by id (ctx: the request) */
};

struct srv;

/* News that flows up between the files of server/, through functions srv.c registers at
 * create: a lower file never calls a higher one by name (the order is in srv.c's header). */
struct srv_hooks {
    /* srv_store.c: the backend holds everything up to index durably. */
    void (*durable)(struct srv *s, uint64_t index);
    /* srv_snap.c: a snapshot of the state at index (of term) is saved. */
    void (*snapshot_saved)(struct srv *s, uint64_t index, uint64_t term);
    /* srv_lease.c: propose req (an expired lease's revoke). */
    ms_err (*propose)(struct srv *s, const struct srv_req *req);
    /* srv_lease.c: the leader this member knows (0: none), and an application message to a
     * peer (the leader's lessor answers keepalives and time-to-lives). */
    uint64_t (*leader)(struct srv *s);
    ms_err (*send_app)(struct srv *s, uint64_t to, const void *data, size_t len);
    /* srv_snap.c: a snapshot from the leader is the store now (e: MS_OK), or could not be
     * loaded; h is its header, kr its key index (given over; NULL on an error). */
    void (*installed)(struct srv *s, ms_err e, const struct snap_header *h, struct kv_restore *kr);
    /* srv_auth.c: propose req for the caller id (its wait is added by the proposer). */
    ms_err (*propose_for)(struct srv *s, const struct srv_req *req, uint64_t id);
};

/* The server. The fields above the line are shared: set at create or owned by the loop as a
 * whole. Each struct below it belongs to the one file named beside it; no other file reads or
 * writes it (they call that file's functions). */
struct srv {
    struct event_base *base;
    struct cfg cfg;
    uint64_t member_id;
    uint64_t cluster_id;
    struct cluster_member *members; /* the "members" bucket as of the start, by ID */
    size_t n_members;
    struct be *be;
    struct be_txn *wtxn; /* the one write txn: every read and apply goes through it */
    struct kv_store *kv;
    struct arena *scratch; /* decoded entries and results of one ready step */
    struct wait waits;     /* callers waiting for an answer, by request id */
    uint64_t next_id;
    struct srv_counters ctr;
    struct srv_hooks hooks;
    /* ---- */
    int lock_fd;                    /* srv.c: exclusive lock on the data directory */
    struct buf enc;                 /* srv.c: entry encoding */
    struct srv_compactor compactor; /* srv.c: auto compaction */
    struct event *compactor_ev;     /* srv.c */
    struct event *publish_ev;       /* srv.c: until this member's attributes are applied */
    struct srv_rpc_stats *rpcs;     /* srv_metrics.c: grpc_server_* counters, lazily made */
    struct srv_lockops lockops;     /* srv_lockop.c */
    struct srv_node node;           /* srv_node.c */
    struct srv_reads reads;         /* srv_read.c */
    struct srv_applier apply;       /* srv_apply.c */
    struct srv_copies copies;       /* srv_snap.c */
    struct srv_leases lease;        /* srv_lease.c */
    struct srv_alarms alarm;        /* srv_alarm.c */
    struct srv_auth auth;           /* srv_auth.c */
    struct srv_watching watch;      /* srv_watch.c */
    struct srv_locks locks;         /* srv_lock.c */
    struct srv_store store;         /* srv_store.c */
};

/* ---- the files of server/, from the top down: each calls only the files below it; news goes
 * up through struct srv_hooks ----
 * srv_restore.c                        restoring a snapshot (creates a server to load into)
 * srv.c, srv_metrics.c, srv_lockop.c   entry points: lifecycle, submit, status, metrics, the
 *                                      lock and election services' requests
 * srv_member.c                         membership changes: etcd's checks, then conf changes
 * srv_node.c                           the Raft node: ready step, persist, ticks
 * srv_read.c, srv_apply.c              reads; the state machine
 * srv_auth.c                           users, roles, tokens, password hashing, permission checks
 * srv_snap.c                           snapshots, backups, defragmentation
 * srv_alarm.c                          alarms and the quota
 * srv_lease.c                          the lessor; the end of every kv write
 * srv_watch.c                          the watch hub
 * srv_lock.c                           waits of the lock and election services
 * srv_store.c                          the backend's write txn, applied index, configuration
 * srv_codec.c, srv_compactor.c, wait.c pure helpers
 */

/* A caller (done, ctx) waits under a new request id *rid, ... */
static inline ms_err srv_waiter_add(struct srv *s, srv_done_fn done, void *ctx, uint64_t *rid)
{
    *rid = ++s->next_id;
    struct wait_entry *w = wait_add(&s->waits, *rid);
    if (!w)
        return MS_E_NOMEM;
    w->done = done;
    w->ctx = ctx;
    return MS_OK;
}

/* ... and keeps waiting (*id = rid) if what was started for it returned e = MS_OK. */
static inline ms_err srv_waiter_keep(struct srv *s, uint64_t rid, ms_err e, uint64_t *id)
{
    if (e)
        wait_remove(&s->waits, rid, NULL);
    else
        *id = rid;
    return e;
}

static inline bool srv_push_id(uint64_t **v, size_t *n, size_t *cap, uint64_t id)
{
    uint64_t *nv = ms_grow(*v, cap, *n + 1, sizeof(*nv), 16);
    if (!nv)
        return false;
    *v = nv;
    (*v)[(*n)++] = id;
    return true;
}

/* LMDB's map size, its hard limit. The quota alarm fires at --quota-backend-bytes; the headroom
 * above it lets deletes, compaction and the alarm itself still be written (copy-on-write pages)
 * once writes are refused. */
static inline uint64_t srv_lmdb_map_size(const struct srv *s)
{
    uint64_t q = s->cfg.quota_backend_bytes;
    return q + q / 2 + ((uint64_t)64 << 20);
}

/* srv.c */
/* Propose req as the next entry (id: the caller to complete, 0 for none). */
ms_err srv_propose(struct srv *s, const struct srv_req *req, uint64_t id);

/* srv_metrics.c */
void srv_metrics_fini(struct srv *s);

/* srv_lockop.c */
ms_err srv_lockop_init(struct srv *s);
/* Free every request without calling it (nothing is cancelled: the server is going away). */
void srv_lockop_fini(struct srv *s);
/* Cancel request id and the step it runs (false: not such a request). */
bool srv_lockop_cancel(struct srv *s, uint64_t id);
/* Requests in flight. */
size_t srv_lockop_count(const struct srv *s);

/* srv_node.c */
/* Mark the ready step to run once in this loop turn. */
void srv_wake(struct srv *s);
/* Open the WAL (entries from index from on) into *log. */
ms_err srv_node_wal_open(struct srv *s, uint64_t from, struct wal_log *log);
/* Rebuild the node from log and d, elect it and apply the log (bounded, blocking: at start). */
ms_err srv_node_start(struct srv *s, const struct wal_log *log, const struct srv_durable *d);
void srv_node_close(struct srv *s);
/* Hand data (a request entry for caller id, 0 for none) to the core; a dropped proposal's
 * error is returned. Without a leader it is held until one is known or its deadline. */
ms_err srv_node_propose(struct srv *s, uint64_t id, const uint8_t *data, size_t len);
bool srv_node_has_leader(const struct srv *s);
uint64_t srv_node_leaderless_ms(const struct srv *s);
/* The hooks srv.c registers for srv_lease.c: the leader, and a message to a peer. */
uint64_t srv_node_leader(struct srv *s);
/* Transfer leadership to target for the waiter id (srv_move_leader's checks are done here). */
ms_err srv_node_move_leader(struct srv *s, uint64_t target, uint64_t id);
ms_err srv_node_send_app(struct srv *s, uint64_t to, const void *data, size_t len);
/* The request timeout (etcd ReqTimeout: 5 s + 2 x election timeout), in ms. */
uint64_t srv_node_request_timeout_ms(const struct srv *s);
/* A leader with peers: hand leadership to the most up-to-date follower, then call left (once,
 * from the loop) when another member leads or after the request timeout. False (left never
 * called) when there is nothing to hand over. */
bool srv_node_step_down(struct srv *s, void (*left)(void *ctx), void *ctx);
/* Propose the conf change cc for the caller id (its context is copied), again until it is
 * applied, or fails at the request timeout; held while there is no leader. With away the
 * leader, leadership moves to another voter first (the change waits until it has). */
ms_err srv_node_propose_conf(struct srv *s, uint64_t id, const struct raft_conf_change *cc,
                             uint64_t away);
/* Promote learner member for the caller id: checked and proposed here on the leader, else asked
 * of the leader (which answers only a refusal; the change completes id when applied). */
ms_err srv_node_promote(struct srv *s, uint64_t member, uint64_t id);
/* A lone member about to get another: its peer transport listens now (MS_E_UNHEALTHY, logged,
 * if it cannot: a member added then could never be reached). */
ms_err srv_node_peers_up(struct srv *s);
/* Since when this member has been connected to member id (monotonic ms; 0: it is not; this
 * member itself: always). */
uint64_t srv_node_active_since(const struct srv *s, uint64_t id);
bool srv_node_is_learner(const struct srv *s);
struct peer_stats;
/* The transport's counters for peer id (false: no such peer). */
bool srv_node_peer_stats(const struct srv *s, uint64_t id, struct peer_stats *out);
uint64_t srv_node_heartbeat_failures(const struct srv *s);
void srv_node_status(const struct srv *s, struct srv_node_status *st);
/* The current term, as persisted (headers). */
uint64_t srv_node_term(const struct srv *s);
void srv_node_wal_stats(const struct srv *s, struct wal_stats *out);
/* The hooks srv.c registers for srv_store.c and srv_snap.c: release the WAL below what the
 * backend or a snapshot holds, and mark the snapshot in it. */
void srv_node_durable(struct srv *s, uint64_t index);
void srv_node_snapshot_saved(struct srv *s, uint64_t index, uint64_t term);
void srv_node_installed(struct srv *s, ms_err e, const struct snap_header *h,
                        struct kv_restore *kr);

/* srv_read.c */
bool srv_reads_push(struct srv *s, uint64_t id);
/* The reads queued since the last step (out->head unused). */
void srv_reads_take(struct srv *s, struct srv_reads *out);
/* Serve r's reads now (a single voter) and empty r. */
void srv_reads_serve(struct srv *s, struct srv_reads *r);
/* With peers: answer r's serializable ranges now and park the rest as one batch; empties r.
 * Unless a round is under way, every batch not yet asked is asked with ReadIndex ctx: true
 * when the caller must request it (false: nothing to ask, or the next round asks). */
bool srv_reads_park(struct srv *s, struct srv_reads *r, uint64_t ctx, uint64_t now_ms);
/* The core confirmed ctx at commit index. */
void srv_reads_confirm(struct srv *s, uint64_t ctx, uint64_t index);
/* Serve the confirmed batches whose index is applied. */
void srv_reads_serve_applied(struct srv *s);
/* The leader changed: unconfirmed batches fail (etcd ErrLeaderChanged). */
void srv_reads_leader_changed(struct srv *s);
/* Up to max contexts of unconfirmed batches to ask for again (now marked asked). */
size_t srv_reads_due(struct srv *s, uint64_t now_ms, uint64_t *ctxs, size_t max);
/* Batches older than timeout_ms fail with "request timed out". */
void srv_reads_expire(struct srv *s, uint64_t now_ms, uint64_t timeout_ms);
/* Batches wait to be asked and no round is under way: the next step may ask (a round ended
 * by a confirmation, a leader change or an expiry; the step's end and the tick wake it). */
bool srv_reads_may_ask(const struct srv *s);
bool srv_reads_waiting(const struct srv *s);
void srv_reads_fini(struct srv *s);

/* srv_apply.c */
ms_err srv_apply_init(struct srv *s);
void srv_apply_fini(struct srv *s);
/* Apply one committed entry (durable, in index order). cs: for a conf change, the
 * configuration it left, already in effect in the core. */
void srv_apply_entry(struct srv *s, const struct raft_entry *ent, const struct raft_conf_state *cs);
/* True once this member's published attributes were applied in this run. */
/* A membership change's entry: check it as every member does when it applies it (etcd's
 * ValidateConfigurationChange, against the members and the removed IDs recorded), cc its
 * decoded context. MS_OK: it takes effect; else etcd's error, and the change is a no-op. */
ms_err srv_member_check(struct srv *s, const struct raft_conf_change *rc, struct cluster_cc *cc);
/* The change of ent took effect (err MS_OK: its member's record changes) or not (err); cs is the
 * configuration now, recorded with the applied index; the change's caller is answered. */
void srv_member_applied(struct srv *s, const struct raft_entry *ent, const struct cluster_cc *cc,
                        ms_err err, const struct raft_conf_state *cs);
/* Drop member id from the members in memory (not from the bucket): a member that stops
 * because it was removed answers with the others. */
void srv_member_forget(struct srv *s, uint64_t id);
/* Enough voters would be started (have published their names) after the change of kind
 * (ADD of a voter, REMOVE or PROMOTE of member id) for a quorum (etcd's IsReadyTo*). */
bool srv_member_quorum_started(struct srv *s, enum cluster_cc_kind kind, uint64_t id);
/* etcd 3.4's maxLearners. */
#define SRV_MAX_LEARNERS 1
bool srv_self_published(const struct srv *s);
/* The batch ends at index (of term): record it, commit as due, answer the writers. */
void srv_apply_end(struct srv *s, uint64_t index, uint64_t term);

/* srv_auth.c */
/* Create the store from the buckets, start the hasher. */
ms_err srv_auth_open(struct srv *s);
/* The buckets changed under the store (an installed snapshot): read them again; simple tokens
 * are dropped. */
ms_err srv_auth_reload(struct srv *s);
/* Stop the hasher, drop held requests without calling them. */
void srv_auth_close(struct srv *s);
/* Whether req must go through the hasher (srv_auth_submit) rather than straight to the log. */
bool srv_auth_needs_hasher(const struct auth_req *req);
ms_err srv_auth_submit(struct srv *s, const struct auth_req *req, srv_done_fn done, void *ctx,
                       uint64_t *id);
/* Cancel request id if it is held here (false: not ours). */
bool srv_auth_cancel(struct srv *s, uint64_t id);
struct srv_auth_stats {
    uint64_t revision; /* the auth store's */
    size_t tokens;     /* simple tokens held */
    size_t held;       /* requests with the hasher or waiting for their entry */
};
void srv_auth_stats(const struct srv *s, struct srv_auth_stats *out);
/* Apply an auth entry at log index index. */
ms_err srv_apply_auth(struct srv *s, const struct auth_req *req, uint64_t index,
                      struct auth_resp *out);

/* srv_snap.c */
ms_err srv_snap_init(struct srv *s);
void srv_copy_poll(struct srv *s);
bool srv_copy_running(const struct srv *s);
bool srv_cancel_op(struct srv *s, uint64_t id);
void srv_snap_fini(struct srv *s);
ms_err srv_snap_load(struct srv *s);
/* One step of removing the pruned snapshot files; true while some remain. */
bool srv_snap_trash_step(struct srv *s, uint64_t bytes);
/* Start replacing the store by the snapshot file at path (from the leader), keeping the
 * member's identity. The snapshot loads into a new backend in slices, across loop turns, while
 * the old one serves on; once the whole file has verified, the new backend takes the old one's
 * place and the installed hook runs. The file is consumed (the memory backend keeps it as its
 * snapshot). A copy in progress (backup, defrag, snapshot) fails first; copies asked for
 * meanwhile wait. */
ms_err srv_snap_install(struct srv *s, const char *path);
/* Whether an install runs. */
bool srv_snap_installing(const struct srv *s);
/* At start, before LMDB opens member/db: finish or undo a defrag a crash interrupted. */
ms_err srv_defrag_recover(struct srv *s);
/* member/snap, where snapshot and backup files go. */
void srv_snap_dir(const struct srv *s, char *out, size_t cap);

/* srv_alarm.c */
ms_err srv_alarms_load(struct srv *s);
bool srv_has_alarm(const struct srv *s, int64_t type);
ms_err srv_apply_alarm(struct srv *s, const struct srv_alarm_req *r, struct srv_alarm_resp *out);
size_t srv_request_cost(const struct srv_req *req);
/* False if req would take the backend past the quota (etcd BackendQuota.Available). */
bool srv_quota_ok(struct srv *s, const struct srv_req *req);

/* srv_lease.c */
ms_err srv_lease_open(struct srv *s);
/* Rebuild the lessor from the lease bucket (a snapshot was installed); waiting asks stay. */
ms_err srv_lease_reload(struct srv *s);
void srv_lease_close(struct srv *s);
/* This member leads: it expires leases from now on, each extended by extend_ms first. */
void srv_lease_promote(struct srv *s, uint64_t extend_ms);
/* It no longer leads: no expiry until promoted again. */
void srv_lease_demote(struct srv *s);
int64_t srv_lease_new_id(struct srv *s);
/* A keepalive or time-to-live (req) for the caller waiting as rid: answered by the leader's
 * lessor (this member's, or the leader's over the peer port) from srv_lease_pump, or failed
 * after timeout_ms. */
void srv_lease_ask(struct srv *s, uint64_t rid, const struct srv_req *req, uint64_t timeout_ms);
/* Answer, send or time out what waits (at the end of each ready step and each tick). */
void srv_lease_pump(struct srv *s);
bool srv_lease_asks_waiting(const struct srv *s);
/* An application message from peer from: a request to answer, or an answer. */
void srv_lease_on_app(struct srv *s, uint64_t from, const uint8_t *p, size_t len);
void srv_lease_asks_fini(struct srv *s);
/* Call fn for each key attached to lease id (until it returns false). */
void srv_lease_each_key(struct srv *s, int64_t id, lease_key_fn fn, void *ctx);
size_t srv_lease_cost(void);
ms_err srv_apply_lease_grant(struct srv *s, const struct srv_lease_req *r,
                             struct srv_lease_resp *out);
ms_err srv_apply_lease_revoke(struct srv *s, const struct srv_lease_req *r, int64_t *revision);
/* End the kv write w of an apply that ended with e: on error abort it (stopping the process
 * on a backend failure) and return e; otherwise commit it and hand its events to the lessor
 * (which must see deleted keys first) and then to the watch hub. */
struct kv_write;
ms_err srv_write_finish(struct srv *s, struct kv_write *w, ms_err e);

/* srv_watch.c */
/* Create / free the watch hub and its loop events. */
ms_err srv_watch_init(struct srv *s);
void srv_watch_fini(struct srv *s);
/* Every change of an applied entry, in order, all at revision rev. The events live in the
 * scratch arena until the end of the ready step; watchers get them at srv_events_flush. */
void srv_events_applied(struct srv *s, int64_t rev, const struct kv_event *ev, size_t n);
/* Deliver the events applied since the last flush: one response per watcher for the whole
 * batch (at the end of each apply batch, and before a compaction). */
void srv_events_flush(struct srv *s);
/* The store was replaced by a snapshot: every watcher catches up from the new history. */
void srv_watch_restored(struct srv *s);

/* srv_lock.c */
/* etcd's waitDeletes for the caller's key own, created at own_rev under prefix: done(MS_OK,
 * current revision) once no key under prefix has a create revision below own_rev. Each round
 * watches only the key with the largest create revision below own_rev, so a deletion wakes one
 * waiter, whatever the queue's length. If own is deleted or re-created first (its lease expired
 * or was revoked), done gets MS_E_LEASE_NOT_FOUND. done runs from a loop callback, never inside
 * this call. Cancelled with srv_lock_cancel (srv_cancel), which gives the place up: the server
 * proposes the delete of own (if it is still the key created at own_rev). Keys are copied. */
typedef void (*srv_wait_fn)(void *ctx, ms_err err, int64_t revision);
ms_err srv_wait_deletes(struct srv *s, const uint8_t *prefix, size_t prefix_len, const uint8_t *own,
                        size_t own_len, int64_t own_rev, srv_wait_fn done, void *ctx, uint64_t *id);
/* srv_election_observe's wait, on the election's prefix (copied). */
ms_err srv_observe(struct srv *s, const uint8_t *prefix, size_t prefix_len, srv_leader_fn fn,
                   void *ctx, uint64_t *id);
ms_err srv_lock_init(struct srv *s);
/* Free every waiter without calling it. */
void srv_lock_fini(struct srv *s);
/* Cancel waiter id (false: not a waiter). */
bool srv_lock_cancel(struct srv *s, uint64_t id);
/* The events of an applied entry (srv_events_applied): deletions mark waiters due, observers
 * hear of puts to their leader at once. */
void srv_lock_events(struct srv *s, int64_t rev, const struct kv_event *ev, size_t n);

/* srv_store.c */
/* lazy_commit: LMDB (commit on a timer); applied, term: what the backend holds at start. */
ms_err srv_store_init(struct srv *s, bool lazy_commit, uint64_t applied, uint64_t term);
void srv_store_fini(struct srv *s);
/* Commit the write txn and open the next one (fatal on failure); with lazy commits, the
 * backend then holds everything applied: hooks.durable hears of it. */
void srv_commit(struct srv *s);
/* Entries up to index (of term) are applied in the write txn: record it there, and commit now
 * (memory backend) or on the commit timer (LMDB). */
void srv_store_applied(struct srv *s, uint64_t index, uint64_t term);
uint64_t srv_applied(const struct srv *s);
uint64_t srv_applied_term(const struct srv *s);
/* The configuration recorded with the applied index (SRV_META_CONF_STATE). */
ms_err srv_conf_put(struct be_txn *t, const struct raft_conf_state *cs);
ms_err srv_conf_get(struct be_txn *t, struct raft_conf_state *cs, bool *found);
/* Write member m's record into the members bucket of t. */
ms_err srv_member_put(struct be_txn *t, const struct cluster_member *m);
/* Member id is removed: its record goes, and its ID is kept as removed (never to come back). */
ms_err srv_member_remove_record(struct be_txn *t, uint64_t id);
ms_err srv_member_was_removed(struct be_txn *t, uint64_t id, bool *removed);
/* Member id in s->members, or NULL. */
struct cluster_member *srv_member_get(struct srv *s, uint64_t id);
/* (Re)read the members bucket into s->members (empty in a data directory that predates it). */
ms_err srv_members_load(struct srv *s);
/* Stop the process if e means the backend failed during an apply. */
void srv_check_apply_error(ms_err e);

/* The WAL's metadata: the member ID and the cluster ID, big-endian. */
#define SRV_WAL_META_LEN 16

#define SRV_META_CONSISTENT_INDEX "consistent_index"
#define SRV_META_CONSISTENT_TERM  "consistent_term"
#define SRV_META_CONF_STATE       "conf_state"
#define SRV_META_TERM             "term" /* before the WAL existed; read once, then the WAL */
#define SRV_META_MEMBER_ID        "member_id"
#define SRV_META_CLUSTER_ID       "cluster_id"

#endif
