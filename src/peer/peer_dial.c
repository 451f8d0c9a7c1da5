/* peer_dial.c - the streams this member dials, one per peer, and what arrives on them: frames
 * decoded strictly, messages handed up, snapshots written to a file and handed up whole.
 *
 * A dial is WAIT → ASKING → UP (peer_int.h); any failure closes the connection, drops a
 * snapshot half received (its file is removed) and redials after the backoff. Callbacks up may
 * remove the member or redial it: after each one the frame loop checks that its connection is
 * still the member's before touching anything again.
 */
#define _GNU_SOURCE
#include "peer_int.h"

#include "metastore/clock.h"
#include "metastore/crc32c.h"
#include "metastore/faultpt.h"
#include "metastore/fs.h"
#include "metastore/http.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- snapshots in ---- */

static void snap_in_drop(struct peer_member *m)
{
    struct snap_in *s = &m->rsnap;
    if (s->fd >= 0) {
        close(s->fd);
        if (unlink(s->part) != 0 && errno != ENOENT)
            log_warn("peer: cannot remove %s: %s", s->part, strerror(errno));
        log_warn("peer: a snapshot from %s was cut off after %" PRIu64 " bytes", m->hex, s->size);
    }
    s->fd = -1;
    free(s->part);
    s->part = NULL;
    raft_msg_decoded_fini(&s->msg);
    free(s->msg_bytes);
    s->msg_bytes = NULL;
}

