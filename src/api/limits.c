/* API rate limits: a token bucket per client address and one per principal. Local buckets by
 * default; with SLIPWAY_RATE_LIMIT_BACKEND=redis one Lua script checks and takes from both
 * buckets atomically, shared by every slipwayd on that Redis (and the local buckets stand in
 * while Redis is unreachable). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/ratelimit.h"
#include "slipway/log.h"

#define KEYS_MAX 200000

/* Push hooks: a git host sends a few per push. Each sender has its own budget per app before
 * the signature is checked (a flood is refused before any query or HMAC, and spends only its
 * sender's budget); verified deliveries share one budget per app. */
#define HOOK_RATE      60
#define HOOK_PERIOD_MS 60000
#define HOOK_BURST     30
#define HOOK_KEYS_MAX  100000
/* Unverified requests to one app from all senders together: a ceiling on what a spread-out
 * flood costs (a query and an HMAC each), well above what a git host sends. */
#define HOOK_FLOOD_FACTOR 10

/* KEYS: the buckets. ARGV: tokens per millisecond, burst. Answers {allowed, remaining,
 * reset_ms, retry_ms} for the tightest bucket; takes one token from each only when every
 * bucket has one. Time comes from Redis, so processes with skewed clocks agree. */
static const char bucket_script[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local rate = tonumber(ARGV[1]) local burst = tonumber(ARGV[2]) "
    "local tokens = {} local ok = 1 "
    "for i, key in ipairs(KEYS) do "
    "  local v = redis.call('HMGET', key, 't', 'ts') "
    "  local tk = tonumber(v[1]) or burst local ts = tonumber(v[2]) or now "
    "  tk = math.min(burst, tk + math.max(0, now - ts) * rate) "
    "  tokens[i] = tk if tk < 1 then ok = 0 end "
    "end "
    "local remaining = burst local reset = 0 local retry = 0 "
    "for i, key in ipairs(KEYS) do "
    "  local tk = tokens[i] if ok == 1 then tk = tk - 1 end "
    "  redis.call('HSET', key, 't', tostring(tk), 'ts', now) "
    "  redis.call('PEXPIRE', key, math.ceil(burst / rate) + 1000) "
    "  if tk < remaining then remaining = tk end "
    "  local r = math.ceil((burst - tk) / rate) if r > reset then reset = r end "
    "  if tk < 1 then local w = math.ceil((1 - tk) / rate) if w > retry then retry = w end end "
    "end "
    "return {ok, math.floor(remaining), reset, retry}";

struct sw_api_limits {
    bool enabled;
    bool redis;
    uint32_t rps, burst;
    sw_ratelimit_t *by_address;
    sw_ratelimit_t *by_principal;
    sw_ratelimit_t *hook_senders; /* per app and sender address, before verification */
    sw_ratelimit_t *hook_floods;  /* per app, before verification: many senders together */
    sw_ratelimit_t *hooks;        /* per app, verified deliveries; both always on */
};

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    sw_api_limit_cb cont;
    bool principal_phase;
    char key[96];
} check_t;

sw_api_limits_t *sw_api_limits_new(const sw_config_t *cfg)
{
    sw_api_limits_t *l = sw_calloc(1, sizeof(*l));
    unsigned rps, burst;
    l->hook_senders = sw_ratelimit_new(HOOK_RATE, HOOK_PERIOD_MS, HOOK_BURST, HOOK_KEYS_MAX);
    l->hook_floods = sw_ratelimit_new(HOOK_RATE * HOOK_FLOOD_FACTOR, HOOK_PERIOD_MS,
                                      HOOK_BURST * HOOK_FLOOD_FACTOR, HOOK_KEYS_MAX);
    l->hooks = sw_ratelimit_new(HOOK_RATE, HOOK_PERIOD_MS, HOOK_BURST, HOOK_KEYS_MAX);
    if (strcmp(cfg->rate_limit, "off") != 0 &&
        sscanf(cfg->rate_limit, "%u/%u", &rps, &burst) == 2) {
        l->enabled = true;
        l->rps = rps;
        l->burst = burst;
        l->redis = strcmp(cfg->rate_limit_backend, "redis") == 0;
        l->by_address = sw_ratelimit_new(rps, 1000, burst, KEYS_MAX);
        l->by_principal = sw_ratelimit_new(rps, 1000, burst, KEYS_MAX);
    }
    return l;
}

