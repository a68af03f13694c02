/*
 * Hierarchical timing wheel in milliseconds (Varghese and Lauck's scheme, with absolute
 * due times): for timers counted in millions, such as scheduled messages, where the
 * loop's timer heap (core/loop.h) would pay O(log n) per insert and hold one heap slot
 * each. Entries are embedded in the caller's structures; nothing is allocated.
 *
 * Four levels of 256 slots cover 2^32 ms (49.7 days) ahead of `now`; an entry further
 * out waits on an overflow list and is placed when the wheel gets within range. An
 * entry sits at the level of the highest 8-bit group in which its due time differs from
 * `now`, and moves down a level ("cascades") when `now` reaches the start of its slot's
 * span, so each entry is touched at most once per level.
 *
 * Firing is exact to the millisecond: an entry fires in the rmq_wheel_advance call that
 * takes `now` to or past its due time, never earlier; within one call entries fire in
 * due order (insertion order among equal due times). An entry added already due fires
 * at the first advance that moves `now`.
 */
#ifndef RMQ_CORE_WHEEL_H
#define RMQ_CORE_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"

#define RMQ_WHEEL_LEVELS 4
#define RMQ_WHEEL_SLOTS 256

struct rmq_wheel_entry {
    struct rmq_link link;
    uint64_t due_ms;
    uint16_t where;                 /* wheel-private: level << 8 | slot, or overflow */
};

struct rmq_wheel {
    uint64_t now;                   /* every entry due at or before now has fired */
    uint64_t count;
    struct rmq_link slot[RMQ_WHEEL_LEVELS][RMQ_WHEEL_SLOTS];
    uint64_t busy[RMQ_WHEEL_LEVELS][RMQ_WHEEL_SLOTS / 64];     /* non-empty slots */
    struct rmq_link overflow;       /* due 2^32 ms or more ahead */
    uint64_t overflow_count;
};

typedef void (*rmq_wheel_fn)(struct rmq_wheel_entry *e, void *ctx);

void rmq_wheel_init(struct rmq_wheel *w, uint64_t now_ms);
/* Schedule e (not already scheduled) at e->due_ms. */
void rmq_wheel_add(struct rmq_wheel *w, struct rmq_wheel_entry *e);
/* Unschedule e if it is scheduled. */
void rmq_wheel_del(struct rmq_wheel *w, struct rmq_wheel_entry *e);
/* Move now to now_ms, calling fn for each entry that comes due (it is unscheduled
 * first, so fn may add it again or free it). fn must not delete other entries. */
void rmq_wheel_advance(struct rmq_wheel *w, uint64_t now_ms, rmq_wheel_fn fn, void *ctx);
/*
 * When the next advance can have work: the due time of the next entry for level 0,
 * the start of the next non-empty slot's span for higher levels (a cascade, which may
 * fire nothing yet). UINT64_MAX when the wheel is empty. Arm one loop timer for it.
 */
uint64_t rmq_wheel_next(const struct rmq_wheel *w);

static inline uint64_t
rmq_wheel_count(const struct rmq_wheel *w)
{
    return w->count;
}

#endif
