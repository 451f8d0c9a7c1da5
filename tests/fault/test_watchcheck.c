/* test_watchcheck.c - the watch checker on hand-made watch streams and on simulated ones.
 *
 * Each guarantee has streams that keep it and streams that break it; a breach must be reported
 * under its own guarantee, so a checker that always says "pass" fails this suite. The
 * simulator delivers a random keyspace history faithfully to random watches (every seed must
 * pass) and then plants one fault (which must be found).
 */
#include "watchcheck.h"
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the history most tests use ----
 *
 *  idx rev  event                 idx rev  event
 *   0   2   PUT a=a1               6   7   PUT b=b2
 *   1   3   PUT b=b1               7   8   PUT x/1=x1  (txn)
 *   2   4   PUT a=a2  (txn)        8   8   PUT b=b3    (txn)
 *   3   4   PUT c=c1  (txn)        9   8   PUT x/2=x2  (txn)
 *   4   5   DELETE b              10   9   DELETE c
 *   5   6   PUT a=a3              11  10   PUT x/3=x3
 */
static void history(struct wc_truth *t)
{
    struct wc_event e[] = {
        wc_event_put("a", "a1", 2, 2, 1), wc_event_put("b", "b1", 3, 3, 1),
        wc_event_put("a", "a2", 4, 2, 2), wc_event_put("c", "c1", 4, 4, 1),
        wc_event_delete("b", 5),          wc_event_put("a", "a3", 6, 2, 3),
        wc_event_put("b", "b2", 7, 7, 1), wc_event_put("x/1", "x1", 8, 8, 1),
        wc_event_put("b", "b3", 8, 7, 2), wc_event_put("x/2", "x2", 8, 8, 1),
        wc_event_delete("c", 9),          wc_event_put("x/3", "x3", 10, 10, 1),
    };
    ck_assert_int_eq(wc_truth_build(t, e, N(e)), 0);
    ck_assert_uint_eq(t->n, N(e));
}

/* ---- recording watches ---- */

static void watch_key(struct wc_watch *w, const char *key, int64_t start)
{
    ck_assert_int_eq(wc_watch_init(w, key, strlen(key), NULL, 0, start), 0);
}

static void watch_range(struct wc_watch *w, const char *key, const char *end, int64_t start)
{
    ck_assert_int_eq(wc_watch_init(w, key, strlen(key), end, strlen(end), start), 0);
}

static void watch_prefix(struct wc_watch *w, const char *prefix, int64_t start)
{
    ck_assert_int_eq(wc_watch_init_prefix(w, prefix, strlen(prefix), start), 0);
}

/* One response holding the truth events idx[0..n), header revision the last one's. */
static void send_idx(struct wc_watch *w, const struct wc_truth *t, const size_t *idx, size_t n)
{
    struct wc_event evs[16];
    ck_assert_uint_le(n, N(evs));
    int64_t header = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_lt(idx[i], t->n);
        evs[i] = t->events[idx[i]];
        header = evs[i].revision;
    }
    ck_assert_int_eq(wc_watch_add_events(w, header, evs, n), 0);
}

#define SEND(w, t, ...)                                                                            \
    send_idx((w), (t), (const size_t[]){__VA_ARGS__},                                              \
             sizeof((const size_t[]){__VA_ARGS__}) / sizeof(size_t))

static void progress(struct wc_watch *w, int64_t rev)
{
    ck_assert_int_eq(wc_watch_add_progress(w, rev), 0);
}

static void free_watches(struct wc_watch *ws, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wc_watch_free(&ws[i]);
}

/* ---- checking ---- */

/* wc_check must succeed and its result be consistent; prints the report unless it passes. */
static void check(const struct wc_truth *t, const struct wc_watch *ws, size_t n,
                  struct wc_result *r)
{
    ck_assert_int_eq(wc_check(t, ws, n, r), 0);
    if (r->verdict != WC_PASS)
        wc_result_print(r, stdout);
    size_t sum = 0;
    for (int g = 0; g < WC_N_GUARANTEES; g++)
        sum += r->violations[g];
    ck_assert_uint_eq(sum, r->n_violations);
    ck_assert_int_eq(r->verdict, r->n_violations ? WC_VIOLATION : WC_PASS);
    ck_assert_uint_eq(r->n_findings,
                      r->n_violations < WC_MAX_FINDINGS ? r->n_violations : WC_MAX_FINDINGS);
    for (size_t i = 0; i < r->n_findings; i++) {
        ck_assert_uint_lt(r->findings[i].watch, n);
        ck_assert_ptr_nonnull(strstr(r->findings[i].msg, "watch "));
    }
}

