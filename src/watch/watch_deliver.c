/* watch_deliver.c - turning matched (watcher, event) pairs into one response per watcher, and
 * the live path (watch_hub_notify).
 *
 * A delivery collects hits in a scratch reused across batches, sorts them by watcher (stable,
 * so each watcher's events stay in revision order), then gives every distinct (events,
 * prev_kv) combination one cache slot of the batch: the sink encodes each combination once,
 * however many watchers receive it. A stream that refuses output makes the watcher a victim;
 * a hit that cannot be recorded (OOM) sends the watcher back to the unsynced group, so no
 * event is ever dropped silently.
 */
#include "watch_int.h"

#include "metastore/grow.h"

#include <stdlib.h>
#include <string.h>

/* ms_grow for arrays that may need no room at all (need 0). */
static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    void *np = ms_grow(*p, cap, need, size, 64);
    if (!np)
        return false;
    *p = np;
    return true;
}

static bool grow_slots(struct watch_scratch *sc, size_t need)
{
    if (need <= sc->cap_slots)
        return true;
    size_t cap = sc->cap_slots;
    /* Grow the parallel arrays one by one; only the last commits the capacity. */
    size_t c1 = cap, c2 = cap, c3 = cap, c4 = cap;
    if (!grow((void **)&sc->slots, &c1, need, sizeof(*sc->slots)) ||
        !grow((void **)&sc->cnt, &c2, need, sizeof(*sc->cnt)) ||
        !grow((void **)&sc->start, &c3, need, sizeof(*sc->start)) ||
        !grow((void **)&sc->group, &c4, need, sizeof(*sc->group)))
        return false;
    sc->cap_slots = c1;
    return true;
}

void watch_deliver_begin(struct watch_hub *h)
{
    h->mark++;
    h->sc.n_hits = 0;
    h->sc.n_slots = 0;
    h->sc.failed = false;
}

void watch_hit(struct watch_hub *h, struct watcher *w, uint32_t ev)
{
    struct watch_scratch *sc = &h->sc;
    if (w->mark != h->mark) {
        w->mark = h->mark;
        if (!grow_slots(sc, sc->n_slots + 1)) {
            w->slot = WATCH_SLOT_FAILED;
            sc->failed = true;
            return;
        }
        w->slot = (uint32_t)sc->n_slots;
        sc->slots[sc->n_slots++] = w;
    } else if (w->slot == WATCH_SLOT_FAILED) {
        return;
    }
    if (!grow((void **)&sc->hits, &sc->cap_hits, sc->n_hits + 1, sizeof(*sc->hits))) {
        w->slot = WATCH_SLOT_FAILED;
        sc->failed = true;
        return;
    }
    sc->hits[sc->n_hits++] = (struct watch_hit){.w = w, .ev = ev};
}

static bool slot_ok(const struct watch_scratch *sc, size_t s)
{
    return sc->slots[s]->slot == (uint32_t)s;
}

/* Sort the hits by slot into sc->idx (stable). False on OOM. */
static bool group_hits(struct watch_scratch *sc)
{
    if (!grow((void **)&sc->idx, &sc->cap_idx, sc->n_hits, sizeof(*sc->idx)))
        return false;
    memset(sc->cnt, 0, sc->n_slots * sizeof(*sc->cnt));
    for (size_t i = 0; i < sc->n_hits; i++)
        if (sc->hits[i].w->slot != WATCH_SLOT_FAILED)
            sc->cnt[sc->hits[i].w->slot]++;
    uint32_t off = 0;
    for (size_t s = 0; s < sc->n_slots; s++) {
        sc->start[s] = off;
        off += sc->cnt[s];
    }
    for (size_t i = 0; i < sc->n_hits; i++) {
        uint32_t s = sc->hits[i].w->slot;
        if (s != WATCH_SLOT_FAILED)
            sc->idx[sc->start[s]++] = sc->hits[i].ev;
    }
    for (size_t s = 0; s < sc->n_slots; s++)
        sc->start[s] -= sc->cnt[s];
    return true;
}

