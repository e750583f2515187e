/* Helpers every handler uses: request state, body decoding, database errors, pages. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/log.h"
#include "slipway/queue.h"

#include "internal.h"

#define PAGE_LIMIT_MAX     100
#define PAGE_LIMIT_DEFAULT 20
#define PAGE_MAX           1000000

sw_api_req_t *sw_api_req(sw_http_req_t *req)
{
    if (!req->user)
        req->user = sw_arena_calloc(&req->arena, sizeof(sw_api_req_t));
    return req->user;
}

const sw_principal_t *sw_api_principal(sw_http_req_t *req)
{
    return &sw_api_req(req)->principal;
}

void sw_api_db_error(sw_http_req_t *req, int status, sw_pg_result_t *res)
{
    switch (status) {
    case SW_EUNAVAIL:
    case -ETIMEDOUT:
    case SW_ECANCELED:
    case SW_ELIMIT:
        sw_http_add_header(req, "Retry-After", "1");
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                              status == -ETIMEDOUT ? "the database did not answer in time"
                                                   : "the database is unavailable",
                              NULL);
        return;
    case SW_EUNIQUE:
        sw_http_respond_error(req, 409, "RESOURCE_CONFLICT", "the resource already exists", NULL);
        return;
    case SW_EREFERENCED:
        sw_http_respond_error(req, 409, "RESOURCE_CONFLICT",
                              "other resources still refer to this one", NULL);
        return;
    default:
        sw_log_kv(SW_LOG_ERROR, req->request_id, "query failed", "error",
                  res ? sw_pg_result_error(res) : sw_strerror(status), NULL);
        sw_http_respond_error(req, 500, "INTERNAL_ERROR", "internal error", NULL);
    }
}

bool sw_api_db_failed(sw_http_req_t *req, int status, sw_pg_result_t *res)
{
    if (status == 0)
        return false;
    sw_api_db_error(req, status, res);
    return true;
}

json_t *sw_api_body(sw_http_req_t *req)
{
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    json_t *body = sw_json_parse_object(req->body.base ? req->body.base : "", req->body.len, &e);
    if (!body)
        sw_api_validation_error(req, &e);
    return body;
}

void sw_api_validation_error(sw_http_req_t *req, sw_json_errors_t *e)
{
    json_t *details = sw_json_errors_take(e);
    const char *first = json_string_value(json_object_get(json_array_get(details, 0), "field"));
    const char *why = json_string_value(json_object_get(json_array_get(details, 0), "message"));
    char msg[256];
    snprintf(msg, sizeof(msg), "invalid request: %s %s", first ? first : "body", why ? why : "");
    sw_http_respond_error(req, 400, "VALIDATION_ERROR", msg, details);
}

void sw_api_respond_text(sw_http_req_t *req, int status, const char *json)
{
    size_t len = strlen(json);
    char *body = sw_arena_alloc(&req->arena, len + 1);
    memcpy(body, json, len);
    body[len] = '\n';
    sw_http_respond(req, status, "application/json", body, len + 1);
}

bool sw_api_query_int(sw_http_req_t *req, const char *name, long long min, long long max,
                      long long *out, sw_json_errors_t *e)
{
    const char *v = sw_http_req_query(req, name);
    unsigned long long n;
    if (!v)
        return false;
    /* Compared unsigned: a value past LLONG_MAX must not wrap into the range. */
    if (sw_iov_to_u64(sw_iov_from_cstr(v), &n) != 0 || n < (unsigned long long)min ||
        n > (unsigned long long)max) {
        sw_json_errors_add(e, name, "must be a whole number from %lld to %lld", min, max);
        return false;
    }
    *out = (long long)n;
    return true;
}

bool sw_api_page(sw_http_req_t *req, long long *page, long long *limit, long long *offset)
{
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    *page = 1;
    *limit = PAGE_LIMIT_DEFAULT;
    sw_api_query_int(req, "limit", 1, PAGE_LIMIT_MAX, limit, &e);
    bool by_page = sw_api_query_int(req, "page", 1, PAGE_MAX, page, &e);
    long long off = 0;
    if (sw_api_query_int(req, "offset", 0, PAGE_MAX * (long long)PAGE_LIMIT_MAX, &off, &e)) {
        if (by_page)
            sw_json_errors_add(&e, "offset", "give page or offset, not both");
        /* An offset that is not a multiple of limit still lands on the page holding it. */
        *page = off / *limit + 1;
    }
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return false;
    }
    *offset = by_page || off == 0 ? (*page - 1) * *limit : off;
    return true;
}

