/* Percent-decoding, shared by the Redis URL parser and HTTP query and form values. */
#include "slipway/percent.h"

#include <errno.h>

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

ssize_t sw_percent_decode(char *out, size_t out_size, const char *s, size_t len, unsigned flags)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '+' && (flags & SW_PERCENT_FORM)) {
            ch = ' ';
        } else if (ch == '%') {
            if (len - i < 3)
                return -EINVAL;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -EINVAL;
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 >= out_size)
            return -E2BIG;
        out[o++] = ch;
    }
    if (out_size == 0)
        return -E2BIG;
    out[o] = '\0';
    return (ssize_t)o;
}
