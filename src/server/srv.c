/* srv.c - server lifecycle and the request entry points (submit, cancel, status).
 *
 * Opens the backend, the kv store and the wait table, starts each concern (srv_int.h lists the
 * files of server/ in their call order, this one on top) and registers the hooks through which
 * lower files report up.
 * Requests enter through srv_submit only; they complete in srv_ready.c. Nothing here blocks
 * except opening the data directory at start.
 */
#include "srv_int.h"

#include "metastore/grow.h"
#include "metastore/clock.h"
#include "metastore/fs.h"
#include "metastore/log.h"
#include "metastore/peer.h"
#include "metastore/raft_codec.h"
#include "metastore/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static ms_err meta_u64(struct be_txn *t, const char *name, uint64_t *out, bool *found)
{
    return be_get_u64(t, BE_BUCKET_META, name, out, found);
}

static ms_err meta_put_u64(struct be_txn *t, const char *name, uint64_t v)
{
    return be_put_u64(t, BE_BUCKET_META, name, v);
}

static void on_compactor(evutil_socket_t fd, short what, void *arg);

#define PUBLISH_MS 250 /* how often a member proposes its attributes until they are applied */

/* This member's client URLs as published: the --advertise-client-urls, comma-separated. */
static size_t client_urls_text(const struct srv *s, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < s->cfg.n_advertise_client && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "",
                              s->cfg.advertise_client[i].text);
    return o < cap ? o : cap - 1;
}

/* etcd's publish: once a leader is known, propose this member's attributes through the log
 * (every member records them), again each PUBLISH_MS until they are applied, at every start
 * (the URLs may have changed). */
static void on_publish(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    if (srv_self_published(s)) {
        event_del(s->publish_ev);
        return;
    }
    if (!srv_node_has_leader(s))
        return;
    char urls[CFG_MAX_URLS * 320];
    size_t n = client_urls_text(s, urls, sizeof(urls));
    struct srv_req r = {.type = SRV_REQ_MEMBER_ATTR,
                        .u.member = {.id = s->member_id,
                                     .name = s->cfg.name,
                                     .name_len = strlen(s->cfg.name),
                                     .client_urls = urls,
                                     .client_urls_len = n}};
    ms_err e = srv_propose(s, &r, 0);
    if (e)
        log_warn("cannot publish this member's attributes: %s", ms_err_name(e));
}

/* hooks.propose: srv_lease.c proposes the revoke of an expired lease (nobody waits for it). */
static ms_err propose_expired(struct srv *s, const struct srv_req *req)
{
    return srv_propose(s, req, 0);
}

/* hooks.propose_for: srv_auth.c proposes a request once its password is hashed or checked. */
static ms_err propose_for(struct srv *s, const struct srv_req *req, uint64_t id)
{
    ms_err e = srv_propose(s, req, id);
    if (!e)
        srv_wake(s);
    return e;
}

static ms_err open_backend(struct srv *s)
{
    ms_err err = MS_OK;
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/member", s->cfg.data_dir);
    if (fs_mkdirs(dir) != 0) {
        log_error("cannot create data directory %s: %s", dir, strerror(errno));
        return MS_E_IO;
    }
    char lock[4300];
    snprintf(lock, sizeof(lock), "%s/lock", dir);
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        log_error("cannot open the lock file %s: %s", lock, strerror(errno));
        return MS_E_IO;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(s->lock_fd, F_SETLK, &fl) != 0) {
        if (errno == EAGAIN || errno == EACCES)
            log_error("data directory %s is in use by another process (%s is locked)",
                      s->cfg.data_dir, lock);
        else
            log_error("cannot lock %s: %s", lock, strerror(errno));
        return MS_E_IO;
    }
    if (s->cfg.backend == CFG_BACKEND_MEMORY) {
        s->be = be_skiplist_open();
        return s->be ? MS_OK : MS_E_NOMEM;
    }
    if ((err = srv_defrag_recover(s)) != MS_OK)
        return err;
    snprintf(dir, sizeof(dir), "%s/member/db", s->cfg.data_dir);
    s->be = be_lmdb_open(dir, srv_lmdb_map_size(s), &err);
    return s->be ? MS_OK : err;
}

