/*
 * rmq-bench produce | consume | e2e | query: load against a running cluster through
 * libringmq (-n / --namesrv, default $NAMESRV_ADDR, else 127.0.0.1:9876).
 *
 * Closed loop (--inflight N per connection) or open loop (--rate R messages/s over all
 * connections, each on a fixed schedule): in open loop a message's latency runs from
 * the moment it was due, not from when it could be sent, so a stall shows up in every
 * message it delayed (coordinated omission corrected). Latencies go into log-linear
 * histograms (< 1 % error), one per connection thread, merged at the end.
 *
 * Every run reads the brokers' flushDiskType, and their io_uring_enter count and CPU
 * time before and after, from GET_BROKER_CONFIG / GET_BROKER_RUNTIME_INFO.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/hist.h"
#include "client/ringmq.h"
#include "core/clock.h"
#include "net/codes.h"

#define MAX_CONNS 64
#define MAX_BROKERS 16

struct load_args {
    const char *cmd;
    const char *namesrv;
    const char *topic;
    const char *mode;
    const char *plot;
    const char *from;
    long size;
    long count;
    double duration_s;
    double rate;
    long inflight;
    long connections;
    long queues;
    long batch;
    long queries;
    bool keys;
    bool json;
};

static struct load_args L;

static const char *
arg_str(int argc, char **argv, const char *key, const char *def)
{
    size_t n = strlen(key);

    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, key, n) == 0 &&
            argv[i][2 + n] == '=') {
            return argv[i] + 3 + n;
        }
    }
    return def;
}

static bool
arg_flag(int argc, char **argv, const char *key)
{
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, key) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- the brokers' own figures ------------------------------------------------------------------ */

struct broker_figs {
    size_t n;
    char addrs[MAX_BROKERS][64];
    long long enters;
    long long cpu_us;
    char flush[32];
};

static long long
runtime_value(const char *body, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    p = strstr(body, pat);
    return p != NULL ? atoll(p + strlen(pat)) : 0;
}

static void
broker_sample(struct rmq_admin *a, struct broker_figs *f)
{
    f->enters = f->cpu_us = 0;
    for (size_t i = 0; i < f->n; i++) {
        char *body = NULL;
        int code;

        if (rmq_admin_call(a, f->addrs[i], RMQ_REQ_GET_BROKER_RUNTIME_INFO, NULL, NULL, 0, &code,
                           NULL, 0, &body, NULL) == 0 && code == RMQ_RESP_SUCCESS) {
            f->enters += runtime_value(body, "ioUringEnters");
            f->cpu_us += runtime_value(body, "cpuUserUs") + runtime_value(body, "cpuSysUs");
        } else {
            fprintf(stderr, "rmq-bench: runtime figures of %s not read: %s\n", f->addrs[i],
                    rmq_last_error());
            f->enters = f->cpu_us = -1;
        }
        free(body);
    }
}

/* The topic's masters (creating the topic with --queues first when asked) and their
 * flushDiskType. */
static int
brokers_find(struct rmq_admin *a, struct broker_figs *f)
{
    char **addrs = NULL;
    size_t n = 0;
    int ret = rmq_admin_masters(a, NULL, &addrs, &n);

    if (ret < 0) {
        fprintf(stderr, "rmq-bench: no broker found: %s\n", rmq_last_error());
        return ret;
    }
    snprintf(f->flush, sizeof(f->flush), "unknown");
    for (size_t i = 0; i < n; i++) {
        char *body = NULL;
        int code;

        if (f->n < MAX_BROKERS) {
            snprintf(f->addrs[f->n++], sizeof(f->addrs[0]), "%s", addrs[i]);
        }
        if (L.queues > 0) {
            char q[24];
            const char *const fields[] = {"topic", L.topic, "readQueueNums", q, "writeQueueNums", q,
                                          "perm", "6", NULL};

            snprintf(q, sizeof(q), "%ld", L.queues);
            rmq_admin_call(a, addrs[i], RMQ_REQ_UPDATE_AND_CREATE_TOPIC, fields, NULL, 0, &code,
                           NULL, 0, NULL, NULL);
        }
        if (rmq_admin_call(a, addrs[i], RMQ_REQ_GET_BROKER_CONFIG, NULL, NULL, 0, &code, NULL, 0,
                           &body, NULL) == 0 && code == RMQ_RESP_SUCCESS) {
            const char *p = strstr(body, "flushDiskType=");

            if (p != NULL) {
                sscanf(p + strlen("flushDiskType="), "%31[A-Z_]", f->flush);
            }
        }
        free(body);
        free(addrs[i]);
    }
    free(addrs);
    if (L.queues > 0) {
        usleep(200000);             /* the brokers register the topic with the NameServer */
    }
    return 0;
}

