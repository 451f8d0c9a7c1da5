/* test_util.c - util module: base64 (Go's rules), arena, buf/rd, crc32c, error table. */
#include "metastore/arena.h"
#include "metastore/b64.h"
#include "metastore/buf.h"
#include "metastore/crc32c.h"
#include "metastore/err.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/mcache.h"
#include "metastore/sha1.h"
#include "metastore/sha256.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int dec(const char *in, char *out, size_t *out_len, size_t *err_off)
{
    return b64_decode(in, strlen(in), (uint8_t *)out, out_len, err_off);
}

START_TEST(b64_roundtrip)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char e[16];
        size_t n = b64_encode((const uint8_t *)plain[i], strlen(plain[i]), e);
        ck_assert_uint_eq(n, strlen(enc[i]));
        ck_assert_uint_eq(n, b64_encoded_len(strlen(plain[i])));
        ck_assert(memcmp(e, enc[i], n) == 0);
        char d[16];
        size_t dl, off;
        ck_assert_int_eq(dec(enc[i], d, &dl, &off), 0);
        ck_assert_uint_eq(dl, strlen(plain[i]));
        ck_assert(memcmp(d, plain[i], dl) == 0);
    }
    /* every byte value */
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char e[400];
    size_t n = b64_encode(all, 256, e);
    uint8_t d[400];
    size_t dl, off;
    ck_assert_int_eq(b64_decode(e, n, d, &dl, &off), 0);
    ck_assert_uint_eq(dl, 256);
    ck_assert(memcmp(d, all, 256) == 0);
}
END_TEST

/* The encoder's fast paths (12-bit pairs, SSSE3 on x86-64) against the plain definition, for
 * every length up to 600 and every byte value. */
static size_t b64_plain(const uint8_t *s, size_t n, char *o)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        o[k++] = a[v >> 18];
        o[k++] = a[(v >> 12) & 63];
        o[k++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? a[v & 63] : '=';
    }
    return k;
}

START_TEST(b64_encode_matches_definition)
{
    uint8_t in[600] = {0};
    char got[800], want[800];
    uint32_t x = 12345;
    for (size_t n = 0; n <= sizeof(in); n++) {
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            in[i] = (uint8_t)(n < 256 && i == 0 ? n : x >> 16);
        }
        size_t a = b64_encode(in, n, got), b = b64_plain(in, n, want);
        ck_assert_uint_eq(a, b);
        ck_assert_uint_eq(a, b64_encoded_len(n));
        ck_assert_msg(memcmp(got, want, a) == 0, "length %zu", n);
    }
}
END_TEST

START_TEST(b64_go_errors)
{
    /* Offsets as Go's base64.StdEncoding reports them (reference §2.2). */
    struct {
        const char *in;
        size_t off;
    } bad[] = {
        {"Zm9vYg", 4},    /* missing padding */
        {"-_8=", 0},      /* URL-safe alphabet */
        {"Zm 9v", 2},     /* space */
        {"Zm9vYg=", 7},   /* half the padding */
        {"Zm9vYmE=x", 8}, /* garbage after padding */
        {"YQ==YQ==", 4},  /* data after padding */
        {"=", 0},         {"Z===", 1}, {"Zm9vY", 4},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char d[16];
        size_t dl, off = 999;
        ck_assert_msg(dec(bad[i].in, d, &dl, &off) == -1, "%s accepted", bad[i].in);
        ck_assert_msg(off == bad[i].off, "%s: offset %zu want %zu", bad[i].in, off, bad[i].off);
    }
}
END_TEST

START_TEST(b64_newlines_skipped)
{
    char d[16];
    size_t dl, off;
    ck_assert_int_eq(dec("Zm9v\r\nYmE=\n", d, &dl, &off), 0);
    ck_assert_uint_eq(dl, 5);
    ck_assert(memcmp(d, "fooba", 5) == 0);
    ck_assert_int_eq(dec("Zm9vYg=\n=", d, &dl, &off), 0);
    ck_assert_uint_eq(dl, 4);
}
END_TEST

