/* test_auth_compat.c - authentication and role-based access against real etcd: the flow of the
 * reference (§10.2) and a permission matrix, the same requests in the same order to a fresh
 * etcd and a fresh metastore. Each server hands out its own tokens: the test keeps a token
 * table per server and sends each server its own token for a slot; "token" fields are
 * normalised before comparing. Without an etcd binary the suite is skipped (77).
 *
 * The matrix: every request kind below × {no token, garbage, a stale token (its user's
 * password changed), a user without permissions, a user with them, root}.
 */
#define _GNU_SOURCE
#include "etcd_proc.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum slot { T_NONE, T_GARBAGE, T_STALE, T_BOB, T_ALICE, T_ROOT, T_BEARER, T_GRPC, N_SLOTS };

static const char *const SLOT_NAME[] = {"no token", "garbage", "stale",        "bob (no perms)",
                                        "alice",    "root",    "Bearer alice", "grpc alice"};

struct side {
    int port;
    char tokens[N_SLOTS][128];
};

struct pair {
    struct side s[2]; /* etcd, metastore */
    int mismatches;
    int compared;
};

/* "token":"<16 letters>.<index>" -> "token":"TOK" (in place). */
static void norm_token(char *s)
{
    char *p = strstr(s, "\"token\":\"");
    if (!p)
        return;
    char *v = p + 9, *e = strchr(v, '"');
    if (!e)
        return;
    memcpy(v, "TOK", 3);
    memmove(v + 3, e, strlen(e) + 1);
}

static char *token_of(const char *body)
{
    const char *p = strstr(body, "\"token\":\"");
    if (!p)
        return NULL;
    p += 9;
    const char *e = strchr(p, '"');
    return e ? strndup(p, (size_t)(e - p)) : NULL;
}

static void headers_for(const struct side *sd, enum slot t, char *out, size_t cap)
{
    switch (t) {
    case T_NONE:
        out[0] = 0;
        break;
    case T_BEARER:
        snprintf(out, cap, "Authorization: Bearer %s\r\n", sd->tokens[T_ALICE]);
        break;
    case T_GRPC:
        snprintf(out, cap, "Grpc-Metadata-Token: %s\r\n", sd->tokens[T_ALICE]);
        break;
    default:
        snprintf(out, cap, "authorization: %s\r\n", sd->tokens[t]);
        break;
    }
}

/* Send to both with slot t's token; compare status and normalised body. */
static void same(struct pair *p, const char *path, const char *body, enum slot t)
{
    char *norm[2];
    int status[2];
    for (int i = 0; i < 2; i++) {
        char hdr[256];
        struct tu_resp r;
        headers_for(&p->s[i], t, hdr, sizeof(hdr));
        tu_http_hdr(p->s[i].port, "POST", path, hdr, body, &r);
        status[i] = r.status;
        norm[i] = tu_norm(r.body);
        norm_token(norm[i]);
        tu_resp_free(&r);
    }
    p->compared++;
    if (status[0] != status[1] || strcmp(norm[0], norm[1]) != 0) {
        fprintf(stderr, "MISMATCH %s %s [%s]\n  etcd      %d %s\n  metastore %d %s\n", path, body,
                SLOT_NAME[t], status[0], norm[0], status[1], norm[1]);
        p->mismatches++;
    }
    free(norm[0]);
    free(norm[1]);
}

/* Authenticate on both and keep each server's token in slot t. */
static void login(struct pair *p, const char *user, const char *pw, enum slot t)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"password\":\"%s\"}", user, pw);
    for (int i = 0; i < 2; i++) {
        struct tu_resp r;
        tu_http(p->s[i].port, "POST", "/v3/auth/authenticate", body, &r);
        char *tok = token_of(r.body);
        ck_assert_msg(r.status == 200 && tok, "authenticate %s on %s: %d %s", user,
                      i ? "metastore" : "etcd", r.status, r.body);
        snprintf(p->s[i].tokens[t], sizeof(p->s[i].tokens[t]), "%s", tok);
        free(tok);
        tu_resp_free(&r);
    }
    p->compared++;
}

