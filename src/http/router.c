/* Path router: a tree of segments built once from the route table. Literal segments win
 * over :param segments; a failed literal branch falls back to the parameter. */
#include "slipway/router.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 16

typedef struct node node_t;
struct node {
    char *literal;     /* NULL for a parameter node */
    char *param;       /* the parameter's name */
    node_t **children; /* literal children */
    size_t nchildren;
    node_t *param_child;
    const sw_route_t **routes; /* routes ending here, one per method */
    size_t nroutes;
};

struct sw_router {
    node_t root;
};

static void node_free(node_t *n)
{
    for (size_t i = 0; i < n->nchildren; i++) {
        node_free(n->children[i]);
        free(n->children[i]);
    }
    if (n->param_child) {
        node_free(n->param_child);
        free(n->param_child);
    }
    free(n->children);
    free(n->routes);
    free(n->literal);
    free(n->param);
}

static bool segment_valid(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || (c == ':' && i == 0)))
            return false;
    }
    return true;
}

static int add_route(sw_router_t *r, const sw_route_t *route, char *err, size_t err_size)
{
    const char *p = route->pattern;
    node_t *n = &r->root;
    unsigned depth = 0, nparams = 0;

    if (p[0] != '/') {
        snprintf(err, err_size, "route %s %s: must start with /", route->method, p);
        return -EINVAL;
    }
    p++;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (!segment_valid(p, len) || ++depth > MAX_DEPTH || (slash && slash[1] == '\0')) {
            snprintf(err, err_size, "route %s %s: malformed pattern", route->method,
                     route->pattern);
            return -EINVAL;
        }
        if (p[0] == ':') {
            if (len < 2 || ++nparams > SW_HTTP_MAX_PARAMS) {
                snprintf(err, err_size, "route %s %s: bad parameter", route->method,
                         route->pattern);
                return -EINVAL;
            }
            if (!n->param_child) {
                n->param_child = sw_calloc(1, sizeof(node_t));
                n->param_child->param = sw_strndup(p + 1, len - 1);
            } else if (strlen(n->param_child->param) != len - 1 ||
                       memcmp(n->param_child->param, p + 1, len - 1) != 0) {
                snprintf(err, err_size, "route %s %s: parameter name differs from a sibling's",
                         route->method, route->pattern);
                return -EINVAL;
            }
            n = n->param_child;
        } else {
            node_t *next = NULL;
            for (size_t i = 0; i < n->nchildren; i++) {
                if (strlen(n->children[i]->literal) == len &&
                    memcmp(n->children[i]->literal, p, len) == 0) {
                    next = n->children[i];
                    break;
                }
            }
            if (!next) {
                next = sw_calloc(1, sizeof(node_t));
                next->literal = sw_strndup(p, len);
                n->children = sw_realloc(n->children, (n->nchildren + 1) * sizeof(node_t *));
                n->children[n->nchildren++] = next;
            }
            n = next;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    for (size_t i = 0; i < n->nroutes; i++) {
        if (strcmp(n->routes[i]->method, route->method) == 0) {
            snprintf(err, err_size, "route %s %s: defined twice", route->method, route->pattern);
            return -EINVAL;
        }
    }
    n->routes = sw_realloc(n->routes, (n->nroutes + 1) * sizeof(*n->routes));
    n->routes[n->nroutes++] = route;
    return 0;
}

int sw_router_new(sw_router_t **out, const sw_route_t *routes, size_t count, char *err,
                  size_t err_size)
{
    sw_router_t *r = sw_calloc(1, sizeof(*r));
    for (size_t i = 0; i < count; i++) {
        int rc = add_route(r, &routes[i], err, err_size);
        if (rc != 0) {
            sw_router_free(r);
            return rc;
        }
    }
    *out = r;
    return 0;
}

void sw_router_free(sw_router_t *r)
{
    if (!r)
        return;
    node_free(&r->root);
    free(r);
}

typedef struct {
    sw_iov_t segs[MAX_DEPTH];
    size_t nsegs;
    sw_iov_t values[SW_HTTP_MAX_PARAMS];
    const node_t *params[SW_HTTP_MAX_PARAMS];
    size_t nparams;
} match_t;

static const node_t *walk(const node_t *n, match_t *m, size_t i)
{
    if (i == m->nsegs)
        return n->nroutes ? n : NULL;
    sw_iov_t seg = m->segs[i];
    for (size_t k = 0; k < n->nchildren; k++) {
        const node_t *c = n->children[k];
        if (sw_iov_eq_cstr(seg, c->literal)) {
            const node_t *found = walk(c, m, i + 1);
            if (found)
                return found;
            break;
        }
    }
    if (n->param_child && m->nparams < SW_HTTP_MAX_PARAMS) {
        size_t saved = m->nparams;
        m->values[m->nparams] = seg;
        m->params[m->nparams++] = n->param_child;
        const node_t *found = walk(n->param_child, m, i + 1);
        if (found)
            return found;
        m->nparams = saved;
    }
    return NULL;
}

int sw_router_match(const sw_router_t *r, sw_http_req_t *req, char *allow, size_t allow_size)
{
    match_t m = {0};
    sw_iov_t path = req->path;

    if (path.len == 0 || path.base[0] != '/')
        return -ENOENT;
    size_t pos = 1;
    if (path.len > 1) {
        while (pos <= path.len) {
            const char *start = path.base + pos;
            const char *slash = memchr(start, '/', path.len - pos);
            size_t len = slash ? (size_t)(slash - start) : path.len - pos;
            if (len == 0 || m.nsegs == MAX_DEPTH)
                return -ENOENT; /* empty segment, trailing slash, or deeper than any route */
            m.segs[m.nsegs++] = (sw_iov_t){(char *)start, len};
            pos += len + 1;
        }
    }

    const node_t *n = walk(&r->root, &m, 0);
    if (!n)
        return -ENOENT;

    const char *method = req->method ? req->method : "";
    const sw_route_t *route = NULL;
    for (size_t i = 0; i < n->nroutes; i++) {
        if (strcmp(n->routes[i]->method, method) == 0) {
            route = n->routes[i];
            break;
        }
    }
    if (!route && req->head) {
        for (size_t i = 0; i < n->nroutes; i++)
            if (strcmp(n->routes[i]->method, "GET") == 0)
                route = n->routes[i];
    }
    if (!route) {
        if (allow && allow_size) {
            size_t used = 0;
            bool has_get = false;
            allow[0] = '\0';
            for (size_t i = 0; i < n->nroutes; i++) {
                has_get |= strcmp(n->routes[i]->method, "GET") == 0;
                used += (size_t)snprintf(allow + used, used < allow_size ? allow_size - used : 0,
                                         "%s%s", used ? ", " : "", n->routes[i]->method);
                if (used >= allow_size)
                    break;
            }
            if (has_get && used < allow_size)
                snprintf(allow + used, allow_size - used, ", HEAD");
        }
        return -ENOTSUP;
    }
    req->route = route;
    req->route_pattern = route->pattern;
    req->nparams = (uint32_t)m.nparams;
    for (size_t i = 0; i < m.nparams; i++) {
        req->param_names[i] = sw_iov_from_cstr(m.params[i]->param);
        req->param_values[i] = m.values[i];
    }
    return 0;
}
