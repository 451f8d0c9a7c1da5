/* watch.h - the watch hub (etcd's watchable store, DESIGN.md §4).
 *
 * A client stream (watch_stream) holds watchers; each watches one key, a range [key, end) or
 * every key >= key, from a start revision. Watchers live in one of three groups:
 *   synced    - seen everything up to the current revision; they get events at apply time
 *               (watch_hub_notify). Found by hash (single keys) or an interval tree (ranges).
 *   unsynced  - start in the past or fell behind; watch_hub_sync reads history from the store
 *               in bounded slices and moves them to synced once they reach the current revision.
 *   victims   - their stream refused output (the sink said it is full); they receive nothing
 *               until watch_stream_writable, then catch up from history like unsynced ones.
 * A watcher whose next revision is below the compaction point is cancelled with
 * compact_revision when it tries to catch up (lazily, as etcd).
 *
 * Buffered output: the owner reports how many bytes each stream holds that are not written
 * yet (watch_stream_set_buffered); the hub keeps the server-wide sum, releases a stream's
 * bytes when it closes, and answers whether a stream may queue more (watch_stream_try): not
 * while the stream holds lim.stream_buffer_bytes, nor beyond the server-wide budget. The sink
 * refuses what is not admitted: the watchers become victims, and the stream waits until its
 * output drains under a quarter of its limit or the budget has room for it again; then
 * watch_hub_wake makes it writable. Every front door's sink applies the same policy so.
 *
 * The hub does not know JSON, HTTP, protobuf or libevent: every response goes to the
 * watch_sink its stream was opened with (the gateway's and gRPC's streams live in one hub).
 * Events of one revision (or one history slice) form a batch; watchers of one sink that
 * receive the same events with the same options share a cache slot in the batch, so the sink
 * can encode them once and splice the bytes into every stream.
 *
 * Threading: none. Every function runs on the loop thread; the sink must not call back into
 * the hub. Event pointers handed to the sink are valid only during the call.
 */
#ifndef METASTORE_WATCH_H
#define METASTORE_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/err.h"
#include "metastore/kv.h"

struct be_txn;
struct watch_hub;
struct watch_stream;

/* WatchCreateRequest.filters, as bits. */
#define WATCH_FILTER_NOPUT    1u
#define WATCH_FILTER_NODELETE 2u

/* etcd's texts for a create that fails (WatchResponse.cancel_reason). */
#define WATCH_REASON_EMPTY_RANGE "mvcc: watcher range is empty"
#define WATCH_REASON_DUP_ID      "mvcc: duplicate watch ID provided on the WatchStream"
#define WATCH_REASON_TOO_MANY    "metastore: too many watchers (--max-watchers)"
#define WATCH_REASON_STREAM_FULL                                                                   \
    "metastore: too many watchers on this stream (--max-watchers-per-stream)"
#define WATCH_REASON_NOMEM "metastore: out of memory"

/* One create_request, as decoded. span.key may be empty (it means "\0", as in etcd);
 * span.end_kind KV_END_ALL means every key >= key. Bytes are borrowed for the call. */
struct watch_create_req {
    struct kv_span span;
    int64_t start_revision; /* 0: from the next revision */
    int64_t watch_id;       /* 0: assign the lowest free id of the stream */
    unsigned filters;       /* WATCH_FILTER_* */
    bool progress_notify;
    bool prev_kv;
    bool fragment;
};

enum watch_resp_kind {
    WATCH_RESP_CREATED,       /* watch_id, created */
    WATCH_RESP_CREATE_FAILED, /* watch_id -1, created, canceled, cancel_reason */
    WATCH_RESP_CANCELED,      /* watch_id, canceled */
    WATCH_RESP_COMPACTED,     /* watch_id, canceled, compact_revision; header without revision */
    WATCH_RESP_PROGRESS,      /* watch_id (-1 when requested by the client), no events */
    WATCH_RESP_EVENTS,        /* watch_id, events */
};

/* The events one notification or one history slice delivers. The hub owns it; it lives for
 * the duration of the delivery. cache has n_cache slots, all NULL at the start; the sink may
 * store one encoding per slot, and the hub hands every non-NULL slot to sink->release once
 * the batch is delivered. */
struct watch_batch {
    int64_t revision; /* header revision of its responses */
    const struct kv_event *events;
    size_t n_events;
    void **cache;
    size_t n_cache;
};

