/* peer.c - the transport's members, its listener and the streams it sends on (the ones its
 * peers dialed), the per-peer queues, snapshots going out, and the news it reports up.
 *
 * Invariants: a member's queue holds whole frames only, and q.len plus its stream's unsent
 * output stays within max_queue_bytes; a member removed is unlinked at once and freed only from
 * the flush event, after every callback that may still hold it has returned. Every callback up
 * (on_unreachable, on_snapshot_sent) runs from the flush event, never from a peer_* call. It
 * calls http/ and raft's codec, nothing above.
 */
#include "peer_int.h"

#include "metastore/clock.h"
#include "metastore/crc32c.h"
#include "metastore/fs.h"
#include "metastore/grow.h"
#include "metastore/http.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define DEFAULT_QUEUE_BYTES  (50u << 20)
#define DEFAULT_QUEUE_MSGS   4096
#define DEFAULT_HEARTBEAT_MS 1000
#define DEFAULT_TIMEOUT_MS   5000
#define DEFAULT_CONNECT_MS   1000
#define QUEUE_KEEP           (1u << 20) /* queue capacity kept between turns */
#define CHUNK_FRAMING        32         /* the most a chunk's size line and CRLF add */

/* ---- small helpers ---- */

void peer_hex(uint64_t v, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, v);
}

bool peer_hex_parse(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 16)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        int d = hex_digit(s[i]);
        if (d < 0)
            return false;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return true;
}

bool peer_url_parse(const char *s, struct peer_url *out)
{
    const char *h;
    if (strncmp(s, "http://", 7) == 0)
        h = s + 7;
    else if (strncmp(s, "https://", 8) == 0)
        h = s + 8;
    else
        return false;
    out->https = s[4] == 's';
    const char *he, *colon;
    if (*h == '[') {
        he = strchr(h, ']');
        if (!he || he[1] != ':')
            return false;
        colon = he + 1;
        h++;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return false;
        he = colon;
    }
    size_t hl = (size_t)(he - h);
    if (hl == 0 || hl >= sizeof(out->host))
        return false;
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(*s && h[-1] == '[' ? AF_INET6 : AF_INET, out->host, addr) != 1)
        return false;
    unsigned long port = 0;
    const char *q = colon + 1;
    if (*q < '0' || *q > '9')
        return false;
    while (*q >= '0' && *q <= '9' && port <= 65535)
        port = port * 10 + (unsigned long)(*q++ - '0');
    if (port == 0 || port > 65535 || (*q && strcmp(q, "/") != 0))
        return false;
    out->port = (uint16_t)port;
    return true;
}

static bool urls_parse(const char *const *urls, size_t n, struct peer_url *out)
{
    if (n == 0 || n > PEER_MAX_URLS)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!urls[i] || !peer_url_parse(urls[i], &out[i]))
            return false;
    return true;
}

/* A member's URLs: https ones only with a client TLS context to dial them. */
static bool member_urls_parse(const struct peer *t, const char *const *urls, size_t n,
                              struct peer_url *out)
{
    if (!urls_parse(urls, n, out))
        return false;
    for (size_t i = 0; i < n; i++)
        if (out[i].https && !t->cfg.tls_client)
            return false;
    return true;
}

struct peer_member *peer_member_find(const struct peer *t, uint64_t id)
{
    for (size_t i = 0; i < t->n_members; i++)
        if (t->members[i]->id == id)
            return t->members[i];
    return NULL;
}

static bool is_removed(const struct peer *t, uint64_t id)
{
    for (size_t i = 0; i < t->n_removed; i++)
        if (t->removed[i] == id)
            return true;
    return false;
}

void peer_wake(struct peer *t)
{
    if (t->flush_pending)
        return;
    t->flush_pending = true;
    event_active(t->flush_ev, EV_TIMEOUT, 1);
}

static void note_queue(struct peer_member *m)
{
    size_t n = m->q.len + (m->out ? http_pending(m->out) : 0);
    m->st.queue_bytes = n;
    if (n > m->st.queue_bytes_max)
        m->st.queue_bytes_max = n;
}

/* A message to m could not be queued or was lost with its stream. */
static void dropped(struct peer_member *m, size_t n)
{
    m->st.sent_failures += n;
    m->unreachable = true;
    peer_wake(m->t);
}

/* ---- snapshots out ---- */

