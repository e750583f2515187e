/* Tests for src/live/hub.c. The transport is the test's own: a connection that records the
 * frames it is handed and reports a pending byte count the test sets. The relay tests talk to
 * a real redis-server named by SLIPWAY_TEST_REDIS_URL and skip without it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/common.h"
#include "slipway/hub.h"
#include "slipway/redis.h"
#include "slipway/sse.h"
#include "slipway/ws.h"

/* ---- the test's transport ----------------------------------------------------------------- */

typedef struct conn conn_t;
struct conn {
    sw_shared_t **frames;
    size_t nframes, cap;
    size_t received; /* bytes handed over, total */
    size_t pending;  /* what pending() reports */
    bool backlog;    /* each frame adds its length to pending */
    int refuse;      /* send's answer */
    /* what the transport does from inside its own send */
    sw_hub_watcher_t *unwatch_on_send;
    sw_hub_watcher_t *push_to;
    sw_hub_msg_t *push_msg;
    /* filter behaviour: skip seq <= skip_upto, hold at hold_at, or skip what was sent */
    bool filter_on;
    long long skip_upto;
    long long hold_at;
    bool dedupe;
    bool hold_lagged; /* hold the next lagged message once */
    long long last_seq;
    int filtered_lagged;
};

static int conn_send(void *p, sw_shared_t *frame)
{
    conn_t *c = p;
    if (c->refuse)
        return c->refuse;
    if (c->nframes == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->frames = sw_realloc(c->frames, c->cap * sizeof(*c->frames));
    }
    c->frames[c->nframes++] = sw_shared_ref(frame);
    c->received += frame->len;
    if (c->backlog)
        c->pending += frame->len;
    if (c->unwatch_on_send) {
        sw_hub_watcher_t *w = c->unwatch_on_send;
        c->unwatch_on_send = NULL;
        sw_hub_unwatch(w);
    }
    if (c->push_to) {
        sw_hub_watcher_t *w = c->push_to;
        c->push_to = NULL;
        sw_hub_watcher_push(w, c->push_msg);
    }
    return 0;
}

static size_t conn_pending(const void *p)
{
    return ((const conn_t *)p)->pending;
}

static sw_hub_verdict_t conn_filter(void *p, const sw_hub_msg_t *m)
{
    conn_t *c = p;
    if (m->type == SW_HUB_LAGGED) {
        c->filtered_lagged++;
        if (c->hold_lagged) {
            c->hold_lagged = false;
            return SW_HUB_HOLD;
        }
    }
    if (!c->filter_on)
        return SW_HUB_SEND;
    if (c->hold_at && m->seq == c->hold_at) {
        c->hold_at = 0;
        return SW_HUB_HOLD;
    }
    if (m->seq > 0 && m->seq <= c->skip_upto)
        return SW_HUB_SKIP;
    if (c->dedupe && m->seq > 0) {
        if (m->seq <= c->last_seq)
            return SW_HUB_SKIP;
        c->last_seq = m->seq;
    }
    return SW_HUB_SEND;
}

static void conn_reset(conn_t *c)
{
    for (size_t i = 0; i < c->nframes; i++)
        sw_shared_unref(c->frames[i]);
    free(c->frames);
    memset(c, 0, sizeof(*c));
}

/* The transports' own encoders, as src/api/live.c plugs them in: the hub frames nothing. */
static sw_shared_t *enc_ws(const sw_hub_msg_t *m)
{
    return sw_ws_encode_text(m->json->data, m->json->len);
}

static sw_shared_t *enc_sse(const sw_hub_msg_t *m)
{
    return sw_sse_encode(m->seq, m->json->data, m->json->len);
}

static sw_shared_t *enc_nd(const sw_hub_msg_t *m)
{
    return sw_ndjson_encode(m->json->data, m->json->len);
}

static const sw_hub_sink_t ws_sink = {SW_HUB_ENC_WS, enc_ws, conn_send, conn_pending, conn_filter};
static const sw_hub_sink_t sse_sink = {SW_HUB_ENC_SSE, enc_sse, conn_send, conn_pending,
                                       conn_filter};
static const sw_hub_sink_t nd_sink = {SW_HUB_ENC_NDJSON, enc_nd, conn_send, conn_pending,
                                      conn_filter};

/* The JSON of an NDJSON frame, without its newline. */
static const char *frame_json(const conn_t *c, size_t i, size_t *len)
{
    *len = c->frames[i]->len - 1;
    return c->frames[i]->data;
}

/* The seq in a frame made by line(), in any encoding, or -1 for anything else. */
static long long frame_seq(const conn_t *c, size_t i)
{
    long long seq;
    const char *json = memmem(c->frames[i]->data, c->frames[i]->len, "{\"seq\":", 7);
    if (!json || sscanf(json, "{\"seq\":%lld", &seq) != 1)
        return -1;
    return seq;
}

static sw_hub_msg_t *line(long long seq)
{
    char json[64];
    int n = snprintf(json, sizeof(json), "{\"seq\":%lld,\"line\":\"l%lld\"}", seq, seq);
    return sw_hub_msg_new(SW_HUB_LOG, seq, json, (size_t)n);
}

static void publish_line(sw_hub_t *hub, const char *topic, long long seq)
{
    sw_hub_msg_t *m = line(seq);
    sw_hub_publish(hub, topic, m);
    sw_hub_msg_unref(m);
}

/* ---- harness ------------------------------------------------------------------------------ */

typedef struct {
    uv_loop_t loop;
    sw_hub_t *hub;
} fx_t;

static void fx_open(fx_t *fx, const sw_hub_opts_t *opts)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(sw_hub_new(&fx->hub, &fx->loop, NULL, opts), 0);
}

