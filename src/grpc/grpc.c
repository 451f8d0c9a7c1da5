/* grpc.c - the gRPC front door: the method table, connections taken over from the HTTP/1.1
 * server, their reaping and the shutdown.
 *
 * A connection that breaks inside an API call (a write from a completion callback) is killed:
 * its events are removed at once and it is freed from the reap event, so no caller ever sees
 * its connection or call vanish under it.
 */
#include "grpc_int.h"

#include "metastore/cfg.h"
#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GRPC_OVERHEAD (512u << 10) /* etcd grpcOverheadBytes */

static const struct grpc_method METHODS[] = {
    {"/etcdserverpb.KV/Range", GRPC_UNARY, grpc_kv_range, NULL, NULL, NULL},
    {"/etcdserverpb.KV/Put", GRPC_UNARY, grpc_kv_put, NULL, NULL, NULL},
    {"/etcdserverpb.KV/DeleteRange", GRPC_UNARY, grpc_kv_delete_range, NULL, NULL, NULL},
    {"/etcdserverpb.KV/Txn", GRPC_UNARY, grpc_kv_txn, NULL, NULL, NULL},
    {"/etcdserverpb.KV/Compact", GRPC_UNARY, grpc_kv_compact, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseGrant", GRPC_UNARY, grpc_lease_grant, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseRevoke", GRPC_UNARY, grpc_lease_revoke, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseKeepAlive", GRPC_BIDI, grpc_lease_keepalive,
     grpc_lease_keepalive_end, NULL, grpc_lease_keepalive_free},
    {"/etcdserverpb.Lease/LeaseTimeToLive", GRPC_UNARY, grpc_lease_timetolive, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseLeases", GRPC_UNARY, grpc_lease_leases, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/Status", GRPC_UNARY, grpc_maint_status, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/Hash", GRPC_UNARY, grpc_maint_hash, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/HashKV", GRPC_UNARY, grpc_maint_hash_kv, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/Alarm", GRPC_UNARY, grpc_maint_alarm, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/Defragment", GRPC_UNARY, grpc_maint_defragment, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/Snapshot", GRPC_SERVER_STREAM, grpc_maint_snapshot, NULL,
     grpc_maint_snapshot_drain, grpc_maint_snapshot_free},
    {"/etcdserverpb.Maintenance/MoveLeader", GRPC_UNARY, grpc_maint_move_leader, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberAdd", GRPC_UNARY, grpc_cluster_member_add, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberRemove", GRPC_UNARY, grpc_cluster_member_remove, NULL, NULL,
     NULL},
    {"/etcdserverpb.Cluster/MemberUpdate", GRPC_UNARY, grpc_cluster_member_update, NULL, NULL,
     NULL},
    {"/etcdserverpb.Cluster/MemberList", GRPC_UNARY, grpc_cluster_member_list, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberPromote", GRPC_UNARY, grpc_cluster_member_promote, NULL, NULL,
     NULL},
    {"/etcdserverpb.Watch/Watch", GRPC_BIDI, grpc_watch_msg, NULL, grpc_watch_drain,
     grpc_watch_free},
    {"/v3lockpb.Lock/Lock", GRPC_UNARY, grpc_lock_lock, NULL, NULL, NULL},
    {"/v3lockpb.Lock/Unlock", GRPC_UNARY, grpc_lock_unlock, NULL, NULL, NULL},
    {"/v3electionpb.Election/Campaign", GRPC_UNARY, grpc_election_campaign, NULL, NULL, NULL},
    {"/v3electionpb.Election/Proclaim", GRPC_UNARY, grpc_election_proclaim, NULL, NULL, NULL},
    {"/v3electionpb.Election/Leader", GRPC_UNARY, grpc_election_leader, NULL, NULL, NULL},
    {"/v3electionpb.Election/Observe", GRPC_SERVER_STREAM, grpc_election_observe, NULL,
     grpc_election_observe_drain, grpc_election_observe_free},
    {"/v3electionpb.Election/Resign", GRPC_UNARY, grpc_election_resign, NULL, NULL, NULL},
#define AUTH(m, fn)                                                                                \
    {                                                                                              \
        "/etcdserverpb.Auth/" m, GRPC_UNARY, fn, NULL, NULL, NULL                                  \
    }
    AUTH("AuthEnable", grpc_auth_enable),
    AUTH("AuthDisable", grpc_auth_disable),
    AUTH("Authenticate", grpc_auth_authenticate),
    AUTH("UserAdd", grpc_auth_user_add),
    AUTH("UserGet", grpc_auth_user_get),
    AUTH("UserList", grpc_auth_user_list),
    AUTH("UserDelete", grpc_auth_user_delete),
    AUTH("UserChangePassword", grpc_auth_user_changepw),
    AUTH("UserGrantRole", grpc_auth_user_grant),
    AUTH("UserRevokeRole", grpc_auth_user_revoke),
    AUTH("RoleAdd", grpc_auth_role_add),
    AUTH("RoleGet", grpc_auth_role_get),
    AUTH("RoleList", grpc_auth_role_list),
    AUTH("RoleDelete", grpc_auth_role_delete),
    AUTH("RoleGrantPermission", grpc_auth_role_grant),
    AUTH("RoleRevokePermission", grpc_auth_role_revoke),
#undef AUTH
};

const struct grpc_method *grpc_method_find(const char *path, size_t len)
{
    for (size_t i = 0; i < sizeof(METHODS) / sizeof(METHODS[0]); i++)
        if (strlen(METHODS[i].path) == len && memcmp(METHODS[i].path, path, len) == 0)
            return &METHODS[i];
    return NULL;
}

