/* The daemon's half of the sandbox: what this host allows, the data directory's modes, build
 * directories handed to their app's uid, and the launcher's argv. See sandbox.h. */
#include "slipway/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/capability.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/common.h"
#include "slipway/log.h"

extern char **environ;

static const char *const policy_names[SW_RUNTIME_POLICY_MAX] = {"all", "admins", "off"};

const char *sw_runtime_policy_name(sw_runtime_policy_t p)
{
    return p < SW_RUNTIME_POLICY_MAX ? policy_names[p] : "?";
}

/* Root, or both capabilities a uid switch needs in the effective set. */
static bool can_switch_uid(void)
{
    if (geteuid() == 0)
        return true;
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) != 0)
        return false;
    uint32_t need = (1u << CAP_SETUID) | (1u << CAP_SETGID);
    return (d[0].effective & need) == need;
}

/* bwrap on PATH, as a shell would find it; "" when there is none. */
static void find_on_path(const char *name, char *out, size_t size)
{
    const char *path = getenv("PATH");
    out[0] = '\0';
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        if (len && snprintf(out, size, "%.*s/%s", (int)len, path, name) < (int)size &&
            access(out, X_OK) == 0)
            return;
        path += len + (path[len] == ':');
    }
    out[0] = '\0';
}

/* Runs /bin/true through the launcher as it will run builds: 0 when it exits 0. */
static int try_launcher(const sw_sandbox_t *sb, uid_t uid, const char *dir)
{
    char *cmd[] = {"/bin/true", NULL};
    char **argv = sw_sandbox_argv(sb, uid, dir, cmd);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* Its complaints (bwrap's or the launcher's) would only repeat what the log says. */
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *env[] = {"PATH=/usr/bin:/bin", NULL};
    pid_t pid;
    int r = posix_spawn(&pid, sb->exe, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    sw_sandbox_argv_free(argv);
    if (r != 0)
        return -r;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

/* Group and others lose every bit on what the data directory holds, but builds/, which they
 * may cross (not list) to reach their own build directory. Links are left alone. */
static int secure_data_dir(const char *data_dir)
{
    if (mkdir(data_dir, 0711) != 0 && errno != EEXIST)
        return -errno;
    if (chmod(data_dir, 0711) != 0)
        return -errno;
    int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return -errno;
    if (mkdirat(dfd, "builds", 0711) != 0 && errno != EEXIST) {
        int r = -errno;
        close(dfd);
        return r;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISLNK(st.st_mode))
            continue;
        mode_t want = strcmp(e->d_name, "builds") == 0 ? 0711 : (st.st_mode & 07700);
        if ((st.st_mode & 07777) != want)
            (void)fchmodat(dfd, e->d_name, want, 0);
    }
    closedir(d);
    return 0;
}

int sw_sandbox_open(sw_sandbox_t *sb, const sw_config_t *cfg)
{
    memset(sb, 0, sizeof(*sb));
    snprintf(sb->data_dir, sizeof(sb->data_dir), "%s", cfg->data_dir);
    ssize_t n = readlink("/proc/self/exe", sb->exe, sizeof(sb->exe) - 1);
    if (n <= 0 || (size_t)n >= sizeof(sb->exe) - 1)
        return n < 0 ? -errno : -ENAMETOOLONG;
    sb->exe[n] = '\0';
    /* The small launcher beside us when it is there; else slipwayd itself. */
    char *slash = strrchr(sb->exe, '/');
    char small[sizeof(sb->exe)];
    sb->exe_is_daemon = true;
    if (slash &&
        snprintf(small, sizeof(small), "%.*s/slipway-sandbox", (int)(slash - sb->exe), sb->exe) <
            (int)sizeof(small) &&
        access(small, X_OK) == 0) {
        memcpy(sb->exe, small, sizeof(sb->exe));
        sb->exe_is_daemon = false;
    }
    unsigned long lo = 300000, hi = 399999;
    (void)sscanf(cfg->app_uid_range, "%lu-%lu", &lo, &hi);
    sb->uid_lo = (uint32_t)lo;
    sb->uid_hi = (uint32_t)hi;

    int r = secure_data_dir(sb->data_dir);
    if (r < 0)
        return r;
    char builds[600];
    snprintf(builds, sizeof(builds), "%s/builds", sb->data_dir);

    sb->switch_uid = can_switch_uid();
    if (sb->switch_uid && geteuid() >= sb->uid_lo && geteuid() <= sb->uid_hi) {
        sw_log_kv(SW_LOG_ERROR, NULL,
                  "isolation: SLIPWAY_APP_UID_RANGE holds slipwayd's own uid; apps get no uid "
                  "of their own",
                  "uid_range", cfg->app_uid_range, NULL);
        sb->switch_uid = false;
    }
    if (sb->switch_uid && try_launcher(sb, sb->uid_lo, builds) != 0) {
        sw_log_kv(SW_LOG_WARN, NULL,
                  "isolation: a build under an app's uid could not start (can other uids cross "
                  "every parent of SLIPWAY_DATA_DIR?); builds and instances run as slipwayd's "
                  "own user",
                  "uid", cfg->app_uid_range, NULL);
        sb->switch_uid = false;
    }

    /* bwrap as root without a uid of the app's would map root into its namespace. */
    if (strcmp(cfg->bwrap, "off") != 0 && (sb->switch_uid || geteuid() != 0)) {
        if (strcmp(cfg->bwrap, "auto") == 0)
            find_on_path("bwrap", sb->bwrap, sizeof(sb->bwrap));
        else
            snprintf(sb->bwrap, sizeof(sb->bwrap), "%s", cfg->bwrap);
        if (sb->bwrap[0] && try_launcher(sb, sb->uid_lo, builds) != 0) {
            sw_log_kv(SW_LOG_WARN, NULL,
                      "isolation: bwrap cannot make user, pid and mount namespaces here; builds "
                      "and instances run without them",
                      "bwrap", sb->bwrap, NULL);
            if (strcmp(cfg->bwrap, "auto") != 0)
                return -ENOEXEC;
            sb->bwrap[0] = '\0';
        }
    }

    if (!sb->switch_uid && geteuid() == 0) {
        /* Tenants' code would run as root: nothing runs, whatever the setting says. */
        sb->policy = SW_RUNTIME_OFF;
        sw_log_kv(SW_LOG_ERROR, NULL,
                  "isolation: slipwayd runs as root but cannot run builds under app uids (can "
                  "other uids cross every parent of SLIPWAY_DATA_DIR?); the process runtime is "
                  "off on this node",
                  "data_dir", cfg->data_dir, NULL);
        return 0;
    }
    if (strcmp(cfg->process_runtime, "all") == 0)
        sb->policy = SW_RUNTIME_ALL;
    else if (strcmp(cfg->process_runtime, "admins") == 0)
        sb->policy = SW_RUNTIME_ADMINS;
    else if (strcmp(cfg->process_runtime, "off") == 0)
        sb->policy = SW_RUNTIME_OFF;
    else
        sb->policy = sb->switch_uid ? SW_RUNTIME_ALL : SW_RUNTIME_ADMINS;

    if (sb->switch_uid)
        sw_log_kv(SW_LOG_INFO, NULL,
                  sb->bwrap[0] ? "isolation: each app's builds and instances run under its own "
                                 "uid, in user, pid, ipc and mount namespaces (bwrap)"
                               : "isolation: each app's builds and instances run under its own "
                                 "uid; no bwrap, so no namespaces",
                  "uid_range", cfg->app_uid_range, "process_runtime",
                  sw_runtime_policy_name(sb->policy), NULL);
    else
        sw_log_kv(SW_LOG_WARN, NULL,
                  "isolation: slipwayd has neither root nor CAP_SETUID and CAP_SETGID, so builds "
                  "and instances run as its own user and can read what it reads (the master "
                  "key, the database URL); only admins should deploy with the process runtime",
                  "process_runtime", sw_runtime_policy_name(sb->policy), NULL);
    return 0;
}

uid_t sw_sandbox_uid(const sw_sandbox_t *sb, long run_uid)
{
    return sb->switch_uid && run_uid > 0 ? (uid_t)run_uid : geteuid();
}

/* nftw takes no payload; only the loop thread adopts. */
static uid_t adopt_uid;
static int adopt_err; /* why adopt_one stopped the walk (it returns 1 then) */

static int adopt_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)type;
    (void)f;
    /* Only what the daemon wrote (or the app already owns): anything of another uid, or a
     * second name of a file (a hard link), may have been put there to be chowned. */
    if ((st->st_uid != geteuid() && st->st_uid != adopt_uid) ||
        (!S_ISDIR(st->st_mode) && st->st_nlink > 1))
        adopt_err = -EPERM;
    else if (lchown(path, adopt_uid, (gid_t)adopt_uid) != 0)
        adopt_err = -errno;
    return adopt_err ? 1 : 0;
}

