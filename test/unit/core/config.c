/* Tests for src/core/config.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "slipway/config.h"

static int load(sw_config_t *cfg, char **argv, char **envp, int *action, sw_config_err_t *err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return sw_config_load(cfg, argc, argv, envp, action, err);
}

static void test_defaults(void **state)
{
    (void)state;
    sw_config_t cfg;
    sw_config_err_t err;
    int action;
    char *argv[] = {"slipwayd", NULL};
    char *envp[] = {NULL};
    assert_int_equal(load(&cfg, argv, envp, &action, &err), 0);
    assert_int_equal(action, SW_CONFIG_RUN);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_int_equal(cfg.max_header_bytes, 16384);
    assert_int_equal(cfg.max_headers, 100);
    assert_true(cfg.max_body_bytes == 1048576);
    assert_int_equal(cfg.http_workers, 1);
    assert_int_equal(cfg.role, SW_NODE_ALL);
    assert_false(cfg.cookie_secure);
    sw_config_free(&cfg);
}

static void test_env_then_flags_win(void **state)
{
    (void)state;
    sw_config_t cfg;
    sw_config_err_t err;
    int action;
    char *argv[] = {
        "slipwayd",      "--listen", "[::1]:9000", "--cookie-secure", "--max-body-bytes=2048",
        "--role=worker", NULL};
    char *envp[] = {"SLIPWAY_LISTEN=127.0.0.1:1", "SLIPWAY_HTTP_WORKERS=3",
                    "SLIPWAY_UNRELATED_TEST_VAR=x", "PATH=/bin", NULL};
    assert_int_equal(load(&cfg, argv, envp, &action, &err), 0);
    assert_string_equal(cfg.listen, "[::1]:9000");
    assert_int_equal(cfg.http_workers, 3);
    assert_true(cfg.cookie_secure);
    assert_true(cfg.max_body_bytes == 2048);
    assert_int_equal(cfg.role, SW_NODE_WORKER);
    sw_config_free(&cfg);
}

static void expect_error(char **argv, char **envp, const char *needle)
{
    sw_config_t cfg;
    sw_config_err_t err;
    int action;
    assert_int_equal(load(&cfg, argv, envp, &action, &err), -EINVAL);
    if (!strstr(err.msg, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
    sw_config_free(&cfg);
}

static void test_rejections_name_the_variable(void **state)
{
    (void)state;
    char *argv[] = {"slipwayd", NULL};
    char *bad_num[] = {"SLIPWAY_HTTP_WORKERS=0", NULL};
    expect_error(argv, bad_num, "SLIPWAY_HTTP_WORKERS");
    char *bad_bool[] = {"SLIPWAY_COOKIE_SECURE=maybe", NULL};
    expect_error(argv, bad_bool, "SLIPWAY_COOKIE_SECURE");
    char *bad_listen[] = {"SLIPWAY_LISTEN=::1:80", NULL};
    expect_error(argv, bad_listen, "SLIPWAY_LISTEN");
    char *bad_rate[] = {"SLIPWAY_RATE_LIMIT=fast", NULL};
    expect_error(argv, bad_rate, "SLIPWAY_RATE_LIMIT");
    char *bad_range[] = {"SLIPWAY_PORT_RANGE=9000-8000", NULL};
    expect_error(argv, bad_range, "SLIPWAY_PORT_RANGE");
    char *unknown[] = {"slipwayd", "--no-such-flag", NULL};
    char *none[] = {NULL};
    expect_error(unknown, none, "--no-such-flag");
    char *missing[] = {"slipwayd", "--listen", NULL};
    expect_error(missing, none, "--listen");
    char *flag_src[] = {"slipwayd", "--max-headers", "5", NULL};
    expect_error(flag_src, none, "--max-headers");
}

static void test_master_key_never_echoed(void **state)
{
    (void)state;
    sw_config_t cfg;
    sw_config_err_t err;
    int action;
    char *argv[] = {"slipwayd", NULL};
    char *envp[] = {"SLIPWAY_MASTER_KEY=supersecretvalue", NULL};
    assert_int_equal(load(&cfg, argv, envp, &action, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "SLIPWAY_MASTER_KEY"));
    assert_null(strstr(err.msg, "supersecret"));
    sw_config_free(&cfg);
}

static void test_actions(void **state)
{
    (void)state;
    sw_config_t cfg;
    sw_config_err_t err;
    int action;
    char *none[] = {NULL};
    char *check[] = {"slipwayd", "--check-config", NULL};
    assert_int_equal(load(&cfg, check, none, &action, &err), 0);
    assert_int_equal(action, SW_CONFIG_CHECK);
    sw_config_free(&cfg);
    char *help[] = {"slipwayd", "--help", NULL};
    assert_int_equal(load(&cfg, help, none, &action, &err), 0);
    assert_int_equal(action, SW_CONFIG_HELP);
    sw_config_free(&cfg);
}

static void test_split_hostport(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(sw_config_split_hostport("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(sw_config_split_hostport("[::1]:443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 443);
    assert_int_equal(sw_config_split_hostport(":9", host, sizeof(host), &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(sw_config_split_hostport("host", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sw_config_split_hostport("h:70000", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sw_config_split_hostport("[::1]80", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sw_config_split_hostport("h:", host, sizeof(host), &port), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_then_flags_win),
        cmocka_unit_test(test_rejections_name_the_variable),
        cmocka_unit_test(test_master_key_never_echoed),
        cmocka_unit_test(test_actions),
        cmocka_unit_test(test_split_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
