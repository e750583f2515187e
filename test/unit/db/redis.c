/* Tests for src/db/redis.c. URL checks and the no-server cases always run; the rest talk to a
 * real redis-server named by SLIPWAY_TEST_REDIS_URL and skip without it. The restart and
 * AUTH tests start their own redis-server on a free port. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/common.h"
#include "slipway/redis.h"

extern char **environ;

/* ---- harness ------------------------------------------------------------------------------ */

typedef struct {
    uv_loop_t loop;
    sw_redis_t *r;
    int state_calls;
    bool closed;
} fx_t;

typedef struct {
    int calls;
    int status;
    sw_redis_type_t type;
    long long integer;
    char str[512];
    size_t len;
    size_t elements;
    uint64_t at_ms; /* when the callback ran */
    bool up_at_call;
    fx_t *fx;
} result_t;

static void on_state(sw_redis_t *r, void *payload)
{
    fx_t *fx = payload;
    (void)r;
    fx->state_calls++;
}

static void on_closed(void *payload)
{
    fx_t *fx = payload;
    fx->closed = true;
}

static void fx_open(fx_t *fx, const char *url, uint32_t timeout_ms)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    sw_redis_opts_t opts = {
        .url = url, .timeout_ms = timeout_ms, .on_state = on_state, .payload = fx};
    assert_int_equal(sw_redis_new(&fx->r, &fx->loop, &opts), 0);
}

/* Closes the client, runs the loop dry and insists that nothing was left open. */
static void fx_close(fx_t *fx)
{
    sw_redis_close(fx->r, on_closed, fx);
    assert_false(fx->closed); /* on_closed comes from the loop, never from sw_redis_close */
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_true(fx->closed);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void watchdog_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void watchdog_closed(uv_handle_t *h)
{
    (void)h;
}

typedef bool (*cond_fn)(void *arg);

/* Runs the loop until cond holds or ms pass; returns cond's last value. */
static bool run_until(uv_loop_t *loop, cond_fn cond, void *arg, uint64_t ms)
{
    uv_timer_t t;
    bool expired = false;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, watchdog_cb, ms, 0);
    while (!cond(arg) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, watchdog_closed);
    uv_run(loop, UV_RUN_NOWAIT);
    return cond(arg);
}

static bool is_up(void *arg)
{
    return sw_redis_up(((fx_t *)arg)->r);
}

static bool both_up(void *arg)
{
    fx_t *fx = arg;
    return sw_redis_up(fx->r) && sw_redis_subscriber_up(fx->r);
}

static bool called(void *arg)
{
    return ((result_t *)arg)->calls > 0;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Lets the loop run for ms: for the few waits that have no event to wait on. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    run_until(loop, never, NULL, ms);
}

static void record_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    result_t *res = payload;
    res->calls++;
    res->status = status;
    res->at_ms = uv_now(&res->fx->loop);
    res->up_at_call = sw_redis_up(res->fx->r);
    assert_true(status == 0 ? reply != NULL : reply == NULL);
    if (!reply)
        return;
    res->type = reply->type;
    res->integer = reply->integer;
    res->elements = reply->elements;
    res->len = reply->len;
    if (reply->str) {
        assert_true(reply->len < sizeof(res->str));
        memcpy(res->str, reply->str, reply->len);
        res->str[reply->len] = '\0';
    }
}

/* Sends a command given as NULL-terminated strings and waits for its callback. */
static void cmd_wait(fx_t *fx, result_t *res, ...)
{
    const char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, res);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    memset(res, 0, sizeof(*res));
    res->fx = fx;
    assert_int_equal(sw_redis_command(fx->r, record_cb, res, argc, argv, NULL), 0);
    assert_int_equal(res->calls, 0); /* never synchronous */
    assert_true(run_until(&fx->loop, called, res, 5000));
    assert_int_equal(res->calls, 1);
}

static const char *server_url(void)
{
    const char *url = getenv("SLIPWAY_TEST_REDIS_URL");
    return url && *url ? url : NULL;
}

/* A TCP port nothing listens on right now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts a throwaway redis-server in the foreground; the caller reaps it. */
static pid_t spawn_redis(int port, const char *opt, const char *value)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    const char *argv[] = {"redis-server", "--port", portstr,  "--save",    "",
                          "--appendonly", "no",     "--bind", "127.0.0.1", "--loglevel",
                          "warning",      opt,      value,    NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    /* Its banner would bury the test output. */
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawnp(&pid, "redis-server", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    return pid;
}

static void reap_redis(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &st, 0), pid);
}

