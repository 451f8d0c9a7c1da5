/* test_raft_core.c - the core's contracts and features beyond the paper's rules: the Ready
 * ordering contract, input validation, learners, lease reads, transfers, membership edge cases,
 * flow-control corners, the in-memory log and the codec.
 */
#include "metastore/crc32c.h"
#include "metastore/raft_codec.h"
#include "raft_testnet.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static const uint64_t V3[] = {1, 2, 3};
static const struct tn_opts PLAIN = {.no_pre_vote = true, .no_check_quorum = true};

static struct raft_status st_of(struct tn *t, uint64_t id)
{
    struct raft_status st;
    raft_status(tn_raft(t, id), &st);
    return st;
}

static void cluster3(struct tn *t, const struct tn_opts *o)
{
    tn_init(t);
    tn_add_nodes(t, 1, 3, V3, 3, NULL, 0, o);
    raft_campaign(tn_raft(t, 1));
    tn_stabilize(t);
    ck_assert_int_eq(st_of(t, 1).soft.role, RAFT_LEADER);
}

static bool has_msg(const struct raft_msg *v, size_t n, enum raft_msg_type type, uint64_t to)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].type == type && v[i].to == to)
            return true;
    return false;
}

/* ---- the Ready contract ---- */

START_TEST(vote_waits_for_persistence)
{
    struct tn t;
    tn_init(&t);
    tn_add_nodes(&t, 1, 1, V3, 3, NULL, 0, &PLAIN);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 2, .to = 1, .term = 1};
    ck_assert_int_eq(raft_step(tn_raft(&t, 1), &v), MS_OK);
    struct raft_ready rd;
    ck_assert_int_eq(raft_ready(tn_raft(&t, 1), &rd), MS_OK);
    /* the grant goes out only after the vote is durable, and the Ready says to sync */
    ck_assert(!has_msg(rd.msgs, rd.n_msgs, RAFT_MSG_VOTE_RESP, 2));
    ck_assert(has_msg(rd.msgs_after_persist, rd.n_msgs_after_persist, RAFT_MSG_VOTE_RESP, 2));
    ck_assert(rd.must_sync);
    ck_assert(rd.hard_changed);
    ck_assert_uint_eq(rd.hard.vote, 2);
    /* a second Ready before advancing is refused */
    struct raft_ready rd2;
    ck_assert_int_eq(raft_ready(tn_raft(&t, 1), &rd2), MS_E_BAD_REQUEST);
    ck_assert(!raft_has_ready(tn_raft(&t, 1)));
    raft_advance(tn_raft(&t, 1), NULL);
    tn_fini(&t);
}
END_TEST

START_TEST(leader_counts_itself_only_after_persisting)
{
    struct tn t;
    tn_init(&t);
    const uint64_t one[] = {1};
    tn_add_nodes(&t, 1, 1, one, 1, NULL, 0, &PLAIN);
    raft_campaign(tn_raft(&t, 1));
    tn_process_ready(&t, 1);
    ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_LEADER);
    uint64_t commit = st_of(&t, 1).hard.commit;
    ck_assert_int_eq(raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1), MS_OK);
    /* a single voter: the entry still commits only once its own append is durable */
    ck_assert_uint_eq(st_of(&t, 1).hard.commit, commit);
    struct raft_ready rd;
    ck_assert_int_eq(raft_ready(tn_raft(&t, 1), &rd), MS_OK);
    ck_assert_uint_eq(rd.n_entries, 1);
    ck_assert_uint_eq(rd.n_committed, 0);
    ck_assert_uint_eq(st_of(&t, 1).hard.commit, commit);
    raft_mem_append(t.nodes[1].mem, rd.entries, rd.n_entries);
    raft_advance(tn_raft(&t, 1), NULL);
    ck_assert_uint_eq(st_of(&t, 1).hard.commit, commit + 1);
    /* and comes back committed in the next Ready */
    ck_assert_int_eq(raft_ready(tn_raft(&t, 1), &rd), MS_OK);
    ck_assert_uint_eq(rd.n_committed, 1);
    ck_assert(tu_bytes_eq(rd.committed[0].data, rd.committed[0].len, "x"));
    raft_advance(tn_raft(&t, 1), NULL);
    tn_fini(&t);
}
END_TEST

START_TEST(leader_sends_appends_before_persisting)
{
    struct tn t;
    cluster3(&t, &PLAIN);
    ck_assert_int_eq(raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1), MS_OK);
    struct raft_ready rd;
    ck_assert_int_eq(raft_ready(tn_raft(&t, 1), &rd), MS_OK);
    ck_assert(has_msg(rd.msgs, rd.n_msgs, RAFT_MSG_APP, 2));
    ck_assert(has_msg(rd.msgs, rd.n_msgs, RAFT_MSG_APP, 3));
    ck_assert_uint_eq(rd.n_msgs_after_persist, 0); /* the self-ack is internal */
    raft_mem_append(t.nodes[1].mem, rd.entries, rd.n_entries);
    raft_advance(tn_raft(&t, 1), NULL);
    tn_fini(&t);
}
END_TEST

