/* gw.h - the client gateway: etcd's v3 JSON API (grpc-gateway wire behaviour) over HTTP/1.1,
 * plus /health, /version and /metrics, on every --listen-client-urls address. */
#ifndef METASTORE_GW_H
#define METASTORE_GW_H

#include "metastore/err.h"
#include "metastore/http.h"

struct event_base;
struct srv;
struct gw;

/* Bind the listeners and install the routes. NULL (logged) on failure with *err set. */
struct gw *gw_create(struct event_base *base, struct srv *srv, ms_err *err);

/* Give connections that open with the HTTP/2 preface to fn (http_server_set_h2). */
void gw_set_h2(struct gw *gw, http_h2_fn fn, void *ctx);

/* Close the listeners and every connection; pending requests are cancelled in srv.
 * Accepts NULL. */
void gw_destroy(struct gw *gw);

#endif
