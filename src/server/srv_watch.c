/* srv_watch.c - the watch hub inside the server (DESIGN.md §4).
 *
 * Owns the hub and its loop events: a zero-delay timer that runs one bounded catch-up round
 * per loop turn while watchers are unsynced (so catch-up interleaves with client I/O and the
 * ready step), the periodic progress_notify tick, the wake of streams whose output drained or
 * that fit the budget again, and the trim that gives freed output memory back to the system.
 * Live events from srv_events_applied reach the hub when the apply batch ends
 * (srv_events_flush), one response per watcher for the batch; history is read through the
 * server's backend txn. Every front door's streams share these (one memory policy). Nothing
 * here blocks.
 */
#include "srv_int.h"

#include "metastore/grow.h"
#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#define SYNC_RETRY_MS  100         /* after a failed catch-up round (backend error, OOM) */
#define WAKE_RETRY_MS  100         /* between checks while streams wait for the budget */
#define WAKE_TURN      (16u << 20) /* room reserved for budget waiters in one loop turn */
#define TRIM_STEP      (4u << 20)  /* freed output that makes malloc_trim worth it */
#define PENDING_EVENTS 1024        /* events of a batch held for one delivery at most */
#define PENDING_BYTES  (1u << 20)  /* ... and their keys and values, as a history slice */

static void arm_sync(struct srv *s, int delay_ms)
{
    if (!s->watch.sync_ev)
        return;
    if (!watch_hub_pending(s->watch.hub) || evtimer_pending(s->watch.sync_ev, NULL))
        return;
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(s->watch.sync_ev, &tv);
}

static void srv_on_watch_sync(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    ms_err e = watch_hub_sync(s->watch.hub, s->wtxn);
    if (e)
        log_warn("watch catch-up failed, retrying: %s", ms_err_name(e));
    arm_sync(s, e ? SYNC_RETRY_MS : 0);
}

/* Streams whose wait is over become writable; their watchers catch up from history. Budget
 * waiters left are looked at again after the loop's next poll if this turn's reservation ran
 * out, else every WAKE_RETRY_MS (output written or freed meanwhile wakes them sooner). */
static void srv_on_watch_wake(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    if (watch_hub_wake(s->watch.hub, WAKE_TURN)) {
        struct timeval tv = {0, WAKE_RETRY_MS * 1000};
        evtimer_add(s->watch.wake_ev, &tv);
    }
    arm_sync(s, 0);
}

static void wake_soon(struct srv *s)
{
    if (s->watch.wake_ev && watch_hub_waiting(s->watch.hub)) {
        /* A timeout of zero runs after the loop's next poll, so sockets get their turn. */
        struct timeval now = {0, 0};
        evtimer_add(s->watch.wake_ev, &now);
    }
}

/* glibc keeps freed heap pages: at most once per second, once TRIM_STEP bytes of output were
 * released since the peak, hand them back. */
static void srv_on_watch_trim(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    struct watch_stats ws;
    watch_hub_stats(s->watch.hub, &ws);
    if (s->watch.trim_high < ws.buffered + TRIM_STEP)
        return;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    s->watch.trim_high = ws.buffered;
}

static void srv_on_watch_progress(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    watch_hub_progress_tick(s->watch.hub);
}

ms_err srv_watch_init(struct srv *s)
{
    struct watch_limits lim;
    watch_limits_default(&lim);
    if (s->cfg.max_watchers)
        lim.max_watchers = (size_t)s->cfg.max_watchers;
    if (s->cfg.max_watchers_per_stream)
        lim.max_watchers_per_stream = (size_t)s->cfg.max_watchers_per_stream;
    lim.total_buffer_bytes = (size_t)s->cfg.watch_total_buffer_bytes; /* 0: no budget */
    if (s->cfg.watch_stream_buffer_bytes)
        lim.stream_buffer_bytes = (size_t)s->cfg.watch_stream_buffer_bytes;
    uint64_t every = s->cfg.watch_progress_ms ? s->cfg.watch_progress_ms : 10 * 60 * 1000;
    struct timeval tv = {(time_t)(every / 1000), (suseconds_t)(every % 1000) * 1000};
    s->watch.hub = watch_hub_create(s->kv, &lim);
    s->watch.sync_ev = evtimer_new(s->base, srv_on_watch_sync, s);
    s->watch.progress_ev = event_new(s->base, -1, EV_PERSIST, srv_on_watch_progress, s);
    s->watch.wake_ev = evtimer_new(s->base, srv_on_watch_wake, s);
    s->watch.trim_ev = evtimer_new(s->base, srv_on_watch_trim, s);
    if (!s->watch.hub || !s->watch.sync_ev || !s->watch.progress_ev || !s->watch.wake_ev ||
        !s->watch.trim_ev || event_add(s->watch.progress_ev, &tv) != 0)
        return MS_E_NOMEM;
    return MS_OK;
}

