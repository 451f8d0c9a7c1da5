/* srv_node.c - this member's Raft node: the core, its in-memory log, the WAL, the peer
 * transport, and the ready step that turns the core's output into WAL writes, messages,
 * applies and answers (RAFT.md §3.2, §3.5).
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
 *
 * With peers, the Ready's messages go out at once (the leader sends its appends before its own
 * sync, RAFT.md §3.2 rule 2) and its msgs_after_persist (a follower's acknowledgements, votes)
 * once the sync is done. Messages from peers are stepped in as they arrive. Linearizable reads
 * wait for a ReadIndex (srv_read.c). Every proposal has a deadline, etcd's request timeout: a
 * proposal made while there is no leader is held here and proposed once one is known, or fails
 * with "context deadline exceeded" at its deadline (it never reached the log); one proposed but
 * not applied by then fails with "request timed out", which does not say it failed (it may
 * still commit).
 *
 * At start the node is rebuilt from what is durable: the backend's applied index, term and
 * configuration (written in the same transaction as the entries they describe), the WAL's hard
 * state and the entries after the applied index. The core hands the committed ones back for
 * applying; a single voter then campaigns, and the start waits (bounded) until it leads and has
 * applied everything its log holds, so that nothing is served from a state behind the WAL. A
 * member with peers applies what its log holds as committed and leaves the election to the
 * ticks and its peers.
 */
#include "srv_int.h"

#include "metastore/clock.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/log.h"
#include "metastore/peer.h"
#include "metastore/raft_codec.h"
#include "metastore/snap.h"
#include "metastore/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* Entries kept in memory below the applied index for followers that lag (etcd keeps
 * SnapshotCatchUpEntries = 5000), and at most this many bytes of them. */
#define NODE_KEEP_ENTRIES 5000
#define NODE_KEEP_BYTES   (64u << 20)
/* In-memory entries (bytes of data) above which a member with peers trims at once. */
#define NODE_MEM_MAX_BYTES (256u << 20)
/* Entries a trim frees per Ready: freeing 100,000 at once took 9-19 ms, on every member at the
 * same index, so the whole cluster stopped together. */
#define NODE_TRIM_SLICE 4096
/* Ready steps per loop turn before yielding to I/O (the loop wakes itself to continue). */
#define NODE_READY_PER_TURN 64
/* Ready steps the start may take to elect itself and apply the log. */
#define NODE_START_STEPS 1000000
/* Proposals held while there is no leader, at most (beyond: "too many requests"). */
#define NODE_HELD_MAX_BYTES (64u << 20)
#define NODE_HELD_MAX       100000
/* ReadIndex contexts asked again per tick, at most. */
#define NODE_READ_RETRY_MAX 64

/* A proposal waiting for a leader (data follows the struct). */
struct node_held {
    struct node_held *next;
    uint64_t id;
    uint64_t deadline_ms;
    size_t len;
    uint8_t data[];
};

/* A conf change (its context follows the struct) proposed for caller id, proposed again every
 * NODE_CONF_RETRY_MS until it is applied: a leader drops one silently while another is pending
 * (it turns it into an empty entry), which a leader just elected does until it has applied its
 * first entry. Proposing a change twice is harmless: every member refuses the second when it
 * applies it (the member exists, is gone, is no learner), and the caller was answered by the
 * first. While the leader is away, the change waits for leadership to move. */
struct node_conf {
    struct node_conf *next;
    uint64_t id;
    uint64_t deadline_ms;
    uint64_t next_ms; /* when to propose (again) */
    bool proposed;
    enum raft_cc_type type;
    uint64_t node;
    uint64_t away;
    size_t len;
    uint8_t ctx[];
};
#define NODE_CONF_RETRY_MS 500

/* A promote sent to the leader for its caller id (only the leader knows whether the learner
 * has caught up): asked again when another member leads. */
struct node_promote {
    struct node_promote *next;
    uint64_t id;
    uint64_t member;
    uint64_t sent_to;
    uint64_t deadline_ms;
};

/* Application messages (peer_send_app) of the membership: a follower asks the leader to
 * promote a learner, the leader answers only when it refuses. The lease's use 1-4. */
enum { APP_PROMOTE_ASK = 16, APP_PROMOTE_REFUSED = 17 };
#define APP_PROMOTE_LEN 21 /* type, the asker's request id, the member, an error (refused) */

/* A proposal in flight: its caller times out at deadline_ms. */
struct node_deadline {
    uint64_t id;
    uint64_t deadline_ms;
};

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

/* Drop in-memory entries below the applied index (the WAL keeps them durable). A single voter
 * has nobody to send them to. A member with peers keeps them for followers that lag, as etcd
 * does between two snapshots: it trims once --snapshot-count entries are applied beyond what it
 * holds (or they take more than NODE_MEM_MAX_BYTES), keeping the last NODE_KEEP_ENTRIES (etcd
 * SnapshotCatchUpEntries, at most NODE_KEEP_BYTES). A follower further behind needs a
 * snapshot. The entries go NODE_TRIM_SLICE per Ready, not all in one. */
static void trim_log(struct srv *s, uint64_t applied)
{
    struct srv_node *n = &s->node;
    uint64_t first = raft_mem_first_index(n->mem);
    if (applied < first)
        return;
    ms_err e = MS_OK;
    if (!n->peer) {
        /* Recorded as a snapshot: a member added later gets one from here. */
        struct raft_status st;
        raft_status(n->raft, &st);
        if ((e = raft_mem_snapshot(n->mem, applied, &st.conf, 0)) != MS_OK)
            log_warn("raft: cannot trim the in-memory log below %llu",
                     (unsigned long long)applied + 1);
        return;
    }
    if (n->trim_to <= first) {
        if (applied + 1 - first < s->cfg.snapshot_count + NODE_KEEP_ENTRIES &&
            n->mem_bytes < NODE_MEM_MAX_BYTES)
            return;
        uint64_t keep_from = applied + 1, bytes = 0;
        while (keep_from > first && applied + 1 - keep_from < NODE_KEEP_ENTRIES) {
            const struct raft_entry *ent = raft_mem_entry(n->mem, keep_from - 1);
            if (!ent || bytes + ent->len > NODE_KEEP_BYTES)
                break;
            bytes += ent->len;
            keep_from--;
        }
        if (keep_from <= first)
            return;
        /* Recorded as a snapshot at the applied index, so that the core knows a follower
         * behind it needs one (the state machine is copied when it is sent); the entries
         * below keep_from go a slice per Ready from here on. */
        struct raft_status st;
        raft_status(n->raft, &st);
        if ((e = raft_mem_snapshot(n->mem, applied, &st.conf, applied + 1 - first)) != MS_OK) {
            log_warn("raft: cannot record a snapshot at %llu", (unsigned long long)applied);
            return;
        }
        n->trim_to = keep_from;
    }
    uint64_t to = n->trim_to - first > NODE_TRIM_SLICE ? first + NODE_TRIM_SLICE : n->trim_to;
    uint64_t dropped = 0;
    for (uint64_t i = first; i < to; i++)
        dropped += raft_mem_entry(n->mem, i)->len;
    if ((e = raft_mem_compact(n->mem, to - 1)) != MS_OK) {
        log_warn("raft: cannot trim the in-memory log below %llu", (unsigned long long)to);
        n->trim_to = 0;
        return;
    }
    n->mem_bytes = n->mem_bytes > dropped ? n->mem_bytes - dropped : 0;
    if (to < n->trim_to)
        return;
    /* Done: count again what is held (a follower's replaced suffixes were counted twice). */
    n->mem_bytes = 0;
    for (uint64_t i = to; i <= raft_mem_last_index(n->mem); i++)
        n->mem_bytes += raft_mem_entry(n->mem, i)->len;
}

static ms_err start_peers(struct srv *s);

/* This member applied its own removal: it stops, as etcd's does a moment later
 * (stopWithDelay), so that the answer to whoever asked still goes out. */
static void on_removed_stop(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    log_warn("the data directory used by this member must be removed (%s)", s->cfg.data_dir);
    event_base_loopbreak(s->base);
}

