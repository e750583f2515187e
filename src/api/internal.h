/* What the API role's lifetime, request pipeline and read cache share (src/api/). */
#ifndef SLIPWAY_API_INTERNAL_H
#define SLIPWAY_API_INTERNAL_H

#include "slipway/api.h"

/* ---- the request path (src/api/pipeline.c) ---- */
void sw_api_on_request(sw_http_req_t *req, void *payload);
void sw_api_on_response(sw_http_req_t *req, void *payload);
bool sw_api_is_safe_method(const char *m);
/* scheme://host[:port] of a URL, lower-cased, into out. */
void sw_api_url_origin(const char *url, char *out, size_t size);

/* ---- the read cache (src/api/readcache.c) ---- */
/* The cache and the connection that LISTENs for what empties it. */
int sw_api_read_cache_start(sw_api_t *api);
/* Whether the cache may answer and store now. */
bool sw_api_read_cache_check(sw_api_t *api);
/* The read cache's metrics; a collector with the API as payload. */
void sw_api_read_cache_metrics(sw_buf_t *out, void *payload);

#endif
