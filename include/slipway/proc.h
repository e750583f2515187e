/* Child processes for builds and app instances: argv arrays only, their own process group,
 * output split into lines, timeouts, and a stop that escalates from SIGTERM to SIGKILL. */
#ifndef SLIPWAY_PROC_H
#define SLIPWAY_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

typedef struct sw_proc sw_proc_t;

enum { SW_PROC_STDOUT = 1, SW_PROC_STDERR = 2 };

#define SW_PROC_LINE_MAX 16384 /* longer lines are split, between UTF-8 characters */

/* One line without its newline (len <= SW_PROC_LINE_MAX); valid only during the call. */
typedef void (*sw_proc_line_cb)(sw_proc_t *p, int stream, const char *line, size_t len,
                                void *payload);
/* The process exited and both pipes are drained (every line delivered). exit_status is its
 * exit code, term_signal the signal that ended it (0: none); timed_out when the timeout
 * killed it. The proc may be freed from here (sw_proc_free). */
typedef void (*sw_proc_exit_cb)(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                                void *payload);

typedef struct {
    const char *file;        /* the program (argv[0] when NULL) */
    char **argv;             /* NULL-terminated */
    char **env;              /* NULL-terminated "K=V"; exactly the child's environment */
    const char *cwd;         /* NULL: inherit */
    uint32_t timeout_ms;     /* 0: none; on expiry the group gets SIGTERM, then SIGKILL */
    uint32_t kill_grace_ms;  /* between SIGTERM and SIGKILL (default 5000) */
    sw_proc_line_cb on_line; /* may be NULL: output discarded */
    sw_proc_exit_cb on_exit;
    void *payload;
} sw_proc_opts_t;

/* Spawns the child as the leader of a new process group with stdin from /dev/null. */
int sw_proc_spawn(sw_proc_t **out, uv_loop_t *loop, const sw_proc_opts_t *opts);
pid_t sw_proc_pid(const sw_proc_t *p);
/* Sends signum to the whole process group (no-op once exited). */
void sw_proc_signal(sw_proc_t *p, int signum);
/* Stops reading the child's output (it blocks once the pipes fill): backpressure for a
 * caller that cannot store lines as fast as they come. Output is never dropped. */
void sw_proc_pause(sw_proc_t *p);
void sw_proc_resume(sw_proc_t *p);
/* SIGTERM to the group, SIGKILL after grace_ms if it is still there. */
void sw_proc_stop(sw_proc_t *p, uint32_t grace_ms);
/* Frees after on_exit (or closes everything and frees if still running, killing the group
 * with SIGKILL; on_exit is then not called). */
void sw_proc_free(sw_proc_t *p);

#endif
