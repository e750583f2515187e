/* Asynchronous Redis client: hiredis driven by a small libuv adapter of our own, command
 * deadlines on one timer per connection, reconnect with jittered backoff, and a second
 * connection reserved for SUBSCRIBE.
 *
 * hiredis 0.14 rules this file lives by:
 * - a context is never freed from inside one of its own callbacks: a connection found dead
 *   there is marked CONN_DYING and the reaper (a uv_idle) frees it on the next turn;
 * - after onConnect(REDIS_ERR) or onDisconnect hiredis frees the context itself, so we forget
 *   it there; when we free it ourselves we forget it first, and callbacks that then arrive
 *   for a context that is no longer c->ac are ignored;
 * - freeing a context calls every pending reply callback with a NULL reply, in order. */
#include "slipway/redis.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "slipway/common.h"
#include "slipway/log.h"
#include "slipway/percent.h"

/* opts->timeout_ms (0: this default) bounds each command and also connect plus handshake. A
 * blocking command (BLPOP, XREADGROUP BLOCK) must block for less, or it kills the connection. */
#define DEFAULT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define MAX_INFLIGHT       65536
#define URL_MAX            2048
#define HOST_MAX           253
#define SECRET_MAX         512
#define DB_MAX             1000000
#define CHANNEL_LEN_MAX    256
#define CHANNELS_MAX       1024
#define CHANNEL_BUCKETS    64 /* a power of two */

typedef enum { CONN_CMD, CONN_SUB, CONN_KIND_MAX } conn_kind_t;

typedef enum {
    CONN_DOWN,       /* no context; the timer waits out the backoff */
    CONN_RESOLVING,  /* name lookup on the threadpool; the timer is the connect deadline */
    CONN_CONNECTING, /* connect(2) in flight; the timer is the connect deadline */
    CONN_HANDSHAKE,  /* AUTH/SELECT in flight, still under the connect deadline */
    CONN_UP,         /* the timer tracks the oldest command's deadline */
    CONN_DYING,      /* found dead inside hiredis; the reaper frees the context */
    CONN_STATE_MAX
} conn_state_t;

typedef struct conn conn_t;

typedef struct cmd {
    struct cmd *next;
    conn_t *conn;
    sw_redis_cb cb; /* NULL once delivered, so a late reply is dropped */
    void *payload;
    uint64_t deadline; /* uv_now() time */
    int status;        /* for deferred delivery */
} cmd_t;

/* Our hiredis event adapter: one poll handle per context, counted like every other handle. */
typedef struct sock {
    uv_poll_t poll;
    conn_t *conn;
    redisAsyncContext *ac; /* NULL once hiredis has let go of the context */
    int events;
} sock_t;

struct conn {
    sw_redis_t *r;
    conn_kind_t kind;
    conn_state_t state;
    redisAsyncContext *ac;
    uv_timer_t timer;
    uv_getaddrinfo_t gai; /* hiredis would resolve names with a blocking getaddrinfo */
    bool resolving;       /* gai is in flight; it is counted in r->handles until it returns */
    unsigned attempts;    /* picks among a name's addresses */
    cmd_t *head, *tail;   /* mirrors hiredis's reply queue, so head is the next reply */
    size_t inflight;
    unsigned handshake; /* handshake replies still to come */
    uint32_t backoff_ms;
    char reason[128]; /* why the connection last went down, for the log */
};

typedef struct channel {
    struct channel *next;
    sw_redis_message_cb cb;
    void *payload;
    size_t len;
    char name[];
} channel_t;

typedef struct {
    bool is_unix;
    char addr[HOST_MAX + 1]; /* host, or the socket path */
    int port;
    long db;
    bool has_user, has_password;
    char user[SECRET_MAX + 1];
    char password[SECRET_MAX + 1];
} url_t;

