/* grow.h - room in a realloc'd array that doubles as it fills. */
#ifndef METASTORE_GROW_H
#define METASTORE_GROW_H

#include <stdlib.h>

/* Make room for need (>= 1) elements of size bytes in p, whose capacity is *cap: doubled until
 * it suffices, starting from first. Returns the array, moved or not; NULL when out of memory,
 * with p and *cap untouched. */
static inline void *ms_grow(void *p, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap)
        return p;
    size_t nc = *cap ? *cap : first;
    while (nc < need)
        nc *= 2;
    void *np = realloc(p, nc * size);
    if (np)
        *cap = nc;
    return np;
}

#endif
