/*
 * Logging: one line per event, "<time> <L> <module>: <what> key=value ..., <what next>".
 *
 * The macros test the level before evaluating any argument. RMQ_DEBUG compiles to
 * nothing outside debug builds. On a loop thread a line is formatted into that loop's
 * log buffer and written through its ring once per iteration, so logging never
 * blocks a loop; elsewhere (start-up, tests, non-loop threads) it is one write(2).
 * RMQ_LOG_RL logs a repeating condition once, then at most once per interval with
 * the number of lines suppressed in between.
 */
#ifndef RMQ_CORE_LOG_H
#define RMQ_CORE_LOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum rmq_log_level {
    RMQ_LOG_ERROR = 0,
    RMQ_LOG_WARN = 1,
    RMQ_LOG_INFO = 2,
    RMQ_LOG_DEBUG = 3,
};

extern _Atomic int rmq_log_level_max;

void rmq_log_set_level(enum rmq_log_level level);
/* "error", "warn", "info", "debug"; -EINVAL for anything else. */
int rmq_log_parse_level(const char *name, enum rmq_log_level *out);
/* Destination fd (default 2). Not owned: the caller closes it after the last line. */
void rmq_log_set_fd(int fd);
int rmq_log_fd(void);

void rmq_log_write(enum rmq_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct rmq_log_rl {
    _Atomic uint64_t next_ns;       /* earliest time the next line may be printed */
    _Atomic uint32_t suppressed;    /* lines dropped since the last one printed */
};

void rmq_log_write_rl(struct rmq_log_rl *rl, uint64_t interval_ms, enum rmq_log_level level,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define RMQ_LOG(level, ...) \
    do { \
        if ((int)(level) <= atomic_load_explicit(&rmq_log_level_max, memory_order_relaxed)) { \
            rmq_log_write((level), __VA_ARGS__); \
        } \
    } while (0)

#define RMQ_ERROR(...) RMQ_LOG(RMQ_LOG_ERROR, __VA_ARGS__)
#define RMQ_WARN(...) RMQ_LOG(RMQ_LOG_WARN, __VA_ARGS__)
#define RMQ_INFO(...) RMQ_LOG(RMQ_LOG_INFO, __VA_ARGS__)
#ifdef RMQ_DEBUG_BUILD
#define RMQ_DEBUG(...) RMQ_LOG(RMQ_LOG_DEBUG, __VA_ARGS__)
#else
#define RMQ_DEBUG(...) ((void)0)
#endif

/* Rate-limited: at most one line per interval_ms from this call site. */
#define RMQ_LOG_RL(level, interval_ms, ...) \
    do { \
        static struct rmq_log_rl rmq_rl_; \
        if ((int)(level) <= atomic_load_explicit(&rmq_log_level_max, memory_order_relaxed)) { \
            rmq_log_write_rl(&rmq_rl_, (interval_ms), (level), __VA_ARGS__); \
        } \
    } while (0)

/*
 * A sink buffers lines for one thread (the loop installs its own). Lines that do not
 * fit are counted and reported when space returns; nothing blocks.
 */
struct rmq_log_sink {
    char *buf;                      /* borrowed: owned by whoever installed the sink */
    size_t len;
    size_t cap;
    uint64_t dropped;               /* lines that did not fit */
};

/* Install (or with NULL remove) the calling thread's sink. */
void rmq_log_sink_install(struct rmq_log_sink *sink);

#endif
