/* watch_hub.c - streams, watchers, their groups, and the delivery of event batches.
 *
 * Owns every watcher and stream. Invariants: a watcher is in exactly one group (synced: in its
 * watch_set; unsynced: in the hub's FIFO or taken by the running sync; victim: in its stream's
 * list; compacted: nowhere); st->n_behind counts its unsynced and victim watchers; a synced
 * watcher has received every matching event below min_rev. The hub never blocks and never
 * calls back into its owner except through the sink.
 */
#include "watch_int.h"

#include <stdlib.h>
#include <string.h>

#define ID_SEED 0x2545f4914f6cdd1dULL

void watch_limits_default(struct watch_limits *lim)
{
    lim->max_watchers = 100000;
    lim->max_watchers_per_stream = 10000;
    lim->sync_watchers = 512;
    lim->sync_events = 1000;
    lim->sync_bytes = 1 << 20;
    lim->sync_slices = 8;
    lim->sync_out_bytes = (size_t)16 << 20;
    lim->total_buffer_bytes = (size_t)64 << 20;
    lim->stream_buffer_bytes = (size_t)1 << 20;
}

struct watch_hub *watch_hub_create(struct kv_store *kv, const struct watch_limits *lim)
{
    struct watch_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->kv = kv;
    if (lim)
        h->lim = *lim;
    else
        watch_limits_default(&h->lim);
    if (!h->lim.sync_watchers)
        h->lim.sync_watchers = 1;
    if (!h->lim.sync_events)
        h->lim.sync_events = 1;
    if (!h->lim.sync_slices)
        h->lim.sync_slices = 1;
    if (!h->lim.sync_out_bytes)
        h->lim.sync_out_bytes = SIZE_MAX; /* no bound */
    h->arena = arena_create(64 << 10);
    if (!h->arena) {
        free(h);
        return NULL;
    }
    return h;
}

void watch_hub_destroy(struct watch_hub *h)
{
    if (!h)
        return;
    while (h->streams)
        watch_stream_close(h->streams);
    watch_index_fini(&h->ix);
    watch_htab_fini(&h->ids);
    free(h->sc.hits);
    free(h->sc.slots);
    free(h->sc.cnt);
    free(h->sc.start);
    free(h->sc.group);
    free(h->sc.idx);
    free(h->sel);
    free(h->sc.gtab);
    free(h->sc.cache);
    arena_destroy(h->arena);
    free(h);
}

void watch_hub_stats(const struct watch_hub *h, struct watch_stats *out)
{
    *out = h->stats;
    out->streams = h->n_streams;
    out->watchers = h->n_watchers;
    out->synced = h->n_synced;
    out->unsynced = h->n_unsynced;
    out->victims = h->n_victims;
    out->buffered = h->buffered;
}

bool watch_hub_pending(const struct watch_hub *h)
{
    /* Deferred progress responses wait for their stream's watchers, which are either here or
     * victims waiting for watch_stream_writable. */
    return h->unsynced_head != NULL;
}

/* ---- watchers ---- */

static const uint8_t *w_key(const struct watcher *w)
{
    return w->bytes;
}

static const uint8_t *w_end(const struct watcher *w)
{
    return w->bytes + w->key_len;
}

bool watch_match(const struct watcher *w, const struct kv_event *e)
{
    if (e->type == KV_EVENT_PUT ? (w->filters & WATCH_FILTER_NOPUT)
                                : (w->filters & WATCH_FILTER_NODELETE))
        return false;
    const uint8_t *k = e->kv.key;
    size_t n = e->kv.key_len;
    switch (w->kind) {
    case KV_END_NONE:
        return sl_keycmp(k, n, w_key(w), w->key_len) == 0;
    case KV_END_KEY:
        return sl_keycmp(k, n, w_key(w), w->key_len) >= 0 &&
               sl_keycmp(k, n, w_end(w), w->end_len) < 0;
    case KV_END_ALL:
        return sl_keycmp(k, n, w_key(w), w->key_len) >= 0;
    }
    return false;
}

