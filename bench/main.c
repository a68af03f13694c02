/*
 * rmq-bench: benchmarks of ringmq. Figures are medians over repeated runs, each
 * beside a baseline measured in the same run, because these machines are shared
 * and noisy: quote the ratios.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "core/log.h"

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: rmq-bench COMMAND [--key=value ...]\n"
            "  produce|consume|e2e|query  load against a running cluster via libringmq:\n"
            "          --namesrv=HOST:PORT ($NAMESRV_ADDR, else 127.0.0.1:9876) --topic=BenchTopic\n"
            "          --size=1024 --count=N | --duration=SECONDS --rate=MSGS_PER_S (open loop)\n"
            "          | --inflight=64 (closed loop) --connections=1 --queues=N (create the\n"
            "          topic) --mode=sync|async|oneway|batch --batch=32 --keys --json\n"
            "          --plot=FILE.png; consume: --from=first|last; query: --queries=N\n"
            "  engine  request/response RTT through the io_uring engine vs a blocking\n"
            "          ping-pong, and io_uring_enter calls per request at 1 and 64 in flight\n"
            "          --runs=5 --requests=20000 --size=1024\n"
            "  codec   frame decode + encode cost per request, JSON and binary headers\n"
            "          --runs=5 --iterations=200000\n"
            "  store   commitlog append throughput vs fio, SYNC_FLUSH latency vs a\n"
            "          write+fdatasync loop, group commit with 64 appenders, each in the\n"
            "          write modes mmap, writev and auto\n"
            "          --runs=3 --mib=256 --durable-mib=4096 --seg-mib=1024 --sync-samples=2000\n"
            "          --append=0 (no append table) --dir=PATH (last)\n"
            "  recovery  store open time after a crash: from the checkpoint vs a full scan\n"
            "          --runs=3 --log-mib=4096 --tail-mib=64 --dir=PATH (last)\n"
            "  namesrv GET_ROUTEINFO_BY_TOPIC req/s and p50/p99 with 10,000 topics registered,\n"
            "          64 in flight, beside the engine's floor (an unhandled code)\n"
            "          --runs=5 --requests=200000 --inflight=64 --topics=10000\n"
            "  broker  the rmq-broker daemon: sync send p50/p99/p999 beside a ping-pong\n"
            "          baseline, pipelined sends (ASYNC_FLUSH, SYNC_FLUSH), pull MB/s,\n"
            "          io_uring_enter calls per message\n"
            "          --runs=3 --count=20000 --pipelined=200000 --inflight=64 --size=1024\n"
            "          --delayed=100000\n"
            "          --dir=PATH (default /tmp/rmq-bench-broker; removed after)\n"
            "  client  libringmq against the same broker: sync send p50/p99/p999 beside the\n"
            "          ping-pong baseline, async sends pipelined, a push consumer draining them\n"
            "          --runs=3 --count=20000 --pipelined=200000 --inflight=1000 --size=1024\n"
            "          (also: QUERY_MESSAGE by unique id, and sends without the key index)\n"
            "  nats    a NATS JetStream peer for bench/compare.sh: publishes with acks\n"
            "          --port=4222 --count=100000 --size=1024 --inflight=1\n"
            "  index   the key index in process: puts/s, warm lookup p50/p99/p999\n"
            "          --keys=10000000 --queries=100000 --dir=PATH (removed after)\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    rmq_log_set_level(RMQ_LOG_WARN);
    if (strcmp(argv[1], "engine") == 0) {
        return rmq_bench_engine(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "codec") == 0) {
        return rmq_bench_codec(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "store") == 0) {
        return rmq_bench_store(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "namesrv") == 0) {
        return rmq_bench_namesrv(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "broker") == 0) {
        return rmq_bench_broker(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "produce") == 0 || strcmp(argv[1], "consume") == 0 ||
        strcmp(argv[1], "e2e") == 0 || strcmp(argv[1], "query") == 0) {
        return rmq_bench_load(argv[1], argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "nats") == 0) {
        return rmq_bench_nats(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "index") == 0) {
        return rmq_bench_index(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "client") == 0) {
        return rmq_bench_client(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "recovery") == 0) {
        return rmq_bench_recovery(argc - 1, argv + 1);
    }
    fprintf(stderr, "rmq-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
