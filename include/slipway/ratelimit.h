/* Token buckets keyed by a string (a client address, an account, a principal), in a bounded
 * table: the least recently used key is evicted when it is full. */
#ifndef SLIPWAY_RATELIMIT_H
#define SLIPWAY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sw_ratelimit sw_ratelimit_t;

typedef struct {
    bool allowed;
    uint32_t limit;          /* the burst */
    uint32_t remaining;      /* whole tokens left after this call */
    uint64_t reset_ms;       /* until the bucket is full again */
    uint64_t retry_after_ms; /* when not allowed: until one token is back */
    uint64_t window_ms;      /* an empty bucket takes this long to fill to `limit` */
} sw_ratelimit_result_t;

/* rate: tokens added per period_ms; burst: bucket size; max_keys: table bound. */
sw_ratelimit_t *sw_ratelimit_new(uint32_t rate, uint64_t period_ms, uint32_t burst,
                                 size_t max_keys);
void sw_ratelimit_free(sw_ratelimit_t *rl);
/* Takes cost tokens for key at now_ms (if there are enough). */
void sw_ratelimit_take(sw_ratelimit_t *rl, const char *key, uint32_t cost, uint64_t now_ms,
                       sw_ratelimit_result_t *out);
/* Looks without taking. */
void sw_ratelimit_peek(sw_ratelimit_t *rl, const char *key, uint64_t now_ms,
                       sw_ratelimit_result_t *out);
/* Gives back tokens taken for an attempt that turned out not to count (a successful login). */
void sw_ratelimit_refund(sw_ratelimit_t *rl, const char *key, uint32_t cost);
/* Forgets a key (e.g. after a successful login). */
void sw_ratelimit_reset(sw_ratelimit_t *rl, const char *key);

#endif
