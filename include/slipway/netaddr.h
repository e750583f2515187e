/* What kind of address an IP address is: the rule for what outgoing webhooks and git fetches
 * may reach. */
#ifndef SLIPWAY_NETADDR_H
#define SLIPWAY_NETADDR_H

struct sockaddr;

typedef enum {
    SW_ADDR_PUBLIC,
    SW_ADDR_LOOPBACK,    /* 127/8, ::1 */
    SW_ADDR_PRIVATE,     /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fec0::/10 */
    SW_ADDR_LINK_LOCAL,  /* 169.254/16, fe80::/10 */
    SW_ADDR_UNSPECIFIED, /* 0/8, :: */
    SW_ADDR_MULTICAST,   /* 224/4, ff00::/8, broadcast */
    SW_ADDR_RESERVED,    /* documentation, benchmarking, 240/4, outside 2000::/3, ... */
    SW_ADDR_KIND_MAX
} sw_addr_kind_t;

/* Classifies an AF_INET or AF_INET6 address; IPv4-mapped, 6to4 and NAT64 addresses by the
 * IPv4 address they carry. Any other family is SW_ADDR_RESERVED. */
sw_addr_kind_t sw_addr_classify(const struct sockaddr *sa);
/* "loopback", "private", ... for messages. */
const char *sw_addr_kind_name(sw_addr_kind_t kind);

#endif
