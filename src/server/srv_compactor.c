/* srv_compactor.c - auto compaction, as etcd's v3compactor.
 *
 * Periodic mode (retention P): every P/10 (at most 6 minutes) the current revision is recorded;
 * once P has passed since the start or the last compaction (then every min(P, 1 h)), the store is
 * compacted to the revision recorded P ago. Revision mode (retention N): every 5 minutes,
 * compact to current - N. The decisions are pure functions of the time passed in, so tests
 * drive them with a fake clock; srv owns the timer and proposes the compaction.
 */
#include "srv_int.h"

#include <string.h>

#define HOUR_MS         3600000ULL
#define REV_INTERVAL_MS 300000ULL /* etcd revInterval */

void srv_compactor_init(struct srv_compactor *c, bool revision_mode, uint64_t retention,
                        uint64_t now_ms, int64_t current_rev)
{
    memset(c, 0, sizeof(*c));
    c->revision_mode = revision_mode;
    c->retention = retention;
    if (!retention)
        return;
    if (revision_mode) {
        c->interval_ms = REV_INTERVAL_MS;
        return;
    }
    uint64_t capped = retention > HOUR_MS ? HOUR_MS : retention;
    c->interval_ms = capped / 10 ? capped / 10 : 1;
    c->period_ms = retention;
    c->compact_interval_ms = capped;
    c->base_interval_ms = retention;
    c->n_keep = (size_t)(retention / c->interval_ms) + 1;
    if (c->n_keep > SRV_COMPACTOR_REVS)
        c->n_keep = SRV_COMPACTOR_REVS;
    c->last_success_ms = now_ms;
    c->revs[c->n_revs++] = current_rev;
}

int64_t srv_compactor_tick(struct srv_compactor *c, uint64_t now_ms, int64_t current_rev)
{
    if (!c->retention)
        return 0;
    if (c->revision_mode) {
        int64_t rev = current_rev - (int64_t)c->retention;
        if (rev <= 0 || rev == c->last_rev)
            return 0;
        c->last_rev = rev;
        return rev;
    }
    int64_t rev = c->revs[0];
    int64_t out = 0;
    if (now_ms - c->last_success_ms >= c->base_interval_ms && rev != c->last_rev) {
        if (c->base_interval_ms == c->period_ms)
            c->base_interval_ms = c->compact_interval_ms;
        c->last_rev = rev;
        c->last_success_ms = now_ms;
        out = rev;
    }
    /* Record now; revs[0] stays the revision of one period ago. */
    if (c->n_revs == c->n_keep) {
        memmove(c->revs, c->revs + 1, (c->n_revs - 1) * sizeof(c->revs[0]));
        c->n_revs--;
    }
    c->revs[c->n_revs++] = current_rev;
    return out;
}
