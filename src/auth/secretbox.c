/* Secrets at rest: XChaCha20-Poly1305 under a master key from the environment or a key file. */
#include "slipway/crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEALED_PREFIX     "v1."
#define SEALED_PREFIX_LEN (sizeof(SEALED_PREFIX) - 1)
#define NONCE_BYTES       crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES         crypto_aead_xchacha20poly1305_ietf_ABYTES
/* Secrets are env values and keys; anything bigger is not ours, so refuse before decoding. */
#define SEALED_MAX (1024u * 1024u)
#define KEY_HEX    (SW_MASTER_KEY_BYTES * 2)
#define KEY_FILE   "master.key"

_Static_assert(SW_MASTER_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
               "master key size must match the AEAD key size");

static void set_err(char *err, size_t err_size, const char *fmt, ...) SW_PRINTF(3, 4);

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;

    if (!err || err_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static size_t ad_len(const char *ad)
{
    return ad ? strlen(ad) : 0;
}

void sw_secretbox_seal(const sw_secretbox_t *box, const void *plain, size_t len, const char *ad,
                       sw_buf_t *out)
{
    size_t raw_len = NONCE_BYTES + len + TAG_BYTES;
    unsigned char *raw;
    size_t b64_size;

    /* The encoded size below must not wrap; no caller has anything near this. */
    if (len > SIZE_MAX / 2 - NONCE_BYTES - TAG_BYTES)
        sw_oom();
    raw = sw_malloc(raw_len);
    randombytes_buf(raw, NONCE_BYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(raw + NONCE_BYTES, NULL, plain, len,
                                               (const unsigned char *)ad, ad_len(ad), NULL, raw,
                                               box->key);

    b64_size = sodium_base64_ENCODED_LEN(raw_len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sw_buf_reserve(out, SEALED_PREFIX_LEN + b64_size);
    memcpy(out->base + out->len, SEALED_PREFIX, SEALED_PREFIX_LEN);
    out->len += SEALED_PREFIX_LEN;
    /* b64_size counts the NUL, which lands on the buffer's terminator slot. */
    sodium_bin2base64(out->base + out->len, b64_size, raw, raw_len,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out->len += b64_size - 1;
    free(raw);
}

int sw_secretbox_open(const sw_secretbox_t *box, const char *sealed, size_t len, const char *ad,
                      sw_buf_t *out)
{
    unsigned char *raw = NULL;
    size_t raw_len = 0, plain_len;
    int r;

    if (!sealed || len < SEALED_PREFIX_LEN || len > SEALED_MAX ||
        memcmp(sealed, SEALED_PREFIX, SEALED_PREFIX_LEN) != 0)
        return -EINVAL;
    sealed += SEALED_PREFIX_LEN;
    len -= SEALED_PREFIX_LEN;

    raw = sw_malloc(len / 4 * 3 + 3);
    if (sodium_base642bin(raw, len / 4 * 3 + 3, sealed, len, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        raw_len < NONCE_BYTES + TAG_BYTES) {
        r = -EINVAL;
        goto out;
    }

    plain_len = raw_len - NONCE_BYTES - TAG_BYTES;
    sw_buf_reserve(out, plain_len);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            (unsigned char *)out->base + out->len, NULL, NULL, raw + NONCE_BYTES,
            raw_len - NONCE_BYTES, (const unsigned char *)ad, ad_len(ad), raw, box->key) != 0) {
        out->base[out->len] = '\0';
        r = -EBADMSG;
        goto out;
    }
    out->len += plain_len;
    out->base[out->len] = '\0';
    r = 0;
out:
    free(raw);
    return r;
}

void sw_secretbox_clear(sw_secretbox_t *box)
{
    sodium_memzero(box->key, sizeof(box->key));
}

/* Exactly 64 hex characters into key; key is untouched on failure. */
static int parse_hex_key(const char *hex, size_t len, unsigned char key[SW_MASTER_KEY_BYTES])
{
    unsigned char tmp[SW_MASTER_KEY_BYTES];
    size_t bin_len = 0;
    int r = -EINVAL;

    if (len != KEY_HEX)
        goto out;
    if (sodium_hex2bin(tmp, sizeof(tmp), hex, len, NULL, &bin_len, NULL) != 0 ||
        bin_len != sizeof(tmp))
        goto out;
    memcpy(key, tmp, sizeof(tmp));
    r = 0;
out:
    sodium_memzero(tmp, sizeof(tmp));
    return r;
}

/* mkdir -p with mode 0700 for the components it creates. */
static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        if (path[i - 1] == '/')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int read_key_file(const char *path, sw_secretbox_t *box, char *err, size_t err_size)
{
    /* 64 hex characters, an optional newline, and one byte more to notice anything longer. */
    char text[KEY_HEX + 2];
    size_t len = 0;
    struct stat st;
    int fd, r;

    /* O_NONBLOCK so a FIFO planted at the path cannot hang startup; no effect on files. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        r = -errno;
        if (r != -ENOENT)
            set_err(err, err_size, "cannot open master key file %s: %s", path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) != 0) {
        r = -errno;
        set_err(err, err_size, "cannot stat master key file %s: %s", path, strerror(-r));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        set_err(err, err_size,
                "master key file %s must be a regular file with mode 0600 (no group or other "
                "access)",
                path);
        r = -EPERM;
        goto out;
    }
    while (len < sizeof(text)) {
        ssize_t n = read(fd, text + len, sizeof(text) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            set_err(err, err_size, "cannot read master key file %s: %s", path, strerror(-r));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len == KEY_HEX + 1 && text[KEY_HEX] == '\n')
        len = KEY_HEX;
    r = parse_hex_key(text, len, box->key);
    if (r < 0)
        set_err(err, err_size, "master key file %s must hold 64 hexadecimal characters", path);
out:
    sodium_memzero(text, sizeof(text));
    close(fd);
    return r;
}

/* Writes a new random key to a private temporary file and links it into place, so another
 * process sees either no key file or a complete one. -EEXIST when another process won. */
static int create_key_file(const char *dir, const char *path, sw_secretbox_t *box, char *err,
                           size_t err_size)
{
    unsigned char key[SW_MASTER_KEY_BYTES];
    char text[KEY_HEX + 2];
    char tmp[PATH_MAX];
    unsigned char suffix[8];
    char suffix_hex[sizeof(suffix) * 2 + 1];
    int fd = -1, dfd, r;

    randombytes_buf(suffix, sizeof(suffix));
    sodium_bin2hex(suffix_hex, sizeof(suffix_hex), suffix, sizeof(suffix));
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.%s.tmp", dir, KEY_FILE, suffix_hex) >=
        sizeof(tmp)) {
        set_err(err, err_size, "data directory path %s is too long", dir);
        return -ENAMETOOLONG;
    }

    randombytes_buf(key, sizeof(key));
    sodium_bin2hex(text, sizeof(text), key, sizeof(key));
    text[KEY_HEX] = '\n';

    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        r = -errno;
        set_err(err, err_size, "cannot create %s: %s", tmp, strerror(-r));
        goto out;
    }
    /* The umask can only take bits away, but be explicit about what the file must be. */
    r = fchmod(fd, 0600) == 0 ? 0 : -errno;
    if (r == 0)
        r = sw_write_all(fd, text, KEY_HEX + 1);
    if (r == 0 && fsync(fd) != 0)
        r = -errno;
    if (r < 0) {
        set_err(err, err_size, "cannot write %s: %s", tmp, strerror(-r));
        goto out;
    }
    if (link(tmp, path) != 0) {
        r = -errno;
        if (r != -EEXIST)
            set_err(err, err_size, "cannot create master key file %s: %s", path, strerror(-r));
        goto out;
    }
    /* Make the new directory entry durable too: a key lost in a crash loses every secret. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    memcpy(box->key, key, sizeof(key));
    r = 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    sodium_memzero(key, sizeof(key));
    sodium_memzero(text, sizeof(text));
    return r;
}

int sw_secretbox_load(sw_secretbox_t *box, const char *hex, const char *data_dir, char *err,
                      size_t err_size)
{
    char path[PATH_MAX];
    int r;

    if (hex && hex[0] != '\0') {
        r = parse_hex_key(hex, strlen(hex), box->key);
        if (r < 0)
            set_err(err, err_size, "master key must be 64 hexadecimal characters");
        return r;
    }
    if (!data_dir || data_dir[0] == '\0') {
        set_err(err, err_size, "no master key: set one or configure a data directory");
        return -EINVAL;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", data_dir, KEY_FILE) >= sizeof(path)) {
        set_err(err, err_size, "data directory path %s is too long", data_dir);
        return -ENAMETOOLONG;
    }
    r = mkdir_p(data_dir);
    if (r < 0) {
        set_err(err, err_size, "cannot create data directory %s: %s", data_dir, strerror(-r));
        return r;
    }

    r = read_key_file(path, box, err, err_size);
    if (r != -ENOENT)
        return r;
    r = create_key_file(data_dir, path, box, err, err_size);
    if (r != -EEXIST)
        return r;
    /* Another process created it between our read and our link: use theirs. */
    return read_key_file(path, box, err, err_size);
}
