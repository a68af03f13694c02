/*
 * Broker benchmark (issue 5): the real rmq-broker daemon (started from next to this
 * binary, standalone, throwaway data dir under --dir) measured from a client on the
 * same machine, per run and per flushDiskType:
 *   sync send   one 1 KiB SEND_MESSAGE_V2 at a time over a blocking socket:
 *               p50/p99/p999, beside the ping-pong baseline (same request bytes to a
 *               blocking server answering a 16-byte frame) measured in the same run
 *   pipelined   msgs/s with --inflight sends in flight on one connection
 *   pull        MB/s reading everything back, one pull per queue in flight (by copy from
 *               the mapped segment, and by splice on a broker holding the same messages)
 *   pending     the pipelined ASYNC sends again with --delayed messages waiting at the
 *               longest delay level (2 h), then again with as many more waiting in the
 *               timer log (a day ahead): do waiting messages slow sends?
 *   restart     kill -9 of the splice broker once it holds the messages, then ms until
 *               it serves again (store recovery, and the walk for delivered scheduled
 *               messages over a log with no delayOffset.json yet: the whole log, its
 *               worst case); the splice pull then reads what survived
 * and the broker's own io_uring_enter count per message for each phase (from
 * GET_BROKER_RUNTIME_INFO before and after). Medians over --runs.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/ringmq.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/util.h"
#include "net/client.h"
#include "net/json.h"

#define MAX_RUNS 16
#define MAX_INFLIGHT 1024
#define QUEUES 8
#define TOPIC "BenchBrokerTopic"

static struct {
    pid_t pid;
    uint16_t port;
    char dir[PATH_MAX];
    char log[PATH_MAX + 16];
} BR;

static struct {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_client cl;
} CL;

/* ---- the daemon ----------------------------------------------------------------------------- */

/* The number after prefix in the broker's log, or 0 (not there yet). */
static uint16_t
log_int(const char *prefix)
{
    static char buf[65536];
    FILE *f = fopen(BR.log, "r");
    const char *p;
    size_t n;

    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strstr(buf, prefix);
    return p != NULL ? (uint16_t)atoi(p + strlen(prefix)) : 0;
}

/* sync_flush: 0 ASYNC_FLUSH, 1 SYNC_FLUSH, 2 ASYNC_FLUSH with every pull spliced,
 * 3 ASYNC_FLUSH without the key index;
 * wipe: start on an empty directory (else on what the last broker there left) */
