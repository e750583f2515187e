/* A run's log and status: every line of output is masked (the app's secret values become
 * ***), numbered and written in chunks at most every 100 ms, and published on the
 * deployment's topic; status changes are stored and published (DESIGN.md §6). App instance
 * lines go to the app's runtime log the same way. */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/log.h"
#include "slipway/utf8.h"

secrets_t *sw_secrets_ref(secrets_t *sec)
{
    if (sec)
        sec->refs++;
    return sec;
}

void sw_secrets_unref(secrets_t *sec)
{
    if (!sec || --sec->refs)
        return;
    for (size_t i = 0; i < sec->n; i++) {
        sodium_memzero(sec->v[i], strlen(sec->v[i]));
        free(sec->v[i]);
    }
    free(sec);
}

/* "12 s" when whole seconds, "1500 ms" otherwise: for messages naming a timeout. */
const char *sw_deploy_duration(uint32_t ms, char *out, size_t size)
{
    if (ms % 1000 == 0)
        snprintf(out, size, "%u s", ms / 1000);
    else
        snprintf(out, size, "%u ms", ms);
    return out;
}

static void on_log_timer(uv_timer_t *t)
{
    sw_runlog_flush(t->data);
}

static void on_log_written(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    (void)res;
    r->flushing = false;
    if (status != 0 && status != SW_ECANCELED)
        sw_log_kv(SW_LOG_WARN, NULL, "deployment log chunk not stored", "deployment", r->id,
                  "error", sw_strerror(status), NULL);
    if (r->finished) {
        /* The run ended while this chunk was on its way: write the rest, then its status. */
        if (r->pending.len)
            sw_runlog_flush(r);
        if (!r->flushing)
            sw_run_persist(r);
        return;
    }
    if (r->output_paused && r->pending.len < LOG_PENDING_MAX / 2 && r->build) {
        r->output_paused = false;
        sw_runtime_build_pause(r->rt, r->build, false);
    }
    if (r->pending.len && !uv_is_active((uv_handle_t *)&r->log_timer))
        uv_timer_start(&r->log_timer, on_log_timer, LOG_FLUSH_MS, 0);
}

void sw_runlog_flush(run_t *r)
{
    if (r->flushing || r->pending.len == 0)
        return;
    char first[24], last[24];
    snprintf(first, sizeof(first), "%lld", r->pending_first);
    snprintf(last, sizeof(last), "%lld", r->seq);
    sw_buf_t lines = SW_BUF_INIT;
    sw_buf_append_char(&lines, '[');
    sw_buf_append(&lines, r->pending.base, r->pending.len);
    sw_buf_append_char(&lines, ']');
    sw_buf_reset(&r->pending);
    const char *params[] = {r->id, first, last, lines.base};
    r->flushing = true;
    if (sw_pg_query(r->w->pg,
                    "INSERT INTO deployment_log_chunks (deployment_id, first_seq, last_seq, "
                    "lines) VALUES ($1, $2::bigint, $3::bigint, $4::jsonb) "
                    "ON CONFLICT DO NOTHING",
                    4, params, on_log_written, r) != 0)
        r->flushing = false;
    sw_buf_free(&lines);
}

/* Replaces every known secret value of the app with *** before the line goes anywhere. */
static void mask(const secrets_t *sec, sw_buf_t *line)
{
    for (size_t i = 0; sec && i < sec->n; i++) {
        size_t n = strlen(sec->v[i]);
        if (n < 3)
            continue; /* masking "1" or "on" would shred every line and hide nothing */
        char *hit;
        size_t from = 0;
        while ((hit = memmem(line->base + from, line->len - from, sec->v[i], n))) {
            size_t at = (size_t)(hit - line->base);
            sw_buf_t out = SW_BUF_INIT;
            sw_buf_append(&out, line->base, at);
            sw_buf_append(&out, "***", 3);
            sw_buf_append(&out, line->base + at + n, line->len - at - n);
            sw_buf_free(line);
            *line = out;
            from = at + 3;
        }
    }
}

