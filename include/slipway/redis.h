/* An asynchronous Redis client on hiredis and its libuv adapter: command timeouts,
 * reconnect with backoff, and a second connection reserved for subscriptions. */
#ifndef SLIPWAY_REDIS_H
#define SLIPWAY_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sw_redis sw_redis_t;

typedef enum {
    SW_REDIS_NIL,
    SW_REDIS_STRING,
    SW_REDIS_STATUS,
    SW_REDIS_INTEGER,
    SW_REDIS_ARRAY,
    SW_REDIS_ERROR,
    SW_REDIS_MAX
} sw_redis_type_t;

typedef struct sw_redis_reply sw_redis_reply_t;
struct sw_redis_reply {
    sw_redis_type_t type;
    long long integer;
    const char *str; /* STRING, STATUS, ERROR */
    size_t len;
    size_t elements; /* ARRAY */
    const sw_redis_reply_t *const *element;
};

/* status: 0 (reply may still be SW_REDIS_ERROR: that is Redis's answer), SW_EUNAVAIL,
 * -ETIMEDOUT, or SW_ECANCELED. reply is valid only during the callback; NULL unless 0. */
typedef void (*sw_redis_cb)(int status, const sw_redis_reply_t *reply, void *payload);
/* A message on a subscribed channel; channel and data are valid only during the call. */
typedef void (*sw_redis_message_cb)(const char *channel, size_t channel_len, const char *data,
                                    size_t len, void *payload);

typedef struct {
    const char *url; /* redis://[:password@]host[:port][/db] or unix:///path */
    uint32_t timeout_ms;
    void (*on_state)(sw_redis_t *r, void *payload); /* after a connection goes up or down */
    void *payload;
} sw_redis_opts_t;

/* Parses url without connecting; -EINVAL with a message in err for a malformed one. */
int sw_redis_url_check(const char *url, char *err, size_t err_size);

int sw_redis_new(sw_redis_t **out, uv_loop_t *loop, const sw_redis_opts_t *opts);
/* Fails pending commands with SW_ECANCELED, disconnects, closes handles, calls on_closed on
 * the loop and frees r. */
void sw_redis_close(sw_redis_t *r, void (*on_closed)(void *payload), void *payload);

/* Sends one command given as an argument vector (binary-safe). The callback is called
 * exactly once, later, on the loop; with SW_EUNAVAIL at once when not connected. */
int sw_redis_command(sw_redis_t *r, sw_redis_cb cb, void *payload, int argc, const char **argv,
                     const size_t *argvlen);

/* Subscribes on the reserved connection; resubscribes after every reconnect. Messages arrive
 * through cb until sw_redis_unsubscribe. Returns 0 or -EINVAL/-EEXIST. */
int sw_redis_subscribe(sw_redis_t *r, const char *channel, sw_redis_message_cb cb, void *payload);
int sw_redis_unsubscribe(sw_redis_t *r, const char *channel);

bool sw_redis_up(const sw_redis_t *r);            /* the command connection */
bool sw_redis_subscriber_up(const sw_redis_t *r); /* the subscription connection */

#endif
