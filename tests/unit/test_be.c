/* test_be.c - the backend contract, run against every backend.
 *
 * Usage: test_be <memory|lmdb>. Each test gets a fresh backend (checked fixture). The same
 * cases must pass on both implementations (STYLE.md §3.9).
 */
#include "metastore/be.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *backend_name = "memory";
static struct be *be;
static char *dir;

static void setup(void)
{
    if (strcmp(backend_name, "lmdb") == 0) {
        ms_err err;
        dir = tu_mkdtemp("ms-test-be");
        ck_assert_ptr_nonnull(dir);
        be = be_lmdb_open(dir, 64u << 20, &err);
    } else {
        be = be_skiplist_open();
    }
    ck_assert_ptr_nonnull(be);
}

static void teardown(void)
{
    be_close(be);
    be = NULL;
    if (dir) {
        tu_rmtree(dir);
        free(dir);
        dir = NULL;
    }
}

static void put_s(struct be_txn *t, enum be_bucket b, const char *k, const char *v)
{
    ck_assert_int_eq(be_put(t, b, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v)),
                     MS_OK);
}

static int get_is(struct be_txn *t, enum be_bucket b, const char *k, const char *want)
{
    struct be_val v;
    ms_err e = be_get(t, b, (const uint8_t *)k, strlen(k), &v);
    if (!want)
        return e == MS_E_NOT_EXIST;
    return e == MS_OK && tu_bytes_eq(v.p, v.len, want);
}

START_TEST(put_get_delete)
{
    struct be_txn *t;
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    put_s(t, BE_BUCKET_KEY, "a", "1");
    put_s(t, BE_BUCKET_KEY, "b", "2");
    put_s(t, BE_BUCKET_META, "a", "meta");
    ck_assert(get_is(t, BE_BUCKET_KEY, "a", "1"));
    ck_assert(get_is(t, BE_BUCKET_META, "a", "meta"));
    put_s(t, BE_BUCKET_KEY, "a", "1bis");
    ck_assert(get_is(t, BE_BUCKET_KEY, "a", "1bis"));
    ck_assert_int_eq(be_del(t, BE_BUCKET_KEY, (const uint8_t *)"b", 1), MS_OK);
    ck_assert_int_eq(be_del(t, BE_BUCKET_KEY, (const uint8_t *)"b", 1), MS_E_NOT_EXIST);
    ck_assert(get_is(t, BE_BUCKET_KEY, "b", NULL));
    ck_assert(get_is(t, BE_BUCKET_LEASE, "a", NULL));
    /* Empty value and binary keys. */
    ck_assert_int_eq(be_put(t, BE_BUCKET_KEY, (const uint8_t *)"\0\1", 2, NULL, 0), MS_OK);
    struct be_val v;
    ck_assert_int_eq(be_get(t, BE_BUCKET_KEY, (const uint8_t *)"\0\1", 2, &v), MS_OK);
    ck_assert_uint_eq(v.len, 0);
    ck_assert_int_eq(be_txn_commit(t), MS_OK);

    ck_assert_int_eq(be_txn_begin(be, NULL, false, &t), MS_OK);
    ck_assert(get_is(t, BE_BUCKET_KEY, "a", "1bis"));
    ck_assert(get_is(t, BE_BUCKET_KEY, "b", NULL));
    be_txn_abort(t);
}
END_TEST

START_TEST(abort_restores)
{
    struct be_txn *t;
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    put_s(t, BE_BUCKET_KEY, "keep", "1");
    put_s(t, BE_BUCKET_KEY, "gone", "x");
    ck_assert_int_eq(be_txn_commit(t), MS_OK);

    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    put_s(t, BE_BUCKET_KEY, "keep", "changed");
    put_s(t, BE_BUCKET_KEY, "new", "n");
    ck_assert_int_eq(be_del(t, BE_BUCKET_KEY, (const uint8_t *)"gone", 4), MS_OK);
    put_s(t, BE_BUCKET_KEY, "new", "n2");
    be_txn_abort(t);

    ck_assert_int_eq(be_txn_begin(be, NULL, false, &t), MS_OK);
    ck_assert(get_is(t, BE_BUCKET_KEY, "keep", "1"));
    ck_assert(get_is(t, BE_BUCKET_KEY, "gone", "x"));
    ck_assert(get_is(t, BE_BUCKET_KEY, "new", NULL));
    be_txn_abort(t);
}
END_TEST

