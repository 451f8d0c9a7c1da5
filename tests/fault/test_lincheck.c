/* test_lincheck.c - the history checker on hand-made histories and on simulated registers.
 *
 * Hand-made histories pin each rule: what must pass, what is a violation, what is undecided.
 * The simulator runs a correct register under random concurrency, timeouts and refusals; every
 * seed must pass, and a planted stale read must be found. Times are in arbitrary ns.
 */
#include "lincheck.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- building histories ---- */

static struct lc_op put(uint32_t client, uint32_t key, uint64_t value, uint64_t inv, uint64_t cmp)
{
    return (struct lc_op){.client = client,
                          .key = key,
                          .kind = LC_PUT,
                          .outcome = LC_OK,
                          .value = value,
                          .invoke_ns = inv,
                          .complete_ns = cmp};
}

static struct lc_op get(uint32_t client, uint32_t key, uint64_t read, uint64_t inv, uint64_t cmp)
{
    return (struct lc_op){.client = client,
                          .key = key,
                          .kind = LC_GET,
                          .outcome = LC_OK,
                          .read = read,
                          .invoke_ns = inv,
                          .complete_ns = cmp};
}

static struct lc_op cas(uint32_t client, uint32_t key, uint64_t expect, uint64_t value,
                        bool swapped, uint64_t inv, uint64_t cmp)
{
    return (struct lc_op){.client = client,
                          .key = key,
                          .kind = LC_CAS,
                          .outcome = LC_OK,
                          .expect = expect,
                          .value = value,
                          .swapped = swapped,
                          .invoke_ns = inv,
                          .complete_ns = cmp};
}

static struct lc_op with_outcome(struct lc_op o, enum lc_outcome outcome)
{
    o.outcome = outcome;
    if (outcome == LC_INFO)
        o.complete_ns = 0;
    return o;
}

static struct lc_op with_rev(struct lc_op o, int64_t rev)
{
    o.rev = rev;
    return o;
}

/* lc_check with default limits; prints the report unless the history passes. A violation must
 * name a key of the history and the op that could not be placed. */
static enum lc_verdict check_with(const struct lc_op *h, size_t n, const struct lc_limits *lim)
{
    struct lc_result r;
    ck_assert_int_eq(lc_check(h, n, lim, &r), 0);
    if (r.verdict != LC_PASS)
        lc_result_print(&r, h, n, stdout);
    if (r.verdict == LC_VIOLATION) {
        ck_assert_uint_ge(r.n_findings, 1);
        ck_assert_uint_ge(r.findings[0].n_ops, 1);
        ck_assert_uint_lt(r.findings[0].ops[0], n);
        ck_assert_uint_eq(h[r.findings[0].ops[0]].key, r.findings[0].key);
    }
    enum lc_verdict v = r.verdict;
    lc_result_fini(&r);
    return v;
}

static enum lc_verdict check(const struct lc_op *h, size_t n)
{
    return check_with(h, n, NULL);
}

static enum lc_verdict check_revs(const struct lc_op *h, size_t n)
{
    struct lc_result r;
    ck_assert_int_eq(lc_check_revisions(h, n, &r), 0);
    if (r.verdict != LC_PASS)
        lc_result_print(&r, h, n, stdout);
    enum lc_verdict v = r.verdict;
    lc_result_fini(&r);
    return v;
}

/* ---- linearizable histories ---- */

START_TEST(sequential_history_passes)
{
    struct lc_op h[] = {
        get(0, 1, LC_ABSENT, 0, 10),   put(0, 1, 5, 20, 30),           get(1, 1, 5, 40, 50),
        cas(1, 1, 5, 6, true, 60, 70), cas(0, 1, 5, 7, false, 80, 90), get(0, 1, 6, 100, 110),
        put(2, 2, 8, 5, 15),           get(2, 2, 8, 120, 130),
    };
    ck_assert_int_eq(check(h, N(h)), LC_PASS);
}
END_TEST

START_TEST(overlapping_read_sees_either_value)
{
    uint64_t seen[] = {3, 4};
    for (size_t i = 0; i < N(seen); i++) {
        struct lc_op h[] = {
            put(0, 1, 3, 0, 10),
            put(0, 1, 4, 20, 100),
            get(1, 1, seen[i], 30, 40),
        };
        ck_assert_int_eq(check(h, N(h)), LC_PASS);
    }
}
END_TEST