static int
broker_launch(const char *base, int sync_flush, bool wipe)
{
    char self[PATH_MAX];
    char bin[PATH_MAX + 16];
    char root[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    uint64_t end;

    if (n <= 0) {
        return -1;
    }
    self[n] = '\0';
    snprintf(bin, sizeof(bin), "%s/rmq-broker", dirname(self));
    snprintf(BR.dir, sizeof(BR.dir), "%s/broker-%d", base, sync_flush);
    if (wipe) {
        rmq_bench_sh("rm -rf %s", BR.dir);
        rmq_bench_sh("mkdir -p %s", BR.dir);
    }
    snprintf(BR.log, sizeof(BR.log), "%s/broker.log", BR.dir);
    unlink(BR.log);                 /* its "ready" line must be this start's */
    snprintf(root, sizeof(root), "--storePathRootDir=%s/data", BR.dir);
    BR.pid = fork();
    if (BR.pid == 0) {
        FILE *f = freopen(BR.log, "w", stderr);

        (void)f;
        execl(bin, bin, "--standalone", "--listenPort=0", "--namesrvListenPort=0",
              "--bindAddress=127.0.0.1", "--brokerIP1=127.0.0.1",
              sync_flush == 1 ? "--flushDiskType=SYNC_FLUSH" : "--flushDiskType=ASYNC_FLUSH",
              sync_flush == 2   ? "--pullSpliceMinBytes=1"
              : sync_flush == 3 ? "--messageIndexEnable=false"
                                : "--pullSpliceMinBytes=0",
              root,
              (char *)NULL);
        _exit(127);
    }
    end = rmq_clock_mono_ns() + 30000000000ull;
    while ((BR.port = log_int("broker: ready port=")) == 0 && rmq_clock_mono_ns() < end) {
        usleep(10000);
    }
    if (BR.port == 0) {
        fprintf(stderr, "rmq-bench: broker did not start; see %s\n", BR.log);
        return -1;
    }
    return 0;
}

static int
broker_start(const char *base, int sync_flush)
{
    return broker_launch(base, sync_flush, true);
}

/* kill -9 and start again on the same directory: ms until it serves, and the figures of
 * its start walk for delivered scheduled messages (records, ms) from its log */
static double
broker_crash_restart(const char *base, int sync_flush, long long *walked, long long *walk_ms)
{
    uint64_t t0;
    FILE *f;
    char line[512];

    kill(BR.pid, SIGKILL);
    waitpid(BR.pid, NULL, 0);
    BR.pid = 0;
    t0 = rmq_clock_mono_ns();
    if (broker_launch(base, sync_flush, false) < 0) {
        return -1;
    }
    *walked = *walk_ms = 0;
    f = fopen(BR.log, "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, "broker: walked ");

        if (p != NULL) {
            const char *in = strstr(p, " in ");

            *walked = atoll(p + strlen("broker: walked "));
            *walk_ms = in != NULL ? atoll(in + 4) : 0;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return (double)(rmq_clock_mono_ns() - t0) / 1e6;
}

static void
broker_stop(void)
{
    int status = 0;

    if (BR.pid > 0) {
        kill(BR.pid, SIGTERM);
        waitpid(BR.pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "rmq-bench: broker exit status %d; see %s\n", status, BR.log);
        }
        BR.pid = 0;
    }
    rmq_bench_sh("rm -rf %s", BR.dir);
}

/* ---- one call at a time on the loop client ------------------------------------------------- */

struct one {
    struct rmq_call call;
    bool done;
    int err;
    int code;
    char *body;
};

static void
one_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct one *o = rmq_container_of(call, struct one, call);

    o->done = true;
    o->err = err;
    if (err == 0) {
        o->code = resp->h.code;
        o->body = strndup((const char *)resp->body, resp->body_len);
    }
}

static int
call_wait(struct rmq_header *h, struct one *o)
{
    memset(o, 0, sizeof(*o));
    o->call.done = one_done;
    if (rmq_client_call(&CL.cl, &o->call, h, NULL, 0, 10000) < 0) {
        return -1;
    }
    while (!o->done) {
        rmq_loop_run_once(&CL.loop, 10 * 1000000u);
    }
    return o->err == 0 ? 0 : -1;
}

/* The broker's io_uring_enter count so far, or 0. */
static uint64_t
broker_enters(void)
{
    struct rmq_header h;
    struct one o;
    uint64_t v = 0;
    cJSON *j;

    rmq_header_init(&h, RMQ_REQ_GET_BROKER_RUNTIME_INFO, RMQ_SER_ROCKETMQ);
    if (call_wait(&h, &o) == 0 && o.code == RMQ_RESP_SUCCESS &&
        (j = rmq_json_parse(o.body, strlen(o.body))) != NULL) {
        const char *s = rmq_json_get_str(cJSON_GetObjectItem(j, "table"), "ioUringEnters");

        v = s != NULL ? strtoull(s, NULL, 10) : 0;
        cJSON_Delete(j);
    } else {
        fprintf(stderr, "rmq-bench: GET_BROKER_RUNTIME_INFO failed err=%d code=%d\n", o.err,
                o.code);
    }
    free(o.body);
    return v;
}

static int
create_topic(void)
{
    struct rmq_header h;
    struct one o;
    int ok;

    rmq_header_init(&h, RMQ_REQ_UPDATE_AND_CREATE_TOPIC, RMQ_SER_ROCKETMQ);
    rmq_header_add(&h, "topic", TOPIC);
    rmq_header_add(&h, "defaultTopic", "TBW102");
    rmq_header_add_i64(&h, "readQueueNums", QUEUES);
    rmq_header_add_i64(&h, "writeQueueNums", QUEUES);
    rmq_header_add_i64(&h, "perm", 6);
    rmq_header_add(&h, "topicFilterType", "SINGLE_TAG");
    rmq_header_add(&h, "order", "false");
    ok = call_wait(&h, &o) == 0 && o.code == RMQ_RESP_SUCCESS;
    free(o.body);
    return ok ? 0 : -1;
}

/* ---- requests --------------------------------------------------------------------------------- */

static uint8_t body[1 << 20];
static const char *send_props = "TAGS\001bench\002";

static void
send_header(struct rmq_header *h, int queue)
{
    rmq_header_init(h, RMQ_REQ_SEND_MESSAGE_V2, RMQ_SER_ROCKETMQ);
    rmq_header_add(h, "a", "PG_BENCH");
    rmq_header_add(h, "b", TOPIC);
    rmq_header_add(h, "c", "TBW102");
    rmq_header_add_i64(h, "d", QUEUES);
    rmq_header_add_i64(h, "e", queue);
    rmq_header_add_i64(h, "f", 0);
    rmq_header_add_i64(h, "g", 1700000000000);
    rmq_header_add_i64(h, "h", 0);
    rmq_header_add(h, "i", send_props);
}

/* One SEND at a time over a blocking socket (port: broker or baseline); RTT samples. */
static int
blocking_sends(uint16_t port, long n, size_t size, uint64_t *samples)
{
    static uint8_t wire[(1 << 20) + 4096];
    static uint8_t rbuf[1 << 16];
    struct rmq_header h;
    ssize_t hl;
    int fd = rmq_bench_tcp_connect(port);

    if (fd < 0) {
        return -1;
    }
    send_header(&h, 0);
    hl = rmq_frame_encode_head(&h, (uint32_t)size, wire, sizeof(wire));
    memcpy(wire + hl, body, size);
    for (long i = 0; i < n; i++) {
        uint64_t t0 = rmq_clock_mono_ns();

        if (rmq_bench_write_full(fd, wire, (size_t)hl + size) < 0 ||
            rmq_bench_read_frame(fd, rbuf, sizeof(rbuf)) < 0) {
            close(fd);
            return -1;
        }
        if (samples != NULL) {
            samples[i] = rmq_clock_mono_ns() - t0;
        }
    }
    close(fd);
    return 0;
}

static struct {
    struct rmq_call calls[MAX_INFLIGHT];
    int free_idx[MAX_INFLIGHT];
    int inflight;
    long done;
    long failed;
    uint64_t bytes;
} P;

static void
pipe_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    P.inflight--;
    P.free_idx[P.inflight] = (int)(call - P.calls);
    P.done++;
    if (err != 0 || resp->h.code != RMQ_RESP_SUCCESS) {
        P.failed++;
    }
}

