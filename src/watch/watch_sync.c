/* watch_sync.c - catching unsynced watchers up from history (etcd syncWatchers), in bounded
 * rounds.
 *
 * One round takes up to lim.sync_watchers watchers from the head of the unsynced FIFO (those
 * not finished go back to its tail, so every watcher gets its turn), cancels the ones behind
 * the compaction point with compact_revision, and reads history slices starting at the
 * smallest revision they need: at most lim.sync_events events or about lim.sync_bytes of keys
 * and values per slice (in whole revisions: one revision's events are never split, however
 * many), lim.sync_slices slices per round. A round stops feeding watchers once the slices'
 * bytes times the watchers fed pass lim.sync_out_bytes: a large value owed to thousands of
 * watchers is copied a few dozen watchers per loop turn, with other clients served between
 * the turns (the rest wait at the tail of the FIFO). Each slice is one batch whose responses carry
 * the current revision in their header (etcd). A watcher that reaches the current revision moves to
 * synced; from then on it gets live events. prev_kv for history events is read from the store at
 * mod_revision - 1, as etcd's watch server does.
 */
#include "watch_int.h"

#include <stdlib.h>
#include <string.h>

/* kv_history is asked for a few events at a time (never fewer than one revision), the next
 * request sized from the average size seen so far, so a run of large values stops a slice
 * close to lim.sync_bytes instead of reading dozens of them at once. */
#define HISTORY_CHUNK_MAX   64
#define HISTORY_CHUNK_FIRST 1

struct slice {
    struct kv_event *ev;
    size_t n;
    size_t cap;
    size_t bytes; /* keys and values */
    int64_t next; /* first revision not in the slice */
    uint8_t *prev_done;
};

static bool slice_append(struct arena *a, struct slice *s, const struct kv_event *ev, size_t n)
{
    if (s->n + n > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        while (cap < s->n + n)
            cap *= 2;
        struct kv_event *ne = arena_alloc(a, cap * sizeof(*ne));
        if (!ne)
            return false;
        if (s->n)
            memcpy(ne, s->ev, s->n * sizeof(*ne));
        s->ev = ne;
        s->cap = cap;
    }
    memcpy(s->ev + s->n, ev, n * sizeof(*ev));
    s->n += n;
    return true;
}

static ms_err read_slice(struct watch_hub *h, struct be_txn *txn, int64_t from, int64_t to,
                         struct slice *s)
{
    size_t bytes = 0, chunk = HISTORY_CHUNK_FIRST;
    int64_t at = from;
    memset(s, 0, sizeof(*s));
    while (at <= to && s->n < h->lim.sync_events && (s->n == 0 || bytes < h->lim.sync_bytes)) {
        size_t want = h->lim.sync_events - s->n;
        struct kv_event *ev;
        size_t n;
        int64_t next;
        ms_err e =
            kv_history(h->kv, txn, at, to, want < chunk ? want : chunk, h->arena, &ev, &n, &next);
        if (e)
            return e;
        if (n && !slice_append(h->arena, s, ev, n))
            return MS_E_NOMEM;
        size_t got = 0;
        for (size_t i = 0; i < n; i++)
            got += ev[i].kv.key_len + ev[i].kv.value_len;
        bytes += got;
        at = next;
        if (n == 0)
            break;
        size_t avg = got / n + 1;
        size_t left = bytes < h->lim.sync_bytes ? h->lim.sync_bytes - bytes : 0;
        chunk = left / avg;
        chunk = chunk < 1 ? 1 : chunk > HISTORY_CHUNK_MAX ? HISTORY_CHUNK_MAX : chunk;
    }
    s->next = at;
    s->bytes = bytes;
    if (s->n) {
        s->prev_done = arena_calloc(h->arena, s->n, 1);
        if (!s->prev_done)
            return MS_E_NOMEM;
    }
    h->stats.history_reads++;
    return MS_OK;
}

/* Fill ev->prev from the store at the revision before the event (once per event). A creation
 * has no previous value; a compacted previous revision leaves prev absent, as in etcd. */
static void fill_prev(struct watch_hub *h, struct be_txn *txn, struct slice *s, size_t i)
{
    struct kv_event *e = &s->ev[i];
    if (s->prev_done[i])
        return;
    s->prev_done[i] = 1;
    if (e->type == KV_EVENT_PUT && e->kv.create_revision == e->kv.mod_revision)
        return;
    if (e->kv.mod_revision <= 1)
        return;
    struct kv_range_req rq = {.span = {.key = e->kv.key, .key_len = e->kv.key_len},
                              .revision = e->kv.mod_revision - 1};
    struct kv_range_resp rs;
    if (kv_range(h->kv, txn, &rq, h->arena, &rs) == MS_OK && rs.n_kvs == 1) {
        e->prev = rs.kvs[0];
        e->has_prev = true;
    }
}

/* First event at or after revision rev (events are in revision order). */
static size_t first_at(const struct slice *s, int64_t rev)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ev[mid].kv.mod_revision < rev)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void compacted(struct watch_hub *h, struct watcher *w, int64_t compact_rev)
{
    watch_send_ctrl(h, w, WATCH_RESP_COMPACTED, compact_rev);
    watch_move(h, w, WG_COMPACTED);
    watch_progress_check(w->st);
}

