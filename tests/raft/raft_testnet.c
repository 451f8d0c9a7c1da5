/* raft_testnet.c - the in-process test cluster of raft_testnet.h. */
#include "raft_testnet.h"

#include "metastore/raft_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "testnet: %s\n", what);
    abort();
}

void tn_init(struct tn *t)
{
    memset(t, 0, sizeof(*t));
}

static void q_clear_range(struct tn *t)
{
    for (size_t i = 0; i < t->qn; i++)
        raft_msg_free(&t->q[i]);
    t->qn = 0;
}

void tn_fini(struct tn *t)
{
    for (uint64_t id = 1; id <= TN_MAX; id++) {
        raft_destroy(t->nodes[id].r);
        raft_mem_destroy(t->nodes[id].mem);
    }
    q_clear_range(t);
    free(t->q);
    memset(t, 0, sizeof(*t));
}

struct raft *tn_raft(struct tn *t, uint64_t id)
{
    if (id == 0 || id > TN_MAX || !t->nodes[id].present)
        die("no such node");
    return t->nodes[id].r;
}

static void make_conf(struct raft_conf_state *cs, const uint64_t *voters, size_t nv,
                      const uint64_t *learners, size_t nl)
{
    memset(cs, 0, sizeof(*cs));
    cs->n_voters = nv;
    for (size_t i = 0; i < nv; i++)
        cs->voters[i] = voters[i];
    cs->n_learners = nl;
    for (size_t i = 0; i < nl; i++)
        cs->learners[i] = learners[i];
}

void tn_add_nodes(struct tn *t, uint64_t first, size_t count, const uint64_t *voters,
                  size_t n_voters, const uint64_t *learners, size_t n_learners,
                  const struct tn_opts *o)
{
    struct tn_opts none = {0};
    if (!o)
        o = &none;
    struct raft_conf_state cs;
    make_conf(&cs, voters, n_voters, learners, n_learners);
    for (uint64_t id = first; id < first + count; id++) {
        if (id == 0 || id > TN_MAX || t->nodes[id].present)
            die("bad node id");
        struct tn_node *nd = &t->nodes[id];
        memset(nd, 0, sizeof(*nd));
        nd->id = id;
        nd->present = true;
        nd->mem = raft_mem_create();
        nd->conf = cs;
        if (o->snap_index) {
            struct raft_snapshot_meta s = {.index = o->snap_index, .term = 1, .conf = cs};
            raft_mem_apply_snapshot(nd->mem, &s);
            nd->applied_index = o->snap_index;
        }
        raft_config_default(&nd->cfg, id);
        nd->cfg.pre_vote = !o->no_pre_vote;
        nd->cfg.check_quorum = !o->no_check_quorum;
        nd->cfg.read_only = o->lease_reads ? RAFT_READ_ONLY_LEASE : RAFT_READ_ONLY_SAFE;
        nd->cfg.step_down_on_removal = !o->no_step_down;
        nd->cfg.disable_proposal_forwarding = o->disable_forwarding;
        if (o->election_tick)
            nd->cfg.election_tick = o->election_tick;
        nd->cfg.max_size_per_msg = o->max_size_per_msg ? o->max_size_per_msg : UINT64_MAX;
        nd->cfg.max_committed_bytes_per_ready = UINT64_MAX;
        if (o->max_inflight)
            nd->cfg.max_inflight_msgs = o->max_inflight;
        nd->cfg.max_uncommitted_bytes = o->max_uncommitted;
        nd->cfg.seed = o->seed;
        nd->cfg.log = &raft_mem_ops;
        nd->cfg.log_ctx = nd->mem;
        if (raft_create(&nd->cfg, NULL, &cs, &nd->r) != MS_OK)
            die("raft_create");
        if (id > t->n)
            t->n = id;
    }
}

