/* skiplist.h - an ordered map from byte-string keys to pointers.
 *
 * Keys are copied into the node; values are opaque pointers owned by the caller (sl_destroy
 * can release them through a callback). Ordering is memcmp order with shorter-prefix-first,
 * the order of LMDB and etcd's btree. Node levels come from a PRNG seeded at creation, so a
 * given sequence of operations always builds the same structure.
 *
 * Node pointers stay valid until that node is removed or the list destroyed.
 */
#ifndef METASTORE_SKIPLIST_H
#define METASTORE_SKIPLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl;
struct sl_node;

/* NULL on OOM. */
struct sl *sl_create(uint64_t seed);

/* Free every node; free_val (may be NULL) is called on each non-NULL value. Accepts NULL. */
void sl_destroy(struct sl *l, void (*free_val)(void *val));

/* Number of nodes. */
size_t sl_count(const struct sl *l);

/* Bytes used by nodes and keys (not values): for metrics and memory accounting. */
size_t sl_mem(const struct sl *l);

/* Exact match, or NULL. */
struct sl_node *sl_find(const struct sl *l, const uint8_t *key, size_t len);

/* First node with key >= key (key may be NULL/0 for the first node), or NULL. */
struct sl_node *sl_seek_ge(const struct sl *l, const uint8_t *key, size_t len);

/* Last node with key < key, or NULL. With key NULL and len 0 it returns the last node. */
struct sl_node *sl_seek_lt(const struct sl *l, const uint8_t *key, size_t len);

struct sl_node *sl_first(const struct sl *l);
struct sl_node *sl_last(const struct sl *l);
/* The following node, or NULL. */
struct sl_node *sl_next(const struct sl_node *n);

/* Insert key with val, or find the existing node. *out is the node either way; *existed says
 * which. An existing node's value is left unchanged. Returns false on OOM (nothing changed). */
bool sl_insert(struct sl *l, const uint8_t *key, size_t len, void *val, struct sl_node **out,
               bool *existed);

/* Remove key; returns its value (NULL if absent or stored NULL). *found says whether it was
 * there (found may be NULL). */
void *sl_remove(struct sl *l, const uint8_t *key, size_t len, bool *found);

/* Node accessors. The key bytes are owned by the node. */
const uint8_t *sl_node_key(const struct sl_node *n, size_t *len);
void *sl_node_val(const struct sl_node *n);
void sl_node_set_val(struct sl_node *n, void *val);

/* Byte-string order used everywhere: memcmp, then length. */
int sl_keycmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

#endif