/* n sends with `inflight` in flight; msgs/s, or -1. */
static double
pipelined_sends(long n, int inflight, size_t size)
{
    uint64_t t0 = rmq_clock_mono_ns();
    long issued = 0;

    memset(&P, 0, sizeof(P));
    for (int i = 0; i < MAX_INFLIGHT; i++) {
        P.free_idx[i] = i;
    }
    while (P.done < n) {
        while (issued < n && P.inflight < inflight) {
            struct rmq_header h;
            struct rmq_call *c = &P.calls[P.free_idx[P.inflight]];

            send_header(&h, (int)(issued % QUEUES));
            c->done = pipe_done;
            if (rmq_client_call(&CL.cl, c, &h, body, (uint32_t)size, 30000) < 0) {
                return -1;
            }
            P.inflight++;
            issued++;
        }
        rmq_loop_run_once(&CL.loop, 10 * 1000000u);
    }
    if (P.failed > 0) {
        fprintf(stderr, "rmq-bench: %ld sends failed\n", P.failed);
        return -1;
    }
    return (double)n * 1e9 / (double)(rmq_clock_mono_ns() - t0);
}

static struct {
    struct rmq_call call[QUEUES];
    int64_t next[QUEUES];
    bool ended[QUEUES];             /* a pull found nothing more */
    bool pending[QUEUES];
    uint64_t bytes;
    long msgs;
    bool failed;
} R;

static void pull_issue(int q);

static void
pull_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    int q = (int)(call - R.call);
    struct rmq_str v;

    R.pending[q] = false;
    if (err != 0 || (resp->h.code != RMQ_RESP_SUCCESS && resp->h.code != RMQ_RESP_PULL_NOT_FOUND)) {
        R.failed = true;
        return;
    }
    if (resp->h.code == RMQ_RESP_PULL_NOT_FOUND) {
        R.ended[q] = true;
    }
    if (rmq_header_get(&resp->h, "nextBeginOffset", &v)) {
        int64_t next = strtoll(v.ptr, NULL, 10);

        R.msgs += next - R.next[q];
        R.next[q] = next;
    }
    R.bytes += resp->body_len;
}

