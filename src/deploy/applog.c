/* App runtime logs.
 *
 * Numbers come from a Redis counter per app, taken in blocks (INCRBY), so they keep rising
 * across worker restarts and cost one command per few thousand lines. A line that arrives
 * while no number is at hand waits (bounded) for the next block. Numbered lines are
 * published at once and collected for the app's list, which gets one RPUSH + LTRIM at most
 * every 100 ms; collected lines beyond the cap would be trimmed anyway and are never sent. */
#include "slipway/applog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/queue.h"
#include "slipway/utf8.h"

#define FLUSH_MS       100
#define SEQ_BLOCK      4096
#define RETRY_MS       1000
#define WAIT_MAX_LINES 1000               /* lines waiting for a number, per app */
#define STORE_MAX      (4u * 1024 * 1024) /* bytes collected for the list, per app */

typedef struct wline wline_t;
struct wline {
    wline_t *next;
    char stream[8];
    char instance[40];
    uint64_t wall_ms;
    size_t len;
    char line[];
};

typedef struct app app_t;
struct app {
    app_t *next;
    sw_applogs_t *l;
    char app_id[40];
    char key[160];
    char seq_key[168];
    long long seq, seq_end;     /* numbers seq+1 .. seq_end are ours */
    long long next_lo, next_hi; /* a block taken ahead (0: none) */
    bool reserving;
    uint64_t retry_at;
    wline_t *whead, *wtail; /* waiting for a number */
    size_t nwait;
    unsigned long long dropped;
    sw_buf_t store; /* JSON elements back to back */
    size_t *offs;   /* where each starts in store */
    size_t nstore, offs_cap;
    bool storing;
    uv_timer_t timer;
};

struct sw_applogs {
    uv_loop_t *loop;
    sw_redis_t *redis;
    sw_hub_t *hub;
    uint32_t max_lines;
    app_t *apps;
    bool closing;
    unsigned inflight; /* Redis commands not answered yet */
    unsigned closes;
    void (*on_closed)(void *payload);
    void *closed_payload;
};

static void maybe_closed(sw_applogs_t *l);

void sw_applogs_publish(sw_hub_t *hub, const char *topic, sw_hub_type_t type, long long seq,
                        const char *data, size_t len)
{
    if (!hub)
        return;
    sw_hub_msg_t *m = sw_hub_msg_make(type, seq, data, len);
    sw_hub_publish(hub, topic, m);
    sw_hub_msg_unref(m);
}

sw_applogs_t *sw_applogs_new(const sw_applogs_opts_t *opts)
{
    sw_applogs_t *l = sw_calloc(1, sizeof(*l));
    l->loop = opts->loop;
    l->redis = opts->redis;
    l->hub = opts->hub;
    l->max_lines = opts->max_lines ? opts->max_lines : 1000;
    return l;
}

/* ---- the list: batches ---- */

static void flush(app_t *a);

static void on_flush_timer(uv_timer_t *t)
{
    flush(t->data);
}

static void schedule(app_t *a)
{
    if (a->l->closing) {
        flush(a);
        return;
    }
    if (a->nstore && !a->storing && !uv_is_active((uv_handle_t *)&a->timer))
        uv_timer_start(&a->timer, on_flush_timer, FLUSH_MS, 0);
}

static void on_stored(int status, const sw_redis_reply_t *reply, void *payload)
{
    app_t *a = payload;
    (void)status;
    (void)reply; /* a lost batch is lost: the ring is best effort, the stream goes on */
    a->storing = false;
    a->l->inflight--;
    schedule(a);
    maybe_closed(a->l);
}

static void on_trimmed(int status, const sw_redis_reply_t *reply, void *payload)
{
    sw_applogs_t *l = payload;
    (void)status;
    (void)reply;
    l->inflight--;
    maybe_closed(l);
}

static void store_reset(app_t *a)
{
    sw_buf_reset(&a->store);
    a->nstore = 0;
}

static void flush(app_t *a)
{
    sw_applogs_t *l = a->l;
    if (a->storing || a->nstore == 0)
        return;
    uv_timer_stop(&a->timer);
    size_t first = a->nstore > l->max_lines ? a->nstore - l->max_lines : 0;
    size_t n = a->nstore - first;
    const char **argv = sw_calloc(n + 2, sizeof(char *));
    size_t *lens = sw_calloc(n + 2, sizeof(size_t));
    argv[0] = "RPUSH";
    lens[0] = 5;
    argv[1] = a->key;
    lens[1] = strlen(a->key);
    for (size_t i = 0; i < n; i++) {
        size_t k = first + i;
        size_t end = k + 1 < a->nstore ? a->offs[k + 1] : a->store.len;
        argv[2 + i] = a->store.base + a->offs[k];
        lens[2 + i] = end - a->offs[k];
    }
    a->storing = true;
    l->inflight++;
    if (sw_redis_command(l->redis, on_stored, a, (int)(n + 2), argv, lens) != 0) {
        a->storing = false;
        l->inflight--;
    } else {
        char keep[24];
        snprintf(keep, sizeof(keep), "-%u", l->max_lines);
        const char *trim[] = {"LTRIM", a->key, keep, "-1"};
        size_t tl[] = {5, strlen(a->key), strlen(keep), 2};
        l->inflight++;
        if (sw_redis_command(l->redis, on_trimmed, l, 4, trim, tl) != 0)
            l->inflight--;
    }
    free(argv);
    free(lens);
    store_reset(a);
}

