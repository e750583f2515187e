/* Domain state you can trust: what the reconciler did and saw, in domain_state
 * (sql/013_domain_state.sql), which GET domains/:id shows.
 *
 * routing: after every round, each hostname of the table is "active" (the proxy took the
 * round and the app has endpoints), "pending" (nothing released yet) or "error" (the round
 * failed, with why); hostnames no longer routed lose their row.
 * tls: with an HTTPS listener, each hostname's certificate is observed by a real handshake
 * (tlsprobe.c): again every few seconds while it is missing, every five minutes once it is
 * there. A certificate still missing two minutes after its hostname was first routed is an
 * error, with the handshake's reason; at once, with the CA's reason, when the proxy says its
 * order failed (sw_proxy_state_tls_failed). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/log.h"

#define TLS_RETRY_MS     2000
#define TLS_REFRESH_MS   300000
#define TLS_ISSUING_MS   120000
#define TLS_REFUSED_MS   60000
#define TLS_MAX_INFLIGHT 4

#define ISSUE_ERROR_MAX 480

typedef struct {
    char host[SW_ROUTE_HOST_MAX + 1];
    uint64_t first_seen, last_probe;
    bool ok, inflight, seen_now;
    char issue_error[ISSUE_ERROR_MAX]; /* why the proxy could not get it; "" */
} host_t;

struct sw_proxy_state {
    uv_loop_t *loop;
    const sw_config_t *cfg;
    sw_pg_pool_t *pg;
    host_t *hosts;
    size_t n, cap;
    unsigned inflight, refs;
    bool closing;
};

static void unref(sw_proxy_state_t *s)
{
    if (--s->refs > 0)
        return;
    free(s->hosts);
    free(s);
}

static void on_written(int status, sw_pg_result_t *res, void *payload)
{
    if (status != 0)
        sw_log_kv(SW_LOG_WARN, NULL, "domain state not recorded", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
    unref(payload);
}

/* One element of a PostgreSQL array literal, quoted. */
static void array_add(sw_buf_t *b, const char *v)
{
    sw_buf_append_cstr(b, b->len > 1 ? ",\"" : "\"");
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            sw_buf_append_char(b, '\\');
        sw_buf_append_char(b, *v);
    }
    sw_buf_append_char(b, '"');
}

static void write_routing(sw_proxy_state_t *s, const sw_routes_t *t, int status, const char *error)
{
    sw_buf_t hosts = SW_BUF_INIT, states = SW_BUF_INIT, eps = SW_BUF_INIT, errs = SW_BUF_INIT;
    sw_buf_t *all[] = {&hosts, &states, &eps, &errs};
    for (size_t i = 0; i < 4; i++)
        sw_buf_append_char(all[i], '{');
    for (size_t i = 0; i < t->n; i++) {
        const sw_route_t *r = &t->v[i];
        sw_buf_t list = SW_BUF_INIT;
        for (size_t k = 0; k < r->nendpoints; k++)
            sw_buf_printf(&list, "%s%s", k ? " " : "", r->endpoints[k]);
        array_add(&hosts, r->host);
        array_add(&states, status != 0 ? "error" : r->nendpoints ? "active" : "pending");
        array_add(&eps, list.len ? list.base : "");
        array_add(&errs, status != 0 ? (error ? error : sw_strerror(status)) : "");
        sw_buf_free(&list);
    }
    for (size_t i = 0; i < 4; i++)
        sw_buf_append_char(all[i], '}');
    const char *params[] = {hosts.base, states.base, eps.base, errs.base};
    s->refs++;
    if (sw_pg_query(
            s->pg,
            "WITH n AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) "
            "AS x(host, st, eps, err)), gone AS (DELETE FROM domain_state WHERE hostname <> "
            "ALL($1::text[])) INSERT INTO domain_state AS d (hostname, routing_status, "
            "routing_endpoints, routing_error) SELECT host, st, CASE WHEN eps = '' THEN "
            "'{}'::text[] ELSE string_to_array(eps, ' ') END, err FROM n ON CONFLICT (hostname) "
            "DO UPDATE SET routing_status = excluded.routing_status, routing_endpoints = "
            "excluded.routing_endpoints, routing_error = excluded.routing_error, updated_at = "
            "now() WHERE (d.routing_status, d.routing_endpoints, d.routing_error) IS DISTINCT "
            "FROM (excluded.routing_status, excluded.routing_endpoints, excluded.routing_error)",
            4, params, on_written, s) != 0)
        unref(s);
    for (size_t i = 0; i < 4; i++)
        sw_buf_free(all[i]);
}

/* ---- tls ---- */

static host_t *find(sw_proxy_state_t *s, const char *host)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->hosts[i].host, host) == 0)
            return &s->hosts[i];
    return NULL;
}

/* Records a hostname's tls state; takes over one reference of s. */
static void write_tls(sw_proxy_state_t *s, const char *host, const char *status, const char *issuer,
                      const char *not_after, const char *error);