static bool behind(enum watch_group g)
{
    return g == WG_UNSYNCED || g == WG_SYNCING || g == WG_VICTIM;
}

static void list_unlink(struct watcher **head, struct watcher *w)
{
    if (w->gprev)
        w->gprev->gnext = w->gnext;
    else if (*head == w)
        *head = w->gnext;
    if (w->gnext)
        w->gnext->gprev = w->gprev;
    w->gprev = w->gnext = NULL;
}

static void list_push(struct watcher **head, struct watcher *w)
{
    w->gprev = NULL;
    w->gnext = *head;
    if (*head)
        (*head)->gprev = w;
    *head = w;
}

static void leave(struct watch_hub *h, struct watcher *w)
{
    switch (w->group) {
    case WG_SYNCED:
        list_unlink(&w->set->head, w);
        if (--w->set->n == 0)
            watch_index_drop(&h->ix, w->set);
        w->set = NULL;
        h->n_synced--;
        break;
    case WG_UNSYNCED:
        if (h->unsynced_tail == w)
            h->unsynced_tail = w->gprev;
        list_unlink(&h->unsynced_head, w);
        h->n_unsynced--;
        break;
    case WG_SYNCING:
        h->n_unsynced--;
        break;
    case WG_VICTIM:
        list_unlink(&w->st->victims, w);
        h->n_victims--;
        break;
    case WG_NONE:
    case WG_COMPACTED:
        break;
    }
    if (behind(w->group))
        w->st->n_behind--;
    w->group = WG_NONE;
}

static void unsynced_append(struct watch_hub *h, struct watcher *w)
{
    w->gnext = NULL;
    w->gprev = h->unsynced_tail;
    if (h->unsynced_tail)
        h->unsynced_tail->gnext = w;
    else
        h->unsynced_head = w;
    h->unsynced_tail = w;
}

void watch_hub_restored(struct watch_hub *h)
{
    for (struct watch_stream *st = h->streams; st; st = st->next)
        for (struct watcher *w = st->all; w; w = w->snext)
            if (w->group == WG_SYNCED)
                watch_move(h, w, WG_UNSYNCED);
}

void watch_move(struct watch_hub *h, struct watcher *w, enum watch_group g)
{
    struct watch_set *set = NULL;
    if (w->group == g)
        return;
    if (g == WG_SYNCED) {
        set = watch_index_get(&h->ix, w_key(w), w->key_len, w_end(w), w->end_len, w->kind);
        if (!set)
            g = WG_UNSYNCED; /* out of memory: try again from the unsynced group */
        if (w->group == g)
            return;
    }
    leave(h, w);
    w->group = g;
    switch (g) {
    case WG_SYNCED:
        w->set = set;
        list_push(&set->head, w);
        set->n++;
        h->n_synced++;
        break;
    case WG_UNSYNCED:
        unsynced_append(h, w);
        h->n_unsynced++;
        break;
    case WG_SYNCING:
        h->n_unsynced++;
        break;
    case WG_VICTIM:
        list_push(&w->st->victims, w);
        h->n_victims++;
        h->stats.victimized++;
        break;
    case WG_NONE:
    case WG_COMPACTED:
        break;
    }
    if (behind(g))
        w->st->n_behind++;
}

static uint64_t id_hash(const struct watch_stream *st, int64_t id)
{
    uint8_t k[16];
    uintptr_t p = (uintptr_t)st;
    uint64_t pv = (uint64_t)p;
    memcpy(k, &pv, 8);
    memcpy(k + 8, &id, 8);
    return watch_hash_bytes(k, sizeof(k), ID_SEED);
}

