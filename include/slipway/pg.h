/* An asynchronous PostgreSQL pool over libpq: nonblocking connections watched with uv_poll,
 * prepared statements only, pipeline mode, a timeout per query, reconnect with backoff. */
#ifndef SLIPWAY_PG_H
#define SLIPWAY_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/metrics.h"

typedef struct sw_pg_pool sw_pg_pool_t;
typedef struct sw_pg_result sw_pg_result_t;

/* status: 0, SW_EUNAVAIL (no connection could take it), -ETIMEDOUT, SW_EDB (the server
 * refused the query; see sw_pg_result_error), SW_EUNIQUE (unique violation), SW_EREFERENCED
 * (foreign key), or SW_ECANCELED (the pool is closing). res is valid only during the callback; NULL
 * unless status is 0, SW_EDB or SW_EUNIQUE. */
typedef void (*sw_pg_cb)(int status, sw_pg_result_t *res, void *payload);

typedef struct {
    const char *conninfo;
    unsigned size; /* connections */
    uint32_t query_timeout_ms;
    uint32_t connect_timeout_ms;
    /* Called on the loop after any connection goes up or down, and after a listening
     * connection's LISTEN is confirmed. */
    void (*on_state)(sw_pg_pool_t *pool, void *payload);
    void *payload;
    /* A listening pool (size 1 or 0 for 1): its connection runs LISTEN listen_channel (an
     * identifier) before any query, and on_notify runs on the loop with how many
     * notifications on that channel arrived since it last ran. */
    const char *listen_channel;
    void (*on_notify)(sw_pg_pool_t *pool, unsigned count, void *payload);
} sw_pg_pool_opts_t;

typedef struct {
    unsigned total;
    unsigned idle;       /* connected, nothing in flight */
    unsigned busy;       /* connected, queries in flight */
    unsigned connecting; /* connect or reset in progress */
    unsigned down;       /* waiting for the next reconnect attempt */
    uint64_t queued;     /* queries waiting for a connection */
} sw_pg_pool_stats_t;

int sw_pg_pool_new(sw_pg_pool_t **out, uv_loop_t *loop, const sw_pg_pool_opts_t *opts);
/* Fails every pending query with SW_ECANCELED, closes the connections and their handles,
 * then calls on_closed (on the loop) and frees the pool. */
void sw_pg_pool_close(sw_pg_pool_t *pool, void (*on_closed)(void *payload), void *payload);

/* Runs sql (with $1..$n placeholders, text parameters, NULL for SQL NULL) as a prepared
 * statement. The callback is always called exactly once, later, on the loop; if the pool has
 * no live connection it is called with SW_EUNAVAIL without waiting. Returns 0, or -EINVAL
 * for too many parameters (then the callback is not called). */
int sw_pg_query(sw_pg_pool_t *pool, const char *sql, int nparams, const char *const *params,
                sw_pg_cb cb, void *payload);

bool sw_pg_pool_up(const sw_pg_pool_t *pool);
/* A listening pool: 0 while its connection is not listening (down, connecting, or LISTEN not
 * yet confirmed), otherwise the number of the listening session, which changes every time
 * the connection is re-established: notifications between two sessions are lost. */
uint64_t sw_pg_pool_listen_session(const sw_pg_pool_t *pool);
/* Whether any notification a listening pool received since the last call had no payload
 * (a NOTIFY by hand, rather than a trigger's); clears it. */
bool sw_pg_pool_take_bare(sw_pg_pool_t *pool);
void sw_pg_pool_stats(const sw_pg_pool_t *pool, sw_pg_pool_stats_t *out);
/* Time from sw_pg_query to each query's outcome, for slipway_pg_query_duration_seconds. */
const sw_histogram_t *sw_pg_pool_durations(const sw_pg_pool_t *pool);

int sw_pg_result_rows(const sw_pg_result_t *res);
int sw_pg_result_cols(const sw_pg_result_t *res);
/* NULL for SQL NULL; otherwise the text value. */
const char *sw_pg_result_value(const sw_pg_result_t *res, int row, int col);
int sw_pg_result_col(const sw_pg_result_t *res, const char *name); /* -1 if absent */
const char *sw_pg_result_colname(const sw_pg_result_t *res, int col);
/* The server's message for SW_EDB/SW_EUNIQUE ("" otherwise): for logs, never for clients. */
const char *sw_pg_result_error(const sw_pg_result_t *res);
/* The number of rows an INSERT/UPDATE/DELETE touched. */
long long sw_pg_result_affected(const sw_pg_result_t *res);

/* Embedded schema migrations (sql/NNN_name.sql), generated at build time. */
typedef struct {
    int version;
    const char *name;
    const char *sql;
} sw_migration_t;

extern const sw_migration_t sw_migrations[];
extern const size_t sw_migrations_count;

/* Applies every embedded migration not yet recorded, in one transaction under an advisory
 * lock, with a blocking connection: run it on the threadpool. Returns 0 or a negative code;
 * err receives a message fit for the log. applied_out (optional) receives how many ran. */
int sw_migrate_run(const char *conninfo, int *applied_out, char *err, size_t err_size);

#endif