static void snap_out_finish(struct peer_member *m, bool ok)
{
    struct snap_out *s = &m->snap;
    if (s->state == SNAP_OUT_NONE || s->state == SNAP_OUT_DONE)
        return;
    if (m->out)
        http_set_drain_cb(m->out, 0, NULL, NULL);
    if (s->src.close)
        s->src.close(s->src.ctx);
    buf_fini(&s->msg);
    s->state = SNAP_OUT_DONE;
    s->ok = ok;
    if (!ok)
        log_warn("peer: sending a snapshot to %s failed", m->hex);
    peer_wake(m->t);
}

static void on_snap_drain(void *arg)
{
    struct peer_member *m = arg;
    if (m->snap.state == SNAP_OUT_FLUSHING)
        snap_out_finish(m, true);
    else
        peer_wake(m->t);
}

/* Hand one frame to m's stream; false if the connection cannot take it. */
static bool stream_frame(struct peer_member *m, enum peer_frame_type type, const void *p,
                         size_t len)
{
    uint8_t hdr[PEER_FRAME_HDR];
    peer_frame_header(hdr, type, (uint32_t)len);
    struct iovec v[2] = {{hdr, sizeof(hdr)}, {(void *)p, len}};
    if (!http_stream_queue(m->out, v, len ? 2 : 1))
        return false;
    m->st.sent_bytes += sizeof(hdr) + len;
    m->out_last_ms = clock_now_ms();
    return true;
}

/* Pull and queue pieces while the stream's unsent output is low, at most a turn's worth. */
static void snap_pump(struct peer_member *m)
{
    struct snap_out *s = &m->snap;
    struct peer *t = m->t;
    if (s->state != SNAP_OUT_BEGIN && s->state != SNAP_OUT_DATA)
        return;
    if (!m->out) {
        snap_out_finish(m, false);
        return;
    }
    if (s->state == SNAP_OUT_BEGIN) {
        if (!stream_frame(m, PEER_FRAME_SNAP_BEGIN, s->msg.p, s->msg.len)) {
            snap_out_finish(m, false);
            return;
        }
        s->state = SNAP_OUT_DATA;
    }
    int pieces = 0;
    while (pieces < PEER_SNAP_PIECES_PER_TURN && http_pending(m->out) < PEER_SNAP_LOW_BYTES) {
        long n = s->src.read(s->src.ctx, t->piece, PEER_SNAP_PIECE);
        if (n < 0 || (size_t)n > PEER_SNAP_PIECE) {
            log_warn("peer: the snapshot source for %s failed", m->hex);
            stream_frame(m, PEER_FRAME_SNAP_ABORT, NULL, 0);
            http_flush(m->out);
            snap_out_finish(m, false);
            return;
        }
        if (n == 0) {
            uint8_t end[PEER_SNAP_END_BYTES];
            be64_put(end, s->size);
            be32_put(end + 8, s->crc);
            if (!stream_frame(m, PEER_FRAME_SNAP_END, end, sizeof(end))) {
                snap_out_finish(m, false);
                return;
            }
            s->state = SNAP_OUT_FLUSHING;
            http_set_drain_cb(m->out, 0, on_snap_drain, m);
            http_flush(m->out);
            note_queue(m);
            return;
        }
        s->size += (uint64_t)n;
        s->crc = crc32c(s->crc, t->piece, (size_t)n);
        if (!stream_frame(m, PEER_FRAME_SNAP_DATA, t->piece, (size_t)n)) {
            snap_out_finish(m, false);
            return;
        }
        pieces++;
    }
    http_flush(m->out);
    note_queue(m);
    if (pieces == PEER_SNAP_PIECES_PER_TURN)
        peer_wake(t); /* go on next turn, after the others had theirs */
    else
        http_set_drain_cb(m->out, PEER_SNAP_LOW_BYTES / 2, on_snap_drain, m);
}

/* ---- the streams we send on ---- */

static void flush_member(struct peer_member *m)
{
    if (!m->q.len)
        return;
    struct iovec v = {m->q.p, m->q.len};
    if (!m->out || !http_stream_queue(m->out, &v, 1)) {
        dropped(m, m->q_msgs);
    } else {
        m->st.sent_bytes += m->q.len;
        m->st.msgs_sent += m->q_msgs;
        m->st.writes++;
        m->out_last_ms = clock_now_ms();
        http_flush(m->out);
    }
    m->q.len = 0;
    m->q_msgs = 0;
    if (m->q.cap > QUEUE_KEEP)
        buf_fini(&m->q);
    note_queue(m);
}

