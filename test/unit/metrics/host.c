/* src/metrics/host.c: readings of this machine, rates over at least a second, and the JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <time.h>
#include <jansson.h>
#include <string.h>

#include "slipway/host.h"

static void test_readings(void **state)
{
    (void)state;
    sw_host_sampler_t s = SW_HOST_SAMPLER_INIT;
    sw_host_stats_t st;
    sw_host_sample(&s, 10000, "/", &st);
    assert_true(st.memory_total_bytes > 0);
    assert_true(st.memory_available_bytes <= st.memory_total_bytes);
    assert_true(st.disk_total_bytes > 0 && st.disk_free_bytes <= st.disk_total_bytes);
    assert_true(st.load[0] >= 0 && st.load[1] >= 0 && st.load[2] >= 0);
    /* No sample before: no rate yet. */
    assert_true(st.cpu_percent == 0 && st.rx_bytes_per_s == 0 && st.tx_bytes_per_s == 0);
    assert_true(s.have);
    assert_int_equal(s.at_ms, 10000);

    sw_host_sample(&s, 10000, "/nonexistent/sw-host", &st);
    assert_true(st.disk_total_bytes == 0 && st.disk_free_bytes == 0);
}

static void test_rates_span_a_second(void **state)
{
    (void)state;
    sw_host_sampler_t s = SW_HOST_SAMPLER_INIT;
    sw_host_stats_t st;
    sw_host_sample(&s, 1000, "/", &st);
    unsigned long long total = s.cpu_total;
    /* Sooner than a second: the previous sample stays, and its rates answer. */
    s.rates.cpu_percent = 42.5;
    s.rates.rx_bytes_per_s = 7;
    sw_host_sample(&s, 1999, "/", &st);
    assert_int_equal(s.at_ms, 1000);
    assert_true(st.cpu_percent == 42.5 && st.rx_bytes_per_s == 7);
    assert_true(st.memory_total_bytes > 0); /* the levels are read every time */
    /* A second on: a new rate from the new reading. The kernel's counters move in ticks
     * (10 ms); until one has passed a sample may read the same total, so wait for it (at
     * most 5 s), each attempt a second after the last. */
    uint64_t now = 2000;
    sw_host_sample(&s, now, "/", &st);
    for (int i = 0; s.cpu_total == total && i < 1000; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
        sw_host_sample(&s, now += 1000, "/", &st);
    }
    assert_int_equal(s.at_ms, now);
    assert_true(s.cpu_total > total); /* the clock ticked: the rate is a new one */
    assert_true(st.cpu_percent >= 0 && st.cpu_percent <= 100);
    assert_true(s.rates.cpu_percent == st.cpu_percent);
}

static void test_json_members(void **state)
{
    (void)state;
    sw_host_stats_t st = {.cpu_percent = 12.34,
                          .load = {0.5, 0.25, 1},
                          .memory_total_bytes = 2048,
                          .memory_available_bytes = 1024,
                          .disk_total_bytes = 99,
                          .disk_free_bytes = 9,
                          .rx_bytes_per_s = 1.6,
                          .tx_bytes_per_s = 0};
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_append_char(&b, '{');
    sw_host_stats_json_members(&st, "/srv/\"odd\"", &b);
    sw_buf_append_char(&b, '}');
    json_error_t err;
    json_t *v = json_loads(b.base, 0, &err);
    assert_non_null(v);
    assert_true(json_real_value(json_object_get(v, "cpu_percent")) == 12.3);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(v, "memory"), "available_bytes")), 1024);
    assert_int_equal(json_array_size(json_object_get(v, "load")), 3);
    json_t *disk = json_object_get(v, "disk");
    assert_string_equal(json_string_value(json_object_get(disk, "path")), "/srv/\"odd\"");
    assert_int_equal(json_integer_value(json_object_get(disk, "free_bytes")), 9);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(v, "network"), "rx_bytes_per_s")), 2);
    json_decref(v);
    sw_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readings),
        cmocka_unit_test(test_rates_span_a_second),
        cmocka_unit_test(test_json_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
