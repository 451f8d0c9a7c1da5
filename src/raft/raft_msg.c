/* raft_msg.c - entries and messages as owned values: copies, vectors, names.
 *
 * Inside the core every entry owns a malloc'ed copy of its data and every queued message owns
 * its entries array, so nothing the core holds ever points into caller memory. Allocation
 * failure aborts (raft.h explains why).
 */
#include "raft_int.h"

#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

void *raft_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        ms_fatal("raft: out of memory (%zu bytes)", n);
    return p;
}

void *raft_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        ms_fatal("raft: out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *raft_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        ms_fatal("raft: out of memory (%zu bytes)", n);
    return q;
}

/* Grow a vector of elem-sized items so that it holds at least need. */
static void *grow(void *v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return v;
    size_t c = *cap ? *cap : 4;
    while (c < need)
        c *= 2;
    *cap = c;
    return raft_xrealloc(v, c * elem);
}

void raft_entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    if (src->len == 0) {
        dst->data = NULL;
        return;
    }
    uint8_t *d = raft_xmalloc(src->len);
    memcpy(d, src->data, src->len);
    dst->data = d;
}

void raft_entry_fini(struct raft_entry *e)
{
    /* data was allocated by raft_entry_copy; the const in the public struct is for readers. */
    free((void *)(uintptr_t)e->data);
    e->data = NULL;
    e->len = 0;
}

void raft_ents_push_copy(struct raft_ents *a, const struct raft_entry *e)
{
    a->v = grow(a->v, &a->cap, a->n + 1, sizeof(*a->v));
    raft_entry_copy(&a->v[a->n++], e);
}

void raft_ents_truncate(struct raft_ents *a, size_t n)
{
    while (a->n > n)
        raft_entry_fini(&a->v[--a->n]);
}

void raft_ents_drop_front(struct raft_ents *a, size_t k)
{
    if (k > a->n)
        k = a->n;
    if (k == 0)
        return;
    for (size_t i = 0; i < k; i++)
        raft_entry_fini(&a->v[i]);
    memmove(a->v, a->v + k, (a->n - k) * sizeof(*a->v));
    a->n -= k;
}

void raft_ents_fini(struct raft_ents *a)
{
    raft_ents_truncate(a, 0);
    free(a->v);
    a->v = NULL;
    a->cap = 0;
}

void raft_ents_steal(struct raft_ents *a, struct raft_entry **v, size_t *n)
{
    *v = a->v;
    *n = a->n;
    a->v = NULL;
    a->n = 0;
    a->cap = 0;
}

uint64_t raft_ents_payload(const struct raft_entry *v, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i].len;
    return s;
}

uint64_t raft_ents_size(const struct raft_entry *v, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += raft_entry_size(&v[i]);
    return s;
}

void raft_msg_free(struct raft_msg *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        raft_entry_fini(&m->entries[i]);
    free(m->entries);
    memset(m, 0, sizeof(*m));
}

void raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    *dst = *src;
    dst->entries = NULL;
    if (src->n_entries) {
        dst->entries = raft_xmalloc(src->n_entries * sizeof(*dst->entries));
        for (size_t i = 0; i < src->n_entries; i++)
            raft_entry_copy(&dst->entries[i], &src->entries[i]);
    }
}

void raft_msgs_push(struct raft_msgs *q, const struct raft_msg *m)
{
    q->v = grow(q->v, &q->cap, q->n + 1, sizeof(*q->v));
    q->v[q->n++] = *m;
}

void raft_msgs_clear(struct raft_msgs *q)
{
    for (size_t i = 0; i < q->n; i++)
        raft_msg_free(&q->v[i]);
    q->n = 0;
}

void raft_msgs_fini(struct raft_msgs *q)
{
    raft_msgs_clear(q);
    free(q->v);
    q->v = NULL;
    q->cap = 0;
}

void raft_read_states_push(struct raft_read_states *v, uint64_t index, uint64_t ctx)
{
    v->v = grow(v->v, &v->cap, v->n + 1, sizeof(*v->v));
    v->v[v->n].index = index;
    v->v[v->n].ctx = ctx;
    v->n++;
}

static const char *const msg_names[RAFT_MSG_TYPE_COUNT_] = {
    [RAFT_MSG_HUP] = "MsgHup",
    [RAFT_MSG_BEAT] = "MsgBeat",
    [RAFT_MSG_PROP] = "MsgProp",
    [RAFT_MSG_APP] = "MsgApp",
    [RAFT_MSG_APP_RESP] = "MsgAppResp",
    [RAFT_MSG_VOTE] = "MsgVote",
    [RAFT_MSG_VOTE_RESP] = "MsgVoteResp",
    [RAFT_MSG_SNAP] = "MsgSnap",
    [RAFT_MSG_HEARTBEAT] = "MsgHeartbeat",
    [RAFT_MSG_HEARTBEAT_RESP] = "MsgHeartbeatResp",
    [RAFT_MSG_UNREACHABLE] = "MsgUnreachable",
    [RAFT_MSG_SNAP_STATUS] = "MsgSnapStatus",
    [RAFT_MSG_CHECK_QUORUM] = "MsgCheckQuorum",
    [RAFT_MSG_TRANSFER_LEADER] = "MsgTransferLeader",
    [RAFT_MSG_TIMEOUT_NOW] = "MsgTimeoutNow",
    [RAFT_MSG_READ_INDEX] = "MsgReadIndex",
    [RAFT_MSG_READ_INDEX_RESP] = "MsgReadIndexResp",
    [RAFT_MSG_PRE_VOTE] = "MsgPreVote",
    [RAFT_MSG_PRE_VOTE_RESP] = "MsgPreVoteResp",
};

const char *raft_msg_type_name(enum raft_msg_type t)
{
    if ((unsigned)t >= RAFT_MSG_TYPE_COUNT_)
        return "MsgUnknown";
    return msg_names[t];
}

bool raft_msg_type_is_local(enum raft_msg_type t)
{
    return t == RAFT_MSG_HUP || t == RAFT_MSG_BEAT || t == RAFT_MSG_UNREACHABLE ||
           t == RAFT_MSG_SNAP_STATUS || t == RAFT_MSG_CHECK_QUORUM;
}

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "StateFollower";
    case RAFT_CANDIDATE:
        return "StateCandidate";
    case RAFT_LEADER:
        return "StateLeader";
    case RAFT_PRE_CANDIDATE:
        return "StatePreCandidate";
    }
    return "StateUnknown";
}

const char *raft_progress_state_name(enum raft_progress_state s)
{
    switch (s) {
    case RAFT_PROGRESS_PROBE:
        return "StateProbe";
    case RAFT_PROGRESS_REPLICATE:
        return "StateReplicate";
    case RAFT_PROGRESS_SNAPSHOT:
        return "StateSnapshot";
    }
    return "StateUnknown";
}

bool raft_err_is_dropped(ms_err e)
{
    return e == MS_E_NO_LEADER || e == MS_E_NOT_LEADER || e == MS_E_LEADER_CHANGED ||
           e == MS_E_TOO_MANY_REQUESTS;
}

bool raft_conf_has(const struct raft_conf_state *cs, uint64_t id, bool learners)
{
    for (size_t i = 0; i < cs->n_voters; i++)
        if (cs->voters[i] == id)
            return true;
    if (learners)
        for (size_t i = 0; i < cs->n_learners; i++)
            if (cs->learners[i] == id)
                return true;
    return false;
}