START_TEST(nested_txn)
{
    struct be_txn *t, *c;
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    put_s(t, BE_BUCKET_KEY, "outer", "1");
    /* A nested txn that aborts leaves the parent's writes alone. */
    ck_assert_int_eq(be_txn_begin(be, t, true, &c), MS_OK);
    put_s(c, BE_BUCKET_KEY, "inner", "x");
    put_s(c, BE_BUCKET_KEY, "outer", "overwritten");
    ck_assert(get_is(c, BE_BUCKET_KEY, "outer", "overwritten"));
    be_txn_abort(c);
    ck_assert(get_is(t, BE_BUCKET_KEY, "outer", "1"));
    ck_assert(get_is(t, BE_BUCKET_KEY, "inner", NULL));
    /* A nested txn that commits folds into the parent... */
    ck_assert_int_eq(be_txn_begin(be, t, true, &c), MS_OK);
    put_s(c, BE_BUCKET_KEY, "inner", "y");
    ck_assert_int_eq(be_txn_commit(c), MS_OK);
    ck_assert(get_is(t, BE_BUCKET_KEY, "inner", "y"));
    /* ...and is undone with it. */
    be_txn_abort(t);
    ck_assert_int_eq(be_txn_begin(be, NULL, false, &t), MS_OK);
    ck_assert(get_is(t, BE_BUCKET_KEY, "inner", NULL));
    ck_assert(get_is(t, BE_BUCKET_KEY, "outer", NULL));
    be_txn_abort(t);
}
END_TEST

START_TEST(cursor_walk)
{
    struct be_txn *t;
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    const char *keys[] = {"k03", "k01", "k05", "k02", "k04"};
    for (int i = 0; i < 5; i++)
        put_s(t, BE_BUCKET_KEY, keys[i], keys[i]);
    put_s(t, BE_BUCKET_META, "zzz", "other bucket");
    struct be_cursor *c;
    struct be_val k, v;
    ck_assert_int_eq(be_cursor_open(t, BE_BUCKET_KEY, &c), MS_OK);
    ck_assert_int_eq(be_cursor_seek(c, NULL, 0, &k, &v), MS_OK);
    ck_assert(tu_bytes_eq(k.p, k.len, "k01"));
    int n = 1;
    while (be_cursor_next(c, &k, &v) == MS_OK) {
        char want[16];
        snprintf(want, sizeof(want), "k%02d", ++n);
        ck_assert(tu_bytes_eq(k.p, k.len, want));
        ck_assert(tu_bytes_eq(v.p, v.len, want));
    }
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(be_cursor_seek(c, (const uint8_t *)"k025", 4, &k, &v), MS_OK);
    ck_assert(tu_bytes_eq(k.p, k.len, "k03"));
    ck_assert_int_eq(be_cursor_prev(c, &k, &v), MS_OK);
    ck_assert(tu_bytes_eq(k.p, k.len, "k02"));
    ck_assert_int_eq(be_cursor_last(c, &k, &v), MS_OK);
    ck_assert(tu_bytes_eq(k.p, k.len, "k05"));
    ck_assert_int_eq(be_cursor_seek(c, (const uint8_t *)"k06", 3, &k, &v), MS_E_NOT_EXIST);
    be_cursor_close(c);

    /* Deleting the current record while walking (compaction does this) is safe. */
    ck_assert_int_eq(be_cursor_open(t, BE_BUCKET_KEY, &c), MS_OK);
    ms_err e = be_cursor_seek(c, NULL, 0, &k, &v);
    int seen = 0;
    while (e == MS_OK) {
        seen++;
        if (k.p[2] == '2' || k.p[2] == '3') {
            uint8_t copy[8];
            size_t kl = k.len;
            memcpy(copy, k.p, kl);
            ck_assert_int_eq(be_del(t, BE_BUCKET_KEY, copy, kl), MS_OK);
        }
        e = be_cursor_next(c, &k, &v);
    }
    ck_assert_int_eq(seen, 5);
    be_cursor_close(c);
    ck_assert(get_is(t, BE_BUCKET_KEY, "k02", NULL));
    ck_assert(get_is(t, BE_BUCKET_KEY, "k04", "k04"));

    /* An empty bucket. */
    ck_assert_int_eq(be_cursor_open(t, BE_BUCKET_LEASE, &c), MS_OK);
    ck_assert_int_eq(be_cursor_seek(c, NULL, 0, &k, &v), MS_E_NOT_EXIST);
    ck_assert_int_eq(be_cursor_last(c, &k, &v), MS_E_NOT_EXIST);
    be_cursor_close(c);
    ck_assert_int_eq(be_txn_commit(t), MS_OK);
}
END_TEST

