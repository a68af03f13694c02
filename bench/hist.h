/*
 * Log-linear latency histogram (the HdrHistogram idea): values below 128 ns exactly,
 * above that 128 sub-buckets per power of two, so any reported value is within 1/128
 * (< 1 %) of the true one. Fixed size (about 40 KiB), no allocation: one per thread,
 * merged at the end.
 */
#ifndef RMQ_BENCH_HIST_H
#define RMQ_BENCH_HIST_H

#include <stdint.h>

#define RMQ_HIST_SUB_BITS 7
#define RMQ_HIST_SUB (1u << RMQ_HIST_SUB_BITS)
#define RMQ_HIST_MAGS 45                /* up to 2^44 ns, about 4.9 hours */
#define RMQ_HIST_BUCKETS (RMQ_HIST_SUB * (RMQ_HIST_MAGS - RMQ_HIST_SUB_BITS + 1))

struct rmq_hist {
    uint64_t counts[RMQ_HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
};

void rmq_hist_record(struct rmq_hist *h, uint64_t v);
void rmq_hist_merge(struct rmq_hist *dst, const struct rmq_hist *src);
/* The value at percentile pct (0..100): the upper edge of its bucket, capped at max; 0
 * when empty. */
uint64_t rmq_hist_at(const struct rmq_hist *h, double pct);

#endif
