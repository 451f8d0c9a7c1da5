/* err.h - the one list of metastore errors.
 *
 * Every error a client can see is one line here: its gRPC code and etcd's exact message text
 * (clients match on the text, see etcd api/v3rpc/rpctypes/error.go). The HTTP status follows
 * from the gRPC code (ms_err_http_status). Internal errors that never reach a client as such
 * (I/O, corruption) are listed too so that every action can return one ms_err.
 */
#ifndef METASTORE_ERR_H
#define METASTORE_ERR_H

#include <stddef.h>

/* gRPC status codes (google.golang.org/grpc/codes). */
enum ms_grpc_code {
    MS_GRPC_OK = 0,
    MS_GRPC_CANCELED = 1,
    MS_GRPC_UNKNOWN = 2,
    MS_GRPC_INVALID_ARGUMENT = 3,
    MS_GRPC_DEADLINE_EXCEEDED = 4,
    MS_GRPC_NOT_FOUND = 5,
    MS_GRPC_ALREADY_EXISTS = 6,
    MS_GRPC_PERMISSION_DENIED = 7,
    MS_GRPC_RESOURCE_EXHAUSTED = 8,
    MS_GRPC_FAILED_PRECONDITION = 9,
    MS_GRPC_ABORTED = 10,
    MS_GRPC_OUT_OF_RANGE = 11,
    MS_GRPC_UNIMPLEMENTED = 12,
    MS_GRPC_INTERNAL = 13,
    MS_GRPC_UNAVAILABLE = 14,
    MS_GRPC_DATA_LOSS = 15,
    MS_GRPC_UNAUTHENTICATED = 16,
};

/* X(name, grpc code suffix, message). An empty message means the text is supplied at the
 * place the error is raised (decoder errors echo Go's json messages). */
