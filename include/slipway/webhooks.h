/* Outgoing webhooks: target URLs and the SSRF rule, the signed request, and the dispatcher
 * that sends what the PostgreSQL triggers of sql/008_webhooks.sql queue (DESIGN.md §5). */
#ifndef SLIPWAY_WEBHOOKS_H
#define SLIPWAY_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/config.h"
#include "slipway/crypto.h"
#include "slipway/netaddr.h"
#include "slipway/pg.h"

struct sockaddr;

#define SW_WEBHOOK_URL_MAX      2048
#define SW_WEBHOOK_SECRET_BYTES 32           /* shown to the user as 64 hex characters */
#define SW_WEBHOOK_SIGNATURE    (7 + 64 + 1) /* "sha256=" + hex + NUL */

/* ---- target URLs ---- */

typedef struct {
    bool https;
    char host[254]; /* lower case, without IPv6 brackets */
    bool host_v6;
    uint16_t port;
    char path[SW_WEBHOOK_URL_MAX + 2]; /* path and query; "/" when the URL has none */
} sw_webhook_url_t;

/* Parses an http(s) URL: at most SW_WEBHOOK_URL_MAX printable ASCII characters, no userinfo,
 * no fragment, a host name or IP literal, an optional port. NULL when fine, else why not (a
 * phrase that follows the field name: "must use http or https"). */
const char *sw_webhook_url_parse(const char *url, sw_webhook_url_t *out);

/* ---- the signed request ---- */

/* "sha256=" + hex HMAC-SHA256 of body under key (the secret's hex text, as shown). */
void sw_webhook_sign(const char *key, size_t key_len, const void *body, size_t len,
                     char out[SW_WEBHOOK_SIGNATURE]);

#define SW_WEBHOOK_HEADERS 5
typedef struct {
    char lines[SW_WEBHOOK_HEADERS][128];
    const char *list[SW_WEBHOOK_HEADERS + 1]; /* NULL-terminated, for sw_httpc_req_t */
} sw_webhook_headers_t;

/* Content-Type, User-Agent, X-Slipway-Event, X-Slipway-Delivery and X-Slipway-Signature.
 * -EINVAL when event or delivery_id is not a short token (letters, digits, '.', '-', '_'). */
int sw_webhook_headers_build(sw_webhook_headers_t *out, const char *event, const char *delivery_id,
                             const char *key, size_t key_len, const void *body, size_t len);

/* Copies at most max bytes of an answer into out as text: whole UTF-8 characters only, and
 * NUL, other control characters (but tab and newline) and invalid bytes become '?'. */
void sw_webhook_excerpt(const char *body, size_t len, size_t max, sw_buf_t *out);

/* ---- resolving a target under the SSRF rule ---- */

typedef struct sw_webhook_resolve sw_webhook_resolve_t;

/* status 0 with the address to connect to; -EACCES when an address the name resolves to is
 * not public (addr is that address, kind says why) and private targets are not allowed;
 * -EHOSTUNREACH when the name does not resolve; -ECANCELED; another negative code. addr is
 * valid only during the call. Called exactly once, never from inside the starting call. */
typedef void (*sw_webhook_resolve_cb)(int status, const struct sockaddr *addr, sw_addr_kind_t kind,
                                      void *payload);

/* Resolves host (a name or IP literal) on the threadpool and checks every address it
 * resolves to. out (optional) allows sw_webhook_resolve_cancel until cb runs. */
int sw_webhook_resolve(uv_loop_t *loop, const char *host, uint16_t port, bool allow_private,
                       sw_webhook_resolve_cb cb, void *payload, sw_webhook_resolve_t **out);
/* cb follows with -ECANCELED, unless the lookup already runs (then with its result). */
void sw_webhook_resolve_cancel(sw_webhook_resolve_t *r);

/* ---- the dispatcher (roles all and worker) ---- */

typedef struct sw_webhooks sw_webhooks_t;

/* Polls for due deliveries every 500 ms and sends them, a bounded number at once. box must
 * outlive the dispatcher. */
int sw_webhooks_start(sw_webhooks_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                      sw_pg_pool_t *pg, const sw_secretbox_t *box);
/* Abandons requests in flight (their deliveries become due again at once), waits for the
 * queries that record that, closes the timer, then calls on_stopped and frees wh. */
void sw_webhooks_stop(sw_webhooks_t *wh, void (*on_stopped)(void *payload), void *payload);

#endif
