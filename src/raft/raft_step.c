/* raft_step.c - message handling: term rules, votes, and the leader/candidate/follower steps.
 *
 * Port of etcd-io/raft raft.go Step, stepLeader, stepCandidate, stepFollower and the
 * handleAppendEntries/handleHeartbeat/handleSnapshot family. raft_step validates everything a
 * peer sends before the core looks at it, so hostile input is dropped, never asserted on.
 */
#include "raft_int.h"

#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

/* ---- read index ---- */

static void answer_read(struct raft *r, uint64_t from, uint64_t ctx, uint64_t index)
{
    if (from == RAFT_NONE || from == r->id) {
        raft_read_states_push(&r->read_states, index, ctx);
        return;
    }
    struct raft_msg m = {.type = RAFT_MSG_READ_INDEX_RESP, .to = from, .index = index, .ctx = ctx};
    raft_send(r, &m);
}

static void send_read_index_response(struct raft *r, const struct raft_msg *m)
{
#ifdef MS_PLANT_SKIP_READINDEX_QUORUM
    /* PLANTED BUG (-Dplant=skip_readindex_quorum, for tests/fault only): the commit index is
     * answered at once, without the heartbeat round that confirms this node still leads; a
     * deposed leader serves stale reads. */
    answer_read(r, m->from, m->ctx, r->log.committed);
    return;
#endif
    /* Lease reads are unsafe while leadership is being handed over (etcd#12704): confirm with a
     * heartbeat round then too. */
    if (r->ro.option == RAFT_READ_ONLY_LEASE && r->lead_transferee == RAFT_NONE) {
        answer_read(r, m->from, m->ctx, r->log.committed);
        return;
    }
    raft_readonly_add(&r->ro, r->log.committed, m->from, m->ctx);
    /* The leader acks its own round at once. */
    raft_readonly_recv_ack(&r->ro, r->id, raft_readonly_ctx(&r->ro));
    raft_bcast_heartbeat(r);
}

void raft_release_pending_reads(struct raft *r)
{
    if (r->pending_reads.n == 0 || !raft_committed_entry_in_current_term(r))
        return;
    struct raft_msgs q = r->pending_reads;
    memset(&r->pending_reads, 0, sizeof(r->pending_reads));
    for (size_t i = 0; i < q.n; i++)
        send_read_index_response(r, &q.v[i]);
    raft_msgs_fini(&q);
}

/* ---- follower side of replication ---- */

static void handle_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = m->from};
    if (m->index < r->log.committed) {
        /* Everything up to our commit index is known to match: tell the leader where we are. */
        resp.index = r->log.committed;
        raft_send(r, &resp);
        return;
    }
    uint64_t lastnew;
    if (raft_log_maybe_append(&r->log, m->index, m->log_term, m->commit, m->entries, m->n_entries,
                              &lastnew)) {
        resp.index = lastnew;
        raft_send(r, &resp);
#ifdef RAFT_BUG_CONF_ON_APPEND
        raft_bug_conf_on_append(r, m->entries, m->n_entries);
#endif
        return;
    }
    /* Our log does not hold (index, log_term). Hint the largest (index, term) that could match:
     * the last entry at or below m->index whose term is <= m->log_term (etcd
     * findConflictByTerm), which skips a divergent tail of higher terms in one round trip. */
    uint64_t last = raft_log_last_index(&r->log);
    uint64_t hint = m->index < last ? m->index : last;
    uint64_t hint_term;
    hint = raft_log_find_conflict_by_term(&r->log, hint, m->log_term, &hint_term);
    resp.index = m->index;
    resp.reject = true;
    resp.reject_hint = hint;
    resp.log_term = hint_term;
    raft_send(r, &resp);
}