/* Frees the hub, runs the loop dry and insists that nothing was left open. */
static void fx_close(fx_t *fx)
{
    sw_hub_stats_t st;
    sw_hub_stats(fx->hub, &st);
    assert_int_equal(st.watchers, 0);
    assert_int_equal(st.topics, 0);
    sw_hub_free(fx->hub);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

/* ---- messages and encodings --------------------------------------------------------------- */

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(sw_hub_type_name(SW_HUB_LOG), "log");
    assert_string_equal(sw_hub_type_name(SW_HUB_STATUS), "status");
    assert_string_equal(sw_hub_type_name(SW_HUB_METRICS), "metrics");
    assert_string_equal(sw_hub_type_name(SW_HUB_LAGGED), "lagged");
    assert_string_equal(sw_hub_type_name(SW_HUB_END), "end");
    assert_string_equal(sw_hub_type_name(SW_HUB_ERROR), "error");
}

static void test_msg_make(void **state)
{
    (void)state;
    static const char data[] = "{\"seq\":17,\"stream\":\"stdout\",\"line\":\"a\\nb\"}";
    sw_hub_msg_t *m = sw_hub_msg_make(SW_HUB_LOG, 17, data, sizeof(data) - 1);
    assert_int_equal(m->refs, 1);
    assert_int_equal(m->seq, 17);
    assert_int_equal(m->type, SW_HUB_LOG);
    assert_int_equal(strlen(m->json->data), m->json->len);

    json_error_t err;
    json_t *o = json_loadb(m->json->data, m->json->len, 0, &err);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "log");
    const char *ts = json_string_value(json_object_get(o, "timestamp"));
    assert_non_null(ts);
    /* 2024-01-02T03:04:05.678Z */
    assert_int_equal(strlen(ts), 24);
    assert_true(ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
    json_t *d = json_object_get(o, "data");
    assert_int_equal(json_integer_value(json_object_get(d, "seq")), 17);
    assert_string_equal(json_string_value(json_object_get(d, "line")), "a\nb");
    json_decref(o);
    /* The data is the last member, verbatim. */
    assert_memory_equal(m->json->data + m->json->len - sizeof(data), data, sizeof(data) - 1);
    assert_int_equal(m->json->data[m->json->len - 1], '}');
    sw_hub_msg_unref(m);

    m = sw_hub_msg_make(SW_HUB_END, 0, NULL, 0);
    o = json_loadb(m->json->data, m->json->len, 0, &err);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "end");
    assert_true(json_is_object(json_object_get(o, "data")));
    json_decref(o);
    sw_hub_msg_unref(m);
}

static void check_ws(size_t len, const unsigned char *hdr, size_t hdr_len)
{
    char *json = sw_malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        json[i] = (char)('a' + i % 26);
    sw_hub_msg_t *m = sw_hub_msg_new(SW_HUB_LOG, 1, json, len);
    sw_shared_t *f = sw_hub_msg_encoded(m, &ws_sink);
    assert_int_equal(f->len, hdr_len + len);
    assert_memory_equal(f->data, hdr, hdr_len);
    if (len)
        assert_memory_equal(f->data + hdr_len, json, len);
    assert_ptr_equal(sw_hub_msg_encoded(m, &ws_sink), f); /* made once */
    assert_int_equal(f->refs, 1);
    sw_hub_msg_unref(m);
    free(json);
}

static void test_encoding_ws(void **state)
{
    (void)state;
    check_ws(0, (const unsigned char[]){0x81, 0x00}, 2);
    check_ws(5, (const unsigned char[]){0x81, 0x05}, 2);
    check_ws(125, (const unsigned char[]){0x81, 0x7d}, 2);
    check_ws(126, (const unsigned char[]){0x81, 0x7e, 0x00, 0x7e}, 4);
    check_ws(65535, (const unsigned char[]){0x81, 0x7e, 0xff, 0xff}, 4);
    check_ws(65536, (const unsigned char[]){0x81, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}, 10);
    check_ws(70000, (const unsigned char[]){0x81, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70}, 10);
}

static void check_text(sw_hub_msg_t *m, const sw_hub_sink_t *enc, const char *want)
{
    sw_shared_t *f = sw_hub_msg_encoded(m, enc);
    assert_int_equal(f->len, strlen(want));
    assert_memory_equal(f->data, want, f->len);
    assert_ptr_equal(sw_hub_msg_encoded(m, enc), f);
}

static void test_encoding_sse_ndjson(void **state)
{
    (void)state;
    sw_hub_msg_t *m = sw_hub_msg_new(SW_HUB_LOG, 17, "{\"a\":1}", 7);
    check_text(m, &sse_sink, "id: 17\ndata: {\"a\":1}\n\n");
    check_text(m, &nd_sink, "{\"a\":1}\n");
    sw_hub_msg_unref(m);

    m = sw_hub_msg_new(SW_HUB_STATUS, 0, "{\"b\":2}", 7);
    check_text(m, &sse_sink, "data: {\"b\":2}\n\n");
    check_text(m, &nd_sink, "{\"b\":2}\n");
    sw_hub_msg_unref(m);

    /* Raw line breaks (JSON whitespace) cannot split an event or a line. */
    m = sw_hub_msg_new(SW_HUB_STATUS, 3, "{\"b\":\r\n2}", 9);
    check_text(m, &sse_sink, "id: 3\ndata: {\"b\":  2}\n\n");
    check_text(m, &nd_sink, "{\"b\":  2}\n");
    assert_memory_equal(m->json->data, "{\"b\":\r\n2}", 9); /* the message itself is intact */
    sw_hub_msg_unref(m);
}

