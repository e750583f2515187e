/* The container runtime: app instances as detached containers of a docker-compatible CLI
 * (podman or docker), driven with argv arrays only.
 *
 * An instance is one container at a time: `run -d` (env from a 0600 file removed as soon as
 * run returns, never argv), then its output is followed and its end watched: with podman
 * through the log file it writes for us (container_watch.c) and a pidfd on the container's
 * process, so an instance costs slipwayd no process at all; with docker (or where that cannot
 * work) through one `logs -f`, whose end is the container's. Inspect then says how it ended,
 * and whether for memory. A crash is removed, reported, and a new container starts after the
 * backoff. Containers carry labels slipway.app, slipway.deployment,
 * slipway.node (and slipway.port, slipway.name): they outlive slipwayd, and the next driver on the
 * node lists them and follows them again instead of starting new ones. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "container.h"

extern char **environ;

#define STEP_TIMEOUT_MS 120000 /* run, inspect, rm: a hung CLI is killed */
#define LOG_FILE_MAX    "8mb"  /* conmon starts the file anew past this: it is only a buffer */

typedef struct {
    sw_instance_t base;
    char cid[80];    /* the container now, "" between containers */
    char cname[128]; /* its name */
    char *image, *command, *cpu, *memory;
    char **env;
    uint16_t app_port;
    cli_cmd_t *step; /* run, inspect or rm in flight */

    sw_proc_t *logs;  /* `logs -f` (its output and its end), or `wait` (its end only) */
    ctail_t *tail;    /* the log file, with podman */
    cpidwatch_t *pw;  /* the end of the container's process, with the log file */
    bool tail_more;   /* the file had more than one turn reads */
    bool tail_held;   /* opened where a followed-again container was found, read from there
                         once the worker can mask its output (instance_start) */
    uv_timer_t timer; /* restart after a crash, or the end of a drain */
    int pid;
    bool pid_known, logs_ended, exited, oom, draining, detaching, gone;
    bool start_again; /* followed again, it ended: `start` it as it was, after the backoff */
    int64_t exit_code;
    char since[40]; /* logs from here on (a followed-again container) */
} cinst_t;

static void advance(cinst_t *in);

static void on_timer(uv_timer_t *t)
{
    advance(t->data);
}

static container_rt_t *crt_of(sw_runtime_t *rt)
{
    return sw_container_of(rt, container_rt_t, base);
}

static cinst_t *cinst(sw_instance_t *in)
{
    return sw_container_of(in, cinst_t, base);
}

static void changed(sw_runtime_t *rt)
{
    if (rt->cbs.on_change)
        rt->cbs.on_change(rt->cbs.payload);
}

static void emit(cinst_t *in, const char *fmt, ...) SW_PRINTF(2, 3);
static void emit(cinst_t *in, const char *fmt, ...)
{
    sw_runtime_t *rt = in->base.rt;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (rt->cbs.on_line)
        rt->cbs.on_line(&in->base, "stderr", line, strlen(line), rt->cbs.payload);
}

/* ---- lifetime of the instance object ---- */

static void instance_free(cinst_t *in)
{
    free(in->image);
    free(in->command);
    free(in->cpu);
    free(in->memory);
    sw_strv_free(in->env);
    free(in->base.dir);
    free(in);
}

static void on_timer_closed(uv_handle_t *h)
{
    instance_free(h->data);
}

static void release(cinst_t *in)
{
    sw_runtime_t *rt = in->base.rt;
    in->gone = true;
    for (sw_instance_t **pp = &rt->instances; *pp; pp = &(*pp)->next) {
        if (*pp == &in->base) {
            *pp = in->base.next;
            break;
        }
    }
    changed(rt);
    uv_close((uv_handle_t *)&in->timer, on_timer_closed);
    if (rt->cbs.on_gone)
        rt->cbs.on_gone(&in->base, rt->cbs.payload);
}

/* ---- the CLI steps ---- */

static void last_line(const sw_buf_t *b, char *out, size_t size)
{
    out[0] = '\0';
    if (!b->len)
        return;
    size_t end = b->len;
    while (end && b->base[end - 1] == '\n')
        end--;
    size_t start = end;
    while (start && b->base[start - 1] != '\n')
        start--;
    snprintf(out, size, "%.*s", (int)(end - start), b->base + start);
}

