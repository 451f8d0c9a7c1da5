/* srv_int.h - the server struct and the functions shared by the srv_*.c files. */
#ifndef METASTORE_SRV_INT_H
#define METASTORE_SRV_INT_H

#include "metastore/arena.h"
#include "metastore/be.h"
#include "metastore/buf.h"
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

enum copy_kind { COPY_SNAPSHOT, COPY_BACKUP, COPY_DEFRAG };

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
    uint64_t tick_ms; /* monotonic time of the last whole tick */
    uint64_t term;    /* as persisted */
    uint64_t lead;
    enum raft_role role;
    uint64_t leader_changes; /* leaders seen (etcd_server_leader_changes_seen_total) */
};

/* What the backend holds about the log at start (srv.c reads it, srv_node.c starts from it). */
struct srv_durable {
    uint64_t applied;      /* consistent index */
    uint64_t applied_term; /* its term; 0 if the data directory predates recording it */
    uint64_t legacy_term;  /* the term recorded before the WAL existed */
    bool have_conf;
    struct raft_conf_state conf; /* the configuration at the applied index */
    bool have_id;                /* the member and cluster IDs are in the backend */
};

struct srv_node_status {
    uint64_t term;
    uint64_t commit;
    uint64_t last_index;
    uint64_t lead;
    bool is_leader;
    struct raft_conf_state conf;
};

/* Reads waiting for the next ready step (srv_read.c), ids in arrival order. */
struct srv_reads {
    uint64_t *ids;
    size_t n;
    size_t cap;
};

struct srv {
    struct event_base *base;
    struct cfg cfg;
    struct be *be;
    struct be_txn *wtxn; /* the one write txn: every read and apply goes through it */
    struct kv_store *kv;
    int lock_fd; /* exclusive lock on the data directory */
    struct srv_node node;
    bool lazy_commit;   /* LMDB: commit on a timer; the WAL carries durability meanwhile */
    uint64_t committed; /* highest index durable in the backend */
    struct event *commit_ev;
    struct srv_counters ctr;
    struct srv_alarm alarms[SRV_MAX_ALARMS];
    size_t n_alarms;
    struct srv_alarm cleared; /* the last alarm deactivated (answer of a DEACTIVATE) */
    struct srv_copy *copy;    /* snapshot / backup / defrag in progress */
    struct event *copy_ev;
    uint64_t last_snap_index; /* memory backend: index of the newest snapshot file */
    struct srv_compactor compactor;
    struct event *compactor_ev;
    struct lease_mgr *lessor;
    struct event *lease_ev;
    uint64_t lease_id_gen;
    struct srv_op ops_queued[SRV_MAX_OPS];
    size_t n_ops_queued;
    struct srv_op_waiter ops_waiting[SRV_MAX_OPS];
    size_t n_ops_waiting;

    struct event *compact_ev;
    uint64_t applied;      /* last applied index (consistent index) */
    uint64_t applied_term; /* its term */

    struct wait waits;
    struct srv_reads reads;
    uint64_t *compact_waiters; /* ids waiting for a physical compaction to finish */
    size_t n_compact_waiters;
    size_t cap_compact_waiters;
    uint64_t next_id;

    struct srv_done *dones; /* completions of the current ready step */
    size_t n_dones;
    size_t cap_dones;

    struct watch_hub *watch;         /* srv_watch.c */
    struct event *watch_sync_ev;     /* catch-up rounds, armed while watchers are unsynced */
    struct event *watch_progress_ev; /* progress_notify ticks */

    struct arena *scratch; /* decoded entries and results of one ready step */
    struct buf enc;        /* entry encoding */
    uint64_t member_id;
    uint64_t cluster_id;
};

/* srv_node.c */
/* Mark the ready step to run once in this loop turn. */
void srv_wake(struct srv *s);
void srv_on_ready(evutil_socket_t fd, short what, void *arg);
void srv_on_synced(evutil_socket_t fd, short what, void *arg);
/* Open the WAL (entries from index from on) into *log, settling nothing yet. */
ms_err srv_node_wal_open(struct srv *s, uint64_t from, struct wal_log *log);
/* Rebuild the node from log and d, elect it and apply the log (bounded, blocking: at start). */
ms_err srv_node_start(struct srv *s, const struct wal_log *log, const struct srv_durable *d);
void srv_node_close(struct srv *s);
/* Hand data (a request entry) to the core; a dropped proposal's error is returned. */
ms_err srv_node_propose(struct srv *s, const uint8_t *data, size_t len);
void srv_node_status(const struct srv *s, struct srv_node_status *st);
/* srv_read.c */
bool srv_reads_push(struct srv *s, uint64_t id);
void srv_reads_take(struct srv *s, struct srv_reads *out);
void srv_reads_serve(struct srv *s, struct srv_reads *r);
void srv_reads_fini(struct srv *s);
/* Serve a read (range or read-only txn) against the current state. */
ms_err srv_read(struct srv *s, const struct srv_req *req, struct srv_result *res);

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

