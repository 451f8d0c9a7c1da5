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

const char *http_header(const struct http_request *r, const char *name, size_t *len)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        if (eq_ci(r->hdrs[i].name, r->hdrs[i].name_len, name)) {
            *len = r->hdrs[i].value_len;
            return r->hdrs[i].value;
        }
    }
    *len = 0;
    return NULL;
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

/* Walk a chunked body at p[0..len): *end is where the message ends, *body_len the data size.
 * Returns MORE, OK, BAD or BODY_BIG. When compact is set, the data is moved to p[0..).
 * Sizes come from the peer: every bound is checked as `size > room`, never as a sum that an
 * attacker's size could wrap around. */
static enum http_parse chunked(char *p, size_t len, size_t max, size_t *end, size_t *body_len,
                               bool compact)
{
    size_t i = 0, out = 0;
    enum http_parse st;
    for (;;) {
        /* chunk-size [BWS ; ext] CRLF: nothing but whitespace or an extension may follow the
         * digits ("0x12" is an error, not a last chunk). */
        size_t s = i;
        uint64_t size = 0;
        while (i < len && isxdigit((unsigned char)p[i])) {
            if (size > (UINT64_MAX >> 4))
                return HTTP_PARSE_BAD;
            int c = (unsigned char)p[i];
            size = size * 16 + (uint64_t)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
            i++;
        }
        if (i == len)
            return len - s > CHUNK_LINE_MAX ? HTTP_PARSE_BAD : HTTP_PARSE_MORE;
        if (i == s)
            return HTTP_PARSE_BAD;
        while (i < len && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i < len && p[i] != ';' && p[i] != '\r' && p[i] != '\n')
            return HTTP_PARSE_BAD;
        st = line_end(p, len, i, &i);
        if (st != HTTP_PARSE_OK)
            return st == HTTP_PARSE_MORE && len - s > CHUNK_LINE_MAX ? HTTP_PARSE_BAD : st;
        if (i - s > CHUNK_LINE_MAX)
            return HTTP_PARSE_BAD;
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
        /* CRLF after the data, a bare LF is an error (as in Go; a size line may end in one) */
        if (p[i] != '\r')
            return HTTP_PARSE_BAD;
        if (++i == len)
            return HTTP_PARSE_MORE;
        if (p[i] != '\n')
            return HTTP_PARSE_BAD;
        i++;
    }
    /* trailers (dropped, but no control bytes in them), then an empty line */
    for (;;) {
        size_t s = i;
        st = line_end(p, len, i, &i);
        if (st != HTTP_PARSE_OK)
            return st;
        if (i - s == 1 || (i - s == 2 && p[s] == '\r'))
            break;
    }
    *end = i;
    *body_len = out;
    return HTTP_PARSE_OK;
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
    /* Header fields. */
    bool is_chunked = false, have_len = false;
    uint64_t clen = 0;
    size_t n_host = 0;
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
        if (r->n_hdrs == HTTP_MAX_HEADERS)
            return HTTP_PARSE_HDR_BIG;
        struct http_hdr *hd = &r->hdrs[r->n_hdrs++];
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
            if (have_len && v != clen)
                return HTTP_PARSE_BAD;
            have_len = true;
            clen = v;
        } else if (eq_ci(hd->name, hd->name_len, "Host")) {
            if (++n_host > 1)
                return HTTP_PARSE_BAD; /* RFC 9112 3.2 */
        } else if (eq_ci(hd->name, hd->name_len, "Transfer-Encoding")) {
            /* Only a single "chunked" (RFC 9112 6.1): another coding, chunked twice or not
             * last ("chunked, identity") leaves the length unknown. */
            if (is_chunked || !eq_ci(hd->value, hd->value_len, "chunked"))
                return HTTP_PARSE_BAD;
            is_chunked = true;
        }
    }
    if (!n_host && r->minor >= 1 && lim->host_required)
        return HTTP_PARSE_NO_HOST;
    /* Both framings (RFC 9112 6.1): chunked wins, as in Go, and the connection closes after
     * the answer, so bytes a proxy took for this body can never be read as a request. */
    r->must_close = is_chunked && (have_len || r->minor == 0);
    size_t hdr_total = lead + hend;
    size_t blen;
    if (is_chunked) {
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
    if (clen > lim->max_body_bytes)
        return HTTP_PARSE_BODY_BIG;
    blen = (size_t)clen;
    if (len - hdr_total < blen) {
        *expect_continue = wants_continue(r);
        return HTTP_PARSE_MORE;
    }
    r->body = p + hdr_total;
    r->body_len = blen;
    *used = hdr_total + blen;
    return HTTP_PARSE_OK;
}