/* cfg.c - flags, ETCD_* variables and the JSON config file -> struct cfg.
 *
 * One table (CFG_FLAGS) lists every option once: its flag name (which is also its config-file
 * key and, upper-cased with '_' for '-', its ETCD_ variable), a default and a setter. Nothing
 * here touches the network or the data directory; it only validates text.
 */
#include "metastore/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef bool (*cfg_set_fn)(struct cfg *c, const char *v, char *msg, size_t msgsz);

struct cfg_flag {
    const char *name;
    const char *def; /* NULL: computed later */
    const char *help;
    cfg_set_fn set;
};

static bool set_str(char *dst, size_t cap, const char *v, const char *what, char *msg, size_t msgsz)
{
    if (strlen(v) >= cap) {
        snprintf(msg, msgsz, "%s is too long (at most %zu bytes)", what, cap - 1);
        return false;
    }
    strcpy(dst, v);
    return true;
}

static bool parse_u64(const char *v, uint64_t min, uint64_t *out, const char *what, char *msg,
                      size_t msgsz)
{
    char *end;
    errno = 0;
    if (!*v || *v == '-' || isspace((unsigned char)*v))
        goto bad;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x < min)
        goto bad;
    *out = x;
    return true;
bad:
    snprintf(msg, msgsz, "invalid value \"%s\" for %s: want an integer >= %" PRIu64, v, what, min);
    return false;
}

static bool parse_url(const char *s, size_t len, struct cfg_url *u, char *msg, size_t msgsz)
{
    char tmp[300];
    if (len >= sizeof(tmp)) {
        snprintf(msg, msgsz, "URL too long");
        return false;
    }
    memcpy(tmp, s, len);
    tmp[len] = 0;
    memset(u, 0, sizeof(*u));
    const char *p = strstr(tmp, "://");
    if (!p) {
        snprintf(msg, msgsz, "URL \"%s\" has no scheme (want http://host:port)", tmp);
        return false;
    }
    size_t sl = (size_t)(p - tmp);
    bool https = sl == 5 && strncmp(tmp, "https", 5) == 0;
    if (!https && (sl != 4 || strncmp(tmp, "http", 4) != 0)) {
        snprintf(msg, msgsz, "URL \"%s\": unsupported scheme (want http or https)", tmp);
        return false;
    }
    strcpy(u->scheme, https ? "https" : "http");
    p += 3;
    const char *host = p, *hend, *port;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend || hend[1] != ':')
            goto bad;
        host = p + 1;
        port = hend + 2;
    } else {
        hend = strrchr(p, ':');
        if (!hend)
            goto bad;
        port = hend + 1;
    }
    size_t hl = (size_t)(hend - host);
    if (hl == 0 || hl >= sizeof(u->host))
        goto bad;
    memcpy(u->host, host, hl);
    u->host[hl] = 0;
    char *end;
    errno = 0;
    unsigned long pn = strtoul(port, &end, 10);
    /* A trailing "/" is tolerated, anything else is not. */
    if (errno || end == port || pn > 65535 || (*end && strcmp(end, "/") != 0))
        goto bad;
    u->port = (uint16_t)pn;
    snprintf(u->text, sizeof(u->text), strchr(u->host, ':') ? "%s://[%s]:%u" : "%s://%s:%u",
             u->scheme, u->host, (unsigned)u->port);
    return true;
bad:
    snprintf(msg, msgsz, "URL \"%s\": want http://host:port or https://host:port", tmp);
    return false;
}

void cfg_tls_config(const struct cfg *c, bool peer, struct tls_config *out,
                    const char *hosts[CFG_MAX_URLS])
{
    const struct cfg_tls *t = peer ? &c->peer_tls : &c->client_tls;
    const struct cfg_url *urls = peer ? c->listen_peer : c->listen_client;
    size_t n = peer ? c->n_listen_peer : c->n_listen_client;
    for (size_t i = 0; i < n; i++)
        hosts[i] = urls[i].host;
    *out = (struct tls_config){
        .cert_file = t->cert_file,
        .key_file = t->key_file,
        .trusted_ca_file = t->trusted_ca_file,
        .client_cert_auth = t->client_cert_auth,
        .auto_tls = t->auto_tls && !(*t->cert_file && *t->key_file),
        .cipher_suites = c->cipher_suites,
        .allowed_cn = t->allowed_cn,
        .hosts = hosts,
        .n_hosts = n,
    };
}

