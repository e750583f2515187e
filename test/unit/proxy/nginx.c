/* Tests for the nginx driver's renderer (src/proxy/nginx.c): what one routing table becomes
 * in the include file, its hash, and that nothing from the table reaches the file unless it
 * is a hostname, an id or an IP endpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/proxy/internal.h"

#define APP   "6f1c2a7e-0a1b-4c2d-9e3f-112233445566"
#define OTHER "7f1c2a7e-0a1b-4c2d-9e3f-112233445566"
#define REL   "d0d0d0d0-1111-2222-3333-444455556666"
#define REL2  "e0e0e0e0-1111-2222-3333-444455556666"

static void add(sw_routes_t *t, const char *host, const char *key, const char *release,
                const char *const *eps, size_t n)
{
    t->v = realloc(t->v, (t->n + 1) * sizeof(*t->v));
    sw_route_t *r = &t->v[t->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->key, sizeof(r->key), "%s", key);
    snprintf(r->release, sizeof(r->release), "%s", release);
    for (size_t i = 0; i < n; i++)
        r->endpoints[r->nendpoints++] = strdup(eps[i]);
}

static sw_routes_t *shop(void)
{
    sw_routes_t *t = calloc(1, sizeof(*t));
    const char *eps[] = {"127.0.0.1:4001", "127.0.0.2:4002"};
    add(t, "shop.test", APP, REL, eps, 2);
    add(t, "www.shop.test", APP, REL, eps, 2);
    add(t, "*.wild.test", OTHER, "", NULL, 0);
    sw_routes_sort(t);
    return t;
}

static char *render(const sw_routes_t *t, const char *listen, char hash[SW_NGINX_HASH_HEX])
{
    sw_config_t cfg = {.proxy_http = (char *)listen};
    sw_buf_t out = SW_BUF_INIT;
    assert_int_equal(sw_nginx_render(t, &cfg, &out, hash), 0);
    return sw_buf_steal(&out);
}

static void contains(const char *conf, const char *want)
{
    if (!strstr(conf, want))
        fail_msg("no \"%s\" in:\n%s", want, conf);
}

static size_t count(const char *conf, const char *what)
{
    size_t n = 0;
    for (const char *p = conf; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static void test_a_table_becomes_upstreams_servers_and_a_release_map(void **state)
{
    (void)state;
    sw_routes_t *t = shop();
    char hash[SW_NGINX_HASH_HEX];
    char *conf = render(t, "127.0.0.1:8080", hash);
    /* one upstream per app, with every endpoint */
    assert_int_equal(count(conf, "upstream slipway_"), 1);
    contains(conf, "upstream slipway_" APP " {\n    server 127.0.0.1:4001;\n"
                   "    server 127.0.0.2:4002;\n}\n");
    /* one server per hostname, each to its app's upstream */
    contains(conf, "server_name shop.test;\n");
    contains(conf, "server_name www.shop.test;\n");
    assert_int_equal(count(conf, "proxy_pass http://slipway_" APP ";"), 2);
    contains(conf, "proxy_set_header Host $host;");
    contains(conf, "proxy_set_header Upgrade $http_upgrade;");
    contains(conf, "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;");
    contains(conf, "add_header Slipway-Release $slipway_release always;");
    /* an app with nothing released answers 503 */
    contains(conf, "server_name *.wild.test;\n    return 503;\n");
    assert_null(strstr(conf, "slipway_" OTHER));
    /* each endpoint names its release, alone or as the last address tried */
    contains(conf, "    \"127.0.0.1:4001\" \"" REL "\";\n");
    contains(conf, "    \"~, 127\\.0\\.0\\.2:4002$\" \"" REL "\";\n");
    assert_int_equal(count(conf, "\"127.0.0.1:4001\""), 1);
    /* unknown names get 404, and the check server answers the hash */
    contains(conf, "listen 127.0.0.1:8080 default_server;\n    server_name _;\n    return 404;");
    assert_int_equal(strlen(hash), 32);
    char check[200];
    snprintf(check, sizeof(check), "add_header Slipway-Release %s always;\n", hash);
    contains(conf, check);
    contains(conf, "server_name _slipway-config-check;");
    free(conf);
    sw_routes_free(t);
}

static void test_the_hash_follows_the_table(void **state)
{
    (void)state;
    sw_routes_t *t = shop();
    char a[SW_NGINX_HASH_HEX], b[SW_NGINX_HASH_HEX], c[SW_NGINX_HASH_HEX];
    char *x = render(t, "127.0.0.1:8080", a);
    char *y = render(t, "127.0.0.1:8080", b);
    assert_string_equal(x, y);
    assert_string_equal(a, b);
    const char *eps[] = {"127.0.0.1:4003"};
    sw_routes_override(t, APP, REL2, eps, 1);
    char *z = render(t, "127.0.0.1:8080", c);
    assert_string_not_equal(a, c);
    contains(z, "\"127.0.0.1:4003\" \"" REL2 "\"");
    assert_null(strstr(z, "4001"));
    free(x);
    free(y);
    free(z);
    sw_routes_free(t);
}

