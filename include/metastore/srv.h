/* srv.h - the server core: owns the loop timers, the backend, the MVCC store and the path
 * every request takes (DESIGN.md §1).
 *
 * Writes: srv_submit validates a request, encodes it as a log entry and proposes it; the ready
 * step (once per loop turn) commits the entries, applies them in order inside the backend
 * transaction, makes the batch durable, and only then completes the callers. Reads: a
 * linearizable read is queued and served in the ready step after everything proposed before
 * it has been applied; a serializable read takes the same path (it is cheap and keeps one
 * code path). Until the raft core is wired in, the ready step commits each proposal itself
 * (a one-member log); that seam is srv_ready.c.
 *
 * Callbacks: done is called exactly once per submitted request, from the ready step, unless
 * srv_cancel was called first. The result and everything it points to are valid only during
 * the callback.
 */
#ifndef METASTORE_SRV_H
#define METASTORE_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/auth.h"
#include "metastore/cfg.h"
#include "metastore/err.h"
#include "metastore/kv.h"
#include "metastore/watch.h"

/* The etcd version we speak (reported by /version, maintenance status and /metrics). */
#define MS_ETCD_VERSION         "3.4.23"
#define MS_ETCD_CLUSTER_VERSION "3.4.0"

struct event_base;
struct srv;

enum srv_req_type {
    SRV_REQ_RANGE = 1,
    SRV_REQ_PUT = 2,
    SRV_REQ_DELETE = 3,
    SRV_REQ_TXN = 4,
    SRV_REQ_COMPACT = 5,
    SRV_REQ_ALARM = 6,
    SRV_REQ_DEFRAG = 7, /* local maintenance, never in the log */
    SRV_REQ_LEASE_GRANT = 8,
    SRV_REQ_LEASE_REVOKE = 9,
    SRV_REQ_AUTH = 10,        /* auth.h: users, roles, the flag, authenticate */
    SRV_REQ_MEMBER_ATTR = 20, /* a member publishes its name and client URLs (never a client's) */
    /* Answered by the leader's lessor (a follower asks the leader over the peer port), never
     * in the log: a keepalive (result: the granted TTL, 0 for an unknown lease) and a
     * time-to-live (the remaining and granted TTL, -1 for an unknown lease). */
    SRV_REQ_LEASE_KEEPALIVE = 21,
    SRV_REQ_LEASE_TTL = 22,
    SRV_REQ_MOVE_LEADER = 23, /* srv_move_leader's result, never in the log */
    /* The results of srv_member_add, _remove, _update and _promote (their changes travel in
     * the log as conf changes, not as requests). */
    SRV_REQ_MEMBER_ADD = 24,
    SRV_REQ_MEMBER_REMOVE = 25,
    SRV_REQ_MEMBER_UPDATE = 26,
    SRV_REQ_MEMBER_PROMOTE = 27,
};

/* etcd LeaseGrantRequest / LeaseRevokeRequest (ttl unused for revoke). */
struct srv_lease_req {
    int64_t id;
    int64_t ttl;
};

struct srv_lease_resp {
    int64_t id;
    int64_t ttl;
    int64_t granted; /* SRV_REQ_LEASE_TTL: the granted TTL */
};

/* etcd AlarmRequest. */
enum srv_alarm_action { SRV_ALARM_GET = 0, SRV_ALARM_ACTIVATE = 1, SRV_ALARM_DEACTIVATE = 2 };
enum srv_alarm_type { SRV_ALARM_NONE = 0, SRV_ALARM_NOSPACE = 1, SRV_ALARM_CORRUPT = 2 };

struct srv_alarm_req {
    int64_t action;
    uint64_t member_id;
    int64_t alarm;
};

struct srv_alarm {
    uint64_t member_id;
    int64_t alarm;
};

struct srv_alarm_resp {
    struct srv_alarm *alarms;
    size_t n;
};

/* etcd's member Attributes: the name and client URLs (comma-separated) of member id. */
struct srv_member_attr_req {
    uint64_t id;
    const char *name;
    size_t name_len;
    const char *client_urls;
    size_t client_urls_len;
};

