/* Tests for src/deploy/git.c: real repositories made with the git CLI in a temporary
 * directory, fetched over file:// through a real loop and its threadpool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <git2.h>
#include <sodium.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/common.h"
#include "slipway/git.h"

extern char **environ;

typedef struct {
    char root[64];
    char src[128];
    char mirror[128]; /* its parents do not exist at first */
    char url[160];
    char sha1[41];        /* main~1: "first", tagged v1 (annotated) and lw */
    char sha2[41];        /* main: "second" */
    char sha_feature[41]; /* feature: "feature work" */
    uv_loop_t loop;
} fixture_t;

typedef struct {
    int calls;
    int status;
    sw_git_result_t res;
    char error[2048];
    bool error_null;
    unsigned progress_calls;
    unsigned received, total;
    bool progress_after_done;
    bool progress_over_total;
    sw_git_job_t *job;
    bool cancel_on_progress;
} outcome_t;

/* Runs argv (argv[0] found on PATH), stdout into out (optional); returns the exit status. */
static int spawn_cmd(char *out, size_t outlen, const char *const *argv)
{
    posix_spawn_file_actions_t fa;
    int pipefd[2], status;
    size_t len = 0;
    pid_t pid;

    assert_int_equal(pipe(pipefd), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    assert_int_equal(posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    for (;;) {
        char buf[256];
        ssize_t r = read(pipefd[0], buf, sizeof(buf));
        if (r <= 0)
            break;
        if (out) {
            size_t n_copy = SW_MIN((size_t)r, outlen - 1 - len);
            memcpy(out + len, buf, n_copy);
            len += n_copy;
        }
    }
    close(pipefd[0]);
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        len--;
    if (out)
        out[len] = '\0';
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs git -C dir args... (NULL-terminated, argv only); stdout into out when out is set. */
static void git_cmd(char *out, size_t outlen, const char *dir, ...)
{
    const char *argv[32] = {"git", "-C", dir};
    size_t n = 3;
    va_list ap;

    va_start(ap, dir);
    while ((argv[n] = va_arg(ap, const char *)) != NULL)
        assert_true(++n < 31);
    va_end(ap);
    assert_int_equal(spawn_cmd(out, outlen, argv), 0);
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[PATH_MAX];
    FILE *f;

    assert_true((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) < sizeof(path));
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* The file's content, or "" when it cannot be read. */
static const char *read_file(const char *dir, const char *name)
{
    static char buf[4096];
    char path[PATH_MAX];
    size_t n = 0;
    FILE *f;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return "";
    buf[0] = '\0';
    f = fopen(path, "r");
    if (!f)
        return buf;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void commit_all(fixture_t *f, const char *message, char sha[41])
{
    git_cmd(NULL, 0, f->src, "add", "-A", NULL);
    git_cmd(NULL, 0, f->src, "commit", "-q", "--allow-empty", "-m", message, NULL);
    git_cmd(sha, 41, f->src, "rev-parse", "HEAD", NULL);
    assert_int_equal(strlen(sha), 40);
}

static int group_setup(void **state)
{
    (void)state;
    /* The test's git must not read the user's configuration, and needs an identity. */
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_AUTHOR_NAME", "Slipway Test", 1);
    setenv("GIT_AUTHOR_EMAIL", "test@slipway.invalid", 1);
    setenv("GIT_COMMITTER_NAME", "Slipway Test", 1);
    setenv("GIT_COMMITTER_EMAIL", "test@slipway.invalid", 1);
    return sw_git_init();
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char sub[160];

    assert_non_null(f);
    snprintf(f->root, sizeof(f->root), "/tmp/sw-git-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->src, sizeof(f->src), "%s/src", f->root);
    snprintf(f->mirror, sizeof(f->mirror), "%s/cache/a/b/mirror", f->root);
    snprintf(f->url, sizeof(f->url), "file://%s", f->src);

    git_cmd(NULL, 0, f->root, "init", "-q", "-b", "main", "src", NULL);
    write_file(f->src, "hello.txt", "v1\n");
    snprintf(sub, sizeof(sub), "%s/sub", f->src);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_file(sub, "nested.txt", "nested\n");
    commit_all(f, "first", f->sha1);
    git_cmd(NULL, 0, f->src, "tag", "-a", "v1", "-m", "release one", NULL);
    git_cmd(NULL, 0, f->src, "tag", "lw", NULL);
    write_file(f->src, "hello.txt", "v2\n");
    commit_all(f, "second", f->sha2);
    git_cmd(NULL, 0, f->src, "checkout", "-q", "-b", "feature", NULL);
    write_file(f->src, "feature.txt", "feature\n");
    commit_all(f, "feature work", f->sha_feature);
    git_cmd(NULL, 0, f->src, "checkout", "-q", "main", NULL);

    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    /* Every test ends with nothing left open on the loop. */
    int r = uv_loop_close(&f->loop);

    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return r == 0 ? 0 : -1;
}

static void on_progress(unsigned received, unsigned total, void *payload)
{
    outcome_t *o = payload;

    o->progress_calls++;
    o->received = received;
    o->total = total;
    if (o->calls)
        o->progress_after_done = true;
    if (total && received > total)
        o->progress_over_total = true;
    if (o->cancel_on_progress && o->job)
        sw_git_cancel(o->job);
}

static void on_done(int status, const sw_git_result_t *res, const char *error, void *payload)
{
    outcome_t *o = payload;

    o->calls++;
    o->status = status;
    o->error_null = error == NULL;
    if (error)
        snprintf(o->error, sizeof(o->error), "%s", error);
    if (status == 0) {
        assert_non_null(res);
        o->res = *res;
    } else {
        assert_null(res);
        assert_non_null(error);
    }
}

static sw_git_opts_t opts_for(fixture_t *f, const char *checkout_dir, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", f->root, checkout_dir);
    return (sw_git_opts_t){
        .url = f->url,
        .mirror_dir = f->mirror,
        .checkout_dir = buf,
        .allow_file = true,
        .timeout_ms = 60000,
    };
}

/* Starts the job, runs the loop dry, and checks done came exactly once. */
static void run(fixture_t *f, const sw_git_opts_t *opts, outcome_t *o)
{
    memset(o, 0, sizeof(*o));
    assert_int_equal(sw_git_checkout(&f->loop, opts, on_progress, on_done, o, &o->job), 0);
    assert_int_equal(o->calls, 0); /* never synchronously */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(o->calls, 1);
    assert_false(o->progress_after_done);
}

static void test_branch(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], mirror_index[PATH_MAX + 8];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    opts.ref = "main";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_true(o.error_null);
    assert_string_equal(o.res.commit_hash, f->sha2);
    assert_string_equal(o.res.commit_message, "second\n");
    assert_string_equal(read_file(co, "hello.txt"), "v2\n");
    assert_string_equal(read_file(co, "sub/nested.txt"), "nested\n");
    assert_false(exists(strcat(strcpy(mirror_index, co), "/feature.txt")));
    assert_false(exists(strcat(strcpy(mirror_index, co), "/.git")));
    /* A bare mirror with no index written into it. */
    snprintf(mirror_index, sizeof(mirror_index), "%s/HEAD", f->mirror);
    assert_true(exists(mirror_index));
    snprintf(mirror_index, sizeof(mirror_index), "%s/index", f->mirror);
    assert_false(exists(mirror_index));
}

static void test_progress(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    opts.ref = "main";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_true(o.progress_calls >= 1);
    assert_false(o.progress_over_total);
    /* The last report is the finished transfer. */
    assert_true(o.total > 0);
    assert_int_equal(o.received, o.total);
}

static void test_default_branch(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], co2[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    run(f, &opts, &o); /* no ref: the remote's HEAD, main */
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, f->sha2);

    /* The remote's HEAD is followed, not guessed. */
    git_cmd(NULL, 0, f->src, "checkout", "-q", "feature", NULL);
    opts = opts_for(f, "co2", co2, sizeof(co2));
    opts.ref = "";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, f->sha_feature);
    assert_string_equal(read_file(co2, "feature.txt"), "feature\n");
}

static void test_refetch_reuses_mirror(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], co2[PATH_MAX], objects[PATH_MAX + 16], sha3[41];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    struct stat before, after;
    outcome_t o;

    opts.ref = "main";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    snprintf(objects, sizeof(objects), "%s/objects", f->mirror);
    assert_int_equal(stat(objects, &before), 0);

    write_file(f->src, "hello.txt", "v3\n");
    commit_all(f, "third", sha3);

    opts = opts_for(f, "co2", co2, sizeof(co2));
    opts.ref = "main";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, sha3);
    assert_string_equal(o.res.commit_message, "third\n");
    assert_string_equal(read_file(co2, "hello.txt"), "v3\n");
    /* Unchanged files are there too, although the mirror has seen them before. */
    assert_string_equal(read_file(co2, "sub/nested.txt"), "nested\n");
    assert_string_equal(read_file(co, "hello.txt"), "v2\n");
    /* Same mirror, fetched into rather than made again. */
    assert_int_equal(stat(objects, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
}

static void test_tags(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], co2[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    opts.ref = "v1"; /* annotated: peeled to its commit */
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, f->sha1);
    assert_string_equal(o.res.commit_message, "first\n");
    assert_string_equal(read_file(co, "hello.txt"), "v1\n");

    opts = opts_for(f, "co2", co2, sizeof(co2));
    opts.ref = "lw";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, f->sha1);
}

static void test_commit_sha(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], co2[PATH_MAX], abbrev[13];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    opts.ref = "main";
    opts.commit_sha = f->sha1; /* wins over ref */
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, f->sha1);
    assert_string_equal(read_file(co, "hello.txt"), "v1\n");

    /* An abbreviated hash as ref, after branches and tags. */
    snprintf(abbrev, sizeof(abbrev), "%.12s", f->sha_feature);
    opts = opts_for(f, "co2", co2, sizeof(co2));
    opts.ref = abbrev;
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, f->sha_feature);
}

