/* A run walks: claim the row -> the app's uid and env -> fetch (fetch.c) -> build (through
 * the runtime) -> release (release.c), and ends in an order that survives a crash at any
 * point. A relaunch (slipwayd restarted) releases the active build again without a
 * deployment. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "slipway/log.h"
#include "slipway/utf8.h"

static void run_identify(run_t *r);
static void uid_allocate(run_t *r);

static char *dupstr(const char *s)
{
    return sw_strdup(s ? s : "");
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
    free(r->image);
    free(r->dockerfile);
    free(r->cpu);
    free(r->memory);
    if (r->registry_auth)
        sodium_memzero(r->registry_auth, strlen(r->registry_auth));
    free(r->registry_auth);
    free(r->registry_auth_sealed);
    sw_strv_free(r->build_env);
    sw_strv_free(r->run_env);
    sw_secrets_unref(r->secrets);
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
void sw_run_close(run_t *r)
{
    r->closes = 2;
    uv_close((uv_handle_t *)&r->timer, on_run_handle_closed);
    uv_close((uv_handle_t *)&r->log_timer, on_run_handle_closed);
}

static void on_persisted(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        sw_deploy_ignore_pg(status, res, NULL);
        r->entry_id[0] = '\0'; /* not acknowledged: a later claim settles it */
    } else if (!r->relaunch) {
        /* The row says it now: a watcher that sees the end finds everything stored. */
        bool ok = strcmp(r->final_status, "success") == 0;
        sw_runlog_publish_status(r->w->hub, r->id, r->final_status,
                                 ok         ? "completed"
                                 : r->stage ? r->stage
                                            : "queued",
                                 ok ? 100 : r->progress, r->error);
        sw_runlog_publish_end(r->w->hub, r->id);
        if (ok) {
            sw_builds_prune(r); /* still holding the app's lease: no other run uses its builds */
            return;
        }
    }
    sw_run_done(r);
}

void sw_run_persist(run_t *r)
{
    if (!r->final_status[0]) {
        sw_run_done(r);
        return;
    }
    if (r->relaunch) {
        if (strcmp(r->final_status, "success") == 0) {
            sw_run_done(r);
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
void sw_run_release(run_t *r)
{
    r->finished = true;
    uv_timer_stop(&r->timer);
    uv_timer_stop(&r->log_timer);
    sw_runlog_flush(r);
    if (!r->flushing)
        sw_run_persist(r); /* otherwise the last chunk's answer does it */
}

void sw_run_finish(run_t *r, const char *status)
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
                1, params, sw_deploy_ignore_pg, NULL);
            sw_runlog_publish_status(r->w->hub, r->id, "pending", "queued", 0, NULL);
        }
        sw_run_system(r, "handed back to the queue: the worker is stopping");
        r->entry_id[0] = '\0';
        sw_run_release(r);
        return;
    }
    snprintf(r->final_status, sizeof(r->final_status), "%s", status);
    if (!r->relaunch)
        sw_worker_count_finished(r->w, status);
    if (r->logcap.cut)
        sw_run_system(r, "not stored (past the cut): %llu lines, %llu bytes of output",
                      (unsigned long long)r->logcap.skipped_lines,
                      (unsigned long long)r->logcap.skipped_bytes);
    sw_run_system(r, "deployment %s%s%s", status, r->error[0] ? ": " : "", r->error);
    sw_run_release(r);
}

void sw_run_fail(run_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    sw_utf8_copy(r->error, sizeof(r->error), r->error, strlen(r->error)); /* stored as text */
    sw_run_finish(r, r->cancelled ? "cancelled" : "failed");
}

/* ---- build ---- */

static void on_build_line(const char *stream, const char *line, size_t len, void *payload)
{
    run_t *r = payload;
    if (strcmp(stream, "stderr") == 0 && len)
        snprintf(r->last_err, sizeof(r->last_err), "%.*s", (int)len, line);
    sw_run_log(r, stream, line, len);
}