START_TEST(concurrent_history_passes)
{
    /* Three clients; the reads order the concurrent writes 2 before 1, which is allowed since
     * they overlap; the CAS settles on 1's successor. */
    struct lc_op h[] = {
        put(0, 1, 1, 0, 50),  put(1, 1, 2, 10, 40),          get(2, 1, 2, 20, 30),
        get(2, 1, 1, 45, 60), cas(1, 1, 1, 3, true, 55, 80), cas(0, 1, 1, 4, false, 70, 90),
        get(2, 1, 3, 85, 95),
    };
    ck_assert_int_eq(check(h, N(h)), LC_PASS);
}
END_TEST

/* ---- violations ---- */

START_TEST(stale_read_is_a_violation)
{
    struct lc_op h[] = {
        put(0, 7, 1, 0, 10),
        put(0, 7, 2, 20, 30),
        get(1, 7, 1, 40, 50),
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
}
END_TEST

START_TEST(lost_write_is_a_violation)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),  put(1, 1, 2, 20, 30), get(2, 1, 1, 40, 50),
        get(0, 1, 1, 60, 70), get(1, 1, 1, 80, 90),
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
}
END_TEST

START_TEST(two_cas_from_one_value_is_a_violation)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),
        cas(1, 1, 1, 2, true, 20, 50),
        cas(2, 1, 1, 3, true, 25, 55),
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
}
END_TEST

START_TEST(violation_in_one_key_of_many)
{
    /* Keys are independent: key 2's history is fine, key 3's is not. */
    struct lc_op h[] = {
        put(0, 2, 1, 0, 10),
        put(1, 3, 5, 0, 10),
        get(0, 2, 1, 20, 30),
        get(1, 3, LC_ABSENT, 20, 30),
    };
    struct lc_result r;
    ck_assert_int_eq(lc_check(h, N(h), NULL, &r), 0);
    ck_assert_int_eq(r.verdict, LC_VIOLATION);
    ck_assert_uint_eq(r.n_keys, 2);
    ck_assert_uint_eq(r.n_violations, 1);
    ck_assert_uint_eq(r.findings[0].key, 3);
    lc_result_fini(&r);
}
END_TEST

/* ---- indeterminate and refused ops ---- */

START_TEST(info_put_seen_later_passes)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),      with_outcome(put(1, 1, 2, 20, 0), LC_INFO), get(2, 1, 1, 30, 40),
        get(2, 1, 2, 1000, 1010), /* it took effect long after the client gave up */
        get(0, 1, 2, 1020, 1030),
    };
    ck_assert_int_eq(check(h, N(h)), LC_PASS);
}
END_TEST

START_TEST(info_put_never_seen_passes)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),
        with_outcome(put(1, 1, 2, 20, 0), LC_INFO),
        with_outcome(cas(1, 1, 1, 3, false, 25, 0), LC_INFO),
        with_outcome(get(1, 1, 77, 26, 0), LC_INFO), /* no result: its value means nothing */
        get(2, 1, 1, 30, 40),
        get(0, 1, 1, 1000, 1010),
    };
    ck_assert_int_eq(check(h, N(h)), LC_PASS);
}
END_TEST

START_TEST(info_cas_may_take_effect)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),
        with_outcome(cas(1, 1, 1, 3, false, 20, 0), LC_INFO),
        get(2, 1, 3, 500, 510),
    };
    ck_assert_int_eq(check(h, N(h)), LC_PASS);
}
END_TEST

START_TEST(value_never_written_is_a_violation)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),
        with_outcome(put(1, 1, 2, 20, 0), LC_INFO),
        get(2, 1, 9, 30, 40),
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
}
END_TEST

START_TEST(info_put_seen_before_invoked_is_a_violation)
{
    struct lc_op h[] = {
        get(0, 1, 2, 0, 10),
        with_outcome(put(1, 1, 2, 20, 0), LC_INFO),
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
}
END_TEST

START_TEST(failed_put_seen_is_a_violation)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),
        with_outcome(put(1, 1, 2, 20, 30), LC_FAIL),
        get(2, 1, 2, 40, 50),
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
    /* The same history with the put not seen is fine. */
    h[2].read = 1;
    ck_assert_int_eq(check(h, N(h)), LC_PASS);
}
END_TEST