static void test_unknown_ref(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], long_ref[256];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    opts.ref = "no-such-branch";
    run(f, &opts, &o);
    assert_int_equal(o.status, -ENOENT);
    assert_non_null(strstr(o.error, "no-such-branch"));
    assert_false(exists(co)); /* the empty checkout directory is removed again */

    /* The longest name accepted is looked up whole. */
    memset(long_ref, 'r', 255);
    long_ref[255] = '\0';
    opts.ref = long_ref;
    run(f, &opts, &o);
    assert_int_equal(o.status, -ENOENT);
    assert_non_null(strstr(o.error, long_ref));

    opts.ref = NULL;
    opts.commit_sha = "0123456789abcdef0123456789abcdef01234567";
    run(f, &opts, &o);
    assert_int_equal(o.status, -ENOENT);
    assert_false(exists(co));
}

static void test_pruned_branch(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], co2[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    opts.ref = "feature";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);

    git_cmd(NULL, 0, f->src, "branch", "-q", "-D", "feature", NULL);
    opts = opts_for(f, "co2", co2, sizeof(co2));
    opts.ref = "feature";
    run(f, &opts, &o);
    assert_int_equal(o.status, -ENOENT);
}

static void test_long_message(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], msg[2100], sha[41];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    /* 1022 bytes, then a two-byte character that the 1023-byte cut would split. */
    memset(msg, 'a', 1022);
    memcpy(msg + 1022, "\xc3\xa9", 2);
    memset(msg + 1024, 'b', 1000);
    msg[2024] = '\0';
    write_file(f->root, "msg.txt", msg);
    {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s/msg.txt", f->root);
        git_cmd(NULL, 0, f->src, "commit", "-q", "--allow-empty", "--cleanup=verbatim", "-F", path,
                NULL);
    }
    git_cmd(sha, sizeof(sha), f->src, "rev-parse", "HEAD", NULL);

    opts.ref = "main";
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, sha);
    assert_int_equal(strlen(o.res.commit_message), 1022);
    assert_memory_equal(o.res.commit_message, msg, 1022);
}