void tn_set_log(struct tn *t, uint64_t id, const uint64_t *terms, size_t n, uint64_t term)
{
    struct tn_node *nd = &t->nodes[id];
    struct raft_entry e = {.type = RAFT_ENTRY_NORMAL};
    uint64_t first = raft_mem_last_index(nd->mem) + 1;
    for (size_t i = 0; i < n; i++) {
        e.term = terms[i];
        e.index = first + i;
        if (raft_mem_append(nd->mem, &e, 1) != MS_OK)
            die("append");
    }
    struct raft_hard_state hs;
    raft_mem_hard(nd->mem, &hs);
    hs.term = term;
    raft_mem_set_hard(nd->mem, &hs);
    tn_restart(t, id);
}

void tn_restart(struct tn *t, uint64_t id)
{
    struct tn_node *nd = &t->nodes[id];
    raft_destroy(nd->r);
    struct raft_hard_state hs;
    raft_mem_hard(nd->mem, &hs);
    struct raft_snapshot_meta s;
    raft_mem_snapshot_meta(nd->mem, &s);
    /* The configuration comes from the snapshot; later conf changes are re-applied from the
     * log, so the node starts from applied = snapshot index. */
    nd->cfg.applied = s.index;
    nd->applied_index = s.index;
    nd->n_applied = 0;
    if (s.index == 0)
        s.conf = nd->conf;
    if (raft_create(&nd->cfg, &hs, &s.conf, &nd->r) != MS_OK)
        die("raft_create on restart");
}

static void q_push_copy(struct tn *t, const struct raft_msg *m)
{
    if (t->qn == t->qcap) {
        t->qcap = t->qcap ? t->qcap * 2 : 64;
        t->q = realloc(t->q, t->qcap * sizeof(*t->q));
        if (!t->q)
            die("oom");
    }
    raft_msg_copy(&t->q[t->qn++], m);
}

/* ---- formatting ---- */

static void fmt_data(struct buf *b, const uint8_t *p, size_t n)
{
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            buf_putc(b, (char)p[i]);
        else
            buf_printf(b, "\\x%02x", p[i]);
    }
    buf_putc(b, '"');
}

static const char *cc_name(enum raft_cc_type t)
{
    switch (t) {
    case RAFT_CC_ADD_NODE:
        return "AddNode";
    case RAFT_CC_REMOVE_NODE:
        return "RemoveNode";
    case RAFT_CC_UPDATE_NODE:
        return "UpdateNode";
    case RAFT_CC_ADD_LEARNER:
        return "AddLearner";
    }
    return "?";
}

void tn_fmt_entry(struct buf *b, const struct raft_entry *e)
{
    buf_printf(b, "%llu/%llu", (unsigned long long)e->term, (unsigned long long)e->index);
    if (e->type == RAFT_ENTRY_CONF_CHANGE) {
        struct raft_conf_change cc;
        if (raft_cc_decode(e->data, e->len, &cc) == MS_OK)
            buf_printf(b, " %s(%llu)", cc_name(cc.type), (unsigned long long)cc.node_id);
        else
            buf_puts(b, " ConfChange(?)");
    } else if (e->len) {
        buf_putc(b, ' ');
        fmt_data(b, e->data, e->len);
    } else {
        buf_puts(b, " noop");
    }
}

static void fmt_conf(struct buf *b, const struct raft_conf_state *cs)
{
    buf_puts(b, "voters=(");
    for (size_t i = 0; i < cs->n_voters; i++)
        buf_printf(b, "%s%llu", i ? " " : "", (unsigned long long)cs->voters[i]);
    buf_putc(b, ')');
    if (cs->n_learners) {
        buf_puts(b, " learners=(");
        for (size_t i = 0; i < cs->n_learners; i++)
            buf_printf(b, "%s%llu", i ? " " : "", (unsigned long long)cs->learners[i]);
        buf_putc(b, ')');
    }
}

