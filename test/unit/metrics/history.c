/* src/metrics/history.c: the ring of samples not yet stored (batches, acks, wrap-around) and
 * the history query's time range and step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "slipway/history.h"

static sw_history_sample_t sample(uint64_t at_ms)
{
    sw_history_sample_t s = {.at_ms = at_ms};
    for (size_t i = 0; i < SW_HISTORY_VALUES_MAX; i++)
        s.v[i] = (double)at_ms * 10 + (double)i;
    return s;
}

/* The batch's JSON, decoded; the at_ms of each sample in it appended to ats. */
static json_t *batch(sw_history_ring_t *r, size_t max, uint64_t *upto, uint64_t *ats, size_t *n)
{
    sw_buf_t b = SW_BUF_INIT;
    *upto = sw_history_ring_batch(r, max, &b);
    json_error_t err;
    json_t *j = json_loads(b.base, 0, &err);
    sw_buf_free(&b);
    assert_non_null(j);
    assert_true(json_is_array(j));
    *n = json_array_size(j);
    for (size_t i = 0; i < *n; i++) {
        json_t *row = json_array_get(j, i);
        assert_int_equal(json_array_size(row), 1 + SW_HISTORY_VALUES_MAX);
        ats[i] = (uint64_t)json_integer_value(json_array_get(row, 0));
    }
    return j;
}

static void test_ring_batches_and_acks(void **state)
{
    (void)state;
    sw_history_ring_t r;
    sw_history_ring_init(&r, 8);
    uint64_t ats[16], upto;
    size_t n;
    json_t *j = batch(&r, 8, &upto, ats, &n);
    assert_int_equal(n, 0); /* nothing yet: [] */
    json_decref(j);

    for (uint64_t at = 1; at <= 5; at++) {
        sw_history_sample_t s = sample(at);
        sw_history_ring_push(&r, &s);
    }
    assert_int_equal(sw_history_ring_pending(&r), 5);
    /* at most max, oldest first, every value as written */
    j = batch(&r, 2, &upto, ats, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ats[0], 1);
    assert_int_equal(ats[1], 2);
    json_t *row = json_array_get(j, 1);
    for (size_t i = 0; i < SW_HISTORY_VALUES_MAX; i++)
        assert_true(json_number_value(json_array_get(row, i + 1)) == 20.0 + (double)i);
    json_decref(j);
    assert_int_equal(sw_history_ring_pending(&r), 5); /* a batch is not an ack */
    sw_history_ring_ack(&r, upto);
    assert_int_equal(sw_history_ring_pending(&r), 3);
    j = batch(&r, 8, &upto, ats, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ats[0], 3);
    assert_int_equal(ats[2], 5);
    json_decref(j);
    sw_history_ring_ack(&r, upto);
    assert_int_equal(sw_history_ring_pending(&r), 0);
    sw_history_ring_ack(&r, upto); /* a repeated ack changes nothing */
    assert_int_equal(sw_history_ring_pending(&r), 0);
    assert_int_equal(r.dropped, 0);
    sw_history_ring_free(&r);
}

static void test_ring_wraps_and_drops_the_oldest(void **state)
{
    (void)state;
    sw_history_ring_t r;
    sw_history_ring_init(&r, 4);
    uint64_t ats[16], upto;
    size_t n;
    for (uint64_t at = 1; at <= 6; at++) {
        sw_history_sample_t s = sample(at);
        sw_history_ring_push(&r, &s);
    }
    /* a full ring keeps the newest cap samples */
    assert_int_equal(sw_history_ring_pending(&r), 4);
    assert_int_equal(r.dropped, 2);
    json_t *j = batch(&r, 10, &upto, ats, &n);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ats[i], 3 + i);
    json_decref(j);

    /* While that batch is being stored, two more arrive and overwrite two of it: the ack then
     * leaves exactly the two new ones pending. */
    for (uint64_t at = 7; at <= 8; at++) {
        sw_history_sample_t s = sample(at);
        sw_history_ring_push(&r, &s);
    }
    assert_int_equal(r.dropped, 4);
    sw_history_ring_ack(&r, upto);
    assert_int_equal(sw_history_ring_pending(&r), 2);
    j = batch(&r, 10, &upto, ats, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ats[0], 7);
    assert_int_equal(ats[1], 8);
    json_decref(j);
    sw_history_ring_free(&r);
}

