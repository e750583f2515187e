/* Tests for src/auth/password.c: every call goes through a real loop and its threadpool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <uv.h>

#include "slipway/crypto.h"

typedef struct {
    int calls;
    int status;
    bool match;
    char hash[256];
} result_t;

static int setup(void **state)
{
    (void)state;
    return sw_crypto_init();
}

static void on_hash(int status, const char *hash, void *payload)
{
    result_t *r = payload;
    r->calls++;
    r->status = status;
    if (status == 0) {
        assert_non_null(hash);
        assert_true(strlen(hash) < sizeof(r->hash));
        strcpy(r->hash, hash);
    }
}

static void on_verify(int status, bool match, void *payload)
{
    result_t *r = payload;
    r->calls++;
    r->status = status;
    r->match = match;
}

static void hash_now(uv_loop_t *loop, const char *pw, result_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(sw_password_hash(loop, pw, strlen(pw), on_hash, r), 0);
    assert_int_equal(r->calls, 0); /* never synchronously */
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->status, 0);
}

static bool verify_now(uv_loop_t *loop, const char *hash, const char *pw)
{
    result_t r = {0};
    assert_int_equal(sw_password_verify(loop, hash, pw, strlen(pw), on_verify, &r), 0);
    assert_int_equal(r.calls, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    return r.match;
}

static void test_hash_and_verify(void **state)
{
    (void)state;
    uv_loop_t loop;
    result_t h, h2;
    assert_int_equal(uv_loop_init(&loop), 0);

    hash_now(&loop, "correct horse battery", &h);
    assert_memory_equal(h.hash, "$argon2id$", 10);
    assert_non_null(strstr(h.hash, "m=19456,t=2,p=1"));
    /* A fresh salt each time. */
    hash_now(&loop, "correct horse battery", &h2);
    assert_string_not_equal(h.hash, h2.hash);

    assert_true(verify_now(&loop, h.hash, "correct horse battery"));
    assert_true(verify_now(&loop, h2.hash, "correct horse battery"));
    assert_false(verify_now(&loop, h.hash, "correct horse batterY"));
    assert_false(verify_now(&loop, h.hash, "correct horse battery "));
    assert_false(verify_now(&loop, h.hash, ""));
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_unknown_or_foreign_hash_never_matches(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_false(verify_now(&loop, NULL, "correct horse battery"));
    assert_false(verify_now(&loop, NULL, ""));
    assert_false(verify_now(&loop, "", "correct horse battery"));
    assert_false(verify_now(&loop, "plaintext-password", "plaintext-password"));
    assert_false(verify_now(&loop, "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
                            "correct horse battery"));
    assert_false(verify_now(&loop, "$argon2id$garbage", "correct horse battery"));

    /* Several unknown-user checks at once race to build the dummy hash; all must agree. */
    result_t r[4] = {{0}};
    for (int i = 0; i < 4; i++)
        assert_int_equal(sw_password_verify(&loop, NULL, "whatever123", 11, on_verify, &r[i]), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 0);
        assert_false(r[i].match);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_length_limits(void **state)
{
    (void)state;
    uv_loop_t loop;
    result_t r = {0};
    char big[SW_PASSWORD_MAX + 2];
    memset(big, 'p', sizeof(big));
    assert_int_equal(uv_loop_init(&loop), 0);

    assert_int_equal(sw_password_hash(&loop, "short", 5, on_hash, &r), -EINVAL);
    assert_int_equal(sw_password_hash(&loop, big, SW_PASSWORD_MIN - 1, on_hash, &r), -EINVAL);
    assert_int_equal(sw_password_hash(&loop, big, SW_PASSWORD_MAX + 1, on_hash, &r), -EINVAL);
    assert_int_equal(sw_password_hash(&loop, NULL, 12, on_hash, &r), -EINVAL);
    assert_int_equal(sw_password_verify(&loop, NULL, big, SW_PASSWORD_MAX + 1, on_verify, &r),
                     -EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 0);

    /* Both ends of the range are accepted, with embedded NULs kept. */
    big[3] = '\0';
    assert_int_equal(sw_password_hash(&loop, big, SW_PASSWORD_MAX, on_hash, &r), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    result_t v = {0};
    assert_int_equal(sw_password_verify(&loop, r.hash, big, SW_PASSWORD_MAX, on_verify, &v), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(v.match);
    v.match = true;
    assert_int_equal(sw_password_verify(&loop, r.hash, big, 3, on_verify, &v), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_false(v.match);

    hash_now(&loop, "0123456789", &r);
    assert_true(verify_now(&loop, r.hash, "0123456789"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_unknown_or_foreign_hash_never_matches),
        cmocka_unit_test(test_length_limits),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