/* The reference's flow up to enabling auth (§10.2 steps 1-3), plus bob and carol. */
static const char *const SETUP[][2] = {
    {"/v3/auth/enable", "{}"},
    {"/v3/auth/authenticate", "{\"name\":\"root\",\"password\":\"rootpw\"}"},
    {"/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"rootpw\"}"},
    {"/v3/auth/user/add", "{\"name\":\"alice\",\"password\":\"alicepw\"}"},
    {"/v3/auth/user/add", "{\"name\":\"bob\",\"password\":\"bobpw\"}"},
    {"/v3/auth/user/add", "{\"name\":\"carol\",\"password\":\"carolpw\"}"},
    {"/v3/auth/user/add", "{\"name\":\"nopw\",\"options\":{\"no_password\":true}}"},
    {"/v3/auth/user/add", "{\"name\":\"alice\",\"password\":\"x\"}"},
    {"/v3/auth/user/add", "{\"password\":\"x\"}"},
    {"/v3/auth/user/add", "{\"name\":5}"},
    {"/v3/auth/role/add", "{\"name\":\"reader\"}"},
    {"/v3/auth/role/add", "{\"name\":\"reader\"}"},
    {"/v3/auth/role/add", "{}"},
    {"/v3/auth/role/grant", "{\"name\":\"reader\",\"perm\":{\"permType\":\"READ\",\"key\":\"ay8=\","
                            "\"range_end\":\"azA=\"}}"},
    {"/v3/auth/role/grant", "{\"name\":\"reader\",\"perm\":{\"permType\":2,\"key\":\"Zm9v\"}}"},
    {"/v3/auth/role/grant",
     "{\"name\":\"reader\",\"perm\":{\"permType\":\"WRITE\",\"key\":\"Zm9v\"}}"},
    {"/v3/auth/role/grant",
     "{\"name\":\"reader\",\"perm\":{\"permType\":\"READWRITE\",\"key\":\"Zm9v\"}}"},
    {"/v3/auth/role/grant",
     "{\"name\":\"reader\",\"perm\":{\"permType\":\"BAD\",\"key\":\"Zm9v\"}}"},
    {"/v3/auth/role/grant", "{\"name\":\"nosuch\",\"perm\":{\"key\":\"Zm9v\"}}"},
    {"/v3/auth/user/grant", "{\"user\":\"alice\",\"role\":\"reader\"}"},
    {"/v3/auth/user/grant", "{\"user\":\"alice\",\"role\":\"reader\"}"},
    {"/v3/auth/user/grant", "{\"user\":\"carol\",\"role\":\"reader\"}"},
    {"/v3/auth/user/grant", "{\"user\":\"alice\",\"role\":\"nosuch\"}"},
    {"/v3/auth/user/grant", "{\"user\":\"nosuch\",\"role\":\"reader\"}"},
    {"/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"},
    {"/v3/auth/role/list", "{}"},
    {"/v3/auth/role/get", "{\"role\":\"root\"}"},
    {"/v3/auth/role/get", "{\"role\":\"reader\"}"},
    {"/v3/auth/user/list", "{}"},
    {"/v3/auth/user/get", "{\"name\":\"alice\"}"},
    {"/v3/auth/user/get", "{\"name\":\"bob\"}"},
    {"/v3/auth/user/get", "{\"name\":\"nosuch\"}"},
    {"/v3/kv/put", "{\"key\":\"ay9h\",\"value\":\"dg==\"}"},
    {"/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"dg==\"}"},
    {"/v3/lease/grant", "{\"TTL\":600,\"ID\":100}"},
    {"/v3/kv/put", "{\"key\":\"eA==\",\"value\":\"dg==\",\"lease\":100}"},
    {"/v3/auth/enable", "{}"},
    {"/v3/auth/authenticate", "{\"name\":\"alice\",\"password\":\"wrong\"}"},
    {"/v3/auth/authenticate", "{\"name\":\"nosuch\",\"password\":\"x\"}"},
    {"/v3/auth/authenticate", "{\"name\":\"nopw\",\"password\":\"\"}"},
};

