/* grpc_watch.c - etcd's Watch service: one bidirectional call is one watch stream of the
 * server's hub (srv.h), with many watchers; this file is the hub's protobuf sink for them.
 *
 * Requests (create, cancel, progress) are handled as they arrive, as etcd's recvLoop does;
 * the client's half-close ends nothing (etcd keeps the stream until the client cancels it).
 * A create is checked against the stream's token (srv_auth_watch) like the gateway's.
 *
 * Responses: control responses are packed whole. An events response is the header field
 * (packed once per revision and term), the watch_id field and the events fields, which are
 * packed once per batch cache slot and copied into every call that receives them. A
 * response of two events or more reaching etcd's limit (--max-request-bytes + 512 KiB) goes
 * out in fragments when the watcher asked for them (etcd sendFragments).
 *
 * Memory follows the server's policy (srv_watch_try / srv_watch_set_buffered): the call's
 * unsent output is reported after each response and when HTTP/2 has taken it all (on_drain);
 * events beyond the stream limit or the budget are refused and caught up from history later.
 * Control responses pile up only while the client keeps sending requests, and the connection
 * stops crediting the call's request side while its output is high (grpc_conn.c).
 */
#include "grpc_int.h"

#include <stdlib.h>
#include <string.h>

struct grpc_watch_stream {
    struct grpc_call *call;
    struct watch_stream *ws;
};

/* A batch cache slot: the events fields of one (events, prev_kv) set. */
struct grpc_blob {
    size_t len;
    uint8_t data[];
};

/* ---- encoding ---- */

/* Field 1 (the header) of a WatchResponse at revision rev, cached while rev and the term
 * stay. Empty after OOM (buf_failed). */
static const struct buf *header_field(struct grpc *g, int64_t rev)
{
    Etcdserverpb__ResponseHeader h;
    grpc_header_fill(g->srv, &h, rev);
    struct buf *b = &g->watch_hdr;
    if (b->len && !buf_failed(b) && g->watch_hdr_rev == rev && g->watch_hdr_term == h.raft_term)
        return b;
    buf_fini(b);
    buf_init(b);
    size_t n = etcdserverpb__response_header__get_packed_size(&h);
    buf_putc(b, 1 << 3 | 2);
    buf_put_uvarint(b, n);
    if (buf_reserve(b, n)) {
        etcdserverpb__response_header__pack(&h, b->p + b->len);
        b->len += n;
    }
    g->watch_hdr_rev = rev;
    g->watch_hdr_term = h.raft_term;
    return b;
}

/* An Event message over e (pointing into e and the two KeyValues given). */
static void event_from(Mvccpb__Event *m, Mvccpb__KeyValue *kv, Mvccpb__KeyValue *prev,
                       const struct kv_event *e, bool prev_kv)
{
    mvccpb__event__init(m);
    m->type = e->type == KV_EVENT_DELETE ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                                         : MVCCPB__EVENT__EVENT_TYPE__PUT;
    grpc_kv_from(kv, &e->kv);
    m->kv = kv;
    if (prev_kv && e->has_prev) {
        grpc_kv_from(prev, &e->prev);
        m->prev_kv = prev;
    }
}

/* The size of e as field 11 of a WatchResponse. */
static size_t event_field_size(const struct kv_event *e, bool prev_kv)
{
    Mvccpb__Event m;
    Mvccpb__KeyValue kv, prev;
    event_from(&m, &kv, &prev, e, prev_kv);
    size_t n = mvccpb__event__get_packed_size(&m);
    return 1 + buf_uvarint_len(n) + n;
}

/* Append e as field 11. */
static void event_field(struct buf *b, const struct kv_event *e, bool prev_kv)
{
    Mvccpb__Event m;
    Mvccpb__KeyValue kv, prev;
    event_from(&m, &kv, &prev, e, prev_kv);
    size_t n = mvccpb__event__get_packed_size(&m);
    buf_putc(b, 11 << 3 | 2);
    buf_put_uvarint(b, n);
    if (buf_reserve(b, n)) {
        mvccpb__event__pack(&m, b->p + b->len);
        b->len += n;
    }
}

/* Field 2 (watch_id, omitted when 0) into out; its length. */
static size_t watch_id_field(uint8_t out[11], int64_t id)
{
    if (!id)
        return 0;
    struct buf b;
    buf_init(&b);
    buf_putc(&b, 2 << 3);
    buf_put_uvarint(&b, (uint64_t)id);
    size_t n = buf_failed(&b) ? 0 : b.len;
    memcpy(out, b.p, n);
    buf_fini(&b);
    return n;
}

static void report(struct grpc_watch_stream *st)
{
    srv_watch_set_buffered(grpc_call_srv(st->call), st->ws, grpc_call_pending(st->call));
}

/* ---- the hub's sink ---- */