static void
pull_issue(int q)
{
    struct rmq_header h;

    rmq_header_init(&h, RMQ_REQ_PULL_MESSAGE, RMQ_SER_ROCKETMQ);
    rmq_header_add(&h, "consumerGroup", "CG_BENCH");
    rmq_header_add(&h, "topic", TOPIC);
    rmq_header_add_i64(&h, "queueId", q);
    rmq_header_add_i64(&h, "queueOffset", R.next[q]);
    rmq_header_add_i64(&h, "maxMsgNums", 32);
    rmq_header_add_i64(&h, "sysFlag", 4);
    rmq_header_add_i64(&h, "commitOffset", 0);
    rmq_header_add_i64(&h, "suspendTimeoutMillis", 0);
    rmq_header_add(&h, "subscription", "*");
    rmq_header_add_i64(&h, "subVersion", 0);
    R.call[q].done = pull_done;
    if (rmq_client_call(&CL.cl, &R.call[q], &h, NULL, 0, 30000) == 0) {
        R.pending[q] = true;
    } else {
        R.failed = true;
    }
}

/* Read every queue from 0 to its end; MB/s, or -1. */
static double
pull_all(void)
{
    uint64_t t0 = rmq_clock_mono_ns();
    bool busy = true;

    memset(&R, 0, sizeof(R));
    while (busy && !R.failed) {
        busy = false;
        for (int q = 0; q < QUEUES; q++) {
            if (!R.ended[q]) {
                busy = true;
                if (!R.pending[q]) {
                    pull_issue(q);
                }
            }
        }
        rmq_loop_run_once(&CL.loop, 10 * 1000000u);
    }
    while (R.pending[0] || R.pending[1] || R.pending[2] || R.pending[3] || R.pending[4] ||
           R.pending[5] || R.pending[6] || R.pending[7]) {
        rmq_loop_run_once(&CL.loop, 10 * 1000000u);
    }
    return R.failed ? -1 : (double)R.bytes / 1e6 * 1e9 / (double)(rmq_clock_mono_ns() - t0);
}

/* ---- driver ------------------------------------------------------------------------------- */

struct run_figures {
    struct rmq_bench_pct base;
    struct rmq_bench_pct send[2];       /* ASYNC, SYNC */
    double pipe_rate[2];
    double pipe_enters[2];
    double sync_enters[2];
    double pull_mbs;
    double pull_enters;
    double splice_mbs;
    double splice_enters;
    double pending_rate;            /* pipelined ASYNC sends with --delayed messages pending */
    double timer_rate;              /* the same with --delayed timer messages (a day ahead) */
    double restart_ms;              /* kill -9, then until the broker serves again */
    double walked;                  /* records its start walk read */
    double walk_ms;
};

static double
med(struct run_figures *r, int runs, size_t off)
{
    double v[MAX_RUNS];

    for (int i = 0; i < runs; i++) {
        v[i] = *(const double *)(const void *)((const char *)&r[i] + off);
    }
    return rmq_bench_median(v, (size_t)runs);
}

#define MED(field) med(fig, runs, offsetof(struct run_figures, field))

