/* A bump allocator whose memory is released in one go. */
#include "slipway/arena.h"

#include <stdio.h>
#include <string.h>

#define ARENA_CHUNK 4096u
#define ARENA_ALIGN 16u

struct sw_arena_chunk {
    sw_arena_chunk_t *next;
    size_t size; /* usable bytes after the header */
    _Alignas(16) char data[];
};

static void *chunk_new(sw_arena_t *a, size_t min)
{
    size_t size = min > ARENA_CHUNK ? min : ARENA_CHUNK;
    sw_arena_chunk_t *c = sw_malloc(sizeof(*c) + size);
    c->size = size;
    if (min > ARENA_CHUNK / 4 && a->chunks) {
        /* A large block gets a chunk of its own behind the current one, so the space left in
         * the current chunk is not wasted. */
        c->next = a->chunks->next;
        a->chunks->next = c;
        return c->data;
    }
    c->next = a->chunks;
    a->chunks = c;
    a->pos = c->data + min;
    a->end = c->data + size;
    return c->data;
}

void *sw_arena_alloc(sw_arena_t *a, size_t size)
{
    size_t need = (size + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < size)
        sw_oom();
    a->total += size;
    if (a->pos && (size_t)(a->end - a->pos) >= need) {
        void *p = a->pos;
        a->pos += need;
        return p;
    }
    return chunk_new(a, need);
}

void *sw_arena_calloc(sw_arena_t *a, size_t size)
{
    void *p = sw_arena_alloc(a, size);
    memset(p, 0, size);
    return p;
}

char *sw_arena_strndup(sw_arena_t *a, const char *s, size_t len)
{
    char *p = sw_arena_alloc(a, len + 1);
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *sw_arena_strdup(sw_arena_t *a, const char *s)
{
    return sw_arena_strndup(a, s, strlen(s));
}

sw_iov_t sw_arena_iovdup(sw_arena_t *a, sw_iov_t s)
{
    return (sw_iov_t){sw_arena_strndup(a, s.base, s.len), s.len};
}

char *sw_arena_printf(sw_arena_t *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return sw_arena_strdup(a, "");
    }
    char *p = sw_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void sw_arena_reset(sw_arena_t *a)
{
    sw_arena_chunk_t *keep = NULL;
    for (sw_arena_chunk_t *c = a->chunks, *next; c; c = next) {
        next = c->next;
        /* Keep one ordinary-sized chunk for the next user. */
        if (!keep && c->size == ARENA_CHUNK) {
            keep = c;
            continue;
        }
        free(c);
    }
    a->total = 0;
    if (keep) {
        keep->next = NULL;
        a->chunks = keep;
        a->pos = keep->data;
        a->end = keep->data + keep->size;
    } else {
        *a = SW_ARENA_INIT;
    }
}

void sw_arena_free(sw_arena_t *a)
{
    for (sw_arena_chunk_t *c = a->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    *a = SW_ARENA_INIT;
}
