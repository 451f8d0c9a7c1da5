/* watch_bench.c - watch fan-out benchmark for any etcd v3 server (metastore or etcd), through
 * its JSON gateway or, with --grpc, through gRPC (the door in watch_bench_grpc.c).
 *
 * Opens --streams watch streams holding --watchers watchers in total, all on one key, then
 * writes --puts puts to that key over --conns keep-alive connections (at most --window
 * requests in flight on each, optionally paced to --rate puts/s). Each value carries the
 * client's monotonic send time, so every delivered event gives one latency sample. Reports
 * events delivered per second (from the first put sent to the last event received), latency
 * percentiles, and, with --pid, the server's resident memory per watcher (VmRSS after the
 * streams are open minus before, divided by the watchers).
 *
 * This file holds the driver and the gateway's door (HTTP/1.1, one watch stream per
 * connection, puts by POST /v3/kv/put). One thread, one epoll loop, loopback only. Every wait
 * is bounded by --timeout.
 */
#define _GNU_SOURCE
#include "watch_bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metastore/b64.h"

#define KEY_B64    "YmVuY2gva2V5" /* WB_KEY, "bench/key" */
#define LAT_BUCKET 10000          /* ns per histogram bucket (10 us) */
#define LAT_MAX    1000000        /* buckets: 10 s */

/* ---- shared with the gRPC door ---- */

uint64_t wb_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void wb_die(const char *what)
{
    perror(what);
    exit(1);
}

int wb_dial(const struct wb_opts *o)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        wb_die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
        fprintf(stderr, "watch_bench: --host must be an IPv4 address\n");
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        wb_die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

bool wb_read(int fd, void (*take)(void *arg, const uint8_t *p, size_t n), void *arg)
{
    uint8_t buf[262144];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n <= 0)
            return false;
        take(arg, buf, (size_t)n);
        if ((size_t)n < sizeof(buf))
            return true;
    }
}

static uint32_t *lat;
static long lat_n;
static uint64_t last_event_ns;

void wb_event(uint64_t now, const char *p, size_t n)
{
    char txt[32];
    uint64_t sent = 0;
    if (n && n < sizeof(txt)) {
        memcpy(txt, p, n);
        txt[n] = 0;
        sent = strtoull(txt, NULL, 10);
    }
    uint64_t b = now > sent ? (now - sent) / LAT_BUCKET : 0;
    lat[b < LAT_MAX ? b : LAT_MAX - 1]++;
    lat_n++;
    last_event_ns = now;
}

static long percentile(double q)
{
    long want = (long)(q * (double)lat_n), seen = 0;
    for (long b = 0; b < LAT_MAX; b++) {
        seen += lat[b];
        if (seen > want)
            return b * (LAT_BUCKET / 1000); /* microseconds */
    }
    return LAT_MAX * (LAT_BUCKET / 1000);
}

static long rss_kb(int pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* ---- the gateway's door ---- */

struct conn {
    int fd;
    bool stream;
    char *in;
    size_t in_len;
    size_t in_cap;
    /* stream */
    long watchers;
    long created;
    long events;
    /* put connection */
    long inflight;
    char *out;
    size_t out_len;
    size_t out_off;
};

static struct conn *gw_streams, *gw_puts;

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            wb_die("send");
        p += w;
        n -= (size_t)w;
    }
}

static void append(char **b, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 65536;
        while (nc < *len + n + 1)
            nc *= 2;
        *b = realloc(*b, nc);
        if (!*b)
            wb_die("realloc");
        *cap = nc;
    }
    memcpy(*b + *len, p, n);
    *len += n;
    (*b)[*len] = 0;
}

/* The send time carried by a value: base64 of its decimal text. */
static void value_event(uint64_t now, const char *p, const char *end)
{
    const char *q = memchr(p, '"', (size_t)(end - p));
    uint8_t txt[64];
    size_t n = 0, off;
    if (!q || (size_t)(q - p) > 80 || b64_decode(p, (size_t)(q - p), txt, &n, &off) != 0)
        n = 0;
    wb_event(now, (const char *)txt, n);
}

