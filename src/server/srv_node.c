/* srv_node.c - this member's Raft node: the core, its in-memory log, the WAL, and the ready
 * step that turns the core's output into WAL writes, applies and answers (RAFT.md §3.2, §3.5).
 *
 * One step (on_ready, once per loop turn when woken): while the core has a Ready and none
 * is outstanding, take it; apply its committed entries (they are durable here already, so this
 * may precede the persisting of the Ready's own entries, as etcd applies in parallel with its
 * WAL write); append its entries and hard state to the WAL; if it must be synced, start the
 * asynchronous fdatasync and leave the Ready outstanding until it completes (on_synced).
 * Then the Ready is persisted: its entries join the in-memory log, and raft_advance lets the
 * core count its own acknowledgement. Proposals made while a sync is in flight wait in the
 * core and share the next sync (group commit). Reads queued before the step are served at its
 * end: a single voter answers them at once, and every write already answered is applied.
 *
 * At start the node is rebuilt from what is durable: the backend's applied index, term and
 * configuration (written in the same transaction as the entries they describe), the WAL's hard
 * state and the entries after the applied index. The core hands the committed ones back for
 * applying; a single voter then campaigns, and the start waits (bounded) until it leads and has
 * applied everything its log holds, so that nothing is served from a state behind the WAL.
 */
#include "srv_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Entries kept in memory below the applied index for followers that lag (etcd keeps
 * SnapshotCatchUpEntries = 5000), and at most this many bytes of them. */
#define NODE_KEEP_ENTRIES 5000
#define NODE_KEEP_BYTES   (64u << 20)
/* Ready steps per loop turn before yielding to I/O (the loop wakes itself to continue). */
#define NODE_READY_PER_TURN 64
/* Ready steps the start may take to elect itself and apply the log. */
#define NODE_START_STEPS 1000000

/* The WAL segment size: METASTORE_WAL_SEGMENT_BYTES in the environment (at least 4 KiB), so
 * that tests see segments roll and go without writing 64 MiB each; else the default. */
static uint64_t wal_segment_bytes(void)
{
    const char *v = getenv("METASTORE_WAL_SEGMENT_BYTES");
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n < 4096) {
        log_warn("ignoring METASTORE_WAL_SEGMENT_BYTES=%s: want a byte count of at least 4096", v);
        return 0;
    }
    return n;
}

/* ---- the ready step ---- */

static void fatal_sync(struct srv_node *n, ms_err e)
{
    ms_fatal("wal: cannot persist entries up to %llu: %s",
             (unsigned long long)raft_mem_last_index(n->mem), ms_err_name(e));
}

/* Drop in-memory entries below the applied index (the WAL keeps them durable). A member with
 * peers keeps some for followers that lag; a single voter has nobody to send them to. */
static void trim_log(struct srv_node *n, uint64_t applied)
{
    uint64_t first = raft_mem_first_index(n->mem);
    if (applied < first)
        return;
    uint64_t keep_from = applied + 1, bytes = 0;
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.conf.n_voters + st.conf.n_learners > 1) {
        if (applied < first + NODE_KEEP_ENTRIES / 4)
            return; /* trim in steps, not at every entry */
        while (keep_from > first && applied + 1 - keep_from < NODE_KEEP_ENTRIES) {
            const struct raft_entry *e = raft_mem_entry(n->mem, keep_from - 1);
            if (!e || bytes + e->len > NODE_KEEP_BYTES)
                break;
            bytes += e->len;
            keep_from--;
        }
    }
    if (keep_from > first && raft_mem_compact(n->mem, keep_from - 1) != MS_OK)
        log_warn("raft: cannot trim the in-memory log below %llu", (unsigned long long)keep_from);
}

/* Hand committed entries to the state machine in order. A conf change takes effect in the core
 * first (when applied, never when appended); the state machine records what it left. */