/* Keeps the newest lines when the list cannot be written as fast as lines come. */
static void store_bound(app_t *a)
{
    if (a->store.len <= STORE_MAX && a->nstore <= 2 * (size_t)a->l->max_lines)
        return;
    size_t drop = 0;
    while (drop < a->nstore &&
           (a->nstore - drop > a->l->max_lines || a->store.len - a->offs[drop] > STORE_MAX / 2))
        drop++;
    if (drop == a->nstore) {
        store_reset(a);
        return;
    }
    size_t base = a->offs[drop];
    sw_buf_consume(&a->store, base);
    for (size_t i = drop; i < a->nstore; i++)
        a->offs[i - drop] = a->offs[i] - base;
    a->nstore -= drop;
}

static void store_push(app_t *a, const char *json, size_t len)
{
    if (a->nstore == a->offs_cap) {
        a->offs_cap = a->offs_cap ? a->offs_cap * 2 : 64;
        a->offs = sw_realloc(a->offs, a->offs_cap * sizeof(size_t));
    }
    a->offs[a->nstore++] = a->store.len;
    sw_buf_append(&a->store, json, len);
    store_bound(a);
}

/* ---- numbering ---- */

static bool take_seq(app_t *a, long long *out)
{
    if (a->seq >= a->seq_end && a->next_hi) {
        a->seq = a->next_lo - 1;
        a->seq_end = a->next_hi;
        a->next_lo = a->next_hi = 0;
    }
    if (a->seq >= a->seq_end)
        return false;
    *out = ++a->seq;
    return true;
}

static void emit(app_t *a, long long seq, const char *stream, const char *instance,
                 uint64_t wall_ms, const char *line, size_t len)
{
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_printf(&b, "{\"seq\":%lld,\"stream\":\"%s\",\"line\":\"", seq, stream);
    sw_utf8_append_json(&b, line, len); /* Redis keeps bytes, but watchers take UTF-8 only */
    sw_buf_append_cstr(&b, "\",\"instance\":\"");
    sw_buf_append_json_str(&b, instance, strlen(instance));
    sw_buf_append_char(&b, '"');
    if (a->l->hub) {
        char topic[64];
        snprintf(topic, sizeof(topic), "app:%s", a->app_id);
        size_t at = b.len;
        sw_buf_append_char(&b, '}');
        sw_applogs_publish(a->l->hub, topic, SW_HUB_LOG, seq, b.base, b.len);
        b.len = at;
        b.base[at] = '\0';
    }
    char ts[40];
    sw_time_rfc3339(ts, sizeof(ts), wall_ms);
    sw_buf_printf(&b, ",\"timestamp\":\"%s\"}", ts);
    store_push(a, b.base, b.len);
    sw_buf_free(&b);
    schedule(a);
}

static void reserve(app_t *a);

/* Numbers and sends the waiting lines while numbers last. */
static void drain_waiting(app_t *a)
{
    long long seq;
    if (a->dropped && take_seq(a, &seq)) {
        char msg[128];
        int n = snprintf(msg, sizeof(msg), "%llu lines dropped while Redis was unavailable",
                         a->dropped);
        a->dropped = 0;
        emit(a, seq, "system", "slipwayd", sw_wall_ms(), msg, (size_t)n);
    }
    while (a->whead && take_seq(a, &seq)) {
        wline_t *w = a->whead;
        a->whead = w->next;
        if (!a->whead)
            a->wtail = NULL;
        a->nwait--;
        emit(a, seq, w->stream, w->instance, w->wall_ms, w->line, w->len);
        free(w);
    }
    reserve(a);
}

static void on_reserved(int status, const sw_redis_reply_t *reply, void *payload)
{
    app_t *a = payload;
    a->reserving = false;
    a->l->inflight--;
    if (status == 0 && reply && reply->type == SW_REDIS_INTEGER && reply->integer >= SEQ_BLOCK) {
        long long hi = reply->integer, lo = hi - SEQ_BLOCK + 1;
        if (a->seq >= a->seq_end) {
            a->seq = lo - 1;
            a->seq_end = hi;
        } else {
            a->next_lo = lo;
            a->next_hi = hi;
        }
        if (!a->l->closing)
            drain_waiting(a);
    } else {
        a->retry_at = uv_now(a->l->loop) + RETRY_MS;
    }
    maybe_closed(a->l);
}

