/*
 * Small always-available helpers: assertions, container_of, branch hints.
 *
 * RMQ_ASSERT is on in every build: a broken invariant means our state is wrong,
 * and a crash plus recovery is safer than writing a wrong byte (STYLE.md §6).
 * Never use it on what a peer, a file or the kernel hands us.
 */
#ifndef RMQ_CORE_UTIL_H
#define RMQ_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

void rmq_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#define RMQ_ASSERT(cond) \
    ((cond) ? (void)0 : rmq_assert_fail(#cond, __FILE__, __LINE__))

#ifdef RMQ_DEBUG_BUILD
#define RMQ_DEBUG_ASSERT(cond) RMQ_ASSERT(cond)
#else
#define RMQ_DEBUG_ASSERT(cond) ((void)0)
#endif

#define rmq_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define RMQ_LIKELY(x) __builtin_expect(!!(x), 1)
#define RMQ_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RMQ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RMQ_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RMQ_MAX(a, b) ((a) > (b) ? (a) : (b))

/* qsort comparator for uint64_t arrays. */
static inline int
rmq_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}
#define RMQ_CACHELINE 64

#endif
