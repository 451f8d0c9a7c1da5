/* json.h - the arena JSON reader and writer of the request path (jansson stays in config/).
 *
 * The reader parses into a read-only tree allocated in the caller's arena; strings without
 * escapes point into the input, so the input must outlive the tree. It does not recurse: open
 * containers sit on an explicit stack, and nesting is capped at Go's limit (MJSON_MAX_DEPTH).
 * Its error texts are those of Go's encoding/json scanner ("invalid character 'x' looking for
 * beginning of value", "unexpected EOF"), because the gateway answers them as etcd does.
 *
 * The writer appends compact JSON to a struct buf and escapes strings as Go's encoding/json
 * does. It keeps no state but the pending comma; allocation failures are sticky in the buf
 * (buf_failed), so a caller checks once at the end.
 *
 * Threading: none; every call is on the caller's data alone.
 */
#ifndef METASTORE_JSON_H
#define METASTORE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/arena.h"
#include "metastore/buf.h"

/* Go's encoding/json maxNestingDepth: the 10001st open container is an error. */
#define MJSON_MAX_DEPTH 10000

/* ---- parsed JSON ---- */

enum mjson_type {
    MJSON_NULL = 0,
    MJSON_FALSE,
    MJSON_TRUE,
    MJSON_NUM,
    MJSON_STR,
    MJSON_ARR,
    MJSON_OBJ
};

struct mjson_member;

/* A JSON value. Strings are decoded (escapes resolved); numbers keep their literal text. */
struct mjson_val {
    enum mjson_type type;
    const char *s; /* MJSON_STR: bytes, MJSON_NUM: literal text */
    size_t n;      /* length of s, or element count for MJSON_ARR / MJSON_OBJ */
    union {
        struct mjson_val *items;     /* MJSON_ARR */
        struct mjson_member *fields; /* MJSON_OBJ, in input order, duplicates kept */
        const char *raw;             /* MJSON_STR with escapes: its source text (NULL without) */
    } u;
};

struct mjson_member {
    const char *key; /* decoded, not NUL-terminated */
    size_t key_len;
    struct mjson_val val;
};

/* Decoding state, provided by the caller: the arena the tree goes to, and the first error,
 * which wins and is kept as Go would word it. Typed readers built on this module record their
 * own errors here too (mjson_dec_fail). */
struct mjson_dec {
    struct arena *a;
    bool failed;
    char msg[512];
};

void mjson_dec_init(struct mjson_dec *d, struct arena *a);
/* Record an error (printf-style) unless one is already recorded. Always returns false. */
bool mjson_dec_fail(struct mjson_dec *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parse the first JSON value of body[0..len) into *out; what follows it is ignored (as the
 * gateway does). An empty or all-blank body yields MJSON_NULL. False with d->msg set on a
 * syntax error or when the arena runs out ("out of memory"). */
bool mjson_parse(struct mjson_dec *d, const char *body, size_t len, struct mjson_val *out);

/* Bodies that hold JSON values back to back (Go's json.Decoder): parse the value that starts
 * after any blanks at body (there must be one; its absence is "unexpected EOF"). *used is
 * the number of bytes consumed, also on failure. */
bool mjson_parse_next(struct mjson_dec *d, const char *body, size_t len, struct mjson_val *out,
                      size_t *used);

/* text[0..len) as one whole JSON text, as Go's json.Unmarshal reads it: one value with
 * nothing but blanks around it. Its end reads as a space to Go's scanner, so a cut-off number
 * or literal is "invalid character ' ' ...", an empty text or a cut-off container "unexpected
 * end of JSON input", and anything after the value "invalid character 'x' after top-level
 * value". */
bool mjson_parse_whole(struct mjson_dec *d, const char *text, size_t len, struct mjson_val *out);

/* The offset of the first non-blank byte of p[off..len) (JSON's blanks), or len. */
static inline size_t mjson_skip_ws(const char *p, size_t len, size_t off)
{
    while (off < len && (p[off] == ' ' || p[off] == '\t' || p[off] == '\n' || p[off] == '\r'))
        off++;
    return off;
}

/* The value of the last member of obj named key (NUL-terminated), JSON null included. NULL if
 * there is none or obj is NULL or not an object. Borrowed from obj's tree. */
const struct mjson_val *mjson_get(const struct mjson_val *obj, const char *key);

/* A string value's text between its quotes as it was sent, escapes not undone: [*src, *end).
 * Borrowed from the parsed input. */
void mjson_str_source(const struct mjson_val *v, const char **src, const char **end);

/* ---- writer ---- */

struct mjson_w {
    struct buf *b;
    bool comma; /* a value was written at this level: the next one needs a comma */
};

/* Write to b (borrowed; it must outlive the writer's use). */
void mjson_w_init(struct mjson_w *w, struct buf *b);
void mjson_w_obj(struct mjson_w *w);
void mjson_w_obj_end(struct mjson_w *w);
void mjson_w_arr(struct mjson_w *w);
void mjson_w_arr_end(struct mjson_w *w);
/* A key (written as is: k must need no escaping) and its colon; the value follows. */
void mjson_w_key(struct mjson_w *w, const char *k);
/* A key given as a string literal: its quoted form is composed at compile time. */
#define MJSON_W_KEY(w, lit) mjson_w_key_raw((w), "\"" lit "\":", sizeof(lit) + 2)
void mjson_w_key_raw(struct mjson_w *w, const char *quoted, size_t n);
/* A JSON number. */
void mjson_w_num(struct mjson_w *w, int64_t v);
void mjson_w_bool(struct mjson_w *w, bool v);
/* A string escaped as Go's encoding/json does (<, >, & as \u escapes). */
void mjson_w_str(struct mjson_w *w, const char *s, size_t n);
void mjson_w_cstr(struct mjson_w *w, const char *s);
/* Start a value the caller writes itself: the comma is written if one is due, and the
 * returned buffer (w's) takes the value's complete JSON text. */
struct buf *mjson_w_raw(struct mjson_w *w);

#endif
