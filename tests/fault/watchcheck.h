/* watchcheck.h - checks recorded watch streams against the keyspace's true event history.
 *
 * The fault-injection suites open watches on several members while they write, record every
 * response each watch received, and after the run gather the truth: every change of the
 * keyspace in revision order (for instance by a watch from revision 1 on a healthy member).
 * wc_check compares each recorded watch with the truth, after etcd's robustness validators
 * (tests/robustness/validate/watch.go), and reports the guarantees of etcd's watch API that a
 * watch broke:
 *
 *  ordered    revisions never decrease on a watch; the events of one revision (a txn) come in
 *             the truth's order;
 *  unique     no event (revision, key) is delivered twice on one watch;
 *  atomic     the events of one revision that match the watch all come in one response;
 *  reliable   no gap: every matching truth event between the first and the last event the watch
 *             received is delivered, and from the start revision on when one was given;
 *  resumable  a watch from revision R receives exactly the matching truth events with revision
 *             >= R, in order, up to where it ended;
 *  progress   a progress notification of revision P comes after every matching event with
 *             revision <= P the watch should see, and before every event delivered later;
 *  values     each delivered event is the truth's event: type, value, mod, create revision,
 *             version and lease;
 *  filter     each delivered event's key is in the watched range.
 *
 * Everything is plain arrays grown with realloc and owned by their struct: one thread records
 * one wc_watch, and the checker only reads. No I/O except wc_result_print.
 */
#ifndef METASTORE_TESTS_WATCHCHECK_H
#define METASTORE_TESTS_WATCHCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum wc_type {
    WC_PUT,
    WC_DELETE,
};

/* One change of one key. Keys and values are byte strings (not NUL-terminated in general);
 * a key is never empty. A struct handed to wc_truth_add, wc_truth_build or wc_watch_add_events
 * is copied, so key and value may point to the caller's buffers; the copies are NUL-terminated
 * and owned by the truth or watch holding them. */
struct wc_event {
    int64_t revision; /* the store revision of the change; a txn gives several keys one */
    enum wc_type type;
    const char *key;
    size_t key_len;
    const char *value; /* PUT: the new value; DELETE: usually empty. NULL is empty. */
    size_t value_len;
    int64_t mod_revision;    /* etcd: the event's revision; on a DELETE the rest are 0 */
    int64_t create_revision; /* of the key's current incarnation */
    int64_t version;         /* 1 on creation, +1 per PUT, 0 on DELETE */
    int64_t lease;           /* 0 when none */
};

/* A PUT of the NUL-terminated key and value at revision rev (mod_revision rev). */
struct wc_event wc_event_put(const char *key, const char *value, int64_t rev,
                             int64_t create_revision, int64_t version);
/* A DELETE of key at revision rev: mod_revision rev, the rest 0 (what etcd sends). */
struct wc_event wc_event_delete(const char *key, int64_t rev);

/* The truth: every event of the keyspace, in revision order, each (revision, key) once; events
 * of one revision in the order the server applied them. Zero-initialise or wc_truth_init. */
struct wc_truth {
    struct wc_event *events;
    size_t n;
    size_t cap;
};

void wc_truth_init(struct wc_truth *t);
/* Append a copy of *ev; the caller keeps revision order (wc_check refuses the truth otherwise).
 * Returns 0, or -1 with errno ENOMEM or EINVAL (empty key, bad type). */
int wc_truth_add(struct wc_truth *t, const struct wc_event *ev);
/* Initialise t with copies of evs[0..n), sorted by revision; events of one revision keep their
 * order in evs. Returns 0, or -1 with errno (then t holds nothing). */
int wc_truth_build(struct wc_truth *t, const struct wc_event *evs, size_t n);
void wc_truth_free(struct wc_truth *t);

enum wc_resp_kind {
    WC_RESP_EVENTS,   /* a batch of events (may be empty: etcd's "created" response) */
    WC_RESP_PROGRESS, /* a progress notification: no events, header revision only */
    WC_RESP_CANCELED, /* the server ended the watch; compact_revision > 0 if for compaction */
};

/* One response, in arrival order. Its events are the watch's events[first .. first + n). */
struct wc_response {
    enum wc_resp_kind kind;
    int64_t header_revision;
    int64_t compact_revision;
    size_t first;
    size_t n;
};

/* One watch as a client saw it. Open it with wc_watch_init or wc_watch_init_prefix, set the
 * plain fields that are only printed (id, member, open_ns, close_ns) directly, and append the
 * responses in arrival order. Only event responses' events and progress notifications' header
 * revisions are checked: an etcd event batch sent while a watcher catches up carries the
 * store's current revision, which says nothing of what the watch has seen yet. */
