/* Tests for src/db/pg.c and src/db/migrate.c. Those that need a server read
 * SLIPWAY_TEST_DATABASE_URL and skip when it is unset; each creates what it needs in a
 * database of its own where it writes anything. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "slipway/common.h"
#include "slipway/pg.h"

#define GUARD_MS 30000

typedef struct test_ctx test_ctx_t;
struct test_ctx {
    uv_loop_t loop;
    uv_timer_t guard;
    sw_pg_pool_t *pool;
    bool closed;
    bool started;
    bool saw_partial; /* on_state saw fewer than all connections up */
    bool saw_down;
    int phase;
    int done;
    int expected;
    int cancelled;
    int *seen;
};

static const char *test_url(void)
{
    const char *url = getenv("SLIPWAY_TEST_DATABASE_URL");
    return url && *url ? url : NULL;
}

#define SKIP_WITHOUT_SERVER()                                                                      \
    do {                                                                                           \
        if (!test_url())                                                                           \
            skip();                                                                                \
    } while (0)

/* ctx_start's connect timeout; a test that wants another sets it and puts it back */
static uint32_t connect_timeout_ms = 5000;

static void on_guard(uv_timer_t *t)
{
    (void)t;
    fail_msg("test did not finish within %d ms", GUARD_MS);
}

static void on_closed(void *payload)
{
    test_ctx_t *t = payload;
    t->closed = true;
    uv_close((uv_handle_t *)&t->guard, NULL);
}

static void ctx_start(test_ctx_t *t, const char *conninfo, unsigned size, uint32_t timeout_ms,
                      void (*on_state)(sw_pg_pool_t *, void *))
{
    sw_pg_pool_opts_t opts = {
        .conninfo = conninfo,
        .size = size,
        .query_timeout_ms = timeout_ms,
        .connect_timeout_ms = connect_timeout_ms,
        .on_state = on_state,
        .payload = t,
    };

    memset(t, 0, sizeof(*t));
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(uv_timer_init(&t->loop, &t->guard), 0);
    assert_int_equal(uv_timer_start(&t->guard, on_guard, GUARD_MS, 0), 0);
    opts.payload = t;
    assert_int_equal(sw_pg_pool_new(&t->pool, &t->loop, &opts), 0);
}

static void ctx_close(test_ctx_t *t)
{
    sw_pg_pool_close(t->pool, on_closed, t);
}

/* Runs the loop until the test closed the pool; checks nothing is left behind. */
static void ctx_finish(test_ctx_t *t)
{
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_true(t->closed);
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

static int all_up(const test_ctx_t *t)
{
    sw_pg_pool_stats_t st;
    sw_pg_pool_stats(t->pool, &st);
    return st.idle + st.busy == st.total;
}

/* ---- a private database per test ---- */

static void append_kv(char *out, size_t size, const char *key, const char *val)
{
    size_t n = strlen(out);
    n += (size_t)snprintf(out + n, size - n, "%s='", key);
    for (const char *p = val; *p && n + 3 < size; p++) {
        if (*p == '\'' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    snprintf(out + n, size - n, "' ");
}

static PGconn *admin_connect(void)
{
    PGconn *pg = PQconnectdb(test_url());
    assert_non_null(pg);
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("cannot connect: %s", PQerrorMessage(pg));
    return pg;
}

static void admin_exec(const char *sql)
{
    PGconn *pg = admin_connect();
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    PQfinish(pg);
}

/* Creates a fresh database; name receives its name, conninfo a string reaching it. */
static void db_create(char *name, size_t name_size, char *conninfo, size_t size)
{
    static int counter;
    char sql[128];
    PQconninfoOption *opts = PQconninfoParse(test_url(), NULL);

    assert_non_null(opts);
    snprintf(name, name_size, "sw_unit_%d_%d", (int)getpid(), counter++);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    admin_exec(sql);
    conninfo[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (o->val && *o->val && strcmp(o->keyword, "dbname") != 0)
            append_kv(conninfo, size, o->keyword, o->val);
    }
    append_kv(conninfo, size, "dbname", name);
    PQconninfoFree(opts);
}

static void db_drop(const char *name)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    admin_exec(sql);
}

/* A TCP port nothing listens on (it was free a moment ago). */
static int closed_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- no server needed ---- */

static void test_migrations_sorted(void **state)
{
    (void)state;
    assert_true(sw_migrations_count >= 1);
    for (size_t i = 0; i < sw_migrations_count; i++) {
        assert_true(sw_migrations[i].version >= 1);
        assert_non_null(sw_migrations[i].name);
        assert_true(sw_migrations[i].sql[0] != '\0');
        if (i > 0)
            assert_true(sw_migrations[i].version > sw_migrations[i - 1].version);
    }
    assert_int_equal(sw_migrations[0].version, 1);
    assert_string_equal(sw_migrations[0].name, "nodes");
}

static void test_migrate_unreachable(void **state)
{
    char conninfo[128];
    char err[256];
    int applied = -1;

    (void)state;
    snprintf(conninfo, sizeof(conninfo), "postgresql://u:secretpw@127.0.0.1:%d/x?connect_timeout=2",
             closed_port());
    assert_int_equal(sw_migrate_run(conninfo, &applied, err, sizeof(err)), SW_EUNAVAIL);
    assert_int_equal(applied, -1);
    assert_true(err[0] != '\0');
    assert_null(strstr(err, "secretpw"));

    /* a malformed string is refused without echoing it */
    assert_int_equal(sw_migrate_run("postgresql://u:secret%zzpw@h/db", NULL, err, sizeof(err)),
                     -EINVAL);
    assert_null(strstr(err, "secretpw"));
}

static int unavail_count;

static void unavail_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, SW_EUNAVAIL);
    assert_null(res);
    t->done++;
    if (t->done == 2)
        ctx_close(t);
}

