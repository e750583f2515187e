/* Isolation for what tenants run on a node: every build and process instance of an app runs
 * under the app's own unprivileged uid and gid, with no new privileges, no descriptor of the
 * daemon's, and (where bubblewrap works) in its own user, pid, ipc and mount namespaces with
 * a read-only system, a private /tmp and only its own directory writable.
 *
 * Children are started through a launcher: sw_sandbox_argv() makes its argv, for the small
 * slipway-sandbox beside slipwayd, or for slipwayd itself (SW_SANDBOX_EXEC_ARG first), whose
 * main() hands it to sw_sandbox_exec() before anything else runs. The launcher closes every
 * descriptor above 2, drops to the app's ids, sets PR_SET_NO_NEW_PRIVS and executes the command;
 * with bwrap it stays the group's leader, runs bwrap in a group of its own and passes stop signals
 * on (see sandbox_exec.c). */
#ifndef SLIPWAY_SANDBOX_H
#define SLIPWAY_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "slipway/config.h"
#include "slipway/runtime.h"

#define SW_SANDBOX_EXEC_ARG "--sandbox-exec"

typedef struct {
    char data_dir[512];
    char exe[512];      /* the launcher: slipway-sandbox next to this binary, else this binary */
    bool exe_is_daemon; /* exe is slipwayd: SW_SANDBOX_EXEC_ARG goes first */
    char bwrap[512];    /* "" when builds and instances get no namespaces */
    uint32_t uid_lo, uid_hi;
    bool switch_uid; /* root or CAP_SETUID+CAP_SETGID: each app gets its own uid */
    sw_runtime_policy_t policy;
} sw_sandbox_t;

/* Finds out what this host allows (uid switching, a working bwrap, by starting the launcher
 * once), resolves the runtime policy and says at start, in the log, what is isolated and what
 * is not. Also takes every entry of the data directory away from group and others (builds/
 * stays traversable, so an app reaches its own build directory and lists nothing). 0 or a
 * negative errno when the data directory cannot be secured. */
int sw_sandbox_open(sw_sandbox_t *sb, const sw_config_t *cfg);

/* The uid an app runs as: its allocated run_uid when uids are switched, the daemon's own
 * otherwise. */
uid_t sw_sandbox_uid(const sw_sandbox_t *sb, long run_uid);

/* Prepares a freshly checked-out build directory for its app: the tree becomes the app's
 * (lchown, never following a link), the directory itself 0700, its parent traversable only.
 * Nothing of the app's can run in it before this returns. 0 or a negative errno. */
int sw_sandbox_adopt(const sw_sandbox_t *sb, const char *build_dir, uid_t uid);

/* A NULL-terminated argv running cmd (NULL-terminated, cmd[0] an absolute path) as uid in
 * dir through the launcher; free with sw_sandbox_argv_free. */
char **sw_sandbox_argv(const sw_sandbox_t *sb, uid_t uid, const char *dir, char *const *cmd);
void sw_sandbox_argv_free(char **argv);

/* The launcher: argv as after SW_SANDBOX_EXEC_ARG. Returns only on failure, with the exit
 * code to use (126), after saying why on stderr. */
int sw_sandbox_exec(int argc, char **argv);

/* The launcher's argument layout, shared by the two halves. */
enum {
    SW_SANDBOX_ARG_UID,   /* decimal, or "-" to keep the daemon's */
    SW_SANDBOX_ARG_DIR,   /* the only writable directory */
    SW_SANDBOX_ARG_HIDE,  /* hidden under an empty tmpfs (the data directory) */
    SW_SANDBOX_ARG_BWRAP, /* path, or "-" for none */
    SW_SANDBOX_ARG_CMD,   /* the command and its arguments follow */
};

#endif
