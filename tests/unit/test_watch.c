/* test_watch.c - the watch hub: matching (single key, range, prefix, all keys, filters),
 * ids, group transitions (synced, unsynced, victims, compacted), history slices, progress,
 * limits, the interval tree against brute force, and batch cache slots. A recording sink
 * stands in for the gateway; writes go through a real kv store on the memory backend. */
#include "metastore/arena.h"
#include "metastore/be.h"
#include "metastore/kv.h"
#include "metastore/watch.h"
#include "testutil.h"
#include "watch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct be *be;
static struct be_txn *txn;
static struct kv_store *kv;
static struct arena *ar;
static struct watch_hub *hub;

/* ---- recording sink ---- */

#define MAX_REC  4096
#define MAX_EVS  64
#define N_STREAM 8

struct rec_ev {
    int type;
    char key[32];
    int64_t mod;
    int64_t prev_mod; /* 0: no prev included */
};

struct rec {
    int stream;
    enum watch_resp_kind kind;
    int64_t watch_id;
    int64_t revision;
    int64_t compact;
    const char *reason;
    int sink; /* 0, or 1 for the second sink's streams */
    size_t slot;
    bool cached; /* the slot was already encoded by an earlier response of the batch */
    size_t n_ev;
    struct rec_ev ev[MAX_EVS];
};

static struct rec recs[MAX_REC];
static size_t n_recs;
static bool refuse[N_STREAM];
static int stream_ids[N_STREAM];
static size_t encodes, releases;
/* Budget mode (resp_bytes > 0): every events response "queues" resp_bytes on its stream, if
 * the hub admits them, as the gateway does; held[] is the stream's unwritten output. */
static size_t resp_bytes;
static size_t held[N_STREAM];
static struct watch_stream *streams[N_STREAM];

static bool rec_send(void *sink_ctx, void *stream_ctx, const struct watch_resp *r)
{
    int sid = *(int *)stream_ctx;
    if (r->kind == WATCH_RESP_EVENTS && refuse[sid])
        return false;
    if (r->kind == WATCH_RESP_EVENTS && resp_bytes) {
        if (!watch_stream_try(streams[sid], resp_bytes))
            return false;
        held[sid] += resp_bytes;
        watch_stream_set_buffered(streams[sid], held[sid]);
    }
    ck_assert_uint_lt(n_recs, MAX_REC);
    struct rec *x = &recs[n_recs++];
    memset(x, 0, sizeof(*x));
    x->stream = sid;
    x->sink = sink_ctx ? *(int *)sink_ctx : 0;
    x->kind = r->kind;
    x->watch_id = r->watch_id;
    x->revision = r->revision;
    x->compact = r->compact_revision;
    x->reason = r->cancel_reason;
    if (r->kind != WATCH_RESP_EVENTS)
        return true;
    x->slot = r->slot;
    ck_assert_ptr_nonnull(r->batch->cache);
    ck_assert_uint_lt(r->slot, r->batch->n_cache);
    if (r->batch->cache[r->slot]) {
        x->cached = true;
    } else {
        r->batch->cache[r->slot] = malloc(16);
        encodes++;
    }
    ck_assert_uint_le(r->n_idx, MAX_EVS);
    x->n_ev = r->n_idx;
    for (size_t i = 0; i < r->n_idx; i++) {
        const struct kv_event *e = &r->batch->events[r->idx[i]];
        if (i)
            ck_assert_uint_gt(r->idx[i], r->idx[i - 1]);
        x->ev[i].type = e->type;
        snprintf(x->ev[i].key, sizeof(x->ev[i].key), "%.*s", (int)e->kv.key_len,
                 (const char *)e->kv.key);
        x->ev[i].mod = e->kv.mod_revision;
        if (r->prev_kv && e->has_prev)
            x->ev[i].prev_mod = e->prev.mod_revision;
    }
    return true;
}

static void rec_release(void *sink_ctx, void *cached)
{
    (void)sink_ctx;
    releases++;
    free(cached);
}

static const struct watch_sink SINK = {.send = rec_send, .release = rec_release};

static struct watch_limits limits(void)
{
    struct watch_limits l;
    watch_limits_default(&l);
    return l;
}

static void open_hub(const struct watch_limits *l)
{
    watch_hub_destroy(hub);
    hub = watch_hub_create(kv, l);
    ck_assert_ptr_nonnull(hub);
}

static void setup(void)
{
    ms_err err;
    ar = arena_create(4096);
    be = be_skiplist_open();
    ck_assert_ptr_nonnull(be);
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &txn), MS_OK);
    kv = kv_store_open(txn, &err);
    ck_assert_ptr_nonnull(kv);
    n_recs = 0;
    encodes = releases = 0;
    resp_bytes = 0;
    memset(held, 0, sizeof(held));
    memset(streams, 0, sizeof(streams));
    memset(refuse, 0, sizeof(refuse));
    for (int i = 0; i < N_STREAM; i++)
        stream_ids[i] = i;
    hub = NULL;
    struct watch_limits l = limits();
    open_hub(&l);
}

static void teardown(void)
{
    watch_hub_destroy(hub);
    hub = NULL;
    ck_assert_uint_eq(encodes, releases);
    kv_store_close(kv);
    be_txn_commit(txn);
    be_close(be);
    arena_destroy(ar);
}

static struct watch_stream *stream(int i)
{
    struct watch_stream *st = watch_stream_open(hub, &SINK, NULL, &stream_ids[i]);
    ck_assert_ptr_nonnull(st);
    streams[i] = st;
    return st;
}

/* ---- writes that notify the hub, as srv does ---- */

static void publish(struct kv_write *w)
{
    struct kv_event *ev;
    size_t n;
    kv_write_end(w, &ev, &n);
    if (n)
        watch_hub_notify(hub, kv_current_rev(kv), ev, n);
    arena_reset(ar);
}

