/* Fuzz target: a UDP datagram to the DNS responder Caddy's dynamic upstreams ask
 * (src/proxy/dns.c), answered from a table of two apps, one with IPv4 and IPv6 endpoints, and
 * an edge for the hosts without a route.
 *
 * Input: the datagram, as the socket would read it (at most 1232 bytes); also read as a line
 * of Caddy's log, which comes in on the same socket. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/proxy/internal.h"

#define APP1         "6f1c2a7e-0a1b-4c2d-9e3f-112233445566"
#define APP2         "a"
#define REL          "d0d0d0d0-1111-2222-3333-444455556666"
#define MAX_DATAGRAM 1232

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sw_routes_t *table(void)
{
    sw_routes_t *t = calloc(1, sizeof(*t));
    t->v = calloc(2, sizeof(*t->v));
    t->n = 2;
    snprintf(t->v[0].host, sizeof(t->v[0].host), "shop.test");
    snprintf(t->v[0].key, sizeof(t->v[0].key), APP1);
    snprintf(t->v[1].host, sizeof(t->v[1].host), "*.wild.test");
    snprintf(t->v[1].key, sizeof(t->v[1].key), APP2);
    const char *eps[SW_ROUTE_MAX_ENDPOINTS];
    char buf[SW_ROUTE_MAX_ENDPOINTS][64];
    for (size_t i = 0; i < SW_ROUTE_MAX_ENDPOINTS; i++) {
        if (i % 2)
            snprintf(buf[i], sizeof(buf[i]), "[2001:db8::%zx]:%zu", i, 4000 + i);
        else
            snprintf(buf[i], sizeof(buf[i]), "127.0.0.%zu:%zu", i + 1, 4000 + i);
        eps[i] = buf[i];
    }
    sw_routes_override(t, APP1, REL, eps, SW_ROUTE_MAX_ENDPOINTS);
    sw_routes_override(t, APP2, "", eps, 3);
    sw_routes_sort(t);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sw_routes_t *t;
    if (!t)
        t = table();
    if (size > MAX_DATAGRAM)
        return 0;
    /* what the socket hands Caddy's log lines to (src/proxy/caddy.c) sees every datagram */
    char host[SW_ROUTE_HOST_MAX + 1], why[400];
    (void)sw_caddy_log_failure((const char *)data, size, host, sizeof(host), why, sizeof(why));
    uint8_t *out = malloc(MAX_DATAGRAM); /* exactly the socket's buffer: overruns are caught */
    size_t n = sw_dns_answer(t, "127.0.0.1:5354", data, size, out, MAX_DATAGRAM);
    if (n > MAX_DATAGRAM)
        abort();
    /* An answer echoes the id, sets QR and never answers an answer. */
    if (n &&
        (n < 12 || out[0] != data[0] || out[1] != data[1] || !(out[2] & 0x80) || (data[2] & 0x80)))
        abort();
    free(out);
    return 0;
}
