/* grpc_int.h - private structures of the grpc module (never included from outside src/grpc).
 *
 * grpc.c owns the module's life (create, accept, destroy, the reap of dead connections) and
 * the method table; grpc_conn.c one connection's HTTP/2 session and its calls; grpc_frame.c the
 * message framing; grpc_kv.c and the other grpc_<service>.c files turn messages into server
 * requests and results back into messages.
 */
#ifndef METASTORE_GRPC_INT_H
#define METASTORE_GRPC_INT_H

#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/err.h"
#include "metastore/grpc.h"
#include "metastore/mcache.h"
#include "metastore/srv.h"
#include "metastore/tls.h"

#include "rpc.pb-c.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"

#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct grpc_call;
struct grpc_conn;

enum grpc_kind {
    GRPC_UNARY = 0,     /* one request, one response */
    GRPC_SERVER_STREAM, /* one request, responses until the status */
    GRPC_BIDI,          /* requests and responses in both directions */
};

/* One row per method. on_msg gets each request message (borrowed for the call; a unary method
 * gets exactly one, after which more are refused); on_end (may be NULL) the client's half-close
 * of a stream; on_drain (may be NULL) runs when everything the call queued has been taken by
 * HTTP/2 (a server stream queues its next message there with grpc_call_queue, or finishes);
 * on_free (may be NULL) releases what the service keeps in call->svc. */
struct grpc_method {
    const char *path; /* "/etcdserverpb.KV/Range" */
    enum grpc_kind kind;
    void (*on_msg)(struct grpc_call *call, const uint8_t *p, size_t len);
    void (*on_end)(struct grpc_call *call);
    void (*on_drain)(struct grpc_call *call);
    void (*on_free)(struct grpc_call *call);
};

/* A call's life: OPEN (request side running) -> FINISHED (status decided; the response data
 * left and the trailers go out) -> freed when nghttp2 closes the stream (both sides done, a
 * RST_STREAM, or the connection's end). */
enum grpc_call_state {
    GRPC_CALL_OPEN = 0,
    GRPC_CALL_FINISHED,
};

struct grpc_call {
    struct grpc_conn *conn;
    int32_t stream_id;
    const struct grpc_method *m;
    enum grpc_call_state state;
    struct arena *a; /* everything decoded for the call and its answers */
    struct grpc_deframer in;
    size_t n_msgs;     /* request messages received */
    bool half_closed;  /* the client sent END_STREAM */
    bool headers_sent; /* the response's HEADERS are submitted */
    bool deferred;     /* the data source said DEFERRED: resume when out grows */
    size_t unconsumed; /* request bytes not credited back to the client (out is high) */
    size_t backlog;    /* requests the service holds unanswered (grpc_call_set_backlog) */
    struct buf out;    /* framed response messages not yet taken by nghttp2 */
    size_t out_off;
    int status;             /* enum ms_grpc_code, once FINISHED */
    char *message;          /* grpc-message (percent-encoded later); malloc'd */
    uint64_t srv_id;        /* non-zero while srv owes the call a callback */
    struct srv_req sreq;    /* the request submitted (a range is borrowed by srv) */
    struct event *deadline; /* grpc-timeout, NULL without */
    uint64_t timeout_ms;    /* parsed grpc-timeout, 0 for none */
    char path[128];         /* :path as sent (truncated), for the unknown-method text */
    char *token;            /* metadata "token", else "authorization" (malloc'd: the arena is
                             * reset between a stream's messages); NULL: none */
    size_t token_len;
    size_t header_bytes; /* the request headers' size as HTTP/2 counts it (RFC 9113 6.5.2) */
    bool token_md;       /* token came as "token", which wins */
    bool require_leader; /* metadata hasleader: true */
    bool leader_watched; /* a stream counted in grpc.n_leader_watch */
    bool bad_content_type;
    bool bad_method;
    void *svc; /* the service's state (streams) */
    struct grpc_call *prev;
    struct grpc_call *next;
};

