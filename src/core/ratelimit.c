/* Token buckets in a bounded table: a hash of keys for lookup, and a list in order of use so
 * the least recently used key is the one evicted. */
#include "slipway/ratelimit.h"

#include <sodium.h>
#include <string.h>

#include "slipway/common.h"

/* Long enough for any email address (RFC 5321: 254); longer keys are cut to this, so two keys
 * sharing their first KEY_MAX bytes share a bucket. */
#define KEY_MAX 256
/* Keeps burst * period_ms (the scaled bucket size) below 2^63. */
#define PERIOD_MAX_MS (1ull << 31)
#define BUCKETS_MIN   16u

typedef struct entry entry_t;
struct entry {
    entry_t *hnext, **hprev; /* hash chain; hprev points at whatever points at us */
    entry_t *lprev, *lnext;  /* use order: head is the most recent */
    uint64_t hash;
    /* Tokens in units of 1/period_ms of a token, so refill (rate units per ms) is exact. */
    uint64_t tokens;
    uint64_t last_ms;
    size_t key_len;
    char key[];
};

struct sw_ratelimit {
    uint64_t rate;      /* units added per millisecond */
    uint64_t period_ms; /* units per token */
    uint64_t capacity;  /* burst * period_ms */
    uint32_t burst;
    size_t max_keys, count;
    entry_t **buckets;
    size_t nbuckets, nbuckets_max; /* powers of two */
    entry_t *head, *tail;
    /* Keys come from peers: a keyed hash keeps them from piling into one chain. */
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
};

static size_t pow2_at_least(size_t n)
{
    size_t p = BUCKETS_MIN;
    while (p < n && p <= SIZE_MAX / 2)
        p *= 2;
    return p;
}

sw_ratelimit_t *sw_ratelimit_new(uint32_t rate, uint64_t period_ms, uint32_t burst, size_t max_keys)
{
    sw_ratelimit_t *rl;

    /* Nonsense limits are a configuration bug the caller must see, not a silent no-op. */
    if (rate == 0 || period_ms == 0 || period_ms > PERIOD_MAX_MS || burst == 0 || max_keys == 0)
        return NULL;
    rl = sw_calloc(1, sizeof(*rl));
    rl->rate = rate;
    rl->period_ms = period_ms;
    rl->burst = burst;
    rl->capacity = (uint64_t)burst * period_ms;
    rl->max_keys = max_keys;
    rl->nbuckets_max = pow2_at_least(max_keys);
    rl->nbuckets = SW_MIN(rl->nbuckets_max, 64u);
    rl->buckets = sw_calloc(rl->nbuckets, sizeof(*rl->buckets));
    randombytes_buf(rl->hash_key, sizeof(rl->hash_key));
    return rl;
}

void sw_ratelimit_free(sw_ratelimit_t *rl)
{
    if (!rl)
        return;
    for (entry_t *e = rl->head, *next; e; e = next) {
        next = e->lnext;
        free(e);
    }
    free(rl->buckets);
    free(rl);
}

static uint64_t key_hash(const sw_ratelimit_t *rl, const char *key, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v = 0;

    crypto_shorthash(h, (const unsigned char *)key, len, rl->hash_key);
    for (size_t i = 0; i < sizeof(h); i++)
        v = (v << 8) | h[i];
    return v;
}

static void chain_insert(sw_ratelimit_t *rl, entry_t *e)
{
    entry_t **slot = &rl->buckets[e->hash & (rl->nbuckets - 1)];

    e->hnext = *slot;
    if (*slot)
        (*slot)->hprev = &e->hnext;
    e->hprev = slot;
    *slot = e;
}

static void chain_remove(entry_t *e)
{
    *e->hprev = e->hnext;
    if (e->hnext)
        e->hnext->hprev = e->hprev;
}

