/* HTTP/1.1 client: one request per connection on the loop.
 *
 * A request resolves its host (unless it is an IP literal), connects, writes the whole
 * request and parses the answer with llhttp. Every way it can end - answer, error, timeout,
 * cancel - goes through finish(), which records the result and closes the handles; the
 * callback runs from the last close callback, so it is never synchronous and the body is
 * still alive while it runs.
 *
 * https runs a memory-BIO session of tls.c: bytes read from the socket go in, and whatever
 * it wants sent (handshake, the encrypted request, alerts) is drained into uv_write after
 * every step, so the TLS state machine never touches the socket and the loop never blocks. */
#include "slipway/client.h"

#include <ctype.h>
#include <strings.h>
#include <errno.h>
#include <limits.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "slipway/buf.h"
#include "slipway/common.h"
#include "slipway/log.h"
#include "slipway/tls.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_TIMEOUT_MS         10000
#define DEFAULT_MAX_BODY           (1024 * 1024)
#define MAX_RESPONSE_HEADER_BYTES  (64 * 1024)
#define MAX_HOST_LEN               253
#define MAX_METHOD_LEN             32
#define MAX_PATH_LEN               8192
#define READ_BUF_SIZE              16384
#define HANDLE_COUNT               3 /* tcp, timer, connect_timer */
#define REASON_LEN                 200

typedef enum {
    HC_RESOLVING,
    HC_CONNECTING,
    HC_EXCHANGING, /* writing the request and reading the answer */
    HC_CLOSING,    /* the result is known; handles are closing */
    HC_MAX
} hc_state_t;

struct sw_httpc {
    union { /* the connection: TCP, or a unix socket (sw_httpc_req_t.unix_path) */
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } sock;
    uv_timer_t timer;         /* the whole request */
    uv_timer_t connect_timer; /* until connected */
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    uv_write_t write_req;
    llhttp_t parser;
    llhttp_settings_t settings;
    hc_state_t state;
    int closes_pending;
    bool resolving; /* the getaddrinfo request has not called back: memory must outlive it */
    bool delivered;
    bool head;     /* a HEAD request: the answer has no body whatever it says */
    bool complete; /* the final answer was parsed */
    bool got_bytes;
    bool handshaken; /* https: the TLS handshake is done and the request encrypted */
    int write_err;   /* a failed write, reported only if no answer arrives */
    int parse_err;   /* why a callback refused the answer */
    int result;
    int http_status;
    size_t max_body;
    bool truncate_body;
    size_t header_bytes;
    /* sw_httpc_req_t.capture_header: the name, and whether the field being read is it */
    const char *capture;
    char *capture_out;
    size_t capture_size;
    char field[64];
    size_t field_len;
    bool field_too_long, in_value, capturing, captured;
    sw_buf_t out; /* the request */
    sw_buf_t body;
    sw_httpc_cb cb;
    void *payload;
    SSL *ssl;                 /* https only; owns both memory BIOs */
    char why[REASON_LEN];     /* a failure's one-line reason, or "" */
    char rbuf[READ_BUF_SIZE]; /* a socket read, then (https) the plaintext OpenSSL makes of it */
};

/* The process's TLS context: built on the first https request or by sw_httpc_tls_init. Each
 * SSL holds a reference, so replacing it never pulls it from under a request in flight. */
static SSL_CTX *tls_ctx;

/* ---- ending ---- */

static void maybe_free(sw_httpc_t *c)
{
    if (!c->delivered || c->resolving)
        return;
    SSL_free(c->ssl);
    sw_buf_free(&c->out);
    sw_buf_free(&c->body);
    free(c);
}

static void on_close(uv_handle_t *h)
{
    sw_httpc_t *c = h->data;
    if (--c->closes_pending > 0)
        return;
    c->delivered = true;
    if (c->result == 0)
        c->cb(0, c->http_status, c->body.base ? c->body.base : "", c->body.len, c->payload);
    else
        c->cb(c->result, 0, c->why[0] ? c->why : NULL, strlen(c->why), c->payload);
    maybe_free(c);
}

static void finish(sw_httpc_t *c, int result)
{
    if (c->state == HC_CLOSING)
        return;
    c->state = HC_CLOSING;
    c->result = result;
    /* If the lookup already runs on the threadpool this fails and on_resolved frees later. */
    if (c->resolving)
        (void)uv_cancel((uv_req_t *)&c->gai);
    uv_close(&c->sock.handle, on_close);
    uv_close((uv_handle_t *)&c->timer, on_close);
    uv_close((uv_handle_t *)&c->connect_timer, on_close);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, -ETIMEDOUT);
}

