/* Fetching app sources with libgit2, each job on a thread of its own: open (or create) the
 * bare mirror, fetch into it, resolve the commit and check its tree out into a fresh
 * directory. A fetch waits on its peer for as long as its deadline allows: on the uv
 * threadpool it would hold a thread that password hashing and file I/O need. */
#include "slipway/git.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/utf8.h"
#include "slipway/gitstream.h"

#include "internal.h"

#define REF_MAX      255
#define ERROR_MAX    1024
#define LOCK_NAP_NS  10000000L
#define SHA_HEX      40
#define TOKEN_USER   "x-token"
#define HEADS_PREFIX "refs/heads/"
#define TAGS_PREFIX  "refs/tags/"

typedef struct {
    char host[SW_GIT_HOST_MAX];
    char sha256[SW_GIT_FINGERPRINT_MAX];
} known_t;

struct sw_git_job {
    uv_thread_t thread;
    uv_async_t async; /* wakes the loop to report progress, and once the thread is done */
    uv_timer_t timer; /* the deadline: wakes a fetch that waits where no slice reaches */
    int open_handles;
    char *url;
    char *ref;        /* NULL: the remote's HEAD */
    char *commit_sha; /* NULL: use ref */
    char *mirror_dir;
    char *checkout_dir;
    char *token;   /* NULL: none; wiped before free */
    char *ssh_key; /* NULL: none; wiped before free */
    char *key_dir;
    char key_path[PATH_MAX];        /* the key written out, when it had to be; "" otherwise */
    char ssh_host[SW_GIT_HOST_MAX]; /* "" unless the URL is ssh */
    known_t *known;
    size_t nknown;
    sw_git_host_key_cb host_key;
    uint64_t deadline_ns; /* sw_now_ns() clock; 0: none */
    sw_git_progress_cb progress;
    sw_git_done_cb done;
    const sw_git_work_t *work; /* another job than the checkout (gitjob.h); NULL: checkout */
    void *work_data;
    void *payload;

    /* Shared between the threads. */
    atomic_bool cancel;
    atomic_bool expired; /* the timer fired: the deadline has passed, whatever the clocks say */
    atomic_bool ended;   /* the thread is done with the job but for returning */
    sw_gitstream_ctx_t stream;
    atomic_bool progressed;
    _Atomic uint64_t counts; /* total << 32 | received, one word so the pair is never torn */

    /* Loop thread only. */
    uint64_t reported; /* counts last passed to progress */
    bool reported_any;
    bool finished; /* the thread was joined */
    bool no_done;  /* start failed: the caller was told synchronously */

