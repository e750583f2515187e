/* Many WebSocket watchers on one libuv loop, for bench/ws_fanout.sh and bench/ws_idle.sh.
 *
 * fanout: opens --conns connections to --path, prints {"event":"ready"} once all are
 *   upgraded, then reads until every connection has ended (an `end` message or a close), no
 *   log line arrived for --idle-ms, or --timeout-ms passed. A text message carrying
 *   "t=<CLOCK_REALTIME ns> n=<i>" (a raw line, or inside a slipwayd log message) is one
 *   delivered line; its latency is receipt time minus t. `lagged` messages are counted with
 *   the lines they say were dropped. Prints one JSON summary.
 * idle: opens the connections, prints ready, then holds them (answering pings) until
 *   --hold-ms passes or SIGTERM/SIGINT, and prints a summary.
 *
 * Frames are parsed here (RFC 6455 5.2); client frames (pong, close) are masked. The
 * handshake checks for 101 and an accept header, not the accept value: this is a load
 * generator, not a conformance test. Not part of the meson build: the bench compiles it. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#define READ_BUF              (256u << 10)
#define HEAD_MAX              8192
#define MSG_MAX               (1u << 20)
#define TICK_MS               50
#define SUB_BITS              5 /* histogram: 32 sub-buckets per power of two, ~3% resolution */
#define SUB                   (1u << SUB_BITS)
#define HIST_BUCKETS          (2 * SUB + 64 * SUB)
#define container_of(p, T, m) ((T *)((char *)(p)-offsetof(T, m)))

typedef enum { MODE_FANOUT, MODE_IDLE } mode_t_;

typedef enum {
    CONN_CONNECTING,
    CONN_HANDSHAKE,
    CONN_OPEN,
    CONN_CLOSING, /* uv_close called */
    CONN_DONE
} conn_state_t;

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t hs_write;
    conn_state_t state;
    bool ended;  /* `end` message or close frame seen */
    bool failed; /* never upgraded */
    char *carry; /* unparsed bytes (handshake head or a partial frame) */
    size_t carry_len, carry_cap;
    char *frag; /* a fragmented message being reassembled */
    size_t frag_len;
    uint8_t frag_op;
    uint64_t delivered;
    long long last_n;
} conn_t;

typedef struct {
    uv_write_t req;
    char data[];
} out_t;

static struct {
    mode_t_ mode;
    const char *host;
    int port;
    const char *path;
    const char *token;
    unsigned nconns;
    unsigned concurrency;
    uint64_t timeout_ms, idle_ms, hold_ms;
    long long expect;

    uv_loop_t *loop;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    struct sockaddr_in addr;
    conn_t *conns;
    unsigned next; /* next connection to start */
    unsigned inflight, upgraded, failed, closed, ended;
    bool ready, finished;
    uint64_t started_ms, ready_ms, last_line_ms;
    char reqhead[1024];
    size_t reqhead_len;
    char rbuf[READ_BUF];
    uint64_t now_ns; /* receipt time of the read being parsed */

    uint64_t delivered, lagged_msgs, dropped, others, out_of_order, pings, bad_frames;
    uint64_t first_write_ns, last_recv_ns, first_recv_ns;
    uint64_t hist[HIST_BUCKETS];
    uint64_t lat_max_ns;
    int first_error;
} g;

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- latency histogram (microseconds, log-linear) ---- */

static unsigned hist_index(uint64_t us)
{
    if (us < 2 * SUB)
        return (unsigned)us;
    unsigned e = 63 - (unsigned)__builtin_clzll(us); /* >= SUB_BITS + 1 */
    unsigned shift = e - SUB_BITS;
    unsigned mant = (unsigned)(us >> shift) - SUB; /* 0 .. SUB-1 */
    unsigned idx = 2 * SUB + (e - SUB_BITS - 1) * SUB + mant;
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static double hist_value(unsigned idx)
{
    if (idx < 2 * SUB)
        return idx;
    unsigned e = (idx - 2 * SUB) / SUB + SUB_BITS + 1;
    unsigned mant = (idx - 2 * SUB) % SUB + SUB;
    unsigned shift = e - SUB_BITS;
    return ((double)mant + 0.5) * (double)(1ull << shift); /* middle of the bucket */
}

static double hist_quantile(double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += g.hist[i];
    if (!total)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total)
        rank = total - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += g.hist[i];
        if (seen > rank)
            return hist_value(i);
    }
    return 0;
}

