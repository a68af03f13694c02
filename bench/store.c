/*
 * Store benchmark (store issue): commitlog append throughput against fio's
 * sequential buffered write on the same disk, SYNC_FLUSH latency against a plain
 * write+fdatasync loop, and group commit with 64 appenders in flight. Each figure
 * is the median over --runs, with its baseline measured in the same run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "store/store.h"

#define MAX_RUNS 16
#define MAX_INFLIGHT 256

static char base_dir[256];
static char run_dir[300];
static struct rmq_loop loop;
static struct rmq_disk *disk;
static struct rmq_store *st;
static uint8_t body[4096];
static struct rmq_store_msg msgs[MAX_INFLIGHT];
static long done_count;
static int errors;
static uint64_t *lat;
static uint64_t t_sent[MAX_INFLIGHT];
static long lat_n;
static bool refill;
static long to_send;

void
rmq_bench_sh(const char *fmt, const char *arg)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), fmt, arg);
    if (system(cmd) != 0) {
        fprintf(stderr, "rmq-bench: '%s' failed\n", cmd);
    }
}

static void append_one(int i, uint32_t body_len);

static uint32_t cur_body_len;

static int round_batch;             /* append_run: appends per round */
static long round_end;

static void
msg_done(struct rmq_store_msg *m, int status)
{
    int i = (int)(m - msgs);

    if (status != 0) {
        errors++;
    }
    if (lat != NULL) {
        lat[lat_n++] = rmq_clock_mono_ns() - t_sent[i];
    }
    done_count++;
    /* the next work is issued from the callback, as a broker answering would, so it
     * rides the same loop iteration instead of waiting for the next wake-up */
    if (refill && to_send > 0) {
        append_one(i, cur_body_len);
    } else if (round_batch > 0 && done_count == round_end && to_send > 0) {
        int k = 0;

        round_end = done_count + RMQ_MIN((long)round_batch, to_send);
        while (to_send > 0 && k < round_batch) {
            append_one(k++, cur_body_len);
        }
    }
}

static void
append_one(int i, uint32_t body_len)
{
    struct rmq_store_msg *m = &msgs[i];

    memset(m, 0, sizeof(*m));
    m->rec.topic = "BenchTopic";
    m->rec.topic_len = 10;
    m->rec.queue_id = i % 8;
    m->rec.body = body;
    m->rec.body_len = body_len;
    m->rec.props = "TAGS\001bench\002";
    m->rec.props_len = 11;
    m->done = msg_done;
    t_sent[i] = rmq_clock_mono_ns();
    to_send--;
    rmq_store_append(st, m);
}

static int
store_up(int flush_type, uint64_t seg_size)
{
    struct rmq_store_config cfg = {
        .seg_size = seg_size, .flush_type = flush_type, .root_dir = run_dir,
    };
    uint64_t end;

    rmq_bench_sh("rm -rf %s", run_dir);
    rmq_bench_sh("mkdir -p %s", run_dir);
    if (rmq_loop_init(&loop, NULL) < 0 || (disk = rmq_disk_uring_create(&loop, run_dir)) == NULL ||
        rmq_store_open(&st, &loop, disk, &cfg) < 0) {
        return -1;
    }
    /* let the background preparation of the next segment finish before timing */
    end = rmq_clock_mono_ns() + 60000000000ull;
    while (rmq_store_stats(st)->segments_prepared == 0 && rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(&loop, 10000000);
    }
    done_count = 0;
    errors = 0;
    return 0;
}

static void
store_down(void)
{
    if (rmq_store_close_wait(st, 600000000000ull) < 0) {
        fprintf(stderr, "rmq-bench store: closing the store timed out\n");
    }
    rmq_store_destroy(st);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
    rmq_bench_sh("rm -rf %s", run_dir);
}

/* ASYNC_FLUSH appends in rounds of `batch`; returns MB/s of records written. */
static double
append_run(uint32_t body_len, int batch, uint64_t bytes, uint64_t seg_size, double *recs_per_s)
{
    uint32_t rec = rmq_record_size(body_len, 10, 11);
    long n = (long)(bytes / rec);
    uint64_t t0;
    double secs;

    if (store_up(RMQ_FLUSH_ASYNC, seg_size) < 0) {
        return 0;
    }
    refill = false;
    lat = NULL;
    to_send = n;
    cur_body_len = body_len;
    round_batch = batch;
    round_end = RMQ_MIN((long)batch, n);
    t0 = rmq_clock_mono_ns();
    for (int k = 0; k < batch && to_send > 0; k++) {
        append_one(k, body_len);
    }
    while (done_count < n && errors == 0) {
        rmq_loop_run_once(&loop, 10000000);
    }
    secs = (double)(rmq_clock_mono_ns() - t0) / 1e9;
    round_batch = 0;
    store_down();
    *recs_per_s = (double)n / secs;
    return (double)n * rec / secs / 1e6;
}

/*
 * The alternative write path (DESIGN.md §4.2): records copied into an mmap'd,
 * pre-written segment, doing the same per-record work (seal with body CRC, head and
 * tail encoding). MB/s of records.
 */
