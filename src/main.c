/* slipwayd: flags -> config -> node -> loop -> drain. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slipway/backends.h"
#include "slipway/config.h"
#include "slipway/sandbox.h"
#include "slipway/crypto.h"
#include "slipway/client.h"
#include "slipway/log.h"
#include "slipway/node.h"
#include "slipway/tls.h"
#include "sw_version.h"

extern char **environ;

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    sw_node_t *node;
    bool stopping;
} process_t;

static void on_signal_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_node_stopped(void *payload)
{
    process_t *p = payload;
    p->node = NULL;
    uv_close((uv_handle_t *)&p->sigterm, on_signal_closed);
    uv_close((uv_handle_t *)&p->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&p->sighup, on_signal_closed);
    sw_log(SW_LOG_INFO, NULL, "stopped");
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    process_t *p = s->data;
    if (p->stopping) {
        if (signum == SIGINT)
            sw_log(SW_LOG_WARN, NULL, "still draining; send SIGKILL to stop at once");
        return;
    }
    p->stopping = true;
    sw_log_kv(SW_LOG_INFO, NULL, "stop requested", "signal", strsignal(signum), NULL);
    sw_node_stop(p->node, on_node_stopped, p);
}

static void on_hup(uv_signal_t *s, int signum)
{
    process_t *p = s->data;
    (void)signum;
    /* Logs go to stderr, which the supervisor owns; nothing to reopen. The certificate is
     * reread, if there is one. */
    sw_log(SW_LOG_INFO, NULL, "SIGHUP: logs are on stderr, nothing to reopen");
    if (p->node && !p->stopping)
        sw_node_reload(p->node);
}

/* One event loop serving the configured role until it has drained. */
static int run_process(const sw_config_t *cfg, unsigned worker_index)
{
    process_t p;
    memset(&p, 0, sizeof(p));
    uv_loop_init(&p.loop);
    uv_signal_init(&p.loop, &p.sigterm);
    uv_signal_init(&p.loop, &p.sigint);
    uv_signal_init(&p.loop, &p.sighup);
    p.sigterm.data = p.sigint.data = p.sighup.data = &p;
    uv_signal_start(&p.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&p.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&p.sighup, on_hup, SIGHUP);

    int r = sw_node_start(&p.node, &p.loop, cfg, worker_index);
    if (r != 0)
        return 1;
    uv_run(&p.loop, UV_RUN_DEFAULT);
    r = uv_loop_close(&p.loop);
    if (r != 0) {
        sw_log_kv(SW_LOG_ERROR, NULL, "handles left open at exit", "error", uv_strerror(r), NULL);
        return 1;
    }
    return 0;
}

/* --http-workers N: N children share the port with SO_REUSEPORT; the parent forwards
 * signals, restarts a child that dies, and exits once all have stopped. */
static volatile sig_atomic_t supervisor_stop;

static volatile sig_atomic_t supervisor_reload;

static void supervisor_signal(int signum)
{
    (void)signum;
    supervisor_stop = 1;
}

/* SIGHUP goes on to the workers, which reread the certificate. */
static void supervisor_hup(int signum)
{
    (void)signum;
    supervisor_reload = 1;
}

static pid_t spawn_worker(const sw_config_t *cfg, unsigned index)
{
    pid_t pid = fork();
    if (pid == 0) {
        char idx[16];
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_IGN); /* until its loop takes it over */
        snprintf(idx, sizeof(idx), "%u", index);
        sw_log_set_process_field("worker", idx);
        _exit(run_process(cfg, index));
    }
    return pid;
}

