/* The runtime: how an app's builds and instances run on this node. The deployment worker
 * asks a driver (process.c: supervised child processes; a container driver later) to build
 * in a directory, to start instances of a release, to check their health and to stop them;
 * output lines, crashes and changes come back through the callbacks it gave, so the driver
 * never reaches into the worker.
 *
 * An instance is started with PORT set to a free port of SLIPWAY_PORT_RANGE, follows its
 * output, restarts after a crash with backoff (1 s doubling to 30 s) and stops with grace
 * (SIGTERM, SIGKILL after SLIPWAY_STOP_GRACE). */
#ifndef SLIPWAY_RUNTIME_H
#define SLIPWAY_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/buf.h"
#include "slipway/config.h"

/* Who may deploy with the process runtime (SLIPWAY_PROCESS_RUNTIME, "auto" resolved). */
typedef enum {
    SW_RUNTIME_ALL,
    SW_RUNTIME_ADMINS,
    SW_RUNTIME_OFF,
    SW_RUNTIME_POLICY_MAX
} sw_runtime_policy_t;

typedef struct sw_runtime sw_runtime_t;
typedef struct sw_instance sw_instance_t;
typedef struct sw_runtime_build sw_runtime_build_t;
typedef struct sw_runtime_probe sw_runtime_probe_t;

/* What the worker hears from the runtime, all on the loop thread. */
typedef struct {
    /* A line of an instance's output (stream "stdout" or "stderr"), without its newline;
     * valid only during the call. */
    void (*on_line)(sw_instance_t *in, const char *stream, const char *line, size_t len,
                    void *payload);
    /* The instance exited on its own (exit code, or the signal that ended it, and why when
     * the runtime knows: "out of memory (limit 64Mi)", else NULL); it starts again after
     * delay_ms. */
    void (*on_crash)(sw_instance_t *in, int64_t exit_status, int term_signal, const char *reason,
                     uint32_t delay_ms, void *payload);
    /* What runs changed (an instance started, crashed, was asked to stop or is gone): the
     * node's state is worth saving. */
    void (*on_change)(void *payload);
    /* The instance is gone for good, out of the list; its data may be let go. */
    void (*on_gone)(sw_instance_t *in, void *payload);
    void *payload;
} sw_runtime_cbs_t;

/* An instance as the driver shows it; read-only outside the driver. */
struct sw_instance {
    sw_instance_t *next;
    sw_runtime_t *rt;
    char app_id[40];
    char deployment_id[40];
    char name[24];     /* in log lines: the deployment's first 8 hex digits and the replica */
    char endpoint[64]; /* where it serves: "127.0.0.1:<port>" */
    uint16_t port;
    bool stopping; /* asked to stop: an exit is expected */
    unsigned restarts;
    char *dir;  /* the build directory it runs from */
    void *data; /* the caller's (sw_instance_opts_t.data) */
};

typedef struct {
    const char *app_id;
    const char *deployment_id;
    const char *name;
    const char *dir;     /* the build directory: its working directory, writable */
    long run_uid;        /* the app's uid (0: none allocated) */
    const char *command; /* run with /bin/sh -c; for a container, "" runs the image's own */
    char *const *env;    /* NULL-terminated "K=V"; PORT is added */
    void *data;
    const char *cpu;    /* "500m", "0.5", "2" or "": the limits where the runtime can */
    const char *memory; /* "512Mi", "1G", "1048576" or "" */
    /* containers only */
    const char *image; /* the image reference to run */
    uint16_t app_port; /* where the app listens inside (bridge network): PORT */
} sw_instance_opts_t;

/* A build's output line and its end (exit code, the signal that ended it, whether its timeout
 * did). The build is freed before on_exit is called. */
typedef struct {
    const char *dir;
    long run_uid;
    const char *command; /* run with /bin/sh -c */
    char *const *env;    /* NULL-terminated "K=V"; exactly the build's environment */
    /* containers only: build dir/dockerfile into the image tag; env reaches it as secrets.
     * With pull, the image is pulled instead (auth: "user:password" for its registry, or
     * NULL), its progress as the output. */
    const char *image;
    const char *dockerfile;
    bool pull;
    bool push; /* push the built image to its registry instead of building */
    const char *auth;
    uint32_t timeout_ms;
    uint32_t kill_grace_ms;
    void (*on_line)(const char *stream, const char *line, size_t len, void *payload);
    void (*on_exit)(int64_t exit_status, int term_signal, bool timed_out, void *payload);
    void *payload;
} sw_runtime_build_opts_t;

