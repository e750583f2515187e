/* What certificate the proxy answers a hostname with: a real TLS handshake with its HTTPS
 * listener, SNI = the hostname, on the threadpool (blocking OpenSSL with timeouts, off the
 * loop). Nothing is trusted or refused here: the answer is observed (issuer, expiry, whether
 * the certificate names the host) and reported as it is. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define TLSPROBE_TIMEOUT_MS 5000

struct sw_tlsprobe {
    uv_work_t work;
    struct sockaddr_storage addr;
    char host[SW_ROUTE_HOST_MAX + 1];
    sw_tls_seen_t seen;
    sw_tlsprobe_cb cb;
    void *payload;
};

static int connect_timeout(const struct sockaddr_storage *ss)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    socklen_t len =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (connect(fd, (const struct sockaddr *)ss, len) != 0 && errno != EINPROGRESS) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t elen = sizeof(err);
    if (poll(&p, 1, TLSPROBE_TIMEOUT_MS) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
        close(fd);
        return err ? -err : -ETIMEDOUT;
    }
    /* blocking from here, with the same bound on every read and write */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = TLSPROBE_TIMEOUT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static void describe(X509 *cert, const char *host, sw_tls_seen_t *seen)
{
    X509_NAME *issuer = X509_get_issuer_name(cert);
    int i = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
    if (i < 0)
        i = X509_NAME_get_index_by_NID(issuer, NID_organizationName, -1);
    ASN1_STRING *s = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, i)) : NULL;
    if (s)
        snprintf(seen->issuer, sizeof(seen->issuer), "%.*s", ASN1_STRING_length(s),
                 (const char *)ASN1_STRING_get0_data(s));
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
        strftime(seen->not_after, sizeof(seen->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (X509_check_host(cert, host, 0, 0, NULL) != 1)
        snprintf(seen->error, sizeof(seen->error), "the certificate served does not name %s", host);
    else if (X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0)
        snprintf(seen->error, sizeof(seen->error), "the certificate served expired on %s",
                 seen->not_after);
    else
        seen->ok = true;
}

static void probe_work(uv_work_t *w)
{
    sw_tlsprobe_t *t = sw_container_of(w, sw_tlsprobe_t, work);
    int fd = connect_timeout(&t->addr);
    if (fd < 0) {
        snprintf(t->seen.error, sizeof(t->seen.error), "the proxy's HTTPS listener: %s",
                 sw_strerror(fd));
        return;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl) {
        snprintf(t->seen.error, sizeof(t->seen.error), "out of memory for TLS");
    } else {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL); /* observed, not trusted */
        SSL_set_tlsext_host_name(ssl, t->host);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1) {
            unsigned long e = ERR_peek_last_error();
            snprintf(t->seen.error, sizeof(t->seen.error), "no certificate for %s yet: %s", t->host,
                     e ? ERR_reason_error_string(e) : "the handshake failed");
        } else {
            X509 *cert = SSL_get1_peer_certificate(ssl);
            if (cert)
                describe(cert, t->host, &t->seen);
            else
                snprintf(t->seen.error, sizeof(t->seen.error), "no certificate was sent");
            X509_free(cert);
            SSL_shutdown(ssl);
        }
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    close(fd);
}

static void probe_after(uv_work_t *w, int status)
{
    sw_tlsprobe_t *t = sw_container_of(w, sw_tlsprobe_t, work);
    if (status != 0 && !t->seen.error[0])
        snprintf(t->seen.error, sizeof(t->seen.error), "the probe was cancelled");
    t->cb(t->host, &t->seen, t->payload);
    free(t);
}

int sw_tlsprobe_start(uv_loop_t *loop, const struct sockaddr_storage *addr, const char *host,
                      sw_tlsprobe_cb cb, void *payload)
{
    sw_tlsprobe_t *t = sw_calloc(1, sizeof(*t));
    t->addr = *addr;
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->cb = cb;
    t->payload = payload;
    int r = uv_queue_work(loop, &t->work, probe_work, probe_after);
    if (r != 0)
        free(t);
    return r;
}
