/* fuzz_grpc.c - gRPC message framing and the KV, Watch, Auth, Lock and Election request
 * decoders. Input: one byte choosing the piece size, one choosing the request type (a KV
 * request, a WatchRequest, one of the Auth service's, or a Lock or Election one), then a stream of
 * length-prefixed messages. The deframer never takes more bytes than given nor holds a message over
 * the limit; every message it completes is decoded as the chosen request into an arena, and the
 * decoded tree is walked. */
#include "fuzz.h"
#include "grpc_int.h"
#include "metastore/arena.h"
#include "metastore/grpc.h"

#include <stdlib.h>

#define MAX_MSG (64u << 10)

static const enum srv_req_type TYPES[] = {SRV_REQ_RANGE, SRV_REQ_PUT, SRV_REQ_DELETE, SRV_REQ_TXN,
                                          SRV_REQ_COMPACT};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = (size_t)data[0] + 1;
    /* the KV requests, then WatchRequest, then the Auth service's requests, then the Lock and
     * Election services' */
    size_t n_types = sizeof(TYPES) / sizeof(TYPES[0]);
    size_t n_kv_auth = n_types + AUTH_OP_COUNT_;
    size_t pick = data[1] % (n_kv_auth + SRV_ELECT_RESIGN);
    bool watch = pick == n_types;
    enum auth_op auth = pick > n_types && pick < n_kv_auth ? (enum auth_op)(pick - n_types) : 0;
    enum srv_lock_op lock = pick >= n_kv_auth ? (enum srv_lock_op)(pick - n_kv_auth + 1) : 0;
    enum srv_req_type type = TYPES[pick % n_types];
    data += 2;
    size -= 2;
    struct arena *a = arena_create(4096);
    struct grpc_deframer d;
    grpc_deframer_init(&d);
    size_t off = 0;
    while (off < size && a) {
        size_t piece = size - off < step ? size - off : step;
        size_t used;
        enum grpc_deframe r = grpc_deframe(&d, data + off, piece, MAX_MSG, &used);
        if (used > piece || d.msg.len > MAX_MSG)
            abort();
        off += used;
        if (r == GRPC_DEFRAME_MORE) {
            if (used != piece)
                abort();
            continue;
        }
        if (r != GRPC_DEFRAME_MSG)
            break;
        struct srv_req req;
        struct grpc_watch_req w;
        struct auth_req ar;
        struct srv_lock_req lr;
        if (lock) {
            if (grpc_lock_decode(lock, d.msg.p, d.msg.len, a, &lr) == MS_OK &&
                (lr.op != lock || (lr.name_len && !lr.name) || (lr.key_len && !lr.key) ||
                 (lr.has_leader && lr.leader.key_len && !lr.leader.key)))
                abort();
        } else if (auth) {
            if (grpc_auth_decode(auth, d.msg.p, d.msg.len, a, &ar) == MS_OK &&
                (ar.op != auth || (ar.name.len && !ar.name.p)))
                abort();
        } else if (watch) {
            if (grpc_watch_decode(d.msg.p, d.msg.len, a, &w) == MS_OK &&
                w.kind == GRPC_WATCH_CREATE && w.create.span.key_len && !w.create.span.key)
                abort();
        } else if (grpc_kv_decode(type, d.msg.p, d.msg.len, a, &req) == MS_OK &&
                   type == SRV_REQ_TXN)
            (void)kv_txn_writes(&req.u.txn);
        arena_reset(a);
    }
    grpc_deframer_fini(&d);
    arena_destroy(a);
    return 0;
}