/* status 0 with the HTTP status of GET path on the instance, or a negative code
 * (-ECANCELED after sw_runtime_probe_cancel). Called exactly once, never from inside
 * sw_runtime_health. */
typedef void (*sw_runtime_health_cb)(int status, int http_status, void *payload);

typedef struct {
    const char *name;
    int (*instance_new)(sw_runtime_t *rt, const sw_instance_opts_t *o, sw_instance_t **out);
    int (*instance_start)(sw_instance_t *in);
    void (*instance_stop)(sw_instance_t *in, uint32_t drain_ms);
    void (*instance_detach)(sw_instance_t *in); /* NULL: instances end with slipwayd */
    int (*instance_pid)(const sw_instance_t *in);
    int (*health)(sw_instance_t *in, const char *path, sw_runtime_health_cb cb, void *payload,
                  sw_runtime_probe_t **out);
    void (*probe_cancel)(sw_runtime_probe_t *p);
    int (*build)(sw_runtime_t *rt, const sw_runtime_build_opts_t *o, sw_runtime_build_t **out);
    void (*build_stop)(sw_runtime_build_t *b, uint32_t grace_ms);
    void (*build_pause)(sw_runtime_build_t *b, bool pause);
    int (*adopt)(sw_runtime_t *rt, const char *dir, long run_uid, bool again);
    void (*image_remove)(sw_runtime_t *rt, const char *image); /* NULL: no images */
    void (*state)(sw_runtime_t *rt, sw_buf_t *out);
    unsigned (*reap)(sw_runtime_t *rt, const char *state);
    void (*free)(sw_runtime_t *rt);
} sw_runtime_ops_t;

/* The part of every driver the worker reads. */
struct sw_runtime {
    const sw_runtime_ops_t *ops;
    sw_runtime_cbs_t cbs;
    sw_instance_t *instances; /* newest first */
    sw_runtime_policy_t policy;
    bool own_uids; /* each app runs under its own uid, from uid_lo..uid_hi */
    bool settling; /* still finding what a previous slipwayd left running: relaunch waits */
    const char *limits_why; /* NULL: resources are enforced; else why they cannot be */
    uint32_t uid_lo, uid_hi;
};

/* The process driver: builds and instances as supervised child processes through the sandbox
 * launcher (sandbox.h). Opens the sandbox (says in the log what is isolated); 0 or a negative
 * errno when the data directory cannot be secured. */
int sw_runtime_process_new(sw_runtime_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                           const sw_runtime_cbs_t *cbs);

/* The container driver: builds and instances through a docker-compatible CLI
 * (SLIPWAY_CONTAINER_CLI), argv arrays only. Instances are detached containers labelled
 * slipway.app, slipway.deployment and slipway.node=node; they outlive slipwayd, and a new
 * driver follows the ones of its node again (sw_runtime_reap reads no state for them).
 * -ENOENT when no CLI is found; why says so. */
int sw_runtime_container_new(sw_runtime_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                             const char *node, const sw_runtime_cbs_t *cbs, char *why,
                             size_t why_size);

const char *sw_runtime_policy_name(sw_runtime_policy_t p);

/* For drivers: a free port of port_range ("lo-hi") no instance of rt has (0: none), and the
 * endpoint "host:port" ("[v6]:port") the proxy reaches it at. */
uint16_t sw_runtime_pick_port(const sw_runtime_t *rt, const char *port_range);
void sw_runtime_endpoint(char *out, size_t size, const char *advertise, uint16_t port);
/* The app's resources as limits: cpu ("500m", "0.5", "2") in thousandths of a CPU, memory
 * ("512Mi", "1G", "1048576") in bytes. -ENOENT for "" (no limit), -EINVAL otherwise. */
int sw_runtime_cpu_milli(const char *cpu, uint64_t *out);
int sw_runtime_memory_bytes(const char *memory, uint64_t *out);
/* For drivers: GET path on 127.0.0.1:port, the answer to cb (see sw_runtime_health_cb). */
int sw_runtime_http_probe(uv_loop_t *loop, uint16_t port, const char *path, sw_runtime_health_cb cb,
                          void *payload, sw_runtime_probe_t **out);
