/* The deployment worker.
 *
 * Queue: one consumer in the group of the Redis stream; an entry is acknowledged only when
 * its deployment has reached a terminal state, so a worker that dies leaves it pending in
 * the group, where another worker claims it (XAUTOCLAIM) once it has been idle longer than a
 * lease. Ownership of an app is a Redis key set with NX and a TTL, renewed every second
 * while the worker holds it. PostgreSQL stays the truth: a claimed entry whose deployment is
 * already running under a lapsed lease is failed as abandoned, never left as it was.
 *
 * A run walks: claim the row -> fetch (libgit2, its own thread) -> build (child process) ->
 * start the new instances -> health check -> switch the app's endpoints -> stop the old
 * instances. Every line of output is masked, numbered and written in chunks at most every
 * 100 ms. */
#include "slipway/worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include "slipway/applog.h"
#include "slipway/buf.h"
#include "slipway/git.h"
#include "slipway/log.h"
#include "slipway/logcap.h"
#include "slipway/metrics.h"
#include "slipway/queue.h"
#include "slipway/redis.h"
#include "slipway/runtime.h"
#include "slipway/utf8.h"

#define TICK_MS        1000
#define CLAIM_EVERY_MS 5000
#define RECONCILE_MS   5000
#define LOG_FLUSH_MS   100
/* Output waiting to be stored; beyond it the build's pipes stop being read (backpressure),
 * so a build printing as fast as it can costs bounded memory. */
#define LOG_PENDING_MAX (2u * 1024u * 1024u)
#define HEALTH_POLL_MS  50
#define READ_BLOCK_MS   "1000"
#define MAX_INSTANCES   64
#define SECRETS_MAX     256

typedef enum {
    RUN_CLAIMING,
    RUN_FETCHING,
    RUN_BUILDING,
    RUN_STARTING,
    RUN_CHECKING,
    RUN_SWITCHING,
    RUN_DONE,
    RUN_MAX
} run_state_t;

/* An app's secret values, shared by a run and the instances it starts: their output is
 * masked with the values they were given. */
typedef struct {
    unsigned refs;
    size_t n;
    char *v[SECRETS_MAX];
} secrets_t;

typedef struct run run_t;
typedef struct entry entry_t;

struct run {
    run_t *next;
    sw_worker_t *w;
    run_state_t state;
    char entry_id[64];
    char id[40];
    char app_id[40];
    char *repo_url, *ref, *commit_sha, *build_cmd, *start_cmd, *health_path;
    char rollback_of[40]; /* release this deployment's build again (rollback, start, restart) */
    bool rollback;        /* ...and mark the release it replaces rolled_back */
    int replicas;
    long run_uid;          /* the app's uid for its builds and instances; 0 until allocated */
    char creator_role[16]; /* instance role of who asked for the deployment; "" when no one */
    unsigned uid_tries;
    char build_dir[512];
    uint64_t build_started_ns; /* uv_hrtime() when the build command started */
    char **build_env;
    char **run_env;
    secrets_t *secrets;
    const char *stage; /* the last stage written, for status messages */
    int progress;
    bool relaunch; /* restarting the active release after slipwayd restarted: no deployment */
    bool cancelled;
    bool handback; /* the worker is stopping: back to the queue, not failed */
    char error[512];
    sw_git_job_t *git;
    sw_runtime_build_t *build;
    sw_instance_t *fresh[MAX_INSTANCES];
    int nfresh;
    int nhealthy; /* fresh[0..nhealthy) answered their health check */
    sw_runtime_probe_t *probe;
    uint64_t health_deadline;
    uv_timer_t timer; /* health polling */
    uv_timer_t log_timer;
    unsigned closes;
    /* logs */
    long long seq;
    long long flushed_seq;
    sw_buf_t pending; /* JSON objects separated by ',' */
    long long pending_first;
    bool flushing;
    bool finished;
    bool output_paused;    /* the build's pipes are not read while a big chunk is stored */
    sw_logcap_t logcap;    /* the output stored so far against SLIPWAY_BUILD_LOG_MAX_BYTES */
    char final_status[16]; /* written once the last log chunk is stored */
};

enum { FINISHED_SUCCESS, FINISHED_FAILED, FINISHED_CANCELLED, FINISHED_MAX };

struct sw_worker {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_pg_pool_t *pg;
    sw_redis_t *redis;
    const sw_secretbox_t *box;
    sw_hub_t *hub;
    sw_applogs_t *applogs;
    sw_runtime_t *rt;
    char node[128];
    int lock_fd;         /* holds the data directory's worker lock; -1: not ours */
    char **relaunch_ids; /* apps this node ran before it restarted, to start again */
    size_t nrelaunch;
    bool relaunch_querying;
    bool gone_querying;  /* asking which apps of our instances were deleted */
    unsigned pg_pending; /* worker-level queries in flight: the worker outlives them */
    uv_timer_t tick;
    uint64_t next_claim, next_reconcile;
    bool reading;
    bool group_ready;
    bool swept, sweeping;  /* the previous incarnation's deployments are settled */
    char sweep_before[64]; /* PostgreSQL's clock before this worker claimed anything */
    bool stopping;
    run_t *runs;
    unsigned nruns;
    entry_t *waiting; /* entries whose app is busy: retried when it frees up, and each tick */
    unsigned nwaiting;
    unsigned leasing; /* lease requests in flight */
    bool redis_closing;
    unsigned closes;
    void (*on_stopped)(void *payload);
    void *stopped_payload;

    /* For /metrics: what this worker finished, how long its builds took, and the queue as of
     * the last reconciliation (-1 until one answered). */
    uint64_t finished[FINISHED_MAX];
    sw_histogram_t builds;
    long long queue_depth;
};

static const char *const finished_names[FINISHED_MAX] = {"success", "failed", "cancelled"};

static void read_next(sw_worker_t *w);
static void maybe_stopped(sw_worker_t *w);
static void gone_apps_query(sw_worker_t *w);
static void retry_waiting(sw_worker_t *w, const char *app_id);
static void run_fail(run_t *r, const char *fmt, ...) SW_PRINTF(2, 3);
static void run_finish(run_t *r, const char *status);
static void run_done(run_t *r);
static void state_save(sw_worker_t *w);
static void builds_prune(run_t *r);
static void relaunch_query(sw_worker_t *w);

/* ---- small helpers ---- */

static void ignore_pg(int status, sw_pg_result_t *res, void *payload)
{
    (void)payload;
    if (status != 0 && status != SW_ECANCELED)
        sw_log_kv(SW_LOG_WARN, NULL, "worker query failed", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
}

static void ignore_redis(int status, const sw_redis_reply_t *reply, void *payload)
{
    (void)status;
    (void)reply;
    (void)payload;
}

static void redis_cmd(sw_worker_t *w, sw_redis_cb cb, void *payload, int argc, const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (sw_redis_command(w->redis, cb ? cb : ignore_redis, payload, argc, argv, lens) != 0 && cb)
        cb(SW_EUNAVAIL, NULL, payload);
}

static char *dupstr(const char *s)
{
    return sw_strdup(s ? s : "");
}

static secrets_t *secrets_ref(secrets_t *sec)
{
    if (sec)
        sec->refs++;
    return sec;
}

static void secrets_unref(secrets_t *sec)
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
static const char *duration(uint32_t ms, char *out, size_t size)
{
    if (ms % 1000 == 0)
        snprintf(out, size, "%u s", ms / 1000);
    else
        snprintf(out, size, "%u ms", ms);
    return out;
}

static void lease_key(const char *app_id, char *out, size_t size)
{
    snprintf(out, size, "slipway:lease:app:%s", app_id);
}

/* Deletes or extends the lease only while this worker still holds it. */
static const char lease_release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";
static const char lease_renew_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

static void lease_value(sw_worker_t *w, const char *deployment_id, char *out, size_t size)
{
    snprintf(out, size, "%s:%s", w->node, deployment_id);
}

/* ---- logs: masked, numbered, flushed in chunks at most every 100 ms ---- */

static void log_flush(run_t *r);
static void run_persist(run_t *r);
static void run_system(run_t *r, const char *fmt, ...) SW_PRINTF(2, 3);

static void on_log_timer(uv_timer_t *t)
{
    log_flush(t->data);
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
            log_flush(r);
        if (!r->flushing)
            run_persist(r);
        return;
    }
    if (r->output_paused && r->pending.len < LOG_PENDING_MAX / 2 && r->build) {
        r->output_paused = false;
        sw_runtime_build_pause(r->w->rt, r->build, false);
    }
    if (r->pending.len && !uv_is_active((uv_handle_t *)&r->log_timer))
        uv_timer_start(&r->log_timer, on_log_timer, LOG_FLUSH_MS, 0);
}

