/* raft.c - the raft core: lifecycle, role changes, elections, replication and the public inputs.
 *
 * Port of etcd-io/raft raft.go (newRaft, become*, campaign, send*, appendEntry, switchToConfig,
 * restore) and the input half of rawnode.go. Message handling is in raft_step.c, the Ready
 * cycle in raft_ready.c. The core never performs I/O: everything it wants done is queued in
 * r->msgs (send now) and r->msgs_after (send once persisted) and collected by raft_ready.
 * Invariants asserted here: a leader never becomes candidate, a follower never leader, and a
 * message's term is set exactly by the rules of raft_send.
 */
#include "raft_int.h"

#include "metastore/buf.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <stdlib.h>
#include <string.h>

/* ---- PRNG (splitmix64): the only source of randomness, seeded from the config ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void reset_randomized_election_timeout(struct raft *r)
{
    /* [election, 2 * election): etcd randomizedElectionTimeout */
    r->randomized_election_timeout =
        r->election_timeout + (int)(rng_next(&r->rng) % (uint64_t)r->election_timeout);
}

/* ---- sending ---- */

static bool is_vote_msg(enum raft_msg_type t)
{
    return t == RAFT_MSG_VOTE || t == RAFT_MSG_VOTE_RESP || t == RAFT_MSG_PRE_VOTE ||
           t == RAFT_MSG_PRE_VOTE_RESP;
}

/* Queue m, taking ownership of its entries. Vote messages carry an explicit term; every other
 * message gets ours, except proposals and read requests, which are forwarded as local messages
 * (etcd raft.send). Responses that acknowledge persisted state wait for persistence. */
void raft_send(struct raft *r, struct raft_msg *m)
{
    if (m->from == RAFT_NONE)
        m->from = r->id;
    if (is_vote_msg(m->type)) {
        MS_ASSERT(m->term != 0);
    } else {
        MS_ASSERT(m->term == 0);
        if (m->type != RAFT_MSG_PROP && m->type != RAFT_MSG_READ_INDEX)
            m->term = r->term;
    }
    bool after = m->type == RAFT_MSG_APP_RESP || m->type == RAFT_MSG_VOTE_RESP ||
                 m->type == RAFT_MSG_PRE_VOTE_RESP;
#ifdef RAFT_BUG_VOTE_BEFORE_FSYNC
    /* Planted bug: a vote leaves before the vote is durable. */
    if ((m->type == RAFT_MSG_VOTE_RESP || m->type == RAFT_MSG_PRE_VOTE_RESP) && m->to != r->id)
        after = false;
#endif
    if (after) {
        raft_msgs_push(&r->msgs_after, m);
    } else {
        MS_ASSERT(m->to != r->id);
        raft_msgs_push(&r->msgs, m);
    }
}

static bool maybe_send_snapshot(struct raft *r, struct raft_progress *pr)
{
    if (!pr->recent_active)
        return false;
    struct raft_msg m = {.type = RAFT_MSG_SNAP, .to = pr->id};
    raft_log_snapshot(&r->log, &m.snap);
    if (m.snap.index == 0)
        return false; /* the log was compacted without a snapshot: storage misuse */
    raft_pr_become_snapshot(pr, m.snap.index);
    raft_send(r, &m);
    return true;
}

bool raft_maybe_send_append(struct raft *r, uint64_t to, bool send_if_empty)
{
    struct raft_progress *pr = raft_tracker_get(&r->trk, to);
    if (!pr || raft_pr_is_paused(pr))
        return false;
    MS_ASSERT(pr->match < pr->next); /* tracker/progress.go's invariant */
    uint64_t prev_index = pr->next - 1;
    uint64_t prev_term;
    if (!raft_log_term(&r->log, prev_index, &prev_term))
        return maybe_send_snapshot(r, pr); /* the log was compacted past next */
    struct raft_ents ents = {0};
    ms_err e = MS_OK;
    uint64_t last = raft_log_last_index(&r->log);
    /* A throttled replicating peer only gets empty appends, so that an ack or a rejection
     * eventually frees its window even if every inflight message was lost. */
    if ((pr->state != RAFT_PROGRESS_REPLICATE || !raft_inflights_full(&pr->inf)) &&
        pr->next <= last)
        e = raft_log_slice(&r->log, pr->next, last + 1, r->max_msg_size, &ents);
    if (ents.n == 0 && !send_if_empty)
        return false;
    if (e != MS_OK) {
        raft_ents_fini(&ents);
        return maybe_send_snapshot(r, pr);
    }
    struct raft_msg m = {
        .type = RAFT_MSG_APP,
        .to = to,
        .index = prev_index,
        .log_term = prev_term,
        .commit = r->log.committed,
    };
    uint64_t bytes = raft_ents_payload(ents.v, ents.n);
    raft_ents_steal(&ents, &m.entries, &m.n_entries);
    size_t n = m.n_entries;
    raft_send(r, &m);
    raft_pr_sent_entries(pr, n, bytes);
    pr->sent_commit = r->log.committed;
    return true;
}

