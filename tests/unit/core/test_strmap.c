#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strmap.h"
#include "core/util.h"

struct item {
    int n;
    char name[24];
};

static struct item *
item_new(int n)
{
    struct item *it = malloc(sizeof(*it));

    it->n = n;
    snprintf(it->name, sizeof(it->name), "topic-%d", n);
    return it;
}

Test(strmap, empty_map_finds_nothing)
{
    struct rmq_strmap m;
    uint32_t pos = 0;

    rmq_strmap_init(&m);
    cr_assert_null(rmq_strmap_get(&m, "x"));
    cr_assert_null(rmq_strmap_del(&m, "x"));
    cr_assert_null(rmq_strmap_next(&m, &pos));
    rmq_strmap_fini(&m);
}

Test(strmap, put_get_delete_twenty_thousand_keys)
{
    struct rmq_strmap m;
    enum { N = 20000 };

    rmq_strmap_init(&m);
    for (int i = 0; i < N; i++) {
        struct item *it = item_new(i);

        cr_assert_eq(rmq_strmap_put(&m, it->name, it), 0);
    }
    cr_assert_eq(rmq_strmap_len(&m), N);
    for (int i = 0; i < N; i++) {
        char key[24];
        struct item *it;

        snprintf(key, sizeof(key), "topic-%d", i);
        it = rmq_strmap_get(&m, key);
        cr_assert_not_null(it, "%s", key);
        cr_assert_eq(it->n, i);
        /* length-bounded lookup: a prefix of a longer buffer */
        cr_assert_eq(rmq_strmap_get_n(&m, key, strlen(key)), it);
    }
    cr_assert_null(rmq_strmap_get_n(&m, "topic-1", 6));     /* "topic-" */
    /* delete the even ones, the odd ones stay reachable past the tombstones */
    for (int i = 0; i < N; i += 2) {
        char key[24];

        snprintf(key, sizeof(key), "topic-%d", i);
        free(rmq_strmap_del(&m, key));
    }
    cr_assert_eq(rmq_strmap_len(&m), N / 2);
    for (int i = 0; i < N; i++) {
        char key[24];

        snprintf(key, sizeof(key), "topic-%d", i);
        cr_assert_eq(rmq_strmap_get(&m, key) != NULL, i % 2 == 1, "%s", key);
    }
    {
        uint32_t pos = 0;
        struct item *it;
        int seen = 0;

        while ((it = rmq_strmap_next(&m, &pos)) != NULL) {
            cr_assert_eq(it->n % 2, 1);
            free(rmq_strmap_del(&m, it->name));     /* deleting the current entry is allowed */
            seen++;
        }
        cr_assert_eq(seen, N / 2);
    }
    cr_assert_eq(rmq_strmap_len(&m), 0);
    rmq_strmap_fini(&m);
}

Test(strmap, put_replaces_the_value_of_an_existing_key)
{
    struct rmq_strmap m;
    struct item *a = item_new(1);
    struct item *b = item_new(1);

    rmq_strmap_init(&m);
    cr_assert_eq(rmq_strmap_put(&m, a->name, a), 0);
    cr_assert_eq(rmq_strmap_put(&m, b->name, b), 0);
    cr_assert_eq(rmq_strmap_len(&m), 1);
    cr_assert_eq(rmq_strmap_get(&m, "topic-1"), b);
    free(a);
    free(rmq_strmap_del(&m, "topic-1"));
    rmq_strmap_fini(&m);
}

Test(strmap, churn_reuses_tombstones_without_growing_forever)
{
    struct rmq_strmap m;

    rmq_strmap_init(&m);
    for (int i = 0; i < 100000; i++) {
        struct item *it = item_new(i);

        cr_assert_eq(rmq_strmap_put(&m, it->name, it), 0);
        if (i >= 8) {
            char key[24];

            snprintf(key, sizeof(key), "topic-%d", i - 8);
            free(rmq_strmap_del(&m, key));
        }
    }
    cr_assert_eq(rmq_strmap_len(&m), 8);
    cr_assert_leq(m.mask + 1, 64u, "slots %u for 8 live keys", m.mask + 1);
    for (int i = 100000 - 8; i < 100000; i++) {
        char key[24];

        snprintf(key, sizeof(key), "topic-%d", i);
        free(rmq_strmap_del(&m, key));
    }
    rmq_strmap_fini(&m);
}

Test(strmap, a_key_with_a_nul_inside_matches_nothing)
{
    struct rmq_strmap m;
    struct item *it = item_new(7);

    rmq_strmap_init(&m);
    cr_assert_eq(rmq_strmap_put(&m, it->name, it), 0);
    /* "topic-7\0xyz": its C-string prefix is a key, the bytes are not */
    cr_assert_null(rmq_strmap_get_n(&m, "topic-7\0xyz", 11));
    cr_assert_eq(rmq_strmap_get_n(&m, "topic-7\0xyz", 7), it);
    free(rmq_strmap_del(&m, "topic-7"));
    rmq_strmap_fini(&m);
}

/* The unseeded FNV-1a 64 this map once used: names a peer could precompute. */
static uint64_t
fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h | 1;
}

Test(strmap, names_chosen_to_collide_do_not_pile_up_in_one_probe_run)
{
    enum { KEYS = 512 };
    static char names[KEYS][24];
    struct rmq_strmap m;
    uint32_t longest = 0;
    uint32_t found = 0;

    /* 512 names whose FNV hashes agree in the low 12 bits: one bucket in a 2048-slot
     * table under a fixed hash, so each insert or lookup would walk all earlier ones */
    for (uint32_t i = 0; found < KEYS; i++) {
        snprintf(names[found], sizeof(names[found]), "t%u", i);
        found += (fnv1a(names[found]) & 0xfff) == 0x123;
    }
    rmq_strmap_init(&m);
    for (uint32_t i = 0; i < KEYS; i++) {
        cr_assert_eq(rmq_strmap_put(&m, names[i], names[i]), 0);
    }
    for (uint32_t i = 0; i <= m.mask; i++) {
        const struct rmq_strmap_slot *s = &m.slots[i];

        if (s->key != NULL) {
            uint32_t home = (uint32_t)s->hash & m.mask;

            longest = RMQ_MAX(longest, (i - home) & m.mask);
        }
    }
    cr_assert_lt(longest, 64u, "a probe run of %u slots", longest);
    for (uint32_t i = 0; i < KEYS; i++) {
        cr_assert_eq(rmq_strmap_get(&m, names[i]), names[i]);
    }
    rmq_strmap_fini(&m);
}
