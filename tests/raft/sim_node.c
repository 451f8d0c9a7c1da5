/* sim_node.c - one simulated server: the production core plus a simulated disk and network
 * endpoint, driven through the Ready contract exactly as the real server will drive it
 * (docs/raft.md): send msgs, write records, sync (maybe later: the disk is slow), then send
 * msgs_after_persist, apply, serve reads, advance. With p_apply_early a share of the Readies
 * is applied (and its reads served) right after sending msgs, before its records are written,
 * as the server does, and then entries committed meanwhile that are stable already are applied
 * while the Ready persists (raft_committed_now). Crash points may cut any Ready short.
 */
#include "sim.h"

#include "metastore/raft_codec.h"
#include "raft_testnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OP_MAGIC 0xc1
#define OP_LEN   27

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *d = xmalloc(n);
    if (n)
        memcpy(d, p, n);
    return d;
}

/* ---- disk ---- */

static void disk_push(struct sim_disk *d, enum sim_rec_type type, struct buf *b,
                      const uint8_t *blob, size_t blob_len)
{
    if (buf_failed(b))
        abort();
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->v = realloc(d->v, d->cap * sizeof(*d->v));
        if (!d->v)
            abort();
    }
    struct sim_record *r = &d->v[d->n++];
    r->type = type;
    r->p = buf_steal(b, &r->len);
    r->blob_len = blob_len;
    r->blob = blob_len ? dup_bytes(blob, blob_len) : NULL;
}

static void disk_truncate(struct sim_disk *d, size_t n)
{
    while (d->n > n) {
        struct sim_record *r = &d->v[--d->n];
        free(r->p);
        free(r->blob);
    }
    if (d->synced > d->n)
        d->synced = d->n;
}

static void disk_free(struct sim_disk *d)
{
    disk_truncate(d, 0);
    free(d->v);
    memset(d, 0, sizeof(*d));
}

static void write_snap(struct sim_disk *d, const struct raft_snapshot_meta *m, const uint8_t *blob,
                       size_t blob_len)
{
    struct buf b;
    buf_init(&b);
    raft_snapshot_meta_encode(m, &b);
    disk_push(d, REC_SNAP, &b, blob, blob_len);
}

static void write_entry(struct sim_disk *d, const struct raft_entry *e)
{
    struct buf b;
    buf_init(&b);
    raft_entry_encode(e, &b);
    disk_push(d, REC_ENTRY, &b, NULL, 0);
}

static void write_hard(struct sim_disk *d, const struct raft_hard_state *hs)
{
    struct buf b;
    buf_init(&b);
    raft_hard_state_encode(hs, &b);
    disk_push(d, REC_HARD, &b, NULL, 0);
}

/* ---- helpers ---- */

static struct sim_node *node(struct sim *s, uint64_t id)
{
    return &s->nodes[id];
}

bool sim_node_serving(const struct sim *s, uint64_t id)
{
    const struct sim_node *n = &s->nodes[id];
    return n->started && n->up && !n->paused && !n->retired;
}

static void forget_op(struct sim_node *n, size_t op)
{
    for (size_t i = 0; i < n->n_props; i++) {
        if (n->props[i] == op) {
            n->props[i] = n->props[--n->n_props];
            return;
        }
    }
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].op == op) {
            n->reads[i] = n->reads[--n->n_reads];
            return;
        }
    }
}

static bool has_prop(const struct sim_node *n, size_t op)
{
    for (size_t i = 0; i < n->n_props; i++)
        if (n->props[i] == op)
            return true;
    return false;
}

static void kv_encode(const struct sim_kv *kv, uint8_t *out)
{
    for (size_t i = 0; i < SIM_KEYS; i++)
        be64_put(out + 8 * i, kv->val[i]);
}

static void kv_decode(struct sim_kv *kv, const uint8_t *p, size_t n)
{
    memset(kv, 0, sizeof(*kv));
    for (size_t i = 0; i < SIM_KEYS && 8 * i + 8 <= n; i++)
        kv->val[i] = be64_get(p + 8 * i);
}

/* ---- received snapshots ---- */

static void in_snaps_free(struct sim_node *n)
{
    for (size_t i = 0; i < SIM_IN_SNAPS; i++) {
        free(n->in_snap_blob[i]);
        n->in_snap_blob[i] = NULL;
        n->in_snap_index[i] = 0;
    }
}

