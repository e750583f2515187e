/* The nginx driver: a rendered include file (SLIPWAY_NGINX_INCLUDE), checked with nginx -t
 * and put live with nginx -s reload.
 *
 * The file holds one upstream per app, one server per hostname on SLIPWAY_PROXY_HTTP, a
 * default server that answers 404 to every other name (no app is reached by a Host it does
 * not own), and a map from the upstream's address to the release it runs, copied into the
 * Slipway-Release response header. A release switch rewrites the file and reloads: nginx's
 * reload is graceful (the old workers finish the connections they hold, WebSockets
 * included, while new ones take the new config), so a switch costs nothing but the reload.
 *
 * A reload that nginx accepted is not yet a reload that took: the signal is asynchronous,
 * and a main config that does not include the file reloads just as happily. So the file ends
 * with a check server (server_name _slipway-config-check, which no domain can be: domains
 * have no "_") whose answer carries the hash of everything above it; a round is done when a
 * request through SLIPWAY_PROXY_HTTP sees the new hash. The same request, with the file on
 * disk as rendered, is how a round finds that nothing has to change.
 *
 * A config nginx -t refuses never stays on disk: the last content that was live goes back
 * (or what was there before), so a later reload by anyone still loads a good config, and
 * the round fails with nginx's own words. File I/O runs on the threadpool; nginx runs with
 * an argv array (never a shell), its output captured and its time bounded. */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "slipway/proc.h"

#define CHECK_HOST      "_slipway-config-check"
#define MAX_CONF        (64u << 20)
#define TEST_TIMEOUT_MS 30000
#define LIVE_TIMEOUT_MS 10000
#define MAX_ERROR_LINES 3
/* nginx's master lets the old workers serve for 100 ms after the new ones start
 * (ngx_master_process_cycle: ngx_msleep(100) before it tells them to shut down), so a
 * keep-alive client may still get the old config that long after the new one answers. */
#define OLD_WORKERS_MS 150

/* ---- rendering ---- */

/* A key or release as it is written into the config: a UUID's characters only. */
static bool ident_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              *s == '-'))
            return false;
    return true;
}

/* An endpoint as nginx prints it in $upstream_addr ("1.2.3.4:80", "[::1]:80"), or -EINVAL for
 * anything that is not an IP literal with a port. */
static int endpoint_text(const char *endpoint, char *out, size_t len)
{
    char host[64], text[INET6_ADDRSTRLEN];
    uint16_t port;
    unsigned char ip[16];
    if (sw_config_split_hostport(endpoint, host, sizeof(host), &port) != 0 || port == 0)
        return -EINVAL;
    if (inet_pton(AF_INET, host, ip) == 1)
        snprintf(out, len, "%s:%u", inet_ntop(AF_INET, ip, text, sizeof(text)), port);
    else if (inet_pton(AF_INET6, host, ip) == 1)
        snprintf(out, len, "[%s]:%u", inet_ntop(AF_INET6, ip, text, sizeof(text)), port);
    else
        return -EINVAL;
    return 0;
}

typedef struct {
    char addr[INET6_ADDRSTRLEN + 8];
    const char *release;
} release_at_t;

static int by_addr(const void *a, const void *b)
{
    return strcmp(((const release_at_t *)a)->addr, ((const release_at_t *)b)->addr);
}

static bool route_ok(const sw_route_t *r)
{
    return sw_routes_host_ok(r->host) && ident_ok(r->key);
}

/* Whether route i is the first renderable one of its key: that one writes the key's upstream
 * and map entries (every route of a key has the same endpoints). */
static bool first_of_key(const sw_routes_t *t, size_t i)
{
    if (!route_ok(&t->v[i]))
        return false;
    for (size_t j = 0; j < i; j++)
        if (strcmp(t->v[j].key, t->v[i].key) == 0 && route_ok(&t->v[j]))
            return false;
    return true;
}

/* map $upstream_addr $slipway_release: each endpoint to its release, both as the one address
 * tried and as the last of several (a retry: the last one answered). */