/* ---- URL checks --------------------------------------------------------------------------- */

static void test_url_check(void **state)
{
    (void)state;
    static const char *const good[] = {
        "redis://localhost",
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://redis.internal:7000/3",
        "REDIS://Host-1.example_x:1/15",
        "redis://:secret@localhost",
        "redis://:s%40c%3Aret@localhost:6380/2",
        "redis://:p@ss@localhost",
        "redis://default:secret@localhost/0",
        "redis://[::1]:6379/1",
        "redis://[::1]",
        "unix:///run/redis/redis.sock",
    };
    static const char *const bad[] = {
        "",
        "localhost:6379",
        "http://localhost",
        "rediss://localhost",
        "redis://",
        "redis://:6379",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:99999999",
        "redis://host:",
        "redis://host:12ab",
        "redis://host/x",
        "redis://host/1/2",
        "redis://host/-1",
        "redis://host/?db=1",
        "redis://host#frag",
        "redis://ho st",
        "redis://ho\nst",
        "redis://::1:6379",
        "redis://[::1",
        "redis://[zz::1]",
        "redis://[::1]x",
        "redis://secret@host",
        "redis://:@host",
        "redis://:bad%zzescape@host",
        "redis://:nul%00@host",
        "redis://:trunc%4@host",
        "redis://h!st",
        "unix://relative/path",
        "unix://",
        "unix:///tmp/x?db=1",
    };
    char err[256];

    for (size_t i = 0; i < SW_ARRAY_SIZE(good); i++) {
        err[0] = '\0';
        int rc = sw_redis_url_check(good[i], err, sizeof(err));
        if (rc != 0)
            fail_msg("rejected good URL %s: %s", good[i], err);
    }
    for (size_t i = 0; i < SW_ARRAY_SIZE(bad); i++) {
        err[0] = '\0';
        if (sw_redis_url_check(bad[i], err, sizeof(err)) != -EINVAL)
            fail_msg("accepted bad URL %s", bad[i]);
        assert_true(strncmp(err, "redis URL: ", 11) == 0);
    }
    assert_int_equal(sw_redis_url_check(NULL, err, sizeof(err)), -EINVAL);
    assert_int_equal(sw_redis_url_check("", NULL, 0), -EINVAL);

    /* A too-long unix path, a too-long URL. */
    char big[4096];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "unix:///", 8);
    big[200] = '\0';
    assert_int_equal(sw_redis_url_check(big, err, sizeof(err)), -EINVAL);
    big[200] = 'a';
    memcpy(big, "redis://", 8);
    assert_int_equal(sw_redis_url_check(big, err, sizeof(err)), -EINVAL);

    /* The message never repeats the password, even when the password is the problem. */
    assert_int_equal(sw_redis_url_check("redis://:hunter2%zz@localhost", err, sizeof(err)),
                     -EINVAL);
    assert_null(strstr(err, "hunter2"));
    assert_int_equal(sw_redis_url_check("redis://:hunter2@localhost:99999", err, sizeof(err)),
                     -EINVAL);
    assert_null(strstr(err, "hunter2"));

    /* A bad URL is refused by sw_redis_new as well, with nothing allocated. */
    uv_loop_t loop;
    sw_redis_t *r = NULL;
    sw_redis_opts_t opts = {.url = "redis://host:0"};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sw_redis_new(&r, &loop, &opts), -EINVAL);
    assert_null(r);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- without a server --------------------------------------------------------------------- */

static void test_closed_port(void **state)
{
    (void)state;
    char url[64];
    fx_t fx;
    result_t res;

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", free_port());
    fx_open(&fx, url, 500);
    assert_false(sw_redis_up(fx.r));
    assert_false(sw_redis_subscriber_up(fx.r));

    uint64_t t0 = uv_now(&fx.loop);
    cmd_wait(&fx, &res, "PING", NULL);
    assert_int_equal(res.status, SW_EUNAVAIL);
    assert_true(res.at_ms - t0 < 100);

    /* Let a few reconnect attempts fail; it stays down and never claims a transition. */
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    assert_false(run_until(&fx.loop, is_up, &fx, 400));
    assert_int_equal(fx.state_calls, 0);
    cmd_wait(&fx, &res, "PING", NULL);
    assert_int_equal(res.status, SW_EUNAVAIL);

    /* A missing unix socket behaves the same. */
    fx_close(&fx);
    fx_open(&fx, "unix:///nonexistent/slipway-test.sock", 500);
    cmd_wait(&fx, &res, "PING", NULL);
    assert_int_equal(res.status, SW_EUNAVAIL);
    fx_close(&fx);

    /* So does a name that does not resolve; closing with the lookup in flight is clean. */
    fx_open(&fx, "redis://slipway-test.invalid:6379", 300);
    cmd_wait(&fx, &res, "PING", NULL);
    assert_int_equal(res.status, SW_EUNAVAIL);
    assert_false(run_until(&fx.loop, is_up, &fx, 400));
    fx_close(&fx);
    fx_open(&fx, "redis://slipway-test.invalid:6379", 300);
    fx_close(&fx);
}

