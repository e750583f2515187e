/* Reading deploy's logs back for whoever serves them: the last lines of an app's runtime
 * output, from the capped Redis list applog.h appends to. Which key holds them is deploy's
 * business; callers ask here instead of reading the list themselves. */
#ifndef SLIPWAY_LOGREAD_H
#define SLIPWAY_LOGREAD_H

#include <stddef.h>

#include "slipway/buf.h"
#include "slipway/redis.h"

/* status 0 and lines[0..n), oldest first, each one JSON object as the worker stored it (valid
 * only during the call); or a negative code (Redis's, or -EPROTO for an answer that is not a
 * list) and no lines. */
typedef void (*sw_logread_cb)(int status, const sw_iov_t *lines, size_t n, void *payload);

/* Reads the last `last` lines of app_id's runtime log. 0: cb is called exactly once, later, on
 * the loop. Otherwise cb is never called: -EAGAIN while the process does not yet know its
 * instance (starting up), or the code sw_redis_command returned. */
int sw_logread_app(sw_redis_t *redis, const char *app_id, unsigned last, sw_logread_cb cb,
                   void *payload);

#endif
