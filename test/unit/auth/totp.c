/* Tests for src/auth/totp.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "slipway/crypto.h"

static const unsigned char rfc_secret[] = "12345678901234567890";
#define RFC_SECRET_LEN 20

static void test_rfc6238_sha1_vectors(void **state)
{
    (void)state;
    /* RFC 6238 Appendix B, SHA-1: the low six digits of the eight-digit codes. */
    static const struct {
        uint64_t time;
        const char *code;
    } v[] = {
        {59, "287082"},         {1111111109, "081804"}, {1111111111, "050471"},
        {1234567890, "005924"}, {2000000000, "279037"}, {20000000000ull, "353130"},
    };
    char out[7];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        sw_totp_code(rfc_secret, RFC_SECRET_LEN, v[i].time / SW_TOTP_STEP, out);
        assert_string_equal(out, v[i].code);
        assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, v[i].code, v[i].time, 0, 0),
                         v[i].time / SW_TOTP_STEP);
    }
}

static void test_verify_window_and_replay(void **state)
{
    (void)state;
    const uint64_t t = 1111111111, c = t / SW_TOTP_STEP;
    char prev[7], next[7], far[7];
    sw_totp_code(rfc_secret, RFC_SECRET_LEN, c - 1, prev);
    sw_totp_code(rfc_secret, RFC_SECRET_LEN, c + 1, next);
    sw_totp_code(rfc_secret, RFC_SECRET_LEN, c + 3, far);

    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, prev, t, 1, 0), c - 1);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, next, t, 1, 0), c + 1);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, prev, t, 0, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, far, t, 1, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, far, t, 3, 0), c + 3);

    /* Once a counter is used, that code and every earlier one are refused. */
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, "050471", t, 1, c), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, prev, t, 1, c), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, next, t, 1, c), c + 1);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, "050471", t, 1, c - 1), c);
}

static void test_verify_rejects_bad_codes(void **state)
{
    (void)state;
    const uint64_t t = 1111111111;
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, "50471", t, 1, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, "0504710", t, 1, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, "05047a", t, 1, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, " 50471", t, 1, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, "", t, 1, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, NULL, t, 1, 0), 0);
    assert_int_equal(sw_totp_verify(rfc_secret, RFC_SECRET_LEN, "050472", t, 1, 0), 0);
    /* Another secret does not produce the same code. */
    assert_int_equal(
        sw_totp_verify((const unsigned char *)"abcdefghijklmnopqrst", 20, "050471", t, 0, 0), 0);
}

static void test_base32_rfc4648_vectors(void **state)
{
    (void)state;
    static const char *v[][2] = {
        {"", ""},
        {"f", "MY"},
        {"fo", "MZXQ"},
        {"foo", "MZXW6"},
        {"foob", "MZXW6YQ"},
        {"fooba", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        sw_buf_t b = SW_BUF_INIT;
        sw_base32_encode((const unsigned char *)v[i][0], strlen(v[i][0]), &b);
        assert_string_equal(b.base, v[i][1]);
        sw_buf_reset(&b);
        assert_int_equal(sw_base32_decode(v[i][1], strlen(v[i][1]), &b), 0);
        assert_int_equal(b.len, strlen(v[i][0]));
        assert_memory_equal(b.base, v[i][0], b.len);
        sw_buf_free(&b);
    }
}

static void test_base32_decode_leniency_and_errors(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    const char padded[] = "mzxw 6ytb oi======";
    assert_int_equal(sw_base32_decode(padded, strlen(padded), &b), 0);
    assert_string_equal(b.base, "foobar");

    sw_buf_reset(&b);
    sw_buf_append_cstr(&b, "keep");
    assert_int_equal(sw_base32_decode("MZXW1", 5, &b), -EINVAL); /* '1' is not base32 */
    assert_int_equal(sw_base32_decode("MZX-", 4, &b), -EINVAL);
    assert_int_equal(sw_base32_decode("M", 1, &b), -EINVAL); /* truncated */
    assert_int_equal(sw_base32_decode("MZX", 3, &b), -EINVAL);
    assert_string_equal(b.base, "keep"); /* untouched on failure */

    char big[1100];
    memset(big, 'A', sizeof(big));
    assert_int_equal(sw_base32_decode(big, sizeof(big), &b), -EINVAL);
    assert_int_equal(sw_base32_decode(big, 1024, &b), 0);
    sw_buf_free(&b);
}

static void test_base32_round_trip(void **state)
{
    (void)state;
    unsigned char data[SW_TOTP_SECRET_BYTES + 7];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(data); n++) {
        sw_buf_t enc = SW_BUF_INIT, dec = SW_BUF_INIT;
        sw_base32_encode(data, n, &enc);
        assert_null(strchr(enc.base, '='));
        assert_int_equal(sw_base32_decode(enc.base, enc.len, &dec), 0);
        assert_int_equal(dec.len, n);
        if (n)
            assert_memory_equal(dec.base, data, n);
        sw_buf_free(&enc);
        sw_buf_free(&dec);
    }
}