/* A listener that accepts connections and never says a word: a hung server. */
typedef struct {
    uv_tcp_t server;
    uv_tcp_t clients[32];
    int accepted;
    int want; /* accepted connections run_until waits for */
    int port;
} silent_t;

static void silent_on_conn(uv_stream_t *s, int status)
{
    silent_t *sl = sw_container_of((uv_tcp_t *)s, silent_t, server);
    assert_int_equal(status, 0);
    assert_true(sl->accepted < (int)SW_ARRAY_SIZE(sl->clients));
    uv_tcp_t *c = &sl->clients[sl->accepted++];
    uv_tcp_init(s->loop, c);
    assert_int_equal(uv_accept(s, (uv_stream_t *)c), 0);
}

static void silent_start(uv_loop_t *loop, silent_t *sl)
{
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof(got);
    memset(sl, 0, sizeof(*sl));
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &sl->server);
    assert_int_equal(uv_tcp_bind(&sl->server, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&sl->server, 16, silent_on_conn), 0);
    uv_tcp_getsockname(&sl->server, (struct sockaddr *)&got, &len);
    sl->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void silent_stop(silent_t *sl)
{
    for (int i = 0; i < sl->accepted; i++)
        uv_close((uv_handle_t *)&sl->clients[i], NULL);
    uv_close((uv_handle_t *)&sl->server, NULL);
}

static bool accepted_enough(void *arg)
{
    silent_t *sl = arg;
    return sl->accepted >= sl->want;
}

static void test_hung_server_command_timeout(void **state)
{
    (void)state;
    fx_t fx;
    silent_t sl;
    result_t res;
    char url[64];

    memset(&fx, 0, sizeof(fx));
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    silent_start(&fx.loop, &sl);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", sl.port);
    sw_redis_opts_t opts = {.url = url, .timeout_ms = 200, .on_state = on_state, .payload = &fx};
    assert_int_equal(sw_redis_new(&fx.r, &fx.loop, &opts), 0);

    /* Without a password the TCP connect alone makes it up. */
    assert_true(run_until(&fx.loop, is_up, &fx, 2000));
    assert_true(fx.state_calls >= 1);

    uint64_t t0 = uv_now(&fx.loop);
    result_t second;
    memset(&second, 0, sizeof(second));
    second.fx = &fx;
    const char *argv[] = {"GET", "k"};
    memset(&res, 0, sizeof(res));
    res.fx = &fx;
    assert_int_equal(sw_redis_command(fx.r, record_cb, &res, 2, argv, NULL), 0);
    assert_int_equal(sw_redis_command(fx.r, record_cb, &second, 2, argv, NULL), 0);
    assert_true(run_until(&fx.loop, called, &second, 2000));
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, -ETIMEDOUT);
    assert_false(res.up_at_call);
    assert_true(res.at_ms - t0 >= 190 && res.at_ms - t0 < 600);
    /* Same deadline to the millisecond, or the next one dies with the connection. */
    assert_true(second.status == -ETIMEDOUT || second.status == SW_EUNAVAIL);
    assert_int_equal(second.calls, 1);

    /* It reconnects by itself: a third connection after the command and subscriber ones. */
    sl.want = 3;
    assert_true(run_until(&fx.loop, accepted_enough, &sl, 3000));
    assert_true(run_until(&fx.loop, is_up, &fx, 2000));

    sw_redis_close(fx.r, on_closed, &fx);
    silent_stop(&sl);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_true(fx.closed);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
}

