/* What the files of the deployment worker share, and nobody else may see: the worker
 * (scheduler: worker.c), a run (run.c, fetch.c, release.c), its log (runlog.c), the builds
 * on disk (builds.c) and the node's state file (nodestate.c). */
#ifndef SLIPWAY_DEPLOY_INTERNAL_H
#define SLIPWAY_DEPLOY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/applog.h"
#include "slipway/buf.h"
#include "slipway/git.h"
#include "slipway/logcap.h"
#include "slipway/metrics.h"
#include "slipway/proxy.h"
#include "slipway/redis.h"
#include "slipway/runtime.h"
#include "slipway/worker.h"

#define LOG_FLUSH_MS 100
/* Output waiting to be stored; beyond it the build's pipes stop being read (backpressure),
 * so a build printing as fast as it can costs bounded memory. */
#define LOG_PENDING_MAX (2u * 1024u * 1024u)
#define HEALTH_POLL_MS  50
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
    sw_runtime_t *rt; /* the app's runtime: the worker's process or container one */
    bool container;
    char *image;      /* container: the image the instances run (built: slipway/<app>:<n>) */
    char *dockerfile; /* container: the checkout's dockerfile_path */
    char *cpu, *memory;
    int app_port;
    bool pulled;                /* container: the image is pulled, not built */
    bool refetch;               /* container: a built image pulled back from SLIPWAY_REGISTRY */
    bool pushing;               /* container: the built image goes to SLIPWAY_REGISTRY */
    char *registry_auth;        /* "user:password" for the image's registry, or NULL */
    char *registry_auth_sealed; /* "" when the app has none */
    char last_err[300];         /* the build's (pull's) last stderr line, for the error message */
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
    bool relaunch;  /* restarting the active release after slipwayd restarted: no deployment */
    bool mask_only; /* a relaunch whose containers were followed again: their secrets only */
    bool cancelled;
    bool handback; /* the worker is stopping: back to the queue, not failed */
    char error[512];
    sw_git_job_t *git;
    sw_runtime_build_t *build;
    sw_instance_t *fresh[MAX_INSTANCES];
    int nfresh;
    int nhealthy; /* fresh[0..nhealthy) answered their health check */
    sw_runtime_probe_t *probe;
    bool published; /* the proxy took the new endpoints; verifying */
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