/* ---- messages ---- */

static long long scan_number(const char *p, const char *end)
{
    long long v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    return v;
}

static const char *find(const char *p, size_t len, const char *needle)
{
    return memmem(p, len, needle, strlen(needle));
}

static void on_text(conn_t *c, const char *p, size_t len)
{
    const char *end = p + len;
    const char *t = find(p, len, "t=");
    bool json = len && p[0] == '{';
    if (t && (!json || find(p, len, "\"type\":\"log\""))) {
        uint64_t wrote = (uint64_t)scan_number(t + 2, end);
        const char *n = find(t, (size_t)(end - t), "n=");
        long long seq = n ? scan_number(n + 2, end) : 0;
        uint64_t lat = g.now_ns > wrote ? g.now_ns - wrote : 0;
        g.hist[hist_index(lat / 1000)]++;
        if (lat > g.lat_max_ns)
            g.lat_max_ns = lat;
        if (!g.first_write_ns || wrote < g.first_write_ns)
            g.first_write_ns = wrote;
        if (!g.first_recv_ns)
            g.first_recv_ns = g.now_ns;
        g.last_recv_ns = g.now_ns;
        g.last_line_ms = uv_now(g.loop);
        g.delivered++;
        c->delivered++;
        if (seq <= c->last_n)
            g.out_of_order++;
        c->last_n = seq;
        return;
    }
    if (json && find(p, len, "\"type\":\"lagged\"")) {
        const char *d = find(p, len, "\"dropped\":");
        g.lagged_msgs++;
        if (d)
            g.dropped += (uint64_t)scan_number(d + 10, end);
        return;
    }
    if (json && find(p, len, "\"type\":\"end\"")) {
        if (!c->ended) {
            c->ended = true;
            g.ended++;
        }
        return;
    }
    bool status = json && find(p, len, "\"type\":\"status\"");
    if (g.others++ < 5 && !status) /* an error or a notice the bench should show */
        fprintf(stderr, "ws_watchers: message: %.*s\n", (int)(len > 300 ? 300 : len), p);
}

/* ---- connections ---- */

static void start_next(void);

static void on_out_written(uv_write_t *req, int status)
{
    (void)status;
    free(container_of(req, out_t, req));
}

/* A masked client frame (the mask only has to be unpredictable to intermediaries). */
static void send_frame(conn_t *c, uint8_t op, const char *payload, size_t len)
{
    if (c->state != CONN_OPEN || len > 125)
        return;
    out_t *o = malloc(sizeof(*o) + 6 + len);
    if (!o)
        abort();
    uint32_t key = (uint32_t)rand();
    uint8_t *p = (uint8_t *)o->data;
    p[0] = (uint8_t)(0x80 | op);
    p[1] = (uint8_t)(0x80 | len);
    memcpy(p + 2, &key, 4);
    for (size_t i = 0; i < len; i++)
        p[6 + i] = (uint8_t)payload[i] ^ p[2 + i % 4];
    uv_buf_t buf = uv_buf_init(o->data, (unsigned)(6 + len));
    if (uv_write(&o->req, (uv_stream_t *)&c->tcp, &buf, 1, on_out_written) != 0)
        free(o);
}

static void on_closed(uv_handle_t *h)
{
    conn_t *c = container_of((uv_tcp_t *)h, conn_t, tcp);
    free(c->carry);
    free(c->frag);
    c->carry = c->frag = NULL;
    c->state = CONN_DONE;
}

static void conn_close(conn_t *c)
{
    if (c->state == CONN_CLOSING || c->state == CONN_DONE)
        return;
    bool was_connecting = c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE;
    if (was_connecting) {
        c->failed = true;
        g.failed++;
        g.inflight--;
    }
    c->state = CONN_CLOSING;
    g.closed++;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    if (was_connecting)
        start_next();
}

static void on_message(conn_t *c, uint8_t op, const char *p, size_t len)
{
    switch (op) {
    case 1:
    case 2:
        on_text(c, p, len);
        break;
    case 8:
        if (!c->ended) {
            c->ended = true;
            g.ended++;
        }
        send_frame(c, 8, p, len >= 2 ? 2 : 0);
        uv_read_stop((uv_stream_t *)&c->tcp);
        conn_close(c);
        break;
    case 9:
        g.pings++;
        send_frame(c, 10, p, len);
        break;
    default:
        break;
    }
}