static double
mmap_run(uint32_t body_len, uint64_t bytes)
{
    struct rmq_record r;
    uint32_t rec = rmq_record_size(body_len, 10, 11);
    uint64_t size = (bytes / rec + 1) * rec;
    char path[400];
    uint8_t *map;
    uint8_t *zeros;
    uint64_t t0;
    double secs;
    int fd;

    rmq_bench_sh("mkdir -p %s", run_dir);
    snprintf(path, sizeof(path), "%s/mmap-seg", run_dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    zeros = calloc(1, 1 << 20);
    if (fd < 0 || zeros == NULL || fallocate(fd, 0, 0, (off_t)size) < 0) {
        free(zeros);
        return 0;
    }
    for (uint64_t off = 0; off < size; off += 1 << 20) {    /* pre-written, like ours */
        if (pwrite(fd, zeros, (size_t)RMQ_MIN((uint64_t)1 << 20, size - off), (off_t)off) < 0) {
            break;
        }
    }
    free(zeros);
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return 0;
    }
    memset(&r, 0, sizeof(r));
    r.topic = "BenchTopic";
    r.topic_len = 10;
    r.props = "TAGS\001bench\002";
    r.props_len = 11;
    r.body = body;
    r.body_len = body_len;
    t0 = rmq_clock_mono_ns();
    for (uint64_t off = 0; off + rec <= bytes; off += rec) {
        r.phys_off = (int64_t)off;
        rmq_record_seal(&r);
        rmq_record_encode(&r, map + off);
    }
    secs = (double)(rmq_clock_mono_ns() - t0) / 1e9;
    munmap(map, size);
    close(fd);
    rmq_bench_sh("rm -rf %s", run_dir);
    return (double)(bytes / rec) * rec / secs / 1e6;
}

/* fio sequential buffered write of the same volume, same directory: MB/s. */
static double
fio_run(uint64_t bytes)
{
    char cmd[1024];
    char line[4096];
    FILE *p;
    double bw = 0;

    rmq_bench_sh("mkdir -p %s", run_dir);
    snprintf(cmd, sizeof(cmd),
             "fio --name=seq --directory=%s --rw=write --bs=1m --size=%llum --ioengine=psync "
             "--end_fsync=0 --output-format=json 2>/dev/null", run_dir,
             (unsigned long long)(bytes >> 20));
    p = popen(cmd, "r");
    if (p == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), p) != NULL) {
        char *k = strstr(line, "\"bw_bytes\"");

        if (k != NULL && bw == 0) {
            bw = strtod(strchr(k, ':') + 1, NULL) / 1e6;
        }
    }
    pclose(p);
    rmq_bench_sh("rm -rf %s", run_dir);
    return bw;
}

/* SYNC_FLUSH, one append in flight: latency samples (ns) into out. */
static void
sync_latency_run(long n, uint64_t seg_size, uint64_t *out)
{
    if (store_up(RMQ_FLUSH_SYNC, seg_size) < 0) {
        return;
    }
    lat = out;
    lat_n = 0;
    refill = true;
    cur_body_len = 1024;
    to_send = n;
    append_one(0, 1024);
    while (done_count < n) {
        rmq_loop_run_once(&loop, 10000000);
    }
    lat = NULL;
    store_down();
}

/* Baseline: pwrite 1 KiB + fdatasync, n times, on a file in the same directory. */
static void
fsync_loop_run(long n, uint64_t *out)
{
    char path[400];
    int fd;

    rmq_bench_sh("mkdir -p %s", run_dir);
    snprintf(path, sizeof(path), "%s/baseline", run_dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 64 << 20) < 0) {
        return;
    }
    for (long i = 0; i < n; i++) {
        uint64_t t0 = rmq_clock_mono_ns();

        if (pwrite(fd, body, 1024 + 115, (off_t)(i * 1139)) < 0 || fdatasync(fd) < 0) {
            break;
        }
        out[i] = rmq_clock_mono_ns() - t0;
    }
    close(fd);
    rmq_bench_sh("rm -rf %s", run_dir);
}

/* SYNC_FLUSH with 64 appenders re-appending on every ack: records/s. */
static double
group_commit_run(double secs, uint64_t seg_size, uint64_t *syncs)
{
    uint64_t t0;
    uint64_t end;
    long n;

    if (store_up(RMQ_FLUSH_SYNC, seg_size) < 0) {
        return 0;
    }
    refill = true;
    cur_body_len = 1024;
    to_send = 1L << 40;
    t0 = rmq_clock_mono_ns();
    end = t0 + (uint64_t)(secs * 1e9);
    for (int i = 0; i < 64; i++) {
        append_one(i, 1024);
    }
    while (rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(&loop, 10000000);
    }
    n = done_count;
    *syncs = rmq_store_stats(st)->syncs;
    refill = false;
    while (done_count < n + 64 && errors == 0) {
        rmq_loop_run_once(&loop, 10000000);
        if (done_count >= n && rmq_store_written_off(st) == rmq_store_flushed_off(st)) {
            break;
        }
    }
    store_down();
    return (double)n / ((double)(end - t0) / 1e9);
}