static void test_invalid_options(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX];
    sw_git_opts_t good = opts_for(f, "co", co, sizeof(co)), o;
    outcome_t out = {0};
    static const char *const bad_urls[] = {
        "http://example.com/r.git",
        "ftp://example.com/r.git",
        "/srv/repo",
        "https://",
        "ssh://-oProxyCommand=x/r",
        "-u@host:path",
        "git@-host:path",
        "git@host:",
        "https://example.com/r .git",
        "https://example.com/r\n.git",
        "",
    };

    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        o = good;
        o.url = bad_urls[i];
        assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    }
    /* file:// only when allowed. */
    o = good;
    o.allow_file = false;
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    o.url = NULL;
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);

    o = good;
    o.mirror_dir = "relative/mirror";
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    o = good;
    o.checkout_dir = "co";
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    o = good;
    o.checkout_dir = NULL;
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    o = good;
    o.ref = "a..b";
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    o.ref = "-x";
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    {
        char long_ref[300];
        memset(long_ref, 'r', sizeof(long_ref) - 1);
        long_ref[sizeof(long_ref) - 1] = '\0';
        o.ref = long_ref;
        assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    }
    o = good;
    o.commit_sha = "abc";
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    o.commit_sha = "zz23456789abcdef0123456789abcdef01234567";
    assert_int_equal(sw_git_checkout(&f->loop, &o, NULL, on_done, &out, NULL), -EINVAL);
    assert_int_equal(sw_git_checkout(&f->loop, &good, NULL, NULL, &out, NULL), -EINVAL);
    assert_int_equal(sw_git_checkout(&f->loop, NULL, NULL, on_done, &out, NULL), -EINVAL);

    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(out.calls, 0);
    assert_false(exists(co));
}

