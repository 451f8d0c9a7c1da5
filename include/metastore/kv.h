/* kv.h - the MVCC key-value store (etcd's mvcc package).
 *
 * Every change gets a revision {main, sub}: main grows by one per write transaction, sub counts
 * the changes inside it. Records live in backend bucket "key" under their revision; an
 * in-memory key index maps each user key to its generations of revisions (created -> ... ->
 * tombstone). Reads at an older revision see history until it is compacted.
 *
 * The store never opens backend transactions itself: the caller (srv) passes the one it holds,
 * so reads and applies share the server's long-lived write transaction.
 *
 * Requests and responses are plain structs. Everything a function returns through a response
 * (kvs, keys, values, events) is allocated in the arena the caller passes, and lives as long
 * as that arena. Input byte strings are borrowed for the duration of the call only.
 *
 * kv does not know leases or watchers: lease existence is asked through kv_lease_exists_fn,
 * and kv_write_end hands back the list of events for the caller to pass on.
 */
#ifndef METASTORE_KV_H
#define METASTORE_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/err.h"

struct arena;
struct be_txn;

struct kv_rev {
    int64_t main;
    int64_t sub;
};

/* etcd mvccpb.KeyValue. Byte pointers may be NULL when the length is 0. */
struct kv_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
};

/* How a request names a range of keys. */
enum kv_end_kind {
    KV_END_NONE = 0, /* range_end absent or empty: the single key */
    KV_END_KEY,      /* [key, end) */
    KV_END_ALL,      /* range_end "\0": every key >= key */
};

struct kv_span {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *end;
    size_t end_len;
    enum kv_end_kind end_kind;
};

/* The span a request's key and range_end name (etcd's rule): an empty range_end is the single
 * key (proto3 drops empty bytes on the wire, so empty and absent are one), "\0" every key from
 * key on, anything else [key, range_end). The bytes are borrowed. */
static inline void kv_span_set(struct kv_span *s, const uint8_t *key, size_t key_len,
                               const uint8_t *end, size_t end_len)
{
    s->key = key;
    s->key_len = key_len;
    s->end = NULL;
    s->end_len = 0;
    if (end_len == 0) {
        s->end_kind = KV_END_NONE;
    } else if (end_len == 1 && end[0] == 0) {
        s->end_kind = KV_END_ALL;
    } else {
        s->end_kind = KV_END_KEY;
        s->end = end;
        s->end_len = end_len;
    }
}

/* The span of every key starting with prefix p[0..n) (etcd GetPrefixRangeEnd): the end is the
 * prefix with its last byte below 0xff incremented and what follows it dropped, written to
 * end_buf (room for n bytes, which must outlive *s); a prefix of 0xff bytes only (or an empty
 * one) spans every key from p on. */
static inline void kv_span_prefix(struct kv_span *s, const uint8_t *p, size_t n, uint8_t *end_buf)
{
    s->key = p;
    s->key_len = n;
    s->end = NULL;
    s->end_len = 0;
    s->end_kind = KV_END_ALL;
    for (size_t i = n; i > 0; i--) {
        if (p[i - 1] != 0xff) {
            for (size_t j = 0; j < i - 1; j++)
                end_buf[j] = p[j];
            end_buf[i - 1] = (uint8_t)(p[i - 1] + 1);
            s->end = end_buf;
            s->end_len = i;
            s->end_kind = KV_END_KEY;
            return;
        }
    }
}

enum kv_sort_order { KV_SORT_NONE = 0, KV_SORT_ASCEND = 1, KV_SORT_DESCEND = 2 };
enum kv_sort_target {
    KV_SORT_KEY = 0,
    KV_SORT_VERSION = 1,
    KV_SORT_CREATE = 2,
    KV_SORT_MOD = 3,
    KV_SORT_VALUE = 4
};

struct kv_range_req {
    struct kv_span span;
    int64_t limit;
    int64_t revision;
    int64_t sort_order;  /* enum kv_sort_order; any value accepted as etcd does */
    int64_t sort_target; /* enum kv_sort_target; others rejected */
    bool serializable;
    bool keys_only;
    bool count_only;
    int64_t min_mod_revision;
    int64_t max_mod_revision;
    int64_t min_create_revision;
    int64_t max_create_revision;
};