struct srv_compact_req {
    int64_t revision;
    bool physical;
};

struct srv_req {
    enum srv_req_type type;
    union {
        struct kv_range_req range;
        struct kv_put_req put;
        struct kv_del_req del;
        struct kv_txn_req txn;
        struct srv_compact_req compact;
        struct srv_alarm_req alarm;
        struct srv_lease_req lease;
        struct srv_member_attr_req member;
        struct auth_req auth;
    } u;
    /* A client's request (gateway or gRPC) and who asked: checked against the auth store again
     * when its entry applies, as etcd's authApplierV3 does with the request header's user and
     * auth revision, so that a member whose auth store lags cannot let a write through. The
     * server's own requests (a lease's expiry, a member's attributes) leave checked false. */
    bool checked;
    struct auth_caller caller;
};

struct srv_result {
    enum srv_req_type type;
    int64_t revision; /* header revision */
    union {
        struct kv_range_resp range;
        struct kv_put_resp put;
        struct kv_del_resp del;
        struct kv_txn_resp txn;
        struct srv_alarm_resp alarm;
        struct srv_lease_resp lease;
        struct auth_resp auth;
        uint64_t member_id; /* SRV_REQ_MEMBER_*: the member changed (the new one for add) */
    } u;
};

typedef void (*srv_done_fn)(void *ctx, ms_err err, const struct srv_result *res);

struct srv_header {
    uint64_t cluster_id;
    uint64_t member_id;
    int64_t revision;
    uint64_t raft_term;
};

struct srv_status {
    int64_t revision;
    uint64_t db_size;
    uint64_t db_size_in_use;
    uint64_t leader;
    uint64_t raft_index;
    uint64_t raft_term;
    uint64_t raft_applied_index;
    bool is_learner;
};

struct srv_member {
    uint64_t id;
    const char *name;
    const struct cfg_url *peer_urls;
    size_t n_peer_urls;
    const struct cfg_url *client_urls;
    size_t n_client_urls;
    bool is_learner;
};

/* Open the data directory (or the memory backend), restore state, register the loop events.
 * cfg is copied. NULL on failure (logged) with *err set. */
struct srv *srv_create(struct event_base *base, const struct cfg *cfg, ms_err *err);

/* Make everything applied durable, drop pending callers without calling them, free.
 * Accepts NULL. */
void srv_destroy(struct srv *s);

/* Submit a request. On MS_OK, *id names it for srv_cancel and done will be called later. On
 * any other return done is never called (validation failed). A range request is BORROWED
 * until done or srv_cancel; write requests are copied at once. */
ms_err srv_submit(struct srv *s, const struct srv_req *req, srv_done_fn done, void *ctx,
                  uint64_t *id);

/* The caller of id is gone: never call its done. A proposed write still applies. */
void srv_cancel(struct srv *s, uint64_t id);

/* Before a graceful stop: a leader with peers hands leadership to its most up-to-date follower
 * (etcd's TransferLeadership), so that the cluster loses no election timeout. left is called
 * once, from the loop, when another member leads or after the request timeout. False, and left
 * is never called, when there is nothing to hand over. */
bool srv_step_down(struct srv *s, void (*left)(void *ctx), void *ctx);

/* True if this member knows a leader (etcd's "no leader" errors, /health). */
bool srv_has_leader(const struct srv *s);
/* How long this member has known no leader, in ms (0 while it knows one). */
uint64_t srv_leaderless_ms(const struct srv *s);

/* Response header with the current revision. */
void srv_header(struct srv *s, struct srv_header *h);

void srv_status(struct srv *s, struct srv_status *st);

/* A consistent backup of the whole store, written to a snapshot file (snap.h). done gets the
 * file open for reading, already removed from its directory (the caller owns fd: the file goes
 * when it is closed), and its size; or an error (fd -1). Cancel with srv_cancel. */