/* m's stream closed or is being replaced. */
static void out_down(struct peer_member *m)
{
    if (m->q_msgs)
        dropped(m, m->q_msgs);
    m->q.len = 0;
    m->q_msgs = 0;
    m->out = NULL;
    m->st.stream_out = false;
    m->st.queue_bytes = 0;
    if (m->snap.state != SNAP_OUT_NONE && m->snap.state != SNAP_OUT_DONE)
        snap_out_finish(m, false);
}

static void on_out_close(void *arg)
{
    struct peer_member *m = arg;
    log_info("peer: the stream to %s closed", m->hex);
    out_down(m);
}

static void out_close(struct peer_member *m)
{
    if (!m->out)
        return;
    http_set_drain_cb(m->out, 0, NULL, NULL);
    http_abort(m->out);
    out_down(m);
}

static void refuse(struct peer *t, struct http_request *r, int status, const char *text)
{
    static const struct http_hdr h[] = {{"Content-Type", 12, "text/plain", 10}};
    t->refused++;
    http_respond(r, status, h, 1, text, strlen(text));
}

static bool header_hex(const struct http_request *r, const char *name, uint64_t *out)
{
    size_t len;
    const char *v = http_header(r, name, &len);
    return v && peer_hex_parse(v, len, out);
}

/* GET /members: the list the owner writes, with the cluster's ID (etcd's members handler). */
static void answer_members(struct peer *t, struct http_request *r)
{
    struct buf b;
    buf_init(&b);
    t->cfg.members(t->cfg.ctx, &b);
    if (buf_failed(&b)) {
        buf_fini(&b);
        refuse(t, r, 500, "out of memory\n");
        return;
    }
    struct http_hdr h[] = {{"Content-Type", 12, "application/octet-stream", 24},
                           {"X-Etcd-Cluster-ID", 17, t->hex_cluster, 16}};
    http_respond(r, 200, h, 2, b.p, b.len);
    buf_fini(&b);
}

/* A dial from a peer: check it as etcd's streamHandler does (rafthttp/http.go), then keep
 * the response open as our stream to that peer. */
static void on_request(void *ctx, struct http_request *r)
{
    struct peer *t = ctx;
    size_t plen = strlen(PEER_STREAM_PATH);
    if (r->method == HTTP_GET && t->cfg.members && r->target_len == strlen(PEER_MEMBERS_PATH) &&
        memcmp(r->target, PEER_MEMBERS_PATH, r->target_len) == 0) {
        answer_members(t, r);
        return;
    }
    if (r->method != HTTP_GET || r->target_len <= plen ||
        memcmp(r->target, PEER_STREAM_PATH, plen) != 0) {
        refuse(t, r, 404, "404 page not found\n");
        return;
    }
    uint64_t from, from_hdr, cluster, to;
    size_t vlen;
    const char *ver = http_header(r, "X-Peer-Version", &vlen);
    if (!peer_hex_parse(r->target + plen, r->target_len - plen, &from) ||
        !header_hex(r, "X-Server-From", &from_hdr) || from_hdr != from ||
        !header_hex(r, "X-Etcd-Cluster-ID", &cluster) || !header_hex(r, "X-Raft-To", &to)) {
        refuse(t, r, 400, "bad stream request\n");
        return;
    }
    if (!ver || vlen != 1 || ver[0] != '0' + PEER_FRAME_VERSION) {
        log_warn("peer: refused a stream from %016" PRIx64 ": transport version %.*s, ours %d",
                 from, ver ? (int)vlen : 0, ver ? ver : "", PEER_FRAME_VERSION);
        refuse(t, r, 400, "incompatible peer transport version\n");
        return;
    }
    if (cluster != t->cfg.cluster_id) {
        log_warn("peer: refused a stream from %016" PRIx64 " of cluster %016" PRIx64
                 ": this member %s is of cluster %s",
                 from, cluster, t->hex_self, t->hex_cluster);
        refuse(t, r, 412, "cluster ID mismatch\n");
        return;
    }
    if (to != t->cfg.id) {
        log_warn("peer: refused a stream from %016" PRIx64 " for member %016" PRIx64
                 ": this member is %s",
                 from, to, t->hex_self);
        refuse(t, r, 412, "to field mismatch\n");
        return;
    }
    if (is_removed(t, from)) {
        log_warn("peer: refused a stream from %016" PRIx64 ": it was removed from cluster %s", from,
                 t->hex_cluster);
        refuse(t, r, 410, "the member has been permanently removed from the cluster\n");
        return;
    }
    struct peer_member *m = peer_member_find(t, from);
    if (!m) {
        log_warn("peer: refused a stream from %016" PRIx64 ": not a member of cluster %s", from,
                 t->hex_cluster);
        refuse(t, r, 404, "error sender not found\n");
        return;
    }
    if (m->out) {
        log_info("peer: %s dialed again; the new stream replaces the old", m->hex);
        out_close(m);
    }
    struct http_hdr h[] = {{"Content-Type", 12, "application/octet-stream", 24},
                           {"X-Etcd-Cluster-ID", 17, t->hex_cluster, 16},
                           {"X-Server-From", 13, t->hex_self, 16}};
    http_stream_start(r, 200, h, 3);
    http_stream_drop_input(r);
    http_set_close_cb(r, on_out_close, m);
    m->out = r;
    m->out_last_ms = m->out_up_ms = clock_now_ms();
    m->st.stream_out = true;
    log_info("peer: the stream to %s is up", m->hex);
    peer_wake(t); /* a snapshot waiting for the stream goes on */
}

