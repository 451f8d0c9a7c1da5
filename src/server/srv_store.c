/* srv_store.c - the backend's one write txn, the applied index recorded in it, and its commits.
 *
 * Every apply and read goes through the write txn. The batch's last index and term (the
 * consistent index) and the configuration go into the same txn as the changes they describe,
 * so a restart resumes exactly after what the backend holds. The txn is committed once per
 * batch on the memory backend (no I/O) and on a timer or after SRV_COMMIT_ENTRIES entries on
 * LMDB (its fsync is amortised; the WAL holds the entries meanwhile). After an LMDB commit the
 * backend holds everything applied durably, and hooks.durable lets the WAL go below it.
 */
#include "srv_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <stdlib.h>
#include <string.h>

#define SRV_COMMIT_ENTRIES 10000 /* LMDB: commit at the latest after this many entries */
#define SRV_COMMIT_MS      100   /* ... or this often */

static void arm_commit(struct srv *s)
{
    if (!evtimer_pending(s->store.commit_ev, NULL)) {
        struct timeval tv = {0, SRV_COMMIT_MS * 1000};
        evtimer_add(s->store.commit_ev, &tv);
    }
}

/* What the backend holds durably moved up to index: WAL segments below it can go. */
static void made_durable(struct srv *s, uint64_t index)
{
    if (index <= s->store.durable)
        return;
    s->store.durable = index;
    if (s->hooks.durable)
        s->hooks.durable(s, index);
}

void srv_commit(struct srv *s)
{
    /* Something applied since the last commit: this one writes (the applied index at least),
     * so LMDB syncs it, and with it the previous commit's meta page. An empty commit syncs
     * nothing. */
    bool syncs = s->store.applied > s->store.committed;
    uint64_t t0 = clock_now_ns();
    ms_err e = be_txn_commit(s->wtxn);
    s->wtxn = NULL;
    if (e)
        ms_fatal("backend commit failed: %s", ms_err_name(e));
    if ((e = be_txn_begin(s->be, NULL, true, &s->wtxn)) != MS_OK)
        ms_fatal("cannot begin a backend transaction: %s", ms_err_name(e));
    metrics_hist_observe(&s->ctr.backend_commit_seconds, (double)(clock_now_ns() - t0) / 1e9);
    s->ctr.backend_commits++;
    if (!s->store.lazy_commit || !syncs)
        return;
    /* This commit made the previous one durable (LMDB syncs a commit's meta page only with
     * the next one); this one becomes durable with the next commit, or with the sync the
     * timer makes once nothing more is applied. */
    uint64_t before = s->store.committed;
    s->store.committed = s->store.applied;
    made_durable(s, before);
    arm_commit(s);
}

static void on_commit(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    if (s->store.applied > s->store.committed) {
        srv_commit(s);
    } else if (s->store.committed > s->store.durable) {
        /* Quiet since the last commit: sync its meta page now. */
        ms_err e = be_sync(s->be);
        if (e)
            ms_fatal("backend sync failed: %s", ms_err_name(e));
        made_durable(s, s->store.committed);
    }
}

/* After applying up to s->store.applied: commit now or arm the timer. */
static void maybe_commit(struct srv *s)
{
    if (!s->store.lazy_commit) {
        srv_commit(s);
        return;
    }
    if (s->store.applied - s->store.committed >= SRV_COMMIT_ENTRIES) {
        srv_commit(s);
        return;
    }
    arm_commit(s);
}

void srv_store_applied(struct srv *s, uint64_t index, uint64_t term)
{
    ms_err e = be_put_u64(s->wtxn, BE_BUCKET_META, SRV_META_CONSISTENT_INDEX, index);
    if (!e)
        e = be_put_u64(s->wtxn, BE_BUCKET_META, SRV_META_CONSISTENT_TERM, term);
    if (e)
        ms_fatal("cannot record the applied index: %s", ms_err_name(e));
    s->store.applied = index;
    s->store.applied_term = term;
    maybe_commit(s);
}

uint64_t srv_applied(const struct srv *s)
{
    return s->store.applied;
}

uint64_t srv_applied_term(const struct srv *s)
{
    return s->store.applied_term;
}

ms_err srv_store_init(struct srv *s, bool lazy_commit, uint64_t applied, uint64_t term)
{
    s->store.lazy_commit = lazy_commit;
    s->store.applied = s->store.committed = s->store.durable = applied;
    s->store.applied_term = term;
    s->store.commit_ev = evtimer_new(s->base, on_commit, s);
    return s->store.commit_ev ? MS_OK : MS_E_NOMEM;
}