typedef void (*srv_backup_fn)(void *ctx, ms_err err, int fd, uint64_t size);
ms_err srv_backup(struct srv *s, srv_backup_fn done, void *ctx, uint64_t *id);

/* Defragment the backend (LMDB: a compacting copy made in slices, then swapped in; writes go on
 * meanwhile). done gets a SRV_REQ_DEFRAG result. */
ms_err srv_defrag(struct srv *s, srv_done_fn done, void *ctx, uint64_t *id);

/* etcd's MoveLeader: hand this member's leadership to member target (a voter); done gets a
 * SRV_REQ_MOVE_LEADER result once target leads, or MS_E_TIMEOUT_LEADER_TRANSFER after the
 * request timeout. MS_E_NOT_LEADER when this member does not lead, MS_E_BAD_LEADER_TRANSFEREE
 * when target is no voter of the cluster. A newer transfer ends an older one with the
 * timeout error (raft follows the newest). Cancel with srv_cancel. */
ms_err srv_move_leader(struct srv *s, uint64_t target, srv_done_fn done, void *ctx, uint64_t *id);

/* Build cfg->data_dir (which must not hold a store yet) from a snapshot file, for the backend
 * cfg names (metastore --restore-snapshot). Logs what it did. */
ms_err srv_restore(const struct cfg *cfg, const char *snapshot);

/* ---- leases (DESIGN.md §5) ----
 * Grants and revokes go through the log (srv_submit with SRV_REQ_LEASE_*; a grant with ID 0
 * gets a fresh ID when submitted). Keepalive and time-to-live are the leader's: any member
 * takes them as SRV_REQ_LEASE_KEEPALIVE and SRV_REQ_LEASE_TTL (srv_submit), a follower asks the
 * leader over the peer transport. The list is this member's. Expired leases are revoked through the
 * log, so their keys are deleted in one revision and watchers see the DELETE events. */

/* The keys attached to lease id (every member knows them), in key order, into arena arrays. */
ms_err srv_lease_keys(struct srv *s, int64_t id, struct arena *a, const uint8_t ***keys,
                      size_t **lens, size_t *n);
/* Every lease ID (ascending) into an arena array. */
ms_err srv_lease_list(struct srv *s, struct arena *a, int64_t **ids, size_t *n);

/* True if lease id exists and has not expired (its revoke may still be on the way). */
bool srv_lease_alive(struct srv *s, int64_t id);

/* ---- authentication (auth.h) ----
 * Auth requests are submitted as SRV_REQ_AUTH; those with a password are hashed or checked
 * off the loop first. The gateway resolves a request's token with srv_auth_user and checks
 * the request with srv_auth_check (key permissions) or srv_auth_admin (root only) before
 * submitting it; a caller without has_user sent no token. */

/* The caller token tok names (its user borrowed until the next request is submitted or
 * applied), or MS_E_INVALID_AUTH_TOKEN (also while auth is disabled, as etcd). */
ms_err srv_auth_user(struct srv *s, const uint8_t *tok, size_t len, struct auth_caller *out);
/* The caller a verified client certificate names under --client-cert-auth when no token came
 * (etcd's AuthInfoFromTLS): user cn (borrowed; len > 0) at the current auth revision. */
void srv_auth_cert_user(struct srv *s, const uint8_t *cn, size_t len, struct auth_caller *out);
/* etcd's permission checks of a kv or lease request: MS_E_USER_EMPTY, MS_E_PERMISSION_DENIED,
 * MS_E_AUTH_OLD_REVISION (a JWT older than the users and roles). */
ms_err srv_auth_check(struct srv *s, const struct auth_caller *c, const struct srv_req *req);
/* Root only (maintenance): MS_E_USER_EMPTY, MS_E_USER_NOT_FOUND, MS_E_PERMISSION_DENIED. */
ms_err srv_auth_admin(struct srv *s, const struct auth_caller *c);
/* A maintenance call's auth error as etcd's maintenance service returns it: the auth store's
 * own errors, unconverted (MS_E_AUTH_RAW_*); other errors unchanged. */