static void removed_self(struct srv *s, const char *how)
{
    struct srv_node *n = &s->node;
    if (n->removed)
        return;
    n->removed = true;
    log_warn("the member %016llx has been permanently removed from the cluster %016llx (%s): "
             "stopping",
             (unsigned long long)s->member_id, (unsigned long long)s->cluster_id, how);
    struct timeval tv = {1, 0};
    if (!n->stop_ev && !(n->stop_ev = evtimer_new(s->base, on_removed_stop, s)))
        ms_fatal("out of memory");
    evtimer_add(n->stop_ev, &tv);
}

static void peer_urls_of(const struct cluster_member *m, const char **urls)
{
    for (size_t j = 0; j < m->n_peer_urls; j++)
        urls[j] = m->peer_urls[j].text;
}

/* Dial member m (or take its new URLs). */
static void peer_track(struct srv *s, const struct cluster_member *m)
{
    struct srv_node *n = &s->node;
    const char *urls[CLUSTER_MAX_URLS];
    if (m->id == s->member_id || !m->n_peer_urls || s->cfg.restore_snapshot[0])
        return; /* a restore only builds the data directory */
    if (!n->peer && start_peers(s) != MS_OK) {
        log_error("cannot reach member %016llx: this member has no peer transport",
                  (unsigned long long)m->id);
        return;
    }
    peer_urls_of(m, urls);
    ms_err e = peer_add(n->peer, m->id, urls, m->n_peer_urls);
    if (e == MS_E_MEMBER_EXISTS)
        e = peer_update(n->peer, m->id, urls, m->n_peer_urls);
    if (e && e != MS_E_MEMBER_NOT_FOUND)
        log_warn("peer %016llx: %s", (unsigned long long)m->id, ms_err_name(e));
}

/* A membership change took effect: the transport follows it. */
static void member_changed(struct srv *s, const struct cluster_cc *mc)
{
    struct srv_node *n = &s->node;
    const struct cluster_member *m = srv_member_get(s, mc->member.id);
    switch (mc->kind) {
    case CLUSTER_CC_BOOT:
    case CLUSTER_CC_ADD:
    case CLUSTER_CC_UPDATE:
        if (m)
            peer_track(s, m);
        if (mc->kind != CLUSTER_CC_BOOT)
            log_info("membership: member %016llx %s (%s)", (unsigned long long)mc->member.id,
                     mc->kind == CLUSTER_CC_ADD ? "added" : "updated",
                     m && m->n_peer_urls ? m->peer_urls[0].text : "");
        break;
    case CLUSTER_CC_REMOVE:
        log_info("membership: member %016llx removed", (unsigned long long)mc->member.id);
        if (mc->member.id == s->member_id)
            removed_self(s, "its removal was applied");
        else if (n->peer)
            peer_remove(n->peer, mc->member.id);
        break;
    case CLUSTER_CC_PROMOTE:
        log_info("membership: member %016llx promoted to a voting member",
                 (unsigned long long)mc->member.id);
        break;
    }
}

/* The members after a snapshot was installed: dial those the transport does not know yet. */
static void members_reconcile(struct srv *s)
{
    for (size_t i = 0; i < s->n_members; i++)
        peer_track(s, &s->members[i]);
}

/* Hand committed entries to the state machine in order. A conf change takes effect in the core
 * first (when applied, never when appended); the state machine records what it left. */
static void apply_committed(struct srv *s, const struct raft_entry *ents, size_t n)
{
    uint64_t applied = srv_applied(s);
    const struct raft_entry *last = NULL;
    bool midway = false;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *ent = &ents[i];
        if (ent->index <= applied)
            continue; /* the bootstrap's entries come back once they are persisted */
        if (last && !midway) {
            midway = true;
            faultpt_hit("apply_mid_batch"); /* one entry of the batch applied, the rest not */
        }
        last = ent;
        if (ent->type != RAFT_ENTRY_CONF_CHANGE) {
            srv_apply_entry(s, ent, NULL);
            continue;
        }
        struct raft_conf_change cc;
        struct raft_conf_state cs;
        struct cluster_cc mc;
        if (raft_cc_decode(ent->data, ent->len, &cc) != MS_OK)
            ms_fatal("conf change entry %llu does not decode", (unsigned long long)ent->index);
        /* A change every member refuses alike is applied as a no-op (etcd: NodeID None). */
        ms_err e = srv_member_check(s, &cc, &mc);
        struct raft_conf_change eff = cc;
        if (e)
            eff.node_id = RAFT_NONE;
        if (raft_apply_conf_change(s->node.raft, &eff, &cs) != MS_OK) {
            log_warn("conf change entry %llu (%d on %016llx) is refused: it would leave no voter",
                     (unsigned long long)ent->index, (int)cc.type, (unsigned long long)cc.node_id);
            struct raft_status st;
            raft_status(s->node.raft, &st);
            cs = st.conf;
            e = MS_E_BAD_REQUEST;
        }
        srv_member_applied(s, ent, &mc, e, &cs);
        if (!e)
            member_changed(s, &mc);
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
    for (size_t i = 0; i < rd->n_entries; i++)
        n->mem_bytes += rd->entries[i].len;
    if (rd->hard_changed) {
        raft_mem_set_hard(n->mem, &rd->hard);
        n->term = rd->hard.term;
    }
    /* Acknowledgements and votes leave only now that what they promise is durable. A single
     * voter's are internal to the core. */
    if (n->peer && rd->n_msgs_after_persist)
        peer_send(n->peer, rd->msgs_after_persist, rd->n_msgs_after_persist);
    raft_advance(n->raft, rd);
    n->rd_out = false;
    trim_log(s, srv_applied(s));
}

static void propose_held(struct srv *s);
static void confs_propose(struct srv *s, uint64_t now);

/* ---- snapshots: sent by a leader to a follower too far behind, installed by the follower ----
 * The leader answers the core's MsgSnap with a backup of its state machine (srv_backup: made in
 * slices, at its applied index), and names that index, its term and the configuration in the
 * message it streams (etcd's merged snapshot); the transport reads the file a piece at a time.
 * The follower's transport writes what arrives to a file; it is verified, then the MsgSnap is
 * stepped in, and the Ready that carries the snapshot installs it: the backend's content is
 * replaced (the member keeps its identity), made durable, the in-memory state rebuilt from it,
 * and only then the WAL records the snapshot. */

struct node_snap_out {
    struct node_snap_out *next;
    struct srv *s;
    uint64_t to;
    struct raft_msg msg; /* the core's MsgSnap (no entries), its metadata replaced */
    uint64_t backup_id;  /* srv_backup in progress (0: done) */
    int fd;              /* the backup file (removed from its directory), read by the transport */
};