void srv_watch_fini(struct srv *s)
{
    if (s->watch.sync_ev)
        event_free(s->watch.sync_ev);
    if (s->watch.progress_ev)
        event_free(s->watch.progress_ev);
    if (s->watch.wake_ev)
        event_free(s->watch.wake_ev);
    if (s->watch.trim_ev)
        event_free(s->watch.trim_ev);
    s->watch.sync_ev = s->watch.progress_ev = s->watch.wake_ev = s->watch.trim_ev = NULL;
    watch_hub_destroy(s->watch.hub);
    s->watch.hub = NULL;
    free(s->watch.pending);
    s->watch.pending = NULL;
    s->watch.n_pending = s->watch.cap_pending = 0;
}

static void watch_kick(struct srv *s)
{
    arm_sync(s, 0);
}

struct watch_stream *srv_watch_open(struct srv *s, const struct watch_sink *sink, void *sink_ctx,
                                    void *ctx)
{
    return watch_stream_open(s->watch.hub, sink, sink_ctx, ctx);
}

static void output_released(struct srv *s)
{
    wake_soon(s);
    struct timeval second = {1, 0};
    if (s->watch.trim_ev && !evtimer_pending(s->watch.trim_ev, NULL))
        evtimer_add(s->watch.trim_ev, &second);
}

void srv_watch_close(struct srv *s, struct watch_stream *st)
{
    if (!st)
        return;
    bool held = watch_stream_buffered(st) > 0;
    watch_stream_close(st); /* releases the stream's output from the hub's sum */
    if (held)
        output_released(s);
}

void srv_watch_create(struct srv *s, struct watch_stream *st, const struct watch_create_req *req)
{
    watch_create(st, req);
    arm_sync(s, 0);
}

void srv_watch_refuse(struct srv *s, struct watch_stream *st, const char *reason)
{
    (void)s;
    watch_create_refused(st, reason);
}

void srv_watch_cancel(struct srv *s, struct watch_stream *st, int64_t watch_id)
{
    (void)s;
    watch_cancel(st, watch_id);
}

void srv_watch_progress(struct srv *s, struct watch_stream *st)
{
    (void)s;
    watch_progress(st);
}

void srv_watch_writable(struct srv *s, struct watch_stream *st)
{
    watch_stream_writable(st);
    arm_sync(s, 0);
}

void srv_watch_set_buffered(struct srv *s, struct watch_stream *st, size_t bytes)
{
    size_t before = watch_stream_buffered(st);
    watch_stream_set_buffered(st, bytes);
    if (bytes < before) {
        output_released(s);
        return;
    }
    struct watch_stats ws;
    watch_hub_stats(s->watch.hub, &ws);
    if (ws.buffered > s->watch.trim_high)
        s->watch.trim_high = ws.buffered;
}

bool srv_watch_try(struct srv *s, struct watch_stream *st, size_t n)
{
    if (watch_stream_try(st, n))
        return true;
    wake_soon(s); /* a budget waiter is looked at every WAKE_RETRY_MS from now on */
    return false;
}

void srv_watch_stats(const struct srv *s, struct watch_stats *out)
{
    watch_hub_stats(s->watch.hub, out);
}

void srv_events_flush(struct srv *s)
{
    struct srv_watching *w = &s->watch;
    if (!w->n_pending)
        return;
    /* The hub encodes what it keeps, so the scratch arena may be reset after this step. */
    watch_hub_notify(w->hub, w->pending[w->n_pending - 1].kv.mod_revision, w->pending,
                     w->n_pending);
    w->n_pending = w->pending_bytes = 0;
    watch_kick(s); /* watchers that could not be served now catch up from history */
}

void srv_events_applied(struct srv *s, int64_t rev, const struct kv_event *ev, size_t n)
{
    srv_lock_events(s, rev, ev, n);
    struct srv_watching *w = &s->watch;
    if (!w->hub)
        return; /* the WAL is replayed at start before the hub exists */
    /* Held until the batch ends, so that a watcher gets one response for the batch rather
     * than one per revision (etcd's catch-up sends many revisions in one response too). */
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += ev[i].kv.key_len + ev[i].kv.value_len + ev[i].prev.value_len;
    if (w->n_pending + n > PENDING_EVENTS || w->pending_bytes + bytes > PENDING_BYTES)
        srv_events_flush(s);
    struct kv_event *p = NULL;
    if (n <= PENDING_EVENTS && bytes <= PENDING_BYTES)
        p = ms_grow(w->pending, &w->cap_pending, w->n_pending + n, sizeof(*p), 64);
    if (!p) {
        /* Not held (too large, or no memory to hold it): what is held goes first, so that
         * every watcher still gets the revisions in order. */
        srv_events_flush(s);
        watch_hub_notify(w->hub, rev, ev, n);
        watch_kick(s);
        return;
    }
    w->pending = p;
    memcpy(p + w->n_pending, ev, n * sizeof(*ev));
    w->n_pending += n;
    w->pending_bytes += bytes;
}

void srv_watch_restored(struct srv *s)
{
    s->watch.n_pending = s->watch.pending_bytes = 0; /* (none: a batch ends with its flush) */
    watch_hub_restored(s->watch.hub);
    arm_sync(s, 0);
}
