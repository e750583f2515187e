/* Redis URLs: redis://[[user]:password@]host[:port][/db] and unix:///path, checked strictly. */
#include "slipway/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "slipway/percent.h"

#include "internal.h"

#define URL_MAX 2048
#define DB_MAX  1000000

static int url_fail(char *err, size_t err_size, const char *msg)
{
    if (err && err_size)
        snprintf(err, err_size, "redis URL: %s", msg);
    return -EINVAL;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

static int parse_userinfo(const char *s, size_t n, redis_url_t *u, char *err, size_t err_size)
{
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return url_fail(err, err_size, "credentials must be written [user]:password@");
    size_t ulen = (size_t)(colon - s);
    size_t plen = n - ulen - 1;
    if (plen == 0)
        return url_fail(err, err_size, "the password is empty");
    if (ulen > 0) {
        if (sw_percent_decode(u->user, sizeof(u->user), s, ulen, 0) < 0)
            return url_fail(err, err_size, "the user name is malformed or too long");
        u->has_user = true;
    }
    if (sw_percent_decode(u->password, sizeof(u->password), colon + 1, plen, 0) < 0)
        return url_fail(err, err_size, "the password has a bad %-escape or is too long");
    u->has_password = true;
    return 0;
}

static int parse_hostport(const char *s, size_t n, redis_url_t *u, char *err, size_t err_size)
{
    const char *host = s, *port = NULL;
    size_t hlen, plen = 0;

    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return url_fail(err, err_size, "an IPv6 address misses its ']'");
        host = s + 1;
        hlen = (size_t)(close - host);
        size_t rest = n - (size_t)(close + 1 - s);
        if (rest > 0) {
            if (close[1] != ':')
                return url_fail(err, err_size, "unexpected text after the IPv6 address");
            port = close + 2;
            plen = rest - 1;
        }
        char tmp[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(tmp))
            return url_fail(err, err_size, "the IPv6 address is malformed");
        memcpy(tmp, host, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return url_fail(err, err_size, "the IPv6 address is malformed");
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        if (colon) {
            port = colon + 1;
            plen = n - hlen - 1;
            if (memchr(port, ':', plen))
                return url_fail(err, err_size, "IPv6 addresses must be written in brackets");
        }
        if (hlen == 0)
            return url_fail(err, err_size, "the host is missing");
        for (size_t i = 0; i < hlen; i++)
            if (!host_char(host[i]))
                return url_fail(err, err_size, "the host has a character not allowed there");
    }
    if (hlen > REDIS_HOST_MAX)
        return url_fail(err, err_size, "the host is too long");
    memcpy(u->addr, host, hlen);
    u->addr[hlen] = '\0';

    u->port = 6379;
    if (port) {
        if (!all_digits(port, plen) || plen > 5)
            return url_fail(err, err_size, "the port must be a number from 1 to 65535");
        long p = strtol(port, NULL, 10);
        if (p < 1 || p > 65535)
            return url_fail(err, err_size, "the port must be a number from 1 to 65535");
        u->port = (int)p;
    }
    return 0;
}

int sw_redis__parse_url(const char *url, redis_url_t *u, char *err, size_t err_size)
{
    static const char redis_scheme[] = "redis://", unix_scheme[] = "unix://";

    memset(u, 0, sizeof(*u));
    if (!url || !*url)
        return url_fail(err, err_size, "it is empty");
    size_t len = strlen(url);
    if (len > URL_MAX)
        return url_fail(err, err_size, "it is too long");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return url_fail(err, err_size, "it contains a space or a control character");

    if (strncasecmp(url, unix_scheme, sizeof(unix_scheme) - 1) == 0) {
        const char *path = url + sizeof(unix_scheme) - 1;
        size_t plen = strlen(path);
        if (path[0] != '/')
            return url_fail(err, err_size, "a unix socket path must be absolute (unix:///path)");
        if (plen >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return url_fail(err, err_size, "the unix socket path is too long");
        if (strpbrk(path, "?#"))
            return url_fail(err, err_size, "unix URLs take no query or fragment");
        u->is_unix = true;
        memcpy(u->addr, path, plen + 1);
        return 0;
    }
    if (strncasecmp(url, "rediss://", 9) == 0)
        return url_fail(err, err_size, "TLS (rediss://) is not supported");
    if (strncasecmp(url, redis_scheme, sizeof(redis_scheme) - 1) != 0)
        return url_fail(err, err_size, "it must start with redis:// or unix://");

    const char *auth = url + sizeof(redis_scheme) - 1;
    if (strpbrk(auth, "?#"))
        return url_fail(err, err_size, "query parameters and fragments are not supported");
    const char *slash = strchr(auth, '/');
    size_t alen = slash ? (size_t)(slash - auth) : strlen(auth);

    /* The last '@' ends the credentials, so an unescaped '@' in a password still works. */
    const char *at = memrchr(auth, '@', alen);
    int rc;
    if (at) {
        rc = parse_userinfo(auth, (size_t)(at - auth), u, err, err_size);
        if (rc < 0)
            return rc;
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    rc = parse_hostport(auth, alen, u, err, err_size);
    if (rc < 0)
        return rc;

    if (slash && slash[1]) {
        size_t dlen = strlen(slash + 1);
        if (!all_digits(slash + 1, dlen) || dlen > 7 || strtol(slash + 1, NULL, 10) > DB_MAX)
            return url_fail(err, err_size, "the database must be a number (redis://host/0)");
        u->db = strtol(slash + 1, NULL, 10);
    }
    return 0;
}

int sw_redis_url_check(const char *url, char *err, size_t err_size)
{
    redis_url_t u;
    int rc = sw_redis__parse_url(url, &u, err, err_size);
    explicit_bzero(&u, sizeof(u));
    return rc;
}
