/* sim_lincheck.c - Wing-Gong / Lowe linearizability search over per-key register histories. */
#include "sim_lincheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "lincheck: out of memory\n");
        abort();
    }
    return p;
}

/* One call or return in time order, in a doubly linked list the search lifts entries out of. */
struct node {
    bool is_call;
    size_t op;    /* index into the key's op array */
    size_t match; /* call: index of its return node */
    size_t prev, next;
    uint64_t time;
};

#define NIL SIZE_MAX

struct key_hist {
    const struct lc_op **ops;
    size_t n;
};

/* Memo of visited (linearized set, state). */
struct memo {
    size_t words;
    size_t cap; /* slots, power of two */
    size_t used;
    uint64_t *bits;   /* cap * words */
    uint64_t *states; /* cap */
    bool *full;       /* cap */
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

static uint64_t memo_hash(const uint64_t *bits, size_t words, uint64_t state)
{
    uint64_t h = mix(0, state);
    for (size_t i = 0; i < words; i++)
        h = mix(h, bits[i]);
    return h;
}

static void memo_init(struct memo *m, size_t words)
{
    memset(m, 0, sizeof(*m));
    m->words = words;
    m->cap = 1024;
    m->bits = xalloc(m->cap * words * sizeof(uint64_t));
    m->states = xalloc(m->cap * sizeof(uint64_t));
    m->full = xalloc(m->cap * sizeof(bool));
}

static void memo_fini(struct memo *m)
{
    free(m->bits);
    free(m->states);
    free(m->full);
}

static bool memo_insert(struct memo *m, const uint64_t *bits, uint64_t state);

static void memo_grow(struct memo *m)
{
    struct memo old = *m;
    m->cap *= 2;
    m->used = 0;
    m->bits = xalloc(m->cap * m->words * sizeof(uint64_t));
    m->states = xalloc(m->cap * sizeof(uint64_t));
    m->full = xalloc(m->cap * sizeof(bool));
    for (size_t i = 0; i < old.cap; i++)
        if (old.full[i])
            memo_insert(m, old.bits + i * old.words, old.states[i]);
    memo_fini(&old);
}

/* Insert; false if already present. */
static bool memo_insert(struct memo *m, const uint64_t *bits, uint64_t state)
{
    if ((m->used + 1) * 2 > m->cap)
        memo_grow(m);
    size_t mask = m->cap - 1;
    for (size_t i = memo_hash(bits, m->words, state) & mask;; i = (i + 1) & mask) {
        if (!m->full[i]) {
            m->full[i] = true;
            m->states[i] = state;
            memcpy(m->bits + i * m->words, bits, m->words * sizeof(uint64_t));
            m->used++;
            return true;
        }
        if (m->states[i] == state &&
            memcmp(m->bits + i * m->words, bits, m->words * sizeof(uint64_t)) == 0)
            return false;
    }
}

/* Apply op to state; false if its observed outcome is impossible from state. */
static bool model_step(const struct lc_op *op, uint64_t state, uint64_t *next)
{
    switch (op->kind) {
    case LC_PUT:
        *next = op->arg;
        return true;
    case LC_GET:
        *next = state;
        return op->unknown || op->out == state;
    case LC_CAS:
        if (op->unknown) {
            *next = state == op->expect ? op->arg : state;
            return true;
        }
        if (op->out) {
            *next = op->arg;
            return state == op->expect;
        }
        *next = state;
        return state != op->expect;
    }
    return false;
}

static int node_cmp(const void *a, const void *b)
{
    const struct node *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    /* at equal times, calls first: treat touching operations as concurrent */
    if (x->is_call != y->is_call)
        return x->is_call ? -1 : 1;
    return x->op < y->op ? -1 : x->op > y->op;
}

static void lift(struct node *nodes, size_t *head, size_t i)
{
    struct node *c = &nodes[i];
    if (c->prev != NIL)
        nodes[c->prev].next = c->next;
    else
        *head = c->next;
    if (c->next != NIL)
        nodes[c->next].prev = c->prev;
    struct node *r = &nodes[c->match];
    if (r->prev != NIL)
        nodes[r->prev].next = r->next;
    else
        *head = r->next;
    if (r->next != NIL)
        nodes[r->next].prev = r->prev;
}

static void unlift(struct node *nodes, size_t *head, size_t i)
{
    struct node *c = &nodes[i];
    struct node *r = &nodes[c->match];
    if (r->prev != NIL)
        nodes[r->prev].next = c->match;
    else
        *head = c->match;
    if (r->next != NIL)
        nodes[r->next].prev = c->match;
    if (c->prev != NIL)
        nodes[c->prev].next = i;
    else
        *head = i;
    if (c->next != NIL)
        nodes[c->next].prev = i;
}

static enum lc_result check_key(const struct key_hist *h, uint64_t max_steps)
{
    size_t n = h->n;
    if (n == 0)
        return LC_OK;
    struct node *nodes = xalloc(2 * n * sizeof(*nodes));
    for (size_t i = 0; i < n; i++) {
        nodes[2 * i] = (struct node){.is_call = true, .op = i, .time = h->ops[i]->call};
        nodes[2 * i + 1] = (struct node){.is_call = false, .op = i, .time = h->ops[i]->ret};
    }
    qsort(nodes, 2 * n, sizeof(*nodes), node_cmp);
    size_t *ret_pos = xalloc(n * sizeof(size_t));
    for (size_t i = 0; i < 2 * n; i++) {
        nodes[i].prev = i ? i - 1 : NIL;
        nodes[i].next = i + 1 < 2 * n ? i + 1 : NIL;
        if (!nodes[i].is_call)
            ret_pos[nodes[i].op] = i;
    }
    for (size_t i = 0; i < 2 * n; i++)
        if (nodes[i].is_call)
            nodes[i].match = ret_pos[nodes[i].op];
    free(ret_pos);

