/* gw_int.h - gateway internals shared by gw*.c (private to src/gw). */
#ifndef METASTORE_GW_INT_H
#define METASTORE_GW_INT_H

#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/gw.h"
#include "metastore/srv.h"

#include "http.h"

struct gw_req;
struct gw_stream;

typedef void (*gw_handler_fn)(struct gw_req *r);

struct gw {
    struct event_base *base;
    struct srv *srv;
    struct http_server *http;
    size_t max_body;        /* HTTP body limit (the HTTP layer answers 413 above it) */
    size_t grpc_max;        /* etcd's gRPC receive limit: max-request-bytes + 512 KiB */
    struct gw_req *pending; /* requests waiting for srv, doubly linked */
    /* watch streams (gw_watch.c) */
    struct gw_stream *streams; /* doubly linked */
    size_t stream_limit;       /* output bytes a stream may hold before its watchers wait */
    size_t stream_low;         /* ... and the level under which they resume */
    struct buf ebuf;           /* encoding scratch (events, control tails) */
    struct buf hdr;            /* {"result":{"header":{...} for hdr_rev / hdr_term */
    int64_t hdr_rev;
    uint64_t hdr_term;
    struct event *watch_retry_ev; /* paused bodies and streams blocked by OOM */
    struct event *watch_flush_ev; /* writes the dirty streams after the loop turn's callbacks */
    struct gw_stream *dirty;      /* streams with output to flush, by dprev/dnext */
    /* streams refused by the server-wide budget, oldest first, by bprev/bnext */
    struct gw_stream *budget_head;
    struct gw_stream *budget_tail;
    struct event *watch_budget_ev; /* wakes them after output was written or freed */
    struct event *watch_trim_ev;   /* gives freed output memory back to the system */
    size_t trim_high;              /* most output buffered since the last trim */
};

/* One HTTP request in flight. Owns its arena; freed once the reply is sent or the connection
 * is gone, whichever comes first (one release path: gw_req_free). */
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
    struct gw_req *prev;
    struct gw_req *next;
};

/* Reply helpers: each sends the reply and frees r. */
void gw_reply_json(struct gw_req *r, int status, struct buf *body);
void gw_reply_error(struct gw_req *r, ms_err e, const char *msg);

struct mjson_dec;
struct mjson_val;
struct mjson_w;
/* "header":{...} with the server's current header (revision left out unless asked). */
void gw_json_header(struct gw_req *r, struct mjson_w *w, bool revision);
/* Start a JSON answer in b: '{' and the header. */
void gw_json_begin(struct gw_req *r, struct buf *b, struct mjson_w *w, bool revision);
/* Parse r's body as a request object into *root (decoder d, on r's arena). On failure reply
 * with the decoder's message (which frees r) and return false. */
bool gw_parse_root(struct gw_req *r, struct mjson_dec *d, struct mjson_val *root);
/* The same for requests whose fields we do not read (the body must still be valid JSON). */
bool gw_parse_empty(struct gw_req *r);

/* Submit r->sreq to srv; the reply is sent from the completion. Frees r on error replies. */
void gw_submit(struct gw_req *r);
/* r now waits for srv (r->srv_id set): link it and own the connection's close callback. */
void gw_wait(struct gw_req *r);
/* The connection of r is gone (its close callback ran): free r without touching the request. */
void gw_req_abandon(struct gw_req *r);
/* The usual completion: encode the result (r->encode or codec_result) and reply. */
void gw_done_cb(void *ctx, ms_err err, const struct srv_result *res);

/* Chunked replies (server streams). gw_stream_chunk writes b's bytes as one chunk (and empties
 * b); gw_stream_end finishes and frees r. */
void gw_stream_start(struct gw_req *r);
/* The same 200 and headers on a bare HTTP request (watch streams outlive their gw_req). */
void gw_http_stream_start(struct http_request *req);
void gw_stream_chunk(struct gw_req *r, struct buf *b);
void gw_stream_end(struct gw_req *r);
/* Error of a stream before its first message: grpc-gateway's {"error":{...}} envelope. */
void gw_stream_error(struct gw_req *r, ms_err e, const char *msg);
/* Reply to a stream whose first message does not decode (msg: the decoder's). Frees r. */
void gw_stream_first_error(struct gw_req *r, const char *msg);

/* Free r (its arena) without replying and without touching the HTTP request, which the
 * caller has taken over (streams). Clears the connection's close callback. */
void gw_req_release(struct gw_req *r);

/* Watch streams (gw_watch.c): install the hub's sink / close every stream left. */
void gw_watch_init(struct gw *gw);
void gw_watch_fini(struct gw *gw);
/* Append the watch gauges to a Prometheus text body. */
void gw_watch_metrics(struct gw *gw, struct buf *out);

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
void gw_lease_grant(struct gw_req *r);
void gw_lease_revoke(struct gw_req *r);
void gw_lease_keepalive(struct gw_req *r);
void gw_lease_timetolive(struct gw_req *r);
void gw_lease_leases(struct gw_req *r);

#endif
