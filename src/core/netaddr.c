/* What kind of address an IP address is (public, loopback, private, ...): the rule for what
 * outgoing webhooks and git fetches may reach. */
#include "slipway/netaddr.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "slipway/common.h"

typedef struct {
    uint32_t net;
    unsigned bits;
    sw_addr_kind_t kind;
} v4_range_t;

/* First match wins: broadcast comes before 240/4. */
static const v4_range_t v4_ranges[] = {
    {0x00000000u, 8, SW_ADDR_UNSPECIFIED}, /* "this network" */
    {0x0a000000u, 8, SW_ADDR_PRIVATE},
    {0x64400000u, 10, SW_ADDR_PRIVATE}, /* carrier-grade NAT */
    {0x7f000000u, 8, SW_ADDR_LOOPBACK},
    {0xa9fe0000u, 16, SW_ADDR_LINK_LOCAL},
    {0xac100000u, 12, SW_ADDR_PRIVATE},
    {0xc0000000u, 24, SW_ADDR_RESERVED}, /* IETF protocol assignments */
    {0xc0000200u, 24, SW_ADDR_RESERVED}, /* documentation */
    {0xc0586300u, 24, SW_ADDR_RESERVED}, /* 6to4 relay anycast */
    {0xc0a80000u, 16, SW_ADDR_PRIVATE},
    {0xc6120000u, 15, SW_ADDR_RESERVED}, /* benchmarking */
    {0xc6336400u, 24, SW_ADDR_RESERVED}, /* documentation */
    {0xcb007100u, 24, SW_ADDR_RESERVED}, /* documentation */
    {0xe0000000u, 4, SW_ADDR_MULTICAST},
    {0xffffffffu, 32, SW_ADDR_MULTICAST}, /* limited broadcast */
    {0xf0000000u, 4, SW_ADDR_RESERVED},
};

static sw_addr_kind_t classify_v4(const uint8_t *b)
{
    uint32_t x = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    for (size_t i = 0; i < SW_ARRAY_SIZE(v4_ranges); i++) {
        uint32_t mask = 0xffffffffu << (32 - v4_ranges[i].bits);
        if ((x & mask) == v4_ranges[i].net)
            return v4_ranges[i].kind;
    }
    return SW_ADDR_PUBLIC;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static sw_addr_kind_t classify_v6(const uint8_t *b)
{
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (all_zero(b, 16))
        return SW_ADDR_UNSPECIFIED;
    if (all_zero(b, 15) && b[15] == 1)
        return SW_ADDR_LOOPBACK;
    if (all_zero(b, 10) && b[10] == 0xff && b[11] == 0xff)
        return classify_v4(b + 12); /* IPv4-mapped: the kernel connects to the IPv4 address */
    if (all_zero(b, 12))
        return SW_ADDR_RESERVED; /* IPv4-compatible, deprecated */
    if (memcmp(b, nat64, 12) == 0)
        return classify_v4(b + 12); /* the well-known NAT64 prefix reaches that IPv4 address */
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b)
        return SW_ADDR_PRIVATE; /* 64:ff9b:1::/48, local-use NAT64 */
    if (b[0] == 0x20 && b[1] == 0x02)
        return classify_v4(b + 2); /* 6to4 */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00)
        return SW_ADDR_RESERVED; /* Teredo: an obfuscated IPv4 address we will not trust */
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return SW_ADDR_RESERVED; /* documentation */
    if ((b[0] & 0xfe) == 0xfc)
        return SW_ADDR_PRIVATE; /* unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return SW_ADDR_LINK_LOCAL;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return SW_ADDR_PRIVATE; /* site-local, deprecated */
    if (b[0] == 0xff)
        return SW_ADDR_MULTICAST;
    if ((b[0] & 0xe0) == 0x20)
        return SW_ADDR_PUBLIC; /* global unicast */
    return SW_ADDR_RESERVED;
}

sw_addr_kind_t sw_addr_classify(const struct sockaddr *sa)
{
    if (!sa)
        return SW_ADDR_RESERVED;
    if (sa->sa_family == AF_INET)
        return classify_v4((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return classify_v6(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return SW_ADDR_RESERVED;
}

const char *sw_addr_kind_name(sw_addr_kind_t kind)
{
    static const char *const names[SW_ADDR_KIND_MAX] = {
        [SW_ADDR_PUBLIC] = "public",           [SW_ADDR_LOOPBACK] = "loopback",
        [SW_ADDR_PRIVATE] = "private",         [SW_ADDR_LINK_LOCAL] = "link-local",
        [SW_ADDR_UNSPECIFIED] = "unspecified", [SW_ADDR_MULTICAST] = "multicast or broadcast",
        [SW_ADDR_RESERVED] = "reserved",
    };
    return kind < SW_ADDR_KIND_MAX ? names[kind] : "reserved";
}
