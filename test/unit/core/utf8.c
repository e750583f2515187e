/* Tests for src/core/utf8.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/proc.h"
#include "slipway/utf8.h"

#define R SW_UTF8_REPLACEMENT

/* sw_utf8_append of a byte string, compared with what it must give. */
static void check(const char *in, size_t len, const char *want)
{
    sw_buf_t b = SW_BUF_INIT;
    sw_utf8_append(&b, in, len);
    assert_string_equal(b.base, want);
    assert_int_equal(b.len, strlen(want));
    assert_true(sw_utf8_valid(b.base, b.len));
    sw_buf_free(&b);
}

#define CHECK(in, want) check((in), sizeof(in) - 1, (want))

static void test_valid_text_unchanged(void **state)
{
    (void)state;
    CHECK("", "");
    CHECK("plain ascii\t\x01\x7f", "plain ascii\t\x01\x7f");
    CHECK("\xc2\x80 \xdf\xbf", "\xc2\x80 \xdf\xbf");             /* U+0080, U+07FF */
    CHECK("\xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf", /* U+0800 .. U+FFFF */
          "\xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf");
    CHECK("\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf", "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf"); /* astral */
    CHECK("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x9a\x80",
          "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x9a\x80");
    assert_true(sw_utf8_valid("\xf0\x9f\x9a\x80", 4));
}

static void test_nul_is_visible(void **state)
{
    (void)state;
    CHECK("a\0b", "a" SW_UTF8_NUL "b");
    CHECK("\0\0", SW_UTF8_NUL SW_UTF8_NUL);
    assert_false(sw_utf8_valid("a\0b", 3));
}

static void test_invalid_single_bytes(void **state)
{
    (void)state;
    CHECK("\xff", R);
    CHECK("a\xfe!", "a" R "!");
    CHECK("\x80\xbf", R R); /* stray continuation bytes: one each */
    CHECK("\xf5\x80\x80\x80", R R R R);
    CHECK("\xf8\x88\x80\x80\x80", R R R R R); /* old 5-byte form */
    assert_false(sw_utf8_valid("\xff", 1));
}

static void test_overlong_forms(void **state)
{
    (void)state;
    CHECK("\xc0\xaf", R R); /* '/' in two bytes */
    CHECK("\xc1\xbf", R R);
    CHECK("\xe0\x80\xaf", R R R);       /* '/' in three */
    CHECK("\xe0\x9f\xbf", R R R);       /* U+07FF in three */
    CHECK("\xf0\x80\x80\xaf", R R R R); /* '/' in four */
    CHECK("\xf0\x8f\xbf\xbf", R R R R); /* U+FFFF in four */
    CHECK("\xc0\x80", R R);             /* "modified UTF-8" NUL */
}

static void test_surrogates_and_above_max(void **state)
{
    (void)state;
    CHECK("\xed\xa0\x80", R R R);                   /* U+D800 */
    CHECK("\xed\xbf\xbf", R R R);                   /* U+DFFF */
    CHECK("\xed\xa0\xbd\xed\xb8\x80", R R R R R R); /* a CESU-8 pair */
    CHECK("\xf4\x90\x80\x80", R R R R);             /* U+110000 */
}

static void test_truncated_sequences(void **state)
{
    (void)state;
    /* A well-formed start cut short is one replacement, whatever follows it. */
    CHECK("abc\xe2\x82", "abc" R);
    CHECK("\xf0\x9f\x9a", R);
    CHECK("\xf0\x9f", R);
    CHECK("\xc3", R);
    CHECK("\xe2\x82x", R "x");
    CHECK("\xf0\x9f\x9a\xe2\x82\xac", R "\xe2\x82\xac");
    CHECK("\xc3\xc3\xbc", R "\xc3\xbc");
}

static void test_unicode_standard_example(void **state)
{
    (void)state;
    /* The Unicode Standard's example of maximal subparts (ch. 3, U+FFFD substitution). */
    CHECK("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64", "a" R R R "b" R "c" R R "d");
}

static void test_json_variant(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    const char in[] = "q\"\\\n\x01\0\xff\xe2\x82\xac\xed\xa0\x80";
    sw_utf8_append_json(&b, in, sizeof(in) - 1);
    assert_string_equal(b.base, "q\\\"\\\\\\n\\u0001" SW_UTF8_NUL R "\xe2\x82\xac" R R R);
    assert_null(strstr(b.base, "\\u0000")); /* jsonb refuses it */
    sw_buf_free(&b);
}

