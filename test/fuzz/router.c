/* Fuzz target: a request target through the API's router (the real route table) and the
 * query and percent decoders a handler then reads it with.
 *
 * Input: byte 0 picks the method (low 3 bits) and the size of the Allow buffer (high 5
 * bits); the rest is the request target as sent ("/api/v1/apps/x?limit=5"). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/percent.h"
#include "slipway/router.h"
#include "slipway/server.h"

#define MAX_TARGET 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = {"GET",   "HEAD",   "POST",    "PUT",
                                      "PATCH", "DELETE", "OPTIONS", "PROPFIND"};
/* Query names the handlers read, and one no handler reads. */
static const char *const query_names[] = {"limit", "offset", "page",  "sort",  "status",
                                          "token", "follow", "lines", "since", "nope"};

static void check_decode(const char *s, size_t len, unsigned flags, size_t out_size)
{
    char *out = malloc(out_size ? out_size : 1);
    ssize_t n = sw_percent_decode(out, out_size, s, len, flags);
    if (n >= 0) {
        /* Never longer than the input, NUL-terminated, no NUL inside but one sent raw. */
        if ((size_t)n > len || (size_t)n >= out_size || out[n] != '\0' ||
            (strlen(out) != (size_t)n && !memchr(s, '\0', len)))
            abort();
    } else if (out_size > len && n == -E2BIG) {
        abort(); /* len + 1 bytes always fit */
    }
    free(out);
}

/* The undecoded value of the first name=value pair (or bare name) of q named name. */
static sw_iov_t raw_value(sw_iov_t q, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i <= q.len;) {
        size_t end = i;
        while (end < q.len && q.base[end] != '&')
            end++;
        size_t k = i;
        while (k < end && q.base[k] != '=')
            k++;
        if (k - i == nlen && memcmp(q.base + i, name, nlen) == 0)
            return k < end ? (sw_iov_t){q.base + k + 1, end - k - 1} : (sw_iov_t){q.base + end, 0};
        i = end + 1;
    }
    return SW_IOV_NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sw_router_t *router;
    if (!router) {
        char err[256];
        if (sw_router_new(&router, sw_api_routes, sw_api_routes_count, err, sizeof(err)) != 0)
            abort();
    }
    if (size < 1 || size > MAX_TARGET)
        return 0;
    sw_http_req_t req = {0};
    req.arena = SW_ARENA_INIT;
    req.method = methods[data[0] & 7];
    req.head = strcmp(req.method, "HEAD") == 0;
    /* As src/http/parse.c splits it. */
    req.target =
        (sw_iov_t){sw_arena_strndup(&req.arena, (const char *)data + 1, size - 1), size - 1};
    char *q = memchr(req.target.base, '?', req.target.len);
    req.path = q ? (sw_iov_t){req.target.base, (size_t)(q - req.target.base)} : req.target;
    req.query = q ? (sw_iov_t){q + 1, req.target.len - req.path.len - 1}
                  : (sw_iov_t){req.target.base + req.target.len, 0};

    size_t allow_size = data[0] >> 3;
    char *allow = malloc(allow_size ? allow_size : 1);
    int r = sw_router_match(router, &req, allow_size ? allow : NULL, allow_size);
    if (r == -ENOTSUP && allow_size && strlen(allow) >= allow_size)
        abort();
    if (r == 0) {
        if (!req.route || req.nparams > SW_HTTP_MAX_PARAMS)
            abort();
        for (uint32_t i = 0; i < req.nparams; i++) {
            sw_iov_t v = req.param_values[i];
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)req.param_names[i].len,
                     req.param_names[i].base);
            sw_iov_t got = sw_http_req_param(&req, name);
            if (!got.base || got.len == 0)
                abort();
            check_decode(v.base, v.len, 0, v.len + 1);
        }
    }
    free(allow);

    for (size_t i = 0; i < sizeof(query_names) / sizeof(query_names[0]); i++) {
        const char *v = sw_http_req_query(&req, query_names[i]);
        sw_iov_t raw = raw_value(req.query, query_names[i]);
        /* Found or not as the query says; a value with a raw NUL (which would cut the C string
         * short) is refused like a bad escape. */
        if (v && (!raw.base || strlen(v) > raw.len || memchr(raw.base, '\0', raw.len)))
            abort();
    }
    check_decode(req.path.base, req.path.len, 0, req.path.len + 1);
    check_decode(req.query.base, req.query.len, SW_PERCENT_FORM, req.query.len + 1);
    check_decode(req.query.base, req.query.len, SW_PERCENT_FORM, req.query.len / 2);
    sw_arena_free(&req.arena);
    return 0;
}
