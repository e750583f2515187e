/* Slices and owned growable buffers. */
#ifndef SLIPWAY_BUF_H
#define SLIPWAY_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slipway/common.h"

/* A non-owning slice; the same shape as uv_buf_t. */
typedef struct {
    char *base;
    size_t len;
} sw_iov_t;

#define SW_IOV_LIT(s) ((sw_iov_t){(char *)(s), sizeof(s) - 1})
#define SW_IOV_NULL   ((sw_iov_t){NULL, 0})

sw_iov_t sw_iov_from_cstr(const char *s);
bool sw_iov_eq(sw_iov_t a, sw_iov_t b);
bool sw_iov_eq_cstr(sw_iov_t a, const char *s);
/* ASCII case-insensitive comparison, for header names and tokens. */
bool sw_iov_caseeq(sw_iov_t a, const char *s);
/* A UUID in its canonical lower-case text form (8-4-4-4-12 hex digits). */
bool sw_iov_is_uuid(sw_iov_t s);
/* Parses an unsigned decimal integer occupying the whole slice; -EINVAL or -ERANGE. */
int sw_iov_to_u64(sw_iov_t s, unsigned long long *out);

/* An owned, growable byte buffer that is always NUL-terminated (base is never NULL after
 * the first write; len excludes the terminator). */
typedef struct {
    char *base;
    size_t len;
    size_t cap;
} sw_buf_t;

#define SW_BUF_INIT ((sw_buf_t){NULL, 0, 0})

/* Ensures room for n more bytes plus the terminator. */
void sw_buf_reserve(sw_buf_t *b, size_t n);
void sw_buf_append(sw_buf_t *b, const void *data, size_t len);
void sw_buf_append_cstr(sw_buf_t *b, const char *s);
void sw_buf_append_char(sw_buf_t *b, char c);
void sw_buf_printf(sw_buf_t *b, const char *fmt, ...) SW_PRINTF(2, 3);
void sw_buf_vprintf(sw_buf_t *b, const char *fmt, va_list ap) SW_PRINTF(2, 0);
/* Appends s as the inside of a JSON string (quotes not included). */
void sw_buf_append_json_str(sw_buf_t *b, const char *s, size_t len);
/* Drops the first n bytes (I/O: bytes written or parsed). */
void sw_buf_consume(sw_buf_t *b, size_t n);
/* Empties the buffer but keeps its memory. */
void sw_buf_reset(sw_buf_t *b);
/* Frees the memory; the buffer is SW_BUF_INIT afterwards. */
void sw_buf_free(sw_buf_t *b);
/* Hands the heap string to the caller; the buffer is SW_BUF_INIT afterwards. */
char *sw_buf_steal(sw_buf_t *b);

/* An immutable byte block shared by reference: one encoded message written to many peers.
 * Only the loop's thread touches the count. */
typedef struct sw_shared {
    uint32_t refs;
    uint32_t len;
    char data[];
} sw_shared_t;

/* A copy of data with one reference. */
sw_shared_t *sw_shared_new(const void *data, size_t len);
/* len bytes for the caller to fill (NUL after them), with one reference: saves the copy
 * sw_shared_new makes. */
sw_shared_t *sw_shared_alloc(size_t len);
/* Adopts a buffer's bytes (the buffer is SW_BUF_INIT afterwards). */
sw_shared_t *sw_shared_from_buf(sw_buf_t *b);
static inline sw_shared_t *sw_shared_ref(sw_shared_t *s)
{
    s->refs++;
    return s;
}
void sw_shared_unref(sw_shared_t *s);

#endif
