/*
 * Engine benchmark (issue: foundation). Three request/response paths on loopback,
 * measured back to back in each run so they share the machine's mood:
 *   pingpong  blocking client <-> blocking echo server (the baseline)
 *   server    blocking client <-> ringmq server on its io_uring loop
 *   engine    ringmq client loop <-> ringmq server loop
 * plus io_uring_enter calls per request on each loop at 1 and 64 requests in flight.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/be.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/util.h"
#include "net/client.h"
#include "net/server.h"

#define MAX_RUNS 32

/* ---- the ringmq server on its own loop thread ---------------------------------------- */

static struct {
    pthread_t th;
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_server srv;
    pthread_barrier_t ready;
    struct rmq_loop_msg stop_msg;
    struct rmq_loop_msg stats_msg;
    _Atomic uint64_t enters;
    _Atomic int stats_seq;
    uint16_t port;
} es;

static void
echo(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    (void)ref;
    (void)ctx;
    rmq_conn_reply(c, &req->h, RMQ_RESP_SUCCESS, NULL, req->body, req->body_len);
}

static void
es_stopped(struct rmq_server *srv)
{
    (void)srv;
    rmq_loop_stop(&es.loop);
}

static void
es_stop_fn(struct rmq_loop_msg *m)
{
    (void)m;
    es.srv.on_stopped = es_stopped;
    rmq_server_stop(&es.srv);
}

static void
es_stats_fn(struct rmq_loop_msg *m)
{
    (void)m;
    atomic_store(&es.enters, es.loop.stats.enters);
    atomic_fetch_add(&es.stats_seq, 1);
}

static void *
es_main(void *arg)
{
    struct rmq_loop_config lcfg = {.name = "bench-server"};
    struct rmq_server_config scfg = {.host = "127.0.0.1"};

    (void)arg;
    RMQ_ASSERT(rmq_loop_init(&es.loop, &lcfg) == 0);
    RMQ_ASSERT(rmq_net_loop_init(&es.nl, &es.loop, NULL, 1) == 0);
    RMQ_ASSERT(rmq_server_init(&es.srv, &es.nl, &scfg) == 0);
    rmq_server_handle(&es.srv, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, echo, NULL);
    es.port = es.srv.port;
    pthread_barrier_wait(&es.ready);
    rmq_loop_run(&es.loop);
    rmq_server_fini(&es.srv);
    rmq_net_loop_fini(&es.nl);
    rmq_loop_fini(&es.loop);
    return NULL;
}

static uint64_t
es_enters(void)
{
    int seq = atomic_load(&es.stats_seq);

    es.stats_msg.fn = es_stats_fn;
    rmq_loop_post(&es.loop, &es.stats_msg);
    while (atomic_load(&es.stats_seq) == seq) {
        usleep(100);
    }
    return atomic_load(&es.enters);
}

/* ---- request frame ---------------------------------------------------------------------- */

static uint8_t req_wire[64 * 70000];
static size_t req_len;
static uint8_t body[65536];
static size_t body_size;

static void
build_request(size_t size)
{
    struct rmq_header h;
    ssize_t n;

    memset(body, 'x', size);
    rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, RMQ_SER_JSON);
    rmq_header_add(&h, "topic", "TopicTest");
    n = rmq_frame_encode_head(&h, (uint32_t)size, req_wire, sizeof(req_wire));
    memcpy(req_wire + n, body, size);
    req_len = (size_t)n + size;
    for (int i = 1; i < 64; i++) {
        memcpy(req_wire + (size_t)i * req_len, req_wire, req_len);
    }
}

/* Blocking client: n round trips at `inflight` requests per write; RTT per request. */
static int
blocking_run(uint16_t port, long n, int inflight, uint64_t *samples)
{
    static uint8_t rbuf[1 << 20];
    int fd = rmq_bench_tcp_connect(port);

    if (fd < 0) {
        return -1;
    }
    for (long i = 0; i < n; i += inflight) {
        uint64_t t0 = rmq_clock_mono_ns();

        if (rmq_bench_write_full(fd, req_wire, req_len * (size_t)inflight) < 0) {
            close(fd);
            return -1;
        }
        for (int k = 0; k < inflight; k++) {
            if (rmq_bench_read_frame(fd, rbuf, sizeof(rbuf)) < 0) {
                close(fd);
                return -1;
            }
        }
        if (samples != NULL) {
            samples[i / inflight] = rmq_clock_mono_ns() - t0;
        }
    }
    close(fd);
    return 0;
}