/* How many watches broke guarantee g. */
static size_t broken(const struct wc_truth *t, const struct wc_watch *ws, size_t n,
                     enum wc_guarantee g)
{
    struct wc_result r;
    check(t, ws, n, &r);
    size_t v = r.violations[g];
    wc_result_fini(&r);
    return v;
}

static void assert_pass(const struct wc_truth *t, const struct wc_watch *ws, size_t n)
{
    struct wc_result r;
    check(t, ws, n, &r);
    ck_assert_int_eq(r.verdict, WC_PASS);
    ck_assert_uint_eq(r.n_violations, 0);
    wc_result_fini(&r);
}

/* The single finding of the check must be of guarantee g on watch wi. */
static void assert_only(const struct wc_truth *t, const struct wc_watch *ws, size_t n,
                        enum wc_guarantee g, size_t wi)
{
    struct wc_result r;
    check(t, ws, n, &r);
    ck_assert_int_eq(r.verdict, WC_VIOLATION);
    ck_assert_uint_eq(r.violations[g], 1);
    ck_assert_uint_eq(r.n_violations, 1);
    ck_assert_int_eq(r.findings[0].rule, g);
    ck_assert_uint_eq(r.findings[0].watch, wi);
    wc_result_fini(&r);
}

/* ---- faithful streams ---- */

START_TEST(faithful_watches_pass)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[5];
    /* every key from rev 1, one response per revision, a progress notification at the end */
    watch_prefix(&w[0], "", 1);
    SEND(&w[0], &t, 0);
    SEND(&w[0], &t, 1);
    SEND(&w[0], &t, 2, 3);
    SEND(&w[0], &t, 4);
    SEND(&w[0], &t, 5, 6);
    SEND(&w[0], &t, 7, 8, 9);
    SEND(&w[0], &t, 10, 11);
    progress(&w[0], 12);
    /* key a from "now" (rev 3) */
    watch_key(&w[1], "a", 0);
    progress(&w[1], 3);
    SEND(&w[1], &t, 2);
    SEND(&w[1], &t, 5);
    /* prefix x/ from rev 8, ended early */
    watch_prefix(&w[2], "x/", 8);
    SEND(&w[2], &t, 7, 9);
    /* range [a, c) from rev 3 */
    watch_range(&w[3], "a", "c", 3);
    SEND(&w[3], &t, 1, 2);
    SEND(&w[3], &t, 4);
    progress(&w[3], 5);
    SEND(&w[3], &t, 5, 6, 8);
    /* keys >= c from rev 9: c's delete and x/3 */
    ck_assert_int_eq(wc_watch_init(&w[4], "c", 1, "\0", 1, 9), 0);
    SEND(&w[4], &t, 10);
    SEND(&w[4], &t, 11);
    assert_pass(&t, w, N(w));
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(empty_watches_pass)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[3];
    watch_key(&w[0], "a", 0); /* no response at all */
    watch_key(&w[1], "a", 7); /* nothing happened to a after rev 6 */
    progress(&w[1], 12);
    watch_prefix(&w[2], "zz", 1); /* a prefix no key has */
    /* etcd's "created" response: no events */
    ck_assert_int_eq(wc_watch_add_events(&w[2], 1, NULL, 0), 0);
    progress(&w[2], 10);
    assert_pass(&t, w, N(w));
    /* and an empty truth */
    struct wc_truth none;
    wc_truth_init(&none);
    assert_pass(&none, w, N(w));
    assert_pass(&none, NULL, 0);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(txn_in_one_response_passes)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[3];
    watch_prefix(&w[0], "", 8); /* all three keys of rev 8 in one response */
    SEND(&w[0], &t, 7, 8, 9);
    watch_key(&w[1], "b", 8); /* only b of rev 8 matches: alone is whole */
    SEND(&w[1], &t, 8);
    watch_prefix(&w[2], "x/", 8); /* x/1 and x/2 of rev 8, then x/3 */
    SEND(&w[2], &t, 7, 9, 11);
    assert_pass(&t, w, N(w));
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(binary_keys_and_prefix_ends)
{
    /* prefix "k\xff" ends at "l"; a prefix of 0xff bytes covers every key from it on */
    struct wc_watch w;
    watch_prefix(&w, "k\xff", 0);
    ck_assert(wc_watch_matches(&w, "k\xff", 2));
    ck_assert(wc_watch_matches(&w, "k\xff\xff\x01", 4));
    ck_assert(!wc_watch_matches(&w, "l", 1));
    ck_assert(!wc_watch_matches(&w, "k", 1));
    ck_assert_uint_eq(w.range_end_len, 1);
    ck_assert_int_eq(w.range_end[0], 'l');
    wc_watch_free(&w);
    watch_prefix(&w, "\xff\xff", 0);
    ck_assert(wc_watch_matches(&w, "\xff\xff\xff", 3));
    ck_assert(!wc_watch_matches(&w, "\xff", 1));
    wc_watch_free(&w);
    watch_prefix(&w, "", 0);
    ck_assert(wc_watch_matches(&w, "\0", 1));
    ck_assert(wc_watch_matches(&w, "anything", 8));
    wc_watch_free(&w);
    /* a key with a zero byte inside, exact */
    ck_assert_int_eq(wc_watch_init(&w, "a\0b", 3, NULL, 0, 0), 0);
    ck_assert(wc_watch_matches(&w, "a\0b", 3));
    ck_assert(!wc_watch_matches(&w, "a", 1));
    wc_watch_free(&w);
}
END_TEST

