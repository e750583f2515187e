/* Library initialisation, the constant-time comparison every crypto module shares, and the one
 * HMAC-SHA256 (webhook signatures, checked and made). */
#include "slipway/crypto.h"

#include <errno.h>
#include <sodium.h>

int sw_crypto_init(void)
{
    /* 1 means another caller initialised it already, which is fine. */
    return sodium_init() < 0 ? -EIO : 0;
}

bool sw_crypto_equal(const void *a, const void *b, size_t len)
{
    if (len == 0)
        return true;
    return sodium_memcmp(a, b, len) == 0;
}

void sw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                    unsigned char out[SW_HMAC_SHA256_BYTES])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, key_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)(data ? data : ""), len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

void sw_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
                        char out[SW_HMAC_SHA256_HEX])
{
    unsigned char mac[SW_HMAC_SHA256_BYTES];
    sw_hmac_sha256(key, key_len, data, len, mac);
    sodium_bin2hex(out, SW_HMAC_SHA256_HEX, mac, sizeof(mac));
    sodium_memzero(mac, sizeof(mac));
}
