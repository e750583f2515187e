/* Tests for src/proxy/dns.c (the answers Caddy's dynamic upstreams get) and the hostname
 * check of src/proxy/routes.c. Queries are built here byte by byte, as a resolver sends
 * them; answers are parsed back the same way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/proxy/internal.h"

#define APP "6f1c2a7e-0a1b-4c2d-9e3f-112233445566"
#define REL "d0d0d0d0-1111-2222-3333-444455556666"

static size_t query(uint8_t *q, const char *name, unsigned type, bool edns)
{
    size_t n = 0;
    const uint8_t head[12] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns ? 1 : 0};
    memcpy(q, head, sizeof(head));
    n = sizeof(head);
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);
        q[n++] = (uint8_t)len;
        memcpy(q + n, name, len);
        n += len;
        name += len + (dot ? 1 : 0);
    }
    q[n++] = 0;
    q[n++] = (uint8_t)(type >> 8);
    q[n++] = (uint8_t)type;
    q[n++] = 0;
    q[n++] = 1;
    if (edns) {
        const uint8_t opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
        memcpy(q + n, opt, sizeof(opt));
        n += sizeof(opt);
    }
    return n;
}

static sw_routes_t *table(size_t nendpoints)
{
    sw_routes_t *t = calloc(1, sizeof(*t));
    t->v = calloc(1, sizeof(*t->v));
    t->n = 1;
    snprintf(t->v[0].host, sizeof(t->v[0].host), "shop.test");
    snprintf(t->v[0].key, sizeof(t->v[0].key), APP);
    const char *eps[SW_ROUTE_MAX_ENDPOINTS];
    char buf[SW_ROUTE_MAX_ENDPOINTS][32];
    for (size_t i = 0; i < nendpoints; i++) {
        snprintf(buf[i], sizeof(buf[i]), "127.0.0.%zu:%zu", i + 1, 4000 + i);
        eps[i] = buf[i];
    }
    sw_routes_override(t, APP, REL, eps, nendpoints);
    return t;
}

static unsigned u16(const uint8_t *p)
{
    return (unsigned)(p[0] << 8 | p[1]);
}

static void test_srv_lists_every_endpoint_with_its_release(void **state)
{
    (void)state;
    sw_routes_t *t = table(2);
    uint8_t q[512], a[1232];
    size_t qn = query(q, "shop.test.host.slipway.", 33, false);
    size_t an = sw_dns_answer(t, NULL, q, qn, a, sizeof(a));
    assert_true(an > qn);
    assert_int_equal(u16(a), 0x1234);             /* the id */
    assert_true(a[2] & 0x80);                     /* an answer */
    assert_int_equal(a[3] & 0x0f, 0);             /* NOERROR */
    assert_int_equal(u16(a + 6), 2);              /* two records */
    assert_memory_equal(a + 12, q + 12, qn - 12); /* the question, as asked */
    const uint8_t *rr = a + qn;
    assert_int_equal(u16(rr), 0xc00c);
    assert_int_equal(u16(rr + 2), 33);
    assert_int_equal(u16(rr + 14), 1);    /* weight */
    assert_int_equal(u16(rr + 16), 4000); /* port */
    char target[128];
    uint16_t port;
    assert_int_equal(sw_dns_target(REL, "127.0.0.1:4000", target, sizeof(target), &port), 0);
    assert_string_equal(target, REL ".127-0-0-1.ip.slipway.");
    /* the target's first label, as written on the wire */
    assert_int_equal(rr[18], 36);
    assert_memory_equal(rr + 19, REL, 36);
    sw_routes_free(t);
}

static void test_a_target_spells_its_address(void **state)
{
    (void)state;
    uint8_t q[512], a[512];
    size_t qn = query(q, REL ".10-1-2-3.ip.slipway.", 1, false);
    size_t an = sw_dns_answer(NULL, NULL, q, qn, a, sizeof(a));
    assert_int_equal(u16(a + 6), 1);
    const uint8_t *rr = a + qn;
    assert_int_equal(u16(rr + 10), 4);
    assert_int_equal(an, qn + 16);
    const uint8_t want[4] = {10, 1, 2, 3};
    assert_memory_equal(rr + 12, want, 4);

    /* an IPv4 name has no AAAA: NOERROR with no answer */
    qn = query(q, REL ".10-1-2-3.ip.slipway.", 28, false);
    sw_dns_answer(NULL, NULL, q, qn, a, sizeof(a));
    assert_int_equal(a[3] & 0x0f, 0);
    assert_int_equal(u16(a + 6), 0);

    char target[128];
    uint16_t port;
    assert_int_equal(sw_dns_target(REL, "[::1]:80", target, sizeof(target), &port), 0);
    assert_int_equal(port, 80);
    qn = query(q, target, 28, false);
    an = sw_dns_answer(NULL, NULL, q, qn, a, sizeof(a));
    assert_int_equal(u16(a + 6), 1);
    assert_int_equal(a[an - 1], 1); /* ::1 */
}

