/* codec.h - etcd's messages as its JSON gateway reads and writes them: proto3 JSON (jsonpb)
 * field rules over the arena JSON module (reference §2), the request and response messages,
 * and their protobuf sizes. Errors read like Go's encoding/json and jsonpb, which is what
 * etcd's grpc-gateway answers. Private to the gw module.
 */
#ifndef METASTORE_GW_CODEC_H
#define METASTORE_GW_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/err.h"
#include "metastore/json.h"
#include "metastore/kv.h"
#include "metastore/srv.h"
#include "metastore/watch.h"

/* ---- proto3 JSON (codec_json.c) ---- */

/* The top level of a request: an object, or null/empty meaning {}. Parses body[0..len) with
 * mjson_parse (what follows the first value is ignored). */
bool codec_root(struct mjson_dec *d, const char *body, size_t len, struct mjson_val *out);
/* codec_root's rule applied to a value already parsed (one message of a stream body, read
 * with mjson_parse_next): an object, or null turned into {}. */
bool codec_root_value(struct mjson_dec *d, struct mjson_val *v);

/* Field lookup with the gateway's rules: the lowerCamelCase spelling wins over the proto name
 * whatever their order, and the last duplicate wins. camel may be NULL. NULL if absent or
 * JSON null. */
const struct mjson_val *codec_field(const struct mjson_val *obj, const char *name,
                                    const char *camel);

/* Typed readers. A NULL v leaves the output untouched and succeeds. On failure d->msg holds
 * jsonpb's words. Bytes are decoded into d's arena. */
bool codec_read_bytes(struct mjson_dec *d, const struct mjson_val *v, const uint8_t **p, size_t *n);
bool codec_read_i64(struct mjson_dec *d, const struct mjson_val *v, int64_t *out);
bool codec_read_u64(struct mjson_dec *d, const struct mjson_val *v, uint64_t *out);
bool codec_read_bool(struct mjson_dec *d, const struct mjson_val *v, bool *out);
/* Enum: exact upper-case name, or a JSON integer. enum_name is the Go type for messages. */
bool codec_read_enum(struct mjson_dec *d, const struct mjson_val *v, const char *const *names,
                     size_t n_names, const char *enum_name, int64_t *out);
/* A nested message: an object (NULL v = absent). *obj is NULL when absent. */
bool codec_read_msg(struct mjson_dec *d, const struct mjson_val *v, const struct mjson_val **obj);
/* A repeated field: an array (NULL v = empty). */
bool codec_read_arr(struct mjson_dec *d, const struct mjson_val *v, const struct mjson_val **items,
                    size_t *n);
/* A repeated enum field: an array (NULL v = empty) whose items go to codec_read_enum. A
 * string is refused as jsonpb refuses it: an unknown name as such, a known one as the wrong
 * target. */
bool codec_read_enum_arr(struct mjson_dec *d, const struct mjson_val *v, const char *const *names,
                         size_t n_names, const char *enum_name, const struct mjson_val **items,
                         size_t *n);

/* int64/uint64 as JSON strings (proto3 JSON). */
void codec_write_i64(struct mjson_w *w, int64_t v);
void codec_write_u64(struct mjson_w *w, uint64_t v);
/* bytes as standard base64. */
void codec_write_b64(struct mjson_w *w, const uint8_t *p, size_t n);

/* ---- etcd messages ---- */

/* key and range_end of a request (range_end "\0" means every key >= key). */
bool codec_decode_span(struct mjson_dec *d, const struct mjson_val *o, struct kv_span *s);

/* Decoders fill a srv_req from a request body. On a decode error they return MS_E_BAD_REQUEST
 * with d->msg set (Go's wording). */
ms_err codec_decode_range(struct mjson_dec *d, const struct mjson_val *root,
                          struct kv_range_req *r);
ms_err codec_decode_put(struct mjson_dec *d, const struct mjson_val *root, struct kv_put_req *r);
ms_err codec_decode_del(struct mjson_dec *d, const struct mjson_val *root, struct kv_del_req *r);
/* A txn at nesting depth depth (0 for a request's), and the txns nested in it down to
 * KV_MAX_TXN_DEPTH. */