static void render_releases(const sw_routes_t *t, sw_buf_t *out)
{
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < t->n; i++)
        cap += t->v[i].nendpoints;
    release_at_t *v = sw_calloc(cap ? cap : 1, sizeof(*v));
    for (size_t i = 0; i < t->n; i++) {
        const sw_route_t *r = &t->v[i];
        if (!first_of_key(t, i) || !ident_ok(r->release))
            continue;
        for (size_t k = 0; k < r->nendpoints; k++)
            if (endpoint_text(r->endpoints[k], v[n].addr, sizeof(v[n].addr)) == 0)
                v[n++].release = r->release;
    }
    qsort(v, n, sizeof(*v), by_addr);
    sw_buf_append_cstr(out, "map $upstream_addr $slipway_release {\n    default \"\";\n");
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i].addr, v[i - 1].addr) == 0)
            continue; /* one address, one entry: nginx refuses duplicates */
        sw_buf_printf(out, "    \"%s\" \"%s\";\n", v[i].addr, v[i].release);
        sw_buf_append_cstr(out, "    \"~, ");
        for (const char *p = v[i].addr; *p; p++) {
            if (*p == '.' || *p == '[' || *p == ']')
                sw_buf_append_char(out, '\\');
            sw_buf_append_char(out, *p);
        }
        sw_buf_printf(out, "$\" \"%s\";\n", v[i].release);
    }
    sw_buf_append_cstr(out, "}\n\n");
    free(v);
}

static void render_upstreams(const sw_routes_t *t, sw_buf_t *out)
{
    for (size_t i = 0; i < t->n; i++) {
        const sw_route_t *r = &t->v[i];
        if (!first_of_key(t, i))
            continue;
        sw_buf_t servers = SW_BUF_INIT;
        char addr[INET6_ADDRSTRLEN + 8];
        for (size_t k = 0; k < r->nendpoints; k++)
            if (endpoint_text(r->endpoints[k], addr, sizeof(addr)) == 0)
                sw_buf_printf(&servers, "    server %s;\n", addr);
        if (servers.len) /* an app without endpoints has no upstream: its servers answer 503 */
            sw_buf_printf(out, "upstream slipway_%s {\n%s}\n\n", r->key, servers.base);
        sw_buf_free(&servers);
    }
}

static bool has_endpoints(const sw_route_t *r)
{
    char addr[INET6_ADDRSTRLEN + 8];
    for (size_t k = 0; k < r->nendpoints; k++)
        if (endpoint_text(r->endpoints[k], addr, sizeof(addr)) == 0)
            return true;
    return false;
}

/* HTTPS as well: SLIPWAY_PROXY_HTTPS and a certificate to serve there. */
static bool tls_on(const sw_config_t *cfg)
{
    return cfg->proxy_https && cfg->proxy_https[0] && cfg->nginx_tls_cert_file &&
           cfg->nginx_tls_cert_file[0];
}

static void render_server(const sw_route_t *r, const char *listen, const char *listen_tls,
                          sw_buf_t *out)
{
    sw_buf_printf(out, "server {\n    listen %s;\n", listen);
    if (listen_tls[0])
        sw_buf_printf(out, "    listen %s ssl;\n", listen_tls);
    sw_buf_printf(out, "    server_name %s;\n", r->host);
    if (!has_endpoints(r)) {
        sw_buf_append_cstr(out, "    return 503;\n}\n\n");
        return;
    }
    sw_buf_printf(out,
                  "    location / {\n"
                  "        proxy_pass http://slipway_%s;\n"
                  "        proxy_http_version 1.1;\n"
                  "        proxy_set_header Host $host;\n"
                  "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
                  "        proxy_set_header X-Forwarded-Proto $scheme;\n"
                  "        proxy_set_header X-Forwarded-Host $host;\n"
                  "        proxy_set_header Upgrade $http_upgrade;\n"
                  "        proxy_set_header Connection $slipway_connection;\n"
                  "        proxy_read_timeout 1h;\n"
                  "        proxy_send_timeout 1h;\n"
                  "        proxy_hide_header Slipway-Release;\n"
                  "        add_header Slipway-Release $slipway_release always;\n"
                  "    }\n}\n\n",
                  r->key);
}

