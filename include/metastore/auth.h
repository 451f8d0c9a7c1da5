/* auth.h - users, roles with key-range permissions, the enabled flag and the auth revision
 * (etcd's auth store), simple tokens, and the password hasher.
 *
 * The store is a state machine: it changes only through auth_apply, called with the entries of
 * the log in order inside the server's write transaction, and it mirrors buckets "auth",
 * "authUsers" and "authRoles" (so snapshots and backups carry it). Every change that etcd
 * counts bumps the auth revision. Passwords reach the log already hashed (bcrypt, etcd's cost
 * 10): hashing and checking happen before proposing, on the hasher's thread.
 *
 * Tokens are etcd's simple tokens: 16 random letters, '.', the log index of the authenticate
 * entry. Every member assigns the token when it applies that entry. A token lives --auth-token-ttl
 * after its last use; a changed password, a deleted user and auth disable drop tokens at once.
 *
 * Names, keys and tokens are byte strings (pointer and length). Results of auth_apply and the
 * names auth_token_user returns are BORROWED from the store: valid until the next auth_apply or
 * token call. Nothing here blocks except auth_load (reads the backend) and the hasher's thread.
 */
#ifndef METASTORE_AUTH_H
#define METASTORE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metastore/err.h"

struct arena;
struct be_txn;
struct buf;
struct rd;

/* etcd authpb.Permission_Type. */
enum auth_perm { AUTH_PERM_READ = 0, AUTH_PERM_WRITE = 1, AUTH_PERM_READWRITE = 2 };

enum auth_op {
    AUTH_OP_ENABLE = 1,
    AUTH_OP_DISABLE,
    AUTH_OP_AUTHENTICATE,
    AUTH_OP_USER_ADD,
    AUTH_OP_USER_GET,
    AUTH_OP_USER_LIST,
    AUTH_OP_USER_DELETE,
    AUTH_OP_USER_CHANGEPW,
    AUTH_OP_USER_GRANT,
    AUTH_OP_USER_REVOKE,
    AUTH_OP_ROLE_ADD,
    AUTH_OP_ROLE_GET,
    AUTH_OP_ROLE_LIST,
    AUTH_OP_ROLE_DELETE,
    AUTH_OP_ROLE_GRANT,
    AUTH_OP_ROLE_REVOKE,
    AUTH_OP_COUNT_
};

struct auth_bytes {
    const uint8_t *p;
    size_t len;
};

/* One auth request as the log carries it (etcd's Auth*Request, InternalAuthenticateRequest). */
struct auth_req {
    enum auth_op op;
    bool has_who;               /* the request carried a valid token */
    struct auth_bytes who;      /* its user: admin checks happen at apply, as etcd's */
    struct auth_bytes name;     /* user or role the request is about */
    struct auth_bytes role;     /* user grant/revoke */
    struct auth_bytes password; /* before proposing: the password; in the log: its bcrypt hash */
    bool no_password;           /* user add: options.no_password */
    int64_t perm_type;          /* role grant (enum auth_perm) */
    struct auth_bytes key;      /* role grant/revoke */
    struct auth_bytes range_end;
    struct auth_bytes token; /* authenticate: the token's random prefix */
    uint64_t checked_rev;    /* authenticate: the auth revision the password was checked at */
};

struct auth_perm_out {
    int64_t type;
    struct auth_bytes key;
    struct auth_bytes range_end;
};

/* What an auth request answers (besides the header). */
struct auth_resp {
    enum auth_op op;                /* the request's */
    struct auth_bytes token;        /* authenticate */
    const struct auth_bytes *names; /* user get: roles; user list: users; role list: roles */
    size_t n_names;
    const struct auth_perm_out *perms; /* role get, sorted by key */
    size_t n_perms;
};

struct auth_store;

/* An empty store (auth disabled, revision 0). token_ttl_ms: simple token idle lifetime.
 * NULL on OOM. */
struct auth_store *auth_create(uint64_t token_ttl_ms);
void auth_destroy(struct auth_store *as);

/* Replace the in-memory state with the buckets' (at start, after a snapshot is loaded).
 * Tokens are dropped. MS_E_DATA_CORRUPT for a record that does not decode. */
ms_err auth_load(struct auth_store *as, struct be_txn *t);

bool auth_enabled(const struct auth_store *as);
uint64_t auth_revision(const struct auth_store *as);