START_TEST(ready_memory_survives_steps_before_advance)
{
    /* A follower gets entries, takes a Ready, then a new leader overwrites them before the
     * Ready is advanced: the Ready's copies stay intact and the stale ack is ignored. */
    struct tn t;
    tn_init(&t);
    tn_add_nodes(&t, 1, 1, V3, 3, NULL, 0, &PLAIN);
    struct raft *r = tn_raft(&t, 1);
    struct raft_entry e1 = {.term = 1, .index = 1, .len = 3, .data = (const uint8_t *)"old"};
    struct raft_msg m1 = {
        .type = RAFT_MSG_APP, .from = 2, .to = 1, .term = 1, .n_entries = 1, .entries = &e1};
    ck_assert_int_eq(raft_step(r, &m1), MS_OK);
    struct raft_ready rd;
    ck_assert_int_eq(raft_ready(r, &rd), MS_OK);
    ck_assert_uint_eq(rd.n_entries, 1);
    struct raft_entry e2 = {.term = 2, .index = 1, .len = 3, .data = (const uint8_t *)"new"};
    struct raft_msg m2 = {
        .type = RAFT_MSG_APP, .from = 3, .to = 1, .term = 2, .n_entries = 1, .entries = &e2};
    ck_assert_int_eq(raft_step(r, &m2), MS_OK);
    ck_assert(tu_bytes_eq(rd.entries[0].data, rd.entries[0].len, "old"));
    raft_mem_append(t.nodes[1].mem, rd.entries, rd.n_entries);
    raft_advance(r, NULL);
    ck_assert_int_eq(raft_ready(r, &rd), MS_OK);
    ck_assert_uint_eq(rd.n_entries, 1);
    ck_assert(tu_bytes_eq(rd.entries[0].data, rd.entries[0].len, "new"));
    ck_assert_uint_eq(rd.entries[0].term, 2);
    raft_mem_append(t.nodes[1].mem, rd.entries, rd.n_entries);
    raft_advance(r, NULL);
    ck_assert_uint_eq(raft_mem_entry(t.nodes[1].mem, 1)->term, 2);
    tn_fini(&t);
}
END_TEST

START_TEST(committed_bytes_per_ready_limit)
{
    struct tn t;
    tn_init(&t);
    const uint64_t one[] = {1};
    tn_add_nodes(&t, 1, 1, one, 1, NULL, 0, &PLAIN);
    t.nodes[1].cfg.max_committed_bytes_per_ready = 20;
    tn_restart(&t, 1);
    raft_campaign(tn_raft(&t, 1));
    tn_process_ready(&t, 1);
    for (int i = 0; i < 5; i++)
        raft_propose(tn_raft(&t, 1), (const uint8_t *)"0123456789", 10);
    struct raft_ready rd;
    ck_assert_int_eq(raft_ready(tn_raft(&t, 1), &rd), MS_OK);
    raft_mem_append(t.nodes[1].mem, rd.entries, rd.n_entries);
    raft_advance(tn_raft(&t, 1), NULL);
    size_t batches = 0, total = 0;
    while (raft_has_ready(tn_raft(&t, 1))) {
        ck_assert_int_eq(raft_ready(tn_raft(&t, 1), &rd), MS_OK);
        ck_assert_uint_le(rd.n_committed, 1); /* each 10-byte entry is 14 encoded bytes */
        total += rd.n_committed;
        batches++;
        raft_advance(tn_raft(&t, 1), NULL);
    }
    ck_assert_uint_eq(total, 5);
    ck_assert_uint_ge(batches, 5);
    tn_fini(&t);
}
END_TEST

/* ---- input validation ---- */

