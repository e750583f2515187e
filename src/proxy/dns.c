/* The DNS responder Caddy's dynamic upstreams ask (RFC 1035 over UDP, RFC 2782 SRV).
 *
 * Neither a release switch nor a new domain may change Caddy's configuration: Caddy 2.6
 * closes every proxied WebSocket on every config load. So Caddy has one route for every
 * host, whose upstreams are the SRV name <request host>.host.slipway., looked up here again
 * every SLIPWAY_PROXY_REFRESH_MS; a switch or a domain only changes what this answers. Each
 * SRV target, <release>.<address>.ip.slipway., spells its own address (answered without
 * state), and carries the release, which Caddy copies into the Slipway-Release response
 * header. A host that no route takes, or whose app serves no release, is sent to the edge
 * (edge.c), which says so. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "slipway/log.h"

#define DNS_HEADER     12
#define DNS_UDP_PLAIN  512  /* without EDNS */
#define DNS_UDP_EDNS   1232 /* what we offer and accept with EDNS */
#define DNS_MAX_LABELS 130  /* a hostname of 127 labels, then host.slipway */

enum { T_A = 1, T_AAAA = 28, T_SRV = 33, T_OPT = 41, C_IN = 1 };
enum { RC_OK = 0, RC_FORMERR = 1, RC_NXDOMAIN = 3, RC_NOTIMP = 4 };

struct sw_dns {
    uv_udp_t udp;
    const sw_routes_t *routes;
    char address[80];
    void (*on_log)(const char *line, size_t len, void *payload);
    void *log_payload;
    void (*on_closed)(void *payload);
    void *closed_payload;
};

/* ---- names ---- */

int sw_dns_target(const char *release, const char *endpoint, char *out, size_t out_size,
                  uint16_t *port)
{
    char host[64];
    if (sw_config_split_hostport(endpoint, host, sizeof(host), port) != 0 || *port == 0)
        return -EINVAL;
    char label[40];
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        const uint8_t *b = (const uint8_t *)&a4;
        snprintf(label, sizeof(label), "%u-%u-%u-%u", b[0], b[1], b[2], b[3]);
    } else if (inet_pton(AF_INET6, host, &a6) == 1) {
        label[0] = 'x';
        for (int i = 0; i < 16; i++)
            snprintf(label + 1 + 2 * i, 3, "%02x", a6.s6_addr[i]);
    } else {
        return -EINVAL;
    }
    int n = snprintf(out, out_size, "%s.%s.ip." SW_DNS_SUFFIX ".", release[0] ? release : "none",
                     label);
    return n > 0 && (size_t)n < out_size ? 0 : -EINVAL;
}

/* The address a label spells: 4 bytes for a-b-c-d, 16 for x + 32 hex digits, 0 otherwise. */
static size_t label_address(const char *label, uint8_t out[16])
{
    if (label[0] == 'x' && strlen(label) == 33) {
        for (int i = 0; i < 16; i++) {
            char hex[3] = {label[1 + 2 * i], label[2 + 2 * i], 0};
            if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]))
                return 0;
            out[i] = (uint8_t)strtoul(hex, NULL, 16);
        }
        return 16;
    }
    unsigned v[4];
    char tail;
    if (sscanf(label, "%3u-%3u-%3u-%3u%c", &v[0], &v[1], &v[2], &v[3], &tail) != 4)
        return 0;
    for (int i = 0; i < 4; i++) {
        if (v[i] > 255)
            return 0;
        out[i] = (uint8_t)v[i];
    }
    return 4;
}

/* ---- the wire ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool full; /* a record did not fit */
} wbuf_t;

static void put(wbuf_t *w, const void *data, size_t n)
{
    if (w->full || n > w->cap - w->len) {
        w->full = true;
        return;
    }
    memcpy(w->p + w->len, data, n);
    w->len += n;
}

static void put16(wbuf_t *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

/* A dotted name ("a.b.") as labels. */
static void put_name(wbuf_t *w, const char *name)
{
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t n = dot ? (size_t)(dot - name) : strlen(name);
        uint8_t len = (uint8_t)n;
        put(w, &len, 1);
        put(w, name, n);
        name += n + (dot ? 1 : 0);
    }
    put(w, "", 1);
}

/* Reads the question's name into labels (lower-cased); returns the offset after it, 0 on a
 * malformed or compressed name. */
static size_t read_name(const uint8_t *q, size_t qlen, size_t off, char labels[][64], int *nlabels)
{
    *nlabels = 0;
    size_t total = 0;
    while (off < qlen) {
        uint8_t n = q[off++];
        if (n == 0)
            return off;
        if (n > 63 || n > qlen - off || *nlabels == DNS_MAX_LABELS || (total += n + 1) > 254)
            return 0; /* pointers (0xc0) in a question, and names over 255 bytes with the root
                       * label, are refused */
        for (uint8_t i = 0; i < n; i++) {
            if (q[off + i] == 0)
                return 0; /* would cut the name short where it is read as a string */
            labels[*nlabels][i] = (char)tolower(q[off + i]);
        }
        labels[*nlabels][n] = '\0';
        (*nlabels)++;
        off += n;
    }
    return 0;
}

