/* The route table: every route Slipway serves, and nothing outside it. The router, the
 * access check and /api/v1/openapi.json are all derived from these rows. */
#include "slipway/api.h"

#define PUBLIC                                                                                     \
    {                                                                                              \
        SW_AUTH_PUBLIC, SW_ROLE_NONE, 0                                                            \
    }
#define USER(scope)                                                                                \
    {                                                                                              \
        SW_AUTH_USER, SW_ROLE_MEMBER, scope                                                        \
    }
#define SESSION                                                                                    \
    {                                                                                              \
        SW_AUTH_SESSION, SW_ROLE_MEMBER, 0                                                         \
    }
#define ADMIN(scope)                                                                               \
    {                                                                                              \
        SW_AUTH_USER, SW_ROLE_ADMIN, scope                                                         \
    }

#define ROUTE(m, p, h, acc, sum, tg, rq, rs, st)                                                   \
    {                                                                                              \
        .method = m, .pattern = p, .handler = h, .access = acc, .summary = sum, .tag = tg,         \
        .request_schema = rq, .response_schema = rs, .success_status = st                          \
    }

const sw_route_t sw_api_routes[] = {
    ROUTE("GET", "/health", sw_api_get_health, PUBLIC, "Liveness and backend checks", "system",
          NULL, "Health", 200),
    ROUTE("GET", "/ready", sw_api_get_ready, PUBLIC, "Readiness: migrations applied, serving",
          "system", NULL, "Ready", 200),
    ROUTE("GET", "/metrics", sw_api_get_metrics, PUBLIC, "Prometheus metrics (text format 0.0.4)",
          "system", NULL, NULL, 200),
    ROUTE("GET", "/api/v1/openapi.json", sw_api_get_openapi, PUBLIC,
          "This API's OpenAPI 3.1 description", "system", NULL, NULL, 200),

    ROUTE("GET", "/api/v1/auth/state", sw_api_auth_state, PUBLIC,
          "Whether setup is needed and who is signed in", "auth", NULL, "AuthState", 200),
    ROUTE("POST", "/api/v1/auth/setup", sw_api_auth_setup, PUBLIC,
          "Create the first user (the owner); only while there are no users", "auth", "Credentials",
          "Session", 201),
    ROUTE("POST", "/api/v1/auth/register", sw_api_auth_register, PUBLIC,
          "Create a member account, when registration is open", "auth", "Credentials", "Session",
          201),
    ROUTE("POST", "/api/v1/auth/login", sw_api_auth_login, PUBLIC,
          "Sign in; answers a session token and sets the session cookie", "auth", "Login",
          "Session", 200),
    ROUTE("POST", "/api/v1/auth/logout", sw_api_auth_logout, USER(0), "End this session", "auth",
          NULL, NULL, 204),
    ROUTE("GET", "/api/v1/auth/me", sw_api_auth_me, USER(SW_SCOPE_READ),
          "The signed-in user and how they authenticated", "auth", NULL, "Me", 200),
    ROUTE("POST", "/api/v1/auth/password", sw_api_auth_password, SESSION,
          "Change the password; ends the user's other sessions", "auth", "PasswordChange", NULL,
          204),
    ROUTE("POST", "/api/v1/auth/token", sw_api_auth_token, PUBLIC,
          "OAuth2 client_credentials: exchange an API token for a short-lived bearer", "auth",
          "ClientCredentials", "AccessToken", 200),
    ROUTE("POST", "/api/v1/auth/totp/enroll", sw_api_totp_enroll, SESSION,
          "Start TOTP enrolment: a new secret and its otpauth URL", "auth", NULL, "TotpEnroll",
          200),
    ROUTE("POST", "/api/v1/auth/totp/confirm", sw_api_totp_confirm, SESSION,
          "Turn TOTP on with a current code; answers ten recovery codes", "auth", "TotpCode",
          "RecoveryCodes", 200),
    ROUTE("DELETE", "/api/v1/auth/totp", sw_api_totp_delete, SESSION,
          "Turn TOTP off (needs a current code or the password)", "auth", "TotpDisable", NULL, 204),

    ROUTE("GET", "/api/v1/tokens", sw_api_tokens_list, USER(SW_SCOPE_READ),
          "The caller's API tokens", "tokens", NULL, "TokenList", 200),
    ROUTE("POST", "/api/v1/tokens", sw_api_tokens_create, SESSION,
          "Create an API token; the secret is shown only in this answer", "tokens", "TokenCreate",
          "TokenCreated", 201),
    ROUTE("DELETE", "/api/v1/tokens/:id", sw_api_tokens_delete, SESSION, "Revoke an API token",
          "tokens", NULL, NULL, 204),

    ROUTE("GET", "/api/v1/users", sw_api_users_list, ADMIN(SW_SCOPE_ADMIN), "List users", "users",
          NULL, "UserList", 200),
    ROUTE("POST", "/api/v1/users", sw_api_users_create, ADMIN(SW_SCOPE_ADMIN), "Create a user",
          "users", "UserCreate", "User", 201),
    ROUTE("GET", "/api/v1/users/:id", sw_api_users_get, ADMIN(SW_SCOPE_ADMIN), "Get a user",
          "users", NULL, "User", 200),
    ROUTE("PATCH", "/api/v1/users/:id", sw_api_users_update, ADMIN(SW_SCOPE_ADMIN),
          "Change a user's name, role or password", "users", "UserUpdate", "User", 200),
    ROUTE("DELETE", "/api/v1/users/:id", sw_api_users_delete, ADMIN(SW_SCOPE_ADMIN),
          "Delete a user; their sessions and tokens stop working", "users", NULL, NULL, 204),
};

const size_t sw_api_routes_count = SW_ARRAY_SIZE(sw_api_routes);