/* The matrix's requests: each sent once per token slot, in this order. */
static const char *const MATRIX[][2] = {
    {"/v3/kv/range", "{\"key\":\"ay9h\"}"},
    {"/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"azA=\"}"},
    {"/v3/kv/range", "{\"key\":\"ay8=\",\"range_end\":\"AA==\"}"},
    {"/v3/kv/range", "{\"key\":\"Zm9v\",\"serializable\":true}"},
    {"/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"dw==\"}"},
    {"/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"dw==\",\"prev_kv\":true}"},
    {"/v3/kv/put", "{\"key\":\"ay9h\",\"value\":\"dw==\"}"},
    {"/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"dw==\",\"lease\":100}"},
    {"/v3/kv/deleterange", "{\"key\":\"bm9uZQ==\"}"},
    {"/v3/kv/deleterange", "{\"key\":\"Zm9v\",\"prev_kv\":true}"},
    {"/v3/kv/txn", "{\"compare\":[{\"key\":\"ay9h\",\"target\":\"VERSION\",\"version\":\"0\"}],"
                   "\"success\":[{\"request_put\":{\"key\":\"Zm9v\",\"value\":\"dg==\"}}]}"},
    {"/v3/kv/txn", "{\"compare\":[{\"key\":\"eA==\",\"target\":\"VERSION\",\"version\":\"0\"}]}"},
    {"/v3/kv/txn", "{\"failure\":[{\"request_put\":{\"key\":\"ay9h\",\"value\":\"dg==\"}}]}"},
    {"/v3/kv/txn", "{\"success\":[{\"request_range\":{\"key\":\"ay9h\"}}]}"},
    {"/v3/kv/txn", "{\"success\":[{\"request_delete_range\":{\"key\":\"Zm9v\"}}]}"},
    /* the lock and election services run their txns and ranges as the caller */
    {"/v3/election/leader", "{\"name\":\"bm9uZQ==\"}"},
    {"/v3/lock/unlock", "{\"key\":\"bm9uZQ==\"}"},
    {"/v3/lock/lock", "{\"name\":\"bm9uZQ==\",\"lease\":999}"},
    {"/v3/lease/grant", "{\"TTL\":600,\"ID\":200}"},
    {"/v3/lease/timetolive", "{\"ID\":999}"},
    {"/v3/lease/leases", "{}"},
    {"/v3/kv/lease/revoke", "{\"ID\":100}"},
    {"/v3/maintenance/defragment", "{}"},
    {"/v3/maintenance/alarm", "{}"},
    {"/v3/auth/user/list", "{}"},
    {"/v3/auth/role/list", "{}"},
    {"/v3/auth/user/get", "{\"name\":\"alice\"}"},
    {"/v3/auth/role/get", "{\"role\":\"reader\"}"},
    {"/v3/auth/role/add", "{\"name\":\"extra\"}"},
    {"/v3/auth/user/revoke", "{\"name\":\"root\",\"role\":\"root\"}"},
    {"/v3/auth/user/delete", "{\"name\":\"root\"}"},
    {"/v3/kv/compaction", "{\"revision\":2}"},
};