void raft_send_append(struct raft *r, uint64_t to)
{
    struct raft_progress *pr = raft_tracker_get(&r->trk, to);
    if (!pr || r->state != RAFT_LEADER)
        return;
    pr->append_due = true;
    r->appends_due = true;
}

static void send_heartbeat(struct raft *r, struct raft_progress *pr, uint64_t ctx)
{
    /* Never tell a follower to commit beyond what it is known to hold. */
    uint64_t commit = pr->match < r->log.committed ? pr->match : r->log.committed;
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .to = pr->id, .commit = commit, .ctx = ctx};
    raft_send(r, &m);
    pr->sent_commit = commit;
}

void raft_bcast_append(struct raft *r)
{
    for (size_t i = 0; i < r->trk.n; i++)
        if (r->trk.prs[i].id != r->id)
            raft_send_append(r, r->trk.prs[i].id);
}

void raft_flush_appends(struct raft *r)
{
    if (!r->appends_due)
        return;
    r->appends_due = false;
    for (size_t i = 0; i < r->trk.n; i++) {
        struct raft_progress *pr = &r->trk.prs[i];
        uint64_t id = pr->id;
        if (!pr->append_due)
            continue;
        pr->append_due = false;
        if (r->state != RAFT_LEADER || !raft_maybe_send_append(r, id, true))
            continue;
        /* What one message could not carry, as far as the peer's window allows. */
        while (raft_maybe_send_append(r, id, false)) {
        }
    }
}

void raft_bcast_heartbeat(struct raft *r)
{
    uint64_t ctx = raft_readonly_ctx(&r->ro);
    for (size_t i = 0; i < r->trk.n; i++)
        if (r->trk.prs[i].id != r->id)
            send_heartbeat(r, &r->trk.prs[i], ctx);
}

void raft_send_timeout_now(struct raft *r, uint64_t to)
{
    struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to};
    raft_send(r, &m);
}

/* ---- commit and apply bookkeeping ---- */

bool raft_maybe_commit(struct raft *r)
{
    return raft_log_maybe_commit(&r->log, raft_tracker_committed(&r->trk), r->term);
}

void raft_applied_to(struct raft *r, uint64_t index, uint64_t size)
{
    uint64_t a = index > r->log.applied ? index : r->log.applied;
    raft_log_applied_to(&r->log, a, size);
}

static bool increase_uncommitted(struct raft *r, uint64_t s)
{
    /* Empty entries (the leader's no-op) always pass; so does anything into an empty tail. */
    if (r->uncommitted_size > 0 && s > 0 && r->uncommitted_size + s > r->max_uncommitted)
        return false;
    r->uncommitted_size += s;
    return true;
}

void raft_reduce_uncommitted(struct raft *r, uint64_t s)
{
    r->uncommitted_size = s > r->uncommitted_size ? 0 : r->uncommitted_size - s;
}

bool raft_committed_entry_in_current_term(const struct raft *r)
{
    return raft_log_term_or0(&r->log, r->log.committed) == r->term;
}

bool raft_promotable(const struct raft *r)
{
    const struct raft_progress *pr = raft_tracker_cget(&r->trk, r->id);
    return pr && !pr->learner && !raft_log_has_snapshot_pending(&r->log);
}