static void on_build_exit(int64_t exit_status, int term_signal, bool timed_out, void *payload)
{
    run_t *r = payload;
    r->build = NULL;
    sw_histogram_observe(&r->w->builds, (double)(uv_hrtime() - r->build_started_ns) / 1e9);
    sw_nodestate_save(r->w);
    if (r->cancelled) {
        sw_run_fail(r, "cancelled during the build");
        return;
    }
    if (timed_out) {
        char d[32];
        sw_run_fail(r, "build timed out after %s",
                    sw_deploy_duration(r->w->cfg->build_timeout_ms, d, sizeof(d)));
        return;
    }
    if (term_signal) {
        sw_run_fail(r, "build failed: killed by signal %d", term_signal);
        return;
    }
    if (exit_status != 0 && (r->pulled || r->refetch || r->pushing)) {
        sw_run_fail(r, "%s image %s%s failed: %s", r->pushing ? "pushing" : "pulling", r->image,
                    r->pushing ? " to SLIPWAY_REGISTRY" : "",
                    r->last_err[0] ? r->last_err : "no reason given");
        return;
    }
    if (exit_status != 0) {
        sw_run_fail(r, "build failed: exit code %lld", (long long)exit_status);
        return;
    }
    if (r->container && !r->pulled && !r->refetch && !r->pushing && r->w->cfg->registry[0]) {
        sw_run_system(r, "build succeeded; pushing %s", r->image);
        r->pushing = true;
        sw_run_build(r);
        return;
    }
    sw_run_system(r, "%s succeeded",
                  r->pushing                ? "push"
                  : r->pulled || r->refetch ? "pull"
                                            : "build");
    sw_release_start(r);
}

