/* Tests for the caddy driver's planning (src/proxy/caddy.c): what a round sends Caddy for
 * the config Caddy's admin API answered. Slipway's part of that config does not depend on the
 * routing table; what differs from it is repaired with as little as reloads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/proxy/internal.h"

#define DNS "127.0.0.1:5354"

static sw_config_t settings(bool https)
{
    sw_config_t cfg = {
        .proxy_http = "127.0.0.1:8080",
        .proxy_https = https ? "127.0.0.1:8443" : "",
        .proxy_refresh_ms = 100,
        .acme_ca = https ? "https://acme.test/dir" : "",
        .acme_email = "",
        .acme_ca_root = https ? "/etc/acme-root.pem" : "",
    };
    return cfg;
}

/* The plan's lines for body; *lines their count. */
static char *plan(const sw_config_t *cfg, const char *body, size_t *lines)
{
    sw_buf_t out = SW_BUF_INIT;
    assert_int_equal(sw_caddy_plan(cfg, DNS, body, strlen(body), &out), 0);
    char *s = out.base ? sw_buf_steal(&out) : strdup("");
    *lines = 0;
    for (const char *p = s; (p = strchr(p, '\n')); p++)
        (*lines)++;
    return s;
}

/* The body of the plan's one "POST /load", parsed. */
static json_t *loaded(const char *line)
{
    const char *prefix = "POST /load ";
    if (strncmp(line, prefix, strlen(prefix)) != 0)
        fail_msg("not a /load: %s", line);
    json_t *j = json_loadb(line + strlen(prefix), strcspn(line + strlen(prefix), "\n"), 0, NULL);
    assert_non_null(j);
    return j;
}

static json_t *at(json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, strtoul(k, NULL, 10)) : json_object_get(j, k);
    return j;
}

static void assert_converged(const sw_config_t *cfg, json_t *config)
{
    char *body = json_dumps(config, JSON_COMPACT);
    size_t n;
    char *again = plan(cfg, body, &n);
    if (n != 0)
        fail_msg("planned again:\n%s", again);
    free(again);
    free(body);
}

static void test_an_empty_caddy_gets_one_route_for_every_host(void **state)
{
    (void)state;
    sw_config_t cfg = settings(false);
    size_t n;
    char *p = plan(&cfg, "null", &n);
    assert_int_equal(n, 1);
    json_t *c = loaded(p);
    json_t *routes = at(c, "apps.http.servers.slipway.routes");
    assert_int_equal(json_array_size(routes), 1);
    json_t *route = json_array_get(routes, 0);
    assert_string_equal(json_string_value(json_object_get(route, "@id")), "slipway-apps");
    assert_null(json_object_get(route, "match")); /* every host */
    assert_string_equal(json_string_value(at(route, "handle.0.dynamic_upstreams.name")),
                        "{http.request.host}.host.slipway.");
    assert_string_equal(json_string_value(at(route, "handle.0.dynamic_upstreams.refresh")),
                        "100ms");
    /* the edge answers when the lookup itself fails */
    assert_string_equal(json_string_value(at(route, "handle.0.upstreams.0.dial")), DNS);
    /* Slipway-Release is the upstream's first label, always set (an app cannot send its own) */
    assert_string_equal(
        json_string_value(at(route, "handle.0.headers.response.set.Slipway-Release.0")),
        "{http.reverse_proxy.upstream.host}");
    assert_null(at(route, "handle.0.headers.response.require"));
    assert_int_equal(json_integer_value(at(c, "apps.http.http_port")), 8080);
    assert_true(json_is_true(at(c, "apps.http.servers.slipway.automatic_https.disable")));
    assert_null(at(c, "apps.tls"));
    assert_converged(&cfg, c);
    json_decref(c);
    free(p);
}

static void test_https_asks_the_edge_before_each_certificate(void **state)
{
    (void)state;
    sw_config_t cfg = settings(true);
    size_t n;
    char *p = plan(&cfg, "{}", &n);
    json_t *c = loaded(p);
    json_t *srv = at(c, "apps.http.servers.slipway");
    assert_int_equal(json_array_size(json_object_get(srv, "listen")), 2);
    assert_int_equal(json_array_size(json_object_get(srv, "tls_connection_policies")), 1);
    assert_true(json_is_true(at(srv, "automatic_https.disable_redirects")));
    assert_int_equal(json_integer_value(at(c, "apps.http.https_port")), 8443);
    assert_true(json_is_true(at(c, "apps.tls.automation.policies.0.on_demand")));
    assert_string_equal(json_string_value(at(c, "apps.tls.automation.policies.0.issuers.0.ca")),
                        "https://acme.test/dir");
    assert_string_equal(json_string_value(at(c, "apps.tls.automation.on_demand.ask")),
                        "http://" DNS "/ask");
    /* Caddy's "could not get certificate" lines come to slipwayd, on the DNS address */
    json_t *log = at(c, "logging.logs.slipway-tls");
    assert_string_equal(json_string_value(at(log, "writer.address")), "udp/" DNS);
    assert_string_equal(json_string_value(at(log, "include.0")), "tls.obtain");
    assert_converged(&cfg, c);
    /* a Caddy set up for plain HTTP only gets TLS added... */
    sw_config_t plain = settings(false);
    char *body = plan(&plain, "{}", &n);
    char *again = plan(&cfg, body + strlen("POST /load "), &n);
    assert_int_equal(n, 1);
    json_t *added = loaded(again);
    assert_true(json_is_true(at(added, "apps.tls.automation.policies.0.on_demand")));
    assert_non_null(at(added, "logging.logs.slipway-tls"));
    json_decref(added);
    /* ...and HTTPS switched off takes Slipway's log away again */
    char *off = plan(&plain, p + strlen("POST /load "), &n);
    assert_int_equal(n, 1);
    json_t *removed = loaded(off);
    assert_null(at(removed, "logging.logs.slipway-tls"));
    assert_int_equal(json_array_size(at(removed, "apps.http.servers.slipway.listen")), 1);
    assert_converged(&plain, removed);
    json_decref(removed);
    free(off);
    free(again);
    free(body);
    json_decref(c);
    free(p);
}

