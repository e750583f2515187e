/* Line-framed event streams over HTTP: Server-Sent Events (WHATWG HTML §9.2) and NDJSON. */
#ifndef SLIPWAY_SSE_H
#define SLIPWAY_SSE_H

#include <stddef.h>

#include "slipway/buf.h"

/* "id: <id>\ndata: <json>\n\n" (no id line when id is 0 or less), with one reference. Raw CR
 * and LF in json (JSON whitespace) become spaces, so they cannot split the event. */
sw_shared_t *sw_sse_encode(long long id, const char *json, size_t len);
/* "<json>\n", with one reference; raw CR and LF become spaces as for sw_sse_encode. */
sw_shared_t *sw_ndjson_encode(const char *json, size_t len);

#endif
