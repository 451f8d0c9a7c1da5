/* watchcheck.c - watch guarantees checked against the keyspace's true event history.
 *
 * The truth is kept in revision order, so the events of one revision are a run found by
 * binary search, and a delivered event is matched to its truth event by (revision, key). Per
 * watch, the checker marks which truth events match the watched range and where each was first
 * delivered; every guarantee is then one pass over the delivered events, the responses or the
 * matching truth events, and reports its first breach. Only the caller's structs are read;
 * the scratch arrays are allocated per call and freed.
 */
#include "watchcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NIL WC_NONE

static const char *const guarantee_names[WC_N_GUARANTEES] = {
    "ordered", "unique", "atomic", "reliable", "resumable", "progress", "values", "filter",
};

const char *wc_guarantee_name(enum wc_guarantee g)
{
    return (unsigned)g < WC_N_GUARANTEES ? guarantee_names[g] : "?";
}

const char *wc_verdict_name(enum wc_verdict v)
{
    return v == WC_PASS ? "pass" : v == WC_VIOLATION ? "violation" : "?";
}

/* ---- byte strings ---- */

static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c)
        return c;
    return (an > bn) - (an < bn);
}

static bool bytes_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* A NUL-terminated copy of p[0..n) (p may be NULL when n is 0); NULL with errno ENOMEM. */
static char *bytes_dup(const char *p, size_t n)
{
    if (n == SIZE_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    if (n)
        memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

/* p (an array of *cap elements of size bytes, used of them in use) with room for one more:
 * the same or a larger array, or NULL with errno ENOMEM (p is then left as it was). */
static void *grow(void *p, size_t *cap, size_t used, size_t size)
{
    if (used < *cap)
        return p;
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    void *q = realloc(p, ncap * size);
    if (!q)
        return NULL;
    *cap = ncap;
    return q;
}

/* ---- events ---- */

struct wc_event wc_event_put(const char *key, const char *value, int64_t rev,
                             int64_t create_revision, int64_t version)
{
    return (struct wc_event){.revision = rev,
                             .type = WC_PUT,
                             .key = key,
                             .key_len = strlen(key),
                             .value = value,
                             .value_len = value ? strlen(value) : 0,
                             .mod_revision = rev,
                             .create_revision = create_revision,
                             .version = version};
}

struct wc_event wc_event_delete(const char *key, int64_t rev)
{
    return (struct wc_event){.revision = rev,
                             .type = WC_DELETE,
                             .key = key,
                             .key_len = strlen(key),
                             .mod_revision = rev};
}

static bool event_valid(const struct wc_event *ev)
{
    return (unsigned)ev->type <= WC_DELETE && ev->key && ev->key_len > 0 &&
           (ev->value || ev->value_len == 0);
}

static void event_free(struct wc_event *ev)
{
    free((void *)ev->key);
    free((void *)ev->value);
}

/* *dst = a copy of *src owning its key and value. */
static int event_copy(struct wc_event *dst, const struct wc_event *src)
{
    if (!event_valid(src)) {
        errno = EINVAL;
        return -1;
    }
    *dst = *src;
    dst->key = bytes_dup(src->key, src->key_len);
    dst->value = bytes_dup(src->value, src->value_len);
    if (!dst->key || !dst->value) {
        event_free(dst);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* ---- the truth ---- */

void wc_truth_init(struct wc_truth *t)
{
    memset(t, 0, sizeof(*t));
}

void wc_truth_free(struct wc_truth *t)
{
    for (size_t i = 0; i < t->n; i++)
        event_free(&t->events[i]);
    free(t->events);
    wc_truth_init(t);
}

int wc_truth_add(struct wc_truth *t, const struct wc_event *ev)
{
    struct wc_event *evs = grow(t->events, &t->cap, t->n, sizeof(*evs));
    if (!evs)
        return -1;
    t->events = evs;
    if (event_copy(&t->events[t->n], ev) < 0)
        return -1;
    t->n++;
    return 0;
}

struct by_rev {
    int64_t rev;
    size_t idx;
};

static int by_rev_cmp(const void *a, const void *b)
{
    const struct by_rev *x = a, *y = b;
    if (x->rev != y->rev)
        return x->rev < y->rev ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int wc_truth_build(struct wc_truth *t, const struct wc_event *evs, size_t n)
{
    wc_truth_init(t);
    struct by_rev *order = calloc(n ? n : 1, sizeof(*order));
    if (!order)
        return -1;
    for (size_t i = 0; i < n; i++)
        order[i] = (struct by_rev){evs[i].revision, i};
    qsort(order, n, sizeof(*order), by_rev_cmp);
    for (size_t i = 0; i < n; i++) {
        if (wc_truth_add(t, &evs[order[i].idx]) < 0) {
            int err = errno;
            free(order);
            wc_truth_free(t);
            errno = err;
            return -1;
        }
    }
    free(order);
    return 0;
}

/* The first truth index whose revision is >= rev (after = false) or > rev (after = true). */
static size_t truth_bound(const struct wc_truth *t, int64_t rev, bool after)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t r = t->events[mid].revision;
        if (r < rev || (after && r == rev))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static size_t truth_find(const struct wc_truth *t, int64_t rev, const char *key, size_t key_len)
{
    for (size_t j = truth_bound(t, rev, false); j < t->n && t->events[j].revision == rev; j++)
        if (bytes_eq(t->events[j].key, t->events[j].key_len, key, key_len))
            return j;
    return NIL;
}

/* Revision order, revisions >= 1, each (revision, key) once. */
static bool truth_valid(const struct wc_truth *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct wc_event *e = &t->events[i];
        if (e->revision < 1 || !event_valid(e))
            return false;
        if (i > 0 && e->revision < t->events[i - 1].revision)
            return false;
        for (size_t j = i; j-- > 0 && t->events[j].revision == e->revision;)
            if (bytes_eq(t->events[j].key, t->events[j].key_len, e->key, e->key_len))
                return false;
    }
    return true;
}

/* ---- watches ---- */

static int watch_open(struct wc_watch *w, const char *key, size_t key_len, const char *end,
                      size_t end_len, int64_t start_revision)
{
    memset(w, 0, sizeof(*w));
    if (!key || key_len == 0 || (!end && end_len) || start_revision < 0) {
        errno = EINVAL;
        return -1;
    }
    w->start_revision = start_revision;
    w->key = bytes_dup(key, key_len);
    w->range_end = bytes_dup(end, end_len);
    if (!w->key || !w->range_end) {
        wc_watch_free(w);
        errno = ENOMEM;
        return -1;
    }
    w->key_len = key_len;
    w->range_end_len = end_len;
    return 0;
}

int wc_watch_init(struct wc_watch *w, const char *key, size_t key_len, const char *range_end,
                  size_t range_end_len, int64_t start_revision)
{
    return watch_open(w, key, key_len, range_end, range_end ? range_end_len : 0, start_revision);
}

int wc_watch_init_prefix(struct wc_watch *w, const char *prefix, size_t prefix_len,
                         int64_t start_revision)
{
    static const char zero[1] = {0};
    int rc;
    if (prefix_len == 0) { /* every key: etcd sends key "\0" and range_end "\0" */
        rc = watch_open(w, zero, 1, zero, 1, start_revision);
    } else {
        /* etcd's prefix end: drop trailing 0xff bytes, add one to the last; none left (a prefix
         * of 0xff bytes only): every key from the prefix on */
        char *end = bytes_dup(prefix, prefix_len);
        if (!end)
            return -1;
        size_t n = prefix_len;
        while (n > 0 && (unsigned char)end[n - 1] == 0xff)
            n--;
        if (n > 0)
            end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
        rc = watch_open(w, prefix, prefix_len, n > 0 ? end : zero, n > 0 ? n : 1, start_revision);
        free(end);
    }
    if (rc == 0)
        w->prefix = true;
    return rc;
}

void wc_watch_free(struct wc_watch *w)
{
    for (size_t i = 0; i < w->n_events; i++)
        event_free(&w->events[i]);
    free(w->events);
    free(w->resps);
    free(w->key);
    free(w->range_end);
    memset(w, 0, sizeof(*w));
}

bool wc_watch_matches(const struct wc_watch *w, const char *key, size_t key_len)
{
    if (w->range_end_len == 0)
        return bytes_eq(w->key, w->key_len, key, key_len);
    if (bytes_cmp(key, key_len, w->key, w->key_len) < 0)
        return false;
    if (w->range_end_len == 1 && w->range_end[0] == '\0')
        return true;
    return bytes_cmp(key, key_len, w->range_end, w->range_end_len) < 0;
}

static int add_response(struct wc_watch *w, const struct wc_response *r)
{
    struct wc_response *rs = grow(w->resps, &w->cap_resps, w->n_resps, sizeof(*rs));
    if (!rs)
        return -1;
    w->resps = rs;
    w->resps[w->n_resps++] = *r;
    return 0;
}

int wc_watch_add_events(struct wc_watch *w, int64_t header_revision, const struct wc_event *evs,
                        size_t n)
{
    size_t first = w->n_events;
    for (size_t i = 0; i < n; i++) {
        struct wc_event *grown = grow(w->events, &w->cap_events, w->n_events, sizeof(*grown));
        if (!grown)
            goto out_undo;
        w->events = grown;
        if (event_copy(&w->events[w->n_events], &evs[i]) < 0)
            goto out_undo;
        w->n_events++;
    }
    struct wc_response r = {
        .kind = WC_RESP_EVENTS, .header_revision = header_revision, .first = first, .n = n};
    if (add_response(w, &r) < 0)
        goto out_undo;
    return 0;

out_undo:;
    int err = errno;
    while (w->n_events > first)
        event_free(&w->events[--w->n_events]);
    errno = err;
    return -1;
}

int wc_watch_add_progress(struct wc_watch *w, int64_t header_revision)
{
    struct wc_response r = {
        .kind = WC_RESP_PROGRESS, .header_revision = header_revision, .first = w->n_events};
    return add_response(w, &r);
}

int wc_watch_add_cancel(struct wc_watch *w, int64_t header_revision, int64_t compact_revision)
{
    struct wc_response r = {.kind = WC_RESP_CANCELED,
                            .header_revision = header_revision,
                            .compact_revision = compact_revision,
                            .first = w->n_events};
    return add_response(w, &r);
}

/* The responses cover events[] in order, only event responses hold events, a key is set. */
static bool watch_valid(const struct wc_watch *w)
{
    if (!w->key || w->key_len == 0 || (w->range_end_len && !w->range_end))
        return false;
    size_t next = 0;
    for (size_t k = 0; k < w->n_resps; k++) {
        const struct wc_response *r = &w->resps[k];
        if ((unsigned)r->kind > WC_RESP_CANCELED || r->first != next)
            return false;
        if (r->kind != WC_RESP_EVENTS && r->n != 0)
            return false;
        next += r->n;
    }
    for (size_t i = 0; i < w->n_events; i++)
        if (!event_valid(&w->events[i]))
            return false;
    return next == w->n_events;
}

static bool watch_compacted(const struct wc_watch *w)
{
    for (size_t k = 0; k < w->n_resps; k++)
        if (w->resps[k].kind == WC_RESP_CANCELED && w->resps[k].compact_revision > 0)
            return true;
    return false;
}

/* ---- messages ---- */

struct sbuf {
    char *p;
    size_t cap;
    size_t len;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    if (b->len >= b->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->len = b->len + (size_t)n < b->cap ? b->len + (size_t)n : b->cap;
}

/* A byte string in double quotes, unprintable bytes as \xNN, cut after 40 bytes. */
static void sb_bytes(struct sbuf *b, const char *s, size_t n)
{
    sb_printf(b, "\"");
    for (size_t i = 0; i < n && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            sb_printf(b, "%c", c);
        else
            sb_printf(b, "\\x%02x", c);
    }
    sb_printf(b, n > 40 ? "\"..." : "\"");
}

static void sb_event(struct sbuf *b, const struct wc_event *e)
{
    sb_printf(b, "rev %" PRId64 " %s ", e->revision, e->type == WC_PUT ? "PUT" : "DELETE");
    sb_bytes(b, e->key, e->key_len);
}

static void sb_watch(struct sbuf *b, const struct wc_watch *w, size_t wi)
{
    sb_printf(b, "watch %zu (id %" PRIu32 ", member %" PRIu32 ", ", wi, w->id, w->member);
    if (w->prefix && w->key_len == 1 && w->key[0] == '\0' && w->range_end_len == 1 &&
        w->range_end[0] == '\0') {
        sb_printf(b, "every key");
    } else if (w->prefix) {
        sb_printf(b, "prefix ");
        sb_bytes(b, w->key, w->key_len);
    } else if (w->range_end_len == 0) {
        sb_printf(b, "key ");
        sb_bytes(b, w->key, w->key_len);
    } else if (w->range_end_len == 1 && w->range_end[0] == '\0') {
        sb_printf(b, "keys >= ");
        sb_bytes(b, w->key, w->key_len);
    } else {
        sb_printf(b, "range [");
        sb_bytes(b, w->key, w->key_len);
        sb_printf(b, ", ");
        sb_bytes(b, w->range_end, w->range_end_len);
        sb_printf(b, ")");
    }
    if (w->start_revision)
        sb_printf(b, ", from rev %" PRId64 ")", w->start_revision);
    else
        sb_printf(b, ", from now)");
}

/* ---- the checks ---- */

/* What one watch's checks share. */
struct wctx {
    const struct wc_truth *t;
    const struct wc_watch *w;
    size_t wi;
    struct wc_result *out;
    bool *match;      /* [truth]: the truth event is in the watched range */
    size_t *pos;      /* [truth]: where it was first delivered, NIL if never */
    size_t *stamp;    /* [truth]: scratch of the atomic check */
    size_t *tix;      /* [delivered]: its truth event, NIL if none */
    size_t *resp_of;  /* [delivered]: the response that carried it */
    size_t first_dup; /* the first delivery of an event already delivered, NIL if none */
    bool compacted;
    bool has_found; /* some delivered event is in the truth; then min_rev, max_rev are set */
    int64_t min_rev;
    int64_t max_rev;
};

/* Record the breach of rule on this watch; the message is the watch, then fmt. */
__attribute__((format(printf, 6, 7))) static int finding(struct wctx *c, enum wc_guarantee rule,
                                                         size_t resp, size_t event, size_t truth,
                                                         const char *fmt, ...)
{
    struct wc_result *r = c->out;
    r->verdict = WC_VIOLATION;
    r->violations[rule]++;
    if (r->n_violations++ >= WC_MAX_FINDINGS)
        return 0;
    struct wc_finding *grown = realloc(r->findings, (r->n_findings + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    r->findings = grown;
    struct wc_finding *f = &r->findings[r->n_findings++];
    *f = (struct wc_finding){
        .rule = rule, .watch = c->wi, .response = resp, .event = event, .truth = truth};
    struct sbuf b = {f->msg, sizeof(f->msg), 0};
    sb_watch(&b, c->w, c->wi);
    sb_printf(&b, ": ");
    va_list ap;
    va_start(ap, fmt);
    if (b.len < b.cap)
        vsnprintf(b.p + b.len, b.cap - b.len, fmt, ap);
    va_end(ap);
    return 0;
}

/* A short description of a delivered or truth event, for a message (static buffers, two). */
static const char *desc(const struct wc_event *e)
{
    static _Thread_local char bufs[2][96];
    static _Thread_local int which;
    which ^= 1;
    struct sbuf b = {bufs[which], sizeof(bufs[which]), 0};
    sb_event(&b, e);
    return bufs[which];
}

static const struct wc_event *delivered(const struct wctx *c, size_t i)
{
    return &c->w->events[i];
}

static const struct wc_event *truth_ev(const struct wctx *c, size_t j)
{
    return &c->t->events[j];
}

static int check_filter(struct wctx *c)
{
    for (size_t i = 0; i < c->w->n_events; i++) {
        const struct wc_event *e = delivered(c, i);
        if (!wc_watch_matches(c->w, e->key, e->key_len))
            return finding(c, WC_FILTER, c->resp_of[i], i, c->tix[i],
                           "response %zu event %zu: %s is outside the watched range", c->resp_of[i],
                           i, desc(e));
    }
    return 0;
}

/* The first field in which a delivered event differs from the truth's, or NULL. */
static const char *value_mismatch(const struct wc_event *e, const struct wc_event *t)
{
    if (e->type != t->type)
        return "type";
    if (!bytes_eq(e->value, e->value_len, t->value, t->value_len))
        return "value";
    if (e->mod_revision != t->mod_revision)
        return "mod_revision";
    if (e->create_revision != t->create_revision)
        return "create_revision";
    if (e->version != t->version)
        return "version";
    if (e->lease != t->lease)
        return "lease";
    return NULL;
}

static int check_values(struct wctx *c)
{
    for (size_t i = 0; i < c->w->n_events; i++) {
        const struct wc_event *e = delivered(c, i);
        size_t j = c->tix[i];
        if (j == NIL)
            return finding(c, WC_VALUES, c->resp_of[i], i, NIL,
                           "response %zu event %zu: %s is not in the truth", c->resp_of[i], i,
                           desc(e));
        const char *field = value_mismatch(e, truth_ev(c, j));
        if (field)
            return finding(c, WC_VALUES, c->resp_of[i], i, j,
                           "response %zu event %zu: %s differs from the truth (event %zu) in %s "
                           "(mod %" PRId64 "/%" PRId64 ", create %" PRId64 "/%" PRId64
                           ", version %" PRId64 "/%" PRId64 " delivered/truth)",
                           c->resp_of[i], i, desc(e), j, field, e->mod_revision,
                           truth_ev(c, j)->mod_revision, e->create_revision,
                           truth_ev(c, j)->create_revision, e->version, truth_ev(c, j)->version);
    }
    return 0;
}

static int check_ordered(struct wctx *c)
{
    for (size_t i = 1; i < c->w->n_events; i++) {
        const struct wc_event *a = delivered(c, i - 1), *b = delivered(c, i);
        if (b->revision < a->revision)
            return finding(c, WC_ORDERED, c->resp_of[i], i, c->tix[i],
                           "response %zu event %zu: %s comes after %s", c->resp_of[i], i, desc(b),
                           desc(a));
        if (b->revision == a->revision && c->tix[i] != NIL && c->tix[i - 1] != NIL &&
            c->tix[i] < c->tix[i - 1])
            return finding(c, WC_ORDERED, c->resp_of[i], i, c->tix[i],
                           "response %zu event %zu: %s comes after %s, against the truth's order "
                           "within the revision",
                           c->resp_of[i], i, desc(b), desc(a));
    }
    return 0;
}

/* Events that are not in the truth are compared pairwise: only a broken server sends them. */
static size_t first_untracked_dup(const struct wctx *c, size_t *earlier)
{
    for (size_t i = 0; i < c->w->n_events; i++) {
        if (c->tix[i] != NIL)
            continue;
        const struct wc_event *b = delivered(c, i);
        for (size_t k = 0; k < i; k++) {
            const struct wc_event *a = delivered(c, k);
            if (c->tix[k] == NIL && a->revision == b->revision &&
                bytes_eq(a->key, a->key_len, b->key, b->key_len)) {
                *earlier = k;
                return i;
            }
        }
    }
    return NIL;
}

static int check_unique(struct wctx *c)
{
    size_t earlier = NIL, i = c->first_dup;
    if (i != NIL)
        earlier = c->pos[c->tix[i]];
    size_t e2, j = first_untracked_dup(c, &e2);
    if (j != NIL && (i == NIL || j < i)) {
        i = j;
        earlier = e2;
    }
    if (i == NIL)
        return 0;
    return finding(c, WC_UNIQUE, c->resp_of[i], i, c->tix[i],
                   "response %zu event %zu: %s was already delivered as event %zu (response %zu)",
                   c->resp_of[i], i, desc(delivered(c, i)), earlier, c->resp_of[earlier]);
}

/* Response k carries delivered event i: every matching truth event of i's revision must carry
 * stamp s (be in response k too); else a breach, and *found. */
static int atomic_revision(struct wctx *c, size_t k, size_t i, size_t s, bool *found)
{
    int64_t rev = delivered(c, i)->revision;
    size_t hi = truth_bound(c->t, rev, true);
    for (size_t j = truth_bound(c->t, rev, false); j < hi; j++) {
        if (!c->match[j] || c->stamp[j] == s)
            continue;
        *found = true;
        size_t p = c->pos[j];
        if (p != NIL)
            return finding(c, WC_ATOMIC, k, i, j,
                           "response %zu carries part of rev %" PRId64
                           ": %s (truth event %zu) came in response %zu",
                           k, rev, desc(truth_ev(c, j)), j, c->resp_of[p]);
        return finding(c, WC_ATOMIC, k, i, j,
                       "response %zu carries part of rev %" PRId64
                       ": %s (truth event %zu) is missing from it",
                       k, rev, desc(truth_ev(c, j)), j);
    }
    return 0;
}

static int check_atomic(struct wctx *c, size_t *stamp_next)
{
    const struct wc_watch *w = c->w;
    for (size_t k = 0; k < w->n_resps; k++) {
        const struct wc_response *r = &w->resps[k];
        size_t s = ++*stamp_next;
        for (size_t i = r->first; i < r->first + r->n; i++)
            if (c->tix[i] != NIL)
                c->stamp[c->tix[i]] = s;
        bool found = false;
        for (size_t i = r->first; i < r->first + r->n && !found; i++) {
            if (c->tix[i] == NIL ||
                (i > r->first && delivered(c, i - 1)->revision == delivered(c, i)->revision))
                continue;
            if (atomic_revision(c, k, i, s, &found) < 0)
                return -1;
        }
        if (found)
            return 0;
    }
    return 0;
}

/* Does the watch promise the history from its start revision on? */
static bool from_start(const struct wctx *c)
{
    return c->w->start_revision > 0 && !c->compacted;
}

static int check_reliable(struct wctx *c)
{
    if (!c->has_found)
        return 0;
    int64_t lo = from_start(c) ? c->w->start_revision : c->min_rev;
    size_t hi = truth_bound(c->t, c->max_rev, true);
    for (size_t j = truth_bound(c->t, lo, false); j < hi; j++)
        if (c->match[j] && c->pos[j] == NIL)
            return finding(c, WC_RELIABLE, NIL, NIL, j,
                           "%s (truth event %zu) was never delivered, though the watch got "
                           "rev %" PRId64 " to rev %" PRId64,
                           desc(truth_ev(c, j)), j, lo, c->max_rev);
    return 0;
}

/* The next truth event at or after j that matches the watch, or NIL. */
static size_t next_match(const struct wctx *c, size_t j)
{
    while (j < c->t->n && !c->match[j])
        j++;
    return j < c->t->n ? j : NIL;
}

static int check_resumable(struct wctx *c)
{
    if (!from_start(c))
        return 0;
    size_t j = next_match(c, truth_bound(c->t, c->w->start_revision, false));
    for (size_t i = 0; i < c->w->n_events; i++) {
        if (j == NIL)
            return finding(c, WC_RESUMABLE, c->resp_of[i], i, NIL,
                           "response %zu event %zu: %s, but the truth has no more events "
                           "for the watch",
                           c->resp_of[i], i, desc(delivered(c, i)));
        if (c->tix[i] != j)
            return finding(c, WC_RESUMABLE, c->resp_of[i], i, j,
                           "response %zu event %zu: %s, but the truth's next event for the "
                           "watch is %s (truth event %zu)",
                           c->resp_of[i], i, desc(delivered(c, i)), desc(truth_ev(c, j)), j);
        j = next_match(c, j + 1);
    }
    return 0;
}

/* An event delivered after a progress notification must be newer than it. Returns 1 on a
 * breach, 0 if none, -1 on ENOMEM. */
static int progress_events(struct wctx *c, size_t k, int64_t seen, size_t seen_resp)
{
    const struct wc_response *r = &c->w->resps[k];
    for (size_t i = r->first; i < r->first + r->n; i++)
        if (delivered(c, i)->revision <= seen)
            return finding(c, WC_PROGRESS, k, i, c->tix[i],
                           "response %zu event %zu: %s comes after a progress notification of "
                           "rev %" PRId64 " (response %zu)",
                           k, i, desc(delivered(c, i)), seen, seen_resp) < 0
                       ? -1
                       : 1;
    return 0;
}

/* Progress notifications: each event delivered later is newer than the highest one so far, and
 * each matching truth event up to its revision, from where the watch's history is known (its
 * start revision, else its first delivered event), was delivered before it. */
static int check_progress(struct wctx *c)
{
    const struct wc_watch *w = c->w;
    bool bounded = from_start(c) || c->has_found;
    size_t j = !bounded        ? c->t->n
               : from_start(c) ? truth_bound(c->t, w->start_revision, false)
                               : truth_bound(c->t, c->min_rev, false);
    int64_t seen = 0;
    size_t seen_resp = NIL;
    for (size_t k = 0; k < w->n_resps; k++) {
        const struct wc_response *r = &w->resps[k];
        if (r->kind == WC_RESP_EVENTS && seen_resp != NIL) {
            int rc = progress_events(c, k, seen, seen_resp);
            if (rc != 0)
                return rc < 0 ? -1 : 0;
        }
        if (r->kind != WC_RESP_PROGRESS)
            continue;
        if (seen_resp == NIL || r->header_revision > seen) {
            seen = r->header_revision;
            seen_resp = k;
        }
        /* delivered before this response: at an index below r->first */
        for (; j < c->t->n && truth_ev(c, j)->revision <= r->header_revision; j++)
            if (c->match[j] && (c->pos[j] == NIL || c->pos[j] >= r->first))
                return finding(c, WC_PROGRESS, k, NIL, j,
                               "response %zu: progress notification of rev %" PRId64
                               " before %s (truth event %zu) was delivered",
                               k, r->header_revision, desc(truth_ev(c, j)), j);
    }
    return 0;
}

/* ---- per watch ---- */

/* Fill tix, resp_of, pos, first_dup and the delivered revision bounds. */
static void index_watch(struct wctx *c)
{
    const struct wc_watch *w = c->w;
    for (size_t j = 0; j < c->t->n; j++) {
        c->match[j] = wc_watch_matches(w, c->t->events[j].key, c->t->events[j].key_len);
        c->pos[j] = NIL;
    }
    for (size_t k = 0; k < w->n_resps; k++)
        for (size_t i = w->resps[k].first; i < w->resps[k].first + w->resps[k].n; i++)
            c->resp_of[i] = k;
    c->first_dup = NIL;
    c->has_found = false;
    for (size_t i = 0; i < w->n_events; i++) {
        const struct wc_event *e = delivered(c, i);
        size_t j = c->tix[i] = truth_find(c->t, e->revision, e->key, e->key_len);
        if (j == NIL)
            continue;
        if (c->pos[j] == NIL)
            c->pos[j] = i;
        else if (c->first_dup == NIL)
            c->first_dup = i;
        if (!c->has_found || e->revision < c->min_rev)
            c->min_rev = e->revision;
        if (!c->has_found || e->revision > c->max_rev)
            c->max_rev = e->revision;
        c->has_found = true;
    }
    c->compacted = watch_compacted(w);
}

static int check_watch(struct wctx *c, size_t *stamp_next)
{
    index_watch(c);
    if (check_filter(c) < 0 || check_values(c) < 0 || check_ordered(c) < 0 || check_unique(c) < 0 ||
        check_atomic(c, stamp_next) < 0 || check_reliable(c) < 0 || check_resumable(c) < 0 ||
        check_progress(c) < 0)
        return -1;
    return 0;
}

void wc_result_fini(struct wc_result *r)
{
    free(r->findings);
    memset(r, 0, sizeof(*r));
}

int wc_check(const struct wc_truth *truth, const struct wc_watch *watches, size_t n,
             struct wc_result *out)
{
    memset(out, 0, sizeof(*out));
    if (!truth_valid(truth)) {
        errno = EINVAL;
        return -1;
    }
    size_t max_events = 0;
    for (size_t i = 0; i < n; i++) {
        if (!watch_valid(&watches[i])) {
            errno = EINVAL;
            return -1;
        }
        if (watches[i].n_events > max_events)
            max_events = watches[i].n_events;
    }
    size_t nt = truth->n ? truth->n : 1, nd = max_events ? max_events : 1;
    struct wctx c = {.t = truth, .out = out};
    c.match = calloc(nt, sizeof(*c.match));
    c.pos = calloc(nt, sizeof(*c.pos));
    c.stamp = calloc(nt, sizeof(*c.stamp));
    c.tix = calloc(nd, sizeof(*c.tix));
    c.resp_of = calloc(nd, sizeof(*c.resp_of));
    int rc = c.match && c.pos && c.stamp && c.tix && c.resp_of ? 0 : -1;
    size_t stamp_next = 0;
    out->n_watches = n;
    out->n_truth = truth->n;
    for (size_t i = 0; i < n && rc == 0; i++) {
        c.w = &watches[i];
        c.wi = i;
        rc = check_watch(&c, &stamp_next);
        out->n_delivered += watches[i].n_events;
        out->n_compacted += c.compacted;
    }
    free(c.match);
    free(c.pos);
    free(c.stamp);
    free(c.tix);
    free(c.resp_of);
    if (rc < 0) {
        wc_result_fini(out);
        errno = ENOMEM;
    }
    return rc;
}

void wc_result_print(const struct wc_result *r, FILE *f)
{
    fprintf(f,
            "%s: %zu watches, %zu delivered events, %zu truth events, %zu compacted, %zu "
            "violations",
            wc_verdict_name(r->verdict), r->n_watches, r->n_delivered, r->n_truth, r->n_compacted,
            r->n_violations);
    const char *sep = " (";
    for (int g = 0; g < WC_N_GUARANTEES; g++) {
        if (!r->violations[g])
            continue;
        fprintf(f, "%s%s %zu", sep, wc_guarantee_name((enum wc_guarantee)g), r->violations[g]);
        sep = ", ";
    }
    fputs(*sep == ',' ? ")\n" : "\n", f);
    for (size_t i = 0; i < r->n_findings; i++)
        fprintf(f, "  %s: %s\n", wc_guarantee_name(r->findings[i].rule), r->findings[i].msg);
    if (r->n_violations > r->n_findings)
        fprintf(f, "  ... %zu more not shown\n", r->n_violations - r->n_findings);
}