void tn_fmt_msg(struct buf *b, const struct raft_msg *m)
{
    buf_printf(b, "%llu->%llu %s Term:%llu", (unsigned long long)m->from, (unsigned long long)m->to,
               raft_msg_type_name(m->type), (unsigned long long)m->term);
    switch (m->type) {
    case RAFT_MSG_APP:
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PRE_VOTE:
        buf_printf(b, " Log:%llu/%llu", (unsigned long long)m->log_term,
                   (unsigned long long)m->index);
        break;
    case RAFT_MSG_APP_RESP:
    case RAFT_MSG_READ_INDEX_RESP:
        buf_printf(b, " Index:%llu", (unsigned long long)m->index);
        break;
    default:
        break;
    }
    if (m->commit || m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT)
        buf_printf(b, " Commit:%llu", (unsigned long long)m->commit);
    if (m->reject && m->type == RAFT_MSG_APP_RESP)
        buf_printf(b, " Rejected (Hint: %llu/%llu)", (unsigned long long)m->log_term,
                   (unsigned long long)m->reject_hint);
    else if (m->reject)
        buf_puts(b, " Rejected");
    if (m->ctx)
        buf_printf(b, " Ctx:%llu", (unsigned long long)m->ctx);
    if (m->n_entries) {
        buf_puts(b, " Entries:[");
        for (size_t i = 0; i < m->n_entries; i++) {
            if (i)
                buf_puts(b, ", ");
            tn_fmt_entry(b, &m->entries[i]);
        }
        buf_putc(b, ']');
    }
    if (m->type == RAFT_MSG_SNAP) {
        buf_printf(b, " Snapshot: index=%llu term=%llu ", (unsigned long long)m->snap.index,
                   (unsigned long long)m->snap.term);
        fmt_conf(b, &m->snap.conf);
    }
}

void tn_fmt_log(struct tn *t, uint64_t id, struct buf *b)
{
    struct tn_node *nd = &t->nodes[id];
    uint64_t first = raft_mem_first_index(nd->mem), last = raft_mem_last_index(nd->mem);
    if (first > last) {
        buf_printf(b, "log is empty: first index=%llu, last index=%llu\n",
                   (unsigned long long)first, (unsigned long long)last);
        return;
    }
    for (uint64_t i = first; i <= last; i++) {
        tn_fmt_entry(b, raft_mem_entry(nd->mem, i));
        buf_putc(b, '\n');
    }
}

void tn_fmt_status(struct tn *t, uint64_t id, struct buf *b)
{
    struct raft_status st;
    raft_status(tn_raft(t, id), &st);
    buf_printf(b, "%llu: %s term=%llu vote=%llu lead=%llu commit=%llu applied=%llu last=%llu ",
               (unsigned long long)id, raft_role_name(st.soft.role),
               (unsigned long long)st.hard.term, (unsigned long long)st.hard.vote,
               (unsigned long long)st.soft.lead, (unsigned long long)st.hard.commit,
               (unsigned long long)st.applied, (unsigned long long)st.last_index);
    fmt_conf(b, &st.conf);
    buf_putc(b, '\n');
    for (size_t i = 0; i < st.n_progress; i++) {
        const struct raft_progress_status *p = &st.progress[i];
        buf_printf(b, "  %llu: %s match=%llu next=%llu", (unsigned long long)p->id,
                   raft_progress_state_name(p->state), (unsigned long long)p->match,
                   (unsigned long long)p->next);
        if (p->learner)
            buf_puts(b, " learner");
        if (p->paused)
            buf_puts(b, " paused");
        if (p->pending_snapshot)
            buf_printf(b, " pendingSnap=%llu", (unsigned long long)p->pending_snapshot);
        if (!p->recent_active)
            buf_puts(b, " inactive");
        if (p->inflight)
            buf_printf(b, " inflight=%zu", p->inflight);
        buf_putc(b, '\n');
    }
}

/* ---- ready handling ---- */

static void trace_entries(struct buf *b, const char *title, const struct raft_entry *v, size_t n)
{
    if (n)
        buf_printf(b, "  %s:\n", title);
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, "  ");
        tn_fmt_entry(b, &v[i]);
        buf_putc(b, '\n');
    }
}