static void synced(struct watch_hub *h, struct watcher *w)
{
    watch_move(h, w, WG_SYNCED);
    if (w->group == WG_SYNCED)
        watch_progress_check(w->st);
    else
        watch_move(h, w, WG_SYNCING); /* no memory for its set: keep it for a later round */
}

/* Take up to lim.sync_watchers watchers off the unsynced FIFO; settle those that need no
 * history. Returns how many remain in h->sel. */
static size_t take(struct watch_hub *h, int64_t cur, int64_t floor)
{
    size_t n = 0;
    if (!h->sel) {
        h->sel = malloc(h->lim.sync_watchers * sizeof(*h->sel));
        if (!h->sel)
            return 0;
        h->cap_sel = h->lim.sync_watchers;
    }
    while (n < h->cap_sel && h->unsynced_head) {
        struct watcher *w = h->unsynced_head;
        watch_move(h, w, WG_SYNCING);
        /* etcd chooseAll: behind the compaction point (or below etcd's initial compaction
         * revision -1 when never compacted) -> cancelled with compact_revision. */
        if (w->min_rev < floor) {
            compacted(h, w, floor);
            continue;
        }
        if (w->min_rev < 1)
            w->min_rev = 1;
        if (w->min_rev > cur) {
            synced(h, w);
            if (w->group == WG_SYNCED)
                continue;
        }
        h->sel[n++] = w;
    }
    return n;
}

static void collect(struct watch_hub *h, struct be_txn *txn, struct slice *s, size_t n_sel)
{
    watch_deliver_begin(h);
    for (size_t k = 0; k < n_sel; k++) {
        struct watcher *w = h->sel[k];
        if (w->min_rev >= s->next)
            continue;
        for (size_t i = first_at(s, w->min_rev); i < s->n; i++) {
            if (!watch_match(w, &s->ev[i]))
                continue;
            if (w->prev_kv)
                fill_prev(h, txn, s, i);
            watch_hit(h, w, (uint32_t)i);
        }
    }
}

/* After a slice: advance the watchers it covered, drop from sel those that left the syncing
 * state (victims, synced). Returns the new count. */
static size_t settle(struct watch_hub *h, const struct slice *s, size_t n_sel, int64_t cur)
{
    size_t m = 0;
    for (size_t k = 0; k < n_sel; k++) {
        struct watcher *w = h->sel[k];
        if (w->group != WG_SYNCING)
            continue; /* refused: now a victim */
        bool failed = w->mark == h->mark && w->slot == WATCH_SLOT_FAILED;
        if (!failed && w->min_rev < s->next)
            w->min_rev = s->next; /* nothing in the slice for it, or delivered */
        if (w->min_rev > cur) {
            synced(h, w);
            if (w->group == WG_SYNCED)
                continue;
        }
        h->sel[m++] = w;
    }
    return m;
}

/* How many of the n_sel watchers get slice s this round: as many as lim.sync_out_bytes still
 * holds, at least one. *fed counts the bytes handed out so far. */
static size_t fed_now(const struct watch_hub *h, const struct slice *s, size_t n_sel, size_t *fed)
{
    size_t each = s->bytes ? s->bytes : 1;
    size_t room = *fed < h->lim.sync_out_bytes ? h->lim.sync_out_bytes - *fed : 0;
    size_t k = room / each;
    k = k < 1 ? 1 : k > n_sel ? n_sel : k;
    *fed += k * each;
    return k;
}

ms_err watch_hub_sync(struct watch_hub *h, struct be_txn *txn)
{
    if (!h->unsynced_head)
        return MS_OK;
    int64_t cur = kv_current_rev(h->kv);
    int64_t comp = kv_compact_rev(h->kv);
    int64_t floor = comp > 0 ? comp : -1;
    size_t n_sel = take(h, cur, floor);
    size_t fed = 0;
    ms_err e = MS_OK;
    for (size_t round = 0; round < h->lim.sync_slices && n_sel; round++) {
        int64_t from = h->sel[0]->min_rev;
        for (size_t k = 1; k < n_sel; k++)
            if (h->sel[k]->min_rev < from)
                from = h->sel[k]->min_rev;
        struct slice s;
        e = read_slice(h, txn, from, cur, &s);
        if (e) {
            arena_reset(h->arena);
            break;
        }
        size_t k = fed_now(h, &s, n_sel, &fed);
        collect(h, txn, &s, k);
        watch_deliver(h, cur, s.ev, s.n, 0, s.next);
        size_t m = settle(h, &s, k, cur);
        memmove(h->sel + m, h->sel + k, (n_sel - k) * sizeof(*h->sel));
        n_sel = m + (n_sel - k);
        arena_reset(h->arena);
        if (fed >= h->lim.sync_out_bytes)
            break;
    }
    for (size_t k = 0; k < n_sel; k++)
        watch_move(h, h->sel[k], WG_UNSYNCED);
    return e;
}
