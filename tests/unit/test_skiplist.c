/* test_skiplist.c - the ordered map under the memory backend and the key index. */
#include "metastore/skiplist.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int key_is(const struct sl_node *n, const char *want)
{
    size_t kl;
    const uint8_t *k = sl_node_key(n, &kl);
    return tu_bytes_eq(k, kl, want);
}

START_TEST(order_and_seek)
{
    struct sl *l = sl_create(1);
    const char *keys[] = {"b", "a", "ab", "", "c", "ba", "abc"};
    struct sl_node *n;
    bool existed;
    for (size_t i = 0; i < 7; i++) {
        ck_assert(
            sl_insert(l, (const uint8_t *)keys[i], strlen(keys[i]), (void *)(i + 1), &n, &existed));
        ck_assert(!existed);
    }
    ck_assert_uint_eq(sl_count(l), 7);
    ck_assert(sl_insert(l, (const uint8_t *)"ab", 2, NULL, &n, &existed));
    ck_assert(existed);
    ck_assert_ptr_eq(sl_node_val(n), (void *)3);
    const char *sorted[] = {"", "a", "ab", "abc", "b", "ba", "c"};
    size_t i = 0;
    for (n = sl_first(l); n; n = sl_next(n), i++) {
        size_t kl;
        const uint8_t *k = sl_node_key(n, &kl);
        ck_assert(tu_bytes_eq(k, kl, sorted[i]));
    }
    ck_assert_uint_eq(i, 7);
    n = sl_seek_ge(l, (const uint8_t *)"abb", 3);
    ck_assert(key_is(n, "abc"));
    n = sl_seek_lt(l, (const uint8_t *)"b", 1);
    ck_assert(key_is(n, "abc"));
    ck_assert_ptr_null(sl_seek_ge(l, (const uint8_t *)"d", 1));
    ck_assert_ptr_null(sl_seek_lt(l, (const uint8_t *)"", 0));
    ck_assert_ptr_eq(sl_seek_lt(l, NULL, 0), sl_last(l));
    n = sl_last(l);
    ck_assert(key_is(n, "c"));
    ck_assert_ptr_nonnull(sl_find(l, (const uint8_t *)"", 0));
    bool found;
    ck_assert_ptr_eq(sl_remove(l, (const uint8_t *)"abc", 3, &found), (void *)7);
    ck_assert(found);
    sl_remove(l, (const uint8_t *)"abc", 3, &found);
    ck_assert(!found);
    ck_assert_uint_eq(sl_count(l), 6);
    sl_destroy(l, NULL);
}
END_TEST

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

START_TEST(random_against_sorted_array)
{
    /* 20k random inserts/removes, then compare with a sorted array of the survivors. */
    struct sl *l = sl_create(42);
    static int present[100000];
    memset(present, 0, sizeof(present));
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int v = (int)(x % 100000);
        char k[16];
        int kl = snprintf(k, sizeof(k), "%08d", v);
        if (x & (1ULL << 40)) {
            bool found;
            sl_remove(l, (uint8_t *)k, (size_t)kl, &found);
            ck_assert_int_eq(found, present[v]);
            present[v] = 0;
        } else {
            struct sl_node *n;
            bool existed;
            ck_assert(sl_insert(l, (uint8_t *)k, (size_t)kl, NULL, &n, &existed));
            ck_assert_int_eq(existed, present[v]);
            present[v] = 1;
        }
    }
    int *want = malloc(sizeof(int) * 100000);
    size_t nw = 0;
    for (int v = 0; v < 100000; v++)
        if (present[v])
            want[nw++] = v;
    qsort(want, nw, sizeof(int), cmp_int);
    ck_assert_uint_eq(sl_count(l), nw);
    size_t i = 0;
    for (struct sl_node *n = sl_first(l); n; n = sl_next(n), i++) {
        size_t kl;
        const uint8_t *k = sl_node_key(n, &kl);
        char buf[16];
        memcpy(buf, k, kl);
        buf[kl] = 0;
        ck_assert_int_eq(atoi(buf), want[i]);
    }
    ck_assert_uint_eq(i, nw);
    free(want);
    sl_destroy(l, NULL);
}
END_TEST

static int freed;
static void count_free(void *p)
{
    free(p);
    freed++;
}

START_TEST(destroy_frees_values)
{
    struct sl *l = sl_create(7);
    freed = 0;
    for (int i = 0; i < 100; i++) {
        char k[8];
        int kl = snprintf(k, sizeof(k), "k%d", i);
        struct sl_node *n;
        bool e;
        ck_assert(sl_insert(l, (uint8_t *)k, (size_t)kl, malloc(4), &n, &e));
    }
    sl_destroy(l, count_free);
    ck_assert_int_eq(freed, 100);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("skiplist");
    TCase *tc = tcase_create("map");
    tcase_add_test(tc, order_and_seek);
    tcase_add_test(tc, random_against_sorted_array);
    tcase_add_test(tc, destroy_frees_values);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
