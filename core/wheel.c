/* Hierarchical timing wheel; see wheel.h. */
#include "core/wheel.h"

#include "core/util.h"

#define BITS 8
#define MASK (RMQ_WHEEL_SLOTS - 1)
#define SPAN_BITS (BITS * RMQ_WHEEL_LEVELS)     /* 32: what the levels cover */
#define WHERE_OVERFLOW 0xFFFFu

void
rmq_wheel_init(struct rmq_wheel *w, uint64_t now_ms)
{
    w->now = now_ms;
    w->count = 0;
    w->overflow_count = 0;
    for (int l = 0; l < RMQ_WHEEL_LEVELS; l++) {
        for (int s = 0; s < RMQ_WHEEL_SLOTS; s++) {
            rmq_list_init(&w->slot[l][s]);
        }
        for (int i = 0; i < RMQ_WHEEL_SLOTS / 64; i++) {
            w->busy[l][i] = 0;
        }
    }
    rmq_list_init(&w->overflow);
}

static void
busy_set(struct rmq_wheel *w, int l, uint32_t s)
{
    w->busy[l][s / 64] |= 1ull << (s % 64);
}

static void
busy_check(struct rmq_wheel *w, int l, uint32_t s)
{
    if (rmq_list_is_empty(&w->slot[l][s])) {
        w->busy[l][s / 64] &= ~(1ull << (s % 64));
    }
}

/* Place e relative to w->now (e is not linked). Due times not after now go to the next
 * tick: they fire at the next advance. */
static void
place(struct rmq_wheel *w, struct rmq_wheel_entry *e)
{
    uint64_t due = e->due_ms > w->now ? e->due_ms : w->now + 1;
    uint64_t diff = due ^ w->now;
    int l = (63 - __builtin_clzll(diff)) / BITS;
    uint32_t s;

    if (l >= RMQ_WHEEL_LEVELS) {
        rmq_list_add_tail(&w->overflow, &e->link);
        w->overflow_count++;
        e->where = WHERE_OVERFLOW;
        return;
    }
    s = (uint32_t)(due >> (BITS * l)) & MASK;
    rmq_list_add_tail(&w->slot[l][s], &e->link);
    busy_set(w, l, s);
    e->where = (uint16_t)((uint32_t)l << 8 | s);
}

void
rmq_wheel_add(struct rmq_wheel *w, struct rmq_wheel_entry *e)
{
    w->count++;
    place(w, e);
}

void
rmq_wheel_del(struct rmq_wheel *w, struct rmq_wheel_entry *e)
{
    if (!rmq_link_is_linked(&e->link)) {
        return;
    }
    rmq_list_del(&e->link);
    w->count--;
    if (e->where == WHERE_OVERFLOW) {
        w->overflow_count--;
    } else {
        busy_check(w, e->where >> 8, e->where & MASK);
    }
}

/* First busy slot index of level l strictly after index from, or -1. */
static int
busy_after(const struct rmq_wheel *w, int l, uint32_t from)
{
    for (uint32_t i = from + 1; i < RMQ_WHEEL_SLOTS;) {
        uint64_t word = w->busy[l][i / 64] >> (i % 64);

        if (word != 0) {
            return (int)(i + (uint32_t)__builtin_ctzll(word));
        }
        i = (i / 64 + 1) * 64;
    }
    return -1;
}

uint64_t
rmq_wheel_next(const struct rmq_wheel *w)
{
    uint64_t best = UINT64_MAX;

    if (w->count == 0) {
        return UINT64_MAX;
    }
    /* level 0 holds exact due ticks of the current 256 ms block; it also holds entries
     * placed at now + 1 (added overdue) */
    for (int l = 0; l < RMQ_WHEEL_LEVELS; l++) {
        uint32_t cur = (uint32_t)(w->now >> (BITS * l)) & MASK;
        int s = busy_after(w, l, cur);

        if (s >= 0) {
            uint64_t high = w->now >> (BITS * (l + 1)) << (BITS * (l + 1));
            uint64_t t = high | ((uint64_t)s << (BITS * l));

            best = RMQ_MIN(best, t);
        }
    }
    if (w->overflow_count > 0) {
        best = RMQ_MIN(best, ((w->now >> SPAN_BITS) + 1) << SPAN_BITS);
    }
    return best;
}

/* Re-place every entry of list (their span starts at now). */
static void
replace_all(struct rmq_wheel *w, struct rmq_link *list)
{
    struct rmq_link moved;
    struct rmq_link *n;

    /* detach first: placing may put entries back on this same list's level */
    rmq_list_init(&moved);
    while ((n = rmq_list_pop(list)) != NULL) {
        rmq_list_add_tail(&moved, n);
    }
    while ((n = rmq_list_pop(&moved)) != NULL) {
        place(w, rmq_container_of(n, struct rmq_wheel_entry, link));
    }
}

void
rmq_wheel_advance(struct rmq_wheel *w, uint64_t now_ms, rmq_wheel_fn fn, void *ctx)
{
    while (w->count > 0 && w->now < now_ms) {
        uint64_t t = rmq_wheel_next(w);
        uint32_t s0;

        if (t > now_ms) {
            break;
        }
        w->now = t;
        /* overflow entries within range again, then higher levels from the top down:
         * each lands lower, at a slot after the current one */
        if ((t & ((1ull << SPAN_BITS) - 1)) == 0 && w->overflow_count > 0) {
            w->overflow_count = 0;
            replace_all(w, &w->overflow);
            /* entries that overflow again are counted back by place() */
        }
        for (int l = RMQ_WHEEL_LEVELS - 1; l >= 1; l--) {
            uint32_t s = (uint32_t)(t >> (BITS * l)) & MASK;

            if ((t & ((1ull << (BITS * l)) - 1)) == 0 && !rmq_list_is_empty(&w->slot[l][s])) {
                replace_all(w, &w->slot[l][s]);
                busy_check(w, l, s);
            }
        }
        s0 = (uint32_t)t & MASK;
        while (!rmq_list_is_empty(&w->slot[0][s0])) {
            struct rmq_wheel_entry *e =
                rmq_container_of(rmq_list_pop(&w->slot[0][s0]), struct rmq_wheel_entry, link);

            w->count--;
            fn(e, ctx);
        }
        busy_check(w, 0, s0);
    }
    if (w->now < now_ms) {
        w->now = now_ms;
    }
}
