/*
 * The master's side of replication (spec/HA.md §2, §4): accept slaves, stream the log
 * to each, take their acks, complete SYNC_MASTER waits. See ha.h.
 *
 * A connection has one recv (acks: 8-byte offsets) and at most one sendmsg in flight.
 * A send carries up to FRAMES_PER_SEND frames: a 12-byte header from the connection's
 * header array, then the bytes themselves as a view into the store's mapping of the
 * segment, pinned until the send completes. The store's written hook starts a send on
 * every idle connection, so a SYNC_MASTER record leaves for the slave in the same loop
 * iteration that its write completed.
 */
#include "ha/ha.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/be.h"
#include "core/log.h"
#include "core/util.h"
#include "net/server.h"

#define MAX_SLAVES 8
#define FRAMES_PER_SEND 32
#define HDR 12
#define TICK_NS (1000ull * 1000 * 1000)

struct ha_conn {
    struct rmq_ha_master *m;
    int fd;                         /* -1: slot free */
    bool closing;
    bool started;                   /* the slave's start offset arrived */
    bool refusing;                  /* outside this log: one heartbeat saying so, then close */
    bool hb_now;                    /* send a heartbeat frame even if one went out lately */
    char peer[64];
    struct rmq_op recv_op;
    struct rmq_op send_op;
    struct rmq_op close_op;
    uint8_t rbuf[64];
    uint32_t rhave;
    uint64_t next;                  /* next log offset to send */
    uint64_t acked;
    uint64_t last_read_ns;
    uint64_t last_send_ns;
    bool sending;
    struct msghdr msg;
    struct iovec iov[FRAMES_PER_SEND * 2];
    uint32_t iov_cnt;
    uint32_t iov_next;
    uint64_t send_left;
    uint8_t hdr[FRAMES_PER_SEND][HDR];
    struct rmq_seg_map *pins[FRAMES_PER_SEND];
    uint32_t pin_cnt;
    uint64_t frame_bytes;           /* log bytes in the send in flight */
    uint32_t frame_cnt;
};

struct rmq_ha_master {
    struct rmq_loop *loop;
    struct rmq_store *store;
    struct rmq_ha_config cfg;
    int listen_fd;
    uint16_t port;
    struct rmq_op accept_op;
    bool stopping;
    struct ha_conn conns[MAX_SLAVES];
    struct rmq_link waits;          /* rmq_ha_wait, targets non-decreasing */
    struct rmq_timer tick;
    struct rmq_timer wait_timer;
    void (*stop_done)(void *arg);
    void *stop_arg;
    struct rmq_ha_master_stats stats;
};

static void conn_close(struct ha_conn *c, const char *why);
static void pump(struct ha_conn *c);

/* ---- waits ---------------------------------------------------------------------------------- */

static void waits_complete(struct rmq_ha_master *m);

static void
wait_timer_fire(struct rmq_timer *t)
{
    struct rmq_ha_master *m = rmq_container_of(t, struct rmq_ha_master, wait_timer);
    uint64_t now = m->loop->now_ns;

    waits_complete(m);              /* those already acked first: they are no timeouts */
    while (!rmq_list_is_empty(&m->waits)) {
        struct rmq_ha_wait *w = rmq_container_of(m->waits.next, struct rmq_ha_wait, link);

        if (w->deadline_ns > now) {
            rmq_timer_arm(m->loop, &m->wait_timer, w->deadline_ns - now, wait_timer_fire);
            return;
        }
        rmq_list_del(&w->link);
        m->stats.wait_timeouts++;
        w->done(w, -ETIMEDOUT);
    }
}

static void
waits_complete(struct rmq_ha_master *m)
{
    while (!rmq_list_is_empty(&m->waits)) {
        struct rmq_ha_wait *w = rmq_container_of(m->waits.next, struct rmq_ha_wait, link);

        if (w->target > m->stats.acked_off) {
            break;
        }
        rmq_list_del(&w->link);
        w->done(w, 0);
    }
    if (rmq_list_is_empty(&m->waits) && rmq_timer_is_armed(&m->wait_timer)) {
        rmq_timer_cancel(m->loop, &m->wait_timer);
    }
}

static void
waits_fail_all(struct rmq_ha_master *m, int status)
{
    while (!rmq_list_is_empty(&m->waits)) {
        struct rmq_ha_wait *w = rmq_container_of(m->waits.next, struct rmq_ha_wait, link);

        rmq_list_del(&w->link);
        w->done(w, status);
    }
    if (rmq_timer_is_armed(&m->wait_timer)) {
        rmq_timer_cancel(m->loop, &m->wait_timer);
    }
}