/* A stream entry waiting for its app's lease, or an app to relaunch. */
struct entry {
    entry_t *next; /* in w->waiting */
    sw_worker_t *w;
    char entry_id[64];
    char deployment_id[40];
    char app_id[40];
    bool relaunch; /* not from the stream: the app's active release, to start again */
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
    sw_runtime_t *rt;  /* process instances */
    sw_runtime_t *crt; /* container instances; NULL when this node has no container CLI */
    char crt_why[256]; /* why crt is NULL */
    sw_proxy_t *proxy;
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

/* ---- worker.c: the scheduler ---- */

/* A pg callback that only logs a failure. */
void sw_deploy_ignore_pg(int status, sw_pg_result_t *res, void *payload);
/* Worker-level queries (a run's have the run to keep alive) are counted, so a stopping worker
 * is never freed under one: sw_worker_query_done() comes first in each callback, and false
 * means the worker is stopping and the answer is to be dropped. */
int sw_worker_query(sw_worker_t *w, const char *sql, int nparams, const char *const *params,
                    sw_pg_cb cb);
bool sw_worker_query_done(sw_worker_t *w);
/* Retries waiting entries (of one app, or all when app_id is NULL), oldest first. */
void sw_worker_retry_waiting(sw_worker_t *w, const char *app_id);
void sw_worker_maybe_stopped(sw_worker_t *w);
/* A run reached a terminal outcome ("success", "failed", "cancelled"): for /metrics. */
void sw_worker_count_finished(sw_worker_t *w, const char *status);
/* The end of a run, in an order that survives a crash at any point: the last log lines,
 * then the final status, then the stream entry is acknowledged and the lease given back. */
void sw_run_done(run_t *r);

/* Every instance of the node, whichever runtime runs it: first, then next (safe to use on an
 * instance just stopped: take next before). */
sw_instance_t *sw_worker_instances(const sw_worker_t *w);
sw_instance_t *sw_worker_next_instance(const sw_worker_t *w, const sw_instance_t *in);

/* ---- run.c: claim -> fetch -> build -> release ---- */

void sw_run_start(sw_worker_t *w, const char *entry_id, const char *deployment_id,
                  const char *app_id);
/* Starts the app's active release again after slipwayd restarted. */
void sw_run_relaunch(sw_worker_t *w, entry_t *e);
void sw_run_build(run_t *r);
void sw_run_fail(run_t *r, const char *fmt, ...) SW_PRINTF(2, 3);
void sw_run_finish(run_t *r, const char *status);
void sw_run_release(run_t *r);
void sw_run_persist(run_t *r);
void sw_run_close(run_t *r);
/* Stops whatever step r is in; the step's own completion then ends the run. */
void sw_run_interrupt(run_t *r);

/* ---- fetch.c, release.c, builds.c ---- */

void sw_fetch_start(run_t *r);
void sw_release_start(run_t *r);
/* The image a build of deployment number n of app_id is tagged with:
 * [SLIPWAY_REGISTRY/]slipway/<app id>:<n>. */
void sw_builds_image(const sw_worker_t *w, const char *app_id, const char *n, char *out,
                     size_t size);
/* Keeps the last SLIPWAY_KEEP_BUILDS builds of the run's app, then sw_run_done. */
void sw_builds_prune(run_t *r);

/* ---- runlog.c: masking, batching, status ---- */

secrets_t *sw_secrets_ref(secrets_t *sec);
void sw_secrets_unref(secrets_t *sec);
/* "12 s" when whole seconds, "1500 ms" otherwise: for messages naming a timeout. */
const char *sw_deploy_duration(uint32_t ms, char *out, size_t size);
void sw_runlog_flush(run_t *r);
void sw_run_log(run_t *r, const char *stream, const char *text, size_t len);
void sw_run_system(run_t *r, const char *fmt, ...) SW_PRINTF(2, 3);
void sw_run_status(run_t *r, const char *status, const char *stage, int progress);
void sw_app_log(sw_worker_t *w, const char *app_id, const secrets_t *sec, const char *stream,
                const char *instance, const char *text, size_t len);
void sw_app_system(sw_worker_t *w, const char *app_id, const char *fmt, ...) SW_PRINTF(3, 4);
void sw_runlog_publish_status(sw_hub_t *hub, const char *id, const char *status, const char *stage,
                              int progress, const char *error);
void sw_runlog_publish_end(sw_hub_t *hub, const char *id);
/* Deployments failed as abandoned (RETURNING id, stage, progress, error_message): their
 * watchers hear the end. payload: the hub. */
void sw_runlog_on_abandoned(int status, sw_pg_result_t *res, void *payload);

/* ---- git.c for gitrefs.c: a libgit2 job other than the checkout ----
 *
 * Such a job has the checkout's thread, deadline, cancel, address rule, credentials and host
 * key checks; its work runs on the job's thread and its report on the loop thread. */

struct git_remote;
struct git_repository;
struct git_remote_callbacks;

typedef struct {
    /* On the job's thread: 0 or a negative code (sw_git_job_fail's, or another errno). */
    int (*run)(sw_git_job_t *job, void *data);
    /* Once, on the loop thread, after the host key callback; it owns data from then on. error
     * names the cause when status is not 0 (never credentials). */
    void (*report)(int status, const char *error, void *data, void *payload);
} sw_git_work_t;

/* Starts work on opts (mirror_dir and checkout_dir unused); data is the job's from a 0 return,
 * and report will be called. */
int sw_git_job_start(uv_loop_t *loop, const sw_git_opts_t *opts, const sw_git_work_t *work,
                     void *data, void *payload, sw_git_job_t **out);
/* The job's callbacks (credentials, host keys, stops) into cb. */
void sw_git_job_callbacks(sw_git_job_t *job, struct git_remote_callbacks *cb);
/* A remote for the job's URL (detached when repo is NULL), connected for fetching with cb; or
 * why not: the stop, -EKEYREJECTED (host key), -EACCES (credentials refused or missing),
 * -EPERM (the address rule), -EHOSTUNREACH, -EFBIG (opts' max_read), -ENOENT (no such
 * repository) or -EIO, with the job's error set. */
int sw_git_job_remote(sw_git_job_t *job, struct git_repository *repo,
                      const struct git_remote_callbacks *cb, struct git_remote **out);
/* The cancel or deadline seen so far (sticky), or 0. */
int sw_git_job_stop(sw_git_job_t *job);
/* After a libgit2 call failed: sets the job's error ("<what>: ...") and answers as
 * sw_git_job_remote does. */
int sw_git_job_fail(sw_git_job_t *job, const char *what);
/* Sets the job's error. */
void sw_git_job_error(sw_git_job_t *job, const char *fmt, ...) SW_PRINTF(2, 3);

/* ---- nodestate.c: what to clean up and start again after a restart ---- */

void sw_nodestate_save(sw_worker_t *w);
void sw_nodestate_load(sw_worker_t *w);
void sw_nodestate_relaunch_query(sw_worker_t *w);

#endif
