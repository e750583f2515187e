/* The host as /proc and statvfs(3) see it: CPU, load, memory, one file system, network.
 * Rates (CPU use, bytes per second) are over the time since the sample before, at least a
 * second, so callers that sample at any pace share one sampler and still get steady rates. */
#ifndef SLIPWAY_HOST_H
#define SLIPWAY_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "slipway/buf.h"

typedef struct {
    double cpu_percent; /* all cores, 0-100 */
    double load[3];     /* 1, 5 and 15 minutes */
    uint64_t memory_total_bytes, memory_available_bytes;
    uint64_t disk_total_bytes, disk_free_bytes; /* the file system holding disk_path */
    double rx_bytes_per_s, tx_bytes_per_s;      /* every interface but lo */
} sw_host_stats_t;

typedef struct {
    unsigned long long cpu_busy, cpu_total, rx, tx;
    uint64_t at_ms;
    bool have;
    sw_host_stats_t rates; /* the last rates computed, answered until a second has passed */
} sw_host_sampler_t;

#define SW_HOST_SAMPLER_INIT                                                                       \
    {                                                                                              \
        0                                                                                          \
    }

/* Reads the host now (now_ms: a monotonic clock in milliseconds) into out. */
void sw_host_sample(sw_host_sampler_t *s, uint64_t now_ms, const char *disk_path,
                    sw_host_stats_t *out);

/* Appends the members "cpu_percent", "memory": {...}, "load": [...], "disk": {"path", ...} and
 * "network": {...}, without braces around them, into a JSON object the caller writes. */
void sw_host_stats_json_members(const sw_host_stats_t *st, const char *disk_path, sw_buf_t *out);

#endif
