/* test_auth.c - the auth store: etcd's rules for users, roles and the flag, persistence in the
 * buckets, permission checks, simple tokens, the log form and the bcrypt hasher. */
#include "metastore/arena.h"
#include "metastore/auth.h"
#include "metastore/be.h"
#include "metastore/buf.h"
#include "testutil.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B(s) ((struct auth_bytes){(const uint8_t *)(s), strlen(s)})
/* A caller holding a valid simple token of user u. */
#define CALLER(as, u) (&(struct auth_caller){true, (u), auth_revision(as)})

struct fix {
    struct be *be;
    struct be_txn *t;
    struct auth_store *as;
    struct arena *a;
    uint64_t index;
};

static void fix_open(struct fix *f)
{
    memset(f, 0, sizeof(*f));
    f->be = be_skiplist_open();
    ck_assert_ptr_nonnull(f->be);
    ck_assert_int_eq(be_txn_begin(f->be, NULL, true, &f->t), MS_OK);
    f->as = auth_create(300000);
    f->a = arena_create(4096);
}

static void fix_close(struct fix *f)
{
    be_txn_abort(f->t);
    be_close(f->be);
    auth_destroy(f->as);
    arena_destroy(f->a);
}

/* Apply as root (who) or as nobody. */
static ms_err run(struct fix *f, struct auth_req r, struct auth_resp *out)
{
    struct auth_resp dummy;
    return auth_apply(f->as, f->t, &r, ++f->index, 1000, f->a, out ? out : &dummy);
}

static struct auth_req as_root(struct auth_req r)
{
    r.has_who = true;
    r.who = B("root");
    return r;
}

static void setup_flow(struct fix *f)
{
    ck_assert_int_eq(run(f, (struct auth_req){.op = AUTH_OP_ENABLE}, NULL),
                     MS_E_ROOT_USER_NOT_EXIST);
    ck_assert_int_eq(
        run(f, (struct auth_req){.op = AUTH_OP_USER_ADD, .name = B("root"), .password = B("$2b$x")},
            NULL),
        MS_OK);
    ck_assert_int_eq(run(f, (struct auth_req){.op = AUTH_OP_ENABLE}, NULL),
                     MS_E_ROOT_ROLE_NOT_EXIST);
    ck_assert_int_eq(
        run(f,
            (struct auth_req){.op = AUTH_OP_USER_ADD, .name = B("alice"), .password = B("$2b$y")},
            NULL),
        MS_OK);
    ck_assert_int_eq(run(f, (struct auth_req){.op = AUTH_OP_ROLE_ADD, .name = B("reader")}, NULL),
                     MS_OK);
    ck_assert_int_eq(run(f,
                         (struct auth_req){.op = AUTH_OP_ROLE_GRANT,
                                           .name = B("reader"),
                                           .perm_type = AUTH_PERM_READ,
                                           .key = B("k/"),
                                           .range_end = B("k0")},
                         NULL),
                     MS_OK);
    ck_assert_int_eq(run(f,
                         (struct auth_req){.op = AUTH_OP_ROLE_GRANT,
                                           .name = B("reader"),
                                           .perm_type = AUTH_PERM_READWRITE,
                                           .key = B("foo")},
                         NULL),
                     MS_OK);
    ck_assert_int_eq(
        run(f, (struct auth_req){.op = AUTH_OP_USER_GRANT, .name = B("alice"), .role = B("reader")},
            NULL),
        MS_OK);
    /* root needs no role record. */
    ck_assert_int_eq(
        run(f, (struct auth_req){.op = AUTH_OP_USER_GRANT, .name = B("root"), .role = B("root")},
            NULL),
        MS_OK);
    ck_assert_int_eq(run(f, (struct auth_req){.op = AUTH_OP_ENABLE}, NULL), MS_OK);
    ck_assert(auth_enabled(f->as));
}

