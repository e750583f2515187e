/* The read cache's glue: the cache of project lookups, the PostgreSQL connection that LISTENs
 * for what empties it, the pings that prove that connection alive, and its metrics. */
#include <string.h>

#include "internal.h"
#include "slipway/cache.h"
#include "slipway/live_access.h"
#include "slipway/log.h"

/* The read cache: its bounds, the channel sql/005_read_cache.sql notifies, and how often the
 * listener's connection must prove it is alive (two unanswered pings: the cache stops). */
#define READ_CACHE_ENTRIES     10000
#define READ_CACHE_BYTES       (16u << 20)
#define READ_CACHE_CHANNEL     "slipway_read_cache"
#define READ_CACHE_PING_MS     1000
#define READ_CACHE_PING_MISSES 2

/* Whether the cache may answer and store now: the listener is in the session the cache was
 * last emptied for, and its connection answers pings. Any change of either empties the cache
 * and moves its generation on, since notifications may have been missed meanwhile. */
bool sw_api_read_cache_check(sw_api_t *api)
{
    if (!api->read_cache)
        return false;
    uint64_t session = sw_pg_pool_listen_session(api->listen_pg);
    bool usable = session != 0 && api->ping_misses < READ_CACHE_PING_MISSES;
    if (session != api->read_cache_session || usable != api->read_cache_usable) {
        sw_cache_invalidate(api->read_cache);
        api->read_cache_session = session;
        if (usable != api->read_cache_usable)
            sw_log_kv(usable ? SW_LOG_INFO : SW_LOG_WARN, NULL,
                      usable ? "read cache on" : "read cache off: its PostgreSQL listener is down",
                      NULL);
        api->read_cache_usable = usable;
    }
    return usable;
}

static void on_listen_state(sw_pg_pool_t *pool, void *payload)
{
    (void)pool;
    sw_api_read_cache_check(payload);
}

static void on_read_cache_notify(sw_pg_pool_t *pool, unsigned count, void *payload)
{
    sw_api_t *api = payload;
    (void)pool;
    api->read_cache_notified += count;
    sw_cache_invalidate(api->read_cache);
    sw_live_access_changed(api->live_access); /* a member removed: streams close too */
}

/* The ping asks the session what it listens to: an answer without the channel counts as none. */
static void on_ping(int status, sw_pg_result_t *res, void *payload)
{
    sw_api_t *api = payload;
    bool listening = false;
    for (int i = 0; status == 0 && i < sw_pg_result_rows(res); i++) {
        const char *channel = sw_pg_result_value(res, i, 0);
        listening |= channel && strcmp(channel, READ_CACHE_CHANNEL) == 0;
    }
    api->ping_in_flight = false;
    api->ping_misses = listening ? 0 : READ_CACHE_PING_MISSES;
    if (!api->stopping)
        sw_api_read_cache_check(api);
}

static void on_ping_timer(uv_timer_t *t)
{
    sw_api_t *api = sw_container_of(t, sw_api_t, read_cache_ping);
    if (api->ping_in_flight) {
        api->ping_misses++;
        sw_api_read_cache_check(api);
        return;
    }
    api->ping_in_flight = true;
    sw_pg_query(api->listen_pg, "SELECT pg_listening_channels()", 0, NULL, on_ping, api);
}
void sw_api_read_cache_metrics(sw_buf_t *out, void *payload)
{
    sw_api_t *api = payload;
    sw_cache_stats_t st = {0};
    bool up = sw_api_read_cache_check(api);
    if (api->read_cache)
        sw_cache_stats(api->read_cache, &st);
    sw_buf_printf(out,
                  "# HELP slipway_read_cache_hits_total Project lookups answered from the read "
                  "cache.\n"
                  "# TYPE slipway_read_cache_hits_total counter\n"
                  "slipway_read_cache_hits_total %llu\n"
                  "# HELP slipway_read_cache_misses_total Project lookups the read cache did not "
                  "hold while it was on.\n"
                  "# TYPE slipway_read_cache_misses_total counter\n"
                  "slipway_read_cache_misses_total %llu\n"
                  "# HELP slipway_read_cache_invalidations_total Times the read cache was "
                  "emptied: a notification, a write here, the listener's state.\n"
                  "# TYPE slipway_read_cache_invalidations_total counter\n"
                  "slipway_read_cache_invalidations_total %llu\n"
                  "# HELP slipway_read_cache_notifications_total Change notifications received "
                  "from PostgreSQL.\n"
                  "# TYPE slipway_read_cache_notifications_total counter\n"
                  "slipway_read_cache_notifications_total %llu\n"
                  "# HELP slipway_read_cache_evictions_total Entries dropped to stay within the "
                  "bounds.\n"
                  "# TYPE slipway_read_cache_evictions_total counter\n"
                  "slipway_read_cache_evictions_total %llu\n"
                  "# HELP slipway_read_cache_entries Entries in the read cache.\n"
                  "# TYPE slipway_read_cache_entries gauge\n"
                  "slipway_read_cache_entries %zu\n"
                  "# HELP slipway_read_cache_bytes Bytes the read cache holds.\n"
                  "# TYPE slipway_read_cache_bytes gauge\n"
                  "slipway_read_cache_bytes %zu\n"
                  "# HELP slipway_read_cache_up Whether the read cache answers (on, and its "
                  "listener up).\n"
                  "# TYPE slipway_read_cache_up gauge\n"
                  "slipway_read_cache_up %d\n",
                  (unsigned long long)st.hits, (unsigned long long)st.misses,
                  (unsigned long long)st.invalidations,
                  (unsigned long long)api->read_cache_notified, (unsigned long long)st.evictions,
                  st.entries, st.bytes, up ? 1 : 0);
}

/* The cache and the connection that LISTENs for what empties it. */
int sw_api_read_cache_start(sw_api_t *api)
{
    const sw_config_t *cfg = api->cfg;
    sw_pg_pool_opts_t lo = {
        .conninfo = cfg->database_url,
        .size = 1,
        .query_timeout_ms = cfg->pg_query_timeout_ms,
        .connect_timeout_ms = cfg->pg_connect_timeout_ms,
        .on_state = on_listen_state,
        .payload = api,
        .listen_channel = READ_CACHE_CHANNEL,
        .on_notify = on_read_cache_notify,
    };
    int r = sw_pg_pool_new(&api->listen_pg, api->loop, &lo);
    if (r != 0)
        return r;
    api->read_cache = sw_cache_new(READ_CACHE_ENTRIES, READ_CACHE_BYTES);
    uv_timer_init(api->loop, &api->read_cache_ping);
    uv_timer_start(&api->read_cache_ping, on_ping_timer, READ_CACHE_PING_MS, READ_CACHE_PING_MS);
    return 0;
}
