/* faultwatch.c - watches over the gateway for the fault campaign (see faultwatch.h): one
 * request on a fresh connection, the answer's chunked body cut into '\n'-separated messages,
 * each message turned into a wc_watch response. */
#define _GNU_SOURCE /* memmem */
#include "faultwatch.h"

#include "metastore/b64.h"
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (8u << 20) /* a message longer than this ends the stream */
#define EVENTS_MAX     4096       /* events in one message */

/* A stream being read: raw bytes, the decoded body, where its next line starts. */
struct stream {
    int fd;
    int status;
    bool head_done, chunked, eof;
    size_t chunk_left;
    bool chunk_crlf;
    char *raw;
    size_t raw_len, raw_cap;
    char *body;
    size_t body_len, body_cap, body_off;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    char *n = realloc(*p, c);
    if (!n)
        return false;
    *p = n;
    *cap = c;
    return true;
}

static int stream_open(struct stream *s, int port, const char *body)
{
    memset(s, 0, sizeof(*s));
    s->fd = tu_connect(port);
    if (s->fd < 0)
        return -1;
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "POST /v3/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n",
                     strlen(body));
    tu_send_all(s->fd, head, (size_t)n);
    tu_send_all(s->fd, body, strlen(body));
    return 0;
}

static void stream_close(struct stream *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->raw);
    free(s->body);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