START_TEST(flow_and_errors)
{
    struct fix f;
    fix_open(&f);
    setup_flow(&f);
    uint64_t rev = auth_revision(f.as);
    ck_assert_uint_eq(rev, 7); /* every change but enable moved it */
    /* Admin requests need root once enabled. */
    ck_assert_int_eq(run(&f, (struct auth_req){.op = AUTH_OP_USER_LIST}, NULL), MS_E_USER_EMPTY);
    struct auth_req alice_list = {.op = AUTH_OP_USER_LIST, .has_who = true, .who = B("alice")};
    ck_assert_int_eq(run(&f, alice_list, NULL), MS_E_PERMISSION_DENIED);
    struct auth_resp out;
    ck_assert_int_eq(run(&f, as_root((struct auth_req){.op = AUTH_OP_USER_LIST}), &out), MS_OK);
    ck_assert_uint_eq(out.n_names, 2);
    ck_assert(tu_bytes_eq(out.names[0].p, out.names[0].len, "alice"));
    ck_assert(tu_bytes_eq(out.names[1].p, out.names[1].len, "root"));
    /* A user may read itself; a role holder may read the role. */
    struct auth_req self = {
        .op = AUTH_OP_USER_GET, .has_who = true, .who = B("alice"), .name = B("alice")};
    ck_assert_int_eq(run(&f, self, &out), MS_OK);
    ck_assert_uint_eq(out.n_names, 1);
    self.name = B("root");
    ck_assert_int_eq(run(&f, self, NULL), MS_E_PERMISSION_DENIED);
    struct auth_req rg = {
        .op = AUTH_OP_ROLE_GET, .has_who = true, .who = B("alice"), .name = B("reader")};
    ck_assert_int_eq(run(&f, rg, &out), MS_OK);
    ck_assert_uint_eq(out.n_perms, 2);
    ck_assert(tu_bytes_eq(out.perms[0].key.p, out.perms[0].key.len, "foo"));
    ck_assert_int_eq(out.perms[0].type, AUTH_PERM_READWRITE);
    ck_assert(tu_bytes_eq(out.perms[1].key.p, out.perms[1].key.len, "k/"));
    /* etcd's errors. */
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_ROLE_GET, .name = B("root")}), NULL),
        MS_E_ROLE_NOT_FOUND);
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_USER_ADD, .name = B("alice")}), NULL),
        MS_E_USER_EXISTS);
    ck_assert_int_eq(run(&f, as_root((struct auth_req){.op = AUTH_OP_USER_ADD}), NULL),
                     MS_E_USER_EMPTY);
    ck_assert_int_eq(run(&f, as_root((struct auth_req){.op = AUTH_OP_ROLE_ADD}), NULL),
                     MS_E_ROLE_EMPTY);
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_ROLE_ADD, .name = B("reader")}), NULL),
        MS_E_ROLE_EXISTS);
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_USER_DELETE, .name = B("root")}), NULL),
        MS_E_INVALID_AUTH_MGMT);
    ck_assert_int_eq(run(&f,
                         as_root((struct auth_req){
                             .op = AUTH_OP_USER_REVOKE, .name = B("root"), .role = B("root")}),
                         NULL),
                     MS_E_INVALID_AUTH_MGMT);
    ck_assert_int_eq(run(&f,
                         as_root((struct auth_req){
                             .op = AUTH_OP_USER_REVOKE, .name = B("alice"), .role = B("nope")}),
                         NULL),
                     MS_E_ROLE_NOT_GRANTED);
    ck_assert_int_eq(run(&f,
                         as_root((struct auth_req){
                             .op = AUTH_OP_ROLE_REVOKE, .name = B("reader"), .key = B("zz")}),
                         NULL),
                     MS_E_PERMISSION_NOT_GRANTED);
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_USER_GET, .name = B("bob")}), NULL),
        MS_E_USER_NOT_FOUND);
    ck_assert_uint_eq(auth_revision(f.as), rev); /* failures change nothing */
    /* Deleting a role takes it from its users. */
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_ROLE_DELETE, .name = B("reader")}), NULL),
        MS_OK);
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_USER_GET, .name = B("alice")}), &out),
        MS_OK);
    ck_assert_uint_eq(out.n_names, 0);
    fix_close(&f);
}
END_TEST

