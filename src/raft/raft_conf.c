/* raft_conf.c - membership: single-step configuration changes and restoring a configuration.
 *
 * Port of the simple (non-joint) half of etcd-io/raft confchange/. A change is validated first
 * and then applied in place, so a refused change leaves the tracker untouched. Invariants: every
 * voter and learner has a progress entry; no id is both voter and learner; outgoing voters stay
 * empty (joint consensus is not exposed yet).
 */
#include "raft_int.h"

#include <string.h>

/* The Next of a brand-new progress: optimistic at the leader's last index (etcd initProgress). */
static uint64_t initial_next(uint64_t last_index)
{
    return last_index > 1 ? last_index : 1;
}

static void make_voter(struct raft_tracker *t, uint64_t id, uint64_t last_index)
{
    struct raft_progress *pr = raft_tracker_get(t, id);
    if (!pr) {
        raft_tracker_insert(t, id, initial_next(last_index), false);
    } else {
        pr->learner = false;
        raft_majority_del(&t->learners, id);
    }
    raft_majority_add(&t->voters.in, id);
}

static void make_learner(struct raft_tracker *t, uint64_t id, uint64_t last_index)
{
    struct raft_progress *pr = raft_tracker_get(t, id);
    if (!pr) {
        raft_tracker_insert(t, id, initial_next(last_index), true);
    } else {
        if (pr->learner)
            return;
        /* A voter demoted to learner keeps its progress. */
        raft_majority_del(&t->voters.in, id);
        pr->learner = true;
    }
    raft_majority_add(&t->learners, id);
}

static void remove_node(struct raft_tracker *t, uint64_t id)
{
    if (!raft_tracker_get(t, id))
        return;
    raft_majority_del(&t->voters.in, id);
    raft_majority_del(&t->learners, id);
    if (!raft_majority_has(&t->voters.out, id))
        raft_tracker_remove(t, id);
}

ms_err raft_conf_apply(struct raft_tracker *t, const struct raft_conf_change *cc,
                       uint64_t last_index)
{
    if (cc->node_id == RAFT_NONE) /* etcd skips node 0 silently */
        return MS_OK;
    if (t->voters.out.n != 0)
        return MS_E_BAD_REQUEST;
    bool known = raft_tracker_get(t, cc->node_id) != NULL;
    switch (cc->type) {
    case RAFT_CC_ADD_NODE:
    case RAFT_CC_ADD_LEARNER:
        if (!known && t->n >= RAFT_MAX_NODES)
            return MS_E_BAD_REQUEST;
        /* Demoting the last voter would leave no voter. */
        if (cc->type == RAFT_CC_ADD_LEARNER && t->voters.in.n == 1 &&
            t->voters.in.ids[0] == cc->node_id)
            return MS_E_BAD_REQUEST;
        if (cc->type == RAFT_CC_ADD_NODE)
            make_voter(t, cc->node_id, last_index);
        else
            make_learner(t, cc->node_id, last_index);
        return MS_OK;
    case RAFT_CC_REMOVE_NODE:
        if (t->voters.in.n == 1 && t->voters.in.ids[0] == cc->node_id)
            return MS_E_BAD_REQUEST; /* "removed all voters" */
        remove_node(t, cc->node_id);
        return MS_OK;
    case RAFT_CC_UPDATE_NODE:
        return MS_OK;
    }
    return MS_E_BAD_REQUEST;
}

bool raft_conf_state_valid(const struct raft_conf_state *cs)
{
    if (cs->n_voters > RAFT_MAX_NODES || cs->n_learners > RAFT_MAX_NODES ||
        cs->n_voters + cs->n_learners > RAFT_MAX_NODES)
        return false;
    for (size_t i = 0; i < cs->n_voters; i++)
        if (cs->voters[i] == RAFT_NONE || (i > 0 && cs->voters[i] <= cs->voters[i - 1]))
            return false;
    for (size_t i = 0; i < cs->n_learners; i++) {
        if (cs->learners[i] == RAFT_NONE || (i > 0 && cs->learners[i] <= cs->learners[i - 1]))
            return false;
        if (raft_conf_has(cs, cs->learners[i], false))
            return false;
    }
    return true;
}

ms_err raft_conf_restore(struct raft_tracker *t, const struct raft_conf_state *cs,
                         uint64_t last_index)
{
    if (!raft_conf_state_valid(cs))
        return MS_E_BAD_REQUEST;
    size_t max_inflight = t->max_inflight;
    uint64_t max_bytes = t->max_inflight_bytes;
    raft_tracker_fini(t);
    raft_tracker_init(t, max_inflight, max_bytes);
    for (size_t i = 0; i < cs->n_voters; i++)
        make_voter(t, cs->voters[i], last_index);
    for (size_t i = 0; i < cs->n_learners; i++)
        make_learner(t, cs->learners[i], last_index);
    return MS_OK;
}

void raft_conf_state_of(const struct raft_tracker *t, struct raft_conf_state *out)
{
    memset(out, 0, sizeof(*out));
    out->n_voters = t->voters.in.n;
    memcpy(out->voters, t->voters.in.ids, t->voters.in.n * sizeof(out->voters[0]));
    out->n_learners = t->learners.n;
    memcpy(out->learners, t->learners.ids, t->learners.n * sizeof(out->learners[0]));
}
