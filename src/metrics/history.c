/* The ring of samples a node has not stored yet, and the history query's range and step. */
#include "slipway/history.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "slipway/common.h"

void sw_history_ring_init(sw_history_ring_t *r, size_t cap)
{
    memset(r, 0, sizeof(*r));
    r->cap = cap ? cap : 1;
    r->slots = sw_calloc(r->cap, sizeof(*r->slots));
}

void sw_history_ring_free(sw_history_ring_t *r)
{
    free(r->slots);
    r->slots = NULL;
}

void sw_history_ring_push(sw_history_ring_t *r, const sw_history_sample_t *s)
{
    if (r->next - r->unsent == r->cap) {
        r->unsent++; /* full: the oldest goes */
        r->dropped++;
    }
    r->slots[r->next % r->cap] = *s;
    r->next++;
}

size_t sw_history_ring_pending(const sw_history_ring_t *r)
{
    return (size_t)(r->next - r->unsent);
}

uint64_t sw_history_ring_batch(const sw_history_ring_t *r, size_t max, sw_buf_t *out)
{
    uint64_t upto = r->unsent + SW_MIN((uint64_t)max, r->next - r->unsent);
    sw_buf_append_char(out, '[');
    for (uint64_t seq = r->unsent; seq < upto; seq++) {
        const sw_history_sample_t *s = &r->slots[seq % r->cap];
        sw_buf_printf(out, "%s[%llu", seq == r->unsent ? "" : ",", (unsigned long long)s->at_ms);
        for (size_t i = 0; i < SW_HISTORY_VALUES_MAX; i++) {
            if (isfinite(s->v[i]))
                sw_buf_printf(out, ",%.15g", s->v[i]);
            else
                sw_buf_append_cstr(out, ",null");
        }
        sw_buf_append_char(out, ']');
    }
    sw_buf_append_char(out, ']');
    return upto;
}

void sw_history_ring_ack(sw_history_ring_t *r, uint64_t upto)
{
    /* Pushes while the batch was being stored may have overwritten part of it already. */
    if (upto > r->unsent)
        r->unsent = SW_MIN(upto, r->next);
}

int sw_history_duration_parse(const char *s, uint32_t *out_s)
{
    static const struct {
        char unit;
        uint32_t seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    uint64_t n = 0;
    size_t digits = 0;
    if (!s)
        return -EINVAL;
    for (; s[digits] >= '0' && s[digits] <= '9'; digits++) {
        if (digits == 9)
            return -EINVAL;
        n = n * 10 + (uint64_t)(s[digits] - '0');
    }
    if (digits == 0 || s[digits] == '\0' || s[digits + 1] != '\0')
        return -EINVAL;
    for (size_t i = 0; i < SW_ARRAY_SIZE(units); i++) {
        if (s[digits] != units[i].unit)
            continue;
        n *= units[i].seconds;
        if (n == 0 || n > UINT32_MAX)
            return -EINVAL;
        *out_s = (uint32_t)n;
        return 0;
    }
    return -EINVAL;
}

static int SW_PRINTF(5, 6) span_error(const char **field, const char *name, char *why,
                                      size_t why_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
    *field = name;
    return -EINVAL;
}

int sw_history_span(const char *range, const char *step, sw_history_span_t *out, const char **field,
                    char *why, size_t why_size)
{
    uint32_t range_s = SW_HISTORY_RANGE_DEFAULT_S, step_s;
    if (range && (sw_history_duration_parse(range, &range_s) != 0 || range_s > SW_HISTORY_KEEP_S))
        return span_error(field, "time_range", why, why_size,
                          "must be a duration such as 15m, 1h or 24h (whole seconds, units s, m, "
                          "h, d), at most %us",
                          SW_HISTORY_KEEP_S);
    /* The fewest seconds a bucket may span: no more than SW_HISTORY_POINTS_MAX of them. */
    uint32_t min_step = SW_MAX(1u, (range_s + SW_HISTORY_POINTS_MAX - 1) / SW_HISTORY_POINTS_MAX);
    if (!step)
        step_s = SW_MAX(1u, (range_s + 99) / 100);
    else if (sw_history_duration_parse(step, &step_s) != 0)
        return span_error(field, "step", why, why_size,
                          "must be a duration such as 10s, 1m or 1h (whole seconds, units s, m, h, "
                          "d)");
    else if (step_s < min_step)
        return span_error(field, "step", why, why_size,
                          "must be at least %us for this time_range (at most 1000 points)",
                          min_step);
    else if (step_s > range_s)
        return span_error(field, "step", why, why_size, "must not exceed time_range (%us)",
                          range_s);
    out->range_s = range_s;
    out->step_s = step_s;
    return 0;
}