START_TEST(persisted_in_buckets)
{
    struct fix f;
    fix_open(&f);
    setup_flow(&f);
    struct auth_store *again = auth_create(1000);
    ck_assert_int_eq(auth_load(again, f.t), MS_OK);
    ck_assert(auth_enabled(again));
    ck_assert_uint_eq(auth_revision(again), auth_revision(f.as));
    ck_assert_int_eq(
        auth_check_range(again, CALLER(again, B("alice")), B("k/a"), B(""), AUTH_PERM_READ), MS_OK);
    ck_assert_int_eq(auth_check_admin(again, CALLER(again, B("root"))), MS_OK);
    const char *hash;
    ck_assert_int_eq(auth_password_hash(again, B("alice"), &hash), MS_OK);
    ck_assert_str_eq(hash, "$2b$y");
    auth_destroy(again);
    /* A damaged record is refused, not half loaded. */
    ck_assert_int_eq(
        be_put(f.t, BE_BUCKET_AUTH_USERS, (const uint8_t *)"bad", 3, (const uint8_t *)"\x09", 1),
        MS_OK);
    again = auth_create(1000);
    ck_assert_int_eq(auth_load(again, f.t), MS_E_DATA_CORRUPT);
    ck_assert(!auth_enabled(again));
    auth_destroy(again);
    fix_close(&f);
}
END_TEST

START_TEST(permission_checks)
{
    struct fix f;
    fix_open(&f);
    setup_flow(&f);
    struct auth_bytes al = B("alice"), none = B("");
    /* Inside the prefix, a point and a covered range. */
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/x"), none, AUTH_PERM_READ),
                     MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/"), B("k0"), AUTH_PERM_READ),
                     MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/a"), B("k/b"), AUTH_PERM_READ),
                     MS_OK);
    /* Beyond it. */
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/"), B("k1"), AUTH_PERM_READ),
                     MS_E_PERMISSION_DENIED);
    struct auth_bytes all = {(const uint8_t *)"", 1};
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/"), all, AUTH_PERM_READ),
                     MS_E_PERMISSION_DENIED);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k"), none, AUTH_PERM_READ),
                     MS_E_PERMISSION_DENIED);
    /* READ is not WRITE; READWRITE is both. */
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/x"), none, AUTH_PERM_WRITE),
                     MS_E_PERMISSION_DENIED);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("foo"), none, AUTH_PERM_WRITE),
                     MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("foo0"), none, AUTH_PERM_WRITE),
                     MS_E_PERMISSION_DENIED);
    /* No token, unknown user, root. */
    ck_assert_int_eq(
        auth_check_range(f.as, &(struct auth_caller){0}, B("foo"), none, AUTH_PERM_READ),
        MS_E_USER_EMPTY);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, B("bob")), B("foo"), none, AUTH_PERM_READ),
                     MS_E_PERMISSION_DENIED);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, B("root")), B(""), all, AUTH_PERM_WRITE),
                     MS_OK);
    /* Adjacent grants cover a range together; an open-ended one covers everything after it. */
    ck_assert_int_eq(run(&f,
                         as_root((struct auth_req){.op = AUTH_OP_ROLE_GRANT,
                                                   .name = B("reader"),
                                                   .perm_type = AUTH_PERM_READ,
                                                   .key = B("k0"),
                                                   .range_end = B("m")}),
                         NULL),
                     MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/"), B("k5"), AUTH_PERM_READ),
                     MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/"), B("m0"), AUTH_PERM_READ),
                     MS_E_PERMISSION_DENIED);
    ck_assert_int_eq(run(&f,
                         as_root((struct auth_req){.op = AUTH_OP_ROLE_GRANT,
                                                   .name = B("reader"),
                                                   .perm_type = AUTH_PERM_READ,
                                                   .key = B("m"),
                                                   .range_end = all}),
                         NULL),
                     MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/"), all, AUTH_PERM_READ), MS_OK);
    /* Revoking the role takes the permissions away at once. */
    ck_assert_int_eq(run(&f,
                         as_root((struct auth_req){
                             .op = AUTH_OP_USER_REVOKE, .name = B("alice"), .role = B("reader")}),
                         NULL),
                     MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, CALLER(f.as, al), B("k/x"), none, AUTH_PERM_READ),
                     MS_E_PERMISSION_DENIED);
    /* Disabled: everything is allowed, tokens or not. */
    ck_assert_int_eq(run(&f, as_root((struct auth_req){.op = AUTH_OP_DISABLE}), NULL), MS_OK);
    ck_assert_int_eq(
        auth_check_range(f.as, &(struct auth_caller){0}, B("x"), none, AUTH_PERM_WRITE), MS_OK);
    fix_close(&f);
}
END_TEST

