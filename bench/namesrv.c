/*
 * NameServer benchmark (issue 4): GET_ROUTEINFO_BY_TOPIC against an in-process
 * NameServer holding 10,000 topics registered by 4 brokers (every topic on two of
 * them), from one client connection with 64 requests in flight, random topics.
 * Beside it, in the same run, the same client asking for an unhandled code: the
 * engine's floor (decode, dispatch, a header-only reply), so the figure that is the
 * route table's own cost is the difference.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/util.h"
#include "namesrv/namesrv.h"
#include "net/client.h"
#include "net/json.h"
#include "net/server.h"

#define MAX_RUNS 32
#define MAX_INFLIGHT 1024
#define BROKERS 4
#define FLOOR_CODE 499              /* no handler: answered REQUEST_CODE_NOT_SUPPORTED */

/* ---- server thread ---------------------------------------------------------------------- */

static struct {
    pthread_t th;
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_server srv;
    struct rmq_namesrv *ns;
    pthread_barrier_t ready;
    struct rmq_loop_msg stop_msg;
    uint16_t port;
} ss;

static void
ss_stopped(struct rmq_server *srv)
{
    (void)srv;
    rmq_loop_stop(&ss.loop);
}

static void
ss_stop_fn(struct rmq_loop_msg *m)
{
    (void)m;
    rmq_namesrv_stop(ss.ns);
    ss.srv.on_stopped = ss_stopped;
    rmq_server_stop(&ss.srv);
}

static void *
ss_main(void *arg)
{
    struct rmq_loop_config lcfg = {.name = "bench-namesrv"};
    struct rmq_server_config scfg = {.host = "127.0.0.1"};
    struct rmq_namesrv_config cfg;
    char err[256];

    (void)arg;
    RMQ_ASSERT(rmq_config_defaults(&rmq_namesrv_config_spec, &cfg, err, sizeof(err)) == 0);
    cfg.kv_config_path[0] = '\0';   /* memory only */
    RMQ_ASSERT(rmq_loop_init(&ss.loop, &lcfg) == 0);
    RMQ_ASSERT(rmq_net_loop_init(&ss.nl, &ss.loop, NULL, 1) == 0);
    RMQ_ASSERT(rmq_server_init(&ss.srv, &ss.nl, &scfg) == 0);
    RMQ_ASSERT(rmq_namesrv_create(&ss.ns, &ss.srv, &cfg) == 0);
    ss.port = ss.srv.port;
    pthread_barrier_wait(&ss.ready);
    rmq_loop_run(&ss.loop);
    rmq_namesrv_destroy(ss.ns);
    rmq_server_fini(&ss.srv);
    rmq_net_loop_fini(&ss.nl);
    rmq_loop_fini(&ss.loop);
    return NULL;
}

/* ---- client ------------------------------------------------------------------------------ */

static struct {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_client cl;
    long issued;
    long done;
    long target;
    long errors;
    long not_found;
    int code;
    uint64_t rng;
    uint64_t *samples;
} bc;

struct timed_call {
    struct rmq_call call;
    uint64_t t0;
};

static struct timed_call calls[MAX_INFLIGHT];
static char (*topics)[16];
static long topic_count;

static void issue(struct timed_call *tc);

static void
call_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct timed_call *tc = rmq_container_of(call, struct timed_call, call);

    if (err != 0) {
        bc.errors++;
    } else if (bc.code == RMQ_REQ_GET_ROUTEINFO_BY_TOPIC && resp->h.code != RMQ_RESP_SUCCESS) {
        bc.not_found++;
    }
    if (bc.samples != NULL) {
        bc.samples[bc.done] = rmq_clock_mono_ns() - tc->t0;
    }
    bc.done++;
    if (bc.issued < bc.target) {
        issue(tc);
    }
}

static void
issue(struct timed_call *tc)
{
    struct rmq_header h;

    rmq_header_init(&h, bc.code, RMQ_SER_JSON);
    h.version = RMQ_VERSION_V3_4_9;         /* ali-ons: the fastjson dialect */
    if (bc.code == RMQ_REQ_GET_ROUTEINFO_BY_TOPIC) {
        bc.rng = bc.rng * 6364136223846793005ull + 1442695040888963407ull;
        rmq_header_add(&h, "topic", topics[(bc.rng >> 33) % (uint64_t)topic_count]);
    }
    tc->call.done = call_done;
    tc->t0 = rmq_clock_mono_ns();
    if (rmq_client_call(&bc.cl, &tc->call, &h, NULL, 0, 10000) != 0) {
        bc.errors++;
        bc.done++;
        return;
    }
    bc.issued++;
}