static void trace_msgs(struct buf *b, const char *title, const struct raft_msg *v, size_t n)
{
    if (n)
        buf_printf(b, "  %s:\n", title);
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, "  ");
        tn_fmt_msg(b, &v[i]);
        buf_putc(b, '\n');
    }
}

static void trace_ready(struct tn *t, uint64_t id, const struct raft_ready *rd)
{
    struct buf *b = t->trace;
    buf_printf(b, "> %llu handling Ready%s\n", (unsigned long long)id,
               rd->must_sync ? " (sync)" : "");
    if (rd->soft_changed)
        buf_printf(b, "  Lead:%llu State:%s\n", (unsigned long long)rd->soft.lead,
                   raft_role_name(rd->soft.role));
    if (rd->hard_changed)
        buf_printf(b, "  HardState Term:%llu Vote:%llu Commit:%llu\n",
                   (unsigned long long)rd->hard.term, (unsigned long long)rd->hard.vote,
                   (unsigned long long)rd->hard.commit);
    if (rd->has_snapshot) {
        buf_printf(b, "  Snapshot Index:%llu Term:%llu ", (unsigned long long)rd->snapshot.index,
                   (unsigned long long)rd->snapshot.term);
        fmt_conf(b, &rd->snapshot.conf);
        buf_putc(b, '\n');
    }
    trace_entries(b, "Entries", rd->entries, rd->n_entries);
    trace_entries(b, "Committed", rd->committed, rd->n_committed);
    trace_msgs(b, "Messages", rd->msgs, rd->n_msgs);
    trace_msgs(b, "After persist", rd->msgs_after_persist, rd->n_msgs_after_persist);
    for (size_t i = 0; i < rd->n_read_states; i++)
        buf_printf(b, "  ReadState Index:%llu Ctx:%llu\n",
                   (unsigned long long)rd->read_states[i].index,
                   (unsigned long long)rd->read_states[i].ctx);
}

static void apply_entry(struct tn *t, struct tn_node *nd, const struct raft_entry *e)
{
    nd->applied_index = e->index;
    if (e->type == RAFT_ENTRY_CONF_CHANGE) {
        struct raft_conf_change cc;
        if (raft_cc_decode(e->data, e->len, &cc) != MS_OK)
            die("bad conf change entry");
        if (raft_apply_conf_change(nd->r, &cc, &nd->conf) != MS_OK && t->trace)
            buf_puts(t->trace, "  (conf change refused)\n");
        if (t->trace) {
            buf_puts(t->trace, "  INFO applied ");
            fmt_conf(t->trace, &nd->conf);
            buf_putc(t->trace, '\n');
        }
        return;
    }
    if (e->len == 0)
        return;
    if (nd->n_applied < 64) {
        size_t n = e->len < 31 ? e->len : 31;
        memcpy(nd->applied[nd->n_applied], e->data, n);
        nd->applied[nd->n_applied][n] = '\0';
    }
    nd->n_applied++;
}

bool tn_process_ready(struct tn *t, uint64_t id)
{
    struct tn_node *nd = &t->nodes[id];
    bool any = false;
    for (int guard = 0; raft_has_ready(nd->r); guard++) {
        if (guard > 1000)
            die("ready loop does not settle");
        any = true;
        struct raft_ready rd;
        if (raft_ready(nd->r, &rd) != MS_OK)
            die("raft_ready");
        if (t->trace)
            trace_ready(t, id, &rd);
        for (size_t i = 0; i < rd.n_msgs; i++)
            q_push_copy(t, &rd.msgs[i]);
        if (rd.has_snapshot) {
            if (raft_mem_apply_snapshot(nd->mem, &rd.snapshot) != MS_OK)
                die("apply snapshot");
            nd->conf = rd.snapshot.conf;
            nd->applied_index = rd.snapshot.index;
        }
        if (raft_mem_append(nd->mem, rd.entries, rd.n_entries) != MS_OK)
            die("append");
        if (rd.hard_changed)
            raft_mem_set_hard(nd->mem, &rd.hard);
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
            q_push_copy(t, &rd.msgs_after_persist[i]);
        for (size_t i = 0; i < rd.n_committed; i++)
            apply_entry(t, nd, &rd.committed[i]);
        for (size_t i = 0; i < rd.n_read_states && t->n_read_states < 64; i++)
            t->read_states[t->n_read_states++] = rd.read_states[i];
        raft_advance(nd->r, &rd);
    }
    return any;
}

