/* The cap on a deployment's stored output (SLIPWAY_BUILD_LOG_MAX_BYTES): which lines are
 * stored, and what was left out once the cap was reached. Lines past it are still streamed
 * live; only the store stops. */
#ifndef SLIPWAY_LOGCAP_H
#define SLIPWAY_LOGCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a stored line costs beside its text: its number, stream and time in the log row. */
#define SW_LOGCAP_LINE_COST 64

typedef enum {
    SW_LOGCAP_STORE, /* under the cap: store the line */
    SW_LOGCAP_CUT,   /* this line reaches the cap: say so in the log, then as SKIP */
    SW_LOGCAP_SKIP,  /* past the cap: stream it, do not store it */
    SW_LOGCAP_VERDICT_MAX
} sw_logcap_verdict_t;

typedef struct {
    uint64_t stored;        /* cost of the lines stored (text + SW_LOGCAP_LINE_COST each) */
    uint64_t skipped_lines; /* lines not stored, from the cut on */
    uint64_t skipped_bytes; /* their text */
    bool cut;
} sw_logcap_t;

#define SW_LOGCAP_INIT ((sw_logcap_t){0, 0, 0, false})

/* Counts one line of len bytes against max. Once a line is refused every later one is too,
 * so the stored log is a prefix of the output. */
sw_logcap_verdict_t sw_logcap_take(sw_logcap_t *c, uint64_t max, size_t len);

#endif