static void test_hung_server_handshake_timeout(void **state)
{
    (void)state;
    fx_t fx;
    silent_t sl;
    char url[96];

    memset(&fx, 0, sizeof(fx));
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    silent_start(&fx.loop, &sl);
    /* The AUTH is never answered, so the connect deadline must tear it down and retry. */
    snprintf(url, sizeof(url), "redis://:pw@127.0.0.1:%d/2", sl.port);
    sw_redis_opts_t opts = {.url = url, .timeout_ms = 150, .on_state = on_state, .payload = &fx};
    assert_int_equal(sw_redis_new(&fx.r, &fx.loop, &opts), 0);
    sl.want = 6; /* three rounds of both connections */
    assert_true(run_until(&fx.loop, accepted_enough, &sl, 4000));
    assert_false(sw_redis_up(fx.r));
    assert_false(sw_redis_subscriber_up(fx.r));
    assert_int_equal(fx.state_calls, 0);

    sw_redis_close(fx.r, on_closed, &fx);
    silent_stop(&sl);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_true(fx.closed);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    fx_t fx;
    char url[64];
    const char *sub[] = {"subscribe", "x"};
    const char *mon[] = {"MONITOR"};
    const char *cr[] = {"client", "reply", "off"};
    const char *sel[] = {"SELECTX", "1"};
    const size_t sel_len[] = {6, 1}; /* "SELECT": argvlen is honoured */
    char longname[300];

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", free_port());
    fx_open(&fx, url, 500);
    assert_int_equal(sw_redis_command(fx.r, record_cb, NULL, 2, sub, NULL), -EINVAL);
    assert_int_equal(sw_redis_command(fx.r, record_cb, NULL, 1, mon, NULL), -EINVAL);
    assert_int_equal(sw_redis_command(fx.r, record_cb, NULL, 3, cr, NULL), -EINVAL);
    assert_int_equal(sw_redis_command(fx.r, record_cb, NULL, 2, sel, sel_len), -EINVAL);
    assert_int_equal(sw_redis_command(fx.r, record_cb, NULL, 0, sub, NULL), -EINVAL);
    assert_int_equal(sw_redis_command(fx.r, NULL, NULL, 2, sub, NULL), -EINVAL);

    memset(longname, 'c', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(sw_redis_subscribe(fx.r, longname, NULL, NULL), -EINVAL);
    assert_int_equal(sw_redis_unsubscribe(fx.r, "nope"), -ENOENT);
    fx_close(&fx);
}

static void msg_count_cb(const char *channel, size_t channel_len, const char *data, size_t len,
                         void *payload)
{
    (void)channel, (void)channel_len, (void)data, (void)len;
    (*(int *)payload)++;
}

static void test_channel_table(void **state)
{
    (void)state;
    fx_t fx;
    char url[64], name[32];
    int n = 0;

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", free_port());
    fx_open(&fx, url, 500);
    assert_int_equal(sw_redis_subscribe(fx.r, "a", msg_count_cb, &n), 0);
    assert_int_equal(sw_redis_subscribe(fx.r, "a", msg_count_cb, &n), -EEXIST);
    assert_int_equal(sw_redis_unsubscribe(fx.r, "a"), 0);
    assert_int_equal(sw_redis_unsubscribe(fx.r, "a"), -ENOENT);
    int i;
    for (i = 0;; i++) {
        snprintf(name, sizeof(name), "ch.%d", i);
        int rc = sw_redis_subscribe(fx.r, name, msg_count_cb, &n);
        if (rc == SW_ELIMIT)
            break;
        assert_int_equal(rc, 0);
        assert_true(i < 100000);
    }
    assert_true(i >= 16);
    assert_int_equal(sw_redis_unsubscribe(fx.r, "ch.7"), 0);
    assert_int_equal(sw_redis_subscribe(fx.r, "again", msg_count_cb, &n), 0);
    fx_close(&fx); /* frees the whole table: ASan would see a leak */
}

/* ---- against a server --------------------------------------------------------------------- */

#define NEED_SERVER()                                                                              \
    const char *url = server_url();                                                                \
    if (!url) {                                                                                    \
        skip();                                                                                    \
    }

static void test_set_get_binary(void **state)
{
    (void)state;
    NEED_SERVER();
    fx_t fx;
    result_t res;
    fx_open(&fx, url, 2000);
    assert_true(run_until(&fx.loop, is_up, &fx, 3000));

    static const char value[] = "a\0b\r\nc\xff";
    const char *argv[] = {"SET", "slipway:test:bin", value};
    size_t lens[] = {3, 16, sizeof(value) - 1};
    memset(&res, 0, sizeof(res));
    res.fx = &fx;
    assert_int_equal(sw_redis_command(fx.r, record_cb, &res, 3, argv, lens), 0);
    assert_true(run_until(&fx.loop, called, &res, 3000));
    assert_int_equal(res.status, 0);
    assert_int_equal(res.type, SW_REDIS_STATUS);
    assert_string_equal(res.str, "OK");

    cmd_wait(&fx, &res, "GET", "slipway:test:bin", NULL);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.type, SW_REDIS_STRING);
    assert_int_equal(res.len, sizeof(value) - 1);
    assert_memory_equal(res.str, value, sizeof(value) - 1);

    cmd_wait(&fx, &res, "DEL", "slipway:test:bin", NULL);
    assert_int_equal(res.type, SW_REDIS_INTEGER);
    assert_int_equal(res.integer, 1);
    cmd_wait(&fx, &res, "GET", "slipway:test:bin", NULL);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.type, SW_REDIS_NIL);
    fx_close(&fx);
}

