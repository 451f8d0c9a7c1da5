/* kv_rev.c - on-disk forms: revision keys (etcd revision.go layout) and KeyValue records.
 *
 * A revision key is 8 bytes of main, '_', 8 bytes of sub, all big-endian, plus 't' for a
 * tombstone, so byte order is revision order. A record is our own compact encoding of
 * mvccpb.KeyValue; decoding is strict (fuzzed).
 */
#include "kv_int.h"

#include "metastore/buf.h"

#define KV_RECORD_V1 1

void kv_rev_encode(struct kv_rev r, bool tombstone, uint8_t out[KV_REVKEY_LEN + 1], size_t *len)
{
    be64_put(out, (uint64_t)r.main);
    out[8] = '_';
    be64_put(out + 9, (uint64_t)r.sub);
    *len = KV_REVKEY_LEN;
    if (tombstone)
        out[(*len)++] = 't';
}

bool kv_rev_decode(const uint8_t *p, size_t len, struct kv_rev *r, bool *tombstone)
{
    if (len != KV_REVKEY_LEN && len != KV_REVKEY_LEN + 1)
        return false;
    if (p[8] != '_')
        return false;
    if (len == KV_REVKEY_LEN + 1 && p[KV_REVKEY_LEN] != 't')
        return false;
    r->main = (int64_t)be64_get(p);
    r->sub = (int64_t)be64_get(p + 9);
    if (r->main < 0 || r->sub < 0)
        return false;
    *tombstone = len == KV_REVKEY_LEN + 1;
    return true;
}

void kv_record_encode(const struct kv_kv *kv, struct buf *out)
{
    buf_putc(out, KV_RECORD_V1);
    buf_put_uvarint(out, kv->key_len);
    buf_append(out, kv->key, kv->key_len);
    buf_put_uvarint(out, (uint64_t)kv->create_revision);
    buf_put_uvarint(out, (uint64_t)kv->mod_revision);
    buf_put_uvarint(out, (uint64_t)kv->version);
    buf_put_be64(out, (uint64_t)kv->lease);
    buf_put_uvarint(out, kv->value_len);
    buf_append(out, kv->value, kv->value_len);
}

bool kv_record_decode(const uint8_t *p, size_t len, struct kv_kv *out)
{
    struct rd r;
    rd_init(&r, p, len);
    if (rd_u8(&r) != KV_RECORD_V1)
        return false;
    uint64_t klen = rd_uvarint(&r);
    if (klen > rd_left(&r))
        return false;
    out->key_len = (size_t)klen;
    out->key = rd_bytes(&r, out->key_len);
    uint64_t c = rd_uvarint(&r), m = rd_uvarint(&r), v = rd_uvarint(&r);
    if (c > INT64_MAX || m > INT64_MAX || v > INT64_MAX)
        return false;
    out->create_revision = (int64_t)c;
    out->mod_revision = (int64_t)m;
    out->version = (int64_t)v;
    out->lease = (int64_t)rd_be64(&r);
    uint64_t vlen = rd_uvarint(&r);
    if (r.err || vlen != rd_left(&r))
        return false;
    out->value_len = (size_t)vlen;
    out->value = rd_bytes(&r, out->value_len);
    return !r.err;
}
