/* The launcher half of the sandbox: runs in the child between fork and the tenant's command,
 * as `slipwayd --sandbox-exec UID DIR HIDE BWRAP CMD...` (see sandbox.h for the layout).
 *
 * Order matters: descriptors go first (nothing of the daemon's may cross the exec, whatever
 * lacked close-on-exec), then the supplementary groups, the gid and the uid (a uid switched
 * first could no longer change its gid), then PR_SET_NO_NEW_PRIVS so no set-uid program can
 * take the privileges back. bwrap is started only after all that, as the app's uid: its user
 * namespace then maps to that uid and nothing else. */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "slipway/sandbox.h"

#define FAIL_CODE 126 /* as a shell says of a command it cannot execute */
#define BWRAP_ARGS_MAX 40

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("slipway: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return FAIL_CODE;
}

/* Every descriptor above 2. close_range where the kernel has it, else what /proc lists, else
 * every number below the limit. */
static void close_from_3(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0)
        return;
#endif
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int self = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char *end;
            long fd = strtol(e->d_name, &end, 10);
            if (*end == '\0' && end != e->d_name && fd > 2 && fd != self)
                close((int)fd);
        }
        closedir(d);
        return;
    }
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 ? max : 65536); fd++)
        close((int)fd);
}

static int drop_to(const char *uid_s)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(uid_s, &end, 10);
    if (errno || *end || end == uid_s || v == 0 || v >= 2147483647ul)
        return fail("bad uid %s", uid_s);
    uid_t uid = (uid_t)v;
    gid_t gid = (gid_t)v;
    if (setgroups(0, NULL) != 0)
        return fail("cannot drop supplementary groups: %s", strerror(errno));
    if (setresgid(gid, gid, gid) != 0)
        return fail("cannot switch to gid %lu: %s", v, strerror(errno));
    if (setresuid(uid, uid, uid) != 0)
        return fail("cannot switch to uid %lu: %s", v, strerror(errno));
    /* A switch that could be undone is no switch. */
    if (setuid(0) == 0 || geteuid() != uid || getegid() != gid)
        return fail("uid %lu could take root back", v);
    return 0;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exec_bwrap(const char *bwrap, const char *dir, const char *hide, char **cmd)
{
    const char *args[BWRAP_ARGS_MAX];
    size_t n = 0;
    args[n++] = bwrap;
    /* Its own users (mapping only this uid), processes, System V IPC and mounts; the network
     * stays the host's, as instances serve on it. */
    args[n++] = "--unshare-user";
    args[n++] = "--unshare-pid";
    args[n++] = "--unshare-ipc";
    args[n++] = "--ro-bind";
    args[n++] = "/";
    args[n++] = "/";
    args[n++] = "--dev";
    args[n++] = "/dev";
    args[n++] = "--proc";
    args[n++] = "/proc";
    args[n++] = "--tmpfs";
    args[n++] = "/tmp";
    if (is_dir("/var/tmp")) {
        args[n++] = "--tmpfs";
        args[n++] = "/var/tmp";
    }
    /* The data directory is an empty tmpfs but for the one build directory bound into it. */
    if (strcmp(hide, "-") != 0 && is_dir(hide)) {
        args[n++] = "--tmpfs";
        args[n++] = hide;
    }
    args[n++] = "--bind";
    args[n++] = dir;
    args[n++] = dir;
    args[n++] = "--chdir";
    args[n++] = dir;
    args[n++] = "--";
    size_t ncmd = 0;
    while (cmd[ncmd])
        ncmd++;
    char **all = calloc(n + ncmd + 1, sizeof(char *));
    if (!all)
        return fail("out of memory");
    memcpy(all, args, n * sizeof(char *));
    memcpy(all + n, cmd, ncmd * sizeof(char *));
    execv(bwrap, all);
    return fail("cannot run %s: %s", bwrap, strerror(errno));
}

int sw_sandbox_exec(int argc, char **argv)
{
    if (argc <= SW_SANDBOX_ARG_CMD || argv[argc] != NULL)
        return fail("%s: missing arguments", SW_SANDBOX_EXEC_ARG);
    close_from_3();
    const char *uid = argv[SW_SANDBOX_ARG_UID];
    const char *dir = argv[SW_SANDBOX_ARG_DIR];
    const char *hide = argv[SW_SANDBOX_ARG_HIDE];
    const char *bwrap = argv[SW_SANDBOX_ARG_BWRAP];
    char **cmd = argv + SW_SANDBOX_ARG_CMD;
    int r;
    if (strcmp(uid, "-") != 0 && (r = drop_to(uid)) != 0)
        return r;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return fail("cannot set no_new_privs: %s", strerror(errno));
    if (strcmp(bwrap, "-") != 0)
        return exec_bwrap(bwrap, dir, hide, cmd);
    if (chdir(dir) != 0)
        return fail("cannot enter %s: %s", dir, strerror(errno));
    execv(cmd[0], cmd);
    return fail("cannot run %s: %s", cmd[0], strerror(errno));
}
