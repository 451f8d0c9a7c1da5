/* raft_log.c - the raft log: stable storage (through raft_log_ops) plus the unstable tail.
 *
 * Port of etcd-io/raft log.go and log_unstable.go. Invariants: applied <= applying <= committed
 * <= last index; unstable entries are contiguous from offset; entries below offset_in_progress
 * were handed out in a Ready and are being persisted. Committed entries are handed out for
 * applying only once they are stable (RAFT.md §3.2 rule 3), never straight from the unstable
 * tail. Only core code calls in here, so internal misuse is asserted.
 */
#include "raft_int.h"

#include "metastore/log.h"

#include <string.h>

/* ---- unstable ---- */

static bool u_first(const struct raft_unstable *u, uint64_t *i)
{
    if (u->has_snap) {
        *i = u->snap.index + 1;
        return true;
    }
    return false;
}

static bool u_last(const struct raft_unstable *u, uint64_t *i)
{
    if (u->ents.n) {
        *i = u->offset + u->ents.n - 1;
        return true;
    }
    if (u->has_snap) {
        *i = u->snap.index;
        return true;
    }
    return false;
}

static bool u_term(const struct raft_unstable *u, uint64_t i, uint64_t *t)
{
    if (i < u->offset) {
        if (u->has_snap && u->snap.index == i) {
            *t = u->snap.term;
            return true;
        }
        return false;
    }
    uint64_t last;
    if (!u_last(u, &last) || i > last)
        return false;
    *t = u->ents.v[i - u->offset].term;
    return true;
}

static void u_truncate_and_append(struct raft_unstable *u, const struct raft_entry *ents, size_t n)
{
    uint64_t from = ents[0].index;
    if (from == u->offset + u->ents.n) {
        /* plain append */
    } else if (from <= u->offset) {
        /* the new entries replace everything unstable */
        raft_ents_truncate(&u->ents, 0);
        u->offset = from;
        u->offset_in_progress = from;
    } else {
        raft_ents_truncate(&u->ents, (size_t)(from - u->offset));
        if (u->offset_in_progress > from)
            u->offset_in_progress = from;
    }
    for (size_t i = 0; i < n; i++)
        raft_ents_push_copy(&u->ents, &ents[i]);
}

/* ---- raftLog ---- */

void raft_log_init(struct raft_log *l, const struct raft_log_ops *ops, void *ctx,
                   uint64_t max_applying_bytes)
{
    memset(l, 0, sizeof(*l));
    l->ops = ops;
    l->ctx = ctx;
    uint64_t first = ops->first_index(ctx);
    uint64_t last = ops->last_index(ctx);
    l->u.offset = last + 1;
    l->u.offset_in_progress = last + 1;
    l->committed = first - 1;
    l->applying = first - 1;
    l->applied = first - 1;
    l->max_applying_bytes = max_applying_bytes;
}

void raft_log_fini(struct raft_log *l)
{
    raft_ents_fini(&l->u.ents);
}

uint64_t raft_log_first_index(const struct raft_log *l)
{
    uint64_t i;
    if (u_first(&l->u, &i))
        return i;
    return l->ops->first_index(l->ctx);
}

uint64_t raft_log_last_index(const struct raft_log *l)
{
    uint64_t i;
    if (u_last(&l->u, &i))
        return i;
    return l->ops->last_index(l->ctx);
}

bool raft_log_term(const struct raft_log *l, uint64_t i, uint64_t *t)
{
    if (u_term(&l->u, i, t))
        return true;
    if (i + 1 < raft_log_first_index(l) || i > raft_log_last_index(l))
        return false;
    ms_err e = l->ops->term(l->ctx, i, t);
    if (e == MS_OK)
        return true;
    MS_ASSERT(e == MS_E_COMPACTED || e == MS_E_NOT_EXIST);
    return false;
}

uint64_t raft_log_term_or0(const struct raft_log *l, uint64_t i)
{
    uint64_t t;
    return raft_log_term(l, i, &t) ? t : 0;
}

uint64_t raft_log_last_term(const struct raft_log *l)
{
    uint64_t t;
    uint64_t last = raft_log_last_index(l);
    MS_ASSERT(raft_log_term(l, last, &t));
    return t;
}

bool raft_log_match_term(const struct raft_log *l, uint64_t i, uint64_t t)
{
    uint64_t ours;
    return raft_log_term(l, i, &ours) && ours == t;
}

bool raft_log_is_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term)
{
    uint64_t lt = raft_log_last_term(l);
    return term > lt || (term == lt && index >= raft_log_last_index(l));
}

