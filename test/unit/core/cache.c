/* Tests for src/core/cache.c: lookups, the generation that refuses answers read before an
 * invalidation, least-recently-used eviction within both bounds, and the counters. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "slipway/cache.h"

/* The per-entry overhead the cache counts, found by storing one entry. */
static size_t overhead(void)
{
    sw_cache_t *c = sw_cache_new(10, 1 << 20);
    sw_cache_stats_t st;
    assert_int_equal(sw_cache_put(c, sw_cache_generation(c), SW_IOV_LIT(""), SW_IOV_LIT("")), 0);
    sw_cache_stats(c, &st);
    sw_cache_free(c);
    return st.bytes;
}

static void assert_value(sw_cache_t *c, const char *key, const char *want)
{
    sw_iov_t v = {(char *)"unset", 5};
    if (!want) {
        assert_false(sw_cache_get(c, sw_iov_from_cstr(key), &v));
        return;
    }
    assert_true(sw_cache_get(c, sw_iov_from_cstr(key), &v));
    assert_int_equal(v.len, strlen(want));
    assert_memory_equal(v.base, want, v.len);
}

static int put(sw_cache_t *c, const char *key, const char *value)
{
    return sw_cache_put(c, sw_cache_generation(c), sw_iov_from_cstr(key), sw_iov_from_cstr(value));
}

static void test_get_put_replace(void **state)
{
    (void)state;
    sw_cache_t *c = sw_cache_new(100, 1 << 20);
    sw_cache_stats_t st;

    assert_value(c, "u1 3 app", NULL);
    assert_int_equal(put(c, "u1 3 app", "{\"name\":\"a\"}"), 0);
    assert_value(c, "u1 3 app", "{\"name\":\"a\"}");
    /* keys differ by any byte: another user, another kind */
    assert_value(c, "u2 3 app", NULL);
    assert_value(c, "u1 2 app", NULL);
    assert_int_equal(put(c, "u1 3 app", "{\"name\":\"b\"}"), 0);
    assert_value(c, "u1 3 app", "{\"name\":\"b\"}");
    /* values are bytes: an embedded NUL and the empty value survive */
    assert_int_equal(
        sw_cache_put(c, sw_cache_generation(c), SW_IOV_LIT("bin"), (sw_iov_t){(char *)"a\0b", 3}),
        0);
    sw_iov_t v;
    assert_true(sw_cache_get(c, SW_IOV_LIT("bin"), &v));
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.base, "a\0b", 3);
    assert_int_equal(put(c, "empty", ""), 0);
    assert_value(c, "empty", "");

    sw_cache_stats(c, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.stores, 4);
    assert_int_equal(st.hits, 4);
    assert_int_equal(st.misses, 3);
    assert_int_equal(st.bytes, 3 * overhead() + strlen("u1 3 app") + strlen("{\"name\":\"b\"}") +
                                   strlen("bin") + 3 + strlen("empty"));
    sw_cache_free(c);
}

/* A lookup that started before an invalidation may have read the old rows: its answer is
 * refused, while one that started after is stored. */
static void test_generation_refuses_answers_read_before_invalidation(void **state)
{
    (void)state;
    sw_cache_t *c = sw_cache_new(100, 1 << 20);
    sw_cache_stats_t st;

    uint64_t before = sw_cache_generation(c);
    assert_int_equal(put(c, "other", "x"), 0);
    sw_cache_invalidate(c);
    assert_int_not_equal(sw_cache_generation(c), before);
    assert_value(c, "other", NULL); /* emptied */
    assert_int_equal(sw_cache_put(c, before, SW_IOV_LIT("k"), SW_IOV_LIT("old")), -ESTALE);
    assert_value(c, "k", NULL);

    uint64_t after = sw_cache_generation(c);
    assert_int_equal(sw_cache_put(c, after, SW_IOV_LIT("k"), SW_IOV_LIT("new")), 0);
    assert_value(c, "k", "new");

    /* every invalidation counts and moves the generation, even of an empty cache */
    sw_cache_invalidate(c);
    sw_cache_invalidate(c);
    assert_int_equal(sw_cache_put(c, after, SW_IOV_LIT("k"), SW_IOV_LIT("new")), -ESTALE);
    sw_cache_stats(c, &st);
    assert_int_equal(st.invalidations, 3);
    assert_int_equal(st.stale, 2);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    sw_cache_free(c);
}

