/* Who is calling: sessions and API tokens resolved to a principal, through a per-process
 * cache that Redis pub/sub invalidates on every node, with PostgreSQL as the truth. */
#ifndef SLIPWAY_AUTH_H
#define SLIPWAY_AUTH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/access.h"
#include "slipway/crypto.h"
#include "slipway/pg.h"
#include "slipway/redis.h"

#define SW_SESSION_PREFIX   "sws_"
#define SW_API_TOKEN_PREFIX "swt_"
#define SW_UUID_LEN         36

typedef enum {
    SW_PRINCIPAL_NONE,
    SW_PRINCIPAL_SESSION, /* interactive login, or a client_credentials bearer (token_id set) */
    SW_PRINCIPAL_TOKEN,   /* an API token used directly */
    SW_PRINCIPAL_MAX
} sw_principal_kind_t;

typedef struct {
    sw_principal_kind_t kind;
    sw_user_role_t role;
    unsigned scopes; /* SW_SCOPE_* bits, implied ones included */
    bool via_cookie;
    char user_id[SW_UUID_LEN + 1];
    char email[256];
    char session_id[SW_UUID_LEN + 1]; /* sessions */
    char token_id[SW_UUID_LEN + 1];   /* API tokens, and sessions issued for one */
    char token_hash[SW_TOKEN_HASH_HEX];
    uint64_t expires_ms;  /* wall clock; UINT64_MAX for never */
    char user_json[1024]; /* the user's public JSON as of the lookup, for GET auth/me */
} sw_principal_t;

typedef struct sw_auth sw_auth_t;

typedef struct {
    uint32_t session_idle_s;     /* sliding expiry */
    uint32_t session_absolute_s; /* hard limit from login */
    size_t cache_max;            /* cached principals */
} sw_auth_opts_t;

int sw_auth_new(sw_auth_t **out, uv_loop_t *loop, sw_pg_pool_t *pg, sw_redis_t *redis,
                const sw_auth_opts_t *opts);
void sw_auth_free(sw_auth_t *auth);

/* status 0: p is the caller; -ENOENT: unknown, expired or revoked; SW_EUNAVAIL or -ETIMEDOUT:
 * the database could not say. p is valid only during the callback. The callback may run
 * before sw_auth_resolve returns (a cache hit). */
typedef void (*sw_auth_cb)(int status, const sw_principal_t *p, void *payload);
void sw_auth_resolve(sw_auth_t *auth, const char *token, size_t len, sw_auth_cb cb, void *payload);

/* Drops cached principals here and, through Redis, on every other process. */
void sw_auth_invalidate_session(sw_auth_t *auth, const char *token_hash);
void sw_auth_invalidate_user(sw_auth_t *auth, const char *user_id);
void sw_auth_invalidate_token(sw_auth_t *auth, const char *token_id);

/* What an invalidation names. */
typedef enum {
    SW_AUTH_DROP_SESSION, /* id: a session's token hash */
    SW_AUTH_DROP_USER,    /* id: a user id */
    SW_AUTH_DROP_TOKEN,   /* id: an API token id (and the sessions issued for it) */
    SW_AUTH_DROP_MAX
} sw_auth_drop_t;

/* Runs on the loop after every invalidation, made here or received from another process, once
 * the cache has dropped what it names: for those who hold on to a principal longer than a
 * request (live streams). One observer; cb NULL removes it. */
typedef void (*sw_auth_dropped_cb)(sw_auth_drop_t what, const char *id, void *payload);
void sw_auth_observe(sw_auth_t *auth, sw_auth_dropped_cb cb, void *payload);

/* Parses "owner", "admin", "member"; SW_ROLE_NONE otherwise. */
sw_user_role_t sw_user_role_parse(const char *s);
const char *sw_user_role_name(sw_user_role_t role);
/* Parses a PostgreSQL text[] of scope names ("{read,write}") into SW_SCOPE_* bits with the
 * implied ones added; -EINVAL for an unknown name. */
int sw_scopes_parse_pg(const char *text, unsigned *out);
/* Adds implied scopes: admin -> write, deploy, read; write, deploy -> read. */
unsigned sw_scopes_expand(unsigned scopes);
const char *sw_scope_name(unsigned scope_bit);

/* 0 when p may call a route requiring a; otherwise 401 or 403 with the reason in why. */
int sw_access_check(const sw_access_t *a, const sw_principal_t *p, char *why, size_t why_size);

#endif
