/* A small HTTP/1.1 client on the loop: health checks, outgoing webhooks, proxy drivers.
 * One request per connection (Connection: close), connect and whole-request timeouts, a cap
 * on the response body, and https with the peer's certificate verified. */
#ifndef SLIPWAY_CLIENT_H
#define SLIPWAY_CLIENT_H

#include <stdbool.h>
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
    size_t max_body;             /* 0: 1 MiB; a longer body fails with -EMSGSIZE... */
    bool truncate_body;          /* ...unless this is set: then its first max_body bytes are
                                  * the answer, and the connection closes once they are in */
    /* Optional: connect to exactly this address (IPv4 or IPv6, with the port) instead of
     * resolving host, which then only names the Host header. A caller that vetted the address
     * (the webhook SSRF check) uses it so nothing resolves the name a second time. */
    const struct sockaddr *addr;
    /* https: TLS 1.2 or later, the server's certificate verified against the trust store
     * (sw_httpc_tls_init) and against host - its name (also sent as SNI) or IP literal. */
    bool tls;
    /* Optional: connect to this unix socket instead (host and port then only make the Host
     * header, which a caller may set itself, even empty: "Host: "). No TLS over it. */
    const char *unix_path;
    /* Optional: the value of the answer's first header field of this name is copied into
     * header_value (header_value_size bytes with the NUL, truncated; "" when absent). The
     * buffer must live until the callback. */
    const char *capture_header;
    char *header_value;
    size_t header_value_size;
} sw_httpc_req_t;

/* status 0 with the HTTP status and body, or a negative code: -ETIMEDOUT, -ECONNREFUSED,
 * -EMSGSIZE, -EPROTO (unparsable answer, or a failed TLS handshake), -EKEYREJECTED (the
 * server's certificate did not verify), -ECANCELED, or another -errno. On failure body is
 * NULL or a one-line reason ("certificate verify failed: hostname mismatch"). body is valid
 * only during the call. Called exactly once, never from inside sw_httpc_request. */
typedef void (*sw_httpc_cb)(int status, int http_status, const char *body, size_t len,
                            void *payload);

int sw_httpc_request(uv_loop_t *loop, const sw_httpc_req_t *req, sw_httpc_cb cb, void *payload,
                     sw_httpc_t **out);
/* Abandons the request: cb follows with -ECANCELED (unless it already ran). */
void sw_httpc_cancel(sw_httpc_t *c);

/* The certificates https requests trust: the system store - OpenSSL's hashed certificate
 * directory, read one certificate at a time as chains need them (SSL_CERT_DIR moves it;
 * SSL_CERT_FILE adds a bundle) - and, unless ca_file is NULL or empty, the PEM certificates
 * in ca_file. Builds the process's TLS context now, replacing an earlier one (requests in
 * flight keep theirs), so a bad file is reported at start-up; without a call, the first https
 * request builds it with the system store alone. 0, or -errno with why filled in. */
int sw_httpc_tls_init(const char *ca_file, char *why, size_t why_len);
/* Frees the TLS context (at exit; the next https request would build a new one). */
void sw_httpc_tls_cleanup(void);

/* Translates a uv_getaddrinfo status (UV_EAI_*) into the errno values the rest of Slipway
 * uses: -EHOSTUNREACH for a name that does not resolve, -EAGAIN, -ENOMEM, -ECANCELED, -EIO. */
int sw_httpc_resolve_error(int rc);

#endif
