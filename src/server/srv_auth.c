/* srv_auth.c - authentication and role-based access: the auth store kept in step with the log,
 * the password hasher's thread and its eventfd, and etcd's permission checks of requests.
 *
 * Auth requests are log entries like every write (auth.h). Those that carry a password go to
 * the hasher first: user add and changepw propose the bcrypt hash instead of the password; an
 * authenticate checks the password against the stored hash and then proposes the token's
 * random prefix with the auth revision it checked at. If that revision has moved by the time
 * the entry applies, the check runs again (etcd's Authenticate loop), at most three times.
 * While a request is with the hasher or waits for its entry, it is an op listed here; the
 * caller's id names it for srv_cancel.
 */
#include "srv_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

#define MAX_HASH_JOBS 1024 /* queued bcrypt jobs; beyond: "too many requests" */
#define MAX_TRIES     3

struct srv_auth_op {
    struct srv_auth_op *prev;
    struct srv_auth_op *next;
    struct srv *s;
    uint64_t id;  /* the caller's, and the entry's wait once proposed */
    uint64_t job; /* the hasher's job while one runs (0: none) */
    bool proposed;
    int tries;
    srv_done_fn done;
    void *ctx;
    struct auth_req req; /* byte fields point into mem (or hash, prefix) */
    uint8_t *mem;
    char hash[128];
    char prefix[17];
};

static void on_hasher(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    auth_hasher_poll(s->auth.hasher);
}

ms_err srv_auth_open(struct srv *s)
{
    s->auth.store = auth_create(s->cfg.auth_token_ttl_s * 1000);
    if (!s->auth.store)
        return MS_E_NOMEM;
    ms_err e = auth_load(s->auth.store, s->wtxn);
    if (e)
        return e;
    if (strncmp(s->cfg.auth_token, "jwt", 3) == 0) {
        char msg[512];
        const char *opts = s->cfg.auth_token[3] == ',' ? s->cfg.auth_token + 4 : "";
        struct auth_jwt *j = auth_jwt_open(opts, msg, sizeof(msg));
        if (!j) {
            log_error("%s", msg);
            return MS_E_BAD_REQUEST;
        }
        auth_use_jwt(s->auth.store, j);
    }
    s->auth.hasher = auth_hasher_create((int)s->cfg.bcrypt_cost, MAX_HASH_JOBS);
    if (!s->auth.hasher)
        return MS_E_INTERNAL;
    s->auth.ev =
        event_new(s->base, auth_hasher_fd(s->auth.hasher), EV_READ | EV_PERSIST, on_hasher, s);
    if (!s->auth.ev || event_add(s->auth.ev, NULL))
        return MS_E_NOMEM;
    if (auth_enabled(s->auth.store))
        log_info("authentication is enabled (auth revision %llu)",
                 (unsigned long long)auth_revision(s->auth.store));
    return MS_OK;
}

ms_err srv_auth_reload(struct srv *s)
{
    return auth_load(s->auth.store, s->wtxn);
}

static void op_free(struct srv *s, struct srv_auth_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        s->auth.ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    if (op->mem) {
        /* The password copy does not outlive the request. */
        volatile uint8_t *p = op->mem;
        for (size_t i = 0; i < op->req.password.len; i++)
            p[i] = 0;
    }
    free(op->mem);
    free(op);
}

void srv_auth_close(struct srv *s)
{
    auth_hasher_destroy(s->auth.hasher); /* no callback runs after this */
    while (s->auth.ops)
        op_free(s, s->auth.ops);
    if (s->auth.ev)
        event_free(s->auth.ev);
    auth_destroy(s->auth.store);
    memset(&s->auth, 0, sizeof(s->auth));
}

bool srv_auth_needs_hasher(const struct auth_req *r)
{
    return (r->op == AUTH_OP_USER_ADD && !r->no_password) || r->op == AUTH_OP_USER_CHANGEPW ||
           r->op == AUTH_OP_AUTHENTICATE;
}

