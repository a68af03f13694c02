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
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "store/options.h"
#include "store/store.h"

#define MAX_RUNS 16
#define MAX_PRODUCERS 64
#define MAX_INFLIGHT (256 * MAX_PRODUCERS)    /* batch 256 from every producer */

static char base_dir[256];
static char run_dir[300];
static struct rmq_loop loop;
static struct rmq_disk *disk;
static struct rmq_store *st;
static bool st_closed;
static uint8_t body[4096];
static uint8_t gc_body[64 * 1139];
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

static int round_batch;             /* append_run: appends per producer round */
static int write_mode;              /* RMQ_DISK_WRITE_MMAP or _WRITEV, for store_up */
static uint32_t flush_pages;        /* flushCommitLogLeastPages of the page-cache runs */
static int round_left[MAX_PRODUCERS];   /* appends of a producer's round not yet acked */

static void
round_issue(int p)
{
    int k = 0;

    round_left[p] = (int)RMQ_MIN((long)round_batch, to_send);
    while (k < round_left[p]) {
        append_one(p * round_batch + k++, cur_body_len);
    }
}

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
    } else if (round_batch > 0 && --round_left[i / round_batch] == 0 && to_send > 0) {
        round_issue(i / round_batch);
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
    if (lat != NULL) {
        t_sent[i] = rmq_clock_mono_ns();    /* a clock read is ~5 % of a batched append */
    }
    to_send--;
    rmq_store_append(st, m);
}

static int
store_up(int flush_type, uint64_t seg_size)
{
    struct rmq_store_config cfg = {
        .seg_size = seg_size, .flush_type = flush_type, .root_dir = run_dir,
        .flush_least_pages = flush_pages,
    };
    uint64_t end;

    rmq_bench_sh("rm -rf %s", run_dir);
    rmq_bench_sh("mkdir -p %s", run_dir);
    if (rmq_loop_init(&loop, NULL) < 0 || (disk = rmq_disk_uring_create(&loop, run_dir)) == NULL) {
        return -1;
    }
    rmq_disk_uring_set_write_mode(disk, rmq_store_write_mode(write_mode, flush_type));
    if (rmq_store_open(&st, &loop, disk, &cfg) < 0) {
        return -1;
    }
    /* let the background preparation of the next segment finish before timing */
    end = rmq_clock_mono_ns() + 60000000000ull;
    while (rmq_store_stats(st)->segments_prepared == 0 && rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(&loop, 10000000);
    }
    done_count = 0;
    errors = 0;
    st_closed = false;
    return 0;
}

static void
store_down(void)
{
    if (!st_closed && rmq_store_close_wait(st, 600000000000ull) < 0) {
        fprintf(stderr, "rmq-bench store: closing the store timed out\n");
    }
    rmq_store_destroy(st);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
    rmq_bench_sh("rm -rf %s", run_dir);
}

/*
 * ASYNC_FLUSH appends by `producers`, each sending rounds of `batch` records and
 * starting its next round when the last one is acknowledged. Returns MB/s of
 * records; with `durable` the clock runs until the close has flushed them all.
 */
struct append_figures {
    double recs_per_s;
    double recs_per_write;
    double cpu_us_per_rec;          /* user + system of the process, io-wq workers included */
};