    size_t words = (n + 63) / 64;
    uint64_t *lin = xalloc(words * sizeof(uint64_t));
    struct memo memo;
    memo_init(&memo, words);
    struct frame {
        size_t node;
        uint64_t state;
    } *stack = xalloc(n * sizeof(*stack));
    size_t depth = 0;
    size_t head = 0;
    size_t e = head;
    uint64_t state = 0;
    uint64_t steps = 0;
    enum lc_result res = LC_OK;
    while (head != NIL) {
        if (++steps > max_steps) {
            res = LC_GAVE_UP;
            break;
        }
        if (e == NIL) {
            /* only unknown-outcome calls are left unlinearized but their returns never come:
             * impossible, since returns follow calls in the list */
            res = LC_VIOLATION;
            break;
        }
        struct node *nd = &nodes[e];
        if (nd->is_call) {
            const struct lc_op *op = h->ops[nd->op];
            uint64_t next;
            if (model_step(op, state, &next)) {
                lin[nd->op / 64] |= 1ull << (nd->op % 64);
                if (memo_insert(&memo, lin, next)) {
                    stack[depth].node = e;
                    stack[depth].state = state;
                    depth++;
                    state = next;
                    lift(nodes, &head, e);
                    e = head;
                    continue;
                }
                lin[nd->op / 64] &= ~(1ull << (nd->op % 64));
            }
            e = nd->next;
        } else {
            /* an operation returned before we could place it: backtrack */
            if (depth == 0) {
                res = LC_VIOLATION;
                break;
            }
            depth--;
            size_t c = stack[depth].node;
            state = stack[depth].state;
            lin[nodes[c].op / 64] &= ~(1ull << (nodes[c].op % 64));
            unlift(nodes, &head, c);
            e = nodes[c].next;
        }
    }
    free(stack);
    memo_fini(&memo);
    free(lin);
    free(nodes);
    return res;
}

enum lc_result lc_check(const struct lc_op *ops, size_t n, uint64_t max_steps, uint32_t *bad_key)
{
    uint32_t max_key = 0;
    for (size_t i = 0; i < n; i++)
        if (ops[i].key > max_key)
            max_key = ops[i].key;
    enum lc_result worst = LC_OK;
    const struct lc_op **buf = xalloc((n ? n : 1) * sizeof(*buf));
    for (uint32_t k = 0; n && k <= max_key; k++) {
        struct key_hist h = {.ops = buf, .n = 0};
        for (size_t i = 0; i < n; i++)
            if (ops[i].key == k)
                buf[h.n++] = &ops[i];
        enum lc_result r = check_key(&h, max_steps);
        if (r == LC_VIOLATION) {
            *bad_key = k;
            worst = r;
            break;
        }
        if (r == LC_GAVE_UP)
            worst = r;
    }
    free(buf);
    return worst;
}