static void snap_out_free(struct srv *s, struct node_snap_out *o)
{
    for (struct node_snap_out **pp = &s->node.snaps_out; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    if (o->fd >= 0)
        close(o->fd);
    free(o);
}

static long snap_src_read(void *ctx, void *buf, size_t cap)
{
    struct node_snap_out *o = ctx;
    ssize_t r;
    do
        r = read(o->fd, buf, cap);
    while (r < 0 && errno == EINTR);
    return r;
}

static void snap_src_close(void *ctx)
{
    struct node_snap_out *o = ctx;
    snap_out_free(o->s, o);
}

/* The backup for a follower is ready: stream it with the MsgSnap that names it. */
static void on_snap_backup(void *ctx, ms_err err, int fd, uint64_t size)
{
    struct node_snap_out *o = ctx;
    struct srv *s = o->s;
    o->backup_id = 0;
    o->fd = fd;
    uint8_t hdr[32];
    if (!err) {
        if (pread(o->fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
            memcmp(hdr, "MSSNAP01", 8) != 0)
            err = MS_E_IO;
    }
    struct raft_status st;
    raft_status(s->node.raft, &st);
    /* Leadership lost while the backup was made: sent now, the message would speak for a term
     * this member does not lead. The new leader sends its own. */
    if (!err && (st.soft.role != RAFT_LEADER || st.hard.term != o->msg.term))
        err = MS_E_LEADER_CHANGED;
    if (!err) {
        o->msg.snap.index = be64_get(hdr + 8);
        o->msg.snap.term = be64_get(hdr + 16);
        o->msg.snap.conf = st.conf;
        struct peer_snap_source src = {.read = snap_src_read, .close = snap_src_close, .ctx = o};
        log_info("raft: sending a snapshot at index %llu (%llu bytes) to %016llx",
                 (unsigned long long)o->msg.snap.index, (unsigned long long)size,
                 (unsigned long long)o->to);
        if ((err = peer_send_snapshot(s->node.peer, &o->msg, &src)) == MS_OK)
            return; /* the transport owns o now */
    }
    log_warn("raft: no snapshot for %016llx: %s", (unsigned long long)o->to, ms_err_name(err));
    raft_report_snapshot(s->node.raft, o->to, false);
    snap_out_free(s, o);
    srv_wake(s);
}

static void start_snapshot(struct srv *s, const struct raft_msg *m)
{
    struct srv_node *n = &s->node;
    for (struct node_snap_out *o = n->snaps_out; o; o = o->next)
        if (o->to == m->to)
            return; /* one at a time: the core asks again once it hears how this one went */
    struct node_snap_out *o = calloc(1, sizeof(*o));
    if (!o) {
        raft_report_snapshot(n->raft, m->to, false);
        return;
    }
    o->s = s;
    o->to = m->to;
    o->msg = *m;
    o->fd = -1;
    ms_err e = srv_backup(s, on_snap_backup, o, &o->backup_id);
    if (e) {
        log_warn("raft: cannot make a snapshot for %016llx: %s", (unsigned long long)m->to,
                 ms_err_name(e));
        raft_report_snapshot(n->raft, m->to, false);
        free(o);
        return;
    }
    o->next = n->snaps_out;
    n->snaps_out = o;
}

/* The Ready's messages: a MsgSnap becomes a snapshot stream, the others go as they are. */
static void send_msgs(struct srv *s, const struct raft_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].type == RAFT_MSG_SNAP)
            start_snapshot(s, &msgs[i]);
        else
            peer_send(s->node.peer, &msgs[i], 1);
    }
}

/* A snapshot from the leader arrived whole in path (the transport checked its bytes as they
 * came and made it durable): check its header, then hand its MsgSnap to the core. The file is
 * kept only if the core took the snapshot in (the next Ready installs it); a refused one (stale,
 * or arriving while an earlier one waits for its Ready) goes at once, and the file of the one
 * that waits stays. The snapshot's own CRC is checked as it loads, before it replaces
 * anything. */
static void on_peer_snapshot(void *ctx, const struct raft_msg *m, const char *path)
{
    struct srv *s = ctx;
    struct srv_node *n = &s->node;
    if (srv_snap_installing(s)) {
        log_info("raft: a snapshot at index %llu from %016llx arrived while one installs: "
                 "dropped",
                 (unsigned long long)m->snap.index, (unsigned long long)m->from);
        unlink(path);
        return;
    }
    struct snap_header h;
    ms_err e;
    struct snap_reader *r = snap_reader_open(path, &h, &e);
    snap_reader_close(r);
    if (!r || h.index != m->snap.index) {
        log_warn("raft: the snapshot from %016llx in %s is damaged: dropped",
                 (unsigned long long)m->from, path);
        unlink(path);
        return;
    }
    log_info("raft: received a snapshot at index %llu from %016llx",
             (unsigned long long)m->snap.index, (unsigned long long)m->from);
    e = raft_step(n->raft, m);
    struct raft_status st;
    raft_status(n->raft, &st);
    if (e == MS_OK && st.pending_snapshot == m->snap.index) {
        if (n->snap_in[0] && strcmp(n->snap_in, path) != 0)
            unlink(n->snap_in);
        snprintf(n->snap_in, sizeof(n->snap_in), "%s", path);
        n->snap_in_index = m->snap.index;
    } else {
        log_info("raft: the snapshot at index %llu from %016llx was not taken in (%s): dropped",
                 (unsigned long long)m->snap.index, (unsigned long long)m->from,
                 e ? ms_err_name(e) : "stale");
        if (strcmp(n->snap_in, path) != 0)
            unlink(path);
    }
    srv_wake(s);
}

/* The Ready carries a snapshot: start loading it (srv_snap.c, in slices); the Ready stays
 * outstanding until srv_node_installed. */
static void install_start(struct srv *s, const struct raft_snapshot_meta *meta)
{
    struct srv_node *n = &s->node;
    if (!n->snap_in[0] || n->snap_in_index != meta->index)
        ms_fatal("raft: the core installs a snapshot at %llu, but none was received for it",
                 (unsigned long long)meta->index);
    n->install_ms = clock_now_ms();
    ms_err e = srv_snap_install(s, n->snap_in);
    if (e)
        ms_fatal("raft: cannot install the snapshot at %llu: %s", (unsigned long long)meta->index,
                 ms_err_name(e));
    n->snap_in[0] = 0; /* the install owns the file now */
}

static bool ready_rest(struct srv *s, bool wait);
static bool run_ready(struct srv *s, bool wait);
static void step_end(struct srv *s);

/* The snapshot is the store: everything that reads it loads again, the WAL records it and it
 * becomes the log's base; then the rest of its Ready. */
void srv_node_installed(struct srv *s, ms_err e, const struct snap_header *h, struct kv_restore *kr)
{
    struct srv_node *n = &s->node;
    const struct raft_snapshot_meta *meta = &n->rd.snapshot;
    if (e)
        /* The old store is untouched and the file gone: a restart takes the log from the WAL
         * as before, and the leader sends its snapshot again. */
        ms_fatal("raft: cannot install the snapshot at %llu from the leader (%s): stopping, so "
                 "that it is sent again after a restart",
                 (unsigned long long)meta->index, ms_err_name(e));
    uint64_t t0 = clock_now_ms();
    if ((e = srv_conf_put(s->wtxn, &meta->conf)) != MS_OK)
        ms_fatal("cannot record the configuration: %s", ms_err_name(e));
    srv_store_applied(s, meta->index, meta->term);
    srv_commit(s);
    if ((e = be_sync(s->be)) != MS_OK)
        ms_fatal("cannot make the installed snapshot durable: %s", ms_err_name(e));
    if ((e = kv_restore_end(s->kv, kr, s->wtxn)) != MS_OK || (e = srv_lease_reload(s)) != MS_OK ||
        (e = srv_alarms_load(s)) != MS_OK || (e = srv_members_load(s)) != MS_OK ||
        (e = srv_auth_reload(s)) != MS_OK)
        ms_fatal("cannot load the installed snapshot: %s", ms_err_name(e));
    if (kv_compact_pending(s->kv) && !kv_compact_step(s->kv, s->wtxn, SIZE_MAX, &e) && !e)
        e = MS_E_INTERNAL;
    if (e)
        ms_fatal("cannot finish the snapshot's compaction: %s", ms_err_name(e));
    srv_watch_restored(s);
    members_reconcile(s);
    if ((e = wal_append_snapshot(n->wal, meta)) != MS_OK || (e = wal_sync(n->wal)) != MS_OK)
        ms_fatal("wal: cannot record snapshot %llu: %s", (unsigned long long)meta->index,
                 ms_err_name(e));
    if (raft_mem_apply_snapshot(n->mem, meta) != MS_OK)
        ms_fatal("raft: the snapshot at %llu is older than the log",
                 (unsigned long long)meta->index);
    n->mem_bytes = 0;
    uint64_t now = clock_now_ms();
    log_info("raft: installed the snapshot at index %llu (revision %lld) in %llu ms, the last "
             "step %llu ms",
             (unsigned long long)meta->index, (long long)h->revision,
             (unsigned long long)(now - n->install_ms), (unsigned long long)(now - t0));
    if (!ready_rest(s, false))
        run_ready(s, false);
    srv_reads_serve_applied(s);
    step_end(s);
}

/* The leadership transfer of srv_node_step_down ended (handed over, or timed out). */
static void transfer_end(struct srv *s, bool ok)
{
    struct srv_node *n = &s->node;
    void (*left)(void *) = n->left;
    n->left = NULL;
    if (ok)
        log_info("raft: leadership handed over");
    else
        log_warn("raft: leadership was not handed over in time; stopping anyway");
    left(n->left_ctx);
}

