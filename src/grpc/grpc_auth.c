/* grpc_auth.c - etcd's Auth service: every method is the auth request the gateway's
 * /v3/auth route makes (SRV_REQ_AUTH, with the caller's user from the token; admin checks
 * happen at apply, as etcd's), and the answer back as the method's response.
 *
 * Each method has its own request message; the responses that carry nothing but the header
 * share one wire form (field 1, the header), written as an AuthEnableResponse.
 */
#include "grpc_int.h"

#include <string.h>

/* A string field as auth bytes (protobuf-c gives "" for an absent one). */
static struct auth_bytes str(const char *s)
{
    return (struct auth_bytes){(const uint8_t *)s, s ? strlen(s) : 0};
}

static struct auth_bytes bin(ProtobufCBinaryData b)
{
    return (struct auth_bytes){b.data, b.len};
}

static bool decode(enum auth_op op, const uint8_t *p, size_t len, ProtobufCAllocator *al,
                   struct auth_req *r)
{
    r->op = op;
    switch (op) {
    case AUTH_OP_ENABLE:
        return etcdserverpb__auth_enable_request__unpack(al, len, p) != NULL;
    case AUTH_OP_DISABLE:
        return etcdserverpb__auth_disable_request__unpack(al, len, p) != NULL;
    case AUTH_OP_AUTHENTICATE: {
        Etcdserverpb__AuthenticateRequest *m =
            etcdserverpb__authenticate_request__unpack(al, len, p);
        if (m) {
            r->name = str(m->name);
            r->password = str(m->password);
        }
        return m != NULL;
    }
    case AUTH_OP_USER_ADD: {
        Etcdserverpb__AuthUserAddRequest *m =
            etcdserverpb__auth_user_add_request__unpack(al, len, p);
        if (m) {
            r->name = str(m->name);
            r->no_password = m->options && m->options->no_password;
            if (!r->no_password)
                r->password = str(m->password);
        }
        return m != NULL;
    }
    case AUTH_OP_USER_GET: {
        Etcdserverpb__AuthUserGetRequest *m =
            etcdserverpb__auth_user_get_request__unpack(al, len, p);
        if (m)
            r->name = str(m->name);
        return m != NULL;
    }
    case AUTH_OP_USER_LIST:
        return etcdserverpb__auth_user_list_request__unpack(al, len, p) != NULL;
    case AUTH_OP_USER_DELETE: {
        Etcdserverpb__AuthUserDeleteRequest *m =
            etcdserverpb__auth_user_delete_request__unpack(al, len, p);
        if (m)
            r->name = str(m->name);
        return m != NULL;
    }
    case AUTH_OP_USER_CHANGEPW: {
        Etcdserverpb__AuthUserChangePasswordRequest *m =
            etcdserverpb__auth_user_change_password_request__unpack(al, len, p);
        if (m) {
            r->name = str(m->name);
            r->password = str(m->password);
        }
        return m != NULL;
    }
    case AUTH_OP_USER_GRANT: {
        Etcdserverpb__AuthUserGrantRoleRequest *m =
            etcdserverpb__auth_user_grant_role_request__unpack(al, len, p);
        if (m) {
            r->name = str(m->user);
            r->role = str(m->role);
        }
        return m != NULL;
    }
    case AUTH_OP_USER_REVOKE: {
        Etcdserverpb__AuthUserRevokeRoleRequest *m =
            etcdserverpb__auth_user_revoke_role_request__unpack(al, len, p);
        if (m) {
            r->name = str(m->name);
            r->role = str(m->role);
        }
        return m != NULL;
    }
    case AUTH_OP_ROLE_ADD: {
        Etcdserverpb__AuthRoleAddRequest *m =
            etcdserverpb__auth_role_add_request__unpack(al, len, p);
        if (m)
            r->name = str(m->name);
        return m != NULL;
    }
    case AUTH_OP_ROLE_GET: {
        Etcdserverpb__AuthRoleGetRequest *m =
            etcdserverpb__auth_role_get_request__unpack(al, len, p);
        if (m)
            r->name = str(m->role);
        return m != NULL;
    }
    case AUTH_OP_ROLE_LIST:
        return etcdserverpb__auth_role_list_request__unpack(al, len, p) != NULL;
    case AUTH_OP_ROLE_DELETE: {
        Etcdserverpb__AuthRoleDeleteRequest *m =
            etcdserverpb__auth_role_delete_request__unpack(al, len, p);
        if (m)
            r->name = str(m->role);
        return m != NULL;
    }
    case AUTH_OP_ROLE_GRANT: {
        Etcdserverpb__AuthRoleGrantPermissionRequest *m =
            etcdserverpb__auth_role_grant_permission_request__unpack(al, len, p);
        if (m) {
            r->name = str(m->name);
            if (m->perm) {
                r->perm_type = m->perm->permtype;
                r->key = bin(m->perm->key);
                r->range_end = bin(m->perm->range_end);
            }
        }
        return m != NULL;
    }
    case AUTH_OP_ROLE_REVOKE: {
        Etcdserverpb__AuthRoleRevokePermissionRequest *m =
            etcdserverpb__auth_role_revoke_permission_request__unpack(al, len, p);
        if (m) {
            r->name = str(m->role);
            r->key = bin(m->key);
            r->range_end = bin(m->range_end);
        }
        return m != NULL;
    }
    case AUTH_OP_COUNT_:
        break;
    }
    return false;
}

