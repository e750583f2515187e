/* Configuration: one table of options, read from defaults, SLIPWAY_* variables and --flags,
 * in that order, then validated as a whole. */
#include "slipway/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "slipway/buf.h"

typedef enum { OPT_STR, OPT_BOOL, OPT_U32, OPT_U64, OPT_ROLE, OPT_LOGLEVEL, OPT_MAX } opt_type_t;

typedef struct {
    const char *name; /* flag name; the variable is SLIPWAY_ + upper-cased name */
    opt_type_t type;
    size_t offset;
    const char *def;
    unsigned long long min, max; /* for numbers */
    const char *help;
} opt_t;

#define O(f)       offsetof(sw_config_t, f)
#define SECRET_OPT "master-key"

static const opt_t options[] = {
    {"listen", OPT_STR, O(listen), "127.0.0.1:8080", 0, 0,
     "addresses to serve HTTP on: host:port[,host:port...]; [::1]:port for IPv6"},
    {"database-url", OPT_STR, O(database_url), "postgresql://slipway@127.0.0.1:5432/slipway", 0, 0,
     "PostgreSQL connection URI or conninfo"},
    {"redis-url", OPT_STR, O(redis_url), "redis://127.0.0.1:6379/0", 0, 0,
     "Redis URL: redis://[:password@]host[:port][/db] or unix:///path"},
    {"data-dir", OPT_STR, O(data_dir), "/var/lib/slipway", 0, 0,
     "where builds, repositories and the master key file live"},
    {"master-key", OPT_STR, O(master_key), "", 0, 0,
     "64 hex characters; empty: a 0600 key file in the data directory"},
    {"role", OPT_ROLE, O(role), "all", 0, 0, "api, worker or all"},
    {"node-name", OPT_STR, O(node_name), "", 0, 0, "this node's name; empty: the host name"},
    {"http-workers", OPT_U32, O(http_workers), "1", 1, 64,
     "HTTP event loops (processes) sharing the port with SO_REUSEPORT"},
    {"public-url", OPT_STR, O(public_url), "", 0, 0,
     "the URL users reach Slipway at (https://... turns on Secure cookies)"},
    {"cookie-secure", OPT_BOOL, O(cookie_secure), "false", 0, 0, "always mark cookies Secure"},
    {"allowed-origins", OPT_STR, O(allowed_origins), "", 0, 0,
     "comma-separated extra origins allowed for cookie-authenticated changes"},
    {"registration", OPT_STR, O(registration), "closed", 0, 0, "closed or open"},
    {"rate-limit", OPT_STR, O(rate_limit), "50/100", 0, 0,
     "API budget per principal: <requests per second>/<burst>, or off"},
    {"allow-file-repos", OPT_BOOL, O(allow_file_repos), "false", 0, 0,
     "accept file:// repository URLs"},
    {"git-allow-private", OPT_BOOL, O(git_allow_private), "false", 0, 0,
     "let git fetches reach private addresses (10/8, 172.16/12, 192.168/16, fc00::/7)"},
    {"webhook-allow-private", OPT_BOOL, O(webhook_allow_private), "false", 0, 0,
     "let outgoing webhooks reach private and loopback addresses"},
    {"webhook-max-attempts", OPT_U32, O(webhook_max_attempts), "8", 1, 100,
     "attempts per webhook delivery before it is marked failed"},
    {"webhook-retry-base-ms", OPT_U32, O(webhook_retry_base_ms), "1000", 10, 3600000,
     "wait after a webhook's first failed attempt; doubles after each, up to an hour"},
    {"webhook-keep-days", OPT_U32, O(webhook_keep_days), "30", 1, 3650,
     "days a delivered or failed webhook delivery and its attempts are kept"},
    {"deployment-log-keep-days", OPT_U32, O(deployment_log_keep_days), "90", 1, 3650,
     "days a finished deployment's build and release output is kept (the active one's always)"},
    {"janitor-interval-ms", OPT_U32, O(janitor_interval_ms), "3600000", 1000, 86400000,
     "between rounds that prune old webhook deliveries and deleted apps' runtime logs"},
    {"node-heartbeat-ms", OPT_U32, O(node_heartbeat_ms), "5000", 200, 600000,
     "between this process's heartbeats in GET /api/v1/nodes (lost after three missed)"},
    {"metrics-sample-ms", OPT_U32, O(metrics_sample_ms), "10000", 100, 3600000,
     "between two samples of this process's metrics in GET /api/v1/system/metrics/history "
     "(every node's samples are kept a day)"},
    {"tls-ca-file", OPT_STR, O(tls_ca_file), "", 0, 0,
     "PEM certificates outgoing https (webhooks) trusts besides the system store"},
    {"tls-cert-file", OPT_STR, O(tls_cert_file), "", 0, 0,
     "PEM certificate chain: every listener serves https (with tls-key-file; reread on SIGHUP)"},
    {"tls-key-file", OPT_STR, O(tls_key_file), "", 0, 0,
     "PEM private key (unencrypted) of tls-cert-file"},
    {"port-range", OPT_STR, O(port_range), "20000-29999", 0, 0,
     "ports handed to app instances: lo-hi"},
    {"process-runtime", OPT_STR, O(process_runtime), "auto", 0, 0,
     "who may deploy with the process runtime: all, admins, off; auto: all when builds and "
     "instances run isolated, admins otherwise"},
    {"app-uid-range", OPT_STR, O(app_uid_range), "300000-399999", 0, 0,
     "uids (and gids) handed one per app to its builds and process instances: lo-hi"},
    {"bwrap", OPT_STR, O(bwrap), "auto", 0, 0,
     "bubblewrap for builds and instances: auto (bwrap on PATH when it works), off, or a path"},
    {"container-cli", OPT_STR, O(container_cli), "", 0, 0,
     "the docker-compatible CLI for runtime: container apps: podman or docker (or a path); "
     "empty: podman, else docker, found on PATH"},
    {"container-flags", OPT_STR, O(container_flags), "", 0, 0,
     "extra global flags before every container CLI command, split on spaces (e.g. --root DIR)"},
    {"registry", OPT_STR, O(registry), "", 0, 0,
     "a registry (host[:port][/path]) built container images are pushed to as "
     "<registry>/slipway/<app id>:<n>, and pulled from by nodes that lack them"},
    {"container-network", OPT_STR, O(container_network), "bridge", 0, 0,
     "bridge: the app's port published on the instance's port of SLIPWAY_PORT_RANGE; host: "
     "the container shares the host's network and listens on PORT"},
    {"max-replicas", OPT_U32, O(max_replicas), "10", 1, 1000, "most instances one app may run"},
    {"allow-wildcard-domains", OPT_BOOL, O(allow_wildcard_domains), "false", 0, 0,
     "accept *.example.com style domains"},
    {"rate-limit-backend", OPT_STR, O(rate_limit_backend), "local", 0, 0,
     "local (per process) or redis (shared by every slipwayd on the Redis)"},
    {"worker-concurrency", OPT_U32, O(worker_concurrency), "2", 1, 256,
     "deployments one worker runs at once (one per app at a time)"},
    {"clone-timeout-ms", OPT_U32, O(clone_timeout_ms), "300000", 1000, 86400000,
     "time a repository fetch and checkout may take"},
    {"branches-timeout-ms", OPT_U32, O(branches_timeout_ms), "15000", 100, 600000,
     "time GET apps/:id/branches may spend reading a repository's branches"},
    {"branches-cache-ms", OPT_U32, O(branches_cache_ms), "10000", 0, 3600000,
     "how long an app's branches are answered again without asking its git host (0: never)"},
    {"build-timeout-ms", OPT_U32, O(build_timeout_ms), "1800000", 1000, 86400000,
     "time a build may take"},
    {"health-timeout-ms", OPT_U32, O(health_timeout_ms), "30000", 100, 3600000,
     "time a new instance has to answer its health check"},
    {"stop-grace-ms", OPT_U32, O(stop_grace_ms), "10000", 0, 600000,
     "between SIGTERM and SIGKILL when an instance or step is stopped"},
    {"lease-ttl-ms", OPT_U32, O(lease_ttl_ms), "15000", 1000, 600000,
     "a worker's hold on an app's deployment; another takes over once it lapses"},
    {"keep-builds", OPT_U32, O(keep_builds), "5", 1, 1000, "build directories kept per app"},
    {"runtime-log-lines", OPT_U32, O(runtime_log_lines), "1000", 10, 100000,
     "runtime output lines kept per app (the last ones, in Redis)"},
    {"build-log-max-bytes", OPT_U64, O(build_log_max_bytes), "10485760", 4096, 1073741824ull,
     "a deployment's output stored, bytes; later lines are streamed live but not stored"},
    {"log-level", OPT_LOGLEVEL, O(log_level), "info", 0, 0, "debug, info, warn or error"},
    {"max-header-bytes", OPT_U32, O(max_header_bytes), "16384", 1024, 1048576,
     "request line and headers, bytes (431 beyond)"},
    {"max-headers", OPT_U32, O(max_headers), "100", 8, 1000, "header count (431 beyond)"},
    {"max-body-bytes", OPT_U64, O(max_body_bytes), "1048576", 0, 1073741824ull,
     "request body, bytes (413 beyond)"},
    {"max-connections", OPT_U32, O(max_connections), "10000", 1, 1000000,
     "open connections per process (503 beyond)"},
    {"max-pipelined", OPT_U32, O(max_pipelined), "32", 1, 1024,
     "requests in flight per connection before reading pauses"},
    {"header-timeout-ms", OPT_U32, O(header_timeout_ms), "10000", 100, 3600000,
     "time to receive a request's line and headers (408 beyond)"},
    {"body-timeout-ms", OPT_U32, O(body_timeout_ms), "30000", 100, 3600000,
     "time to receive a request's body (408 beyond)"},
    {"idle-timeout-ms", OPT_U32, O(idle_timeout_ms), "60000", 100, 3600000,
     "keep-alive connection idle time before it is closed"},
    {"drain-timeout-ms", OPT_U32, O(drain_timeout_ms), "10000", 0, 600000,
     "on SIGTERM, how long in-flight requests may take to finish"},
    {"pg-pool-size", OPT_U32, O(pg_pool_size), "4", 1, 256, "PostgreSQL connections per process"},
    {"pg-query-timeout-ms", OPT_U32, O(pg_query_timeout_ms), "5000", 10, 3600000,
     "time a query may take"},
    {"pg-connect-timeout-ms", OPT_U32, O(pg_connect_timeout_ms), "5000", 10, 600000,
     "time a connection attempt may take"},
    {"redis-timeout-ms", OPT_U32, O(redis_timeout_ms), "2000", 10, 600000,
     "time a Redis command or connection attempt may take"},
    {"health-interval-ms", OPT_U32, O(health_interval_ms), "1000", 50, 600000,
     "how often the background health checks run"},
    {"read-cache", OPT_BOOL, O(read_cache), "on", 0, 0,
     "cache authorised reads per process, emptied by PostgreSQL notifications (on or off)"},
    {"proxy", OPT_STR, O(proxy), "none", 0, 0,
     "the edge proxy Slipway drives: none, caddy or nginx"},
    {"caddy-admin", OPT_STR, O(caddy_admin), "http://127.0.0.1:2019", 0, 0,
     "Caddy's admin API (SLIPWAY_PROXY=caddy)"},
    {"proxy-http", OPT_STR, O(proxy_http), ":80", 0, 0,
     "where the proxy serves apps over HTTP; releases are verified through it"},
    {"proxy-https", OPT_STR, O(proxy_https), ":443", 0, 0,
     "where the proxy serves apps over HTTPS; empty: HTTP only"},
    {"proxy-dns", OPT_STR, O(proxy_dns), "127.0.0.1:5354", 0, 0,
     "address of the DNS responder Caddy asks for each host's upstreams (UDP) and of the edge "
     "that answers hosts without an app and Caddy's certificate questions (TCP)"},
    {"proxy-refresh-ms", OPT_U32, O(proxy_refresh_ms), "50", 10, 60000,
     "how often Caddy asks again for a host's upstreams (a release switch takes this long)"},
    {"proxy-reconcile-ms", OPT_U32, O(proxy_reconcile_ms), "10000", 100, 3600000,
     "between two comparisons of the proxy's config with the routing table"},
    {"drain-ms", OPT_U32, O(drain_ms), "2000", 0, 600000,
     "after a switch, how long the previous instances finish their requests before they stop"},
    {"acme-ca", OPT_STR, O(acme_ca), "", 0, 0,
     "ACME directory URL for certificates; empty: the proxy's default"},
    {"acme-email", OPT_STR, O(acme_email), "", 0, 0, "contact address for the ACME account"},
    {"acme-ca-root", OPT_STR, O(acme_ca_root), "", 0, 0,
     "PEM file of a private ACME CA's root (such as Pebble's), trusted for the ACME API"},
    {"apps-domain", OPT_STR, O(apps_domain), "", 0, 0,
     "gives every app the hostname <app>.<project>.<apps domain>; empty: none"},
    {"advertise-address", OPT_STR, O(advertise_address), "127.0.0.1", 0, 0,
     "the IP address the proxy reaches this node's instances at"},
    {"nginx", OPT_STR, O(nginx), "nginx", 0, 0,
     "the nginx binary (SLIPWAY_PROXY=nginx), a path or a name found on PATH"},
    {"nginx-conf", OPT_STR, O(nginx_conf), "/etc/nginx/nginx.conf", 0, 0,
     "the main nginx config that nginx -t and nginx -s reload are given"},
    {"nginx-include", OPT_STR, O(nginx_include), "/etc/nginx/conf.d/slipway.conf", 0, 0,
     "the file Slipway renders; the main config includes it inside its http block"},
    {"nginx-tls-cert-file", OPT_STR, O(nginx_tls_cert_file), "", 0, 0,
     "PEM certificate (chain) nginx serves every domain with on SLIPWAY_PROXY_HTTPS; empty: "
     "nginx serves HTTP only"},
    {"nginx-tls-key-file", OPT_STR, O(nginx_tls_key_file), "", 0, 0,
     "the private key of SLIPWAY_NGINX_TLS_CERT_FILE"},
};

