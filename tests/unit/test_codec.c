/* test_codec.c - the gateway codec: the request root and field rules, typed readers (int64 and
 * base64 edge cases), request decoders, protobuf sizes, and proto3 JSON output. The JSON
 * parser and writer themselves are tested in test_json.c. */
#include "codec.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static struct arena *a;

/* An input and the error it must give. */
struct in_msg {
    const char *in;
    const char *msg;
};

static void setup(void)
{
    a = arena_create(1024);
}

static void teardown(void)
{
    arena_destroy(a);
}

/* Parse s as a request root; return the error message or NULL. */
static const char *root_err(const char *s, struct mjson_val *out)
{
    static struct mjson_dec d;
    mjson_dec_init(&d, a);
    if (codec_root(&d, s, strlen(s), out))
        return NULL;
    return d.msg;
}

START_TEST(root_and_fields)
{
    struct mjson_val v;
    ck_assert_ptr_null(root_err("{\"a\":[1,2],\"b\":{\"c\":{}}}", &v));
    ck_assert_int_eq(v.type, MJSON_OBJ);
    ck_assert_uint_eq(codec_field(&v, "a", NULL)->n, 2);
    ck_assert_int_eq(codec_field(&v, "b", NULL)->type, MJSON_OBJ);
    /* Empty, blank and null bodies are {}. */
    ck_assert_ptr_null(root_err("", &v));
    ck_assert_int_eq(v.type, MJSON_OBJ);
    ck_assert_ptr_null(root_err(" \n\t ", &v));
    ck_assert_ptr_null(root_err("null", &v));
    ck_assert_uint_eq(v.n, 0);
    /* Last duplicate wins; camelCase wins over the proto name; null is absent. */
    ck_assert_ptr_null(root_err("{\"range_end\":\"YQ==\",\"rangeEnd\":\"Yg==\",\"range_end\":"
                                "\"Yw==\",\"x\":1,\"x\":2,\"n\":null}",
                                &v));
    const struct mjson_val *re = codec_field(&v, "range_end", "rangeEnd");
    ck_assert(re->n == 4 && memcmp(re->s, "Yg==", 4) == 0);
    ck_assert(memcmp(codec_field(&v, "x", NULL)->s, "2", 1) == 0);
    ck_assert_ptr_null(codec_field(&v, "n", NULL));
    /* A camelCase spelling set to null hides the proto name's value. */
    ck_assert_ptr_null(root_err("{\"rangeEnd\":null,\"range_end\":\"YQ==\"}", &v));
    ck_assert_ptr_null(codec_field(&v, "range_end", "rangeEnd"));
    /* Any other top level is refused as Go refuses it; a syntax error is the parser's. */
    static const struct in_msg cases[] = {
        {"[1,2]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"},
        {"12", "json: cannot unmarshal number into Go value of type map[string]json.RawMessage"},
        {"true", "json: cannot unmarshal bool into Go value of type map[string]json.RawMessage"},
        {"\"x\"", "json: cannot unmarshal string into Go value of type map[string]json.RawMessage"},
        {"{\"key\":", "unexpected EOF"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *m = root_err(cases[i].in, &v);
        ck_assert_msg(m && strcmp(m, cases[i].msg) == 0, "%s: got [%s] want [%s]", cases[i].in,
                      m ? m : "(ok)", cases[i].msg);
    }
    /* The same rule for a value read from a stream body. */
    struct mjson_dec d;
    size_t used;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse_next(&d, " null {}", 8, &v, &used));
    ck_assert(codec_root_value(&d, &v));
    ck_assert_int_eq(v.type, MJSON_OBJ);
    ck_assert(mjson_parse_next(&d, "[]", 2, &v, &used));
    ck_assert(!codec_root_value(&d, &v));
    ck_assert_str_eq(
        d.msg, "json: cannot unmarshal array into Go value of type map[string]json.RawMessage");
}
END_TEST

START_TEST(int_in_string_depth)
{
    /* A number held in a string is parsed as a whole text, under the parser's nesting bound. */
    struct mjson_dec d;
    struct mjson_val v;
    char *deep = tu_nested("\"", 10001, "[", "", "", "\"");
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, deep, strlen(deep), &v));
    int64_t i = 0;
    ck_assert(!codec_read_i64(&d, &v, &i));
    ck_assert_str_eq(d.msg, "invalid character '[' exceeded max depth");
    free(deep);
}
END_TEST

