/* The janitor: one round at a time, each a chain of callbacks on the loop.
 *
 *   prune webhook deliveries, then build and release logs (5,000 rows per statement, again
 *   while a statement fills)
 *   -> SCAN the runtime-log keys a page at a time
 *      -> ask PostgreSQL which of the page's apps are gone -> DEL their keys -> next page
 *
 * A line an instance of a deleted app writes after its keys went recreates them; the next
 * round removes them again. */
#include "slipway/janitor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/log.h"
#include "slipway/queue.h"

#define FIRST_ROUND_MAX_MS 60000
#define PRUNE_BATCH        "5000"
#define PRUNE_BATCH_ROWS   5000
#define SCAN_COUNT         "500"
#define UUID_LEN           36
#define MAX_GONE_PER_PAGE  1024 /* a SCAN page is about SCAN_COUNT keys */

enum { PRUNE_DELIVERIES, PRUNE_LOGS, PRUNE_STEPS };

struct sw_janitor {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_pg_pool_t *pg;
    sw_redis_t *redis;
    uv_timer_t timer;
    bool busy; /* a round is running: one callback is outstanding */
    bool stopping;
    char prefix[128]; /* "slipway:<instance>:applog:" */
    char cursor[32];  /* the SCAN cursor; "0" starts and ends a scan */
    int step;         /* the prune step running: PRUNE_* */
    unsigned long long pruned[PRUNE_STEPS], removed; /* this round's counts */
    void (*on_stopped)(void *payload);
    void *payload;
};

static void scan_page(sw_janitor_t *j);

static void on_closed(uv_handle_t *h)
{
    sw_janitor_t *j = h->data;
    void (*cb)(void *) = j->on_stopped;
    void *payload = j->payload;
    free(j);
    if (cb)
        cb(payload);
}

static void round_end(sw_janitor_t *j)
{
    j->busy = false;
    if (j->pruned[0] || j->pruned[1] || j->removed) {
        char deliveries[24], chunks[24], removed[24];
        snprintf(deliveries, sizeof(deliveries), "%llu", j->pruned[0]);
        snprintf(chunks, sizeof(chunks), "%llu", j->pruned[1]);
        snprintf(removed, sizeof(removed), "%llu", j->removed);
        sw_log_kv(SW_LOG_INFO, NULL, "janitor round", "webhook_deliveries_pruned", deliveries,
                  "deployment_log_chunks_pruned", chunks, "deleted_apps_logs_removed", removed,
                  NULL);
    }
    if (j->stopping)
        uv_close((uv_handle_t *)&j->timer, on_closed);
}

/* ---- runtime logs of apps that are gone ---- */

/* The app id in "<prefix><uuid>" or "<prefix><uuid>:seq", or NULL for any other key. */
static const char *key_app(const sw_janitor_t *j, const char *key, size_t len)
{
    size_t p = strlen(j->prefix);
    if (len < p + UUID_LEN || memcmp(key, j->prefix, p) != 0)
        return NULL;
    const char *id = key + p;
    size_t rest = len - p - UUID_LEN;
    if (rest != 0 && !(rest == 4 && memcmp(id + UUID_LEN, ":seq", 4) == 0))
        return NULL;
    return sw_iov_is_uuid((sw_iov_t){(char *)id, UUID_LEN}) ? id : NULL;
}

static void on_deleted(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_janitor_t *j = payload;
    if (status == 0 && reply && reply->type == SW_REDIS_INTEGER)
        j->removed += (unsigned long long)reply->integer;
    if (status != 0 || j->stopping || strcmp(j->cursor, "0") == 0)
        round_end(j);
    else
        scan_page(j);
}

