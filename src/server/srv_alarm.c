/* srv_alarm.c - alarms (etcd v3alarm) and the backend quota.
 *
 * Alarms live in bucket "alarm" (key: member id + type) and in a small array mirrored from it.
 * They change only by applying SRV_REQ_ALARM entries, so every member agrees. The quota check
 * runs before a write is proposed (etcd quotaKVServer): a write that would take the backend
 * past --quota-backend-bytes proposes NOSPACE and is refused; while NOSPACE is active,
 * applying a put, a txn that puts, or a lease grant fails with "database space exceeded"
 * (etcd applierV3Capped), and reads, deletes and compaction keep working.
 */
#include "srv_int.h"

#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

#define KV_OVERHEAD 256 /* etcd storage/quota.go kvOverhead */

static void alarm_key(uint64_t member, int64_t type, uint8_t out[9])
{
    be64_put(out, member);
    out[8] = (uint8_t)type;
}

ms_err srv_alarms_load(struct srv *s)
{
    struct be_cursor *c;
    struct be_val k, v;
    ms_err e = be_cursor_open(s->wtxn, BE_BUCKET_ALARM, &c);
    if (e)
        return e;
    s->alarm.n = 0;
    for (e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v)) {
        if (k.len != 9 || s->alarm.n == SRV_MAX_ALARMS)
            continue;
        s->alarm.v[s->alarm.n++] = (struct srv_alarm){be64_get(k.p), k.p[8]};
    }
    be_cursor_close(c);
    return e == MS_E_NOT_EXIST ? MS_OK : e;
}

void srv_alarms(struct srv *s, const struct srv_alarm **alarms, size_t *n)
{
    *alarms = s->alarm.v;
    *n = s->alarm.n;
}

bool srv_has_alarm(const struct srv *s, int64_t type)
{
    for (size_t i = 0; i < s->alarm.n; i++)
        if (s->alarm.v[i].alarm == type)
            return true;
    return false;
}

static size_t find(const struct srv *s, uint64_t member, int64_t type)
{
    for (size_t i = 0; i < s->alarm.n; i++)
        if (s->alarm.v[i].member_id == member && s->alarm.v[i].alarm == type)
            return i;
    return SIZE_MAX;
}

ms_err srv_apply_alarm(struct srv *s, const struct srv_alarm_req *r, struct srv_alarm_resp *out)
{
    uint8_t key[9];
    out->alarms = NULL;
    out->n = 0;
    switch (r->action) {
    case SRV_ALARM_GET:
        out->alarms = s->alarm.v;
        out->n = s->alarm.n;
        return MS_OK;
    case SRV_ALARM_ACTIVATE: {
        /* etcd 3.4 stores ACTIVATE NONE and then crashes on it (reference §17): ignore it. */
        if (r->alarm <= SRV_ALARM_NONE || r->alarm > SRV_ALARM_CORRUPT)
            return MS_OK;
        size_t i = find(s, r->member_id, r->alarm);
        if (i == SIZE_MAX) {
            if (s->alarm.n == SRV_MAX_ALARMS)
                return MS_E_TOO_MANY_REQUESTS;
            alarm_key(r->member_id, r->alarm, key);
            ms_err e = be_put(s->wtxn, BE_BUCKET_ALARM, key, 9, NULL, 0);
            if (e)
                return e;
            s->alarm.v[s->alarm.n++] = (struct srv_alarm){r->member_id, r->alarm};
            log_warn("alarm raised: %s on member %llx",
                     r->alarm == SRV_ALARM_NOSPACE ? "NOSPACE" : "CORRUPT",
                     (unsigned long long)r->member_id);
        }
        out->alarms = s->alarm.v;
        out->n = s->alarm.n;
        return MS_OK;
    }
    case SRV_ALARM_DEACTIVATE: {
        size_t i = find(s, r->member_id, r->alarm);
        if (i == SIZE_MAX)
            return MS_OK;
        alarm_key(r->member_id, r->alarm, key);
        ms_err e = be_del(s->wtxn, BE_BUCKET_ALARM, key, 9);
        if (e && e != MS_E_NOT_EXIST)
            return e;
        /* The answer lists the alarm that was cleared. */
        s->alarm.cleared = s->alarm.v[i];
        s->alarm.v[i] = s->alarm.v[--s->alarm.n];
        out->alarms = &s->alarm.cleared;
        out->n = 1;
        log_info("alarm cleared on member %llx", (unsigned long long)r->member_id);
        return MS_OK;
    }
    default:
        return MS_OK;
    }
}

/* etcd storage/quota.go: a put costs its key, its value and kvOverhead; a txn the costlier of
 * its branches, nested txns included. */
static size_t cost_op(void *ctx, const struct kv_op *op, bool success, size_t val)
{
    (void)ctx, (void)success;
    return op->type == KV_OP_PUT ? KV_OVERHEAD + op->u.put.key_len + op->u.put.value_len : val;
}

static size_t cost_txn(void *ctx, const struct kv_txn_req *t, size_t success, size_t failure)
{
    (void)ctx, (void)t;
    return success > failure ? success : failure;
}

static const struct kv_visit cost_visit = {.op_end = cost_op, .txn_end = cost_txn};

size_t srv_request_cost(const struct srv_req *req)
{
    switch (req->type) {
    case SRV_REQ_PUT:
        return KV_OVERHEAD + req->u.put.key_len + req->u.put.value_len;
    case SRV_REQ_TXN: {
        size_t cost = 0;
        kv_txn_walk(&req->u.txn, &cost_visit, NULL, &cost);
        return cost;
    }
    case SRV_REQ_LEASE_GRANT:
        return srv_lease_cost();
    default:
        return 0;
    }
}

bool srv_quota_ok(struct srv *s, const struct srv_req *req)
{
    size_t cost = srv_request_cost(req);
    if (cost == 0)
        return true;
    struct be_stats st;
    be_stats(s->be, &st);
    return st.size_bytes + cost < s->cfg.quota_backend_bytes;
}
