/* The route table: every route Slipway serves, and nothing outside it. The router, the
 * access check and /api/v1/openapi.json are all derived from these rows. */
#include "slipway/api.h"

/* clang-format off */
#define PUBLIC                  {SW_AUTH_PUBLIC, SW_ROLE_NONE, 0, 0, 0}
#define USER(scope)             {SW_AUTH_USER, SW_ROLE_MEMBER, scope, 0, 0}
#define SESSION                 {SW_AUTH_SESSION, SW_ROLE_MEMBER, 0, 0, 0}
#define ADMIN(scope)            {SW_AUTH_USER, SW_ROLE_ADMIN, scope, 0, 0}
/* A route on one project's resource: where the project comes from, the project role needed. */
#define PROJECT(from, role, scope) \
    {SW_AUTH_USER, SW_ROLE_MEMBER, scope, SW_PROJECT_##role, SW_FROM_##from}

#define R SW_SCOPE_READ
#define W SW_SCOPE_WRITE
#define D SW_SCOPE_DEPLOY

#define ROUTE(m, p, h, acc, sum, tg, rq, rs, st) \
    {.method = m, .pattern = p, .handler = h, .access = acc, .summary = sum, .tag = tg, \
     .request_schema = rq, .response_schema = rs, .success_status = st, .stateless = false}

/* A list with query filters. */
#define LIST(p, h, acc, sum, tg, rs, f) \
    {.method = "GET", .pattern = p, .handler = h, .access = acc, .summary = sum, .tag = tg, \
     .response_schema = rs, .success_status = 200, .stateless = false, .filters = f}

/* A live stream (DESIGN.md §6): WebSocket, SSE or NDJSON; 101 or 200. */
#define LIVE(p, h, acc, sum, tg) \
    {.method = "GET", .pattern = p, .handler = h, .access = acc, .summary = sum, .tag = tg, \
     .response_schema = "LiveMessage", .success_status = 200, .other_status = 101, \
     .stateless = false, .live = true}

/* System routes answer without the schema, so probes work while migrations run. */
#define SYSTEM(m, p, h, sum, rs) \
    {.method = m, .pattern = p, .handler = h, .access = PUBLIC, .summary = sum, \
     .tag = "system", .response_schema = rs, .success_status = 200, .stateless = true}
/* clang-format on */

static const sw_route_query_t history_query[] = {
    {"metric", true,
     "{\"enum\":[\"cpu_percent\",\"load_1m\",\"memory_used_bytes\",\"memory_used_percent\","
     "\"disk_free_bytes\",\"disk_used_percent\",\"network_rx_bytes_per_s\","
     "\"network_tx_bytes_per_s\",\"process_rss_bytes\",\"http_connections\","
     "\"deployments_running\"]}",
     "the metric"},
    {"time_range", false,
     "{\"type\":\"string\",\"pattern\":\"^[0-9]{1,9}[smhd]$\",\"default\":\"1h\"}",
     "how far back: whole seconds, minutes, hours or days (15m, 1h, 24h), at most 24h"},
    {"step", false, "{\"type\":\"string\",\"pattern\":\"^[0-9]{1,9}[smhd]$\"}",
     "the bucket: a duration from time_range/1000 (at least 1s) to time_range; default "
     "time_range/100"},
    {"aggregation", false, "{\"enum\":[\"avg\",\"min\",\"max\"],\"default\":\"avg\"}",
     "how a bucket's samples make its value"},
    {"node", false, "{\"type\":\"string\",\"minLength\":1,\"maxLength\":160}",
     "one node, by name or id: its series alone (404 when there is no such node)"},
    {NULL, false, NULL, NULL},
};

const sw_route_t sw_api_routes[] = {
    SYSTEM("GET", "/health", sw_api_get_health, "Liveness and backend checks", "Health"),
    SYSTEM("GET", "/ready", sw_api_get_ready, "Readiness: migrations applied, serving", "Ready"),
    SYSTEM("GET", "/metrics", sw_api_get_metrics, "Prometheus metrics (text format 0.0.4)", NULL),
    SYSTEM("GET", "/api/v1/openapi.json", sw_api_get_openapi, "This API's OpenAPI 3.1 description",
           NULL),

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

    ROUTE("GET", "/api/v1/projects", sw_api_projects_list, USER(R),
          "Projects the caller can see, with the caller's role in each", "projects", NULL,
          "ProjectList", 200),
    ROUTE("POST", "/api/v1/projects", sw_api_projects_create, USER(W),
          "Create a project (the caller becomes its admin; it starts with production)", "projects",
          "ProjectCreate", "Project", 201),
    ROUTE("GET", "/api/v1/projects/:id", sw_api_projects_get, PROJECT(PROJECT, VIEWER, R),
          "Get a project", "projects", NULL, "Project", 200),
    ROUTE("PATCH", "/api/v1/projects/:id", sw_api_projects_update, PROJECT(PROJECT, ADMIN, W),
          "Rename or describe a project", "projects", "ProjectUpdate", "Project", 200),
    ROUTE("DELETE", "/api/v1/projects/:id", sw_api_projects_delete, PROJECT(PROJECT, ADMIN, W),
          "Delete a project and everything in it", "projects", NULL, NULL, 204),
    ROUTE("GET", "/api/v1/projects/:id/members", sw_api_members_list, PROJECT(PROJECT, VIEWER, R),
          "A project's members", "projects", NULL, "MemberList", 200),
    ROUTE("PUT", "/api/v1/projects/:id/members/:user_id", sw_api_members_put,
          PROJECT(PROJECT, ADMIN, W), "Add a member or change their role", "projects", "MemberPut",
          "Member", 200),
    ROUTE("DELETE", "/api/v1/projects/:id/members/:user_id", sw_api_members_delete,
          PROJECT(PROJECT, ADMIN, W), "Remove a member", "projects", NULL, NULL, 204),
    ROUTE("GET", "/api/v1/projects/:id/environments", sw_api_environments_list,
          PROJECT(PROJECT, VIEWER, R), "A project's environments", "environments", NULL,
          "EnvironmentList", 200),
    ROUTE("POST", "/api/v1/projects/:id/environments", sw_api_environments_create,
          PROJECT(PROJECT, DEVELOPER, W), "Create an environment", "environments",
          "EnvironmentWrite", "Environment", 201),
    LIST("/api/v1/environments", sw_api_environments_list_all, USER(R),
         "Environments of every project the caller can see, with their app counts; filters "
         "project_id, name",
         "environments", "EnvironmentList", "project_id,name"),
    ROUTE("GET", "/api/v1/environments/:id", sw_api_environments_get,
          PROJECT(ENVIRONMENT, VIEWER, R), "Get an environment", "environments", NULL,
          "Environment", 200),
    ROUTE("PATCH", "/api/v1/environments/:id", sw_api_environments_update,
          PROJECT(ENVIRONMENT, DEVELOPER, W), "Rename an environment", "environments",
          "EnvironmentWrite", "Environment", 200),
    ROUTE("DELETE", "/api/v1/environments/:id", sw_api_environments_delete,
          PROJECT(ENVIRONMENT, ADMIN, W), "Delete an environment that holds no apps",
          "environments", NULL, NULL, 204),

    LIST("/api/v1/apps", sw_api_apps_list, USER(R),
         "Apps the caller can see; filters project_id, environment_id, status", "apps", "AppList",
         "project_id,environment_id,status"),
    ROUTE("POST", "/api/v1/apps", sw_api_apps_create, PROJECT(BODY_ENV, DEVELOPER, W),
          "Create an app in an environment", "apps", "AppCreate", "App", 201),
    ROUTE("GET", "/api/v1/apps/:id", sw_api_apps_get, PROJECT(APP, VIEWER, R), "Get an app", "apps",
          NULL, "App", 200),
    ROUTE("PATCH", "/api/v1/apps/:id", sw_api_apps_update, PROJECT(APP, DEVELOPER, W),
          "Change an app's settings", "apps", "AppUpdate", "App", 200),
    ROUTE("DELETE", "/api/v1/apps/:id", sw_api_apps_delete, PROJECT(APP, ADMIN, W),
          "Delete an app, its env vars and domains", "apps", NULL, NULL, 204),
    ROUTE("GET", "/api/v1/apps/:id/env", sw_api_env_list, PROJECT(APP, VIEWER, R),
          "An app's env var keys and flags (never values)", "env", NULL, "EnvList", 200),
    ROUTE("PUT", "/api/v1/apps/:id/env", sw_api_env_bulk, PROJECT(APP, DEVELOPER, W),
          "Set several env vars at once", "env", "EnvBulk", "EnvList", 200),
    ROUTE("PUT", "/api/v1/apps/:id/env/:key", sw_api_env_put, PROJECT(APP, DEVELOPER, W),
          "Set one env var", "env", "EnvPut", "EnvVar", 200),
    ROUTE("DELETE", "/api/v1/apps/:id/env/:key", sw_api_env_delete, PROJECT(APP, DEVELOPER, W),
          "Delete one env var", "env", NULL, NULL, 204),
    ROUTE("GET", "/api/v1/apps/:id/domains", sw_api_domains_list_app, PROJECT(APP, VIEWER, R),
          "An app's domains", "domains", NULL, "DomainList", 200),
    ROUTE("POST", "/api/v1/apps/:id/domains", sw_api_domains_create, PROJECT(APP, DEVELOPER, W),
          "Route a hostname to an app", "domains", "DomainCreate", "Domain", 201),
    ROUTE("GET", "/api/v1/domains", sw_api_domains_list, USER(R), "Domains the caller can see",
          "domains", NULL, "DomainList", 200),
    ROUTE("GET", "/api/v1/domains/:id", sw_api_domains_get, PROJECT(DOMAIN, VIEWER, R),
          "A domain, with how the proxy routes it and the certificate it serves", "domains", NULL,
          "Domain", 200),
    ROUTE("DELETE", "/api/v1/domains/:id", sw_api_domains_delete, PROJECT(DOMAIN, ADMIN, W),
          "Remove a domain", "domains", NULL, NULL, 204),

    ROUTE("POST", "/api/v1/apps/:id/deployments", sw_api_deployments_create,
          PROJECT(APP, DEVELOPER, D), "Deploy the app (its branch, or a ref or commit)",
          "deployments", "DeploymentCreate", "Deployment", 202),
    ROUTE("POST", "/api/v1/apps/:id/start", sw_api_apps_start, PROJECT(APP, DEVELOPER, D),
          "Start the app: release its active build again", "apps", NULL, "Deployment", 202),
    ROUTE("POST", "/api/v1/apps/:id/restart", sw_api_apps_restart, PROJECT(APP, DEVELOPER, D),
          "Restart without downtime: new instances, healthy first, then the old ones stop", "apps",
          NULL, "Deployment", 202),
    ROUTE("POST", "/api/v1/apps/:id/stop", sw_api_apps_stop, PROJECT(APP, DEVELOPER, D),
          "Stop every instance of the app", "apps", NULL, "App", 202),
    ROUTE("GET", "/api/v1/apps/:id/deploy-key", sw_api_deploy_key_get, PROJECT(APP, VIEWER, R),
          "The app's ssh deploy key (public half, authorized_keys format) and known hosts", "apps",
          NULL, "DeployKey", 200),
    ROUTE("POST", "/api/v1/apps/:id/deploy-key", sw_api_deploy_key_create,
          PROJECT(APP, DEVELOPER, W),
          "Generate (or replace) the app's ed25519 deploy key; answers the public half", "apps",
          NULL, "DeployKey", 201),
    ROUTE("GET", "/api/v1/apps/:id/known-hosts", sw_api_known_hosts_get, PROJECT(APP, VIEWER, R),
          "The ssh host keys the app trusts", "apps", NULL, "KnownHosts", 200),
    ROUTE("PUT", "/api/v1/apps/:id/known-hosts", sw_api_known_hosts_put, PROJECT(APP, DEVELOPER, W),
          "Replace the ssh host keys the app trusts (known_hosts lines or {host, sha256})", "apps",
          "KnownHostsPut", "KnownHosts", 200),
    ROUTE("GET", "/api/v1/apps/:id/branches", sw_api_apps_branches, PROJECT(APP, VIEWER, R),
          "The branches of the app's repository and their head commits, read from the git host "
          "with the app's credentials (?sort=name:asc|name:desc); answered again for "
          "SLIPWAY_BRANCHES_CACHE_MS",
          "apps", NULL, "BranchList", 200),
    ROUTE("GET", "/api/v1/apps/:id/logs", sw_api_apps_logs, PROJECT(APP, VIEWER, R),
          "The last lines (?lines=, 1-1000, default 100) of the app's runtime output, oldest "
          "first",
          "apps", NULL, "AppLogs", 200),
    ROUTE("GET", "/api/v1/apps/:id/deployments", sw_api_deployments_list_app,
          PROJECT(APP, VIEWER, R), "An app's deployments, newest first", "deployments", NULL,
          "DeploymentList", 200),
    LIST("/api/v1/deployments", sw_api_deployments_list, USER(R),
         "Deployments the caller can see; filters app_id, status", "deployments", "DeploymentList",
         "app_id,status"),
    ROUTE("GET", "/api/v1/deployments/:id", sw_api_deployments_get, PROJECT(DEPLOYMENT, VIEWER, R),
          "Get a deployment (with queue_position while pending)", "deployments", NULL, "Deployment",
          200),
    {.method = "POST",
     .pattern = "/api/v1/deployments/:id/cancel",
     .handler = sw_api_deployments_cancel,
     .access = PROJECT(DEPLOYMENT, DEVELOPER, D),
     .summary = "Cancel: a pending one at once (200), a running one through its worker (202)",
     .tag = "deployments",
     .response_schema = "Deployment",
     .success_status = 200,
     .other_status = 202},
    ROUTE("POST", "/api/v1/deployments/:id/rollback", sw_api_deployments_rollback,
          PROJECT(DEPLOYMENT, DEVELOPER, D),
          "Release that deployment's build again (no fetch, no build), as a new deployment",
          "deployments", NULL, "Deployment", 202),
    ROUTE("GET", "/api/v1/deployments/:id/logs", sw_api_deployments_logs,
          PROJECT(DEPLOYMENT, VIEWER, R),
          "Stored build and release output: ?since_seq= for what follows, ?lines= for the tail; "
          "?follow=true streams NDJSON (the last ?lines= of it, then each new line)",
          "deployments", NULL, "DeploymentLogs", 200),

    /* Push hooks: public, proven by the delivery's signature (no session, and no request
     * schema, so nothing parses the body before the signature is checked). */
    {.method = "POST",
     .pattern = "/api/v1/hooks/:app_id",
     .handler = sw_api_hooks_receive,
     .access = PUBLIC,
     .summary = "A push hook from GitHub, Gitea or GitLab (or a bare {\"ref\"} signed with "
                "X-Hub-Signature-256), signed with the app's hook secret: "
                "a push to the app's branch deploys (202); anything else is answered (200) and "
                "ignored; a bad or missing signature is 401",
     .tag = "hooks",
     .response_schema = "HookResult",
     .success_status = 202,
     .other_status = 200},
    ROUTE("GET", "/api/v1/apps/:id/hook", sw_api_hook_get, PROJECT(APP, VIEWER, R),
          "The app's push hook: its URL and whether a secret is set (never the secret)", "hooks",
          NULL, "HookInfo", 200),
    ROUTE("POST", "/api/v1/apps/:id/hook/rotate", sw_api_hook_rotate, PROJECT(APP, ADMIN, W),
          "Make a new hook secret (the old one stops working); shown only in this answer", "hooks",
          NULL, "HookRotated", 200),

    LIVE("/api/v1/deployments/:id/stream", sw_api_deployments_stream,
         PROJECT(DEPLOYMENT, VIEWER, R),
         "The deployment's log and status live: stored lines first, then each line as it is "
         "written, then end (WebSocket, SSE with Last-Event-ID, or NDJSON)",
         "live"),
    LIVE("/api/v1/apps/:id/logs/stream", sw_api_apps_logs_stream, PROJECT(APP, VIEWER, R),
         "The app's runtime output live, after its last ?lines= (default 100) lines", "live"),
    ROUTE("GET", "/api/v1/system/metrics", sw_api_system_metrics, ADMIN(R),
          "This node's metrics now: CPU, load, memory, disk, network, the process", "system", NULL,
          "SystemMetrics", 200),
    {.method = "GET",
     .pattern = "/api/v1/system/metrics/history",
     .handler = sw_api_system_metrics_history,
     .access = ADMIN(R),
     .summary = "One metric of every node over the last ?time_range= (default 1h, at most 24h), "
                "in buckets of ?step= (at most 1000 of them), each node's and all nodes' together "
                "aggregated by ?aggregation= (avg, min or max); ?node= (a name or id) for one",
     .tag = "system",
     .response_schema = "MetricsHistory",
     .success_status = 200,
     .query = history_query},
    LIST("/api/v1/nodes", sw_api_nodes_list, ADMIN(R),
         "Every slipwayd process: role, version, heartbeat, load and the instances it runs",
         "nodes", "NodeList", "role,status"),
    ROUTE("GET", "/api/v1/nodes/:id", sw_api_nodes_get, ADMIN(R), "One node", "nodes", NULL, "Node",
          200),
    LIVE("/api/v1/system/metrics/stream", sw_api_system_metrics_stream, ADMIN(R),
         "This node's CPU, memory, load, disk and network once a second", "live"),

    /* Instance admins, or a project's admins for a webhook with that project_id: checked by
     * the handlers, since the project comes from the body or the webhook. */
    LIST("/api/v1/webhooks", sw_api_webhooks_list, USER(R),
         "Webhooks the caller manages (instance admins: all; project admins: their projects'); "
         "filter project_id",
         "webhooks", "WebhookList", "project_id"),
    ROUTE("POST", "/api/v1/webhooks", sw_api_webhooks_create, USER(W),
          "Add a webhook (instance admins; project admins with their project_id); the signing "
          "secret is shown only in this answer",
          "webhooks", "WebhookCreate", "WebhookCreated", 201),
    ROUTE("DELETE", "/api/v1/webhooks/:id", sw_api_webhooks_delete, USER(W),
          "Delete a webhook and its queued deliveries", "webhooks", NULL, NULL, 204),
    LIST("/api/v1/webhooks/:id/deliveries", sw_api_webhooks_deliveries, USER(R),
         "A webhook's delivery attempts, newest first; filters delivery_id, event", "webhooks",
         "WebhookAttemptList", "delivery_id,event"),

    LIST("/api/v1/audit", sw_api_audit_list, USER(R),
         "Audit entries the caller may read; filters actor_id, resource, action, project_id",
         "audit", "AuditList", "actor_id,project_id,resource,action"),
};

const size_t sw_api_routes_count = SW_ARRAY_SIZE(sw_api_routes);