static const char *const role_names[SW_NODE_ROLE_MAX] = {"all", "api", "worker"};

const char *sw_node_role_name(sw_node_role_t role)
{
    return role < SW_NODE_ROLE_MAX ? role_names[role] : "?";
}

static void env_name(const opt_t *o, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "SLIPWAY_");
    for (const char *p = o->name; *p && n + 1 < size; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

/* Where a value came from, for error messages. */
static void source_name(const opt_t *o, int from_flag, char *out, size_t size)
{
    if (from_flag)
        snprintf(out, size, "--%s", o->name);
    else
        env_name(o, out, size);
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < SW_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int set_opt(sw_config_t *cfg, const opt_t *o, const char *value, int from_flag,
                   sw_config_err_t *err)
{
    char src[64];
    void *field = (char *)cfg + o->offset;
    unsigned long long v;

    source_name(o, from_flag, src, sizeof(src));
    switch (o->type) {
    case OPT_STR: {
        char **s = field;
        if (strlen(value) > 4096) {
            snprintf(err->msg, sizeof(err->msg), "%s: longer than 4096 characters", src);
            return -EINVAL;
        }
        free(*s);
        *s = sw_strdup(value);
        return 0;
    }
    case OPT_BOOL:
        if (parse_bool(value, field) != 0) {
            snprintf(err->msg, sizeof(err->msg), "%s: expected true or false, got \"%.64s\"", src,
                     value);
            return -EINVAL;
        }
        return 0;
    case OPT_U32:
    case OPT_U64:
        if (sw_iov_to_u64(sw_iov_from_cstr(value), &v) != 0 || v < o->min || v > o->max) {
            snprintf(err->msg, sizeof(err->msg),
                     "%s: expected a whole number from %llu to %llu, got \"%.64s\"", src, o->min,
                     o->max, value);
            return -EINVAL;
        }
        if (o->type == OPT_U32)
            *(uint32_t *)field = (uint32_t)v;
        else
            *(uint64_t *)field = v;
        return 0;
    case OPT_ROLE:
        for (int i = 0; i < SW_NODE_ROLE_MAX; i++) {
            if (strcmp(value, role_names[i]) == 0) {
                *(sw_node_role_t *)field = (sw_node_role_t)i;
                return 0;
            }
        }
        snprintf(err->msg, sizeof(err->msg), "%s: expected all, api or worker, got \"%.64s\"", src,
                 value);
        return -EINVAL;
    case OPT_LOGLEVEL:
        if (sw_log_level_parse(value, field) != 0) {
            snprintf(err->msg, sizeof(err->msg),
                     "%s: expected debug, info, warn or error, got \"%.64s\"", src, value);
            return -EINVAL;
        }
        return 0;
    default:
        return -EINVAL;
    }
}

void sw_config_public_host(const sw_config_t *cfg, char *out, size_t size)
{
    out[0] = '\0';
    const char *p = strstr(cfg->public_url, "://");
    if (!p)
        return;
    p += 3;
    size_t n = strcspn(p, ":/?#");
    if (n == 0 || n >= size || p[0] == '[')
        return;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)p[i]);
    out[n] = '\0';
}

