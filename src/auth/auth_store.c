/* auth_store.c - users and roles, the enabled flag and the auth revision: loaded from the
 * buckets at start, changed by applying log entries with etcd 3.4's rules (auth/store.go).
 *
 * Records: bucket "auth" holds "authEnabled" (one byte) and "authRevision" (8 bytes
 * big-endian); "authUsers" maps a user name to its record (version, flags, hash, roles);
 * "authRoles" a role name to its permissions. Each apply writes the backend first and then the
 * memory mirror, so a backend failure leaves the mirror as it was.
 */
#include "auth_int.h"

#include "metastore/arena.h"
#include "metastore/be.h"
#include "metastore/buf.h"
#include "metastore/grow.h"
#include "metastore/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REC_V1   1
#define ROOT     "root"
#define ROOT_LEN 4

static const char KEY_ENABLED[] = "authEnabled";
static const char KEY_REVISION[] = "authRevision";

int auth_bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return an < bn ? -1 : an > bn;
}

static bool is_root(const uint8_t *p, size_t n)
{
    return n == ROOT_LEN && memcmp(p, ROOT, ROOT_LEN) == 0;
}

/* ---- memory ---- */

static void user_free(struct auth_user *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n_roles; i++)
        free((void *)u->roles[i].p);
    free(u->roles);
    auth_merged_free(u->merged);
    free(u->name);
    free(u->hash);
    free(u);
}

static void role_free(struct auth_role *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_perms; i++) {
        free(r->perms[i].key);
        free(r->perms[i].end);
    }
    free(r->perms);
    free(r->name);
    free(r);
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    d[n] = 0;
    return d;
}

static void clear_all(struct auth_store *as)
{
    for (size_t i = 0; i < as->n_users; i++)
        user_free(as->users[i]);
    for (size_t i = 0; i < as->n_roles; i++)
        role_free(as->roles[i]);
    as->n_users = as->n_roles = 0;
    as->enabled = false;
    as->revision = 0;
    auth_tokens_clear(&as->tokens);
}

struct auth_store *auth_create(uint64_t token_ttl_ms)
{
    struct auth_store *as = calloc(1, sizeof(*as));
    if (!as)
        return NULL;
    auth_tokens_init(&as->tokens, token_ttl_ms);
    return as;
}

void auth_use_jwt(struct auth_store *as, struct auth_jwt *j)
{
    auth_jwt_close(as->jwt);
    as->jwt = j;
}

void auth_destroy(struct auth_store *as)
{
    if (!as)
        return;
    clear_all(as);
    auth_jwt_close(as->jwt);
    arena_destroy(as->jwt_arena);
    auth_tokens_fini(&as->tokens);
    free(as->users);
    free(as->roles);
    free(as);
}

bool auth_enabled(const struct auth_store *as)
{
    return as->enabled;
}

uint64_t auth_revision(const struct auth_store *as)
{
    return as->revision;
}

/* Index of name in a sorted array of users or roles (or where it would go); *found. */
#define SEARCH(arr, n, name, len, found)                                                           \
    do {                                                                                           \
        size_t lo_ = 0, hi_ = (n);                                                                 \
        *(found) = false;                                                                          \
        while (lo_ < hi_) {                                                                        \
            size_t mid_ = (lo_ + hi_) / 2;                                                         \
            int c_ = auth_bytes_cmp((arr)[mid_]->name, (arr)[mid_]->name_len, name, len);          \
            if (c_ == 0) {                                                                         \
                lo_ = mid_;                                                                        \
                *(found) = true;                                                                   \
                break;                                                                             \
            }                                                                                      \
            if (c_ < 0)                                                                            \
                lo_ = mid_ + 1;                                                                    \
            else                                                                                   \
                hi_ = mid_;                                                                        \
        }                                                                                          \
        pos = lo_;                                                                                 \
    } while (0)

static size_t user_pos(const struct auth_store *as, const uint8_t *name, size_t len, bool *found)
{
    size_t pos;
    SEARCH(as->users, as->n_users, name, len, found);
    return pos;
}

static size_t role_pos(const struct auth_store *as, const uint8_t *name, size_t len, bool *found)
{
    size_t pos;
    SEARCH(as->roles, as->n_roles, name, len, found);
    return pos;
}

struct auth_user *auth_user_find(const struct auth_store *as, const uint8_t *name, size_t len)
{
    bool found;
    size_t i = user_pos(as, name, len, &found);
    return found ? as->users[i] : NULL;
}