static int step(cinst_t *in, const char *const *args, cli_done_cb done)
{
    container_rt_t *crt = crt_of(in->base.rt);
    int rc = sw_container_cli(crt, args, STEP_TIMEOUT_MS, done, in, &in->step);
    if (rc != 0)
        in->step = NULL;
    return rc;
}

static void env_file_path(const cinst_t *in, char *out, size_t size)
{
    snprintf(out, size, "%s/%s.env", crt_of(in->base.rt)->dir, in->cname);
}

static void log_file_path(const container_rt_t *crt, const char *cname, char *out, size_t size)
{
    snprintf(out, size, "%s/%s.log", crt->dir, cname);
}

/* The log file is done with: what is left is passed on, and (the container gone) removed. */
static void tail_end(cinst_t *in, bool remove)
{
    if (!in->tail)
        return;
    if (!in->tail_held)
        ctail_read(in->tail); /* a held one is never read: no one could mask it */
    ctail_close(in->tail);
    in->tail = NULL;
    in->tail_more = in->tail_held = false;
    if (remove) {
        char path[800];
        log_file_path(crt_of(in->base.rt), in->cname, path, sizeof(path));
        unlink(path);
    }
}

static void pidwatch_end(cinst_t *in)
{
    cpidwatch_stop(in->pw);
    in->pw = NULL;
}

static void follow(cinst_t *in);

static void on_run(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    cinst_t *in = payload;
    char path[800];
    in->step = NULL;
    env_file_path(in, path, sizeof(path));
    unlink(path); /* the container has its env: the file goes at once */
    if (exit_status != 0 && crt_of(in->base.rt)->log_files) {
        log_file_path(crt_of(in->base.rt), in->cname, path, sizeof(path));
        unlink(path); /* a container that never was may still have made it */
    }
    if (exit_status == 0)
        last_line(&c->out, in->cid, sizeof(in->cid));
    if (in->cid[0])
        follow(in);
    else {
        emit(in, "slipway: the container did not start: %s", sw_container_cli_error(c));
        if (!in->base.stopping)
            uv_timer_start(&in->timer, on_timer, 1000, 0);
    }
    advance(in);
}

static void watch_pid(cinst_t *in);

static void on_inspect_pid(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    cinst_t *in = payload;
    in->step = NULL;
    in->pid_known = true;
    in->pid = exit_status == 0 ? atoi(c->out.base ? c->out.base : "0") : 0;
    watch_pid(in);
    changed(in->base.rt);
    advance(in);
}

/* Its logs ended: the container exited (how, and was it for memory?), or, still running,
 * the logs are followed again from now on. */