/* Frames keep a silent stream alive so the dialer's read timeout means a dead link. */
static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    struct peer *t = arg;
    (void)fd;
    (void)what;
    uint64_t now = clock_now_ms();
    for (size_t i = 0; i < t->n_members; i++) {
        struct peer_member *m = t->members[i];
        /* Output still waiting says as much as a heartbeat, and keeps a stalled stream's
         * unsent bytes from growing. */
        if (m->out && !m->q.len && !http_pending(m->out) &&
            now - m->out_last_ms >= t->cfg.heartbeat_ms &&
            stream_frame(m, PEER_FRAME_HEARTBEAT, NULL, 0))
            http_flush(m->out);
    }
}

/* ---- members ---- */

static void member_free(struct peer_member *m)
{
    out_close(m);
    if (m->snap.state != SNAP_OUT_NONE && m->snap.state != SNAP_OUT_DONE) {
        if (m->snap.src.close)
            m->snap.src.close(m->snap.src.ctx);
        buf_fini(&m->snap.msg);
    }
    peer_dial_fini(m);
    buf_fini(&m->q);
    free(m);
}

ms_err peer_add(struct peer *t, uint64_t id, const char *const *urls, size_t n)
{
    if (id == 0 || id == t->cfg.id)
        return MS_E_BAD_REQUEST;
    if (peer_member_find(t, id))
        return MS_E_MEMBER_EXISTS;
    if (is_removed(t, id))
        return MS_E_MEMBER_NOT_FOUND;
    struct peer_member *m = calloc(1, sizeof(*m));
    if (!m)
        return MS_E_NOMEM;
    if (!member_urls_parse(t, urls, n, m->urls)) {
        free(m);
        return MS_E_MEMBER_BAD_URLS;
    }
    m->n_urls = n;
    m->rsnap.fd = -1;
    m->t = t;
    m->id = id;
    peer_hex(id, m->hex);
    buf_init(&m->q);
    struct peer_member **a = ms_grow(t->members, &t->cap_members, t->n_members + 1, sizeof(*a), 4);
    if (!a || !peer_dial_init(m)) {
        if (a)
            t->members = a;
        peer_dial_fini(m);
        free(m);
        return MS_E_NOMEM;
    }
    t->members = a;
    t->members[t->n_members++] = m;
    peer_dial_arm(m, 0);
    return MS_OK;
}

ms_err peer_update(struct peer *t, uint64_t id, const char *const *urls, size_t n)
{
    struct peer_member *m = peer_member_find(t, id);
    if (!m)
        return MS_E_MEMBER_NOT_FOUND;
    struct peer_url u[PEER_MAX_URLS];
    if (!member_urls_parse(t, urls, n, u))
        return MS_E_MEMBER_BAD_URLS;
    memcpy(m->urls, u, n * sizeof(u[0]));
    m->n_urls = n;
    m->url_next = 0;
    peer_dial_stop(m);
    m->backoff_ms = 0;
    peer_dial_arm(m, 0);
    return MS_OK;
}