static void unavail_state(sw_pg_pool_t *pool, void *payload)
{
    test_ctx_t *t = payload;
    sw_pg_pool_stats_t st;

    unavail_count++;
    assert_false(sw_pg_pool_up(pool));
    sw_pg_pool_stats(pool, &st);
    assert_int_equal(st.idle + st.busy, 0);
    assert_true(st.down >= 1);
    if (!t->started) {
        t->started = true;
        /* now that an attempt failed, a query fails without waiting for its timeout */
        assert_int_equal(sw_pg_query(pool, "SELECT 1", 0, NULL, unavail_cb, t), 0);
    }
}

static void test_pool_down(void **state)
{
    test_ctx_t t;
    char conninfo[128];

    (void)state;
    snprintf(conninfo, sizeof(conninfo), "postgresql://postgres@127.0.0.1:%d/postgres",
             closed_port());
    /* a query timeout far beyond the guard: an answer can only come from the failure */
    ctx_start(&t, conninfo, 2, 10 * GUARD_MS, unavail_state);
    /* queued while the first attempts are in progress, failed when they fail */
    assert_int_equal(sw_pg_query(t.pool, "SELECT 1", 0, NULL, unavail_cb, &t), 0);
    ctx_finish(&t);
    assert_int_equal(t.done, 2);
    assert_true(unavail_count >= 1);
}

static void never_cb(int status, sw_pg_result_t *res, void *payload)
{
    (void)status;
    (void)res;
    (void)payload;
    fail_msg("callback called for a rejected query");
}

static void test_query_einval(void **state)
{
    test_ctx_t t;
    const char *p[1] = {"x"};

    (void)state;
    ctx_start(&t, "postgresql://postgres@127.0.0.1:1/postgres", 1, 1000, NULL);
    assert_int_equal(sw_pg_query(t.pool, "SELECT 1", -1, p, never_cb, &t), -EINVAL);
    assert_int_equal(sw_pg_query(t.pool, "SELECT 1", 70000, p, never_cb, &t), -EINVAL);
    assert_int_equal(sw_pg_query(t.pool, "SELECT $1", 1, NULL, never_cb, &t), -EINVAL);
    assert_int_equal(sw_pg_query(t.pool, NULL, 0, NULL, never_cb, &t), -EINVAL);
    ctx_close(&t);
    ctx_finish(&t);
}

/* A server that accepts TCP connections and never says a word: queued queries time out,
 * then the connect timeout takes the connection down and queries fail fast. */
static void silent_unavail_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, SW_EUNAVAIL);
    assert_null(res);
    t->done++;
    ctx_close(t);
}

static void silent_timeout_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, -ETIMEDOUT);
    assert_null(res);
    t->done++;
}

