/* srv_apply.c - the state machine: committed entries applied to the store and the writers of
 * those entries answered; the physical compaction's slices.
 *
 * Entries arrive in index order from the Raft node (srv_node.c), durable and committed. Each is
 * applied inside the one write txn (a request that fails leaves nothing behind), and the batch's
 * last index and term, the consistent index, go into the same txn (srv_store.c): a restart
 * resumes after it. A conf change has taken effect in the core already; the configuration it
 * leaves is recorded in the same txn too.
 */
#include "srv_int.h"

#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/grow.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <stdlib.h>
#include <string.h>

#include "metastore/clock.h"

#define COMPACT_BUDGET 10000

static void on_compact(evutil_socket_t fd, short what, void *arg);

/* A member published its name and client URLs: every member records them (members bucket). */
static ms_err apply_member_attr(struct srv *s, const struct srv_member_attr_req *r)
{
    struct cluster_member *m = srv_member_get(s, r->id);
    if (!m)
        return MS_E_MEMBER_NOT_FOUND; /* removed meanwhile: nothing to record */
    char urls[CLUSTER_MAX_URLS * 320], msg[256];
    struct cluster_member next = *m;
    if (r->name_len >= sizeof(next.name) || r->client_urls_len >= sizeof(urls))
        return MS_E_BAD_REQUEST;
    memcpy(next.name, r->name, r->name_len);
    next.name[r->name_len] = 0;
    memcpy(urls, r->client_urls, r->client_urls_len);
    urls[r->client_urls_len] = 0;
    next.n_client_urls = 0;
    if (urls[0] && !cfg_parse_urls(urls, next.client_urls, CLUSTER_MAX_URLS, &next.n_client_urls,
                                   msg, sizeof(msg))) {
        log_warn("member %016llx published client URLs that do not parse: %s",
                 (unsigned long long)r->id, msg);
        return MS_E_MEMBER_BAD_URLS;
    }
    ms_err e = srv_member_put(s->wtxn, &next);
    srv_check_apply_error(e);
    if (!e)
        *m = next;
    if (!e && r->id == s->member_id)
        s->apply.self_published = true;
    return e;
}

static ms_err apply(struct srv *s, const struct srv_req *req, uint64_t index,
                    struct srv_result *res)
{
    ms_err e;
    memset(res, 0, sizeof(*res));
    res->type = req->type;
    if (req->type == SRV_REQ_MEMBER_ATTR) {
        res->revision = kv_current_rev(s->kv);
        return apply_member_attr(s, &req->u.member);
    }
    if (req->type == SRV_REQ_AUTH) {
        res->revision = kv_current_rev(s->kv);
        return srv_apply_auth(s, &req->u.auth, index, &res->u.auth);
    }
    if (req->type == SRV_REQ_ALARM) {
        res->revision = kv_current_rev(s->kv);
        return srv_apply_alarm(s, &req->u.alarm, &res->u.alarm);
    }
    /* A client's request again, against the auth store as of this entry (etcd
     * authApplierV3): every member decides alike, whatever its store was at submit. */
    if (req->checked && (e = srv_auth_check(s, &req->caller, req)) != MS_OK)
        return e;
    /* While NOSPACE is raised, writes that add data fail (etcd applierV3Capped). */
    if (srv_has_alarm(s, SRV_ALARM_NOSPACE) && srv_request_cost(req) > 0)
        return MS_E_NO_SPACE;
    if (req->type == SRV_REQ_LEASE_GRANT) {
        res->revision = kv_current_rev(s->kv);
        return srv_apply_lease_grant(s, &req->u.lease, &res->u.lease);
    }
    if (req->type == SRV_REQ_LEASE_REVOKE) {
        res->revision = kv_current_rev(s->kv);
        return srv_apply_lease_revoke(s, &req->u.lease, &res->revision);
    }
    if (req->type == SRV_REQ_COMPACT) {
        srv_events_flush(s); /* watchers get the events before their history goes */
        e = kv_compact(s->kv, s->wtxn, req->u.compact.revision);
        res->revision = kv_current_rev(s->kv);
        if (!e) {
            struct timeval now = {0, 0};
            evtimer_add(s->apply.compact_ev, &now);
        }
        return e;
    }
    struct kv_write *w;
    if ((e = kv_write_begin(s->kv, s->wtxn, s->scratch, &w)) != MS_OK)
        return e;
    switch (req->type) {
    case SRV_REQ_PUT:
        e = kv_write_put(w, &req->u.put, &res->u.put);
        break;
    case SRV_REQ_DELETE:
        e = kv_write_del(w, &req->u.del, &res->u.del);
        break;
    case SRV_REQ_TXN:
        e = kv_write_txn(w, &req->u.txn, &res->u.txn);
        break;
    default:
        e = MS_E_BAD_REQUEST;
        break;
    }
    if ((e = srv_write_finish(s, w, e)) == MS_OK)
        res->revision = kv_current_rev(s->kv);
    return e;
}

