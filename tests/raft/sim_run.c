/* sim_run.c - the simulator's scheduler, fault injection, workload and phases.
 *
 * A run: bootstrap 3 or 5 voters; a chaos phase (opts.chaos_ms) with faults drawn from the
 * seed's knobs; then the heal phase: the network heals, every member restarts, clients pause,
 * leadership is transferred once and a probe read then write must succeed within
 * opts.heal_ms (liveness); finally the members must converge and the client history must be
 * linearizable.
 */
#include "sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- randomness ---- */

uint64_t sim_rand(struct sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sim_range(struct sim *s, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + sim_rand(s) % (hi - lo + 1);
}

bool sim_chance(struct sim *s, unsigned per_mille)
{
    return per_mille && sim_rand(s) % 1000 < per_mille;
}

/* ---- trace ---- */

static void trace_line(struct sim *s, const char *line)
{
    if (s->opts.verbose)
        fprintf(stderr, "%s\n", line);
    size_t slot = (s->trace_head + s->trace_n) % SIM_TRACE_LINES;
    if (s->trace_n == SIM_TRACE_LINES) {
        slot = s->trace_head;
        s->trace_head = (s->trace_head + 1) % SIM_TRACE_LINES;
    } else {
        s->trace_n++;
    }
    free(s->trace[slot]);
    s->trace[slot] = strdup(line);
}

void sim_trace(struct sim *s, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char line[640];
    snprintf(line, sizeof(line), "t=%llu %s", (unsigned long long)s->now, msg);
    trace_line(s, line);
}

void sim_fail(struct sim *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    s->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->res->what, sizeof(s->res->what), fmt, ap);
    va_end(ap);
    sim_trace(s, "VIOLATION: %s", s->res->what);
}

/* ---- events ---- */

