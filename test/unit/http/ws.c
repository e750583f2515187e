/* Tests for src/http/ws.c: a real loop and server whose handler accepts WebSockets and echoes
 * text, and a raw-socket client on a thread that speaks the protocol byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "slipway/ws.h"

#define KEY        "dGhlIHNhbXBsZSBub25jZQ=="
#define KEY_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455, 1.3 */

typedef struct fixture fixture_t;
typedef void (*scenario_fn)(fixture_t *f, int fd);

struct fixture {
    uv_loop_t loop;
    sw_http_server_t *server;
    uv_async_t done;  /* the client is finished: drain */
    uv_async_t drain; /* the client asks for a drain while it is still connected */
    uint16_t port;
    sw_ws_opts_t opts;
    const char *handshake; /* NULL: a valid one */
    scenario_fn scenario;
    char error[256]; /* the client's first failed check, or empty */
    sw_buf_t head;   /* the handshake answer */
    int closes;
    uint16_t close_code;
    uint64_t parsers_at_close; /* wslay contexts alive when on_close ran, this one's included */
    bool drained;
    bool client_done;
};

/* ---- server side ---- */

static void on_ws_message(sw_ws_t *ws, bool text, const char *data, size_t len, void *ud)
{
    (void)ud;
    if (len == 8 && memcmp(data, "close-me", 8) == 0) {
        sw_ws_close(ws, 4000, "bye");
        return;
    }
    if (len == 5 && memcmp(data, "flood", 5) == 0) {
        /* 32 MiB: far more than loopback socket buffers hold, so most of it stays queued
         * while nobody reads. One shared frame, written by reference. */
        static char chunk[64 * 1024];
        memset(chunk, 'x', sizeof(chunk));
        sw_shared_t *frame = sw_ws_encode_text(chunk, sizeof(chunk));
        for (int i = 0; i < 512; i++)
            sw_ws_send_frame(ws, frame);
        sw_shared_unref(frame);
        return;
    }
    (void)text;
    sw_ws_send_text(ws, data, len);
}

static void on_ws_close(sw_ws_t *ws, uint16_t code, void *ud)
{
    fixture_t *f = ud;
    (void)ws;
    sw_ws_stats_t st;
    f->closes++;
    f->close_code = code;
    sw_ws_stats(&st);
    f->parsers_at_close = st.parsers;
}

static void on_request(sw_http_req_t *req, void *payload)
{
    fixture_t *f = payload;
    static const sw_ws_cbs_t cbs = {.on_message = on_ws_message, .on_close = on_ws_close};
    if (!sw_ws_requested(req)) {
        sw_http_respond(req, 200, "text/plain", "plain", 5);
        return;
    }
    sw_ws_accept(req, &f->opts, &cbs, f);
}

/* The loop ends when the server has drained and the client is finished, in either order. */
static void maybe_finish(fixture_t *f)
{
    if (!f->drained || !f->client_done)
        return;
    uv_close((uv_handle_t *)&f->done, NULL);
    uv_close((uv_handle_t *)&f->drain, NULL);
}

static void on_drained(sw_http_server_t *s, void *payload)
{
    fixture_t *f = payload;
    (void)s;
    f->drained = true;
    maybe_finish(f);
}

static void on_drain(uv_async_t *a)
{
    fixture_t *f = a->data;
    sw_http_server_drain(f->server);
}

static void on_done(uv_async_t *a)
{
    fixture_t *f = a->data;
    f->client_done = true;
    sw_http_server_drain(f->server);
    maybe_finish(f);
}

/* ---- client side ---- */

#define CHECK(f, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (!(f)->error[0])                                                                    \
                snprintf((f)->error, sizeof((f)->error), __VA_ARGS__);                             \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static bool send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool recv_all(int fd, void *data, size_t len)
{
    char *p = data;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* A client frame into b: masked unless told otherwise. */
static void encode_frame(sw_buf_t *b, bool fin, uint8_t opcode, bool masked, const void *data,
                         size_t len)
{
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t h[14];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len <= UINT16_MAX) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    if (masked) {
        h[1] |= 0x80;
        memcpy(h + hl, mask, 4);
        hl += 4;
    }
    sw_buf_append(b, h, hl);
    for (size_t i = 0; i < len; i++)
        sw_buf_append_char(b, (char)(((const uint8_t *)data)[i] ^ (masked ? mask[i % 4] : 0)));
}

