/*
 * Recovery time after a crash: a log of --log-mib (1 KiB records, 8 queues), a
 * checkpoint, --tail-mib more written after it, then the store is dropped without
 * closing (as kill -9 leaves it: abort file present, data in the page cache) and
 * opened again. Baseline in the same run: the same store opened once more with the
 * checkpoint file removed, which scans and re-dispatches the whole log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/util.h"
#include "store/store.h"

#define INFLIGHT 256
#define MAX_RUNS 16

static struct rmq_loop loop;
static struct rmq_disk *disk;
static struct rmq_store *st;
static struct rmq_store_msg msgs[INFLIGHT];
static uint8_t body[1024];
static long to_send;
static long done_count;
static int errors;
static char dir[300];

static void append_one(struct rmq_store_msg *m);

static void
msg_done(struct rmq_store_msg *m, int status)
{
    errors += status != 0;
    done_count++;
    if (to_send > 0) {
        append_one(m);              /* keep INFLIGHT appends going */
    }
}

static void
append_one(struct rmq_store_msg *m)
{
    int i = (int)(m - msgs);

    memset(m, 0, sizeof(*m));
    m->rec.topic = "RecoveryTopic";
    m->rec.topic_len = 13;
    m->rec.queue_id = i % 8;
    m->rec.body = body;
    m->rec.body_len = sizeof(body);
    m->rec.props = "TAGS\001r\002";
    m->rec.props_len = 7;
    m->done = msg_done;
    to_send--;
    rmq_store_append(st, m);
}

static const struct rmq_store_config *
config(void)
{
    static struct rmq_store_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.root_dir = dir;
    cfg.flush_interval_ms = 100;
    cfg.cq_flush_interval_ms = 3600000;        /* checkpoints only when asked */
    return &cfg;
}

static int
open_store(double *ms)
{
    uint64_t t0;

    if (rmq_loop_init(&loop, NULL) < 0 || (disk = rmq_disk_uring_create(&loop, dir)) == NULL) {
        return -1;
    }
    t0 = rmq_clock_mono_ns();
    if (rmq_store_open(&st, &loop, disk, config()) < 0) {
        return -1;
    }
    if (ms != NULL) {
        *ms = (double)(rmq_clock_mono_ns() - t0) / 1e6;
    }
    return 0;
}

/* The crash: no close, no final checkpoint; the abort file stays. */
static void
drop_store(void)
{
    rmq_store_destroy(st);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
}

static int
write_mib(uint64_t mib)
{
    long n = (long)((mib << 20) / (sizeof(body) + 120));
    long want = done_count + n;

    to_send = n;
    for (int i = 0; i < INFLIGHT && to_send > 0; i++) {
        append_one(&msgs[i]);
    }
    while (done_count < want) {
        rmq_loop_run_once(&loop, 10000000);
    }
    return errors == 0 ? 0 : -1;
}

static int
checkpoint_all(void)
{
    uint64_t before = rmq_store_stats(st)->checkpoints;
    uint64_t end = rmq_clock_mono_ns() + 30000000000ull;

    while (rmq_store_flushed_off(st) < rmq_store_written_off(st) && rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(&loop, 10000000);
    }
    rmq_store_checkpoint(st);
    while (rmq_store_stats(st)->checkpoints == before && rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(&loop, 10000000);
    }
    return rmq_store_stats(st)->checkpoints > before ? 0 : -1;
}

int
rmq_bench_recovery(int argc, char **argv)
{
    long runs = RMQ_MIN(rmq_bench_arg_long(argc, argv, "runs", 3), MAX_RUNS);
    uint64_t log_mib = (uint64_t)rmq_bench_arg_long(argc, argv, "log-mib", 4096);
    uint64_t tail_mib = (uint64_t)rmq_bench_arg_long(argc, argv, "tail-mib", 64);
    double cp_ms[MAX_RUNS];
    double full_ms[MAX_RUNS];
    double ratio[MAX_RUNS];
    uint64_t scanned = 0;
    uint64_t rebuilt = 0;
    uint64_t full_scanned = 0;

    snprintf(dir, sizeof(dir), "%s",
             argc > 1 && strncmp(argv[argc - 1], "--dir=", 6) == 0 ? argv[argc - 1] + 6
                                                                    : "./bench-recovery-data");
    memset(body, 'r', sizeof(body));
    for (long r = 0; r < runs; r++) {
        char path[400];

        rmq_bench_sh("rm -rf '%s'", dir);
        done_count = 0;
        if (open_store(NULL) < 0 || write_mib(log_mib - tail_mib) < 0 || checkpoint_all() < 0 ||
            write_mib(tail_mib) < 0) {
            fprintf(stderr, "rmq-bench recovery: building the log failed\n");
            return 1;
        }
        drop_store();
        if (open_store(&cp_ms[r]) < 0) {
            fprintf(stderr, "rmq-bench recovery: reopen failed\n");
            return 1;
        }
        scanned = rmq_store_stats(st)->recovered_bytes;
        rebuilt = rmq_store_stats(st)->cq_entries_rebuilt;
        drop_store();
        snprintf(path, sizeof(path), "%s/checkpoint", dir);
        remove(path);
        if (open_store(&full_ms[r]) < 0) {
            fprintf(stderr, "rmq-bench recovery: reopen without checkpoint failed\n");
            return 1;
        }
        full_scanned = rmq_store_stats(st)->recovered_bytes;
        drop_store();
        ratio[r] = full_ms[r] > 0 ? cp_ms[r] / full_ms[r] : 0;
    }
    rmq_bench_sh("rm -rf '%s'", dir);
    printf("recovery after a crash: %llu MiB log, %llu MiB after the checkpoint, 1 KiB "
           "records, page cache warm, median of %ld runs, dir %s\n",
           (unsigned long long)log_mib, (unsigned long long)tail_mib, runs, dir);
    printf("from the checkpoint:   %8.1f ms  (scanned %llu MiB, %llu queue entries rebuilt)\n",
           rmq_bench_median(cp_ms, (size_t)runs), (unsigned long long)(scanned >> 20),
           (unsigned long long)rebuilt);
    printf("without a checkpoint:  %8.1f ms  (scanned %llu MiB)\n",
           rmq_bench_median(full_ms, (size_t)runs), (unsigned long long)(full_scanned >> 20));
    printf("ratio:                 %8.3f\n", rmq_bench_median(ratio, (size_t)runs));
    return 0;
}
