/* Tests for src/core/percent.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "slipway/percent.h"

/* Decodes in with out_size = len + 1, as the HTTP query decoder sizes its arena copy. */
static ssize_t decode(const char *in, unsigned flags, char *out)
{
    size_t len = strlen(in);
    return sw_percent_decode(out, len + 1, in, len, flags);
}

static void expect(const char *in, unsigned flags, const char *want)
{
    char out[256];
    ssize_t n = decode(in, flags, out);
    if (n < 0)
        fail_msg("refused \"%s\": %zd", in, n);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_plain_text_unchanged(void **state)
{
    (void)state;
    expect("", 0, "");
    expect("abc-._~", 0, "abc-._~");
    expect("a+b", 0, "a+b"); /* '+' is literal outside forms */
    expect("a=b&c", 0, "a=b&c");
}

static void test_escapes(void **state)
{
    (void)state;
    expect("%41", 0, "A");
    expect("a%20b", 0, "a b");
    expect("%2f%2F", 0, "//");
    expect("%e2%82%ac", 0, "\xe2\x82\xac");
    expect("%ff", 0, "\xff");
    expect("%2B", SW_PERCENT_FORM, "+"); /* an escaped plus stays a plus */
    expect("%25", 0, "%");
    expect("%2541", 0, "%41"); /* decoded once, never twice */
    expect("p%40ss:w%3Ard", 0, "p@ss:w:rd");
}

static void test_form_plus_is_space(void **state)
{
    (void)state;
    expect("a+b", SW_PERCENT_FORM, "a b");
    expect("+++", SW_PERCENT_FORM, "   ");
    expect("a%20b+c", SW_PERCENT_FORM, "a b c");
}

static void test_malformed_escapes_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"%",   "%4",  "a%",  "a%4", "%zz",   "%4g",
                                      "%g4", "% 1", "%-1", "%+1", "x%00y", "%00"};
    char out[64];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ssize_t n = decode(bad[i], 0, out);
        if (n != -EINVAL)
            fail_msg("\"%s\": want -EINVAL, got %zd", bad[i], n);
        assert_int_equal(decode(bad[i], SW_PERCENT_FORM, out), -EINVAL);
    }
}

static void test_length_is_respected(void **state)
{
    (void)state;
    char out[8];
    /* Only len bytes are read: the rest of the string is not part of the input. */
    assert_int_equal(sw_percent_decode(out, sizeof(out), "ab%41cd", 2, 0), 2);
    assert_string_equal(out, "ab");
    /* An escape cut by len is truncated, not read past len. */
    assert_int_equal(sw_percent_decode(out, sizeof(out), "ab%41", 4, 0), -EINVAL);
    /* An embedded NUL byte in the input is copied like any other. */
    assert_int_equal(sw_percent_decode(out, sizeof(out), "a\0b", 3, 0), 3);
    assert_memory_equal(out, "a\0b", 4);
}

static void test_output_bound(void **state)
{
    (void)state;
    char out[4];
    /* three characters and the NUL fit; four do not */
    assert_int_equal(sw_percent_decode(out, sizeof(out), "abc", 3, 0), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(sw_percent_decode(out, sizeof(out), "abcd", 4, 0), -E2BIG);
    assert_int_equal(sw_percent_decode(out, sizeof(out), "%41%42%43", 9, 0), 3);
    assert_string_equal(out, "ABC");
    assert_int_equal(sw_percent_decode(out, sizeof(out), "%41%42%43%44", 12, 0), -E2BIG);
    assert_int_equal(sw_percent_decode(out, 1, "", 0, 0), 0);
    assert_string_equal(out, "");
    assert_int_equal(sw_percent_decode(out, 0, "", 0, 0), -E2BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_text_unchanged),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_form_plus_is_space),
        cmocka_unit_test(test_malformed_escapes_refused),
        cmocka_unit_test(test_length_is_respected),
        cmocka_unit_test(test_output_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