START_TEST(bad_times_are_refused)
{
    struct lc_op h[] = {put(0, 1, 1, 10, 5)};
    struct lc_result r;
    errno = 0;
    ck_assert_int_eq(lc_check(h, N(h), NULL, &r), -1);
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_int_eq(lc_check_revisions(h, N(h), &r), -1);
    ck_assert_int_eq(errno, EINVAL);
    h[0] = with_outcome(h[0], LC_INFO); /* an indeterminate op has no completion */
    ck_assert_int_eq(check(h, N(h)), LC_PASS);
}
END_TEST

/* ---- bounded search ---- */

/* Forty puts that all overlap, then a read of a value none wrote: proving the violation means
 * visiting every (subset, last put) pair, about 40 * 2^39 of them. */
static size_t pathological(struct lc_op *h)
{
    size_t n = 0;
    for (uint64_t i = 0; i < 40; i++)
        h[n++] = put((uint32_t)i, 1, i + 1, i, 100);
    h[n++] = get(40, 1, 999, 200, 300);
    h[n++] = put(0, 2, 1, 0, 10); /* another key, decided quickly */
    h[n++] = get(1, 2, 1, 20, 30);
    return n;
}

START_TEST(budget_exhausted_is_unknown)
{
    struct lc_op h[43];
    size_t n = pathological(h);
    struct lc_limits limits[] = {
        {.max_steps = 100000},
        {.max_ns = 20 * 1000000ull},
        {.max_bytes = 1 << 20},
    };
    const char *why[] = {"step budget exhausted", "time budget exhausted",
                         "memory budget exhausted"};
    for (size_t i = 0; i < N(limits); i++) {
        struct lc_result r;
        ck_assert_int_eq(lc_check(h, n, &limits[i], &r), 0);
        lc_result_print(&r, h, n, stdout);
        ck_assert_int_eq(r.verdict, LC_UNKNOWN);
        ck_assert_uint_eq(r.n_unknown, 1);
        ck_assert_uint_eq(r.n_violations, 0);
        ck_assert_uint_eq(r.n_findings, 1);
        ck_assert_uint_eq(r.findings[0].key, 1);
        ck_assert_str_eq(r.findings[0].what, why[i]);
        lc_result_fini(&r);
    }
}
END_TEST

START_TEST(tiny_budget_never_passes)
{
    struct lc_op h[] = {
        put(0, 1, 1, 0, 10),
        get(1, 1, 1, 20, 30),
        get(1, 1, 1, 40, 50),
    };
    struct lc_limits lim = {.max_steps = 2};
    ck_assert_int_eq(check_with(h, N(h), &lim), LC_UNKNOWN);
    lim.max_steps = 100;
    ck_assert_int_eq(check_with(h, N(h), &lim), LC_PASS);
}
END_TEST

/* ---- revisions ---- */

START_TEST(proper_revisions_pass)
{
    struct lc_op h[] = {
        with_rev(put(0, 1, 1, 0, 10), 2),  with_rev(put(1, 2, 2, 5, 30), 4),
        with_rev(put(2, 1, 3, 6, 25), 3),  with_rev(get(0, 1, 3, 40, 50), 3),
        with_rev(get(1, 1, 3, 60, 70), 3), with_rev(cas(2, 1, 3, 4, true, 80, 90), 5),
        with_rev(get(0, 2, 2, 95, 99), 4), cas(2, 1, 3, 4, false, 100, 110),
        get(0, 1, LC_ABSENT, 120, 130),
    };
    ck_assert_int_eq(check_revs(h, N(h)), LC_PASS);
}
END_TEST

