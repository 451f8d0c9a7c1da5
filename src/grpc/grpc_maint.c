/* grpc_maint.c - etcd's Maintenance service (Status, Hash, Alarm, Defragment, Snapshot,
 * MoveLeader), answered from the server's state as the gateway does.
 *
 * Snapshot is a server stream: the server writes a consistent backup file (srv_backup), which
 * comes open and already unlinked, and is sent in 32 KiB messages, each read only when the one
 * before has been taken by HTTP/2 (the drain hook), so memory stays bounded however slow the
 * client; the last message's blob is the SHA-256 of everything before it, as etcd sends it. The
 * file is zero-padded to a multiple of 512 bytes (a bbolt file always is, and etcdctl snapshot save
 * refuses anything else); snap_read finds the snapshot inside such a saved file.
 */
#include "grpc_int.h"

#include "metastore/log.h"
#include "metastore/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAP_PIECE (32u << 10)

static const char *const ALARM_NAME[] = {"NONE", "NOSPACE", "CORRUPT"};

void grpc_maint_status(struct grpc_call *call, const uint8_t *p, size_t len)
{
    if (!grpc_call_unpack(call, &etcdserverpb__status_request__descriptor, p, len))
        return;
    struct srv *s = grpc_call_srv(call);
    struct srv_status st;
    srv_status(s, &st);
    Etcdserverpb__StatusResponse r = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    r.header = grpc_header(call, 0, true);
    r.version = (char *)MS_ETCD_VERSION;
    r.dbsize = (int64_t)st.db_size;
    r.leader = st.leader;
    r.raftindex = st.raft_index;
    r.raftterm = st.raft_term;
    r.raftappliedindex = st.raft_applied_index;
    r.dbsizeinuse = (int64_t)st.db_size_in_use;
    r.islearner = st.is_learner;
    const struct srv_alarm *alarms;
    size_t n_alarms;
    srv_alarms(s, &alarms, &n_alarms);
    bool no_leader = !srv_has_leader(s);
    r.errors = arena_calloc(call->a, n_alarms + 1, sizeof(*r.errors));
    if (!r.header || !r.errors) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    if (no_leader)
        r.errors[r.n_errors++] = (char *)ms_err_msg(MS_E_NO_LEADER);
    /* proto text of each AlarmMember, as etcd prints it (trailing space included) */
    for (size_t i = 0; i < n_alarms; i++) {
        char *t = arena_alloc(call->a, 96);
        if (!t) {
            grpc_call_fail(call, MS_E_NOMEM, NULL);
            return;
        }
        int64_t a = alarms[i].alarm;
        snprintf(t, 96, "memberID:%llu alarm:%s ", (unsigned long long)alarms[i].member_id,
                 a >= 0 && a <= 2 ? ALARM_NAME[a] : "NONE");
        r.errors[r.n_errors++] = t;
    }
    grpc_call_reply(call, &r.base);
}

void grpc_maint_hash(struct grpc_call *call, const uint8_t *p, size_t len)
{
    if (!grpc_call_unpack(call, &etcdserverpb__hash_request__descriptor, p, len) ||
        !grpc_call_maint_auth(call, true))
        return;
    uint32_t hash;
    int64_t rev;
    ms_err e = srv_hash(grpc_call_srv(call), &hash, &rev);
    if (e) {
        grpc_call_fail(call, e, NULL);
        return;
    }
    Etcdserverpb__HashResponse r = ETCDSERVERPB__HASH_RESPONSE__INIT;
    r.header = grpc_header(call, rev, true);
    r.hash = hash;
    if (!r.header)
        grpc_call_fail(call, MS_E_NOMEM, NULL);
    else
        grpc_call_reply(call, &r.base);
}

void grpc_maint_hash_kv(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__HashKVRequest *m = etcdserverpb__hash_kvrequest__unpack(&al, len, p);
    if (!m) {
        grpc_call_bad_message(call, "HashKVRequest");
        return;
    }
    if (!grpc_call_maint_auth(call, true))
        return;
    uint32_t hash;
    int64_t rev, compact_rev;
    ms_err e = srv_hash_kv(grpc_call_srv(call), m->revision, &hash, &compact_rev, &rev);
    if (e) {
        grpc_call_fail(call, e, NULL);
        return;
    }
    Etcdserverpb__HashKVResponse r = ETCDSERVERPB__HASH_KVRESPONSE__INIT;
    r.header = grpc_header(call, rev, true);
    r.hash = hash;
    r.compact_revision = compact_rev;
    if (!r.header)
        grpc_call_fail(call, MS_E_NOMEM, NULL);
    else
        grpc_call_reply(call, &r.base);
}

/* An AlarmResponse (etcd leaves its header unset). */
static void reply_alarms(struct grpc_call *call, const struct srv_alarm *a, size_t n)
{
    Etcdserverpb__AlarmResponse r = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    r.alarms = arena_calloc(call->a, n ? n : 1, sizeof(*r.alarms));
    Etcdserverpb__AlarmMember *m = arena_calloc(call->a, n ? n : 1, sizeof(*m));
    if (!r.alarms || !m) {
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        etcdserverpb__alarm_member__init(&m[i]);
        m[i].memberid = a[i].member_id;
        m[i].alarm = (Etcdserverpb__AlarmType)a[i].alarm;
        r.alarms[i] = &m[i];
    }
    r.n_alarms = n;
    grpc_call_reply(call, &r.base);
}

static void on_alarm_done(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    call->srv_id = 0;
    if (err)
        grpc_call_fail(call, err, NULL);
    else
        reply_alarms(call, res->u.alarm.alarms, res->u.alarm.n);
}

