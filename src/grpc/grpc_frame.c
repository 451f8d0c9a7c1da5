/* grpc_frame.c - gRPC's length-prefixed messages (PROTOCOL-HTTP2.md, "Length-Prefixed-Message").
 *
 * Pure code over buffers: it knows neither HTTP/2 nor the services. A message's bytes may be
 * split across DATA frames anywhere, the prefix included; the length is checked against the
 * limit before anything is allocated for it.
 */
#include "metastore/grpc.h"

#include <string.h>

void grpc_deframer_init(struct grpc_deframer *d)
{
    memset(d, 0, sizeof(*d));
    buf_init(&d->msg);
}

void grpc_deframer_fini(struct grpc_deframer *d)
{
    buf_fini(&d->msg);
    d->hdr_len = 0;
    d->want = 0;
}

enum grpc_deframe grpc_deframe(struct grpc_deframer *d, const uint8_t *p, size_t len, size_t max,
                               size_t *used)
{
    size_t off = 0;
    if (d->hdr_len == sizeof(d->hdr) && d->msg.len == d->want) {
        /* the previous call handed out a complete message: start the next one */
        d->hdr_len = 0;
        d->want = 0;
        d->msg.len = 0;
    }
    while (d->hdr_len < sizeof(d->hdr)) {
        if (off == len) {
            *used = off;
            return GRPC_DEFRAME_MORE;
        }
        d->hdr[d->hdr_len++] = p[off++];
        if (d->hdr_len < sizeof(d->hdr))
            continue;
        d->want = be32_get(d->hdr + 1);
        if (d->hdr[0] != 0) {
            *used = off;
            return GRPC_DEFRAME_COMPRESSED;
        }
        if (d->want > max) {
            *used = off;
            return GRPC_DEFRAME_TOO_LARGE;
        }
    }
    size_t take = d->want - d->msg.len;
    if (take > len - off)
        take = len - off;
    if (take && d->msg.cap < d->want && !buf_reserve_exact(&d->msg, d->want - d->msg.len)) {
        *used = off;
        return GRPC_DEFRAME_TOO_LARGE;
    }
    buf_append(&d->msg, p + off, take);
    off += take;
    *used = off;
    return d->msg.len == d->want ? GRPC_DEFRAME_MSG : GRPC_DEFRAME_MORE;
}

void grpc_deframer_next(struct grpc_deframer *d, size_t keep)
{
    d->hdr_len = 0;
    d->want = 0;
    d->msg.len = 0;
    if (d->msg.cap > keep)
        buf_fini(&d->msg);
}

void grpc_frame_prefix(struct buf *out, size_t len)
{
    buf_putc(out, 0);
    buf_put_be32(out, (uint32_t)len);
}