/* The leader or this member's role changed. */
static void soft_changed(struct srv *s, const struct raft_soft_state *soft)
{
    struct srv_node *n = &s->node;
    bool was_leader = n->role == RAFT_LEADER, new_lead = soft->lead != n->lead;
    if (new_lead && soft->lead != RAFT_NONE) {
        n->leader_changes++;
        if (n->peer) {
            struct raft_status st;
            raft_status(n->raft, &st);
            log_info("raft: %016llx sees leader %016llx at term %llu",
                     (unsigned long long)s->member_id, (unsigned long long)soft->lead,
                     (unsigned long long)st.hard.term);
        }
    } else if (new_lead && n->peer) {
        log_info("raft: %016llx lost leader %016llx", (unsigned long long)s->member_id,
                 (unsigned long long)n->lead);
    }
    if (new_lead && soft->lead == RAFT_NONE)
        n->lost_ms = clock_now_ms();
    n->lead = soft->lead;
    n->role = soft->role;
    if (new_lead)
        srv_reads_leader_changed(s);
    if (soft->role == RAFT_LEADER && !was_leader)
        /* etcd Promote: no lease expires because the leadership moved. */
        srv_lease_promote(s, n->peer ? s->cfg.election_ms : 0);
    else if (was_leader && soft->role != RAFT_LEADER)
        srv_lease_demote(s);
    if (new_lead && soft->lead != RAFT_NONE) {
        propose_held(s);
        for (struct node_conf *c = n->confs; c; c = c->next)
            c->next_ms = 0;
        confs_propose(s, clock_now_ms());
    }
    if (n->left && soft->role != RAFT_LEADER)
        transfer_end(s, true);
}

#ifdef MS_PLANT_ACK_BEFORE_FSYNC
/* PLANTED BUG (-Dplant=ack_before_fsync, for tests/fault only): the Ready's entries and hard
 * state stay in the WAL's user-space buffer while the core counts them persisted and the acks
 * go out; this timer writes and syncs them 300 ms later. A kill -9 of a majority in between
 * loses acknowledged writes (RAFT.md §3.2 rule 1 broken on purpose). */
#define PLANT_FLUSH_MS 300

static void on_plant_flush(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    ms_err e = wal_sync(s->node.wal);
    if (e)
        fatal_sync(&s->node, e);
}

static void plant_flush_later(struct srv *s)
{
    struct srv_node *n = &s->node;
    if (!n->plant_flush_ev && !(n->plant_flush_ev = evtimer_new(s->base, on_plant_flush, s)))
        ms_fatal("out of memory");
    struct timeval tv = {0, PLANT_FLUSH_MS * 1000};
    if (!evtimer_pending(n->plant_flush_ev, NULL))
        evtimer_add(n->plant_flush_ev, &tv);
}
#endif

/* The rest of the outstanding Ready, once its snapshot (if any) is the store: messages, the
 * entries to persist, reads, the entries to apply. The WAL sync starts before the apply, so
 * the disk works while the loop applies (committed entries are durable already: the core hands
 * out only those). Returns true while it waits for its sync. */
static bool ready_rest(struct srv *s, bool wait)
{
    struct srv_node *n = &s->node;
    struct raft_ready *rd = &n->rd;
    if (n->peer)
        send_msgs(s, rd->msgs, rd->n_msgs);
    if (rd->n_entries || rd->hard_changed) {
        ms_err e =
            wal_append(n->wal, rd->hard_changed ? &rd->hard : NULL, rd->entries, rd->n_entries);
        if (e)
            fatal_sync(n, e);
        s->ctr.ready_batches += rd->n_entries > 0;
    }
    bool syncing = false;
    bool must_sync = rd->must_sync;
#ifdef MS_PLANT_ACK_BEFORE_FSYNC
    if (must_sync && !wait) {
        plant_flush_later(s); /* PLANTED BUG: persisted() below acks what is not written */
        must_sync = false;
    }
#endif
    if (must_sync) {
        ms_err e;
        if (wait) {
            if ((e = wal_sync(n->wal)) != MS_OK)
                fatal_sync(n, e);
        } else if ((e = wal_sync_begin(n->wal, &syncing)) != MS_OK) {
            fatal_sync(n, e);
        }
    }
    for (size_t j = 0; j < rd->n_read_states; j++)
        srv_reads_confirm(s, rd->read_states[j].ctx, rd->read_states[j].index);
    if (rd->n_committed)
        apply_committed(s, rd->committed, rd->n_committed);
    if (syncing)
        return true; /* on_synced finishes this Ready */
    persisted(s);
    return false;
}

/* Take and handle Readys until one waits for its sync or its snapshot's install (returns
 * true) or none is left. With wait, syncs happen in place (the start, before the loop runs). */
/* While a Ready's fdatasync runs (its own committed entries applied already): apply what was
 * committed since and is durable here already. A leader learns most commits this way, its
 * followers' acknowledgements arriving while its next batch persists; waiting for the next Ready
 * cost every put one more fdatasync. */
static void apply_now(struct srv *s)
{
    struct srv_node *n = &s->node;
    const struct raft_entry *ents;
    size_t k = raft_committed_now(n->raft, &ents);
    if (!k)
        return;
    apply_committed(s, ents, k);
    raft_advance_committed(n->raft);
}