int
rmq_bench_broker(int argc, char **argv)
{
    int runs = (int)rmq_bench_arg_long(argc, argv, "runs", 3);
    long count = rmq_bench_arg_long(argc, argv, "count", 20000);
    long pipe_count = rmq_bench_arg_long(argc, argv, "pipelined", 200000);
    int inflight = (int)rmq_bench_arg_long(argc, argv, "inflight", 64);
    long delayed = rmq_bench_arg_long(argc, argv, "delayed", 100000);
    size_t size = (size_t)rmq_bench_arg_long(argc, argv, "size", 1024);
    const char *dir = "/tmp/rmq-bench-broker";
    static struct run_figures fig[MAX_RUNS];
    uint64_t *samples;

    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--dir=", 6) == 0) {
            dir = argv[i] + 6;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || inflight < 1 || inflight > MAX_INFLIGHT ||
        size > sizeof(body) || count < 100) {
        fprintf(stderr, "rmq-bench broker: --runs 1..16, --inflight 1..1024, --size <= 1 MiB\n");
        return 2;
    }
    samples = malloc((size_t)count * sizeof(*samples));
    memset(body, 'b', sizeof(body));
    rmq_bench_pingpong_start(16);
    for (int r = 0; r < runs; r++) {
        struct run_figures *f = &fig[r];

        blocking_sends(rmq_bench_pingpong_port(), count / 10, size, NULL);      /* warm */
        blocking_sends(rmq_bench_pingpong_port(), count, size, samples);
        rmq_bench_percentiles(samples, (size_t)count, &f->base);
        for (int sync = 0; sync < 2; sync++) {
            uint64_t e0, e1;

            if (broker_start(dir, sync) < 0 ||
                rmq_bench_client_open(&CL.loop, &CL.nl, &CL.cl, BR.port) < 0 ||
                create_topic() < 0) {
                broker_stop();
                free(samples);
                rmq_bench_pingpong_stop();
                return 1;
            }
            blocking_sends(BR.port, count / 10, size, NULL);
            e0 = broker_enters();
            if (blocking_sends(BR.port, count, size, samples) < 0) {
                fprintf(stderr, "rmq-bench: sync sends failed\n");
            }
            e1 = broker_enters();
            f->sync_enters[sync] = (double)(e1 - e0) / (double)count;
            rmq_bench_percentiles(samples, (size_t)count, &f->send[sync]);
            e0 = broker_enters();
            f->pipe_rate[sync] = pipelined_sends(pipe_count, inflight, size);
            e1 = broker_enters();
            f->pipe_enters[sync] = (double)(e1 - e0) / (double)pipe_count;
            if (!sync) {
                e0 = broker_enters();
                f->pull_mbs = pull_all();
                e1 = broker_enters();
                f->pull_enters = R.msgs > 0 ? (double)(e1 - e0) / (double)R.msgs : 0;
                if (delayed > 0) {
                    /* park messages at the longest delay level, then the same sends again */
                    send_props = "TAGS\001bench\002DELAY\00118\002";
                    pipelined_sends(delayed, inflight, size);
                    send_props = "TAGS\001bench\002";
                    f->pending_rate = pipelined_sends(pipe_count, inflight, size);
                    /* and as many waiting in the timer log and its wheel */
                    send_props = "TAGS\001bench\002TIMER_DELAY_SEC\00186400\002";
                    pipelined_sends(delayed, inflight, size);
                    send_props = "TAGS\001bench\002";
                    f->timer_rate = pipelined_sends(pipe_count, inflight, size);
                }
            }
            rmq_bench_client_close(&CL.loop, &CL.nl, &CL.cl);
            broker_stop();
        }
        /* the same pull through the splice path, on a broker holding the same messages */
        if (broker_start(dir, 2) == 0 &&
            rmq_bench_client_open(&CL.loop, &CL.nl, &CL.cl, BR.port) == 0 && create_topic() == 0) {
            uint64_t e0, e1;

            pipelined_sends(pipe_count + count + count / 10, inflight, size);
            rmq_bench_client_close(&CL.loop, &CL.nl, &CL.cl);
            {
                long long walked, walk_ms;

                /* seconds old, no delayOffset.json yet: the start walk reads the whole log */
                f->restart_ms = broker_crash_restart(dir, 2, &walked, &walk_ms);
                f->walked = (double)walked;
                f->walk_ms = (double)walk_ms;
            }
            if (f->restart_ms >= 0 &&
                rmq_bench_client_open(&CL.loop, &CL.nl, &CL.cl, BR.port) == 0) {
                e0 = broker_enters();
                f->splice_mbs = pull_all();
                e1 = broker_enters();
                f->splice_enters = R.msgs > 0 ? (double)(e1 - e0) / (double)R.msgs : 0;
                rmq_bench_client_close(&CL.loop, &CL.nl, &CL.cl);
            }
        }
        broker_stop();
        fprintf(stderr, "run %d: base p50 %.1f us, async p50 %.1f us, sync p50 %.1f us, "
                "pipelined %.0f / %.0f msg/s, pull %.0f MB/s\n", r + 1, f->base.p50_us,
                f->send[0].p50_us, f->send[1].p50_us, f->pipe_rate[0], f->pipe_rate[1],
                f->pull_mbs);
    }
    rmq_bench_pingpong_stop();
    free(samples);

    printf("rmq-bench broker: %d runs, %zu-byte bodies, medians (standalone broker, loopback)\n",
           runs, size);
    printf("%-44s %9s %9s %9s %10s\n", "sync send, 1 in flight", "p50_us", "p99_us", "p999_us",
           "enters/msg");
    printf("%-44s %9.1f %9.1f %9.1f %10s\n", "ping-pong baseline (16 B reply)", MED(base.p50_us),
           MED(base.p99_us), MED(base.p999_us), "-");
    printf("%-44s %9.1f %9.1f %9.1f %10.2f\n", "SEND_MESSAGE_V2, ASYNC_FLUSH", MED(send[0].p50_us),
           MED(send[0].p99_us), MED(send[0].p999_us), MED(sync_enters[0]));
    printf("%-44s %9.1f %9.1f %9.1f %10.2f\n", "SEND_MESSAGE_V2, SYNC_FLUSH", MED(send[1].p50_us),
           MED(send[1].p99_us), MED(send[1].p999_us), MED(sync_enters[1]));
    printf("p50 over the baseline: ASYNC +%.1f us (x%.2f), SYNC +%.1f us (x%.2f)\n",
           MED(send[0].p50_us) - MED(base.p50_us), MED(send[0].p50_us) / MED(base.p50_us),
           MED(send[1].p50_us) - MED(base.p50_us), MED(send[1].p50_us) / MED(base.p50_us));
    printf("%-44s %12.0f msg/s %8.3f enters/msg\n", "pipelined sends, ASYNC_FLUSH",
           MED(pipe_rate[0]), MED(pipe_enters[0]));
    printf("%-44s %12.0f msg/s %8.3f enters/msg\n", "pipelined sends, SYNC_FLUSH",
           MED(pipe_rate[1]), MED(pipe_enters[1]));
    if (delayed > 0) {
        printf("%-44s %12.0f msg/s  (x%.2f of none pending)\n", "the ASYNC sends with delayed pending",
               MED(pending_rate), MED(pending_rate) / MED(pipe_rate[0]));
        printf("%-44s %12.0f msg/s  (x%.2f of none pending)\n", "the same with as many timers too",
               MED(timer_rate), MED(timer_rate) / MED(pipe_rate[0]));
    }
    printf("%-44s %12.0f MB/s  %8.3f enters/msg\n", "pull, 8 queues, 32 msgs per pull (copy)",
           MED(pull_mbs), MED(pull_enters));
    printf("%-44s %12.0f MB/s  %8.3f enters/msg  (x%.2f of copy)\n", "the same by splice",
           MED(splice_mbs), MED(splice_enters), MED(splice_mbs) / MED(pull_mbs));
    printf("%-44s %12.0f ms    (walk for delivered scheduled messages: %.0f records in %.0f "
           "ms)\n", "kill -9, restart until serving", MED(restart_ms), MED(walked), MED(walk_ms));
    return 0;
}

