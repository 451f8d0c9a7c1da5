/* json.c - the arena JSON reader and writer (contract in metastore/json.h).
 *
 * The reader builds a read-only tree in the caller's arena. Its error texts follow Go's
 * encoding/json scanner ("invalid character 'x' looking for beginning of value", "unexpected
 * EOF"), because that is what etcd's gateway answers. It does not recurse: open containers
 * sit on an explicit stack, and nesting is capped at Go's limit (MJSON_MAX_DEPTH levels,
 * "invalid character '[' exceeded max depth"). Field rules of proto3 JSON (int64 as strings,
 * base64 bytes, enum names) are not here: they belong to the gateway's codec.
 */
#include "metastore/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Open containers kept on the C stack before the parse stack moves to the arena. */
#define MJSON_INLINE_FRAMES 32

void mjson_dec_init(struct mjson_dec *d, struct arena *a)
{
    d->a = a;
    d->failed = false;
    d->msg[0] = 0;
}

bool mjson_dec_fail(struct mjson_dec *d, const char *fmt, ...)
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

/* Go's quoteChar: the byte as strconv.Quote shows the rune U+00XX it stands for. 'x', '\'',
 * '"', Go's short escapes ('\a' '\b' '\f' '\n' '\r' '\t' '\v'), '\x01' and '\x7f' for the other
 * ASCII controls, the character itself (in UTF-8) for a printable Latin-1 one, '\u0085' for
 * the others (U+0080-U+00A0 and the soft hyphen U+00AD). */
