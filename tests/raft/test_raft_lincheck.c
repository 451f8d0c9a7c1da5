/* test_raft_lincheck.c - the simulator's linearizability checker on hand-made histories. */
#include "sim_lincheck.h"
#include "testutil.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static enum lc_result check(const struct lc_op *ops, size_t n)
{
    uint32_t bad = 99;
    enum lc_result r = lc_check(ops, n, 1000000, &bad);
    if (r == LC_VIOLATION)
        ck_assert_uint_ne(bad, 99);
    return r;
}

START_TEST(sequential)
{
    struct lc_op h[] = {
        {.kind = LC_GET, .call = 0, .ret = 1, .out = 0},
        {.kind = LC_PUT, .arg = 5, .call = 2, .ret = 3},
        {.kind = LC_GET, .call = 4, .ret = 5, .out = 5},
        {.kind = LC_CAS, .expect = 5, .arg = 6, .call = 6, .ret = 7, .out = 1},
        {.kind = LC_CAS, .expect = 5, .arg = 7, .call = 8, .ret = 9, .out = 0},
        {.kind = LC_GET, .call = 10, .ret = 11, .out = 6},
    };
    ck_assert_int_eq(check(h, N(h)), LC_OK);
}
END_TEST

START_TEST(stale_read)
{
    /* the write completed before the read began, yet the read misses it */
    struct lc_op h[] = {
        {.kind = LC_PUT, .arg = 5, .call = 0, .ret = 1},
        {.kind = LC_GET, .call = 2, .ret = 3, .out = 0},
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
}
END_TEST

START_TEST(concurrent_read_either_value)
{
    for (uint64_t seen = 0; seen <= 5; seen += 5) {
        struct lc_op h[] = {
            {.kind = LC_PUT, .arg = 5, .call = 0, .ret = 10},
            {.kind = LC_GET, .call = 2, .ret = 3, .out = seen},
        };
        ck_assert_int_eq(check(h, N(h)), LC_OK);
    }
}
END_TEST

START_TEST(read_order_must_agree)
{
    /* two sequential reads during a write cannot see new then old */
    struct lc_op h[] = {
        {.kind = LC_PUT, .arg = 5, .call = 0, .ret = 10},
        {.kind = LC_GET, .call = 1, .ret = 2, .out = 5},
        {.kind = LC_GET, .call = 3, .ret = 4, .out = 0},
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
}
END_TEST

START_TEST(unknown_write)
{
    /* a timed-out write may have happened (explaining the read) ... */
    struct lc_op h[] = {
        {.kind = LC_PUT, .arg = 7, .call = 0, .ret = LC_NEVER, .unknown = true},
        {.kind = LC_GET, .call = 50, .ret = 51, .out = 7},
        {.kind = LC_GET, .call = 60, .ret = 61, .out = 7},
    };
    ck_assert_int_eq(check(h, N(h)), LC_OK);
    /* ... or not (then nothing sees it) */
    h[1].out = 0;
    h[2].out = 0;
    ck_assert_int_eq(check(h, N(h)), LC_OK);
    /* but it cannot appear and then vanish */
    h[1].out = 7;
    h[2].out = 0;
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
    /* and it cannot take effect before it was invoked */
    struct lc_op g[] = {
        {.kind = LC_GET, .call = 0, .ret = 1, .out = 7},
        {.kind = LC_PUT, .arg = 7, .call = 5, .ret = LC_NEVER, .unknown = true},
    };
    ck_assert_int_eq(check(g, N(g)), LC_VIOLATION);
}
END_TEST

START_TEST(lost_cas)
{
    /* two successful CAS from the same expected value cannot both have happened */
    struct lc_op h[] = {
        {.kind = LC_PUT, .arg = 1, .call = 0, .ret = 1},
        {.kind = LC_CAS, .expect = 1, .arg = 2, .call = 2, .ret = 9, .out = 1},
        {.kind = LC_CAS, .expect = 1, .arg = 3, .call = 3, .ret = 8, .out = 1},
    };
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
    h[2].out = 0;
    ck_assert_int_eq(check(h, N(h)), LC_OK);
}
END_TEST

START_TEST(keys_are_independent)
{
    struct lc_op h[] = {
        {.kind = LC_PUT, .key = 0, .arg = 5, .call = 0, .ret = 1},
        {.kind = LC_GET, .key = 1, .call = 2, .ret = 3, .out = 0},
        {.kind = LC_GET, .key = 0, .call = 4, .ret = 5, .out = 5},
        {.kind = LC_GET, .key = 2, .call = 6, .ret = 7, .out = 4},
    };
    uint32_t bad = 0;
    ck_assert_int_eq(lc_check(h, N(h), 1000000, &bad), LC_VIOLATION);
    ck_assert_uint_eq(bad, 2);
}
END_TEST

START_TEST(many_concurrent)
{
    /* 12 overlapping writes then a read of one of them: the memo keeps this tractable */
    struct lc_op h[13];
    for (int i = 0; i < 12; i++)
        h[i] = (struct lc_op){
            .kind = LC_PUT, .arg = (uint64_t)i + 1, .call = (uint64_t)i, .ret = 1000};
    h[12] = (struct lc_op){.kind = LC_GET, .call = 2000, .ret = 2001, .out = 7};
    ck_assert_int_eq(check(h, N(h)), LC_OK);
    h[12].out = 99;
    ck_assert_int_eq(check(h, N(h)), LC_VIOLATION);
    /* a search budget that is too small gives up instead of guessing */
    uint32_t bad;
    ck_assert_int_eq(lc_check(h, N(h), 10, &bad), LC_GAVE_UP);
}
END_TEST

static Suite *lincheck_suite(void)
{
    Suite *s = suite_create("raft_lincheck");
    TCase *tc = tcase_create("register");
    tcase_add_test(tc, sequential);
    tcase_add_test(tc, stale_read);
    tcase_add_test(tc, concurrent_read_either_value);
    tcase_add_test(tc, read_order_must_agree);
    tcase_add_test(tc, unknown_write);
    tcase_add_test(tc, lost_cas);
    tcase_add_test(tc, keys_are_independent);
    tcase_add_test(tc, many_concurrent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(lincheck_suite());
}
