/* arena.h - bump allocator: one per request (h2o pool), freed in one go.
 *
 * Everything decoded for a request and everything its reply needs lives in its arena, so a
 * request has one release path whatever happens to its connection.
 */
#ifndef METASTORE_ARENA_H
#define METASTORE_ARENA_H

#include <stddef.h>
#include <stdint.h>

struct arena;

/* Create an arena whose first chunk holds at least first_chunk bytes. NULL on OOM. */
struct arena *arena_create(size_t first_chunk);

/* Free the arena and everything allocated from it. Accepts NULL. */
void arena_destroy(struct arena *a);

/* Free everything allocated so far but keep the first chunk for reuse. */
void arena_reset(struct arena *a);

/* n bytes aligned to 16, owned by the arena. NULL on OOM or if n is absurdly large. */
void *arena_alloc(struct arena *a, size_t n);

/* Like arena_alloc, zero-filled. count * size is checked for overflow. */
void *arena_calloc(struct arena *a, size_t count, size_t size);

/* Copy of p[0..n) in the arena. A zero-length copy returns a valid non-NULL pointer. */
void *arena_memdup(struct arena *a, const void *p, size_t n);

/* Bytes currently handed out (for limits and metrics). */
size_t arena_used(const struct arena *a);

/* Arenas of finished requests kept, reset, for the next ones: a request then costs no malloc
 * and free of its first chunk. All have first chunks of the pool's size; at most
 * ARENA_POOL_MAX are kept (the concurrency of a busy moment). */
#define ARENA_POOL_MAX 64
struct arena_pool {
    size_t first_chunk;
    struct arena *kept[ARENA_POOL_MAX];
    size_t n;
};

void arena_pool_init(struct arena_pool *p, size_t first_chunk);
/* A kept arena, or a new one with the pool's first chunk. NULL on OOM. */
struct arena *arena_pool_take(struct arena_pool *p);
/* Reset a and keep it, unless the pool is full or a's first chunk is not the pool's size:
 * then free it. Accepts NULL. */
void arena_pool_give(struct arena_pool *p, struct arena *a);
/* Free every kept arena. */
void arena_pool_fini(struct arena_pool *p);

#endif
