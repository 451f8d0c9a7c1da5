/* auth_int.h - the auth store's internals, shared by the files of src/auth. */
#ifndef METASTORE_AUTH_INT_H
#define METASTORE_AUTH_INT_H

#include "metastore/auth.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A key interval [lo, hi); hi_inf: no upper bound. A single key k is [k, k "\0"). */
struct auth_ivl {
    const uint8_t *lo;
    size_t lo_len;
    const uint8_t *hi;
    size_t hi_len;
    bool hi_inf;
};

struct auth_perm_rec {
    int64_t type;
    uint8_t *key;
    size_t key_len;
    uint8_t *end; /* NULL when empty */
    size_t end_len;
};

struct auth_role {
    uint8_t *name;
    size_t name_len;
    struct auth_perm_rec *perms; /* sorted by key */
    size_t n_perms;
};

/* The permissions of a user's roles merged per kind (etcd's unifiedRangePermissions), sorted
 * by lo. Built on first use after any change; the store drops every cache on a change. */
struct auth_merged {
    struct auth_ivl *read;
    size_t n_read;
    struct auth_ivl *write;
    size_t n_write;
    uint8_t **owned; /* the point intervals' hi bytes */
    size_t n_owned;
};

struct auth_user {
    uint8_t *name;
    size_t name_len;
    char *hash; /* bcrypt, NUL-terminated; "" without a password */
    bool no_password;
    struct auth_bytes *roles; /* sorted, owned */
    size_t n_roles;
    struct auth_merged *merged; /* NULL until needed */
};

struct auth_token;

struct auth_tokens {
    struct auth_token **buckets; /* by hash of the token */
    size_t cap;                  /* a power of two, 0 before the first token */
    size_t n;
    struct auth_token *oldest; /* least recently used first: expiry order */
    struct auth_token *newest;
    uint64_t ttl_ms;
};

struct auth_store {
    struct auth_user **users; /* sorted by name */
    size_t n_users;
    size_t cap_users;
    struct auth_role **roles; /* sorted by name */
    size_t n_roles;
    size_t cap_roles;
    bool enabled;
    uint64_t revision;
    struct auth_tokens tokens;
    struct auth_jwt *jwt;    /* JWT mode (NULL: simple tokens) */
    struct arena *jwt_arena; /* the last verified token's parts */
};

/* Byte-wise order of names and keys (Go's bytes.Compare). */
int auth_bytes_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn);

struct auth_user *auth_user_find(const struct auth_store *as, const uint8_t *name, size_t len);
struct auth_role *auth_role_find(const struct auth_store *as, const uint8_t *name, size_t len);
bool auth_user_has_role(const struct auth_user *u, const uint8_t *role, size_t len);

/* auth_perm.c */
void auth_merged_free(struct auth_merged *m);
/* Drop every user's merged permissions (after any change of users or roles). */
void auth_perm_invalidate(struct auth_store *as);

/* auth_token.c */
void auth_tokens_init(struct auth_tokens *t, uint64_t ttl_ms);
void auth_tokens_fini(struct auth_tokens *t);
/* Register token for user; MS_E_NOMEM. */
ms_err auth_tokens_add(struct auth_tokens *t, const uint8_t *tok, size_t len, const uint8_t *user,
                       size_t user_len, uint64_t now_ms);
void auth_tokens_drop_user(struct auth_tokens *t, const uint8_t *user, size_t len);
void auth_tokens_clear(struct auth_tokens *t);

#endif