static int64_t put(const char *k, const char *v)
{
    struct kv_write *w;
    struct kv_put_resp r;
    struct kv_put_req req = {.key = (const uint8_t *)k,
                             .key_len = strlen(k),
                             .value = (const uint8_t *)v,
                             .value_len = strlen(v)};
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ck_assert_int_eq(kv_write_put(w, &req, &r), MS_OK);
    publish(w);
    return kv_current_rev(kv);
}

static int64_t del(const char *k, const char *end)
{
    struct kv_write *w;
    struct kv_del_resp r;
    struct kv_del_req req = {.span = {.key = (const uint8_t *)k, .key_len = strlen(k)}};
    if (end) {
        req.span.end = (const uint8_t *)end;
        req.span.end_len = strlen(end);
        req.span.end_kind = KV_END_KEY;
    }
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    ck_assert_int_eq(kv_write_del(w, &req, &r), MS_OK);
    publish(w);
    return kv_current_rev(kv);
}

/* One write transaction putting every key of keys (NULL-terminated). */
static int64_t put_many(const char *const *keys)
{
    struct kv_write *w;
    ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
    for (size_t i = 0; keys[i]; i++) {
        struct kv_put_resp r;
        struct kv_put_req req = {.key = (const uint8_t *)keys[i],
                                 .key_len = strlen(keys[i]),
                                 .value = (const uint8_t *)"v",
                                 .value_len = 1};
        ck_assert_int_eq(kv_write_put(w, &req, &r), MS_OK);
    }
    publish(w);
    return kv_current_rev(kv);
}

static void sync_all(void)
{
    for (int i = 0; i < 10000 && watch_hub_pending(hub); i++)
        ck_assert_int_eq(watch_hub_sync(hub, txn), MS_OK);
    ck_assert(!watch_hub_pending(hub));
}

struct wopt {
    const char *key;
    const char *end; /* NULL: single key; "": every key >= key */
    int64_t start;
    int64_t id;
    unsigned filters;
    bool prev_kv;
    bool progress;
};

static void create(struct watch_stream *st, struct wopt o)
{
    struct watch_create_req r = {.start_revision = o.start,
                                 .watch_id = o.id,
                                 .filters = o.filters,
                                 .prev_kv = o.prev_kv,
                                 .progress_notify = o.progress};
    r.span.key = (const uint8_t *)o.key;
    r.span.key_len = strlen(o.key);
    if (o.end) {
        r.span.end = (const uint8_t *)o.end;
        r.span.end_len = strlen(o.end);
        r.span.end_kind = *o.end ? KV_END_KEY : KV_END_ALL;
    }
    watch_create(st, &r);
}

/* The events responses to stream s / watcher id, flattened: "key@rev" words, space
 * separated, DELETE events prefixed with '-'. */
static char *events_of(int s, int64_t id)
{
    static char out[65536];
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n_recs; i++) {
        if (recs[i].stream != s || recs[i].watch_id != id || recs[i].kind != WATCH_RESP_EVENTS)
            continue;
        for (size_t j = 0; j < recs[i].n_ev; j++) {
            const struct rec_ev *e = &recs[i].ev[j];
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s%s@%lld", o ? " " : "",
                                  e->type == KV_EVENT_DELETE ? "-" : "", e->key, (long long)e->mod);
        }
    }
    return out;
}

static size_t count_kind(int s, enum watch_resp_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < n_recs; i++)
        n += recs[i].stream == s && recs[i].kind == k;
    return n;
}

static void assert_stats(size_t watchers, size_t synced, size_t unsynced, size_t victims)
{
    struct watch_stats st;
    watch_hub_stats(hub, &st);
    ck_assert_uint_eq(st.watchers, watchers);
    ck_assert_uint_eq(st.synced, synced);
    ck_assert_uint_eq(st.unsynced, unsynced);
    ck_assert_uint_eq(st.victims, victims);
}

/* ---- matching ---- */

START_TEST(match_single_range_prefix_all)
{
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "a"});                /* id 0: single key */
    create(st, (struct wopt){.key = "a", .end = "c"});    /* id 1: [a, c) */
    create(st, (struct wopt){.key = "k/", .end = "k0"});  /* id 2: prefix k/ */
    create(st, (struct wopt){.key = "", .end = ""});      /* id 3: every key */
    create(st, (struct wopt){.key = "b", .end = ""});     /* id 4: every key >= b */
    create(st, (struct wopt){.key = "\x01", .end = "a"}); /* id 5: [\1, a) */
    ck_assert_uint_eq(count_kind(0, WATCH_RESP_CREATED), 6);
    assert_stats(6, 6, 0, 0);
    put("a", "1");   /* 2 */
    put("ab", "1");  /* 3 */
    put("b", "1");   /* 4 */
    put("c", "1");   /* 5 */
    put("k/x", "1"); /* 6 */
    put("k0", "1");  /* 7 */
    del("a", NULL);  /* 8 */
    ck_assert_str_eq(events_of(0, 0), "a@2 -a@8");
    ck_assert_str_eq(events_of(0, 1), "a@2 ab@3 b@4 -a@8");
    ck_assert_str_eq(events_of(0, 2), "k/x@6");
    ck_assert_str_eq(events_of(0, 3), "a@2 ab@3 b@4 c@5 k/x@6 k0@7 -a@8");
    ck_assert_str_eq(events_of(0, 4), "b@4 c@5 k/x@6 k0@7");
    ck_assert_str_eq(events_of(0, 5), "");
    /* Every live response carries the event's revision. */
    for (size_t i = 0; i < n_recs; i++)
        if (recs[i].kind == WATCH_RESP_EVENTS)
            ck_assert_int_eq(recs[i].revision, recs[i].ev[0].mod);
}
END_TEST