/* The op's end: answer the caller (res may be NULL with err) and free it. */
static void op_finish(struct srv_auth_op *op, ms_err err, const struct srv_result *res)
{
    struct srv *s = op->s;
    srv_done_fn done = op->done;
    void *ctx = op->ctx;
    op_free(s, op);
    done(ctx, err, err ? NULL : res);
}

static void on_job(void *ctx, ms_err err, const char *hash);

/* Check the password against the stored hash, on the hasher. */
static ms_err start_check(struct srv_auth_op *op)
{
    struct srv *s = op->s;
    const char *stored;
    ms_err e = auth_password_hash(s->auth.store, op->req.name, &stored);
    if (e)
        return e;
    op->req.checked_rev = auth_revision(s->auth.store);
    return auth_hasher_submit(s->auth.hasher, AUTH_JOB_CHECK, op->req.password.p,
                              op->req.password.len, stored, on_job, op, &op->job);
}

static void on_applied(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_auth_op *op = ctx;
    op->proposed = false;
    if (err == MS_E_AUTH_OLD_REVISION && ++op->tries < MAX_TRIES) {
        /* Users changed between the check and the entry: check again. */
        ms_err e = start_check(op);
        if (e)
            op_finish(op, e, NULL);
        return;
    }
    if (err == MS_E_AUTH_OLD_REVISION)
        err = MS_E_AUTH_FAILED;
    op_finish(op, err, res);
}

static void on_job(void *ctx, ms_err err, const char *hash)
{
    struct srv_auth_op *op = ctx;
    struct srv *s = op->s;
    op->job = 0;
    if (err) {
        op_finish(op, err, NULL);
        return;
    }
    struct srv_req req = {.type = SRV_REQ_AUTH, .u.auth = op->req};
    if (op->req.op == AUTH_OP_AUTHENTICATE) {
        /* The password is not in the log: only the token's prefix and the checked revision. */
        auth_token_prefix(op->prefix);
        req.u.auth.password = (struct auth_bytes){NULL, 0};
        req.u.auth.token = (struct auth_bytes){(const uint8_t *)op->prefix, 16};
    } else {
        size_t n = strlen(hash);
        memcpy(op->hash, hash, n + 1);
        req.u.auth.password = (struct auth_bytes){(const uint8_t *)op->hash, n};
    }
    struct wait_entry *w = NULL;
    ms_err e = s->hooks.propose_for(s, &req, op->id);
    if (!e && !(w = wait_add(&s->waits, op->id)))
        e = MS_E_NOMEM; /* the entry still applies; nobody hears of it */
    if (e) {
        op_finish(op, e, NULL);
        return;
    }
    w->done = on_applied;
    w->ctx = op;
    op->proposed = true;
}

/* Copy the request's byte fields into one block the op owns (the password first). */
static bool op_copy(struct srv_auth_op *op, const struct auth_req *r)
{
    struct auth_bytes *f[] = {&op->req.password, &op->req.who,       &op->req.name, &op->req.role,
                              &op->req.key,      &op->req.range_end, &op->req.token};
    size_t total = 0;
    op->req = *r;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        total += f[i]->len;
    op->mem = malloc(total + 1);
    if (!op->mem)
        return false;
    size_t off = 0;
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i]->len)
            memcpy(op->mem + off, f[i]->p, f[i]->len);
        f[i]->p = op->mem + off;
        off += f[i]->len;
    }
    return true;
}

ms_err srv_auth_submit(struct srv *s, const struct auth_req *r, srv_done_fn done, void *ctx,
                       uint64_t *id)
{
    if (r->op == AUTH_OP_AUTHENTICATE) {
        /* etcd CheckPassword's answers come before any work. */
        const char *stored;
        ms_err e = auth_password_hash(s->auth.store, r->name, &stored);
        if (e)
            return e;
    }
    struct srv_auth_op *op = calloc(1, sizeof(*op));
    if (!op)
        return MS_E_NOMEM;
    if (!op_copy(op, r)) {
        free(op);
        return MS_E_NOMEM;
    }
    op->s = s;
    op->done = done;
    op->ctx = ctx;
    op->id = ++s->next_id;
    op->next = s->auth.ops;
    if (op->next)
        op->next->prev = op;
    s->auth.ops = op;
    ms_err e = r->op == AUTH_OP_AUTHENTICATE
                   ? start_check(op)
                   : auth_hasher_submit(s->auth.hasher, AUTH_JOB_HASH, op->req.password.p,
                                        op->req.password.len, NULL, on_job, op, &op->job);
    if (e) {
        op_free(s, op);
        return e;
    }
    *id = op->id;
    return MS_OK;
}