struct sw_redis {
    uv_loop_t *loop;
    conn_t conns[CONN_KIND_MAX];
    uv_idle_t reaper; /* delivers deferred callbacks and frees dead contexts */
    cmd_t *deferred_head, *deferred_tail;
    unsigned handles; /* initialised handles whose close callback has not run */
    bool closing, finalizing;
    void (*on_closed)(void *payload);
    void *closed_payload;
    void (*on_state)(sw_redis_t *r, void *payload);
    void *payload;
    uint32_t timeout_ms;
    uint64_t rng;
    url_t url;
    channel_t *channels[CHANNEL_BUCKETS];
    size_t nchannels;
};

static const char *const conn_names[CONN_KIND_MAX] = {"command", "subscriber"};

static void on_timer(uv_timer_t *t);
static void on_reap(uv_idle_t *h);

/* ---- URL ---------------------------------------------------------------------------------- */

static int url_fail(char *err, size_t err_size, const char *msg)
{
    if (err && err_size)
        snprintf(err, err_size, "redis URL: %s", msg);
    return -EINVAL;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

static int parse_userinfo(const char *s, size_t n, url_t *u, char *err, size_t err_size)
{
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return url_fail(err, err_size, "credentials must be written [user]:password@");
    size_t ulen = (size_t)(colon - s);
    size_t plen = n - ulen - 1;
    if (plen == 0)
        return url_fail(err, err_size, "the password is empty");
    if (ulen > 0) {
        if (sw_percent_decode(u->user, sizeof(u->user), s, ulen, 0) < 0)
            return url_fail(err, err_size, "the user name is malformed or too long");
        u->has_user = true;
    }
    if (sw_percent_decode(u->password, sizeof(u->password), colon + 1, plen, 0) < 0)
        return url_fail(err, err_size, "the password has a bad %-escape or is too long");
    u->has_password = true;
    return 0;
}

static int parse_hostport(const char *s, size_t n, url_t *u, char *err, size_t err_size)
{
    const char *host = s, *port = NULL;
    size_t hlen, plen = 0;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return url_fail(err, err_size, "an IPv6 address misses its ']'");
        host = s + 1;
        hlen = (size_t)(close - host);
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0) {
            if (close[1] != ':')
                return url_fail(err, err_size, "unexpected text after the IPv6 address");
            port = close + 2;
            plen = rest - 1;
        }
        char tmp[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(tmp))
            return url_fail(err, err_size, "the IPv6 address is malformed");
        memcpy(tmp, host, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return url_fail(err, err_size, "the IPv6 address is malformed");
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        if (colon) {
            port = colon + 1;
            plen = n - hlen - 1;
            if (memchr(port, ':', plen))
                return url_fail(err, err_size, "IPv6 addresses must be written in brackets");
        }
        if (hlen == 0)
            return url_fail(err, err_size, "the host is missing");
        for (size_t i = 0; i < hlen; i++)
            if (!host_char(host[i]))
                return url_fail(err, err_size, "the host has a character not allowed there");
    }
    if (hlen > HOST_MAX)
        return url_fail(err, err_size, "the host is too long");
    memcpy(u->addr, host, hlen);
    u->addr[hlen] = '\0';

    u->port = 6379;
    if (port) {
        if (!all_digits(port, plen) || plen > 5)
            return url_fail(err, err_size, "the port must be a number from 1 to 65535");
        long p = strtol(port, NULL, 10);
        if (p < 1 || p > 65535)
            return url_fail(err, err_size, "the port must be a number from 1 to 65535");
        u->port = (int)p;
    }
    return 0;
}

