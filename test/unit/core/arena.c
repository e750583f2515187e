/* Tests for src/core/arena.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <string.h>

#include "slipway/arena.h"

static void test_alignment_and_independence(void **state)
{
    (void)state;
    sw_arena_t a = SW_ARENA_INIT;
    char *p[100];
    for (int i = 0; i < 100; i++) {
        p[i] = sw_arena_alloc(&a, (size_t)i + 1);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], i, (size_t)i + 1);
    }
    /* Writing one allocation never touched another. */
    for (int i = 0; i < 100; i++)
        for (int k = 0; k <= i; k++)
            assert_int_equal((unsigned char)p[i][k], i);
    sw_arena_free(&a);
}

static void test_large_blocks_keep_current_chunk(void **state)
{
    (void)state;
    sw_arena_t a = SW_ARENA_INIT;
    char *small1 = sw_arena_alloc(&a, 16);
    char *big = sw_arena_alloc(&a, 100000);
    memset(big, 0xab, 100000);
    char *small2 = sw_arena_alloc(&a, 16);
    /* The small allocations still share the first chunk. */
    assert_ptr_equal(small2, small1 + 16);
    assert_int_equal(a.total, 100032);
    sw_arena_free(&a);
}

static void test_strings(void **state)
{
    (void)state;
    sw_arena_t a = SW_ARENA_INIT;
    assert_string_equal(sw_arena_strndup(&a, "abcdef", 3), "abc");
    assert_string_equal(sw_arena_printf(&a, "%s-%d", "x", 7), "x-7");
    sw_iov_t v = sw_arena_iovdup(&a, SW_IOV_LIT("slice"));
    assert_int_equal(v.len, 5);
    assert_string_equal(v.base, "slice");
    sw_arena_free(&a);
}

static void test_reset_reuses_first_chunk(void **state)
{
    (void)state;
    sw_arena_t a = SW_ARENA_INIT;
    for (int i = 0; i < 50; i++)
        sw_arena_alloc(&a, 1000);
    sw_arena_reset(&a);
    assert_int_equal(a.total, 0);
    assert_non_null(a.chunks);
    char *p = sw_arena_alloc(&a, 10);
    assert_ptr_equal(p, a.chunks == NULL ? NULL : (char *)a.pos - 16);
    sw_arena_free(&a);
    assert_null(a.chunks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_independence),
        cmocka_unit_test(test_large_blocks_keep_current_chunk),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_reset_reuses_first_chunk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