static const char *read_i64(const char *json, int64_t *out)
{
    static struct mjson_dec d;
    struct mjson_val v;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, json, strlen(json), &v));
    return codec_read_i64(&d, &v, out) ? NULL : d.msg;
}

START_TEST(readers_int64)
{
    int64_t x = 0;
    ck_assert_ptr_null(read_i64("9223372036854775807", &x));
    ck_assert_int_eq(x, INT64_MAX);
    ck_assert_ptr_null(read_i64("-9223372036854775808", &x));
    ck_assert_int_eq(x, INT64_MIN);
    ck_assert_ptr_null(read_i64("\"-9223372036854775808\"", &x));
    ck_assert_int_eq(x, INT64_MIN);
    ck_assert_ptr_null(read_i64("\" 2 \"", &x));
    ck_assert_int_eq(x, 2);
    ck_assert_ptr_null(read_i64("-0", &x));
    ck_assert_int_eq(x, 0);
    ck_assert_str_eq(read_i64("9223372036854775808", &x),
                     "json: cannot unmarshal number 9223372036854775808 into Go value of type "
                     "int64");
    ck_assert_str_eq(read_i64("\"9223372036854775808\"", &x),
                     "json: cannot unmarshal number 9223372036854775808 into Go value of type "
                     "int64");
    ck_assert_str_eq(read_i64("2.0", &x),
                     "json: cannot unmarshal number 2.0 into Go value of type int64");
    ck_assert_str_eq(read_i64("\"1e3\"", &x),
                     "json: cannot unmarshal number 1e3 into Go value of type int64");
    ck_assert_str_eq(read_i64("\"abc\"", &x),
                     "invalid character 'a' looking for beginning of value");
    ck_assert_str_eq(read_i64("\"\"", &x), "unexpected end of JSON input");
    ck_assert_str_eq(read_i64("\"2x\"", &x), "invalid character 'x' after top-level value");
    ck_assert_str_eq(read_i64("\"true\"", &x),
                     "json: cannot unmarshal bool into Go value of type int64");
    ck_assert_str_eq(read_i64("true", &x),
                     "json: cannot unmarshal bool into Go value of type int64");
    ck_assert_str_eq(read_i64("[1]", &x),
                     "json: cannot unmarshal array into Go value of type int64");
    ck_assert_str_eq(read_i64("{}", &x),
                     "json: cannot unmarshal object into Go value of type int64");
    /* The string is read as a whole document (json.Unmarshal): its end is a space to Go's
     * scanner, and its escapes are not undone (jsonpb strips the quotes only). */
    static const struct in_msg whole[] = {
        {"\"-\"", "invalid character ' ' in numeric literal"},
        {"\"1.\"", "invalid character ' ' after decimal point in numeric literal"},
        {"\"1e+\"", "invalid character ' ' in exponent of numeric literal"},
        {"\"tr\"", "invalid character ' ' in literal true (expecting 'u')"},
        {"\"[1\"", "unexpected end of JSON input"},
        {"\"\\u0031\"", "invalid character '\\\\' looking for beginning of value"},
        {"\"1\\n\"", "invalid character '\\\\' after top-level value"},
    };
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++)
        ck_assert_str_eq(read_i64(whole[i].in, &x), whole[i].msg);

    struct mjson_dec d;
    struct mjson_val v;
    uint64_t u = 0;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "\"18446744073709551615\"", 22, &v));
    ck_assert(codec_read_u64(&d, &v, &u));
    ck_assert(u == UINT64_MAX);
    ck_assert(mjson_parse(&d, "-1", 2, &v));
    ck_assert(!codec_read_u64(&d, &v, &u));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal number -1 into Go value of type uint64");
}
END_TEST