static void put_header(wbuf_t *w, const uint8_t *q, int rcode, unsigned qd, unsigned an,
                       unsigned ar)
{
    uint8_t flags0 = (uint8_t)(0x80 | (q[2] & 0x79)); /* QR, the opcode, AA unset yet, RD */
    put(w, q, 2);                                     /* the id */
    uint8_t f[2] = {(uint8_t)(flags0 | 0x04), (uint8_t)(rcode & 0x0f)}; /* AA */
    put(w, f, 2);
    put16(w, qd);
    put16(w, an);
    put16(w, 0);
    put16(w, ar);
}

static void put_rr_head(wbuf_t *w, unsigned type, unsigned rdlen)
{
    put16(w, 0xc000 | DNS_HEADER); /* the name: a pointer to the question's */
    put16(w, type);
    put16(w, C_IN);
    put16(w, 0); /* TTL 0: the client's own refresh decides how long an answer holds */
    put16(w, 0);
    put16(w, rdlen);
}

static void set_count(wbuf_t *w, size_t at, unsigned v)
{
    w->p[at] = (uint8_t)(v >> 8);
    w->p[at + 1] = (uint8_t)v;
}

size_t sw_dns_answer(const sw_routes_t *t, const char *edge, const uint8_t *q, size_t qlen,
                     uint8_t *out, size_t out_size)
{
    if (qlen < DNS_HEADER || (q[2] & 0x80) || out_size < DNS_UDP_PLAIN)
        return 0; /* too short to answer, or itself an answer: never reply to those */
    wbuf_t w = {.p = out, .cap = SW_MIN(out_size, (size_t)DNS_UDP_PLAIN)};
    unsigned qd = (unsigned)(q[4] << 8 | q[5]), ar = (unsigned)(q[10] << 8 | q[11]);
    if (((q[2] >> 3) & 0x0f) != 0) {
        put_header(&w, q, RC_NOTIMP, 0, 0, 0);
        return w.len;
    }
    char labels[DNS_MAX_LABELS][64];
    int nl;
    size_t qend = qd == 1 ? read_name(q, qlen, DNS_HEADER, labels, &nl) : 0;
    if (qend == 0 || qend + 4 > qlen) {
        put_header(&w, q, RC_FORMERR, 0, 0, 0);
        return w.len;
    }
    unsigned qtype = (unsigned)(q[qend] << 8 | q[qend + 1]);
    unsigned qclass = (unsigned)(q[qend + 2] << 8 | q[qend + 3]);
    qend += 4;
    /* EDNS: an OPT record in the additional section offers a larger answer. */
    bool edns = false;
    if (ar >= 1 && qend + 11 <= qlen && q[qend] == 0 && (q[qend + 1] << 8 | q[qend + 2]) == T_OPT) {
        edns = true;
        size_t offered = (size_t)(q[qend + 3] << 8 | q[qend + 4]);
        w.cap =
            SW_MIN(out_size, SW_MIN(SW_MAX(offered, (size_t)DNS_UDP_PLAIN), (size_t)DNS_UDP_EDNS)) -
            11; /* room for our OPT */
    }

    /* What the name is: the upstreams of a request's host, or an address. */
    int rcode = RC_NXDOMAIN;
    const sw_route_t *route = NULL;
    bool to_edge = false;
    uint8_t addr[16];
    size_t addr_len = 0;
    if (qclass == C_IN && nl >= 3 && strcmp(labels[nl - 1], SW_DNS_SUFFIX) == 0) {
        if (strcmp(labels[nl - 2], "host") == 0) {
            char host[256]; /* read_name kept the whole name under 256 bytes */
            size_t at = 0;
            for (int i = 0; i < nl - 2; i++)
                at +=
                    (size_t)snprintf(host + at, sizeof(host) - at, "%s%s", i ? "." : "", labels[i]);
            route = sw_routes_find_host(t, host);
            if (route && route->nendpoints == 0)
                route = NULL;
            to_edge = !route && edge;
            rcode = route || to_edge ? RC_OK : RC_NXDOMAIN;
        } else if (nl == 4 && strcmp(labels[2], "ip") == 0) {
            addr_len = label_address(labels[1], addr);
            rcode = addr_len ? RC_OK : RC_NXDOMAIN;
        }
    }

    put_header(&w, q, rcode, 1, 0, edns ? 1 : 0);
    put(&w, q + DNS_HEADER, qend - DNS_HEADER); /* the question, as asked */
    unsigned an = 0;
    if ((route || to_edge) && qtype == T_SRV) {
        size_t n = route ? route->nendpoints : 1;
        for (size_t i = 0; i < n; i++) {
            char target[160];
            uint16_t port;
            if (sw_dns_target(route ? route->release : "edge", route ? route->endpoints[i] : edge,
                              target, sizeof(target), &port) != 0)
                continue;
            wbuf_t rec = {.p = (uint8_t[200]){0}, .cap = 200};
            put16(&rec, 0); /* priority */
            put16(&rec, 1); /* weight: all alike */
            put16(&rec, port);
            put_name(&rec, target);
            size_t before = w.len;
            put_rr_head(&w, T_SRV, (unsigned)rec.len);
            put(&w, rec.p, rec.len);
            if (w.full) {
                /* No truncation bit (that would send the client to TCP, which is not served
                 * here): the endpoints that fit are answered, which is every endpoint for up
                 * to five instances without EDNS. */
                w.len = before;
                w.full = false;
                break;
            }
            an++;
        }
    } else if (addr_len &&
               ((qtype == T_A && addr_len == 4) || (qtype == T_AAAA && addr_len == 16))) {
        put_rr_head(&w, qtype, (unsigned)addr_len);
        put(&w, addr, addr_len);
        an = w.full ? 0 : 1;
    }
    set_count(&w, 6, an);
    if (edns) {
        w.cap += 11;
        put(&w, (uint8_t[]){0, 0, T_OPT, DNS_UDP_EDNS >> 8, DNS_UDP_EDNS & 0xff, 0, 0, 0, 0, 0, 0},
            11);
    }
    return w.len;
}

