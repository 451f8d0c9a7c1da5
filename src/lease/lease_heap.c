/* lease_heap.c - binary min-heap of leases by expiry (ties by id, so the order is
 * deterministic). Each lease knows its slot, so removal and re-keying are O(log n). */
#include "lease_int.h"

#include "metastore/grow.h"

#include <stdlib.h>

static bool before(const struct lease *a, const struct lease *b)
{
    if (a->expiry_ms != b->expiry_ms)
        return a->expiry_ms < b->expiry_ms;
    return a->id < b->id;
}

static void set(struct lease_heap *h, size_t i, struct lease *l)
{
    h->v[i] = l;
    l->heap_idx = i;
}

static void up(struct lease_heap *h, size_t i)
{
    struct lease *l = h->v[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(l, h->v[p]))
            break;
        set(h, i, h->v[p]);
        i = p;
    }
    set(h, i, l);
}

static void down(struct lease_heap *h, size_t i)
{
    struct lease *l = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(h->v[c + 1], h->v[c]))
            c++;
        if (!before(h->v[c], l))
            break;
        set(h, i, h->v[c]);
        i = c;
    }
    set(h, i, l);
}

bool lease_heap_push(struct lease_heap *h, struct lease *l)
{
    struct lease **v = ms_grow(h->v, &h->cap, h->n + 1, sizeof(*v), 64);
    if (!v)
        return false;
    h->v = v;
    set(h, h->n++, l);
    up(h, h->n - 1);
    return true;
}

void lease_heap_remove(struct lease_heap *h, struct lease *l)
{
    size_t i = l->heap_idx;
    struct lease *last = h->v[--h->n];
    if (i == h->n)
        return;
    set(h, i, last);
    up(h, i);
    down(h, last->heap_idx);
}

void lease_heap_fix(struct lease_heap *h, struct lease *l)
{
    up(h, l->heap_idx);
    down(h, l->heap_idx);
}

struct lease *lease_heap_top(const struct lease_heap *h)
{
    return h->n ? h->v[0] : NULL;
}

void lease_heap_fini(struct lease_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