START_TEST(readers_bytes_bool_enum)
{
    struct mjson_dec d;
    struct mjson_val v;
    const uint8_t *p;
    size_t n;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "\"Zm9vYmFy\"", 10, &v));
    ck_assert(codec_read_bytes(&d, &v, &p, &n));
    ck_assert(n == 6 && memcmp(p, "foobar", 6) == 0);
    ck_assert(mjson_parse(&d, "\"\"", 2, &v));
    ck_assert(codec_read_bytes(&d, &v, &p, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert(mjson_parse(&d, "\"Zm9vYg\"", 8, &v));
    ck_assert(!codec_read_bytes(&d, &v, &p, &n));
    ck_assert_str_eq(d.msg, "illegal base64 data at input byte 4");
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "true", 4, &v));
    ck_assert(!codec_read_bytes(&d, &v, &p, &n));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal bool into Go value of type []uint8");
    /* An array of byte values is bytes too (json.Unmarshal into []byte); null is 0. */
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "[102,111,null,111]", 18, &v));
    ck_assert(codec_read_bytes(&d, &v, &p, &n));
    ck_assert(n == 4 && memcmp(p, "fo\0o", 4) == 0);
    ck_assert(mjson_parse(&d, "[]", 2, &v));
    ck_assert(codec_read_bytes(&d, &v, &p, &n));
    ck_assert_uint_eq(n, 0);
    static const struct in_msg bad_bytes[] = {
        {"[256]", "json: cannot unmarshal number 256 into Go value of type uint8"},
        {"[-0]", "json: cannot unmarshal number -0 into Go value of type uint8"},
        {"[1.5]", "json: cannot unmarshal number 1.5 into Go value of type uint8"},
        {"[1,\"a\",300]", "json: cannot unmarshal string into Go value of type uint8"},
        {"[[1]]", "json: cannot unmarshal array into Go value of type uint8"},
        {"[{}]", "json: cannot unmarshal object into Go value of type uint8"},
    };
    for (size_t i = 0; i < sizeof(bad_bytes) / sizeof(bad_bytes[0]); i++) {
        mjson_dec_init(&d, a);
        ck_assert(mjson_parse(&d, bad_bytes[i].in, strlen(bad_bytes[i].in), &v));
        ck_assert(!codec_read_bytes(&d, &v, &p, &n));
        ck_assert_str_eq(d.msg, bad_bytes[i].msg);
    }

    bool b = false;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "true", 4, &v));
    ck_assert(codec_read_bool(&d, &v, &b) && b);
    ck_assert(mjson_parse(&d, "1", 1, &v));
    ck_assert(!codec_read_bool(&d, &v, &b));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal number into Go value of type bool");

    static const char *const names[] = {"NONE", "ASCEND", "DESCEND"};
    int64_t e = 0;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "\"DESCEND\"", 9, &v));
    ck_assert(codec_read_enum(&d, &v, names, 3, "T", &e));
    ck_assert_int_eq(e, 2);
    ck_assert(mjson_parse(&d, "7", 1, &v));
    ck_assert(codec_read_enum(&d, &v, names, 3, "T", &e));
    ck_assert_int_eq(e, 7);
    ck_assert(mjson_parse(&d, "\"2\"", 3, &v));
    ck_assert(!codec_read_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
    ck_assert_str_eq(d.msg, "unknown value \"2\" for enum etcdserverpb.X");
    /* Numbers outside int32 and other JSON types name the enum's Go type, as jsonpb does. */
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "2147483648", 10, &v));
    ck_assert(!codec_read_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal number 2147483648 into Go value of type "
                            "etcdserverpb.X");
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "-2147483648", 11, &v));
    ck_assert(codec_read_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
    ck_assert_int_eq(e, INT32_MIN);
    ck_assert(mjson_parse(&d, "true", 4, &v));
    ck_assert(!codec_read_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal bool into Go value of type etcdserverpb.X");
}
END_TEST

/* jsonpb looks an enum name up as it was sent (escapes not undone), and takes a string given
 * to a repeated enum for an enum name before it sees the list. */
START_TEST(readers_enum_text)
{
    static const char *const names[] = {"NONE", "ASCEND", "DESCEND"};
    static const struct {
        const char *in;
        bool list;
        const char *msg;
    } c[] = {
        {"\"\\u0041SCEND\"", false, "unknown value \"\\\\u0041SCEND\" for enum E"},
        {"\"DESC\\nEND\"", false, "unknown value \"DESC\\\\nEND\" for enum E"},
        {"\"ASCEND\"", true, "invalid target \"slice\" for enum E"},
        {"\"x\"", true, "unknown value \"x\" for enum E"},
        {"\"\\u0041SCEND\"", true, "unknown value \"\\\\u0041SCEND\" for enum E"},
        {"1", true, "json: cannot unmarshal number into Go value of type []json.RawMessage"},
        {"[\"x\"]", true, "unknown value \"x\" for enum E"},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct mjson_dec d;
        struct mjson_val v;
        int64_t e = 0;
        mjson_dec_init(&d, a);
        ck_assert(mjson_parse(&d, c[i].in, strlen(c[i].in), &v));
        bool ok;
        if (c[i].list) {
            const struct mjson_val *items;
            size_t n;
            ok = codec_read_enum_arr(&d, &v, names, 3, "E", &items, &n);
            for (size_t k = 0; ok && k < n; k++)
                ok = codec_read_enum(&d, &items[k], names, 3, "E", &e);
        } else {
            ok = codec_read_enum(&d, &v, names, 3, "E", &e);
        }
        ck_assert_msg(!ok, "%s accepted", c[i].in);
        ck_assert_str_eq(d.msg, c[i].msg);
    }
    struct mjson_dec d;
    struct mjson_val v;
    const struct mjson_val *items;
    size_t n;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse(&d, "[\"DESCEND\",1]", 13, &v));
    ck_assert(codec_read_enum_arr(&d, &v, names, 3, "E", &items, &n));
    ck_assert_uint_eq(n, 2);
}
END_TEST

