/* What the files of src/api/ share (lifetime, request pipeline, read cache, validation) and no
 * other module sees. Other modules see
 * include/slipway/api.h. */
#ifndef SLIPWAY_API_INTERNAL_H
#define SLIPWAY_API_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "slipway/api.h"
#include "slipway/server.h"
#include "slipway/json.h"
#include "slipway/pg.h"

/* A query's status checked and answered in one place: when status is not 0, answers req as
 * sw_api_db_error does and returns true; otherwise returns false and answers nothing. */
bool sw_api_db_failed(sw_http_req_t *req, int status, sw_pg_result_t *res);

/* ---- the schema table (schemas.c) ---- */

typedef struct {
    const char *name;   /* "AppCreate" */
    const char *schema; /* JSON Schema text */
} sw_api_schema_t;

extern const sw_api_schema_t sw_api_schemas[];
extern const size_t sw_api_schemas_count;

/* ---- request validation derived from the route table (validate.c) ---- */

/* A container image reference: [registry[:port]/]name[:tag] or name@sha256:<64 hex>. */
bool sw_api_image_ok(const char *s);

/* Whether the schema at path lists field among its properties. path is a schema name
 * ("AppCreate"), optionally followed by property names ("AppCreate.resources"); a step into an
 * array goes on to its items, and a oneOf goes on to its object alternative. */
bool sw_api_schema_has(const char *path, const char *field);
/* Adds "is not a known field" to e for each member of obj the schema at path does not list. */
void sw_api_reject_unknown(json_t *obj, const char *path, sw_json_errors_t *e);
/* The same against the matched route's request schema. */
void sw_api_reject_unknown_body(sw_http_req_t *req, json_t *body, sw_json_errors_t *e);

/* One query filter a list handler knows how to apply. Which of them a request may use, and in
 * what order they are checked, comes from the route's filter list. */
typedef struct {
    const char *name;          /* "status"; a name ending in _id takes only a UUID */
    const char *where;         /* the condition, as sw_api_list_where takes it */
    const char *const *values; /* the values it takes (NULL-terminated), or NULL: any */
    size_t max_len;            /* the longest value it takes, or 0: no bound */
} sw_api_filter_t;

#define SW_API_FILTERS_MAX 8

/* Reads the route's filters from the query into values (aligned with filters, which ends
 * with a NULL name; NULL for a filter not given). False after answering 400 with every
 * problem. */
bool sw_api_filters_read(sw_http_req_t *req, const sw_api_filter_t *filters,
                         const char *values[SW_API_FILTERS_MAX]);
/* Adds the condition of each filter given to l, in the table's order. */
void sw_api_filters_apply(sw_api_list_t *l, const sw_api_filter_t *filters,
                          const char *const values[SW_API_FILTERS_MAX]);

/* ---- the request path (src/api/pipeline.c) ---- */
void sw_api_on_request(sw_http_req_t *req, void *payload);
void sw_api_on_response(sw_http_req_t *req, void *payload);
bool sw_api_is_safe_method(const char *m);
/* scheme://host[:port] of a URL, lower-cased, into out. */
void sw_api_url_origin(const char *url, char *out, size_t size);

/* ---- branch listings (src/api/branches.c) ---- */
typedef struct sw_api_branches sw_api_branches_t;
/* Cancels the listings under way (their requests are answered 503) and frees the service;
 * on_closed follows, on the loop. */
void sw_api_branches_close(sw_api_branches_t *svc, void (*on_closed)(void *payload), void *payload);

/* ---- the read cache (src/api/readcache.c) ---- */
/* The cache and the connection that LISTENs for what empties it. */
int sw_api_read_cache_start(sw_api_t *api);
/* Whether the cache may answer and store now. */
bool sw_api_read_cache_check(sw_api_t *api);
/* The read cache's metrics; a collector with the API as payload. */
void sw_api_read_cache_metrics(sw_buf_t *out, void *payload);

#endif