/* n requests of code with `window` in flight; returns the elapsed ns. */
static uint64_t
client_run(int code, long n, int window, uint64_t *samples)
{
    uint64_t t0 = rmq_clock_mono_ns();

    bc.code = code;
    bc.issued = 0;
    bc.done = 0;
    bc.target = n;
    bc.samples = samples;
    for (int i = 0; i < window && bc.issued < n; i++) {
        issue(&calls[i]);
    }
    while (bc.done < n) {
        rmq_loop_run_once(&bc.loop, 100000000);
    }
    return rmq_clock_mono_ns() - t0;
}

struct reg_call {
    struct rmq_call call;
    bool done;
    int code;
};

static void
reg_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct reg_call *rc = rmq_container_of(call, struct reg_call, call);

    rc->done = true;
    rc->code = err != 0 ? -1 : resp->h.code;
}

/* Broker b registers every topic t with t % BROKERS == b or (t + 1) % BROKERS == b. */
static int
register_broker(int b)
{
    struct rmq_header h;
    struct rmq_jw w;
    struct reg_call rc = {.done = false};
    char name[32];
    char addr[32];
    const char *text;
    size_t len;

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    rmq_jw_key(&w, "filterServerList");
    rmq_jw_arr_begin(&w);
    rmq_jw_arr_end(&w);
    rmq_jw_key(&w, "topicConfigSerializeWrapper");
    rmq_jw_obj_begin(&w);
    rmq_jw_key(&w, "dataVersion");
    rmq_jw_obj_begin(&w);
    rmq_jw_key(&w, "counter");
    rmq_jw_i64(&w, 1);
    rmq_jw_key(&w, "timestamp");
    rmq_jw_i64(&w, 1700000000000);
    rmq_jw_obj_end(&w);
    rmq_jw_key(&w, "topicConfigTable");
    rmq_jw_obj_begin(&w);
    for (long t = 0; t < topic_count; t++) {
        if (t % BROKERS != b && (t + 1) % BROKERS != b) {
            continue;
        }
        rmq_jw_key(&w, topics[t]);
        rmq_jw_obj_begin(&w);
        rmq_jw_key(&w, "perm");
        rmq_jw_i64(&w, 6);
        rmq_jw_key(&w, "readQueueNums");
        rmq_jw_i64(&w, 8);
        rmq_jw_key(&w, "topicName");
        rmq_jw_str(&w, topics[t]);
        rmq_jw_key(&w, "writeQueueNums");
        rmq_jw_i64(&w, 8);
        rmq_jw_obj_end(&w);
    }
    rmq_jw_obj_end(&w);
    rmq_jw_obj_end(&w);
    rmq_jw_obj_end(&w);
    if (rmq_jw_finish(&w, &text, &len) < 0) {
        rmq_jw_fini(&w);
        return -1;
    }
    snprintf(name, sizeof(name), "broker-%d", b);
    snprintf(addr, sizeof(addr), "10.0.0.%d:10911", b + 1);
    rmq_header_init(&h, RMQ_REQ_REGISTER_BROKER, RMQ_SER_JSON);
    rmq_header_add(&h, "brokerName", name);
    rmq_header_add(&h, "brokerAddr", addr);
    rmq_header_add(&h, "clusterName", "BenchCluster");
    rmq_header_add(&h, "haServerAddr", "");
    rmq_header_add(&h, "brokerId", "0");
    rc.call.done = reg_done;
    if (rmq_client_call(&bc.cl, &rc.call, &h, text, (uint32_t)len, 10000) != 0) {
        rmq_jw_fini(&w);
        return -1;
    }
    rmq_jw_fini(&w);
    while (!rc.done) {
        rmq_loop_run_once(&bc.loop, 100000000);
    }
    return rc.code == RMQ_RESP_SUCCESS ? 0 : -1;
}

