/* lease_int.h - private to src/lease. */
#ifndef METASTORE_LEASE_INT_H
#define METASTORE_LEASE_INT_H

#include "metastore/lease.h"

struct lease {
    int64_t id;
    int64_t ttl;        /* granted, seconds */
    uint64_t expiry_ms; /* UINT64_MAX: never (not primary) */
    bool handed_out;    /* returned by lease_mgr_expired, revoke pending */
    size_t heap_idx;
    size_t n_keys;
};

struct lease_heap {
    struct lease **v;
    size_t n;
    size_t cap;
};

bool lease_heap_push(struct lease_heap *h, struct lease *l);
void lease_heap_remove(struct lease_heap *h, struct lease *l);
/* Restore order after l->expiry_ms changed. */
void lease_heap_fix(struct lease_heap *h, struct lease *l);
struct lease *lease_heap_top(const struct lease_heap *h);
void lease_heap_fini(struct lease_heap *h);

#endif