static void log_flush(run_t *r)
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
static void app_log(sw_worker_t *w, const char *app_id, const secrets_t *sec, const char *stream,
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

static void app_system(sw_worker_t *w, const char *app_id, const char *fmt, ...) SW_PRINTF(3, 4);
static void app_system(sw_worker_t *w, const char *app_id, const char *fmt, ...)
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

static void run_log(run_t *r, const char *stream, const char *text, size_t len)
{
    if (r->relaunch) {
        app_log(r->w, r->app_id, r->secrets, stream, "slipwayd", text, len);
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
        run_system(r,
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
        sw_runtime_build_pause(r->w->rt, r->build, true);
    }
    if (!uv_is_active((uv_handle_t *)&r->log_timer) && !r->flushing)
        uv_timer_start(&r->log_timer, on_log_timer, LOG_FLUSH_MS, 0);
}

static void run_system(run_t *r, const char *fmt, ...) SW_PRINTF(2, 3);
static void run_system(run_t *r, const char *fmt, ...)
{
    sw_buf_t b = SW_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sw_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    run_log(r, "system", b.base, b.len);
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
static void publish_status(sw_hub_t *hub, const char *id, const char *status, const char *stage,
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

static void publish_end(sw_hub_t *hub, const char *id)
{
    char topic[64];
    snprintf(topic, sizeof(topic), "deployment:%s", id);
    char data[80];
    int n = snprintf(data, sizeof(data), "{\"deployment_id\":\"%s\"}", id);
    sw_applogs_publish(hub, topic, SW_HUB_END, 0, data, (size_t)n);
}

static void run_status(run_t *r, const char *status, const char *stage, int progress)
{
    if (r->relaunch)
        return;
    if (!r->stage || strcmp(r->stage, stage) != 0 || progress > r->progress) {
        r->stage = stage;
        r->progress = progress;
    }
    publish_status(r->w->hub, r->id, status, stage, progress, NULL);
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
                4, params, ignore_pg, NULL);
}

/* ---- instances: what the runtime tells of them ---- */

static void on_instance_line(sw_instance_t *in, const char *stream, const char *line, size_t len,
                             void *payload)
{
    app_log(payload, in->app_id, in->data, stream, in->name, line, len);
}

static void on_instance_crash(sw_instance_t *in, int64_t exit_status, int term_signal,
                              uint32_t delay_ms, void *payload)
{
    sw_worker_t *w = payload;
    char code[32];
    snprintf(code, sizeof(code), "%lld/%d", (long long)exit_status, term_signal);
    sw_log_kv(SW_LOG_WARN, NULL, "app instance exited; restarting", "app", in->app_id, "exit", code,
              NULL);
    if (term_signal)
        app_system(w, in->app_id, "instance %s was killed by signal %d; restarting in %u s",
                   in->name, term_signal, delay_ms / 1000);
    else
        app_system(w, in->app_id, "instance %s exited with code %lld; restarting in %u s", in->name,
                   (long long)exit_status, delay_ms / 1000);
}

static void on_instances_changed(void *payload)
{
    state_save(payload);
}

static void on_instance_gone(sw_instance_t *in, void *payload)
{
    sw_worker_t *w = payload;
    secrets_unref(in->data);
    in->data = NULL;
    if (w->stopping)
        maybe_stopped(w);
}

/* ---- the run ---- */

static void run_free(run_t *r)
{
    free(r->repo_url);
    free(r->ref);
    free(r->commit_sha);
    free(r->build_cmd);
    free(r->start_cmd);
    free(r->health_path);
    sw_strv_free(r->build_env);
    sw_strv_free(r->run_env);
    secrets_unref(r->secrets);
    sw_buf_free(&r->pending);
    free(r);
}

static void on_run_handle_closed(uv_handle_t *h)
{
    run_t *r = h->data;
    if (--r->closes == 0)
        run_free(r);
}

/* Frees the run once its handles are closed; only after its last log chunk is answered. */
static void run_close(run_t *r)
{
    r->closes = 2;
    uv_close((uv_handle_t *)&r->timer, on_run_handle_closed);
    uv_close((uv_handle_t *)&r->log_timer, on_run_handle_closed);
}

static void run_unlink(run_t *r)
{
    sw_worker_t *w = r->w;
    for (run_t **pp = &w->runs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            w->nruns--;
            break;
        }
    }
}

/* Acknowledges the entry, gives the lease back and lets the run go. */
/* The end of a run, in an order that survives a crash at any point: the last log lines,
 * then the final status, then the stream entry is acknowledged and the lease given back. */
static void run_done(run_t *r)
{
    sw_worker_t *w = r->w;
    char key[96], value[200];
    lease_key(r->app_id, key, sizeof(key));
    lease_value(w, r->id, value, sizeof(value));
    if (r->entry_id[0]) {
        const char *ack[] = {"XACK", sw_queue_stream(), SW_QUEUE_GROUP, r->entry_id};
        redis_cmd(w, NULL, NULL, 4, ack);
    }
    const char *del[] = {"EVAL", lease_release_script, "1", key, value};
    redis_cmd(w, NULL, NULL, 5, del);
    char app[40];
    snprintf(app, sizeof(app), "%s", r->app_id);
    run_unlink(r);
    run_close(r);
    if (w->stopping) {
        maybe_stopped(w);
        return;
    }
    retry_waiting(w, app);
    read_next(w);
}

static void on_persisted(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        ignore_pg(status, res, NULL);
        r->entry_id[0] = '\0'; /* not acknowledged: a later claim settles it */
    } else if (!r->relaunch) {
        /* The row says it now: a watcher that sees the end finds everything stored. */
        bool ok = strcmp(r->final_status, "success") == 0;
        publish_status(r->w->hub, r->id, r->final_status,
                       ok         ? "completed"
                       : r->stage ? r->stage
                                  : "queued",
                       ok ? 100 : r->progress, r->error);
        publish_end(r->w->hub, r->id);
        if (ok) {
            builds_prune(r); /* still holding the app's lease: no other run uses its builds */
            return;
        }
    }
    run_done(r);
}

static void run_persist(run_t *r)
{
    if (!r->final_status[0]) {
        run_done(r);
        return;
    }
    if (r->relaunch) {
        if (strcmp(r->final_status, "success") == 0) {
            run_done(r);
            return;
        }
        /* The release that served before the restart does not come back: say so. */
        sw_log_kv(SW_LOG_WARN, NULL, "app not relaunched", "app", r->app_id, "error", r->error,
                  NULL);
        const char *params[] = {r->app_id, r->id};
        if (sw_pg_query(r->w->pg,
                        "UPDATE apps SET status = 'crashed', endpoints = '{}', updated_at = now() "
                        "WHERE id = $1 AND active_deployment_id = $2 AND status = 'running'",
                        2, params, on_persisted, r) != 0)
            on_persisted(SW_EUNAVAIL, NULL, r);
        return;
    }
    const char *params[] = {r->id, r->final_status, r->error};
    if (sw_pg_query(r->w->pg,
                    "UPDATE deployments SET status = $2, error_message = $3, finished_at = now(), "
                    "stage = CASE WHEN $2 = 'success' THEN 'completed' ELSE stage END, "
                    "progress = CASE WHEN $2 = 'success' THEN 100 ELSE progress END, "
                    "updated_at = now() WHERE id = $1",
                    3, params, on_persisted, r) != 0)
        on_persisted(SW_EUNAVAIL, NULL, r);
}

/* Stops the run's timers and stores what is left: logs, then status, then the rest. */
static void run_release(run_t *r)
{
    r->finished = true;
    uv_timer_stop(&r->timer);
    uv_timer_stop(&r->log_timer);
    log_flush(r);
    if (!r->flushing)
        run_persist(r); /* otherwise the last chunk's answer does it */
}

static void run_finish(run_t *r, const char *status)
{
    r->state = RUN_DONE;
    for (int i = 0; i < r->nfresh; i++)
        if (r->fresh[i])
            sw_runtime_instance_stop(r->fresh[i]);
    r->nfresh = 0;
    if (r->handback && strcmp(status, "success") != 0) {
        /* Shutting down: the entry stays unacknowledged and the row pending, so the next
         * worker to claim it runs it from the start. */
        const char *params[] = {r->id};
        if (!r->relaunch) {
            sw_pg_query(
                r->w->pg,
                "UPDATE deployments SET status = 'pending', stage = 'queued', progress = 0, "
                "node_id = '', started_at = NULL, updated_at = now() WHERE id = $1 "
                "AND status IN ('building', 'deploying')",
                1, params, ignore_pg, NULL);
            publish_status(r->w->hub, r->id, "pending", "queued", 0, NULL);
        }
        run_system(r, "handed back to the queue: the worker is stopping");
        r->entry_id[0] = '\0';
        run_release(r);
        return;
    }
    snprintf(r->final_status, sizeof(r->final_status), "%s", status);
    if (!r->relaunch)
        for (int i = 0; i < FINISHED_MAX; i++)
            if (strcmp(status, finished_names[i]) == 0)
                r->w->finished[i]++;
    if (r->logcap.cut)
        run_system(r, "not stored (past the cut): %llu lines, %llu bytes of output",
                   (unsigned long long)r->logcap.skipped_lines,
                   (unsigned long long)r->logcap.skipped_bytes);
    run_system(r, "deployment %s%s%s", status, r->error[0] ? ": " : "", r->error);
    run_release(r);
}

static void run_fail(run_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    sw_utf8_copy(r->error, sizeof(r->error), r->error, strlen(r->error)); /* stored as text */
    run_finish(r, r->cancelled ? "cancelled" : "failed");
}

/* ---- release: switch traffic once every new instance is healthy ---- */

static void on_switched(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        run_fail(r, "switching traffic failed: %s",
                 res ? sw_pg_result_error(res) : sw_strerror(status));
        return;
    }
    if (r->relaunch && sw_pg_result_rows(res) != 1) {
        run_fail(r, "the app was stopped or released again meanwhile");
        return;
    }
    /* The new instances serve now: the old ones of this app go. */
    run_status(r, "deploying", "stopping_old", 95);
    sw_worker_t *w = r->w;
    for (sw_instance_t *in = w->rt->instances, *next; in; in = next) {
        next = in->next;
        if (strcmp(in->app_id, r->app_id) != 0 || strcmp(in->deployment_id, r->id) == 0 ||
            in->stopping)
            continue;
        run_system(r, "stopping the previous instance on port %u", in->port);
        sw_runtime_instance_stop(in);
    }
    r->nfresh = 0; /* they belong to the app now */
    r->error[0] = '\0';
    state_save(w);
    run_finish(r, "success");
}