typedef struct {
    fx_t *fx;
    long long *got;
    int done;
} order_t;

typedef struct {
    order_t *o;
    int index;
} slot_t;

static void order_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    slot_t *s = payload;
    assert_int_equal(status, 0);
    assert_int_equal(reply->type, SW_REDIS_INTEGER);
    s->o->got[s->index] = reply->integer;
    /* Callbacks come in submission order. */
    assert_int_equal(s->o->done, s->index);
    s->o->done++;
}

static bool order_done(void *arg)
{
    order_t *o = arg;
    return o->done == 2000;
}

static void array_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    result_t *res = payload;
    res->calls++;
    res->status = status;
    assert_int_equal(status, 0);
    /* LRANGE of three items, one of them checked deep. */
    assert_int_equal(reply->type, SW_REDIS_ARRAY);
    assert_int_equal(reply->elements, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(reply->element[i]->type, SW_REDIS_STRING);
    assert_int_equal(reply->element[2]->len, 1);
    assert_memory_equal(reply->element[0]->str, "c", 1);
    assert_memory_equal(reply->element[2]->str, "a", 1);
}

static void nested_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    result_t *res = payload;
    res->calls++;
    assert_int_equal(status, 0);
    /* {1, {2, "x", {}}, false, "y"}: nil for false, an empty array inside an array. */
    assert_int_equal(reply->type, SW_REDIS_ARRAY);
    assert_int_equal(reply->elements, 4);
    assert_int_equal(reply->element[0]->type, SW_REDIS_INTEGER);
    assert_int_equal(reply->element[0]->integer, 1);
    const sw_redis_reply_t *inner = reply->element[1];
    assert_int_equal(inner->type, SW_REDIS_ARRAY);
    assert_int_equal(inner->elements, 3);
    assert_int_equal(inner->element[0]->integer, 2);
    assert_int_equal(inner->element[1]->type, SW_REDIS_STRING);
    assert_memory_equal(inner->element[1]->str, "x", 1);
    assert_int_equal(inner->element[2]->type, SW_REDIS_ARRAY);
    assert_int_equal(inner->element[2]->elements, 0);
    assert_int_equal(reply->element[2]->type, SW_REDIS_NIL);
    assert_int_equal(reply->element[3]->type, SW_REDIS_STRING);
    assert_int_equal(reply->element[3]->len, 1);
}

static void test_pipeline_order(void **state)
{
    (void)state;
    NEED_SERVER();
    fx_t fx;
    result_t res;
    enum { N = 2000 };
    static slot_t slots[N];
    static long long got[N];
    order_t o = {.fx = &fx, .got = got};

    fx_open(&fx, url, 3000);
    assert_true(run_until(&fx.loop, is_up, &fx, 3000));
    cmd_wait(&fx, &res, "DEL", "slipway:test:ctr", "slipway:test:list", NULL);

    /* Every caller gets its own answer: INCR makes the n-th reply n. */
    for (int i = 0; i < N; i++) {
        const char *argv[] = {"INCR", "slipway:test:ctr"};
        slots[i] = (slot_t){.o = &o, .index = i};
        assert_int_equal(sw_redis_command(fx.r, order_cb, &slots[i], 2, argv, NULL), 0);
    }
    assert_true(run_until(&fx.loop, order_done, &o, 5000));
    for (int i = 0; i < N; i++)
        assert_int_equal(got[i], i + 1);

    cmd_wait(&fx, &res, "RPUSH", "slipway:test:list", "c", "b", "a", NULL);
    assert_int_equal(res.integer, 3);
    const char *argv[] = {"LRANGE", "slipway:test:list", "0", "-1"};
    memset(&res, 0, sizeof(res));
    assert_int_equal(sw_redis_command(fx.r, array_cb, &res, 4, argv, NULL), 0);
    assert_true(run_until(&fx.loop, called, &res, 3000));
    cmd_wait(&fx, &res, "DEL", "slipway:test:ctr", "slipway:test:list", NULL);

    const char *eval[] = {"EVAL", "return {1, {2, 'x', {}}, false, 'y'}", "0"};
    memset(&res, 0, sizeof(res));
    assert_int_equal(sw_redis_command(fx.r, nested_cb, &res, 3, eval, NULL), 0);
    assert_true(run_until(&fx.loop, called, &res, 3000));
    cmd_wait(&fx, &res, "LRANGE", "slipway:test:nothing", "0", "-1", NULL);
    assert_int_equal(res.type, SW_REDIS_ARRAY);
    assert_int_equal(res.elements, 0);
    fx_close(&fx);
}