int sw_config_split_hostport(const char *s, char *host, size_t host_size, uint16_t *port)
{
    const char *colon;
    size_t hlen;
    unsigned long long p;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= host_size)
            return -EINVAL;
        memcpy(host, s + 1, hlen);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return -EINVAL; /* bare IPv6 addresses must be bracketed */
        hlen = (size_t)(colon - s);
        if (hlen >= host_size)
            return -EINVAL;
        memcpy(host, s, hlen);
    }
    host[hlen] = '\0';
    /* Port 0 asks the kernel for a free port; the daemon logs the one it got. */
    if (sw_iov_to_u64(sw_iov_from_cstr(colon + 1), &p) != 0 || p > 65535)
        return -EINVAL;
    *port = (uint16_t)p;
    return 0;
}

static int check_listen(const char *list, sw_config_err_t *err)
{
    char *copy = sw_strdup(list), *save = NULL;
    int r = 0, count = 0;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char host[256];
        uint16_t port;
        count++;
        if (sw_config_split_hostport(item, host, sizeof(host), &port) != 0) {
            snprintf(err->msg, sizeof(err->msg),
                     "SLIPWAY_LISTEN: \"%.100s\" is not host:port (IPv6 as [addr]:port)", item);
            r = -EINVAL;
            break;
        }
    }
    if (r == 0 && (count == 0 || count > 16)) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_LISTEN: give 1 to 16 addresses");
        r = -EINVAL;
    }
    free(copy);
    return r;
}