void sw_run_build(run_t *r)
{
    r->state = RUN_BUILDING;
    sw_run_status(r, "building", "building_image", 40);
    if (!r->build_cmd[0] && !r->container) {
        sw_run_system(r, "no build_command: nothing to build");
        sw_release_start(r);
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
    if (!r->container)
        sw_run_system(r, "running the build command");
    r->build_started_ns = uv_hrtime();
    if (r->container) {
        o.command = NULL;
        o.image = r->image;
        o.dockerfile = r->dockerfile;
        o.pull = r->pulled || r->refetch;
        o.push = r->pushing;
        o.auth = r->registry_auth;
        if (o.push)
            ; /* said when the build ended */
        else if (o.pull)
            sw_run_system(r, "pulling image %s%s", r->image,
                          r->registry_auth ? " with the app's registry credentials" : "");
        else
            sw_run_system(r, "building image %s from %s", r->image,
                          r->dockerfile[0] ? r->dockerfile : "Dockerfile");
    }
    if (sw_runtime_build(r->rt, &o, &r->build) != 0) {
        r->build = NULL;
        sw_run_fail(r, "build failed: the build command could not be spawned");
        return;
    }
    sw_nodestate_save(r->w);
}

/* ---- claim: the row, then the app's env ---- */

/* A process gets PATH, HOME and LANG; a container keeps its image's, and gets only the
 * app's own vars. */
static char **base_env(const run_t *r, const char *home)
{
    char **env = sw_calloc(SECRETS_MAX + 8, sizeof(char *));
    if (r->container)
        return env;
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

/* The app's registry credentials, opened for the pull (and masked in its output). */
static int open_registry_auth(run_t *r)
{
    char ad[80];
    sw_buf_t value = SW_BUF_INIT;
    snprintf(ad, sizeof(ad), "app_registry_auth:%s", r->app_id);
    if (sw_secretbox_open(r->w->box, r->registry_auth_sealed, strlen(r->registry_auth_sealed), ad,
                          &value) != 0 ||
        !value.len) {
        sw_buf_free(&value);
        sw_run_fail(r, "the registry credentials cannot be decrypted (was the master key "
                       "changed?)");
        return -EINVAL;
    }
    r->registry_auth = sw_strndup(value.base, value.len);
    const char *pass = strchr(r->registry_auth, ':');
    if (pass && pass[1] && r->secrets->n < SECRETS_MAX)
        r->secrets->v[r->secrets->n++] = sw_strdup(pass + 1);
    sodium_memzero(value.base, value.cap);
    sw_buf_free(&value);
    return 0;
}

static void on_env(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (r->cancelled) {
        sw_run_fail(r, "cancelled before the fetch");
        return;
    }
    if (status != 0) {
        sw_run_fail(r, "could not read the app's env vars: %s", sw_strerror(status));
        return;
    }
    if (snprintf(r->build_dir, sizeof(r->build_dir), "%s/builds/%s/%s", r->w->cfg->data_dir,
                 r->app_id,
                 r->rollback_of[0] ? r->rollback_of : r->id) >= (int)sizeof(r->build_dir)) {
        sw_run_fail(r, "SLIPWAY_DATA_DIR is too long");
        return;
    }
    r->build_env = base_env(r, r->build_dir);
    r->run_env = base_env(r, r->build_dir);
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
            sw_run_fail(r, "env var %s cannot be decrypted (was the master key changed?)", key);
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
    if (r->mask_only) {
        for (sw_instance_t *in = sw_worker_instances(r->w); in;
             in = sw_worker_next_instance(r->w, in))
            if (strcmp(in->app_id, r->app_id) == 0 && !in->data) {
                in->data = sw_secrets_ref(r->secrets);
                sw_runtime_instance_start(in); /* followed from when it was found */
            }
        r->state = RUN_DONE;
        sw_run_release(r);
        return;
    }
    if (r->pulled && *r->registry_auth_sealed && open_registry_auth(r) != 0)
        return;
    if (r->rollback_of[0] && r->container && !r->pulled && r->w->cfg->registry[0]) {
        /* Built here or on another node: SLIPWAY_REGISTRY has it. */
        sw_run_system(r, "%s image %s", r->rollback ? "rolling back to" : "releasing again",
                      r->image);
        r->refetch = true;
        sw_run_build(r);
        return;
    }
    if (r->rollback_of[0] && r->container) {
        /* The image of that deployment, as it was built: no fetch, no build. */
        sw_run_system(r, "%s image %s", r->rollback ? "rolling back to" : "releasing again",
                      r->image);
        sw_release_start(r);
        return;
    }
    if (r->rollback_of[0]) {
        struct stat st;
        if (stat(r->build_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            sw_run_fail(r,
                        "%s failed: the build of deployment %s is no longer on this node (pruned: "
                        "only the last %u builds of an app are kept, or built on another node)",
                        r->relaunch   ? "relaunch"
                        : r->rollback ? "rollback"
                                      : "release",
                        r->rollback_of, r->w->cfg->keep_builds);
            return;
        }
        /* A build made before its app had a uid of its own (an upgrade) becomes the app's. */
        int rc = sw_runtime_adopt(r->rt, r->build_dir, r->run_uid, true);
        if (rc != 0) {
            sw_run_fail(r, "could not hand the build to the app's uid: %s", sw_strerror(rc));
            return;
        }
        sw_run_system(r, "%s the build of deployment %s",
                      r->rollback ? "rolling back to" : "releasing again", r->rollback_of);
        sw_release_start(r); /* no fetch, no build: the earlier artifact as it was */
        return;
    }
    if (r->pulled) {
        sw_run_build(r); /* nothing to fetch: the image is the artifact */
        return;
    }
    sw_fetch_start(r);
}

static void fail_abandoned(sw_worker_t *w, const char *sql, int nparams, const char *const *params)
{
    sw_pg_query(w->pg, sql, nparams, params, w->hub ? sw_runlog_on_abandoned : sw_deploy_ignore_pg,
                w->hub);
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
    if (r->container)
        return r->rt ? NULL : r->w->crt_why;
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
        sw_run_fail(r, "could not allocate a uid for the app: %s", sw_strerror(status));
    else
        sw_run_fail(r,
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
    const sw_runtime_t *rt = r->rt;
    if (rt->own_uids && r->run_uid > 0 &&
        (r->run_uid < (long)rt->uid_lo || r->run_uid > (long)rt->uid_hi)) {
        /* Given by a node with another range: this node cannot vouch for it. */
        sw_run_fail(r, "the app's uid %ld is outside this node's SLIPWAY_APP_UID_RANGE %s",
                    r->run_uid, r->w->cfg->app_uid_range);
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
    /* runtime, dockerfile_path, port, cpu, memory, the number of the build it releases */
    r->container = strcmp(sw_pg_result_value(res, 0, 12), "container") == 0;
    r->rt = r->container ? r->w->crt : r->w->rt;
    r->dockerfile = dupstr(sw_pg_result_value(res, 0, 13));
    r->app_port = atoi(sw_pg_result_value(res, 0, 14));
    r->cpu = dupstr(sw_pg_result_value(res, 0, 15));
    r->memory = dupstr(sw_pg_result_value(res, 0, 16));
    const char *pinned = sw_pg_result_value(res, 0, 17);
    r->pulled = pinned && *pinned;
    char built[600];
    sw_builds_image(r->w, r->app_id, sw_pg_result_value(res, 0, 18), built, sizeof(built));
    r->image = sw_strdup(r->pulled ? pinned : built);
    r->registry_auth_sealed = dupstr(sw_pg_result_value(res, 0, 19));
}

/* The columns run_fields reads after the twelfth, for a deployment d of an app a. */
#define RUN_BUILD_OF                                                                               \
    "FROM deployments x WHERE x.id = coalesce(d.build_of, d.rolled_back_from, d.id)"
#define RUN_COLUMNS                                                                                \
    "a.runtime, a.dockerfile_path, a.port, a.cpu, a.memory, (SELECT x.image " RUN_BUILD_OF "), "   \
    "(SELECT x.deployment_number " RUN_BUILD_OF "), a.registry_auth_sealed"

static void on_claimed(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0) {
        /* The row could not be read: leave the entry pending for a later claim. */
        r->entry_id[0] = '\0';
        r->state = RUN_DONE;
        sw_run_release(r);
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
        sw_run_release(r);
        return;
    }
    run_fields(r, res);
    const char *rb = sw_pg_result_value(res, 0, 8);
    const char *again = sw_pg_result_value(res, 0, 9);
    r->rollback = rb != NULL;
    snprintf(r->rollback_of, sizeof(r->rollback_of), "%s", again ? again : rb ? rb : "");
    sw_run_system(r, "deployment claimed by %s", r->w->node);
    if (r->cancelled) {
        sw_run_fail(r, "cancelled before the fetch");
        return;
    }
    const char *refusal = runtime_refusal(r);
    if (refusal) {
        sw_run_fail(r, "%s", refusal);
        return;
    }
    if (r->pulled && !r->container) {
        sw_run_fail(r, "image deploys need the app's runtime to be container");
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

void sw_run_start(sw_worker_t *w, const char *entry_id, const char *deployment_id,
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
                "(SELECT u.role FROM users u WHERE u.id = d.created_by), " RUN_COLUMNS,
                2, params, on_claimed, r);
}

/* ---- relaunch: the releases this node served before it restarted ---- */

static void on_relaunch_row(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    if (status != 0 || sw_pg_result_rows(res) != 1 || r->w->stopping) {
        /* Stopped, deleted or released again meanwhile: nothing to bring back. */
        r->state = RUN_DONE;
        sw_run_release(r);
        return;
    }
    /* The row: repo_url, ref, commit_sha, build_command, start_command, health path,
     * replicas, app id, rolled_back_from, build_of; nothing is fetched or built. */
    run_fields(r, res);
    snprintf(r->rollback_of, sizeof(r->rollback_of), "%s", sw_pg_result_value(res, 0, 9));
    if (r->mask_only)
        sw_run_system(r, "slipwayd restarted: following the app's containers again");
    else
        sw_run_system(r, "slipwayd restarted: starting the active release (deployment %s) again",
                      r->id);
    const char *refusal = runtime_refusal(r);
    if (refusal) {
        sw_run_fail(r, "%s", refusal);
        return;
    }
    run_identify(r);
}

void sw_run_relaunch(sw_worker_t *w, entry_t *e)
{
    run_t *r = run_new(w, "", e->deployment_id, e->app_id);
    r->relaunch = true;
    for (sw_instance_t *in = sw_worker_instances(w); in; in = sw_worker_next_instance(w, in)) {
        if (strcmp(in->app_id, e->app_id) == 0 && !in->stopping && !in->data) {
            /* Containers followed again: only their masking is missing (the app's values). */
            r->mask_only = true;
        } else if (strcmp(in->app_id, e->app_id) == 0 && !in->stopping) {
            /* A deployment already started it again. */
            r->state = RUN_DONE;
            sw_run_release(r);
            return;
        }
    }
    const char *params[] = {e->app_id, e->deployment_id};
    sw_pg_query(w->pg,
                "SELECT '', '', '', '', a.start_command, a.health_check_path, a.replicas, a.id, "
                "NULL, coalesce(d.build_of, d.id), a.run_uid, "
                "(SELECT u.role FROM users u WHERE u.id = d.created_by), " RUN_COLUMNS
                " FROM apps a JOIN deployments d "
                "ON d.id = a.active_deployment_id WHERE a.id = $1 AND d.id = $2 "
                "AND a.status = 'running'",
                2, params, on_relaunch_row, r);
}

/* ---- cancellation ---- */

/* Stops whatever step r is in; the step's own completion then ends the run. */
void sw_run_interrupt(run_t *r)
{
    r->cancelled = true;
    switch (r->state) {
    case RUN_FETCHING:
        if (r->git)
            sw_git_cancel(r->git);
        break;
    case RUN_BUILDING:
        if (r->build)
            sw_runtime_build_stop(r->rt, r->build, 500); /* SIGKILL after half a second */
        break;
    case RUN_STARTING:
    case RUN_CHECKING:
        uv_timer_stop(&r->timer);
        if (r->probe)
            sw_runtime_probe_cancel(r->rt, r->probe);
        else
            sw_run_fail(r, "cancelled during the health check");
        break;
    default:
        break; /* claiming or switching: it ends on its own in a moment */
    }
}