static void test_entry_bound_evicts_least_recently_used(void **state)
{
    (void)state;
    sw_cache_t *c = sw_cache_new(3, 1 << 20);
    sw_cache_stats_t st;

    assert_int_equal(put(c, "a", "1"), 0);
    assert_int_equal(put(c, "b", "2"), 0);
    assert_int_equal(put(c, "c", "3"), 0);
    assert_value(c, "a", "1"); /* a is now the most recently used; b the least */
    assert_int_equal(put(c, "d", "4"), 0);
    assert_value(c, "b", NULL);
    assert_value(c, "a", "1");
    assert_value(c, "c", "3");
    assert_value(c, "d", "4");
    /* replacing a key does not evict another */
    assert_int_equal(put(c, "c", "33"), 0);
    assert_value(c, "a", "1");
    assert_value(c, "d", "4");
    sw_cache_stats(c, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.evictions, 1);
    sw_cache_free(c);
}

static void test_byte_bound_evicts_and_refuses_oversized(void **state)
{
    (void)state;
    size_t per = overhead() + 1 + 100; /* a one-byte key and a 100-byte value */
    /* room for exactly four such entries; one may take an eighth of the budget */
    size_t budget = 8 * per;
    sw_cache_t *c = sw_cache_new(1000, budget);
    sw_cache_stats_t st;
    char value[101], big[1000];
    memset(value, 'v', 100);
    value[100] = '\0';
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    for (int i = 0; i < 8; i++) {
        char key[2] = {(char)('a' + i), '\0'};
        assert_int_equal(put(c, key, value), 0);
    }
    sw_cache_stats(c, &st);
    assert_int_equal(st.entries, 8);
    assert_int_equal(st.bytes, budget);
    assert_int_equal(st.evictions, 0);

    /* one more pushes out the oldest, and the total never passes the budget */
    assert_int_equal(put(c, "i", value), 0);
    sw_cache_stats(c, &st);
    assert_true(st.bytes <= budget);
    assert_int_equal(st.entries, 8);
    assert_int_equal(st.evictions, 1);
    assert_value(c, "a", NULL);
    assert_value(c, "b", value);

    /* too large for one entry: refused, nothing else lost */
    assert_int_equal(put(c, "z", big), -E2BIG);
    assert_value(c, "z", NULL);
    sw_cache_stats(c, &st);
    assert_int_equal(st.entries, 8);
    sw_cache_free(c);
}

static void test_many_keys_and_collisions(void **state)
{
    (void)state;
    /* more keys than buckets: chains hold several entries each */
    sw_cache_t *c = sw_cache_new(5000, 16u << 20);
    char key[64], val[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "user-%d 3 app-%d", i % 7, i);
        snprintf(val, sizeof(val), "value-%d", i);
        assert_int_equal(put(c, key, val), 0);
    }
    for (int i = 0; i < 5000; i += 13) {
        snprintf(key, sizeof(key), "user-%d 3 app-%d", i % 7, i);
        snprintf(val, sizeof(val), "value-%d", i);
        assert_value(c, key, val);
    }
    /* a prefix or an extension of a key is another key */
    assert_value(c, "user-0 3 app-", NULL);
    assert_value(c, "user-0 3 app-00", NULL);
    sw_cache_invalidate(c);
    sw_cache_stats_t st;
    sw_cache_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    sw_cache_free(c);
    sw_cache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put_replace),
        cmocka_unit_test(test_generation_refuses_answers_read_before_invalidation),
        cmocka_unit_test(test_entry_bound_evicts_least_recently_used),
        cmocka_unit_test(test_byte_bound_evicts_and_refuses_oversized),
        cmocka_unit_test(test_many_keys_and_collisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