static ms_err decode_txn(const char *json, struct kv_txn_req *t, const char **msg)
{
    static struct mjson_dec d;
    struct mjson_val root;
    mjson_dec_init(&d, a);
    ck_assert(codec_root(&d, json, strlen(json), &root));
    ms_err e = codec_decode_txn(&d, &root, t, 0);
    *msg = d.msg;
    return e;
}

START_TEST(decode_requests)
{
    struct kv_txn_req t;
    const char *msg;
    ck_assert_int_eq(
        decode_txn("{\"compare\":[{\"key\":\"YQ==\",\"range_end\":\"AA==\",\"target\":"
                   "\"MOD\",\"result\":\"LESS\",\"mod_revision\":\"9\"}],\"success\":"
                   "[{\"requestPut\":{\"key\":\"YQ==\",\"prevKv\":true}},{\"request_txn\":"
                   "{\"failure\":[{\"request_delete_range\":{\"key\":\"Yg==\","
                   "\"range_end\":\"Yw==\"}}]}}],\"failure\":[{}]}",
                   &t, &msg),
        MS_OK);
    ck_assert_uint_eq(t.n_cmps, 1);
    ck_assert_int_eq(t.cmps[0].target, KV_CMP_MOD);
    ck_assert_int_eq(t.cmps[0].result, KV_CMP_LESS);
    ck_assert_int_eq(t.cmps[0].set, KV_CMP_MOD);
    ck_assert_int_eq(t.cmps[0].number, 9);
    ck_assert_int_eq(t.cmps[0].span.end_kind, KV_END_ALL);
    ck_assert_uint_eq(t.n_success, 2);
    ck_assert_int_eq(t.success[0].type, KV_OP_PUT);
    ck_assert(t.success[0].u.put.prev_kv);
    ck_assert_int_eq(t.success[1].type, KV_OP_TXN);
    ck_assert_int_eq(t.success[1].u.txn->failure[0].type, KV_OP_DELETE);
    ck_assert_int_eq(t.success[1].u.txn->failure[0].u.del.span.end_kind, KV_END_KEY);
    ck_assert_int_eq(t.failure[0].type, KV_OP_NONE);
    /* An empty range_end is no range_end. */
    ck_assert_int_eq(decode_txn("{\"success\":[{\"request_range\":{\"key\":\"YQ==\",\"range_end\":"
                                "\"\"}}]}",
                                &t, &msg),
                     MS_OK);
    ck_assert_int_eq(t.success[0].u.range.span.end_kind, KV_END_NONE);
    /* Doubly-set unions are refused. */
    ck_assert_int_eq(decode_txn("{\"success\":[{\"request_put\":{\"key\":\"YQ==\"},"
                                "\"request_range\":{\"key\":\"YQ==\"}}]}",
                                &t, &msg),
                     MS_E_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(msg, "more than one"));
    ck_assert_int_eq(
        decode_txn("{\"compare\":[{\"key\":\"YQ==\",\"value\":\"YQ==\",\"lease\":1}]}", &t, &msg),
        MS_E_BAD_REQUEST);
    ck_assert_int_eq(decode_txn("{\"success\":[5]}", &t, &msg), MS_E_BAD_REQUEST);
    ck_assert_str_eq(
        msg, "json: cannot unmarshal number into Go value of type map[string]json.RawMessage");
    /* Nesting of txns is bounded by the op budget (kv_check_txn), not here: as deep as the
     * parser's 10000 open containers allow decodes, one level more is the parser's error. */
    char *deep = tu_nested("", 3333, "{\"success\":[{\"request_txn\":", "{}", "}]}", "");
    ck_assert_int_eq(decode_txn(deep, &t, &msg), MS_OK);
    size_t levels = 1;
    for (const struct kv_txn_req *l = &t; l->n_success; l = l->success[0].u.txn)
        levels++;
    ck_assert_uint_eq(levels, 3334);
    free(deep);
    /* Every walker follows it to the bottom: protobuf size, validation (one op of the budget
     * per level), the read-only test and the log entry. */
    struct srv_req deep_req = {.type = SRV_REQ_TXN, .u.txn = t};
    size_t want = 0;
    for (int i = 0; i < KV_MAX_TXN_DEPTH; i++)
        want = sz_msg(2, sz_msg(4, want));
    ck_assert_uint_eq(codec_proto_size(&deep_req), want);
    ck_assert_int_eq(kv_check_txn(&t, KV_MAX_TXN_DEPTH), MS_OK);
    ck_assert_int_eq(kv_check_txn(&t, KV_MAX_TXN_DEPTH - 1), MS_E_TOO_MANY_OPS);
    ck_assert(!kv_txn_writes(&t));
    struct buf b;
    buf_init(&b);
    srv_entry_encode(7, &deep_req, &b);
    ck_assert(!buf_failed(&b));
    struct srv_req back;
    uint64_t id;
    ck_assert(srv_entry_decode(b.p, b.len, a, &id, &back));
    levels = 1;
    for (const struct kv_txn_req *l = &back.u.txn; l->n_success; l = l->success[0].u.txn)
        levels++;
    ck_assert_uint_eq(levels, 3334);
    buf_fini(&b);
    deep = tu_nested("", 3334, "{\"success\":[{\"request_txn\":", "{}", "}]}", "");
    struct mjson_dec d;
    struct mjson_val root;
    mjson_dec_init(&d, a);
    ck_assert(!codec_root(&d, deep, strlen(deep), &root));
    ck_assert_str_eq(d.msg, "invalid character '[' exceeded max depth");
    free(deep);
}
END_TEST