static struct auth_bytes authenticate(struct fix *f, const char *user, char *tok)
{
    struct auth_resp out;
    char prefix[17];
    auth_token_prefix(prefix);
    struct auth_req r = {.op = AUTH_OP_AUTHENTICATE,
                         .name = B(user),
                         .token = B(prefix),
                         .checked_rev = auth_revision(f->as)};
    ck_assert_int_eq(run(f, r, &out), MS_OK);
    memcpy(tok, out.token.p, out.token.len);
    tok[out.token.len] = 0;
    ck_assert_int_eq(tok[16], '.');
    ck_assert_uint_eq(strtoull(tok + 17, NULL, 10), f->index);
    return (struct auth_bytes){(const uint8_t *)tok, out.token.len};
}

START_TEST(tokens)
{
    struct fix f;
    fix_open(&f);
    setup_flow(&f);
    char t1[64], t2[64], t3[64];
    struct auth_bytes a1 = authenticate(&f, "alice", t1);
    struct auth_bytes a2 = authenticate(&f, "alice", t2);
    struct auth_bytes r1 = authenticate(&f, "root", t3);
    struct auth_caller cu;
    ck_assert_int_eq(auth_token_user(f.as, a1.p, a1.len, 2000, &cu), MS_OK);
    ck_assert(tu_bytes_eq(cu.user.p, cu.user.len, "alice"));
    ck_assert_int_eq(auth_token_user(f.as, (const uint8_t *)"x.1", 3, 2000, &cu),
                     MS_E_INVALID_AUTH_TOKEN);
    /* A password checked against an older revision is not honoured. */
    struct auth_req stale = {.op = AUTH_OP_AUTHENTICATE,
                             .name = B("alice"),
                             .token = B("abcdefghijklmnop"),
                             .checked_rev = auth_revision(f.as) - 1};
    ck_assert_int_eq(run(&f, stale, NULL), MS_E_AUTH_OLD_REVISION);
    /* changepw drops the user's tokens, not the others'. */
    ck_assert_int_eq(
        run(&f,
            as_root((struct auth_req){
                .op = AUTH_OP_USER_CHANGEPW, .name = B("alice"), .password = B("$2b$z")}),
            NULL),
        MS_OK);
    ck_assert_int_eq(auth_token_user(f.as, a1.p, a1.len, 2000, &cu), MS_E_INVALID_AUTH_TOKEN);
    ck_assert_int_eq(auth_token_user(f.as, a2.p, a2.len, 2000, &cu), MS_E_INVALID_AUTH_TOKEN);
    ck_assert_int_eq(auth_token_user(f.as, r1.p, r1.len, 2000, &cu), MS_OK);
    /* Each use renews the TTL (300 s); idle past it, the token is gone. */
    ck_assert_int_eq(auth_token_user(f.as, r1.p, r1.len, 250000, &cu), MS_OK);
    ck_assert_int_eq(auth_token_user(f.as, r1.p, r1.len, 549999, &cu), MS_OK);
    ck_assert_int_eq(auth_token_user(f.as, r1.p, r1.len, 849999 + 1, &cu), MS_E_INVALID_AUTH_TOKEN);
    ck_assert_uint_eq(auth_token_count(f.as), 0);
    /* User delete and disable drop tokens too. */
    a1 = authenticate(&f, "alice", t1);
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_USER_DELETE, .name = B("alice")}), NULL),
        MS_OK);
    ck_assert_int_eq(auth_token_user(f.as, a1.p, a1.len, 2000, &cu), MS_E_INVALID_AUTH_TOKEN);
    r1 = authenticate(&f, "root", t3);
    ck_assert_int_eq(run(&f, as_root((struct auth_req){.op = AUTH_OP_DISABLE}), NULL), MS_OK);
    ck_assert_int_eq(auth_token_user(f.as, r1.p, r1.len, 2000, &cu), MS_E_INVALID_AUTH_TOKEN);
    ck_assert_int_eq(
        run(&f, (struct auth_req){.op = AUTH_OP_AUTHENTICATE, .name = B("root")}, NULL),
        MS_E_AUTH_NOT_ENABLED);
    fix_close(&f);
}
END_TEST

