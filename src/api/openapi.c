/* GET /api/v1/openapi.json: OpenAPI 3.1, generated from the route table and the schema
 * definitions (schemas.c), so the document cannot drift from what the router serves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "sw_version.h"

#include "internal.h"

static json_t *schema_ref(const char *name)
{
    char ref[128];
    snprintf(ref, sizeof(ref), "#/components/schemas/%s", name);
    return json_pack("{s:s}", "$ref", ref);
}

static json_t *json_content(json_t *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

/* "/api/v1/apps/:id" -> "/api/v1/apps/{id}", collecting the parameter names. */
static char *openapi_path(const char *pattern, json_t *params)
{
    sw_buf_t b = SW_BUF_INIT;
    for (const char *p = pattern; *p;) {
        if (*p == ':' && p > pattern && p[-1] == '/') {
            size_t len = strcspn(p + 1, "/");
            char *name = sw_strndup(p + 1, len);
            sw_buf_printf(&b, "{%s}", name);
            json_array_append_new(params,
                                  json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in", "path",
                                            "required", 1, "schema", "type", "string"));
            free(name);
            p += len + 1;
        } else {
            sw_buf_append_char(&b, *p++);
        }
    }
    return sw_buf_steal(&b);
}

static json_t *error_response(const char *description)
{
    return json_pack("{s:s, s:o}", "description", description, "content",
                     json_content(schema_ref("Error")));
}

/* Who may call the route, in words: the operation's description. */
static char *access_text(const sw_route_t *r)
{
    const sw_access_t *a = &r->access;
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_printf(&b, "%s.", r->summary);
    if (a->auth == SW_AUTH_PUBLIC) {
        sw_buf_append_cstr(&b, " Public: no credentials needed.");
        return sw_buf_steal(&b);
    }
    sw_buf_append_cstr(&b, a->auth == SW_AUTH_SESSION ? " Needs a signed-in session"
                                                      : " Needs a session or an API token");
    if (a->scope)
        sw_buf_printf(&b, " with the %s scope", sw_scope_name(a->scope));
    if (a->role == SW_ROLE_ADMIN)
        sw_buf_append_cstr(&b, ", held by an instance owner or admin");
    if (a->project_role)
        sw_buf_printf(&b, ", and the %s role (or more) in the resource's project",
                      sw_project_role_name((sw_project_role_t)a->project_role));
    sw_buf_append_char(&b, '.');
    return sw_buf_steal(&b);
}