bool cfg_tls_used(const struct cfg *c, bool peer)
{
    const struct cfg_url *urls = peer ? c->listen_peer : c->listen_client;
    size_t n = peer ? c->n_listen_peer : c->n_listen_client;
    for (size_t i = 0; i < n; i++)
        if (strcmp(urls[i].scheme, "https") == 0)
            return true;
    return false;
}

bool cfg_parse_urls(const char *s, struct cfg_url *urls, size_t max, size_t *n, char *msg,
                    size_t msgsz)
{
    *n = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len > 0) {
            if (*n == max) {
                snprintf(msg, msgsz, "too many URLs (at most %zu)", max);
                return false;
            }
            if (!parse_url(s, len, &urls[(*n)++], msg, msgsz))
                return false;
        }
        s += len + (comma ? 1 : 0);
    }
    if (*n == 0) {
        snprintf(msg, msgsz, "no URL given");
        return false;
    }
    return true;
}

#define URL_SETTER(fn, field, nfield)                                                              \
    static bool fn(struct cfg *c, const char *v, char *msg, size_t msgsz)                          \
    {                                                                                              \
        return cfg_parse_urls(v, c->field, CFG_MAX_URLS, &c->nfield, msg, msgsz);                  \
    }
URL_SETTER(set_listen_client, listen_client, n_listen_client)
URL_SETTER(set_advertise_client, advertise_client, n_advertise_client)
URL_SETTER(set_listen_peer, listen_peer, n_listen_peer)
URL_SETTER(set_initial_advertise_peer, initial_advertise_peer, n_initial_advertise_peer)

static bool set_name(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return set_str(c->name, sizeof(c->name), v, "--name", msg, msgsz);
}

static bool set_data_dir(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return set_str(c->data_dir, sizeof(c->data_dir), v, "--data-dir", msg, msgsz);
}

static bool set_token(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return set_str(c->initial_cluster_token, sizeof(c->initial_cluster_token), v,
                   "--initial-cluster-token", msg, msgsz);
}

static bool set_initial_cluster(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    /* name=url,name=url,... ; a name may appear several times (several peer URLs). */
    c->n_initial_cluster = 0;
    while (*v) {
        const char *comma = strchr(v, ',');
        size_t len = comma ? (size_t)(comma - v) : strlen(v);
        const char *eq = memchr(v, '=', len);
        if (!eq || eq == v) {
            snprintf(msg, msgsz, "--initial-cluster: \"%.*s\" is not name=URL", (int)len, v);
            return false;
        }
        size_t nl = (size_t)(eq - v);
        struct cfg_member *m = NULL;
        for (size_t i = 0; i < c->n_initial_cluster; i++)
            if (strlen(c->initial_cluster[i].name) == nl &&
                memcmp(c->initial_cluster[i].name, v, nl) == 0)
                m = &c->initial_cluster[i];
        if (!m) {
            if (c->n_initial_cluster == CFG_MAX_MEMBERS || nl >= sizeof(m->name)) {
                snprintf(msg, msgsz, "--initial-cluster: too many members or name too long");
                return false;
            }
            m = &c->initial_cluster[c->n_initial_cluster++];
            memset(m, 0, sizeof(*m));
            memcpy(m->name, v, nl);
        }
        if (m->n_peer_urls == CFG_MAX_URLS) {
            snprintf(msg, msgsz, "--initial-cluster: too many URLs for %s", m->name);
            return false;
        }
        if (!parse_url(eq + 1, len - nl - 1, &m->peer_urls[m->n_peer_urls++], msg, msgsz))
            return false;
        v += len + (comma ? 1 : 0);
    }
    if (c->n_initial_cluster == 0) {
        snprintf(msg, msgsz, "--initial-cluster is empty");
        return false;
    }
    return true;
}

static bool set_cluster_state(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    if (strcmp(v, "new") == 0)
        c->initial_cluster_existing = false;
    else if (strcmp(v, "existing") == 0)
        c->initial_cluster_existing = true;
    else {
        snprintf(msg, msgsz,
                 "invalid value \"%s\" for --initial-cluster-state: want new or existing", v);
        return false;
    }
    return true;
}

static bool set_max_request_bytes(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->max_request_bytes, "--max-request-bytes", msg, msgsz);
}

static bool set_max_txn_ops(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->max_txn_ops, "--max-txn-ops", msg, msgsz);
}

static bool set_auth_token(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    /* The JWT options (keys, method) are checked when the server opens them. */
    if (strcmp(v, "simple") != 0 && strncmp(v, "jwt,", 4) != 0) {
        snprintf(msg, msgsz, "--auth-token: unsupported token provider %s (simple or jwt,...)", v);
        return false;
    }
    return set_str(c->auth_token, sizeof(c->auth_token), v, "--auth-token", msg, msgsz);
}

