/*
 * Client connections; see client.h. Pending calls sit in a power-of-two table of
 * twice max_pending slots; each call takes the next opaque whose slot is free, so
 * a response finds its call with one index and one compare, and a response for a
 * call that timed out (or never existed) finds nothing and is dropped.
 */
#include "net/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

static void connect_start(struct rmq_client *cl);
static void conn_frame(struct rmq_conn *c, struct rmq_frame *f, const struct rmq_bufref *ref);
static void conn_closed(struct rmq_conn *c, int err);

static const struct rmq_conn_ops client_conn_ops = {
    .on_frame = conn_frame,
    .on_close = conn_closed,
};

static void
notify_state(struct rmq_client *cl)
{
    if (cl->on_state != NULL) {
        cl->on_state(cl);
    }
}

static bool
stop_done(struct rmq_client *cl)
{
    return cl->state == RMQ_CLIENT_STOPPING && cl->conn.state == RMQ_CONN_CLOSED &&
           cl->connect_op.in_flight == 0 && cl->sock_fd < 0;
}

static void
maybe_stopped(struct rmq_client *cl)
{
    if (stop_done(cl)) {
        cl->state = RMQ_CLIENT_STOPPED;
        notify_state(cl);
    }
}

static void
fail_pending(struct rmq_client *cl, int err)
{
    for (uint32_t i = 0; i <= cl->pending_mask && cl->pending_count > 0; i++) {
        struct rmq_call *call = cl->pending[i];

        if (call == NULL) {
            continue;
        }
        cl->pending[i] = NULL;
        cl->pending_count--;
        rmq_timer_cancel(cl->nl->loop, &call->timer);
        call->done(call, err, NULL);
    }
}

static void
reconnect_fire(struct rmq_timer *t)
{
    struct rmq_client *cl = rmq_container_of(t, struct rmq_client, reconnect_timer);

    if (cl->state == RMQ_CLIENT_DISCONNECTED) {
        connect_start(cl);
    }
}

static void
reconnect_schedule(struct rmq_client *cl)
{
    if (cl->cfg.no_reconnect || cl->state != RMQ_CLIENT_DISCONNECTED ||
        rmq_timer_is_armed(&cl->reconnect_timer)) {
        return;
    }
    rmq_timer_arm(cl->nl->loop, &cl->reconnect_timer, (uint64_t)cl->backoff_ms * 1000000u,
                  reconnect_fire);
    cl->backoff_ms = RMQ_MIN(cl->backoff_ms * 2, cl->cfg.reconnect_max_ms);
}

static void
connect_failed(struct rmq_client *cl, int err)
{
    cl->stats.connect_failures++;
    if (cl->sock_fd >= 0) {
        close(cl->sock_fd);
        cl->sock_fd = -1;
    }
    if (cl->state == RMQ_CLIENT_STOPPING) {
        maybe_stopped(cl);
        return;
    }
    RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "net: connect failed addr=%s err=%s, retrying in %ums",
               cl->addr_str, strerror(-err), cl->backoff_ms);
    cl->state = RMQ_CLIENT_DISCONNECTED;
    reconnect_schedule(cl);
    notify_state(cl);
}

static void
connect_timeout(struct rmq_timer *t)
{
    struct rmq_client *cl = rmq_container_of(t, struct rmq_client, connect_timer);

    if (cl->connect_op.in_flight) {
        rmq_loop_cancel(cl->nl->loop, &cl->connect_op);
    }
}

static void
connect_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_client *cl = rmq_container_of(op, struct rmq_client, connect_op);
    int fd = cl->sock_fd;

    (void)flags;
    rmq_timer_cancel(cl->nl->loop, &cl->connect_timer);
    if (res < 0 || cl->state != RMQ_CLIENT_CONNECTING) {
        connect_failed(cl, res == -ECANCELED ? -ETIMEDOUT : res < 0 ? res : -ECANCELED);
        return;
    }
    cl->sock_fd = -1;
    cl->state = RMQ_CLIENT_CONNECTED;
    cl->backoff_ms = cl->cfg.reconnect_min_ms;
    cl->stats.connects++;
    rmq_conn_open(&cl->conn, cl->nl, fd, &client_conn_ops, cl);
    notify_state(cl);
}