int sw_sandbox_adopt(const sw_sandbox_t *sb, const char *build_dir, uid_t uid)
{
    /* Closed first: until the tree is the app's, nothing of the app's can enter it. */
    if (chmod(build_dir, 0700) != 0)
        return -errno;
    if (!sb->switch_uid)
        return 0;
    /* builds/ and builds/<app> are crossed, never listed, by the app's uid; nothing that is
     * not strictly inside the data directory is touched (a build directory somewhere else
     * once made /tmp 0711, and apt's sandbox user could no longer write there). */
    char parent[600];
    snprintf(parent, sizeof(parent), "%s", build_dir);
    size_t dlen = strlen(sb->data_dir);
    while (dlen > 1 && sb->data_dir[dlen - 1] == '/')
        dlen--;
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(parent, '/');
        if (!slash || slash == parent)
            break;
        *slash = '\0';
        bool inside = dlen > 0 && strncmp(parent, sb->data_dir, dlen) == 0 && parent[dlen] == '/' &&
                      parent[dlen + 1] != '\0';
        if (!inside)
            break;
        if (chmod(parent, 0711) != 0)
            return -errno;
    }
    adopt_uid = uid;
    adopt_err = 0;
    /* Depth first, so the top directory turns the app's last. */
    errno = 0;
    int r = nftw(build_dir, adopt_one, 32, FTW_PHYS | FTW_DEPTH | FTW_MOUNT);
    if (r == 1)
        return adopt_err;
    if (r != 0) /* nftw's own failure */
        return errno ? -errno : -EIO;
    return 0;
}

char **sw_sandbox_argv(const sw_sandbox_t *sb, uid_t uid, const char *dir, char *const *cmd)
{
    size_t n = 0;
    while (cmd[n])
        n++;
    char **argv = sw_calloc(2 + SW_SANDBOX_ARG_CMD + n + 1, sizeof(char *));
    char uid_s[24] = "-";
    if (sb->switch_uid)
        snprintf(uid_s, sizeof(uid_s), "%lu", (unsigned long)uid);
    size_t k = 0;
    argv[k++] = sw_strdup(sb->exe);
    if (sb->exe_is_daemon)
        argv[k++] = sw_strdup(SW_SANDBOX_EXEC_ARG);
    argv[k++] = sw_strdup(uid_s);
    argv[k++] = sw_strdup(dir);
    argv[k++] = sw_strdup(sb->data_dir);
    argv[k++] = sw_strdup(sb->bwrap[0] ? sb->bwrap : "-");
    for (size_t i = 0; i < n; i++)
        argv[k++] = sw_strdup(cmd[i]);
    return argv;
}

void sw_sandbox_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}