static void handle_heartbeat(struct raft *r, const struct raft_msg *m)
{
    /* The leader sends min(match, commit), so this is within our log unless our disk lost
     * acknowledged entries; never trust a peer into an out-of-range commit. */
    if (m->commit <= raft_log_last_index(&r->log))
        raft_log_commit_to(&r->log, m->commit);
    struct raft_msg resp = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .ctx = m->ctx};
    raft_send(r, &resp);
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = m->from};
    if (raft_restore(r, &m->snap))
        resp.index = raft_log_last_index(&r->log);
    else
        resp.index = r->log.committed;
    raft_send(r, &resp);
}

/* Forward a local request to the leader (a copy: m is borrowed). */
static void forward_to_leader(struct raft *r, const struct raft_msg *m)
{
    struct raft_msg f;
    raft_msg_copy(&f, m);
    f.to = r->lead;
    raft_send(r, &f);
}

/* ---- leader ---- */

/* At most this many proposals (and bytes of entries) are kept during a transfer. */
#define TRANSFER_PROPS_MAX   4096
#define TRANSFER_PROPS_BYTES (16u << 20)

/* A proposal another member forwarded that this one cannot take: it leads but hands leadership
 * over, or it no longer knows a leader (it just stepped down, or campaigns). etcd drops it, and
 * its proposer, which cannot know, waits for its request timeout. It is kept and forwarded to
 * the next leader instead (it was never appended: forwarding it once is no duplicate). */
static void keep_forwarded(struct raft *r, const struct raft_msg *m)
{
    uint64_t bytes = raft_ents_size(m->entries, m->n_entries);
    if (r->transfer_props.n >= TRANSFER_PROPS_MAX ||
        r->transfer_props_bytes + bytes > TRANSFER_PROPS_BYTES)
        return;
    struct raft_msg c;
    raft_msg_copy(&c, m);
    raft_msgs_push(&r->transfer_props, &c);
    if (r->transfer_props.n == 1)
        r->transfer_props_ticks = 0;
    r->transfer_props_bytes += bytes;
}

static ms_err leader_propose(struct raft *r, const struct raft_msg *m)
{
    if (!raft_tracker_get(&r->trk, r->id))
        return MS_E_NOT_LEADER; /* removed from the configuration while leading */
    if (r->lead_transferee != RAFT_NONE) {
        if (m->from != r->id)
            keep_forwarded(r, m);
        return MS_E_LEADER_CHANGED;
    }
    /* Shallow copies: data stays borrowed from m until raft_append_entries copies it. */
    struct raft_entry *ents = raft_xmalloc(m->n_entries * sizeof(*ents));
    memcpy(ents, m->entries, m->n_entries * sizeof(*ents));
    uint64_t last = raft_log_last_index(&r->log);
    for (size_t i = 0; i < m->n_entries; i++) {
        if (ents[i].type != RAFT_ENTRY_CONF_CHANGE)
            continue;
        if (r->pending_conf_index > r->log.applied) {
            /* One change at a time: an unapplied one may still be in the log. The entry is kept
             * as an empty normal entry so that indexes stay what the proposer expects. */
            ents[i].type = RAFT_ENTRY_NORMAL;
            ents[i].len = 0;
            ents[i].data = NULL;
        } else {
            r->pending_conf_index = last + i + 1;
        }
    }
    bool ok = raft_append_entries(r, ents, m->n_entries);
    if (ok) {
        raft_bcast_append(r);
#ifdef RAFT_BUG_CONF_ON_APPEND
        raft_bug_conf_on_append(r, ents, m->n_entries);
#endif
    }
    free(ents);
    return ok ? MS_OK : MS_E_TOO_MANY_REQUESTS;
}