    /* Work thread until it ended, then the loop thread. */
    int stop; /* -ECANCELED or -ETIMEDOUT once either has been seen */
    bool cred_given;
    const char *auth_failed; /* why the server would not let us in; NULL while it has */
    bool trusted_new;        /* a host key was trusted on first use: new_key_type, new_sha256 */
    char new_key_type[32];
    char new_sha256[SW_GIT_FINGERPRINT_MAX];
    char host_problem[512]; /* why the host key was refused; wins over libgit2's message */
    int status;
    sw_git_result_t result;
    sw_buf_t error;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status;

static void init_libgit2(void)
{
    init_status = git_libgit2_init() < 0 ? -EIO : sw_gitstream_register();
}

int sw_git_init(void)
{
    pthread_once(&init_once, init_libgit2);
    return init_status;
}

static bool is_https(const char *url)
{
    return strncmp(url, "https://", 8) == 0;
}

static char *dup_opt(const char *s)
{
    return s && *s ? sw_strdup(s) : NULL;
}

static void wipe_free(char *s)
{
    if (s) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

static void job_free(sw_git_job_t *job)
{
    wipe_free(job->token);
    wipe_free(job->ssh_key);
    free(job->key_dir);
    free(job->known);
    free(job->url);
    free(job->ref);
    free(job->commit_sha);
    free(job->mirror_dir);
    free(job->checkout_dir);
    sw_buf_free(&job->error);
    sw_gitstream_ctx_destroy(&job->stream);
    free(job);
}

/* Work thread: the first cancel or deadline seen sticks, so every later step agrees. */
static int check_stop(sw_git_job_t *job)
{
    if (job->stop == 0) {
        if (atomic_load(&job->cancel))
            job->stop = -ECANCELED;
        else if (atomic_load(&job->expired) ||
                 (job->deadline_ns && sw_now_ns() >= job->deadline_ns))
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

void sw_git_job_error(sw_git_job_t *job, const char *fmt, ...)
{
    va_list ap;

    sw_buf_reset(&job->error);
    va_start(ap, fmt);
    sw_buf_vprintf(&job->error, fmt, ap);
    va_end(ap);
}

static int sys_fail(sw_git_job_t *job, int err, const char *what)
{
    sw_git_job_error(job, "%s: %s", what, sw_strerror(err));
    return err;
}

/* The one place libgit2 errors become ours. A stop the callbacks asked for wins over the
 * error it caused. */
static int fail_git(sw_git_job_t *job, const char *what)
{
    const git_error *e = git_error_last();

    if (check_stop(job) < 0)
        return job->stop;
    sw_git_job_error(job, "%s: ", what);
    if (job->host_problem[0])
        sw_buf_append_cstr(&job->error, job->host_problem);
    else if (job->auth_failed)
        sw_buf_printf(&job->error, "authentication failed: %s", job->auth_failed);
    else
        append_scrubbed(&job->error, e && e->message ? e->message : "unknown error", job->token);
    return -EIO;
}

/* What kind of failure a remote's connect or listing ended in: the stop, -EKEYREJECTED (host
 * key), -EACCES (credentials), -EPERM (the address rule), -EHOSTUNREACH (no connection),
 * -EFBIG (the host sent too much), -ENOENT (no such repository), or -EIO. */
static int remote_failure(sw_git_job_t *job, int gerr, const char *msg)
{
    if (check_stop(job) < 0)
        return job->stop;
    if (job->host_problem[0])
        return -EKEYREJECTED;
    if (job->auth_failed || gerr == GIT_EAUTH)
        return -EACCES;
    if (job->stream.connect_error == -EACCES)
        return -EPERM;
    if (job->stream.connect_error)
        return -EHOSTUNREACH;
    if (job->stream.max_read && job->stream.read > job->stream.max_read)
        return -EFBIG;
    /* A local path, an http 404, or what git's and the big hosts' ssh servers say. */
    if (gerr == GIT_ENOTFOUND ||
        (msg && (strstr(msg, "status code: 404") || strstr(msg, "failed to resolve path") ||
                 strstr(msg, "does not appear to be a git") ||
                 strcasestr(msg, "repository not found") || strstr(msg, "could not be found"))))
        return -ENOENT;
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

/* For a libgit2 that cannot take a key from memory: a private file, removed after the fetch. */
static int write_key_file(sw_git_job_t *job)
{
    int r;

    if (job->key_path[0])
        return 0;
    r = sw_git_key_file_write(job->key_dir, job->ssh_key, job->key_path, sizeof(job->key_path));
    if (r < 0)
        snprintf(job->host_problem, sizeof(job->host_problem), "cannot write the ssh key: %s",
                 r == -ENAMETOOLONG ? "ssh key directory too long" : sw_strerror(r));
    return r;
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
        job->auth_failed = job->token     ? "the server refused the app's token"
                           : job->ssh_key ? "the server refused the app's deploy key: add its "
                                            "public half to the repository's deploy keys"
                                          : "the server refused the credentials";
        return GIT_EUSER;
    }
    job->cred_given = true;
    /* The token only ever goes to the host it was configured for, never after a redirect. */
    if (job->token && (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && is_https(url) &&
        is_https(job->url) && sw_git_same_host(url, job->url))
        return git_credential_userpass_plaintext_new(out, TOKEN_USER, job->token);
    if (is_https(url) || is_https(job->url))
        return GIT_PASSTHROUGH;
    if (job->ssh_key && (allowed & GIT_CREDENTIAL_SSH_MEMORY) &&
        git_credential_ssh_key_memory_new(out, user, NULL, job->ssh_key, NULL) == 0)
        return 0;
    if (job->ssh_key && (allowed & GIT_CREDENTIAL_SSH_KEY)) {
        if (write_key_file(job) < 0)
            return GIT_EUSER;
        return git_credential_ssh_key_new(out, user, NULL, job->key_path, NULL);
    }
    /* Never slipwayd's own ssh-agent or keys: an app reaches only what its own key opens. */
    if (!job->ssh_key && (allowed & (GIT_CREDENTIAL_SSH_KEY | GIT_CREDENTIAL_SSH_MEMORY))) {
        job->auth_failed = "the repository wants an ssh key and the app has no deploy key: "
                           "generate one, then add its public half to the repository";
        return GIT_EUSER;
    }
    return GIT_PASSTHROUGH;
}

static const char *raw_type_name(git_cert_ssh_raw_type_t t)
{
    switch (t) {
    case GIT_CERT_SSH_RAW_TYPE_RSA:
        return "ssh-rsa";
    case GIT_CERT_SSH_RAW_TYPE_DSS:
        return "ssh-dss";
    case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_256:
        return "ecdsa-sha2-nistp256";
    case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_384:
        return "ecdsa-sha2-nistp384";
    case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_521:
        return "ecdsa-sha2-nistp521";
    case GIT_CERT_SSH_RAW_TYPE_KEY_ED25519:
        return "ssh-ed25519";
    default:
        return "";
    }
}

/* ssh host keys against the known hosts; TLS certificates are left to libgit2. A host with no
 * known key is trusted on first use; one with known keys must offer one of them. */
static int on_certificate(git_cert *cert, int valid, const char *host, void *payload)
{
    sw_git_job_t *job = payload;
    const git_cert_hostkey *hk = (const git_cert_hostkey *)cert;
    char fp[SW_GIT_FINGERPRINT_MAX], type[32];
    const char *recorded = NULL;

    (void)valid;
    (void)host; /* libgit2's host has no port; known hosts are named after the URL's */
    if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2)
        return GIT_PASSTHROUGH;
    if (!job->ssh_host[0]) {
        snprintf(job->host_problem, sizeof(job->host_problem), "unexpected ssh host key");
        return GIT_ECERTIFICATE;
    }
    type[0] = '\0';
    if ((hk->type & GIT_CERT_SSH_RAW) && hk->hostkey && hk->hostkey_len) {
        sw_git_fingerprint(hk->hostkey, hk->hostkey_len, fp);
        sw_git_key_type(hk->hostkey, hk->hostkey_len, type, sizeof(type));
        if (!type[0])
            snprintf(type, sizeof(type), "%s", raw_type_name(hk->raw_type));
    } else if (hk->type & GIT_CERT_SSH_SHA256) {
        sw_git_fingerprint_encode(hk->hash_sha256, fp);
    } else {
        snprintf(job->host_problem, sizeof(job->host_problem),
                 "host %s offered no SHA-256 host key fingerprint", job->ssh_host);
        return GIT_ECERTIFICATE;
    }
    for (size_t i = 0; i < job->nknown; i++) {
        if (strcmp(job->known[i].host, job->ssh_host) != 0)
            continue;
        if (strcmp(job->known[i].sha256, fp) == 0)
            return 0;
        recorded = recorded ? recorded : job->known[i].sha256;
    }
    if (job->trusted_new) {
        if (strcmp(job->new_sha256, fp) == 0)
            return 0;
        recorded = job->new_sha256;
    }
    if (recorded) {
        snprintf(job->host_problem, sizeof(job->host_problem),
                 "host key for %s changed: recorded %s, offered %s", job->ssh_host, recorded, fp);
        return GIT_ECERTIFICATE;
    }
    job->trusted_new = true;
    snprintf(job->new_key_type, sizeof(job->new_key_type), "%s", type);
    snprintf(job->new_sha256, sizeof(job->new_sha256), "%s", fp);
    return 0;
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
    git_remote *remote = NULL;
    git_buf buf = GIT_BUF_INIT;
    int r;

    sw_git_job_callbacks(job, &fo.callbacks);
    fo.prune = GIT_FETCH_PRUNE;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE; /* the tag refspec takes them all */

    /* Connected first so the advertised HEAD is known; fetch reuses the connection. */
    r = sw_git_job_remote(job, repo, &fo.callbacks, &remote);
    if (r < 0) {
        r = r == -ETIMEDOUT || r == -ECANCELED ? r : -EIO;
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
    if (len < GIT_OID_MINPREFIXLEN || len > SHA_HEX || strspn(ref, "0123456789abcdefABCDEF") != len)
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
            sw_git_job_error(job, "no such commit: %s", job->commit_sha);
            return -ENOENT;
        }
    } else if (job->ref) {
        r = resolve_ref(repo, job->ref, out);
        if (is_missing(r)) {
            sw_git_job_error(job, "no such branch, tag or commit: %s", job->ref);
            return -ENOENT;
        }
    } else if (head) {
        r = lookup_ref(repo, head, out);
        if (is_missing(r)) {
            sw_git_job_error(job, "the remote's default branch is missing: %s", head);
            return -ENOENT;
        }
    } else {
        r = GIT_ENOTFOUND;
        for (size_t i = 0; i < SW_ARRAY_SIZE(fallbacks) && is_missing(r); i++)
            r = lookup_ref(repo, fallbacks[i], out);
        if (is_missing(r)) {
            sw_git_job_error(job, "the remote names no default branch, and has no main or master");
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

/* Copies src into dst (size bytes), cut short of a partial UTF-8 sequence: it ends up in
 * JSON. */
static void copy_text(char *dst, size_t size, const char *src)
{
    /* Whatever bytes the author's tools wrote; PostgreSQL stores UTF-8 text only. */
    sw_utf8_copy(dst, size, src ? src : "", src ? strlen(src) : 0);
}

static void fill_result(sw_git_job_t *job, const git_commit *commit)
{
    sw_git_result_t *res = &job->result;
    const git_signature *who = git_commit_author(commit);
    char author[512];

    git_oid_tostr(res->commit_hash, sizeof(res->commit_hash), git_commit_id(commit));
    copy_text(res->commit_message, sizeof(res->commit_message), git_commit_message(commit));
    author[0] = '\0';
    if (who)
        snprintf(author, sizeof(author), "%.200s <%.200s>", who->name ? who->name : "",
                 who->email ? who->email : "");
    copy_text(res->commit_author, sizeof(res->commit_author), author);
}

static int stream_stop(void *payload)
{
    return check_stop(payload);
}

static int checkout_run(sw_git_job_t *job)
{
    git_repository *repo = NULL;
    git_commit *commit = NULL;
    char *head = NULL;
    bool created = false;
    int lock_fd = -1;
    int r;

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
    /* Only an empty directory goes: a partial checkout is left for the caller to inspect. */
    if (r < 0 && created)
        (void)rmdir(job->checkout_dir);
    return r;
}

static void job_run(void *arg)
{
    sw_git_job_t *job = arg;
    int r;

    sw_gitstream_bind(&job->stream);
    /* Cancelled before the thread started: touch nothing. */
    r = check_stop(job);
    if (r == 0)
        r = job->work ? job->work->run(job, job->work_data) : checkout_run(job);
    if (job->key_path[0])
        (void)unlink(job->key_path);
    if (r < 0 && job->stop < 0) {
        r = job->stop;
        sw_git_job_error(job, "%s", r == -ETIMEDOUT ? "timed out" : "cancelled");
    }
    job->status = r;
    sw_gitstream_bind(NULL);
    atomic_store(&job->ended, true);
    uv_async_send(&job->async);
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

static void on_closed(uv_handle_t *handle)
{
    sw_git_job_t *job = handle->data;

    if (--job->open_handles > 0)
        return;
    if (!job->no_done && job->trusted_new && job->host_key)
        job->host_key(job->ssh_host, job->new_key_type, job->new_sha256, job->payload);
    if (!job->no_done && job->work)
        job->work->report(job->status, job->status == 0 ? NULL : job->error.base, job->work_data,
                          job->payload);
    else if (!job->no_done)
        job->done(job->status, job->status == 0 ? &job->result : NULL,
                  job->status == 0 ? NULL : job->error.base, job->payload);
    job_free(job);
}

/* done runs once both handles are closed, so the caller never sees a job with anything open. */
static void close_handles(sw_git_job_t *job)
{
    uv_close((uv_handle_t *)&job->async, on_closed);
    uv_close((uv_handle_t *)&job->timer, on_closed);
}

static void on_async(uv_async_t *handle)
{
    sw_git_job_t *job = handle->data;

    /* A last wake-up may still be pending; progress never lags behind done. */
    report_progress(job);
    if (job->finished || !atomic_load(&job->ended))
        return;
    job->finished = true;
    (void)uv_thread_join(&job->thread); /* it has nothing left to do but return */
    close_handles(job);
}

static void on_deadline(uv_timer_t *timer)
{
    sw_git_job_t *job = timer->data;

    atomic_store(&job->expired, true);
    sw_gitstream_abort(&job->stream);
}

/* The thread of a job: a checkout (done) or another work (work, data). */
static int job_start(uv_loop_t *loop, const sw_git_opts_t *opts, sw_git_progress_cb progress,
                     sw_git_done_cb done, const sw_git_work_t *work, void *data, void *payload,
                     sw_git_job_t **out)
{
    sw_git_job_t *job = NULL;
    int r;

    r = sw_git_init();
    if (r < 0)
        goto out;
    r = sw_git_opts_check(opts);
    if (r < 0)
        goto out;
    job = sw_calloc(1, sizeof(*job));
    sw_gitstream_ctx_init(&job->stream, opts->allow_private, opts->allow_file, stream_stop, job);
    job->url = sw_strdup(opts->url);
    job->ref = dup_opt(opts->ref);
    job->commit_sha = dup_opt(opts->commit_sha);
    job->mirror_dir = dup_opt(opts->mirror_dir);
    job->checkout_dir = dup_opt(opts->checkout_dir);
    job->stream.max_read = opts->max_read;
    job->token = dup_opt(opts->https_token);
    if (!is_https(opts->url)) {
        job->ssh_key = dup_opt(opts->ssh_private_key);
        job->key_dir = dup_opt(opts->ssh_key_dir);
    }
    if (sw_git_ssh_host(opts->url, job->ssh_host) < 0)
        job->ssh_host[0] = '\0';
    if (opts->n_known_hosts) {
        job->known = sw_calloc(opts->n_known_hosts, sizeof(*job->known));
        for (size_t i = 0; i < opts->n_known_hosts; i++) {
            snprintf(job->known[i].host, sizeof(job->known[i].host), "%s",
                     opts->known_hosts[i].host);
            snprintf(job->known[i].sha256, sizeof(job->known[i].sha256), "%s",
                     opts->known_hosts[i].sha256);
        }
        job->nknown = opts->n_known_hosts;
    }
    job->host_key = opts->host_key;
    if (opts->timeout_ms)
        job->deadline_ns = sw_now_ns() + (uint64_t)opts->timeout_ms * 1000000u;
    job->progress = progress;
    job->done = done;
    job->work = work;
    job->work_data = data;
    job->payload = payload;
    r = uv_async_init(loop, &job->async, on_async);
    if (r < 0) {
        job_free(job);
        goto out;
    }
    (void)uv_timer_init(loop, &job->timer);
    job->async.data = job->timer.data = job;
    job->open_handles = 2;
    if (opts->timeout_ms)
        (void)uv_timer_start(&job->timer, on_deadline, opts->timeout_ms, 0);
    r = uv_thread_create(&job->thread, job_run, job);
    if (r < 0) {
        job->no_done = true;
        close_handles(job);
        goto out;
    }
    if (out)
        *out = job;
out:
    return r;
}

int sw_git_checkout(uv_loop_t *loop, const sw_git_opts_t *opts, sw_git_progress_cb progress,
                    sw_git_done_cb done, void *payload, sw_git_job_t **out)
{
    if (!loop || !opts || !done || !opts->mirror_dir || !opts->checkout_dir)
        return -EINVAL;
    return job_start(loop, opts, progress, done, NULL, NULL, payload, out);
}

int sw_git_job_start(uv_loop_t *loop, const sw_git_opts_t *opts, const sw_git_work_t *work,
                     void *data, void *payload, sw_git_job_t **out)
{
    if (!loop || !opts || !work || !work->run || !work->report)
        return -EINVAL;
    return job_start(loop, opts, NULL, NULL, work, data, payload, out);
}

void sw_git_job_callbacks(sw_git_job_t *job, git_remote_callbacks *cb)
{
    cb->transfer_progress = on_transfer;
    cb->sideband_progress = on_sideband;
    cb->credentials = on_credentials;
    cb->certificate_check = on_certificate;
    cb->payload = job;
}

int sw_git_job_remote(sw_git_job_t *job, git_repository *repo, const git_remote_callbacks *cb,
                      git_remote **out)
{
    git_remote_create_options ro = GIT_REMOTE_CREATE_OPTIONS_INIT;
    git_remote *remote = NULL;
    const git_error *e;
    char msg[256];
    int r;

    /* The URL given is the URL fetched: no url.*.insteadOf rewriting from any config. (It also
     * steers clear of a libgit2 1.5 leak of pcre2 match data in that config walk.) */
    ro.repository = repo;
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    r = git_remote_create_with_opts(&remote, job->url, &ro);
    if (r < 0)
        return fail_git(job, "remote");
    r = git_remote_connect(remote, GIT_DIRECTION_FETCH, cb, NULL, NULL);
    if (r < 0) {
        e = git_error_last();
        snprintf(msg, sizeof(msg), "%s", e && e->message ? e->message : "");
        git_remote_free(remote);
        (void)fail_git(job, "connect");
        return remote_failure(job, r, msg);
    }
    *out = remote;
    return 0;
}

int sw_git_job_stop(sw_git_job_t *job)
{
    return check_stop(job);
}

int sw_git_job_fail(sw_git_job_t *job, const char *what)
{
    int r = fail_git(job, what);

    return r == -EIO ? remote_failure(job, 0, NULL) : r;
}

void sw_git_cancel(sw_git_job_t *job)
{
    if (!job)
        return;
    atomic_store(&job->cancel, true);
    /* Wakes a fetch that waits where no slice reaches (libssh2 on its socket). */
    sw_gitstream_abort(&job->stream);
}
