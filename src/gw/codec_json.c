/* codec_json.c - the JSON parser, typed readers and writer of the gateway.
 *
 * The parser builds a read-only tree in the request's arena. Its error texts follow Go's
 * encoding/json scanner ("invalid character 'x' looking for beginning of value", "unexpected
 * EOF") and the readers follow jsonpb's messages ("json: cannot unmarshal number 2.5 into Go
 * value of type int64"), because that is what etcd's gateway answers. The parser does not
 * recurse: open containers sit on an explicit stack, and nesting is capped at Go's limit
 * (10000 levels, "invalid character '[' exceeded max depth").
 */
#include "codec.h"

#include "metastore/b64.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Go's encoding/json maxNestingDepth: the 10001st open container is an error. */
#define JSON_MAX_DEPTH 10000
/* Open containers kept on the C stack before the parse stack moves to the arena. */
#define JSON_INLINE_FRAMES 32

void jdec_init(struct jdec *d, struct arena *a)
{
    d->a = a;
    d->failed = false;
    d->msg[0] = 0;
}

bool jdec_fail(struct jdec *d, const char *fmt, ...)
{
    if (d->failed)
        return false;
    d->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
    va_end(ap);
    return false;
}

/* Go's quoteChar: 'x', '\'', '"', '\n', '\x01'. */
static const char *quote_char(unsigned char c, char out[8])
{
    if (c == '\'')
        return "'\\''";
    if (c == '"')
        return "'\"'";
    if (c == '\\')
        return "'\\\\'";
    if (c == '\n')
        return "'\\n'";
    if (c == '\r')
        return "'\\r'";
    if (c == '\t')
        return "'\\t'";
    if (c < 0x20 || c >= 0x7f)
        snprintf(out, 8, "'\\x%02x'", c);
    else
        snprintf(out, 8, "'%c'", c);
    return out;
}

struct jp {
    struct jdec *d;
    const char *p;
    const char *end;
    /* The text is a whole document, as json.Unmarshal sees it (a number held in a string),
     * not a value read from a stream (json.Decoder): at its end Go's scanner reads a space, so
     * a cut-off number or literal is "invalid character ' ' ..." and anything else "unexpected
     * end of JSON input". */
    bool whole;
};

static bool jp_eof(struct jp *j)
{
    return jdec_fail(j->d, j->whole ? "unexpected end of JSON input" : "unexpected EOF");
}

/* An unexpected byte, or the end of the text, in the given scanner state. */
static bool jp_bad(struct jp *j, const char *context)
{
    char q[8];
    if (j->p >= j->end)
        return j->whole ? jdec_fail(j->d, "invalid character ' ' %s", context) : jp_eof(j);
    return jdec_fail(j->d, "invalid character %s %s", quote_char((unsigned char)*j->p, q), context);
}

static void jp_ws(struct jp *j)
{
    j->p += json_skip_ws(j->p, (size_t)(j->end - j->p), 0);
}

static bool read_u4(struct jp *j, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = j->p < j->end ? hex_digit(*j->p) : -1;
        if (h < 0)
            return jp_bad(j, "in \\u hexadecimal character escape");
        v = v << 4 | (unsigned)h;
        j->p++;
    }
    *out = v;
    return true;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* j->p is just past the opening quote. */
