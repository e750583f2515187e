/* Tests for src/core/ratelimit.c; time is passed in, so no test sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "slipway/ratelimit.h"

static sw_ratelimit_result_t take(sw_ratelimit_t *rl, const char *key, uint32_t cost, uint64_t now)
{
    sw_ratelimit_result_t r;
    memset(&r, 0xa5, sizeof(r));
    sw_ratelimit_take(rl, key, cost, now, &r);
    return r;
}

static sw_ratelimit_result_t peek(sw_ratelimit_t *rl, const char *key, uint64_t now)
{
    sw_ratelimit_result_t r;
    memset(&r, 0xa5, sizeof(r));
    sw_ratelimit_peek(rl, key, now, &r);
    return r;
}

static void test_burst_then_refusal(void **state)
{
    (void)state;
    /* One token a second, bursts of three. */
    sw_ratelimit_t *rl = sw_ratelimit_new(1, 1000, 3, 100);
    sw_ratelimit_result_t r;
    assert_non_null(rl);

    for (uint32_t i = 0; i < 3; i++) {
        r = take(rl, "10.0.0.1", 1, 5000);
        assert_true(r.allowed);
        assert_int_equal(r.limit, 3);
        assert_int_equal(r.remaining, 2 - i);
        assert_int_equal(r.reset_ms, (i + 1) * 1000);
        assert_int_equal(r.retry_after_ms, 0);
        assert_int_equal(r.window_ms, 3000);
    }
    r = take(rl, "10.0.0.1", 1, 5000);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_after_ms, 1000);
    assert_int_equal(r.reset_ms, 3000);

    /* Other keys are unaffected. */
    r = take(rl, "10.0.0.2", 1, 5000);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);

    /* A refused take costs nothing: the wait shrinks as time passes. */
    r = take(rl, "10.0.0.1", 1, 5400);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 600);
    r = take(rl, "10.0.0.1", 1, 5999);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 1);
    r = take(rl, "10.0.0.1", 1, 6000);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    sw_ratelimit_free(rl);
}

static void test_fractional_refill(void **state)
{
    (void)state;
    /* Two tokens a second: half a token every 250 ms. */
    sw_ratelimit_t *rl = sw_ratelimit_new(2, 1000, 2, 10);
    sw_ratelimit_result_t r;
    assert_true(take(rl, "k", 2, 0).allowed);

    r = peek(rl, "k", 250);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_after_ms, 250);
    assert_int_equal(r.reset_ms, 750);
    assert_int_equal(r.window_ms, 1000);
    /* Many small steps add up exactly. */
    for (uint64_t t = 251; t < 500; t++)
        assert_false(take(rl, "k", 1, t).allowed);
    r = take(rl, "k", 1, 500);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.reset_ms, 1000);

    /* Refill stops at the burst however long the key was idle. */
    r = peek(rl, "k", 1000000);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    assert_int_equal(r.reset_ms, 0);
    sw_ratelimit_free(rl);
}

static void test_cost_and_retry_after(void **state)
{
    (void)state;
    sw_ratelimit_t *rl = sw_ratelimit_new(1, 100, 5, 10); /* ten a second */
    sw_ratelimit_result_t r;
    assert_true(take(rl, "k", 4, 0).allowed);
    r = take(rl, "k", 3, 0);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 1);
    assert_int_equal(r.retry_after_ms, 200); /* until three are there, not one */
    r = take(rl, "k", 3, 200);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    /* Peek asks about one token. */
    r = peek(rl, "k", 250);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 50);
    sw_ratelimit_free(rl);
}

static void test_clock_going_back_adds_nothing(void **state)
{
    (void)state;
    sw_ratelimit_t *rl = sw_ratelimit_new(1, 1000, 1, 10);
    assert_true(take(rl, "k", 1, 10000).allowed);
    assert_false(take(rl, "k", 1, 9000).allowed);
    assert_false(take(rl, "k", 1, 10999).allowed);
    assert_true(take(rl, "k", 1, 11000).allowed);
    sw_ratelimit_free(rl);
}

static void drain(sw_ratelimit_t *rl, const char *key, uint64_t now)
{
    while (take(rl, key, 1, now).allowed)
        ;
}