static void test_drifted_routes_are_put_back_alone(void **state)
{
    (void)state;
    sw_config_t cfg = settings(false);
    size_t n;
    char *p = plan(&cfg, "{}", &n);
    json_t *c = loaded(p);
    json_t *routes = at(c, "apps.http.servers.slipway.routes");
    json_t *want = json_deep_copy(routes);
    /* edited by hand, then another route put ahead of it */
    json_object_set_new(json_array_get(routes, 0), "match", json_pack("[{s:[s]}]", "host", "x"));
    json_array_insert_new(routes, 0, json_pack("{s:[{s:s}]}", "handle", "handler", "vars"));
    char *body = json_dumps(c, JSON_COMPACT);
    char *again = plan(&cfg, body, &n);
    assert_int_equal(n, 1);
    const char *prefix = "PATCH /config/apps/http/servers/slipway/routes ";
    assert_memory_equal(again, prefix, strlen(prefix));
    json_t *sent = json_loadb(again + strlen(prefix), strlen(again) - strlen(prefix) - 1, 0, NULL);
    assert_true(json_equal(sent, want));
    json_decref(sent);
    json_decref(want);
    free(again);
    free(body);
    json_decref(c);
    free(p);
}

static void test_everything_else_in_caddy_is_kept(void **state)
{
    (void)state;
    sw_config_t cfg = settings(false);
    size_t n;
    const char *mine = "{\"admin\":{\"listen\":\"127.0.0.1:2019\"},\"apps\":{\"http\":{\"servers\":"
                       "{\"other\":{\"listen\":[\":9000\"]}}}}}";
    char *p = plan(&cfg, mine, &n);
    json_t *c = loaded(p);
    assert_string_equal(json_string_value(at(c, "admin.listen")), "127.0.0.1:2019");
    assert_string_equal(json_string_value(at(c, "apps.http.servers.other.listen.0")), ":9000");
    /* a setting added to Slipway's server by hand goes again, with one /load */
    json_object_set_new(at(c, "apps.http.servers.slipway"), "logs", json_object());
    char *body = json_dumps(c, JSON_COMPACT);
    char *again = plan(&cfg, body, &n);
    json_t *c2 = loaded(again);
    assert_null(at(c2, "apps.http.servers.slipway.logs"));
    assert_converged(&cfg, c2);
    /* and what is not JSON is not planned from */
    sw_buf_t out = SW_BUF_INIT;
    assert_int_equal(sw_caddy_plan(&cfg, DNS, "{", 1, &out), -EPROTO);
    json_decref(c2);
    free(again);
    free(body);
    json_decref(c);
    free(p);
}

static void test_caddys_log_says_why_an_order_failed(void **state)
{
    (void)state;
    char host[64], why[128];
    const char *failed =
        "{\"level\":\"error\",\"ts\":1.5,\"logger\":\"tls.obtain\",\"msg\":\"could not "
        "get certificate from issuer\",\"identifier\":\"fail.test\",\"issuer\":\"x\",\"error\":"
        "\"HTTP 400 urn:ietf:params:acme:error:malformed - no such host\"}\n";
    assert_true(sw_caddy_log_failure(failed, strlen(failed), host, sizeof(host), why, sizeof(why)));
    assert_string_equal(host, "fail.test");
    assert_string_equal(why, "HTTP 400 urn:ietf:params:acme:error:malformed - no such host");
    /* cut to the room given */
    char small[16];
    assert_true(
        sw_caddy_log_failure(failed, strlen(failed), host, sizeof(host), small, sizeof(small)));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    /* Caddy's other lines, and what is not one, say nothing */
    const char *others[] = {
        "{\"level\":\"error\",\"logger\":\"tls.obtain\",\"msg\":\"will retry\",\"error\":\"x\"}",
        "{\"level\":\"error\",\"logger\":\"http.log\",\"msg\":\"could not get certificate "
        "from issuer\",\"identifier\":\"a\",\"error\":\"x\"}",
        "{\"level\":\"error\",\"logger\":\"tls.obtain\",\"msg\":\"could not get certificate "
        "from issuer\",\"identifier\":7,\"error\":\"x\"}",
        "{\"level\":",
        "[]",
        "",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        if (sw_caddy_log_failure(others[i], strlen(others[i]), host, sizeof(host), why,
                                 sizeof(why)))
            fail_msg("taken: %s", others[i]);
    /* a name longer than the room for it is not taken */
    char tiny[4];
    assert_false(
        sw_caddy_log_failure(failed, strlen(failed), tiny, sizeof(tiny), why, sizeof(why)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_empty_caddy_gets_one_route_for_every_host),
        cmocka_unit_test(test_https_asks_the_edge_before_each_certificate),
        cmocka_unit_test(test_drifted_routes_are_put_back_alone),
        cmocka_unit_test(test_everything_else_in_caddy_is_kept),
        cmocka_unit_test(test_caddys_log_says_why_an_order_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