/* ---- producing ---------------------------------------------------------------------------------- */

struct conn {
    pthread_t thread;
    int index;
    struct rmq_hist hist;
    long sent;
    long failed;
    uint64_t *due;                  /* per in-flight slot: when the message was due */
    uint32_t slots;
    bool stamp;                     /* e2e: the body starts with the send time */
    int err;
};

static struct conn C[MAX_CONNS];
static uint64_t run_start_ns;
static uint64_t run_end_ns;
static _Atomic long e2e_received;
static struct rmq_hist e2e_hist;
static pthread_mutex_t e2e_mu = PTHREAD_MUTEX_INITIALIZER;

static void
sent_cb(void *arg, int err, const struct rmq_send_result *res)
{
    struct conn *c = &C[(uintptr_t)arg >> 32];
    uint32_t slot = (uint32_t)(uintptr_t)arg;

    (void)res;
    if (err < 0) {
        c->failed++;
        return;
    }
    rmq_hist_record(&c->hist, rmq_clock_mono_ns() - c->due[slot]);
}

static void *
produce_thread(void *arg)
{
    struct conn *c = arg;
    struct rmq_options o = {.namesrv = L.namesrv, .group = "BENCH_PRODUCER"};
    struct rmq_producer *p;
    struct rmq_message m = {.topic = L.topic};
    struct rmq_message *batch = NULL;
    long quota = L.count > 0 ? (L.count + L.connections - 1 - c->index) / L.connections : -1;
    double period_ns = L.rate > 0 ? 1e9 / (L.rate / (double)L.connections) : 0;
    bool async = strcmp(L.mode, "async") == 0, oneway = strcmp(L.mode, "oneway") == 0;
    bool is_batch = strcmp(L.mode, "batch") == 0;
    uint8_t *body = malloc((size_t)L.size + 8);
    char key[48];
    char (*batch_keys)[48] = NULL;
    uint64_t seq = 0;

    memset(body, 'b', (size_t)L.size + 8);
    m.body = body;
    m.body_len = (size_t)L.size;
    if (rmq_producer_create(&p, &o) < 0) {
        fprintf(stderr, "rmq-bench: producer: %s\n", rmq_last_error());
        c->err = -1;
        free(body);
        return NULL;
    }
    if (is_batch) {
        batch = calloc((size_t)L.batch, sizeof(*batch));
        batch_keys = calloc((size_t)L.batch, sizeof(*batch_keys));
        for (long i = 0; i < L.batch; i++) {
            batch[i] = m;
        }
    }
    c->slots = (uint32_t)(L.inflight > 0 ? L.inflight * 2 : 8192);
    c->due = calloc(c->slots, sizeof(*c->due));
    while ((quota < 0 || c->sent < quota) && rmq_clock_mono_ns() < run_end_ns) {
        uint64_t due = period_ns > 0 ? run_start_ns + (uint64_t)((double)seq * period_ns)
                                     : rmq_clock_mono_ns();
        struct rmq_send_result r;
        int ret;

        if (period_ns > 0) {
            /* open loop: wait for the schedule (answers keep coming meanwhile) */
            while (rmq_clock_mono_ns() < due) {
                if (async) {
                    rmq_producer_poll(p, 0);
                }
            }
        }
        if (L.keys && is_batch) {
            for (long i = 0; i < L.batch; i++) {
                snprintf(batch_keys[i], sizeof(batch_keys[i]), "bench-%d-%ld", c->index,
                         c->sent + i);
                batch[i].keys = batch_keys[i];
            }
        } else if (L.keys) {
            snprintf(key, sizeof(key), "bench-%d-%ld", c->index, c->sent);
            m.keys = key;
        }
        if (c->stamp) {
            memcpy(body, &due, 8);      /* e2e: the consumer measures from when it was due */
        }
        if (async) {
            uint32_t slot = (uint32_t)(seq % c->slots);

            while (L.inflight > 0 && (long)(c->sent - c->failed) - (long)c->hist.total >=
                                         L.inflight) {
                rmq_producer_poll(p, 0);
            }
            c->due[slot] = due;
            ret = rmq_producer_send_async(p, &m, sent_cb,
                                          (void *)(((uintptr_t)c->index << 32) | slot));
            while (ret == RMQ_ERR_NOMEM) {           /* too many in flight: let some finish */
                rmq_producer_poll(p, 1);
                ret = rmq_producer_send_async(p, &m, sent_cb,
                                              (void *)(((uintptr_t)c->index << 32) | slot));
            }
            c->failed += ret < 0;
            c->sent++;
        } else if (oneway) {
            c->failed += rmq_producer_send_oneway(p, &m) < 0;
            c->sent++;
        } else if (is_batch) {
            ret = rmq_producer_send_batch(p, batch, (size_t)L.batch, &r, NULL);
            if (ret == 0) {
                uint64_t lat = rmq_clock_mono_ns() - due;

                for (long i = 0; i < L.batch; i++) {
                    rmq_hist_record(&c->hist, lat);
                }
            } else {
                c->failed += L.batch;
            }
            c->sent += L.batch;
        } else {
            ret = rmq_producer_send(p, &m, &r);
            if (ret == 0) {
                rmq_hist_record(&c->hist, rmq_clock_mono_ns() - due);
            } else {
                c->failed++;
            }
            c->sent++;
        }
        seq++;
    }
    while (rmq_producer_poll(p, 1000) > 0) {
    }
    rmq_producer_destroy(p);
    free(batch);
    free(batch_keys);
    free(c->due);
    free(body);
    return NULL;
}

