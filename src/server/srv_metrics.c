/* srv_metrics.c - the server's counters as Prometheus text, under etcd's names so existing
 * dashboards and alerts keep working. */
#include "srv_int.h"

#include "metastore/peer.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
    metrics_write_help(b, name, "counter", help);
    metrics_write_sample(b, name, NULL, (double)v);
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
    metrics_write_help(b, name, "gauge", help);
    metrics_write_sample(b, name, NULL, v);
}

/* One sample per peer of a per-peer counter (label "To" or "From", the peer's hex ID). */
static void peer_family(struct srv *s, struct buf *b, const char *name, const char *type,
                        const char *help, const char *label, size_t field)
{
    bool any = false;
    for (size_t i = 0; i < s->n_members; i++) {
        struct peer_stats ps;
        if (!srv_node_peer_stats(s, s->members[i].id, &ps))
            continue;
        if (!any)
            metrics_write_help(b, name, type, help);
        any = true;
        char labels[64];
        snprintf(labels, sizeof(labels), "%s=\"%llx\"", label,
                 (unsigned long long)s->members[i].id);
        uint64_t v;
        memcpy(&v, (const char *)&ps + field, sizeof(v));
        double d = field == offsetof(struct peer_stats, rtt_us) ? (double)v / 1e6 : (double)v;
        metrics_write_sample(b, name, labels, d);
    }
}

static void peer_metrics(struct srv *s, struct buf *b)
{
    peer_family(s, b, "etcd_network_peer_sent_bytes_total", "counter",
                "The total number of bytes sent to peers.", "To",
                offsetof(struct peer_stats, sent_bytes));
    peer_family(s, b, "etcd_network_peer_received_bytes_total", "counter",
                "The total number of bytes received from peers.", "From",
                offsetof(struct peer_stats, received_bytes));
    peer_family(s, b, "etcd_network_peer_sent_failures_total", "counter",
                "The total number of send failures from peers.", "To",
                offsetof(struct peer_stats, sent_failures));
    /* etcd's is a histogram; the last round trip measured is what the transport keeps. */
    peer_family(s, b, "etcd_network_peer_round_trip_time_seconds", "gauge",
                "Round-Trip-Time between peers (the last measured).", "To",
                offsetof(struct peer_stats, rtt_us));
    counter(b, "etcd_server_heartbeat_send_failures_total",
            "The total number of leader heartbeat send failures (likely overloaded from slow "
            "disk).",
            srv_node_heartbeat_failures(s));
}

/* ---- grpc_server_* ---- */

#define RPC_CODES 17

struct srv_rpc_counts {
    const char *method; /* "/service/Method" */
    const char *alias;  /* the same name at another address (the other front door's) */
    const char *type;
    uint64_t started;
    uint64_t received;
    uint64_t sent;
    uint64_t handled[RPC_CODES];
};

struct srv_rpc_stats {
    struct srv_rpc_counts m[SRV_RPC_METHODS];
    size_t n;
};

void srv_rpc_count(struct srv *s, const char *method, const char *type, enum srv_rpc_event ev,
                   int code)
{
    if (!s->rpcs && !(s->rpcs = calloc(1, sizeof(*s->rpcs))))
        return;
    struct srv_rpc_stats *r = s->rpcs;
    /* Each front door names a method by its own constant: known by address after the first
     * call, by name once per address. */
    size_t i = 0;
    while (i < r->n && r->m[i].method != method && r->m[i].alias != method)
        i++;
    if (i == r->n) {
        i = 0;
        while (i < r->n && strcmp(r->m[i].method, method) != 0)
            i++;
        if (i < r->n && !r->m[i].alias)
            r->m[i].alias = method;
    }
    if (i == r->n) {
        if (r->n == SRV_RPC_METHODS)
            return;
        r->m[r->n++] = (struct srv_rpc_counts){.method = method, .type = type};
    }
    struct srv_rpc_counts *c = &r->m[i];
    switch (ev) {
    case SRV_RPC_STARTED:
        c->started++;
        break;
    case SRV_RPC_RECEIVED:
        c->received++;
        break;
    case SRV_RPC_SENT:
        c->sent++;
        break;
    case SRV_RPC_HANDLED:
        if (code >= 0 && code < RPC_CODES)
            c->handled[code]++;
        break;
    }
}

/* One family of per-method samples; code >= 0 adds grpc_code (handled_total). */
static void rpc_family(const struct srv_rpc_stats *r, struct buf *b, const char *name,
                       const char *help, size_t field)
{
    static const char *const CODES[RPC_CODES] = {
        "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
        "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
        "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
        "DataLoss", "Unauthenticated"};
    metrics_write_help(b, name, "counter", help);
    for (size_t i = 0; i < r->n; i++) {
        const struct srv_rpc_counts *c = &r->m[i];
        const char *svc = c->method + 1, *slash = strchr(svc, '/');
        if (!slash)
            continue;
        char labels[256];
        for (int k = 0; k < (field == offsetof(struct srv_rpc_counts, handled) ? RPC_CODES : 1);
             k++) {
            uint64_t v;
            int n = 0;
            if (field == offsetof(struct srv_rpc_counts, handled)) {
                v = c->handled[k];
                if (!v)
                    continue;
                n = snprintf(labels, sizeof(labels), "grpc_code=\"%s\",", CODES[k]);
            } else {
                memcpy(&v, (const char *)c + field, sizeof(v));
            }
            snprintf(labels + n, sizeof(labels) - (size_t)n,
                     "grpc_method=\"%s\",grpc_service=\"%.*s\",grpc_type=\"%s\"", slash + 1,
                     (int)(slash - svc), svc, c->type);
            metrics_write_sample(b, name, labels, (double)v);
        }
    }
}