static void test_nothing_but_names_ids_and_addresses_reaches_the_file(void **state)
{
    (void)state;
    sw_routes_t *t = calloc(1, sizeof(*t));
    const char *bad_eps[] = {"127.0.0.1:80; evil", "example.com:80", "127.0.0.1", "[::1]:4005"};
    add(t, "ok.test", APP, REL, bad_eps, 4);
    const char *eps[] = {"127.0.0.1:4001"};
    add(t, "evil.test;}", OTHER, REL, eps, 1);
    add(t, "other.test", "x; evil", REL, eps, 1);
    add(t, "third.test", OTHER, "r\" evil", eps, 1);
    char hash[SW_NGINX_HASH_HEX];
    char *conf = render(t, "127.0.0.1:8080", hash);
    assert_null(strstr(conf, "evil"));
    assert_null(strstr(conf, "example.com"));
    /* the IPv6 endpoint is the only one of ok.test */
    contains(conf, "upstream slipway_" APP " {\n    server [::1]:4005;\n}");
    contains(conf, "\"~, \\[::1\\]:4005$\"");
    /* a release that is not an id names nothing; the route still serves */
    contains(conf, "server_name third.test;");
    contains(conf, "upstream slipway_" OTHER " {\n    server 127.0.0.1:4001;\n}");
    assert_null(strstr(conf, "other.test"));
    free(conf);
    sw_routes_free(t);
}

static void test_one_address_is_one_map_entry(void **state)
{
    (void)state;
    sw_routes_t *t = calloc(1, sizeof(*t));
    const char *eps[] = {"127.0.0.1:4001"};
    add(t, "a.test", APP, REL, eps, 1);
    add(t, "b.test", OTHER, REL2, eps, 1);
    char hash[SW_NGINX_HASH_HEX];
    char *conf = render(t, "127.0.0.1:8080", hash);
    assert_int_equal(count(conf, "\"127.0.0.1:4001\" "), 1);
    free(conf);
    sw_routes_free(t);
}

static void test_listen_addresses(void **state)
{
    (void)state;
    sw_routes_t *t = calloc(1, sizeof(*t));
    char hash[SW_NGINX_HASH_HEX];
    char *conf = render(t, ":80", hash);
    contains(conf, "listen 80 default_server;");
    free(conf);
    conf = render(t, "[::1]:8080", hash);
    contains(conf, "listen [::1]:8080 default_server;");
    free(conf);
    sw_config_t cfg = {.proxy_http = "nowhere"};
    sw_buf_t out = SW_BUF_INIT;
    assert_int_equal(sw_nginx_render(t, &cfg, &out, hash), -EINVAL);
    sw_buf_free(&out);
    sw_routes_free(t);
}

static void test_https_with_one_certificate(void **state)
{
    (void)state;
    sw_routes_t *t = shop();
    char hash[SW_NGINX_HASH_HEX], plain_hash[SW_NGINX_HASH_HEX];
    sw_config_t cfg = {.proxy_http = ":80",
                       .proxy_https = "127.0.0.1:8443",
                       .nginx_tls_cert_file = "/etc/slipway/edge.pem",
                       .nginx_tls_key_file = "/etc/slipway/edge.key"};
    sw_buf_t out = SW_BUF_INIT;
    assert_int_equal(sw_nginx_render(t, &cfg, &out, hash), 0);
    char *conf = sw_buf_steal(&out);
    contains(conf, "ssl_certificate /etc/slipway/edge.pem;\nssl_certificate_key "
                   "/etc/slipway/edge.key;\n");
    contains(conf, "listen 127.0.0.1:8443 ssl default_server;");
    /* every server of a domain listens on both; the check server on HTTP only */
    assert_int_equal(count(conf, "listen 127.0.0.1:8443 ssl;"), count(conf, "server_name ") - 2);
    assert_int_equal(count(conf, "listen 127.0.0.1:8443 ssl;"), 3);
    free(conf);
    /* no certificate: HTTP only */
    conf = render(t, ":80", plain_hash);
    assert_null(strstr(conf, "ssl"));
    assert_string_not_equal(hash, plain_hash);
    free(conf);
    sw_routes_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_table_becomes_upstreams_servers_and_a_release_map),
        cmocka_unit_test(test_the_hash_follows_the_table),
        cmocka_unit_test(test_nothing_but_names_ids_and_addresses_reaches_the_file),
        cmocka_unit_test(test_one_address_is_one_map_entry),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_https_with_one_certificate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