/* Bytes that end the fast scan of a string: the quote, a backslash, control characters. */
static const bool STR_SPECIAL[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1,
    [0x0e] = 1, [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1,
    [0x15] = 1, [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, ['"'] = 1,  ['\\'] = 1,
};

static bool parse_string(struct jp *j, const char **s, size_t *n)
{
    const char *start = j->p;
    /* Fast path: no escapes, point into the body. */
    while (j->p < j->end && !STR_SPECIAL[(unsigned char)*j->p])
        j->p++;
    if (j->p >= j->end)
        return jp_eof(j);
    if (*j->p == '"') {
        *s = start;
        *n = (size_t)(j->p - start);
        j->p++;
        return true;
    }
    if ((unsigned char)*j->p < 0x20)
        return jp_bad(j, "in string literal");
    /* Slow path: decode into the arena. The result is never longer than the source. */
    const char *q = j->p;
    while (q < j->end && *q != '"') {
        if (*q == '\\')
            q++;
        q++;
    }
    size_t cap = (size_t)((q < j->end ? q : j->end) - start) + 8;
    char *out = arena_alloc(j->d->a, cap);
    if (!out)
        return jdec_fail(j->d, "out of memory");
    size_t o = (size_t)(j->p - start);
    memcpy(out, start, o);
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            *s = out;
            *n = o;
            return true;
        }
        if (c < 0x20)
            return jp_bad(j, "in string literal");
        if (c != '\\') {
            out[o++] = (char)c;
            j->p++;
            continue;
        }
        j->p++;
        if (j->p >= j->end)
            return jp_bad(j, "in string escape code");
        char e = *j->p;
        j->p++;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            out[o++] = e;
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            unsigned cp = 0;
            if (!read_u4(j, &cp))
                return false;
            if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
                j->p[1] == 'u') {
                const char *save = j->p;
                unsigned lo = 0;
                j->p += 2;
                if (!read_u4(j, &lo))
                    return false;
                if (lo >= 0xDC00 && lo < 0xE000)
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else {
                    j->p = save;
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD;
            }
            /* A \u escape is 6 source bytes and at most 4 output bytes. */
            o += put_utf8(out + o, cp);
            break;
        }
        default:
            j->p--;
            return jp_bad(j, "in string escape code");
        }
    }
    return jp_eof(j);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool parse_number(struct jp *j, struct jv *out)
{
    const char *start = j->p;
    if (*j->p == '-') {
        j->p++;
        if (j->p >= j->end || !is_digit(*j->p))
            return jp_bad(j, "in numeric literal");
    }
    if (*j->p == '0') {
        j->p++;
    } else {
        while (j->p < j->end && is_digit(*j->p))
            j->p++;
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !is_digit(*j->p))
            return jp_bad(j, "after decimal point in numeric literal");
        while (j->p < j->end && is_digit(*j->p))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || !is_digit(*j->p))
            return jp_bad(j, "in exponent of numeric literal");
        while (j->p < j->end && is_digit(*j->p))
            j->p++;
    }
    out->type = JV_NUM;
    out->s = start;
    out->n = (size_t)(j->p - start);
    return true;
}

static bool parse_literal(struct jp *j, const char *word, enum jv_type t, struct jv *out)
{
    for (size_t i = 0; word[i]; i++) {
        if (j->p >= j->end || *j->p != word[i]) {
            char ctx[48];
            snprintf(ctx, sizeof(ctx), "in literal %s (expecting '%c')", word, word[i]);
            return jp_bad(j, ctx);
        }
        j->p++;
    }
    out->type = t;
    return true;
}

/* Scalars: a string, a number or a literal. */
static bool parse_scalar(struct jp *j, struct jv *v)
{
    switch (*j->p) {
    case '"': {
        const char *src = ++j->p;
        v->type = JV_STR;
        if (!parse_string(j, &v->s, &v->n))
            return false;
        if (v->s != src)
            v->u.raw = src; /* decoded into the arena: there were escapes */
        return true;
    }
    case 't':
        return parse_literal(j, "true", JV_TRUE, v);
    case 'f':
        return parse_literal(j, "false", JV_FALSE, v);
    case 'n':
        return parse_literal(j, "null", JV_NULL, v);
    default:
        if (*j->p == '-' || is_digit(*j->p))
            return parse_number(j, v);
        return jp_bad(j, "looking for beginning of value");
    }
}

/* An open object or array: its value and the children read so far. */
struct jframe {
    struct jv *v;
    void *kids; /* struct jmember[] or struct jv[], in the arena */
    size_t n;
    size_t cap;
};

/* Growable scratch for the children of one container: an arena array doubled as needed. */
static void *grow(struct jdec *d, void *old, size_t n, size_t *cap, size_t size)
{
    size_t nc = *cap ? *cap * 2 : 4;
    void *p = arena_alloc(d->a, nc * size);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, old, n * size);
    *cap = nc;
    return p;
}

