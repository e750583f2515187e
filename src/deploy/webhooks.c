/* Outgoing webhooks: which addresses a webhook may reach, the signed request, and the
 * dispatcher.
 *
 * Deliveries are rows (sql/008_webhooks.sql): triggers queue one per matching webhook in the
 * transaction that changed the deployment or app, so nothing is lost to a crash or restart.
 * The dispatcher claims due rows with a lease (their next_attempt_at moves past the longest
 * attempt, and a claim counter tells a stale claimant from the current one), resolves the
 * target, refuses it unless every address is public (or SLIPWAY_WEBHOOK_ALLOW_PRIVATE), sends
 * it to exactly the address it checked, and records the attempt and the delivery's next
 * state in one statement. Only a webhook's oldest pending delivery is ever due, so each
 * receiver gets its events one at a time and in order. Delivery is at least once: an attempt whose
 * record is lost (the database went away at that moment) is sent again when the lease lapses. */
#include "slipway/webhooks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/crypto.h"
#include "slipway/client.h"
#include "slipway/log.h"
#include "sw_version.h"

#define POLL_MS             500
#define MAX_IN_FLIGHT       16
#define LEASE_S             "60" /* longer than a lookup, connect (5 s) and answer (10 s) */
#define CONNECT_TIMEOUT_MS  5000
#define RESPONSE_TIMEOUT_MS 10000
#define RESPONSE_MAX        (8u * 1024u) /* read of an answer: the excerpt needs no more */
#define EXCERPT_MAX         1024
#define BACKOFF_MAX_MS      "3600000"
#define TOKEN_MAX           100

/* ---- target URLs ---- */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static const char *parse_port(const char *s, size_t n, uint16_t *out)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return "has a malformed port";
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return "has a malformed port";
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return "has a port outside 1-65535";
    *out = (uint16_t)v;
    return NULL;
}

const char *sw_webhook_url_parse(const char *url, sw_webhook_url_t *out)
{
    sw_webhook_url_t u = {0};
    size_t n = strlen(url);
    const char *p;
    if (n == 0)
        return "is required";
    if (n > SW_WEBHOOK_URL_MAX)
        return "must be at most 2048 characters";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= ' ' || c >= 0x7f)
            return "must be printable ASCII without spaces (percent-encode the rest)";
    }
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
        u.port = 80;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        u.https = true;
        u.port = 443;
    } else {
        return "must be an http:// or https:// URL";
    }
    if (strchr(p, '#'))
        return "must not have a fragment (#...)";
    size_t alen = strcspn(p, "/?");
    const char *rest = p + alen, *port = NULL, *host = p;
    size_t hlen, plen = 0;
    if (memchr(p, '@', alen))
        return "must not hold credentials (user:password@)";
    if (alen == 0)
        return "must name a host";
    if (p[0] == '[') {
        const char *close = memchr(p, ']', alen);
        char lit[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (!close)
            return "has an unterminated IPv6 literal";
        host = p + 1;
        hlen = (size_t)(close - host);
        if (hlen == 0 || hlen >= sizeof(lit))
            return "has a malformed IPv6 literal";
        memcpy(lit, host, hlen);
        lit[hlen] = '\0';
        if (inet_pton(AF_INET6, lit, &a6) != 1)
            return "has a malformed IPv6 literal";
        if (close + 1 < p + alen) {
            if (close[1] != ':')
                return "has a malformed host";
            port = close + 2;
            plen = (size_t)(p + alen - port);
        }
        u.host_v6 = true;
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
        if (colon) {
            port = colon + 1;
            plen = (size_t)(p + alen - port);
        }
        if (hlen == 0)
            return "must name a host";
        if (hlen > 253)
            return "has a host name longer than 253 characters";
        for (size_t i = 0; i < hlen; i++)
            if (!host_char(host[i]) || (host[i] == '.' && (i == 0 || host[i - 1] == '.')))
                return "has a malformed host name";
    }
    if (port) {
        const char *why = parse_port(port, plen, &u.port);
        if (why)
            return why;
    }
    for (size_t i = 0; i < hlen; i++)
        u.host[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] - 'A' + 'a' : host[i]);
    u.host[hlen] = '\0';
    snprintf(u.path, sizeof(u.path), "%s%s", *rest == '/' ? "" : "/", rest);
    *out = u;
    return NULL;
}

