/* Fuzz target: a JSON request body through the checks the route table derives
 * (src/api/validate.c over src/api/schemas.c): decoding with its depth and size bounds,
 * unknown fields at the top and in nested objects, each listed field read with the type its
 * schema gives, and the page query every list reads. The details collected must serialise to
 * JSON, as the 400 answer carries them.
 *
 * Input: byte 0 picks a route with a request schema; then the query string, a NUL, and the
 * body. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/json.h"
#include "slipway/router.h"
#include "src/api/internal.h"

#define FUZZ_MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const sw_route_t *with_schema[256];
static size_t nwith_schema;

static json_t *schema_named(const char *name)
{
    for (size_t i = 0; i < sw_api_schemas_count; i++)
        if (strcmp(sw_api_schemas[i].name, name) == 0)
            return json_loads(sw_api_schemas[i].schema, 0, NULL);
    return NULL;
}

/* Reads each field of obj the schema's properties list as the type given there; an object
 * field is checked for unknown members against path.field. */
static void read_fields(json_t *obj, json_t *props, const char *path, sw_json_errors_t *e,
                        int depth)
{
    const char *name;
    json_t *prop;
    json_object_foreach(props, name, prop)
    {
        const char *type = json_string_value(json_object_get(prop, "type"));
        const char *s;
        long long n;
        bool b;
        if (!type)
            continue;
        if (strcmp(type, "string") == 0)
            sw_json_get_string(obj, name, false, 1, 255, &s, e);
        else if (strcmp(type, "integer") == 0)
            sw_json_get_int(obj, name, false, -1000, 1000000, &n, e);
        else if (strcmp(type, "boolean") == 0)
            sw_json_get_bool(obj, name, false, &b, e);
        else if (strcmp(type, "object") == 0 && depth < 4 &&
                 json_is_object(json_object_get(obj, name))) {
            char sub[256];
            snprintf(sub, sizeof(sub), "%s.%s", path, name);
            sw_api_reject_unknown(json_object_get(obj, name), sub, e);
            read_fields(json_object_get(obj, name), json_object_get(prop, "properties"), sub, e,
                        depth + 1);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!nwith_schema) {
        for (size_t i = 0; i < sw_api_routes_count && nwith_schema < 256; i++)
            if (sw_api_routes[i].request_schema)
                with_schema[nwith_schema++] = &sw_api_routes[i];
        if (!nwith_schema)
            abort();
    }
    if (size < 1 || size > FUZZ_MAX_INPUT)
        return 0;
    const sw_route_t *route = with_schema[data[0] % nwith_schema];
    const uint8_t *nul = memchr(data + 1, 0, size - 1);
    size_t qlen = nul ? (size_t)(nul - data - 1) : 0;
    const char *body = nul ? (const char *)nul + 1 : (const char *)data + 1;
    size_t blen = size - (size_t)(body - (const char *)data);

    sw_http_req_t req = {0};
    req.arena = SW_ARENA_INIT;
    req.route = route;
    req.route_pattern = route->pattern;
    req.query = (sw_iov_t){sw_arena_strndup(&req.arena, (const char *)data + 1, qlen), qlen};

    sw_json_errors_t e;
    sw_json_errors_init(&e);
    long long v;
    sw_api_query_int(&req, "limit", 1, 100, &v, &e);
    sw_api_query_int(&req, "offset", 0, 1000000, &v, &e);
    json_t *obj = sw_json_parse_object(body, blen, &e);
    if (obj) {
        if (!json_is_object(obj))
            abort();
        sw_api_reject_unknown_body(&req, obj, &e);
        json_t *schema = schema_named(route->request_schema);
        read_fields(obj, json_object_get(schema, "properties"), route->request_schema, &e, 0);
        json_decref(schema);
        json_decref(obj);
    } else if (!sw_json_errors_any(&e)) {
        abort(); /* a refused body says why */
    }
    json_t *details = sw_json_errors_take(&e);
    if (!json_is_array(details) || json_array_size(details) > SW_JSON_MAX_DETAILS)
        abort();
    sw_buf_t out = SW_BUF_INIT;
    sw_json_dump(&out, details);
    json_t *back = json_loadb(out.base, out.len, 0, NULL);
    if (!back)
        abort(); /* what a 400 carries must be JSON */
    json_decref(back);
    sw_buf_free(&out);
    json_decref(details);
    sw_json_errors_free(&e);
    sw_arena_free(&req.arena);
    return 0;
}