ms_err srv_auth_raw_err(ms_err e);
/* etcd isWatchPermitted for a create_request on span from the stream's token (tok NULL: none;
 * then cn, the verified client certificate's CN under --client-cert-auth, if not NULL):
 * NULL if allowed, else the cancel_reason of the failed create (static; the gRPC error's
 * text, as etcd's watch server words it). */
const char *srv_auth_watch(struct srv *s, const uint8_t *tok, size_t len, const char *cn,
                           const struct kv_span *span);
bool srv_auth_enabled(const struct srv *s);

/* ---- locks and elections (etcd v3lock, v3election) ----
 * Both services as etcd 3.4 builds them on its concurrency package (mutex.go, election.go): a
 * session (the caller's lease, or a fresh 60 s one for lease 0 that nobody keeps alive), txns
 * and ranges on the name's prefix "name/", and the server's waits (etcd's waitDeletes, each
 * waiter watching only the key created just before its own, so a release wakes one waiter).
 * A front door decodes a request into struct srv_lock_req and encodes the result; every step,
 * check and error is the server's. Each txn and range is checked against the caller's
 * permissions as the caller's own request would be.
 *
 * Errors (returned, or given to done) are the cause: etcd's services get them from their own
 * client and hand them on as plain errors, so a front door answers every one with code Unknown
 * and the error's text (ms_err_msg): "election: not leader", "etcdserver: requested lease not
 * found", "etcdserver: user name is empty"...
 *
 * Unlike etcd 3.4 (#11456), a lock or campaign is answered only while its lease is alive: the
 * answer's header revision and the key's create revision are the fencing token. */

enum srv_lock_op {
    SRV_LOCK_LOCK = 1,  /* name, lease: the lock's key once every key created before it is gone */
    SRV_LOCK_UNLOCK,    /* key: deleted */
    SRV_ELECT_CAMPAIGN, /* name, lease, value: the leadership once won */
    SRV_ELECT_PROCLAIM, /* leader, value: the leader's new value (election: not leader) */
    SRV_ELECT_LEADER,   /* name: the leader's key-value (election: no leader) */
    SRV_ELECT_RESIGN,   /* leader: its key deleted if it still leads */
};

/* etcd's LeaderKey: the key of a leadership, created at rev under lease in election name. */
struct srv_leader_key {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *key;
    size_t key_len;
    int64_t rev;
    int64_t lease;
};

struct srv_lock_req {
    enum srv_lock_op op;
    const uint8_t *name; /* LOCK, CAMPAIGN, LEADER */
    size_t name_len;
    int64_t lease;        /* LOCK, CAMPAIGN (0: a fresh session lease) */
    const uint8_t *value; /* CAMPAIGN, PROCLAIM */
    size_t value_len;
    const uint8_t *key; /* UNLOCK */
    size_t key_len;
    bool has_leader; /* PROCLAIM, RESIGN: the leader was given (else "leader" field error) */
    struct srv_leader_key leader;
    struct auth_caller caller; /* who asks (has_user false: nobody) */
};

struct srv_lock_result {
    enum srv_lock_op op;
    int64_t revision;             /* the answer's header revision */
    struct srv_leader_key leader; /* LOCK: key (the lock's); CAMPAIGN: the leadership */
    const struct kv_kv *kv;       /* LEADER: the leader's key-value */
};

/* res and everything it points to are valid during the call only. */
typedef void (*srv_lock_fn)(void *ctx, ms_err err, const struct srv_lock_result *res);

/* Start req (its bytes and the caller are copied). On MS_OK, *id names it for srv_cancel and
 * done is called exactly once, from a loop callback, unless srv_cancel comes first; any other
 * return (the first step refused) means done is never called. srv_cancel gives a waiting lock
 * or campaign's place up: the server deletes its key if it is still the one it created, as
 * etcd's Mutex.Lock and Election.Campaign do when their context ends. */
ms_err srv_lock_submit(struct srv *s, const struct srv_lock_req *req, srv_lock_fn done, void *ctx,
                       uint64_t *id);

