/* raft_codec.c - the binary encoding of raft_codec.h.
 *
 * Layouts (v = uvarint, u8 = byte, be32 = big-endian u32):
 *   entry       u8 version | body
 *   entry body  v term | v index | u8 type | v len | len bytes
 *   hard state  u8 version | v term | v vote | v commit
 *   snapshot    u8 version | snap body
 *   snap body   v index | v term | v n_voters | v id... | v n_learners | v id...
 *   conf change u8 version | u8 type | v node_id | v ctx_len | ctx bytes
 *   message     u8 version | u8 type | u8 flags (bit 0 reject) | v to | v from | v term |
 *               v log_term | v index | v commit | v reject_hint | v ctx | v n_entries |
 *               entry body... | [snap body, MsgSnap only] | be32 crc32c(all before)
 * Decoders treat their input as hostile: every count is checked against the bytes that remain
 * before anything is allocated, and anything unexpected is MS_E_DATA_CORRUPT.
 */
#include "metastore/raft_codec.h"

#include "raft_int.h"

#include "metastore/crc32c.h"

#include <stdlib.h>
#include <string.h>

uint64_t raft_entry_size(const struct raft_entry *e)
{
    return buf_uvarint_len(e->term) + buf_uvarint_len(e->index) + 1 + buf_uvarint_len(e->len) +
           e->len;
}

/* ---- bodies ---- */

static void entry_body_encode(const struct raft_entry *e, struct buf *out)
{
    buf_put_uvarint(out, e->term);
    buf_put_uvarint(out, e->index);
    buf_putc(out, (char)(uint8_t)e->type);
    buf_put_uvarint(out, e->len);
    if (e->len)
        buf_append(out, e->data, e->len);
}

static bool entry_body_decode(struct rd *r, struct raft_entry *e)
{
    e->term = rd_uvarint(r);
    e->index = rd_uvarint(r);
    uint8_t type = rd_u8(r);
    uint64_t len = rd_uvarint(r);
    if (r->err || type > RAFT_ENTRY_CONF_CHANGE || len > RAFT_CODEC_MAX_ENTRY_BYTES ||
        len > rd_left(r))
        return false;
    e->type = (enum raft_entry_type)type;
    e->len = (size_t)len;
    e->data = len ? rd_bytes(r, (size_t)len) : NULL;
    return !r->err;
}

static void ids_encode(const uint64_t *ids, size_t n, struct buf *out)
{
    buf_put_uvarint(out, n);
    for (size_t i = 0; i < n; i++)
        buf_put_uvarint(out, ids[i]);
}

static bool ids_decode(struct rd *r, uint64_t *ids, size_t *n)
{
    uint64_t count = rd_uvarint(r);
    if (r->err || count > RAFT_MAX_NODES || count > rd_left(r))
        return false;
    for (uint64_t i = 0; i < count; i++)
        ids[i] = rd_uvarint(r);
    *n = (size_t)count;
    return !r->err;
}

static void snap_body_encode(const struct raft_snapshot_meta *s, struct buf *out)
{
    buf_put_uvarint(out, s->index);
    buf_put_uvarint(out, s->term);
    ids_encode(s->conf.voters, s->conf.n_voters, out);
    ids_encode(s->conf.learners, s->conf.n_learners, out);
}

static bool snap_body_decode(struct rd *r, struct raft_snapshot_meta *s)
{
    memset(s, 0, sizeof(*s));
    s->index = rd_uvarint(r);
    s->term = rd_uvarint(r);
    if (r->err || !ids_decode(r, s->conf.voters, &s->conf.n_voters) ||
        !ids_decode(r, s->conf.learners, &s->conf.n_learners))
        return false;
    /* sorted, unique, non-zero ids; learners not also voters; at most RAFT_MAX_NODES */
    return raft_conf_state_valid(&s->conf);
}

/* Accept only a known version byte; returns false on anything else. */
static bool version_ok(struct rd *r)
{
    return rd_u8(r) == RAFT_CODEC_VERSION && !r->err;
}

/* ---- standalone records ---- */

void raft_entry_encode(const struct raft_entry *e, struct buf *out)
{
    buf_putc(out, RAFT_CODEC_VERSION);
    entry_body_encode(e, out);
}

ms_err raft_entry_decode(const uint8_t *p, size_t len, struct raft_entry *out)
{
    struct rd r;
    rd_init(&r, p, len);
    memset(out, 0, sizeof(*out));
    if (!version_ok(&r) || !entry_body_decode(&r, out) || rd_left(&r) != 0) {
        memset(out, 0, sizeof(*out));
        return MS_E_DATA_CORRUPT;
    }
    return MS_OK;
}

void raft_hard_state_encode(const struct raft_hard_state *hs, struct buf *out)
{
    buf_putc(out, RAFT_CODEC_VERSION);
    buf_put_uvarint(out, hs->term);
    buf_put_uvarint(out, hs->vote);
    buf_put_uvarint(out, hs->commit);
}

ms_err raft_hard_state_decode(const uint8_t *p, size_t len, struct raft_hard_state *out)
{
    struct rd r;
    rd_init(&r, p, len);
    memset(out, 0, sizeof(*out));
    if (!version_ok(&r))
        return MS_E_DATA_CORRUPT;
    out->term = rd_uvarint(&r);
    out->vote = rd_uvarint(&r);
    out->commit = rd_uvarint(&r);
    if (r.err || rd_left(&r) != 0) {
        memset(out, 0, sizeof(*out));
        return MS_E_DATA_CORRUPT;
    }
    return MS_OK;
}

void raft_snapshot_meta_encode(const struct raft_snapshot_meta *s, struct buf *out)
{
    buf_putc(out, RAFT_CODEC_VERSION);
    snap_body_encode(s, out);
}

