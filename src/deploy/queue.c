/* The deployment queue, both ends of the Redis stream: putting deployments on it (with the
 * format of an entry) and reading them back through the workers' consumer group. */
#include "slipway/queue.h"

#include <errno.h>
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

/* ---- the consumer's end: the group, reading, claiming, acknowledging ---- */

typedef struct {
    sw_queue_entries_cb cb;
    void (*ready_cb)(int status, void *payload);
    void *payload;
} consume_t;

static consume_t *consumer_new(sw_queue_entries_cb cb, void *payload)
{
    consume_t *c = sw_calloc(1, sizeof(*c));
    c->cb = cb;
    c->payload = payload;
    return c;
}

static void redis_call(sw_redis_t *redis, sw_redis_cb cb, consume_t *c, int argc, const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (sw_redis_command(redis, cb, c, argc, argv, lens) != 0 && c)
        cb(SW_EUNAVAIL, NULL, c);
}

static void on_group(int status, const sw_redis_reply_t *reply, void *payload)
{
    consume_t *c = payload;
    bool ready = status == 0 && reply &&
                 (reply->type == SW_REDIS_STATUS ||
                  (reply->type == SW_REDIS_ERROR && strstr(reply->str, "BUSYGROUP")));
    c->ready_cb(ready ? 0 : status ? status : -EPROTO, c->payload);
    free(c);
}

void sw_queue_group_create(sw_redis_t *redis, void (*cb)(int status, void *payload), void *payload)
{
    consume_t *c = sw_calloc(1, sizeof(*c));
    c->ready_cb = cb;
    c->payload = payload;
    const char *argv[] = {"XGROUP", "CREATE", stream_name, SW_QUEUE_GROUP, "0", "MKSTREAM"};
    redis_call(redis, on_group, c, 6, argv);
}

/* One entry: [id, [k, v, ...]]; false when it is not shaped like one. */
static bool parse_entry(const sw_redis_reply_t *entry, sw_queue_entry_t *e)
{
    if (entry->type != SW_REDIS_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != SW_REDIS_STRING || entry->element[1]->type != SW_REDIS_ARRAY)
        return false;
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%.*s", (int)entry->element[0]->len, entry->element[0]->str);
    const sw_redis_reply_t *fields = entry->element[1];
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const sw_redis_reply_t *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != SW_REDIS_STRING || v->type != SW_REDIS_STRING || v->len >= 40)
            continue;
        if (k->len == 10 && memcmp(k->str, "deployment", 10) == 0)
            snprintf(e->deployment_id, sizeof(e->deployment_id), "%.*s", (int)v->len, v->str);
        else if (k->len == 3 && memcmp(k->str, "app", 3) == 0)
            snprintf(e->app_id, sizeof(e->app_id), "%.*s", (int)v->len, v->str);
    }
    return true;
}

/* Hands the well-formed entries of a list of them to the callback. */
static void deliver(consume_t *c, const sw_redis_reply_t *entries)
{
    sw_queue_entry_t *v = sw_calloc(entries->elements + 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; i < entries->elements; i++)
        if (parse_entry(entries->element[i], &v[n]))
            n++;
    c->cb(0, v, n, c->payload);
    free(v);
}

static void on_read(int status, const sw_redis_reply_t *reply, void *payload)
{
    consume_t *c = payload;
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY) {
        if (reply && reply->type == SW_REDIS_ERROR && strstr(reply->str, "NOGROUP"))
            status = -ENOENT;
        else if (status == 0)
            status = reply && reply->type == SW_REDIS_ERROR ? -EPROTO : -ETIMEDOUT;
        c->cb(status, NULL, 0, c->payload);
        free(c);
        return;
    }
    /* [[stream, [[id, [k, v, ...]], ...]]]: one stream asked, so one answered. */
    sw_queue_entry_t none;
    bool delivered = false;
    for (size_t s = 0; s < reply->elements; s++) {
        const sw_redis_reply_t *stream = reply->element[s];
        if (stream->type != SW_REDIS_ARRAY || stream->elements != 2)
            continue;
        deliver(c, stream->element[1]);
        delivered = true;
    }
    if (!delivered)
        c->cb(0, &none, 0, c->payload);
    free(c);
}

void sw_queue_read_entries(sw_redis_t *redis, const char *consumer, unsigned count,
                           unsigned block_ms, sw_queue_entries_cb cb, void *payload)
{
    char n[16], block[16];
    snprintf(n, sizeof(n), "%u", count);
    snprintf(block, sizeof(block), "%u", block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", SW_QUEUE_GROUP, consumer,    "COUNT", n,
                          "BLOCK",      block,   "STREAMS",      stream_name, ">"};
    redis_call(redis, on_read, consumer_new(cb, payload), 11, argv);
}

static void on_claim(int status, const sw_redis_reply_t *reply, void *payload)
{
    consume_t *c = payload;
    /* [next-cursor, [[id, fields], ...], [deleted ids]] */
    if (status != 0 || !reply || reply->type != SW_REDIS_ARRAY || reply->elements < 2)
        c->cb(status ? status : -EPROTO, NULL, 0, c->payload);
    else
        deliver(c, reply->element[1]);
    free(c);
}

void sw_queue_claim_entries(sw_redis_t *redis, const char *consumer, uint32_t min_idle_ms,
                            unsigned count, sw_queue_entries_cb cb, void *payload)
{
    char idle[16], n[16];
    snprintf(idle, sizeof(idle), "%u", min_idle_ms);
    snprintf(n, sizeof(n), "%u", count);
    const char *argv[] = {"XAUTOCLAIM", stream_name, SW_QUEUE_GROUP, consumer,
                          idle,         "0-0",       "COUNT",        n};
    redis_call(redis, on_claim, consumer_new(cb, payload), 8, argv);
}

void sw_queue_ack(sw_redis_t *redis, const char *entry_id)
{
    const char *argv[] = {"XACK", stream_name, SW_QUEUE_GROUP, entry_id};
    size_t argvlen[] = {4, strlen(stream_name), strlen(SW_QUEUE_GROUP), strlen(entry_id)};
    sw_redis_command(redis, on_published, NULL, 4, argv, argvlen);
}
