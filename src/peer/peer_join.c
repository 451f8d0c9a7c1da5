/* peer_join.c - a joining member asks the cluster for its members (etcd's
 * GetClusterFromRemotePeers): one blocking GET /members per URL, before the loop runs, every
 * step bounded by the deadline. */
#include "peer_int.h"

#include "metastore/clock.h"
#include "metastore/http.h"
#include "metastore/log.h"
#include "metastore/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MEMBERS_MAX_BYTES (1u << 20)

struct fetch {
    int fd;
    struct tls_conn *tls;
    uint64_t deadline_ms;
};

/* Wait until fd is ready for events, at most until the deadline. */
static bool wait_fd(const struct fetch *f, short events)
{
    for (;;) {
        uint64_t now = clock_now_ms();
        if (now >= f->deadline_ms)
            return false;
        struct pollfd q = {.fd = f->fd, .events = events};
        int r = poll(&q, 1, (int)(f->deadline_ms - now));
        if (r > 0)
            return true;
        if (r == 0 || errno != EINTR)
            return false;
    }
}

static bool connect_to(struct fetch *f, const struct peer_url *u)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, u->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(u->port);
        len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, u->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(u->port);
        len = sizeof(*a6);
    } else {
        return false;
    }
    f->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->fd < 0)
        return false;
    if (connect(f->fd, (struct sockaddr *)&ss, len) != 0) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (errno != EINPROGRESS || !wait_fd(f, POLLOUT) ||
            getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
            return false;
    }
    return true;
}

static bool handshake(struct fetch *f)
{
    for (;;) {
        enum tls_step st = tls_handshake(f->tls);
        if (st == TLS_DONE)
            return true;
        if (st == TLS_FAILED || !wait_fd(f, st == TLS_WANT_WRITE ? POLLOUT : POLLIN))
            return false;
    }
}

static bool write_all(struct fetch *f, const char *p, size_t n)
{
    while (n) {
        ssize_t w = f->tls ? tls_write(f->tls, p, n) : write(f->fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        bool out = f->tls ? tls_wants_write(f->tls) : true;
        if (w < 0 && errno == EINTR)
            continue;
        if (w == 0 || errno != EAGAIN || !wait_fd(f, out ? POLLOUT : POLLIN))
            return false;
    }
    return true;
}

/* Read until the end of the stream (the request asked to close), at most cap bytes. */
static bool read_all(struct fetch *f, struct buf *out, size_t cap)
{
    char piece[16384];
    for (;;) {
        ssize_t r =
            f->tls ? tls_read(f->tls, piece, sizeof(piece)) : read(f->fd, piece, sizeof(piece));
        if (r > 0) {
            if (out->len + (size_t)r > cap)
                return false;
            buf_append(out, piece, (size_t)r);
            if (buf_failed(out))
                return false;
            continue;
        }
        if (r == 0)
            return true;
        if (errno == EINTR)
            continue;
        bool wr = f->tls && tls_wants_write(f->tls);
        if (errno != EAGAIN || !wait_fd(f, wr ? POLLOUT : POLLIN))
            return false;
    }
}

/* One URL: the answer's body and cluster ID, or false with why. */
static bool fetch_one(const char *url, struct tls_ctx *tls, uint32_t timeout_ms,
                      uint64_t *cluster_id, struct buf *body, const char **why)
{
    struct peer_url u;
    struct fetch f = {.fd = -1, .deadline_ms = clock_now_ms() + timeout_ms};
    struct buf in;
    bool ok = false;
    buf_init(&in);
    *why = "cannot connect";
    if (!peer_url_parse(url, &u)) {
        *why = "not a peer URL";
        return false;
    }
    if (u.https && !tls) {
        *why = "an https URL, but no peer TLS is configured";
        return false;
    }
    if (!connect_to(&f, &u))
        goto out;
    if (u.https && (!(f.tls = tls_connect(tls, f.fd, u.host)) || !handshake(&f))) {
        *why = f.tls ? tls_why(f.tls) : "out of memory";
        goto out;
    }
    char req[256];
    int n =
        snprintf(req, sizeof(req),
                 "GET " PEER_MEMBERS_PATH " HTTP/1.1\r\nHost: %s:%u\r\nConnection: close\r\n\r\n",
                 u.host, (unsigned)u.port);
    *why = "no answer in time";
    if (!write_all(&f, req, (size_t)n) || !read_all(&f, &in, MEMBERS_MAX_BYTES))
        goto out;
    struct http_hdr hdrs[HTTP_MAX_HEADERS];
    struct http_response resp = {.hdrs = hdrs};
    size_t used, vl;
    const char *cid;
    *why = "not an HTTP answer";
    if (http_parse_response((char *)in.p, in.len, MEMBERS_MAX_BYTES, false, &resp, &used) !=
            HTTP_PARSE_OK ||
        resp.framing == HTTP_BODY_CHUNKED)
        goto out;
    if (resp.status != 200) {
        *why = "refused";
        goto out;
    }
    *why = "no cluster ID in the answer";
    if (!(cid = http_response_header(&resp, "X-Etcd-Cluster-ID", &vl)) ||
        !peer_hex_parse(cid, vl, cluster_id))
        goto out;
    size_t blen = in.len - used;
    *why = "a truncated answer";
    if (resp.framing == HTTP_BODY_LENGTH && resp.content_length != blen)
        goto out;
    buf_append(body, in.p + used, blen);
    ok = !buf_failed(body);
out:
    tls_conn_free(f.tls);
    if (f.fd >= 0)
        close(f.fd);
    buf_fini(&in);
    return ok;
}

ms_err peer_fetch_members(const char *const *urls, size_t n, struct tls_ctx *tls,
                          uint32_t timeout_ms, uint64_t *cluster_id, struct buf *body)
{
    for (size_t i = 0; i < n; i++) {
        const char *why;
        body->len = 0;
        if (fetch_one(urls[i], tls, timeout_ms, cluster_id, body, &why))
            return MS_OK;
        if (buf_failed(body))
            return MS_E_NOMEM;
        log_warn("cannot get the cluster's members from %s: %s", urls[i], why);
    }
    return MS_E_IO;
}
