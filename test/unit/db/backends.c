/* Tests for src/db/backends.c: the database and Redis URLs in a loaded configuration. The
 * rejections moved here from test/unit/core/config.c with the checks themselves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "slipway/backends.h"

/* Loads a configuration from envp alone (it must pass sw_config_load) and checks its
 * backends, leaving the message in err. */
static int check(char **envp, sw_config_err_t *err)
{
    char *argv[] = {"slipwayd", NULL};
    sw_config_t cfg;
    int action;
    memset(err, 0, sizeof(*err));
    assert_int_equal(sw_config_load(&cfg, 1, argv, envp, &action, err), 0);
    int rc = sw_backends_check(&cfg, err);
    sw_config_free(&cfg);
    return rc;
}

static void expect_ok(const char *var)
{
    char *envp[] = {(char *)var, NULL};
    sw_config_err_t err;
    if (check(envp, &err) != 0)
        fail_msg("%s refused: %s", var, err.msg);
}

/* Refused with exactly the message want, or (want NULL) one that names the variable. */
static void expect_refused(const char *var, const char *want)
{
    char *envp[] = {(char *)var, NULL};
    sw_config_err_t err;
    assert_int_equal(check(envp, &err), -EINVAL);
    size_t name_len = strcspn(var, "=");
    if (strncmp(err.msg, var, name_len) != 0 || err.msg[name_len] != ':')
        fail_msg("error \"%s\" for %s does not start with its variable", err.msg, var);
    if (want && strcmp(err.msg, want) != 0)
        fail_msg("error \"%s\" for %s, want \"%s\"", err.msg, var, want);
}

static void test_defaults_pass(void **state)
{
    (void)state;
    char *envp[] = {NULL};
    sw_config_err_t err;
    assert_int_equal(check(envp, &err), 0);
}

static void test_database_urls(void **state)
{
    (void)state;
    expect_ok("SLIPWAY_DATABASE_URL=postgresql://u:pw@db.example:5433/slipway");
    expect_ok("SLIPWAY_DATABASE_URL=postgresql://u@h1:5432,h2:5433/db");
    expect_ok("SLIPWAY_DATABASE_URL=postgresql://u@h1,h2/db");
    expect_ok("SLIPWAY_DATABASE_URL=host=/run/postgresql dbname=slipway");
    expect_ok("SLIPWAY_DATABASE_URL=host=a,b port=5432,6543 dbname=slipway");

    expect_refused("SLIPWAY_DATABASE_URL=", "SLIPWAY_DATABASE_URL: must be set");
    expect_refused("SLIPWAY_DATABASE_URL=postgres://u@h:notaport/db",
                   "SLIPWAY_DATABASE_URL: invalid port \"notaport\" (expected 1-65535)");
    expect_refused("SLIPWAY_DATABASE_URL=postgresql://u@h:0/db",
                   "SLIPWAY_DATABASE_URL: invalid port \"0\" (expected 1-65535)");
    expect_refused("SLIPWAY_DATABASE_URL=postgresql://u@h:65536/db",
                   "SLIPWAY_DATABASE_URL: invalid port \"65536\" (expected 1-65535)");
    expect_refused("SLIPWAY_DATABASE_URL=host=a,b port=5432,x dbname=slipway",
                   "SLIPWAY_DATABASE_URL: invalid port \"5432,x\" (expected 1-65535)");
    /* libpq's own parse errors: its first line, after the variable */
    expect_refused("SLIPWAY_DATABASE_URL=postgresql://h/db?sslmode", NULL);
    expect_refused("SLIPWAY_DATABASE_URL=host=h nosuchkeyword=1", NULL);
    expect_refused("SLIPWAY_DATABASE_URL=host='unterminated", NULL);
}

static void test_database_password_never_echoed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "SLIPWAY_DATABASE_URL=postgresql://u:hunter2@h:notaport/db",
        "SLIPWAY_DATABASE_URL=postgresql://u:hunter2@h/db?sslmode",
        "SLIPWAY_DATABASE_URL=password=hunter2 nosuchkeyword=1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *envp[] = {(char *)bad[i], NULL};
        sw_config_err_t err;
        assert_int_equal(check(envp, &err), -EINVAL);
        if (strstr(err.msg, "hunter2"))
            fail_msg("\"%s\" repeats the password", err.msg);
    }
}

static void test_redis_urls(void **state)
{
    (void)state;
    expect_ok("SLIPWAY_REDIS_URL=redis://127.0.0.1:6379/0");
    expect_ok("SLIPWAY_REDIS_URL=redis://:p%40ss@cache.internal:6380/3");
    expect_ok("SLIPWAY_REDIS_URL=redis://user:pw@[::1]:6379");
    expect_ok("SLIPWAY_REDIS_URL=unix:///run/redis/redis.sock");

    expect_refused("SLIPWAY_REDIS_URL=http://127.0.0.1:6379",
                   "SLIPWAY_REDIS_URL: redis URL: it must start with redis:// or unix://");
    expect_refused("SLIPWAY_REDIS_URL=", "SLIPWAY_REDIS_URL: redis URL: it is empty");
    expect_refused("SLIPWAY_REDIS_URL=rediss://h",
                   "SLIPWAY_REDIS_URL: redis URL: TLS (rediss://) is not supported");
    expect_refused("SLIPWAY_REDIS_URL=redis://h:0",
                   "SLIPWAY_REDIS_URL: redis URL: the port must be a number from 1 to 65535");
    expect_refused("SLIPWAY_REDIS_URL=redis://:bad%zz@h",
                   "SLIPWAY_REDIS_URL: redis URL: the password has a bad %-escape or is too long");
    expect_refused("SLIPWAY_REDIS_URL=redis://:nul%00@h",
                   "SLIPWAY_REDIS_URL: redis URL: the password has a bad %-escape or is too long");
    expect_refused("SLIPWAY_REDIS_URL=redis://us%zzer:pw@h",
                   "SLIPWAY_REDIS_URL: redis URL: the user name is malformed or too long");
    expect_refused("SLIPWAY_REDIS_URL=redis://h/x",
                   "SLIPWAY_REDIS_URL: redis URL: the database must be a number (redis://host/0)");
    expect_refused("SLIPWAY_REDIS_URL=unix://relative",
                   "SLIPWAY_REDIS_URL: redis URL: a unix socket path must be absolute "
                   "(unix:///path)");
}

/* The database is checked first: with both wrong, the message is the database's. */
static void test_database_before_redis(void **state)
{
    (void)state;
    char *envp[] = {"SLIPWAY_DATABASE_URL=postgres://u@h:notaport/db",
                    "SLIPWAY_REDIS_URL=http://127.0.0.1:6379", NULL};
    sw_config_err_t err;
    assert_int_equal(check(envp, &err), -EINVAL);
    assert_true(strncmp(err.msg, "SLIPWAY_DATABASE_URL:", 21) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_pass),
        cmocka_unit_test(test_database_urls),
        cmocka_unit_test(test_database_password_never_echoed),
        cmocka_unit_test(test_redis_urls),
        cmocka_unit_test(test_database_before_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
