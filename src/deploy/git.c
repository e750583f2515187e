/* Fetching app sources with libgit2 on the uv threadpool: open (or create) the bare mirror,
 * fetch into it, resolve the commit and check its tree out into a fresh directory. */
#include "slipway/git.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "slipway/buf.h"
#include "slipway/common.h"

#define URL_MAX      4096
#define REF_MAX      255
#define TOKEN_MAX    4096
#define DIR_MAX      (PATH_MAX - 64) /* room for the lock file's name */
#define ERROR_MAX    1024
#define LOCK_NAP_NS  10000000L
#define SHA_HEX      40
#define TOKEN_USER   "x-token"
#define HEADS_PREFIX "refs/heads/"
#define TAGS_PREFIX  "refs/tags/"

struct sw_git_job {
    uv_work_t work;
    uv_async_t async; /* wakes the loop to report progress */
    char *url;
    char *ref;        /* NULL: the remote's HEAD */
    char *commit_sha; /* NULL: use ref */
    char *mirror_dir;
    char *checkout_dir;
    char *token;          /* NULL: none; wiped before free */
    uint64_t deadline_ns; /* sw_now_ns() clock; 0: none */
    sw_git_progress_cb progress;
    sw_git_done_cb done;
    void *payload;

    /* Shared between the threads. */
    atomic_bool cancel;
    atomic_bool progressed;
    _Atomic uint64_t counts; /* total << 32 | received, one word so the pair is never torn */

    /* Loop thread only. */
    uint64_t reported; /* counts last passed to progress */
    bool reported_any;
    bool finished; /* after_work ran: uv_cancel no longer applies */
    bool no_done;  /* start failed: the caller was told synchronously */

