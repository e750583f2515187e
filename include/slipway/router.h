/* A path router over a route table: literal segments and :param segments. */
#ifndef SLIPWAY_ROUTER_H
#define SLIPWAY_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "slipway/access.h"
#include "slipway/server.h"

typedef void (*sw_http_handler_fn)(sw_http_req_t *req, void *ctx);

/* One row of the route table (src/api/routes.c): the router, the authorisation check and the
 * OpenAPI document are all derived from these. */
/* A query parameter of a route that is not a list, for the OpenAPI document. */
typedef struct {
    const char *name;
    bool required;
    const char *schema; /* JSON Schema text */
    const char *description;
} sw_route_query_t;

typedef struct {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/api/v1/apps/:id" */
    sw_http_handler_fn handler;
    sw_access_t access; /* who may call it; enforced before the handler runs */
    const char *summary;
    const char *tag;
    const char *request_schema;  /* name in the schema table, or NULL */
    const char *response_schema; /* name in the schema table, or NULL */
    int success_status;
    int other_status;    /* a second success status the route may answer (0: none) */
    bool stateless;      /* answers without the schema: served before migrations finish */
    bool live;           /* a live stream: accepts ?token=, and a cookie needs an allowed Origin */
    const char *filters; /* a list's query filters, comma-separated ("project_id,status") */
    const sw_route_query_t *query; /* other routes' query parameters, ending with a NULL name */
} sw_route_t;

typedef struct sw_router sw_router_t;

/* Builds the router; -EINVAL (with a message in err) for a malformed or duplicate pattern. */
int sw_router_new(sw_router_t **out, const sw_route_t *routes, size_t count, char *err,
                  size_t err_size);
void sw_router_free(sw_router_t *r);

/* Finds the route for method and path. On success fills req's route, route_pattern and
 * params and returns 0. -ENOENT: no such path. -ENOTSUP: the path exists but
 * not for this method; allow (if given) receives "GET, HEAD, POST" style text. HEAD matches
 * GET routes. */
int sw_router_match(const sw_router_t *r, sw_http_req_t *req, char *allow, size_t allow_size);

#endif
