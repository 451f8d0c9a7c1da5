/* be.c - backend helpers shared by every implementation. */
#include "metastore/be.h"
#include "metastore/buf.h"

#include <string.h>

const char *be_bucket_name(enum be_bucket b)
{
    static const char *const names[BE_BUCKET_COUNT_] = {
        "key",       "meta",    "lease",           "auth",  "authUsers",
        "authRoles", "members", "members_removed", "alarm",
    };
    return (unsigned)b < BE_BUCKET_COUNT_ ? names[b] : "?";
}

ms_err be_get_u64(struct be_txn *t, enum be_bucket b, const char *name, uint64_t *out, bool *found)
{
    struct be_val v;
    ms_err e = be_get(t, b, (const uint8_t *)name, strlen(name), &v);
    *found = false;
    if (e == MS_E_NOT_EXIST)
        return MS_OK;
    if (e)
        return e;
    if (v.len != 8)
        return MS_E_DATA_CORRUPT;
    *out = be64_get(v.p);
    *found = true;
    return MS_OK;
}

ms_err be_put_u64(struct be_txn *t, enum be_bucket b, const char *name, uint64_t v)
{
    uint8_t buf[8];
    be64_put(buf, v);
    return be_put(t, b, (const uint8_t *)name, strlen(name), buf, 8);
}