static int check_rate_limit(const char *s)
{
    unsigned rps, burst;
    char tail;
    if (strcmp(s, "off") == 0)
        return 0;
    if (sscanf(s, "%u/%u%c", &rps, &burst, &tail) != 2 || rps == 0 || burst == 0 || rps > 1000000 ||
        burst > 1000000)
        return -EINVAL;
    return 0;
}

static int check_port_range(const char *s)
{
    unsigned lo, hi;
    char tail;
    if (sscanf(s, "%u-%u%c", &lo, &hi, &tail) != 2 || lo < 1024 || hi > 65535 || lo > hi)
        return -EINVAL;
    return 0;
}

static int check_uid_range(const char *s)
{
    unsigned long lo, hi;
    char tail;
    /* Above the system's users, below the overflow uid; at least one app. */
    if (sscanf(s, "%lu-%lu%c", &lo, &hi, &tail) != 2 || lo < 1000 || hi >= 2147483647ul || lo > hi)
        return -EINVAL;
    return 0;
}

static bool one_of(const char *s, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(s, *names) == 0)
            return true;
    return false;
}

static int check_url_prefix(const char *s)
{
    return (*s == '\0' || strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0)
               ? 0
               : -EINVAL;
}

/* The edge proxy's settings: the driver, its addresses, the generated-domain suffix. */
static int check_proxy(const sw_config_t *cfg, sw_config_err_t *err)
{
    static const char *const drivers[] = {"none", "caddy", "nginx", NULL};
    char host[64];
    uint16_t port;
    unsigned char ip[16];
    if (!one_of(cfg->proxy, drivers)) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_PROXY: expected none, caddy or nginx");
        return -EINVAL;
    }
    const struct {
        const char *name, *value;
        bool may_be_empty;
    } addrs[] = {{"SLIPWAY_PROXY_HTTP", cfg->proxy_http, false},
                 {"SLIPWAY_PROXY_HTTPS", cfg->proxy_https, true},
                 {"SLIPWAY_PROXY_DNS", cfg->proxy_dns, false}};
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        if (addrs[i].may_be_empty && !addrs[i].value[0])
            continue;
        if (sw_config_split_hostport(addrs[i].value, host, sizeof(host), &port) != 0 || port == 0) {
            snprintf(err->msg, sizeof(err->msg), "%s: expected host:port, not %.100s",
                     addrs[i].name, addrs[i].value);
            return -EINVAL;
        }
    }
    if (inet_pton(AF_INET, cfg->advertise_address, ip) != 1 &&
        inet_pton(AF_INET6, cfg->advertise_address, ip) != 1) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_ADVERTISE_ADDRESS: expected an IP address");
        return -EINVAL;
    }
    for (const char *p = cfg->apps_domain; *p; p++) {
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' ||
              (*p == '.' && p != cfg->apps_domain && p[1] && p[1] != '.'))) {
            snprintf(err->msg, sizeof(err->msg),
                     "SLIPWAY_APPS_DOMAIN: expected a lower-case domain such as apps.example.com");
            return -EINVAL;
        }
    }
    return 0;
}