void grpc_maint_alarm(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__AlarmRequest *m = etcdserverpb__alarm_request__unpack(&al, len, p);
    if (!m) {
        grpc_call_bad_message(call, "AlarmRequest");
        return;
    }
    if (m->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        const struct srv_alarm *alarms;
        size_t n;
        srv_alarms(grpc_call_srv(call), &alarms, &n);
        reply_alarms(call, alarms, n);
        return;
    }
    call->sreq.type = SRV_REQ_ALARM;
    call->sreq.u.alarm.action = m->action;
    call->sreq.u.alarm.member_id = m->memberid;
    call->sreq.u.alarm.alarm = m->alarm;
    grpc_call_submit(call, on_alarm_done);
}

/* Defragment and MoveLeader: etcd 3.4 answers both with an empty message (no header), the same
 * bytes whichever of the two types is packed. */
static void on_done_empty(void *ctx, ms_err err, const struct srv_result *res)
{
    struct grpc_call *call = ctx;
    (void)res;
    call->srv_id = 0;
    if (err) {
        grpc_call_fail(call, err, NULL);
        return;
    }
    Etcdserverpb__DefragmentResponse r = ETCDSERVERPB__DEFRAGMENT_RESPONSE__INIT;
    grpc_call_reply(call, &r.base);
}

void grpc_maint_defragment(struct grpc_call *call, const uint8_t *p, size_t len)
{
    if (!grpc_call_unpack(call, &etcdserverpb__defragment_request__descriptor, p, len) ||
        !grpc_call_maint_auth(call, true))
        return;
    ms_err e = srv_defrag(grpc_call_srv(call), on_done_empty, call, &call->srv_id);
    if (e) {
        call->srv_id = 0;
        grpc_call_fail(call, e, NULL);
    }
}

/* ---- MoveLeader ---- */

/* etcd: no auth check; on the leader only; answered once the target leads. */
void grpc_maint_move_leader(struct grpc_call *call, const uint8_t *p, size_t len)
{
    ProtobufCAllocator al;
    grpc_allocator(call->a, &al);
    Etcdserverpb__MoveLeaderRequest *m = etcdserverpb__move_leader_request__unpack(&al, len, p);
    if (!m) {
        grpc_call_bad_message(call, "MoveLeaderRequest");
        return;
    }
    ms_err e =
        srv_move_leader(grpc_call_srv(call), m->targetid, on_done_empty, call, &call->srv_id);
    if (e) {
        call->srv_id = 0;
        grpc_call_fail(call, e, NULL);
    }
}

/* ---- Snapshot ---- */

struct snap {
    int fd;
    uint64_t size;  /* the file's bytes, */
    uint64_t total; /* then zeros up to this multiple of 512 */
    uint64_t sent;
    struct sha256 sha;
};

/* Queue the next message (a piece, then the digest), or the status once both are out. */
static void snap_next(struct grpc_call *call)
{
    struct snap *st = call->svc;
    Etcdserverpb__SnapshotResponse r = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
    uint8_t piece[SNAP_PIECE];
    if (st->sent < st->total) {
        size_t want =
            st->total - st->sent < SNAP_PIECE ? (size_t)(st->total - st->sent) : SNAP_PIECE;
        ssize_t n = (ssize_t)want;
        if (st->sent >= st->size)
            memset(piece, 0, want); /* the padding */
        else
            n = read(st->fd, piece, st->size - st->sent < want ? st->size - st->sent : want);
        if (n <= 0) {
            log_error("snapshot: read failed after %llu bytes", (unsigned long long)st->sent);
            grpc_call_fail(call, MS_E_IO, NULL);
            return;
        }
        sha256_update(&st->sha, piece, (size_t)n);
        st->sent += (uint64_t)n;
        r.remaining_bytes = st->total - st->sent;
        r.blob.data = piece;
        r.blob.len = (size_t)n;
        grpc_call_queue(call, &r.base);
        return;
    }
    if (st->fd >= 0) {
        close(st->fd);
        st->fd = -1;
        sha256_final(&st->sha, piece);
        r.blob.data = piece;
        r.blob.len = 32;
        grpc_call_queue(call, &r.base);
        return;
    }
    grpc_call_finish(call, MS_GRPC_OK, NULL);
}

void grpc_maint_snapshot_free(struct grpc_call *call)
{
    struct snap *st = call->svc;
    if (st && st->fd >= 0)
        close(st->fd);
    free(st);
    call->svc = NULL;
}

static void on_backup(void *ctx, ms_err err, int fd, uint64_t size)
{
    struct grpc_call *call = ctx;
    call->srv_id = 0;
    if (err) {
        grpc_call_fail(call, err, NULL);
        return;
    }
    struct snap *st = calloc(1, sizeof(*st));
    if (!st) {
        close(fd);
        grpc_call_fail(call, MS_E_NOMEM, NULL);
        return;
    }
    st->fd = fd;
    st->size = size;
    st->total = (size + 511) / 512 * 512;
    sha256_init(&st->sha);
    call->svc = st;
    grpc_call_start_stream(call);
}

void grpc_maint_snapshot(struct grpc_call *call, const uint8_t *p, size_t len)
{
    if (!grpc_call_unpack(call, &etcdserverpb__snapshot_request__descriptor, p, len) ||
        !grpc_call_maint_auth(call, true))
        return;
    ms_err e = srv_backup(grpc_call_srv(call), on_backup, call, &call->srv_id);
    if (e) {
        call->srv_id = 0;
        grpc_call_fail(call, e, NULL);
    }
}

void grpc_maint_snapshot_drain(struct grpc_call *call)
{
    if (call->svc)
        snap_next(call);
}
