/* raft_progress.c - per-peer replication progress, flow control and quorum arithmetic.
 *
 * Port of etcd-io/raft tracker/progress.go, tracker/inflights.go, tracker/tracker.go and
 * quorum/{majority,joint}.go. Progress invariant: match < next. In StateSnapshot a peer is
 * always paused; in StateReplicate it is paused while its Inflights window is full; in
 * StateProbe after one MsgApp until the answer (or a heartbeat response) arrives. Sets are small
 * sorted arrays (at most RAFT_MAX_NODES), so lookups are linear scans.
 */
#include "raft_int.h"

#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

/* ---- inflights ---- */

void raft_inflights_init(struct raft_inflights *in, size_t size, uint64_t max_bytes)
{
    memset(in, 0, sizeof(*in));
    in->size = size;
    in->max_bytes = max_bytes;
}

void raft_inflights_fini(struct raft_inflights *in)
{
    free(in->buf);
    in->buf = NULL;
    in->cap = 0;
}

/* Grow the ring (only ever when it is contiguous from 0 up to cap, see add). */
static void inflights_grow(struct raft_inflights *in)
{
    size_t c = in->cap ? in->cap * 2 : 1;
    if (c > in->size)
        c = in->size;
    in->buf = raft_xrealloc(in->buf, c * sizeof(*in->buf));
    in->cap = c;
}

void raft_inflights_add(struct raft_inflights *in, uint64_t index, uint64_t bytes)
{
    MS_ASSERT(!raft_inflights_full(in));
    size_t next = in->start + in->count;
    if (next >= in->size)
        next -= in->size;
    if (next >= in->cap)
        inflights_grow(in);
    in->buf[next].index = index;
    in->buf[next].bytes = bytes;
    in->count++;
    in->bytes += bytes;
}

void raft_inflights_free_le(struct raft_inflights *in, uint64_t to)
{
    if (in->count == 0 || to < in->buf[in->start].index)
        return;
    size_t idx = in->start;
    size_t i;
    uint64_t bytes = 0;
    for (i = 0; i < in->count; i++) {
        if (to < in->buf[idx].index)
            break;
        bytes += in->buf[idx].bytes;
        if (++idx >= in->size)
            idx -= in->size;
    }
    in->count -= i;
    in->bytes -= bytes;
    in->start = idx;
    if (in->count == 0)
        in->start = 0;
}

bool raft_inflights_full(const struct raft_inflights *in)
{
    return in->count == in->size || (in->max_bytes != 0 && in->bytes >= in->max_bytes);
}

void raft_inflights_reset(struct raft_inflights *in)
{
    in->start = 0;
    in->count = 0;
    in->bytes = 0;
}

/* ---- progress ---- */

static void pr_reset_state(struct raft_progress *pr, enum raft_progress_state st)
{
    pr->flow_paused = false;
    pr->pending_snapshot = 0;
    pr->state = st;
    raft_inflights_reset(&pr->inf);
}

static void pr_clamp_sent_commit(struct raft_progress *pr)
{
    if (pr->sent_commit > pr->next - 1)
        pr->sent_commit = pr->next - 1;
}

void raft_pr_become_probe(struct raft_progress *pr)
{
    /* Coming back from a snapshot, probe from the snapshot index if it is higher: the peer
     * presumably applied it (etcd BecomeProbe). */
    if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
        uint64_t pending = pr->pending_snapshot;
        pr_reset_state(pr, RAFT_PROGRESS_PROBE);
        pr->next = pr->match + 1 > pending + 1 ? pr->match + 1 : pending + 1;
    } else {
        pr_reset_state(pr, RAFT_PROGRESS_PROBE);
        pr->next = pr->match + 1;
    }
    pr_clamp_sent_commit(pr);
}

void raft_pr_become_replicate(struct raft_progress *pr)
{
    pr_reset_state(pr, RAFT_PROGRESS_REPLICATE);
    pr->next = pr->match + 1;
}

void raft_pr_become_snapshot(struct raft_progress *pr, uint64_t snap_index)
{
    pr_reset_state(pr, RAFT_PROGRESS_SNAPSHOT);
    pr->pending_snapshot = snap_index;
    pr->next = snap_index + 1;
    pr->sent_commit = snap_index;
}

void raft_pr_sent_entries(struct raft_progress *pr, size_t n, uint64_t bytes)
{
    switch (pr->state) {
    case RAFT_PROGRESS_REPLICATE:
        if (n > 0) {
            pr->next += n;
            raft_inflights_add(&pr->inf, pr->next - 1, bytes);
        }
        pr->flow_paused = raft_inflights_full(&pr->inf);
        break;
    case RAFT_PROGRESS_PROBE:
        if (n > 0)
            pr->flow_paused = true;
        break;
    case RAFT_PROGRESS_SNAPSHOT:
        MS_ASSERT(!"sending append in StateSnapshot");
    }
}

