/* Allocation, error names, clocks and randomness. */
#include "slipway/common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void sw_oom(void)
{
    static const char msg[] = "{\"level\":\"error\",\"msg\":\"out of memory\"}\n";
    (void)!fwrite(msg, 1, sizeof(msg) - 1, stderr);
    abort();
}

void *sw_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        sw_oom();
    return p;
}

void *sw_calloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        sw_oom();
    return p;
}

void *sw_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        sw_oom();
    return q;
}

char *sw_strdup(const char *s)
{
    return sw_strndup(s, strlen(s));
}

char *sw_strndup(const char *s, size_t n)
{
    char *p = sw_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

const char *sw_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case SW_EUNAVAIL:
        return "backend unavailable";
    case SW_EDB:
        return "database error";
    case SW_EUNIQUE:
        return "unique constraint violated";
    case SW_EREDIS:
        return "redis error";
    case SW_ECANCELED:
        return "canceled";
    case SW_ELIMIT:
        return "limit reached";
    case SW_EREFERENCED:
        return "still referenced";
    default:
        break;
    }
    if (err < 0 && err > SW_EFIRST)
        return strerror(-err);
    return "unknown error";
}

uint64_t sw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sw_now_ms(void)
{
    return sw_now_ns() / 1000000u;
}

uint64_t sw_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sw_time_rfc3339(char *out, size_t size, uint64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_ms % 1000u));
}

int sw_random_bytes(void *out, size_t size)
{
    char *p = out;
    while (size > 0) {
        ssize_t n = getrandom(p, size, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

void sw_request_id_new(char out[17])
{
    /* Request ids need to be unique, not secret: a per-process random prefix and a counter
     * cost no system call per request. */
    static uint64_t base, counter;
    static const char hex[] = "0123456789abcdef";
    if (base == 0 && sw_random_bytes(&base, sizeof(base)) != 0)
        base = sw_now_ns();
    uint64_t v = base + (++counter * 0x9e3779b97f4a7c15ull);
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[v & 0xf];
        v >>= 4;
    }
    out[16] = '\0';
}

int sw_fd_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return -errno;
    if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

bool sw_fd_ready(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    if (fd < 0)
        return false;
    while (poll(&p, 1, 0) < 0)
        if (errno != EINTR)
            return false;
    return (p.revents & (events | POLLERR | POLLHUP)) != 0;
}

int sw_write_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len > 0) {
        ssize_t n = write(fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        c += n;
        len -= (size_t)n;
    }
    return 0;
}

int sw_read_small(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, out, size - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    out[n] = '\0';
    return 0;
}

void sw_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++) {
        explicit_bzero(*p, strlen(*p));
        free(*p);
    }
    free(v);
}