/* ---- ordered ---- */

START_TEST(revision_going_back_is_unordered)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_key(&w[0], "a", 0);
    SEND(&w[0], &t, 2, 0); /* rev 4 then rev 2 in one response */
    watch_key(&w[1], "a", 0);
    SEND(&w[1], &t, 5);
    SEND(&w[1], &t, 2); /* rev 6 then rev 4 */
    ck_assert_uint_eq(broken(&t, w, 1, WC_ORDERED), 1);
    ck_assert_uint_eq(broken(&t, w + 1, 1, WC_ORDERED), 1);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(txn_out_of_truth_order_is_unordered)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_prefix(&w[0], "", 0);
    SEND(&w[0], &t, 2, 3);
    watch_prefix(&w[1], "", 0);
    SEND(&w[1], &t, 3, 2); /* c before a: the truth applied a first */
    assert_pass(&t, w, 1);
    assert_only(&t, w + 1, 1, WC_ORDERED, 0);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

/* ---- unique ---- */

START_TEST(event_delivered_twice_is_not_unique)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_key(&w[0], "a", 0);
    SEND(&w[0], &t, 0);
    SEND(&w[0], &t, 2);
    SEND(&w[0], &t, 5);
    watch_key(&w[1], "a", 0);
    SEND(&w[1], &t, 0);
    SEND(&w[1], &t, 2);
    SEND(&w[1], &t, 2); /* rev 4 again */
    assert_pass(&t, w, 1);
    assert_only(&t, w, 2, WC_UNIQUE, 1);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(unknown_event_delivered_twice_is_not_unique)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w;
    watch_key(&w, "q", 0);
    struct wc_event ghost = wc_event_put("q", "q1", 3, 3, 1);
    ck_assert_int_eq(wc_watch_add_events(&w, 3, &ghost, 1), 0);
    ck_assert_int_eq(wc_watch_add_events(&w, 3, &ghost, 1), 0);
    ck_assert_uint_eq(broken(&t, &w, 1, WC_UNIQUE), 1);
    ck_assert_uint_eq(broken(&t, &w, 1, WC_VALUES), 1); /* not in the truth */
    wc_watch_free(&w);
    wc_truth_free(&t);
}
END_TEST

/* ---- atomic ---- */

