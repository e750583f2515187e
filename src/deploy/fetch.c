/* The fetch of a run: the app's git credentials (token, deploy key, known hosts), opened
 * only for the kind of URL that uses them, then libgit2 on its own thread. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* ---- fetch ---- */

static void on_git_progress(unsigned received, unsigned total, void *payload)
{
    run_t *r = payload;
    if (total)
        sw_run_status(r, "building", "cloning_repo", (int)(5 + 30 * (uint64_t)received / total));
}

static void on_fetched(int status, const sw_git_result_t *res, const char *error, void *payload)
{
    run_t *r = payload;
    r->git = NULL;
    if (r->cancelled || status == -ECANCELED) {
        sw_run_fail(r, "cancelled while fetching the repository");
        return;
    }
    if (status == -ETIMEDOUT) {
        char d[32];
        sw_run_fail(r, "clone timed out after %s",
                    sw_deploy_duration(r->w->cfg->clone_timeout_ms, d, sizeof(d)));
        return;
    }
    if (status != 0) {
        sw_run_fail(r, "clone failed: %s", error && *error ? error : sw_strerror(status));
        return;
    }
    const char *params[] = {r->id, res->commit_hash, res->commit_message, res->commit_author};
    sw_pg_query(r->w->pg,
                "UPDATE deployments SET commit_hash = $2, commit_message = $3, "
                "commit_author = $4, updated_at = now() WHERE id = $1",
                4, params, sw_deploy_ignore_pg, NULL);
    sw_run_system(r, "checked out %.12s", res->commit_hash);
    int rc = sw_runtime_adopt(r->rt, r->build_dir, r->run_uid, false);
    if (rc != 0) {
        sw_run_fail(r, "could not hand the checkout to the app's uid: %s", sw_strerror(rc));
        return;
    }
    sw_run_build(r);
}

/* A host key trusted on first use: recorded, so a changed one fails the next fetch. */
static void on_host_key(const char *host, const char *key_type, const char *sha256, void *payload)
{
    run_t *r = payload;
    const char *params[] = {r->app_id, host, key_type[0] ? key_type : NULL, sha256};
    sw_pg_query(r->w->pg,
                "INSERT INTO app_known_hosts (app_id, host, key_type, sha256, source) "
                "VALUES ($1, $2, $3, $4, 'first_use') ON CONFLICT DO NOTHING",
                4, params, sw_deploy_ignore_pg, NULL);
    sw_run_system(r, "trusted the host key of %s on first use: %s", host, sha256);
}

static bool is_ssh_url(const char *url)
{
    char host[SW_GIT_HOST_MAX];
    return sw_git_ssh_host(url, host) == 0;
}

/* Opens a credential sealed with "<what>:<app id>" into out; false after failing the run. */
static bool open_credential(run_t *r, const char *sealed, const char *what, const char *name,
                            sw_buf_t *out)
{
    char ad[96];
    snprintf(ad, sizeof(ad), "%s:%s", what, r->app_id);
    if (sw_secretbox_open(r->w->box, sealed, strlen(sealed), ad, out) == 0)
        return true;
    sw_run_fail(r, "clone failed: the app's %s cannot be decrypted (was the master key changed?)",
                name);
    return false;
}

static void buf_wipe(sw_buf_t *b)
{
    if (b->base)
        sodium_memzero(b->base, b->cap);
    sw_buf_free(b);
}

/* The app's credentials (columns: sealed token, sealed deploy key, known hosts as
 * "host sha256" lines), opened only for the kind of URL that uses them; then the fetch. */
