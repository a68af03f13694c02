#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static char *
capture(void (*fn)(void))
{
    static char out[8192];
    int fds[2];
    ssize_t n;

    cr_assert_eq(pipe(fds), 0);
    rmq_log_set_fd(fds[1]);
    fn();
    rmq_log_set_fd(2);
    close(fds[1]);
    n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static void
emit_levels(void)
{
    rmq_log_set_level(RMQ_LOG_WARN);
    RMQ_ERROR("store: fdatasync failed seg=%d err=EIO, appends rejected", 7);
    RMQ_WARN("net: slow peer=%s", "1.2.3.4:5");
    RMQ_INFO("this line is below the level");
}

Test(log, level_filter_and_format)
{
    char *out = capture(emit_levels);

    cr_assert(strstr(out, " E store: fdatasync failed seg=7 err=EIO, appends rejected\n"));
    cr_assert(strstr(out, " W net: slow peer=1.2.3.4:5\n"));
    cr_assert_null(strstr(out, "below the level"));
    /* ISO-8601 UTC timestamp first */
    cr_assert_eq(out[4], '-');
    cr_assert_eq(out[10], 'T');
    cr_assert_eq(out[23], 'Z');
}

static int args_evaluated;

static int
side_effect(void)
{
    return ++args_evaluated;
}

static void
emit_filtered(void)
{
    rmq_log_set_level(RMQ_LOG_ERROR);
    RMQ_INFO("x=%d", side_effect());
}

Test(log, arguments_not_evaluated_below_level)
{
    capture(emit_filtered);
    cr_assert_eq(args_evaluated, 0);
}

static void
emit_repeats(void)
{
    rmq_log_set_level(RMQ_LOG_INFO);
    for (int i = 0; i < 100; i++) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 60000, "net: peer reset peer=%d", i);
    }
}

Test(log, rate_limited_repeats_log_once)
{
    char *out = capture(emit_repeats);
    int lines = 0;

    for (char *p = out; (p = strchr(p, '\n')) != NULL; p++) {
        lines++;
    }
    cr_assert_eq(lines, 1, "got: %s", out);
    cr_assert(strstr(out, "peer=0"));
}

static void
emit_long(void)
{
    char big[3000];

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    rmq_log_set_level(RMQ_LOG_INFO);
    RMQ_INFO("long %s", big);
}

Test(log, long_line_is_cut_with_marker)
{
    char *out = capture(emit_long);
    size_t len = strlen(out);

    cr_assert_eq(len, 1024);
    cr_assert_str_eq(out + len - 4, "...\n");
}

static char sink_mem[256];

static void
emit_into_sink(void)
{
    struct rmq_log_sink sink = {sink_mem, 0, sizeof(sink_mem), 0};

    rmq_log_set_level(RMQ_LOG_INFO);
    rmq_log_sink_install(&sink);
    RMQ_INFO("first line");
    for (int i = 0; i < 10; i++) {
        RMQ_INFO("filler line number %d with enough text to overflow the sink", i);
    }
    rmq_log_sink_install(NULL);
    cr_assert_gt(sink.dropped, 0);
    cr_assert(sink.len <= sizeof(sink_mem));
    cr_assert(memmem(sink_mem, sink.len, "first line\n", 11) != NULL);
}

Test(log, sink_buffers_and_counts_drops_without_blocking)
{
    char *out = capture(emit_into_sink);

    cr_assert_str_eq(out, "");      /* nothing went to the fd directly */
}

Test(log, parse_level)
{
    enum rmq_log_level l;

    cr_assert_eq(rmq_log_parse_level("DEBUG", &l), 0);
    cr_assert_eq(l, RMQ_LOG_DEBUG);
    cr_assert_lt(rmq_log_parse_level("loud", &l), 0);
}