/* ---- llhttp callbacks ---- */

static int refuse(sw_httpc_t *c, int err)
{
    c->parse_err = err;
    return HPE_USER;
}

static int count_header_bytes(llhttp_t *p, size_t len)
{
    sw_httpc_t *c = p->data;
    c->header_bytes += len;
    if (c->header_bytes > MAX_RESPONSE_HEADER_BYTES)
        return refuse(c, -EMSGSIZE);
    return 0;
}

static int on_header_data(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    return count_header_bytes(p, len);
}

/* Header fields arrive in pieces; with capture_header set, the first field of that name has
 * its value copied out (truncated to fit). */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    sw_httpc_t *c = p->data;
    if (c->in_value) {
        c->in_value = false;
        c->field_len = 0;
        c->field_too_long = false;
    }
    if (len > sizeof(c->field) - 1 - c->field_len)
        c->field_too_long = true;
    else
        memcpy(c->field + c->field_len, at, len), c->field_len += len;
    return count_header_bytes(p, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    sw_httpc_t *c = p->data;
    if (!c->in_value) {
        c->in_value = true;
        c->field[c->field_len] = '\0';
        c->capturing = c->capture && !c->captured && !c->field_too_long &&
                       strcasecmp(c->field, c->capture) == 0;
        if (c->capturing) {
            c->captured = true;
            c->capture_out[0] = '\0';
        }
    }
    if (c->capturing) {
        size_t have = strlen(c->capture_out), room = c->capture_size - 1 - have;
        memcpy(c->capture_out + have, at, SW_MIN(len, room));
        c->capture_out[have + SW_MIN(len, room)] = '\0';
    }
    return count_header_bytes(p, len);
}

static int on_headers_complete(llhttp_t *p)
{
    sw_httpc_t *c = p->data;
    int status = llhttp_get_status_code(p);
    c->http_status = status;
    if (c->head)
        return 1; /* tells llhttp there is no body */
    bool bodyless = status / 100 == 1 || status == 204 || status == 304;
    /* Refuse an announced oversize body before reading any of it. */
    if (!bodyless && !c->truncate_body && !(p->flags & F_CHUNKED) &&
        (p->flags & F_CONTENT_LENGTH) && p->content_length > c->max_body)
        return refuse(c, -EMSGSIZE);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    sw_httpc_t *c = p->data;
    if (len > c->max_body - c->body.len) {
        if (!c->truncate_body)
            return refuse(c, -EMSGSIZE);
        sw_buf_append(&c->body, at, c->max_body - c->body.len);
    } else {
        sw_buf_append(&c->body, at, len);
    }
    if (c->truncate_body && c->body.len == c->max_body) {
        /* Enough of it: the answer is what fits, and the rest is never waited for. */
        c->complete = true;
        return HPE_PAUSED;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    sw_httpc_t *c = p->data;
    int status = llhttp_get_status_code(p);
    if (status / 100 == 1 && status != 101) {
        /* An interim answer (100 Continue): the final one follows on the same connection. */
        c->header_bytes = 0;
        sw_buf_reset(&c->body);
        return HPE_PAUSED;
    }
    c->http_status = status;
    c->complete = true;
    /* Stop here: whatever follows the answer is not ours to parse. */
    return HPE_PAUSED;
}

/* ---- reading and writing ---- */

static void feed(sw_httpc_t *c, const char *data, size_t len)
{
    while (len > 0) {
        llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
        if (c->complete) {
            finish(c, 0);
            return;
        }
        if (err == HPE_OK)
            return;
        if (err != HPE_PAUSED) {
            finish(c, c->parse_err ? c->parse_err : -EPROTO);
            return;
        }
        /* Paused after an interim answer: parse the rest of this read. */
        const char *pos = llhttp_get_error_pos(&c->parser);
        llhttp_resume(&c->parser);
        len -= (size_t)(pos - data);
        data = pos;
    }
}

static void on_eof(sw_httpc_t *c)
{
    if (!c->got_bytes && c->write_err) {
        finish(c, c->write_err);
        return;
    }
    /* Ends a body delimited by the connection close (no Content-Length, not chunked) by
     * calling on_message_complete; anything else cut short is refused. */
    (void)llhttp_finish(&c->parser);
    finish(c, c->complete ? 0 : -EPROTO);
}

/* ---- TLS ---- */

static int load_pem(SSL_CTX *ctx, const char *what, const char *path, char *why, size_t len)
{
    int rc = sw_tls_file_readable(what, path, why, len);
    if (rc != 0)
        return rc;
    if (SSL_CTX_load_verify_file(ctx, path) != 1) {
        char head[128];
        snprintf(head, sizeof(head), "%s holds no usable PEM certificate", what);
        sw_tls_reason(why, len, head);
        return -EINVAL;
    }
    return 0;
}

int sw_httpc_tls_init(const char *ca_file, char *why, size_t why_len)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        sw_tls_reason(why, why_len, "cannot create a TLS context");
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* The hashed directory is consulted per certificate a chain needs, so trusting the whole
     * system store costs nothing up front; the bundle file would be parsed whole (~1.4 MB). A
     * missing directory only means nothing in it is trusted. */
    const char *dir = getenv(X509_get_default_cert_dir_env());
    if (!dir || !dir[0])
        dir = X509_get_default_cert_dir();
    (void)SSL_CTX_load_verify_dir(ctx, dir);
    ERR_clear_error();
    const char *bundle = getenv(X509_get_default_cert_file_env());
    int rc = 0;
    if (bundle && bundle[0])
        rc = load_pem(ctx, "SSL_CERT_FILE", bundle, why, why_len);
    if (rc == 0 && ca_file && ca_file[0])
        rc = load_pem(ctx, "the CA file", ca_file, why, why_len);
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    SSL_CTX_free(tls_ctx);
    tls_ctx = ctx;
    return 0;
}