/* Append a child slot to f; for an object read its key and colon first. NULL on error. */
static struct jv *open_child(struct jp *j, struct jframe *f)
{
    bool obj = f->v->type == JV_OBJ;
    if (obj) {
        if (j->p >= j->end)
            return jp_eof(j), NULL;
        if (*j->p != '"')
            return jp_bad(j, "looking for beginning of object key string"), NULL;
        j->p++;
    }
    size_t size = obj ? sizeof(struct jmember) : sizeof(struct jv);
    if (f->n == f->cap && !(f->kids = grow(j->d, f->kids, f->n, &f->cap, size)))
        return jdec_fail(j->d, "out of memory"), NULL;
    if (!obj)
        return &((struct jv *)f->kids)[f->n++];
    struct jmember *m = &((struct jmember *)f->kids)[f->n++];
    if (!parse_string(j, &m->key, &m->key_len))
        return NULL;
    jp_ws(j);
    if (j->p >= j->end)
        return jp_eof(j), NULL;
    if (*j->p != ':')
        return jp_bad(j, "after object key"), NULL;
    j->p++;
    jp_ws(j);
    return &m->val;
}

/* One value, nested containers included. Iterative: the open containers live in an explicit
 * stack (inline, then in the arena), so the C stack stays flat whatever the nesting. */
static bool parse_value(struct jp *j, struct jv *out)
{
    struct jframe inline_st[JSON_INLINE_FRAMES];
    struct jframe *st = inline_st;
    size_t depth = 0, cap = JSON_INLINE_FRAMES;
    struct jv *v = out;
    for (;;) {
        /* v is the slot of the next value, at its first byte. */
        memset(v, 0, sizeof(*v));
        if (j->p >= j->end)
            return jp_eof(j);
        char open = *j->p;
        if (open != '{' && open != '[') {
            if (!parse_scalar(j, v))
                return false;
        } else {
            if (depth == JSON_MAX_DEPTH)
                return jp_bad(j, "exceeded max depth");
            v->type = open == '{' ? JV_OBJ : JV_ARR;
            j->p++;
            jp_ws(j);
            if (j->p >= j->end)
                return jp_eof(j);
            if (*j->p == (open == '{' ? '}' : ']')) {
                j->p++; /* empty: complete already */
            } else {
                if (depth == cap && !(st = grow(j->d, st, depth, &cap, sizeof(*st))))
                    return jdec_fail(j->d, "out of memory");
                st[depth] = (struct jframe){.v = v};
                if (!(v = open_child(j, &st[depth++])))
                    return false;
                continue;
            }
        }
        /* A value is complete: close the containers it completes, then open the next slot. */
        for (;;) {
            if (depth == 0)
                return true;
            struct jframe *f = &st[depth - 1];
            bool obj = f->v->type == JV_OBJ;
            jp_ws(j);
            if (j->p >= j->end)
                return jp_eof(j);
            if (*j->p == ',') {
                j->p++;
                jp_ws(j);
                if (!(v = open_child(j, f)))
                    return false;
                break;
            }
            if (*j->p != (obj ? '}' : ']'))
                return jp_bad(j, obj ? "after object key:value pair" : "after array element");
            j->p++;
            f->v->n = f->n;
            if (obj)
                f->v->u.fields = f->kids;
            else
                f->v->u.items = f->kids;
            depth--;
        }
    }
}

bool json_parse(struct jdec *d, const char *body, size_t len, struct jv *out)
{
    struct jp j = {.d = d, .p = body, .end = body + len};
    jp_ws(&j);
    if (j.p >= j.end) {
        memset(out, 0, sizeof(*out)); /* no value at all: io.EOF, which the gateway accepts */
        return true;
    }
    return parse_value(&j, out);
}

static const char *go_type_word(enum jv_type t)
{
    switch (t) {
    case JV_NUM:
        return "number";
    case JV_STR:
        return "string";
    case JV_ARR:
        return "array";
    case JV_OBJ:
        return "object";
    case JV_TRUE:
    case JV_FALSE:
        return "bool";
    default:
        return "null";
    }
}