struct kv_range_resp {
    int64_t revision; /* header revision: the store's current revision */
    struct kv_kv *kvs;
    size_t n_kvs;
    bool more;
    int64_t count;
};

struct kv_put_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t lease;
    bool prev_kv;
    bool ignore_value;
    bool ignore_lease;
};

struct kv_put_resp {
    int64_t revision;
    struct kv_kv *prev_kv; /* NULL unless requested and the key existed */
};

struct kv_del_req {
    struct kv_span span;
    bool prev_kv;
};

struct kv_del_resp {
    int64_t revision;
    int64_t deleted;
    struct kv_kv *prev_kvs; /* only when requested */
    size_t n_prev_kvs;
};

enum kv_cmp_target {
    KV_CMP_VERSION = 0,
    KV_CMP_CREATE = 1,
    KV_CMP_MOD = 2,
    KV_CMP_VALUE = 3,
    KV_CMP_LEASE = 4
};
enum kv_cmp_result { KV_CMP_EQUAL = 0, KV_CMP_GREATER = 1, KV_CMP_LESS = 2, KV_CMP_NOT_EQUAL = 3 };

/* Which member of Compare's target_union the request set (-1: none). A compare reads only
 * the member that matches its target; any other counts as zero / empty, as in etcd. */
struct kv_cmp {
    struct kv_span span;
    int64_t target; /* enum kv_cmp_target */
    int64_t result; /* enum kv_cmp_result */
    int set;        /* enum kv_cmp_target of the union member given, or -1 */
    int64_t number; /* version / create_revision / mod_revision / lease */
    const uint8_t *value;
    size_t value_len;
};

/* KV_OP_NONE: a RequestOp with no member set (etcd answers "key not found"). The numbers are
 * written into log entries: a new type takes the next one and raises KV_OP_N_TYPES; it gets a
 * row in kv_op_table and a case in every switch over the type (-Wswitch lists them). */
enum kv_op_type { KV_OP_RANGE = 0, KV_OP_PUT = 1, KV_OP_DELETE = 2, KV_OP_TXN = 3, KV_OP_NONE = 4 };
#define KV_OP_N_TYPES 5

struct kv_txn_req;
struct kv_txn_resp;

struct kv_op {
    enum kv_op_type type;
    union {
        struct kv_range_req range;
        struct kv_put_req put;
        struct kv_del_req del;
        struct kv_txn_req *txn;
    } u;
};

struct kv_txn_req {
    struct kv_cmp *cmps;
    size_t n_cmps;
    struct kv_op *success;
    size_t n_success;
    struct kv_op *failure;
    size_t n_failure;
};

struct kv_op_resp {
    enum kv_op_type type;
    union {
        struct kv_range_resp range;
        struct kv_put_resp put;
        struct kv_del_resp del;
        struct kv_txn_resp *txn;
    } u;
};

struct kv_txn_resp {
    int64_t revision;
    bool succeeded;
    struct kv_op_resp *resps;
    size_t n_resps;
};

enum kv_event_type { KV_EVENT_PUT = 0, KV_EVENT_DELETE = 1 };

/* One change, as a watcher sees it. For a DELETE, kv holds only key and mod_revision. */
struct kv_event {
    enum kv_event_type type;
    struct kv_kv kv;
    struct kv_kv prev; /* valid when has_prev */
    bool has_prev;
};

/* Answer whether lease id exists (used for puts with a lease). */
typedef bool (*kv_lease_exists_fn)(void *ctx, int64_t lease);

struct kv_store;
struct kv_write;

/* Open the store over the backend reachable through txn: read compaction state and rebuild the
 * key index from bucket "key". If a compaction was scheduled but not finished, it is resumed
 * (kv_compact_pending tells). NULL on failure with *err set. */
struct kv_store *kv_store_open(struct be_txn *txn, ms_err *err);

/* Free the store (not the backend). Accepts NULL. */
void kv_store_close(struct kv_store *kv);

/* Rebuild kv in place for a backend whose content was replaced (a snapshot from the leader),
 * as it loads a slice at a time: hand every record of bucket "key" to kv_restore_record as it
 * is loaded, in key (revision) order; then kv_restore_end with the loaded txn makes it kv's
 * content, keeping the lease check (pointers to kv stay valid; on an error kv is unchanged). It
 * consumes r even on an error. kv_restore_abort drops r (accepts NULL). */
