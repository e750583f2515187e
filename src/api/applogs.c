/* GET /api/v1/apps/:id/logs: the last lines of an app's runtime output, read from the capped
 * Redis list the worker running its instances appends to (see slipway/applog.h), so every
 * slipwayd can answer, whichever node runs the app. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/logread.h"

#define APP_LOG_LINES_DEFAULT 100
#define APP_LOG_LINES_MAX     1000

static void on_lines(int status, const sw_iov_t *lines, size_t n, void *payload)
{
    sw_http_req_t *req = payload;
    if (status != 0) {
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                              "runtime logs are unavailable: Redis did not answer", NULL);
        return;
    }
    /* The elements are JSON objects the worker wrote, oldest first. */
    sw_buf_t body = SW_BUF_INIT;
    sw_buf_append_cstr(&body, "{\"data\":[");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        const sw_iov_t *e = &lines[i];
        if (e->len < 2 || e->base[0] != '{')
            continue;
        if (!first)
            sw_buf_append_char(&body, ',');
        sw_buf_append(&body, e->base, e->len);
        first = false;
    }
    sw_buf_append_cstr(&body, "]}");
    sw_http_respond(req, 200, "application/json", body.base, body.len);
    sw_buf_free(&body);
}

void sw_api_apps_logs(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    sw_json_errors_t e;
    sw_json_errors_init(&e);
    long long lines = APP_LOG_LINES_DEFAULT;
    sw_api_query_int(req, "lines", 1, APP_LOG_LINES_MAX, &lines, &e);
    if (sw_json_errors_any(&e)) {
        sw_api_validation_error(req, &e);
        return;
    }
    sw_iov_t id = sw_http_req_param(req, "id");
    char app_id[40];
    snprintf(app_id, sizeof(app_id), "%.*s", (int)SW_MIN(id.len, 36), id.base);
    int r = sw_logread_app(api->redis, app_id, (unsigned)lines, on_lines, req);
    if (r == -EAGAIN)
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE", "starting up; try again", NULL);
    else if (r != 0)
        on_lines(SW_EUNAVAIL, NULL, 0, req);
}