START_TEST(step_rejects_bad_input)
{
    struct tn t;
    cluster3(&t, &PLAIN);
    struct raft *r = tn_raft(&t, 2);
    struct raft_msg hup = {.type = RAFT_MSG_HUP, .from = 1, .to = 2, .term = 1};
    ck_assert_int_eq(raft_step(r, &hup), MS_E_BAD_REQUEST);
    struct raft_msg wrong_to = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3, .term = 1};
    ck_assert_int_eq(raft_step(r, &wrong_to), MS_E_BAD_REQUEST);
    struct raft_msg no_term = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2};
    ck_assert_int_eq(raft_step(r, &no_term), MS_E_BAD_REQUEST);
    struct raft_msg bad_type = {.type = (enum raft_msg_type)99, .from = 1, .to = 2, .term = 1};
    ck_assert_int_eq(raft_step(r, &bad_type), MS_E_BAD_REQUEST);
    /* entries out of sequence, or above the leader's term */
    struct raft_entry gap[2] = {{.term = 1, .index = 2}, {.term = 1, .index = 4}};
    struct raft_msg app = {.type = RAFT_MSG_APP,
                           .from = 1,
                           .to = 2,
                           .term = 1,
                           .index = 1,
                           .log_term = 1,
                           .n_entries = 2,
                           .entries = gap};
    ck_assert_int_eq(raft_step(r, &app), MS_E_BAD_REQUEST);
    gap[1].index = 3;
    gap[1].term = 5;
    ck_assert_int_eq(raft_step(r, &app), MS_E_BAD_REQUEST);
    struct raft_msg empty_prop = {.type = RAFT_MSG_PROP, .from = 3, .to = 2};
    ck_assert_int_eq(raft_step(r, &empty_prop), MS_E_BAD_REQUEST);
    struct raft_msg bad_snap = {
        .type = RAFT_MSG_SNAP,
        .from = 1,
        .to = 2,
        .term = 1,
        .snap = {.index = 5, .term = 1, .conf = {.n_voters = 2, .voters = {3, 1}}}};
    ck_assert_int_eq(raft_step(r, &bad_snap), MS_E_BAD_REQUEST);
    /* a response from a node outside the configuration */
    struct raft_msg stranger = {.type = RAFT_MSG_APP_RESP, .from = 9, .to = 2, .term = 1};
    ck_assert_int_eq(raft_step(r, &stranger), MS_E_NOT_EXIST);
    /* terms near 2^64 would overflow; an entry too large to travel is refused at once */
    struct raft_msg huge = {.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 2, .term = UINT64_MAX};
    ck_assert_int_eq(raft_step(r, &huge), MS_E_BAD_REQUEST);
    uint8_t byte = 0;
    ck_assert_int_eq(raft_propose(tn_raft(&t, 1), &byte, (size_t)RAFT_CODEC_MAX_ENTRY_BYTES + 1),
                     MS_E_REQUEST_TOO_LARGE);
    /* a heartbeat naming a commit beyond our log is not trusted */
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 1, .commit = 99};
    ck_assert_int_eq(raft_step(r, &hb), MS_OK);
    ck_assert_uint_le(st_of(&t, 2).hard.commit, st_of(&t, 2).last_index);
    tn_fini(&t);
}
END_TEST

START_TEST(create_validates_config)
{
    struct raft_mem *mem = raft_mem_create();
    struct raft_config c;
    struct raft *r = NULL;
    raft_config_default(&c, 1);
    c.log = &raft_mem_ops;
    c.log_ctx = mem;
    c.election_tick = 1; /* not above heartbeat_tick */
    ck_assert_int_eq(raft_create(&c, NULL, NULL, &r), MS_E_BAD_REQUEST);
    raft_config_default(&c, 0);
    c.log = &raft_mem_ops;
    c.log_ctx = mem;
    ck_assert_int_eq(raft_create(&c, NULL, NULL, &r), MS_E_BAD_REQUEST);
    raft_config_default(&c, 1);
    c.log = &raft_mem_ops;
    c.log_ctx = mem;
    c.read_only = RAFT_READ_ONLY_LEASE;
    c.check_quorum = false;
    ck_assert_int_eq(raft_create(&c, NULL, NULL, &r), MS_E_BAD_REQUEST);
    c.check_quorum = true;
    struct raft_hard_state hs = {.term = 1, .commit = 5}; /* beyond the (empty) log */
    ck_assert_int_eq(raft_create(&c, &hs, NULL, &r), MS_E_BAD_REQUEST);
    struct raft_conf_state dup = {.n_voters = 2, .voters = {2, 2}};
    ck_assert_int_eq(raft_create(&c, NULL, &dup, &r), MS_E_BAD_REQUEST);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(raft_create(&c, NULL, NULL, &r), MS_OK);
    raft_destroy(r);
    raft_destroy(NULL);
    raft_mem_destroy(mem);
}
END_TEST

START_TEST(bootstrap)
{
    struct raft_mem *mem = raft_mem_create();
    struct raft_config c;
    raft_config_default(&c, 1);
    c.log = &raft_mem_ops;
    c.log_ctx = mem;
    struct raft *r;
    ck_assert_int_eq(raft_create(&c, NULL, NULL, &r), MS_OK);
    const uint64_t dup[] = {1, 1};
    ck_assert_int_eq(raft_bootstrap(r, dup, 2), MS_E_BAD_REQUEST);
    ck_assert_int_eq(raft_bootstrap(r, V3, 0), MS_E_BAD_REQUEST);
    ck_assert_int_eq(raft_bootstrap(r, V3, 3), MS_OK);
    struct raft_status st;
    raft_status(r, &st);
    ck_assert_uint_eq(st.conf.n_voters, 3);
    ck_assert_uint_eq(st.hard.commit, 3);
    ck_assert_uint_eq(st.hard.term, 1);
    struct raft_ready rd;
    ck_assert_int_eq(raft_ready(r, &rd), MS_OK);
    ck_assert_uint_eq(rd.n_entries, 3);
    ck_assert(rd.hard_changed && rd.must_sync);
    struct raft_conf_change cc;
    ck_assert_int_eq(raft_cc_decode(rd.entries[2].data, rd.entries[2].len, &cc), MS_OK);
    ck_assert_int_eq(cc.type, RAFT_CC_ADD_NODE);
    ck_assert_uint_eq(cc.node_id, 3);
    raft_mem_append(mem, rd.entries, rd.n_entries);
    raft_advance(r, NULL);
    /* a non-empty log cannot be bootstrapped again */
    ck_assert_int_eq(raft_bootstrap(r, V3, 3), MS_E_BAD_REQUEST);
    ck_assert_int_eq(raft_ready(r, &rd), MS_OK);
    ck_assert_uint_eq(rd.n_committed, 3);
    raft_advance(r, NULL);
    raft_destroy(r);
    raft_mem_destroy(mem);
}
END_TEST