static void test_error_reply(void **state)
{
    (void)state;
    NEED_SERVER();
    fx_t fx;
    result_t res;
    fx_open(&fx, url, 2000);
    assert_true(run_until(&fx.loop, is_up, &fx, 3000));
    cmd_wait(&fx, &res, "NOSUCHCOMMAND", "x", NULL);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.type, SW_REDIS_ERROR);
    assert_non_null(strstr(res.str, "ERR"));
    /* An error reply does not hurt the connection. */
    cmd_wait(&fx, &res, "PING", NULL);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.str, "PONG");
    assert_true(sw_redis_up(fx.r));
    fx_close(&fx);
}

typedef struct {
    fx_t *fx;
    result_t *res;
} retry_t;

static void write_until_ok_cb(int status, const sw_redis_reply_t *reply, void *payload);

static void write_again(retry_t *rt)
{
    const char *argv[] = {"SET", "slipway:test:paused", "2"};
    assert_int_equal(sw_redis_command(rt->fx->r, write_until_ok_cb, rt, 3, argv, NULL), 0);
}

static void write_until_ok_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    retry_t *rt = payload;
    if (status != 0) {
        write_again(rt); /* fails fast while down: this spins through the loop, not the stack */
        return;
    }
    rt->res->calls++;
    rt->res->status = status;
    assert_int_equal(reply->type, SW_REDIS_STATUS);
}

static void test_command_timeout(void **state)
{
    (void)state;
    NEED_SERVER();
    fx_t fx;
    result_t res;
    fx_open(&fx, url, 200);
    assert_true(run_until(&fx.loop, is_up, &fx, 3000));
    int calls_before = fx.state_calls;

    /* CLIENT PAUSE stalls writes from every client, this one included, so the SET behind it
     * hangs; pausing only writes spares whoever else uses the server. */
    cmd_wait(&fx, &res, "CLIENT", "PAUSE", "700", "WRITE", NULL);
    assert_int_equal(res.status, 0);
    uint64_t t0 = uv_now(&fx.loop);
    cmd_wait(&fx, &res, "SET", "slipway:test:paused", "1", NULL);
    assert_int_equal(res.status, -ETIMEDOUT);
    assert_true(res.at_ms - t0 >= 190 && res.at_ms - t0 < 500);
    assert_false(res.up_at_call); /* the stuck connection is already written off */
    assert_true(fx.state_calls > calls_before);

    /* Then it reconnects and answers again. */
    result_t ok = {0};
    retry_t rt = {.fx = &fx, .res = &ok};
    write_again(&rt);
    assert_true(run_until(&fx.loop, called, &ok, 5000));
    assert_int_equal(ok.status, 0);
    assert_true(sw_redis_up(fx.r));
    cmd_wait(&fx, &res, "DEL", "slipway:test:paused", NULL);
    assert_int_equal(res.integer, 1);
    fx_close(&fx);
}

typedef struct {
    int count;
    char channel[64];
    char data[64];
    size_t len;
} inbox_t;

static void inbox_cb(const char *channel, size_t channel_len, const char *data, size_t len,
                     void *payload)
{
    inbox_t *in = payload;
    in->count++;
    assert_true(channel_len < sizeof(in->channel) && len < sizeof(in->data));
    memcpy(in->channel, channel, channel_len);
    in->channel[channel_len] = '\0';
    memcpy(in->data, data, len);
    in->len = len;
}

static bool got_message(void *arg)
{
    return ((inbox_t *)arg)->count > 0;
}

/* PUBLISHes until someone received it: a subscription takes effect asynchronously. */
static void publish_until_delivered(fx_t *fx, const char *channel, const char *msg, size_t len,
                                    inbox_t *in)
{
    for (int i = 0; i < 100 && in->count == 0; i++) {
        result_t res;
        memset(&res, 0, sizeof(res));
        res.fx = fx;
        const char *argv[] = {"PUBLISH", channel, msg};
        size_t lens[] = {7, strlen(channel), len};
        assert_int_equal(sw_redis_command(fx->r, record_cb, &res, 3, argv, lens), 0);
        assert_true(run_until(&fx->loop, called, &res, 3000));
        if (res.status == 0 && res.integer > 0) {
            run_until(&fx->loop, got_message, in, 2000);
            break;
        }
        run_for(&fx->loop, 20);
    }
}

