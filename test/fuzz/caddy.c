/* Fuzz target: the caddy driver's reading of the config Caddy's admin API answers
 * (src/proxy/caddy.c). Whatever Caddy said, the plan must converge: when it is one /load,
 * planning again against the config it loads asks for nothing more.
 *
 * Input: byte 0 picks the settings (bit 0: HTTPS listener, bit 1: an ACME issuer); the rest is
 * the body of GET /config/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/config.h"
#include "src/proxy/internal.h"

#define MAX_CONFIG (1u << 20)
#define DNS        "127.0.0.1:5353"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void config(sw_config_t *cfg, unsigned variant)
{
    char *env[8] = {"SLIPWAY_PROXY=caddy", "SLIPWAY_PROXY_HTTP=127.0.0.1:8080"};
    size_t n = 2;
    if (variant & 1)
        env[n++] = "SLIPWAY_PROXY_HTTPS=127.0.0.1:8443";
    if (variant & 2) {
        env[n++] = "SLIPWAY_ACME_CA=https://acme.test/directory";
        env[n++] = "SLIPWAY_ACME_EMAIL=ops@example.test";
    }
    sw_config_err_t err;
    int action;
    char *argv[] = {"slipwayd", NULL};
    if (sw_config_load(cfg, 1, argv, env, &action, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sw_config_t cfgs[4];
    static bool ready;
    if (!ready) {
        for (unsigned i = 0; i < 4; i++)
            config(&cfgs[i], i);
        ready = true;
    }
    if (size < 1 || size > MAX_CONFIG)
        return 0;
    const sw_config_t *cfg = &cfgs[data[0] & 3];
    sw_buf_t ops = SW_BUF_INIT;
    if (sw_caddy_plan(cfg, DNS, (const char *)data + 1, size - 1, &ops) == 0) {
        static const char load[] = "POST /load ";
        if (ops.len > sizeof(load) && memcmp(ops.base, load, sizeof(load) - 1) == 0) {
            const char *body = ops.base + sizeof(load) - 1;
            size_t blen = strcspn(body, "\n");
            if (body[blen] != '\n' || body[blen + 1] != '\0')
                abort(); /* a /load is the round's only request */
            sw_buf_t again = SW_BUF_INIT;
            if (sw_caddy_plan(cfg, DNS, body, blen, &again) != 0 || again.len != 0) {
                fprintf(stderr, "not converged:\n%s\n", again.base ? again.base : "(unreadable)");
                abort();
            }
            sw_buf_free(&again);
        }
    }
    sw_buf_free(&ops);
    return 0;
}