/* One history per revision rule, each broken once; the finding must name that rule. */
START_TEST(each_revision_rule_is_enforced)
{
    struct {
        const char *what;
        struct lc_op h[3];
        size_t n;
    } cases[] = {
        {"two writes share a revision",
         {with_rev(put(0, 1, 1, 0, 10), 2), with_rev(put(1, 2, 2, 5, 15), 2)},
         2},
        {"a write invoked after another completed has a smaller revision",
         {with_rev(put(0, 1, 1, 0, 10), 5), with_rev(put(1, 2, 2, 20, 30), 4)},
         2},
        {"a read went back in time: older mod_revision than an earlier read",
         {with_rev(get(1, 1, 2, 40, 50), 3), with_rev(get(2, 1, 1, 60, 70), 2)},
         2},
        /* The read completed before the write began, yet read its revision. */
        {"a write invoked after a read completed is not above the revision read",
         {with_rev(get(1, 1, 1, 0, 10), 7), with_rev(put(0, 1, 1, 20, 30), 7)},
         2},
        {"a read missed a write that completed before it began",
         {with_rev(put(0, 1, 1, 0, 10), 2), with_rev(put(0, 1, 2, 20, 30), 3),
          with_rev(get(1, 1, 1, 40, 50), 2)},
         3},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct lc_result r;
        ck_assert_int_eq(lc_check_revisions(cases[i].h, cases[i].n, &r), 0);
        lc_result_print(&r, cases[i].h, cases[i].n, stdout);
        ck_assert_int_eq(r.verdict, LC_VIOLATION);
        ck_assert_uint_eq(r.n_findings, 1);
        ck_assert_str_eq(r.findings[0].what, cases[i].what);
        ck_assert_uint_eq(r.findings[0].n_ops, 2);
        lc_result_fini(&r);
    }
    /* Overlapping, the second case's revisions are fine. */
    cases[1].h[1].invoke_ns = 5;
    ck_assert_int_eq(check_revs(cases[1].h, cases[1].n), LC_PASS);
}
END_TEST

/* ---- the report ---- */

START_TEST(report_names_the_key_and_the_ops)
{
    struct lc_op h[] = {
        put(0, 7, 11, 1000, 1010),
        put(1, 7, 12, 1020, 1030),
        get(2, 7, 11, 1040, 1050),
    };
    struct lc_result r;
    ck_assert_int_eq(lc_check(h, N(h), NULL, &r), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    lc_result_print(&r, h, N(h), f);
    fclose(f);
    fputs(text, stdout);
    ck_assert_ptr_nonnull(strstr(text, "violation: 3 ops on 1 keys"));
    ck_assert_ptr_nonnull(strstr(text, "key 7: violation: no linearization"));
    ck_assert_ptr_nonnull(strstr(text, "register 12"));
    ck_assert_ptr_nonnull(
        strstr(text, "op 2 client 2 GET -> 11 ok [40, 50]  <- cannot be linearized"));
    ck_assert_ptr_nonnull(strstr(text, "op 1 client 1 PUT 12 ok [20, 30]  <- last op placed"));
    free(text);
    lc_result_fini(&r);
}
END_TEST

/* ---- a simulated register ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

struct sim_cfg {
    size_t n_ops;
    uint32_t keys;
    uint32_t clients;
    unsigned info_pct;
    unsigned fail_pct;
};

struct sim_op {
    uint64_t at;  /* when it took effect */
    bool applied; /* whether it took effect */
    size_t idx;
};