void sw_api_limits_free(sw_api_limits_t *l)
{
    if (!l)
        return;
    sw_ratelimit_free(l->by_address);
    sw_ratelimit_free(l->by_principal);
    sw_ratelimit_free(l->hook_senders);
    sw_ratelimit_free(l->hook_floods);
    sw_ratelimit_free(l->hooks);
    free(l);
}

static void emit_headers(sw_api_t *api, sw_http_req_t *req)
{
    sw_api_req_t *ctx = sw_api_req(req);
    char v[32];
    snprintf(v, sizeof(v), "%u", api->limits->burst);
    sw_http_add_header(req, "X-RateLimit-Limit", v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)ctx->limit_remaining);
    sw_http_add_header(req, "X-RateLimit-Remaining", v);
    snprintf(v, sizeof(v), "%llu", (unsigned long long)((ctx->limit_reset_ms + 999) / 1000));
    sw_http_add_header(req, "X-RateLimit-Reset", v);
    /* The seconds an empty bucket takes to fill again: the budget is Limit per Window. */
    snprintf(v, sizeof(v), "%u",
             SW_MAX((api->limits->burst + api->limits->rps - 1) / api->limits->rps, 1u));
    sw_http_add_header(req, "X-RateLimit-Window", v);
}

/* Records one bucket's answer (keeping the tighter of two), then refuses or goes on. */
static void finish(check_t *c, bool allowed, uint64_t remaining, uint64_t reset_ms,
                   uint64_t retry_ms)
{
    sw_http_req_t *req = c->req;
    sw_api_req_t *ctx = sw_api_req(req);
    if (!ctx->limit_checked || remaining < ctx->limit_remaining) {
        ctx->limit_remaining = remaining;
        ctx->limit_reset_ms = reset_ms;
    }
    ctx->limit_checked = true;
    if (!allowed) {
        char v[32];
        emit_headers(c->api, req);
        snprintf(v, sizeof(v), "%llu", (unsigned long long)SW_MAX((retry_ms + 999) / 1000, 1));
        sw_http_add_header(req, "Retry-After", v);
        sw_http_respond_error(req, 429, "RATE_LIMIT_EXCEEDED",
                              "too many requests; slow down and retry after Retry-After seconds",
                              NULL);
        return;
    }
    if (c->principal_phase)
        emit_headers(c->api, req);
    c->cont(c->api, req);
}

static void check_local(check_t *c)
{
    sw_api_limits_t *l = c->api->limits;
    sw_ratelimit_result_t r;
    sw_ratelimit_take(c->principal_phase ? l->by_principal : l->by_address, c->key, 1,
                      uv_now(c->api->loop), &r);
    finish(c, r.allowed, r.remaining, r.reset_ms, r.retry_after_ms);
}

static void on_script(int status, const sw_redis_reply_t *reply, void *payload)
{
    check_t *c = payload;
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY || reply->elements != 4) {
        if (status == 0 && reply && reply->type == SW_REDIS_ERROR)
            sw_log_kv(SW_LOG_WARN, c->req->request_id, "rate limit script failed", "error",
                      reply->str, NULL);
        check_local(c); /* Redis is away: the local buckets still hold the line */
        return;
    }
    finish(c, reply->element[0]->integer == 1, (uint64_t)SW_MAX(reply->element[1]->integer, 0),
           (uint64_t)SW_MAX(reply->element[2]->integer, 0),
           (uint64_t)SW_MAX(reply->element[3]->integer, 0));
}