/* etcd's Election.Observe of election name for caller: fn(ctx, header revision, leader) for
 * the key under "name/" with the lowest create revision, at once if there is one (header: the
 * current revision) or as soon as a key is put under it (header: that key's revision); then for
 * every put to that key (its revision); once it is deleted, the next leader. Until srv_cancel.
 * kv is borrowed for the call; fn may run inside the ready step and must only take note
 * (encode, queue output), never call srv. Refused (MS_E_PERMISSION_DENIED, ...) when the caller
 * may not read the election's keys. */
typedef void (*srv_leader_fn)(void *ctx, int64_t revision, const struct kv_kv *kv);
ms_err srv_election_observe(struct srv *s, const uint8_t *name, size_t name_len,
                            const struct auth_caller *caller, srv_leader_fn fn, void *ctx,
                            uint64_t *id);

struct srv_lock_stats {
    size_t waiters;   /* waits and observers */
    size_t keys;      /* keys they watch (their own and one other each) */
    uint64_t wakeups; /* waiters woken by the deletion of the key they watched */
    uint64_t lookups; /* ranges made for them */
    uint64_t granted; /* waits that ended with MS_OK */
};
void srv_lock_stats(const struct srv *s, struct srv_lock_stats *out);

/* The active alarms (borrowed until the next request is applied). */
void srv_alarms(struct srv *s, const struct srv_alarm **alarms, size_t *n);

/* etcd maintenance Hash of the keyspace, and the revision it was taken at. */
ms_err srv_hash(struct srv *s, uint32_t *hash, int64_t *revision);
/* etcd's HashKV at rev (0: current): the hash, the compaction revision, the current revision. */
ms_err srv_hash_kv(struct srv *s, int64_t rev, uint32_t *hash, int64_t *compact_rev,
                   int64_t *revision);

/* This member (single node: the whole cluster). */
void srv_self(struct srv *s, struct srv_member *m);

#define SRV_MAX_MEMBERS 16

/* ---- membership (etcd's Cluster service) ----
 * A change is checked here first as etcd's strict reconfiguration check does (on by default:
 * --strict-reconfig-check), then proposed as a Raft conf change; every member checks it again
 * when it applies it (a duplicate peer URL, an unknown member...), and it takes effect then.
 * done gets a SRV_REQ_MEMBER_* result once this member has applied it, or the error; the
 * member list is srv_members then. A removal of the leader hands leadership to another voter
 * first. Peer URLs are "http(s)://host:port" texts; MS_E_MEMBER_BAD_URLS if one is not. */
ms_err srv_member_add(struct srv *s, const char *const *peer_urls, size_t n, bool learner,
                      srv_done_fn done, void *ctx, uint64_t *id);
ms_err srv_member_remove(struct srv *s, uint64_t member, srv_done_fn done, void *ctx, uint64_t *id);
ms_err srv_member_update(struct srv *s, uint64_t member, const char *const *peer_urls, size_t n,
                         srv_done_fn done, void *ctx, uint64_t *id);
/* Only the leader knows whether a learner has caught up: a follower asks it. */
ms_err srv_member_promote(struct srv *s, uint64_t member, srv_done_fn done, void *ctx,
                          uint64_t *id);

/* This member is a learner: it serves status and serializable ranges only (etcd 3.4), the
 * front doors refuse the rest with MS_E_LEARNER_RPC. */
bool srv_is_learner(const struct srv *s);

/* The members, by ID, as this member has applied them (just this member in a data directory
 * that predates the members bucket; a joining member that has applied none yet: those it was
 * given when it joined). This member shows the name and client URLs it runs with, as etcd's
 * members publish theirs at start. Fills out (at most SRV_MAX_MEMBERS) and returns how many.
 * The strings are valid until the next membership change is applied. */
size_t srv_members(struct srv *s, struct srv_member out[SRV_MAX_MEMBERS]);

/* Prometheus text for GET /metrics, appended to out (etcd's metric names where they mean the
 * same thing). */
struct buf;
void srv_metrics_text(struct srv *s, struct buf *out);