/* ---- the socket ---- */

/* Room for a line of Caddy's log too (they carry the CA's whole answer); a query is at most
 * DNS_UDP_EDNS, and so is every answer. */
#define RECV_MAX 65536

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    static char slab[RECV_MAX];
    (void)h;
    *buf = uv_buf_init(slab, sizeof(slab));
}

typedef struct {
    uv_udp_send_t req;
    uint8_t data[DNS_UDP_EDNS];
} send_t;

static void on_sent(uv_udp_send_t *req, int status)
{
    (void)status; /* a lost answer is asked again */
    free(sw_container_of(req, send_t, req));
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags)
{
    sw_dns_t *d = u->data;
    if (nread <= 0 || !from || (flags & UV_UDP_PARTIAL))
        return;
    static const char log_line[] = "{\"level\":";
    if ((size_t)nread >= sizeof(log_line) - 1 &&
        memcmp(buf->base, log_line, sizeof(log_line) - 1) == 0) {
        /* A line of Caddy's log. Never a query: its third byte, read as a query's flags,
         * would be opcode 13, which no resolver sends. */
        if (d->on_log)
            d->on_log(buf->base, (size_t)nread, d->log_payload);
        return;
    }
    send_t *s = sw_calloc(1, sizeof(*s));
    size_t n = sw_dns_answer(d->routes, d->address, (const uint8_t *)buf->base, (size_t)nread,
                             s->data, sizeof(s->data));
    uv_buf_t b = uv_buf_init((char *)s->data, (unsigned)n);
    if (n == 0 || uv_udp_send(&s->req, u, &b, 1, from, on_sent) != 0)
        free(s);
}

int sw_dns_new(sw_dns_t **out, uv_loop_t *loop, const char *listen, char *why, size_t why_len)
{
    char host[64];
    uint16_t port;
    struct sockaddr_storage ss;
    if (sw_config_split_hostport(listen, host, sizeof(host), &port) != 0 ||
        (uv_ip4_addr(host[0] ? host : "127.0.0.1", port, (struct sockaddr_in *)&ss) != 0 &&
         uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)) {
        snprintf(why, why_len, "SLIPWAY_PROXY_DNS %s is not an IP address and port", listen);
        return -EINVAL;
    }
    sw_dns_t *d = sw_calloc(1, sizeof(*d));
    uv_udp_init(loop, &d->udp);
    d->udp.data = d;
    int r = uv_udp_bind(&d->udp, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_udp_recv_start(&d->udp, on_alloc, on_recv);
    if (r != 0) {
        snprintf(why, why_len, "the DNS responder cannot listen on %s: %s", listen, uv_strerror(r));
        uv_close((uv_handle_t *)&d->udp, (uv_close_cb)free);
        return r;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_udp_getsockname(&d->udp, (struct sockaddr *)&bound, &blen);
    char ip[INET6_ADDRSTRLEN] = "";
    if (bound.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof(ip));
        snprintf(d->address, sizeof(d->address), "[%s]:%u", ip,
                 ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof(ip));
        snprintf(d->address, sizeof(d->address), "%s:%u", ip,
                 ntohs(((struct sockaddr_in *)&bound)->sin_port));
    }
    *out = d;
    return 0;
}

void sw_dns_set_routes(sw_dns_t *d, const sw_routes_t *t)
{
    d->routes = t;
}

void sw_dns_on_log(sw_dns_t *d, void (*cb)(const char *line, size_t len, void *payload),
                   void *payload)
{
    d->on_log = cb;
    d->log_payload = payload;
}

const char *sw_dns_address(const sw_dns_t *d)
{
    return d->address;
}

static void on_udp_closed(uv_handle_t *h)
{
    sw_dns_t *d = h->data;
    void (*cb)(void *) = d->on_closed;
    void *payload = d->closed_payload;
    free(d);
    if (cb)
        cb(payload);
}

void sw_dns_close(sw_dns_t *d, void (*on_closed)(void *payload), void *payload)
{
    d->on_closed = on_closed;
    d->closed_payload = payload;
    d->routes = NULL;
    uv_close((uv_handle_t *)&d->udp, on_udp_closed);
}
