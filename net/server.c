/*
 * Remoting server; see server.h. Accept is multishot: one SQE yields every new
 * connection until the kernel ends it (re-armed then). A connection that does not
 * fit the table is closed through the ring and counted, with one rate-limited line
 * naming the setting to raise.
 */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

#define ACCEPT_RETRY_MS 100

static void accept_done(struct rmq_op *op, int32_t res, uint32_t flags);
static void refuse_done(struct rmq_op *op, int32_t res, uint32_t flags);
static void conn_frame(struct rmq_conn *c, struct rmq_frame *f, const struct rmq_bufref *ref);
static void conn_closed(struct rmq_conn *c, int err);

static const struct rmq_conn_ops server_conn_ops = {
    .on_frame = conn_frame,
    .on_close = conn_closed,
};

static void
accept_arm(struct rmq_server *srv)
{
    struct io_uring_sqe *sqe = rmq_loop_sqe(srv->nl->loop, &srv->accept_op);

    io_uring_prep_multishot_accept(sqe, srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    rmq_loop_commit(srv->nl->loop, &srv->accept_op, sqe);
    srv->accepting = true;
}

int
rmq_listen_tcp(const char *who, const char *host, uint16_t port, int backlog, uint16_t *bound)
{
    struct sockaddr_in addr;
    socklen_t alen = sizeof(addr);
    int one = 1;
    int fd;
    int ret;

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        RMQ_ERROR("%s: listen address invalid host=%s, expected an IPv4 address", who, host);
        return -EINVAL;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ret = -errno;
        RMQ_ERROR("%s: socket failed err=%s", who, strerror(errno));
        return ret;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, backlog) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &alen) < 0) {
        ret = -errno;
        RMQ_ERROR("%s: cannot listen host=%s port=%u err=%s", who, host, port, strerror(errno));
        close(fd);
        return ret;
    }
    *bound = ntohs(addr.sin_port);
    return fd;
}

int
rmq_server_init(struct rmq_server *srv, struct rmq_net_loop *nl,
                const struct rmq_server_config *cfg)
{
    const char *host = cfg && cfg->host ? cfg->host : "0.0.0.0";
    int ret;

    memset(srv, 0, sizeof(*srv));
    srv->nl = nl;
    srv->max_conns = cfg && cfg->max_conns ? cfg->max_conns : 1024;
    srv->conns = calloc(srv->max_conns, sizeof(*srv->conns));
    if (srv->conns == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = srv->max_conns; i-- > 0;) {
        srv->conns[i].owner = srv->free_conn;
        srv->free_conn = &srv->conns[i];
    }
    srv->listen_fd = rmq_listen_tcp("net", host, cfg ? cfg->port : 0,
                                    cfg && cfg->backlog ? cfg->backlog : 1024, &srv->port);
    if (srv->listen_fd < 0) {
        ret = srv->listen_fd;
        goto out_free;
    }
    rmq_op_init(&srv->accept_op, accept_done);
    rmq_op_init(&srv->refuse_op, refuse_done);
    accept_arm(srv);
    RMQ_INFO("net: listening host=%s port=%u max_conns=%u", host, srv->port, srv->max_conns);
    return 0;

out_free:
    free(srv->conns);
    srv->conns = NULL;
    return ret;
}

void
rmq_server_handle(struct rmq_server *srv, int code, rmq_request_fn fn, void *ctx)
{
    RMQ_ASSERT(code >= 0 && code < RMQ_REQ_CODE_LIMIT);
    srv->handlers[code].fn = fn;
    srv->handlers[code].ctx = ctx;
}

void
rmq_server_on_response(struct rmq_server *srv, rmq_request_fn fn, void *ctx)
{
    srv->on_response = fn;
    srv->on_response_ctx = ctx;
}

void
rmq_server_on_conn_close(struct rmq_server *srv, rmq_conn_close_fn fn, void *ctx)
{
    srv->on_conn_close = fn;
    srv->on_conn_close_ctx = ctx;
}

uint32_t
rmq_server_conn_index(const struct rmq_server *srv, const struct rmq_conn *c)
{
    RMQ_ASSERT(c >= srv->conns && c < srv->conns + srv->max_conns);
    return (uint32_t)(c - srv->conns);
}

static void
check_stopped(struct rmq_server *srv)
{
    if (rmq_server_is_stopped(srv) && srv->on_stopped != NULL) {
        void (*fn)(struct rmq_server *) = srv->on_stopped;

        srv->on_stopped = NULL;
        fn(srv);
    }
}

static void
refuse_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_server *srv = rmq_container_of(op, struct rmq_server, refuse_op);

    (void)res;
    (void)flags;
    check_stopped(srv);
}

static void
accept_retry_fire(struct rmq_timer *t)
{
    struct rmq_server *srv = rmq_container_of(t, struct rmq_server, accept_retry);

    if (!srv->accepting && !srv->stopping && !srv->accept_off) {
        accept_arm(srv);
    }
}