static struct watcher *find_id(const struct watch_stream *st, int64_t id)
{
    uint64_t hash = id_hash(st, id);
    for (struct watch_hnode *n = watch_htab_first(&st->h->ids, hash); n; n = watch_htab_next(n)) {
        struct watcher *w = (struct watcher *)n;
        if (w->st == st && w->id == id)
            return w;
    }
    return NULL;
}

static void watcher_free(struct watch_hub *h, struct watcher *w)
{
    struct watch_stream *st = w->st;
    leave(h, w);
    watch_htab_remove(&h->ids, &w->id_node);
    if (w->sprev)
        w->sprev->snext = w->snext;
    else
        st->all = w->snext;
    if (w->snext)
        w->snext->sprev = w->sprev;
    if (w->progress_notify) {
        if (w->pprev)
            w->pprev->pnext = w->pnext;
        else
            h->progress = w->pnext;
        if (w->pnext)
            w->pnext->pprev = w->pprev;
    }
    st->n_watchers--;
    h->n_watchers--;
    free(w);
}

/* ---- streams ---- */

static void woken_remove(struct watch_stream *st)
{
    if (!st->woken)
        return;
    struct watch_stream **pp = &st->h->woken;
    while (*pp != st)
        pp = &(*pp)->wnext;
    *pp = st->wnext;
    st->wnext = NULL;
    st->woken = false;
}

static void budget_remove(struct watch_stream *st)
{
    struct watch_hub *h = st->h;
    if (!st->budget_wait)
        return;
    if (st->bprev)
        st->bprev->bnext = st->bnext;
    else
        h->budget_head = st->bnext;
    if (st->bnext)
        st->bnext->bprev = st->bprev;
    else
        h->budget_tail = st->bprev;
    st->bprev = st->bnext = NULL;
    st->budget_wait = false;
}

/* The index of (sink, ctx) in h->sinks, taking a free one if needed; WATCH_MAX_SINKS when
 * full. */
static unsigned sink_slot(struct watch_hub *h, const struct watch_sink *sink, void *ctx)
{
    unsigned free_slot = WATCH_MAX_SINKS;
    for (unsigned i = 0; i < WATCH_MAX_SINKS; i++) {
        if (h->sinks[i].n_streams && h->sinks[i].sink == sink && h->sinks[i].ctx == ctx)
            return i;
        if (!h->sinks[i].n_streams && free_slot == WATCH_MAX_SINKS)
            free_slot = i;
    }
    return free_slot;
}

struct watch_stream *watch_stream_open(struct watch_hub *h, const struct watch_sink *sink,
                                       void *sink_ctx, void *ctx)
{
    unsigned si = sink_slot(h, sink, sink_ctx);
    if (si == WATCH_MAX_SINKS)
        return NULL;
    struct watch_stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    h->sinks[si].sink = sink;
    h->sinks[si].ctx = sink_ctx;
    h->sinks[si].n_streams++;
    st->sink = si;
    st->h = h;
    st->ctx = ctx;
    st->next = h->streams;
    if (st->next)
        st->next->prev = st;
    h->streams = st;
    h->n_streams++;
    return st;
}

void watch_stream_close(struct watch_stream *st)
{
    if (!st)
        return;
    struct watch_hub *h = st->h;
    while (st->all)
        watcher_free(h, st->all);
    if (st->progress_pending)
        h->n_progress_pending--;
    h->buffered -= st->buffered;
    woken_remove(st);
    budget_remove(st);
    h->sinks[st->sink].n_streams--;
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    h->n_streams--;
    free(st);
}

static void send_resp(struct watch_hub *h, struct watch_stream *st, const struct watch_resp *r)
{
    h->stats.responses++;
    watch_sink_send(st, r);
}

bool watch_sink_send(struct watch_stream *st, const struct watch_resp *r)
{
    const struct watch_sink_slot *s = &st->h->sinks[st->sink];
    return s->sink->send(s->ctx, st->ctx, r);
}