static int supervise(const sw_config_t *cfg)
{
    unsigned n = cfg->http_workers;
    pid_t *pids = sw_calloc(n, sizeof(pid_t));
    struct sigaction sa = {0};
    int status = 0, failed = 0;

    sa.sa_handler = supervisor_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = supervisor_hup;
    sigaction(SIGHUP, &sa, NULL);
    for (unsigned i = 0; i < n; i++)
        pids[i] = spawn_worker(cfg, i);

    unsigned alive = n;
    bool forwarded = false;
    while (alive > 0) {
        if (supervisor_stop && !forwarded) {
            for (unsigned i = 0; i < n; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGTERM);
            forwarded = true;
        }
        if (supervisor_reload) {
            supervisor_reload = 0;
            for (unsigned i = 0; i < n; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGHUP);
        }
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (unsigned i = 0; i < n; i++) {
            if (pids[i] != pid)
                continue;
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (supervisor_stop) {
                pids[i] = 0;
                alive--;
                failed |= !clean;
            } else {
                char idx[16];
                snprintf(idx, sizeof(idx), "%u", i);
                sw_log_kv(SW_LOG_ERROR, NULL, "worker exited; restarting", "worker", idx, NULL);
                sleep(1); /* a worker that dies at once must not spin the supervisor */
                pids[i] = spawn_worker(cfg, i);
            }
        }
    }
    free(pids);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    sw_config_t cfg;
    sw_config_err_t err;
    int action;

    /* The launcher of builds and instances: before anything else (no signal disposition of
     * the daemon's may cross into a tenant's command). */
    if (argc > 1 && strcmp(argv[1], SW_SANDBOX_EXEC_ARG) == 0)
        return sw_sandbox_exec(argc - 2, argv + 2);
    signal(SIGPIPE, SIG_IGN);
    /* The backends' URLs are checked by their own libraries, for every action that validates. */
    if (sw_config_load(&cfg, argc, argv, environ, &action, &err) != 0 ||
        (action != SW_CONFIG_HELP && action != SW_CONFIG_VERSION &&
         sw_backends_check(&cfg, &err) != 0)) {
        fprintf(stderr, "slipwayd: invalid configuration: %s\n", err.msg);
        sw_config_free(&cfg);
        return 2;
    }
    /* The TLS context is built now only when a CA file asks for it, so a bad file stops the
     * start (and fails --check-config) while a daemon that never speaks https never pays for
     * OpenSSL's tables. */
    if (cfg.tls_ca_file[0] && (action == SW_CONFIG_CHECK || action == SW_CONFIG_RUN)) {
        char why[256];
        if (sw_httpc_tls_init(cfg.tls_ca_file, why, sizeof(why)) != 0) {
            fprintf(stderr, "slipwayd: invalid configuration: SLIPWAY_TLS_CA_FILE: %s\n", why);
            sw_config_free(&cfg);
            return 2;
        }
    }
    /* The certificate and key are read now too, so a bad pair stops the start (and fails
     * --check-config) with the file named, before any backend is touched. */
    if (cfg.tls_cert_file[0] && (action == SW_CONFIG_CHECK || action == SW_CONFIG_RUN)) {
        char why[768];
        struct ssl_ctx_st *ctx = NULL;
        if (sw_tls_server_ctx_new(&ctx, cfg.tls_cert_file, cfg.tls_key_file, why, sizeof(why)) !=
            0) {
            fprintf(stderr, "slipwayd: invalid configuration: %s\n", why);
            sw_httpc_tls_cleanup();
            sw_config_free(&cfg);
            return 2;
        }
        sw_tls_ctx_free(ctx);
    }
    /* The pair nginx will serve (SLIPWAY_PROXY=nginx), for the same reason. */
    if (cfg.nginx_tls_cert_file[0] && strcmp(cfg.proxy, "nginx") == 0 &&
        (action == SW_CONFIG_CHECK || action == SW_CONFIG_RUN)) {
        char why[768];
        struct ssl_ctx_st *ctx = NULL;
        if (sw_tls_server_ctx_named(&ctx, "SLIPWAY_NGINX_TLS", cfg.nginx_tls_cert_file,
                                    cfg.nginx_tls_key_file, why, sizeof(why)) != 0) {
            fprintf(stderr, "slipwayd: invalid configuration: %s\n", why);
            sw_httpc_tls_cleanup();
            sw_config_free(&cfg);
            return 2;
        }
        sw_tls_ctx_free(ctx);
    }
    switch (action) {
    case SW_CONFIG_HELP:
        sw_config_print_help(stdout, "slipwayd");
        sw_config_free(&cfg);
        return 0;
    case SW_CONFIG_VERSION:
        printf("slipwayd %s\n", SW_VERSION);
        sw_config_free(&cfg);
        return 0;
    case SW_CONFIG_CHECK:
        printf("configuration ok\n");
        sw_httpc_tls_cleanup();
        sw_config_free(&cfg);
        return 0;
    default:
        break;
    }

    sw_log_set_level(cfg.log_level);
    if (sw_crypto_init() != 0) {
        fprintf(stderr, "slipwayd: libsodium failed to initialise\n");
        sw_config_free(&cfg);
        return 1;
    }
    sw_log_kv(SW_LOG_INFO, NULL, "starting", "version", SW_VERSION, "role",
              sw_node_role_name(cfg.role), NULL);
    int r = cfg.http_workers > 1 ? supervise(&cfg) : run_process(&cfg, 0);
    sw_httpc_tls_cleanup();
    sw_config_free(&cfg);
    sw_log_set_process_field(NULL, NULL);
    return r;
}
