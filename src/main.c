/* main.c - argv -> cfg_load -> srv_create -> grpc_create, gw_create -> event loop -> teardown.
 *
 * Owns the event base and the signal events; the only mutable global is g_srv for the signal
 * path (STYLE.md §3.2). SIGTERM/SIGINT stop the loop gracefully: the gateway closes, the
 * server makes everything applied durable, and the process exits 0.
 */
#include "metastore/cfg.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/grpc.h"
#include "metastore/gw.h"
#include "metastore/log.h"
#include "metastore/srv.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

extern char **environ;

static struct srv *g_srv;

static void on_left(void *arg)
{
    event_base_loopbreak(arg);
}

/* The gateway's HTTP/1.1 server hands over connections that speak HTTP/2: they are gRPC. */
static bool on_h2(void *ctx, int fd, struct tls_conn *tls, const void *p, size_t len)
{
    return grpc_accept(ctx, fd, tls, p, len);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *base = arg;
    (void)what;
    log_info("received signal %d, shutting down (pending requests: %zu)", (int)sig,
             g_srv ? srv_pending(g_srv) : 0);
    /* A leader first hands its leadership over (bounded); a second signal during the
     * hand-over stops at once (srv_step_down refuses a second one). */
    if (!g_srv || !srv_step_down(g_srv, on_left, base))
        event_base_loopbreak(base);
}

/* Every client connection takes a descriptor, and the usual soft limit (1024) is far below the
 * hard one: raise it, as Go's runtime does for etcd. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_warn("cannot raise the open file limit from %llu", (unsigned long long)was);
}

int main(int argc, char **argv)
{
    struct cfg cfg;
    switch (cfg_load(&cfg, argc, argv, environ, stdout, stderr)) {
    case CFG_OK:
        break;
    case CFG_EXIT:
        return 0;
    case CFG_BAD:
        return 2;
    }
    log_set_level(cfg.log_level);
    faultpt_init(); /* -Dfault_points builds: the crash point and fsync delay, once */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (cfg.restore_snapshot[0])
        return srv_restore(&cfg, cfg.restore_snapshot) == MS_OK ? 0 : 1;

    struct event_base *base = event_base_new();
    if (!base) {
        log_error("cannot create the event loop");
        return 1;
    }
    int rc = 1;
    ms_err err;
    struct gw *gw = NULL;
    struct grpc *grpc = NULL;
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL))
        goto out;
    g_srv = srv_create(base, &cfg, &err);
    if (!g_srv)
        goto out;
    grpc = grpc_create(base, g_srv, &err);
    if (!grpc)
        goto out;
    gw = gw_create(base, g_srv, &err);
    if (!gw)
        goto out;
    gw_set_h2(gw, on_h2, grpc);
    log_info("ready to serve client requests");
    if (event_base_dispatch(base) < 0)
        log_error("event loop failed");
    else
        rc = 0;
out:
    gw_destroy(gw);
    grpc_destroy(grpc);
    srv_destroy(g_srv);
    g_srv = NULL;
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    event_base_free(base);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
