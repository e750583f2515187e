/* Fetching app sources with libgit2, each job on a thread of its own: a bare mirror per
 * repository, fetched (never re-cloned) each time, then one commit checked out into a build
 * directory. Fetches reach public addresses only, unless the options allow more. */
#ifndef SLIPWAY_GIT_H
#define SLIPWAY_GIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sw_git_job sw_git_job_t;

/* "SHA256:" + unpadded base64 of the SHA-256 of a key blob, as OpenSSH prints it; with NUL. */
#define SW_GIT_FINGERPRINT_MAX 64
/* A host as known hosts name it: "host", or "host:port" when the port is not 22. */
#define SW_GIT_HOST_MAX 262

/* A host key the user gave or that was trusted on first use. */
typedef struct {
    const char *host;   /* as sw_git_ssh_host() names it */
    const char *sha256; /* SW_GIT_FINGERPRINT_MAX form */
} sw_git_known_host_t;

/* Called on the loop thread, before done, when the job trusted a host key on first use (the
 * host had no known key): the caller records it. Runs whether or not the fetch succeeded. */
typedef void (*sw_git_host_key_cb)(const char *host, const char *key_type, const char *sha256,
                                   void *payload);

/* Jobs on one mirror take turns through flock() on this file inside mirror_dir; anything else
 * that touches a mirror (gc, cleanup) takes the same lock first. */
#define SW_GIT_MIRROR_LOCK "slipway.lock"

typedef struct {
    const char *url;          /* https://, ssh://, git@host:path, file:// */
    const char *ref;          /* branch or tag name; "" or NULL: the remote's HEAD */
    const char *commit_sha;   /* optional: 40 hex; wins over ref */
    const char *mirror_dir;   /* bare mirror, created on first use */
    const char *checkout_dir; /* must not exist; created and filled with the commit's tree */
    const char *https_token;  /* optional: sent as the password for https (user "x-token") */
    /* optional: an OpenSSH private key (openssh-key-v1, unencrypted) for ssh:// and
     * user@host:path; never for https. Without it, ssh fetches fail: never the agent. */
    const char *ssh_private_key;
    /* where the key may be written (0600, removed after the fetch) when this libgit2 cannot
     * take it from memory; required with ssh_private_key */
    const char *ssh_key_dir;
    /* Host keys accepted for ssh; a host with none here is trusted on first use and reported
     * through host_key. A host listed with other keys fails the fetch. */
    const sw_git_known_host_t *known_hosts;
    size_t n_known_hosts;
    sw_git_host_key_cb host_key; /* optional */
    /* file:// permitted, and so are loopback, link-local and other local addresses:
     * development only */
    bool allow_file;
    bool allow_private;  /* private addresses (10/8, 192.168/16, fc00::/7, ...) permitted */
    uint32_t timeout_ms; /* whole job, however the server stalls; 0: none */
    uint64_t max_read;   /* bytes an http(s) server may send in all; 0: no bound */
} sw_git_opts_t;

typedef struct {
    char commit_hash[41];
    char commit_message[1024]; /* first 1023 bytes of the message */
    char commit_author[256];   /* "Name <email>", cut at a character boundary */
} sw_git_result_t;

/* Progress on the loop thread: objects received so far out of total (total 0: unknown). */
typedef void (*sw_git_progress_cb)(unsigned received, unsigned total, void *payload);
/* Once, on the loop thread. status 0, -ECANCELED, -ETIMEDOUT, -ENOENT (no such ref or commit),
 * -EINVAL (bad options), -EEXIST (checkout_dir exists), another negative errno from the file
 * system, or -EIO; on failure error names the cause (never credentials), on success it is
 * NULL. res is valid only during the call, and NULL on failure. */
typedef void (*sw_git_done_cb)(int status, const sw_git_result_t *res, const char *error,
                               void *payload);

/* An ed25519 key pair for an app's deploy key. */
typedef struct {
    char *public_key;  /* authorized_keys line: "ssh-ed25519 <base64> <comment>" */
    char *private_key; /* "-----BEGIN OPENSSH PRIVATE KEY-----" text; wiped by _clear */
    char fingerprint[SW_GIT_FINGERPRINT_MAX];
} sw_git_deploy_key_t;

/* The name of a key file a fetch writes: then the writer's pid, '-' and mkostemp's six. */
#define SW_GIT_KEY_PREFIX ".slipway-key-"

/* Writes key into a new 0600 file in dir (SW_GIT_KEY_PREFIX, this process's pid, '-' and six
 * random characters) and its name into path (size bytes); the caller removes it after the
 * fetch. 0, or -ENAMETOOLONG or another negative errno, and then path is "" and no file is
 * left. */