/* ---- consuming ---------------------------------------------------------------------------------- */

static _Atomic long consumed;
static _Atomic long long consumed_bytes;

static int
consume_cb(void *arg, const struct rmq_msg *msgs, uint32_t n)
{
    bool e2e = arg != NULL;
    uint64_t now = rmq_clock_mono_ns();
    long long bytes = 0;

    for (uint32_t i = 0; i < n; i++) {
        bytes += msgs[i].body_len;
        if (e2e && msgs[i].body_len >= 8) {
            uint64_t sent;

            memcpy(&sent, msgs[i].body, 8);
            if (sent > run_start_ns / 2 && sent <= now) {
                pthread_mutex_lock(&e2e_mu);
                rmq_hist_record(&e2e_hist, now - sent);
                pthread_mutex_unlock(&e2e_mu);
                atomic_fetch_add(&e2e_received, 1);
            }
        }
    }
    atomic_fetch_add(&consumed, (long)n);
    atomic_fetch_add(&consumed_bytes, bytes);
    return RMQ_CONSUME_SUCCESS;
}

static struct rmq_push_consumer *
consumer_start(const char *group, bool from_last, bool e2e)
{
    struct rmq_options o = {.namesrv = L.namesrv, .group = group};
    struct rmq_push_options po = {.from_where = from_last ? RMQ_FROM_LAST_OFFSET
                                                          : RMQ_FROM_FIRST_OFFSET,
                                  .batch_size = 32};
    struct rmq_push_consumer *pc;

    if (rmq_push_consumer_create(&pc, &o, &po) < 0 || rmq_push_subscribe(pc, L.topic, "*") < 0 ||
        rmq_push_consumer_start(pc, consume_cb, e2e ? (void *)1 : NULL) < 0) {
        fprintf(stderr, "rmq-bench: consumer: %s\n", rmq_last_error());
        return NULL;
    }
    return pc;
}

/* ---- reporting ------------------------------------------------------------------------------------ */

static const double pcts[] = {50, 90, 99, 99.9, 99.99};

