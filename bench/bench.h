/* rmq-bench internals: subcommands and shared statistics helpers. */
#ifndef RMQ_BENCH_H
#define RMQ_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rmq_bench_pct {
    double p50_us;
    double p99_us;
    double p999_us;
};

/* Sorts samples (ns) in place and fills percentiles in µs. */
void rmq_bench_percentiles(uint64_t *samples, size_t n, struct rmq_bench_pct *out);
double rmq_bench_median(double *v, size_t n);     /* sorts v */

/* "--key=value" lookup in argv; def when absent. */
long rmq_bench_arg_long(int argc, char **argv, const char *key, long def);

int rmq_bench_engine(int argc, char **argv);
int rmq_bench_client(int argc, char **argv);
int rmq_bench_index(int argc, char **argv);
/* produce, consume, e2e, query (load.c) */
int rmq_bench_load(const char *cmd, int argc, char **argv);
/* a NATS JetStream publisher for bench/compare.sh (nats.c) */
int rmq_bench_nats(int argc, char **argv);
int rmq_bench_codec(int argc, char **argv);
int rmq_bench_store(int argc, char **argv);
int rmq_bench_recovery(int argc, char **argv);
int rmq_bench_namesrv(int argc, char **argv);

struct rmq_loop;
struct rmq_net_loop;
struct rmq_client;

/* Loop, net loop and client connected to 127.0.0.1:port (3 s at most): 0 or -1. */
int rmq_bench_client_open(struct rmq_loop *loop, struct rmq_net_loop *nl, struct rmq_client *cl,
                          uint16_t port);
/* Stop the client, then tear down all three. */
void rmq_bench_client_close(struct rmq_loop *loop, struct rmq_net_loop *nl,
                            struct rmq_client *cl);

#define RMQ_BENCH_MIN(a, b) ((a) < (b) ? (a) : (b))

/* Blocking sockets (bench/sock.c): 0/-1, frame length or -1, fd or -1. */
int rmq_bench_read_full(int fd, uint8_t *p, size_t len);
int rmq_bench_write_full(int fd, const uint8_t *p, size_t len);
ssize_t rmq_bench_read_frame(int fd, uint8_t *buf, size_t cap);
int rmq_bench_tcp_connect(uint16_t port);
/* The baseline server on 127.0.0.1: echo (reply_len 0) or a reply_len-byte frame (8..256). */
void rmq_bench_pingpong_start(size_t reply_len);
uint16_t rmq_bench_pingpong_port(void);
void rmq_bench_pingpong_stop(void);

int rmq_bench_broker(int argc, char **argv);

/* Run the shell command fmt (one %s: arg); a failure is reported, not fatal. */
void rmq_bench_sh(const char *fmt, const char *arg);

#endif