START_TEST(txn_split_across_responses_is_not_atomic)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_prefix(&w[0], "", 8);
    SEND(&w[0], &t, 7, 8);
    SEND(&w[0], &t, 9); /* x/2 of rev 8 in the next response */
    watch_prefix(&w[1], "", 0);
    SEND(&w[1], &t, 2);
    SEND(&w[1], &t, 3, 4); /* c of rev 4 apart from a, with rev 5 */
    ck_assert_uint_eq(broken(&t, w, 1, WC_ATOMIC), 1);
    ck_assert_uint_eq(broken(&t, w + 1, 1, WC_ATOMIC), 1);
    /* the events are all there, in order, once: nothing else is broken */
    assert_only(&t, w, 1, WC_ATOMIC, 0);
    assert_only(&t, w + 1, 1, WC_ATOMIC, 0);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(part_of_a_txn_alone_is_not_atomic)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w;
    watch_range(&w, "a", "d", 0);
    SEND(&w, &t, 2); /* a of rev 4 without c */
    SEND(&w, &t, 4);
    ck_assert_uint_eq(broken(&t, &w, 1, WC_ATOMIC), 1);
    wc_watch_free(&w);
    wc_truth_free(&t);
}
END_TEST

/* ---- reliable ---- */

START_TEST(gap_between_events_is_unreliable)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_key(&w[0], "a", 0); /* from "now" = 3: rev 4 and 6 */
    SEND(&w[0], &t, 2);
    SEND(&w[0], &t, 5);
    watch_key(&w[1], "a", 0);
    SEND(&w[1], &t, 0);
    SEND(&w[1], &t, 5); /* rev 4 missing */
    assert_pass(&t, w, 1);
    assert_only(&t, w + 1, 1, WC_RELIABLE, 0);
    free_watches(w, N(w));
    /* a gap at the last revision received: c of rev 4 (and so not atomic either) */
    watch_range(&w[0], "a", "d", 0);
    SEND(&w[0], &t, 0);
    SEND(&w[0], &t, 1);
    SEND(&w[0], &t, 2);
    ck_assert_uint_eq(broken(&t, w, 1, WC_RELIABLE), 1);
    ck_assert_uint_eq(broken(&t, w, 1, WC_ATOMIC), 1);
    wc_watch_free(&w[0]);
    wc_truth_free(&t);
}
END_TEST

START_TEST(gap_after_start_revision_is_unreliable)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w;
    watch_key(&w, "a", 3); /* must see rev 4 */
    SEND(&w, &t, 5);
    ck_assert_uint_eq(broken(&t, &w, 1, WC_RELIABLE), 1);
    ck_assert_uint_eq(broken(&t, &w, 1, WC_RESUMABLE), 1);
    wc_watch_free(&w);
    wc_truth_free(&t);
}
END_TEST

START_TEST(compacted_watch_is_excused_from_history)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    for (int i = 0; i < 2; i++) {
        watch_key(&w[i], "a", 1); /* revisions 2 and 4 were compacted away */
        SEND(&w[i], &t, 5);
    }
    ck_assert_int_eq(wc_watch_add_cancel(&w[0], 10, 5), 0);
    struct wc_result r;
    check(&t, w, 1, &r);
    ck_assert_int_eq(r.verdict, WC_PASS);
    ck_assert_uint_eq(r.n_compacted, 1);
    wc_result_fini(&r);
    ck_assert_uint_eq(broken(&t, w + 1, 1, WC_RELIABLE), 1);
    ck_assert_uint_eq(broken(&t, w + 1, 1, WC_RESUMABLE), 1);
    /* a plain cancel (no compact revision) excuses nothing */
    ck_assert_int_eq(wc_watch_add_cancel(&w[1], 10, 0), 0);
    ck_assert_uint_eq(broken(&t, w + 1, 1, WC_RELIABLE), 1);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

/* ---- resumable ---- */

START_TEST(resumed_watch_gets_the_suffix)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[3];
    watch_key(&w[0], "b", 5); /* delete at 5, puts at 7 and 8 */
    SEND(&w[0], &t, 4);
    SEND(&w[0], &t, 6);
    SEND(&w[0], &t, 8);
    watch_key(&w[1], "b", 5); /* ended after the first */
    SEND(&w[1], &t, 4);
    watch_key(&w[2], "b", 4); /* nothing at 4: starts at 5 all the same */
    SEND(&w[2], &t, 4);
    SEND(&w[2], &t, 6);
    assert_pass(&t, w, N(w));
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(event_before_start_is_not_resumable)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_key(&w[0], "b", 5);
    SEND(&w[0], &t, 1); /* rev 3 < 5 */
    SEND(&w[0], &t, 4);
    watch_key(&w[1], "b", 5);
    SEND(&w[1], &t, 6); /* starts at 7: the delete at 5 is skipped */
    assert_only(&t, w, 1, WC_RESUMABLE, 0);
    ck_assert_uint_eq(broken(&t, w + 1, 1, WC_RESUMABLE), 1);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