static void
connect_start(struct rmq_client *cl)
{
    struct io_uring_sqe *sqe;

    cl->sock_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (cl->sock_fd < 0) {
        connect_failed(cl, -errno);
        return;
    }
    cl->state = RMQ_CLIENT_CONNECTING;
    sqe = rmq_loop_sqe(cl->nl->loop, &cl->connect_op);
    io_uring_prep_connect(sqe, cl->sock_fd, (struct sockaddr *)&cl->addr, sizeof(cl->addr));
    rmq_loop_commit(cl->nl->loop, &cl->connect_op, sqe);
    rmq_timer_arm(cl->nl->loop, &cl->connect_timer,
                  (uint64_t)cl->cfg.connect_timeout_ms * 1000000u, connect_timeout);
}

int
rmq_client_init(struct rmq_client *cl, struct rmq_net_loop *nl,
                const struct rmq_client_config *cfg)
{
    uint32_t cap = 16;

    memset(cl, 0, sizeof(*cl));
    cl->nl = nl;
    cl->cfg = *cfg;
    cl->sock_fd = -1;
    if (cl->cfg.max_pending == 0) {
        cl->cfg.max_pending = 4096;
    }
    if (cl->cfg.connect_timeout_ms == 0) {
        cl->cfg.connect_timeout_ms = 3000;
    }
    if (cl->cfg.reconnect_min_ms == 0) {
        cl->cfg.reconnect_min_ms = 100;
    }
    if (cl->cfg.reconnect_max_ms == 0) {
        cl->cfg.reconnect_max_ms = 5000;
    }
    cl->backoff_ms = cl->cfg.reconnect_min_ms;
    cl->addr.sin_family = AF_INET;
    cl->addr.sin_port = htons(cfg->port);
    if (cfg->host == NULL || inet_pton(AF_INET, cfg->host, &cl->addr.sin_addr) != 1) {
        RMQ_ERROR("net: client address invalid host=%s, expected an IPv4 address",
                  cfg->host ? cfg->host : "(null)");
        return -EINVAL;
    }
    snprintf(cl->addr_str, sizeof(cl->addr_str), "%s:%u", cfg->host, cfg->port);
    while (cap < 2 * cl->cfg.max_pending) {
        cap *= 2;
    }
    cl->pending = calloc(cap, sizeof(*cl->pending));
    if (cl->pending == NULL) {
        return -ENOMEM;
    }
    cl->pending_mask = cap - 1;
    cl->next_opaque = 1;
    rmq_op_init(&cl->connect_op, connect_done);
    connect_start(cl);
    return 0;
}

static void
call_timeout(struct rmq_timer *t)
{
    struct rmq_call *call = rmq_container_of(t, struct rmq_call, timer);
    struct rmq_client *cl = call->client;
    uint32_t slot = (uint32_t)call->opaque & cl->pending_mask;

    RMQ_ASSERT(cl->pending[slot] == call);
    cl->pending[slot] = NULL;
    cl->pending_count--;
    cl->stats.timeouts++;
    call->done(call, -ETIMEDOUT, NULL);
}

int
rmq_client_call(struct rmq_client *cl, struct rmq_call *call, struct rmq_header *req,
                const void *body, uint32_t body_len, uint32_t timeout_ms)
{
    uint32_t slot;
    int ret;

    if (cl->state != RMQ_CLIENT_CONNECTED) {
        if (cl->state == RMQ_CLIENT_DISCONNECTED && !rmq_timer_is_armed(&cl->reconnect_timer)) {
            connect_start(cl);
        }
        return -ENOTCONN;
    }
    if (cl->pending_count >= cl->cfg.max_pending) {
        return -ENOBUFS;
    }
    /* The table is at most half full, so a free slot is near. Opaques stay >= 0. */
    do {
        call->opaque = (int32_t)(cl->next_opaque & 0x7FFFFFFF);
        cl->next_opaque++;
        slot = (uint32_t)call->opaque & cl->pending_mask;
    } while (cl->pending[slot] != NULL);
    call->client = cl;
    call->timer.heap_idx = 0;
    ret = rmq_timer_arm(cl->nl->loop, &call->timer, (uint64_t)timeout_ms * 1000000u,
                        call_timeout);
    if (ret < 0) {
        return ret;
    }
    req->opaque = call->opaque;
    req->flag &= ~(RMQ_FLAG_RESPONSE | RMQ_FLAG_ONEWAY);
    ret = rmq_conn_send(&cl->conn, req, body, body_len);
    if (ret < 0) {
        rmq_timer_cancel(cl->nl->loop, &call->timer);
        return ret;
    }
    cl->pending[slot] = call;
    cl->pending_count++;
    cl->stats.calls++;
    return 0;
}