#define MS_ERR_LIST(X)                                                                             \
    X(MS_OK, OK, "")                                                                               \
    X(MS_E_EMPTY_KEY, INVALID_ARGUMENT, "etcdserver: key is not provided")                         \
    X(MS_E_KEY_NOT_FOUND, INVALID_ARGUMENT, "etcdserver: key not found")                           \
    X(MS_E_VALUE_PROVIDED, INVALID_ARGUMENT, "etcdserver: value is provided")                      \
    X(MS_E_LEASE_PROVIDED, INVALID_ARGUMENT, "etcdserver: lease is provided")                      \
    X(MS_E_TOO_MANY_OPS, INVALID_ARGUMENT, "etcdserver: too many operations in txn request")       \
    X(MS_E_DUPLICATE_KEY, INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")      \
    X(MS_E_INVALID_SORT_OPTION, INVALID_ARGUMENT, "etcdserver: invalid sort option")               \
    X(MS_E_COMPACTED, OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")      \
    X(MS_E_FUTURE_REV, OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")   \
    X(MS_E_NO_SPACE, RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")              \
    X(MS_E_LEASE_NOT_FOUND, NOT_FOUND, "etcdserver: requested lease not found")                    \
    X(MS_E_LEASE_EXISTS, FAILED_PRECONDITION, "etcdserver: lease already exists")                  \
    X(MS_E_LEASE_TTL_TOO_LARGE, OUT_OF_RANGE, "etcdserver: too large lease TTL")                   \
    X(MS_E_MEMBER_EXISTS, FAILED_PRECONDITION, "etcdserver: member ID already exist")              \
    X(MS_E_PEER_URL_EXISTS, FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")           \
    X(MS_E_MEMBER_BAD_URLS, INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")         \
    X(MS_E_MEMBER_NOT_FOUND, NOT_FOUND, "etcdserver: member not found")                            \
    X(MS_E_MEMBER_NOT_LEARNER, FAILED_PRECONDITION,                                                \
      "etcdserver: can only promote a learner member")                                             \
    X(MS_E_LEARNER_NOT_READY, FAILED_PRECONDITION,                                                 \
      "etcdserver: can only promote a learner member which is in sync with leader")                \
    X(MS_E_TOO_MANY_LEARNERS, FAILED_PRECONDITION,                                                 \
      "etcdserver: too many learner members in cluster")                                           \
    X(MS_E_UNHEALTHY, UNAVAILABLE, "etcdserver: unhealthy cluster")                                \
    /* etcd 3.4 maps this one to the client's error value, not a status: code Unknown. */          \
    X(MS_E_NOT_ENOUGH_STARTED, UNKNOWN,                                                            \
      "etcdserver: re-configuration failed due to not enough started members")                     \
    X(MS_E_LEARNER_RPC, UNAVAILABLE, "etcdserver: rpc not supported for learner")                  \
    X(MS_E_REQUEST_TOO_LARGE, INVALID_ARGUMENT, "etcdserver: request is too large")                \
    X(MS_E_TOO_MANY_REQUESTS, RESOURCE_EXHAUSTED, "etcdserver: too many requests")                 \
    X(MS_E_ROOT_USER_NOT_EXIST, FAILED_PRECONDITION, "etcdserver: root user does not exist")       \
    X(MS_E_ROOT_ROLE_NOT_EXIST, FAILED_PRECONDITION,                                               \
      "etcdserver: root user does not have root role")                                             \
    X(MS_E_USER_EXISTS, FAILED_PRECONDITION, "etcdserver: user name already exists")               \
    X(MS_E_USER_EMPTY, INVALID_ARGUMENT, "etcdserver: user name is empty")                         \
    X(MS_E_USER_NOT_FOUND, FAILED_PRECONDITION, "etcdserver: user name not found")                 \
    X(MS_E_ROLE_EXISTS, FAILED_PRECONDITION, "etcdserver: role name already exists")               \
    X(MS_E_ROLE_NOT_FOUND, FAILED_PRECONDITION, "etcdserver: role name not found")                 \
    X(MS_E_ROLE_EMPTY, INVALID_ARGUMENT, "etcdserver: role name is empty")                         \
    X(MS_E_AUTH_FAILED, INVALID_ARGUMENT,                                                          \
      "etcdserver: authentication failed, invalid user ID or password")                            \
    X(MS_E_PERMISSION_DENIED, PERMISSION_DENIED, "etcdserver: permission denied")                  \
    X(MS_E_ROLE_NOT_GRANTED, FAILED_PRECONDITION, "etcdserver: role is not granted to the user")   \
    X(MS_E_PERMISSION_NOT_GRANTED, FAILED_PRECONDITION,                                            \
      "etcdserver: permission is not granted to the role")                                         \
    X(MS_E_AUTH_NOT_ENABLED, FAILED_PRECONDITION, "etcdserver: authentication is not enabled")     \
    X(MS_E_INVALID_AUTH_TOKEN, UNAUTHENTICATED, "etcdserver: invalid auth token")                  \
    X(MS_E_INVALID_AUTH_MGMT, INVALID_ARGUMENT, "etcdserver: invalid auth management")             \
    X(MS_E_AUTH_OLD_REVISION, INVALID_ARGUMENT, "etcdserver: revision of auth store is old")       \
    X(MS_E_NO_PASSWORD_USER, UNKNOWN,                                                              \
      "auth: authentication failed, password was given for no password user")                      \
    /* The auth store's own errors, which etcd's maintenance service returns unconverted. */       \
    X(MS_E_AUTH_RAW_PERMISSION_DENIED, UNKNOWN, "auth: permission denied")                         \
    X(MS_E_AUTH_RAW_USER_EMPTY, UNKNOWN, "auth: user name is empty")                               \
    X(MS_E_AUTH_RAW_USER_NOT_FOUND, UNKNOWN, "auth: user name not found")                          \
    X(MS_E_AUTH_RAW_INVALID_TOKEN, UNKNOWN, "auth: invalid auth token")                            \
    X(MS_E_NO_LEADER, UNAVAILABLE, "etcdserver: no leader")                                        \
    X(MS_E_NOT_LEADER, FAILED_PRECONDITION, "etcdserver: not leader")                              \
    X(MS_E_LEADER_CHANGED, UNAVAILABLE, "etcdserver: leader changed")                              \
    X(MS_E_STOPPED, UNAVAILABLE, "etcdserver: server stopped")                                     \
    X(MS_E_TIMEOUT, UNAVAILABLE, "etcdserver: request timed out")                                  \
    X(MS_E_DEADLINE_EXCEEDED, UNKNOWN, "context deadline exceeded")                                \
    X(MS_E_BAD_LEADER_TRANSFEREE, FAILED_PRECONDITION, "etcdserver: bad leader transferee")        \
    X(MS_E_TIMEOUT_LEADER_TRANSFER, UNKNOWN,                                                       \
      "etcdserver: request timed out, leader transfer took too long")                              \
    X(MS_E_CORRUPT, DATA_LOSS, "etcdserver: corrupt cluster")                                      \
    X(MS_E_ELECTION_NO_LEADER, UNKNOWN, "election: no leader")                                     \
    X(MS_E_ELECTION_NOT_LEADER, UNKNOWN, "election: not leader")                                   \
    X(MS_E_ELECTION_NO_LEADER_KEY, UNKNOWN, "\"leader\" field must be provided")                   \
    X(MS_E_UNKNOWN, UNKNOWN, "")                                                                   \
    X(MS_E_WATCH_DUP_ID, INVALID_ARGUMENT, "mvcc: duplicate watch ID provided on the WatchStream") \
    X(MS_E_BAD_REQUEST, INVALID_ARGUMENT, "")                                                      \
    X(MS_E_MSG_TOO_LARGE, RESOURCE_EXHAUSTED, "")                                                  \
    X(MS_E_UNIMPLEMENTED, UNIMPLEMENTED, "metastore: not implemented")                             \
    X(MS_E_NOMEM, RESOURCE_EXHAUSTED, "metastore: out of memory")                                  \
    X(MS_E_IO, INTERNAL, "metastore: i/o error")                                                   \
    X(MS_E_DATA_CORRUPT, DATA_LOSS, "metastore: data corrupted")                                   \
    X(MS_E_NOT_EXIST, NOT_FOUND, "metastore: not found")                                           \
    X(MS_E_INTERNAL, INTERNAL, "metastore: internal error")

typedef enum ms_err {
#define MS_ERR_ENUM_(name, code, msg) name,
    MS_ERR_LIST(MS_ERR_ENUM_)
#undef MS_ERR_ENUM_
        MS_ERR_COUNT_
} ms_err;

/* etcd's message text for e; "" for errors whose text is given where they are raised.
 * Returns a static string. */
const char *ms_err_msg(ms_err e);

/* The enum constant's name, e.g. "MS_E_EMPTY_KEY" (for logs and tests). Static string. */
const char *ms_err_name(ms_err e);

/* The gRPC code of e. */
enum ms_grpc_code ms_err_grpc(ms_err e);

/* HTTP status grpc-gateway v1 uses for a gRPC code (reference §4.1). */
int ms_grpc_http_status(enum ms_grpc_code code);

/* Shorthand: ms_grpc_http_status(ms_err_grpc(e)). */
int ms_err_http_status(ms_err e);

/* Reason phrase for an HTTP status ("Bad Request"), "Unknown" if not in our table. */
const char *ms_http_reason(int status);

#endif
