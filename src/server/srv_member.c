/* srv_member.c - etcd's Cluster service: member add, remove, update and promote.
 *
 * A change is checked here as etcd's strict reconfiguration check does (etcd 3.4 server.go
 * mayAddMember, mayRemoveMember, mayPromoteMember; --strict-reconfig-check, on by default), then
 * proposed as a Raft conf change whose context names the member and the caller (cluster.h
 * struct cluster_cc). Every member checks it again when it applies it (srv_apply.c: a duplicate
 * peer URL, an unknown or removed member, too many learners) and the change takes effect then,
 * in the core, the members bucket and the transport (srv_node.c); the caller is answered when
 * this member has applied it. A promote is checked and proposed by the leader only (it alone
 * knows how far the learner is). A removal of the leader moves leadership first.
 */
#include "srv_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <stdio.h>
#include <string.h>

/* etcd's HealthInterval: a member must have been connected this long to count as healthy. */
#define HEALTH_INTERVAL_MS 5000

static ms_err parse_urls(const char *const *texts, size_t n, struct cluster_member *m)
{
    char msg[256];
    if (n == 0 || n > CLUSTER_MAX_URLS)
        return MS_E_MEMBER_BAD_URLS;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *host = texts[i] ? strstr(texts[i], "://") : NULL;
        /* etcd's types.NewURLs: no path, not even "/". */
        if (!host || strchr(host + 3, '/') || strchr(texts[i], ',') ||
            strlen(texts[i]) >= sizeof(m->peer_urls[i].text) ||
            !cfg_parse_urls(texts[i], &m->peer_urls[i], 1, &k, msg, sizeof(msg)) || k != 1)
            return MS_E_MEMBER_BAD_URLS;
    }
    m->n_peer_urls = n;
    return MS_OK;
}

static bool is_voter(const struct cluster_member *m)
{
    return !m->is_learner;
}

/* Voters connected to this member since since_ms at least (this member included). */
static size_t connected_since(const struct srv *s, uint64_t since_ms, size_t *voters)
{
    size_t k = 0;
    *voters = 0;
    for (size_t i = 0; i < s->n_members; i++) {
        if (!is_voter(&s->members[i]))
            continue;
        (*voters)++;
        uint64_t t = srv_node_active_since(s, s->members[i].id);
        k += t != 0 && t <= since_ms;
    }
    return k;
}

static uint64_t health_since(void)
{
    uint64_t now = clock_now_ms();
    return now > HEALTH_INTERVAL_MS ? now - HEALTH_INTERVAL_MS : 0;
}

/* Register the caller and propose the change of kind for member m. */
static ms_err propose(struct srv *s, enum raft_cc_type type, struct cluster_cc *mc, uint64_t away,
                      srv_done_fn done, void *ctx, uint64_t *id)
{
    uint64_t rid;
    ms_err e = srv_waiter_add(s, done, ctx, &rid);
    if (e)
        return e;
    mc->request_id = rid;
    struct buf b;
    buf_init(&b);
    cluster_cc_encode(mc, &b);
    e = MS_E_NOMEM;
    if (!buf_failed(&b)) {
        struct raft_conf_change cc = {
            .type = type, .node_id = mc->member.id, .ctx_len = b.len, .ctx = b.p};
        e = srv_node_propose_conf(s, rid, &cc, away);
    }
    buf_fini(&b);
    return srv_waiter_keep(s, rid, e, id);
}

ms_err srv_member_add(struct srv *s, const char *const *peer_urls, size_t n, bool learner,
                      srv_done_fn done, void *ctx, uint64_t *id)
{
    struct cluster_cc mc = {.kind = CLUSTER_CC_ADD};
    if (srv_node_is_learner(s))
        return MS_E_LEARNER_RPC;
    ms_err e = parse_urls(peer_urls, n, &mc.member);
    if (e)
        return e;
    if (s->cfg.strict_reconfig_check) {
        size_t voters;
        if (!learner && !srv_member_quorum_started(s, CLUSTER_CC_ADD, 0))
            return MS_E_NOT_ENOUGH_STARTED;
        if (connected_since(s, health_since(), &voters) < voters)
            return MS_E_UNHEALTHY; /* etcd isConnectedFullySince */
    }
    if ((e = srv_node_peers_up(s)) != MS_OK)
        return e;
    mc.member.id = cluster_new_member_id(mc.member.peer_urls, n, (int64_t)(clock_wall_ms() / 1000));
    mc.member.is_learner = learner;
    return propose(s, learner ? RAFT_CC_ADD_LEARNER : RAFT_CC_ADD_NODE, &mc, 0, done, ctx, id);
}

ms_err srv_member_remove(struct srv *s, uint64_t member, srv_done_fn done, void *ctx, uint64_t *id)
{
    if (srv_node_is_learner(s))
        return MS_E_LEARNER_RPC;
    if (member == 0)
        return MS_E_MEMBER_NOT_FOUND;
    const struct cluster_member *m = srv_member_get(s, member);
    if (s->cfg.strict_reconfig_check && !(m && m->is_learner)) {
        size_t voters;
        if (!srv_member_quorum_started(s, CLUSTER_CC_REMOVE, member))
            return MS_E_NOT_ENOUGH_STARTED;
        /* A member that is down is not part of the active quorum: safe to remove. */
        if (member == s->member_id || srv_node_active_since(s, member) != 0) {
            size_t active = connected_since(s, health_since(), &voters);
            if (active < 1 || active - 1 < (voters - 1) / 2 + 1)
                return MS_E_UNHEALTHY;
        }
    }
    struct cluster_cc mc = {.kind = CLUSTER_CC_REMOVE, .member.id = member};
    uint64_t away = member == srv_node_leader(s) ? member : 0;
    return propose(s, RAFT_CC_REMOVE_NODE, &mc, away, done, ctx, id);
}

ms_err srv_member_update(struct srv *s, uint64_t member, const char *const *peer_urls, size_t n,
                         srv_done_fn done, void *ctx, uint64_t *id)
{
    struct cluster_cc mc = {.kind = CLUSTER_CC_UPDATE};
    if (srv_node_is_learner(s))
        return MS_E_LEARNER_RPC;
    /* etcd looks at an update's URLs only when it applies it: an unknown member is not found
     * whatever they are. */
    ms_err e = parse_urls(peer_urls, n, &mc.member);
    if (member == 0 || (e && !srv_member_get(s, member)))
        return MS_E_MEMBER_NOT_FOUND;
    if (e)
        return e;
    mc.member.id = member;
    return propose(s, RAFT_CC_UPDATE_NODE, &mc, 0, done, ctx, id);
}

ms_err srv_member_promote(struct srv *s, uint64_t member, srv_done_fn done, void *ctx, uint64_t *id)
{
    if (srv_node_is_learner(s))
        return MS_E_LEARNER_RPC;
    if (member == 0)
        return MS_E_MEMBER_NOT_FOUND;
    uint64_t rid;
    ms_err e = srv_waiter_add(s, done, ctx, &rid);
    return e ? e : srv_waiter_keep(s, rid, srv_node_promote(s, member, rid), id);
}

bool srv_is_learner(const struct srv *s)
{
    return srv_node_is_learner(s);
}
