/* srv_events.c - where applied changes go once they are in the store: the watch hub hears
 * every event here. Called from the apply loop with every
 * event of one entry; must not block and must copy what it keeps. */
#include "srv_int.h"

void srv_events_applied(struct srv *s, int64_t rev, const struct kv_event *ev, size_t n)
{
    /* Synced watchers get the events now: the hub encodes what it keeps, so the scratch
     * arena may be reset after this step. (No hub yet while the WAL is replayed at start.) */
    if (!s->watch)
        return;
    watch_hub_notify(s->watch, rev, ev, n);
    srv_watch_kick(s); /* watchers that could not be served now catch up from history */
}
