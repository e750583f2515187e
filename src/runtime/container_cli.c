/* Running the docker-compatible CLI: argv arrays only (the CLI, SLIPWAY_CONTAINER_FLAGS, then
 * the command's own arguments), slipwayd's environment (CONTAINERS_CONF and the like), the
 * answer collected with a cap. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "container.h"

extern char **environ;

char **sw_container_argv(const container_rt_t *crt, const char *const *args)
{
    size_t n = 0;
    while (args[n])
        n++;
    char **argv = sw_calloc(crt->ncli + n + 1, sizeof(char *));
    for (size_t i = 0; i < crt->ncli; i++)
        argv[i] = sw_strdup(crt->cli[i]);
    for (size_t i = 0; i < n; i++)
        argv[crt->ncli + i] = sw_strdup(args[i]);
    return argv;
}

static void on_line(sw_proc_t *p, int stream, const char *line, size_t len, void *payload)
{
    cli_cmd_t *c = payload;
    sw_buf_t *b = stream == SW_PROC_STDERR ? &c->err : &c->out;
    (void)p;
    if (b->len + len + 1 > CLI_OUT_MAX)
        return;
    sw_buf_append(b, line, len);
    sw_buf_append_char(b, '\n');
}

static void cmd_free(cli_cmd_t *c)
{
    sw_buf_free(&c->out);
    sw_buf_free(&c->err);
    free(c);
}

static void on_exit_cb(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                       void *payload)
{
    cli_cmd_t *c = payload;
    sw_proc_free(p);
    c->proc = NULL;
    if (term_signal || timed_out)
        exit_status = -1;
    c->done(c, exit_status, c->payload);
    cmd_free(c);
}

int sw_container_cli(container_rt_t *crt, const char *const *args, uint32_t timeout_ms,
                     cli_done_cb done, void *payload, cli_cmd_t **out)
{
    cli_cmd_t *c = sw_calloc(1, sizeof(*c));
    c->done = done;
    c->payload = payload;
    char **argv = sw_container_argv(crt, args);
    sw_proc_opts_t o = {
        .file = argv[0],
        .argv = argv,
        .env = environ,
        .cwd = crt->dir, /* conmon leaves files (an "oom" marker) in its working directory */
        .timeout_ms = timeout_ms,
        .kill_grace_ms = 2000,
        .on_line = on_line,
        .on_exit = on_exit_cb,
        .payload = c,
    };
    int rc = sw_proc_spawn(&c->proc, crt->loop, &o);
    sw_strv_free(argv);
    if (rc != 0) {
        cmd_free(c);
        return rc;
    }
    if (out)
        *out = c;
    return 0;
}

void sw_container_cli_kill(cli_cmd_t *c)
{
    if (c && c->proc)
        sw_proc_stop(c->proc, 1000);
}

const char *sw_container_cli_error(cli_cmd_t *c)
{
    if (!c->err.len)
        return "no error output";
    /* the last non-empty line */
    while (c->err.len && c->err.base[c->err.len - 1] == '\n')
        c->err.base[--c->err.len] = '\0';
    char *nl = strrchr(c->err.base, '\n');
    return nl ? nl + 1 : c->err.base;
}

int sw_container_env_file(const char *path, char *const *env, const char *port_env,
                          void (*skipped)(const char *key, void *payload), void *payload)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    sw_buf_t b = SW_BUF_INIT;
    for (char *const *e = env; *e; e++) {
        if (strchr(*e, '\n')) {
            char key[128];
            snprintf(key, sizeof(key), "%.*s", (int)strcspn(*e, "="), *e);
            skipped(key, payload);
            continue;
        }
        sw_buf_append_cstr(&b, *e);
        sw_buf_append_char(&b, '\n');
    }
    sw_buf_append_cstr(&b, port_env);
    sw_buf_append_char(&b, '\n');
    int rc = sw_write_all(fd, b.base, b.len);
    sodium_memzero(b.base, b.cap);
    sw_buf_free(&b);
    close(fd);
    return rc;
}