START_TEST(many_records_and_stats)
{
    struct be_txn *t;
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    char k[32], v[128];
    memset(v, 'v', sizeof(v));
    for (int i = 0; i < 20000; i++) {
        int kl = snprintf(k, sizeof(k), "key-%08d", i);
        ck_assert_int_eq(be_put(t, BE_BUCKET_KEY, (uint8_t *)k, (size_t)kl, (uint8_t *)v, 100),
                         MS_OK);
    }
    ck_assert_int_eq(be_txn_commit(t), MS_OK);
    ck_assert_int_eq(be_sync(be), MS_OK);
    struct be_stats st;
    be_stats(be, &st);
    ck_assert_uint_ge(st.size_bytes, 20000u * 100u);
    ck_assert_uint_ge(st.size_bytes, st.in_use_bytes);

    ck_assert_int_eq(be_txn_begin(be, NULL, false, &t), MS_OK);
    struct be_cursor *c;
    struct be_val kv, vv;
    ck_assert_int_eq(be_cursor_open(t, BE_BUCKET_KEY, &c), MS_OK);
    int n = 0;
    for (ms_err e = be_cursor_seek(c, NULL, 0, &kv, &vv); e == MS_OK;
         e = be_cursor_next(c, &kv, &vv))
        n++;
    ck_assert_int_eq(n, 20000);
    n = 0;
    for (ms_err e = be_cursor_last(c, &kv, &vv); e == MS_OK; e = be_cursor_prev(c, &kv, &vv))
        n++;
    ck_assert_int_eq(n, 20000);
    be_cursor_close(c);
    be_txn_abort(t);
}
END_TEST

/* ---- LMDB's files (lmdb only) ---- */