/* Append entries at our term (their term/index fields are overwritten). */
bool raft_append_entries(struct raft *r, struct raft_entry *ents, size_t n)
{
    uint64_t li = raft_log_last_index(&r->log);
    for (size_t i = 0; i < n; i++) {
        ents[i].term = r->term;
        ents[i].index = li + 1 + i;
    }
    if (!increase_uncommitted(r, raft_ents_payload(ents, n)))
        return false;
    li = raft_log_append(&r->log, ents, n);
#ifdef RAFT_BUG_SELF_COUNT_EARLY
    /* Planted bug: the leader counts its own log toward the quorum before persisting it. */
    struct raft_progress *self = raft_tracker_get(&r->trk, r->id);
    if (self)
        raft_pr_maybe_update(self, li);
    raft_maybe_commit(r);
#else
    /* The leader acknowledges its own entries only once they are durable: this self-ack waits
     * in msgs_after and is stepped by raft_advance (RAFT.md §3.2 rule 2). */
    struct raft_msg m = {.type = RAFT_MSG_APP_RESP, .to = r->id, .index = li};
    raft_send(r, &m);
#endif
    return true;
}

/* ---- role changes ---- */

static void reset(struct raft *r, uint64_t term)
{
    if (r->term != term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    r->lead = RAFT_NONE;
    r->appends_due = false;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    reset_randomized_election_timeout(r);
    r->lead_transferee = RAFT_NONE;
    raft_tracker_reset_votes(&r->trk);
    uint64_t last = raft_log_last_index(&r->log);
    for (size_t i = 0; i < r->trk.n; i++) {
        struct raft_progress *pr = &r->trk.prs[i];
        pr->match = pr->id == r->id ? last : 0;
        pr->next = last + 1;
        pr->sent_commit = 0;
        pr->pending_snapshot = 0;
        pr->state = RAFT_PROGRESS_PROBE;
        pr->recent_active = false;
        pr->flow_paused = false;
        pr->append_due = false;
        raft_inflights_reset(&pr->inf);
    }
    r->pending_conf_index = 0;
    r->uncommitted_size = 0;
    raft_readonly_reset(&r->ro);
    /* Reads waiting for a commit in the old term: dropping them is safe, the client retries. */
    raft_msgs_clear(&r->pending_reads);
}

void raft_become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
    reset(r, term);
    r->lead = lead;
    r->state = RAFT_FOLLOWER;
}

static void become_candidate(struct raft *r)
{
    MS_ASSERT(r->state != RAFT_LEADER);
    reset(r, r->term + 1);
    r->vote = r->id;
    r->state = RAFT_CANDIDATE;
}

static void become_pre_candidate(struct raft *r)
{
    MS_ASSERT(r->state != RAFT_LEADER);
    /* Neither the term nor the vote changes (thesis §9.6). */
    raft_tracker_reset_votes(&r->trk);
    r->lead = RAFT_NONE;
    r->state = RAFT_PRE_CANDIDATE;
}

void raft_become_leader(struct raft *r)
{
    MS_ASSERT(r->state != RAFT_FOLLOWER);
    reset(r, r->term);
    r->lead = r->id;
    r->state = RAFT_LEADER;
    struct raft_progress *self = raft_tracker_get(&r->trk, r->id);
    if (self) {
        raft_pr_become_replicate(self);
        self->recent_active = true;
    }
    /* There may be an unapplied conf change anywhere in our log: allow no new one before all of
     * it is applied (cheaper than scanning the tail). */
    r->pending_conf_index = raft_log_last_index(&r->log);
#ifndef RAFT_BUG_NO_NOOP
    /* The no-op lets the leader commit (and learn the commit index of) everything before its
     * term, since it may only commit entries of its own term by counting (§5.4.2). */
    struct raft_entry noop = {.type = RAFT_ENTRY_NORMAL};
    MS_ASSERT(raft_append_entries(r, &noop, 1));
#endif
}

/* ---- elections ---- */

struct cc_scan {
    bool found;
};

static bool find_cc(void *arg, const struct raft_entry *e)
{
    if (e->type == RAFT_ENTRY_CONF_CHANGE) {
        ((struct cc_scan *)arg)->found = true;
        return false;
    }
    return true;
}