static json_t *operation(const sw_route_t *r)
{
    json_t *params = json_array();
    char *path = openapi_path(r->pattern, params);
    free(path);

    char opid[160];
    size_t n = (size_t)snprintf(opid, sizeof(opid), "%s", r->method);
    for (const char *p = r->pattern; *p && n + 1 < sizeof(opid); p++)
        opid[n++] = (*p == '/' || *p == ':' || *p == '.' || *p == '-') ? '_' : *p;
    opid[n] = '\0';
    for (char *p = opid; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');

    json_t *responses = json_object();
    char code[8];
    snprintf(code, sizeof(code), "%d", r->success_status ? r->success_status : 200);
    json_t *ok = json_pack("{s:s}", "description", "Success");
    if (r->live)
        json_object_set_new(ok, "content",
                            json_pack("{s:{s:o}, s:{s:{s:s}}}", "application/x-ndjson", "schema",
                                      schema_ref(r->response_schema), "text/event-stream", "schema",
                                      "type", "string"));
    else if (r->response_schema)
        json_object_set_new(ok, "content", json_content(schema_ref(r->response_schema)));
    else if (strcmp(r->pattern, "/metrics") == 0)
        json_object_set_new(ok, "content",
                            json_pack("{s:{s:{s:s}}}", "text/plain", "schema", "type", "string"));
    else if (strcmp(r->pattern, "/api/v1/openapi.json") == 0)
        json_object_set_new(ok, "content", json_content(json_pack("{s:s}", "type", "object")));
    if (r->other_status) {
        char other[8];
        snprintf(other, sizeof(other), "%d", r->other_status);
        json_object_set_new(
            responses, other,
            r->other_status == 101
                ? json_pack("{s:s}", "description", "WebSocket: one text frame per message")
                : json_deep_copy(ok));
    }
    json_object_set_new(responses, code, ok);
    if (strcmp(r->pattern, "/health") == 0 || strcmp(r->pattern, "/ready") == 0)
        json_object_set_new(
            responses, "503",
            json_pack(
                "{s:s, s:o}", "description", "Not healthy or not ready", "content",
                json_content(schema_ref(strcmp(r->pattern, "/health") == 0 ? "Health" : "Error"))));
    json_object_set_new(responses, "default", error_response("Error"));

    /* The HTTP layer answers these for any route, before it is even known. */
    json_object_set_new(responses, "431",
                        error_response("The request line and headers are over the limit (16 KiB "
                                       "by default) or too many"));
    char *description = access_text(r);
    json_t *op = json_pack("{s:s, s:s, s:s, s:[s], s:o}", "operationId", opid, "summary",
                           r->summary, "description", description, "tags",
                           r->tag ? r->tag : "default", "responses", responses);
    free(description);
    if (json_array_size(params))
        json_object_set(op, "parameters", params);
    json_decref(params);
    if (r->request_schema)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b, s:o}", "required", 1, "content",
                                      json_content(schema_ref(r->request_schema))));
    static const char *const auth_names[SW_AUTH_MAX] = {"public", "user", "session"};
    json_object_set_new(
        op, "x-slipway-access",
        json_pack("{s:s, s:o, s:o, s:o}", "auth", auth_names[r->access.auth], "project_role",
                  r->access.project_role
                      ? json_string(sw_project_role_name((sw_project_role_t)r->access.project_role))
                      : json_null(),
                  "role",
                  r->access.role ? json_string(sw_user_role_name((sw_user_role_t)r->access.role))
                                 : json_null(),
                  "scope",
                  r->access.scope ? json_string(sw_scope_name(r->access.scope)) : json_null()));
    for (const sw_route_query_t *q = r->query; q && q->name; q++) {
        json_t *qp = json_object_get(op, "parameters");
        if (!qp) {
            qp = json_array();
            json_object_set_new(op, "parameters", qp);
        }
        json_array_append_new(qp,
                              json_pack("{s:s, s:s, s:b, s:s, s:o}", "name", q->name, "in", "query",
                                        "required", q->required, "description", q->description,
                                        "schema", json_loads(q->schema, 0, NULL)));
    }
    if (r->response_schema && strlen(r->response_schema) > 4 &&
        strcmp(r->response_schema + strlen(r->response_schema) - 4, "List") == 0) {
        static const char *const list_params[][2] = {
            {"page", "1-based page number"},
            {"limit", "items per page, 1 to 100 (default 20)"},
            {"offset", "items to skip, instead of page"},
            {"sort", "field[:asc|desc]"},
        };
        json_t *qp = json_object_get(op, "parameters");
        if (!qp) {
            qp = json_array();
            json_object_set_new(op, "parameters", qp);
        }
        for (const char *f = r->filters; f && *f;) {
            size_t flen = strcspn(f, ",");
            char *name = sw_strndup(f, flen);
            bool is_id = flen > 3 && strcmp(name + flen - 3, "_id") == 0;
            json_t *schema = is_id ? json_pack("{s:s, s:s}", "type", "string", "format", "uuid")
                                   : json_pack("{s:s}", "type", "string");
            json_array_append_new(qp, json_pack("{s:s, s:s, s:b, s:s, s:o}", "name", name, "in",
                                                "query", "required", 0, "description", "filter",
                                                "schema", schema));
            free(name);
            f += flen + (f[flen] == ',');
        }
        for (size_t i = 0; i < SW_ARRAY_SIZE(list_params); i++)
            json_array_append_new(qp, json_pack("{s:s, s:s, s:b, s:s, s:{s:s}}", "name",
                                                list_params[i][0], "in", "query", "required", 0,
                                                "description", list_params[i][1], "schema", "type",
                                                i == 3 ? "string" : "integer"));
    }
    if (strncmp(r->pattern, "/api/v1/", 8) == 0 && !r->stateless)
        json_object_set_new(responses, "429", error_response("Rate limit exceeded"));
    if (r->access.project_from != SW_FROM_NONE)
        json_object_set_new(responses, "404",
                            error_response("No such resource, or not visible to the caller"));
    if (r->request_schema || r->query)
        json_object_set_new(responses, "400",
                            error_response("Validation error, with field details"));
    if (r->access.auth == SW_AUTH_PUBLIC)
        json_object_set_new(op, "security", json_array());
    else if (r->access.auth == SW_AUTH_SESSION)
        json_object_set_new(op, "security", json_pack("[{s:[]}, {s:[]}]", "cookie", "bearer"));
    if (r->access.auth != SW_AUTH_PUBLIC) {
        json_object_set_new(responses, "401", error_response("Not authenticated"));
        json_object_set_new(responses, "403", error_response("Authenticated, but not allowed"));
    }
    return op;
}

