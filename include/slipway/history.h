/* A node's metric history (GET /api/v1/system/metrics/history): each node samples itself every
 * SLIPWAY_METRICS_SAMPLE_MS into a fixed ring that holds what PostgreSQL does not have yet
 * (node_metrics keeps a day of every node's samples); and the query's time range and step. */
#ifndef SLIPWAY_HISTORY_H
#define SLIPWAY_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "slipway/buf.h"

/* What one sample holds, in the order the batch's JSON arrays carry them after at_ms. */
typedef enum {
    SW_HISTORY_CPU_PERCENT,
    SW_HISTORY_LOAD_1M,
    SW_HISTORY_MEMORY_TOTAL,
    SW_HISTORY_MEMORY_AVAILABLE,
    SW_HISTORY_DISK_TOTAL,
    SW_HISTORY_DISK_FREE,
    SW_HISTORY_RX_PER_S,
    SW_HISTORY_TX_PER_S,
    SW_HISTORY_PROCESS_RSS,
    SW_HISTORY_HTTP_CONNECTIONS, /* NAN on a worker-only node: stored as NULL */
    SW_HISTORY_DEPLOYMENTS_RUNNING,
    SW_HISTORY_VALUES_MAX
} sw_history_value_t;

typedef struct {
    uint64_t at_ms; /* wall clock, milliseconds since the epoch */
    double v[SW_HISTORY_VALUES_MAX];
} sw_history_sample_t;

/* Samples not yet stored, oldest first. A full ring overwrites its oldest sample: a database
 * that stays away longer than the ring lasts costs the oldest samples, never memory. */
typedef struct {
    sw_history_sample_t *slots;
    size_t cap;
    uint64_t next;    /* sequence number the next push gets */
    uint64_t unsent;  /* sequence number of the oldest sample not yet stored */
    uint64_t dropped; /* overwritten before they were stored */
} sw_history_ring_t;

/* 1 h at the default 10 s; 360 * 100 bytes of samples. */
#define SW_HISTORY_RING_SAMPLES 360
/* How long node_metrics keeps samples, and so the longest time_range. */
#define SW_HISTORY_KEEP_S 86400u
/* The most points (buckets) one series of an answer may have. */
#define SW_HISTORY_POINTS_MAX      1000u
#define SW_HISTORY_RANGE_DEFAULT_S 3600u

void sw_history_ring_init(sw_history_ring_t *r, size_t cap);
void sw_history_ring_free(sw_history_ring_t *r);
void sw_history_ring_push(sw_history_ring_t *r, const sw_history_sample_t *s);
size_t sw_history_ring_pending(const sw_history_ring_t *r);
/* The oldest pending samples (at most max) as a JSON array of [at_ms, v...] arrays (null for a
 * NAN value) into out; returns the sequence number after the last one written, for ack. */
uint64_t sw_history_ring_batch(const sw_history_ring_t *r, size_t max, sw_buf_t *out);
/* The samples before sequence number upto are stored: no longer pending. */
void sw_history_ring_ack(sw_history_ring_t *r, uint64_t upto);

/* A duration of whole seconds: digits and a unit s, m, h or d ("90s", "15m", "24h"); 0 or
 * -EINVAL. */
int sw_history_duration_parse(const char *s, uint32_t *out_s);

typedef struct {
    uint32_t range_s; /* the answer covers the last range_s seconds */
    uint32_t step_s;  /* in buckets of step_s seconds, aligned to the epoch */
} sw_history_span_t;

/* ?time_range= (NULL: 1h, at most a day) and ?step= (NULL: time_range/100 rounded up, at
 * least 1 s; at most time_range, and no smaller than time_range/1000). 0, or -EINVAL with
 * *field naming the parameter and why (a sentence) filled in. */
int sw_history_span(const char *range, const char *step, sw_history_span_t *out, const char **field,
                    char *why, size_t why_size);

#endif
