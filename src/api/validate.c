/* Request validation derived from the route table: a body may hold only the fields its
 * route's request schema lists, and a list takes only the query filters its route names, so
 * what openapi.json publishes and what is checked cannot drift apart. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "slipway/common.h"
#include "slipway/router.h"

#include "internal.h"

/* More properties than any request schema has; the names are gathered on the stack. */
#define FIELDS_MAX 64

/* name -> parsed schema, parsed once per process and kept for its life. */
static json_t *parsed;
static pthread_once_t parsed_once = PTHREAD_ONCE_INIT;

static void parse_schemas(void)
{
    parsed = json_object();
    for (size_t i = 0; i < sw_api_schemas_count; i++) {
        json_t *s = json_loads(sw_api_schemas[i].schema, 0, NULL);
        if (s)
            json_object_set_new(parsed, sw_api_schemas[i].name, s);
    }
}

/* An array's items, or a oneOf's object alternative: where an object's fields are named. */
static json_t *object_schema(json_t *s)
{
    json_t *items = json_object_get(s, "items");
    if (items)
        s = items;
    json_t *one_of = json_object_get(s, "oneOf");
    size_t i;
    json_t *alt;
    json_array_foreach(one_of, i, alt)
    {
        if (json_object_get(alt, "properties"))
            return alt;
    }
    return s;
}

/* The "properties" object of the schema at path, or NULL. */
static json_t *properties(const char *path)
{
    pthread_once(&parsed_once, parse_schemas);
    size_t n = strcspn(path, ".");
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)n, path);
    json_t *s = json_object_get(parsed, name);
    for (path += n; s && *path == '.';) {
        path++;
        n = strcspn(path, ".");
        snprintf(name, sizeof(name), "%.*s", (int)n, path);
        s = object_schema(json_object_get(json_object_get(s, "properties"), name));
        path += n;
    }
    return json_object_get(s, "properties");
}

bool sw_api_schema_has(const char *path, const char *field)
{
    return json_object_get(properties(path), field) != NULL;
}

void sw_api_reject_unknown(json_t *obj, const char *path, sw_json_errors_t *e)
{
    const char *names[FIELDS_MAX + 1];
    size_t n = 0;
    const char *key;
    json_t *value;
    json_object_foreach(properties(path), key, value)
    {
        if (n == FIELDS_MAX)
            sw_oom(); /* a programming error: no request schema is this wide */
        names[n++] = key;
    }
    names[n] = NULL;
    sw_json_reject_unknown(obj, names, e);
}

void sw_api_reject_unknown_body(sw_http_req_t *req, json_t *body, sw_json_errors_t *e)
{
    const sw_route_t *route = req->route;
    sw_api_reject_unknown(body, route && route->request_schema ? route->request_schema : "", e);
}

/* ---- list filters ---- */

static const sw_api_filter_t *filter_named(const sw_api_filter_t *filters, const char *name,
                                           size_t len, size_t *index)
{
    for (size_t i = 0; filters[i].name; i++) {
        if (strlen(filters[i].name) == len && strncmp(filters[i].name, name, len) == 0) {
            *index = i;
            return &filters[i];
        }
    }
    return NULL;
}

static void filter_read(sw_http_req_t *req, const sw_api_filter_t *f, const char **out,
                        sw_json_errors_t *e)
{
    size_t n = strlen(f->name);
    if (n > 3 && strcmp(f->name + n - 3, "_id") == 0) {
        sw_api_uuid_filter(req, f->name, out, e);
    } else if (f->values) {
        sw_api_enum_filter(req, f->name, f->values, out, e);
    } else {
        *out = sw_http_req_query(req, f->name);
        if (*out && f->max_len && strlen(*out) > f->max_len)
            sw_json_errors_add(e, f->name, "must be at most %zu characters", f->max_len);
    }
}

bool sw_api_filters_read(sw_http_req_t *req, const sw_api_filter_t *filters,
                         const char *values[SW_API_FILTERS_MAX])
{
    const sw_route_t *route = req->route;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    for (size_t i = 0; i < SW_API_FILTERS_MAX; i++)
        values[i] = NULL;
    for (const char *p = route ? route->filters : NULL; p && *p;) {
        size_t len = strcspn(p, ","), i;
        /* A filter the route names but the handler cannot apply is not offered. */
        const sw_api_filter_t *f = filter_named(filters, p, len, &i);
        if (f && i < SW_API_FILTERS_MAX)
            filter_read(req, f, &values[i], &e);
        p += len + (p[len] == ',');
    }
    if (!sw_json_errors_any(&e))
        return true;
    sw_api_validation_error(req, &e);
    return false;
}

void sw_api_filters_apply(sw_api_list_t *l, const sw_api_filter_t *filters,
                          const char *const values[SW_API_FILTERS_MAX])
{
    for (size_t i = 0; filters[i].name && i < SW_API_FILTERS_MAX; i++)
        if (values[i])
            sw_api_list_where(l, filters[i].where, values[i]);
}

/* An image reference as the container CLIs take it: [registry[:port]/]name[:tag] or
 * name@sha256:<64 hex>; what could be read as a CLI flag or hold a space is refused. */
bool sw_api_image_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    const char *at = strchr(s, '@');
    for (const char *p = s; *p && p != at; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:", *p))
            return false;
    if (!at)
        return s[n - 1] != '/' && s[n - 1] != ':';
    if (strncmp(at + 1, "sha256:", 7) != 0 || strlen(at + 8) != 64 || at == s)
        return false;
    for (const char *p = at + 8; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}
