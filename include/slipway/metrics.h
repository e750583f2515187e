/* A small Prometheus registry: HTTP counters and histograms kept here, everything else
 * contributed at scrape time by collectors. Exposition format 0.0.4. */
#ifndef SLIPWAY_METRICS_H
#define SLIPWAY_METRICS_H

#include "slipway/buf.h"

typedef struct sw_metrics sw_metrics_t;

/* Appends complete metric families (# HELP, # TYPE and samples) to out. */
typedef void (*sw_metrics_collect_fn)(sw_buf_t *out, void *payload);

sw_metrics_t *sw_metrics_new(void);
void sw_metrics_free(sw_metrics_t *m);

/* route and method must outlive the registry (route table patterns, llhttp method names). */
void sw_metrics_http_observe(sw_metrics_t *m, const char *route, const char *method, int code,
                             double seconds);
void sw_metrics_add_collector(sw_metrics_t *m, sw_metrics_collect_fn fn, void *payload);
void sw_metrics_render(sw_metrics_t *m, sw_buf_t *out);

/* A histogram with fixed buckets, for collectors to keep and render. */
#define SW_HISTOGRAM_BUCKETS 14
typedef struct {
    uint64_t counts[SW_HISTOGRAM_BUCKETS + 1]; /* the last is +Inf */
    double sum;
    uint64_t count;
    /* upper bounds, ascending; NULL (a zeroed histogram): 0.5 ms to 10 s, for requests */
    const double *bounds;
} sw_histogram_t;

/* Bounds for steps that take seconds to half an hour (builds): 1 s to 30 min. */
extern const double sw_histogram_long_bounds[SW_HISTOGRAM_BUCKETS];

void sw_histogram_observe(sw_histogram_t *h, double value);
/* Appends the _bucket, _sum and _count samples; labels is "" or `key="value"`. */
void sw_histogram_render(const sw_histogram_t *h, sw_buf_t *out, const char *name,
                         const char *labels);

/* process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds,
 * process_start_time_seconds, read from /proc. */
void sw_metrics_process(sw_buf_t *out, void *payload);
/* Resident set size of this process in bytes, 0 if unknown. */
uint64_t sw_process_rss_bytes(void);

#endif