ms_err codec_decode_txn(struct mjson_dec *d, const struct mjson_val *root, struct kv_txn_req *r,
                        int depth);
ms_err codec_decode_compact(struct mjson_dec *d, const struct mjson_val *root,
                            struct srv_compact_req *r);

ms_err codec_decode_alarm(struct mjson_dec *d, const struct mjson_val *root,
                          struct srv_alarm_req *r);
const char *codec_alarm_name(int64_t alarm);
void codec_alarms(struct mjson_w *w, const struct srv_alarm *a, size_t n);

/* Size of the request as a protobuf message (etcd limits requests by this size). */
size_t codec_proto_size(const struct srv_req *req);

/* Encoders append one JSON object (no trailing newline). */
void codec_header(struct mjson_w *w, const struct srv_header *h, bool with_revision);
void codec_kv(struct mjson_w *w, const struct kv_kv *kv);
void codec_result(struct mjson_w *w, const struct srv_header *h, const struct srv_result *r);
void codec_error(struct buf *b, const char *msg, int code);

/* ---- auth (codec_auth.c) ---- */

/* The request of an /v3/auth/ route (path below /v3/auth) into r; strings point into d's
 * tree or arena. MS_E_BAD_REQUEST with d->msg on a decode error. */
ms_err codec_decode_auth(struct mjson_dec *d, const struct mjson_val *root, enum auth_op op,
                         struct auth_req *r);
/* The fields of an auth answer after its header. */
void codec_auth_body(struct mjson_w *w, const struct auth_resp *r);

/* ---- watch (codec_watch.c) ---- */

enum codec_watch_kind {
    CODEC_WATCH_NONE = 0, /* {} or null: ignored, as etcd does */
    CODEC_WATCH_CREATE,
    CODEC_WATCH_CANCEL,
    CODEC_WATCH_PROGRESS,
};

struct codec_watch_req {
    enum codec_watch_kind kind;
    struct watch_create_req create; /* bytes point into the body or d's arena */
    int64_t cancel_id;
};

/* One WatchRequest message. Two members of its union set -> MS_E_BAD_REQUEST (etcd picks
 * one at random). */
ms_err codec_decode_watch(struct mjson_dec *d, const struct mjson_val *root,
                          struct codec_watch_req *out);

/* A WatchResponse line is {"result":{"header":{...},<fields>}}\n. codec_watch_open writes the
 * part up to and including the header; the tails write the rest (each ends with the newline). */
void codec_watch_open(struct buf *b, const struct srv_header *h, bool with_revision);
/* ,"watch_id":"N" (nothing for 0, which proto3 JSON omits): appended to b, or written to out
 * (returns its length). */
void codec_watch_id(struct buf *b, int64_t id);
size_t codec_watch_id_text(char out[48], int64_t id);
/* Tail of a response without events (created, canceled, compacted, progress). */
void codec_watch_ctrl_tail(struct buf *b, const struct watch_resp *r);
/* Tail of an events response: [,"fragment":true],"events":[...]}}\n with events
 * ev[idx[0..n)], each with its prev_kv when prev_kv is set and the event has one. */
void codec_watch_events_tail(struct buf *b, const struct kv_event *ev, const uint32_t *idx,
                             size_t n, bool prev_kv, bool fragment);
/* Protobuf sizes of fields (proto3: zero values take no bytes, messages always count). */
static inline size_t sz_int(unsigned field, int64_t v)
{
    return v ? (field < 16 ? 1 : 2) + buf_uvarint_len((uint64_t)v) : 0;
}

static inline size_t sz_bytes(unsigned field, size_t n)
{
    return n ? (field < 16 ? 1 : 2) + buf_uvarint_len(n) + n : 0;
}

static inline size_t sz_msg(unsigned field, size_t inner)
{
    return (field < 16 ? 1 : 2) + buf_uvarint_len(inner) + inner;
}

/* Protobuf sizes, to fragment large responses exactly where etcd does. */
size_t codec_watch_event_size(const struct kv_event *e, bool prev_kv);
size_t codec_watch_base_size(const struct srv_header *h, int64_t watch_id, bool fragment);
size_t codec_watch_event_field_size(size_t event_size);

#endif
