/* grpc_lock.c - etcd's Lock (v3lockpb) and Election (v3electionpb) services over gRPC.
 *
 * Only the protobuf: a call's message becomes a struct srv_lock_req and the server runs it as
 * it runs the gateway's (srv_lock_submit, srv_election_observe: the session, the txns, the
 * waits, the checks, the errors); the result becomes etcd's response. The call holds the
 * request's id, so a RST_STREAM, a deadline or the connection's end cancels it (a waiting lock
 * or campaign gives its place up). Every error is code Unknown with etcd's text, as etcd's
 * services hand on what their own client returned.
 *
 * Observe is a server stream: one LeaderResponse per leader change or proclamation. Memory is
 * bounded for a reader that stops reading: while more than OBSERVE_HOLD bytes of the call wait
 * for HTTP/2, only the newest response is kept aside (replacing an older one not yet queued)
 * and queued from on_drain once the rest is taken. A slow observer thus skips values it has
 * not read, never sees an older value after a newer one, and always ends at the latest.
 */
#include "grpc_int.h"

#include <stdlib.h>
#include <string.h>

#define OBSERVE_HOLD (64u << 10) /* unsent bytes past which an observer's responses coalesce */

static const char *const MSG_NAME[] = {
    [SRV_LOCK_LOCK] = "LockRequest",          [SRV_LOCK_UNLOCK] = "UnlockRequest",
    [SRV_ELECT_CAMPAIGN] = "CampaignRequest", [SRV_ELECT_PROCLAIM] = "ProclaimRequest",
    [SRV_ELECT_LEADER] = "LeaderRequest",     [SRV_ELECT_RESIGN] = "ResignRequest",
};

static void bytes_of(const ProtobufCBinaryData *b, const uint8_t **p, size_t *n)
{
    *p = b->data;
    *n = b->len;
}

static void leader_of(const V3electionpb__LeaderKey *m, struct srv_lock_req *out)
{
    out->has_leader = m != NULL;
    if (!m)
        return;
    bytes_of(&m->name, &out->leader.name, &out->leader.name_len);
    bytes_of(&m->key, &out->leader.key, &out->leader.key_len);
    out->leader.rev = m->rev;
    out->leader.lease = m->lease;
}

ms_err grpc_lock_decode(enum srv_lock_op op, const uint8_t *p, size_t len, struct arena *a,
                        struct srv_lock_req *out)
{
    ProtobufCAllocator al;
    grpc_allocator(a, &al);
    memset(out, 0, sizeof(*out));
    out->op = op;
    switch (op) {
    case SRV_LOCK_LOCK: {
        V3lockpb__LockRequest *m = v3lockpb__lock_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        bytes_of(&m->name, &out->name, &out->name_len);
        out->lease = m->lease;
        return MS_OK;
    }
    case SRV_LOCK_UNLOCK: {
        V3lockpb__UnlockRequest *m = v3lockpb__unlock_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        bytes_of(&m->key, &out->key, &out->key_len);
        return MS_OK;
    }
    case SRV_ELECT_CAMPAIGN: {
        V3electionpb__CampaignRequest *m = v3electionpb__campaign_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        bytes_of(&m->name, &out->name, &out->name_len);
        bytes_of(&m->value, &out->value, &out->value_len);
        out->lease = m->lease;
        return MS_OK;
    }
    case SRV_ELECT_PROCLAIM: {
        V3electionpb__ProclaimRequest *m = v3electionpb__proclaim_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        leader_of(m->leader, out);
        bytes_of(&m->value, &out->value, &out->value_len);
        return MS_OK;
    }
    case SRV_ELECT_LEADER: {
        V3electionpb__LeaderRequest *m = v3electionpb__leader_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        bytes_of(&m->name, &out->name, &out->name_len);
        return MS_OK;
    }
    case SRV_ELECT_RESIGN: {
        V3electionpb__ResignRequest *m = v3electionpb__resign_request__unpack(&al, len, p);
        if (!m)
            return MS_E_BAD_REQUEST;
        leader_of(m->leader, out);
        return MS_OK;
    }
    }
    return MS_E_BAD_REQUEST;
}

static void fail(struct grpc_call *call, ms_err e)
{
    grpc_call_finish(call, MS_GRPC_UNKNOWN, ms_err_msg(e));
}

