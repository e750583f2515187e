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

int sw_container_build(sw_runtime_t *rt, const sw_runtime_build_opts_t *o,
                       sw_runtime_build_t **out);
void sw_container_build_stop(sw_runtime_build_t *b, uint32_t grace_ms);
void sw_container_build_pause(sw_runtime_build_t *b, bool pause);

#endif
