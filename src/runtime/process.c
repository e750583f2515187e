/* The process runtime: builds and app instances as child processes in their own process
 * groups, started through the sandbox launcher under the app's uid, supervised on the loop.
 *
 * The node's state file gets, for every group this runtime started, its leader's pid and
 * start time (so a reused pid is never mistaken for one of ours); a runtime that starts after
 * a crash kills the groups its predecessor left. */
#include "slipway/runtime.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>
#include <unistd.h>

#include "slipway/cgroup.h"
#include "slipway/proc.h"
#include "slipway/sandbox.h"

typedef struct sw_runtime_build build_t;

struct sw_runtime_build {
    build_t *next;
    struct process_rt *rt;
    sw_proc_t *proc;
    sw_runtime_build_opts_t o;
};

typedef struct process_rt {
    sw_runtime_t base;
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_sandbox_t sandbox;
    sw_cgroups_t cgroups; /* version 0: resources are not enforced (why says so) */
    build_t *builds;
} process_rt_t;

typedef struct {
    sw_instance_t base;
    sw_proc_t *proc;
    uv_timer_t restart_timer;
    char **argv;
    char **env;
    char cgroup[64]; /* its control group, "" when it has no limits */
    char *memory;    /* the limit, for a crash's reason */
    unsigned long oom_kills;
} instance_t;

static process_rt_t *process_rt(sw_runtime_t *rt)
{
    return sw_container_of(rt, process_rt_t, base);
}

static instance_t *instance(sw_instance_t *in)
{
    return sw_container_of(in, instance_t, base);
}

static void changed(sw_runtime_t *rt)
{
    if (rt->cbs.on_change)
        rt->cbs.on_change(rt->cbs.payload);
}

/* ---- instances: the app's running processes, supervised ---- */

static int instance_start(sw_instance_t *base);

static void instance_free(instance_t *in)
{
    if (in->cgroup[0])
        sw_cgroup_remove(&process_rt(in->base.rt)->cgroups, in->cgroup);
    free(in->memory);
    sw_strv_free(in->argv);
    sw_strv_free(in->env);
    free(in->base.dir);
    free(in);
}

static void on_restart_timer_closed(uv_handle_t *h)
{
    instance_free(h->data);
}

static void instance_unlink(instance_t *in)
{
    sw_runtime_t *rt = in->base.rt;
    for (sw_instance_t **pp = &rt->instances; *pp; pp = &(*pp)->next) {
        if (*pp == &in->base) {
            *pp = in->base.next;
            break;
        }
    }
}

static void instance_release(instance_t *in)
{
    sw_runtime_t *rt = in->base.rt;
    instance_unlink(in);
    changed(rt);
    uv_close((uv_handle_t *)&in->restart_timer, on_restart_timer_closed);
    if (rt->cbs.on_gone)
        rt->cbs.on_gone(&in->base, rt->cbs.payload);
}

static void on_restart(uv_timer_t *t)
{
    instance_t *in = t->data;
    if (!in->base.stopping)
        instance_start(&in->base);
}

static void on_instance_line(sw_proc_t *p, int stream, const char *line, size_t len, void *payload)
{
    instance_t *in = payload;
    sw_runtime_t *rt = in->base.rt;
    (void)p;
    if (rt->cbs.on_line)
        rt->cbs.on_line(&in->base, stream == SW_PROC_STDERR ? "stderr" : "stdout", line, len,
                        rt->cbs.payload);
}

static void on_instance_exit(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                             void *payload)
{
    instance_t *in = payload;
    sw_runtime_t *rt = in->base.rt;
    (void)timed_out;
    sw_proc_free(p);
    in->proc = NULL;
    if (in->base.stopping) {
        instance_release(in);
        return;
    }
    /* Crashed: restart with backoff, 1 s doubling to 30 s. */
    uint64_t delay = SW_MIN(1000u << SW_MIN(in->base.restarts, 5u), 30000u);
    in->base.restarts++;
    char reason[160] = "";
    if (in->cgroup[0]) {
        unsigned long kills = sw_cgroup_oom_kills(&process_rt(rt)->cgroups, in->cgroup);
        if (kills > in->oom_kills)
            snprintf(reason, sizeof(reason), "killed for using more memory than its limit (%s)",
                     in->memory);
        in->oom_kills = kills;
    }
    if (rt->cbs.on_crash)
        rt->cbs.on_crash(&in->base, exit_status, term_signal, reason[0] ? reason : NULL,
                         (uint32_t)delay, rt->cbs.payload);
    changed(rt);
    uv_timer_start(&in->restart_timer, on_restart, delay, 0);
}

