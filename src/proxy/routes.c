/* The routing table, read from PostgreSQL: every domain of every app, and the generated
 * <app>.<project>.<SLIPWAY_APPS_DOMAIN> when that is set, each to its app's active release
 * and the endpoints apps.endpoints holds; and SLIPWAY_PUBLIC_URL's host to the api nodes
 * that are up (release "api"). Nothing here is ever written back: the table is
 * derived, so a lost proxy is rebuilt from it. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One row per hostname. A generated hostname that two apps would share (the same name in
 * two environments of one project) goes to the older app. The names under
 * SLIPWAY_APPS_DOMAIN are the generated ones only: the API refuses such a domain, and a row
 * that predates the setting is not routed, so no app can take another's generated name; the
 * public URL's host (rank -1) always goes to the api nodes. */
#define ROUTES_SQL                                                                                 \
    "SELECT DISTINCT ON (host) host, key, release, eps FROM ("                                     \
    "SELECT h.host, a.id::text AS key, coalesce(a.active_deployment_id::text, '') AS release, "    \
    "array_to_string(a.endpoints, ' ') AS eps, h.rank, a.created_at FROM apps a JOIN LATERAL ("    \
    "SELECT d.hostname AS host, 0 AS rank FROM domains d WHERE d.app_id = a.id AND ($1 = '' OR ("  \
    "ltrim(d.hostname, '*.') <> $1 AND d.hostname NOT LIKE '%.' || $1)) UNION ALL "                \
    "SELECT lower(a.name || '.' || p.name || '.' || $1), 1 FROM projects p WHERE p.id = "          \
    "a.project_id AND $1 <> '' AND a.name ~* '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' AND "          \
    "p.name ~* '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$') h ON true "                                 \
    "UNION ALL SELECT $2, 'api', 'api', coalesce(string_agg(n.advertise, ' ' ORDER BY n.name), "   \
    "''), -1, now() FROM nodes n WHERE n.role IN ('api', 'all') AND n.advertise <> '' AND "        \
    "sw_node_status(n) = 'up' HAVING $2 <> '') r ORDER BY host, rank, created_at"

typedef struct {
    sw_routes_cb cb;
    void *payload;
} load_t;

bool sw_routes_host_ok(const char *host)
{
    size_t len = strlen(host);
    if (len == 0 || len > SW_ROUTE_HOST_MAX)
        return false;
    const char *p = host;
    if (p[0] == '*' && p[1] == '.')
        p += 2;
    size_t label = 0;
    for (; *p; p++) {
        if (*p == '.') {
            if (label == 0 || p[-1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || (*p == '-' && label > 0)))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && p[-1] != '-';
}

static void route_set(sw_route_t *r, const char *release, const char *const *endpoints, size_t n)
{
    for (size_t i = 0; i < r->nendpoints; i++)
        free(r->endpoints[i]);
    r->nendpoints = 0;
    snprintf(r->release, sizeof(r->release), "%s", release);
    for (size_t i = 0; i < n && r->nendpoints < SW_ROUTE_MAX_ENDPOINTS; i++)
        r->endpoints[r->nendpoints++] = sw_strdup(endpoints[i]);
}

static void on_rows(int status, sw_pg_result_t *res, void *payload)
{
    load_t *l = payload;
    sw_routes_cb cb = l->cb;
    void *cb_payload = l->payload;
    free(l);
    if (status != 0) {
        cb(status, NULL, res ? sw_pg_result_error(res) : sw_strerror(status), cb_payload);
        return;
    }
    int rows = sw_pg_result_rows(res);
    sw_routes_t *t = sw_calloc(1, sizeof(*t));
    t->v = sw_calloc(rows ? (size_t)rows : 1, sizeof(*t->v));
    for (int i = 0; i < rows; i++) {
        const char *host = sw_pg_result_value(res, i, 0);
        if (!sw_routes_host_ok(host))
            continue; /* the API checks domains; a row from elsewhere is skipped, not routed */
        sw_route_t *r = &t->v[t->n++];
        snprintf(r->host, sizeof(r->host), "%s", host);
        snprintf(r->key, sizeof(r->key), "%s", sw_pg_result_value(res, i, 1));
        snprintf(r->release, sizeof(r->release), "%s", sw_pg_result_value(res, i, 2));
        char *list = sw_strdup(sw_pg_result_value(res, i, 3));
        for (char *save = NULL, *e = strtok_r(list, " ", &save);
             e && r->nendpoints < SW_ROUTE_MAX_ENDPOINTS; e = strtok_r(NULL, " ", &save))
            r->endpoints[r->nendpoints++] = sw_strdup(e);
        free(list);
        if (!r->release[0])
            route_set(r, "", NULL, 0); /* nothing released yet: nothing to route to */
    }
    sw_routes_sort(t);
    cb(0, t, NULL, cb_payload);
}

int sw_routes_load(sw_pg_pool_t *pg, const sw_config_t *cfg, sw_routes_cb cb, void *payload)
{
    load_t *l = sw_calloc(1, sizeof(*l));
    l->cb = cb;
    l->payload = payload;
    char host[SW_ROUTE_HOST_MAX + 1];
    sw_config_public_host(cfg, host, sizeof(host));
    const char *params[] = {cfg->apps_domain, host};
    int r = sw_pg_query(pg, ROUTES_SQL, 2, params, on_rows, l);
    if (r != 0)
        free(l);
    return r;
}

void sw_routes_override(sw_routes_t *t, const char *key, const char *release,
                        const char *const *endpoints, size_t n)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].key, key) == 0)
            route_set(&t->v[i], release, endpoints, n);
}

const sw_route_t *sw_routes_find_key(const sw_routes_t *t, const char *key)
{
    for (size_t i = 0; t && i < t->n; i++)
        if (strcmp(t->v[i].key, key) == 0)
            return &t->v[i];
    return NULL;
}

static int by_specificity(const void *a, const void *b)
{
    const sw_route_t *x = a, *y = b;
    bool wx = x->host[0] == '*', wy = y->host[0] == '*';
    if (wx != wy)
        return wx ? 1 : -1;
    return strcmp(x->host, y->host);
}

static const sw_route_t *find_exact(const sw_routes_t *t, const char *host)
{
    sw_route_t key;
    snprintf(key.host, sizeof(key.host), "%s", host);
    return bsearch(&key, t->v, t->n, sizeof(*t->v), by_specificity);
}

const sw_route_t *sw_routes_find_host(const sw_routes_t *t, const char *host)
{
    size_t len = strlen(host);
    if (!t || t->n == 0 || len == 0 || len > SW_ROUTE_HOST_MAX || host[0] == '*')
        return NULL;
    char lower[SW_ROUTE_HOST_MAX + 1];
    for (size_t i = 0; i <= len; i++)
        lower[i] = (char)tolower((unsigned char)host[i]);
    const sw_route_t *r = find_exact(t, lower);
    const char *dot = strchr(lower, '.');
    if (r || !dot || !dot[1])
        return r;
    char wild[SW_ROUTE_HOST_MAX + 2];
    snprintf(wild, sizeof(wild), "*%s", dot); /* a wildcard covers one label */
    return find_exact(t, wild);
}

void sw_routes_sort(sw_routes_t *t)
{
    if (t->n > 1)
        qsort(t->v, t->n, sizeof(*t->v), by_specificity);
}

void sw_routes_free(sw_routes_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        route_set(&t->v[i], "", NULL, 0);
    free(t->v);
    free(t);
}