/* ---- the signed request ---- */

void sw_webhook_sign(const char *key, size_t key_len, const void *body, size_t len,
                     char out[SW_WEBHOOK_SIGNATURE])
{
    memcpy(out, "sha256=", 7);
    sw_hmac_sha256_hex(key, key_len, body, len, out + 7);
}

static bool token_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!host_char(s[i]))
            return false;
    return true;
}

int sw_webhook_headers_build(sw_webhook_headers_t *out, const char *event, const char *delivery_id,
                             const char *key, size_t key_len, const void *body, size_t len)
{
    char sig[SW_WEBHOOK_SIGNATURE];
    if (!token_valid(event) || !token_valid(delivery_id))
        return -EINVAL;
    sw_webhook_sign(key, key_len, body, len, sig);
    snprintf(out->lines[0], sizeof(out->lines[0]), "Content-Type: application/json");
    snprintf(out->lines[1], sizeof(out->lines[1]), "User-Agent: slipway/%s", SW_VERSION);
    snprintf(out->lines[2], sizeof(out->lines[2]), "X-Slipway-Event: %s", event);
    snprintf(out->lines[3], sizeof(out->lines[3]), "X-Slipway-Delivery: %s", delivery_id);
    snprintf(out->lines[4], sizeof(out->lines[4]), "X-Slipway-Signature: %s", sig);
    for (size_t i = 0; i < SW_WEBHOOK_HEADERS; i++)
        out->list[i] = out->lines[i];
    out->list[SW_WEBHOOK_HEADERS] = NULL;
    return 0;
}

/* The length of the valid UTF-8 character at s (1-4), or 0. */
static size_t utf8_char(const unsigned char *s, size_t avail)
{
    size_t n;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void sw_webhook_excerpt(const char *body, size_t len, size_t max, sw_buf_t *out)
{
    const unsigned char *s = (const unsigned char *)body;
    size_t i = 0, written = 0;
    while (i < len && written < max) {
        size_t n = utf8_char(s + i, len - i);
        if (n == 1) {
            bool control =
                (s[i] < ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') || s[i] == 0x7f;
            sw_buf_append_char(out, control ? '?' : (char)s[i]);
        } else if (n == 0) {
            sw_buf_append_char(out, '?');
            n = 1;
        } else {
            if (written + n > max)
                break;
            sw_buf_append(out, s + i, n);
        }
        i += n;
        written += n == 0 ? 1 : n;
    }
}

/* ---- resolving under the SSRF rule ---- */

struct sw_webhook_resolve {
    uv_getaddrinfo_t gai;
    bool allow_private;
    sw_webhook_resolve_cb cb;
    void *payload;
};

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sw_webhook_resolve_t *r = req->data;
    const struct addrinfo *pick = NULL, *bad = NULL;
    sw_addr_kind_t kind = SW_ADDR_PUBLIC, bad_kind = SW_ADDR_PUBLIC;
    for (const struct addrinfo *ai = status == 0 ? res : NULL; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        sw_addr_kind_t k = sw_addr_classify(ai->ai_addr);
        /* Any refused address refuses the name: which one a later lookup returns first is
         * not ours to choose. */
        if (k != SW_ADDR_PUBLIC && !r->allow_private) {
            bad = ai;
            bad_kind = k;
            break;
        }
        if (!pick) {
            pick = ai;
            kind = k;
        }
    }
    if (status < 0)
        r->cb(sw_httpc_resolve_error(status), NULL, SW_ADDR_PUBLIC, r->payload);
    else if (bad)
        r->cb(-EACCES, bad->ai_addr, bad_kind, r->payload);
    else if (pick)
        r->cb(0, pick->ai_addr, kind, r->payload);
    else
        r->cb(-EHOSTUNREACH, NULL, SW_ADDR_PUBLIC, r->payload);
    if (res)
        uv_freeaddrinfo(res);
    free(r);
}

int sw_webhook_resolve(uv_loop_t *loop, const char *host, uint16_t port, bool allow_private,
                       sw_webhook_resolve_cb cb, void *payload, sw_webhook_resolve_t **out)
{
    char service[8];
    if (!loop || !host || !*host || strlen(host) > 253 || port == 0 || !cb)
        return -EINVAL;
    sw_webhook_resolve_t *r = sw_calloc(1, sizeof(*r));
    r->allow_private = allow_private;
    r->cb = cb;
    r->payload = payload;
    r->gai.data = r;
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags = AI_NUMERICSERV};
    int rc = uv_getaddrinfo(loop, &r->gai, on_resolved, host, service, &hints);
    if (rc < 0) {
        free(r);
        return sw_httpc_resolve_error(rc);
    }
    if (out)
        *out = r;
    return 0;
}