/* ---- progress ---- */

START_TEST(progress_at_exact_revision_passes)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_key(&w[0], "a", 2);
    progress(&w[0], 1);
    SEND(&w[0], &t, 0);
    progress(&w[0], 2); /* exactly the event's revision */
    progress(&w[0], 3);
    SEND(&w[0], &t, 2);
    progress(&w[0], 4);
    progress(&w[0], 5);
    SEND(&w[0], &t, 5);
    progress(&w[0], 6);
    watch_key(&w[1], "a", 0); /* from "now": progress before its first event */
    progress(&w[1], 5);
    SEND(&w[1], &t, 5);
    progress(&w[1], 10);
    assert_pass(&t, w, N(w));
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

START_TEST(progress_ahead_of_events_is_a_violation)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[5];
    watch_key(&w[0], "a", 2);
    SEND(&w[0], &t, 0);
    progress(&w[0], 4); /* rev 4 not delivered yet */
    SEND(&w[0], &t, 2);
    watch_key(&w[1], "a", 0); /* from "now": an event at or below an earlier progress */
    progress(&w[1], 6);
    SEND(&w[1], &t, 5);
    watch_key(&w[2], "a", 4); /* explicit start, nothing delivered, progress claims 6 */
    progress(&w[2], 6);
    watch_key(&w[3], "a", 2); /* progress at exactly the revision of an event never sent */
    SEND(&w[3], &t, 0);
    progress(&w[3], 4);
    watch_key(&w[4], "a", 5); /* an event at exactly the revision of an earlier progress */
    progress(&w[4], 4);
    SEND(&w[4], &t, 2);
    for (size_t i = 0; i < 4; i++)
        assert_only(&t, w + i, 1, WC_PROGRESS, 0);
    ck_assert_uint_eq(broken(&t, w + 4, 1, WC_PROGRESS), 1); /* and resumable */
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

/* ---- values and filter ---- */

START_TEST(changed_fields_are_wrong_values)
{
    struct wc_truth t;
    history(&t);
    struct wc_event good = t.events[2]; /* rev 4 PUT a=a2, create 2, version 2 */
    struct wc_event bad[6];
    for (size_t i = 0; i < N(bad); i++)
        bad[i] = good;
    bad[0].value = "a9";
    bad[1].version = 3;
    bad[2].create_revision = 4;
    bad[3].mod_revision = 3;
    bad[4].type = WC_DELETE;
    bad[5].lease = 7;
    struct wc_watch w;
    watch_key(&w, "a", 3);
    ck_assert_int_eq(wc_watch_add_events(&w, 4, &good, 1), 0);
    assert_pass(&t, &w, 1);
    wc_watch_free(&w);
    for (size_t i = 0; i < N(bad); i++) {
        watch_key(&w, "a", 3);
        ck_assert_int_eq(wc_watch_add_events(&w, 4, &bad[i], 1), 0);
        assert_only(&t, &w, 1, WC_VALUES, 0);
        wc_watch_free(&w);
    }
    wc_truth_free(&t);
}
END_TEST

START_TEST(event_outside_range_is_filtered_out)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_prefix(&w[0], "x/", 8);
    SEND(&w[0], &t, 7, 8, 9); /* b of the txn does not match x/ */
    watch_range(&w[1], "a", "c", 4);
    SEND(&w[1], &t, 2, 3); /* c is outside [a, c) */
    ck_assert_uint_eq(broken(&t, w, 1, WC_FILTER), 1);
    ck_assert_uint_eq(broken(&t, w + 1, 1, WC_FILTER), 1);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

/* ---- inputs and the report ---- */

