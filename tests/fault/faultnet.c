/* faultnet.c - per-member TCP proxies whose links the fault campaign stalls or makes lossy (see
 * faultnet.h). One thread polls the listeners and every proxied connection. */
#define _GNU_SOURCE /* accept4, memmem, pipe2 */
#include "faultnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE  65536
#define HDR_MAX   8192 /* a request header longer than this names no sender */
#define CONNS_MAX 512

/* Bytes read from fd[k] and not yet written to fd[1 - k]. */
struct pipe_dir {
    char buf[BUF_SIZE];
    size_t len, off;
    bool eof; /* fd[k] said EOF: shut fd[1 - k]'s writing once buf is written */
};

enum phase { PH_HEADER, PH_CONNECT, PH_FORWARD };

struct conn {
    int fd[2];        /* 0: the sender, accepted; 1: the member, dialled */
    uint64_t from_id; /* the sender's member ID (X-Server-From), 0 if unknown */
    int dst;
    enum phase phase;
    bool lossy; /* lost bytes: closed once its link passes again */
    bool dead;
    struct pipe_dir d[2];
    struct conn *next;
};

struct fn_net {
    pthread_t thread;
    pthread_mutex_t mu; /* guards id, mode, stop and the stats */
    int wake[2];
    int n;
    int lfd[FN_MAX];
    int target[FN_MAX];
    uint64_t id[FN_MAX];
    enum fn_mode mode[FN_MAX][FN_MAX];
    bool stop;
    uint64_t accepted, dropped;
    struct conn *conns;
    int n_conns;
};

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The member ID this request header names as its sender (X-Server-From), 0 if none. */
static uint64_t sender(const char *h, size_t len)
{
    static const char name[] = "\nX-Server-From:";
    size_t nl = sizeof(name) - 1;
    for (size_t i = 0; i + nl < len; i++) {
        if (strncasecmp(h + i, name, nl) != 0)
            continue;
        char hex[24];
        size_t j = i + nl, k = 0;
        while (j < len && h[j] == ' ')
            j++;
        while (j < len && k + 1 < sizeof(hex) && h[j] != '\r' && h[j] != '\n')
            hex[k++] = h[j++];
        hex[k] = 0;
        return strtoull(hex, NULL, 16);
    }
    return 0;
}

/* The mode of direction k of c (0: sender to member, 1: member to sender). The sender's slot is
 * looked up each time: a member's ID may be learnt, or its slot reused, after it connected. */
static enum fn_mode dir_mode(const struct fn_net *net, const struct conn *c, int k)
{
    int src = -1;
    for (int s = 0; c->from_id && s < net->n; s++)
        if (net->id[s] == c->from_id)
            src = s;
    if (src < 0)
        return FN_PASS;
    return k == 0 ? net->mode[src][c->dst] : net->mode[c->dst][src];
}

static void accept_on(struct fn_net *net, int slot)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(net->lfd[slot], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (net->n_conns >= CONNS_MAX) {
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            return;
        }
        c->fd[0] = fd;
        c->fd[1] = -1;
        c->dst = slot;
        c->next = net->conns;
        net->conns = c;
        net->n_conns++;
        pthread_mutex_lock(&net->mu);
        net->accepted++;
        pthread_mutex_unlock(&net->mu);
    }
}

/* The sender's request header is in (or too long to name one): dial the member. */
static void header_read(struct fn_net *net, struct conn *c)
{
    struct pipe_dir *d = &c->d[0];
    ssize_t r = read(c->fd[0], d->buf + d->len, HDR_MAX - d->len);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        c->dead = true;
        return;
    }
    if (r < 0)
        return;
    d->len += (size_t)r;
    if (!memmem(d->buf, d->len, "\r\n\r\n", 4) && d->len < HDR_MAX)
        return;
    c->from_id = sender(d->buf, d->len);
    c->fd[1] = dial(net->target[c->dst]);
    c->phase = PH_CONNECT;
    if (c->fd[1] < 0)
        c->dead = true;
}

static void connected(struct conn *c)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &l) != 0 || err != 0)
        c->dead = true;
    else
        c->phase = PH_FORWARD;
}