static void apply_committed(struct srv *s, const struct raft_entry *ents, size_t n)
{
    uint64_t applied = srv_applied(s);
    const struct raft_entry *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *ent = &ents[i];
        if (ent->index <= applied)
            continue; /* the bootstrap's entries come back once they are persisted */
        last = ent;
        if (ent->type != RAFT_ENTRY_CONF_CHANGE) {
            srv_apply_entry(s, ent, NULL);
            continue;
        }
        struct raft_conf_change cc;
        struct raft_conf_state cs;
        if (raft_cc_decode(ent->data, ent->len, &cc) != MS_OK)
            ms_fatal("conf change entry %llu does not decode", (unsigned long long)ent->index);
        if (raft_apply_conf_change(s->node.raft, &cc, &cs) != MS_OK) {
            log_warn("conf change entry %llu (%d on %016llx) is refused: it would leave no voter",
                     (unsigned long long)ent->index, (int)cc.type, (unsigned long long)cc.node_id);
            struct raft_status st;
            raft_status(s->node.raft, &st);
            cs = st.conf;
        }
        srv_apply_entry(s, ent, &cs);
    }
    if (last)
        srv_apply_end(s, last->index, last->term);
}

/* The Ready is durable: make its entries stable, send what waited for that, let the core go. */
static void persisted(struct srv *s)
{
    struct srv_node *n = &s->node;
    struct raft_ready *rd = &n->rd;
    if (rd->n_entries && raft_mem_append(n->mem, rd->entries, rd->n_entries) != MS_OK)
        ms_fatal("raft: the Ready's entries %llu.. do not follow the log",
                 (unsigned long long)rd->entries[0].index);
    if (rd->hard_changed) {
        raft_mem_set_hard(n->mem, &rd->hard);
        n->term = rd->hard.term;
    }
    /* msgs_after_persist and read states concern peers, which come with the cluster: a single
     * voter's acknowledgements are internal and it reads without ReadIndex. */
    raft_advance(n->raft, rd);
    n->rd_out = false;
    trim_log(n, srv_applied(s));
}

/* Take and handle Readys until one waits for its sync (returns true) or none is left. With
 * wait, syncs happen in place (the start, before the loop runs). */
static bool run_ready(struct srv *s, bool wait)
{
    struct srv_node *n = &s->node;
    for (int i = 0; i < NODE_READY_PER_TURN && !n->rd_out && raft_has_ready(n->raft); i++) {
        struct raft_ready *rd = &n->rd;
        if (raft_ready(n->raft, rd) != MS_OK)
            ms_fatal("raft: a Ready is still outstanding");
        n->rd_out = true;
        if (rd->soft_changed) {
            n->leader_changes += rd->soft.lead != n->lead && rd->soft.lead != RAFT_NONE;
            n->lead = rd->soft.lead;
            n->role = rd->soft.role;
        }
        if (rd->has_snapshot)
            /* Only a leader sends snapshots, and this member is the only voter. */
            ms_fatal("raft: a snapshot at index %llu arrived, but this member has no peers",
                     (unsigned long long)rd->snapshot.index);
        if (rd->n_committed)
            apply_committed(s, rd->committed, rd->n_committed);
        if (rd->n_entries || rd->hard_changed) {
            ms_err e =
                wal_append(n->wal, rd->hard_changed ? &rd->hard : NULL, rd->entries, rd->n_entries);
            if (e)
                fatal_sync(n, e);
            s->ctr.ready_batches += rd->n_entries > 0;
        }
        if (rd->must_sync) {
            ms_err e;
            if (wait) {
                if ((e = wal_sync(n->wal)) != MS_OK)
                    fatal_sync(n, e);
            } else {
                bool started;
                if ((e = wal_sync_begin(n->wal, &started)) != MS_OK)
                    fatal_sync(n, e);
                if (started)
                    return true; /* on_synced finishes this Ready */
            }
        }
        persisted(s);
    }
    return n->rd_out;
}

