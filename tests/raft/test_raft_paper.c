/* test_raft_paper.c - one test per rule of the Raft paper (§5), after etcd's raft_paper_test.go.
 *
 * Each test builds the situation the rule talks about on the in-process test network, usually
 * with PreVote and CheckQuorum off (the paper has neither), and checks the rule's outcome.
 */
#include "raft_testnet.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static const uint64_t V3[] = {1, 2, 3};
static const uint64_t V5[] = {1, 2, 3, 4, 5};

static const struct tn_opts PAPER = {.no_pre_vote = true, .no_check_quorum = true};

static struct raft_status st_of(struct tn *t, uint64_t id)
{
    struct raft_status st;
    raft_status(tn_raft(t, id), &st);
    return st;
}

/* Only node 1 exists; its peers are in the configuration but messages to them stay queued. */
static void lone(struct tn *t, const uint64_t *voters, size_t n)
{
    tn_init(t);
    tn_add_nodes(t, 1, 1, voters, n, NULL, 0, &PAPER);
}

static ms_err step(struct tn *t, uint64_t to, enum raft_msg_type type, uint64_t from, uint64_t term)
{
    struct raft_msg m = {.type = type, .from = from, .to = to, .term = term};
    return raft_step(tn_raft(t, to), &m);
}

/* Make lone node 1 leader at its next term by granting it the votes of nodes 2..n. */
static void make_leader(struct tn *t, size_t n)
{
    raft_campaign(tn_raft(t, 1));
    tn_process_ready(t, 1);
    uint64_t term = st_of(t, 1).hard.term;
    for (uint64_t id = 2; id <= n && st_of(t, 1).soft.role != RAFT_LEADER; id++)
        ck_assert_int_eq(step(t, 1, RAFT_MSG_VOTE_RESP, id, term), MS_OK);
    ck_assert_int_eq(st_of(t, 1).soft.role, RAFT_LEADER);
    tn_process_ready(t, 1);
    tn_drop(t, 0);
}

static const struct raft_msg *find_msg(const struct tn *t, enum raft_msg_type type, uint64_t to)
{
    for (size_t i = 0; i < t->qn; i++)
        if (t->q[i].type == type && t->q[i].to == to)
            return &t->q[i];
    return NULL;
}

/* §5.1: a server seeing a larger term updates its term and reverts to follower. */
static void check_update_term(int role)
{
    struct tn t;
    lone(&t, V3, 3);
    if (role == RAFT_CANDIDATE) {
        raft_campaign(tn_raft(&t, 1));
    } else if (role == RAFT_LEADER) {
        make_leader(&t, 3);
    }
    ck_assert_int_eq(st_of(&t, 1).soft.role, role);
    uint64_t term = st_of(&t, 1).hard.term;
    ck_assert_int_eq(step(&t, 1, RAFT_MSG_APP, 2, term + 2), MS_OK);
    struct raft_status st = st_of(&t, 1);
    ck_assert_int_eq(st.soft.role, RAFT_FOLLOWER);
    ck_assert_uint_eq(st.hard.term, term + 2);
    ck_assert_uint_eq(st.soft.lead, 2);
    /* a higher-term vote request also demotes, but names no leader */
    ck_assert_int_eq(step(&t, 1, RAFT_MSG_VOTE, 3, term + 3), MS_OK);
    st = st_of(&t, 1);
    ck_assert_uint_eq(st.hard.term, term + 3);
    ck_assert_uint_eq(st.soft.lead, 0);
    tn_fini(&t);
}

START_TEST(follower_update_term_from_message)
{
    check_update_term(RAFT_FOLLOWER);
}
END_TEST

START_TEST(candidate_update_term_from_message)
{
    check_update_term(RAFT_CANDIDATE);
}
END_TEST

START_TEST(leader_update_term_from_message)
{
    check_update_term(RAFT_LEADER);
}
END_TEST

