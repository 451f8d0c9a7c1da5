/* raft_ready.c - the Ready/Advance cycle and status (etcd-io/raft rawnode.go, synchronous mode).
 *
 * raft_ready moves everything pending into r->rd, which owns copies of the entries, messages and
 * read states it hands out, so the caller's view stays valid even if the core keeps stepping
 * messages before raft_advance. Messages that must wait for persistence are split off; those
 * addressed to ourselves (the leader's and candidate's self-acks) are stepped by raft_advance,
 * together with the "entries are now stable" and "entries are now applied" notifications.
 */
#include "raft_int.h"

#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

static void free_now(struct raft_batch *b)
{
    for (size_t i = 0; i < b->n_now; i++)
        raft_entry_fini(&b->now[i]);
    free(b->now);
    b->now = NULL;
    b->n_now = 0;
}

void raft_batch_free(struct raft_batch *b)
{
    free_now(b);
    for (size_t i = 0; i < b->n_entries; i++)
        raft_entry_fini(&b->entries[i]);
    free(b->entries);
    b->entries = NULL;
    b->n_entries = 0;
    for (size_t i = 0; i < b->n_committed; i++)
        raft_entry_fini(&b->committed[i]);
    free(b->committed);
    b->committed = NULL;
    b->n_committed = 0;
    raft_msgs_clear(&b->msgs);
    raft_msgs_clear(&b->after);
    raft_msgs_clear(&b->steps_on_advance);
    b->reads.n = 0;
    b->stable_resp = false;
    b->stable_index = 0;
    b->stable_snap = false;
    b->applied_index = 0;
    b->out = false;
}

static void soft_state(const struct raft *r, struct raft_soft_state *s)
{
    s->lead = r->lead;
    s->role = r->state;
}

static void hard_state(const struct raft *r, struct raft_hard_state *h)
{
    h->term = r->term;
    h->vote = r->vote;
    h->commit = r->log.committed;
}

static bool hard_equal(const struct raft_hard_state *a, const struct raft_hard_state *b)
{
    return a->term == b->term && a->vote == b->vote && a->commit == b->commit;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->rd.out)
        return false;
    struct raft_soft_state s;
    soft_state(r, &s);
    if (s.lead != r->prev_soft.lead || s.role != r->prev_soft.role)
        return true;
    struct raft_hard_state h;
    hard_state(r, &h);
    if (!hard_equal(&h, &r->prev_hard))
        return true;
    if (raft_log_has_next_unstable_snap(&r->log))
        return true;
    if (r->msgs.n || r->msgs_after.n || r->read_states.n || r->appends_due)
        return true;
    const struct raft_entry *ents;
    return raft_log_next_unstable(&r->log, &ents) > 0 || raft_log_has_next_committed(&r->log);
}

/* Swap the contents of two message vectors (moves ownership without copying). */
static void msgs_swap(struct raft_msgs *a, struct raft_msgs *b)
{
    struct raft_msgs t = *a;
    *a = *b;
    *b = t;
}

