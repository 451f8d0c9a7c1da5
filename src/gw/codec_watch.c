/* codec_watch.c - etcd's WatchRequest / WatchResponse <-> JSON for the /v3/watch stream
 * (reference §6).
 *
 * Requests: create_request (key, range_end, start_revision, progress_notify, filters, prev_kv,
 * watch_id, fragment), cancel_request (watch_id), progress_request; camelCase spellings are
 * accepted as everywhere else. Responses are written in pieces so the gateway can encode an
 * events array once and splice it after each watcher's own header and watch_id: fields come in
 * proto order (header, watch_id, created, canceled, compact_revision, cancel_reason, fragment,
 * events), zero values omitted, each line wrapped as {"result":...} and ended by '\n'.
 */
#include "codec.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const FILTER_TYPE[] = {"NOPUT", "NODELETE"};

static ms_err bad(void)
{
    return MS_E_BAD_REQUEST;
}

static bool decode_filters(struct mjson_dec *d, const struct mjson_val *v, unsigned *out)
{
    const struct mjson_val *items;
    size_t n;
    if (!codec_read_enum_arr(d, v, FILTER_TYPE, 2, "etcdserverpb.WatchCreateRequest_FilterType",
                             &items, &n))
        return false;
    for (size_t i = 0; i < n; i++) {
        int64_t f = -1;
        if (!codec_read_enum(d, &items[i], FILTER_TYPE, 2,
                             "etcdserverpb.WatchCreateRequest_FilterType", &f))
            return false;
        /* etcd FiltersFromRequest ignores values it does not know. */
        if (f == 0)
            *out |= WATCH_FILTER_NOPUT;
        else if (f == 1)
            *out |= WATCH_FILTER_NODELETE;
    }
    return true;
}

static bool decode_create(struct mjson_dec *d, const struct mjson_val *o,
                          struct watch_create_req *c)
{
    memset(c, 0, sizeof(*c));
    return codec_decode_span(d, o, &c->span) &&
           codec_read_i64(d, codec_field(o, "start_revision", "startRevision"),
                          &c->start_revision) &&
           codec_read_bool(d, codec_field(o, "progress_notify", "progressNotify"),
                           &c->progress_notify) &&
           decode_filters(d, codec_field(o, "filters", NULL), &c->filters) &&
           codec_read_bool(d, codec_field(o, "prev_kv", "prevKv"), &c->prev_kv) &&
           codec_read_i64(d, codec_field(o, "watch_id", "watchId"), &c->watch_id) &&
           codec_read_bool(d, codec_field(o, "fragment", NULL), &c->fragment);
}

ms_err codec_decode_watch(struct mjson_dec *d, const struct mjson_val *root,
                          struct codec_watch_req *out)
{
    static const struct {
        const char *name;
        const char *camel;
        enum codec_watch_kind kind;
    } members[] = {
        {"create_request", "createRequest", CODEC_WATCH_CREATE},
        {"cancel_request", "cancelRequest", CODEC_WATCH_CANCEL},
        {"progress_request", "progressRequest", CODEC_WATCH_PROGRESS},
    };
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        const struct mjson_val *m;
        if (!codec_read_msg(d, codec_field(root, members[i].name, members[i].camel), &m))
            return bad();
        if (!m)
            continue;
        if (out->kind != CODEC_WATCH_NONE) {
            mjson_dec_fail(d, "etcdserver: a watch request sets more than one of create_request, "
                              "cancel_request and progress_request");
            return bad();
        }
        out->kind = members[i].kind;
        if (out->kind == CODEC_WATCH_CREATE && !decode_create(d, m, &out->create))
            return bad();
        if (out->kind == CODEC_WATCH_CANCEL &&
            !codec_read_i64(d, codec_field(m, "watch_id", "watchId"), &out->cancel_id))
            return bad();
    }
    return MS_OK;
}

/* ---- responses ---- */

void codec_watch_open(struct buf *b, const struct srv_header *h, bool with_revision)
{
    struct mjson_w w;
    buf_puts(b, "{\"result\":{\"header\":");
    mjson_w_init(&w, b);
    codec_header(&w, h, with_revision);
}

