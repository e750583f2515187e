/* Slipway: macros, error codes and allocation helpers every module uses. */
#ifndef SLIPWAY_COMMON_H
#define SLIPWAY_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define SW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SW_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define SW_MAX(a, b)     ((a) > (b) ? (a) : (b))

#define sw_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define SW_UNUSED       __attribute__((unused))
#define SW_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SW_NORETURN     __attribute__((noreturn))

/* Functions return 0 or a negative errno; Slipway's own conditions live in this range. */
enum sw_error {
    SW_EFIRST = -30000,
    SW_EUNAVAIL = SW_EFIRST, /* a backend (PostgreSQL, Redis) is not reachable */
    SW_EDB,                  /* the database refused a query */
    SW_EUNIQUE,              /* a unique constraint was violated */
    SW_EREDIS,               /* Redis answered with an error */
    SW_ECANCELED,            /* the operation was abandoned (shutdown, owner gone) */
    SW_ELIMIT,               /* a configured limit was reached */
    SW_EREFERENCED,          /* a foreign key refused the change (rows still refer to it) */
    SW_E_MAX
};

/* A readable name for 0, a negative errno, or an sw_error. */
const char *sw_strerror(int err);

/* Allocation never fails from the caller's point of view: it aborts instead. */
void *sw_malloc(size_t n);
void *sw_calloc(size_t nmemb, size_t size);
void *sw_realloc(void *p, size_t n);
char *sw_strdup(const char *s);
char *sw_strndup(const char *s, size_t n);
SW_NORETURN void sw_oom(void);

/* Scope-bound cleanup, systemd style. */
static inline void sw_freep(void *p)
{
    free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(sw_freep)))

/* Take ownership away from a _cleanup_ variable. */
#define SW_TAKE_PTR(p)                                                                             \
    ({                                                                                             \
        __typeof__(p) take_tmp_ = (p);                                                             \
        (p) = NULL;                                                                                \
        take_tmp_;                                                                                 \
    })

/* Monotonic clock in milliseconds and nanoseconds; wall clock in milliseconds. */
uint64_t sw_now_ms(void);
uint64_t sw_now_ns(void);
uint64_t sw_wall_ms(void);
/* RFC 3339 UTC timestamp with milliseconds into out (at least 32 bytes). */
void sw_time_rfc3339(char *out, size_t size, uint64_t wall_ms);

/* Fills out with size random bytes from the kernel; returns 0 or -errno. */
int sw_random_bytes(void *out, size_t size);
/* A request id: 16 lower-case hex characters, NUL-terminated (out has 17 bytes). */
void sw_request_id_new(char out[17]);
/* Marks a descriptor a library opened close-on-exec, so no child inherits it. 0 or -errno. */
int sw_fd_cloexec(int fd);
/* Whether fd is ready now for events (POLLIN, POLLOUT), without waiting. A timer that comes
 * due while the loop was held up runs before the loop polls: it asks this first, so an
 * answer already waiting is not taken for a timeout. */
bool sw_fd_ready(int fd, short events);
/* Writes all len bytes to fd, again after EINTR and short writes. 0 or -errno. */
int sw_write_all(int fd, const void *p, size_t len);
/* Reads a small file (one read, at most size - 1 bytes) into out, NUL-terminated: /proc
 * entries and state files. 0 or -errno. */
int sw_read_small(const char *path, char *out, size_t size);
/* Frees a NULL-terminated vector of strings, wiping each one: env vectors hold secrets. */
void sw_strv_free(char **v);

#endif