void srv_wake(struct srv *s)
{
    if (!s->node.ready_pending) {
        s->node.ready_pending = true;
        event_active(s->node.ready_ev, EV_TIMEOUT, 1);
    }
}

/* The end of a step: more Readys wait (the per-turn bound stopped us) → another turn. */
static void step_end(struct srv *s)
{
    if (!s->node.rd_out && raft_has_ready(s->node.raft))
        srv_wake(s);
    arena_reset(s->scratch);
    srv_copy_poll(s);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    s->node.ready_pending = false;
    struct srv_reads reads;
    srv_reads_take(s, &reads); /* callbacks below may queue new reads: they wait a turn */
    run_ready(s, false);
    srv_reads_serve(s, &reads);
    step_end(s);
}

static void on_synced(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    struct srv_node *n = &s->node;
    (void)fd;
    (void)what;
    bool done;
    ms_err e = wal_sync_end(n->wal, &done);
    if (e)
        fatal_sync(n, e);
    if (!done || !n->rd_out)
        return;
    persisted(s);
    run_ready(s, false);
    step_end(s);
}

/* Ticks from the monotonic clock: a loop that stalled catches up on every tick it missed. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    struct srv_node *n = &s->node;
    (void)fd;
    (void)what;
    uint64_t now = clock_now_ms();
    uint64_t ticks = (now - n->tick_ms) / s->cfg.heartbeat_ms;
    if (ticks > (uint64_t)s->cfg.election_ms / s->cfg.heartbeat_ms * 2)
        ticks = s->cfg.election_ms / s->cfg.heartbeat_ms * 2; /* enough to time out anything */
    n->tick_ms += (now - n->tick_ms) / s->cfg.heartbeat_ms * s->cfg.heartbeat_ms;
    for (uint64_t i = 0; i < ticks; i++)
        raft_tick(n->raft);
    if (raft_has_ready(n->raft))
        srv_wake(s);
}

ms_err srv_node_propose(struct srv *s, const uint8_t *data, size_t len)
{
    ms_err e = raft_propose(s->node.raft, data, len);
    if (e == MS_OK)
        srv_wake(s);
    return e;
}

/* ---- start and stop ---- */

/* The term of the entry at the applied index, which becomes the in-memory log's base: the WAL's
 * entry there, or the snapshot marker at it, or the term recorded with the applied index, or
 * (a data directory from before that was recorded) the first later entry's term. */
static uint64_t base_term(const struct wal_log *log, uint64_t applied, uint64_t applied_term)
{
    if (!applied)
        return 0;
    for (size_t i = 0; i < log->n_entries; i++)
        if (log->entries[i].index == applied)
            return log->entries[i].term;
    if (log->has_snapshot && log->snap.index == applied)
        return log->snap.term;
    if (applied_term)
        return applied_term;
    for (size_t i = 0; i < log->n_entries; i++)
        if (log->entries[i].index > applied)
            return log->entries[i].term;
    return log->hs.term;
}

/* The configuration at the applied index. Without a recorded one, a log that is not empty is
 * this member's alone: a data directory from before configurations were recorded, or a
 * restored snapshot (which starts a new cluster, as etcdctl snapshot restore does). */
static struct raft_conf_state start_conf(const struct srv *s, const struct srv_durable *d)
{
    if (d->have_conf)
        return d->conf;
    return (struct raft_conf_state){.n_voters = 1, .voters = {s->member_id}};
}

