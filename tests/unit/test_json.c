/* test_json.c - the arena JSON module: the value tree, Go-worded syntax errors, the three
 * ways of reading (first value, values back to back, a whole text), the nesting bound, and
 * the writer's escaping. */
#include "metastore/json.h"
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

/* Parse the first value of s; return the error message or NULL. */
static const char *parse_err(const char *s, struct mjson_val *out)
{
    static struct mjson_dec d;
    mjson_dec_init(&d, a);
    if (mjson_parse(&d, s, strlen(s), out))
        return NULL;
    return d.msg;
}

START_TEST(values)
{
    struct mjson_val v;
    ck_assert_ptr_null(parse_err("{\"a\":[1,-2.5e+3,true,false,null,\"x\\u00e9\\ud83d\\ude00\"],"
                                 "\"b\":{\"c\":{}},\"e\":[]}",
                                 &v));
    ck_assert_int_eq(v.type, MJSON_OBJ);
    ck_assert_uint_eq(v.n, 3);
    const struct mjson_val *arr = mjson_get(&v, "a");
    ck_assert_uint_eq(arr->n, 6);
    ck_assert_int_eq(arr->u.items[0].type, MJSON_NUM);
    ck_assert_uint_eq(arr->u.items[1].n, 7);
    ck_assert(memcmp(arr->u.items[1].s, "-2.5e+3", 7) == 0);
    ck_assert_int_eq(arr->u.items[2].type, MJSON_TRUE);
    ck_assert_int_eq(arr->u.items[4].type, MJSON_NULL);
    /* \u00e9 is 2 UTF-8 bytes, the surrogate pair 4. */
    ck_assert_uint_eq(arr->u.items[5].n, 7);
    ck_assert(memcmp(arr->u.items[5].s, "x\xc3\xa9\xf0\x9f\x98\x80", 7) == 0);
    ck_assert_int_eq(mjson_get(&v, "b")->type, MJSON_OBJ);
    ck_assert_uint_eq(mjson_get(&v, "e")->n, 0);
    ck_assert_ptr_null(mjson_get(&v, "z"));
    ck_assert_ptr_null(mjson_get(arr, "a"));
    ck_assert_ptr_null(mjson_get(NULL, "a"));
    /* Empty and blank bodies are null; a scalar is a value like any other. */
    ck_assert_ptr_null(parse_err("", &v));
    ck_assert_int_eq(v.type, MJSON_NULL);
    ck_assert_ptr_null(parse_err(" \n\t ", &v));
    ck_assert_int_eq(v.type, MJSON_NULL);
    ck_assert_ptr_null(parse_err("12", &v));
    ck_assert_int_eq(v.type, MJSON_NUM);
    /* Members keep their order and duplicates; lookup finds the last, JSON null included. */
    ck_assert_ptr_null(parse_err("{\"x\":1,\"x\":2,\"n\":null}", &v));
    ck_assert_uint_eq(v.n, 3);
    ck_assert(memcmp(mjson_get(&v, "x")->s, "2", 1) == 0);
    ck_assert_int_eq(mjson_get(&v, "n")->type, MJSON_NULL);
    /* A string without escapes points into the input; one with escapes keeps its source. */
    const char *body = "[\"plain\",\"a\\\\u0041\\n\"]";
    ck_assert_ptr_null(parse_err(body, &v));
    ck_assert_ptr_eq(v.u.items[0].s, body + 2);
    ck_assert_ptr_null(v.u.items[0].u.raw);
    const char *src, *end;
    mjson_str_source(&v.u.items[0], &src, &end);
    ck_assert(end - src == 5 && memcmp(src, "plain", 5) == 0);
    ck_assert(v.u.items[1].n == 8 && memcmp(v.u.items[1].s, "a\\u0041\n", 8) == 0);
    mjson_str_source(&v.u.items[1], &src, &end);
    ck_assert(end - src == 10 && memcmp(src, "a\\\\u0041\\n", 10) == 0);
}
END_TEST