static void silent_state(sw_pg_pool_t *pool, void *payload)
{
    test_ctx_t *t = payload;
    sw_pg_pool_stats_t st;

    assert_false(sw_pg_pool_up(pool));
    sw_pg_pool_stats(pool, &st);
    assert_int_equal(st.down, 1);
    if (!t->started) {
        t->started = true;
        assert_int_equal(t->done, 1); /* the query timed out before the connect did */
        assert_int_equal(sw_pg_query(pool, "SELECT 1", 0, NULL, silent_unavail_cb, t), 0);
    }
}

static void test_silent_server(void **state)
{
    test_ctx_t t;
    char conninfo[128];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=u dbname=d sslmode=disable",
             ntohs(sa.sin_port));

    connect_timeout_ms = 400;
    ctx_start(&t, conninfo, 1, 100, silent_state);
    connect_timeout_ms = 5000;
    assert_int_equal(sw_pg_query(t.pool, "SELECT 1", 0, NULL, silent_timeout_cb, &t), 0);
    ctx_finish(&t);
    assert_int_equal(t.done, 2);
    close(fd);
}

/* libpq moves to the next host on a new socket: the pool must watch the new one. */
static void fallback_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, 0);
    assert_string_equal(sw_pg_result_value(res, 0, 0), "1");
    t->done++;
    ctx_close(t);
}

static void test_host_fallback(void **state)
{
    test_ctx_t t;
    char conninfo[1024] = "";
    char host[256], port[64];
    PQconninfoOption *opts;

    (void)state;
    SKIP_WITHOUT_SERVER();
    opts = PQconninfoParse(test_url(), NULL);
    assert_non_null(opts);
    snprintf(host, sizeof(host), "127.0.0.1,localhost");
    snprintf(port, sizeof(port), "%d,5432", closed_port());
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0 && o->val && *o->val)
            snprintf(host, sizeof(host), "127.0.0.1,%s", o->val);
        else if (strcmp(o->keyword, "port") == 0 && o->val && *o->val)
            snprintf(port, sizeof(port), "%d,%s", closed_port(), o->val);
        else if (o->val && *o->val && strcmp(o->keyword, "hostaddr") != 0)
            append_kv(conninfo, sizeof(conninfo), o->keyword, o->val);
    }
    PQconninfoFree(opts);
    append_kv(conninfo, sizeof(conninfo), "host", host);
    append_kv(conninfo, sizeof(conninfo), "port", port);
    ctx_start(&t, conninfo, 1, 5000, NULL);
    assert_int_equal(sw_pg_query(t.pool, "SELECT 1", 0, NULL, fallback_cb, &t), 0);
    ctx_finish(&t);
    assert_int_equal(t.done, 1);
}

/* ---- live server ---- */

static void params_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;

    assert_int_equal(status, 0);
    assert_non_null(res);
    assert_int_equal(sw_pg_result_rows(res), 1);
    assert_int_equal(sw_pg_result_cols(res), 4);
    assert_string_equal(sw_pg_result_value(res, 0, 0), "hello 'world'");
    assert_string_equal(sw_pg_result_value(res, 0, 1), "43");
    assert_string_equal(sw_pg_result_value(res, 0, 2), "t");
    assert_null(sw_pg_result_value(res, 0, 3));
    assert_null(sw_pg_result_value(res, 1, 0));
    assert_int_equal(sw_pg_result_col(res, "b"), 1);
    assert_int_equal(sw_pg_result_col(res, "nope"), -1);
    assert_string_equal(sw_pg_result_colname(res, 2), "c");
    assert_string_equal(sw_pg_result_error(res), "");
    t->done++;
    ctx_close(t);
}

static void test_query_params(void **state)
{
    test_ctx_t t;
    const char *params[3] = {"hello 'world'", "42", NULL};

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 2, 5000, NULL);
    assert_int_equal(sw_pg_query(t.pool,
                                 "SELECT $1::text AS a, $2::int + 1 AS b, $3::text IS NULL AS c,"
                                 " NULL::text AS d",
                                 3, params, params_cb, &t),
                     0);
    ctx_finish(&t);
    assert_int_equal(t.done, 1);
}