static bool has_unapplied_conf_changes(const struct raft *r)
{
    if (r->log.applied >= r->log.committed)
        return false;
    struct cc_scan s = {false};
    ms_err e = raft_log_scan(&r->log, r->log.applied + 1, r->log.committed + 1, find_cc, &s);
    MS_ASSERT(e == MS_OK);
    return s.found;
}

void raft_campaign_internal(struct raft *r, int kind)
{
    enum raft_msg_type vote_type;
    uint64_t term;
    if (kind == RAFT_CAMPAIGN_PRE) {
        become_pre_candidate(r);
        vote_type = RAFT_MSG_PRE_VOTE;
        term = r->term + 1; /* pre-votes are for the term we would campaign in */
    } else {
        become_candidate(r);
        vote_type = RAFT_MSG_VOTE;
        term = r->term;
    }
    enum raft_msg_type resp_type =
        vote_type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PRE_VOTE_RESP;
    uint64_t ids[RAFT_MAX_NODES];
    size_t n = raft_tracker_voter_ids(&r->trk, ids);
    uint64_t last = raft_log_last_index(&r->log);
    uint64_t last_term = raft_log_last_term(&r->log);
    for (size_t i = 0; i < n; i++) {
        struct raft_msg m = {.to = ids[i], .term = term};
        if (ids[i] == r->id) {
            /* Our own vote counts once it is durable: it comes back through raft_advance. */
            m.type = resp_type;
        } else {
            m.type = vote_type;
            m.index = last;
            m.log_term = last_term;
            m.ctx = kind == RAFT_CAMPAIGN_TRANSFER ? RAFT_CTX_TRANSFER : 0;
        }
        raft_send(r, &m);
    }
}

void raft_hup(struct raft *r, bool transfer)
{
    if (r->state == RAFT_LEADER || !raft_promotable(r))
        return;
    /* A node must not campaign while a committed conf change is unapplied: it could win with
     * the old configuration's quorum. */
    if (has_unapplied_conf_changes(r))
        return;
    int kind = transfer ? RAFT_CAMPAIGN_TRANSFER
                        : (r->pre_vote ? RAFT_CAMPAIGN_PRE : RAFT_CAMPAIGN_ELECTION);
    raft_campaign_internal(r, kind);
}

/* ---- ticks ---- */

static void step_local(struct raft *r, enum raft_msg_type type)
{
    struct raft_msg m = {.type = type, .from = r->id};
    (void)raft_step_internal(r, &m);
}

static void tick_election(struct raft *r)
{
    r->election_elapsed++;
    if (raft_promotable(r) && r->election_elapsed >= r->randomized_election_timeout) {
        r->election_elapsed = 0;
        step_local(r, RAFT_MSG_HUP);
    }
}

static void tick_heartbeat(struct raft *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->election_timeout) {
        r->election_elapsed = 0;
        if (r->check_quorum)
            step_local(r, RAFT_MSG_CHECK_QUORUM);
        /* A transfer that did not finish within an election timeout is abandoned. */
        if (r->state == RAFT_LEADER && r->lead_transferee != RAFT_NONE)
            r->lead_transferee = RAFT_NONE;
    }
    if (r->state != RAFT_LEADER)
        return;
    if (r->heartbeat_elapsed >= r->heartbeat_timeout) {
        r->heartbeat_elapsed = 0;
        step_local(r, RAFT_MSG_BEAT);
    }
}

void raft_tick(struct raft *r)
{
    if (r->state == RAFT_LEADER)
        tick_heartbeat(r);
    else
        tick_election(r);
    if (r->transfer_props.n) {
        r->transfer_props_ticks++;
        raft_transfer_props_flush(r);
    }
}

/* ---- configuration ---- */