/* Stop the process if e means the backend failed during an apply (see srv_ready.c). */
void srv_check_apply_error(ms_err e);
/* End the kv write w of an apply that ended with e: on error abort it (stopping the process
 * on a backend failure) and return e; otherwise commit it and hand its events to the lessor
 * and the watch hub. */
struct kv_write;
ms_err srv_write_finish(struct srv *s, struct kv_write *w, ms_err e);
/* Apply one decoded entry at index; *res is filled when the caller waits for it. */
ms_err srv_apply(struct srv *s, uint64_t index, const struct srv_req *req, struct srv_result *res);
/* Apply committed entries (durable, in index order) and answer their writers. */
void srv_apply_committed(struct srv *s, const struct raft_entry *ents, size_t n);
/* The configuration recorded with the applied index (SRV_META_CONF_STATE). */
ms_err srv_conf_put(struct be_txn *t, const struct raft_conf_state *cs);
ms_err srv_conf_get(struct be_txn *t, struct raft_conf_state *cs, bool *found);
void srv_on_compact(evutil_socket_t fd, short what, void *arg);
/* Commit the write txn and open the next one; the backend then holds everything applied, so
 * the WAL can be released below it. Fatal on failure. */
void srv_commit(struct srv *s);
void srv_on_commit(evutil_socket_t fd, short what, void *arg);
void srv_on_compactor(evutil_socket_t fd, short what, void *arg);
/* Propose req as the next entry (id: the caller to complete, 0 for none). */
ms_err srv_propose(struct srv *s, const struct srv_req *req, uint64_t id);
/* srv_lease.c */
ms_err srv_lease_open(struct srv *s);
void srv_lease_close(struct srv *s);
void srv_lease_promote(struct srv *s);
void srv_lease_arm(struct srv *s);
void srv_on_lease(evutil_socket_t fd, short what, void *arg);
void srv_lease_events(struct srv *s, const struct kv_event *ev, size_t n);
int64_t srv_lease_new_id(struct srv *s);
size_t srv_lease_cost(void);
ms_err srv_apply_lease_grant(struct srv *s, const struct srv_lease_req *r,
                             struct srv_lease_resp *out);
ms_err srv_apply_lease_revoke(struct srv *s, const struct srv_lease_req *r, int64_t *revision);
/* srv_snap.c */
void srv_on_copy(evutil_socket_t fd, short what, void *arg);
void srv_copy_poll(struct srv *s);
bool srv_copy_running(const struct srv *s);
bool srv_cancel_op(struct srv *s, uint64_t id);
void srv_copy_destroy(struct srv *s);
ms_err srv_snap_load(struct srv *s);
/* At start, before LMDB opens member/db: finish or undo a defrag a crash interrupted. */
ms_err srv_defrag_recover(struct srv *s);
/* srv_alarm.c */
ms_err srv_alarms_load(struct srv *s);
bool srv_has_alarm(const struct srv *s, int64_t type);
ms_err srv_apply_alarm(struct srv *s, const struct srv_alarm_req *r, struct srv_alarm_resp *out);
size_t srv_request_cost(const struct srv_req *req);
/* False if req would take the backend past the quota (etcd BackendQuota.Available). */
bool srv_quota_ok(struct srv *s, const struct srv_req *req);
/* Every change of an applied entry, in order, all at revision rev (srv_events.c). The events
 * live in the scratch arena until the end of the ready step. */
void srv_events_applied(struct srv *s, int64_t rev, const struct kv_event *ev, size_t n);
bool srv_txn_is_read_only(const struct kv_txn_req *t);
/* Create / free the watch hub and its loop events (srv_watch.c). */
ms_err srv_watch_init(struct srv *s);
void srv_watch_fini(struct srv *s);
/* Arm the catch-up timer if the hub has unsynced watchers. */
void srv_watch_kick(struct srv *s);

/* The WAL's metadata: the member ID and the cluster ID, big-endian. */
#define SRV_WAL_META_LEN 16

#define SRV_META_CONSISTENT_INDEX "consistent_index"
#define SRV_META_CONSISTENT_TERM  "consistent_term"
#define SRV_META_CONF_STATE       "conf_state"
#define SRV_META_TERM             "term" /* before the WAL existed; read once, then the WAL */
#define SRV_META_MEMBER_ID        "member_id"
#define SRV_META_CLUSTER_ID       "cluster_id"

#endif
