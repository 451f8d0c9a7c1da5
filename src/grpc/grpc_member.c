/* grpc_member.c - etcd's Cluster service: MemberList, MemberAdd, MemberRemove, MemberUpdate and
 * MemberPromote, answered as the gateway's gw_member.c answers them.
 *
 * The list is answered at once from this member's view (etcd 3.4 has no linearizable list). A
 * change is answered once this member has applied it, with the member list it left: the new
 * member (without a name or client URLs until it starts) and the members for an add, the
 * members alone for the others; the header has no revision, as etcd's cluster service's. With
 * auth on, only root may change the membership (etcd's checkMembershipOperationPermission,
 * whose errors reach the client converted, as togRPCError does).
 */
#include "grpc_int.h"

static char **urls(struct arena *a, const struct cfg_url *u, size_t n)
{
    char **out = arena_calloc(a, n ? n : 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++)
        out[i] = (char *)u[i].text;
    return out;
}

/* m over member s (its strings borrowed from the server); false on OOM. */
static bool member_from(struct arena *a, Etcdserverpb__Member *m, const struct srv_member *s)
{
    etcdserverpb__member__init(m);
    m->id = s->id;
    m->name = (char *)(s->name ? s->name : "");
    m->peerurls = urls(a, s->peer_urls, s->n_peer_urls);
    m->n_peerurls = s->n_peer_urls;
    m->clienturls = urls(a, s->client_urls, s->n_client_urls);
    m->n_clienturls = s->n_client_urls;
    m->islearner = s->is_learner;
    return m->peerurls && m->clienturls;
}

/* Answer with this member's list of members and, when added is one of them, a
 * MemberAddResponse naming it as it was added. Otherwise a MemberListResponse: the Remove,
 * Update and Promote responses have the same fields under the same numbers (header 1, members
 * 2), so its bytes are theirs too. */
static void reply_members(struct grpc_call *call, uint64_t added)
{
    struct srv_member ms[SRV_MAX_MEMBERS];
    size_t n = srv_members(grpc_call_srv(call), ms);
    Etcdserverpb__ResponseHeader *h = grpc_header(call, 0, true);
    Etcdserverpb__Member **list = arena_calloc(call->a, n ? n : 1, sizeof(*list));
    Etcdserverpb__Member *m = arena_calloc(call->a, n + 1, sizeof(*m)); /* [n]: the added */
    Etcdserverpb__Member *one = NULL;
    if (!h || !list || !m)
        goto out_nomem;
    h->revision = 0; /* etcd's cluster header has no revision */
    for (size_t i = 0; i < n; i++) {
        if (!member_from(call->a, &m[i], &ms[i]))
            goto out_nomem;
        list[i] = &m[i];
        if (added && ms[i].id == added) {
            one = &m[n];
            *one = m[i];
            one->name = ""; /* etcd's answer: the member as it was added */
            one->n_clienturls = 0;
        }
    }
    if (added) {
        Etcdserverpb__MemberAddResponse r = ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
        r.header = h;
        r.member = one;
        r.members = list;
        r.n_members = n;
        grpc_call_reply(call, &r.base);
        return;
    }
    Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    r.header = h;
    r.members = list;
    r.n_members = n;
    grpc_call_reply(call, &r.base);
    return;
out_nomem:
    grpc_call_fail(call, MS_E_NOMEM, NULL);
}

void grpc_cluster_member_list(struct grpc_call *call, const uint8_t *p, size_t len)
{
    if (grpc_call_unpack(call, &etcdserverpb__member_list_request__descriptor, p, len))
        reply_members(call, 0);
}

static void on_change_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    call->srv_id = 0;
    if (err)
        grpc_call_fail(call, err, NULL);
    else
        reply_members(call, res->type == SRV_REQ_MEMBER_ADD ? res->u.member_id : 0);
}

/* Unpack the request (type d), check the caller may change the membership: NULL once failed. */
static void *begin(struct grpc_call *call, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                   size_t len)
{
    ProtobufCMessage *m = grpc_call_unpack(call, d, p, len);
    if (!m)
        return NULL;
    ms_err e = grpc_call_auth(call, true);
    if (e) {
        grpc_call_fail(call, e, NULL);
        return NULL;
    }
    return m;
}

/* The server's answer to a change submitted: on a refusal, fail the call at once. */
static void submitted(struct grpc_call *call, ms_err e)
{
    if (e) {
        call->srv_id = 0;
        grpc_call_fail(call, e, NULL);
    }
}

void grpc_cluster_member_add(struct grpc_call *call, const uint8_t *p, size_t len)
{
    Etcdserverpb__MemberAddRequest *m =
        begin(call, &etcdserverpb__member_add_request__descriptor, p, len);
    if (m)
        submitted(call,
                  srv_member_add(grpc_call_srv(call), (const char *const *)m->peerurls,
                                 m->n_peerurls, m->islearner, on_change_done, call, &call->srv_id));
}

void grpc_cluster_member_remove(struct grpc_call *call, const uint8_t *p, size_t len)
{
    Etcdserverpb__MemberRemoveRequest *m =
        begin(call, &etcdserverpb__member_remove_request__descriptor, p, len);
    if (m)
        submitted(call, srv_member_remove(grpc_call_srv(call), m->id, on_change_done, call,
                                          &call->srv_id));
}

void grpc_cluster_member_update(struct grpc_call *call, const uint8_t *p, size_t len)
{
    Etcdserverpb__MemberUpdateRequest *m =
        begin(call, &etcdserverpb__member_update_request__descriptor, p, len);
    if (m)
        submitted(call,
                  srv_member_update(grpc_call_srv(call), m->id, (const char *const *)m->peerurls,
                                    m->n_peerurls, on_change_done, call, &call->srv_id));
}

void grpc_cluster_member_promote(struct grpc_call *call, const uint8_t *p, size_t len)
{
    Etcdserverpb__MemberPromoteRequest *m =
        begin(call, &etcdserverpb__member_promote_request__descriptor, p, len);
    if (m)
        submitted(call, srv_member_promote(grpc_call_srv(call), m->id, on_change_done, call,
                                           &call->srv_id));
}