/* React to a configuration just installed in r->trk (etcd switchToConfig). */
void raft_switch_config_effects(struct raft *r)
{
    const struct raft_progress *self = raft_tracker_cget(&r->trk, r->id);
    r->is_learner = self && self->learner;
    if ((!self || r->is_learner) && r->state == RAFT_LEADER) {
        /* Removed or demoted while leading. */
        if (r->step_down_on_removal)
            raft_become_follower(r, r->term, RAFT_NONE);
        return;
    }
    if (r->state != RAFT_LEADER || r->trk.voters.in.n == 0)
        return;
    if (raft_maybe_commit(r)) {
        raft_bcast_append(r);
    } else {
        /* Probe newly added peers now rather than at the next heartbeat. */
        for (size_t i = 0; i < r->trk.n; i++)
            if (r->trk.prs[i].id != r->id)
                raft_maybe_send_append(r, r->trk.prs[i].id, false);
    }
    if (r->lead_transferee != RAFT_NONE && !raft_joint_has(&r->trk.voters, r->lead_transferee))
        r->lead_transferee = RAFT_NONE;
}

ms_err raft_apply_conf_change(struct raft *r, const struct raft_conf_change *cc,
                              struct raft_conf_state *out)
{
    ms_err e = raft_conf_apply(&r->trk, cc, raft_log_last_index(&r->log));
    if (e != MS_OK)
        return e;
    raft_switch_config_effects(r);
    if (out)
        raft_conf_state_of(&r->trk, out);
    return MS_OK;
}

#ifdef RAFT_BUG_CONF_ON_APPEND
void raft_bug_conf_on_append(struct raft *r, const struct raft_entry *ents, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct raft_conf_change cc;
        if (ents[i].type == RAFT_ENTRY_CONF_CHANGE &&
            raft_cc_decode(ents[i].data, ents[i].len, &cc) == MS_OK &&
            raft_conf_apply(&r->trk, &cc, raft_log_last_index(&r->log)) == MS_OK)
            raft_switch_config_effects(r);
    }
}
#endif

/* Install snapshot s on a follower; false if it is stale or unusable (etcd raft.restore). */
bool raft_restore(struct raft *r, const struct raft_snapshot_meta *s)
{
    if (s->index <= r->log.committed)
        return false;
    if (r->state != RAFT_FOLLOWER) {
        /* Defence in depth, never expected: a leader must not install a snapshot. */
        raft_become_follower(r, r->term + 1, RAFT_NONE);
        return false;
    }
    if (!raft_conf_has(&s->conf, r->id, true))
        return false;
    /* Committed entries handed out in a Ready are being applied (raft_ready may be followed by
     * raft_step before raft_advance): a snapshot installed now would be overtaken by them, and
     * a stale conf change applied on top of the snapshot's configuration would corrupt it.
     * Refuse; the leader retries once we answer with our commit index. */
    if (r->log.applying > r->log.applied)
        return false;
    if (raft_log_match_term(&r->log, s->index, s->term)) {
        /* We already have the snapshot's entry: just fast-forward the commit index. */
        raft_log_commit_to(&r->log, s->index);
        return false;
    }
    raft_log_restore(&r->log, s);
    ms_err e = raft_conf_restore(&r->trk, &s->conf, raft_log_last_index(&r->log));
    MS_ASSERT(e == MS_OK); /* validated by raft_step */
    raft_switch_config_effects(r);
    return true;
}

/* ---- lifecycle ---- */

void raft_config_default(struct raft_config *cfg, uint64_t id)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->id = id;
    cfg->election_tick = 10;
    cfg->heartbeat_tick = 1;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->read_only = RAFT_READ_ONLY_SAFE;
    cfg->max_size_per_msg = 1u << 20;
    cfg->max_inflight_msgs = 256;
    cfg->max_uncommitted_bytes = 1u << 30;
    cfg->step_down_on_removal = true;
}

static bool config_valid(const struct raft_config *c)
{
    if (c->id == RAFT_NONE || c->heartbeat_tick <= 0 || c->election_tick <= c->heartbeat_tick)
        return false;
    if (!c->log || !c->log->first_index || !c->log->last_index || !c->log->term ||
        !c->log->entries || !c->log->snapshot)
        return false;
    if (c->max_inflight_msgs == 0)
        return false;
    if (c->max_inflight_bytes != 0 && c->max_inflight_bytes < c->max_size_per_msg)
        return false;
    if (c->read_only == RAFT_READ_ONLY_LEASE && !c->check_quorum)
        return false;
    return c->read_only == RAFT_READ_ONLY_SAFE || c->read_only == RAFT_READ_ONLY_LEASE;
}

