/* libgit2's standard stream, replaced: every http, https (libgit2's TLS stream wraps this one)
 * and ssh connection of a fetch resolves, checks and connects here, and waits here in short
 * slices that ask the fetch whether to stop. */
#include "slipway/gitstream.h"

#include <errno.h>
#include <git2.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "slipway/common.h"

#define SLICE_MS 100

struct sw_gitstream_conn {
    /* libgit2 1.5's ssh transport takes the socket out of its own git_socket_stream
     * (src/libgit2/streams/socket.h: parent, host, port, s) with GIT_CONTAINER_OF, so ours
     * begins the same way. */
    git_stream parent;
    char *host;
    char *port;
    int s;

    sw_gitstream_ctx_t *ctx;
    sw_gitstream_conn_t *prev, *next; /* in ctx->conns while s is open */
};

static _Thread_local sw_gitstream_ctx_t *bound;
static sw_gitstream_ctx_t public_only = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool sw_gitstream_allows(const sw_gitstream_ctx_t *ctx, sw_addr_kind_t kind)
{
    switch (kind) {
    case SW_ADDR_PUBLIC:
        return true;
    case SW_ADDR_PRIVATE:
        return ctx->allow_private;
    case SW_ADDR_MULTICAST:
        return false;
    default:
        return ctx->allow_local;
    }
}

const char *sw_gitstream_refusal(sw_addr_kind_t kind)
{
    static const char *const why[SW_ADDR_KIND_MAX] = {
        [SW_ADDR_LOOPBACK] = "the repository's host is a loopback address, which fetches may "
                             "not reach",
        [SW_ADDR_PRIVATE] = "the repository's host is a private address, which fetches may not "
                            "reach unless SLIPWAY_GIT_ALLOW_PRIVATE is set",
        [SW_ADDR_LINK_LOCAL] = "the repository's host is a link-local address, which fetches "
                               "may not reach",
        [SW_ADDR_UNSPECIFIED] = "the repository's host is an unspecified address, which "
                                "fetches may not reach",
        [SW_ADDR_MULTICAST] = "the repository's host is a multicast or broadcast address, which "
                              "fetches may not reach",
    };
    return kind < SW_ADDR_KIND_MAX && why[kind]
               ? why[kind]
               : "the repository's host is a reserved address, which fetches may not reach";
}

/* ---- the fetch's context ---- */

void sw_gitstream_ctx_init(sw_gitstream_ctx_t *ctx, bool allow_private, bool allow_local,
                           sw_gitstream_stop_cb stop, void *payload)
{
    *ctx = (sw_gitstream_ctx_t){
        .allow_private = allow_private,
        .allow_local = allow_local,
        .stop = stop,
        .payload = payload,
    };
    pthread_mutex_init(&ctx->lock, NULL);
}

void sw_gitstream_ctx_destroy(sw_gitstream_ctx_t *ctx)
{
    if (ctx)
        pthread_mutex_destroy(&ctx->lock);
}

void sw_gitstream_bind(sw_gitstream_ctx_t *ctx)
{
    bound = ctx;
}

void sw_gitstream_abort(sw_gitstream_ctx_t *ctx)
{
    if (!ctx)
        return;
    pthread_mutex_lock(&ctx->lock);
    ctx->aborted = true;
    for (sw_gitstream_conn_t *c = ctx->conns; c; c = c->next)
        (void)shutdown(c->s, SHUT_RDWR);
    pthread_mutex_unlock(&ctx->lock);
}

/* 0, or why the fetch stops. */
static int stopped(sw_gitstream_conn_t *c)
{
    sw_gitstream_ctx_t *ctx = c->ctx;
    int r = ctx->stop ? ctx->stop(ctx->payload) : 0;

    if (r == 0) {
        pthread_mutex_lock(&ctx->lock);
        if (ctx->aborted)
            r = -ECANCELED;
        pthread_mutex_unlock(&ctx->lock);
    }
    return r;
}

/* The socket joins ctx's list, where an abort finds it; refused once ctx is aborted. */
static int attach(sw_gitstream_conn_t *c, int fd)
{
    sw_gitstream_ctx_t *ctx = c->ctx;
    int r = 0;

    pthread_mutex_lock(&ctx->lock);
    if (ctx->aborted) {
        r = -ECANCELED;
    } else {
        c->s = fd;
        c->prev = NULL;
        c->next = ctx->conns;
        if (ctx->conns)
            ctx->conns->prev = c;
        ctx->conns = c;
    }
    pthread_mutex_unlock(&ctx->lock);
    return r;
}

