/* The deployment queue: a Redis stream read by workers through a consumer group. PostgreSQL
 * holds the truth (a deployment row is written first); the stream only says "work exists". */
#ifndef SLIPWAY_QUEUE_H
#define SLIPWAY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slipway/pg.h"
#include "slipway/redis.h"

#define SW_QUEUE_GROUP "workers"

/* Names the queue's keys after the instance (its id in PostgreSQL), so several instances can
 * share one Redis: the stream slipway:<id>:deploy, and the cancel and control channels. Set
 * once, after migrations; until then nothing is pushed (the reconciler catches up). */
void sw_queue_set_instance(const char *instance_id);
bool sw_queue_ready(void);
const char *sw_queue_stream(void);
const char *sw_queue_cancel_channel(void);  /* cancel requests for running deployments */
const char *sw_queue_control_channel(void); /* "stop:<app id>" */
/* The Redis list holding an app's last runtime log lines (slipway:<id>:applog:<app id>);
 * "" until the instance is known. */
void sw_queue_applog_key(const char *app_id, char *out, size_t size);

/* Adds the deployment to the stream and, once Redis took it, marks the row enqueued. Best
 * effort: if Redis is away the row stays pending and not enqueued, and a worker's reconciler
 * enqueues it later, so no trigger is lost. */
void sw_queue_push(sw_pg_pool_t *pg, sw_redis_t *redis, const char *deployment_id,
                   const char *app_id);
/* Tells every worker to stop the app's instances. */
void sw_queue_stop_app(sw_redis_t *redis, const char *app_id);
/* Tells every worker to cancel a running deployment. */
void sw_queue_cancel(sw_redis_t *redis, const char *deployment_id);

/* An entry of the stream as a worker reads it; a field missing or too long is "". */
typedef struct {
    char id[64];
    char deployment_id[40];
    char app_id[40];
} sw_queue_entry_t;

/* status 0 with the entries read (n may be 0), or: -ETIMEDOUT (nothing came within the
 * block), -ENOENT (the group is gone: create it again), another negative code. entries are
 * valid only during the call. */
typedef void (*sw_queue_entries_cb)(int status, const sw_queue_entry_t *entries, size_t n,
                                    void *payload);

/* Creates the consumer group (and the stream); cb gets 0 once the group exists. */
void sw_queue_group_create(sw_redis_t *redis, void (*cb)(int status, void *payload), void *payload);
/* New entries for consumer, at most count, waiting up to block_ms for one. */
void sw_queue_read_entries(sw_redis_t *redis, const char *consumer, unsigned count,
                           unsigned block_ms, sw_queue_entries_cb cb, void *payload);
/* Entries another consumer left pending for at least min_idle_ms, taken over by consumer. */
void sw_queue_claim_entries(sw_redis_t *redis, const char *consumer, uint32_t min_idle_ms,
                            unsigned count, sw_queue_entries_cb cb, void *payload);
/* Done with an entry: it leaves the group's pending list. */
void sw_queue_ack(sw_redis_t *redis, const char *entry_id);

#endif