START_TEST(many_tokens_table_grows)
{
    struct fix f;
    fix_open(&f);
    setup_flow(&f);
    char toks[500][64];
    for (int i = 0; i < 500; i++)
        authenticate(&f, i % 2 ? "alice" : "root", toks[i]);
    ck_assert_uint_eq(auth_token_count(f.as), 500);
    struct auth_caller cu;
    for (int i = 0; i < 500; i++) {
        ck_assert_int_eq(
            auth_token_user(f.as, (const uint8_t *)toks[i], strlen(toks[i]), 3000, &cu), MS_OK);
        ck_assert(tu_bytes_eq(cu.user.p, cu.user.len, i % 2 ? "alice" : "root"));
    }
    ck_assert_int_eq(run(&f,
                         as_root((struct auth_req){
                             .op = AUTH_OP_USER_CHANGEPW, .name = B("alice"), .password = B("h")}),
                         NULL),
                     MS_OK);
    ck_assert_uint_eq(auth_token_count(f.as), 250);
    fix_close(&f);
}
END_TEST

START_TEST(log_form_round_trip)
{
    struct auth_req r = {.op = AUTH_OP_ROLE_GRANT,
                         .has_who = true,
                         .who = B("root"),
                         .name = B("reader"),
                         .perm_type = 2,
                         .key = B("k/"),
                         .range_end = B("k0"),
                         .checked_rev = 42};
    struct buf b;
    buf_init(&b);
    auth_req_encode(&r, &b);
    struct rd rd;
    struct auth_req back;
    rd_init(&rd, b.p, b.len);
    ck_assert(auth_req_decode(&rd, &back));
    ck_assert_uint_eq(rd_left(&rd), 0);
    ck_assert_int_eq(back.op, AUTH_OP_ROLE_GRANT);
    ck_assert(back.has_who);
    ck_assert(tu_bytes_eq(back.who.p, back.who.len, "root"));
    ck_assert(tu_bytes_eq(back.range_end.p, back.range_end.len, "k0"));
    ck_assert_int_eq(back.perm_type, 2);
    ck_assert_uint_eq(back.checked_rev, 42);
    /* Every truncation is refused. */
    for (size_t n = 0; n < b.len; n++) {
        rd_init(&rd, b.p, n);
        ck_assert(!auth_req_decode(&rd, &back));
    }
    buf_fini(&b);
}
END_TEST

struct job_out {
    int calls;
    ms_err err;
    char hash[128];
};

static void job_done(void *ctx, ms_err err, const char *hash)
{
    struct job_out *o = ctx;
    o->calls++;
    o->err = err;
    if (hash)
        strcpy(o->hash, hash);
}

static void wait_jobs(struct auth_hasher *h, int *calls, int want)
{
    int64_t deadline = tu_now_ms() + 30000;
    while (*calls < want && tu_now_ms() < deadline) {
        struct pollfd p = {.fd = auth_hasher_fd(h), .events = POLLIN};
        if (poll(&p, 1, 1000) > 0)
            auth_hasher_poll(h);
    }
    ck_assert_int_eq(*calls, want);
}