uint64_t raft_log_append(struct raft_log *l, const struct raft_entry *ents, size_t n)
{
    if (n == 0)
        return raft_log_last_index(l);
    MS_ASSERT(ents[0].index - 1 >= l->committed);
    u_truncate_and_append(&l->u, ents, n);
    return raft_log_last_index(l);
}

/* First entry whose (index, term) is not in our log, or 0 if all are. */
static uint64_t find_conflict(const struct raft_log *l, const struct raft_entry *ents, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!raft_log_match_term(l, ents[i].index, ents[i].term))
            return ents[i].index;
    return 0;
}

bool raft_log_maybe_append(struct raft_log *l, uint64_t prev_index, uint64_t prev_term,
                           uint64_t commit, const struct raft_entry *ents, size_t n,
                           uint64_t *lastnew)
{
    if (!raft_log_match_term(l, prev_index, prev_term))
        return false;
    *lastnew = prev_index + n;
    uint64_t ci = find_conflict(l, ents, n);
    if (ci != 0) {
        /* A conflict at or below our commit index means the cluster broke the Log Matching
         * property (etcd panics). Refuse the message instead of aborting on peer input; the
         * simulator's invariants report the underlying violation. */
        if (ci <= l->committed)
            return false;
        raft_log_append(l, ents + (ci - (prev_index + 1)), (size_t)(*lastnew - ci + 1));
    }
    uint64_t c = commit < *lastnew ? commit : *lastnew;
    raft_log_commit_to(l, c);
    return true;
}

uint64_t raft_log_find_conflict_by_term(const struct raft_log *l, uint64_t index, uint64_t term,
                                        uint64_t *term_out)
{
    for (; index > 0; index--) {
        uint64_t t;
        if (!raft_log_term(l, index, &t)) {
            *term_out = 0;
            return index;
        }
        if (t <= term) {
            *term_out = t;
            return index;
        }
    }
    *term_out = 0;
    return 0;
}

void raft_log_commit_to(struct raft_log *l, uint64_t c)
{
    if (l->committed < c) {
        MS_ASSERT(c <= raft_log_last_index(l));
        l->committed = c;
    }
}

bool raft_log_maybe_commit(struct raft_log *l, uint64_t index, uint64_t term)
{
#ifdef RAFT_BUG_COMMIT_OLD_TERM
    /* Planted bug: commit by counting replicas whatever the entry's term (Figure 8). */
    if (index > l->committed && index <= raft_log_last_index(l)) {
        (void)term;
        raft_log_commit_to(l, index);
        return true;
    }
    return false;
#else
    if (term != 0 && index > l->committed && raft_log_match_term(l, index, term)) {
        raft_log_commit_to(l, index);
        return true;
    }
    return false;
#endif
}

static uint64_t max_appliable(const struct raft_log *l)
{
    uint64_t hi = l->committed;
    if (hi > l->u.offset - 1)
        hi = l->u.offset - 1;
    return hi;
}

void raft_log_applied_to(struct raft_log *l, uint64_t i, uint64_t size)
{
    MS_ASSERT(i <= l->committed && i >= l->applied);
    l->applied = i;
    if (l->applying < i)
        l->applying = i;
    l->applying_bytes = l->applying_bytes > size ? l->applying_bytes - size : 0;
    l->applying_paused = l->applying_bytes >= l->max_applying_bytes;
}

void raft_log_accept_applying(struct raft_log *l, uint64_t i, uint64_t size)
{
    MS_ASSERT(i <= l->committed);
    l->applying = i;
    l->applying_bytes += size;
    l->applying_paused = l->applying_bytes >= l->max_applying_bytes || i < max_appliable(l);
}

void raft_log_accept_unstable(struct raft_log *l)
{
    struct raft_unstable *u = &l->u;
    if (u->ents.n)
        u->offset_in_progress = u->offset + u->ents.n;
    if (u->has_snap)
        u->snap_in_progress = true;
}

void raft_log_stable_to(struct raft_log *l, uint64_t index, uint64_t term)
{
    struct raft_unstable *u = &l->u;
    uint64_t gt;
    /* Ignore acks for entries that were since replaced (another term wrote the index), or that
     * match the unstable snapshot: etcd unstable.stableTo. */
    if (!u_term(u, index, &gt) || index < u->offset || gt != term)
        return;
    raft_ents_drop_front(&u->ents, (size_t)(index + 1 - u->offset));
    u->offset = index + 1;
    if (u->offset_in_progress < u->offset)
        u->offset_in_progress = u->offset;
}