size_t tn_deliver(struct tn *t, uint64_t id, bool process)
{
    /* Take the matching messages out first: stepping queues new ones at the end. */
    struct raft_msg *take = malloc((t->qn ? t->qn : 1) * sizeof(*take));
    if (!take)
        die("oom");
    size_t k = 0, keep = 0;
    for (size_t i = 0; i < t->qn; i++) {
        if (id == 0 || t->q[i].to == id)
            take[k++] = t->q[i];
        else
            t->q[keep++] = t->q[i];
    }
    t->qn = keep;
    bool announced[TN_MAX + 1] = {false};
    for (size_t i = 0; i < k; i++) {
        struct raft_msg *m = &take[i];
        uint64_t to = m->to;
        bool ok = to >= 1 && to <= TN_MAX && t->nodes[to].present && m->from <= TN_MAX &&
                  !t->cut[m->from][to];
        if (t->trace) {
            if (to <= TN_MAX && !announced[to]) {
                buf_printf(t->trace, "> %llu receiving messages\n", (unsigned long long)to);
                announced[to] = true;
            }
            buf_puts(t->trace, "  ");
            tn_fmt_msg(t->trace, m);
            buf_puts(t->trace, ok ? "\n" : " (dropped)\n");
        }
        if (ok) {
            ms_err e = raft_step(t->nodes[to].r, m);
            if (e != MS_OK && t->trace)
                buf_printf(t->trace, "  step error: %s\n", ms_err_name(e));
        }
        raft_msg_free(m);
    }
    free(take);
    if (process)
        for (uint64_t n = 1; n <= TN_MAX; n++)
            if (t->nodes[n].present && (id == 0 || id == n))
                tn_process_ready(t, n);
    return k;
}

void tn_stabilize(struct tn *t)
{
    for (int round = 0; round < 10000; round++) {
        bool any = false;
        for (uint64_t id = 1; id <= TN_MAX; id++)
            if (t->nodes[id].present && tn_process_ready(t, id))
                any = true;
        if (t->qn == 0 && !any)
            return;
        for (uint64_t id = 1; id <= TN_MAX; id++)
            if (tn_deliver(t, id, false))
                any = true;
        if (!any)
            return;
    }
    die("stabilize does not converge");
}

void tn_drop(struct tn *t, uint64_t id)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->qn; i++) {
        if (id == 0 || t->q[i].to == id)
            raft_msg_free(&t->q[i]);
        else
            t->q[keep++] = t->q[i];
    }
    t->qn = keep;
}

size_t tn_count(const struct tn *t, enum raft_msg_type type, uint64_t from, uint64_t to)
{
    size_t n = 0;
    for (size_t i = 0; i < t->qn; i++)
        if (t->q[i].type == type && (from == 0 || t->q[i].from == from) &&
            (to == 0 || t->q[i].to == to))
            n++;
    return n;
}

void tn_cut(struct tn *t, uint64_t a, uint64_t b, bool cut)
{
    t->cut[a][b] = cut;
    t->cut[b][a] = cut;
}

void tn_isolate(struct tn *t, uint64_t id, bool cut)
{
    for (uint64_t o = 1; o <= TN_MAX; o++)
        if (o != id)
            tn_cut(t, id, o, cut);
}

void tn_heal(struct tn *t)
{
    memset(t->cut, 0, sizeof(t->cut));
}

void tn_tick(struct tn *t, uint64_t id, int n)
{
    for (int i = 0; i < n; i++)
        raft_tick(tn_raft(t, id));
}
