/* wait.c - open-addressing hash table of waiters (linear probing, backward-shift deletion).
 * Owns the slot array; never the callers' contexts. */
#include "wait.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(uint64_t id, size_t cap)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)id & (cap - 1);
}

bool wait_init(struct wait *w)
{
    w->cap = 64;
    w->n = 0;
    w->slots = calloc(w->cap, sizeof(*w->slots));
    return w->slots != NULL;
}

void wait_fini(struct wait *w)
{
    free(w->slots);
    memset(w, 0, sizeof(*w));
}

static bool grow(struct wait *w)
{
    size_t cap = w->cap * 2;
    struct wait_entry *s = calloc(cap, sizeof(*s));
    if (!s)
        return false;
    for (size_t i = 0; i < w->cap; i++) {
        if (!w->slots[i].id)
            continue;
        size_t j = slot_of(w->slots[i].id, cap);
        while (s[j].id)
            j = (j + 1) & (cap - 1);
        s[j] = w->slots[i];
    }
    free(w->slots);
    w->slots = s;
    w->cap = cap;
    return true;
}

struct wait_entry *wait_add(struct wait *w, uint64_t id)
{
    if ((w->n + 1) * 2 > w->cap && !grow(w))
        return NULL;
    size_t j = slot_of(id, w->cap);
    while (w->slots[j].id)
        j = (j + 1) & (w->cap - 1);
    memset(&w->slots[j], 0, sizeof(w->slots[j]));
    w->slots[j].id = id;
    w->n++;
    return &w->slots[j];
}

static size_t find_slot(const struct wait *w, uint64_t id)
{
    size_t j = slot_of(id, w->cap);
    while (w->slots[j].id) {
        if (w->slots[j].id == id)
            return j;
        j = (j + 1) & (w->cap - 1);
    }
    return SIZE_MAX;
}

struct wait_entry *wait_find(const struct wait *w, uint64_t id)
{
    size_t j = id ? find_slot(w, id) : SIZE_MAX;
    return j == SIZE_MAX ? NULL : &w->slots[j];
}

bool wait_remove(struct wait *w, uint64_t id, struct wait_entry *out)
{
    size_t j = id ? find_slot(w, id) : SIZE_MAX;
    if (j == SIZE_MAX)
        return false;
    if (out)
        *out = w->slots[j];
    /* Backward-shift: move later members of the probe run into the hole. */
    size_t hole = j;
    size_t k = (j + 1) & (w->cap - 1);
    while (w->slots[k].id) {
        size_t home = slot_of(w->slots[k].id, w->cap);
        /* Can the entry at k move to hole? Yes unless its home lies cyclically in (hole, k]. */
        bool stays = hole <= k ? (home > hole && home <= k) : (home > hole || home <= k);
        if (!stays) {
            w->slots[hole] = w->slots[k];
            hole = k;
        }
        k = (k + 1) & (w->cap - 1);
    }
    memset(&w->slots[hole], 0, sizeof(w->slots[hole]));
    w->n--;
    return true;
}