struct auth_role *auth_role_find(const struct auth_store *as, const uint8_t *name, size_t len)
{
    bool found;
    size_t i = role_pos(as, name, len, &found);
    return found ? as->roles[i] : NULL;
}

static size_t role_index(const struct auth_user *u, const uint8_t *role, size_t len, bool *found)
{
    size_t lo = 0, hi = u->n_roles;
    *found = false;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = auth_bytes_cmp(u->roles[mid].p, u->roles[mid].len, role, len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool auth_user_has_role(const struct auth_user *u, const uint8_t *role, size_t len)
{
    bool found;
    role_index(u, role, len, &found);
    return found;
}

/* Insert p at index i of a pointer array. */
static bool insert_ptr(void ***arr, size_t *n, size_t *cap, size_t i, void *p)
{
    void **a = ms_grow(*arr, cap, *n + 1, sizeof(*a), 16);
    if (!a)
        return false;
    *arr = a;
    memmove(a + i + 1, a + i, (*n - i) * sizeof(*a));
    a[i] = p;
    (*n)++;
    return true;
}

static void remove_ptr(void **arr, size_t *n, size_t i)
{
    memmove(arr + i, arr + i + 1, (*n - i - 1) * sizeof(*arr));
    (*n)--;
}

/* ---- records ---- */

static void user_encode(const struct auth_user *u, struct buf *b)
{
    buf_putc(b, REC_V1);
    buf_putc(b, (char)u->no_password);
    buf_put_lbytes(b, (const uint8_t *)u->hash, strlen(u->hash));
    buf_put_uvarint(b, u->n_roles);
    for (size_t i = 0; i < u->n_roles; i++)
        buf_put_lbytes(b, u->roles[i].p, u->roles[i].len);
}

static struct auth_user *user_decode(const uint8_t *name, size_t name_len, const uint8_t *p,
                                     size_t len)
{
    struct rd r;
    rd_init(&r, p, len);
    struct auth_user *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->name = dup_bytes(name, name_len);
    u->name_len = name_len;
    if (rd_u8(&r) != REC_V1)
        goto fail;
    u->no_password = rd_u8(&r) & 1;
    size_t hn;
    const uint8_t *h = rd_lbytes(&r, &hn);
    u->hash = r.err ? NULL : (char *)dup_bytes(h, hn);
    uint64_t nr = rd_uvarint(&r);
    if (!u->name || !u->hash || r.err || nr > rd_left(&r))
        goto fail;
    if (nr) {
        u->roles = calloc((size_t)nr, sizeof(*u->roles));
        if (!u->roles)
            goto fail;
    }
    for (size_t i = 0; i < nr; i++) {
        size_t n;
        const uint8_t *rp = rd_lbytes(&r, &n);
        if (r.err)
            goto fail;
        u->roles[i].p = dup_bytes(rp, n);
        u->roles[i].len = n;
        u->n_roles++;
        if (!u->roles[i].p)
            goto fail;
    }
    if (rd_left(&r))
        goto fail;
    return u;
fail:
    user_free(u);
    return NULL;
}

static void role_encode(const struct auth_role *ro, struct buf *b)
{
    buf_putc(b, REC_V1);
    buf_put_uvarint(b, ro->n_perms);
    for (size_t i = 0; i < ro->n_perms; i++) {
        buf_put_uvarint(b, (uint64_t)ro->perms[i].type);
        buf_put_lbytes(b, ro->perms[i].key, ro->perms[i].key_len);
        buf_put_lbytes(b, ro->perms[i].end, ro->perms[i].end_len);
    }
}

static struct auth_role *role_decode(const uint8_t *name, size_t name_len, const uint8_t *p,
                                     size_t len)
{
    struct rd r;
    rd_init(&r, p, len);
    struct auth_role *ro = calloc(1, sizeof(*ro));
    if (!ro)
        return NULL;
    ro->name = dup_bytes(name, name_len);
    ro->name_len = name_len;
    uint8_t v = rd_u8(&r);
    uint64_t np = rd_uvarint(&r);
    if (!ro->name || v != REC_V1 || r.err || np > rd_left(&r))
        goto fail;
    if (np) {
        ro->perms = calloc((size_t)np, sizeof(*ro->perms));
        if (!ro->perms)
            goto fail;
    }
    for (size_t i = 0; i < np; i++) {
        struct auth_perm_rec *pr = &ro->perms[i];
        size_t kn, en;
        pr->type = (int64_t)rd_uvarint(&r);
        const uint8_t *k = rd_lbytes(&r, &kn);
        const uint8_t *e = rd_lbytes(&r, &en);
        if (r.err)
            goto fail;
        ro->n_perms++;
        pr->key = dup_bytes(k, kn);
        pr->key_len = kn;
        pr->end = en ? dup_bytes(e, en) : NULL;
        pr->end_len = en;
        if (!pr->key || (en && !pr->end))
            goto fail;
    }
    if (rd_left(&r))
        goto fail;
    return ro;
fail:
    role_free(ro);
    return NULL;
}

static ms_err save_user(struct be_txn *t, const struct auth_user *u)
{
    struct buf b;
    buf_init(&b);
    user_encode(u, &b);
    ms_err e = buf_failed(&b) ? MS_E_NOMEM
                              : be_put(t, BE_BUCKET_AUTH_USERS, u->name, u->name_len, b.p, b.len);
    buf_fini(&b);
    return e;
}

static ms_err save_role(struct be_txn *t, const struct auth_role *ro)
{
    struct buf b;
    buf_init(&b);
    role_encode(ro, &b);
    ms_err e = buf_failed(&b) ? MS_E_NOMEM
                              : be_put(t, BE_BUCKET_AUTH_ROLES, ro->name, ro->name_len, b.p, b.len);
    buf_fini(&b);
    return e;
}

/* etcd commitRevision: every change of users, roles or the flag (but enable) moves it. */
static ms_err commit_revision(struct auth_store *as, struct be_txn *t)
{
    uint8_t v[8];
    be64_put(v, as->revision + 1);
    ms_err e =
        be_put(t, BE_BUCKET_AUTH, (const uint8_t *)KEY_REVISION, sizeof(KEY_REVISION) - 1, v, 8);
    if (!e)
        as->revision++;
    auth_perm_invalidate(as);
    return e;
}

ms_err auth_load(struct auth_store *as, struct be_txn *t)
{
    clear_all(as);
    struct be_val v;
    ms_err e = be_get(t, BE_BUCKET_AUTH, (const uint8_t *)KEY_ENABLED, sizeof(KEY_ENABLED) - 1, &v);
    if (e == MS_OK)
        as->enabled = v.len == 1 && v.p[0] == 1;
    else if (e != MS_E_NOT_EXIST)
        return e;
    e = be_get(t, BE_BUCKET_AUTH, (const uint8_t *)KEY_REVISION, sizeof(KEY_REVISION) - 1, &v);
    if (e == MS_OK && v.len == 8)
        as->revision = be64_get(v.p);
    else if (e == MS_OK)
        return MS_E_DATA_CORRUPT;
    else if (e != MS_E_NOT_EXIST)
        return e;
    /* Both buckets are in key order, which is the arrays' order. */
    for (int pass = 0; pass < 2; pass++) {
        struct be_cursor *c;
        struct be_val k;
        enum be_bucket b = pass ? BE_BUCKET_AUTH_ROLES : BE_BUCKET_AUTH_USERS;
        if ((e = be_cursor_open(t, b, &c)) != MS_OK)
            return e;
        for (e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v)) {
            bool ok;
            if (pass) {
                struct auth_role *ro = role_decode(k.p, k.len, v.p, v.len);
                ok = ro && insert_ptr((void ***)&as->roles, &as->n_roles, &as->cap_roles,
                                      as->n_roles, ro);
                if (ro && !ok)
                    role_free(ro);
            } else {
                struct auth_user *u = user_decode(k.p, k.len, v.p, v.len);
                ok = u &&
                     insert_ptr((void ***)&as->users, &as->n_users, &as->cap_users, as->n_users, u);
                if (u && !ok)
                    user_free(u);
            }
            if (!ok) {
                log_error("auth record %.*s in %s does not decode", (int)k.len, (const char *)k.p,
                          be_bucket_name(b));
                be_cursor_close(c);
                clear_all(as);
                return MS_E_DATA_CORRUPT;
            }
        }
        be_cursor_close(c);
        if (e != MS_E_NOT_EXIST) {
            clear_all(as);
            return e;
        }
    }
    return MS_OK;
}

/* ---- apply ---- */

static ms_err set_enabled(struct be_txn *t, bool on)
{
    uint8_t v = on;
    return be_put(t, BE_BUCKET_AUTH, (const uint8_t *)KEY_ENABLED, sizeof(KEY_ENABLED) - 1, &v, 1);
}

static ms_err apply_enable(struct auth_store *as, struct be_txn *t)
{
    if (as->enabled)
        return MS_OK; /* etcd: "authentication is already enabled; ignored" */
    struct auth_user *root = auth_user_find(as, (const uint8_t *)ROOT, ROOT_LEN);
    if (!root)
        return MS_E_ROOT_USER_NOT_EXIST;
    if (!auth_user_has_role(root, (const uint8_t *)ROOT, ROOT_LEN))
        return MS_E_ROOT_ROLE_NOT_EXIST;
    ms_err e = set_enabled(t, true);
    if (e)
        return e;
    as->enabled = true;
    auth_tokens_clear(&as->tokens);
    auth_perm_invalidate(as);
    log_info("enabled authentication");
    return MS_OK;
}

static ms_err apply_disable(struct auth_store *as, struct be_txn *t)
{
    if (!as->enabled)
        return MS_OK;
    ms_err e = set_enabled(t, false);
    if (!e)
        e = commit_revision(as, t);
    if (e)
        return e;
    as->enabled = false;
    auth_tokens_clear(&as->tokens);
    log_info("disabled authentication");
    return MS_OK;
}

static ms_err apply_authenticate(struct auth_store *as, const struct auth_req *r, uint64_t index,
                                 uint64_t now_ms, struct arena *a, struct auth_resp *out)
{
    if (!as->enabled)
        return MS_E_AUTH_NOT_ENABLED;
    struct auth_user *u = auth_user_find(as, r->name.p, r->name.len);
    if (!u || u->no_password)
        return MS_E_AUTH_FAILED;
    if (r->checked_rev != as->revision)
        return MS_E_AUTH_OLD_REVISION;
    if (as->jwt) {
        char *jt;
        size_t jn;
        /* exp is Unix time, whatever clock the simple tokens run on. */
        ms_err e = auth_jwt_sign(as->jwt, (struct auth_bytes){u->name, u->name_len}, as->revision,
                                 (uint64_t)time(NULL), &jt, &jn);
        if (e)
            return e == MS_E_NOMEM ? e : MS_E_AUTH_FAILED;
        uint8_t *p = arena_memdup(a, jt, jn);
        free(jt);
        if (!p)
            return MS_E_NOMEM;
        out->token = (struct auth_bytes){p, jn};
        return MS_OK;
    }
    char tok[64];
    size_t n = r->token.len < 32 ? r->token.len : 32;
    memcpy(tok, r->token.p, n);
    n += (size_t)snprintf(tok + n, sizeof(tok) - n, ".%llu", (unsigned long long)index);
    ms_err e = auth_tokens_add(&as->tokens, (const uint8_t *)tok, n, u->name, u->name_len, now_ms);
    if (e)
        return e;
    uint8_t *p = arena_memdup(a, tok, n);
    if (!p)
        return MS_E_NOMEM;
    out->token = (struct auth_bytes){p, n};
    return MS_OK;
}

static ms_err apply_user_add(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    if (r->name.len == 0)
        return MS_E_USER_EMPTY;
    bool found;
    size_t i = user_pos(as, r->name.p, r->name.len, &found);
    if (found)
        return MS_E_USER_EXISTS;
    struct auth_user *u = calloc(1, sizeof(*u));
    if (!u)
        return MS_E_NOMEM;
    u->name = dup_bytes(r->name.p, r->name.len);
    u->name_len = r->name.len;
    u->no_password = r->no_password;
    u->hash = (char *)dup_bytes(r->password.p, r->no_password ? 0 : r->password.len);
    ms_err e = MS_E_NOMEM;
    if (!u->name || !u->hash ||
        !insert_ptr((void ***)&as->users, &as->n_users, &as->cap_users, i, u))
        goto fail;
    if ((e = save_user(t, u)) != MS_OK || (e = commit_revision(as, t)) != MS_OK) {
        remove_ptr((void **)as->users, &as->n_users, i);
        goto fail;
    }
    log_info("added a user: %.*s", (int)u->name_len, (const char *)u->name);
    return MS_OK;
fail:
    user_free(u);
    return e;
}

static ms_err apply_user_delete(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    if (as->enabled && is_root(r->name.p, r->name.len))
        return MS_E_INVALID_AUTH_MGMT;
    bool found;
    size_t i = user_pos(as, r->name.p, r->name.len, &found);
    if (!found)
        return MS_E_USER_NOT_FOUND;
    struct auth_user *u = as->users[i];
    ms_err e = be_del(t, BE_BUCKET_AUTH_USERS, u->name, u->name_len);
    if (!e)
        e = commit_revision(as, t);
    if (e)
        return e;
    auth_tokens_drop_user(&as->tokens, u->name, u->name_len);
    remove_ptr((void **)as->users, &as->n_users, i);
    user_free(u);
    return MS_OK;
}

static ms_err apply_user_changepw(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    struct auth_user *u = auth_user_find(as, r->name.p, r->name.len);
    if (!u)
        return MS_E_USER_NOT_FOUND;
    char *h = (char *)dup_bytes(r->password.p, r->password.len);
    if (!h)
        return MS_E_NOMEM;
    char *old = u->hash;
    u->hash = h;
    ms_err e = save_user(t, u);
    if (!e)
        e = commit_revision(as, t);
    if (e) {
        u->hash = old;
        free(h);
        return e;
    }
    free(old);
    auth_tokens_drop_user(&as->tokens, u->name, u->name_len);
    return MS_OK;
}

static ms_err apply_user_grant(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    struct auth_user *u = auth_user_find(as, r->name.p, r->name.len);
    if (!u)
        return MS_E_USER_NOT_FOUND;
    if (!is_root(r->role.p, r->role.len) && !auth_role_find(as, r->role.p, r->role.len))
        return MS_E_ROLE_NOT_FOUND;
    bool found;
    size_t i = role_index(u, r->role.p, r->role.len, &found);
    if (found)
        return MS_OK; /* etcd: "ignored grant role request to a user" */
    struct auth_bytes *roles = realloc(u->roles, (u->n_roles + 1) * sizeof(*roles));
    uint8_t *name = dup_bytes(r->role.p, r->role.len);
    if (roles)
        u->roles = roles;
    if (!roles || !name) {
        free(name);
        return MS_E_NOMEM;
    }
    memmove(roles + i + 1, roles + i, (u->n_roles - i) * sizeof(*roles));
    roles[i] = (struct auth_bytes){name, r->role.len};
    u->n_roles++;
    ms_err e = save_user(t, u);
    if (!e)
        e = commit_revision(as, t);
    if (e) {
        memmove(roles + i, roles + i + 1, (u->n_roles - i - 1) * sizeof(*roles));
        u->n_roles--;
        free(name);
    }
    return e;
}

static ms_err apply_user_revoke(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    if (as->enabled && is_root(r->name.p, r->name.len) && is_root(r->role.p, r->role.len))
        return MS_E_INVALID_AUTH_MGMT;
    struct auth_user *u = auth_user_find(as, r->name.p, r->name.len);
    if (!u)
        return MS_E_USER_NOT_FOUND;
    bool found;
    size_t i = role_index(u, r->role.p, r->role.len, &found);
    if (!found)
        return MS_E_ROLE_NOT_GRANTED;
    struct auth_bytes gone = u->roles[i];
    memmove(u->roles + i, u->roles + i + 1, (u->n_roles - i - 1) * sizeof(*u->roles));
    u->n_roles--;
    ms_err e = save_user(t, u);
    if (!e)
        e = commit_revision(as, t);
    if (e) {
        memmove(u->roles + i + 1, u->roles + i, (u->n_roles - i) * sizeof(*u->roles));
        u->roles[i] = gone;
        u->n_roles++;
        return e;
    }
    free((void *)gone.p);
    return MS_OK;
}

static ms_err apply_role_add(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    if (r->name.len == 0)
        return MS_E_ROLE_EMPTY;
    bool found;
    size_t i = role_pos(as, r->name.p, r->name.len, &found);
    if (found)
        return MS_E_ROLE_EXISTS;
    struct auth_role *ro = calloc(1, sizeof(*ro));
    if (!ro)
        return MS_E_NOMEM;
    ro->name = dup_bytes(r->name.p, r->name.len);
    ro->name_len = r->name.len;
    ms_err e = MS_E_NOMEM;
    if (!ro->name || !insert_ptr((void ***)&as->roles, &as->n_roles, &as->cap_roles, i, ro))
        goto fail;
    if ((e = save_role(t, ro)) != MS_OK || (e = commit_revision(as, t)) != MS_OK) {
        remove_ptr((void **)as->roles, &as->n_roles, i);
        goto fail;
    }
    return MS_OK;
fail:
    role_free(ro);
    return e;
}

static ms_err apply_role_delete(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    if (as->enabled && is_root(r->name.p, r->name.len))
        return MS_E_INVALID_AUTH_MGMT;
    bool found;
    size_t i = role_pos(as, r->name.p, r->name.len, &found);
    if (!found)
        return MS_E_ROLE_NOT_FOUND;
    struct auth_role *ro = as->roles[i];
    ms_err e = be_del(t, BE_BUCKET_AUTH_ROLES, ro->name, ro->name_len);
    if (e)
        return e;
    /* The role leaves every user that had it. */
    for (size_t j = 0; j < as->n_users; j++) {
        struct auth_user *u = as->users[j];
        bool has;
        size_t k = role_index(u, ro->name, ro->name_len, &has);
        if (!has)
            continue;
        struct auth_bytes gone = u->roles[k];
        memmove(u->roles + k, u->roles + k + 1, (u->n_roles - k - 1) * sizeof(*u->roles));
        u->n_roles--;
        free((void *)gone.p);
        if ((e = save_user(t, u)) != MS_OK)
            return e;
    }
    if ((e = commit_revision(as, t)) != MS_OK)
        return e;
    remove_ptr((void **)as->roles, &as->n_roles, i);
    role_free(ro);
    return MS_OK;
}

static ms_err apply_role_grant(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    struct auth_role *ro = auth_role_find(as, r->name.p, r->name.len);
    if (!ro)
        return MS_E_ROLE_NOT_FOUND;
    /* etcd: the first permission whose key is >= the new key; same key and end: update. */
    size_t i = 0;
    while (i < ro->n_perms &&
           auth_bytes_cmp(ro->perms[i].key, ro->perms[i].key_len, r->key.p, r->key.len) < 0)
        i++;
    if (i < ro->n_perms &&
        auth_bytes_cmp(ro->perms[i].key, ro->perms[i].key_len, r->key.p, r->key.len) == 0 &&
        auth_bytes_cmp(ro->perms[i].end, ro->perms[i].end_len, r->range_end.p, r->range_end.len) ==
            0) {
        int64_t old = ro->perms[i].type;
        ro->perms[i].type = r->perm_type;
        ms_err e = save_role(t, ro);
        if (!e)
            e = commit_revision(as, t);
        if (e)
            ro->perms[i].type = old;
        return e;
    }
    struct auth_perm_rec *perms = realloc(ro->perms, (ro->n_perms + 1) * sizeof(*perms));
    if (!perms)
        return MS_E_NOMEM;
    ro->perms = perms;
    struct auth_perm_rec pr = {.type = r->perm_type,
                               .key = dup_bytes(r->key.p, r->key.len),
                               .key_len = r->key.len,
                               .end = r->range_end.len ? dup_bytes(r->range_end.p, r->range_end.len)
                                                       : NULL,
                               .end_len = r->range_end.len};
    if (!pr.key || (r->range_end.len && !pr.end)) {
        free(pr.key);
        free(pr.end);
        return MS_E_NOMEM;
    }
    /* Go's sort.Sort by key (not stable; equal keys keep insertion order here). */
    size_t at = i;
    while (at < ro->n_perms &&
           auth_bytes_cmp(ro->perms[at].key, ro->perms[at].key_len, pr.key, pr.key_len) == 0)
        at++;
    memmove(perms + at + 1, perms + at, (ro->n_perms - at) * sizeof(*perms));
    perms[at] = pr;
    ro->n_perms++;
    ms_err e = save_role(t, ro);
    if (!e)
        e = commit_revision(as, t);
    if (e) {
        memmove(perms + at, perms + at + 1, (ro->n_perms - at - 1) * sizeof(*perms));
        ro->n_perms--;
        free(pr.key);
        free(pr.end);
    }
    return e;
}

static ms_err apply_role_revoke(struct auth_store *as, struct be_txn *t, const struct auth_req *r)
{
    struct auth_role *ro = auth_role_find(as, r->name.p, r->name.len);
    if (!ro)
        return MS_E_ROLE_NOT_FOUND;
    size_t i;
    for (i = 0; i < ro->n_perms; i++)
        if (auth_bytes_cmp(ro->perms[i].key, ro->perms[i].key_len, r->key.p, r->key.len) == 0 &&
            auth_bytes_cmp(ro->perms[i].end, ro->perms[i].end_len, r->range_end.p,
                           r->range_end.len) == 0)
            break;
    if (i == ro->n_perms)
        return MS_E_PERMISSION_NOT_GRANTED;
    struct auth_perm_rec gone = ro->perms[i];
    memmove(ro->perms + i, ro->perms + i + 1, (ro->n_perms - i - 1) * sizeof(*ro->perms));
    ro->n_perms--;
    ms_err e = save_role(t, ro);
    if (!e)
        e = commit_revision(as, t);
    if (e) {
        memmove(ro->perms + i + 1, ro->perms + i, (ro->n_perms - i) * sizeof(*ro->perms));
        ro->perms[i] = gone;
        ro->n_perms++;
        return e;
    }
    free(gone.key);
    free(gone.end);
    return MS_OK;
}

/* Answers are copied into a: the batch they belong to may change the store before they are
 * sent. */
static bool copy_to(struct arena *a, struct auth_bytes *dst, const uint8_t *p, size_t n)
{
    dst->p = n ? arena_memdup(a, p, n) : (const uint8_t *)"";
    dst->len = n;
    return dst->p != NULL;
}

static ms_err answer_user_get(struct auth_store *as, const struct auth_req *r, struct arena *a,
                              struct auth_resp *out)
{
    struct auth_user *u = auth_user_find(as, r->name.p, r->name.len);
    if (!u)
        return MS_E_USER_NOT_FOUND;
    struct auth_bytes *names = u->n_roles ? arena_calloc(a, u->n_roles, sizeof(*names)) : NULL;
    if (u->n_roles && !names)
        return MS_E_NOMEM;
    for (size_t i = 0; i < u->n_roles; i++)
        if (!copy_to(a, &names[i], u->roles[i].p, u->roles[i].len))
            return MS_E_NOMEM;
    out->names = names;
    out->n_names = u->n_roles;
    return MS_OK;
}

static ms_err answer_list(void *const *arr, size_t n, bool users, struct arena *a,
                          struct auth_resp *out)
{
    struct auth_bytes *names = n ? arena_calloc(a, n, sizeof(*names)) : NULL;
    if (n && !names)
        return MS_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        bool ok = users ? copy_to(a, &names[i], ((struct auth_user *)arr[i])->name,
                                  ((struct auth_user *)arr[i])->name_len)
                        : copy_to(a, &names[i], ((struct auth_role *)arr[i])->name,
                                  ((struct auth_role *)arr[i])->name_len);
        if (!ok)
            return MS_E_NOMEM;
    }
    out->names = names;
    out->n_names = n;
    return MS_OK;
}

