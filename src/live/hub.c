/* The live-message hub: topics and their local watchers, each watcher's bounded queue, the
 * per-encoding cache, and the Redis relay that carries messages between slipwayd processes.
 *
 * The hub frames nothing: a watcher's sink says which encoding it wants and brings the
 * function that makes it; the hub caches the result on the message, one per encoding.
 *
 * Re-entrancy. A sink's send and filter run inside sw_hub_publish, sw_hub_watcher_push,
 * sw_hub_watcher_resume and sw_hub_watcher_writable, and inside the relay's Redis callback.
 * From there they may call any sw_hub_* function except sw_hub_free. sw_hub_unwatch of any
 * watcher, the one being served included, takes effect at once (sw_hub_watched, the stats,
 * the Redis subscription), but while the hub is walking the watcher's topic or flushing that
 * watcher it only marks it, and frees it when the walk ends. Either way the hub never calls
 * the watcher's sink again once sw_hub_unwatch has returned, so the transport may free conn.
 * A flush already running for a watcher is not entered again: a push or writable from its
 * own send only queues, and the running flush picks the message up.
 *
 * Relay. Messages published on this process during one loop iteration are coalesced per
 * topic into one PUBLISH on `slipway:<instance>:live:<topic>`, sent from a uv_check handle (a
 * uv_idle handle keeps the loop from sleeping in poll while a batch waits). The payload is
 * "SW1 <node>\n" followed by records "<type> <seq> <len>\n<json bytes>\n": lengths, not
 * delimiters, frame the JSON, so it may hold any bytes. A process ignores batches carrying
 * its own node id and never re-publishes what it receives. */
#include "slipway/hub.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "slipway/common.h"
#include "slipway/redis.h"

#define DEFAULT_QUEUE_MSGS  4096
#define DEFAULT_QUEUE_BYTES (4u << 20)
#define DEFAULT_WINDOW      (256u << 10)
#define DEFAULT_INSTANCE    "default"
#define TOPIC_MAX           160 /* channel prefix + topic stays within Redis's 256 bytes */
#define ID_MAX              64  /* node and instance ids */
#define RING_MIN            8
#define RING_KEEP           16 /* an emptied queue keeps a ring this small for the next line */
#define BUCKETS_MIN         64 /* a power of two */
#define RELAY_BATCH_MAX     (256u << 10) /* a batch this big is published at once */
#define RELAY_MAGIC         "SW1 "
#define RELAY_FIELD_MAX     24 /* a type name, seq or length in a relay record */

typedef struct topic topic_t;

struct sw_hub_watcher {
    sw_hub_t *hub;
    topic_t *topic;
    sw_hub_watcher_t *prev, *next;
    sw_hub_sink_t sink;
    void *conn;
    sw_hub_msg_t **ring; /* the queue: count messages from head, wrapping at cap */
    uint32_t cap, head, count;
    uint64_t bytes;  /* JSON bytes queued */
    uint64_t lagged; /* dropped and not yet reported in a lagged message */
    bool held;       /* by the caller or by the filter: send nothing until resumed */
    bool closed;     /* the transport refused a send: nothing more goes to it */
    bool dead;       /* unwatched; freed when the hub is done with it */
    bool flushing;
};

struct topic {
    sw_hub_t *hub;
    topic_t *next;       /* hash chain */
    topic_t *dirty_next; /* the hub's list of topics with a batch waiting */
    sw_hub_watcher_t *head, *tail;
    uint32_t live; /* watchers not yet unwatched */
    uint32_t dead; /* unwatched but still linked */
    uint32_t busy; /* walks over the watcher list in progress */
    uint64_t hash;
    bool subscribed;
    bool dirty;
    sw_buf_t outbox; /* the relay batch of this loop iteration */
    size_t chan_len;
    char channel[]; /* "slipway:<instance>:live:<topic>"; the topic is its tail */
};

