/* A Redis connection's lifetime: name lookup, connect, AUTH/SELECT handshake, per-command
 * deadlines, and reconnect with jittered backoff. One function moves it between states. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "slipway/common.h"
#include "slipway/log.h"

#include "internal.h"

#define BACKOFF_MAX_MS 5000

static void on_timer(uv_timer_t *t);

static const char *const conn_names[REDIS_CONN_KIND_MAX] = {"command", "subscriber"};

/* The one place a connection changes state; reports up/down flips to the log and on_state. */
void sw_redis__conn_set_state(redis_conn_t *c, redis_conn_state_t state)
{
    sw_redis_t *r = c->r;
    bool was_up = c->state == REDIS_CONN_UP;
    c->state = state;
    if (was_up == (state == REDIS_CONN_UP) || r->closing)
        return;
    if (state == REDIS_CONN_UP)
        sw_info("redis: %s connection up", conn_names[c->kind]);
    else
        sw_warn("redis: %s connection down: %s", conn_names[c->kind], c->reason);
    if (r->on_state)
        r->on_state(r, r->payload);
}

static uint64_t rng_next(sw_redis_t *r)
{
    /* xorshift64*: jitter only needs to spread reconnecting clients apart. */
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 2685821657736338717ULL;
}

/* Goes DOWN and schedules the next attempt after a jittered, doubling delay. */
static void conn_retry(redis_conn_t *c)
{
    sw_redis_t *r = c->r;
    uint32_t base = c->backoff_ms;
    c->backoff_ms = SW_MIN(base * 2, BACKOFF_MAX_MS);
    sw_redis__conn_set_state(c, REDIS_CONN_DOWN);
    if (r->closing)
        return;
    uint32_t delay = base / 2 + (uint32_t)(rng_next(r) % (base / 2 + 1));
    uv_timer_start(&c->timer, on_timer, delay, 0);
}

/* hiredis is tearing the context down by itself (EOF, error): forget it now. */
void sw_redis__conn_lost(redis_conn_t *c, const redisAsyncContext *ac)
{
    snprintf(c->reason, sizeof(c->reason), "%s",
             ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
    c->ac = NULL;
    conn_retry(c);
}

/* Marks a live connection dead; the reaper frees the context outside any hiredis callback. */
void sw_redis__conn_kill(redis_conn_t *c, const char *reason)
{
    if (c->state == REDIS_CONN_DOWN || c->state == REDIS_CONN_DYING)
        return;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    if (!c->ac) {
        conn_retry(c); /* nothing for the reaper to free */
        return;
    }
    uv_timer_stop(&c->timer);
    sw_redis__conn_set_state(c, REDIS_CONN_DYING);
    uv_idle_start(&c->r->reaper, sw_redis__on_reap);
}

/* Frees a DYING connection's context; its pending commands get SW_EUNAVAIL from hiredis. */
void sw_redis__conn_drop(redis_conn_t *c)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    conn_retry(c);
    redisAsyncFree(ac);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redis_cmd_t *cmd = privdata;
    redis_conn_t *c = cmd->conn;
    sw_redis_t *r = c->r;

    assert(c->head == cmd);
    c->head = cmd->next;
    if (!c->head)
        c->tail = NULL;
    c->inflight--;

    /* A NULL reply while the context is still ours: hiredis is freeing it. */
    if (!reply && c->ac == ac)
        sw_redis__conn_lost(c, ac);
    if (cmd->cb) {
        if (r->closing)
            cmd->cb(SW_ECANCELED, NULL, cmd->payload);
        else if (!reply)
            cmd->cb(SW_EUNAVAIL, NULL, cmd->payload);
        else
            sw_redis__deliver_reply(cmd->cb, cmd->payload, reply);
    }
    free(cmd);
}

int sw_redis__conn_send(redis_conn_t *c, sw_redis_cb cb, void *payload, int argc, const char **argv,
                        const size_t *argvlen)
{
    sw_redis_t *r = c->r;
    redis_cmd_t *cmd = sw_calloc(1, sizeof(*cmd));
    cmd->conn = c;
    cmd->cb = cb;
    cmd->payload = payload;
    cmd->deadline = uv_now(r->loop) + r->timeout_ms;
    if (redisAsyncCommandArgv(c->ac, on_reply, cmd, argc, argv, argvlen) != REDIS_OK) {
        free(cmd);
        return SW_EUNAVAIL;
    }
    if (c->tail)
        c->tail->next = cmd;
    else
        c->head = cmd;
    c->tail = cmd;
    c->inflight++;
    /* The timer is armed whenever an UP connection has commands; it re-arms itself lazily. */
    if (c->state == REDIS_CONN_UP && c->head == cmd)
        uv_timer_start(&c->timer, on_timer, r->timeout_ms, 0);
    return 0;
}