static ms_err answer_role_get(struct auth_store *as, const struct auth_req *r, struct arena *a,
                              struct auth_resp *out)
{
    struct auth_role *ro = auth_role_find(as, r->name.p, r->name.len);
    if (!ro)
        return MS_E_ROLE_NOT_FOUND;
    struct auth_perm_out *p = ro->n_perms ? arena_calloc(a, ro->n_perms, sizeof(*p)) : NULL;
    if (ro->n_perms && !p)
        return MS_E_NOMEM;
    for (size_t i = 0; i < ro->n_perms; i++) {
        p[i].type = ro->perms[i].type;
        if (!copy_to(a, &p[i].key, ro->perms[i].key, ro->perms[i].key_len) ||
            !copy_to(a, &p[i].range_end, ro->perms[i].end, ro->perms[i].end_len))
            return MS_E_NOMEM;
    }
    out->perms = p;
    out->n_perms = ro->n_perms;
    return MS_OK;
}

/* etcd authApplierV3: who may send which request. */
static ms_err check_caller(struct auth_store *as, const struct auth_req *r)
{
    /* etcd's admin check reads the user, not the token's revision. */
    struct auth_caller who = {r->has_who, r->who, UINT64_MAX};
    switch (r->op) {
    case AUTH_OP_AUTHENTICATE:
        return MS_OK;
    case AUTH_OP_USER_GET: {
        ms_err e = auth_check_admin(as, &who);
        if (e && auth_bytes_cmp(r->name.p, r->name.len, r->who.p, r->who.len) == 0)
            return MS_OK;
        return e;
    }
    case AUTH_OP_ROLE_GET: {
        ms_err e = auth_check_admin(as, &who);
        if (e) {
            struct auth_user *u = r->has_who ? auth_user_find(as, r->who.p, r->who.len) : NULL;
            if (u && auth_user_has_role(u, r->name.p, r->name.len))
                return MS_OK;
        }
        return e;
    }
    default:
        return auth_check_admin(as, &who);
    }
}