static bool send_ctrl(struct grpc *g, struct grpc_watch_stream *st, const struct watch_resp *r)
{
    Etcdserverpb__ResponseHeader h;
    Etcdserverpb__WatchResponse m = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    /* etcd: a compaction cancel carries a header without revision */
    grpc_header_fill(g->srv, &h, r->kind == WATCH_RESP_COMPACTED ? 0 : r->revision);
    m.header = &h;
    m.watch_id = r->watch_id;
    m.created = r->kind == WATCH_RESP_CREATED || r->kind == WATCH_RESP_CREATE_FAILED;
    m.canceled = r->kind == WATCH_RESP_CREATE_FAILED || r->kind == WATCH_RESP_CANCELED ||
                 r->kind == WATCH_RESP_COMPACTED;
    if (r->kind == WATCH_RESP_COMPACTED)
        m.compact_revision = r->compact_revision;
    if (r->kind == WATCH_RESP_CREATE_FAILED && r->cancel_reason)
        m.cancel_reason = (char *)r->cancel_reason;
    return grpc_call_queue(st->call, &m.base);
}

/* One events response of r's events idx[from..to), as a fragment (not the last) when frag. */
static bool send_piece(struct grpc *g, struct grpc_watch_stream *st, const struct watch_resp *r,
                       size_t from, size_t to, bool frag)
{
    const struct buf *hdr = header_field(g, r->revision);
    struct buf *b = &g->watch_buf;
    b->len = 0;
    uint8_t wid[11];
    buf_append(b, wid, watch_id_field(wid, r->watch_id));
    if (frag) {
        buf_putc(b, 7 << 3);
        buf_putc(b, 1);
    }
    for (size_t i = from; i < to; i++)
        event_field(b, &r->batch->events[r->idx[i]], r->prev_kv);
    if (buf_failed(hdr) || buf_failed(b)) {
        buf_fini(b);
        buf_init(b);
        return false;
    }
    const struct grpc_part parts[] = {{hdr->p, hdr->len}, {b->p, b->len}};
    return grpc_call_queue_parts(st->call, parts, 2);
}

/* etcd sendFragments: a response of two events or more whose size reaches the limit goes in
 * pieces marked fragment, the last one unmarked; a piece takes events while its size (flag
 * included) stays under the limit, and always one at least. */
static bool send_fragments(struct grpc *g, struct grpc_watch_stream *st, const struct watch_resp *r,
                           size_t base)
{
    size_t i = 0;
    while (i < r->n_idx) {
        size_t size = base + 2, j = i;
        for (; j < r->n_idx; j++) {
            size_t es = event_field_size(&r->batch->events[r->idx[j]], r->prev_kv);
            if (j > i && size + es >= g->max_recv)
                break;
            size += es;
        }
        if (!send_piece(g, st, r, i, j, j < r->n_idx))
            return false;
        i = j;
    }
    return true;
}

enum send_result { SEND_OK, SEND_NOMEM, SEND_REFUSED };

static enum send_result send_events(struct grpc *g, struct grpc_watch_stream *st,
                                    const struct watch_resp *r)
{
    struct srv *srv = grpc_call_srv(st->call);
    const struct buf *hdr = header_field(g, r->revision);
    uint8_t wid[11];
    size_t wl = watch_id_field(wid, r->watch_id);
    if (buf_failed(hdr))
        return SEND_NOMEM;
    if (r->fragment && r->n_idx >= 2) {
        size_t size = hdr->len + wl;
        for (size_t i = 0; i < r->n_idx && size < g->max_recv; i++)
            size += event_field_size(&r->batch->events[r->idx[i]], r->prev_kv);
        if (size >= g->max_recv) {
            if (!srv_watch_try(srv, st->ws, size))
                return SEND_REFUSED;
            return send_fragments(g, st, r, hdr->len + wl) ? SEND_OK : SEND_NOMEM;
        }
    }
    struct grpc_blob *blob = r->batch->cache ? r->batch->cache[r->slot] : NULL;
    bool owned = false;
    if (!blob) {
        struct buf *b = &g->watch_buf;
        b->len = 0;
        for (size_t i = 0; i < r->n_idx; i++)
            event_field(b, &r->batch->events[r->idx[i]], r->prev_kv);
        blob = buf_failed(b) ? NULL : malloc(sizeof(*blob) + b->len);
        if (!blob) {
            buf_fini(b);
            buf_init(b);
            return SEND_NOMEM;
        }
        blob->len = b->len;
        memcpy(blob->data, b->p, b->len);
        if (r->batch->cache)
            r->batch->cache[r->slot] = blob; /* freed by sink_release */
        else
            owned = true;
    }
    enum send_result res = SEND_NOMEM;
    if (!srv_watch_try(srv, st->ws, hdr->len + wl + blob->len + 5)) {
        res = SEND_REFUSED;
    } else {
        const struct grpc_part parts[] = {{hdr->p, hdr->len}, {wid, wl}, {blob->data, blob->len}};
        if (grpc_call_queue_parts(st->call, parts, 3))
            res = SEND_OK;
    }
    if (owned)
        free(blob);
    return res;
}

