/* See conn.h. */
#include "conn.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    uv_poll_t poll;
    int fd;
    const uint8_t *data;
    size_t size, sent, chunk;
    bool shut, done;
    char first[5]; /* the answer's first bytes */
    size_t nfirst;
} peer_t;

static uv_loop_t loop;
static sw_http_server_t *server;
static void (*handler)(sw_http_req_t *req, void *payload);

static void on_request(sw_http_req_t *req, void *payload)
{
    handler(req, payload);
}

static void server_start(void)
{
    uv_loop_init(&loop);
    /* Small limits, so short inputs reach them. */
    sw_http_server_opts_t opts = {
        .max_header_bytes = 2048,
        .max_headers = 16,
        .max_body_bytes = 4096,
        .max_connections = 16,
        .max_pipelined = 4,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .drain_timeout_ms = 1000,
        .on_request = on_request,
    };
    if (sw_http_server_new(&server, &loop, &opts) != 0)
        abort();
}

uv_loop_t *fuzz_conn_loop(void)
{
    return &loop;
}

static void on_poll_closed(uv_handle_t *h)
{
    peer_t *p = h->data;
    close(p->fd);
    p->done = true;
}

static void on_peer(uv_poll_t *h, int status, int events)
{
    peer_t *p = h->data;
    if (status == 0 && (events & UV_WRITABLE)) {
        size_t n = p->size - p->sent;
        if (p->chunk && n > p->chunk)
            n = p->chunk;
        ssize_t w = n ? send(p->fd, p->data + p->sent, n, MSG_NOSIGNAL) : 0;
        if (w > 0)
            p->sent += (size_t)w;
        if (p->sent == p->size || (w < 0 && errno != EAGAIN)) {
            shutdown(p->fd, SHUT_WR);
            p->shut = true;
            uv_poll_start(&p->poll, UV_READABLE, on_peer);
        }
    }
    if (status == 0 && (events & UV_READABLE)) {
        char buf[65536];
        ssize_t r = recv(p->fd, buf, sizeof(buf), 0);
        if (r > 0 && p->nfirst < sizeof(p->first)) {
            size_t n =
                sizeof(p->first) - p->nfirst < (size_t)r ? sizeof(p->first) - p->nfirst : (size_t)r;
            memcpy(p->first + p->nfirst, buf, n);
            p->nfirst += n;
        }
        if (r > 0 || (r < 0 && errno == EAGAIN))
            return;
    } else if (status == 0) {
        return;
    }
    /* The server closed (or the socket failed): this connection is over. */
    uv_poll_stop(&p->poll);
    uv_close((uv_handle_t *)&p->poll, on_poll_closed);
}

void fuzz_conn_run(const uint8_t *data, size_t size, size_t chunk,
                   void (*on_req)(sw_http_req_t *req, void *payload))
{
    if (!server)
        server_start();
    handler = on_req;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (sw_http_server_adopt(server, sv[0]) != 0)
        abort();
    peer_t p = {.fd = sv[1], .data = data, .size = size, .chunk = chunk};
    uv_poll_init(&loop, &p.poll, p.fd);
    p.poll.data = &p;
    uv_poll_start(&p.poll, UV_READABLE | UV_WRITABLE, on_peer);
    sw_http_server_stats_t st;
    do {
        uv_run(&loop, UV_RUN_ONCE);
        sw_http_server_stats(server, &st);
    } while (!p.done || st.connections > 0);
    /* Let the reaper release what the last callbacks answered. */
    uv_run(&loop, UV_RUN_NOWAIT);
    if (p.nfirst && (p.nfirst < sizeof(p.first) || memcmp(p.first, "HTTP/", 5) != 0)) {
        fprintf(stderr, "the answer does not start with a status line\n");
        abort();
    }
}