/* ---- elections, learners, membership ---- */

START_TEST(learner_never_campaigns_nor_counts)
{
    struct tn t;
    tn_init(&t);
    const uint64_t v2[] = {1, 2}, l3[] = {3};
    tn_add_nodes(&t, 1, 3, v2, 2, l3, 1, &PLAIN);
    tn_tick(&t, 3, 100);
    ck_assert_int_eq(st_of(&t, 3).soft.role, RAFT_FOLLOWER);
    raft_campaign(tn_raft(&t, 3));
    ck_assert_int_eq(st_of(&t, 3).soft.role, RAFT_FOLLOWER);
    raft_campaign(tn_raft(&t, 1));
    tn_stabilize(&t);
    ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_LEADER);
    /* with node 2 cut off, the learner's acks do not make a quorum */
    tn_isolate(&t, 2, true);
    uint64_t commit = st_of(&t, 1).hard.commit;
    raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1);
    tn_stabilize(&t);
    ck_assert_uint_eq(st_of(&t, 3).last_index, commit + 1); /* replicated to the learner */
    ck_assert_uint_eq(st_of(&t, 1).hard.commit, commit);    /* but not committed */
    tn_heal(&t);
    tn_fini(&t);
}
END_TEST

START_TEST(learner_votes_when_asked)
{
    /* A learner may already be a voter in a configuration it has not applied yet. */
    struct tn t;
    tn_init(&t);
    const uint64_t v2[] = {1, 2}, l3[] = {3};
    tn_add_nodes(&t, 3, 1, v2, 2, l3, 1, &PLAIN);
    struct raft_msg v = {.type = RAFT_MSG_VOTE, .from = 1, .to = 3, .term = 1};
    ck_assert_int_eq(raft_step(tn_raft(&t, 3), &v), MS_OK);
    tn_process_ready(&t, 3);
    ck_assert_uint_eq(tn_count(&t, RAFT_MSG_VOTE_RESP, 3, 1), 1);
    ck_assert(!t.q[0].reject);
    tn_fini(&t);
}
END_TEST

START_TEST(no_campaign_with_unapplied_conf_change)
{
    struct tn t;
    cluster3(&t, &PLAIN);
    struct raft_conf_change cc = {.type = RAFT_CC_ADD_LEARNER, .node_id = 4};
    ck_assert_int_eq(raft_propose_conf_change(tn_raft(&t, 1), &cc), MS_OK);
    /* deliver to node 2 and let it learn the commit, but do not let it apply */
    tn_process_ready(&t, 1);
    tn_drop(&t, 3);
    tn_deliver(&t, 2, true);  /* node 2 persists and acknowledges */
    tn_deliver(&t, 1, true);  /* the leader commits */
    tn_deliver(&t, 2, false); /* the commit index arrives, unapplied */
    ck_assert_uint_gt(st_of(&t, 2).hard.commit, st_of(&t, 2).applied);
    uint64_t term = st_of(&t, 2).hard.term;
    raft_campaign(tn_raft(&t, 2));
    ck_assert_int_eq(st_of(&t, 2).soft.role, RAFT_FOLLOWER);
    ck_assert_uint_eq(st_of(&t, 2).hard.term, term);
    tn_fini(&t);
}
END_TEST

START_TEST(removed_leader_without_step_down)
{
    struct tn t;
    struct tn_opts o = PLAIN;
    o.no_step_down = true;
    cluster3(&t, &o);
    struct raft_conf_change cc = {.type = RAFT_CC_REMOVE_NODE, .node_id = 1};
    ck_assert_int_eq(raft_propose_conf_change(tn_raft(&t, 1), &cc), MS_OK);
    tn_stabilize(&t);
    ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_LEADER);
    ck_assert_uint_eq(st_of(&t, 1).conf.n_voters, 2);
    /* it keeps leading the others but takes no new proposals */
    ck_assert_int_eq(raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1), MS_E_NOT_LEADER);
    tn_fini(&t);
}
END_TEST

START_TEST(conf_change_validation)
{
    struct tn t;
    tn_init(&t);
    const uint64_t one[] = {1};
    tn_add_nodes(&t, 1, 1, one, 1, NULL, 0, &PLAIN);
    struct raft_conf_change zero = {.type = RAFT_CC_ADD_NODE, .node_id = 0};
    ck_assert_int_eq(raft_propose_conf_change(tn_raft(&t, 1), &zero), MS_E_BAD_REQUEST);
    struct raft_conf_change last = {.type = RAFT_CC_REMOVE_NODE, .node_id = 1};
    struct raft_conf_state cs;
    ck_assert_int_eq(raft_apply_conf_change(tn_raft(&t, 1), &last, &cs), MS_E_BAD_REQUEST);
    struct raft_conf_change demote = {.type = RAFT_CC_ADD_LEARNER, .node_id = 1};
    ck_assert_int_eq(raft_apply_conf_change(tn_raft(&t, 1), &demote, &cs), MS_E_BAD_REQUEST);
    struct raft_conf_change add = {.type = RAFT_CC_ADD_NODE, .node_id = 2};
    ck_assert_int_eq(raft_apply_conf_change(tn_raft(&t, 1), &add, &cs), MS_OK);
    ck_assert_uint_eq(cs.n_voters, 2);
    /* applying the same change twice is harmless */
    ck_assert_int_eq(raft_apply_conf_change(tn_raft(&t, 1), &add, &cs), MS_OK);
    ck_assert_uint_eq(cs.n_voters, 2);
    tn_fini(&t);
}
END_TEST