/* ---- libringmq against the same broker (issue 6's figures) ----------------------------------- */

static long client_async_done;
static long client_async_failed;

static void
client_sent(void *arg, int err, const struct rmq_send_result *r)
{
    (void)arg;
    (void)r;
    client_async_done++;
    client_async_failed += err < 0;
}

struct client_figures {
    struct rmq_bench_pct base;
    struct rmq_bench_pct sync;
    double async_rate;
    double push_rate;               /* push consumer draining what was sent */
    struct rmq_bench_pct query;     /* QUERY_MESSAGE by unique id, one at a time */
    double async_index_rate;        /* the pipelined sends on a fresh broker, index on */
    double async_noindex_rate;      /* the same with messageIndexEnable=false */
};

static _Atomic long push_seen;

static int
push_count(void *arg, const struct rmq_msg *msgs, uint32_t n)
{
    (void)arg;
    (void)msgs;
    atomic_fetch_add(&push_seen, (long)n);
    return RMQ_CONSUME_SUCCESS;
}

/* A push consumer (clustering, from the first offset, batches of 32) draining want
 * messages of BenchClient: msgs/s from start to the last callback. */
static double
push_drain(const char *ns, long want)
{
    struct rmq_options o = {.namesrv = ns, .group = "BENCH_CG"};
    struct rmq_push_options po = {.from_where = RMQ_FROM_FIRST_OFFSET, .batch_size = 32};
    struct rmq_push_consumer *c;
    uint64_t t0 = rmq_clock_mono_ns(), end = t0 + 120000000000ull;
    double secs;

    atomic_store(&push_seen, 0);
    if (rmq_push_consumer_create(&c, &o, &po) < 0 || rmq_push_subscribe(c, "BenchClient", "*") < 0 ||
        rmq_push_consumer_start(c, push_count, NULL) < 0) {
        fprintf(stderr, "rmq-bench: push consumer: %s\n", rmq_last_error());
        return 0;
    }
    while (atomic_load(&push_seen) < want && rmq_clock_mono_ns() < end) {
        usleep(1000);
    }
    secs = (double)(rmq_clock_mono_ns() - t0) / 1e9;
    rmq_push_consumer_destroy(c);
    return (double)atomic_load(&push_seen) / secs;
}

static double
cmed(const struct client_figures *f, int runs, size_t off)
{
    double v[MAX_RUNS];

    for (int i = 0; i < runs; i++) {
        v[i] = *(const double *)(const void *)((const char *)&f[i] + off);
    }
    return rmq_bench_median(v, (size_t)runs);
}