static void
plot(const struct rmq_hist *h, const char *title)
{
    static const double curve[] = {0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999};
    char data[] = "/tmp/rmq-bench-plot-XXXXXX";
    char cmd[2048];
    FILE *f;
    int fd = mkstemp(data);

    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "rmq-bench: plot data not written\n");
        return;
    }
    for (size_t i = 0; i < sizeof(curve) / sizeof(curve[0]); i++) {
        fprintf(f, "%g %g %g\n", curve[i], 100.0 / (100.0 - curve[i]),
                (double)rmq_hist_at(h, curve[i]) / 1000.0);
    }
    fprintf(f, "100 1000000 %g\n", (double)h->max / 1000.0);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "gnuplot -e \"set terminal pngcairo size 900,500; set output '%s'; "
             "set title '%s'; set logscale x; set logscale y; set grid; "
             "set xlabel 'percentile'; set ylabel 'latency (us)'; "
             "set xtics ('50' 2, '90' 10, '99' 100, '99.9' 1000, '99.99' 10000, "
             "'99.999' 100000, 'max' 1000000); "
             "plot '%s' using 2:3 with linespoints title 'rmq-bench'\" 2>&1",
             L.plot, title, data);
    if (system(cmd) != 0) {
        fprintf(stderr, "rmq-bench: gnuplot failed (installed by ./configure: gnuplot-nox)\n");
    }
    unlink(data);
}

static void
report(const char *what, long msgs, long failed, double secs, long long bytes,
       const struct rmq_hist *h, const struct broker_figs *before, const struct broker_figs *after)
{
    double rate = secs > 0 ? (double)msgs / secs : 0;
    double mbs = secs > 0 ? (double)bytes / secs / 1e6 : 0;
    bool known = before->enters >= 0 && after->enters >= 0;
    double enters = msgs > 0 && known ? (double)(after->enters - before->enters) / (double)msgs : -1;
    double cpu = msgs > 0 && known ? (double)(after->cpu_us - before->cpu_us) / (double)msgs : -1;

    if (L.json) {
        printf("{\"command\":\"%s\",\"topic\":\"%s\",\"mode\":\"%s\",\"size\":%ld,\"msgs\":%ld,"
               "\"failed\":%ld,\"seconds\":%.3f,\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f", what,
               L.topic, L.mode, L.size, msgs, failed, secs, rate, mbs);
        if (h != NULL && h->total > 0) {
            printf(",\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p99.9\":%.1f,"
                   "\"p99.99\":%.1f,\"max\":%.1f,\"samples\":%llu}",
                   rmq_hist_at(h, 50) / 1e3, rmq_hist_at(h, 90) / 1e3, rmq_hist_at(h, 99) / 1e3,
                   rmq_hist_at(h, 99.9) / 1e3, rmq_hist_at(h, 99.99) / 1e3, h->max / 1e3,
                   (unsigned long long)h->total);
        }
        printf(",\"broker\":{\"flushDiskType\":\"%s\",\"io_uring_enter_per_msg\":%.3f,"
               "\"cpu_us_per_msg\":%.2f}}\n", after->flush, enters, cpu);
        return;
    }
    printf("rmq-bench %s: topic %s, %ld B messages, mode %s, %s loop, %ld connection(s); "
           "broker flushDiskType=%s\n", what, L.topic, L.size, L.mode,
           L.rate > 0 ? "open" : "closed", L.connections, after->flush);
    printf("  %ld messages (%ld failed) in %.2f s: %.0f msgs/s, %.1f MB/s\n", msgs, failed, secs,
           rate, mbs);
    if (h != NULL && h->total > 0) {
        printf("  latency us:");
        for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
            printf("  p%g %.1f", pcts[i], rmq_hist_at(h, pcts[i]) / 1e3);
        }
        printf("  max %.1f  (%llu samples%s)\n", h->max / 1e3, (unsigned long long)h->total,
               L.rate > 0 ? ", from when each message was due" : "");
    }
    printf("  broker: %.3f io_uring_enter per message, %.2f us CPU per message\n", enters, cpu);
    if (L.plot != NULL && h != NULL && h->total > 0) {
        plot(h, what);
    }
}

/* ---- commands ------------------------------------------------------------------------------------ */