/* ---- fan-out ------------------------------------------------------------------------------ */

static void test_fanout_shares_frame(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c[4] = {0};
    sw_hub_watcher_t *w[4];
    fx_open(&fx, NULL);
    for (int i = 0; i < 3; i++)
        assert_non_null(w[i] = sw_hub_watch(fx.hub, "deployment:1", &ws_sink, &c[i], false));
    assert_non_null(w[3] = sw_hub_watch(fx.hub, "deployment:1", &sse_sink, &c[3], false));

    sw_hub_msg_t *m = line(1);
    sw_hub_publish(fx.hub, "deployment:1", m);
    /* Delivered during the call: no added latency. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(c[i].nframes, 1);
    assert_ptr_equal(c[0].frames[0], c[1].frames[0]);
    assert_ptr_equal(c[0].frames[0], c[2].frames[0]);
    assert_ptr_equal(c[0].frames[0], m->enc[SW_HUB_ENC_WS]);
    assert_int_equal(m->enc[SW_HUB_ENC_WS]->refs, 4); /* the message and three transports */
    assert_ptr_equal(c[3].frames[0], m->enc[SW_HUB_ENC_SSE]);
    assert_null(m->enc[SW_HUB_ENC_NDJSON]);
    assert_int_equal(m->refs, 1); /* no queue holds it any more */

    sw_hub_stats_t st;
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.watchers, 4);
    assert_int_equal(st.topics, 1);
    assert_int_equal(st.published, 1);
    assert_int_equal(st.sent[SW_HUB_ENC_WS], 3);
    assert_int_equal(st.sent[SW_HUB_ENC_SSE], 1);
    assert_int_equal(st.relayed_in, 0);

    /* Another topic's watcher gets nothing. */
    conn_t other = {0};
    sw_hub_watcher_t *wo = sw_hub_watch(fx.hub, "deployment:2", &nd_sink, &other, false);
    sw_hub_publish(fx.hub, "deployment:1", m);
    assert_int_equal(other.nframes, 0);
    assert_int_equal(c[0].nframes, 2);
    sw_hub_msg_unref(m);

    sw_hub_unwatch(wo);
    for (int i = 0; i < 4; i++)
        sw_hub_unwatch(w[i]);
    fx_close(&fx);
    /* The transports' references outlive the message and the hub. */
    assert_int_equal(c[0].frames[0]->data[0], (char)0x81);
    for (int i = 0; i < 4; i++)
        conn_reset(&c[i]);
    conn_reset(&other);
}

/* ---- bounds and lagging ------------------------------------------------------------------- */

static void test_queue_bound_lagged(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {0};
    sw_hub_opts_t opts = {.queue_max_msgs = 4, .write_window = 100};
    fx_open(&fx, &opts);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &nd_sink, &c, false);
    c.pending = 101; /* the peer is not reading */
    for (int i = 1; i <= 10; i++)
        publish_line(fx.hub, "t", i);
    assert_int_equal(c.nframes, 0);
    assert_int_equal(sw_hub_watcher_queued(w), 4);
    assert_int_equal(sw_hub_watcher_first_seq(w), 7);
    sw_hub_stats_t st;
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.dropped[SW_HUB_ENC_NDJSON], 6);

    c.pending = 0;
    sw_hub_watcher_writable(w);
    assert_int_equal(c.nframes, 5);
    size_t len;
    const char *json = frame_json(&c, 0, &len);
    assert_non_null(strstr(json, "\"type\":\"lagged\""));
    assert_non_null(strstr(json, "\"data\":{\"dropped\":6}}"));
    assert_int_equal(c.filtered_lagged, 1); /* the filter saw it like any other */
    for (int i = 1; i < 5; i++)
        assert_int_equal(frame_seq(&c, i), 6 + i);
    assert_int_equal(sw_hub_watcher_queued(w), 0);

    /* Keeping up again: no further lagged message. */
    publish_line(fx.hub, "t", 11);
    assert_int_equal(c.nframes, 6);
    assert_int_equal(frame_seq(&c, 5), 11);
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.sent[SW_HUB_ENC_NDJSON], 6);
    sw_hub_unwatch(w);
    fx_close(&fx);
    conn_reset(&c);
}

static void test_queue_bound_bytes(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {0};
    sw_hub_msg_t *probe = line(1);
    size_t one = probe->json->len; /* seqs 1-9 make messages of one length */
    sw_hub_msg_unref(probe);
    sw_hub_opts_t opts = {.queue_max_msgs = 1000, .queue_max_bytes = 3 * one, .write_window = 10};
    fx_open(&fx, &opts);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &ws_sink, &c, true);
    for (int i = 1; i <= 9; i++)
        publish_line(fx.hub, "t", i);
    assert_int_equal(sw_hub_watcher_queued(w), 3);
    assert_int_equal(sw_hub_watcher_first_seq(w), 7);

    /* A message larger than the whole bound still gets through, alone. */
    char big[512];
    memset(big, ' ', sizeof(big));
    big[0] = '{';
    big[sizeof(big) - 1] = '}';
    sw_hub_msg_t *m = sw_hub_msg_new(SW_HUB_STATUS, 0, big, sizeof(big));
    sw_hub_publish(fx.hub, "t", m);
    sw_hub_msg_unref(m);
    assert_int_equal(sw_hub_watcher_queued(w), 1);
    assert_int_equal(sw_hub_watcher_first_seq(w), 0);
    sw_hub_watcher_resume(w);
    assert_int_equal(c.nframes, 2);
    assert_non_null(strstr(c.frames[0]->data + 2, "{\"dropped\":9}"));
    assert_int_equal(c.frames[1]->len, 4 + sizeof(big));
    sw_hub_unwatch(w);
    fx_close(&fx);
    conn_reset(&c);
}

