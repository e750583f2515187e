/* Password hashing with argon2id, off the loop thread. */
#include "slipway/crypto.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

/* OWASP's argon2id recommendation: 19 MiB of memory, two passes, one lane. */
#define PW_OPSLIMIT 2ull
#define PW_MEMLIMIT (19u * 1024u * 1024u)
#define PW_ARGON2ID "$argon2id$"

typedef struct pw_work pw_work_t;
struct pw_work {
    uv_work_t req;
    uv_loop_t *loop;
    uv_work_cb work;
    uv_after_work_cb after;
    pw_work_t *next; /* waiting for a free slot */
    sw_password_hash_cb hash_cb;
    sw_password_verify_cb verify_cb;
    void *payload;
    int status;
    bool match;
    bool have_hash; /* verify: hash holds a stored argon2id string to check against */
    char hash[crypto_pwhash_STRBYTES];
    size_t len;
    char password[]; /* a copy, wiped with the rest of the struct */
};

/* At most one hash per spare core runs at a time: argon2id is built to eat CPU, and with every
 * threadpool thread hashing the loop thread would be starved of its core, which is exactly
 * the latency the threadpool was meant to protect. Excess work waits here, bounded. */
#define PW_WAITING_MAX 1024
static unsigned pw_running, pw_waiting;
static pw_work_t *pw_wait_head, *pw_wait_tail;

static unsigned pw_slots(void)
{
    unsigned n = uv_available_parallelism();
    return n > 1 ? n - 1 : 1;
}

static int pw_submit(pw_work_t *w)
{
    if (pw_running < pw_slots()) {
        int r = uv_queue_work(w->loop, &w->req, w->work, w->after);
        if (r == 0)
            pw_running++;
        return r;
    }
    if (pw_waiting >= PW_WAITING_MAX)
        return SW_ELIMIT;
    w->next = NULL;
    if (pw_wait_tail)
        pw_wait_tail->next = w;
    else
        pw_wait_head = w;
    pw_wait_tail = w;
    pw_waiting++;
    return 0;
}

/* A slot came free: start the oldest waiting work. */
static void pw_done(void)
{
    pw_running--;
    while (pw_wait_head && pw_running < pw_slots()) {
        pw_work_t *w = pw_wait_head;
        pw_wait_head = w->next;
        if (!pw_wait_head)
            pw_wait_tail = NULL;
        pw_waiting--;
        if (uv_queue_work(w->loop, &w->req, w->work, w->after) == 0) {
            pw_running++;
        } else {
            pw_running++;
            w->after(&w->req, UV_ECANCELED); /* runs pw_done again for it */
        }
    }
}

/* Unknown users are checked against this so their login costs the same as a real one. It is
 * made on first use, on the threadpool, so startup does not pay for it (that first unknown-user
 * login costs twice as much, once). */
static char dummy_hash[crypto_pwhash_STRBYTES];
static bool dummy_ok;
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_init(void)
{
    unsigned char pw[32];

    randombytes_buf(pw, sizeof(pw));
    dummy_ok = crypto_pwhash_str_alg(dummy_hash, (const char *)pw, sizeof(pw), PW_OPSLIMIT,
                                     PW_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) == 0;
    sodium_memzero(pw, sizeof(pw));
}

static pw_work_t *work_new(const char *password, size_t len, void *payload)
{
    pw_work_t *w = sw_calloc(1, sizeof(*w) + len + 1);

    if (len)
        memcpy(w->password, password, len);
    w->len = len;
    w->payload = payload;
    return w;
}

static void work_free(pw_work_t *w, size_t len)
{
    sodium_memzero(w, sizeof(*w) + len + 1);
    free(w);
}

static void hash_work(uv_work_t *req)
{
    pw_work_t *w = sw_container_of(req, pw_work_t, req);

    if (crypto_pwhash_str_alg(w->hash, w->password, w->len, PW_OPSLIMIT, PW_MEMLIMIT,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        w->status = -ENOMEM; /* the only way it fails with valid parameters */
}

static void hash_after(uv_work_t *req, int status)
{
    pw_work_t *w = sw_container_of(req, pw_work_t, req);
    size_t len = w->len;

    pw_done();
    if (status < 0)
        w->status = status;
    w->hash_cb(w->status, w->status == 0 ? w->hash : NULL, w->payload);
    work_free(w, len);
}

static void verify_work(uv_work_t *req)
{
    pw_work_t *w = sw_container_of(req, pw_work_t, req);

    if (w->have_hash) {
        w->match = crypto_pwhash_str_verify(w->hash, w->password, w->len) == 0;
        return;
    }
    pthread_once(&dummy_once, dummy_init);
    if (!dummy_ok) {
        w->status = -ENOMEM;
        return;
    }
    (void)!crypto_pwhash_str_verify(dummy_hash, w->password, w->len);
    w->match = false;
}

static void verify_after(uv_work_t *req, int status)
{
    pw_work_t *w = sw_container_of(req, pw_work_t, req);
    size_t len = w->len;

    pw_done();
    if (status < 0)
        w->status = status;
    w->verify_cb(w->status, w->status == 0 && w->match, w->payload);
    work_free(w, len);
}

int sw_password_hash(uv_loop_t *loop, const char *password, size_t len, sw_password_hash_cb cb,
                     void *payload)
{
    pw_work_t *w;
    int r;

    if (!password || len < SW_PASSWORD_MIN || len > SW_PASSWORD_MAX)
        return -EINVAL;
    w = work_new(password, len, payload);
    w->hash_cb = cb;
    w->loop = loop;
    w->work = hash_work;
    w->after = hash_after;
    r = pw_submit(w);
    if (r < 0)
        work_free(w, len);
    return r;
}

int sw_password_verify(uv_loop_t *loop, const char *hash, const char *password, size_t len,
                       sw_password_verify_cb cb, void *payload)
{
    pw_work_t *w;
    size_t hash_len;
    int r;

    /* No lower bound: a password set under an older, shorter minimum must still verify. The
     * upper bound caps what a peer can make us hash. */
    if ((!password && len > 0) || len > SW_PASSWORD_MAX)
        return -EINVAL;
    w = work_new(password, len, payload);
    w->verify_cb = cb;
    /* Anything that is not an argon2id string (an unknown user, a corrupt or foreign row)
     * spends the same work on the dummy hash and does not match. */
    hash_len = hash ? strnlen(hash, sizeof(w->hash)) : 0;
    if (hash && hash_len < sizeof(w->hash) &&
        strncmp(hash, PW_ARGON2ID, sizeof(PW_ARGON2ID) - 1) == 0) {
        memcpy(w->hash, hash, hash_len + 1);
        w->have_hash = true;
    }
    w->loop = loop;
    w->work = verify_work;
    w->after = verify_after;
    r = pw_submit(w);
    if (r < 0)
        work_free(w, len);
    return r;
}
