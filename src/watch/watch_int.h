/* watch_int.h - the hub's structures and the functions shared by the watch_*.c files
 * (private to src/watch). */
#ifndef METASTORE_WATCH_INT_H
#define METASTORE_WATCH_INT_H

#include "metastore/arena.h"
#include "metastore/skiplist.h" /* sl_keycmp: the byte-string order of keys */
#include "metastore/watch.h"

/* ---- intrusive chained hash table (watch_index.c) ---- */

struct watch_hnode {
    struct watch_hnode *next;
    uint64_t hash;
};

struct watch_htab {
    struct watch_hnode **b; /* nb buckets, nb a power of two (0 before the first insert) */
    size_t nb;
    size_t n;
};

uint64_t watch_hash_bytes(const uint8_t *p, size_t n, uint64_t seed);
/* Insert node (node->hash set by the caller). False on OOM (nothing changed). */
bool watch_htab_insert(struct watch_htab *t, struct watch_hnode *node);
void watch_htab_remove(struct watch_htab *t, struct watch_hnode *node);
/* First node with this hash (walk on with watch_htab_next), NULL if none. */
struct watch_hnode *watch_htab_first(const struct watch_htab *t, uint64_t hash);
struct watch_hnode *watch_htab_next(const struct watch_hnode *node);
void watch_htab_fini(struct watch_htab *t);

/* ---- key sets and the interval tree (watch_index.c) ---- */

struct watcher;

/* The synced watchers that watch exactly one key or one range. A single key is found through
 * the hash table, a range through the interval tree (a treap ordered by (start, end) whose
 * nodes carry the largest end of their subtree). Keys are copied inline after the struct. */
struct watch_set {
    struct watch_hnode hn; /* single keys: in the key table */
    const uint8_t *key;
    size_t key_len;
    const uint8_t *end; /* KV_END_KEY: exclusive end */
    size_t end_len;
    enum kv_end_kind kind;
    struct watcher *head; /* members, linked by watcher.gprev/gnext */
    size_t n;
    /* tree fields (ranges) */
    struct watch_set *left;
    struct watch_set *right;
    uint64_t prio;
    const struct watch_set *max; /* the node of this subtree with the largest end */
};

struct watch_index {
    struct watch_htab keys; /* single-key sets */
    struct watch_set *root; /* range sets */
    size_t n_ranges;        /* range sets in the tree */
    uint64_t rng;           /* treap priorities (deterministic) */
};

/* Find or create the set for (key, end, kind); NULL on OOM. */
struct watch_set *watch_index_get(struct watch_index *ix, const uint8_t *key, size_t key_len,
                                  const uint8_t *end, size_t end_len, enum kv_end_kind kind);
/* Remove an empty set from the index and free it. */
void watch_index_drop(struct watch_index *ix, struct watch_set *s);
/* Call fn for every set containing key (exact single-key set first, then ranges). */
typedef void (*watch_set_fn)(void *ctx, struct watch_set *s);
void watch_index_match(const struct watch_index *ix, const uint8_t *key, size_t key_len,
                       watch_set_fn fn, void *ctx);
/* Free every set (watchers are not touched). */
void watch_index_fini(struct watch_index *ix);
/* Tree self-check for tests: ordering, heap property and max fields. Returns the node count
 * or -1 when broken. */
long watch_index_check(const struct watch_index *ix);

/* ---- the hub ---- */

/* WG_SYNCING: taken out of the unsynced list by the running watch_hub_sync (still counted as
 * unsynced). WG_COMPACTED: cancelled by compaction, kept until the client cancels it or
 * closes the stream (etcd keeps the id reserved too). */
enum watch_group { WG_NONE, WG_SYNCED, WG_UNSYNCED, WG_SYNCING, WG_VICTIM, WG_COMPACTED };

struct watcher {
    struct watch_hnode id_node; /* (stream, id) table */
    struct watch_stream *st;
    int64_t id;
    int64_t min_rev; /* next revision this watcher needs */
    enum watch_group group;
    unsigned filters;
    bool prev_kv;
    bool fragment;
    bool progress_notify;
    bool progress_elide;   /* events were sent since the last progress tick */
    struct watch_set *set; /* while synced */
    /* group membership: the set (synced), the hub's unsynced list or the stream's victims */
    struct watcher *gprev;
    struct watcher *gnext;
    /* every watcher of the stream */
    struct watcher *sprev;
    struct watcher *snext;
    /* the hub's progress_notify list */
    struct watcher *pprev;
    struct watcher *pnext;
    /* delivery scratch */
    uint64_t mark;
    uint32_t slot;
    /* key, then end (KV_END_KEY), inline */
    size_t key_len;
    size_t end_len;
    enum kv_end_kind kind;
    uint8_t bytes[];
};