static int check_master_key(const char *s)
{
    if (*s == '\0')
        return 0;
    if (strlen(s) != 64)
        return -EINVAL;
    for (const char *p = s; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return -EINVAL;
    return 0;
}

/* "" or a path that goes into nginx's config as it is: absolute, and nothing nginx's syntax
 * gives a meaning to (spaces, quotes, ';', braces, '$'). */
static bool nginx_path_ok(const char *p)
{
    if (!p[0])
        return true;
    if (p[0] != '/')
        return false;
    for (; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/._-+@", *p))
            return false;
    return true;
}

static int validate(sw_config_t *cfg, sw_config_err_t *err)
{
    if (check_listen(cfg->listen, err) != 0)
        return -EINVAL;
    if (strcmp(cfg->registration, "open") != 0 && strcmp(cfg->registration, "closed") != 0) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_REGISTRATION: expected open or closed");
        return -EINVAL;
    }
    if (!cfg->tls_cert_file[0] != !cfg->tls_key_file[0]) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_TLS_CERT_FILE and SLIPWAY_TLS_KEY_FILE go together: %s is set alone",
                 cfg->tls_cert_file[0] ? "SLIPWAY_TLS_CERT_FILE" : "SLIPWAY_TLS_KEY_FILE");
        return -EINVAL;
    }
    if (!cfg->nginx_tls_cert_file[0] != !cfg->nginx_tls_key_file[0]) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_NGINX_TLS_CERT_FILE and SLIPWAY_NGINX_TLS_KEY_FILE go together: %s is "
                 "set alone",
                 cfg->nginx_tls_cert_file[0] ? "SLIPWAY_NGINX_TLS_CERT_FILE"
                                             : "SLIPWAY_NGINX_TLS_KEY_FILE");
        return -EINVAL;
    }
    if (cfg->nginx_tls_cert_file[0] && !cfg->proxy_https[0]) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_NGINX_TLS_CERT_FILE is set but SLIPWAY_PROXY_HTTPS is empty: nginx "
                 "would have nowhere to serve HTTPS");
        return -EINVAL;
    }
    if (!nginx_path_ok(cfg->nginx_tls_cert_file) || !nginx_path_ok(cfg->nginx_tls_key_file)) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_NGINX_TLS_CERT_FILE and SLIPWAY_NGINX_TLS_KEY_FILE must be absolute "
                 "paths of letters, digits and / . _ - + @ only (they go into nginx's config)");
        return -EINVAL;
    }
    if (check_rate_limit(cfg->rate_limit) != 0) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_RATE_LIMIT: expected <requests per second>/<burst> or off");
        return -EINVAL;
    }
    if (strcmp(cfg->rate_limit_backend, "local") != 0 &&
        strcmp(cfg->rate_limit_backend, "redis") != 0) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_RATE_LIMIT_BACKEND: expected local or redis");
        return -EINVAL;
    }
    if (check_port_range(cfg->port_range) != 0) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_PORT_RANGE: expected lo-hi within 1024-65535");
        return -EINVAL;
    }
    static const char *const runtimes[] = {"auto", "all", "admins", "off", NULL};
    if (!one_of(cfg->process_runtime, runtimes)) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_PROCESS_RUNTIME: expected auto, all, admins or off");
        return -EINVAL;
    }
    if (check_uid_range(cfg->app_uid_range) != 0) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_APP_UID_RANGE: expected lo-hi with 1000 <= lo <= hi < 2147483647");
        return -EINVAL;
    }
    if (strcmp(cfg->bwrap, "auto") != 0 && strcmp(cfg->bwrap, "off") != 0 && cfg->bwrap[0] != '/') {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_BWRAP: expected auto, off or an absolute path");
        return -EINVAL;
    }
    static const char *const networks[] = {"bridge", "host", NULL};
    if (!one_of(cfg->container_network, networks)) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_CONTAINER_NETWORK: expected bridge or host");
        return -EINVAL;
    }
    if (check_proxy(cfg, err) != 0)
        return -EINVAL;
    if (check_url_prefix(cfg->public_url) != 0) {
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_PUBLIC_URL: expected an http:// or https:// URL");
        return -EINVAL;
    }
    if (check_master_key(cfg->master_key) != 0) {
        /* Never echo the key itself. */
        snprintf(err->msg, sizeof(err->msg),
                 "SLIPWAY_MASTER_KEY: expected 64 hexadecimal characters (32 bytes)");
        return -EINVAL;
    }
    if (!*cfg->data_dir) {
        snprintf(err->msg, sizeof(err->msg), "SLIPWAY_DATA_DIR: must be set");
        return -EINVAL;
    }
    return 0;
}

