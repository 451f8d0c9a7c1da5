/* lincheck.c - linearizability and revision-order checks of recorded register histories.
 *
 * lc_check splits the history by key (a register's history is linearizable iff each key's is)
 * and runs one bounded search per key: calls and returns in time order on a doubly linked list,
 * a call is "lifted" out when the search places its op, a return met before its op was placed
 * forces a backtrack (Wing-Gong), and (linearized set, value) pairs already explored are cut
 * off (Lowe; Porcupine's cache). The set's hash is kept incrementally (one random word per op,
 * XORed in and out), so a step costs O(1) plus a compare on a hash match.
 * Only the caller's op array is read; everything else is allocated per call and freed.
 */
#include "lincheck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NIL SIZE_MAX

static const struct lc_limits default_limits = {
    .max_steps = 20000000,
    .max_ns = 30ull * 1000000000ull,
    .max_bytes = (size_t)1 << 30,
};

/* calloc of n * size with overflow checked; NULL with errno ENOMEM. */
static void *alloc_array(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return calloc(n ? n : 1, size);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

const char *lc_verdict_name(enum lc_verdict v)
{
    switch (v) {
    case LC_PASS:
        return "pass";
    case LC_VIOLATION:
        return "violation";
    case LC_UNKNOWN:
        return "unknown";
    }
    return "?";
}

static bool is_write(const struct lc_op *o)
{
    return o->kind == LC_PUT || (o->kind == LC_CAS && o->outcome == LC_OK && o->swapped);
}

static bool op_valid(const struct lc_op *o)
{
    if ((unsigned)o->kind > LC_CAS || (unsigned)o->outcome > LC_INFO)
        return false;
    return o->outcome == LC_INFO || o->complete_ns >= o->invoke_ns;
}

/* ---- results ---- */

static void result_init(struct lc_result *r)
{
    memset(r, 0, sizeof(*r));
}

void lc_result_fini(struct lc_result *r)
{
    free(r->findings);
    result_init(r);
}

/* Append a finding (violations beyond LC_MAX_FINDINGS are only counted) and update the
 * verdict. Returns -1 with errno ENOMEM. */
static int result_add(struct lc_result *r, const struct lc_finding *f)
{
    if (f->verdict == LC_VIOLATION) {
        r->verdict = LC_VIOLATION;
        if (r->n_violations++ >= LC_MAX_FINDINGS)
            return 0;
    } else {
        r->n_unknown++;
        if (r->verdict == LC_PASS)
            r->verdict = LC_UNKNOWN;
    }
    struct lc_finding *grown = realloc(r->findings, (r->n_findings + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    r->findings = grown;
    r->findings[r->n_findings++] = *f;
    return 0;
}

/* ---- ops grouped by key ---- */

struct keyed {
    uint32_t key;
    size_t idx;
};

static int keyed_cmp(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* ---- the memo of explored (linearized set, value) pairs ---- */

struct memo_slot {
    uint64_t hash;
    uint64_t state;
    size_t off; /* into pool, NIL when the slot is free */
};

struct memo {
    size_t words; /* per set */
    struct memo_slot *slots;
    size_t cap; /* power of two */
    size_t used;
    uint64_t *pool;
    size_t pool_cap; /* sets */
    size_t max_bytes;
};

static int memo_init(struct memo *m, size_t words, size_t max_bytes)
{
    memset(m, 0, sizeof(*m));
    m->words = words;
    m->max_bytes = max_bytes;
    m->cap = 1024;
    m->slots = alloc_array(m->cap, sizeof(*m->slots));
    if (!m->slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].off = NIL;
    return 0;
}

static void memo_fini(struct memo *m)
{
    free(m->slots);
    free(m->pool);
}

static size_t memo_bytes(size_t cap, size_t pool_cap, size_t words)
{
    return cap * sizeof(struct memo_slot) + pool_cap * words * sizeof(uint64_t);
}

static void memo_place(struct memo_slot *slots, size_t cap, const struct memo_slot *s)
{
    size_t i = s->hash & (cap - 1);
    while (slots[i].off != NIL)
        i = (i + 1) & (cap - 1);
    slots[i] = *s;
}

/* Make room for one more entry. Returns 0, or -1 with *why set when the memory budget or the
 * allocator says no. */
static int memo_reserve(struct memo *m, const char **why)
{
    size_t cap = (m->used + 1) * 2 > m->cap ? m->cap * 2 : m->cap;
    size_t pool_cap =
        m->used + 1 > m->pool_cap ? (m->pool_cap ? m->pool_cap * 2 : 256) : m->pool_cap;
    if (cap == m->cap && pool_cap == m->pool_cap)
        return 0;
    if (memo_bytes(cap, pool_cap, m->words) > m->max_bytes) {
        *why = "memory budget exhausted";
        return -1;
    }
    if (pool_cap != m->pool_cap) {
        uint64_t *pool = realloc(m->pool, pool_cap * m->words * sizeof(uint64_t));
        if (!pool)
            goto out_nomem;
        m->pool = pool;
        m->pool_cap = pool_cap;
    }
    if (cap != m->cap) {
        struct memo_slot *slots = alloc_array(cap, sizeof(*slots));
        if (!slots)
            goto out_nomem;
        for (size_t i = 0; i < cap; i++)
            slots[i].off = NIL;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].off != NIL)
                memo_place(slots, cap, &m->slots[i]);
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    return 0;

out_nomem:
    *why = "out of memory";
    return -1;
}

/* Record (set, state). Returns 1 if it is new, 0 if it was explored already, -1 (with *why)
 * when it cannot be stored. */
static int memo_add(struct memo *m, uint64_t hash, const uint64_t *set, uint64_t state,
                    const char **why)
{
    size_t bytes = m->words * sizeof(uint64_t);
    size_t i = hash & (m->cap - 1);
    for (; m->slots[i].off != NIL; i = (i + 1) & (m->cap - 1)) {
        const struct memo_slot *s = &m->slots[i];
        if (s->hash == hash && s->state == state && !memcmp(m->pool + s->off, set, bytes))
            return 0;
    }
    if (memo_reserve(m, why) < 0)
        return -1;
    struct memo_slot s = {.hash = hash, .state = state, .off = m->used * m->words};
    memcpy(m->pool + s.off, set, bytes);
    memo_place(m->slots, m->cap, &s);
    m->used++;
    return 1;
}

/* ---- the search for one key ---- */

struct event {
    uint64_t t;
    size_t op; /* local index */
    bool is_call;
};

static int event_cmp(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    /* At equal times calls come first, so that ops that merely touch count as concurrent. */
    if (x->is_call != y->is_call)
        return x->is_call ? -1 : 1;
    return (x->op > y->op) - (x->op < y->op);
}

struct frame {
    size_t op;
    uint64_t state; /* before op */
};

struct key_search {
    const struct lc_op *ops; /* the caller's */
    size_t *global;          /* local op index -> index in ops */
    size_t n;
    struct event *ev;
    size_t *next, *prev; /* over ev positions; position n_ev is the list head */
    size_t head;
    size_t *call_pos, *ret_pos; /* per local op; ret_pos is NIL for LC_INFO */
    uint64_t *zobrist;          /* per local op */
    bool *unseen;               /* per local op: an LC_INFO write whose value nobody observed */
    uint64_t *set;              /* linearized ops */
    size_t words;
    struct frame *stack;
    size_t depth;
    struct memo memo;
    /* The deepest failure seen: what the report shows. */
    bool failed;
    size_t best_depth;
    size_t best_blocker;
    size_t best_last;
    uint64_t best_state;
    uint64_t *best_set;
};

static const struct lc_op *local_op(const struct key_search *s, size_t op)
{
    return &s->ops[s->global[op]];
}

/* Whether a CAS that was answered "not swapped" can be placed next only if the value changes
 * first: it is a candidate (invoked before the first pending return) and expects state. */
static bool failed_cas_waits(const struct key_search *s, uint64_t state)
{
    for (size_t p = s->next[s->head]; p != NIL && s->ev[p].is_call; p = s->next[p]) {
        const struct lc_op *o = local_op(s, s->ev[p].op);
        if (o->kind == LC_CAS && o->outcome == LC_OK && !o->swapped && o->expect == state)
            return true;
    }
    return false;
}

/* Apply op to state. False if op's recorded result is impossible from state, or if it is an
 * LC_INFO op that would change nothing: placing it then is never better than leaving it for
 * later, since an indeterminate op may also never take effect. */
static bool model_step(const struct lc_op *o, uint64_t state, uint64_t *next)
{
    *next = state;
    switch (o->kind) {
    case LC_PUT:
        *next = o->value;
        break;
    case LC_GET:
        return o->read == state;
    case LC_CAS:
        if (o->outcome == LC_OK && o->swapped != (state == o->expect))
            return false;
        if (state == o->expect)
            *next = o->value;
        break;
    }
    return o->outcome == LC_OK || *next != state;
}

static void set_flip(struct key_search *s, size_t op)
{
    s->set[op / 64] ^= 1ull << (op % 64);
}

static bool set_has(const uint64_t *set, size_t op)
{
    return set[op / 64] >> (op % 64) & 1;
}

static void list_unlink(struct key_search *s, size_t pos)
{
    s->next[s->prev[pos]] = s->next[pos];
    if (s->next[pos] != NIL)
        s->prev[s->next[pos]] = s->prev[pos];
}

/* Undo list_unlink(pos); calls must undo in the reverse order of the unlinks. */
static void list_relink(struct key_search *s, size_t pos)
{
    s->next[s->prev[pos]] = pos;
    if (s->next[pos] != NIL)
        s->prev[s->next[pos]] = pos;
}

static void lift(struct key_search *s, size_t op)
{
    list_unlink(s, s->call_pos[op]);
    if (s->ret_pos[op] != NIL)
        list_unlink(s, s->ret_pos[op]);
}

static void unlift(struct key_search *s, size_t op)
{
    if (s->ret_pos[op] != NIL)
        list_relink(s, s->ret_pos[op]);
    list_relink(s, s->call_pos[op]);
}

static void key_search_free(struct key_search *s)
{
    free(s->ev);
    free(s->next);
    free(s->prev);
    free(s->call_pos);
    free(s->ret_pos);
    free(s->zobrist);
    free(s->unseen);
    free(s->set);
    free(s->best_set);
    free(s->stack);
    memo_fini(&s->memo);
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Mark the indeterminate writes whose value no op reads or compares against. Placing one only
 * hides the previous value, which only a CAS answered "not swapped" can need; so the search
 * places it only right before such a CAS could follow (see key_search_run). Returns 0, or -1
 * with errno ENOMEM. */
static int mark_unseen(struct key_search *s)
{
    uint64_t *seen = alloc_array(s->n, sizeof(uint64_t));
    if (!seen) {
        key_search_free(s);
        errno = ENOMEM;
        return -1;
    }
    size_t n_seen = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct lc_op *o = local_op(s, i);
        if (o->kind == LC_GET)
            seen[n_seen++] = o->read;
        else if (o->kind == LC_CAS)
            seen[n_seen++] = o->expect;
    }
    qsort(seen, n_seen, sizeof(*seen), u64_cmp);
    for (size_t i = 0; i < s->n; i++) {
        const struct lc_op *o = local_op(s, i);
        s->unseen[i] =
            o->outcome == LC_INFO && !bsearch(&o->value, seen, n_seen, sizeof(*seen), u64_cmp);
    }
    free(seen);
    return 0;
}

/* Build the event list of the ops named by group[0..n) (LC_FAIL ops and LC_INFO GETs already
 * left out). Returns 0, or -1 with errno ENOMEM. */
static int key_search_init(struct key_search *s, const struct lc_op *ops, size_t *group, size_t n,
                           size_t max_bytes)
{
    memset(s, 0, sizeof(*s));
    s->ops = ops;
    s->global = group;
    s->n = n;
    s->words = (n + 63) / 64;
    size_t n_ev = 0;
    for (size_t i = 0; i < n; i++)
        n_ev += ops[group[i]].outcome == LC_OK ? 2 : 1;
    s->head = n_ev;
    s->ev = alloc_array(n_ev, sizeof(*s->ev));
    s->next = alloc_array(n_ev + 1, sizeof(size_t));
    s->prev = alloc_array(n_ev + 1, sizeof(size_t));
    s->call_pos = alloc_array(n, sizeof(size_t));
    s->ret_pos = alloc_array(n, sizeof(size_t));
    s->zobrist = alloc_array(n, sizeof(uint64_t));
    s->unseen = alloc_array(n, sizeof(bool));
    s->set = alloc_array(s->words, sizeof(uint64_t));
    s->best_set = alloc_array(s->words, sizeof(uint64_t));
    s->stack = alloc_array(n, sizeof(*s->stack));
    if (memo_init(&s->memo, s->words, max_bytes) < 0 || !s->ev || !s->next || !s->prev ||
        !s->call_pos || !s->ret_pos || !s->zobrist || !s->unseen || !s->set || !s->best_set ||
        !s->stack) {
        key_search_free(s);
        errno = ENOMEM;
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lc_op *o = &ops[group[i]];
        s->ev[k++] = (struct event){.t = o->invoke_ns, .op = i, .is_call = true};
        if (o->outcome == LC_OK)
            s->ev[k++] = (struct event){.t = o->complete_ns, .op = i, .is_call = false};
        s->ret_pos[i] = NIL;
        s->zobrist[i] = splitmix(group[i]);
    }
    qsort(s->ev, n_ev, sizeof(*s->ev), event_cmp);
    for (size_t p = 0; p < n_ev; p++) {
        s->next[p] = p + 1 < n_ev ? p + 1 : NIL;
        s->prev[p] = p ? p - 1 : s->head;
        if (s->ev[p].is_call)
            s->call_pos[s->ev[p].op] = p;
        else
            s->ret_pos[s->ev[p].op] = p;
    }
    s->next[s->head] = n_ev ? 0 : NIL;
    return mark_unseen(s);
}

/* A return was met before its op could be placed: remember the deepest such point. */
static void note_failure(struct key_search *s, size_t blocker, uint64_t state)
{
    if (s->failed && s->depth <= s->best_depth)
        return;
    s->failed = true;
    s->best_depth = s->depth;
    s->best_blocker = blocker;
    s->best_last = s->depth ? s->stack[s->depth - 1].op : NIL;
    s->best_state = state;
    memcpy(s->best_set, s->set, s->words * sizeof(uint64_t));
}

/* The violation report: the blocker, then the unplaced ops invoked before it completed. */
static void describe_failure(const struct key_search *s, struct lc_finding *f)
{
    const struct lc_op *blocker = local_op(s, s->best_blocker);
    f->ops[f->n_ops++] = s->global[s->best_blocker];
    f->placed_last = s->best_last == NIL ? NIL : s->global[s->best_last];
    f->state = s->best_state;
    f->linearized = s->best_depth;
    for (size_t p = 0; p < s->head && f->n_ops < LC_FINDING_OPS; p++) {
        const struct event *e = &s->ev[p];
        if (e->t > blocker->complete_ns)
            break;
        if (e->is_call && e->op != s->best_blocker && !set_has(s->best_set, e->op))
            f->ops[f->n_ops++] = s->global[e->op];
    }
}

/* Search for a linearization of s's ops. Returns the key's verdict; f gets the details.
 *
 * An unseen indeterminate write X is placed only when a "not swapped" CAS C expecting the
 * current value waits among the candidates. This loses no linearization: in one that places X
 * earlier, X can move later until the first op of its window that needs the value hidden, which
 * can only be such a C (no read sees X's value, no CAS expects it); if none needs it, X can be
 * dropped (it may never have taken effect). Without this, every pending unseen write doubles
 * the states the search may visit. */
static enum lc_verdict key_search_run(struct key_search *s, const struct lc_limits *lim,
                                      struct lc_finding *f)
{
    size_t ok_left = 0;
    for (size_t i = 0; i < s->n; i++)
        ok_left += s->ret_pos[i] != NIL;
    uint64_t start = now_ns();
    uint64_t state = LC_ABSENT;
    uint64_t set_hash = 0;
    size_t pos = s->next[s->head];
    while (ok_left > 0) {
        if (f->steps == lim->max_steps) {
            f->what = "step budget exhausted";
            return LC_UNKNOWN;
        }
        if ((++f->steps & 1023) == 0 && now_ns() - start > lim->max_ns) {
            f->what = "time budget exhausted";
            return LC_UNKNOWN;
        }
        /* An unplaced LC_OK op's return is still on the list, after every remaining call that
         * precedes it: the walk from the head meets it before running off the end. */
        const struct event *e = &s->ev[pos];
        if (e->is_call) {
            const struct lc_op *o = local_op(s, e->op);
            uint64_t next;
            if ((!s->unseen[e->op] || failed_cas_waits(s, state)) && model_step(o, state, &next)) {
                set_flip(s, e->op);
                set_hash ^= s->zobrist[e->op];
                int fresh = memo_add(&s->memo, set_hash ^ splitmix(next), s->set, next, &f->what);
                if (fresh < 0)
                    return LC_UNKNOWN;
                if (fresh) {
                    s->stack[s->depth++] = (struct frame){.op = e->op, .state = state};
                    state = next;
                    lift(s, e->op);
                    ok_left -= o->outcome == LC_OK;
                    pos = s->next[s->head];
                    continue;
                }
                set_flip(s, e->op);
                set_hash ^= s->zobrist[e->op];
            }
            pos = s->next[pos];
            continue;
        }
        note_failure(s, e->op, state);
        if (s->depth == 0) {
            f->what = "no linearization";
            describe_failure(s, f);
            return LC_VIOLATION;
        }
        struct frame fr = s->stack[--s->depth];
        state = fr.state;
        set_flip(s, fr.op);
        set_hash ^= s->zobrist[fr.op];
        unlift(s, fr.op);
        ok_left += local_op(s, fr.op)->outcome == LC_OK;
        pos = s->next[s->call_pos[fr.op]];
    }
    return LC_PASS;
}

/* Check the key whose searchable ops are group[0..n). Returns 0 or -1 with errno ENOMEM. */
static int check_key(const struct lc_op *ops, uint32_t key, size_t *group, size_t n,
                     const struct lc_limits *lim, struct lc_result *r)
{
    struct key_search s;
    if (key_search_init(&s, ops, group, n, lim->max_bytes) < 0)
        return -1;
    struct lc_finding f = {.key = key, .key_ops = n, .placed_last = NIL};
    f.verdict = key_search_run(&s, lim, &f);
    if (f.verdict == LC_UNKNOWN)
        f.linearized = s.failed ? s.best_depth : s.depth;
    key_search_free(&s);
    r->steps += f.steps;
    if (f.verdict == LC_PASS)
        return 0;
    return result_add(r, &f);
}

/* Sort ops into (key, index) order: one entry per op kept by keep (all when NULL). Returns
 * the array (caller frees) and its length in *len, or NULL with errno ENOMEM. */
static struct keyed *by_key(const struct lc_op *ops, size_t n, bool (*keep)(const struct lc_op *),
                            size_t *len)
{
    struct keyed *k = alloc_array(n, sizeof(*k));
    if (!k)
        return NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (!keep || keep(&ops[i]))
            k[(*len)++] = (struct keyed){.key = ops[i].key, .idx = i};
    qsort(k, *len, sizeof(*k), keyed_cmp);
    return k;
}

static size_t count_keys(const struct keyed *k, size_t len)
{
    size_t keys = 0;
    for (size_t i = 0; i < len; i++)
        keys += i == 0 || k[i].key != k[i - 1].key;
    return keys;
}

/* The ops the search sees: a refused op did nothing, an indeterminate read tells nothing. */
static bool searched(const struct lc_op *o)
{
    return o->outcome == LC_OK || (o->outcome == LC_INFO && o->kind != LC_GET);
}

static int validate(const struct lc_op *ops, size_t n, struct lc_result *out)
{
    result_init(out);
    for (size_t i = 0; i < n; i++) {
        if (!op_valid(&ops[i])) {
            errno = EINVAL;
            return -1;
        }
    }
    return 0;
}

int lc_check(const struct lc_op *ops, size_t n, const struct lc_limits *lim, struct lc_result *out)
{
    if (validate(ops, n, out) < 0)
        return -1;
    struct lc_limits l = lim ? *lim : default_limits;
    if (!l.max_steps)
        l.max_steps = default_limits.max_steps;
    if (!l.max_ns)
        l.max_ns = default_limits.max_ns;
    if (!l.max_bytes)
        l.max_bytes = default_limits.max_bytes;

    size_t n_all = 0, len = 0;
    struct keyed *all = by_key(ops, n, NULL, &n_all);
    struct keyed *k = by_key(ops, n, searched, &len);
    size_t *group = alloc_array(len, sizeof(size_t));
    if (!all || !k || !group)
        goto out_nomem;
    out->n_keys = count_keys(all, n_all);
    for (size_t i = 0; i < len;) {
        size_t j = i;
        for (; j < len && k[j].key == k[i].key; j++)
            group[j - i] = k[j].idx;
        if (check_key(ops, k[i].key, group, j - i, &l, out) < 0)
            goto out_nomem;
        i = j;
    }
    free(group);
    free(k);
    free(all);
    return 0;

out_nomem:
    free(group);
    free(k);
    free(all);
    lc_result_fini(out);
    errno = ENOMEM;
    return -1;
}

/* ---- revisions ---- */

/* One op in a revision sweep: t is its completion (as an earlier op) or its invocation (as a
 * later op); key is 0 when the rule spans keys. */
struct rev_item {
    uint32_t key;
    uint64_t t;
    int64_t rev;
    size_t idx;
};

static int rev_item_cmp(const void *a, const void *b)
{
    const struct rev_item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static bool rev_write(const struct lc_op *o)
{
    return o->outcome == LC_OK && o->rev != 0 && is_write(o);
}

static bool rev_read(const struct lc_op *o)
{
    return o->outcome == LC_OK && o->rev != 0 && o->kind == LC_GET && o->read != LC_ABSENT;
}

/* A rule "if an earlier op completed before a later op was invoked, the later op's revision is
 * above (strict) or at least the earlier one's". */
struct rev_rule {
    bool (*earlier)(const struct lc_op *);
    bool (*later)(const struct lc_op *);
    bool same_key;
    bool strict;
    const char *what;
};

static const struct rev_rule rev_rules[] = {
    {rev_write, rev_write, false, true,
     "a write invoked after another completed has a smaller revision"},
    {rev_read, rev_read, true, false,
     "a read went back in time: older mod_revision than an earlier read"},
    {rev_read, rev_write, false, true,
     "a write invoked after a read completed is not above the revision read"},
    {rev_write, rev_read, true, false, "a read missed a write that completed before it began"},
};

static struct rev_item *rev_items(const struct lc_op *ops, size_t n,
                                  bool (*keep)(const struct lc_op *), bool same_key, bool as_later,
                                  size_t *len)
{
    struct rev_item *it = alloc_array(n, sizeof(*it));
    if (!it)
        return NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lc_op *o = &ops[i];
        if (!keep(o))
            continue;
        it[(*len)++] = (struct rev_item){.key = same_key ? o->key : 0,
                                         .t = as_later ? o->invoke_ns : o->complete_ns,
                                         .rev = o->rev,
                                         .idx = i};
    }
    qsort(it, *len, sizeof(*it), rev_item_cmp);
    return it;
}

static int pair_violation(struct lc_result *r, const struct lc_op *ops, size_t a, size_t b,
                          const char *what)
{
    struct lc_finding f = {.verdict = LC_VIOLATION,
                           .key = ops[b].key,
                           .what = what,
                           .ops = {a, b},
                           .n_ops = 2,
                           .placed_last = NIL};
    return result_add(r, &f);
}

/* Sweep the later ops in invocation order, keeping the largest revision among the earlier ops
 * (of the same key, if the rule says so) that completed before. */
static int rev_rule_check(const struct lc_op *ops, size_t n, const struct rev_rule *rule,
                          struct lc_result *r)
{
    size_t ne, nl;
    struct rev_item *e = rev_items(ops, n, rule->earlier, rule->same_key, false, &ne);
    struct rev_item *l = rev_items(ops, n, rule->later, rule->same_key, true, &nl);
    int rc = e && l ? 0 : -1;
    size_t j = 0, best = NIL;
    for (size_t i = 0; rc == 0 && i < nl; i++) {
        for (; j < ne && (e[j].key < l[i].key || (e[j].key == l[i].key && e[j].t < l[i].t)); j++) {
            if (best != NIL && e[best].key != e[j].key)
                best = NIL;
            if (best == NIL || e[j].rev > e[best].rev)
                best = j;
        }
        if (best == NIL || e[best].key != l[i].key)
            continue;
        bool ok = rule->strict ? l[i].rev > e[best].rev : l[i].rev >= e[best].rev;
        if (!ok)
            rc = pair_violation(r, ops, e[best].idx, l[i].idx, rule->what);
    }
    free(e);
    free(l);
    return rc;
}

static int rev_unique_check(const struct lc_op *ops, size_t n, struct lc_result *r)
{
    size_t nw;
    struct rev_item *w = rev_items(ops, n, rev_write, false, false, &nw);
    if (!w)
        return -1;
    for (size_t i = 0; i < nw; i++)
        w[i].t = (uint64_t)w[i].rev; /* sort by revision */
    qsort(w, nw, sizeof(*w), rev_item_cmp);
    int rc = 0;
    for (size_t i = 1; rc == 0 && i < nw; i++)
        if (w[i].rev == w[i - 1].rev)
            rc = pair_violation(r, ops, w[i - 1].idx, w[i].idx, "two writes share a revision");
    free(w);
    return rc;
}

int lc_check_revisions(const struct lc_op *ops, size_t n, struct lc_result *out)
{
    if (validate(ops, n, out) < 0)
        return -1;
    size_t len;
    struct keyed *all = by_key(ops, n, NULL, &len);
    if (!all)
        goto out_nomem;
    out->n_keys = count_keys(all, len);
    free(all);
    if (rev_unique_check(ops, n, out) < 0)
        goto out_nomem;
    for (size_t i = 0; i < sizeof(rev_rules) / sizeof(rev_rules[0]); i++)
        if (rev_rule_check(ops, n, &rev_rules[i], out) < 0)
            goto out_nomem;
    return 0;

out_nomem:
    lc_result_fini(out);
    errno = ENOMEM;
    return -1;
}

/* ---- the report ---- */

static void print_value(FILE *f, uint64_t v)
{
    if (v == LC_ABSENT)
        fputs("absent", f);
    else
        fprintf(f, "%" PRIu64, v);
}

static void print_op(FILE *f, const struct lc_op *ops, size_t i, uint64_t t0, const char *note)
{
    static const char *const outcome[] = {"ok", "fail", "info"};
    const struct lc_op *o = &ops[i];
    fprintf(f, "    op %zu client %" PRIu32 " ", i, o->client);
    switch (o->kind) {
    case LC_PUT:
        fputs("PUT ", f);
        print_value(f, o->value);
        break;
    case LC_GET:
        fputs("GET", f);
        if (o->outcome == LC_OK) {
            fputs(" -> ", f);
            print_value(f, o->read);
        }
        break;
    case LC_CAS:
        fputs("CAS ", f);
        print_value(f, o->expect);
        fputs(" -> ", f);
        print_value(f, o->value);
        if (o->outcome == LC_OK)
            fputs(o->swapped ? " swapped" : " not swapped", f);
        break;
    }
    fprintf(f, " %s [%" PRIu64 ", ", outcome[o->outcome], o->invoke_ns - t0);
    if (o->outcome == LC_INFO)
        fputs("?]", f);
    else
        fprintf(f, "%" PRIu64 "]", o->complete_ns - t0);
    if (o->rev)
        fprintf(f, " rev %" PRId64, o->rev);
    if (note)
        fprintf(f, "  <- %s", note);
    fputc('\n', f);
}

static void print_finding(FILE *f, const struct lc_finding *fd, const struct lc_op *ops,
                          uint64_t t0)
{
    fprintf(f, "  key %" PRIu32 ": %s: %s", fd->key, lc_verdict_name(fd->verdict), fd->what);
    if (fd->key_ops) {
        fprintf(f, " (%" PRIu64 " steps; deepest partial linearization %zu of %zu ops", fd->steps,
                fd->linearized, fd->key_ops);
        if (fd->verdict == LC_VIOLATION) {
            fputs(", register ", f);
            print_value(f, fd->state);
        }
        fputc(')', f);
    }
    fputc('\n', f);
    if (fd->placed_last != NIL)
        print_op(f, ops, fd->placed_last, t0, "last op placed");
    for (size_t i = 0; i < fd->n_ops; i++) {
        const char *note = NULL;
        if (fd->key_ops)
            note = i == 0 ? "cannot be linearized by its completion" : "concurrent, not placed";
        else
            note = i == 0 ? "earlier" : "later";
        print_op(f, ops, fd->ops[i], t0, note);
    }
}

void lc_result_print(const struct lc_result *r, const struct lc_op *ops, size_t n, FILE *f)
{
    uint64_t t0 = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (ops[i].invoke_ns < t0)
            t0 = ops[i].invoke_ns;
    fprintf(f, "%s: %zu ops on %zu keys, %zu violations, %zu undecided keys",
            lc_verdict_name(r->verdict), n, r->n_keys, r->n_violations, r->n_unknown);
    if (r->steps)
        fprintf(f, ", %" PRIu64 " search steps", r->steps);
    fputs(" (times in ns since the first invocation)\n", f);
    for (size_t i = 0; i < r->n_findings; i++)
        print_finding(f, &r->findings[i], ops, t0);
    if (r->n_violations > LC_MAX_FINDINGS)
        fprintf(f, "  ... %zu more violations not shown\n", r->n_violations - LC_MAX_FINDINGS);
}