/* "listen" as nginx spells an address: "80" for ":80", "[::1]:80" for IPv6. */
static int listen_text(const char *address, char *out, size_t len)
{
    char host[64];
    uint16_t port;
    if (sw_config_split_hostport(address, host, sizeof(host), &port) != 0 || port == 0)
        return -EINVAL;
    if (!host[0])
        snprintf(out, len, "%u", port);
    else if (strchr(host, ':'))
        snprintf(out, len, "[%s]:%u", host, port);
    else
        snprintf(out, len, "%s:%u", host, port);
    return 0;
}

int sw_nginx_render(const sw_routes_t *t, const sw_config_t *cfg, sw_buf_t *out,
                    char hash[SW_NGINX_HASH_HEX])
{
    char listen[96], listen_tls[96] = "";
    if (listen_text(cfg->proxy_http, listen, sizeof(listen)) != 0 ||
        (tls_on(cfg) && listen_text(cfg->proxy_https, listen_tls, sizeof(listen_tls)) != 0))
        return -EINVAL;
    size_t start = out->len;
    sw_buf_append_cstr(out, "# Written by slipwayd (SLIPWAY_PROXY=nginx) from its routing table; "
                            "edits are undone.\n\n");
    /* Named for Slipway: a main config often has its own $connection_upgrade. */
    sw_buf_append_cstr(out, "map $http_upgrade $slipway_connection {\n    default upgrade;\n"
                            "    \"\" close;\n}\n\n");
    if (listen_tls[0])
        /* One certificate (chain) for every domain: a wildcard or one naming them all. The
         * pair and its paths were checked when slipwayd started (config.c, main.c). */
        sw_buf_printf(out,
                      "ssl_certificate %s;\nssl_certificate_key %s;\n"
                      "ssl_protocols TLSv1.2 TLSv1.3;\n\n",
                      cfg->nginx_tls_cert_file, cfg->nginx_tls_key_file);
    render_releases(t, out);
    render_upstreams(t, out);
    sw_buf_printf(out, "server {\n    listen %s default_server;\n", listen);
    if (listen_tls[0])
        sw_buf_printf(out, "    listen %s ssl default_server;\n", listen_tls);
    sw_buf_append_cstr(out, "    server_name _;\n    return 404;\n}\n\n");
    for (size_t i = 0; i < t->n; i++)
        if (route_ok(&t->v[i]))
            render_server(&t->v[i], listen, listen_tls, out);
    unsigned char digest[SW_NGINX_HASH_HEX / 2];
    crypto_generichash(digest, sizeof(digest), (const unsigned char *)out->base + start,
                       out->len - start, NULL, 0);
    sodium_bin2hex(hash, SW_NGINX_HASH_HEX, digest, sizeof(digest));
    sw_buf_printf(out,
                  "# The check server: its answer is the hash of everything above, so a request\n"
                  "# shows whether nginx serves this file.\n"
                  "server {\n    listen %s;\n    server_name " CHECK_HOST ";\n"
                  "    location / {\n        default_type text/plain;\n"
                  "        add_header Slipway-Release %s always;\n"
                  "        return 200 \"%s\\n\";\n    }\n}\n",
                  listen, hash, hash);
    return 0;
}

/* ---- the file, on the threadpool ---- */

typedef struct {
    /* in */
    const char *path;
    const char *content; /* NULL with restore: the file goes */
    size_t len;
    bool restore; /* write (or remove) without comparing */
    /* out */
    bool existed, same;
    sw_buf_t old;
    int err;
    char what[48];
} file_job_t;

static int read_file(file_job_t *j)
{
    int fd = open(j->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    j->existed = true;
    char chunk[65536];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || j->old.len + (size_t)n > MAX_CONF) {
            int e = n < 0 ? -errno : -EFBIG;
            close(fd);
            return e;
        }
        sw_buf_append(&j->old, chunk, (size_t)n);
    }
    close(fd);
    return 0;
}

/* Temp file in the same directory, fsync, rename, fsync the directory: nginx (or a crash)
 * sees the old file or the new one, never half of one. */