    /* Work thread until after_work, then the loop thread. */
    int stop; /* -ECANCELED or -ETIMEDOUT once either has been seen */
    bool cred_given;
    bool auth_failed;
    int status;
    sw_git_result_t result;
    sw_buf_t error;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status;

static void init_libgit2(void)
{
    init_status = git_libgit2_init() < 0 ? -EIO : 0;
}

int sw_git_init(void)
{
    pthread_once(&init_once, init_libgit2);
    return init_status;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Non-empty, at most max bytes, no control characters. */
static bool is_clean(const char *s, size_t max)
{
    size_t n = 0;

    if (!s || !*s)
        return false;
    for (; *s; s++, n++) {
        if (n >= max || (unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    }
    return true;
}

static bool is_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* user@host:path. Neither part may start with '-': some libgit2 builds hand the host to an
 * ssh binary. */
static bool scp_like_ok(const char *url)
{
    const char *at = strchr(url, '@'), *colon, *p;

    if (!at || at == url || url[0] == '-')
        return false;
    for (p = url; p < at; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return false;
    }
    colon = strchr(at + 1, ':');
    if (!colon || colon == at + 1 || at[1] == '-' || colon[1] == '\0')
        return false;
    for (p = at + 1; p < colon; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
            return false;
    }
    return true;
}

/* Where the host of a scheme://[userinfo@]host[:port]/path URL starts; len is its length
 * with the port. */
static const char *url_host(const char *url, size_t *len)
{
    const char *p = strstr(url, "://"), *at;
    size_t n;

    if (!p)
        return NULL;
    p += 3;
    n = strcspn(p, "/");
    at = memchr(p, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    *len = n;
    return p;
}

static int validate_url(const char *url, bool allow_file)
{
    const char *host;
    size_t len;

    if (!is_clean(url, URL_MAX) || strchr(url, ' '))
        return -EINVAL;
    if (has_prefix(url, "https://") || has_prefix(url, "ssh://")) {
        host = url_host(url, &len);
        return len > 0 && host[0] != '-' ? 0 : -EINVAL;
    }
    if (has_prefix(url, "file://"))
        return allow_file && url[7] == '/' ? 0 : -EINVAL;
    if (strstr(url, "://"))
        return -EINVAL;
    return scp_like_ok(url) ? 0 : -EINVAL;
}

static int validate_ref(const char *ref)
{
    char name[sizeof(HEADS_PREFIX) + REF_MAX];
    int valid = 0;

    if (!is_clean(ref, REF_MAX) || ref[0] == '-')
        return -EINVAL;
    snprintf(name, sizeof(name), HEADS_PREFIX "%s", ref);
    if (git_reference_name_is_valid(&valid, name) < 0 || !valid)
        return -EINVAL;
    return 0;
}

static int validate_path(const char *path)
{
    if (!is_clean(path, DIR_MAX) || path[0] != '/' || strcmp(path, "/") == 0)
        return -EINVAL;
    return 0;
}

static int validate_opts(const sw_git_opts_t *o)
{
    if (validate_url(o->url, o->allow_file) < 0)
        return -EINVAL;
    if (o->ref && *o->ref && validate_ref(o->ref) < 0)
        return -EINVAL;
    if (o->commit_sha && *o->commit_sha &&
        (strlen(o->commit_sha) != SHA_HEX || !is_hex(o->commit_sha, SHA_HEX)))
        return -EINVAL;
    if (validate_path(o->mirror_dir) < 0 || validate_path(o->checkout_dir) < 0)
        return -EINVAL;
    if (o->https_token && *o->https_token && !is_clean(o->https_token, TOKEN_MAX))
        return -EINVAL;
    return 0;
}

static char *dup_opt(const char *s)
{
    return s && *s ? sw_strdup(s) : NULL;
}

static void job_free(sw_git_job_t *job)
{
    if (job->token) {
        explicit_bzero(job->token, strlen(job->token));
        free(job->token);
    }
    free(job->url);
    free(job->ref);
    free(job->commit_sha);
    free(job->mirror_dir);
    free(job->checkout_dir);
    sw_buf_free(&job->error);
    free(job);
}

/* Work thread: the first cancel or deadline seen sticks, so every later step agrees. */
static int check_stop(sw_git_job_t *job)
{
    if (job->stop == 0) {
        if (atomic_load(&job->cancel))
            job->stop = -ECANCELED;
        else if (job->deadline_ns && sw_now_ns() >= job->deadline_ns)
            job->stop = -ETIMEDOUT;
    }
    return job->stop;
}

/* Copies msg without anything that could be a credential: the token, and the userinfo of
 * any URL in it. */
static void append_scrubbed(sw_buf_t *out, const char *msg, const char *token)
{
    size_t tlen = token ? strlen(token) : 0;

    while (*msg && out->len < ERROR_MAX) {
        if (tlen && strncmp(msg, token, tlen) == 0) {
            sw_buf_append_cstr(out, "***");
            msg += tlen;
        } else if (strncmp(msg, "://", 3) == 0) {
            size_t n = strcspn(msg + 3, "@/ \t\r\n'\"");
            sw_buf_append_cstr(out, "://");
            msg += 3;
            if (msg[n] == '@') {
                sw_buf_append_cstr(out, "***@");
                msg += n + 1;
            }
        } else {
            sw_buf_append_char(out, *msg++);
        }
    }
}

static void set_error(sw_git_job_t *job, const char *fmt, ...) SW_PRINTF(2, 3);

static void set_error(sw_git_job_t *job, const char *fmt, ...)
{
    va_list ap;

    sw_buf_reset(&job->error);
    va_start(ap, fmt);
    sw_buf_vprintf(&job->error, fmt, ap);
    va_end(ap);
}

static int sys_fail(sw_git_job_t *job, int err, const char *what)
{
    set_error(job, "%s: %s", what, sw_strerror(err));
    return err;
}

/* The one place libgit2 errors become ours. A stop the callbacks asked for wins over the
 * error it caused. */
static int fail_git(sw_git_job_t *job, const char *what)
{
    const git_error *e = git_error_last();

    if (check_stop(job) < 0)
        return job->stop;
    set_error(job, "%s: ", what);
    if (job->auth_failed)
        sw_buf_append_cstr(&job->error, "authentication failed");
    else
        append_scrubbed(&job->error, e && e->message ? e->message : "unknown error", job->token);
    return -EIO;
}

static bool is_missing(int gerr)
{
    return gerr == GIT_ENOTFOUND || gerr == GIT_EPEEL || gerr == GIT_EINVALIDSPEC ||
           gerr == GIT_EAMBIGUOUS;
}

static int on_transfer(const git_indexer_progress *stats, void *payload)
{
    sw_git_job_t *job = payload;

    atomic_store(&job->counts,
                 (uint64_t)stats->total_objects << 32 | (uint64_t)stats->received_objects);
    atomic_store(&job->progressed, true);
    uv_async_send(&job->async);
    return check_stop(job) < 0 ? GIT_EUSER : 0;
}

/* The server talks while it counts and compresses; a stop takes effect then too. */
static int on_sideband(const char *str, int len, void *payload)
{
    return check_stop(payload) < 0 ? GIT_EUSER : 0;
}

static bool same_host(const char *a, const char *b)
{
    size_t alen, blen;
    const char *ha = url_host(a, &alen), *hb = url_host(b, &blen);

    return ha && hb && alen == blen && strncasecmp(ha, hb, alen) == 0;
}

static int on_credentials(git_credential **out, const char *url, const char *user_from_url,
                          unsigned int allowed, void *payload)
{
    sw_git_job_t *job = payload;
    const char *user = user_from_url && *user_from_url ? user_from_url : "git";

    if ((allowed & GIT_CREDENTIAL_USERNAME) &&
        !(allowed & (GIT_CREDENTIAL_USERPASS_PLAINTEXT | GIT_CREDENTIAL_SSH_KEY)))
        return git_credential_username_new(out, user);
    /* Asked again: the first answer was refused, and libgit2 would keep asking. */
    if (job->cred_given) {
        job->auth_failed = true;
        return GIT_EUSER;
    }
    job->cred_given = true;
    /* The token only ever goes to the host it was configured for, never after a redirect. */
    if (job->token && (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) &&
        has_prefix(url, "https://") && has_prefix(job->url, "https://") && same_host(url, job->url))
        return git_credential_userpass_plaintext_new(out, TOKEN_USER, job->token);
    if ((allowed & GIT_CREDENTIAL_SSH_KEY) && !has_prefix(url, "https://"))
        return git_credential_ssh_key_from_agent(out, user);
    return GIT_PASSTHROUGH;
}

/* Every missing parent of path, private: a mirror holds whatever a token could read. */
static int make_parents(sw_git_job_t *job, const char *path)
{
    char buf[PATH_MAX];
    int r = 0;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = strchr(buf + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
            r = sys_fail(job, -errno, "mirror_dir");
            goto out;
        }
        *p = '/';
    }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        r = sys_fail(job, -errno, "mirror_dir");
out:
    return r;
}

static int make_checkout_dir(sw_git_job_t *job)
{
    if (mkdir(job->checkout_dir, 0755) == 0)
        return 0;
    /* Not -ENOENT, which callers read as "no such ref". */
    if (errno == ENOENT || errno == ENOTDIR)
        return sys_fail(job, -EINVAL, "checkout_dir: parent missing");
    return sys_fail(job, -errno, "checkout_dir");
}

static int lock_mirror(sw_git_job_t *job, int *out)
{
    char path[PATH_MAX];
    int fd, r = 0;

    snprintf(path, sizeof(path), "%s/%s", job->mirror_dir, SW_GIT_MIRROR_LOCK);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        r = sys_fail(job, -errno, "mirror lock");
        goto out;
    }
    /* flock() can neither time out nor be woken on request; short naps let cancel and the
     * deadline through while another job has the mirror. */
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            r = sys_fail(job, -errno, "mirror lock");
            goto out;
        }
        r = check_stop(job);
        if (r < 0)
            goto out;
        nanosleep(&(struct timespec){0, LOCK_NAP_NS}, NULL);
    }
    *out = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return r;
}

static int open_mirror(sw_git_job_t *job, git_repository **out)
{
    git_repository_init_options io = GIT_REPOSITORY_INIT_OPTIONS_INIT;
    int r;

    r = git_repository_open_bare(out, job->mirror_dir);
    if (r == 0)
        goto out;
    if (r != GIT_ENOTFOUND) {
        r = fail_git(job, "open mirror");
        goto out;
    }
    io.flags = GIT_REPOSITORY_INIT_BARE;
    r = git_repository_init_ext(out, job->mirror_dir, &io);
    if (r < 0)
        r = fail_git(job, "create mirror");
out:
    return r;
}

/* Fetches every branch and tag as they are on the remote (pruning what it dropped); *head
 * gets the remote's default branch when the job needs it and the remote names one. */
static int fetch(sw_git_job_t *job, git_repository *repo, char **head)
{
    char *specs[] = {"+" HEADS_PREFIX "*:" HEADS_PREFIX "*", "+" TAGS_PREFIX "*:" TAGS_PREFIX "*"};
    git_strarray refspecs = {specs, SW_ARRAY_SIZE(specs)};
    git_fetch_options fo = GIT_FETCH_OPTIONS_INIT;
    git_remote_create_options ro = GIT_REMOTE_CREATE_OPTIONS_INIT;
    git_remote *remote = NULL;
    git_buf buf = GIT_BUF_INIT;
    int r;

    fo.callbacks.transfer_progress = on_transfer;
    fo.callbacks.sideband_progress = on_sideband;
    fo.callbacks.credentials = on_credentials;
    fo.callbacks.payload = job;
    fo.prune = GIT_FETCH_PRUNE;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE; /* the tag refspec takes them all */

    /* The URL given is the URL fetched: no url.*.insteadOf rewriting from any config. (It also
     * steers clear of a libgit2 1.5 leak of pcre2 match data in that config walk.) */
    ro.repository = repo;
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    r = git_remote_create_with_opts(&remote, job->url, &ro);
    if (r < 0) {
        r = fail_git(job, "remote");
        goto out;
    }
    /* Connected first so the advertised HEAD is known; fetch reuses the connection. */
    r = git_remote_connect(remote, GIT_DIRECTION_FETCH, &fo.callbacks, NULL, NULL);
    if (r < 0) {
        r = fail_git(job, "connect");
        goto out;
    }
    if (!job->commit_sha && !job->ref && git_remote_default_branch(&buf, remote) == 0)
        *head = sw_strdup(buf.ptr);
    r = git_remote_fetch(remote, &refspecs, &fo, NULL);
    if (r < 0)
        r = fail_git(job, "fetch");
out:
    git_buf_dispose(&buf);
    git_remote_free(remote);
    return r;
}

/* 0, GIT_ENOTFOUND-like codes when name is not there or not a commit, or another error. */
static int lookup_ref(git_repository *repo, const char *name, git_commit **out)
{
    git_reference *ref = NULL;
    git_object *obj = NULL;
    int r;

    r = git_reference_lookup(&ref, repo, name);
    if (r < 0)
        goto out;
    r = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT);
    if (r < 0)
        goto out;
    *out = (git_commit *)obj;
out:
    git_reference_free(ref);
    return r;
}