START_TEST(filters_and_prev_kv)
{
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "a", .filters = WATCH_FILTER_NOPUT});
    create(st, (struct wopt){.key = "a", .filters = WATCH_FILTER_NODELETE, .prev_kv = true});
    create(st, (struct wopt){.key = "a", .filters = WATCH_FILTER_NOPUT | WATCH_FILTER_NODELETE});
    put("a", "1"); /* 2 */
    put("a", "2"); /* 3 */
    del("a", NULL);
    ck_assert_str_eq(events_of(0, 0), "-a@4");
    ck_assert_str_eq(events_of(0, 1), "a@2 a@3");
    ck_assert_str_eq(events_of(0, 2), "");
    /* prev_kv: none on creation, the previous version on the update. */
    size_t seen = 0;
    for (size_t i = 0; i < n_recs; i++) {
        if (recs[i].kind != WATCH_RESP_EVENTS || recs[i].watch_id != 1)
            continue;
        ck_assert_int_eq(recs[i].ev[0].prev_mod, seen ? 2 : 0);
        seen++;
    }
    ck_assert_uint_eq(seen, 2);
}
END_TEST

START_TEST(txn_one_response_and_shared_slots)
{
    struct watch_stream *s0 = stream(0), *s1 = stream(1);
    create(s0, (struct wopt){.key = "", .end = ""}); /* all */
    create(s1, (struct wopt){.key = "", .end = ""}); /* all, other stream */
    create(s1, (struct wopt){.key = "x"});           /* one key of the txn */
    create(s0, (struct wopt){.key = "", .end = "", .prev_kv = true});
    put("x", "0"); /* 2 */
    n_recs = 0;
    encodes = releases = 0;
    const char *keys[] = {"x", "y", "z", NULL};
    int64_t rev = put_many(keys);
    ck_assert_int_eq(rev, 3);
    ck_assert_str_eq(events_of(0, 0), "x@3 y@3 z@3");
    ck_assert_str_eq(events_of(1, 0), "x@3 y@3 z@3");
    ck_assert_str_eq(events_of(1, 1), "x@3");
    ck_assert_str_eq(events_of(0, 1), "x@3 y@3 z@3");
    /* Four responses, three distinct encodings: all events, all events with prev_kv, x. */
    ck_assert_uint_eq(n_recs, 4);
    ck_assert_uint_eq(encodes, 3);
    ck_assert_uint_eq(releases, 3);
    size_t cached = 0;
    for (size_t i = 0; i < n_recs; i++)
        cached += recs[i].cached;
    ck_assert_uint_eq(cached, 1);
    for (size_t i = 0; i < n_recs; i++) {
        if (recs[i].stream == 0 && recs[i].watch_id == 1)
            ck_assert_int_eq(recs[i].ev[0].prev_mod, 2);
        if (recs[i].stream == 0 && recs[i].watch_id == 0)
            ck_assert_int_eq(recs[i].ev[0].prev_mod, 0);
    }
}
END_TEST

START_TEST(sinks_have_their_own_slots)
{
    /* Two front doors in one hub: each sink encodes the batch's events once for its streams
     * and never sees the other's encoding. */
    static int second = 1;
    struct watch_stream *s0 = stream(0), *s1 = stream(1);
    struct watch_stream *s2 = watch_stream_open(hub, &SINK, &second, &stream_ids[2]);
    struct watch_stream *s3 = watch_stream_open(hub, &SINK, &second, &stream_ids[3]);
    ck_assert_ptr_nonnull(s2);
    ck_assert_ptr_nonnull(s3);
    struct watch_stream *all[] = {s0, s1, s2, s3};
    for (int i = 0; i < 4; i++)
        create(all[i], (struct wopt){.key = "k"});
    n_recs = 0;
    encodes = releases = 0;
    put("k", "v"); /* 2 */
    ck_assert_uint_eq(n_recs, 4);
    ck_assert_uint_eq(encodes, 2);
    ck_assert_uint_eq(releases, 2);
    for (size_t i = 0; i < n_recs; i++) {
        ck_assert_int_eq(recs[i].sink, recs[i].stream >= 2);
        for (size_t j = 0; j < n_recs; j++)
            ck_assert((recs[i].slot == recs[j].slot) == (recs[i].sink == recs[j].sink));
    }
    /* Past WATCH_MAX_SINKS distinct sinks, no stream opens; a freed slot is taken again. */
    static int more[WATCH_MAX_SINKS];
    struct watch_stream *x[WATCH_MAX_SINKS];
    for (int i = 0; i < WATCH_MAX_SINKS - 2; i++) {
        x[i] = watch_stream_open(hub, &SINK, &more[i], &stream_ids[4]);
        ck_assert_ptr_nonnull(x[i]);
    }
    ck_assert_ptr_null(watch_stream_open(hub, &SINK, &more[WATCH_MAX_SINKS - 1], &stream_ids[4]));
    watch_stream_close(x[0]);
    x[0] = watch_stream_open(hub, &SINK, &more[WATCH_MAX_SINKS - 1], &stream_ids[4]);
    ck_assert_ptr_nonnull(x[0]);
    for (int i = 0; i < WATCH_MAX_SINKS - 2; i++)
        watch_stream_close(x[i]);
}
END_TEST

/* ---- ids, cancel, create failures, limits ---- */

START_TEST(ids_cancel_and_failures)
{
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "a"});          /* 0 */
    create(st, (struct wopt){.key = "a"});          /* 1 */
    create(st, (struct wopt){.key = "a", .id = 5}); /* 5 */
    create(st, (struct wopt){.key = "a", .id = 5}); /* duplicate */
    create(st, (struct wopt){.key = "a", .id = 2}); /* 2 */
    create(st, (struct wopt){.key = "a"});          /* 3: 2 is taken */
    create(st, (struct wopt){.key = "b", .end = "a"});
    create(st, (struct wopt){.key = "a", .end = "a"});
    ck_assert(watch_cancel(st, 0));
    ck_assert(!watch_cancel(st, 77));
    create(st, (struct wopt){.key = "a"}); /* 4: ids count up, 0 is not reused yet */
    int64_t want_ids[] = {0, 1, 5, -1, 2, 3, -1, -1, 0, 4};
    enum watch_resp_kind want_kind[] = {
        WATCH_RESP_CREATED,  WATCH_RESP_CREATED, WATCH_RESP_CREATED,       WATCH_RESP_CREATE_FAILED,
        WATCH_RESP_CREATED,  WATCH_RESP_CREATED, WATCH_RESP_CREATE_FAILED, WATCH_RESP_CREATE_FAILED,
        WATCH_RESP_CANCELED, WATCH_RESP_CREATED};
    ck_assert_uint_eq(n_recs, 10);
    for (size_t i = 0; i < n_recs; i++) {
        ck_assert_int_eq(recs[i].watch_id, want_ids[i]);
        ck_assert_int_eq(recs[i].kind, want_kind[i]);
        ck_assert_int_eq(recs[i].revision, 1);
    }
    ck_assert_str_eq(recs[3].reason, WATCH_REASON_DUP_ID);
    ck_assert_str_eq(recs[6].reason, WATCH_REASON_EMPTY_RANGE);
    ck_assert_str_eq(recs[7].reason, WATCH_REASON_EMPTY_RANGE);
    assert_stats(5, 5, 0, 0);
    /* Closing the stream frees everything at once. */
    watch_stream_close(st);
    assert_stats(0, 0, 0, 0);
}
END_TEST

