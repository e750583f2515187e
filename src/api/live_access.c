/* Live streams' access, checked again while they stay open (see the header).
 *
 * A grant is one credential's right to watch one project through one route: the streams that
 * share it hang off it, and it lives while it has streams or a recheck of it is in flight.
 * Rechecks run as one query at a time over up to BATCH_MAX grants; what changes meanwhile
 * marks grants dirty again and the next batch takes them. A stream opened shortly after a
 * change may have been authorised from rows read before it, so its grant, when new, is
 * checked once more. */
#include "slipway/live_access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/api.h"
#include "slipway/common.h"

#define TICK_MS        1000  /* expiries, and the fallback while a channel is down */
#define BATCH_MAX      500   /* grants per query */
#define RACE_WINDOW_MS 10000 /* longer than a credential and a project lookup may take */
#define BUCKETS_MIN    64    /* a power of two */

struct sw_live_grant {
    sw_live_access_t *owner;
    sw_live_grant_t *hnext;       /* hash chain */
    sw_live_grant_t *prev, *next; /* every grant, for the scans */
    sw_live_access_link_t *links; /* its streams */
    uint64_t hash;
    uint64_t expires_ms; /* wall clock, as of the last check; UINT64_MAX for never */
    bool dirty;          /* to be checked */
    bool checking;       /* in the batch in flight */
    sw_principal_kind_t kind;
    unsigned scopes;
    sw_access_t access;
    char token_hash[SW_TOKEN_HASH_HEX];
    char user_id[SW_UUID_LEN + 1];
    char token_id[SW_UUID_LEN + 1];
    char project_id[SW_UUID_LEN + 1];
};

typedef struct {
    sw_live_access_t *owner; /* NULL once the registry is gone: the answer is dropped */
    unsigned n;
    sw_live_grant_t *grants[];
} batch_t;

struct sw_live_access {
    sw_api_t *api;
    sw_live_revoked_cb on_revoked;
    uv_timer_t timer;
    sw_live_grant_t **buckets;
    size_t nbuckets;
    sw_live_grant_t *head;
    batch_t *batch;    /* the query in flight */
    bool heard;        /* a change was heard of, at heard_ms (monotonic) */
    uint64_t heard_ms; /* the last change heard of, monotonic */
    uint64_t listen_session;
    bool redis_was_up;
    sw_live_access_stats_t stats;
};

/* One row per grant, in the order given: the user's instance role (NULL: the credential is
 * gone, expired or revoked), the member role, whether the project exists, and the expiry.
 * The same conditions as the credential lookups in src/auth/auth.c, without sliding the
 * expiry: watching is not activity. */
static const char check_sql[] =
    "SELECT g.i, u.role, m.role, p.id IS NOT NULL, "
    "coalesce((extract(epoch FROM c.expires) * 1000)::bigint, -1) "
    "FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS g(kind, hash, project, i) "
    "LEFT JOIN LATERAL ("
    "SELECT s.user_id, least(s.expires_at, s.absolute_expires_at) AS expires FROM sessions s "
    "WHERE g.kind = 's' AND s.token_hash = g.hash "
    "AND s.expires_at > now() AND s.absolute_expires_at > now() "
    "AND (s.api_token_id IS NULL OR EXISTS (SELECT 1 FROM api_tokens t "
    "WHERE t.id = s.api_token_id AND (t.expires_at IS NULL OR t.expires_at > now()))) "
    "UNION ALL SELECT t.user_id, t.expires_at FROM api_tokens t "
    "WHERE g.kind = 't' AND t.token_hash = g.hash "
    "AND (t.expires_at IS NULL OR t.expires_at > now())) c ON true "
    "LEFT JOIN users u ON u.id = c.user_id "
    "LEFT JOIN projects p ON p.id = nullif(g.project, '')::uuid "
    "LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = c.user_id "
    "ORDER BY g.i";

/* ---- grants ---- */

