/*
 * rmq-namesrv: the NameServer daemon. One loop thread serves everything (see
 * namesrv.c for why one is plenty). SIGTERM or SIGINT stop it gracefully: stop
 * the expiry scan and persist the KV config, stop accepting, close every
 * connection, then exit 0. Signals arrive through a signalfd read on the ring, so
 * the loop never runs a handler asynchronously.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "namesrv/namesrv.h"
#include "net/conn.h"
#include "net/server.h"

static struct {
    struct rmq_loop loop;
    struct rmq_net_loop nl;
    struct rmq_server srv;
    struct rmq_namesrv *ns;
    int sig_fd;
    struct signalfd_siginfo sig;
    struct rmq_op sig_op;
    int exit_code;
} D;

static void
server_stopped(struct rmq_server *srv)
{
    (void)srv;
    rmq_loop_stop(&D.loop);
}

static void
signal_read(struct rmq_op *op, int32_t res, uint32_t flags)
{
    (void)op;
    (void)flags;
    if (res == -EINTR || res == -EAGAIN) {
        struct io_uring_sqe *sqe = rmq_loop_sqe(&D.loop, &D.sig_op);

        io_uring_prep_read(sqe, D.sig_fd, &D.sig, sizeof(D.sig), 0);
        rmq_loop_commit(&D.loop, &D.sig_op, sqe);
        return;
    }
    RMQ_INFO("namesrv: %s received, stopping", res == (int32_t)sizeof(D.sig)
             ? strsignal((int)D.sig.ssi_signo) : "signal read failed");
    if (rmq_namesrv_stop(D.ns) < 0) {
        D.exit_code = 1;
    }
    D.srv.on_stopped = server_stopped;
    rmq_server_stop(&D.srv);
}

int
main(int argc, char **argv)
{
    struct rmq_namesrv_config cfg;
    struct rmq_loop_config lcfg = {.name = "namesrv"};
    struct rmq_net_config ncfg = {
        .recv_buf_count = 256,
        .recv_buf_size = 32 << 10,
        .tx_chunk_count = 2048,
        .tx_chunk_size = 16 << 10,
    };
    struct rmq_server_config scfg;
    struct io_uring_sqe *sqe;
    char err[512];
    sigset_t mask;
    int ret;

    if (rmq_config_wants_help(argc, argv)) {
        rmq_config_print_help(&rmq_namesrv_config_spec, stdout);
        return 0;
    }
    if (rmq_config_parse_args(&rmq_namesrv_config_spec, &cfg, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "rmq-namesrv: %s (see --help)\n", err);
        return 2;
    }
    rmq_log_set_level((enum rmq_log_level)cfg.log_level);
    /* block before any thread exists so the signalfd sees every SIGTERM/SIGINT */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    D.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (D.sig_fd < 0) {
        RMQ_ERROR("namesrv: signalfd failed err=%s, not starting", strerror(errno));
        return 1;
    }
    ret = rmq_loop_init(&D.loop, &lcfg);
    if (ret < 0) {
        return 1;
    }
    ret = rmq_net_loop_init(&D.nl, &D.loop, &ncfg, 1);
    if (ret < 0) {
        RMQ_ERROR("namesrv: network buffers not set up err=%s, not starting", strerror(-ret));
        goto out_loop;
    }
    scfg = (struct rmq_server_config){
        .host = cfg.bind_address,
        .port = (uint16_t)cfg.listen_port,
        .max_conns = (uint32_t)cfg.max_connections,
    };
    ret = rmq_server_init(&D.srv, &D.nl, &scfg);
    if (ret < 0) {
        goto out_nl;
    }
    ret = rmq_namesrv_create(&D.ns, &D.srv, &cfg);
    if (ret < 0) {
        D.srv.on_stopped = server_stopped;
        rmq_server_stop(&D.srv);
        rmq_loop_run(&D.loop);
        goto out_srv;
    }
    rmq_op_init(&D.sig_op, signal_read);
    sqe = rmq_loop_sqe(&D.loop, &D.sig_op);
    io_uring_prep_read(sqe, D.sig_fd, &D.sig, sizeof(D.sig), 0);
    rmq_loop_commit(&D.loop, &D.sig_op, sqe);
    RMQ_INFO("namesrv: serving address=%s port=%u", cfg.bind_address, D.srv.port);
    ret = rmq_loop_run(&D.loop);
    if (ret < 0) {
        RMQ_ERROR("namesrv: loop failed err=%s, exiting", strerror(-ret));
        D.exit_code = 1;
    }
    rmq_namesrv_destroy(D.ns);
    RMQ_INFO("namesrv: stopped");
out_srv:
    rmq_server_fini(&D.srv);
out_nl:
    rmq_net_loop_fini(&D.nl);
out_loop:
    rmq_loop_fini(&D.loop);
    close(D.sig_fd);
    return ret < 0 ? 1 : D.exit_code;
}