/* Parameters far larger than the socket buffer: libpq cannot send them at once, and the
 * rest must go out as the socket turns writable. */
#define BIG_N    4
#define BIG_SIZE (8 << 20)

static void big_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    char want[16];

    assert_int_equal(status, 0);
    snprintf(want, sizeof(want), "%d", BIG_SIZE);
    assert_string_equal(sw_pg_result_value(res, 0, 0), want);
    if (++t->done == BIG_N)
        ctx_close(t);
}

static void test_big_params(void **state)
{
    test_ctx_t t;
    char *big;
    const char *p[1];

    (void)state;
    SKIP_WITHOUT_SERVER();
    big = malloc(BIG_SIZE + 1);
    assert_non_null(big);
    p[0] = big;
    memset(big, 'x', BIG_SIZE);
    big[BIG_SIZE] = '\0';
    ctx_start(&t, test_url(), 1, 20000, NULL);
    for (int i = 0; i < BIG_N; i++)
        assert_int_equal(sw_pg_query(t.pool, "SELECT length($1)", 1, p, big_cb, &t), 0);
    free(big); /* the pool keeps its own copy */
    ctx_finish(&t);
    assert_int_equal(t.done, BIG_N);
}

#define PIPELINE_N 500

typedef struct {
    test_ctx_t *t;
    int i;
} slot_t;

static slot_t pipeline_slots[PIPELINE_N];

static void pipeline_cb(int status, sw_pg_result_t *res, void *payload)
{
    slot_t *s = payload;
    char want[16];

    assert_int_equal(status, 0);
    snprintf(want, sizeof(want), "%d", s->i * 2);
    assert_string_equal(sw_pg_result_value(res, 0, 0), want);
    assert_int_equal(s->t->seen[s->i], 0);
    s->t->seen[s->i] = 1;
    if (++s->t->done == PIPELINE_N)
        ctx_close(s->t);
}

static void pipeline_state(sw_pg_pool_t *pool, void *payload)
{
    test_ctx_t *t = payload;
    sw_pg_pool_stats_t st;

    if (t->started || !all_up(t))
        return;
    t->started = true;
    for (int i = 0; i < PIPELINE_N; i++) {
        char v[16];
        const char *p[1] = {v};
        snprintf(v, sizeof(v), "%d", i);
        pipeline_slots[i] = (slot_t){t, i};
        assert_int_equal(
            sw_pg_query(pool, "SELECT $1::int * 2", 1, p, pipeline_cb, &pipeline_slots[i]), 0);
    }
    /* both connections took a full pipeline at once; the rest waits its turn */
    sw_pg_pool_stats(pool, &st);
    assert_int_equal(st.busy, 2);
    assert_int_equal(st.queued, PIPELINE_N - 2 * 64);
}

static void test_pipeline(void **state)
{
    test_ctx_t t;
    int seen[PIPELINE_N] = {0};

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 2, 10000, pipeline_state);
    t.seen = seen;
    ctx_finish(&t);
    assert_int_equal(t.done, PIPELINE_N);
}

/* More statements than the first statement table holds, each used twice: the table grows
 * and the second round reuses what the first prepared. */
#define STMT_N 40

static void stmt_cb(int status, sw_pg_result_t *res, void *payload)
{
    slot_t *sl = payload;
    char want[16];

    assert_int_equal(status, 0);
    snprintf(want, sizeof(want), "%d", sl->i % STMT_N);
    assert_string_equal(sw_pg_result_value(res, 0, 0), want);
    if (++sl->t->done == 2 * STMT_N)
        ctx_close(sl->t);
}

static void test_many_statements(void **state)
{
    test_ctx_t t;
    static slot_t slots[2 * STMT_N];

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 1, 5000, NULL);
    for (int i = 0; i < 2 * STMT_N; i++) {
        char sql[32];
        snprintf(sql, sizeof(sql), "SELECT %d", i % STMT_N);
        slots[i] = (slot_t){&t, i};
        assert_int_equal(sw_pg_query(t.pool, sql, 0, NULL, stmt_cb, &slots[i]), 0);
    }
    ctx_finish(&t);
    assert_int_equal(t.done, 2 * STMT_N);
}

/* Queries pipelined on one connection, each failing one in the middle. */
typedef struct {
    const char *sql;
    int status;
    const char *value; /* expected first value, or a fragment of the error */
} step_t;

