/* gw_int.h - gateway internals shared by gw*.c (private to src/gw). */
#ifndef METASTORE_GW_INT_H
#define METASTORE_GW_INT_H

#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/gw.h"
#include "metastore/http.h"
#include "metastore/srv.h"

struct gw_req;
struct gw_watch;

typedef void (*gw_handler_fn)(struct gw_req *r);

#define GW_ARENA_FIRST 8192 /* the first chunk of a kept arena */

struct gw {
    struct event_base *base;
    struct srv *srv;
    struct http_server *http;
    struct tls_ctx *tls;      /* the https listeners' context (owned), or NULL */
    size_t max_body;          /* HTTP body limit (the HTTP layer answers 413 above it) */
    size_t grpc_max;          /* etcd's gRPC receive limit: max-request-bytes + 512 KiB */
    struct gw_req *pending;   /* requests waiting for srv, doubly linked */
    struct gw_watch *watch;   /* the watch streams: owned, and read, by gw_watch.c alone */
    struct arena_pool arenas; /* requests' arenas (GW_ARENA_FIRST) kept for the next ones */
};

/* One HTTP request in flight. Owns its arena. It ends in exactly one call: gw_reply (answered)
 * or gw_abandon (not answered); both free it through the same release path. */
struct gw_req {
    struct gw *gw;
    struct http_request *req;
    struct arena *a;
    const char *body; /* copy in the arena */
    size_t body_len;
    uint64_t srv_id; /* non-zero while srv owes us a callback */
    /* Encodes a successful result (NULL: the usual header + body of codec_result). */
    void (*encode)(struct gw_req *r, const struct srv_result *res, struct buf *out);
    struct srv_req sreq;
    void *route;     /* the route's own state, in the arena (NULL: none) */
    bool streamed;   /* gw_stream_start sent the 200: the answer is a chunked stream */
    bool auth_done;  /* gw_auth_caller looked at the token */
    bool answered;   /* gw_reply ran (else the client left, or a stream took over) */
    const char *rpc; /* the gRPC method counted for it (NULL: not counted) */
    const char *rpc_type;
    int rpc_code;              /* enum ms_grpc_code of the answer */
    struct auth_caller caller; /* who the token names (user in the arena) */
    struct buf newest;         /* gw_stream_newest's chunk held back (empty: none) */
    struct gw_req *prev;
    struct gw_req *next;
};

/* Answer r and free it: status and the JSON body (taken and emptied; NULL for none), or, once
 * gw_stream_start began a chunked answer, the body as its last chunk (status unused) and the
 * stream's end. A body whose allocation failed is answered 500. Cancels what srv may still
 * owe r. */
void gw_reply(struct gw_req *r, int status, struct buf *body);
/* Free r without answering and without touching its HTTP request: the connection is gone
 * (its close callback runs), the gateway is going away, or another owner (a watch stream) has
 * taken the request over. Cancels what srv may still owe r. */
void gw_abandon(struct gw_req *r);

/* Answers built on gw_reply (each frees r). etcd's error for e, with msg or e's own text: */
void gw_reply_error(struct gw_req *r, ms_err e, const char *msg);
/* A stream's error before its first message: grpc-gateway's {"error":{...}} envelope. */
void gw_reply_stream_error(struct gw_req *r, ms_err e, const char *msg);
/* "Grpc-Metadata-hasleader: true" (clientv3's WithRequireLeader through the gateway). */
bool gw_require_leader(const struct http_request *req);
/* That envelope's JSON appended to b (also the last line of a stream that fails later). */
void gw_stream_error_body(struct buf *b, ms_err e, const char *msg);
/* A stream whose first message does not decode (msg: the decoder's): 500, code 2. */
void gw_reply_decode_error(struct gw_req *r, const char *msg);

struct mjson_dec;
struct mjson_val;
struct mjson_w;
/* "header":{...} with the server's current header (revision left out unless asked). */
void gw_json_header(struct gw_req *r, struct mjson_w *w, bool revision);
/* Start a JSON answer in b: '{' and the header. */
void gw_json_begin(struct gw_req *r, struct buf *b, struct mjson_w *w, bool revision);
/* Parse r's body as a request object into *root (decoder d, on r's arena). On failure reply
 * with the decoder's message (gw_reply_error, which frees r) and return false. */
bool gw_parse_root(struct gw_req *r, struct mjson_dec *d, struct mjson_val *root);
/* The same for requests whose fields we do not read (the body must still be valid JSON). */
bool gw_parse_empty(struct gw_req *r);

/* Submit r->sreq to srv; the reply is sent from the completion. Frees r on error replies. */
void gw_submit(struct gw_req *r);
/* r now waits for srv (r->srv_id set): link it and own the connection's close callback, which
 * abandons r. */
