/* Tests for src/core/buf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "slipway/buf.h"

static void test_append_grows_and_terminates(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        sw_buf_append(&b, "abc", 3);
    assert_int_equal(b.len, 3000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.base[b.len], '\0');
    assert_memory_equal(b.base + 2997, "abc", 3);
    sw_buf_free(&b);
    assert_null(b.base);
    assert_int_equal(b.len, 0);
}

static void test_printf_long_output(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    char big[500];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sw_buf_printf(&b, "[%s]%d", big, 42);
    assert_int_equal(b.len, 1 + 499 + 1 + 2);
    assert_string_equal(b.base + 501, "42");
    sw_buf_free(&b);
}

static void test_consume_and_reset(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_append_cstr(&b, "hello world");
    sw_buf_consume(&b, 6);
    assert_string_equal(b.base, "world");
    sw_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.base, "");
    sw_buf_append_cstr(&b, "again");
    sw_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_non_null(b.base);
    sw_buf_free(&b);
}

static void test_json_escaping(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    const char in[] = "a\"b\\c\n\x01\x7f";
    sw_buf_append_json_str(&b, in, sizeof(in) - 1);
    assert_string_equal(b.base, "a\\\"b\\\\c\\n\\u0001\\u007f");
    sw_buf_free(&b);
}

static void test_steal_gives_owned_string(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    char *s = sw_buf_steal(&b);
    assert_string_equal(s, "");
    free(s);
    sw_buf_append_cstr(&b, "kept");
    s = sw_buf_steal(&b);
    assert_null(b.base);
    assert_string_equal(s, "kept");
    free(s);
}

static void test_iov_is_uuid(void **state)
{
    (void)state;
    assert_true(sw_iov_is_uuid(sw_iov_from_cstr("0f8fad5b-d9cb-469f-a165-70867728950e")));
    const char *bad[] = {
        "",
        "0F8FAD5B-D9CB-469F-A165-70867728950E", /* PostgreSQL prints lower case */
        "0f8fad5b-d9cb-469f-a165-70867728950",  /* short */
        "0f8fad5b-d9cb-469f-a165-70867728950e0",
        "0f8fad5bd-9cb-469f-a165-70867728950e", /* a dash out of place */
        "0f8fad5b-d9cb-469f-a165-70867728950g",
        "0f8fad5b-d9cb-469f-a165-70867728950\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(sw_iov_is_uuid(sw_iov_from_cstr(bad[i])));
}

static void test_iov_helpers(void **state)
{
    (void)state;
    unsigned long long v;
    assert_true(sw_iov_caseeq(SW_IOV_LIT("Content-Length"), "content-length"));
    assert_false(sw_iov_caseeq(SW_IOV_LIT("Content-Lengt"), "content-length"));
    assert_true(sw_iov_eq_cstr(SW_IOV_LIT("abc"), "abc"));
    assert_false(sw_iov_eq_cstr(SW_IOV_LIT("abc"), "abcd"));
    assert_int_equal(sw_iov_to_u64(SW_IOV_LIT("18446744073709551615"), &v), 0);
    assert_true(v == 18446744073709551615ull);
    assert_int_equal(sw_iov_to_u64(SW_IOV_LIT("18446744073709551616"), &v), -ERANGE);
    assert_int_equal(sw_iov_to_u64(SW_IOV_LIT("12a"), &v), -EINVAL);
    assert_int_equal(sw_iov_to_u64(SW_IOV_LIT(""), &v), -EINVAL);
    assert_int_equal(sw_iov_to_u64(SW_IOV_LIT("-1"), &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows_and_terminates),
        cmocka_unit_test(test_printf_long_output),
        cmocka_unit_test(test_consume_and_reset),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_steal_gives_owned_string),
        cmocka_unit_test(test_iov_helpers),
        cmocka_unit_test(test_iov_is_uuid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
