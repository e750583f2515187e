/* Requests: the pool they come from and go back to, and the accessors handlers read them with
 * (headers, cookies, route parameters, query and form values). */
#include "internal.h"

#include <string.h>

#include "slipway/common.h"
#include "slipway/percent.h"

sw_http_req_t *sw_http__req_new(sw_http_conn_t *c)
{
    sw_http_server_t *s = c->server;
    sw_http_req_t *r = s->free_reqs;
    if (r) {
        s->free_reqs = r->next;
        s->nfree--;
    } else {
        r = sw_calloc(1, sizeof(*r));
    }
    r->next = NULL;
    r->conn = c;
    r->server = s;
    r->state = SW_HTTP_REQ_PARSING;
    r->start_ns = sw_now_ns();
    s->stats.requests++;
    s->live++;
    return r;
}

static void req_recycle(sw_http_req_t *r)
{
    sw_http_server_t *s = r->server;
    s->live--;
    sw_arena_reset(&r->arena);
    /* Keep small buffers for reuse; give big ones back. */
    if (r->body.cap > KEEP_BUF_BYTES)
        sw_buf_free(&r->body);
    if (r->out.cap > KEEP_BUF_BYTES)
        sw_buf_free(&r->out);
    sw_buf_reset(&r->body);
    sw_buf_reset(&r->out);
    sw_buf_reset(&r->resp_headers);
    sw_arena_t arena = r->arena;
    sw_buf_t body = r->body, out = r->out, rh = r->resp_headers;
    if (s->nfree >= REQ_FREE_MAX || s->handles_closing) {
        sw_arena_free(&arena);
        sw_buf_free(&body);
        sw_buf_free(&out);
        sw_buf_free(&rh);
        free(r);
        return;
    }
    memset(r, 0, sizeof(*r));
    r->arena = arena;
    r->body = body;
    r->out = out;
    r->resp_headers = rh;
    r->next = s->free_reqs;
    s->free_reqs = r;
    s->nfree++;
}

void sw_http__on_reap(uv_check_t *h)
{
    sw_http_server_t *s = h->data;
    while (s->dead) {
        sw_http_req_t *r = s->dead;
        s->dead = r->next;
        req_recycle(r);
    }
    uv_check_stop(h);
    /* Requests that outlived their connection have finished: draining may be over. */
    if (s->draining && !s->handles_closing)
        sw_http__server_check_drained(s);
}

/* A request is never freed inside the call that answered it: handlers may still hold its
 * arena when sw_http_respond returns, so it is released on the loop's next check phase. */
void sw_http__req_release(sw_http_req_t *r)
{
    sw_http_server_t *s = r->server;
    r->conn = NULL;
    r->next = s->dead;
    s->dead = r;
    if (!s->handles_closing)
        uv_check_start(&s->reaper, sw_http__on_reap);
}

void sw_http__reqs_free(sw_http_server_t *s)
{
    while (s->dead) {
        sw_http_req_t *r = s->dead;
        s->dead = r->next;
        req_recycle(r);
    }
    while (s->free_reqs) {
        sw_http_req_t *r = s->free_reqs;
        s->free_reqs = r->next;
        sw_arena_free(&r->arena);
        sw_buf_free(&r->body);
        sw_buf_free(&r->out);
        sw_buf_free(&r->resp_headers);
        free(r);
    }
}

/* ---- accessors ---- */

sw_iov_t sw_http_req_header(const sw_http_req_t *req, const char *name)
{
    for (uint32_t i = 0; i < req->nheaders; i++)
        if (sw_iov_caseeq(req->headers[i].name, name))
            return req->headers[i].value;
    return SW_IOV_NULL;
}

sw_iov_t sw_http_req_param(const sw_http_req_t *req, const char *name)
{
    for (uint32_t i = 0; i < req->nparams; i++)
        if (sw_iov_eq_cstr(req->param_names[i], name))
            return req->param_values[i];
    return SW_IOV_NULL;
}

/* Decodes %XX and '+' into the arena; NULL for a malformed escape or an embedded NUL. */
static char *query_decode(sw_arena_t *a, const char *s, size_t len)
{
    char *out = sw_arena_alloc(a, len + 1);
    ssize_t n = sw_percent_decode(out, len + 1, s, len, SW_PERCENT_FORM);
    /* A raw NUL (a form body may hold one) would cut the C string the caller gets short. */
    return n < 0 || memchr(out, '\0', (size_t)n) ? NULL : out;
}

const char *sw_http_form_value(sw_arena_t *arena, sw_iov_t form, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = form.base, *end = form.base + form.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : stop;
            return query_decode(arena, v, (size_t)(stop - v));
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

const char *sw_http_req_query(sw_http_req_t *req, const char *name)
{
    return sw_http_form_value(&req->arena, req->query, name);
}

sw_iov_t sw_http_req_cookie(const sw_http_req_t *req, const char *name)
{
    size_t nlen = strlen(name);
    for (uint32_t i = 0; i < req->nheaders; i++) {
        if (!sw_iov_caseeq(req->headers[i].name, "cookie"))
            continue;
        const char *p = req->headers[i].value.base;
        const char *end = p + req->headers[i].value.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
                const char *v = eq + 1;
                size_t vlen = (size_t)(stop - v);
                while (vlen && v[vlen - 1] == ' ')
                    vlen--;
                return (sw_iov_t){(char *)v, vlen};
            }
            p = stop;
        }
    }
    return SW_IOV_NULL;
}
