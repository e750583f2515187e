/* For the fuzz targets that speak HTTP: one real server (include/slipway/server.h) on its own
 * loop, and a peer in the same process on the other end of a socketpair. */
#ifndef SLIPWAY_FUZZ_CONN_H
#define SLIPWAY_FUZZ_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "slipway/server.h"

/* Sends data to the server as one connection, at most chunk bytes per loop iteration so the
 * parser also meets input cut anywhere (0: all at once), then shuts the write side, reads
 * every byte the server answers until it closes, and returns once the connection is gone.
 * on_request answers each complete request. Aborts when an answer does not start with a
 * status line. */
void fuzz_conn_run(const uint8_t *data, size_t size, size_t chunk,
                   void (*on_request)(sw_http_req_t *req, void *payload));

/* The loop the server runs on, for handlers that answer later. */
uv_loop_t *fuzz_conn_loop(void);

#endif