static int resolve_ref(git_repository *repo, const char *ref, git_commit **out)
{
    char name[sizeof(HEADS_PREFIX) + REF_MAX];
    size_t len = strlen(ref);
    git_object *obj = NULL;
    git_oid oid;
    int r;

    snprintf(name, sizeof(name), HEADS_PREFIX "%s", ref);
    r = lookup_ref(repo, name, out);
    if (!is_missing(r))
        return r;
    snprintf(name, sizeof(name), TAGS_PREFIX "%s", ref);
    r = lookup_ref(repo, name, out);
    if (!is_missing(r))
        return r;
    if (len < GIT_OID_MINPREFIXLEN || len > SHA_HEX || !is_hex(ref, len))
        return GIT_ENOTFOUND;
    r = git_oid_fromstrn(&oid, ref, len);
    if (r == 0)
        r = git_object_lookup_prefix(&obj, repo, &oid, len, GIT_OBJECT_COMMIT);
    if (r == 0)
        *out = (git_commit *)obj;
    return r;
}

/* commit_sha, else ref, else the remote's HEAD (or main, or master). */
static int resolve(sw_git_job_t *job, git_repository *repo, const char *head, git_commit **out)
{
    static const char *const fallbacks[] = {HEADS_PREFIX "main", HEADS_PREFIX "master"};
    git_oid oid;
    int r;

    if (job->commit_sha) {
        r = git_oid_fromstr(&oid, job->commit_sha);
        if (r == 0)
            r = git_commit_lookup(out, repo, &oid);
        if (is_missing(r)) {
            set_error(job, "no such commit: %s", job->commit_sha);
            return -ENOENT;
        }
    } else if (job->ref) {
        r = resolve_ref(repo, job->ref, out);
        if (is_missing(r)) {
            set_error(job, "no such branch, tag or commit: %s", job->ref);
            return -ENOENT;
        }
    } else if (head) {
        r = lookup_ref(repo, head, out);
        if (is_missing(r)) {
            set_error(job, "the remote's default branch is missing: %s", head);
            return -ENOENT;
        }
    } else {
        r = GIT_ENOTFOUND;
        for (size_t i = 0; i < SW_ARRAY_SIZE(fallbacks) && is_missing(r); i++)
            r = lookup_ref(repo, fallbacks[i], out);
        if (is_missing(r)) {
            set_error(job, "the remote names no default branch, and has no main or master");
            return -ENOENT;
        }
    }
    return r < 0 ? fail_git(job, "resolve") : 0;
}