void gw_wait(struct gw_req *r);
/* The usual completion: encode the result (r->encode or codec_result) and reply. */
void gw_done_cb(void *ctx, ms_err err, const struct srv_result *res);

/* Chunked answers (server streams): gw_stream_start sends the 200 and headers, gw_stream_chunk
 * writes b's bytes as one chunk (and empties b), gw_reply ends the stream. */
void gw_stream_start(struct gw_req *r);
/* The same 200 and headers on a bare HTTP request (watch streams outlive their gw_req). */
void gw_http_stream_start(struct http_request *req);
void gw_stream_chunk(struct gw_req *r, struct buf *b);
/* For a stream of states where only the latest matters (election observe): b's bytes as the
 * next chunk (b is taken and emptied), unless GW_STREAM_HOLD bytes or more wait to be
 * written; then b is held back instead, replacing a chunk held before, and written once the
 * output has drained. A reader that stops reading holds a bounded amount of memory, skips
 * states it has not been sent, and always ends with the latest. */
#define GW_STREAM_HOLD (64u << 10)
void gw_stream_newest(struct gw_req *r, struct buf *b);

/* Watch streams (gw_watch.c): create installs the hub's sink; destroy closes every stream
 * left and accepts NULL. create returns NULL on OOM. */
struct gw_watch *gw_watch_create(struct event_base *base, struct srv *srv, size_t grpc_max);
void gw_watch_destroy(struct gw_watch *w);
/* Append the watch gauges to a Prometheus text body. */
void gw_watch_metrics(struct gw_watch *w, struct buf *out);

/* The caller of r (gw_auth.c): resolve its token once into r->caller. False when
 * the token is invalid: r is answered (and freed). */
bool gw_auth_caller(struct gw_req *r);
/* The same without answering: MS_E_INVALID_AUTH_TOKEN if the token names nobody. */
ms_err gw_auth_resolve(struct gw_req *r);
/* gw_auth_caller for the maintenance service, which answers the auth store's own errors
 * ("auth: ..."): with admin, root only (hash, defragment, snapshot); stream: a refusal in the
 * streams' error envelope. False: r is answered. */
bool gw_auth_maint(struct gw_req *r, bool admin, bool stream);

/* Route handlers. */
void gw_kv_range(struct gw_req *r);
void gw_kv_put(struct gw_req *r);
void gw_kv_deleterange(struct gw_req *r);
void gw_kv_txn(struct gw_req *r);
void gw_kv_compaction(struct gw_req *r);
void gw_watch(struct gw_req *r);
void gw_maint_status(struct gw_req *r);
void gw_maint_hash(struct gw_req *r);
void gw_maint_alarm(struct gw_req *r);
void gw_maint_defrag(struct gw_req *r);
void gw_maint_snapshot(struct gw_req *r);
void gw_cluster_member_list(struct gw_req *r);
void gw_cluster_member_add(struct gw_req *r);
void gw_cluster_member_remove(struct gw_req *r);
void gw_cluster_member_update(struct gw_req *r);
void gw_cluster_member_promote(struct gw_req *r);
void gw_maint_move_leader(struct gw_req *r);
void gw_lease_grant(struct gw_req *r);
void gw_lease_revoke(struct gw_req *r);
void gw_lease_keepalive(struct gw_req *r);
void gw_lease_timetolive(struct gw_req *r);
void gw_lease_leases(struct gw_req *r);
void gw_lock_lock(struct gw_req *r);
void gw_lock_unlock(struct gw_req *r);
void gw_election_campaign(struct gw_req *r);
void gw_election_proclaim(struct gw_req *r);
void gw_election_leader(struct gw_req *r);
void gw_election_observe(struct gw_req *r);
void gw_election_resign(struct gw_req *r);
void gw_auth_enable(struct gw_req *r);
void gw_auth_disable(struct gw_req *r);
void gw_auth_authenticate(struct gw_req *r);
void gw_auth_user_add(struct gw_req *r);
void gw_auth_user_get(struct gw_req *r);
void gw_auth_user_list(struct gw_req *r);
void gw_auth_user_delete(struct gw_req *r);
void gw_auth_user_changepw(struct gw_req *r);
void gw_auth_user_grant(struct gw_req *r);
void gw_auth_user_revoke(struct gw_req *r);
void gw_auth_role_add(struct gw_req *r);
void gw_auth_role_get(struct gw_req *r);
void gw_auth_role_list(struct gw_req *r);
void gw_auth_role_delete(struct gw_req *r);
void gw_auth_role_grant(struct gw_req *r);
void gw_auth_role_revoke(struct gw_req *r);

#endif
