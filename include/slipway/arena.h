/* A bump allocator whose memory is released in one go: one per request. */
#ifndef SLIPWAY_ARENA_H
#define SLIPWAY_ARENA_H

#include <stdarg.h>
#include <stddef.h>

#include "slipway/buf.h"
#include "slipway/common.h"

typedef struct sw_arena_chunk sw_arena_chunk_t;

typedef struct {
    sw_arena_chunk_t *chunks; /* most recent first */
    char *pos;
    char *end;
    size_t total; /* bytes handed out, for limits and tests */
} sw_arena_t;

#define SW_ARENA_INIT ((sw_arena_t){NULL, NULL, NULL, 0})

/* Memory aligned for any type; never NULL. */
void *sw_arena_alloc(sw_arena_t *a, size_t size);
void *sw_arena_calloc(sw_arena_t *a, size_t size);
char *sw_arena_strndup(sw_arena_t *a, const char *s, size_t len);
char *sw_arena_strdup(sw_arena_t *a, const char *s);
sw_iov_t sw_arena_iovdup(sw_arena_t *a, sw_iov_t s);
char *sw_arena_printf(sw_arena_t *a, const char *fmt, ...) SW_PRINTF(2, 3);
/* Releases everything but the first chunk, which is kept for reuse. */
void sw_arena_reset(sw_arena_t *a);
/* Releases everything. */
void sw_arena_free(sw_arena_t *a);

#endif