static void switch_traffic(run_t *r)
{
    r->state = RUN_SWITCHING;
    run_status(r, "deploying", "switching_traffic", 90);
    sw_buf_t endpoints = SW_BUF_INIT;
    sw_buf_append_char(&endpoints, '{');
    for (int i = 0; i < r->nfresh; i++)
        sw_buf_printf(&endpoints, "%s%s", i ? "," : "", r->fresh[i]->endpoint);
    sw_buf_append_char(&endpoints, '}');
    const char *params[] = {r->app_id, r->id, endpoints.base, r->rollback ? "true" : "false"};
    if (r->relaunch) {
        /* The same release serves again, on new ports. */
        sw_pg_query(r->w->pg,
                    "UPDATE apps SET endpoints = $3::text[], updated_at = now() WHERE id = $1 "
                    "AND active_deployment_id = $2 AND status = 'running' RETURNING id",
                    3, params, on_switched, r);
        sw_buf_free(&endpoints);
        return;
    }
    /* A rollback marks the release it replaces rolled_back. */
    sw_pg_query(r->w->pg,
                "WITH a AS (UPDATE apps SET endpoints = $3::text[], status = 'running', "
                "active_deployment_id = $2, updated_at = now() WHERE id = $1 RETURNING id), "
                "o AS (UPDATE deployments SET is_active = (id = $2), status = CASE WHEN $4::bool "
                "AND is_active AND id <> $2 THEN 'rolled_back' ELSE status END WHERE app_id = $1 "
                "AND (is_active OR id = $2) RETURNING id) "
                "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM o)",
                4, params, on_switched, r);
    sw_buf_free(&endpoints);
}

static void probe_next(run_t *r);
static void on_probe_timer(uv_timer_t *t);

static void on_probe(int status, int http_status, void *payload)
{
    run_t *r = payload;
    r->probe = NULL;
    if (r->state != RUN_CHECKING)
        return;
    if (r->cancelled) {
        run_fail(r, "cancelled during the health check");
        return;
    }
    int i = r->nhealthy;
    if (status == 0 && http_status >= 200 && http_status < 300) {
        r->nhealthy++;
        run_system(r, "instance on port %u is healthy", r->fresh[i]->port);
        if (i + 1 == r->nfresh) {
            switch_traffic(r);
            return;
        }
    }
    if (uv_now(r->w->loop) >= r->health_deadline) {
        char d[32];
        run_fail(r,
                 "health check failed: timed out after %s (GET %s on port %u never answered 2xx)",
                 duration(r->w->cfg->health_timeout_ms, d, sizeof(d)), r->health_path,
                 r->fresh[i]->port);
        return;
    }
    uv_timer_start(&r->timer, on_probe_timer, HEALTH_POLL_MS, 0);
}

static void probe_next(run_t *r)
{
    if (r->state != RUN_CHECKING)
        return;
    if (sw_runtime_health(r->fresh[r->nhealthy], r->health_path, on_probe, r, &r->probe) != 0)
        run_fail(r, "health check could not start");
}

static void on_probe_timer(uv_timer_t *t)
{
    probe_next(t->data);
}

static void release(run_t *r)
{
    sw_worker_t *w = r->w;
    r->state = RUN_STARTING;
    run_status(r, "deploying", "starting_new", 70);
    if (!r->start_cmd[0]) {
        run_fail(r, "the app has no start_command");
        return;
    }
    for (int i = 0; i < r->replicas && i < MAX_INSTANCES; i++) {
        char name[24];
        snprintf(name, sizeof(name), "%.8s-%d", r->id, i + 1);
        sw_instance_opts_t o = {
            .app_id = r->app_id,
            .deployment_id = r->id,
            .name = name,
            .dir = r->build_dir,
            .run_uid = r->run_uid,
            .command = r->start_cmd,
            .env = r->run_env,
            .data = r->secrets,
        };
        sw_instance_t *in;
        if (sw_runtime_instance_new(w->rt, &o, &in) != 0) {
            run_fail(r, "no free port in SLIPWAY_PORT_RANGE %s", w->cfg->port_range);
            return;
        }
        secrets_ref(r->secrets);
        r->fresh[r->nfresh++] = in;
        run_system(r, "starting instance %d on port %u", i + 1, in->port);
        if (sw_runtime_instance_start(in) != 0) {
            run_fail(r, "the start command could not be spawned");
            return;
        }
    }
    r->state = RUN_CHECKING;
    run_status(r, "deploying", "health_check", 80);
    r->health_deadline = uv_now(w->loop) + w->cfg->health_timeout_ms;
    uv_timer_start(&r->timer, on_probe_timer, 50, 0);
}

/* ---- build ---- */

static void on_build_line(const char *stream, const char *line, size_t len, void *payload)
{
    run_log(payload, stream, line, len);
}

static void on_build_exit(int64_t exit_status, int term_signal, bool timed_out, void *payload)
{
    run_t *r = payload;
    r->build = NULL;
    sw_histogram_observe(&r->w->builds, (double)(uv_hrtime() - r->build_started_ns) / 1e9);
    state_save(r->w);
    if (r->cancelled) {
        run_fail(r, "cancelled during the build");
        return;
    }
    if (timed_out) {
        char d[32];
        run_fail(r, "build timed out after %s",
                 duration(r->w->cfg->build_timeout_ms, d, sizeof(d)));
        return;
    }
    if (term_signal) {
        run_fail(r, "build failed: killed by signal %d", term_signal);
        return;
    }
    if (exit_status != 0) {
        run_fail(r, "build failed: exit code %lld", (long long)exit_status);
        return;
    }
    run_system(r, "build succeeded");
    release(r);
}

static void build(run_t *r)
{
    r->state = RUN_BUILDING;
    run_status(r, "building", "building_image", 40);
    if (!r->build_cmd[0]) {
        run_system(r, "no build_command: nothing to build");
        release(r);
        return;
    }
    sw_runtime_build_opts_t o = {
        .dir = r->build_dir,
        .run_uid = r->run_uid,
        .command = r->build_cmd,
        .env = r->build_env,
        .timeout_ms = r->w->cfg->build_timeout_ms,
        .kill_grace_ms = 500,
        .on_line = on_build_line,
        .on_exit = on_build_exit,
        .payload = r,
    };
    run_system(r, "running the build command");
    r->build_started_ns = uv_hrtime();
    if (sw_runtime_build(r->w->rt, &o, &r->build) != 0) {
        r->build = NULL;
        run_fail(r, "build failed: the build command could not be spawned");
        return;
    }
    state_save(r->w);
}

/* ---- fetch ---- */

static void on_git_progress(unsigned received, unsigned total, void *payload)
{
    run_t *r = payload;
    if (total)
        run_status(r, "building", "cloning_repo", (int)(5 + 30 * (uint64_t)received / total));
}

static void on_fetched(int status, const sw_git_result_t *res, const char *error, void *payload)
{
    run_t *r = payload;
    r->git = NULL;
    if (r->cancelled || status == -ECANCELED) {
        run_fail(r, "cancelled while fetching the repository");
        return;
    }
    if (status == -ETIMEDOUT) {
        char d[32];
        run_fail(r, "clone timed out after %s",
                 duration(r->w->cfg->clone_timeout_ms, d, sizeof(d)));
        return;
    }
    if (status != 0) {
        run_fail(r, "clone failed: %s", error && *error ? error : sw_strerror(status));
        return;
    }
    const char *params[] = {r->id, res->commit_hash, res->commit_message, res->commit_author};
    sw_pg_query(r->w->pg,
                "UPDATE deployments SET commit_hash = $2, commit_message = $3, "
                "commit_author = $4, updated_at = now() WHERE id = $1",
                4, params, ignore_pg, NULL);
    run_system(r, "checked out %.12s", res->commit_hash);
    int rc = sw_runtime_adopt(r->w->rt, r->build_dir, r->run_uid, false);
    if (rc != 0) {
        run_fail(r, "could not hand the checkout to the app's uid: %s", sw_strerror(rc));
        return;
    }
    build(r);
}

/* A host key trusted on first use: recorded, so a changed one fails the next fetch. */
static void on_host_key(const char *host, const char *key_type, const char *sha256, void *payload)
{
    run_t *r = payload;
    const char *params[] = {r->app_id, host, key_type[0] ? key_type : NULL, sha256};
    sw_pg_query(r->w->pg,
                "INSERT INTO app_known_hosts (app_id, host, key_type, sha256, source) "
                "VALUES ($1, $2, $3, $4, 'first_use') ON CONFLICT DO NOTHING",
                4, params, ignore_pg, NULL);
    run_system(r, "trusted the host key of %s on first use: %s", host, sha256);
}

static bool is_ssh_url(const char *url)
{
    char host[SW_GIT_HOST_MAX];
    return sw_git_ssh_host(url, host) == 0;
}

/* Opens a credential sealed with "<what>:<app id>" into out; false after failing the run. */
static bool open_credential(run_t *r, const char *sealed, const char *what, const char *name,
                            sw_buf_t *out)
{
    char ad[96];
    snprintf(ad, sizeof(ad), "%s:%s", what, r->app_id);
    if (sw_secretbox_open(r->w->box, sealed, strlen(sealed), ad, out) == 0)
        return true;
    run_fail(r, "clone failed: the app's %s cannot be decrypted (was the master key changed?)",
             name);
    return false;
}

static void buf_wipe(sw_buf_t *b)
{
    if (b->base)
        sodium_memzero(b->base, b->cap);
    sw_buf_free(b);
}

/* The app's credentials (columns: sealed token, sealed deploy key, known hosts as
 * "host sha256" lines), opened only for the kind of URL that uses them; then the fetch. */