/* Read what the backend holds about the log (applied index, term, configuration) and the
 * persistent identity (member and cluster IDs). Without one in the backend (d->have_id false),
 * the IDs are derived from the flags: settle_identity then takes the WAL's if it has them. */
static ms_err load_durable(struct srv *s, struct srv_durable *d)
{
    bool found;
    ms_err e;
    memset(d, 0, sizeof(*d));
    if ((e = meta_u64(s->wtxn, SRV_META_CONSISTENT_INDEX, &d->applied, &found)) ||
        (e = meta_u64(s->wtxn, SRV_META_CONSISTENT_TERM, &d->applied_term, &found)) ||
        (e = meta_u64(s->wtxn, SRV_META_TERM, &d->legacy_term, &found)) ||
        (e = srv_conf_get(s->wtxn, &d->conf, &d->have_conf)))
        return e;
    if ((e = meta_u64(s->wtxn, SRV_META_MEMBER_ID, &s->member_id, &found)))
        return e;
    d->have_id = found;
    if (found)
        return meta_u64(s->wtxn, SRV_META_CLUSTER_ID, &s->cluster_id, &found);
    /* A new data directory (or one whose identity only the WAL holds): etcd's IDs for the
     * initial cluster of the flags. */
    if (!(d->boot = calloc(1, sizeof(*d->boot))))
        return MS_E_NOMEM;
    d->boot_ok = cluster_bootstrap(&s->cfg, d->boot, d->boot_msg, sizeof(d->boot_msg));
    s->member_id = d->boot->member_id;
    s->cluster_id = d->boot->cluster_id;
    return MS_OK;
}

/* Without an identity in the backend, take the one the WAL was created with: the memory
 * backend keeps it only from its first snapshot on, and a restart with other peer URLs must
 * not change it (an alarm names the member). Then the backend holds it too. */
static ms_err settle_identity(struct srv *s, const struct srv_durable *d, const struct wal_log *log)
{
    if (log->meta_len == SRV_WAL_META_LEN) {
        s->member_id = be64_get(log->meta);
        s->cluster_id = be64_get(log->meta + 8);
    }
    ms_err e = meta_put_u64(s->wtxn, SRV_META_MEMBER_ID, s->member_id);
    if (!e)
        e = meta_put_u64(s->wtxn, SRV_META_CLUSTER_ID, s->cluster_id);
    /* The initial members, in the same txn, when they are the cluster the IDs name. */
    if (e || !d->boot_ok || d->boot->member_id != s->member_id ||
        d->boot->cluster_id != s->cluster_id)
        return e;
    for (size_t i = 0; i < d->boot->n_members && !e; i++)
        e = srv_member_put(s->wtxn, &d->boot->members[i]);
    return e;
}

/* Refuse a data directory that the flags show to be another member's or another cluster's
 * (cluster_check_owner); a restart otherwise ignores the initial flags, as etcd's does. */
static bool same_urls(const struct cfg_url *a, size_t na, const struct cfg_url *b, size_t nb);

/* A member record, applied or still in the log, has id (and, with urls, those peer URLs). */
static bool recorded(struct srv *s, const struct wal_log *log, uint64_t id,
                     const struct cfg_url *urls, size_t n_urls)
{
    const struct cluster_member *m = srv_member_get(s, id);
    if (m && (!urls || same_urls(m->peer_urls, m->n_peer_urls, urls, n_urls)))
        return true;
    for (size_t i = 0; i < log->n_entries; i++) {
        const struct raft_entry *ent = &log->entries[i];
        struct raft_conf_change rc;
        struct cluster_cc cc;
        if (ent->type == RAFT_ENTRY_CONF_CHANGE &&
            raft_cc_decode(ent->data, ent->len, &rc) == MS_OK && rc.ctx_len &&
            cluster_cc_decode(rc.ctx, rc.ctx_len, &cc) == MS_OK && cc.member.id == id &&
            cc.kind != CLUSTER_CC_REMOVE && cc.kind != CLUSTER_CC_PROMOTE &&
            (!urls || same_urls(cc.member.peer_urls, cc.member.n_peer_urls, urls, n_urls)))
            return true;
    }
    return false;
}