START_TEST(hasher_thread)
{
    struct auth_hasher *h = auth_hasher_create(4, 2);
    ck_assert_ptr_nonnull(h);
    struct job_out o = {0}, c1 = {0}, c2 = {0};
    uint64_t id;
    ck_assert_int_eq(
        auth_hasher_submit(h, AUTH_JOB_HASH, (const uint8_t *)"pw", 2, NULL, job_done, &o, &id),
        MS_OK);
    wait_jobs(h, &o.calls, 1);
    ck_assert_int_eq(o.err, MS_OK);
    ck_assert(strncmp(o.hash, "$2b$04$", 7) == 0);
    ck_assert(auth_bcrypt_check((const uint8_t *)"pw", 2, o.hash));
    ck_assert(!auth_bcrypt_check((const uint8_t *)"pW", 2, o.hash));
    ck_assert(!auth_bcrypt_check((const uint8_t *)"pw", 2, "plain"));
    ck_assert_int_eq(
        auth_hasher_submit(h, AUTH_JOB_CHECK, (const uint8_t *)"pw", 2, o.hash, job_done, &c1, &id),
        MS_OK);
    ck_assert_int_eq(
        auth_hasher_submit(h, AUTH_JOB_CHECK, (const uint8_t *)"no", 2, o.hash, job_done, &c2, &id),
        MS_OK);
    /* The queue is bounded. */
    ck_assert_int_eq(
        auth_hasher_submit(h, AUTH_JOB_CHECK, (const uint8_t *)"x", 1, o.hash, job_done, &c2, &id),
        MS_E_TOO_MANY_REQUESTS);
    wait_jobs(h, &c1.calls, 1);
    wait_jobs(h, &c2.calls, 1);
    ck_assert_int_eq(c1.err, MS_OK);
    ck_assert_int_eq(c2.err, MS_E_AUTH_FAILED);
    /* A cancelled job is never called back. */
    struct job_out gone = {0};
    ck_assert_int_eq(
        auth_hasher_submit(h, AUTH_JOB_HASH, (const uint8_t *)"a", 1, NULL, job_done, &gone, &id),
        MS_OK);
    auth_hasher_cancel(h, id);
    struct job_out last = {0};
    ck_assert_int_eq(
        auth_hasher_submit(h, AUTH_JOB_HASH, (const uint8_t *)"b", 1, NULL, job_done, &last, &id),
        MS_OK);
    wait_jobs(h, &last.calls, 1);
    ck_assert_int_eq(gone.calls, 0);
    /* Destroy with work queued. */
    ck_assert_int_eq(
        auth_hasher_submit(h, AUTH_JOB_HASH, (const uint8_t *)"c", 1, NULL, job_done, &gone, &id),
        MS_OK);
    auth_hasher_destroy(h);
    ck_assert_int_eq(gone.calls, 0);
}
END_TEST

/* ---- JWT ---- */

