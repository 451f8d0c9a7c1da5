/* test_lease.c - the lessor with a fake clock: grant rules, heap order, keepalive, expiry,
 * attachments, promote/demote. No sleeping. */
#include "metastore/lease.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct lease_mgr *m;

static void setup(void)
{
    m = lease_mgr_create(2);
    ck_assert_ptr_nonnull(m);
}

static void teardown(void)
{
    lease_mgr_destroy(m);
}

START_TEST(grant_rules)
{
    int64_t g;
    ck_assert_int_eq(lease_mgr_grant(m, 1234, 300, 0, &g), MS_OK);
    ck_assert_int_eq(g, 300);
    ck_assert_int_eq(lease_mgr_grant(m, 1234, 10, 0, &g), MS_E_LEASE_EXISTS);
    /* TTL below the minimum, zero or negative: the minimum. */
    ck_assert_int_eq(lease_mgr_grant(m, 1, 1, 0, &g), MS_OK);
    ck_assert_int_eq(g, 2);
    ck_assert_int_eq(lease_mgr_grant(m, 2, 0, 0, &g), MS_OK);
    ck_assert_int_eq(g, 2);
    ck_assert_int_eq(lease_mgr_grant(m, 3, -5, 0, &g), MS_OK);
    ck_assert_int_eq(g, 2);
    ck_assert_int_eq(lease_mgr_grant(m, 4, LEASE_MAX_TTL, 0, &g), MS_OK);
    ck_assert_int_eq(lease_mgr_grant(m, 5, LEASE_MAX_TTL + 1, 0, &g), MS_E_LEASE_TTL_TOO_LARGE);
    /* Negative IDs are fine. */
    ck_assert_int_eq(lease_mgr_grant(m, -7, 60, 0, &g), MS_OK);
    ck_assert_uint_eq(lease_mgr_count(m), 6);
    int64_t ids[10];
    ck_assert_uint_eq(lease_mgr_list(m, 0, ids, 10), 6);
    ck_assert_uint_eq(lease_mgr_list(m, 0, ids, 2), 2);
    size_t more = lease_mgr_list(m, ids[1], ids + 2, 8);
    ck_assert_uint_eq(more, 4);
    ck_assert_int_eq(lease_mgr_revoke(m, 1234), MS_OK);
    ck_assert_int_eq(lease_mgr_revoke(m, 1234), MS_E_LEASE_NOT_FOUND);
    ck_assert(!lease_mgr_exists(m, 1234));
}
END_TEST

START_TEST(expiry_order_and_keepalive)
{
    int64_t g, ids[100];
    /* 50 leases with TTLs 2..51 s granted at t=0, in shuffled order. */
    for (int i = 0; i < 50; i++) {
        int ttl = 2 + (i * 37) % 50;
        ck_assert_int_eq(lease_mgr_grant(m, 100 + ttl, ttl, 0, &g), MS_OK);
    }
    ck_assert_uint_eq(lease_mgr_next_expiry(m), 2000);
    /* Nothing before its time. */
    ck_assert_uint_eq(lease_mgr_expired(m, 1999, 3000, ids, 100), 0);
    /* At 10 s: TTLs 2..10 expired, in expiry order. */
    size_t n = lease_mgr_expired(m, 10000, 3000, ids, 100);
    ck_assert_uint_eq(n, 9);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], 102 + (int64_t)i);
    /* Handed out once: not again before the retry interval. */
    ck_assert_uint_eq(lease_mgr_expired(m, 10000, 3000, ids, 100), 0);
    /* A keepalive on a lease whose revoke is pending finds nothing. */
    ck_assert_int_eq(lease_mgr_renew(m, 102, 10000, &g), MS_E_LEASE_NOT_FOUND);
    /* Keepalive pushes expiry to now + TTL. */
    ck_assert_int_eq(lease_mgr_renew(m, 120, 15000, &g), MS_OK);
    ck_assert_int_eq(g, 20);
    struct lease_info li;
    ck_assert(lease_mgr_get(m, 120, 16000, &li));
    ck_assert_int_eq(li.remaining_ms, 19000);
    ck_assert_int_eq(li.ttl, 20);
    /* The revokes of the first batch applied: they are gone. */
    for (int64_t id = 102; id <= 110; id++)
        ck_assert_int_eq(lease_mgr_revoke(m, id), MS_OK);
    /* At 20 s: 11..20 expired except 120 (renewed to 35 s). */
    n = lease_mgr_expired(m, 20000, 3000, ids, 100);
    ck_assert_uint_eq(n, 9);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ne(ids[i], 120);
    /* A lost revoke is handed out again after the retry interval. */
    n = lease_mgr_expired(m, 23000, 3000, ids, 100);
    ck_assert_uint_eq(n, 9 + 3); /* the 9 again, plus 21, 22, 23 */
    /* max bounds each call. */
    ck_assert_uint_eq(lease_mgr_expired(m, 100000, 3000, ids, 5), 5);
}
END_TEST