void sw_httpc_tls_cleanup(void)
{
    SSL_CTX_free(tls_ctx);
    tls_ctx = NULL;
}

typedef struct {
    uv_write_t req; /* first: the write callback gets this pointer */
    char data[];
} tls_write_t;

static void on_tls_write(uv_write_t *req, int status)
{
    sw_httpc_t *c = req->data;
    if (status < 0 && c->state == HC_EXCHANGING)
        c->write_err = status;
    free((tls_write_t *)req);
}

/* Sends whatever OpenSSL queued in the outgoing BIO. */
static int tls_flush(sw_httpc_t *c)
{
    size_t n = sw_tls_output_len(c->ssl);
    if (n == 0)
        return 0;
    if (n > UINT_MAX)
        return -EMSGSIZE; /* cannot happen: requests are capped at UINT_MAX / 2 */
    tls_write_t *w = sw_malloc(sizeof(*w) + n);
    if (sw_tls_output_take(c->ssl, w->data, n) != n) {
        free(w);
        return -EIO;
    }
    w->req.data = c;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, &c->sock.stream, &buf, 1, on_tls_write);
    if (rc < 0)
        free(w);
    return rc;
}

static void tls_fail(sw_httpc_t *c)
{
    long v = SSL_get_verify_result(c->ssl);
    if (!c->handshaken && v != X509_V_OK) {
        snprintf(c->why, sizeof(c->why), "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
        sw_tls_clear_errors();
        finish(c, -EKEYREJECTED);
        return;
    }
    sw_tls_reason(c->why, sizeof(c->why), c->handshaken ? "TLS failed" : "TLS handshake failed");
    finish(c, -EPROTO);
}

/* Advances the connection after bytes arrived (or, first, after the TCP connect): the
 * handshake, then the request once, then every answer byte OpenSSL can decrypt. */
static void tls_pump(sw_httpc_t *c)
{
    if (!c->handshaken) {
        int r = sw_tls_handshake(c->ssl);
        if (r == -EAGAIN)
            goto flush;
        if (r != 0) {
            tls_fail(c);
            return;
        }
        c->handshaken = true;
        if (sw_tls_write(c->ssl, c->out.base, c->out.len) != 0) {
            tls_fail(c);
            return;
        }
    }
    for (;;) {
        ssize_t n = sw_tls_read(c->ssl, c->rbuf, sizeof(c->rbuf));
        if (n > 0) {
            c->got_bytes = true;
            feed(c, c->rbuf, (size_t)n);
            if (c->state != HC_EXCHANGING)
                return;
            continue;
        }
        if (n == -EAGAIN)
            break;
        if (n == -ESHUTDOWN) {
            on_eof(c);
            return;
        }
        tls_fail(c);
        return;
    }
flush:;
    int rc = tls_flush(c);
    if (rc < 0)
        finish(c, rc);
}

static void tls_input(sw_httpc_t *c, const char *data, size_t len)
{
    int rc = sw_tls_input(c->ssl, data, len);
    if (rc < 0) {
        finish(c, rc);
        return;
    }
    tls_pump(c);
}

/* The socket ended without close_notify. An answer that announced its length has already
 * completed; one that ends only at the close may have been cut by anyone on the path. */
static void tls_eof(sw_httpc_t *c)
{
    if (!c->got_bytes && c->write_err) {
        finish(c, c->write_err);
        return;
    }
    snprintf(c->why, sizeof(c->why), "%s",
             c->handshaken ? "the connection closed without TLS close_notify before the answer "
                             "ended"
                           : "the server closed the connection during the TLS handshake");
    finish(c, -EPROTO);
}

/* SNI and the name or address the certificate must carry. */
static int tls_setup(sw_httpc_t *c, const char *name, bool literal)
{
    if (!tls_ctx) {
        char why[REASON_LEN] = "";
        int rc = sw_httpc_tls_init(NULL, why, sizeof(why));
        if (rc != 0) {
            /* Only a bad SSL_CERT_FILE or an exhausted OpenSSL gets here; say which. */
            sw_log_kv(SW_LOG_ERROR, NULL, "https is unavailable", "error", why, NULL);
            return rc;
        }
    }
    int rc = sw_tls_session_new(&c->ssl, tls_ctx, false);
    if (rc < 0)
        return rc;
    int ok;
    if (literal) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name);
    } else {
        /* "example.com." names the same host, but SNI and certificates spell it without. */
        char host[MAX_HOST_LEN + 1];
        size_t n = strlen(name);
        if (n > 1 && name[n - 1] == '.')
            n--;
        memcpy(host, name, n);
        host[n] = '\0';
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(c->ssl, host) == 1 && SSL_set1_host(c->ssl, host) == 1;
    }
    sw_tls_clear_errors();
    return ok ? 0 : -EINVAL;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sw_httpc_t *c = h->data;
    (void)suggested;
    /* One read is parsed completely before the next one starts. */
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sw_httpc_t *c = s->data;
    if (c->state != HC_EXCHANGING)
        return;
    if (nread == UV_EOF) {
        if (c->ssl)
            tls_eof(c);
        else
            on_eof(c);
        return;
    }
    if (nread < 0) {
        finish(c, (int)nread);
        return;
    }
    if (nread == 0)
        return;
    if (c->ssl) {
        tls_input(c, buf->base, (size_t)nread);
        return;
    }
    c->got_bytes = true;
    feed(c, buf->base, (size_t)nread);
}