START_TEST(limits_per_stream_and_total)
{
    struct watch_limits l = limits();
    l.max_watchers = 5;
    l.max_watchers_per_stream = 3;
    open_hub(&l);
    struct watch_stream *s0 = stream(0), *s1 = stream(1);
    for (int i = 0; i < 4; i++)
        create(s0, (struct wopt){.key = "a"});
    ck_assert_uint_eq(count_kind(0, WATCH_RESP_CREATED), 3);
    ck_assert_str_eq(recs[n_recs - 1].reason, WATCH_REASON_STREAM_FULL);
    for (int i = 0; i < 3; i++)
        create(s1, (struct wopt){.key = "a"});
    ck_assert_uint_eq(count_kind(1, WATCH_RESP_CREATED), 2);
    ck_assert_str_eq(recs[n_recs - 1].reason, WATCH_REASON_TOO_MANY);
    assert_stats(5, 5, 0, 0);
}
END_TEST

/* ---- history, slices, compaction ---- */

START_TEST(history_in_slices)
{
    struct watch_limits l = limits();
    l.sync_events = 10;
    l.sync_slices = 2;
    open_hub(&l);
    char k[16];
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "k%02d", i % 7);
        put(k, "v"); /* revisions 2..61 */
    }
    const char *keys[] = {"t1", "t2", "t3", NULL};
    for (int i = 0; i < 5; i++)
        put_many(keys); /* 62..66, three events each */
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "", .end = "", .start = 2});
    create(st, (struct wopt){.key = "t1", .start = 40}); /* id 1 */
    create(st, (struct wopt){.key = "k0", .end = "k1", .start = 60, .prev_kv = true});
    assert_stats(3, 0, 3, 0);
    /* One round reads at most two slices of ten events. */
    ck_assert_int_eq(watch_hub_sync(hub, txn), MS_OK);
    size_t ev_total = 0;
    for (size_t i = 0; i < n_recs; i++)
        ev_total += recs[i].kind == WATCH_RESP_EVENTS ? recs[i].n_ev : 0;
    ck_assert_uint_eq(ev_total, 20);
    sync_all();
    assert_stats(3, 3, 0, 0);
    /* Every event once, in order; responses never split a revision and carry the current
     * revision in their header. */
    int64_t last = 0;
    size_t n = 0;
    for (size_t i = 0; i < n_recs; i++) {
        if (recs[i].kind != WATCH_RESP_EVENTS || recs[i].watch_id != 0)
            continue;
        ck_assert_int_eq(recs[i].revision, 66);
        ck_assert_uint_le(recs[i].n_ev, 12);
        for (size_t j = 0; j < recs[i].n_ev; j++) {
            if (j == 0)
                ck_assert_int_gt(recs[i].ev[j].mod, last); /* a revision is never split */
            else
                ck_assert_int_ge(recs[i].ev[j].mod, last);
            last = recs[i].ev[j].mod;
            n++;
        }
    }
    ck_assert_uint_eq(n, 75);
    ck_assert_str_eq(events_of(0, 1), "t1@62 t1@63 t1@64 t1@65 t1@66");
    /* History prev_kv: revisions 60 and 61 rewrite k02 and k03, whose previous versions are
     * read from the store. */
    size_t with_prev = 0;
    for (size_t i = 0; i < n_recs; i++)
        if (recs[i].kind == WATCH_RESP_EVENTS && recs[i].watch_id == 2)
            for (size_t j = 0; j < recs[i].n_ev; j++) {
                ck_assert_int_gt(recs[i].ev[j].prev_mod, 0);
                ck_assert_int_lt(recs[i].ev[j].prev_mod, recs[i].ev[j].mod);
                with_prev++;
            }
    ck_assert_uint_eq(with_prev, 2);
    /* Synced now: live events follow. */
    put("t1", "x");
    ck_assert_str_eq(events_of(0, 1), "t1@62 t1@63 t1@64 t1@65 t1@66 t1@67");
}
END_TEST

START_TEST(history_slices_bounded_by_bytes)
{
    struct watch_limits l = limits();
    l.sync_bytes = 25000;
    l.sync_slices = 1;
    open_hub(&l);
    static char big[10001];
    memset(big, 'v', 10000);
    for (int i = 0; i < 20; i++)
        put("big", big); /* 2..21, 10 kB each */
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "big", .start = 2});
    size_t rounds = 0;
    while (watch_hub_pending(hub)) {
        ck_assert_int_eq(watch_hub_sync(hub, txn), MS_OK);
        ck_assert_uint_lt(++rounds, 100);
    }
    size_t responses = 0, events = 0;
    for (size_t i = 0; i < n_recs; i++) {
        if (recs[i].kind != WATCH_RESP_EVENTS)
            continue;
        ck_assert_uint_le(recs[i].n_ev, 3); /* the byte budget is passed by one event at most */
        responses++;
        events += recs[i].n_ev;
    }
    ck_assert_uint_eq(events, 20);
    ck_assert_uint_ge(responses, 7);
}
END_TEST

/* A large value owed to many watchers is handed out a few watchers per round (the rest are
 * served in later rounds, each once), so one round's copying stays bounded. */