static void on_gone(int status, sw_pg_result_t *res, void *payload)
{
    sw_janitor_t *j = payload;
    int rows = status == 0 ? sw_pg_result_rows(res) : 0;
    if (status != 0 && status != SW_EUNAVAIL && status != SW_ECANCELED)
        sw_log_kv(SW_LOG_WARN, NULL, "janitor: looking up apps failed", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    if (rows > MAX_GONE_PER_PAGE)
        rows = MAX_GONE_PER_PAGE;
    if (status != 0 || rows == 0 || j->stopping) {
        on_deleted(status, NULL, j);
        return;
    }
    /* DEL key key:seq for each: two keys per app, argv[0] the command. */
    size_t argc = 1 + 2 * (size_t)rows;
    const char **argv = sw_calloc(argc, sizeof(*argv));
    size_t *lens = sw_calloc(argc, sizeof(*lens));
    char *keys = sw_calloc((size_t)rows * 2, sizeof(j->prefix) + UUID_LEN + 8);
    size_t stride = sizeof(j->prefix) + UUID_LEN + 8;
    argv[0] = "DEL";
    lens[0] = 3;
    for (int i = 0; i < rows; i++) {
        const char *id = sw_pg_result_value(res, i, 0);
        char *k = keys + (size_t)(2 * i) * stride, *ks = k + stride;
        snprintf(k, stride, "%s%.36s", j->prefix, id);
        snprintf(ks, stride, "%s%.36s:seq", j->prefix, id);
        argv[1 + 2 * i] = k;
        lens[1 + 2 * i] = strlen(k);
        argv[2 + 2 * i] = ks;
        lens[2 + 2 * i] = strlen(ks);
    }
    if (sw_redis_command(j->redis, on_deleted, j, (int)argc, argv, lens) != 0)
        round_end(j);
    free(keys);
    free(lens);
    free(argv);
}

static void on_scanned(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_janitor_t *j = payload;
    /* [next cursor, [key, ...]] */
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != SW_REDIS_STRING || reply->element[0]->len == 0 ||
        reply->element[0]->len >= sizeof(j->cursor) || reply->element[1]->type != SW_REDIS_ARRAY ||
        j->stopping) {
        round_end(j);
        return;
    }
    memcpy(j->cursor, reply->element[0]->str, reply->element[0]->len);
    j->cursor[reply->element[0]->len] = '\0';
    const sw_redis_reply_t *keys = reply->element[1];
    sw_buf_t ids = SW_BUF_INIT; /* a PostgreSQL array literal: {id,id,...} */
    sw_buf_append(&ids, "{", 1);
    for (size_t i = 0; i < keys->elements; i++) {
        const sw_redis_reply_t *k = keys->element[i];
        const char *id = k->type == SW_REDIS_STRING ? key_app(j, k->str, k->len) : NULL;
        if (!id)
            continue;
        if (ids.len > 1)
            sw_buf_append(&ids, ",", 1);
        sw_buf_append(&ids, id, UUID_LEN);
    }
    sw_buf_append(&ids, "}", 2); /* with the terminating NUL */
    if (ids.len == 3) {
        sw_buf_free(&ids);
        on_deleted(0, NULL, j);
        return;
    }
    const char *params[] = {ids.base};
    int rc = sw_pg_query(j->pg,
                         "SELECT DISTINCT x::text FROM unnest($1::uuid[]) x "
                         "WHERE NOT EXISTS (SELECT 1 FROM apps WHERE id = x)",
                         1, params, on_gone, j);
    sw_buf_free(&ids);
    if (rc != 0)
        round_end(j);
}

static void scan_page(sw_janitor_t *j)
{
    char match[sizeof(j->prefix) + 2];
    snprintf(match, sizeof(match), "%s*", j->prefix);
    const char *argv[] = {"SCAN", j->cursor, "MATCH", match, "COUNT", SCAN_COUNT};
    size_t lens[] = {4, strlen(j->cursor), 5, strlen(match), 5, strlen(SCAN_COUNT)};
    if (sw_redis_command(j->redis, on_scanned, j, 6, argv, lens) != 0)
        round_end(j);
}

/* ---- webhook deliveries and deployment logs past their retention ---- */

