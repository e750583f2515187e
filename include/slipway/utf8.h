/* Text from outside (a build's output, a commit message) made valid UTF-8 before it is
 * stored or sent: PostgreSQL refuses invalid bytes and a NUL (even as \u0000 in jsonb), and
 * WebSocket peers must fail a text frame that is not UTF-8.
 *
 * Each maximal invalid subpart (Unicode ch. 3, "U+FFFD substitution of maximal subparts",
 * the same as Python's errors="replace" and the WHATWG decoder) becomes U+FFFD; overlong
 * forms, surrogates and code points above U+10FFFF are invalid. A NUL becomes U+2400
 * SYMBOL FOR NULL, so it stays visible without being a NUL. */
#ifndef SLIPWAY_UTF8_H
#define SLIPWAY_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#include "slipway/buf.h"

#define SW_UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */
#define SW_UTF8_NUL         "\xe2\x90\x80" /* U+2400, what a NUL becomes */

/* Appends s made valid (as above). */
void sw_utf8_append(sw_buf_t *b, const char *s, size_t len);
/* The same, as the inside of a JSON string (sw_buf_append_json_str's escapes). */
void sw_utf8_append_json(sw_buf_t *b, const char *s, size_t len);
/* Where to cut s so no character is split: len, or less by the 1-3 bytes of a character
 * that is valid so far but incomplete at the end (they belong to the next piece). */
size_t sw_utf8_cut(const char *s, size_t len);
/* Copies s made valid into dst (size > 0), cut at a character boundary to fit, always
 * NUL-terminated; returns the length. s may be dst itself. */
size_t sw_utf8_copy(char *dst, size_t size, const char *s, size_t len);
/* s is valid UTF-8 and holds no NUL. */
bool sw_utf8_valid(const char *s, size_t len);

#endif
