/* Log-linear histogram (hist.h). */
#include "bench/hist.h"

static uint32_t
bucket_of(uint64_t v)
{
    int m;
    uint32_t shift;

    if (v < RMQ_HIST_SUB) {
        return (uint32_t)v;
    }
    m = 63 - __builtin_clzll(v);                /* v in [2^m, 2^(m+1)) */
    shift = (uint32_t)m - RMQ_HIST_SUB_BITS;
    if (m >= RMQ_HIST_MAGS) {
        return RMQ_HIST_BUCKETS - 1;            /* clamped: max still holds the truth */
    }
    /* (v >> shift) is in [128, 256) */
    return RMQ_HIST_SUB + shift * RMQ_HIST_SUB + (uint32_t)((v >> shift) - RMQ_HIST_SUB);
}

static uint64_t
bucket_top(uint32_t b)
{
    uint32_t shift;
    uint64_t sub;

    if (b < RMQ_HIST_SUB) {
        return b;
    }
    shift = (b - RMQ_HIST_SUB) / RMQ_HIST_SUB;
    sub = RMQ_HIST_SUB + (b - RMQ_HIST_SUB) % RMQ_HIST_SUB;
    return ((sub + 1) << shift) - 1;
}

void
rmq_hist_record(struct rmq_hist *h, uint64_t v)
{
    h->counts[bucket_of(v)]++;
    h->total++;
    if (v > h->max) {
        h->max = v;
    }
}

void
rmq_hist_merge(struct rmq_hist *dst, const struct rmq_hist *src)
{
    for (uint32_t i = 0; i < RMQ_HIST_BUCKETS; i++) {
        dst->counts[i] += src->counts[i];
    }
    dst->total += src->total;
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

uint64_t
rmq_hist_at(const struct rmq_hist *h, double pct)
{
    uint64_t rank, seen = 0;

    if (h->total == 0) {
        return 0;
    }
    rank = (uint64_t)(pct / 100.0 * (double)h->total + 0.999999);
    rank = rank == 0 ? 1 : rank > h->total ? h->total : rank;
    for (uint32_t b = 0; b < RMQ_HIST_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) {
            uint64_t top = bucket_top(b);

            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}
