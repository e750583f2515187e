/* Configuration from SLIPWAY_* environment variables and matching --flags. */
#ifndef SLIPWAY_CONFIG_H
#define SLIPWAY_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "slipway/log.h"

typedef enum { SW_NODE_ALL, SW_NODE_API, SW_NODE_WORKER, SW_NODE_ROLE_MAX } sw_node_role_t;

typedef struct {
    /* where and what */
    char *listen;       /* comma-separated host:port list, [v6]:port allowed */
    char *database_url; /* libpq URI or conninfo */
    char *redis_url;    /* redis://[:password@]host[:port][/db] */
    char *data_dir;
    char *master_key;
    sw_node_role_t role;
    char *node_name;
    unsigned http_workers;
    char *public_url;
    bool cookie_secure;
    char *allowed_origins;
    char *registration; /* "closed" | "open" */
    char *rate_limit;   /* "<rps>/<burst>" | "off" */
    bool allow_file_repos;
    bool git_allow_private; /* fetches may reach private addresses */
    bool webhook_allow_private;
    uint32_t webhook_max_attempts;     /* per delivery, then it is failed */
    uint32_t webhook_retry_base_ms;    /* the first retry's delay; doubled after each failure */
    uint32_t webhook_keep_days;        /* finished deliveries are pruned after this */
    uint32_t deployment_log_keep_days; /* finished deployments' output, bar the active one */
    uint32_t janitor_interval_ms;      /* between two janitor rounds */
    uint32_t node_heartbeat_ms;        /* between two heartbeats in the nodes table */
    uint32_t metrics_sample_ms;        /* between two samples for the metrics history */
    char *tls_ca_file;   /* extra CAs outgoing https trusts, beside the system store; "": none */
    char *tls_cert_file; /* with tls_key_file: the listeners serve https; "": plain HTTP */
    char *tls_key_file;
    char *port_range; /* "lo-hi" */
    uint32_t max_replicas;
    char *container_cli;     /* "" | "podman" | "docker" | a path */
    char *container_flags;   /* global flags for every container CLI command, space separated */
    char *container_network; /* "bridge" | "host" */
    char *registry;          /* "": built images stay on their node */
    char *process_runtime;   /* "auto" | "all" | "admins" | "off" */
    char *app_uid_range;     /* "lo-hi": one uid and gid per app for its builds and instances */
    char *bwrap;             /* "auto" | "off" | an absolute path to bwrap */
    bool allow_wildcard_domains;
    char *rate_limit_backend; /* "local" | "redis" */

    /* deployments */
    uint32_t worker_concurrency;
    uint32_t clone_timeout_ms;
    uint32_t branches_timeout_ms; /* GET apps/:id/branches: reading the remote's refs */
    uint32_t branches_cache_ms;   /* ...and answering them again without asking */
    uint32_t build_timeout_ms;
    uint32_t health_timeout_ms;
    uint32_t stop_grace_ms;
    uint32_t lease_ttl_ms;
    uint32_t keep_builds;
    uint32_t runtime_log_lines; /* kept per app */
    /* a deployment's stored output, bytes; later lines are only streamed */
    uint64_t build_log_max_bytes;
    sw_log_level_t log_level;

    /* HTTP limits and timeouts */
    uint32_t max_header_bytes;
    uint32_t max_headers;
    uint64_t max_body_bytes;
    uint32_t max_connections;
    uint32_t max_pipelined; /* requests in flight per connection */
    uint32_t header_timeout_ms;
    uint32_t body_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t drain_timeout_ms;

    /* backends */
    uint32_t pg_pool_size;
    uint32_t pg_query_timeout_ms;
    uint32_t pg_connect_timeout_ms;
    uint32_t redis_timeout_ms;
    uint32_t health_interval_ms;
    bool read_cache; /* the per-process cache of authorised reads */

    /* the edge proxy */
    char *proxy;       /* "none" | "caddy" | "nginx" */
    char *caddy_admin; /* http://host:port */
    char *proxy_http;  /* host:port the proxy serves HTTP on */
    char *proxy_https; /* host:port, or "": HTTP only */
    char *proxy_dns;   /* host:port of the DNS responder (UDP) */
    uint32_t proxy_refresh_ms;
    uint32_t proxy_reconcile_ms;
    uint32_t drain_ms;
    char *acme_ca;
    char *acme_email;
    char *acme_ca_root;
    char *apps_domain;         /* "": no generated hostnames */
    char *advertise_address;   /* an IP literal */
    char *nginx;               /* the nginx binary (SLIPWAY_PROXY=nginx), found on PATH */
    char *nginx_conf;          /* the main config nginx -t and -s reload are given */
    char *nginx_include;       /* the file Slipway renders, included in the http block */
    char *nginx_tls_cert_file; /* with the key: nginx serves every domain over proxy_https */
    char *nginx_tls_key_file;
} sw_config_t;

/* Error text for the user, filled on failure. */
typedef struct {
    char msg[512];
} sw_config_err_t;

/* Fills cfg from defaults, then envp (SLIPWAY_*), then argv (--flag value, --flag=value);
 * validates everything but the backends' URLs (sw_backends_check in backends.h).
 * Recognised non-config flags are reported through out_action: 0 = run, 1 = --help,
 * 2 = --check-config, 3 = --version. Returns 0 or -EINVAL with err. */
enum { SW_CONFIG_RUN, SW_CONFIG_HELP, SW_CONFIG_CHECK, SW_CONFIG_VERSION };
int sw_config_load(sw_config_t *cfg, int argc, char **argv, char **envp, int *out_action,
                   sw_config_err_t *err);
void sw_config_free(sw_config_t *cfg);
/* Writes the --help text listing every option, its variable and default. */
void sw_config_print_help(FILE *out, const char *argv0);
const char *sw_node_role_name(sw_node_role_t role);

/* Splits "host:port", "[v6]:port" or ":port" into host (NUL-terminated, "" when empty) and
 * port. Returns 0 or -EINVAL. */
int sw_config_split_hostport(const char *s, char *host, size_t host_size, uint16_t *port);

/* SLIPWAY_PUBLIC_URL's host, lower-cased, into out: "" when there is none, or when it is an
 * IPv6 literal or longer than out holds (no hostname to route or to reserve). */
void sw_config_public_host(const sw_config_t *cfg, char *out, size_t size);

#endif
