/* grpc_lease.c - etcd's Lease service: LeaseGrant and LeaseRevoke go through the log as the
 * server requests the gateway makes; LeaseKeepAlive (a bidirectional stream: one response per
 * request), LeaseTimeToLive and LeaseLeases are answered at once by this member, as etcd's
 * v3rpc lease server does (an unknown lease: TTL 0 in a keepalive, TTL -1 in a time-to-live).
 */
#include "grpc_int.h"

#include <string.h>

static void on_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    Etcdserverpb__ResponseHeader *h = grpc_done_header(call, err, res);
    if (!h)
        return;
    if (res->type == SRV_REQ_LEASE_GRANT) {
        Etcdserverpb__LeaseGrantResponse m = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
        m.header = h;
        m.id = res->u.lease.id;
        m.ttl = res->u.lease.ttl;
        grpc_call_reply(call, &m.base);
        return;
    }
    Etcdserverpb__LeaseRevokeResponse m = ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;
    m.header = h;
    grpc_call_reply(call, &m.base);
}

void grpc_lease_grant(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__LeaseGrantRequest *m = etcdserverpb__lease_grant_request__unpack(&al, len, p);
    if (!m) {
        grpc_call_bad_message(call, "LeaseGrantRequest");
        return;
    }
    call->sreq.type = SRV_REQ_LEASE_GRANT;
    call->sreq.u.lease.id = m->id;
    call->sreq.u.lease.ttl = m->ttl;
    grpc_call_submit(call, on_done);
}

void grpc_lease_revoke(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__LeaseRevokeRequest *m = etcdserverpb__lease_revoke_request__unpack(&al, len, p);
    if (!m) {
        grpc_call_bad_message(call, "LeaseRevokeRequest");
        return;
    }
    call->sreq.type = SRV_REQ_LEASE_REVOKE;
    call->sreq.u.lease.id = m->id;
    grpc_call_submit(call, on_done);
}

void grpc_lease_keepalive(struct grpc_call *call, const uint8_t *p, size_t len)
{
    /* Each request is decoded into a fresh arena: a stream may live for days. */
    arena_reset(call->a);
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__LeaseKeepAliveRequest *m =
        etcdserverpb__lease_keep_alive_request__unpack(&al, len, p);
    if (!m) {
        grpc_call_bad_message(call, "LeaseKeepAliveRequest");
        return;
    }
    int64_t ttl = 0;
    ms_err e = srv_lease_renew(grpc_call_srv(call), m->id, &ttl);
    if (e) {
        grpc_call_fail(call, e, NULL);
        return;
    }
    Etcdserverpb__LeaseKeepAliveResponse r = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    r.header = grpc_header(call, 0, true);
    r.id = m->id;
    r.ttl = ttl;
    if (!r.header)
        grpc_call_fail(call, MS_E_NOMEM, NULL);
    else
        grpc_call_send(call, &r.base);
}

void grpc_lease_keepalive_end(struct grpc_call *call)
{
    grpc_call_finish(call, MS_GRPC_OK, NULL);
}

void grpc_lease_timetolive(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__LeaseTimeToLiveRequest *m =
        etcdserverpb__lease_time_to_live_request__unpack(&al, len, p);
    if (!m) {
        grpc_call_bad_message(call, "LeaseTimeToLiveRequest");
        return;
    }
    struct srv_lease_ttl t;
    ms_err e = srv_lease_timetolive(grpc_call_srv(call), m->id, m->keys, call->a, &t);
    if (e) {
        grpc_call_fail(call, e, NULL);
        return;
    }
    Etcdserverpb__LeaseTimeToLiveResponse r = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    r.header = grpc_header(call, 0, true);
    r.id = t.id;
    r.ttl = t.ttl;
    r.grantedttl = t.granted;
    r.n_keys = t.n_keys;
    r.keys = arena_calloc(call->a, t.n_keys ? t.n_keys : 1, sizeof(*r.keys));
    if (!r.header || !r.keys) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < t.n_keys; i++) {
        r.keys[i].data = (uint8_t *)t.keys[i];
        r.keys[i].len = t.key_lens[i];
    }
    grpc_call_reply(call, &r.base);
}

void grpc_lease_leases(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    if (!etcdserverpb__lease_leases_request__unpack(&al, len, p)) {
        grpc_call_bad_message(call, "LeaseLeasesRequest");
        return;
    }
    int64_t *ids;
    size_t n;
    ms_err e = srv_lease_list(grpc_call_srv(call), call->a, &ids, &n);
    if (e) {
        grpc_call_fail(call, e, NULL);
        return;
    }
    Etcdserverpb__LeaseLeasesResponse r = ETCDSERVERPB__LEASE_LEASES_RESPONSE__INIT;
    r.header = grpc_header(call, 0, true);
    r.n_leases = n;
    r.leases = arena_calloc(call->a, n ? n : 1, sizeof(*r.leases));
    Etcdserverpb__LeaseStatus *st = arena_calloc(call->a, n ? n : 1, sizeof(*st));
    if (!r.header || !r.leases || !st) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        etcdserverpb__lease_status__init(&st[i]);
        st[i].id = ids[i];
        r.leases[i] = &st[i];
    }
    grpc_call_reply(call, &r.base);
}