static void on_done(void *ctx, ms_err err, const struct srv_lock_result *res)
{
    struct grpc_call *call = ctx;
    call->srv_id = 0;
    if (err) {
        fail(call, err);
        return;
    }
    Etcdserverpb__ResponseHeader *h = grpc_header(call, res->revision, true);
    if (!h) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    const struct srv_leader_key *l = &res->leader;
    switch (res->op) {
    case SRV_LOCK_LOCK: {
        V3lockpb__LockResponse m = V3LOCKPB__LOCK_RESPONSE__INIT;
        m.header = h;
        m.key = (ProtobufCBinaryData){l->key_len, (uint8_t *)l->key};
        grpc_call_reply(call, &m.base);
        return;
    }
    case SRV_LOCK_UNLOCK: {
        V3lockpb__UnlockResponse m = V3LOCKPB__UNLOCK_RESPONSE__INIT;
        m.header = h;
        grpc_call_reply(call, &m.base);
        return;
    }
    case SRV_ELECT_CAMPAIGN: {
        V3electionpb__LeaderKey k = V3ELECTIONPB__LEADER_KEY__INIT;
        k.name = (ProtobufCBinaryData){l->name_len, (uint8_t *)l->name};
        k.key = (ProtobufCBinaryData){l->key_len, (uint8_t *)l->key};
        k.rev = l->rev;
        k.lease = l->lease;
        V3electionpb__CampaignResponse m = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
        m.header = h;
        m.leader = &k;
        grpc_call_reply(call, &m.base);
        return;
    }
    case SRV_ELECT_PROCLAIM: {
        V3electionpb__ProclaimResponse m = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
        m.header = h;
        grpc_call_reply(call, &m.base);
        return;
    }
    case SRV_ELECT_LEADER: {
        Mvccpb__KeyValue kv;
        grpc_kv_from(&kv, res->kv);
        V3electionpb__LeaderResponse m = V3ELECTIONPB__LEADER_RESPONSE__INIT;
        m.header = h;
        m.kv = &kv;
        grpc_call_reply(call, &m.base);
        return;
    }
    case SRV_ELECT_RESIGN: {
        V3electionpb__ResignResponse m = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
        m.header = h;
        grpc_call_reply(call, &m.base);
        return;
    }
    }
}

/* Decode the call's message as op's request; false (the call failed) if it does not unpack. */
static bool decode(struct grpc_call *call, enum srv_lock_op op, const uint8_t *p, size_t len,
                   struct srv_lock_req *req)
{
    if (grpc_lock_decode(op, p, len, call->a, req) == MS_OK)
        return true;
    grpc_call_bad_message(call, MSG_NAME[op]);
    return false;
}

static void lock_call(struct grpc_call *call, enum srv_lock_op op, const uint8_t *p, size_t len)
{
    struct srv_lock_req req;
    if (!decode(call, op, p, len, &req))
        return;
    ms_err e = grpc_call_caller(call, &req.caller);
    if (!e)
        e = srv_lock_submit(grpc_call_srv(call), &req, on_done, call, &call->srv_id);
    if (e) {
        call->srv_id = 0;
        fail(call, e);
    }
}

void grpc_lock_lock(struct grpc_call *call, const uint8_t *p, size_t len)
{
    lock_call(call, SRV_LOCK_LOCK, p, len);
}

void grpc_lock_unlock(struct grpc_call *call, const uint8_t *p, size_t len)
{
    lock_call(call, SRV_LOCK_UNLOCK, p, len);
}

void grpc_election_campaign(struct grpc_call *call, const uint8_t *p, size_t len)
{
    lock_call(call, SRV_ELECT_CAMPAIGN, p, len);
}

void grpc_election_proclaim(struct grpc_call *call, const uint8_t *p, size_t len)
{
    lock_call(call, SRV_ELECT_PROCLAIM, p, len);
}

void grpc_election_leader(struct grpc_call *call, const uint8_t *p, size_t len)
{
    lock_call(call, SRV_ELECT_LEADER, p, len);
}

void grpc_election_resign(struct grpc_call *call, const uint8_t *p, size_t len)
{
    lock_call(call, SRV_ELECT_RESIGN, p, len);
}

/* ---- Observe ---- */

/* The newest response not queued yet (call->svc; NULL while none waits). */
struct observe_kept {
    size_t len;
    uint8_t msg[];
};

static void on_observed(void *ctx, int64_t revision, const struct kv_kv *kv)
{
    struct grpc_call *call = ctx;
    if (call->state != GRPC_CALL_OPEN)
        return;
    Etcdserverpb__ResponseHeader h;
    grpc_header_fill(grpc_call_srv(call), &h, revision);
    Mvccpb__KeyValue k;
    grpc_kv_from(&k, kv);
    V3electionpb__LeaderResponse m = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    m.header = &h;
    m.kv = &k;
    if (!call->svc && grpc_call_pending(call) < OBSERVE_HOLD) {
        grpc_call_send(call, &m.base);
        return;
    }
    /* The reader is behind: this response replaces the one kept aside. */
    size_t n = v3electionpb__leader_response__get_packed_size(&m);
    struct observe_kept *kept = malloc(sizeof(*kept) + n);
    if (!kept) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    kept->len = v3electionpb__leader_response__pack(&m, kept->msg);
    free(call->svc);
    call->svc = kept;
}

void grpc_election_observe_drain(struct grpc_call *call)
{
    struct observe_kept *kept = call->svc;
    if (!kept)
        return;
    call->svc = NULL;
    struct grpc_part part = {kept->msg, kept->len};
    grpc_call_queue_parts(call, &part, 1);
    free(kept);
}

void grpc_election_observe_free(struct grpc_call *call)
{
    free(call->svc);
    call->svc = NULL;
}

void grpc_election_observe(struct grpc_call *call, const uint8_t *p, size_t len)
{
    struct srv_lock_req req;
    if (!decode(call, SRV_ELECT_LEADER, p, len, &req))
        return;
    ms_err e = grpc_call_caller(call, &req.caller);
    if (!e)
        e = srv_election_observe(grpc_call_srv(call), req.name, req.name_len, &req.caller,
                                 on_observed, call, &call->srv_id);
    if (e) {
        call->srv_id = 0;
        fail(call, e);
    }
}
