/* Percentiles and medians for rmq-bench. */
#include "bench/bench.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double
pct(const uint64_t *s, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);

    return (double)s[i < n ? i : n - 1] / 1000.0;
}

void
rmq_bench_percentiles(uint64_t *samples, size_t n, struct rmq_bench_pct *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0) {
        return;
    }
    qsort(samples, n, sizeof(*samples), rmq_cmp_u64);
    out->p50_us = pct(samples, n, 0.50);
    out->p99_us = pct(samples, n, 0.99);
    out->p999_us = pct(samples, n, 0.999);
}

double
rmq_bench_median(double *v, size_t n)
{
    if (n == 0) {
        return 0;
    }
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

long
rmq_bench_arg_long(int argc, char **argv, const char *key, long def)
{
    size_t kl = strlen(key);

    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, key, kl) == 0 &&
            argv[i][2 + kl] == '=') {
            return strtol(argv[i] + 3 + kl, NULL, 10);
        }
    }
    return def;
}