START_TEST(history_fed_bounded_by_bytes)
{
    struct watch_limits l = limits();
    l.sync_out_bytes = 25000;
    open_hub(&l);
    static char big[10001];
    memset(big, 'v', 10000);
    put("big", big); /* 2 */
    put("big", big); /* 3 */
    for (int i = 0; i < N_STREAM; i++)
        create(stream(i), (struct wopt){.key = "big", .start = 2});
    ck_assert_int_eq(watch_hub_sync(hub, txn), MS_OK);
    size_t fed = 0;
    for (int i = 0; i < N_STREAM; i++)
        fed += count_kind(i, WATCH_RESP_EVENTS) > 0;
    /* A slice holds both revisions (20 kB): one watcher fits in 25 kB, and the next slice read
     * while room is left goes to one more (the bound is soft by one watcher). */
    ck_assert_uint_eq(fed, 2);
    sync_all();
    for (int i = 0; i < N_STREAM; i++)
        ck_assert_str_eq(events_of(i, 0), "big@2 big@3");
    assert_stats(N_STREAM, N_STREAM, 0, 0);
}
END_TEST

START_TEST(future_and_negative_start)
{
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "a", .start = 4});  /* id 0, future: synced */
    create(st, (struct wopt){.key = "a", .start = -5}); /* id 1 */
    create(st, (struct wopt){.key = "a", .start = -1}); /* id 2: -1 is etcd's floor */
    assert_stats(3, 1, 2, 0);
    sync_all();
    ck_assert_uint_eq(count_kind(0, WATCH_RESP_COMPACTED), 1);
    for (size_t i = 0; i < n_recs; i++)
        if (recs[i].kind == WATCH_RESP_COMPACTED) {
            ck_assert_int_eq(recs[i].watch_id, 1);
            ck_assert_int_eq(recs[i].compact, -1);
        }
    put("a", "1"); /* 2 */
    put("a", "2"); /* 3 */
    put("a", "3"); /* 4 */
    ck_assert_str_eq(events_of(0, 0), "a@4");
    ck_assert_str_eq(events_of(0, 2), "a@2 a@3 a@4");
    /* The compacted watcher keeps its id until cancelled (etcd). */
    assert_stats(3, 2, 0, 0);
    ck_assert(watch_cancel(st, 1));
    assert_stats(2, 2, 0, 0);
}
END_TEST

/* Several writes delivered as one batch (as the server does at the end of an apply batch):
 * one response per watcher, at the batch's last revision, with each event at its own
 * revision; a watcher whose start revision falls inside the batch gets the events from it,
 * also when its stream refuses and it catches up from history. */
START_TEST(batch_of_revisions)
{
    struct watch_stream *s0 = stream(0), *s1 = stream(1);
    create(s0, (struct wopt){.key = "a"});                        /* id 0 */
    create(s0, (struct wopt){.key = "a", .end = "", .start = 3}); /* id 1: from 3, in the batch */
    create(s1, (struct wopt){.key = "a", .end = "", .start = 3}); /* id 0 of s1, refused */
    create(s1, (struct wopt){.key = "b"});                        /* id 1 of s1, refused */
    struct kv_event batch[8];
    size_t n = 0;
    const char *keys[] = {"a", "b", "a", "c"}; /* revisions 2, 3, 4, 5 */
    for (size_t i = 0; i < 4; i++) {
        struct kv_write *w;
        struct kv_put_resp r;
        struct kv_put_req req = {.key = (const uint8_t *)keys[i],
                                 .key_len = 1,
                                 .value = (const uint8_t *)"v",
                                 .value_len = 1};
        ck_assert_int_eq(kv_write_begin(kv, txn, ar, &w), MS_OK);
        ck_assert_int_eq(kv_write_put(w, &req, &r), MS_OK);
        struct kv_event *ev;
        size_t k;
        kv_write_end(w, &ev, &k);
        ck_assert_uint_eq(k, 1);
        batch[n++] = ev[0]; /* the arena keeps the bytes until the reset below */
    }
    refuse[1] = true;
    size_t before = n_recs;
    watch_hub_notify(hub, kv_current_rev(kv), batch, n);
    arena_reset(ar);
    ck_assert_uint_eq(n_recs - before, 2); /* one response each for s0's watchers */
    for (size_t i = before; i < n_recs; i++)
        ck_assert_int_eq(recs[i].revision, 5);
    ck_assert_str_eq(events_of(0, 0), "a@2 a@4");
    ck_assert_str_eq(events_of(0, 1), "b@3 a@4 c@5");
    assert_stats(4, 2, 0, 2);
    refuse[1] = false;
    watch_stream_writable(s1);
    sync_all();
    ck_assert_str_eq(events_of(1, 0), "b@3 a@4 c@5");
    ck_assert_str_eq(events_of(1, 1), "b@3");
    assert_stats(4, 4, 0, 0);
}
END_TEST

START_TEST(compacted_watchers)
{
    for (int i = 0; i < 10; i++)
        put("a", "v"); /* 2..11 */
    ck_assert_int_eq(kv_compact(kv, txn, 6), MS_OK);
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "a", .start = 5, .id = 3}); /* behind */
    create(st, (struct wopt){.key = "a", .start = 6, .id = 4}); /* at the compaction point */
    sync_all();
    ck_assert_uint_eq(count_kind(0, WATCH_RESP_COMPACTED), 1);
    ck_assert_str_eq(events_of(0, 3), "");
    ck_assert_str_eq(events_of(0, 4), "a@6 a@7 a@8 a@9 a@10 a@11");
    /* A duplicate of the compacted id is still refused. */
    create(st, (struct wopt){.key = "a", .id = 3});
    ck_assert_uint_eq(count_kind(0, WATCH_RESP_CREATE_FAILED), 1);
}
END_TEST

/* ---- victims ---- */

