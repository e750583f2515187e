/* The route table: every route Slipway serves, and nothing outside it. */
#include "slipway/api.h"

const sw_route_t sw_api_routes[] = {
    {"GET", "/health", sw_api_get_health, "public", "Liveness and backend checks", "system", NULL,
     "Health", 200},
    {"GET", "/ready", sw_api_get_ready, "public", "Readiness: migrations applied, serving",
     "system", NULL, "Ready", 200},
    {"GET", "/metrics", sw_api_get_metrics, "public", "Prometheus metrics (text format 0.0.4)",
     "system", NULL, NULL, 200},
    {"GET", "/api/v1/openapi.json", sw_api_get_openapi, "public",
     "This API's OpenAPI 3.1 description", "system", NULL, NULL, 200},
};

const size_t sw_api_routes_count = SW_ARRAY_SIZE(sw_api_routes);