int sw_git_key_file_write(const char *dir, const char *key, char *path, size_t size);

/* Removes the private keys that fetches wrote into dir (see ssh_key_dir) and that a killed
 * process left there - those of processes that are gone, and of an earlier process with this
 * one's pid - and answers how many. Call it before this process's first fetch: the worker
 * does at start. Keys of live processes sharing dir (--http-workers) stay. */
int sw_git_key_files_remove(const char *dir);

/* Makes a fresh key pair (libsodium); comment ends the public line and is stored in the
 * private key (printable ASCII without spaces, at most 255 bytes). 0 or -EINVAL. */
int sw_git_deploy_key_new(sw_git_deploy_key_t *out, const char *comment);
/* Wipes and frees both halves; accepts a zeroed key. */
void sw_git_deploy_key_clear(sw_git_deploy_key_t *key);
/* OpenSSH's SHA256 fingerprint of a key blob (the SSH wire encoding of the public key). */
void sw_git_fingerprint(const void *blob, size_t len, char out[SW_GIT_FINGERPRINT_MAX]);
/* The key type a key blob names first ("ssh-ed25519", ...) into out; "" when it names none
 * that fits in size. */
void sw_git_key_type(const void *blob, size_t len, char *out, size_t size);
/* sw_git_fingerprint() for a key blob's SHA-256 already taken. */
void sw_git_fingerprint_encode(const unsigned char hash[32], char out[SW_GIT_FINGERPRINT_MAX]);
/* Splits text, "host sha256" lines as the apps' known hosts are read, in place: *out gets an
 * array (free it; NULL when empty) pointing into text, and the count is answered. */
size_t sw_git_known_hosts_split(char *text, sw_git_known_host_t **out);
/* The known-hosts name of url's ssh host ("host" or "host:port", lower case, port 22 left
 * out) into out; -EINVAL when url is not ssh:// or user@host:path. */
int sw_git_ssh_host(const char *url, char out[SW_GIT_HOST_MAX]);

/* 0 when opts are valid (the directories only checked when given), else -EINVAL. */
int sw_git_opts_check(const sw_git_opts_t *opts);
/* The port a scheme://[user@]host[:port]/path URL names: 1-65535, 0 when it names none (and
 * for other forms), -EINVAL when it is not a number in that range. */
int sw_git_url_port(const char *url);
/* Whether two scheme:// URLs name the same host and port (case aside). */
bool sw_git_same_host(const char *a, const char *b);

/* Initialises libgit2 once per process, with gitstream.h's sockets under every connection. */
int sw_git_init(void);
/* Starts the job; *out (optional) lets the caller cancel it. Returns 0 or a negative code
 * (then done is not called). */
int sw_git_checkout(uv_loop_t *loop, const sw_git_opts_t *opts, sw_git_progress_cb progress,
                    sw_git_done_cb done, void *payload, sw_git_job_t **out);
/* A branch of a remote, as its refs advertise it. */
typedef struct {
    char *name; /* without refs/heads/ */
    char commit[41];
} sw_git_branch_t;

/* What a remote advertises: its branches sorted by name (bytewise), at most max of them. */
typedef struct {
    sw_git_branch_t *branches;
    size_t n;
    size_t total;       /* branches advertised; more than n when max cut the list */
    char *default_name; /* the branch HEAD names (or, failing that, points at); NULL: none */
} sw_git_branches_t;

/* Once, on the loop thread. status 0, or as sw_git_checkout's done has it, or -EACCES
 * (credentials refused or missing), -EKEYREJECTED (the ssh host key is not the one known),
 * -EPERM (the address rule refused the host), -EHOSTUNREACH (no name or no connection),
 * -ENOENT (no such repository), -EFBIG (the server sent more than max_read). out is valid only
 * during the call, and NULL on failure. */
typedef void (*sw_git_branches_cb)(int status, const sw_git_branches_t *out, const char *error,
                                   void *payload);

/* Lists the branches of opts' URL (mirror_dir, checkout_dir, ref and commit_sha unused), with
 * the checkout's credentials, host keys, address rule, deadline and cancel, on a thread of its
 * own; nothing is written but an ssh key file while it runs. max: branches kept (at least 1).
 * Returns 0 or a negative code (then done is not called). */
int sw_git_branches(uv_loop_t *loop, const sw_git_opts_t *opts, size_t max, sw_git_branches_cb done,
                    void *payload, sw_git_job_t **out);

/* Asks the job to stop; done follows with -ECANCELED (or its real outcome if it had
 * finished) within a fraction of a second, whatever the fetch was waiting on. Safe until done
 * has been called. */
void sw_git_cancel(sw_git_job_t *job);

#endif
