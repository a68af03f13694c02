/* The hierarchical timing wheel: exact firing, cascades, overflow, deletion, and a
 * randomized run checked against the obvious model. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "core/util.h"
#include "core/wheel.h"

#define DAY (24ull * 3600 * 1000)

struct item {
    struct rmq_wheel_entry e;
    int fired;
    bool deleted;
    uint64_t fired_at;              /* the wheel's now when it fired */
};

static uint64_t last_due;
static uint64_t call_now;
static bool ordered;

static void
on_fire(struct rmq_wheel_entry *e, void *ctx)
{
    struct item *it = rmq_container_of(e, struct item, e);

    (void)ctx;
    it->fired++;
    it->fired_at = call_now;
    if (e->due_ms < last_due) {
        ordered = false;
    }
    last_due = e->due_ms;
}

static void
advance(struct rmq_wheel *w, uint64_t to)
{
    last_due = 0;
    ordered = true;
    call_now = to;
    rmq_wheel_advance(w, to, on_fire, NULL);
    cr_assert(ordered, "one advance fired out of due order");
    cr_assert_eq(w->now, to, "now %llu, advanced to %llu", (unsigned long long)w->now,
                 (unsigned long long)to);
}

Test(wheel, fires_exactly_at_its_due_time_at_every_level_and_beyond)
{
    static const uint64_t offs[] = {1, 2, 255, 256, 257, 65535, 65536, 65537, (1u << 24) + 5,
                                    7 * DAY, (1ull << 32) - 1, (1ull << 32) + 7, 60 * DAY};
    struct rmq_wheel w;
    struct item it[RMQ_ARRAY_LEN(offs)];
    const uint64_t t0 = 1700000000123ull;

    rmq_wheel_init(&w, t0);
    cr_assert_eq(rmq_wheel_next(&w), UINT64_MAX);
    for (size_t i = 0; i < RMQ_ARRAY_LEN(offs); i++) {
        memset(&it[i], 0, sizeof(it[i]));
        it[i].e.due_ms = t0 + offs[i];
        rmq_wheel_add(&w, &it[i].e);
    }
    cr_assert_eq(rmq_wheel_count(&w), RMQ_ARRAY_LEN(offs));
    for (size_t i = 0; i < RMQ_ARRAY_LEN(offs); i++) {
        advance(&w, t0 + offs[i] - 1);
        cr_assert_eq(it[i].fired, 0, "entry +%llu fired early", (unsigned long long)offs[i]);
        cr_assert_leq(rmq_wheel_next(&w), t0 + offs[i], "next() later than the next due");
        advance(&w, t0 + offs[i]);
        cr_assert_eq(it[i].fired, 1, "entry +%llu did not fire at its time",
                     (unsigned long long)offs[i]);
    }
    cr_assert_eq(rmq_wheel_count(&w), 0);
    cr_assert_eq(rmq_wheel_next(&w), UINT64_MAX);
}

Test(wheel, overdue_entries_fire_at_the_next_move_and_deleted_ones_never)
{
    struct rmq_wheel w;
    struct item a = {0}, b = {0}, c = {0};

    rmq_wheel_init(&w, 1000);
    a.e.due_ms = 10;                /* long past */
    b.e.due_ms = 1000;              /* exactly now */
    c.e.due_ms = 5000;
    rmq_wheel_add(&w, &a.e);
    rmq_wheel_add(&w, &b.e);
    rmq_wheel_add(&w, &c.e);
    advance(&w, 1000);
    cr_assert_eq(a.fired + b.fired, 0, "now did not move");
    rmq_wheel_del(&w, &c.e);
    rmq_wheel_del(&w, &c.e);        /* twice is harmless */
    advance(&w, 1001);
    cr_assert_eq(a.fired, 1);
    cr_assert_eq(b.fired, 1);
    advance(&w, 100000);
    cr_assert_eq(c.fired, 0);
    cr_assert_eq(rmq_wheel_count(&w), 0);
}

Test(wheel, randomized_against_the_model)
{
    enum { N = 20000 };
    struct item *it = calloc(N, sizeof(*it));
    struct rmq_wheel w;
    uint64_t now = 5000000000ull;
    uint32_t seed = 12345;

    rmq_wheel_init(&w, now);
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        /* mostly within 10 days, some overdue, some beyond the 49.7-day span */
        it[i].e.due_ms = i % 50 == 0 ? now - (seed % 1000) : i % 97 == 0
                         ? now + (1ull << 32) + seed : now + ((uint64_t)seed * 7919u) % (10 * DAY);
        rmq_wheel_add(&w, &it[i].e);
    }
    for (int i = 0; i < N; i += 10) {
        rmq_wheel_del(&w, &it[i].e);
        it[i].deleted = true;
    }
    while (rmq_wheel_count(&w) > 0) {
        uint64_t prev = now;
        uint64_t next = rmq_wheel_next(&w);

        seed = seed * 1103515245u + 12345u;
        /* steps of every size; now and then straight to next() */
        now += seed % 3 == 0 ? RMQ_MAX(next, now + 1) - now : 1 + seed % (seed % 2 ? 3000 : DAY);
        advance(&w, now);
        for (int i = 0; i < N; i++) {
            bool due = it[i].e.due_ms <= now;

            if (it[i].deleted) {
                cr_assert_eq(it[i].fired, 0);
            } else if (it[i].fired) {
                cr_assert_eq(it[i].fired, 1, "fired twice");
                cr_assert(it[i].e.due_ms <= it[i].fired_at, "fired early");
                cr_assert(it[i].fired_at <= now);
            } else {
                cr_assert_not(due, "due at %llu, not fired by %llu (previous advance %llu)",
                              (unsigned long long)it[i].e.due_ms, (unsigned long long)now,
                              (unsigned long long)prev);
            }
        }
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(it[i].fired, it[i].deleted ? 0 : 1);
    }
    free(it);
}
