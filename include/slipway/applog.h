/* Runtime output of app instances: every line numbered per app (seq strictly increasing,
 * across worker restarts too), published to the hub topic "app:<app id>", and kept in a
 * capped Redis list per app (sw_queue_applog_key) so any slipwayd can serve the last lines.
 * The list is appended in batches: at most one RPUSH + LTRIM per app per 100 ms. */
#ifndef SLIPWAY_APPLOG_H
#define SLIPWAY_APPLOG_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/hub.h"
#include "slipway/redis.h"

typedef struct sw_applogs sw_applogs_t;

typedef struct {
    uv_loop_t *loop;
    sw_redis_t *redis;
    sw_hub_t *hub;      /* may be NULL: nothing is published */
    uint32_t max_lines; /* the list's cap per app */
} sw_applogs_opts_t;

sw_applogs_t *sw_applogs_new(const sw_applogs_opts_t *opts);
/* One line (already masked) of an app's instance: stream "stdout", "stderr" or "system",
 * instance a short label. Never blocks and never slows the instance: while Redis cannot
 * number lines a bounded number wait, and beyond that the oldest are dropped (and counted
 * in a system line once numbering resumes). */
void sw_applogs_line(sw_applogs_t *l, const char *app_id, const char *stream, const char *instance,
                     const char *line, size_t len);
/* Stores what is pending, waits for the answers, then frees everything and calls on_closed.
 * Lines passed after this are dropped. */
void sw_applogs_close(sw_applogs_t *l, void (*on_closed)(void *payload), void *payload);

/* Publishes {"type", "timestamp", "data": data} to topic; nothing when hub is NULL. */
void sw_applogs_publish(sw_hub_t *hub, const char *topic, sw_hub_type_t type, long long seq,
                        const char *data, size_t len);

#endif