void sw_runtime_http_probe_cancel(sw_runtime_probe_t *p);

/* A new instance of a release with its port chosen (-EADDRNOTAVAIL: none free), in the list
 * but not running yet. */
static inline int sw_runtime_instance_new(sw_runtime_t *rt, const sw_instance_opts_t *o,
                                          sw_instance_t **out)
{
    return rt->ops->instance_new(rt, o, out);
}
/* Starts it; on failure it is tried again in a second (until stopped). One a previous
 * slipwayd left running (instance data still NULL) is followed from here on instead. */
static inline int sw_runtime_instance_start(sw_instance_t *in)
{
    return in->rt->ops->instance_start(in);
}
/* Stops it with grace; on_gone follows once it is down. */
static inline void sw_runtime_instance_stop(sw_instance_t *in)
{
    in->rt->ops->instance_stop(in, 0);
}
/* slipwayd stops: an instance that outlives it (a container) is let go, still running, and
 * on_gone follows; any other is stopped. */
static inline void sw_runtime_instance_detach(sw_instance_t *in)
{
    if (in->rt->ops->instance_detach)
        in->rt->ops->instance_detach(in);
    else
        in->rt->ops->instance_stop(in, 0);
}
/* Lets it serve drain_ms more (the requests it has: the proxy sends it no new ones), then
 * stops it with grace. It counts as stopping from now on. */
static inline void sw_runtime_instance_drain(sw_instance_t *in, uint32_t drain_ms)
{
    in->rt->ops->instance_stop(in, drain_ms);
}
/* Its process id, 0 between restarts. */
static inline int sw_runtime_instance_pid(const sw_instance_t *in)
{
    return in->rt->ops->instance_pid(in);
}
static inline int sw_runtime_health(sw_instance_t *in, const char *path, sw_runtime_health_cb cb,
                                    void *payload, sw_runtime_probe_t **out)
{
    return in->rt->ops->health(in, path, cb, payload, out);
}
static inline void sw_runtime_probe_cancel(sw_runtime_t *rt, sw_runtime_probe_t *p)
{
    rt->ops->probe_cancel(p);
}
/* Runs a build; stop escalates to SIGKILL after grace_ms; pause stops reading its output
 * (backpressure: it blocks once the pipes fill, nothing is dropped). */
static inline int sw_runtime_build(sw_runtime_t *rt, const sw_runtime_build_opts_t *o,
                                   sw_runtime_build_t **out)
{
    return rt->ops->build(rt, o, out);
}
static inline void sw_runtime_build_stop(sw_runtime_t *rt, sw_runtime_build_t *b, uint32_t grace_ms)
{
    rt->ops->build_stop(b, grace_ms);
}
static inline void sw_runtime_build_pause(sw_runtime_t *rt, sw_runtime_build_t *b, bool pause)
{
    rt->ops->build_pause(b, pause);
}
/* Hands a build directory to the app's uid before anything of the app's runs in it; again: a
 * directory prepared before, left as it is when it is the app's already. 0 or a negative
 * errno. */
static inline int sw_runtime_adopt(sw_runtime_t *rt, const char *dir, long run_uid, bool again)
{
    return rt->ops->adopt(rt, dir, run_uid, again);
}
/* Removes an image no longer kept (one a container still runs from stays). */
static inline void sw_runtime_image_remove(sw_runtime_t *rt, const char *image)
{
    if (rt->ops->image_remove)
        rt->ops->image_remove(rt, image);
}
/* Lines for the node's state file naming what runs (to clean up after a restart), and the
 * clean-up itself from a previous state file's text: how many leftovers it killed. */
static inline void sw_runtime_state(sw_runtime_t *rt, sw_buf_t *out)
{
    rt->ops->state(rt, out);
}
static inline unsigned sw_runtime_reap(sw_runtime_t *rt, const char *state)
{
    return rt->ops->reap(rt, state);
}
/* Once no instance and no build is left. NULL is fine. */
static inline void sw_runtime_free(sw_runtime_t *rt)
{
    if (rt)
        rt->ops->free(rt);
}

#endif