struct kv_restore;
struct kv_restore *kv_restore_begin(void);
ms_err kv_restore_record(struct kv_restore *r, const uint8_t *k, size_t kl, const uint8_t *v,
                         size_t vl);
ms_err kv_restore_end(struct kv_store *kv, struct kv_restore *r, struct be_txn *txn);
void kv_restore_abort(struct kv_restore *r);

/* Install the lease existence check (NULL: every lease is accepted). */
void kv_set_lease_check(struct kv_store *kv, kv_lease_exists_fn fn, void *ctx);

/* Current revision (last committed main revision; 1 on a fresh store, as etcd). */
int64_t kv_current_rev(const struct kv_store *kv);

/* Revision history is compacted to (0: never compacted). */
int64_t kv_compact_rev(const struct kv_store *kv);

/* Number of live keys, and of keys in the index including deleted-but-not-compacted ones. */
size_t kv_live_keys(const struct kv_store *kv);
size_t kv_index_keys(const struct kv_store *kv);

/* ---- the op table and the walk over a txn's ops (kv_req.c) ---- */

/* What is fixed per op type, one row per enum kv_op_type (KV_OP_NONE's row is all zero). */
struct kv_op_desc {
    const char *json;       /* RequestOp member as etcd's gateway reads it: "request_put" */
    const char *json_camel; /* the same in lowerCamelCase, which wins over it: "requestPut" */
    const char *resp_json;  /* ResponseOp member: "response_put" */
    unsigned field;         /* protobuf field number of both members */
    bool writes;            /* changes keys itself (a txn op writes when an op inside does) */
};
extern const struct kv_op_desc kv_op_table[KV_OP_N_TYPES];

/* Deepest txn nesting (the root is depth 0) that decoders accept and kv_txn_walk follows.
 * Each level of JSON opens three containers ({"success":[{"request_txn":), so the JSON
 * parser's 10000 allow no more; the log entry codec accepts the same. etcd has no cap of its
 * own: each level takes at least one op of the txn's budget (kv_check_txn). */
#define KV_MAX_TXN_DEPTH 3333

/* A visitor of a txn's op tree; any member may be NULL. Per-type work is a switch over
 * op->type without a default, so that a new type fails to compile (-Wswitch) where it is not
 * handled yet. Values: an op's is what op_end makes of 0 (of its nested txn's for a txn op);
 * a txn's is what txn_end makes of its branches' sums. */
struct kv_visit {
    ms_err (*txn)(void *ctx, const struct kv_txn_req *t); /* before its ops: compares */
    ms_err (*branch)(void *ctx, bool success, size_t n);  /* n ops follow */
    ms_err (*op)(void *ctx, const struct kv_op *op);      /* before a txn op's inside */
    size_t (*op_end)(void *ctx, const struct kv_op *op, bool success, size_t val); /* NULL: val */
    size_t (*txn_end)(void *ctx, const struct kv_txn_req *t, size_t success, size_t failure);
};

/* Walk t's tree depth first in request order: a txn, its success ops, its failure ops, a
 * nested txn where its op stands (a NULL one is not entered). The first error a callback
 * returns stops the walk and is returned, as does MS_E_BAD_REQUEST for nesting deeper than
 * KV_MAX_TXN_DEPTH (which no decoded request does). *val (val may be NULL) is t's value.
 * Nothing is allocated; the recursion is as deep as the nesting. */
ms_err kv_txn_walk(const struct kv_txn_req *t, const struct kv_visit *v, void *ctx, size_t *val);

/* Whether an op anywhere in t's tree writes (kv_op_table's writes). */
bool kv_txn_writes(const struct kv_txn_req *t);

/* ---- validation (kv_check.c) ---- */

/* Validate a request before it is proposed (etcd's gRPC-layer checks): empty keys, ops
 * without a member, duplicate writes within a branch, more than max_ops ops per list. */
ms_err kv_check_put(const struct kv_put_req *req);
ms_err kv_check_range(const struct kv_range_req *req);
ms_err kv_check_del(const struct kv_del_req *req);
ms_err kv_check_txn(const struct kv_txn_req *req, size_t max_ops);