static void on_inspect_state(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    cinst_t *in = payload;
    char running[8] = "", oom[8] = "";
    long long code = -1;
    in->step = NULL;
    in->logs_ended = false;
    if (exit_status == 0 && c->out.base &&
        sscanf(c->out.base, "%7s %lld %7s", running, &code, oom) == 3 &&
        strcmp(running, "true") == 0) {
        if (in->tail) {
            /* The watch ended, not the container: watched again, after a moment in case
             * that keeps happening. */
            in->pid_known = false;
            uv_timer_start(&in->timer, on_timer, 1000, 0);
            return;
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(in->since, sizeof(in->since), "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
        follow(in);
    } else {
        in->exited = true;
        in->exit_code = code;
        in->oom = strcmp(oom, "true") == 0;
    }
    advance(in);
}

static void on_removed(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    cinst_t *in = payload;
    in->step = NULL;
    if (exit_status != 0)
        emit(in, "slipway: removing container %.12s failed: %s", in->cid,
             sw_container_cli_error(c));
    in->cid[0] = '\0';
    in->pid = 0;
    pidwatch_end(in);
    tail_end(in, true);
    advance(in);
}

static void on_log_line(sw_proc_t *p, int stream, const char *line, size_t len, void *payload)
{
    cinst_t *in = payload;
    sw_runtime_t *rt = in->base.rt;
    (void)p;
    if (rt->cbs.on_line)
        rt->cbs.on_line(&in->base, stream == SW_PROC_STDERR ? "stderr" : "stdout", line, len,
                        rt->cbs.payload);
}

static void on_logs_exit(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                         void *payload)
{
    cinst_t *in = payload;
    (void)exit_status;
    (void)term_signal;
    (void)timed_out;
    sw_proc_free(p);
    in->logs = NULL;
    in->logs_ended = true;
    advance(in);
}

/* A helper process: `logs -f` (output set: its lines are the container's, its end is the
 * container's) or `wait`. */
static void helper(cinst_t *in, const char *const *args, bool output)
{
    container_rt_t *crt = crt_of(in->base.rt);
    char **argv = sw_container_argv(crt, args);
    sw_proc_opts_t o = {
        .file = argv[0],
        .argv = argv,
        .env = environ,
        .cwd = crt->dir,
        .kill_grace_ms = 1000,
        .on_line = output ? on_log_line : NULL,
        .on_exit = on_logs_exit,
        .payload = in,
    };
    if (sw_proc_spawn(&in->logs, crt->loop, &o) != 0) {
        in->logs = NULL;
        in->logs_ended = true; /* asked again through inspect, after a moment */
    }
    sw_strv_free(argv);
}

static void on_more(uv_idle_t *h);

static void on_tail_line(void *payload, const char *stream, const char *line, size_t len)
{
    cinst_t *in = payload;
    sw_runtime_t *rt = in->base.rt;
    if (rt->cbs.on_line)
        rt->cbs.on_line(&in->base, stream, line, len, rt->cbs.payload);
}

/* The log file, at its end for one found running: false when it cannot be opened. */
static bool tail_open(cinst_t *in)
{
    container_rt_t *crt = crt_of(in->base.rt);
    char path[800];
    if (!crt->log_files)
        return false;
    log_file_path(crt, in->cname, path, sizeof(path));
    if (ctail_open(&in->tail, path, in->since[0] != '\0', on_tail_line, in) == 0)
        return true;
    in->tail = NULL; /* one started by a slipwayd that read it through `logs -f` */
    return false;
}

/* The container's output from its log file (from its start, or from where it was found
 * running), else from `logs -f`. The file's end is watched once the process is known. */
static void follow(cinst_t *in)
{
    container_rt_t *crt = crt_of(in->base.rt);
    if (in->tail && !in->tail_held)
        tail_end(in, false); /* a previous container's, never this one's */
    if (in->tail || tail_open(in)) {
        in->tail_held = false;
        in->tail_more = ctail_read(in->tail);
        if (in->tail_more)
            uv_idle_start(crt->more, on_more);
        if (in->pid_known)
            watch_pid(in); /* one found running, whose process was asked for already */
        return;
    }
    const char *args[] = {"logs", "-f", "--since", in->since[0] ? in->since : "0", in->cid, NULL};
    helper(in, args, true);
}

static void on_pid_exit(void *payload)
{
    cinst_t *in = payload;
    pidwatch_end(in);
    in->logs_ended = true;
    advance(in);
}

/* With the log file, the container's end is its process's: a pidfd says so at once and
 * costs nothing. Where the process cannot be seen (another pid namespace), `wait` does it. */
static void watch_pid(cinst_t *in)
{
    if (!in->tail || in->tail_held || in->pw || in->logs || in->exited)
        return;
    int rc = in->pid > 0 ? cpidwatch_start(crt_of(in->base.rt)->loop, in->pid, in->cid, on_pid_exit,
                                           in, &in->pw)
                         : -ESRCH;
    if (rc == 0)
        return;
    in->pw = NULL;
    if (rc == -ESRCH) {
        in->logs_ended = true; /* ended already: inspect says how */
        return;
    }
    const char *args[] = {"wait", in->cid, NULL};
    helper(in, args, false);
}

static void crashed(cinst_t *in)
{
    sw_runtime_t *rt = in->base.rt;
    char reason[160] = "";
    bool limited = in->memory && in->memory[0];
    if (in->oom)
        snprintf(reason, sizeof(reason), "killed for using more memory than its limit (%s)",
                 limited ? in->memory : "the host's");
    else if (limited && in->exit_code == 137)
        /* Some CLIs (podman on cgroup v1) never set OOMKilled: say what is known. */
        snprintf(reason, sizeof(reason),
                 "killed by SIGKILL with a memory limit of %s: most likely out of memory",
                 in->memory);
    uint64_t delay = SW_MIN(1000u << SW_MIN(in->base.restarts, 5u), 30000u);
    in->base.restarts++;
    int64_t code = in->exit_code;
    int sig = code > 128 && code < 128 + 65 ? (int)(code - 128) : 0;
    if (rt->cbs.on_crash)
        rt->cbs.on_crash(&in->base, sig ? 0 : code, sig, reason[0] ? reason : NULL, (uint32_t)delay,
                         rt->cbs.payload);
    in->exited = in->oom = in->pid_known = in->logs_ended = false;
    in->since[0] = '\0';
    in->start_again = in->cid[0] != '\0';
    changed(rt);
    uv_timer_start(&in->timer, on_timer, delay, 0);
}

/* A container followed again: its image, command, env and limits are its own, not known
 * here, so it is not replaced but started again as it was. */
static bool spec_known(const cinst_t *in)
{
    return in->image[0] != '\0';
}

static void on_started(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    cinst_t *in = payload;
    in->step = NULL;
    in->start_again = false;
    if (exit_status != 0) {
        /* Nothing to start it from: the instance ends, its container removed. */
        emit(in, "slipway: container %.12s could not be started again: %s", in->cid,
             sw_container_cli_error(c));
        in->base.stopping = true;
    } else if (!in->tail && !in->logs) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(in->since, sizeof(in->since), "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
        follow(in);
    }
    changed(in->base.rt);
    advance(in);
}

static int run(cinst_t *in);

/* The one place that moves an instance on: whatever is next, given what it knows. */
static void advance(cinst_t *in)
{
    container_rt_t *crt = crt_of(in->base.rt);
    if (in->step || in->gone)
        return;
    if (in->cid[0] && in->base.stopping && !in->detaching && !(in->draining && !in->exited)) {
        char grace[16];
        snprintf(grace, sizeof(grace), "%u", (crt->cfg->stop_grace_ms + 999) / 1000);
        const char *args[] = {"rm", "-f", "-t", grace, in->cid, NULL};
        if (step(in, args, on_removed) == 0)
            return;
        in->cid[0] = '\0';
    }
    /* Let go (detaching) or removed (stopping): the followers end, then the instance. */
    if (in->detaching || (in->base.stopping && !in->draining)) {
        pidwatch_end(in);
        tail_end(in, false); /* a container let go keeps its file for the next slipwayd */
        if (in->logs)
            sw_proc_stop(in->logs, 500);
        else
            release(in);
        return;
    }
    if (in->base.stopping)
        return; /* draining: it serves until the timer ends the drain */
    if (in->start_again) {
        const char *args[] = {"start", in->cid, NULL};
        if (uv_is_active((uv_handle_t *)&in->timer) || step(in, args, on_started) == 0)
            return;
        in->start_again = false;
        in->base.stopping = true; /* cannot even run the CLI: the instance ends */
        advance(in);
        return;
    }
    if (in->cid[0] && !in->pid_known && !in->exited) {
        const char *args[] = {"inspect", "--format", "{{.State.Pid}}", in->cid, NULL};
        step(in, args, on_inspect_pid);
        return;
    }
    if (in->logs_ended && in->cid[0] && !in->exited) {
        const char *args[] = {"inspect", "--format",
                              "{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}}",
                              in->cid, NULL};
        if (step(in, args, on_inspect_state) == 0)
            return;
        in->exited = true;
    }
    if (in->exited && in->cid[0] && spec_known(in)) {
        const char *args[] = {"rm", "-f", in->cid, NULL};
        if (step(in, args, on_removed) == 0)
            return;
        in->cid[0] = '\0'; /* as on_removed does, or the next container would read its file */
        pidwatch_end(in);
        tail_end(in, true);
    }
    if (in->exited && (!in->cid[0] || !spec_known(in)) && !in->logs) {
        crashed(in);
        return;
    }
    if (!in->cid[0] && !in->exited && !uv_is_active((uv_handle_t *)&in->timer))
        run(in);
}

/* ---- starting a container ---- */

static void env_skipped(const char *key, void *payload)
{
    emit(payload, "slipway: env var %s holds a newline: containers cannot take it", key);
}

static int run(cinst_t *in)
{
    container_rt_t *crt = crt_of(in->base.rt);
    sw_instance_t *b = &in->base;
    bool host = strcmp(crt->cfg->container_network, "host") == 0;
    unsigned char rnd[4];
    randombytes_buf(rnd, sizeof(rnd));
    snprintf(in->cname, sizeof(in->cname), "slipway-%.8s-%s-%02x%02x%02x%02x", b->app_id, b->name,
             rnd[0], rnd[1], rnd[2], rnd[3]);
    char path[800], port_env[32], label_app[64], label_dep[64], label_node[160], label_port[32],
        label_name[64], label_data[700], publish[32], memory[32], cpus[32], log_opt[820];
    env_file_path(in, path, sizeof(path));
    snprintf(port_env, sizeof(port_env), "PORT=%u", host ? b->port : in->app_port);
    int rc = sw_container_env_file(path, in->env, port_env, env_skipped, in);
    if (rc != 0) {
        emit(in, "slipway: the env file could not be written: %s", sw_strerror(rc));
        uv_timer_start(&in->timer, on_timer, 1000, 0);
        return rc;
    }
    snprintf(label_app, sizeof(label_app), "slipway.app=%s", b->app_id);
    snprintf(label_dep, sizeof(label_dep), "slipway.deployment=%s", b->deployment_id);
    snprintf(label_node, sizeof(label_node), "slipway.node=%s", crt->node);
    snprintf(label_port, sizeof(label_port), "slipway.port=%u", b->port);
    snprintf(label_name, sizeof(label_name), "slipway.name=%s", b->name);
    snprintf(label_data, sizeof(label_data), "slipway.data=%s", crt->cfg->data_dir);
    snprintf(publish, sizeof(publish), "%u:%u", b->port, in->app_port);
    const char *args[48] = {"run",        "-d",       "--name",    in->cname,
                            "--label",    label_app,  "--label",   label_dep,
                            "--label",    label_node, "--label",   label_port,
                            "--label",    label_name, "--label",   label_data,
                            "--env-file", path,       "--network", host ? "host" : "bridge"};
    size_t n = 20;
    if (!host) {
        args[n++] = "-p";
        args[n++] = publish;
    }
    if (crt->log_files) {
        char log_path[800];
        log_file_path(crt, in->cname, log_path, sizeof(log_path));
        snprintf(log_opt, sizeof(log_opt), "path=%s", log_path);
        args[n++] = "--log-driver";
        args[n++] = "k8s-file";
        args[n++] = "--log-opt";
        args[n++] = log_opt;
        args[n++] = "--log-opt";
        args[n++] = "max-size=" LOG_FILE_MAX;
    }
    uint64_t v;
    if (sw_runtime_memory_bytes(in->memory, &v) == 0) {
        snprintf(memory, sizeof(memory), "%llu", (unsigned long long)v);
        args[n++] = "--memory";
        args[n++] = memory;
    }
    if (sw_runtime_cpu_milli(in->cpu, &v) == 0) {
        snprintf(cpus, sizeof(cpus), "%llu.%03llu", (unsigned long long)(v / 1000),
                 (unsigned long long)(v % 1000));
        args[n++] = "--cpus";
        args[n++] = cpus;
    }
    args[n++] = in->image;
    if (in->command[0]) {
        args[n++] = "/bin/sh";
        args[n++] = "-c";
        args[n++] = in->command;
    }
    args[n] = NULL;
    in->pid_known = in->exited = in->oom = in->logs_ended = false;
    rc = step(in, args, on_run);
    if (rc != 0) {
        unlink(path);
        uv_timer_start(&in->timer, on_timer, 1000, 0);
        return rc;
    }
    changed(b->rt);
    return 0;
}

/* ---- the runtime.h operations ---- */

static cinst_t *instance_alloc(container_rt_t *crt, const char *app_id, const char *deployment_id,
                               const char *name, uint16_t port)
{
    cinst_t *in = sw_calloc(1, sizeof(*in));
    sw_instance_t *b = &in->base;
    b->rt = &crt->base;
    snprintf(b->app_id, sizeof(b->app_id), "%s", app_id);
    snprintf(b->deployment_id, sizeof(b->deployment_id), "%s", deployment_id);
    snprintf(b->name, sizeof(b->name), "%s", name);
    b->port = port;
    sw_runtime_endpoint(b->endpoint, sizeof(b->endpoint), crt->cfg->advertise_address, port);
    b->dir = sw_strdup("");
    uv_timer_init(crt->loop, &in->timer);
    in->timer.data = in;
    b->next = crt->base.instances;
    crt->base.instances = b;
    return in;
}

static int instance_new(sw_runtime_t *rt, const sw_instance_opts_t *o, sw_instance_t **out)
{
    container_rt_t *crt = crt_of(rt);
    uint16_t port = sw_runtime_pick_port(rt, crt->cfg->port_range);
    if (!port)
        return -EADDRNOTAVAIL;
    cinst_t *in = instance_alloc(crt, o->app_id, o->deployment_id, o->name, port);
    in->base.data = o->data;
    in->image = sw_strdup(o->image ? o->image : "");
    in->command = sw_strdup(o->command ? o->command : "");
    in->cpu = sw_strdup(o->cpu ? o->cpu : "");
    in->memory = sw_strdup(o->memory ? o->memory : "");
    in->app_port = o->app_port ? o->app_port : port;
    size_t n = 0;
    while (o->env && o->env[n])
        n++;
    in->env = sw_calloc(n + 1, sizeof(char *));
    for (size_t k = 0; k < n; k++)
        in->env[k] = sw_strdup(o->env[k]);
    *out = &in->base;
    return 0;
}

static int instance_start(sw_instance_t *base)
{
    cinst_t *in = cinst(base);
    if (in->cid[0] && !in->logs && (!in->tail || in->tail_held) && !in->logs_ended) {
        follow(in); /* one found running at start: its output from when it was found */
        advance(in);
        return 0;
    }
    return run(in);
}

static void on_drained(uv_timer_t *t)
{
    cinst_t *in = t->data;
    in->draining = false;
    advance(in);
}

static void instance_stop(sw_instance_t *base, uint32_t drain_ms)
{
    cinst_t *in = cinst(base);
    if (in->gone)
        return;
    bool was = base->stopping;
    base->stopping = true;
    uv_timer_stop(&in->timer);
    if (!was && drain_ms > 0 && in->cid[0]) {
        in->draining = true;
        uv_timer_start(&in->timer, on_drained, drain_ms, 0);
        changed(base->rt);
        return;
    }
    in->draining = false;
    changed(base->rt);
    advance(in);
}

static void instance_detach(sw_instance_t *base)
{
    cinst_t *in = cinst(base);
    if (in->gone)
        return;
    if (in->draining || !in->cid[0]) {
        instance_stop(base, 0); /* being let go anyway, or not running: nothing to keep */
        return;
    }
    base->stopping = true;
    in->detaching = true;
    uv_timer_stop(&in->timer);
    advance(in);
}

static int instance_pid(const sw_instance_t *base)
{
    const cinst_t *in = sw_container_of(base, const cinst_t, base);
    return in->cid[0] && !in->exited ? (in->pid > 0 ? in->pid : 1) : 0;
}

static int health(sw_instance_t *in, const char *path, sw_runtime_health_cb cb, void *payload,
                  sw_runtime_probe_t **out)
{
    return sw_runtime_http_probe(crt_of(in->rt)->loop, in->port, path, cb, payload, out);
}

static int adopt(sw_runtime_t *rt, const char *dir, long run_uid, bool again)
{
    (void)rt;
    (void)dir;
    (void)run_uid;
    (void)again;
    return 0; /* the build runs in a container: the directory stays slipwayd's */
}

static void ignore_answer(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    (void)c;
    (void)exit_status; /* an image gone already or in use, a container gone: as good */
    (void)payload;
}

static void image_remove(sw_runtime_t *rt, const char *image)
{
    const char *args[] = {"rmi", image, NULL};
    sw_container_cli(crt_of(rt), args, STEP_TIMEOUT_MS, ignore_answer, NULL, NULL);
}

static void state(sw_runtime_t *rt, sw_buf_t *out)
{
    (void)rt;
    (void)out; /* containers are found by label, not by a state file */
}

static unsigned reap(sw_runtime_t *rt, const char *text)
{
    (void)rt;
    (void)text;
    return 0;
}

/* ---- following again what a previous slipwayd started ---- */

static void follow_again(container_rt_t *crt, char *line)
{
    char cid[80], st[32], app[40], dep[40], port[8], name[24], cname[128];
    if (sscanf(line, "%79s %31s %39s %39s %7s %23s %127s", cid, st, app, dep, port, name, cname) !=
        7)
        return;
    const char *cn = cname[0] == '/' ? cname + 1 : cname; /* docker's names start so */
    if (strcmp(st, "true") != 0) {
        /* Ended while no one watched: gone; its app is started again like any other. */
        const char *args[] = {"rm", "-f", cid, NULL};
        sw_container_cli(crt, args, STEP_TIMEOUT_MS, ignore_answer, NULL, NULL);
        char path[800];
        log_file_path(crt, cn, path, sizeof(path));
        if (strncmp(cn, "slipway-", 8) == 0 && !strchr(cn, '/'))
            unlink(path);
        return;
    }
    cinst_t *in = instance_alloc(crt, app, dep, name, (uint16_t)atoi(port));
    snprintf(in->cid, sizeof(in->cid), "%s", cid);
    snprintf(in->cname, sizeof(in->cname), "%s", cn);
    in->image = sw_strdup("");
    in->command = sw_strdup("");
    in->cpu = sw_strdup("");
    in->memory = sw_strdup("");
    in->env = sw_calloc(1, sizeof(char *));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(in->since, sizeof(in->since), "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
    /* Read once the worker can mask its output (sw_runtime_instance_start), a moment later,
     * from here: what the app writes meanwhile is not lost. */
    in->tail_held = tail_open(in);
    advance(in);
}

static void container_free(sw_runtime_t *rt);

static void on_inspected(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    container_rt_t *crt = payload;
    crt->listing = NULL;
    if (crt->freed) {
        container_free(&crt->base);
        return;
    }
    (void)exit_status; /* one gone meanwhile fails the command: the others still print */
    if (c->out.base) {
        char *save = NULL;
        for (char *line = strtok_r(c->out.base, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            follow_again(crt, line);
    }
    crt->base.settling = false;
    changed(&crt->base);
}

#define FOLLOW_MAX 1024 /* containers followed again at once */

/* The ids of this node's containers, then what each is (ps formats differ between CLIs;
 * inspect's do not). */
static void on_listed(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    container_rt_t *crt = payload;
    crt->listing = NULL;
    if (crt->freed) {
        container_free(&crt->base);
        return;
    }
    const char *args[FOLLOW_MAX + 4] = {
        "inspect", "--format",
        "{{.Id}} {{.State.Running}} {{index .Config.Labels \"slipway.app\"}} "
        "{{index .Config.Labels \"slipway.deployment\"}} "
        "{{index .Config.Labels \"slipway.port\"}} {{index .Config.Labels \"slipway.name\"}} "
        "{{.Name}}"};
    size_t n = 3;
    char *save = NULL;
    for (char *id = exit_status == 0 && c->out.base ? strtok_r(c->out.base, "\n", &save) : NULL;
         id && n < FOLLOW_MAX + 3; id = strtok_r(NULL, "\n", &save))
        args[n++] = id;
    args[n] = NULL;
    if (n == 3 ||
        sw_container_cli(crt, args, STEP_TIMEOUT_MS, on_inspected, crt, &crt->listing) != 0) {
        crt->listing = NULL;
        crt->base.settling = false;
        changed(&crt->base);
    }
}

static void list_previous(container_rt_t *crt)
{
    char filter[200], data[700];
    snprintf(filter, sizeof(filter), "label=slipway.node=%s", crt->node);
    snprintf(data, sizeof(data), "label=slipway.data=%s", crt->cfg->data_dir);
    const char *args[] = {"ps",   "-a",       "-q", "--no-trunc", "--filter",
                          filter, "--filter", data, NULL};
    crt->base.settling = true;
    if (sw_container_cli(crt, args, STEP_TIMEOUT_MS, on_listed, crt, &crt->listing) != 0) {
        crt->listing = NULL;
        crt->base.settling = false;
    }
}

static void container_free(sw_runtime_t *rt)
{
    container_rt_t *crt = crt_of(rt);
    if (crt->listing) {
        /* Its answer comes back to crt: it frees it then. */
        crt->freed = true;
        sw_container_cli_kill(crt->listing);
        return;
    }
    if (crt->dir_watch)
        uv_close((uv_handle_t *)crt->dir_watch, (uv_close_cb)free);
    if (crt->more)
        uv_close((uv_handle_t *)crt->more, (uv_close_cb)free);
    sw_strv_free(crt->cli);
    free(crt);
}

/* ---- the log files' directory ---- */

static void on_more(uv_idle_t *h)
{
    container_rt_t *crt = h->data;
    bool more = false;
    for (sw_instance_t *b = crt->base.instances; b; b = b->next) {
        cinst_t *in = cinst(b);
        if (in->tail && in->tail_more && !in->tail_held)
            more |= in->tail_more = ctail_read(in->tail);
    }
    if (!more)
        uv_idle_stop(h);
}

static void on_dir_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    container_rt_t *crt = h->data;
    (void)events;
    if (status != 0 || !filename)
        return;
    for (sw_instance_t *b = crt->base.instances; b; b = b->next) {
        cinst_t *in = cinst(b);
        if (in->tail && !in->tail_held && ctail_is(in->tail, filename)) {
            if ((in->tail_more = ctail_read(in->tail)))
                uv_idle_start(crt->more, on_more);
            return;
        }
    }
}

/* podman writes each container's output to a file of ours; one inotify watch on their
 * directory says when to read. docker cannot put the file where we ask: `logs -f` there. */
static void watch_log_files(container_rt_t *crt)
{
    const char *base = strrchr(crt->cli[0], '/');
    if (strncmp(base ? base + 1 : crt->cli[0], "podman", 6) != 0)
        return;
    crt->dir_watch = sw_calloc(1, sizeof(*crt->dir_watch));
    crt->more = sw_calloc(1, sizeof(*crt->more));
    uv_idle_init(crt->loop, crt->more);
    crt->more->data = crt;
    uv_fs_event_init(crt->loop, crt->dir_watch);
    crt->dir_watch->data = crt;
    crt->log_files = uv_fs_event_start(crt->dir_watch, on_dir_change, crt->dir, 0) == 0;
}

static const sw_runtime_ops_t container_ops = {
    .name = "container",
    .instance_new = instance_new,
    .instance_start = instance_start,
    .instance_stop = instance_stop,
    .instance_detach = instance_detach,
    .instance_pid = instance_pid,
    .health = health,
    .probe_cancel = sw_runtime_http_probe_cancel,
    .build = sw_container_build,
    .build_stop = sw_container_build_stop,
    .build_pause = sw_container_build_pause,
    .adopt = adopt,
    .image_remove = image_remove,
    .state = state,
    .reap = reap,
    .free = container_free,
};

/* The CLI: SLIPWAY_CONTAINER_CLI as given (a path, or a name looked up on PATH), or podman,
 * else docker, on PATH. */
static int find_cli(const char *want, char *out, size_t size)
{
    const char *names[] = {want, NULL, NULL};
    if (!want[0]) {
        names[0] = "podman";
        names[1] = "docker";
    }
    for (int i = 0; names[i]; i++) {
        if (strchr(names[i], '/')) {
            if (access(names[i], X_OK) == 0) {
                snprintf(out, size, "%s", names[i]);
                return 0;
            }
            continue;
        }
        const char *path = getenv("PATH");
        char *copy = sw_strdup(path ? path : "/usr/local/bin:/usr/bin:/bin"), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            snprintf(out, size, "%s/%s", d, names[i]);
            if (access(out, X_OK) == 0) {
                free(copy);
                return 0;
            }
        }
        free(copy);
    }
    return -ENOENT;
}

int sw_runtime_container_new(sw_runtime_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                             const char *node, const sw_runtime_cbs_t *cbs, char *why,
                             size_t why_size)
{
    char cli[512];
    if (find_cli(cfg->container_cli, cli, sizeof(cli)) != 0) {
        snprintf(why, why_size, "%s not found on PATH (SLIPWAY_CONTAINER_CLI)",
                 cfg->container_cli[0] ? cfg->container_cli : "neither podman nor docker");
        return -ENOENT;
    }
    container_rt_t *crt = sw_calloc(1, sizeof(*crt));
    snprintf(crt->dir, sizeof(crt->dir), "%s/containers", cfg->data_dir);
    if ((mkdir(crt->dir, 0700) != 0 && errno != EEXIST) || chmod(crt->dir, 0700) != 0) {
        snprintf(why, why_size, "%s: %s", crt->dir, strerror(errno));
        free(crt);
        return -EACCES;
    }
    /* SLIPWAY_CONTAINER_FLAGS: words separated by spaces, never a shell's parsing. */
    size_t cap = 2;
    crt->cli = sw_calloc(cap, sizeof(char *));
    crt->cli[crt->ncli++] = sw_strdup(cli);
    char *flags = sw_strdup(cfg->container_flags), *save = NULL;
    for (char *w = strtok_r(flags, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        crt->cli = sw_realloc(crt->cli, (++cap) * sizeof(char *));
        crt->cli[crt->ncli++] = sw_strdup(w);
    }
    crt->cli[crt->ncli] = NULL;
    free(flags);
    crt->loop = loop;
    crt->cfg = cfg;
    /* A name that a restarted slipwayd has again: the configured one, else the host's (with
     * the data directory's label telling several local workers apart). */
    if (cfg->node_name[0] || gethostname(crt->node, sizeof(crt->node) - 1) != 0)
        snprintf(crt->node, sizeof(crt->node), "%s", node);
    crt->base.ops = &container_ops;
    crt->base.cbs = *cbs;
    crt->base.policy = SW_RUNTIME_ALL;
    watch_log_files(crt);
    list_previous(crt);
    *out = &crt->base;
    return 0;
}