/* §5.1: a request with a stale term is rejected (here: ignored, leaving no trace). */
START_TEST(reject_stale_term_message)
{
    struct tn t;
    lone(&t, V3, 3);
    tn_set_log(&t, 1, NULL, 0, 2);
    struct raft_entry e = {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL};
    struct raft_msg m = {
        .type = RAFT_MSG_APP, .from = 2, .to = 1, .term = 1, .n_entries = 1, .entries = &e};
    ck_assert_int_eq(raft_step(tn_raft(&t, 1), &m), MS_OK);
    tn_process_ready(&t, 1);
    ck_assert_uint_eq(st_of(&t, 1).last_index, 0);
    ck_assert_uint_eq(st_of(&t, 1).hard.term, 2);
    ck_assert_uint_eq(t.qn, 0);
    tn_fini(&t);

    /* With CheckQuorum the stale leader is told our term instead (so that it steps down). */
    tn_init(&t);
    tn_add_nodes(&t, 1, 1, V3, 3, NULL, 0, NULL);
    tn_set_log(&t, 1, NULL, 0, 2);
    ck_assert_int_eq(raft_step(tn_raft(&t, 1), &m), MS_OK);
    tn_process_ready(&t, 1);
    const struct raft_msg *r = find_msg(&t, RAFT_MSG_APP_RESP, 2);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->term, 2);
    ck_assert_uint_eq(st_of(&t, 1).last_index, 0);
    tn_fini(&t);
}
END_TEST

/* §5.2: servers start as followers. */
START_TEST(start_as_follower)
{
    struct tn t;
    lone(&t, V3, 3);
    struct raft_status st = st_of(&t, 1);
    ck_assert_int_eq(st.soft.role, RAFT_FOLLOWER);
    ck_assert_uint_eq(st.hard.term, 0);
    ck_assert_uint_eq(st.soft.lead, 0);
    tn_fini(&t);
}
END_TEST

/* §5.2: the leader sends heartbeats to everyone every heartbeat interval. */
START_TEST(leader_bcast_beat)
{
    struct tn t;
    lone(&t, V3, 3);
    make_leader(&t, 3);
    tn_tick(&t, 1, 1);
    tn_process_ready(&t, 1);
    ck_assert_uint_eq(tn_count(&t, RAFT_MSG_HEARTBEAT, 1, 2), 1);
    ck_assert_uint_eq(tn_count(&t, RAFT_MSG_HEARTBEAT, 1, 3), 1);
    ck_assert_uint_eq(t.qn, 2);
    /* nobody has acknowledged anything: the heartbeat must not advance their commit */
    ck_assert_uint_eq(find_msg(&t, RAFT_MSG_HEARTBEAT, 2)->commit, 0);
    tn_fini(&t);
}
END_TEST

/* §5.2: a follower hearing nothing for an election timeout becomes candidate, increments its
 * term, votes for itself and asks everyone for votes; a candidate that does not win starts a
 * new election the same way. */
static void check_start_election(bool from_candidate)
{
    struct tn t;
    lone(&t, V3, 3);
    tn_set_log(&t, 1, NULL, 0, 1);
    if (from_candidate) {
        raft_campaign(tn_raft(&t, 1));
        tn_process_ready(&t, 1);
        tn_drop(&t, 0);
        ck_assert_uint_eq(st_of(&t, 1).hard.term, 2);
    }
    uint64_t term = st_of(&t, 1).hard.term;
    tn_tick(&t, 1, 2 * 10);
    tn_process_ready(&t, 1);
    struct raft_status st = st_of(&t, 1);
    ck_assert_int_eq(st.soft.role, RAFT_CANDIDATE);
    ck_assert_uint_eq(st.hard.term, term + 1);
    ck_assert_uint_eq(st.hard.vote, 1);
    for (uint64_t id = 2; id <= 3; id++) {
        const struct raft_msg *m = find_msg(&t, RAFT_MSG_VOTE, id);
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_eq(m->term, term + 1);
    }
    ck_assert_uint_eq(t.qn, 2);
    tn_fini(&t);
}

START_TEST(follower_start_election)
{
    check_start_election(false);
}
END_TEST

START_TEST(candidate_start_new_election)
{
    check_start_election(true);
}
END_TEST

/* §5.2: a candidate wins with votes from a majority, loses to a majority of rejections, and
 * otherwise keeps waiting. */
