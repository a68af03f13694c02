/*
 * String-keyed hash map for control-plane tables (topics, broker names, addresses):
 * open addressing with linear probing, keys borrowed from the values they index.
 *
 * Lookups are O(1) on average at any size, which the NameServer needs with 10,000+
 * topics. The table grows (doubling) as entries are added: these tables follow what
 * peers register, bounded by the callers' own limits, not sized at start. Deletion
 * leaves a tombstone, so deleting the entry an iteration is on is safe; tombstones
 * are dropped at the next resize.
 */
#ifndef RMQ_CORE_STRMAP_H
#define RMQ_CORE_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_strmap_slot {
    uint64_t hash;
    const char *key;                /* borrowed: NUL-terminated, lives in val; NULL = empty */
    void *val;                      /* borrowed; NULL with a key = tombstone */
};

struct rmq_strmap {
    struct rmq_strmap_slot *slots;  /* owned; power-of-two count */
    uint32_t mask;
    uint32_t len;                   /* live entries */
    uint32_t used;                  /* live entries + tombstones */
    uint64_t seed;                  /* hash seed, random per map */
};

/* Empty map; nothing allocated until the first put. */
void rmq_strmap_init(struct rmq_strmap *m);
/* Free the slots (not the values: the caller owns them). */
void rmq_strmap_fini(struct rmq_strmap *m);

/* The value for key (key_len bytes, no NUL needed; one inside matches nothing), or NULL. */
void *rmq_strmap_get_n(const struct rmq_strmap *m, const char *key, size_t key_len);
void *rmq_strmap_get(const struct rmq_strmap *m, const char *key);

/*
 * Insert or replace. key must stay valid while the entry exists (point it into val).
 * 0, or -ENOMEM with the map unchanged. val must not be NULL.
 */
int rmq_strmap_put(struct rmq_strmap *m, const char *key, void *val);

/* Remove key; returns its value (caller frees it), or NULL when absent. */
void *rmq_strmap_del(struct rmq_strmap *m, const char *key);

static inline uint32_t
rmq_strmap_len(const struct rmq_strmap *m)
{
    return m->len;
}

/*
 * Iteration: `for (uint32_t i = 0; (v = rmq_strmap_next(m, &i)) != NULL;)` visits
 * every value once, in no particular order. Deleting the value just returned is
 * allowed; putting during iteration is not (it may resize).
 */
void *rmq_strmap_next(const struct rmq_strmap *m, uint32_t *pos);

#endif