static bool collect(void *ctx, const uint8_t *k, size_t kl)
{
    char *out = ctx;
    strncat(out, (const char *)k, kl);
    strcat(out, ",");
    return true;
}

START_TEST(attachments)
{
    int64_t g;
    ck_assert_int_eq(lease_mgr_grant(m, 7, 60, 0, &g), MS_OK);
    ck_assert_int_eq(lease_mgr_grant(m, 8, 60, 0, &g), MS_OK);
    ck_assert_int_eq(lease_mgr_attach(m, 7, (const uint8_t *)"b", 1), MS_OK);
    ck_assert_int_eq(lease_mgr_attach(m, 7, (const uint8_t *)"a", 1), MS_OK);
    ck_assert_int_eq(lease_mgr_attach(m, 7, (const uint8_t *)"a", 1), MS_OK); /* idempotent */
    ck_assert_int_eq(lease_mgr_attach(m, 8, (const uint8_t *)"c", 1), MS_OK);
    ck_assert_int_eq(lease_mgr_attach(m, 9, (const uint8_t *)"x", 1), MS_E_LEASE_NOT_FOUND);
    char keys[64] = "";
    lease_mgr_keys(m, 7, collect, keys);
    ck_assert_str_eq(keys, "a,b,");
    struct lease_info li;
    ck_assert(lease_mgr_get(m, 7, 0, &li));
    ck_assert_uint_eq(li.n_keys, 2);
    /* A key re-put under another lease moves: detach from 7, attach to 8. */
    lease_mgr_detach(m, 7, (const uint8_t *)"a", 1);
    ck_assert_int_eq(lease_mgr_attach(m, 8, (const uint8_t *)"a", 1), MS_OK);
    keys[0] = 0;
    lease_mgr_keys(m, 7, collect, keys);
    ck_assert_str_eq(keys, "b,");
    keys[0] = 0;
    lease_mgr_keys(m, 8, collect, keys);
    ck_assert_str_eq(keys, "a,c,");
    /* Revoke drops the attachments with the lease. */
    ck_assert_int_eq(lease_mgr_revoke(m, 8), MS_OK);
    keys[0] = 0;
    lease_mgr_keys(m, 8, collect, keys);
    ck_assert_str_eq(keys, "");
    /* Many keys on one lease: attach and detach stay cheap and exact. */
    char k[16];
    for (int i = 0; i < 20000; i++) {
        int kl = snprintf(k, sizeof(k), "key%05d", i);
        ck_assert_int_eq(lease_mgr_attach(m, 7, (const uint8_t *)k, (size_t)kl), MS_OK);
    }
    for (int i = 0; i < 20000; i += 2) {
        int kl = snprintf(k, sizeof(k), "key%05d", i);
        lease_mgr_detach(m, 7, (const uint8_t *)k, (size_t)kl);
    }
    ck_assert(lease_mgr_get(m, 7, 0, &li));
    ck_assert_uint_eq(li.n_keys, 10001);
}
END_TEST