static bool run_ready(struct srv *s, bool wait)
{
    struct srv_node *n = &s->node;
    if (n->rd_out && !n->rd.has_snapshot)
        apply_now(s);
    for (int i = 0; i < NODE_READY_PER_TURN && !n->rd_out && raft_has_ready(n->raft); i++) {
        struct raft_ready *rd = &n->rd;
        if (raft_ready(n->raft, rd) != MS_OK)
            ms_fatal("raft: a Ready is still outstanding");
        n->rd_out = true;
        if (rd->soft_changed)
            soft_changed(s, &rd->soft);
        if (rd->has_snapshot) {
            if (wait)
                ms_fatal("raft: a snapshot to install before the loop runs");
            install_start(s, &rd->snapshot);
            return true; /* srv_node_installed finishes this Ready */
        }
        if (ready_rest(s, wait))
            return true;
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

/* The end of a step: more Readys wait (the per-turn bound stopped us), or a ReadIndex round
 * ended with reads parked for the next → another turn. */
static void step_end(struct srv *s)
{
    struct srv_node *n = &s->node;
    srv_lease_pump(s);
    if ((n->rd_out ? !n->rd.has_snapshot && raft_has_committed_now(n->raft)
                   : raft_has_ready(n->raft)) ||
        srv_reads_may_ask(s))
        srv_wake(s);
    arena_reset(s->scratch);
    srv_copy_poll(s);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    struct srv_node *n = &s->node;
    (void)fd;
    (void)what;
    n->ready_pending = false;
    struct srv_reads reads;
    srv_reads_take(s, &reads); /* callbacks below may queue new reads: they wait a turn */
#ifdef MS_PLANT_FOLLOWER_LOCAL_READS
    /* PLANTED BUG (-Dplant=follower_local_reads, for tests/fault only): a member that does not
     * lead serves linearizable reads from its local state at once, with no ReadIndex. */
    if (n->peer && n->role != RAFT_LEADER) {
        run_ready(s, false);
        srv_reads_serve(s, &reads);
        step_end(s);
        return;
    }
#endif
    if (!n->peer) {
        run_ready(s, false);
        srv_reads_serve(s, &reads);
    } else {
        uint64_t ctx = ++n->read_ctx;
        if (srv_reads_park(s, &reads, ctx, clock_now_ms()))
            raft_read_index(n->raft, ctx);
        run_ready(s, false);
        srv_reads_serve_applied(s);
    }
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
    srv_reads_serve_applied(s);
    step_end(s);
}

/* ---- deadlines ---- */

static uint64_t request_timeout_ms(const struct srv *s)
{
    return 5000 + 2 * s->cfg.election_ms; /* etcd ReqTimeout */
}

uint64_t srv_node_request_timeout_ms(const struct srv *s)
{
    return request_timeout_ms(s);
}

/* Answer id's caller with e, if it still waits. */
static void fail_waiter(struct srv *s, uint64_t id, ms_err e)
{
    struct wait_entry we;
    if (wait_remove(&s->waits, id, &we) && we.done)
        we.done(we.ctx, e, NULL);
}

/* id's caller is answered "request timed out" at deadline_ms if nothing answered it first; out of
 * memory, the request has no deadline, which is logged. */
static void push_deadline(struct srv_node *n, uint64_t id, uint64_t deadline_ms)
{
    if (n->n_deadlines == n->cap_deadlines) {
        size_t cap = n->cap_deadlines ? n->cap_deadlines * 2 : 256;
        struct node_deadline *v = malloc(cap * sizeof(*v));
        if (!v) {
            log_warn("request %016llx has no deadline: out of memory", (unsigned long long)id);
            return;
        }
        for (size_t i = 0; i < n->n_deadlines; i++)
            v[i] = n->deadlines[(n->head_deadline + i) % n->cap_deadlines];
        free(n->deadlines);
        n->deadlines = v;
        n->cap_deadlines = cap;
        n->head_deadline = 0;
    }
    n->deadlines[(n->head_deadline + n->n_deadlines++) % n->cap_deadlines] =
        (struct node_deadline){id, deadline_ms};
}

/* Proposals whose deadline passed: held ones never reached the log ("context deadline
 * exceeded", as etcd's blocked Propose), the others may still commit ("request timed out").
 * Entries whose caller is gone are dropped from the front as well, so the ring stays small. */
static void expire(struct srv *s, uint64_t now)
{
    struct srv_node *n = &s->node;
    while (n->held && n->held->deadline_ms <= now) {
        struct node_held *h = n->held;
        n->held = h->next;
        if (!n->held)
            n->held_tail = NULL;
        n->n_held--;
        n->held_bytes -= h->len;
        fail_waiter(s, h->id, MS_E_DEADLINE_EXCEEDED);
        free(h);
    }
    while (n->n_deadlines) {
        struct node_deadline *d = &n->deadlines[n->head_deadline];
        bool waits = wait_find(&s->waits, d->id) != NULL;
        if (waits && d->deadline_ms > now)
            break;
        if (waits) {
            s->ctr.proposals_failed++;
            fail_waiter(s, d->id, MS_E_TIMEOUT);
        }
        n->head_deadline = (n->head_deadline + 1) % n->cap_deadlines;
        n->n_deadlines--;
    }
    if (n->held && n->lead != RAFT_NONE)
        propose_held(s);
    uint64_t ctxs[NODE_READ_RETRY_MAX];
    size_t k = srv_reads_due(s, now, ctxs, NODE_READ_RETRY_MAX);
    for (size_t i = 0; i < k; i++)
        raft_read_index(n->raft, ctxs[i]);
    srv_reads_expire(s, now, request_timeout_ms(s));
}

/* A leader is known: propose what waited for one, in order. What the core drops again (the
 * leader went at once) stays held. */
static void propose_held(struct srv *s)
{
    struct srv_node *n = &s->node;
    while (n->held) {
        struct node_held *h = n->held;
        if (raft_propose(n->raft, h->data, h->len) != MS_OK)
            break;
        n->held = h->next;
        if (!n->held)
            n->held_tail = NULL;
        n->n_held--;
        n->held_bytes -= h->len;
        free(h);
        srv_wake(s);
    }
}

static ms_err hold(struct srv_node *n, uint64_t id, const uint8_t *data, size_t len,
                   uint64_t deadline_ms)
{
    if (n->n_held >= NODE_HELD_MAX || n->held_bytes + len > NODE_HELD_MAX_BYTES)
        return MS_E_TOO_MANY_REQUESTS;
    struct node_held *h = malloc(sizeof(*h) + len);
    if (!h)
        return MS_E_NOMEM;
    h->next = NULL;
    h->id = id;
    h->deadline_ms = deadline_ms;
    h->len = len;
    memcpy(h->data, data, len);
    if (n->held_tail)
        n->held_tail->next = h;
    else
        n->held = h;
    n->held_tail = h;
    n->n_held++;
    n->held_bytes += len;
    return MS_OK;
}

/* The voter most up to date among those that answer, other than this member and but (etcd's
 * longest-log transferee); RAFT_NONE if none (or this member does not lead). */
static uint64_t best_transferee(struct srv *s, uint64_t but, uint64_t *match)
{
    struct raft_status st;
    raft_status(s->node.raft, &st);
    uint64_t to = RAFT_NONE, best = 0;
    for (size_t i = 0; i < st.n_progress; i++) {
        const struct raft_progress_status *p = &st.progress[i];
        if (p->id == s->member_id || p->id == but || p->learner || !p->recent_active)
            continue;
        if (to == RAFT_NONE || p->match > best) {
            to = p->id;
            best = p->match;
        }
    }
    if (match)
        *match = best;
    return to;
}

/* Propose the changes that are due: a leader is known, and not the one that must go first. */
static void confs_propose(struct srv *s, uint64_t now)
{
    struct srv_node *n = &s->node;
    for (struct node_conf **pp = &n->confs; *pp;) {
        struct node_conf *c = *pp;
        bool waits = wait_find(&s->waits, c->id) != NULL;
        if (!waits || now >= c->deadline_ms) {
            /* Never proposed: it never reached the log (etcd's blocked propose). */
            if (waits && !c->proposed)
                fail_waiter(s, c->id, MS_E_DEADLINE_EXCEEDED);
            *pp = c->next; /* a proposed one times out with its deadline (expire) */
            free(c);
            continue;
        }
        if (now >= c->next_ms && n->lead != RAFT_NONE && !(c->away && n->lead == c->away)) {
            struct raft_conf_change cc = {
                .type = c->type, .node_id = c->node, .ctx_len = c->len, .ctx = c->ctx};
            ms_err e = raft_propose_conf_change(n->raft, &cc);
            if (e == MS_OK) {
                if (!c->proposed)
                    push_deadline(n, c->id, c->deadline_ms);
                c->proposed = true;
                srv_wake(s);
            }
            c->next_ms = now + NODE_CONF_RETRY_MS;
        }
        pp = &c->next;
    }
}

ms_err srv_node_propose_conf(struct srv *s, uint64_t id, const struct raft_conf_change *cc,
                             uint64_t away)
{
    struct srv_node *n = &s->node;
    if (away && away == n->lead && n->peer) {
        /* The leader is to go: it hands leadership over first (a follower asks it to hand it
         * to this member), and the change is proposed to the next one. */
        uint64_t to = n->role == RAFT_LEADER ? best_transferee(s, away, NULL) : s->member_id;
        if (to != RAFT_NONE) {
            log_info("membership: removing the leader %016llx: leadership goes to %016llx first",
                     (unsigned long long)away, (unsigned long long)to);
            raft_transfer_leader(n->raft, to);
        } else {
            away = 0; /* nobody to hand it to: the leader removes itself */
        }
    } else {
        away = 0;
    }
    struct node_conf *c = calloc(1, sizeof(*c) + cc->ctx_len);
    if (!c)
        return MS_E_NOMEM;
    c->id = id;
    c->deadline_ms = clock_now_ms() + request_timeout_ms(s);
    c->type = cc->type;
    c->node = cc->node_id;
    c->away = away;
    c->len = cc->ctx_len;
    memcpy(c->ctx, cc->ctx, cc->ctx_len);
    c->next = n->confs;
    n->confs = c;
    confs_propose(s, clock_now_ms());
    srv_wake(s);
    return MS_OK;
}

ms_err srv_node_peers_up(struct srv *s)
{
    if (s->node.peer)
        return MS_OK;
    ms_err e = start_peers(s);
    if (e)
        log_error("a member cannot be added: this member cannot listen for peers on %s (a "
                  "numeric IPv4 or IPv6 address is needed)",
                  s->cfg.n_listen_peer ? s->cfg.listen_peer[0].text : "no --listen-peer-urls");
    return e ? MS_E_UNHEALTHY : MS_OK;
}

uint64_t srv_node_active_since(const struct srv *s, uint64_t id)
{
    struct peer_stats ps;
    if (id == s->member_id)
        return 1; /* this member is always connected to itself */
    if (!s->node.peer || !peer_stats(s->node.peer, id, &ps))
        return 0;
    return ps.active_since_ms;
}

bool srv_node_is_learner(const struct srv *s)
{
    struct raft_status st;
    raft_status(s->node.raft, &st);
    return st.learner;
}

/* ---- promote: only the leader knows whether a learner has caught up ---- */

/* Not an error: a conf change is still to be applied, and the core takes one at a time (it
 * would turn this one into an empty entry, and nobody would answer): ask again at a tick. */
#define PROMOTE_AGAIN MS_ERR_COUNT_

/* On the leader: etcd's isLearnerReady (the learner's match at 90 % of the leader's at least)
 * and IsReadyToPromoteMember, then the change. id is the caller, here or at the asker. */
static ms_err promote_here(struct srv *s, uint64_t member, uint64_t id)
{
    struct srv_node *n = &s->node;
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.soft.role != RAFT_LEADER)
        return MS_E_NOT_LEADER;
    if (st.pending_conf_index > st.applied)
        return PROMOTE_AGAIN;
    uint64_t lead_match = 0, match = 0;
    bool found = false;
    for (size_t i = 0; i < st.n_progress; i++) {
        if (st.progress[i].id == s->member_id)
            lead_match = st.progress[i].match;
        if (st.progress[i].id == member) {
            match = st.progress[i].match;
            found = true;
        }
    }
    if (found && (double)match < (double)lead_match * 0.9)
        return MS_E_LEARNER_NOT_READY;
    if (s->cfg.strict_reconfig_check && !srv_member_quorum_started(s, CLUSTER_CC_PROMOTE, member))
        return MS_E_NOT_ENOUGH_STARTED;
    struct cluster_cc mc = {.kind = CLUSTER_CC_PROMOTE, .request_id = id, .member.id = member};
    struct buf b;
    buf_init(&b);
    cluster_cc_encode(&mc, &b);
    ms_err e = MS_E_NOMEM;
    if (!buf_failed(&b)) {
        struct raft_conf_change cc = {
            .type = RAFT_CC_ADD_NODE, .node_id = member, .ctx_len = b.len, .ctx = b.p};
        e = raft_propose_conf_change(n->raft, &cc);
    }
    buf_fini(&b);
    if (e == MS_OK)
        srv_wake(s);
    return e;
}

static void promote_send(struct srv *s, struct node_promote *p)
{
    uint8_t m[APP_PROMOTE_LEN] = {APP_PROMOTE_ASK};
    be64_put(m + 1, p->id);
    be64_put(m + 9, p->member);
    p->sent_to = s->node.lead;
    if (p->sent_to && p->sent_to != s->member_id &&
        peer_send_app(s->node.peer, p->sent_to, m, sizeof(m)) != MS_OK)
        p->sent_to = 0; /* dropped: the next tick asks again */
}

ms_err srv_node_promote(struct srv *s, uint64_t member, uint64_t id)
{
    struct srv_node *n = &s->node;
    ms_err e = promote_here(s, member, id);
    if (e != PROMOTE_AGAIN && (e != MS_E_NOT_LEADER || !n->peer)) {
        if (e == MS_OK)
            push_deadline(n, id, clock_now_ms() + request_timeout_ms(s));
        return e;
    }
    struct node_promote *p = calloc(1, sizeof(*p));
    if (!p)
        return MS_E_NOMEM;
    p->id = id;
    p->member = member;
    p->deadline_ms = clock_now_ms() + request_timeout_ms(s);
    p->next = n->promotes;
    n->promotes = p;
    if (e == MS_E_NOT_LEADER)
        promote_send(s, p);
    return MS_OK;
}

/* Each tick: promotes whose caller is gone or whose time is up end; those whose leader changed
 * are asked again. */
static void promotes_tick(struct srv *s, uint64_t now)
{
    struct srv_node *n = &s->node;
    for (struct node_promote **pp = &n->promotes; *pp;) {
        struct node_promote *p = *pp;
        bool waits = wait_find(&s->waits, p->id) != NULL;
        if (!waits || now >= p->deadline_ms) {
            if (waits)
                fail_waiter(s, p->id, MS_E_TIMEOUT);
            *pp = p->next;
            free(p);
            continue;
        }
        if (n->role == RAFT_LEADER) { /* asked here, and this member leads now */
            ms_err e = promote_here(s, p->member, p->id);
            if (e == PROMOTE_AGAIN) {
                pp = &p->next;
                continue;
            }
            *pp = p->next;
            if (e != MS_OK)
                fail_waiter(s, p->id, e);
            else
                push_deadline(n, p->id, p->deadline_ms);
            free(p);
            continue;
        }
        if (n->lead && n->lead != p->sent_to)
            promote_send(s, p);
        pp = &p->next;
    }
}

static void promote_on_app(struct srv *s, uint64_t from, const uint8_t *p, size_t len)
{
    struct srv_node *n = &s->node;
    if (len != APP_PROMOTE_LEN)
        return;
    uint64_t id = be64_get(p + 1), member = be64_get(p + 9);
    if (p[0] == APP_PROMOTE_ASK) {
        ms_err e = promote_here(s, member, id);
        if (e == MS_OK)
            return; /* the asker hears of it when it applies the change */
        uint8_t m[APP_PROMOTE_LEN];
        memcpy(m, p, 17);
        m[0] = APP_PROMOTE_REFUSED;
        be32_put(m + 17, (uint32_t)e);
        if (peer_send_app(n->peer, from, m, sizeof(m)) != MS_OK)
            log_debug("membership: the answer to %016llx was dropped", (unsigned long long)from);
        return;
    }
    uint32_t e = be32_get(p + 17);
    for (struct node_promote **pp = &n->promotes; *pp; pp = &(*pp)->next) {
        struct node_promote *q = *pp;
        if (q->id != id)
            continue;
        if (e == MS_E_NOT_LEADER || e == MS_OK || e >= MS_ERR_COUNT_) {
            q->sent_to = 0; /* it no longer leads, or it is busy (PROMOTE_AGAIN): ask again */
            return;
        }
        *pp = q->next;
        fail_waiter(s, id, (ms_err)e);
        free(q);
        return;
    }
}

/* srv_move_leader's caller, answered with e (its wait may be gone: cancelled). */
static void move_end(struct srv *s, ms_err e)
{
    struct srv_node *n = &s->node;
    struct wait_entry we;
    uint64_t id = n->move_waiter;
    n->move_waiter = 0;
    if (!wait_remove(&s->waits, id, &we) || !we.done)
        return;
    struct srv_result res = {.type = SRV_REQ_MOVE_LEADER, .revision = kv_current_rev(s->kv)};
    we.done(we.ctx, e, e ? NULL : &res);
}

/* etcd polls the leader once per tick until the transferee leads or the caller gives up. */
static void move_check(struct srv *s, uint64_t now)
{
    struct srv_node *n = &s->node;
    if (!n->move_waiter)
        return;
    if (n->lead == n->move_target)
        move_end(s, MS_OK);
    else if (now >= n->move_deadline_ms || !wait_find(&s->waits, n->move_waiter))
        move_end(s, MS_E_TIMEOUT_LEADER_TRANSFER);
}

ms_err srv_node_move_leader(struct srv *s, uint64_t target, uint64_t id)
{
    struct srv_node *n = &s->node;
    if (n->lead != s->member_id || n->role != RAFT_LEADER)
        return MS_E_NOT_LEADER;
    struct raft_status st;
    raft_status(n->raft, &st);
    bool voter = false;
    for (size_t i = 0; i < st.n_progress; i++)
        voter = voter || (st.progress[i].id == target && !st.progress[i].learner);
    if (!voter)
        return MS_E_BAD_LEADER_TRANSFEREE;
    if (n->move_waiter)
        move_end(s, MS_E_TIMEOUT_LEADER_TRANSFER);
    n->move_waiter = id;
    n->move_target = target;
    n->move_deadline_ms = clock_now_ms() + request_timeout_ms(s);
    log_info("raft: moving leadership to %016llx", (unsigned long long)target);
    if (target != s->member_id)
        raft_transfer_leader(n->raft, target);
    srv_wake(s);
    return MS_OK;
}

/* Released WAL segments and pruned snapshot files go RELEASE_STEP bytes each every
 * RELEASE_EVERY_MS: about 0.7 ms of the loop per step on an idle disk, and up to 200 MB/s,
 * beyond what the WAL is written at. */
#define RELEASE_STEP     (1u << 20)
#define RELEASE_EVERY_MS 5

static void on_release(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    bool more = wal_release_step(s->node.wal, RELEASE_STEP);
    if (srv_snap_trash_step(s, RELEASE_STEP) || more) {
        struct timeval tv = {0, RELEASE_EVERY_MS * 1000};
        evtimer_add(s->node.release_ev, &tv);
    }
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
    ticks = faultpt_clock_ticks(ticks); /* fault builds: a slow clock counts fewer */
    for (uint64_t i = 0; i < ticks; i++)
        raft_tick(n->raft);
    if (n->peer) {
        expire(s, now);
        promotes_tick(s, now);
    }
    confs_propose(s, now);
    srv_lease_pump(s);
    if (n->left && now >= n->left_deadline_ms)
        transfer_end(s, false);
    move_check(s, now);
    if (raft_has_ready(n->raft) || srv_reads_may_ask(s)) /* expired: the next round may go */
        srv_wake(s);
}

ms_err srv_node_propose(struct srv *s, uint64_t id, const uint8_t *data, size_t len)
{
    struct srv_node *n = &s->node;
    if (!n->peer) {
        ms_err e = raft_propose(n->raft, data, len);
        if (e == MS_OK)
            srv_wake(s);
        return e;
    }
    uint64_t deadline = clock_now_ms() + request_timeout_ms(s);
    ms_err e = n->held ? MS_E_NO_LEADER : raft_propose(n->raft, data, len);
    /* etcd's Propose blocks until a leader is known; a leader handing leadership over (it
     * refuses proposals meanwhile) holds them for the next one likewise. */
    if (e == MS_E_NO_LEADER || e == MS_E_LEADER_CHANGED)
        e = hold(n, id, data, len, deadline);
    if (e == MS_OK && id)
        push_deadline(n, id, deadline);
    if (e == MS_OK)
        srv_wake(s);
    return e;
}

bool srv_node_step_down(struct srv *s, void (*left)(void *ctx), void *ctx)
{
    struct srv_node *n = &s->node;
    struct raft_status st;
    raft_status(n->raft, &st);
    if (!n->peer || n->left || st.soft.role != RAFT_LEADER)
        return false;
    uint64_t best;
    uint64_t to = best_transferee(s, RAFT_NONE, &best);
    if (to == RAFT_NONE)
        return false;
    log_info("raft: stopping: handing leadership to %016llx (its log is at %llu of %llu)",
             (unsigned long long)to, (unsigned long long)best, (unsigned long long)st.last_index);
    n->left = left;
    n->left_ctx = ctx;
    n->left_deadline_ms = clock_now_ms() + request_timeout_ms(s);
    raft_transfer_leader(n->raft, to);
    srv_wake(s);
    return true;
}

bool srv_node_has_leader(const struct srv *s)
{
    return s->node.lead != RAFT_NONE;
}

uint64_t srv_node_leaderless_ms(const struct srv *s)
{
    return s->node.lead != RAFT_NONE ? 0 : clock_now_ms() - s->node.lost_ms;
}

uint64_t srv_node_leader(struct srv *s)
{
    return s->node.lead;
}

ms_err srv_node_send_app(struct srv *s, uint64_t to, const void *data, size_t len)
{
    return s->node.peer ? peer_send_app(s->node.peer, to, data, len) : MS_E_MEMBER_NOT_FOUND;
}

static void on_peer_app(void *ctx, uint64_t from, const uint8_t *data, size_t len)
{
    struct srv *s = ctx;
    if (len && (data[0] == APP_PROMOTE_ASK || data[0] == APP_PROMOTE_REFUSED))
        promote_on_app(s, from, data, len);
    else
        srv_lease_on_app(s, from, data, len);
}

static void on_peer_removed(void *ctx, uint64_t by)
{
    struct srv *s = ctx;
    struct srv_node *n = &s->node;
    char how[64];
    snprintf(how, sizeof(how), "member %016llx refuses it", (unsigned long long)by);
    removed_self(s, how);
    /* A peer applied this member's removal, so it is committed; this member, no longer
     * replicated to, may never learn so itself (it left the leadership for it): whoever asked
     * it for its own removal hears now, with the members without it. */
    bool mine = false;
    for (struct node_conf *c = n->confs; c; c = c->next)
        mine = mine || (c->type == RAFT_CC_REMOVE_NODE && c->node == s->member_id);
    if (!mine)
        return;
    srv_member_forget(s, s->member_id);
    for (struct node_conf *c = n->confs; c; c = c->next) {
        struct wait_entry we;
        if (c->type != RAFT_CC_REMOVE_NODE || c->node != s->member_id ||
            !wait_remove(&s->waits, c->id, &we) || !we.done)
            continue;
        struct srv_result res = {.type = SRV_REQ_MEMBER_REMOVE,
                                 .revision = kv_current_rev(s->kv),
                                 .u.member_id = s->member_id};
        we.done(we.ctx, MS_OK, &res);
    }
}

/* GET /members on the peer port: every member's record, each after its length (be32). */
static void on_peer_members(void *ctx, struct buf *out)
{
    struct srv *s = ctx;
    for (size_t i = 0; i < s->n_members && !buf_failed(out); i++) {
        static const uint8_t zero[4];
        size_t at = out->len;
        buf_append(out, zero, sizeof(zero));
        cluster_member_encode(&s->members[i], out);
        if (!buf_failed(out))
            be32_put(out->p + at, (uint32_t)(out->len - at - 4));
    }
}

/* ---- the peer transport's callbacks ---- */

static void on_peer_message(void *ctx, const struct raft_msg *m)
{
    struct srv *s = ctx;
    ms_err e = raft_step(s->node.raft, m);
    if (e && !raft_err_is_dropped(e))
        log_debug("raft: %s from %016llx not stepped: %s", raft_msg_type_name(m->type),
                  (unsigned long long)m->from, ms_err_name(e));
    srv_wake(s);
}

static void on_peer_unreachable(void *ctx, uint64_t id)
{
    struct srv *s = ctx;
    raft_report_unreachable(s->node.raft, id);
    s->node.heartbeat_failures++;
    srv_wake(s);
}

static void on_peer_snapshot_sent(void *ctx, uint64_t id, bool ok)
{
    struct srv *s = ctx;
    log_info("raft: the snapshot to %016llx %s", (unsigned long long)id,
             ok ? "was sent" : "failed");
    raft_report_snapshot(s->node.raft, id, ok);
    srv_wake(s);
}

/* Listen on the peer URLs and dial every other member of the cluster. */
static ms_err start_peers(struct srv *s)
{
    struct srv_node *n = &s->node;
    char dir[4200];
    const char *listen[CFG_MAX_URLS];
    snprintf(dir, sizeof(dir), "%s/member/peer", s->cfg.data_dir);
    for (size_t i = 0; i < s->cfg.n_listen_peer; i++)
        listen[i] = s->cfg.listen_peer[i].text;
    /* etcd: with any peer TLS setting, peers are dialed and served with TLS where their URLs
     * say https. */
    const struct cfg_tls *pt = &s->cfg.peer_tls;
    /* (Made once: a lone member tries again at each member add until it can listen.) */
    if (!n->peer_tls_client && (cfg_tls_used(&s->cfg, true) || *pt->cert_file || pt->auto_tls)) {
        struct tls_config tc;
        const char *hosts[CFG_MAX_URLS];
        char msg[512];
        cfg_tls_config(&s->cfg, true, &tc, hosts);
        tls_ctx_destroy(n->peer_tls_server); /* an earlier try's, if the client's failed */
        n->peer_tls_server = NULL;
        if (cfg_tls_used(&s->cfg, true) &&
            !(n->peer_tls_server = tls_ctx_server(&tc, msg, sizeof(msg)))) {
            log_error("peer TLS: %s", msg);
            return MS_E_IO;
        }
        if (!(n->peer_tls_client = tls_ctx_client(&tc, msg, sizeof(msg)))) {
            log_error("peer TLS: %s", msg);
            return MS_E_IO;
        }
        log_info("peer TLS: cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %s, "
                 "allowed-cn = %s",
                 tc.auto_tls ? "(generated)" : tc.cert_file,
                 tc.auto_tls ? "(generated)" : tc.key_file, tc.trusted_ca_file,
                 tc.client_cert_auth ? "true" : "false", tc.allowed_cn);
    }
    struct peer_config pc = {.id = s->member_id,
                             .cluster_id = s->cluster_id,
                             .listen_urls = listen,
                             .n_listen_urls = s->cfg.n_listen_peer,
                             .tls_server = n->peer_tls_server,
                             .tls_client = n->peer_tls_client,
                             .snap_dir = dir,
                             .heartbeat_ms = 0,
                             .on_message = on_peer_message,
                             .on_unreachable = on_peer_unreachable,
                             .on_snapshot = on_peer_snapshot,
                             .on_snapshot_sent = on_peer_snapshot_sent,
                             .on_app = on_peer_app,
                             .on_removed = on_peer_removed,
                             .members = on_peer_members,
                             .ctx = s};
    ms_err e = peer_create(s->base, &pc, &n->peer);
    if (e) {
        log_error("cannot listen for peers on %s: %s", s->cfg.listen_peer[0].text, ms_err_name(e));
        return e;
    }
    for (size_t i = 0; i < s->n_members; i++) {
        const struct cluster_member *m = &s->members[i];
        if (m->id == s->member_id || !m->n_peer_urls)
            continue;
        const char *urls[CLUSTER_MAX_URLS];
        peer_urls_of(m, urls);
        if ((e = peer_add(n->peer, m->id, urls, m->n_peer_urls)) != MS_OK) {
            log_error("cannot add peer %016llx: %s", (unsigned long long)m->id, ms_err_name(e));
            return e;
        }
    }
    log_info("listening for peers on %s; %zu other members", s->cfg.listen_peer[0].text,
             s->n_members - 1);
    return MS_OK;
}

bool srv_node_peer_stats(const struct srv *s, uint64_t id, struct peer_stats *out)
{
    return s->node.peer && peer_stats(s->node.peer, id, out);
}

uint64_t srv_node_heartbeat_failures(const struct srv *s)
{
    return s->node.heartbeat_failures;
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
        n->mem_bytes += ent->len;
    }
    return MS_OK;
}