START_TEST(proto_sizes)
{
    /* Sizes as protobuf would marshal them. */
    struct srv_req r = {.type = SRV_REQ_PUT};
    r.u.put.key = (const uint8_t *)"bigg";
    r.u.put.key_len = 4;
    r.u.put.value_len = 2200000;
    ck_assert_uint_eq(codec_proto_size(&r), 2200011);
    r.u.put.value_len = 0;
    r.u.put.lease = -1; /* negative int64: 10-byte varint */
    ck_assert_uint_eq(codec_proto_size(&r), 6 + 11);
    struct srv_req rr = {.type = SRV_REQ_RANGE};
    rr.u.range.span.key = (const uint8_t *)"a";
    rr.u.range.span.key_len = 1;
    rr.u.range.span.end_kind = KV_END_ALL;
    rr.u.range.limit = 300;
    ck_assert_uint_eq(codec_proto_size(&rr), 3 + 3 + 3);
}
END_TEST

START_TEST(writer)
{
    /* int64 and uint64 as strings, bytes as base64, each separated like any other value. */
    struct buf b;
    struct mjson_w w;
    buf_init(&b);
    mjson_w_init(&w, &b);
    mjson_w_obj(&w);
    mjson_w_key(&w, "i");
    codec_write_i64(&w, -7);
    mjson_w_key(&w, "u");
    codec_write_u64(&w, UINT64_MAX);
    mjson_w_key(&w, "b");
    codec_write_b64(&w, (const uint8_t *)"foob", 4);
    mjson_w_key(&w, "a");
    mjson_w_arr(&w);
    codec_write_i64(&w, INT64_MIN);
    codec_write_b64(&w, (const uint8_t *)"", 0);
    codec_write_u64(&w, 0);
    mjson_w_arr_end(&w);
    mjson_w_obj_end(&w);
    buf_putc(&b, 0);
    ck_assert_str_eq((char *)b.p, "{\"i\":\"-7\",\"u\":\"18446744073709551615\",\"b\":\"Zm9vYg==\","
                                  "\"a\":[\"-9223372036854775808\",\"\",\"0\"]}");
    buf_fini(&b);
    codec_error(&b, "x<y", 3);
    buf_putc(&b, 0);
    ck_assert_str_eq((char *)b.p, "{\"error\":\"x\\u003cy\",\"message\":\"x\\u003cy\",\"code\":3}");
    buf_fini(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("json");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, root_and_fields);
    tcase_add_test(tc, int_in_string_depth);
    tcase_add_test(tc, readers_int64);
    tcase_add_test(tc, readers_bytes_bool_enum);
    tcase_add_test(tc, readers_enum_text);
    suite_add_tcase(s, tc);
    tc = tcase_create("messages");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, decode_requests);
    tcase_add_test(tc, proto_sizes);
    tcase_add_test(tc, writer);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
