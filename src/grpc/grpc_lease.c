/* grpc_lease.c - etcd's Lease service: every call is the server request the gateway makes.
 * LeaseGrant and LeaseRevoke go through the log; LeaseKeepAlive (a bidirectional stream: one
 * response per request, in order) and LeaseTimeToLive are the leader's, asked over the peer
 * transport from a follower (SRV_REQ_LEASE_KEEPALIVE, SRV_REQ_LEASE_TTL); LeaseLeases is this
 * member's. An unknown lease gets TTL 0 in a keepalive and TTL -1 in a time-to-live, as from
 * etcd's v3rpc lease server.
 *
 * A keepalive stream has one request with the server at a time; later ones wait in the call's
 * queue, which the connection bounds by withholding the stream's window (grpc_call_set_backlog).
 */
#include "grpc_int.h"

#include <stdlib.h>
#include <string.h>

#define KA_MSG_BYTES 16 /* what a queued keepalive counts for against the stream's window */

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

/* A keepalive stream's requests waiting for the one with the server. */
struct keepalive {
    int64_t *ids; /* ring of cap */
    size_t head;
    size_t n;
    size_t cap;
};

static void keepalive_done(void *ctx, ms_err err, const struct srv_result *res);

static void keepalive_submit(struct grpc_call *call, int64_t id)
{
    call->sreq = (struct srv_req){.type = SRV_REQ_LEASE_KEEPALIVE, .u.lease = {.id = id}};
    grpc_call_submit(call, keepalive_done);
}

/* The next queued request to the server; the stream's end once every one was answered. */
static void keepalive_next(struct grpc_call *call)
{
    struct keepalive *k = call->svc;
    if (call->state != GRPC_CALL_OPEN || call->srv_id)
        return;
    if (k && k->n) {
        int64_t id = k->ids[k->head];
        k->head = (k->head + 1) % k->cap;
        k->n--;
        grpc_call_set_backlog(call, k->n * KA_MSG_BYTES);
        keepalive_submit(call, id);
        return;
    }
    if (call->half_closed)
        grpc_call_finish(call, MS_GRPC_OK, NULL); /* etcd: the client's EOF ends the stream */
}

static void keepalive_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    call->srv_id = 0;
    if (err) {
        grpc_call_fail(call, err, NULL);
        return;
    }
    Etcdserverpb__ResponseHeader h;
    grpc_header_fill(grpc_call_srv(call), &h, res->revision);
    Etcdserverpb__LeaseKeepAliveResponse r = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    r.header = &h;
    r.id = res->u.lease.id;
    r.ttl = res->u.lease.ttl;
    if (grpc_call_send(call, &r.base))
        keepalive_next(call);
}

static bool keepalive_push(struct grpc_call *call, int64_t id)
{
    struct keepalive *k = call->svc;
    if (!k) {
        k = calloc(1, sizeof(*k));
        if (!k)
            return false;
        call->svc = k;
    }
    if (k->n == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 16;
        int64_t *ids = malloc(nc * sizeof(*ids));
        if (!ids)
            return false;
        for (size_t i = 0; i < k->n; i++)
            ids[i] = k->ids[(k->head + i) % k->cap];
        free(k->ids);
        k->ids = ids;
        k->cap = nc;
        k->head = 0;
    }
    k->ids[(k->head + k->n) % k->cap] = id;
    k->n++;
    grpc_call_set_backlog(call, k->n * KA_MSG_BYTES);
    return true;
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
    if (!call->srv_id) {
        keepalive_submit(call, m->id);
        return;
    }
    if (!keepalive_push(call, m->id))
        grpc_call_fail(call, MS_E_NOMEM, NULL);
}

void grpc_lease_keepalive_end(struct grpc_call *call)
{
    keepalive_next(call);
}

void grpc_lease_keepalive_free(struct grpc_call *call)
{
    struct keepalive *k = call->svc;
    if (k)
        free(k->ids);
    free(k);
    call->svc = NULL;
}

static void ttl_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    Etcdserverpb__ResponseHeader *h = grpc_done_header(call, err, res);
    if (!h)
        return;
    const bool *want_keys = call->svc;
    const uint8_t **keys = NULL;
    size_t *lens = NULL, n = 0;
    /* The leader's TTLs; the attached keys are known to every member. */
    if (*want_keys && res->u.lease.ttl >= 0 &&
        srv_lease_keys(grpc_call_srv(call), res->u.lease.id, call->a, &keys, &lens, &n) != MS_OK) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    Etcdserverpb__LeaseTimeToLiveResponse r = ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
    r.header = h;
    r.id = res->u.lease.id;
    r.ttl = res->u.lease.ttl;
    r.grantedttl = res->u.lease.granted;
    r.n_keys = n;
    r.keys = arena_calloc(call->a, n ? n : 1, sizeof(*r.keys));
    if (!r.keys) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        r.keys[i].data = (uint8_t *)keys[i];
        r.keys[i].len = lens[i];
    }
    grpc_call_reply(call, &r.base);
}

void grpc_lease_timetolive(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__LeaseTimeToLiveRequest *m =
        etcdserverpb__lease_time_to_live_request__unpack(&al, len, p);
    bool *want_keys = arena_alloc(call->a, sizeof(*want_keys));
    if (!m) {
        grpc_call_bad_message(call, "LeaseTimeToLiveRequest");
        return;
    }
    if (!want_keys) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    *want_keys = m->keys;
    call->svc = want_keys; /* in the arena: nothing for on_free */
    call->sreq = (struct srv_req){.type = SRV_REQ_LEASE_TTL, .u.lease = {.id = m->id}};
    grpc_call_submit(call, ttl_done);
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