START_TEST(victim_catches_up_in_order)
{
    struct watch_stream *s0 = stream(0), *s1 = stream(1);
    create(s0, (struct wopt){.key = "k", .end = "l"});
    create(s0, (struct wopt){.key = "k1"});
    create(s1, (struct wopt){.key = "k", .end = "l"});
    put("k1", "a"); /* 2 */
    refuse[0] = true;
    put("k1", "b"); /* 3: stream 0 refuses, both its watchers become victims */
    assert_stats(3, 1, 0, 2);
    put("k2", "c"); /* 4 */
    const char *keys[] = {"k1", "k3", NULL};
    put_many(keys); /* 5 */
    /* Still blocked: nothing to sync. */
    ck_assert(!watch_hub_pending(hub));
    watch_stream_writable(s0);
    ck_assert(watch_hub_pending(hub));
    /* The sink still refuses: they become victims again, nothing is lost. */
    sync_all();
    assert_stats(3, 1, 0, 2);
    refuse[0] = false;
    watch_stream_writable(s0);
    sync_all();
    assert_stats(3, 3, 0, 0);
    put("k1", "d"); /* 6 */
    ck_assert_str_eq(events_of(0, 0), "k1@2 k1@3 k2@4 k1@5 k3@5 k1@6");
    ck_assert_str_eq(events_of(0, 1), "k1@2 k1@3 k1@5 k1@6");
    ck_assert_str_eq(events_of(1, 0), "k1@2 k1@3 k2@4 k1@5 k3@5 k1@6");
    struct watch_stats ws;
    watch_hub_stats(hub, &ws);
    ck_assert_uint_ge(ws.victimized, 4);
}
END_TEST

START_TEST(victim_behind_compaction)
{
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "a"});
    put("a", "1"); /* 2 */
    refuse[0] = true;
    put("a", "2"); /* 3 */
    put("a", "3"); /* 4 */
    ck_assert_int_eq(kv_compact(kv, txn, 4), MS_OK);
    refuse[0] = false;
    watch_stream_writable(st);
    sync_all();
    ck_assert_str_eq(events_of(0, 0), "a@2");
    ck_assert_uint_eq(count_kind(0, WATCH_RESP_COMPACTED), 1);
    ck_assert_int_eq(recs[n_recs - 1].compact, 4);
    assert_stats(1, 0, 0, 0);
    /* Closing with a compacted watcher frees it too. */
    watch_stream_close(st);
    assert_stats(0, 0, 0, 0);
}
END_TEST

START_TEST(close_in_every_group)
{
    struct watch_stream *st = stream(0), *other = stream(1);
    put("a", "1");
    create(st, (struct wopt){.key = "a"});                   /* synced */
    create(st, (struct wopt){.key = "a", .start = 1});       /* unsynced */
    create(st, (struct wopt){.key = "b", .end = "c"});       /* synced, range */
    create(st, (struct wopt){.key = "a", .progress = true}); /* synced, progress list */
    create(other, (struct wopt){.key = "a"});
    refuse[0] = true;
    put("a", "2");
    watch_stream_close(st);
    assert_stats(1, 1, 0, 0);
    watch_hub_progress_tick(hub);
    put("b", "x");
    ck_assert_str_eq(events_of(1, 0), "a@3");
    ck_assert_int_eq(watch_index_check(&hub->ix), 0);
}
END_TEST

/* ---- the server-wide budget of buffered output ---- */

static size_t hub_buffered(void)
{
    struct watch_stats ws;
    watch_hub_stats(hub, &ws);
    return ws.buffered;
}

START_TEST(buffered_is_the_sum_and_close_releases)
{
    struct watch_stream *a = stream(0), *b = stream(1), *c = stream(2);
    ck_assert_uint_eq(hub_buffered(), 0);
    watch_stream_set_buffered(a, 1000);
    watch_stream_set_buffered(b, 5000);
    watch_stream_set_buffered(c, 7);
    ck_assert_uint_eq(hub_buffered(), 6007);
    watch_stream_set_buffered(b, 2000); /* written: the new level replaces the old */
    watch_stream_set_buffered(a, 1000); /* unchanged */
    ck_assert_uint_eq(hub_buffered(), 3007);
    watch_stream_close(b); /* freed with its output */
    ck_assert_uint_eq(hub_buffered(), 1007);
    watch_stream_set_buffered(a, 0);
    ck_assert_uint_eq(hub_buffered(), 7);
    watch_stream_close(c);
    watch_stream_close(a);
    ck_assert_uint_eq(hub_buffered(), 0);
}
END_TEST

START_TEST(admission_share_half_and_cap)
{
    struct watch_limits l = limits();
    l.total_buffer_bytes = 1000;
    open_hub(&l);
    struct watch_stream *s[4];
    for (int i = 0; i < 4; i++)
        s[i] = stream(i); /* share: 250 each */
    /* Nothing buffered: anything goes, even more than the budget (one at a time). */
    ck_assert(watch_stream_admits(s[0], 5000));
    watch_stream_set_buffered(s[0], 400);
    /* Over its share, s0 may go on only while the total stays within half the budget. */
    ck_assert(watch_stream_admits(s[0], 100));
    ck_assert(!watch_stream_admits(s[0], 101));
    /* Within its share, s1 may go beyond half the budget. */
    ck_assert(watch_stream_admits(s[1], 250));
    ck_assert(!watch_stream_admits(s[1], 251));
    /* The budget itself is a hard cap, share or not. */
    watch_stream_set_buffered(s[1], 300);
    watch_stream_set_buffered(s[2], 250);
    ck_assert(watch_stream_admits(s[3], 50));
    ck_assert(!watch_stream_admits(s[3], 51));
    watch_stream_set_buffered(s[3], 200); /* 1150: over the budget (control responses) */
    ck_assert(!watch_stream_admits(s[3], 1));
    /* Fewer streams, larger shares. */
    watch_stream_close(s[3]);
    watch_stream_close(s[2]);
    ck_assert(watch_stream_admits(s[1], 200)); /* share 500: 300 + 200 */
    ck_assert(!watch_stream_admits(s[1], 201));
    /* Without a budget everything is admitted. */
    l.total_buffer_bytes = 0;
    open_hub(&l);
    struct watch_stream *x = stream(0);
    watch_stream_set_buffered(x, (size_t)1 << 40);
    ck_assert(watch_stream_admits(x, (size_t)1 << 40));
}
END_TEST