/* A new cluster: the configuration is the initial cluster (etcd --initial-cluster), this one
 * voter in a data directory from before the members were recorded. Each voter's entry carries
 * its record, so that a member that joins later and replays the log learns the initial
 * members from it. */
static ms_err bootstrap(struct srv *s)
{
    struct srv_node *n = &s->node;
    uint64_t voters[CLUSTER_MAX_MEMBERS];
    const uint8_t *ctxs[CLUSTER_MAX_MEMBERS];
    size_t lens[CLUSTER_MAX_MEMBERS];
    struct buf b[CLUSTER_MAX_MEMBERS];
    size_t nv = 0;
    ms_err e = MS_OK;
    for (size_t i = 0; i < s->n_members && nv < CLUSTER_MAX_MEMBERS; i++, nv++) {
        struct cluster_cc mc = {.kind = CLUSTER_CC_BOOT, .member = s->members[i]};
        mc.member.is_learner = false;
        voters[nv] = s->members[i].id;
        buf_init(&b[nv]);
        cluster_cc_encode(&mc, &b[nv]);
        ctxs[nv] = b[nv].p;
        lens[nv] = b[nv].len;
        if (buf_failed(&b[nv]))
            e = MS_E_NOMEM;
    }
    if (!e)
        e = nv ? raft_bootstrap_ctx(n->raft, voters, ctxs, lens, nv)
               : raft_bootstrap(n->raft, &s->member_id, 1);
    for (size_t i = 0; i < nv; i++)
        buf_fini(&b[i]);
    return e;
}

