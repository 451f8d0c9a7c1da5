/* err.c - lookup tables generated from MS_ERR_LIST (err.h); nothing else may hold error text. */
#include "metastore/err.h"

static const struct {
    const char *name;
    enum ms_grpc_code code;
    const char *msg;
} err_table[] = {
#define MS_ERR_ROW_(name, code, msg) {#name, MS_GRPC_##code, msg},
    MS_ERR_LIST(MS_ERR_ROW_)
#undef MS_ERR_ROW_
};

_Static_assert(sizeof(err_table) / sizeof(err_table[0]) == MS_ERR_COUNT_, "err table size");

static unsigned err_index(ms_err e)
{
    return (unsigned)e < MS_ERR_COUNT_ ? (unsigned)e : (unsigned)MS_E_INTERNAL;
}

const char *ms_err_msg(ms_err e)
{
    return err_table[err_index(e)].msg;
}

const char *ms_err_name(ms_err e)
{
    return err_table[err_index(e)].name;
}

enum ms_grpc_code ms_err_grpc(ms_err e)
{
    return err_table[err_index(e)].code;
}

int ms_grpc_http_status(enum ms_grpc_code code)
{
    /* grpc-gateway v1 runtime.HTTPStatusFromCode; 412 for FailedPrecondition and 400 for
     * OutOfRange were observed on etcd 3.4.23 (reference §4.1). */
    switch (code) {
    case MS_GRPC_OK:
        return 200;
    case MS_GRPC_CANCELED:
        return 408;
    case MS_GRPC_UNKNOWN:
        return 500;
    case MS_GRPC_INVALID_ARGUMENT:
        return 400;
    case MS_GRPC_DEADLINE_EXCEEDED:
        return 504;
    case MS_GRPC_NOT_FOUND:
        return 404;
    case MS_GRPC_ALREADY_EXISTS:
        return 409;
    case MS_GRPC_PERMISSION_DENIED:
        return 403;
    case MS_GRPC_RESOURCE_EXHAUSTED:
        return 429;
    case MS_GRPC_FAILED_PRECONDITION:
        return 412;
    case MS_GRPC_ABORTED:
        return 409;
    case MS_GRPC_OUT_OF_RANGE:
        return 400;
    case MS_GRPC_UNIMPLEMENTED:
        return 501;
    case MS_GRPC_INTERNAL:
        return 500;
    case MS_GRPC_UNAVAILABLE:
        return 503;
    case MS_GRPC_DATA_LOSS:
        return 500;
    case MS_GRPC_UNAUTHENTICATED:
        return 401;
    }
    return 500;
}

int ms_err_http_status(ms_err e)
{
    return ms_grpc_http_status(ms_err_grpc(e));
}

const char *ms_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Request Entity Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}
