/* mcache.c - freed small blocks kept by size class (mcache.h).
 *
 * Every block starts with a 16-byte header: its class (MCACHE_CLASSES for a block from malloc)
 * and the size asked for; a kept block's header links it to the next kept one instead. */
#include "metastore/mcache.h"

#include "poison.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct hdr {
    union {
        size_t cls; /* while handed out: its class, or MCACHE_CLASSES */
        void *next; /* while kept */
    } u;
    size_t size; /* the size asked for (a block from malloc: its size) */
};

_Static_assert(sizeof(struct hdr) == 16, "the header keeps blocks 16-byte aligned");

static size_t class_of(size_t size)
{
    size_t c = 0;
    while (((size_t)32 << c) < size)
        c++;
    return c;
}

static size_t capacity(const struct hdr *h)
{
    return h->u.cls < MCACHE_CLASSES ? (size_t)32 << h->u.cls : h->size;
}

void mcache_init(struct mcache *m, size_t keep)
{
    memset(m, 0, sizeof(*m));
    m->keep = keep;
}

void mcache_fini(struct mcache *m)
{
    for (size_t c = 0; c < MCACHE_CLASSES; c++) {
        while (m->free[c]) {
            struct hdr *h = m->free[c];
            m->free[c] = h->u.next;
            free(h);
        }
        m->n[c] = 0;
    }
}

void *mcache_alloc(struct mcache *m, size_t size)
{
    if (size > SIZE_MAX - sizeof(struct hdr))
        return NULL;
    struct hdr *h;
    if (size > MCACHE_MAX) {
        if (!(h = malloc(sizeof(*h) + size)))
            return NULL;
        h->u.cls = MCACHE_CLASSES;
        h->size = size;
        return h + 1;
    }
    size_t c = class_of(size);
    if (m->free[c]) {
        h = m->free[c];
        m->free[c] = h->u.next;
        m->n[c]--;
        UNPOISON(h + 1, size);
    } else if (!(h = malloc(sizeof(*h) + ((size_t)32 << c)))) {
        return NULL;
    } else {
        POISON((char *)(h + 1) + size, ((size_t)32 << c) - size);
    }
    h->u.cls = c;
    h->size = size;
    return h + 1;
}

void *mcache_calloc(struct mcache *m, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = mcache_alloc(m, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void mcache_free(struct mcache *m, void *p)
{
    if (!p)
        return;
    struct hdr *h = (struct hdr *)p - 1;
    size_t c = h->u.cls;
    if (c >= MCACHE_CLASSES || m->n[c] >= m->keep) {
        free(h);
        return;
    }
    POISON(p, (size_t)32 << c);
    h->u.next = m->free[c];
    m->free[c] = h;
    m->n[c]++;
}

void *mcache_realloc(struct mcache *m, void *p, size_t size)
{
    if (!p)
        return mcache_alloc(m, size);
    struct hdr *h = (struct hdr *)p - 1;
    if (h->u.cls == MCACHE_CLASSES && size > MCACHE_MAX) {
        if (size > SIZE_MAX - sizeof(*h))
            return NULL;
        struct hdr *nh = realloc(h, sizeof(*nh) + size);
        if (!nh)
            return NULL;
        nh->size = size;
        return nh + 1;
    }
    size_t cap = capacity(h);
    if (h->u.cls < MCACHE_CLASSES && size <= cap) {
        UNPOISON(p, size);
        POISON((char *)p + size, cap - size);
        h->size = size;
        return p;
    }
    void *np = mcache_alloc(m, size);
    if (!np)
        return NULL;
    memcpy(np, p, h->size < size ? h->size : size);
    mcache_free(m, p);
    return np;
}