START_TEST(bad_truth_is_refused)
{
    struct wc_truth t;
    wc_truth_init(&t);
    struct wc_event a = wc_event_put("a", "1", 3, 3, 1), b = wc_event_put("b", "1", 2, 2, 1);
    ck_assert_int_eq(wc_truth_add(&t, &a), 0);
    ck_assert_int_eq(wc_truth_add(&t, &b), 0); /* out of revision order */
    struct wc_result r;
    errno = 0;
    ck_assert_int_eq(wc_check(&t, NULL, 0, &r), -1);
    ck_assert_int_eq(errno, EINVAL);
    wc_truth_free(&t);
    /* built, the same events are sorted */
    struct wc_event evs[] = {a, b};
    ck_assert_int_eq(wc_truth_build(&t, evs, N(evs)), 0);
    ck_assert_int_eq(t.events[0].revision, 2);
    ck_assert_int_eq(wc_check(&t, NULL, 0, &r), 0);
    wc_result_fini(&r);
    /* one key twice in one revision */
    ck_assert_int_eq(wc_truth_add(&t, &a), 0);
    ck_assert_int_eq(wc_check(&t, NULL, 0, &r), -1);
    ck_assert_int_eq(errno, EINVAL);
    wc_truth_free(&t);
    /* an empty key */
    struct wc_event empty = wc_event_put("", "1", 1, 1, 1);
    ck_assert_int_eq(wc_truth_add(&t, &empty), -1);
    ck_assert_int_eq(errno, EINVAL);
    struct wc_watch w;
    ck_assert_int_eq(wc_watch_init(&w, "", 0, NULL, 0, 0), -1);
    ck_assert_int_eq(wc_watch_init(&w, "a", 1, NULL, 0, -1), -1);
    wc_truth_free(&t);
}
END_TEST

START_TEST(report_names_watch_event_and_revision)
{
    struct wc_truth t;
    history(&t);
    struct wc_watch w[2];
    watch_key(&w[0], "a", 0);
    SEND(&w[0], &t, 0);
    watch_key(&w[1], "a", 0);
    w[1].id = 77;
    w[1].member = 3;
    SEND(&w[1], &t, 0);
    SEND(&w[1], &t, 5); /* rev 4 missing */
    struct wc_result r;
    check(&t, w, N(w), &r);
    ck_assert_uint_eq(r.n_findings, 1);
    ck_assert_uint_eq(r.findings[0].watch, 1);
    ck_assert_uint_eq(r.findings[0].truth, 2);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    wc_result_print(&r, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(text, "violation"));
    ck_assert_ptr_nonnull(strstr(text, "reliable"));
    ck_assert_ptr_nonnull(strstr(text, "watch 1 (id 77, member 3, key \"a\""));
    ck_assert_ptr_nonnull(strstr(text, "rev 4 PUT \"a\""));
    free(text);
    wc_result_fini(&r);
    free_watches(w, N(w));
    wc_truth_free(&t);
}
END_TEST

/* ---- simulated streams ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return (size_t)(rng_next(s) % n);
}

static const char *const sim_keys[] = {"a", "b", "c", "x/1", "x/2", "x/3"};

/* A random history of n_revs revisions (2 .. n_revs + 1), 1 to 3 keys each. */
static void sim_truth(struct wc_truth *t, uint64_t *rng, int64_t n_revs)
{
    static char values[64][8];
    int64_t create[N(sim_keys)] = {0}, version[N(sim_keys)] = {0};
    wc_truth_init(t);
    for (int64_t rev = 2; rev < n_revs + 2; rev++) {
        bool used[N(sim_keys)] = {false};
        size_t n = 1 + rng_below(rng, 3);
        for (size_t m = 0; m < n; m++) {
            size_t k = rng_below(rng, N(sim_keys));
            if (used[k])
                continue;
            used[k] = true;
            struct wc_event e;
            if (version[k] && rng_below(rng, 4) == 0) {
                e = wc_event_delete(sim_keys[k], rev);
                create[k] = version[k] = 0;
            } else {
                if (!version[k])
                    create[k] = rev;
                version[k]++;
                char *v = values[rev % 64];
                snprintf(v, sizeof(values[0]), "%d", (int)(rev % 1000));
                e = wc_event_put(sim_keys[k], v, rev, create[k], version[k]);
            }
            ck_assert_int_eq(wc_truth_add(t, &e), 0);
        }
    }
}