/* ---- leadership transfer ---- */

START_TEST(transfer_aborts_after_election_timeout)
{
    struct tn t;
    cluster3(&t, &PLAIN);
    tn_isolate(&t, 3, true);
    raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1);
    tn_stabilize(&t);
    raft_transfer_leader(tn_raft(&t, 1), 3);
    ck_assert_uint_eq(st_of(&t, 1).lead_transferee, 3);
    ck_assert_int_eq(raft_propose(tn_raft(&t, 1), (const uint8_t *)"y", 1), MS_E_LEADER_CHANGED);
    tn_tick(&t, 1, 10);
    ck_assert_uint_eq(st_of(&t, 1).lead_transferee, 0);
    ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_LEADER);
    ck_assert_int_eq(raft_propose(tn_raft(&t, 1), (const uint8_t *)"y", 1), MS_OK);
    tn_fini(&t);
}
END_TEST

/* A follower's proposal forwarded to a leader that is handing leadership over is not lost: the
 * old leader keeps it and forwards it to the new one (etcd drops it). */
static bool applied_has(struct tn *t, uint64_t id, const char *data)
{
    const struct tn_node *nd = &t->nodes[id];
    for (size_t i = 0; i < nd->n_applied && i < 64; i++)
        if (strcmp(nd->applied[i], data) == 0)
            return true;
    return false;
}

START_TEST(transfer_keeps_forwarded_proposals)
{
    struct tn t;
    cluster3(&t, &PLAIN);
    tn_cut(&t, 1, 3, true);
    raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1);
    tn_stabilize(&t);
    raft_transfer_leader(tn_raft(&t, 1), 3); /* 3 is behind: the transfer waits for it */
    ck_assert_uint_eq(st_of(&t, 1).lead_transferee, 3);
    ck_assert_int_eq(raft_propose(tn_raft(&t, 2), (const uint8_t *)"p", 1), MS_OK);
    tn_stabilize(&t); /* p reaches 1, which keeps it */
    ck_assert_uint_eq(st_of(&t, 1).lead_transferee, 3);
    ck_assert(!applied_has(&t, 1, "p"));
    tn_heal(&t);
    tn_tick(&t, 1, 1); /* a heartbeat: 3 catches up, is told to campaign, leads */
    tn_stabilize(&t);
    ck_assert_int_eq(st_of(&t, 3).soft.role, RAFT_LEADER);
    tn_tick(&t, 3, 1);
    tn_stabilize(&t);
    for (uint64_t id = 1; id <= 3; id++)
        ck_assert_msg(applied_has(&t, id, "p"), "node %llu lost the forwarded proposal",
                      (unsigned long long)id);
    tn_fini(&t);
}
END_TEST

START_TEST(transfer_to_learner_is_ignored)
{
    struct tn t;
    tn_init(&t);
    const uint64_t v2[] = {1, 2}, l3[] = {3};
    tn_add_nodes(&t, 1, 3, v2, 2, l3, 1, &PLAIN);
    raft_campaign(tn_raft(&t, 1));
    tn_stabilize(&t);
    raft_transfer_leader(tn_raft(&t, 1), 3);
    ck_assert_uint_eq(st_of(&t, 1).lead_transferee, 0);
    tn_stabilize(&t);
    ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_LEADER);
    tn_fini(&t);
}
END_TEST

/* ---- reads ---- */

START_TEST(lease_reads_answer_at_once)
{
    struct tn t;
    struct tn_opts o = {0};
    o.lease_reads = true;
    cluster3(&t, &o);
    size_t before = t.n_read_states;
    raft_read_index(tn_raft(&t, 1), 5);
    tn_process_ready(&t, 1);
    ck_assert_uint_eq(t.n_read_states, before + 1);
    ck_assert_uint_eq(t.read_states[before].ctx, 5);
    ck_assert_uint_eq(tn_count(&t, RAFT_MSG_HEARTBEAT, 1, 0), 0);
    /* while a transfer is pending the lease is not trusted: a heartbeat round is needed */
    tn_isolate(&t, 3, true);
    raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1);
    tn_stabilize(&t);
    raft_transfer_leader(tn_raft(&t, 1), 3);
    raft_read_index(tn_raft(&t, 1), 6);
    tn_process_ready(&t, 1);
    ck_assert_uint_eq(t.n_read_states, before + 1);
    ck_assert_uint_eq(tn_count(&t, RAFT_MSG_HEARTBEAT, 1, 2), 1);
    tn_fini(&t);
}
END_TEST