/* Keep blob (owned) as the data of snapshot index, dropping the oldest one kept. */
static void in_snaps_put(struct sim_node *n, uint64_t index, uint8_t *blob, size_t len)
{
    free(n->in_snap_blob[SIM_IN_SNAPS - 1]);
    for (size_t i = SIM_IN_SNAPS - 1; i > 0; i--) {
        n->in_snap_blob[i] = n->in_snap_blob[i - 1];
        n->in_snap_len[i] = n->in_snap_len[i - 1];
        n->in_snap_index[i] = n->in_snap_index[i - 1];
    }
    n->in_snap_blob[0] = blob;
    n->in_snap_len[0] = len;
    n->in_snap_index[0] = index;
}

static const uint8_t *in_snaps_get(const struct sim_node *n, uint64_t index, size_t *len)
{
    for (size_t i = 0; i < SIM_IN_SNAPS; i++) {
        if (n->in_snap_blob[i] && n->in_snap_index[i] == index) {
            *len = n->in_snap_len[i];
            return n->in_snap_blob[i];
        }
    }
    return NULL;
}

/* ---- lifecycle ---- */

static void make_core(struct sim *s, struct sim_node *n, const struct raft_hard_state *hs,
                      const struct raft_conf_state *cs)
{
    raft_config_default(&n->cfg, n->id);
    n->cfg.max_size_per_msg = s->k.max_size_per_msg;
    n->cfg.max_inflight_msgs = s->k.max_inflight;
    n->cfg.applied = n->applied;
    n->cfg.seed = sim_rand(s);
    n->cfg.log = &raft_mem_ops;
    n->cfg.log_ctx = n->mem;
    ms_err e = raft_create(&n->cfg, hs, cs, &n->r);
    if (e != MS_OK) {
        sim_fail(s, "n%llu: raft_create failed on restart (%s)", (unsigned long long)n->id,
                 ms_err_name(e));
        n->r = NULL;
    }
}

static void start_ticking(struct sim *s, struct sim_node *n)
{
    n->tick_ms = sim_range(s, 97, 103); /* a little clock drift between nodes */
    sim_schedule(s, sim_range(s, 1, n->tick_ms), EV_TICK, n->id, n->incarnation, 0, NULL);
}

void sim_node_start(struct sim *s, uint64_t id, const uint64_t *bootstrap, size_t nb)
{
    struct sim_node *n = node(s, id);
    n->id = id;
    n->started = true;
    n->up = true;
    n->mem = raft_mem_create();
    n->snapshot_every = s->k.snapshot_every;
    struct raft_conf_state empty = {0};
    make_core(s, n, NULL, &empty);
    if (nb) {
        if (raft_bootstrap(n->r, bootstrap, nb) != MS_OK)
            sim_fail(s, "n%llu: bootstrap failed", (unsigned long long)id);
        struct raft_status st;
        raft_status(n->r, &st);
        n->conf = st.conf; /* bootstrap applied its conf changes already */
    }
    sim_trace(s, "n%llu start%s", (unsigned long long)id, nb ? " (bootstrap)" : " (joining)");
    start_ticking(s, n);
}

void sim_node_free(struct sim_node *n)
{
    raft_destroy(n->r);
    n->r = NULL;
    raft_mem_destroy(n->mem);
    n->mem = NULL;
    disk_free(&n->disk);
    in_snaps_free(n);
    free(n->rd_snap_blob);
    n->rd_snap_blob = NULL;
    sim_view_fini(&n->view);
}

/* Lose everything volatile: the core, the in-memory log, unsynced disk records beyond a random
 * torn prefix, and pending client requests (they will time out as indeterminate). */
static void power_off(struct sim *s, struct sim_node *n)
{
    size_t keep = n->disk.synced + (size_t)sim_range(s, 0, n->disk.n - n->disk.synced);
    disk_truncate(&n->disk, keep);
    n->disk.synced = n->disk.n;
    raft_destroy(n->r);
    n->r = NULL;
    raft_mem_destroy(n->mem);
    n->mem = NULL;
    in_snaps_free(n);
    n->rd_out = false;
    n->rd_applied = false;
    n->crash_stage = 0;
    n->retire_pending = false;
    n->n_props = 0;
    n->n_reads = 0;
    n->up = false;
    n->paused = false;
    n->incarnation++;
}

