/* Line-framed event streams: Server-Sent Events and NDJSON. Each event is made once into a
 * shared block that any number of streams write by reference. */
#include "slipway/sse.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Copies the JSON with any raw CR or LF turned into a space: JSON whitespace, so the object is
 * unchanged, and a line-framed transport cannot be split by it. */
static void copy_one_line(char *dst, const char *json, size_t len)
{
    memcpy(dst, json, len);
    for (size_t i = 0; i < len; i++)
        if (dst[i] == '\n' || dst[i] == '\r')
            dst[i] = ' ';
}

sw_shared_t *sw_sse_encode(long long id, const char *json, size_t len)
{
    char head[40] = "";
    int idlen = id > 0 ? snprintf(head, sizeof(head), "id: %lld\n", id) : 0;
    size_t n = (size_t)idlen + 6 + len + 2;
    sw_shared_t *s = sw_shared_alloc(n);
    char *p = s->data;
    memcpy(p, head, (size_t)idlen);
    p += idlen;
    memcpy(p, "data: ", 6);
    copy_one_line(p + 6, json, len);
    memcpy(p + 6 + len, "\n\n", 2);
    return s;
}

sw_shared_t *sw_ndjson_encode(const char *json, size_t len)
{
    sw_shared_t *s = sw_shared_alloc(len + 1);
    copy_one_line(s->data, json, len);
    s->data[len] = '\n';
    return s;
}
