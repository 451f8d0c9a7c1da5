/* fuzz_raft_codec.c - libFuzzer target for the raft codec (peer messages and WAL records).
 *
 * Every input goes through every decoder. A message is decoded twice: as received, and with
 * its CRC trailer recomputed so that mutations reach the body parser. Whatever decodes must
 * re-encode to something that decodes to the same value, and a decoded message is stepped
 * into a live core, which must refuse or digest it without aborting.
 */
#include "metastore/raft.h"
#include "metastore/raft_codec.h"

#include "metastore/crc32c.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die_if(int cond)
{
    if (cond)
        abort();
}

static void same_entry(const struct raft_entry *a, const struct raft_entry *b)
{
    die_if(a->term != b->term || a->index != b->index || a->type != b->type || a->len != b->len ||
           (a->len && memcmp(a->data, b->data, a->len) != 0));
}

static void same_conf(const struct raft_conf_state *a, const struct raft_conf_state *b)
{
    die_if(a->n_voters != b->n_voters || a->n_learners != b->n_learners);
    die_if(memcmp(a->voters, b->voters, a->n_voters * sizeof(uint64_t)) != 0);
    die_if(memcmp(a->learners, b->learners, a->n_learners * sizeof(uint64_t)) != 0);
}

/* Step m into a fresh follower of a three-node cluster and drain its Readies. */
static void step_into_core(const struct raft_msg *m)
{
    struct raft_mem *mem = raft_mem_create();
    struct raft_config cfg;
    raft_config_default(&cfg, m->to ? m->to : 1);
    cfg.log = &raft_mem_ops;
    cfg.log_ctx = mem;
    struct raft_conf_state cs = {.n_voters = 3, .voters = {1, 2, 3}};
    struct raft *r = NULL;
    if (raft_create(&cfg, NULL, &cs, &r) != MS_OK)
        abort();
    (void)raft_step(r, m);
    for (int i = 0; i < 8 && raft_has_ready(r); i++) {
        struct raft_ready rd;
        if (raft_ready(r, &rd) != MS_OK)
            abort();
        if (rd.has_snapshot)
            (void)raft_mem_apply_snapshot(mem, &rd.snapshot);
        (void)raft_mem_append(mem, rd.entries, rd.n_entries);
        raft_advance(r, NULL);
    }
    raft_destroy(r);
    raft_mem_destroy(mem);
}

static void check_msg(const uint8_t *p, size_t n)
{
    struct raft_msg m;
    if (raft_msg_decode(p, n, &m) != MS_OK)
        return;
    struct buf b;
    buf_init(&b);
    die_if(raft_msg_encode(&m, &b) != MS_OK || buf_failed(&b));
    struct raft_msg m2;
    die_if(raft_msg_decode(b.p, b.len, &m2) != MS_OK);
    die_if(m.type != m2.type || m.to != m2.to || m.from != m2.from || m.term != m2.term ||
           m.log_term != m2.log_term || m.index != m2.index || m.commit != m2.commit ||
           m.reject != m2.reject || m.reject_hint != m2.reject_hint || m.ctx != m2.ctx ||
           m.n_entries != m2.n_entries);
    for (size_t i = 0; i < m.n_entries; i++)
        same_entry(&m.entries[i], &m2.entries[i]);
    if (m.type == RAFT_MSG_SNAP) {
        die_if(m.snap.index != m2.snap.index || m.snap.term != m2.snap.term);
        same_conf(&m.snap.conf, &m2.snap.conf);
    }
    raft_msg_decoded_fini(&m2);
    buf_fini(&b);
    step_into_core(&m);
    raft_msg_decoded_fini(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_msg(data, size);
    if (size >= 4 && size <= (1u << 20)) {
        uint8_t *fixed = malloc(size);
        if (!fixed)
            return 0;
        memcpy(fixed, data, size);
        uint32_t crc = crc32c(0, fixed, size - 4);
        fixed[size - 4] = (uint8_t)(crc >> 24);
        fixed[size - 3] = (uint8_t)(crc >> 16);
        fixed[size - 2] = (uint8_t)(crc >> 8);
        fixed[size - 1] = (uint8_t)crc;
        check_msg(fixed, size);
        free(fixed);
    }

    struct buf b;
    buf_init(&b);
    struct raft_entry e, e2;
    if (raft_entry_decode(data, size, &e) == MS_OK) {
        raft_entry_encode(&e, &b);
        die_if(buf_failed(&b) || raft_entry_decode(b.p, b.len, &e2) != MS_OK);
        same_entry(&e, &e2);
        b.len = 0;
    }
    struct raft_hard_state hs, hs2;
    if (raft_hard_state_decode(data, size, &hs) == MS_OK) {
        raft_hard_state_encode(&hs, &b);
        die_if(buf_failed(&b) || raft_hard_state_decode(b.p, b.len, &hs2) != MS_OK);
        die_if(hs.term != hs2.term || hs.vote != hs2.vote || hs.commit != hs2.commit);
        b.len = 0;
    }
    struct raft_snapshot_meta s, s2;
    if (raft_snapshot_meta_decode(data, size, &s) == MS_OK) {
        raft_snapshot_meta_encode(&s, &b);
        die_if(buf_failed(&b) || raft_snapshot_meta_decode(b.p, b.len, &s2) != MS_OK);
        die_if(s.index != s2.index || s.term != s2.term);
        same_conf(&s.conf, &s2.conf);
        b.len = 0;
    }
    struct raft_conf_change cc, cc2;
    if (raft_cc_decode(data, size, &cc) == MS_OK) {
        raft_cc_encode(&cc, &b);
        die_if(buf_failed(&b) || raft_cc_decode(b.p, b.len, &cc2) != MS_OK);
        die_if(cc.type != cc2.type || cc.node_id != cc2.node_id || cc.ctx_len != cc2.ctx_len ||
               (cc.ctx_len && memcmp(cc.ctx, cc2.ctx, cc.ctx_len) != 0));
    }
    buf_fini(&b);
    return 0;
}
