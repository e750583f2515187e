/* Tests for the HMAC-SHA256 in src/auth/crypto.c (RFC 4231 vectors, GitHub's example). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "slipway/crypto.h"

static int setup(void **state)
{
    (void)state;
    return sw_crypto_init();
}

static void test_rfc4231(void **state)
{
    (void)state;
    char hex[SW_HMAC_SHA256_HEX];
    unsigned char key[20];
    memset(key, 0x0b, sizeof(key));
    sw_hmac_sha256_hex(key, sizeof(key), "Hi There", 8, hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    sw_hmac_sha256_hex("Jefe", 4, "what do ya want for nothing?", 28, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_github_example(void **state)
{
    (void)state;
    const char *secret = "It's a Secret to Everybody";
    char hex[SW_HMAC_SHA256_HEX];
    sw_hmac_sha256_hex(secret, strlen(secret), "Hello, World!", 13, hex);
    assert_string_equal(hex, "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

static void test_binary_matches_hex(void **state)
{
    (void)state;
    unsigned char mac[SW_HMAC_SHA256_BYTES];
    char hex[SW_HMAC_SHA256_HEX], again[SW_HMAC_SHA256_HEX];
    sw_hmac_sha256("k", 1, "body", 4, mac);
    sw_hmac_sha256_hex("k", 1, "body", 4, hex);
    for (size_t i = 0; i < sizeof(mac); i++)
        snprintf(again + 2 * i, 3, "%02x", mac[i]);
    assert_string_equal(hex, again);
}

static void test_empty_body(void **state)
{
    (void)state;
    char a[SW_HMAC_SHA256_HEX], b[SW_HMAC_SHA256_HEX], c[SW_HMAC_SHA256_HEX];
    /* NULL with length 0 is the empty message, and differs from a one-byte one */
    sw_hmac_sha256_hex("key", 3, NULL, 0, a);
    sw_hmac_sha256_hex("key", 3, "", 0, b);
    sw_hmac_sha256_hex("key", 3, "x", 1, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), 64);
    /* RFC 2104 of the empty message under "key" */
    assert_string_equal(a, "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231),
        cmocka_unit_test(test_github_example),
        cmocka_unit_test(test_binary_matches_hex),
        cmocka_unit_test(test_empty_body),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