static void list_remove(sw_ratelimit_t *rl, entry_t *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        rl->head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        rl->tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void list_push_front(sw_ratelimit_t *rl, entry_t *e)
{
    e->lprev = NULL;
    e->lnext = rl->head;
    if (rl->head)
        rl->head->lprev = e;
    else
        rl->tail = e;
    rl->head = e;
}

/* Doubles the bucket array while the table fills, up to the size max_keys needs. */
static void maybe_grow(sw_ratelimit_t *rl)
{
    if (rl->count < rl->nbuckets || rl->nbuckets >= rl->nbuckets_max)
        return;
    free(rl->buckets);
    rl->nbuckets *= 2;
    rl->buckets = sw_calloc(rl->nbuckets, sizeof(*rl->buckets));
    for (entry_t *e = rl->head; e; e = e->lnext)
        chain_insert(rl, e);
}

static entry_t *lookup(sw_ratelimit_t *rl, const char *key, size_t len, uint64_t hash)
{
    for (entry_t *e = rl->buckets[hash & (rl->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static void entry_free(sw_ratelimit_t *rl, entry_t *e)
{
    chain_remove(e);
    list_remove(rl, e);
    rl->count--;
    free(e);
}

static void refill(const sw_ratelimit_t *rl, entry_t *e, uint64_t now_ms)
{
    uint64_t deficit, elapsed;

    /* A clock that steps back adds nothing, and the next refill counts from the later time. */
    if (now_ms <= e->last_ms)
        return;
    elapsed = now_ms - e->last_ms;
    e->last_ms = now_ms;
    deficit = rl->capacity - e->tokens;
    /* Compare by division first so elapsed * rate cannot overflow. */
    if (elapsed >= (deficit + rl->rate - 1) / rl->rate)
        e->tokens = rl->capacity;
    else
        e->tokens += elapsed * rl->rate;
}

static uint64_t ms_until(const sw_ratelimit_t *rl, uint64_t tokens, uint64_t want)
{
    return want > tokens ? (want - tokens + rl->rate - 1) / rl->rate : 0;
}

static void fill_result(const sw_ratelimit_t *rl, uint64_t tokens, bool allowed, uint64_t want,
                        sw_ratelimit_result_t *out)
{
    out->allowed = allowed;
    out->limit = rl->burst;
    out->remaining = (uint32_t)(tokens / rl->period_ms);
    out->reset_ms = ms_until(rl, tokens, rl->capacity);
    out->retry_after_ms = allowed ? 0 : SW_MAX(ms_until(rl, tokens, want), 1u);
    out->window_ms = ms_until(rl, 0, rl->capacity);
}

void sw_ratelimit_take(sw_ratelimit_t *rl, const char *key, uint32_t cost, uint64_t now_ms,
                       sw_ratelimit_result_t *out)
{
    size_t len = strnlen(key, KEY_MAX);
    uint64_t hash = key_hash(rl, key, len);
    uint64_t want = (uint64_t)cost * rl->period_ms;
    entry_t *e = lookup(rl, key, len, hash);
    bool allowed;

    if (e) {
        list_remove(rl, e);
        refill(rl, e, now_ms);
    } else {
        if (rl->count >= rl->max_keys)
            entry_free(rl, rl->tail);
        e = sw_malloc(sizeof(*e) + len);
        memcpy(e->key, key, len);
        e->key_len = len;
        e->hash = hash;
        e->tokens = rl->capacity; /* a key not seen before starts full */
        e->last_ms = now_ms;
        rl->count++;
        maybe_grow(rl);
        chain_insert(rl, e);
    }
    list_push_front(rl, e);

    allowed = e->tokens >= want;
    if (allowed)
        e->tokens -= want;
    fill_result(rl, e->tokens, allowed, want, out);
}

void sw_ratelimit_peek(sw_ratelimit_t *rl, const char *key, uint64_t now_ms,
                       sw_ratelimit_result_t *out)
{
    size_t len = strnlen(key, KEY_MAX);
    entry_t *e = lookup(rl, key, len, key_hash(rl, key, len));
    uint64_t tokens = rl->capacity;

    /* Looking neither creates a key nor counts as use, so it cannot evict anyone. */
    if (e) {
        refill(rl, e, now_ms);
        tokens = e->tokens;
    }
    fill_result(rl, tokens, tokens >= rl->period_ms, rl->period_ms, out);
}

void sw_ratelimit_reset(sw_ratelimit_t *rl, const char *key)
{
    size_t len = strnlen(key, KEY_MAX);
    entry_t *e = lookup(rl, key, len, key_hash(rl, key, len));

    if (e)
        entry_free(rl, e);
}

void sw_ratelimit_refund(sw_ratelimit_t *rl, const char *key, uint32_t cost)
{
    size_t len = strnlen(key, KEY_MAX);
    entry_t *e = lookup(rl, key, len, key_hash(rl, key, len));
    if (!e)
        return;
    uint64_t back = (uint64_t)cost * rl->period_ms;
    e->tokens = e->tokens + back > rl->capacity ? rl->capacity : e->tokens + back;
}