struct wc_watch {
    uint32_t id;     /* printed */
    uint32_t member; /* the member it was opened on; printed */
    /* etcd's request: range_end empty watches key alone; range_end "\0" (one zero byte) every
     * key >= key; otherwise the keys in [key, range_end). Owned, NUL-terminated. */
    char *key;
    size_t key_len;
    char *range_end;
    size_t range_end_len;
    bool prefix;            /* opened with wc_watch_init_prefix; printed */
    int64_t start_revision; /* 0: "from now" */
    uint64_t open_ns;       /* printed */
    uint64_t close_ns;      /* printed; 0 if it never closed */
    struct wc_response *resps;
    size_t n_resps;
    size_t cap_resps;
    struct wc_event *events; /* every delivered event, in arrival order */
    size_t n_events;
    size_t cap_events;
};

/* Open w on key (and range_end, etcd's meaning; NULL or 0 bytes: key alone) from revision
 * start_revision. Returns 0, or -1 with errno ENOMEM or EINVAL (empty key, negative start). */
int wc_watch_init(struct wc_watch *w, const char *key, size_t key_len, const char *range_end,
                  size_t range_end_len, int64_t start_revision);
/* Open w on every key that starts with prefix (etcd's WithPrefix; an empty prefix is every
 * key). */
int wc_watch_init_prefix(struct wc_watch *w, const char *prefix, size_t prefix_len,
                         int64_t start_revision);
/* Append a response holding copies of evs[0..n). Returns 0 or -1 with errno ENOMEM/EINVAL. */
int wc_watch_add_events(struct wc_watch *w, int64_t header_revision, const struct wc_event *evs,
                        size_t n);
int wc_watch_add_progress(struct wc_watch *w, int64_t header_revision);
int wc_watch_add_cancel(struct wc_watch *w, int64_t header_revision, int64_t compact_revision);
/* True if key is in w's range. */
bool wc_watch_matches(const struct wc_watch *w, const char *key, size_t key_len);
void wc_watch_free(struct wc_watch *w);

enum wc_guarantee {
    WC_ORDERED,
    WC_UNIQUE,
    WC_ATOMIC,
    WC_RELIABLE,
    WC_RESUMABLE,
    WC_PROGRESS,
    WC_VALUES,
    WC_FILTER,
    WC_N_GUARANTEES,
};

enum wc_verdict {
    WC_PASS,
    WC_VIOLATION,
};

#define WC_NONE SIZE_MAX

/* The first breach of one guarantee on one watch. */
struct wc_finding {
    enum wc_guarantee rule;
    size_t watch;    /* index into the watches given to wc_check */
    size_t response; /* index into that watch's resps, or WC_NONE */
    size_t event;    /* index into that watch's events, or WC_NONE */
    size_t truth;    /* index into the truth (an event missing or expected), or WC_NONE */
    char msg[320];   /* one readable line naming the watch, response, events and revisions */
};

/* At most this many findings are kept; the counts go on. */
#define WC_MAX_FINDINGS 32

/* The outcome of wc_check. A watch breaking a guarantee counts once for it (its first breach),
 * so violations[g] is the number of watches that broke g. Compacted: watches the server
 * canceled with a compact revision; resumable and reliable-from-the-start skip them. */
struct wc_result {
    enum wc_verdict verdict;
    size_t n_watches;
    size_t n_delivered; /* events over all watches */
    size_t n_truth;
    size_t n_compacted;
    size_t n_violations; /* sum of violations[] */
    size_t violations[WC_N_GUARANTEES];
    struct wc_finding *findings;
    size_t n_findings;
};

/* Check watches[0..n) against truth. Returns 0 and fills *out (release with wc_result_fini),
 * or -1 with errno: EINVAL if the truth is not in revision order, repeats a (revision, key) or
 * has a revision < 1, or a watch's responses do not cover its events in order; ENOMEM. On -1,
 * *out holds nothing to release. */
int wc_check(const struct wc_truth *truth, const struct wc_watch *watches, size_t n,
             struct wc_result *out);

/* One line for the verdict and the counts, then one per finding. */
void wc_result_print(const struct wc_result *r, FILE *f);
void wc_result_fini(struct wc_result *r);

/* "ordered", "unique", ... */
const char *wc_guarantee_name(enum wc_guarantee g);
/* "pass" or "violation". */
const char *wc_verdict_name(enum wc_verdict v);

#endif
