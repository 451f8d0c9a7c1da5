/* gw_auth.c - the /v3/auth/ routes, and the caller of a request: the user its token names.
 *
 * etcd reads the token from the gRPC metadata "token" (the gateway's Grpc-Metadata-Token
 * header) or else "authorization" (the Authorization header, sent as is: no "Bearer"). A token
 * that names nobody is refused with "invalid auth token" wherever etcd looks at tokens, also
 * while auth is disabled; a request without one goes on as nobody's.
 */
#include "codec.h"
#include "gw_int.h"

ms_err gw_auth_resolve(struct gw_req *r)
{
    if (r->auth_done)
        return MS_OK;
    size_t n;
    const char *tok = http_header(r->req, "Grpc-Metadata-Token", &n);
    if (!tok)
        tok = http_header(r->req, "Authorization", &n);
    if (tok) {
        struct auth_caller c;
        ms_err e = srv_auth_user(r->gw->srv, (const uint8_t *)tok, n, &c);
        if (e)
            return e;
        /* The name is the store's until the next change: keep a copy. */
        uint8_t *copy = arena_memdup(r->a, c.user.p, c.user.len ? c.user.len : 1);
        if (!copy)
            return MS_E_NOMEM;
        c.user.p = copy;
        r->caller = c;
    }
    r->auth_done = true;
    return MS_OK;
}

bool gw_auth_caller(struct gw_req *r)
{
    ms_err e = gw_auth_resolve(r);
    if (e)
        gw_reply_error(r, e, NULL);
    return e == MS_OK;
}

bool gw_auth_maint(struct gw_req *r, bool admin, bool stream)
{
    ms_err e = gw_auth_resolve(r);
    if (!e && admin)
        e = srv_auth_admin(r->gw->srv, &r->caller);
    if (e == MS_OK)
        return true;
    /* etcd's maintenance service hands the auth store's errors back unconverted. */
    e = srv_auth_raw_err(e);
    if (stream)
        gw_reply_stream_error(r, e, NULL);
    else
        gw_reply_error(r, e, NULL);
    return false;
}

static void auth_route(struct gw_req *r, enum auth_op op)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_AUTH;
    if (codec_decode_auth(&d, &root, op, &r->sreq.u.auth) != MS_OK) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    gw_submit(r);
}

#define AUTH_ROUTE(fn, op)                                                                         \
    void fn(struct gw_req *r)                                                                      \
    {                                                                                              \
        auth_route(r, op);                                                                         \
    }

AUTH_ROUTE(gw_auth_enable, AUTH_OP_ENABLE)
AUTH_ROUTE(gw_auth_disable, AUTH_OP_DISABLE)
AUTH_ROUTE(gw_auth_authenticate, AUTH_OP_AUTHENTICATE)
AUTH_ROUTE(gw_auth_user_add, AUTH_OP_USER_ADD)
AUTH_ROUTE(gw_auth_user_get, AUTH_OP_USER_GET)
AUTH_ROUTE(gw_auth_user_list, AUTH_OP_USER_LIST)
AUTH_ROUTE(gw_auth_user_delete, AUTH_OP_USER_DELETE)
AUTH_ROUTE(gw_auth_user_changepw, AUTH_OP_USER_CHANGEPW)
AUTH_ROUTE(gw_auth_user_grant, AUTH_OP_USER_GRANT)
AUTH_ROUTE(gw_auth_user_revoke, AUTH_OP_USER_REVOKE)
AUTH_ROUTE(gw_auth_role_add, AUTH_OP_ROLE_ADD)
AUTH_ROUTE(gw_auth_role_get, AUTH_OP_ROLE_GET)
AUTH_ROUTE(gw_auth_role_list, AUTH_OP_ROLE_LIST)
AUTH_ROUTE(gw_auth_role_delete, AUTH_OP_ROLE_DELETE)
AUTH_ROUTE(gw_auth_role_grant, AUTH_OP_ROLE_GRANT)
AUTH_ROUTE(gw_auth_role_revoke, AUTH_OP_ROLE_REVOKE)
