/* A benchmark client connection on its own loop, the same for every subcommand. */
#include <stdint.h>

#include "bench/bench.h"
#include "core/clock.h"
#include "core/loop.h"
#include "net/client.h"

int
rmq_bench_client_open(struct rmq_loop *loop, struct rmq_net_loop *nl, struct rmq_client *cl,
                      uint16_t port)
{
    struct rmq_loop_config lcfg = {.name = "bench-client"};
    struct rmq_client_config ccfg = {.host = "127.0.0.1", .port = port};
    uint64_t end;

    if (rmq_loop_init(loop, &lcfg) < 0 || rmq_net_loop_init(nl, loop, NULL, 2) < 0 ||
        rmq_client_init(cl, nl, &ccfg) < 0) {
        return -1;
    }
    end = rmq_clock_mono_ns() + 3000000000ull;
    while (!rmq_client_is_connected(cl) && rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(loop, 10000000);
    }
    return rmq_client_is_connected(cl) ? 0 : -1;
}

void
rmq_bench_client_close(struct rmq_loop *loop, struct rmq_net_loop *nl, struct rmq_client *cl)
{
    rmq_client_stop(cl);
    while (cl->state != RMQ_CLIENT_STOPPED) {
        rmq_loop_run_once(loop, 10000000);
    }
    rmq_client_fini(cl);
    rmq_net_loop_fini(nl);
    rmq_loop_fini(loop);
}
