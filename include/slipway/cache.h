/* A bounded per-process cache of byte strings under byte-string keys, least recently used
 * out first, with a generation counter that keeps answers read before an invalidation from
 * being stored after it. The loop thread owns it; nothing here is thread-safe. */
#ifndef SLIPWAY_CACHE_H
#define SLIPWAY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slipway/buf.h"

typedef struct sw_cache sw_cache_t;

typedef struct {
    uint64_t hits;          /* sw_cache_get found the key */
    uint64_t misses;        /* sw_cache_get did not */
    uint64_t stores;        /* values stored */
    uint64_t stale;         /* stores refused: an invalidation came after their generation */
    uint64_t evictions;     /* entries dropped to stay within the bounds */
    uint64_t invalidations; /* sw_cache_invalidate calls */
    size_t entries;
    size_t bytes; /* keys, values and per-entry overhead */
} sw_cache_stats_t;

/* At most max_entries entries and max_bytes bytes (both at least 1). */
sw_cache_t *sw_cache_new(size_t max_entries, size_t max_bytes);
void sw_cache_free(sw_cache_t *c);

/* Read this before starting the lookup whose answer may be stored with sw_cache_put. */
uint64_t sw_cache_generation(const sw_cache_t *c);

/* The value stored under key into out, and true; false when there is none. out points into
 * the cache and stays valid only until the next call that changes it (put, invalidate). */
bool sw_cache_get(sw_cache_t *c, sw_iov_t key, sw_iov_t *out);

/* Stores a copy of value under key, replacing any, when generation is still the current one;
 * evicts the least recently used entries to make room. Returns 0, -ESTALE (an invalidation
 * happened since generation was read: nothing stored) or -E2BIG (the entry would take more
 * than an eighth of max_bytes, so one value never pushes out most of the others). */
int sw_cache_put(sw_cache_t *c, uint64_t generation, sw_iov_t key, sw_iov_t value);

/* Drops every entry and moves the generation on, so lookups already under way never store. */
void sw_cache_invalidate(sw_cache_t *c);

void sw_cache_stats(const sw_cache_t *c, sw_cache_stats_t *out);

#endif
