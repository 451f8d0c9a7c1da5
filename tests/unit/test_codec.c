/* test_codec.c - the gateway codec: JSON parser (Go-worded errors), typed readers (int64 and
 * base64 edge cases), request decoders, protobuf sizes, and the writer's escaping. */
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
static const char *root_err(const char *s, struct jv *out)
{
    static struct jdec d;
    jdec_init(&d, a);
    if (jdec_root(&d, s, strlen(s), out))
        return NULL;
    return d.msg;
}

START_TEST(parser_values)
{
    struct jv v;
    ck_assert_ptr_null(root_err("{\"a\":[1,-2.5e+3,true,false,null,\"x\\u00e9\\ud83d\\ude00\"],"
                                "\"b\":{\"c\":{}},\"e\":[]}",
                                &v));
    ck_assert_int_eq(v.type, JV_OBJ);
    ck_assert_uint_eq(v.n, 3);
    const struct jv *arr = jv_field(&v, "a", NULL);
    ck_assert_uint_eq(arr->n, 6);
    ck_assert_int_eq(arr->u.items[0].type, JV_NUM);
    ck_assert_uint_eq(arr->u.items[1].n, 7);
    ck_assert(memcmp(arr->u.items[1].s, "-2.5e+3", 7) == 0);
    ck_assert_int_eq(arr->u.items[2].type, JV_TRUE);
    ck_assert_int_eq(arr->u.items[4].type, JV_NULL);
    /* \u00e9 is 2 UTF-8 bytes, the surrogate pair 4. */
    ck_assert_uint_eq(arr->u.items[5].n, 7);
    ck_assert(memcmp(arr->u.items[5].s, "x\xc3\xa9\xf0\x9f\x98\x80", 7) == 0);
    ck_assert_int_eq(jv_field(&v, "b", NULL)->type, JV_OBJ);
    /* Empty, blank and null bodies are {}. */
    ck_assert_ptr_null(root_err("", &v));
    ck_assert_int_eq(v.type, JV_OBJ);
    ck_assert_ptr_null(root_err(" \n\t ", &v));
    ck_assert_ptr_null(root_err("null", &v));
    ck_assert_uint_eq(v.n, 0);
    /* Last duplicate wins; camelCase wins over the proto name; null is absent. */
    ck_assert_ptr_null(root_err("{\"range_end\":\"YQ==\",\"rangeEnd\":\"Yg==\",\"range_end\":"
                                "\"Yw==\",\"x\":1,\"x\":2,\"n\":null}",
                                &v));
    const struct jv *re = jv_field(&v, "range_end", "rangeEnd");
    ck_assert(re->n == 4 && memcmp(re->s, "Yg==", 4) == 0);
    ck_assert(memcmp(jv_field(&v, "x", NULL)->s, "2", 1) == 0);
    ck_assert_ptr_null(jv_field(&v, "n", NULL));
}
END_TEST