static void on_write(uv_write_t *w, int status)
{
    sw_httpc_t *c = w->data;
    /* A server may answer early (413) and close before reading everything: keep reading,
     * and report the write error only if no answer comes. */
    if (status < 0 && c->state == HC_EXCHANGING)
        c->write_err = status;
}

static void on_connect(uv_connect_t *req, int status)
{
    sw_httpc_t *c = req->data;
    int rc = status;
    if (c->state != HC_CONNECTING)
        return; /* closed meanwhile: status is UV_ECANCELED */
    if (rc < 0)
        goto out;
    uv_timer_stop(&c->connect_timer);
    c->state = HC_EXCHANGING;
    if (c->ssl) {
        rc = uv_read_start(&c->sock.stream, on_alloc, on_read);
        if (rc == 0)
            tls_pump(c); /* sends the ClientHello */
        goto out;
    }
    uv_buf_t buf = uv_buf_init(c->out.base, (unsigned)c->out.len);
    rc = uv_write(&c->write_req, &c->sock.stream, &buf, 1, on_write);
    if (rc < 0)
        goto out;
    rc = uv_read_start(&c->sock.stream, on_alloc, on_read);
out:
    if (rc < 0)
        finish(c, rc);
}

static void start_connect(sw_httpc_t *c, const struct sockaddr *addr)
{
    c->state = HC_CONNECTING;
    int rc = uv_tcp_connect(&c->connect_req, &c->sock.tcp, addr, on_connect);
    if (rc < 0)
        finish(c, rc);
}