/* A writer positioned after the header, inside the result object. */
static void tail_writer(struct mjson_w *w, struct buf *b)
{
    mjson_w_init(w, b);
    w->comma = true;
}

static void close_line(struct mjson_w *w)
{
    mjson_w_obj_end(w); /* the WatchResponse */
    mjson_w_obj_end(w); /* {"result":...} */
    buf_putc(w->b, '\n');
}

size_t codec_watch_id_text(char out[48], int64_t id)
{
    if (!id)
        return 0;
    int n = snprintf(out, 48, ",\"watch_id\":\"%" PRId64 "\"", id);
    return n > 0 ? (size_t)n : 0;
}

void codec_watch_id(struct buf *b, int64_t id)
{
    char t[48];
    buf_append(b, t, codec_watch_id_text(t, id));
}

void codec_watch_ctrl_tail(struct buf *b, const struct watch_resp *r)
{
    struct mjson_w w;
    codec_watch_id(b, r->watch_id);
    tail_writer(&w, b);
    bool created = r->kind == WATCH_RESP_CREATED || r->kind == WATCH_RESP_CREATE_FAILED;
    bool canceled = r->kind == WATCH_RESP_CREATE_FAILED || r->kind == WATCH_RESP_CANCELED ||
                    r->kind == WATCH_RESP_COMPACTED;
    if (created) {
        mjson_w_key(&w, "created");
        mjson_w_bool(&w, true);
    }
    if (canceled) {
        mjson_w_key(&w, "canceled");
        mjson_w_bool(&w, true);
    }
    if (r->kind == WATCH_RESP_COMPACTED && r->compact_revision) {
        mjson_w_key(&w, "compact_revision");
        codec_write_i64(&w, r->compact_revision);
    }
    if (r->kind == WATCH_RESP_CREATE_FAILED && r->cancel_reason && *r->cancel_reason) {
        mjson_w_key(&w, "cancel_reason");
        mjson_w_cstr(&w, r->cancel_reason);
    }
    close_line(&w);
}

void codec_watch_events_tail(struct buf *b, const struct kv_event *ev, const uint32_t *idx,
                             size_t n, bool prev_kv, bool fragment)
{
    struct mjson_w w;
    tail_writer(&w, b);
    if (fragment) {
        mjson_w_key(&w, "fragment");
        mjson_w_bool(&w, true);
    }
    if (n) {
        mjson_w_key(&w, "events");
        mjson_w_arr(&w);
        for (size_t i = 0; i < n; i++) {
            const struct kv_event *e = &ev[idx[i]];
            mjson_w_obj(&w);
            if (e->type == KV_EVENT_DELETE) {
                mjson_w_key(&w, "type");
                mjson_w_cstr(&w, "DELETE");
            }
            mjson_w_key(&w, "kv");
            codec_kv(&w, &e->kv);
            if (prev_kv && e->has_prev) {
                mjson_w_key(&w, "prev_kv");
                codec_kv(&w, &e->prev);
            }
            mjson_w_obj_end(&w);
        }
        mjson_w_arr_end(&w);
    }
    close_line(&w);
}

/* ---- protobuf sizes ---- */

static size_t kv_size(const struct kv_kv *kv)
{
    return sz_bytes(1, kv->key_len) + sz_int(2, kv->create_revision) + sz_int(3, kv->mod_revision) +
           sz_int(4, kv->version) + sz_bytes(5, kv->value_len) + sz_int(6, kv->lease);
}

size_t codec_watch_event_size(const struct kv_event *e, bool prev_kv)
{
    size_t n = sz_int(1, e->type) + sz_msg(2, kv_size(&e->kv));
    if (prev_kv && e->has_prev)
        n += sz_msg(3, kv_size(&e->prev));
    return n;
}

size_t codec_watch_event_field_size(size_t event_size)
{
    return sz_msg(11, event_size);
}

size_t codec_watch_base_size(const struct srv_header *h, int64_t watch_id, bool fragment)
{
    size_t hdr = sz_int(1, (int64_t)h->cluster_id) + sz_int(2, (int64_t)h->member_id) +
                 sz_int(3, h->revision) + sz_int(4, (int64_t)h->raft_term);
    return sz_msg(1, hdr) + sz_int(2, watch_id) + (fragment ? 2 : 0);
}