/* A watcher above the window gets nothing until writable; a fast one gets everything. */
static void test_write_window(void **state)
{
    (void)state;
    fx_t fx;
    conn_t slow = {0}, fast = {0};
    sw_hub_opts_t opts = {.write_window = 1000};
    fx_open(&fx, &opts);
    sw_hub_watcher_t *ws = sw_hub_watch(fx.hub, "t", &nd_sink, &slow, false);
    sw_hub_watcher_t *wf = sw_hub_watch(fx.hub, "t", &nd_sink, &fast, false);
    slow.backlog = true;
    for (int i = 1; i <= 200; i++)
        publish_line(fx.hub, "t", i);
    assert_int_equal(fast.nframes, 200);
    /* The slow one took frames while its pending bytes stayed within the window. */
    assert_true(slow.pending > 1000);
    assert_true(slow.pending - slow.frames[slow.nframes - 1]->len <= 1000);
    size_t got = slow.nframes;
    assert_int_equal(got + sw_hub_watcher_queued(ws), 200);

    sw_hub_watcher_writable(ws); /* still above the window: nothing */
    assert_int_equal(slow.nframes, got);
    slow.pending = 0;
    slow.backlog = false;
    sw_hub_watcher_writable(ws);
    assert_int_equal(slow.nframes, 200);
    for (size_t i = 0; i < 200; i++)
        assert_int_equal(frame_seq(&slow, i), (long long)i + 1);
    sw_hub_unwatch(ws);
    sw_hub_unwatch(wf);
    fx_close(&fx);
    conn_reset(&slow);
    conn_reset(&fast);
}

/* ---- hold, filter, skip, push ------------------------------------------------------------- */

static void test_hold_filter_skip(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {0};
    fx_open(&fx, NULL);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &ws_sink, &c, true);
    for (int i = 1; i <= 6; i++)
        publish_line(fx.hub, "t", i);
    assert_int_equal(c.nframes, 0); /* held from the start */
    assert_int_equal(sw_hub_watcher_queued(w), 6);

    c.filter_on = true;
    c.skip_upto = 2;
    c.hold_at = 5;
    sw_hub_watcher_resume(w);
    /* 1 and 2 skipped, 3 and 4 sent, 5 held at the head. */
    assert_int_equal(c.nframes, 2);
    assert_int_equal(sw_hub_watcher_queued(w), 2);
    assert_int_equal(sw_hub_watcher_first_seq(w), 5);
    publish_line(fx.hub, "t", 7);
    assert_int_equal(c.nframes, 2);
    sw_hub_watcher_writable(w); /* held is not the same as full */
    assert_int_equal(c.nframes, 2);

    sw_hub_watcher_resume(w);
    assert_int_equal(c.nframes, 5);
    long long want[] = {3, 4, 5, 6, 7};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(frame_seq(&c, i), want[i]);
    sw_hub_stats_t st;
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.sent[SW_HUB_ENC_WS], 5);
    assert_int_equal(st.dropped[SW_HUB_ENC_WS], 0);

    sw_hub_watcher_hold(w);
    publish_line(fx.hub, "t", 8);
    assert_int_equal(c.nframes, 5);
    sw_hub_watcher_resume(w);
    assert_int_equal(c.nframes, 6);
    sw_hub_unwatch(w);
    fx_close(&fx);
    conn_reset(&c);
}

/* The stream's replay: subscribe held, live lines queue, history is pushed and lands ahead of
 * them, and a filter that drops what was already sent leaves each line exactly once. */
static void test_push_history(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {.filter_on = true, .dedupe = true};
    fx_open(&fx, NULL);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &nd_sink, &c, true);
    publish_line(fx.hub, "t", 5);
    sw_hub_msg_t *st = sw_hub_msg_new(SW_HUB_STATUS, 0, "{\"s\":1}", 7);
    sw_hub_publish(fx.hub, "t", st);
    sw_hub_msg_unref(st);
    publish_line(fx.hub, "t", 6);
    assert_int_equal(sw_hub_watcher_first_seq(w), 5);

    for (int i = 1; i <= 5; i++) { /* the store had 1-5 when it was read */
        sw_hub_msg_t *m = line(i);
        sw_hub_watcher_push(w, m);
        sw_hub_msg_unref(m);
    }
    sw_hub_msg_t *end = sw_hub_msg_make(SW_HUB_END, 0, NULL, 0);
    sw_hub_watcher_push(w, end); /* no seq: at the tail */
    sw_hub_msg_unref(end);
    assert_int_equal(sw_hub_watcher_first_seq(w), 1);
    assert_int_equal(c.nframes, 0);
    sw_hub_watcher_resume(w);

    long long want[] = {1, 2, 3, 4, 5, -1, 6, -1};
    assert_int_equal(c.nframes, SW_ARRAY_SIZE(want));
    for (size_t i = 0; i < SW_ARRAY_SIZE(want); i++)
        assert_int_equal(frame_seq(&c, i), want[i]);
    assert_non_null(strstr(c.frames[5]->data, "{\"s\":1}"));
    assert_non_null(strstr(c.frames[7]->data, "\"type\":\"end\""));
    sw_hub_unwatch(w);
    fx_close(&fx);
    conn_reset(&c);
}

/* A held lagged message is reported again on resume, counting what was dropped meanwhile;
 * pushes obey the same bounds as published messages. */