static void leader_app_resp(struct raft *r, struct raft_progress *pr, const struct raft_msg *m)
{
    pr->recent_active = true;
    if (m->reject) {
        uint64_t next_probe = m->reject_hint;
        /* The follower told us its term at the hint: skip every index where our term is
         * larger, since the logs cannot match there (etcd raft.go, long comment). */
        if (m->log_term > 0) {
            uint64_t t;
            next_probe = raft_log_find_conflict_by_term(&r->log, m->reject_hint, m->log_term, &t);
        }
        if (raft_pr_maybe_decr_to(pr, m->index, next_probe)) {
            if (pr->state == RAFT_PROGRESS_REPLICATE)
                raft_pr_become_probe(pr);
            raft_send_append(r, m->from);
        }
        return;
    }
    bool updated = raft_pr_maybe_update(pr, m->index);
    if (!updated && !(pr->match == m->index && pr->state == RAFT_PROGRESS_PROBE))
        return;
    if (pr->state == RAFT_PROGRESS_PROBE) {
        raft_pr_become_replicate(pr);
    } else if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
               pr->match + 1 >= raft_log_first_index(&r->log)) {
        /* The follower caught up (by snapshot or otherwise) to where our log can serve it. */
        raft_pr_become_probe(pr);
        raft_pr_become_replicate(pr);
    } else if (pr->state == RAFT_PROGRESS_REPLICATE) {
        raft_inflights_free_le(&pr->inf, m->index);
    }
    uint64_t from = m->from;
    if (raft_maybe_commit(r)) {
        raft_release_pending_reads(r);
        raft_bcast_append(r);
    } else if (r->id != from && raft_pr_can_bump_commit(pr, r->log.committed)) {
        raft_send_append(r, from);
    }
    if (r->id != from) {
        /* The window may have opened for several messages. */
        while (raft_maybe_send_append(r, from, false)) {
        }
    }
    pr = raft_tracker_get(&r->trk, from);
    if (pr && from == r->lead_transferee && pr->match == raft_log_last_index(&r->log))
        raft_send_timeout_now(r, from);
}

static void leader_transfer(struct raft *r, struct raft_progress *pr, uint64_t transferee)
{
    if (pr->learner)
        return;
    if (r->lead_transferee != RAFT_NONE) {
        if (r->lead_transferee == transferee)
            return; /* already under way */
        r->lead_transferee = RAFT_NONE;
    }
    if (transferee == r->id)
        return;
    /* The transfer must finish within an election timeout (tick_heartbeat aborts it). */
    r->election_elapsed = 0;
    r->lead_transferee = transferee;
    if (pr->match == raft_log_last_index(&r->log))
        raft_send_timeout_now(r, transferee);
    else
        raft_send_append(r, transferee);
}

static ms_err step_leader(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_BEAT:
        raft_bcast_heartbeat(r);
        return MS_OK;
    case RAFT_MSG_CHECK_QUORUM:
        if (!raft_tracker_quorum_active(&r->trk))
            raft_become_follower(r, r->term, RAFT_NONE);
        for (size_t i = 0; i < r->trk.n; i++)
            if (r->trk.prs[i].id != r->id)
                r->trk.prs[i].recent_active = false;
        return MS_OK;
    case RAFT_MSG_PROP:
        return leader_propose(r, m);
    case RAFT_MSG_READ_INDEX:
        if (raft_tracker_is_singleton(&r->trk)) {
            answer_read(r, m->from, m->ctx, r->log.committed);
            return MS_OK;
        }
#ifndef RAFT_BUG_READ_BEFORE_TERM_COMMIT
        /* Our commit index is only known to be current once we committed in our term. */
        if (!raft_committed_entry_in_current_term(r)) {
            struct raft_msg c;
            raft_msg_copy(&c, m);
            raft_msgs_push(&r->pending_reads, &c);
            return MS_OK;
        }
#endif
        send_read_index_response(r, m);
        return MS_OK;
    default:
        break;
    }

    struct raft_progress *pr = raft_tracker_get(&r->trk, m->from);
    if (!pr)
        return MS_OK;
    switch (m->type) {
    case RAFT_MSG_APP_RESP:
        leader_app_resp(r, pr, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP: {
        pr->recent_active = true;
        pr->flow_paused = false;
        /* Also unsticks a full window whose messages were all lost. */
        if (pr->match < raft_log_last_index(&r->log) || pr->state == RAFT_PROGRESS_PROBE)
            raft_send_append(r, m->from);
        if (m->ctx == 0)
            break;
        raft_readonly_recv_ack(&r->ro, m->from, m->ctx);
        struct raft_read_req *reqs;
        size_t n = raft_readonly_advance(&r->ro, &r->trk.voters, &reqs);
        for (size_t i = 0; i < n; i++)
            answer_read(r, reqs[i].from, reqs[i].ctx, reqs[i].index);
        free(reqs);
        break;
    }
    case RAFT_MSG_SNAP_STATUS:
        if (pr->state != RAFT_PROGRESS_SNAPSHOT)
            break;
        /* On failure forget the pending snapshot first, or we would probe from its index. */
        if (m->reject)
            pr->pending_snapshot = 0;
        raft_pr_become_probe(pr);
        /* Wait for the follower's MsgAppResp (success) or a heartbeat (failure). */
        pr->flow_paused = true;
        break;
    case RAFT_MSG_UNREACHABLE:
        /* An optimistic MsgApp was probably lost. */
        if (pr->state == RAFT_PROGRESS_REPLICATE)
            raft_pr_become_probe(pr);
        break;
    case RAFT_MSG_TRANSFER_LEADER:
        leader_transfer(r, pr, m->from);
        break;
    default:
        break;
    }
    return MS_OK;
}

