/* Container builds: `build -f <dockerfile> -t <image> <dir>` with the output streamed like any
 * build, or for an image deploy `pull <image>` (the registry's credentials in a 0600 auth file
 * of the same kind of directory, never argv). Build-time env reaches the build only as secrets
 * (`--secret id=KEY,src=FILE`, read by RUN --mount=type=secret,id=KEY): each value in a 0600 file
 * of a 0700 directory removed when the build ends, never a build arg that the image's history would
 * keep. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "container.h"

extern char **environ;

#define BUILD_SECRETS_MAX 256

struct sw_runtime_build {
    cbuild_t *next;
    container_rt_t *crt;
    sw_proc_t *proc;
    cli_cmd_t *check; /* a pull's `image inspect`: present images are not pulled */
    bool stopped;
    sw_runtime_build_opts_t o;
    char secrets[700]; /* the directory of the secret files */
};

static void remove_secrets(cbuild_t *b)
{
    DIR *d = opendir(b->secrets);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(b->secrets);
}

static void on_line(sw_proc_t *p, int stream, const char *line, size_t len, void *payload)
{
    cbuild_t *b = payload;
    (void)p;
    b->o.on_line(stream == SW_PROC_STDERR ? "stderr" : "stdout", line, len, b->o.payload);
}

static void finish(cbuild_t *b, int64_t exit_status, int term_signal, bool timed_out)
{
    remove_secrets(b);
    for (cbuild_t **pp = &b->crt->builds; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    sw_runtime_build_opts_t o = b->o;
    free(b);
    o.on_exit(exit_status, term_signal, timed_out, o.payload);
}

static void on_exit_cb(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                       void *payload)
{
    cbuild_t *b = payload;
    sw_proc_free(p);
    b->proc = NULL;
    finish(b, exit_status, term_signal, timed_out);
}

/* One "--secret id=KEY,src=FILE" pair per "KEY=VALUE" of env, files written into dir. */
static int write_secrets(const char *dir, char *const *env, char **argv, size_t *n)
{
    for (size_t i = 0; env && env[i] && i < BUILD_SECRETS_MAX; i++) {
        const char *eq = strchr(env[i], '=');
        if (!eq || eq == env[i] || memchr(env[i], ',', (size_t)(eq - env[i])))
            continue;
        char path[800];
        snprintf(path, sizeof(path), "%s/%zu", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return -errno;
        int rc = sw_write_all(fd, eq + 1, strlen(eq + 1));
        close(fd);
        if (rc != 0)
            return rc;
        sw_buf_t spec = SW_BUF_INIT;
        sw_buf_printf(&spec, "id=%.*s,src=%s", (int)(eq - env[i]), env[i], path);
        argv[(*n)++] = sw_strdup("--secret");
        argv[(*n)++] = sw_buf_steal(&spec);
    }
    return 0;
}

/* The registry an image reference names: its first part when that looks like a host. */
static void registry_of(const char *image, char *out, size_t size)
{
    size_t n = strcspn(image, "/");
    bool host = image[n] == '/' && (memchr(image, '.', n) || memchr(image, ':', n) ||
                                    (n == 9 && strncmp(image, "localhost", 9) == 0));
    snprintf(out, size, "%.*s", host ? (int)n : 9, host ? image : "docker.io");
}

/* dir/config.json holding auth ("user:password") for the image's registry, 0600: the
 * format both podman's --authfile and docker's --config read. */
static int write_auth(const char *dir, const char *image, const char *auth)
{
    char path[800], host[256];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    registry_of(image, host, sizeof(host));
    size_t len = strlen(auth),
           b64len = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = sw_malloc(b64len);
    sodium_bin2base64(b64, b64len, (const unsigned char *)auth, len,
                      sodium_base64_VARIANT_ORIGINAL);
    sw_buf_t json = SW_BUF_INIT;
    sw_buf_printf(&json, "{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}\n", host, b64);
    int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        rc = -errno;
    else {
        rc = sw_write_all(fd, json.base, json.len);
        close(fd);
    }
    sodium_memzero(b64, b64len);
    sodium_memzero(json.base, json.cap);
    free(b64);
    sw_buf_free(&json);
    return rc;
}

/* pull [--authfile F] image, or for docker: --config DIR ... pull image. */
static char **pull_argv(const container_rt_t *crt, const sw_runtime_build_opts_t *opts,
                        const char *dir, int *rc)
{
    char file[800];
    snprintf(file, sizeof(file), "%s/config.json", dir);
    bool docker = strstr(crt->cli[0], "docker") != NULL;
    const char *plain[] = {"pull", opts->image, NULL};
    const char *podman[] = {"pull", "--authfile", file, opts->image, NULL};
    *rc = opts->auth ? write_auth(dir, opts->image, opts->auth) : 0;
    char **argv = sw_container_argv(crt, opts->auth && !docker ? podman : plain);
    if (opts->auth && docker) {
        size_t n = 0;
        while (argv[n])
            n++;
        argv = sw_realloc(argv, (n + 3) * sizeof(char *));
        memmove(argv + 3, argv + 1, n * sizeof(char *)); /* the NULL too */
        argv[1] = sw_strdup("--config");
        argv[2] = sw_strdup(dir);
    }
    return argv;
}

static int spawn(cbuild_t *b, char **argv)
{
    sw_proc_opts_t o = {
        .file = argv[0],
        .argv = argv,
        .env = environ,
        .cwd = b->o.pull || b->o.push ? b->crt->dir : b->o.dir, /* maybe no checkout */
        .timeout_ms = b->o.timeout_ms,
        .kill_grace_ms = b->o.kill_grace_ms,
        .on_line = on_line,
        .on_exit = on_exit_cb,
        .payload = b,
    };
    return sw_proc_spawn(&b->proc, b->crt->loop, &o);
}

/* Pulled only when missing, as `run` would: a tag that should move gets a new name. */
static void on_checked(cli_cmd_t *c, int64_t exit_status, void *payload)
{
    cbuild_t *b = payload;
    (void)c;
    b->check = NULL;
    if (b->stopped) {
        finish(b, -1, SIGKILL, false);
        return;
    }
    if (exit_status == 0) {
        char line[600];
        snprintf(line, sizeof(line), "image %s is on this node already: not pulled", b->o.image);
        b->o.on_line("stdout", line, strlen(line), b->o.payload);
        finish(b, 0, 0, false);
        return;
    }
    int rc;
    char **argv = pull_argv(b->crt, &b->o, b->secrets, &rc);
    if (rc == 0)
        rc = spawn(b, argv);
    sw_strv_free(argv);
    if (rc != 0) {
        char line[200];
        snprintf(line, sizeof(line), "the pull could not start: %s", sw_strerror(rc));
        b->o.on_line("stderr", line, strlen(line), b->o.payload);
        finish(b, 127, 0, false);
    }
}

int sw_container_build(sw_runtime_t *rt, const sw_runtime_build_opts_t *opts,
                       sw_runtime_build_t **out)
{
    container_rt_t *crt = sw_container_of(rt, container_rt_t, base);
    cbuild_t *b = sw_calloc(1, sizeof(*b));
    b->crt = crt;
    b->o = *opts;
    unsigned char rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    char hex[17];
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(b->secrets, sizeof(b->secrets), "%s/build-%s", crt->dir, hex);
    if (mkdir(b->secrets, 0700) != 0) {
        int rc = -errno;
        free(b);
        return rc;
    }
    int rc = 0;
    char **argv = NULL;
    if (opts->push) {
        const char *push[] = {"push", opts->image, NULL};
        argv = sw_container_argv(crt, push);
    } else if (opts->pull) {
        const char *check[] = {"image", "inspect", "--format", "{{.Id}}", opts->image, NULL};
        rc = sw_container_cli(crt, check, opts->timeout_ms, on_checked, b, &b->check);
    } else {
        char dockerfile[1200];
        snprintf(dockerfile, sizeof(dockerfile), "%s/%s", opts->dir,
                 opts->dockerfile && opts->dockerfile[0] ? opts->dockerfile : "Dockerfile");
        const char *head[] = {"build", "-f", dockerfile, "-t", opts->image, NULL};
        argv = sw_container_argv(crt, head);
        size_t n = 0;
        while (argv[n])
            n++;
        argv = sw_realloc(argv, (n + 2 * BUILD_SECRETS_MAX + 2) * sizeof(char *));
        rc = write_secrets(b->secrets, opts->env, argv, &n);
        argv[n++] = sw_strdup(opts->dir);
        argv[n] = NULL;
    }
    if (rc == 0 && argv)
        rc = spawn(b, argv);
    sw_strv_free(argv);
    if (rc != 0) {
        remove_secrets(b);
        free(b);
        return rc;
    }
    b->next = crt->builds;
    crt->builds = b;
    *out = b;
    return 0;
}

void sw_container_build_stop(sw_runtime_build_t *b, uint32_t grace_ms)
{
    b->stopped = true;
    if (b->proc)
        sw_proc_stop(b->proc, grace_ms);
    else
        sw_container_cli_kill(b->check);
}

void sw_container_build_pause(sw_runtime_build_t *b, bool pause)
{
    if (!b->proc)
        return; /* still checking: nothing is output yet */
    if (pause)
        sw_proc_pause(b->proc);
    else
        sw_proc_resume(b->proc);
}
