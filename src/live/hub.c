/* STUB: replaced by the hub implementation (topics, watchers, relay). Publishing is a no-op
 * until then. */
#include "slipway/hub.h"

#include <stdlib.h>

#include "slipway/common.h"

void sw_hub_publish(sw_hub_t *hub, const char *topic, sw_hub_msg_t *m)
{
    (void)hub;
    (void)topic;
    (void)m;
}

sw_hub_msg_t *sw_hub_msg_new(sw_hub_type_t type, long long seq, const char *json, size_t len)
{
    sw_hub_msg_t *m = sw_calloc(1, sizeof(*m));
    m->refs = 1;
    m->type = type;
    m->seq = seq;
    m->json = sw_shared_new(json, len);
    return m;
}

sw_hub_msg_t *sw_hub_msg_ref(sw_hub_msg_t *m)
{
    m->refs++;
    return m;
}

void sw_hub_msg_unref(sw_hub_msg_t *m)
{
    if (!m || --m->refs)
        return;
    sw_shared_unref(m->json);
    for (int i = 0; i < SW_HUB_ENC_MAX; i++)
        sw_shared_unref(m->enc[i]);
    free(m);
}
