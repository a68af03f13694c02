/*
 * Log formatting and delivery; see log.h. A line is formatted once into a stack
 * buffer (lines longer than RMQ_LOG_LINE_MAX are cut with "..."), then appended to
 * the thread's sink or written with one write(2).
 */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/util.h"

#define RMQ_LOG_LINE_MAX 1024

_Atomic int rmq_log_level_max = RMQ_LOG_INFO;
static _Atomic int log_fd = 2;
static _Thread_local struct rmq_log_sink *thread_sink;

static const char level_letter[] = {'E', 'W', 'I', 'D'};

void
rmq_log_set_level(enum rmq_log_level level)
{
    atomic_store(&rmq_log_level_max, (int)level);
}

int
rmq_log_parse_level(const char *name, enum rmq_log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    for (size_t i = 0; i < RMQ_ARRAY_LEN(names); i++) {
        if (strcasecmp(name, names[i]) == 0) {
            *out = (enum rmq_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void
rmq_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int
rmq_log_fd(void)
{
    return atomic_load(&log_fd);
}

void
rmq_log_sink_install(struct rmq_log_sink *sink)
{
    thread_sink = sink;
}

static void
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;         /* nowhere left to report a failing log fd */
        }
        p += n;
        len -= (size_t)n;
    }
}

static void
deliver(const char *line, size_t len)
{
    struct rmq_log_sink *s = thread_sink;

    if (s == NULL) {
        write_all(atomic_load(&log_fd), line, len);
        return;
    }
    if (s->dropped > 0 && s->cap - s->len > 64) {
        int n = snprintf(s->buf + s->len, s->cap - s->len,
                         "W log: %llu lines dropped, log buffer full\n",
                         (unsigned long long)s->dropped);
        s->len += (size_t)n;
        s->dropped = 0;
    }
    if (s->cap - s->len < len) {
        s->dropped++;
        return;
    }
    memcpy(s->buf + s->len, line, len);
    s->len += len;
}

static void
log_vformat(enum rmq_log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[RMQ_LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    size_t len;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %c ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, level_letter[level & 3]);
    len = (size_t)n;
    n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
    if (n < 0) {
        return;
    }
    len += (size_t)n;
    if (suffix != NULL && len < sizeof(line)) {
        n = snprintf(line + len, sizeof(line) - len, "%s", suffix);
        len += (size_t)(n > 0 ? n : 0);
    }
    if (len >= sizeof(line) - 1) {      /* cut: leave room for "...\n" */
        len = sizeof(line) - 1;
        memcpy(line + len - 3, "...", 3);
    }
    line[len] = '\n';
    deliver(line, len + 1);
}

void
rmq_log_write(enum rmq_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vformat(level, NULL, fmt, ap);
    va_end(ap);
}

void
rmq_log_write_rl(struct rmq_log_rl *rl, uint64_t interval_ms, enum rmq_log_level level,
                 const char *fmt, ...)
{
    uint64_t now = rmq_clock_mono_ns();
    uint64_t next = atomic_load_explicit(&rl->next_ns, memory_order_relaxed);
    char suffix[48];
    uint32_t dropped;
    va_list ap;

    if (now < next || !atomic_compare_exchange_strong(&rl->next_ns, &next,
                                                      now + interval_ms * 1000000u)) {
        atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
        return;
    }
    dropped = atomic_exchange(&rl->suppressed, 0);
    suffix[0] = '\0';
    if (dropped > 0) {
        snprintf(suffix, sizeof(suffix), " (%u similar suppressed)", dropped);
    }
    va_start(ap, fmt);
    log_vformat(level, suffix, fmt, ap);
    va_end(ap);
}

void
rmq_assert_fail(const char *expr, const char *file, int line)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "assertion failed: %s at %s:%d\n", expr, file, line);

    /* Straight to the fd: the loop that would flush the sink is the one dying. */
    if (thread_sink != NULL && thread_sink->len > 0) {
        write_all(atomic_load(&log_fd), thread_sink->buf, thread_sink->len);
    }
    write_all(atomic_load(&log_fd), msg, (size_t)n);
    abort();
}
