/* The release of a run: start the new instances (through the runtime), check their health,
 * switch the app's endpoints (apps.endpoints, then the proxy: publish and verify), then stop
 * the old instances. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* How long the proxy has to show the new release: at most the health check's timeout. */
#define VERIFY_TIMEOUT_MS 10000

static void probe_next(run_t *r);
static void on_probe_timer(uv_timer_t *t);
static void switch_in_database(run_t *r);

/* ---- release: switch traffic once every new instance is healthy ---- */

static void proxy_release(const run_t *r, const char **endpoints, sw_proxy_release_t *rel)
{
    for (int i = 0; i < r->nfresh; i++)
        endpoints[i] = r->fresh[i]->endpoint;
    *rel = (sw_proxy_release_t){
        .app_id = r->app_id,
        .deployment_id = r->id,
        .endpoints = endpoints,
        .nendpoints = (size_t)r->nfresh,
        .probe_path = r->health_path,
    };
}

/* The switch did not happen: the proxy goes back to what the database says (the release
 * before); the caller fails the run. */
static void unswitch(run_t *r)
{
    sw_proxy_settle(r->w->proxy, r->app_id);
}

/* The previous instances finish what they serve, then stop (SLIPWAY_DRAIN_MS). */
static void stop_previous(run_t *r)
{
    sw_worker_t *w = r->w;
    for (sw_instance_t *in = sw_worker_instances(w), *next; in; in = next) {
        next = sw_worker_next_instance(w, in);
        if (strcmp(in->app_id, r->app_id) != 0 || strcmp(in->deployment_id, r->id) == 0 ||
            in->stopping)
            continue;
        sw_run_system(r, "draining the previous instance on port %u for %u ms, then stopping it",
                      in->port, (unsigned)w->cfg->drain_ms);
        sw_runtime_instance_drain(in, w->cfg->drain_ms);
    }
}

static void on_switched(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        unswitch(r);
        sw_run_fail(r, "switching traffic failed: %s",
                    res ? sw_pg_result_error(res) : sw_strerror(status));
        return;
    }
    if (r->relaunch && sw_pg_result_rows(res) != 1) {
        unswitch(r);
        sw_run_fail(r, "the app was stopped or released again meanwhile");
        return;
    }
    /* The database says what the proxy serves: the pin can go. */
    sw_proxy_settle(r->w->proxy, r->app_id);
    sw_run_status(r, "deploying", "stopping_old", 95);
    stop_previous(r);
    r->nfresh = 0; /* they belong to the app now */
    r->error[0] = '\0';
    sw_nodestate_save(r->w);
    sw_run_finish(r, "success");
}

/* The proxy serves the new release (or failed to): on to the database, or back. */
static void on_verified(int status, const char *error, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        unswitch(r);
        sw_run_fail(r, "the proxy does not serve the new instances: %s",
                    error && *error ? error : sw_strerror(status));
        return;
    }
    switch_in_database(r);
}

static void on_published(int status, const char *error, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        unswitch(r);
        sw_run_fail(r, "publishing the new instances to the proxy failed: %s",
                    error && *error ? error : sw_strerror(status));
        return;
    }
    r->published = true;
    const char *endpoints[MAX_INSTANCES];
    sw_proxy_release_t rel;
    proxy_release(r, endpoints, &rel);
    sw_proxy_verify(r->w->proxy, &rel, SW_MIN(r->w->cfg->health_timeout_ms, VERIFY_TIMEOUT_MS),
                    on_verified, r);
}

/* First the proxy (publish, then verify through it), then the database: if the proxy cannot
 * take the new release, nothing was switched and the old one serves on. */
static void switch_traffic(run_t *r)
{
    r->state = RUN_SWITCHING;
    sw_run_status(r, "deploying", "switching_traffic", 90);
    const char *endpoints[MAX_INSTANCES];
    sw_proxy_release_t rel;
    proxy_release(r, endpoints, &rel);
    sw_proxy_publish(r->w->proxy, &rel, on_published, r);
}

static void switch_in_database(run_t *r)
{
    sw_buf_t endpoints = SW_BUF_INIT;
    sw_buf_append_char(&endpoints, '{');
    for (int i = 0; i < r->nfresh; i++)
        sw_buf_printf(&endpoints, "%s\"%s\"", i ? "," : "", r->fresh[i]->endpoint);
    sw_buf_append_char(&endpoints, '}');
    const char *why = r->rt->limits_why;
    const char *params[] = {r->app_id,
                            r->id,
                            endpoints.base,
                            r->rollback ? "true" : "false",
                            why ? "false" : "true",
                            why ? why : ""};
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
                "active_deployment_id = $2, resources_enforced = CASE WHEN cpu <> '' OR "
                "memory <> '' THEN $5::bool END, resources_note = CASE WHEN cpu <> '' OR "
                "memory <> '' THEN $6 ELSE '' END, updated_at = now() WHERE id = $1 RETURNING id), "
                "o AS (UPDATE deployments SET is_active = (id = $2), status = CASE WHEN $4::bool "
                "AND is_active AND id <> $2 THEN 'rolled_back' ELSE status END WHERE app_id = $1 "
                "AND (is_active OR id = $2) RETURNING id) "
                "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM o)",
                6, params, on_switched, r);
    sw_buf_free(&endpoints);
}

static void on_probe(int status, int http_status, void *payload)
{
    run_t *r = payload;
    r->probe = NULL;
    if (r->state != RUN_CHECKING)
        return;
    if (r->cancelled) {
        sw_run_fail(r, "cancelled during the health check");
        return;
    }
    int i = r->nhealthy;
    if (status == 0 && http_status >= 200 && http_status < 300) {
        r->nhealthy++;
        sw_run_system(r, "instance on port %u is healthy", r->fresh[i]->port);
        if (i + 1 == r->nfresh) {
            switch_traffic(r);
            return;
        }
    }
    if (uv_now(r->w->loop) >= r->health_deadline) {
        char d[32];
        sw_run_fail(
            r, "health check failed: timed out after %s (GET %s on port %u never answered 2xx)",
            sw_deploy_duration(r->w->cfg->health_timeout_ms, d, sizeof(d)), r->health_path,
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
        sw_run_fail(r, "health check could not start");
}

static void on_probe_timer(uv_timer_t *t)
{
    probe_next(t->data);
}

void sw_release_start(run_t *r)
{
    sw_worker_t *w = r->w;
    r->state = RUN_STARTING;
    sw_run_status(r, "deploying", "starting_new", 70);
    if (!r->start_cmd[0] && !r->container) {
        sw_run_fail(r, "the app has no start_command");
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
            .image = r->image,
            .app_port = (uint16_t)r->app_port,
            .cpu = r->cpu,
            .memory = r->memory,
        };
        sw_instance_t *in;
        if (sw_runtime_instance_new(r->rt, &o, &in) != 0) {
            sw_run_fail(r, "no free port in SLIPWAY_PORT_RANGE %s", w->cfg->port_range);
            return;
        }
        sw_secrets_ref(r->secrets);
        r->fresh[r->nfresh++] = in;
        sw_run_system(r, "starting instance %d on port %u", i + 1, in->port);
        if (sw_runtime_instance_start(in) != 0) {
            sw_run_fail(r, "the start command could not be spawned");
            return;
        }
    }
    r->state = RUN_CHECKING;
    sw_run_status(r, "deploying", "health_check", 80);
    r->health_deadline = uv_now(w->loop) + w->cfg->health_timeout_ms;
    uv_timer_start(&r->timer, on_probe_timer, 50, 0);
}