struct sw_hub {
    uv_loop_t *loop;
    sw_redis_t *redis;
    uv_check_t check;
    uv_idle_t idle;
    int handles; /* open; the hub is freed when the last one has closed */
    uint32_t queue_max_msgs;
    uint64_t queue_max_bytes;
    uint32_t write_window;
    char node[ID_MAX + 1];
    char prefix[ID_MAX + 16];
    size_t prefix_len;
    topic_t **buckets;
    size_t nbuckets;
    size_t ntopics; /* entries, including those kept only for a waiting batch */
    topic_t *dirty;
    sw_hub_stats_t stats;
};

/* ---- messages ----------------------------------------------------------------------------- */

static const char *const type_names[SW_HUB_TYPE_MAX] = {
    [SW_HUB_LOG] = "log",       [SW_HUB_STATUS] = "status", [SW_HUB_METRICS] = "metrics",
    [SW_HUB_LAGGED] = "lagged", [SW_HUB_END] = "end",       [SW_HUB_ERROR] = "error",
};

const char *sw_hub_type_name(sw_hub_type_t type)
{
    return (unsigned)type < SW_HUB_TYPE_MAX ? type_names[type] : "error";
}

static sw_hub_msg_t *msg_adopt(sw_hub_type_t type, long long seq, sw_shared_t *json)
{
    sw_hub_msg_t *m = sw_calloc(1, sizeof(*m));
    m->refs = 1;
    m->type = (unsigned)type < SW_HUB_TYPE_MAX ? type : SW_HUB_ERROR;
    m->seq = seq;
    m->json = json;
    return m;
}

sw_hub_msg_t *sw_hub_msg_new(sw_hub_type_t type, long long seq, const char *json, size_t len)
{
    return msg_adopt(type, seq, sw_shared_new(json, len));
}