/* ---- candidate ---- */

static ms_err step_candidate(struct raft *r, const struct raft_msg *m)
{
    /* A candidate may still receive stale pre-vote answers: count only its own kind. */
    enum raft_msg_type mine =
        r->state == RAFT_PRE_CANDIDATE ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP;
    switch (m->type) {
    case RAFT_MSG_PROP:
        if (m->from != r->id)
            keep_forwarded(r, m);
        return MS_E_NO_LEADER;
    case RAFT_MSG_APP:
        raft_become_follower(r, m->term, m->from);
        handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        raft_become_follower(r, m->term, m->from);
        handle_heartbeat(r, m);
        break;
    case RAFT_MSG_SNAP:
        raft_become_follower(r, m->term, m->from);
        handle_snapshot(r, m);
        break;
    default:
        if (m->type != mine)
            break;
        raft_tracker_record_vote(&r->trk, m->from, !m->reject);
        switch (raft_tracker_tally(&r->trk)) {
        case RAFT_VOTE_WON:
            if (r->state == RAFT_PRE_CANDIDATE) {
                raft_campaign_internal(r, RAFT_CAMPAIGN_ELECTION);
            } else {
                raft_become_leader(r);
                raft_bcast_append(r);
            }
            break;
        case RAFT_VOTE_LOST:
            /* A rejected pre-vote carries a future term; stay in ours. */
            raft_become_follower(r, r->term, RAFT_NONE);
            break;
        case RAFT_VOTE_PENDING:
            break;
        }
    }
    return MS_OK;
}

/* ---- follower ---- */

