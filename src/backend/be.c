/* be.c - backend helpers shared by every implementation. */
#include "metastore/be.h"

const char *be_bucket_name(enum be_bucket b)
{
    static const char *const names[BE_BUCKET_COUNT_] = {
        "key",       "meta",    "lease",           "auth",  "authUsers",
        "authRoles", "members", "members_removed", "alarm",
    };
    return (unsigned)b < BE_BUCKET_COUNT_ ? names[b] : "?";
}
