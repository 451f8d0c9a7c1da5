/* cfg.h - the server configuration: etcd's flag names, ETCD_* environment variables and a
 * JSON config file with etcd's config-file key names, turned into one immutable struct cfg.
 *
 * Precedence is etcd's: if a config file is given (--config-file or ETCD_CONFIG_FILE) it is
 * the only source and other flags and variables are ignored (with a warning); otherwise a
 * flag beats its ETCD_* variable, which beats the default.
 */
#ifndef METASTORE_CFG_H
#define METASTORE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "metastore/log.h"
#include "metastore/tls.h"

#define CFG_MAX_URLS 8

/* One http or https URL, split. */
struct cfg_url {
    char scheme[8]; /* "http" or "https" */
    char host[256]; /* without brackets for IPv6 */
    uint16_t port;
    char text[300]; /* as given, normalised: scheme://host:port */
};

struct cfg_member {
    char name[128];
    struct cfg_url peer_urls[CFG_MAX_URLS];
    size_t n_peer_urls;
};

enum cfg_backend { CFG_BACKEND_LMDB = 0, CFG_BACKEND_MEMORY = 1 };

/* The TLS of one side (clients or peers), etcd's transport.TLSInfo flags. */
struct cfg_tls {
    char cert_file[4096];       /* --cert-file, --peer-cert-file */
    char key_file[4096];        /* --key-file, --peer-key-file */
    char trusted_ca_file[4096]; /* --trusted-ca-file, --peer-trusted-ca-file */
    bool client_cert_auth;      /* --client-cert-auth, --peer-client-cert-auth */
    bool auto_tls;              /* --auto-tls, --peer-auto-tls */
    char allowed_cn[256];       /* --peer-cert-allowed-cn (peers only) */
};

#define CFG_MAX_MEMBERS 16

struct cfg {
    char name[128];
    char data_dir[4096];
    struct cfg_url listen_client[CFG_MAX_URLS];
    size_t n_listen_client;
    struct cfg_url advertise_client[CFG_MAX_URLS];
    size_t n_advertise_client;
    struct cfg_url listen_peer[CFG_MAX_URLS];
    size_t n_listen_peer;
    struct cfg_url initial_advertise_peer[CFG_MAX_URLS];
    size_t n_initial_advertise_peer;
    struct cfg_member initial_cluster[CFG_MAX_MEMBERS];
    size_t n_initial_cluster;
    bool initial_cluster_existing; /* --initial-cluster-state existing */
    char initial_cluster_token[256];
    uint64_t max_request_bytes;
    uint64_t max_txn_ops;
    uint64_t quota_backend_bytes; /* 0 in the flag means etcd's default, 2 GiB */
    uint64_t snapshot_count;
    bool auto_compaction_revision;      /* --auto-compaction-mode revision (else periodic) */
    uint64_t auto_compaction_retention; /* periodic: milliseconds; revision: revisions; 0 off */
    char restore_snapshot[4096];        /* --restore-snapshot: build data_dir from it and exit */
    char compaction_retention_text[64];
    uint64_t watch_progress_ms;          /* --experimental-watch-progress-notify-interval */
    uint64_t watch_stream_buffer_bytes;  /* --watch-stream-buffer-bytes */
    uint64_t watch_total_buffer_bytes;   /* --watch-total-buffer-bytes (0: no budget) */
    uint64_t max_watchers;               /* --max-watchers */
    uint64_t max_watchers_per_stream;    /* --max-watchers-per-stream */
    uint64_t grpc_keepalive_min_ms;      /* --grpc-keepalive-min-time: client pings' minimum gap */
    uint64_t grpc_keepalive_interval_ms; /* --grpc-keepalive-interval: silence before a ping */
    uint64_t grpc_keepalive_timeout_ms;  /* --grpc-keepalive-timeout: wait for its answer */
    uint64_t heartbeat_ms;
    uint64_t election_ms;
    bool pre_vote;              /* --pre-vote */
    bool strict_reconfig_check; /* --strict-reconfig-check */
    struct cfg_tls client_tls;
    struct cfg_tls peer_tls;
    char cipher_suites[2048];  /* --cipher-suites: Go's names, comma-separated (both sides) */
    char auth_token[2048];     /* --auth-token: "simple" or "jwt,<options>" */
    uint64_t auth_token_ttl_s; /* --auth-token-ttl: simple tokens' idle lifetime */
    uint64_t bcrypt_cost;      /* --bcrypt-cost */
    enum log_level log_level;
    enum cfg_backend backend;
    char config_file[4096];
};

enum cfg_result {
    CFG_OK = 0,   /* run the server */
    CFG_EXIT = 1, /* --help or --version was printed: exit 0 */
    CFG_BAD = 2,  /* invalid configuration: message written, exit 2 */
};

/* Build cfg from argv and the environment (envp as main's third argument). Messages for
 * --help, --version and errors go to out / err. */
enum cfg_result cfg_load(struct cfg *cfg, int argc, char **argv, char **envp, FILE *out, FILE *err);

/* The TLS settings of the client side (peer false) or the peer side, for tls_ctx_server and
 * tls_ctx_client: pointers into c (which must outlive out); the auto-TLS hosts are the hosts of
 * the side's listen URLs, stored in hosts (room for CFG_MAX_URLS). */
void cfg_tls_config(const struct cfg *c, bool peer, struct tls_config *out,
                    const char *hosts[CFG_MAX_URLS]);
/* Does any of the side's listen URLs use https? */
bool cfg_tls_used(const struct cfg *c, bool peer);

/* Parse a comma-separated URL list ("http://a:1,http://b:2") into urls (at most max).
 * Returns false and fills msg (msgsz) on error. */
bool cfg_parse_urls(const char *s, struct cfg_url *urls, size_t max, size_t *n, char *msg,
                    size_t msgsz);

#endif