/* The flags name this member's cluster as it is now, not as it began: the cluster's record of
 * this member has the advertised peer URLs (they may have been updated since), and the token
 * is the cluster's (a member of --initial-cluster gets, with it, an ID the cluster has). */
static bool flags_of_now(struct srv *s, const struct wal_log *log, const struct cluster_boot *boot)
{
    if (!recorded(s, log, s->member_id, s->cfg.initial_advertise_peer,
                  s->cfg.n_initial_advertise_peer))
        return false;
    for (size_t i = 0; i < boot->n_members; i++)
        if (recorded(s, log, boot->members[i].id, NULL, 0))
            return true;
    return false;
}

static ms_err check_owner(struct srv *s, const struct wal_log *log)
{
    if (s->cfg.initial_cluster_existing)
        return MS_OK;
    struct cluster_boot *boot = calloc(1, sizeof(*boot));
    char msg[512];
    if (!boot)
        return MS_E_NOMEM;
    ms_err e = MS_OK;
    if (cluster_bootstrap(&s->cfg, boot, msg, sizeof(msg)) && !flags_of_now(s, log, boot) &&
        !cluster_check_owner(boot, s->cfg.name, s->member_id, s->cluster_id, msg, sizeof(msg))) {
        log_error("%s: %s", s->cfg.data_dir, msg);
        e = MS_E_BAD_REQUEST;
    }
    free(boot);
    return e;
}