/* A line of an app instance (or about one), masked, into the app's runtime log. */
void sw_app_log(sw_worker_t *w, const char *app_id, const secrets_t *sec, const char *stream,
                const char *instance, const char *text, size_t len)
{
    sw_buf_t line = SW_BUF_INIT;
    sw_buf_append(&line, text, len);
    if (!line.base)
        sw_buf_reserve(&line, 0);
    mask(sec, &line);
    sw_applogs_line(w->applogs, app_id, stream, instance, line.base, line.len);
    sodium_memzero(line.base, line.cap);
    sw_buf_free(&line);
}
void sw_app_system(sw_worker_t *w, const char *app_id, const char *fmt, ...)
{
    sw_buf_t b = SW_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sw_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    sw_applogs_line(w->applogs, app_id, "system", "slipwayd", b.base, b.len);
    sw_buf_free(&b);
}

static void deployment_topic(const run_t *r, char *out, size_t size)
{
    snprintf(out, size, "deployment:%s", r->id);
}

void sw_run_log(run_t *r, const char *stream, const char *text, size_t len)
{
    if (r->relaunch) {
        sw_app_log(r->w, r->app_id, r->secrets, stream, "slipwayd", text, len);
        return;
    }
    sw_buf_t line = SW_BUF_INIT;
    sw_utf8_append(&line, text, len); /* PostgreSQL and WebSocket peers take UTF-8 only */
    mask(r->secrets, &line);
    sw_logcap_verdict_t v =
        strcmp(stream, "system") == 0
            ? SW_LOGCAP_STORE
            : sw_logcap_take(&r->logcap, r->w->cfg->build_log_max_bytes, line.len);
    if (v == SW_LOGCAP_CUT)
        sw_run_system(r,
                      "output cut here: over SLIPWAY_BUILD_LOG_MAX_BYTES (%llu); the rest is "
                      "streamed live, not stored",
                      (unsigned long long)r->w->cfg->build_log_max_bytes);
    /* A line past the cap has no number (seq null, 0 on the hub): stored seqs keep no gap. */
    long long seq = v == SW_LOGCAP_STORE ? ++r->seq : 0;
    sw_buf_t el = SW_BUF_INIT;
    if (seq)
        sw_buf_printf(&el, "{\"seq\":%lld,", seq);
    else
        sw_buf_append_cstr(&el, "{\"seq\":null,");
    sw_buf_printf(&el, "\"stream\":\"%s\",\"line\":\"", stream);
    sw_buf_append_json_str(&el, line.base, line.len);
    sw_buf_append_char(&el, '"');
    sodium_memzero(line.base, line.cap);
    sw_buf_free(&line);
    if (r->w->hub) {
        /* The same masked line and seq the database gets, without the timestamp. */
        char topic[64];
        deployment_topic(r, topic, sizeof(topic));
        sw_buf_append_char(&el, '}');
        sw_applogs_publish(r->w->hub, topic, SW_HUB_LOG, seq, el.base, el.len);
        el.base[--el.len] = '\0';
    }
    if (seq) {
        char ts[40];
        sw_time_rfc3339(ts, sizeof(ts), sw_wall_ms());
        if (r->pending.len == 0)
            r->pending_first = seq;
        else
            sw_buf_append_char(&r->pending, ',');
        sw_buf_append(&r->pending, el.base, el.len);
        sw_buf_printf(&r->pending, ",\"timestamp\":\"%s\"}", ts);
    }
    sodium_memzero(el.base, el.cap);
    sw_buf_free(&el);
    if (r->pending.len >= LOG_PENDING_MAX && r->build && !r->output_paused) {
        r->output_paused = true;
        sw_runtime_build_pause(r->rt, r->build, true);
    }
    if (!uv_is_active((uv_handle_t *)&r->log_timer) && !r->flushing)
        uv_timer_start(&r->log_timer, on_log_timer, LOG_FLUSH_MS, 0);
}
void sw_run_system(run_t *r, const char *fmt, ...)
{
    sw_buf_t b = SW_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sw_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    sw_run_log(r, "system", b.base, b.len);
    sw_buf_free(&b);
}

/* ---- status ---- */