static bool set_auth_token_ttl(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->auth_token_ttl_s, "--auth-token-ttl", msg, msgsz);
}

static bool set_bcrypt_cost(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    if (!parse_u64(v, 4, &c->bcrypt_cost, "--bcrypt-cost", msg, msgsz))
        return false;
    if (c->bcrypt_cost <= 31)
        return true;
    snprintf(msg, msgsz, "--bcrypt-cost: %s is above bcrypt's maximum cost 31", v);
    return false;
}

static bool set_quota(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    if (!parse_u64(v, 0, &c->quota_backend_bytes, "--quota-backend-bytes", msg, msgsz))
        return false;
    if (c->quota_backend_bytes == 0)
        c->quota_backend_bytes = (uint64_t)2 << 30;
    if (c->quota_backend_bytes > ((uint64_t)1 << 40)) {
        snprintf(msg, msgsz, "--quota-backend-bytes %" PRIu64 " is above the 1 TiB limit",
                 c->quota_backend_bytes);
        return false;
    }
    return true;
}

static bool set_snapshot_count(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->snapshot_count, "--snapshot-count", msg, msgsz);
}

/* Go's strconv.ParseBool, which its flag package uses. */
static bool parse_bool(const char *v, bool *out, const char *what, char *msg, size_t msgsz)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
    static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    snprintf(msg, msgsz, "invalid boolean value \"%s\" for %s: parse error", v, what);
    return false;
}

static bool set_pre_vote(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_bool(v, &c->pre_vote, "-pre-vote", msg, msgsz);
}

static bool set_strict_reconfig(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_bool(v, &c->strict_reconfig_check, "-strict-reconfig-check", msg, msgsz);
}

static bool set_compaction_mode(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    if (strcmp(v, "periodic") == 0)
        c->auto_compaction_revision = false;
    else if (strcmp(v, "revision") == 0)
        c->auto_compaction_revision = true;
    else {
        snprintf(msg, msgsz,
                 "invalid value \"%s\" for --auto-compaction-mode: want periodic or revision", v);
        return false;
    }
    return true;
}

/* Kept as text until every flag is read: its unit depends on the mode. */
static bool set_compaction_retention(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return set_str(c->compaction_retention_text, sizeof(c->compaction_retention_text), v,
                   "--auto-compaction-retention", msg, msgsz);
}

static bool set_restore(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return set_str(c->restore_snapshot, sizeof(c->restore_snapshot), v, "--restore-snapshot", msg,
                   msgsz);
}

static bool set_heartbeat(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->heartbeat_ms, "--heartbeat-interval", msg, msgsz);
}

static bool set_election(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->election_ms, "--election-timeout", msg, msgsz);
}

/* A Go time.Duration ("10m", "1.5s", "2h45m", "300ms"; "0" alone needs no unit), in
 * milliseconds (a positive value below 1 ms counts as 1 ms). */
static bool parse_duration_ms(const char *v, uint64_t *out, const char *what, char *msg,
                              size_t msgsz)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1},  {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
                 {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    const char *p = v;
    double total = 0;
    if (strcmp(v, "0") == 0) {
        *out = 0;
        return true;
    }
    if (!*p)
        goto bad;
    while (*p) {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.')
            goto bad;
        errno = 0;
        double x = strtod(p, &end);
        if (errno || end == p)
            goto bad;
        p = end;
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t ul = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, ul) == 0 && ul > best_len) {
                best = i;
                best_len = ul;
            }
        }
        if (!best_len)
            goto bad;
        total += x * units[best].ns;
        p += best_len;
    }
    if (total > 9.2e18)
        goto bad;
    *out = (uint64_t)(total / 1e6);
    if (*out == 0 && total > 0)
        *out = 1;
    return true;
bad:
    snprintf(msg, msgsz, "invalid value \"%s\" for %s: want a duration such as 10m, 2s or 500ms", v,
             what);
    return false;
}

/* Periodic retention: a bare integer is a number of hours (as etcd), else a duration. */
static bool parse_retention_ms(const char *v, uint64_t *out, char *msg, size_t msgsz)
{
    char *end;
    if (*v && isdigit((unsigned char)*v)) {
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (!*end && !errno && n <= UINT64_MAX / 3600000ULL) {
            *out = n * 3600000ULL;
            return true;
        }
    }
    return parse_duration_ms(v, out, "--auto-compaction-retention", msg, msgsz);
}

