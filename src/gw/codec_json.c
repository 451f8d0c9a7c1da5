/* codec_json.c - proto3 JSON as etcd's gateway reads and writes it (jsonpb), on top of the
 * arena JSON module: the request root, field lookup, typed readers and the writers of int64
 * and bytes fields.
 *
 * The readers' error texts follow jsonpb and Go's encoding/json ("json: cannot unmarshal
 * number 2.5 into Go value of type int64"), because that is what etcd's gateway answers.
 * int64 fields take a number or a string holding one; bytes are base64 (or an array of byte
 * values); enums take their exact name or an int32.
 */
#include "codec.h"

#include "metastore/b64.h"

#include <stdio.h>
#include <string.h>

static const char *go_type_word(enum mjson_type t)
{
    switch (t) {
    case MJSON_NUM:
        return "number";
    case MJSON_STR:
        return "string";
    case MJSON_ARR:
        return "array";
    case MJSON_OBJ:
        return "object";
    case MJSON_TRUE:
    case MJSON_FALSE:
        return "bool";
    default:
        return "null";
    }
}

bool codec_root(struct mjson_dec *d, const char *body, size_t len, struct mjson_val *out)
{
    return mjson_parse(d, body, len, out) && codec_root_value(d, out);
}

bool codec_root_value(struct mjson_dec *d, struct mjson_val *out)
{
    if (out->type == MJSON_NULL) {
        out->type = MJSON_OBJ;
        out->n = 0;
        out->u.fields = NULL;
        return true;
    }
    if (out->type != MJSON_OBJ)
        return mjson_dec_fail(d,
                              "json: cannot unmarshal %s into Go value of type "
                              "map[string]json.RawMessage",
                              go_type_word(out->type));
    return true;
}

const struct mjson_val *codec_field(const struct mjson_val *obj, const char *name,
                                    const char *camel)
{
    const struct mjson_val *found = camel ? mjson_get(obj, camel) : NULL;
    if (!found)
        found = mjson_get(obj, name);
    return found && found->type != MJSON_NULL ? found : NULL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parse a JSON integer literal (the whole of s[0..n)) into an int64 / uint64 magnitude. */
static bool int_literal(const char *s, size_t n, bool *neg, uint64_t *mag)
{
    size_t i = 0;
    *neg = false;
    *mag = 0;
    if (i < n && s[i] == '-') {
        *neg = true;
        i++;
    }
    if (i == n)
        return false;
    if (s[i] == '0' && n - i > 1)
        return false;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        uint64_t dgt = (uint64_t)(s[i] - '0');
        if (*mag > (UINT64_MAX - dgt) / 10)
            return false;
        *mag = *mag * 10 + dgt;
    }
    return true;
}

/* bytes given as a JSON array of numbers 0..255: json.Unmarshal into []byte takes it (null
 * items are 0). */
static bool bytes_array(struct mjson_dec *d, const struct mjson_val *v, const uint8_t **p,
                        size_t *n)
{
    uint8_t *out = arena_alloc(d->a, v->n ? v->n : 1);
    if (!out)
        return mjson_dec_fail(d, "out of memory");
    for (size_t i = 0; i < v->n; i++) {
        const struct mjson_val *it = &v->u.items[i];
        bool neg;
        uint64_t mag = 0;
        if (it->type != MJSON_NUM && it->type != MJSON_NULL)
            return mjson_dec_fail(d, "json: cannot unmarshal %s into Go value of type uint8",
                                  go_type_word(it->type));
        if (it->type == MJSON_NUM && (!int_literal(it->s, it->n, &neg, &mag) || neg || mag > 255))
            return mjson_dec_fail(d,
                                  "json: cannot unmarshal number %.*s into Go value of type uint8",
                                  (int)(it->n > 64 ? 64 : it->n), it->s);
        out[i] = (uint8_t)mag;
    }
    *p = out;
    *n = v->n;
    return true;
}

bool codec_read_bytes(struct mjson_dec *d, const struct mjson_val *v, const uint8_t **p, size_t *n)
{
    if (!v)
        return true;
    if (v->type == MJSON_ARR)
        return bytes_array(d, v, p, n);
    if (v->type != MJSON_STR)
        return mjson_dec_fail(d, "json: cannot unmarshal %s into Go value of type []uint8",
                              go_type_word(v->type));
    uint8_t *out = arena_alloc(d->a, b64_decoded_max(v->n));
    if (!out)
        return mjson_dec_fail(d, "out of memory");
    size_t off;
    if (b64_decode(v->s, v->n, out, n, &off) != 0)
        return mjson_dec_fail(d, "illegal base64 data at input byte %zu", off);
    *p = out;
    return true;
}

/* The text of an integer field: a JSON number, or a string holding one (jsonpb unquotes the
 * string and decodes its content as JSON). Sets txt and len to the number literal. */
static bool int_text(struct mjson_dec *d, const struct mjson_val *v, const char *gotype,
                     const char **txt, size_t *len)
{
    if (v->type == MJSON_NUM) {
        *txt = v->s;
        *len = v->n;
        return true;
    }
    if (v->type != MJSON_STR)
        return mjson_dec_fail(d, "json: cannot unmarshal %s into Go value of type %s",
                              go_type_word(v->type), gotype);
    /* jsonpb strips the quotes and reads the source text as is: escapes are not undone. */
    const char *src, *end;
    mjson_str_source(v, &src, &end);
    struct mjson_val inner;
    if (!mjson_parse_whole(d, src, (size_t)(end - src), &inner))
        return false;
    if (inner.type != MJSON_NUM)
        return mjson_dec_fail(d, "json: cannot unmarshal %s into Go value of type %s",
                              go_type_word(inner.type), gotype);
    *txt = inner.s;
    *len = inner.n;
    return true;
}