/* Pipelined async sends of n messages on a new producer: msgs/s. */
static double
async_run(const char *ns, const struct rmq_message *m, long n, long inflight)
{
    struct rmq_options o = {.group = "BENCH_PG", .namesrv = ns};
    struct rmq_producer *p;
    struct rmq_send_result res;
    uint64_t t0;

    if (rmq_producer_create(&p, &o) < 0) {
        return 0;
    }
    rmq_producer_send(p, m, &res);      /* route and connection */
    client_async_done = client_async_failed = 0;
    t0 = rmq_clock_mono_ns();
    for (long i = 0; i < n; i++) {
        while (i - client_async_done >= inflight) {
            rmq_producer_poll(p, 0);
        }
        if (rmq_producer_send_async(p, m, client_sent, NULL) < 0) {
            client_async_failed++;
            client_async_done++;
        }
    }
    while (rmq_producer_poll(p, 1000) > 0) {
    }
    t0 = rmq_clock_mono_ns() - t0;
    rmq_producer_destroy(p);
    return (double)n / ((double)t0 / 1e9);
}

/*
 * rmq-bench client: the C client's sync send latency (1 at a time, on the caller's
 * thread) beside the blocking ping-pong baseline measured in the same run, async
 * sends pipelined (up to --inflight in flight) in msgs/s, and a push consumer draining
 * all of them in msgs/s. ASYNC_FLUSH broker.
 */
