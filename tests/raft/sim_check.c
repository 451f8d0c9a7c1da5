/* sim_check.c - the invariants of RAFT.md §4.3, checked as the simulation runs.
 *
 * Each node's log is mirrored in a "view" built from its Readies, with a rolling prefix hash
 * per index, so that log comparisons across nodes cost O(1): equal (index, term) must mean equal
 * prefix hash (Log Matching), a leader's prefix hash at the last committed index must equal the
 * committed one (Leader Completeness), and every node must apply the same entry at each index
 * (State-Machine Safety). Durability is checked on the wire against each node's synced disk.
 */
#include "sim.h"

#include "metastore/raft_codec.h"

#include <stdlib.h>
#include <string.h>

/* ---- hashing ---- */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 32);
}

uint64_t sim_hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t entry_hash(const struct raft_entry *e)
{
    uint64_t h = mix(e->term, e->index);
    h = mix(h, (uint64_t)e->type);
    return mix(h, sim_hash_bytes(e->data, e->len));
}

/* ---- tables ---- */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

/* Make table[idx] addressable (zero-filled growth). */
static struct sim_logent *logent_at(struct sim_logent **t, size_t *n, uint64_t idx)
{
    if (idx >= *n) {
        size_t nn = *n ? *n : 1024;
        while (nn <= idx)
            nn *= 2;
        *t = xrealloc(*t, nn * sizeof(**t));
        memset(*t + *n, 0, (nn - *n) * sizeof(**t));
        *n = nn;
    }
    return &(*t)[idx];
}

static bool hmap_get(const struct sim_hmap *m, uint64_t k1, uint64_t k2, uint64_t *v)
{
    if (!m->cap)
        return false;
    size_t mask = m->cap - 1;
    for (size_t i = mix(k1, k2) & mask;; i = (i + 1) & mask) {
        if (!m->t[i].full)
            return false;
        if (m->t[i].k1 == k1 && m->t[i].k2 == k2) {
            *v = m->t[i].v;
            return true;
        }
    }
}

static void hmap_put(struct sim_hmap *m, uint64_t k1, uint64_t k2, uint64_t v)
{
    if ((m->used + 1) * 2 > m->cap) {
        struct sim_hmap old = *m;
        m->cap = m->cap ? m->cap * 2 : 4096;
        m->t = calloc(m->cap, sizeof(*m->t));
        if (!m->t)
            abort();
        m->used = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.t[i].full)
                hmap_put(m, old.t[i].k1, old.t[i].k2, old.t[i].v);
        free(old.t);
    }
    size_t mask = m->cap - 1;
    for (size_t i = mix(k1, k2) & mask;; i = (i + 1) & mask) {
        if (!m->t[i].full) {
            m->t[i] = (struct sim_hent){.k1 = k1, .k2 = k2, .v = v, .full = true};
            m->used++;
            return;
        }
        if (m->t[i].k1 == k1 && m->t[i].k2 == k2) {
            m->t[i].v = v;
            return;
        }
    }
}

void sim_check_init(struct sim *s)
{
    (void)s;
}

void sim_check_fini(struct sim *s)
{
    free(s->leader_of_term);
    free(s->votes);
    free(s->lm.t);
    free(s->committed);
    free(s->applied);
}

/* ---- views ---- */

void sim_view_fini(struct sim_view *v)
{
    free(v->term);
    free(v->prefix);
    free(v->cc);
    memset(v, 0, sizeof(*v));
}

static uint64_t view_last(const struct sim_view *v)
{
    return v->base + v->n;
}

/* The globally known prefix hash at a committed index, if any node knew it. */
static bool known_prefix(struct sim *s, uint64_t idx, uint64_t *prefix)
{
    if (idx == 0) {
        *prefix = 0;
        return true;
    }
    if (idx < s->napplied && s->applied[idx].known && s->applied[idx].prefix_known) {
        *prefix = s->applied[idx].prefix;
        return true;
    }
    if (idx < s->ncommitted && s->committed[idx].known && s->committed[idx].prefix_known) {
        *prefix = s->committed[idx].prefix;
        return true;
    }
    return false;
}

static void view_reset(struct sim *s, struct sim_view *v, uint64_t base, uint64_t base_term)
{
    v->base = base;
    v->base_term = base_term;
    v->n = 0;
    v->base_known = known_prefix(s, base, &v->base_prefix);
}

