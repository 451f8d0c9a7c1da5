/* codec_auth.c - etcd's Auth* messages <-> JSON (reference §10.1).
 *
 * The request field names differ between routes exactly as in etcd's proto: user/grant names
 * its user "user", user/revoke "name"; role/get, role/delete and role/revoke name the role
 * "role", role/add and role/grant "name". Names and passwords are strings, keys bytes.
 */
#include "codec.h"

#include <string.h>

static const char *const PERM_TYPE[] = {"READ", "WRITE", "READWRITE"};

static const char *type_word(enum mjson_type t)
{
    switch (t) {
    case MJSON_FALSE:
    case MJSON_TRUE:
        return "bool";
    case MJSON_NUM:
        return "number";
    case MJSON_ARR:
        return "array";
    case MJSON_OBJ:
        return "object";
    default:
        return "string";
    }
}

/* A string field (NULL v: absent, left empty). */
static bool read_str(struct mjson_dec *d, const struct mjson_val *v, struct auth_bytes *out)
{
    if (!v)
        return true;
    if (v->type != MJSON_STR)
        return mjson_dec_fail(d, "json: cannot unmarshal %s into Go value of type string",
                              type_word(v->type));
    *out = (struct auth_bytes){(const uint8_t *)v->s, v->n};
    return true;
}

static bool read_bytes(struct mjson_dec *d, const struct mjson_val *v, struct auth_bytes *out)
{
    return codec_read_bytes(d, v, &out->p, &out->len);
}

ms_err codec_decode_auth(struct mjson_dec *d, const struct mjson_val *root, enum auth_op op,
                         struct auth_req *r)
{
    memset(r, 0, sizeof(*r));
    r->op = op;
    bool ok = true;
    switch (op) {
    case AUTH_OP_AUTHENTICATE:
    case AUTH_OP_USER_CHANGEPW:
        ok = read_str(d, codec_field(root, "name", NULL), &r->name) &&
             read_str(d, codec_field(root, "password", NULL), &r->password);
        break;
    case AUTH_OP_USER_ADD: {
        const struct mjson_val *opts = NULL;
        ok = read_str(d, codec_field(root, "name", NULL), &r->name) &&
             read_str(d, codec_field(root, "password", NULL), &r->password) &&
             codec_read_msg(d, codec_field(root, "options", NULL), &opts) &&
             (!opts ||
              codec_read_bool(d, codec_field(opts, "no_password", "noPassword"), &r->no_password));
        if (r->no_password)
            r->password = (struct auth_bytes){NULL, 0};
        break;
    }
    case AUTH_OP_USER_GET:
    case AUTH_OP_USER_DELETE:
    case AUTH_OP_ROLE_ADD:
        ok = read_str(d, codec_field(root, "name", NULL), &r->name);
        break;
    case AUTH_OP_USER_GRANT:
        ok = read_str(d, codec_field(root, "user", NULL), &r->name) &&
             read_str(d, codec_field(root, "role", NULL), &r->role);
        break;
    case AUTH_OP_USER_REVOKE:
        ok = read_str(d, codec_field(root, "name", NULL), &r->name) &&
             read_str(d, codec_field(root, "role", NULL), &r->role);
        break;
    case AUTH_OP_ROLE_GET:
    case AUTH_OP_ROLE_DELETE:
        ok = read_str(d, codec_field(root, "role", NULL), &r->name);
        break;
    case AUTH_OP_ROLE_GRANT: {
        const struct mjson_val *perm = NULL;
        ok = read_str(d, codec_field(root, "name", NULL), &r->name) &&
             codec_read_msg(d, codec_field(root, "perm", NULL), &perm) &&
             (!perm || (codec_read_enum(d, codec_field(perm, "permType", NULL), PERM_TYPE, 3,
                                        "authpb.Permission_Type", &r->perm_type) &&
                        read_bytes(d, codec_field(perm, "key", NULL), &r->key) &&
                        read_bytes(d, codec_field(perm, "range_end", "rangeEnd"), &r->range_end)));
        break;
    }
    case AUTH_OP_ROLE_REVOKE:
        ok = read_str(d, codec_field(root, "role", NULL), &r->name) &&
             read_bytes(d, codec_field(root, "key", NULL), &r->key) &&
             read_bytes(d, codec_field(root, "range_end", "rangeEnd"), &r->range_end);
        break;
    default:
        break;
    }
    return ok ? MS_OK : MS_E_BAD_REQUEST;
}

static void names(struct mjson_w *w, const char *key, const struct auth_resp *r)
{
    if (!r->n_names)
        return;
    mjson_w_key(w, key);
    mjson_w_arr(w);
    for (size_t i = 0; i < r->n_names; i++)
        mjson_w_str(w, (const char *)r->names[i].p, r->names[i].len);
    mjson_w_arr_end(w);
}

void codec_auth_body(struct mjson_w *w, const struct auth_resp *r)
{
    switch (r->op) {
    case AUTH_OP_AUTHENTICATE:
        if (r->token.len) {
            mjson_w_key(w, "token");
            mjson_w_str(w, (const char *)r->token.p, r->token.len);
        }
        break;
    case AUTH_OP_USER_GET:
    case AUTH_OP_ROLE_LIST:
        names(w, "roles", r);
        break;
    case AUTH_OP_USER_LIST:
        names(w, "users", r);
        break;
    case AUTH_OP_ROLE_GET:
        if (!r->n_perms)
            break;
        mjson_w_key(w, "perm");
        mjson_w_arr(w);
        for (size_t i = 0; i < r->n_perms; i++) {
            const struct auth_perm_out *p = &r->perms[i];
            mjson_w_obj(w);
            if (p->type >= 1 && p->type <= 2) {
                mjson_w_key(w, "permType");
                mjson_w_cstr(w, PERM_TYPE[p->type]);
            } else if (p->type) {
                mjson_w_key(w, "permType");
                mjson_w_num(w, p->type);
            }
            if (p->key.len) {
                mjson_w_key(w, "key");
                codec_write_b64(w, p->key.p, p->key.len);
            }
            if (p->range_end.len) {
                mjson_w_key(w, "range_end");
                codec_write_b64(w, p->range_end.p, p->range_end.len);
            }
            mjson_w_obj_end(w);
        }
        mjson_w_arr_end(w);
        break;
    default:
        break;
    }
}