static void test_subscribe(void **state)
{
    (void)state;
    NEED_SERVER();
    fx_t fx;
    inbox_t in = {0}, other = {0};
    fx_open(&fx, url, 2000);
    /* Subscribing before the connection is up is fine: it is sent once it is. */
    assert_int_equal(sw_redis_subscribe(fx.r, "slipway:test:chan", inbox_cb, &in), 0);
    assert_true(run_until(&fx.loop, both_up, &fx, 3000));
    assert_int_equal(sw_redis_subscribe(fx.r, "slipway:test:other", inbox_cb, &other), 0);

    static const char msg[] = "hello\0world";
    publish_until_delivered(&fx, "slipway:test:chan", msg, sizeof(msg) - 1, &in);
    assert_int_equal(in.count, 1);
    assert_string_equal(in.channel, "slipway:test:chan");
    assert_int_equal(in.len, sizeof(msg) - 1);
    assert_memory_equal(in.data, msg, sizeof(msg) - 1);
    assert_int_equal(other.count, 0);

    publish_until_delivered(&fx, "slipway:test:other", "x", 1, &other);
    assert_int_equal(other.count, 1);
    assert_int_equal(in.count, 1);

    /* After unsubscribing nothing more arrives. */
    assert_int_equal(sw_redis_unsubscribe(fx.r, "slipway:test:chan"), 0);
    result_t res;
    for (int i = 0; i < 50; i++) {
        cmd_wait(&fx, &res, "PUBLISH", "slipway:test:chan", "late", NULL);
        if (res.integer == 0)
            break;
        run_for(&fx.loop, 10);
    }
    assert_int_equal(res.integer, 0);
    assert_int_equal(in.count, 1);

    /* Unsubscribe and subscribe again back to back: the new subscription must hold. */
    assert_int_equal(sw_redis_subscribe(fx.r, "slipway:test:chan", inbox_cb, &in), 0);
    assert_int_equal(sw_redis_unsubscribe(fx.r, "slipway:test:chan"), 0);
    assert_int_equal(sw_redis_subscribe(fx.r, "slipway:test:chan", inbox_cb, &in), 0);
    in.count = 0;
    publish_until_delivered(&fx, "slipway:test:chan", "again", 5, &in);
    assert_int_equal(in.count, 1);
    assert_memory_equal(in.data, "again", 5);
    fx_close(&fx);
}

static void cancel_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    result_t *res = payload;
    res->calls++;
    res->status = status;
    assert_null(reply);
}

static void close_from_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    fx_t *fx = payload;
    (void)reply;
    assert_int_equal(status, 0);
    sw_redis_close(fx->r, on_closed, fx);
}

static void test_close_cancels(void **state)
{
    (void)state;
    NEED_SERVER();
    fx_t fx;
    enum { N = 50 };
    result_t res[N];
    fx_open(&fx, url, 2000);
    assert_true(run_until(&fx.loop, is_up, &fx, 3000));

    /* Closing from inside a reply callback cancels everything still in flight. */
    const char *ping[] = {"PING"};
    memset(res, 0, sizeof(res));
    assert_int_equal(sw_redis_command(fx.r, close_from_cb, &fx, 1, ping, NULL), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(sw_redis_command(fx.r, cancel_cb, &res[i], 1, ping, NULL), 0);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_true(fx.closed);
    for (int i = 0; i < N; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_int_equal(res[i].status, SW_ECANCELED);
    }
    assert_int_equal(uv_loop_close(&fx.loop), 0);

    /* Closing right after sending: the command is cancelled, not lost. */
    fx_open(&fx, url, 2000);
    assert_true(run_until(&fx.loop, is_up, &fx, 3000));
    memset(res, 0, sizeof(res));
    assert_int_equal(sw_redis_command(fx.r, cancel_cb, &res[0], 1, ping, NULL), 0);
    fx_close(&fx);
    assert_int_equal(res[0].calls, 1);
    assert_int_equal(res[0].status, SW_ECANCELED);

    /* Closing while the connect is still in flight. */
    fx_open(&fx, url, 2000);
    fx_close(&fx);
    assert_int_equal(fx.state_calls, 0);
}

static void test_unix_socket(void **state)
{
    (void)state;
    NEED_SERVER();
    (void)url;
    char path[64], sock_url[80];
    snprintf(path, sizeof(path), "/tmp/slipway-test-redis-%d.sock", (int)getpid());
    snprintf(sock_url, sizeof(sock_url), "unix://%s", path);
    pid_t pid = spawn_redis(free_port(), "--unixsocket", path);

    fx_t fx;
    result_t res;
    inbox_t in = {0};
    fx_open(&fx, sock_url, 1000);
    assert_int_equal(sw_redis_subscribe(fx.r, "slipway:test:unix", inbox_cb, &in), 0);
    assert_true(run_until(&fx.loop, both_up, &fx, 5000));
    cmd_wait(&fx, &res, "PING", NULL);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.str, "PONG");
    publish_until_delivered(&fx, "slipway:test:unix", "u", 1, &in);
    assert_int_equal(in.count, 1);
    fx_close(&fx);
    reap_redis(pid);
    unlink(path);
}