static int parse_url(const char *url, url_t *u, char *err, size_t err_size)
{
    static const char redis_scheme[] = "redis://", unix_scheme[] = "unix://";

    memset(u, 0, sizeof(*u));
    if (!url || !*url)
        return url_fail(err, err_size, "it is empty");
    size_t len = strlen(url);
    if (len > URL_MAX)
        return url_fail(err, err_size, "it is too long");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return url_fail(err, err_size, "it contains a space or a control character");

    if (strncasecmp(url, unix_scheme, sizeof(unix_scheme) - 1) == 0) {
        const char *path = url + sizeof(unix_scheme) - 1;
        size_t plen = strlen(path);
        if (path[0] != '/')
            return url_fail(err, err_size, "a unix socket path must be absolute (unix:///path)");
        if (plen >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return url_fail(err, err_size, "the unix socket path is too long");
        if (strpbrk(path, "?#"))
            return url_fail(err, err_size, "unix URLs take no query or fragment");
        u->is_unix = true;
        memcpy(u->addr, path, plen + 1);
        return 0;
    }
    if (strncasecmp(url, "rediss://", 9) == 0)
        return url_fail(err, err_size, "TLS (rediss://) is not supported");
    if (strncasecmp(url, redis_scheme, sizeof(redis_scheme) - 1) != 0)
        return url_fail(err, err_size, "it must start with redis:// or unix://");

    const char *auth = url + sizeof(redis_scheme) - 1;
    if (strpbrk(auth, "?#"))
        return url_fail(err, err_size, "query parameters and fragments are not supported");
    const char *slash = strchr(auth, '/');
    size_t alen = slash ? (size_t)(slash - auth) : strlen(auth);

    /* The last '@' ends the credentials, so an unescaped '@' in a password still works. */
    const char *at = memrchr(auth, '@', alen);
    int rc;
    if (at) {
        rc = parse_userinfo(auth, (size_t)(at - auth), u, err, err_size);
        if (rc < 0)
            return rc;
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    rc = parse_hostport(auth, alen, u, err, err_size);
    if (rc < 0)
        return rc;

    if (slash && slash[1]) {
        size_t dlen = strlen(slash + 1);
        if (!all_digits(slash + 1, dlen) || dlen > 7 || strtol(slash + 1, NULL, 10) > DB_MAX)
            return url_fail(err, err_size, "the database must be a number (redis://host/0)");
        u->db = strtol(slash + 1, NULL, 10);
    }
    return 0;
}

int sw_redis_url_check(const char *url, char *err, size_t err_size)
{
    url_t u;
    int rc = parse_url(url, &u, err, err_size);
    explicit_bzero(&u, sizeof(u));
    return rc;
}

/* ---- replies ------------------------------------------------------------------------------ */

static void count_nodes(const redisReply *rep, size_t *nodes, size_t *ptrs)
{
    (*nodes)++;
    if (rep->type != REDIS_REPLY_ARRAY)
        return;
    *ptrs += rep->elements;
    for (size_t i = 0; i < rep->elements; i++)
        count_nodes(rep->element[i], nodes, ptrs);
}

/* Fills out from rep, taking nodes and element vectors from the cursors into one block. */
static void fill_reply(const redisReply *rep, sw_redis_reply_t *out, sw_redis_reply_t **nodes,
                       const sw_redis_reply_t ***ptrs)
{
    memset(out, 0, sizeof(*out));
    switch (rep->type) {
    case REDIS_REPLY_STRING:
        out->type = SW_REDIS_STRING;
        break;
    case REDIS_REPLY_STATUS:
        out->type = SW_REDIS_STATUS;
        break;
    case REDIS_REPLY_ERROR:
        out->type = SW_REDIS_ERROR;
        break;
    case REDIS_REPLY_INTEGER:
        out->type = SW_REDIS_INTEGER;
        out->integer = rep->integer;
        return;
    case REDIS_REPLY_ARRAY: {
        const sw_redis_reply_t **vec = *ptrs;
        *ptrs += rep->elements;
        out->type = SW_REDIS_ARRAY;
        out->elements = rep->elements;
        out->element = vec;
        for (size_t i = 0; i < rep->elements; i++) {
            sw_redis_reply_t *child = (*nodes)++;
            fill_reply(rep->element[i], child, nodes, ptrs);
            vec[i] = child;
        }
        return;
    }
    default:
        out->type = SW_REDIS_NIL;
        return;
    }
    out->str = rep->str;
    out->len = rep->len;
}

static void deliver_reply(sw_redis_cb cb, void *payload, const redisReply *rep)
{
    sw_redis_reply_t top;
    if (rep->type != REDIS_REPLY_ARRAY) {
        fill_reply(rep, &top, NULL, NULL);
        cb(0, &top, payload);
        return;
    }
    size_t nodes = 0, ptrs = 0;
    count_nodes(rep, &nodes, &ptrs);
    /* One block: nodes first (for alignment), then every element vector. */
    char *block =
        sw_malloc((nodes - 1) * sizeof(sw_redis_reply_t) + ptrs * sizeof(sw_redis_reply_t *));
    sw_redis_reply_t *node_cur = (sw_redis_reply_t *)block;
    const sw_redis_reply_t **ptr_cur =
        (const sw_redis_reply_t **)(block + (nodes - 1) * sizeof(sw_redis_reply_t));
    fill_reply(rep, &top, &node_cur, &ptr_cur);
    cb(0, &top, payload);
    free(block);
}

/* ---- deferred callbacks ------------------------------------------------------------------- */

static void defer(sw_redis_t *r, sw_redis_cb cb, void *payload, int status)
{
    cmd_t *cmd = sw_calloc(1, sizeof(*cmd));
    cmd->cb = cb;
    cmd->payload = payload;
    cmd->status = status;
    if (r->deferred_tail)
        r->deferred_tail->next = cmd;
    else
        r->deferred_head = cmd;
    r->deferred_tail = cmd;
    uv_idle_start(&r->reaper, on_reap);
}

/* Delivers what is queued now; callbacks queued meanwhile wait for the next turn. */
static void deliver_deferred(sw_redis_t *r)
{
    cmd_t *cmd = r->deferred_head;
    r->deferred_head = r->deferred_tail = NULL;
    while (cmd) {
        cmd_t *next = cmd->next;
        cmd->cb(cmd->status, NULL, cmd->payload);
        free(cmd);
        cmd = next;
    }
}

/* ---- the event adapter -------------------------------------------------------------------- */

static void handle_closed(sw_redis_t *r);

static void sock_closed(uv_handle_t *h)
{
    sock_t *s = sw_container_of(h, sock_t, poll);
    sw_redis_t *r = s->conn->r;
    free(s);
    handle_closed(r);
}

static void conn_kill(conn_t *c, const char *reason);

static void sock_poll_cb(uv_poll_t *h, int status, int events)
{
    sock_t *s = sw_container_of(h, sock_t, poll);
    if (status < 0) {
        if (s->ac && s->conn->ac == s->ac)
            conn_kill(s->conn, uv_strerror(status));
        return;
    }
    /* Either call may end with hiredis freeing the context, which clears s->ac. */
    if (s->ac && (events & UV_READABLE))
        redisAsyncHandleRead(s->ac);
    if (s->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(s->ac);
}

static void sock_update(sock_t *s, int events)
{
    s->events = events;
    if (events)
        uv_poll_start(&s->poll, events, sock_poll_cb);
    else
        uv_poll_stop(&s->poll);
}

static void sock_add_read(void *p)
{
    sock_t *s = p;
    sock_update(s, s->events | UV_READABLE);
}

static void sock_del_read(void *p)
{
    sock_t *s = p;
    sock_update(s, s->events & ~UV_READABLE);
}

static void sock_add_write(void *p)
{
    sock_t *s = p;
    sock_update(s, s->events | UV_WRITABLE);
}

static void sock_del_write(void *p)
{
    sock_t *s = p;
    sock_update(s, s->events & ~UV_WRITABLE);
}

/* hiredis calls this just before it closes the fd and frees the context. */
static void sock_cleanup(void *p)
{
    sock_t *s = p;
    s->ac = NULL;
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static int sock_attach(conn_t *c, redisAsyncContext *ac)
{
    sock_t *s = sw_calloc(1, sizeof(*s));
    /* hiredis opens its socket without close-on-exec: a build must never inherit it. */
    int rc = sw_fd_cloexec(ac->c.fd);
    if (rc == 0)
        rc = uv_poll_init(c->r->loop, &s->poll, ac->c.fd);
    if (rc < 0) {
        free(s);
        return rc;
    }
    c->r->handles++;
    s->conn = c;
    s->ac = ac;
    ac->ev.data = s;
    ac->ev.addRead = sock_add_read;
    ac->ev.delRead = sock_del_read;
    ac->ev.addWrite = sock_add_write;
    ac->ev.delWrite = sock_del_write;
    ac->ev.cleanup = sock_cleanup;
    return 0;
}

/* ---- connection state --------------------------------------------------------------------- */

/* The one place a connection changes state; reports up/down flips to the log and on_state. */
static void conn_set_state(conn_t *c, conn_state_t state)
{
    sw_redis_t *r = c->r;
    bool was_up = c->state == CONN_UP;
    c->state = state;
    if (was_up == (state == CONN_UP) || r->closing)
        return;
    if (state == CONN_UP)
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
static void conn_retry(conn_t *c)
{
    sw_redis_t *r = c->r;
    uint32_t base = c->backoff_ms;
    c->backoff_ms = SW_MIN(base * 2, BACKOFF_MAX_MS);
    conn_set_state(c, CONN_DOWN);
    if (r->closing)
        return;
    uint32_t delay = base / 2 + (uint32_t)(rng_next(r) % (base / 2 + 1));
    uv_timer_start(&c->timer, on_timer, delay, 0);
}

/* hiredis is tearing the context down by itself (EOF, error): forget it now. */
static void conn_lost(conn_t *c, const redisAsyncContext *ac)
{
    snprintf(c->reason, sizeof(c->reason), "%s",
             ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed");
    c->ac = NULL;
    conn_retry(c);
}

/* Marks a live connection dead; the reaper frees the context outside any hiredis callback. */
static void conn_kill(conn_t *c, const char *reason)
{
    if (c->state == CONN_DOWN || c->state == CONN_DYING)
        return;
    snprintf(c->reason, sizeof(c->reason), "%s", reason);
    if (!c->ac) {
        conn_retry(c); /* nothing for the reaper to free */
        return;
    }
    uv_timer_stop(&c->timer);
    conn_set_state(c, CONN_DYING);
    uv_idle_start(&c->r->reaper, on_reap);
}

/* Frees a DYING connection's context; its pending commands get SW_EUNAVAIL from hiredis. */
static void conn_drop(conn_t *c)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    conn_retry(c);
    redisAsyncFree(ac);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    cmd_t *cmd = privdata;
    conn_t *c = cmd->conn;
    sw_redis_t *r = c->r;

    assert(c->head == cmd);
    c->head = cmd->next;
    if (!c->head)
        c->tail = NULL;
    c->inflight--;

    /* A NULL reply while the context is still ours: hiredis is freeing it. */
    if (!reply && c->ac == ac)
        conn_lost(c, ac);
    if (cmd->cb) {
        if (r->closing)
            cmd->cb(SW_ECANCELED, NULL, cmd->payload);
        else if (!reply)
            cmd->cb(SW_EUNAVAIL, NULL, cmd->payload);
        else
            deliver_reply(cmd->cb, cmd->payload, reply);
    }
    free(cmd);
}

static int conn_send(conn_t *c, sw_redis_cb cb, void *payload, int argc, const char **argv,
                     const size_t *argvlen)
{
    sw_redis_t *r = c->r;
    cmd_t *cmd = sw_calloc(1, sizeof(*cmd));
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
    if (c->state == CONN_UP && c->head == cmd)
        uv_timer_start(&c->timer, on_timer, r->timeout_ms, 0);
    return 0;
}

static void on_message(redisAsyncContext *ac, void *reply, void *privdata);

static void sub_send(conn_t *c, const char *verb, const channel_t *ch)
{
    const char *argv[2] = {verb, ch->name};
    size_t lens[2] = {strlen(verb), ch->len};
    /* Failure means the context is going away, and the next connection resubscribes. */
    (void)redisAsyncCommandArgv(c->ac, on_message, c, 2, argv, lens);
}

static void conn_ready(conn_t *c)
{
    sw_redis_t *r = c->r;
    c->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_stop(&c->timer);
    conn_set_state(c, CONN_UP);
    if (c->kind != CONN_SUB || c->state != CONN_UP)
        return;
    for (size_t b = 0; b < CHANNEL_BUCKETS; b++)
        for (channel_t *ch = r->channels[b]; ch; ch = ch->next)
            sub_send(c, "SUBSCRIBE", ch);
}

static void on_handshake_reply(int status, const sw_redis_reply_t *reply, void *payload)
{
    conn_t *c = payload;
    /* Any failure status means the connection is already going away. */
    if (status != 0 || c->state != CONN_HANDSHAKE)
        return;
    if (reply->type == SW_REDIS_ERROR) {
        char why[100];
        snprintf(why, sizeof(why), "handshake refused: %.*s", (int)SW_MIN(reply->len, 80),
                 reply->str);
        conn_kill(c, why);
        return;
    }
    if (--c->handshake == 0)
        conn_ready(c);
}

static void conn_handshake(conn_t *c)
{
    const url_t *u = &c->r->url;
    const char *argv[3];
    char db[16];

    conn_set_state(c, CONN_HANDSHAKE);
    c->handshake = 0;
    if (u->has_password) {
        int argc = 0;
        argv[argc++] = "AUTH";
        if (u->has_user)
            argv[argc++] = u->user;
        argv[argc++] = u->password;
        if (conn_send(c, on_handshake_reply, c, argc, argv, NULL) < 0)
            goto out;
        c->handshake++;
    }
    /* Pub/sub ignores the database, so only the command connection selects one. */
    if (c->kind == CONN_CMD && u->db != 0) {
        snprintf(db, sizeof(db), "%ld", u->db);
        argv[0] = "SELECT";
        argv[1] = db;
        if (conn_send(c, on_handshake_reply, c, 2, argv, NULL) < 0)
            goto out;
        c->handshake++;
    }
    if (c->handshake == 0)
        conn_ready(c);
    return;
out:
    conn_kill(c, "cannot queue the handshake");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    if (c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns. */
        snprintf(c->reason, sizeof(c->reason), "%s", ac->errstr[0] ? ac->errstr : "refused");
        c->ac = NULL;
        conn_retry(c);
        return;
    }
    if (c->state == CONN_CONNECTING)
        conn_handshake(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    (void)status;
    if (c->ac == ac)
        conn_lost(c, ac);
}

/* Connects to addr, a numeric address or a socket path, so hiredis never resolves a name. */
static void conn_connect_addr(conn_t *c, const char *addr)
{
    sw_redis_t *r = c->r;
    const url_t *u = &r->url;
    redisAsyncContext *ac;

    if (u->is_unix)
        ac = redisAsyncConnectUnix(addr);
    else
        ac = redisAsyncConnect(addr, u->port);
    if (!ac)
        sw_oom();
    if (ac->err || (!u->is_unix && redisEnableKeepAlive(&ac->c) != REDIS_OK) ||
        sock_attach(c, ac) < 0) {
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
    conn_set_state(c, CONN_CONNECTING);
    uv_timer_start(&c->timer, on_timer, r->timeout_ms, 0);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    conn_t *c = sw_container_of(req, conn_t, gai);
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
    if (!r->closing && c->state == CONN_RESOLVING) {
        if (status == 0 && ip[0]) {
            conn_connect_addr(c, ip);
        } else {
            snprintf(c->reason, sizeof(c->reason), "cannot resolve the host: %s",
                     status < 0 ? uv_strerror(status) : "no address");
            conn_retry(c);
        }
    }
    handle_closed(r); /* last: it frees r when this was the final thing outstanding */
}

static void conn_connect(conn_t *c)
{
    sw_redis_t *r = c->r;
    const url_t *u = &r->url;
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
    conn_set_state(c, CONN_RESOLVING);
    uv_timer_start(&c->timer, on_timer, r->timeout_ms, 0);
}

/* Redis answers in order, so an overdue oldest command means the connection is stuck. */
static void conn_check_deadlines(conn_t *c)
{
    uint64_t now = uv_now(c->r->loop);
    cmd_t *cmd = c->head;
    if (!cmd)
        return;
    if (cmd->deadline > now) {
        uv_timer_start(&c->timer, on_timer, cmd->deadline - now, 0);
        return;
    }
    conn_kill(c, "command timed out");
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
    conn_t *c = sw_container_of(t, conn_t, timer);
    if (c->r->closing)
        return;
    switch (c->state) {
    case CONN_DOWN:
        conn_connect(c);
        break;
    case CONN_RESOLVING:
        uv_cancel((uv_req_t *)&c->gai); /* may be too late; on_resolved then drops the result */
        snprintf(c->reason, sizeof(c->reason), "resolving the host timed out");
        conn_retry(c);
        break;
    case CONN_CONNECTING:
    case CONN_HANDSHAKE:
        conn_kill(c, "connect timed out");
        break;
    case CONN_UP:
        conn_check_deadlines(c);
        break;
    default:
        break;
    }
}

/* ---- subscriptions ------------------------------------------------------------------------ */

static size_t channel_bucket(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return (size_t)(h & (CHANNEL_BUCKETS - 1));
}

static channel_t **channel_slot(sw_redis_t *r, const char *name, size_t len)
{
    channel_t **p = &r->channels[channel_bucket(name, len)];
    for (; *p; p = &(*p)->next)
        if ((*p)->len == len && memcmp((*p)->name, name, len) == 0)
            break;
    return p;
}

static void on_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    conn_t *c = privdata;
    sw_redis_t *r = c->r;
    const redisReply *rep = reply;

    if (!rep) {
        if (c->ac == ac)
            conn_lost(c, ac);
        return;
    }
    if (r->closing || c->ac != ac || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    const redisReply *kind = rep->element[0], *chan = rep->element[1], *data = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || kind->len != 7 ||
        strncasecmp(kind->str, "message", 7) != 0 || chan->type != REDIS_REPLY_STRING ||
        data->type != REDIS_REPLY_STRING)
        return;
    channel_t *ch = *channel_slot(r, chan->str, chan->len);
    if (ch)
        ch->cb(chan->str, chan->len, data->str, data->len, ch->payload);
}

int sw_redis_subscribe(sw_redis_t *r, const char *channel, sw_redis_message_cb cb, void *payload)
{
    if (!r || !channel || !cb)
        return -EINVAL;
    size_t len = strnlen(channel, CHANNEL_LEN_MAX + 1);
    if (len == 0 || len > CHANNEL_LEN_MAX)
        return -EINVAL;
    if (r->closing)
        return SW_ECANCELED;
    channel_t **slot = channel_slot(r, channel, len);
    if (*slot)
        return -EEXIST;
    if (r->nchannels >= CHANNELS_MAX)
        return SW_ELIMIT;
    channel_t *ch = sw_malloc(sizeof(*ch) + len + 1);
    ch->next = NULL;
    ch->cb = cb;
    ch->payload = payload;
    ch->len = len;
    memcpy(ch->name, channel, len + 1);
    *slot = ch;
    r->nchannels++;
    conn_t *c = &r->conns[CONN_SUB];
    if (c->state == CONN_UP)
        sub_send(c, "SUBSCRIBE", ch);
    return 0;
}

int sw_redis_unsubscribe(sw_redis_t *r, const char *channel)
{
    if (!r || !channel)
        return -EINVAL;
    size_t len = strnlen(channel, CHANNEL_LEN_MAX + 1);
    channel_t **slot = channel_slot(r, channel, len);
    channel_t *ch = *slot;
    if (!ch)
        return -ENOENT;
    *slot = ch->next;
    r->nchannels--;
    conn_t *c = &r->conns[CONN_SUB];
    if (c->state == CONN_UP && !r->closing)
        sub_send(c, "UNSUBSCRIBE", ch);
    free(ch);
    return 0;
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
    conn_t *c = &r->conns[CONN_CMD];
    if (r->closing) {
        defer(r, cb, payload, SW_ECANCELED);
        return 0;
    }
    if (c->state != CONN_UP) {
        defer(r, cb, payload, SW_EUNAVAIL);
        return 0;
    }
    if (c->inflight >= MAX_INFLIGHT)
        return SW_ELIMIT;
    if (conn_send(c, cb, payload, argc, argv, argvlen) < 0)
        defer(r, cb, payload, SW_EUNAVAIL);
    return 0;
}

bool sw_redis_up(const sw_redis_t *r)
{
    return r && !r->closing && r->conns[CONN_CMD].state == CONN_UP;
}

bool sw_redis_subscriber_up(const sw_redis_t *r)
{
    return r && !r->closing && r->conns[CONN_SUB].state == CONN_UP;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

static void handle_closed(sw_redis_t *r)
{
    if (--r->handles > 0 || !r->finalizing)
        return;
    void (*on_closed)(void *) = r->on_closed;
    void *payload = r->closed_payload;
    for (size_t b = 0; b < CHANNEL_BUCKETS; b++) {
        channel_t *ch = r->channels[b];
        while (ch) {
            channel_t *next = ch->next;
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
    conn_t *c = sw_container_of((uv_timer_t *)h, conn_t, timer);
    handle_closed(c->r);
}

static void reaper_closed(uv_handle_t *h)
{
    handle_closed(sw_container_of((uv_idle_t *)h, sw_redis_t, reaper));
}

static void finish_close(sw_redis_t *r)
{
    for (int k = 0; k < CONN_KIND_MAX; k++) {
        conn_t *c = &r->conns[k];
        uv_timer_stop(&c->timer);
        if (c->resolving)
            uv_cancel((uv_req_t *)&c->gai);
        for (cmd_t *cmd = c->head; cmd; cmd = cmd->next) {
            sw_redis_cb cb = cmd->cb;
            cmd->cb = NULL;
            if (cb)
                cb(SW_ECANCELED, NULL, cmd->payload);
        }
        if (c->ac) {
            redisAsyncContext *ac = c->ac;
            c->ac = NULL;
            conn_set_state(c, CONN_DOWN); /* silent: closing */
            redisAsyncFree(ac);
        }
    }
    /* Callbacks above may queue more (they fail with SW_ECANCELED); drain them all. */
    while (r->deferred_head)
        deliver_deferred(r);
    r->finalizing = true;
    for (int k = 0; k < CONN_KIND_MAX; k++)
        uv_close((uv_handle_t *)&r->conns[k].timer, timer_closed);
    uv_close((uv_handle_t *)&r->reaper, reaper_closed);
}

static void on_reap(uv_idle_t *h)
{
    sw_redis_t *r = sw_container_of(h, sw_redis_t, reaper);
    deliver_deferred(r);
    if (r->closing) {
        finish_close(r);
        return;
    }
    for (int k = 0; k < CONN_KIND_MAX; k++)
        if (r->conns[k].state == CONN_DYING)
            conn_drop(&r->conns[k]);
    if (!r->deferred_head && !r->closing)
        uv_idle_stop(h);
}

int sw_redis_new(sw_redis_t **out, uv_loop_t *loop, const sw_redis_opts_t *opts)
{
    if (!out || !loop || !opts)
        return -EINVAL;
    url_t url;
    int rc = parse_url(opts->url, &url, NULL, 0);
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
    for (int k = 0; k < CONN_KIND_MAX; k++) {
        conn_t *c = &r->conns[k];
        c->r = r;
        c->kind = (conn_kind_t)k;
        c->state = CONN_DOWN;
        c->backoff_ms = BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->timer);
        r->handles++;
    }
    for (int k = 0; k < CONN_KIND_MAX; k++)
        conn_connect(&r->conns[k]);
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
    uv_idle_start(&r->reaper, on_reap);
}
