/* What a route requires of its caller: plain data the route table carries, interpreted by
 * the API layer's one authorisation check. */
#ifndef SLIPWAY_ACCESS_H
#define SLIPWAY_ACCESS_H

#include <stdint.h>

typedef enum {
    SW_AUTH_PUBLIC,  /* anyone; a caller's identity is still resolved when offered */
    SW_AUTH_USER,    /* a session or an API token */
    SW_AUTH_SESSION, /* an interactive login only: no API token, no client_credentials token */
    SW_AUTH_MAX
} sw_auth_kind_t;

/* Instance roles, ordered: a higher one includes the lower ones. */
typedef enum {
    SW_ROLE_NONE,
    SW_ROLE_MEMBER,
    SW_ROLE_ADMIN,
    SW_ROLE_OWNER,
    SW_USER_ROLE_MAX
} sw_user_role_t;

/* API token scopes. admin includes write and deploy; write and deploy include read. */
enum {
    SW_SCOPE_READ = 1u << 0,
    SW_SCOPE_WRITE = 1u << 1,
    SW_SCOPE_DEPLOY = 1u << 2,
    SW_SCOPE_ADMIN = 1u << 3,
    SW_SCOPE_ALL = 0xfu,
};

/* Project roles, ordered like instance roles. */
typedef enum {
    SW_PROJECT_NONE,
    SW_PROJECT_VIEWER,
    SW_PROJECT_DEVELOPER,
    SW_PROJECT_ADMIN,
    SW_PROJECT_ROLE_MAX
} sw_project_role_t;

/* Where a project-scoped route finds its project. */
typedef enum {
    SW_FROM_NONE,
    SW_FROM_PROJECT,     /* :id is a project */
    SW_FROM_ENVIRONMENT, /* :id is an environment */
    SW_FROM_APP,         /* :id is an app */
    SW_FROM_DOMAIN,      /* :id is a domain */
    SW_FROM_DEPLOYMENT,  /* :id is a deployment */
    SW_FROM_BODY_ENV,    /* the JSON body's environment_id */
    SW_FROM_MAX
} sw_project_from_t;

typedef struct {
    uint8_t auth;         /* sw_auth_kind_t */
    uint8_t role;         /* sw_user_role_t: the minimum instance role */
    uint8_t scope;        /* one SW_SCOPE_* bit a token must carry (implied scopes count) */
    uint8_t project_role; /* sw_project_role_t: the minimum role in the resource's project */
    uint8_t project_from; /* sw_project_from_t */
} sw_access_t;

#endif
