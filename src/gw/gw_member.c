/* gw_member.c - /v3/cluster/member/{list,add,remove,update,promote} and
 * /v3/maintenance/transfer-leadership.
 *
 * The list is answered at once from this member's view (etcd 3.4 has no linearizable list).
 * A change is answered once this member has applied it, with the member list it left: the new
 * member ("member", without a name or client URLs until it starts) and "members" for an add,
 * "members" alone for the others; the header has no revision, as etcd's cluster service's.
 * With auth on, only root may change the membership (etcd's
 * checkMembershipOperationPermission).
 */
#include "codec.h"
#include "gw_int.h"

#include <stdio.h>

static void urls(struct mjson_w *w, const char *name, const struct cfg_url *u, size_t n)
{
    if (!n)
        return;
    mjson_w_key(w, name);
    mjson_w_arr(w);
    for (size_t i = 0; i < n; i++)
        mjson_w_cstr(w, u[i].text);
    mjson_w_arr_end(w);
}

static void member(struct mjson_w *w, const struct srv_member *m)
{
    mjson_w_obj(w);
    mjson_w_key(w, "ID");
    codec_write_u64(w, m->id);
    if (m->name && *m->name) {
        mjson_w_key(w, "name");
        mjson_w_cstr(w, m->name);
    }
    urls(w, "peerURLs", m->peer_urls, m->n_peer_urls);
    urls(w, "clientURLs", m->client_urls, m->n_client_urls);
    if (m->is_learner) {
        mjson_w_key(w, "isLearner");
        mjson_w_bool(w, true);
    }
    mjson_w_obj_end(w);
}

/* "member" (the one added, when it is still a member) and "members", closing the object. */
static void members(struct gw_req *r, struct mjson_w *w, uint64_t added)
{
    struct srv_member ms[SRV_MAX_MEMBERS];
    size_t n = srv_members(r->gw->srv, ms);
    for (size_t i = 0; i < n && added; i++) {
        if (ms[i].id != added)
            continue;
        struct srv_member one = ms[i];
        one.name = NULL; /* as etcd's answer: the member as it was added */
        one.n_client_urls = 0;
        mjson_w_key(w, "member");
        member(w, &one);
    }
    mjson_w_key(w, "members");
    mjson_w_arr(w);
    for (size_t i = 0; i < n; i++)
        member(w, &ms[i]);
    mjson_w_arr_end(w);
    mjson_w_obj_end(w);
}

void gw_cluster_member_list(struct gw_req *r)
{
    if (!gw_parse_empty(r))
        return;
    struct buf b;
    struct mjson_w w;
    gw_json_begin(r, &b, &w, false);
    members(r, &w, 0);
    gw_reply(r, 200, &b);
}

static void encode_change(struct gw_req *r, const struct srv_result *res, struct buf *b)
{
    struct mjson_w w;
    mjson_w_init(&w, b);
    mjson_w_obj(&w);
    gw_json_header(r, &w, false);
    members(r, &w, res->type == SRV_REQ_MEMBER_ADD ? res->u.member_id : 0);
}

/* The request's "peerURLs": strings, copied into the arena as NUL-terminated texts. */
static bool read_urls(struct gw_req *r, struct mjson_dec *d, const struct mjson_val *root,
                      const char ***out, size_t *n)
{
    const struct mjson_val *items;
    if (!codec_read_arr(d, codec_field(root, "peerURLs", NULL), &items, n)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d->msg);
        return false;
    }
    *out = arena_calloc(r->a, *n ? *n : 1, sizeof(**out));
    for (size_t i = 0; *out && i < *n; i++) {
        if (items[i].type != MJSON_STR) {
            gw_reply_error(r, MS_E_BAD_REQUEST,
                           "json: cannot unmarshal value into Go value of type string");
            return false;
        }
        char *t = arena_alloc(r->a, items[i].n + 1);
        if (!t)
            break;
        memcpy(t, items[i].s, items[i].n);
        t[items[i].n] = 0;
        (*out)[i] = t;
    }
    if (!*out || (*n && !(*out)[*n - 1])) {
        gw_reply_error(r, MS_E_NOMEM, NULL);
        return false;
    }
    return true;
}

/* Parse the body, check the caller may change the membership: false once answered. */
static bool begin(struct gw_req *r, struct mjson_dec *d, struct mjson_val *root, uint64_t *id)
{
    if (!gw_parse_root(r, d, root))
        return false;
    if (id && !codec_read_u64(d, codec_field(root, "ID", NULL), id)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d->msg);
        return false;
    }
    ms_err e = gw_auth_resolve(r);
    if (!e)
        e = srv_auth_admin(r->gw->srv, &r->caller);
    if (e) {
        gw_reply_error(r, e, NULL);
        return false;
    }
    r->encode = encode_change;
    return true;
}

static void submitted(struct gw_req *r, ms_err e)
{
    if (e) {
        r->srv_id = 0;
        gw_reply_error(r, e, NULL);
        return;
    }
    gw_wait(r);
}

void gw_cluster_member_add(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    const char **u;
    size_t n;
    bool learner = false;
    if (!begin(r, &d, &root, NULL) || !read_urls(r, &d, &root, &u, &n))
        return;
    if (!codec_read_bool(&d, codec_field(&root, "isLearner", NULL), &learner)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    submitted(r, srv_member_add(r->gw->srv, u, n, learner, gw_done_cb, r, &r->srv_id));
}

void gw_cluster_member_remove(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    uint64_t id = 0;
    if (begin(r, &d, &root, &id))
        submitted(r, srv_member_remove(r->gw->srv, id, gw_done_cb, r, &r->srv_id));
}

void gw_cluster_member_update(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    uint64_t id = 0;
    const char **u;
    size_t n;
    if (begin(r, &d, &root, &id) && read_urls(r, &d, &root, &u, &n))
        submitted(r, srv_member_update(r->gw->srv, id, u, n, gw_done_cb, r, &r->srv_id));
}

void gw_cluster_member_promote(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    uint64_t id = 0;
    if (begin(r, &d, &root, &id))
        submitted(r, srv_member_promote(r->gw->srv, id, gw_done_cb, r, &r->srv_id));
}

static void encode_empty(struct gw_req *r, const struct srv_result *res, struct buf *out)
{
    (void)r;
    (void)res;
    buf_puts(out, "{}");
}

/* etcd: no auth check; on the leader only; "{}" (no header) once the target leads. */
void gw_maint_move_leader(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    uint64_t target = 0;
    if (!gw_parse_root(r, &d, &root))
        return;
    if (!codec_read_u64(&d, codec_field(&root, "targetID", NULL), &target)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    r->encode = encode_empty;
    submitted(r, srv_move_leader(r->gw->srv, target, gw_done_cb, r, &r->srv_id));
}