static void view_append(struct sim *s, uint64_t id, struct sim_view *v, const struct raft_entry *e)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->term = xrealloc(v->term, v->cap * sizeof(*v->term));
        v->prefix = xrealloc(v->prefix, v->cap * sizeof(*v->prefix));
        v->cc = xrealloc(v->cc, v->cap * sizeof(*v->cc));
    }
    uint64_t prev = v->n ? v->prefix[v->n - 1] : v->base_prefix;
    uint64_t p = mix(prev, entry_hash(e));
    v->term[v->n] = e->term;
    v->prefix[v->n] = p;
    v->cc[v->n] = e->type == RAFT_ENTRY_CONF_CHANGE;
    v->n++;
    if (!v->base_known)
        return;
    /* Log Matching: the same (index, term) anywhere means the same log up to there. */
    uint64_t other;
    if (hmap_get(&s->lm, e->index, e->term, &other)) {
        if (other != p)
            sim_fail(s, "Log Matching: n%llu holds %llu/%llu with a different log before it",
                     (unsigned long long)id, (unsigned long long)e->term,
                     (unsigned long long)e->index);
    } else {
        hmap_put(&s->lm, e->index, e->term, p);
    }
}

static bool is_leader(struct sim *s, uint64_t id)
{
    struct raft_status st;
    raft_status(s->nodes[id].r, &st);
    return st.soft.role == RAFT_LEADER;
}

void sim_check_ready(struct sim *s, uint64_t id, const struct raft_ready *rd)
{
    struct sim_view *v = &s->nodes[id].view;
    if (rd->has_snapshot)
        view_reset(s, v, rd->snapshot.index, rd->snapshot.term);
    if (rd->n_entries == 0)
        return;
    uint64_t first = rd->entries[0].index;
    if (first <= v->base) {
        sim_fail(s, "n%llu: Ready entries from %llu below its snapshot %llu",
                 (unsigned long long)id, (unsigned long long)first, (unsigned long long)v->base);
        return;
    }
    if (first <= view_last(v)) {
        /* Leader Append-Only: a leader never overwrites or deletes its own entries. */
        if (is_leader(s, id))
            sim_fail(s, "Leader Append-Only: leader n%llu rewrites its log from %llu",
                     (unsigned long long)id, (unsigned long long)first);
        v->n = (size_t)(first - v->base - 1);
    } else if (first != view_last(v) + 1) {
        sim_fail(s, "n%llu: Ready entries from %llu leave a gap after %llu", (unsigned long long)id,
                 (unsigned long long)first, (unsigned long long)view_last(v));
        return;
    }
    for (size_t i = 0; i < rd->n_entries; i++)
        view_append(s, id, v, &rd->entries[i]);
}

void sim_check_restart(struct sim *s, uint64_t id)
{
    struct sim_node *n = &s->nodes[id];
    struct sim_view *v = &n->view;
    uint64_t first = raft_mem_first_index(n->mem);
    uint64_t base_term = 0;
    struct raft_snapshot_meta m;
    raft_mem_snapshot_meta(n->mem, &m);
    if (m.index == first - 1)
        base_term = m.term;
    view_reset(s, v, first - 1, base_term);
    for (uint64_t i = first; i <= raft_mem_last_index(n->mem); i++)
        view_append(s, id, v, raft_mem_entry(n->mem, i));
}

/* ---- durability (on the wire) ---- */

/* Does the synced part of a disk hold entry (index, term)? Scanned backwards: a later record
 * at or below index replaces it; a snapshot at or above it covers it. */
static bool disk_holds(const struct sim_disk *d, uint64_t index, uint64_t term)
{
    for (size_t i = d->synced; i-- > 0;) {
        const struct sim_record *r = &d->v[i];
        if (r->type == REC_SNAP) {
            struct raft_snapshot_meta m;
            if (raft_snapshot_meta_decode(r->p, r->len, &m) != MS_OK)
                return false;
            return m.index >= index;
        }
        if (r->type != REC_ENTRY)
            continue;
        struct raft_entry e;
        if (raft_entry_decode(r->p, r->len, &e) != MS_OK)
            return false;
        if (e.index == index)
            return e.term == term;
        if (e.index < index)
            return false;
    }
    return false;
}

