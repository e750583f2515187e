/* Subscriptions on the reserved connection: the channel table and the messages it routes. */
#include "slipway/redis.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/async.h>

#include "slipway/common.h"

#include "internal.h"

#define CHANNEL_LEN_MAX 256
#define CHANNELS_MAX    1024

static void on_message(redisAsyncContext *ac, void *reply, void *privdata);

void sw_redis__sub_send(redis_conn_t *c, const char *verb, const redis_channel_t *ch)
{
    const char *argv[2] = {verb, ch->name};
    size_t lens[2] = {strlen(verb), ch->len};
    /* Failure means the context is going away, and the next connection resubscribes. */
    (void)redisAsyncCommandArgv(c->ac, on_message, c, 2, argv, lens);
}

static size_t channel_bucket(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return (size_t)(h & (REDIS_CHANNEL_BUCKETS - 1));
}

static redis_channel_t **channel_slot(sw_redis_t *r, const char *name, size_t len)
{
    redis_channel_t **p = &r->channels[channel_bucket(name, len)];
    for (; *p; p = &(*p)->next)
        if ((*p)->len == len && memcmp((*p)->name, name, len) == 0)
            break;
    return p;
}

static void on_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    redis_conn_t *c = privdata;
    sw_redis_t *r = c->r;
    const redisReply *rep = reply;

    if (!rep) {
        if (c->ac == ac)
            sw_redis__conn_lost(c, ac);
        return;
    }
    if (r->closing || c->ac != ac || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    const redisReply *kind = rep->element[0], *chan = rep->element[1], *data = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || kind->len != 7 ||
        strncasecmp(kind->str, "message", 7) != 0 || chan->type != REDIS_REPLY_STRING ||
        data->type != REDIS_REPLY_STRING)
        return;
    redis_channel_t *ch = *channel_slot(r, chan->str, chan->len);
    if (ch)
        ch->cb(chan->str, chan->len, data->str, data->len, ch->payload);
}

int sw_redis_subscribe(sw_redis_t *r, const char *channel, sw_redis_message_cb cb, void *payload)
{
    if (!r || !channel || !cb)
        return -EINVAL;
    size_t len = strnlen(channel, CHANNEL_LEN_MAX + 1);
    if (len == 0 || len > CHANNEL_LEN_MAX)
        return -EINVAL;
    if (r->closing)
        return SW_ECANCELED;
    redis_channel_t **slot = channel_slot(r, channel, len);
    if (*slot)
        return -EEXIST;
    if (r->nchannels >= CHANNELS_MAX)
        return SW_ELIMIT;
    redis_channel_t *ch = sw_malloc(sizeof(*ch) + len + 1);
    ch->next = NULL;
    ch->cb = cb;
    ch->payload = payload;
    ch->len = len;
    memcpy(ch->name, channel, len + 1);
    *slot = ch;
    r->nchannels++;
    redis_conn_t *c = &r->conns[REDIS_CONN_SUB];
    if (c->state == REDIS_CONN_UP)
        sw_redis__sub_send(c, "SUBSCRIBE", ch);
    return 0;
}

int sw_redis_unsubscribe(sw_redis_t *r, const char *channel)
{
    if (!r || !channel)
        return -EINVAL;
    size_t len = strnlen(channel, CHANNEL_LEN_MAX + 1);
    redis_channel_t **slot = channel_slot(r, channel, len);
    redis_channel_t *ch = *slot;
    if (!ch)
        return -ENOENT;
    *slot = ch->next;
    r->nchannels--;
    redis_conn_t *c = &r->conns[REDIS_CONN_SUB];
    if (c->state == REDIS_CONN_UP && !r->closing)
        sw_redis__sub_send(c, "UNSUBSCRIBE", ch);
    free(ch);
    return 0;
}