static int write_atomic(file_job_t *j)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", j->path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    snprintf(j->what, sizeof(j->what), "writing");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int r = sw_write_all(fd, j->content, j->len);
    if (r == 0 && fsync(fd) != 0)
        r = -errno;
    if (close(fd) != 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, j->path) != 0)
        r = -errno;
    if (r != 0) {
        unlink(tmp);
        return r;
    }
    snprintf(dir, sizeof(dir), "%s", j->path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

static void job_run(uv_work_t *w)
{
    file_job_t *j = w->data;
    if (j->restore) {
        if (j->content) {
            j->err = write_atomic(j);
        } else {
            snprintf(j->what, sizeof(j->what), "removing");
            j->err = unlink(j->path) == 0 || errno == ENOENT ? 0 : -errno;
        }
        return;
    }
    snprintf(j->what, sizeof(j->what), "reading");
    j->err = read_file(j);
    j->same = j->err == 0 && j->existed && j->old.len == j->len &&
              memcmp(j->old.base, j->content, j->len) == 0;
    if (j->err == 0 && !j->same)
        j->err = write_atomic(j);
}

/* ---- the driver ---- */

typedef enum { ST_IDLE, ST_SYNC, ST_TEST, ST_RELOAD, ST_LIVE, ST_RESTORE } state_t;

typedef struct {
    sw_proxy_driver_t base;
    uv_loop_t *loop;
    const sw_config_t *cfg;
    char bin[PATH_MAX];
    /* what nginx was last seen serving */
    sw_buf_t good; /* the file's content; empty: not known */
    char **served; /* one line per route (route_line), sorted */
    size_t nserved;
    /* the round in flight */
    state_t state;
    const sw_routes_t *table;
    sw_buf_t want;
    char hash[SW_NGINX_HASH_HEX];
    bool wrote; /* the file on disk is ours from this round: a failure puts the old one back */
    uv_work_t work;
    file_job_t job;
    sw_proc_t *proc;
    sw_buf_t output; /* nginx's first lines */
    unsigned output_lines;
    sw_probe_t *probe;
    uv_timer_t timer; /* the old workers' last OLD_WORKERS_MS */
    unsigned changed, repaired;
    int fail;
    char why[768];
    sw_driver_cb cb;
    void *payload;
    bool freeing;
} nginx_t;

static void lines_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void destroy(nginx_t *c)
{
    sw_buf_free(&c->good);
    sw_buf_free(&c->want);
    sw_buf_free(&c->output);
    sw_buf_free(&c->job.old);
    lines_free(c->served, c->nserved);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static bool busy(const nginx_t *c)
{
    return c->state == ST_SYNC || c->state == ST_RESTORE || c->proc || c->probe ||
           uv_is_active((const uv_handle_t *)&c->timer);
}

static void round_end(nginx_t *c, int status, const char *error)
{
    c->state = ST_IDLE;
    sw_buf_free(&c->job.old);
    sw_driver_cb cb = c->cb;
    c->cb = NULL;
    c->table = NULL;
    if (cb)
        cb(status, status == 0 ? c->changed : 0, status == 0 ? c->repaired : 0, error, c->payload);
    if (c->freeing && !busy(c))
        destroy(c);
}

/* ---- counting what changed ---- */

/* A route as one comparable line: "host\nkey release endpoint...". '\n' sorts before every
 * character of a hostname, so lines sort by host. */
static char *route_line(const sw_route_t *r)
{
    sw_buf_t b = SW_BUF_INIT;
    sw_buf_printf(&b, "%s\n%s %s", r->host, r->key, r->release);
    for (size_t i = 0; i < r->nendpoints; i++)
        sw_buf_printf(&b, " %s", r->endpoints[i]);
    return sw_buf_steal(&b);
}

static int by_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_host(const void *key, const void *line)
{
    const char *host = key, *l = *(char *const *)line;
    size_t hl = strcspn(l, "\n");
    int r = strncmp(host, l, hl);
    return r != 0 ? r : (host[hl] ? 1 : 0);
}

static char **table_lines(const sw_routes_t *t)
{
    char **v = sw_calloc(t->n ? t->n : 1, sizeof(*v));
    for (size_t i = 0; i < t->n; i++)
        v[i] = route_line(&t->v[i]);
    qsort(v, t->n, sizeof(*v), by_line);
    return v;
}

/* Routes added, changed or removed since the table nginx last served; kept: the routes of t
 * it served as they are. */
static unsigned count_changes(const nginx_t *c, const sw_routes_t *t, unsigned *kept)
{
    char **now = table_lines(t);
    unsigned n = 0;
    *kept = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!bsearch(&now[i], c->served, c->nserved, sizeof(char *), by_line))
            n++;
        else
            (*kept)++;
    }
    for (size_t i = 0; i < c->nserved; i++) {
        char host[SW_ROUTE_HOST_MAX + 1];
        snprintf(host, sizeof(host), "%.*s", (int)strcspn(c->served[i], "\n"), c->served[i]);
        if (!bsearch(host, now, t->n, sizeof(char *), by_host))
            n++;
    }
    lines_free(now, t->n);
    return n;
}