START_TEST(leader_election_in_one_round)
{
    struct {
        size_t n;
        int yes, no; /* votes granted/rejected by nodes 2.. (in that order) */
        enum raft_role want;
    } cases[] = {
        {1, 0, 0, RAFT_LEADER},    {3, 1, 0, RAFT_LEADER},   {3, 2, 0, RAFT_LEADER},
        {5, 2, 0, RAFT_LEADER},    {5, 4, 0, RAFT_LEADER},   {3, 0, 0, RAFT_CANDIDATE},
        {5, 1, 0, RAFT_CANDIDATE}, {3, 0, 2, RAFT_FOLLOWER}, {5, 0, 3, RAFT_FOLLOWER},
        {5, 1, 2, RAFT_CANDIDATE}, {5, 1, 3, RAFT_FOLLOWER},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tn t;
        lone(&t, V5, cases[c].n);
        raft_campaign(tn_raft(&t, 1));
        tn_process_ready(&t, 1); /* our own vote counts once persisted */
        uint64_t id = 2;
        for (int i = 0; i < cases[c].yes; i++, id++) {
            struct raft_msg m = {
                .type = RAFT_MSG_VOTE_RESP, .from = id, .to = 1, .term = 1, .reject = false};
            raft_step(tn_raft(&t, 1), &m);
        }
        for (int i = 0; i < cases[c].no; i++, id++) {
            struct raft_msg m = {
                .type = RAFT_MSG_VOTE_RESP, .from = id, .to = 1, .term = 1, .reject = true};
            raft_step(tn_raft(&t, 1), &m);
        }
        ck_assert_msg(st_of(&t, 1).soft.role == cases[c].want, "case %zu: role %d", c,
                      (int)st_of(&t, 1).soft.role);
        ck_assert_uint_eq(st_of(&t, 1).hard.term, 1);
        tn_fini(&t);
    }
}
END_TEST

/* §5.2: each server votes for at most one candidate per term, first come first served. */
START_TEST(follower_vote)
{
    struct {
        uint64_t vote, from;
        bool granted;
    } cases[] = {
        {0, 2, true}, {0, 3, true}, {2, 2, true}, {3, 3, true}, {2, 3, false}, {3, 2, false},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tn t;
        lone(&t, V3, 3);
        struct tn_node *nd = &t.nodes[1];
        struct raft_hard_state hs = {.term = 1, .vote = cases[c].vote};
        raft_mem_set_hard(nd->mem, &hs);
        tn_restart(&t, 1);
        struct raft_msg m = {.type = RAFT_MSG_VOTE, .from = cases[c].from, .to = 1, .term = 1};
        raft_step(tn_raft(&t, 1), &m);
        tn_process_ready(&t, 1);
        const struct raft_msg *r = find_msg(&t, RAFT_MSG_VOTE_RESP, cases[c].from);
        ck_assert_ptr_nonnull(r);
        ck_assert_msg(r->reject == !cases[c].granted, "case %zu", c);
        ck_assert_uint_eq(st_of(&t, 1).hard.vote, cases[c].granted ? cases[c].from : cases[c].vote);
        tn_fini(&t);
    }
}
END_TEST

/* §5.2: a candidate receiving AppendEntries from a leader of at least its term steps down. */
START_TEST(candidate_fallback)
{
    for (uint64_t term = 1; term <= 2; term++) {
        struct tn t;
        lone(&t, V3, 3);
        raft_campaign(tn_raft(&t, 1));
        ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_CANDIDATE);
        ck_assert_int_eq(step(&t, 1, RAFT_MSG_APP, 2, term), MS_OK);
        struct raft_status st = st_of(&t, 1);
        ck_assert_int_eq(st.soft.role, RAFT_FOLLOWER);
        ck_assert_uint_eq(st.hard.term, term);
        ck_assert_uint_eq(st.soft.lead, 2);
        tn_fini(&t);
    }
}
END_TEST

/* Ticks until node 1 (fresh) starts an election. */
static int ticks_to_campaign(uint64_t seed, uint64_t id)
{
    struct tn t;
    tn_init(&t);
    struct tn_opts o = PAPER;
    o.seed = seed;
    tn_add_nodes(&t, id, 1, V5, 5, NULL, 0, &o);
    int n = 0;
    while (st_of(&t, id).soft.role == RAFT_FOLLOWER && n < 100) {
        raft_tick(tn_raft(&t, id));
        n++;
    }
    tn_fini(&t);
    return n;
}

/* §5.2: election timeouts are randomized in [et, 2et). */
START_TEST(election_timeout_randomized)
{
    bool seen[20] = {false};
    for (uint64_t seed = 0; seed < 500; seed++) {
        int n = ticks_to_campaign(seed, 1);
        ck_assert_int_ge(n, 10);
        ck_assert_int_lt(n, 20);
        seen[n] = true;
    }
    for (int k = 10; k < 20; k++)
        ck_assert_msg(seen[k], "timeout %d never drawn", k);
}
END_TEST

