/* gw_maint.c - /v3/maintenance/{status,hash,alarm}: answered at once from the server's state,
 * but for alarm changes (a log entry). */
#include "codec.h"
#include "gw_int.h"

#include <stdio.h>

void gw_maint_status(struct gw_req *r)
{
    if (!gw_parse_empty(r))
        return;
    struct srv_status st;
    struct buf b;
    struct mjson_w w;
    srv_status(r->gw->srv, &st);
    gw_json_begin(r, &b, &w, true);
    mjson_w_key(&w, "version");
    mjson_w_cstr(&w, MS_ETCD_VERSION);
    if (st.db_size) {
        mjson_w_key(&w, "dbSize");
        codec_write_i64(&w, (int64_t)st.db_size);
    }
    if (st.leader) {
        mjson_w_key(&w, "leader");
        codec_write_u64(&w, st.leader);
    }
    if (st.raft_index) {
        mjson_w_key(&w, "raftIndex");
        codec_write_u64(&w, st.raft_index);
    }
    if (st.raft_term) {
        mjson_w_key(&w, "raftTerm");
        codec_write_u64(&w, st.raft_term);
    }
    if (st.raft_applied_index) {
        mjson_w_key(&w, "raftAppliedIndex");
        codec_write_u64(&w, st.raft_applied_index);
    }
    const struct srv_alarm *alarms;
    size_t n_alarms;
    srv_alarms(r->gw->srv, &alarms, &n_alarms);
    bool no_leader = !srv_has_leader(r->gw->srv);
    if (n_alarms || no_leader) {
        mjson_w_key(&w, "errors");
        mjson_w_arr(&w);
        if (no_leader)
            mjson_w_cstr(&w, ms_err_msg(MS_E_NO_LEADER));
        /* proto text of each AlarmMember, as etcd prints it (trailing space included). */
        for (size_t i = 0; i < n_alarms; i++) {
            char text[96];
            snprintf(text, sizeof(text), "memberID:%llu alarm:%s ",
                     (unsigned long long)alarms[i].member_id, codec_alarm_name(alarms[i].alarm));
            mjson_w_cstr(&w, text);
        }
        mjson_w_arr_end(&w);
    }
    if (st.db_size_in_use) {
        mjson_w_key(&w, "dbSizeInUse");
        codec_write_i64(&w, (int64_t)st.db_size_in_use);
    }
    if (st.is_learner) {
        mjson_w_key(&w, "isLearner");
        mjson_w_bool(&w, true);
    }
    mjson_w_obj_end(&w);
    gw_reply(r, 200, &b);
}

void gw_maint_hash(struct gw_req *r)
{
    if (!gw_parse_empty(r) || !gw_auth_maint(r, true, false))
        return;
    uint32_t hash;
    int64_t rev;
    ms_err e = srv_hash(r->gw->srv, &hash, &rev);
    if (e) {
        gw_reply_error(r, e, NULL);
        return;
    }
    struct buf b;
    struct mjson_w w;
    gw_json_begin(r, &b, &w, true);
    if (hash) {
        mjson_w_key(&w, "hash");
        mjson_w_num(&w, hash);
    }
    mjson_w_obj_end(&w);
    gw_reply(r, 200, &b);
}

static void encode_alarms(struct gw_req *r, const struct srv_result *res, struct buf *out)
{
    struct mjson_w w;
    (void)r;
    mjson_w_init(&w, out);
    codec_alarms(&w, res->u.alarm.alarms, res->u.alarm.n);
}

void gw_maint_alarm(struct gw_req *r)
{
    struct mjson_dec d;
    struct mjson_val root;
    if (!gw_parse_root(r, &d, &root))
        return;
    r->sreq.type = SRV_REQ_ALARM;
    if (codec_decode_alarm(&d, &root, &r->sreq.u.alarm)) {
        gw_reply_error(r, MS_E_BAD_REQUEST, d.msg);
        return;
    }
    if (!gw_auth_maint(r, false, false))
        return;
    if (r->sreq.u.alarm.action == SRV_ALARM_GET) {
        const struct srv_alarm *alarms;
        size_t n;
        struct buf b;
        struct mjson_w w;
        srv_alarms(r->gw->srv, &alarms, &n);
        buf_init(&b);
        mjson_w_init(&w, &b);
        codec_alarms(&w, alarms, n);
        gw_reply(r, 200, &b);
        return;
    }
    r->encode = encode_alarms;
    gw_submit(r);
}
