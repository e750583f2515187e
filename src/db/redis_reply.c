/* hiredis replies turned into sw_redis_reply_t trees, in one allocation per reply. */
#include <string.h>

#include <hiredis/hiredis.h>

#include "slipway/common.h"

#include "internal.h"

static void count_nodes(const redisReply *rep, size_t *nodes, size_t *ptrs)
{
    (*nodes)++;
    if (rep->type != REDIS_REPLY_ARRAY)
        return;
    *ptrs += rep->elements;
    for (size_t i = 0; i < rep->elements; i++)
        count_nodes(rep->element[i], nodes, ptrs);
}

/* Fills out from rep, taking nodes and element vectors from the cursors into one block. */
static void fill_reply(const redisReply *rep, sw_redis_reply_t *out, sw_redis_reply_t **nodes,
                       const sw_redis_reply_t ***ptrs)
{
    memset(out, 0, sizeof(*out));
    switch (rep->type) {
    case REDIS_REPLY_STRING:
        out->type = SW_REDIS_STRING;
        break;
    case REDIS_REPLY_STATUS:
        out->type = SW_REDIS_STATUS;
        break;
    case REDIS_REPLY_ERROR:
        out->type = SW_REDIS_ERROR;
        break;
    case REDIS_REPLY_INTEGER:
        out->type = SW_REDIS_INTEGER;
        out->integer = rep->integer;
        return;
    case REDIS_REPLY_ARRAY: {
        const sw_redis_reply_t **vec = *ptrs;
        *ptrs += rep->elements;
        out->type = SW_REDIS_ARRAY;
        out->elements = rep->elements;
        out->element = vec;
        for (size_t i = 0; i < rep->elements; i++) {
            sw_redis_reply_t *child = (*nodes)++;
            fill_reply(rep->element[i], child, nodes, ptrs);
            vec[i] = child;
        }
        return;
    }
    default:
        out->type = SW_REDIS_NIL;
        return;
    }
    out->str = rep->str;
    out->len = rep->len;
}

void sw_redis__deliver_reply(sw_redis_cb cb, void *payload, const redisReply *rep)
{
    sw_redis_reply_t top;
    if (rep->type != REDIS_REPLY_ARRAY) {
        fill_reply(rep, &top, NULL, NULL);
        cb(0, &top, payload);
        return;
    }
    size_t nodes = 0, ptrs = 0;
    count_nodes(rep, &nodes, &ptrs);
    /* One block: nodes first (for alignment), then every element vector. */
    char *block =
        sw_malloc((nodes - 1) * sizeof(sw_redis_reply_t) + ptrs * sizeof(sw_redis_reply_t *));
    sw_redis_reply_t *node_cur = (sw_redis_reply_t *)block;
    const sw_redis_reply_t **ptr_cur =
        (const sw_redis_reply_t **)(block + (nodes - 1) * sizeof(sw_redis_reply_t));
    fill_reply(rep, &top, &node_cur, &ptr_cur);
    cb(0, &top, payload);
    free(block);
}