/* §5.2: with randomized timeouts, followers seldom time out at the same tick. */
START_TEST(election_timeout_nonconflict)
{
    int conflicts = 0, rounds = 200;
    for (int round = 0; round < rounds; round++) {
        int best = 1000, count = 0;
        for (uint64_t id = 1; id <= 5; id++) {
            int n = ticks_to_campaign((uint64_t)round * 7919, id);
            if (n < best) {
                best = n;
                count = 1;
            } else if (n == best) {
                count++;
            }
        }
        if (count > 1)
            conflicts++;
    }
    ck_assert_msg(conflicts * 10 <= rounds * 3, "%d conflicts in %d rounds", conflicts, rounds);
}
END_TEST

/* Three-node cluster with node 1 elected and everything replicated. */
static void cluster3(struct tn *t)
{
    tn_init(t);
    tn_add_nodes(t, 1, 3, V3, 3, NULL, 0, &PAPER);
    raft_campaign(tn_raft(t, 1));
    tn_stabilize(t);
    ck_assert_int_eq(st_of(t, 1).soft.role, RAFT_LEADER);
}

static void propose(struct tn *t, uint64_t id, const char *s)
{
    ck_assert_int_eq(raft_propose(tn_raft(t, id), (const uint8_t *)s, strlen(s)), MS_OK);
}

/* §5.3: the leader appends a proposal to its log and sends it to every follower. */
START_TEST(leader_start_replication)
{
    struct tn t;
    cluster3(&t);
    uint64_t li = st_of(&t, 1).last_index;
    uint64_t term = st_of(&t, 1).hard.term;
    propose(&t, 1, "some data");
    tn_process_ready(&t, 1);
    ck_assert_uint_eq(st_of(&t, 1).last_index, li + 1);
    ck_assert_uint_eq(st_of(&t, 1).hard.commit, li);
    for (uint64_t id = 2; id <= 3; id++) {
        const struct raft_msg *m = find_msg(&t, RAFT_MSG_APP, id);
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_eq(m->index, li);
        ck_assert_uint_eq(m->log_term, term);
        ck_assert_uint_eq(m->commit, li);
        ck_assert_uint_eq(m->n_entries, 1);
        ck_assert_uint_eq(m->entries[0].index, li + 1);
        ck_assert_uint_eq(m->entries[0].term, term);
        ck_assert(tu_bytes_eq(m->entries[0].data, m->entries[0].len, "some data"));
    }
    tn_fini(&t);
}
END_TEST

/* §5.3: once replicated on a majority the entry is committed, applied by the leader, and the
 * commit index reaches the followers, which apply it too. */
START_TEST(leader_commit_entry)
{
    struct tn t;
    cluster3(&t);
    uint64_t li = st_of(&t, 1).last_index;
    propose(&t, 1, "some data");
    tn_stabilize(&t);
    for (uint64_t id = 1; id <= 3; id++) {
        ck_assert_uint_eq(st_of(&t, id).hard.commit, li + 1);
        ck_assert_uint_eq(t.nodes[id].n_applied, 1);
        ck_assert_str_eq(t.nodes[id].applied[0], "some data");
    }
    tn_fini(&t);
}
END_TEST

/* §5.3: an entry commits exactly when a majority (leader included) holds it. */
START_TEST(leader_acknowledge_commit)
{
    struct {
        size_t n;
        int acks; /* followers acknowledging, from node 2 on */
        bool committed;
    } cases[] = {
        {1, 0, true},  {3, 0, false}, {3, 1, true}, {3, 2, true},
        {5, 0, false}, {5, 1, false}, {5, 2, true}, {5, 4, true},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tn t;
        lone(&t, V5, cases[c].n);
        make_leader(&t, cases[c].n);
        uint64_t term = st_of(&t, 1).hard.term;
        /* acknowledge the no-op everywhere so that only the proposal is in question */
        for (uint64_t id = 2; id <= cases[c].n; id++) {
            struct raft_msg a = {
                .type = RAFT_MSG_APP_RESP, .from = id, .to = 1, .term = term, .index = 1};
            raft_step(tn_raft(&t, 1), &a);
        }
        tn_process_ready(&t, 1);
        tn_drop(&t, 0);
        ck_assert_uint_eq(st_of(&t, 1).hard.commit, 1);
        propose(&t, 1, "x");
        tn_process_ready(&t, 1); /* persists it; the leader's self-ack lands on advance */
        for (int i = 0; i < cases[c].acks; i++) {
            struct raft_msg a = {.type = RAFT_MSG_APP_RESP,
                                 .from = (uint64_t)i + 2,
                                 .to = 1,
                                 .term = term,
                                 .index = 2};
            raft_step(tn_raft(&t, 1), &a);
        }
        ck_assert_msg((st_of(&t, 1).hard.commit == 2) == cases[c].committed, "case %zu", c);
        tn_fini(&t);
    }
}
END_TEST