ms_err raft_create(const struct raft_config *cfg, const struct raft_hard_state *hs,
                   const struct raft_conf_state *cs, struct raft **out)
{
    *out = NULL;
    if (!config_valid(cfg))
        return MS_E_BAD_REQUEST;
    struct raft *r = raft_xcalloc(1, sizeof(*r));
    r->id = cfg->id;
    uint64_t max_applying = cfg->max_committed_bytes_per_ready ? cfg->max_committed_bytes_per_ready
                                                               : cfg->max_size_per_msg;
    raft_log_init(&r->log, cfg->log, cfg->log_ctx, max_applying ? max_applying : 1);
    r->max_msg_size = cfg->max_size_per_msg;
    r->max_uncommitted = cfg->max_uncommitted_bytes ? cfg->max_uncommitted_bytes : UINT64_MAX;
    raft_tracker_init(&r->trk, cfg->max_inflight_msgs, cfg->max_inflight_bytes);
    raft_readonly_init(&r->ro, cfg->read_only);
    r->election_timeout = cfg->election_tick;
    r->heartbeat_timeout = cfg->heartbeat_tick;
    r->check_quorum = cfg->check_quorum;
    r->pre_vote = cfg->pre_vote;
    r->disable_forwarding = cfg->disable_proposal_forwarding;
    r->step_down_on_removal = cfg->step_down_on_removal;
    r->rng = cfg->seed ^ (cfg->id * 0xd1b54a32d192ed03ull);

    struct raft_conf_state empty = {0};
    ms_err e = raft_conf_restore(&r->trk, cs ? cs : &empty, raft_log_last_index(&r->log));
    if (e != MS_OK)
        goto out_destroy;
    raft_switch_config_effects(r);
    if (hs && (hs->term || hs->vote || hs->commit)) {
        /* A commit below the snapshot index (a crash between persisting a snapshot and the
         * hard state that followed it) is raised to it: a snapshot holds committed state. */
        if (hs->commit > raft_log_last_index(&r->log)) {
            e = MS_E_BAD_REQUEST;
            goto out_destroy;
        }
        if (hs->commit > r->log.committed)
            r->log.committed = hs->commit;
        r->term = hs->term;
        r->vote = hs->vote;
    }
    if (cfg->applied > 0) {
        if (cfg->applied > r->log.committed || cfg->applied < r->log.applied) {
            e = MS_E_BAD_REQUEST;
            goto out_destroy;
        }
        raft_log_applied_to(&r->log, cfg->applied, 0);
    }
    raft_become_follower(r, r->term, RAFT_NONE);
    r->prev_soft.lead = r->lead;
    r->prev_soft.role = r->state;
    r->prev_hard.term = r->term;
    r->prev_hard.vote = r->vote;
    r->prev_hard.commit = r->log.committed;
    *out = r;
    return MS_OK;

out_destroy:
    raft_destroy(r);
    return e;
}

void raft_destroy(struct raft *r)
{
    if (!r)
        return;
    raft_batch_free(&r->rd);
    raft_msgs_fini(&r->rd.msgs);
    raft_msgs_fini(&r->rd.after);
    raft_msgs_fini(&r->rd.steps_on_advance);
    free(r->rd.reads.v);
    raft_log_fini(&r->log);
    raft_tracker_fini(&r->trk);
    raft_readonly_fini(&r->ro);
    raft_msgs_fini(&r->msgs);
    raft_msgs_fini(&r->msgs_after);
    raft_msgs_fini(&r->pending_reads);
    raft_msgs_fini(&r->transfer_props);
    free(r->read_states.v);
    free(r);
}

/* Encode cc as entry data (malloc'ed, caller frees). */
static uint8_t *encode_cc(const struct raft_conf_change *cc, size_t *len)
{
    struct buf b;
    buf_init(&b);
    raft_cc_encode(cc, &b);
    if (buf_failed(&b))
        ms_fatal("raft: out of memory encoding a conf change");
    return buf_steal(&b, len);
}

ms_err raft_bootstrap(struct raft *r, const uint64_t *voters, size_t n)
{
    return raft_bootstrap_ctx(r, voters, NULL, NULL, n);
}