ms_err grpc_auth_decode(enum auth_op op, const uint8_t *p, size_t len, struct arena *a,
                        struct auth_req *out)
{
    ProtobufCAllocator al;
    grpc_allocator(a, &al);
    memset(out, 0, sizeof(*out));
    out->op = op;
    return decode(op, p, len, &al, out) ? MS_OK : MS_E_BAD_REQUEST;
}

/* The names of r as NUL-terminated strings in the call's arena; NULL on OOM. */
static char **names(struct grpc_call *call, const struct auth_resp *r)
{
    char **out = arena_calloc(call->a, r->n_names ? r->n_names : 1, sizeof(*out));
    for (size_t i = 0; out && i < r->n_names; i++) {
        out[i] = arena_alloc(call->a, r->names[i].len + 1);
        if (!out[i])
            return NULL;
        memcpy(out[i], r->names[i].p, r->names[i].len);
        out[i][r->names[i].len] = 0;
    }
    return out;
}

static const ProtobufCMessage *role_get(struct grpc_call *call, const struct auth_resp *r,
                                        Etcdserverpb__ResponseHeader *h)
{
    Etcdserverpb__AuthRoleGetResponse *m = arena_alloc(call->a, sizeof(*m));
    Authpb__Permission **pp = arena_calloc(call->a, r->n_perms ? r->n_perms : 1, sizeof(*pp));
    Authpb__Permission *perm = arena_calloc(call->a, r->n_perms ? r->n_perms : 1, sizeof(*perm));
    if (!m || !pp || !perm)
        return NULL;
    etcdserverpb__auth_role_get_response__init(m);
    m->header = h;
    m->n_perm = r->n_perms;
    m->perm = pp;
    for (size_t i = 0; i < r->n_perms; i++) {
        authpb__permission__init(&perm[i]);
        perm[i].permtype = (Authpb__Permission__Type)r->perms[i].type;
        perm[i].key.data = (uint8_t *)r->perms[i].key.p;
        perm[i].key.len = r->perms[i].key.len;
        perm[i].range_end.data = (uint8_t *)r->perms[i].range_end.p;
        perm[i].range_end.len = r->perms[i].range_end.len;
        pp[i] = &perm[i];
    }
    return &m->base;
}

