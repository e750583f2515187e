/* Valid UTF-8 out of arbitrary bytes; see include/slipway/utf8.h. */
#include "slipway/utf8.h"

#include <string.h>

/* The well-formed prefix of the character at s (Unicode Table 3-7): returns how many bytes
 * of it are well-formed, and in *need how many the whole character has (0: s[0] can start
 * none). A return equal to *need is a complete character. */
static size_t well_formed(const unsigned char *s, size_t len, size_t *need)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n, i;

    if (c < 0x80) {
        *need = 1;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* E0 80..9F would be overlong */
        hi = c == 0xed ? 0x9f : 0xbf; /* ED A0..BF would be a surrogate */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80; /* F0 80..8F would be overlong */
        hi = c == 0xf4 ? 0x8f : 0xbf; /* F4 90.. would be above U+10FFFF */
    } else {
        *need = 0; /* C0, C1 (overlong only), F5..FF, or a stray continuation byte */
        return 0;
    }
    *need = n;
    for (i = 1; i < n && i < len; i++) {
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
            break;
    }
    return i;
}

/* Valid runs go through put unchanged; each replacement is added as it is. */
static void sanitize(sw_buf_t *b, const char *s, size_t len, bool json)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;

    while (i < len) {
        size_t need, ok;
        if (u[i] >= 0x01 && u[i] < 0x80) {
            i++;
            continue;
        }
        ok = well_formed(u + i, len - i, &need);
        if (u[i] != 0 && need && ok == need) {
            i += ok;
            continue;
        }
        if (json)
            sw_buf_append_json_str(b, s + run, i - run);
        else
            sw_buf_append(b, s + run, i - run);
        sw_buf_append(b, u[i] == 0 ? SW_UTF8_NUL : SW_UTF8_REPLACEMENT, 3);
        i += ok ? ok : 1;
        run = i;
    }
    if (json)
        sw_buf_append_json_str(b, s + run, len - run);
    else
        sw_buf_append(b, s + run, len - run);
}

void sw_utf8_append(sw_buf_t *b, const char *s, size_t len)
{
    sanitize(b, s, len, false);
}

void sw_utf8_append_json(sw_buf_t *b, const char *s, size_t len)
{
    sanitize(b, s, len, true);
}

size_t sw_utf8_cut(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;

    /* The last character's first byte is at most 3 back; stop at the first non-continuation. */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        size_t at = len - back, need;
        if ((u[at] & 0xc0) == 0x80)
            continue;
        size_t ok = well_formed(u + at, back, &need);
        return ok == back && need > back ? at : len;
    }
    return len;
}

size_t sw_utf8_copy(char *dst, size_t size, const char *s, size_t len)
{
    sw_buf_t b = SW_BUF_INIT;
    size_t n;

    sanitize(&b, s, len, false);
    n = b.len;
    if (n > size - 1) {
        n = size - 1;
        while (n > 0 && ((unsigned char)b.base[n] & 0xc0) == 0x80)
            n--;
    }
    if (n)
        memcpy(dst, b.base, n);
    dst[n] = '\0';
    sw_buf_free(&b);
    return n;
}

bool sw_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t need, ok = well_formed(u + i, len - i, &need);
        if (u[i] == 0 || !need || ok != need)
            return false;
        i += ok;
    }
    return true;
}