/* Run open/commit with stderr going to a file, and return what was logged (caller frees). */
static int stderr_to(const char *path)
{
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(fd, 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    return saved;
}

static char *stderr_back(int saved, const char *path)
{
    dup2(saved, STDERR_FILENO);
    close(saved);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *text = calloc(1, 8192);
    size_t n = fread(text, 1, 8191, f);
    text[n] = 0;
    fclose(f);
    return text;
}

static uint64_t file_size(const char *name)
{
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ck_assert_int_eq(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

/* Put n records key-<from..from+n) of vlen bytes, then delete all but keep of them, in one
 * transaction. */
static void put_then_delete(int from, int n, int keep, size_t vlen)
{
    static const uint8_t v[3000];
    struct be_txn *t;
    char k[32];
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    for (int i = from; i < from + n; i++) {
        int kl = snprintf(k, sizeof(k), "key-%08d", i);
        ck_assert_int_eq(be_put(t, BE_BUCKET_KEY, (uint8_t *)k, (size_t)kl, v, vlen), MS_OK);
    }
    for (int i = from + keep; i < from + n; i++) {
        int kl = snprintf(k, sizeof(k), "key-%08d", i);
        ck_assert_int_eq(be_del(t, BE_BUCKET_KEY, (uint8_t *)k, (size_t)kl), MS_OK);
    }
    ck_assert_int_eq(be_txn_commit(t), MS_OK);
}

/* Pages allocated and freed in the same transaction are never written, so a sound data.mdb
 * can be shorter than its last page: that must still open. */
START_TEST(lmdb_short_but_sound)
{
    int shorter = 0, from = 0;
    for (int round = 0; round < 40; round++) {
        int n = 50 + round * 5;
        put_then_delete(from, n, round % 7, round % 3 ? 100 : 2500);
        from += n;
        struct be_stats st;
        be_stats(be, &st);
        shorter += file_size("data.mdb") < st.in_use_bytes;
    }
    ck_assert_int_gt(shorter, 0); /* the case this test is about did happen */
    be_close(be);
    ms_err err = MS_OK;
    be = be_lmdb_open(dir, 64u << 20, &err);
    ck_assert_ptr_nonnull(be);
    struct be_txn *t;
    struct be_val v;
    ck_assert_int_eq(be_txn_begin(be, NULL, false, &t), MS_OK);
    ms_err e = be_get(t, BE_BUCKET_KEY, (const uint8_t *)"key-00000050", 12, &v); /* round 1 */
    be_txn_abort(t);
    ck_assert_int_eq(e, MS_OK);
    ck_assert_uint_eq(v.len, 100);
}
END_TEST

/* n records of 100 bytes, then the backend closed: path is its data file. */
static void fill_and_close(int n, char *path, size_t cap)
{
    put_then_delete(0, n, n, 100);
    be_close(be);
    be = NULL;
    snprintf(path, cap, "%s/data.mdb", dir);
}

/* Opening dir again fails with MS_E_DATA_CORRUPT and logs want. */
static void expect_refused(const char *want)
{
    char log[4200];
    snprintf(log, sizeof(log), "%s/stderr", dir);
    int saved = stderr_to(log);
    ms_err err = MS_OK;
    be = be_lmdb_open(dir, 64u << 20, &err);
    char *text = stderr_back(saved, log);
    ck_assert_ptr_null(be);
    ck_assert_int_eq(err, MS_E_DATA_CORRUPT);
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    free(text);
}

/* A data.mdb cut short is refused with its name and both sizes, not a SIGBUS. */
START_TEST(lmdb_truncated_refused)
{
    char path[4200];
    fill_and_close(20000, path, sizeof(path));
    uint64_t size = file_size("data.mdb");
    ck_assert_int_eq(truncate(path, (off_t)(size / 2)), 0);
    char want[4400];
    snprintf(want, sizeof(want), "%s is truncated: it has %llu bytes but its meta page needs %llu",
             path, (unsigned long long)(size / 2), (unsigned long long)size);
    expect_refused(want);
}
END_TEST

/* A damaged meta page whose last page number is far past the file is refused at once as
 * damaged: not an allocation sized by that number (MS_E_NOMEM, or a process killed). */
START_TEST(lmdb_garbage_last_page_refused)
{
    char path[4200];
    fill_and_close(2000, path, sizeof(path));
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint32_t psize;
    ck_assert_int_eq(pread(fd, &psize, 4, 16 + 24), 4); /* mm_dbs[FREE_DBI].md_pad */
    ck_assert_uint_eq(psize, (uint32_t)sysconf(_SC_PAGESIZE));
    uint64_t last = 1ull << 50;
    for (int m = 0; m < 2; m++) /* mm_last_pg of both meta pages */
        ck_assert_int_eq(pwrite(fd, &last, 8, (off_t)m * psize + 16 + 120), 8);
    close(fd);
    char want[4400];
    snprintf(want, sizeof(want), "%s is damaged or truncated", path);
    expect_refused(want);
}
END_TEST

/* A write error is logged with the data file and the errno text. A full disk fails LMDB's
 * writes part-way (reported as EIO, as here past RLIMIT_FSIZE) or with ENOSPC. */
START_TEST(lmdb_write_error_logged)
{
    put_then_delete(0, 10, 10, 100);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = file_size("data.mdb") + 4096, .rlim_max = RLIM_INFINITY};
    char log[4200];
    snprintf(log, sizeof(log), "%s/stderr", dir);
    static const uint8_t v[2000];
    char k[32];
    struct be_txn *t;
    ck_assert_int_eq(be_txn_begin(be, NULL, true, &t), MS_OK);
    /* No ck_assert until the limit is lifted: each one appends to Check's own result file. */
    int saved = stderr_to(log);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ms_err put = MS_OK;
    for (int i = 0; i < 1000 && put == MS_OK; i++) {
        int kl = snprintf(k, sizeof(k), "big-%08d", i);
        put = be_put(t, BE_BUCKET_KEY, (uint8_t *)k, (size_t)kl, v, sizeof(v));
    }
    ms_err e = be_txn_commit(t);
    rl.rlim_cur = RLIM_INFINITY;
    int lifted = setrlimit(RLIMIT_FSIZE, &rl);
    char *text = stderr_back(saved, log);
    ck_assert_int_eq(lifted, 0);
    ck_assert_int_eq(put, MS_OK);
    ck_assert_int_eq(e, MS_E_IO);
    char want[4400];
    snprintf(want, sizeof(want), "commit failed on %s/data.mdb: %s", dir, strerror(EIO));
    ck_assert_msg(strstr(text, want) != NULL, "%s", text);
    ck_assert_msg(strstr(text, "bytes free") != NULL, "%s", text);
    free(text);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1)
        backend_name = argv[1];
    Suite *s = suite_create(strcmp(backend_name, "lmdb") == 0 ? "be_lmdb" : "be_memory");
    TCase *tc = tcase_create("txn");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, put_get_delete);
    tcase_add_test(tc, abort_restores);
    tcase_add_test(tc, nested_txn);
    suite_add_tcase(s, tc);
    tc = tcase_create("cursor");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, cursor_walk);
    tcase_add_test(tc, many_records_and_stats);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    if (strcmp(backend_name, "lmdb") == 0) {
        tc = tcase_create("lmdb_files");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, lmdb_short_but_sound);
        tcase_add_test(tc, lmdb_truncated_refused);
        tcase_add_test(tc, lmdb_garbage_last_page_refused);
        tcase_add_test(tc, lmdb_write_error_logged);
        tcase_set_timeout(tc, 60);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}
