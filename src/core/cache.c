/* The read cache's data structure: chained hash buckets and a least-recently-used list over
 * entries that hold their key and value in one allocation. */
#include "slipway/cache.h"

#include <errno.h>
#include <string.h>

#include "slipway/common.h"

typedef struct entry entry_t;
struct entry {
    entry_t *hnext; /* hash chain */
    entry_t *lru_prev, *lru_next;
    uint64_t hash;
    size_t klen, vlen;
    char data[]; /* key, then value */
};

struct sw_cache {
    entry_t **buckets;
    size_t nbuckets;              /* a power of two */
    entry_t *lru_head, *lru_tail; /* head: most recently used */
    size_t max_entries, max_bytes;
    uint64_t generation;
    sw_cache_stats_t st;
};

static uint64_t key_hash(sw_iov_t key)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < key.len; i++) {
        h ^= (unsigned char)key.base[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static size_t entry_size(size_t klen, size_t vlen)
{
    return sizeof(entry_t) + klen + vlen;
}

static void lru_unlink(sw_cache_t *c, entry_t *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(sw_cache_t *c, entry_t *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

static entry_t **find_slot(sw_cache_t *c, uint64_t hash, sw_iov_t key)
{
    entry_t **pp = &c->buckets[hash & (c->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext) {
        entry_t *e = *pp;
        if (e->hash == hash && e->klen == key.len && memcmp(e->data, key.base, key.len) == 0)
            break;
    }
    return pp;
}

static void entry_remove(sw_cache_t *c, entry_t *e)
{
    entry_t **pp = find_slot(c, e->hash, (sw_iov_t){e->data, e->klen});
    *pp = e->hnext;
    lru_unlink(c, e);
    c->st.entries--;
    c->st.bytes -= entry_size(e->klen, e->vlen);
    free(e);
}

sw_cache_t *sw_cache_new(size_t max_entries, size_t max_bytes)
{
    sw_cache_t *c = sw_calloc(1, sizeof(*c));
    c->max_entries = max_entries ? max_entries : 1;
    c->max_bytes = max_bytes ? max_bytes : 1;
    c->nbuckets = 64;
    while (c->nbuckets < c->max_entries && c->nbuckets < ((size_t)1 << 24))
        c->nbuckets *= 2;
    c->buckets = sw_calloc(c->nbuckets, sizeof(*c->buckets));
    return c;
}

void sw_cache_free(sw_cache_t *c)
{
    if (!c)
        return;
    while (c->lru_head)
        entry_remove(c, c->lru_head);
    free(c->buckets);
    free(c);
}

uint64_t sw_cache_generation(const sw_cache_t *c)
{
    return c->generation;
}

bool sw_cache_get(sw_cache_t *c, sw_iov_t key, sw_iov_t *out)
{
    entry_t *e = *find_slot(c, key_hash(key), key);
    if (!e) {
        c->st.misses++;
        return false;
    }
    c->st.hits++;
    lru_unlink(c, e);
    lru_push_front(c, e);
    *out = (sw_iov_t){e->data + e->klen, e->vlen};
    return true;
}

int sw_cache_put(sw_cache_t *c, uint64_t generation, sw_iov_t key, sw_iov_t value)
{
    if (generation != c->generation) {
        c->st.stale++;
        return -ESTALE;
    }
    size_t size = entry_size(key.len, value.len);
    if (size > c->max_bytes / 8)
        return -E2BIG;
    uint64_t hash = key_hash(key);
    entry_t *old = *find_slot(c, hash, key);
    if (old)
        entry_remove(c, old);
    while (c->lru_tail &&
           (c->st.entries + 1 > c->max_entries || c->st.bytes + size > c->max_bytes)) {
        entry_remove(c, c->lru_tail);
        c->st.evictions++;
    }
    entry_t *e = sw_malloc(size);
    memset(e, 0, sizeof(*e));
    e->hash = hash;
    e->klen = key.len;
    e->vlen = value.len;
    if (key.len)
        memcpy(e->data, key.base, key.len);
    if (value.len)
        memcpy(e->data + key.len, value.base, value.len);
    entry_t **pp = find_slot(c, hash, key);
    *pp = e;
    lru_push_front(c, e);
    c->st.entries++;
    c->st.bytes += size;
    c->st.stores++;
    return 0;
}

void sw_cache_invalidate(sw_cache_t *c)
{
    c->generation++;
    c->st.invalidations++;
    while (c->lru_head)
        entry_remove(c, c->lru_head);
}

void sw_cache_stats(const sw_cache_t *c, sw_cache_stats_t *out)
{
    *out = c->st;
}