START_TEST(over_budget_victims_catch_up)
{
    struct watch_limits l = limits();
    l.total_buffer_bytes = 1000;
    open_hub(&l);
    resp_bytes = 300;
    struct watch_stream *a = stream(0), *b = stream(1);
    create(a, (struct wopt){.key = "k"});
    create(b, (struct wopt){.key = "k"});
    put("k", "1"); /* 2: a takes 300 (T 0), b 300 (its share) */
    ck_assert_uint_eq(hub_buffered(), 600);
    put("k", "2"); /* 3: both over their share and over half the budget */
    put("k", "3"); /* 4 */
    assert_stats(2, 0, 0, 2);
    ck_assert_uint_eq(hub_buffered(), 600);
    /* Both wait for the budget; nothing fits yet. */
    ck_assert(watch_hub_waiting(hub));
    ck_assert(watch_hub_wake(hub, SIZE_MAX));
    assert_stats(2, 0, 0, 2);
    /* a's reader takes its output; a catches up from history, b still waits. */
    held[0] = 0;
    watch_stream_set_buffered(a, 0);
    ck_assert(watch_hub_wake(hub, SIZE_MAX)); /* a fits (its 300 reserved), b does not */
    assert_stats(2, 0, 1, 1);
    sync_all();
    ck_assert_str_eq(events_of(0, 0), "k@2 k@3 k@4");
    ck_assert_uint_eq(hub_buffered(), 600);
    held[1] = 0;
    watch_stream_set_buffered(b, 0);
    watch_hub_wake(hub, SIZE_MAX);
    sync_all();
    ck_assert_str_eq(events_of(1, 0), "k@2 k@3 k@4");
    assert_stats(2, 2, 0, 0);
    watch_stream_close(a);
    watch_stream_close(b);
    ck_assert_uint_eq(hub_buffered(), 0);
}
END_TEST

START_TEST(full_stream_waits_for_its_drain)
{
    /* A stream holding its limit refuses events until its output drains under a quarter of
     * it; watch_hub_wake then lets it catch up. The budget is not involved. */
    struct watch_limits l = limits();
    l.stream_buffer_bytes = 1000;
    l.total_buffer_bytes = 0;
    open_hub(&l);
    resp_bytes = 600;
    struct watch_stream *a = stream(0), *b = stream(1);
    create(a, (struct wopt){.key = "k"});
    create(b, (struct wopt){.key = "k"});
    put("k", "1"); /* 2: both take 600 */
    put("k", "2"); /* 3: both take 600 more: 1200 each */
    put("k", "3"); /* 4: both full */
    assert_stats(2, 0, 0, 2);
    ck_assert(!watch_hub_waiting(hub));
    held[0] = 300; /* over a quarter: still waiting */
    watch_stream_set_buffered(a, held[0]);
    ck_assert(!watch_hub_waiting(hub));
    held[0] = 250;
    watch_stream_set_buffered(a, held[0]);
    ck_assert(watch_hub_waiting(hub));
    assert_stats(2, 0, 0, 2); /* nothing moves before the wake */
    ck_assert(!watch_hub_wake(hub, 0));
    assert_stats(2, 0, 1, 1);
    sync_all();
    ck_assert_str_eq(events_of(0, 0), "k@2 k@3 k@4");
    ck_assert_str_eq(events_of(1, 0), "k@2 k@3");
    /* a closed stream leaves no wait behind */
    held[1] = 0;
    watch_stream_set_buffered(b, 0);
    watch_stream_close(b);
    ck_assert(!watch_hub_waiting(hub));
    watch_stream_close(a);
}
END_TEST

/* ---- progress ---- */

START_TEST(progress_request_deferred_until_synced)
{
    struct watch_stream *st = stream(0);
    put("a", "1");
    create(st, (struct wopt){.key = "a"});
    watch_progress(st);
    ck_assert_int_eq(recs[n_recs - 1].kind, WATCH_RESP_PROGRESS);
    ck_assert_int_eq(recs[n_recs - 1].watch_id, -1);
    ck_assert_int_eq(recs[n_recs - 1].revision, 2);
    create(st, (struct wopt){.key = "a", .start = 2});
    size_t before = n_recs;
    watch_progress(st);
    ck_assert_uint_eq(n_recs, before); /* a watcher is catching up */
    sync_all();
    /* The history comes first, then the progress response. */
    ck_assert_int_eq(recs[n_recs - 2].kind, WATCH_RESP_EVENTS);
    ck_assert_int_eq(recs[n_recs - 1].kind, WATCH_RESP_PROGRESS);
    ck_assert_int_eq(recs[n_recs - 1].watch_id, -1);
    /* Cancelling the last watcher that is behind releases it too. */
    refuse[0] = true;
    put("a", "2");
    before = n_recs;
    watch_progress(st);
    ck_assert_uint_eq(n_recs, before);
    refuse[0] = false;
    ck_assert(watch_cancel(st, 0));
    ck_assert(watch_cancel(st, 1));
    ck_assert_int_eq(recs[n_recs - 1].kind, WATCH_RESP_PROGRESS);
}
END_TEST

START_TEST(progress_notify_ticks)
{
    struct watch_stream *st = stream(0);
    create(st, (struct wopt){.key = "a", .progress = true, .id = 7});
    create(st, (struct wopt){.key = "b", .progress = true});
    create(st, (struct wopt){.key = "c"});
    n_recs = 0;
    watch_hub_progress_tick(hub);
    ck_assert_uint_eq(n_recs, 2);
    put("a", "1");
    n_recs = 0;
    watch_hub_progress_tick(hub); /* watcher 7 just got an event: elided */
    ck_assert_uint_eq(n_recs, 1);
    ck_assert_int_eq(recs[0].watch_id, 0);
    ck_assert_int_eq(recs[0].revision, 2);
    n_recs = 0;
    watch_hub_progress_tick(hub);
    ck_assert_uint_eq(n_recs, 2);
}
END_TEST