static uint64_t subset_hash(const uint32_t *idx, size_t n, bool prev)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (prev ? 0x9e37u : 0u) ^ n;
    for (size_t i = 0; i < n; i++) {
        h ^= idx[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static bool same_subset(const struct watch_scratch *sc, size_t a, size_t b)
{
    return sc->cnt[a] == sc->cnt[b] && sc->slots[a]->prev_kv == sc->slots[b]->prev_kv &&
           memcmp(sc->idx + sc->start[a], sc->idx + sc->start[b], sc->cnt[a] * sizeof(*sc->idx)) ==
               0;
}

/* Give each slot a cache slot: 0 and 1 are "every event of the batch" without and with
 * prev_kv; the other combinations are found through a small open-addressing table. Returns
 * the number of cache slots used. */
static size_t assign_groups(struct watch_scratch *sc, size_t n_events)
{
    size_t n_groups = 2;
    size_t cap = 16;
    while (cap < sc->n_slots * 2)
        cap *= 2;
    bool dedupe = grow((void **)&sc->gtab, &sc->cap_gtab, cap, sizeof(*sc->gtab));
    if (dedupe)
        memset(sc->gtab, 0, cap * sizeof(*sc->gtab));
    for (size_t s = 0; s < sc->n_slots; s++) {
        if (!slot_ok(sc, s))
            continue;
        bool prev = sc->slots[s]->prev_kv;
        if (sc->cnt[s] == n_events) {
            sc->group[s] = prev ? 1 : 0;
            continue;
        }
        if (!dedupe) {
            sc->group[s] = (uint32_t)n_groups++;
            continue;
        }
        size_t j = (size_t)subset_hash(sc->idx + sc->start[s], sc->cnt[s], prev) & (cap - 1);
        for (;; j = (j + 1) & (cap - 1)) {
            uint32_t e = sc->gtab[j];
            if (e == 0) {
                sc->gtab[j] = (uint32_t)s + 1;
                sc->group[s] = (uint32_t)n_groups++;
                break;
            }
            if (same_subset(sc, e - 1, s)) {
                sc->group[s] = sc->group[e - 1];
                break;
            }
        }
    }
    return n_groups;
}

/* A watcher's events before rev are delivered or not its own: it resumes at rev at the
 * earliest (0: no change). */
static void raise_min_rev(struct watcher *w, int64_t rev)
{
    if (rev > w->min_rev)
        w->min_rev = rev;
}

bool watch_deliver(struct watch_hub *h, int64_t rev, const struct kv_event *ev, size_t n,
                   int64_t refused_rev, int64_t next_rev)
{
    struct watch_scratch *sc = &h->sc;
    if (sc->n_slots == 0)
        return sc->failed;
    if (!group_hits(sc)) {
        /* No room to sort: every watcher of this delivery retries from history. */
        for (size_t s = 0; s < sc->n_slots; s++)
            sc->slots[s]->slot = WATCH_SLOT_FAILED;
        sc->failed = true;
    }
    /* every sink has its own slot per group: the gateway caches JSON, gRPC protobuf */
    size_t n_cache = assign_groups(sc, n) * WATCH_MAX_SINKS;
    struct watch_batch batch = {.revision = rev, .events = ev, .n_events = n};
    if (grow((void **)&sc->cache, &sc->cap_cache, n_cache, sizeof(*sc->cache))) {
        memset(sc->cache, 0, n_cache * sizeof(*sc->cache));
        batch.cache = sc->cache;
        batch.n_cache = n_cache;
    }
    for (size_t s = 0; s < sc->n_slots; s++) {
        struct watcher *w = sc->slots[s];
        if (!slot_ok(sc, s)) {
            raise_min_rev(w, refused_rev);
            if (w->group == WG_SYNCED)
                watch_move(h, w, WG_UNSYNCED);
            continue;
        }
        struct watch_stream *st = w->st;
        struct watch_resp r = {.kind = WATCH_RESP_EVENTS,
                               .watch_id = w->id,
                               .revision = rev,
                               .batch = &batch,
                               .slot = batch.cache ? sc->group[s] * WATCH_MAX_SINKS + st->sink : 0,
                               .idx = sc->idx + sc->start[s],
                               .n_idx = sc->cnt[s],
                               .prev_kv = w->prev_kv,
                               .fragment = w->fragment};
        if (!st->blocked && !watch_sink_send(st, &r))
            st->blocked = true;
        if (st->blocked) {
            raise_min_rev(w, refused_rev);
            watch_move(h, w, WG_VICTIM);
            continue;
        }
        h->stats.responses++;
        h->stats.events_sent += sc->cnt[s];
        w->min_rev = next_rev;
        w->progress_elide = true;
    }
    for (size_t g = 0; g < batch.n_cache; g++) {
        if (batch.cache[g]) {
            const struct watch_sink_slot *k = &h->sinks[g % WATCH_MAX_SINKS];
            k->sink->release(k->ctx, batch.cache[g]);
        }
    }
    return sc->failed;
}

/* ---- live events ---- */

struct notify_ctx {
    struct watch_hub *h;
    const struct kv_event *ev;
    uint32_t i;
};

static void on_set(void *arg, struct watch_set *s)
{
    struct notify_ctx *c = arg;
    unsigned drop = c->ev->type == KV_EVENT_PUT ? WATCH_FILTER_NOPUT : WATCH_FILTER_NODELETE;
    for (struct watcher *w = s->head; w; w = w->gnext) {
        /* A watcher created with a future start revision waits for it (etcd minRev). */
        if (w->min_rev > c->ev->kv.mod_revision || (w->filters & drop))
            continue;
        watch_hit(c->h, w, c->i);
    }
}

void watch_hub_notify(struct watch_hub *h, int64_t rev, const struct kv_event *ev, size_t n)
{
    if (!h->n_synced)
        return;
    watch_deliver_begin(h);
    struct notify_ctx c = {.h = h};
    for (size_t i = 0; i < n; i++) {
        c.ev = &ev[i];
        c.i = (uint32_t)i;
        watch_index_match(&h->ix, ev[i].kv.key, ev[i].kv.key_len, on_set, &c);
    }
    int64_t first = n ? ev[0].kv.mod_revision : rev;
    if (!watch_deliver(h, rev, ev, n, first, rev + 1))
        return;
    /* Some hits were lost to OOM before they got a slot: find those watchers (they are marked
     * with this delivery and still synced) and let them catch up from history. */
    for (struct watch_stream *st = h->streams; st; st = st->next) {
        for (struct watcher *w = st->all; w; w = w->snext) {
            if (w->mark == h->mark && w->slot == WATCH_SLOT_FAILED && w->group == WG_SYNCED) {
                raise_min_rev(w, first);
                watch_move(h, w, WG_UNSYNCED);
            }
        }
    }
}
