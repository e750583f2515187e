/* Asynchronous Redis client: hiredis driven by a small libuv adapter of our own, command
 * deadlines on one timer per connection, reconnect with jittered backoff, and a second
 * connection reserved for SUBSCRIBE. This file: the client's lifetime, commands and
 * deferred callbacks.
 *
 * hiredis 0.14 rules the Redis files (redis*.c) live by:
 * - a context is never freed from inside one of its own callbacks: a connection found dead
 *   there is marked REDIS_CONN_DYING and the reaper (a uv_idle) frees it on the next turn;
 * - after onConnect(REDIS_ERR) or onDisconnect hiredis frees the context itself, so we forget
 *   it there; when we free it ourselves we forget it first, and callbacks that then arrive
 *   for a context that is no longer c->ac are ignored;
 * - freeing a context calls every pending reply callback with a NULL reply, in order. */
#include "slipway/redis.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include <hiredis/async.h>

#include "slipway/common.h"
#include "slipway/log.h"

#include "internal.h"

/* opts->timeout_ms (0: this default) bounds each command and also connect plus handshake. A
 * blocking command (BLPOP, XREADGROUP BLOCK) must block for less, or it kills the connection. */
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_INFLIGHT       65536

static void defer(sw_redis_t *r, sw_redis_cb cb, void *payload, int status)
{
    redis_cmd_t *cmd = sw_calloc(1, sizeof(*cmd));
    cmd->cb = cb;
    cmd->payload = payload;
    cmd->status = status;
    if (r->deferred_tail)
        r->deferred_tail->next = cmd;
    else
        r->deferred_head = cmd;
    r->deferred_tail = cmd;
    uv_idle_start(&r->reaper, sw_redis__on_reap);
}

/* Delivers what is queued now; callbacks queued meanwhile wait for the next turn. */
static void deliver_deferred(sw_redis_t *r)
{
    redis_cmd_t *cmd = r->deferred_head;
    r->deferred_head = r->deferred_tail = NULL;
    while (cmd) {
        redis_cmd_t *next = cmd->next;
        cmd->cb(cmd->status, NULL, cmd->payload);
        free(cmd);
        cmd = next;
    }
}

/* ---- commands ----------------------------------------------------------------------------- */

static bool word_is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && strncasecmp(s, word, len) == 0;
}

/* Commands that would break the shared connection: pub/sub and MONITOR leave the one reply per
 * command order the FIFO mirrors, CLIENT REPLY silences replies, and SELECT, RESET, HELLO and
 * QUIT change or end the session every other caller is using. */
static bool breaks_connection(int argc, const char **argv, const size_t *argvlen)
{
    static const char *const banned[] = {
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
        "MONITOR",   "SELECT",     "RESET",      "HELLO",       "QUIT"};
    size_t len0 = argvlen ? argvlen[0] : strlen(argv[0]);
    for (size_t i = 0; i < SW_ARRAY_SIZE(banned); i++)
        if (word_is(argv[0], len0, banned[i]))
            return true;
    if (argc >= 2 && word_is(argv[0], len0, "CLIENT")) {
        size_t len1 = argvlen ? argvlen[1] : strlen(argv[1]);
        return word_is(argv[1], len1, "REPLY");
    }
    return false;
}

int sw_redis_command(sw_redis_t *r, sw_redis_cb cb, void *payload, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (!r || !cb || argc <= 0 || !argv || !argv[0])
        return -EINVAL;
    if (breaks_connection(argc, argv, argvlen))
        return -EINVAL;
    redis_conn_t *c = &r->conns[REDIS_CONN_CMD];
    if (r->closing) {
        defer(r, cb, payload, SW_ECANCELED);
        return 0;
    }
    if (c->state != REDIS_CONN_UP) {
        defer(r, cb, payload, SW_EUNAVAIL);
        return 0;
    }
    if (c->inflight >= MAX_INFLIGHT)
        return SW_ELIMIT;
    if (sw_redis__conn_send(c, cb, payload, argc, argv, argvlen) < 0)
        defer(r, cb, payload, SW_EUNAVAIL);
    return 0;
}

bool sw_redis_up(const sw_redis_t *r)
{
    return r && !r->closing && r->conns[REDIS_CONN_CMD].state == REDIS_CONN_UP;
}

