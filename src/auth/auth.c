/* Principal resolution with a per-process cache.
 *
 * A cached principal is trusted for CACHE_TTL_MS while the Redis subscription that carries
 * invalidations is up, and for only DEGRADED_TTL_MS while it is down, so a logout, a
 * password change or a deleted user takes effect everywhere within a second either way.
 * The lookup that fills the cache also slides the session's expiry (or stamps the token's
 * last use), and a cache hit repeats that at most once a minute. */
#include "slipway/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/common.h"
#include "slipway/log.h"

#define CHANNEL         "slipway:auth"
#define CACHE_TTL_MS    60000u
#define DEGRADED_TTL_MS 500u
#define TOUCH_EVERY_MS  60000u

typedef struct entry entry_t;
struct entry {
    entry_t *hnext; /* hash chain */
    entry_t *lru_prev, *lru_next;
    sw_principal_t p;
    uint64_t checked_ms; /* monotonic: when the database last confirmed it */
    uint64_t touched_ms; /* monotonic: when expiry was last slid */
};

struct sw_auth {
    uv_loop_t *loop;
    sw_pg_pool_t *pg;
    sw_redis_t *redis;
    sw_auth_opts_t opts;
    entry_t **buckets;
    size_t nbuckets;
    size_t count;
    entry_t *lru_head, *lru_tail; /* head: most recently used */
    bool sub_was_up;
    uint64_t generation; /* bumped by every invalidation */
    sw_auth_dropped_cb observer;
    void *observer_payload;
};

typedef struct {
    sw_auth_t *auth;
    sw_auth_cb cb;
    void *payload;
    bool api_token;
    uint64_t generation; /* when the lookup started */
    char hash[SW_TOKEN_HASH_HEX];
} lookup_t;

static const char session_sql[] =
    "UPDATE sessions s SET last_seen_at = now(), "
    "expires_at = least(now() + make_interval(secs => $2::int), s.absolute_expires_at) "
    "FROM users u WHERE s.token_hash = $1 AND u.id = s.user_id "
    "AND s.expires_at > now() AND s.absolute_expires_at > now() "
    "AND (s.api_token_id IS NULL OR EXISTS (SELECT 1 FROM api_tokens t "
    "WHERE t.id = s.api_token_id AND (t.expires_at IS NULL OR t.expires_at > now()))) "
    "RETURNING s.id, s.user_id, u.email, u.role, s.api_token_id, "
    "(SELECT t.scopes FROM api_tokens t WHERE t.id = s.api_token_id), "
    "(extract(epoch FROM s.expires_at) * 1000)::bigint, sw_user_json(u)";

static const char token_sql[] =
    "UPDATE api_tokens t SET last_used_at = now() FROM users u "
    "WHERE t.token_hash = $1 AND u.id = t.user_id "
    "AND (t.expires_at IS NULL OR t.expires_at > now()) "
    "RETURNING t.id, t.user_id, u.email, u.role, t.scopes, "
    "coalesce((extract(epoch FROM t.expires_at) * 1000)::bigint, -1), sw_user_json(u)";

/* ---- roles and scopes ---- */

static const char *const role_names[SW_USER_ROLE_MAX] = {"none", "member", "admin", "owner"};

sw_user_role_t sw_user_role_parse(const char *s)
{
    for (int i = SW_ROLE_MEMBER; i < SW_USER_ROLE_MAX; i++)
        if (s && strcmp(s, role_names[i]) == 0)
            return (sw_user_role_t)i;
    return SW_ROLE_NONE;
}

const char *sw_user_role_name(sw_user_role_t role)
{
    return role < SW_USER_ROLE_MAX ? role_names[role] : "none";
}

static const struct {
    unsigned bit;
    const char *name;
} scope_names[] = {
    {SW_SCOPE_READ, "read"},
    {SW_SCOPE_WRITE, "write"},
    {SW_SCOPE_DEPLOY, "deploy"},
    {SW_SCOPE_ADMIN, "admin"},
};

const char *sw_scope_name(unsigned scope_bit)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(scope_names); i++)
        if (scope_names[i].bit == scope_bit)
            return scope_names[i].name;
    return "none";
}

unsigned sw_scopes_expand(unsigned s)
{
    if (s & SW_SCOPE_ADMIN)
        s |= SW_SCOPE_WRITE | SW_SCOPE_DEPLOY;
    if (s & (SW_SCOPE_WRITE | SW_SCOPE_DEPLOY))
        s |= SW_SCOPE_READ;
    return s & SW_SCOPE_ALL;
}