ms_err raft_bootstrap_ctx(struct raft *r, const uint64_t *voters, const uint8_t *const *ctxs,
                          const size_t *ctx_lens, size_t n)
{
    if (n == 0 || n > RAFT_MAX_NODES || raft_log_last_index(&r->log) != 0)
        return MS_E_BAD_REQUEST;
    for (size_t i = 0; i < n; i++) {
        if (voters[i] == RAFT_NONE || (ctxs && ctx_lens[i] > RAFT_CODEC_MAX_CC_CTX))
            return MS_E_BAD_REQUEST;
        for (size_t j = 0; j < i; j++)
            if (voters[j] == voters[i])
                return MS_E_BAD_REQUEST;
    }
    raft_become_follower(r, 1, RAFT_NONE);
    memset(&r->prev_hard, 0, sizeof(r->prev_hard));
    for (size_t i = 0; i < n; i++) {
        struct raft_conf_change cc = {.type = RAFT_CC_ADD_NODE, .node_id = voters[i]};
        if (ctxs) {
            cc.ctx = ctxs[i];
            cc.ctx_len = ctx_lens[i];
        }
        struct raft_entry e = {.term = 1, .index = i + 1, .type = RAFT_ENTRY_CONF_CHANGE};
        uint8_t *data = encode_cc(&cc, &e.len);
        e.data = data;
        raft_log_append(&r->log, &e, 1);
        free(data);
    }
    r->log.committed = n;
    for (size_t i = 0; i < n; i++) {
        struct raft_conf_change cc = {.type = RAFT_CC_ADD_NODE, .node_id = voters[i]};
        MS_ASSERT(raft_apply_conf_change(r, &cc, NULL) == MS_OK);
    }
    return MS_OK;
}

/* ---- public inputs ---- */

ms_err raft_propose(struct raft *r, const uint8_t *data, size_t len)
{
    if (len > RAFT_CODEC_MAX_ENTRY_BYTES)
        return MS_E_REQUEST_TOO_LARGE;
    struct raft_entry e = {.type = RAFT_ENTRY_NORMAL, .len = len, .data = data};
    struct raft_msg m = {
        .type = RAFT_MSG_PROP, .from = r->id, .to = r->id, .n_entries = 1, .entries = &e};
    return raft_step_internal(r, &m);
}

ms_err raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc)
{
    if (cc->node_id == RAFT_NONE || (unsigned)cc->type > RAFT_CC_ADD_LEARNER ||
        cc->ctx_len > RAFT_CODEC_MAX_CC_CTX)
        return MS_E_BAD_REQUEST;
    size_t len;
    uint8_t *data = encode_cc(cc, &len);
    struct raft_entry e = {.type = RAFT_ENTRY_CONF_CHANGE, .len = len, .data = data};
    struct raft_msg m = {
        .type = RAFT_MSG_PROP, .from = r->id, .to = r->id, .n_entries = 1, .entries = &e};
    ms_err err = raft_step_internal(r, &m);
    free(data);
    return err;
}

void raft_read_index(struct raft *r, uint64_t ctx)
{
    struct raft_msg m = {.type = RAFT_MSG_READ_INDEX, .from = r->id, .to = r->id, .ctx = ctx};
    (void)raft_step_internal(r, &m);
}

void raft_campaign(struct raft *r)
{
    step_local(r, RAFT_MSG_HUP);
}

void raft_transfer_leader(struct raft *r, uint64_t to)
{
    /* As in etcd, the transferee travels in From. */
    struct raft_msg m = {.type = RAFT_MSG_TRANSFER_LEADER, .from = to, .to = r->id};
    (void)raft_step_internal(r, &m);
}

void raft_report_unreachable(struct raft *r, uint64_t id)
{
    struct raft_msg m = {.type = RAFT_MSG_UNREACHABLE, .from = id, .to = r->id};
    (void)raft_step_internal(r, &m);
}

void raft_report_snapshot(struct raft *r, uint64_t id, bool ok)
{
    struct raft_msg m = {.type = RAFT_MSG_SNAP_STATUS, .from = id, .to = r->id, .reject = !ok};
    (void)raft_step_internal(r, &m);
}