void raft_log_stable_snap_to(struct raft_log *l, uint64_t i)
{
    if (l->u.has_snap && l->u.snap.index == i) {
        l->u.has_snap = false;
        l->u.snap_in_progress = false;
    }
}

void raft_log_restore(struct raft_log *l, const struct raft_snapshot_meta *s)
{
    l->committed = s->index;
    struct raft_unstable *u = &l->u;
    u->offset = s->index + 1;
    u->offset_in_progress = u->offset;
    raft_ents_truncate(&u->ents, 0);
    u->snap = *s;
    u->has_snap = true;
    u->snap_in_progress = false;
}

void raft_log_snapshot(const struct raft_log *l, struct raft_snapshot_meta *out)
{
    if (l->u.has_snap) {
        *out = l->u.snap;
        return;
    }
    l->ops->snapshot(l->ctx, out);
}

bool raft_log_has_snapshot_pending(const struct raft_log *l)
{
    return l->u.has_snap;
}

bool raft_log_has_next_unstable_snap(const struct raft_log *l)
{
    return l->u.has_snap && !l->u.snap_in_progress;
}

/* Storage entries [lo, hi) (all below the unstable offset), handed to fn one by one. *size
 * accumulates their encoded size; stops at max_bytes (after at least one when *count is 0). */
struct limit {
    uint64_t max_bytes;
    uint64_t size;
    size_t count;
};

static bool limit_admit(struct limit *lim, const struct raft_entry *e)
{
    uint64_t s = raft_entry_size(e);
    if (lim->count > 0 && lim->size + s > lim->max_bytes)
        return false;
    lim->size += s;
    lim->count++;
    return true;
}

static bool push_copy(void *arg, const struct raft_entry *e)
{
    raft_ents_push_copy(arg, e);
    return true;
}

/* Visit [lo, hi), stopping when fn says so or the size limit is reached. */
static ms_err visit(const struct raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                    raft_ent_visit_fn fn, void *arg)
{
    MS_ASSERT(lo <= hi);
    if (lo < raft_log_first_index(l))
        return MS_E_COMPACTED;
    MS_ASSERT(hi <= raft_log_last_index(l) + 1);
    struct limit lim = {.max_bytes = max_bytes};
    const struct raft_unstable *u = &l->u;
    while (lo < hi && lo < u->offset) {
        uint64_t cut = hi < u->offset ? hi : u->offset;
        const struct raft_entry *ents;
        size_t n;
        ms_err e = l->ops->entries(l->ctx, lo, cut, max_bytes, &ents, &n);
        if (e != MS_OK)
            return e;
        MS_ASSERT(n > 0 && n <= cut - lo);
        for (size_t i = 0; i < n; i++) {
            MS_ASSERT(ents[i].index == lo + i);
            if (!limit_admit(&lim, &ents[i]) || !fn(arg, &ents[i]))
                return MS_OK;
        }
        lo += n;
    }
    for (; lo < hi; lo++) {
        const struct raft_entry *e = &u->ents.v[lo - u->offset];
        if (!limit_admit(&lim, e) || !fn(arg, e))
            return MS_OK;
    }
    return MS_OK;
}

ms_err raft_log_slice(const struct raft_log *l, uint64_t lo, uint64_t hi, uint64_t max_bytes,
                      struct raft_ents *out)
{
    return visit(l, lo, hi, max_bytes, push_copy, out);
}

ms_err raft_log_scan(const struct raft_log *l, uint64_t lo, uint64_t hi, raft_ent_visit_fn fn,
                     void *arg)
{
    return visit(l, lo, hi, UINT64_MAX, fn, arg);
}

size_t raft_log_next_unstable(const struct raft_log *l, const struct raft_entry **out)
{
    const struct raft_unstable *u = &l->u;
    size_t in_progress = (size_t)(u->offset_in_progress - u->offset);
    if (in_progress >= u->ents.n) {
        *out = NULL;
        return 0;
    }
    *out = u->ents.v + in_progress;
    return u->ents.n - in_progress;
}

bool raft_log_has_next_committed(const struct raft_log *l)
{
    if (l->applying_paused || l->u.has_snap)
        return false;
    return l->applying + 1 <= max_appliable(l);
}

void raft_log_next_committed(const struct raft_log *l, struct raft_ents *out)
{
    if (!raft_log_has_next_committed(l))
        return;
    uint64_t lo = l->applying + 1;
    uint64_t hi = max_appliable(l) + 1;
    ms_err e = raft_log_slice(l, lo, hi, l->max_applying_bytes - l->applying_bytes, out);
    MS_ASSERT(e == MS_OK);
}
