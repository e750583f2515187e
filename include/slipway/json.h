/* JSON helpers over jansson that turn decoding and shape errors into field-level details
 * for a VALIDATION_ERROR response. */
#ifndef SLIPWAY_JSON_H
#define SLIPWAY_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "slipway/buf.h"

/* Collects {"field", "message"} details; at most SW_JSON_MAX_DETAILS are kept. */
#define SW_JSON_MAX_DETAILS 32
typedef struct {
    json_t *details; /* array, owned */
} sw_json_errors_t;

void sw_json_errors_init(sw_json_errors_t *e);
void sw_json_errors_add(sw_json_errors_t *e, const char *field, const char *fmt, ...)
    SW_PRINTF(3, 4);
bool sw_json_errors_any(const sw_json_errors_t *e);
/* Returns the details array (caller owns it) and empties e. */
json_t *sw_json_errors_take(sw_json_errors_t *e);
void sw_json_errors_free(sw_json_errors_t *e);

/* Decodes a request body that must be a JSON object. On failure returns NULL and records
 * one detail: field "body", message naming line and column. Depth and size are bounded. */
json_t *sw_json_parse_object(const char *data, size_t len, sw_json_errors_t *e);

/* Field readers: each checks presence and type, records a detail on error and returns
 * -EINVAL; returns -ENOENT (no detail) when the field is optional and absent. */
int sw_json_get_string(json_t *obj, const char *field, bool required, size_t min_len,
                       size_t max_len, const char **out, sw_json_errors_t *e);
int sw_json_get_int(json_t *obj, const char *field, bool required, long long min, long long max,
                    long long *out, sw_json_errors_t *e);
int sw_json_get_bool(json_t *obj, const char *field, bool required, bool *out, sw_json_errors_t *e);
/* Records a detail for every key of obj not listed in allowed (NULL-terminated). */
void sw_json_reject_unknown(json_t *obj, const char *const *allowed, sw_json_errors_t *e);

/* Serialises compactly into b (appends). */
void sw_json_dump(sw_buf_t *b, const json_t *value);

#endif