static void on_git_credentials(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    sw_worker_t *w = r->w;
    if (r->cancelled) {
        run_fail(r, "cancelled while fetching the repository");
        return;
    }
    if (status != 0) {
        run_fail(r, "clone failed: could not read the app's git credentials: %s",
                 sw_strerror(status));
        return;
    }
    if (sw_pg_result_rows(res) != 1) {
        run_fail(r, "clone failed: the app no longer exists");
        return;
    }
    char hash[SW_TOKEN_HASH_HEX], mirror[512], parent[512], builds[512];
    sw_token_hash(r->repo_url, strlen(r->repo_url), hash);
    /* A data directory too long for these paths is refused rather than cut short. */
    if (snprintf(mirror, sizeof(mirror), "%s/repos/%.32s.git", w->cfg->data_dir, hash) >=
            (int)sizeof(mirror) ||
        snprintf(parent, sizeof(parent), "%s/builds/%s", w->cfg->data_dir, r->app_id) >=
            (int)sizeof(parent) ||
        snprintf(builds, sizeof(builds), "%s/builds", w->cfg->data_dir) >= (int)sizeof(builds)) {
        run_fail(r, "clone failed: SLIPWAY_DATA_DIR is too long");
        return;
    }
    const char *token_sealed = sw_pg_result_value(res, 0, 0);
    const char *key_sealed = sw_pg_result_value(res, 0, 1);
    const char *known_text = sw_pg_result_value(res, 0, 2);
    sw_buf_t token = SW_BUF_INIT, key = SW_BUF_INIT;
    bool https = strncmp(r->repo_url, "https://", 8) == 0;
    if (https && token_sealed && *token_sealed &&
        !open_credential(r, token_sealed, "app_git_token", "git token", &token))
        goto out;
    if (is_ssh_url(r->repo_url) && key_sealed && *key_sealed &&
        !open_credential(r, key_sealed, "app_deploy_key", "deploy key", &key))
        goto out;

    /* known_text: "host sha256" lines; split in place in a copy. */
    char *known_copy = dupstr(known_text ? known_text : "");
    sw_git_known_host_t *known = NULL;
    size_t nknown = 0, cap = 0;
    for (char *save = NULL, *line = strtok_r(known_copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        if (nknown == cap) {
            cap = cap ? cap * 2 : 8;
            known = sw_realloc(known, cap * sizeof(*known));
        }
        known[nknown++] = (sw_git_known_host_t){.host = line, .sha256 = sp + 1};
    }

    mkdir(builds, 0700);
    mkdir(parent, 0700);
    sw_git_opts_t o = {
        .url = r->repo_url,
        /* An abbreviated sha resolves like a ref; a full one is looked up as a commit. */
        .ref = strlen(r->commit_sha) == 40 ? NULL
               : r->commit_sha[0]          ? r->commit_sha
                                           : r->ref,
        .commit_sha = strlen(r->commit_sha) == 40 ? r->commit_sha : NULL,
        .mirror_dir = mirror,
        .checkout_dir = r->build_dir,
        .https_token = token.len ? token.base : NULL,
        .ssh_private_key = key.len ? key.base : NULL,
        .ssh_key_dir = w->cfg->data_dir,
        .known_hosts = known,
        .n_known_hosts = nknown,
        .host_key = on_host_key,
        .allow_file = w->cfg->allow_file_repos,
        .allow_private = w->cfg->git_allow_private,
        .timeout_ms = w->cfg->clone_timeout_ms,
    };
    run_system(r, "fetching %s%s", r->commit_sha[0] ? r->commit_sha : r->ref,
               key.len     ? " with the app's deploy key"
               : token.len ? " with the app's token"
                           : "");
    int rc = sw_git_checkout(w->loop, &o, on_git_progress, on_fetched, r, &r->git);
    free(known);
    free(known_copy);
    if (rc != 0) {
        r->git = NULL;
        run_fail(r, "clone failed: %s", sw_strerror(rc));
    }
out:
    buf_wipe(&token);
    buf_wipe(&key);
}

static void fetch(run_t *r)
{
    r->state = RUN_FETCHING;
    if (!r->repo_url[0]) {
        run_fail(r, "clone failed: the app has no repo_url");
        return;
    }
    const char *params[] = {r->app_id};
    sw_pg_query(r->w->pg,
                "SELECT a.git_token_sealed, k.private_sealed, (SELECT string_agg(h.host || ' ' "
                "|| h.sha256, E'\\n') FROM app_known_hosts h WHERE h.app_id = a.id) "
                "FROM apps a LEFT JOIN app_deploy_keys k ON k.app_id = a.id WHERE a.id = $1",
                1, params, on_git_credentials, r);
}

/* ---- claim: the row, then the app's env ---- */

static char **base_env(const char *home)
{
    char **env = sw_calloc(SECRETS_MAX + 8, sizeof(char *));
    env[0] = sw_strdup("PATH=/usr/local/bin:/usr/bin:/bin");
    char h[600];
    snprintf(h, sizeof(h), "HOME=%s", home);
    env[1] = sw_strdup(h);
    env[2] = sw_strdup("LANG=C.UTF-8");
    return env;
}

static void env_push(char **env, const char *key, const char *value, size_t len)
{
    size_t n = 0;
    while (env[n])
        n++;
    if (n >= SECRETS_MAX + 6)
        return;
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_printf(&b, "%s=", key);
    sw_buf_append(&b, value, len);
    env[n] = sw_buf_steal(&b);
}

static void on_env(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (r->cancelled) {
        run_fail(r, "cancelled before the fetch");
        return;
    }
    if (status != 0) {
        run_fail(r, "could not read the app's env vars: %s", sw_strerror(status));
        return;
    }
    if (snprintf(r->build_dir, sizeof(r->build_dir), "%s/builds/%s/%s", r->w->cfg->data_dir,
                 r->app_id,
                 r->rollback_of[0] ? r->rollback_of : r->id) >= (int)sizeof(r->build_dir)) {
        run_fail(r, "SLIPWAY_DATA_DIR is too long");
        return;
    }
    r->build_env = base_env(r->build_dir);
    r->run_env = base_env(r->build_dir);
    secrets_t *sec = r->secrets = sw_calloc(1, sizeof(*sec));
    sec->refs = 1;
    for (int i = 0; i < sw_pg_result_rows(res) && sec->n < SECRETS_MAX; i++) {
        const char *key = sw_pg_result_value(res, i, 0);
        const char *sealed = sw_pg_result_value(res, i, 1);
        char ad[320];
        sw_buf_t value = SW_BUF_INIT;
        snprintf(ad, sizeof(ad), "app_env:%s:%s", r->app_id, key);
        if (sw_secretbox_open(r->w->box, sealed, strlen(sealed), ad, &value) != 0) {
            sw_buf_free(&value);
            run_fail(r, "env var %s cannot be decrypted (was the master key changed?)", key);
            return;
        }
        if (!value.base)
            sw_buf_reserve(&value, 0);
        if (strcmp(sw_pg_result_value(res, i, 2), "t") == 0)
            env_push(r->build_env, key, value.base, value.len);
        if (strcmp(sw_pg_result_value(res, i, 3), "t") == 0)
            env_push(r->run_env, key, value.base, value.len);
        sec->v[sec->n++] = sw_strndup(value.base, value.len);
        sodium_memzero(value.base, value.cap);
        sw_buf_free(&value);
    }
    if (r->rollback_of[0]) {
        struct stat st;
        if (stat(r->build_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            run_fail(r,
                     "%s failed: the build of deployment %s is no longer on this node (pruned: "
                     "only the last %u builds of an app are kept, or built on another node)",
                     r->relaunch   ? "relaunch"
                     : r->rollback ? "rollback"
                                   : "release",
                     r->rollback_of, r->w->cfg->keep_builds);
            return;
        }
        /* A build made before its app had a uid of its own (an upgrade) becomes the app's. */
        int rc = sw_runtime_adopt(r->w->rt, r->build_dir, r->run_uid, true);
        if (rc != 0) {
            run_fail(r, "could not hand the build to the app's uid: %s", sw_strerror(rc));
            return;
        }
        run_system(r, "%s the build of deployment %s",
                   r->rollback ? "rolling back to" : "releasing again", r->rollback_of);
        release(r); /* no fetch, no build: the earlier artifact as it was */
        return;
    }
    fetch(r);
}

/* Deployments failed as abandoned (RETURNING id, stage, progress, error_message): their
 * watchers hear the end. */
static void on_abandoned(int status, sw_pg_result_t *res, void *payload)
{
    sw_hub_t *hub = payload;
    if (status == 0) {
        for (int i = 0; i < sw_pg_result_rows(res); i++) {
            const char *id = sw_pg_result_value(res, i, 0);
            publish_status(hub, id, "failed", sw_pg_result_value(res, i, 1),
                           atoi(sw_pg_result_value(res, i, 2)), sw_pg_result_value(res, i, 3));
            publish_end(hub, id);
        }
    } else {
        ignore_pg(status, res, NULL);
    }
}

static void fail_abandoned(sw_worker_t *w, const char *sql, int nparams, const char *const *params)
{
    sw_pg_query(w->pg, sql, nparams, params, w->hub ? on_abandoned : ignore_pg, w->hub);
}

static void env_query(run_t *r)
{
    const char *params[] = {r->app_id};
    sw_pg_query(r->w->pg,
                "SELECT key, value_sealed, build_time, runtime FROM app_env WHERE app_id = $1 "
                "ORDER BY key",
                1, params, on_env, r);
}

/* Why SLIPWAY_PROCESS_RUNTIME forbids this deployment, or NULL. A push hook's deployment has
 * no one behind it, so under "admins" it does not run either. */
static const char *runtime_refusal(const run_t *r)
{
    switch (r->w->rt->policy) {
    case SW_RUNTIME_OFF:
        return "the process runtime is off on this node (SLIPWAY_PROCESS_RUNTIME=off)";
    case SW_RUNTIME_ADMINS:
        if (strcmp(r->creator_role, "owner") == 0 || strcmp(r->creator_role, "admin") == 0)
            return NULL;
        return "only instance admins may deploy with the process runtime on this node "
               "(SLIPWAY_PROCESS_RUNTIME=admins)";
    default:
        return NULL;
    }
}

#define UID_TRIES 4

static void uid_allocate(run_t *r);

static void on_uid(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    const char *uid =
        status == 0 && sw_pg_result_rows(res) == 1 ? sw_pg_result_value(res, 0, 0) : NULL;
    if (uid) {
        r->run_uid = atol(uid);
        env_query(r);
        return;
    }
    /* Two apps took the same free uid at once: the UNIQUE constraint failed one; again. */
    if (status != 0 && ++r->uid_tries < UID_TRIES) {
        uid_allocate(r);
        return;
    }
    if (status != 0)
        run_fail(r, "could not allocate a uid for the app: %s", sw_strerror(status));
    else
        run_fail(r,
                 "could not allocate a uid for the app: every uid of SLIPWAY_APP_UID_RANGE "
                 "%s is taken",
                 r->w->cfg->app_uid_range);
}

/* The lowest uid of the range never given to any app, kept by the app from then on. */
static void uid_allocate(run_t *r)
{
    char lo[16], hi[16];
    snprintf(lo, sizeof(lo), "%u", r->w->rt->uid_lo);
    snprintf(hi, sizeof(hi), "%u", r->w->rt->uid_hi);
    const char *params[] = {r->app_id, lo, hi};
    /* app_uids never forgets a uid, so a deleted app's is never given again. */
    sw_pg_query(r->w->pg,
                "WITH a AS (SELECT run_uid FROM apps WHERE id = $1), "
                "n AS (INSERT INTO app_uids (uid, app_id) SELECT g, $1 FROM "
                "generate_series($2::int, $3::int) g WHERE (SELECT run_uid FROM a) IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM app_uids u WHERE u.uid = g) ORDER BY g LIMIT 1 "
                "RETURNING uid), "
                "u AS (UPDATE apps SET run_uid = n.uid FROM n WHERE id = $1 RETURNING run_uid) "
                "SELECT coalesce((SELECT run_uid FROM a), (SELECT run_uid FROM u))",
                3, params, on_uid, r);
}

/* The app's uid (allocated on its first run where uids are switched), then its env. */
static void run_identify(run_t *r)
{
    const sw_runtime_t *rt = r->w->rt;
    if (rt->own_uids && r->run_uid > 0 &&
        (r->run_uid < (long)rt->uid_lo || r->run_uid > (long)rt->uid_hi)) {
        /* Given by a node with another range: this node cannot vouch for it. */
        run_fail(r, "the app's uid %ld is outside this node's SLIPWAY_APP_UID_RANGE %s", r->run_uid,
                 r->w->cfg->app_uid_range);
        return;
    }
    if (rt->own_uids && r->run_uid <= 0)
        uid_allocate(r);
    else
        env_query(r);
}

/* What a run needs from its app and deployment, in the claim's column order. */
static void run_fields(run_t *r, sw_pg_result_t *res)
{
    r->repo_url = dupstr(sw_pg_result_value(res, 0, 0));
    r->ref = dupstr(sw_pg_result_value(res, 0, 1));
    r->commit_sha = dupstr(sw_pg_result_value(res, 0, 2));
    r->build_cmd = dupstr(sw_pg_result_value(res, 0, 3));
    r->start_cmd = dupstr(sw_pg_result_value(res, 0, 4));
    r->health_path = dupstr(sw_pg_result_value(res, 0, 5));
    r->replicas = atoi(sw_pg_result_value(res, 0, 6));
    if (r->replicas < 1)
        r->replicas = 1;
    snprintf(r->app_id, sizeof(r->app_id), "%s", sw_pg_result_value(res, 0, 7));
    const char *uid = sw_pg_result_value(res, 0, 10);
    const char *role = sw_pg_result_value(res, 0, 11);
    r->run_uid = uid ? atol(uid) : 0;
    snprintf(r->creator_role, sizeof(r->creator_role), "%s", role ? role : "");
}

static void on_claimed(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        /* The row could not be read: leave the entry pending for a later claim. */
        r->entry_id[0] = '\0';
        r->state = RUN_DONE;
        run_release(r);
        return;
    }
    if (sw_pg_result_rows(res) != 1) {
        /* Cancelled, finished, or running under a lapsed lease: settled below, then acked. */
        const char *params[] = {r->id};
        fail_abandoned(r->w,
                       "UPDATE deployments SET status = 'failed', finished_at = now(), "
                       "error_message = 'abandoned: the worker running it stopped', "
                       "updated_at = now() WHERE id = $1 AND status IN ('building', 'deploying') "
                       "RETURNING id, stage, progress, error_message",
                       1, params);
        r->state = RUN_DONE;
        run_release(r);
        return;
    }
    run_fields(r, res);
    const char *rb = sw_pg_result_value(res, 0, 8);
    const char *again = sw_pg_result_value(res, 0, 9);
    r->rollback = rb != NULL;
    snprintf(r->rollback_of, sizeof(r->rollback_of), "%s", again ? again : rb ? rb : "");
    run_system(r, "deployment claimed by %s", r->w->node);
    if (r->cancelled) {
        run_fail(r, "cancelled before the fetch");
        return;
    }
    const char *refusal = runtime_refusal(r);
    if (refusal) {
        run_fail(r, "%s", refusal);
        return;
    }
    run_identify(r);
}

static run_t *run_new(sw_worker_t *w, const char *entry_id, const char *deployment_id,
                      const char *app_id)
{
    run_t *r = sw_calloc(1, sizeof(*r));
    r->w = w;
    snprintf(r->entry_id, sizeof(r->entry_id), "%s", entry_id);
    snprintf(r->id, sizeof(r->id), "%s", deployment_id);
    snprintf(r->app_id, sizeof(r->app_id), "%s", app_id);
    uv_timer_init(w->loop, &r->timer);
    uv_timer_init(w->loop, &r->log_timer);
    r->timer.data = r;
    r->log_timer.data = r;
    r->next = w->runs;
    w->runs = r;
    w->nruns++;
    return r;
}

static void run_start(sw_worker_t *w, const char *entry_id, const char *deployment_id,
                      const char *app_id)
{
    run_t *r = run_new(w, entry_id, deployment_id, app_id);
    const char *params[] = {r->id, w->node};
    sw_pg_query(w->pg,
                "UPDATE deployments d SET status = 'building', stage = 'cloning_repo', "
                "progress = 5, started_at = now(), node_id = $2, updated_at = now() "
                "FROM apps a WHERE d.id = $1 AND a.id = d.app_id AND d.status = 'pending' "
                "AND NOT d.cancel_requested RETURNING a.repo_url, d.ref, d.commit_sha, "
                "a.build_command, a.start_command, a.health_check_path, a.replicas, a.id, "
                "d.rolled_back_from, d.build_of, a.run_uid, "
                "(SELECT u.role FROM users u WHERE u.id = d.created_by)",
                2, params, on_claimed, r);
}

/* ---- entries and leases ---- */

struct entry {
    entry_t *next; /* in w->waiting */
    sw_worker_t *w;
    char entry_id[64];
    char deployment_id[40];
    char app_id[40];
    bool relaunch; /* not from the stream: the app's active release, to start again */
};

/* ---- relaunch: the releases this node served before it restarted ---- */

static void on_relaunch_row(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0 || sw_pg_result_rows(res) != 1 || r->w->stopping) {
        /* Stopped, deleted or released again meanwhile: nothing to bring back. */
        r->state = RUN_DONE;
        run_release(r);
        return;
    }
    /* The row: repo_url, ref, commit_sha, build_command, start_command, health path,
     * replicas, app id, rolled_back_from, build_of; nothing is fetched or built. */
    run_fields(r, res);
    snprintf(r->rollback_of, sizeof(r->rollback_of), "%s", sw_pg_result_value(res, 0, 9));
    run_system(r, "slipwayd restarted: starting the active release (deployment %s) again", r->id);
    const char *refusal = runtime_refusal(r);
    if (refusal) {
        run_fail(r, "%s", refusal);
        return;
    }
    run_identify(r);
}

