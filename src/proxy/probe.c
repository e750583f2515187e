/* The probe through the proxy: the request a user would make (the app's Host, at the proxy's
 * HTTP address), repeated until the answer carries Slipway-Release: <the new release>. Only
 * then does a release count as serving: the proxy applied the switch and reaches the new
 * instances. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/client.h"

#define PROBE_INTERVAL_MS 25
#define PROBE_TIMEOUT_MS  2000

struct sw_probe {
    uv_loop_t *loop;
    uv_timer_t timer;
    sw_httpc_t *req;
    struct sockaddr_storage addr;
    char host[SW_ROUTE_HOST_MAX + 16];
    char host_header[SW_ROUTE_HOST_MAX + 24]; /* the name alone: the proxy's port is ours */
    char *path;
    char release[40];
    char seen[80]; /* the last answer's Slipway-Release */
    char last[512];
    uint64_t deadline;
    sw_proxy_cb cb;
    void *payload;
    bool done;
};

static void probe_send(sw_probe_t *pr);

static void on_timer_closed(uv_handle_t *h)
{
    sw_probe_t *pr = h->data;
    free(pr->path);
    free(pr);
}

static void finish(sw_probe_t *pr, int status)
{
    if (pr->done)
        return;
    pr->done = true;
    uv_timer_stop(&pr->timer);
    pr->cb(status, status == 0 ? NULL : pr->last, pr->payload);
    if (!pr->req)
        uv_close((uv_handle_t *)&pr->timer, on_timer_closed);
    /* else: on_answer closes it when the request in flight calls back */
}

static void on_retry(uv_timer_t *t)
{
    probe_send(t->data);
}

static void on_answer(int status, int http_status, const char *body, size_t len, void *payload)
{
    (void)body;
    (void)len;
    sw_probe_t *pr = payload;
    pr->req = NULL;
    if (pr->done) {
        uv_close((uv_handle_t *)&pr->timer, on_timer_closed);
        return;
    }
    if (status == 0 && strcmp(pr->seen, pr->release) == 0) {
        finish(pr, 0);
        return;
    }
    if (status != 0)
        snprintf(pr->last, sizeof(pr->last), "the proxy did not answer for %s: %s", pr->host,
                 sw_strerror(status));
    else if (!pr->seen[0])
        snprintf(pr->last, sizeof(pr->last),
                 "the proxy answered %d for %s without a Slipway-Release header", http_status,
                 pr->host);
    else
        snprintf(pr->last, sizeof(pr->last), "the proxy still serves release %.40s for %s",
                 pr->seen, pr->host);
    if (uv_now(pr->loop) >= pr->deadline) {
        finish(pr, -ETIMEDOUT);
        return;
    }
    uv_timer_start(&pr->timer, on_retry, PROBE_INTERVAL_MS, 0);
}

static void probe_send(sw_probe_t *pr)
{
    const char *headers[] = {pr->host_header, NULL};
    sw_httpc_req_t req = {
        .host = pr->host,
        .headers = headers,
        .port = ntohs(pr->addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&pr->addr)->sin6_port
                                                     : ((struct sockaddr_in *)&pr->addr)->sin_port),
        .path = pr->path,
        .addr = (const struct sockaddr *)&pr->addr,
        .timeout_ms = PROBE_TIMEOUT_MS,
        .connect_timeout_ms = PROBE_TIMEOUT_MS,
        .max_body = 4096,
        .truncate_body = true,
        .capture_header = "Slipway-Release",
        .header_value = pr->seen,
        .header_value_size = sizeof(pr->seen),
    };
    int r = sw_httpc_request(pr->loop, &req, on_answer, pr, &pr->req);
    if (r != 0) {
        snprintf(pr->last, sizeof(pr->last), "the probe could not start: %s", sw_strerror(r));
        finish(pr, r);
    }
}

/* A listen address without a host (":80"), or a wildcard one, is reached on loopback. */
int sw_proxy_sockaddr(const char *hostport, struct sockaddr_storage *ss)
{
    char host[64];
    uint16_t port;
    if (sw_config_split_hostport(hostport, host, sizeof(host), &port) != 0)
        return -EINVAL;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    else if (strcmp(host, "::") == 0)
        snprintf(host, sizeof(host), "::1");
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -EINVAL;
}

int sw_probe_start(uv_loop_t *loop, const sw_config_t *cfg, const char *host, const char *path,
                   const char *release, uint32_t timeout_ms, sw_proxy_cb cb, void *payload,
                   sw_probe_t **out)
{
    sw_probe_t *pr = sw_calloc(1, sizeof(*pr));
    if (sw_proxy_sockaddr(cfg->proxy_http, &pr->addr) != 0) {
        free(pr);
        return -EINVAL;
    }
    pr->loop = loop;
    /* A wildcard route is probed with a name it matches. */
    snprintf(pr->host, sizeof(pr->host), "%s%s", host[0] == '*' ? "slipway-probe" : "",
             host[0] == '*' ? host + 1 : host);
    snprintf(pr->host_header, sizeof(pr->host_header), "Host: %s", pr->host);
    pr->path = sw_strdup(path && path[0] == '/' ? path : "/");
    snprintf(pr->release, sizeof(pr->release), "%s", release);
    pr->deadline = uv_now(loop) + timeout_ms;
    pr->cb = cb;
    pr->payload = payload;
    uv_timer_init(loop, &pr->timer);
    pr->timer.data = pr;
    *out = pr;
    uv_timer_start(&pr->timer, on_retry, 0, 0); /* from the loop: cb never runs in here */
    return 0;
}

void sw_probe_cancel(sw_probe_t *pr)
{
    if (pr->done)
        return;
    snprintf(pr->last, sizeof(pr->last), "cancelled");
    if (pr->req)
        sw_httpc_cancel(pr->req);
    finish(pr, -ECANCELED);
}
