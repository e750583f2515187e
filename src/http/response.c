/* Responses: status texts, headers, serialising an answer, and the JSON error envelope. */
#include "internal.h"

#include <string.h>
#include <time.h>

#include "slipway/common.h"
#include "slipway/json.h"

const char *sw_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

const char *sw_http_error_code(int status)
{
    switch (status) {
    case 400:
    case 422:
        return "VALIDATION_ERROR";
    case 401:
        return "AUTHENTICATION_ERROR";
    case 403:
        return "INSUFFICIENT_ROLE";
    case 404:
        return "RESOURCE_NOT_FOUND";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 408:
        return "REQUEST_TIMEOUT";
    case 409:
        return "RESOURCE_CONFLICT";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 414:
        return "URI_TOO_LONG";
    case 417:
        return "EXPECTATION_FAILED";
    case 426:
        return "UPGRADE_REQUIRED";
    case 429:
        return "RATE_LIMIT_EXCEEDED";
    case 431:
        return "HEADERS_TOO_LARGE";
    case 503:
        return "SERVICE_UNAVAILABLE";
    case 505:
        return "HTTP_VERSION_NOT_SUPPORTED";
    default:
        return status >= 500 ? "INTERNAL_ERROR" : "BAD_REQUEST";
    }
}

static bool header_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

void sw_http_add_header(sw_http_req_t *req, const char *name, const char *value)
{
    if (!header_safe(name) || !header_safe(value) || !*name)
        return;
    sw_buf_append_cstr(&req->resp_headers, name);
    sw_buf_append(&req->resp_headers, ": ", 2);
    sw_buf_append_cstr(&req->resp_headers, value);
    sw_buf_append(&req->resp_headers, "\r\n", 2);
}

const char *sw_http__server_date(sw_http_server_t *s)
{
    uint64_t now = uv_now(s->loop) / 1000u;
    if (now != s->date_at || !s->date[0]) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_at = now;
    }
    return s->date;
}

void sw_http__req_finish(sw_http_req_t *req, int status, const char *content_type, const void *body,
                         size_t len)
{
    sw_http_conn_t *c = req->conn;
    sw_http_server_t *s = req->server;
    bool keep = req->keep_alive && c && c->state == CONN_OPEN && !s->draining;
    bool no_body = req->head || status == 204 || status == 304 || (status >= 100 && status < 200);

    req->status = status;
    req->keep_alive = keep;
    sw_buf_reset(&req->out);
    sw_buf_reserve(&req->out, 256 + req->resp_headers.len + (no_body ? 0 : len));
    sw_buf_printf(&req->out, "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Request-Id: %s\r\n", status,
                  sw_http_status_text(status), sw_http__server_date(s), req->request_id);
    if (content_type && (len > 0 || req->head))
        sw_buf_printf(&req->out, "Content-Type: %s\r\n", content_type);
    if (status != 204 && status != 304)
        sw_buf_printf(&req->out, "Content-Length: %zu\r\n", len);
    sw_buf_append(&req->out, req->resp_headers.base ? req->resp_headers.base : "",
                  req->resp_headers.len);
    sw_buf_append_cstr(&req->out,
                       keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    if (!no_body && len)
        sw_buf_append(&req->out, body, len);
    req->state = SW_HTTP_REQ_DONE;

    if (s->opts.on_response)
        s->opts.on_response(req, s->opts.payload);

    if (!c) {
        /* The connection went away while the handler worked. */
        sw_http__req_release(req);
        return;
    }
    if (!keep && c->state == CONN_OPEN)
        c->state = CONN_CLOSING;
    sw_http__conn_flush(c);
}

void sw_http_respond(sw_http_req_t *req, int status, const char *content_type, const void *body,
                     size_t len)
{
    if (req->state != SW_HTTP_REQ_HANDLING && req->state != SW_HTTP_REQ_PARSING)
        return; /* answered already */
    sw_http__req_finish(req, status, content_type, body, len);
}

void sw_http_respond_json(sw_http_req_t *req, int status, json_t *value)
{
    sw_buf_t b = SW_BUF_INIT;
    if (value) {
        sw_json_dump(&b, value);
        json_decref(value);
    }
    sw_buf_append_char(&b, '\n');
    sw_http_respond(req, status, "application/json", b.base, b.len);
    sw_buf_free(&b);
}

void sw_http_respond_error(sw_http_req_t *req, int status, const char *code, const char *message,
                           json_t *details)
{
    json_t *err =
        json_pack("{s:s, s:s, s:o, s:s}", "code", code ? code : sw_http_error_code(status),
                  "message", message ? message : sw_http_status_text(status), "details",
                  details ? details : json_array(), "request_id", req->request_id);
    sw_http_respond_json(req, status, json_pack("{s:o}", "error", err));
}