static void conn_ready(redis_conn_t *c)
{
    sw_redis_t *r = c->r;
    c->backoff_ms = REDIS_BACKOFF_MIN_MS;
    uv_timer_stop(&c->timer);
    sw_redis__conn_set_state(c, REDIS_CONN_UP);
    if (c->kind != REDIS_CONN_SUB || c->state != REDIS_CONN_UP)
        return;
    for (size_t b = 0; b < REDIS_CHANNEL_BUCKETS; b++)
        for (redis_channel_t *ch = r->channels[b]; ch; ch = ch->next)
            sw_redis__sub_send(c, "SUBSCRIBE", ch);
}

static void on_handshake_reply(int status, const sw_redis_reply_t *reply, void *payload)
{
    redis_conn_t *c = payload;
    /* Any failure status means the connection is already going away. */
    if (status != 0 || c->state != REDIS_CONN_HANDSHAKE)
        return;
    if (reply->type == SW_REDIS_ERROR) {
        char why[100];
        snprintf(why, sizeof(why), "handshake refused: %.*s", (int)SW_MIN(reply->len, 80),
                 reply->str);
        sw_redis__conn_kill(c, why);
        return;
    }
    if (--c->handshake == 0)
        conn_ready(c);
}

static void conn_handshake(redis_conn_t *c)
{
    const redis_url_t *u = &c->r->url;
    const char *argv[3];
    char db[16];

    sw_redis__conn_set_state(c, REDIS_CONN_HANDSHAKE);
    c->handshake = 0;
    if (u->has_password) {
        int argc = 0;
        argv[argc++] = "AUTH";
        if (u->has_user)
            argv[argc++] = u->user;
        argv[argc++] = u->password;
        if (sw_redis__conn_send(c, on_handshake_reply, c, argc, argv, NULL) < 0)
            goto out;
        c->handshake++;
    }
    /* Pub/sub ignores the database, so only the command connection selects one. */
    if (c->kind == REDIS_CONN_CMD && u->db != 0) {
        snprintf(db, sizeof(db), "%ld", u->db);
        argv[0] = "SELECT";
        argv[1] = db;
        if (sw_redis__conn_send(c, on_handshake_reply, c, 2, argv, NULL) < 0)
            goto out;
        c->handshake++;
    }
    if (c->handshake == 0)
        conn_ready(c);
    return;
out:
    sw_redis__conn_kill(c, "cannot queue the handshake");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_conn_t *c = ac->data;
    if (c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns. */
        snprintf(c->reason, sizeof(c->reason), "%s", ac->errstr[0] ? ac->errstr : "refused");
        c->ac = NULL;
        conn_retry(c);
        return;
    }
    if (c->state == REDIS_CONN_CONNECTING)
        conn_handshake(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_conn_t *c = ac->data;
    (void)status;
    if (c->ac == ac)
        sw_redis__conn_lost(c, ac);
}

/* Connects to addr, a numeric address or a socket path, so hiredis never resolves a name. */
static void conn_connect_addr(redis_conn_t *c, const char *addr)
{
    sw_redis_t *r = c->r;
    const redis_url_t *u = &r->url;
    redisAsyncContext *ac;

    if (u->is_unix)
        ac = redisAsyncConnectUnix(addr);
    else
        ac = redisAsyncConnect(addr, u->port);
    if (!ac)
        sw_oom();
    if (ac->err || (!u->is_unix && redisEnableKeepAlive(&ac->c) != REDIS_OK) ||
        sw_redis__sock_attach(c, ac) < 0) {
        snprintf(c->reason, sizeof(c->reason), "%s", ac->errstr[0] ? ac->errstr : "connect");
        redisAsyncFree(ac); /* not attached, no callbacks set: nothing re-enters us */
        conn_retry(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Setting the connect callback also asks the adapter for the first write event. */
    redisAsyncSetConnectCallback(ac, on_connect);
    sw_redis__conn_set_state(c, REDIS_CONN_CONNECTING);
    uv_timer_start(&c->timer, on_timer, r->timeout_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    redis_conn_t *c = sw_container_of(req, redis_conn_t, gai);
    sw_redis_t *r = c->r;
    char ip[INET6_ADDRSTRLEN] = "";

    c->resolving = false;
    /* Each attempt takes the next address, so a name with a dead address still gets through. */
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    struct addrinfo *pick = res;
    for (size_t i = n ? c->attempts++ % n : 0; i > 0; i--)
        pick = pick->ai_next;
    if (pick && pick->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)pick->ai_addr, ip, sizeof(ip));
    else if (pick && pick->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)pick->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    /* Not RESOLVING any more: the deadline passed or we are closing; the result is stale. */
    if (!r->closing && c->state == REDIS_CONN_RESOLVING) {
        if (status == 0 && ip[0]) {
            conn_connect_addr(c, ip);
        } else {
            snprintf(c->reason, sizeof(c->reason), "cannot resolve the host: %s",
                     status < 0 ? uv_strerror(status) : "no address");
            conn_retry(c);
        }
    }
    sw_redis__handle_closed(r); /* last: it frees r when this was the final thing outstanding */
}

void sw_redis__conn_connect(redis_conn_t *c)
{
    sw_redis_t *r = c->r;
    const redis_url_t *u = &r->url;
    unsigned char bin[sizeof(struct in6_addr)];

    if (u->is_unix || inet_pton(AF_INET, u->addr, bin) == 1 ||
        inet_pton(AF_INET6, u->addr, bin) == 1) {
        conn_connect_addr(c, u->addr);
        return;
    }
    if (c->resolving) {
        /* A lookup abandoned at its deadline is still running: wait for it, then retry. */
        conn_retry(c);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(r->loop, &c->gai, on_resolved, u->addr, NULL, &hints);
    if (rc < 0) {
        snprintf(c->reason, sizeof(c->reason), "cannot resolve the host: %s", uv_strerror(rc));
        conn_retry(c);
        return;
    }
    c->resolving = true;
    r->handles++;
    sw_redis__conn_set_state(c, REDIS_CONN_RESOLVING);
    uv_timer_start(&c->timer, on_timer, r->timeout_ms, 0);
}

/* Redis answers in order, so an overdue oldest command means the connection is stuck. */
static void conn_check_deadlines(redis_conn_t *c)
{
    uint64_t now = uv_now(c->r->loop);
    redis_cmd_t *cmd = c->head;
    if (!cmd)
        return;
    if (cmd->deadline > now) {
        uv_timer_start(&c->timer, on_timer, cmd->deadline - now, 0);
        return;
    }
    if (c->ac && sw_fd_ready(c->ac->c.fd, POLLIN)) {
        /* Overdue only because the loop was held up and runs timers before it polls: the
         * answer is waiting. The poll reads it; look again right after. */
        uv_timer_start(&c->timer, on_timer, 1, 0);
        return;
    }
    sw_redis__conn_kill(c, "command timed out");
    /* The FIFO cannot change under us: only hiredis callbacks pop it, and the context is
     * freed by the reaper, not here. */
    for (; cmd && cmd->deadline <= now; cmd = cmd->next) {
        sw_redis_cb cb = cmd->cb;
        cmd->cb = NULL;
        if (cb)
            cb(-ETIMEDOUT, NULL, cmd->payload);
    }
}

static void on_timer(uv_timer_t *t)
{
    redis_conn_t *c = sw_container_of(t, redis_conn_t, timer);
    if (c->r->closing)
        return;
    switch (c->state) {
    case REDIS_CONN_DOWN:
        sw_redis__conn_connect(c);
        break;
    case REDIS_CONN_RESOLVING:
        uv_cancel((uv_req_t *)&c->gai); /* may be too late; on_resolved then drops the result */
        snprintf(c->reason, sizeof(c->reason), "resolving the host timed out");
        conn_retry(c);
        break;
    case REDIS_CONN_CONNECTING:
    case REDIS_CONN_HANDSHAKE:
        sw_redis__conn_kill(c, "connect timed out");
        break;
    case REDIS_CONN_UP:
        conn_check_deadlines(c);
        break;
    default:
        break;
    }
}
