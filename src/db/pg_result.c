/* Reading a query's result: rows, columns, values, the server's message. */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "slipway/pg.h"

#include "internal.h"

int sw_pg_result_rows(const sw_pg_result_t *res)
{
    return res && res->pg ? PQntuples(res->pg) : 0;
}

int sw_pg_result_cols(const sw_pg_result_t *res)
{
    return res && res->pg ? PQnfields(res->pg) : 0;
}

const char *sw_pg_result_value(const sw_pg_result_t *res, int row, int col)
{
    if (!res || !res->pg || row < 0 || col < 0 || row >= PQntuples(res->pg) ||
        col >= PQnfields(res->pg) || PQgetisnull(res->pg, row, col))
        return NULL;
    return PQgetvalue(res->pg, row, col);
}

int sw_pg_result_col(const sw_pg_result_t *res, const char *name)
{
    if (!res || !res->pg || !name)
        return -1;
    /* exact match: PQfnumber would fold case and parse quotes */
    for (int i = 0; i < PQnfields(res->pg); i++) {
        if (strcmp(PQfname(res->pg, i), name) == 0)
            return i;
    }
    return -1;
}

const char *sw_pg_result_colname(const sw_pg_result_t *res, int col)
{
    if (!res || !res->pg || col < 0 || col >= PQnfields(res->pg))
        return NULL;
    return PQfname(res->pg, col);
}

const char *sw_pg_result_error(const sw_pg_result_t *res)
{
    if (!res || !res->pg)
        return "";
    const char *msg = PQresultErrorField(res->pg, PG_DIAG_MESSAGE_PRIMARY);
    return msg ? msg : "";
}

long long sw_pg_result_affected(const sw_pg_result_t *res)
{
    if (!res || !res->pg)
        return 0;
    const char *n = PQcmdTuples(res->pg);
    return *n ? strtoll(n, NULL, 10) : 0;
}
