/* Percent-decoding (RFC 3986 %XX escapes), for URL parts and form-encoded values. */
#ifndef SLIPWAY_PERCENT_H
#define SLIPWAY_PERCENT_H

#include <stddef.h>
#include <sys/types.h>

/* application/x-www-form-urlencoded: '+' stands for a space. */
#define SW_PERCENT_FORM 0x1u

/* Decodes s[0..len) into out, NUL-terminated, and returns the decoded length (without the
 * NUL). Refuses a malformed or truncated escape and %00 (-EINVAL), and a result that does not
 * fit out with its NUL (-E2BIG); out is then unspecified. The decoded text is never longer
 * than len, so an out of len + 1 bytes always fits.
 *
 * Compared with the decoder in src/http/server.c (query_decode, for query strings and form
 * bodies): with SW_PERCENT_FORM and out_size = len + 1 it accepts and produces exactly the
 * same bytes; it writes into a caller's buffer instead of allocating from an arena, and
 * reports why it failed (-EINVAL) where query_decode returns NULL. */
ssize_t sw_percent_decode(char *out, size_t out_size, const char *s, size_t len, unsigned flags);

#endif