static int checkout(sw_git_job_t *job, git_repository *repo, git_commit *commit)
{
    git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
    git_index *empty = NULL;
    int r;

    r = git_index_new(&empty);
    if (r < 0) {
        r = fail_git(job, "checkout");
        goto out;
    }
    /* The target directory is empty, whatever the mirror's HEAD says; and the mirror keeps
     * no index, so concurrent readers never see one half-written. */
    co.checkout_strategy =
        GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX | GIT_CHECKOUT_DONT_WRITE_INDEX;
    co.baseline_index = empty;
    co.target_directory = job->checkout_dir;
    r = git_checkout_tree(repo, (const git_object *)commit, &co);
    if (r < 0)
        r = fail_git(job, "checkout");
out:
    git_index_free(empty);
    return r;
}

static void fill_result(sw_git_job_t *job, const git_commit *commit)
{
    sw_git_result_t *res = &job->result;
    const char *msg = git_commit_message(commit);
    size_t n = msg ? strlen(msg) : 0;

    git_oid_tostr(res->commit_hash, sizeof(res->commit_hash), git_commit_id(commit));
    if (n > sizeof(res->commit_message) - 1) {
        n = sizeof(res->commit_message) - 1;
        /* Never half a UTF-8 sequence: the message ends up in JSON. */
        while (n > 0 && ((unsigned char)msg[n] & 0xc0) == 0x80)
            n--;
    }
    if (n)
        memcpy(res->commit_message, msg, n);
    res->commit_message[n] = '\0';
}

