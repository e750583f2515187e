/* The sockets under every libgit2 fetch (http, https through libgit2's TLS stream, and ssh):
 * our own name lookup, the address rule of fetches checked on every address a name resolves
 * to and again at connect, and waits cut into short slices so a cancel or a deadline ends a
 * stalled fetch within a fraction of a second. */
#ifndef SLIPWAY_GITSTREAM_H
#define SLIPWAY_GITSTREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "slipway/netaddr.h"

/* 0 while the fetch may go on, else why not (-ECANCELED, -ETIMEDOUT); called on the fetching
 * thread, every slice of a wait. */
typedef int (*sw_gitstream_stop_cb)(void *payload);

typedef struct sw_gitstream_conn sw_gitstream_conn_t;

/* One fetch's rule and its open connections; bound to the thread that fetches. */
typedef struct {
    bool allow_private; /* SW_ADDR_PRIVATE (SLIPWAY_GIT_ALLOW_PRIVATE) */
    bool allow_local;   /* loopback, link-local, unspecified, reserved: development only */
    sw_gitstream_stop_cb stop;
    void *payload;
    /* Bytes the connections may read in all, beyond which a read fails; 0: no bound. Only
     * http and https: libssh2 reads its socket itself. */
    uint64_t max_read;
    /* Why the last connect failed: -EACCES (the address rule), -EHOSTUNREACH (the name did
     * not resolve), or the socket's error; 0 when none has. Fetching thread only. */
    int connect_error;

    /* Private. */
    uint64_t read; /* bytes read so far */
    pthread_mutex_t lock;
    bool aborted;
    sw_gitstream_conn_t *conns; /* open sockets, for sw_gitstream_abort */
} sw_gitstream_ctx_t;

/* Makes these sockets the ones libgit2 uses for every connection; once, after libgit2 is
 * initialised. 0 or -EIO. */
int sw_gitstream_register(void);

void sw_gitstream_ctx_init(sw_gitstream_ctx_t *ctx, bool allow_private, bool allow_local,
                           sw_gitstream_stop_cb stop, void *payload);
void sw_gitstream_ctx_destroy(sw_gitstream_ctx_t *ctx);

/* The context of the connections this thread opens from now on; NULL: public addresses only,
 * and no stop. */
void sw_gitstream_bind(sw_gitstream_ctx_t *ctx);

/* From any thread: shuts down every socket ctx has open and refuses new ones, which wakes a
 * fetch blocked where no slice reaches (libssh2 waits on the socket itself). */
void sw_gitstream_abort(sw_gitstream_ctx_t *ctx);

/* Whether a fetch under ctx's rule may connect to an address of this kind. */
bool sw_gitstream_allows(const sw_gitstream_ctx_t *ctx, sw_addr_kind_t kind);

/* What a fetch refused an address of this kind reports: the same whatever is (or is not)
 * listening there. */
const char *sw_gitstream_refusal(sw_addr_kind_t kind);

#endif