int
rmq_bench_store(int argc, char **argv)
{
    long runs = RMQ_MIN(rmq_bench_arg_long(argc, argv, "runs", 3), MAX_RUNS);
    uint64_t mib = (uint64_t)rmq_bench_arg_long(argc, argv, "mib", 256);
    uint64_t seg = (uint64_t)rmq_bench_arg_long(argc, argv, "seg-mib", 1024) << 20;
    long nlat = rmq_bench_arg_long(argc, argv, "sync-samples", 2000);
    static const uint32_t sizes[] = {128, 1024};
    static const int batches[] = {1, 16, 256};
    double mbs[2][3][MAX_RUNS];
    double rps[2][3][MAX_RUNS];
    double fio[MAX_RUNS];
    double ratio[2][3][MAX_RUNS];
    double s50[MAX_RUNS], s99[MAX_RUNS], s999[MAX_RUNS];
    double b50[MAX_RUNS], b99[MAX_RUNS], b999[MAX_RUNS];
    double gc[MAX_RUNS];
    double gc_per_sync[MAX_RUNS];
    double mm[2][MAX_RUNS];
    uint64_t *samples = malloc((size_t)nlat * sizeof(*samples));
    struct rmq_bench_pct pct;

    snprintf(base_dir, sizeof(base_dir), "%s",
             argc > 1 && strncmp(argv[argc - 1], "--dir=", 6) == 0 ? argv[argc - 1] + 6
                                                                    : "./bench-store-data");
    snprintf(run_dir, sizeof(run_dir), "%s/run", base_dir);
    memset(body, 'b', sizeof(body));
    for (long r = 0; r < runs; r++) {
        uint64_t syncs = 0;

        fio[r] = fio_run(mib << 20);
        for (int si = 0; si < 2; si++) {
            for (int bi = 0; bi < 3; bi++) {
                mbs[si][bi][r] = append_run(sizes[si], batches[bi], mib << 20, seg,
                                            &rps[si][bi][r]);
                ratio[si][bi][r] = fio[r] > 0 ? mbs[si][bi][r] / fio[r] : 0;
            }
        }
        for (int si = 0; si < 2; si++) {
            mm[si][r] = mmap_run(sizes[si], mib << 20);
        }
        sync_latency_run(nlat, seg, samples);
        rmq_bench_percentiles(samples, (size_t)nlat, &pct);
        s50[r] = pct.p50_us;
        s99[r] = pct.p99_us;
        s999[r] = pct.p999_us;
        fsync_loop_run(nlat, samples);
        rmq_bench_percentiles(samples, (size_t)nlat, &pct);
        b50[r] = pct.p50_us;
        b99[r] = pct.p99_us;
        b999[r] = pct.p999_us;
        gc[r] = group_commit_run(3.0, seg, &syncs);
        gc_per_sync[r] = syncs ? gc[r] * 3.0 / (double)syncs : 0;
    }
    rmq_bench_sh("rm -rf %s", base_dir);

    printf("store: %llu MiB per append run, %llu MiB segments, median of %ld runs, dir %s\n",
           (unsigned long long)mib, (unsigned long long)(seg >> 20), runs, base_dir);
    printf("fio sequential buffered write (bs=1m):  %.0f MB/s\n",
           rmq_bench_median(fio, (size_t)runs));
    printf("%-10s %6s %12s %10s %10s\n", "record", "batch", "records/s", "MB/s", "vs fio");
    for (int si = 0; si < 2; si++) {
        for (int bi = 0; bi < 3; bi++) {
            printf("%-10u %6d %12.0f %10.0f %10.2f\n", sizes[si] + 0, batches[bi],
                   rmq_bench_median(rps[si][bi], (size_t)runs),
                   rmq_bench_median(mbs[si][bi], (size_t)runs),
                   rmq_bench_median(ratio[si][bi], (size_t)runs));
        }
    }
    printf("memcpy into an mmap'd segment (same per-record work): 128 B %.0f MB/s, "
           "1 KiB %.0f MB/s\n", rmq_bench_median(mm[0], (size_t)runs),
           rmq_bench_median(mm[1], (size_t)runs));
    printf("SYNC_FLUSH, 1 KiB, one appender      p50 %7.1f us  p99 %7.1f us  p999 %7.1f us\n",
           rmq_bench_median(s50, (size_t)runs), rmq_bench_median(s99, (size_t)runs),
           rmq_bench_median(s999, (size_t)runs));
    printf("write+fdatasync loop (baseline)      p50 %7.1f us  p99 %7.1f us  p999 %7.1f us\n",
           rmq_bench_median(b50, (size_t)runs), rmq_bench_median(b99, (size_t)runs),
           rmq_bench_median(b999, (size_t)runs));
    printf("SYNC_FLUSH group commit, 64 appenders: %.0f records/s (%.1f records per fdatasync)\n",
           rmq_bench_median(gc, (size_t)runs), rmq_bench_median(gc_per_sync, (size_t)runs));
    free(samples);
    return errors ? 1 : 0;
}