static void push_done(struct srv *s, uint64_t id, ms_err err, struct srv_result *res)
{
    struct srv_done *d =
        ms_grow(s->apply.dones, &s->apply.cap_dones, s->apply.n_dones + 1, sizeof(*d), 64);
    if (!d) {
        /* Cannot remember the completion: the caller gets an error now rather than never. */
        struct wait_entry we;
        if (wait_remove(&s->waits, id, &we) && we.done)
            we.done(we.ctx, MS_E_NOMEM, NULL);
        return;
    }
    s->apply.dones = d;
    s->apply.dones[s->apply.n_dones++] = (struct srv_done){.id = id, .err = err, .res = res};
}

static void count_request(struct srv *s, const struct srv_req *req, ms_err e)
{
    s->ctr.proposals_applied++;
    if (e)
        s->ctr.proposals_failed++;
    switch (req->type) {
    case SRV_REQ_PUT:
        s->ctr.puts++;
        break;
    case SRV_REQ_DELETE:
        s->ctr.deletes++;
        break;
    case SRV_REQ_TXN:
        s->ctr.txns++;
        break;
    default:
        break;
    }
}

/* A normal entry: decode the request, apply it, and remember the answer for its writer. */
static void apply_request(struct srv *s, const struct raft_entry *ent)
{
    struct srv_req req;
    uint64_t id;
    struct srv_result local, *res = &local;
    if (!srv_entry_decode(ent->data, ent->len, s->scratch, &id, &req))
        ms_fatal("log entry %llu does not decode", (unsigned long long)ent->index);
    if (wait_find(&s->waits, id)) {
        res = arena_alloc(s->scratch, sizeof(*res));
        if (!res)
            res = &local;
    }
    ms_err e = apply(s, &req, ent->index, res);
    count_request(s, &req, e);
    if (res == &local) {
        if (wait_find(&s->waits, id))
            push_done(s, id, MS_E_NOMEM, NULL);
        return;
    }
    if (req.type == SRV_REQ_COMPACT && !e && req.u.compact.physical && kv_compact_pending(s->kv)) {
        /* Answer once the old records are gone (etcd waits for physical compaction). */
        if (srv_push_id(&s->apply.compact_waiters, &s->apply.n_compact_waiters,
                        &s->apply.cap_compact_waiters, id))
            return;
    }
    push_done(s, id, e, res);
}

static void complete_dones(struct srv *s)
{
    for (size_t i = 0; i < s->apply.n_dones; i++) {
        struct wait_entry we;
        if (!wait_remove(&s->waits, s->apply.dones[i].id, &we) || !we.done)
            continue;
        if (we.fail)
            we.done(we.ctx, we.fail, NULL);
        else
            we.done(we.ctx, s->apply.dones[i].err,
                    s->apply.dones[i].err ? NULL : s->apply.dones[i].res);
    }
    s->apply.n_dones = 0;
}

void srv_apply_entry(struct srv *s, const struct raft_entry *ent, const struct raft_conf_state *cs)
{
    s->ctr.proposals_committed++;
    if (cs) {
        /* A membership change took effect in the core when applied (RAFT.md §3.2 rule 4);
         * the configuration it left is recorded with the applied index. */
        ms_err e = srv_conf_put(s->wtxn, cs);
        if (e)
            ms_fatal("cannot record the configuration: %s", ms_err_name(e));
    } else if (ent->len) {
        apply_request(s, ent); /* empty entries are a new leader's no-op */
    }
}

/* ---- membership changes, as every member applies them ---- */

static bool url_taken(const struct srv *s, const struct cluster_member *m)
{
    for (size_t i = 0; i < s->n_members; i++) {
        const struct cluster_member *o = &s->members[i];
        if (o->id == m->id)
            continue;
        for (size_t j = 0; j < o->n_peer_urls; j++)
            for (size_t k = 0; k < m->n_peer_urls; k++)
                if (strcmp(o->peer_urls[j].text, m->peer_urls[k].text) == 0)
                    return true;
    }
    return false;
}

