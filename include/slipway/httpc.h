/* A small HTTP/1.1 client on the loop: health checks, outgoing webhooks, proxy drivers.
 * One request per connection (Connection: close), connect and whole-request timeouts, and a
 * cap on the response body. */
#ifndef SLIPWAY_HTTPC_H
#define SLIPWAY_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sockaddr;

typedef struct sw_httpc sw_httpc_t;

typedef struct {
    const char *method; /* "GET" when NULL */
    const char *host;   /* IP literal or name (resolved with uv_getaddrinfo) */
    uint16_t port;
    const char *path;           /* "/health"; must start with '/' */
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* optional */
    size_t body_len;
    uint32_t connect_timeout_ms; /* 0: 5000 */
    uint32_t timeout_ms;         /* whole request; 0: 10000 */
    size_t max_body;             /* 0: 1 MiB; a longer body fails with -EMSGSIZE */
    /* Optional: connect to exactly this address (IPv4 or IPv6, with the port) instead of
     * resolving host, which then only names the Host header. A caller that vetted the address
     * (the webhook SSRF check) uses it so nothing resolves the name a second time. */
    const struct sockaddr *addr;
} sw_httpc_req_t;

/* status 0 with the HTTP status and body, or a negative code: -ETIMEDOUT, -ECONNREFUSED,
 * -EMSGSIZE, -EPROTO (unparsable answer), -ECANCELED, or another -errno. body is valid only
 * during the call. Called exactly once, never from inside sw_httpc_request. */
typedef void (*sw_httpc_cb)(int status, int http_status, const char *body, size_t len,
                            void *payload);

int sw_httpc_request(uv_loop_t *loop, const sw_httpc_req_t *req, sw_httpc_cb cb, void *payload,
                     sw_httpc_t **out);
/* Abandons the request: cb follows with -ECANCELED (unless it already ran). */
void sw_httpc_cancel(sw_httpc_t *c);

/* Translates a uv_getaddrinfo status (UV_EAI_*) into the errno values the rest of Slipway
 * uses: -EHOSTUNREACH for a name that does not resolve, -EAGAIN, -ENOMEM, -ECANCELED, -EIO. */
int sw_httpc_resolve_error(int rc);

#endif
