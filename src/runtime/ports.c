/* What every runtime needs to place and check an instance: a free port of
 * SLIPWAY_PORT_RANGE, the endpoint the proxy reaches it at, and a health probe from the host
 * (never inside the instance: an image needs no curl). */
#include "slipway/runtime.h"

#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include "slipway/client.h"

uint16_t sw_runtime_pick_port(const sw_runtime_t *rt, const char *port_range)
{
    unsigned lo = 20000, hi = 29999;
    sscanf(port_range, "%u-%u", &lo, &hi);
    unsigned span = hi - lo + 1;
    unsigned start = randombytes_uniform(span);
    for (unsigned i = 0; i < span; i++) {
        uint16_t port = (uint16_t)(lo + (start + i) % span);
        bool used = false;
        for (const sw_instance_t *in = rt->instances; in; in = in->next)
            used |= in->port == port;
        if (used)
            continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 0;
        /* As servers bind: a port whose last connections linger in TIME_WAIT is free. */
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        if (ok)
            return port;
    }
    return 0;
}

void sw_runtime_endpoint(char *out, size_t size, const char *advertise, uint16_t port)
{
    bool v6 = strchr(advertise, ':') != NULL;
    snprintf(out, size, "%s%s%s:%u", v6 ? "[" : "", advertise, v6 ? "]" : "", port);
}

struct sw_runtime_probe {
    sw_httpc_t *req;
    sw_runtime_health_cb cb;
    void *payload;
};

static void on_probe(int status, int http_status, const char *body, size_t len, void *payload)
{
    sw_runtime_probe_t *p = payload;
    (void)body;
    (void)len;
    sw_runtime_health_cb cb = p->cb;
    void *cb_payload = p->payload;
    free(p);
    cb(status, http_status, cb_payload);
}

int sw_runtime_http_probe(uv_loop_t *loop, uint16_t port, const char *path, sw_runtime_health_cb cb,
                          void *payload, sw_runtime_probe_t **out)
{
    sw_runtime_probe_t *p = sw_calloc(1, sizeof(*p));
    p->cb = cb;
    p->payload = payload;
    sw_httpc_req_t q = {
        .host = "127.0.0.1",
        .port = port,
        .path = path,
        .connect_timeout_ms = 1000,
        .timeout_ms = 2000,
        .max_body = 64 * 1024,
    };
    int rc = sw_httpc_request(loop, &q, on_probe, p, &p->req);
    if (rc != 0) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void sw_runtime_http_probe_cancel(sw_runtime_probe_t *p)
{
    sw_httpc_cancel(p->req);
}