ms_err srv_member_check(struct srv *s, const struct raft_conf_change *rc, struct cluster_cc *cc)
{
    if (rc->ctx_len == 0) {
        /* A bootstrap entry written before they carried the member's record. */
        memset(cc, 0, sizeof(*cc));
        cc->kind = CLUSTER_CC_BOOT;
        cc->member.id = rc->node_id;
        return MS_OK;
    }
    if (cluster_cc_decode(rc->ctx, rc->ctx_len, cc) != MS_OK || cc->member.id != rc->node_id)
        ms_fatal("a membership change for %016llx does not decode",
                 (unsigned long long)rc->node_id);
    if (cc->kind == CLUSTER_CC_BOOT)
        return MS_OK;
    bool removed;
    ms_err e = srv_member_was_removed(s->wtxn, cc->member.id, &removed);
    srv_check_apply_error(e);
    if (removed)
        return MS_E_MEMBER_NOT_FOUND; /* etcd ErrIDRemoved, answered as not found */
    const struct cluster_member *m = srv_member_get(s, cc->member.id);
    switch (cc->kind) {
    case CLUSTER_CC_ADD: {
        if (m)
            return MS_E_MEMBER_EXISTS;
        if (url_taken(s, &cc->member))
            return MS_E_PEER_URL_EXISTS;
        size_t learners = 0;
        for (size_t i = 0; i < s->n_members; i++)
            learners += s->members[i].is_learner;
        if (cc->member.is_learner && learners + 1 > SRV_MAX_LEARNERS)
            return MS_E_TOO_MANY_LEARNERS;
        if (s->n_members >= CLUSTER_MAX_MEMBERS)
            return MS_E_TOO_MANY_REQUESTS;
        return MS_OK;
    }
    case CLUSTER_CC_REMOVE:
        return m ? MS_OK : MS_E_MEMBER_NOT_FOUND;
    case CLUSTER_CC_UPDATE:
        if (!m)
            return MS_E_MEMBER_NOT_FOUND;
        return url_taken(s, &cc->member) ? MS_E_PEER_URL_EXISTS : MS_OK;
    case CLUSTER_CC_PROMOTE:
        if (!m)
            return MS_E_MEMBER_NOT_FOUND;
        return m->is_learner ? MS_OK : MS_E_MEMBER_NOT_LEARNER;
    case CLUSTER_CC_BOOT:
        break;
    }
    return MS_OK;
}

/* The record the change leaves for its member (false: nothing to write). */
static bool next_record(struct srv *s, const struct cluster_cc *cc, struct cluster_member *out)
{
    const struct cluster_member *m = srv_member_get(s, cc->member.id);
    switch (cc->kind) {
    case CLUSTER_CC_BOOT:
        *out = cc->member;
        return out->n_peer_urls > 0; /* a legacy bootstrap entry carries none */
    case CLUSTER_CC_ADD:
        *out = cc->member;
        out->name[0] = 0; /* named once it starts and publishes */
        out->n_client_urls = 0;
        return true;
    case CLUSTER_CC_UPDATE:
        *out = *m;
        memcpy(out->peer_urls, cc->member.peer_urls, sizeof(out->peer_urls));
        out->n_peer_urls = cc->member.n_peer_urls;
        return true;
    case CLUSTER_CC_PROMOTE:
        *out = *m;
        out->is_learner = false;
        return true;
    case CLUSTER_CC_REMOVE:
        break;
    }
    return false;
}