/* Read from fd[k] into direction k (thrown away when the direction drops). */
static void dir_read(struct fn_net *net, struct conn *c, int k, enum fn_mode m)
{
    struct pipe_dir *d = &c->d[k];
    char junk[BUF_SIZE / 4];
    ssize_t r = m == FN_DROP ? read(c->fd[k], junk, sizeof(junk))
                             : read(c->fd[k], d->buf + d->len, BUF_SIZE - d->len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r < 0) {
        c->dead = true;
        return;
    }
    if (r == 0) {
        d->eof = true;
        if (d->off == d->len)
            shutdown(c->fd[1 - k], SHUT_WR);
        return;
    }
    if (m == FN_DROP) {
        c->lossy = true;
        pthread_mutex_lock(&net->mu);
        net->dropped += (uint64_t)r;
        pthread_mutex_unlock(&net->mu);
    } else {
        d->len += (size_t)r;
    }
}

static void dir_write(struct conn *c, int k)
{
    struct pipe_dir *d = &c->d[k];
    ssize_t w = send(c->fd[1 - k], d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (w <= 0) {
        c->dead = true;
        return;
    }
    d->off += (size_t)w;
    if (d->off == d->len) {
        d->off = d->len = 0;
        if (d->eof)
            shutdown(c->fd[1 - k], SHUT_WR);
    }
}

static void conn_free(struct conn *c)
{
    for (int k = 0; k < 2; k++)
        if (c->fd[k] >= 0)
            close(c->fd[k]);
    free(c);
}

/* Remove dead connections, and lossy ones whose links pass again. */
static void sweep(struct fn_net *net, const struct fn_net *view)
{
    for (struct conn **pp = &net->conns; *pp;) {
        struct conn *c = *pp;
        bool healed =
            c->lossy && dir_mode(view, c, 0) == FN_PASS && dir_mode(view, c, 1) == FN_PASS;
        bool done =
            c->phase == PH_FORWARD && c->d[0].eof && c->d[1].eof && !c->d[0].len && !c->d[1].len;
        if (c->dead || healed || done) {
            *pp = c->next;
            net->n_conns--;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
}

struct slot_ref {
    struct conn *c;
    int k; /* which fd */
};

static void *run(void *arg)
{
    struct fn_net *net = arg;
    struct pollfd *pf = calloc(1 + FN_MAX + 2 * CONNS_MAX, sizeof(*pf));
    struct slot_ref *ref = calloc(1 + FN_MAX + 2 * CONNS_MAX, sizeof(*ref));
    for (;;) {
        pthread_mutex_lock(&net->mu);
        bool stop = net->stop;
        struct fn_net view = {.n = net->n}; /* the IDs and modes, as of this round */
        memcpy(view.mode, net->mode, sizeof(view.mode));
        memcpy(view.id, net->id, sizeof(view.id));
        pthread_mutex_unlock(&net->mu);
        if (stop || !pf || !ref)
            break;
        sweep(net, &view);
        int n = 0;
        pf[n++] = (struct pollfd){.fd = net->wake[0], .events = POLLIN};
        for (int s = 0; s < net->n; s++) {
            ref[n] = (struct slot_ref){NULL, s};
            pf[n++] = (struct pollfd){.fd = net->lfd[s], .events = POLLIN};
        }
        for (struct conn *c = net->conns; c; c = c->next) {
            short ev[2] = {0, 0};
            if (c->phase == PH_HEADER) {
                ev[0] = POLLIN;
            } else if (c->phase == PH_CONNECT) {
                ev[1] = POLLOUT;
            } else {
                for (int k = 0; k < 2; k++) {
                    enum fn_mode m = dir_mode(&view, c, k);
                    struct pipe_dir *d = &c->d[k];
                    if (m == FN_DROP && !d->eof)
                        ev[k] |= POLLIN;
                    if (m == FN_PASS && !d->eof && d->len < BUF_SIZE)
                        ev[k] |= POLLIN;
                    if (m == FN_PASS && d->len > d->off)
                        ev[1 - k] |= POLLOUT;
                    if (m == FN_DROP && d->len) {
                        d->len = d->off = 0; /* what was held is lost too */
                        c->lossy = true;
                    }
                }
            }
            for (int k = 0; k < 2; k++) {
                if (!ev[k])
                    continue;
                ref[n] = (struct slot_ref){c, k};
                pf[n++] = (struct pollfd){.fd = c->fd[k], .events = ev[k]};
            }
        }
        if (poll(pf, (nfds_t)n, 100) < 0 && errno != EINTR)
            break;
        if (pf[0].revents & POLLIN) {
            char b[64];
            while (read(net->wake[0], b, sizeof(b)) > 0) {
            }
        }
        for (int i = 1; i < n; i++) {
            short re = pf[i].revents;
            struct conn *c = ref[i].c;
            int k = ref[i].k;
            if (!re)
                continue;
            if (!c) {
                accept_on(net, k);
                continue;
            }
            if (c->dead)
                continue;
            if (c->phase == PH_HEADER) {
                header_read(net, c);
            } else if (c->phase == PH_CONNECT) {
                connected(c);
            } else {
                if (re & POLLOUT)
                    dir_write(c, 1 - k);
                if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->dead && (pf[i].events & POLLIN))
                    dir_read(net, c, k, dir_mode(&view, c, k));
                else if (re & (POLLERR | POLLNVAL | POLLHUP))
                    c->dead = true; /* closed while its bytes are held: lost with it */
            }
        }
    }
    free(pf);
    free(ref);
    return NULL;
}

struct fn_net *fn_start(int n, const int *listen, const int *target)
{
    struct fn_net *net = calloc(1, sizeof(*net));
    if (!net || n > FN_MAX || pipe2(net->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(net);
        return NULL;
    }
    pthread_mutex_init(&net->mu, NULL);
    net->n = n;
    for (int i = 0; i < n; i++) {
        net->target[i] = target[i];
        net->lfd[i] = listen_on(listen[i]);
        if (net->lfd[i] < 0) {
            fprintf(stderr, "faultnet: cannot listen on port %d\n", listen[i]);
            for (int j = 0; j < i; j++)
                close(net->lfd[j]);
            close(net->wake[0]);
            close(net->wake[1]);
            free(net);
            return NULL;
        }
    }
    if (pthread_create(&net->thread, NULL, run, net) != 0) {
        for (int j = 0; j < n; j++)
            close(net->lfd[j]);
        free(net);
        return NULL;
    }
    return net;
}

static void poke(struct fn_net *net)
{
    if (write(net->wake[1], "x", 1) < 0) {
        /* full: the thread is awake anyway */
    }
}

void fn_set_id(struct fn_net *net, int slot, uint64_t id)
{
    pthread_mutex_lock(&net->mu);
    net->id[slot] = id;
    pthread_mutex_unlock(&net->mu);
}

void fn_set(struct fn_net *net, int from, int to, enum fn_mode mode)
{
    pthread_mutex_lock(&net->mu);
    net->mode[from][to] = mode;
    pthread_mutex_unlock(&net->mu);
    poke(net);
}

void fn_heal(struct fn_net *net)
{
    pthread_mutex_lock(&net->mu);
    memset(net->mode, 0, sizeof(net->mode));
    pthread_mutex_unlock(&net->mu);
    poke(net);
}

void fn_stats(struct fn_net *net, uint64_t *accepted, uint64_t *dropped)
{
    pthread_mutex_lock(&net->mu);
    *accepted = net->accepted;
    *dropped = net->dropped;
    pthread_mutex_unlock(&net->mu);
}

void fn_stop(struct fn_net *net)
{
    pthread_mutex_lock(&net->mu);
    net->stop = true;
    pthread_mutex_unlock(&net->mu);
    poke(net);
    pthread_join(net->thread, NULL);
    while (net->conns) {
        struct conn *c = net->conns;
        net->conns = c->next;
        conn_free(c);
    }
    for (int i = 0; i < net->n; i++)
        close(net->lfd[i]);
    close(net->wake[0]);
    close(net->wake[1]);
    pthread_mutex_destroy(&net->mu);
    free(net);
}
