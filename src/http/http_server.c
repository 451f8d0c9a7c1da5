/* http_server.c - the HTTP/1.1 server: listeners, accepting, descriptor limits, timeouts.
 *
 * Owns its listeners and connections (http_conn.c runs each one). Connections never take the
 * last descriptors: the soft limit less a margin is kept for the rest of the process, and when
 * descriptors run short idle keep-alive connections are closed, or new ones refused at once.
 * Once a second a sweep closes connections that are too slow or idle too long.
 */
#define _GNU_SOURCE
#include "http_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_PAUSE  100   /* ms without accepting after running out of fds */
#define FD_WARN_MS    10000 /* at most one "out of file descriptors" line this often */
#define RECLAIM_BATCH 16    /* idle connections closed per shortage */
#define RECLAIM_PAUSE 100   /* ms without scanning after a scan found nothing idle */
#define FD_MARGIN     128   /* descriptors kept from connections for storage ... */
#define FD_MARGIN_DIV 4     /* ... or this fraction of a smaller limit */
#define HANDSHAKE_MS  10000 /* handshake_timeout_ms when 0 is given */

/* Out of descriptors: close up to RECLAIM_BATCH connections idle for HTTP_RECLAIM_IDLE_MS,
 * oldest first (a keep-alive connection may be closed at any time, RFC 9112 9.5). Returns how
 * many were closed. A scan walks every connection: after one that found none, there is no
 * other for RECLAIM_PAUSE, so a flood of new clients against busy ones costs no scan each. */
static size_t reclaim_idle(struct http_server *s)
{
    uint64_t now = clock_now_ms();
    if (now < s->reclaim_ms)
        return 0;
    s->reclaim_scans++;
    size_t n = 0;
    for (; n < RECLAIM_BATCH; n++) {
        struct http_conn *old = NULL;
        for (struct http_conn *c = s->conns; c; c = c->next)
            if (http_conn_idle(c) && now - c->idle_ms >= HTTP_RECLAIM_IDLE_MS &&
                (!old || c->idle_ms < old->idle_ms))
                old = c;
        if (!old)
            break;
        http_conn_close_now(old);
    }
    if (!n)
        s->reclaim_ms = now + RECLAIM_PAUSE;
    return n;
}

/* Connections may take descriptors up to the soft limit less a margin: the rest stays free for
 * storage (WAL segments, snapshots, LMDB, defragment, directory syncs), which fails hard
 * without one. The kernel hands out the lowest free descriptor, so a connection whose
 * descriptor is at or above the cap means every one below is taken. */
static void fd_cap_update(struct http_server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > INT_MAX) {
        s->fd_cap = INT_MAX;
        return;
    }
    rlim_t margin =
        rl.rlim_cur / FD_MARGIN_DIV < FD_MARGIN ? rl.rlim_cur / FD_MARGIN_DIV : FD_MARGIN;
    s->fd_cap = (int)(rl.rlim_cur - margin);
}

static void fd_warn(struct http_server *s);

/* A connection got descriptor fd at or above the cap: close idle connections and move it to a
 * freed descriptor, or refuse it. Returns its descriptor, or -1 if refused. */
static int over_cap(struct http_server *s, int fd)
{
    size_t k = reclaim_idle(s);
    s->fd_reclaimed += k;
    int low = k ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    close(fd);
    if (low >= s->fd_cap) {
        close(low);
        low = -1;
    }
    if (low < 0) {
        s->fd_refused++;
        s->refused_total++;
    }
    fd_warn(s);
    return low;
}

/* The reserve descriptor was lost (reopening it failed, as with ENFILE): try again. */
static void reserve_fd_retry(struct http_server *s)
{
    if (s->reserve_fd < 0)
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors and nothing to reclaim: accept one waiting connection on the reserve
 * descriptor and close it, so the client learns at once instead of waiting unseen in the
 * backlog. 1 if one was refused, 0 if none was waiting, -1 if that failed too. */
static int refuse_one(struct http_server *s, int lfd)
{
    if (s->reserve_fd < 0)
        return -1;
    close(s->reserve_fd);
    s->reserve_fd = -1;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    int err = errno;
    if (fd >= 0)
        close(fd);
    reserve_fd_retry(s);
    if (fd >= 0)
        return 1;
    return err == EAGAIN || err == EWOULDBLOCK ? 0 : -1;
}

/* One line per FD_WARN_MS at most, with what happened since the last one. */
static void fd_warn(struct http_server *s)
{
    uint64_t now = clock_now_ms();
    s->fd_short++;
    if (s->fd_warned && now - s->fd_warn_ms < FD_WARN_MS)
        return;
    log_warn("out of file descriptors with %zu connections open: %zu times since the last report, "
             "%zu idle connections closed, %zu new ones refused",
             s->n_conns, s->fd_short, s->fd_reclaimed, s->fd_refused);
    s->fd_warned = true;
    s->fd_warn_ms = now;
    s->fd_short = s->fd_reclaimed = s->fd_refused = 0;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct http_listener *l = arg;
    struct http_server *s = l->srv;
    (void)what;
    for (int burst = 0; burst < 64; burst++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EMFILE || err == ENFILE) {
                size_t k = reclaim_idle(s);
                int refused = k ? 0 : refuse_one(s, lfd);
                s->fd_reclaimed += k;
                s->fd_refused += refused > 0;
                s->refused_total += refused > 0;
                if (k || refused >= 0) {
                    fd_warn(s);
                    if (k || refused > 0)
                        continue;
                    return;
                }
            }
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                /* The listener stays readable: stop polling it for a while, or the loop
                 * spins. Waiting clients stay in the backlog. */
                for (size_t i = 0; i < s->n_listeners; i++)
                    event_del(s->listeners[i].ev);
                struct timeval tv = {0, ACCEPT_PAUSE * 1000};
                event_add(s->accept_ev, &tv);
                fd_warn(s);
            }
            return;
        }
        if (fd >= s->fd_cap && (fd = over_cap(s, fd)) < 0)
            continue;
        if (s->n_conns >= s->lim.max_conns) {
            close(fd);
            continue;
        }
        if (!http_conn_create(s, fd, l->tls))
            close(fd);
    }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    reserve_fd_retry(s);
    for (size_t i = 0; i < s->n_listeners; i++)
        event_add(s->listeners[i].ev, NULL);
}

