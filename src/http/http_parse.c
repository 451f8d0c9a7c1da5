/* http_parse.c - the HTTP/1.1 wire grammar (RFC 9112): request line, header fields, framing and
 * chunked bodies.
 *
 * Parsing works on a caller's buffer and keeps pointers into it; it allocates nothing and never
 * looks past len. Input is untrusted: every size from the peer is checked against what remains
 * and against a limit before it is used, and what is ambiguous is refused.
 */
#include "http_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool eq_ci(const char *a, size_t al, const char *b)
{
    size_t bl = strlen(b);
    return al == bl && strncasecmp(a, b, bl) == 0;
}

bool http_has_token(const char *v, size_t vl, const char *t)
{
    size_t tl = strlen(t), i = 0;
    while (i < vl) {
        while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vl && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, t, tl) == 0)
            return true;
    }
    return false;
}

static const char *find_header(const struct http_hdr *hdrs, size_t n, const char *name, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (eq_ci(hdrs[i].name, hdrs[i].name_len, name)) {
            *len = hdrs[i].value_len;
            return hdrs[i].value;
        }
    }
    *len = 0;
    return NULL;
}

const char *http_header(const struct http_request *r, const char *name, size_t *len)
{
    return find_header(r->hdrs, r->n_hdrs, name, len);
}

const char *http_response_header(const struct http_response *r, const char *name, size_t *len)
{
    return find_header(r->hdrs, r->n_hdrs, name, len);
}