static const opt_t *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(options); i++)
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

int sw_config_load(sw_config_t *cfg, int argc, char **argv, char **envp, int *out_action,
                   sw_config_err_t *err)
{
    memset(cfg, 0, sizeof(*cfg));
    err->msg[0] = '\0';
    *out_action = SW_CONFIG_RUN;

    for (size_t i = 0; i < SW_ARRAY_SIZE(options); i++)
        if (set_opt(cfg, &options[i], options[i].def, 0, err) != 0)
            return -EINVAL;

    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, "SLIPWAY_", 8) != 0)
            continue;
        for (size_t i = 0; i < SW_ARRAY_SIZE(options); i++) {
            char name[64];
            env_name(&options[i], name, sizeof(name));
            size_t n = strlen(name);
            if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
                if (set_opt(cfg, &options[i], *e + n + 1, 0, err) != 0)
                    return -EINVAL;
                break;
            }
        }
    }

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *out_action = SW_CONFIG_HELP;
            continue;
        }
        if (strcmp(arg, "--check-config") == 0) {
            *out_action = SW_CONFIG_CHECK;
            continue;
        }
        if (strcmp(arg, "--version") == 0) {
            *out_action = SW_CONFIG_VERSION;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err->msg, sizeof(err->msg), "unexpected argument \"%.64s\" (see --help)", arg);
            return -EINVAL;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = find_flag(name, len);
        if (!o) {
            snprintf(err->msg, sizeof(err->msg), "unknown option --%.*s (see --help)",
                     (int)SW_MIN(len, 64), name);
            return -EINVAL;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (o->type == OPT_BOOL)
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            snprintf(err->msg, sizeof(err->msg), "--%s needs a value", o->name);
            return -EINVAL;
        }
        if (set_opt(cfg, o, value, 1, err) != 0)
            return -EINVAL;
    }

    if (*out_action == SW_CONFIG_HELP || *out_action == SW_CONFIG_VERSION)
        return 0;
    return validate(cfg, err);
}

void sw_config_free(sw_config_t *cfg)
{
    for (size_t i = 0; i < SW_ARRAY_SIZE(options); i++) {
        if (options[i].type == OPT_STR) {
            char **s = (char **)((char *)cfg + options[i].offset);
            free(*s);
            *s = NULL;
        }
    }
}

void sw_config_print_help(FILE *out, const char *argv0)
{
    fprintf(out,
            "Usage: %s [--flag value | --flag=value]...\n\n"
            "Slipway control plane daemon. Every flag is also an environment variable\n"
            "(--database-url is SLIPWAY_DATABASE_URL); flags win over variables.\n\n"
            "  --help            this text\n"
            "  --check-config    validate the configuration and exit (0 when valid)\n"
            "  --version         print the version and exit\n\n",
            argv0);
    for (size_t i = 0; i < SW_ARRAY_SIZE(options); i++) {
        char name[64];
        env_name(&options[i], name, sizeof(name));
        const char *def = strcmp(options[i].name, SECRET_OPT) == 0 ? "" : options[i].def;
        fprintf(out, "  --%-22s %s\n      %s (default: %s)\n", options[i].name, name,
                options[i].help, *def ? def : "empty");
    }
}