#define STAGES                                                                                     \
    "ARRAY['queued', 'cloning_repo', 'building_image', 'starting_new', 'health_check', "           \
    "'switching_traffic', 'stopping_old', 'completed']"

static const char *stage_message(const char *status, const char *stage)
{
    static const char *const names[][2] = {
        {"queued", "waiting in the queue"},
        {"cloning_repo", "fetching the repository"},
        {"building_image", "running the build"},
        {"starting_new", "starting the new instances"},
        {"health_check", "waiting for the health check"},
        {"switching_traffic", "switching traffic to the new instances"},
        {"stopping_old", "stopping the previous instances"},
        {"completed", "deployed"},
    };
    if (strcmp(status, "failed") == 0)
        return "deployment failed";
    if (strcmp(status, "cancelled") == 0)
        return "deployment cancelled";
    for (size_t i = 0; i < SW_ARRAY_SIZE(names); i++)
        if (strcmp(names[i][0], stage) == 0)
            return names[i][1];
    return "";
}

/* A status message on the deployment's topic (DESIGN.md §6). */
void sw_runlog_publish_status(sw_hub_t *hub, const char *id, const char *status, const char *stage,
                              int progress, const char *error)
{
    if (!hub)
        return;
    char topic[64];
    snprintf(topic, sizeof(topic), "deployment:%s", id);
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_printf(&b,
                  "{\"deployment_id\":\"%s\",\"status\":\"%s\",\"stage\":\"%s\",\"progress\":%d,"
                  "\"message\":\"%s\",\"error_message\":",
                  id, status, stage, progress, stage_message(status, stage));
    if (error && *error) {
        sw_buf_append_char(&b, '"');
        sw_buf_append_json_str(&b, error, strlen(error));
        sw_buf_append_char(&b, '"');
    } else {
        sw_buf_append_cstr(&b, "null");
    }
    sw_buf_append_char(&b, '}');
    sw_applogs_publish(hub, topic, SW_HUB_STATUS, 0, b.base, b.len);
    sw_buf_free(&b);
}

void sw_runlog_publish_end(sw_hub_t *hub, const char *id)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "deployment:%s", id);
    char data[80];
    int n = snprintf(data, sizeof(data), "{\"deployment_id\":\"%s\"}", id);
    sw_applogs_publish(hub, topic, SW_HUB_END, 0, data, (size_t)n);
}

void sw_run_status(run_t *r, const char *status, const char *stage, int progress)
{
    if (r->relaunch)
        return;
    if (!r->stage || strcmp(r->stage, stage) != 0 || progress > r->progress) {
        r->stage = stage;
        r->progress = progress;
    }
    sw_runlog_publish_status(r->w->hub, r->id, status, stage, progress, NULL);
    char p[8];
    snprintf(p, sizeof(p), "%d", progress);
    const char *params[] = {r->id, status, stage, p};
    /* Updates travel on different pool connections and may land out of order: a stage never
     * moves backwards, and progress never drops. */
    sw_pg_query(r->w->pg,
                "UPDATE deployments SET status = $2, stage = $3, progress = $4::int, "
                "updated_at = now() WHERE id = $1 AND status IN ('building', 'deploying') "
                "AND (array_position(" STAGES ", stage), progress) <= "
                "(array_position(" STAGES ", $3::text), $4::int)",
                4, params, sw_deploy_ignore_pg, NULL);
}

/* Deployments failed as abandoned (RETURNING id, stage, progress, error_message): their
 * watchers hear the end. */
void sw_runlog_on_abandoned(int status, sw_pg_result_t *res, void *payload)
{
    sw_hub_t *hub = payload;
    if (status == 0) {
        for (int i = 0; i < sw_pg_result_rows(res); i++) {
            const char *id = sw_pg_result_value(res, i, 0);
            sw_runlog_publish_status(hub, id, "failed", sw_pg_result_value(res, i, 1),
                                     atoi(sw_pg_result_value(res, i, 2)),
                                     sw_pg_result_value(res, i, 3));
            sw_runlog_publish_end(hub, id);
        }
    } else {
        sw_deploy_ignore_pg(status, res, NULL);
    }
}