/* Apply one request at log index index (the token of an authenticate). Writes go to t; the
 * answer's arrays are allocated in a. Returns etcd's error for the request, MS_E_IO /
 * MS_E_NO_SPACE / MS_E_NOMEM when the backend or memory failed (the caller's txn is then
 * aborted and the store reloaded), MS_E_AUTH_OLD_REVISION for an authenticate checked against
 * a revision that has since moved (the caller checks the password again). now_ms: tokens'
 * clock. */
ms_err auth_apply(struct auth_store *as, struct be_txn *t, const struct auth_req *req,
                  uint64_t index, uint64_t now_ms, struct arena *a, struct auth_resp *out);

/* Whether req changes nothing (get and list): it may be answered without the log. */
bool auth_req_is_read(const struct auth_req *req);

/* ---- checks (etcd isOpPermitted, IsAdminPermitted) ----
 * has_user false: the request had no token. While auth is disabled everything is allowed. */
ms_err auth_check_range(struct auth_store *as, bool has_user, struct auth_bytes user,
                        struct auth_bytes key, struct auth_bytes range_end, enum auth_perm perm);
ms_err auth_check_admin(struct auth_store *as, bool has_user, struct auth_bytes user);

/* ---- tokens ----
 * The user of token tok (borrowed; see above), refreshing its lifetime. MS_E_INVALID_AUTH_TOKEN
 * if it is unknown or expired, whether or not auth is enabled (etcd checks a token whenever one
 * is sent). */
ms_err auth_token_user(struct auth_store *as, const uint8_t *tok, size_t len, uint64_t now_ms,
                       struct auth_bytes *user);
/* A fresh random token prefix (16 letters + NUL) for an authenticate. */
void auth_token_prefix(char out[17]);
size_t auth_token_count(const struct auth_store *as);

/* The stored bcrypt hash of a user for a password check: MS_E_AUTH_NOT_ENABLED,
 * MS_E_AUTH_FAILED (no such user), MS_E_NO_PASSWORD_USER, or MS_OK with *hash (NUL-terminated,
 * borrowed). */
ms_err auth_password_hash(struct auth_store *as, struct auth_bytes user, const char **hash);

/* ---- the log form of a request (for srv's entry codec) ---- */
void auth_req_encode(const struct auth_req *req, struct buf *out);
/* Bytes point into the reader's memory. False on malformed input. */
bool auth_req_decode(struct rd *r, struct auth_req *req);

/* ---- the hasher: bcrypt off the loop ----
 * One thread takes jobs (hash a password, or check one against a hash) from a bounded queue and
 * posts results; the loop waits on auth_hasher_fd (an eventfd, readable when results wait) and
 * collects them with auth_hasher_poll. */
struct auth_hasher;

enum auth_job_kind { AUTH_JOB_HASH, AUTH_JOB_CHECK };

typedef void (*auth_job_fn)(void *ctx, ms_err err, const char *hash);

/* cost: bcrypt's cost (etcd: 10). max_jobs: queued jobs at most. NULL on failure. */
struct auth_hasher *auth_hasher_create(int cost, size_t max_jobs);
/* Stops the thread (after its current job) and drops queued jobs without calling them. */
void auth_hasher_destroy(struct auth_hasher *h);
int auth_hasher_fd(const struct auth_hasher *h);
/* Queue a job: HASH password (done gets MS_OK and the hash) or CHECK password against hash
 * (done gets MS_OK or MS_E_AUTH_FAILED). Copies its inputs. MS_E_TOO_MANY_REQUESTS when the
 * queue is full; *id names the job for auth_hasher_cancel. */
ms_err auth_hasher_submit(struct auth_hasher *h, enum auth_job_kind kind, const uint8_t *password,
                          size_t password_len, const char *hash, auth_job_fn done, void *ctx,
                          uint64_t *id);
/* done of job id will not be called. */
void auth_hasher_cancel(struct auth_hasher *h, uint64_t id);
/* Call done for every finished job (from the loop). */
void auth_hasher_poll(struct auth_hasher *h);

/* The same work, synchronously (tests and tools). hash_out: room for 128 bytes. */
ms_err auth_bcrypt_hash(const uint8_t *password, size_t len, int cost, char *hash_out);
bool auth_bcrypt_check(const uint8_t *password, size_t len, const char *hash);

#endif
