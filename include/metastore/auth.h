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

/* Who sent a request: the user its token names and the auth revision the token carries
 * (simple tokens: the current one; JWT: the one it was signed at). */
struct auth_caller {
    bool has_user; /* a valid token came with the request */
    struct auth_bytes user;
    uint64_t revision;
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
 * While auth is disabled everything is allowed. A caller whose token predates the current auth
 * revision (JWT) gets MS_E_AUTH_OLD_REVISION from the range checks. */
ms_err auth_check_range(struct auth_store *as, const struct auth_caller *c, struct auth_bytes key,
                        struct auth_bytes range_end, enum auth_perm perm);
ms_err auth_check_admin(struct auth_store *as, const struct auth_caller *c);

/* ---- tokens ----
 * The caller token tok names (its user borrowed; see above), refreshing a simple token's
 * lifetime (now_ms: the simple tokens' clock; a JWT's exp is checked against Unix time).
 * MS_E_INVALID_AUTH_TOKEN if it is unknown, expired, or (JWT) does not verify, whether or not auth
 * is enabled (etcd checks a token whenever one is sent). */
ms_err auth_token_user(struct auth_store *as, const uint8_t *tok, size_t len, uint64_t now_ms,
                       struct auth_caller *out);
/* A fresh random token prefix (16 letters + NUL) for an authenticate. */
void auth_token_prefix(char out[17]);
size_t auth_token_count(const struct auth_store *as);

/* The stored bcrypt hash of a user for a password check: MS_E_AUTH_NOT_ENABLED,
 * MS_E_AUTH_FAILED (no such user), MS_E_NO_PASSWORD_USER, or MS_OK with *hash (NUL-terminated,
 * borrowed). */
ms_err auth_password_hash(struct auth_store *as, struct auth_bytes user, const char **hash);

/* ---- JWT tokens (etcd --auth-token jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…) ---- */
struct auth_jwt;

/* The parts of a token as auth_jwt_parse finds them (bytes in the token or the arena). */
struct auth_jwt_parts {
    struct auth_bytes header; /* base64url, as sent */
    size_t signed_len;        /* header '.' claims */
    struct auth_bytes sig;    /* decoded */
    struct auth_bytes user;
    uint64_t revision;
    bool has_exp;
    uint64_t exp;
};

/* opts: what follows "jwt," in --auth-token. NULL with msg filled on a bad option or key. */
struct auth_jwt *auth_jwt_open(const char *opts, char *msg, size_t msgsz);
void auth_jwt_close(struct auth_jwt *j);
bool auth_jwt_can_sign(const struct auth_jwt *j);
/* A token for user at revision, expiring ttl after now_s: *out is malloc'd, NUL-terminated. */
ms_err auth_jwt_sign(const struct auth_jwt *j, struct auth_bytes user, uint64_t revision,
                     uint64_t now_s, char **out, size_t *out_len);
/* Split and decode a token without checking its signature: MS_E_INVALID_AUTH_TOKEN. */
ms_err auth_jwt_parse(const uint8_t *tok, size_t len, struct arena *a, struct auth_jwt_parts *out);
/* Parse, check the algorithm, the signature and exp: MS_E_INVALID_AUTH_TOKEN. */
ms_err auth_jwt_verify(const struct auth_jwt *j, const uint8_t *tok, size_t len, uint64_t now_s,
                       struct arena *a, struct auth_bytes *user, uint64_t *revision);
/* The store hands out and accepts JWTs from now on instead of simple tokens (owns j). */
void auth_use_jwt(struct auth_store *as, struct auth_jwt *j);

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