static void relaunch_start(sw_worker_t *w, entry_t *e)
{
    run_t *r = run_new(w, "", e->deployment_id, e->app_id);
    r->relaunch = true;
    for (sw_instance_t *in = w->rt->instances; in; in = in->next) {
        if (strcmp(in->app_id, e->app_id) == 0 && !in->stopping) {
            /* A deployment already started it again. */
            r->state = RUN_DONE;
            run_release(r);
            return;
        }
    }
    const char *params[] = {e->app_id, e->deployment_id};
    sw_pg_query(w->pg,
                "SELECT '', '', '', '', a.start_command, a.health_check_path, a.replicas, a.id, "
                "NULL, coalesce(d.build_of, d.id), a.run_uid, "
                "(SELECT u.role FROM users u WHERE u.id = d.created_by) FROM apps a "
                "JOIN deployments d "
                "ON d.id = a.active_deployment_id WHERE a.id = $1 AND d.id = $2 "
                "AND a.status = 'running'",
                2, params, on_relaunch_row, r);
}

#define WAITING_MAX 1024

static void lease_try(sw_worker_t *w, entry_t *e);

static void on_lease(int status, const sw_redis_reply_t *reply, void *payload)
{
    entry_t *e = payload;
    sw_worker_t *w = e->w;
    w->leasing--;
    if (!w->stopping && status == 0 && reply && reply->type == SW_REDIS_STATUS) {
        if (e->relaunch)
            relaunch_start(w, e);
        else
            run_start(w, e->entry_id, e->deployment_id, e->app_id);
        free(e);
    } else if (!w->stopping && w->nwaiting < WAITING_MAX) {
        /* Another deployment of this app holds the lease: wait our turn, in order. */
        e->next = NULL;
        entry_t **pp = &w->waiting;
        while (*pp)
            pp = &(*pp)->next;
        *pp = e;
        w->nwaiting++;
    } else {
        free(e); /* the entry stays pending in the group; XAUTOCLAIM brings it back */
    }
    read_next(w);
}

