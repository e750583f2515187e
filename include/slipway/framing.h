/* Request framing rules that llhttp leaves to the server: Host (RFC 9112 §3.2) and
 * Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1). */
#ifndef SLIPWAY_FRAMING_H
#define SLIPWAY_FRAMING_H

#include "slipway/server.h"

/* NULL when req's head (of HTTP version major.minor) frames a request we may serve; otherwise
 * why it must be answered 400 and the connection closed. */
const char *sw_http_framing_error(const sw_http_req_t *req, unsigned major, unsigned minor);

#endif