START_TEST(promote_demote)
{
    int64_t g, ids[10];
    ck_assert_int_eq(lease_mgr_grant(m, 1, 5, 0, &g), MS_OK);
    lease_mgr_demote(m);
    ck_assert(!lease_mgr_is_primary(m));
    /* A non-primary member expires nothing and refuses keepalives. */
    ck_assert_uint_eq(lease_mgr_expired(m, 1000000, 3000, ids, 10), 0);
    ck_assert_uint_eq(lease_mgr_next_expiry(m), UINT64_MAX);
    ck_assert_int_eq(lease_mgr_renew(m, 1, 0, &g), MS_E_NOT_LEADER);
    /* Leases granted meanwhile (applied from the log) have no expiry yet. */
    ck_assert_int_eq(lease_mgr_grant(m, 2, 5, 0, &g), MS_OK);
    struct lease_info li;
    ck_assert(lease_mgr_get(m, 2, 500000, &li));
    ck_assert_int_eq(li.remaining_ms, 5000);
    /* On promotion every expiry restarts from now (+ the extension). */
    lease_mgr_promote(m, 1000000, 1500);
    ck_assert_uint_eq(lease_mgr_next_expiry(m), 1000000 + 1500 + 5000);
    ck_assert_uint_eq(lease_mgr_expired(m, 1006499, 3000, ids, 10), 0);
    ck_assert_uint_eq(lease_mgr_expired(m, 1006500, 3000, ids, 10), 2);
}
END_TEST

/* A keepalive every second for five seconds holds a 3-second lease; after the last one it
 * expires exactly TTL later: not a millisecond before, and the server's timer (armed at
 * lease_mgr_next_expiry) is due right then. */
START_TEST(keepalive_holds_then_expires_at_ttl)
{
    int64_t g, ids[4];
    struct lease_info li;
    ck_assert_int_eq(lease_mgr_grant(m, 10, 3, 0, &g), MS_OK);
    ck_assert_uint_eq(lease_mgr_next_expiry(m), 3000);
    uint64_t last = 0;
    for (uint64_t t = 1000; t <= 5000; t += 1000) {
        ck_assert_uint_eq(lease_mgr_expired(m, t - 1, 3000, ids, 4), 0);
        ck_assert_int_eq(lease_mgr_renew(m, 10, t, &g), MS_OK);
        ck_assert_int_eq(g, 3);
        last = t;
        ck_assert_uint_eq(lease_mgr_next_expiry(m), last + 3000);
        ck_assert(lease_mgr_get(m, 10, t + 1, &li));
        ck_assert_int_eq(li.remaining_ms, 2999);
    }
    /* Past the TTL of the grant, and of every keepalive but the last: still there. */
    ck_assert_uint_eq(lease_mgr_expired(m, last + 2999, 3000, ids, 4), 0);
    ck_assert(lease_mgr_get(m, 10, last + 2999, &li));
    ck_assert_int_eq(li.remaining_ms, 1);
    ck_assert(lease_mgr_get(m, 10, last + 3000, &li));
    ck_assert_int_eq(li.remaining_ms, 0);
    ck_assert_uint_eq(lease_mgr_expired(m, last + 3000, 3000, ids, 4), 1);
    ck_assert_int_eq(ids[0], 10);
    /* Its revoke is on its way: a late keepalive finds nothing, and time-to-live says no time
     * is left (not the wait before the revoke is retried). */
    ck_assert_int_eq(lease_mgr_renew(m, 10, last + 3001, &g), MS_E_LEASE_NOT_FOUND);
    ck_assert(lease_mgr_get(m, 10, last + 3001, &li));
    ck_assert_int_eq(li.remaining_ms, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("lessor");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, grant_rules);
    tcase_add_test(tc, expiry_order_and_keepalive);
    tcase_add_test(tc, attachments);
    tcase_add_test(tc, promote_demote);
    tcase_add_test(tc, keepalive_holds_then_expires_at_ttl);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