int
rmq_ha_master_wait(struct rmq_ha_master *m, struct rmq_ha_wait *w, uint64_t target,
                   uint32_t timeout_ms)
{
    if (m->stopping || m->stats.slaves == 0 ||
        (target > m->stats.acked_off && target - m->stats.acked_off >= m->cfg.max_gap)) {
        m->stats.refused_no_slave++;
        return -EAGAIN;
    }
    w->target = target;
    if (target <= m->stats.acked_off) {
        /* already there (an ack overtook the write's completion): answer through the
         * list all the same, so done never runs inside the caller */
        w->deadline_ns = m->loop->now_ns;
    } else {
        w->deadline_ns = m->loop->now_ns + (uint64_t)timeout_ms * 1000000u;
    }
    rmq_list_add_tail(&m->waits, &w->link);
    m->stats.waits++;
    if (target <= m->stats.acked_off) {
        rmq_timer_arm(m->loop, &m->wait_timer, 0, wait_timer_fire);
        return 0;
    }
    if (!rmq_timer_is_armed(&m->wait_timer)) {
        rmq_timer_arm(m->loop, &m->wait_timer, (uint64_t)timeout_ms * 1000000u,
                      wait_timer_fire);
    }
    return 0;
}

/* ---- acks ----------------------------------------------------------------------------------- */

static void recv_arm(struct ha_conn *c);

static void
on_offset(struct ha_conn *c, uint64_t off)
{
    struct rmq_ha_master *m = c->m;
    uint64_t written = rmq_store_written_off(m->store);
    uint64_t seg = rmq_store_seg_size(m->store);

    if (!c->started) {
        uint64_t min = rmq_store_min_off(m->store);
        uint64_t from = off;

        if (from == 0) {
            /* an empty slave gets the newest segment only (HA.md §2.2); its ack stays 0:
             * it has none of what lies before */
            from = RMQ_MAX(written - written % seg, min);
        }
        if (from < min || from > written) {
            /* say where this log is in a heartbeat frame: the slave sees it is not
             * where it expected and stops, instead of waiting here forever */
            RMQ_ERROR("ha: slave %s asks for offset %llu, outside this log [%llu, %llu]: "
                      "refusing it (its log is ahead of or older than the master's)",
                      c->peer, (unsigned long long)from, (unsigned long long)min,
                      (unsigned long long)written);
            m->stats.slaves_refused++;
            c->next = from < min ? min : written;
            c->started = true;
            c->refusing = true;
            c->hb_now = true;
            pump(c);                /* send_done closes */
            return;
        }
        c->started = true;
        c->next = from;
        m->stats.slaves++;
        RMQ_INFO("ha: slave %s starts at offset %llu (log end %llu)", c->peer,
                 (unsigned long long)from, (unsigned long long)written);
        /* where to start, not an ack: the slave has yet to compare its tail before it
         * (a diverged one must not complete SYNC_MASTER waits); it acks after each write */
        return;
    } else if (c->refusing) {
        return;
    } else if (off > written) {
        RMQ_ERROR("ha: slave %s acks offset %llu beyond this log's end %llu: closing",
                  c->peer, (unsigned long long)off, (unsigned long long)written);
        conn_close(c, NULL);
        return;
    }
    if (off > c->acked) {
        c->acked = off;
    }
    if (off > m->stats.acked_off) {
        m->stats.acked_off = off;
        waits_complete(m);
    }
}

static void
recv_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct ha_conn *c = rmq_container_of(op, struct ha_conn, recv_op);
    uint32_t have;

    (void)flags;
    if (c->closing) {
        conn_close(c, NULL);
        return;
    }
    if (res <= 0) {
        conn_close(c, res == 0 ? "closed by the slave" : strerror(-res));
        return;
    }
    c->last_read_ns = c->m->loop->now_ns;
    have = c->rhave + (uint32_t)res;
    if (have >= 8) {
        /* only the last complete value counts (HA.md §2.1) */
        uint32_t last = have / 8 * 8 - 8;
        uint64_t off = rmq_get_be64(c->rbuf + last);

        memmove(c->rbuf, c->rbuf + last + 8, have - last - 8);
        c->rhave = have - last - 8;
        on_offset(c, off);
        if (c->fd < 0 || c->closing) {
            return;
        }
        pump(c);
        if (c->fd < 0 || c->closing) {
            return;                 /* pump closed it (a view failed): no recv after close */
        }
    } else {
        c->rhave = have;
    }
    recv_arm(c);
}