static void send_failed(struct watch_stream *st, const char *reason)
{
    struct watch_resp r = {.kind = WATCH_RESP_CREATE_FAILED,
                           .watch_id = -1,
                           .revision = kv_current_rev(st->h->kv),
                           .cancel_reason = reason};
    send_resp(st->h, st, &r);
}

void watch_send_ctrl(struct watch_hub *h, struct watcher *w, enum watch_resp_kind kind, int64_t rev)
{
    struct watch_resp r = {.kind = kind, .watch_id = w->id, .revision = rev};
    if (kind == WATCH_RESP_COMPACTED) {
        r.compact_revision = rev;
        r.revision = 0;
    }
    send_resp(h, w->st, &r);
}

void watch_progress_check(struct watch_stream *st)
{
    if (!st->progress_pending || st->n_behind)
        return;
    st->progress_pending = false;
    st->h->n_progress_pending--;
    struct watch_resp r = {
        .kind = WATCH_RESP_PROGRESS, .watch_id = -1, .revision = kv_current_rev(st->h->kv)};
    send_resp(st->h, st, &r);
}

void watch_create_refused(struct watch_stream *st, const char *reason)
{
    send_failed(st, reason);
}

void watch_create(struct watch_stream *st, const struct watch_create_req *req)
{
    struct watch_hub *h = st->h;
    /* etcd: an empty key is "\0", the smallest key. */
    static const uint8_t zero = 0;
    const uint8_t *key = req->span.key_len ? req->span.key : &zero;
    size_t key_len = req->span.key_len ? req->span.key_len : 1;
    size_t end_len = req->span.end_kind == KV_END_KEY ? req->span.end_len : 0;
    if (req->span.end_kind == KV_END_KEY &&
        sl_keycmp(key, key_len, req->span.end, req->span.end_len) >= 0) {
        send_failed(st, WATCH_REASON_EMPTY_RANGE);
        return;
    }
    int64_t id = req->watch_id;
    if (id != 0 && find_id(st, id)) {
        send_failed(st, WATCH_REASON_DUP_ID);
        return;
    }
    if (h->n_watchers >= h->lim.max_watchers) {
        send_failed(st, WATCH_REASON_TOO_MANY);
        return;
    }
    if (st->n_watchers >= h->lim.max_watchers_per_stream) {
        send_failed(st, WATCH_REASON_STREAM_FULL);
        return;
    }
    struct watcher *w = calloc(1, sizeof(*w) + key_len + end_len);
    if (!w) {
        send_failed(st, WATCH_REASON_NOMEM);
        return;
    }
    if (id == 0) {
        /* etcd watchStream.Watch: the next id not in use, counting up. */
        while (find_id(st, st->next_id))
            st->next_id++;
        id = st->next_id++;
    }
    w->st = st;
    w->id = id;
    w->filters = req->filters;
    w->prev_kv = req->prev_kv;
    w->fragment = req->fragment;
    w->progress_notify = req->progress_notify;
    w->kind = req->span.end_kind;
    w->key_len = key_len;
    w->end_len = end_len;
    memcpy(w->bytes, key, key_len);
    if (end_len)
        memcpy(w->bytes + key_len, req->span.end, end_len);
    w->id_node.hash = id_hash(st, id);
    if (!watch_htab_insert(&h->ids, &w->id_node)) {
        free(w);
        send_failed(st, WATCH_REASON_NOMEM);
        return;
    }
    w->snext = st->all;
    if (st->all)
        st->all->sprev = w;
    st->all = w;
    st->n_watchers++;
    h->n_watchers++;
    if (w->progress_notify) {
        w->pnext = h->progress;
        if (h->progress)
            h->progress->pprev = w;
        h->progress = w;
    }
    int64_t cur = kv_current_rev(h->kv);
    watch_send_ctrl(h, w, WATCH_RESP_CREATED, cur);
    /* etcd watchableStore.watch: start 0 (the next revision) or in the future is synced. */
    int64_t start = req->start_revision ? req->start_revision : cur + 1;
    w->min_rev = start;
    watch_move(h, w, start > cur ? WG_SYNCED : WG_UNSYNCED);
}