static const char *quote_char(unsigned char c, char out[12])
{
    static const char esc[] = {['\a'] = 'a', ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n',
                               ['\v'] = 'v', ['\f'] = 'f', ['\r'] = 'r'};
    if (c == '\'')
        return "'\\''";
    if (c == '"')
        return "'\"'";
    if (c == '\\')
        return "'\\\\'";
    if (c < sizeof(esc) && esc[c])
        snprintf(out, 12, "'\\%c'", esc[c]);
    else if (c < 0x20 || c == 0x7f)
        snprintf(out, 12, "'\\x%02x'", c);
    else if (c < 0x7f)
        snprintf(out, 12, "'%c'", c);
    else if (c <= 0xa0 || c == 0xad)
        snprintf(out, 12, "'\\u%04x'", c);
    else
        snprintf(out, 12, "'%c%c'", 0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    return out;
}

struct jp {
    struct mjson_dec *d;
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
    return mjson_dec_fail(j->d, j->whole ? "unexpected end of JSON input" : "unexpected EOF");
}

/* An unexpected byte, or the end of the text, in the given scanner state. */
static bool jp_bad(struct jp *j, const char *context)
{
    char q[12];
    if (j->p >= j->end)
        return j->whole ? mjson_dec_fail(j->d, "invalid character ' ' %s", context) : jp_eof(j);
    return mjson_dec_fail(j->d, "invalid character %s %s", quote_char((unsigned char)*j->p, q),
                          context);
}

static void jp_ws(struct jp *j)
{
    j->p += mjson_skip_ws(j->p, (size_t)(j->end - j->p), 0);
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
        return mjson_dec_fail(j->d, "out of memory");
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

static bool parse_number(struct jp *j, struct mjson_val *out)
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
    out->type = MJSON_NUM;
    out->s = start;
    out->n = (size_t)(j->p - start);
    return true;
}

static bool parse_literal(struct jp *j, const char *word, enum mjson_type t, struct mjson_val *out)
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
static bool parse_scalar(struct jp *j, struct mjson_val *v)
{
    switch (*j->p) {
    case '"': {
        const char *src = ++j->p;
        v->type = MJSON_STR;
        if (!parse_string(j, &v->s, &v->n))
            return false;
        if (v->s != src)
            v->u.raw = src; /* decoded into the arena: there were escapes */
        return true;
    }
    case 't':
        return parse_literal(j, "true", MJSON_TRUE, v);
    case 'f':
        return parse_literal(j, "false", MJSON_FALSE, v);
    case 'n':
        return parse_literal(j, "null", MJSON_NULL, v);
    default:
        if (*j->p == '-' || is_digit(*j->p))
            return parse_number(j, v);
        return jp_bad(j, "looking for beginning of value");
    }
}

/* An open object or array: its value and the children read so far. */
struct jframe {
    struct mjson_val *v;
    void *kids; /* struct mjson_member[] or struct mjson_val[], in the arena */
    size_t n;
    size_t cap;
};

/* Growable scratch for the children of one container: an arena array doubled as needed. */
static void *grow(struct mjson_dec *d, void *old, size_t n, size_t *cap, size_t size)
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
static struct mjson_val *open_child(struct jp *j, struct jframe *f)
{
    bool obj = f->v->type == MJSON_OBJ;
    if (obj) {
        if (j->p >= j->end)
            return jp_eof(j), NULL;
        if (*j->p != '"')
            return jp_bad(j, "looking for beginning of object key string"), NULL;
        j->p++;
    }
    size_t size = obj ? sizeof(struct mjson_member) : sizeof(struct mjson_val);
    if (f->n == f->cap && !(f->kids = grow(j->d, f->kids, f->n, &f->cap, size)))
        return mjson_dec_fail(j->d, "out of memory"), NULL;
    if (!obj)
        return &((struct mjson_val *)f->kids)[f->n++];
    struct mjson_member *m = &((struct mjson_member *)f->kids)[f->n++];
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
static bool parse_value(struct jp *j, struct mjson_val *out)
{
    struct jframe inline_st[MJSON_INLINE_FRAMES];
    struct jframe *st = inline_st;
    size_t depth = 0, cap = MJSON_INLINE_FRAMES;
    struct mjson_val *v = out;
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
            if (depth == MJSON_MAX_DEPTH)
                return jp_bad(j, "exceeded max depth");
            v->type = open == '{' ? MJSON_OBJ : MJSON_ARR;
            j->p++;
            jp_ws(j);
            if (j->p >= j->end)
                return jp_eof(j);
            if (*j->p == (open == '{' ? '}' : ']')) {
                j->p++; /* empty: complete already */
            } else {
                if (depth == cap && !(st = grow(j->d, st, depth, &cap, sizeof(*st))))
                    return mjson_dec_fail(j->d, "out of memory");
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
            bool obj = f->v->type == MJSON_OBJ;
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

bool mjson_parse(struct mjson_dec *d, const char *body, size_t len, struct mjson_val *out)
{
    struct jp j = {.d = d, .p = body, .end = body + len};
    jp_ws(&j);
    if (j.p >= j.end) {
        memset(out, 0, sizeof(*out)); /* no value at all: io.EOF, which the gateway accepts */
        return true;
    }
    return parse_value(&j, out);
}

bool mjson_parse_next(struct mjson_dec *d, const char *body, size_t len, struct mjson_val *out,
                      size_t *used)
{
    struct jp j = {.d = d, .p = body, .end = body + len};
    jp_ws(&j);
    bool ok = parse_value(&j, out);
    *used = (size_t)(j.p - body);
    return ok;
}

bool mjson_parse_whole(struct mjson_dec *d, const char *text, size_t len, struct mjson_val *out)
{
    struct jp j = {.d = d, .p = text, .end = text + len, .whole = true};
    jp_ws(&j);
    if (!parse_value(&j, out))
        return false;
    jp_ws(&j);
    if (j.p < j.end)
        return jp_bad(&j, "after top-level value");
    return true;
}

static bool key_is(const struct mjson_member *m, const char *k)
{
    size_t n = strlen(k);
    return m->key_len == n && memcmp(m->key, k, n) == 0;
}

const struct mjson_val *mjson_get(const struct mjson_val *obj, const char *key)
{
    const struct mjson_val *found = NULL;
    if (!obj || obj->type != MJSON_OBJ)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (key_is(&obj->u.fields[i], key))
            found = &obj->u.fields[i].val;
    return found;
}

void mjson_str_source(const struct mjson_val *v, const char **src, const char **end)
{
    *src = v->s;
    *end = v->s + v->n;
    if (v->u.raw) {
        /* The source text is still quoted: it ends at the first quote not escaped. */
        *src = *end = v->u.raw;
        while (**end != '"')
            *end += **end == '\\' ? 2 : 1;
    }
}

/* ---- writer ---- */

void mjson_w_init(struct mjson_w *w, struct buf *b)
{
    w->b = b;
    w->comma = false;
}

static void w_sep(struct mjson_w *w)
{
    if (w->comma)
        buf_putc(w->b, ',');
    w->comma = true;
}

void mjson_w_obj(struct mjson_w *w)
{
    w_sep(w);
    buf_putc(w->b, '{');
    w->comma = false;
}

void mjson_w_obj_end(struct mjson_w *w)
{
    buf_putc(w->b, '}');
    w->comma = true;
}

void mjson_w_arr(struct mjson_w *w)
{
    w_sep(w);
    buf_putc(w->b, '[');
    w->comma = false;
}

void mjson_w_arr_end(struct mjson_w *w)
{
    buf_putc(w->b, ']');
    w->comma = true;
}

void mjson_w_key(struct mjson_w *w, const char *k)
{
    w_sep(w);
    buf_putc(w->b, '"');
    buf_puts(w->b, k);
    buf_putc(w->b, '"');
    buf_putc(w->b, ':');
    w->comma = false;
}

void mjson_w_key_raw(struct mjson_w *w, const char *quoted, size_t n)
{
    w_sep(w);
    buf_append(w->b, quoted, n);
    w->comma = false;
}

void mjson_w_num(struct mjson_w *w, int64_t v)
{
    w_sep(w);
    buf_put_i64(w->b, v);
}

void mjson_w_bool(struct mjson_w *w, bool v)
{
    w_sep(w);
    buf_puts(w->b, v ? "true" : "false");
}

void mjson_w_str(struct mjson_w *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    w_sep(w);
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

void mjson_w_cstr(struct mjson_w *w, const char *s)
{
    mjson_w_str(w, s, strlen(s));
}

struct buf *mjson_w_raw(struct mjson_w *w)
{
    w_sep(w);
    return w->b;
}
