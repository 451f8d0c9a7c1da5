/* arena.c - bump allocator in a list of chunks. Owns its chunks; hands out memory that lives
 * until arena_reset or arena_destroy. */
#include "metastore/arena.h"

#include "poison.h"

#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer, memory not handed out (a new chunk, a chunk after arena_reset) is
 * poisoned, so that a pointer kept past a reset is reported as one kept past a free would be. */

#define ARENA_ALIGN     16u
#define ARENA_MAX_ALLOC ((size_t)1 << 40)

struct chunk {
    struct chunk *next;
    size_t cap;
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct chunk *head;  /* chunk being filled */
    struct chunk *first; /* kept across arena_reset */
    size_t used;
};

static struct chunk *chunk_create(size_t cap)
{
    struct chunk *c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    POISON(c->data, cap);
    return c;
}

/* The first chunk of an arena asked for n bytes in it. */
static size_t first_chunk_size(size_t n)
{
    return n < 256 ? 256 : n;
}

struct arena *arena_create(size_t first_chunk)
{
    struct arena *a = malloc(sizeof(*a));
    if (!a)
        return NULL;
    a->first = chunk_create(first_chunk_size(first_chunk));
    if (!a->first) {
        free(a);
        return NULL;
    }
    a->head = a->first;
    a->used = 0;
    return a;
}

static void free_chain(struct chunk *c, const struct chunk *stop)
{
    while (c && c != stop) {
        struct chunk *next = c->next;
        UNPOISON(c->data, c->cap);
        free(c);
        c = next;
    }
}

void arena_destroy(struct arena *a)
{
    if (!a)
        return;
    free_chain(a->head, NULL);
    free(a);
}

void arena_reset(struct arena *a)
{
    /* Chunks are linked newest first; the first chunk is the tail of the list. */
    free_chain(a->head, a->first);
    a->head = a->first;
    POISON(a->first->data, a->first->cap);
    a->first->used = 0;
    a->first->next = NULL;
    a->used = 0;
}

void *arena_alloc(struct arena *a, size_t n)
{
    if (n > ARENA_MAX_ALLOC)
        return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0)
        need = ARENA_ALIGN;
    struct chunk *c = a->head;
    if (c->cap - c->used < need) {
        size_t cap = c->cap * 2;
        if (cap < need)
            cap = need;
        if (cap > ((size_t)1 << 24) && need <= ((size_t)1 << 24))
            cap = (size_t)1 << 24;
        struct chunk *nc = chunk_create(cap);
        if (!nc)
            return NULL;
        nc->next = c;
        a->head = nc;
        c = nc;
    }
    void *p = c->data + c->used;
    UNPOISON(p, n ? n : 1);
    c->used += need;
    a->used += need;
    return p;
}

void *arena_calloc(struct arena *a, size_t count, size_t size)
{
    if (size && count > ARENA_MAX_ALLOC / size)
        return NULL;
    void *p = arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *arena_memdup(struct arena *a, const void *p, size_t n)
{
    void *d = arena_alloc(a, n);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

size_t arena_used(const struct arena *a)
{
    return a->used;
}

void arena_pool_init(struct arena_pool *p, size_t first_chunk)
{
    p->first_chunk = first_chunk_size(first_chunk);
    p->n = 0;
}

struct arena *arena_pool_take(struct arena_pool *p)
{
    return p->n ? p->kept[--p->n] : arena_create(p->first_chunk);
}

void arena_pool_give(struct arena_pool *p, struct arena *a)
{
    if (!a)
        return;
    if (p->n == ARENA_POOL_MAX || a->first->cap != p->first_chunk) {
        arena_destroy(a);
        return;
    }
    arena_reset(a);
    p->kept[p->n++] = a;
}

void arena_pool_fini(struct arena_pool *p)
{
    while (p->n)
        arena_destroy(p->kept[--p->n]);
}