static void job_work(uv_work_t *req)
{
    sw_git_job_t *job = sw_container_of(req, sw_git_job_t, work);
    git_repository *repo = NULL;
    git_commit *commit = NULL;
    char *head = NULL;
    bool created = false;
    int lock_fd = -1;
    int r;

    /* Cancelled before a thread picked it up: touch nothing. */
    r = check_stop(job);
    if (r < 0)
        goto out;
    r = make_checkout_dir(job);
    if (r < 0)
        goto out;
    created = true;
    r = make_parents(job, job->mirror_dir);
    if (r < 0)
        goto out;
    r = lock_mirror(job, &lock_fd);
    if (r < 0)
        goto out;
    r = open_mirror(job, &repo);
    if (r < 0)
        goto out;
    r = fetch(job, repo, &head);
    if (r < 0)
        goto out;
    r = check_stop(job);
    if (r < 0)
        goto out;
    r = resolve(job, repo, head, &commit);
    if (r < 0)
        goto out;
    r = check_stop(job);
    if (r < 0)
        goto out;
    r = checkout(job, repo, commit);
    if (r < 0)
        goto out;
    fill_result(job, commit);
out:
    git_commit_free(commit);
    git_repository_free(repo);
    free(head);
    if (lock_fd >= 0)
        close(lock_fd);
    if (r < 0 && job->stop < 0) {
        r = job->stop;
        set_error(job, "%s", r == -ETIMEDOUT ? "timed out" : "cancelled");
    }
    /* Only an empty directory goes: a partial checkout is left for the caller to inspect. */
    if (r < 0 && created)
        (void)rmdir(job->checkout_dir);
    job->status = r;
}