/* The (term, index) the synced disk's log ends at: the latest entry or snapshot record. */
static void disk_last(const struct sim_disk *d, uint64_t *term, uint64_t *index)
{
    *term = 0;
    *index = 0;
    for (size_t i = d->synced; i-- > 0;) {
        const struct sim_record *r = &d->v[i];
        if (r->type == REC_ENTRY) {
            struct raft_entry e;
            if (raft_entry_decode(r->p, r->len, &e) == MS_OK) {
                *term = e.term;
                *index = e.index;
            }
            return;
        }
        if (r->type == REC_SNAP) {
            struct raft_snapshot_meta m;
            if (raft_snapshot_meta_decode(r->p, r->len, &m) == MS_OK) {
                *term = m.term;
                *index = m.index;
            }
            return;
        }
    }
}

static bool disk_hard(const struct sim_disk *d, struct raft_hard_state *hs)
{
    for (size_t i = d->synced; i-- > 0;)
        if (d->v[i].type == REC_HARD)
            return raft_hard_state_decode(d->v[i].p, d->v[i].len, hs) == MS_OK;
    return false;
}

/* A committed entry handed out for applying is durable already (never in the Ready that
 * persists it): the synced disk holds it, so applying it before the Ready's own sync is safe. */
void sim_check_durable(struct sim *s, uint64_t id, const struct raft_entry *e)
{
    if (!disk_holds(&s->nodes[id].disk, e->index, e->term))
        sim_fail(s, "Durability: n%llu applies %llu/%llu before its disk holds it",
                 (unsigned long long)id, (unsigned long long)e->term, (unsigned long long)e->index);
}

void sim_check_send(struct sim *s, uint64_t from, const struct raft_msg *m)
{
    if (m->type != RAFT_MSG_VOTE_RESP || m->reject)
        return;
    /* A granted vote must already be durable (or superseded by a durable later term, after
     * which the node can never vote in this one again), and a node never votes twice in a
     * term. */
    struct raft_hard_state hs;
    if (!disk_hard(&s->nodes[from].disk, &hs) || hs.term < m->term ||
        (hs.term == m->term && hs.vote != m->to))
        sim_fail(s, "Durability: n%llu grants its term %llu vote to n%llu before persisting it",
                 (unsigned long long)from, (unsigned long long)m->term, (unsigned long long)m->to);
    for (size_t i = 0; i < s->nvotes; i++) {
        const struct sim_vote *v = &s->votes[i];
        if (v->node == from && v->term == m->term) {
            if (v->cand != m->to)
                sim_fail(s, "Durability: n%llu voted for n%llu and n%llu in term %llu",
                         (unsigned long long)from, (unsigned long long)v->cand,
                         (unsigned long long)m->to, (unsigned long long)m->term);
            return;
        }
    }
    if (s->nvotes == s->capvotes) {
        s->capvotes = s->capvotes ? s->capvotes * 2 : 256;
        s->votes = xrealloc(s->votes, s->capvotes * sizeof(*s->votes));
    }
    s->votes[s->nvotes++] = (struct sim_vote){.node = from, .term = m->term, .cand = m->to};
}

/* ---- apply ---- */

void sim_check_apply(struct sim *s, uint64_t id, const struct raft_entry *e)
{
    struct sim_node *n = &s->nodes[id];
    if (e->index != n->applied + 1)
        sim_fail(s, "n%llu applies %llu after %llu", (unsigned long long)id,
                 (unsigned long long)e->index, (unsigned long long)n->applied);
    struct sim_logent *a = logent_at(&s->applied, &s->napplied, e->index);
    uint64_t h = entry_hash(e);
    if (a->known) {
        if (a->hash != h || a->term != e->term)
            sim_fail(s,
                     "State-Machine Safety: n%llu applies %llu/%llu, another node applied "
                     "%llu/%llu",
                     (unsigned long long)id, (unsigned long long)e->term,
                     (unsigned long long)e->index, (unsigned long long)a->term,
                     (unsigned long long)e->index);
        return;
    }
    a->known = true;
    a->term = e->term;
    a->hash = h;
    const struct sim_view *v = &n->view;
    if (v->base_known && e->index > v->base && e->index <= view_last(v) &&
        v->term[e->index - v->base - 1] == e->term) {
        a->prefix = v->prefix[e->index - v->base - 1];
        a->prefix_known = true;
    }
}