static int instance_start(sw_instance_t *base)
{
    instance_t *in = instance(base);
    process_rt_t *prt = process_rt(base->rt);
    sw_proc_opts_t o = {
        .file = in->argv[0],
        .argv = in->argv,
        .env = in->env,
        .cwd = base->dir,
        .kill_grace_ms = prt->cfg->stop_grace_ms,
        .on_line = on_instance_line,
        .on_exit = on_instance_exit,
        .payload = in,
    };
    int rc = sw_proc_spawn(&in->proc, prt->loop, &o);
    if (rc != 0) {
        in->proc = NULL;
        uv_timer_start(&in->restart_timer, on_restart, 1000, 0);
        return rc;
    }
    /* Into its group at once: what it forks from here on is inside the limits too. */
    if (in->cgroup[0])
        sw_cgroup_attach_tree(&prt->cgroups, in->cgroup, sw_proc_pid(in->proc));
    changed(base->rt);
    return 0;
}

static void instance_stop(sw_instance_t *base, uint32_t drain_ms);

static void on_drained(uv_timer_t *t)
{
    instance_stop(&((instance_t *)t->data)->base, 0);
}

static void instance_stop(sw_instance_t *base, uint32_t drain_ms)
{
    instance_t *in = instance(base);
    process_rt_t *prt = process_rt(base->rt);
    base->stopping = true;
    uv_timer_stop(&in->restart_timer);
    if (in->proc && drain_ms > 0) {
        /* The restart timer is free now that it will not restart: it ends the drain. */
        uv_timer_start(&in->restart_timer, on_drained, drain_ms, 0);
        changed(base->rt);
        return;
    }
    if (in->proc) {
        sw_proc_stop(in->proc, prt->cfg->stop_grace_ms);
        changed(base->rt);
    } else {
        instance_release(in);
    }
}

static int instance_pid(const sw_instance_t *base)
{
    const instance_t *in = sw_container_of(base, const instance_t, base);
    return in->proc ? (int)sw_proc_pid(in->proc) : 0;
}

/* A control group with the app's resources, where the host has one to give. */
static void limit(process_rt_t *prt, instance_t *in, const sw_instance_opts_t *o)
{
    uint64_t bytes = 0, milli = 0;
    bool mem = sw_runtime_memory_bytes(o->memory, &bytes) == 0;
    bool cpu = sw_runtime_cpu_milli(o->cpu, &milli) == 0;
    if (!prt->cgroups.version || (!mem && !cpu))
        return;
    unsigned char rnd[4];
    randombytes_buf(rnd, sizeof(rnd));
    snprintf(in->cgroup, sizeof(in->cgroup), "%s-%02x%02x%02x%02x", in->base.name, rnd[0], rnd[1],
             rnd[2], rnd[3]);
    if (sw_cgroup_make(&prt->cgroups, in->cgroup, mem ? bytes : 0, cpu ? milli : 0) != 0) {
        sw_cgroup_remove(&prt->cgroups, in->cgroup);
        in->cgroup[0] = '\0';
        return;
    }
    in->memory = sw_strdup(mem ? o->memory : "none");
}