static uint64_t key_hash(const char *token_hash, const char *project_id, const sw_access_t *acc)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    const unsigned char *parts[] = {(const unsigned char *)token_hash,
                                    (const unsigned char *)project_id};
    for (size_t i = 0; i < SW_ARRAY_SIZE(parts); i++) {
        for (const unsigned char *c = parts[i]; *c; c++)
            h = (h ^ *c) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL;
    }
    const unsigned char *b = (const unsigned char *)acc;
    for (size_t i = 0; i < sizeof(*acc); i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static sw_live_grant_t *grant_find(sw_live_access_t *a, uint64_t hash, const char *token_hash,
                                   const char *project_id, const sw_access_t *acc)
{
    for (sw_live_grant_t *g = a->buckets[hash & (a->nbuckets - 1)]; g; g = g->hnext)
        if (g->hash == hash && strcmp(g->token_hash, token_hash) == 0 &&
            strcmp(g->project_id, project_id) == 0 && memcmp(&g->access, acc, sizeof(*acc)) == 0)
            return g;
    return NULL;
}

static void rehash(sw_live_access_t *a)
{
    size_t n = a->nbuckets * 2;
    sw_live_grant_t **buckets = sw_calloc(n, sizeof(*buckets));
    for (sw_live_grant_t *g = a->head; g; g = g->next) {
        g->hnext = buckets[g->hash & (n - 1)];
        buckets[g->hash & (n - 1)] = g;
    }
    free(a->buckets);
    a->buckets = buckets;
    a->nbuckets = n;
}

static void grant_free(sw_live_grant_t *g)
{
    sw_live_access_t *a = g->owner;
    sw_live_grant_t **pp = &a->buckets[g->hash & (a->nbuckets - 1)];
    while (*pp != g)
        pp = &(*pp)->hnext;
    *pp = g->hnext;
    if (g->prev)
        g->prev->next = g->next;
    else
        a->head = g->next;
    if (g->next)
        g->next->prev = g->prev;
    if (--a->stats.grants == 0)
        uv_timer_stop(&a->timer);
    free(g);
}

/* Unregisters every stream of g and tells each it lost its access; frees g. */
static void grant_revoke(sw_live_grant_t *g)
{
    sw_live_access_t *a = g->owner;
    sw_live_access_link_t *link;
    while ((link = g->links)) {
        g->links = link->next;
        if (g->links)
            g->links->prev = NULL;
        link->prev = link->next = NULL;
        link->grant = NULL;
        a->stats.revoked++;
        a->on_revoked(link);
    }
    grant_free(g);
}

/* ---- rechecks ---- */

static void run(sw_live_access_t *a);

/* Whether the row still lets g's streams watch; the new expiry into *expires. */
static bool allowed(const sw_live_grant_t *g, sw_pg_result_t *res, int row, uint64_t *expires)
{
    const char *role = sw_pg_result_value(res, row, 1);
    if (!role)
        return false;
    sw_principal_t p;
    memset(&p, 0, sizeof(p));
    p.kind = g->kind;
    p.role = sw_user_role_parse(role);
    p.scopes = g->scopes;
    memcpy(p.token_id, g->token_id, sizeof(p.token_id));
    char why[200];
    if (p.role == SW_ROLE_NONE || sw_access_check(&g->access, &p, why, sizeof(why)) != 0)
        return false;
    if (g->access.project_from != SW_FROM_NONE) {
        const char *exists = sw_pg_result_value(res, row, 3);
        if (!exists || exists[0] != 't')
            return false;
        sw_project_role_t pr = sw_api_is_instance_admin(&p)
                                   ? SW_PROJECT_ADMIN
                                   : sw_project_role_parse(sw_pg_result_value(res, row, 2));
        if (pr == SW_PROJECT_NONE || pr < g->access.project_role)
            return false;
    }
    const char *e = sw_pg_result_value(res, row, 4);
    long long ms = e ? atoll(e) : -1;
    *expires = ms < 0 ? UINT64_MAX : (uint64_t)ms;
    return true;
}

static void on_checked(int status, sw_pg_result_t *res, void *payload)
{
    batch_t *b = payload;
    sw_live_access_t *a = b->owner;
    signed char verdict[BATCH_MAX]; /* -1: no answer (asked again later), 0: gone, 1: kept */
    if (!a) {
        free(b);
        return;
    }
    a->batch = NULL;
    memset(verdict, -1, sizeof(verdict));
    for (int r = 0; status == 0 && r < sw_pg_result_rows(res); r++) {
        const char *iv = sw_pg_result_value(res, r, 0);
        long i = iv ? atol(iv) - 1 : -1;
        if (i < 0 || (unsigned long)i >= b->n)
            continue;
        uint64_t expires = UINT64_MAX;
        verdict[i] = allowed(b->grants[i], res, r, &expires) ? 1 : 0;
        if (verdict[i])
            b->grants[i]->expires_ms = expires;
    }
    for (unsigned i = 0; i < b->n; i++) {
        sw_live_grant_t *g = b->grants[i];
        g->checking = false;
        if (verdict[i] < 0)
            g->dirty = true; /* the database could not say: the next tick asks again */
        if (verdict[i] == 0)
            grant_revoke(g);
        else if (!g->links)
            grant_free(g);
    }
    free(b);
    if (status == 0)
        run(a);
}

static void array_add(sw_buf_t *b, const char *s)
{
    sw_buf_append_char(b, b->len > 1 ? ',' : '{');
    sw_buf_printf(b, "\"%s\"", s); /* hex digits, UUIDs and letters: nothing to escape */
}

/* Starts a batch of the dirty grants unless one is in flight. */
static void run(sw_live_access_t *a)
{
    if (a->batch || !a->api->pg)
        return;
    unsigned n = 0;
    for (sw_live_grant_t *g = a->head; g && n < BATCH_MAX; g = g->next)
        n += g->dirty && !g->checking;
    if (!n)
        return;
    batch_t *b = sw_malloc(sizeof(*b) + n * sizeof(b->grants[0]));
    b->owner = a;
    b->n = 0;
    sw_buf_t kinds = SW_BUF_INIT, hashes = SW_BUF_INIT, projects = SW_BUF_INIT;
    for (sw_live_grant_t *g = a->head; g && b->n < n; g = g->next) {
        if (!g->dirty || g->checking)
            continue;
        g->dirty = false;
        g->checking = true;
        b->grants[b->n++] = g;
        array_add(&kinds, g->kind == SW_PRINCIPAL_TOKEN ? "t" : "s");
        array_add(&hashes, g->token_hash);
        array_add(&projects, g->project_id);
    }
    sw_buf_append_char(&kinds, '}');
    sw_buf_append_char(&hashes, '}');
    sw_buf_append_char(&projects, '}');
    const char *params[] = {kinds.base, hashes.base, projects.base};
    a->batch = b;
    a->stats.checks++;
    sw_pg_query(a->api->pg, check_sql, 3, params, on_checked, b);
    sw_buf_free(&kinds);
    sw_buf_free(&hashes);
    sw_buf_free(&projects);
}

static void heard(sw_live_access_t *a)
{
    a->heard = true;
    a->heard_ms = uv_now(a->api->loop);
}

static void on_dropped(sw_auth_drop_t what, const char *id, void *payload)
{
    sw_live_access_t *a = payload;
    heard(a);
    for (sw_live_grant_t *g = a->head; g; g = g->next) {
        const char *mine = what == SW_AUTH_DROP_SESSION ? g->token_hash
                           : what == SW_AUTH_DROP_USER  ? g->user_id
                                                        : g->token_id;
        if (mine[0] && strcmp(mine, id) == 0)
            g->dirty = true;
    }
    run(a);
}

void sw_live_access_changed(sw_live_access_t *a)
{
    if (!a)
        return;
    heard(a);
    for (sw_live_grant_t *g = a->head; g; g = g->next)
        g->dirty = true;
    run(a);
}

/* Expiries; and every grant while a channel that carries changes is down, or once it is back
 * (what it carried meanwhile is lost). Without the read cache there is no listener at all. */
static void on_tick(uv_timer_t *t)
{
    sw_live_access_t *a = sw_container_of(t, sw_live_access_t, timer);
    sw_api_t *api = a->api;
    bool redis_up = sw_redis_subscriber_up(api->redis);
    uint64_t session = api->listen_pg ? sw_pg_pool_listen_session(api->listen_pg) : 0;
    bool all = !redis_up || !a->redis_was_up || session == 0 || !api->read_cache_usable ||
               session != a->listen_session;
    a->redis_was_up = redis_up;
    a->listen_session = session;
    uint64_t now = sw_wall_ms();
    if (all)
        heard(a);
    for (sw_live_grant_t *g = a->head; g; g = g->next)
        if (all || g->expires_ms <= now)
            g->dirty = true;
    run(a);
}

/* ---- public ---- */

sw_live_access_t *sw_live_access_new(sw_api_t *api, sw_live_revoked_cb on_revoked)
{
    sw_live_access_t *a = sw_calloc(1, sizeof(*a));
    a->api = api;
    a->on_revoked = on_revoked;
    a->nbuckets = BUCKETS_MIN;
    a->buckets = sw_calloc(a->nbuckets, sizeof(*a->buckets));
    a->redis_was_up = sw_redis_subscriber_up(api->redis);
    a->listen_session = api->listen_pg ? sw_pg_pool_listen_session(api->listen_pg) : 0;
    uv_timer_init(api->loop, &a->timer);
    sw_auth_observe(api->auth, on_dropped, a);
    return a;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(sw_container_of((uv_timer_t *)h, sw_live_access_t, timer));
}

void sw_live_access_free(sw_live_access_t *a)
{
    if (!a)
        return;
    sw_auth_observe(a->api->auth, NULL, NULL);
    if (a->batch)
        a->batch->owner = NULL;
    while (a->head) {
        sw_live_grant_t *g = a->head;
        for (sw_live_access_link_t *l = g->links, *next; l; l = next) {
            next = l->next;
            *l = (sw_live_access_link_t){0};
        }
        g->links = NULL;
        grant_free(g);
    }
    free(a->buckets);
    uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}

void sw_live_access_add(sw_live_access_t *a, sw_live_access_link_t *link, const sw_principal_t *p,
                        const char *project_id, const sw_access_t *access)
{
    if (!a || !link || link->grant || p->kind == SW_PRINCIPAL_NONE || !p->token_hash[0])
        return;
    if (!project_id)
        project_id = "";
    uint64_t hash = key_hash(p->token_hash, project_id, access);
    sw_live_grant_t *g = grant_find(a, hash, p->token_hash, project_id, access);
    if (!g) {
        if (a->stats.grants >= a->nbuckets)
            rehash(a);
        g = sw_calloc(1, sizeof(*g));
        g->owner = a;
        g->hash = hash;
        g->kind = p->kind;
        g->scopes = p->scopes;
        g->access = *access;
        g->expires_ms = p->expires_ms ? p->expires_ms : UINT64_MAX;
        memcpy(g->token_hash, p->token_hash, sizeof(g->token_hash));
        memcpy(g->user_id, p->user_id, sizeof(g->user_id));
        memcpy(g->token_id, p->token_id, sizeof(g->token_id));
        snprintf(g->project_id, sizeof(g->project_id), "%s", project_id);
        g->hnext = a->buckets[hash & (a->nbuckets - 1)];
        a->buckets[hash & (a->nbuckets - 1)] = g;
        g->next = a->head;
        if (a->head)
            a->head->prev = g;
        a->head = g;
        if (a->stats.grants++ == 0)
            uv_timer_start(&a->timer, on_tick, TICK_MS, TICK_MS);
        g->dirty = a->heard && uv_now(a->api->loop) - a->heard_ms < RACE_WINDOW_MS;
    }
    link->grant = g;
    link->prev = NULL;
    link->next = g->links;
    if (g->links)
        g->links->prev = link;
    g->links = link;
    if (g->dirty)
        run(a);
}

void sw_live_access_remove(sw_live_access_link_t *link)
{
    sw_live_grant_t *g = link ? link->grant : NULL;
    if (!g)
        return;
    if (link->prev)
        link->prev->next = link->next;
    else
        g->links = link->next;
    if (link->next)
        link->next->prev = link->prev;
    *link = (sw_live_access_link_t){0};
    if (!g->links && !g->checking)
        grant_free(g);
}

void sw_live_access_stats(const sw_live_access_t *a, sw_live_access_stats_t *out)
{
    if (a)
        *out = a->stats;
    else
        memset(out, 0, sizeof(*out));
}
