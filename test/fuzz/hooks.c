/* Fuzz target: a push hook's delivery, as each provider sends it: the signature check
 * (include/slipway/hooks.h, src/api/hooks.c) over the body, and the push payload read from it.
 *
 * Input: byte 0 picks the provider (mod 3); then the signature header's value, a NUL, the
 * secret, a NUL, and the body. Missing parts are empty. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/crypto.h"
#include "slipway/hooks.h"
#include "slipway/json.h"

#define MAX_BODY (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next NUL-terminated part of [*p, end), or the rest. */
static sw_iov_t part(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nul = memchr(*p, 0, (size_t)(end - *p));
    sw_iov_t v = {(char *)*p, (size_t)((nul ? nul : end) - *p)};
    *p = nul ? nul + 1 : end;
    return v;
}

static bool is_sha(const char *s)
{
    if (strlen(s) != 40)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_BODY)
        return 0;
    sw_hook_provider_t provider = (sw_hook_provider_t)(data[0] % SW_HOOK_PROVIDER_MAX);
    const uint8_t *p = data + 1, *end = data + size;
    sw_iov_t sig = part(&p, end), secret = part(&p, end);
    sw_iov_t body = {(char *)p, (size_t)(end - p)};

    bool ok = sw_hook_verify(provider, sig, body, secret);
    if (ok && (sig.len == 0 || secret.len == 0))
        abort(); /* an empty secret or signature never verifies */
    /* GitLab sends the secret itself: it verifies exactly when the two are equal. */
    if (provider == SW_HOOK_GITLAB &&
        ok != (sig.len && sig.len == secret.len && memcmp(sig.base, secret.base, sig.len) == 0))
        abort();
    if (!sw_hook_provider_name(provider))
        abort();
    /* The signature the provider would send for this secret and body always verifies. */
    if (secret.len) {
        unsigned char mac[SW_HMAC_SHA256_BYTES];
        char right[8 + 2 * SW_HMAC_SHA256_BYTES + 1] = "sha256=";
        sw_hmac_sha256(secret.base, secret.len, body.base, body.len, mac);
        for (size_t i = 0; i < sizeof(mac); i++)
            snprintf(right + 7 + 2 * i, 3, "%02x", mac[i]);
        sw_iov_t want = provider == SW_HOOK_GITHUB  ? sw_iov_from_cstr(right)
                        : provider == SW_HOOK_GITEA ? sw_iov_from_cstr(right + 7)
                                                    : secret;
        if (!sw_hook_verify(provider, want, body, secret))
            abort();
    }

    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *payload = sw_json_parse_object(body.base, body.len, &e);
    if (payload) {
        sw_hook_push_t push;
        const char *why = NULL;
        if (sw_hook_push_parse(payload, &push, &why) == 0) {
            if (!push.ref || (push.sha && !is_sha(push.sha)) || (push.deleted && push.sha))
                abort();
            if (push.branch && strncmp(push.ref, "refs/heads/", 11) != 0)
                abort();
        } else if (!why) {
            abort();
        }
        json_decref(payload);
    }
    sw_json_errors_free(&e);
    return 0;
}