void srv_store_fini(struct srv *s)
{
    if (s->store.commit_ev)
        event_free(s->store.commit_ev);
    s->store.commit_ev = NULL;
}

void srv_check_apply_error(ms_err e)
{
    /* Requests are checked before anything is written (as etcd's apply does), so an error
     * here is either a client error with nothing written, or the backend failing under us,
     * after which the store's state is unknown: stop, as etcd does. The WAL replays the
     * entry at the next start. */
    switch (e) {
    case MS_E_NOMEM:
    case MS_E_NO_SPACE:
    case MS_E_IO:
    case MS_E_DATA_CORRUPT:
    case MS_E_INTERNAL:
        ms_fatal("applying an entry failed in the backend: %s", ms_err_name(e));
    default:
        return;
    }
}

ms_err srv_conf_put(struct be_txn *t, const struct raft_conf_state *cs)
{
    struct buf b;
    buf_init(&b);
    struct raft_snapshot_meta m = {.conf = *cs};
    raft_snapshot_meta_encode(&m, &b);
    ms_err e = buf_failed(&b) ? MS_E_NOMEM
                              : be_put(t, BE_BUCKET_META, (const uint8_t *)SRV_META_CONF_STATE,
                                       strlen(SRV_META_CONF_STATE), b.p, b.len);
    buf_fini(&b);
    return e;
}

ms_err srv_conf_get(struct be_txn *t, struct raft_conf_state *cs, bool *found)
{
    struct be_val v;
    struct raft_snapshot_meta m;
    ms_err e = be_get(t, BE_BUCKET_META, (const uint8_t *)SRV_META_CONF_STATE,
                      strlen(SRV_META_CONF_STATE), &v);
    *found = false;
    if (e == MS_E_NOT_EXIST)
        return MS_OK;
    if (e)
        return e;
    *found = true;
    if (raft_snapshot_meta_decode(v.p, v.len, &m) != MS_OK)
        return MS_E_DATA_CORRUPT;
    *cs = m.conf;
    return MS_OK;
}

/* Read the members bucket (empty in a data directory that predates it). */
ms_err srv_member_put(struct be_txn *t, const struct cluster_member *m)
{
    uint8_t key[CLUSTER_KEY_LEN];
    struct buf b;
    cluster_member_key(m->id, key);
    buf_init(&b);
    cluster_member_encode(m, &b);
    ms_err e =
        buf_failed(&b) ? MS_E_NOMEM : be_put(t, BE_BUCKET_MEMBERS, key, sizeof(key), b.p, b.len);
    buf_fini(&b);
    return e;
}

ms_err srv_member_remove_record(struct be_txn *t, uint64_t id)
{
    uint8_t key[CLUSTER_KEY_LEN];
    cluster_member_key(id, key);
    ms_err e = be_del(t, BE_BUCKET_MEMBERS, key, sizeof(key));
    if (e && e != MS_E_NOT_EXIST)
        return e;
    static const uint8_t gone = 1;
    return be_put(t, BE_BUCKET_MEMBERS_RM, key, sizeof(key), &gone, 1);
}

ms_err srv_member_was_removed(struct be_txn *t, uint64_t id, bool *removed)
{
    uint8_t key[CLUSTER_KEY_LEN];
    struct be_val v;
    cluster_member_key(id, key);
    ms_err e = be_get(t, BE_BUCKET_MEMBERS_RM, key, sizeof(key), &v);
    *removed = e == MS_OK;
    return e == MS_E_NOT_EXIST ? MS_OK : e;
}

struct cluster_member *srv_member_get(struct srv *s, uint64_t id)
{
    for (size_t i = 0; i < s->n_members; i++)
        if (s->members[i].id == id)
            return &s->members[i];
    return NULL;
}

ms_err srv_members_load(struct srv *s)
{
    if (!s->members && !(s->members = calloc(CLUSTER_MAX_MEMBERS, sizeof(*s->members))))
        return MS_E_NOMEM;
    s->n_members = 0;
    struct be_cursor *c = NULL;
    struct be_val k, v;
    ms_err e = be_cursor_open(s->wtxn, BE_BUCKET_MEMBERS, &c);
    if (!e)
        e = be_cursor_seek(c, NULL, 0, &k, &v);
    while (!e && s->n_members < CLUSTER_MAX_MEMBERS) {
        struct cluster_member *m = &s->members[s->n_members];
        if ((e = cluster_member_decode(v.p, v.len, m)) != MS_OK)
            break;
        s->n_members++;
        e = be_cursor_next(c, &k, &v);
    }
    be_cursor_close(c);
    return e == MS_E_NOT_EXIST ? MS_OK : e;
}