/* The response message of r (in the call's arena); NULL on OOM. */
static const ProtobufCMessage *response(struct grpc_call *call, const struct auth_resp *r,
                                        Etcdserverpb__ResponseHeader *h)
{
    switch (r->op) {
    case AUTH_OP_AUTHENTICATE: {
        Etcdserverpb__AuthenticateResponse *m = arena_alloc(call->a, sizeof(*m));
        char *tok = arena_alloc(call->a, r->token.len + 1);
        if (!m || !tok)
            return NULL;
        etcdserverpb__authenticate_response__init(m);
        memcpy(tok, r->token.p, r->token.len);
        tok[r->token.len] = 0;
        m->header = h;
        m->token = tok;
        return &m->base;
    }
    case AUTH_OP_USER_GET:
    case AUTH_OP_USER_LIST:
    case AUTH_OP_ROLE_LIST: {
        /* three messages of one shape: the header, then a list of names as field 2 */
        Etcdserverpb__AuthUserGetResponse *m = arena_alloc(call->a, sizeof(*m));
        char **n = names(call, r);
        if (!m || !n)
            return NULL;
        etcdserverpb__auth_user_get_response__init(m);
        m->header = h;
        m->n_roles = r->n_names;
        m->roles = n;
        return &m->base;
    }
    case AUTH_OP_ROLE_GET:
        return role_get(call, r, h);
    default: {
        Etcdserverpb__AuthEnableResponse *m = arena_alloc(call->a, sizeof(*m));
        if (!m)
            return NULL;
        etcdserverpb__auth_enable_response__init(m);
        m->header = h;
        return &m->base;
    }
    }
}

static void on_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    Etcdserverpb__ResponseHeader *h = grpc_done_header(call, err, res);
    if (!h)
        return;
    const ProtobufCMessage *m = response(call, &res->u.auth, h);
    if (!m) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    grpc_call_reply(call, m);
}

static void start(struct grpc_call *call, enum auth_op op, const char *type, const uint8_t *p,
                  size_t len)
{
    call->sreq.type = SRV_REQ_AUTH;
    if (grpc_auth_decode(op, p, len, call->a, &call->sreq.u.auth) != MS_OK) {
        grpc_call_bad_message(call, type);
        return;
    }
    grpc_call_submit(call, on_done);
}

#define AUTH_METHOD(fn, op, type)                                                                  \
    void fn(struct grpc_call *call, const uint8_t *p, size_t len)                                  \
    {                                                                                              \
        start(call, op, type, p, len);                                                             \
    }

AUTH_METHOD(grpc_auth_enable, AUTH_OP_ENABLE, "AuthEnableRequest")
AUTH_METHOD(grpc_auth_disable, AUTH_OP_DISABLE, "AuthDisableRequest")
AUTH_METHOD(grpc_auth_authenticate, AUTH_OP_AUTHENTICATE, "AuthenticateRequest")
AUTH_METHOD(grpc_auth_user_add, AUTH_OP_USER_ADD, "AuthUserAddRequest")
AUTH_METHOD(grpc_auth_user_get, AUTH_OP_USER_GET, "AuthUserGetRequest")
AUTH_METHOD(grpc_auth_user_list, AUTH_OP_USER_LIST, "AuthUserListRequest")
AUTH_METHOD(grpc_auth_user_delete, AUTH_OP_USER_DELETE, "AuthUserDeleteRequest")
AUTH_METHOD(grpc_auth_user_changepw, AUTH_OP_USER_CHANGEPW, "AuthUserChangePasswordRequest")
AUTH_METHOD(grpc_auth_user_grant, AUTH_OP_USER_GRANT, "AuthUserGrantRoleRequest")
AUTH_METHOD(grpc_auth_user_revoke, AUTH_OP_USER_REVOKE, "AuthUserRevokeRoleRequest")
AUTH_METHOD(grpc_auth_role_add, AUTH_OP_ROLE_ADD, "AuthRoleAddRequest")
AUTH_METHOD(grpc_auth_role_get, AUTH_OP_ROLE_GET, "AuthRoleGetRequest")
AUTH_METHOD(grpc_auth_role_list, AUTH_OP_ROLE_LIST, "AuthRoleListRequest")
AUTH_METHOD(grpc_auth_role_delete, AUTH_OP_ROLE_DELETE, "AuthRoleDeleteRequest")
AUTH_METHOD(grpc_auth_role_grant, AUTH_OP_ROLE_GRANT, "AuthRoleGrantPermissionRequest")
AUTH_METHOD(grpc_auth_role_revoke, AUTH_OP_ROLE_REVOKE, "AuthRoleRevokePermissionRequest")
