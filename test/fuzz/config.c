/* Fuzz target: configuration from SLIPWAY_* variables and --flags (src/core/config.c), then
 * the backends' URL checks the daemon makes before it connects, and the host:port and Redis
 * URL parsers on each value alone.
 *
 * Input: lines. A line starting with "--" is a command-line argument; any other line is an
 * environment entry ("SLIPWAY_LISTEN=127.0.0.1:0"). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/backends.h"
#include "slipway/config.h"
#include "slipway/redis.h"

#define FUZZ_MAX_INPUT 16384
#define MAX_LINES      64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[MAX_LINES + 2] = {"slipwayd"}, *envp[MAX_LINES + 1] = {0};
    int argc = 1, envc = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (argc + envc >= MAX_LINES)
            break;
        if (strncmp(line, "--", 2) == 0)
            argv[argc++] = line;
        else
            envp[envc++] = line;

        char host[64];
        uint16_t port = 0;
        const char *value = strchr(line, '=');
        value = value ? value + 1 : line;
        if (sw_config_split_hostport(value, host, sizeof(host), &port) == 0 &&
            strlen(host) >= sizeof(host))
            abort();
        char err[256];
        if (sw_redis_url_check(value, err, sizeof(err)) != 0 && !err[0])
            abort(); /* a refusal says why */
    }

    sw_config_t cfg;
    sw_config_err_t err;
    int action;
    int r = sw_config_load(&cfg, argc, argv, envp, &action, &err);
    if (r != 0 && !err.msg[0])
        abort();
    if (r == 0 && (action == SW_CONFIG_RUN || action == SW_CONFIG_CHECK)) {
        if (!cfg.listen || !cfg.database_url || !cfg.public_url)
            abort();
        if (sw_backends_check(&cfg, &err) != 0 && !err.msg[0])
            abort();
    }
    sw_config_free(&cfg);
    free(text);
    return 0;
}
