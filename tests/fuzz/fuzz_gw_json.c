/* fuzz_gw_json.c - the gateway's JSON parser and every KV request decoder, plus validation
 * and protobuf sizing of whatever decodes; and the watch stream's body (values back to back)
 * through the WatchRequest decoder. */
#include "codec.h"
#include "fuzz.h"

#include <assert.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena *a = arena_create(size * 4 + 1024);
    if (!a)
        return 0;
    struct mjson_dec d;
    struct mjson_val root;
    mjson_dec_init(&d, a);
    if (codec_root(&d, (const char *)data, size, &root)) {
        struct srv_req r;
        memset(&r, 0, sizeof(r));
        mjson_dec_init(&d, a);
        if (codec_decode_txn(&d, &root, &r.u.txn, 0) == MS_OK) {
            r.type = SRV_REQ_TXN;
            kv_check_txn(&r.u.txn, 128);
            codec_proto_size(&r);
        }
        mjson_dec_init(&d, a);
        if (codec_decode_range(&d, &root, &r.u.range) == MS_OK) {
            r.type = SRV_REQ_RANGE;
            kv_check_range(&r.u.range);
            codec_proto_size(&r);
        }
        mjson_dec_init(&d, a);
        if (codec_decode_put(&d, &root, &r.u.put) == MS_OK)
            kv_check_put(&r.u.put);
        mjson_dec_init(&d, a);
        if (codec_decode_del(&d, &root, &r.u.del) == MS_OK)
            kv_check_del(&r.u.del);
        mjson_dec_init(&d, a);
        codec_decode_compact(&d, &root, &r.u.compact);
    } else {
        assert(d.msg[0] != 0);
    }
    /* A watch body: every value in turn, as gw_watch reads it. */
    size_t off = 0;
    mjson_dec_init(&d, a);
    while (off < size) {
        off = mjson_skip_ws((const char *)data, size, off);
        if (off >= size)
            break;
        struct mjson_val v;
        struct codec_watch_req m;
        size_t used = 0;
        if (!mjson_parse_next(&d, (const char *)data + off, size - off, &v, &used) ||
            !codec_root_value(&d, &v) || codec_decode_watch(&d, &v, &m) != MS_OK) {
            assert(d.msg[0] != 0);
            break;
        }
        assert(used > 0 && used <= size - off);
        off += used;
    }
    arena_destroy(a);
    return 0;
}