struct watch_stream {
    struct watch_hub *h;
    void *ctx;
    struct watcher *all;     /* every watcher, by sprev/snext */
    struct watcher *victims; /* by gprev/gnext */
    size_t n_watchers;
    size_t n_behind; /* unsynced + victims */
    int64_t next_id;
    bool blocked; /* the sink refused output; wait for watch_stream_writable */
    bool progress_pending;
    size_t buffered; /* output bytes not written yet, as the owner reported */
    unsigned sink;   /* index in the hub's sinks */
    /* waits of watch_stream_try (watch_hub_wake ends them) */
    bool drain_wait;  /* for buffered to fall under a quarter of the stream limit */
    bool woken;       /* drained: in the hub's woken list, by wnext */
    bool budget_wait; /* for room in the budget: in the hub's budget FIFO, by bprev/bnext */
    size_t want;      /* ... for this many bytes */
    struct watch_stream *wnext;
    struct watch_stream *bprev;
    struct watch_stream *bnext;
    struct watch_stream *prev;
    struct watch_stream *next;
};

/* A sink with streams open. */
struct watch_sink_slot {
    const struct watch_sink *sink;
    void *ctx;
    size_t n_streams; /* 0: free */
};

/* A matched (watcher, event) pair of one delivery. */
struct watch_hit {
    struct watcher *w;
    uint32_t ev;
};

/* Growable scratch of one delivery, reused across batches. */
struct watch_scratch {
    struct watch_hit *hits;
    size_t n_hits;
    size_t cap_hits;
    struct watcher **slots; /* watchers in first-hit order */
    uint32_t *cnt;          /* per slot: number of hits */
    uint32_t *start;        /* per slot: offset of its events in idx */
    uint32_t *group;        /* per slot: cache slot */
    size_t n_slots;
    size_t cap_slots;
    bool failed;   /* a hit could not be recorded (OOM) */
    uint32_t *idx; /* event indices grouped by slot */
    size_t cap_idx;
    uint32_t *gtab; /* open addressing: slot + 1 of each group's first member, 0 = empty */
    size_t cap_gtab;
    void **cache;
    size_t cap_cache;
};

struct watch_hub {
    struct kv_store *kv;
    struct watch_limits lim;
    /* A batch's cache slot for group g of the stream's sink s is g * WATCH_MAX_SINKS + s. */
    struct watch_sink_slot sinks[WATCH_MAX_SINKS];
    struct watch_stream *woken; /* drained streams, by wnext */
    struct watch_stream *budget_head;
    struct watch_stream *budget_tail;
    struct watch_index ix;
    struct watch_htab ids; /* (stream, id) -> watcher */
    struct watch_stream *streams;
    size_t n_streams;
    size_t n_watchers;
    size_t n_synced;
    size_t n_unsynced;
    size_t n_victims;
    struct watcher *unsynced_head; /* FIFO by gprev/gnext */
    struct watcher *unsynced_tail;
    struct watcher *progress;  /* progress_notify watchers by pprev/pnext */
    size_t n_progress_pending; /* streams waiting for a deferred progress response */
    size_t buffered;           /* sum of the streams' buffered bytes */
    struct watcher **sel;      /* watchers taken by the running sync */
    size_t cap_sel;
    uint64_t mark; /* delivery sequence */
    struct watch_scratch sc;
    struct arena *arena; /* history slices */
    struct watch_stats stats;
};

#define WATCH_SLOT_FAILED UINT32_MAX

/* watch_hub.c, shared with watch_sync.c */
/* Does event e concern w (key in range, not filtered out)? */
bool watch_match(const struct watcher *w, const struct kv_event *e);
/* Move w to group g (leaving its current one). Moving to WG_SYNCED can fail on OOM: w then
 * stays unsynced (it is retried later). */
void watch_move(struct watch_hub *h, struct watcher *w, enum watch_group g);
/* Hand r to st's sink; its verdict. */
bool watch_sink_send(struct watch_stream *st, const struct watch_resp *r);
/* Send a control response for w (created, canceled, compacted, progress). */
void watch_send_ctrl(struct watch_hub *h, struct watcher *w, enum watch_resp_kind kind,
                     int64_t rev);
/* Send the stream's deferred progress response if every watcher of it is synced. */
void watch_progress_check(struct watch_stream *st);
/* Start a delivery (clears the scratch). */
void watch_deliver_begin(struct watch_hub *h);
/* Record that event ev (index in the batch) goes to w. On OOM w is marked failed and is
 * treated as refused by the delivery. */
void watch_hit(struct watch_hub *h, struct watcher *w, uint32_t ev);
/* Deliver the recorded hits as one batch whose responses carry header revision rev. A watcher
 * whose stream refuses becomes a victim, with min_rev raised to refused_rev (0: unchanged);
 * the others get min_rev = next_rev. Returns whether any watcher failed on OOM. */
bool watch_deliver(struct watch_hub *h, int64_t rev, const struct kv_event *ev, size_t n,
                   int64_t refused_rev, int64_t next_rev);

#endif
