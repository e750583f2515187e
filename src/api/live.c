/* Live streams (DESIGN.md §6): a deployment's log and status, an app's runtime output and
 * the node's metrics, over WebSocket, Server-Sent Events or NDJSON.
 *
 * A deployment watcher never misses a line and never sees one twice. It subscribes first
 * (held: live messages queue but are not sent), replays the stored lines in pages, paced
 * by what the transport has taken, and is released once the history reaches the first held
 * line. Live lines are sent strictly in seq order: a line that skips ahead (published before
 * the watcher subscribed but not stored yet, or lost in a relay) holds the watcher while the
 * gap is read from the database, which the worker fills within its flush interval. The
 * worker stores every line before it writes the terminal status, so the `end` message is
 * held until a last catch-up with the database, and then closes the stream. A watcher that
 * falls too far behind gets a `lagged` message instead of the lines it could not take. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/hub.h"
#include "slipway/live_access.h"
#include "slipway/log.h"
#include "slipway/logread.h"
#include "slipway/sse.h"
#include "slipway/ws.h"

#define PAGE_LINES       500
#define GAP_RETRY_MS     100
#define GAP_GIVE_UP_MS   5000  /* a line still missing after this is reported as lagged */
#define POLL_MS          5000  /* status check while live: covers an `end` a relay lost */
#define KEEPALIVE_MS     30000 /* SSE comment, so proxies keep the connection */
#define APP_HISTORY_MAX  1000
#define APP_HISTORY_DEF  100
#define METRICS_EVERY_MS 1000
#define WS_PING_MS       30000 /* and a peer silent for as long again is closed */

typedef enum { LIVE_WS, LIVE_SSE, LIVE_NDJSON } transport_t;
typedef enum { TOPIC_DEPLOYMENT, TOPIC_APP, TOPIC_SYSTEM } topic_kind_t;

typedef enum {
    PHASE_REPLAY, /* history from the database; live messages held */
    PHASE_LIVE,
    PHASE_FINAL, /* the deployment ended: a last catch-up before `end` */
    PHASE_DONE
} phase_t;

typedef struct live {
    sw_api_t *api;
    transport_t transport;
    topic_kind_t kind;
    sw_ws_t *ws;
    sw_http_stream_t *st;
    sw_hub_watcher_t *w;
    char id[SW_UUID_LEN + 1];
    long long last; /* the highest seq sent */
    phase_t phase;
    unsigned refs; /* the transport, the timer, a query in flight */
    bool closed;   /* the transport is gone */
    bool querying;
    bool wait_room;   /* the next page waits for the transport to drain */
    bool lag_reset;   /* after a lagged message, the next line may skip ahead */
    bool end_ready;   /* the final catch-up is done: `end` may go */
    bool final_asked; /* a read started after the deployment ended */
    bool ending;      /* `end` was sent: finish the transport */
    bool revoked;     /* the caller lost access: nothing more is sent */
    uint64_t gap_since_ms;
    uv_timer_t timer;
    unsigned history;             /* app streams: how many stored lines to replay */
    unsigned nhist;               /* app streams: the length of hist */
    uint64_t poll_at;             /* the next status check */
    long long *hist;              /* app streams: the seqs the history replayed, sorted */
    char *failure;                /* deployments: why it failed, said before `end` */
    uint64_t keepalive_at;        /* SSE */
    sw_live_access_link_t access; /* who watches what, while it lasts */
} live_t;

static uint64_t sse_open, ndjson_open;

/* ---- lifetime ---- */