ms_err peer_remove(struct peer *t, uint64_t id)
{
    struct peer_member *m = peer_member_find(t, id);
    if (!m)
        return MS_E_MEMBER_NOT_FOUND;
    uint64_t *r = ms_grow(t->removed, &t->cap_removed, t->n_removed + 1, sizeof(*r), 4);
    if (!r)
        return MS_E_NOMEM;
    t->removed = r;
    t->removed[t->n_removed++] = id;
    for (size_t i = 0; i < t->n_members; i++)
        if (t->members[i] == m) {
            t->members[i] = t->members[--t->n_members];
            break;
        }
    if (m->snap.state != SNAP_OUT_NONE && m->snap.state != SNAP_OUT_DONE) {
        if (m->snap.src.close)
            m->snap.src.close(m->snap.src.ctx);
        buf_fini(&m->snap.msg);
        m->snap.state = SNAP_OUT_NONE;
    }
    out_close(m);
    peer_dial_stop(m);
    m->dead = true;
    m->next_dead = t->dead;
    t->dead = m;
    peer_wake(t);
    log_info("peer: removed %s", m->hex);
    return MS_OK;
}

/* ---- sending ---- */

static void send_one(struct peer *t, const struct raft_msg *msg)
{
    struct peer_member *m = peer_member_find(t, msg->to);
    if (!m || raft_msg_type_is_local(msg->type)) {
        log_debug("peer: dropped a %s to %016" PRIx64 ": not a member or a local message",
                  raft_msg_type_name(msg->type), msg->to);
        return;
    }
    if (msg->type == RAFT_MSG_SNAP) {
        m->snap_refused++;
        m->st.sent_failures++;
        peer_wake(t);
        return;
    }
    if (!m->out || m->q_msgs >= t->cfg.max_queue_msgs) {
        dropped(m, 1);
        return;
    }
    size_t start = m->q.len;
    buf_append(&m->q, "\0\0\0\0\0\0", PEER_FRAME_HDR);
    ms_err e = raft_msg_encode(msg, &m->q);
    if (buf_failed(&m->q)) {
        dropped(m, m->q_msgs + 1); /* the queue is incomplete: all of it goes */
        buf_fini(&m->q);
        m->q_msgs = 0;
        return;
    }
    size_t len = m->q.len - start - PEER_FRAME_HDR;
    /* Over the queue's bound, a message waits for room, but one alone always goes: a MsgApp
     * carries at least one entry, and an entry may be larger than the bound. */
    bool alone = start == 0 && http_pending(m->out) == 0;
    if (e != MS_OK || len > t->cfg.max_frame_bytes ||
        (!alone && m->q.len + http_pending(m->out) + CHUNK_FRAMING > t->cfg.max_queue_bytes)) {
        if (e != MS_OK || len > t->cfg.max_frame_bytes)
            log_warn("peer: a %s of %zu bytes to %s cannot be sent", raft_msg_type_name(msg->type),
                     len, m->hex);
        m->q.len = start;
        dropped(m, 1);
        return;
    }
    peer_frame_header(m->q.p + start, PEER_FRAME_MSG, (uint32_t)len);
    m->q_msgs++;
    note_queue(m);
    peer_wake(t);
}

ms_err peer_send_app(struct peer *t, uint64_t to, const void *data, size_t len)
{
    struct peer_member *m = peer_member_find(t, to);
    if (!m)
        return MS_E_MEMBER_NOT_FOUND;
    if (len == 0 || len > PEER_APP_MAX)
        return MS_E_BAD_REQUEST;
    if (!m->out || m->q_msgs >= t->cfg.max_queue_msgs ||
        m->q.len + PEER_FRAME_HDR + len + http_pending(m->out) + CHUNK_FRAMING >
            t->cfg.max_queue_bytes) {
        dropped(m, 1);
        return MS_E_TOO_MANY_REQUESTS;
    }
    uint8_t hdr[PEER_FRAME_HDR];
    peer_frame_header(hdr, PEER_FRAME_APP, (uint32_t)len);
    buf_append(&m->q, hdr, sizeof(hdr));
    buf_append(&m->q, data, len);
    if (buf_failed(&m->q)) {
        dropped(m, m->q_msgs + 1); /* the queue is incomplete: all of it goes */
        buf_fini(&m->q);
        m->q_msgs = 0;
        return MS_E_NOMEM;
    }
    m->q_msgs++;
    note_queue(m);
    peer_wake(t);
    return MS_OK;
}

void peer_send(struct peer *t, const struct raft_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        send_one(t, &msgs[i]);
}

