/* The configuration's backend addresses, checked with the libraries that will use them. */
#include "slipway/backends.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "slipway/buf.h"
#include "slipway/redis.h"

static int check_port_list(const char *ports)
{
    /* libpq accepts any text as a port until it connects; check it here instead. */
    const char *p = ports;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        unsigned long long v;
        if (len > 0 && (sw_iov_to_u64((sw_iov_t){(char *)p, len}, &v) != 0 || v == 0 || v > 65535))
            return -EINVAL;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

static int check_database_url(const char *url, sw_config_err_t *err)
{
    char *perr = NULL;
    int r = 0;
    if (!*url) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_DATABASE_URL: must be set");
        return -EINVAL;
    }
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (!opts) {
        /* libpq's message names the problem without echoing the password. */
        size_t n = perr ? strcspn(perr, "\n") : 0;
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_DATABASE_URL: %.*s", (int)n,
                 perr ? perr : "out of memory");
        PQfreemem(perr);
        return -EINVAL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "port") == 0 && o->val && check_port_list(o->val) != 0) {
            snprintf(err->msg, sizeof(err->msg),
                     "SLIPWAY_DATABASE_URL: invalid port \"%.32s\" (expected 1-65535)", o->val);
            r = -EINVAL;
        }
    }
    PQconninfoFree(opts);
    return r;
}

int sw_backends_check(const sw_config_t *cfg, sw_config_err_t *err)
{
    char rerr[256];
    if (check_database_url(cfg->database_url, err) != 0)
        return -EINVAL;
    if (sw_redis_url_check(cfg->redis_url, rerr, sizeof(rerr)) != 0) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_REDIS_URL: %s", rerr);
        return -EINVAL;
    }
    return 0;
}