static bool set_watch_progress(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    if (!parse_duration_ms(v, &c->watch_progress_ms,
                           "--experimental-watch-progress-notify-interval", msg, msgsz))
        return false;
    if (c->watch_progress_ms == 0)
        c->watch_progress_ms = 10 * 60 * 1000; /* etcd keeps its default for 0 */
    return true;
}

static bool set_keepalive_min(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_duration_ms(v, &c->grpc_keepalive_min_ms, "--grpc-keepalive-min-time", msg, msgsz);
}

static bool set_keepalive_interval(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_duration_ms(v, &c->grpc_keepalive_interval_ms, "--grpc-keepalive-interval", msg,
                             msgsz);
}

static bool set_keepalive_timeout(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_duration_ms(v, &c->grpc_keepalive_timeout_ms, "--grpc-keepalive-timeout", msg,
                             msgsz);
}

static bool set_watch_stream_buffer(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1024, &c->watch_stream_buffer_bytes, "--watch-stream-buffer-bytes", msg,
                     msgsz);
}

static bool set_watch_total_buffer(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 0, &c->watch_total_buffer_bytes, "--watch-total-buffer-bytes", msg, msgsz);
}

static bool set_max_watchers(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->max_watchers, "--max-watchers", msg, msgsz);
}

static bool set_max_watchers_per_stream(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return parse_u64(v, 1, &c->max_watchers_per_stream, "--max-watchers-per-stream", msg, msgsz);
}

static bool set_log_level(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    if (!log_level_parse(v, &c->log_level)) {
        snprintf(msg, msgsz,
                 "invalid value \"%s\" for --log-level: want debug, info, warn or error", v);
        return false;
    }
    return true;
}

static bool set_backend(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    if (strcmp(v, "lmdb") == 0)
        c->backend = CFG_BACKEND_LMDB;
    else if (strcmp(v, "memory") == 0)
        c->backend = CFG_BACKEND_MEMORY;
    else {
        snprintf(msg, msgsz, "invalid value \"%s\" for --backend: want lmdb or memory", v);
        return false;
    }
    return true;
}

#define TLS_STR_SETTER(fn, field, flag)                                                            \
    static bool fn(struct cfg *c, const char *v, char *msg, size_t msgsz)                          \
    {                                                                                              \
        return set_str(c->field, sizeof(c->field), v, flag, msg, msgsz);                           \
    }
#define TLS_BOOL_SETTER(fn, field, flag)                                                           \
    static bool fn(struct cfg *c, const char *v, char *msg, size_t msgsz)                          \
    {                                                                                              \
        return parse_bool(v, &c->field, flag, msg, msgsz);                                         \
    }
TLS_STR_SETTER(set_cert_file, client_tls.cert_file, "--cert-file")
TLS_STR_SETTER(set_key_file, client_tls.key_file, "--key-file")
TLS_STR_SETTER(set_trusted_ca_file, client_tls.trusted_ca_file, "--trusted-ca-file")
TLS_BOOL_SETTER(set_client_cert_auth, client_tls.client_cert_auth, "-client-cert-auth")
TLS_BOOL_SETTER(set_auto_tls, client_tls.auto_tls, "-auto-tls")
TLS_STR_SETTER(set_peer_cert_file, peer_tls.cert_file, "--peer-cert-file")
TLS_STR_SETTER(set_peer_key_file, peer_tls.key_file, "--peer-key-file")
TLS_STR_SETTER(set_peer_trusted_ca_file, peer_tls.trusted_ca_file, "--peer-trusted-ca-file")
TLS_BOOL_SETTER(set_peer_client_cert_auth, peer_tls.client_cert_auth, "-peer-client-cert-auth")
TLS_BOOL_SETTER(set_peer_auto_tls, peer_tls.auto_tls, "-peer-auto-tls")
TLS_STR_SETTER(set_peer_allowed_cn, peer_tls.allowed_cn, "--peer-cert-allowed-cn")
TLS_STR_SETTER(set_cipher_suites, cipher_suites, "--cipher-suites")

static bool set_config_file(struct cfg *c, const char *v, char *msg, size_t msgsz)
{
    return set_str(c->config_file, sizeof(c->config_file), v, "--config-file", msg, msgsz);
}

/* Go's bool flags: "--x" alone is true, and a value is given only as "--x=false". */
static bool is_bool_flag(const struct cfg_flag *f)
{
    return f->set == set_pre_vote || f->set == set_strict_reconfig ||
           f->set == set_client_cert_auth || f->set == set_auto_tls ||
           f->set == set_peer_client_cert_auth || f->set == set_peer_auto_tls;
}