/* Fill the in-memory log from the WAL: base (applied, its term), then the entries after it. */
static ms_err fill_log(struct srv *s, const struct wal_log *log, const struct srv_durable *d)
{
    struct srv_node *n = &s->node;
    uint64_t applied = d->applied;
    if (applied) {
        struct raft_snapshot_meta base = {.index = applied,
                                          .term = base_term(log, applied, d->applied_term),
                                          .conf = start_conf(s, d)};
        if (raft_mem_apply_snapshot(n->mem, &base) != MS_OK)
            return MS_E_INTERNAL;
    }
    for (size_t i = 0; i < log->n_entries; i++) {
        const struct raft_entry *ent = &log->entries[i];
        if (ent->index <= applied)
            continue;
        if (ent->index != raft_mem_last_index(n->mem) + 1) {
            log_error("the WAL holds entry %llu after %llu, but the store has applied up to %llu: "
                      "entries are missing",
                      (unsigned long long)ent->index,
                      (unsigned long long)raft_mem_last_index(n->mem), (unsigned long long)applied);
            return MS_E_DATA_CORRUPT;
        }
        if (raft_mem_append(n->mem, ent, 1) != MS_OK)
            return MS_E_DATA_CORRUPT;
    }
    return MS_OK;
}

static ms_err create_core(struct srv *s, const struct wal_log *log, const struct srv_durable *d)
{
    struct srv_node *n = &s->node;
    struct raft_config rc;
    raft_config_default(&rc, s->member_id);
    rc.election_tick = (int)(s->cfg.election_ms / s->cfg.heartbeat_ms);
    rc.heartbeat_tick = 1;
    rc.max_uncommitted_bytes = (uint64_t)1 << 30; /* etcd maxUncommittedEntriesSize */
    rc.max_committed_bytes_per_ready = 64u << 20; /* apply whole batches */
    rc.applied = d->applied;
    rc.seed = clock_now_ns() ^ s->member_id;
    rc.log = &raft_mem_ops;
    rc.log_ctx = n->mem;
    struct raft_hard_state hs = log->hs;
    if (d->legacy_term > hs.term)
        hs.term = d->legacy_term; /* the term a data directory recorded before it had a WAL */
    if (hs.commit > raft_mem_last_index(n->mem))
        hs.commit = raft_mem_last_index(n->mem);
    raft_mem_set_hard(n->mem, &hs);
    n->term = hs.term;
    struct raft_conf_state cs = start_conf(s, d);
    bool fresh = !d->have_conf && raft_mem_last_index(n->mem) == 0;
    ms_err e = raft_create(&rc, &hs, fresh ? NULL : &cs, &n->raft);
    if (e) {
        log_error("raft: cannot start the node (term %llu, commit %llu, applied %llu): %s",
                  (unsigned long long)hs.term, (unsigned long long)hs.commit,
                  (unsigned long long)d->applied, ms_err_name(e));
        return e;
    }
    if (fresh) {
        /* A new member: the configuration is this one voter (etcd --initial-cluster). */
        if ((e = raft_bootstrap(n->raft, &s->member_id, 1)) != MS_OK)
            return e;
    }
    return MS_OK;
}

/* Elect this single voter and apply everything the log holds before serving. */
static ms_err settle(struct srv *s)
{
    struct srv_node *n = &s->node;
    raft_campaign(n->raft);
    for (uint64_t i = 0; i < NODE_START_STEPS; i++) {
        struct raft_status st;
        raft_status(n->raft, &st);
        if (st.soft.role == RAFT_LEADER && srv_applied(s) >= st.hard.commit &&
            st.hard.commit >= raft_mem_last_index(n->mem) && !raft_has_ready(n->raft))
            return MS_OK;
        if (!raft_has_ready(n->raft)) {
            if (st.soft.role != RAFT_LEADER)
                raft_campaign(n->raft);
            if (!raft_has_ready(n->raft))
                break;
        }
        run_ready(s, true);
        arena_reset(s->scratch);
    }
    struct raft_status st;
    raft_status(n->raft, &st);
    log_error("raft: the node did not settle at start (%s, term %llu, commit %llu, applied %llu, "
              "last index %llu)",
              raft_role_name(st.soft.role), (unsigned long long)st.hard.term,
              (unsigned long long)st.hard.commit, (unsigned long long)srv_applied(s),
              (unsigned long long)raft_mem_last_index(n->mem));
    return MS_E_INTERNAL;
}