static void lease_try(sw_worker_t *w, entry_t *e)
{
    char key[96], value[200], ttl[24];
    lease_key(e->app_id, key, sizeof(key));
    lease_value(w, e->deployment_id, value, sizeof(value));
    snprintf(ttl, sizeof(ttl), "%u", w->cfg->lease_ttl_ms);
    const char *argv[] = {"SET", key, value, "NX", "PX", ttl};
    w->leasing++;
    redis_cmd(w, on_lease, e, 6, argv);
}

/* Retries waiting entries (of one app, or all when app_id is NULL), oldest first. */
static void retry_waiting(sw_worker_t *w, const char *app_id)
{
    entry_t **pp = &w->waiting;
    while (*pp && w->nruns + w->leasing < w->cfg->worker_concurrency) {
        entry_t *e = *pp;
        if (app_id && strcmp(e->app_id, app_id) != 0) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        w->nwaiting--;
        lease_try(w, e);
        if (app_id)
            break; /* one per app at a time anyway */
    }
}

static void handle_entry(sw_worker_t *w, const sw_redis_reply_t *entry)
{
    if (entry->type != SW_REDIS_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != SW_REDIS_STRING || entry->element[1]->type != SW_REDIS_ARRAY)
        return;
    entry_t *e = sw_calloc(1, sizeof(*e));
    e->w = w;
    snprintf(e->entry_id, sizeof(e->entry_id), "%.*s", (int)entry->element[0]->len,
             entry->element[0]->str);
    const sw_redis_reply_t *fields = entry->element[1];
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const sw_redis_reply_t *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != SW_REDIS_STRING || v->type != SW_REDIS_STRING || v->len >= 40)
            continue;
        if (k->len == 10 && memcmp(k->str, "deployment", 10) == 0)
            snprintf(e->deployment_id, sizeof(e->deployment_id), "%.*s", (int)v->len, v->str);
        else if (k->len == 3 && memcmp(k->str, "app", 3) == 0)
            snprintf(e->app_id, sizeof(e->app_id), "%.*s", (int)v->len, v->str);
    }
    for (run_t *r = w->runs; r; r = r->next) {
        if (strcmp(r->id, e->deployment_id) == 0) {
            free(e); /* already ours and running */
            return;
        }
    }
    for (entry_t *q = w->waiting; q; q = q->next) {
        if (strcmp(q->entry_id, e->entry_id) == 0) {
            free(e); /* already waiting here */
            return;
        }
    }
    if (!e->deployment_id[0] || !e->app_id[0]) {
        const char *ack[] = {"XACK", sw_queue_stream(), SW_QUEUE_GROUP, e->entry_id};
        redis_cmd(w, NULL, NULL, 4, ack);
        free(e);
        return;
    }
    lease_try(w, e);
}

static void on_read(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_worker_t *w = payload;
    w->reading = false;
    if (w->stopping)
        return;
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY) {
        if (reply && reply->type == SW_REDIS_ERROR && strstr(reply->str, "NOGROUP"))
            w->group_ready = false;
        return; /* nil (BLOCK timed out) or an error: the tick reads again */
    }
    /* [[stream, [[id, [k, v, ...]], ...]]] */
    for (size_t s = 0; s < reply->elements; s++) {
        const sw_redis_reply_t *stream = reply->element[s];
        if (stream->type != SW_REDIS_ARRAY || stream->elements != 2)
            continue;
        const sw_redis_reply_t *entries = stream->element[1];
        for (size_t i = 0; i < entries->elements; i++)
            handle_entry(w, entries->element[i]);
    }
    read_next(w);
}

static void read_next(sw_worker_t *w)
{
    if (w->stopping || w->reading || w->leasing || !w->group_ready || !w->swept ||
        w->nruns >= w->cfg->worker_concurrency || !sw_redis_up(w->redis))
        return;
    w->reading = true;
    const char *argv[] = {"XREADGROUP", "GROUP", SW_QUEUE_GROUP, w->node,   "COUNT",
                          "1",          "BLOCK", READ_BLOCK_MS,  "STREAMS", sw_queue_stream(),
                          ">"};
    redis_cmd(w, on_read, w, 11, argv);
}

/* ---- the tick: group, leases, claims, reconciliation ---- */

static void on_group(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_worker_t *w = payload;
    if (status == 0 && reply &&
        (reply->type == SW_REDIS_STATUS ||
         (reply->type == SW_REDIS_ERROR && strstr(reply->str, "BUSYGROUP")))) {
        w->group_ready = true;
        read_next(w);
    }
}

static void on_claim(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_worker_t *w = payload;
    /* [next-cursor, [[id, fields], ...], [deleted ids]] */
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY || reply->elements < 2 ||
        w->stopping)
        return;
    const sw_redis_reply_t *entries = reply->element[1];
    for (size_t i = 0; i < entries->elements && w->nruns < w->cfg->worker_concurrency; i++)
        handle_entry(w, entries->element[i]);
}

/* Worker-level queries (a run's have the run to keep alive) are counted, so a stopping worker
 * is never freed under one: worker_query_done() comes first in each callback, and false
 * means the worker is stopping and the answer is to be dropped. */
static int worker_query(sw_worker_t *w, const char *sql, int nparams, const char *const *params,
                        sw_pg_cb cb)
{
    int rc = sw_pg_query(w->pg, sql, nparams, params, cb, w);
    if (rc == 0)
        w->pg_pending++;
    return rc;
}

static bool worker_query_done(sw_worker_t *w)
{
    w->pg_pending--;
    if (!w->stopping)
        return true;
    maybe_stopped(w);
    return false;
}

static void on_unqueued(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    if (!worker_query_done(w) || status != 0)
        return;
    for (int i = 0; i < sw_pg_result_rows(res); i++)
        sw_queue_push(w->pg, w->redis, sw_pg_result_value(res, i, 0),
                      sw_pg_result_value(res, i, 1));
}

static void on_queue_depth(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    if (!worker_query_done(w) || status != 0 || sw_pg_result_rows(res) != 1)
        return;
    w->queue_depth = atoll(sw_pg_result_value(res, 0, 0));
}

static void reconcile(sw_worker_t *w)
{
    /* Triggers that Redis did not take: put them on the stream now. */
    worker_query(w,
                 "SELECT id, app_id FROM deployments WHERE status = 'pending' AND NOT enqueued "
                 "AND NOT cancel_requested ORDER BY created_at LIMIT 100",
                 0, NULL, on_unqueued);
    gone_apps_query(w);
    worker_query(w, "SELECT count(*) FROM deployments WHERE status = 'pending'", 0, NULL,
                 on_queue_depth);
}

static void on_swept(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    w->sweeping = false;
    if (!worker_query_done(w))
        return;
    if (status != 0) {
        ignore_pg(status, res, NULL); /* the next tick tries again */
        return;
    }
    if (!w->sweep_before[0]) {
        snprintf(w->sweep_before, sizeof(w->sweep_before), "%s", sw_pg_result_value(res, 0, 0));
        return; /* the sweep itself goes with the next tick */
    }
    w->swept = true;
    if (w->hub)
        on_abandoned(status, res, w->hub);
    read_next(w);
}

/* Deployments this node name held in a process before this one: failed, once, before this
 * worker claims anything. The pool may run a query after one sent later, and a sweep that timed
 * out may still run: so the sweep only touches deployments started before a time read from
 * PostgreSQL first, which every claim of this process follows. A run of this process that loses
 * its status update is settled by the claim path when its entry comes back. */
static void sweep_abandoned(sw_worker_t *w)
{
    if (w->swept || w->sweeping)
        return;
    if (!w->sweep_before[0]) {
        w->sweeping = worker_query(w, "SELECT now()::text", 0, NULL, on_swept) == 0;
        return;
    }
    const char *params[] = {w->node, w->sweep_before};
    w->sweeping = worker_query(w,
                               "UPDATE deployments SET status = 'failed', finished_at = now(), "
                               "error_message = 'abandoned: the worker running it stopped', "
                               "updated_at = now() WHERE node_id = $1 "
                               "AND status IN ('building', 'deploying') "
                               "AND started_at < $2::timestamptz "
                               "RETURNING id, stage, progress, error_message",
                               2, params, on_swept) == 0;
}

static void on_tick(uv_timer_t *t)
{
    sw_worker_t *w = t->data;
    uint64_t now = uv_now(w->loop);
    if (w->stopping || !sw_redis_up(w->redis))
        return;
    relaunch_query(w);
    if (!w->group_ready) {
        const char *argv[] = {"XGROUP",       "CREATE", sw_queue_stream(),
                              SW_QUEUE_GROUP, "0",      "MKSTREAM"};
        redis_cmd(w, on_group, w, 6, argv);
        return;
    }
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%u", w->cfg->lease_ttl_ms);
    for (run_t *r = w->runs; r; r = r->next) {
        char key[96], value[200];
        lease_key(r->app_id, key, sizeof(key));
        lease_value(w, r->id, value, sizeof(value));
        const char *argv[] = {"EVAL", lease_renew_script, "1", key, value, ttl};
        redis_cmd(w, NULL, NULL, 6, argv);
    }
    retry_waiting(w, NULL);
    sweep_abandoned(w);
    if (w->swept && now >= w->next_claim && w->nruns < w->cfg->worker_concurrency) {
        w->next_claim = now + CLAIM_EVERY_MS;
        const char *argv[] = {
            "XAUTOCLAIM", sw_queue_stream(), SW_QUEUE_GROUP, w->node, ttl, "0-0", "COUNT", "4"};
        redis_cmd(w, on_claim, w, 8, argv);
    }
    if (now >= w->next_reconcile) {
        w->next_reconcile = now + RECONCILE_MS;
        reconcile(w);
    }
    read_next(w);
}

