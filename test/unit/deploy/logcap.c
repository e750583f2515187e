/* Tests for src/deploy/logcap.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>

#include "slipway/logcap.h"

static void test_stores_until_the_cap_then_cuts_once(void **state)
{
    (void)state;
    sw_logcap_t c = SW_LOGCAP_INIT;
    const uint64_t max = 10 * (100 + SW_LOGCAP_LINE_COST);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sw_logcap_take(&c, max, 100), SW_LOGCAP_STORE);
    assert_int_equal(c.stored, max);
    assert_false(c.cut);
    assert_int_equal(sw_logcap_take(&c, max, 0), SW_LOGCAP_CUT);
    assert_int_equal(sw_logcap_take(&c, max, 7), SW_LOGCAP_SKIP);
    assert_int_equal(sw_logcap_take(&c, max, 5), SW_LOGCAP_SKIP);
    assert_true(c.cut);
    assert_int_equal(c.skipped_lines, 3);
    assert_int_equal(c.skipped_bytes, 12);
    assert_int_equal(c.stored, max);
}

static void test_once_cut_a_small_line_is_not_stored_either(void **state)
{
    (void)state;
    sw_logcap_t c = SW_LOGCAP_INIT;
    assert_int_equal(sw_logcap_take(&c, 1000, 900), SW_LOGCAP_STORE);
    assert_int_equal(sw_logcap_take(&c, 1000, 900), SW_LOGCAP_CUT);
    /* It would fit, but the stored log must stay a prefix of the output. */
    assert_int_equal(sw_logcap_take(&c, 1000, 1), SW_LOGCAP_SKIP);
    assert_int_equal(c.skipped_lines, 2);
    assert_int_equal(c.skipped_bytes, 901);
}

static void test_a_line_bigger_than_the_cap(void **state)
{
    (void)state;
    sw_logcap_t c = SW_LOGCAP_INIT;
    assert_int_equal(sw_logcap_take(&c, 100, 100), SW_LOGCAP_CUT);
    assert_int_equal(c.stored, 0);
    sw_logcap_t d = SW_LOGCAP_INIT;
    assert_int_equal(sw_logcap_take(&d, UINT64_MAX, SIZE_MAX), SW_LOGCAP_CUT); /* no overflow */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stores_until_the_cap_then_cuts_once),
        cmocka_unit_test(test_once_cut_a_small_line_is_not_stored_either),
        cmocka_unit_test(test_a_line_bigger_than_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