/* Takes the next block once less than half of this one is left. */
static void reserve(app_t *a)
{
    sw_applogs_t *l = a->l;
    if (a->reserving || a->next_hi || l->closing || a->seq_end - a->seq >= SEQ_BLOCK / 2 ||
        uv_now(l->loop) < a->retry_at)
        return;
    char by[16];
    snprintf(by, sizeof(by), "%d", SEQ_BLOCK);
    const char *argv[] = {"INCRBY", a->seq_key, by};
    size_t lens[] = {6, strlen(a->seq_key), strlen(by)};
    a->reserving = true;
    l->inflight++;
    if (sw_redis_command(l->redis, on_reserved, a, 3, argv, lens) != 0) {
        a->reserving = false;
        l->inflight--;
        a->retry_at = uv_now(l->loop) + RETRY_MS;
    }
}

static app_t *app_find(sw_applogs_t *l, const char *app_id)
{
    for (app_t *a = l->apps; a; a = a->next)
        if (strcmp(a->app_id, app_id) == 0)
            return a;
    char key[160];
    sw_queue_applog_key(app_id, key, sizeof(key));
    if (!key[0])
        return NULL;
    app_t *a = sw_calloc(1, sizeof(*a));
    a->l = l;
    snprintf(a->app_id, sizeof(a->app_id), "%s", app_id);
    snprintf(a->key, sizeof(a->key), "%s", key);
    snprintf(a->seq_key, sizeof(a->seq_key), "%s:seq", key);
    uv_timer_init(l->loop, &a->timer);
    a->timer.data = a;
    a->next = l->apps;
    l->apps = a;
    return a;
}

void sw_applogs_line(sw_applogs_t *l, const char *app_id, const char *stream, const char *instance,
                     const char *line, size_t len)
{
    if (l->closing)
        return;
    app_t *a = app_find(l, app_id);
    if (!a)
        return;
    long long seq;
    if (!a->whead && take_seq(a, &seq)) {
        emit(a, seq, stream, instance, sw_wall_ms(), line, len);
        reserve(a);
        return;
    }
    if (a->nwait >= WAIT_MAX_LINES) {
        wline_t *old = a->whead;
        a->whead = old->next;
        if (!a->whead)
            a->wtail = NULL;
        a->nwait--;
        a->dropped++;
        free(old);
    }
    wline_t *w = sw_malloc(sizeof(*w) + len + 1);
    w->next = NULL;
    snprintf(w->stream, sizeof(w->stream), "%s", stream);
    snprintf(w->instance, sizeof(w->instance), "%s", instance);
    w->wall_ms = sw_wall_ms();
    w->len = len;
    memcpy(w->line, line, len);
    w->line[len] = '\0';
    if (a->wtail)
        a->wtail->next = w;
    else
        a->whead = w;
    a->wtail = w;
    a->nwait++;
    reserve(a);
}

/* ---- closing ---- */

static void on_timer_closed(uv_handle_t *h)
{
    app_t *a = h->data;
    sw_applogs_t *l = a->l;
    while (a->whead) {
        wline_t *w = a->whead;
        a->whead = w->next;
        free(w);
    }
    sw_buf_free(&a->store);
    free(a->offs);
    free(a);
    if (--l->closes == 0) {
        void (*cb)(void *) = l->on_closed;
        void *payload = l->closed_payload;
        free(l);
        if (cb)
            cb(payload);
    }
}

static void maybe_closed(sw_applogs_t *l)
{
    if (!l->closing || l->inflight || l->closes)
        return;
    for (app_t *a = l->apps; a; a = a->next)
        if (a->nstore)
            return; /* its batch goes out when the one in flight is answered */
    if (!l->apps) {
        void (*cb)(void *) = l->on_closed;
        void *payload = l->closed_payload;
        free(l);
        if (cb)
            cb(payload);
        return;
    }
    for (app_t *a = l->apps; a; a = a->next)
        l->closes++;
    for (app_t *a = l->apps, *next; a; a = next) {
        next = a->next;
        uv_close((uv_handle_t *)&a->timer, on_timer_closed);
    }
}

void sw_applogs_close(sw_applogs_t *l, void (*on_closed)(void *payload), void *payload)
{
    l->closing = true;
    l->on_closed = on_closed;
    l->closed_payload = payload;
    for (app_t *a = l->apps; a; a = a->next)
        flush(a);
    maybe_closed(l);
}