int
rmq_bench_client(int argc, char **argv)
{
    int runs = (int)rmq_bench_arg_long(argc, argv, "runs", 3);
    long count = rmq_bench_arg_long(argc, argv, "count", 20000);
    long pipe_count = rmq_bench_arg_long(argc, argv, "pipelined", 200000);
    long inflight = rmq_bench_arg_long(argc, argv, "inflight", 1000);
    size_t size = (size_t)rmq_bench_arg_long(argc, argv, "size", 1024);
    const char *dir = "/tmp/rmq-bench-client";
    static struct client_figures fig[MAX_RUNS];
    static char ids[1000][33];
    uint64_t *samples;

    if (runs < 1 || runs > MAX_RUNS || size == 0 || size > sizeof(body) || count < 100 ||
        inflight < 1 || inflight > 4000) {
        fprintf(stderr, "rmq-bench client: --runs 1..16, --size 1..1 MiB, --count >= 100, "
                "--inflight 1..4000\n");
        return 2;
    }
    samples = malloc((size_t)count * sizeof(*samples));
    memset(body, 'b', sizeof(body));
    rmq_bench_pingpong_start(16);
    for (int r = 0; r < runs; r++) {
        struct client_figures *f = &fig[r];
        struct rmq_options o = {.group = "BENCH_PG"};
        struct rmq_message m = {.topic = "BenchClient", .tags = "bench", .body = body,
                                .body_len = size};
        struct rmq_producer *p;
        struct rmq_send_result res;
        char ns[32];
        uint64_t t0;

        blocking_sends(rmq_bench_pingpong_port(), count / 10, size, NULL);
        blocking_sends(rmq_bench_pingpong_port(), count, size, samples);
        rmq_bench_percentiles(samples, (size_t)count, &f->base);
        if (broker_start(dir, 0) < 0) {
            break;
        }
        snprintf(ns, sizeof(ns), "127.0.0.1:%u", log_int("namesrv_port="));
        o.namesrv = ns;
        if (rmq_producer_create(&p, &o) < 0) {
            fprintf(stderr, "rmq-bench: producer: %s\n", rmq_last_error());
            broker_stop();
            break;
        }
        for (long i = 0; i < count / 10; i++) {         /* warm: route, connection */
            rmq_producer_send(p, &m, &res);
        }
        for (long i = 0; i < count; i++) {
            t0 = rmq_clock_mono_ns();
            if (rmq_producer_send(p, &m, &res) < 0) {
                fprintf(stderr, "rmq-bench: send: %s\n", rmq_last_error());
                break;
            }
            samples[i] = rmq_clock_mono_ns() - t0;
            if (i < 1000) {
                memcpy(ids[i], res.msg_id, sizeof(ids[i]));
            }
        }
        rmq_bench_percentiles(samples, (size_t)count, &f->sync);
        {
            /* find 1,000 of them again by their unique ids (QUERY_MESSAGE) */
            struct rmq_admin *a;
            long nq = RMQ_MIN(count, 1000L);

            if (rmq_admin_create(&a, &o) == 0) {
                for (long i = 0; i < nq; i++) {
                    struct rmq_pull_result qr;

                    t0 = rmq_clock_mono_ns();
                    if (rmq_admin_query(a, "BenchClient", ids[i], true, 1, 0, 0, &qr) < 0 ||
                        qr.count != 1) {
                        fprintf(stderr, "rmq-bench: query %s: %s\n", ids[i], rmq_last_error());
                    }
                    samples[i] = rmq_clock_mono_ns() - t0;
                    rmq_pull_result_free(&qr);
                }
                rmq_bench_percentiles(samples, (size_t)nq, &f->query);
                rmq_admin_destroy(a);
            }
        }
        client_async_done = client_async_failed = 0;
        t0 = rmq_clock_mono_ns();
        for (long i = 0; i < pipe_count; i++) {
            while (i - client_async_done >= inflight) {
                rmq_producer_poll(p, 0);
            }
            if (rmq_producer_send_async(p, &m, client_sent, NULL) < 0) {
                client_async_failed++;
                client_async_done++;
            }
        }
        while (rmq_producer_poll(p, 1000) > 0) {
        }
        f->async_rate = (double)pipe_count / ((double)(rmq_clock_mono_ns() - t0) / 1e9);
        if (client_async_failed > 0) {
            fprintf(stderr, "rmq-bench: %ld async sends failed\n", client_async_failed);
        }
        rmq_producer_destroy(p);
        /* everything sent above: warm-up, sync and pipelined */
        f->push_rate = push_drain(ns, count / 10 + count + pipe_count - client_async_failed);
        broker_stop();
        /* what indexing costs: the same pipelined sends on two fresh brokers, index on and
         * off, the order alternating from run to run */
        for (int k = 0; k < 2; k++) {
            bool off = (k + r) % 2 == 1;

            if (broker_start(dir, off ? 3 : 0) == 0) {
                snprintf(ns, sizeof(ns), "127.0.0.1:%u", log_int("namesrv_port="));
                *(off ? &f->async_noindex_rate : &f->async_index_rate) =
                    async_run(ns, &m, pipe_count, inflight);
                broker_stop();
            }
        }
        fprintf(stderr, "run %d: base p50 %.1f us, client sync p50 %.1f us p99 %.1f us, async "
                "%.0f msg/s, push consume %.0f msg/s\n", r + 1, f->base.p50_us, f->sync.p50_us,
                f->sync.p99_us, f->async_rate, f->push_rate);
    }
    rmq_bench_pingpong_stop();
    free(samples);
#define CMED(field) cmed(fig, runs, offsetof(struct client_figures, field))
    printf("rmq-bench client: %d runs, %zu-byte bodies, medians (libringmq, standalone broker, "
           "ASYNC_FLUSH, loopback)\n", runs, size);
    printf("%-44s %9s %9s %9s\n", "sync send, 1 in flight", "p50_us", "p99_us", "p999_us");
    printf("%-44s %9.1f %9.1f %9.1f\n", "ping-pong baseline (16 B reply)", CMED(base.p50_us),
           CMED(base.p99_us), CMED(base.p999_us));
    printf("%-44s %9.1f %9.1f %9.1f\n", "rmq_producer_send", CMED(sync.p50_us), CMED(sync.p99_us),
           CMED(sync.p999_us));
    printf("p50 x%.2f and p99.9 x%.2f of the baseline\n", CMED(sync.p50_us) / CMED(base.p50_us),
           CMED(sync.p999_us) / CMED(base.p999_us));
    printf("%-44s %12.0f msg/s (%ld in flight)\n", "rmq_producer_send_async, pipelined",
           CMED(async_rate), inflight);
    printf("%-44s %12.0f msg/s (one consumer, callbacks of 32)\n", "push consumer draining them",
           CMED(push_rate));
    printf("%-44s %9.1f %9.1f %9.1f  (p50 x%.2f of the baseline)\n",
           "QUERY_MESSAGE by unique id, 1 at a time", CMED(query.p50_us), CMED(query.p99_us),
           CMED(query.p999_us), CMED(query.p50_us) / CMED(base.p50_us));
    printf("%-44s %12.0f msg/s with the key index, %.0f without (x%.3f)\n",
           "pipelined sends, fresh brokers", CMED(async_index_rate), CMED(async_noindex_rate),
           CMED(async_index_rate) / CMED(async_noindex_rate));
    return 0;
}
