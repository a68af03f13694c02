/*
 * rmq-broker: the broker daemon. One loop thread serves clients, writes the store
 * and, with --standalone, answers as a NameServer too. SIGTERM or SIGINT stop it
 * gracefully (broker.c: stop accepting, answer in-flight sends, unregister, close,
 * persist offsets, flush and checkpoint the store, remove the abort file), exit 0.
 * Signals arrive through a signalfd read on the ring: no asynchronous handlers.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "broker/broker.h"
#include "core/log.h"
#include "core/loop.h"
#include "net/conn.h"

static struct {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_broker *b;
    int sig_fd;
    struct signalfd_siginfo sig;
    struct rmq_op sig_op;
    int exit_code;
    bool stopping;
} D;

static void
stopped(void *arg, int err)
{
    (void)arg;
    if (err < 0) {
        D.exit_code = 1;
    }
    rmq_loop_stop(&D.loop);
}

static void
signal_read(struct rmq_op *op, int32_t res, uint32_t flags)
{
    (void)op;
    (void)flags;
    if (res == -EINTR || res == -EAGAIN || (res > 0 && D.stopping)) {
        struct io_uring_sqe *sqe = rmq_loop_sqe(&D.loop, &D.sig_op);

        io_uring_prep_read(sqe, D.sig_fd, &D.sig, sizeof(D.sig), 0);
        rmq_loop_commit(&D.loop, &D.sig_op, sqe);
        if (res > 0) {
            RMQ_WARN("broker: %s received while stopping; still stopping",
                     strsignal((int)D.sig.ssi_signo));
        }
        return;
    }
    RMQ_INFO("broker: %s received, stopping", res == (int32_t)sizeof(D.sig)
             ? strsignal((int)D.sig.ssi_signo) : "signal read failed");
    D.stopping = true;
    {
        /* keep reading so a second signal is reported, not left pending */
        struct io_uring_sqe *sqe = rmq_loop_sqe(&D.loop, &D.sig_op);

        io_uring_prep_read(sqe, D.sig_fd, &D.sig, sizeof(D.sig), 0);
        rmq_loop_commit(&D.loop, &D.sig_op, sqe);
    }
    rmq_broker_stop(D.b, stopped, NULL);
}

/*
 * Every consume queue file and commitlog segment keeps its descriptor while the store
 * runs (mapped, and fdatasync'd at checkpoints), so a broker with many topics and queues
 * needs more than the usual soft limit of 1024: past it, new queues get no files (their
 * messages wait undelivered) and a restart cannot open them all. The soft limit goes
 * up to the hard one, as the reference's operators are told to do with ulimit -n.
 */
static void
raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        RMQ_WARN("broker: reading the open files limit failed err=%s", strerror(errno));
        return;
    }
    was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            RMQ_WARN("broker: raising the open files limit from %llu to %llu failed err=%s",
                     (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = was;
        }
    }
    if (rl.rlim_cur < 65536) {
        RMQ_WARN("broker: open files limit %llu: one descriptor per consume queue file; with "
                 "many topics and queues raise the hard limit (ulimit -Hn, systemd LimitNOFILE)",
                 (unsigned long long)rl.rlim_cur);
    } else if (was != rl.rlim_cur) {
        RMQ_INFO("broker: open files limit %llu (was %llu)", (unsigned long long)rl.rlim_cur,
                 (unsigned long long)was);
    }
}

int
main(int argc, char **argv)
{
    struct rmq_broker_config *cfg = calloc(1, sizeof(*cfg));
    struct rmq_loop_config lcfg = {.name = "broker"};
    struct rmq_net_config ncfg = {
        .recv_buf_count = 1024,
        .recv_buf_size = 32 << 10,
        .tx_chunk_count = 4096,
        .tx_chunk_size = 16 << 10,
    };
    struct io_uring_sqe *sqe;
    char err[512];
    sigset_t mask;
    int ret;

    if (cfg == NULL) {
        return 1;
    }
    if (rmq_config_wants_help(argc, argv)) {
        printf("usage: rmq-broker [--standalone] [--config FILE] [--key=value ...]\n\n");
        rmq_config_print_help(rmq_broker_config_spec(), stdout);
        free(cfg);
        return 0;
    }
    if (rmq_broker_config_parse(cfg, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "rmq-broker: %s (see --help)\n", err);
        free(cfg);
        return 2;
    }
    rmq_log_set_level((enum rmq_log_level)cfg->log_level);
    raise_fd_limit();
    ncfg.limits.max_frame = (uint32_t)cfg->store.maxMessageSize + (1u << 20);
    if (ncfg.limits.max_frame < RMQ_FRAME_REF_MAX) {
        ncfg.limits.max_frame = RMQ_FRAME_REF_MAX;
    }
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    D.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (D.sig_fd < 0) {
        RMQ_ERROR("broker: signalfd failed err=%s, not starting", strerror(errno));
        free(cfg);
        return 1;
    }
    ret = rmq_loop_init(&D.loop, &lcfg);
    if (ret < 0) {
        free(cfg);
        return 1;
    }
    ret = rmq_net_loop_init(&D.nl, &D.loop, &ncfg, 1);
    if (ret < 0) {
        RMQ_ERROR("broker: network buffers not set up err=%s, not starting", strerror(-ret));
        goto out_loop;
    }
    ret = rmq_broker_create(&D.b, &D.nl, cfg);
    free(cfg);
    cfg = NULL;
    if (ret < 0) {
        if (D.b != NULL) {
            rmq_broker_stop(D.b, stopped, NULL);
            rmq_loop_run(&D.loop);
            rmq_broker_destroy(D.b);
        }
        goto out_nl;
    }
    rmq_op_init(&D.sig_op, signal_read);
    sqe = rmq_loop_sqe(&D.loop, &D.sig_op);
    io_uring_prep_read(sqe, D.sig_fd, &D.sig, sizeof(D.sig), 0);
    rmq_loop_commit(&D.loop, &D.sig_op, sqe);
    /* one line a supervisor or test can wait for */
    RMQ_INFO("broker: ready port=%u namesrv_port=%u", rmq_broker_port(D.b),
             rmq_broker_namesrv_port(D.b));
    ret = rmq_loop_run(&D.loop);
    if (ret < 0) {
        RMQ_ERROR("broker: loop failed err=%s, exiting", strerror(-ret));
        D.exit_code = 1;
    }
    rmq_broker_destroy(D.b);
out_nl:
    rmq_net_loop_fini(&D.nl);
out_loop:
    rmq_loop_fini(&D.loop);
    close(D.sig_fd);
    free(cfg);
    return ret < 0 ? 1 : D.exit_code;
}