/* Read-only range at req->revision (0 = current). */
ms_err kv_range(struct kv_store *kv, struct be_txn *txn, const struct kv_range_req *req,
                struct arena *a, struct kv_range_resp *out);

/* A write transaction: all its changes share one main revision (current + 1), made visible
 * by kv_write_end. Responses and events are allocated in a. */
ms_err kv_write_begin(struct kv_store *kv, struct be_txn *txn, struct arena *a,
                      struct kv_write **out);
ms_err kv_write_put(struct kv_write *w, const struct kv_put_req *req, struct kv_put_resp *out);
ms_err kv_write_del(struct kv_write *w, const struct kv_del_req *req, struct kv_del_resp *out);
/* Range inside the write transaction: sees its own writes. */
ms_err kv_write_range(struct kv_write *w, const struct kv_range_req *req,
                      struct kv_range_resp *out);
/* Evaluate compares and run one branch (nested txns included). On error nothing of this call
 * remains but earlier calls' writes do: abort the whole kv_write on error. */
ms_err kv_write_txn(struct kv_write *w, const struct kv_txn_req *req, struct kv_txn_resp *out);
/* Finish: publish the new revision if anything was written; *events (arena-allocated, in
 * order) lists every change. Frees w. */
void kv_write_end(struct kv_write *w, struct kv_event **events, size_t *n_events);
/* Undo the in-memory index changes of w; the caller aborts the backend txn. Frees w. */
void kv_write_abort(struct kv_write *w);
/* Revision this write will publish if it changes anything. */
int64_t kv_write_rev(const struct kv_write *w);

/* Compaction (etcd Compact): check rev, compact the index, record the scheduled revision in
 * "meta". Reads below rev fail at once; the old records are removed by kv_compact_step. */
ms_err kv_compact(struct kv_store *kv, struct be_txn *txn, int64_t rev);
/* Remove up to budget superseded records. Returns true when the compaction is complete. */
bool kv_compact_step(struct kv_store *kv, struct be_txn *txn, size_t budget, ms_err *err);
/* True while records of a compaction remain to be removed. */
bool kv_compact_pending(const struct kv_store *kv);

/* CRC-32C over every record of bucket "key" (etcd maintenance Hash). */
/* etcd's HashKV: the hash of the records up to rev (0: the current revision); *compact_rev the
 * compaction revision. MS_E_COMPACTED for rev at or below it, MS_E_FUTURE_REV above the current
 * revision. kv_hash is the same at the current revision. */
ms_err kv_hash_kv(struct kv_store *kv, struct be_txn *txn, int64_t rev, uint32_t *out,
                  int64_t *compact_rev);
ms_err kv_hash(struct kv_store *kv, struct be_txn *txn, uint32_t *out);

/* Read the events of revisions [from, to] (inclusive, from > compact rev) in revision order,
 * at most max_events of them; *next is the first revision not returned (to + 1 when done).
 * For the watch catch-up. */
ms_err kv_history(struct kv_store *kv, struct be_txn *txn, int64_t from, int64_t to,
                  size_t max_events, struct arena *a, struct kv_event **events, size_t *n,
                  int64_t *next);

/* Call fn with the current record of every live key whose lease is not 0, in key order (the
 * record's bytes are borrowed for the call). Used at start to rebuild lease attachments. */
typedef ms_err (*kv_leased_fn)(void *ctx, const struct kv_kv *kv);
ms_err kv_foreach_leased(struct kv_store *kv, struct be_txn *txn, kv_leased_fn fn, void *ctx);

/* Revision record encoding (exposed for tests and fuzzing). */
#define KV_REVKEY_LEN 17
void kv_rev_encode(struct kv_rev r, bool tombstone, uint8_t out[KV_REVKEY_LEN + 1], size_t *len);
bool kv_rev_decode(const uint8_t *p, size_t len, struct kv_rev *r, bool *tombstone);
/* Serialize kv (appended to out, see buf.h); decode borrows from p. */
struct buf;
void kv_record_encode(const struct kv_kv *kv, struct buf *out);
bool kv_record_decode(const uint8_t *p, size_t len, struct kv_kv *out);

#endif