void peer_flush(struct peer *t)
{
    for (size_t i = 0; i < t->n_members; i++)
        flush_member(t->members[i]);
}

ms_err peer_send_snapshot(struct peer *t, const struct raft_msg *snap_msg,
                          const struct peer_snap_source *src)
{
    if (snap_msg->type != RAFT_MSG_SNAP || snap_msg->from != t->cfg.id || !src->read)
        return MS_E_BAD_REQUEST;
    struct peer_member *m = peer_member_find(t, snap_msg->to);
    if (!m)
        return MS_E_MEMBER_NOT_FOUND;
    if (m->snap.state != SNAP_OUT_NONE)
        return MS_E_TOO_MANY_REQUESTS;
    struct snap_out *s = &m->snap;
    buf_init(&s->msg);
    if (raft_msg_encode(snap_msg, &s->msg) != MS_OK || s->msg.len > t->cfg.max_frame_bytes) {
        buf_fini(&s->msg);
        return MS_E_BAD_REQUEST;
    }
    if (buf_failed(&s->msg)) {
        buf_fini(&s->msg);
        return MS_E_NOMEM;
    }
    s->src = *src;
    s->size = 0;
    s->crc = 0;
    s->state = SNAP_OUT_BEGIN;
    peer_wake(t);
    return MS_OK;
}

/* ---- the flush event: write the queues, pump snapshots, report news, free the removed ---- */

enum news_kind { NEWS_UNREACHABLE, NEWS_SNAP_SENT };

struct news {
    enum news_kind kind;
    uint64_t id;
    bool ok;
};

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct peer *t = arg;
    (void)fd;
    (void)what;
    t->flush_pending = false;
    while (t->dead) {
        struct peer_member *m = t->dead;
        t->dead = m->next_dead;
        member_free(m);
    }
    size_t n_news = 0;
    for (size_t i = 0; i < t->n_members; i++) {
        struct peer_member *m = t->members[i];
        flush_member(m);
        snap_pump(m);
        n_news += m->unreachable + m->snap_refused + (m->snap.state == SNAP_OUT_DONE);
    }
    if (!n_news)
        return;
    /* Collected first: a callback may add or remove members. */
    struct news *news = malloc(n_news * sizeof(*news));
    if (!news) {
        peer_wake(t);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < t->n_members; i++) {
        struct peer_member *m = t->members[i];
        if (m->unreachable)
            news[k++] = (struct news){NEWS_UNREACHABLE, m->id, false};
        for (; m->snap_refused; m->snap_refused--)
            news[k++] = (struct news){NEWS_SNAP_SENT, m->id, false};
        if (m->snap.state == SNAP_OUT_DONE) {
            news[k++] = (struct news){NEWS_SNAP_SENT, m->id, m->snap.ok};
            m->snap.state = SNAP_OUT_NONE;
        }
        m->unreachable = false;
    }
    for (size_t i = 0; i < k; i++) {
        if (news[i].kind == NEWS_UNREACHABLE && t->cfg.on_unreachable)
            t->cfg.on_unreachable(t->cfg.ctx, news[i].id);
        else if (news[i].kind == NEWS_SNAP_SENT && t->cfg.on_snapshot_sent)
            t->cfg.on_snapshot_sent(t->cfg.ctx, news[i].id, news[i].ok);
    }
    free(news);
}

/* ---- lifecycle ---- */

static bool config_fill(struct peer_config *c)
{
    if (!c->id || !c->cluster_id || !c->snap_dir || !c->on_message || !c->n_listen_urls)
        return false;
    if (!c->max_queue_bytes)
        c->max_queue_bytes = DEFAULT_QUEUE_BYTES;
    if (!c->max_queue_msgs)
        c->max_queue_msgs = DEFAULT_QUEUE_MSGS;
    if (!c->max_frame_bytes || c->max_frame_bytes > RAFT_CODEC_MAX_MSG_BYTES)
        c->max_frame_bytes = RAFT_CODEC_MAX_MSG_BYTES;
    if (!c->heartbeat_ms)
        c->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    if (!c->read_timeout_ms)
        c->read_timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!c->write_timeout_ms)
        c->write_timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!c->connect_timeout_ms)
        c->connect_timeout_ms = DEFAULT_CONNECT_MS;
    return true;
}

