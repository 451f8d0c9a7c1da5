/* gw_kv.c - the /v3/kv/... handlers: decode the body, submit to srv, reply from the completion. */
#include "codec.h"
#include "gw_int.h"

static void finish(struct gw_req *r, struct mjson_dec *d, ms_err e)
{
    if (e) {
        gw_reply_error(r, e, d->msg);
        return;
    }
    gw_submit(r);
}

void gw_kv_range(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_RANGE;
    ms_err e = codec_decode_range(&d, &root, &r->sreq.u.range);
    /* A learner serves serializable ranges only (etcd's isRPCSupportedForLearner). */
    if (!e && !r->sreq.u.range.serializable && srv_is_learner(r->gw->srv))
        e = MS_E_LEARNER_RPC;
    finish(r, &d, e);
}

void gw_kv_put(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_PUT;
    finish(r, &d, codec_decode_put(&d, &root, &r->sreq.u.put));
}

void gw_kv_deleterange(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_DELETE;
    finish(r, &d, codec_decode_del(&d, &root, &r->sreq.u.del));
}

void gw_kv_txn(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_TXN;
    finish(r, &d, codec_decode_txn(&d, &root, &r->sreq.u.txn, 0));
}

void gw_kv_compaction(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_COMPACT;
    finish(r, &d, codec_decode_compact(&d, &root, &r->sreq.u.compact));
}