/* Once a second: connections that are too slow or idle too long go. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd;
    (void)what;
    uint64_t now = clock_now_ms();
    reserve_fd_retry(s);
    fd_cap_update(s); /* the limit may have been changed from outside (prlimit) */
    struct http_conn *c = s->conns;
    while (c) {
        struct http_conn *next = c->next;
        bool out_stuck = c->out.len > c->out_off && now - c->progress_ms > s->lim.write_timeout_ms;
        bool read_slow = !http_conn_has_request(c) && c->started_ms &&
                         now - c->started_ms > s->lim.read_timeout_ms;
        bool idle = http_conn_idle(c) && now - c->idle_ms > s->lim.idle_timeout_ms;
        bool lingered = c->state == HTTP_CONN_LINGERING && now >= c->linger_end_ms;
        bool hs_slow =
            c->state == HTTP_CONN_HANDSHAKE && now - c->started_ms > s->lim.handshake_timeout_ms;
        if (hs_slow)
            log_info("rejected a TLS connection: the handshake took over %u ms",
                     (unsigned)s->lim.handshake_timeout_ms);
        if (c->state != HTTP_CONN_DYING && (out_stuck || read_slow || idle || lingered || hs_slow))
            http_conn_close_now(c);
        c = next;
    }
}

struct http_server *http_server_create(struct event_base *base, const struct http_limits *lim,
                                       http_handler_fn fn, void *ctx)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->base = base;
    s->lim = *lim;
    if (!s->lim.handshake_timeout_ms)
        s->lim.handshake_timeout_ms = HANDSHAKE_MS;
    s->fn = fn;
    s->ctx = ctx;
    s->reserve_fd = -1;
    reserve_fd_retry(s);
    fd_cap_update(s);
    s->reap_ev = event_new(base, -1, 0, http_on_reap, s);
    s->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, s);
    s->due_ev = event_new(base, -1, 0, http_on_due, s);
    s->accept_ev = evtimer_new(base, on_accept_resume, s);
    struct timeval second = {1, 0};
    if (!s->reap_ev || !s->sweep_ev || !s->due_ev || !s->accept_ev ||
        event_add(s->sweep_ev, &second) != 0) {
        http_server_destroy(s);
        return NULL;
    }
    return s;
}

void http_server_set_h2(struct http_server *s, http_h2_fn fn, void *ctx)
{
    s->h2_fn = fn;
    s->h2_ctx = ctx;
}

int http_server_listen(struct http_server *s, const char *host, uint16_t port)
{
    return http_server_listen_tls(s, host, port, NULL);
}

int http_server_listen_tls(struct http_server *s, const char *host, uint16_t port,
                           struct tls_ctx *tls)
{
    if (s->n_listeners == HTTP_MAX_LISTENERS)
        return -1;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", (unsigned)port);
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    struct http_listener *l = &s->listeners[s->n_listeners];
    struct event *ev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_accept, l);
    if (!ev || event_add(ev, NULL) != 0) {
        if (ev)
            event_free(ev);
        close(fd);
        return -1;
    }
    *l = (struct http_listener){.srv = s, .ev = ev, .fd = fd, .tls = tls};
    s->n_listeners++;
    return 0;
}

void http_server_destroy(struct http_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_listeners; i++) {
        event_free(s->listeners[i].ev);
        close(s->listeners[i].fd);
    }
    if (s->reap_ev)
        http_on_reap(-1, 0, s);
    while (s->conns)
        http_conn_close_now(s->conns);
    if (s->reap_ev)
        event_free(s->reap_ev);
    if (s->sweep_ev)
        event_free(s->sweep_ev);
    if (s->due_ev)
        event_free(s->due_ev);
    if (s->accept_ev)
        event_free(s->accept_ev);
    if (s->reserve_fd >= 0)
        close(s->reserve_fd);
    free(s);
}

void http_server_stats(const struct http_server *s, struct http_stats *out)
{
    *out = (struct http_stats){.conns = s->n_conns,
                               .fd_cap = s->fd_cap,
                               .reclaim_scans = s->reclaim_scans,
                               .refused = s->refused_total};
}