/* One response for one stream. */
struct watch_resp {
    enum watch_resp_kind kind;
    int64_t watch_id;
    int64_t revision; /* header revision; ignored for WATCH_RESP_COMPACTED */
    int64_t compact_revision;
    const char *cancel_reason; /* static string, WATCH_RESP_CREATE_FAILED only */
    /* WATCH_RESP_EVENTS only: */
    struct watch_batch *batch;
    size_t slot;         /* cache slot: the same slot means the same idx[] and prev_kv */
    const uint32_t *idx; /* indices into batch->events, ascending (revision order) */
    size_t n_idx;
    bool prev_kv;  /* include each event's prev (when it has one) */
    bool fragment; /* the watcher accepts fragmented responses */
};

/* Where a stream's responses go (given to watch_stream_open); sink_ctx is passed back. At most
 * WATCH_MAX_SINKS distinct (sink, sink_ctx) pairs have streams open at a time. */
#define WATCH_MAX_SINKS 4
struct watch_sink {
    /* Append r to the stream opened with stream_ctx. For WATCH_RESP_EVENTS the sink may refuse
     * (return false) when the stream's output is over its limit or memory is short: nothing is
     * sent, the watcher becomes a victim and catches up from history after
     * watch_stream_writable. Other kinds must be accepted (the return value is ignored); they
     * are bounded by the number of watchers. */
    bool (*send)(void *sink_ctx, void *stream_ctx, const struct watch_resp *r);
    /* Free what the sink stored in a batch cache slot (the slots a sink sees are its own). */
    void (*release)(void *sink_ctx, void *cached);
};

struct watch_limits {
    size_t max_watchers;            /* in the hub, cancelled-by-compaction ones included */
    size_t max_watchers_per_stream; /* same, per stream */
    size_t sync_watchers;           /* unsynced watchers handled per watch_hub_sync (etcd 512) */
    size_t sync_events;             /* events per history slice (whole revisions, at least one) */
    size_t sync_bytes;              /* key + value bytes per history slice (soft) */
    size_t sync_slices;             /* history slices per watch_hub_sync */
    size_t sync_out_bytes;      /* slice bytes times watchers fed per watch_hub_sync (soft: at least
                                 * one watcher gets each slice read); 0: no bound */
    size_t total_buffer_bytes;  /* budget of buffered output over all streams; 0: none */
    size_t stream_buffer_bytes; /* buffered output a stream may hold before refusing events */
};

/* The defaults above: 100000, 10000, 512, 1000, 1 MiB, 8, 16 MiB, 64 MiB, 1 MiB. */
void watch_limits_default(struct watch_limits *lim);

struct watch_stats {
    size_t streams;
    size_t watchers; /* every watcher, compacted ones waiting for their cancel included */
    size_t synced;
    size_t unsynced;
    size_t victims;
    uint64_t events_sent;   /* events handed to the sink (counted once per watcher) */
    uint64_t responses;     /* responses handed to the sink */
    uint64_t victimized;    /* times a watcher became a victim */
    uint64_t history_reads; /* history slices read */
    size_t buffered;        /* output bytes the streams hold (watch_stream_set_buffered) */
};

/* Create a hub over kv (borrowed: it must outlive the hub). lim is copied; NULL means the
 * defaults. NULL on OOM. */
struct watch_hub *watch_hub_create(struct kv_store *kv, const struct watch_limits *lim);

/* Close every stream left (without responses) and free the hub. Accepts NULL. */
void watch_hub_destroy(struct watch_hub *h);

/* Open a stream whose responses go to sink (borrowed: it must outlive the stream) with
 * sink_ctx; ctx is handed back to sink->send. NULL on OOM or when WATCH_MAX_SINKS other
 * sinks have streams open. */
struct watch_stream *watch_stream_open(struct watch_hub *h, const struct watch_sink *sink,
                                       void *sink_ctx, void *ctx);

/* Remove every watcher of st at once and free it. No responses are sent. Accepts NULL. */
void watch_stream_close(struct watch_stream *st);

/* Handle a create_request: answers WATCH_RESP_CREATED (then events, from history if
 * start_revision is in the past) or WATCH_RESP_CREATE_FAILED with etcd's or our reason
 * (empty range, duplicate id, limits, OOM). Ids are assigned as etcd does: the lowest id not
 * in use on the stream, counting up from the last one assigned. */
void watch_create(struct watch_stream *st, const struct watch_create_req *req);
/* Refuse a create_request the caller may not make: WATCH_RESP_CREATE_FAILED with reason
 * (a static string). */
void watch_create_refused(struct watch_stream *st, const char *reason);

