/* gw_snapshot.c - /v3/maintenance/snapshot and /defragment.
 *
 * A snapshot is a server stream: the server writes a consistent backup file (srv_backup), then
 * we send it in 32 KiB pieces as {"result":{"remaining_bytes":"N","blob":"..."}}\n, each piece
 * only once the previous one has reached the socket (memory stays bounded however slow the
 * client is), and finish with one message whose blob is the SHA-256 of all the bytes before,
 * as etcd does (reference §9). The server hands the file over open and already unlinked, so
 * nothing is left behind whatever happens to the connection.
 */
#include "codec.h"
#include "gw_int.h"

#include "metastore/log.h"
#include "metastore/sha256.h"

#include <stdlib.h>
#include <unistd.h>

#define SNAP_PIECE (32u << 10)

struct snap_stream {
    struct gw_req *r;
    int fd;
    uint64_t total;
    uint64_t sent;
    bool sha_sent;
    struct sha256 sha;
};

static void encode_empty(struct gw_req *r, const struct srv_result *res, struct buf *out)
{
    (void)r;
    (void)res;
    buf_puts(out, "{}");
}

void gw_maint_defrag(struct gw_req *r)
{
    if (!gw_parse_empty(r) || !gw_auth_maint(r, true, false))
        return;
    r->encode = encode_empty;
    ms_err e = srv_defrag(r->gw->srv, gw_done_cb, r, &r->srv_id);
    if (e) {
        r->srv_id = 0;
        gw_reply_error(r, e, NULL);
        return;
    }
    gw_wait(r);
}

static void stream_free(struct snap_stream *st)
{
    if (st->fd >= 0)
        close(st->fd);
    free(st);
}

/* The connection went away mid-stream: the request is gone with it. */
static void on_close(void *arg)
{
    struct snap_stream *st = arg;
    gw_abandon(st->r);
    stream_free(st);
}

/* The previous piece has reached the socket: send the next one. */
static void send_next(void *arg)
{
    struct snap_stream *st = arg;
    struct buf b;
    struct mjson_w w;
    buf_init(&b);
    mjson_w_init(&w, &b);
    if (st->sent < st->total) {
        uint8_t piece[SNAP_PIECE];
        size_t want =
            st->total - st->sent < SNAP_PIECE ? (size_t)(st->total - st->sent) : SNAP_PIECE;
        ssize_t n = read(st->fd, piece, want);
        if (n <= 0) {
            /* The file cannot be read back: cut the stream so the client sees it incomplete. */
            log_error("snapshot: read failed after %llu bytes", (unsigned long long)st->sent);
            struct http_request *req = st->r->req;
            gw_abandon(st->r);
            stream_free(st);
            http_abort(req);
            buf_fini(&b);
            return;
        }
        sha256_update(&st->sha, piece, (size_t)n);
        st->sent += (uint64_t)n;
        mjson_w_obj(&w);
        mjson_w_key(&w, "result");
        mjson_w_obj(&w);
        if (st->total - st->sent) {
            mjson_w_key(&w, "remaining_bytes");
            codec_write_u64(&w, st->total - st->sent);
        }
        mjson_w_key(&w, "blob");
        codec_write_b64(&w, piece, (size_t)n);
        mjson_w_obj_end(&w);
        mjson_w_obj_end(&w);
        buf_putc(&b, '\n');
        gw_stream_chunk(st->r, &b);
        return;
    }
    if (!st->sha_sent) {
        uint8_t digest[32];
        sha256_final(&st->sha, digest);
        mjson_w_obj(&w);
        mjson_w_key(&w, "result");
        mjson_w_obj(&w);
        mjson_w_key(&w, "blob");
        codec_write_b64(&w, digest, sizeof(digest));
        mjson_w_obj_end(&w);
        mjson_w_obj_end(&w);
        buf_putc(&b, '\n');
        st->sha_sent = true;
        gw_stream_chunk(st->r, &b);
        return;
    }
    buf_fini(&b);
    struct gw_req *r = st->r;
    stream_free(st);
    gw_reply(r, 200, NULL);
}

static void on_backup(void *ctx, ms_err err, int fd, uint64_t size)
{
    struct gw_req *r = ctx;
    r->srv_id = 0;
    if (err) {
        gw_reply_stream_error(r, err, NULL);
        return;
    }
    struct snap_stream *st = calloc(1, sizeof(*st));
    if (!st) {
        close(fd);
        gw_reply_stream_error(r, MS_E_NOMEM, NULL);
        return;
    }
    st->r = r;
    st->fd = fd;
    st->total = size;
    sha256_init(&st->sha);
    http_set_close_cb(r->req, on_close, st);
    gw_stream_start(r);
    /* Each piece goes once the socket has taken the one before. */
    http_set_drain_cb(r->req, 0, send_next, st);
}

void gw_maint_snapshot(struct gw_req *r)
{
    if (!gw_parse_empty(r) || !gw_auth_maint(r, true, true))
        return;
    ms_err e = srv_backup(r->gw->srv, on_backup, r, &r->srv_id);
    if (e) {
        r->srv_id = 0;
        gw_reply_stream_error(r, e, NULL);
        return;
    }
    gw_wait(r);
}