START_TEST(parser_errors)
{
    static const struct in_msg cases[] = {
        {"{\"key\":", "unexpected EOF"},
        {"{", "unexpected EOF"},
        {"{\"a\":\"abc", "unexpected EOF"},
        {"[1,2]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"},
        {"12", "json: cannot unmarshal number into Go value of type map[string]json.RawMessage"},
        {"true", "json: cannot unmarshal bool into Go value of type map[string]json.RawMessage"},
        {"xyz", "invalid character 'x' looking for beginning of value"},
        {"{a:1}", "invalid character 'a' looking for beginning of object key string"},
        {"{\"a\" 1}", "invalid character '1' after object key"},
        {"{\"a\":1 \"b\":2}", "invalid character '\"' after object key:value pair"},
        {"{\"a\":[1 2]}", "invalid character '2' after array element"},
        {"{\"a\":tru}", "invalid character '}' in literal true (expecting 'e')"},
        {"{\"a\":-x}", "invalid character 'x' in numeric literal"},
        {"{\"a\":1.}", "invalid character '}' after decimal point in numeric literal"},
        {"{\"a\":1e}", "invalid character '}' in exponent of numeric literal"},
        {"{\"a\":\"\\q\"}", "invalid character 'q' in string escape code"},
        {"{\"a\":\"\\u12g4\"}", "invalid character 'g' in \\u hexadecimal character escape"},
        {"{\"a\":\"x\ny\"}", "invalid character '\\n' in string literal"},
        {"{\"a\":01}", "invalid character '1' after object key:value pair"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct jv v;
        const char *m = root_err(cases[i].in, &v);
        ck_assert_msg(m && strcmp(m, cases[i].msg) == 0, "%s: got [%s] want [%s]", cases[i].in,
                      m ? m : "(ok)", cases[i].msg);
    }
    /* Trailing data after the first value is ignored. */
    struct jv v;
    ck_assert_ptr_null(root_err("{} garbage", &v));
}
END_TEST

START_TEST(parser_depth)
{
    /* Go's limit, 10000 open containers, is accepted (an ASan build's stack must hold it: the
     * parser keeps its own stack); the 10001st is refused with Go's words. */
    struct jv v;
    char *ok = tu_nested("{\"key\":\"Zm9v\",\"x\":", 9999, "[", "1", "]", "}");
    ck_assert_ptr_null(root_err(ok, &v));
    const struct jv *x = jv_field(&v, "x", NULL);
    size_t levels = 0;
    for (; x->type == JV_ARR && x->n == 1; x = &x->u.items[0])
        levels++;
    ck_assert_uint_eq(levels, 9999);
    ck_assert_int_eq(x->type, JV_NUM);
    free(ok);
    char *over = tu_nested("{\"key\":\"Zm9v\",\"x\":", 10000, "[", "1", "]", "}");
    const char *m = root_err(over, &v);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "invalid character '[' exceeded max depth");
    free(over);
    /* Objects count the same; so do empty containers. */
    ok = tu_nested("", 10000, "{\"a\":", "{}", "}", "");
    m = root_err(ok, &v);
    ck_assert_str_eq(m, "invalid character '{' exceeded max depth");
    free(ok);
    ok = tu_nested("", 9999, "{\"a\":", "{}", "}", "");
    ck_assert_ptr_null(root_err(ok, &v));
    free(ok);
    ok = tu_nested("", 10000, "[", "", "]", "");
    struct jdec d;
    jdec_init(&d, a);
    ck_assert(json_parse(&d, ok, strlen(ok), &v));
    free(ok);
    /* Far deeper and cut off: still the depth error, not a stack overflow or EOF. */
    char *deep = tu_nested("", 100000, "[", "", "", "");
    ck_assert_str_eq(root_err(deep, &v), "invalid character '[' exceeded max depth");
    /* The stream reader and the number-in-a-string reader share the bound. */
    size_t used;
    jdec_init(&d, a);
    ck_assert(!json_parse_next(&d, deep, strlen(deep), &v, &used));
    ck_assert_str_eq(d.msg, "invalid character '[' exceeded max depth");
    free(deep);
    deep = tu_nested("\"", 10001, "[", "", "", "\"");
    jdec_init(&d, a);
    ck_assert(json_parse(&d, deep, strlen(deep), &v));
    int64_t i = 0;
    ck_assert(!jdec_i64(&d, &v, &i));
    ck_assert_str_eq(d.msg, "invalid character '[' exceeded max depth");
    free(deep);
}
END_TEST

static const char *read_i64(const char *json, int64_t *out)
{
    static struct jdec d;
    struct jv v;
    jdec_init(&d, a);
    ck_assert(json_parse(&d, json, strlen(json), &v));
    return jdec_i64(&d, &v, out) ? NULL : d.msg;
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

    struct jdec d;
    struct jv v;
    uint64_t u = 0;
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "\"18446744073709551615\"", 22, &v));
    ck_assert(jdec_u64(&d, &v, &u));
    ck_assert(u == UINT64_MAX);
    ck_assert(json_parse(&d, "-1", 2, &v));
    ck_assert(!jdec_u64(&d, &v, &u));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal number -1 into Go value of type uint64");
}
END_TEST