struct grpc_conn {
    struct grpc *g;
    int fd;
    struct tls_conn *tls; /* NULL on a plain port; all I/O goes through it otherwise */
    char *cn;             /* the verified client certificate's CN (--client-cert-auth), or NULL */
    nghttp2_session *h2;
    struct event *rd;
    struct event *wr;
    bool rd_on;
    bool wr_on;
    bool in_recv;      /* inside nghttp2_session_mem_recv: output waits for its end */
    bool in_send;      /* inside nghttp2_session_mem_send (a data source or on_drain runs) */
    bool flush_due;    /* in the module's due list: output is written from the due event */
    bool dead;         /* in the reap list: no more I/O */
    bool goaway_close; /* a GOAWAY that ends the connection is queued: close once it is out */
    bool credit_due;   /* a call holding request credit went low: give_credit */
    struct buf out;
    size_t out_off;
    size_t in_held; /* bytes the calls' deframers hold */
    /* keepalive (etcd's --grpc-keepalive-*, as grpc-go serves them) */
    struct event *ka;      /* the server's ping timer; NULL when the interval is 0 */
    uint64_t last_rx_ms;   /* bytes last read */
    uint64_t ping_sent_ms; /* our ping, while ping_out */
    bool ping_out;         /* our ping waits for any answer */
    bool reset_strikes;    /* we sent HEADERS or DATA since the client's last ping */
    uint64_t last_ping_rx_ms;
    unsigned ping_strikes; /* client pings sooner than the policy allows */
    struct grpc_call *calls;
    size_t n_calls;
    struct grpc_conn *prev;
    struct grpc_conn *next;
    struct grpc_conn *reap_next;
    struct grpc_conn *due_next;
};

#define GRPC_ARENA_FIRST 4096 /* a call's first arena chunk */
#define GRPC_H2_KEEP     256  /* HTTP/2 blocks kept per size class (2 MiB at most) */

struct grpc {
    struct event_base *base;
    struct srv *srv;
    size_t max_recv;         /* etcd's MaxRecvMsgSize: --max-request-bytes + 512 KiB */
    uint64_t ka_min_ms;      /* client pings closer than this (with calls open) are strikes */
    uint64_t ka_interval_ms; /* silence after which the server pings (0: never) */
    uint64_t ka_timeout_ms;  /* ... and waits this long for anything (0: forever) */
    struct grpc_conn *conns;
    size_t n_conns;
    size_t n_calls;
    struct grpc_conn *reap;
    struct event *reap_ev;
    struct grpc_conn *due; /* connections with output to write this turn */
    struct event *due_ev;
    struct event *leader_ev;    /* checks the leader while streams require one */
    size_t n_leader_watch;      /* such streams */
    uint64_t leaderless_max_ms; /* they end after this long without a leader */
    struct arena_pool arenas;   /* calls' arenas kept for the next calls */
    struct mcache h2_blocks;    /* the HTTP/2 sessions' small blocks, kept for reuse */
    nghttp2_mem h2_mem;         /* ... handed to every session */
    /* the watch sink's encoding (grpc_watch.c) */
    struct buf watch_buf; /* scratch */
    struct buf watch_hdr; /* the header field for watch_hdr_rev and watch_hdr_term */
    int64_t watch_hdr_rev;
    uint64_t watch_hdr_term;
};

/* ---- grpc.c ---- */
const struct grpc_method *grpc_method_find(const char *path, size_t len);
/* One of etcd's services ("etcdserverpb.KV"), whether or not all its methods are served. */
bool grpc_service_known(const char *name, size_t len);
/* Count (on) or uncount call among the streams that end when the leader is gone for long. */
void grpc_leader_watch(struct grpc_call *call, bool on);
/* The connection is dead: unlink it from the loop now, free it from the reap event. */
void grpc_conn_kill(struct grpc_conn *c);

/* ---- grpc_conn.c ---- */
struct grpc_conn *grpc_conn_create(struct grpc *g, int fd, struct tls_conn *tls);
/* Free c, its calls (srv_cancel for what they wait on) and its session; closes fd. */
void grpc_conn_free(struct grpc_conn *c);
/* The due event: write the output of the connections marked during this turn. */
void grpc_on_due(evutil_socket_t fd, short what, void *arg);
/* Feed the bytes the HTTP/1.1 side read before handing the connection over. false: dead. */
bool grpc_conn_feed(struct grpc_conn *c, const uint8_t *p, size_t len);
/* Queue GOAWAY (no new streams) and write what the socket takes now. */
void grpc_conn_goaway(struct grpc_conn *c);

