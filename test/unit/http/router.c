/* Tests for src/http/router.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "slipway/router.h"

static void h(sw_http_req_t *req, void *ctx)
{
    (void)req;
    (void)ctx;
}

static const sw_route_t routes[] = {
    {"GET", "/health", h, {0}, "", "", NULL, NULL, 200},
    {"GET", "/api/v1/apps", h, {0}, "", "", NULL, NULL, 200},
    {"POST", "/api/v1/apps", h, {0}, "", "", NULL, NULL, 201},
    {"GET", "/api/v1/apps/:id", h, {0}, "", "", NULL, NULL, 200},
    {"DELETE", "/api/v1/apps/:id", h, {0}, "", "", NULL, NULL, 204},
    {"PUT", "/api/v1/apps/:id/env/:key", h, {0}, "", "", NULL, NULL, 200},
    {"GET", "/api/v1/apps/search", h, {0}, "", "", NULL, NULL, 200},
    {"POST", "/api/v1/apps/:id/start", h, {0}, "", "", NULL, NULL, 202},
};

static int match(sw_router_t *r, sw_http_req_t *req, const char *method, const char *path,
                 char *allow, size_t allow_size)
{
    memset(req, 0, sizeof(*req));
    req->method = method;
    req->head = strcmp(method, "HEAD") == 0;
    req->path = sw_iov_from_cstr(path);
    return sw_router_match(r, req, allow, allow_size);
}

static void test_literal_and_params(void **state)
{
    (void)state;
    sw_router_t *r;
    char err[128];
    sw_http_req_t req;
    assert_int_equal(sw_router_new(&r, routes, SW_ARRAY_SIZE(routes), err, sizeof(err)), 0);

    assert_int_equal(match(r, &req, "GET", "/health", NULL, 0), 0);
    assert_ptr_equal(req.route, &routes[0]);
    assert_int_equal(match(r, &req, "GET", "/api/v1/apps/abc-123", NULL, 0), 0);
    assert_ptr_equal(req.route, &routes[3]);
    assert_true(sw_iov_eq_cstr(sw_http_req_param(&req, "id"), "abc-123"));
    assert_int_equal(match(r, &req, "PUT", "/api/v1/apps/7/env/DATABASE_URL", NULL, 0), 0);
    assert_int_equal(req.nparams, 2);
    assert_true(sw_iov_eq_cstr(sw_http_req_param(&req, "id"), "7"));
    assert_true(sw_iov_eq_cstr(sw_http_req_param(&req, "key"), "DATABASE_URL"));
    assert_null(sw_http_req_param(&req, "nope").base);
    /* A literal beats a parameter at the same depth... */
    assert_int_equal(match(r, &req, "GET", "/api/v1/apps/search", NULL, 0), 0);
    assert_ptr_equal(req.route, &routes[6]);
    /* ...but a failed literal branch falls back to the parameter. */
    assert_int_equal(match(r, &req, "POST", "/api/v1/apps/search/start", NULL, 0), 0);
    assert_ptr_equal(req.route, &routes[7]);
    assert_true(sw_iov_eq_cstr(sw_http_req_param(&req, "id"), "search"));
    sw_router_free(r);
}

static void test_not_found_and_method_not_allowed(void **state)
{
    (void)state;
    sw_router_t *r;
    char err[128], allow[64];
    sw_http_req_t req;
    assert_int_equal(sw_router_new(&r, routes, SW_ARRAY_SIZE(routes), err, sizeof(err)), 0);
    assert_int_equal(match(r, &req, "GET", "/nope", NULL, 0), -ENOENT);
    assert_int_equal(match(r, &req, "GET", "/health/", NULL, 0), -ENOENT);
    assert_int_equal(match(r, &req, "GET", "/api//v1/apps", NULL, 0), -ENOENT);
    assert_int_equal(match(r, &req, "GET", "", NULL, 0), -ENOENT);
    assert_int_equal(match(r, &req, "GET", "/api/v1/apps/1/env", NULL, 0), -ENOENT);
    assert_int_equal(match(r, &req, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r", NULL, 0),
                     -ENOENT);
    assert_int_equal(match(r, &req, "PATCH", "/api/v1/apps/1", allow, sizeof(allow)), -ENOTSUP);
    assert_string_equal(allow, "GET, DELETE, HEAD");
    assert_int_equal(match(r, &req, "DELETE", "/health", allow, sizeof(allow)), -ENOTSUP);
    assert_string_equal(allow, "GET, HEAD");
    /* HEAD is served by the GET route. */
    assert_int_equal(match(r, &req, "HEAD", "/health", NULL, 0), 0);
    assert_ptr_equal(req.route, &routes[0]);
    sw_router_free(r);
}

static void test_bad_tables_are_refused(void **state)
{
    (void)state;
    sw_router_t *r = NULL;
    char err[128];
    const sw_route_t dup[] = {{"GET", "/a", h, {0}, "", "", NULL, NULL, 200},
                              {"GET", "/a", h, {0}, "", "", NULL, NULL, 200}};
    assert_int_equal(sw_router_new(&r, dup, 2, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "twice"));
    const sw_route_t clash[] = {{"GET", "/a/:id", h, {0}, "", "", NULL, NULL, 200},
                                {"GET", "/a/:name/x", h, {0}, "", "", NULL, NULL, 200}};
    assert_int_equal(sw_router_new(&r, clash, 2, err, sizeof(err)), -EINVAL);
    const sw_route_t bad[] = {{"GET", "no-slash", h, {0}, "", "", NULL, NULL, 200}};
    assert_int_equal(sw_router_new(&r, bad, 1, err, sizeof(err)), -EINVAL);
    const sw_route_t trailing[] = {{"GET", "/a/", h, {0}, "", "", NULL, NULL, 200}};
    assert_int_equal(sw_router_new(&r, trailing, 1, err, sizeof(err)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_and_params),
        cmocka_unit_test(test_not_found_and_method_not_allowed),
        cmocka_unit_test(test_bad_tables_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