bool raft_pr_can_bump_commit(const struct raft_progress *pr, uint64_t index)
{
    return index > pr->sent_commit && pr->sent_commit < pr->next - 1;
}

bool raft_pr_maybe_update(struct raft_progress *pr, uint64_t n)
{
    if (n <= pr->match)
        return false;
    pr->match = n;
    if (pr->next < n + 1)
        pr->next = n + 1;
    pr->flow_paused = false;
    return true;
}

bool raft_pr_maybe_decr_to(struct raft_progress *pr, uint64_t rejected, uint64_t match_hint)
{
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        /* A rejection at or below match is stale (reordered). Otherwise the optimistic window
         * broke: restart from match + 1. */
        if (rejected <= pr->match)
            return false;
        pr->next = pr->match + 1;
        pr_clamp_sent_commit(pr);
        return true;
    }
    /* In probe state only the answer to the latest probe (at next - 1) counts. */
    if (pr->next - 1 != rejected)
        return false;
    uint64_t n = rejected < match_hint + 1 ? rejected : match_hint + 1;
    pr->next = n > pr->match + 1 ? n : pr->match + 1;
    pr_clamp_sent_commit(pr);
    pr->flow_paused = false;
    return true;
}

bool raft_pr_is_paused(const struct raft_progress *pr)
{
    switch (pr->state) {
    case RAFT_PROGRESS_PROBE:
    case RAFT_PROGRESS_REPLICATE:
        return pr->flow_paused;
    case RAFT_PROGRESS_SNAPSHOT:
        return true;
    }
    return true;
}

/* ---- quorum ---- */

bool raft_majority_has(const struct raft_majority *c, uint64_t id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->ids[i] == id)
            return true;
    return false;
}

void raft_majority_add(struct raft_majority *c, uint64_t id)
{
    if (raft_majority_has(c, id))
        return;
    MS_ASSERT(c->n < RAFT_MAX_NODES);
    size_t i = c->n;
    while (i > 0 && c->ids[i - 1] > id) {
        c->ids[i] = c->ids[i - 1];
        i--;
    }
    c->ids[i] = id;
    c->n++;
}

void raft_majority_del(struct raft_majority *c, uint64_t id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->ids[i] == id) {
            memmove(&c->ids[i], &c->ids[i + 1], (c->n - i - 1) * sizeof(c->ids[0]));
            c->n--;
            return;
        }
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t raft_majority_committed(const struct raft_majority *c, raft_acked_fn fn, void *arg)
{
    size_t n = c->n;
    if (n == 0)
        return UINT64_MAX; /* the empty config commits everything (joint min ignores it) */
    uint64_t srt[RAFT_MAX_NODES];
    /* Voters with no acked index count as 0. */
    for (size_t i = 0; i < n; i++) {
        uint64_t idx = 0;
        if (!fn(arg, c->ids[i], &idx))
            idx = 0;
        srt[i] = idx;
    }
    qsort(srt, n, sizeof(srt[0]), cmp_u64);
    /* The highest index that a majority (n/2 + 1) has reached. */
    return srt[n - (n / 2 + 1)];
}

uint64_t raft_joint_committed(const struct raft_joint *c, raft_acked_fn fn, void *arg)
{
    uint64_t a = raft_majority_committed(&c->in, fn, arg);
    uint64_t b = raft_majority_committed(&c->out, fn, arg);
    return a < b ? a : b;
}

bool raft_joint_has(const struct raft_joint *c, uint64_t id)
{
    return raft_majority_has(&c->in, id) || raft_majority_has(&c->out, id);
}

/* Vote lookup: 1 granted, 0 rejected, -1 missing. */
static int vote_of(const struct raft_tracker *t, uint64_t id)
{
    for (size_t i = 0; i < t->n_votes; i++)
        if (t->votes[i].id == id)
            return t->votes[i].granted ? 1 : 0;
    return -1;
}

static enum raft_vote_result majority_vote(const struct raft_majority *c,
                                           const struct raft_tracker *t)
{
    if (c->n == 0)
        return RAFT_VOTE_WON;
    size_t yes = 0, missing = 0;
    for (size_t i = 0; i < c->n; i++) {
        int v = vote_of(t, c->ids[i]);
        if (v < 0)
            missing++;
        else if (v > 0)
            yes++;
    }
    size_t q = c->n / 2 + 1;
    if (yes >= q)
        return RAFT_VOTE_WON;
    if (yes + missing >= q)
        return RAFT_VOTE_PENDING;
    return RAFT_VOTE_LOST;
}

