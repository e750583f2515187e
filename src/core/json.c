/* JSON helpers: decoding and shape errors become {"field","message"} details. */
#include "slipway/json.h"
#include "slipway/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sw_json_errors_init(sw_json_errors_t *e)
{
    e->details = NULL;
}

void sw_json_errors_add(sw_json_errors_t *e, const char *field, const char *fmt, ...)
{
    char msg[256], name[256];
    va_list ap;
    if (!e->details)
        e->details = json_array();
    if (json_array_size(e->details) >= SW_JSON_MAX_DETAILS)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* A message may quote the request's own bytes (jansson's "invalid token near ...") and
     * either may be cut mid-character: jansson drops a string that is not UTF-8, and with it
     * the only reason the client would get. */
    if (n < 0)
        n = 0;
    sw_utf8_copy(msg, sizeof(msg), msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    sw_utf8_copy(name, sizeof(name), field, strlen(field));
    json_array_append_new(e->details, json_pack("{s:s, s:s}", "field", name, "message", msg));
}

bool sw_json_errors_any(const sw_json_errors_t *e)
{
    return e->details && json_array_size(e->details) > 0;
}

json_t *sw_json_errors_take(sw_json_errors_t *e)
{
    json_t *d = e->details ? e->details : json_array();
    e->details = NULL;
    return d;
}

void sw_json_errors_free(sw_json_errors_t *e)
{
    json_decref(e->details);
    e->details = NULL;
}

json_t *sw_json_parse_object(const char *data, size_t len, sw_json_errors_t *e)
{
    json_error_t jerr;
    if (len == 0) {
        sw_json_errors_add(e, "body", "a JSON object is required");
        return NULL;
    }
    /* Duplicate keys are refused: two values for one field is a request to be ambiguous. */
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        sw_json_errors_add(e, "body", "invalid JSON at line %d, column %d: %s", jerr.line,
                           jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        sw_json_errors_add(e, "body", "must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

static json_t *field_get(json_t *obj, const char *field, bool required, sw_json_errors_t *e, int *r)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (required) {
            sw_json_errors_add(e, field, "is required");
            *r = -EINVAL;
        } else {
            *r = -ENOENT;
        }
        return NULL;
    }
    *r = 0;
    return v;
}

int sw_json_get_string(json_t *obj, const char *field, bool required, size_t min_len,
                       size_t max_len, const char **out, sw_json_errors_t *e)
{
    int r;
    json_t *v = field_get(obj, field, required, e, &r);
    if (!v)
        return r;
    if (!json_is_string(v)) {
        sw_json_errors_add(e, field, "must be a string");
        return -EINVAL;
    }
    size_t len = json_string_length(v);
    if (memchr(json_string_value(v), '\0', len)) {
        sw_json_errors_add(e, field, "must not contain NUL characters");
        return -EINVAL;
    }
    if (len < min_len) {
        if (min_len == 1)
            sw_json_errors_add(e, field, "must not be empty");
        else
            sw_json_errors_add(e, field, "must be at least %zu characters", min_len);
        return -EINVAL;
    }
    if (len > max_len) {
        sw_json_errors_add(e, field, "must be at most %zu characters", max_len);
        return -EINVAL;
    }
    *out = json_string_value(v);
    return 0;
}

int sw_json_get_int(json_t *obj, const char *field, bool required, long long min, long long max,
                    long long *out, sw_json_errors_t *e)
{
    int r;
    json_t *v = field_get(obj, field, required, e, &r);
    if (!v)
        return r;
    if (!json_is_integer(v)) {
        sw_json_errors_add(e, field, "must be an integer");
        return -EINVAL;
    }
    long long n = json_integer_value(v);
    if (n < min || n > max) {
        sw_json_errors_add(e, field, "must be between %lld and %lld", min, max);
        return -EINVAL;
    }
    *out = n;
    return 0;
}

int sw_json_get_bool(json_t *obj, const char *field, bool required, bool *out, sw_json_errors_t *e)
{
    int r;
    json_t *v = field_get(obj, field, required, e, &r);
    if (!v)
        return r;
    if (!json_is_boolean(v)) {
        sw_json_errors_add(e, field, "must be true or false");
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

void sw_json_reject_unknown(json_t *obj, const char *const *allowed, sw_json_errors_t *e)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        bool known = false;
        for (const char *const *a = allowed; *a; a++) {
            if (strcmp(*a, key) == 0) {
                known = true;
                break;
            }
        }
        if (!known) {
            char name[65];
            snprintf(name, sizeof(name), "%s", key); /* bound what a client echoes back */
            sw_json_errors_add(e, name, "is not a known field");
        }
    }
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    sw_buf_append(data, buffer, size);
    return 0;
}

void sw_json_dump(sw_buf_t *b, const json_t *value)
{
    json_dump_callback(value, dump_cb, b, JSON_COMPACT | JSON_REAL_PRECISION(10));
}
