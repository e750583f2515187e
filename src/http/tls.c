/* TLS sessions over two OpenSSL memory BIOs, and the server's certificate context.
 *
 * Bytes read from the socket go into one BIO; whatever OpenSSL wants sent (handshake,
 * records, alerts) collects in the other and the caller drains it into uv_write after every
 * step, so the TLS state machine never touches the socket and the loop never blocks. */
#include "slipway/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

/* ---- errors ---- */

void sw_tls_reason(char *why, size_t len, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(why, len, "%s%s%s", what, r ? ": " : "", r ? r : "");
    ERR_clear_error();
}

void sw_tls_clear_errors(void)
{
    ERR_clear_error();
}

/* ---- the server's context ---- */

/* A key file must not make the daemon prompt on its terminal for a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *payload)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)payload;
    return -1;
}

/* Only http/1.1 is spoken; a client that offers nothing else we know proceeds without ALPN. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *payload)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *picked = NULL;
    (void)ssl;
    (void)payload;
    if (SSL_select_next_proto(&picked, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = picked;
    return SSL_TLSEXT_ERR_OK;
}

int sw_tls_file_readable(const char *what, const char *path, char *why, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int err = errno;
        snprintf(why, len, "%s %s: %s", what, path, strerror(err));
        return -err;
    }
    fclose(f);
    return 0;
}

static int fail(SSL_CTX *ctx, char *why, size_t len, const char *what)
{
    sw_tls_reason(why, len, what);
    SSL_CTX_free(ctx);
    return -EINVAL;
}

int sw_tls_server_ctx_new(SSL_CTX **out, const char *cert_file, const char *key_file, char *why,
                          size_t why_len)
{
    return sw_tls_server_ctx_named(out, "SLIPWAY_TLS", cert_file, key_file, why, why_len);
}

int sw_tls_server_ctx_named(SSL_CTX **out, const char *vars, const char *cert_file,
                            const char *key_file, char *why, size_t why_len)
{
    char what[600], cert_var[64], key_var[64];
    snprintf(cert_var, sizeof(cert_var), "%s_CERT_FILE", vars);
    snprintf(key_var, sizeof(key_var), "%s_KEY_FILE", vars);
    int rc = sw_tls_file_readable(cert_var, cert_file, why, why_len);
    if (rc == 0)
        rc = sw_tls_file_readable(key_var, key_file, why, why_len);
    if (rc != 0)
        return rc;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return fail(NULL, why, why_len, "cannot create a TLS context");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* An idle keep-alive connection or log watcher holds no record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(what, sizeof(what), "%s %s holds no usable PEM certificate", cert_var, cert_file);
        return fail(ctx, why, why_len, what);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(what, sizeof(what), "%s %s does not match the certificate in %s", key_var,
                     key_file, cert_file);
        else
            snprintf(what, sizeof(what), "%s %s holds no usable unencrypted PEM private key",
                     key_var, key_file);
        return fail(ctx, why, why_len, what);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof(what), "%s %s does not match the certificate in %s", key_var,
                 key_file, cert_file);
        return fail(ctx, why, why_len, what);
    }
    *out = ctx;
    return 0;
}

void sw_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

SSL_CTX *sw_tls_ctx_ref(SSL_CTX *ctx)
{
    SSL_CTX_up_ref(ctx);
    return ctx;
}

/* ---- sessions ---- */

int sw_tls_session_new(SSL **out, SSL_CTX *ctx, bool server)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (!ssl || !rbio || !wbio) {
        SSL_free(ssl);
        BIO_free(rbio);
        BIO_free(wbio);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty memory BIO says "retry" rather than end-of-file: more may yet arrive. */
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    if (server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    *out = ssl;
    return 0;
}

void sw_tls_session_free(SSL *ssl)
{
    SSL_free(ssl);
}

int sw_tls_input(SSL *ssl, const void *data, size_t len)
{
    size_t put = 0;
    if (BIO_write_ex(SSL_get_rbio(ssl), data, len, &put) != 1 || put != len) {
        ERR_clear_error();
        return -ENOMEM;
    }
    return 0;
}

int sw_tls_handshake(SSL *ssl)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return 0;
    if (SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ)
        return -EAGAIN;
    unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST)
        return -EBADMSG;
    return -EPROTO;
}

bool sw_tls_handshaken(const SSL *ssl)
{
    return SSL_is_init_finished(ssl);
}

ssize_t sw_tls_read(SSL *ssl, char *buf, size_t len)
{
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    switch (SSL_get_error(ssl, 0)) {
    case SSL_ERROR_WANT_READ:
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN: /* close_notify: a clean end of the stream */
        return -ESHUTDOWN;
    default:
        return -EPROTO;
    }
}

int sw_tls_write(SSL *ssl, const void *data, size_t len)
{
    size_t written = 0;
    if (len == 0)
        return 0;
    ERR_clear_error();
    if (SSL_write_ex(ssl, data, len, &written) != 1 || written != len)
        return -EPROTO;
    return 0;
}

void sw_tls_shutdown(SSL *ssl)
{
    ERR_clear_error();
    if (SSL_is_init_finished(ssl))
        (void)SSL_shutdown(ssl);
    ERR_clear_error();
}

size_t sw_tls_output_len(SSL *ssl)
{
    return BIO_ctrl_pending(SSL_get_wbio(ssl));
}

size_t sw_tls_output_take(SSL *ssl, char *buf, size_t len)
{
    size_t got = 0;
    if (BIO_read_ex(SSL_get_wbio(ssl), buf, len, &got) != 1)
        got = 0;
    ERR_clear_error();
    return got;
}