static const step_t error_steps[] = {
    {"SELECT 1/0", SW_EDB, "division by zero"},
    {"SELECT 7", 0, "7"},
    {"SELEC nope", SW_EDB, "syntax error"},
    {"SELECT 8", 0, "8"},
    {"SELECT 1/0", SW_EDB, "division by zero"}, /* already prepared: Execute fails */
    {"SELECT 9", 0, "9"},
};

static void error_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    const step_t *s;

    if (t->phase == 0) {
        /* one connection: answers come in submission order */
        s = &error_steps[t->done];
    } else {
        static const step_t again[] = {{"SELEC nope", SW_EDB, "syntax error"},
                                       {"SELECT 10", 0, "10"}};
        s = &again[t->done - (int)SW_ARRAY_SIZE(error_steps)];
    }
    assert_int_equal(status, s->status);
    assert_non_null(res);
    if (status == 0)
        assert_string_equal(sw_pg_result_value(res, 0, 0), s->value);
    else
        assert_non_null(strstr(sw_pg_result_error(res), s->value));
    t->done++;
    if (t->done == (int)SW_ARRAY_SIZE(error_steps)) {
        /* a failed Parse is forgotten: the next use parses again and reports the same */
        t->phase = 1;
        assert_int_equal(sw_pg_query(t->pool, "SELEC nope", 0, NULL, error_cb, t), 0);
        assert_int_equal(sw_pg_query(t->pool, "SELECT 10", 0, NULL, error_cb, t), 0);
    } else if (t->done == (int)SW_ARRAY_SIZE(error_steps) + 2) {
        ctx_close(t);
    }
}

static void test_sql_error(void **state)
{
    test_ctx_t t;

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 1, 5000, NULL);
    for (size_t i = 0; i < SW_ARRAY_SIZE(error_steps); i++)
        assert_int_equal(sw_pg_query(t.pool, error_steps[i].sql, 0, NULL, error_cb, &t), 0);
    ctx_finish(&t);
    assert_int_equal(t.done, (int)SW_ARRAY_SIZE(error_steps) + 2);
}

static void unique_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;

    assert_non_null(res);
    switch (t->done++) {
    case 0:
        assert_int_equal(status, 0);
        assert_int_equal(sw_pg_result_affected(res), 1);
        break;
    case 1:
        assert_int_equal(status, SW_EUNIQUE);
        assert_true(sw_pg_result_error(res)[0] != '\0');
        break;
    case 2:
        assert_int_equal(status, 0);
        assert_string_equal(sw_pg_result_value(res, 0, 0), "1");
        ctx_close(t);
        break;
    default:
        fail();
    }
}

static void test_unique(void **state)
{
    test_ctx_t t;
    char name[64], conninfo[1024], err[256];
    const char *p[3] = {"node-a", "all", "0.1.0"};

    (void)state;
    SKIP_WITHOUT_SERVER();
    db_create(name, sizeof(name), conninfo, sizeof(conninfo));
    assert_int_equal(sw_migrate_run(conninfo, NULL, err, sizeof(err)), 0);
    ctx_start(&t, conninfo, 1, 5000, NULL);
    const char *ins = "INSERT INTO nodes (name, role, version) VALUES ($1, $2, $3)";
    assert_int_equal(sw_pg_query(t.pool, ins, 3, p, unique_cb, &t), 0);
    assert_int_equal(sw_pg_query(t.pool, ins, 3, p, unique_cb, &t), 0);
    assert_int_equal(sw_pg_query(t.pool, "SELECT count(*) FROM nodes", 0, NULL, unique_cb, &t), 0);
    ctx_finish(&t);
    assert_int_equal(t.done, 3);
    db_drop(name);
}

static void timeout_issue_after_reset(test_ctx_t *t);

static void timeout_after_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;

    assert_int_equal(status, 0);
    assert_string_equal(sw_pg_result_value(res, 0, 0), "1");
    t->done++;
    if (t->done == 1) {
        t->phase = 2; /* now wait for the stuck connection to be reset */
        if (t->saw_partial && all_up(t))
            timeout_issue_after_reset(t);
    } else if (t->done == 5)
        ctx_close(t);
}