static void test_unknown_names_are_nxdomain(void **state)
{
    (void)state;
    sw_routes_t *t = table(1);
    uint8_t q[512], a[512];
    const char *names[] = {"other.test.host.slipway.", "example.com.",
                           "x.999-0-0-1.ip.slipway.",  "x.1-2-3.ip.slipway.",
                           "shop.test.host.other.",    "host.slipway.",
                           APP ".app.slipway."};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t qn = query(q, names[i], 33, false);
        sw_dns_answer(t, NULL, q, qn, a, sizeof(a));
        assert_int_equal(a[3] & 0x0f, 3);
        assert_int_equal(u16(a + 6), 0);
        /* with an edge as well, but for the first (a host, which the edge then takes) */
        sw_dns_answer(t, "127.0.0.1:9", q, qn, a, sizeof(a));
        assert_int_equal(a[3] & 0x0f, i == 0 ? 0 : 3);
    }
    /* an answer needs the room of a plain one */
    size_t qn = query(q, "shop.test.host.slipway.", 33, false);
    assert_int_equal(sw_dns_answer(t, "127.0.0.1:9", q, qn, a, 511), 0);
    sw_routes_free(t);
}

static void test_malformed_queries(void **state)
{
    (void)state;
    uint8_t q[512], a[512];
    size_t qn = query(q, "shop.test.host.slipway.", 33, false);
    /* too short, or itself an answer: silence */
    assert_int_equal(sw_dns_answer(NULL, NULL, q, 11, a, sizeof(a)), 0);
    q[2] |= 0x80;
    assert_int_equal(sw_dns_answer(NULL, NULL, q, qn, a, sizeof(a)), 0);
    q[2] &= 0x7f;
    /* a truncated name, a compression pointer, two questions: FORMERR */
    size_t an = sw_dns_answer(NULL, NULL, q, 20, a, sizeof(a));
    assert_int_equal(an, 12);
    assert_int_equal(a[3] & 0x0f, 1);
    q[12] = 0xc0;
    sw_dns_answer(NULL, NULL, q, qn, a, sizeof(a));
    assert_int_equal(a[3] & 0x0f, 1);
    qn = query(q, "shop.test.host.slipway.", 33, false);
    q[5] = 2;
    sw_dns_answer(NULL, NULL, q, qn, a, sizeof(a));
    assert_int_equal(a[3] & 0x0f, 1);
    /* another opcode: NOTIMP */
    qn = query(q, "shop.test.host.slipway.", 33, false);
    q[2] |= 0x10;
    sw_dns_answer(NULL, NULL, q, qn, a, sizeof(a));
    assert_int_equal(a[3] & 0x0f, 4);
}

static void test_answers_fit_the_size_the_client_offers(void **state)
{
    (void)state;
    sw_routes_t *t = table(SW_ROUTE_MAX_ENDPOINTS);
    uint8_t q[512], a[1232];
    /* without EDNS: 512 bytes at most, and as many whole records as fit */
    size_t qn = query(q, "shop.test.host.slipway.", 33, false);
    size_t an = sw_dns_answer(t, NULL, q, qn, a, sizeof(a));
    assert_true(an <= 512);
    unsigned plain = u16(a + 6);
    assert_true(plain >= 5 && plain < SW_ROUTE_MAX_ENDPOINTS);
    assert_false(a[2] & 0x02); /* no truncation bit: there is no TCP to retry on */
    /* with EDNS (1232 offered): more records, and our OPT record last */
    qn = query(q, "shop.test.host.slipway.", 33, true);
    an = sw_dns_answer(t, NULL, q, qn, a, sizeof(a));
    assert_true(an <= 1232);
    assert_true(u16(a + 6) > plain);
    assert_int_equal(u16(a + 10), 1);
    assert_int_equal(u16(a + an - 10), 41); /* OPT: root name, then its type */
    sw_routes_free(t);
}

/* The SRV target of the first answer record, dotted, into out. */
static void first_target(const uint8_t *a, size_t qn, char *out, uint16_t *port)
{
    const uint8_t *rr = a + qn;
    *port = (uint16_t)u16(rr + 16);
    const uint8_t *p = rr + 18;
    size_t at = 0;
    while (*p) {
        memcpy(out + at, p + 1, *p);
        at += *p;
        out[at++] = '.';
        p += *p + 1;
    }
    out[at] = '\0';
}