/* Each statement deletes at most PRUNE_BATCH rows and answers how many. */
static const char *const prune_sql[PRUNE_STEPS] = {
    /* Attempts go with their delivery (ON DELETE CASCADE). Pending deliveries are never
     * pruned, however old: they are still owed. */
    "WITH d AS (DELETE FROM webhook_deliveries WHERE id IN ("
    "SELECT id FROM webhook_deliveries WHERE state <> 'pending' "
    "AND updated_at < now() - make_interval(days => $1::int) "
    "LIMIT " PRUNE_BATCH ") RETURNING 1) SELECT count(*) FROM d",
    /* The deployment rows stay (the history); their output goes, except an app's active
     * release's, which is what a user looks at when it misbehaves. */
    "WITH d AS (DELETE FROM deployment_log_chunks WHERE (deployment_id, first_seq) IN ("
    "SELECT c.deployment_id, c.first_seq FROM deployment_log_chunks c "
    "JOIN deployments dep ON dep.id = c.deployment_id "
    "WHERE dep.finished_at < now() - make_interval(days => $1::int) "
    "AND NOT EXISTS (SELECT 1 FROM apps a WHERE a.active_deployment_id = dep.id) "
    "LIMIT " PRUNE_BATCH ") RETURNING 1) SELECT count(*) FROM d",
};

static void prune(sw_janitor_t *j);

static void on_pruned(int status, sw_pg_result_t *res, void *payload)
{
    sw_janitor_t *j = payload;
    long n = 0;
    if (status == 0 && sw_pg_result_rows(res) == 1)
        n = strtol(sw_pg_result_value(res, 0, 0), NULL, 10);
    else if (status != SW_EUNAVAIL && status != SW_ECANCELED)
        sw_log_kv(SW_LOG_WARN, NULL, "janitor: pruning failed", "table",
                  j->step == PRUNE_DELIVERIES ? "webhook_deliveries" : "deployment_log_chunks",
                  "error", res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    j->pruned[j->step] += (unsigned long long)(n > 0 ? n : 0);
    if (j->stopping) {
        round_end(j);
        return;
    }
    if (n >= PRUNE_BATCH_ROWS) {
        prune(j); /* more are due: another batch, so no statement holds its locks long */
        return;
    }
    if (++j->step < PRUNE_STEPS) {
        prune(j);
        return;
    }
    snprintf(j->cursor, sizeof(j->cursor), "0");
    scan_page(j);
}

static void prune(sw_janitor_t *j)
{
    char days[16];
    snprintf(days, sizeof(days), "%u",
             j->step == PRUNE_DELIVERIES ? j->cfg->webhook_keep_days
                                         : j->cfg->deployment_log_keep_days);
    const char *params[] = {days};
    int rc = sw_pg_query(j->pg, prune_sql[j->step], 1, params, on_pruned, j);
    if (rc != 0)
        round_end(j);
}

static void on_timer(uv_timer_t *t)
{
    sw_janitor_t *j = t->data;
    if (j->busy || j->stopping)
        return;
    j->busy = true;
    j->pruned[0] = j->pruned[1] = j->removed = 0;
    j->step = PRUNE_DELIVERIES;
    prune(j);
}

int sw_janitor_start(sw_janitor_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                     sw_redis_t *redis)
{
    char prefix[128];
    sw_queue_applog_key("", prefix, sizeof(prefix));
    if (!prefix[0])
        return -EINVAL; /* the instance id is not known yet */
    sw_janitor_t *j = sw_calloc(1, sizeof(*j));
    j->loop = loop;
    j->cfg = cfg;
    j->pg = pg;
    j->redis = redis;
    snprintf(j->prefix, sizeof(j->prefix), "%s", prefix);
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    uint64_t every = cfg->janitor_interval_ms;
    uv_timer_start(&j->timer, on_timer, every < FIRST_ROUND_MAX_MS ? every : FIRST_ROUND_MAX_MS,
                   every);
    *out = j;
    return 0;
}

void sw_janitor_stop(sw_janitor_t *j, void (*on_stopped)(void *payload), void *payload)
{
    if (!j || j->stopping)
        return;
    j->stopping = true;
    j->on_stopped = on_stopped;
    j->payload = payload;
    uv_timer_stop(&j->timer);
    if (!j->busy)
        uv_close((uv_handle_t *)&j->timer, on_closed);
}