/* §5.3: committing an entry commits every preceding entry, including earlier terms'. */
START_TEST(leader_commit_preceding_entries)
{
    const uint64_t logs[][3] = {{0}, {2}, {1, 1}, {1, 2}};
    const size_t lens[] = {0, 1, 2, 2};
    for (size_t c = 0; c < 4; c++) {
        struct tn t;
        lone(&t, V3, 3);
        tn_set_log(&t, 1, logs[c], lens[c], 2);
        make_leader(&t, 3); /* term 3, no-op at lens[c] + 1 */
        propose(&t, 1, "some data");
        tn_process_ready(&t, 1);
        uint64_t li = st_of(&t, 1).last_index;
        ck_assert_uint_eq(li, lens[c] + 2);
        struct raft_msg a = {.type = RAFT_MSG_APP_RESP, .from = 2, .to = 1, .term = 3, .index = li};
        raft_step(tn_raft(&t, 1), &a);
        ck_assert_uint_eq(st_of(&t, 1).hard.commit, li);
        tn_process_ready(&t, 1);
        tn_process_ready(&t, 1);
        ck_assert_uint_eq(t.nodes[1].applied_index, li);
        ck_assert_str_eq(t.nodes[1].applied[0], "some data");
        tn_fini(&t);
    }
}
END_TEST

/* §5.3: a follower commits (and then applies) what the leader's commit index covers. */
START_TEST(follower_commit_entry)
{
    for (uint64_t commit = 1; commit <= 2; commit++) {
        struct tn t;
        lone(&t, V3, 3);
        struct raft_entry e[2] = {
            {.term = 1, .index = 1, .len = 5, .data = (const uint8_t *)"first"},
            {.term = 1, .index = 2, .len = 6, .data = (const uint8_t *)"second"},
        };
        struct raft_msg m = {.type = RAFT_MSG_APP,
                             .from = 2,
                             .to = 1,
                             .term = 1,
                             .commit = commit,
                             .n_entries = 2,
                             .entries = e};
        ck_assert_int_eq(raft_step(tn_raft(&t, 1), &m), MS_OK);
        ck_assert_uint_eq(st_of(&t, 1).hard.commit, commit);
        /* applied only once durable: the entries persist in the first Ready */
        tn_process_ready(&t, 1);
        ck_assert_uint_eq(t.nodes[1].n_applied, commit);
        ck_assert_str_eq(t.nodes[1].applied[0], "first");
        tn_fini(&t);
    }
}
END_TEST

/* §5.3: a follower rejects AppendEntries whose previous (index, term) is not in its log. */
START_TEST(follower_check_msg_app)
{
    const uint64_t terms[] = {1, 2};
    struct {
        uint64_t log_term, index;
        bool reject;
        uint64_t want_index, hint;
    } cases[] = {
        {0, 0, false, 1, 0}, /* before the log: matches */
        {1, 1, false, 1, 0}, {2, 2, false, 2, 0}, {1, 2, true, 2, 1}, {3, 3, true, 3, 2},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tn t;
        lone(&t, V3, 3);
        tn_set_log(&t, 1, terms, 2, 2);
        /* commit 1: everything at or below it is known to match */
        struct raft_hard_state hs = {.term = 2, .commit = 1};
        raft_mem_set_hard(t.nodes[1].mem, &hs);
        tn_restart(&t, 1);
        struct raft_msg m = {.type = RAFT_MSG_APP,
                             .from = 2,
                             .to = 1,
                             .term = 3,
                             .log_term = cases[c].log_term,
                             .index = cases[c].index};
        ck_assert_int_eq(raft_step(tn_raft(&t, 1), &m), MS_OK);
        tn_process_ready(&t, 1);
        const struct raft_msg *r = find_msg(&t, RAFT_MSG_APP_RESP, 2);
        ck_assert_msg(r != NULL, "case %zu: no response", c);
        ck_assert_msg(r->reject == cases[c].reject, "case %zu", c);
        ck_assert_uint_eq(r->index, cases[c].want_index);
        if (r->reject)
            ck_assert_uint_eq(r->reject_hint, cases[c].hint);
        tn_fini(&t);
    }
}
END_TEST