static int instance_new(sw_runtime_t *rt, const sw_instance_opts_t *o, sw_instance_t **out)
{
    process_rt_t *prt = process_rt(rt);
    uint16_t port = sw_runtime_pick_port(rt, prt->cfg->port_range);
    if (!port)
        return -EADDRNOTAVAIL;
    instance_t *in = sw_calloc(1, sizeof(*in));
    sw_instance_t *b = &in->base;
    b->rt = rt;
    snprintf(b->app_id, sizeof(b->app_id), "%s", o->app_id);
    snprintf(b->deployment_id, sizeof(b->deployment_id), "%s", o->deployment_id);
    snprintf(b->name, sizeof(b->name), "%s", o->name);
    b->port = port;
    /* where the proxy reaches it: SLIPWAY_ADVERTISE_ADDRESS */
    sw_runtime_endpoint(b->endpoint, sizeof(b->endpoint), prt->cfg->advertise_address, port);
    b->data = o->data;
    uv_timer_init(prt->loop, &in->restart_timer);
    in->restart_timer.data = in;
    char *cmd[] = {"/bin/sh", "-c", (char *)o->command, NULL};
    in->argv =
        sw_sandbox_argv(&prt->sandbox, sw_sandbox_uid(&prt->sandbox, o->run_uid), o->dir, cmd);
    size_t n = 0;
    while (o->env[n])
        n++;
    in->env = sw_calloc(n + 2, sizeof(char *));
    for (size_t k = 0; k < n; k++)
        in->env[k] = sw_strdup(o->env[k]);
    char port_env[24];
    snprintf(port_env, sizeof(port_env), "PORT=%u", port);
    in->env[n] = sw_strdup(port_env);
    b->dir = sw_strdup(o->dir);
    limit(prt, in, o);
    b->next = rt->instances;
    rt->instances = b;
    *out = b;
    return 0;
}

/* ---- health ---- */

static int health(sw_instance_t *in, const char *path, sw_runtime_health_cb cb, void *payload,
                  sw_runtime_probe_t **out)
{
    return sw_runtime_http_probe(process_rt(in->rt)->loop, in->port, path, cb, payload, out);
}

/* ---- builds ---- */

static void on_build_line(sw_proc_t *p, int stream, const char *line, size_t len, void *payload)
{
    build_t *b = payload;
    (void)p;
    b->o.on_line(stream == SW_PROC_STDERR ? "stderr" : "stdout", line, len, b->o.payload);
}