bool watch_cancel(struct watch_stream *st, int64_t watch_id)
{
    struct watcher *w = find_id(st, watch_id);
    if (!w)
        return false;
    struct watch_hub *h = st->h;
    watch_send_ctrl(h, w, WATCH_RESP_CANCELED, kv_current_rev(h->kv));
    watcher_free(h, w);
    watch_progress_check(st);
    return true;
}

void watch_progress(struct watch_stream *st)
{
    if (!st->progress_pending) {
        st->progress_pending = true;
        st->h->n_progress_pending++;
    }
    watch_progress_check(st);
}

void watch_stream_writable(struct watch_stream *st)
{
    struct watch_hub *h = st->h;
    st->blocked = false;
    while (st->victims)
        watch_move(h, st->victims, WG_UNSYNCED);
}

void watch_stream_set_buffered(struct watch_stream *st, size_t bytes)
{
    struct watch_hub *h = st->h;
    h->buffered = h->buffered - st->buffered + bytes;
    st->buffered = bytes;
    if (st->drain_wait && bytes <= h->lim.stream_buffer_bytes / 4) {
        /* woken from watch_hub_wake, never from here: this may run inside the sink */
        st->drain_wait = false;
        st->woken = true;
        st->wnext = h->woken;
        h->woken = st;
    }
}

size_t watch_stream_buffered(const struct watch_stream *st)
{
    return st->buffered;
}

bool watch_stream_admits(const struct watch_stream *st, size_t n)
{
    const struct watch_hub *h = st->h;
    size_t budget = h->lim.total_buffer_bytes;
    if (!budget || h->buffered == 0)
        return true;
    if (h->buffered > budget || n > budget - h->buffered)
        return false;
    size_t share = budget / h->n_streams;
    return st->buffered + n <= share || h->buffered + n <= budget / 2;
}

static void budget_wait(struct watch_stream *st, size_t n)
{
    struct watch_hub *h = st->h;
    st->want = n;
    if (st->budget_wait)
        return;
    st->budget_wait = true;
    st->bnext = NULL;
    st->bprev = h->budget_tail;
    if (h->budget_tail)
        h->budget_tail->bnext = st;
    else
        h->budget_head = st;
    h->budget_tail = st;
}

bool watch_stream_try(struct watch_stream *st, size_t n)
{
    struct watch_hub *h = st->h;
    if (h->lim.stream_buffer_bytes && st->buffered >= h->lim.stream_buffer_bytes) {
        if (!st->woken)
            st->drain_wait = true;
        return false;
    }
    if (watch_stream_admits(st, n))
        return true;
    budget_wait(st, n);
    return false;
}

bool watch_hub_wake(struct watch_hub *h, size_t max_bytes)
{
    while (h->woken) {
        struct watch_stream *st = h->woken;
        woken_remove(st);
        watch_stream_writable(st);
    }
    size_t reserved = 0;
    for (struct watch_stream *st = h->budget_head, *next; st && reserved < max_bytes; st = next) {
        next = st->bnext;
        if (!watch_stream_admits(st, reserved + st->want))
            continue;
        reserved += st->want;
        budget_remove(st);
        watch_stream_writable(st);
    }
    return h->budget_head != NULL;
}

bool watch_hub_waiting(const struct watch_hub *h)
{
    return h->woken || h->budget_head;
}

void watch_hub_progress_tick(struct watch_hub *h)
{
    int64_t cur = kv_current_rev(h->kv);
    for (struct watcher *w = h->progress; w; w = w->pnext) {
        if (w->group == WG_SYNCED && !w->progress_elide)
            watch_send_ctrl(h, w, WATCH_RESP_PROGRESS, cur);
        w->progress_elide = false;
    }
}