static bool ev_before(const struct sim_event *a, const struct sim_event *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

void sim_schedule(struct sim *s, uint64_t delay, enum sim_ev type, uint64_t node, uint64_t a,
                  uint64_t b, void *p)
{
    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? s->capheap * 2 : 1024;
        s->heap = realloc(s->heap, s->capheap * sizeof(*s->heap));
        if (!s->heap)
            abort();
    }
    struct sim_event ev = {.time = s->now + delay,
                           .seq = s->seq++,
                           .type = type,
                           .node = node,
                           .a = a,
                           .b = b,
                           .p = p};
    size_t i = s->nheap++;
    while (i > 0 && ev_before(&ev, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = ev;
}

static struct sim_event pop_event(struct sim *s)
{
    struct sim_event top = s->heap[0];
    struct sim_event last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && ev_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

static void free_event(struct sim_event *ev)
{
    if (ev->type == EV_DELIVER) {
        struct sim_packet *pk = ev->p;
        free(pk->bytes);
        free(pk->blob);
        free(pk);
    }
}

/* ---- cluster helpers ---- */

/* The up leader with the highest term, or 0. */
static uint64_t find_leader(struct sim *s, struct raft_status *out)
{
    uint64_t best = 0, best_term = 0;
    for (uint64_t id = 1; id <= SIM_MAX_IDS; id++) {
        if (!sim_node_serving(s, id))
            continue;
        struct raft_status st;
        raft_status(s->nodes[id].r, &st);
        if (st.soft.role == RAFT_LEADER && st.hard.term >= best_term) {
            best = id;
            best_term = st.hard.term;
            if (out)
                *out = st;
        }
    }
    return best;
}

static uint64_t random_member(struct sim *s, bool must_be_up)
{
    uint64_t ids[SIM_MAX_IDS];
    size_t n = 0;
    for (uint64_t id = 1; id <= SIM_MAX_IDS; id++) {
        const struct sim_node *nd = &s->nodes[id];
        if (nd->started && !nd->retired && (!must_be_up || nd->up))
            ids[n++] = id;
    }
    return n ? ids[sim_range(s, 0, n - 1)] : 0;
}

/* ---- clients ---- */

static size_t new_op(struct sim *s, size_t client)
{
    if (s->nops == s->capops) {
        s->capops = s->capops ? s->capops * 2 : 256;
        s->ops = realloc(s->ops, s->capops * sizeof(*s->ops));
        if (!s->ops)
            abort();
    }
    size_t i = s->nops++;
    memset(&s->ops[i], 0, sizeof(s->ops[i]));
    s->ops[i].client = client;
    s->ops[i].id = i;
    s->ops[i].status = OP_PENDING;
    s->ops[i].lc.call = s->now;
    return i;
}

static const char *kind_name(enum lc_kind k)
{
    return k == LC_PUT ? "put" : k == LC_GET ? "get" : "cas";
}

void sim_op_done(struct sim *s, size_t op, enum sim_op_status st, uint64_t out)
{
    struct sim_op *o = &s->ops[op];
    if (o->status != OP_PENDING)
        return;
    o->status = st;
    o->lc.out = out;
    if (st == OP_UNKNOWN) {
        o->lc.unknown = true;
        o->lc.ret = LC_NEVER;
        s->res->ops_unknown++;
    } else {
        o->lc.ret = s->now;
        if (st == OP_OK)
            s->res->ops_ok++;
        else
            s->res->ops_failed++;
    }
    sim_node_forget(s, o->node, op);
    sim_trace(s, "op %zu %s k%u done: %s out=%llu", op, kind_name(o->lc.kind), o->lc.key,
              st == OP_OK       ? "ok"
              : st == OP_FAILED ? "failed"
                                : "unknown",
              (unsigned long long)out);
    if (o->probe) {
        s->probe_busy = false;
        if (st == OP_OK)
            s->probe_stage++;
        return;
    }
    struct sim_client *c = &s->clients[o->client];
    c->busy = false;
    if (o->client == SIM_CHASER)
        return;
    if (st == OP_OK && o->lc.kind == LC_GET)
        c->last_value[o->lc.key] = out;
    if (st == OP_OK && o->lc.kind != LC_GET && (o->lc.kind == LC_PUT || out))
        c->last_value[o->lc.key] = o->lc.arg;
    /* a refused request makes the client back off, as a real one reconnecting would */
    uint64_t think = st == OP_FAILED ? sim_range(s, 20, 200) : sim_range(s, 1, s->k.think_ms);
    sim_schedule(s, think, EV_CLIENT, 0, o->client, 0, NULL);
}

/* Send op to node id (or fail it at once if the node is not running). */
static void submit(struct sim *s, size_t op, uint64_t id, uint64_t timeout)
{
    struct sim_op *o = &s->ops[op];
    sim_trace(s, "op %zu %s k%u arg=%llu expect=%llu -> n%llu", op, kind_name(o->lc.kind),
              o->lc.key, (unsigned long long)o->lc.arg, (unsigned long long)o->lc.expect,
              (unsigned long long)id);
    sim_schedule(s, timeout, EV_CLIENT_TIMEOUT, 0, op, 0, NULL);
    if (id == 0 || !sim_node_serving(s, id)) {
        sim_op_done(s, op, OP_FAILED, 0); /* connection refused */
        return;
    }
    sim_node_submit(s, id, op);
    /* Sometimes the leader loses the network right after taking a write: it keeps an entry
     * nobody else has (half of the paper's Figure 8). */
    if (!s->healing && o->lc.kind != LC_GET && sim_chance(s, s->k.p_isolate_proposer)) {
        struct raft_status st;
        raft_status(s->nodes[id].r, &st);
        if (st.soft.role == RAFT_LEADER)
            sim_schedule(s, sim_range(s, 0, 3), EV_ISOLATE, id, s->nodes[id].incarnation, 0, NULL);
    }
}

static void client_next(struct sim *s, size_t c)
{
    struct sim_client *cl = &s->clients[c];
    if (cl->busy || s->quiesced || s->now >= s->clients_stop)
        return;
    cl->busy = true;
    size_t op = new_op(s, c);
    struct sim_op *o = &s->ops[op];
    cl->op = op;
    o->lc.key = (uint32_t)sim_range(s, 0, SIM_KEYS - 1);
    uint64_t r = sim_range(s, 0, 99);
    o->lc.kind = r < 40 ? LC_PUT : r < 75 ? LC_GET : LC_CAS;
    o->lc.arg = op + 1; /* unique values */
    o->lc.expect = sim_chance(s, 800) ? cl->last_value[o->lc.key] : sim_range(s, 0, op);
    uint64_t target = random_member(s, false);
    if (sim_chance(s, 600)) {
        uint64_t l = find_leader(s, NULL);
        if (l)
            target = l;
    }
    submit(s, op, target, sim_range(s, 1500, 3000));
}

static void client_read_at(struct sim *s, size_t c, uint64_t id)
{
    struct sim_client *cl = &s->clients[c];
    if (s->now >= s->clients_stop)
        return;
    cl->busy = true;
    size_t op = new_op(s, c);
    cl->op = op;
    s->ops[op].lc.key = (uint32_t)sim_range(s, 0, SIM_KEYS - 1);
    s->ops[op].lc.kind = LC_GET;
    submit(s, op, id, sim_range(s, 1500, 3000));
}

static void client_timeout(struct sim *s, size_t op)
{
    if (s->ops[op].status == OP_PENDING)
        sim_op_done(s, op, OP_UNKNOWN, 0);
}

/* ---- faults ---- */

/* Cut node x off from everyone (replacing any other partition) for a while. */
static void isolate(struct sim *s, uint64_t x)
{
    memset(s->cut, 0, sizeof(s->cut));
    for (uint64_t id = 1; id <= SIM_MAX_IDS; id++)
        s->cut[x][id] = s->cut[id][x] = id != x;
    sim_trace(s, "partition: n%llu isolated", (unsigned long long)x);
    sim_schedule(s, sim_range(s, 300, 4000), EV_HEAL_LINKS, 0, ++s->partition_epoch, 0, NULL);
}

static void partition(struct sim *s)
{
    uint64_t ids[SIM_MAX_IDS];
    size_t n = 0;
    for (uint64_t id = 1; id <= SIM_MAX_IDS; id++)
        if (s->nodes[id].started && !s->nodes[id].retired)
            ids[n++] = id;
    if (n < 2)
        return;
    memset(s->cut, 0, sizeof(s->cut));
    uint64_t kind = sim_range(s, 0, 3);
    if (kind == 0) {
        /* isolate one node, often the leader */
        uint64_t x = ids[sim_range(s, 0, n - 1)];
        uint64_t l = sim_chance(s, s->k.p_target_leader) ? find_leader(s, NULL) : 0;
        isolate(s, l ? l : x);
        return;
    } else if (kind == 1) {
        /* split into two random sides */
        bool side[SIM_MAX_IDS + 1] = {false};
        for (size_t i = 0; i < n; i++)
            side[ids[i]] = sim_chance(s, 500);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                s->cut[ids[i]][ids[j]] = side[ids[i]] != side[ids[j]];
        sim_trace(s, "partition: split");
    } else if (kind == 2) {
        /* one-way: a node's messages to others are lost, it still hears them */
        uint64_t x = ids[sim_range(s, 0, n - 1)];
        for (size_t i = 0; i < n; i++)
            s->cut[x][ids[i]] = ids[i] != x;
        sim_trace(s, "partition: n%llu cannot send", (unsigned long long)x);
    } else {
        /* bridge: two sides that only one node connects */
        uint64_t bridge = ids[sim_range(s, 0, n - 1)];
        bool side[SIM_MAX_IDS + 1] = {false};
        for (size_t i = 0; i < n; i++)
            side[ids[i]] = sim_chance(s, 500);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                s->cut[ids[i]][ids[j]] =
                    ids[i] != bridge && ids[j] != bridge && side[ids[i]] != side[ids[j]];
        sim_trace(s, "partition: bridged by n%llu", (unsigned long long)bridge);
    }
    sim_schedule(s, sim_range(s, 300, 4000), EV_HEAL_LINKS, 0, ++s->partition_epoch, 0, NULL);
}

static void fault(struct sim *s)
{
    if (s->healing)
        return;
    uint64_t r = sim_range(s, 0, 99);
    uint64_t id = random_member(s, true);
    if (r < 30 && id) {
        /* crash, and come back after a while */
        uint64_t l = sim_chance(s, s->k.p_target_leader) ? find_leader(s, NULL) : 0;
        if (l)
            id = l;
        sim_node_crash(s, id);
        sim_schedule(s, sim_range(s, 50, 4000), EV_RESTART, id, 0, 0, NULL);
    } else if (r < 45 && id) {
        sim_node_pause(s, id, sim_range(s, 100, 3000));
    } else if (r < 80) {
        partition(s);
    }
    sim_schedule(s, sim_range(s, s->k.fault_every / 2, s->k.fault_every * 3 / 2), EV_FAULT, 0, 0, 0,
                 NULL);
}

static void membership(struct sim *s)
{
    if (s->healing || !s->k.membership)
        return;
    sim_schedule(s, sim_range(s, 1000, 4000), EV_MEMBERSHIP, 0, 0, 0, NULL);
    struct raft_status st;
    uint64_t l = find_leader(s, &st);
    if (!l)
        return;
    const struct raft_conf_state *cs = &st.conf;
    struct raft_conf_change cc = {0};
    size_t members = cs->n_voters + cs->n_learners;
    uint64_t spare = 0;
    for (uint64_t id = 1; id <= SIM_MAX_IDS && !spare; id++)
        if (!s->removed[id] && !raft_conf_has(cs, id, true))
            spare = id;
    if (cs->n_learners && cs->n_voters < SIM_MAX_MEMBERS && sim_chance(s, 700)) {
        cc.type = RAFT_CC_ADD_NODE;
        cc.node_id = cs->learners[sim_range(s, 0, cs->n_learners - 1)];
    } else if (spare && members < SIM_MAX_MEMBERS && sim_chance(s, 600)) {
        cc.type = RAFT_CC_ADD_LEARNER;
        cc.node_id = spare;
        if (!s->nodes[spare].started)
            sim_node_start(s, spare, NULL, 0);
    } else if (cs->n_voters > 3) {
        cc.type = RAFT_CC_REMOVE_NODE;
        cc.node_id = cs->voters[sim_range(s, 0, cs->n_voters - 1)];
    } else if (cs->n_learners) {
        cc.type = RAFT_CC_REMOVE_NODE;
        cc.node_id = cs->learners[0];
    } else {
        return;
    }
    ms_err e = raft_propose_conf_change(s->nodes[l].r, &cc);
    sim_trace(s, "n%llu proposes conf change %d(%llu): %s", (unsigned long long)l, (int)cc.type,
              (unsigned long long)cc.node_id, ms_err_name(e));
}

static void transfer(struct sim *s, bool again)
{
    if (again && (s->healing || !s->k.transfers))
        return;
    if (again)
        sim_schedule(s, sim_range(s, 2000, 6000), EV_TRANSFER, 0, 1, 0, NULL);
    struct raft_status st;
    uint64_t l = find_leader(s, &st);
    if (!l || st.conf.n_voters < 2)
        return;
    size_t i = (size_t)sim_range(s, 0, st.conf.n_voters - 1);
    uint64_t to = st.conf.voters[i];
    if (to == l)
        to = st.conf.voters[(i + 1) % st.conf.n_voters];
    sim_trace(s, "n%llu transfers leadership to n%llu", (unsigned long long)l,
              (unsigned long long)to);
    raft_transfer_leader(s->nodes[l].r, to);
}

static void client_read_at(struct sim *s, size_t c, uint64_t id);

void sim_new_leader(struct sim *s, uint64_t id)
{
    /* Clients chase a new leader at once (as etcd clients retry on "not leader"): reads that
     * reach it before it committed in its term test the ReadIndex rule. */
    if (!s->healing && !s->clients[SIM_CHASER].busy && sim_chance(s, 800))
        client_read_at(s, SIM_CHASER, id);
    /* Leaders that die young leave the partly replicated logs of the paper's Figure 8. */
    if (!s->healing && sim_chance(s, s->k.p_isolate_new_leader))
        sim_schedule(s, sim_range(s, 0, 10), EV_ISOLATE, id, s->nodes[id].incarnation, 0, NULL);
    else if (!s->healing && sim_chance(s, s->k.p_kill_leader))
        sim_schedule(s, sim_range(s, 0, sim_chance(s, 500) ? 30 : 300), EV_KILL, id,
                     s->nodes[id].incarnation, 0, NULL);
}

/* ---- heal and liveness ---- */

static void heal(struct sim *s)
{
    s->healing = true;
    s->quiesced = true;
    s->heal_at = s->now;
    memset(s->cut, 0, sizeof(s->cut));
    s->k.p_drop = s->k.p_dup = s->k.p_corrupt = s->k.p_slow = s->k.p_crash_point = 0;
    for (uint64_t id = 1; id <= SIM_MAX_IDS; id++) {
        struct sim_node *n = &s->nodes[id];
        if (!n->started || n->retired)
            continue;
        if (n->up && n->paused)
            sim_node_resume(s, id);
        if (!n->up)
            sim_node_restart(s, id);
    }
    sim_trace(s, "heal: network whole, every member up, clients paused");
    /* A fresh leader must serve reads before any new write (catches a missing no-op). */
    sim_schedule(s, 3000, EV_TRANSFER, 0, 0, 0, NULL);
    sim_schedule(s, 5000, EV_PROBE, 0, 0, 0, NULL);
}

static void probe(struct sim *s)
{
    if (s->probe_stage >= 2) {
        s->quiesced = false;
        for (size_t c = 0; c < SIM_CHASER; c++)
            client_next(s, c);
        /* two more seconds of traffic, then two of quiet for everyone to catch up */
        s->clients_stop = s->now + 2000;
        s->end = s->now + 4000;
        return;
    }
    sim_schedule(s, 300, EV_PROBE, 0, 0, 0, NULL);
    if (s->probe_busy)
        return;
    uint64_t l = find_leader(s, NULL);
    if (!l)
        return;
    size_t op = new_op(s, 0);
    struct sim_op *o = &s->ops[op];
    o->probe = true;
    o->lc.key = 0;
    o->lc.kind = s->probe_stage == 0 ? LC_GET : LC_PUT;
    o->lc.arg = op + 1;
    s->probe_busy = true;
    submit(s, op, l, 2000);
}

/* ---- the run ---- */

static void draw_knobs(struct sim *s)
{
    struct sim_knobs *k = &s->k;
    /* Two seeds in five draw a "leader churn" profile: frequent faults aimed at leaders and
     * one-entry messages, the ground where the paper's Figure 8 grows. */
    bool churn = sim_chance(s, 400);
    s->churn = churn;
    /* Half of those chase Figure 8 directly: a leader is cut off right after taking a write,
     * its successor right after winning, with one entry per message. */
    bool fig8 = churn && sim_chance(s, 600);
    s->fig8 = fig8;
    k->voters = sim_chance(s, churn ? 800 : 500) ? 3 : 5;
    k->p_drop = (unsigned)sim_range(s, 0, 60);
    k->p_dup = (unsigned)sim_range(s, 0, 30);
    k->p_corrupt = (unsigned)sim_range(s, 0, 5);
    k->p_slow = (unsigned)sim_range(s, 0, 20);
    k->max_delay = sim_range(s, 1, 20);
    k->p_async = (unsigned)sim_range(s, 0, 90);
    k->max_sync = sim_range(s, 1, 30);
    k->p_crash_point = (unsigned)sim_range(s, 0, 8);
    k->p_kill_leader = churn                ? (unsigned)sim_range(s, 300, 900)
                       : sim_chance(s, 300) ? (unsigned)sim_range(s, 100, 700)
                                            : 0;
    k->fault_every = churn ? sim_range(s, 500, 1500) : sim_range(s, 300, 2500);
    k->p_target_leader = churn ? 800 : 400;
    k->p_isolate_new_leader = fig8    ? (unsigned)sim_range(s, 500, 900)
                              : churn ? (unsigned)sim_range(s, 200, 600)
                                      : 0;
    k->p_isolate_proposer = fig8    ? (unsigned)sim_range(s, 100, 300)
                            : churn ? (unsigned)sim_range(s, 5, 40)
                                    : 0;
    k->max_size_per_msg = sim_chance(s, churn ? 800 : 300) ? 0
                          : sim_chance(s, 500)             ? 200
                                                           : 1u << 20;
    k->max_inflight = sim_chance(s, 300) ? sim_range(s, 1, 4) : 256;
    k->snapshot_every = sim_range(s, 10, 120);
    k->catchup_keep = sim_range(s, 0, 20);
    k->membership = sim_chance(s, 600);
    k->transfers = sim_chance(s, 600);
    k->think_ms = (unsigned)sim_range(s, 0, 60);
    k->p_isolate_acker = churn ? (unsigned)sim_range(s, 20, 150) : 0;
    if (fig8) {
        k->voters = 3;
        k->max_size_per_msg = 0;
        k->fault_every = sim_range(s, 1500, 4000);
    }
    /* Half the seeds apply a share of their Readies in the server's order (committed entries
     * before the Ready's own persisting). Drawn from the seed beside the main stream, so that
     * the other half run exactly as they did before this knob existed. */
    uint64_t main_rng = s->rng;
    s->rng = s->opts.seed * 0x9e3779b97f4a7c15ull + 0x5eed;
    k->p_apply_early = sim_chance(s, 500) ? (unsigned)sim_range(s, 20, 100) : 0;
    s->rng = main_rng;
}

static void handle(struct sim *s, struct sim_event *ev)
{
    switch (ev->type) {
    case EV_TICK:
        sim_node_tick(s, ev->node, ev->a);
        break;
    case EV_DELIVER:
        sim_node_deliver(s, ev->p);
        break;
    case EV_SYNC:
        sim_node_sync_done(s, ev->node, ev->a);
        break;
    case EV_CLIENT:
        client_next(s, (size_t)ev->a);
        break;
    case EV_CLIENT_TIMEOUT:
        client_timeout(s, (size_t)ev->a);
        break;
    case EV_RESTART:
        if (!s->healing)
            sim_node_restart(s, ev->node);
        break;
    case EV_RESUME:
        if (s->nodes[ev->node].incarnation == ev->a)
            sim_node_resume(s, ev->node);
        break;
    case EV_FAULT:
        fault(s);
        break;
    case EV_HEAL_LINKS:
        /* only the latest partition heals on its own timer */
        if (!s->healing && ev->a == s->partition_epoch) {
            memset(s->cut, 0, sizeof(s->cut));
            sim_trace(s, "links healed");
        }
        break;
    case EV_MEMBERSHIP:
        membership(s);
        break;
    case EV_TRANSFER:
        transfer(s, ev->a != 0);
        break;
    case EV_HEAL:
        heal(s);
        break;
    case EV_PROBE:
        probe(s);
        break;
    case EV_ISOLATE:
        if (!s->healing && s->nodes[ev->node].incarnation == ev->a && s->nodes[ev->node].up)
            isolate(s, ev->node);
        break;
    case EV_KILL:
        if (!s->healing && s->nodes[ev->node].incarnation == ev->a && s->nodes[ev->node].up) {
            sim_node_crash(s, ev->node);
            sim_schedule(s, sim_range(s, 50, 1500), EV_RESTART, ev->node, 0, 0, NULL);
        }
        break;
    }
}

/* Every member still up must have applied the same prefix as the leader. */
static void check_converged(struct sim *s)
{
    struct raft_status lst;
    uint64_t l = find_leader(s, &lst);
    if (!l) {
        sim_fail(s, "Liveness: no leader at the end");
        return;
    }
    const struct sim_node *ln = &s->nodes[l];
    for (size_t i = 0; i < lst.conf.n_voters + lst.conf.n_learners; i++) {
        uint64_t id =
            i < lst.conf.n_voters ? lst.conf.voters[i] : lst.conf.learners[i - lst.conf.n_voters];
        const struct sim_node *n = &s->nodes[id];
        if (!n->up)
            continue;
        if (n->applied != ln->applied || memcmp(&n->kv, &ln->kv, sizeof(n->kv)) != 0) {
            sim_fail(s, "Convergence: n%llu applied %llu, leader n%llu applied %llu",
                     (unsigned long long)id, (unsigned long long)n->applied, (unsigned long long)l,
                     (unsigned long long)ln->applied);
            return;
        }
    }
}

static void check_history(struct sim *s)
{
    struct lc_op *h = malloc((s->nops ? s->nops : 1) * sizeof(*h));
    if (!h)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < s->nops; i++) {
        const struct sim_op *o = &s->ops[i];
        if (o->status == OP_FAILED || o->status == OP_PENDING)
            continue;
        if (o->status == OP_UNKNOWN && o->lc.kind == LC_GET)
            continue; /* an unanswered read constrains nothing */
        h[n++] = o->lc;
    }
    uint32_t bad = 0;
    enum lc_result r = lc_check(h, n, 20000000, &bad);
    free(h);
    if (r == LC_VIOLATION)
        sim_fail(s, "Linearizability: the history of key %u has no linearization", bad);
    else if (r == LC_GAVE_UP)
        s->res->lin_gave_up = true;
}

static void print_trace(struct sim *s)
{
    fprintf(stderr, "---- last %zu events of seed %llu ----\n", s->trace_n,
            (unsigned long long)s->opts.seed);
    for (size_t i = 0; i < s->trace_n; i++)
        fprintf(stderr, "%s\n", s->trace[(s->trace_head + i) % SIM_TRACE_LINES]);
    fprintf(stderr, "---- seed %llu: %s ----\n", (unsigned long long)s->opts.seed, s->res->what);
}

int sim_run(const struct sim_opts *opts, struct sim_result *res)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    memset(res, 0, sizeof(*res));
    s->opts = *opts;
    if (!s->opts.chaos_ms)
        s->opts.chaos_ms = 20000;
    if (!s->opts.heal_ms)
        s->opts.heal_ms = 20000;
    s->res = res;
    s->rng = opts->seed * 0x2545f4914f6cdd1dull + 1;
    buf_init(&s->line);
    sim_check_init(s);
    draw_knobs(s);
    s->end = UINT64_MAX;
    s->clients_stop = UINT64_MAX;
    sim_trace(s,
              "seed %llu%s: %zu voters drop=%u dup=%u corrupt=%u slow=%u delay<=%llu async=%u%% "
              "sync<=%llu crashpt=%u early=%u%% kill=%u faults/%llums maxmsg=%llu inflight=%zu "
              "snap/%llu keep=%llu membership=%d transfers=%d",
              (unsigned long long)opts->seed,
              s->fig8    ? " (figure-8 profile)"
              : s->churn ? " (churn profile)"
                         : "",
              s->k.voters, s->k.p_drop, s->k.p_dup, s->k.p_corrupt, s->k.p_slow,
              (unsigned long long)s->k.max_delay, s->k.p_async, (unsigned long long)s->k.max_sync,
              s->k.p_crash_point, s->k.p_apply_early, s->k.p_kill_leader,
              (unsigned long long)s->k.fault_every, (unsigned long long)s->k.max_size_per_msg,
              s->k.max_inflight, (unsigned long long)s->k.snapshot_every,
              (unsigned long long)s->k.catchup_keep, s->k.membership, s->k.transfers);
    uint64_t voters[SIM_MAX_MEMBERS];
    for (size_t i = 0; i < s->k.voters; i++)
        voters[i] = i + 1;
    for (size_t i = 0; i < s->k.voters; i++)
        sim_node_start(s, i + 1, voters, s->k.voters);
    for (size_t c = 0; c < SIM_CHASER; c++)
        sim_schedule(s, sim_range(s, 500, 1500), EV_CLIENT, 0, c, 0, NULL);
    sim_schedule(s, sim_range(s, 500, s->k.fault_every), EV_FAULT, 0, 0, 0, NULL);
    sim_schedule(s, sim_range(s, 1000, 4000), EV_MEMBERSHIP, 0, 0, 0, NULL);
    sim_schedule(s, sim_range(s, 2000, 6000), EV_TRANSFER, 0, 1, 0, NULL);
    sim_schedule(s, s->opts.chaos_ms, EV_HEAL, 0, 0, 0, NULL);
    uint64_t deadline = s->opts.chaos_ms + s->opts.heal_ms;

    while (s->nheap && !s->failed) {
        struct sim_event ev = pop_event(s);
        if (ev.time > s->end || ev.time > deadline) {
            free_event(&ev);
            break;
        }
        s->now = ev.time;
        res->events++;
        handle(s, &ev);
        for (uint64_t id = 1; id <= SIM_MAX_IDS && !s->failed; id++)
            if (s->nodes[id].started)
                sim_node_flush(s, id);
        if (!s->failed)
            sim_check_step(s);
    }
    res->sim_ms = s->now;
    if (!s->failed && s->probe_stage < 2)
        sim_fail(s, "Liveness: no read then write succeeded within %llums of healing",
                 (unsigned long long)s->opts.heal_ms);
    if (!s->failed) {
        /* pending requests are indeterminate */
        for (size_t i = 0; i < s->nops; i++)
            if (s->ops[i].status == OP_PENDING)
                sim_op_done(s, i, OP_UNKNOWN, 0);
        check_converged(s);
    }
    if (!s->failed)
        check_history(s);
    if (!s->failed)
        sim_check_final(s);
    if (s->failed && !opts->verbose)
        print_trace(s);

    /* free everything */
    while (s->nheap) {
        struct sim_event ev = pop_event(s);
        free_event(&ev);
    }
    free(s->heap);
    for (uint64_t id = 1; id <= SIM_MAX_IDS; id++)
        sim_node_free(&s->nodes[id]);
    free(s->ops);
    for (size_t i = 0; i < SIM_TRACE_LINES; i++)
        free(s->trace[i]);
    buf_fini(&s->line);
    sim_check_fini(s);
    int rc = s->failed ? 1 : 0;
    free(s);
    return rc;
}