static void
accept_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_server *srv = rmq_container_of(op, struct rmq_server, accept_op);
    struct rmq_conn *c;

    if (!(flags & IORING_CQE_F_MORE)) {
        srv->accepting = false;
    }
    if (res < 0) {
        if (srv->stopping || srv->accept_off) {
            if (!srv->accepting && srv->listen_fd >= 0) {
                close(srv->listen_fd);      /* nothing references it any more */
                srv->listen_fd = -1;
            }
            check_stopped(srv);
            return;
        }
        /* EMFILE/ENFILE/ENOMEM: keep serving existing connections, retry shortly. */
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "net: accept failed port=%u err=%s, retrying in %dms",
                   srv->port, strerror(-res), ACCEPT_RETRY_MS);
        if (!srv->accepting) {
            rmq_timer_arm(srv->nl->loop, &srv->accept_retry, ACCEPT_RETRY_MS * 1000000ull,
                          accept_retry_fire);
        }
        return;
    } else if (srv->stopping || srv->accept_off) {
        close(res);
    } else if (srv->free_conn == NULL || srv->refuse_op.in_flight) {
        struct io_uring_sqe *sqe;

        srv->stats.refused++;
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000,
                   "net: connection table full port=%u conns=%u, refusing; raise max_conns",
                   srv->port, srv->max_conns);
        if (srv->refuse_op.in_flight) {
            close(res);
        } else {
            sqe = rmq_loop_sqe(srv->nl->loop, &srv->refuse_op);
            io_uring_prep_close(sqe, res);
            rmq_loop_commit(srv->nl->loop, &srv->refuse_op, sqe);
        }
    } else {
        c = srv->free_conn;
        srv->free_conn = c->owner;
        srv->live_conns++;
        srv->stats.accepted++;
        rmq_conn_open(c, srv->nl, res, &server_conn_ops, srv);
    }
    if (!srv->accepting && !srv->stopping && !srv->accept_off) {
        accept_arm(srv);
    }
}

static void
conn_frame(struct rmq_conn *c, struct rmq_frame *f, const struct rmq_bufref *ref)
{
    struct rmq_server *srv = c->owner;
    struct rmq_header *h = &f->h;

    if (rmq_header_is_response(h)) {
        if (srv->on_response != NULL) {
            srv->on_response(c, f, ref, srv->on_response_ctx);
        } else {
            RMQ_DEBUG("net: unexpected response peer=%s opaque=%d, dropped", c->peer_str,
                      h->opaque);
        }
        return;
    }
    srv->stats.requests++;
    if (h->code >= 0 && h->code < RMQ_REQ_CODE_LIMIT && srv->handlers[h->code].fn != NULL) {
        srv->handlers[h->code].fn(c, f, ref, srv->handlers[h->code].ctx);
        return;
    }
    srv->stats.unknown_codes++;
    RMQ_LOG_RL(RMQ_LOG_INFO, 5000, "net: request code not supported peer=%s code=%d",
               c->peer_str, h->code);
    rmq_conn_reply_not_supported(c, h);
}

static void
conn_closed(struct rmq_conn *c, int err)
{
    struct rmq_server *srv = c->owner;

    if (srv->on_conn_close != NULL) {
        srv->on_conn_close(c, err, srv->on_conn_close_ctx);
    }
    c->owner = srv->free_conn;
    srv->free_conn = c;
    srv->live_conns--;
    check_stopped(srv);
}

void
rmq_server_stop_accepting(struct rmq_server *srv)
{
    if (srv->accept_off || srv->stopping) {
        return;
    }
    srv->accept_off = true;
    rmq_timer_cancel(srv->nl->loop, &srv->accept_retry);
    if (srv->accepting) {
        rmq_loop_cancel(srv->nl->loop, &srv->accept_op);
    } else if (srv->listen_fd >= 0) {
        close(srv->listen_fd);
        srv->listen_fd = -1;
    }
}

void
rmq_server_stop(struct rmq_server *srv)
{
    if (srv->stopping) {
        return;
    }
    rmq_server_stop_accepting(srv);
    srv->stopping = true;
    for (uint32_t i = 0; i < srv->max_conns; i++) {
        if (srv->conns[i].state == RMQ_CONN_OPEN) {
            rmq_conn_close(&srv->conns[i], 0);
        }
    }
    check_stopped(srv);
}

bool
rmq_server_is_stopped(const struct rmq_server *srv)
{
    return srv->stopping && srv->live_conns == 0 && srv->accept_op.in_flight == 0 &&
           srv->refuse_op.in_flight == 0;
}

void
rmq_server_fini(struct rmq_server *srv)
{
    RMQ_ASSERT(srv->conns == NULL || rmq_server_is_stopped(srv));
    if (srv->listen_fd >= 0) {
        close(srv->listen_fd);
        srv->listen_fd = -1;
    }
    free(srv->conns);
    srv->conns = NULL;
}