/* Count created responses and events in the complete lines of a stream's input. */
static void scan_stream(struct conn *c)
{
    char *nl = c->in_len ? memrchr(c->in, '\n', c->in_len) : NULL;
    if (!nl)
        return;
    char *end = nl + 1;
    uint64_t now = wb_now_ns();
    for (char *p = c->in; (p = memmem(p, (size_t)(end - p), "\"created\":true", 14)); p += 14)
        c->created++;
    for (char *p = c->in; (p = memmem(p, (size_t)(end - p), "\"value\":\"", 9)); p += 9) {
        value_event(now, p + 9, end);
        c->events++;
    }
    size_t rest = c->in_len - (size_t)(end - c->in);
    memmove(c->in, end, rest);
    c->in_len = rest;
}

/* Count complete put answers (status 200, Content-Length bodies). */
static long scan_puts(struct conn *c)
{
    long done = 0;
    size_t off = 0;
    for (;;) {
        char *e = memmem(c->in + off, c->in_len - off, "\r\n\r\n", 4);
        if (!e)
            break;
        if (strncmp(c->in + off, "HTTP/1.1 200", 12) != 0) {
            fprintf(stderr, "watch_bench: put failed: %.200s\n", c->in + off);
            exit(1);
        }
        char *cl = strcasestr(c->in + off, "Content-Length:");
        size_t hl = (size_t)(e - (c->in + off)) + 4;
        size_t bl = cl && cl < e ? strtoul(cl + 15, NULL, 10) : 0;
        if (c->in_len - off < hl + bl)
            break;
        off += hl + bl;
        done++;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return done;
}

static void queue_put(struct conn *c)
{
    char ts[32], val[48], req[512];
    snprintf(ts, sizeof(ts), "%" PRIu64, wb_now_ns());
    val[b64_encode((const uint8_t *)ts, strlen(ts), val)] = 0;
    char body[160];
    int bl = snprintf(body, sizeof(body), "{\"key\":\"" KEY_B64 "\",\"value\":\"%s\"}", val);
    int n = snprintf(req, sizeof(req),
                     "POST /v3/kv/put HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n%s", bl,
                     body);
    if (c->out_off == c->out_len)
        c->out_len = c->out_off = 0;
    size_t cap = c->out_len + (size_t)n + 1;
    c->out = realloc(c->out, cap);
    if (!c->out)
        wb_die("realloc");
    memcpy(c->out + c->out_len, req, (size_t)n);
    c->out_len += (size_t)n;
    c->inflight++;
}

static void flush_out(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (w <= 0)
            wb_die("send");
        c->out_off += (size_t)w;
    }
}

static void take_input(void *arg, const uint8_t *p, size_t n)
{
    struct conn *c = arg;
    append(&c->in, &c->in_len, &c->in_cap, (const char *)p, n);
}

static bool read_conn(struct conn *c)
{
    return wb_read(c->fd, take_input, c);
}

/* Open the streams in batches (a burst of connects would overflow the listen backlog) and
 * wait until every watcher is created. */
static void gw_open_watchers(const struct wb_opts *o, int ep, uint64_t deadline)
{
    struct conn *s = gw_streams = calloc((size_t)o->streams, sizeof(*s));
    if (!s)
        wb_die("calloc");
    for (long base = 0; base < o->streams; base += 200) {
        long end = base + 200 < o->streams ? base + 200 : o->streams;
        for (long i = base; i < end; i++) {
            struct conn *c = &s[i];
            c->stream = true;
            c->fd = wb_dial(o);
            c->watchers = o->watchers / o->streams + (i < o->watchers % o->streams);
            size_t cap = (size_t)c->watchers * 64 + 64, n = 0;
            char *body = malloc(cap);
            if (!body)
                wb_die("malloc");
            for (long w = 0; w < c->watchers; w++)
                n += (size_t)snprintf(body + n, cap - n, "{\"create_request\":{\"key\":\"%s\"}}",
                                      KEY_B64);
            char hdr[128];
            int hl = snprintf(
                hdr, sizeof(hdr),
                "POST /v3/watch HTTP/1.1\r\nHost: bench\r\nContent-Length: %zu\r\n\r\n", n);
            send_all(c->fd, hdr, (size_t)hl);
            send_all(c->fd, body, n);
            free(body);
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
                wb_die("epoll_ctl");
        }
        for (long i = base; i < end; i++) {
            struct conn *c = &s[i];
            while (c->created < c->watchers) {
                if (wb_now_ns() > deadline) {
                    fprintf(stderr, "watch_bench: streams not created in time\n");
                    exit(1);
                }
                if (!read_conn(c)) {
                    fprintf(stderr, "watch_bench: stream closed during create\n");
                    exit(1);
                }
                scan_stream(c);
                if (c->created < c->watchers)
                    usleep(200);
            }
        }
    }
}