static void test_lagged_held_and_push_bounds(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {.hold_lagged = true};
    sw_hub_opts_t opts = {.queue_max_msgs = 3};
    fx_open(&fx, &opts);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &nd_sink, &c, true);
    for (int i = 1; i <= 5; i++)
        publish_line(fx.hub, "t", i);
    sw_hub_watcher_resume(w); /* the filter holds the lagged message for 2 */
    assert_int_equal(c.nframes, 0);
    assert_int_equal(c.filtered_lagged, 1);
    for (int i = 6; i <= 7; i++) {
        sw_hub_msg_t *m = line(i);
        sw_hub_watcher_push(w, m);
        sw_hub_msg_unref(m);
    }
    assert_int_equal(sw_hub_watcher_queued(w), 3);
    sw_hub_watcher_resume(w);
    assert_int_equal(c.nframes, 4);
    assert_non_null(strstr(c.frames[0]->data, "{\"dropped\":4}"));
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(frame_seq(&c, i), (long long)i + 4);
    sw_hub_stats_t st;
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.dropped[SW_HUB_ENC_NDJSON], 4);
    assert_int_equal(st.sent[SW_HUB_ENC_NDJSON], 4);
    sw_hub_unwatch(w);
    fx_close(&fx);
    conn_reset(&c);
}

/* A transport that refuses a send is never called again and queues nothing. */
static void test_send_refused(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {.refuse = -32}, ok = {0};
    fx_open(&fx, NULL);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &ws_sink, &c, false);
    sw_hub_watcher_t *wok = sw_hub_watch(fx.hub, "t", &ws_sink, &ok, false);
    publish_line(fx.hub, "t", 1);
    c.refuse = 0;
    publish_line(fx.hub, "t", 2);
    sw_hub_watcher_writable(w);
    assert_int_equal(c.nframes, 0);
    assert_int_equal(sw_hub_watcher_queued(w), 0);
    assert_int_equal(ok.nframes, 2);
    sw_hub_stats_t st;
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.sent[SW_HUB_ENC_WS], 2);
    sw_hub_unwatch(w);
    sw_hub_unwatch(wok);
    fx_close(&fx);
    conn_reset(&c);
    conn_reset(&ok);
}

/* ---- re-entrancy and topic lifetime ------------------------------------------------------- */

static void test_unwatch_during_delivery(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c[4] = {0};
    sw_hub_watcher_t *w[4];
    fx_open(&fx, NULL);
    for (int i = 0; i < 4; i++)
        w[i] = sw_hub_watch(fx.hub, "t", &ws_sink, &c[i], false);

    /* 0's send removes 1 (next in line) and 0 itself; 2 and 3 still get the message. */
    c[0].unwatch_on_send = w[1];
    publish_line(fx.hub, "t", 1);
    assert_int_equal(c[1].nframes, 0);
    sw_hub_stats_t st;
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.watchers, 3);
    c[0].unwatch_on_send = w[0];
    publish_line(fx.hub, "t", 2);
    assert_int_equal(c[0].nframes, 2);
    assert_int_equal(c[1].nframes, 0);
    assert_int_equal(c[2].nframes, 2);
    assert_int_equal(c[3].nframes, 2);
    publish_line(fx.hub, "t", 3);
    assert_int_equal(c[0].nframes, 2); /* never called after unwatch */
    assert_int_equal(c[3].nframes, 3);

    /* 2 removes the last in line, then itself: the topic goes with it, mid-walk. */
    c[2].unwatch_on_send = w[3];
    publish_line(fx.hub, "t", 4);
    assert_int_equal(c[2].nframes, 4);
    assert_int_equal(c[3].nframes, 3);
    assert_true(sw_hub_watched(fx.hub, "t"));
    c[2].unwatch_on_send = w[2];
    publish_line(fx.hub, "t", 5);
    assert_int_equal(c[2].nframes, 5);
    assert_false(sw_hub_watched(fx.hub, "t"));
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.watchers, 0);
    assert_int_equal(st.topics, 0);
    publish_line(fx.hub, "t", 6);
    fx_close(&fx);
    for (int i = 0; i < 4; i++)
        conn_reset(&c[i]);
}

/* A watcher that unwatches itself from its send while flushed outside a publish walk. */
static void test_unwatch_self_on_writable(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {0};
    fx_open(&fx, NULL);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &sse_sink, &c, true);
    for (int i = 1; i <= 3; i++)
        publish_line(fx.hub, "t", i);
    c.unwatch_on_send = w;
    sw_hub_watcher_resume(w); /* frees w after its first send */
    assert_int_equal(c.nframes, 1);
    assert_false(sw_hub_watched(fx.hub, "t"));
    fx_close(&fx);
    conn_reset(&c);
}

/* A push from a watcher's own send queues behind what is being flushed. */
static void test_push_from_send(void **state)
{
    (void)state;
    fx_t fx;
    conn_t c = {0};
    fx_open(&fx, NULL);
    sw_hub_watcher_t *w = sw_hub_watch(fx.hub, "t", &nd_sink, &c, false);
    c.push_to = w;
    c.push_msg = sw_hub_msg_new(SW_HUB_END, 0, "{\"end\":1}", 9);
    publish_line(fx.hub, "t", 1);
    assert_int_equal(c.nframes, 2);
    assert_int_equal(frame_seq(&c, 0), 1);
    assert_string_equal(c.frames[1]->data, "{\"end\":1}\n");
    sw_hub_msg_unref(c.push_msg);
    sw_hub_unwatch(w);
    fx_close(&fx);
    conn_reset(&c);
}