START_TEST(read_index_without_leader_is_dropped)
{
    struct tn t;
    tn_init(&t);
    tn_add_nodes(&t, 1, 3, V3, 3, NULL, 0, &PLAIN);
    raft_read_index(tn_raft(&t, 2), 9);
    tn_stabilize(&t);
    ck_assert_uint_eq(t.n_read_states, 0);
    tn_fini(&t);
}
END_TEST

/* ---- replication corners ---- */

START_TEST(unreachable_drops_to_probe)
{
    struct tn t;
    cluster3(&t, &PLAIN);
    struct raft_status st = st_of(&t, 1);
    ck_assert_int_eq(st.progress[1].state, RAFT_PROGRESS_REPLICATE);
    raft_report_unreachable(tn_raft(&t, 1), 2);
    st = st_of(&t, 1);
    ck_assert_int_eq(st.progress[1].state, RAFT_PROGRESS_PROBE);
    /* the next heartbeat answer brings it back */
    tn_tick(&t, 1, 1);
    tn_stabilize(&t);
    st = st_of(&t, 1);
    ck_assert_int_eq(st.progress[1].state, RAFT_PROGRESS_REPLICATE);
    tn_fini(&t);
}
END_TEST

START_TEST(fast_backtracking_skips_divergent_terms)
{
    /* The follower has a long tail of term 2 entries the leader (term 3 entries) lacks: the
     * leader finds the match point in a couple of round trips, not one per entry. */
    struct tn t;
    tn_init(&t);
    tn_add_nodes(&t, 1, 3, V3, 3, NULL, 0, &PLAIN);
    uint64_t lead[12], fol[12];
    lead[0] = fol[0] = 1;
    for (int i = 1; i < 12; i++) {
        lead[i] = 3;
        fol[i] = 2;
    }
    tn_set_log(&t, 1, lead, 12, 3);
    tn_set_log(&t, 2, fol, 12, 2);
    tn_set_log(&t, 3, lead, 12, 3);
    raft_campaign(tn_raft(&t, 1));
    tn_stabilize(&t);
    ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_LEADER);
    /* count the rejections node 2 sent */
    raft_propose(tn_raft(&t, 1), (const uint8_t *)"x", 1);
    size_t rejects = 0;
    for (int round = 0; round < 50; round++) {
        for (uint64_t id = 1; id <= 3; id++)
            tn_process_ready(&t, id);
        for (size_t i = 0; i < t.qn; i++)
            if (t.q[i].type == RAFT_MSG_APP_RESP && t.q[i].from == 2 && t.q[i].reject)
                rejects++;
        if (!tn_deliver(&t, 0, false))
            break;
    }
    ck_assert_uint_le(rejects, 3);
    ck_assert_uint_eq(raft_mem_entry(t.nodes[2].mem, 5)->term, 3);
    tn_fini(&t);
}
END_TEST

START_TEST(snapshot_refused_while_applying)
{
    struct tn t;
    tn_init(&t);
    tn_add_nodes(&t, 1, 1, V3, 3, NULL, 0, &PLAIN);
    struct raft *r = tn_raft(&t, 1);
    struct raft_entry e = {.term = 1, .index = 1};
    struct raft_msg app = {.type = RAFT_MSG_APP,
                           .from = 2,
                           .to = 1,
                           .term = 1,
                           .commit = 1,
                           .n_entries = 1,
                           .entries = &e};
    raft_step(r, &app);
    tn_process_ready(&t, 1);
    struct raft_entry e2 = {.term = 1, .index = 2};
    app.index = 1;
    app.log_term = 1;
    app.commit = 2;
    app.entries = &e2;
    raft_step(r, &app);
    struct raft_ready rd;
    ck_assert_int_eq(raft_ready(r, &rd), MS_OK); /* persists entry 2 */
    raft_mem_append(t.nodes[1].mem, rd.entries, rd.n_entries);
    raft_advance(r, NULL);
    ck_assert_int_eq(raft_ready(r, &rd), MS_OK);
    ck_assert_uint_eq(rd.n_committed, 1); /* entry 2 is out for applying */
    struct raft_msg snap = {
        .type = RAFT_MSG_SNAP,
        .from = 2,
        .to = 1,
        .term = 1,
        .snap = {.index = 9, .term = 1, .conf = {.n_voters = 3, .voters = {1, 2, 3}}}};
    raft_step(r, &snap);
    ck_assert_uint_eq(st_of(&t, 1).hard.commit, 2); /* not installed */
    raft_advance(r, NULL);
    raft_step(r, &snap);
    ck_assert_uint_eq(st_of(&t, 1).hard.commit, 9); /* now it is */
    tn_fini(&t);
}
END_TEST

/* ---- raft_mem ---- */