void srv_metrics_fini(struct srv *s)
{
    free(s->rpcs);
    s->rpcs = NULL;
}

static void rpc_metrics(const struct srv *s, struct buf *b)
{
    const struct srv_rpc_stats *r = s->rpcs;
    if (!r)
        return;
    rpc_family(r, b, "grpc_server_started_total", "Total number of RPCs started on the server.",
               offsetof(struct srv_rpc_counts, started));
    rpc_family(r, b, "grpc_server_handled_total",
               "Total number of RPCs completed on the server, regardless of success or failure.",
               offsetof(struct srv_rpc_counts, handled));
    rpc_family(r, b, "grpc_server_msg_received_total",
               "Total number of RPC stream messages received on the server.",
               offsetof(struct srv_rpc_counts, received));
    rpc_family(r, b, "grpc_server_msg_sent_total",
               "Total number of gRPC stream messages sent by the server.",
               offsetof(struct srv_rpc_counts, sent));
}

void srv_metrics_text(struct srv *s, struct buf *b)
{
    rpc_metrics(s, b);
    struct wal_stats ws;
    struct be_stats bs;
    srv_node_wal_stats(s, &ws);
    struct srv_node_status ns;
    srv_node_status(s, &ns);
    be_stats(s->be, &bs);
    metrics_write_hist(b, "etcd_disk_wal_fsync_duration_seconds",
                       "The latency distributions of fsync called by WAL.", &ws.fsync_seconds);
    counter(b, "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.",
            ws.bytes_written);
    metrics_write_hist(b, "etcd_disk_backend_commit_duration_seconds",
                       "The latency distributions of commit called by backend.",
                       &s->ctr.backend_commit_seconds);
    gauge(b, "etcd_mvcc_db_total_size_in_bytes",
          "Total size of the underlying database physically allocated in bytes.",
          (double)bs.size_bytes);
    gauge(b, "etcd_mvcc_db_total_size_in_use_in_bytes",
          "Total size of the underlying database logically in use in bytes.",
          (double)bs.in_use_bytes);
    gauge(b, "etcd_debugging_mvcc_current_revision", "The current revision of store.",
          (double)kv_current_rev(s->kv));
    gauge(b, "etcd_debugging_mvcc_compact_revision",
          "The revision of the last compaction in store.", (double)kv_compact_rev(s->kv));
    gauge(b, "etcd_debugging_mvcc_keys_total", "Total number of keys.",
          (double)kv_live_keys(s->kv));
    struct srv_auth_stats as;
    srv_auth_stats(s, &as);
    gauge(b, "etcd_debugging_auth_revision", "The current revision of auth store.",
          (double)as.revision);
    gauge(b, "metastore_auth_tokens", "Simple tokens held (issued and not expired).",
          (double)as.tokens);
    gauge(b, "metastore_auth_requests_held",
          "Auth requests waiting for the password hasher or for their log entry.", (double)as.held);
    counter(b, "etcd_mvcc_put_total", "Total number of puts seen by this member.", s->ctr.puts);
    counter(b, "etcd_mvcc_delete_total", "Total number of deletes seen by this member.",
            s->ctr.deletes);
    counter(b, "etcd_mvcc_txn_total", "Total number of txns seen by this member.", s->ctr.txns);
    counter(b, "etcd_mvcc_range_total", "Total number of ranges seen by this member.",
            s->ctr.ranges);
    counter(b, "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.", s->ctr.proposals_committed);
    counter(b, "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.", s->ctr.proposals_applied);
    counter(b, "etcd_server_proposals_failed_total", "The total number of failed proposals seen.",
            s->ctr.proposals_failed);
    gauge(b, "etcd_server_proposals_pending", "The current number of pending proposals to commit.",
          (double)(ns.last_index > srv_applied(s) ? ns.last_index - srv_applied(s) : 0));
    gauge(b, "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
          ns.lead != 0);
    gauge(b, "etcd_server_is_leader",
          "Whether or not this member is a leader. 1 if is, 0 otherwise.", ns.is_leader);
    counter(b, "etcd_server_leader_changes_seen_total", "The number of leader changes seen.",
            ns.leader_changes);
    peer_metrics(s, b);
    metrics_write_help(b, "etcd_server_version", "gauge",
                       "Which version is running. 1 for 'server_version' label with current "
                       "version.");
    metrics_write_sample(b, "etcd_server_version", "server_version=\"" MS_ETCD_VERSION "\"", 1);
    counter(b, "metastore_ready_batches_total",
            "Ready steps that wrote entries to the WAL (one fdatasync each).",
            s->ctr.ready_batches);
    counter(b, "metastore_backend_commits_total", "Backend transaction commits.",
            s->ctr.backend_commits);
    gauge(b, "metastore_wal_segments", "WAL segment files on disk.", (double)ws.segments);
    gauge(b, "metastore_requests_pending", "Requests submitted and not yet completed.",
          (double)s->waits.n);
    struct srv_lock_stats ls;
    srv_lock_stats(s, &ls);
    gauge(b, "metastore_lock_waiters", "Lock, campaign and observe waits in progress.",
          (double)ls.waiters);
    gauge(b, "metastore_lock_requests", "Lock and election requests in progress (observers apart).",
          (double)srv_lockop_count(s));
    gauge(b, "metastore_lock_watched_keys", "Keys the lock and election waits watch.",
          (double)ls.keys);
    counter(b, "metastore_lock_wakeups_total",
            "Waits woken by the deletion of the key they watched.", ls.wakeups);
    counter(b, "metastore_lock_lookups_total", "Ranges made for lock and election waits.",
            ls.lookups);
    counter(b, "metastore_lock_granted_total", "Waits that ended with the caller first.",
            ls.granted);
}