/* Find the end of the header block: returns the offset just past the empty line, or 0. */
static size_t header_end(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n')
            return i + 2;
        if (p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static enum http_method method_of(const char *m, size_t n)
{
    static const struct {
        const char *s;
        enum http_method m;
    } t[] = {{"GET", HTTP_GET},       {"POST", HTTP_POST}, {"PUT", HTTP_PUT},
             {"DELETE", HTTP_DELETE}, {"HEAD", HTTP_HEAD}, {"OPTIONS", HTTP_OPTIONS},
             {"PATCH", HTTP_PATCH}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strlen(t[i].s) == n && memcmp(t[i].s, m, n) == 0)
            return t[i].m;
    return HTTP_OTHER;
}

/* May byte c appear in a field value, a chunk extension or a trailer? HTAB, SP, VCHAR and
 * obs-text (RFC 9110 5.5); a NUL, DEL or bare CR is an error, never a silent cut. */
static bool is_field_byte(unsigned char c)
{
    return c >= 0x20 ? c != 0x7f : c == '\t';
}

/* The end of the line starting at p[i]: CRLF (or a bare LF) after field bytes only. Returns OK
 * with *next just past the LF, MORE, or BAD. */
static enum http_parse line_end(const char *p, size_t len, size_t i, size_t *next)
{
    while (i < len && is_field_byte((unsigned char)p[i]))
        i++;
    if (i < len && p[i] == '\r')
        i++;
    if (i == len)
        return HTTP_PARSE_MORE;
    if (p[i] != '\n')
        return HTTP_PARSE_BAD;
    *next = i + 1;
    return HTTP_PARSE_OK;
}

#define CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions, as Go's limit */

enum http_parse http_chunk_line(const char *p, size_t len, uint64_t *size, size_t *next)
{
    /* chunk-size [BWS ; ext] CRLF: nothing but whitespace or an extension may follow the
     * digits ("0x12" is an error, not a last chunk). */
    size_t i = 0;
    uint64_t sz = 0;
    while (i < len && isxdigit((unsigned char)p[i])) {
        if (sz > (UINT64_MAX >> 4))
            return HTTP_PARSE_BAD;
        int c = (unsigned char)p[i];
        sz = sz * 16 + (uint64_t)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
        i++;
    }
    if (i == len)
        return len > CHUNK_LINE_MAX ? HTTP_PARSE_BAD : HTTP_PARSE_MORE;
    if (i == 0)
        return HTTP_PARSE_BAD;
    while (i < len && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i < len && p[i] != ';' && p[i] != '\r' && p[i] != '\n')
        return HTTP_PARSE_BAD;
    enum http_parse st = line_end(p, len, i, &i);
    if (st != HTTP_PARSE_OK)
        return st == HTTP_PARSE_MORE && len > CHUNK_LINE_MAX ? HTTP_PARSE_BAD : st;
    if (i > CHUNK_LINE_MAX)
        return HTTP_PARSE_BAD;
    *size = sz;
    *next = i;
    return HTTP_PARSE_OK;
}

enum http_parse http_chunk_crlf(const char *p, size_t len)
{
    /* a bare LF after the data is an error, as in Go (a size line may end in one) */
    if (len && p[0] != '\r')
        return HTTP_PARSE_BAD;
    if (len < 2)
        return HTTP_PARSE_MORE;
    return p[1] == '\n' ? HTTP_PARSE_OK : HTTP_PARSE_BAD;
}

enum http_parse http_trailer_line(const char *p, size_t len, size_t *next, bool *last)
{
    enum http_parse st = line_end(p, len, 0, next);
    if (st == HTTP_PARSE_OK)
        *last = *next == 1 || (*next == 2 && p[0] == '\r');
    return st;
}

/* Walk a chunked body at p[0..len): *end is where the message ends, *body_len the data size.
 * Returns MORE, OK, BAD or BODY_BIG. When compact is set, the data is moved to p[0..).
 * Sizes come from the peer: every bound is checked as `size > room`, never as a sum that an
 * attacker's size could wrap around. */
static enum http_parse chunked(char *p, size_t len, size_t max, size_t *end, size_t *body_len,
                               bool compact)
{
    size_t i = 0, out = 0, n;
    enum http_parse st;
    for (;;) {
        uint64_t size;
        st = http_chunk_line(p + i, len - i, &size, &n);
        if (st != HTTP_PARSE_OK)
            return st;
        i += n;
        if (size == 0)
            break;
        if (size > max - out) /* out <= max holds */
            return HTTP_PARSE_BODY_BIG;
        if (len - i <= size) /* the data and at least the first byte after it */
            return HTTP_PARSE_MORE;
        if (compact)
            memmove(p + out, p + i, (size_t)size);
        out += (size_t)size;
        i += (size_t)size;
        st = http_chunk_crlf(p + i, len - i);
        if (st != HTTP_PARSE_OK)
            return st;
        i += 2;
    }
    /* trailers (dropped, but no control bytes in them), then an empty line */
    for (bool last = false; !last; i += n) {
        st = http_trailer_line(p + i, len - i, &n, &last);
        if (st != HTTP_PARSE_OK)
            return st;
    }
    *end = i;
    *body_len = out;
    return HTTP_PARSE_OK;
}

/* What the header fields say about a message's framing. */
struct fields {
    bool chunked;  /* Transfer-Encoding: chunked */
    bool have_len; /* Content-Length, clen */
    uint64_t clen;
    size_t n_host; /* Host fields */
};

/* The header fields of h[i..hend), the block that ends with an empty line, into store (room for
 * HTTP_MAX_HEADERS) and *n. OK, BAD or HDR_BIG. */
static enum http_parse parse_fields(char *h, size_t i, size_t hend, struct http_hdr *store,
                                    size_t *n, struct fields *f)
{
    *f = (struct fields){0};
    *n = 0;
    while (i < hend) {
        if (h[i] == '\n' || (h[i] == '\r' && h[i + 1] == '\n'))
            break;
        size_t ns = i;
        while (i < hend && is_tchar((unsigned char)h[i]))
            i++;
        if (i == ns || h[i] != ':')
            return HTTP_PARSE_BAD; /* also obsolete line folding */
        size_t ne = i++;
        while (h[i] == ' ' || h[i] == '\t')
            i++;
        size_t vs = i;
        if (line_end(h, hend, i, &i) != HTTP_PARSE_OK)
            return HTTP_PARSE_BAD; /* a NUL, DEL or bare CR in the value */
        size_t ve = i - 1;
        while (ve > vs && (h[ve - 1] == '\r' || h[ve - 1] == ' ' || h[ve - 1] == '\t'))
            ve--;
        if (*n == HTTP_MAX_HEADERS)
            return HTTP_PARSE_HDR_BIG;
        struct http_hdr *hd = &store[(*n)++];
        *hd = (struct http_hdr){h + ns, ne - ns, h + vs, ve - vs};
        if (eq_ci(hd->name, hd->name_len, "Content-Length")) {
            uint64_t v = 0;
            if (hd->value_len == 0)
                return HTTP_PARSE_BAD;
            for (size_t k = 0; k < hd->value_len; k++) {
                if (!isdigit((unsigned char)hd->value[k]) || v > UINT64_MAX / 10 - 9)
                    return HTTP_PARSE_BAD;
                v = v * 10 + (uint64_t)(hd->value[k] - '0');
            }
            if (f->have_len && v != f->clen)
                return HTTP_PARSE_BAD;
            f->have_len = true;
            f->clen = v;
        } else if (eq_ci(hd->name, hd->name_len, "Host")) {
            if (++f->n_host > 1)
                return HTTP_PARSE_BAD; /* RFC 9112 3.2 */
        } else if (eq_ci(hd->name, hd->name_len, "Transfer-Encoding")) {
            /* Only a single "chunked" (RFC 9112 6.1): another coding, chunked twice or not
             * last ("chunked, identity") leaves the length unknown. */
            if (f->chunked || !eq_ci(hd->value, hd->value_len, "chunked"))
                return HTTP_PARSE_BAD;
            f->chunked = true;
        }
    }
    return HTTP_PARSE_OK;
}

/* Would Go's url.ParseRequestURI take the target t[0..n)? Every '%' before the query must start
 * an escape of two hex digits, and the target must be "*", start with '/', or have a scheme
 * (a letter, then letters, digits, '+', '-' or '.', then ':'): "foo" is refused. */
static bool target_ok(const char *t, size_t n)
{
    size_t path = 0;
    while (path < n && t[path] != '?')
        path++;
    for (size_t i = 0; i < path; i++)
        if (t[i] == '%' &&
            (n - i < 3 || !isxdigit((unsigned char)t[i + 1]) || !isxdigit((unsigned char)t[i + 2])))
            return false;
    if (t[0] == '/' || (n == 1 && t[0] == '*'))
        return true;
    size_t i = 0;
    while (i < n && (isalpha((unsigned char)t[i]) ||
                     (i && (isdigit((unsigned char)t[i]) || strchr("+-.", t[i])))))
        i++;
    return i > 0 && i < n && t[i] == ':';
}

/* The client sent "Expect: 100-continue" and waits for it before the body. */
static bool wants_continue(const struct http_request *r)
{
    size_t v;
    const char *e = http_header(r, "Expect", &v);
    return e && eq_ci(e, v, "100-continue");
}

enum http_parse http_parse_request(char *p, size_t len, const struct http_limits *lim,
                                   struct http_request *r, size_t *used, bool *expect_continue)
{
    *expect_continue = false;
    /* Leading blank lines are tolerated (RFC 9112 2.2). */
    size_t lead = 0;
    while (lead < len && (p[lead] == '\r' || p[lead] == '\n'))
        lead++;
    if (lead > lim->max_header_bytes)
        return HTTP_PARSE_BAD; /* a flood of them, not a request */
    size_t hend = header_end(p + lead, len - lead);
    if (!hend)
        return len - lead > lim->max_header_bytes ? HTTP_PARSE_HDR_BIG : HTTP_PARSE_MORE;
    if (hend > lim->max_header_bytes)
        return HTTP_PARSE_HDR_BIG;
    char *h = p + lead;
    struct http_hdr *store = r->hdrs;
    memset(r, 0, sizeof(*r));
    r->hdrs = store;
    /* Request line. */
    size_t i = 0;
    while (i < hend && is_tchar((unsigned char)h[i]))
        i++;
    if (i == 0 || h[i] != ' ')
        return HTTP_PARSE_BAD;
    r->method = method_of(h, i);
    size_t t = ++i;
    /* A control byte (a NUL above all) ends nothing: it makes the request bad. */
    while (i < hend && (unsigned char)h[i] > ' ' && h[i] != 0x7f)
        i++;
    if (i == t || h[i] != ' ')
        return HTTP_PARSE_BAD;
    r->target = h + t;
    r->target_len = i - t;
    i++;
    if (hend - i < 8 || memcmp(h + i, "HTTP/", 5) != 0)
        return HTTP_PARSE_BAD;
    if (h[i + 5] != '1' || h[i + 6] != '.' || !isdigit((unsigned char)h[i + 7]))
        return isdigit((unsigned char)h[i + 5]) ? HTTP_PARSE_VERSION : HTTP_PARSE_BAD;
    r->minor = h[i + 7] - '0';
    i += 8;
    if (h[i] == '\r')
        i++;
    if (h[i] != '\n')
        return HTTP_PARSE_BAD;
    i++;
    /* Before the header fields, as Go reads the request line and its URI first. */
    if (!target_ok(r->target, r->target_len))
        return HTTP_PARSE_BAD_URI;
    struct fields f;
    enum http_parse st = parse_fields(h, i, hend, r->hdrs, &r->n_hdrs, &f);
    if (st != HTTP_PARSE_OK)
        return st;
    if (!f.n_host && r->minor >= 1 && lim->host_required)
        return HTTP_PARSE_NO_HOST;
    /* Both framings (RFC 9112 6.1): chunked wins, as in Go, and the connection closes after
     * the answer, so bytes a proxy took for this body can never be read as a request. */
    r->must_close = f.chunked && (f.have_len || r->minor == 0);
    size_t hdr_total = lead + hend;
    size_t blen;
    if (f.chunked) {
        size_t end;
        enum http_parse c =
            chunked(p + hdr_total, len - hdr_total, lim->max_body_bytes, &end, &blen, false);
        if (c == HTTP_PARSE_MORE) {
            *expect_continue = wants_continue(r);
            return HTTP_PARSE_MORE;
        }
        if (c != HTTP_PARSE_OK)
            return c;
        chunked(p + hdr_total, len - hdr_total, lim->max_body_bytes, &end, &blen, true);
        r->body = p + hdr_total;
        r->body_len = blen;
        *used = hdr_total + end;
        return HTTP_PARSE_OK;
    }
    if (f.clen > lim->max_body_bytes)
        return HTTP_PARSE_BODY_BIG;
    blen = (size_t)f.clen;
    if (len - hdr_total < blen) {
        *expect_continue = wants_continue(r);
        return HTTP_PARSE_MORE;
    }
    r->body = p + hdr_total;
    r->body_len = blen;
    *used = hdr_total + blen;
    return HTTP_PARSE_OK;
}
enum http_parse http_parse_response(char *p, size_t len, size_t max_header_bytes, bool head,
                                    struct http_response *r, size_t *used)
{
    size_t hend = header_end(p, len);
    if (!hend)
        return len > max_header_bytes ? HTTP_PARSE_HDR_BIG : HTTP_PARSE_MORE;
    if (hend > max_header_bytes)
        return HTTP_PARSE_HDR_BIG;
    struct http_hdr *store = r->hdrs;
    memset(r, 0, sizeof(*r));
    r->hdrs = store;
    /* Status line: HTTP/1.x SP 3DIGIT [SP reason-phrase] CRLF (the reason may be empty). */
    if (hend < 13 || memcmp(p, "HTTP/", 5) != 0)
        return HTTP_PARSE_BAD;
    if (p[5] != '1' || p[6] != '.' || !isdigit((unsigned char)p[7]))
        return isdigit((unsigned char)p[5]) ? HTTP_PARSE_VERSION : HTTP_PARSE_BAD;
    r->minor = p[7] - '0';
    if (p[8] != ' ')
        return HTTP_PARSE_BAD;
    for (size_t k = 9; k < 12; k++) {
        if (!isdigit((unsigned char)p[k]))
            return HTTP_PARSE_BAD;
        r->status = r->status * 10 + (p[k] - '0');
    }
    if (r->status < 100)
        return HTTP_PARSE_BAD;
    size_t i = 12;
    if (p[i] == ' ')
        i++;
    else if (p[i] != '\r' && p[i] != '\n')
        return HTTP_PARSE_BAD;
    r->reason = p + i;
    if (line_end(p, hend, i, &i) != HTTP_PARSE_OK)
        return HTTP_PARSE_BAD;
    r->reason_len = (size_t)(p + i - 1 - r->reason);
    if (r->reason_len && r->reason[r->reason_len - 1] == '\r')
        r->reason_len--;
    struct fields f;
    enum http_parse st = parse_fields(p, i, hend, r->hdrs, &r->n_hdrs, &f);
    if (st != HTTP_PARSE_OK)
        return st;
    /* RFC 9112 6.3: no body after HEAD, 1xx, 204 and 304; then chunked (which wins over a
     * length, and the connection is not reused), a length, or everything until the close. */
    size_t v;
    const char *conn = http_response_header(r, "Connection", &v);
    r->keep_alive = r->minor >= 1 ? !(conn && http_has_token(conn, v, "close"))
                                  : (conn && http_has_token(conn, v, "keep-alive"));
    if (head || r->status < 200 || r->status == 204 || r->status == 304) {
        r->framing = HTTP_BODY_NONE;
    } else if (f.chunked) {
        r->framing = HTTP_BODY_CHUNKED;
        if (f.have_len)
            r->keep_alive = false;
    } else if (f.have_len) {
        r->framing = HTTP_BODY_LENGTH;
        r->content_length = f.clen;
    } else {
        r->framing = HTTP_BODY_CLOSE;
        r->keep_alive = false;
    }
    *used = hend;
    return HTTP_PARSE_OK;
}