static void gw_open_putters(const struct wb_opts *o, int ep)
{
    gw_puts = calloc((size_t)o->conns, sizeof(*gw_puts));
    if (!gw_puts)
        wb_die("calloc");
    for (long i = 0; i < o->conns; i++) {
        gw_puts[i].fd = wb_dial(o);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &gw_puts[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, gw_puts[i].fd, &ev) != 0)
            wb_die("epoll_ctl");
    }
}

static long gw_put(const struct wb_opts *o, long i, long max)
{
    struct conn *c = &gw_puts[i];
    long n = 0;
    while (c->inflight < o->window && n < max) {
        queue_put(c);
        n++;
    }
    flush_out(c);
    return n;
}

static bool gw_ready(void *conn, uint32_t epoll_events, long *events, long *acks)
{
    (void)epoll_events;
    struct conn *c = conn;
    if (!read_conn(c))
        return false;
    if (c->stream) {
        long before = c->events;
        scan_stream(c);
        *events += c->events - before;
    } else {
        long k = scan_puts(c);
        c->inflight -= k;
        *acks += k;
    }
    return true;
}

static bool gw_finish(const struct wb_opts *o)
{
    bool ok = true;
    for (long i = 0; i < o->streams; i++) {
        if (ok && gw_streams[i].events != gw_streams[i].watchers * o->puts) {
            fprintf(stderr, "watch_bench: stream %ld got %ld events, want %ld\n", i,
                    gw_streams[i].events, gw_streams[i].watchers * o->puts);
            ok = false;
        }
        close(gw_streams[i].fd);
        free(gw_streams[i].in);
    }
    for (long i = 0; i < o->conns; i++) {
        close(gw_puts[i].fd);
        free(gw_puts[i].in);
        free(gw_puts[i].out);
    }
    free(gw_streams);
    free(gw_puts);
    return ok;
}

const struct wb_door wb_gateway = {
    .open_watchers = gw_open_watchers,
    .open_putters = gw_open_putters,
    .put = gw_put,
    .ready = gw_ready,
    .finish = gw_finish,
};

/* ---- the driver ---- */

static long arg_long(const char *v)
{
    char *e;
    long x = strtol(v, &e, 10);
    if (*e || x < 0) {
        fprintf(stderr, "watch_bench: bad number %s\n", v);
        exit(2);
    }
    return x;
}