static void check(sw_api_t *api, sw_http_req_t *req, bool principal_phase, sw_api_limit_cb cont)
{
    sw_api_limits_t *l = api->limits;
    const sw_route_t *route = req->route;
    const sw_principal_t *p = sw_api_principal(req);
    if (!l->enabled || strncmp(route->pattern, "/api/v1/", 8) != 0) {
        cont(api, req);
        return;
    }
    check_t *c = sw_arena_calloc(&req->arena, sizeof(*c));
    c->api = api;
    c->req = req;
    c->cont = cont;
    c->principal_phase = principal_phase;
    if (principal_phase) {
        if (p->kind == SW_PRINCIPAL_NONE) {
            emit_headers(api, req); /* the address bucket's answer stands */
            cont(api, req);
            return;
        }
        snprintf(c->key, sizeof(c->key), "slipway:rl:p:%s",
                 p->kind == SW_PRINCIPAL_TOKEN ? p->token_id : p->user_id);
    } else {
        snprintf(c->key, sizeof(c->key), "slipway:rl:a:%s", req->client_addr);
    }
    if (!l->redis || !sw_redis_up(api->redis)) {
        check_local(c);
        return;
    }
    char rate[32], burst[16];
    snprintf(rate, sizeof(rate), "%.9f", (double)l->rps / 1000.0);
    snprintf(burst, sizeof(burst), "%u", l->burst);
    const char *argv[] = {"EVAL", bucket_script, "1", c->key, rate, burst};
    size_t argvlen[6];
    for (int i = 0; i < 6; i++)
        argvlen[i] = strlen(argv[i]);
    if (sw_redis_command(api->redis, on_script, c, 6, argv, argvlen) != 0)
        check_local(c);
}

void sw_api_limits_address(sw_api_t *api, sw_http_req_t *req, sw_api_limit_cb cont)
{
    check(api, req, false, cont);
}

void sw_api_limits_principal(sw_api_t *api, sw_http_req_t *req, sw_api_limit_cb cont)
{
    check(api, req, true, cont);
}

static bool hook_take(sw_api_t *api, sw_http_req_t *req, sw_ratelimit_t *rl, const char *key)
{
    sw_ratelimit_result_t r;
    char v[32];
    sw_ratelimit_take(rl, key, 1, uv_now(api->loop), &r);
    if (r.allowed)
        return true;
    /* With the API budget on, its X-RateLimit-* headers are already there. */
    if (!api->limits->enabled) {
        snprintf(v, sizeof(v), "%u", r.limit);
        sw_http_add_header(req, "X-RateLimit-Limit", v);
        snprintf(v, sizeof(v), "%u", r.remaining);
        sw_http_add_header(req, "X-RateLimit-Remaining", v);
        snprintf(v, sizeof(v), "%llu", (unsigned long long)((r.reset_ms + 999) / 1000));
        sw_http_add_header(req, "X-RateLimit-Reset", v);
        snprintf(v, sizeof(v), "%llu", (unsigned long long)SW_MAX((r.window_ms + 999) / 1000, 1));
        sw_http_add_header(req, "X-RateLimit-Window", v);
    }
    snprintf(v, sizeof(v), "%llu", (unsigned long long)SW_MAX((r.retry_after_ms + 999) / 1000, 1));
    sw_http_add_header(req, "Retry-After", v);
    sw_http_respond_error(req, 429, "RATE_LIMIT_EXCEEDED",
                          "too many hook deliveries for this app; retry after Retry-After seconds",
                          NULL);
    return false;
}

/* A sender: its IPv4 address, or the /64 of an IPv6 one (one host's usual share). */
static void sender_of(const char *addr, char *out, size_t len)
{
    struct in6_addr a6;
    if (!strchr(addr, ':') || inet_pton(AF_INET6, addr, &a6) != 1) {
        snprintf(out, len, "%s", addr);
        return;
    }
    memset(a6.s6_addr + 8, 0, 8);
    if (!inet_ntop(AF_INET6, &a6, out, (socklen_t)len))
        snprintf(out, len, "%s", addr);
}

bool sw_api_limits_hook_sender(sw_api_t *api, sw_http_req_t *req, const char *app_id)
{
    char sender[INET6_ADDRSTRLEN + 8];
    char key[SW_UUID_LEN + 1 + sizeof(sender)];
    sender_of(req->client_addr, sender, sizeof(sender));
    snprintf(key, sizeof(key), "%s/%s", app_id, sender);
    return hook_take(api, req, api->limits->hook_senders, key) &&
           hook_take(api, req, api->limits->hook_floods, app_id);
}

bool sw_api_limits_hook(sw_api_t *api, sw_http_req_t *req, const char *app_id)
{
    return hook_take(api, req, api->limits->hooks, app_id);
}