START_TEST(readers_bytes_bool_enum)
{
    struct jdec d;
    struct jv v;
    const uint8_t *p;
    size_t n;
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "\"Zm9vYmFy\"", 10, &v));
    ck_assert(jdec_bytes(&d, &v, &p, &n));
    ck_assert(n == 6 && memcmp(p, "foobar", 6) == 0);
    ck_assert(json_parse(&d, "\"\"", 2, &v));
    ck_assert(jdec_bytes(&d, &v, &p, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert(json_parse(&d, "\"Zm9vYg\"", 8, &v));
    ck_assert(!jdec_bytes(&d, &v, &p, &n));
    ck_assert_str_eq(d.msg, "illegal base64 data at input byte 4");
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "true", 4, &v));
    ck_assert(!jdec_bytes(&d, &v, &p, &n));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal bool into Go value of type []uint8");
    /* An array of byte values is bytes too (json.Unmarshal into []byte); null is 0. */
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "[102,111,null,111]", 18, &v));
    ck_assert(jdec_bytes(&d, &v, &p, &n));
    ck_assert(n == 4 && memcmp(p, "fo\0o", 4) == 0);
    ck_assert(json_parse(&d, "[]", 2, &v));
    ck_assert(jdec_bytes(&d, &v, &p, &n));
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
        jdec_init(&d, a);
        ck_assert(json_parse(&d, bad_bytes[i].in, strlen(bad_bytes[i].in), &v));
        ck_assert(!jdec_bytes(&d, &v, &p, &n));
        ck_assert_str_eq(d.msg, bad_bytes[i].msg);
    }

    bool b = false;
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "true", 4, &v));
    ck_assert(jdec_bool(&d, &v, &b) && b);
    ck_assert(json_parse(&d, "1", 1, &v));
    ck_assert(!jdec_bool(&d, &v, &b));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal number into Go value of type bool");

    static const char *const names[] = {"NONE", "ASCEND", "DESCEND"};
    int64_t e = 0;
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "\"DESCEND\"", 9, &v));
    ck_assert(jdec_enum(&d, &v, names, 3, "T", &e));
    ck_assert_int_eq(e, 2);
    ck_assert(json_parse(&d, "7", 1, &v));
    ck_assert(jdec_enum(&d, &v, names, 3, "T", &e));
    ck_assert_int_eq(e, 7);
    ck_assert(json_parse(&d, "\"2\"", 3, &v));
    ck_assert(!jdec_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
    ck_assert_str_eq(d.msg, "unknown value \"2\" for enum etcdserverpb.X");
    /* Numbers outside int32 and other JSON types name the enum's Go type, as jsonpb does. */
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "2147483648", 10, &v));
    ck_assert(!jdec_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
    ck_assert_str_eq(d.msg, "json: cannot unmarshal number 2147483648 into Go value of type "
                            "etcdserverpb.X");
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "-2147483648", 11, &v));
    ck_assert(jdec_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
    ck_assert_int_eq(e, INT32_MIN);
    ck_assert(json_parse(&d, "true", 4, &v));
    ck_assert(!jdec_enum(&d, &v, names, 3, "etcdserverpb.X", &e));
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
        struct jdec d;
        struct jv v;
        int64_t e = 0;
        jdec_init(&d, a);
        ck_assert(json_parse(&d, c[i].in, strlen(c[i].in), &v));
        bool ok;
        if (c[i].list) {
            const struct jv *items;
            size_t n;
            ok = jdec_enum_arr(&d, &v, names, 3, "E", &items, &n);
            for (size_t k = 0; ok && k < n; k++)
                ok = jdec_enum(&d, &items[k], names, 3, "E", &e);
        } else {
            ok = jdec_enum(&d, &v, names, 3, "E", &e);
        }
        ck_assert_msg(!ok, "%s accepted", c[i].in);
        ck_assert_str_eq(d.msg, c[i].msg);
    }
    struct jdec d;
    struct jv v;
    const struct jv *items;
    size_t n;
    jdec_init(&d, a);
    ck_assert(json_parse(&d, "[\"DESCEND\",1]", 13, &v));
    ck_assert(jdec_enum_arr(&d, &v, names, 3, "E", &items, &n));
    ck_assert_uint_eq(n, 2);
}
END_TEST

static ms_err decode_txn(const char *json, struct kv_txn_req *t, const char **msg)
{
    static struct jdec d;
    struct jv root;
    jdec_init(&d, a);
    ck_assert(jdec_root(&d, json, strlen(json), &root));
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
    deep = tu_nested("", 3334, "{\"success\":[{\"request_txn\":", "{}", "}]}", "");
    struct jdec d;
    struct jv root;
    jdec_init(&d, a);
    ck_assert(!jdec_root(&d, deep, strlen(deep), &root));
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
    struct buf b;
    struct jw w;
    buf_init(&b);
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "s");
    jw_cstr(&w, "a\"b\\c<d>&e\n\x01");
    jw_key(&w, "i");
    jw_i64(&w, -7);
    jw_key(&w, "u");
    jw_u64(&w, UINT64_MAX);
    jw_key(&w, "n");
    jw_num(&w, 4294967295LL);
    jw_key(&w, "b");
    jw_b64(&w, (const uint8_t *)"foob", 4);
    jw_key(&w, "a");
    jw_arr(&w);
    jw_bool(&w, true);
    jw_obj(&w);
    jw_obj_end(&w);
    jw_arr_end(&w);
    jw_obj_end(&w);
    buf_putc(&b, 0);
    ck_assert_str_eq((char *)b.p, "{\"s\":\"a\\\"b\\\\c\\u003cd\\u003e\\u0026e\\n\\u0001\",\"i\":"
                                  "\"-7\",\"u\":\"18446744073709551615\",\"n\":4294967295,\"b\":"
                                  "\"Zm9vYg==\",\"a\":[true,{}]}");
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
    tcase_add_test(tc, parser_values);
    tcase_add_test(tc, parser_errors);
    tcase_add_test(tc, parser_depth);
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