static const struct cfg_flag CFG_FLAGS[] = {
    {"name", "default", "Human-readable name for this member.", set_name},
    {"data-dir", NULL, "Path to the data directory (default \"<name>.metastore\").", set_data_dir},
    {"listen-client-urls", "http://localhost:2379", "List of URLs to listen on for client traffic.",
     set_listen_client},
    {"advertise-client-urls", "http://localhost:2379",
     "List of this member's client URLs to advertise to the public.", set_advertise_client},
    {"listen-peer-urls", "http://localhost:2380", "List of URLs to listen on for peer traffic.",
     set_listen_peer},
    {"initial-advertise-peer-urls", "http://localhost:2380",
     "List of this member's peer URLs to advertise to the rest of the cluster.",
     set_initial_advertise_peer},
    {"initial-cluster", NULL,
     "Initial cluster configuration for bootstrapping (default "
     "\"<name>=<initial-advertise-peer-urls>\").",
     set_initial_cluster},
    {"initial-cluster-state", "new", "Initial cluster state ('new' or 'existing').",
     set_cluster_state},
    {"initial-cluster-token", "etcd-cluster",
     "Initial cluster token for the cluster during bootstrap.", set_token},
    {"pre-vote", "true",
     "Enable the Raft Pre-Vote algorithm, so that a member that rejoins after a partition does "
     "not disturb the cluster (etcd 3.5's default; 3.4's is false).",
     set_pre_vote},
    {"strict-reconfig-check", "true",
     "Reject reconfiguration requests that would cause quorum loss.", set_strict_reconfig},
    {"heartbeat-interval", "100", "Time (in milliseconds) of a heartbeat interval.", set_heartbeat},
    {"election-timeout", "1000", "Time (in milliseconds) for an election to timeout.",
     set_election},
    {"max-request-bytes", "1572864", "Maximum client request size in bytes the server will accept.",
     set_max_request_bytes},
    {"quota-backend-bytes", "0",
     "Raise the NOSPACE alarm when the backend size exceeds this (0: 2 GiB, as etcd).", set_quota},
    {"snapshot-count", "100000",
     "Number of committed entries that trigger a snapshot of the memory backend.",
     set_snapshot_count},
    {"max-txn-ops", "128", "Maximum number of operations permitted in a transaction.",
     set_max_txn_ops},
    {"cert-file", "", "Path to the client server TLS cert file.", set_cert_file},
    {"key-file", "", "Path to the client server TLS key file.", set_key_file},
    {"client-cert-auth", "false", "Enable client cert authentication.", set_client_cert_auth},
    {"trusted-ca-file", "", "Path to the client server TLS trusted CA cert file.",
     set_trusted_ca_file},
    {"auto-tls", "false", "Client TLS using generated certificates.", set_auto_tls},
    {"peer-cert-file", "", "Path to the peer server TLS cert file.", set_peer_cert_file},
    {"peer-key-file", "", "Path to the peer server TLS key file.", set_peer_key_file},
    {"peer-client-cert-auth", "false", "Enable peer client cert authentication.",
     set_peer_client_cert_auth},
    {"peer-trusted-ca-file", "", "Path to the peer server TLS trusted CA file.",
     set_peer_trusted_ca_file},
    {"peer-cert-allowed-cn", "", "Allowed CN for inter peer authentication.", set_peer_allowed_cn},
    {"peer-auto-tls", "false", "Peer TLS using generated certificates", set_peer_auto_tls},
    {"cipher-suites", "",
     "Comma-separated list of supported TLS cipher suites between client/server and peers "
     "(empty will be auto-populated by Go).",
     set_cipher_suites},
    {"auth-token", "simple",
     "Specify auth token specific options: 'simple', or "
     "'jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256|PS256|ES256|...,ttl=5m'.",
     set_auth_token},
    {"auth-token-ttl", "300", "The lifetime in seconds of the auth token.", set_auth_token_ttl},
    {"bcrypt-cost", "10",
     "Specify bcrypt algorithm cost factor for auth password hashing (4 to 31).", set_bcrypt_cost},
    {"auto-compaction-mode", "periodic",
     "Interpret 'auto-compaction-retention' one of: periodic|revision.", set_compaction_mode},
    {"auto-compaction-retention", "0",
     "Auto compaction retention for mvcc key value store. 0 means disable auto compaction. "
     "Periodic: a duration (\"10m\") or hours; revision: a number of revisions.",
     set_compaction_retention},
    {"experimental-watch-progress-notify-interval", "10m",
     "Duration of periodic watch progress notifications.", set_watch_progress},
    {"watch-stream-buffer-bytes", "1048576",
     "Output a watch stream may buffer before its watchers stop receiving and later catch up "
     "from history.",
     set_watch_stream_buffer},
    /* A fixed size rather than a fraction of RAM: the machine's RAM is not what a container may
     * use, and a fixed default behaves the same everywhere. 64 MiB holds a full output buffer
     * for some 60 streams, fits a small machine next to the data, and bounds what one loop turn
     * copies when a large value is fanned out to thousands of streams. */
    {"watch-total-buffer-bytes", "67108864",
     "Output all watch streams together may buffer (0: no limit); past it, streams over their "
     "share stop receiving and later catch up from history.",
     set_watch_total_buffer},
    {"max-watchers", "100000", "Maximum number of watchers on this member.", set_max_watchers},
    {"max-watchers-per-stream", "10000", "Maximum number of watchers on one watch stream.",
     set_max_watchers_per_stream},
    {"grpc-keepalive-min-time", "5s",
     "Minimum interval duration that a client should wait before pinging server.",
     set_keepalive_min},
    {"grpc-keepalive-interval", "2h",
     "Frequency duration of server-to-client ping to check if a connection is alive (0 to "
     "disable).",
     set_keepalive_interval},
    {"grpc-keepalive-timeout", "20s",
     "Additional duration of wait before closing a non-responsive connection (0 to disable).",
     set_keepalive_timeout},
    {"log-level", "info", "Log level: debug, info, warn or error.", set_log_level},
    {"backend", "lmdb", "Storage backend: lmdb (persistent) or memory.", set_backend},
    {"restore-snapshot", "",
     "Build --data-dir from a snapshot file (from /v3/maintenance/snapshot) and exit.",
     set_restore},
    {"config-file", "",
     "Path to a JSON configuration file (etcd's key names). When given, other flags and ETCD_* "
     "variables are ignored.",
     set_config_file},
};
#define N_FLAGS (sizeof(CFG_FLAGS) / sizeof(CFG_FLAGS[0]))