void sim_node_crash(struct sim *s, uint64_t id)
{
    struct sim_node *n = node(s, id);
    if (!n->up)
        return;
    s->res->crashes++;
    power_off(s, n);
    sim_trace(s, "n%llu crash (disk keeps %zu records)", (unsigned long long)id, n->disk.n);
}

void sim_node_retire(struct sim *s, uint64_t id)
{
    struct sim_node *n = node(s, id);
    if (n->retired)
        return;
    if (n->up)
        power_off(s, n);
    n->retired = true;
    sim_trace(s, "n%llu retired (removed from the cluster)", (unsigned long long)id);
}

/* Rebuild the node from its disk, as the server will from its WAL. */
void sim_node_restart(struct sim *s, uint64_t id)
{
    struct sim_node *n = node(s, id);
    if (n->up || n->retired || !n->started)
        return;
    n->mem = raft_mem_create();
    struct raft_hard_state hs = {0};
    struct raft_snapshot_meta snap = {0};
    memset(&n->kv, 0, sizeof(n->kv));
    n->applied = 0;
    memset(&n->conf, 0, sizeof(n->conf));
    for (size_t i = 0; i < n->disk.n; i++) {
        const struct sim_record *r = &n->disk.v[i];
        ms_err e = MS_OK;
        if (r->type == REC_SNAP) {
            e = raft_snapshot_meta_decode(r->p, r->len, &snap);
            if (e == MS_OK)
                e = raft_mem_apply_snapshot(n->mem, &snap);
            if (e == MS_OK) {
                kv_decode(&n->kv, r->blob, r->blob_len);
                n->applied = snap.index;
                n->conf = snap.conf;
                n->snap_index = snap.index;
            }
        } else if (r->type == REC_ENTRY) {
            struct raft_entry ent;
            e = raft_entry_decode(r->p, r->len, &ent);
            if (e == MS_OK)
                e = raft_mem_append(n->mem, &ent, 1);
        } else {
            e = raft_hard_state_decode(r->p, r->len, &hs);
        }
        if (e != MS_OK) {
            sim_fail(s, "n%llu: WAL replay failed at record %zu (%s)", (unsigned long long)id, i,
                     ms_err_name(e));
            return;
        }
    }
    raft_mem_set_hard(n->mem, &hs);
    n->up = true;
    n->last_commit = 0;
    n->last_applied = 0;
    n->checked_commit = 0;
    n->seen_commit = 0;
    make_core(s, n, &hs, &n->conf);
    if (!n->r)
        return;
    sim_check_restart(s, id);
    sim_trace(s, "n%llu restart term=%llu vote=%llu commit=%llu snap=%llu last=%llu",
              (unsigned long long)id, (unsigned long long)hs.term, (unsigned long long)hs.vote,
              (unsigned long long)hs.commit, (unsigned long long)snap.index,
              (unsigned long long)raft_mem_last_index(n->mem));
    start_ticking(s, n);
}

void sim_node_pause(struct sim *s, uint64_t id, uint64_t ms)
{
    struct sim_node *n = node(s, id);
    if (!n->up || n->paused)
        return;
    n->paused = true;
    n->resume_at = s->now + ms;
    n->missed_ticks = 0;
    sim_schedule(s, ms, EV_RESUME, id, n->incarnation, 0, NULL);
    sim_trace(s, "n%llu pause %llums", (unsigned long long)id, (unsigned long long)ms);
}

void sim_node_resume(struct sim *s, uint64_t id)
{
    struct sim_node *n = node(s, id);
    if (!n->up || !n->paused)
        return;
    n->paused = false;
    /* The tick timer catches up on the time the process was stopped (RAFT.md §3.5). */
    sim_trace(s, "n%llu resume, %llu missed ticks", (unsigned long long)id,
              (unsigned long long)n->missed_ticks);
    for (uint64_t i = 0; i < n->missed_ticks; i++)
        raft_tick(n->r);
    n->missed_ticks = 0;
}

void sim_node_tick(struct sim *s, uint64_t id, uint64_t incarnation)
{
    struct sim_node *n = node(s, id);
    if (!n->up || n->incarnation != incarnation)
        return;
    if (n->paused)
        n->missed_ticks++;
    else
        raft_tick(n->r);
    sim_schedule(s, n->tick_ms, EV_TICK, id, incarnation, 0, NULL);
}