static void test_otpauth_url(void **state)
{
    (void)state;
    sw_buf_t b = SW_BUF_INIT;
    sw_totp_url("Slipway", "alice@example.com", "GEZDGNBVGY3TQOJQ", &b);
    assert_string_equal(b.base, "otpauth://totp/Slipway:alice%40example.com?secret=GEZDGNBVGY3TQOJQ"
                                "&issuer=Slipway&algorithm=SHA1&digits=6&period=30");
    sw_buf_reset(&b);
    sw_totp_url("Acme Co:prod", "bob+x/y?&=~é", "MZXW6", &b);
    assert_string_equal(b.base, "otpauth://totp/Acme%20Co%3Aprod:bob%2Bx%2Fy%3F%26%3D~%C3%A9"
                                "?secret=MZXW6&issuer=Acme%20Co%3Aprod&algorithm=SHA1&digits=6"
                                "&period=30");
    sw_buf_free(&b);
}

static void test_sealed_secret(void **state)
{
    (void)state;
    sw_secretbox_t box;
    char err[128];
    assert_int_equal(sw_crypto_init(), 0);
    assert_int_equal(sw_secretbox_load(&box,
                                       "000102030405060708090a0b0c0d0e0f"
                                       "101112131415161718191a1b1c1d1e1f",
                                       NULL, err, sizeof(err)),
                     0);
    sw_buf_t sealed = SW_BUF_INIT;
    sw_totp_seal(&box, "u1", rfc_secret, RFC_SECRET_LEN, &sealed);
    /* RFC 6238 at T = 59: counter 1, code 287082 */
    assert_int_equal(sw_totp_check_sealed(&box, "u1", sealed.base, 0, "287082", 59), 1);
    assert_int_equal(sw_totp_check_sealed(&box, "u1", sealed.base, 1, "287082", 59), 0);
    assert_int_equal(sw_totp_check_sealed(&box, "u1", sealed.base, 0, "000000", 59), 0);
    /* bound to its user; no secret, no match */
    assert_int_equal(sw_totp_check_sealed(&box, "u2", sealed.base, 0, "287082", 59), 0);
    assert_int_equal(sw_totp_check_sealed(&box, "u1", NULL, 0, "287082", 59), 0);
    sw_buf_free(&sealed);
    sw_secretbox_clear(&box);
}

static void test_recovery_hash(void **state)
{
    (void)state;
    char a[SW_TOKEN_HASH_HEX], b[SW_TOKEN_HASH_HEX], c[SW_TOKEN_HASH_HEX];
    sw_totp_recovery_hash("k3m9q-x7p2a", a);
    sw_totp_recovery_hash(" K3M9Q X7P2A-", b);
    sw_token_hash("k3m9qx7p2a", 10, c);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    sw_totp_recovery_hash("k3m9q-x7p2b", b);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc6238_sha1_vectors),
        cmocka_unit_test(test_verify_window_and_replay),
        cmocka_unit_test(test_verify_rejects_bad_codes),
        cmocka_unit_test(test_base32_rfc4648_vectors),
        cmocka_unit_test(test_base32_decode_leniency_and_errors),
        cmocka_unit_test(test_base32_round_trip),
        cmocka_unit_test(test_otpauth_url),
        cmocka_unit_test(test_sealed_secret),
        cmocka_unit_test(test_recovery_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
