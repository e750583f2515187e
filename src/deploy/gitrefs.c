/* A remote's branches, read from its ref advertisement the way git ls-remote does: no
 * repository, no objects, only a connection made like a fetch's (git.c's job: credentials,
 * host keys, the address rule, deadline and cancel). */
#include <errno.h>
#include <git2.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/common.h"
#include "slipway/git.h"
#include "slipway/utf8.h"

#include "internal.h"

#define HEADS_PREFIX "refs/heads/"
#define HEADS_LEN    (sizeof(HEADS_PREFIX) - 1)
#define NAME_MAX_LEN 255 /* what a deployment's ref may be */

typedef struct {
    size_t max;
    sw_git_branches_t out;
    sw_git_branches_cb done;
} refs_t;

/* A branch a client can be shown and deploy: refs/heads/<name>, name valid UTF-8 and short. */
static bool is_branch(const char *ref)
{
    size_t len;

    if (strncmp(ref, HEADS_PREFIX, HEADS_LEN) != 0)
        return false;
    len = strlen(ref + HEADS_LEN);
    return len > 0 && len <= NAME_MAX_LEN && sw_utf8_valid(ref + HEADS_LEN, len);
}

static int by_name(const void *a, const void *b)
{
    const git_remote_head *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

static void keep(refs_t *d, const git_remote_head **heads, size_t nheads)
{
    const git_remote_head **sel = sw_calloc(nheads ? nheads : 1, sizeof(*sel));
    size_t n = 0;

    for (size_t i = 0; i < nheads; i++) {
        if (is_branch(heads[i]->name))
            sel[n++] = heads[i];
    }
    qsort(sel, n, sizeof(*sel), by_name);
    d->out.total = n;
    d->out.n = SW_MIN(n, d->max);
    d->out.branches = sw_calloc(d->out.n ? d->out.n : 1, sizeof(*d->out.branches));
    for (size_t i = 0; i < d->out.n; i++) {
        d->out.branches[i].name = sw_strdup(sel[i]->name + HEADS_LEN);
        git_oid_tostr(d->out.branches[i].commit, sizeof(d->out.branches[i].commit), &sel[i]->oid);
    }
    free(sel);
}

static int refs_run(sw_git_job_t *job, void *data)
{
    refs_t *d = data;
    git_remote_callbacks cb = GIT_REMOTE_CALLBACKS_INIT;
    git_remote *remote = NULL;
    const git_remote_head **heads = NULL;
    git_buf head = GIT_BUF_INIT;
    size_t nheads = 0;
    int r;

    sw_git_job_callbacks(job, &cb);
    r = sw_git_job_remote(job, NULL, &cb, &remote);
    if (r < 0)
        goto out;
    r = git_remote_ls(&heads, &nheads, remote);
    if (r < 0) {
        r = sw_git_job_fail(job, "list");
        goto out;
    }
    keep(d, heads, nheads);
    /* HEAD's symref when advertised; libgit2 otherwise guesses from HEAD's commit. */
    if (git_remote_default_branch(&head, remote) == 0 && is_branch(head.ptr))
        d->out.default_name = sw_strdup(head.ptr + HEADS_LEN);
    r = sw_git_job_stop(job);
out:
    git_buf_dispose(&head);
    git_remote_free(remote);
    return r;
}

static void refs_free(refs_t *d)
{
    for (size_t i = 0; i < d->out.n; i++)
        free(d->out.branches[i].name);
    free(d->out.branches);
    free(d->out.default_name);
    free(d);
}

static void refs_report(int status, const char *error, void *data, void *payload)
{
    refs_t *d = data;

    d->done(status, status == 0 ? &d->out : NULL, error, payload);
    refs_free(d);
}

static const sw_git_work_t refs_work = {.run = refs_run, .report = refs_report};

int sw_git_branches(uv_loop_t *loop, const sw_git_opts_t *opts, size_t max, sw_git_branches_cb done,
                    void *payload, sw_git_job_t **out)
{
    refs_t *d;
    int r;

    if (!done || max == 0)
        return -EINVAL;
    d = sw_calloc(1, sizeof(*d));
    d->max = max;
    d->done = done;
    r = sw_git_job_start(loop, opts, &refs_work, d, payload, out);
    if (r < 0)
        refs_free(d);
    return r;
}