/* ---- ringmq client loop on this thread -------------------------------------------------- */

static struct {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_client cl;
    long issued;
    long done;
    long target;
    int errors;
    uint64_t *samples;
} ec;

struct timed_call {
    struct rmq_call call;
    uint64_t t0;
};

static struct timed_call calls[64];

static void issue(struct timed_call *tc);

static void
call_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct timed_call *tc = rmq_container_of(call, struct timed_call, call);

    (void)resp;
    if (err != 0) {
        ec.errors++;
    }
    if (ec.samples != NULL) {
        ec.samples[ec.done] = rmq_clock_mono_ns() - tc->t0;
    }
    ec.done++;
    if (ec.issued < ec.target) {
        issue(tc);
    }
}

static void
issue(struct timed_call *tc)
{
    struct rmq_header h;

    rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, RMQ_SER_JSON);
    rmq_header_add(&h, "topic", "TopicTest");
    tc->call.done = call_done;
    tc->t0 = rmq_clock_mono_ns();
    if (rmq_client_call(&ec.cl, &tc->call, &h, body, (uint32_t)body_size, 10000) != 0) {
        ec.errors++;
        ec.done++;
        return;
    }
    ec.issued++;
}

/* n requests with `window` in flight; returns client enters used. */
static uint64_t
engine_client_run(long n, int window, uint64_t *samples)
{
    uint64_t enters0 = ec.loop.stats.enters;

    ec.issued = 0;
    ec.done = 0;
    ec.target = n;
    ec.samples = samples;
    for (int i = 0; i < window && ec.issued < n; i++) {
        issue(&calls[i]);
    }
    while (ec.done < n) {
        rmq_loop_run_once(&ec.loop, 100000000);
    }
    return ec.loop.stats.enters - enters0;
}

/* ---- the benchmark ------------------------------------------------------------------------ */