static const struct cfg_flag *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strlen(CFG_FLAGS[i].name) == len && memcmp(CFG_FLAGS[i].name, name, len) == 0)
            return &CFG_FLAGS[i];
    return NULL;
}

/* "data-dir" -> "ETCD_DATA_DIR" */
static void env_name(const char *flag, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "ETCD_");
    for (; *flag && n + 1 < cap; flag++)
        out[n++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    out[n] = 0;
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [flags]\n\n"
            "metastore: an etcd v3-compatible key-value store.\n\n"
            "Every flag can also be given as an ETCD_* environment variable\n"
            "(e.g. --data-dir as ETCD_DATA_DIR) or as a key of the JSON config file.\n\n",
            prog);
    for (size_t i = 0; i < N_FLAGS; i++) {
        fprintf(out, "  --%s\n      %s", CFG_FLAGS[i].name, CFG_FLAGS[i].help);
        if (CFG_FLAGS[i].def && *CFG_FLAGS[i].def)
            fprintf(out, " (default \"%s\")", CFG_FLAGS[i].def);
        fputc('\n', out);
    }
    fprintf(out, "  --help, -h\n      Show this help.\n"
                 "  --version\n      Print the version and exit.\n");
}

/* Apply every default, then derived defaults once the rest is known. */
static bool apply_defaults(struct cfg *c, char *msg, size_t msgsz)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        if (CFG_FLAGS[i].def && !CFG_FLAGS[i].set(c, CFG_FLAGS[i].def, msg, msgsz))
            return false;
    return true;
}