static void live_unref(live_t *l)
{
    if (--l->refs == 0) {
        free(l->hist);
        free(l->failure);
        free(l);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    live_unref(h->data);
}

static void live_closed(live_t *l)
{
    if (l->closed)
        return;
    l->closed = true;
    l->phase = PHASE_DONE;
    sw_live_access_remove(&l->access);
    if (l->w) {
        sw_hub_unwatch(l->w);
        l->w = NULL;
    }
    if (l->transport == LIVE_SSE)
        sse_open--;
    else if (l->transport == LIVE_NDJSON)
        ndjson_open--;
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    live_unref(l); /* the transport's reference */
}

static void live_finish(live_t *l)
{
    if (l->closed)
        return;
    if (l->ws)
        sw_ws_close(l->ws, 1000, "end");
    else
        sw_http_stream_end(l->st);
}

/* ---- the transport, as the hub sees it ---- */

static int sink_send(void *conn, sw_shared_t *frame)
{
    live_t *l = conn;
    if (l->closed || l->revoked)
        return -EPIPE;
    int r = l->ws ? sw_ws_send_frame(l->ws, frame) : sw_http_stream_write_shared(l->st, frame);
    if (r == 0 && l->ending)
        live_finish(l);
    return r;
}

static size_t sink_pending(const void *conn)
{
    const live_t *l = conn;
    if (l->closed)
        return 0;
    return l->ws ? sw_ws_pending(l->ws) : sw_http_stream_pending(l->st);
}

static void catch_up(live_t *l);
static void send_direct(live_t *l, sw_hub_msg_t *m);
static void send_failure(live_t *l);

/* Remembers why a deployment failed from a status message's JSON (the whole envelope, or only
 * its data), so the stream can say it in an `error` message before `end` (Mist's clients
 * read failures there). */
static void note_status(live_t *l, const char *json, size_t len, bool envelope)
{
    json_t *v = json_loadb(json, len, 0, NULL);
    json_t *data = envelope ? json_object_get(v, "data") : v;
    const char *status = json_string_value(json_object_get(data, "status"));
    if (status && strcmp(status, "failed") == 0) {
        const char *why = json_string_value(json_object_get(data, "error_message"));
        free(l->failure);
        l->failure = sw_strdup(why && *why ? why : "the deployment failed");
    }
    json_decref(v);
}

static int cmp_seq(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static bool replayed(const live_t *l, long long seq)
{
    return l->nhist && bsearch(&seq, l->hist, l->nhist, sizeof(*l->hist), cmp_seq);
}

static sw_hub_verdict_t sink_filter(void *conn, const sw_hub_msg_t *m)
{
    live_t *l = conn;
    switch (m->type) {
    case SW_HUB_LAGGED:
        if (l->kind != TOPIC_DEPLOYMENT)
            return SW_HUB_SEND;
        /* What was dropped may have been replayed from the database already (the watcher
         * was held): the next line tells whether anything is really missing. */
        l->lag_reset = true;
        return SW_HUB_SKIP;
    case SW_HUB_LOG:
        if (m->seq <= 0)
            return SW_HUB_SEND;
        if (l->kind != TOPIC_DEPLOYMENT) {
            /* An app's lines are numbered in blocks per process, so with instances on
             * several nodes they interleave: only what the history replayed is skipped. */
            return replayed(l, m->seq) ? SW_HUB_SKIP : SW_HUB_SEND;
        }
        if (m->seq <= l->last)
            return SW_HUB_SKIP;
        if (m->seq == l->last + 1) {
            l->last = m->seq;
            l->lag_reset = false;
            return SW_HUB_SEND;
        }
        if (l->lag_reset) {
            /* Lines were dropped from this watcher's queue: say how many, then go on. */
            char data[64];
            int n = snprintf(data, sizeof(data), "{\"dropped\":%lld}", m->seq - l->last - 1);
            send_direct(l, sw_hub_msg_make(SW_HUB_LAGGED, 0, data, (size_t)n));
            l->last = m->seq;
            l->lag_reset = false;
            return SW_HUB_SEND;
        }
        /* A line is missing: read it from the database before going on. */
        if (!l->gap_since_ms)
            l->gap_since_ms = uv_now(l->api->loop);
        catch_up(l);
        return SW_HUB_HOLD;
    case SW_HUB_STATUS:
        if (l->kind == TOPIC_DEPLOYMENT)
            note_status(l, m->json->data, m->json->len, true);
        return SW_HUB_SEND;
    case SW_HUB_END:
        if (l->kind != TOPIC_DEPLOYMENT)
            return SW_HUB_SKIP;
        if (!l->end_ready) {
            l->phase = PHASE_FINAL;
            catch_up(l);
            return SW_HUB_HOLD;
        }
        send_failure(l);
        l->ending = true;
        return SW_HUB_SEND;
    default:
        return SW_HUB_SEND;
    }
}

/* The hub frames nothing: each transport's encoder, run once per message and shared. */
static sw_shared_t *encode_ws(const sw_hub_msg_t *m)
{
    return sw_ws_encode_text(m->json->data, m->json->len);
}

static sw_shared_t *encode_sse(const sw_hub_msg_t *m)
{
    return sw_sse_encode(m->seq, m->json->data, m->json->len);
}

static sw_shared_t *encode_ndjson(const sw_hub_msg_t *m)
{
    return sw_ndjson_encode(m->json->data, m->json->len);
}

static const sw_hub_sink_t sinks[] = {
    [LIVE_WS] = {SW_HUB_ENC_WS, encode_ws, sink_send, sink_pending, sink_filter},
    [LIVE_SSE] = {SW_HUB_ENC_SSE, encode_sse, sink_send, sink_pending, sink_filter},
    [LIVE_NDJSON] = {SW_HUB_ENC_NDJSON, encode_ndjson, sink_send, sink_pending, sink_filter},
};

/* Sends a message straight to this watcher's transport (history and the messages made
 * here), bypassing the queue, in the transport's encoding. */
static void send_direct(live_t *l, sw_hub_msg_t *m)
{
    if (!l->closed)
        sink_send(l, sw_hub_msg_encoded(m, &sinks[l->transport]));
    sw_hub_msg_unref(m);
}

/* An error message; text is the JSON data object. */
static void send_error(live_t *l, const char *text)
{
    send_direct(l, sw_hub_msg_make(SW_HUB_ERROR, 0, text, strlen(text)));
}

/* Mist's form of a failure: {"type": "error", "data": {"message": ...}}, once, before `end`. */
static void send_failure(live_t *l)
{
    if (!l->failure)
        return;
    json_t *data = json_pack("{s:s}", "message", l->failure);
    char *text = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    free(l->failure);
    l->failure = NULL;
    if (text)
        send_error(l, text);
    free(text);
}

static void send_end(live_t *l)
{
    send_failure(l);
    l->ending = true;
    send_direct(l, sw_hub_msg_make(SW_HUB_END, 0, "{}", 2));
    if (!l->closed && l->phase != PHASE_DONE)
        live_finish(l);
    l->phase = PHASE_DONE;
}

/* A query of the watcher's came back: false if nobody is left to tell. */
static bool query_done(live_t *l)
{
    l->querying = false;
    bool gone = l->closed || l->revoked;
    live_unref(l); /* the query's reference; the transport's still holds it if not gone */
    return !gone;
}

/* ---- deployments: history, gaps and the end ---- */

static void on_status(int status, sw_pg_result_t *res, void *payload);

static void query_status(live_t *l)
{
    const char *params[] = {l->id};
    l->refs++;
    l->querying = true;
    sw_pg_query(l->api->pg,
                "SELECT status IN ('success', 'failed', 'cancelled', 'rolled_back'), "
                "json_build_object('deployment_id', id, 'status', status, 'stage', stage, "
                "'progress', progress, 'message', NULL, "
                "'error_message', nullif(error_message, ''))::text "
                "FROM deployments WHERE id = $1",
                1, params, on_status, l);
}

/* The caught-up point: what to do once the database has nothing more to give. */
static void caught_up(live_t *l)
{
    uint64_t now = uv_now(l->api->loop);
    switch (l->phase) {
    case PHASE_FINAL:
        if (!l->final_asked) {
            /* The last read must start after the end was known, or it may miss lines. */
            catch_up(l);
            return;
        }
        if (!l->w) {
            send_end(l); /* terminal before the watcher came: no live `end` will */
            return;
        }
        l->end_ready = true;
        sw_hub_watcher_resume(l->w);
        return;
    case PHASE_REPLAY:
    case PHASE_LIVE: {
        long long first = sw_hub_watcher_first_seq(l->w);
        if (first == 0 || first <= l->last + 1 || l->lag_reset) {
            l->phase = PHASE_LIVE;
            l->gap_since_ms = 0;
            sw_hub_watcher_resume(l->w);
            return;
        }
        if (l->gap_since_ms && now - l->gap_since_ms >= GAP_GIVE_UP_MS) {
            /* Not stored after all this time: say so rather than wait forever. */
            char data[64];
            int n = snprintf(data, sizeof(data), "{\"dropped\":%lld}", first - l->last - 1);
            send_direct(l, sw_hub_msg_make(SW_HUB_LAGGED, 0, data, (size_t)n));
            l->last = first - 1;
            l->gap_since_ms = 0;
            l->phase = PHASE_LIVE;
            sw_hub_watcher_resume(l->w);
            return;
        }
        if (!l->gap_since_ms)
            l->gap_since_ms = now;
        return; /* the timer asks again in GAP_RETRY_MS */
    }
    default:
        return;
    }
}

static void on_lines(int status, sw_pg_result_t *res, void *payload)
{
    live_t *l = payload;
    if (!query_done(l))
        return;
    if (status != 0) {
        send_error(l, "{\"message\":\"the log store is unavailable\"}");
        live_finish(l);
        return;
    }
    int rows = sw_pg_result_rows(res);
    for (int i = 0; i < rows && !l->closed; i++) {
        long long seq = atoll(sw_pg_result_value(res, i, 0));
        const char *text = sw_pg_result_value(res, i, 1);
        if (seq <= l->last)
            continue;
        send_direct(l, sw_hub_msg_new(SW_HUB_LOG, seq, text, strlen(text)));
        l->last = seq;
    }
    if (l->closed)
        return;
    if (rows == PAGE_LINES) {
        /* More stored: the next page once the transport has taken this one. */
        if (sink_pending(l) > SW_HTTP_STREAM_LOW_WATER * 4)
            l->wait_room = true;
        else
            catch_up(l);
        return;
    }
    caught_up(l);
}

static void catch_up(live_t *l)
{
    if (l->querying || l->closed || l->revoked)
        return;
    char after[24], limit[16];
    snprintf(after, sizeof(after), "%lld", l->last);
    snprintf(limit, sizeof(limit), "%d", PAGE_LINES);
    const char *params[] = {l->id, after, limit};
    l->refs++;
    l->querying = true;
    if (l->phase == PHASE_FINAL)
        l->final_asked = true;
    sw_pg_query(l->api->pg,
                "SELECT (e->>'seq')::bigint AS seq, json_build_object('type', 'log', "
                "'timestamp', e->'timestamp', 'data', e)::text "
                "FROM deployment_log_chunks c, jsonb_array_elements(c.lines) e "
                "WHERE c.deployment_id = $1 AND c.last_seq > $2::bigint "
                "AND (e->>'seq')::bigint > $2::bigint ORDER BY seq LIMIT $3::int",
                3, params, on_lines, l);
}

static void on_status(int status, sw_pg_result_t *res, void *payload)
{
    live_t *l = payload;
    if (!query_done(l))
        return;
    if (status != 0 || sw_pg_result_rows(res) != 1) {
        if (l->phase == PHASE_REPLAY) {
            send_error(l, "{\"message\":\"the deployment is unavailable\"}");
            live_finish(l);
        }
        return;
    }
    bool terminal = sw_pg_result_value(res, 0, 0)[0] == 't';
    const char *data = sw_pg_result_value(res, 0, 1);
    if (l->phase == PHASE_FINAL) {
        catch_up(l); /* the end came while this poll was in flight */
        return;
    }
    if (l->phase == PHASE_REPLAY) {
        note_status(l, data, strlen(data), false);
        send_direct(l, sw_hub_msg_make(SW_HUB_STATUS, 0, data, strlen(data)));
        if (terminal) {
            /* Nothing more will happen: the stored lines, then the end. */
            sw_hub_unwatch(l->w);
            l->w = NULL;
            l->phase = PHASE_FINAL;
        }
        catch_up(l);
        return;
    }
    if (terminal && l->phase == PHASE_LIVE && sw_hub_watcher_queued(l->w) == 0) {
        /* Ended, and nothing queued for this watcher: the end never came live (a relay was
         * down), so finish from the database. A watcher with a backlog has its end in it. */
        l->phase = PHASE_FINAL;
        sw_hub_unwatch(l->w);
        l->w = NULL;
        note_status(l, data, strlen(data), false);
        send_direct(l, sw_hub_msg_make(SW_HUB_STATUS, 0, data, strlen(data)));
        catch_up(l);
    }
}

/* ---- app runtime logs: the last lines from the worker's ring in Redis ---- */

static void on_app_history(int status, const sw_iov_t *lines, size_t n, void *payload)
{
    live_t *l = payload;
    if (!query_done(l))
        return;
    if (status == 0) {
        for (size_t i = 0; i < n && !l->closed; i++) {
            json_error_t jerr;
            json_t *line = json_loadb(lines[i].base, lines[i].len, 0, &jerr);
            if (!line)
                continue;
            long long seq = json_integer_value(json_object_get(line, "seq"));
            const char *ts = json_string_value(json_object_get(line, "timestamp"));
            json_t *msg = json_pack("{s:s, s:s, s:O}", "type", "log", "timestamp", ts ? ts : "",
                                    "data", line);
            char *text = json_dumps(msg, JSON_COMPACT);
            if (text) {
                send_direct(l, sw_hub_msg_new(SW_HUB_LOG, seq, text, strlen(text)));
                if (!l->hist)
                    l->hist = sw_malloc(n * sizeof(*l->hist));
                l->hist[l->nhist++] = seq;
            }
            free(text);
            json_decref(msg);
            json_decref(line);
        }
    }
    if (l->nhist)
        qsort(l->hist, l->nhist, sizeof(*l->hist), cmp_seq);
    l->phase = PHASE_LIVE;
    sw_hub_watcher_resume(l->w);
}

static void app_history(live_t *l)
{
    l->refs++;
    l->querying = true;
    if (l->history == 0 ||
        sw_logread_app(l->api->redis, l->id, l->history, on_app_history, l) != 0) {
        l->querying = false;
        live_unref(l);
        l->phase = PHASE_LIVE;
        sw_hub_watcher_resume(l->w);
    }
}

/* ---- the timer: gap retries, status polls, SSE keepalives ---- */

static void on_live_timer(uv_timer_t *t)
{
    live_t *l = t->data;
    if (l->closed || l->revoked)
        return;
    uint64_t now = uv_now(l->api->loop);
    if (l->transport == LIVE_SSE && now >= l->keepalive_at) {
        l->keepalive_at = now + KEEPALIVE_MS;
        if (sw_http_stream_pending(l->st) == 0)
            sw_http_stream_write(l->st, ":\n\n", 3);
    }
    if (l->kind != TOPIC_DEPLOYMENT || l->querying)
        return;
    if ((l->gap_since_ms || (l->phase == PHASE_FINAL && !l->end_ready)) && !l->wait_room)
        catch_up(l); /* also retries a catch-up that found a query in flight */
    else if (l->phase == PHASE_LIVE && now >= l->poll_at) {
        l->poll_at = now + POLL_MS;
        query_status(l);
    }
}

/* ---- access lost: a revoked credential, a removed member, an expired session ---- */

/* Closes the stream as REST would now refuse it: WebSocket code 1008 (policy violation); SSE
 * and NDJSON get an error message and the end of the body. */
static void on_revoked(sw_live_access_link_t *link)
{
    live_t *l = sw_container_of(link, live_t, access);
    if (l->closed || l->revoked)
        return;
    if (l->w) {
        sw_hub_unwatch(l->w);
        l->w = NULL;
    }
    l->phase = PHASE_DONE;
    if (l->ws) {
        l->revoked = true;
        sw_ws_close(l->ws, 1008, "access revoked");
        return;
    }
    send_error(l, "{\"message\":\"access revoked: the credential or the membership is gone\"}");
    l->revoked = true;
    if (!l->closed)
        sw_http_stream_end(l->st);
}

/* ---- transports ---- */

static void on_room(live_t *l)
{
    if (l->closed || l->revoked)
        return;
    if (l->wait_room) {
        l->wait_room = false;
        catch_up(l);
    }
    if (l->w)
        sw_hub_watcher_writable(l->w);
}

static void ws_on_message(sw_ws_t *ws, bool text, const char *data, size_t len, void *ud)
{
    (void)ws;
    (void)text;
    (void)data;
    (void)len;
    (void)ud; /* watchers have nothing to say; their frames only prove they are alive */
}

static void ws_on_writable(sw_ws_t *ws, void *ud)
{
    (void)ws;
    on_room(ud);
}

static void ws_on_close(sw_ws_t *ws, uint16_t code, void *ud)
{
    (void)ws;
    (void)code;
    live_closed(ud);
}

static const sw_ws_cbs_t ws_cbs = {
    .on_message = ws_on_message,
    .on_writable = ws_on_writable,
    .on_close = ws_on_close,
};

static void st_on_writable(sw_http_stream_t *st, void *ud)
{
    (void)st;
    on_room(ud);
}

static void st_on_shutdown(sw_http_stream_t *st, void *ud)
{
    live_t *l = ud;
    (void)st;
    if (l->closed || l->revoked)
        return;
    /* A clean end of the body would look like a finished stream: say why it stops. */
    send_error(l, "{\"message\":\"the server is shutting down; reconnect\"}");
    sw_http_stream_end(l->st);
}

static void st_on_close(sw_http_stream_t *st, void *ud)
{
    (void)st;
    live_closed(ud);
}

static const sw_http_stream_cbs_t stream_cbs = {
    .on_writable = st_on_writable,
    .on_shutdown = st_on_shutdown,
    .on_close = st_on_close,
};

static bool accepts(sw_http_req_t *req, const char *type)
{
    sw_iov_t accept = sw_http_req_header(req, "accept");
    return accept.len && memmem(accept.base, accept.len, type, strlen(type)) != NULL;
}

/* Opens the transport the client asked for and subscribes, held. NULL after answering. */
static live_t *live_open(sw_api_t *api, sw_http_req_t *req, topic_kind_t kind, const char *id,
                         bool ndjson_only)
{
    if (!api->hub) {
        sw_http_add_header(req, "Retry-After", "1");
        sw_http_respond_error(req, 503, NULL, "live streams are starting up", NULL);
        return NULL;
    }
    live_t *l = sw_calloc(1, sizeof(*l));
    l->api = api;
    l->kind = kind;
    snprintf(l->id, sizeof(l->id), "%s", id);
    /* Needed only to subscribe: not kept, so an idle watcher stays small. The node's id may
     * be longer than l->id, and on_metrics_timer publishes under the whole of it. */
    char topic[200];
    snprintf(topic, sizeof(topic), "%s:%s",
             kind == TOPIC_DEPLOYMENT ? "deployment"
             : kind == TOPIC_APP      ? "app"
                                      : "system",
             id);
    l->transport = ndjson_only                         ? LIVE_NDJSON
                   : sw_ws_requested(req)              ? LIVE_WS
                   : accepts(req, "text/event-stream") ? LIVE_SSE
                                                       : LIVE_NDJSON;
    if (l->transport == LIVE_WS) {
        sw_ws_opts_t o = {
            .max_message = 64 * 1024,
            .ping_interval_ms = WS_PING_MS,
            .pong_timeout_ms = WS_PING_MS,
            .close_timeout_ms = 5000,
        };
        l->ws = sw_ws_accept(req, &o, &ws_cbs, l);
        if (!l->ws) {
            free(l);
            return NULL;
        }
    } else {
        bool sse = l->transport == LIVE_SSE;
        sw_http_add_header(req, "Cache-Control", "no-cache");
        sw_http_add_header(req, "X-Accel-Buffering", "no");
        l->st = sw_http_stream_open(req, 200, sse ? "text/event-stream" : "application/x-ndjson",
                                    SW_HTTP_STREAM_CHUNKED, &stream_cbs, l);
        if (!l->st) {
            free(l);
            return NULL;
        }
        if (sse) {
            sse_open++;
            sw_http_stream_write(l->st, "retry: 2000\n\n", 13);
        } else {
            ndjson_open++;
        }
    }
    l->refs = 2; /* the transport and the timer */
    uv_timer_init(api->loop, &l->timer);
    l->timer.data = l;
    l->keepalive_at = uv_now(api->loop) + KEEPALIVE_MS;
    l->poll_at = uv_now(api->loop) + POLL_MS;
    uv_timer_start(&l->timer, on_live_timer, GAP_RETRY_MS, GAP_RETRY_MS);
    l->w = sw_hub_watch(api->hub, topic, &sinks[l->transport], l, true);
    if (!api->live_access)
        api->live_access = sw_live_access_new(api, on_revoked);
    sw_api_req_t *ctx = sw_api_req(req);
    const sw_route_t *route = req->route;
    sw_live_access_add(api->live_access, &l->access, &ctx->principal, ctx->project_id,
                       &route->access);
    return l;
}

/* Where a reconnecting watcher left off: Last-Event-ID (SSE) or ?since_seq=. */
static bool resume_point(sw_http_req_t *req, long long *out)
{
    unsigned long long v = 0;
    sw_iov_t last = sw_http_req_header(req, "last-event-id");
    const char *since = sw_http_req_query(req, "since_seq");
    if (last.len && sw_iov_to_u64(last, &v) == 0 && v <= LLONG_MAX) {
        *out = (long long)v;
        return true;
    }
    if (since && (sw_iov_to_u64(sw_iov_from_cstr(since), &v) != 0 || v > LLONG_MAX)) {
        sw_json_errors_t e;
        sw_json_errors_init(&e);
        sw_json_errors_add(&e, "since_seq", "must be a whole number");
        sw_api_validation_error(req, &e);
        return false;
    }
    *out = (long long)v;
    return true;
}

static void on_tail_start(int status, sw_pg_result_t *res, void *payload)
{
    live_t *l = payload;
    if (!query_done(l))
        return;
    if (status != 0 || sw_pg_result_rows(res) != 1) {
        send_error(l, "{\"message\":\"the log store is unavailable\"}");
        live_finish(l);
        return;
    }
    l->last = atoll(sw_pg_result_value(res, 0, 0));
    query_status(l);
}

/* Follows from the `tail`-th last stored line: the watcher is already subscribed (held), so
 * a line stored after this read is replayed or comes live, never lost. */
static void tail_start(live_t *l, unsigned tail)
{
    char n[16];
    snprintf(n, sizeof(n), "%u", tail);
    const char *params[] = {l->id, n};
    l->refs++;
    l->querying = true;
    sw_pg_query(l->api->pg,
                "SELECT coalesce(min(seq) - 1, 0) FROM (SELECT (e->>'seq')::bigint AS seq "
                "FROM deployment_log_chunks c, jsonb_array_elements(c.lines) e "
                "WHERE c.deployment_id = $1 ORDER BY seq DESC LIMIT $2::int) t",
                2, params, on_tail_start, l);
}

/* tail: replay only the last `tail` stored lines (0: all); a resume point wins over it. */
static void deployment_stream(sw_http_req_t *req, sw_api_t *api, bool ndjson_only, unsigned tail)
{
    long long since;
    if (!resume_point(req, &since))
        return;
    bool resuming = since > 0 || sw_http_req_query(req, "since_seq");
    char id[SW_UUID_LEN + 1];
    sw_iov_t p = sw_http_req_param(req, "id");
    snprintf(id, sizeof(id), "%.*s", (int)p.len, p.base);
    live_t *l = live_open(api, req, TOPIC_DEPLOYMENT, id, ndjson_only);
    if (!l)
        return;
    l->last = since;
    if (tail && !resuming)
        tail_start(l, tail);
    else
        query_status(l);
}

void sw_api_deployments_stream(sw_http_req_t *req, void *ctx)
{
    deployment_stream(req, ctx, false, 0);
}

void sw_api_deployments_follow(sw_http_req_t *req, void *ctx, unsigned tail)
{
    deployment_stream(req, ctx, true, tail);
}

void sw_api_apps_logs_stream(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    unsigned long long lines = APP_HISTORY_DEF;
    const char *v = sw_http_req_query(req, "lines");
    if (v && (sw_iov_to_u64(sw_iov_from_cstr(v), &lines) != 0 || lines > APP_HISTORY_MAX)) {
        sw_json_errors_t e;
        sw_json_errors_init(&e);
        sw_json_errors_add(&e, "lines", "must be a whole number from 0 to %d", APP_HISTORY_MAX);
        sw_api_validation_error(req, &e);
        return;
    }
    char id[SW_UUID_LEN + 1];
    sw_iov_t p = sw_http_req_param(req, "id");
    snprintf(id, sizeof(id), "%.*s", (int)p.len, p.base);
    live_t *l = live_open(api, req, TOPIC_APP, id, false);
    if (!l)
        return;
    l->history = (unsigned)lines;
    app_history(l);
}

/* ---- node metrics, sampled from /proc only while someone watches ---- */

void sw_api_system_metrics_json(sw_api_t *api, sw_buf_t *out)
{
    api->load_json(out, api->load_payload);
}

static void on_metrics_timer(uv_timer_t *t)
{
    sw_api_t *api = t->data;
    char topic[200];
    snprintf(topic, sizeof(topic), "system:%s", api->node);
    if (!api->hub || !sw_hub_watched(api->hub, topic)) {
        uv_timer_stop(t);
        return;
    }
    sw_buf_t data = SW_BUF_INIT;
    sw_api_system_metrics_json(api, &data);
    sw_hub_msg_t *m = sw_hub_msg_make(SW_HUB_METRICS, 0, data.base, data.len);
    sw_hub_publish(api->hub, topic, m);
    sw_hub_msg_unref(m);
    sw_buf_free(&data);
}

void sw_api_system_metrics_stream(sw_http_req_t *req, void *ctx)
{
    sw_api_t *api = ctx;
    live_t *l = live_open(api, req, TOPIC_SYSTEM, api->node, false);
    if (!l)
        return;
    l->phase = PHASE_LIVE;
    sw_hub_watcher_resume(l->w);
    if (!uv_is_active((uv_handle_t *)&api->metrics_timer)) {
        on_metrics_timer(&api->metrics_timer); /* the first sample now, the rates a second on */
        uv_timer_start(&api->metrics_timer, on_metrics_timer, METRICS_EVERY_MS, METRICS_EVERY_MS);
    }
}

/* ---- metrics ---- */

void sw_api_live_metrics(sw_buf_t *out, void *payload)
{
    sw_api_t *api = payload;
    sw_hub_stats_t hs = {0};
    sw_ws_stats_t ws = {0};
    sw_live_access_stats_t as;
    if (api->hub)
        sw_hub_stats(api->hub, &hs);
    sw_ws_stats(&ws);
    sw_live_access_stats(api->live_access, &as);
    sw_buf_printf(out,
                  "# HELP slipway_ws_connections Open WebSocket connections.\n"
                  "# TYPE slipway_ws_connections gauge\n"
                  "slipway_ws_connections %llu\n"
                  "# HELP slipway_ws_messages_sent_total Live messages written to WebSocket "
                  "watchers.\n"
                  "# TYPE slipway_ws_messages_sent_total counter\n"
                  "slipway_ws_messages_sent_total %llu\n"
                  "# HELP slipway_ws_messages_dropped_total Live messages dropped from slow "
                  "WebSocket watchers' queues.\n"
                  "# TYPE slipway_ws_messages_dropped_total counter\n"
                  "slipway_ws_messages_dropped_total %llu\n"
                  "# HELP slipway_sse_connections Open Server-Sent Events streams.\n"
                  "# TYPE slipway_sse_connections gauge\n"
                  "slipway_sse_connections %llu\n"
                  "# HELP slipway_sse_messages_sent_total Live messages written to SSE "
                  "watchers.\n"
                  "# TYPE slipway_sse_messages_sent_total counter\n"
                  "slipway_sse_messages_sent_total %llu\n"
                  "# HELP slipway_sse_messages_dropped_total Live messages dropped from slow SSE "
                  "watchers' queues.\n"
                  "# TYPE slipway_sse_messages_dropped_total counter\n"
                  "slipway_sse_messages_dropped_total %llu\n"
                  "# HELP slipway_ndjson_streams Open NDJSON log follows.\n"
                  "# TYPE slipway_ndjson_streams gauge\n"
                  "slipway_ndjson_streams %llu\n"
                  "# HELP slipway_live_watchers Watchers subscribed to live topics.\n"
                  "# TYPE slipway_live_watchers gauge\n"
                  "slipway_live_watchers %llu\n"
                  "# HELP slipway_live_relayed_total Live messages received from other "
                  "processes.\n"
                  "# TYPE slipway_live_relayed_total counter\n"
                  "slipway_live_relayed_total %llu\n"
                  "# HELP slipway_live_access_checks_total Queries that checked open streams' "
                  "access again after a revocation, a membership change or an expiry.\n"
                  "# TYPE slipway_live_access_checks_total counter\n"
                  "slipway_live_access_checks_total %llu\n"
                  "# HELP slipway_live_revoked_total Streams closed because their caller lost "
                  "access.\n"
                  "# TYPE slipway_live_revoked_total counter\n"
                  "slipway_live_revoked_total %llu\n",
                  (unsigned long long)ws.connections, (unsigned long long)hs.sent[SW_HUB_ENC_WS],
                  (unsigned long long)hs.dropped[SW_HUB_ENC_WS], (unsigned long long)sse_open,
                  (unsigned long long)hs.sent[SW_HUB_ENC_SSE],
                  (unsigned long long)hs.dropped[SW_HUB_ENC_SSE], (unsigned long long)ndjson_open,
                  (unsigned long long)hs.watchers, (unsigned long long)hs.relayed_in,
                  (unsigned long long)as.checks, (unsigned long long)as.revoked);
}