static void test_ring_unknown_values_are_null(void **state)
{
    (void)state;
    sw_history_ring_t r;
    sw_history_ring_init(&r, 2);
    sw_history_sample_t s = sample(1);
    s.v[SW_HISTORY_HTTP_CONNECTIONS] = NAN;
    sw_history_ring_push(&r, &s);
    uint64_t ats[2], upto;
    size_t n;
    json_t *j = batch(&r, 2, &upto, ats, &n);
    json_t *row = json_array_get(j, 0);
    assert_true(json_is_null(json_array_get(row, 1 + SW_HISTORY_HTTP_CONNECTIONS)));
    assert_true(json_is_number(json_array_get(row, 1 + SW_HISTORY_CPU_PERCENT)));
    json_decref(j);
    sw_history_ring_free(&r);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint32_t s;
    } ok[] = {{"1s", 1},      {"90s", 90},    {"15m", 900},           {"1h", 3600},
              {"24h", 86400}, {"2d", 172800}, {"49710d", 4294944000u}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint32_t s = 0;
        assert_int_equal(sw_history_duration_parse(ok[i].in, &s), 0);
        assert_int_equal(s, ok[i].s);
    }
    static const char *const bad[] = {"",     "s",   "10",  "10x",         "1hh",    "-1s", "0s",
                                      "1.5h", " 1h", "1h ", "9999999999s", "49711d", "1H",  "0d"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t s = 7;
        assert_int_equal(sw_history_duration_parse(bad[i], &s), -EINVAL);
        assert_int_equal(s, 7); /* untouched on failure */
    }
    uint32_t s;
    assert_int_equal(sw_history_duration_parse(NULL, &s), -EINVAL);
}

static void span_ok(const char *range, const char *step, uint32_t range_s, uint32_t step_s)
{
    sw_history_span_t sp;
    const char *field = NULL;
    char why[200];
    assert_int_equal(sw_history_span(range, step, &sp, &field, why, sizeof(why)), 0);
    assert_int_equal(sp.range_s, range_s);
    assert_int_equal(sp.step_s, step_s);
}

static void span_bad(const char *range, const char *step, const char *want_field,
                     const char *want_why)
{
    sw_history_span_t sp;
    const char *field = NULL;
    char why[200] = "";
    assert_int_equal(sw_history_span(range, step, &sp, &field, why, sizeof(why)), -EINVAL);
    assert_string_equal(field, want_field);
    assert_non_null(strstr(why, want_why));
}

static void test_span(void **state)
{
    (void)state;
    span_ok(NULL, NULL, 3600, 36); /* an hour in about 100 points */
    span_ok("15m", NULL, 900, 9);
    span_ok("90s", NULL, 90, 1); /* never under a second */
    span_ok("24h", "87s", 86400, 87);
    span_ok("1h", "1h", 3600, 3600);
    span_ok("1000s", "1s", 1000, 1); /* exactly 1000 points */
    span_bad("1001s", "1s", "step", "at least 2s");
    span_bad("24h", "1m", "step", "at least 87s");
    span_bad("1h", "2h", "step", "must not exceed time_range (3600s)");
    span_bad("1h", "ten", "step", "must be a duration");
    span_bad("25h", NULL, "time_range", "at most 86400s");
    span_bad("soon", "1m", "time_range", "must be a duration");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_batches_and_acks),
        cmocka_unit_test(test_ring_wraps_and_drops_the_oldest),
        cmocka_unit_test(test_ring_unknown_values_are_null),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_span),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