static bool send_frame(int fd, bool fin, uint8_t opcode, bool masked, const void *data, size_t len)
{
    sw_buf_t b = SW_BUF_INIT;
    encode_frame(&b, fin, opcode, masked, data, len);
    bool ok = send_all(fd, b.base, b.len);
    sw_buf_free(&b);
    return ok;
}

/* One byte per segment, so the server's parser sees the frame in pieces. */
static bool send_frame_bytewise(int fd, const void *data, size_t len)
{
    sw_buf_t b = SW_BUF_INIT;
    int one = 1;
    bool ok = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0;
    encode_frame(&b, true, 0x1, true, data, len);
    for (size_t i = 0; ok && i < b.len; i++)
        ok = send_all(fd, b.base + i, 1);
    sw_buf_free(&b);
    return ok;
}

typedef struct {
    bool fin;
    uint8_t opcode;
    sw_buf_t payload;
} frame_t;

/* Reads one server frame; false on EOF, error or the receive timeout. */
static bool read_frame(int fd, frame_t *fr)
{
    uint8_t h[2];
    sw_buf_reset(&fr->payload);
    if (!recv_all(fd, h, 2))
        return false;
    fr->fin = h[0] & 0x80;
    fr->opcode = h[0] & 0x0f;
    if (h[1] & 0x80)
        return false; /* server frames are never masked */
    uint64_t len = h[1] & 0x7f;
    if (len >= 126) {
        uint8_t ext[8];
        size_t n = len == 126 ? 2 : 8;
        if (!recv_all(fd, ext, n))
            return false;
        len = 0;
        for (size_t i = 0; i < n; i++)
            len = len << 8 | ext[i];
    }
    sw_buf_reserve(&fr->payload, len);
    if (len && !recv_all(fd, fr->payload.base, len))
        return false;
    fr->payload.len = len;
    fr->payload.base[len] = '\0';
    return true;
}

static uint16_t close_code(const frame_t *fr)
{
    if (fr->payload.len < 2)
        return 0;
    return (uint16_t)((uint8_t)fr->payload.base[0] << 8 | (uint8_t)fr->payload.base[1]);
}

/* After the server's close: the connection ends (EOF or reset), nothing more comes. */
static bool reads_eof(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Reads the server's close frame; checks its code, and its reason unless NULL. */
static bool got_close(int fd, uint16_t code, const char *reason)
{
    frame_t fr = {0};
    bool ok = read_frame(fd, &fr) && fr.opcode == 0x8 && close_code(&fr) == code;
    if (ok && reason)
        ok = fr.payload.len == 2 + strlen(reason) &&
             memcmp(fr.payload.base + 2, reason, strlen(reason)) == 0;
    sw_buf_free(&fr.payload);
    return ok;
}

static bool send_close(int fd, uint16_t code)
{
    uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return send_frame(fd, true, 0x8, true, payload, sizeof(payload));
}

/* Expects a close frame with code, then the end of the connection. */
static void expect_close(fixture_t *f, int fd, uint16_t code)
{
    CHECK(f, got_close(fd, code, NULL), "no close frame with code %u", code);
    CHECK(f, reads_eof(fd), "the connection stayed open after close %u", code);
}

static void *client(void *arg)
{
    fixture_t *f = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    /* Every wait in a scenario is bounded by this. */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(f->error, sizeof(f->error), "connect: %s", strerror(errno));
        goto out;
    }
    const char *hs = f->handshake ? f->handshake
                                  : "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                    "Connection: keep-alive, Upgrade\r\n"
                                    "Sec-WebSocket-Key: " KEY "\r\n"
                                    "Sec-WebSocket-Version: 13\r\n\r\n";
    send_all(fd, hs, strlen(hs));
    /* The answer's head, byte by byte so no frame bytes are swallowed. */
    char c;
    while (!strstr(f->head.base ? f->head.base : "", "\r\n\r\n") && recv(fd, &c, 1, 0) == 1)
        sw_buf_append_char(&f->head, c);
    if (f->scenario)
        f->scenario(f, fd);
out:
    close(fd);
    uv_async_send(&f->done);
    return NULL;
}