static void test_eviction_is_lru_and_bounded(void **state)
{
    (void)state;
    sw_ratelimit_t *rl = sw_ratelimit_new(1, 60000, 2, 4);
    char key[32];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        drain(rl, key, 0);
    }
    /* Use k0 again so k1 is now the least recently used; peeking does not count as use. */
    assert_false(take(rl, "k0", 1, 1).allowed);
    assert_false(peek(rl, "k1", 1).allowed);
    /* Peeking at an unknown key does not insert it, so nothing is evicted. */
    assert_int_equal(peek(rl, "new", 1).remaining, 2);
    assert_false(peek(rl, "k1", 1).allowed);

    drain(rl, "k4", 2); /* evicts k1 */
    assert_int_equal(peek(rl, "k1", 2).remaining, 2);
    assert_false(peek(rl, "k0", 2).allowed);
    assert_false(peek(rl, "k2", 2).allowed);
    assert_false(peek(rl, "k3", 2).allowed);
    assert_false(peek(rl, "k4", 2).allowed);

    /* An evicted key starts full when it comes back. */
    sw_ratelimit_result_t r = take(rl, "k1", 1, 3);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 1);
    /* Use order is now k2, k3, k0, k4, k1: k1 coming back pushed out k2. */
    assert_int_equal(peek(rl, "k2", 3).remaining, 2);
    assert_false(peek(rl, "k0", 3).allowed);
    assert_false(peek(rl, "k3", 3).allowed);

    /* Many distinct keys: the table stays at four (ASan/LSan would see a leak otherwise) and
     * the bucket array grows without losing anyone. */
    sw_ratelimit_t *big = sw_ratelimit_new(1, 60000, 1, 1000);
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "client-%d", i);
        assert_true(take(big, key, 1, 10).allowed);
        assert_true(take(rl, key, 1, 10).allowed);
    }
    for (int i = 19000; i < 20000; i++) {
        snprintf(key, sizeof(key), "client-%d", i);
        assert_false(peek(big, key, 10).allowed);
    }
    snprintf(key, sizeof(key), "client-%d", 18999);
    assert_true(peek(big, key, 10).allowed);
    sw_ratelimit_free(big);
    sw_ratelimit_free(rl);
}

static void test_reset_forgets_key(void **state)
{
    (void)state;
    sw_ratelimit_t *rl = sw_ratelimit_new(1, 60000, 3, 10);
    drain(rl, "alice@example.com", 0);
    drain(rl, "bob@example.com", 0);
    sw_ratelimit_reset(rl, "alice@example.com");
    sw_ratelimit_reset(rl, "never-seen");
    assert_int_equal(peek(rl, "alice@example.com", 0).remaining, 3);
    assert_false(peek(rl, "bob@example.com", 0).allowed);
    assert_true(take(rl, "alice@example.com", 1, 0).allowed);
    sw_ratelimit_free(rl);
}

static void test_long_keys_are_cut(void **state)
{
    (void)state;
    sw_ratelimit_t *rl = sw_ratelimit_new(1, 60000, 1, 10);
    char a[400], b[400];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[300] = 'y';
    assert_true(take(rl, a, 1, 0).allowed);
    /* They differ only past the 256-byte cap, so they share a bucket. */
    assert_false(take(rl, b, 1, 0).allowed);
    b[100] = 'y';
    assert_true(take(rl, b, 1, 0).allowed);
    assert_true(take(rl, "", 1, 0).allowed);
    sw_ratelimit_free(rl);
}

static void test_bad_parameters(void **state)
{
    (void)state;
    assert_null(sw_ratelimit_new(0, 1000, 1, 1));
    assert_null(sw_ratelimit_new(1, 0, 1, 1));
    assert_null(sw_ratelimit_new(1, 1000, 0, 1));
    assert_null(sw_ratelimit_new(1, 1000, 1, 0));
    sw_ratelimit_free(NULL);

    /* The largest allowed bucket does not overflow. */
    sw_ratelimit_t *rl = sw_ratelimit_new(UINT32_MAX, 1ull << 31, UINT32_MAX, 1);
    assert_non_null(rl);
    sw_ratelimit_result_t r = take(rl, "k", UINT32_MAX, 0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    r = take(rl, "k", UINT32_MAX, UINT64_MAX / 2);
    assert_true(r.allowed);
    sw_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refusal),
        cmocka_unit_test(test_fractional_refill),
        cmocka_unit_test(test_cost_and_retry_after),
        cmocka_unit_test(test_clock_going_back_adds_nothing),
        cmocka_unit_test(test_eviction_is_lru_and_bounded),
        cmocka_unit_test(test_reset_forgets_key),
        cmocka_unit_test(test_long_keys_are_cut),
        cmocka_unit_test(test_bad_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