void srv_member_applied(struct srv *s, const struct raft_entry *ent, const struct cluster_cc *cc,
                        ms_err err, const struct raft_conf_state *cs)
{
    ms_err e = MS_OK;
    struct cluster_member next;
    if (!err && cc->kind == CLUSTER_CC_REMOVE)
        e = srv_member_remove_record(s->wtxn, cc->member.id);
    else if (!err && next_record(s, cc, &next))
        e = srv_member_put(s->wtxn, &next);
    if (!e && !err)
        e = srv_members_load(s);
    srv_check_apply_error(e);
    if (e)
        ms_fatal("cannot record the members: %s", ms_err_name(e));
    srv_apply_entry(s, ent, cs);
    if (err && cc->kind != CLUSTER_CC_BOOT)
        log_info("membership change at %llu refused: %s", (unsigned long long)ent->index,
                 ms_err_name(err));
    if (!cc->request_id || !wait_find(&s->waits, cc->request_id))
        return;
    struct srv_result *res = arena_alloc(s->scratch, sizeof(*res));
    if (!res) {
        push_done(s, cc->request_id, MS_E_NOMEM, NULL);
        return;
    }
    static const enum srv_req_type types[] = {[CLUSTER_CC_BOOT] = SRV_REQ_MEMBER_ADD,
                                              [CLUSTER_CC_ADD] = SRV_REQ_MEMBER_ADD,
                                              [CLUSTER_CC_REMOVE] = SRV_REQ_MEMBER_REMOVE,
                                              [CLUSTER_CC_UPDATE] = SRV_REQ_MEMBER_UPDATE,
                                              [CLUSTER_CC_PROMOTE] = SRV_REQ_MEMBER_PROMOTE};
    memset(res, 0, sizeof(*res));
    res->type = types[cc->kind];
    res->revision = kv_current_rev(s->kv);
    res->u.member_id = cc->member.id;
    push_done(s, cc->request_id, err, err ? NULL : res);
}

void srv_member_forget(struct srv *s, uint64_t id)
{
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i].id == id) {
            memmove(&s->members[i], &s->members[i + 1],
                    (s->n_members - i - 1) * sizeof(s->members[0]));
            s->n_members--;
            return;
        }
}

bool srv_member_quorum_started(struct srv *s, enum cluster_cc_kind kind, uint64_t id)
{
    /* etcd's IsReadyToAddVotingMember, IsReadyToRemoveVotingMember, IsReadyToPromoteMember: a
     * member is started once it has published its name. */
    size_t voters = 0, started = 0;
    if (kind == CLUSTER_CC_ADD || kind == CLUSTER_CC_PROMOTE) {
        voters = 1;                           /* the one to come, */
        started = kind == CLUSTER_CC_PROMOTE; /* started already if promoted */
    }
    for (size_t i = 0; i < s->n_members; i++) {
        const struct cluster_member *m = &s->members[i];
        if (m->is_learner || (kind == CLUSTER_CC_REMOVE && m->id == id))
            continue;
        voters++;
        started += m->name[0] != 0;
    }
    if (kind == CLUSTER_CC_ADD && started == 1 && voters == 2)
        return true; /* growing a one-member cluster (a restored one) */
    return started >= voters / 2 + 1;
}

bool srv_self_published(const struct srv *s)
{
    return s->apply.self_published;
}

void srv_apply_end(struct srv *s, uint64_t index, uint64_t term)
{
    srv_events_flush(s);
    srv_store_applied(s, index, term);
    complete_dones(s);
}

ms_err srv_apply_init(struct srv *s)
{
    s->apply.compact_ev = evtimer_new(s->base, on_compact, s);
    return s->apply.compact_ev ? MS_OK : MS_E_NOMEM;
}

void srv_apply_fini(struct srv *s)
{
    if (s->apply.compact_ev)
        event_free(s->apply.compact_ev);
    free(s->apply.compact_waiters);
    free(s->apply.dones);
    memset(&s->apply, 0, sizeof(s->apply));
}

static void on_compact(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    ms_err e;
    if (srv_copy_running(s)) {
        /* Records a copy still has to read must stay: resume once it is done. */
        struct timeval later = {0, 10000};
        evtimer_add(s->apply.compact_ev, &later);
        return;
    }
    bool done = kv_compact_step(s->kv, s->wtxn, COMPACT_BUDGET, &e);
    if (e)
        ms_fatal("compaction failed: %s", ms_err_name(e));
    faultpt_hit("compact"); /* a slice removed, not committed, maybe more to go */
    if (!done) {
        struct timeval now = {0, 0};
        evtimer_add(s->apply.compact_ev, &now);
        return;
    }
    srv_commit(s);
    for (size_t i = 0; i < s->apply.n_compact_waiters; i++) {
        struct wait_entry we;
        if (!wait_remove(&s->waits, s->apply.compact_waiters[i], &we) || !we.done)
            continue;
        struct srv_result res = {.type = SRV_REQ_COMPACT, .revision = kv_current_rev(s->kv)};
        we.done(we.ctx, MS_OK, &res);
    }
    s->apply.n_compact_waiters = 0;
}
