/* Schema migrations: blocking libpq, meant for the threadpool at start-up. All pending
 * migrations run in one transaction that first takes an advisory lock, so daemons starting
 * together against the same database apply each migration exactly once. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "slipway/common.h"
#include "slipway/pg.h"

/* "slipway" in ASCII: any constant works as long as every node uses the same one. */
#define MIGRATE_LOCK_SQL "SELECT pg_advisory_xact_lock(32488822435963257)"

/* Waiting for another node's migration (or its table locks) is normal at start-up; a
 * statement running for minutes is not. */
#define MIGRATE_TIMEOUTS_SQL "SET LOCAL lock_timeout = '60s'; SET LOCAL statement_timeout = '300s'"

#define MIGRATE_TABLE_SQL                                                                          \
    "CREATE TABLE IF NOT EXISTS schema_migrations ("                                               \
    " version int PRIMARY KEY,"                                                                    \
    " name text NOT NULL,"                                                                         \
    " applied_at timestamptz NOT NULL DEFAULT now())"

static void SW_PRINTF(3, 4) set_err(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;

    if (!err || !size)
        return;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    /* libpq messages end in newlines and may span lines; a log line must not */
    for (char *p = err; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    }
    size_t n = strlen(err);
    while (n && err[n - 1] == ' ')
        err[--n] = '\0';
}

static void notice_ignore(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* 0 when r succeeded; otherwise a code and a message naming what failed. */
static int check(PGconn *pg, const PGresult *r, const char *what, char *err, size_t err_size)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    const char *msg = NULL;
    const char *state = NULL;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 0;
    if (r) {
        msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    }
    set_err(err, err_size, "%s: %s", what, msg ? msg : PQerrorMessage(pg));
    if (PQstatus(pg) == CONNECTION_BAD)
        return SW_EUNAVAIL;
    /* lock_not_available (lock_timeout) and query_canceled (statement_timeout) */
    if (state && (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0))
        return -ETIMEDOUT;
    return SW_EDB;
}

static int exec(PGconn *pg, const char *sql, const char *what, char *err, size_t err_size)
{
    PGresult *r = PQexec(pg, sql);
    int rc = check(pg, r, what, err, err_size);
    PQclear(r);
    return rc;
}

static bool version_applied(const PGresult *r, int version)
{
    for (int i = 0; i < PQntuples(r); i++) {
        if (atoi(PQgetvalue(r, i, 0)) == version)
            return true;
    }
    return false;
}

int sw_migrate_run(const char *conninfo, int *applied_out, char *err, size_t err_size)
{
    /* connect_timeout first: a value in the caller's conninfo, expanded from dbname, wins */
    static const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *values[] = {"10", conninfo, NULL};
    PQconninfoOption *parsed = NULL;
    PGconn *pg = NULL;
    PGresult *versions = NULL;
    int applied = 0;
    int rc = 0;

    if (err && err_size)
        err[0] = '\0';
    if (!conninfo) {
        rc = -EINVAL;
        set_err(err, err_size, "no database connection string");
        goto out;
    }
    /* libpq's own parse errors quote the string, which may hold a password */
    parsed = PQconninfoParse(conninfo, NULL);
    if (!parsed) {
        rc = -EINVAL;
        set_err(err, err_size, "invalid database connection string");
        goto out;
    }

    pg = PQconnectdbParams(keys, values, 1);
    if (!pg)
        sw_oom();
    if (PQstatus(pg) != CONNECTION_OK) {
        rc = SW_EUNAVAIL;
        set_err(err, err_size, "cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
        goto out;
    }
    PQsetNoticeProcessor(pg, notice_ignore, NULL);

    rc = exec(pg, "BEGIN", "begin", err, err_size);
    if (rc < 0)
        goto out;
    rc = exec(pg, MIGRATE_TIMEOUTS_SQL, "set timeouts", err, err_size);
    if (rc < 0)
        goto out;
    /* The lock comes before CREATE TABLE IF NOT EXISTS: two sessions creating the table at
     * once can both pass the existence check and one then fails on pg_type's unique index. */
    rc = exec(pg, MIGRATE_LOCK_SQL, "take the migration lock", err, err_size);
    if (rc < 0)
        goto out;
    rc = exec(pg, MIGRATE_TABLE_SQL, "create schema_migrations", err, err_size);
    if (rc < 0)
        goto out;
    versions = PQexec(pg, "SELECT version FROM schema_migrations");
    rc = check(pg, versions, "read schema_migrations", err, err_size);
    if (rc < 0)
        goto out;

    for (size_t i = 0; i < sw_migrations_count; i++) {
        const sw_migration_t *m = &sw_migrations[i];
        char version[16];
        char what[160];
        const char *params[2] = {version, m->name};

        if (version_applied(versions, m->version))
            continue;
        snprintf(what, sizeof(what), "migration %03d_%s", m->version, m->name);
        /* our own embedded SQL, possibly several statements: the simple protocol is right */
        rc = exec(pg, m->sql, what, err, err_size);
        if (rc < 0)
            goto out;
        snprintf(version, sizeof(version), "%d", m->version);
        PGresult *r =
            PQexecParams(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                         NULL, params, NULL, NULL, 0);
        rc = check(pg, r, what, err, err_size);
        PQclear(r);
        if (rc < 0)
            goto out;
        applied++;
    }

    rc = exec(pg, "COMMIT", "commit", err, err_size);
    if (rc < 0)
        goto out;
    if (applied_out)
        *applied_out = applied;
out:
    /* on failure PQfinish ends the session, and with it the open transaction and the lock */
    PQclear(versions);
    PQfinish(pg);
    PQconninfoFree(parsed);
    return rc;
}
