/* The node's state file: what to clean up and start again after a restart.
 *
 * SLIPWAY_DATA_DIR/worker.state names the apps this worker serves and, in the runtime's own
 * lines, what it started (process groups, each with its leader's start time). A worker that
 * starts has the runtime kill what its predecessor left, then starts the apps again from
 * their active release. worker.lock keeps two live workers from sharing it. Also what runs
 * here, for the node's heartbeat. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "internal.h"
#include "slipway/log.h"

#define STATE_FILE "worker.state"
#define LOCK_FILE  "worker.lock"

void sw_nodestate_save(sw_worker_t *w)
{
    /* A stopping worker keeps the last list: its apps start again with the next one. */
    if (w->lock_fd < 0 || w->stopping)
        return;
    char path[600], tmp[610];
    sw_buf_t b = SW_BUF_INIT;
    sw_runtime_state(w->rt, &b);
    for (sw_instance_t *in = sw_worker_instances(w); in; in = sw_worker_next_instance(w, in)) {
        bool seen = false;
        for (sw_instance_t *o = sw_worker_instances(w); o != in; o = sw_worker_next_instance(w, o))
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
void sw_nodestate_load(sw_worker_t *w)
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
    if (!sw_worker_query_done(w) || status != 0)
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
    sw_worker_retry_waiting(w, NULL);
}

/* Apps of the previous worker that are still meant to run (not stopped since). */
void sw_nodestate_relaunch_query(sw_worker_t *w)
{
    /* Containers a previous slipwayd left are followed again first: they are not relaunched. */
    if (!w->nrelaunch || w->relaunch_querying || (w->crt && w->crt->settling))
        return;
    sw_buf_t ids = SW_BUF_INIT;
    sw_buf_append_char(&ids, '{');
    for (size_t i = 0; i < w->nrelaunch; i++)
        sw_buf_printf(&ids, "%s%s", i ? "," : "", w->relaunch_ids[i]);
    sw_buf_append_char(&ids, '}');
    const char *params[] = {ids.base};
    w->relaunch_querying = true;
    if (sw_worker_query(w,
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
    const sw_instance_t *first = w ? sw_worker_instances(w) : NULL;
    for (const sw_instance_t *in = first; in; in = sw_worker_next_instance(w, in)) {
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