static double
cpu_secs(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*
 * Profiling aid: with PERF_CTL_FIFO set to a perf control fifo (perf record -D -1
 * --control fifo:PATH), perf samples only the timed part of each append run, not the
 * fio runs and segment preparation around it. bench/README.md shows the command.
 */
static void
perf_ctl(const char *cmd)
{
    const char *p = getenv("PERF_CTL_FIFO");
    int fd;

    if (p != NULL && (fd = open(p, O_WRONLY)) >= 0) {
        if (write(fd, cmd, strlen(cmd)) < 0) {
            perror("perf ctl");
        }
        close(fd);
    }
}

static double
append_run(uint32_t body_len, int batch, int producers, uint64_t bytes, bool durable,
           uint64_t seg_size, struct append_figures *fig)
{
    uint32_t rec = rmq_record_size(body_len, 10, 11);
    long n = (long)(bytes / rec);
    uint64_t t0;
    double secs;
    double cpu0;

    if (store_up(RMQ_FLUSH_ASYNC, seg_size) < 0) {
        return 0;
    }
    refill = false;
    lat = NULL;
    to_send = n;
    cur_body_len = body_len;
    round_batch = batch;
    cpu0 = cpu_secs();
    perf_ctl("enable\n");
    t0 = rmq_clock_mono_ns();
    for (int p = 0; p < producers && to_send > 0; p++) {
        round_issue(p);
    }
    while (done_count < n && errors == 0) {
        rmq_loop_run_once(&loop, 10000000);
    }
    if (durable) {
        errors += rmq_store_close_wait(st, 600000000000ull) < 0;
        st_closed = true;
    }
    secs = (double)(rmq_clock_mono_ns() - t0) / 1e9;
    perf_ctl("disable\n");
    fig->cpu_us_per_rec = (cpu_secs() - cpu0) * 1e6 / (double)n;
    fig->recs_per_write = (double)n / (double)RMQ_MAX(rmq_store_stats(st)->writes, 1u);
    round_batch = 0;
    store_down();
    fig->recs_per_s = (double)n / secs;
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

/* fio sequential buffered write of the same volume, same directory, `bs` bytes per
 * write: MB/s; with `durable` the final fsync is inside the time. */
static double
fio_run(uint64_t bytes, bool durable, uint32_t bs)
{
    char cmd[1024];
    char line[4096];
    FILE *p;
    double bw = 0;

    rmq_bench_sh("mkdir -p %s", run_dir);
    snprintf(cmd, sizeof(cmd),
             "fio --name=seq --directory=%s --rw=write --bs=%u --size=%llum --ioengine=psync "
             "--end_fsync=%d --output-format=json 2>/dev/null", run_dir, bs,
             (unsigned long long)(bytes >> 20), durable);
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

/*
 * Baseline: pwrite `recs` records of 1 KiB as one write + fdatasync, n times, on a
 * file in the same directory. With recs = 1 it is the single appender's baseline;
 * with recs = 64 its cycle bounds group commit of 64 appenders (each waits for its
 * own fdatasync, so records/s <= 64 / cycle).
 */
static void
fsync_loop_run(long n, int recs, uint64_t *out)
{
    char path[400];
    int fd;

    rmq_bench_sh("mkdir -p %s", run_dir);
    snprintf(path, sizeof(path), "%s/baseline", run_dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)n * recs * 1139) < 0) {
        return;
    }
    for (long i = 0; i < n; i++) {
        uint64_t t0 = rmq_clock_mono_ns();

        if (pwrite(fd, gc_body, (size_t)recs * 1139, (off_t)(i * recs * 1139)) < 0 ||
            fdatasync(fd) < 0) {
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

static const char *const mode_names[] = {"mmap", "writev", "auto"};  /* RMQ_DISK_WRITE_* */

int
rmq_bench_store(int argc, char **argv)
{
    long runs = RMQ_MIN(rmq_bench_arg_long(argc, argv, "runs", 3), MAX_RUNS);
    uint64_t mib = (uint64_t)rmq_bench_arg_long(argc, argv, "mib", 256);
    uint64_t durable_mib = (uint64_t)rmq_bench_arg_long(argc, argv, "durable-mib", 4096);
    uint64_t seg = (uint64_t)rmq_bench_arg_long(argc, argv, "seg-mib", 1024) << 20;
    long nlat = rmq_bench_arg_long(argc, argv, "sync-samples", 2000);
    bool do_append = rmq_bench_arg_long(argc, argv, "append", 1) != 0;
    /* one configuration only, for profiling: --size=1024 --batch=256 --mode=0 */
    long only_size = rmq_bench_arg_long(argc, argv, "size", 0);
    long only_batch = rmq_bench_arg_long(argc, argv, "batch", 0);
    long only_mode = rmq_bench_arg_long(argc, argv, "mode", -1);
    bool do_sync = rmq_bench_arg_long(argc, argv, "sync", 1) != 0;
    /* page-cache runs: flushCommitLogLeastPages (0: the default, 4); fio's baseline
     * flushes nothing while it writes, --flush-pages=1000000 does the same */
    uint32_t pc_flush_pages = (uint32_t)rmq_bench_arg_long(argc, argv, "flush-pages", 0);
    static const uint32_t sizes[] = {128, 1024};
    static const int batches[] = {1, 16, 256};
    int depths[] = {1, (int)RMQ_MIN(rmq_bench_arg_long(argc, argv, "producers", 4), MAX_PRODUCERS)};
    enum { GC_CYCLES = 300, MODES = 3 };
    /* [mode][size][batch][depth][run] */
    static double mbs[MODES][2][3][2][MAX_RUNS], rps[MODES][2][3][2][MAX_RUNS];
    static double ratio[MODES][2][3][2][MAX_RUNS];
    static double rpw[MODES][2][3][MAX_RUNS], cpu[MODES][2][3][MAX_RUNS];
    static double dur_mbs[MODES][2][MAX_RUNS], dur_ratio[MODES][2][MAX_RUNS];
    static double s50[MODES][MAX_RUNS], s99[MODES][MAX_RUNS], s999[MODES][MAX_RUNS];
    static double gc[MODES][MAX_RUNS], gc_ratio[MODES][MAX_RUNS], gc_per_sync[MODES][MAX_RUNS];
    double fio[MAX_RUNS], fio_dur[MAX_RUNS];
    static double fio_bs[2][3][MAX_RUNS];   /* bs = one batch's bytes */
    double b50[MAX_RUNS], b99[MAX_RUNS], b999[MAX_RUNS];
    double gc_ceiling[MAX_RUNS];
    double mm[2][MAX_RUNS];
    uint64_t *samples = malloc((size_t)RMQ_MAX(nlat, (long)GC_CYCLES) * sizeof(*samples));
    struct rmq_bench_pct pct;
    struct append_figures fig;

    snprintf(base_dir, sizeof(base_dir), "%s",
             argc > 1 && strncmp(argv[argc - 1], "--dir=", 6) == 0 ? argv[argc - 1] + 6
                                                                    : "./bench-store-data");
    snprintf(run_dir, sizeof(run_dir), "%s/run", base_dir);
    memset(body, 'b', sizeof(body));
    memset(gc_body, 'b', sizeof(gc_body));
    for (long r = 0; r < runs; r++) {
        uint64_t syncs = 0;

        /* the first fio run of a process pays for memory the VM host has not backed
         * yet (up to 10x slower here); the baseline is the warm second run */
        (void)fio_run(mib << 20, false, 1u << 20);
        fio[r] = fio_run(mib << 20, false, 1u << 20);
        flush_pages = pc_flush_pages;
        /* each configuration runs in both write modes back to back: drift hits both */
        for (int si = 0; si < 2 && do_append; si++) {
            for (int bi = 0; bi < 3; bi++) {
                if ((only_size && only_size != sizes[si]) ||
                    (only_batch && only_batch != batches[bi])) {
                    continue;
                }
                /* one producer's write is one batch: fio writing that many bytes per
                 * call is the like-for-like baseline (same syscall count as writev) */
                fio_bs[si][bi][r] = fio_run(mib << 20, false,
                                            rmq_record_size(sizes[si], 10, 11) *
                                            (uint32_t)batches[bi]);
                for (int di = 0; di < 2; di++) {
                    for (int mo = 0; mo < MODES; mo++) {
                        if (only_mode >= 0 && only_mode != mo) {
                            continue;
                        }
                        write_mode = mo;
                        mbs[mo][si][bi][di][r] = append_run(sizes[si], batches[bi], depths[di],
                                                            mib << 20, false, seg, &fig);
                        rps[mo][si][bi][di][r] = fig.recs_per_s;
                        rpw[mo][si][bi][r] = fig.recs_per_write;   /* the last depth's */
                        cpu[mo][si][bi][r] = fig.cpu_us_per_rec;
                        ratio[mo][si][bi][di][r] = fio[r] > 0 ? mbs[mo][si][bi][di][r] / fio[r] : 0;
                    }
                }
            }
        }
        flush_pages = 0;
        if (durable_mib > 0) {
            fio_dur[r] = fio_run(durable_mib << 20, true, 1u << 20);
            for (int si = 0; si < 2; si++) {
                for (int mo = 0; mo < MODES; mo++) {
                    write_mode = mo;
                    dur_mbs[mo][si][r] = append_run(sizes[si], 256, depths[1], durable_mib << 20,
                                                    true, seg, &fig);
                    dur_ratio[mo][si][r] = fio_dur[r] > 0 ? dur_mbs[mo][si][r] / fio_dur[r] : 0;
                }
            }
        }
        for (int si = 0; si < 2; si++) {
            mm[si][r] = mmap_run(sizes[si], mib << 20);
        }
        for (int mo = 0; mo < MODES && do_sync; mo++) {
            write_mode = mo;
            sync_latency_run(nlat, seg, samples);
            rmq_bench_percentiles(samples, (size_t)nlat, &pct);
            s50[mo][r] = pct.p50_us;
            s99[mo][r] = pct.p99_us;
            s999[mo][r] = pct.p999_us;
        }
        if (!do_sync) {
            continue;
        }
        fsync_loop_run(nlat, 1, samples);
        rmq_bench_percentiles(samples, (size_t)nlat, &pct);
        b50[r] = pct.p50_us;
        b99[r] = pct.p99_us;
        b999[r] = pct.p999_us;
        fsync_loop_run(GC_CYCLES, 64, samples);
        rmq_bench_percentiles(samples, GC_CYCLES, &pct);
        gc_ceiling[r] = pct.p50_us > 0 ? 64 / (pct.p50_us / 1e6) : 0;
        for (int mo = 0; mo < MODES; mo++) {
            write_mode = mo;
            gc[mo][r] = group_commit_run(3.0, seg, &syncs);
            gc_per_sync[mo][r] = syncs ? gc[mo][r] * 3.0 / (double)syncs : 0;
            gc_ratio[mo][r] = gc_ceiling[r] > 0 ? gc[mo][r] / gc_ceiling[r] : 0;
        }
    }
    rmq_bench_sh("rm -rf %s", base_dir);

#define MED(a) rmq_bench_median((a), (size_t)runs)
    printf("store: %llu MiB per append run, %llu MiB segments, median of %ld runs, dir %s\n",
           (unsigned long long)mib, (unsigned long long)(seg >> 20), runs, base_dir);
    printf("write modes (commitLogWriteMode): mmap = copied into the segment's mapping on the "
           "loop thread; writev = io_uring writev from the callers' buffers (a kernel worker "
           "copies); auto = mmap while no writev is in flight, except writes of 128 KiB or "
           "more with more right behind\n");
    printf("in page cache: fio sequential buffered write (bs=1m, %llu MiB): %.0f MB/s\n",
           (unsigned long long)mib, MED(fio));
    printf("%-6s %5s | %-32s | %-45s | %s\n", "", "", "1 producer: records/s",
           "4 producers: MB/s (vs fio)", "cpu us/record, 4 producers");
    printf("%-6s %5s |", "record", "batch");
    for (int k = 0; k < 2; k++) {
        for (int mo = 0; mo < MODES; mo++) {
            printf(" %*s", k == 0 ? 10 : 14, mode_names[mo]);
        }
        printf(" |");
    }
    for (int mo = 0; mo < MODES; mo++) {
        printf(" %6s", mode_names[mo]);
    }
    printf("\n");
    for (int si = 0; si < 2 && do_append; si++) {
        for (int bi = 0; bi < 3; bi++) {
            if (fio_bs[si][bi][0] == 0) {
                continue;               /* left out by --size or --batch */
            }
            printf("%-6u %5d |", sizes[si] + 0, batches[bi]);
            for (int mo = 0; mo < MODES; mo++) {
                printf(" %10.0f", MED(rps[mo][si][bi][0]));
            }
            printf(" |");
            for (int mo = 0; mo < MODES; mo++) {
                printf(" %7.0f (%4.2f)", MED(mbs[mo][si][bi][1]), MED(ratio[mo][si][bi][1]));
            }
            printf(" |");
            for (int mo = 0; mo < MODES; mo++) {
                printf(" %6.2f", MED(cpu[mo][si][bi]));
            }
            printf("   (%.0f rec/write)\n", MED(rpw[1][si][bi]));
        }
    }
    printf("rec/write: records per store write (writev, 4 producers); cpu us: process CPU per "
           "record, the kernel's io-wq workers included\n");
    printf("1 producer against fio writing one batch's bytes per call (--bs = record x batch):"
           " MB/s (vs that fio)\n");
    for (int si = 0; si < 2 && do_append; si++) {
        for (int bi = 0; bi < 3; bi++) {
            uint32_t rec = rmq_record_size(sizes[si], 10, 11);

            if (fio_bs[si][bi][0] == 0) {
                continue;
            }
            printf("%-6u %5d | fio --bs=%-6u %5.0f |", sizes[si] + 0, batches[bi],
                   rec * (uint32_t)batches[bi], MED(fio_bs[si][bi]));
            for (int mo = 0; mo < MODES; mo++) {
                double v[MAX_RUNS];

                for (long r = 0; r < runs; r++) {
                    v[r] = fio_bs[si][bi][r] > 0
                           ? rps[mo][si][bi][0][r] * rec / 1e6 / fio_bs[si][bi][r] : 0;
                }
                printf(" %s %5.0f (%4.2f)", mode_names[mo], MED(rps[mo][si][bi][0]) * rec / 1e6,
                       MED(v));
            }
            printf("\n");
        }
    }
    if (durable_mib > 0) {
        printf("to disk, %llu MiB, clock stops when all is flushed: fio (end_fsync=1) %.0f MB/s\n",
               (unsigned long long)durable_mib, MED(fio_dur));
        for (int si = 0; si < 2; si++) {
            printf("  %4u B records, batch 256, %d producers:", sizes[si], depths[1]);
            for (int mo = 0; mo < MODES; mo++) {
                printf(" %s %.0f MB/s (%.2f of fio)%s", mode_names[mo], MED(dur_mbs[mo][si]),
                       MED(dur_ratio[mo][si]), mo + 1 < MODES ? "," : "\n");
            }
        }
    }
    printf("bare memcpy into an mmap'd segment (per-record work, no store): 128 B %.0f MB/s, "
           "1 KiB %.0f MB/s\n", MED(mm[0]), MED(mm[1]));
    if (!do_sync) {
        free(samples);
        return errors ? 1 : 0;
    }
    for (int mo = 0; mo < MODES; mo++) {
        printf("SYNC_FLUSH, 1 KiB, one appender, %-6s p50 %7.1f us  p99 %7.1f us  p999 %7.1f us\n",
               mode_names[mo], MED(s50[mo]), MED(s99[mo]), MED(s999[mo]));
    }
    printf("write+fdatasync loop (baseline)        p50 %7.1f us  p99 %7.1f us  p999 %7.1f us\n",
           MED(b50), MED(b99), MED(b999));
    printf("SYNC_FLUSH group commit, 64 appenders, 1 KiB; ceiling 64 / p50(write of 64 records + "
           "fdatasync) = %.0f records/s\n", MED(gc_ceiling));
    for (int mo = 0; mo < MODES; mo++) {
        printf("  %-6s %8.0f records/s (%.1f records per fdatasync), %.2f of the ceiling\n",
               mode_names[mo], MED(gc[mo]), MED(gc_per_sync[mo]), MED(gc_ratio[mo]));
    }
#undef MED
    free(samples);
    return errors ? 1 : 0;
}
