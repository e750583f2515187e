/* GET /api/v1/apps/:id/logs: the last lines of an app's runtime output, read from the capped
 * Redis list the worker running its instances appends to (see slipway/applog.h), so every
 * slipwayd can answer, whichever node runs the app. */
#include <stdio.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/queue.h"

#define APP_LOG_LINES_DEFAULT 100
#define APP_LOG_LINES_MAX     1000

static void on_lines(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_http_req_t *req = payload;
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY) {
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE",
                              "runtime logs are unavailable: Redis did not answer", NULL);
        return;
    }
    /* The elements are JSON objects the worker wrote, oldest first. */
    sw_buf_t body = SW_BUF_INIT;
    sw_buf_append_cstr(&body, "{\"data\":[");
    bool first = true;
    for (size_t i = 0; i < reply->elements; i++) {
        const sw_redis_reply_t *e = reply->element[i];
        if (e->type != SW_REDIS_STRING || e->len < 2 || e->str[0] != '{')
            continue;
        if (!first)
            sw_buf_append_char(&body, ',');
        sw_buf_append(&body, e->str, e->len);
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
    char key[160], from[24];
    sw_iov_t id = sw_http_req_param(req, "id");
    char app_id[40];
    snprintf(app_id, sizeof(app_id), "%.*s", (int)SW_MIN(id.len, 36), id.base);
    sw_queue_applog_key(app_id, key, sizeof(key));
    if (!key[0]) {
        sw_http_respond_error(req, 503, "SERVICE_UNAVAILABLE", "starting up; try again", NULL);
        return;
    }
    snprintf(from, sizeof(from), "-%lld", lines);
    const char *argv[] = {"LRANGE", key, from, "-1"};
    size_t lens[] = {6, strlen(key), strlen(from), 2};
    if (sw_redis_command(api->redis, on_lines, req, 4, argv, lens) != 0)
        on_lines(SW_EUNAVAIL, NULL, req);
}