START_TEST(mem_storage)
{
    struct raft_mem *m = raft_mem_create();
    ck_assert_uint_eq(raft_mem_first_index(m), 1);
    ck_assert_uint_eq(raft_mem_last_index(m), 0);
    struct raft_entry e[4];
    for (int i = 0; i < 4; i++)
        e[i] = (struct raft_entry){
            .term = 1, .index = (uint64_t)i + 1, .len = 1, .data = (const uint8_t *)"abcd" + i};
    ck_assert_int_eq(raft_mem_append(m, e, 4), MS_OK);
    ck_assert_uint_eq(raft_mem_last_index(m), 4);
    /* a gap is refused, an overlap truncates */
    struct raft_entry far = {.term = 2, .index = 9};
    ck_assert_int_eq(raft_mem_append(m, &far, 1), MS_E_BAD_REQUEST);
    struct raft_entry over = {.term = 2, .index = 3};
    ck_assert_int_eq(raft_mem_append(m, &over, 1), MS_OK);
    ck_assert_uint_eq(raft_mem_last_index(m), 3);
    ck_assert_uint_eq(raft_mem_entry(m, 3)->term, 2);
    /* term lookups around the edges */
    uint64_t term;
    ck_assert_int_eq(raft_mem_ops.term(m, 0, &term), MS_OK);
    ck_assert_uint_eq(term, 0);
    ck_assert_int_eq(raft_mem_ops.term(m, 4, &term), MS_E_NOT_EXIST);
    /* snapshot at 2 keeping one entry behind it */
    struct raft_conf_state cs = {.n_voters = 1, .voters = {1}};
    ck_assert_int_eq(raft_mem_snapshot(m, 2, &cs, 1), MS_OK);
    ck_assert_uint_eq(raft_mem_first_index(m), 2);
    ck_assert_int_eq(raft_mem_snapshot(m, 2, &cs, 0), MS_E_COMPACTED);
    ck_assert_int_eq(raft_mem_snapshot(m, 7, &cs, 0), MS_E_NOT_EXIST);
    ck_assert_int_eq(raft_mem_ops.term(m, 0, &term), MS_E_COMPACTED);
    const struct raft_entry *out;
    size_t n;
    ck_assert_int_eq(raft_mem_ops.entries(m, 1, 3, UINT64_MAX, &out, &n), MS_E_COMPACTED);
    ck_assert_int_eq(raft_mem_ops.entries(m, 2, 4, 0, &out, &n), MS_OK);
    ck_assert_uint_eq(n, 1); /* a zero budget still yields one entry */
    struct raft_snapshot_meta s;
    raft_mem_snapshot_meta(m, &s);
    ck_assert_uint_eq(s.index, 2);
    ck_assert_uint_eq(s.term, 1);
    /* an installed snapshot replaces everything; an older one is refused */
    struct raft_snapshot_meta newer = {.index = 10, .term = 3, .conf = cs};
    ck_assert_int_eq(raft_mem_apply_snapshot(m, &newer), MS_OK);
    ck_assert_uint_eq(raft_mem_first_index(m), 11);
    ck_assert_uint_eq(raft_mem_last_index(m), 10);
    ck_assert_int_eq(raft_mem_apply_snapshot(m, &s), MS_E_COMPACTED);
    ck_assert_int_eq(raft_mem_compact(m, 10), MS_E_COMPACTED);
    struct raft_hard_state hs = {.term = 3, .vote = 1, .commit = 10}, hs2;
    raft_mem_set_hard(m, &hs);
    raft_mem_hard(m, &hs2);
    ck_assert_uint_eq(hs2.commit, 10);
    raft_mem_destroy(m);
    raft_mem_destroy(NULL);
}
END_TEST

/* ---- codec ---- */