/* Read an integer field of Go type gotype whose range is [-neg_max, pos_max] in magnitude. */
static bool read_int(struct mjson_dec *d, const struct mjson_val *v, const char *gotype,
                     uint64_t neg_max, uint64_t pos_max, bool *neg, uint64_t *mag)
{
    const char *t = "";
    size_t n = 0;
    if (!int_text(d, v, gotype, &t, &n))
        return false;
    if (!int_literal(t, n, neg, mag) || *mag > (*neg ? neg_max : pos_max))
        return mjson_dec_fail(d, "json: cannot unmarshal number %.*s into Go value of type %s",
                              (int)(n > 64 ? 64 : n), t, gotype);
    return true;
}

bool codec_read_i64(struct mjson_dec *d, const struct mjson_val *v, int64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!v)
        return true;
    if (!read_int(d, v, "int64", (uint64_t)INT64_MAX + 1, INT64_MAX, &neg, &mag))
        return false;
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return true;
}

bool codec_read_u64(struct mjson_dec *d, const struct mjson_val *v, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!v)
        return true;
    if (!read_int(d, v, "uint64", 0, UINT64_MAX, &neg, &mag))
        return false;
    *out = mag;
    return true;
}

bool codec_read_bool(struct mjson_dec *d, const struct mjson_val *v, bool *out)
{
    if (!v)
        return true;
    if (v->type != MJSON_TRUE && v->type != MJSON_FALSE)
        return mjson_dec_fail(d, "json: cannot unmarshal %s into Go value of type bool",
                              go_type_word(v->type));
    *out = v->type == MJSON_TRUE;
    return true;
}

/* Go's %q of s (printable ASCII kept, the rest escaped). */
static void go_quote(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n && o + 6 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        }
    }
    out[o++] = '"';
    out[o] = 0;
}

bool codec_read_enum(struct mjson_dec *d, const struct mjson_val *v, const char *const *names,
                     size_t n_names, const char *enum_name, int64_t *out)
{
    if (!v)
        return true;
    if (v->type == MJSON_STR) {
        /* jsonpb looks the name up as sent, escapes and all. */
        const char *src, *end;
        mjson_str_source(v, &src, &end);
        size_t n = (size_t)(end - src);
        for (size_t i = 0; i < n_names; i++) {
            if (strlen(names[i]) == n && memcmp(names[i], src, n) == 0) {
                *out = (int64_t)i;
                return true;
            }
        }
        char q[200];
        go_quote(src, n, q, sizeof(q));
        return mjson_dec_fail(d, "unknown value %s for enum %s", q, enum_name);
    }
    /* Any int32 is taken, named or not, as jsonpb does; Go names the enum's type in errors. */
    if (v->type != MJSON_NUM)
        return mjson_dec_fail(d, "json: cannot unmarshal %s into Go value of type %s",
                              go_type_word(v->type), enum_name);
    bool neg;
    uint64_t mag;
    if (!int_literal(v->s, v->n, &neg, &mag) || mag > INT32_MAX + (uint64_t)neg)
        return mjson_dec_fail(d, "json: cannot unmarshal number %.*s into Go value of type %s",
                              (int)(v->n > 64 ? 64 : v->n), v->s, enum_name);
    *out = neg ? -(int64_t)mag : (int64_t)mag;
    return true;
}

bool codec_read_msg(struct mjson_dec *d, const struct mjson_val *v, const struct mjson_val **obj)
{
    *obj = NULL;
    if (!v)
        return true;
    if (v->type != MJSON_OBJ)
        return mjson_dec_fail(d,
                              "json: cannot unmarshal %s into Go value of type "
                              "map[string]json.RawMessage",
                              go_type_word(v->type));
    *obj = v;
    return true;
}

bool codec_read_arr(struct mjson_dec *d, const struct mjson_val *v, const struct mjson_val **items,
                    size_t *n)
{
    *items = NULL;
    *n = 0;
    if (!v)
        return true;
    if (v->type != MJSON_ARR)
        return mjson_dec_fail(d,
                              "json: cannot unmarshal %s into Go value of type []json.RawMessage",
                              go_type_word(v->type));
    *items = v->u.items;
    *n = v->n;
    return true;
}

bool codec_read_enum_arr(struct mjson_dec *d, const struct mjson_val *v, const char *const *names,
                         size_t n_names, const char *enum_name, const struct mjson_val **items,
                         size_t *n)
{
    /* jsonpb takes a quoted value for an enum name before it sees that the field is a list. */
    if (v && v->type == MJSON_STR) {
        int64_t e;
        *items = NULL;
        *n = 0;
        if (!codec_read_enum(d, v, names, n_names, enum_name, &e))
            return false;
        return mjson_dec_fail(d, "invalid target \"slice\" for enum %s", enum_name);
    }
    return codec_read_arr(d, v, items, n);
}

void codec_write_i64(struct mjson_w *w, int64_t v)
{
    struct buf *b = mjson_w_raw(w);
    buf_putc(b, '"');
    buf_put_i64(b, v);
    buf_putc(b, '"');
}

void codec_write_u64(struct mjson_w *w, uint64_t v)
{
    struct buf *b = mjson_w_raw(w);
    buf_putc(b, '"');
    buf_put_u64(b, v);
    buf_putc(b, '"');
}

void codec_write_b64(struct mjson_w *w, const uint8_t *p, size_t n)
{
    struct buf *b = mjson_w_raw(w);
    size_t need = b64_encoded_len(n) + 2;
    if (!buf_reserve(b, need))
        return;
    char *o = (char *)b->p + b->len;
    o[0] = '"';
    size_t k = b64_encode(p, n, o + 1);
    o[k + 1] = '"';
    b->len += k + 2;
}