/* etcd's grpc_server_* counters (go-grpc-prometheus): a front door reports each call of a
 * method. method is the full path ("/etcdserverpb.KV/Range"), a string that lives as long as
 * the server (the front door's method table); type is "unary", "server_stream" or
 * "bidi_stream". Methods beyond SRV_RPC_METHODS distinct ones are not counted. */
#define SRV_RPC_METHODS 64
enum srv_rpc_event { SRV_RPC_STARTED, SRV_RPC_RECEIVED, SRV_RPC_SENT, SRV_RPC_HANDLED };
/* code: the call's status (enum ms_grpc_code), for SRV_RPC_HANDLED only. */
void srv_rpc_count(struct srv *s, const char *method, const char *type, enum srv_rpc_event ev,
                   int code);

/* Requests that have been submitted and not yet completed (for tests and metrics). */
size_t srv_pending(const struct srv *s);

/* The configuration the server runs with (borrowed, lives as long as s). */
const struct cfg *srv_cfg(const struct srv *s);

/* ---- watch (DESIGN.md §4) ----
 *
 * The server owns the watch hub (watch.h): applied events reach it from the ready step, and a
 * loop timer runs its catch-up rounds while watchers are unsynced and its progress_notify
 * ticks every --experimental-watch-progress-notify-interval. A stream belongs to its caller
 * (the gateway, gRPC), which opens it with its sink and closes it before srv_destroy. None of
 * these calls blocks; responses go to the sink, possibly before the call returns.
 *
 * Memory for slow readers is one policy for every front door: the sink asks srv_watch_try
 * before it queues events and refuses them when told no; the owner reports the stream's
 * unwritten output with srv_watch_set_buffered whenever it changes. The server wakes the
 * waiting streams (drained under a quarter of --watch-stream-buffer-bytes, or room again in
 * --watch-total-buffer-bytes) and their watchers catch up from history; it gives freed
 * output memory back to the system now and then. */

/* Open a stream whose responses go to sink (borrowed, with sink_ctx; ctx is handed to it).
 * NULL on OOM or when too many distinct sinks have streams (watch.h WATCH_MAX_SINKS). */
struct watch_stream *srv_watch_open(struct srv *s, const struct watch_sink *sink, void *sink_ctx,
                                    void *ctx);
/* Free the stream and all its watchers at once; nothing is sent. Accepts NULL. */
void srv_watch_close(struct srv *s, struct watch_stream *st);
/* create_request / cancel_request / progress_request of a stream (see watch.h). */
void srv_watch_create(struct srv *s, struct watch_stream *st, const struct watch_create_req *req);
void srv_watch_cancel(struct srv *s, struct watch_stream *st, int64_t watch_id);
/* A create_request refused (auth): the failed-create answer with reason (static). */
void srv_watch_refuse(struct srv *s, struct watch_stream *st, const char *reason);
void srv_watch_progress(struct srv *s, struct watch_stream *st);
/* The stream may take output again (after the owner's own refusal, e.g. out of memory): its
 * victims catch up from history. */
void srv_watch_writable(struct srv *s, struct watch_stream *st);
/* The stream's unwritten output, and the sink's question before queueing n bytes of events
 * (watch.h: watch_stream_set_buffered, watch_stream_try); both may be called from inside the
 * sink. */
void srv_watch_set_buffered(struct srv *s, struct watch_stream *st, size_t bytes);
bool srv_watch_try(struct srv *s, struct watch_stream *st, size_t n);
void srv_watch_stats(const struct srv *s, struct watch_stats *out);

/* Log entry encoding of a request (exposed for tests and fuzzing). The entry carries the
 * proposing member's request id so that member can complete its caller at apply time. */
struct buf;
struct arena;
void srv_entry_encode(uint64_t id, const struct srv_req *req, struct buf *out);
/* Strict decode; byte strings point into p (which must outlive req), arrays go to a.
 * Returns false on malformed input. */
bool srv_entry_decode(const uint8_t *p, size_t len, struct arena *a, uint64_t *id,
                      struct srv_req *req);
#endif