bool auth_req_is_read(const struct auth_req *req)
{
    return req->op == AUTH_OP_USER_GET || req->op == AUTH_OP_USER_LIST ||
           req->op == AUTH_OP_ROLE_GET || req->op == AUTH_OP_ROLE_LIST;
}

ms_err auth_apply(struct auth_store *as, struct be_txn *t, const struct auth_req *req,
                  uint64_t index, uint64_t now_ms, struct arena *a, struct auth_resp *out)
{
    memset(out, 0, sizeof(*out));
    out->op = req->op;
    ms_err e = check_caller(as, req);
    if (e)
        return e;
    switch (req->op) {
    case AUTH_OP_ENABLE:
        return apply_enable(as, t);
    case AUTH_OP_DISABLE:
        return apply_disable(as, t);
    case AUTH_OP_AUTHENTICATE:
        return apply_authenticate(as, req, index, now_ms, a, out);
    case AUTH_OP_USER_ADD:
        return apply_user_add(as, t, req);
    case AUTH_OP_USER_GET:
        return answer_user_get(as, req, a, out);
    case AUTH_OP_USER_LIST:
        return answer_list((void *const *)as->users, as->n_users, true, a, out);
    case AUTH_OP_USER_DELETE:
        return apply_user_delete(as, t, req);
    case AUTH_OP_USER_CHANGEPW:
        return apply_user_changepw(as, t, req);
    case AUTH_OP_USER_GRANT:
        return apply_user_grant(as, t, req);
    case AUTH_OP_USER_REVOKE:
        return apply_user_revoke(as, t, req);
    case AUTH_OP_ROLE_ADD:
        return apply_role_add(as, t, req);
    case AUTH_OP_ROLE_GET:
        return answer_role_get(as, req, a, out);
    case AUTH_OP_ROLE_LIST:
        return answer_list((void *const *)as->roles, as->n_roles, false, a, out);
    case AUTH_OP_ROLE_DELETE:
        return apply_role_delete(as, t, req);
    case AUTH_OP_ROLE_GRANT:
        return apply_role_grant(as, t, req);
    case AUTH_OP_ROLE_REVOKE:
        return apply_role_revoke(as, t, req);
    default:
        return MS_E_BAD_REQUEST;
    }
}