static ms_err step_follower(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_PROP:
        if (r->lead == RAFT_NONE) {
            if (m->from != r->id)
                keep_forwarded(r, m);
            return MS_E_NO_LEADER;
        }
        if (r->disable_forwarding)
            return MS_E_NOT_LEADER;
        forward_to_leader(r, m);
        break;
    case RAFT_MSG_APP:
        r->election_elapsed = 0;
        r->lead = m->from;
        handle_append(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->lead = m->from;
        handle_heartbeat(r, m);
        break;
    case RAFT_MSG_SNAP:
        r->election_elapsed = 0;
        r->lead = m->from;
        handle_snapshot(r, m);
        break;
    case RAFT_MSG_TRANSFER_LEADER:
    case RAFT_MSG_READ_INDEX:
        if (r->lead != RAFT_NONE)
            forward_to_leader(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        /* A transfer never uses pre-vote: there is no partition to recover from. */
        raft_hup(r, true);
        break;
    case RAFT_MSG_READ_INDEX_RESP:
        raft_read_states_push(&r->read_states, m->index, m->ctx);
        break;
    default:
        break;
    }
    return MS_OK;
}

/* ---- Step ---- */

static void handle_vote(struct raft *r, const struct raft_msg *m)
{
    enum raft_msg_type resp =
        m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PRE_VOTE_RESP;
    /* A repeat of our vote, no vote and no known leader this term, or a pre-vote for a later
     * term; and the candidate's log must be at least as up to date as ours. Learners vote too:
     * they may have been promoted without knowing it yet. */
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->lead == RAFT_NONE) ||
                    (m->type == RAFT_MSG_PRE_VOTE && m->term > r->term);
    if (can_vote && raft_log_is_up_to_date(&r->log, m->index, m->log_term)) {
        /* Answer with the message's term: for a pre-vote ours may be older. */
        struct raft_msg g = {.type = resp, .to = m->from, .term = m->term};
        raft_send(r, &g);
        if (m->type == RAFT_MSG_VOTE) {
            r->election_elapsed = 0;
            r->vote = m->from;
        }
    } else {
        struct raft_msg n = {.type = resp, .to = m->from, .term = r->term, .reject = true};
        raft_send(r, &n);
    }
}

/* Apply the term rules; false if the message is fully handled (ignored or answered). */
static bool check_term(struct raft *r, const struct raft_msg *m)
{
    if (m->term == 0)
        return true; /* local message */
    if (m->term > r->term) {
        if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE) {
            /* CheckQuorum's lease: having heard from a leader within the election timeout, we
             * ignore disruptive candidates (unless the leader asked for it: a transfer). */
            bool force = m->ctx == RAFT_CTX_TRANSFER;
            bool in_lease = r->check_quorum && r->lead != RAFT_NONE &&
                            r->election_elapsed < r->election_timeout;
            if (!force && in_lease)
                return false;
        }
        if (m->type == RAFT_MSG_PRE_VOTE) {
            /* never change term for a pre-vote */
        } else if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject) {
            /* granted pre-votes carry the term we will campaign in */
        } else if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAP) {
            raft_become_follower(r, m->term, m->from);
        } else {
            raft_become_follower(r, m->term, RAFT_NONE);
        }
        return true;
    }
    if (m->term < r->term) {
        if ((r->check_quorum || r->pre_vote) &&
            (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APP)) {
            /* A stale leader (or a node stuck at a lower term) learns our term from this and
             * steps down, which also frees a node isolated by CheckQuorum's vote lease. */
            struct raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = m->from};
            raft_send(r, &resp);
        } else if (m->type == RAFT_MSG_PRE_VOTE) {
            struct raft_msg resp = {
                .type = RAFT_MSG_PRE_VOTE_RESP, .to = m->from, .term = r->term, .reject = true};
            raft_send(r, &resp);
        }
        return false;
    }
    return true;
}

void raft_transfer_props_flush(struct raft *r)
{
    if (!r->transfer_props.n)
        return;
    bool here = r->state == RAFT_LEADER && r->lead_transferee == RAFT_NONE;
    bool there = r->state == RAFT_FOLLOWER && r->lead != RAFT_NONE && r->lead != r->id;
    if (!here && !there && r->transfer_props_ticks <= 2 * r->election_timeout)
        return;
    for (size_t i = 0; (here || there) && i < r->transfer_props.n; i++) {
        const struct raft_msg *m = &r->transfer_props.v[i];
        if (here) {
            (void)leader_propose(r, m);
            continue;
        }
        struct raft_msg f;
        raft_msg_copy(&f, m);
        f.from = r->id; /* a message is from the member that sends it (the transport checks) */
        f.to = r->lead;
        raft_send(r, &f);
    }
    raft_msgs_clear(&r->transfer_props);
    r->transfer_props_bytes = 0;
}