static int
run_produce(bool e2e)
{
    struct rmq_options o = {.namesrv = L.namesrv};
    struct rmq_admin *a;
    struct broker_figs before = {0}, after;
    struct rmq_push_consumer *pc = NULL;
    struct rmq_hist *total = calloc(1, sizeof(*total));
    long sent = 0, failed = 0;
    char group[64];
    double secs;

    if (rmq_admin_create(&a, &o) < 0 || brokers_find(a, &before) < 0) {
        free(total);
        return 1;
    }
    after = before;
    if (e2e) {
        snprintf(group, sizeof(group), "BENCH_E2E_%d", (int)getpid());
        pc = consumer_start(group, true, true);
        if (pc == NULL) {
            rmq_admin_destroy(a);
            free(total);
            return 1;
        }
        while (rmq_push_assigned_count(pc) == 0) {
            usleep(10000);
        }
    }
    broker_sample(a, &before);
    run_start_ns = rmq_clock_mono_ns();
    run_end_ns = L.duration_s > 0 ? run_start_ns + (uint64_t)(L.duration_s * 1e9) : UINT64_MAX;
    for (long i = 0; i < L.connections; i++) {
        memset(&C[i], 0, sizeof(C[i]));
        C[i].index = (int)i;
        C[i].stamp = e2e;
        pthread_create(&C[i].thread, NULL, produce_thread, &C[i]);
    }
    for (long i = 0; i < L.connections; i++) {
        pthread_join(C[i].thread, NULL);
        rmq_hist_merge(total, &C[i].hist);
        sent += C[i].sent;
        failed += C[i].failed;
    }
    secs = (double)(rmq_clock_mono_ns() - run_start_ns) / 1e9;
    if (e2e) {
        uint64_t end = rmq_clock_mono_ns() + 10000000000ull;

        while (atomic_load(&e2e_received) < sent - failed && rmq_clock_mono_ns() < end) {
            usleep(1000);
        }
        rmq_push_consumer_destroy(pc);
    }
    broker_sample(a, &after);
    report(e2e ? "e2e" : "produce", sent - failed, failed, secs, (long long)(sent - failed) * L.size,
           e2e ? &e2e_hist : total, &before, &after);
    rmq_admin_destroy(a);
    free(total);
    return failed > 0 ? 1 : 0;
}

static int
run_consume(void)
{
    struct rmq_options o = {.namesrv = L.namesrv};
    struct rmq_admin *a;
    struct broker_figs before = {0}, after;
    struct rmq_push_consumer *pcs[MAX_CONNS];
    char group[64];
    uint64_t t0, end;
    long want = L.count > 0 ? L.count : -1;

    if (rmq_admin_create(&a, &o) < 0 || brokers_find(a, &before) < 0) {
        return 1;
    }
    after = before;
    broker_sample(a, &before);
    snprintf(group, sizeof(group), "BENCH_CONSUMER_%d", (int)getpid());
    t0 = rmq_clock_mono_ns();
    end = t0 + (uint64_t)((L.duration_s > 0 ? L.duration_s : 60) * 1e9);
    for (long i = 0; i < L.connections; i++) {
        pcs[i] = consumer_start(group, L.from != NULL && strcmp(L.from, "last") == 0, false);
        if (pcs[i] == NULL) {
            return 1;
        }
    }
    while ((want < 0 || atomic_load(&consumed) < want) && rmq_clock_mono_ns() < end) {
        usleep(1000);
    }
    for (long i = 0; i < L.connections; i++) {
        rmq_push_consumer_destroy(pcs[i]);
    }
    broker_sample(a, &after);
    report("consume", atomic_load(&consumed), 0, (double)(rmq_clock_mono_ns() - t0) / 1e9,
           atomic_load(&consumed_bytes), NULL, &before, &after);
    rmq_admin_destroy(a);
    return want > 0 && atomic_load(&consumed) < want;
}