bool srv_auth_cancel(struct srv *s, uint64_t id)
{
    struct srv_auth_op *op = s->auth.ops;
    while (op && op->id != id)
        op = op->next;
    if (!op)
        return false;
    if (op->job)
        auth_hasher_cancel(s->auth.hasher, op->job);
    if (op->proposed)
        wait_remove(&s->waits, id, NULL); /* the entry still applies */
    op_free(s, op);
    return true;
}

ms_err srv_apply_auth(struct srv *s, const struct auth_req *r, uint64_t index,
                      struct auth_resp *out)
{
    ms_err e = auth_apply(s->auth.store, s->wtxn, r, index, clock_now_ms(), s->scratch, out);
    srv_check_apply_error(e);
    return e;
}

void srv_auth_stats(const struct srv *s, struct srv_auth_stats *out)
{
    out->revision = auth_revision(s->auth.store);
    out->tokens = auth_token_count(s->auth.store);
    out->held = 0;
    for (const struct srv_auth_op *op = s->auth.ops; op; op = op->next)
        out->held++;
}

/* ---- checks ---- */

ms_err srv_auth_user(struct srv *s, const uint8_t *tok, size_t len, struct auth_caller *out)
{
    return auth_token_user(s->auth.store, tok, len, clock_now_ms(), out);
}

void srv_auth_cert_user(struct srv *s, const uint8_t *cn, size_t len, struct auth_caller *out)
{
    *out = (struct auth_caller){true, {cn, len}, auth_revision(s->auth.store)};
}

ms_err srv_auth_admin(struct srv *s, const struct auth_caller *c)
{
    return auth_check_admin(s->auth.store, c);
}

ms_err srv_auth_raw_err(ms_err e)
{
    switch (e) {
    case MS_E_INVALID_AUTH_TOKEN:
        return MS_E_AUTH_RAW_INVALID_TOKEN;
    case MS_E_USER_EMPTY:
        return MS_E_AUTH_RAW_USER_EMPTY;
    case MS_E_USER_NOT_FOUND:
        return MS_E_AUTH_RAW_USER_NOT_FOUND;
    case MS_E_PERMISSION_DENIED:
        return MS_E_AUTH_RAW_PERMISSION_DENIED;
    default:
        return e;
    }
}

const char *srv_auth_watch(struct srv *s, const uint8_t *tok, size_t len, const char *cn,
                           const struct kv_span *span)
{
    /* A watch of every key >= key is checked as that range, not as a single key as etcd 3.4
     * does. */
    struct auth_caller caller = {false, {NULL, 0}, 0};
    if (tok && srv_auth_user(s, tok, len, &caller))
        return "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token";
    if (!tok && cn)
        srv_auth_cert_user(s, (const uint8_t *)cn, strlen(cn), &caller);
    struct srv_req q = {.type = SRV_REQ_RANGE, .u.range.span = *span};
    if (!span->key_len) {
        q.u.range.span.key = (const uint8_t *)"";
        q.u.range.span.key_len = 1;
    }
    switch (srv_auth_check(s, &caller, &q)) {
    case MS_OK:
        return NULL;
    case MS_E_USER_EMPTY:
        return "rpc error: code = InvalidArgument desc = etcdserver: user name is empty";
    case MS_E_AUTH_OLD_REVISION:
        return "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old";
    default:
        return "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
    }
}

bool srv_auth_enabled(const struct srv *s)
{
    return auth_enabled(s->auth.store);
}

struct checker {
    struct srv *s;
    const struct auth_caller *caller;
};