/* The code point a well-formed sequence stands for, by the definition; -1 when the bytes are
 * not exactly one well-formed character. */
static long reference_decode(const unsigned char *s, size_t len)
{
    size_t n;
    long cp;
    if (len == 0)
        return -1;
    if (s[0] < 0x80)
        return len == 1 ? s[0] : -1;
    if ((s[0] & 0xe0) == 0xc0)
        n = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        n = 4, cp = s[0] & 0x07;
    else
        return -1;
    if (len != n)
        return -1;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const long min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    return cp;
}

/* A string of well-formed characters, none a NUL, by the definition. */
static bool reference_valid(const unsigned char *s, size_t len)
{
    if (len == 0)
        return true;
    for (size_t n = 1; n <= 4 && n <= len; n++)
        if (s[0] != 0 && reference_decode(s, n) >= 0)
            return reference_valid(s + n, len - n);
    return false;
}

static void test_every_short_sequence_against_the_definition(void **state)
{
    (void)state;
    unsigned char s[3];
    /* Every 1-, 2- and 3-byte string, and 4-byte ones over every lead and second byte. */
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        assert_int_equal(sw_utf8_valid((char *)s, 1), reference_valid(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            bool valid2 = reference_valid(s, 2);
            assert_int_equal(sw_utf8_valid((char *)s, 2), valid2);
            sw_buf_t out = SW_BUF_INIT;
            sw_utf8_append(&out, (char *)s, 2);
            if (!sw_utf8_valid(out.base, out.len) || (valid2 && memcmp(out.base, s, 2) != 0))
                fail_msg("%02x %02x", a, b);
            sw_buf_free(&out);
        }
    }
    /* Every three-byte string. */
    sw_buf_t out = SW_BUF_INIT;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (unsigned c = 0; c < 256; c++) {
                s[0] = (unsigned char)a, s[1] = (unsigned char)b, s[2] = (unsigned char)c;
                bool valid3 = reference_valid(s, 3);
                sw_buf_reset(&out);
                sw_utf8_append(&out, (char *)s, 3);
                if (sw_utf8_valid((char *)s, 3) != valid3 || !sw_utf8_valid(out.base, out.len) ||
                    (valid3 && memcmp(out.base, s, 3) != 0))
                    fail_msg("%02x %02x %02x", a, b, c);
            }
        }
    }
    sw_buf_free(&out);
    unsigned char f[4] = {0, 0, 0x80, 0x80};
    for (unsigned a = 0xf0; a < 0x100; a++) {
        for (unsigned b = 0; b < 256; b++) {
            f[0] = (unsigned char)a;
            f[1] = (unsigned char)b;
            assert_int_equal(sw_utf8_valid((char *)f, 4), reference_valid(f, 4));
        }
    }
}

static void test_random_bytes_always_valid_and_stable(void **state)
{
    (void)state;
    unsigned seed = 12345;
    char in[512];
    for (int round = 0; round < 2000; round++) {
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof(in));
        size_t newlines = 0;
        for (size_t i = 0; i < len; i++) {
            in[i] = (char)(rand_r(&seed) & 0xff);
            newlines += in[i] == '\n';
        }
        sw_buf_t once = SW_BUF_INIT, twice = SW_BUF_INIT;
        sw_utf8_append(&once, in, len);
        assert_true(sw_utf8_valid(once.base, once.len));
        size_t got = 0;
        for (size_t i = 0; i < once.len; i++)
            got += once.base[i] == '\n';
        assert_int_equal(got, newlines); /* ASCII is never swallowed */
        sw_utf8_append(&twice, once.base, once.len);
        assert_int_equal(twice.len, once.len);
        assert_memory_equal(twice.base, once.base, once.len);
        sw_buf_free(&once);
        sw_buf_free(&twice);
    }
}