static int
run_query(void)
{
    struct rmq_options o = {.namesrv = L.namesrv};
    struct rmq_admin *a;
    struct broker_figs before = {0}, after;
    struct rmq_hist *h = calloc(1, sizeof(*h));
    long n = L.count > 0 ? L.count : 10000;
    long queries = L.queries > 0 ? L.queries : 10000;
    long wrong = 0;
    uint32_t seed = 1;
    uint64_t t0;
    int ret;

    if (rmq_admin_create(&a, &o) < 0 || brokers_find(a, &before) < 0) {
        free(h);
        return 1;
    }
    after = before;
    /* n keyed messages first: bench-0-<i> */
    L.keys = true;
    L.mode = "batch";
    L.batch = L.batch > 0 ? L.batch : 100;
    L.connections = 1;
    L.count = n;
    run_start_ns = rmq_clock_mono_ns();
    run_end_ns = UINT64_MAX;
    memset(&C[0], 0, sizeof(C[0]));
    produce_thread(&C[0]);
    broker_sample(a, &before);
    t0 = rmq_clock_mono_ns();
    for (long q = 0; q < queries; q++) {
        struct rmq_pull_result r;
        char key[48];
        uint64_t s;

        seed = seed * 1103515245u + 12345u;
        snprintf(key, sizeof(key), "bench-0-%u", (unsigned)(seed % (uint32_t)C[0].sent));
        s = rmq_clock_mono_ns();
        ret = rmq_admin_query(a, L.topic, key, false, 64, 0, 0, &r);
        rmq_hist_record(h, rmq_clock_mono_ns() - s);
        wrong += ret < 0 || r.count == 0;
        rmq_pull_result_free(&r);
    }
    broker_sample(a, &after);
    L.mode = "query";
    report("query", queries, wrong, (double)(rmq_clock_mono_ns() - t0) / 1e9, 0, h, &before,
           &after);
    rmq_admin_destroy(a);
    free(h);
    return wrong > 0;
}

int
rmq_bench_load(const char *cmd, int argc, char **argv)
{
    const char *env = getenv("NAMESRV_ADDR");

    L.cmd = cmd;
    L.namesrv = arg_str(argc, argv, "namesrv", env != NULL && env[0] ? env : "127.0.0.1:9876");
    L.topic = arg_str(argc, argv, "topic", "BenchTopic");
    L.mode = arg_str(argc, argv, "mode", "async");
    L.plot = arg_str(argc, argv, "plot", NULL);
    L.from = arg_str(argc, argv, "from", "first");
    L.size = rmq_bench_arg_long(argc, argv, "size", 1024);
    L.count = rmq_bench_arg_long(argc, argv, "count", 0);
    L.duration_s = atof(arg_str(argc, argv, "duration", "0"));
    L.rate = atof(arg_str(argc, argv, "rate", "0"));
    L.inflight = rmq_bench_arg_long(argc, argv, "inflight", 64);
    L.connections = rmq_bench_arg_long(argc, argv, "connections", 1);
    L.queues = rmq_bench_arg_long(argc, argv, "queues", 0);
    L.batch = rmq_bench_arg_long(argc, argv, "batch", 32);
    L.queries = rmq_bench_arg_long(argc, argv, "queries", 10000);
    L.keys = arg_flag(argc, argv, "keys");
    L.json = arg_flag(argc, argv, "json");
    if (L.count <= 0 && L.duration_s <= 0) {
        L.count = strcmp(cmd, "consume") == 0 ? 0 : 100000;
        L.duration_s = strcmp(cmd, "consume") == 0 ? 10 : 0;
    }
    if (L.connections < 1 || L.connections > MAX_CONNS || L.size < (strcmp(cmd, "e2e") == 0 ? 8 : 1) ||
        L.size > (4 << 20) || L.inflight < 1 || L.batch < 1 ||
        (strcmp(L.mode, "sync") != 0 && strcmp(L.mode, "async") != 0 &&
         strcmp(L.mode, "oneway") != 0 && strcmp(L.mode, "batch") != 0)) {
        fprintf(stderr, "rmq-bench %s: --connections 1..%d, --size 1..4 MiB (e2e: >= 8), "
                "--mode sync|async|oneway|batch\n", cmd, MAX_CONNS);
        return 2;
    }
    if (strcmp(L.mode, "sync") == 0) {
        L.inflight = 1;
    }
    if (strcmp(cmd, "produce") == 0) {
        return run_produce(false);
    }
    if (strcmp(cmd, "e2e") == 0) {
        return run_produce(true);
    }
    if (strcmp(cmd, "consume") == 0) {
        return run_consume();
    }
    return run_query();
}
