/*
 * rmq-bench index: the key index alone, in process: --keys entries put (XXH3 of
 * "BenchTopic#key-<i>", as the broker hashes), then --queries lookups of random existing
 * keys, warm, one at a time: puts/s and lookup p50/p99/p999. One file of the default
 * geometry (5,000,000 slots) sized to hold every key, in --dir (removed after).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/clock.h"
#include "index/index.h"

int
rmq_bench_index(int argc, char **argv)
{
    long keys = rmq_bench_arg_long(argc, argv, "keys", 10000000);
    long queries = rmq_bench_arg_long(argc, argv, "queries", 100000);
    const char *dir = "./bench-index-data";
    struct rmq_index_config cfg = {.slot_count = 5000000};
    struct rmq_index *idx;
    struct rmq_index_hit hits[4];
    struct rmq_bench_pct pct;
    uint64_t *samples;
    uint64_t t0, put_ns;
    uint32_t seed = 7;
    long misses = 0;
    char key[32];

    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--dir=", 6) == 0) {
            dir = argv[i] + 6;
        }
    }
    if (keys < 1000 || keys > 100000000 || queries < 100) {
        fprintf(stderr, "rmq-bench index: --keys 1000..100000000, --queries >= 100\n");
        return 2;
    }
    rmq_bench_sh("rm -rf %s", dir);
    cfg.dir = dir;
    cfg.entry_max = (uint32_t)keys + 1;
    if (rmq_index_open(&idx, &cfg) < 0) {
        fprintf(stderr, "rmq-bench index: cannot open an index in %s\n", dir);
        return 1;
    }
    samples = malloc((size_t)queries * sizeof(*samples));
    t0 = rmq_clock_mono_ns();
    for (long i = 0; i < keys; i++) {
        int n = snprintf(key, sizeof(key), "key-%ld", i);

        rmq_index_put(idx, rmq_index_hash("BenchTopic", 10, key, (size_t)n), i * 100, 100, 1000 + i);
    }
    put_ns = rmq_clock_mono_ns() - t0;
    for (long q = 0; q < queries; q++) {
        long i;
        int n;
        uint64_t h;

        seed = seed * 1103515245u + 12345u;
        i = (long)(((uint64_t)seed << 16 ^ (uint64_t)q) % (uint64_t)keys);
        n = snprintf(key, sizeof(key), "key-%ld", i);
        h = rmq_index_hash("BenchTopic", 10, key, (size_t)n);
        t0 = rmq_clock_mono_ns();
        if (rmq_index_query(idx, h, 0, INT64_MAX, hits, 4) != 1 || hits[0].phys != i * 100) {
            misses++;
        }
        samples[q] = rmq_clock_mono_ns() - t0;
    }
    rmq_bench_percentiles(samples, (size_t)queries, &pct);
    printf("rmq-bench index: %ld keys, %ld warm lookups of random keys (in process)\n", keys,
           queries);
    printf("%-36s %12.0f puts/s (%.0f ns each, hashing included)\n", "put", (double)keys /
           ((double)put_ns / 1e9), (double)put_ns / (double)keys);
    printf("%-36s p50 %.2f us  p99 %.2f us  p99.9 %.2f us  (%ld wrong or missing)\n",
           "lookup (hash given)", pct.p50_us, pct.p99_us, pct.p999_us, misses);
    rmq_index_close(idx);
    free(samples);
    rmq_bench_sh("rm -rf %s", dir);
    return misses == 0 ? 0 : 1;
}
