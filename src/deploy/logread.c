/* Reading an app's runtime log back from its capped Redis list (see applog.c). */
#include "slipway/logread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/common.h"
#include "slipway/queue.h"

typedef struct {
    sw_logread_cb cb;
    void *payload;
} read_t;

static void on_lines(int status, const sw_redis_reply_t *reply, void *payload)
{
    read_t rd = *(read_t *)payload;
    free(payload);
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY) {
        rd.cb(status != 0 ? status : -EPROTO, NULL, 0, rd.payload);
        return;
    }
    sw_iov_t *lines = sw_malloc((reply->elements + 1) * sizeof(*lines));
    size_t n = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const sw_redis_reply_t *e = reply->element[i];
        if (e->type == SW_REDIS_STRING)
            lines[n++] = (sw_iov_t){(char *)e->str, e->len};
    }
    rd.cb(0, lines, n, rd.payload);
    free(lines);
}

int sw_logread_app(sw_redis_t *redis, const char *app_id, unsigned last, sw_logread_cb cb,
                   void *payload)
{
    char key[160], from[24];
    sw_queue_applog_key(app_id, key, sizeof(key));
    if (!key[0])
        return -EAGAIN;
    snprintf(from, sizeof(from), "-%u", last);
    const char *argv[] = {"LRANGE", key, from, "-1"};
    size_t lens[] = {6, strlen(key), strlen(from), 2};
    read_t *rd = sw_malloc(sizeof(*rd));
    rd->cb = cb;
    rd->payload = payload;
    int r = sw_redis_command(redis, on_lines, rd, 4, argv, lens);
    if (r != 0)
        free(rd);
    return r;
}