/* A fresh key pair of the kind ("rsa" or "ec") in dir: pub.pem, priv.pem. */
static void write_keys(const char *dir, const char *kind)
{
    EVP_PKEY *k = strcmp(kind, "rsa") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                           : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ck_assert_ptr_nonnull(k);
    char path[512];
    snprintf(path, sizeof(path), "%s/priv.pem", dir);
    FILE *f = fopen(path, "w");
    ck_assert(f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
    fclose(f);
    snprintf(path, sizeof(path), "%s/pub.pem", dir);
    f = fopen(path, "w");
    ck_assert(f && PEM_write_PUBKEY(f, k) == 1);
    fclose(f);
    EVP_PKEY_free(k);
}

static struct auth_jwt *jwt_open(const char *dir, const char *method, bool priv)
{
    char opts[1200], msg[256] = "";
    snprintf(opts, sizeof(opts), "pub-key=%s/pub.pem%s%s%s,sign-method=%s,ttl=5m", dir,
             priv ? ",priv-key=" : "", priv ? dir : "", priv ? "/priv.pem" : "", method);
    struct auth_jwt *j = auth_jwt_open(opts, msg, sizeof(msg));
    ck_assert_msg(j != NULL, "%s", msg);
    return j;
}

/* A token j signs for user at revision rev, checked to verify back to both; *tok is malloc'd. */
static void sign_checked(struct auth_jwt *j, const char *user_name, uint64_t rev_in,
                         struct arena *a, char **tok, size_t *n)
{
    ck_assert_int_eq(auth_jwt_sign(j, B(user_name), rev_in, 1000, tok, n), MS_OK);
    struct auth_bytes user;
    uint64_t rev;
    ck_assert_int_eq(auth_jwt_verify(j, (uint8_t *)*tok, *n, 1000, a, &user, &rev), MS_OK);
    ck_assert(tu_bytes_eq(user.p, user.len, user_name));
    ck_assert_uint_eq(rev, rev_in);
}

/* The token with any one byte changed is refused. */
static void each_byte_refused(struct auth_jwt *j, char *tok, size_t n, struct arena *a,
                              const char *method)
{
    struct auth_bytes user;
    uint64_t rev;
    for (size_t i = 0; i < n; i++) {
        char saved = tok[i];
        tok[i] = tok[i] == 'A' ? 'B' : 'A';
        ck_assert_msg(auth_jwt_verify(j, (uint8_t *)tok, n, 1000, a, &user, &rev) ==
                          MS_E_INVALID_AUTH_TOKEN,
                      "%s: byte %zu changed, still accepted", method, i);
        tok[i] = saved;
        arena_reset(a);
    }
}

static void check_method(const char *kind, const char *method, const char *wrong)
{
    char *dir = tu_mkdtemp("ms-jwt");
    write_keys(dir, kind);
    struct auth_jwt *j = jwt_open(dir, method, true);
    struct arena *a = arena_create(4096);
    char *tok;
    size_t n;
    sign_checked(j, "al\"ice", 7, a, &tok, &n);
    struct auth_bytes user;
    uint64_t rev;
    /* A verifier without the private key accepts it too. */
    struct auth_jwt *v = jwt_open(dir, method, false);
    ck_assert(!auth_jwt_can_sign(v));
    ck_assert_int_eq(auth_jwt_verify(v, (uint8_t *)tok, n, 1000, a, &user, &rev), MS_OK);
    char *none;
    size_t nn;
    ck_assert_int_ne(auth_jwt_sign(v, B("x"), 1, 1, &none, &nn), MS_OK);
    /* Expired (ttl 5 min), each byte changed, cut, or another algorithm: refused. */
    ck_assert_int_eq(auth_jwt_verify(j, (uint8_t *)tok, n, 1000 + 300, a, &user, &rev),
                     MS_E_INVALID_AUTH_TOKEN);
    each_byte_refused(j, tok, n, a, method);
    ck_assert_int_eq(auth_jwt_verify(j, (uint8_t *)tok, n - 1, 1000, a, &user, &rev),
                     MS_E_INVALID_AUTH_TOKEN);
    struct auth_jwt *other = jwt_open(dir, wrong, false);
    ck_assert_int_eq(auth_jwt_verify(other, (uint8_t *)tok, n, 1000, a, &user, &rev),
                     MS_E_INVALID_AUTH_TOKEN);
    /* alg "none" with the same claims and no signature. */
    const char *dot = strchr(tok, '.');
    const char *dot2 = strchr(dot + 1, '.');
    char forged[4096];
    int fl = snprintf(forged, sizeof(forged), "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.%.*s.",
                      (int)(dot2 - dot - 1), dot + 1);
    ck_assert_int_eq(auth_jwt_verify(j, (uint8_t *)forged, (size_t)fl, 1000, a, &user, &rev),
                     MS_E_INVALID_AUTH_TOKEN);
    free(tok);
    auth_jwt_close(j);
    auth_jwt_close(v);
    auth_jwt_close(other);
    arena_destroy(a);
    tu_rmtree(dir);
    free(dir);
}

/* HS*: the priv-key file's bytes are the shared secret that signs and verifies. */
static void check_hmac(const char *method, const char *wrong)
{
    char *dir = tu_mkdtemp("ms-jwt");
    char path[512], opts[1200], msg[256] = "";
    snprintf(path, sizeof(path), "%s/secret", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("a shared secret of a few bytes\n", f);
    fclose(f);
    snprintf(opts, sizeof(opts), "priv-key=%s,sign-method=%s", path, method);
    struct auth_jwt *j = auth_jwt_open(opts, msg, sizeof(msg));
    ck_assert_msg(j != NULL, "%s", msg);
    ck_assert(auth_jwt_can_sign(j));
    struct arena *a = arena_create(4096);
    char *tok;
    size_t n;
    sign_checked(j, "bob", 3, a, &tok, &n);
    struct auth_bytes user;
    uint64_t rev;
    each_byte_refused(j, tok, n, a, method);
    ck_assert_int_eq(auth_jwt_verify(j, (uint8_t *)tok, n, 1000 + 300, a, &user, &rev),
                     MS_E_INVALID_AUTH_TOKEN);
    /* Another secret, or another HMAC size, refuses it. */
    snprintf(opts, sizeof(opts), "priv-key=%s,sign-method=%s", path, wrong);
    struct auth_jwt *other = auth_jwt_open(opts, msg, sizeof(msg));
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(auth_jwt_verify(other, (uint8_t *)tok, n, 1000, a, &user, &rev),
                     MS_E_INVALID_AUTH_TOKEN);
    f = fopen(path, "w");
    fputs("another secret\n", f);
    fclose(f);
    snprintf(opts, sizeof(opts), "priv-key=%s,sign-method=%s", path, method);
    struct auth_jwt *k2 = auth_jwt_open(opts, msg, sizeof(msg));
    ck_assert_ptr_nonnull(k2);
    ck_assert_int_eq(auth_jwt_verify(k2, (uint8_t *)tok, n, 1000, a, &user, &rev),
                     MS_E_INVALID_AUTH_TOKEN);
    free(tok);
    auth_jwt_close(j);
    auth_jwt_close(other);
    auth_jwt_close(k2);
    arena_destroy(a);
    tu_rmtree(dir);
    free(dir);
}

START_TEST(jwt_sign_and_verify)
{
    check_hmac("HS256", "HS512");
    check_hmac("HS384", "HS256");
    check_method("rsa", "RS256", "RS384");
    check_method("rsa", "PS256", "RS256");
    check_method("ec", "ES256", "ES384");
    char msg[256];
    ck_assert_ptr_null(auth_jwt_open("sign-method=RS256", msg, sizeof(msg)));
    ck_assert_ptr_null(auth_jwt_open("pub-key=/nonexistent,sign-method=RS256", msg, sizeof(msg)));
    /* HS* needs the secret (priv-key); a public key is no use to it. */
    ck_assert_ptr_null(auth_jwt_open("pub-key=x,sign-method=HS256", msg, sizeof(msg)));
    ck_assert_msg(strstr(msg, "priv-key (the shared secret) is required"), "%s", msg);
    ck_assert_ptr_null(auth_jwt_open("priv-key=/nonexistent,sign-method=HS256", msg, sizeof(msg)));
    ck_assert_ptr_null(auth_jwt_open("pub-key=x,sign-method=RS256,ttl=5y", msg, sizeof(msg)));
    ck_assert_ptr_null(auth_jwt_open("pub-key=x,bogus=1,sign-method=RS256", msg, sizeof(msg)));
}
END_TEST

START_TEST(jwt_tokens_in_the_store)
{
    struct fix f;
    fix_open(&f);
    char *dir = tu_mkdtemp("ms-jwt");
    write_keys(dir, "rsa");
    auth_use_jwt(f.as, jwt_open(dir, "RS256", true));
    setup_flow(&f);
    struct auth_resp out;
    struct auth_req r = {
        .op = AUTH_OP_AUTHENTICATE, .name = B("alice"), .checked_rev = auth_revision(f.as)};
    ck_assert_int_eq(run(&f, r, &out), MS_OK);
    char tok[2048];
    memcpy(tok, out.token.p, out.token.len);
    size_t n = out.token.len;
    struct auth_caller c;
    ck_assert_int_eq(auth_token_user(f.as, (uint8_t *)tok, n, 2000, &c), MS_OK);
    ck_assert(tu_bytes_eq(c.user.p, c.user.len, "alice"));
    ck_assert_int_eq(auth_check_range(f.as, &c, B("k/x"), B(""), AUTH_PERM_READ), MS_OK);
    /* Any change of users or roles makes older tokens stale (etcd ErrAuthOldRevision). */
    ck_assert_int_eq(
        run(&f, as_root((struct auth_req){.op = AUTH_OP_ROLE_ADD, .name = B("r2")}), NULL), MS_OK);
    ck_assert_int_eq(auth_token_user(f.as, (uint8_t *)tok, n, 2000, &c), MS_OK);
    ck_assert_int_eq(auth_check_range(f.as, &c, B("k/x"), B(""), AUTH_PERM_READ),
                     MS_E_AUTH_OLD_REVISION);
    tok[n - 2] ^= 1;
    ck_assert_int_eq(auth_token_user(f.as, (uint8_t *)tok, n, 2000, &c), MS_E_INVALID_AUTH_TOKEN);
    tu_rmtree(dir);
    free(dir);
    fix_close(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("store");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, flow_and_errors);
    tcase_add_test(tc, persisted_in_buckets);
    tcase_add_test(tc, permission_checks);
    tcase_add_test(tc, tokens);
    tcase_add_test(tc, many_tokens_table_grows);
    tcase_add_test(tc, log_form_round_trip);
    tcase_add_test(tc, hasher_thread);
    tcase_add_test(tc, jwt_sign_and_verify);
    tcase_add_test(tc, jwt_tokens_in_the_store);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
