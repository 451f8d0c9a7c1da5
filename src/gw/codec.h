/* codec.h - JSON for the gateway: a small arena-based parser whose errors read like Go's
 * encoding/json and jsonpb (what etcd's grpc-gateway answers), readers that apply the
 * gateway's field rules (reference §2), and a writer for proto3 JSON output.
 * Private to the gw module.
 */
#ifndef METASTORE_GW_CODEC_H
#define METASTORE_GW_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/arena.h"
#include "metastore/buf.h"
#include "metastore/err.h"
#include "metastore/kv.h"
#include "metastore/srv.h"
#include "metastore/watch.h"

/* ---- parsed JSON ---- */

enum jv_type { JV_NULL = 0, JV_FALSE, JV_TRUE, JV_NUM, JV_STR, JV_ARR, JV_OBJ };

struct jmember;

/* A JSON value. Strings are decoded (escapes resolved); numbers keep their literal text. */
struct jv {
    enum jv_type type;
    const char *s; /* JV_STR: bytes, JV_NUM: literal text */
    size_t n;      /* length of s, or element count for JV_ARR / JV_OBJ */
    union {
        struct jv *items;       /* JV_ARR */
        struct jmember *fields; /* JV_OBJ */
        const char *raw;        /* JV_STR with escapes: its source text (NULL without) */
    } u;
};

struct jmember {
    const char *key;
    size_t key_len;
    struct jv val;
};

/* Decoding state: the first error wins and is kept as Go would word it. */
struct jdec {
    struct arena *a;
    bool failed;
    char msg[512];
};

void jdec_init(struct jdec *d, struct arena *a);
/* Record an error (printf-style) unless one is already recorded. Always returns false. */
bool jdec_fail(struct jdec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse the first JSON value of body[0..len) (what follows it is ignored, as the gateway
 * does). body must outlive the result (strings may point into it). An empty or all-blank
 * body yields JV_NULL. */
bool json_parse(struct jdec *d, const char *body, size_t len, struct jv *out);

/* The top level of a request: an object, or null/empty meaning {}. */
bool jdec_root(struct jdec *d, const char *body, size_t len, struct jv *out);

/* Stream bodies hold JSON values back to back (Go's json.Decoder). Parse the value that starts
 * after any whitespace at body (there must be one); *used is the number of bytes consumed.
 * Then jdec_root_value applies jdec_root's rule to it (object, or null meaning {}). */
bool json_parse_next(struct jdec *d, const char *body, size_t len, struct jv *out, size_t *used);
/* The offset of the first non-blank byte of p[off..len) (JSON's blanks), or len. */
static inline size_t json_skip_ws(const char *p, size_t len, size_t off)
{
    while (off < len && (p[off] == ' ' || p[off] == '\t' || p[off] == '\n' || p[off] == '\r'))
        off++;
    return off;
}
bool jdec_root_value(struct jdec *d, struct jv *v);

/* Field lookup with the gateway's rules: the lowerCamelCase spelling wins over the proto name
 * whatever their order, and the last duplicate wins. camel may be NULL. NULL if absent or
 * JSON null. */
const struct jv *jv_field(const struct jv *obj, const char *name, const char *camel);

/* Typed readers. A NULL v leaves the output untouched and succeeds. */
bool jdec_bytes(struct jdec *d, const struct jv *v, const uint8_t **p, size_t *n);
bool jdec_i64(struct jdec *d, const struct jv *v, int64_t *out);
bool jdec_u64(struct jdec *d, const struct jv *v, uint64_t *out);
bool jdec_bool(struct jdec *d, const struct jv *v, bool *out);
/* Enum: exact upper-case name, or a JSON integer. enum_name is the Go type for messages. */
bool jdec_enum(struct jdec *d, const struct jv *v, const char *const *names, size_t n_names,
               const char *enum_name, int64_t *out);
/* A nested message: an object (NULL v = absent). *obj is NULL when absent. */
bool jdec_msg(struct jdec *d, const struct jv *v, const struct jv **obj);
/* A repeated field: an array (NULL v = empty). */
bool jdec_arr(struct jdec *d, const struct jv *v, const struct jv **items, size_t *n);
/* A repeated enum field: an array (NULL v = empty) whose items go to jdec_enum. A string is
 * refused as jsonpb refuses it: an unknown name as such, a known one as the wrong target. */
bool jdec_enum_arr(struct jdec *d, const struct jv *v, const char *const *names, size_t n_names,
                   const char *enum_name, const struct jv **items, size_t *n);

/* ---- writer ---- */

struct jw {
    struct buf *b;
    bool comma;
};

void jw_init(struct jw *w, struct buf *b);
void jw_obj(struct jw *w);
void jw_obj_end(struct jw *w);
void jw_arr(struct jw *w);
void jw_arr_end(struct jw *w);
void jw_key(struct jw *w, const char *k);
/* A key given as a string literal: its quoted form is composed at compile time. */
#define JW_KEY(w, lit) jw_key_raw((w), "\"" lit "\":", sizeof(lit) + 2)
void jw_key_raw(struct jw *w, const char *quoted, size_t n);
/* int64/uint64 as JSON strings (proto3 JSON). */
void jw_i64(struct jw *w, int64_t v);
void jw_u64(struct jw *w, uint64_t v);
/* A JSON number (uint32/int32 fields). */
void jw_num(struct jw *w, int64_t v);
void jw_bool(struct jw *w, bool v);
/* bytes as standard base64. */
void jw_b64(struct jw *w, const uint8_t *p, size_t n);
/* A string escaped as Go's encoding/json does (<, >, & as \u escapes). */
void jw_str(struct jw *w, const char *s, size_t n);
void jw_cstr(struct jw *w, const char *s);

/* ---- etcd messages ---- */

/* key and range_end of a request (range_end "\0" means every key >= key). */
bool codec_decode_span(struct jdec *d, const struct jv *o, struct kv_span *s);

/* Decoders fill a srv_req from a request body. On a decode error they return MS_E_BAD_REQUEST
 * with d->msg set (Go's wording). */
ms_err codec_decode_range(struct jdec *d, const struct jv *root, struct kv_range_req *r);
ms_err codec_decode_put(struct jdec *d, const struct jv *root, struct kv_put_req *r);
ms_err codec_decode_del(struct jdec *d, const struct jv *root, struct kv_del_req *r);
/* Each nested txn opens three JSON containers ({"success":[{"request_txn":), so the parser's
 * 10000 allow no deeper nesting; the log entry codec accepts the same (srv_codec.c). */
#define CODEC_MAX_TXN_DEPTH 3333
ms_err codec_decode_txn(struct jdec *d, const struct jv *root, struct kv_txn_req *r, int depth);
ms_err codec_decode_compact(struct jdec *d, const struct jv *root, struct srv_compact_req *r);

ms_err codec_decode_alarm(struct jdec *d, const struct jv *root, struct srv_alarm_req *r);
const char *codec_alarm_name(int64_t alarm);
void codec_alarms(struct jw *w, const struct srv_alarm *a, size_t n);

/* Size of the request as a protobuf message (etcd limits requests by this size). */
size_t codec_proto_size(const struct srv_req *req);

/* Encoders append one JSON object (no trailing newline). */
void codec_header(struct jw *w, const struct srv_header *h, bool with_revision);
void codec_kv(struct jw *w, const struct kv_kv *kv);
void codec_result(struct jw *w, const struct srv_header *h, const struct srv_result *r);
void codec_error(struct buf *b, const char *msg, int code);

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
ms_err codec_decode_watch(struct jdec *d, const struct jv *root, struct codec_watch_req *out);

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

/* Value of a hex digit, or -1. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
