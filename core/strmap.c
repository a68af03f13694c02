/*
 * String hash map; see strmap.h. Keys come from peers (topic names, addresses), so
 * the hash is XXH3 with a per-map random seed: nobody can compute a set of names that
 * all land in one probe run and turn every lookup into a scan of the table.
 * Load factor at most 3/4 counting tombstones, so probes stay short.
 */
#include "core/strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define XXH_INLINE_ALL              /* header only: core links nothing new */
#include <xxhash.h>

#define MIN_SLOTS 16

static uint64_t
hash_bytes(const struct rmq_strmap *m, const char *s, size_t len)
{
    return XXH3_64bits_withSeed(s, len, m->seed) | 1;  /* never 0: "slot was used" hint */
}

void
rmq_strmap_init(struct rmq_strmap *m)
{
    struct timespec ts;

    memset(m, 0, sizeof(*m));
    if (getrandom(&m->seed, sizeof(m->seed), GRND_NONBLOCK) != (ssize_t)sizeof(m->seed)) {
        /* entropy not ready this early in boot: still differs per map and per run */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        m->seed = XXH3_64bits_withSeed(&m, sizeof(m), (uint64_t)ts.tv_nsec ^
                                       (uint64_t)ts.tv_sec << 30);
    }
}

void
rmq_strmap_fini(struct rmq_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->mask = 0;
    m->len = 0;
    m->used = 0;
}

static bool
key_eq(const char *k, const char *key, size_t key_len)
{
    return strncmp(k, key, key_len) == 0 && k[key_len] == '\0';
}

static struct rmq_strmap_slot *
find(const struct rmq_strmap *m, const char *key, size_t key_len, uint64_t h)
{
    if (m->slots == NULL) {
        return NULL;
    }
    for (uint32_t i = (uint32_t)h & m->mask;; i = (i + 1) & m->mask) {
        struct rmq_strmap_slot *s = &m->slots[i];

        if (s->key == NULL) {
            return NULL;
        }
        if (s->val != NULL && s->hash == h && key_eq(s->key, key, key_len)) {
            return s;
        }
    }
}

void *
rmq_strmap_get_n(const struct rmq_strmap *m, const char *key, size_t key_len)
{
    struct rmq_strmap_slot *s;

    /* keys are C strings: one with a NUL inside matches nothing, and must not be
     * compared (strncmp would stop at the NUL and key_eq then read past a shorter key) */
    if (memchr(key, '\0', key_len) != NULL) {
        return NULL;
    }
    s = find(m, key, key_len, hash_bytes(m, key, key_len));

    return s != NULL ? s->val : NULL;
}

void *
rmq_strmap_get(const struct rmq_strmap *m, const char *key)
{
    return rmq_strmap_get_n(m, key, strlen(key));
}

static void
place(struct rmq_strmap_slot *slots, uint32_t mask, const struct rmq_strmap_slot *e)
{
    uint32_t i = (uint32_t)e->hash & mask;

    while (slots[i].key != NULL) {
        i = (i + 1) & mask;
    }
    slots[i] = *e;
}

static int
resize(struct rmq_strmap *m, uint32_t slot_count)
{
    struct rmq_strmap_slot *slots = calloc(slot_count, sizeof(*slots));

    if (slots == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; m->slots != NULL && i <= m->mask; i++) {
        if (m->slots[i].key != NULL && m->slots[i].val != NULL) {
            place(slots, slot_count - 1, &m->slots[i]);
        }
    }
    free(m->slots);
    m->slots = slots;
    m->mask = slot_count - 1;
    m->used = m->len;
    return 0;
}

int
rmq_strmap_put(struct rmq_strmap *m, const char *key, void *val)
{
    size_t key_len = strlen(key);
    uint64_t h = hash_bytes(m, key, key_len);
    struct rmq_strmap_slot *s = find(m, key, key_len, h);
    struct rmq_strmap_slot e = {h, key, val};

    if (s != NULL) {
        s->key = key;
        s->val = val;
        return 0;
    }
    if (m->slots == NULL || (uint64_t)(m->used + 1) * 4 > (uint64_t)(m->mask + 1) * 3) {
        uint32_t n = MIN_SLOTS;
        int ret;

        while ((uint64_t)(m->len + 1) * 2 > n) {    /* half full after a resize */
            if (n >= (1u << 30)) {
                return -ENOMEM;
            }
            n *= 2;
        }
        ret = resize(m, n);
        if (ret < 0) {
            return ret;
        }
    }
    place(m->slots, m->mask, &e);
    m->len++;
    m->used++;
    return 0;
}

void *
rmq_strmap_del(struct rmq_strmap *m, const char *key)
{
    size_t key_len = strlen(key);
    struct rmq_strmap_slot *s = find(m, key, key_len, hash_bytes(m, key, key_len));
    void *val;

    if (s == NULL) {
        return NULL;
    }
    val = s->val;
    s->val = NULL;                  /* tombstone: probing continues past it */
    m->len--;
    return val;
}

void *
rmq_strmap_next(const struct rmq_strmap *m, uint32_t *pos)
{
    while (m->slots != NULL && *pos <= m->mask) {
        struct rmq_strmap_slot *s = &m->slots[(*pos)++];

        if (s->key != NULL && s->val != NULL) {
            return s->val;
        }
    }
    return NULL;
}
