/* lease.h - the lessor (etcd lease/lessor.go): leases, their TTLs and attached keys, and a
 * min-heap of expiries. No timers and no clock inside: the caller passes now_ms and arms one
 * timer at lease_mgr_next_expiry.
 *
 * Two kinds of calls:
 *  - apply path (deterministic, from log entries on every member): grant, revoke, attach,
 *    detach. They change the set of leases and keys.
 *  - primary path (the leader only): renew (keepalive), expired (what to propose revoking),
 *    promote/demote. They change expiry times only, which are local to the primary.
 * A member that is not primary never expires anything; on promotion every lease's expiry is
 * pushed to now + TTL + extend (etcd Promote), so no lease expires because the primary changed
 * or the server was down.
 */
#ifndef METASTORE_LEASE_H
#define METASTORE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/err.h"

#define LEASE_MAX_TTL 9000000000LL /* etcd MaxLeaseTTL */

struct lease_mgr;

struct lease_info {
    int64_t id;
    int64_t ttl;          /* granted TTL, seconds */
    int64_t remaining_ms; /* until expiry (primary; 0 once expired); ttl * 1000 otherwise */
    size_t n_keys;
};

/* min_ttl: the smallest TTL granted (etcd: ceil(1.5 × election timeout) seconds). NULL on OOM. */
struct lease_mgr *lease_mgr_create(int64_t min_ttl);
void lease_mgr_destroy(struct lease_mgr *m);

/* ---- apply path ---- */

/* Grant lease id (non-zero) for ttl seconds (raised to the minimum). MS_E_LEASE_EXISTS,
 * MS_E_LEASE_TTL_TOO_LARGE. *granted is the TTL actually granted. */
ms_err lease_mgr_grant(struct lease_mgr *m, int64_t id, int64_t ttl, uint64_t now_ms,
                       int64_t *granted);
/* Forget lease id and its attachments (delete the keys first). MS_E_LEASE_NOT_FOUND. */
ms_err lease_mgr_revoke(struct lease_mgr *m, int64_t id);
bool lease_mgr_exists(const struct lease_mgr *m, int64_t id);
/* Attach key to lease id (which must exist), or detach it. The key is copied. */
ms_err lease_mgr_attach(struct lease_mgr *m, int64_t id, const uint8_t *key, size_t klen);
void lease_mgr_detach(struct lease_mgr *m, int64_t id, const uint8_t *key, size_t klen);

/* Call fn for each key attached to id, in key order, until it returns false. The key bytes
 * are borrowed for the call. */
typedef bool (*lease_key_fn)(void *ctx, const uint8_t *key, size_t klen);
void lease_mgr_keys(const struct lease_mgr *m, int64_t id, lease_key_fn fn, void *ctx);

/* ---- queries ---- */

bool lease_mgr_get(const struct lease_mgr *m, int64_t id, uint64_t now_ms, struct lease_info *out);
size_t lease_mgr_count(const struct lease_mgr *m);
/* Up to max lease IDs in ascending order starting after `after` (0: from the start). */
size_t lease_mgr_list(const struct lease_mgr *m, int64_t after, int64_t *ids, size_t max);

/* ---- primary path ---- */

void lease_mgr_promote(struct lease_mgr *m, uint64_t now_ms, uint64_t extend_ms);
void lease_mgr_demote(struct lease_mgr *m);
bool lease_mgr_is_primary(const struct lease_mgr *m);
/* Keepalive: expiry = now + TTL; *ttl = the granted TTL. MS_E_LEASE_NOT_FOUND if unknown or
 * already expired (its revoke is on its way); MS_E_NOT_LEADER if not primary. */
ms_err lease_mgr_renew(struct lease_mgr *m, int64_t id, uint64_t now_ms, int64_t *ttl);
/* Up to max leases whose expiry has passed. Each is handed out once, then again only if it is
 * still there retry_ms later (its revoke got lost). */
size_t lease_mgr_expired(struct lease_mgr *m, uint64_t now_ms, uint64_t retry_ms, int64_t *ids,
                         size_t max);
/* The earliest expiry (ms), or UINT64_MAX if none or not primary. */
uint64_t lease_mgr_next_expiry(const struct lease_mgr *m);

#endif