static void test_a_host_without_a_route_or_release_goes_to_the_edge(void **state)
{
    (void)state;
    sw_routes_t *t = table(0); /* shop.test: no release yet */
    uint8_t q[512], a[512];
    char target[256];
    uint16_t port;
    const char *names[] = {"shop.test.host.slipway.", "nobody.test.host.slipway."};
    for (size_t i = 0; i < 2; i++) {
        size_t qn = query(q, names[i], 33, false);
        sw_dns_answer(t, "127.0.0.1:5354", q, qn, a, sizeof(a));
        assert_int_equal(a[3] & 0x0f, 0);
        assert_int_equal(u16(a + 6), 1);
        first_target(a, qn, target, &port);
        assert_string_equal(target, "edge.127-0-0-1.ip.slipway.");
        assert_int_equal(port, 5354);
    }
    sw_routes_free(t);
}

static void test_hosts_match_exactly_then_by_wildcard_whatever_the_case(void **state)
{
    (void)state;
    sw_routes_t *t = calloc(1, sizeof(*t));
    t->v = calloc(3, sizeof(*t->v));
    const char *hosts[] = {"*.apps.example", "api.apps.example", "x.test"};
    const char *eps[3][1] = {{"127.0.0.1:4001"}, {"127.0.0.1:4002"}, {"127.0.0.1:4003"}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(t->v[i].host, sizeof(t->v[i].host), "%s", hosts[i]);
        snprintf(t->v[i].key, sizeof(t->v[i].key), "key%zu", i);
        t->n++;
        sw_routes_override(t, t->v[i].key, REL, eps[i], 1);
    }
    sw_routes_sort(t);
    struct {
        const char *name;
        unsigned port; /* 0: the edge's */
    } cases[] = {
        {"shop.apps.example.host.slipway.", 4001}, /* the wildcard */
        {"API.Apps.Example.host.slipway.", 4002},  /* exact beats wildcard, case aside */
        {"a.b.apps.example.host.slipway.", 0},     /* a wildcard covers one label */
        {"apps.example.host.slipway.", 0},         {"x.test.host.slipway.", 4003},
        {"*.apps.example.host.slipway.", 0}, /* never the wildcard's own name */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t q[512], a[512];
        char target[256];
        uint16_t port;
        size_t qn = query(q, cases[i].name, 33, false);
        sw_dns_answer(t, "127.0.0.1:9", q, qn, a, sizeof(a));
        assert_int_equal(u16(a + 6), 1);
        first_target(a, qn, target, &port);
        if (port != (cases[i].port ? cases[i].port : 9))
            fail_msg("%s: port %u", cases[i].name, port);
    }
    /* and the longest names DNS carries (255 bytes): 121 labels, or three of 63 and one of 48,
     * then host.slipway; a byte more is refused */
    char many[300] = "aa.", wide[300] = "", over[300] = "aaa.";
    for (int i = 0; i < 119; i++) {
        strcat(many, "a.");
        strcat(over, "a.");
    }
    strcat(many, "host.slipway.");
    strcat(over, "host.slipway.");
    for (int i = 0; i < 4; i++) {
        memset(wide + strlen(wide), 'b', i < 3 ? 63 : 48);
        strcat(wide, ".");
    }
    strcat(wide, "host.slipway.");
    const char *longest[] = {many, wide, over};
    for (size_t i = 0; i < 3; i++) {
        uint8_t q[512], a[1232];
        size_t qn = query(q, longest[i], 33, false);
        assert_int_equal(qn, 12 + 255 + 4 + (i == 2)); /* the name's bytes, root label included */
        sw_dns_answer(t, "127.0.0.1:9", q, qn, a, sizeof(a));
        assert_int_equal(a[3] & 0x0f, i < 2 ? 0 : 1); /* the last: FORMERR */
        assert_int_equal(u16(a + 6), i < 2 ? 1 : 0);
    }
    sw_routes_free(t);
}

static void test_hostnames_the_table_holds(void **state)
{
    (void)state;
    const char *good[] = {"shop.test", "a.b-c.example", "*.apps.example", "x1", "localhost"};
    const char *bad[] = {"",        "Shop.test", "-a.test",  "a-.test",  "a..b",   "a.b.",
                         "*a.test", "a.*.test",  "a_b.test", "a b.test", ".a.test"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(sw_routes_host_ok(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sw_routes_host_ok(bad[i]))
            fail_msg("accepted \"%s\"", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_srv_lists_every_endpoint_with_its_release),
        cmocka_unit_test(test_a_target_spells_its_address),
        cmocka_unit_test(test_unknown_names_are_nxdomain),
        cmocka_unit_test(test_a_host_without_a_route_or_release_goes_to_the_edge),
        cmocka_unit_test(test_hosts_match_exactly_then_by_wildcard_whatever_the_case),
        cmocka_unit_test(test_malformed_queries),
        cmocka_unit_test(test_answers_fit_the_size_the_client_offers),
        cmocka_unit_test(test_hostnames_the_table_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