int sw_httpc_resolve_error(int rc)
{
    switch (rc) {
    case UV_EAI_NONAME:
    case UV_EAI_NODATA:
    case UV_EAI_ADDRFAMILY:
    case UV_EAI_FAMILY:
        return -EHOSTUNREACH;
    case UV_EAI_AGAIN:
        return -EAGAIN;
    case UV_EAI_MEMORY:
        return -ENOMEM;
    case UV_EAI_CANCELED:
        return -ECANCELED;
    default:
        return rc <= UV_EAI_ADDRFAMILY && rc >= UV_EAI_PROTOCOL ? -EIO : rc;
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sw_httpc_t *c = req->data;
    c->resolving = false;
    if (c->state != HC_RESOLVING) {
        if (res)
            uv_freeaddrinfo(res);
        maybe_free(c);
        return;
    }
    if (status < 0 || !res)
        finish(c, status < 0 ? sw_httpc_resolve_error(status) : -EHOSTUNREACH);
    else
        start_connect(c, res->ai_addr);
    if (res)
        uv_freeaddrinfo(res);
}

/* ---- validation and the request ---- */

static bool method_valid(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > MAX_METHOD_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = m[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            return false;
    }
    return true;
}

static bool path_valid(const char *p)
{
    if (p[0] != '/' || strlen(p) > MAX_PATH_LEN)
        return false;
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= ' ' || ch == 0x7f) /* CR, LF, space and other controls */
            return false;
    }
    return true;
}

static bool name_valid(const char *h, size_t n)
{
    if (n == 0 || n > MAX_HOST_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_'))
            return false;
    }
    return true;
}

static bool header_is(const char *h, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(h, name, n) == 0 && h[n] == ':';
}

static bool header_valid(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h || strpbrk(h, "\r\n"))
        return false;
    for (const char *p = h; p < colon; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return false; /* not a token: "Content-Length :" must not slip past the checks */
    /* The client frames the body and the connection itself; a caller's copy would conflict. */
    return !header_is(h, "content-length") && !header_is(h, "transfer-encoding") &&
           !header_is(h, "connection");
}

/* A caller may name the virtual host or the agent itself (a proxy's admin API checks Host). */
static bool caller_sets(const sw_httpc_req_t *req, const char *name)
{
    for (const char *const *hp = req->headers; hp && *hp; hp++)
        if (header_is(*hp, name))
            return true;
    return false;
}

typedef struct {
    char name[MAX_HOST_LEN + 1]; /* without brackets */
    bool literal;
    bool v6;
    struct sockaddr_storage addr;
} host_t;

static int parse_host(const char *host, uint16_t port, host_t *out)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
        if (!memchr(host, ':', n))
            return -EINVAL; /* brackets are for IPv6 literals only */
    }
    if (n == 0 || n > MAX_HOST_LEN)
        return -EINVAL;
    memcpy(out->name, host, n);
    out->name[n] = '\0';
    if (uv_ip4_addr(out->name, port, (struct sockaddr_in *)&out->addr) == 0) {
        out->literal = true;
        return 0;
    }
    if (memchr(out->name, ':', n)) {
        if (strpbrk(out->name, "\r\n ") ||
            uv_ip6_addr(out->name, port, (struct sockaddr_in6 *)&out->addr) != 0)
            return -EINVAL;
        out->literal = true;
        out->v6 = true;
        return 0;
    }
    return name_valid(out->name, n) ? 0 : -EINVAL;
}

static void build_request(sw_buf_t *b, const char *method, const sw_httpc_req_t *req,
                          const host_t *h)
{
    sw_buf_reserve(b, 256 + strlen(req->path) + req->body_len);
    sw_buf_printf(b, "%s %s HTTP/1.1\r\n", method, req->path);
    if (!caller_sets(req, "host")) {
        sw_buf_printf(b, "Host: %s%s%s", h->v6 ? "[" : "", h->name, h->v6 ? "]" : "");
        if (req->port != (req->tls ? 443 : 80))
            sw_buf_printf(b, ":%u", (unsigned)req->port);
        sw_buf_append(b, "\r\n", 2);
    }
    if (!caller_sets(req, "user-agent"))
        sw_buf_append_cstr(b, "User-Agent: slipway\r\n");
    sw_buf_append_cstr(b, "Connection: close\r\n");
    for (const char *const *hp = req->headers; hp && *hp; hp++) {
        sw_buf_append_cstr(b, *hp);
        sw_buf_append(b, "\r\n", 2);
    }
    if (req->body)
        sw_buf_printf(b, "Content-Length: %zu\r\n", req->body_len);
    sw_buf_append(b, "\r\n", 2);
    if (req->body_len)
        sw_buf_append(b, req->body, req->body_len);
}