/* Out of the list before it is closed, so an abort never shuts down a reused descriptor. */
static void detach(sw_gitstream_conn_t *c)
{
    sw_gitstream_ctx_t *ctx = c->ctx;
    int fd;

    pthread_mutex_lock(&ctx->lock);
    fd = c->s;
    if (fd >= 0) {
        if (c->prev)
            c->prev->next = c->next;
        else
            ctx->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->prev = c->next = NULL;
        c->s = -1;
    }
    pthread_mutex_unlock(&ctx->lock);
    if (fd >= 0)
        close(fd);
}

/* libgit2's error for r, a stop or a socket error; -1 for libgit2. */
static int fail(int r, const char *what)
{
    char msg[256];

    if (r == -ECANCELED)
        snprintf(msg, sizeof(msg), "cancelled");
    else if (r == -ETIMEDOUT)
        snprintf(msg, sizeof(msg), "timed out");
    else
        snprintf(msg, sizeof(msg), "%s: %s", what, sw_strerror(r));
    git_error_set_str(GIT_ERROR_NET, msg);
    return -1;
}

/* Until fd is ready for events (or has failed: the next call says how), a slice at a time. */
static int wait_ready(sw_gitstream_conn_t *c, short events)
{
    for (;;) {
        struct pollfd p = {.fd = c->s, .events = events};
        int r = stopped(c);

        if (r < 0)
            return r;
        r = poll(&p, 1, SLICE_MS);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* ---- looking the host up where a stop can leave it behind ---- */

/* getaddrinfo() can neither be woken nor time out on request: it runs on a thread of its own,
 * which frees the lookup when the fetch has already gone. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int refs;
    bool done;
    int rc;
    struct addrinfo *res;
    char *host;
    char *port;
} lookup_t;

static void lookup_release(lookup_t *l)
{
    bool last;

    pthread_mutex_lock(&l->lock);
    last = --l->refs == 0;
    pthread_mutex_unlock(&l->lock);
    if (!last)
        return;
    if (l->res)
        freeaddrinfo(l->res);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l->host);
    free(l->port);
    free(l);
}

static void *lookup_run(void *arg)
{
    lookup_t *l = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(l->host, l->port, &hints, &res);

    pthread_mutex_lock(&l->lock);
    l->rc = rc;
    l->res = rc == 0 ? res : NULL;
    l->done = true;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
    lookup_release(l);
    return NULL;
}

/* 0 with the addresses, or -1 with libgit2's error set. */
static int lookup(sw_gitstream_conn_t *c, struct addrinfo **out)
{
    lookup_t *l = sw_calloc(1, sizeof(*l));
    pthread_condattr_t ca;
    pthread_attr_t attr;
    pthread_t tid;
    int r = 0;

    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    l->refs = 2;
    l->host = sw_strdup(c->host);
    l->port = sw_strdup(c->port);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, lookup_run, l) != 0)
        lookup_run(l); /* no thread to spare: wait for it here */
    pthread_attr_destroy(&attr);

    pthread_mutex_lock(&l->lock);
    while (!l->done) {
        struct timespec ts;

        r = stopped(c);
        if (r < 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += SLICE_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&l->cond, &l->lock, &ts);
    }
    if (r < 0) {
        r = fail(r, "");
    } else if (l->rc != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "cannot resolve the repository's host: %s", gai_strerror(l->rc));
        git_error_set_str(GIT_ERROR_NET, msg);
        r = -1;
    } else {
        *out = l->res;
        l->res = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    lookup_release(l);
    return r;
}

/* ---- the stream ---- */

static int connect_to(sw_gitstream_conn_t *c, const struct addrinfo *ai)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int fd, r, err = 0;
    socklen_t errlen = sizeof(err);

    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    r = attach(c, fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        r = -errno;
        goto out;
    }
    r = wait_ready(c, POLLOUT);
    if (r < 0)
        goto out;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
        err = errno;
    if (err) {
        r = -err;
        goto out;
    }
    /* The rule again on the address actually reached. */
    if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0)
        r = -errno;
    else if (!sw_gitstream_allows(c->ctx, sw_addr_classify((struct sockaddr *)&peer)))
        r = -EACCES;