enum sim_fault { SIM_NONE, SIM_DROP, SIM_DUP, SIM_VALUE, SIM_SPLIT };

/* Deliver the truth faithfully to a random watch: whole revisions, 1 to 3 per response,
 * progress notifications between them, ended at a random revision. Then plant fault on the
 * event list (if the watch got enough events for it); returns true if it was planted. */
static bool sim_watch(struct wc_watch *w, const struct wc_truth *t, uint64_t *rng,
                      enum sim_fault fault)
{
    int64_t last = t->events[t->n - 1].revision;
    switch (rng_below(rng, 4)) {
    case 0:
        watch_key(w, sim_keys[rng_below(rng, N(sim_keys))], 0);
        break;
    case 1:
        watch_prefix(w, "x/", 0);
        break;
    case 2:
        watch_range(w, "b", "x/2", 0);
        break;
    default:
        watch_prefix(w, "", 0);
    }
    w->start_revision = (int64_t)rng_below(rng, (size_t)last + 1);
    int64_t from = w->start_revision ? w->start_revision : 1 + (int64_t)rng_below(rng, 8);
    int64_t end = from + (int64_t)rng_below(rng, (size_t)last + 1);
    /* the matching events, grouped by revision */
    size_t idx[256], resp_at[256], n = 0;
    size_t n_resps = 0, revs_in_resp = 0, per_resp = 1 + rng_below(rng, 3);
    for (size_t j = 0; j < t->n && n + 1 < N(idx); j++) {
        const struct wc_event *e = &t->events[j];
        if (e->revision < from || e->revision > end || !wc_watch_matches(w, e->key, e->key_len))
            continue;
        if (n == 0 || e->revision != t->events[idx[n - 1]].revision) {
            if (n > 0 && ++revs_in_resp == per_resp) {
                n_resps++;
                revs_in_resp = 0;
            }
        }
        resp_at[n] = n_resps;
        idx[n++] = j;
    }
    bool planted = fault == SIM_NONE;
    if (fault == SIM_DROP && n >= 3) { /* a middle event: no revision is left empty at the ends */
        size_t i = 1 + rng_below(rng, n - 2);
        planted = t->events[idx[i]].revision != t->events[idx[0]].revision &&
                  t->events[idx[i]].revision != t->events[idx[n - 1]].revision;
        if (planted) {
            memmove(&idx[i], &idx[i + 1], (n - i - 1) * sizeof(idx[0]));
            memmove(&resp_at[i], &resp_at[i + 1], (n - i - 1) * sizeof(resp_at[0]));
            n--;
        }
    } else if (fault == SIM_DUP && n >= 1) { /* the last event again, in a response of its own */
        idx[n] = idx[n - 1];
        resp_at[n] = resp_at[n - 1] + 1;
        n++;
        planted = true;
    } else if (fault == SIM_SPLIT) { /* the second event of a txn in a later response */
        for (size_t i = 1; i < n && !planted; i++) {
            if (t->events[idx[i]].revision != t->events[idx[i - 1]].revision)
                continue;
            for (size_t k = i; k < n; k++)
                resp_at[k] += 1;
            planted = true;
        }
    }
    struct wc_event evs[256];
    for (size_t i = 0; i < n; i++)
        evs[i] = t->events[idx[i]];
    if (fault == SIM_VALUE && n >= 1) {
        size_t i = rng_below(rng, n);
        evs[i].version += 1;
        planted = true;
    }
    if (rng_below(rng, 2))
        progress(w, from - 1);
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k < n && resp_at[k] == resp_at[i])
            k++;
        ck_assert_int_eq(wc_watch_add_events(w, last, &evs[i], k - i), 0);
        if (rng_below(rng, 3) == 0 && fault != SIM_DROP)
            progress(w, evs[k - 1].revision);
        i = k;
    }
    return planted;
}

