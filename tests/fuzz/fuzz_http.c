/* fuzz_http.c - the HTTP request and response parsers never read or write outside their input,
 * report only what lies inside it, and agree with themselves on prefixes: a prefix of a complete
 * request is never a different complete request, and a response head is never complete before
 * its last byte. */
#include "fuzz.h"
#include "metastore/http.h"

#include <stdlib.h>
#include <string.h>

static const struct http_limits LIM = {.max_header_bytes = 2048, .max_body_bytes = 4096};

static int inside(const char *p, size_t n, const char *base, size_t len)
{
    return n == 0 || (p >= base && p + n <= base + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    static struct http_hdr store[HTTP_MAX_HEADERS];
    struct http_request r = {.hdrs = store};
    size_t used = 0;
    bool cont;
    enum http_parse p = http_parse_request(buf, size, &LIM, &r, &used, &cont);
    if (p == HTTP_PARSE_OK) {
        if (used == 0 || used > size || r.body_len > LIM.max_body_bytes ||
            !inside(r.body, r.body_len, buf, used) || !inside(r.target, r.target_len, buf, used) ||
            r.n_hdrs > HTTP_MAX_HEADERS || r.minor < 0 || r.minor > 9)
            abort();
        for (size_t i = 0; i < r.n_hdrs; i++)
            if (!inside(r.hdrs[i].name, r.hdrs[i].name_len, buf, used) ||
                !inside(r.hdrs[i].value, r.hdrs[i].value_len, buf, used))
                abort();
        /* Shorter prefixes are incomplete (or an error no later byte could fix). */
        if (used <= 1024) {
            for (size_t n = 0; n < used; n++) {
                char *c = malloc(n + 1);
                struct http_request r2 = {.hdrs = store};
                size_t u2;
                if (!c)
                    break;
                memcpy(c, data, n);
                if (http_parse_request(c, n, &LIM, &r2, &u2, &cont) == HTTP_PARSE_OK)
                    abort();
                free(c);
            }
        }
    }
    /* The same bytes as a response head. */
    memcpy(buf, data, size);
    struct http_response resp = {.hdrs = store};
    enum http_parse rp = http_parse_response(buf, size, LIM.max_header_bytes, false, &resp, &used);
    if (rp == HTTP_PARSE_OK) {
        if (used == 0 || used > size || used > LIM.max_header_bytes || resp.status < 100 ||
            resp.status > 999 || !inside(resp.reason, resp.reason_len, buf, used) ||
            resp.n_hdrs > HTTP_MAX_HEADERS || (resp.framing == HTTP_BODY_CLOSE && resp.keep_alive))
            abort();
        for (size_t i = 0; i < resp.n_hdrs; i++)
            if (!inside(resp.hdrs[i].name, resp.hdrs[i].name_len, buf, used) ||
                !inside(resp.hdrs[i].value, resp.hdrs[i].value_len, buf, used))
                abort();
        struct http_response r2 = {.hdrs = store};
        size_t u2;
        memcpy(buf, data, used);
        if (http_parse_response(buf, used - 1, LIM.max_header_bytes, false, &r2, &u2) ==
            HTTP_PARSE_OK)
            abort();
    }
    free(buf);
    return 0;
}
