/* Tests for src/runtime/limits.c: the app's resources (Kubernetes quantities, as the API
 * accepts them) in the units the runtimes enforce. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>

#include "slipway/runtime.h"

static void test_cpu(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(sw_runtime_cpu_milli("500m", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(sw_runtime_cpu_milli("2", &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(sw_runtime_cpu_milli("0.5", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(sw_runtime_cpu_milli("1.25", &v), 0);
    assert_int_equal(v, 1250);
    assert_int_equal(sw_runtime_cpu_milli("", &v), -ENOENT);
    assert_int_equal(sw_runtime_cpu_milli(NULL, &v), -ENOENT);
    assert_int_equal(sw_runtime_cpu_milli("0", &v), -EINVAL);
    assert_int_equal(sw_runtime_cpu_milli("0m", &v), -EINVAL);
    assert_int_equal(sw_runtime_cpu_milli("m", &v), -EINVAL);
    assert_int_equal(sw_runtime_cpu_milli("1x", &v), -EINVAL);
}

static void test_memory(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(sw_runtime_memory_bytes("512Mi", &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(sw_runtime_memory_bytes("1Gi", &v), 0);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(sw_runtime_memory_bytes("100M", &v), 0);
    assert_int_equal(v, 100000000ull);
    assert_int_equal(sw_runtime_memory_bytes("1048576", &v), 0);
    assert_int_equal(v, 1048576ull);
    assert_int_equal(sw_runtime_memory_bytes("", &v), -ENOENT);
    assert_int_equal(sw_runtime_memory_bytes("0Mi", &v), -EINVAL);
    assert_int_equal(sw_runtime_memory_bytes("12Xi", &v), -EINVAL);
    assert_int_equal(sw_runtime_memory_bytes("Mi", &v), -EINVAL);
    assert_int_equal(sw_runtime_memory_bytes("999999999999999Ti", &v), -ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