/* After the matrix: invalidation and the end of the flow (§10.2 steps 8-10). */
static const struct {
    const char *path;
    const char *body;
    enum slot t;
} AFTER[] = {
    {"/v3/auth/role/revoke", "{\"role\":\"reader\",\"key\":\"eA==\"}", T_ROOT},
    {"/v3/auth/role/revoke", "{\"role\":\"reader\",\"key\":\"Zm9v\"}", T_ROOT},
    {"/v3/auth/role/get", "{\"role\":\"reader\"}", T_ROOT},
    {"/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"dw==\"}", T_ALICE},
    {"/v3/auth/user/revoke", "{\"name\":\"alice\",\"role\":\"reader\"}", T_ROOT},
    {"/v3/auth/user/revoke", "{\"name\":\"alice\",\"role\":\"reader\"}", T_ROOT},
    {"/v3/kv/range", "{\"key\":\"ay9h\"}", T_ALICE},
    {"/v3/auth/user/changepw", "{\"name\":\"alice\",\"password\":\"new\"}", T_ROOT},
    {"/v3/kv/range", "{\"key\":\"ay9h\"}", T_ALICE},
    {"/v3/auth/user/delete", "{\"name\":\"bob\"}", T_ROOT},
    {"/v3/kv/range", "{\"key\":\"ay9h\"}", T_BOB},
    {"/v3/auth/role/delete", "{\"role\":\"reader\"}", T_ROOT},
    {"/v3/auth/role/delete", "{\"role\":\"root\"}", T_ROOT},
    {"/v3/auth/disable", "{}", T_ROOT},
    {"/v3/kv/range", "{\"key\":\"ay9h\"}", T_NONE},
    {"/v3/kv/range", "{\"key\":\"ay9h\"}", T_ROOT},
    {"/v3/kv/range", "{\"key\":\"ay9h\"}", T_GARBAGE},
    {"/v3/auth/authenticate", "{\"name\":\"root\",\"password\":\"rootpw\"}", T_NONE},
    {"/v3/auth/disable", "{}", T_NONE},
    {"/v3/auth/user/delete", "{\"name\":\"root\"}", T_NONE},
    {"/v3/auth/user/delete", "{\"name\":\"alice\"}", T_NONE},
    {"/v3/auth/user/delete", "{\"name\":\"carol\"}", T_NONE},
    {"/v3/auth/user/delete", "{\"name\":\"nopw\"}", T_NONE},
    {"/v3/auth/role/delete", "{\"role\":\"extra\"}", T_NONE},
    {"/v3/auth/user/list", "{}", T_NONE},
    {"/v3/auth/role/list", "{}", T_NONE},
};

START_TEST(auth_same_as_etcd)
{
    const char *etcd = etcd_bin();
    ck_assert_msg(etcd, "no etcd binary");
    char *dir = tu_mkdtemp("ms-compat-auth");
    struct pair p;
    memset(&p, 0, sizeof(p));
    pid_t pid = etcd_start(etcd, dir, &p.s[0].port);
    struct tu_server ms;
    tu_server_start(&ms, NULL);
    p.s[1].port = ms.port;
    for (int i = 0; i < 2; i++)
        strcpy(p.s[i].tokens[T_GARBAGE], "garbage");

    for (size_t i = 0; i < sizeof(SETUP) / sizeof(SETUP[0]); i++)
        same(&p, SETUP[i][0], SETUP[i][1], T_NONE);
    login(&p, "alice", "alicepw", T_ALICE);
    login(&p, "bob", "bobpw", T_BOB);
    login(&p, "root", "rootpw", T_ROOT);
    login(&p, "carol", "carolpw", T_STALE);
    same(&p, "/v3/auth/user/changepw", "{\"name\":\"carol\",\"password\":\"c2\"}", T_ROOT);

    for (size_t i = 0; i < sizeof(MATRIX) / sizeof(MATRIX[0]); i++)
        for (int t = 0; t < N_SLOTS; t++)
            same(&p, MATRIX[i][0], MATRIX[i][1], (enum slot)t);
    size_t matrix = sizeof(MATRIX) / sizeof(MATRIX[0]) * N_SLOTS;

    for (size_t i = 0; i < sizeof(AFTER) / sizeof(AFTER[0]); i++)
        same(&p, AFTER[i].path, AFTER[i].body, AFTER[i].t);

    etcd_stop(pid);
    tu_server_stop(&ms);
    tu_rmtree(dir);
    free(dir);
    printf("auth compat: %d requests compared with etcd (matrix %zu), %d mismatches\n", p.compared,
           matrix, p.mismatches);
    ck_assert_int_eq(p.mismatches, 0);
}
END_TEST

int main(void)
{
    int missing = etcd_missing("auth compat");
    if (missing >= 0)
        return missing;
    Suite *s = suite_create("auth_compat");
    TCase *tc = tcase_create("auth");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, auth_same_as_etcd);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
