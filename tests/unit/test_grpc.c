/* test_grpc.c - grpc module: the length-prefixed message framing. */
#include "metastore/buf.h"
#include "metastore/grpc.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

/* Feed in[0..len) in pieces of step bytes; count the messages and check each one's bytes. */
static int feed(struct grpc_deframer *d, const uint8_t *in, size_t len, size_t step, size_t max,
                const char *const *want, enum grpc_deframe *last)
{
    int n = 0;
    size_t off = 0;
    *last = GRPC_DEFRAME_MORE;
    while (off < len) {
        size_t piece = len - off < step ? len - off : step;
        size_t used;
        enum grpc_deframe r = grpc_deframe(d, in + off, piece, max, &used);
        ck_assert_uint_le(used, piece);
        off += used;
        *last = r;
        if (r == GRPC_DEFRAME_MSG) {
            ck_assert_uint_eq(d->msg.len, strlen(want[n]));
            ck_assert(memcmp(d->msg.p, want[n], d->msg.len) == 0);
            n++;
        } else if (r != GRPC_DEFRAME_MORE) {
            break;
        } else {
            ck_assert_uint_eq(used, piece);
        }
    }
    return n;
}

START_TEST(deframe_split_anywhere)
{
    const char *msgs[] = {"hello", "", "a longer message of some bytes"};
    struct buf in;
    buf_init(&in);
    for (int i = 0; i < 3; i++) {
        grpc_frame_prefix(&in, strlen(msgs[i]));
        buf_append(&in, msgs[i], strlen(msgs[i]));
    }
    for (size_t step = 1; step <= in.len; step++) {
        struct grpc_deframer d;
        enum grpc_deframe last;
        grpc_deframer_init(&d);
        ck_assert_int_eq(feed(&d, in.p, in.len, step, 100, msgs, &last), 3);
        ck_assert_int_eq(last, GRPC_DEFRAME_MSG);
        grpc_deframer_fini(&d);
    }
    buf_fini(&in);
}
END_TEST

START_TEST(deframe_limits)
{
    struct grpc_deframer d;
    enum grpc_deframe last;
    const char *none[] = {NULL};
    /* announced length over the limit: refused at the prefix, nothing allocated */
    const uint8_t big[] = {0, 0, 0x10, 0, 0, 'x'};
    grpc_deframer_init(&d);
    ck_assert_int_eq(feed(&d, big, sizeof(big), 3, 4096, none, &last), 0);
    ck_assert_int_eq(last, GRPC_DEFRAME_TOO_LARGE);
    ck_assert_uint_eq(d.want, 0x100000);
    ck_assert_uint_eq(d.msg.cap, 0);
    grpc_deframer_fini(&d);
    /* exactly at the limit is fine */
    const uint8_t at[] = {0, 0, 0, 0, 2, 'o', 'k'};
    const char *ok[] = {"ok"};
    grpc_deframer_init(&d);
    ck_assert_int_eq(feed(&d, at, sizeof(at), 7, 2, ok, &last), 1);
    grpc_deframer_fini(&d);
    /* the compressed flag: no compressor is offered */
    const uint8_t comp[] = {1, 0, 0, 0, 1, 'z'};
    grpc_deframer_init(&d);
    ck_assert_int_eq(feed(&d, comp, sizeof(comp), 6, 100, none, &last), 0);
    ck_assert_int_eq(last, GRPC_DEFRAME_COMPRESSED);
    grpc_deframer_fini(&d);
    /* a 4 GiB - 1 length never wraps */
    const uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff};
    grpc_deframer_init(&d);
    ck_assert_int_eq(feed(&d, huge, sizeof(huge), 5, SIZE_MAX, none, &last), 0);
    ck_assert_int_eq(last, GRPC_DEFRAME_MORE);
    grpc_deframer_fini(&d);
}
END_TEST

/* A message's buffer is its exact size (not rounded up), and grpc_deframer_next gives a large
 * one back, so that what a connection holds for its streams is what they are sending. */
START_TEST(deframe_buffer_size)
{
    struct grpc_deframer d;
    grpc_deframer_init(&d);
    size_t n = 100001, used;
    uint8_t *m = calloc(1, n + 5);
    ck_assert_ptr_nonnull(m);
    m[3] = (uint8_t)(n >> 8);
    m[4] = (uint8_t)n;
    m[2] = (uint8_t)(n >> 16);
    ck_assert_int_eq(grpc_deframe(&d, m, 6, n, &used), GRPC_DEFRAME_MORE);
    ck_assert_uint_eq(d.msg.cap, n);
    ck_assert_int_eq(grpc_deframe(&d, m + 6, n - 1, n, &used), GRPC_DEFRAME_MSG);
    ck_assert_uint_eq(d.msg.cap, n);
    grpc_deframer_next(&d, 1000);
    ck_assert_uint_eq(d.msg.cap, 0);
    ck_assert_uint_eq(d.hdr_len, 0);
    /* a small one is kept for the next message */
    const uint8_t small[] = {0, 0, 0, 0, 2, 'o', 'k'};
    ck_assert_int_eq(grpc_deframe(&d, small, sizeof(small), n, &used), GRPC_DEFRAME_MSG);
    size_t cap = d.msg.cap;
    grpc_deframer_next(&d, 1000);
    ck_assert_uint_eq(d.msg.cap, cap);
    ck_assert_int_eq(grpc_deframe(&d, small, sizeof(small), n, &used), GRPC_DEFRAME_MSG);
    ck_assert(memcmp(d.msg.p, "ok", 2) == 0);
    grpc_deframer_fini(&d);
    free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("grpc");
    TCase *tc = tcase_create("frame");
    tcase_add_test(tc, deframe_split_anywhere);
    tcase_add_test(tc, deframe_limits);
    tcase_add_test(tc, deframe_buffer_size);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