static int sim_op_cmp(const void *a, const void *b)
{
    const struct sim_op *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* The most recent value written to key by the ops generated so far, or LC_ABSENT. */
static uint64_t last_written(const struct lc_op *h, size_t n, uint32_t key)
{
    for (size_t i = n; i-- > 0;)
        if (h[i].key == key && h[i].kind != LC_GET)
            return h[i].value;
    return LC_ABSENT;
}

/* Run a correct register: each client sends one request at a time; each takes effect at one
 * instant between its invocation and its completion (an indeterminate one at any later
 * instant, or never; a refused one never). Writes take revisions in the order they take
 * effect. Returns the history (caller frees). */
static struct lc_op *simulate(const struct sim_cfg *cfg, uint64_t seed)
{
    uint64_t rng = seed * 0x9e3779b97f4a7c15ull + 1;
    struct lc_op *h = calloc(cfg->n_ops, sizeof(*h));
    struct sim_op *eff = calloc(cfg->n_ops, sizeof(*eff));
    uint64_t *clock = calloc(cfg->clients, sizeof(*clock));
    ck_assert(h && eff && clock);
    for (size_t i = 0; i < cfg->n_ops; i++) {
        uint32_t c = 0;
        for (uint32_t j = 1; j < cfg->clients; j++)
            if (clock[j] < clock[c])
                c = j;
        uint64_t inv = clock[c] + rng_below(&rng, 20);
        uint64_t dur = 1 + rng_below(&rng, 200);
        uint32_t key = (uint32_t)rng_below(&rng, cfg->keys);
        uint64_t roll = rng_below(&rng, 10);
        struct lc_op *o = &h[i];
        if (roll < 4) {
            *o = put(c, key, i + 1, inv, inv + dur);
        } else if (roll < 8) {
            *o = get(c, key, LC_ABSENT, inv, inv + dur);
        } else {
            uint64_t expect = rng_below(&rng, 4) ? last_written(h, i, key) : LC_ABSENT;
            *o = cas(c, key, expect, i + 1, false, inv, inv + dur);
        }
        eff[i] = (struct sim_op){.at = inv + rng_below(&rng, dur + 1), .applied = true, .idx = i};
        unsigned pct = (unsigned)rng_below(&rng, 100);
        if (pct < cfg->info_pct) {
            *o = with_outcome(*o, LC_INFO);
            eff[i].at = inv + rng_below(&rng, 3 * dur + 1);
            eff[i].applied = rng_below(&rng, 2);
        } else if (pct < cfg->info_pct + cfg->fail_pct) {
            o->outcome = LC_FAIL;
            eff[i].applied = false;
        }
        clock[c] = inv + dur;
    }
    qsort(eff, cfg->n_ops, sizeof(*eff), sim_op_cmp);
    uint64_t *value = calloc(cfg->keys, sizeof(*value));
    int64_t *mod_rev = calloc(cfg->keys, sizeof(*mod_rev));
    ck_assert(value && mod_rev);
    int64_t rev = 1;
    for (size_t i = 0; i < cfg->n_ops; i++) {
        if (!eff[i].applied)
            continue;
        struct lc_op *o = &h[eff[i].idx];
        bool writes = o->kind == LC_PUT || (o->kind == LC_CAS && value[o->key] == o->expect);
        if (o->kind == LC_GET) {
            o->read = value[o->key];
            o->rev = mod_rev[o->key];
        }
        if (o->kind == LC_CAS)
            o->swapped = writes;
        if (writes) {
            value[o->key] = o->value;
            mod_rev[o->key] = ++rev;
            if (o->outcome == LC_OK)
                o->rev = rev;
        }
    }
    free(value);
    free(mod_rev);
    free(clock);
    free(eff);
    return h;
}

static bool ok_write(const struct lc_op *o)
{
    return o->outcome == LC_OK && (o->kind == LC_PUT || (o->kind == LC_CAS && o->swapped));
}

/* Plant a stale read: a GET that began after a write W completed returns the value of a write
 * P that completed before W began. Values are unique, so no linearization explains it.
 * Returns false if the history has no such GET. */
static bool plant_stale_read(struct lc_op *h, size_t n)
{
    for (size_t r = n; r-- > 0;) {
        if (h[r].kind != LC_GET || h[r].outcome != LC_OK)
            continue;
        for (size_t w = 0; w < n; w++) {
            if (h[w].key != h[r].key || !ok_write(&h[w]) || h[w].complete_ns >= h[r].invoke_ns)
                continue;
            for (size_t p = 0; p < n; p++) {
                if (h[p].key != h[r].key || !ok_write(&h[p]) || h[p].complete_ns >= h[w].invoke_ns)
                    continue;
                h[r].read = h[p].value;
                h[r].rev = h[p].rev;
                return true;
            }
        }
    }
    return false;
}

static const struct sim_cfg small_cfg = {
    .n_ops = 300, .keys = 3, .clients = 6, .info_pct = 5, .fail_pct = 3};

START_TEST(simulated_correct_register_passes)
{
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct lc_op *h = simulate(&small_cfg, seed);
        enum lc_verdict lin = check(h, small_cfg.n_ops);
        enum lc_verdict revs = check_revs(h, small_cfg.n_ops);
        if (lin != LC_PASS || revs != LC_PASS)
            printf("seed %llu: lincheck %s, revisions %s\n", (unsigned long long)seed,
                   lc_verdict_name(lin), lc_verdict_name(revs));
        ck_assert_int_eq(lin, LC_PASS);
        ck_assert_int_eq(revs, LC_PASS);
        free(h);
    }
}
END_TEST