static void timeout_issue_after_reset(test_ctx_t *t)
{
    t->phase = 3;
    for (int i = 0; i < 4; i++)
        assert_int_equal(sw_pg_query(t->pool, "SELECT 1", 0, NULL, timeout_after_cb, t), 0);
}

static void timeout_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;

    assert_int_equal(status, -ETIMEDOUT);
    assert_null(res);
    t->phase = 1;
    /* the other connection answers while this one is stuck behind pg_sleep */
    assert_int_equal(sw_pg_query(t->pool, "SELECT 1", 0, NULL, timeout_after_cb, t), 0);
}

static void timeout_state(sw_pg_pool_t *pool, void *payload)
{
    test_ctx_t *t = payload;

    if (!all_up(t)) {
        t->saw_partial = true;
        return;
    }
    if (!t->started) {
        t->started = true;
        t->saw_partial = false;
        assert_int_equal(sw_pg_query(pool, "SELECT pg_sleep(2)", 0, NULL, timeout_cb, t), 0);
        return;
    }
    /* back to full strength after the reset */
    if (t->phase == 2 && t->saw_partial)
        timeout_issue_after_reset(t);
}

static void test_timeout(void **state)
{
    test_ctx_t t;

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 2, 200, timeout_state);
    ctx_finish(&t);
    assert_int_equal(t.phase, 3);
    assert_int_equal(t.done, 5);
}

/* The server ends the session under a running query: it fails with SW_EUNAVAIL and the
 * pool reconnects by itself. */
static void reconnect_final_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, 0);
    assert_string_equal(sw_pg_result_value(res, 0, 0), "1");
    t->done++;
    ctx_close(t);
}

static void reconnect_sleep_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, SW_EUNAVAIL);
    assert_null(res);
    t->done++;
}

static void reconnect_pid_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    const char *p[1];

    assert_int_equal(status, 0);
    p[0] = sw_pg_result_value(res, 0, 0);
    assert_non_null(p[0]);
    t->done++;
    t->phase = 1;
    assert_int_equal(sw_pg_query(t->pool, "SELECT pg_sleep(5)", 0, NULL, reconnect_sleep_cb, t), 0);
    /* a blocking call on the loop is fine in a test */
    PGconn *pg = admin_connect();
    PGresult *r =
        PQexecParams(pg, "SELECT pg_terminate_backend($1::int)", 1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    PQfinish(pg);
}

static void reconnect_state(sw_pg_pool_t *pool, void *payload)
{
    test_ctx_t *t = payload;

    if (!sw_pg_pool_up(pool)) {
        if (t->phase == 1)
            t->saw_down = true;
        return;
    }
    if (!t->started) {
        t->started = true;
        assert_int_equal(sw_pg_query(pool, "SELECT pg_backend_pid()", 0, NULL, reconnect_pid_cb, t),
                         0);
    } else if (t->saw_down && t->phase == 1) {
        t->phase = 2;
        assert_int_equal(sw_pg_query(pool, "SELECT 1", 0, NULL, reconnect_final_cb, t), 0);
    }
}

static void test_reconnect(void **state)
{
    test_ctx_t t;

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 1, 10000, reconnect_state);
    ctx_finish(&t);
    assert_true(t.saw_down);
    assert_int_equal(t.done, 3);
}

/* A result that comes after its query timed out is dropped, and the connection carries on
 * (it is reset only when the answer is a whole timeout late). */
static void late_after_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, 0);
    assert_string_equal(sw_pg_result_value(res, 0, 0), "1");
    t->done++;
    ctx_close(t);
}

static void late_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, -ETIMEDOUT);
    assert_null(res);
    t->done++;
    /* waits behind the slow one on the only connection, then runs there */
    assert_int_equal(sw_pg_query(t->pool, "SELECT 1", 0, NULL, late_after_cb, t), 0);
}

static void late_state(sw_pg_pool_t *pool, void *payload)
{
    test_ctx_t *t = payload;

    if (!sw_pg_pool_up(pool)) {
        t->saw_down = true;
        return;
    }
    if (!t->started) {
        t->started = true;
        assert_int_equal(sw_pg_query(pool, "SELECT pg_sleep(0.6)", 0, NULL, late_cb, t), 0);
    }
}