/* Parses complete frames from p; returns the bytes consumed, or -1 on a protocol error. */
static long parse_frames(conn_t *c, const char *p, size_t len)
{
    size_t pos = 0;
    while (c->state == CONN_OPEN && len - pos >= 2) {
        const uint8_t *f = (const uint8_t *)p + pos;
        bool fin = f[0] & 0x80;
        uint8_t op = f[0] & 0x0f;
        uint64_t plen = f[1] & 0x7f;
        size_t hdr = 2;
        if (f[1] & 0x80)
            return -1; /* servers do not mask */
        if (plen == 126) {
            if (len - pos < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            hdr = 4;
        } else if (plen == 127) {
            if (len - pos < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | f[2 + i];
            hdr = 10;
        }
        if (plen > MSG_MAX)
            return -1;
        if (len - pos < hdr + plen)
            break;
        const char *payload = p + pos + hdr;
        pos += hdr + (size_t)plen;
        if (op >= 8) {
            on_message(c, op, payload, (size_t)plen);
        } else if (op != 0 && fin && !c->frag) {
            on_message(c, op, payload, (size_t)plen);
        } else {
            if ((op == 0) != (c->frag != NULL) || c->frag_len + plen > MSG_MAX)
                return -1;
            if (!c->frag) {
                c->frag = malloc(MSG_MAX);
                if (!c->frag)
                    abort();
                c->frag_op = op;
                c->frag_len = 0;
            }
            memcpy(c->frag + c->frag_len, payload, (size_t)plen);
            c->frag_len += (size_t)plen;
            if (fin) {
                on_message(c, c->frag_op, c->frag, c->frag_len);
                free(c->frag);
                c->frag = NULL;
            }
        }
    }
    return (long)pos;
}

static void carry_set(conn_t *c, const char *p, size_t len)
{
    if (len > c->carry_cap) {
        char *n = realloc(c->carry, len);
        if (!n)
            abort();
        c->carry = n;
        c->carry_cap = len;
    }
    memmove(c->carry, p, len);
    c->carry_len = len;
}

static void upgraded(conn_t *c)
{
    c->state = CONN_OPEN;
    g.upgraded++;
    g.inflight--;
    if (g.upgraded + g.failed == g.nconns) {
        g.ready = true;
        g.ready_ms = uv_now(g.loop);
        printf("{\"event\":\"ready\",\"upgraded\":%u,\"failed\":%u,\"seconds\":%.2f}\n", g.upgraded,
               g.failed, (double)(g.ready_ms - g.started_ms) / 1000.0);
        fflush(stdout);
    }
    start_next();
}

/* The response head; returns the bytes it took, 0 while incomplete, -1 when refused. */
static long parse_head(conn_t *c, const char *p, size_t len)
{
    const char *end = find(p, len, "\r\n\r\n");
    if (!end)
        return len > HEAD_MAX ? -1 : 0;
    size_t hl = (size_t)(end - p) + 4;
    bool ok = hl > 12 && memcmp(p, "HTTP/1.1 101", 12) == 0;
    bool accept = false;
    for (const char *l = p; ok && l < end;) {
        const char *nl = find(l, (size_t)(end - l) + 2, "\r\n");
        if (nl - l > 21 && strncasecmp(l, "sec-websocket-accept:", 21) == 0)
            accept = true;
        l = nl + 2;
    }
    if (!ok || !accept) {
        if (!g.first_error) {
            fprintf(stderr, "ws_watchers: upgrade refused: %.*s\n", (int)(find(p, hl, "\r\n") - p),
                    p);
            g.first_error = 1;
        }
        return -1;
    }
    upgraded(c);
    return (long)hl;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(g.rbuf, sizeof(g.rbuf)); /* parsed before the next read starts */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = container_of((uv_tcp_t *)s, conn_t, tcp);
    if (nread < 0) {
        if (c->state == CONN_OPEN && !c->ended) {
            c->ended = true;
            g.ended++;
        }
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    g.now_ns = wall_ns();
    const char *p = buf->base;
    size_t len = (size_t)nread;
    if (c->carry_len) {
        size_t old = c->carry_len;
        if (old + len > c->carry_cap) {
            size_t cap = old + len;
            char *n = realloc(c->carry, cap);
            if (!n)
                abort();
            c->carry = n;
            c->carry_cap = cap;
        }
        memcpy(c->carry + old, p, len);
        c->carry_len = 0;
        p = c->carry;
        len += old;
    }
    size_t pos = 0;
    if (c->state == CONN_HANDSHAKE) {
        long r = parse_head(c, p, len);
        if (r < 0) {
            conn_close(c);
            return;
        }
        pos = (size_t)r;
        if (r == 0) {
            carry_set(c, p, len);
            return;
        }
    }
    long r = parse_frames(c, p + pos, len - pos);
    if (r < 0) {
        g.bad_frames++;
        conn_close(c);
        return;
    }
    pos += (size_t)r;
    if (c->state == CONN_OPEN && pos < len)
        carry_set(c, p + pos, len - pos);
}

static void on_hs_written(uv_write_t *req, int status)
{
    conn_t *c = container_of(req, conn_t, hs_write);
    if (status < 0)
        conn_close(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = container_of(req, conn_t, connect);
    if (c->state != CONN_CONNECTING)
        return;
    if (status < 0) {
        if (!g.first_error) {
            fprintf(stderr, "ws_watchers: connect: %s\n", uv_strerror(status));
            g.first_error = 1;
        }
        conn_close(c);
        return;
    }
    c->state = CONN_HANDSHAKE;
    uv_buf_t buf = uv_buf_init(g.reqhead, (unsigned)g.reqhead_len);
    if (uv_write(&c->hs_write, (uv_stream_t *)&c->tcp, &buf, 1, on_hs_written) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void start_next(void)
{
    while (g.next < g.nconns && g.inflight < g.concurrency && !g.finished) {
        conn_t *c = &g.conns[g.next++];
        c->state = CONN_CONNECTING;
        g.inflight++;
        if (uv_tcp_init(g.loop, &c->tcp) != 0) {
            c->state = CONN_DONE;
            c->failed = true;
            g.failed++;
            g.inflight--;
            continue;
        }
        uv_tcp_nodelay(&c->tcp, 1);
        int r = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&g.addr, on_connect);
        if (r != 0) {
            if (!g.first_error) {
                fprintf(stderr, "ws_watchers: connect: %s\n", uv_strerror(r));
                g.first_error = 1;
            }
            conn_close(c);
        }
    }
}

/* ---- the run ---- */

static void summary(void)
{
    uint64_t min = UINT64_MAX, max = 0;
    for (unsigned i = 0; i < g.nconns; i++) {
        if (g.conns[i].failed)
            continue;
        min = g.conns[i].delivered < min ? g.conns[i].delivered : min;
        max = g.conns[i].delivered > max ? g.conns[i].delivered : max;
    }
    if (min == UINT64_MAX)
        min = 0;
    double span =
        g.last_recv_ns > g.first_write_ns ? (double)(g.last_recv_ns - g.first_write_ns) / 1e9 : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    long long missing =
        g.expect > 0 ? g.expect * (long long)g.upgraded - (long long)g.delivered : -1;
    printf("{\"event\":\"summary\",\"mode\":\"%s\",\"conns\":%u,\"upgraded\":%u,\"failed\":%u,"
           "\"ended\":%u,\"delivered\":%" PRIu64 ",\"expected\":%lld,\"missing\":%lld,"
           "\"lagged_msgs\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"other_msgs\":%" PRIu64
           ",\"out_of_order\":%" PRIu64 ",\"pings\":%" PRIu64 ",\"bad_frames\":%" PRIu64
           ",\"per_conn_min\":%" PRIu64 ",\"per_conn_max\":%" PRIu64 ",\"span_s\":%.3f,"
           "\"rate_per_s\":%.0f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"client_cpu_s\":%.2f}\n",
           g.mode == MODE_FANOUT ? "fanout" : "idle", g.nconns, g.upgraded, g.failed, g.ended,
           g.delivered, g.expect > 0 ? g.expect * (long long)g.upgraded : -1LL, missing,
           g.lagged_msgs, g.dropped, g.others, g.out_of_order, g.pings, g.bad_frames, min, max,
           span, span > 0 ? (double)g.delivered / span : 0.0, hist_quantile(0.50) / 1000.0,
           hist_quantile(0.90) / 1000.0, hist_quantile(0.99) / 1000.0,
           hist_quantile(0.999) / 1000.0, (double)g.lat_max_ns / 1e6, cpu);
    fflush(stdout);
}

static void finish(void)
{
    if (g.finished)
        return;
    g.finished = true;
    summary();
    uv_timer_stop(&g.tick);
    uv_close((uv_handle_t *)&g.tick, NULL);
    uv_close((uv_handle_t *)&g.sigterm, NULL);
    uv_close((uv_handle_t *)&g.sigint, NULL);
    for (unsigned i = 0; i < g.next; i++)
        conn_close(&g.conns[i]);
}

static void on_tick(uv_timer_t *t)
{
    uint64_t now = uv_now(t->loop);
    if (now - g.started_ms >= g.timeout_ms) {
        fprintf(stderr, "ws_watchers: timed out after %" PRIu64 " ms\n", g.timeout_ms);
        finish();
        return;
    }
    if (!g.ready)
        return;
    if (g.mode == MODE_IDLE) {
        if (g.hold_ms && now - g.ready_ms >= g.hold_ms)
            finish();
        return;
    }
    if (g.ended >= g.upgraded)
        finish();
    else if (g.last_line_ms && now - g.last_line_ms >= g.idle_ms)
        finish();
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    finish();
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ws_watchers --port P --path /p [--host 127.0.0.1] [--token T] [--conns N]\n"
            "       [--mode fanout|idle] [--concurrency N] [--expect LINES] [--idle-ms MS]\n"
            "       [--timeout-ms MS] [--hold-ms MS]\n");
    exit(2);
}

static void base64(char *out, const uint8_t *in, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}

int main(int argc, char **argv)
{
    g.host = "127.0.0.1";
    g.nconns = 1000;
    g.concurrency = 128;
    g.timeout_ms = 120000;
    g.idle_ms = 3000;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(k, "--host"))
            g.host = v;
        else if (!strcmp(k, "--port"))
            g.port = atoi(v);
        else if (!strcmp(k, "--path"))
            g.path = v;
        else if (!strcmp(k, "--token"))
            g.token = v;
        else if (!strcmp(k, "--conns"))
            g.nconns = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(k, "--concurrency"))
            g.concurrency = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(k, "--expect"))
            g.expect = atoll(v);
        else if (!strcmp(k, "--idle-ms"))
            g.idle_ms = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--timeout-ms"))
            g.timeout_ms = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--hold-ms"))
            g.hold_ms = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--mode") && !strcmp(v, "idle"))
            g.mode = MODE_IDLE;
        else if (!strcmp(k, "--mode") && !strcmp(v, "fanout"))
            g.mode = MODE_FANOUT;
        else
            usage();
    }
    if (!g.port || !g.path || !g.nconns || !g.concurrency || strlen(g.path) > 512 ||
        (g.token && strlen(g.token) > 256))
        usage();
    if (uv_ip4_addr(g.host, g.port, &g.addr) != 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)wall_ns());

    uint8_t raw[16];
    char key[32];
    for (int i = 0; i < 16; i++)
        raw[i] = (uint8_t)rand();
    base64(key, raw, sizeof(raw));
    int n = snprintf(g.reqhead, sizeof(g.reqhead),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     g.path, g.host, g.port, key, g.token ? "Authorization: Bearer " : "",
                     g.token ? g.token : "", g.token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(g.reqhead))
        usage();
    g.reqhead_len = (size_t)n;

    g.conns = calloc(g.nconns, sizeof(*g.conns));
    if (!g.conns)
        abort();
    g.loop = uv_default_loop();
    uv_timer_init(g.loop, &g.tick);
    uv_signal_init(g.loop, &g.sigterm);
    uv_signal_init(g.loop, &g.sigint);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    g.started_ms = uv_now(g.loop);
    uv_timer_start(&g.tick, on_tick, TICK_MS, TICK_MS);
    start_next();
    uv_run(g.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(g.loop) == 0 ? 0 : 1;
    free(g.conns);
    return g.upgraded == 0 ? 1 : rc;
}