static void test_checkout_dir_exists(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    assert_int_equal(mkdir(co, 0755), 0);
    write_file(co, "keep.txt", "mine\n");
    opts.ref = "main";
    run(f, &opts, &o);
    assert_int_equal(o.status, -EEXIST);
    /* Someone else's directory is left alone. */
    assert_string_equal(read_file(co, "keep.txt"), "mine\n");
    assert_false(exists(f->mirror));
}

static void test_cancel_at_once(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o = {0};

    opts.ref = "main";
    assert_int_equal(sw_git_checkout(&f->loop, &opts, on_progress, on_done, &o, &o.job), 0);
    sw_git_cancel(o.job);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, -ECANCELED);
    assert_string_equal(o.error, "cancelled");
    assert_false(exists(co));
}

/* Holds the mirror's lock the way another job (or process) would. */
static int hold_mirror_lock(fixture_t *f)
{
    char path[PATH_MAX + 32];
    int fd;

    git_cmd(NULL, 0, f->root, "init", "-q", "--bare", f->mirror, NULL);
    snprintf(path, sizeof(path), "%s/%s", f->mirror, SW_GIT_MIRROR_LOCK);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    return fd;
}

static void on_cancel_timer(uv_timer_t *t)
{
    outcome_t *o = t->data;
    sw_git_cancel(o->job);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel_while_waiting(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    int fd = hold_mirror_lock(f);
    uv_timer_t timer;
    outcome_t o = {0};

    opts.timeout_ms = 0; /* only the cancel can end the wait */
    assert_int_equal(sw_git_checkout(&f->loop, &opts, on_progress, on_done, &o, &o.job), 0);
    assert_int_equal(uv_timer_init(&f->loop, &timer), 0);
    timer.data = &o;
    assert_int_equal(uv_timer_start(&timer, on_cancel_timer, 50, 0), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, -ECANCELED);
    assert_false(exists(co));
    close(fd);
}

static void test_timeout_while_waiting(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], co2[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    int fd = hold_mirror_lock(f);
    outcome_t o;

    opts.timeout_ms = 100;
    run(f, &opts, &o);
    assert_int_equal(o.status, -ETIMEDOUT);
    assert_string_equal(o.error, "timed out");
    assert_false(exists(co));

    /* Released: the next job gets the mirror. */
    close(fd);
    opts = opts_for(f, "co2", co2, sizeof(co2));
    run(f, &opts, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.res.commit_hash, f->sha2);
}

static void test_cancel_on_progress(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o = {0};

    o.cancel_on_progress = true;
    assert_int_equal(sw_git_checkout(&f->loop, &opts, on_progress, on_done, &o, &o.job), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(o.calls, 1);
    /* The fetch is small and may finish before the cancel lands; either way, one outcome. */
    assert_true(o.status == -ECANCELED || o.status == 0);
    if (o.status == -ECANCELED)
        assert_string_equal(o.error, "cancelled");
    else
        assert_string_equal(o.res.commit_hash, f->sha2);
}

static void test_concurrent_same_mirror(void **state)
{
    fixture_t *f = *state;
    char co[4][PATH_MAX], name[16];
    const char *refs[4] = {"main", "feature", "v1", NULL};
    const char *want[4] = {f->sha2, f->sha_feature, f->sha1, f->sha2};
    outcome_t o[4];

    for (int i = 0; i < 4; i++) {
        sw_git_opts_t opts;
        snprintf(name, sizeof(name), "co%d", i);
        opts = opts_for(f, name, co[i], sizeof(co[i]));
        opts.ref = refs[i];
        memset(&o[i], 0, sizeof(o[i]));
        assert_int_equal(sw_git_checkout(&f->loop, &opts, NULL, on_done, &o[i], NULL), 0);
    }
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, 0);
        assert_string_equal(o[i].res.commit_hash, want[i]);
    }
    git_cmd(NULL, 0, f->mirror, "fsck", "--no-progress", NULL);
}

