/* srv_int.h - the server struct and the functions shared by the srv_*.c files. */
#ifndef METASTORE_SRV_INT_H
#define METASTORE_SRV_INT_H

#include "metastore/arena.h"
#include "metastore/be.h"
#include "metastore/buf.h"
#include "metastore/kv.h"
#include "metastore/srv.h"
#include "metastore/watch.h"
#include "wait.h"

#include <event2/event.h>

/* An entry of the one-member log that stands in for raft until the core is wired in. */
struct srv_entry {
    uint64_t index;
    uint8_t *data; /* owned */
    size_t len;
};

/* A caller to complete once the batch is durable. */
struct srv_done {
    uint64_t id;
    ms_err err;
    struct srv_result *res; /* in the scratch arena; NULL with err */
};

struct srv {
    struct event_base *base;
    struct cfg cfg;
    struct be *be;
    struct be_txn *wtxn; /* the one write txn: every read and apply goes through it */
    struct kv_store *kv;
    int lock_fd; /* exclusive lock on the data directory, -1 for memory */

    struct event *ready_ev;
    bool ready_pending;
    struct event *compact_ev;

    /* One-member log: proposals not yet applied. */
    struct srv_entry *log;
    size_t n_log;
    size_t cap_log;
    uint64_t last_index; /* last index handed out */
    uint64_t applied;    /* last applied index (consistent index) */
    uint64_t term;

    struct wait waits;
    uint64_t *reads; /* ids of queued reads, FIFO */
    size_t n_reads;
    size_t cap_reads;
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

/* Mark the ready step to run once in this loop turn. */
void srv_wake(struct srv *s);
void srv_on_ready(evutil_socket_t fd, short what, void *arg);
void srv_on_compact(evutil_socket_t fd, short what, void *arg);

/* Apply one decoded entry at index; *res is filled when the caller waits for it. */
ms_err srv_apply(struct srv *s, uint64_t index, const struct srv_req *req, struct srv_result *res);
/* Serve a read (range or read-only txn) against the current state. */
ms_err srv_read(struct srv *s, const struct srv_req *req, struct srv_result *res);
/* Commit the write txn (durability point before replies) and open the next one. Fatal on
 * failure. */
void srv_commit(struct srv *s);
bool srv_push_id(uint64_t **v, size_t *n, size_t *cap, uint64_t id);
/* Every change of an applied entry, in order, all at revision rev (srv_events.c). The events
 * live in the scratch arena until the end of the ready step. */
void srv_events_applied(struct srv *s, int64_t rev, const struct kv_event *ev, size_t n);
bool srv_txn_is_read_only(const struct kv_txn_req *t);
/* Create / free the watch hub and its loop events (srv_watch.c). */
ms_err srv_watch_init(struct srv *s);
void srv_watch_fini(struct srv *s);
/* Arm the catch-up timer if the hub has unsynced watchers. */
void srv_watch_kick(struct srv *s);

#define SRV_META_CONSISTENT_INDEX "consistent_index"
#define SRV_META_TERM             "term"
#define SRV_META_MEMBER_ID        "member_id"
#define SRV_META_CLUSTER_ID       "cluster_id"

#endif