START_TEST(simulated_stale_read_is_found)
{
    int planted = 0;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        struct lc_op *h = simulate(&small_cfg, seed);
        if (plant_stale_read(h, small_cfg.n_ops)) {
            planted++;
            enum lc_verdict lin = check(h, small_cfg.n_ops);
            enum lc_verdict revs = check_revs(h, small_cfg.n_ops);
            if (lin != LC_VIOLATION || revs != LC_VIOLATION)
                printf("seed %llu: stale read missed: lincheck %s, revisions %s\n",
                       (unsigned long long)seed, lc_verdict_name(lin), lc_verdict_name(revs));
            ck_assert_int_eq(lin, LC_VIOLATION);
            ck_assert_int_eq(revs, LC_VIOLATION);
        }
        free(h);
    }
    ck_assert_int_ge(planted, 40);
}
END_TEST

START_TEST(ten_keys_of_two_thousand_ops)
{
    /* The campaign's size: 10 keys x 2,000 ops, 8 clients, 2 % indeterminate. Not a timed
     * assertion (sanitizers and shared machines vary): the time is printed. */
    const struct sim_cfg cfg = {
        .n_ops = 20000, .keys = 10, .clients = 8, .info_pct = 2, .fail_pct = 1};
    struct lc_op *h = simulate(&cfg, 42);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct lc_result r;
    ck_assert_int_eq(lc_check(h, cfg.n_ops, NULL, &r), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("lincheck: %zu ops on %zu keys checked in %.1f ms, %llu steps\n", cfg.n_ops, r.n_keys,
           ms, (unsigned long long)r.steps);
    if (r.verdict != LC_PASS)
        lc_result_print(&r, h, cfg.n_ops, stdout);
    ck_assert_int_eq(r.verdict, LC_PASS);
    lc_result_fini(&r);
    free(h);
}
END_TEST

int main(void)
{
    /* Check ends a failed test with _exit in its child: reports printed before the failed
     * assertion must not wait in a buffer. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    Suite *s = suite_create("lincheck");
    TCase *tc = tcase_create("linearizable");
    tcase_add_test(tc, sequential_history_passes);
    tcase_add_test(tc, overlapping_read_sees_either_value);
    tcase_add_test(tc, concurrent_history_passes);
    suite_add_tcase(s, tc);

    tc = tcase_create("violation");
    tcase_add_test(tc, stale_read_is_a_violation);
    tcase_add_test(tc, lost_write_is_a_violation);
    tcase_add_test(tc, two_cas_from_one_value_is_a_violation);
    tcase_add_test(tc, violation_in_one_key_of_many);
    suite_add_tcase(s, tc);

    tc = tcase_create("outcome");
    tcase_add_test(tc, info_put_seen_later_passes);
    tcase_add_test(tc, info_put_never_seen_passes);
    tcase_add_test(tc, info_cas_may_take_effect);
    tcase_add_test(tc, value_never_written_is_a_violation);
    tcase_add_test(tc, info_put_seen_before_invoked_is_a_violation);
    tcase_add_test(tc, failed_put_seen_is_a_violation);
    tcase_add_test(tc, bad_times_are_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("budget");
    tcase_add_test(tc, budget_exhausted_is_unknown);
    tcase_add_test(tc, tiny_budget_never_passes);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("revisions");
    tcase_add_test(tc, proper_revisions_pass);
    tcase_add_test(tc, each_revision_rule_is_enforced);
    suite_add_tcase(s, tc);

    tc = tcase_create("report");
    tcase_add_test(tc, report_names_the_key_and_the_ops);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, simulated_correct_register_passes);
    tcase_add_test(tc, simulated_stale_read_is_found);
    tcase_add_test(tc, ten_keys_of_two_thousand_ops);
    tcase_set_timeout(tc, 100);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