static void on_git_credentials(int status, sw_pg_result_t *res, void *payload)
{
    run_t *r = payload;
    sw_worker_t *w = r->w;
    if (r->cancelled) {
        sw_run_fail(r, "cancelled while fetching the repository");
        return;
    }
    if (status != 0) {
        sw_run_fail(r, "clone failed: could not read the app's git credentials: %s",
                    sw_strerror(status));
        return;
    }
    if (sw_pg_result_rows(res) != 1) {
        sw_run_fail(r, "clone failed: the app no longer exists");
        return;
    }
    char hash[SW_TOKEN_HASH_HEX], mirror[512], parent[512], builds[512];
    sw_token_hash(r->repo_url, strlen(r->repo_url), hash);
    /* A data directory too long for these paths is refused rather than cut short. */
    if (snprintf(mirror, sizeof(mirror), "%s/repos/%.32s.git", w->cfg->data_dir, hash) >=
            (int)sizeof(mirror) ||
        snprintf(parent, sizeof(parent), "%s/builds/%s", w->cfg->data_dir, r->app_id) >=
            (int)sizeof(parent) ||
        snprintf(builds, sizeof(builds), "%s/builds", w->cfg->data_dir) >= (int)sizeof(builds)) {
        sw_run_fail(r, "clone failed: SLIPWAY_DATA_DIR is too long");
        return;
    }
    const char *token_sealed = sw_pg_result_value(res, 0, 0);
    const char *key_sealed = sw_pg_result_value(res, 0, 1);
    const char *known_text = sw_pg_result_value(res, 0, 2);
    sw_buf_t token = SW_BUF_INIT, key = SW_BUF_INIT;
    bool https = strncmp(r->repo_url, "https://", 8) == 0;
    if (https && token_sealed && *token_sealed &&
        !open_credential(r, token_sealed, "app_git_token", "git token", &token))
        goto out;
    if (is_ssh_url(r->repo_url) && key_sealed && *key_sealed &&
        !open_credential(r, key_sealed, "app_deploy_key", "deploy key", &key))
        goto out;

    char *known_copy = sw_strdup(known_text ? known_text : "");
    sw_git_known_host_t *known = NULL;
    size_t nknown = sw_git_known_hosts_split(known_copy, &known);

    mkdir(builds, 0700);
    mkdir(parent, 0700);
    sw_git_opts_t o = {
        .url = r->repo_url,
        /* An abbreviated sha resolves like a ref; a full one is looked up as a commit. */
        .ref = strlen(r->commit_sha) == 40 ? NULL
               : r->commit_sha[0]          ? r->commit_sha
                                           : r->ref,
        .commit_sha = strlen(r->commit_sha) == 40 ? r->commit_sha : NULL,
        .mirror_dir = mirror,
        .checkout_dir = r->build_dir,
        .https_token = token.len ? token.base : NULL,
        .ssh_private_key = key.len ? key.base : NULL,
        .ssh_key_dir = w->cfg->data_dir,
        .known_hosts = known,
        .n_known_hosts = nknown,
        .host_key = on_host_key,
        .allow_file = w->cfg->allow_file_repos,
        .allow_private = w->cfg->git_allow_private,
        .timeout_ms = w->cfg->clone_timeout_ms,
    };
    sw_run_system(r, "fetching %s%s", r->commit_sha[0] ? r->commit_sha : r->ref,
                  key.len     ? " with the app's deploy key"
                  : token.len ? " with the app's token"
                              : "");
    int rc = sw_git_checkout(w->loop, &o, on_git_progress, on_fetched, r, &r->git);
    free(known);
    free(known_copy);
    if (rc != 0) {
        r->git = NULL;
        sw_run_fail(r, "clone failed: %s", sw_strerror(rc));
    }
out:
    buf_wipe(&token);
    buf_wipe(&key);
}

void sw_fetch_start(run_t *r)
{
    r->state = RUN_FETCHING;
    if (!r->repo_url[0]) {
        sw_run_fail(r, "clone failed: the app has no repo_url");
        return;
    }
    const char *params[] = {r->app_id};
    sw_pg_query(r->w->pg,
                "SELECT a.git_token_sealed, k.private_sealed, (SELECT string_agg(h.host || ' ' "
                "|| h.sha256, E'\\n') FROM app_known_hosts h WHERE h.app_id = a.id) "
                "FROM apps a LEFT JOIN app_deploy_keys k ON k.app_id = a.id WHERE a.id = $1",
                1, params, on_git_credentials, r);
}
