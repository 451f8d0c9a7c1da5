/* mcache.h - freed small blocks kept by size class for the next allocations of that size.
 *
 * For code that allocates and frees many short-lived blocks of a few sizes in bursts (an
 * HTTP/2 session's streams, frames and header copies): glibc's per-thread cache holds 7 blocks
 * of a size, so a burst of 64 calls falls to its slower bins and consolidations. Blocks of up
 * to MCACHE_MAX bytes come in classes of 32 B to 4 KiB, and at most keep blocks of each class
 * are kept (memory held: keep x 8 KiB at most); larger ones go to malloc and free. Single
 * threaded. Under AddressSanitizer a kept block is poisoned until handed out again. */
#ifndef METASTORE_MCACHE_H
#define METASTORE_MCACHE_H

#include <stddef.h>

#define MCACHE_CLASSES 8
#define MCACHE_MAX     ((size_t)32 << (MCACHE_CLASSES - 1)) /* 4 KiB */

struct mcache {
    void *free[MCACHE_CLASSES]; /* kept blocks, by class */
    size_t n[MCACHE_CLASSES];
    size_t keep;
};

void mcache_init(struct mcache *m, size_t keep);
/* Free every kept block (blocks handed out must have been given back or freed before). */
void mcache_fini(struct mcache *m);
/* malloc, calloc, realloc and free with the C library's contracts (NULL on OOM, free(NULL)
 * does nothing); a block must go back to the cache it came from. */
void *mcache_alloc(struct mcache *m, size_t size);
void *mcache_calloc(struct mcache *m, size_t n, size_t size);
void *mcache_realloc(struct mcache *m, void *p, size_t size);
void mcache_free(struct mcache *m, void *p);

#endif