static bool sink_send(void *sink_ctx, void *stream_ctx, const struct watch_resp *r)
{
    struct grpc *g = sink_ctx;
    struct grpc_watch_stream *st = stream_ctx;
    if (st->call->state != GRPC_CALL_OPEN)
        return r->kind != WATCH_RESP_EVENTS; /* the call is ending: nothing goes out */
    bool ok;
    if (r->kind != WATCH_RESP_EVENTS) {
        ok = send_ctrl(g, st, r);
    } else {
        switch (send_events(g, st, r)) {
        case SEND_OK:
            ok = true;
            break;
        case SEND_REFUSED:
            return false; /* the server wakes the stream when it may go on */
        case SEND_NOMEM:
        default:
            /* Without memory for the response the call cannot go on without losing events:
             * end it as grpc-go does when a send fails. */
            grpc_call_finish(st->call, MS_GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
            return false;
        }
    }
    if (!ok)
        return false; /* grpc_call_queue finished the call */
    report(st);
    grpc_call_start_stream(st->call);
    return true;
}

static void sink_release(void *sink_ctx, void *cached)
{
    (void)sink_ctx;
    free(cached);
}

static const struct watch_sink GRPC_WATCH_SINK = {.send = sink_send, .release = sink_release};

/* ---- requests ---- */

ms_err grpc_watch_decode(const uint8_t *p, size_t len, struct arena *a, struct grpc_watch_req *out)
{
    ProtobufCAllocator al;
    grpc_allocator(a, &al);
    memset(out, 0, sizeof(*out));
    Etcdserverpb__WatchRequest *m = etcdserverpb__watch_request__unpack(&al, len, p);
    if (!m)
        return MS_E_BAD_REQUEST;
    switch (m->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST: {
        const Etcdserverpb__WatchCreateRequest *c = m->create_request;
        struct watch_create_req *r = &out->create;
        out->kind = GRPC_WATCH_CREATE;
        kv_span_set(&r->span, c->key.data, c->key.len, c->range_end.data, c->range_end.len);
        r->start_revision = c->start_revision;
        r->watch_id = c->watch_id;
        r->progress_notify = c->progress_notify;
        r->prev_kv = c->prev_kv;
        r->fragment = c->fragment;
        for (size_t i = 0; i < c->n_filters; i++) {
            /* etcd FiltersFromRequest ignores values it does not know. */
            if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
                r->filters |= WATCH_FILTER_NOPUT;
            else if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
                r->filters |= WATCH_FILTER_NODELETE;
        }
        break;
    }
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST:
        out->kind = GRPC_WATCH_CANCEL;
        out->cancel_id = m->cancel_request->watch_id;
        break;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
        out->kind = GRPC_WATCH_PROGRESS;
        break;
    default:
        out->kind = GRPC_WATCH_NONE; /* etcd ignores a request with nothing set */
        break;
    }
    return MS_OK;
}

void grpc_watch_msg(struct grpc_call *call, const uint8_t *p, size_t len)
{
    struct grpc_watch_stream *st = call->svc;
    struct srv *srv = grpc_call_srv(call);
    if (!st) {
        st = calloc(1, sizeof(*st));
        if (st) {
            st->call = call;
            st->ws = srv_watch_open(srv, &GRPC_WATCH_SINK, call->conn->g, st);
        }
        if (!st || !st->ws) {
            free(st);
            grpc_call_fail(call, MS_E_NOMEM, NULL);
            return;
        }
        call->svc = st;
    }
    /* Each request is decoded into a fresh arena: a stream may live for days. */
    arena_reset(call->a);
    struct grpc_watch_req m;
    if (grpc_watch_decode(p, len, call->a, &m) != MS_OK) {
        grpc_call_bad_message(call, "WatchRequest");
        return;
    }
    const char *refused;
    switch (m.kind) {
    case GRPC_WATCH_CREATE:
        refused = srv_auth_watch(srv, (const uint8_t *)call->token, call->token_len, call->conn->cn,
                                 &m.create.span);
        if (refused)
            srv_watch_refuse(srv, st->ws, refused);
        else
            srv_watch_create(srv, st->ws, &m.create);
        break;
    case GRPC_WATCH_CANCEL:
        srv_watch_cancel(srv, st->ws, m.cancel_id);
        break;
    case GRPC_WATCH_PROGRESS:
        srv_watch_progress(srv, st->ws);
        break;
    case GRPC_WATCH_NONE:
        break;
    }
}

void grpc_watch_drain(struct grpc_call *call)
{
    struct grpc_watch_stream *st = call->svc;
    if (st)
        report(st); /* HTTP/2 took everything: waiting watchers may resume */
}

void grpc_watch_free(struct grpc_call *call)
{
    struct grpc_watch_stream *st = call->svc;
    if (!st)
        return;
    srv_watch_close(grpc_call_srv(call), st->ws);
    free(st);
    call->svc = NULL;
}