static void parse_args(int argc, char **argv, struct wb_opts *o)
{
    *o = (struct wb_opts){.host = "127.0.0.1",
                          .port = 2379,
                          .watchers = 1000,
                          .puts = 1000,
                          .conns = 4,
                          .window = 16,
                          .timeout_s = 120};
    static const char usage[] =
        "usage: watch_bench [--grpc] [--host 127.0.0.1] [--port 2379] [--watchers N] "
        "[--streams S] [--watch-conns C] [--puts M] [--conns K] [--window W] [--rate puts/s] "
        "[--timeout s] [--pid server-pid]\n";
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage, stdout);
            exit(0);
        }
        if (!strcmp(k, "--grpc")) {
            o->grpc = true;
            i--;
            continue;
        }
        if (!v) {
            fprintf(stderr, "watch_bench: %s needs a value\n%s", k, usage);
            exit(2);
        }
        if (!strcmp(k, "--host"))
            o->host = v;
        else if (!strcmp(k, "--port"))
            o->port = (int)arg_long(v);
        else if (!strcmp(k, "--watchers"))
            o->watchers = arg_long(v);
        else if (!strcmp(k, "--streams"))
            o->streams = arg_long(v);
        else if (!strcmp(k, "--watch-conns"))
            o->watch_conns = arg_long(v);
        else if (!strcmp(k, "--puts"))
            o->puts = arg_long(v);
        else if (!strcmp(k, "--conns"))
            o->conns = arg_long(v);
        else if (!strcmp(k, "--window"))
            o->window = arg_long(v);
        else if (!strcmp(k, "--rate"))
            o->rate = arg_long(v);
        else if (!strcmp(k, "--timeout"))
            o->timeout_s = arg_long(v);
        else if (!strcmp(k, "--pid"))
            o->pid = (int)arg_long(v);
        else {
            fprintf(stderr, "watch_bench: unknown option %s\n%s", k, usage);
            exit(2);
        }
    }
    if (!o->streams || o->streams > o->watchers)
        o->streams = o->watchers;
    if (!o->watch_conns || o->watch_conns > o->streams)
        o->watch_conns = o->streams;
    if (!o->watchers || !o->conns || !o->window) {
        fprintf(stderr, "watch_bench: --watchers, --conns and --window must be positive\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    struct wb_opts o;
    parse_args(argc, argv, &o);
    const struct wb_door *door = o.grpc ? &wb_grpc : &wb_gateway;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    lat = calloc(LAT_MAX, sizeof(*lat));
    if (!lat)
        wb_die("calloc");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        wb_die("epoll_create1");
    uint64_t deadline = wb_now_ns() + (uint64_t)o.timeout_s * 1000000000u;

    long rss0 = o.pid ? rss_kb(o.pid) : -1;
    door->open_watchers(&o, ep, deadline);
    usleep(300000); /* let the server settle before sampling its memory */
    long rss1 = o.pid ? rss_kb(o.pid) : -1;

    door->open_putters(&o, ep);
    long sent = 0, acked = 0;
    long want_events = o.watchers * o.puts, got_events = 0;
    uint64_t start = wb_now_ns();
    struct epoll_event evs[256];
    while (got_events < want_events || acked < o.puts) {
        if (wb_now_ns() > deadline) {
            fprintf(stderr, "watch_bench: timeout: %ld/%ld puts acked, %ld/%ld events\n", acked,
                    o.puts, got_events, want_events);
            return 1;
        }
        /* Issue puts: within each connection's window, and at --rate if given. */
        long allowed = o.puts;
        if (o.rate)
            allowed = (long)((double)(wb_now_ns() - start) / 1e9 * (double)o.rate) + 1;
        for (long i = 0; i < o.conns && sent < o.puts && sent < allowed; i++) {
            long max = (allowed < o.puts ? allowed : o.puts) - sent;
            sent += door->put(&o, (sent + i) % o.conns, max);
        }
        int n = epoll_wait(ep, evs, 256, o.rate ? 1 : 50);
        for (int i = 0; i < n; i++) {
            if (!door->ready(evs[i].data.ptr, evs[i].events, &got_events, &acked)) {
                fprintf(stderr, "watch_bench: connection closed by the server\n");
                return 1;
            }
        }
    }
    double secs = (double)(last_event_ns - start) / 1e9;
    long rss2 = o.pid ? rss_kb(o.pid) : -1;
    printf("door=%s watchers=%ld streams=%ld puts=%ld conns=%ld window=%ld rate=%ld\n",
           o.grpc ? "grpc" : "gateway", o.watchers, o.streams, o.puts, o.conns, o.window, o.rate);
    printf("events_delivered=%ld seconds=%.3f events_per_sec=%.0f\n", got_events, secs,
           (double)got_events / secs);
    printf("latency_us p50=%ld p90=%ld p99=%ld p999=%ld max=%ld\n", percentile(0.50),
           percentile(0.90), percentile(0.99), percentile(0.999), percentile(1.0 - 1e-12));
    if (o.pid)
        printf("server_rss_kb before=%ld streams_open=%ld after_run=%ld "
               "rss_per_watcher_bytes=%.0f\n",
               rss0, rss1, rss2, (double)(rss1 - rss0) * 1024.0 / (double)o.watchers);
    bool ok = door->finish(&o);
    free(lat);
    close(ep);
    return ok ? 0 : 1;
}