static void
recv_arm(struct ha_conn *c)
{
    struct io_uring_sqe *sqe = rmq_loop_sqe(c->m->loop, &c->recv_op);

    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rhave, sizeof(c->rbuf) - c->rhave, 0);
    rmq_loop_commit(c->m->loop, &c->recv_op, sqe);
}

/* ---- streaming ------------------------------------------------------------------------------ */

static void
unpin_all(struct ha_conn *c)
{
    for (uint32_t i = 0; i < c->pin_cnt; i++) {
        rmq_store_unpin(c->m->store, c->pins[i]);
    }
    c->pin_cnt = 0;
}

static void
send_issue(struct ha_conn *c)
{
    struct io_uring_sqe *sqe = rmq_loop_sqe(c->m->loop, &c->send_op);

    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = c->iov + c->iov_next;
    c->msg.msg_iovlen = c->iov_cnt - c->iov_next;
    io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    rmq_loop_commit(c->m->loop, &c->send_op, sqe);
    c->m->stats.sendmsgs++;
}

static void
send_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct ha_conn *c = rmq_container_of(op, struct ha_conn, send_op);
    uint64_t left;

    (void)flags;
    if (c->closing || res < 0) {
        unpin_all(c);
        c->sending = false;
        conn_close(c, res < 0 && !c->closing ? strerror(-res) : NULL);
        return;
    }
    left = (uint64_t)res;
    c->send_left -= left;
    if (c->send_left > 0) {
        /* short send: skip what went out, send the rest */
        while (left > 0) {
            struct iovec *v = &c->iov[c->iov_next];

            if (left >= v->iov_len) {
                left -= v->iov_len;
                c->iov_next++;
            } else {
                v->iov_base = (uint8_t *)v->iov_base + left;
                v->iov_len -= left;
                left = 0;
            }
        }
        send_issue(c);
        return;
    }
    unpin_all(c);
    c->sending = false;
    c->m->stats.bytes_sent += c->frame_bytes;
    c->m->stats.frames_sent += c->frame_cnt;
    c->last_send_ns = c->m->loop->now_ns;
    if (c->refusing) {
        conn_close(c, NULL);
        return;
    }
    pump(c);
}

static void
frame_header(struct ha_conn *c, uint64_t off, uint32_t len)
{
    uint8_t *h = c->hdr[c->frame_cnt];

    rmq_put_be64(h, off);
    rmq_put_be32(h + 8, len);
    c->iov[c->iov_cnt].iov_base = h;
    c->iov[c->iov_cnt].iov_len = HDR;
    c->iov_cnt++;
    c->send_left += HDR;
    c->frame_cnt++;
}

/* Send what the slave does not have yet (or a heartbeat when due and idle). */
static void
pump(struct ha_conn *c)
{
    struct rmq_ha_master *m = c->m;
    uint64_t written = rmq_store_written_off(m->store);
    uint64_t seg = rmq_store_seg_size(m->store);

    if (c->sending || c->closing || c->fd < 0 || !c->started) {
        return;
    }
    c->iov_cnt = c->iov_next = 0;
    c->send_left = 0;
    c->frame_cnt = 0;
    c->frame_bytes = 0;
    while (!c->refusing && c->frame_cnt < FRAMES_PER_SEND && c->next < written) {
        uint64_t seg_end = c->next - c->next % seg + seg;
        uint32_t len = (uint32_t)RMQ_MIN((uint64_t)m->cfg.batch_size,
                                         RMQ_MIN(written, seg_end) - c->next);
        const uint8_t *p;
        struct rmq_seg_map *pin;
        int ret = rmq_store_view(m->store, c->next, len, &p, &pin);

        if (ret < 0) {
            RMQ_ERROR("ha: slave %s: log bytes at %llu+%u cannot be read err=%s (deleted "
                      "by retention?): closing", c->peer, (unsigned long long)c->next, len,
                      strerror(-ret));
            unpin_all(c);
            conn_close(c, NULL);
            return;
        }
        c->pins[c->pin_cnt++] = pin;
        frame_header(c, c->next, len);
        c->iov[c->iov_cnt].iov_base = (void *)(uintptr_t)p;
        c->iov[c->iov_cnt].iov_len = len;
        c->iov_cnt++;
        c->send_left += len;
        c->frame_bytes += len;
        c->next += len;
    }
    if (c->frame_cnt == 0) {
        if (!c->hb_now &&
            m->loop->now_ns - c->last_send_ns < (uint64_t)m->cfg.heartbeat_ms * 1000000u) {
            return;
        }
        frame_header(c, c->next, 0);
    }
    c->hb_now = false;
    c->sending = true;
    send_issue(c);
}

