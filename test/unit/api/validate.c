/* Tests for src/api/validate.c: body fields checked against the route table's request
 * schemas (src/api/schemas.c), nested paths, and that every schema a route names exists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "slipway/api.h"
#include "src/api/internal.h"

static void test_schema_has(void **state)
{
    (void)state;
    assert_true(sw_api_schema_has("AppCreate", "name"));
    assert_true(sw_api_schema_has("AppCreate", "environment_id"));
    assert_false(sw_api_schema_has("AppUpdate", "environment_id"));
    assert_false(sw_api_schema_has("AppCreate", "bogus"));
    /* an object property */
    assert_true(sw_api_schema_has("AppCreate.resources", "cpu"));
    assert_true(sw_api_schema_has("AppCreate.resources", "memory"));
    assert_false(sw_api_schema_has("AppCreate.resources", "disk"));
    /* an array of (a string or an object): the object's fields */
    assert_true(sw_api_schema_has("KnownHostsPut.known_hosts", "host"));
    assert_true(sw_api_schema_has("KnownHostsPut.known_hosts", "key_type"));
    assert_false(sw_api_schema_has("KnownHostsPut.known_hosts", "source"));
    /* nothing named so: nothing is known */
    assert_false(sw_api_schema_has("NoSuchSchema", "name"));
    assert_false(sw_api_schema_has("AppCreate.nothing", "cpu"));
    assert_false(sw_api_schema_has("", "name"));
}

static void test_reject_unknown(void **state)
{
    (void)state;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *body = json_pack("{s:s, s:s}", "name", "web", "description", "d");
    sw_api_reject_unknown(body, "ProjectCreate", &e);
    assert_false(sw_json_errors_any(&e));

    json_object_set_new(body, "colour", json_string("red"));
    sw_api_reject_unknown(body, "ProjectCreate", &e);
    json_t *d = sw_json_errors_take(&e);
    assert_int_equal(json_array_size(d), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(d, 0), "field")),
                        "colour");
    assert_string_equal(json_string_value(json_object_get(json_array_get(d, 0), "message")),
                        "is not a known field");
    json_decref(d);
    json_decref(body);
}

static void test_reject_unknown_body(void **state)
{
    (void)state;
    sw_route_t route = {.method = "POST", .pattern = "/x", .request_schema = "TotpCode"};
    sw_http_req_t req;
    memset(&req, 0, sizeof(req));
    req.route = &route;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *body = json_pack("{s:s}", "code", "123456");
    sw_api_reject_unknown_body(&req, body, &e);
    assert_false(sw_json_errors_any(&e));
    json_object_set_new(body, "password", json_string("x"));
    sw_api_reject_unknown_body(&req, body, &e);
    assert_true(sw_json_errors_any(&e));
    sw_json_errors_free(&e);

    /* a route without a request schema takes no fields at all */
    route.request_schema = NULL;
    json_object_del(body, "password");
    sw_api_reject_unknown_body(&req, body, &e);
    assert_true(sw_json_errors_any(&e));
    sw_json_errors_free(&e);
    json_decref(body);
}

static const char *const colours[] = {"red", "green", NULL};
static const sw_api_filter_t filters[] = {
    {"project_id", "x.project_id = $%d::uuid", NULL, 0},
    {"colour", "x.colour = $%d", colours, 0},
    {"name", "x.name = $%d", NULL, 8},
    {"unlisted", "x.unlisted = $%d", NULL, 0},
    {NULL, NULL, NULL, 0},
};

static void test_filters(void **state)
{
    (void)state;
    /* the route offers three of the handler's filters; "unlisted" is not among them */
    sw_route_t route = {.method = "GET", .pattern = "/x", .filters = "colour,project_id,name"};
    sw_http_req_t req;
    memset(&req, 0, sizeof(req));
    req.arena = SW_ARENA_INIT;
    req.route = &route;
    req.query = sw_iov_from_cstr("colour=green&unlisted=1&name=web&project_id="
                                 "0b4e8c5e-2f8a-4a53-9a2e-1c3b5d7f9a11");
    const char *values[SW_API_FILTERS_MAX];
    assert_true(sw_api_filters_read(&req, filters, values));
    assert_string_equal(values[0], "0b4e8c5e-2f8a-4a53-9a2e-1c3b5d7f9a11");
    assert_string_equal(values[1], "green");
    assert_string_equal(values[2], "web");
    assert_null(values[3]);

    /* conditions go on in the table's order, numbered after what the list holds already */
    sw_api_list_t l = {.from = "t"};
    sw_api_list_param(&l, "first");
    sw_api_filters_apply(&l, filters, values);
    assert_string_equal(l.where.base, " AND x.project_id = $2::uuid AND x.colour = $3 AND "
                                      "x.name = $4");
    assert_int_equal(l.nparams, 4);
    assert_string_equal(l.params[3], "web");
    sw_buf_free(&l.where);

    /* nothing given: nothing added */
    req.query = sw_iov_from_cstr("page=2");
    assert_true(sw_api_filters_read(&req, filters, values));
    for (size_t i = 0; i < SW_API_FILTERS_MAX; i++)
        assert_null(values[i]);
    sw_arena_free(&req.arena);
}

/* A typo in the route table would make every field of that route unknown. */
static void test_route_schemas_exist(void **state)
{
    (void)state;
    for (size_t i = 0; i < sw_api_routes_count; i++) {
        const char *names[] = {sw_api_routes[i].request_schema, sw_api_routes[i].response_schema};
        for (size_t k = 0; k < 2; k++) {
            if (!names[k])
                continue;
            bool found = false;
            for (size_t j = 0; j < sw_api_schemas_count && !found; j++)
                found = strcmp(sw_api_schemas[j].name, names[k]) == 0;
            if (!found)
                fail_msg("route %s %s names schema %s, which is not in the table",
                         sw_api_routes[i].method, sw_api_routes[i].pattern, names[k]);
        }
    }
}

static void test_image_ok(void **state)
{
    (void)state;
    const char *good[] = {
        "nginx",
        "nginx:1.25",
        "registry.example/team/web:1.4.2",
        "127.0.0.1:5000/web:v1",
        "localhost/web",
        "web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
    const char *bad[] = {"",
                         "-rm",
                         "--privileged",
                         "Web Server",
                         "web/",
                         "web:",
                         "x@sha256:12",
                         "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                         "web;rm",
                         "web\nx",
                         "/web"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(sw_api_image_ok(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(sw_api_image_ok(bad[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_has),          cmocka_unit_test(test_reject_unknown),
        cmocka_unit_test(test_reject_unknown_body), cmocka_unit_test(test_filters),
        cmocka_unit_test(test_route_schemas_exist), cmocka_unit_test(test_image_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