static ms_err create_core(struct srv *s, const struct wal_log *log, const struct srv_durable *d)
{
    struct srv_node *n = &s->node;
    struct raft_config rc;
    raft_config_default(&rc, s->member_id);
    rc.election_tick = (int)(s->cfg.election_ms / s->cfg.heartbeat_ms);
    rc.heartbeat_tick = 1;
    rc.pre_vote = s->cfg.pre_vote;
    rc.check_quorum = true;                       /* etcd hard-codes it */
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
    /* A member that joins an existing cluster learns the configuration from its leader. */
    if (fresh && !s->cfg.initial_cluster_existing)
        return bootstrap(s);
    return MS_OK;
}

/* A member with peers: persist and apply what its log holds as committed before serving. */
static ms_err settle_member(struct srv *s)
{
    struct srv_node *n = &s->node;
    for (uint64_t i = 0; i < NODE_START_STEPS && raft_has_ready(n->raft); i++) {
        run_ready(s, true);
        arena_reset(s->scratch);
    }
    if (!raft_has_ready(n->raft))
        return MS_OK;
    log_error("raft: the node did not settle at start (applied %llu, last index %llu)",
              (unsigned long long)srv_applied(s), (unsigned long long)raft_mem_last_index(n->mem));
    return MS_E_INTERNAL;
}