void sw_webhook_resolve_cancel(sw_webhook_resolve_t *r)
{
    if (r)
        (void)uv_cancel((uv_req_t *)&r->gai);
}

/* ---- the dispatcher ---- */

typedef enum {
    SEND_STARTING,
    SEND_RESOLVING,
    SEND_REQUESTING,
    SEND_RECORDING,
    SEND_MAX
} send_state_t;

typedef struct send send_t;
struct send {
    send_t *prev, *next;
    sw_webhooks_t *wh;
    send_state_t state;
    char id[40];
    char webhook_id[40];
    char claim[24];
    char event[TOKEN_MAX + 1];
    sw_buf_t body;
    sw_buf_t secret;
    sw_webhook_url_t url;
    sw_webhook_resolve_t *resolve;
    sw_httpc_t *http;
    uint64_t started_ns;
};

struct sw_webhooks {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_pg_pool_t *pg;
    const sw_secretbox_t *box;
    uv_timer_t tick;
    bool polling; /* a claim query is in flight */
    unsigned in_flight;
    send_t *sends;
    bool stopping;
    bool closing;
    void (*on_stopped)(void *payload);
    void *payload;
};

static void poll_due(sw_webhooks_t *wh);

static void on_tick_closed(uv_handle_t *h)
{
    sw_webhooks_t *wh = h->data;
    void (*cb)(void *) = wh->on_stopped;
    void *payload = wh->payload;
    free(wh);
    if (cb)
        cb(payload);
}

static void maybe_stopped(sw_webhooks_t *wh)
{
    if (!wh->stopping || wh->closing || wh->polling || wh->sends)
        return;
    wh->closing = true;
    uv_close((uv_handle_t *)&wh->tick, on_tick_closed);
}

static void send_free(send_t *s)
{
    sw_webhooks_t *wh = s->wh;
    if (s->prev)
        s->prev->next = s->next;
    else
        wh->sends = s->next;
    if (s->next)
        s->next->prev = s->prev;
    wh->in_flight--;
    if (s->secret.base)
        sodium_memzero(s->secret.base, s->secret.len);
    sw_buf_free(&s->secret);
    sw_buf_free(&s->body);
    free(s);
    maybe_stopped(wh);
}