ms_err peer_create(struct event_base *base, const struct peer_config *cfg, struct peer **out)
{
    struct peer_config c = *cfg;
    if (!config_fill(&c))
        return MS_E_BAD_REQUEST;
    struct peer_url lu[PEER_MAX_URLS];
    if (!urls_parse(c.listen_urls, c.n_listen_urls, lu))
        return MS_E_BAD_REQUEST;
    struct peer *t = calloc(1, sizeof(*t));
    if (!t)
        return MS_E_NOMEM;
    t->base = base;
    t->cfg = c;
    t->cfg.listen_urls = NULL;
    t->cfg.n_listen_urls = 0;
    peer_hex(c.id, t->hex_self);
    peer_hex(c.cluster_id, t->hex_cluster);
    ms_err e = MS_E_NOMEM;
    t->snap_dir = strdup(c.snap_dir);
    t->piece = malloc(PEER_SNAP_PIECE);
    t->flush_ev = event_new(base, -1, 0, on_flush, t);
    t->beat_ev = event_new(base, -1, EV_PERSIST, on_beat, t);
    const struct http_limits lim = {.max_header_bytes = 16u << 10,
                                    .max_body_bytes = 4096,
                                    .read_timeout_ms = c.read_timeout_ms,
                                    .write_timeout_ms = c.write_timeout_ms,
                                    .idle_timeout_ms = c.read_timeout_ms,
                                    .max_conns = 1024};
    t->srv = http_server_create(base, &lim, on_request, t);
    if (!t->snap_dir || !t->piece || !t->flush_ev || !t->beat_ev || !t->srv)
        goto out_free;
    t->cfg.snap_dir = t->snap_dir;
    e = MS_E_IO;
    if (fs_mkdirs(t->snap_dir) != 0) {
        log_error("peer: cannot make %s: %s", t->snap_dir, strerror(errno));
        goto out_free;
    }
    /* What an earlier run left: snapshots received in part (".part") or whole but never
     * installed (".snap"; an installed one has left the directory). Each is a whole copy of a
     * store, and a leader sends again what a member needs. */
    static const char *const left[] = {".part", ".snap", NULL};
    size_t gone = fs_remove_leftovers(t->snap_dir, "", left);
    if (gone)
        log_info("peer: removed %zu snapshot files an earlier run left in %s", gone, t->snap_dir);
    for (size_t i = 0; i < c.n_listen_urls; i++) {
        if (lu[i].https && !c.tls_server) {
            log_error("peer: %s needs TLS settings", c.listen_urls[i]);
            e = MS_E_BAD_REQUEST;
            goto out_free;
        }
        if (http_server_listen_tls(t->srv, lu[i].host, lu[i].port,
                                   lu[i].https ? c.tls_server : NULL) != 0) {
            log_error("peer: cannot listen on %s", c.listen_urls[i]);
            goto out_free;
        }
    }
    uint32_t half = c.heartbeat_ms / 2 ? c.heartbeat_ms / 2 : 1;
    struct timeval tv = {half / 1000, (half % 1000) * 1000};
    if (event_add(t->beat_ev, &tv) != 0)
        goto out_free;
    *out = t;
    return MS_OK;
out_free:
    peer_destroy(t);
    return e;
}

void peer_destroy(struct peer *t)
{
    if (!t)
        return;
    while (t->dead) {
        struct peer_member *m = t->dead;
        t->dead = m->next_dead;
        member_free(m);
    }
    for (size_t i = 0; i < t->n_members; i++)
        member_free(t->members[i]);
    free(t->members);
    http_server_destroy(t->srv);
    if (t->flush_ev)
        event_free(t->flush_ev);
    if (t->beat_ev)
        event_free(t->beat_ev);
    free(t->removed);
    free(t->piece);
    free(t->snap_dir);
    free(t);
}

/* ---- stats ---- */

bool peer_stats(const struct peer *t, uint64_t id, struct peer_stats *out)
{
    struct peer_member *m = peer_member_find(t, id);
    if (!m)
        return false;
    *out = m->st;
    out->queue_bytes = m->q.len + (m->out ? http_pending(m->out) : 0);
    out->stream_in = m->dial_state == DIAL_UP;
    out->active_since_ms = 0;
    if (out->stream_out)
        out->active_since_ms = m->out_up_ms;
    if (out->stream_in && (!out->active_since_ms || m->up_ms < out->active_since_ms))
        out->active_since_ms = m->up_ms;
    return true;
}

uint64_t peer_refused(const struct peer *t)
{
    return t->refused;
}
