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
#include <linux/capability.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/sandbox.h"

#define FAIL_CODE      126 /* as a shell says of a command it cannot execute */
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
    /* From root the switch drops every capability; from a non-root daemon holding
     * CAP_SETUID and CAP_SETGID they would stay (ambient ones too): drop them all. */
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct none[2];
    memset(none, 0, sizeof(none));
    if (syscall(SYS_capset, &h, none) != 0)
        return fail("cannot drop capabilities: %s", strerror(errno));
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

/* Signals a stop sends our group; the launcher hands them to the sandbox's session. */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT};
static volatile sig_atomic_t sandbox_group;

static void forward(int signum)
{
    int saved = errno;
    if (sandbox_group > 0)
        kill(-sandbox_group, signum);
    errno = saved;
}

#define INFO_FD 3 /* bwrap --info-fd in the child: what it says names the sandbox's first pid */

/* The sandbox's first process, as bwrap's --info-fd names it ({"child-pid": N, ...}); 0 when
 * bwrap said nothing (it failed before). */
static pid_t read_child_pid(int fd)
{
    char buf[512];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (strchr(buf, '}'))
            break;
    }
    buf[len] = '\0';
    const char *key = strstr(buf, "\"child-pid\"");
    if (!key || !(key = strchr(key, ':')))
        return 0;
    long pid = strtol(key + 1, NULL, 10);
    return pid > 1 ? (pid_t)pid : 0;
}

/* A graceful stop sends SIGTERM to our whole group, and bwrap's outer process would die of it
 * and, with it, the whole sandbox at once. So bwrap runs in a group of its own under this
 * launcher, which stays the leader of ours; the sandbox runs in a session of its own
 * (--new-session), and the launcher passes each stop signal on to that session only: the
 * command gets its SIGTERM, bwrap stays to reap it. The launcher ends as bwrap ends. A SIGKILL
 * of our group kills the launcher, and --die-with-parent takes the sandbox with it. */
static int run_bwrap(const char *bwrap, char **all)
{
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&block, forwarded[i]);
    int info[2];
    if (pipe(info) != 0)
        return fail("cannot make a pipe: %s", strerror(errno));
    sigprocmask(SIG_BLOCK, &block, &old);
    pid_t pid = fork();
    if (pid < 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        return fail("cannot fork: %s", strerror(errno));
    }
    if (pid == 0) {
        setpgid(0, 0);
        close(info[0]);
        if (info[1] != INFO_FD) {
            dup2(info[1], INFO_FD);
            close(info[1]);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        execv(bwrap, all);
        fail("cannot run %s: %s", bwrap, strerror(errno));
        _exit(FAIL_CODE);
    }
    setpgid(pid, pid); /* whichever of the two runs first */
    close(info[1]);
    /* Signals wait (blocked) until the session they go to is known. */
    sandbox_group = read_child_pid(info[0]);
    close(info[0]);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaction(forwarded[i], &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            _exit(FAIL_CODE);
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    /* Ended by a signal: end the same way, so the daemon reports the signal. */
    int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    kill(getpid(), sig);
    _exit(128 + sig);
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
    args[n++] = "--die-with-parent";
    args[n++] = "--new-session";
    args[n++] = "--info-fd";
    args[n++] = "3"; /* INFO_FD */
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
    int r = run_bwrap(bwrap, all); /* returns only when it could not fork */
    free(all);
    return r;
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