int
rmq_bench_namesrv(int argc, char **argv)
{
    long runs = RMQ_MIN(rmq_bench_arg_long(argc, argv, "runs", 5), MAX_RUNS);
    long n = rmq_bench_arg_long(argc, argv, "requests", 200000);
    long inflight = rmq_bench_arg_long(argc, argv, "inflight", 64);
    uint64_t *samples;
    struct rmq_bench_pct pct;
    double rt_rps[MAX_RUNS], rt50[MAX_RUNS], rt99[MAX_RUNS];
    double fl_rps[MAX_RUNS], fl50[MAX_RUNS], fl99[MAX_RUNS];
    int ret = 0;

    topic_count = rmq_bench_arg_long(argc, argv, "topics", 10000);
    if (runs < 1 || n < 1000 || inflight < 1 || inflight > MAX_INFLIGHT || topic_count < 1 ||
        topic_count > 1000000) {
        fprintf(stderr, "rmq-bench namesrv: --runs >= 1, --requests >= 1000, --inflight 1..%d, "
                "--topics 1..1000000\n", MAX_INFLIGHT);
        return 2;
    }
    samples = malloc((size_t)n * sizeof(*samples));
    topics = malloc((size_t)topic_count * sizeof(*topics));
    if (samples == NULL || topics == NULL) {
        return 1;
    }
    for (long t = 0; t < topic_count; t++) {
        snprintf(topics[t], sizeof(topics[t]), "Topic%06d", (int)t);
    }
    bc.rng = 42;
    pthread_barrier_init(&ss.ready, NULL, 2);
    pthread_create(&ss.th, NULL, ss_main, NULL);
    pthread_barrier_wait(&ss.ready);
    if (rmq_bench_client_open(&bc.loop, &bc.nl, &bc.cl, ss.port) < 0) {
        fprintf(stderr, "rmq-bench namesrv: client could not connect\n");
        return 1;
    }
    for (int b = 0; b < BROKERS; b++) {
        if (register_broker(b) < 0) {
            fprintf(stderr, "rmq-bench namesrv: registration of broker-%d failed\n", b);
            ret = 1;
            goto out;
        }
    }
    client_run(RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, RMQ_MIN(n, 20000), (int)inflight, NULL);
    client_run(FLOOR_CODE, RMQ_MIN(n, 20000), (int)inflight, NULL);
    bc.errors = 0;
    bc.not_found = 0;
    for (long r = 0; r < runs; r++) {
        uint64_t ns = client_run(RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, n, (int)inflight, samples);

        rt_rps[r] = (double)n * 1e9 / (double)ns;
        rmq_bench_percentiles(samples, (size_t)n, &pct);
        rt50[r] = pct.p50_us;
        rt99[r] = pct.p99_us;
        ns = client_run(FLOOR_CODE, n, (int)inflight, samples);
        fl_rps[r] = (double)n * 1e9 / (double)ns;
        rmq_bench_percentiles(samples, (size_t)n, &pct);
        fl50[r] = pct.p50_us;
        fl99[r] = pct.p99_us;
    }
    printf("namesrv: %ld topics on %d brokers (2 per topic), 1 connection, %ld in flight, "
           "%ld requests x %ld runs (medians)\n", topic_count, BROKERS, inflight, n, runs);
    printf("  GET_ROUTEINFO_BY_TOPIC  %9.0f req/s   p50 %7.1f us   p99 %7.1f us\n",
           rmq_bench_median(rt_rps, (size_t)runs), rmq_bench_median(rt50, (size_t)runs),
           rmq_bench_median(rt99, (size_t)runs));
    printf("  engine floor (code %d) %9.0f req/s   p50 %7.1f us   p99 %7.1f us\n", FLOOR_CODE,
           rmq_bench_median(fl_rps, (size_t)runs), rmq_bench_median(fl50, (size_t)runs),
           rmq_bench_median(fl99, (size_t)runs));
    if (bc.errors != 0 || bc.not_found != 0) {
        printf("  errors %ld, routes not found %ld: figures are not valid\n", bc.errors,
               bc.not_found);
        ret = 1;
    }
out:
    rmq_bench_client_close(&bc.loop, &bc.nl, &bc.cl);
    ss.stop_msg.fn = ss_stop_fn;
    rmq_loop_post(&ss.loop, &ss.stop_msg);
    pthread_join(ss.th, NULL);
    free(samples);
    free(topics);
    return ret;
}