static void test_topic_lifetime(void **state)
{
    (void)state;
    fx_t fx;
    conn_t a = {0}, b = {0};
    sw_hub_stats_t st;
    fx_open(&fx, NULL);
    assert_false(sw_hub_watched(fx.hub, "app:1"));
    publish_line(fx.hub, "app:1", 1); /* nobody watches, no relay: nothing kept */
    sw_hub_watcher_t *wa = sw_hub_watch(fx.hub, "app:1", &ws_sink, &a, false);
    assert_true(sw_hub_watched(fx.hub, "app:1"));
    assert_false(sw_hub_watched(fx.hub, "app:2"));
    sw_hub_watcher_t *wb = sw_hub_watch(fx.hub, "app:1", &ws_sink, &b, false);
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.topics, 1);
    assert_int_equal(st.watchers, 2);
    sw_hub_unwatch(wa);
    assert_true(sw_hub_watched(fx.hub, "app:1"));
    sw_hub_unwatch(wb);
    assert_false(sw_hub_watched(fx.hub, "app:1"));
    sw_hub_stats(fx.hub, &st);
    assert_int_equal(st.topics, 0);
    assert_int_equal(st.published, 1);

    /* Topic names out of bounds are refused; NULL arguments are harmless. */
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_null(sw_hub_watch(fx.hub, longname, &ws_sink, &a, false));
    assert_null(sw_hub_watch(fx.hub, "", &ws_sink, &a, false));
    sw_hub_publish(NULL, "t", NULL);
    sw_hub_unwatch(NULL);
    assert_false(sw_hub_watched(NULL, "t"));

    /* Many topics: the table grows and every one is found again. */
    sw_hub_watcher_t *many[300];
    conn_t mc = {0};
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "deployment:%d", i);
        many[i] = sw_hub_watch(fx.hub, name, &nd_sink, &mc, false);
    }
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "deployment:%d", i);
        assert_true(sw_hub_watched(fx.hub, name));
        publish_line(fx.hub, name, i + 1);
    }
    assert_int_equal(mc.nframes, 300);
    for (int i = 0; i < 300; i++)
        sw_hub_unwatch(many[i]);
    fx_close(&fx);
    conn_reset(&a);
    conn_reset(&b);
    conn_reset(&mc);
}

static void test_bad_options(void **state)
{
    (void)state;
    uv_loop_t loop;
    sw_hub_t *hub = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);
    sw_hub_opts_t bad_node = {.node = "a b"};
    assert_int_equal(sw_hub_new(&hub, &loop, NULL, &bad_node), -EINVAL);
    sw_hub_opts_t bad_instance = {.instance = ""};
    assert_int_equal(sw_hub_new(&hub, &loop, NULL, &bad_instance), -EINVAL);
    assert_null(hub);
    sw_hub_free(NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- relay through Redis ------------------------------------------------------------------ */

static void watchdog_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

typedef bool (*cond_fn)(void *arg);

/* Runs the loop until cond holds or ms pass; returns cond's last value. */
static bool run_until(uv_loop_t *loop, cond_fn cond, void *arg, uint64_t ms)
{
    uv_timer_t t;
    bool expired = false;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, watchdog_cb, ms, 0);
    while (!cond(arg) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return cond(arg);
}

typedef struct {
    uv_loop_t loop;
    sw_redis_t *ra, *rb, *rc; /* hub A's, hub B's, and the test's own listener */
    sw_hub_t *a, *b;
    char instance[32];
    int closed;
} relay_t;

static bool clients_up(void *arg)
{
    relay_t *r = arg;
    return sw_redis_up(r->ra) && sw_redis_subscriber_up(r->ra) && sw_redis_up(r->rb) &&
           sw_redis_subscriber_up(r->rb) && sw_redis_subscriber_up(r->rc);
}

static void on_closed(void *payload)
{
    ((relay_t *)payload)->closed++;
}

typedef struct {
    int calls;
    long long integer;
} reply_t;

static void numsub_cb(int status, const sw_redis_reply_t *reply, void *payload)
{
    reply_t *res = payload;
    res->calls++;
    res->integer = -1;
    if (status == 0 && reply->type == SW_REDIS_ARRAY && reply->elements == 2)
        res->integer = reply->element[1]->integer;
}

static bool replied(void *arg)
{
    return ((reply_t *)arg)->calls > 0;
}

/* Subscribers of a topic's channel as Redis counts them. */
static long long numsub(relay_t *r, const char *topic)
{
    char chan[128];
    snprintf(chan, sizeof(chan), "slipway:%s:live:%s", r->instance, topic);
    const char *argv[] = {"PUBSUB", "NUMSUB", chan};
    reply_t res = {0};
    assert_int_equal(sw_redis_command(r->ra, numsub_cb, &res, 3, argv, NULL), 0);
    assert_true(run_until(&r->loop, replied, &res, 3000));
    return res.integer;
}

/* Subscriptions change asynchronously; asks Redis until it agrees or time runs out. */
static bool await_numsub(relay_t *r, const char *topic, long long want)
{
    uint64_t until = uv_now(&r->loop) + 3000;
    while (numsub(r, topic) != want)
        if (uv_now(&r->loop) > until)
            return false;
    return true;
}

typedef struct {
    int count;
    int want;
    char last[64]; /* the start of the last payload */
} listener_t;

static void listener_cb(const char *channel, size_t channel_len, const char *data, size_t len,
                        void *payload)
{
    listener_t *l = payload;
    (void)channel;
    (void)channel_len;
    l->count++;
    snprintf(l->last, sizeof(l->last), "%.*s", (int)SW_MIN(len, 63), data);
}

static sw_hub_t *relay_hub(relay_t *r, sw_redis_t *redis, const char *node)
{
    sw_hub_t *hub;
    sw_hub_opts_t opts = {.node = node,
                          .instance = r->instance,
                          .queue_max_msgs = 100000,
                          .queue_max_bytes = 64u << 20};
    assert_int_equal(sw_hub_new(&hub, &r->loop, redis, &opts), 0);
    return hub;
}

static void relay_open(relay_t *r, const char *url)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->instance, sizeof(r->instance), "hubtest%d", (int)getpid());
    assert_int_equal(uv_loop_init(&r->loop), 0);
    sw_redis_opts_t ro = {.url = url, .timeout_ms = 3000};
    assert_int_equal(sw_redis_new(&r->ra, &r->loop, &ro), 0);
    assert_int_equal(sw_redis_new(&r->rb, &r->loop, &ro), 0);
    assert_int_equal(sw_redis_new(&r->rc, &r->loop, &ro), 0);
    r->a = relay_hub(r, r->ra, "node-a");
    r->b = relay_hub(r, r->rb, "node-b");
}

