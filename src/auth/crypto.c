/* Library initialisation and the constant-time comparison every crypto module shares. */
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
