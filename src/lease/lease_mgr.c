/* lease_mgr.c - the lessor: leases by ID, attached keys, expiries.
 *
 * Owns every lease and attachment. Leases are kept in an ordered map keyed by the ID's 8 bytes;
 * attachments in one ordered map keyed by ID bytes + user key, so a lease's keys are one range
 * and detaching is O(log n) however many keys a lease holds. Must not call kv: revoking a
 * lease's keys is the caller's job (it walks lease_mgr_keys).
 */
#include "lease_int.h"

#include "metastore/buf.h"
#include "metastore/skiplist.h"

#include <stdlib.h>
#include <string.h>

struct lease_mgr {
    struct sl *leases; /* be64(id) -> struct lease * */
    struct sl *keys;   /* be64(id) + key -> NULL */
    struct lease_heap heap;
    int64_t min_ttl;
    bool primary;
};

static void id_key(int64_t id, uint8_t out[8])
{
    be64_put(out, (uint64_t)id);
}

static struct lease *find(const struct lease_mgr *m, int64_t id)
{
    uint8_t k[8];
    id_key(id, k);
    struct sl_node *n = sl_find(m->leases, k, 8);
    return n ? sl_node_val(n) : NULL;
}

struct lease_mgr *lease_mgr_create(int64_t min_ttl)
{
    struct lease_mgr *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->leases = sl_create(0x1ea5e);
    m->keys = sl_create(0x1ea5e2);
    m->min_ttl = min_ttl > 0 ? min_ttl : 1;
    m->primary = true;
    if (!m->leases || !m->keys) {
        lease_mgr_destroy(m);
        return NULL;
    }
    return m;
}

void lease_mgr_destroy(struct lease_mgr *m)
{
    if (!m)
        return;
    sl_destroy(m->leases, free);
    sl_destroy(m->keys, NULL);
    lease_heap_fini(&m->heap);
    free(m);
}

ms_err lease_mgr_grant(struct lease_mgr *m, int64_t id, int64_t ttl, uint64_t now_ms,
                       int64_t *granted)
{
    if (ttl > LEASE_MAX_TTL)
        return MS_E_LEASE_TTL_TOO_LARGE;
    if (find(m, id))
        return MS_E_LEASE_EXISTS;
    if (ttl < m->min_ttl)
        ttl = m->min_ttl;
    struct lease *l = calloc(1, sizeof(*l));
    if (!l)
        return MS_E_NOMEM;
    l->id = id;
    l->ttl = ttl;
    l->expiry_ms = m->primary ? now_ms + (uint64_t)ttl * 1000 : UINT64_MAX;
    uint8_t k[8];
    id_key(id, k);
    struct sl_node *n;
    bool existed;
    if (!sl_insert(m->leases, k, 8, l, &n, &existed)) {
        free(l);
        return MS_E_NOMEM;
    }
    if (!lease_heap_push(&m->heap, l)) {
        sl_remove(m->leases, k, 8, NULL);
        free(l);
        return MS_E_NOMEM;
    }
    *granted = ttl;
    return MS_OK;
}

bool lease_mgr_exists(const struct lease_mgr *m, int64_t id)
{
    return find(m, id) != NULL;
}

/* Remove every attachment of id. */
static void drop_keys(struct lease_mgr *m, int64_t id)
{
    uint8_t k[8];
    id_key(id, k);
    struct sl_node *n = sl_seek_ge(m->keys, k, 8);
    while (n) {
        size_t kl;
        const uint8_t *key = sl_node_key(n, &kl);
        if (kl < 8 || memcmp(key, k, 8) != 0)
            break;
        struct sl_node *next = sl_next(n);
        sl_remove(m->keys, key, kl, NULL);
        n = next;
    }
}

ms_err lease_mgr_revoke(struct lease_mgr *m, int64_t id)
{
    struct lease *l = find(m, id);
    if (!l)
        return MS_E_LEASE_NOT_FOUND;
    drop_keys(m, id);
    lease_heap_remove(&m->heap, l);
    uint8_t k[8];
    id_key(id, k);
    sl_remove(m->leases, k, 8, NULL);
    free(l);
    return MS_OK;
}

/* be64(id) + key into a stack buffer or the heap. */
static uint8_t *attach_key(int64_t id, const uint8_t *key, size_t klen, uint8_t *stackbuf,
                           size_t cap)
{
    uint8_t *b = klen + 8 <= cap ? stackbuf : malloc(klen + 8);
    if (!b)
        return NULL;
    id_key(id, b);
    if (klen)
        memcpy(b + 8, key, klen);
    return b;
}

ms_err lease_mgr_attach(struct lease_mgr *m, int64_t id, const uint8_t *key, size_t klen)
{
    struct lease *l = find(m, id);
    if (!l)
        return MS_E_LEASE_NOT_FOUND;
    uint8_t sb[256];
    uint8_t *b = attach_key(id, key, klen, sb, sizeof(sb));
    if (!b)
        return MS_E_NOMEM;
    struct sl_node *n;
    bool existed;
    bool ok = sl_insert(m->keys, b, klen + 8, NULL, &n, &existed);
    if (b != sb)
        free(b);
    if (!ok)
        return MS_E_NOMEM;
    if (!existed)
        l->n_keys++;
    return MS_OK;
}

