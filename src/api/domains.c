/* /api/v1/domains: hostnames routed to apps, each claimed by one app instance-wide. */
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"

#include "internal.h"

static const sw_api_sort_t domain_sorts[] = {
    {"hostname", "hostname"},
    {"created_at", "created_at"},
    {NULL, NULL},
};

#define DOMAINS_FROM "(SELECT d.*, a.project_id FROM domains d JOIN apps a ON a.id = d.app_id)"
#define DOMAIN_JSON                                                                                \
    "json_build_object('id', x.id, 'app_id', x.app_id, 'hostname', x.hostname, 'created_at', "     \
    "x.created_at, 'routing', sw_domain_routing_json(x.hostname), 'tls', "                         \
    "sw_domain_tls_json(x.hostname))"

/* Lower-cases host into out; NULL when it is fine, else why not. Only ASCII names: a
 * Unicode name must arrive as punycode (xn--), so lookalikes cannot be registered. */
static const char *hostname_problem(const char *host, bool wildcards, char *out, size_t size)
{
    size_t n = strlen(host);
    if (n == 0 || n > 253 || n >= size)
        return "must be 1 to 253 characters";
    const char *p = host;
    size_t labels = 0;
    bool all_numeric = true;
    if (strncmp(host, "*.", 2) == 0) {
        if (!wildcards)
            return "wildcards are disabled (SLIPWAY_ALLOW_WILDCARD_DOMAINS)";
        p += 2;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] - 'A' + 'a' : host[i]);
    out[n] = '\0';
    p = out + (p - host);
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || len > 63)
            return "each label must be 1 to 63 characters";
        if (p[0] == '-' || p[len - 1] == '-')
            return "labels must not start or end with '-'";
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c >= 0x80)
                return "must be ASCII: give an internationalised name in punycode (xn--)";
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                return "may hold only letters, digits, '-' and '.'";
            if (c < '0' || c > '9')
                all_numeric = false;
        }
        labels++;
        p += len;
        if (*p == '.') {
            p++;
            if (!*p)
                return "must not end with '.'";
        }
    }
    if (labels < 2)
        return "must have at least two labels (example.com)";
    if (all_numeric)
        return "must be a name, not an IP address";
    return NULL;
}

/* NULL when host (lower-case, valid) may belong to an app, else why not: names that are
 * Slipway's own can never be claimed, or an app could take the control plane's address or
 * another app's generated name. */
static const char *reserved_problem(const sw_config_t *cfg, const char *host)
{
    char public_host[256];
    sw_config_public_host(cfg, public_host, sizeof(public_host));
    if (public_host[0] && strcmp(host, public_host) == 0)
        return "is Slipway's own address (SLIPWAY_PUBLIC_URL)";
    const char *base = strncmp(host, "*.", 2) == 0 ? host + 2 : host;
    size_t n = strlen(base), d = strlen(cfg->apps_domain);
    if (d && (strcmp(base, cfg->apps_domain) == 0 ||
              (n > d && base[n - d - 1] == '.' && strcmp(base + n - d, cfg->apps_domain) == 0)))
        return "is SLIPWAY_APPS_DOMAIN or under it: Slipway names apps there itself";
    return NULL;
}

void sw_api_domains_list_app(sw_http_req_t *req, void *ctx)
{
    sw_api_list_t l = {.from = DOMAINS_FROM,
                       .json_expr = DOMAIN_JSON,
                       .sorts = domain_sorts,
                       .default_sort = "hostname"};
    sw_api_list_where(&l, "x.app_id = $%d::uuid",
                      sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base);
    sw_api_list_run(ctx, req, &l);
}

void sw_api_domains_list(sw_http_req_t *req, void *ctx)
{
    const sw_principal_t *p = sw_api_principal(req);
    sw_api_list_t l = {.from = DOMAINS_FROM,
                       .json_expr = DOMAIN_JSON,
                       .sorts = domain_sorts,
                       .default_sort = "hostname"};
    sw_api_list_visible(&l, p, "project_id", false, NULL, NULL);
    sw_api_list_run(ctx, req, &l);
}

void sw_api_domains_create(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_api_req_t *r = sw_api_req(req);
    json_t *body = sw_api_json(req);
    if (!body)
        return;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    const char *host = NULL;
    char *norm = sw_arena_alloc(&req->arena, 256);
    if (sw_json_get_string(body, "hostname", true, 1, 253, &host, &e) == 0) {
        const char *why = hostname_problem(host, api->cfg->allow_wildcard_domains, norm, 256);
        if (!why)
            why = reserved_problem(api->cfg, norm);
        if (why)
            sw_json_errors_add(&e, "hostname", "%s", why);
    }
    sw_api_reject_unknown_body(req, body, &e);
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base,
                            norm,
                            r->principal.user_id,
                            r->principal.email,
                            r->project_id,
                            req->client_addr};
    sw_api_exec(api, req,
                "WITH d AS (INSERT INTO domains (app_id, hostname) VALUES ($1, $2) RETURNING *), "
                "a AS (" SW_AUDIT_INSERT "SELECT $3, $4, 'domain.created', 'domain', d.id::text, "
                "$5, $6, json_build_object('hostname', d.hostname, 'app_id', d.app_id)::jsonb "
                "FROM d) SELECT sw_domain_json(d) FROM d",
                6, params, 201, "no such app", "this hostname already belongs to an app");
}

void sw_api_domains_get(sw_http_req_t *req, void *ctx)
{
    const char *cached = sw_api_req(req)->resource_json;
    if (cached) {
        sw_api_respond_text(req, 200, cached);
        return;
    }
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base};
    sw_api_exec(ctx, req, "SELECT sw_domain_json(d) FROM domains d WHERE d.id = $1", 1, params, 200,
                "no such domain", NULL);
}

void sw_api_domains_delete(sw_http_req_t *req, void *ctx)
{
    sw_api_req_t *r = sw_api_req(req);
    const char *params[] = {sw_arena_iovdup(&req->arena, sw_http_req_param(req, "id")).base,
                            r->principal.user_id, r->principal.email, r->project_id,
                            req->client_addr};
    sw_api_exec(ctx, req,
                "WITH d AS (DELETE FROM domains WHERE id = $1 RETURNING id, hostname, app_id), "
                "a AS (" SW_AUDIT_INSERT "SELECT $2, $3, 'domain.deleted', 'domain', d.id::text, "
                "$4, $5, json_build_object('hostname', d.hostname, 'app_id', d.app_id)::jsonb "
                "FROM d) SELECT id FROM d",
                5, params, 204, "no such domain", NULL);
}