static ms_err check_span(const struct checker *c, const struct kv_span *sp, enum auth_perm perm)
{
    struct auth_bytes key = {sp->key, sp->key_len};
    struct auth_bytes end = {NULL, 0};
    if (sp->end_kind == KV_END_KEY)
        end = (struct auth_bytes){sp->end, sp->end_len};
    else if (sp->end_kind == KV_END_ALL)
        end = (struct auth_bytes){(const uint8_t *)"", 1};
    return auth_check_range(c->s->auth.store, c->caller, key, end, perm);
}

struct lease_keys_check {
    const struct checker *c;
    ms_err e;
};

static bool check_lease_key(void *ctx, const uint8_t *key, size_t klen)
{
    struct lease_keys_check *lk = ctx;
    struct kv_span sp = {.key = key, .key_len = klen};
    lk->e = check_span(lk->c, &sp, AUTH_PERM_WRITE);
    return lk->e == MS_OK;
}

/* etcd checkLeasePuts: whoever attaches to or revokes a lease may write all its keys. */
static ms_err check_lease(const struct checker *c, int64_t lease)
{
    if (!lease || !auth_enabled(c->s->auth.store))
        return MS_OK;
    struct lease_keys_check lk = {c, MS_OK};
    srv_lease_each_key(c->s, lease, check_lease_key, &lk);
    return lk.e;
}

static ms_err check_txn(void *ctx, const struct kv_txn_req *t)
{
    for (size_t i = 0; i < t->n_cmps; i++) {
        ms_err e = check_span(ctx, &t->cmps[i].span, AUTH_PERM_READ);
        if (e)
            return e;
    }
    return MS_OK;
}

static ms_err check_op(void *ctx, const struct kv_op *op)
{
    switch (op->type) {
    case KV_OP_RANGE:
        return check_span(ctx, &op->u.range.span, AUTH_PERM_READ);
    case KV_OP_PUT: {
        struct kv_span sp = {.key = op->u.put.key, .key_len = op->u.put.key_len};
        return check_span(ctx, &sp, AUTH_PERM_WRITE);
    }
    case KV_OP_DELETE: {
        ms_err e = op->u.del.prev_kv ? check_span(ctx, &op->u.del.span, AUTH_PERM_READ) : MS_OK;
        return e ? e : check_span(ctx, &op->u.del.span, AUTH_PERM_WRITE);
    }
    default:
        return MS_OK; /* nested txns are walked into (etcd 3.4 forgot them) */
    }
}

static const struct kv_visit check_visit = {.txn = check_txn, .op = check_op};

ms_err srv_auth_check(struct srv *s, const struct auth_caller *caller, const struct srv_req *req)
{
    struct checker c = {s, caller};
    if (!auth_enabled(s->auth.store))
        return MS_OK;
    switch (req->type) {
    case SRV_REQ_RANGE:
        return check_span(&c, &req->u.range.span, AUTH_PERM_READ);
    case SRV_REQ_PUT: {
        struct kv_span sp = {.key = req->u.put.key, .key_len = req->u.put.key_len};
        ms_err e = check_span(&c, &sp, AUTH_PERM_WRITE);
        if (!e)
            e = check_lease(&c, req->u.put.lease);
        if (!e && req->u.put.prev_kv)
            e = check_span(&c, &sp, AUTH_PERM_READ);
        return e;
    }
    case SRV_REQ_DELETE: {
        ms_err e = check_span(&c, &req->u.del.span, AUTH_PERM_WRITE);
        if (!e && req->u.del.prev_kv)
            e = check_span(&c, &req->u.del.span, AUTH_PERM_READ);
        return e;
    }
    case SRV_REQ_TXN:
        return kv_txn_walk(&req->u.txn, &check_visit, &c, NULL);
    case SRV_REQ_LEASE_REVOKE:
        return check_lease(&c, req->u.lease.id);
    default:
        /* Compaction, alarms, lease grants: etcd 3.4 checks nothing; auth requests are checked
         * when applied. */
        return MS_OK;
    }
}