static void test_error_has_no_credentials(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    /* Nothing listens on port 1: the connection is refused at once. */
    opts.url = "https://user:hunter2secret@127.0.0.1:1/r.git";
    opts.https_token = "tok-0123456789";
    run(f, &opts, &o);
    assert_int_equal(o.status, -EIO);
    assert_true(strlen(o.error) > 0);
    assert_null(strstr(o.error, "hunter2secret"));
    assert_null(strstr(o.error, "tok-0123456789"));
    assert_false(exists(co));
}

static void test_missing_remote(void **state)
{
    fixture_t *f = *state;
    char co[PATH_MAX], url[PATH_MAX + 16];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    outcome_t o;

    snprintf(url, sizeof(url), "file://%s/nope", f->root);
    opts.url = url;
    run(f, &opts, &o);
    assert_int_equal(o.status, -EIO);
    assert_true(strlen(o.error) > 0);
    assert_false(exists(co));
}

/* OpenSSH itself reads the private key Slipway writes, derives the same public key from it,
 * and prints the same fingerprint. */
static void touch(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static bool exists_in(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return exists(path);
}

static void test_key_files_remove(void **state)
{
    fixture_t *f = *state;
    char dead[64], live[64], mine[64];
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    waitpid(child, NULL, 0); /* a pid nothing uses now */
    snprintf(dead, sizeof(dead), ".slipway-key-%d-a1B2c3", (int)child);
    snprintf(live, sizeof(live), ".slipway-key-%d-zzzzzz", (int)getppid());
    snprintf(mine, sizeof(mine), ".slipway-key-%d-qqqqqq", (int)getpid());
    touch(f->root, dead);
    touch(f->root, live);
    touch(f->root, mine);
    touch(f->root, ".slipway-key-short");     /* not a name a fetch makes */
    touch(f->root, ".slipway-key-1-toolong"); /* nor these */
    touch(f->root, ".slipway-key--1-abcdef");
    touch(f->root, "master.key");
    assert_int_equal(sw_git_key_files_remove(f->root), 2);
    assert_false(exists_in(f->root, dead));
    assert_false(exists_in(f->root, mine));
    assert_true(exists_in(f->root, live)); /* a sibling's, perhaps mid-fetch */
    assert_true(exists_in(f->root, ".slipway-key-short"));
    assert_true(exists_in(f->root, ".slipway-key-1-toolong"));
    assert_true(exists_in(f->root, ".slipway-key--1-abcdef"));
    assert_true(exists_in(f->root, "master.key"));
    assert_int_equal(sw_git_key_files_remove(f->root), 0);
    assert_int_equal(sw_git_key_files_remove("/nonexistent/sw-git"), -ENOENT);
}

static void test_deploy_key_openssh(void **state)
{
    fixture_t *f = *state;
    sw_git_deploy_key_t key = {0}, other = {0};
    char priv[PATH_MAX], pub[PATH_MAX], out[1024], want[1024];
    int fd;

    assert_int_equal(sw_git_deploy_key_new(&key, "slipway-my-app"), 0);
    assert_true(strncmp(key.public_key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", 37) == 0);
    assert_non_null(strstr(key.public_key, " slipway-my-app"));
    assert_true(strncmp(key.private_key, "-----BEGIN OPENSSH PRIVATE KEY-----\n", 36) == 0);
    assert_true(strncmp(key.fingerprint, "SHA256:", 7) == 0);
    assert_int_equal(strlen(key.fingerprint), 7 + 43);

    snprintf(priv, sizeof(priv), "%s/id_ed25519", f->root);
    snprintf(pub, sizeof(pub), "%s/id_ed25519.pub", f->root);
    fd = open(priv, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, key.private_key, strlen(key.private_key)),
                     (ssize_t)strlen(key.private_key));
    close(fd);
    write_file(f->root, "id_ed25519.pub", key.public_key);

    assert_int_equal(
        spawn_cmd(out, sizeof(out), (const char *const[]){"ssh-keygen", "-y", "-f", priv, NULL}),
        0);
    assert_string_equal(out, key.public_key);
    assert_int_equal(
        spawn_cmd(out, sizeof(out),
                  (const char *const[]){"ssh-keygen", "-l", "-E", "sha256", "-f", pub, NULL}),
        0);
    snprintf(want, sizeof(want), "256 %s slipway-my-app (ED25519)", key.fingerprint);
    assert_string_equal(out, want);

    /* A new key each time. */
    assert_int_equal(sw_git_deploy_key_new(&other, "slipway-my-app"), 0);
    assert_string_not_equal(other.public_key, key.public_key);
    assert_string_not_equal(other.fingerprint, key.fingerprint);
    sw_git_deploy_key_clear(&other);
    sw_git_deploy_key_clear(&key);
    assert_null(key.private_key);
    assert_int_equal(sw_git_deploy_key_new(&key, "two words"), -EINVAL);
    assert_int_equal(sw_git_deploy_key_new(&key, ""), -EINVAL);
}

static void test_ssh_host(void **state)
{
    char host[SW_GIT_HOST_MAX];

    (void)state;
    assert_int_equal(sw_git_ssh_host("ssh://root@127.0.0.1:2222/srv/r.git", host), 0);
    assert_string_equal(host, "127.0.0.1:2222");
    assert_int_equal(sw_git_ssh_host("ssh://Git.Example.COM:22/r.git", host), 0);
    assert_string_equal(host, "git.example.com");
    assert_int_equal(sw_git_ssh_host("ssh://[::1]:2222/r.git", host), 0);
    assert_string_equal(host, "[::1]:2222");
    assert_int_equal(sw_git_ssh_host("git@github.com:org/repo.git", host), 0);
    assert_string_equal(host, "github.com");
    assert_int_equal(sw_git_ssh_host("https://github.com/org/repo.git", host), -EINVAL);
    assert_int_equal(sw_git_ssh_host("file:///srv/r.git", host), -EINVAL);
}

/* The https server of the token test: TLS with a certificate the test makes, answers 401
 * with a Basic challenge until a request carries Authorization, prints that header, then
 * answers 403. Prints its port first. Exits after 30 s whatever happens. */
static const char challenge_py[] =
    "import http.server, ssl, sys, threading\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def log_message(self, *a): pass\n"
    "    def do_GET(self):\n"
    "        auth = self.headers.get('Authorization')\n"
    "        if auth:\n"
    "            print(auth, flush=True)\n"
    "            self.send_response(403)\n"
    "        else:\n"
    "            self.send_response(401)\n"
    "            self.send_header('WWW-Authenticate', 'Basic realm=\"git\"')\n"
    "        self.send_header('Content-Length', '0')\n"
    "        self.end_headers()\n"
    "        if auth:\n"
    "            threading.Thread(target=self.server.shutdown).start()\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
    "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
    "srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
    "threading.Timer(30, srv.shutdown).start()\n"
    "print(srv.server_address[1], flush=True)\n"
    "srv.serve_forever()\n";

typedef struct {
    pid_t pid;
    FILE *out;
} challenge_server_t;

static void challenge_start(fixture_t *f, challenge_server_t *s, unsigned *port)
{
    char cert[PATH_MAX], key[PATH_MAX], out[1024], line[64];
    const char *argv[] = {"python3", "-c", challenge_py, cert, key, NULL};
    posix_spawn_file_actions_t fa;
    int pipefd[2];

    snprintf(cert, sizeof(cert), "%s/cert.pem", f->root);
    snprintf(key, sizeof(key), "%s/key.pem", f->root);
    /* No subjectAltName: mbedTLS (libgit2's TLS here) then matches the host against the CN. */
    assert_int_equal(spawn_cmd(out, sizeof(out),
                               (const char *const[]){
                                   "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                                   "/CN=127.0.0.1", "-keyout", key, "-out", cert, "-batch", NULL}),
                     0);
    assert_int_equal(git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, cert, NULL), 0);
    assert_int_equal(pipe(pipefd), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    assert_int_equal(posix_spawnp(&s->pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    s->out = fdopen(pipefd[0], "r");
    assert_non_null(s->out);
    assert_non_null(fgets(line, sizeof(line), s->out));
    *port = (unsigned)atoi(line);
    assert_true(*port > 0);
}

/* The Authorization header the server got ("" if none), then waits for it to exit. */
static void challenge_stop(challenge_server_t *s, char *auth, size_t size)
{
    int status;

    auth[0] = '\0';
    if (fgets(auth, (int)size, s->out))
        auth[strcspn(auth, "\r\n")] = '\0';
    fclose(s->out);
    assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
}

/* The token goes to libgit2 as Basic credentials when the https server asks for them, and
 * never into the error. */
static void test_https_token_sent(void **state)
{
    fixture_t *f = *state;
    const char *token = "ghp_s3cr3t-token-0123456789";
    char co[PATH_MAX], url[128], want[256], b64[128], pair[128], auth[512];
    sw_git_opts_t opts = opts_for(f, "co", co, sizeof(co));
    challenge_server_t s;
    unsigned port;
    outcome_t o;

    challenge_start(f, &s, &port);
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/org/repo.git", port);
    opts.url = url;
    opts.https_token = token;
    run(f, &opts, &o);
    challenge_stop(&s, auth, sizeof(auth));
    assert_int_equal(git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, NULL, "/etc/ssl/certs"), 0);
    snprintf(pair, sizeof(pair), "x-token:%s", token);
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)pair, strlen(pair),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(want, sizeof(want), "Basic %s", b64);
    assert_string_equal(auth, want);
    assert_int_equal(o.status, -EIO);
    assert_null(strstr(o.error, token));
    assert_false(exists(co));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refetch_reuses_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_sha, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_ref, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pruned_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkout_dir_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_on_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_same_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_has_no_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_remote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deploy_key_openssh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_files_remove, setup, teardown),
        cmocka_unit_test(test_ssh_host),
        cmocka_unit_test_setup_teardown(test_https_token_sent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
