/* The cap on a deployment's stored output; see include/slipway/logcap.h. */
#include "slipway/logcap.h"

sw_logcap_verdict_t sw_logcap_take(sw_logcap_t *c, uint64_t max, size_t len)
{
    sw_logcap_verdict_t v = SW_LOGCAP_SKIP;

    /* In this order nothing can wrap around: stored <= max always. */
    if (!c->cut && len <= max && max - len >= SW_LOGCAP_LINE_COST &&
        c->stored <= max - len - SW_LOGCAP_LINE_COST) {
        c->stored += (uint64_t)len + SW_LOGCAP_LINE_COST;
        return SW_LOGCAP_STORE;
    }
    if (!c->cut) {
        c->cut = true;
        v = SW_LOGCAP_CUT;
    }
    c->skipped_lines++;
    c->skipped_bytes += len;
    return v;
}