START_TEST(simulated_faithful_watches_pass)
{
    for (uint64_t seed = 1; seed <= 200; seed++) {
        uint64_t rng = seed * 0x9e3779b97f4a7c15ull;
        struct wc_truth t;
        sim_truth(&t, &rng, 20 + (int64_t)rng_below(&rng, 40));
        struct wc_watch w[6];
        for (size_t i = 0; i < N(w); i++) {
            sim_watch(&w[i], &t, &rng, SIM_NONE);
            w[i].id = (uint32_t)i;
        }
        struct wc_result r;
        check(&t, w, N(w), &r);
        if (r.verdict != WC_PASS)
            printf("seed %llu: a faithful stream was flagged\n", (unsigned long long)seed);
        ck_assert_int_eq(r.verdict, WC_PASS);
        wc_result_fini(&r);
        free_watches(w, N(w));
        wc_truth_free(&t);
    }
}
END_TEST

START_TEST(simulated_faults_are_found)
{
    static const struct {
        enum sim_fault fault;
        enum wc_guarantee rule;
    } cases[] = {
        {SIM_DROP, WC_RELIABLE},
        {SIM_DUP, WC_UNIQUE},
        {SIM_VALUE, WC_VALUES},
        {SIM_SPLIT, WC_ATOMIC},
    };
    for (size_t c = 0; c < N(cases); c++) {
        size_t planted = 0;
        for (uint64_t seed = 1; seed <= 100; seed++) {
            uint64_t rng = seed * 0x2545f4914f6cdd1dull + c;
            struct wc_truth t;
            sim_truth(&t, &rng, 30);
            struct wc_watch w;
            if (sim_watch(&w, &t, &rng, cases[c].fault)) {
                planted++;
                size_t v = broken(&t, &w, 1, cases[c].rule);
                if (v != 1)
                    printf("seed %llu: planted %s fault missed\n", (unsigned long long)seed,
                           wc_guarantee_name(cases[c].rule));
                ck_assert_uint_eq(v, 1);
            }
            wc_watch_free(&w);
            wc_truth_free(&t);
        }
        ck_assert_uint_ge(planted, 20);
    }
}
END_TEST

int main(void)
{
    /* Check ends a failed test with _exit in its child: reports printed before the failed
     * assertion must not wait in a buffer. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    Suite *s = suite_create("watchcheck");
    TCase *tc = tcase_create("faithful");
    tcase_add_test(tc, faithful_watches_pass);
    tcase_add_test(tc, empty_watches_pass);
    tcase_add_test(tc, txn_in_one_response_passes);
    tcase_add_test(tc, binary_keys_and_prefix_ends);
    suite_add_tcase(s, tc);

    tc = tcase_create("ordered_unique");
    tcase_add_test(tc, revision_going_back_is_unordered);
    tcase_add_test(tc, txn_out_of_truth_order_is_unordered);
    tcase_add_test(tc, event_delivered_twice_is_not_unique);
    tcase_add_test(tc, unknown_event_delivered_twice_is_not_unique);
    suite_add_tcase(s, tc);

    tc = tcase_create("atomic_reliable");
    tcase_add_test(tc, txn_split_across_responses_is_not_atomic);
    tcase_add_test(tc, part_of_a_txn_alone_is_not_atomic);
    tcase_add_test(tc, gap_between_events_is_unreliable);
    tcase_add_test(tc, gap_after_start_revision_is_unreliable);
    tcase_add_test(tc, compacted_watch_is_excused_from_history);
    suite_add_tcase(s, tc);

    tc = tcase_create("resumable_progress");
    tcase_add_test(tc, resumed_watch_gets_the_suffix);
    tcase_add_test(tc, event_before_start_is_not_resumable);
    tcase_add_test(tc, progress_at_exact_revision_passes);
    tcase_add_test(tc, progress_ahead_of_events_is_a_violation);
    suite_add_tcase(s, tc);

    tc = tcase_create("values_filter");
    tcase_add_test(tc, changed_fields_are_wrong_values);
    tcase_add_test(tc, event_outside_range_is_filtered_out);
    suite_add_tcase(s, tc);

    tc = tcase_create("inputs");
    tcase_add_test(tc, bad_truth_is_refused);
    tcase_add_test(tc, report_names_watch_event_and_revision);
    suite_add_tcase(s, tc);

    tc = tcase_create("random");
    tcase_add_test(tc, simulated_faithful_watches_pass);
    tcase_add_test(tc, simulated_faults_are_found);
    tcase_set_timeout(tc, 50);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
