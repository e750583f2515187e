/* Session and API tokens: a recognisable prefix and 32 random bytes; only a hash is stored. */
#include "slipway/crypto.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_RANDOM_BYTES 32
/* base64url without padding of 32 bytes: ceil(32 * 4 / 3). */
#define TOKEN_BODY_CHARS 43
#define TOKEN_HASH_BYTES 32

/* Alphabet index of a base64url character, or -1. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

void sw_token_new(const char *prefix, char out[SW_TOKEN_MAX])
{
    size_t plen = strlen(prefix);
    unsigned char raw[TOKEN_RANDOM_BYTES];

    /* Prefixes are compile-time constants; one that does not fit is a programming error. */
    if (plen + TOKEN_BODY_CHARS + 1 > SW_TOKEN_MAX)
        abort();
    memcpy(out, prefix, plen);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(out + plen, SW_TOKEN_MAX - plen, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
}

bool sw_token_valid(const char *prefix, const char *token, size_t len)
{
    size_t plen = strlen(prefix);

    if (!token || len != plen + TOKEN_BODY_CHARS || memcmp(token, prefix, plen) != 0)
        return false;
    for (size_t i = plen; i < len; i++) {
        int v = b64url_value((unsigned char)token[i]);
        if (v < 0)
            return false;
        /* 43 characters carry 258 bits; the last two are always zero in what we issue. */
        if (i == len - 1 && (v & 3) != 0)
            return false;
    }
    return true;
}

void sw_token_hash(const char *token, size_t len, char out[SW_TOKEN_HASH_HEX])
{
    unsigned char h[TOKEN_HASH_BYTES];

    crypto_generichash(h, sizeof(h), (const unsigned char *)token, len, NULL, 0);
    sodium_bin2hex(out, SW_TOKEN_HASH_HEX, h, sizeof(h));
}
