/* The prepared statement cache of one PostgreSQL connection (open addressing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/common.h"

#include "internal.h"

#define STMT_CACHE_MAX 1024 /* named statements per connection; beyond, unnamed */

void sw_pg__stmts_clear(pg_conn_t *c)
{
    for (size_t i = 0; i < c->stmts_cap; i++)
        free(c->stmts[i].sql);
    free(c->stmts);
    c->stmts = NULL;
    c->stmts_cap = 0;
    c->stmts_count = 0;
}

static pg_stmt_slot_t *stmts_find(pg_conn_t *c, uint64_t hash)
{
    if (!c->stmts_cap)
        return NULL;
    size_t mask = c->stmts_cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        pg_stmt_slot_t *s = &c->stmts[i];
        if (!s->sql || s->hash == hash)
            return s;
    }
}

static void stmts_grow(pg_conn_t *c)
{
    pg_stmt_slot_t *old = c->stmts;
    size_t old_cap = c->stmts_cap;
    c->stmts_cap = old_cap ? old_cap * 2 : 32;
    c->stmts = sw_calloc(c->stmts_cap, sizeof(*c->stmts));
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].sql)
            *stmts_find(c, old[i].hash) = old[i];
    }
    free(old);
}

/* The statement name for q on c, and whether a Parse must precede the execute. The name
 * comes from a 64-bit hash of the text; a collision, or a full cache, falls back to the
 * unnamed statement, which is re-parsed every time. */
bool sw_pg__stmt_lookup(pg_conn_t *c, const pg_query_t *q, char name[24], bool *need_prepare)
{
    pg_stmt_slot_t *s = stmts_find(c, q->hash);
    if (s && s->sql && strcmp(s->sql, q->sql) != 0)
        s = NULL; /* collision */
    else if ((!s || !s->sql) && c->stmts_count < STMT_CACHE_MAX) {
        if ((c->stmts_count + 1) * 2 > c->stmts_cap)
            stmts_grow(c);
        s = stmts_find(c, q->hash);
        s->hash = q->hash;
        s->sql = sw_strdup(q->sql);
        s->prepared = false;
        c->stmts_count++;
    } else if (!s || !s->sql) {
        s = NULL;
    }
    if (!s) {
        name[0] = '\0';
        *need_prepare = true;
        return false;
    }
    snprintf(name, 24, "sw_%016llx", (unsigned long long)q->hash);
    *need_prepare = !s->prepared;
    /* Marked now so that queries pipelined behind this one do not Parse it again. */
    s->prepared = true;
    return true;
}

void sw_pg__stmt_forget(pg_conn_t *c, const pg_query_t *q)
{
    pg_stmt_slot_t *s = stmts_find(c, q->hash);
    if (s && s->sql && strcmp(s->sql, q->sql) == 0)
        s->prepared = false;
}