START_TEST(errors)
{
    static const struct in_msg cases[] = {
        {"{\"key\":", "unexpected EOF"},
        {"{", "unexpected EOF"},
        {"{\"a\":\"abc", "unexpected EOF"},
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
        /* bytes as Go quotes the rune U+00XX (checked against etcd) */
        {"\xef{}", "invalid character '\xc3\xaf' looking for beginning of value"},
        {"\x85{}", "invalid character '\\u0085' looking for beginning of value"},
        {"\xad{}", "invalid character '\\u00ad' looking for beginning of value"},
        {"\x07{}", "invalid character '\\a' looking for beginning of value"},
        {"\x0b{}", "invalid character '\\v' looking for beginning of value"},
        {"\x7f{}", "invalid character '\\x7f' looking for beginning of value"},
        {"\x01{}", "invalid character '\\x01' looking for beginning of value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mjson_val v;
        const char *m = parse_err(cases[i].in, &v);
        ck_assert_msg(m && strcmp(m, cases[i].msg) == 0, "%s: got [%s] want [%s]", cases[i].in,
                      m ? m : "(ok)", cases[i].msg);
    }
    /* Trailing data after the first value is ignored. */
    struct mjson_val v;
    ck_assert_ptr_null(parse_err("{} garbage", &v));
    /* The first error wins. */
    struct mjson_dec d;
    mjson_dec_init(&d, a);
    ck_assert(!mjson_parse(&d, "[", 1, &v));
    ck_assert(!mjson_dec_fail(&d, "later %d", 2));
    ck_assert_str_eq(d.msg, "unexpected EOF");
}
END_TEST

/* Values back to back (a stream body), and a whole text (json.Unmarshal). */
START_TEST(next_and_whole)
{
    const char *body = " {\"a\":1}\n[2] 3";
    size_t len = strlen(body), off = 0, used = 0;
    struct mjson_dec d;
    struct mjson_val v;
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse_next(&d, body, len, &v, &used));
    ck_assert_int_eq(v.type, MJSON_OBJ);
    ck_assert_uint_eq(used, 8);
    off = mjson_skip_ws(body, len, used);
    ck_assert_uint_eq(off, 9);
    ck_assert(mjson_parse_next(&d, body + off, len - off, &v, &used));
    ck_assert_int_eq(v.type, MJSON_ARR);
    off = mjson_skip_ws(body, len, off + used);
    ck_assert(mjson_parse_next(&d, body + off, len - off, &v, &used));
    ck_assert_int_eq(v.type, MJSON_NUM);
    ck_assert_uint_eq(mjson_skip_ws(body, len, off + used), len);
    /* A stream that ends inside a value, or has none, is "unexpected EOF". */
    ck_assert(!mjson_parse_next(&d, "  ", 2, &v, &used));
    ck_assert_str_eq(d.msg, "unexpected EOF");
    mjson_dec_init(&d, a);
    ck_assert(!mjson_parse_next(&d, "{\"a\"", 4, &v, &used));
    ck_assert_str_eq(d.msg, "unexpected EOF");

    /* A whole text: its end reads as a space to Go's scanner. */
    static const struct in_msg whole[] = {
        {"", "unexpected end of JSON input"},
        {"-", "invalid character ' ' in numeric literal"},
        {"1.", "invalid character ' ' after decimal point in numeric literal"},
        {"1e+", "invalid character ' ' in exponent of numeric literal"},
        {"tr", "invalid character ' ' in literal true (expecting 'u')"},
        {"[1", "unexpected end of JSON input"},
        {"2x", "invalid character 'x' after top-level value"},
        {"1 2", "invalid character '2' after top-level value"},
    };
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++) {
        mjson_dec_init(&d, a);
        ck_assert(!mjson_parse_whole(&d, whole[i].in, strlen(whole[i].in), &v));
        ck_assert_str_eq(d.msg, whole[i].msg);
    }
    mjson_dec_init(&d, a);
    ck_assert(mjson_parse_whole(&d, " 2 ", 3, &v));
    ck_assert(v.type == MJSON_NUM && v.n == 1 && v.s[0] == '2');
}
END_TEST