static bool finish(struct cfg *c, bool have_dir, bool have_cluster, char *msg, size_t msgsz)
{
    if (!have_dir && snprintf(c->data_dir, sizeof(c->data_dir), "%s.metastore", c->name) >=
                         (int)sizeof(c->data_dir)) {
        snprintf(msg, msgsz, "--name too long for the default data directory");
        return false;
    }
    if (!have_cluster) {
        c->n_initial_cluster = 1;
        struct cfg_member *m = &c->initial_cluster[0];
        memset(m, 0, sizeof(*m));
        strcpy(m->name, c->name);
        memcpy(m->peer_urls, c->initial_advertise_peer,
               c->n_initial_advertise_peer * sizeof(m->peer_urls[0]));
        m->n_peer_urls = c->n_initial_advertise_peer;
    }
    bool found = false;
    for (size_t i = 0; i < c->n_initial_cluster; i++)
        if (strcmp(c->initial_cluster[i].name, c->name) == 0)
            found = true;
    if (!found) {
        snprintf(msg, msgsz, "couldn't find local name \"%s\" in the initial cluster configuration",
                 c->name);
        return false;
    }
    if (c->auto_compaction_revision) {
        if (!parse_u64(c->compaction_retention_text, 0, &c->auto_compaction_retention,
                       "--auto-compaction-retention", msg, msgsz))
            return false;
    } else if (!parse_retention_ms(c->compaction_retention_text, &c->auto_compaction_retention, msg,
                                   msgsz)) {
        return false;
    }
    /* etcd's configureClientListeners: an https URL needs a certificate (files or auto). */
    const struct {
        const struct cfg_url *urls;
        size_t n;
        const struct cfg_tls *tls;
        const char *side;
        const char *flags;
    } sides[] = {
        {c->listen_client, c->n_listen_client, &c->client_tls, "client", "--cert-file, --key-file"},
        {c->listen_peer, c->n_listen_peer, &c->peer_tls, "peer",
         "--peer-cert-file, --peer-key-file"},
    };
    for (size_t k = 0; k < 2; k++) {
        const struct cfg_tls *t = sides[k].tls;
        bool have = (*t->cert_file && *t->key_file) || t->auto_tls;
        for (size_t i = 0; i < sides[k].n; i++) {
            if (strcmp(sides[k].urls[i].scheme, "https") == 0 && !have) {
                snprintf(msg, msgsz,
                         "TLS key/cert (%s) must be provided for %s url %s with HTTPS scheme",
                         sides[k].flags, sides[k].side, sides[k].urls[i].text);
                return false;
            }
        }
        if ((*t->cert_file != 0) != (*t->key_file != 0)) {
            snprintf(msg, msgsz,
                     "KeyFile and CertFile must both be present[key: %.200s, cert: %.200s]",
                     t->key_file, t->cert_file);
            return false;
        }
    }
    if (c->election_ms < 5 * c->heartbeat_ms) {
        snprintf(msg, msgsz,
                 "--election-timeout[%" PRIu64 "ms] should be at least 5 times "
                 "--heartbeat-interval[%" PRIu64 "ms]",
                 c->election_ms, c->heartbeat_ms);
        return false;
    }
    return true;
}

/* One key of the config file (name: the flag it sets) with its JSON value. */
static bool load_key(struct cfg *c, const char *path, const char *name, json_t *val, bool *have_dir,
                     bool *have_cluster, FILE *err, char *msg, size_t msgsz)
{
    const struct cfg_flag *f = find_flag(name, strlen(name));
    if (!f || strcmp(name, "config-file") == 0) {
        fprintf(err, "metastore: config file %s: ignoring unknown key \"%s\"\n", path, name);
        return true;
    }
    char num[32];
    const char *v;
    if (json_is_string(val)) {
        v = json_string_value(val);
    } else if (json_is_boolean(val) && is_bool_flag(f)) {
        v = json_is_true(val) ? "true" : "false";
    } else if (json_is_integer(val) && json_integer_value(val) >= 0) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(val));
        v = num;
    } else {
        snprintf(msg, msgsz,
                 "config file %.200s: \"%s\" must be a string, a boolean or a non-negative "
                 "integer",
                 path, name);
        return false;
    }
    if (strcmp(name, "data-dir") == 0)
        *have_dir = true;
    if (strcmp(name, "initial-cluster") == 0)
        *have_cluster = true;
    return f->set(c, v, msg, msgsz);
}

/* etcd's config file nests the TLS settings: client-transport-security and
 * peer-transport-security hold cert-file, key-file, client-cert-auth, trusted-ca-file,
 * auto-tls (and allowed-cn for peers), which are the flags of those names (peer-*,
 * --peer-cert-allowed-cn). NULL when key is no such object. */
static const char *transport_prefix(const char *key)
{
    if (strcmp(key, "client-transport-security") == 0)
        return "";
    if (strcmp(key, "peer-transport-security") == 0)
        return "peer-";
    return NULL;
}