static enum raft_vote_result joint_vote(const struct raft_joint *c, const struct raft_tracker *t)
{
    enum raft_vote_result a = majority_vote(&c->in, t);
    enum raft_vote_result b = majority_vote(&c->out, t);
    if (a == b)
        return a;
    if (a == RAFT_VOTE_LOST || b == RAFT_VOTE_LOST)
        return RAFT_VOTE_LOST;
    return RAFT_VOTE_PENDING;
}

/* ---- tracker ---- */

void raft_tracker_init(struct raft_tracker *t, size_t max_inflight, uint64_t max_inflight_bytes)
{
    memset(t, 0, sizeof(*t));
    t->max_inflight = max_inflight;
    t->max_inflight_bytes = max_inflight_bytes;
}

void raft_tracker_fini(struct raft_tracker *t)
{
    for (size_t i = 0; i < t->n; i++)
        raft_inflights_fini(&t->prs[i].inf);
    t->n = 0;
}

struct raft_progress *raft_tracker_get(struct raft_tracker *t, uint64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->prs[i].id == id)
            return &t->prs[i];
    return NULL;
}

const struct raft_progress *raft_tracker_cget(const struct raft_tracker *t, uint64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->prs[i].id == id)
            return &t->prs[i];
    return NULL;
}

struct raft_progress *raft_tracker_insert(struct raft_tracker *t, uint64_t id, uint64_t next,
                                          bool learner)
{
    MS_ASSERT(t->n < RAFT_MAX_NODES && !raft_tracker_get(t, id));
    size_t i = t->n;
    while (i > 0 && t->prs[i - 1].id > id) {
        t->prs[i] = t->prs[i - 1];
        i--;
    }
    struct raft_progress *pr = &t->prs[i];
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->next = next;
    pr->learner = learner;
    /* A new peer counts as active so that CheckQuorum does not depose the leader before the
     * peer had a chance to answer (etcd confchange initProgress). */
    pr->recent_active = true;
    raft_inflights_init(&pr->inf, t->max_inflight, t->max_inflight_bytes);
    t->n++;
    return pr;
}

void raft_tracker_remove(struct raft_tracker *t, uint64_t id)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->prs[i].id == id) {
            raft_inflights_fini(&t->prs[i].inf);
            memmove(&t->prs[i], &t->prs[i + 1], (t->n - i - 1) * sizeof(t->prs[0]));
            t->n--;
            return;
        }
    }
}

static bool match_acked(void *arg, uint64_t id, uint64_t *index)
{
    const struct raft_progress *pr = raft_tracker_cget(arg, id);
    if (!pr)
        return false;
    *index = pr->match;
    return true;
}

uint64_t raft_tracker_committed(const struct raft_tracker *t)
{
    return raft_joint_committed(&t->voters, match_acked, (void *)(uintptr_t)t);
}

bool raft_tracker_quorum_active(const struct raft_tracker *t)
{
    /* Reuse the vote machinery: an active voter is a "yes". */
    struct raft_tracker tmp;
    tmp.voters = t->voters;
    tmp.n_votes = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->prs[i].learner)
            continue;
        tmp.votes[tmp.n_votes].id = t->prs[i].id;
        tmp.votes[tmp.n_votes].granted = t->prs[i].recent_active;
        tmp.n_votes++;
    }
    return joint_vote(&t->voters, &tmp) == RAFT_VOTE_WON;
}

bool raft_tracker_is_singleton(const struct raft_tracker *t)
{
    return t->voters.in.n == 1 && t->voters.out.n == 0;
}

void raft_tracker_reset_votes(struct raft_tracker *t)
{
    t->n_votes = 0;
}

void raft_tracker_record_vote(struct raft_tracker *t, uint64_t id, bool granted)
{
    if (vote_of(t, id) >= 0 || !raft_joint_has(&t->voters, id))
        return;
    MS_ASSERT(t->n_votes < RAFT_MAX_NODES);
    t->votes[t->n_votes].id = id;
    t->votes[t->n_votes].granted = granted;
    t->n_votes++;
}

enum raft_vote_result raft_tracker_tally(const struct raft_tracker *t)
{
    return joint_vote(&t->voters, t);
}

size_t raft_tracker_voter_ids(const struct raft_tracker *t, uint64_t *out)
{
    struct raft_majority all = t->voters.in;
    for (size_t i = 0; i < t->voters.out.n; i++)
        raft_majority_add(&all, t->voters.out.ids[i]);
    memcpy(out, all.ids, all.n * sizeof(out[0]));
    return all.n;
}
