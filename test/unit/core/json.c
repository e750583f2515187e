/* Tests for src/core/json.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "slipway/json.h"

static const char *detail(json_t *details, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(details, i), key));
}

static void test_parse_error_names_line_and_column(void **state)
{
    (void)state;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char body[] = "{\n  \"name\": \"x\",\n  oops\n}";
    assert_null(sw_json_parse_object(body, sizeof(body) - 1, &e));
    json_t *d = sw_json_errors_take(&e);
    assert_int_equal(json_array_size(d), 1);
    assert_string_equal(detail(d, 0, "field"), "body");
    assert_non_null(strstr(detail(d, 0, "message"), "line 3"));
    json_decref(d);
}

static void test_parse_rejects_non_objects_and_duplicates(void **state)
{
    (void)state;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    assert_null(sw_json_parse_object("[1]", 3, &e));
    assert_null(sw_json_parse_object("{\"a\":1,\"a\":2}", 13, &e));
    assert_null(sw_json_parse_object("", 0, &e));
    json_t *d = sw_json_errors_take(&e);
    assert_int_equal(json_array_size(d), 3);
    assert_string_equal(detail(d, 0, "message"), "must be a JSON object");
    json_decref(d);
}

/* Found by test/fuzz/validate: jansson quotes the bytes near a syntax error, and a message
 * that is not UTF-8 was dropped, leaving a 400 with no reason. */
static void test_a_parse_error_quoting_invalid_utf8_still_says_why(void **state)
{
    (void)state;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char body[] = "{ \"d\\ud80\xd8\x82";
    assert_null(sw_json_parse_object(body, sizeof(body) - 1, &e));
    char field[300];
    memset(field, 'f', sizeof(field) - 3);
    memcpy(field + sizeof(field) - 3, "\xc3\xa9", 3); /* cut mid-character at 255 bytes */
    sw_json_errors_add(&e, field, "%s", "\xff");
    json_t *d = sw_json_errors_take(&e);
    assert_int_equal(json_array_size(d), 2);
    assert_non_null(strstr(detail(d, 0, "message"), "invalid JSON"));
    assert_string_equal(detail(d, 1, "message"), "\xef\xbf\xbd");
    assert_true(strlen(detail(d, 1, "field")) <= 255);
    json_decref(d);
}

static void test_field_readers(void **state)
{
    (void)state;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char body[] = "{\"name\":\"web\",\"port\":70000,\"on\":\"yes\",\"n\":\"\",\"x\":1}";
    json_t *o = sw_json_parse_object(body, sizeof(body) - 1, &e);
    assert_non_null(o);
    const char *s = NULL;
    long long port = 0;
    bool on = false;
    assert_int_equal(sw_json_get_string(o, "name", true, 1, 63, &s, &e), 0);
    assert_string_equal(s, "web");
    assert_int_equal(sw_json_get_int(o, "port", true, 1, 65535, &port, &e), -EINVAL);
    assert_int_equal(sw_json_get_bool(o, "on", true, &on, &e), -EINVAL);
    assert_int_equal(sw_json_get_string(o, "n", true, 1, 10, &s, &e), -EINVAL);
    assert_int_equal(sw_json_get_string(o, "missing", false, 0, 10, &s, &e), -ENOENT);
    assert_int_equal(sw_json_get_string(o, "required", true, 0, 10, &s, &e), -EINVAL);
    static const char *const allowed[] = {"name", "port", "on", "n", NULL};
    sw_json_reject_unknown(o, allowed, &e);

    json_t *d = sw_json_errors_take(&e);
    assert_int_equal(json_array_size(d), 5);
    assert_string_equal(detail(d, 0, "field"), "port");
    assert_string_equal(detail(d, 0, "message"), "must be between 1 and 65535");
    assert_string_equal(detail(d, 1, "field"), "on");
    assert_string_equal(detail(d, 2, "message"), "must not be empty");
    assert_string_equal(detail(d, 3, "field"), "required");
    assert_string_equal(detail(d, 3, "message"), "is required");
    assert_string_equal(detail(d, 4, "field"), "x");
    json_decref(d);
    json_decref(o);
}

static void test_details_are_capped(void **state)
{
    (void)state;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    for (int i = 0; i < 100; i++)
        sw_json_errors_add(&e, "f", "problem %d", i);
    assert_true(sw_json_errors_any(&e));
    json_t *d = sw_json_errors_take(&e);
    assert_int_equal(json_array_size(d), SW_JSON_MAX_DETAILS);
    assert_false(sw_json_errors_any(&e));
    json_decref(d);
    sw_json_errors_free(&e);
}

static void test_dump_compact(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    json_t *v = json_pack("{s:f}", "ms", 0.338);
    sw_json_dump(&b, v);
    assert_string_equal(b.base, "{\"ms\":0.338}");
    json_decref(v);
    sw_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_error_names_line_and_column),
        cmocka_unit_test(test_parse_rejects_non_objects_and_duplicates),
        cmocka_unit_test(test_a_parse_error_quoting_invalid_utf8_still_says_why),
        cmocka_unit_test(test_field_readers),
        cmocka_unit_test(test_details_are_capped),
        cmocka_unit_test(test_dump_compact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