static unsigned whole(const sw_routes_t *t)
{
    return t->n ? (unsigned)t->n : 1;
}

/* nginx does not serve the file this driver last made it serve (removed, edited, another
 * file loaded): every route of it the table still asks for as it was is put back. Nothing
 * to drift from before a round succeeded. */
static unsigned drifted(const nginx_t *c, const sw_routes_t *t)
{
    if (!c->good.len)
        return 0;
    unsigned kept;
    (void)count_changes(c, t, &kept);
    return kept ? kept : 1;
}

/* The round's file is live: remember it as good, and its table as served. */
static void served_now(nginx_t *c)
{
    sw_buf_reset(&c->good);
    sw_buf_append(&c->good, c->want.base, c->want.len);
    lines_free(c->served, c->nserved);
    c->served = table_lines(c->table);
    c->nserved = c->table->n;
}

/* ---- steps ---- */

static void run_nginx(nginx_t *c, state_t state);
static void restore(nginx_t *c);

static void fail(nginx_t *c, int status, const char *fmt, ...) SW_PRINTF(3, 4);
static void fail(nginx_t *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    c->fail = status;
    if (c->wrote && !c->freeing)
        restore(c);
    else
        round_end(c, c->freeing ? -ECANCELED : status, c->why);
}

static void on_old_workers_gone(uv_timer_t *t)
{
    round_end(t->data, 0, NULL);
}

static void on_live(int status, const char *error, void *payload)
{
    nginx_t *c = payload;
    c->probe = NULL;
    if (c->freeing) {
        round_end(c, -ECANCELED, "stopped");
        return;
    }
    if (status == 0) {
        served_now(c);
        if (c->state == ST_SYNC)
            round_end(c, 0, NULL); /* nothing was reloaded */
        else
            uv_timer_start(&c->timer, on_old_workers_gone, OLD_WORKERS_MS, 0);
        return;
    }
    if (c->state == ST_SYNC) {
        /* The file is as rendered but nginx does not serve it (restarted with another file,
         * never reloaded): test and reload it. */
        c->changed = whole(c->table);
        c->repaired = drifted(c, c->table);
        run_nginx(c, ST_TEST);
        return;
    }
    c->wrote = false; /* nginx accepted the file: it stays */
    fail(c, -ETIMEDOUT,
         "nginx reloaded, but the new config is not live after %u ms (is %s included in the http "
         "block of %s?): %s",
         LIVE_TIMEOUT_MS, c->cfg->nginx_include, c->cfg->nginx_conf, error ? error : "");
}

static void check_live(nginx_t *c, uint32_t timeout_ms)
{
    int r = sw_probe_start(c->loop, c->cfg, CHECK_HOST, "/", c->hash, timeout_ms, on_live, c,
                           &c->probe);
    if (r != 0) {
        c->probe = NULL;
        fail(c, r, "SLIPWAY_PROXY_HTTP %s is not an address nginx can be asked at",
             c->cfg->proxy_http);
    }
}

static void on_nginx_line(sw_proc_t *p, int stream, const char *line, size_t len, void *payload)
{
    (void)p;
    (void)stream;
    nginx_t *c = payload;
    if (len == 0 || c->output_lines >= MAX_ERROR_LINES)
        return;
    if (c->output_lines++ > 0)
        sw_buf_append_cstr(&c->output, "; ");
    sw_buf_append(&c->output, line, len > 300 ? 300 : len);
}