bool grpc_service_known(const char *name, size_t len)
{
    static const char *const ETCD[] = {
        "etcdserverpb.KV",      "etcdserverpb.Watch",       "etcdserverpb.Lease",
        "etcdserverpb.Cluster", "etcdserverpb.Maintenance", "etcdserverpb.Auth",
        "v3lockpb.Lock",        "v3electionpb.Election",
    };
    for (size_t i = 0; i < sizeof(ETCD) / sizeof(ETCD[0]); i++)
        if (strlen(ETCD[i]) == len && memcmp(ETCD[i], name, len) == 0)
            return true;
    return false;
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct grpc *g = arg;
    (void)fd;
    (void)what;
    while (g->reap) {
        struct grpc_conn *c = g->reap;
        g->reap = c->reap_next;
        grpc_conn_free(c);
    }
}

/* etcd's stream interceptor (monitorLeader): a stream whose caller required a leader ends
 * with "etcdserver: no leader" once the member has had none for three election timeouts. */
static void on_leader_check(evutil_socket_t fd, short what, void *arg)
{
    struct grpc *g = arg;
    (void)fd, (void)what;
    if (srv_leaderless_ms(g->srv) < g->leaderless_max_ms)
        return;
    for (struct grpc_conn *c = g->conns; c; c = c->next)
        for (struct grpc_call *call = c->calls; call; call = call->next)
            if (call->leader_watched && call->state == GRPC_CALL_OPEN)
                grpc_call_fail(call, MS_E_NO_LEADER, NULL);
}

void grpc_leader_watch(struct grpc_call *call, bool on)
{
    struct grpc *g = call->conn->g;
    if (on == call->leader_watched)
        return;
    call->leader_watched = on;
    if (on && g->n_leader_watch++ == 0) {
        uint64_t ms = g->leaderless_max_ms / 6 ? g->leaderless_max_ms / 6 : 1;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        event_add(g->leader_ev, &tv);
    } else if (!on && --g->n_leader_watch == 0) {
        event_del(g->leader_ev);
    }
}

void grpc_conn_kill(struct grpc_conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    if (c->rd_on)
        event_del(c->rd);
    if (c->wr_on)
        event_del(c->wr);
    if (c->ka)
        event_del(c->ka);
    c->rd_on = c->wr_on = false;
    c->reap_next = c->g->reap;
    c->g->reap = c;
    event_active(c->g->reap_ev, EV_TIMEOUT, 1);
}

/* nghttp2's allocations, through the kept blocks: a session allocates and frees several small
 * blocks per call (stream, header copies, frames), in bursts of many calls. */
static void *h2_malloc(size_t size, void *ud)
{
    return mcache_alloc(ud, size);
}

static void h2_free(void *p, void *ud)
{
    mcache_free(ud, p);
}

static void *h2_calloc(size_t n, size_t size, void *ud)
{
    return mcache_calloc(ud, n, size);
}

static void *h2_realloc(void *p, size_t size, void *ud)
{
    return mcache_realloc(ud, p, size);
}

struct grpc *grpc_create(struct event_base *base, struct srv *srv, ms_err *err)
{
    struct grpc *g = calloc(1, sizeof(*g));
    if (!g) {
        *err = MS_E_NOMEM;
        return NULL;
    }
    g->base = base;
    g->srv = srv;
    arena_pool_init(&g->arenas, GRPC_ARENA_FIRST);
    mcache_init(&g->h2_blocks, GRPC_H2_KEEP);
    g->h2_mem = (nghttp2_mem){&g->h2_blocks, h2_malloc, h2_free, h2_calloc, h2_realloc};
    const struct cfg *cfg = srv_cfg(srv);
    g->max_recv = (size_t)cfg->max_request_bytes + GRPC_OVERHEAD;
    g->ka_min_ms = cfg->grpc_keepalive_min_ms;
    g->ka_interval_ms = cfg->grpc_keepalive_interval_ms;
    g->ka_timeout_ms = cfg->grpc_keepalive_timeout_ms;
    buf_init(&g->watch_buf);
    buf_init(&g->watch_hdr);
    g->leaderless_max_ms = 3 * cfg->election_ms;
    g->reap_ev = event_new(base, -1, 0, on_reap, g);
    g->due_ev = event_new(base, -1, 0, grpc_on_due, g);
    g->leader_ev = event_new(base, -1, EV_PERSIST, on_leader_check, g);
    if (!g->reap_ev || !g->due_ev || !g->leader_ev) {
        if (g->reap_ev)
            event_free(g->reap_ev);
        if (g->due_ev)
            event_free(g->due_ev);
        if (g->leader_ev)
            event_free(g->leader_ev);
        free(g);
        *err = MS_E_NOMEM;
        return NULL;
    }
    return g;
}

void grpc_destroy(struct grpc *g)
{
    if (!g)
        return;
    for (struct grpc_conn *c = g->conns; c; c = c->next)
        grpc_conn_goaway(c);
    on_reap(-1, 0, g);
    while (g->conns)
        grpc_conn_free(g->conns);
    event_free(g->reap_ev);
    event_free(g->due_ev);
    event_free(g->leader_ev);
    buf_fini(&g->watch_buf);
    buf_fini(&g->watch_hdr);
    arena_pool_fini(&g->arenas);
    mcache_fini(&g->h2_blocks); /* after the last session */
    free(g);
}

bool grpc_accept(struct grpc *g, int fd, struct tls_conn *tls, const void *p, size_t len)
{
    struct grpc_conn *c = grpc_conn_create(g, fd, tls);
    if (!c) {
        log_warn("grpc: cannot take a connection: out of memory");
        tls_conn_free(tls);
        close(fd);
        return false;
    }
    return grpc_conn_feed(c, p, len);
}

void grpc_stats(const struct grpc *g, struct grpc_stats *out)
{
    out->conns = g->n_conns;
    out->calls = g->n_calls;
}