int sw_scopes_parse_pg(const char *text, unsigned *out)
{
    unsigned bits = 0;
    size_t len = text ? strlen(text) : 0;
    if (len < 2 || text[0] != '{' || text[len - 1] != '}')
        return -EINVAL;
    const char *p = text + 1, *end = text + len - 1;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(end - p);
        bool known = false;
        for (size_t i = 0; i < SW_ARRAY_SIZE(scope_names); i++) {
            if (strlen(scope_names[i].name) == n && memcmp(scope_names[i].name, p, n) == 0) {
                bits |= scope_names[i].bit;
                known = true;
            }
        }
        if (!known)
            return -EINVAL;
        p += n + 1;
    }
    *out = sw_scopes_expand(bits);
    return 0;
}

int sw_access_check(const sw_access_t *a, const sw_principal_t *p, char *why, size_t why_size)
{
    if (a->auth == SW_AUTH_PUBLIC)
        return 0;
    if (p->kind == SW_PRINCIPAL_NONE) {
        snprintf(why, why_size,
                 "authentication required: send a session cookie or an "
                 "Authorization: Bearer token");
        return 401;
    }
    if (a->auth == SW_AUTH_SESSION && (p->kind != SW_PRINCIPAL_SESSION || p->token_id[0])) {
        snprintf(why, why_size,
                 "this action needs an interactive login session, not an API "
                 "token");
        return 403;
    }
    if (p->role < a->role) {
        snprintf(why, why_size, "this action needs the instance role %s; you are %s",
                 sw_user_role_name((sw_user_role_t)a->role), sw_user_role_name(p->role));
        return 403;
    }
    if (a->scope && !(p->scopes & a->scope)) {
        snprintf(why, why_size, "this token lacks the %s scope", sw_scope_name(a->scope));
        return 403;
    }
    return 0;
}

/* ---- the cache ---- */