int
rmq_client_oneway(struct rmq_client *cl, struct rmq_header *req, const void *body,
                  uint32_t body_len)
{
    if (cl->state != RMQ_CLIENT_CONNECTED) {
        return -ENOTCONN;
    }
    req->opaque = (int32_t)(cl->next_opaque++ & 0x7FFFFFFF);
    req->flag = (req->flag & ~RMQ_FLAG_RESPONSE) | RMQ_FLAG_ONEWAY;
    return rmq_conn_send(&cl->conn, req, body, body_len);
}

static void
conn_frame(struct rmq_conn *c, struct rmq_frame *f, const struct rmq_bufref *ref)
{
    struct rmq_client *cl = c->owner;
    struct rmq_call *call;
    uint32_t slot;

    if (!rmq_header_is_response(&f->h)) {
        if (cl->on_request != NULL) {
            cl->on_request(c, f, ref, cl->on_request_ctx);
        } else {
            rmq_conn_reply_not_supported(c, &f->h);
        }
        return;
    }
    slot = (uint32_t)f->h.opaque & cl->pending_mask;
    call = cl->pending[slot];
    if (call == NULL || call->opaque != f->h.opaque) {
        cl->stats.unmatched++;
        RMQ_DEBUG("net: response matches no call addr=%s opaque=%d, dropped", cl->addr_str,
                  f->h.opaque);
        return;
    }
    cl->pending[slot] = NULL;
    cl->pending_count--;
    rmq_timer_cancel(cl->nl->loop, &call->timer);
    call->done(call, 0, f);
}

static void
conn_closed(struct rmq_conn *c, int err)
{
    struct rmq_client *cl = c->owner;

    if (cl->state == RMQ_CLIENT_STOPPING) {
        fail_pending(cl, -ECANCELED);
        maybe_stopped(cl);
        return;
    }
    RMQ_LOG_RL(RMQ_LOG_INFO, 5000, "net: connection lost addr=%s err=%s, reconnecting",
               cl->addr_str, err ? strerror(-err) : "closed");
    /* Disconnected first: a callback that retries at once sees the truth. */
    cl->state = RMQ_CLIENT_DISCONNECTED;
    fail_pending(cl, -ECONNRESET);
    reconnect_schedule(cl);
    notify_state(cl);
}

void
rmq_client_stop(struct rmq_client *cl)
{
    if (cl->state == RMQ_CLIENT_STOPPING || cl->state == RMQ_CLIENT_STOPPED) {
        return;
    }
    cl->state = RMQ_CLIENT_STOPPING;
    rmq_timer_cancel(cl->nl->loop, &cl->reconnect_timer);
    rmq_timer_cancel(cl->nl->loop, &cl->connect_timer);
    if (cl->connect_op.in_flight) {
        rmq_loop_cancel(cl->nl->loop, &cl->connect_op);
    }
    if (cl->conn.state == RMQ_CONN_OPEN) {
        rmq_conn_close(&cl->conn, 0);       /* conn_closed fails the pending calls */
    } else {
        fail_pending(cl, -ECANCELED);
    }
    maybe_stopped(cl);
}

void
rmq_client_fini(struct rmq_client *cl)
{
    RMQ_ASSERT(cl->state == RMQ_CLIENT_STOPPED || cl->pending == NULL ||
               cl->state == RMQ_CLIENT_DISCONNECTED);
    free(cl->pending);
    cl->pending = NULL;
}

int
rmq_addr_split(const char *addr, char *host, size_t cap, uint16_t *port)
{
    const char *colon = strrchr(addr, ':');
    char *end;
    long p;

    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= cap) {
        return -EINVAL;
    }
    p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p <= 0 || p > 65535) {
        return -EINVAL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = (uint16_t)p;
    return 0;
}
