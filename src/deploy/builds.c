/* Build artifacts on disk (and a container app's images): keep the last SLIPWAY_KEEP_BUILDS
 * per app, and never the one the active release or a running instance uses. The removal
 * runs on the threadpool. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "slipway/log.h"

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
    sw_run_done(r);
}

static void on_prune_list(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    sw_worker_t *w = r->w;
    if (status != 0 || sw_pg_result_rows(res) <= (int)w->cfg->keep_builds) {
        sw_run_done(r);
        return;
    }
    /* A container app's images: the same ones go (rmi keeps any a container runs from). */
    for (int i = (int)w->cfg->keep_builds; r->container && !r->pulled && i < sw_pg_result_rows(res);
         i++) {
        if (strcmp(sw_pg_result_value(res, i, 1), "t") == 0)
            continue;
        char image[600];
        sw_builds_image(w, r->app_id, sw_pg_result_value(res, i, 2), image, sizeof(image));
        sw_runtime_image_remove(r->rt, image);
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
        for (sw_instance_t *in = sw_worker_instances(w); in; in = sw_worker_next_instance(w, in))
            p->protect[i] |= in->dir && strcmp(in->dir, path) == 0;
    }
    if (uv_queue_work(w->loop, &p->work, prune_work, prune_done) != 0) {
        p->n = 0;
        prune_done(&p->work, 0);
    }
}

void sw_builds_image(const sw_worker_t *w, const char *app_id, const char *n, char *out,
                     size_t size)
{
    const char *reg = w->cfg->registry;
    snprintf(out, size, "%s%sslipway/%s:%s", reg, reg[0] ? "/" : "", app_id, n);
}

/* Lists the app's builds, newest first, with the one the active release runs from. */
void sw_builds_prune(run_t *r)
{
    const char *params[] = {r->app_id};
    if (sw_pg_query(r->w->pg,
                    "SELECT d.id, d.id IS NOT DISTINCT FROM (SELECT coalesce(x.build_of, x.id) "
                    "FROM apps a JOIN deployments x ON x.id = a.active_deployment_id "
                    "WHERE a.id = $1), d.deployment_number FROM deployments d WHERE d.app_id = $1 "
                    "AND d.build_of IS NULL ORDER BY d.deployment_number DESC",
                    1, params, on_prune_list, r) != 0)
        sw_run_done(r);
}