/* Elect this single voter and apply everything the log holds before serving. */
static ms_err settle(struct srv *s)
{
    struct srv_node *n = &s->node;
    if (s->n_members > 1)
        return settle_member(s); /* with peers, or a restore that has none */
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

/* ReadIndex contexts start from a random point: an answer the leader still holds for an
 * earlier run of this member cannot then confirm a read batch of this one. */
static uint64_t first_read_ctx(void)
{
    uint64_t v;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        v = clock_now_ns() ^ ((uint64_t)getpid() << 32);
    return v;
}

ms_err srv_node_start(struct srv *s, const struct wal_log *log, const struct srv_durable *d)
{
    struct srv_node *n = &s->node;
    ms_err e;
    if (!(n->release_ev = evtimer_new(s->base, on_release, s)))
        return MS_E_NOMEM;
    n->read_ctx = first_read_ctx();
    if (!(n->mem = raft_mem_create()))
        return MS_E_NOMEM;
    if ((e = fill_log(s, log, d)) != MS_OK || (e = create_core(s, log, d)) != MS_OK)
        return e;
    /* Members not known yet (the memory backend keeps them in its snapshots only): the log
     * holds them, applied first. */
    if (s->n_members <= 1 && raft_mem_last_index(n->mem) > d->applied &&
        (e = settle_member(s)) != MS_OK)
        return e;
    /* A restore (--restore-snapshot) only builds the data directory: no peer traffic. */
    if (s->n_members > 1 && !n->peer && !s->cfg.restore_snapshot[0] &&
        (e = start_peers(s)) != MS_OK)
        return e;
    if ((e = settle(s)) != MS_OK)
        return e;
    n->ready_ev = event_new(s->base, -1, 0, on_ready, s);
    n->tick_ev = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    if (!n->ready_ev || !n->tick_ev)
        return MS_E_NOMEM;
    n->tick_ms = n->lost_ms = clock_now_ms();
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
    peer_destroy(n->peer); /* closes the snapshot sources it holds */
    n->peer = NULL;
    tls_ctx_destroy(n->peer_tls_server); /* after every connection made from them */
    tls_ctx_destroy(n->peer_tls_client);
    n->peer_tls_server = n->peer_tls_client = NULL;
    while (n->snaps_out)
        snap_out_free(s, n->snaps_out); /* backups still being made */
    if (n->snap_in[0])
        unlink(n->snap_in);
    while (n->held) {
        struct node_held *h = n->held;
        n->held = h->next;
        free(h);
    }
    while (n->confs) {
        struct node_conf *c = n->confs;
        n->confs = c->next;
        free(c);
    }
    while (n->promotes) {
        struct node_promote *p = n->promotes;
        n->promotes = p->next;
        free(p);
    }
    if (n->stop_ev)
        event_free(n->stop_ev);
    free(n->deadlines);
    if (n->sync_ev)
        event_free(n->sync_ev);
#ifdef MS_PLANT_ACK_BEFORE_FSYNC
    if (n->plant_flush_ev)
        event_free(n->plant_flush_ev);
#endif
    if (n->tick_ev)
        event_free(n->tick_ev);
    if (n->release_ev)
        event_free(n->release_ev);
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
    if (s->node.release_ev && !evtimer_pending(s->node.release_ev, NULL))
        on_release(-1, 0, s); /* also the snapshot files pruned just before */
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