/* For services: */
static inline struct srv *grpc_call_srv(const struct grpc_call *call)
{
    return call->conn->g->srv;
}
/* Pack m as the next response message (response headers first if not sent yet). false on OOM
 * (the call is then finished with RESOURCE_EXHAUSTED). */
bool grpc_call_send(struct grpc_call *call, const ProtobufCMessage *m);
/* Pack m after what the call has queued, without sending (from on_drain). false on OOM (the
 * call is then finished with RESOURCE_EXHAUSTED). */
bool grpc_call_queue(struct grpc_call *call, const ProtobufCMessage *m);
/* A piece of a message (grpc_call_queue_parts). */
struct grpc_part {
    const void *p;
    size_t len;
};
/* Queue the concatenation of parts[0..n) as one message (already encoded), without sending.
 * false on OOM (the call is then finished with RESOURCE_EXHAUSTED). */
bool grpc_call_queue_parts(struct grpc_call *call, const struct grpc_part *parts, size_t n);
/* The service holds bytes of requests it has not answered yet: past CALL_BACKLOG the stream's
 * request bytes are not credited back until it drops under a quarter of that. */
void grpc_call_set_backlog(struct grpc_call *call, size_t bytes);
/* Bytes the call has queued that HTTP/2 has not taken yet. */
static inline size_t grpc_call_pending(const struct grpc_call *call)
{
    return call->out.len - call->out_off;
}
/* Send the response headers if not yet sent and whatever is queued; a server stream whose
 * messages come from on_drain starts with this. */
void grpc_call_start_stream(struct grpc_call *call);
/* A unary call's answer: send m, then status OK. */
void grpc_call_reply(struct grpc_call *call, const ProtobufCMessage *m);
/* The start of a srv_done_fn of a call: note that srv owes nothing more, fail the call on err
 * (NULL), else the response header with res's revision (NULL after failing on OOM). */
Etcdserverpb__ResponseHeader *grpc_done_header(struct grpc_call *call, ms_err err,
                                               const struct srv_result *res);
/* Decide the call's status (code, message; message may be NULL or ""): the trailers follow the
 * data queued. The service must not touch call afterwards (it may be freed inside). */
void grpc_call_finish(struct grpc_call *call, enum ms_grpc_code code, const char *message);
/* grpc_call_finish with e's code and message (msg overrides e's text when not NULL). */
void grpc_call_fail(struct grpc_call *call, ms_err e, const char *msg);
/* protobuf-c allocator over arena a (frees nothing: the arena goes in one piece). */
void grpc_allocator(struct arena *a, ProtobufCAllocator *out);
/* A response header in the call's arena: this member's IDs and term, and revision (the current
 * one if 0); only the revision (none if 0) when !full, as inside a txn's responses. NULL on
 * OOM. */
Etcdserverpb__ResponseHeader *grpc_header(struct grpc_call *call, int64_t revision, bool full);
/* *h: this member's IDs and term, and revision (the current one if negative; 0 is omitted). */
void grpc_header_fill(struct srv *srv, Etcdserverpb__ResponseHeader *h, int64_t revision);
/* A request message that does not unpack (type: its message name): grpc-go's codec error. */
void grpc_call_bad_message(struct grpc_call *call, const char *type);
/* Unpack a request message of type d in the call's arena; NULL, the call failed with grpc-go's
 * codec error (grpc_call_bad_message), if it does not unpack. */
ProtobufCMessage *grpc_call_unpack(struct grpc_call *call, const ProtobufCMessageDescriptor *d,
                                   const uint8_t *p, size_t len);
/* The caller's token names a user (or none) and, when admin, one that may act as root (auth
 * off, or root): MS_E_INVALID_AUTH_TOKEN, or srv_auth_admin's errors, as etcd converts them
 * for a client (togRPCError). */
ms_err grpc_call_auth(struct grpc_call *call, bool admin);
/* etcd's checks of the caller's token for a maintenance call (the gateway's gw_auth_maint): an
 * invalid token always, root only when admin; auth's own texts (code Unknown), as etcd's
 * maintenance server hands them back (grpc_call_auth's, unconverted). Fails the call and returns
 * false on refusal. */