/* ---- after every event ---- */

static void check_leader(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
    uint64_t term = st->hard.term;
    if (term >= s->nterms) {
        size_t nn = s->nterms ? s->nterms : 64;
        while (nn <= term)
            nn *= 2;
        s->leader_of_term = xrealloc(s->leader_of_term, nn * sizeof(uint64_t));
        memset(s->leader_of_term + s->nterms, 0, (nn - s->nterms) * sizeof(uint64_t));
        s->nterms = nn;
    }
    /* Election Safety */
    if (s->leader_of_term[term] == 0) {
        s->leader_of_term[term] = n->id;
        s->res->leaders++;
        sim_trace(s, "n%llu is leader of term %llu", (unsigned long long)n->id,
                  (unsigned long long)term);
        sim_new_leader(s, n->id);
    } else if (s->leader_of_term[term] != n->id) {
        sim_fail(s, "Election Safety: n%llu and n%llu both lead term %llu",
                 (unsigned long long)s->leader_of_term[term], (unsigned long long)n->id,
                 (unsigned long long)term);
        return;
    }
    /* The remaining checks need the view to be the whole log: nothing is pending. */
    if (n->rd_out || raft_has_ready(n->r))
        return;
    const struct sim_view *v = &n->view;
    /* Leader Completeness: everything committed in an earlier term is in this leader's log. */
    uint64_t c = s->max_committed;
    while (c > 0 &&
           (c >= s->ncommitted || !s->committed[c].known || s->committed[c].commit_term >= term))
        c--;
    if (c > v->base) {
        if (c > view_last(v)) {
            sim_fail(s,
                     "Leader Completeness: leader n%llu (term %llu) ends at %llu, before "
                     "committed %llu",
                     (unsigned long long)n->id, (unsigned long long)term,
                     (unsigned long long)view_last(v), (unsigned long long)c);
            return;
        }
        const struct sim_logent *ce = &s->committed[c];
        size_t k = (size_t)(c - v->base - 1);
        if (v->term[k] != ce->term ||
            (v->base_known && ce->prefix_known && v->prefix[k] != ce->prefix))
            sim_fail(s,
                     "Leader Completeness: leader n%llu (term %llu) differs from the "
                     "committed log at %llu",
                     (unsigned long long)n->id, (unsigned long long)term, (unsigned long long)c);
    }
    /* At most one configuration change beyond what the leader applied. */
    size_t pending = 0;
    for (uint64_t i = n->applied + 1; i <= view_last(v); i++)
        if (i > v->base && v->cc[i - v->base - 1])
            pending++;
    if (pending > 1)
        sim_fail(s, "Membership: leader n%llu has %zu unapplied conf changes",
                 (unsigned long long)n->id, pending);
}

/* The leader's commit index moved to c: entry c must be durable on a quorum of its voters. */
static void check_commit_durable(struct sim *s, struct sim_node *n, const struct raft_status *st,
                                 uint64_t c)
{
    const struct sim_view *v = &n->view;
    if (c <= v->base || c > view_last(v))
        return;
    uint64_t term = v->term[c - v->base - 1];
    size_t holders = 0;
    for (size_t i = 0; i < st->conf.n_voters; i++) {
        uint64_t id = st->conf.voters[i];
        if (id <= SIM_MAX_IDS && s->nodes[id].started && disk_holds(&s->nodes[id].disk, c, term))
            holders++;
    }
    size_t quorum = st->conf.n_voters / 2 + 1;
    if (holders < quorum) {
        sim_fail(s, "Durability: leader n%llu commits %llu/%llu held durably by %zu of %zu voters",
                 (unsigned long long)n->id, (unsigned long long)term, (unsigned long long)c,
                 holders, st->conf.n_voters);
        return;
    }
    /* Committed means no longer losable: no node whose durable log lacks the entry may be at
     * least as up to date as a quorum of voters' durable logs, or it could win an election
     * and overwrite the entry (Raft §5.4; the reason for the current-term commit rule). */
    uint64_t vt[RAFT_MAX_NODES], vi[RAFT_MAX_NODES];
    for (size_t i = 0; i < st->conf.n_voters; i++) {
        uint64_t id = st->conf.voters[i];
        vt[i] = vi[i] = 0;
        if (id <= SIM_MAX_IDS && s->nodes[id].started)
            disk_last(&s->nodes[id].disk, &vt[i], &vi[i]);
    }
    for (size_t x = 0; x < st->conf.n_voters; x++) {
        uint64_t xid = st->conf.voters[x];
        if (xid > SIM_MAX_IDS || !s->nodes[xid].started || disk_holds(&s->nodes[xid].disk, c, term))
            continue;
        size_t would_vote = 0;
        for (size_t y = 0; y < st->conf.n_voters; y++)
            if (vt[x] > vt[y] || (vt[x] == vt[y] && vi[x] >= vi[y]))
                would_vote++;
        if (would_vote >= quorum)
            sim_fail(s,
                     "Leader Completeness: leader n%llu commits %llu/%llu, yet n%llu (log "
                     "ends %llu/%llu) lacks it and could be elected by %zu of %zu voters",
                     (unsigned long long)n->id, (unsigned long long)term, (unsigned long long)c,
                     (unsigned long long)xid, (unsigned long long)vt[x], (unsigned long long)vi[x],
                     would_vote, st->conf.n_voters);
    }
}

