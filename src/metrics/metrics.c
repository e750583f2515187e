/* Prometheus registry and exposition. */
#include "slipway/metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SERIES_MAX 1024 /* routes x methods x codes stays far below this */

static const double bucket_bounds[SW_HISTOGRAM_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const double sw_histogram_long_bounds[SW_HISTOGRAM_BUCKETS] = {1,   2.5, 5,   10,  20,  30,   60,
                                                               120, 180, 300, 600, 900, 1200, 1800};

typedef struct {
    const char *route;
    const char *method;
    int code;
    uint64_t count;
} counter_t;

typedef struct {
    const char *route;
    sw_histogram_t h;
} route_hist_t;

typedef struct {
    sw_metrics_collect_fn fn;
    void *payload;
} collector_t;

struct sw_metrics {
    counter_t *counters; /* open addressing, SERIES_MAX slots */
    size_t ncounters;
    route_hist_t *hists;
    size_t nhists;
    collector_t collectors[16];
    size_t ncollectors;
};

sw_metrics_t *sw_metrics_new(void)
{
    sw_metrics_t *m = sw_calloc(1, sizeof(*m));
    m->counters = sw_calloc(SERIES_MAX, sizeof(counter_t));
    m->hists = sw_calloc(SERIES_MAX, sizeof(route_hist_t));
    return m;
}

void sw_metrics_free(sw_metrics_t *m)
{
    if (!m)
        return;
    free(m->counters);
    free(m->hists);
    free(m);
}

static size_t hash_ptr(const void *p, size_t salt)
{
    uintptr_t v = (uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(v ^ (v >> 29) ^ (salt * 0x85ebca6bu));
}

void sw_histogram_observe(sw_histogram_t *h, double value)
{
    const double *bounds = h->bounds ? h->bounds : bucket_bounds;
    size_t i = 0;
    while (i < SW_HISTOGRAM_BUCKETS && value > bounds[i])
        i++;
    h->counts[i]++;
    h->sum += value;
    h->count++;
}

void sw_histogram_render(const sw_histogram_t *h, sw_buf_t *out, const char *name,
                         const char *labels)
{
    const double *bounds = h->bounds ? h->bounds : bucket_bounds;
    uint64_t cum = 0;
    const char *sep = *labels ? "," : "";
    for (size_t i = 0; i < SW_HISTOGRAM_BUCKETS; i++) {
        cum += h->counts[i];
        sw_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
                      (unsigned long long)cum);
    }
    cum += h->counts[SW_HISTOGRAM_BUCKETS];
    sw_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                  (unsigned long long)cum);
    if (*labels) {
        sw_buf_printf(out, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->sum, name,
                      labels, (unsigned long long)h->count);
    } else {
        sw_buf_printf(out, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                      (unsigned long long)h->count);
    }
}

void sw_metrics_http_observe(sw_metrics_t *m, const char *route, const char *method, int code,
                             double seconds)
{
    size_t i = (hash_ptr(route, 0) ^ hash_ptr(method, 1) ^ (size_t)code * 31u) % SERIES_MAX;
    for (size_t n = 0; n < SERIES_MAX; n++, i = (i + 1) % SERIES_MAX) {
        counter_t *c = &m->counters[i];
        if (!c->route) {
            c->route = route;
            c->method = method;
            c->code = code;
            m->ncounters++;
        }
        if (c->route == route && c->method == method && c->code == code) {
            c->count++;
            break;
        }
    }
    i = hash_ptr(route, 2) % SERIES_MAX;
    for (size_t n = 0; n < SERIES_MAX; n++, i = (i + 1) % SERIES_MAX) {
        route_hist_t *h = &m->hists[i];
        if (!h->route) {
            h->route = route;
            m->nhists++;
        }
        if (h->route == route) {
            sw_histogram_observe(&h->h, seconds);
            break;
        }
    }
}

void sw_metrics_add_collector(sw_metrics_t *m, sw_metrics_collect_fn fn, void *payload)
{
    if (m->ncollectors < SW_ARRAY_SIZE(m->collectors))
        m->collectors[m->ncollectors++] = (collector_t){fn, payload};
}

void sw_metrics_render(sw_metrics_t *m, sw_buf_t *out)
{
    sw_buf_append_cstr(out, "# HELP slipway_http_requests_total HTTP requests answered.\n"
                            "# TYPE slipway_http_requests_total counter\n");
    for (size_t i = 0; i < SERIES_MAX; i++) {
        const counter_t *c = &m->counters[i];
        if (c->route)
            sw_buf_printf(out,
                          "slipway_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} "
                          "%llu\n",
                          c->route, c->method, c->code, (unsigned long long)c->count);
    }
    sw_buf_append_cstr(out, "# HELP slipway_http_request_duration_seconds Time from the first byte "
                            "of a request to its response.\n"
                            "# TYPE slipway_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < SERIES_MAX; i++) {
        const route_hist_t *h = &m->hists[i];
        if (h->route) {
            char labels[256];
            snprintf(labels, sizeof(labels), "route=\"%s\"", h->route);
            sw_histogram_render(&h->h, out, "slipway_http_request_duration_seconds", labels);
        }
    }
    for (size_t i = 0; i < m->ncollectors; i++)
        m->collectors[i].fn(out, m->collectors[i].payload);
}