int
rmq_bench_engine(int argc, char **argv)
{
    long runs = RMQ_MIN(rmq_bench_arg_long(argc, argv, "runs", 5), MAX_RUNS);
    long n = rmq_bench_arg_long(argc, argv, "requests", 20000);
    long size = rmq_bench_arg_long(argc, argv, "size", 1024);
    uint64_t *samples = malloc((size_t)n * sizeof(*samples));
    struct rmq_bench_pct pct;
    double pp50[MAX_RUNS], pp99[MAX_RUNS], pp999[MAX_RUNS];
    double sv50[MAX_RUNS], sv99[MAX_RUNS], sv999[MAX_RUNS];
    double en50[MAX_RUNS], en99[MAX_RUNS], en999[MAX_RUNS];
    double ratio_sv[MAX_RUNS], ratio_en[MAX_RUNS];
    double srv_e1[MAX_RUNS], srv_e64[MAX_RUNS], cli_e1[MAX_RUNS], cli_e64[MAX_RUNS];
    double srv_e1_eng[MAX_RUNS], srv_e64_eng[MAX_RUNS];

    if (size < 0 || size > (long)sizeof(body) || n < 64 || samples == NULL) {
        fprintf(stderr, "rmq-bench engine: --size must be 0..%zu, --requests >= 64\n",
                sizeof(body));
        return 2;
    }
    body_size = (size_t)size;
    build_request((size_t)size);
    rmq_bench_pingpong_start(0);
    pthread_barrier_init(&es.ready, NULL, 2);
    pthread_create(&es.th, NULL, es_main, NULL);
    pthread_barrier_wait(&es.ready);
    if (rmq_bench_client_open(&ec.loop, &ec.nl, &ec.cl, es.port) < 0) {
        fprintf(stderr, "rmq-bench engine: client could not connect\n");
        return 1;
    }
    /* warm-up: page in code paths and buffers on all three paths */
    blocking_run(rmq_bench_pingpong_port(), 2000, 1, NULL);
    blocking_run(es.port, 2000, 1, NULL);
    engine_client_run(2000, 1, NULL);

    for (long r = 0; r < runs; r++) {
        uint64_t e0;

        blocking_run(rmq_bench_pingpong_port(), n, 1, samples);
        rmq_bench_percentiles(samples, (size_t)n, &pct);
        pp50[r] = pct.p50_us;
        pp99[r] = pct.p99_us;
        pp999[r] = pct.p999_us;

        e0 = es_enters();
        blocking_run(es.port, n, 1, samples);
        srv_e1[r] = (double)(es_enters() - e0) / (double)n;
        rmq_bench_percentiles(samples, (size_t)n, &pct);
        sv50[r] = pct.p50_us;
        sv99[r] = pct.p99_us;
        sv999[r] = pct.p999_us;
        ratio_sv[r] = sv50[r] / pp50[r];

        e0 = es_enters();
        cli_e1[r] = (double)engine_client_run(n, 1, samples) / (double)n;
        srv_e1_eng[r] = (double)(es_enters() - e0) / (double)n;
        rmq_bench_percentiles(samples, (size_t)n, &pct);
        en50[r] = pct.p50_us;
        en99[r] = pct.p99_us;
        en999[r] = pct.p999_us;
        ratio_en[r] = en50[r] / pp50[r];

        e0 = es_enters();
        blocking_run(es.port, n, 64, NULL);
        srv_e64[r] = (double)(es_enters() - e0) / (double)n;
        e0 = es_enters();
        cli_e64[r] = (double)engine_client_run(n, 64, NULL) / (double)n;
        srv_e64_eng[r] = (double)(es_enters() - e0) / (double)n;
    }

    printf("engine: %ld-byte requests, %ld round trips per path per run, median of %ld runs\n",
           size, n, runs);
    printf("%-34s %9s %9s %9s %12s\n", "path", "p50_us", "p99_us", "p999_us", "p50/pingpong");
    printf("%-34s %9.1f %9.1f %9.1f %12s\n", "pingpong (blocking <-> blocking)",
           rmq_bench_median(pp50, (size_t)runs), rmq_bench_median(pp99, (size_t)runs),
           rmq_bench_median(pp999, (size_t)runs), "1.00");
    printf("%-34s %9.1f %9.1f %9.1f %12.2f\n", "server (blocking <-> ringmq loop)",
           rmq_bench_median(sv50, (size_t)runs), rmq_bench_median(sv99, (size_t)runs),
           rmq_bench_median(sv999, (size_t)runs), rmq_bench_median(ratio_sv, (size_t)runs));
    printf("%-34s %9.1f %9.1f %9.1f %12.2f\n", "engine (ringmq loop <-> ringmq loop)",
           rmq_bench_median(en50, (size_t)runs), rmq_bench_median(en99, (size_t)runs),
           rmq_bench_median(en999, (size_t)runs), rmq_bench_median(ratio_en, (size_t)runs));
    printf("io_uring_enter per request        %9s %9s\n", "1 inflt", "64 inflt");
    printf("  server loop, blocking client    %9.3f %9.3f\n",
           rmq_bench_median(srv_e1, (size_t)runs), rmq_bench_median(srv_e64, (size_t)runs));
    printf("  server loop, ringmq client      %9.3f %9.3f\n",
           rmq_bench_median(srv_e1_eng, (size_t)runs),
           rmq_bench_median(srv_e64_eng, (size_t)runs));
    printf("  client loop                     %9.3f %9.3f\n",
           rmq_bench_median(cli_e1, (size_t)runs), rmq_bench_median(cli_e64, (size_t)runs));

    rmq_bench_client_close(&ec.loop, &ec.nl, &ec.cl);
    es.stop_msg.fn = es_stop_fn;
    rmq_loop_post(&es.loop, &es.stop_msg);
    pthread_join(es.th, NULL);
    rmq_bench_pingpong_stop();
    free(samples);
    return ec.errors ? 1 : 0;
}