/* ---- cancellation ---- */

/* Stops whatever step r is in; the step's own completion then ends the run. */
static void run_interrupt(run_t *r)
{
    r->cancelled = true;
    switch (r->state) {
    case RUN_FETCHING:
        if (r->git)
            sw_git_cancel(r->git);
        break;
    case RUN_BUILDING:
        if (r->build)
            sw_runtime_build_stop(r->w->rt, r->build, 500); /* SIGKILL after half a second */
        break;
    case RUN_STARTING:
    case RUN_CHECKING:
        uv_timer_stop(&r->timer);
        if (r->probe)
            sw_runtime_probe_cancel(r->w->rt, r->probe);
        else
            run_fail(r, "cancelled during the health check");
        break;
    default:
        break; /* claiming or switching: it ends on its own in a moment */
    }
}

static void on_cancel_message(const char *channel, size_t channel_len, const char *data, size_t len,
                              void *payload)
{
    sw_worker_t *w = payload;
    (void)channel;
    (void)channel_len;
    for (run_t *r = w->runs; r; r = r->next) {
        if (strlen(r->id) != len || memcmp(r->id, data, len) != 0 || r->cancelled)
            continue;
        run_system(r, "cancel requested");
        run_interrupt(r);
        break;
    }
}

static void stop_app_instances(sw_worker_t *w, const char *app_id)
{
    for (sw_instance_t *in = w->rt->instances, *next; in; in = next) {
        next = in->next;
        if (strcmp(in->app_id, app_id) == 0 && !in->stopping)
            sw_runtime_instance_stop(in);
    }
}

/* Instances of apps deleted without our hearing of it (a lost message, a psql prompt): the
 * API's stop message is the fast path, this the guarantee. */
static void on_gone_apps(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    w->gone_querying = false;
    if (!worker_query_done(w) || status != 0)
        return;
    for (int i = 0; i < sw_pg_result_rows(res); i++) {
        const char *app = sw_pg_result_value(res, i, 0);
        sw_log_kv(SW_LOG_INFO, NULL, "stopping the instances of a deleted app", "app", app, NULL);
        stop_app_instances(w, app);
    }
}

static void gone_apps_query(sw_worker_t *w)
{
    if (w->gone_querying)
        return;
    sw_buf_t ids = SW_BUF_INIT;
    sw_buf_append_char(&ids, '{');
    for (sw_instance_t *in = w->rt->instances; in; in = in->next)
        if (!in->stopping)
            sw_buf_printf(&ids, "%s%s", ids.len > 1 ? "," : "", in->app_id);
    sw_buf_append_char(&ids, '}');
    const char *params[] = {ids.base};
    if (ids.len > 2 && worker_query(w,
                                    "SELECT DISTINCT x::text FROM unnest($1::uuid[]) x "
                                    "WHERE NOT EXISTS (SELECT 1 FROM apps WHERE id = x)",
                                    1, params, on_gone_apps) == 0)
        w->gone_querying = true;
    sw_buf_free(&ids);
}

static void on_control_message(const char *channel, size_t channel_len, const char *data,
                               size_t len, void *payload)
{
    sw_worker_t *w = payload;
    char app[40];
    (void)channel;
    (void)channel_len;
    if (len != 5 + 36 || memcmp(data, "stop:", 5) != 0)
        return;
    memcpy(app, data + 5, 36);
    app[36] = '\0';
    stop_app_instances(w, app);
}

/* ---- builds: keep the last SLIPWAY_KEEP_BUILDS per app ---- */

typedef struct {
    uv_work_t work;
    run_t *r;
    char dir[512]; /* builds/<app> */
    char **ids;    /* deployments that built, newest first */
    bool *protect; /* the active release's build, or one an instance runs from */
    size_t n;
    unsigned keep;
    unsigned removed;
} prune_t;

/* Removes path (relative to parent) and everything under it, never following a link. */
static void remove_tree(int parent, const char *name, int depth)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return;
    if (depth > 128)
        return;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    /* Two passes: entries removed while reading may hide others from the first one. */
    for (int pass = 0; pass < 2; pass++) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                remove_tree(dirfd(d), e->d_name, depth + 1);
        if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            break;
        rewinddir(d);
    }
    closedir(d);
}

static void prune_work(uv_work_t *req)
{
    prune_t *p = req->data;
    int dir = open(p->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0)
        return;
    unsigned present = 0;
    for (size_t i = 0; i < p->n; i++) {
        struct stat st;
        if (fstatat(dir, p->ids[i], &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (++present <= p->keep || p->protect[i])
            continue;
        remove_tree(dir, p->ids[i], 0);
        p->removed++;
    }
    close(dir);
}

static void prune_done(uv_work_t *req, int status)
{
    prune_t *p = req->data;
    (void)status;
    if (p->removed) {
        char n[16];
        snprintf(n, sizeof(n), "%u", p->removed);
        sw_log_kv(SW_LOG_INFO, NULL, "old build directories removed", "app", p->r->app_id,
                  "removed", n, NULL);
    }
    for (size_t i = 0; i < p->n; i++)
        free(p->ids[i]);
    free(p->ids);
    free(p->protect);
    run_t *r = p->r;
    free(p);
    run_done(r);
}

static void on_prune_list(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    sw_worker_t *w = r->w;
    if (status != 0 || sw_pg_result_rows(res) <= (int)w->cfg->keep_builds) {
        run_done(r);
        return;
    }
    prune_t *p = sw_calloc(1, sizeof(*p));
    p->r = r;
    p->keep = w->cfg->keep_builds;
    p->work.data = p;
    snprintf(p->dir, sizeof(p->dir), "%s/builds/%s", w->cfg->data_dir, r->app_id);
    p->n = (size_t)sw_pg_result_rows(res);
    p->ids = sw_calloc(p->n, sizeof(char *));
    p->protect = sw_calloc(p->n, sizeof(bool));
    for (size_t i = 0; i < p->n; i++) {
        p->ids[i] = sw_strdup(sw_pg_result_value(res, (int)i, 0));
        p->protect[i] = strcmp(sw_pg_result_value(res, (int)i, 1), "t") == 0;
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", p->dir, p->ids[i]);
        /* An instance still running from it (one stopping, say) keeps it. */
        for (sw_instance_t *in = w->rt->instances; in; in = in->next)
            p->protect[i] |= in->dir && strcmp(in->dir, path) == 0;
    }
    if (uv_queue_work(w->loop, &p->work, prune_work, prune_done) != 0) {
        p->n = 0;
        prune_done(&p->work, 0);
    }
}

/* Lists the app's builds, newest first, with the one the active release runs from. */
static void builds_prune(run_t *r)
{
    const char *params[] = {r->app_id};
    if (sw_pg_query(r->w->pg,
                    "SELECT d.id, d.id IS NOT DISTINCT FROM (SELECT coalesce(x.build_of, x.id) "
                    "FROM apps a JOIN deployments x ON x.id = a.active_deployment_id "
                    "WHERE a.id = $1) FROM deployments d WHERE d.app_id = $1 "
                    "AND d.build_of IS NULL ORDER BY d.deployment_number DESC",
                    1, params, on_prune_list, r) != 0)
        run_done(r);
}

/* ---- the node's state file: what to clean up and start again after a restart ----
 *
 * SLIPWAY_DATA_DIR/worker.state names the apps this worker serves and the process groups it
 * started (each with its leader's start time, so a reused pid is never mistaken for one of
 * ours). A worker that starts kills the groups its predecessor left, then starts the apps
 * again from their active release. worker.lock keeps two live workers from sharing it. */

#define STATE_FILE "worker.state"
#define LOCK_FILE  "worker.lock"

static void state_save(sw_worker_t *w)
{
    /* A stopping worker keeps the last list: its apps start again with the next one. */
    if (w->lock_fd < 0 || w->stopping)
        return;
    char path[600], tmp[610];
    sw_buf_t b = SW_BUF_INIT;
    sw_runtime_state(w->rt, &b);
    for (sw_instance_t *in = w->rt->instances; in; in = in->next) {
        bool seen = false;
        for (sw_instance_t *o = w->rt->instances; o != in; o = o->next)
            seen |= !o->stopping && strcmp(o->app_id, in->app_id) == 0;
        /* Instances of a release still being checked are not the app's yet. */
        bool fresh = false;
        for (run_t *r = w->runs; r; r = r->next)
            for (int i = 0; i < r->nfresh; i++)
                fresh |= r->fresh[i] == in && !r->relaunch;
        if (!seen && !in->stopping && !fresh)
            sw_buf_printf(&b, "app %s\n", in->app_id);
    }
    snprintf(path, sizeof(path), "%s/" STATE_FILE, w->cfg->data_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, b.base, b.len) == (ssize_t)b.len;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) != 0)
        sw_log_kv(SW_LOG_WARN, NULL, "worker state not saved", "path", path, "error",
                  strerror(errno), NULL);
    sw_buf_free(&b);
}

/* Takes the data directory's worker lock, kills what the previous worker left running, and
 * remembers its apps for the relaunch. */