static void relay_close(relay_t *r)
{
    sw_hub_free(r->a);
    sw_hub_free(r->b);
    sw_redis_close(r->ra, on_closed, r);
    sw_redis_close(r->rb, on_closed, r);
    sw_redis_close(r->rc, on_closed, r);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(r->closed, 3);
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

typedef struct {
    conn_t *c;
    size_t n;
} frames_t;

static bool has_frames(void *arg)
{
    frames_t *f = arg;
    return f->c->nframes >= f->n;
}

static bool wait_frames(relay_t *r, conn_t *c, size_t n)
{
    frames_t f = {c, n};
    return run_until(&r->loop, has_frames, &f, 5000);
}

static const char *server_url(void)
{
    const char *url = getenv("SLIPWAY_TEST_REDIS_URL");
    return url && *url ? url : NULL;
}

static bool heard_enough(void *arg)
{
    const listener_t *l = arg;
    return l->count >= l->want;
}

/* Whether the listener's last payload came from node. */
static bool last_from(const listener_t *l, const char *node)
{
    char head[80];
    snprintf(head, sizeof(head), "SW1 %s\n", node);
    return strncmp(l->last, head, strlen(head)) == 0;
}

static void test_relay(void **state)
{
    (void)state;
    const char *url = server_url();
    if (!url)
        skip();
    relay_t r;
    conn_t ca = {0}, cb = {0}, cu = {0};
    listener_t heard = {0};
    sw_hub_stats_t sa, sb;
    relay_open(&r, url);
    char chan[128];
    snprintf(chan, sizeof(chan), "slipway:%s:live:deployment:9", r.instance);
    assert_int_equal(sw_redis_subscribe(r.rc, chan, listener_cb, &heard), 0);
    assert_true(run_until(&r.loop, clients_up, &r, 5000));

    sw_hub_watcher_t *wa = sw_hub_watch(r.a, "deployment:9", &nd_sink, &ca, false);
    sw_hub_watcher_t *wb = sw_hub_watch(r.b, "deployment:9", &nd_sink, &cb, false);
    sw_hub_watcher_t *wu = sw_hub_watch(r.a, "app:7", &nd_sink, &cu, false);
    assert_true(await_numsub(&r, "deployment:9", 3)); /* A, B and the listener */
    /* Only A watches app:7, so only A listens to it. */
    assert_true(await_numsub(&r, "app:7", 1));
    assert_false(sw_hub_watched(r.b, "app:7"));
    sw_hub_stats(r.b, &sb);
    assert_int_equal(sb.topics, 1);

    /* Each side gets every line once: its own directly, the other's through Redis, and never
     * its own again. Each wait below also proves the echo before it was ignored, because a
     * channel's messages arrive in the order Redis took them. */
    publish_line(r.a, "deployment:9", 1);
    assert_int_equal(ca.nframes, 1); /* local delivery does not wait for Redis */
    assert_true(wait_frames(&r, &cb, 1));
    publish_line(r.b, "deployment:9", 2);
    assert_true(wait_frames(&r, &ca, 2));
    publish_line(r.a, "deployment:9", 3);
    assert_true(wait_frames(&r, &cb, 3));
    publish_line(r.b, "deployment:9", 4);
    assert_true(wait_frames(&r, &ca, 4));
    /* Four payloads, the last of them B's: nothing was published twice or re-published. */
    heard.want = 4;
    assert_true(run_until(&r.loop, heard_enough, &heard, 5000));
    assert_true(last_from(&heard, "node-b"));
    assert_int_equal(ca.nframes, 4);
    assert_int_equal(cb.nframes, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(frame_seq(&ca, i), (long long)i + 1);
        assert_int_equal(frame_seq(&cb, i), (long long)i + 1);
    }
    assert_int_equal(cu.nframes, 0);
    sw_hub_stats(r.a, &sa);
    sw_hub_stats(r.b, &sb);
    assert_int_equal(sa.published, 2);
    assert_int_equal(sa.relayed_in, 2);
    assert_int_equal(sb.published, 2);
    assert_int_equal(sb.relayed_in, 2);

    /* A burst in one loop iteration goes out as one PUBLISH, in order: the listener hears it
     * and then B's next line, which B sent after it had the burst. */
    heard.count = 0;
    heard.want = 2;
    for (int i = 5; i <= 504; i++)
        publish_line(r.a, "deployment:9", i);
    assert_true(wait_frames(&r, &cb, 504));
    publish_line(r.b, "deployment:9", 505);
    assert_true(wait_frames(&r, &ca, 505));
    assert_true(run_until(&r.loop, heard_enough, &heard, 5000));
    assert_true(last_from(&heard, "node-b"));
    assert_int_equal(cb.nframes, 505);
    for (size_t i = 0; i < 505; i++)
        assert_int_equal(frame_seq(&cb, i), (long long)i + 1);

    /* Framing by length: a message bigger than a batch, holding what looks like records. */
    size_t big_len = 300000;
    char *big = sw_malloc(big_len);
    memset(big, 'x', big_len);
    static const char head[] = "{\"seq\":506,\"line\":\"";
    static const char fake[] = "\nlog 1 2\n{}\n";
    memcpy(big, head, sizeof(head) - 1);
    memcpy(big + 1000, fake, sizeof(fake) - 1);
    memcpy(big + big_len - 2, "\"}", 2);
    sw_hub_msg_t *m = sw_hub_msg_new(SW_HUB_LOG, 506, big, big_len);
    sw_hub_publish(r.a, "deployment:9", m);
    sw_hub_msg_unref(m);
    publish_line(r.a, "deployment:9", 507);
    assert_true(wait_frames(&r, &cb, 507));
    assert_int_equal(cb.frames[505]->len, big_len + 1);
    assert_memory_equal(cb.frames[505]->data, big, 1000);
    assert_memory_equal(cb.frames[505]->data + 1000, " log 1 2 {} ", sizeof(fake) - 1);
    assert_int_equal(frame_seq(&cb, 506), 507);
    free(big);

    /* Whatever else is published on the channel is read by length and bounds, and a record
     * that does not parse ends its payload: only the well-formed records before it arrive. */
    static const char *const junk[] = {
        "SW1 node-x\nlog 600 2\n{}\nlog 601 99999\n{}\n",
        "SW1 node-x\nbogus 602 2\n{}\n",
        "SW1 node-x\nlog 603 3\n{}\n",
        "SW1 node-x\nlog -604 2\n{}",
        "SW1 node-x\nlog 605 18446744073709551617\n{}\n",
        "SW1 node-x\nlog 606 2 \n{}\n",
        "SW1 node-x",
        "SW2 node-x\nlog 607 2\n{}\n",
        "",
        "SW1 node-x\nlog 608 2\n{}\nstatus 0 7\n{\"s\":1}\n",
    };
    for (size_t i = 0; i < SW_ARRAY_SIZE(junk); i++) {
        const char *argv[] = {"PUBLISH", chan, junk[i]};
        reply_t res = {0};
        assert_int_equal(sw_redis_command(r.rc, numsub_cb, &res, 3, argv, NULL), 0);
        assert_true(run_until(&r.loop, replied, &res, 3000));
    }
    publish_line(r.a, "deployment:9", 609);
    assert_true(wait_frames(&r, &cb, 511));
    assert_string_equal(cb.frames[507]->data, "{}\n");
    assert_string_equal(cb.frames[508]->data, "{}\n");
    assert_string_equal(cb.frames[509]->data, "{\"s\":1}\n");
    assert_int_equal(frame_seq(&cb, 510), 609);

    /* The last watcher on B leaves: B stops listening. */
    sw_hub_unwatch(wb);
    assert_false(sw_hub_watched(r.b, "deployment:9"));
    assert_true(await_numsub(&r, "deployment:9", 2));
    publish_line(r.a, "deployment:9", 508);
    assert_true(wait_frames(&r, &ca, 508));
    sw_hub_stats(r.b, &sb);
    assert_int_equal(sb.topics, 0);
    assert_int_equal(sb.watchers, 0);

    sw_hub_unwatch(wa);
    sw_hub_unwatch(wu);
    assert_true(await_numsub(&r, "app:7", 0));
    relay_close(&r);
    conn_reset(&ca);
    conn_reset(&cb);
    conn_reset(&cu);
}

/* With Redis configured but unreachable, local watchers are served as before. */
static void test_relay_down(void **state)
{
    (void)state;
    relay_t r;
    conn_t c = {0};
    memset(&r, 0, sizeof(r));
    snprintf(r.instance, sizeof(r.instance), "hubdown");
    assert_int_equal(uv_loop_init(&r.loop), 0);
    sw_redis_opts_t ro = {.url = "redis://127.0.0.1:1", .timeout_ms = 200};
    assert_int_equal(sw_redis_new(&r.ra, &r.loop, &ro), 0);
    r.a = relay_hub(&r, r.ra, "node-a");
    sw_hub_watcher_t *w = sw_hub_watch(r.a, "t", &ws_sink, &c, false);
    publish_line(r.a, "t", 1);
    publish_line(r.a, "nobody", 1);
    assert_int_equal(c.nframes, 1);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    sw_hub_unwatch(w);
    sw_hub_free(r.a);
    sw_redis_close(r.ra, on_closed, &r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    assert_int_equal(r.closed, 1);
    assert_int_equal(uv_loop_close(&r.loop), 0);
    conn_reset(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_msg_make),
        cmocka_unit_test(test_encoding_ws),
        cmocka_unit_test(test_encoding_sse_ndjson),
        cmocka_unit_test(test_fanout_shares_frame),
        cmocka_unit_test(test_queue_bound_lagged),
        cmocka_unit_test(test_queue_bound_bytes),
        cmocka_unit_test(test_write_window),
        cmocka_unit_test(test_hold_filter_skip),
        cmocka_unit_test(test_push_history),
        cmocka_unit_test(test_lagged_held_and_push_bounds),
        cmocka_unit_test(test_send_refused),
        cmocka_unit_test(test_unwatch_during_delivery),
        cmocka_unit_test(test_unwatch_self_on_writable),
        cmocka_unit_test(test_push_from_send),
        cmocka_unit_test(test_topic_lifetime),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_relay),
        cmocka_unit_test(test_relay_down),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
