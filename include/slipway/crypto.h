/* Secrets, tokens, passwords and one-time codes: the cryptography Slipway uses, in one
 * place. Everything here is libsodium except HMAC-SHA1 for TOTP (OpenSSL libcrypto, which
 * libsodium does not offer). */
#ifndef SLIPWAY_CRYPTO_H
#define SLIPWAY_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "slipway/buf.h"

/* Initialises libsodium; call once before anything below. Returns 0 or -EIO. */
int sw_crypto_init(void);

/* ---- secret box: XChaCha20-Poly1305 under the master key ---- */

#define SW_MASTER_KEY_BYTES 32

typedef struct {
    unsigned char key[SW_MASTER_KEY_BYTES];
} sw_secretbox_t;

/* Loads the master key from hex (64 characters) or, when hex is empty, from
 * <data_dir>/master.key, creating the directory (0700) and the file (0600, random) on first
 * start; several processes starting together agree on one key. Refuses a key file that is
 * readable by group or others. err never contains key material. */
int sw_secretbox_load(sw_secretbox_t *box, const char *hex, const char *data_dir, char *err,
                      size_t err_size);
/* Appends "v1." + base64url(nonce || ciphertext || tag) to out. ad binds the ciphertext to its
 * row (e.g. "app_env:<app id>:<key>"); the same ad must be given to open it. */
void sw_secretbox_seal(const sw_secretbox_t *box, const void *plain, size_t len, const char *ad,
                       sw_buf_t *out);
/* Appends the plaintext to out; -EBADMSG if sealed was tampered with, has the wrong ad or
 * another key, -EINVAL if it is not in the sealed format. */
int sw_secretbox_open(const sw_secretbox_t *box, const char *sealed, size_t len, const char *ad,
                      sw_buf_t *out);
/* Wipes the key. */
void sw_secretbox_clear(sw_secretbox_t *box);

/* ---- tokens: prefix + base64url(32 random bytes); only a hash is ever stored ---- */

#define SW_TOKEN_MAX      64 /* longest token text, including the prefix and NUL */
#define SW_TOKEN_HASH_HEX 65 /* BLAKE2b-256 as hex, with NUL */

/* out receives e.g. "sws_" + 43 characters. */
void sw_token_new(const char *prefix, char out[SW_TOKEN_MAX]);
/* True when token has the prefix and the exact shape sw_token_new makes. */
bool sw_token_valid(const char *prefix, const char *token, size_t len);
/* BLAKE2b-256 of the token, hex-encoded. */
void sw_token_hash(const char *token, size_t len, char out[SW_TOKEN_HASH_HEX]);
/* Constant-time equality of two equal-length buffers. */
bool sw_crypto_equal(const void *a, const void *b, size_t len);

/* ---- HMAC-SHA256 (webhook signatures, both ways) ---- */

#define SW_HMAC_SHA256_BYTES 32
#define SW_HMAC_SHA256_HEX   (SW_HMAC_SHA256_BYTES * 2 + 1) /* lowercase hex, with NUL */

/* HMAC-SHA256 of data (NULL allowed when len is 0) under key. */
void sw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                    unsigned char out[SW_HMAC_SHA256_BYTES]);
/* The same, as lowercase hex, NUL-terminated. */
void sw_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t len,
                        char out[SW_HMAC_SHA256_HEX]);

/* ---- passwords: argon2id on the uv threadpool ---- */

#define SW_PASSWORD_MIN 10
#define SW_PASSWORD_MAX 256

/* status 0 or a negative code; hash is the encoded argon2id string ("$argon2id$..."), valid
 * during the callback. */
typedef void (*sw_password_hash_cb)(int status, const char *hash, void *payload);
/* status 0; match tells whether the password matched. */
typedef void (*sw_password_verify_cb)(int status, bool match, void *payload);

/* Hashes on the threadpool; the password is copied, and the copy wiped after use. -EINVAL for
 * a length outside [SW_PASSWORD_MIN, SW_PASSWORD_MAX] (then cb is not called). */
int sw_password_hash(uv_loop_t *loop, const char *password, size_t len, sw_password_hash_cb cb,
                     void *payload);
/* Verifies on the threadpool. hash NULL (unknown user) spends the same work against a fixed
 * dummy hash and reports no match, so timing does not reveal whether an account exists. */
int sw_password_verify(uv_loop_t *loop, const char *hash, const char *password, size_t len,
                       sw_password_verify_cb cb, void *payload);

/* ---- TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps) ---- */

#define SW_TOTP_SECRET_BYTES 20
#define SW_TOTP_STEP         30

/* RFC 4648 base32 without padding (what authenticator apps expect). */
void sw_base32_encode(const unsigned char *data, size_t len, sw_buf_t *out);
/* Accepts upper or lower case, ignores spaces and '=' padding; -EINVAL otherwise. */
int sw_base32_decode(const char *text, size_t len, sw_buf_t *out);

/* The 6-digit code for a counter (unix time / 30), NUL-terminated. */
void sw_totp_code(const unsigned char *secret, size_t len, uint64_t counter, char out[7]);
/* Checks code against the steps around unix_time (window steps either side). Returns the
 * matching counter (> 0) or 0 when nothing matches; a counter <= last_used is refused so a
 * code cannot be used twice. */
uint64_t sw_totp_verify(const unsigned char *secret, size_t len, const char *code,
                        uint64_t unix_time, unsigned window, uint64_t last_used);
/* Steps either side a login or confirmation accepts: tolerates 30 s of clock skew. */
#define SW_TOTP_WINDOW 1

/* Seals a user's TOTP secret with the secret box, bound to that user ("totp:<user id>"). */
void sw_totp_seal(const sw_secretbox_t *box, const char *user_id, const unsigned char *secret,
                  size_t len, sw_buf_t *out);
/* Opens a user's sealed secret and checks code at unix_time, SW_TOTP_WINDOW steps either side,
 * refusing steps <= last (when last > 0). Returns the accepted step, or 0 when the code does
 * not match or sealed is NULL or does not open. */
uint64_t sw_totp_check_sealed(const sw_secretbox_t *box, const char *user_id, const char *sealed,
                              long long last, const char *code, uint64_t unix_time);
/* The stored hash of a recovery code: compared without case, spaces or dashes. */
void sw_totp_recovery_hash(const char *code, char out[SW_TOKEN_HASH_HEX]);
/* otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30
 * with issuer and account percent-encoded. */
void sw_totp_url(const char *issuer, const char *account, const char *secret_b32, sw_buf_t *out);

#endif
