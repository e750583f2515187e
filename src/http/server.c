/* HTTP/1.1 server: listeners, accepting connections, and draining. */
#include "internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "slipway/common.h"
#include "slipway/config.h"
#include "slipway/tls.h"

static sw_http_conn_t *conn_new(sw_http_server_t *s)
{
    sw_http_conn_t *c = sw_calloc(1, sizeof(*c));
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->stats.connections++;
    return c;
}

/* c's socket is connected: refuse it over the cap, or start reading requests. */
static void conn_start(sw_http_server_t *s, sw_http_conn_t *c)
{
    s->stats.accepted++;
    if (s->stats.connections > s->opts.max_connections && s->tls_ctx) {
        s->stats.rejected++; /* a TLS peer could not read a plaintext 503 */
        sw_http__conn_close(c);
        return;
    }
    if (s->stats.connections > s->opts.max_connections) {
        /* Over the cap: a short answer the peer can act on, written without queuing. */
        static const char busy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Connection: close\r\nRetry-After: 1\r\nContent-Length: 100\r\n\r\n"
            "{\"error\":{\"code\":\"SERVICE_UNAVAILABLE\",\"message\":\"too many connections\","
            "\"details\":[]}}                \n";
        s->stats.rejected++;
        sw_http__conn_refuse(c, busy, sizeof(busy) - 1);
        return;
    }
    if (s->tls_ctx && sw_tls_session_new(&c->tls, s->tls_ctx, true) != 0) {
        sw_http__conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
        else if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->state = CONN_OPEN;
    sw_http__conn_set_timer(c, TIMER_HEADER);
    uv_read_start((uv_stream_t *)&c->tcp, sw_http__on_alloc, sw_http__on_read);
}

static void on_connection(uv_stream_t *listener, int status)
{
    sw_http_server_t *s = listener->data;
    if (status < 0 || s->draining)
        return;
    sw_http_conn_t *c = conn_new(s);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        sw_http__conn_close(c);
        return;
    }
    conn_start(s, c);
}

int sw_http_server_adopt(sw_http_server_t *s, uv_os_sock_t fd)
{
    if (s->draining)
        return -ESHUTDOWN;
    sw_http_conn_t *c = conn_new(s);
    int r = uv_tcp_open(&c->tcp, fd);
    if (r != 0) {
        sw_http__conn_close(c); /* fd stays the caller's */
        return r;
    }
    conn_start(s, c);
    return 0;
}

int sw_http_server_new(sw_http_server_t **out, uv_loop_t *loop, const sw_http_server_opts_t *opts)
{
    if (!opts->on_request)
        return -EINVAL;
    sw_http_server_t *s = sw_calloc(1, sizeof(*s));
    s->loop = loop;
    s->opts = *opts;
    sw_http__parse_settings(&s->settings);
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_check_init(loop, &s->reaper);
    s->reaper.data = s;
    uv_prepare_init(loop, &s->flusher);
    s->flusher.data = s;
    s->handles_open = 3;
    *out = s;
    return 0;
}

int sw_http_server_listen(sw_http_server_t *s, const char *hostport)
{
    char host[256], portstr[8];
    uint16_t port;
    struct addrinfo hints = {0}, *res = NULL;
    int r;

    if (s->nlisteners >= MAX_LISTENERS)
        return -ENOSPC;
    if (sw_config_split_hostport(hostport, host, sizeof(host), &port) != 0)
        return -EINVAL;
    snprintf(portstr, sizeof(portstr), "%u", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    /* Start-up only: resolving "localhost" may block briefly before the loop runs. */
    r = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (r != 0)
        return -EADDRNOTAVAIL;

    uv_tcp_t *t = &s->listeners[s->nlisteners];
    r = uv_tcp_init_ex(s->loop, t, res->ai_family);
    if (r == 0) {
        t->data = s;
        s->listeners_open++;
        s->nlisteners++;
        uv_os_fd_t fd;
        int one = 1;
        if (s->opts.reuse_port && uv_fileno((uv_handle_t *)t, &fd) == 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        r = uv_tcp_bind(t, res->ai_addr, res->ai_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
        if (r == 0)
            r = uv_listen((uv_stream_t *)t, 1024, on_connection);
    }
    freeaddrinfo(res);
    return r;
}

int sw_http_server_address(sw_http_server_t *s, unsigned n, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64];
    if (n >= s->nlisteners)
        return -ENOENT;
    int r = uv_tcp_getsockname(&s->listeners[n], (struct sockaddr *)&ss, &len);
    if (r != 0)
        return r;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, ntohs(a->sin_port));
    }
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    sw_http_server_t *s = h->data;
    s->listeners_open--;
    sw_http__server_check_drained(s);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    sw_http_server_t *s = h->data;
    if (--s->handles_open > 0)
        return;
    s->drained = true;
    if (s->opts.on_drained)
        s->opts.on_drained(s, s->opts.payload);
}

void sw_http__server_check_drained(sw_http_server_t *s)
{
    if (!s->draining || s->handles_closing || s->conns || s->listeners_open || s->live)
        return;
    s->handles_closing = true;
    sw_http__on_reap(&s->reaper);
    uv_close((uv_handle_t *)&s->drain_timer, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->reaper, on_server_handle_closed);
    uv_close((uv_handle_t *)&s->flusher, on_server_handle_closed);
}

static void on_drain_timeout(uv_timer_t *t)
{
    sw_http_server_t *s = t->data;
    for (sw_http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        sw_http__conn_close(c);
    }
}

void sw_http_server_drain(sw_http_server_t *s)
{
    if (s->draining)
        return;
    s->draining = true;
    for (unsigned i = 0; i < s->nlisteners; i++)
        uv_close((uv_handle_t *)&s->listeners[i], on_listener_closed);
    for (sw_http_conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_OPEN && !c->head && !c->parsing)
            sw_http__conn_close(c);
        else if (c->state == CONN_STREAM && c->stream->cbs.on_shutdown)
            c->stream->cbs.on_shutdown(c->stream, c->stream->ud);
        /* Busy connections answer what they have with Connection: close (see sw_http__conn_flush).
         */
    }
    uv_timer_start(&s->drain_timer, on_drain_timeout, s->opts.drain_timeout_ms, 0);
    sw_http__server_check_drained(s);
}

void sw_http_server_free(sw_http_server_t *s)
{
    if (!s)
        return;
    sw_http__reqs_free(s);
    sw_tls_ctx_free(s->tls_ctx);
    sw_buf_free(&s->tls_plain);
    sw_buf_free(&s->tls_gather);
    sw_buf_free(&s->tls_out);
    free(s);
}

void sw_http_server_set_tls(sw_http_server_t *s, struct ssl_ctx_st *ctx)
{
    /* Connections already open keep the context their session holds a reference to. */
    sw_tls_ctx_free(s->tls_ctx);
    s->tls_ctx = ctx ? sw_tls_ctx_ref(ctx) : NULL;
}

void sw_http_server_stats(const sw_http_server_t *s, sw_http_server_stats_t *out)
{
    *out = s->stats;
}