ms_err raft_snapshot_meta_decode(const uint8_t *p, size_t len, struct raft_snapshot_meta *out)
{
    struct rd r;
    rd_init(&r, p, len);
    if (!version_ok(&r) || !snap_body_decode(&r, out) || rd_left(&r) != 0) {
        memset(out, 0, sizeof(*out));
        return MS_E_DATA_CORRUPT;
    }
    return MS_OK;
}

void raft_cc_encode(const struct raft_conf_change *cc, struct buf *out)
{
    buf_putc(out, RAFT_CODEC_VERSION);
    buf_putc(out, (char)(uint8_t)cc->type);
    buf_put_uvarint(out, cc->node_id);
    buf_put_uvarint(out, cc->ctx_len);
    if (cc->ctx_len)
        buf_append(out, cc->ctx, cc->ctx_len);
}

ms_err raft_cc_decode(const uint8_t *p, size_t len, struct raft_conf_change *out)
{
    struct rd r;
    rd_init(&r, p, len);
    memset(out, 0, sizeof(*out));
    if (!version_ok(&r))
        return MS_E_DATA_CORRUPT;
    uint8_t type = rd_u8(&r);
    out->node_id = rd_uvarint(&r);
    uint64_t n = rd_uvarint(&r);
    if (r.err || type > RAFT_CC_ADD_LEARNER || n > RAFT_CODEC_MAX_CC_CTX || n != rd_left(&r)) {
        memset(out, 0, sizeof(*out));
        return MS_E_DATA_CORRUPT;
    }
    out->type = (enum raft_cc_type)type;
    out->ctx_len = (size_t)n;
    out->ctx = n ? rd_bytes(&r, (size_t)n) : NULL;
    return MS_OK;
}

/* ---- messages ---- */

ms_err raft_msg_encode(const struct raft_msg *m, struct buf *out)
{
    if ((unsigned)m->type >= RAFT_MSG_TYPE_COUNT_ || raft_msg_type_is_local(m->type) ||
        m->n_entries > RAFT_CODEC_MAX_ENTRIES)
        return MS_E_BAD_REQUEST;
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i].len > RAFT_CODEC_MAX_ENTRY_BYTES ||
            (unsigned)m->entries[i].type > RAFT_ENTRY_CONF_CHANGE)
            return MS_E_BAD_REQUEST;
    size_t start = out->len;
    buf_putc(out, RAFT_CODEC_VERSION);
    buf_putc(out, (char)(uint8_t)m->type);
    buf_putc(out, m->reject ? 1 : 0);
    buf_put_uvarint(out, m->to);
    buf_put_uvarint(out, m->from);
    buf_put_uvarint(out, m->term);
    buf_put_uvarint(out, m->log_term);
    buf_put_uvarint(out, m->index);
    buf_put_uvarint(out, m->commit);
    buf_put_uvarint(out, m->reject_hint);
    buf_put_uvarint(out, m->ctx);
    buf_put_uvarint(out, m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++)
        entry_body_encode(&m->entries[i], out);
    if (m->type == RAFT_MSG_SNAP)
        snap_body_encode(&m->snap, out);
    if (buf_failed(out))
        return MS_OK; /* the caller checks buf_failed */
    buf_put_be32(out, crc32c(0, out->p + start, out->len - start));
    return MS_OK;
}

void raft_msg_decoded_fini(struct raft_msg *m)
{
    free(m->entries);
    memset(m, 0, sizeof(*m));
}

ms_err raft_msg_decode(const uint8_t *p, size_t len, struct raft_msg *out)
{
    memset(out, 0, sizeof(*out));
    /* version, type, flags, nine varints and the CRC at the very least */
    if (len < 3 + 9 + 4 || len > RAFT_CODEC_MAX_MSG_BYTES)
        return MS_E_DATA_CORRUPT;
    if (be32_get(p + len - 4) != crc32c(0, p, len - 4))
        return MS_E_DATA_CORRUPT;
    struct rd r;
    rd_init(&r, p, len - 4);
    if (!version_ok(&r))
        return MS_E_DATA_CORRUPT;
    uint8_t type = rd_u8(&r);
    uint8_t flags = rd_u8(&r);
    if (r.err || type >= RAFT_MSG_TYPE_COUNT_ || raft_msg_type_is_local(type) || (flags & ~1u))
        return MS_E_DATA_CORRUPT;
    out->type = (enum raft_msg_type)type;
    out->reject = flags & 1u;
    out->to = rd_uvarint(&r);
    out->from = rd_uvarint(&r);
    out->term = rd_uvarint(&r);
    out->log_term = rd_uvarint(&r);
    out->index = rd_uvarint(&r);
    out->commit = rd_uvarint(&r);
    out->reject_hint = rd_uvarint(&r);
    out->ctx = rd_uvarint(&r);
    uint64_t n = rd_uvarint(&r);
    /* An encoded entry takes at least 4 bytes. */
    if (r.err || n > RAFT_CODEC_MAX_ENTRIES || n > rd_left(&r) / 4)
        goto out_corrupt;
    if (n) {
        out->entries = calloc((size_t)n, sizeof(*out->entries));
        if (!out->entries) {
            memset(out, 0, sizeof(*out));
            return MS_E_NOMEM;
        }
        out->n_entries = (size_t)n;
        for (size_t i = 0; i < n; i++)
            if (!entry_body_decode(&r, &out->entries[i]))
                goto out_corrupt;
    }
    if (out->type == RAFT_MSG_SNAP && !snap_body_decode(&r, &out->snap))
        goto out_corrupt;
    if (r.err || rd_left(&r) != 0)
        goto out_corrupt;
    return MS_OK;

out_corrupt:
    raft_msg_decoded_fini(out);
    return MS_E_DATA_CORRUPT;
}
