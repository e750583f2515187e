/* TLS over OpenSSL memory BIOs, for the server's https listeners and the outgoing client.
 *
 * A session never touches a socket: the caller feeds it the ciphertext it read, steps the
 * handshake or reads plaintext, and after every step sends what the session queued for the
 * peer. So the loop never blocks, and the caller keeps every limit on what it reads.
 *
 * OpenSSL's error queue is per thread and shared with libpq and libgit2: every function here
 * starts from an empty one, and leaves it empty unless it failed; then the reason waits there
 * for sw_tls_reason (or sw_tls_clear_errors), which empties it. */
#ifndef SLIPWAY_TLS_H
#define SLIPWAY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssl_st;
struct ssl_ctx_st;

/* A server context from PEM files: TLS 1.2 and later, ALPN http/1.1, renegotiation off. The
 * key must match the certificate. On failure, why (one line) names the file and the reason. */
int sw_tls_server_ctx_new(struct ssl_ctx_st **out, const char *cert_file, const char *key_file,
                          char *why, size_t why_len);
/* The same, with why naming <vars>_CERT_FILE and <vars>_KEY_FILE (SLIPWAY_TLS above). */
int sw_tls_server_ctx_named(struct ssl_ctx_st **out, const char *vars, const char *cert_file,
                            const char *key_file, char *why, size_t why_len);
/* 0 when path opens for reading; else why reads "what path: strerror" and the negative errno
 * returns. OpenSSL's own messages for a missing file name neither. */
int sw_tls_file_readable(const char *what, const char *path, char *why, size_t len);
/* Drops the caller's reference; sessions made from it keep theirs. Accepts NULL. */
void sw_tls_ctx_free(struct ssl_ctx_st *ctx);
/* Takes another reference (for a holder that outlives the caller's). */
struct ssl_ctx_st *sw_tls_ctx_ref(struct ssl_ctx_st *ctx);

/* A session on ctx over two fresh memory BIOs, accepting (server) or connecting. */
int sw_tls_session_new(struct ssl_st **out, struct ssl_ctx_st *ctx, bool server);
void sw_tls_session_free(struct ssl_st *ssl);

/* Ciphertext from the peer. */
int sw_tls_input(struct ssl_st *ssl, const void *data, size_t len);
/* One step of the handshake: 0 once done, -EAGAIN until more input arrives, -EBADMSG when the
 * peer sent a plain HTTP request instead, -EPROTO otherwise. */
int sw_tls_handshake(struct ssl_st *ssl);
bool sw_tls_handshaken(const struct ssl_st *ssl);
/* Plaintext into buf: the byte count, -EAGAIN until more input arrives, -ESHUTDOWN after the
 * peer's close_notify, -EPROTO on anything else. */
ssize_t sw_tls_read(struct ssl_st *ssl, char *buf, size_t len);
/* Encrypts all of data into the outgoing BIO (a memory BIO takes everything). */
int sw_tls_write(struct ssl_st *ssl, const void *data, size_t len);
/* Queues close_notify. */
void sw_tls_shutdown(struct ssl_st *ssl);
/* What the session queued for the peer, and taking it: up to len bytes into buf. */
size_t sw_tls_output_len(struct ssl_st *ssl);
size_t sw_tls_output_take(struct ssl_st *ssl, char *buf, size_t len);

/* "what: OpenSSL's reason" for the last failure on this thread (or just what), into why; the
 * error queue is left empty. */
void sw_tls_reason(char *why, size_t len, const char *what);
/* Empties the thread's error queue (after calls made outside this module). */
void sw_tls_clear_errors(void);

#endif