static void on_recorded(int status, sw_pg_result_t *res, void *payload)
{
    send_t *s = payload;
    if (status != 0) {
        /* The lease lapses and the attempt is made again: at least once, never lost. */
        sw_log_kv(SW_LOG_WARN, NULL, "a webhook attempt could not be recorded", "delivery", s->id,
                  "error", res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    } else if (sw_pg_result_rows(res) == 1) {
        const char *attempt = sw_pg_result_value(res, 0, 0);
        const char *state = sw_pg_result_value(res, 0, 1);
        if (state && strcmp(state, "failed") == 0)
            sw_log_kv(SW_LOG_WARN, NULL, "webhook delivery failed: no attempts left", "delivery",
                      s->id, "webhook", s->webhook_id, "event", s->event, "attempts", attempt,
                      NULL);
        else
            sw_log_kv(SW_LOG_DEBUG, NULL, "webhook attempt recorded", "delivery", s->id, "event",
                      s->event, "attempt", attempt, "state", state, NULL);
    }
    send_free(s);
}

/* Records one attempt: http_status 0 when no answer came, error NULL when one did. */
static void record(send_t *s, int http_status, uint64_t latency_ms, const char *excerpt,
                   const char *error)
{
    sw_webhooks_t *wh = s->wh;
    char code[8], latency[24], max_attempts[16], base_ms[16];
    bool ok = error == NULL && http_status >= 200 && http_status <= 299;
    snprintf(code, sizeof(code), "%d", http_status);
    snprintf(latency, sizeof(latency), "%llu", (unsigned long long)SW_MIN(latency_ms, 1u << 30));
    snprintf(max_attempts, sizeof(max_attempts), "%u", (unsigned)wh->cfg->webhook_max_attempts);
    snprintf(base_ms, sizeof(base_ms), "%u", (unsigned)wh->cfg->webhook_retry_base_ms);
    const char *params[] = {s->id,
                            s->claim,
                            ok ? "true" : "false",
                            http_status ? code : NULL,
                            latency,
                            excerpt,
                            error,
                            max_attempts,
                            base_ms};
    s->state = SEND_RECORDING;
    /* attempts in SET is the old value: the n-th failure waits base * 2^(n-1), capped. */
    sw_pg_query(
        wh->pg,
        "WITH d AS (UPDATE webhook_deliveries SET attempts = attempts + 1, "
        "state = CASE WHEN $3::bool THEN 'delivered' WHEN attempts + 1 >= $8::int THEN 'failed' "
        "ELSE 'pending' END, "
        "next_attempt_at = CASE WHEN $3::bool OR attempts + 1 >= $8::int THEN now() ELSE now() + "
        "make_interval(secs => LEAST($9::float8 * power(2, LEAST(attempts, 40)), " BACKOFF_MAX_MS
        ") / 1000) END, updated_at = now() "
        "WHERE id = $1::uuid AND claim = $2::bigint AND state = 'pending' "
        "RETURNING id, webhook_id, event, attempts, state, next_attempt_at) "
        "INSERT INTO webhook_attempts (delivery_id, webhook_id, event, attempt, status_code, "
        "latency_ms, response, error, next_attempt_at) "
        "SELECT d.id, d.webhook_id, d.event, d.attempts, $4::int, $5::int, coalesce($6, ''), $7, "
        "CASE WHEN d.state = 'pending' THEN d.next_attempt_at END FROM d "
        "RETURNING attempt, (SELECT state FROM d)",
        9, params, on_recorded, s);
}

/* Stopping: the delivery is due again at once, for whichever process polls next. */
static void release(send_t *s)
{
    const char *params[] = {s->id, s->claim};
    s->state = SEND_RECORDING;
    sw_pg_query(s->wh->pg,
                "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1::uuid "
                "AND claim = $2::bigint AND state = 'pending'",
                2, params, on_recorded, s);
}

static const char *http_error(int status, const char *reason)
{
    if (reason)
        return reason; /* TLS: "certificate verify failed: hostname mismatch" and the like */
    switch (status) {
    case -ETIMEDOUT:
        return "timed out (5 s to connect, 10 s for the answer)";
    case -ECONNREFUSED:
        return "connection refused";
    case -EMSGSIZE:
        return "the answer was larger than 64 KiB";
    case -EPROTO:
        return "the answer was not valid HTTP";
    default:
        return sw_strerror(status);
    }
}

static void on_answer(int status, int http_status, const char *body, size_t len, void *payload)
{
    send_t *s = payload;
    uint64_t latency_ms = (uv_hrtime() - s->started_ns) / 1000000u;
    s->http = NULL;
    if (status == -ECANCELED && s->wh->stopping) {
        release(s);
        return;
    }
    if (status != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%.*s", (int)(body ? len : 0), body ? body : "");
        record(s, 0, latency_ms, NULL, http_error(status, body ? msg : NULL));
        return;
    }
    sw_buf_t excerpt = SW_BUF_INIT;
    sw_webhook_excerpt(body, len, EXCERPT_MAX, &excerpt);
    record(s, http_status, latency_ms, excerpt.base ? excerpt.base : "", NULL);
    sw_buf_free(&excerpt);
}

static void on_target(int status, const struct sockaddr *addr, sw_addr_kind_t kind, void *payload)
{
    send_t *s = payload;
    sw_webhooks_t *wh = s->wh;
    char msg[400];
    s->resolve = NULL;
    if (wh->stopping) {
        release(s);
        return;
    }
    if (status == -EACCES) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if (addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, ip, sizeof(ip));
        snprintf(msg, sizeof(msg),
                 "refused: %s resolves to %s, a %s address (SLIPWAY_WEBHOOK_ALLOW_PRIVATE is off)",
                 s->url.host, ip, sw_addr_kind_name(kind));
        record(s, 0, 0, NULL, msg);
        return;
    }
    if (status != 0) {
        snprintf(msg, sizeof(msg), "cannot resolve %s: %s", s->url.host,
                 status == -EHOSTUNREACH ? "no such host" : sw_strerror(status));
        record(s, 0, 0, NULL, msg);
        return;
    }
    sw_webhook_headers_t h;
    if (sw_webhook_headers_build(&h, s->event, s->id, s->secret.base, s->secret.len, s->body.base,
                                 s->body.len) != 0) {
        record(s, 0, 0, NULL, "the delivery's event or id is malformed");
        return;
    }
    char host[sizeof(s->url.host) + 2];
    snprintf(host, sizeof(host), s->url.host_v6 ? "[%s]" : "%s", s->url.host);
    sw_httpc_req_t req = {
        .method = "POST",
        .host = host,
        .port = s->url.port,
        .path = s->url.path,
        .headers = h.list,
        .body = s->body.base,
        .body_len = s->body.len,
        .connect_timeout_ms = CONNECT_TIMEOUT_MS,
        .timeout_ms = CONNECT_TIMEOUT_MS + RESPONSE_TIMEOUT_MS,
        .max_body = RESPONSE_MAX,
        .truncate_body = true, /* a long 2xx answer still delivers */
        .addr = addr,
        .tls = s->url.https,
    };
    s->state = SEND_REQUESTING;
    s->started_ns = uv_hrtime();
    int rc = sw_httpc_request(wh->loop, &req, on_answer, s, &s->http);
    sodium_memzero(&h, sizeof(h));
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "the request could not be made: %s",
                 rc == -EINVAL ? "malformed URL or headers" : sw_strerror(rc));
        record(s, 0, 0, NULL, msg);
    }
}