static size_t bucket_of(const sw_auth_t *auth, const char *hash)
{
    /* The key is a uniformly distributed digest: its first 16 hex digits are hash enough. */
    uint64_t h = 0;
    for (int i = 0; i < 16 && hash[i]; i++) {
        char c = hash[i];
        h = h << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return (size_t)h & (auth->nbuckets - 1);
}

static void lru_unlink(sw_auth_t *auth, entry_t *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        auth->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        auth->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(sw_auth_t *auth, entry_t *e)
{
    e->lru_prev = NULL;
    e->lru_next = auth->lru_head;
    if (auth->lru_head)
        auth->lru_head->lru_prev = e;
    auth->lru_head = e;
    if (!auth->lru_tail)
        auth->lru_tail = e;
}

static entry_t *cache_find(sw_auth_t *auth, const char *hash)
{
    for (entry_t *e = auth->buckets[bucket_of(auth, hash)]; e; e = e->hnext)
        if (strcmp(e->p.token_hash, hash) == 0)
            return e;
    return NULL;
}

static void cache_remove(sw_auth_t *auth, entry_t *e)
{
    entry_t **pp = &auth->buckets[bucket_of(auth, e->p.token_hash)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(auth, e);
    auth->count--;
    free(e);
}

static void cache_clear(sw_auth_t *auth)
{
    while (auth->lru_head)
        cache_remove(auth, auth->lru_head);
}

static void cache_put(sw_auth_t *auth, const sw_principal_t *p)
{
    uint64_t now = uv_now(auth->loop);
    entry_t *e = cache_find(auth, p->token_hash);
    if (e) {
        lru_unlink(auth, e);
    } else {
        if (auth->count >= auth->opts.cache_max && auth->lru_tail)
            cache_remove(auth, auth->lru_tail);
        e = sw_calloc(1, sizeof(*e));
        size_t b = bucket_of(auth, p->token_hash);
        e->hnext = auth->buckets[b];
        auth->buckets[b] = e;
        auth->count++;
    }
    e->p = *p;
    e->p.via_cookie = false;
    e->checked_ms = now;
    e->touched_ms = now;
    lru_push_front(auth, e);
}

/* ---- database lookups ---- */

static void copy_field(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* The user's JSON is kept only whole: a cut copy would be answered as broken JSON. */
static void copy_user_json(sw_principal_t *p, const char *json)
{
    if (json && strlen(json) < sizeof(p->user_json))
        memcpy(p->user_json, json, strlen(json) + 1);
    else
        p->user_json[0] = '\0';
}

static void on_touched(int status, sw_pg_result_t *res, void *payload)
{
    (void)status;
    (void)res;
    (void)payload;
}

static void touch(sw_auth_t *auth, const sw_principal_t *p)
{
    char idle[16];
    snprintf(idle, sizeof(idle), "%u", auth->opts.session_idle_s);
    const char *params[] = {p->token_hash, idle};
    if (p->kind == SW_PRINCIPAL_TOKEN)
        sw_pg_query(auth->pg, token_sql, 1, params, on_touched, NULL);
    else
        sw_pg_query(auth->pg, session_sql, 2, params, on_touched, NULL);
}

static void on_looked_up(int status, sw_pg_result_t *res, void *payload)
{
    lookup_t *l = payload;
    sw_auth_t *auth = l->auth;
    sw_principal_t p;

    if (status != 0) {
        l->cb(status == SW_ECANCELED ? SW_EUNAVAIL
              : status == SW_EDB     ? SW_EUNAVAIL
                                     : status,
              NULL, l->payload);
        goto out;
    }
    if (sw_pg_result_rows(res) != 1) {
        l->cb(-ENOENT, NULL, l->payload);
        goto out;
    }
    memset(&p, 0, sizeof(p));
    p.kind = l->api_token ? SW_PRINCIPAL_TOKEN : SW_PRINCIPAL_SESSION;
    p.role = sw_user_role_parse(sw_pg_result_value(res, 0, 3));
    copy_field(p.user_id, sizeof(p.user_id), sw_pg_result_value(res, 0, 1));
    copy_field(p.email, sizeof(p.email), sw_pg_result_value(res, 0, 2));
    memcpy(p.token_hash, l->hash, sizeof(p.token_hash));
    long long expires;
    if (l->api_token) {
        copy_field(p.token_id, sizeof(p.token_id), sw_pg_result_value(res, 0, 0));
        if (sw_scopes_parse_pg(sw_pg_result_value(res, 0, 4), &p.scopes) != 0)
            p.scopes = 0;
        expires = atoll(sw_pg_result_value(res, 0, 5));
        copy_user_json(&p, sw_pg_result_value(res, 0, 6));
    } else {
        copy_field(p.session_id, sizeof(p.session_id), sw_pg_result_value(res, 0, 0));
        copy_field(p.token_id, sizeof(p.token_id), sw_pg_result_value(res, 0, 4));
        const char *scopes = sw_pg_result_value(res, 0, 5);
        if (p.token_id[0]) {
            if (sw_scopes_parse_pg(scopes, &p.scopes) != 0)
                p.scopes = 0;
        } else {
            p.scopes = SW_SCOPE_ALL; /* an interactive session acts with the user's full role */
        }
        expires = atoll(sw_pg_result_value(res, 0, 6));
        copy_user_json(&p, sw_pg_result_value(res, 0, 7));
    }
    p.expires_ms = expires < 0 ? UINT64_MAX : (uint64_t)expires;
    if (p.role == SW_ROLE_NONE) {
        l->cb(-ENOENT, NULL, l->payload);
        goto out;
    }
    /* A lookup that read the rows before an invalidation landed must not cache them. */
    if (l->generation == auth->generation)
        cache_put(auth, &p);
    l->cb(0, &p, l->payload);
out:
    free(l);
}

void sw_auth_resolve(sw_auth_t *auth, const char *token, size_t len, sw_auth_cb cb, void *payload)
{
    bool api_token;
    char hash[SW_TOKEN_HASH_HEX];

    if (sw_token_valid(SW_SESSION_PREFIX, token, len))
        api_token = false;
    else if (sw_token_valid(SW_API_TOKEN_PREFIX, token, len))
        api_token = true;
    else {
        cb(-ENOENT, NULL, payload);
        return;
    }
    sw_token_hash(token, len, hash);

    /* Invalidations may have been missed while the subscription was down. */
    bool up = sw_redis_subscriber_up(auth->redis);
    if (up && !auth->sub_was_up)
        cache_clear(auth);
    auth->sub_was_up = up;

    uint64_t now = uv_now(auth->loop);
    entry_t *e = cache_find(auth, hash);
    if (e) {
        uint64_t ttl = up ? CACHE_TTL_MS : DEGRADED_TTL_MS;
        if (now - e->checked_ms < ttl && sw_wall_ms() < e->p.expires_ms) {
            lru_unlink(auth, e);
            lru_push_front(auth, e);
            if (now - e->touched_ms >= TOUCH_EVERY_MS) {
                e->touched_ms = now;
                touch(auth, &e->p);
            }
            cb(0, &e->p, payload);
            return;
        }
        cache_remove(auth, e);
    }

    lookup_t *l = sw_calloc(1, sizeof(*l));
    l->auth = auth;
    l->cb = cb;
    l->payload = payload;
    l->api_token = api_token;
    l->generation = auth->generation;
    memcpy(l->hash, hash, sizeof(hash));
    char idle[16];
    snprintf(idle, sizeof(idle), "%u", auth->opts.session_idle_s);
    const char *params[] = {l->hash, idle};
    int r = api_token ? sw_pg_query(auth->pg, token_sql, 1, params, on_looked_up, l)
                      : sw_pg_query(auth->pg, session_sql, 2, params, on_looked_up, l);
    if (r != 0) {
        free(l);
        cb(SW_EUNAVAIL, NULL, payload);
    }
}

/* ---- invalidation ---- */

static void drop_matching(sw_auth_t *auth, char kind, const char *id)
{
    for (entry_t *e = auth->lru_head, *next; e; e = next) {
        next = e->lru_next;
        bool match = (kind == 's' && strcmp(e->p.token_hash, id) == 0) ||
                     (kind == 'u' && strcmp(e->p.user_id, id) == 0) ||
                     (kind == 't' && strcmp(e->p.token_id, id) == 0);
        if (match)
            cache_remove(auth, e);
    }
}

static void dropped(sw_auth_t *auth, char kind, const char *id)
{
    sw_auth_drop_t what = kind == 's'   ? SW_AUTH_DROP_SESSION
                          : kind == 'u' ? SW_AUTH_DROP_USER
                          : kind == 't' ? SW_AUTH_DROP_TOKEN
                                        : SW_AUTH_DROP_MAX;
    if (auth->observer && what != SW_AUTH_DROP_MAX)
        auth->observer(what, id, auth->observer_payload);
}

static void on_message(const char *channel, size_t channel_len, const char *data, size_t len,
                       void *payload)
{
    sw_auth_t *auth = payload;
    char id[80];
    (void)channel;
    (void)channel_len;
    if (len < 3 || len >= sizeof(id) + 2 || data[1] != ':')
        return;
    memcpy(id, data + 2, len - 2);
    id[len - 2] = '\0';
    auth->generation++;
    drop_matching(auth, data[0], id);
    dropped(auth, data[0], id);
}

static void on_published(int status, const sw_redis_reply_t *reply, void *payload)
{
    (void)reply;
    (void)payload;
    if (status != 0)
        sw_log_kv(SW_LOG_WARN, NULL,
                  "auth invalidation not published; other nodes rely on "
                  "their short cache lifetime",
                  "error", sw_strerror(status), NULL);
}

static void invalidate(sw_auth_t *auth, char kind, const char *id)
{
    char msg[80];
    int n = snprintf(msg, sizeof(msg), "%c:%s", kind, id);
    auth->generation++;
    drop_matching(auth, kind, id);
    const char *argv[] = {"PUBLISH", CHANNEL, msg};
    const size_t argvlen[] = {7, sizeof(CHANNEL) - 1, (size_t)n};
    sw_redis_command(auth->redis, on_published, NULL, 3, argv, argvlen);
    dropped(auth, kind, id);
}

void sw_auth_invalidate_session(sw_auth_t *auth, const char *token_hash)
{
    invalidate(auth, 's', token_hash);
}

void sw_auth_invalidate_user(sw_auth_t *auth, const char *user_id)
{
    invalidate(auth, 'u', user_id);
}

void sw_auth_invalidate_token(sw_auth_t *auth, const char *token_id)
{
    invalidate(auth, 't', token_id);
}

void sw_auth_observe(sw_auth_t *auth, sw_auth_dropped_cb cb, void *payload)
{
    if (!auth)
        return;
    auth->observer = cb;
    auth->observer_payload = cb ? payload : NULL;
}

int sw_auth_new(sw_auth_t **out, uv_loop_t *loop, sw_pg_pool_t *pg, sw_redis_t *redis,
                const sw_auth_opts_t *opts)
{
    sw_auth_t *auth = sw_calloc(1, sizeof(*auth));
    auth->loop = loop;
    auth->pg = pg;
    auth->redis = redis;
    auth->opts = *opts;
    if (!auth->opts.cache_max)
        auth->opts.cache_max = 10000;
    auth->nbuckets = 1024;
    while (auth->nbuckets < auth->opts.cache_max)
        auth->nbuckets *= 2;
    auth->buckets = sw_calloc(auth->nbuckets, sizeof(entry_t *));
    int r = sw_redis_subscribe(redis, CHANNEL, on_message, auth);
    if (r != 0) {
        free(auth->buckets);
        free(auth);
        return r;
    }
    *out = auth;
    return 0;
}

void sw_auth_free(sw_auth_t *auth)
{
    if (!auth)
        return;
    sw_redis_unsubscribe(auth->redis, CHANNEL);
    cache_clear(auth);
    free(auth->buckets);
    free(auth);
}
