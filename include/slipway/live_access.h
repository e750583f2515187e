/* Who may go on watching: every open live stream's credential and the project it watches,
 * checked again whenever credentials are revoked or memberships and roles change, so that a
 * stream closes as soon as REST starts refusing the same caller.
 *
 * Streams with the same credential, project and route requirements share one grant: a
 * recheck reads the database once per grant (in batches), never once per stream. What starts
 * a recheck: an auth invalidation (logout, a revoked token, a changed or deleted user), made
 * here or received from another process; a change notification of the read cache's
 * PostgreSQL listener (memberships, roles, projects); a credential's expiry; and, once a
 * second, while either channel is down or has been re-established (notifications may have
 * been lost). */
#ifndef SLIPWAY_LIVE_ACCESS_H
#define SLIPWAY_LIVE_ACCESS_H

#include <stdint.h>

#include "slipway/access.h"
#include "slipway/auth.h"

struct sw_api;
typedef struct sw_live_access sw_live_access_t;
typedef struct sw_live_grant sw_live_grant_t;

/* Embedded in each stream; all zero means not registered. */
typedef struct sw_live_access_link {
    struct sw_live_access_link *prev, *next;
    sw_live_grant_t *grant;
} sw_live_access_link_t;

/* The stream behind link lost its access; link is already unregistered. The callback may
 * close the stream (and so call sw_live_access_remove) at once. */
typedef void (*sw_live_revoked_cb)(sw_live_access_link_t *link);

typedef struct {
    uint64_t grants;  /* now */
    uint64_t checks;  /* queries that rechecked grants */
    uint64_t revoked; /* streams closed because their access went */
} sw_live_access_stats_t;

/* Observes api->auth's invalidations until freed. */
sw_live_access_t *sw_live_access_new(struct sw_api *api, sw_live_revoked_cb on_revoked);
/* Every stream must have been removed first. NULL is fine. */
void sw_live_access_free(sw_live_access_t *a);

/* Registers a stream that p opened on a route requiring access, in project_id ("" when the
 * route has none). */
void sw_live_access_add(sw_live_access_t *a, sw_live_access_link_t *link, const sw_principal_t *p,
                        const char *project_id, const sw_access_t *access);
/* Unregisters; a link never added (all zero) or already removed is fine. */
void sw_live_access_remove(sw_live_access_link_t *link);

/* Memberships, roles or projects may have changed: recheck every grant. NULL is fine. */
void sw_live_access_changed(sw_live_access_t *a);

void sw_live_access_stats(const sw_live_access_t *a, sw_live_access_stats_t *out);

#endif
