/* JSON-lines logging on stderr: one object per line with level, time, msg, request_id. */
#ifndef SLIPWAY_LOG_H
#define SLIPWAY_LOG_H

#include "slipway/common.h"

typedef enum { SW_LOG_DEBUG, SW_LOG_INFO, SW_LOG_WARN, SW_LOG_ERROR, SW_LOG_MAX } sw_log_level_t;

/* Parses "debug", "info", "warn", "error"; -EINVAL otherwise. */
int sw_log_level_parse(const char *s, sw_log_level_t *out);
void sw_log_set_level(sw_log_level_t level);
/* Adds a constant field to every line (e.g. the worker index); NULL value removes it. */
void sw_log_set_process_field(const char *key, const char *value);
int sw_log_enabled(sw_log_level_t level);

/* Logs a formatted message. request_id may be NULL. */
void sw_log(sw_log_level_t level, const char *request_id, const char *fmt, ...) SW_PRINTF(3, 4);
/* Logs msg with extra string fields given as NULL-terminated key, value pairs. */
void sw_log_kv(sw_log_level_t level, const char *request_id, const char *msg, ...)
    __attribute__((sentinel));

#define sw_debug(...) sw_log(SW_LOG_DEBUG, NULL, __VA_ARGS__)
#define sw_info(...)  sw_log(SW_LOG_INFO, NULL, __VA_ARGS__)
#define sw_warn(...)  sw_log(SW_LOG_WARN, NULL, __VA_ARGS__)
#define sw_error(...) sw_log(SW_LOG_ERROR, NULL, __VA_ARGS__)

#endif
