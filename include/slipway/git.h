/* Fetching app sources with libgit2, on the uv threadpool: a bare mirror per repository,
 * fetched (never re-cloned) each time, then one commit checked out into a build directory. */
#ifndef SLIPWAY_GIT_H
#define SLIPWAY_GIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sw_git_job sw_git_job_t;

/* Jobs on one mirror take turns through flock() on this file inside mirror_dir; anything else
 * that touches a mirror (gc, cleanup) takes the same lock first. */
#define SW_GIT_MIRROR_LOCK "slipway.lock"

typedef struct {
    const char *url;          /* https://, ssh://, git@host:path, file:// */
    const char *ref;          /* branch or tag name; "" or NULL: the remote's HEAD */
    const char *commit_sha;   /* optional: 40 hex; wins over ref */
    const char *mirror_dir;   /* bare mirror, created on first use */
    const char *checkout_dir; /* must not exist; created and filled with the commit's tree */
    const char *https_token;  /* optional: sent as the password for https (user "x-token") */
    bool allow_file;          /* file:// permitted */
    uint32_t timeout_ms;      /* whole job; 0: none */
} sw_git_opts_t;

typedef struct {
    char commit_hash[41];
    char commit_message[1024]; /* first 1023 bytes of the message */
} sw_git_result_t;

/* Progress on the loop thread: objects received so far out of total (total 0: unknown). */
typedef void (*sw_git_progress_cb)(unsigned received, unsigned total, void *payload);
/* Once, on the loop thread. status 0, -ECANCELED, -ETIMEDOUT, -ENOENT (no such ref or commit),
 * -EINVAL (bad options), -EEXIST (checkout_dir exists), another negative errno from the file
 * system, or -EIO; on failure error names the cause (never credentials), on success it is
 * NULL. res is valid only during the call, and NULL on failure. */
typedef void (*sw_git_done_cb)(int status, const sw_git_result_t *res, const char *error,
                               void *payload);

/* Initialises libgit2 once per process. */
int sw_git_init(void);
/* Starts the job; *out (optional) lets the caller cancel it. Returns 0 or a negative code
 * (then done is not called). */
int sw_git_checkout(uv_loop_t *loop, const sw_git_opts_t *opts, sw_git_progress_cb progress,
                    sw_git_done_cb done, void *payload, sw_git_job_t **out);
/* Asks the job to stop; done follows with -ECANCELED (or its real outcome if it had
 * finished). Safe until done has been called. */
void sw_git_cancel(sw_git_job_t *job);

#endif
