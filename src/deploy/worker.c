/* The deployment worker's scheduler.
 *
 * Queue: one consumer in the group of the Redis stream (queue.c); an entry is acknowledged
 * only when its deployment has reached a terminal state, so a worker that dies leaves it
 * pending in the group, where another worker claims it (XAUTOCLAIM) once it has been idle
 * longer than a lease. Ownership of an app is a Redis key set with NX and a TTL, renewed every
 * second while the worker holds it. PostgreSQL stays the truth: a claimed entry whose
 * deployment is already running under a lapsed lease is failed as abandoned, never left as it
 * was. At most SLIPWAY_WORKER_CONCURRENCY runs at once; a run itself is run.c's. */
#include "slipway/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "slipway/log.h"
#include "slipway/queue.h"

#define TICK_MS        1000
#define CLAIM_EVERY_MS 5000
#define RECONCILE_MS   5000
#define READ_BLOCK_MS  1000

static const char *const finished_names[FINISHED_MAX] = {"success", "failed", "cancelled"};

static void read_next(sw_worker_t *w);
static void gone_apps_query(sw_worker_t *w);

/* ---- small helpers ---- */

void sw_worker_count_finished(sw_worker_t *w, const char *status)
{
    for (int i = 0; i < FINISHED_MAX; i++)
        if (strcmp(status, finished_names[i]) == 0)
            w->finished[i]++;
}

void sw_deploy_ignore_pg(int status, sw_pg_result_t *res, void *payload)
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

/* ---- instances: what the runtime tells of them ---- */

static void on_instance_line(sw_instance_t *in, const char *stream, const char *line, size_t len,
                             void *payload)
{
    sw_app_log(payload, in->app_id, in->data, stream, in->name, line, len);
}

static void on_instance_crash(sw_instance_t *in, int64_t exit_status, int term_signal,
                              const char *reason, uint32_t delay_ms, void *payload)
{
    sw_worker_t *w = payload;
    char code[32];
    snprintf(code, sizeof(code), "%lld/%d", (long long)exit_status, term_signal);
    sw_log_kv(SW_LOG_WARN, NULL, "app instance exited; restarting", "app", in->app_id, "exit", code,
              NULL);
    if (reason)
        sw_app_system(w, in->app_id, "instance %s crashed: %s; restarting in %u s", in->name,
                      reason, delay_ms / 1000);
    else if (term_signal)
        sw_app_system(w, in->app_id, "instance %s was killed by signal %d; restarting in %u s",
                      in->name, term_signal, delay_ms / 1000);
    else
        sw_app_system(w, in->app_id, "instance %s exited with code %lld; restarting in %u s",
                      in->name, (long long)exit_status, delay_ms / 1000);
}

static void on_instances_changed(void *payload)
{
    sw_nodestate_save(payload);
}

