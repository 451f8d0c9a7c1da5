/* cluster.h - members and the member and cluster IDs, as etcd derives and checks them.
 *
 * Pure functions, no I/O: the IDs of an initial cluster (etcd 3.4's membership.NewMember and
 * RaftCluster.genID), the bootstrap checks etcd makes when a member starts a new cluster
 * (ServerConfig.VerifyBootstrap), and the record one member is stored as in the backend's
 * "members" bucket.
 */
#ifndef METASTORE_CLUSTER_H
#define METASTORE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/buf.h"
#include "metastore/cfg.h"
#include "metastore/err.h"

#define CLUSTER_MAX_MEMBERS CFG_MAX_MEMBERS
#define CLUSTER_MAX_URLS    CFG_MAX_URLS
#define CLUSTER_KEY_LEN     8

struct cluster_member {
    uint64_t id;
    char name[128]; /* "" for a member that has not published its name yet */
    struct cfg_url peer_urls[CLUSTER_MAX_URLS];
    size_t n_peer_urls;
    struct cfg_url client_urls[CLUSTER_MAX_URLS];
    size_t n_client_urls;
    bool is_learner;
};

/* The initial cluster named by the flags, members sorted by ID. */
struct cluster_boot {
    uint64_t member_id; /* this member */
    uint64_t cluster_id;
    struct cluster_member members[CLUSTER_MAX_MEMBERS];
    size_t n_members;
};

/* etcd's ID of a member of the initial cluster: the first 8 bytes (big-endian) of SHA-1 over
 * the peer URLs, sorted and concatenated, followed by the cluster token. */
uint64_t cluster_member_id(const struct cfg_url *peer_urls, size_t n, const char *token);

/* etcd's cluster ID: the first 8 bytes (big-endian) of SHA-1 over the member IDs, sorted, each
 * as 8 big-endian bytes. */
uint64_t cluster_id(const uint64_t *member_ids, size_t n);

/* Check the flags as etcd does when this member starts a new cluster (the name is in
 * --initial-cluster with exactly the URLs of --initial-advertise-peer-urls, no peer URL twice)
 * and fill out with the initial members; this member also gets its name and advertised client
 * URLs. Returns false with etcd's error text in msg (msgsz). */
bool cluster_bootstrap(const struct cfg *cfg, struct cluster_boot *out, char *msg, size_t msgsz);

/* Whether a data directory that holds the identity (member_id, cluster_id) is this member's,
 * by the flags that made boot (cluster_bootstrap with --initial-cluster-state new). A restart
 * ignores the initial flags as etcd's does, except where they show the directory is another's:
 * with two members or more, the flags name the same cluster but another member (a data
 * directory given to the wrong member), or another cluster that does not hold the directory's
 * member (a directory left by an earlier cluster, or another token). Returns false with the
 * reason in msg (msgsz). */
bool cluster_check_owner(const struct cluster_boot *boot, const char *name, uint64_t member_id,
                         uint64_t cluster_id, char *msg, size_t msgsz);

/* The key of a member in the "members" bucket: its ID, 8 bytes big-endian (so that the bucket
 * is in etcd's member-list order). */
void cluster_member_key(uint64_t id, uint8_t key[CLUSTER_KEY_LEN]);

/* Append the record of m to out. */
void cluster_member_encode(const struct cluster_member *m, struct buf *out);

/* Decode a record strictly (version, flags, lengths, URLs that parse back to themselves, no
 * trailing bytes). MS_E_DATA_CORRUPT on anything else. */
ms_err cluster_member_decode(const uint8_t *p, size_t n, struct cluster_member *m);

/* etcd's ID of a member added at run time (membership.NewMember with the API's clock): SHA-1
 * over the sorted peer URLs and the Unix time in seconds, as decimal text. */
uint64_t cluster_new_member_id(const struct cfg_url *peer_urls, size_t n, int64_t unix_s);

/* What a membership change carries in its log entry (the conf change's context), so that every
 * member records the same members: etcd's ConfigChangeContext. */
enum cluster_cc_kind {
    CLUSTER_CC_BOOT = 1,    /* a member of the initial cluster: recorded as it is */
    CLUSTER_CC_ADD = 2,     /* member add (voter or learner) */
    CLUSTER_CC_REMOVE = 3,  /* member remove */
    CLUSTER_CC_UPDATE = 4,  /* member update: new peer URLs */
    CLUSTER_CC_PROMOTE = 5, /* member promote: the learner becomes a voter */
};

struct cluster_cc {
    enum cluster_cc_kind kind;
    uint64_t request_id;          /* the proposer's caller, completed at apply (0: none) */
    struct cluster_member member; /* BOOT, ADD, UPDATE: the record; otherwise the ID only */
};

/* Append cc's encoding to out. */
void cluster_cc_encode(const struct cluster_cc *cc, struct buf *out);

/* Decode strictly; MS_E_DATA_CORRUPT on anything else. */
ms_err cluster_cc_decode(const uint8_t *p, size_t n, struct cluster_cc *cc);

#endif