static void report_progress(sw_git_job_t *job)
{
    uint64_t counts;

    if (!job->progress || !atomic_load(&job->progressed))
        return;
    counts = atomic_load(&job->counts);
    if (job->reported_any && counts == job->reported)
        return;
    job->reported_any = true;
    job->reported = counts;
    job->progress((unsigned)(counts & 0xffffffffu), (unsigned)(counts >> 32), job->payload);
}

static void on_async(uv_async_t *handle)
{
    report_progress(sw_container_of(handle, sw_git_job_t, async));
}

static void on_async_closed(uv_handle_t *handle)
{
    sw_git_job_t *job = sw_container_of(handle, sw_git_job_t, async);

    if (!job->no_done)
        job->done(job->status, job->status == 0 ? &job->result : NULL,
                  job->status == 0 ? NULL : job->error.base, job->payload);
    job_free(job);
}

static void job_after(uv_work_t *req, int status)
{
    sw_git_job_t *job = sw_container_of(req, sw_git_job_t, work);

    job->finished = true;
    if (status == UV_ECANCELED) {
        job->status = -ECANCELED;
        set_error(job, "cancelled");
    }
    /* A last wake-up may still be pending; progress never lags behind done. */
    report_progress(job);
    /* done runs once the handle is closed, so the caller never sees a job with anything open. */
    uv_close((uv_handle_t *)&job->async, on_async_closed);
}

int sw_git_checkout(uv_loop_t *loop, const sw_git_opts_t *opts, sw_git_progress_cb progress,
                    sw_git_done_cb done, void *payload, sw_git_job_t **out)
{
    sw_git_job_t *job = NULL;
    int r;

    if (!loop || !opts || !done)
        return -EINVAL;
    r = sw_git_init();
    if (r < 0)
        goto out;
    r = validate_opts(opts);
    if (r < 0)
        goto out;
    job = sw_calloc(1, sizeof(*job));
    job->url = sw_strdup(opts->url);
    job->ref = dup_opt(opts->ref);
    job->commit_sha = dup_opt(opts->commit_sha);
    job->mirror_dir = sw_strdup(opts->mirror_dir);
    job->checkout_dir = sw_strdup(opts->checkout_dir);
    job->token = dup_opt(opts->https_token);
    if (opts->timeout_ms)
        job->deadline_ns = sw_now_ns() + (uint64_t)opts->timeout_ms * 1000000u;
    job->progress = progress;
    job->done = done;
    job->payload = payload;
    r = uv_async_init(loop, &job->async, on_async);
    if (r < 0) {
        job_free(job);
        goto out;
    }
    r = uv_queue_work(loop, &job->work, job_work, job_after);
    if (r < 0) {
        job->no_done = true;
        uv_close((uv_handle_t *)&job->async, on_async_closed);
        goto out;
    }
    if (out)
        *out = job;
out:
    return r;
}

void sw_git_cancel(sw_git_job_t *job)
{
    if (!job)
        return;
    atomic_store(&job->cancel, true);
    /* Still queued: take it off so it never holds a threadpool thread. */
    if (!job->finished)
        (void)uv_cancel((uv_req_t *)&job->work);
}
