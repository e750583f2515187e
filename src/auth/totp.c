/* One-time codes (RFC 6238 over RFC 4226), the base32 that carries their secrets, a user's
 * sealed secret and the recovery codes that stand in for it. */
#include "slipway/crypto.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define TOTP_DIGITS 6
#define TOTP_MOD    1000000u
/* A peer-supplied secret in base32 is never this long; refuse before decoding. */
#define BASE32_TEXT_MAX 1024
/* More than this many steps either side would let a guessed code live for minutes. */
#define TOTP_WINDOW_MAX 10u

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

void sw_base32_encode(const unsigned char *data, size_t len, sw_buf_t *out)
{
    uint32_t acc = 0;
    unsigned bits = 0;

    sw_buf_reserve(out, (len + 4) / 5 * 8);
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | data[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out->base[out->len++] = b32_alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0)
        out->base[out->len++] = b32_alphabet[(acc << (5 - bits)) & 31];
    out->base[out->len] = '\0';
}

static int b32_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

int sw_base32_decode(const char *text, size_t len, sw_buf_t *out)
{
    size_t start = out->len;
    uint32_t acc = 0;
    unsigned bits = 0;
    int r = -EINVAL;

    if (len > BASE32_TEXT_MAX)
        return -EINVAL;
    sw_buf_reserve(out, len * 5 / 8 + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '=')
            continue;
        int v = b32_value(c);
        if (v < 0)
            goto out;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out->base[out->len++] = (char)((acc >> bits) & 0xff);
        }
    }
    /* Five or more bits left over is a character that carries no byte: a truncated string. */
    if (bits >= 5)
        goto out;
    r = 0;
out:
    if (r < 0)
        out->len = start;
    out->base[out->len] = '\0';
    return r;
}

void sw_totp_code(const unsigned char *secret, size_t len, uint64_t counter, char out[7])
{
    static const unsigned char empty[1];
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    uint32_t bin;
    unsigned off;

    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    /* OpenSSL refuses a NULL key, so an empty secret needs a real pointer. */
    if (len > INT_MAX ||
        !HMAC(EVP_sha1(), len ? secret : empty, (int)len, msg, sizeof(msg), mac, &mac_len) ||
        mac_len < 20) {
        out[0] = '\0'; /* matches no code */
        return;
    }
    /* RFC 4226 dynamic truncation: the low nibble of the last byte picks four bytes. */
    off = mac[mac_len - 1] & 0x0f;
    bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
          ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    bin %= TOTP_MOD;
    for (int i = TOTP_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + bin % 10);
        bin /= 10;
    }
    out[TOTP_DIGITS] = '\0';
    sodium_memzero(mac, sizeof(mac));
}

uint64_t sw_totp_verify(const unsigned char *secret, size_t len, const char *code,
                        uint64_t unix_time, unsigned window, uint64_t last_used)
{
    uint64_t now = unix_time / SW_TOTP_STEP, found = 0;
    char want[TOTP_DIGITS + 1];

    if (!code || strnlen(code, TOTP_DIGITS + 1) != TOTP_DIGITS)
        return 0;
    for (int i = 0; i < TOTP_DIGITS; i++)
        if (code[i] < '0' || code[i] > '9')
            return 0;
    window = SW_MIN(window, TOTP_WINDOW_MAX);

    /* Every candidate is computed and compared, so timing does not say which step matched;
     * the earliest acceptable one wins so later codes stay usable. */
    for (uint64_t c = now > window ? now - window : 0; c <= now + window; c++) {
        if (c == 0 || c <= last_used)
            continue;
        sw_totp_code(secret, len, c, want);
        if (sodium_memcmp(want, code, TOTP_DIGITS) == 0 && found == 0)
            found = c;
    }
    sodium_memzero(want, sizeof(want));
    return found;
}

static void append_pct(sw_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            sw_buf_append_char(out, (char)c);
        } else {
            sw_buf_append_char(out, '%');
            sw_buf_append_char(out, hex[c >> 4]);
            sw_buf_append_char(out, hex[c & 15]);
        }
    }
}

void sw_totp_url(const char *issuer, const char *account, const char *secret_b32, sw_buf_t *out)
{
    sw_buf_append_cstr(out, "otpauth://totp/");
    append_pct(out, issuer);
    sw_buf_append_char(out, ':');
    append_pct(out, account);
    sw_buf_append_cstr(out, "?secret=");
    append_pct(out, secret_b32);
    sw_buf_append_cstr(out, "&issuer=");
    append_pct(out, issuer);
    sw_buf_printf(out, "&algorithm=SHA1&digits=%d&period=%d", TOTP_DIGITS, SW_TOTP_STEP);
}

/* ---- a user's secret, sealed; recovery codes ---- */

static void totp_ad(const char *user_id, char ad[64])
{
    snprintf(ad, 64, "totp:%s", user_id);
}

void sw_totp_seal(const sw_secretbox_t *box, const char *user_id, const unsigned char *secret,
                  size_t len, sw_buf_t *out)
{
    char ad[64];
    totp_ad(user_id, ad);
    sw_secretbox_seal(box, secret, len, ad, out);
}

uint64_t sw_totp_check_sealed(const sw_secretbox_t *box, const char *user_id, const char *sealed,
                              long long last, const char *code, uint64_t unix_time)
{
    sw_buf_t secret = SW_BUF_INIT;
    char ad[64];
    uint64_t counter = 0;
    totp_ad(user_id, ad);
    if (sealed && sw_secretbox_open(box, sealed, strlen(sealed), ad, &secret) == 0)
        counter = sw_totp_verify((const unsigned char *)secret.base, secret.len, code, unix_time,
                                 SW_TOTP_WINDOW, last > 0 ? (uint64_t)last : 0);
    if (secret.base)
        sodium_memzero(secret.base, secret.cap);
    sw_buf_free(&secret);
    return counter;
}

void sw_totp_recovery_hash(const char *code, char out[SW_TOKEN_HASH_HEX])
{
    char norm[64];
    size_t n = 0;
    for (const char *p = code; *p && n + 1 < sizeof(norm); p++) {
        if (*p == '-' || *p == ' ')
            continue;
        norm[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    }
    norm[n] = '\0';
    sw_token_hash(norm, n, out);
    sodium_memzero(norm, sizeof(norm));
}