static void on_build_exit(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                          void *payload)
{
    build_t *b = payload;
    sw_proc_free(p);
    for (build_t **pp = &b->rt->builds; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    sw_runtime_build_opts_t o = b->o;
    free(b);
    o.on_exit(exit_status, term_signal, timed_out, o.payload);
}

static int build(sw_runtime_t *rt, const sw_runtime_build_opts_t *opts, sw_runtime_build_t **out)
{
    process_rt_t *prt = process_rt(rt);
    build_t *b = sw_calloc(1, sizeof(*b));
    b->rt = prt;
    b->o = *opts;
    char *cmd[] = {"/bin/sh", "-c", (char *)opts->command, NULL};
    char **argv = sw_sandbox_argv(&prt->sandbox, sw_sandbox_uid(&prt->sandbox, opts->run_uid),
                                  opts->dir, cmd);
    sw_proc_opts_t o = {
        .file = argv[0],
        .argv = argv,
        .env = (char **)opts->env,
        .cwd = opts->dir,
        .timeout_ms = opts->timeout_ms,
        .kill_grace_ms = opts->kill_grace_ms,
        .on_line = on_build_line,
        .on_exit = on_build_exit,
        .payload = b,
    };
    int rc = sw_proc_spawn(&b->proc, prt->loop, &o);
    sw_sandbox_argv_free(argv);
    if (rc != 0) {
        free(b);
        return rc;
    }
    b->next = prt->builds;
    prt->builds = b;
    *out = b;
    return 0;
}

static void build_stop(sw_runtime_build_t *b, uint32_t grace_ms)
{
    sw_proc_stop(b->proc, grace_ms);
}

static void build_pause(sw_runtime_build_t *b, bool pause)
{
    if (pause)
        sw_proc_pause(b->proc);
    else
        sw_proc_resume(b->proc);
}

/* ---- the sandbox ---- */

static int adopt(sw_runtime_t *rt, const char *dir, long run_uid, bool again)
{
    process_rt_t *prt = process_rt(rt);
    uid_t uid = sw_sandbox_uid(&prt->sandbox, run_uid);
    struct stat st;
    /* A build made before its app had a uid of its own (an upgrade) becomes the app's. */
    if (again && stat(dir, &st) == 0 && st.st_uid == uid)
        return 0;
    return sw_sandbox_adopt(&prt->sandbox, dir, uid);
}

/* ---- state: the process groups to clean up after a restart ---- */

static void boot_id(char *out, size_t size)
{
    if (sw_read_small("/proc/sys/kernel/random/boot_id", out, size))
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

/* Field 22 of /proc/<pid>/stat (ticks after boot); 0 when there is no such process. */
static unsigned long long proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (sw_read_small(path, buf, sizeof(buf)))
        return 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return 0;
    char *save = NULL;
    int field = 2;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        if (++field == 22)
            return strtoull(tok, NULL, 10);
    return 0;
}

static void state_group(sw_buf_t *b, sw_proc_t *proc)
{
    if (!proc)
        return;
    pid_t pid = sw_proc_pid(proc);
    unsigned long long start = proc_starttime(pid);
    if (start)
        sw_buf_printf(b, "group %d %llu\n", (int)pid, start);
}

static void state(sw_runtime_t *rt, sw_buf_t *out)
{
    process_rt_t *prt = process_rt(rt);
    char boot[64];
    boot_id(boot, sizeof(boot));
    sw_buf_printf(out, "boot %s\n", boot);
    for (sw_instance_t *in = rt->instances; in; in = in->next)
        state_group(out, instance(in)->proc);
    for (build_t *b = prt->builds; b; b = b->next)
        state_group(out, b->proc);
}

static unsigned reap(sw_runtime_t *rt, const char *text)
{
    (void)rt;
    char boot[64];
    boot_id(boot, sizeof(boot));
    char *copy = sw_strdup(text);
    bool same_boot = false;
    char *save = NULL;
    unsigned killed = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char word[16], arg[64];
        unsigned long long start = 0;
        if (sscanf(line, "%15s %63s %llu", word, arg, &start) < 2)
            continue;
        if (strcmp(word, "boot") == 0) {
            same_boot = strcmp(arg, boot) == 0;
        } else if (strcmp(word, "group") == 0 && same_boot) {
            pid_t pgid = (pid_t)atoi(arg);
            unsigned long long now = proc_starttime(pgid);
            /* The leader gone, its group's id cannot have been handed out again while
             * members remain; the leader alive, it must be the same process. */
            if (pgid > 1 && (now == 0 || now == start) && kill(-pgid, SIGKILL) == 0)
                killed++;
        }
    }
    free(copy);
    return killed;
}

static void process_free(sw_runtime_t *rt)
{
    free(process_rt(rt));
}

static const sw_runtime_ops_t process_ops = {
    .name = "process",
    .instance_new = instance_new,
    .instance_start = instance_start,
    .instance_stop = instance_stop,
    .instance_pid = instance_pid,
    .health = health,
    .probe_cancel = sw_runtime_http_probe_cancel,
    .build = build,
    .build_stop = build_stop,
    .build_pause = build_pause,
    .adopt = adopt,
    .state = state,
    .reap = reap,
    .free = process_free,
};

int sw_runtime_process_new(sw_runtime_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                           const sw_runtime_cbs_t *cbs)
{
    process_rt_t *prt = sw_calloc(1, sizeof(*prt));
    int rc = sw_sandbox_open(&prt->sandbox, cfg);
    if (rc != 0) {
        free(prt);
        return rc;
    }
    prt->loop = loop;
    prt->cfg = cfg;
    prt->base.ops = &process_ops;
    prt->base.cbs = *cbs;
    prt->base.policy = prt->sandbox.policy;
    prt->base.own_uids = prt->sandbox.switch_uid;
    prt->base.uid_lo = prt->sandbox.uid_lo;
    prt->base.uid_hi = prt->sandbox.uid_hi;
    if (sw_cgroups_open(&prt->cgroups) != 0)
        prt->base.limits_why = prt->cgroups.why;
    *out = &prt->base;
    return 0;
}