static void
master_written(void *ctx, uint64_t written)
{
    struct rmq_ha_master *m = ctx;

    (void)written;
    for (int i = 0; i < MAX_SLAVES; i++) {
        if (m->conns[i].fd >= 0 && !m->conns[i].sending) {
            pump(&m->conns[i]);
        }
    }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void
check_stopped(struct rmq_ha_master *m)
{
    if (!m->stopping || m->accept_op.in_flight != 0 || m->stop_done == NULL) {
        return;
    }
    for (int i = 0; i < MAX_SLAVES; i++) {
        if (m->conns[i].fd >= 0) {
            return;
        }
    }
    void (*fn)(void *) = m->stop_done;

    m->stop_done = NULL;
    fn(m->stop_arg);
}

static void
close_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct ha_conn *c = rmq_container_of(op, struct ha_conn, close_op);

    (void)res;
    (void)flags;
    c->fd = -1;
    c->closing = false;
    check_stopped(c->m);
}

/* Close once no op is in flight; why != NULL logs it. Safe to call repeatedly. */
static void
conn_close(struct ha_conn *c, const char *why)
{
    struct rmq_ha_master *m = c->m;
    struct io_uring_sqe *sqe;

    if (c->fd < 0) {
        return;
    }
    if (!c->closing) {
        c->closing = true;
        if (why != NULL) {
            RMQ_WARN("ha: slave %s disconnected: %s (acked %llu)", c->peer, why,
                     (unsigned long long)c->acked);
        }
        if (c->started && !c->refusing) {
            m->stats.slaves--;
        }
        c->started = false;
        shutdown(c->fd, SHUT_RDWR);         /* ends the recv and any send at once */
        rmq_loop_cancel(m->loop, &c->recv_op);
    }
    if (c->recv_op.in_flight != 0 || c->send_op.in_flight != 0 || c->close_op.in_flight != 0) {
        return;
    }
    unpin_all(c);
    sqe = rmq_loop_sqe(m->loop, &c->close_op);
    io_uring_prep_close(sqe, c->fd);
    rmq_loop_commit(m->loop, &c->close_op, sqe);
}

static void
accept_arm(struct rmq_ha_master *m)
{
    struct io_uring_sqe *sqe = rmq_loop_sqe(m->loop, &m->accept_op);

    io_uring_prep_multishot_accept(sqe, m->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    rmq_loop_commit(m->loop, &m->accept_op, sqe);
}

static void
accept_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_ha_master *m = rmq_container_of(op, struct rmq_ha_master, accept_op);
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    struct ha_conn *c = NULL;
    int one = 1;

    if (res < 0) {
        if (m->stopping) {
            check_stopped(m);
            return;
        }
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "ha: accept failed err=%s, retrying", strerror(-res));
        if (!(flags & IORING_CQE_F_MORE)) {
            accept_arm(m);
        }
        return;
    }
    if (!(flags & IORING_CQE_F_MORE) && !m->stopping) {
        accept_arm(m);
    }
    if (m->stopping) {
        close(res);
        check_stopped(m);
        return;
    }
    for (int i = 0; i < MAX_SLAVES; i++) {
        if (m->conns[i].fd < 0) {
            c = &m->conns[i];
            break;
        }
    }
    if (c == NULL) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "ha: %d slaves connected already, refusing one more",
                   MAX_SLAVES);
        close(res);
        return;
    }
    /* a new generation for each op: a late completion of the slot's last connection
     * cannot pass for this one's */
    memset(c, 0, offsetof(struct ha_conn, recv_op));
    memset(c->rbuf, 0, offsetof(struct ha_conn, iov) - offsetof(struct ha_conn, rbuf));
    c->m = m;
    c->fd = res;
    c->last_read_ns = c->last_send_ns = m->loop->now_ns;
    rmq_op_reset(&c->recv_op);
    rmq_op_reset(&c->send_op);
    rmq_op_reset(&c->close_op);
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (getpeername(res, (struct sockaddr *)&peer, &plen) == 0) {
        char ip[INET_ADDRSTRLEN] = "?";

        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
        snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, ntohs(peer.sin_port));
    } else {
        snprintf(c->peer, sizeof(c->peer), "?");
    }
    RMQ_INFO("ha: slave connected from %s", c->peer);
    recv_arm(c);
}