static void run(fixture_t *f)
{
    sw_http_server_opts_t o = {
        .max_header_bytes = 16384,
        .max_headers = 100,
        .max_body_bytes = 1 << 20,
        .max_connections = 100,
        .max_pipelined = 32,
        .header_timeout_ms = 5000,
        .body_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .drain_timeout_ms = 2000,
        .on_request = on_request,
        .on_drained = on_drained,
        .payload = f,
    };
    if (!f->opts.max_message)
        f->opts = (sw_ws_opts_t){.max_message = 1 << 20,
                                 .ping_interval_ms = 30000,
                                 .pong_timeout_ms = 30000,
                                 .close_timeout_ms = 1000};
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(sw_http_server_new(&f->server, &f->loop, &o), 0);
    assert_int_equal(sw_http_server_listen(f->server, "127.0.0.1:0"), 0);
    char addr[64];
    assert_int_equal(sw_http_server_address(f->server, 0, addr, sizeof(addr)), 0);
    f->port = (uint16_t)atoi(strrchr(addr, ':') + 1);
    uv_async_init(&f->loop, &f->done, on_done);
    f->done.data = f;
    uv_async_init(&f->loop, &f->drain, on_drain);
    f->drain.data = f;

    pthread_t th;
    pthread_create(&th, NULL, client, f);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    assert_true(f->drained);
    sw_http_server_free(f->server);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sw_ws_stats_t st;
    sw_ws_stats(&st);
    assert_int_equal(st.connections, 0);
}

/* Small limits and timers for the tests that reach them. */
static sw_ws_opts_t small_opts(uint32_t ping_ms, uint32_t pong_ms, uint32_t close_ms)
{
    return (sw_ws_opts_t){.max_message = 1000,
                          .ping_interval_ms = ping_ms,
                          .pong_timeout_ms = pong_ms,
                          .close_timeout_ms = close_ms};
}

/* Runs a scenario over an accepted connection and checks it passed. */
static void run_scenario(fixture_t *f, scenario_fn fn)
{
    f->scenario = fn;
    run(f);
    assert_string_equal(f->error, "");
    assert_non_null(strstr(f->head.base, "HTTP/1.1 101 "));
    sw_buf_free(&f->head);
}

/* ---- pure functions ---- */

static void test_accept_key_rfc_sample(void **state)
{
    (void)state;
    char out[29];
    sw_ws_accept_key(KEY, strlen(KEY), out);
    assert_string_equal(out, KEY_ACCEPT);
}

static void check_encoded(size_t len, const uint8_t *head, size_t hl)
{
    char *data = calloc(len + 1, 1);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)('a' + i % 26);
    sw_shared_t *s = sw_ws_encode_text(data, len);
    assert_int_equal(s->refs, 1);
    assert_int_equal(s->len, hl + len);
    assert_memory_equal(s->data, head, hl);
    if (len)
        assert_memory_equal(s->data + hl, data, len);
    sw_shared_unref(s);
    free(data);
}

static void test_encode_text_lengths(void **state)
{
    (void)state;
    check_encoded(0, (const uint8_t[]){0x81, 0x00}, 2);
    check_encoded(125, (const uint8_t[]){0x81, 125}, 2);
    check_encoded(126, (const uint8_t[]){0x81, 126, 0x00, 126}, 4);
    check_encoded(65535, (const uint8_t[]){0x81, 126, 0xff, 0xff}, 4);
    check_encoded(65536, (const uint8_t[]){0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}, 10);
}

/* ---- handshake ---- */

