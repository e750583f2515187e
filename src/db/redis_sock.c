/* Our hiredis event adapter: one uv_poll handle per context, counted like every other handle. */
#include <stdlib.h>

#include <hiredis/async.h>

#include "slipway/common.h"

#include "internal.h"

/* Our hiredis event adapter: one poll handle per context, counted like every other handle. */
typedef struct sock {
    uv_poll_t poll;
    redis_conn_t *conn;
    redisAsyncContext *ac; /* NULL once hiredis has let go of the context */
    int events;
} sock_t;

static void sock_closed(uv_handle_t *h)
{
    sock_t *s = sw_container_of(h, sock_t, poll);
    sw_redis_t *r = s->conn->r;
    free(s);
    sw_redis__handle_closed(r);
}

static void sock_poll_cb(uv_poll_t *h, int status, int events)
{
    sock_t *s = sw_container_of(h, sock_t, poll);
    if (status < 0) {
        if (s->ac && s->conn->ac == s->ac)
            sw_redis__conn_kill(s->conn, uv_strerror(status));
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

int sw_redis__sock_attach(redis_conn_t *c, redisAsyncContext *ac)
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