/* The URL lists of the flags' initial cluster are the same sets. */
static bool same_urls(const struct cfg_url *a, size_t na, const struct cfg_url *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = strcmp(a[i].text, b[j].text) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Decode the members a peer answered GET /members with, and check them against the flags as
 * etcd's ValidateClusterAndAssignIDs does: as many members, each member of --initial-cluster
 * one of them by its peer URLs; this member is the one with our advertised peer URLs. */
static bool joined_members(struct srv *s, const struct buf *body, struct srv_durable *d)
{
    const uint8_t *p = body->p;
    size_t left = body->len;
    while (left) {
        if (left < 4 || be32_get(p) > left - 4 || d->n_joined == CLUSTER_MAX_MEMBERS ||
            cluster_member_decode(p + 4, be32_get(p), &d->joined[d->n_joined]) != MS_OK) {
            log_error("the cluster's member list does not decode");
            return false;
        }
        left -= 4 + be32_get(p);
        p += 4 + be32_get(p);
        d->n_joined++;
    }
    if (d->n_joined != s->cfg.n_initial_cluster) {
        log_error("error validating peerURLs: member count is unequal (the cluster has %zu "
                  "members, --initial-cluster names %zu)",
                  d->n_joined, s->cfg.n_initial_cluster);
        return false;
    }
    for (size_t i = 0; i < s->cfg.n_initial_cluster; i++) {
        const struct cfg_member *cm = &s->cfg.initial_cluster[i];
        bool found = false;
        for (size_t j = 0; j < d->n_joined && !found; j++)
            found = same_urls(cm->peer_urls, cm->n_peer_urls, d->joined[j].peer_urls,
                              d->joined[j].n_peer_urls);
        if (!found) {
            log_error("error validating peerURLs: unmatched member while checking PeerURLs: "
                      "%s=%s is not a member of the cluster",
                      cm->name, cm->peer_urls[0].text);
            return false;
        }
    }
    for (size_t j = 0; j < d->n_joined; j++)
        if (same_urls(s->cfg.initial_advertise_peer, s->cfg.n_initial_advertise_peer,
                      d->joined[j].peer_urls, d->joined[j].n_peer_urls))
            s->member_id = d->joined[j].id;
    if (!s->member_id) {
        log_error("this member (--initial-advertise-peer-urls %s) is not a member of the cluster: "
                  "add it first (member add)",
                  s->cfg.initial_advertise_peer[0].text);
        return false;
    }
    return true;
}

#define JOIN_TRIES 15 /* a restart's asks for the members: about 45 s (2 s each, 1 s apart) */

/* --initial-cluster-state existing: ask the other members of --initial-cluster for the
 * cluster's members (etcd's GetClusterFromRemotePeers); this member's and the cluster's IDs
 * come from them. Blocking, bounded: the start only. */
static ms_err join_cluster(struct srv *s, struct srv_durable *d)
{
    const char *urls[CFG_MAX_MEMBERS * CFG_MAX_URLS];
    size_t n = 0;
    for (size_t i = 0; i < s->cfg.n_initial_cluster; i++) {
        const struct cfg_member *cm = &s->cfg.initial_cluster[i];
        if (same_urls(cm->peer_urls, cm->n_peer_urls, s->cfg.initial_advertise_peer,
                      s->cfg.n_initial_advertise_peer))
            continue;
        for (size_t j = 0; j < cm->n_peer_urls; j++)
            urls[n++] = cm->peer_urls[j].text;
    }
    struct tls_ctx *tls = NULL;
    if (cfg_tls_used(&s->cfg, true) || *s->cfg.peer_tls.cert_file || s->cfg.peer_tls.auto_tls) {
        struct tls_config tc;
        const char *hosts[CFG_MAX_URLS];
        char msg[512];
        cfg_tls_config(&s->cfg, true, &tc, hosts);
        if (!(tls = tls_ctx_client(&tc, msg, sizeof(msg)))) {
            log_error("peer TLS: %s", msg);
            return MS_E_IO;
        }
    }
    struct buf body;
    buf_init(&body);
    free(d->joined);
    d->n_joined = 0;
    d->joined = calloc(CLUSTER_MAX_MEMBERS, sizeof(*d->joined));
    ms_err e =
        d->joined ? peer_fetch_members(urls, n, tls, 2000, &s->cluster_id, &body) : MS_E_NOMEM;
    if (e == MS_E_IO)
        log_error("cannot fetch cluster info from peer urls: could not retrieve cluster "
                  "information from the given URLs");
    else if (!e && !joined_members(s, &body, d))
        e = MS_E_BAD_REQUEST;
    if (!e)
        log_info("joining cluster %016llx as member %016llx (%zu members)",
                 (unsigned long long)s->cluster_id, (unsigned long long)s->member_id, d->n_joined);
    buf_fini(&body);
    tls_ctx_destroy(tls);
    return e;
}

/* Open the WAL, settle the identity, and start the Raft node from what is durable: it applies
 * what the backend lacks and elects this member before anything is served. */
static ms_err open_node(struct srv *s, struct srv_durable *d)
{
    struct wal_log log;
    char wal[4200];
    struct stat sb;
    snprintf(wal, sizeof(wal), "%s/member/wal", s->cfg.data_dir);
    bool fresh = !d->have_id && stat(wal, &sb) != 0;
    ms_err e;
    if (fresh && s->cfg.initial_cluster_existing) {
        if ((e = join_cluster(s, d)) != MS_OK)
            return e;
    } else if (fresh && !d->boot_ok) {
        /* A new cluster: refuse the flags etcd refuses, before the WAL takes the IDs. */
        log_error("%s", d->boot_msg);
        return MS_E_BAD_REQUEST;
    }
    /* From the applied entry itself: its term is the in-memory log's base. */
    e = srv_node_wal_open(s, d->applied ? d->applied : 1, &log);
    if (e)
        return e;
    if (!d->have_id && (e = settle_identity(s, d, &log)) != MS_OK)
        log_error("cannot record the member identity: %s", ms_err_name(e));
    if (!e && (e = srv_members_load(s)) != MS_OK)
        log_error("cannot read the members: %s", ms_err_name(e));
    if (!e)
        e = check_owner(s, &log);
    /* A member that joined and has not applied its cluster's members yet (they come with the
     * log or a snapshot from the leader, and the memory backend has them only once it replayed
     * the log): it asks the others again. It receives only from members it dials, so with an
     * empty log it has no other way to find them: it asks until one answers (all members
     * restarting at once come back within seconds), JOIN_TRIES times. Then it goes on with
     * its log, which may still bring them. */
    for (int t = 0; !e && !s->n_members && s->cfg.initial_cluster_existing && !d->n_joined; t++) {
        if (join_cluster(s, d) == MS_OK)
            break;
        if (t + 1 == JOIN_TRIES) {
            log_warn("cannot learn the cluster's members from its peers: going on with the log");
            break;
        }
        struct timespec pause = {1, 0}; /* the start only: the loop does not run yet */
        nanosleep(&pause, NULL);
    }
    if (!e && !s->n_members && d->n_joined) {
        memcpy(s->members, d->joined, d->n_joined * sizeof(*s->members));
        s->n_members = d->n_joined;
    }
    if (!e)
        e = srv_node_start(s, &log, d);
    wal_log_fini(&log);
    return e;
}

/* Remove the records of a compaction that is applied but not yet carried out (replayed from
 * the WAL, or cut short by a stop) before anything is served: otherwise the keyspace hash
 * changes under a client that has just seen /health answer, as the slices run. */
static ms_err finish_compaction(struct srv *s)
{
    ms_err e = MS_OK;
    if (kv_compact_pending(s->kv) && !kv_compact_step(s->kv, s->wtxn, SIZE_MAX, &e) && !e)
        e = MS_E_INTERNAL; /* an unlimited budget stops only on an error */
    if (e)
        log_error("cannot finish the compaction to revision %lld: %s",
                  (long long)kv_compact_rev(s->kv), ms_err_name(e));
    return e;
}

struct srv *srv_create(struct event_base *base, const struct cfg *cfg, ms_err *err)
{
    struct srv_durable d = {0};
    struct srv *s = calloc(1, sizeof(*s));
    if (!s) {
        *err = MS_E_NOMEM;
        return NULL;
    }
    s->base = base;
    s->cfg = *cfg;
    s->lock_fd = -1;
    s->hooks = (struct srv_hooks){.durable = srv_node_durable,
                                  .snapshot_saved = srv_node_snapshot_saved,
                                  .installed = srv_node_installed,
                                  .propose = propose_expired,
                                  .leader = srv_node_leader,
                                  .send_app = srv_node_send_app,

                                  .propose_for = propose_for};
    buf_init(&s->enc);
    if (!wait_init(&s->waits) || !(s->scratch = arena_create(64 << 10))) {
        *err = MS_E_NOMEM;
        goto out_destroy;
    }
    if ((*err = open_backend(s)) != MS_OK)
        goto out_destroy;
    if ((*err = be_txn_begin(s->be, NULL, true, &s->wtxn)) != MS_OK)
        goto out_destroy;
    if (s->cfg.backend == CFG_BACKEND_MEMORY && (*err = srv_snap_load(s)) != MS_OK) {
        log_error("cannot load the newest snapshot: %s", ms_err_name(*err));
        goto out_destroy;
    }
    s->kv = kv_store_open(s->wtxn, err);
    if (!s->kv) {
        log_error("cannot restore the key-value store: %s", ms_err_name(*err));
        goto out_destroy;
    }
    if ((*err = srv_alarms_load(s)) != MS_OK) {
        log_error("cannot read the alarms: %s", ms_err_name(*err));
        goto out_destroy;
    }
    if ((*err = srv_auth_open(s)) != MS_OK) {
        log_error("cannot read the users and roles: %s", ms_err_name(*err));
        goto out_destroy;
    }
    if ((*err = load_durable(s, &d)) != MS_OK) {
        log_error("cannot read server metadata: %s", ms_err_name(*err));
        goto out_destroy;
    }
#ifdef MS_PLANT_DOUBLE_APPLY
    /* PLANTED BUG (-Dplant=double_apply, for tests/fault only): start as if the last applied
     * entry were not, so that a restart applies it a second time (a put makes two revisions).
     * Its term is then looked up in the WAL, opened from the entry before. */
    if (d.applied > 1) {
        log_warn("PLANTED BUG: applying entry %llu again", (unsigned long long)d.applied);
        d.applied--;
        d.applied_term = 0;
    }
#endif
    if ((*err = srv_store_init(s, s->cfg.backend != CFG_BACKEND_MEMORY, d.applied,
                               d.applied_term)) != MS_OK ||
        (*err = srv_apply_init(s)) != MS_OK || (*err = srv_snap_init(s)) != MS_OK)
        goto out_destroy;
    s->compactor_ev = event_new(base, -1, EV_PERSIST, on_compactor, s);
    if (!s->compactor_ev) {
        *err = MS_E_NOMEM;
        goto out_destroy;
    }
    metrics_hist_init(&s->ctr.backend_commit_seconds, 0.001, 2);
    if ((*err = srv_lease_open(s)) != MS_OK) {
        log_error("cannot load the leases: %s", ms_err_name(*err));
        goto out_destroy;
    }
    if ((*err = srv_watch_init(s)) != MS_OK || (*err = srv_lock_init(s)) != MS_OK ||
        (*err = srv_lockop_init(s)) != MS_OK)
        goto out_destroy;
    *err = open_node(s, &d);
    free(d.boot);
    free(d.joined);
    d.boot = NULL;
    d.joined = NULL;
    if (*err != MS_OK)
        goto out_destroy;
    /* Request IDs travel in the log: unique across members and restarts, as etcd's idutil
     * makes them (member bits, then the start time, then a counter). */
    s->next_id = ((s->member_id & 0xffff) << 48) | ((clock_wall_ms() & 0xffffffffffULL) << 8);
    if (s->n_members > 1) {
        struct timeval tv = {PUBLISH_MS / 1000, (PUBLISH_MS % 1000) * 1000};
        if (!(s->publish_ev = event_new(base, -1, EV_PERSIST, on_publish, s)) ||
            event_add(s->publish_ev, &tv) != 0) {
            *err = MS_E_NOMEM;
            goto out_destroy;
        }
    }
    if ((*err = finish_compaction(s)) != MS_OK)
        goto out_destroy;
    srv_commit(s);
    srv_compactor_init(&s->compactor, s->cfg.auto_compaction_revision,
                       s->cfg.auto_compaction_retention, clock_now_ms(), kv_current_rev(s->kv));
    if (s->compactor.interval_ms) {
        struct timeval tv = {(time_t)(s->compactor.interval_ms / 1000),
                             (suseconds_t)(s->compactor.interval_ms % 1000) * 1000};
        event_add(s->compactor_ev, &tv);
    }
    log_info("metastore %s started: name=%s backend=%s data-dir=%s revision=%lld "
             "applied-index=%llu term=%llu",
             MS_VERSION, s->cfg.name, s->be->ops->name, s->cfg.data_dir,
             (long long)kv_current_rev(s->kv), (unsigned long long)srv_applied(s),
             (unsigned long long)srv_node_term(s));
    return s;

out_destroy:
    free(d.boot);
    /* A start that fails undoes what it wrote to the backend; srv_destroy would commit it. */
    if (s->wtxn) {
        be_txn_abort(s->wtxn);
        s->wtxn = NULL;
    }
    srv_destroy(s);
    return NULL;
}

void srv_destroy(struct srv *s)
{
    if (!s)
        return;
    srv_snap_fini(s);
    if (s->wtxn) {
        ms_err e = be_txn_commit(s->wtxn);
        if (e)
            log_error("final backend commit failed: %s", ms_err_name(e));
        s->wtxn = NULL;
        if (!e && s->be)
            be_sync(s->be);
    }
    srv_node_close(s);
    srv_auth_close(s);
    srv_lockop_fini(s);
    srv_lock_fini(s);
    srv_watch_fini(s);
    srv_apply_fini(s);
    srv_store_fini(s);
    if (s->compactor_ev)
        event_free(s->compactor_ev);
    if (s->publish_ev)
        event_free(s->publish_ev);
    srv_lease_close(s);
    kv_store_close(s->kv);
    be_close(s->be);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    srv_reads_fini(s);
    wait_fini(&s->waits);
    arena_destroy(s->scratch);
    buf_fini(&s->enc);
    srv_metrics_fini(s);
    free(s->members);
    free(s);
}

static ms_err validate(const struct srv *s, const struct srv_req *req)
{
    switch (req->type) {
    case SRV_REQ_RANGE:
        return kv_check_range(&req->u.range);
    case SRV_REQ_PUT:
        return kv_check_put(&req->u.put);
    case SRV_REQ_DELETE:
        return kv_check_del(&req->u.del);
    case SRV_REQ_TXN:
        return kv_check_txn(&req->u.txn, (size_t)s->cfg.max_txn_ops);
    case SRV_REQ_COMPACT:
    case SRV_REQ_ALARM:
    case SRV_REQ_LEASE_GRANT:
    case SRV_REQ_LEASE_REVOKE:
    case SRV_REQ_AUTH:
        return MS_OK;
    case SRV_REQ_LEASE_KEEPALIVE:
    case SRV_REQ_LEASE_TTL:
        return MS_OK;
    case SRV_REQ_DEFRAG:
    case SRV_REQ_MEMBER_ATTR: /* the server's own, never a client's */
    case SRV_REQ_MOVE_LEADER: /* srv_move_leader */
    case SRV_REQ_MEMBER_ADD:  /* srv_member_*: conf changes */
    case SRV_REQ_MEMBER_REMOVE:
    case SRV_REQ_MEMBER_UPDATE:
    case SRV_REQ_MEMBER_PROMOTE:
        break;
    }
    return MS_E_BAD_REQUEST;
}

/* Encode req as the next log entry (id names the caller, 0 for none). */
ms_err srv_propose(struct srv *s, const struct srv_req *req, uint64_t id)
{
    s->enc.len = 0;
    srv_entry_encode(id, req, &s->enc);
    if (buf_failed(&s->enc)) {
        buf_fini(&s->enc);
        return MS_E_NOMEM;
    }
    /* etcd refuses a raft request bigger than --max-request-bytes. */
    if (s->enc.len > s->cfg.max_request_bytes)
        return MS_E_REQUEST_TOO_LARGE;
    return srv_node_propose(s, id, s->enc.p, s->enc.len);
}

ms_err srv_submit(struct srv *s, const struct srv_req *req, srv_done_fn done, void *ctx,
                  uint64_t *id)
{
    ms_err e = validate(s, req);
    if (e)
        return e;
    if (req->type == SRV_REQ_AUTH && srv_auth_needs_hasher(&req->u.auth))
        return srv_auth_submit(s, &req->u.auth, done, ctx, id);
    uint64_t rid = ++s->next_id;
    ms_err fail = MS_OK;
    bool is_read =
        req->type == SRV_REQ_RANGE || (req->type == SRV_REQ_TXN && !kv_txn_writes(&req->u.txn));
    if (req->type == SRV_REQ_LEASE_KEEPALIVE || req->type == SRV_REQ_LEASE_TTL) {
        struct wait_entry *w = wait_add(&s->waits, rid);
        if (!w)
            return MS_E_NOMEM;
        w->done = done;
        w->ctx = ctx;
        srv_lease_ask(s, rid, req, srv_node_request_timeout_ms(s));
        *id = rid;
        srv_wake(s);
        return MS_OK;
    }
    if (is_read) {
        if (!srv_reads_push(s, rid))
            return MS_E_NOMEM;
    } else {
        struct srv_req with_id;
        if (req->type == SRV_REQ_LEASE_GRANT && req->u.lease.id == 0) {
            /* The ID travels in the entry so every member grants the same one. */
            with_id = *req;
            with_id.u.lease.id = srv_lease_new_id(s);
            req = &with_id;
        }
        ms_err pe;
        if (srv_quota_ok(s, req)) {
            pe = srv_propose(s, req, rid);
        } else if (srv_has_alarm(s, SRV_ALARM_NOSPACE)) {
            return MS_E_NO_SPACE;
        } else {
            /* etcd quotaAlarmer: raise NOSPACE through the log and refuse the write once the
             * alarm is applied, so that whoever sees the refusal also sees the alarm. */
            struct srv_req a = {.type = SRV_REQ_ALARM,
                                .u.alarm = {.action = SRV_ALARM_ACTIVATE,
                                            .member_id = s->member_id,
                                            .alarm = SRV_ALARM_NOSPACE}};
            pe = srv_propose(s, &a, rid);
            fail = MS_E_NO_SPACE;
        }
        if (pe)
            return pe;
    }
    struct wait_entry *w = wait_add(&s->waits, rid);
    if (!w) {
        /* The entry (if any) still applies; nobody waits for it. */
        srv_wake(s);
        return MS_E_NOMEM;
    }
    w->done = done;
    w->ctx = ctx;
    w->req = is_read ? req : NULL;
    w->fail = fail;
    *id = rid;
    srv_wake(s);
    return MS_OK;
}

static void on_compactor(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    int64_t rev = srv_compactor_tick(&s->compactor, clock_now_ms(), kv_current_rev(s->kv));
    if (rev <= kv_compact_rev(s->kv))
        return;
    struct srv_req r = {.type = SRV_REQ_COMPACT, .u.compact = {.revision = rev}};
    log_info("auto compaction to revision %lld", (long long)rev);
    if (srv_propose(s, &r, 0) != MS_OK)
        log_warn("auto compaction to revision %lld could not be proposed", (long long)rev);
}

ms_err srv_move_leader(struct srv *s, uint64_t target, srv_done_fn done, void *ctx, uint64_t *id)
{
    uint64_t rid;
    ms_err e = srv_waiter_add(s, done, ctx, &rid);
    return e ? e : srv_waiter_keep(s, rid, srv_node_move_leader(s, target, rid), id);
}

void srv_cancel(struct srv *s, uint64_t id)
{
    if (srv_auth_cancel(s, id))
        return;
    if (!wait_remove(&s->waits, id, NULL) && !srv_cancel_op(s, id) && !srv_lockop_cancel(s, id))
        srv_lock_cancel(s, id);
}

void srv_header(struct srv *s, struct srv_header *h)
{
    h->cluster_id = s->cluster_id;
    h->member_id = s->member_id;
    h->revision = kv_current_rev(s->kv);
    h->raft_term = srv_node_term(s);
}

void srv_status(struct srv *s, struct srv_status *st)
{
    struct be_stats bs;
    be_stats(s->be, &bs);
    memset(st, 0, sizeof(*st));
    st->revision = kv_current_rev(s->kv);
    st->db_size = bs.size_bytes;
    st->db_size_in_use = bs.in_use_bytes;
    struct srv_node_status ns;
    srv_node_status(s, &ns);
    st->leader = ns.lead;
    st->raft_index = ns.commit;
    st->raft_term = ns.term;
    st->raft_applied_index = srv_applied(s);
    st->is_learner = srv_node_is_learner(s);
}

ms_err srv_hash(struct srv *s, uint32_t *hash, int64_t *revision)
{
    *revision = kv_current_rev(s->kv);
    return kv_hash(s->kv, s->wtxn, hash);
}

ms_err srv_hash_kv(struct srv *s, int64_t rev, uint32_t *hash, int64_t *compact_rev,
                   int64_t *revision)
{
    *revision = kv_current_rev(s->kv);
    return kv_hash_kv(s->kv, s->wtxn, rev, hash, compact_rev);
}

void srv_self(struct srv *s, struct srv_member *m)
{
    m->id = s->member_id;
    m->name = s->cfg.name;
    m->peer_urls = s->cfg.initial_advertise_peer;
    m->n_peer_urls = s->cfg.n_initial_advertise_peer;
    m->client_urls = s->cfg.advertise_client;
    m->n_client_urls = s->cfg.n_advertise_client;
    m->is_learner = false;
}

size_t srv_members(struct srv *s, struct srv_member out[SRV_MAX_MEMBERS])
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_members && n < SRV_MAX_MEMBERS; i++) {
        const struct cluster_member *m = &s->members[i];
        if (m->id == s->member_id) {
            srv_self(s, &out[n]);
            out[n].peer_urls = m->peer_urls;
            out[n].n_peer_urls = m->n_peer_urls;
            out[n++].is_learner = m->is_learner;
            continue;
        }
        out[n++] = (struct srv_member){.id = m->id,
                                       .name = m->name,
                                       .peer_urls = m->peer_urls,
                                       .n_peer_urls = m->n_peer_urls,
                                       .client_urls = m->client_urls,
                                       .n_client_urls = m->n_client_urls,
                                       .is_learner = m->is_learner};
    }
    if (n == 0)
        srv_self(s, &out[n++]);
    return n;
}

bool srv_step_down(struct srv *s, void (*left)(void *ctx), void *ctx)
{
    return srv_node_step_down(s, left, ctx);
}

uint64_t srv_leaderless_ms(const struct srv *s)
{
    return srv_node_leaderless_ms(s);
}

bool srv_has_leader(const struct srv *s)
{
    return srv_node_has_leader(s);
}

size_t srv_pending(const struct srv *s)
{
    return s->waits.n;
}

const struct cfg *srv_cfg(const struct srv *s)
{
    return &s->cfg;
}