ms_err raft_ready(struct raft *r, struct raft_ready *rd)
{
    struct raft_batch *b = &r->rd;
    if (b->out)
        return MS_E_BAD_REQUEST;
    memset(rd, 0, sizeof(*rd));
    raft_flush_appends(r);

    const struct raft_entry *unstable;
    size_t n = raft_log_next_unstable(&r->log, &unstable);
    if (n) {
        b->entries = raft_xmalloc(n * sizeof(*b->entries));
        for (size_t i = 0; i < n; i++)
            raft_entry_copy(&b->entries[i], &unstable[i]);
        b->n_entries = n;
    }
    struct raft_ents committed = {0};
    raft_log_next_committed(&r->log, &committed);
    raft_ents_steal(&committed, &b->committed, &b->n_committed);

    msgs_swap(&b->msgs, &r->msgs);
    for (size_t i = 0; i < r->msgs_after.n; i++) {
        struct raft_msg *m = &r->msgs_after.v[i];
        raft_msgs_push(m->to == r->id ? &b->steps_on_advance : &b->after, m);
    }
    r->msgs_after.n = 0; /* entries now owned by the batch */
    struct raft_read_states reads = b->reads;
    b->reads = r->read_states;
    r->read_states = reads;
    r->read_states.n = 0;

    soft_state(r, &rd->soft);
    rd->soft_changed = rd->soft.lead != r->prev_soft.lead || rd->soft.role != r->prev_soft.role;
    hard_state(r, &rd->hard);
    rd->hard_changed = !hard_equal(&rd->hard, &r->prev_hard);
    rd->must_sync =
        n != 0 || rd->hard.vote != r->prev_hard.vote || rd->hard.term != r->prev_hard.term;
    if (raft_log_has_next_unstable_snap(&r->log)) {
        rd->has_snapshot = true;
        rd->snapshot = r->log.u.snap;
        /* The snapshot replaces the log: it must be durable before anything acked on it. */
        rd->must_sync = true;
    }

    /* Accept: the state handed out is now "in progress" until raft_advance. */
    r->prev_soft = rd->soft;
    r->prev_hard = rd->hard;
    if (r->log.u.ents.n || rd->has_snapshot) {
        b->stable_resp = true;
        b->stable_term = r->term;
        if (r->log.u.ents.n) {
            b->stable_index = raft_log_last_index(&r->log);
            b->stable_log_term = raft_log_last_term(&r->log);
        }
        if (rd->has_snapshot) {
            b->stable_snap = true;
            b->stable_snap_index = rd->snapshot.index;
        }
    }
    raft_log_accept_unstable(&r->log);
    if (b->n_committed) {
        b->applied_index = b->committed[b->n_committed - 1].index;
        b->applied_bytes = raft_ents_size(b->committed, b->n_committed);
        b->applied_payload = raft_ents_payload(b->committed, b->n_committed);
        raft_log_accept_applying(&r->log, b->applied_index, b->applied_bytes);
    }
    b->out = true;

    rd->n_entries = b->n_entries;
    rd->entries = b->entries;
    rd->n_committed = b->n_committed;
    rd->committed = b->committed;
    rd->n_msgs = b->msgs.n;
    rd->msgs = b->msgs.v;
    rd->n_msgs_after_persist = b->after.n;
    rd->msgs_after_persist = b->after.v;
    rd->n_read_states = b->reads.n;
    rd->read_states = b->reads.v;
    return MS_OK;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
    struct raft_batch *b = &r->rd;
    if (!b->out)
        return;
    /* rd, when given, must be the outstanding Ready (its arrays are ours) */
    MS_ASSERT(!rd || (rd->entries == b->entries && rd->committed == b->committed));
    MS_ASSERT(!b->n_now); /* raft_committed_now's entries are advanced first */
    for (size_t i = 0; i < b->steps_on_advance.n; i++)
        (void)raft_step_internal(r, &b->steps_on_advance.v[i]);
    if (b->stable_resp) {
        /* Entries written under an older term may since have been replaced in the unstable
         * log: only an ack from the current term marks them stable (etcd ignores a
         * MsgStorageAppendResp with a lower term). A snapshot is valid in any term. */
        if (b->stable_index && b->stable_term == r->term)
            raft_log_stable_to(&r->log, b->stable_index, b->stable_log_term);
        if (b->stable_snap) {
            raft_log_stable_snap_to(&r->log, b->stable_snap_index);
            raft_applied_to(r, b->stable_snap_index, 0);
        }
    }
    if (b->applied_index) {
        raft_applied_to(r, b->applied_index, b->applied_bytes);
        raft_reduce_uncommitted(r, b->applied_payload);
    }
    raft_batch_free(b);
}

bool raft_has_committed_now(const struct raft *r)
{
    return r->rd.out && !r->rd.n_now && raft_log_has_next_committed(&r->log);
}

size_t raft_committed_now(struct raft *r, const struct raft_entry **ents)
{
    struct raft_batch *b = &r->rd;
    *ents = NULL;
    if (!raft_has_committed_now(r))
        return 0;
    /* Only stable entries: raft_log_next_committed stops below the unstable tail, which holds
     * the outstanding Ready's entries until raft_advance. */
    struct raft_ents c = {0};
    raft_log_next_committed(&r->log, &c);
    raft_ents_steal(&c, &b->now, &b->n_now);
    if (!b->n_now)
        return 0;
    b->now_bytes = raft_ents_size(b->now, b->n_now);
    b->now_payload = raft_ents_payload(b->now, b->n_now);
    raft_log_accept_applying(&r->log, b->now[b->n_now - 1].index, b->now_bytes);
    *ents = b->now;
    return b->n_now;
}

void raft_advance_committed(struct raft *r)
{
    struct raft_batch *b = &r->rd;
    if (!b->n_now)
        return;
    raft_applied_to(r, b->now[b->n_now - 1].index, b->now_bytes);
    raft_reduce_uncommitted(r, b->now_payload);
    free_now(b);
}

void raft_status(const struct raft *r, struct raft_status *st)
{
    memset(st, 0, sizeof(*st));
    st->id = r->id;
    hard_state(r, &st->hard);
    soft_state(r, &st->soft);
    st->applied = r->log.applied;
    st->first_index = raft_log_first_index(&r->log);
    st->last_index = raft_log_last_index(&r->log);
    st->lead_transferee = r->lead_transferee;
    st->learner = r->is_learner;
    st->pending_conf_index = r->state == RAFT_LEADER ? r->pending_conf_index : 0;
    if (raft_log_has_next_unstable_snap(&r->log))
        st->pending_snapshot = r->log.u.snap.index;
    raft_conf_state_of(&r->trk, &st->conf);
    if (r->state != RAFT_LEADER)
        return;
    st->n_progress = r->trk.n;
    for (size_t i = 0; i < r->trk.n; i++) {
        const struct raft_progress *pr = &r->trk.prs[i];
        struct raft_progress_status *ps = &st->progress[i];
        ps->id = pr->id;
        ps->match = pr->match;
        ps->next = pr->next;
        ps->state = pr->state;
        ps->pending_snapshot = pr->pending_snapshot;
        ps->inflight = pr->inf.count;
        ps->learner = pr->learner;
        ps->recent_active = pr->recent_active;
        ps->paused = raft_pr_is_paused(pr);
    }
}
