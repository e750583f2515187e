/* The backends' addresses in the configuration, checked by the libraries that will use them
 * (libpq for the database URL, the Redis client's URL parser), so that config.c stays free of
 * both. */
#ifndef SLIPWAY_BACKENDS_H
#define SLIPWAY_BACKENDS_H

#include "slipway/config.h"

/* Checks cfg->database_url and cfg->redis_url without connecting. Returns 0, or -EINVAL with a
 * message naming the variable (SLIPWAY_DATABASE_URL, SLIPWAY_REDIS_URL) in err; the message
 * never repeats a password. Run it after sw_config_load for every action that validates. */
int sw_backends_check(const sw_config_t *cfg, sw_config_err_t *err);

#endif