START_TEST(arena_alloc_reset)
{
    struct arena *a = arena_create(64);
    ck_assert_ptr_nonnull(a);
    uint8_t *p = arena_alloc(a, 10);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 16, 0);
    memset(p, 1, 10);
    /* Force several chunks. */
    for (int i = 0; i < 1000; i++) {
        uint8_t *q = arena_alloc(a, 1000);
        ck_assert_ptr_nonnull(q);
        memset(q, 2, 1000);
    }
    ck_assert_uint_ge(arena_used(a), 1000000);
    uint8_t *big = arena_alloc(a, 50u << 20);
    ck_assert_ptr_nonnull(big);
    big[(50u << 20) - 1] = 1;
    arena_reset(a);
    ck_assert_uint_eq(arena_used(a), 0);
    char *s = arena_memdup(a, "hello", 5);
    ck_assert(memcmp(s, "hello", 5) == 0);
    ck_assert_ptr_null(arena_calloc(a, SIZE_MAX / 2, 4));
    ck_assert_ptr_null(arena_alloc(a, SIZE_MAX));
    int *z = arena_calloc(a, 100, sizeof(int));
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(z[i], 0);
    arena_destroy(a);
    arena_destroy(NULL);
}
END_TEST

START_TEST(buf_and_rd)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "x=");
    buf_put_i64(&b, INT64_MIN);
    buf_putc(&b, ',');
    buf_put_u64(&b, UINT64_MAX);
    buf_printf(&b, ",%d", 42);
    ck_assert(tu_bytes_eq(b.p, b.len, "x=-9223372036854775808,18446744073709551615,42"));
    buf_fini(&b);

    buf_put_be32(&b, 0xdeadbeef);
    buf_put_be64(&b, 0x0102030405060708ULL);
    buf_put_uvarint(&b, 0);
    buf_put_uvarint(&b, 300);
    buf_put_uvarint(&b, UINT64_MAX);
    struct rd r;
    rd_init(&r, b.p, b.len);
    ck_assert_uint_eq(rd_be32(&r), 0xdeadbeef);
    ck_assert_uint_eq(rd_be64(&r), 0x0102030405060708ULL);
    ck_assert_uint_eq(rd_uvarint(&r), 0);
    ck_assert_uint_eq(rd_uvarint(&r), 300);
    ck_assert_uint_eq(rd_uvarint(&r), UINT64_MAX);
    ck_assert(!r.err);
    ck_assert_uint_eq(rd_left(&r), 0);
    rd_u8(&r);
    ck_assert(r.err);
    /* A long printf goes through the slow path. */
    buf_fini(&b);
    buf_printf(&b, "%0300d", 7);
    ck_assert_uint_eq(b.len, 300);
    size_t n;
    uint8_t *p = buf_steal(&b, &n);
    ck_assert_uint_eq(n, 300);
    ck_assert_ptr_null(b.p);
    free(p);
    /* An overlong varint is rejected. */
    uint8_t over[11];
    memset(over, 0xff, sizeof(over));
    rd_init(&r, over, sizeof(over));
    rd_uvarint(&r);
    ck_assert(r.err);
}
END_TEST

START_TEST(crc32c_vectors)
{
    /* RFC 3720 test vectors. */
    uint8_t zeros[32] = {0};
    uint8_t ones[32];
    memset(ones, 0xff, sizeof(ones));
    ck_assert_uint_eq(crc32c(0, zeros, 32), 0x8A9136AAu);
    ck_assert_uint_eq(crc32c(0, ones, 32), 0x62A8AB43u);
    ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
    /* Incremental equals one-shot. */
    uint32_t c = crc32c(0, "1234", 4);
    c = crc32c(c, "56789", 5);
    ck_assert_uint_eq(c, 0xE3069283u);
}
END_TEST