START_TEST(codec_round_trip)
{
    struct raft_entry ents[2] = {
        {.term = 3,
         .index = 1000000,
         .type = RAFT_ENTRY_NORMAL,
         .len = 3,
         .data = (const uint8_t *)"abc"},
        {.term = 3, .index = 1000001, .type = RAFT_ENTRY_CONF_CHANGE},
    };
    struct raft_msg m = {.type = RAFT_MSG_APP,
                         .to = 2,
                         .from = 1,
                         .term = 3,
                         .log_term = 2,
                         .index = 999999,
                         .commit = 999990,
                         .reject = true,
                         .reject_hint = UINT64_MAX,
                         .ctx = 7,
                         .n_entries = 2,
                         .entries = ents};
    struct buf b;
    buf_init(&b);
    ck_assert_int_eq(raft_msg_encode(&m, &b), MS_OK);
    struct raft_msg d;
    ck_assert_int_eq(raft_msg_decode(b.p, b.len, &d), MS_OK);
    ck_assert_uint_eq(d.reject_hint, UINT64_MAX);
    ck_assert(d.reject);
    ck_assert_uint_eq(d.n_entries, 2);
    ck_assert(tu_bytes_eq(d.entries[0].data, d.entries[0].len, "abc"));
    ck_assert_uint_eq(d.entries[1].index, 1000001);
    ck_assert_uint_eq(raft_entry_size(&ents[0]), 1 + 3 + 1 + 1 + 3);
    raft_msg_decoded_fini(&d);
    /* every corruption is caught by the CRC, every truncation by the framing */
    for (size_t i = 0; i < b.len * 8; i++) {
        b.p[i / 8] ^= (uint8_t)(1u << (i % 8));
        ck_assert_int_eq(raft_msg_decode(b.p, b.len, &d), MS_E_DATA_CORRUPT);
        b.p[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    for (size_t n = 0; n < b.len; n++)
        ck_assert_int_eq(raft_msg_decode(b.p, n, &d), MS_E_DATA_CORRUPT);
    /* local messages never go on the wire */
    struct raft_msg hup = {.type = RAFT_MSG_HUP};
    b.len = 0;
    ck_assert_int_eq(raft_msg_encode(&hup, &b), MS_E_BAD_REQUEST);
    /* standalone records are exact: one trailing byte is an error */
    b.len = 0;
    raft_entry_encode(&ents[0], &b);
    struct raft_entry e;
    ck_assert_int_eq(raft_entry_decode(b.p, b.len, &e), MS_OK);
    ck_assert(tu_bytes_eq(e.data, e.len, "abc"));
    buf_putc(&b, 0);
    ck_assert_int_eq(raft_entry_decode(b.p, b.len, &e), MS_E_DATA_CORRUPT);
    b.len = 0;
    struct raft_hard_state hs = {.term = 1, .vote = 2, .commit = 3}, hs2;
    raft_hard_state_encode(&hs, &b);
    b.p[0] = 2; /* an unknown version */
    ck_assert_int_eq(raft_hard_state_decode(b.p, b.len, &hs2), MS_E_DATA_CORRUPT);
    b.p[0] = RAFT_CODEC_VERSION;
    ck_assert_int_eq(raft_hard_state_decode(b.p, b.len, &hs2), MS_OK);
    ck_assert_uint_eq(hs2.commit, 3);
    buf_fini(&b);
}
END_TEST

START_TEST(codec_hostile_counts)
{
    /* a message claiming a million entries in a few bytes is refused before allocating */
    uint8_t p[32];
    size_t n = 0;
    p[n++] = RAFT_CODEC_VERSION;
    p[n++] = RAFT_MSG_APP;
    p[n++] = 0;
    for (int i = 0; i < 8; i++)
        p[n++] = 1;
    p[n++] = 0x80; /* n_entries = 2^20, as a varint */
    p[n++] = 0x80;
    p[n++] = 0x40;
    uint32_t crc = crc32c(0, p, n);
    be32_put(p + n, crc);
    n += 4;
    struct raft_msg d;
    ck_assert_int_eq(raft_msg_decode(p, n, &d), MS_E_DATA_CORRUPT);
    /* snapshot conf states must be sorted, unique and disjoint */
    struct buf b;
    buf_init(&b);
    struct raft_snapshot_meta s = {
        .index = 5,
        .term = 2,
        .conf = {.n_voters = 2, .voters = {1, 2}, .n_learners = 1, .learners = {2}}};
    raft_snapshot_meta_encode(&s, &b);
    struct raft_snapshot_meta s2;
    ck_assert_int_eq(raft_snapshot_meta_decode(b.p, b.len, &s2), MS_E_DATA_CORRUPT);
    b.len = 0;
    s.conf.learners[0] = 3;
    raft_snapshot_meta_encode(&s, &b);
    ck_assert_int_eq(raft_snapshot_meta_decode(b.p, b.len, &s2), MS_OK);
    ck_assert_uint_eq(s2.conf.learners[0], 3);
    buf_fini(&b);
}
END_TEST

static Suite *core_suite(void)
{
    Suite *s = suite_create("raft_core");
    TCase *tc = tcase_create("ready");
    tcase_add_test(tc, vote_waits_for_persistence);
    tcase_add_test(tc, leader_counts_itself_only_after_persisting);
    tcase_add_test(tc, leader_sends_appends_before_persisting);
    tcase_add_test(tc, ready_memory_survives_steps_before_advance);
    tcase_add_test(tc, committed_bytes_per_ready_limit);
    suite_add_tcase(s, tc);
    tc = tcase_create("input");
    tcase_add_test(tc, step_rejects_bad_input);
    tcase_add_test(tc, create_validates_config);
    tcase_add_test(tc, bootstrap);
    suite_add_tcase(s, tc);
    tc = tcase_create("membership");
    tcase_add_test(tc, learner_never_campaigns_nor_counts);
    tcase_add_test(tc, learner_votes_when_asked);
    tcase_add_test(tc, no_campaign_with_unapplied_conf_change);
    tcase_add_test(tc, removed_leader_without_step_down);
    tcase_add_test(tc, conf_change_validation);
    suite_add_tcase(s, tc);
    tc = tcase_create("transfer_and_reads");
    tcase_add_test(tc, transfer_aborts_after_election_timeout);
    tcase_add_test(tc, transfer_keeps_forwarded_proposals);
    tcase_add_test(tc, transfer_to_learner_is_ignored);
    tcase_add_test(tc, lease_reads_answer_at_once);
    tcase_add_test(tc, read_index_without_leader_is_dropped);
    suite_add_tcase(s, tc);
    tc = tcase_create("replication");
    tcase_add_test(tc, unreachable_drops_to_probe);
    tcase_add_test(tc, fast_backtracking_skips_divergent_terms);
    tcase_add_test(tc, snapshot_refused_while_applying);
    suite_add_tcase(s, tc);
    tc = tcase_create("storage_and_codec");
    tcase_add_test(tc, mem_storage);
    tcase_add_test(tc, codec_round_trip);
    tcase_add_test(tc, codec_hostile_counts);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(core_suite());
}