/* Handle a cancel_request: answers WATCH_RESP_CANCELED and removes the watcher; an unknown id
 * gets no answer (etcd). Returns whether the id existed. */
bool watch_cancel(struct watch_stream *st, int64_t watch_id);

/* Handle a progress_request: WATCH_RESP_PROGRESS with watch_id -1 and the current revision,
 * at once if every watcher of the stream is synced, otherwise as soon as they all are (so the
 * revision never claims events the stream has not been sent). */
void watch_progress(struct watch_stream *st);

/* The stream's output drained below its low mark: its victims become unsynced and catch up
 * in the next watch_hub_sync. Sends nothing itself. */
void watch_stream_writable(struct watch_stream *st);

/* st's output now holds bytes not yet written (queued and not written to the socket). The
 * owner calls it whenever that changes, also from inside sink->send: it only updates the
 * counts (the stream's and the hub's sum, watch_stats.buffered), nothing is sent. Closing
 * the stream releases what it holds. */
void watch_stream_set_buffered(struct watch_stream *st, size_t bytes);
/* The bytes last reported for st. */
size_t watch_stream_buffered(const struct watch_stream *st);

/* May st queue n more bytes of events under lim.total_buffer_bytes? For the sink to ask
 * before it queues (it may be called from inside sink->send). With budget B over S streams
 * and T bytes held by all of them:
 *   - T + n must stay within B (the budget is a hard cap for events);
 *   - within that, a stream may always fill its share, B / S;
 *   - beyond its share, only while T + n stays within B / 2: half the budget is kept for
 *     the streams within their share, so readers that stopped cannot take all of it;
 *   - when T is 0 anything is admitted, so a response bigger than the budget still goes out
 *     (one at a time).
 * Always true without a budget. */
bool watch_stream_admits(const struct watch_stream *st, size_t n);

/* The sink's question before it queues n bytes of events on st: false when st holds
 * lim.stream_buffer_bytes or more, or when the budget does not admit n (watch_stream_admits).
 * st then waits: for its output to drain under a quarter of its limit (as reported with
 * watch_stream_set_buffered), or for room in the budget, oldest waiter first; the sink
 * refuses the events and watch_hub_wake makes st writable once it may go on. */
bool watch_stream_try(struct watch_stream *st, size_t n);

/* Make writable (watch_stream_writable) the streams whose wait is over: those drained under
 * their low mark, then budget waiters that fit, reserving the room each asked for, up to
 * max_bytes reserved in one call. Sends nothing itself. Returns true while budget waiters are
 * left (the owner asks again after output was written or freed, and now and then). */
bool watch_hub_wake(struct watch_hub *h, size_t max_bytes);
/* Streams wait for watch_hub_wake (drained ones to wake, or budget waiters). */
bool watch_hub_waiting(const struct watch_hub *h);

/* Events applied up to revision rev (one write transaction or several, in revision order;
 * each event's kv.mod_revision is its own): delivered to the synced watchers that match, one
 * response per watcher with header revision rev. A watcher whose start revision is ahead gets
 * only the events from it. Successive calls must follow revision order (a watcher served at a
 * later revision skips earlier ones). Events are borrowed for the call. */
void watch_hub_notify(struct watch_hub *h, int64_t rev, const struct kv_event *ev, size_t n);

/* One bounded round of catch-up: up to lim.sync_watchers unsynced watchers, up to
 * lim.sync_slices history slices read through txn (borrowed for the call). Watchers behind
 * the compaction point are cancelled with compact_revision. Deferred progress responses are
 * sent once their stream is synced. Errors other than compaction (backend failures) are
 * returned; the watchers stay unsynced. */
ms_err watch_hub_sync(struct watch_hub *h, struct be_txn *txn);

/* True when watch_hub_sync has work (unsynced watchers). */
bool watch_hub_pending(const struct watch_hub *h);

/* Periodic progress (progress_notify): every synced watcher that asked for it and received no
 * events since the previous tick gets WATCH_RESP_PROGRESS with its id and the current
 * revision. */
void watch_hub_progress_tick(struct watch_hub *h);

void watch_hub_stats(const struct watch_hub *h, struct watch_stats *out);

/* The store was replaced by a newer state (a snapshot from the leader): every synced watcher
 * becomes unsynced and catches up from the new store's history in the next watch_hub_sync (or
 * is cancelled with compact_revision if that history is gone). Sends nothing itself. */
void watch_hub_restored(struct watch_hub *h);

#endif