static char *snap_path(const struct peer *t, const char *name)
{
    size_t n = strlen(t->snap_dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", t->snap_dir, name);
    return p;
}

static bool snap_in_begin(struct peer_member *m, const struct peer_frame *f)
{
    struct peer *t = m->t;
    struct snap_in *s = &m->rsnap;
    if (s->fd >= 0 || !t->cfg.on_snapshot)
        return false;
    s->msg_bytes = malloc(f->len);
    if (!s->msg_bytes)
        return false;
    memcpy(s->msg_bytes, f->payload, f->len);
    struct peer_frame copy = {f->type, s->msg_bytes, f->len};
    if (peer_frame_msg(&copy, m->id, t->cfg.id, &s->msg) != MS_OK) {
        free(s->msg_bytes);
        s->msg_bytes = NULL;
        return false;
    }
    char name[64];
    snprintf(name, sizeof(name), "%s-%016" PRIx64 ".part", m->hex, s->msg.snap.index);
    s->part = snap_path(t, name);
    if (s->part)
        s->fd = open(s->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        log_error("peer: cannot create a snapshot file in %s: %s", t->snap_dir, strerror(errno));
        snap_in_drop(m);
        return false;
    }
    s->size = 0;
    s->crc = 0;
    log_info("peer: receiving a snapshot at index %" PRIu64 " from %s", s->msg.snap.index, m->hex);
    return true;
}

static bool snap_in_data(struct peer_member *m, const struct peer_frame *f)
{
    struct snap_in *s = &m->rsnap;
    if (s->fd < 0)
        return false;
    for (size_t off = 0; off < f->len;) {
        ssize_t k = write(s->fd, f->payload + off, f->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            log_error("peer: cannot write %s: %s", s->part, strerror(errno));
            return false;
        }
        off += (size_t)k;
    }
    s->size += f->len;
    s->crc = crc32c(s->crc, f->payload, f->len);
    return true;
}

/* The end: check, make durable, rename, hand up. */
static bool snap_in_end(struct peer_member *m, const struct peer_frame *f)
{
    struct peer *t = m->t;
    struct snap_in *s = &m->rsnap;
    uint64_t size;
    uint32_t crc;
    if (s->fd < 0 || peer_frame_snap_end(f, &size, &crc) != MS_OK)
        return false;
    if (size != s->size || crc != s->crc) {
        log_warn("peer: a snapshot from %s ended with %" PRIu64 " bytes, crc %08x; "
                 "received %" PRIu64 ", crc %08x",
                 m->hex, size, crc, s->size, s->crc);
        return false;
    }
    char name[64];
    snprintf(name, sizeof(name), "%s-%016" PRIx64 "-%016" PRIx64 ".snap", m->hex, s->msg.snap.term,
             s->msg.snap.index);
    char *path = snap_path(t, name);
    if (path)
        faultpt_slow_fsync();
    if (!path || fsync(s->fd) != 0 || rename(s->part, path) != 0 ||
        fs_sync_dir(t->snap_dir) != MS_OK) {
        log_error("peer: cannot keep the snapshot from %s: %s", m->hex, strerror(errno));
        free(path);
        return false;
    }
    close(s->fd);
    s->fd = -1;
    m->st.msgs_received++;
    log_info("peer: received a snapshot of %" PRIu64 " bytes at index %" PRIu64 " from %s", s->size,
             s->msg.snap.index, m->hex);
    /* Taken out of m first: the callback may remove m. */
    struct raft_msg msg = s->msg;
    uint8_t *bytes = s->msg_bytes;
    memset(&s->msg, 0, sizeof(s->msg));
    s->msg_bytes = NULL;
    free(s->part);
    s->part = NULL;
    t->cfg.on_snapshot(t->cfg.ctx, &msg, path);
    raft_msg_decoded_fini(&msg);
    free(bytes);
    free(path);
    return true;
}

/* ---- the dialed stream ---- */

/* The first failure is a warning; the retries that follow while the peer stays away are
 * debug lines (a member starting before its peers would log one every backoff step). */
static void dial_fail(struct peer_member *m, const char *why)
{
    const struct peer_url *u = &m->urls[m->url_next % m->n_urls];
    if (m->dial_fails++ == 0)
        log_warn("peer: the stream from %s (%s:%u) failed: %s; retrying", m->hex, u->host, u->port,
                 why);
    else
        log_debug("peer: the stream from %s (%s:%u) failed again (%u): %s", m->hex, u->host,
                  u->port, m->dial_fails, why);
    uint64_t now = clock_now_ms();
    if (m->dial_state == DIAL_UP && now - m->up_ms >= PEER_HEALTHY_MS)
        m->backoff_ms = 0;
    peer_dial_stop(m);
    m->url_next++;
    m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : PEER_DIAL_MIN_MS;
    if (m->backoff_ms > PEER_DIAL_MAX_MS)
        m->backoff_ms = PEER_DIAL_MAX_MS;
    peer_dial_arm(m, m->backoff_ms);
}

static void refused(struct peer_member *m, const char *why)
{
    m->st.refusals++;
    dial_fail(m, why);
}

static bool header_is(const struct http_response *r, const char *name, const char *want)
{
    size_t len;
    const char *v = http_response_header(r, name, &len);
    uint64_t a, b;
    return v && peer_hex_parse(v, len, &a) && peer_hex_parse(want, strlen(want), &b) && a == b;
}

static void on_head(void *arg, const struct http_response *r)
{
    struct peer_member *m = arg;
    struct peer *t = m->t;
    char why[128];
    if (r->status != 200) {
        snprintf(why, sizeof(why), "refused with %d %.*s", r->status, (int)r->reason_len,
                 r->reason);
        refused(m, why);
        if (r->status == 410 && t->cfg.on_removed)
            t->cfg.on_removed(t->cfg.ctx, m->id); /* etcd: the member has been removed */
        return;
    }
    if (!header_is(r, "X-Etcd-Cluster-ID", t->hex_cluster)) {
        size_t len = 0;
        const char *v = http_response_header(r, "X-Etcd-Cluster-ID", &len);
        snprintf(why, sizeof(why), "it is of cluster %.*s, this member %s is of cluster %s",
                 v ? (int)(len > 16 ? 16 : len) : 1, v ? v : "?", t->hex_self, t->hex_cluster);
        refused(m, why);
        return;
    }
    if (!header_is(r, "X-Server-From", m->hex)) {
        refused(m, "another member answered");
        return;
    }
    m->dial_state = DIAL_UP;
    m->up_ms = clock_now_ms();
    uint64_t now_us = clock_now_ns() / 1000;
    m->st.rtt_us = now_us - m->asked_us;
    if (m->dial_fails)
        log_info("peer: the stream from %s is up after %u failed dials", m->hex, m->dial_fails);
    else
        log_info("peer: the stream from %s is up", m->hex);
    m->dial_fails = 0;
}

/* One complete frame. false: the stream is bad (closed by the caller). */
static bool on_frame(struct peer_member *m, const struct peer_frame *f)
{
    struct peer *t = m->t;
    switch (f->type) {
    case PEER_FRAME_MSG: {
        struct raft_msg msg;
        if (peer_frame_msg(f, m->id, t->cfg.id, &msg) != MS_OK)
            return false;
        m->st.msgs_received++;
        t->cfg.on_message(t->cfg.ctx, &msg);
        raft_msg_decoded_fini(&msg);
        return true;
    }
    case PEER_FRAME_SNAP_BEGIN:
        return snap_in_begin(m, f);
    case PEER_FRAME_SNAP_DATA:
        return snap_in_data(m, f);
    case PEER_FRAME_SNAP_END:
        return snap_in_end(m, f);
    case PEER_FRAME_SNAP_ABORT:
        if (m->rsnap.fd < 0)
            return false;
        snap_in_drop(m);
        return true;
    case PEER_FRAME_HEARTBEAT:
        return true;
    case PEER_FRAME_APP:
        if (f->len > PEER_APP_MAX)
            return false;
        m->st.msgs_received++;
        if (t->cfg.on_app)
            t->cfg.on_app(t->cfg.ctx, m->id, f->payload, f->len);
        return true;
    }
    return false;
}

static bool on_body(void *arg, const void *data, size_t len)
{
    struct peer_member *m = arg;
    struct http_client *c = m->dial;
    if (m->dial_state != DIAL_UP)
        return true;
    m->st.received_bytes += len;
    const uint8_t *p = data;
    if (m->in.len) {
        buf_append(&m->in, data, len);
        if (buf_failed(&m->in)) {
            refused(m, "out of memory");
            return false;
        }
        p = m->in.p;
        len = m->in.len;
    }
    size_t off = 0;
    for (;;) {
        struct peer_frame f;
        size_t used;
        enum peer_parse r =
            peer_frame_parse(p + off, len - off, m->t->cfg.max_frame_bytes, &f, &used);
        if (r == PEER_PARSE_MORE)
            break;
        if (r == PEER_PARSE_BAD || !on_frame(m, &f)) {
            if (m->dial == c && !m->dead) {
                log_warn("peer: a bad frame (type %d) from %s", off + 1 < len ? p[off + 1] : -1,
                         m->hex);
                refused(m, "bad frame");
            }
            return false;
        }
        if (m->dial != c || m->dead)
            return false; /* a callback closed or replaced this stream */
        off += used;
    }
    if (p == m->in.p) {
        memmove(m->in.p, m->in.p + off, len - off);
        m->in.len = len - off;
    } else if (off < len) {
        buf_append(&m->in, p + off, len - off);
        if (buf_failed(&m->in)) {
            refused(m, "out of memory");
            return false;
        }
    }
    return true;
}

static void on_done(void *arg, bool reusable)
{
    struct peer_member *m = arg;
    (void)reusable;
    if (m->in.len)
        refused(m, "the stream ended inside a frame");
    else
        dial_fail(m, "closed by the peer");
}

static void on_error(void *arg, enum http_client_err err)
{
    dial_fail(arg, http_client_strerror(err));
}

static void on_redial(evutil_socket_t fd, short what, void *arg)
{
    struct peer_member *m = arg;
    struct peer *t = m->t;
    (void)fd;
    (void)what;
    const struct peer_url *u = &m->urls[m->url_next % m->n_urls];
    const struct http_client_opts o = {.max_header_bytes = 16u << 10,
                                       .connect_timeout_ms = t->cfg.connect_timeout_ms,
                                       .response_timeout_ms = t->cfg.read_timeout_ms,
                                       .write_timeout_ms = t->cfg.write_timeout_ms,
                                       .on_head = on_head,
                                       .on_body = on_body,
                                       .on_done = on_done,
                                       .on_error = on_error,
                                       .arg = m,
                                       .tls = u->https ? t->cfg.tls_client : NULL};
    m->st.dials++;
    m->dial = http_client_open(t->base, u->host, u->port, &o);
    if (!m->dial) {
        dial_fail(m, "cannot open a connection");
        return;
    }
    char target[64];
    snprintf(target, sizeof(target), "%s%s", PEER_STREAM_PATH, t->hex_self);
    const char ver[] = {(char)('0' + PEER_FRAME_VERSION), '\0'};
    const struct http_hdr h[] = {{"X-Etcd-Cluster-ID", 17, t->hex_cluster, 16},
                                 {"X-Server-From", 13, t->hex_self, 16},
                                 {"X-Raft-To", 9, m->hex, 16},
                                 {"X-Peer-Version", 14, ver, 1}};
    m->asked_us = clock_now_ns() / 1000;
    m->dial_state = DIAL_ASKING;
    if (http_client_request(m->dial, "GET", target, h, 4, NULL, 0) != 0)
        dial_fail(m, "cannot send the request");
}

bool peer_dial_init(struct peer_member *m)
{
    m->rsnap.fd = -1;
    buf_init(&m->in);
    m->redial_ev = evtimer_new(m->t->base, on_redial, m);
    return m->redial_ev != NULL;
}

void peer_dial_arm(struct peer_member *m, uint32_t delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(m->redial_ev, &tv);
}

void peer_dial_stop(struct peer_member *m)
{
    if (m->redial_ev)
        evtimer_del(m->redial_ev);
    http_client_close(m->dial);
    m->dial = NULL;
    m->dial_state = DIAL_WAIT;
    m->in.len = 0;
    if (m->in.cap > (1u << 20))
        buf_fini(&m->in);
    snap_in_drop(m);
}

void peer_dial_fini(struct peer_member *m)
{
    peer_dial_stop(m);
    if (m->redial_ev)
        event_free(m->redial_ev);
    m->redial_ev = NULL;
    buf_fini(&m->in);
}
