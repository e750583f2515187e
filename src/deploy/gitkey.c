/* Keys of ssh fetches: the apps' deploy keys (ed25519, made here in OpenSSH's formats), the
 * files a fetch writes them to when libgit2 cannot take them from memory, and fingerprints. */
#include "slipway/git.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slipway/buf.h"
#include "slipway/common.h"

#define ED25519_NAME "ssh-ed25519"
#define KEY_BEGIN    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
#define KEY_END      "-----END OPENSSH PRIVATE KEY-----\n"
#define KEY_MAGIC    "openssh-key-v1"
#define KEY_COLUMNS  70

void sw_git_fingerprint_encode(const unsigned char hash[32], char out[SW_GIT_FINGERPRINT_MAX])
{
    memcpy(out, "SHA256:", 7);
    sodium_bin2base64(out + 7, SW_GIT_FINGERPRINT_MAX - 7, hash, 32,
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

void sw_git_fingerprint(const void *blob, size_t len, char out[SW_GIT_FINGERPRINT_MAX])
{
    unsigned char hash[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(hash, blob, len);
    sw_git_fingerprint_encode(hash, out);
}

/* The key type named at the start of a key blob (an SSH string), into out. */
void sw_git_key_type(const void *blob, size_t len, char *out, size_t size)
{
    const unsigned char *b = blob;
    uint32_t n;

    out[0] = '\0';
    if (len < 4)
        return;
    n = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    if (n == 0 || n >= size || n > len - 4)
        return;
    for (uint32_t i = 0; i < n; i++) {
        if (!isalnum(b[4 + i]) && !strchr("-@.", b[4 + i]))
            return;
    }
    memcpy(out, b + 4, n);
    out[n] = '\0';
}

/* ---- key files, for a libgit2 that cannot take a key from memory ---- */

int sw_git_key_file_write(const char *dir, const char *key, char *path, size_t size)
{
    int fd, r;

    if ((size_t)snprintf(path, size, "%s/" SW_GIT_KEY_PREFIX "%d-XXXXXX", dir, (int)getpid()) >=
        size) {
        path[0] = '\0';
        return -ENAMETOOLONG;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        path[0] = '\0';
        return -errno;
    }
    r = fchmod(fd, 0600) < 0 ? -errno : sw_write_all(fd, key, strlen(key));
    close(fd);
    if (r < 0) {
        (void)unlink(path);
        path[0] = '\0';
    }
    return r;
}

/* ---- deploy keys: ed25519 in OpenSSH's formats ---- */

static void put_u32(sw_buf_t *b, uint32_t v)
{
    char be[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};

    sw_buf_append(b, be, sizeof(be));
}

/* An SSH wire string: length, then the bytes. */
static void put_string(sw_buf_t *b, const void *p, size_t len)
{
    put_u32(b, (uint32_t)len);
    sw_buf_append(b, p, len);
}

static void put_cstring(sw_buf_t *b, const char *s)
{
    put_string(b, s, strlen(s));
}

/* Frees a buffer that held key material. */
static void buf_wipe(sw_buf_t *b)
{
    if (b->base)
        sodium_memzero(b->base, b->cap);
    sw_buf_free(b);
}

static void append_base64(sw_buf_t *out, const void *p, size_t len)
{
    size_t size = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);

    sw_buf_reserve(out, size);
    sodium_bin2base64(out->base + out->len, size, p, len, sodium_base64_VARIANT_ORIGINAL);
    out->len += size - 1;
}

static bool comment_ok(const char *s)
{
    size_t n = 0;

    for (; *s; s++, n++) {
        if (n >= 255 || (unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    }
    return n > 0;
}

/* openssh-key-v1 (PROTOCOL.key in OpenSSH): unencrypted, one key, the private section padded
 * to the cipher block size of "none" (8) with 1, 2, 3, ... */
static void private_key_text(const unsigned char pk[crypto_sign_PUBLICKEYBYTES],
                             const unsigned char sk[crypto_sign_SECRETKEYBYTES],
                             const sw_buf_t *pub_blob, const char *comment, sw_buf_t *out)
{
    sw_buf_t raw = SW_BUF_INIT, section = SW_BUF_INIT, b64 = SW_BUF_INIT;
    uint32_t check = randombytes_random();

    /* Room up front: a buffer that grew would leave copies of the key in freed memory. */
    sw_buf_reserve(&section, 512);
    sw_buf_reserve(&raw, 1024);
    sw_buf_reserve(&b64, 2048);
    sw_buf_reserve(out, 2048);
    put_u32(&section, check);
    put_u32(&section, check);
    put_cstring(&section, ED25519_NAME);
    put_string(&section, pk, crypto_sign_PUBLICKEYBYTES);
    put_string(&section, sk, crypto_sign_SECRETKEYBYTES);
    put_cstring(&section, comment);
    for (char pad = 1; section.len % 8 != 0; pad++)
        sw_buf_append_char(&section, pad);

    sw_buf_append(&raw, KEY_MAGIC, sizeof(KEY_MAGIC)); /* with its NUL */
    put_cstring(&raw, "none");                         /* cipher */
    put_cstring(&raw, "none");                         /* kdf */
    put_cstring(&raw, "");                             /* kdf options */
    put_u32(&raw, 1);
    put_string(&raw, pub_blob->base, pub_blob->len);
    put_string(&raw, section.base, section.len);

    append_base64(&b64, raw.base, raw.len);
    sw_buf_append_cstr(out, KEY_BEGIN);
    for (size_t i = 0; i < b64.len; i += KEY_COLUMNS) {
        sw_buf_append(out, b64.base + i, SW_MIN((size_t)KEY_COLUMNS, b64.len - i));
        sw_buf_append_char(out, '\n');
    }
    sw_buf_append_cstr(out, KEY_END);
    buf_wipe(&b64);
    buf_wipe(&section);
    buf_wipe(&raw);
}

/* The pid in "<SW_GIT_KEY_PREFIX><pid>-XXXXXX", or 0 when name is not such a key file. */
static pid_t key_file_pid(const char *name)
{
    size_t n = strlen(SW_GIT_KEY_PREFIX);
    char *end;
    long pid;

    if (strncmp(name, SW_GIT_KEY_PREFIX, n) != 0 || !isdigit((unsigned char)name[n]))
        return 0;
    pid = strtol(name + n, &end, 10);
    if (pid <= 0 || pid > INT_MAX || *end != '-' || strlen(end + 1) != 6)
        return 0;
    return (pid_t)pid;
}

int sw_git_key_files_remove(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;

    if (!d)
        return -errno;
    for (struct dirent *e; (e = readdir(d));) {
        pid_t pid = key_file_pid(e->d_name);
        /* Another live process's key may be in a fetch right now (--http-workers share the
         * data directory); a pid of ours is from an earlier process, as this one wrote none. */
        bool dead = pid > 0 && (pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH));
        if (dead && unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int sw_git_deploy_key_new(sw_git_deploy_key_t *out, const char *comment)
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    sw_buf_t blob = SW_BUF_INIT, pub = SW_BUF_INIT, priv = SW_BUF_INIT;

    if (!out || !comment || !comment_ok(comment))
        return -EINVAL;
    crypto_sign_keypair(pk, sk);
    put_cstring(&blob, ED25519_NAME);
    put_string(&blob, pk, sizeof(pk));

    sw_buf_append_cstr(&pub, ED25519_NAME " ");
    append_base64(&pub, blob.base, blob.len);
    sw_buf_printf(&pub, " %s", comment);
    private_key_text(pk, sk, &blob, comment, &priv);

    sw_git_fingerprint(blob.base, blob.len, out->fingerprint);
    out->public_key = sw_buf_steal(&pub);
    out->private_key = sw_buf_steal(&priv);
    sodium_memzero(sk, sizeof(sk));
    sw_buf_free(&blob);
    return 0;
}

void sw_git_deploy_key_clear(sw_git_deploy_key_t *key)
{
    if (!key)
        return;
    if (key->private_key)
        sodium_memzero(key->private_key, strlen(key->private_key));
    free(key->private_key);
    free(key->public_key);
    key->private_key = NULL;
    key->public_key = NULL;
}

size_t sw_git_known_hosts_split(char *text, sw_git_known_host_t **out)
{
    sw_git_known_host_t *known = NULL;
    size_t n = 0, cap = 0;

    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            known = sw_realloc(known, cap * sizeof(*known));
        }
        known[n++] = (sw_git_known_host_t){.host = line, .sha256 = sp + 1};
    }
    *out = known;
    return n;
}