out:
    if (r < 0)
        detach(c);
    return r;
}

static int conn_connect(git_stream *stream)
{
    sw_gitstream_conn_t *c = (sw_gitstream_conn_t *)stream;
    struct addrinfo *res = NULL;
    int r;

    r = stopped(c);
    if (r < 0) {
        r = fail(r, "");
        goto out;
    }
    r = lookup(c, &res);
    if (r < 0) {
        if (stopped(c) == 0)
            c->ctx->connect_error = -EHOSTUNREACH;
        goto out;
    }
    /* Any refused address refuses the name, before anything is sent anywhere: which address a
     * later lookup returns first is not ours to choose, and nothing about what listens there
     * reaches the message. */
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        sw_addr_kind_t kind = sw_addr_classify(ai->ai_addr);
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            !sw_gitstream_allows(c->ctx, kind)) {
            git_error_set_str(GIT_ERROR_NET, sw_gitstream_refusal(kind));
            c->ctx->connect_error = -EACCES;
            r = -1;
            goto out;
        }
    }
    r = -EHOSTUNREACH;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        r = connect_to(c, ai);
        if (r == 0 || stopped(c) < 0)
            break;
    }
    if (r < 0) {
        int stop = stopped(c);
        if (stop == 0)
            c->ctx->connect_error = r;
        r = fail(stop < 0 ? stop : r, "cannot connect to the repository's host");
    }
out:
    if (res)
        freeaddrinfo(res);
    return r;
}

/* Moves some bytes one way or the other, waiting a slice at a time. */
static ssize_t transfer(sw_gitstream_conn_t *c, void *data, size_t len, bool sending)
{
    const char *what =
        sending ? "writing to the repository's host" : "reading from the repository's host";

    for (;;) {
        /* Before every call: a peer that trickles bytes must not outlast a stop either. */
        int r = stopped(c);
        ssize_t n;

        if (r < 0)
            return fail(r, what);
        n = sending ? send(c->s, data, len, MSG_NOSIGNAL) : recv(c->s, data, len, 0);
        if (n >= 0 && !sending && c->ctx->max_read) {
            c->ctx->read += (uint64_t)n;
            if (c->ctx->read > c->ctx->max_read) {
                git_error_set(GIT_ERROR_NET, "the repository's host sent more than %llu bytes",
                              (unsigned long long)c->ctx->max_read);
                return -1;
            }
        }
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return fail(-errno, what);
        r = wait_ready(c, sending ? POLLOUT : POLLIN);
        if (r < 0)
            return fail(r, what);
    }
}

static ssize_t conn_read(git_stream *stream, void *data, size_t len)
{
    return transfer((sw_gitstream_conn_t *)stream, data, len, false);
}

static ssize_t conn_write(git_stream *stream, const char *data, size_t len, int flags)
{
    (void)flags;
    return transfer((sw_gitstream_conn_t *)stream, (void *)data, len, true);
}

static int conn_close(git_stream *stream)
{
    detach((sw_gitstream_conn_t *)stream);
    return 0;
}

static void conn_free(git_stream *stream)
{
    sw_gitstream_conn_t *c = (sw_gitstream_conn_t *)stream;

    detach(c);
    free(c->host);
    free(c->port);
    free(c);
}

static int conn_new(git_stream **out, const char *host, const char *port)
{
    sw_gitstream_conn_t *c = sw_calloc(1, sizeof(*c));

    c->parent.version = GIT_STREAM_VERSION;
    c->parent.connect = conn_connect;
    c->parent.read = conn_read;
    c->parent.write = conn_write;
    c->parent.close = conn_close;
    c->parent.free = conn_free;
    c->host = sw_strdup(host);
    c->port = sw_strdup(port);
    c->s = -1;
    c->ctx = bound ? bound : &public_only;
    *out = &c->parent;
    return 0;
}

int sw_gitstream_register(void)
{
    static git_stream_registration reg = {.version = GIT_STREAM_VERSION, .init = conn_new};

    return git_stream_register(GIT_STREAM_STANDARD, &reg) < 0 ? -EIO : 0;
}