static void
tick_fire(struct rmq_timer *t)
{
    struct rmq_ha_master *m = rmq_container_of(t, struct rmq_ha_master, tick);
    uint64_t now = m->loop->now_ns;

    for (int i = 0; i < MAX_SLAVES; i++) {
        struct ha_conn *c = &m->conns[i];

        if (c->fd < 0 || c->closing) {
            continue;
        }
        if (now - c->last_read_ns > (uint64_t)m->cfg.housekeeping_ms * 1000000u) {
            conn_close(c, "nothing heard for haHousekeepingInterval");
            continue;
        }
        pump(c);                    /* a heartbeat if idle that long */
    }
    if (!m->stopping) {
        rmq_timer_arm(m->loop, &m->tick, TICK_NS, tick_fire);
    }
}

int
rmq_ha_master_create(struct rmq_ha_master **out, struct rmq_loop *loop,
                     struct rmq_store *store, const struct rmq_ha_config *cfg)
{
    struct rmq_ha_master *m = calloc(1, sizeof(*m));
    const char *host = cfg->bind_addr != NULL && cfg->bind_addr[0] ? cfg->bind_addr : "0.0.0.0";
    int ret;

    if (m == NULL) {
        return -ENOMEM;
    }
    m->loop = loop;
    m->store = store;
    m->cfg = *cfg;
    m->cfg.batch_size = cfg->batch_size ? cfg->batch_size : 32768;
    m->cfg.heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 5000;
    m->cfg.housekeeping_ms = cfg->housekeeping_ms ? cfg->housekeeping_ms : 20000;
    m->cfg.max_gap = cfg->max_gap ? cfg->max_gap : 256ull << 20;
    rmq_list_init(&m->waits);
    for (int i = 0; i < MAX_SLAVES; i++) {
        m->conns[i].fd = -1;
        m->conns[i].m = m;
        rmq_op_init(&m->conns[i].recv_op, recv_done);
        rmq_op_init(&m->conns[i].send_op, send_done);
        rmq_op_init(&m->conns[i].close_op, close_done);
    }
    m->listen_fd = rmq_listen_tcp("ha", host, cfg->port, 16, &m->port);
    if (m->listen_fd < 0) {
        ret = m->listen_fd;
        free(m);
        return ret;
    }
    rmq_op_init(&m->accept_op, accept_done);
    accept_arm(m);
    rmq_store_on_written(store, master_written, m);
    rmq_timer_arm(loop, &m->tick, TICK_NS, tick_fire);
    RMQ_INFO("ha: master listening host=%s port=%u batch=%u", host, m->port,
             m->cfg.batch_size);
    *out = m;
    return 0;
}

uint16_t
rmq_ha_master_port(const struct rmq_ha_master *m)
{
    return m->port;
}

const struct rmq_ha_master_stats *
rmq_ha_master_stats(const struct rmq_ha_master *m)
{
    return &m->stats;
}

void
rmq_ha_master_stop(struct rmq_ha_master *m, void (*done)(void *arg), void *arg)
{
    m->stopping = true;
    m->stop_done = done;
    m->stop_arg = arg;
    rmq_store_on_written(m->store, NULL, NULL);
    rmq_timer_cancel(m->loop, &m->tick);
    waits_fail_all(m, -ESHUTDOWN);
    if (m->listen_fd >= 0) {
        shutdown(m->listen_fd, SHUT_RDWR);
        rmq_loop_cancel(m->loop, &m->accept_op);
    }
    for (int i = 0; i < MAX_SLAVES; i++) {
        conn_close(&m->conns[i], NULL);
    }
    check_stopped(m);
}

void
rmq_ha_master_destroy(struct rmq_ha_master *m)
{
    if (m == NULL) {
        return;
    }
    for (int i = 0; i < MAX_SLAVES; i++) {
        if (m->conns[i].fd >= 0) {
            unpin_all(&m->conns[i]);
            close(m->conns[i].fd);
        }
    }
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
    }
    free(m);
}