static void test_late_result(void **state)
{
    test_ctx_t t;

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 1, 500, late_state);
    ctx_finish(&t);
    assert_int_equal(t.done, 2);
    assert_false(t.saw_down);
}

static void cancel_extra_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;
    assert_int_equal(status, SW_ECANCELED);
    assert_null(res);
    assert_false(t->closed);
    t->cancelled++;
}

static void cancel_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;

    assert_int_equal(status, SW_ECANCELED);
    assert_null(res);
    assert_false(t->closed);
    if (t->cancelled++ == 0) /* a query submitted while closing is cancelled too */
        assert_int_equal(sw_pg_query(t->pool, "SELECT 1", 0, NULL, cancel_extra_cb, t), 0);
}

static void cancel_state(sw_pg_pool_t *pool, void *payload)
{
    test_ctx_t *t = payload;

    if (t->started || !sw_pg_pool_up(pool))
        return;
    t->started = true;
    for (int i = 0; i < 3; i++)
        assert_int_equal(sw_pg_query(pool, "SELECT pg_sleep(1)", 0, NULL, cancel_cb, t), 0);
    ctx_close(t);
}

static void test_close_cancels(void **state)
{
    test_ctx_t t;

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 1, 5000, cancel_state);
    ctx_finish(&t);
    assert_int_equal(t.cancelled, 4);
}

static void limit_cb(int status, sw_pg_result_t *res, void *payload)
{
    test_ctx_t *t = payload;

    (void)res;
    if (status == SW_ELIMIT)
        t->phase++;
    else
        assert_int_equal(status, 0);
    if (++t->done == t->expected)
        ctx_close(t);
}

static void test_queue_limit(void **state)
{
    test_ctx_t t;
    const int n = 10001;

    (void)state;
    SKIP_WITHOUT_SERVER();
    ctx_start(&t, test_url(), 1, 20000, NULL);
    t.expected = n;
    /* everything queues while the connection is still being made */
    for (int i = 0; i < n; i++)
        assert_int_equal(sw_pg_query(t.pool, "SELECT 1", 0, NULL, limit_cb, &t), 0);
    ctx_finish(&t);
    assert_int_equal(t.done, n);
    assert_int_equal(t.phase, 1);
}

typedef struct {
    const char *conninfo;
    int rc;
    int applied;
    char err[256];
} migrate_job_t;

static void *migrate_thread(void *arg)
{
    migrate_job_t *j = arg;
    j->rc = sw_migrate_run(j->conninfo, &j->applied, j->err, sizeof(j->err));
    return NULL;
}

static void test_migrate(void **state)
{
    char name[64], conninfo[1024];
    migrate_job_t jobs[4];
    pthread_t threads[4];
    int total = 0;

    (void)state;
    SKIP_WITHOUT_SERVER();
    db_create(name, sizeof(name), conninfo, sizeof(conninfo));
    /* daemons starting together on an empty database: each migration applies once */
    for (int i = 0; i < 4; i++) {
        jobs[i] = (migrate_job_t){.conninfo = conninfo, .applied = -1};
        assert_int_equal(pthread_create(&threads[i], NULL, migrate_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        if (jobs[i].rc != 0)
            fail_msg("migrate: %s", jobs[i].err);
        total += jobs[i].applied;
    }
    assert_int_equal(total, (int)sw_migrations_count);

    migrate_job_t again = {.conninfo = conninfo, .applied = -1};
    migrate_thread(&again);
    assert_int_equal(again.rc, 0);
    assert_int_equal(again.applied, 0);
    db_drop(name);
}

int main(void)
{
    // clang-format off
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_sorted),
        cmocka_unit_test(test_migrate_unreachable),
        cmocka_unit_test(test_pool_down),
        cmocka_unit_test(test_query_einval),
        cmocka_unit_test(test_silent_server),
        cmocka_unit_test(test_host_fallback),
        cmocka_unit_test(test_query_params),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_big_params),
        cmocka_unit_test(test_many_statements),
        cmocka_unit_test(test_sql_error),
        cmocka_unit_test(test_unique),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_late_result),
        cmocka_unit_test(test_close_cancels),
        cmocka_unit_test(test_queue_limit),
        cmocka_unit_test(test_migrate),
    };
    // clang-format on
    return cmocka_run_group_tests(tests, NULL, NULL);
}