bool grpc_call_maint_auth(struct grpc_call *call, bool admin);
/* The call's caller: the user its token names, else (--client-cert-auth) its connection's
 * verified certificate's CN, else nobody (etcd's AuthInfoFromCtx); the user is borrowed until
 * the next request is submitted or applied. MS_E_INVALID_AUTH_TOKEN if the token names nobody. */
ms_err grpc_call_caller(struct grpc_call *call, struct auth_caller *out);
/* Submit call->sreq to srv with done as the callback (ctx: call); on a refusal, fail the call
 * with srv's error. */
void grpc_call_submit(struct grpc_call *call, srv_done_fn done);

/* ---- services ---- */

/* A KV request message (type: RANGE, PUT, DELETE, TXN or COMPACT) as the server request, all of
 * it in a: MS_E_BAD_REQUEST if it does not unpack, MS_E_TOO_MANY_OPS for txns nested deeper
 * than gRPC takes. Exposed for fuzzing. */
ms_err grpc_kv_decode(enum srv_req_type type, const uint8_t *p, size_t len, struct arena *a,
                      struct srv_req *out);
/* m over v's bytes (borrowed). */
void grpc_kv_from(Mvccpb__KeyValue *m, const struct kv_kv *v);
void grpc_kv_range(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_kv_put(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_kv_delete_range(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_kv_txn(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_kv_compact(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_lease_grant(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_lease_revoke(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_lease_keepalive(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_lease_keepalive_end(struct grpc_call *call);
void grpc_lease_keepalive_free(struct grpc_call *call);
void grpc_lease_timetolive(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_lease_leases(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_status(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_hash(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_hash_kv(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_alarm(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_defragment(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_snapshot(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_move_leader(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_maint_snapshot_drain(struct grpc_call *call);
void grpc_maint_snapshot_free(struct grpc_call *call);
void grpc_cluster_member_list(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_cluster_member_add(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_cluster_member_remove(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_cluster_member_update(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_cluster_member_promote(struct grpc_call *call, const uint8_t *p, size_t len);
/* A WatchRequest, as decoded (byte strings in the arena given). */
enum grpc_watch_kind { GRPC_WATCH_NONE, GRPC_WATCH_CREATE, GRPC_WATCH_CANCEL, GRPC_WATCH_PROGRESS };
struct grpc_watch_req {
    enum grpc_watch_kind kind;
    struct watch_create_req create;
    int64_t cancel_id;
};
/* MS_E_BAD_REQUEST if p does not unpack. Exposed for fuzzing. */
ms_err grpc_watch_decode(const uint8_t *p, size_t len, struct arena *a, struct grpc_watch_req *out);
void grpc_watch_msg(struct grpc_call *call, const uint8_t *p, size_t len);
/* The request message of op as the server's auth request (strings borrowed from the message
 * in a): MS_E_BAD_REQUEST if it does not unpack. Exposed for fuzzing. */
ms_err grpc_auth_decode(enum auth_op op, const uint8_t *p, size_t len, struct arena *a,
                        struct auth_req *out);
void grpc_auth_enable(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_disable(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_authenticate(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_user_add(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_user_get(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_user_list(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_user_delete(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_user_changepw(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_user_grant(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_user_revoke(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_role_add(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_role_get(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_role_list(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_role_delete(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_role_grant(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_auth_role_revoke(struct grpc_call *call, const uint8_t *p, size_t len);
/* The request message of a Lock or Election method (op; SRV_ELECT_LEADER also for Observe's)
 * as the server's request (bytes borrowed from the message in a): MS_E_BAD_REQUEST if it does
 * not unpack. Exposed for fuzzing. */
ms_err grpc_lock_decode(enum srv_lock_op op, const uint8_t *p, size_t len, struct arena *a,
                        struct srv_lock_req *out);
void grpc_lock_lock(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_lock_unlock(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_election_campaign(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_election_proclaim(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_election_leader(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_election_resign(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_election_observe(struct grpc_call *call, const uint8_t *p, size_t len);
void grpc_election_observe_drain(struct grpc_call *call);
void grpc_election_observe_free(struct grpc_call *call);
void grpc_watch_drain(struct grpc_call *call);
void grpc_watch_free(struct grpc_call *call);

#endif