static void on_nginx_exit(sw_proc_t *p, int64_t exit_status, int term_signal, bool timed_out,
                          void *payload)
{
    nginx_t *c = payload;
    sw_proc_free(p);
    c->proc = NULL;
    const char *what = c->state == ST_TEST ? "nginx -t" : "nginx -s reload";
    if (exit_status != 0 || term_signal != 0 || timed_out) {
        char status[48];
        if (timed_out)
            snprintf(status, sizeof(status), "did not finish in %u ms", TEST_TIMEOUT_MS);
        else if (term_signal)
            snprintf(status, sizeof(status), "was killed by signal %d", term_signal);
        else
            snprintf(status, sizeof(status), "exited with %lld", (long long)exit_status);
        fail(c, -EPROTO, "%s refused the config (%s): %s", what, status,
             c->output.len ? c->output.base : "no output");
        return;
    }
    if (c->state == ST_TEST) {
        run_nginx(c, ST_RELOAD);
        return;
    }
    c->state = ST_LIVE;
    check_live(c, LIVE_TIMEOUT_MS);
}

static void run_nginx(nginx_t *c, state_t state)
{
    c->state = state;
    sw_buf_reset(&c->output);
    c->output_lines = 0;
    char *test[] = {c->bin, "-t", "-q", "-c", c->cfg->nginx_conf, NULL};
    char *reload[] = {c->bin, "-s", "reload", "-c", c->cfg->nginx_conf, NULL};
    sw_proc_opts_t o = {
        .argv = state == ST_TEST ? test : reload,
        .timeout_ms = TEST_TIMEOUT_MS,
        .kill_grace_ms = 1000,
        .on_line = on_nginx_line,
        .on_exit = on_nginx_exit,
        .payload = c,
    };
    int r = sw_proc_spawn(&c->proc, c->loop, &o);
    if (r != 0) {
        c->proc = NULL;
        fail(c, r, "running %s: %s", c->bin, sw_strerror(r));
    }
}

/* The failed round's file is gone again; the round fails with why it was refused. */
static void on_restored(uv_work_t *w, int status)
{
    nginx_t *c = sw_container_of(w, nginx_t, work);
    c->state = ST_IDLE;
    c->wrote = false;
    if (status == 0 && c->job.err != 0) {
        size_t len = strlen(c->why);
        snprintf(c->why + len, sizeof(c->why) - len, "; and %s %s failed: %s", c->job.what,
                 c->cfg->nginx_include, sw_strerror(c->job.err));
    }
    round_end(c, c->freeing ? -ECANCELED : c->fail, c->why);
}

/* Puts back the content nginx last served, or (not known yet) what was there before. */
static void restore(nginx_t *c)
{
    c->state = ST_RESTORE;
    file_job_t *j = &c->job;
    j->restore = true;
    if (c->good.len) {
        j->content = c->good.base;
        j->len = c->good.len;
    } else if (j->existed) {
        j->content = j->old.base ? j->old.base : "";
        j->len = j->old.len;
    } else {
        j->content = NULL;
    }
    j->err = 0;
    c->work.data = j;
    if (uv_queue_work(c->loop, &c->work, job_run, on_restored) != 0)
        on_restored(&c->work, 0);
}

static void on_synced(uv_work_t *w, int status)
{
    nginx_t *c = sw_container_of(w, nginx_t, work);
    file_job_t *j = &c->job;
    c->state = ST_IDLE;
    if (c->freeing || status != 0) {
        round_end(c, -ECANCELED, "stopped");
        return;
    }
    if (j->err != 0) {
        c->wrote = false;
        fail(c, j->err, "%s %s: %s", j->what, c->cfg->nginx_include, sw_strerror(j->err));
        return;
    }
    if (j->same) {
        /* As rendered on disk; live too? Then nothing changes. One request, no waiting. */
        c->state = ST_SYNC;
        check_live(c, 0);
        return;
    }
    c->wrote = true;
    /* A file as nginx last served it differs by the table's changes; a missing or edited
     * one, by all of it. */
    bool ours = c->good.len && j->existed && j->old.len == c->good.len &&
                memcmp(j->old.base, c->good.base, c->good.len) == 0;
    unsigned kept;
    c->changed = ours ? count_changes(c, c->table, &kept) : whole(c->table);
    c->repaired = ours ? 0 : drifted(c, c->table);
    if (c->changed == 0)
        c->changed = 1;
    run_nginx(c, ST_TEST);
}