bool json_parse_next(struct jdec *d, const char *body, size_t len, struct jv *out, size_t *used)
{
    struct jp j = {.d = d, .p = body, .end = body + len};
    jp_ws(&j);
    bool ok = parse_value(&j, out);
    *used = (size_t)(j.p - body);
    return ok;
}

bool jdec_root(struct jdec *d, const char *body, size_t len, struct jv *out)
{
    return json_parse(d, body, len, out) && jdec_root_value(d, out);
}

bool jdec_root_value(struct jdec *d, struct jv *out)
{
    if (out->type == JV_NULL) {
        out->type = JV_OBJ;
        out->n = 0;
        out->u.fields = NULL;
        return true;
    }
    if (out->type != JV_OBJ)
        return jdec_fail(d,
                         "json: cannot unmarshal %s into Go value of type "
                         "map[string]json.RawMessage",
                         go_type_word(out->type));
    return true;
}

static bool key_is(const struct jmember *m, const char *k)
{
    size_t n = strlen(k);
    return m->key_len == n && memcmp(m->key, k, n) == 0;
}

const struct jv *jv_field(const struct jv *obj, const char *name, const char *camel)
{
    const struct jv *found = NULL;
    if (!obj || obj->type != JV_OBJ)
        return NULL;
    if (camel) {
        for (size_t i = 0; i < obj->n; i++)
            if (key_is(&obj->u.fields[i], camel))
                found = &obj->u.fields[i].val;
    }
    if (!found) {
        for (size_t i = 0; i < obj->n; i++)
            if (key_is(&obj->u.fields[i], name))
                found = &obj->u.fields[i].val;
    }
    return found && found->type != JV_NULL ? found : NULL;
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
static bool bytes_array(struct jdec *d, const struct jv *v, const uint8_t **p, size_t *n)
{
    uint8_t *out = arena_alloc(d->a, v->n ? v->n : 1);
    if (!out)
        return jdec_fail(d, "out of memory");
    for (size_t i = 0; i < v->n; i++) {
        const struct jv *it = &v->u.items[i];
        bool neg;
        uint64_t mag = 0;
        if (it->type != JV_NUM && it->type != JV_NULL)
            return jdec_fail(d, "json: cannot unmarshal %s into Go value of type uint8",
                             go_type_word(it->type));
        if (it->type == JV_NUM && (!int_literal(it->s, it->n, &neg, &mag) || neg || mag > 255))
            return jdec_fail(d, "json: cannot unmarshal number %.*s into Go value of type uint8",
                             (int)(it->n > 64 ? 64 : it->n), it->s);
        out[i] = (uint8_t)mag;
    }
    *p = out;
    *n = v->n;
    return true;
}

bool jdec_bytes(struct jdec *d, const struct jv *v, const uint8_t **p, size_t *n)
{
    if (!v)
        return true;
    if (v->type == JV_ARR)
        return bytes_array(d, v, p, n);
    if (v->type != JV_STR)
        return jdec_fail(d, "json: cannot unmarshal %s into Go value of type []uint8",
                         go_type_word(v->type));
    uint8_t *out = arena_alloc(d->a, b64_decoded_max(v->n));
    if (!out)
        return jdec_fail(d, "out of memory");
    size_t off;
    if (b64_decode(v->s, v->n, out, n, &off) != 0)
        return jdec_fail(d, "illegal base64 data at input byte %zu", off);
    *p = out;
    return true;
}

/* A string's text between its quotes as it was sent: escapes not undone (jsonpb reads enum
 * names and integers in strings so). */
static void str_source(const struct jv *v, const char **src, const char **end)
{
    *src = v->s;
    *end = v->s + v->n;
    if (v->u.raw) {
        *src = *end = v->u.raw;
        while (**end != '"')
            *end += **end == '\\' ? 2 : 1;
    }
}

/* The text of an integer field: a JSON number, or a string holding one (jsonpb unquotes the
 * string and decodes its content as JSON). Sets txt and len to the number literal. */
static bool int_text(struct jdec *d, const struct jv *v, const char *gotype, const char **txt,
                     size_t *len)
{
    if (v->type == JV_NUM) {
        *txt = v->s;
        *len = v->n;
        return true;
    }
    if (v->type != JV_STR)
        return jdec_fail(d, "json: cannot unmarshal %s into Go value of type %s",
                         go_type_word(v->type), gotype);
    /* jsonpb strips the quotes and reads the source text as is: escapes are not undone. */
    const char *src, *end;
    str_source(v, &src, &end);
    struct jv inner;
    struct jp j = {.d = d, .p = src, .end = end, .whole = true};
    jp_ws(&j);
    if (!parse_value(&j, &inner))
        return false;
    jp_ws(&j);
    if (j.p < j.end)
        return jp_bad(&j, "after top-level value");
    if (inner.type != JV_NUM)
        return jdec_fail(d, "json: cannot unmarshal %s into Go value of type %s",
                         go_type_word(inner.type), gotype);
    *txt = inner.s;
    *len = inner.n;
    return true;
}

/* Read an integer field of Go type gotype whose range is [-neg_max, pos_max] in magnitude. */
static bool read_int(struct jdec *d, const struct jv *v, const char *gotype, uint64_t neg_max,
                     uint64_t pos_max, bool *neg, uint64_t *mag)
{
    const char *t = "";
    size_t n = 0;
    if (!int_text(d, v, gotype, &t, &n))
        return false;
    if (!int_literal(t, n, neg, mag) || *mag > (*neg ? neg_max : pos_max))
        return jdec_fail(d, "json: cannot unmarshal number %.*s into Go value of type %s",
                         (int)(n > 64 ? 64 : n), t, gotype);
    return true;
}

bool jdec_i64(struct jdec *d, const struct jv *v, int64_t *out)
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

bool jdec_u64(struct jdec *d, const struct jv *v, uint64_t *out)
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

bool jdec_bool(struct jdec *d, const struct jv *v, bool *out)
{
    if (!v)
        return true;
    if (v->type != JV_TRUE && v->type != JV_FALSE)
        return jdec_fail(d, "json: cannot unmarshal %s into Go value of type bool",
                         go_type_word(v->type));
    *out = v->type == JV_TRUE;
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

bool jdec_enum(struct jdec *d, const struct jv *v, const char *const *names, size_t n_names,
               const char *enum_name, int64_t *out)
{
    if (!v)
        return true;
    if (v->type == JV_STR) {
        /* jsonpb looks the name up as sent, escapes and all. */
        const char *src, *end;
        str_source(v, &src, &end);
        size_t n = (size_t)(end - src);
        for (size_t i = 0; i < n_names; i++) {
            if (strlen(names[i]) == n && memcmp(names[i], src, n) == 0) {
                *out = (int64_t)i;
                return true;
            }
        }
        char q[200];
        go_quote(src, n, q, sizeof(q));
        return jdec_fail(d, "unknown value %s for enum %s", q, enum_name);
    }
    /* Any int32 is taken, named or not, as jsonpb does; Go names the enum's type in errors. */
    if (v->type != JV_NUM)
        return jdec_fail(d, "json: cannot unmarshal %s into Go value of type %s",
                         go_type_word(v->type), enum_name);
    bool neg;
    uint64_t mag;
    if (!int_literal(v->s, v->n, &neg, &mag) || mag > INT32_MAX + (uint64_t)neg)
        return jdec_fail(d, "json: cannot unmarshal number %.*s into Go value of type %s",
                         (int)(v->n > 64 ? 64 : v->n), v->s, enum_name);
    *out = neg ? -(int64_t)mag : (int64_t)mag;
    return true;
}

bool jdec_msg(struct jdec *d, const struct jv *v, const struct jv **obj)
{
    *obj = NULL;
    if (!v)
        return true;
    if (v->type != JV_OBJ)
        return jdec_fail(d,
                         "json: cannot unmarshal %s into Go value of type "
                         "map[string]json.RawMessage",
                         go_type_word(v->type));
    *obj = v;
    return true;
}

bool jdec_arr(struct jdec *d, const struct jv *v, const struct jv **items, size_t *n)
{
    *items = NULL;
    *n = 0;
    if (!v)
        return true;
    if (v->type != JV_ARR)
        return jdec_fail(d, "json: cannot unmarshal %s into Go value of type []json.RawMessage",
                         go_type_word(v->type));
    *items = v->u.items;
    *n = v->n;
    return true;
}

bool jdec_enum_arr(struct jdec *d, const struct jv *v, const char *const *names, size_t n_names,
                   const char *enum_name, const struct jv **items, size_t *n)
{
    /* jsonpb takes a quoted value for an enum name before it sees that the field is a list. */
    if (v && v->type == JV_STR) {
        int64_t e;
        *items = NULL;
        *n = 0;
        if (!jdec_enum(d, v, names, n_names, enum_name, &e))
            return false;
        return jdec_fail(d, "invalid target \"slice\" for enum %s", enum_name);
    }
    return jdec_arr(d, v, items, n);
}

/* ---- writer ---- */

void jw_init(struct jw *w, struct buf *b)
{
    w->b = b;
    w->comma = false;
}

static void jw_sep(struct jw *w)
{
    if (w->comma)
        buf_putc(w->b, ',');
    w->comma = true;
}

void jw_obj(struct jw *w)
{
    jw_sep(w);
    buf_putc(w->b, '{');
    w->comma = false;
}

void jw_obj_end(struct jw *w)
{
    buf_putc(w->b, '}');
    w->comma = true;
}

void jw_arr(struct jw *w)
{
    jw_sep(w);
    buf_putc(w->b, '[');
    w->comma = false;
}

void jw_arr_end(struct jw *w)
{
    buf_putc(w->b, ']');
    w->comma = true;
}

void jw_key(struct jw *w, const char *k)
{
    jw_sep(w);
    buf_putc(w->b, '"');
    buf_puts(w->b, k);
    buf_putc(w->b, '"');
    buf_putc(w->b, ':');
    w->comma = false;
}

void jw_key_raw(struct jw *w, const char *quoted, size_t n)
{
    jw_sep(w);
    buf_append(w->b, quoted, n);
    w->comma = false;
}

void jw_i64(struct jw *w, int64_t v)
{
    jw_sep(w);
    buf_putc(w->b, '"');
    buf_put_i64(w->b, v);
    buf_putc(w->b, '"');
}

void jw_u64(struct jw *w, uint64_t v)
{
    jw_sep(w);
    buf_putc(w->b, '"');
    buf_put_u64(w->b, v);
    buf_putc(w->b, '"');
}

void jw_num(struct jw *w, int64_t v)
{
    jw_sep(w);
    buf_put_i64(w->b, v);
}

void jw_bool(struct jw *w, bool v)
{
    jw_sep(w);
    buf_puts(w->b, v ? "true" : "false");
}

void jw_b64(struct jw *w, const uint8_t *p, size_t n)
{
    jw_sep(w);
    size_t need = b64_encoded_len(n) + 2;
    if (!buf_reserve(w->b, need))
        return;
    char *o = (char *)w->b->p + w->b->len;
    o[0] = '"';
    size_t k = b64_encode(p, n, o + 1);
    o[k + 1] = '"';
    w->b->len += k + 2;
}

void jw_str(struct jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jw_sep(w);
    buf_putc(w->b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            buf_puts(w->b, "\\\"");
            break;
        case '\\':
            buf_puts(w->b, "\\\\");
            break;
        case '\n':
            buf_puts(w->b, "\\n");
            break;
        case '\r':
            buf_puts(w->b, "\\r");
            break;
        case '\t':
            buf_puts(w->b, "\\t");
            break;
        case '<':
        case '>':
        case '&':
            buf_puts(w->b, "\\u00");
            buf_putc(w->b, hex[c >> 4]);
            buf_putc(w->b, hex[c & 15]);
            break;
        default:
            if (c < 0x20) {
                buf_puts(w->b, "\\u00");
                buf_putc(w->b, hex[c >> 4]);
                buf_putc(w->b, hex[c & 15]);
            } else {
                buf_putc(w->b, (char)c);
            }
        }
    }
    buf_putc(w->b, '"');
}

void jw_cstr(struct jw *w, const char *s)
{
    jw_str(w, s, strlen(s));
}