bool sw_api_email(const char *in, char *out, size_t size, sw_json_errors_t *e)
{
    while (*in == ' ' || *in == '\t')
        in++;
    size_t len = strlen(in);
    while (len && (in[len - 1] == ' ' || in[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 254 || len >= size) {
        sw_json_errors_add(e, "email", len ? "must be at most 254 characters" : "is required");
        return false;
    }
    const char *at = NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';') {
            sw_json_errors_add(e, "email", "is not a valid email address");
            return false;
        }
        if (c == '@') {
            if (at) {
                sw_json_errors_add(e, "email", "is not a valid email address");
                return false;
            }
            at = in + i;
        }
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    const char *domain = at ? at + 1 : NULL;
    const char *dot = domain ? strrchr(domain, '.') : NULL;
    if (!at || at == in || !dot || dot == domain || dot[1] == '\0' || (size_t)(at - in) > 64) {
        sw_json_errors_add(e, "email", "is not a valid email address");
        return false;
    }
    return true;
}

json_t *sw_api_json(sw_http_req_t *req)
{
    sw_api_req_t *ctx = sw_api_req(req);
    if (!ctx->body)
        ctx->body = sw_api_body(req);
    return ctx->body;
}

static const char *const project_role_names[SW_PROJECT_ROLE_MAX] = {"none", "viewer", "developer",
                                                                    "admin"};

const char *sw_project_role_name(sw_project_role_t role)
{
    return role < SW_PROJECT_ROLE_MAX ? project_role_names[role] : "none";
}

sw_project_role_t sw_project_role_parse(const char *s)
{
    for (int i = SW_PROJECT_VIEWER; i < SW_PROJECT_ROLE_MAX; i++)
        if (s && strcmp(s, project_role_names[i]) == 0)
            return (sw_project_role_t)i;
    return SW_PROJECT_NONE;
}

bool sw_api_is_instance_admin(const sw_principal_t *p)
{
    return p->role >= SW_ROLE_ADMIN;
}

/* ---- lists ---- */

int sw_api_list_param(sw_api_list_t *l, const char *value)
{
    if (l->nparams >= (int)SW_ARRAY_SIZE(l->params) - 3)
        sw_oom(); /* a programming error: lists have a handful of filters */
    l->params[l->nparams++] = value;
    return l->nparams;
}

void sw_api_list_where(sw_api_list_t *l, const char *cond_fmt, const char *value)
{
    int n = sw_api_list_param(l, value);
    sw_buf_append_cstr(&l->where, " AND ");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    sw_buf_printf(&l->where, cond_fmt, n, n, n);
#pragma GCC diagnostic pop
}

bool sw_api_uuid_filter(sw_http_req_t *req, const char *name, const char **out, sw_json_errors_t *e)
{
    const char *v = sw_http_req_query(req, name);
    *out = NULL;
    if (!v)
        return true;
    if (!sw_iov_is_uuid(sw_iov_from_cstr(v))) {
        sw_json_errors_add(e, name, "must be a UUID");
        return false;
    }
    *out = v;
    return true;
}

bool sw_api_enum_filter(sw_http_req_t *req, const char *name, const char *const *allowed,
                        const char **out, sw_json_errors_t *e)
{
    const char *v = sw_http_req_query(req, name);
    *out = NULL;
    if (!v)
        return true;
    for (const char *const *a = allowed; *a; a++) {
        if (strcmp(v, *a) == 0) {
            *out = v;
            return true;
        }
    }
    sw_buf_t list = SW_BUF_INIT;
    for (const char *const *a = allowed; *a; a++)
        sw_buf_printf(&list, "%s%s", a == allowed ? "" : ", ", *a);
    sw_json_errors_add(e, name, "must be one of %s", list.base);
    sw_buf_free(&list);
    return false;
}

/* "field[:asc|desc]" against the allowed fields; the ORDER BY text comes only from the
 * table of constants, never from the request. */
static bool list_order(sw_http_req_t *req, const sw_api_list_t *l, sw_buf_t *order,
                       sw_json_errors_t *e)
{
    const char *sort = sw_http_req_query(req, "sort");
    if (!sort)
        sort = l->default_sort;
    const char *colon = strchr(sort, ':');
    size_t nlen = colon ? (size_t)(colon - sort) : strlen(sort);
    const char *dir = colon ? colon + 1 : "asc";
    bool desc = strcmp(dir, "desc") == 0;
    if (!desc && strcmp(dir, "asc") != 0) {
        sw_json_errors_add(e, "sort", "direction must be asc or desc");
        return false;
    }
    for (const sw_api_sort_t *s = l->sorts; s && s->name; s++) {
        if (strlen(s->name) == nlen && strncmp(s->name, sort, nlen) == 0) {
            /* id breaks ties, so pages never overlap or skip rows. */
            sw_buf_printf(order, "%s %s, %s %s", s->column, desc ? "DESC" : "ASC",
                          l->tiebreak ? l->tiebreak : "id", desc ? "DESC" : "ASC");
            return true;
        }
    }
    sw_buf_t names = SW_BUF_INIT;
    for (const sw_api_sort_t *s = l->sorts; s && s->name; s++)
        sw_buf_printf(&names, "%s%s", names.len ? ", " : "", s->name);
    sw_json_errors_add(e, "sort", "unknown field; sort by one of: %s", names.base);
    sw_buf_free(&names);
    return false;
}

static void on_list(int status, sw_pg_result_t *res, void *payload)
{
    sw_http_req_t *req = payload;
    if (sw_api_db_failed(req, status, res))
        return;
    sw_api_respond_text(req, 200, sw_pg_result_value(res, 0, 0));
}

void sw_api_list_run(sw_api_t *api, sw_http_req_t *req, sw_api_list_t *l)
{
    long long page, limit, offset;
    sw_json_errors_t e;
    sw_buf_t order = SW_BUF_INIT, sql = SW_BUF_INIT;
    sw_json_errors_init(&e);
    if (!sw_api_page(req, &page, &limit, &offset))
        goto out;
    if (!list_order(req, l, &order, &e)) {
        sw_api_validation_error(req, &e);
        goto out;
    }
    char *slimit = sw_arena_printf(&req->arena, "%lld", limit);
    char *soffset = sw_arena_printf(&req->arena, "%lld", offset);
    char *spage = sw_arena_printf(&req->arena, "%lld", page);
    int pl = sw_api_list_param(l, slimit);
    int po = sw_api_list_param(l, soffset);
    int pp = sw_api_list_param(l, spage);
    const char *where = l->where.base ? l->where.base : "";
    sw_buf_printf(&sql,
                  "SELECT sw_page((SELECT json_agg(%s ORDER BY %s) FROM (SELECT * FROM %s x "
                  "WHERE true%s ORDER BY %s LIMIT $%d::int OFFSET $%d::int) x), "
                  "(SELECT count(*) FROM %s x WHERE true%s), $%d::int, $%d::int)",
                  l->json_expr, order.base, l->from, where, order.base, pl, po, l->from, where, pp,
                  pl);
    sw_pg_query(api->pg, sql.base, l->nparams, l->params, on_list, req);
out:
    sw_buf_free(&order);
    sw_buf_free(&sql);
    sw_buf_free(&l->where);
}

typedef struct {
    sw_api_t *api;
    sw_http_req_t *req;
    int status;
    const char *not_found;
    const char *conflict;
    bool deletes_apps; /* column 1: the deleted apps' ids, whose instances must stop */
} exec_t;

/* "{id,id,...}": each id is a UUID, so nothing in the text needs quoting. */
static void stop_deleted_apps(sw_api_t *api, const char *ids)
{
    if (!ids || ids[0] != '{')
        return;
    for (const char *p = ids + 1; *p && *p != '}';) {
        size_t n = strcspn(p, ",}");
        char id[40];
        if (n == 36) {
            memcpy(id, p, n);
            id[n] = '\0';
            sw_queue_stop_app(api->redis, id);
        }
        p += n;
        if (*p == ',')
            p++;
    }
}

static void on_exec(int status, sw_pg_result_t *res, void *payload)
{
    exec_t *x = payload;
    if (status == SW_EUNIQUE && x->conflict) {
        sw_http_respond_error(x->req, 409, "RESOURCE_CONFLICT", x->conflict, NULL);
        return;
    }
    if (sw_api_db_failed(x->req, status, res))
        return;
    const char *v = sw_pg_result_rows(res) >= 1 ? sw_pg_result_value(res, 0, 0) : NULL;
    if (!v) {
        sw_http_respond_error(x->req, 404, "RESOURCE_NOT_FOUND", x->not_found, NULL);
        return;
    }
    /* Instances of a deleted app stop now; a worker that misses the message finds them in
     * its next reconciliation. */
    if (x->deletes_apps)
        stop_deleted_apps(x->api, sw_pg_result_value(res, 0, 1));
    if (x->status == 204)
        sw_http_respond(x->req, 204, NULL, NULL, 0);
    else
        sw_api_respond_text(x->req, x->status, v);
}

static void exec_start(sw_api_t *api, sw_http_req_t *req, const char *sql, int nparams,
                       const char *const *params, const exec_t *how)
{
    exec_t *x = sw_arena_calloc(&req->arena, sizeof(*x));
    *x = *how;
    x->api = api;
    x->req = req;
    sw_pg_query(api->pg, sql, nparams, params, on_exec, x);
}

void sw_api_exec(sw_api_t *api, sw_http_req_t *req, const char *sql, int nparams,
                 const char *const *params, int status, const char *not_found, const char *conflict)
{
    exec_t how = {.status = status, .not_found = not_found, .conflict = conflict};
    exec_start(api, req, sql, nparams, params, &how);
}

void sw_api_exec_deleting_apps(sw_api_t *api, sw_http_req_t *req, const char *sql, int nparams,
                               const char *const *params, const char *not_found)
{
    exec_t how = {.status = 204, .not_found = not_found, .deletes_apps = true};
    exec_start(api, req, sql, nparams, params, &how);
}

void sw_api_list_visible(sw_api_list_t *l, const sw_principal_t *p, const char *column,
                         bool admins_only, int *user_param, int *admin_param)
{
    int user = sw_api_list_param(l, p->user_id);
    int admin = sw_api_list_param(l, sw_api_is_instance_admin(p) ? "true" : "false");
    /* column is a constant of the caller's, never request data. */
    sw_buf_printf(&l->where,
                  " AND ($%d::bool OR x.%s IN (SELECT project_id FROM project_members "
                  "WHERE user_id = $%d::uuid%s))",
                  admin, column, user, admins_only ? " AND role = 'admin'" : "");
    if (user_param)
        *user_param = user;
    if (admin_param)
        *admin_param = admin;
}