ms_err raft_step_internal(struct raft *r, const struct raft_msg *m)
{
    if (!check_term(r, m))
        return MS_OK;
    switch (m->type) {
    case RAFT_MSG_HUP:
        raft_hup(r, false);
        return MS_OK;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PRE_VOTE:
        handle_vote(r, m);
        return MS_OK;
    default:
        break;
    }
    switch (r->state) {
    case RAFT_LEADER:
        return step_leader(r, m);
    case RAFT_CANDIDATE:
    case RAFT_PRE_CANDIDATE:
        return step_candidate(r, m);
    case RAFT_FOLLOWER:
        return step_follower(r, m);
    }
    return MS_OK;
}

/* ---- validation of peer input ---- */

static bool entries_valid(const struct raft_msg *m)
{
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONF_CHANGE)
            return false;
        if (e->len > 0 && !e->data)
            return false;
    }
    if (m->type == RAFT_MSG_PROP)
        return m->n_entries > 0;
    if (m->type != RAFT_MSG_APP)
        return m->n_entries == 0;
    /* MsgApp: entries follow (index, log_term) contiguously, terms never decrease and never
     * exceed the leader's term. */
    if (m->index > UINT64_MAX - m->n_entries)
        return false;
    uint64_t prev_term = m->log_term;
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term)
            return false;
        prev_term = e->term;
    }
    return m->log_term <= m->term;
}

/* Terms and indexes never get anywhere near 2^62 in a real cluster; refusing larger ones keeps
 * every "+ 1" in the core free of overflow whatever a peer sends. */
#define RAFT_MAX_NUMBER (UINT64_C(1) << 62)

static bool numbers_sane(const struct raft_msg *m)
{
    return m->term < RAFT_MAX_NUMBER && m->log_term < RAFT_MAX_NUMBER &&
           m->index < RAFT_MAX_NUMBER && m->commit < RAFT_MAX_NUMBER &&
           m->reject_hint < RAFT_MAX_NUMBER && m->n_entries < RAFT_MAX_NUMBER - m->index &&
           m->snap.index < RAFT_MAX_NUMBER && m->snap.term < RAFT_MAX_NUMBER;
}

static bool is_response(enum raft_msg_type t)
{
    return t == RAFT_MSG_APP_RESP || t == RAFT_MSG_VOTE_RESP || t == RAFT_MSG_HEARTBEAT_RESP ||
           t == RAFT_MSG_PRE_VOTE_RESP;
}

ms_err raft_step(struct raft *r, const struct raft_msg *m)
{
    if ((unsigned)m->type >= RAFT_MSG_TYPE_COUNT_ || raft_msg_type_is_local(m->type))
        return MS_E_BAD_REQUEST;
    if (m->to != r->id || m->from == RAFT_NONE)
        return MS_E_BAD_REQUEST;
    /* Only forwarded requests can come back to their origin (a proposal forwarded to a leader
     * that stepped down and forwarded it on to us, now leader). */
    if (m->from == r->id && m->type != RAFT_MSG_PROP && m->type != RAFT_MSG_READ_INDEX &&
        m->type != RAFT_MSG_TRANSFER_LEADER)
        return MS_E_BAD_REQUEST;
    if (!numbers_sane(m) || !entries_valid(m))
        return MS_E_BAD_REQUEST;
    /* Everything but forwarded requests carries a term. */
    bool termless = m->type == RAFT_MSG_PROP || m->type == RAFT_MSG_READ_INDEX;
    if (termless != (m->term == 0))
        return MS_E_BAD_REQUEST;
    if (m->type == RAFT_MSG_SNAP &&
        (m->snap.index == 0 || m->snap.term == 0 || !raft_conf_state_valid(&m->snap.conf)))
        return MS_E_BAD_REQUEST;
    if (is_response(m->type) && !raft_tracker_get(&r->trk, m->from))
        return MS_E_NOT_EXIST;
    ms_err e = raft_step_internal(r, m);
    raft_transfer_props_flush(r);
    return e;
}