int sw_httpc_request(uv_loop_t *loop, const sw_httpc_req_t *req, sw_httpc_cb cb, void *payload,
                     sw_httpc_t **out)
{
    host_t host = {0};
    sw_httpc_t *c = NULL;
    int rc = -EINVAL;

    if (!loop || !req || !cb || !out || !req->host || !req->path || req->port == 0)
        goto out;
    const char *method = req->method ? req->method : "GET";
    if (!method_valid(method) || !path_valid(req->path))
        goto out;
    /* uv_buf_t lengths are unsigned int; no legitimate request comes near this. */
    if ((!req->body && req->body_len) || req->body_len > UINT_MAX / 2)
        goto out;
    if (req->unix_path && (req->tls || strlen(req->unix_path) >= 108 || !req->unix_path[0]))
        goto out; /* sun_path's size */
    for (const char *const *hp = req->headers; hp && *hp; hp++)
        if (!header_valid(*hp))
            goto out;
    rc = parse_host(req->host, req->port, &host);
    if (rc < 0)
        goto out;

    c = sw_calloc(1, sizeof(*c));
    if (req->tls) {
        rc = tls_setup(c, host.name, host.literal);
        if (rc < 0)
            goto out;
    }
    rc = req->unix_path ? uv_pipe_init(loop, &c->sock.pipe, 0) : uv_tcp_init(loop, &c->sock.tcp);
    if (rc < 0)
        goto out;
    c->cb = cb;
    c->payload = payload;
    c->head = strcmp(method, "HEAD") == 0;
    c->max_body = req->max_body ? req->max_body : DEFAULT_MAX_BODY;
    c->truncate_body = req->truncate_body;
    if (req->capture_header && req->header_value && req->header_value_size > 0) {
        c->capture = req->capture_header;
        c->capture_out = req->header_value;
        c->capture_size = req->header_value_size;
        c->capture_out[0] = '\0';
    }
    c->state = HC_RESOLVING;
    build_request(&c->out, method, req, &host);

    llhttp_settings_init(&c->settings);
    c->settings.on_status = on_header_data;
    c->settings.on_header_field = on_header_field;
    c->settings.on_header_value = on_header_value;
    c->settings.on_headers_complete = on_headers_complete;
    c->settings.on_body = on_body;
    c->settings.on_message_complete = on_message_complete;
    llhttp_init(&c->parser, HTTP_RESPONSE, &c->settings);
    c->parser.data = c;

    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->connect_timer);
    c->sock.handle.data = c->timer.data = c->connect_timer.data = c;
    c->gai.data = c->connect_req.data = c->write_req.data = c;
    c->closes_pending = HANDLE_COUNT;
    uv_timer_start(&c->timer, on_timeout, req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS,
                   0);
    uv_timer_start(&c->connect_timer, on_timeout,
                   req->connect_timeout_ms ? req->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS,
                   0);

    /* From here every failure is reported through cb, which the close callbacks make
     * asynchronous. */
    if (req->unix_path) {
        c->state = HC_CONNECTING;
        uv_pipe_connect(&c->connect_req, &c->sock.pipe, req->unix_path, on_connect);
    } else if (req->addr) {
        struct sockaddr_storage ss = {0};
        if (req->addr->sa_family == AF_INET)
            memcpy(&ss, req->addr, sizeof(struct sockaddr_in));
        else if (req->addr->sa_family == AF_INET6)
            memcpy(&ss, req->addr, sizeof(struct sockaddr_in6));
        if (ss.ss_family)
            start_connect(c, (const struct sockaddr *)&ss);
        else
            finish(c, -EAFNOSUPPORT);
    } else if (host.literal) {
        start_connect(c, (const struct sockaddr *)&host.addr);
    } else {
        char service[8];
        snprintf(service, sizeof(service), "%u", (unsigned)req->port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_protocol = IPPROTO_TCP,
                                 .ai_flags = AI_NUMERICSERV};
        int grc = uv_getaddrinfo(loop, &c->gai, on_resolved, host.name, service, &hints);
        if (grc < 0)
            finish(c, sw_httpc_resolve_error(grc));
        else
            c->resolving = true;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (c) {
        /* tls_setup or uv_tcp_init failed: no handle exists yet. */
        SSL_free(c->ssl);
        sw_buf_free(&c->out);
        free(c);
    }
    return rc;
}

void sw_httpc_cancel(sw_httpc_t *c)
{
    if (c)
        finish(c, -ECANCELED);
}