static void sha_hex(const void *p, size_t n, char out[65])
{
    struct sha256 c;
    uint8_t d[32];
    sha256_init(&c);
    /* Feed in uneven pieces to exercise the buffering. */
    const uint8_t *b = p;
    size_t step = 1;
    while (n) {
        size_t k = step < n ? step : n;
        sha256_update(&c, b, k);
        b += k;
        n -= k;
        step = step * 3 + 1;
    }
    sha256_final(&c, d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

START_TEST(sha256_vectors)
{
    char h[65];
    sha_hex("", 0, h);
    ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, h);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(m, strlen(m), h);
    ck_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    sha_hex(million, 1000000, h);
    ck_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}
END_TEST

/* Hex of SHA-1(p), the input fed in two pieces split at cut (to cross the block buffer). */
static void sha1_hex(const void *p, size_t n, char out[41])
{
    struct sha1 c;
    uint8_t d[20];
    size_t cut = n / 3;
    sha1_init(&c);
    sha1_update(&c, p, cut);
    sha1_update(&c, (const uint8_t *)p + cut, n - cut);
    sha1_final(&c, d);
    for (size_t i = 0; i < sizeof(d); i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* FIPS 180 (NIST example) vectors. */
START_TEST(sha1_vectors)
{
    char h[41];
    sha1_hex("", 0, h);
    ck_assert_str_eq(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    sha1_hex("abc", 3, h);
    ck_assert_str_eq(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha1_hex(m, strlen(m), h);
    ck_assert_str_eq(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    sha1_hex(million, 1000000, h);
    ck_assert_str_eq(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(million);
}
END_TEST

START_TEST(err_table)
{
    ck_assert_str_eq(ms_err_msg(MS_E_EMPTY_KEY), "etcdserver: key is not provided");
    ck_assert_int_eq(ms_err_http_status(MS_E_EMPTY_KEY), 400);
    ck_assert_int_eq(ms_err_http_status(MS_E_COMPACTED), 400);
    ck_assert_int_eq(ms_err_grpc(MS_E_COMPACTED), 11);
    ck_assert_int_eq(ms_err_http_status(MS_E_LEASE_NOT_FOUND), 404);
    ck_assert_int_eq(ms_err_http_status(MS_E_LEASE_EXISTS), 412);
    ck_assert_int_eq(ms_err_http_status(MS_E_NO_SPACE), 429);
    ck_assert_int_eq(ms_err_http_status(MS_E_PERMISSION_DENIED), 403);
    ck_assert_int_eq(ms_err_http_status(MS_E_INVALID_AUTH_TOKEN), 401);
    ck_assert_int_eq(ms_err_http_status(MS_E_ELECTION_NO_LEADER), 500);
    ck_assert_int_eq(ms_err_http_status(MS_E_TIMEOUT), 503);
    ck_assert_str_eq(ms_err_name(MS_E_DUPLICATE_KEY), "MS_E_DUPLICATE_KEY");
    /* Out-of-range values map to internal, never crash. */
    ck_assert_str_eq(ms_err_name((ms_err)9999), "MS_E_INTERNAL");
    ck_assert_str_eq(ms_http_reason(412), "Precondition Failed");
    /* Every client-visible etcd message starts with its package prefix. */
    for (int e = 1; e < MS_ERR_COUNT_; e++) {
        const char *m = ms_err_msg((ms_err)e);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_ne(ms_err_http_status((ms_err)e), 200);
    }
}
END_TEST

START_TEST(arena_pool_reuses)
{
    /* A given-back arena comes back reset; one of another size, or past the bound, is freed. */
    struct arena_pool p;
    arena_pool_init(&p, 1024);
    struct arena *a = arena_pool_take(&p);
    ck_assert_ptr_nonnull(arena_alloc(a, 5000)); /* a second chunk, freed by the reset */
    arena_pool_give(&p, a);
    ck_assert_uint_eq(p.n, 1);
    ck_assert_ptr_eq(arena_pool_take(&p), a);
    ck_assert_uint_eq(arena_used(a), 0);
    arena_pool_give(&p, arena_create(4096)); /* not the pool's size */
    ck_assert_uint_eq(p.n, 0);
    struct arena *many[ARENA_POOL_MAX + 1];
    for (size_t i = 0; i <= ARENA_POOL_MAX; i++)
        many[i] = arena_pool_take(&p);
    for (size_t i = 0; i <= ARENA_POOL_MAX; i++)
        arena_pool_give(&p, many[i]);
    ck_assert_uint_eq(p.n, ARENA_POOL_MAX);
    arena_pool_give(&p, NULL);
    arena_pool_give(&p, a);
    ck_assert_uint_eq(p.n, ARENA_POOL_MAX);
    arena_pool_fini(&p);
    ck_assert_uint_eq(p.n, 0);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Memory an arena has not handed out, or took back with a reset, is poisoned: a pointer kept
 * past arena_reset is caught as a use after free would be (kept arenas are reused). */
START_TEST(arena_poisons_what_it_took_back)
{
    struct arena *a = arena_create(4096);
    uint8_t *p = arena_alloc(a, 24);
    ck_assert(!__asan_address_is_poisoned(p));
    ck_assert(!__asan_address_is_poisoned(p + 23));
    ck_assert(__asan_address_is_poisoned(p + 24));
    ck_assert(__asan_address_is_poisoned(p + 1000));
    arena_reset(a);
    ck_assert(__asan_address_is_poisoned(p));
    uint8_t *q = arena_alloc(a, 8);
    ck_assert_ptr_eq(q, p);
    ck_assert(!__asan_address_is_poisoned(q + 7));
    ck_assert(__asan_address_is_poisoned(q + 16));
    arena_destroy(a);
}
END_TEST
#endif

/* ---- mcache ---- */

START_TEST(mcache_classes_keep_and_realloc)
{
    struct mcache m;
    mcache_init(&m, 2);
    /* A freed block of a class serves the next allocation of that class. */
    uint8_t *a = mcache_alloc(&m, 40);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq((uintptr_t)a % 16, 0);
    memset(a, 0xab, 40);
    mcache_free(&m, a);
    ck_assert_uint_eq(m.n[1], 1);
    uint8_t *b = mcache_alloc(&m, 64);
    ck_assert_ptr_eq(b, a);
    ck_assert_uint_eq(m.n[1], 0);
    /* At most keep blocks per class: the rest go back to malloc. */
    uint8_t *c = mcache_alloc(&m, 33), *d = mcache_alloc(&m, 50);
    mcache_free(&m, b);
    mcache_free(&m, c);
    mcache_free(&m, d);
    ck_assert_uint_eq(m.n[1], 2);
    /* calloc zeroes a reused block; an overflowing count is refused. */
    uint8_t *z = mcache_calloc(&m, 8, 8);
    for (size_t i = 0; i < 64; i++)
        ck_assert_uint_eq(z[i], 0);
    ck_assert_ptr_null(mcache_calloc(&m, SIZE_MAX / 2, 4));
    ck_assert_ptr_null(mcache_alloc(&m, SIZE_MAX - 8));
    /* realloc keeps the bytes: within the class, across classes, into and out of malloc. */
    for (size_t i = 0; i < 64; i++)
        z[i] = (uint8_t)i;
    z = mcache_realloc(&m, z, 20); /* shrinks in place */
    z = mcache_realloc(&m, z, 3000);
    for (size_t i = 0; i < 20; i++)
        ck_assert_uint_eq(z[i], i);
    memset(z + 20, 7, 2980);
    z = mcache_realloc(&m, z, 100000);
    ck_assert_uint_eq(z[2999], 7);
    z[99999] = 9;
    z = mcache_realloc(&m, z, 200000);
    ck_assert_uint_eq(z[99999], 9);
    z = mcache_realloc(&m, z, 10);
    ck_assert_uint_eq(z[9], 9);
    mcache_free(&m, z);
    uint8_t *r = mcache_realloc(&m, NULL, 5000);
    ck_assert_ptr_nonnull(r);
    mcache_free(&m, r);
    mcache_free(&m, NULL);
    mcache_fini(&m); /* LeakSanitizer: every kept block is freed */
}
END_TEST

#if defined(__SANITIZE_ADDRESS__)
/* A kept block is poisoned, and so is the slack of its class past the size asked for. */
START_TEST(mcache_poisons_kept_blocks)
{
    struct mcache m;
    mcache_init(&m, 4);
    uint8_t *p = mcache_alloc(&m, 24);
    ck_assert(!__asan_address_is_poisoned(p + 23));
    ck_assert(__asan_address_is_poisoned(p + 24));
    mcache_free(&m, p);
    ck_assert(__asan_address_is_poisoned(p));
    uint8_t *q = mcache_alloc(&m, 30);
    ck_assert_ptr_eq(q, p);
    ck_assert(!__asan_address_is_poisoned(q + 29));
    ck_assert(__asan_address_is_poisoned(q + 30));
    mcache_free(&m, q);
    mcache_fini(&m);
}
END_TEST
#endif

/* Wait (bounded) for the sync in flight and reap it. */
static int async_sync_wait(struct fs_async_sync *a)
{
    int res = 1;
    for (int i = 0; i < 1000; i++) {
        struct pollfd p = {.fd = fs_async_sync_fd(a), .events = POLLIN};
        ck_assert_int_ge(poll(&p, 1, 10), 0);
        fs_async_sync_clear(a);
        if (fs_async_sync_reap(a, false, &res))
            return res;
    }
    ck_abort_msg("the asynchronous sync did not complete in 10 s");
    return res;
}

START_TEST(async_sync_file_and_dir)
{
    struct fs_async_sync *a = fs_async_sync_create();
    if (!a)
        return; /* no Linux AIO here: callers sync in place */
    char dir[] = "/tmp/metastore-test-fs.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/f", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "data", 4), 4);
    int res;
    ck_assert(!fs_async_sync_reap(a, false, &res)); /* nothing in flight */
    ck_assert(!fs_async_sync_busy(a));
    ck_assert_int_eq(fs_async_sync_start(a, fd, true), 0);
    ck_assert(fs_async_sync_busy(a));
    ck_assert_int_eq(fs_async_sync_start(a, fd, true), -1); /* one at a time */
    ck_assert_int_eq(errno, EBUSY);
    ck_assert_int_eq(async_sync_wait(a), 0);
    ck_assert(!fs_async_sync_busy(a));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dfd, 0);
    ck_assert_int_eq(fs_async_sync_start(a, dfd, false), 0);
    ck_assert_int_eq(async_sync_wait(a), 0);
    /* A closed descriptor is refused at submission, not reported later. */
    close(fd);
    ck_assert_int_eq(fs_async_sync_start(a, fd, true), -1);
    ck_assert_int_eq(errno, EBADF);
    /* Destroying waits for a sync in flight. */
    ck_assert_int_eq(fs_async_sync_start(a, dfd, false), 0);
    fs_async_sync_destroy(a);
    close(dfd);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(trash_removes_in_steps)
{
    char dir[] = "/tmp/metastore-test-trash.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char a[64], b[64];
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b, sizeof(b), "%s/b", dir);
    static char block[10000];
    for (int i = 0; i < 2; i++) {
        int fd = open(i ? b : a, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
        close(fd);
    }
    struct fs_trash *t = fs_trash_create(dir);
    ck_assert_ptr_nonnull(t);
    ck_assert(!fs_trash_step(t, 4000)); /* empty */
    ck_assert(fs_trash_add(t, a));
    ck_assert(fs_trash_add(t, b));
    /* The first step after adds syncs the directory and shrinks nothing. */
    struct stat st;
    ck_assert(fs_trash_step(t, 4000));
    ck_assert_int_eq(stat(a, &st), 0);
    ck_assert_int_eq(st.st_size, 10000);
    /* a: 10,000 -> 6,000 -> 2,000 -> gone; then b, oldest first, never more than asked. */
    ck_assert(fs_trash_step(t, 4000));
    ck_assert_int_eq(stat(a, &st), 0);
    ck_assert_int_eq(st.st_size, 6000);
    ck_assert(fs_trash_step(t, 4000));
    ck_assert(fs_trash_step(t, 4000));
    ck_assert_int_ne(stat(a, &st), 0);
    ck_assert_int_eq(stat(b, &st), 0);
    ck_assert_int_eq(st.st_size, 10000);
    int steps = 0;
    while (fs_trash_step(t, 4000) && steps < 10)
        steps++;
    ck_assert_int_eq(steps, 2);
    ck_assert_int_ne(stat(b, &st), 0);
    /* A file gone meanwhile is skipped; what is left at destroy stays on disk. */
    ck_assert(fs_trash_add(t, a));
    ck_assert(fs_trash_step(t, 4000)); /* the directory's sync */
    ck_assert(!fs_trash_step(t, 4000));
    int fd = open(b, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ck_assert_int_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
    close(fd);
    ck_assert(fs_trash_add(t, b));
    ck_assert(fs_trash_step(t, 4000));
    fs_trash_destroy(t);
    ck_assert_int_eq(stat(b, &st), 0);
    unlink(b);
    rmdir(dir);
}
END_TEST

/* METASTORE_CRASH_POINT's value: a known name, then an optional count of at least 1. */
START_TEST(faultpt_spec_parse)
{
    char name[32];
    uint64_t n = 0;
    ck_assert(faultpt_parse("wal_before_sync", name, sizeof(name), &n));
    ck_assert_str_eq(name, "wal_before_sync");
    ck_assert_uint_eq(n, 1);
    ck_assert(faultpt_parse("apply_mid_batch:5", name, sizeof(name), &n));
    ck_assert_str_eq(name, "apply_mid_batch");
    ck_assert_uint_eq(n, 5);
    ck_assert(faultpt_parse("defrag:18446744073709551615", name, sizeof(name), &n));
    ck_assert_uint_eq(n, UINT64_MAX);
    static const char *const bad[] = {
        "",
        "wal",
        "wal_before_sync:",
        "wal_before_sync:0",
        "wal_before_sync:-1",
        "compact:+2",
        "compact: 2",
        "compact:2x",
        "compact:18446744073709551616",
        "Compact",
        ":3",
        "compact:2:3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!faultpt_parse(bad[i], name, sizeof(name), &n), "accepted \"%s\"", bad[i]);
    ck_assert(!faultpt_parse("snapshot_install", name, 8, &n)); /* no room for the name */
#ifdef MS_FAULT_POINTS
    /* METASTORE_SLOW_FSYNC_MS delays an asynchronous sync's completion, not its caller. */
    setenv("METASTORE_SLOW_FSYNC_MS", "200", 1);
    char *dir = tu_mkdtemp("faultpt");
    char path[4200];
    snprintf(path, sizeof(path), "%s/f", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    struct fs_async_sync *a = fs_async_sync_create();
    ck_assert_ptr_nonnull(a);
    int res = -1;
    int64_t t0 = tu_now_ms();
    ck_assert_int_eq(fs_async_sync_start(a, fd, true), 0);
    ck_assert_int_lt(tu_now_ms() - t0, 100);
    ck_assert(!fs_async_sync_reap(a, false, &res));
    struct pollfd p = {.fd = fs_async_sync_fd(a), .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 5000), 1);
    ck_assert_int_ge(tu_now_ms() - t0, 200);
    fs_async_sync_clear(a);
    ck_assert(fs_async_sync_reap(a, false, &res));
    ck_assert_int_eq(res, 0);
    fs_async_sync_destroy(a);
    close(fd);
    tu_rmtree(dir);
    free(dir);
#endif
}
END_TEST

static Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("b64");
    tcase_add_test(tc, b64_roundtrip);
    tcase_add_test(tc, b64_go_errors);
    tcase_add_test(tc, b64_encode_matches_definition);
    tcase_add_test(tc, b64_newlines_skipped);
    suite_add_tcase(s, tc);
    tc = tcase_create("arena");
    tcase_add_test(tc, arena_alloc_reset);
    tcase_add_test(tc, arena_pool_reuses);
#if defined(__SANITIZE_ADDRESS__)
    tcase_add_test(tc, arena_poisons_what_it_took_back);
#endif
    suite_add_tcase(s, tc);
    tc = tcase_create("mcache");
    tcase_add_test(tc, mcache_classes_keep_and_realloc);
#if defined(__SANITIZE_ADDRESS__)
    tcase_add_test(tc, mcache_poisons_kept_blocks);
#endif
    suite_add_tcase(s, tc);
    tc = tcase_create("fs");
    tcase_add_test(tc, async_sync_file_and_dir);
    tcase_add_test(tc, trash_removes_in_steps);
    suite_add_tcase(s, tc);
    tc = tcase_create("faultpt");
    tcase_add_test(tc, faultpt_spec_parse);
    suite_add_tcase(s, tc);
    tc = tcase_create("buf");
    tcase_add_test(tc, buf_and_rd);
    suite_add_tcase(s, tc);
    tc = tcase_create("crc32c");
    tcase_add_test(tc, crc32c_vectors);
    suite_add_tcase(s, tc);
    tc = tcase_create("sha1");
    tcase_add_test(tc, sha1_vectors);
    suite_add_tcase(s, tc);
    tc = tcase_create("sha256");
    tcase_add_test(tc, sha256_vectors);
    suite_add_tcase(s, tc);
    tc = tcase_create("err");
    tcase_add_test(tc, err_table);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(util_suite());
}
