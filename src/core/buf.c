/* Slices and owned growable buffers. */
#include "slipway/buf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

sw_iov_t sw_iov_from_cstr(const char *s)
{
    return (sw_iov_t){(char *)s, s ? strlen(s) : 0};
}

bool sw_iov_eq(sw_iov_t a, sw_iov_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

bool sw_iov_eq_cstr(sw_iov_t a, const char *s)
{
    return sw_iov_eq(a, sw_iov_from_cstr(s));
}

static inline char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

bool sw_iov_caseeq(sw_iov_t a, const char *s)
{
    size_t n = strlen(s);
    if (a.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(a.base[i]) != lower(s[i]))
            return false;
    return true;
}

bool sw_iov_is_uuid(sw_iov_t s)
{
    if (s.len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        char c = s.base[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

int sw_iov_to_u64(sw_iov_t s, unsigned long long *out)
{
    unsigned long long v = 0;
    if (s.len == 0)
        return -EINVAL;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.base[i];
        if (c < '0' || c > '9')
            return -EINVAL;
        unsigned d = (unsigned)(c - '0');
        if (v > (~0ull - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

void sw_buf_reserve(sw_buf_t *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        sw_oom();
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->base = sw_realloc(b->base, cap);
    b->cap = cap;
    b->base[b->len] = '\0';
}

void sw_buf_append(sw_buf_t *b, const void *data, size_t len)
{
    sw_buf_reserve(b, len);
    if (len)
        memcpy(b->base + b->len, data, len);
    b->len += len;
    b->base[b->len] = '\0';
}

void sw_buf_append_cstr(sw_buf_t *b, const char *s)
{
    sw_buf_append(b, s, strlen(s));
}

void sw_buf_append_char(sw_buf_t *b, char c)
{
    sw_buf_append(b, &c, 1);
}

void sw_buf_vprintf(sw_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    sw_buf_reserve(b, 64);
    int n = vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        b->base[b->len] = '\0';
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        sw_buf_reserve(b, (size_t)n);
        vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap2);
    }
    va_end(ap2);
    b->len += (size_t)n;
}

void sw_buf_printf(sw_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sw_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void sw_buf_append_json_str(sw_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    sw_buf_reserve(b, len + 2);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            sw_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            sw_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            sw_buf_append(b, "\\n", 2);
            break;
        case '\r':
            sw_buf_append(b, "\\r", 2);
            break;
        case '\t':
            sw_buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
                sw_buf_append(b, esc, sizeof(esc));
            } else {
                sw_buf_append_char(b, (char)c);
            }
        }
    }
}

void sw_buf_consume(sw_buf_t *b, size_t n)
{
    if (n >= b->len) {
        sw_buf_reset(b);
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
    b->base[b->len] = '\0';
}

void sw_buf_reset(sw_buf_t *b)
{
    b->len = 0;
    if (b->base)
        b->base[0] = '\0';
}

void sw_buf_free(sw_buf_t *b)
{
    free(b->base);
    *b = SW_BUF_INIT;
}

char *sw_buf_steal(sw_buf_t *b)
{
    if (!b->base)
        sw_buf_reserve(b, 0);
    char *s = b->base;
    *b = SW_BUF_INIT;
    return s;
}

sw_shared_t *sw_shared_alloc(size_t len)
{
    if (len > UINT32_MAX)
        sw_oom();
    sw_shared_t *s = sw_malloc(sizeof(*s) + len + 1);
    s->refs = 1;
    s->len = (uint32_t)len;
    s->data[len] = '\0';
    return s;
}

sw_shared_t *sw_shared_new(const void *data, size_t len)
{
    sw_shared_t *s = sw_shared_alloc(len);
    if (len)
        memcpy(s->data, data, len);
    return s;
}

sw_shared_t *sw_shared_from_buf(sw_buf_t *b)
{
    sw_shared_t *s = sw_shared_new(b->base ? b->base : "", b->len);
    sw_buf_free(b);
    return s;
}

void sw_shared_unref(sw_shared_t *s)
{
    if (s && --s->refs == 0)
        free(s);
}