bool sw_redis_subscriber_up(const sw_redis_t *r)
{
    return r && !r->closing && r->conns[REDIS_CONN_SUB].state == REDIS_CONN_UP;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

void sw_redis__handle_closed(sw_redis_t *r)
{
    if (--r->handles > 0 || !r->finalizing)
        return;
    void (*on_closed)(void *) = r->on_closed;
    void *payload = r->closed_payload;
    for (size_t b = 0; b < REDIS_CHANNEL_BUCKETS; b++) {
        redis_channel_t *ch = r->channels[b];
        while (ch) {
            redis_channel_t *next = ch->next;
            free(ch);
            ch = next;
        }
    }
    explicit_bzero(&r->url, sizeof(r->url));
    free(r);
    if (on_closed)
        on_closed(payload);
}

static void timer_closed(uv_handle_t *h)
{
    redis_conn_t *c = sw_container_of((uv_timer_t *)h, redis_conn_t, timer);
    sw_redis__handle_closed(c->r);
}

static void reaper_closed(uv_handle_t *h)
{
    sw_redis__handle_closed(sw_container_of((uv_idle_t *)h, sw_redis_t, reaper));
}

static void finish_close(sw_redis_t *r)
{
    for (int k = 0; k < REDIS_CONN_KIND_MAX; k++) {
        redis_conn_t *c = &r->conns[k];
        uv_timer_stop(&c->timer);
        if (c->resolving)
            uv_cancel((uv_req_t *)&c->gai);
        for (redis_cmd_t *cmd = c->head; cmd; cmd = cmd->next) {
            sw_redis_cb cb = cmd->cb;
            cmd->cb = NULL;
            if (cb)
                cb(SW_ECANCELED, NULL, cmd->payload);
        }
        if (c->ac) {
            redisAsyncContext *ac = c->ac;
            c->ac = NULL;
            sw_redis__conn_set_state(c, REDIS_CONN_DOWN); /* silent: closing */
            redisAsyncFree(ac);
        }
    }
    /* Callbacks above may queue more (they fail with SW_ECANCELED); drain them all. */
    while (r->deferred_head)
        deliver_deferred(r);
    r->finalizing = true;
    for (int k = 0; k < REDIS_CONN_KIND_MAX; k++)
        uv_close((uv_handle_t *)&r->conns[k].timer, timer_closed);
    uv_close((uv_handle_t *)&r->reaper, reaper_closed);
}

void sw_redis__on_reap(uv_idle_t *h)
{
    sw_redis_t *r = sw_container_of(h, sw_redis_t, reaper);
    deliver_deferred(r);
    if (r->closing) {
        finish_close(r);
        return;
    }
    for (int k = 0; k < REDIS_CONN_KIND_MAX; k++)
        if (r->conns[k].state == REDIS_CONN_DYING)
            sw_redis__conn_drop(&r->conns[k]);
    if (!r->deferred_head && !r->closing)
        uv_idle_stop(h);
}

int sw_redis_new(sw_redis_t **out, uv_loop_t *loop, const sw_redis_opts_t *opts)
{
    if (!out || !loop || !opts)
        return -EINVAL;
    redis_url_t url;
    int rc = sw_redis__parse_url(opts->url, &url, NULL, 0);
    if (rc < 0) {
        explicit_bzero(&url, sizeof(url));
        return rc;
    }

    /* Once per process: a Redis without a password is open to every process on the host
     * that reaches it, builds and app instances included. */
    static bool warned;
    if (!url.has_password && !warned) {
        warned = true;
        sw_log_kv(SW_LOG_WARN, NULL,
                  "SLIPWAY_REDIS_URL has no password: builds and app instances on this host may "
                  "reach Redis as slipwayd does; set requirepass and put it in the URL",
                  NULL);
    }
    sw_redis_t *r = sw_calloc(1, sizeof(*r));
    r->loop = loop;
    r->url = url;
    explicit_bzero(&url, sizeof(url));
    r->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    r->on_state = opts->on_state;
    r->payload = opts->payload;
    r->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
    if (r->rng == 0)
        r->rng = 1;
    uv_idle_init(loop, &r->reaper);
    r->handles++;
    for (int k = 0; k < REDIS_CONN_KIND_MAX; k++) {
        redis_conn_t *c = &r->conns[k];
        c->r = r;
        c->kind = (redis_conn_kind_t)k;
        c->state = REDIS_CONN_DOWN;
        c->backoff_ms = REDIS_BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->timer);
        r->handles++;
    }
    for (int k = 0; k < REDIS_CONN_KIND_MAX; k++)
        sw_redis__conn_connect(&r->conns[k]);
    *out = r;
    return 0;
}

void sw_redis_close(sw_redis_t *r, void (*on_closed)(void *payload), void *payload)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->on_closed = on_closed;
    r->closed_payload = payload;
    /* The caller may be inside one of our callbacks, so the work happens on the next turn. */
    uv_idle_start(&r->reaper, sw_redis__on_reap);
}