static void test_cut_keeps_characters_whole(void **state)
{
    (void)state;
    assert_int_equal(sw_utf8_cut("", 0), 0);
    assert_int_equal(sw_utf8_cut("abc", 3), 3);
    assert_int_equal(sw_utf8_cut("ab\xe2\x82\xac", 5), 5); /* complete: nothing held */
    assert_int_equal(sw_utf8_cut("ab\xe2\x82", 4), 2);     /* 2 of 3 bytes */
    assert_int_equal(sw_utf8_cut("ab\xe2", 3), 2);         /* 1 of 3 */
    assert_int_equal(sw_utf8_cut("a\xf0\x9f\x9a", 4), 1);  /* 3 of 4 */
    assert_int_equal(sw_utf8_cut("a\xf0\x9f", 3), 1);
    assert_int_equal(sw_utf8_cut("a\xf0", 2), 1);
    assert_int_equal(sw_utf8_cut("\xf0\x9f\x9a\x80", 4), 4);
    assert_int_equal(sw_utf8_cut("\xc3", 1), 0);
    /* What can never become a character is not held back: it is replaced where it is. */
    assert_int_equal(sw_utf8_cut("ab\xff", 3), 3);
    assert_int_equal(sw_utf8_cut("ab\xe0\x80", 4), 4);    /* overlong start */
    assert_int_equal(sw_utf8_cut("ab\xed\xa0", 4), 4);    /* surrogate start */
    assert_int_equal(sw_utf8_cut("ab\xf4\x90", 4), 4);    /* above U+10FFFF */
    assert_int_equal(sw_utf8_cut("a\x80\x80\x80", 4), 4); /* only continuation bytes */
    assert_int_equal(sw_utf8_cut("ab\xc0", 3), 3);
}

/* A line longer than SW_PROC_LINE_MAX whose cut falls inside a character: the pieces, each
 * made valid, give back the text unchanged. */
static void test_cut_at_the_line_limit(void **state)
{
    (void)state;
    static const char *const chars[] = {"\xc3\xbc", "\xe2\x82\xac", "\xf0\x9f\x9a\x80"};
    for (size_t c = 0; c < 3; c++) {
        size_t clen = strlen(chars[c]);
        for (size_t shift = 1; shift < clen; shift++) {
            size_t len = SW_PROC_LINE_MAX + 10;
            char *line = malloc(len);
            memset(line, 'x', len);
            memcpy(line + SW_PROC_LINE_MAX - shift, chars[c], clen);
            size_t n = sw_utf8_cut(line, SW_PROC_LINE_MAX);
            assert_int_equal(n, SW_PROC_LINE_MAX - shift);
            sw_buf_t a = SW_BUF_INIT, b = SW_BUF_INIT;
            sw_utf8_append(&a, line, n);
            sw_utf8_append(&b, line + n, len - n);
            assert_null(strstr(a.base, R));
            assert_null(strstr(b.base, R));
            assert_int_equal(a.len + b.len, len);
            assert_memory_equal(b.base, chars[c], clen);
            sw_buf_free(&a);
            sw_buf_free(&b);
            free(line);
        }
    }
}

static void test_copy_fits_and_stays_valid(void **state)
{
    (void)state;
    char dst[8];
    assert_int_equal(sw_utf8_copy(dst, sizeof(dst), "abc", 3), 3);
    assert_string_equal(dst, "abc");
    /* U+20AC does not fit after 5 bytes: cut before it, not in it. */
    assert_int_equal(sw_utf8_copy(dst, sizeof(dst), "abcde\xe2\x82\xac", 8), 5);
    assert_string_equal(dst, "abcde");
    /* \xff grows to three bytes, and still fits whole or not at all. */
    assert_int_equal(sw_utf8_copy(dst, sizeof(dst), "abcd\xff", 5), 7);
    assert_string_equal(dst, "abcd" R);
    assert_int_equal(sw_utf8_copy(dst, sizeof(dst), "abcde\xff", 6), 5);
    assert_int_equal(sw_utf8_copy(dst, 1, "abc", 3), 0);
    assert_string_equal(dst, "");
    /* In place, as the worker does with its error message. */
    char buf[16] = "ab\xffx\xe2\x82";
    assert_int_equal(sw_utf8_copy(buf, sizeof(buf), buf, strlen(buf)), 9);
    assert_string_equal(buf, "ab" R "x" R);
    assert_true(sw_utf8_valid(buf, strlen(buf)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_text_unchanged),
        cmocka_unit_test(test_nul_is_visible),
        cmocka_unit_test(test_invalid_single_bytes),
        cmocka_unit_test(test_overlong_forms),
        cmocka_unit_test(test_surrogates_and_above_max),
        cmocka_unit_test(test_truncated_sequences),
        cmocka_unit_test(test_unicode_standard_example),
        cmocka_unit_test(test_json_variant),
        cmocka_unit_test(test_every_short_sequence_against_the_definition),
        cmocka_unit_test(test_random_bytes_always_valid_and_stable),
        cmocka_unit_test(test_cut_keeps_characters_whole),
        cmocka_unit_test(test_cut_at_the_line_limit),
        cmocka_unit_test(test_copy_fits_and_stays_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