/* Move what can be decoded from raw into body (head, then chunks or plain bytes). */
static bool decode(struct stream *s)
{
    size_t off = 0;
    if (!s->head_done) {
        char *end = memmem(s->raw, s->raw_len, "\r\n\r\n", 4);
        if (!end)
            return s->raw_len < 65536;
        size_t hl = (size_t)(end - s->raw) + 4;
        if (sscanf(s->raw, "HTTP/1.1 %d", &s->status) != 1)
            return false;
        char *h = strndup(s->raw, hl);
        if (!h)
            return false;
        for (char *p = h; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        s->chunked = strstr(h, "transfer-encoding: chunked") != NULL;
        free(h);
        s->head_done = true;
        off = hl;
    }
    while (off < s->raw_len) {
        if (!s->chunked) {
            size_t n = s->raw_len - off;
            if (!grow(&s->body, &s->body_cap, s->body_len + n + 1))
                return false;
            memcpy(s->body + s->body_len, s->raw + off, n);
            s->body_len += n;
            off += n;
        } else if (s->chunk_crlf) {
            if (s->raw_len - off < 2)
                break;
            off += 2;
            s->chunk_crlf = false;
        } else if (s->chunk_left) {
            size_t n = s->raw_len - off < s->chunk_left ? s->raw_len - off : s->chunk_left;
            if (!grow(&s->body, &s->body_cap, s->body_len + n + 1))
                return false;
            memcpy(s->body + s->body_len, s->raw + off, n);
            s->body_len += n;
            off += n;
            s->chunk_left -= n;
            s->chunk_crlf = s->chunk_left == 0;
        } else {
            char *nl = memmem(s->raw + off, s->raw_len - off, "\r\n", 2);
            if (!nl)
                break;
            unsigned long size = strtoul(s->raw + off, NULL, 16);
            off = (size_t)(nl - s->raw) + 2;
            if (size == 0) {
                s->eof = true;
                break;
            }
            s->chunk_left = size;
        }
    }
    memmove(s->raw, s->raw + off, s->raw_len - off);
    s->raw_len -= off;
    if (s->body)
        s->body[s->body_len] = 0;
    return true;
}

/* The next whole message (a NUL-terminated line inside body), reading until deadline_ms; NULL
 * at the deadline, at the end of the stream or on an error. */
static char *next_line(struct stream *s, uint64_t deadline_ms)
{
    for (;;) {
        if (s->body_off < s->body_len) {
            char *start = s->body + s->body_off;
            char *nl = memchr(start, '\n', s->body_len - s->body_off);
            if (nl) {
                *nl = 0;
                s->body_off = (size_t)(nl - s->body) + 1;
                if (s->body_off == s->body_len) {
                    s->body_off = s->body_len = 0; /* start is still valid: nothing moves */
                }
                return start;
            }
            if (s->body_len - s->body_off > LINE_MAX_BYTES)
                return NULL;
            if (s->body_off) {
                memmove(s->body, s->body + s->body_off, s->body_len - s->body_off);
                s->body_len -= s->body_off;
                s->body_off = 0;
            }
        }
        if (s->eof || s->fd < 0)
            return NULL;
        uint64_t now = mono_ms();
        if (now >= deadline_ms)
            return NULL;
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(deadline_ms - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL;
        if (!grow(&s->raw, &s->raw_cap, s->raw_len + 65536))
            return NULL;
        ssize_t n = recv(s->fd, s->raw + s->raw_len, 65536, 0);
        if (n <= 0) {
            s->eof = true;
            continue;
        }
        s->raw_len += (size_t)n;
        if (!decode(s))
            return NULL;
    }
}

/* The string value of "field":"..." within [p, end), decoded from base64 into out (room for
 * cap bytes) when b64, else copied. Its length, or -1 without one. */
static long field_str(const char *p, const char *end, const char *field, bool b64, char *out,
                      size_t cap)
{
    char pat[40];
    snprintf(pat, sizeof(pat), "\"%s\":\"", field);
    const char *f = memmem(p, (size_t)(end - p), pat, strlen(pat));
    if (!f)
        return -1;
    f += strlen(pat);
    const char *q = memchr(f, '"', (size_t)(end - f));
    if (!q)
        return -1;
    size_t n = (size_t)(q - f), len, bad;
    if (!b64) {
        if (n >= cap)
            return -1;
        memcpy(out, f, n);
        out[n] = 0;
        return (long)n;
    }
    if (n / 4 * 3 + 3 > cap || b64_decode(f, n, (uint8_t *)out, &len, &bad) != 0)
        return -1;
    out[len] = 0;
    return (long)len;
}

static int64_t field_num(const char *p, const char *end, const char *field)
{
    char num[32];
    return field_str(p, end, field, false, num, sizeof(num)) > 0 ? strtoll(num, NULL, 10) : 0;
}

/* The events of one message into evs (keys and values in the two buffers, which must outlive
 * the copy into a watch or truth). Their count, or -1 if a message is not understood. */
static long parse_events(const char *line, struct wc_event *evs, char *keys, char *values,
                         size_t room)
{
    const char *p = strstr(line, "\"events\":[");
    long n = 0;
    size_t ko = 0, vo = 0;
    if (!p)
        return 0;
    const char *prev = p;
    while (n < EVENTS_MAX && (p = strstr(p, "\"kv\":{"))) {
        const char *kv = p + 5, *end = strchr(kv, '}');
        if (!end)
            return -1;
        struct wc_event *e = &evs[n];
        memset(e, 0, sizeof(*e));
        e->type = memmem(prev, (size_t)(kv - prev), "\"type\":\"DELETE\"", 15) ? WC_DELETE : WC_PUT;
        long kl = field_str(kv, end, "key", true, keys + ko, room - ko);
        long vl = field_str(kv, end, "value", false, values + vo, room - vo);
        if (kl <= 0 || room - ko < 1024 || room - vo < 1024)
            return -1;
        e->key = keys + ko;
        e->key_len = (size_t)kl;
        ko += (size_t)kl + 1;
        if (vl > 0) {
            e->value = values + vo;
            e->value_len = (size_t)vl;
            vo += (size_t)vl + 1;
        }
        e->mod_revision = field_num(kv, end, "mod_revision");
        e->create_revision = field_num(kv, end, "create_revision");
        e->version = field_num(kv, end, "version");
        e->lease = field_num(kv, end, "lease");
        e->revision = e->mod_revision;
        n++;
        prev = p = end;
    }
    return n;
}

struct scratch {
    struct wc_event evs[EVENTS_MAX];
    char keys[1u << 20];
    char values[1u << 20];
};

/* Add one message to w; -1 if the watch ends here. */
static int add_message(struct wc_watch *w, const char *line, struct scratch *sc, int64_t *seen)
{
    int64_t rev = tu_json_num(line, "revision", 0);
    if (seen && rev > *seen)
        *seen = rev;
    if (strstr(line, "\"canceled\":true"))
        return wc_watch_add_cancel(w, rev, tu_json_num(line, "compact_revision", 0)), -1;
    if (!strstr(line, "\"result\":"))
        return -1; /* an error: the stream ends */
    long n = parse_events(line, sc->evs, sc->keys, sc->values, sizeof(sc->keys));
    if (n < 0)
        return -1;
    if (n == 0 && !strstr(line, "\"created\":true"))
        return wc_watch_add_progress(w, rev);
    return n ? wc_watch_add_events(w, rev, sc->evs, (size_t)n) : 0;
}

static void watch_body(char *body, size_t cap, const char *key, const char *range_end,
                       int64_t start)
{
    char k64[256], e64[256];
    tu_b64(key, k64);
    int o = snprintf(body, cap, "{\"create_request\":{\"key\":\"%s\"", k64);
    if (range_end) {
        tu_b64(range_end, e64);
        o += snprintf(body + o, cap - (size_t)o, ",\"range_end\":\"%s\"", e64);
    }
    if (start > 0)
        o += snprintf(body + o, cap - (size_t)o, ",\"start_revision\":\"%" PRId64 "\"", start);
    snprintf(body + o, cap - (size_t)o, ",\"progress_notify\":true}}");
}

int fw_record(int port, const char *key, const char *range_end, int64_t start, int ms,
              struct wc_watch *w, int64_t *seen)
{
    struct stream s;
    char body[1024];
    memset(w, 0, sizeof(*w));
    watch_body(body, sizeof(body), key, range_end, start);
    if (stream_open(&s, port, body) != 0)
        return -1;
    struct scratch *sc = malloc(sizeof(*sc));
    uint64_t deadline = mono_ms() + (uint64_t)ms;
    char *line = sc ? next_line(&s, deadline) : NULL;
    int rc = -1;
    if (line && s.status == 200 && strstr(line, "\"created\":true") &&
        !strstr(line, "\"canceled\":true")) {
        int64_t created = tu_json_num(line, "revision", 0);
        if (seen && created > *seen)
            *seen = created;
        const char *end = range_end ? range_end : "";
        if (wc_watch_init(w, key, strlen(key), end, strlen(end), start ? start : created + 1) ==
            0) {
            rc = 0;
            while ((line = next_line(&s, deadline)) && add_message(w, line, sc, seen) == 0) {
            }
        }
    }
    free(sc);
    stream_close(&s);
    return rc;
}

int fw_truth(int port, int64_t from, int64_t to, int timeout_ms, struct wc_truth *t,
             int64_t *compacted)
{
    struct stream s;
    char body[1024];
    wc_truth_init(t);
    *compacted = 0;
    /* Every key: from the smallest key on ("\0" as range_end: every key >= key). */
    snprintf(body, sizeof(body),
             "{\"create_request\":{\"key\":\"AA==\",\"range_end\":\"AA==\",\"start_revision\":"
             "\"%" PRId64 "\"}}",
             from);
    if (stream_open(&s, port, body) != 0)
        return -1;
    struct scratch *sc = malloc(sizeof(*sc));
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    int64_t last = from - 1;
    char *line;
    while (sc && last < to && (line = next_line(&s, deadline))) {
        if (strstr(line, "\"canceled\":true")) {
            *compacted = tu_json_num(line, "compact_revision", 0);
            break;
        }
        long n = parse_events(line, sc->evs, sc->keys, sc->values, sizeof(sc->keys));
        if (n < 0)
            break;
        for (long i = 0; i < n; i++) {
            if (wc_truth_add(t, &sc->evs[i]) != 0)
                break;
            last = sc->evs[i].revision;
        }
    }
    free(sc);
    stream_close(&s);
    return last >= to ? 0 : -1;
}