static void nginx_apply(sw_proxy_driver_t *d, const sw_routes_t *t, sw_driver_cb cb, void *payload)
{
    nginx_t *c = (nginx_t *)d;
    c->table = t;
    c->cb = cb;
    c->payload = payload;
    c->changed = c->repaired = 0;
    c->wrote = false;
    sw_buf_reset(&c->want);
    if (sw_nginx_render(t, c->cfg, &c->want, c->hash) != 0) {
        fail(c, -EINVAL, "SLIPWAY_PROXY_HTTP %s is not host:port", c->cfg->proxy_http);
        return;
    }
    file_job_t *j = &c->job;
    sw_buf_free(&j->old);
    *j = (file_job_t){.path = c->cfg->nginx_include, .content = c->want.base, .len = c->want.len};
    c->work.data = j;
    c->state = ST_SYNC;
    int r = uv_queue_work(c->loop, &c->work, job_run, on_synced);
    if (r != 0) {
        c->state = ST_IDLE;
        fail(c, r, "the threadpool refused the work: %s", sw_strerror(r));
    }
}

static void nginx_free(sw_proxy_driver_t *d)
{
    nginx_t *c = (nginx_t *)d;
    c->freeing = true;
    if (c->proc) {
        sw_proc_free(c->proc); /* kills it; no exit callback follows */
        c->proc = NULL;
        round_end(c, -ECANCELED, "stopped");
    } else if (c->probe) {
        sw_probe_cancel(c->probe); /* on_live ends the round */
    } else if (uv_is_active((uv_handle_t *)&c->timer)) {
        uv_timer_stop(&c->timer);
        round_end(c, -ECANCELED, "stopped");
    } else if (!busy(c)) {
        destroy(c);
    }
    /* else: the file work in flight ends the round and frees */
}

static const sw_proxy_driver_ops_t nginx_ops = {
    .name = "nginx",
    .apply = nginx_apply,
    .free = nginx_free,
};

/* SLIPWAY_NGINX as a path: as given when it has a '/', else the first executable of that name
 * on PATH (and the sbin directories a service's PATH may lack). */
static int find_binary(const char *name, char *out, size_t len)
{
    if (strchr(name, '/')) {
        snprintf(out, len, "%s", name);
        return access(out, X_OK) == 0 ? 0 : -errno;
    }
    const char *env = getenv("PATH");
    char *path = sw_strdup(env && *env ? env : "/usr/local/bin:/usr/bin:/bin");
    sw_buf_t dirs = SW_BUF_INIT;
    sw_buf_printf(&dirs, "%s:/usr/local/sbin:/usr/sbin:/sbin", path);
    free(path);
    int r = -ENOENT;
    for (char *save = NULL, *dir = strtok_r(dirs.base, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        if ((size_t)snprintf(out, len, "%s/%s", dir, name) < len && access(out, X_OK) == 0) {
            r = 0;
            break;
        }
    }
    sw_buf_free(&dirs);
    return r;
}

int sw_proxy_nginx_new(sw_proxy_driver_t **out, const sw_driver_env_t *env, char *why,
                       size_t why_len)
{
    nginx_t *c = sw_calloc(1, sizeof(*c));
    int r = find_binary(env->cfg->nginx, c->bin, sizeof(c->bin));
    if (r != 0) {
        snprintf(why, why_len, "SLIPWAY_NGINX %s: %s", env->cfg->nginx,
                 r == -ENOENT ? "not found on PATH" : sw_strerror(r));
        free(c);
        return r;
    }
    if (env->cfg->nginx_include[0] != '/' || env->cfg->nginx_conf[0] != '/') {
        snprintf(why, why_len,
                 "SLIPWAY_NGINX_CONF and SLIPWAY_NGINX_INCLUDE must be absolute paths");
        free(c);
        return -EINVAL;
    }
    c->base.ops = &nginx_ops;
    c->loop = env->loop;
    uv_timer_init(env->loop, &c->timer);
    c->timer.data = c;
    c->cfg = env->cfg;
    *out = &c->base;
    return 0;
}