static void test_handshake_answers_accept_key(void **state)
{
    (void)state;
    fixture_t f = {0};
    run(&f);
    assert_string_equal(f.error, "");
    assert_non_null(strstr(f.head.base, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strcasestr(f.head.base, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strcasestr(f.head.base, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(f.head.base, "\r\nSec-WebSocket-Accept: " KEY_ACCEPT "\r\n"));
    assert_null(strcasestr(f.head.base, "Content-Length"));
    assert_null(strcasestr(f.head.base, "Transfer-Encoding"));
    sw_buf_free(&f.head);
    /* The client left without a close frame. */
    assert_int_equal(f.closes, 1);
    assert_int_equal(f.close_code, 1006);
}

static void run_bad_handshake(const char *request, const char *status)
{
    fixture_t f = {0};
    f.handshake = request;
    run(&f);
    assert_string_equal(f.error, "");
    assert_non_null(f.head.base);
    assert_non_null(strstr(f.head.base, status));
    if (strstr(status, "426"))
        assert_non_null(strstr(f.head.base, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_int_equal(f.closes, 0);
    sw_buf_free(&f.head);
}

static void test_bad_handshakes(void **state)
{
    (void)state;
    run_bad_handshake("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n",
                      "HTTP/1.1 400 ");
    run_bad_handshake("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
                      "HTTP/1.1 400 ");
    run_bad_handshake("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
                      "HTTP/1.1 426 ");
    run_bad_handshake(
        "POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Content-Length: 0\r\n"
        "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "HTTP/1.1 400 ");
    run_bad_handshake(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
        "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "HTTP/1.1 400 ");
}

/* ---- frames ---- */

static void echo_and_close(fixture_t *f, int fd)
{
    frame_t fr = {0};
    bool ok = send_frame(fd, true, 0x1, true, "hello", 5) && read_frame(fd, &fr);
    bool match = ok && fr.fin && fr.opcode == 0x1 && strcmp(fr.payload.base, "hello") == 0;
    sw_buf_free(&fr.payload);
    CHECK(f, match, "the text was not echoed");
    /* A frame whose bytes arrive in pieces. */
    static const char text[] = "a frame in pieces, \xc3\xa9t\xc3\xa9 included";
    ok = send_frame_bytewise(fd, text, sizeof(text) - 1) && read_frame(fd, &fr);
    match = ok && fr.opcode == 0x1 && strcmp(fr.payload.base, text) == 0;
    sw_buf_free(&fr.payload);
    CHECK(f, match, "the frame sent byte by byte was not echoed");
    /* A message sent in three fragments. */
    ok = send_frame(fd, false, 0x1, true, "frag", 4) &&
         send_frame(fd, false, 0x0, true, "men", 3) && send_frame(fd, true, 0x0, true, "ted", 3) &&
         read_frame(fd, &fr);
    match = ok && fr.opcode == 0x1 && strcmp(fr.payload.base, "fragmented") == 0;
    sw_buf_free(&fr.payload);
    CHECK(f, match, "the fragments were not reassembled");
    CHECK(f, send_close(fd, 1000), "send close");
    expect_close(f, fd, 1000);
}

static void test_echo_fragments_and_close_handshake(void **state)
{
    (void)state;
    fixture_t f = {0};
    run_scenario(&f, echo_and_close);
    assert_int_equal(f.closes, 1);
    assert_int_equal(f.close_code, 1000);
    assert_int_equal(f.parsers_at_close, 1); /* messages came: wslay parsed them */
}

static void ping_pong(fixture_t *f, int fd)
{
    frame_t fr = {0};
    /* A ping between two fragments of a message is answered at once. */
    bool ok = send_frame(fd, false, 0x1, true, "ab", 2) &&
              send_frame(fd, true, 0x9, true, "are you there", 13) && read_frame(fd, &fr);
    bool match = ok && fr.opcode == 0xa && strcmp(fr.payload.base, "are you there") == 0;
    sw_buf_free(&fr.payload);
    CHECK(f, match, "the ping was not answered with its pong");
    ok = send_frame(fd, true, 0x0, true, "cd", 2) && read_frame(fd, &fr);
    match = ok && fr.opcode == 0x1 && strcmp(fr.payload.base, "abcd") == 0;
    sw_buf_free(&fr.payload);
    CHECK(f, match, "the message around the ping was lost");
    CHECK(f, send_frame(fd, true, 0x8, true, NULL, 0), "send close");
    expect_close(f, fd, 0); /* an empty close is echoed empty */
}

static void test_ping_is_answered_with_pong(void **state)
{
    (void)state;
    fixture_t f = {0};
    run_scenario(&f, ping_pong);
    assert_int_equal(f.close_code, 1005);
}

static void unmasked(fixture_t *f, int fd)
{
    CHECK(f, send_frame(fd, true, 0x1, false, "hello", 5), "send");
    expect_close(f, fd, 1002);
}

static void invalid_utf8(fixture_t *f, int fd)
{
    /* Valid in the first fragment, broken across the boundary in the second. */
    CHECK(f, send_frame(fd, false, 0x1, true, "ok \xc3", 4), "send");
    CHECK(f, send_frame(fd, true, 0x0, true, "\x28", 1), "send");
    expect_close(f, fd, 1007);
}

static void oversize(fixture_t *f, int fd)
{
    static char big[600];
    memset(big, 'a', sizeof(big));
    /* Each fragment fits; together they pass the cap of 1000. */
    CHECK(f, send_frame(fd, false, 0x1, true, big, sizeof(big)), "send");
    CHECK(f, send_frame(fd, true, 0x0, true, big, sizeof(big)), "send");
    expect_close(f, fd, 1009);
}

/* Only the header of a frame over the cap: the refusal must not wait for the payload. */
static void oversize_header_only(fixture_t *f, int fd)
{
    static const uint8_t head[] = {0x81, 0x80 | 126, 0x07, 0xD0, 1, 2, 3, 4}; /* 2000 bytes */
    CHECK(f, send_all(fd, head, sizeof(head)), "send");
    expect_close(f, fd, 1009);
}

/* The second fragment's header takes the message past the cap; its payload never comes. */
static void oversize_fragment_header_only(fixture_t *f, int fd)
{
    static char big[600];
    static const uint8_t head[] = {0x80, 0x80 | 126, 0x02, 0x58, 1, 2, 3, 4}; /* 600 bytes */
    memset(big, 'a', sizeof(big));
    CHECK(f, send_frame(fd, false, 0x1, true, big, sizeof(big)), "send");
    CHECK(f, send_all(fd, head, sizeof(head)), "send");
    expect_close(f, fd, 1009);
}

/* A close payload of one byte is neither empty nor a code. */
static void one_byte_close(fixture_t *f, int fd)
{
    CHECK(f, send_frame(fd, true, 0x8, true, "\x03", 1), "send");
    expect_close(f, fd, 1002);
}

/* A control frame longer than 125 bytes is malformed at the frame level. */
static const uint8_t long_ping[] = {0x89, 0x80 | 126, 0x00, 200, 1, 2, 3, 4};

static void bad_header(fixture_t *f, int fd)
{
    CHECK(f, send_all(fd, long_ping, sizeof(long_ping)), "send");
    expect_close(f, fd, 1002);
}

static void test_protocol_errors_close_with_their_codes(void **state)
{
    (void)state;
    struct {
        scenario_fn fn;
        uint16_t code;
    } cases[] = {
        {unmasked, 1002},      {invalid_utf8, 1007},         {oversize, 1009},
        {bad_header, 1002},    {oversize_header_only, 1009}, {oversize_fragment_header_only, 1009},
        {one_byte_close, 1002}};
    sw_ws_stats_t before, after;
    sw_ws_stats(&before);
    for (size_t i = 0; i < SW_ARRAY_SIZE(cases); i++) {
        fixture_t f = {.opts = small_opts(30000, 30000, 1000)};
        run_scenario(&f, cases[i].fn);
        assert_int_equal(f.closes, 1);
        assert_int_equal(f.close_code, cases[i].code);
    }
    sw_ws_stats(&after);
    assert_int_equal(after.protocol_errors - before.protocol_errors, SW_ARRAY_SIZE(cases));
}

static void server_closes(fixture_t *f, int fd)
{
    CHECK(f, send_frame(fd, true, 0x1, true, "close-me", 8), "send");
    CHECK(f, got_close(fd, 4000, "bye"), "no close 4000 \"bye\"");
    /* The server waits for our close before it ends the connection. */
    CHECK(f, send_close(fd, 4000), "send close");
    CHECK(f, reads_eof(fd), "the server did not close after the handshake");
}

static void test_server_initiated_close(void **state)
{
    (void)state;
    fixture_t f = {0};
    run_scenario(&f, server_closes);
    assert_int_equal(f.close_code, 4000);
}

static void close_unanswered(fixture_t *f, int fd)
{
    CHECK(f, send_frame(fd, true, 0x1, true, "close-me", 8), "send");
    CHECK(f, got_close(fd, 4000, "bye"), "no close 4000 \"bye\"");
    /* We never answer: the close timeout ends it. */
    CHECK(f, reads_eof(fd), "the server waited for our close forever");
}

static void garbage_after_close(fixture_t *f, int fd)
{
    CHECK(f, send_frame(fd, true, 0x1, true, "close-me", 8), "send");
    CHECK(f, got_close(fd, 4000, "bye"), "no close 4000 \"bye\"");
    /* A malformed frame instead of our close: the connection ends, with no second close. */
    CHECK(f, send_all(fd, long_ping, sizeof(long_ping)), "send");
    CHECK(f, reads_eof(fd), "more came after the server's close");
}

static void test_malformed_frame_after_our_close_ends_it(void **state)
{
    (void)state;
    fixture_t f = {0};
    run_scenario(&f, garbage_after_close);
    assert_int_equal(f.close_code, 4000);
}

static void test_unanswered_close_times_out(void **state)
{
    (void)state;
    fixture_t f = {.opts = small_opts(30000, 30000, 50)};
    run_scenario(&f, close_unanswered);
    assert_int_equal(f.close_code, 4000);
}

static void drained(fixture_t *f, int fd)
{
    uv_async_send(&f->drain);
    CHECK(f, got_close(fd, 1001, NULL), "no close 1001 on drain");
    CHECK(f, send_close(fd, 1001), "send close");
    CHECK(f, reads_eof(fd), "the server did not close after the handshake");
}

static void test_server_drain_closes_with_1001(void **state)
{
    (void)state;
    fixture_t f = {0};
    run_scenario(&f, drained);
    assert_int_equal(f.close_code, 1001);
}

static void silent_peer(fixture_t *f, int fd)
{
    frame_t fr = {0};
    int pings = 0;
    /* Answer the first two pings, then fall silent; ten would mean it never gave up. */
    while (pings < 10) {
        if (!read_frame(fd, &fr))
            break;
        CHECK(f, fr.opcode == 0x9, "opcode %u instead of a ping", fr.opcode);
        if (++pings <= 2)
            CHECK(f, send_frame(fd, true, 0xa, true, fr.payload.base, fr.payload.len), "pong");
    }
    sw_buf_free(&fr.payload);
    CHECK(f, pings == 3, "%d pings before the server gave up, wanted 3", pings);
}

static void test_silent_peer_is_closed_after_the_pong_timeout(void **state)
{
    (void)state;
    fixture_t f = {.opts = small_opts(20, 60, 1000)};
    run_scenario(&f, silent_peer);
    assert_int_equal(f.closes, 1);
    assert_int_equal(f.close_code, 1006);
    /* Pings out and pongs back never needed wslay: a listener costs no parser. */
    assert_int_equal(f.parsers_at_close, 0);
}

static void flood_unread(fixture_t *f, int fd)
{
    /* Ask for more than the socket buffers hold, read none of it, and send pings whose
     * pongs would pile up behind it. */
    CHECK(f, send_frame(fd, true, 0x1, true, "flood", 5), "send");
    static uint8_t ping[125];
    bool dropped = false;
    for (int i = 0; i < 4096 && !dropped; i++)
        dropped = !send_frame(fd, true, 0x9, true, ping, sizeof(ping));
    if (!dropped) {
        /* Everything was sent before the drop: the end shows on reading. */
        char buf[65536];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
            ;
        dropped = n == 0 || errno == ECONNRESET;
    }
    CHECK(f, dropped, "the server kept a peer that sends and never reads");
}

static void test_peer_that_does_not_read_is_dropped(void **state)
{
    (void)state;
    fixture_t f = {0};
    run_scenario(&f, flood_unread);
    assert_int_equal(f.closes, 1);
    assert_int_equal(f.close_code, 1006);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_rfc_sample),
        cmocka_unit_test(test_encode_text_lengths),
        cmocka_unit_test(test_handshake_answers_accept_key),
        cmocka_unit_test(test_bad_handshakes),
        cmocka_unit_test(test_echo_fragments_and_close_handshake),
        cmocka_unit_test(test_ping_is_answered_with_pong),
        cmocka_unit_test(test_protocol_errors_close_with_their_codes),
        cmocka_unit_test(test_server_initiated_close),
        cmocka_unit_test(test_unanswered_close_times_out),
        cmocka_unit_test(test_malformed_frame_after_our_close_ends_it),
        cmocka_unit_test(test_server_drain_closes_with_1001),
        cmocka_unit_test(test_silent_peer_is_closed_after_the_pong_timeout),
        cmocka_unit_test(test_peer_that_does_not_read_is_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