/* The servers entry: SLIPWAY_PUBLIC_URL when set, else an origin the reader fills in, by
 * default the first address slipwayd listens on. */
static json_t *servers(const char *public_url, const char *listen)
{
    size_t n = public_url ? strlen(public_url) : 0;
    while (n && public_url[n - 1] == '/')
        n--;
    if (n) {
        char *url = sw_strndup(public_url, n);
        json_t *s = json_pack("[{s:s, s:s}]", "url", url, "description", "This Slipway");
        free(url);
        return s;
    }
    char *host = sw_strndup(listen ? listen : "", listen ? strcspn(listen, ",") : 0);
    json_t *s = json_pack(
        "[{s:s, s:s, s:{s:{s:s, s:[ss]}, s:{s:s, s:s}}}]", "url", "{scheme}://{host}",
        "description", "This Slipway (SLIPWAY_PUBLIC_URL is not set)", "variables", "scheme",
        "default", "http", "enum", "http", "https", "host", "default",
        *host ? host : "127.0.0.1:8080", "description", "host[:port] that reaches slipwayd");
    free(host);
    return s;
}

json_t *sw_api_openapi(const sw_route_t *routes, size_t count, const char *public_url,
                       const char *listen)
{
    json_t *paths = json_object();
    json_t *tags = json_array();
    for (size_t i = 0; i < count; i++) {
        json_t *params = json_array();
        char *path = openapi_path(routes[i].pattern, params);
        json_decref(params);
        json_t *item = json_object_get(paths, path);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, path, item);
        }
        char method[16];
        snprintf(method, sizeof(method), "%s", routes[i].method);
        for (char *p = method; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        json_object_set_new(item, method, operation(&routes[i]));
        free(path);
        /* Every tag an operation names is declared once, in the order routes bring them. */
        const char *tag = routes[i].tag ? routes[i].tag : "default";
        bool known = false;
        for (size_t t = 0; t < json_array_size(tags) && !known; t++)
            known = strcmp(json_string_value(json_object_get(json_array_get(tags, t), "name")),
                           tag) == 0;
        if (!known)
            json_array_append_new(tags, json_pack("{s:s}", "name", tag));
    }

    json_t *comp_schemas = json_object();
    for (size_t i = 0; i < sw_api_schemas_count; i++) {
        json_error_t err;
        json_t *s = json_loads(sw_api_schemas[i].schema, 0, &err);
        if (s)
            json_object_set_new(comp_schemas, sw_api_schemas[i].name, s);
    }
    json_t *info = json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "title", "Slipway API", "version", SW_VERSION,
        "description", "Self-hosted platform-as-a-service control plane.", "license", "name", "MIT",
        "identifier", "MIT", "contact", "name", "The operators of this Slipway");
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:{s:o, s:{s:{s:s, s:s}, s:{s:s, s:s, s:s}}}, "
                     "s:[{s:[]}, {s:[]}]}",
                     "openapi", "3.1.0", "info", info, "servers", servers(public_url, listen),
                     "tags", tags, "paths", paths, "components", "schemas", comp_schemas,
                     "securitySchemes", "bearer", "type", "http", "scheme", "bearer", "cookie",
                     "type", "apiKey", "in", "cookie", "name", "slipway_session", "security",
                     "bearer", "cookie");
}

void sw_api_get_openapi(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    /* The document only changes with the binary: build it once per process. */
    if (!api->openapi.base) {
        json_t *doc = sw_api_openapi(sw_api_routes, sw_api_routes_count, api->cfg->public_url,
                                     api->cfg->listen);
        sw_json_dump(&api->openapi, doc);
        sw_buf_append_char(&api->openapi, '\n');
        json_decref(doc);
    }
    sw_http_respond(req, 200, "application/json", api->openapi.base, api->openapi.len);
}