/* ---- network ---- */

static void send_msg(struct sim *s, struct sim_node *n, const struct raft_msg *orig)
{
    struct raft_msg snap_msg;
    const struct raft_msg *m = orig;
    uint8_t blob[8 * SIM_KEYS];
    if (orig->type == RAFT_MSG_SNAP) {
        /* Like etcd's merged snapshot, the transport sends the state machine as it is now (at
         * the applied index, which is at or past the snapshot the core named), with matching
         * metadata: the receiver then finds itself in the configuration even if it was added
         * after the last local snapshot. */
        snap_msg = *orig;
        snap_msg.snap.index = n->applied;
        snap_msg.snap.conf = n->conf;
        if (n->applied < orig->snap.index ||
            raft_mem_ops.term(n->mem, n->applied, &snap_msg.snap.term) != MS_OK) {
            sim_fail(s, "n%llu cannot send a snapshot at its applied index %llu",
                     (unsigned long long)n->id, (unsigned long long)n->applied);
            return;
        }
        kv_encode(&n->kv, blob);
        m = &snap_msg;
    }
    sim_check_send(s, n->id, m);
    struct buf b;
    buf_init(&b);
    if (raft_msg_encode(m, &b) != MS_OK || buf_failed(&b)) {
        sim_fail(s, "n%llu: cannot encode its own message", (unsigned long long)n->id);
        buf_fini(&b);
        return;
    }
    struct sim_packet *pk = xmalloc(sizeof(*pk));
    pk->from = m->from;
    pk->to = m->to;
    pk->type = m->type;
    pk->bytes = buf_steal(&b, &pk->len);
    pk->blob = NULL;
    pk->blob_len = 0;
    pk->corrupt = false;
    if (m->type == RAFT_MSG_SNAP) {
        pk->blob = dup_bytes(blob, sizeof(blob));
        pk->blob_len = sizeof(blob);
        s->res->snapshots_sent++;
    }
    uint64_t to = m->to;
    bool lost = to == 0 || to > SIM_MAX_IDS || s->cut[n->id][to] || sim_chance(s, s->k.p_drop);
    if (lost) {
        /* The transport may notice (a full queue, a broken stream) and say so. */
        if (to >= 1 && to <= SIM_MAX_IDS && sim_chance(s, 500))
            raft_report_unreachable(n->r, to);
        if (m->type == RAFT_MSG_SNAP)
            raft_report_snapshot(n->r, to, false);
        free(pk->bytes);
        free(pk->blob);
        free(pk);
        return;
    }
    uint64_t delay =
        sim_chance(s, s->k.p_slow) ? sim_range(s, 100, 1000) : sim_range(s, 1, s->k.max_delay);
    /* Proposals and read requests are not idempotent: a stream transport never repeats them. */
    bool dup =
        m->type != RAFT_MSG_PROP && m->type != RAFT_MSG_READ_INDEX && sim_chance(s, s->k.p_dup);
    if (dup) {
        struct sim_packet *d = xmalloc(sizeof(*d));
        *d = *pk;
        d->bytes = dup_bytes(pk->bytes, pk->len);
        d->blob = pk->blob ? dup_bytes(pk->blob, pk->blob_len) : NULL;
        sim_schedule(s, delay + sim_range(s, 0, 50), EV_DELIVER, to, 0, 0, d);
    }
    if (sim_chance(s, s->k.p_corrupt)) {
        uint64_t bit = sim_range(s, 0, pk->len * 8 - 1);
        pk->bytes[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        pk->corrupt = true;
    }
    sim_schedule(s, delay, EV_DELIVER, to, 0, 0, pk);
}

static void free_packet(struct sim_packet *pk)
{
    free(pk->bytes);
    free(pk->blob);
    free(pk);
}

void sim_node_deliver(struct sim *s, struct sim_packet *pk)
{
    struct sim_node *n = node(s, pk->to);
    bool corrupted = pk->corrupt;
    struct sim_node *sender = node(s, pk->from);
    if (!sim_node_serving(s, pk->to) || s->cut[pk->from][pk->to]) {
        if (n->up && n->paused && !s->cut[pk->from][pk->to]) {
            /* a stopped process reads its socket once it runs again */
            sim_schedule(s, n->resume_at - s->now + 1, EV_DELIVER, pk->to, 0, 0, pk);
            return;
        }
        if (pk->type == RAFT_MSG_SNAP && sender->up && !sender->paused)
            raft_report_snapshot(sender->r, pk->to, false);
        free_packet(pk);
        return;
    }
    struct raft_msg m;
    ms_err e = raft_msg_decode(pk->bytes, pk->len, &m);
    if (corrupted) {
        if (e == MS_OK)
            sim_fail(s, "codec accepted a corrupted message");
        else
            sim_trace(s, "n%llu drops a corrupted message", (unsigned long long)pk->to);
        raft_msg_decoded_fini(&m);
        if (pk->type == RAFT_MSG_SNAP && sender->up && !sender->paused)
            raft_report_snapshot(sender->r, pk->to, false);
        free_packet(pk);
        return;
    }
    if (e != MS_OK) {
        sim_fail(s, "codec rejected a well-formed message (%s)", ms_err_name(e));
        free_packet(pk);
        return;
    }
    s->line.len = 0;
    tn_fmt_msg(&s->line, &m);
    sim_trace(s, "deliver %.*s", (int)s->line.len, (const char *)s->line.p);
    if (m.type == RAFT_MSG_SNAP) {
        in_snaps_put(n, m.snap.index, pk->blob, pk->blob_len);
        pk->blob = NULL;
    }
    e = raft_step(n->r, &m);
    /* responses from removed nodes are refused; forwarded proposals may be dropped */
    if (e != MS_OK && e != MS_E_NOT_EXIST && !raft_err_is_dropped(e))
        sim_fail(s, "n%llu rejected a message from n%llu: %s", (unsigned long long)pk->to,
                 (unsigned long long)pk->from, ms_err_name(e));
    if (m.type == RAFT_MSG_SNAP && sender->up && !sender->paused)
        raft_report_snapshot(sender->r, pk->to, true);
    raft_msg_decoded_fini(&m);
    free_packet(pk);
}

/* ---- applying ---- */

static void serve_reads(struct sim *s, struct sim_node *n)
{
    for (size_t i = 0; i < n->n_reads;) {
        struct sim_read *rd = &n->reads[i];
        if (rd->have_index && rd->index <= n->applied) {
            size_t op = rd->op;
            /* sim_op_done removes the read from this list */
            sim_op_done(s, op, OP_OK, n->kv.val[s->ops[op].lc.key]);
            continue;
        }
        i++;
    }
}

static void conf_change_applied(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    if (raft_cc_decode(e->data, e->len, &cc) != MS_OK) {
        sim_fail(s, "n%llu: undecodable conf change at %llu", (unsigned long long)n->id,
                 (unsigned long long)e->index);
        return;
    }
    struct raft_conf_state before = n->conf;
    if (raft_apply_conf_change(n->r, &cc, &n->conf) != MS_OK)
        sim_trace(s, "n%llu: conf change at %llu refused", (unsigned long long)n->id,
                  (unsigned long long)e->index);
    /* Consecutive configurations must share a quorum: voters change by one at most. */
    size_t diff = 0;
    for (size_t i = 0; i < before.n_voters; i++)
        diff += !raft_conf_has(&n->conf, before.voters[i], false);
    for (size_t i = 0; i < n->conf.n_voters; i++)
        diff += !raft_conf_has(&before, n->conf.voters[i], false);
    if (diff > 1)
        sim_fail(s, "Membership: n%llu applied a change of %zu voters at %llu",
                 (unsigned long long)n->id, diff, (unsigned long long)e->index);
    s->res->conf_changes++;
    for (uint64_t id = 1; id <= SIM_MAX_IDS; id++) {
        if (raft_conf_has(&before, id, true) && !raft_conf_has(&n->conf, id, true) &&
            !s->removed[id]) {
            s->removed[id] = true;
            sim_trace(s, "n%llu removed from the configuration", (unsigned long long)id);
            if (id == n->id)
                n->retire_pending = true;
            else
                sim_node_retire(s, id);
        }
    }
}

static void apply_entry(struct sim *s, struct sim_node *n, const struct raft_entry *e)
{
    sim_check_apply(s, n->id, e);
    n->applied = e->index;
    if (e->type == RAFT_ENTRY_CONF_CHANGE) {
        conf_change_applied(s, n, e);
        return;
    }
    if (e->len == 0)
        return;
    if (e->len != OP_LEN || e->data[0] != OP_MAGIC) {
        sim_fail(s, "n%llu applied a foreign entry at %llu", (unsigned long long)n->id,
                 (unsigned long long)e->index);
        return;
    }
    uint64_t idx = be64_get(e->data + 2);
    uint32_t key = e->data[10];
    uint64_t arg = be64_get(e->data + 11), expect = be64_get(e->data + 19);
    if (idx >= s->nops || key >= SIM_KEYS) {
        sim_fail(s, "n%llu applied an entry no client proposed", (unsigned long long)n->id);
        return;
    }
    struct sim_op *op = &s->ops[idx];
    if (op->status == OP_FAILED)
        sim_fail(s, "n%llu applied op %llu, a proposal the core reported dropped",
                 (unsigned long long)n->id, (unsigned long long)idx);
    uint64_t out = 0;
    if (e->data[1] == LC_PUT) {
        n->kv.val[key] = arg;
    } else if (n->kv.val[key] == expect) {
        n->kv.val[key] = arg;
        out = 1;
    }
    if (op->status == OP_PENDING && op->node == n->id && has_prop(n, idx)) {
        if (s->max_acked_index < e->index)
            s->max_acked_index = e->index;
        sim_op_done(s, idx, OP_OK, out);
        /* A leader cut off right after acknowledging a write may not have told anyone that it
         * committed it: its successor starts with an older commit index. */
        if (!s->healing && sim_chance(s, s->k.p_isolate_acker))
            sim_schedule(s, sim_range(s, 0, 2), EV_ISOLATE, n->id, n->incarnation, 0, NULL);
    }
}

/* Take a local snapshot at the applied index and compact the log and the WAL behind it. */
static void maybe_snapshot(struct sim *s, struct sim_node *n)
{
    if (n->applied < n->snap_index + n->snapshot_every || n->applied == 0)
        return;
    struct raft_snapshot_meta m = {.index = n->applied, .conf = n->conf};
    if (raft_mem_snapshot(n->mem, n->applied, &n->conf, s->k.catchup_keep) != MS_OK) {
        sim_fail(s, "n%llu: local snapshot at %llu refused", (unsigned long long)n->id,
                 (unsigned long long)n->applied);
        return;
    }
    raft_mem_snapshot_meta(n->mem, &m);
    uint8_t blob[8 * SIM_KEYS];
    kv_encode(&n->kv, blob);
    n->snap_index = m.index;
    /* The WAL becomes: snapshot, hard state, the entries after the snapshot (all synced). */
    disk_truncate(&n->disk, 0);
    write_snap(&n->disk, &m, blob, sizeof(blob));
    struct raft_hard_state hs;
    raft_mem_hard(n->mem, &hs);
    write_hard(&n->disk, &hs);
    for (uint64_t i = m.index + 1; i <= raft_mem_last_index(n->mem); i++)
        write_entry(&n->disk, raft_mem_entry(n->mem, i));
    n->disk.synced = n->disk.n;
    sim_trace(s, "n%llu snapshot at %llu", (unsigned long long)n->id, (unsigned long long)m.index);
}

/* ---- the Ready cycle ---- */

/* Apply the Ready's committed entries and note its read states, then serve every read whose
 * index the applied state has reached. */
static void apply_ready(struct sim *s, struct sim_node *n)
{
    struct raft_ready *rd = &n->rd;
    for (size_t i = 0; i < rd->n_committed && !s->failed; i++)
        apply_entry(s, n, &rd->committed[i]);
    for (size_t i = 0; i < rd->n_read_states; i++) {
        const struct raft_read_state *rs = &rd->read_states[i];
        for (size_t j = 0; j < n->n_reads; j++) {
            struct sim_read *r = &n->reads[j];
            if (r->ctx != rs->ctx || r->have_index)
                continue;
            r->index = rs->index;
            r->have_index = true;
            /* The read must observe every write acknowledged before it began. */
            if (rs->index < s->ops[r->op].min_read_index)
                sim_fail(s, "Read index: n%llu read at %llu, below acknowledged write %llu",
                         (unsigned long long)n->id, (unsigned long long)rs->index,
                         (unsigned long long)s->ops[r->op].min_read_index);
        }
    }
    serve_reads(s, n);
}

static void persist_done(struct sim *s, struct sim_node *n)
{
    struct raft_ready *rd = &n->rd;
    n->disk.synced = n->disk.n;
    if (rd->has_snapshot) {
        if (raft_mem_apply_snapshot(n->mem, &rd->snapshot) != MS_OK)
            sim_fail(s, "n%llu: stale snapshot in a Ready", (unsigned long long)n->id);
        kv_decode(&n->kv, n->rd_snap_blob, n->rd_snap_len);
        n->applied = rd->snapshot.index;
        n->conf = rd->snapshot.conf;
        n->snap_index = rd->snapshot.index;
    }
    if (raft_mem_append(n->mem, rd->entries, rd->n_entries) != MS_OK)
        sim_fail(s, "n%llu: a Ready's entries do not fit the log", (unsigned long long)n->id);
    if (rd->hard_changed)
        raft_mem_set_hard(n->mem, &rd->hard);
    if (n->crash_stage == 2) {
        sim_trace(s, "n%llu crash point: synced, before sending", (unsigned long long)n->id);
        sim_node_crash(s, n->id);
        return;
    }
    for (size_t i = 0; i < rd->n_msgs_after_persist; i++)
        send_msg(s, n, &rd->msgs_after_persist[i]);
    if (!n->rd_applied)
        apply_ready(s, n);
    if (n->crash_stage == 3) {
        sim_trace(s, "n%llu crash point: applied, before advance", (unsigned long long)n->id);
        sim_node_crash(s, n->id);
        return;
    }
    raft_advance(n->r, &n->rd);
    n->rd_out = false;
    if (n->retire_pending) {
        sim_node_retire(s, n->id);
        return;
    }
    maybe_snapshot(s, n);
}

void sim_node_sync_done(struct sim *s, uint64_t id, uint64_t incarnation)
{
    struct sim_node *n = node(s, id);
    if (!n->up || n->incarnation != incarnation || !n->rd_out)
        return;
    persist_done(s, n);
}

/* As the server does while a Ready's fdatasync is pending: apply what has been committed since
 * and is stable here already (raft_committed_now), once the Ready's own committed entries are
 * applied. Only on the seeds that apply in the server's order, so the others run unchanged. */
static void apply_now(struct sim *s, struct sim_node *n)
{
    if (!s->k.p_apply_early || !n->up || n->paused || !n->rd_out ||
        (n->rd.n_committed && !n->rd_applied))
        return;
    if (!raft_has_committed_now(n->r))
        return;
    sim_check_commit(s, n->id); /* under the configuration that committed them, as below */
    const struct raft_entry *ents;
    size_t k = raft_committed_now(n->r, &ents);
    sim_trace(s, "n%llu applies %llu..%llu while its Ready persists", (unsigned long long)n->id,
              (unsigned long long)ents[0].index, (unsigned long long)ents[k - 1].index);
    for (size_t i = 0; i < k && !s->failed; i++) {
        sim_check_durable(s, n->id, &ents[i]);
        apply_entry(s, n, &ents[i]);
    }
    raft_advance_committed(n->r);
    s->res->now_applies++;
    serve_reads(s, n);
}

void sim_node_flush(struct sim *s, uint64_t id)
{
    struct sim_node *n = node(s, id);
    apply_now(s, n);
    for (int guard = 0; n->up && !n->paused && !n->rd_out && !s->failed && raft_has_ready(n->r);
         guard++) {
        if (guard > 1000) {
            sim_fail(s, "n%llu: Ready loop does not settle", (unsigned long long)id);
            return;
        }
        sim_check_commit(s, id);
        struct raft_ready *rd = &n->rd;
        if (raft_ready(n->r, rd) != MS_OK) {
            sim_fail(s, "n%llu: raft_ready refused", (unsigned long long)id);
            return;
        }
        n->rd_out = true;
        sim_trace(s, "n%llu ready: hard %llu/%llu/%llu%s entries %zu%s committed %zu msgs %zu+%zu",
                  (unsigned long long)id, (unsigned long long)rd->hard.term,
                  (unsigned long long)rd->hard.vote, (unsigned long long)rd->hard.commit,
                  rd->hard_changed ? "*" : "", rd->n_entries, rd->has_snapshot ? " +snap" : "",
                  rd->n_committed, rd->n_msgs, rd->n_msgs_after_persist);
        sim_check_ready(s, id, rd);
        n->crash_stage = sim_chance(s, s->k.p_crash_point) ? (int)sim_range(s, 1, 3) : 0;
        for (size_t i = 0; i < rd->n_msgs; i++)
            send_msg(s, n, &rd->msgs[i]);
        /* As the server does: apply the committed entries (durable already) before persisting
         * this Ready's own; a snapshot would come first, so such a Ready keeps the late path.
         * The draw is skipped when the knob is off, leaving those seeds' runs unchanged. */
        n->rd_applied = false;
        if (s->k.p_apply_early && rd->n_committed && !rd->has_snapshot &&
            sim_range(s, 1, 100) <= s->k.p_apply_early) {
            sim_trace(s, "n%llu applies %llu..%llu before persisting", (unsigned long long)id,
                      (unsigned long long)rd->committed[0].index,
                      (unsigned long long)rd->committed[rd->n_committed - 1].index);
            for (size_t i = 0; i < rd->n_committed; i++)
                sim_check_durable(s, id, &rd->committed[i]);
            n->rd_applied = true;
            s->res->early_applies++;
            /* the window this order opens: applied, then a crash before the fsync */
            if (!n->crash_stage && sim_chance(s, s->k.p_crash_point))
                n->crash_stage = 1;
            apply_ready(s, n);
            if (s->failed || !n->up)
                return;
        }
        if (rd->has_snapshot) {
            size_t blen = 0;
            const uint8_t *blob = in_snaps_get(n, rd->snapshot.index, &blen);
            if (!blob) {
                sim_fail(s, "n%llu: Ready snapshot %llu without its data", (unsigned long long)id,
                         (unsigned long long)rd->snapshot.index);
                return;
            }
            write_snap(&n->disk, &rd->snapshot, blob, blen);
            free(n->rd_snap_blob);
            n->rd_snap_blob = dup_bytes(blob, blen);
            n->rd_snap_len = blen;
        }
        for (size_t i = 0; i < rd->n_entries; i++)
            write_entry(&n->disk, &rd->entries[i]);
        if (rd->hard_changed)
            write_hard(&n->disk, &rd->hard);
        if (n->crash_stage == 1) {
            sim_trace(s, "n%llu crash point: sent%s, before fsync", (unsigned long long)id,
                      n->rd_applied ? " and applied" : "");
            sim_node_crash(s, id);
            return;
        }
        if (sim_range(s, 1, 100) <= s->k.p_async) {
            /* a slow fsync: the node keeps stepping messages meanwhile */
            sim_schedule(s, sim_range(s, 1, s->k.max_sync), EV_SYNC, id, n->incarnation, 0, NULL);
            return;
        }
        persist_done(s, n);
    }
}

/* ---- clients ---- */

void sim_node_submit(struct sim *s, uint64_t id, size_t op)
{
    struct sim_node *n = node(s, id);
    struct sim_op *o = &s->ops[op];
    o->node = id;
    if (o->lc.kind == LC_GET) {
        o->min_read_index = s->max_acked_index;
        n->reads[n->n_reads++] = (struct sim_read){.ctx = o->id, .op = op};
        raft_read_index(n->r, o->id);
        return;
    }
    uint8_t data[OP_LEN];
    data[0] = OP_MAGIC;
    data[1] = (uint8_t)o->lc.kind;
    be64_put(data + 2, op);
    data[10] = (uint8_t)o->lc.key;
    be64_put(data + 11, o->lc.arg);
    be64_put(data + 19, o->lc.expect);
    ms_err e = raft_propose(n->r, data, sizeof(data));
    if (e == MS_OK) {
        n->props[n->n_props++] = op;
        return;
    }
    if (!raft_err_is_dropped(e))
        sim_fail(s, "n%llu: propose failed with %s", (unsigned long long)id, ms_err_name(e));
    sim_op_done(s, op, OP_FAILED, 0);
}

void sim_node_forget(struct sim *s, uint64_t id, size_t op)
{
    if (id >= 1 && id <= SIM_MAX_IDS)
        forget_op(node(s, id), op);
}
