/* JSON-lines logging: one object per line, written with a single write(2) so lines from
 * several worker processes sharing stderr never interleave. */
#include "slipway/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "slipway/buf.h"

static sw_log_level_t min_level = SW_LOG_INFO;
static char *process_key, *process_value;

static const char *const level_names[SW_LOG_MAX] = {"debug", "info", "warn", "error"};

int sw_log_level_parse(const char *s, sw_log_level_t *out)
{
    for (int i = 0; i < SW_LOG_MAX; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (sw_log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

void sw_log_set_level(sw_log_level_t level)
{
    min_level = level;
}

void sw_log_set_process_field(const char *key, const char *value)
{
    free(process_key);
    free(process_value);
    process_key = process_value = NULL;
    if (key && value) {
        process_key = sw_strdup(key);
        process_value = sw_strdup(value);
    }
}

int sw_log_enabled(sw_log_level_t level)
{
    return level >= min_level;
}

static void field(sw_buf_t *b, const char *key, const char *value)
{
    sw_buf_append_cstr(b, ",\"");
    sw_buf_append_json_str(b, key, strlen(key));
    sw_buf_append_cstr(b, "\":\"");
    sw_buf_append_json_str(b, value, strlen(value));
    sw_buf_append_char(b, '"');
}

static void begin(sw_buf_t *b, sw_log_level_t level, const char *msg, size_t msg_len)
{
    char ts[40];
    sw_time_rfc3339(ts, sizeof(ts), sw_wall_ms());
    sw_buf_printf(b, "{\"level\":\"%s\",\"time\":\"%s\",\"msg\":\"", level_names[level], ts);
    sw_buf_append_json_str(b, msg, msg_len);
    sw_buf_append_char(b, '"');
    if (process_key)
        field(b, process_key, process_value);
}

static void finish(sw_buf_t *b, const char *request_id)
{
    if (request_id && *request_id)
        field(b, "request_id", request_id);
    sw_buf_append_cstr(b, "}\n");
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(STDERR_FILENO, b->base + off, b->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)n;
    }
    sw_buf_free(b);
}

void sw_log(sw_log_level_t level, const char *request_id, const char *fmt, ...)
{
    if (level < min_level || level >= SW_LOG_MAX)
        return;
    sw_buf_t msg = SW_BUF_INIT, line = SW_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    sw_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    begin(&line, level, msg.base, msg.len);
    sw_buf_free(&msg);
    finish(&line, request_id);
}

void sw_log_kv(sw_log_level_t level, const char *request_id, const char *msg, ...)
{
    if (level < min_level || level >= SW_LOG_MAX)
        return;
    sw_buf_t line = SW_BUF_INIT;
    begin(&line, level, msg, strlen(msg));
    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (!key)
            break;
        const char *value = va_arg(ap, const char *);
        field(&line, key, value ? value : "");
    }
    va_end(ap);
    finish(&line, request_id);
}