void sim_check_commit(struct sim *s, uint64_t id)
{
    struct sim_node *n = &s->nodes[id];
    if (!n->up || !n->r)
        return;
    struct raft_status st;
    raft_status(n->r, &st);
    if (st.soft.role == RAFT_LEADER && st.hard.commit > n->checked_commit)
        check_commit_durable(s, n, &st, st.hard.commit);
    n->checked_commit = st.hard.commit;
}

static void record_committed(struct sim *s, struct sim_node *n, const struct raft_status *st)
{
    const struct sim_view *v = &n->view;
    uint64_t upto = st->hard.commit < view_last(v) ? st->hard.commit : view_last(v);
    if (n->seen_commit < v->base)
        n->seen_commit = v->base;
    for (uint64_t i = n->seen_commit + 1; i <= upto; i++) {
        size_t k = (size_t)(i - v->base - 1);
        struct sim_logent *ce = logent_at(&s->committed, &s->ncommitted, i);
        if (!ce->known) {
            ce->known = true;
            ce->term = v->term[k];
            ce->commit_term = st->hard.term;
            ce->prefix = v->prefix[k];
            ce->prefix_known = v->base_known;
            if (i > s->max_committed)
                s->max_committed = i;
            continue;
        }
        if (ce->term != v->term[k] ||
            (ce->prefix_known && v->base_known && ce->prefix != v->prefix[k])) {
            sim_fail(s, "Committed entries differ: n%llu commits %llu/%llu, earlier %llu/%llu",
                     (unsigned long long)n->id, (unsigned long long)v->term[k],
                     (unsigned long long)i, (unsigned long long)ce->term, (unsigned long long)i);
            return;
        }
        if (!ce->prefix_known && v->base_known) {
            ce->prefix = v->prefix[k];
            ce->prefix_known = true;
        }
        if (st->hard.term < ce->commit_term)
            ce->commit_term = st->hard.term;
    }
    if (upto > n->seen_commit)
        n->seen_commit = upto;
}

void sim_check_step(struct sim *s)
{
    for (uint64_t id = 1; id <= SIM_MAX_IDS && !s->failed; id++) {
        struct sim_node *n = &s->nodes[id];
        if (!n->up || !n->r)
            continue;
        struct raft_status st;
        raft_status(n->r, &st);
        if (st.hard.commit < n->last_commit || st.applied < n->last_applied) {
            sim_fail(s, "n%llu: commit or applied went backwards", (unsigned long long)id);
            return;
        }
        if (st.hard.commit > st.last_index) {
            sim_fail(s, "n%llu: commit %llu beyond its last index %llu", (unsigned long long)id,
                     (unsigned long long)st.hard.commit, (unsigned long long)st.last_index);
            return;
        }
        sim_check_commit(s, id);
        n->last_commit = st.hard.commit;
        n->last_applied = st.applied;
        /* The view is the node's whole log only when no Ready is pending or in flight. */
        if (!n->rd_out && !raft_has_ready(n->r))
            record_committed(s, n, &st);
        if (st.soft.role == RAFT_LEADER)
            check_leader(s, n, &st);
    }
}

void sim_check_final(struct sim *s)
{
    (void)s;
}
