/* Tests for src/auth/token.c and src/auth/crypto.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "slipway/crypto.h"

static int setup(void **state)
{
    (void)state;
    return sw_crypto_init();
}

static void test_token_shape(void **state)
{
    (void)state;
    char t[SW_TOKEN_MAX];
    sw_token_new("sws_", t);
    assert_int_equal(strlen(t), 4 + 43);
    assert_memory_equal(t, "sws_", 4);
    assert_int_equal(
        strspn(t + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    assert_true(sw_token_valid("sws_", t, strlen(t)));

    char u[SW_TOKEN_MAX];
    sw_token_new("sws_", u);
    assert_string_not_equal(t, u);
}

static void test_token_valid_rejects(void **state)
{
    (void)state;
    char t[SW_TOKEN_MAX], bad[SW_TOKEN_MAX + 1];
    size_t n;
    sw_token_new("swt_", t);
    n = strlen(t);

    assert_false(sw_token_valid("sws_", t, n)); /* other prefix */
    assert_false(sw_token_valid("swt_", t, n - 1));
    assert_false(sw_token_valid("swt_", NULL, 0));
    memcpy(bad, t, n + 1);
    bad[n] = 'A';
    assert_false(sw_token_valid("swt_", bad, n + 1));
    memcpy(bad, t, n + 1);
    bad[10] = '+';
    assert_false(sw_token_valid("swt_", bad, n));
    memcpy(bad, t, n + 1);
    bad[10] = '=';
    assert_false(sw_token_valid("swt_", bad, n));
    memcpy(bad, t, n + 1);
    bad[10] = '\0';
    assert_false(sw_token_valid("swt_", bad, n));
    /* The last character carries two zero bits in every token we issue. */
    memcpy(bad, t, n + 1);
    bad[n - 1] = 'B';
    assert_false(sw_token_valid("swt_", bad, n));
    bad[n - 1] = 'E';
    assert_true(sw_token_valid("swt_", bad, n));
}

static void test_token_hash(void **state)
{
    (void)state;
    char t[SW_TOKEN_MAX], u[SW_TOKEN_MAX], h1[SW_TOKEN_HASH_HEX], h2[SW_TOKEN_HASH_HEX],
        h3[SW_TOKEN_HASH_HEX];
    sw_token_new("sws_", t);
    sw_token_new("sws_", u);
    sw_token_hash(t, strlen(t), h1);
    sw_token_hash(t, strlen(t), h2);
    sw_token_hash(u, strlen(u), h3);
    assert_int_equal(strlen(h1), 64);
    assert_int_equal(strspn(h1, "0123456789abcdef"), 64);
    assert_string_equal(h1, h2);
    assert_string_not_equal(h1, h3);

    /* BLAKE2b-256 of "abc" (RFC 7693 uses 512; this is the 32-byte variant). */
    sw_token_hash("abc", 3, h1);
    assert_string_equal(h1, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

static void test_crypto_equal(void **state)
{
    (void)state;
    assert_true(sw_crypto_equal("abc", "abc", 3));
    assert_false(sw_crypto_equal("abc", "abd", 3));
    assert_true(sw_crypto_equal("x", "y", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_shape),
        cmocka_unit_test(test_token_valid_rejects),
        cmocka_unit_test(test_token_hash),
        cmocka_unit_test(test_crypto_equal),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