static void on_seen(const char *host, const sw_tls_seen_t *seen, void *payload)
{
    sw_proxy_state_t *s = payload;
    s->inflight--;
    host_t *h = find(s, host);
    uint64_t now = uv_now(s->loop);
    if (h) {
        h->inflight = false;
        h->ok = seen->ok;
        h->last_probe = now;
        if (seen->ok)
            h->issue_error[0] = '\0'; /* a later attempt got it */
    }
    if (s->closing || !h) {
        unref(s);
        return;
    }
    const char *status = seen->ok                                                     ? "active"
                         : !h->issue_error[0] && now - h->first_seen < TLS_ISSUING_MS ? "pending"
                                                                                      : "error";
    write_tls(s, host, status, seen->issuer, seen->not_after,
              seen->ok            ? ""
              : h->issue_error[0] ? h->issue_error
                                  : seen->error); /* with the probe's reference */
}

static void write_tls(sw_proxy_state_t *s, const char *host, const char *status, const char *issuer,
                      const char *not_after, const char *error)
{
    const char *params[] = {host, status, issuer, not_after, error};
    if (sw_pg_query(s->pg,
                    "INSERT INTO domain_state AS d (hostname, tls_status, tls_issuer, "
                    "tls_not_after, tls_error) VALUES ($1, $2, $3, nullif($4, '')::timestamptz, "
                    "$5) ON CONFLICT (hostname) DO UPDATE SET tls_status = excluded.tls_status, "
                    "tls_issuer = excluded.tls_issuer, tls_not_after = excluded.tls_not_after, "
                    "tls_error = excluded.tls_error, updated_at = now() WHERE (d.tls_status, "
                    "d.tls_issuer, d.tls_not_after, d.tls_error) IS DISTINCT FROM "
                    "(excluded.tls_status, excluded.tls_issuer, excluded.tls_not_after, "
                    "excluded.tls_error)",
                    5, params, on_written, s) != 0)
        unref(s);
}

bool sw_proxy_state_tls_failed(sw_proxy_state_t *s, const char *host, const char *error)
{
    host_t *h = s && !s->closing ? find(s, host) : NULL;
    /* Not a hostname observed here (a name under a wildcard, or gone), or one that is served
     * with a certificate (Caddy orders only for names without one): nothing to say. The
     * lines come over UDP, so this also bounds what a forged one can claim. */
    if (!h || h->ok)
        return false;
    char why[ISSUE_ERROR_MAX];
    snprintf(why, sizeof(why), "the certificate could not be issued: %s", error);
    if (strcmp(why, h->issue_error) == 0)
        return true; /* said already */
    memcpy(h->issue_error, why, sizeof(why));
    s->refs++;
    write_tls(s, host, "error", "", "", h->issue_error);
    return true;
}

static void observe(sw_proxy_state_t *s, const sw_routes_t *t)
{
    struct sockaddr_storage addr;
    if (!s->cfg->proxy_https[0] || sw_proxy_sockaddr(s->cfg->proxy_https, &addr) != 0)
        return;
    uint64_t now = uv_now(s->loop);
    for (size_t i = 0; i < s->n; i++)
        s->hosts[i].seen_now = false;
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].host[0] == '*')
            continue; /* a wildcard's certificate needs a DNS challenge: not observed here */
        host_t *h = find(s, t->v[i].host);
        if (!h) {
            if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 16;
                s->hosts = sw_realloc(s->hosts, s->cap * sizeof(*s->hosts));
            }
            h = &s->hosts[s->n++];
            *h = (host_t){.first_seen = now};
            snprintf(h->host, sizeof(h->host), "%s", t->v[i].host);
        }
        h->seen_now = true;
    }
    /* hostnames no longer routed are forgotten (unless a probe of theirs is in flight) */
    for (size_t i = 0; i < s->n;) {
        if (!s->hosts[i].seen_now && !s->hosts[i].inflight)
            s->hosts[i] = s->hosts[--s->n];
        else
            i++;
    }
    for (size_t i = 0; i < s->n && s->inflight < TLS_MAX_INFLIGHT; i++) {
        host_t *h = &s->hosts[i];
        /* after a refused order, seldom: each handshake may have the proxy order again, and
         * CAs limit failed orders per name */
        uint64_t every = h->ok ? TLS_REFRESH_MS : h->issue_error[0] ? TLS_REFUSED_MS : TLS_RETRY_MS;
        if (!h->seen_now || h->inflight || (h->last_probe && now - h->last_probe < every))
            continue;
        s->refs++;
        if (sw_tlsprobe_start(s->loop, &addr, h->host, on_seen, s) != 0) {
            s->refs--;
            break;
        }
        h->inflight = true;
        s->inflight++;
    }
}

void sw_proxy_state_round(sw_proxy_state_t *s, const sw_routes_t *t, int status, const char *error)
{
    if (!s || !t || s->closing)
        return;
    write_routing(s, t, status, error);
    if (status == 0)
        observe(s, t);
}

sw_proxy_state_t *sw_proxy_state_new(uv_loop_t *loop, const sw_config_t *cfg, sw_pg_pool_t *pg)
{
    sw_proxy_state_t *s = sw_calloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = cfg;
    s->pg = pg;
    s->refs = 1;
    return s;
}

void sw_proxy_state_free(sw_proxy_state_t *s)
{
    if (!s)
        return;
    s->closing = true;
    unref(s);
}
