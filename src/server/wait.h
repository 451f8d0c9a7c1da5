/* wait.h - the table of callers waiting for a request to complete, keyed by request id
 * (etcd pkg/wait). Private to the server module. */
#ifndef METASTORE_WAIT_H
#define METASTORE_WAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/srv.h"

struct wait_entry {
    uint64_t id; /* 0: free slot */
    srv_done_fn done;
    void *ctx;
    const struct srv_req *req; /* reads only: borrowed from the caller */
    ms_err fail;               /* non-zero: answer this error once the entry is applied */
};

struct wait {
    struct wait_entry *slots;
    size_t cap; /* power of two */
    size_t n;
};

bool wait_init(struct wait *w);
void wait_fini(struct wait *w);
/* Add id (non-zero, not present). Returns the entry to fill, NULL on OOM. */
struct wait_entry *wait_add(struct wait *w, uint64_t id);
struct wait_entry *wait_find(const struct wait *w, uint64_t id);
/* Remove id; copies the entry to *out if found (out may be NULL). */
bool wait_remove(struct wait *w, uint64_t id, struct wait_entry *out);

#endif
