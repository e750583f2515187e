/* Checking what a fetch is given before anything runs: the repository URL (its form, host and
 * port), the ref, the directories, the credentials and known hosts. */
#include "slipway/git.h"

#include <ctype.h>
#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "slipway/common.h"

#define URL_MAX      4096
#define REF_MAX      255
#define TOKEN_MAX    4096
#define DIR_MAX      (PATH_MAX - 64) /* room for the lock file's name */
#define SHA_HEX      40
#define HEADS_PREFIX "refs/heads/"
#define KEY_MAX      16384 /* an OpenSSH private key's text */
#define KNOWN_MAX    1024

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

    *len = 0;
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
        return len > 0 && host[0] != '-' && sw_git_url_port(url) >= 0 ? 0 : -EINVAL;
    }
    if (has_prefix(url, "file://"))
        return allow_file && url[7] == '/' ? 0 : -EINVAL;
    if (strstr(url, "://"))
        return -EINVAL;
    return scp_like_ok(url) ? 0 : -EINVAL;
}

int sw_git_url_port(const char *url)
{
    size_t len;
    const char *host = url_host(url, &len), *end, *colon;
    long port = 0;

    if (!host)
        return 0;
    len = SW_MIN(len, strcspn(host, "?#"));
    end = host + len;
    if (len && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (!close)
            return -EINVAL;
        colon = close + 1 < end ? close + 1 : NULL;
        if (colon && *colon != ':')
            return -EINVAL;
    } else {
        colon = memchr(host, ':', len);
    }
    if (!colon)
        return 0;
    if (colon + 1 == end || end - colon - 1 > 5)
        return -EINVAL;
    for (const char *p = colon + 1; p < end; p++) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535 ? (int)port : -EINVAL;
}

int sw_git_ssh_host(const char *url, char out[SW_GIT_HOST_MAX])
{
    const char *host, *colon;
    size_t len;

    if (!url)
        return -EINVAL;
    if (has_prefix(url, "ssh://")) {
        host = url_host(url, &len);
    } else if (!strstr(url, "://") && scp_like_ok(url)) {
        host = strchr(url, '@') + 1;
        colon = strchr(host, ':');
        len = (size_t)(colon - host);
    } else {
        return -EINVAL;
    }
    if (len > 3 && strncmp(host + len - 3, ":22", 3) == 0 && host[len - 4] != ':')
        len -= 3;
    if (len == 0 || len >= SW_GIT_HOST_MAX)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)host[i]);
    out[len] = '\0';
    return 0;
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

int sw_git_opts_check(const sw_git_opts_t *o)
{
    if (validate_url(o->url, o->allow_file) < 0)
        return -EINVAL;
    if (o->ref && *o->ref && validate_ref(o->ref) < 0)
        return -EINVAL;
    if (o->commit_sha && *o->commit_sha &&
        (strlen(o->commit_sha) != SHA_HEX || !is_hex(o->commit_sha, SHA_HEX)))
        return -EINVAL;
    if ((o->mirror_dir && validate_path(o->mirror_dir) < 0) ||
        (o->checkout_dir && validate_path(o->checkout_dir) < 0))
        return -EINVAL;
    if (o->https_token && *o->https_token && !is_clean(o->https_token, TOKEN_MAX))
        return -EINVAL;
    if (o->ssh_private_key && *o->ssh_private_key &&
        (strlen(o->ssh_private_key) > KEY_MAX || !o->ssh_key_dir ||
         validate_path(o->ssh_key_dir) < 0))
        return -EINVAL;
    if (o->n_known_hosts > KNOWN_MAX || (o->n_known_hosts && !o->known_hosts))
        return -EINVAL;
    for (size_t i = 0; i < o->n_known_hosts; i++) {
        const sw_git_known_host_t *k = &o->known_hosts[i];
        if (!is_clean(k->host, SW_GIT_HOST_MAX - 1) ||
            !is_clean(k->sha256, SW_GIT_FINGERPRINT_MAX - 1))
            return -EINVAL;
    }
    return 0;
}

bool sw_git_same_host(const char *a, const char *b)
{
    size_t alen, blen;
    const char *ha = url_host(a, &alen), *hb = url_host(b, &blen);

    return ha && hb && alen == blen && strncasecmp(ha, hb, alen) == 0;
}
