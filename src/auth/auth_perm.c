/* auth_perm.c - permission checks (etcd isOpPermitted, range_perm_cache.go).
 *
 * A user's roles are merged into two interval lists, read (READ and READWRITE) and write
 * (WRITE and READWRITE), sorted by start. A permission with no range_end is the single key
 * [key, key "\0"); range_end "\0" means no upper bound. A single-key request is allowed if an
 * interval holds the key; a range request if the intervals cover it without a gap. The lists
 * are built on a user's first check after a change and kept until the next change.
 */
#include "auth_int.h"

#include <stdlib.h>
#include <string.h>

#define ROOT     "root"
#define ROOT_LEN 4

void auth_merged_free(struct auth_merged *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->read);
    free(m->write);
    free(m);
}

void auth_perm_invalidate(struct auth_store *as)
{
    for (size_t i = 0; i < as->n_users; i++) {
        auth_merged_free(as->users[i]->merged);
        as->users[i]->merged = NULL;
    }
}

/* Compare two upper bounds. */
static int hi_cmp(const struct auth_ivl *a, const struct auth_ivl *b)
{
    if (a->hi_inf || b->hi_inf)
        return a->hi_inf == b->hi_inf ? 0 : a->hi_inf ? 1 : -1;
    return auth_bytes_cmp(a->hi, a->hi_len, b->hi, b->hi_len);
}

static int ivl_cmp(const void *pa, const void *pb)
{
    const struct auth_ivl *a = pa, *b = pb;
    int c = auth_bytes_cmp(a->lo, a->lo_len, b->lo, b->lo_len);
    return c ? c : hi_cmp(a, b);
}

static struct auth_merged *merge(const struct auth_store *as, const struct auth_user *u)
{
    size_t total = 0;
    for (size_t i = 0; i < u->n_roles; i++) {
        const struct auth_role *ro = auth_role_find(as, u->roles[i].p, u->roles[i].len);
        if (ro)
            total += ro->n_perms;
    }
    struct auth_merged *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    if (total) {
        m->read = calloc(total, sizeof(*m->read));
        m->write = calloc(total, sizeof(*m->write));
        m->owned = calloc(total, sizeof(*m->owned));
        if (!m->read || !m->write || !m->owned)
            goto fail;
    }
    for (size_t i = 0; i < u->n_roles; i++) {
        const struct auth_role *ro = auth_role_find(as, u->roles[i].p, u->roles[i].len);
        for (size_t j = 0; ro && j < ro->n_perms; j++) {
            const struct auth_perm_rec *p = &ro->perms[j];
            struct auth_ivl iv = {.lo = p->key, .lo_len = p->key_len};
            if (p->end_len == 1 && p->end[0] == 0) {
                iv.hi_inf = true;
            } else if (p->end_len) {
                iv.hi = p->end;
                iv.hi_len = p->end_len;
            } else {
                uint8_t *hi = malloc(p->key_len + 1);
                if (!hi)
                    goto fail;
                memcpy(hi, p->key, p->key_len);
                hi[p->key_len] = 0;
                m->owned[m->n_owned++] = hi;
                iv.hi = hi;
                iv.hi_len = p->key_len + 1;
            }
            if (p->type == AUTH_PERM_READ || p->type == AUTH_PERM_READWRITE)
                m->read[m->n_read++] = iv;
            if (p->type == AUTH_PERM_WRITE || p->type == AUTH_PERM_READWRITE)
                m->write[m->n_write++] = iv;
        }
    }
    if (m->n_read)
        qsort(m->read, m->n_read, sizeof(*m->read), ivl_cmp);
    if (m->n_write)
        qsort(m->write, m->n_write, sizeof(*m->write), ivl_cmp);
    return m;
fail:
    auth_merged_free(m);
    return NULL;
}

/* Whether the sorted intervals hold key (single key) or cover [key, end) (end_inf: no end). */
static bool covered(const struct auth_ivl *v, size_t n, struct auth_bytes key,
                    struct auth_bytes end, bool single, bool end_inf)
{
    if (single) {
        for (size_t i = 0; i < n; i++) {
            if (auth_bytes_cmp(v[i].lo, v[i].lo_len, key.p, key.len) > 0)
                break;
            if (v[i].hi_inf || auth_bytes_cmp(key.p, key.len, v[i].hi, v[i].hi_len) < 0)
                return true;
        }
        return false;
    }
    /* Walk the intervals by start, extending the covered prefix [key, cur). */
    struct auth_ivl cur = {.hi = key.p, .hi_len = key.len};
    struct auth_ivl want = {.hi = end.p, .hi_len = end.len, .hi_inf = end_inf};
    if (hi_cmp(&cur, &want) >= 0)
        return true; /* an empty range */
    for (size_t i = 0; i < n; i++) {
        if (auth_bytes_cmp(v[i].lo, v[i].lo_len, cur.hi, cur.hi_len) > 0)
            return false; /* a gap at cur */
        if (hi_cmp(&v[i], &cur) > 0) {
            cur = v[i];
            if (hi_cmp(&cur, &want) >= 0)
                return true;
        }
    }
    return false;
}

static bool user_is_root(const struct auth_user *u)
{
    return auth_user_has_role(u, (const uint8_t *)ROOT, ROOT_LEN);
}

ms_err auth_check_range(struct auth_store *as, const struct auth_caller *c, struct auth_bytes key,
                        struct auth_bytes range_end, enum auth_perm perm)
{
    if (!as->enabled)
        return MS_OK;
    if (!c->has_user)
        return MS_E_USER_EMPTY;
    if (c->revision < as->revision)
        return MS_E_AUTH_OLD_REVISION;
    struct auth_user *u = auth_user_find(as, c->user.p, c->user.len);
    if (!u)
        return MS_E_PERMISSION_DENIED;
    if (user_is_root(u))
        return MS_OK;
    if (!u->merged && !(u->merged = merge(as, u)))
        return MS_E_NOMEM;
    const struct auth_merged *m = u->merged;
    bool single = range_end.len == 0;
    bool inf = range_end.len == 1 && range_end.p[0] == 0;
    bool ok = perm == AUTH_PERM_WRITE ? covered(m->write, m->n_write, key, range_end, single, inf)
                                      : covered(m->read, m->n_read, key, range_end, single, inf);
    return ok ? MS_OK : MS_E_PERMISSION_DENIED;
}

ms_err auth_check_admin(struct auth_store *as, const struct auth_caller *c)
{
    if (!as->enabled)
        return MS_OK;
    if (!c->has_user || c->user.len == 0)
        return MS_E_USER_EMPTY;
    struct auth_user *u = auth_user_find(as, c->user.p, c->user.len);
    if (!u)
        return MS_E_USER_NOT_FOUND;
    return user_is_root(u) ? MS_OK : MS_E_PERMISSION_DENIED;
}