static void on_instance_gone(sw_instance_t *in, void *payload)
{
    sw_worker_t *w = payload;
    sw_secrets_unref(in->data);
    in->data = NULL;
    if (w->stopping)
        sw_worker_maybe_stopped(w);
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
void sw_run_done(run_t *r)
{
    sw_worker_t *w = r->w;
    char key[96], value[200];
    lease_key(r->app_id, key, sizeof(key));
    lease_value(w, r->id, value, sizeof(value));
    if (r->entry_id[0]) {
        sw_queue_ack(w->redis, r->entry_id);
    }
    const char *del[] = {"EVAL", lease_release_script, "1", key, value};
    redis_cmd(w, NULL, NULL, 5, del);
    char app[40];
    snprintf(app, sizeof(app), "%s", r->app_id);
    run_unlink(r);
    sw_run_close(r);
    if (w->stopping) {
        sw_worker_maybe_stopped(w);
        return;
    }
    sw_worker_retry_waiting(w, app);
    read_next(w);
}

#define WAITING_MAX 1024

static void on_lease(int status, const sw_redis_reply_t *reply, void *payload)
{
    entry_t *e = payload;
    sw_worker_t *w = e->w;
    w->leasing--;
    if (!w->stopping && status == 0 && reply && reply->type == SW_REDIS_STATUS) {
        if (e->relaunch)
            sw_run_relaunch(w, e);
        else
            sw_run_start(w, e->entry_id, e->deployment_id, e->app_id);
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
void sw_worker_retry_waiting(sw_worker_t *w, const char *app_id)
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

static void handle_entry(sw_worker_t *w, const sw_queue_entry_t *qe)
{
    entry_t *e = sw_calloc(1, sizeof(*e));
    e->w = w;
    snprintf(e->entry_id, sizeof(e->entry_id), "%s", qe->id);
    snprintf(e->deployment_id, sizeof(e->deployment_id), "%s", qe->deployment_id);
    snprintf(e->app_id, sizeof(e->app_id), "%s", qe->app_id);
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
        sw_queue_ack(w->redis, e->entry_id);
        free(e);
        return;
    }
    lease_try(w, e);
}

static void on_read(int status, const sw_queue_entry_t *entries, size_t n, void *payload)
{
    sw_worker_t *w = payload;
    w->reading = false;
    if (w->stopping)
        return;
    if (status == -ETIMEDOUT) {
        /* BLOCK ran out with nothing new: read again now. Left to the tick, a deployment
         * queued in between waited up to a second, every other time. */
        read_next(w);
        return;
    }
    if (status != 0) {
        if (status == -ENOENT)
            w->group_ready = false;
        return; /* an error: the tick reads again */
    }
    for (size_t i = 0; i < n; i++)
        handle_entry(w, &entries[i]);
    read_next(w);
}

static void read_next(sw_worker_t *w)
{
    if (w->stopping || w->reading || w->leasing || !w->group_ready || !w->swept ||
        w->nruns >= w->cfg->worker_concurrency || !sw_redis_up(w->redis))
        return;
    w->reading = true;
    sw_queue_read_entries(w->redis, w->node, 1, READ_BLOCK_MS, on_read, w);
}

/* ---- the tick: group, leases, claims, reconciliation ---- */

static void on_group(int status, void *payload)
{
    sw_worker_t *w = payload;
    if (status == 0) {
        w->group_ready = true;
        read_next(w);
    }
}

static void on_claim(int status, const sw_queue_entry_t *entries, size_t n, void *payload)
{
    sw_worker_t *w = payload;
    if (status != 0 || w->stopping)
        return;
    for (size_t i = 0; i < n && w->nruns < w->cfg->worker_concurrency; i++)
        handle_entry(w, &entries[i]);
}

/* Worker-level queries (a run's have the run to keep alive) are counted, so a stopping worker
 * is never freed under one: sw_worker_query_done() comes first in each callback, and false
 * means the worker is stopping and the answer is to be dropped. */
int sw_worker_query(sw_worker_t *w, const char *sql, int nparams, const char *const *params,
                    sw_pg_cb cb)
{
    int rc = sw_pg_query(w->pg, sql, nparams, params, cb, w);
    if (rc == 0)
        w->pg_pending++;
    return rc;
}

bool sw_worker_query_done(sw_worker_t *w)
{
    w->pg_pending--;
    if (!w->stopping)
        return true;
    sw_worker_maybe_stopped(w);
    return false;
}

static void on_unqueued(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    if (!sw_worker_query_done(w) || status != 0)
        return;
    for (int i = 0; i < sw_pg_result_rows(res); i++)
        sw_queue_push(w->pg, w->redis, sw_pg_result_value(res, i, 0),
                      sw_pg_result_value(res, i, 1));
}

static void on_queue_depth(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    if (!sw_worker_query_done(w) || status != 0 || sw_pg_result_rows(res) != 1)
        return;
    w->queue_depth = atoll(sw_pg_result_value(res, 0, 0));
}

static void reconcile(sw_worker_t *w)
{
    /* Triggers that Redis did not take: put them on the stream now. */
    sw_worker_query(w,
                    "SELECT id, app_id FROM deployments WHERE status = 'pending' AND NOT enqueued "
                    "AND NOT cancel_requested ORDER BY created_at LIMIT 100",
                    0, NULL, on_unqueued);
    gone_apps_query(w);
    sw_worker_query(w, "SELECT count(*) FROM deployments WHERE status = 'pending'", 0, NULL,
                    on_queue_depth);
}

static void on_swept(int status, sw_pg_result_t *res, void *payload)
{
    sw_worker_t *w = payload;
    w->sweeping = false;
    if (!sw_worker_query_done(w))
        return;
    if (status != 0) {
        sw_deploy_ignore_pg(status, res, NULL); /* the next tick tries again */
        return;
    }
    if (!w->sweep_before[0]) {
        snprintf(w->sweep_before, sizeof(w->sweep_before), "%s", sw_pg_result_value(res, 0, 0));
        return; /* the sweep itself goes with the next tick */
    }
    w->swept = true;
    if (w->hub)
        sw_runlog_on_abandoned(status, res, w->hub);
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
        w->sweeping = sw_worker_query(w, "SELECT now()::text", 0, NULL, on_swept) == 0;
        return;
    }
    const char *params[] = {w->node, w->sweep_before};
    w->sweeping = sw_worker_query(w,
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
    sw_nodestate_relaunch_query(w);
    if (!w->group_ready) {
        sw_queue_group_create(w->redis, on_group, w);
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
    sw_worker_retry_waiting(w, NULL);
    sweep_abandoned(w);
    if (w->swept && now >= w->next_claim && w->nruns < w->cfg->worker_concurrency) {
        w->next_claim = now + CLAIM_EVERY_MS;
        sw_queue_claim_entries(w->redis, w->node, w->cfg->lease_ttl_ms, 4, on_claim, w);
    }
    if (now >= w->next_reconcile) {
        w->next_reconcile = now + RECONCILE_MS;
        reconcile(w);
    }
    read_next(w);
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
        sw_run_system(r, "cancel requested");
        sw_run_interrupt(r);
        break;
    }
}

sw_instance_t *sw_worker_instances(const sw_worker_t *w)
{
    if (w->rt->instances)
        return w->rt->instances;
    return w->crt ? w->crt->instances : NULL;
}

sw_instance_t *sw_worker_next_instance(const sw_worker_t *w, const sw_instance_t *in)
{
    if (in->next)
        return in->next;
    return in->rt == w->rt && w->crt ? w->crt->instances : NULL;
}

static void stop_app_instances(sw_worker_t *w, const char *app_id)
{
    for (sw_instance_t *in = sw_worker_instances(w), *next; in; in = next) {
        next = sw_worker_next_instance(w, in);
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
    if (!sw_worker_query_done(w) || status != 0)
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
    for (sw_instance_t *in = sw_worker_instances(w); in; in = sw_worker_next_instance(w, in))
        if (!in->stopping)
            sw_buf_printf(&ids, "%s%s", ids.len > 1 ? "," : "", in->app_id);
    sw_buf_append_char(&ids, '}');
    const char *params[] = {ids.base};
    if (ids.len > 2 && sw_worker_query(w,
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
    sw_runtime_free(w->crt);
    sw_proxy_free(w->proxy);
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
                    const sw_secretbox_t *box, sw_hub_t *hub, const char *node,
                    const sw_worker_drivers_t *drivers)
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
    int r = drivers->runtime_new(&w->rt, loop, cfg, &cbs);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "cannot isolate builds: the data directory or bwrap failed",
                  "data_dir", cfg->data_dir, "error", sw_strerror(r), NULL);
        sw_proxy_free(drivers->proxy);
        free(w);
        return r;
    }
    /* Its own Redis connections: XREADGROUP blocks, and must not hold up the API's commands. */
    sw_redis_opts_t ro = {.url = cfg->redis_url, .timeout_ms = cfg->redis_timeout_ms + 2000};
    r = sw_redis_new(&w->redis, loop, &ro);
    if (r != 0) {
        sw_runtime_free(w->rt);
        sw_proxy_free(drivers->proxy);
        free(w);
        return r;
    }
    w->proxy = drivers->proxy;
    if (drivers->container_new && drivers->container_new(&w->crt, loop, cfg, w->node, &cbs,
                                                         w->crt_why, sizeof(w->crt_why)) != 0) {
        w->crt = NULL;
        sw_log_kv(SW_LOG_INFO, NULL, "no container runtime on this node", "why", w->crt_why, NULL);
    }
    sw_applogs_opts_t lo = {
        .loop = loop, .redis = w->redis, .hub = hub, .max_lines = cfg->runtime_log_lines};
    w->applogs = sw_applogs_new(&lo);
    sw_nodestate_load(w);
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
void sw_worker_maybe_stopped(sw_worker_t *w)
{
    if (!w->stopping || w->runs || sw_worker_instances(w) || w->pg_pending || w->redis_closing)
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
        sw_run_interrupt(r);
    }
    /* Containers outlive slipwayd (the next one follows them again); processes stop. */
    for (sw_instance_t *in = sw_worker_instances(w), *next; in; in = next) {
        next = sw_worker_next_instance(w, in);
        if (!in->stopping)
            sw_runtime_instance_detach(in);
    }
    sw_worker_maybe_stopped(w);
}