sw_hub_msg_t *sw_hub_msg_make(sw_hub_type_t type, long long seq, const char *data_json, size_t len)
{
    char ts[32], head[96];
    if (!data_json || !len) {
        data_json = "{}";
        len = 2;
    }
    sw_time_rfc3339(ts, sizeof(ts), sw_wall_ms());
    int n = snprintf(head, sizeof(head),
                     "{\"type\":\"%s\",\"timestamp\":\"%s\",\"data\":", sw_hub_type_name(type), ts);
    assert(n > 0 && (size_t)n < sizeof(head));
    sw_shared_t *json = sw_shared_alloc((size_t)n + len + 1);
    memcpy(json->data, head, (size_t)n);
    memcpy(json->data + n, data_json, len);
    json->data[(size_t)n + len] = '}';
    return msg_adopt(type, seq, json);
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

sw_shared_t *sw_hub_msg_encoded(sw_hub_msg_t *m, const sw_hub_sink_t *sink)
{
    assert((unsigned)sink->enc < SW_HUB_ENC_MAX);
    if (!m->enc[sink->enc])
        m->enc[sink->enc] = sink->encode(m);
    return m->enc[sink->enc];
}

/* ---- a watcher's queue -------------------------------------------------------------------- */

static sw_hub_msg_t **ring_at(sw_hub_watcher_t *w, uint32_t i)
{
    uint32_t j = w->head + i;
    return &w->ring[j >= w->cap ? j - w->cap : j];
}

static void ring_grow(sw_hub_watcher_t *w)
{
    /* count stays within the bound plus the one message being added */
    uint64_t cap = w->cap ? (uint64_t)w->cap * 2 : RING_MIN;
    cap = SW_MAX(SW_MIN(cap, (uint64_t)w->hub->queue_max_msgs + 1), (uint64_t)w->count + 1);
    sw_hub_msg_t **ring = sw_malloc(cap * sizeof(*ring));
    for (uint32_t i = 0; i < w->count; i++)
        ring[i] = *ring_at(w, i);
    free(w->ring);
    w->ring = ring;
    w->cap = (uint32_t)cap;
    w->head = 0;
}

static void ring_release(sw_hub_watcher_t *w)
{
    free(w->ring);
    w->ring = NULL;
    w->cap = w->head = 0;
}

/* Takes the head; the caller owns its reference. */
static sw_hub_msg_t *queue_pop(sw_hub_watcher_t *w)
{
    sw_hub_msg_t *m = w->ring[w->head];
    w->head = w->head + 1 == w->cap ? 0 : w->head + 1;
    w->count--;
    w->bytes -= m->json->len;
    if (w->count == 0 && w->cap > RING_KEEP)
        ring_release(w);
    return m;
}

/* Puts back a message just popped (the filter held it); adopts the caller's reference. */
static void queue_unpop(sw_hub_watcher_t *w, sw_hub_msg_t *m)
{
    if (w->count == w->cap)
        ring_grow(w);
    w->head = w->head == 0 ? w->cap - 1 : w->head - 1;
    w->ring[w->head] = m;
    w->count++;
    w->bytes += m->json->len;
}

static void queue_clear(sw_hub_watcher_t *w)
{
    while (w->count)
        sw_hub_msg_unref(queue_pop(w));
    ring_release(w);
    w->lagged = 0;
}

/* Where a pushed message goes: before the first queued message with a higher seq, so history
 * replayed while live lines were queueing lands ahead of them. Queued seqs are in order, so
 * the walk back from the tail covers only the messages it goes before. */
static uint32_t seq_position(sw_hub_watcher_t *w, long long seq)
{
    uint32_t pos = w->count;
    if (seq <= 0)
        return pos;
    while (pos > 0) {
        long long s = (*ring_at(w, pos - 1))->seq;
        if (s != 0 && s <= seq)
            break;
        pos--;
    }
    while (pos < w->count && (*ring_at(w, pos))->seq == 0)
        pos++;
    return pos;
}

/* Adds a reference to m to the queue, then drops the oldest messages beyond the bounds (the
 * newest message always stays, so one larger than the byte bound still gets through). */
static void queue_add(sw_hub_watcher_t *w, sw_hub_msg_t *m, bool by_seq)
{
    sw_hub_t *hub = w->hub;
    if (w->count == w->cap)
        ring_grow(w);
    uint32_t pos = by_seq ? seq_position(w, m->seq) : w->count;
    for (uint32_t i = w->count; i > pos; i--)
        *ring_at(w, i) = *ring_at(w, i - 1);
    *ring_at(w, pos) = sw_hub_msg_ref(m);
    w->count++;
    w->bytes += m->json->len;
    while (w->count > 1 && (w->count > hub->queue_max_msgs || w->bytes > hub->queue_max_bytes)) {
        sw_hub_msg_unref(queue_pop(w));
        w->lagged++;
        hub->stats.dropped[w->sink.enc]++;
    }
}

/* ---- topics ------------------------------------------------------------------------------- */

static uint64_t topic_hash(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ULL;
    return h;
}

static const char *topic_name(const topic_t *t)
{
    return t->channel + t->hub->prefix_len;
}

static topic_t **topic_slot(const sw_hub_t *hub, const char *name, size_t len, uint64_t hash)
{
    topic_t **p = &hub->buckets[hash & (hub->nbuckets - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == hash && (*p)->chan_len == hub->prefix_len + len &&
            memcmp(topic_name(*p), name, len) == 0)
            break;
    return p;
}

static void rehash(sw_hub_t *hub)
{
    size_t n = hub->nbuckets * 2;
    topic_t **buckets = sw_calloc(n, sizeof(*buckets));
    for (size_t b = 0; b < hub->nbuckets; b++) {
        for (topic_t *t = hub->buckets[b], *next; t; t = next) {
            next = t->next;
            t->next = buckets[t->hash & (n - 1)];
            buckets[t->hash & (n - 1)] = t;
        }
    }
    free(hub->buckets);
    hub->buckets = buckets;
    hub->nbuckets = n;
}

/* The topic's entry, created when create is set; NULL for a name out of bounds. */
static topic_t *topic_get(sw_hub_t *hub, const char *name, bool create)
{
    size_t len = strnlen(name, TOPIC_MAX + 1);
    if (len == 0 || len > TOPIC_MAX)
        return NULL;
    uint64_t hash = topic_hash(name, len);
    topic_t **slot = topic_slot(hub, name, len, hash);
    if (*slot || !create)
        return *slot;
    if (hub->ntopics >= hub->nbuckets) {
        rehash(hub);
        slot = topic_slot(hub, name, len, hash);
    }
    size_t chan_len = hub->prefix_len + len;
    topic_t *t = sw_calloc(1, sizeof(*t) + chan_len + 1);
    t->hub = hub;
    t->hash = hash;
    t->chan_len = chan_len;
    memcpy(t->channel, hub->prefix, hub->prefix_len);
    memcpy(t->channel + hub->prefix_len, name, len + 1);
    *slot = t;
    hub->ntopics++;
    return t;
}

static void topic_remove(topic_t *t)
{
    sw_hub_t *hub = t->hub;
    topic_t **slot = topic_slot(hub, topic_name(t), t->chan_len - hub->prefix_len, t->hash);
    assert(*slot == t);
    *slot = t->next;
    hub->ntopics--;
    sw_buf_free(&t->outbox);
    free(t);
}

static void watcher_free(sw_hub_watcher_t *w)
{
    topic_t *t = w->topic;
    if (w->prev)
        w->prev->next = w->next;
    else
        t->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        t->tail = w->prev;
    queue_clear(w);
    free(w);
}

/* Frees what was unwatched during a walk, and the topic itself once nothing needs it. */
static void topic_settle(topic_t *t)
{
    if (t->busy)
        return;
    for (sw_hub_watcher_t *w = t->head, *next; w && t->dead; w = next) {
        next = w->next;
        if (w->dead && !w->flushing) {
            t->dead--;
            watcher_free(w);
        }
    }
    if (!t->head && !t->dirty)
        topic_remove(t);
}

/* ---- delivery ----------------------------------------------------------------------------- */

static void watcher_close(sw_hub_watcher_t *w)
{
    w->closed = true;
    queue_clear(w);
}

/* Hands queued messages to the transport while it has room; see the re-entrancy rules at the
 * top. May free w when it was unwatched meanwhile. */
static void watcher_flush(sw_hub_watcher_t *w)
{
    sw_hub_t *hub = w->hub;
    if (w->flushing)
        return;
    w->flushing = true;
    while (!w->held && !w->closed && !w->dead && (w->lagged || w->count) &&
           w->sink.pending(w->conn) <= hub->write_window) {
        uint64_t lagged = w->lagged;
        sw_hub_msg_t *m;
        if (lagged) {
            char data[40];
            int n = snprintf(data, sizeof(data), "{\"dropped\":%llu}", (unsigned long long)lagged);
            m = sw_hub_msg_make(SW_HUB_LAGGED, 0, data, (size_t)n);
        } else {
            m = queue_pop(w); /* popped first: the filter may push ahead of it */
        }
        sw_hub_verdict_t v = w->sink.filter ? w->sink.filter(w->conn, m) : SW_HUB_SEND;
        if (w->dead || w->closed) {
            sw_hub_msg_unref(m);
            break;
        }
        if (v == SW_HUB_HOLD) {
            w->held = true;
            if (lagged)
                sw_hub_msg_unref(m); /* made again, with the count then, on resume */
            else
                queue_unpop(w, m);
            break;
        }
        if (lagged)
            w->lagged -= lagged; /* drops during the filter call are reported next time */
        if (v == SW_HUB_SEND) {
            if (w->sink.send(w->conn, sw_hub_msg_encoded(m, &w->sink)) != 0)
                watcher_close(w);
            else
                hub->stats.sent[w->sink.enc]++;
        }
        sw_hub_msg_unref(m);
    }
    w->flushing = false;
    if (w->dead)
        topic_settle(w->topic);
}

/* Queues m for every watcher of t that was there when the walk began, flushing each. */
static void topic_deliver(topic_t *t, sw_hub_msg_t *m)
{
    sw_hub_watcher_t *last = t->tail;
    if (!last || !t->live)
        return;
    t->busy++;
    for (sw_hub_watcher_t *w = t->head;; w = w->next) {
        if (!w->dead && !w->closed) {
            queue_add(w, m, false);
            if (!w->held)
                watcher_flush(w);
        }
        if (w == last)
            break;
    }
    t->busy--;
    topic_settle(t);
}

/* ---- relay -------------------------------------------------------------------------------- */

static void on_published(int status, const sw_redis_reply_t *reply, void *payload)
{
    /* A lost batch costs remote watchers lines they replay from the store on reconnect; the
     * library does not log, and a per-batch warning would flood during an outage. */
    (void)status;
    (void)reply;
    (void)payload;
}

static void outbox_publish(sw_hub_t *hub, topic_t *t)
{
    if (!t->outbox.len)
        return;
    const char *argv[] = {"PUBLISH", t->channel, t->outbox.base};
    const size_t lens[] = {7, t->chan_len, t->outbox.len};
    (void)sw_redis_command(hub->redis, on_published, NULL, 3, argv, lens);
    sw_buf_free(&t->outbox);
}

static void outbox_flush_all(sw_hub_t *hub)
{
    topic_t *t = hub->dirty;
    hub->dirty = NULL;
    uv_check_stop(&hub->check);
    uv_idle_stop(&hub->idle);
    while (t) {
        topic_t *next = t->dirty_next;
        t->dirty = false;
        t->dirty_next = NULL;
        outbox_publish(hub, t);
        topic_settle(t);
        t = next;
    }
}

static void on_check(uv_check_t *h)
{
    outbox_flush_all(sw_container_of(h, sw_hub_t, check));
}

static void on_idle(uv_idle_t *h)
{
    outbox_flush_all(sw_container_of(h, sw_hub_t, idle));
}

static void outbox_add(sw_hub_t *hub, topic_t *t, const sw_hub_msg_t *m)
{
    if (!t->outbox.len)
        sw_buf_printf(&t->outbox, RELAY_MAGIC "%s\n", hub->node);
    sw_buf_printf(&t->outbox, "%s %lld %u\n", sw_hub_type_name(m->type), m->seq,
                  (unsigned)m->json->len);
    sw_buf_append(&t->outbox, m->json->data, m->json->len);
    sw_buf_append_char(&t->outbox, '\n');
    if (!t->dirty) {
        if (!hub->dirty) {
            uv_check_start(&hub->check, on_check);
            uv_idle_start(&hub->idle, on_idle);
        }
        t->dirty = true;
        t->dirty_next = hub->dirty;
        hub->dirty = t;
    }
    if (t->outbox.len >= RELAY_BATCH_MAX)
        outbox_publish(hub, t);
}

/* The next field of a relay record, up to stop (consumed) within max bytes; false when there
 * is none. */
static bool next_field(const char *data, size_t len, size_t *pos, char stop, size_t max,
                       sw_iov_t *out)
{
    const char *end = memchr(data + *pos, stop, SW_MIN(len - *pos, max + 1));
    if (!end || end == data + *pos)
        return false;
    out->base = (char *)data + *pos;
    out->len = (size_t)(end - out->base);
    *pos += out->len + 1;
    return true;
}

/* One record at *pos as a new message; NULL when it is malformed. */
static sw_hub_msg_t *parse_record(const char *data, size_t len, size_t *pos)
{
    sw_iov_t name, seq, size;
    unsigned long long v, n;
    if (!next_field(data, len, pos, ' ', RELAY_FIELD_MAX, &name) ||
        !next_field(data, len, pos, ' ', RELAY_FIELD_MAX, &seq) ||
        !next_field(data, len, pos, '\n', RELAY_FIELD_MAX, &size))
        return NULL;
    int type = 0;
    while (type < SW_HUB_TYPE_MAX && !sw_iov_eq_cstr(name, type_names[type]))
        type++;
    bool negative = seq.base[0] == '-';
    if (negative) {
        seq.base++;
        seq.len--;
    }
    if (type == SW_HUB_TYPE_MAX || sw_iov_to_u64(seq, &v) != 0 || v > LLONG_MAX ||
        sw_iov_to_u64(size, &n) != 0 || n >= len - *pos || data[*pos + n] != '\n')
        return NULL;
    sw_hub_msg_t *m = sw_hub_msg_new(type, negative ? -(long long)v : (long long)v, data + *pos, n);
    *pos += n + 1;
    return m;
}

static void on_relay(const char *channel, size_t channel_len, const char *data, size_t len,
                     void *payload)
{
    topic_t *t = payload;
    sw_hub_t *hub = t->hub;
    size_t pos = sizeof(RELAY_MAGIC) - 1;
    sw_iov_t node;
    (void)channel;
    (void)channel_len;
    if (len < pos || memcmp(data, RELAY_MAGIC, pos) != 0 ||
        !next_field(data, len, &pos, '\n', ID_MAX, &node) || sw_iov_eq_cstr(node, hub->node))
        return;
    t->busy++; /* stays while its last watcher leaves mid-batch */
    while (pos < len && t->live) {
        sw_hub_msg_t *m = parse_record(data, len, &pos);
        if (!m)
            break;
        hub->stats.relayed_in++;
        topic_deliver(t, m);
        sw_hub_msg_unref(m);
    }
    t->busy--;
    topic_settle(t);
}

static void topic_subscribe(sw_hub_t *hub, topic_t *t)
{
    /* Beyond the client's channel limit the topic is served locally only. */
    if (hub->redis)
        t->subscribed = sw_redis_subscribe(hub->redis, t->channel, on_relay, t) == 0;
}

static void topic_unsubscribe(sw_hub_t *hub, topic_t *t)
{
    if (t->subscribed)
        sw_redis_unsubscribe(hub->redis, t->channel);
    t->subscribed = false;
}

/* ---- public ------------------------------------------------------------------------------- */

void sw_hub_publish(sw_hub_t *hub, const char *topic, sw_hub_msg_t *m)
{
    if (!hub || !topic || !m)
        return;
    bool relay = sw_redis_up(hub->redis);
    hub->stats.published++;
    topic_t *t = topic_get(hub, topic, relay);
    if (!t)
        return;
    if (relay)
        outbox_add(hub, t, m); /* first: the topic then outlives the delivery */
    topic_deliver(t, m);
}

bool sw_hub_watched(const sw_hub_t *hub, const char *topic)
{
    if (!hub || !topic)
        return false;
    const topic_t *t = topic_get((sw_hub_t *)hub, topic, false);
    return t && t->live > 0;
}

sw_hub_watcher_t *sw_hub_watch(sw_hub_t *hub, const char *topic, const sw_hub_sink_t *sink,
                               void *conn, bool held)
{
    if (!hub || !topic || !sink || !sink->send || !sink->pending || !sink->encode ||
        (unsigned)sink->enc >= SW_HUB_ENC_MAX)
        return NULL;
    topic_t *t = topic_get(hub, topic, true);
    if (!t)
        return NULL;
    sw_hub_watcher_t *w = sw_calloc(1, sizeof(*w));
    w->hub = hub;
    w->topic = t;
    w->sink = *sink;
    w->conn = conn;
    w->held = held;
    w->prev = t->tail;
    if (t->tail)
        t->tail->next = w;
    else
        t->head = w;
    t->tail = w;
    if (t->live++ == 0) {
        hub->stats.topics++;
        topic_subscribe(hub, t);
    }
    hub->stats.watchers++;
    return w;
}

void sw_hub_unwatch(sw_hub_watcher_t *w)
{
    if (!w || w->dead)
        return;
    topic_t *t = w->topic;
    sw_hub_t *hub = w->hub;
    w->dead = true;
    t->dead++;
    queue_clear(w);
    hub->stats.watchers--;
    if (--t->live == 0) {
        hub->stats.topics--;
        topic_unsubscribe(hub, t);
    }
    topic_settle(t);
}

void sw_hub_watcher_push(sw_hub_watcher_t *w, sw_hub_msg_t *m)
{
    if (!w || !m || w->dead || w->closed)
        return;
    queue_add(w, m, true);
    watcher_flush(w);
}

void sw_hub_watcher_hold(sw_hub_watcher_t *w)
{
    if (w)
        w->held = true;
}

void sw_hub_watcher_resume(sw_hub_watcher_t *w)
{
    if (!w || w->dead)
        return;
    w->held = false;
    watcher_flush(w);
}

void sw_hub_watcher_writable(sw_hub_watcher_t *w)
{
    if (w && !w->dead)
        watcher_flush(w);
}

long long sw_hub_watcher_first_seq(const sw_hub_watcher_t *w)
{
    if (!w)
        return 0;
    for (uint32_t i = 0; i < w->count; i++) {
        uint32_t j = w->head + i;
        const sw_hub_msg_t *m = w->ring[j >= w->cap ? j - w->cap : j];
        if (m->seq > 0)
            return m->seq;
    }
    return 0;
}

size_t sw_hub_watcher_queued(const sw_hub_watcher_t *w)
{
    return w ? w->count : 0;
}

void sw_hub_stats(const sw_hub_t *hub, sw_hub_stats_t *out)
{
    if (hub)
        *out = hub->stats;
    else
        memset(out, 0, sizeof(*out));
}

static bool valid_id(const char *s)
{
    size_t len = strnlen(s, ID_MAX + 1);
    if (len == 0 || len > ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return false;
    return true;
}

int sw_hub_new(sw_hub_t **out, uv_loop_t *loop, sw_redis_t *redis, const sw_hub_opts_t *opts)
{
    static const sw_hub_opts_t defaults = {0};
    if (!out || !loop)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    const char *instance = opts->instance ? opts->instance : DEFAULT_INSTANCE;
    if ((opts->node && !valid_id(opts->node)) || !valid_id(instance))
        return -EINVAL;

    sw_hub_t *hub = sw_calloc(1, sizeof(*hub));
    hub->loop = loop;
    hub->redis = redis;
    hub->queue_max_msgs = opts->queue_max_msgs ? opts->queue_max_msgs : DEFAULT_QUEUE_MSGS;
    hub->queue_max_bytes = opts->queue_max_bytes ? opts->queue_max_bytes : DEFAULT_QUEUE_BYTES;
    hub->write_window = opts->write_window ? opts->write_window : DEFAULT_WINDOW;
    if (opts->node)
        snprintf(hub->node, sizeof(hub->node), "%s", opts->node);
    else
        sw_request_id_new(hub->node); /* random: unique per process */
    hub->prefix_len =
        (size_t)snprintf(hub->prefix, sizeof(hub->prefix), "slipway:%s:live:", instance);
    hub->nbuckets = BUCKETS_MIN;
    hub->buckets = sw_calloc(hub->nbuckets, sizeof(*hub->buckets));
    uv_check_init(loop, &hub->check);
    uv_idle_init(loop, &hub->idle);
    hub->check.data = hub->idle.data = hub;
    hub->handles = 2;
    *out = hub;
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    sw_hub_t *hub = h->data;
    if (--hub->handles == 0)
        free(hub);
}

void sw_hub_free(sw_hub_t *hub)
{
    if (!hub)
        return;
    outbox_flush_all(hub);
    assert(hub->ntopics == 0 && "sw_hub_free with watchers left");
    /* Without assertions, a forgotten watcher is still released rather than leaked. */
    for (size_t b = 0; b < hub->nbuckets; b++) {
        while (hub->buckets[b]) {
            topic_t *t = hub->buckets[b];
            topic_unsubscribe(hub, t);
            while (t->head)
                watcher_free(t->head);
            topic_remove(t);
        }
    }
    free(hub->buckets);
    hub->buckets = NULL;
    uv_close((uv_handle_t *)&hub->check, handle_closed);
    uv_close((uv_handle_t *)&hub->idle, handle_closed);
}
