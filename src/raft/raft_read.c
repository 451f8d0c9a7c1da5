/* raft_read.c - ReadIndex requests waiting for leadership confirmation (etcd read_only.go).
 *
 * Each request records the commit index when it arrived and gets a position; heartbeats carry
 * the highest pending position as their context, and a voter's ack of position p confirms every
 * request up to p. Once a quorum acked up to p, requests up to p are answered with their
 * recorded index. The queue lives only for one leader term (reset on every term change).
 */
#include "raft_int.h"

#include <stdlib.h>
#include <string.h>

void raft_readonly_init(struct raft_readonly *ro, enum raft_read_only option)
{
    memset(ro, 0, sizeof(*ro));
    ro->option = option;
}

void raft_readonly_fini(struct raft_readonly *ro)
{
    free(ro->q);
    ro->q = NULL;
}

void raft_readonly_reset(struct raft_readonly *ro)
{
    ro->n_acks = 0;
    ro->head = 0;
    ro->n = 0;
    ro->confirmed = 0;
}

void raft_readonly_add(struct raft_readonly *ro, uint64_t commit, uint64_t from, uint64_t ctx)
{
    if (ro->head > 0 && ro->head == ro->n) {
        ro->head = 0;
        ro->n = 0;
    }
    if (ro->n == ro->cap) {
        /* Compact before growing. */
        if (ro->head > 0) {
            memmove(ro->q, ro->q + ro->head, (ro->n - ro->head) * sizeof(*ro->q));
            ro->n -= ro->head;
            ro->head = 0;
        }
        if (ro->n == ro->cap) {
            ro->cap = ro->cap ? ro->cap * 2 : 8;
            ro->q = raft_xrealloc(ro->q, ro->cap * sizeof(*ro->q));
        }
    }
    ro->q[ro->n].from = from;
    ro->q[ro->n].ctx = ctx;
    ro->q[ro->n].index = commit;
    ro->n++;
}

void raft_readonly_recv_ack(struct raft_readonly *ro, uint64_t from, uint64_t round)
{
    if (round == 0)
        return;
    for (size_t i = 0; i < ro->n_acks; i++) {
        if (ro->acks[i].id == from) {
            if (ro->acks[i].round < round)
                ro->acks[i].round = round;
            return;
        }
    }
    if (ro->n_acks < RAFT_MAX_NODES) {
        ro->acks[ro->n_acks].id = from;
        ro->acks[ro->n_acks].round = round;
        ro->n_acks++;
    }
}

uint64_t raft_readonly_ctx(const struct raft_readonly *ro)
{
    size_t pending = ro->n - ro->head;
    if (pending == 0)
        return 0;
    return ro->confirmed + pending;
}

static bool ack_round(void *arg, uint64_t id, uint64_t *index)
{
    const struct raft_readonly *ro = arg;
    for (size_t i = 0; i < ro->n_acks; i++) {
        if (ro->acks[i].id == id) {
            *index = ro->acks[i].round;
            return true;
        }
    }
    return false;
}

size_t raft_readonly_advance(struct raft_readonly *ro, const struct raft_joint *voters,
                             struct raft_read_req **out)
{
    *out = NULL;
    uint64_t confirmed = raft_joint_committed(voters, ack_round, ro);
    if (confirmed <= ro->confirmed)
        return 0;
    size_t pending = ro->n - ro->head;
    uint64_t k64 = confirmed - ro->confirmed;
    size_t k = k64 < pending ? (size_t)k64 : pending;
    if (k == 0)
        return 0;
    *out = raft_xmalloc(k * sizeof(**out));
    memcpy(*out, ro->q + ro->head, k * sizeof(**out));
    ro->head += k;
    ro->confirmed += k;
    return k;
}