static bool down(void *arg)
{
    fx_t *fx = arg;
    return !sw_redis_up(fx->r) && !sw_redis_subscriber_up(fx->r);
}

static void test_server_restart(void **state)
{
    (void)state;
    NEED_SERVER(); /* the test starts its own server, but only where one is expected */
    (void)url;
    int port = free_port();
    char own[64];
    /* A name, not an address: every reconnect goes through the asynchronous lookup. */
    snprintf(own, sizeof(own), "redis://localhost:%d", port);
    pid_t pid = spawn_redis(port, NULL, NULL);

    fx_t fx;
    inbox_t in = {0};
    result_t res;
    fx_open(&fx, own, 1000);
    assert_int_equal(sw_redis_subscribe(fx.r, "slipway:test:restart", inbox_cb, &in), 0);
    assert_true(run_until(&fx.loop, both_up, &fx, 5000));
    publish_until_delivered(&fx, "slipway:test:restart", "one", 3, &in);
    assert_int_equal(in.count, 1);

    /* The server goes away: both connections report down, commands fail fast. */
    int before = fx.state_calls;
    cmd_wait(&fx, &res, "SHUTDOWN", "NOSAVE", NULL);
    assert_int_equal(res.status, SW_EUNAVAIL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(run_until(&fx.loop, down, &fx, 3000));
    assert_true(fx.state_calls >= before + 2);
    cmd_wait(&fx, &res, "PING", NULL);
    assert_int_equal(res.status, SW_EUNAVAIL);

    /* It comes back on the same port: the client reconnects and resubscribes. */
    pid = spawn_redis(port, NULL, NULL);
    assert_true(run_until(&fx.loop, both_up, &fx, 8000));
    in.count = 0;
    publish_until_delivered(&fx, "slipway:test:restart", "two", 3, &in);
    assert_int_equal(in.count, 1);
    assert_memory_equal(in.data, "two", 3);
    fx_close(&fx);
    reap_redis(pid);
}

static void test_auth_and_db(void **state)
{
    (void)state;
    NEED_SERVER();
    (void)url;
    int port = free_port();
    char good[96], wrong[96];
    snprintf(good, sizeof(good), "redis://:s%%40cret@127.0.0.1:%d/3", port);
    snprintf(wrong, sizeof(wrong), "redis://:nope@127.0.0.1:%d/3", port);
    pid_t pid = spawn_redis(port, "--requirepass", "s@cret");

    fx_t fx;
    result_t res;
    inbox_t in = {0};
    fx_open(&fx, good, 1000);
    assert_int_equal(sw_redis_subscribe(fx.r, "slipway:test:auth", inbox_cb, &in), 0);
    assert_true(run_until(&fx.loop, both_up, &fx, 5000));
    cmd_wait(&fx, &res, "CLIENT", "INFO", NULL);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.str, " db=3 "));
    publish_until_delivered(&fx, "slipway:test:auth", "hi", 2, &in);
    assert_int_equal(in.count, 1);
    fx_close(&fx);

    /* A wrong password never comes up. */
    fx_open(&fx, wrong, 1000);
    assert_false(run_until(&fx.loop, is_up, &fx, 600));
    assert_int_equal(fx.state_calls, 0);
    fx_close(&fx);
    reap_redis(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_check),
        cmocka_unit_test(test_closed_port),
        cmocka_unit_test(test_hung_server_command_timeout),
        cmocka_unit_test(test_hung_server_handshake_timeout),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_channel_table),
        cmocka_unit_test(test_set_get_binary),
        cmocka_unit_test(test_pipeline_order),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_command_timeout),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_close_cancels),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_auth_and_db),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
