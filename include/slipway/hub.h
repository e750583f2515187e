/* The live-message hub: topics ("deployment:<id>", "app:<id>", "system:<node>"), their
 * watchers, and the relay that carries messages between slipwayd processes over Redis.
 *
 * A message is one JSON object as DESIGN.md §6 describes, with an optional sequence number
 * (log lines have one; status and end messages have 0). Publishing never blocks and costs
 * each watcher one reference: the message's encoding for a transport (WebSocket frame, SSE
 * event, NDJSON line) is made once, by the encoder the transport's sink brings, the first
 * time a watcher of that encoding needs it, and shared by all of them. The hub itself frames
 * nothing.
 *
 * Each watcher has a bounded queue of messages not yet handed to its transport. The hub
 * hands them over while the transport holds less than a window of unsent bytes; when the
 * queue passes its bound the oldest messages are dropped and the watcher is sent one
 * "lagged" message with the count before the next message it gets. */
#ifndef SLIPWAY_HUB_H
#define SLIPWAY_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/buf.h"

typedef struct sw_hub sw_hub_t;
typedef struct sw_hub_watcher sw_hub_watcher_t;
typedef struct sw_redis sw_redis_t;

typedef enum {
    SW_HUB_LOG,
    SW_HUB_STATUS,
    SW_HUB_METRICS,
    SW_HUB_LAGGED,
    SW_HUB_END,
    SW_HUB_ERROR,
    SW_HUB_TYPE_MAX
} sw_hub_type_t;

/* Which cache slot a message's encoding for a transport goes in: each message caches one
 * encoding per id, made by the encoder of the first sink that asks. Sinks sharing an id must
 * bring the same encoder. The names say whose slot it is; the bytes are the transport's. */
typedef enum {
    SW_HUB_ENC_WS,     /* a WebSocket text frame */
    SW_HUB_ENC_SSE,    /* a Server-Sent Event */
    SW_HUB_ENC_NDJSON, /* a line of NDJSON */
    SW_HUB_ENC_MAX
} sw_hub_enc_t;

typedef struct sw_hub_msg {
    uint32_t refs;
    sw_hub_type_t type;
    long long seq;                    /* 0 when the message has none */
    sw_shared_t *json;                /* the JSON object, no trailing newline */
    sw_shared_t *enc[SW_HUB_ENC_MAX]; /* made on first use */
} sw_hub_msg_t;

/* A message with one reference; json is copied. */
sw_hub_msg_t *sw_hub_msg_new(sw_hub_type_t type, long long seq, const char *json, size_t len);
/* {"type":..., "timestamp": now, "data": <data_json>} as a message. */
sw_hub_msg_t *sw_hub_msg_make(sw_hub_type_t type, long long seq, const char *data_json, size_t len);
sw_hub_msg_t *sw_hub_msg_ref(sw_hub_msg_t *m);
void sw_hub_msg_unref(sw_hub_msg_t *m);
const char *sw_hub_type_name(sw_hub_type_t type);

typedef enum {
    SW_HUB_SEND, /* hand the message to the transport */
    SW_HUB_SKIP, /* drop it (already sent, e.g. during history replay) */
    SW_HUB_HOLD  /* keep it at the head and stop until sw_hub_watcher_resume */
} sw_hub_verdict_t;

/* What the hub needs from a watcher's transport. */
typedef struct {
    sw_hub_enc_t enc;
    /* Makes the message's bytes for this transport from m->json (and m->seq), with one
     * reference; called once per message and encoding, the result shared by every sink of
     * that encoding. */
    sw_shared_t *(*encode)(const sw_hub_msg_t *m);
    /* Writes one encoded message; the transport takes its own reference. Non-zero: the
     * transport is closing (the hub stops sending to it). */
    int (*send)(void *conn, sw_shared_t *frame);
    /* Bytes the transport holds that the peer has not taken yet. */
    size_t (*pending)(const void *conn);
    /* Optional: decides about each message before it is sent, in queue order (lagged
     * messages included, so a watcher can tell a deliberate gap from a missing line). */
    sw_hub_verdict_t (*filter)(void *conn, const sw_hub_msg_t *m);
} sw_hub_sink_t;

/* The message in the sink's encoding (made once, then cached); borrowed. */
sw_shared_t *sw_hub_msg_encoded(sw_hub_msg_t *m, const sw_hub_sink_t *sink);

typedef struct {
    uint32_t queue_max_msgs;  /* per watcher; beyond it the oldest are dropped */
    uint64_t queue_max_bytes; /* per watcher, counting each message's JSON length */
    uint32_t write_window;    /* stop handing messages over while pending() exceeds this */
    const char *node;         /* this process's id: its own relayed messages are ignored */
    const char *instance;     /* namespaces the Redis channels, like the deploy queue */
} sw_hub_opts_t;

typedef struct {
    uint64_t watchers;                /* now */
    uint64_t topics;                  /* now, with at least one local watcher */
    uint64_t published;               /* messages published on this process */
    uint64_t relayed_in;              /* messages received from other processes */
    uint64_t sent[SW_HUB_ENC_MAX];    /* messages handed to transports, per encoding */
    uint64_t dropped[SW_HUB_ENC_MAX]; /* messages dropped from full queues, per encoding */
} sw_hub_stats_t;

/* redis may be NULL (one process: no relay). The hub subscribes to a topic's channel on
 * the reserved subscriber connection only while the topic has local watchers. */
int sw_hub_new(sw_hub_t **out, uv_loop_t *loop, sw_redis_t *redis, const sw_hub_opts_t *opts);
/* Frees the hub; every watcher must have been removed. NULL is fine. */
void sw_hub_free(sw_hub_t *hub);

/* Delivers m to the topic's local watchers and relays it to other processes. The hub takes
 * its own references; the caller keeps its own. A NULL hub does nothing. */
void sw_hub_publish(sw_hub_t *hub, const char *topic, sw_hub_msg_t *m);
/* True when someone on this process watches topic (to sample only when watched). */
bool sw_hub_watched(const sw_hub_t *hub, const char *topic);

/* Adds a watcher of topic. held: queue messages but send nothing until resumed. */
sw_hub_watcher_t *sw_hub_watch(sw_hub_t *hub, const char *topic, const sw_hub_sink_t *sink,
                               void *conn, bool held);
/* Removes the watcher and drops its queue. */
void sw_hub_unwatch(sw_hub_watcher_t *w);
/* Sends a message to this watcher only, through its queue (history replay, end). */
void sw_hub_watcher_push(sw_hub_watcher_t *w, sw_hub_msg_t *m);
void sw_hub_watcher_hold(sw_hub_watcher_t *w);
void sw_hub_watcher_resume(sw_hub_watcher_t *w);
/* The transport has room again (its on_writable): hand over more. */
void sw_hub_watcher_writable(sw_hub_watcher_t *w);
/* The seq of the first queued message with one, or 0. */
long long sw_hub_watcher_first_seq(const sw_hub_watcher_t *w);
size_t sw_hub_watcher_queued(const sw_hub_watcher_t *w);

void sw_hub_stats(const sw_hub_t *hub, sw_hub_stats_t *out);

#endif