/* §5.3: conflicting entries are deleted and the leader's appended. */
START_TEST(follower_append_entries)
{
    struct {
        uint64_t index, log_term;
        uint64_t ents[2];
        size_t n;
        uint64_t want[4];
        size_t want_n;
    } cases[] = {
        {2, 2, {3}, 1, {1, 2, 3}, 3},
        {1, 1, {3, 4}, 2, {1, 3, 4}, 3},
        {0, 0, {1}, 1, {1, 2}, 2},
        {0, 0, {3}, 1, {3}, 1},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tn t;
        lone(&t, V3, 3);
        const uint64_t terms[] = {1, 2};
        tn_set_log(&t, 1, terms, 2, 1);
        struct raft_entry e[2];
        for (size_t i = 0; i < cases[c].n; i++)
            e[i] = (struct raft_entry){.term = cases[c].ents[i], .index = cases[c].index + 1 + i};
        struct raft_msg m = {.type = RAFT_MSG_APP,
                             .from = 2,
                             .to = 1,
                             .term = 4,
                             .log_term = cases[c].log_term,
                             .index = cases[c].index,
                             .n_entries = cases[c].n,
                             .entries = e};
        ck_assert_int_eq(raft_step(tn_raft(&t, 1), &m), MS_OK);
        tn_process_ready(&t, 1);
        struct raft_mem *mem = t.nodes[1].mem;
        ck_assert_uint_eq(raft_mem_last_index(mem), cases[c].want_n);
        for (size_t i = 0; i < cases[c].want_n; i++)
            ck_assert_uint_eq(raft_mem_entry(mem, i + 1)->term, cases[c].want[i]);
        tn_fini(&t);
    }
}
END_TEST