/* ---- the interval tree against brute force ---- */

struct stab_ctx {
    struct watch_set *found[512];
    size_t n;
};

static void on_stab(void *arg, struct watch_set *s)
{
    struct stab_ctx *c = arg;
    ck_assert_uint_lt(c->n, 512);
    c->found[c->n++] = s;
}

static uint64_t rnd_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void rnd_key(char *k, size_t *n)
{
    *n = 1 + rnd() % 3;
    for (size_t i = 0; i < *n; i++)
        k[i] = (char)('a' + rnd() % 4);
}

static int cmpb(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = memcmp(a, b, n);
    return c ? c : (an > bn) - (an < bn);
}

START_TEST(interval_tree_vs_brute_force)
{
    struct watch_index ix;
    memset(&ix, 0, sizeof(ix));
    enum { N = 300 };
    struct {
        char k[8], e[8];
        size_t kn, en;
        enum kv_end_kind kind;
        struct watch_set *s;
    } sets[N];
    size_t n = 0;
    for (int round = 0; round < 4000; round++) {
        if (n < N && (n == 0 || rnd() % 3 != 0)) {
            /* insert a random non-empty interval (or find the existing identical one) */
            rnd_key(sets[n].k, &sets[n].kn);
            sets[n].kind = rnd() % 5 == 0 ? KV_END_ALL : rnd() % 4 == 0 ? KV_END_NONE : KV_END_KEY;
            sets[n].en = 0;
            if (sets[n].kind == KV_END_KEY) {
                rnd_key(sets[n].e, &sets[n].en);
                int c = cmpb(sets[n].k, sets[n].kn, sets[n].e, sets[n].en);
                if (c > 0) {
                    char t[8];
                    size_t tn = sets[n].kn;
                    memcpy(t, sets[n].k, tn);
                    memcpy(sets[n].k, sets[n].e, sets[n].en);
                    sets[n].kn = sets[n].en;
                    memcpy(sets[n].e, t, tn);
                    sets[n].en = tn;
                } else if (c == 0) {
                    sets[n].e[sets[n].en++] = 'a'; /* key + "a" > key */
                }
            }
            struct watch_set *s =
                watch_index_get(&ix, (const uint8_t *)sets[n].k, sets[n].kn,
                                (const uint8_t *)sets[n].e, sets[n].en, sets[n].kind);
            ck_assert_ptr_nonnull(s);
            bool dup = false;
            for (size_t i = 0; i < n; i++)
                dup |= sets[i].s == s;
            if (dup)
                continue;
            sets[n].s = s;
            s->n = 1; /* pretend it has a member */
            n++;
        } else {
            size_t i = (size_t)(rnd() % n);
            watch_index_drop(&ix, sets[i].s);
            sets[i] = sets[--n];
        }
        ck_assert_int_ge(watch_index_check(&ix), 0);
        /* stab a random point and compare */
        char p[4];
        size_t pn;
        rnd_key(p, &pn);
        struct stab_ctx c = {.n = 0};
        watch_index_match(&ix, (const uint8_t *)p, pn, on_stab, &c);
        size_t want = 0;
        for (size_t i = 0; i < n; i++) {
            bool in;
            if (sets[i].kind == KV_END_NONE)
                in = cmpb(p, pn, sets[i].k, sets[i].kn) == 0;
            else if (sets[i].kind == KV_END_ALL)
                in = cmpb(p, pn, sets[i].k, sets[i].kn) >= 0;
            else
                in = cmpb(p, pn, sets[i].k, sets[i].kn) >= 0 &&
                     cmpb(p, pn, sets[i].e, sets[i].en) < 0;
            if (!in)
                continue;
            want++;
            bool found = false;
            for (size_t j = 0; j < c.n; j++)
                found |= c.found[j] == sets[i].s;
            ck_assert_msg(found, "round %d: interval %zu missing", round, i);
        }
        ck_assert_uint_eq(c.n, want);
    }
    watch_index_fini(&ix);
}
END_TEST

START_TEST(hash_table_grows_and_removes)
{
    struct watch_htab t;
    memset(&t, 0, sizeof(t));
    enum { N = 5000 };
    static struct watch_hnode nodes[N];
    for (size_t i = 0; i < N; i++) {
        nodes[i].hash = watch_hash_bytes((const uint8_t *)&i, sizeof(i), 1) % 1000;
        ck_assert(watch_htab_insert(&t, &nodes[i]));
    }
    ck_assert_uint_eq(t.n, N);
    for (size_t i = 0; i < N; i += 2)
        watch_htab_remove(&t, &nodes[i]);
    for (size_t i = 0; i < N; i++) {
        bool found = false;
        for (struct watch_hnode *x = watch_htab_first(&t, nodes[i].hash); x; x = watch_htab_next(x))
            found |= x == &nodes[i];
        ck_assert(found == (i % 2 == 1));
    }
    watch_htab_fini(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("watch");
    struct {
        const char *name;
        const TTest *tests[7];
    } cases[] = {
        {"match",
         {match_single_range_prefix_all, filters_and_prev_kv, txn_one_response_and_shared_slots,
          sinks_have_their_own_slots, NULL}},
        {"ids", {ids_cancel_and_failures, limits_per_stream_and_total, NULL}},
        {"history",
         {history_in_slices, history_slices_bounded_by_bytes, history_fed_bounded_by_bytes,
          future_and_negative_start, batch_of_revisions, compacted_watchers, NULL}},
        {"groups",
         {victim_catches_up_in_order, victim_behind_compaction, close_in_every_group, NULL}},
        {"budget",
         {buffered_is_the_sum_and_close_releases, admission_share_half_and_cap,
          over_budget_victims_catch_up, full_stream_waits_for_its_drain, NULL}},
        {"progress", {progress_request_deferred_until_synced, progress_notify_ticks, NULL}},
        {"index", {interval_tree_vs_brute_force, hash_table_grows_and_removes, NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        for (int j = 0; cases[i].tests[j]; j++)
            tcase_add_test(tc, cases[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}