ms_err srv_node_wal_open(struct srv *s, uint64_t from, struct wal_log *log)
{
    char dir[4200];
    uint8_t meta[SRV_WAL_META_LEN];
    snprintf(dir, sizeof(dir), "%s/member/wal", s->cfg.data_dir);
    be64_put(meta, s->member_id);
    be64_put(meta + 8, s->cluster_id);
    ms_err e = wal_open(dir, from, meta, sizeof(meta), wal_segment_bytes(), &s->node.wal, log);
    if (e)
        log_error("cannot open the WAL in %s: %s", dir, ms_err_name(e));
    return e;
}

ms_err srv_node_start(struct srv *s, const struct wal_log *log, const struct srv_durable *d)
{
    struct srv_node *n = &s->node;
    ms_err e;
    if (!(n->mem = raft_mem_create()))
        return MS_E_NOMEM;
    if ((e = fill_log(s, log, d)) != MS_OK || (e = create_core(s, log, d)) != MS_OK ||
        (e = settle(s)) != MS_OK)
        return e;
    n->ready_ev = event_new(s->base, -1, 0, on_ready, s);
    n->tick_ev = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    if (!n->ready_ev || !n->tick_ev)
        return MS_E_NOMEM;
    n->tick_ms = clock_now_ms();
    struct timeval tv = {(time_t)(s->cfg.heartbeat_ms / 1000),
                         (suseconds_t)(s->cfg.heartbeat_ms % 1000) * 1000};
    if (event_add(n->tick_ev, &tv) != 0)
        return MS_E_NOMEM;
    if (wal_sync_fd(n->wal) >= 0) {
        n->sync_ev = event_new(s->base, wal_sync_fd(n->wal), EV_READ | EV_PERSIST, on_synced, s);
        if (!n->sync_ev || event_add(n->sync_ev, NULL) != 0)
            return MS_E_NOMEM;
    }
    return MS_OK;
}

void srv_node_close(struct srv *s)
{
    struct srv_node *n = &s->node;
    if (n->sync_ev)
        event_free(n->sync_ev);
    if (n->tick_ev)
        event_free(n->tick_ev);
    if (n->ready_ev)
        event_free(n->ready_ev);
    raft_destroy(n->raft);
    raft_mem_destroy(n->mem);
    wal_close(n->wal);
    memset(n, 0, sizeof(*n));
}

void srv_node_durable(struct srv *s, uint64_t index)
{
    /* The entry at index stays: its term is the log's base at the next start. */
    ms_err e = wal_release_before(s->node.wal, index);
    if (e)
        log_warn("wal: releasing segments below %llu failed: %s", (unsigned long long)index,
                 ms_err_name(e));
}

void srv_node_snapshot_saved(struct srv *s, uint64_t index, uint64_t term)
{
    struct raft_status st;
    raft_status(s->node.raft, &st);
    struct raft_snapshot_meta m = {.index = index, .term = term, .conf = st.conf};
    ms_err e = wal_append_snapshot(s->node.wal, &m);
    if (e || (e = wal_sync(s->node.wal)) != MS_OK)
        ms_fatal("wal: cannot record snapshot %llu: %s", (unsigned long long)index, ms_err_name(e));
    srv_node_durable(s, index);
}

uint64_t srv_node_term(const struct srv *s)
{
    return s->node.term;
}

void srv_node_wal_stats(const struct srv *s, struct wal_stats *out)
{
    wal_get_stats(s->node.wal, out);
}

void srv_node_status(const struct srv *s, struct srv_node_status *st)
{
    struct raft_status rs;
    raft_status(s->node.raft, &rs);
    st->term = rs.hard.term;
    st->commit = rs.hard.commit;
    st->last_index = rs.last_index;
    st->lead = rs.soft.lead;
    st->is_leader = rs.soft.role == RAFT_LEADER;
    st->leader_changes = s->node.leader_changes;
    st->conf = rs.conf;
}
