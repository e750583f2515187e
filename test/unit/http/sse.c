/* Tests for src/http/sse.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "slipway/sse.h"

static void check(sw_shared_t *s, const char *want)
{
    assert_int_equal(s->len, strlen(want));
    assert_memory_equal(s->data, want, s->len);
    assert_int_equal(s->data[s->len], '\0');
    assert_int_equal(s->refs, 1);
    sw_shared_unref(s);
}

static void test_sse_event(void **state)
{
    (void)state;
    check(sw_sse_encode(17, "{\"a\":1}", 7), "id: 17\ndata: {\"a\":1}\n\n");
    check(sw_sse_encode(0, "{\"b\":2}", 7), "data: {\"b\":2}\n\n");
    check(sw_sse_encode(-1, "{}", 2), "data: {}\n\n");
    check(sw_sse_encode(9223372036854775807LL, "{}", 2), "id: 9223372036854775807\ndata: {}\n\n");
}

static void test_ndjson_line(void **state)
{
    (void)state;
    check(sw_ndjson_encode("{\"a\":1}", 7), "{\"a\":1}\n");
    check(sw_ndjson_encode("", 0), "\n");
}

/* Raw line breaks (JSON whitespace) cannot split an event or a line. */
static void test_line_breaks_become_spaces(void **state)
{
    (void)state;
    const char json[] = "{\"b\":\r\n2}";
    check(sw_sse_encode(3, json, 9), "id: 3\ndata: {\"b\":  2}\n\n");
    check(sw_ndjson_encode(json, 9), "{\"b\":  2}\n");
    assert_memory_equal(json, "{\"b\":\r\n2}", 9); /* the input is left alone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_event),
        cmocka_unit_test(test_ndjson_line),
        cmocka_unit_test(test_line_breaks_become_spaces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