/* §5.3 Figure 7: the leader brings every kind of divergent follower log in line with its own. */
START_TEST(leader_sync_follower_log)
{
    const uint64_t lead[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
    struct {
        uint64_t t[12];
        size_t n;
    } followers[] = {
        {{1, 1, 1, 4, 4, 5, 5, 6, 6}, 9},
        {{1, 1, 1, 4}, 4},
        {{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}, 11},
        {{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}, 12},
        {{1, 1, 1, 4, 4, 4, 4}, 7},
        {{1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}, 11},
    };
    for (size_t c = 0; c < sizeof(followers) / sizeof(followers[0]); c++) {
        struct tn t;
        tn_init(&t);
        tn_add_nodes(&t, 1, 3, V3, 3, NULL, 0, &PAPER);
        tn_set_log(&t, 1, lead, 10, 7);
        tn_set_log(&t, 2, followers[c].t, followers[c].n, 7);
        tn_set_log(&t, 3, lead, 10, 7); /* the voter that elects node 1 */
        raft_campaign(tn_raft(&t, 1));
        tn_stabilize(&t);
        ck_assert_int_eq(st_of(&t, 1).soft.role, RAFT_LEADER);
        propose(&t, 1, "x");
        tn_stabilize(&t);
        struct raft_mem *a = t.nodes[1].mem, *b = t.nodes[2].mem;
        ck_assert_uint_eq(raft_mem_last_index(a), raft_mem_last_index(b));
        for (uint64_t i = 1; i <= raft_mem_last_index(a); i++)
            ck_assert_msg(raft_mem_entry(a, i)->term == raft_mem_entry(b, i)->term,
                          "follower %zu differs at %llu", c, (unsigned long long)i);
        tn_fini(&t);
    }
}
END_TEST

/* §5.4.1: a vote request carries the candidate's last log index and term. */
START_TEST(vote_request)
{
    const uint64_t terms[][2] = {{1}, {1, 2}};
    for (size_t c = 0; c < 2; c++) {
        struct tn t;
        lone(&t, V3, 3);
        tn_set_log(&t, 1, terms[c], c + 1, terms[c][c]);
        raft_campaign(tn_raft(&t, 1));
        tn_process_ready(&t, 1);
        for (uint64_t id = 2; id <= 3; id++) {
            const struct raft_msg *m = find_msg(&t, RAFT_MSG_VOTE, id);
            ck_assert_ptr_nonnull(m);
            ck_assert_uint_eq(m->index, c + 1);
            ck_assert_uint_eq(m->log_term, terms[c][c]);
            ck_assert_uint_eq(m->term, terms[c][c] + 1);
        }
        tn_fini(&t);
    }
}
END_TEST

/* §5.4.1: a vote is granted only to a candidate whose log is at least as up to date. */
START_TEST(voter)
{
    struct {
        uint64_t log[2];
        size_t n;
        uint64_t log_term, index;
        bool granted;
    } cases[] = {
        {{1}, 1, 1, 1, true},    {{1}, 1, 1, 2, true},     {{1, 1}, 2, 1, 1, false},
        {{1}, 1, 2, 1, true},    {{1}, 1, 2, 2, true},     {{1, 1}, 2, 2, 1, true},
        {{2}, 1, 1, 1, false},   {{2}, 1, 1, 2, false},    {{2, 2}, 2, 1, 1, false},
        {{1, 2}, 2, 2, 3, true}, {{1, 2}, 2, 2, 1, false},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct tn t;
        lone(&t, V3, 3);
        tn_set_log(&t, 1, cases[c].log, cases[c].n, 2);
        struct raft_msg m = {.type = RAFT_MSG_VOTE,
                             .from = 2,
                             .to = 1,
                             .term = 3,
                             .log_term = cases[c].log_term,
                             .index = cases[c].index};
        raft_step(tn_raft(&t, 1), &m);
        tn_process_ready(&t, 1);
        const struct raft_msg *r = find_msg(&t, RAFT_MSG_VOTE_RESP, 2);
        ck_assert_ptr_nonnull(r);
        ck_assert_msg(r->reject == !cases[c].granted, "case %zu", c);
        tn_fini(&t);
    }
}
END_TEST

/* §5.4.2 (Figure 8): a leader commits by counting replicas only entries of its own term. */
START_TEST(leader_only_commits_log_from_current_term)
{
    const uint64_t terms[] = {1, 2};
    struct {
        uint64_t acked;
        uint64_t commit;
    } cases[] = {{1, 0}, {2, 0}, {3, 3}};
    for (size_t c = 0; c < 3; c++) {
        struct tn t;
        lone(&t, V3, 3);
        tn_set_log(&t, 1, terms, 2, 2);
        make_leader(&t, 3); /* term 3, no-op at index 3 */
        struct raft_msg a = {
            .type = RAFT_MSG_APP_RESP, .from = 2, .to = 1, .term = 3, .index = cases[c].acked};
        raft_step(tn_raft(&t, 1), &a);
        ck_assert_msg(st_of(&t, 1).hard.commit == cases[c].commit, "case %zu: commit %llu", c,
                      (unsigned long long)st_of(&t, 1).hard.commit);
        tn_fini(&t);
    }
}
END_TEST

static Suite *paper_suite(void)
{
    Suite *s = suite_create("raft_paper");
    TCase *tc = tcase_create("election");
    tcase_add_test(tc, follower_update_term_from_message);
    tcase_add_test(tc, candidate_update_term_from_message);
    tcase_add_test(tc, leader_update_term_from_message);
    tcase_add_test(tc, reject_stale_term_message);
    tcase_add_test(tc, start_as_follower);
    tcase_add_test(tc, leader_bcast_beat);
    tcase_add_test(tc, follower_start_election);
    tcase_add_test(tc, candidate_start_new_election);
    tcase_add_test(tc, leader_election_in_one_round);
    tcase_add_test(tc, follower_vote);
    tcase_add_test(tc, candidate_fallback);
    tcase_add_test(tc, election_timeout_randomized);
    tcase_add_test(tc, election_timeout_nonconflict);
    tcase_add_test(tc, vote_request);
    tcase_add_test(tc, voter);
    suite_add_tcase(s, tc);
    tc = tcase_create("replication");
    tcase_add_test(tc, leader_start_replication);
    tcase_add_test(tc, leader_commit_entry);
    tcase_add_test(tc, leader_acknowledge_commit);
    tcase_add_test(tc, leader_commit_preceding_entries);
    tcase_add_test(tc, follower_commit_entry);
    tcase_add_test(tc, follower_check_msg_app);
    tcase_add_test(tc, follower_append_entries);
    tcase_add_test(tc, leader_sync_follower_log);
    tcase_add_test(tc, leader_only_commits_log_from_current_term);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(paper_suite());
}