ms_err auth_password_hash(struct auth_store *as, struct auth_bytes user, const char **hash)
{
    if (!as->enabled)
        return MS_E_AUTH_NOT_ENABLED;
    struct auth_user *u = auth_user_find(as, user.p, user.len);
    if (!u)
        return MS_E_AUTH_FAILED;
    if (u->no_password)
        return MS_E_NO_PASSWORD_USER;
    *hash = u->hash;
    return MS_OK;
}

/* ---- the log form ---- */

void auth_req_encode(const struct auth_req *req, struct buf *b)
{
    buf_putc(b, (char)req->op);
    buf_putc(b, (char)(req->has_who | req->no_password << 1));
    buf_put_lbytes(b, req->who.p, req->who.len);
    buf_put_lbytes(b, req->name.p, req->name.len);
    buf_put_lbytes(b, req->role.p, req->role.len);
    buf_put_lbytes(b, req->password.p, req->password.len);
    buf_put_uvarint(b, (uint64_t)req->perm_type);
    buf_put_lbytes(b, req->key.p, req->key.len);
    buf_put_lbytes(b, req->range_end.p, req->range_end.len);
    buf_put_lbytes(b, req->token.p, req->token.len);
    buf_put_uvarint(b, req->checked_rev);
}

static void get_field(struct rd *r, struct auth_bytes *f)
{
    f->p = rd_lbytes(r, &f->len);
}

bool auth_req_decode(struct rd *r, struct auth_req *req)
{
    memset(req, 0, sizeof(*req));
    uint8_t op = rd_u8(r);
    uint8_t flags = rd_u8(r);
    if (op < AUTH_OP_ENABLE || op >= AUTH_OP_COUNT_)
        return false;
    req->op = (enum auth_op)op;
    req->has_who = flags & 1;
    req->no_password = flags & 2;
    get_field(r, &req->who);
    get_field(r, &req->name);
    get_field(r, &req->role);
    get_field(r, &req->password);
    req->perm_type = (int64_t)rd_uvarint(r);
    get_field(r, &req->key);
    get_field(r, &req->range_end);
    get_field(r, &req->token);
    req->checked_rev = rd_uvarint(r);
    return !r->err;
}
