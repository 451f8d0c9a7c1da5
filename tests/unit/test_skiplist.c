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

/* Key i: its decimal digits repeated to a length that varies with i (1 to 40 bytes). */
static size_t grow_key(int i, char *k)
{
    char d[16];
    int dl = snprintf(d, sizeof(d), "%d", i);
    size_t len = 1 + (size_t)(i * 7 % 40);
    for (size_t j = 0; j < len; j++)
        k[j] = d[j % (size_t)dl];
    return len;
}

START_TEST(exact_lookups_while_the_index_grows)
{
    /* The point index doubles eleven times on the way to 30,000 keys and moves its buckets a
     * few per insert: every key must be found at every step, by sl_find and by sl_insert, and
     * the node found must be the one the ordered walk reaches. */
    enum { N = 30000 };
    struct sl *l = sl_create(3);
    struct sl_node **nodes = calloc(N, sizeof(*nodes));
    char k[48];
    for (int i = 0; i < N; i++) {
        size_t kl = grow_key(i, k);
        bool existed;
        ck_assert(sl_insert(l, (uint8_t *)k, kl, (void *)(intptr_t)(i + 1), &nodes[i], &existed));
        if (existed) {
            nodes[i] = NULL; /* the same bytes as an earlier key */
            continue;
        }
        ck_assert_ptr_eq(sl_find(l, (uint8_t *)k, kl), nodes[i]);
        int j = (int)((unsigned)i * 2654435761u % (unsigned)(i + 1));
        if (nodes[j]) {
            size_t jl = grow_key(j, k);
            ck_assert_ptr_eq(sl_find(l, (uint8_t *)k, jl), nodes[j]);
            ck_assert_ptr_eq(sl_seek_ge(l, (uint8_t *)k, jl), nodes[j]);
        }
    }
    ck_assert_ptr_null(sl_find(l, (const uint8_t *)"absent", 6));
    /* Remove every other key, then look for all of them. */
    for (int i = 0; i < N; i += 2) {
        if (!nodes[i])
            continue;
        size_t kl = grow_key(i, k);
        bool found;
        ck_assert_ptr_eq(sl_remove(l, (uint8_t *)k, kl, &found), (void *)(intptr_t)(i + 1));
        ck_assert(found);
        nodes[i] = NULL;
    }
    size_t live = 0;
    for (int i = 0; i < N; i++) {
        size_t kl = grow_key(i, k);
        struct sl_node *n = sl_find(l, (uint8_t *)k, kl);
        if (i % 2 == 0) {
            /* Removed, unless an odd key has the same bytes. */
            ck_assert(!n || sl_node_val(n) != (void *)(intptr_t)(i + 1));
            continue;
        }
        if (!nodes[i])
            continue;
        live++;
        ck_assert_ptr_eq(n, nodes[i]);
        bool existed;
        struct sl_node *again;
        ck_assert(sl_insert(l, (uint8_t *)k, kl, NULL, &again, &existed));
        ck_assert(existed);
        ck_assert_ptr_eq(again, nodes[i]);
    }
    ck_assert_uint_eq(sl_count(l), live);
    free(nodes);
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
    tcase_add_test(tc, exact_lookups_while_the_index_grows);
    tcase_add_test(tc, destroy_frees_values);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
