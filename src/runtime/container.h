/* What the container driver's files share (container.c: instances; container_build.c:
 * builds; container_cli.c: running the CLI), and nobody else may see. */
#ifndef SLIPWAY_RUNTIME_CONTAINER_H
#define SLIPWAY_RUNTIME_CONTAINER_H

#include <stdbool.h>
#include <uv.h>

#include "slipway/buf.h"
#include "slipway/proc.h"
#include "slipway/runtime.h"

#define CLI_OUT_MAX (64u * 1024u) /* what a CLI command's answer may hold */

typedef struct sw_runtime_build cbuild_t;
typedef struct cli_cmd cli_cmd_t;

typedef struct container_rt {
    sw_runtime_t base;
    uv_loop_t *loop;
    const sw_config_t *cfg;
    char node[128];
    char **cli; /* the CLI and SLIPWAY_CONTAINER_FLAGS: every command's argv starts so */
    size_t ncli;
    char dir[600]; /* SLIPWAY_DATA_DIR/containers, 0700: env files and build secrets */
    cbuild_t *builds;
    cli_cmd_t *listing; /* finding what a previous slipwayd left (settling) */
    bool freed;         /* freed while listing: the listing's answer frees it */
    /* podman: each container logs to dir/<name>.log (k8s-file), read as the directory's
     * watcher says it changed, and its end is seen through a pidfd. Otherwise (docker, or
     * where that cannot work) a `logs -f` per instance does both. */
    bool log_files;
    uv_fs_event_t *dir_watch;
    uv_idle_t *more; /* tails with more to read than one turn takes */
} container_rt_t;

/* A CLI command: its stdout collected (up to CLI_OUT_MAX), its stderr too, then done. */
typedef void (*cli_done_cb)(cli_cmd_t *c, int64_t exit_status, void *payload);
struct cli_cmd {
    sw_proc_t *proc;
    sw_buf_t out, err;
    cli_done_cb done;
    void *payload;
};

/* Runs the CLI with args (NULL-terminated) after its global flags; done is called once, then
 * the command is freed. A negative errno when it cannot start (done is then not called). */
int sw_container_cli(container_rt_t *crt, const char *const *args, uint32_t timeout_ms,
                     cli_done_cb done, void *payload, cli_cmd_t **out);
/* Kills a command; done still follows. */
void sw_container_cli_kill(cli_cmd_t *c);
/* The CLI's argv for args, NULL-terminated; free with sw_strv_free. */
char **sw_container_argv(const container_rt_t *crt, const char *const *args);
/* The last line of a command's stderr, for an error message. */
const char *sw_container_cli_error(cli_cmd_t *c);

/* Writes the CLI's --env-file at path (created 0600, never over an existing file): env's
 * KEY=value entries, then port_env. An entry holding a newline cannot be written in that
 * format: skipped(key) is told and it is left out. The buffer is wiped. */
int sw_container_env_file(const char *path, char *const *env, const char *port_env,
                          void (*skipped)(const char *key, void *payload), void *payload);

/* Following a container without a process of ours (container_watch.c): its log file, and
 * the end of its process. */
typedef struct ctail ctail_t;
typedef void (*ctail_line_cb)(void *payload, const char *stream, const char *line, size_t len);
/* Opens path, to be read from its start or (at_end) from what comes next. */
int ctail_open(ctail_t **out, const char *path, bool at_end, ctail_line_cb cb, void *payload);
/* Passes on every whole line that is new; true when more is left for the next turn. */
bool ctail_read(ctail_t *t);
/* The file's name (without its directory) is name. */
bool ctail_is(const ctail_t *t, const char *name);
/* Passes on what is left of an unfinished line, then closes. NULL is fine. */
void ctail_close(ctail_t *t);

typedef struct cpidwatch cpidwatch_t;
/* Calls done once when process pid, which must be container cid's own, ends. -ESRCH: it has
 * ended already; another negative errno: it cannot be watched from here (use `wait`). */
int cpidwatch_start(uv_loop_t *loop, int pid, const char *cid, void (*done)(void *payload),
                    void *payload, cpidwatch_t **out);
/* Stops watching (done is not called); NULL is fine. */
void cpidwatch_stop(cpidwatch_t *w);

int sw_container_build(sw_runtime_t *rt, const sw_runtime_build_opts_t *o,
                       sw_runtime_build_t **out);
void sw_container_build_stop(sw_runtime_build_t *b, uint32_t grace_ms);
void sw_container_build_pause(sw_runtime_build_t *b, bool pause);

#endif