static void state_load(sw_worker_t *w)
{
    char path[600], text[64 * 1024];
    w->lock_fd = -1;
    snprintf(path, sizeof(path), "%s/" LOCK_FILE, w->cfg->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        sw_log_kv(SW_LOG_WARN, NULL,
                  "another worker uses this data directory: instances are not relaunched "
                  "after a restart",
                  "path", path, NULL);
        if (fd >= 0)
            close(fd);
        return;
    }
    w->lock_fd = fd;
    int keys = sw_git_key_files_remove(w->cfg->data_dir);
    if (keys > 0) {
        char n[16];
        snprintf(n, sizeof(n), "%d", keys);
        sw_log_kv(SW_LOG_WARN, NULL, "removed deploy keys a killed fetch left on disk", "count", n,
                  NULL);
    }
    snprintf(path, sizeof(path), "%s/" STATE_FILE, w->cfg->data_dir);
    if (sw_read_small(path, text, sizeof(text)))
        text[0] = '\0';
    unsigned killed = sw_runtime_reap(w->rt, text);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char word[16], arg[64];
        if (sscanf(line, "%15s %63s", word, arg) < 2)
            continue;
        if (strcmp(word, "app") == 0 && strlen(arg) == 36 && w->nrelaunch < 4096) {
            w->relaunch_ids = sw_realloc(w->relaunch_ids, (w->nrelaunch + 2) * sizeof(char *));
            w->relaunch_ids[w->nrelaunch++] = sw_strdup(arg);
            w->relaunch_ids[w->nrelaunch] = NULL;
        }
    }
    char apps[16], groups[16];
    snprintf(apps, sizeof(apps), "%zu", w->nrelaunch);
    snprintf(groups, sizeof(groups), "%u", killed);
    sw_log_kv(SW_LOG_INFO, NULL, "worker state loaded", "apps", apps, "killed_groups", groups,
              NULL);
}

static void on_relaunch_list(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    w->relaunch_querying = false;
    if (!worker_query_done(w) || status != 0)
        return; /* the next tick asks again */
    char n[16], of[16];
    snprintf(n, sizeof(n), "%d", sw_pg_result_rows(res));
    snprintf(of, sizeof(of), "%zu", w->nrelaunch);
    sw_log_kv(SW_LOG_INFO, NULL, "relaunch", "apps", n, "listed", of, NULL);
    for (int i = 0; i < sw_pg_result_rows(res); i++) {
        entry_t *e = sw_calloc(1, sizeof(*e));
        e->w = w;
        e->relaunch = true;
        snprintf(e->app_id, sizeof(e->app_id), "%s", sw_pg_result_value(res, i, 0));
        snprintf(e->deployment_id, sizeof(e->deployment_id), "%s", sw_pg_result_value(res, i, 1));
        e->next = w->waiting;
        w->waiting = e;
        w->nwaiting++;
    }
    sw_strv_free(w->relaunch_ids);
    w->relaunch_ids = NULL;
    w->nrelaunch = 0;
    retry_waiting(w, NULL);
}

/* Apps of the previous worker that are still meant to run (not stopped since). */
static void relaunch_query(sw_worker_t *w)
{
    if (!w->nrelaunch || w->relaunch_querying)
        return;
    sw_buf_t ids = SW_BUF_INIT;
    sw_buf_append_char(&ids, '{');
    for (size_t i = 0; i < w->nrelaunch; i++)
        sw_buf_printf(&ids, "%s%s", i ? "," : "", w->relaunch_ids[i]);
    sw_buf_append_char(&ids, '}');
    const char *params[] = {ids.base};
    w->relaunch_querying = true;
    if (worker_query(w,
                     "SELECT id, active_deployment_id FROM apps WHERE id = ANY ($1::uuid[]) "
                     "AND status = 'running' AND active_deployment_id IS NOT NULL",
                     1, params, on_relaunch_list) != 0)
        w->relaunch_querying = false;
    sw_buf_free(&ids);
}

/* ---- what runs here, for the node's heartbeat ---- */

static const char *instance_state(const sw_worker_t *w, const sw_instance_t *in)
{
    if (in->stopping)
        return "stopping";
    if (!sw_runtime_instance_pid(in))
        return "restarting";
    for (const run_t *r = w->runs; r; r = r->next)
        for (int i = 0; i < r->nfresh; i++)
            if (r->fresh[i] == in)
                return "starting";
    return "running";
}

void sw_worker_instances_json(const sw_worker_t *w, sw_buf_t *out)
{
    sw_buf_append_char(out, '[');
    const sw_instance_t *first = w ? w->rt->instances : NULL;
    for (const sw_instance_t *in = first; in; in = in->next) {
        char pid[24] = "null";
        if (sw_runtime_instance_pid(in))
            snprintf(pid, sizeof(pid), "%d", sw_runtime_instance_pid(in));
        sw_buf_printf(out,
                      "%s{\"app_id\":\"%s\",\"deployment_id\":\"%s\",\"name\":\"%s\","
                      "\"endpoint\":\"%s\",\"pid\":%s,\"state\":\"%s\","
                      "\"restarts\":%u}",
                      in == first ? "" : ",", in->app_id, in->deployment_id, in->name, in->endpoint,
                      pid, instance_state(w, in), in->restarts);
    }
    sw_buf_append_char(out, ']');
}

unsigned sw_worker_runs(const sw_worker_t *w)
{
    return w ? w->nruns : 0;
}

void sw_worker_metrics(sw_buf_t *out, const sw_worker_t *w)
{
    sw_buf_append_cstr(out, "# HELP slipway_deployments_total Deployments this worker finished, "
                            "by outcome.\n# TYPE slipway_deployments_total counter\n");
    for (int i = 0; i < FINISHED_MAX; i++)
        sw_buf_printf(out, "slipway_deployments_total{status=\"%s\"} %llu\n", finished_names[i],
                      (unsigned long long)w->finished[i]);
    sw_buf_printf(out,
                  "# HELP slipway_deployments_running Deployments this worker runs now.\n"
                  "# TYPE slipway_deployments_running gauge\nslipway_deployments_running %u\n",
                  w->nruns);
    if (w->queue_depth >= 0)
        sw_buf_printf(out,
                      "# HELP slipway_deploy_queue_depth Deployments pending across the "
                      "cluster, as of this worker's last reconciliation (every 5 s).\n"
                      "# TYPE slipway_deploy_queue_depth gauge\nslipway_deploy_queue_depth %lld\n",
                      w->queue_depth);
    sw_buf_append_cstr(out, "# HELP slipway_build_duration_seconds How long build commands "
                            "ran, whatever their outcome.\n"
                            "# TYPE slipway_build_duration_seconds histogram\n");
    sw_histogram_render(&w->builds, out, "slipway_build_duration_seconds", "");
}

/* ---- lifetime ---- */

static void on_worker_handle_closed(uv_handle_t *h)
{
    sw_worker_t *w = h->data;
    if (--w->closes > 0)
        return;
    void (*cb)(void *) = w->on_stopped;
    void *payload = w->stopped_payload;
    if (w->lock_fd >= 0)
        close(w->lock_fd);
    sw_strv_free(w->relaunch_ids);
    sw_runtime_free(w->rt);
    free(w);
    if (cb)
        cb(payload);
}

static void on_worker_redis_closed(void *payload)
{
    sw_worker_t *w = payload;
    w->closes = 1;
    uv_close((uv_handle_t *)&w->tick, on_worker_handle_closed);
}

int sw_worker_start(sw_worker_t **out, uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg,
                    const sw_secretbox_t *box, sw_hub_t *hub, const char *node)
{
    sw_worker_t *w = sw_calloc(1, sizeof(*w));
    w->loop = loop;
    w->builds.bounds = sw_histogram_long_bounds;
    w->queue_depth = -1;
    w->cfg = cfg;
    w->pg = pg;
    w->box = box;
    w->hub = hub;
    snprintf(w->node, sizeof(w->node), "%s", node);
    sw_runtime_cbs_t cbs = {
        .on_line = on_instance_line,
        .on_crash = on_instance_crash,
        .on_change = on_instances_changed,
        .on_gone = on_instance_gone,
        .payload = w,
    };
    int r = sw_runtime_process_new(&w->rt, loop, cfg, &cbs);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot isolate builds: the data directory or bwrap failed",
                  "data_dir", cfg->data_dir, "error", sw_strerror(r), NULL);
        free(w);
        return r;
    }
    /* Its own Redis connections: XREADGROUP blocks, and must not hold up the API's commands. */
    sw_redis_opts_t ro = {.url = cfg->redis_url, .timeout_ms = cfg->redis_timeout_ms + 2000};
    r = sw_redis_new(&w->redis, loop, &ro);
    if (r != 0) {
        sw_runtime_free(w->rt);
        free(w);
        return r;
    }
    sw_applogs_opts_t lo = {
        .loop = loop, .redis = w->redis, .hub = hub, .max_lines = cfg->runtime_log_lines};
    w->applogs = sw_applogs_new(&lo);
    state_load(w);
    sw_redis_subscribe(w->redis, sw_queue_cancel_channel(), on_cancel_message, w);
    sw_redis_subscribe(w->redis, sw_queue_control_channel(), on_control_message, w);
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, 50, TICK_MS);
    *out = w;
    return 0;
}

static void on_applogs_closed(void *payload)
{
    sw_worker_t *w = payload;
    sw_redis_close(w->redis, on_worker_redis_closed, w);
}

/* Once every run and instance is gone, the last runtime lines are stored, the connections
 * close, then the tick, then free. */
static void maybe_stopped(sw_worker_t *w)
{
    if (!w->stopping || w->runs || w->rt->instances || w->pg_pending || w->redis_closing)
        return;
    w->redis_closing = true;
    sw_applogs_close(w->applogs, on_applogs_closed, w);
}

void sw_worker_stop(sw_worker_t *w, void (*on_stopped)(void *payload), void *payload)
{
    w->stopping = true;
    while (w->waiting) {
        entry_t *e = w->waiting;
        w->waiting = e->next;
        free(e); /* unacknowledged: the group keeps them for the next worker */
    }
    w->nwaiting = 0;
    w->on_stopped = on_stopped;
    w->stopped_payload = payload;
    uv_timer_stop(&w->tick);
    for (run_t *r = w->runs, *next; r; r = next) {
        next = r->next;
        r->handback = true;
        run_interrupt(r);
    }
    for (sw_instance_t *in = w->rt->instances, *next; in; in = next) {
        next = in->next;
        if (!in->stopping)
            sw_runtime_instance_stop(in);
    }
    maybe_stopped(w);
}