static bool load_file(struct cfg *c, const char *path, bool *have_dir, bool *have_cluster,
                      FILE *err, char *msg, size_t msgsz)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(msg, msgsz, "config file %.200s: %s (line %d)", path, jerr.text, jerr.line);
        return false;
    }
    bool ok = json_is_object(root);
    if (!ok)
        snprintf(msg, msgsz, "config file %.200s: want a JSON object", path);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (!ok)
            break;
        const char *prefix = transport_prefix(key);
        if (!prefix || !json_is_object(val)) {
            ok = load_key(c, path, key, val, have_dir, have_cluster, err, msg, msgsz);
            continue;
        }
        const char *sub;
        json_t *sv;
        json_object_foreach(val, sub, sv)
        {
            char name[96];
            if (*prefix && strcmp(sub, "allowed-cn") == 0)
                snprintf(name, sizeof(name), "peer-cert-allowed-cn");
            else
                snprintf(name, sizeof(name), "%s%.60s", prefix, sub);
            if (!(ok = load_key(c, path, name, sv, have_dir, have_cluster, err, msg, msgsz)))
                break;
        }
    }
    json_decref(root);
    return ok;
}

enum cfg_result cfg_load(struct cfg *c, int argc, char **argv, char **envp, FILE *out, FILE *err)
{
    char msg[512] = "";
    bool have_dir = false, have_cluster = false;
    bool given[N_FLAGS] = {false};
    const char *prog = argc > 0 ? argv[0] : "metastore";

    memset(c, 0, sizeof(*c));
    if (!apply_defaults(c, msg, sizeof(msg)))
        goto bad;

    /* Command line: --flag=value, --flag value, -flag... as Go's flag package. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            snprintf(msg, sizeof(msg), "unexpected argument \"%s\"", a);
            goto bad;
        }
        a += a[1] == '-' ? 2 : 1;
        if (strcmp(a, "help") == 0 || strcmp(a, "h") == 0) {
            usage(out, prog);
            return CFG_EXIT;
        }
        if (strcmp(a, "version") == 0) {
            fprintf(out, "metastore Version: %s\netcd API Version: 3.4\n", MS_VERSION);
            return CFG_EXIT;
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const struct cfg_flag *f = find_flag(a, nl);
        if (!f) {
            snprintf(msg, sizeof(msg), "flag provided but not defined: -%.*s", (int)nl, a);
            goto bad;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && is_bool_flag(f))
            v = "true";
        if (!v) {
            if (i + 1 >= argc) {
                snprintf(msg, sizeof(msg), "flag needs an argument: -%s", f->name);
                goto bad;
            }
            v = argv[++i];
        }
        if (!f->set(c, v, msg, sizeof(msg)))
            goto bad;
        given[f - CFG_FLAGS] = true;
    }

    /* Environment: only for flags not given on the command line. */
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, "ETCD_", 5) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        const struct cfg_flag *f = NULL;
        for (size_t i = 0; i < N_FLAGS && !f; i++) {
            char en[64];
            env_name(CFG_FLAGS[i].name, en, sizeof(en));
            if (strlen(en) == (size_t)(eq - *e) && memcmp(en, *e, (size_t)(eq - *e)) == 0)
                f = &CFG_FLAGS[i];
        }
        if (!f) {
            fprintf(err, "metastore: unrecognized environment variable %.*s\n", (int)(eq - *e), *e);
            continue;
        }
        if (given[f - CFG_FLAGS]) {
            fprintf(err, "metastore: %.*s is shadowed by the --%s flag\n", (int)(eq - *e), *e,
                    f->name);
            continue;
        }
        if (!f->set(c, eq + 1, msg, sizeof(msg)))
            goto bad;
        given[f - CFG_FLAGS] = true;
    }

    if (c->config_file[0]) {
        char path[sizeof(c->config_file)];
        strcpy(path, c->config_file);
        for (size_t i = 0; i < N_FLAGS; i++)
            if (given[i] && strcmp(CFG_FLAGS[i].name, "config-file") != 0)
                fprintf(err, "metastore: --%s ignored: a config file is given\n",
                        CFG_FLAGS[i].name);
        memset(c, 0, sizeof(*c));
        if (!apply_defaults(c, msg, sizeof(msg)))
            goto bad;
        strcpy(c->config_file, path);
        if (!load_file(c, path, &have_dir, &have_cluster, err, msg, sizeof(msg)))
            goto bad;
    } else {
        have_dir = given[find_flag("data-dir", 8) - CFG_FLAGS];
        have_cluster = given[find_flag("initial-cluster", 15) - CFG_FLAGS];
    }
    if (!finish(c, have_dir, have_cluster, msg, sizeof(msg)))
        goto bad;
    return CFG_OK;

bad:
    fprintf(err, "metastore: %s\nRun '%s --help' for the list of flags.\n", msg, prog);
    return CFG_BAD;
}