START_TEST(depth)
{
    /* Go's limit, 10000 open containers, is accepted (an ASan build's stack must hold it: the
     * parser keeps its own stack); the 10001st is refused with Go's words. */
    struct mjson_val v;
    char *ok = tu_nested("{\"key\":\"Zm9v\",\"x\":", 9999, "[", "1", "]", "}");
    ck_assert_ptr_null(parse_err(ok, &v));
    const struct mjson_val *x = mjson_get(&v, "x");
    size_t levels = 0;
    for (; x->type == MJSON_ARR && x->n == 1; x = &x->u.items[0])
        levels++;
    ck_assert_uint_eq(levels, 9999);
    ck_assert_int_eq(x->type, MJSON_NUM);
    free(ok);
    char *over = tu_nested("{\"key\":\"Zm9v\",\"x\":", 10000, "[", "1", "]", "}");
    const char *m = parse_err(over, &v);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "invalid character '[' exceeded max depth");
    free(over);
    /* Objects count the same; so do empty containers. */
    ok = tu_nested("", 10000, "{\"a\":", "{}", "}", "");
    ck_assert_str_eq(parse_err(ok, &v), "invalid character '{' exceeded max depth");
    free(ok);
    ok = tu_nested("", 9999, "{\"a\":", "{}", "}", "");
    ck_assert_ptr_null(parse_err(ok, &v));
    free(ok);
    ok = tu_nested("", MJSON_MAX_DEPTH, "[", "", "]", "");
    ck_assert_ptr_null(parse_err(ok, &v));
    free(ok);
    /* Far deeper and cut off: still the depth error, not a stack overflow or EOF. */
    char *deep = tu_nested("", 100000, "[", "", "", "");
    ck_assert_str_eq(parse_err(deep, &v), "invalid character '[' exceeded max depth");
    /* The stream reader and the whole-text reader share the bound. */
    struct mjson_dec d;
    size_t used;
    mjson_dec_init(&d, a);
    ck_assert(!mjson_parse_next(&d, deep, strlen(deep), &v, &used));
    ck_assert_str_eq(d.msg, "invalid character '[' exceeded max depth");
    mjson_dec_init(&d, a);
    ck_assert(!mjson_parse_whole(&d, deep, strlen(deep), &v));
    ck_assert_str_eq(d.msg, "invalid character '[' exceeded max depth");
    free(deep);
}
END_TEST

START_TEST(writer)
{
    struct buf b;
    struct mjson_w w;
    buf_init(&b);
    mjson_w_init(&w, &b);
    mjson_w_obj(&w);
    mjson_w_key(&w, "s");
    mjson_w_cstr(&w, "a\"b\\c<d>&e\n\r\t\x01\x1f/\xc3\xa9");
    MJSON_W_KEY(&w, "n");
    mjson_w_num(&w, -4294967295LL);
    mjson_w_key(&w, "a");
    mjson_w_arr(&w);
    mjson_w_bool(&w, true);
    mjson_w_bool(&w, false);
    mjson_w_obj(&w);
    mjson_w_obj_end(&w);
    mjson_w_arr(&w);
    mjson_w_arr_end(&w);
    buf_puts(mjson_w_raw(&w), "\"raw\"");
    mjson_w_str(&w, "x\0y", 3);
    mjson_w_arr_end(&w);
    mjson_w_obj_end(&w);
    buf_putc(&b, 0);
    ck_assert_str_eq(
        (char *)b.p,
        "{\"s\":\"a\\\"b\\\\c\\u003cd\\u003e\\u0026e\\n\\r\\t\\u0001\\u001f/\xc3\xa9\","
        "\"n\":-4294967295,\"a\":[true,false,{},[],\"raw\",\"x\\u0000y\"]}");
    buf_fini(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("reader");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, values);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, next_and_whole);
    tcase_add_test(tc, depth);
    suite_add_tcase(s, tc);
    tc = tcase_create("writer");
    tcase_add_test(tc, writer);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
