/* Putting deployments on the Redis stream. */
#include "slipway/queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/common.h"

static char instance[48], stream_name[96], cancel_name[96], control_name[96];

void sw_queue_set_instance(const char *instance_id)
{
    snprintf(instance, sizeof(instance), "%.40s", instance_id);
    snprintf(stream_name, sizeof(stream_name), "slipway:%.40s:deploy", instance_id);
    snprintf(cancel_name, sizeof(cancel_name), "slipway:%.40s:deploy:cancel", instance_id);
    snprintf(control_name, sizeof(control_name), "slipway:%.40s:app:control", instance_id);
}

bool sw_queue_ready(void)
{
    return stream_name[0] != '\0';
}

const char *sw_queue_stream(void)
{
    return stream_name;
}

const char *sw_queue_cancel_channel(void)
{
    return cancel_name;
}

const char *sw_queue_control_channel(void)
{
    return control_name;
}

void sw_queue_applog_key(const char *app_id, char *out, size_t size)
{
    if (!instance[0])
        snprintf(out, size, "%s", "");
    else
        snprintf(out, size, "slipway:%s:applog:%.40s", instance, app_id);
}

typedef struct {
    sw_pg_pool_t *pg;
    char id[40];
} push_t;

static void on_marked(int status, sw_pg_result_t *res, void *payload)
{
    (void)status;
    (void)res;
    (void)payload;
}

static void on_added(int status, const sw_redis_reply_t *reply, void *payload)
{
    push_t *p = payload;
    if (status == 0 && reply && reply->type == SW_REDIS_STRING) {
        const char *params[] = {p->id};
        sw_pg_query(p->pg, "UPDATE deployments SET enqueued = true WHERE id = $1", 1, params,
                    on_marked, NULL);
    }
    free(p);
}

void sw_queue_push(sw_pg_pool_t *pg, sw_redis_t *redis, const char *deployment_id,
                   const char *app_id)
{
    if (!sw_queue_ready())
        return; /* the row stays unenqueued; a worker's reconciler pushes it */
    push_t *p = sw_calloc(1, sizeof(*p));
    p->pg = pg;
    snprintf(p->id, sizeof(p->id), "%s", deployment_id);
    const char *argv[] = {"XADD", stream_name, "*", "deployment", deployment_id, "app", app_id};
    size_t argvlen[7];
    for (int i = 0; i < 7; i++)
        argvlen[i] = strlen(argv[i]);
    if (sw_redis_command(redis, on_added, p, 7, argv, argvlen) != 0)
        free(p);
}

static void on_published(int status, const sw_redis_reply_t *reply, void *payload)
{
    (void)status;
    (void)reply;
    (void)payload;
}

void sw_queue_cancel(sw_redis_t *redis, const char *deployment_id)
{
    if (!sw_queue_ready())
        return;
    const char *argv[] = {"PUBLISH", cancel_name, deployment_id};
    size_t argvlen[] = {7, strlen(cancel_name), strlen(deployment_id)};
    sw_redis_command(redis, on_published, NULL, 3, argv, argvlen);
}

void sw_queue_stop_app(sw_redis_t *redis, const char *app_id)
{
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "stop:%s", app_id);
    if (!sw_queue_ready())
        return;
    const char *argv[] = {"PUBLISH", control_name, msg};
    size_t argvlen[] = {7, strlen(control_name), (size_t)n};
    sw_redis_command(redis, on_published, NULL, 3, argv, argvlen);
}
