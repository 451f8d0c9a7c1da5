/* raft_mem.c - an in-memory stable log (etcd-io/raft storage.go MemoryStorage).
 *
 * Holds a sentinel (off_index, off_term) standing for everything compacted, the entries after
 * it (ents.v[i].index == off_index + 1 + i), the latest snapshot's metadata and the hard state.
 * The snapshot index may be above the sentinel: entries are kept behind a snapshot for slow
 * followers. Entry data is owned (copied in).
 */
#include "raft_int.h"

#include <stdlib.h>
#include <string.h>

struct raft_mem {
    struct raft_snapshot_meta snap;
    struct raft_hard_state hs;
    uint64_t off_index;
    uint64_t off_term;
    struct raft_ents ents;
};

struct raft_mem *raft_mem_create(void)
{
    return raft_xcalloc(1, sizeof(struct raft_mem));
}

void raft_mem_destroy(struct raft_mem *m)
{
    if (!m)
        return;
    raft_ents_fini(&m->ents);
    free(m);
}

uint64_t raft_mem_first_index(const struct raft_mem *m)
{
    return m->off_index + 1;
}

uint64_t raft_mem_last_index(const struct raft_mem *m)
{
    return m->off_index + m->ents.n;
}

const struct raft_entry *raft_mem_entry(const struct raft_mem *m, uint64_t i)
{
    if (i <= m->off_index || i > raft_mem_last_index(m))
        return NULL;
    return &m->ents.v[i - m->off_index - 1];
}

static ms_err mem_term(const struct raft_mem *m, uint64_t i, uint64_t *out)
{
    if (i < m->off_index)
        return MS_E_COMPACTED;
    if (i > raft_mem_last_index(m))
        return MS_E_NOT_EXIST;
    *out = i == m->off_index ? m->off_term : m->ents.v[i - m->off_index - 1].term;
    return MS_OK;
}

ms_err raft_mem_append(struct raft_mem *m, const struct raft_entry *ents, size_t n)
{
    if (n == 0)
        return MS_OK;
    for (size_t i = 1; i < n; i++)
        if (ents[i].index != ents[0].index + i)
            return MS_E_BAD_REQUEST;
    uint64_t first = raft_mem_first_index(m);
    uint64_t last_new = ents[0].index + n - 1;
    if (last_new < first)
        return MS_OK; /* all compacted already */
    if (ents[0].index < first) {
        size_t skip = (size_t)(first - ents[0].index);
        ents += skip;
        n -= skip;
    }
    if (ents[0].index > raft_mem_last_index(m) + 1)
        return MS_E_BAD_REQUEST; /* a gap */
    raft_ents_truncate(&m->ents, (size_t)(ents[0].index - first));
    for (size_t i = 0; i < n; i++)
        raft_ents_push_copy(&m->ents, &ents[i]);
    return MS_OK;
}

ms_err raft_mem_apply_snapshot(struct raft_mem *m, const struct raft_snapshot_meta *s)
{
    if (m->snap.index != 0 && m->snap.index >= s->index)
        return MS_E_COMPACTED;
    m->snap = *s;
    m->off_index = s->index;
    m->off_term = s->term;
    raft_ents_truncate(&m->ents, 0);
    return MS_OK;
}

ms_err raft_mem_compact(struct raft_mem *m, uint64_t compact_index)
{
    if (compact_index <= m->off_index)
        return MS_E_COMPACTED;
    if (compact_index > raft_mem_last_index(m))
        return MS_E_NOT_EXIST;
    uint64_t term;
    ms_err e = mem_term(m, compact_index, &term);
    if (e != MS_OK)
        return e;
    raft_ents_drop_front(&m->ents, (size_t)(compact_index - m->off_index));
    m->off_index = compact_index;
    m->off_term = term;
    return MS_OK;
}

ms_err raft_mem_snapshot(struct raft_mem *m, uint64_t i, const struct raft_conf_state *cs,
                         uint64_t keep)
{
    if (i <= m->snap.index)
        return MS_E_COMPACTED;
    if (i > raft_mem_last_index(m))
        return MS_E_NOT_EXIST;
    uint64_t term;
    ms_err e = mem_term(m, i, &term);
    if (e != MS_OK)
        return e;
    m->snap.index = i;
    m->snap.term = term;
    m->snap.conf = *cs;
    uint64_t c = i > keep ? i - keep : 0;
    if (c > m->off_index)
        (void)raft_mem_compact(m, c);
    return MS_OK;
}

void raft_mem_set_hard(struct raft_mem *m, const struct raft_hard_state *hs)
{
    m->hs = *hs;
}

void raft_mem_hard(const struct raft_mem *m, struct raft_hard_state *out)
{
    *out = m->hs;
}

void raft_mem_snapshot_meta(const struct raft_mem *m, struct raft_snapshot_meta *out)
{
    *out = m->snap;
}

/* ---- struct raft_log_ops ---- */

static uint64_t ops_first(void *ctx)
{
    return raft_mem_first_index(ctx);
}

static uint64_t ops_last(void *ctx)
{
    return raft_mem_last_index(ctx);
}

static ms_err ops_term(void *ctx, uint64_t i, uint64_t *out)
{
    return mem_term(ctx, i, out);
}

static ms_err ops_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                          const struct raft_entry **out, size_t *n)
{
    const struct raft_mem *m = ctx;
    if (lo <= m->off_index)
        return MS_E_COMPACTED;
    if (hi > raft_mem_last_index(m) + 1 || lo >= hi)
        return MS_E_NOT_EXIST;
    const struct raft_entry *v = &m->ents.v[lo - m->off_index - 1];
    size_t k = 1;
    uint64_t size = raft_entry_size(&v[0]);
    while (k < hi - lo) {
        size += raft_entry_size(&v[k]);
        if (size > max_bytes)
            break;
        k++;
    }
    *out = v;
    *n = k;
    return MS_OK;
}

static void ops_snapshot(void *ctx, struct raft_snapshot_meta *out)
{
    raft_mem_snapshot_meta(ctx, out);
}

const struct raft_log_ops raft_mem_ops = {
    .first_index = ops_first,
    .last_index = ops_last,
    .term = ops_term,
    .entries = ops_entries,
    .snapshot = ops_snapshot,
};