void lease_mgr_detach(struct lease_mgr *m, int64_t id, const uint8_t *key, size_t klen)
{
    struct lease *l = find(m, id);
    if (!l)
        return;
    uint8_t sb[256];
    uint8_t *b = attach_key(id, key, klen, sb, sizeof(sb));
    if (!b)
        return;
    bool found;
    sl_remove(m->keys, b, klen + 8, &found);
    if (found)
        l->n_keys--;
    if (b != sb)
        free(b);
}

void lease_mgr_keys(const struct lease_mgr *m, int64_t id, lease_key_fn fn, void *ctx)
{
    uint8_t k[8];
    id_key(id, k);
    for (struct sl_node *n = sl_seek_ge(m->keys, k, 8); n; n = sl_next(n)) {
        size_t kl;
        const uint8_t *key = sl_node_key(n, &kl);
        if (kl < 8 || memcmp(key, k, 8) != 0)
            break;
        if (!fn(ctx, key + 8, kl - 8))
            break;
    }
}

bool lease_mgr_get(const struct lease_mgr *m, int64_t id, uint64_t now_ms, struct lease_info *out)
{
    const struct lease *l = find(m, id);
    if (!l)
        return false;
    out->id = id;
    out->ttl = l->ttl;
    out->n_keys = l->n_keys;
    if (l->handed_out)
        out->remaining_ms = 0; /* expired, its revoke on the way (expiry_ms is the retry) */
    else if (l->expiry_ms == UINT64_MAX)
        out->remaining_ms = l->ttl * 1000;
    else
        out->remaining_ms = l->expiry_ms > now_ms ? (int64_t)(l->expiry_ms - now_ms) : 0;
    return true;
}

size_t lease_mgr_count(const struct lease_mgr *m)
{
    return sl_count(m->leases);
}

size_t lease_mgr_list(const struct lease_mgr *m, int64_t after, int64_t *ids, size_t max)
{
    uint8_t k[8];
    id_key(after, k);
    struct sl_node *n = after ? sl_seek_ge(m->leases, k, 8) : sl_first(m->leases);
    size_t c = 0;
    if (after && n && ((struct lease *)sl_node_val(n))->id == after)
        n = sl_next(n);
    for (; n && c < max; n = sl_next(n))
        ids[c++] = ((struct lease *)sl_node_val(n))->id;
    return c;
}

void lease_mgr_promote(struct lease_mgr *m, uint64_t now_ms, uint64_t extend_ms)
{
    m->primary = true;
    for (struct sl_node *n = sl_first(m->leases); n; n = sl_next(n)) {
        struct lease *l = sl_node_val(n);
        l->expiry_ms = now_ms + extend_ms + (uint64_t)l->ttl * 1000;
        l->handed_out = false;
        lease_heap_fix(&m->heap, l);
    }
}

void lease_mgr_demote(struct lease_mgr *m)
{
    m->primary = false;
    for (struct sl_node *n = sl_first(m->leases); n; n = sl_next(n)) {
        struct lease *l = sl_node_val(n);
        l->expiry_ms = UINT64_MAX;
        lease_heap_fix(&m->heap, l);
    }
}

bool lease_mgr_is_primary(const struct lease_mgr *m)
{
    return m->primary;
}

ms_err lease_mgr_renew(struct lease_mgr *m, int64_t id, uint64_t now_ms, int64_t *ttl)
{
    if (!m->primary)
        return MS_E_NOT_LEADER;
    struct lease *l = find(m, id);
    if (!l || l->handed_out || l->expiry_ms <= now_ms)
        return MS_E_LEASE_NOT_FOUND;
    l->expiry_ms = now_ms + (uint64_t)l->ttl * 1000;
    lease_heap_fix(&m->heap, l);
    *ttl = l->ttl;
    return MS_OK;
}

size_t lease_mgr_expired(struct lease_mgr *m, uint64_t now_ms, uint64_t retry_ms, int64_t *ids,
                         size_t max)
{
    size_t n = 0;
    if (!m->primary)
        return 0;
    while (n < max) {
        struct lease *l = lease_heap_top(&m->heap);
        if (!l || l->expiry_ms > now_ms)
            break;
        ids[n++] = l->id;
        /* Hand it out; look again only if the revoke has not applied by then. */
        l->handed_out = true;
        l->expiry_ms = now_ms + retry_ms;
        lease_heap_fix(&m->heap, l);
    }
    return n;
}

uint64_t lease_mgr_next_expiry(const struct lease_mgr *m)
{
    const struct lease *l = lease_heap_top(&m->heap);
    return m->primary && l ? l->expiry_ms : UINT64_MAX;
}
