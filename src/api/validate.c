/* Request validation derived from the route table: a body may hold only the fields its
 * route's request schema lists, so the schema openapi.json publishes and the check cannot
 * drift apart. */
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