static void send_start(send_t *s, const char *url, const char *sealed)
{
    sw_webhooks_t *wh = s->wh;
    char ad[64];
    snprintf(ad, sizeof(ad), "webhook:%s", s->webhook_id);
    if (!sealed || sw_secretbox_open(wh->box, sealed, strlen(sealed), ad, &s->secret) != 0) {
        record(s, 0, 0, NULL, "the webhook's signing secret cannot be opened with this master key");
        return;
    }
    const char *why = sw_webhook_url_parse(url ? url : "", &s->url);
    if (why) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the URL %s", why);
        record(s, 0, 0, NULL, msg);
        return;
    }
    s->state = SEND_RESOLVING;
    int rc = sw_webhook_resolve(wh->loop, s->url.host, s->url.port, wh->cfg->webhook_allow_private,
                                on_target, s, &s->resolve);
    if (rc != 0)
        record(s, 0, 0, NULL, "the target's name could not be looked up");
}

static void on_claimed(int status, sw_pg_result_t *res, void *payload)
{
    sw_webhooks_t *wh = payload;
    wh->polling = false;
    if (status != 0) {
        if (status != SW_EUNAVAIL && status != SW_ECANCELED)
            sw_log_kv(SW_LOG_WARN, NULL, "claiming webhook deliveries failed", "error",
                      res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
        maybe_stopped(wh);
        return;
    }
    int rows = sw_pg_result_rows(res);
    for (int i = 0; i < rows; i++) {
        send_t *s = sw_calloc(1, sizeof(*s));
        s->wh = wh;
        s->state = SEND_STARTING;
        snprintf(s->id, sizeof(s->id), "%s", sw_pg_result_value(res, i, 0));
        snprintf(s->webhook_id, sizeof(s->webhook_id), "%s", sw_pg_result_value(res, i, 1));
        snprintf(s->event, sizeof(s->event), "%s", sw_pg_result_value(res, i, 2));
        sw_buf_append_cstr(&s->body, sw_pg_result_value(res, i, 3));
        snprintf(s->claim, sizeof(s->claim), "%s", sw_pg_result_value(res, i, 4));
        s->next = wh->sends;
        if (wh->sends)
            wh->sends->prev = s;
        wh->sends = s;
        wh->in_flight++;
        send_start(s, sw_pg_result_value(res, i, 5), sw_pg_result_value(res, i, 6));
    }
    /* A full batch: there may be more due now, so do not wait for the next tick. */
    if (rows > 0 && wh->in_flight < MAX_IN_FLIGHT)
        poll_due(wh);
    maybe_stopped(wh);
}

static void poll_due(sw_webhooks_t *wh)
{
    char limit[8];
    if (wh->stopping || wh->polling || wh->in_flight >= MAX_IN_FLIGHT)
        return;
    snprintf(limit, sizeof(limit), "%u", MAX_IN_FLIGHT - wh->in_flight);
    const char *params[] = {limit};
    wh->polling = true;
    /* One indexed query per tick whatever the number of webhooks; SKIP LOCKED and the lease
     * keep two processes from sending the same attempt, and only a webhook's oldest pending
     * delivery is ever due, so each receiver gets its events in order. */
    sw_pg_query(wh->pg,
                "UPDATE webhook_deliveries d SET next_attempt_at = now() + interval '" LEASE_S
                " seconds', claim = d.claim + 1 FROM webhooks w "
                "WHERE d.id IN (SELECT id FROM webhook_deliveries q WHERE state = 'pending' "
                "AND next_attempt_at <= now() AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o "
                "WHERE o.webhook_id = q.webhook_id AND o.state = 'pending' AND o.seq < q.seq) "
                "ORDER BY next_attempt_at LIMIT $1::int FOR UPDATE SKIP LOCKED) "
                "AND w.id = d.webhook_id "
                "RETURNING d.id, d.webhook_id, d.event, d.payload, d.claim, w.url, w.secret_sealed",
                1, params, on_claimed, wh);
}

static void on_tick(uv_timer_t *t)
{
    poll_due(t->data);
}

int sw_webhooks_start(sw_webhooks_t **out, uv_loop_t *loop, const sw_config_t *cfg,
                      sw_pg_pool_t *pg, const sw_secretbox_t *box)
{
    if (!out || !loop || !cfg || !pg || !box)
        return -EINVAL;
    sw_webhooks_t *wh = sw_calloc(1, sizeof(*wh));
    wh->loop = loop;
    wh->cfg = cfg;
    wh->pg = pg;
    wh->box = box;
    uv_timer_init(loop, &wh->tick);
    wh->tick.data = wh;
    uv_timer_start(&wh->tick, on_tick, 0, POLL_MS);
    *out = wh;
    return 0;
}

void sw_webhooks_stop(sw_webhooks_t *wh, void (*on_stopped)(void *payload), void *payload)
{
    if (!wh || wh->stopping)
        return;
    wh->stopping = true;
    wh->on_stopped = on_stopped;
    wh->payload = payload;
    uv_timer_stop(&wh->tick);
    for (send_t *s = wh->sends; s; s = s->next) {
        if (s->state == SEND_RESOLVING)
            sw_webhook_resolve_cancel(s->resolve);
        else if (s->state == SEND_REQUESTING && s->http)
            sw_httpc_cancel(s->http);
    }
    maybe_stopped(wh);
}
