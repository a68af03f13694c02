/*
 * The slave's side of replication (spec/HA.md §2.1, §2.3, §2.4). See ha.h.
 *
 * Frames are received into one buffer and appended from where they lie (the store
 * writes them with the rest of its batch: no copy); the buffer is compacted only when
 * no append still points into it. The first bytes after a (re)connect are the tail of
 * this slave's own log, asked for again and compared, not written: a slave whose log
 * is not a prefix of the master's (it was ahead, or the two diverged after a fail-over)
 * finds out there and stops instead of appending the master's bytes behind its own.
 */
#include "ha/ha.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/be.h"
#include "core/log.h"
#include "core/util.h"
#include "net/client.h"

#define RBUF (4u << 20)              /* the reference slave's read buffer */
#define HDR 12
#define MAX_FRAME (RBUF / 2 - HDR)      /* haTransferBatchSize is at most 1 MiB; a foreign
                                         * master may send up to this */
#define APPENDS 256                 /* appends in flight */
#define TICK_NS (500ull * 1000 * 1000)
#define CONNECT_TIMEOUT_NS (3000ull * 1000 * 1000)

enum slave_state { S_IDLE, S_CONNECTING, S_CONNECTED, S_CLOSING, S_RETRY, S_DIVERGED };

struct raw_append {
    struct rmq_store_msg m;
    struct rmq_ha_slave *s;
    struct raw_append *next_free;
};

struct rmq_ha_slave {
    struct rmq_loop *loop;
    struct rmq_store *store;
    struct rmq_ha_config cfg;
    char master[64];
    struct sockaddr_in master_sa;
    int state;
    bool stopping;
    int fd;
    struct rmq_op connect_op;
    struct rmq_op recv_op;
    struct rmq_op ack_op;
    struct rmq_op close_op;
    uint64_t state_ns;              /* when the state began */
    uint64_t last_recv_ns;
    uint64_t last_ack_ns;

    uint8_t *rbuf;                  /* owned: RBUF bytes */
    uint32_t fill;
    uint32_t pos;                   /* next frame to parse */
    bool recv_waits;                /* recv not armed: the buffer needs compacting */

    uint64_t expect;                /* offset the next frame must carry */
    uint64_t verify_end;            /* bytes below are ours: compared, not written */
    bool first_frame;
    bool accept_any_start;          /* empty log: the master picks where it begins */

    uint8_t ack_buf[8];
    uint32_t ack_sent;              /* bytes of ack_buf out (a short send resends the rest) */
    uint64_t acked;                 /* last offset sent */
    bool ack_dirty;

    struct raw_append pool[APPENDS];
    struct raw_append *free_list;
    uint32_t outstanding;

    char diverged[256];
    struct rmq_timer tick;
    void (*stop_done)(void *arg);
    void *stop_arg;
    struct rmq_ha_slave_stats stats;
};

static void parse(struct rmq_ha_slave *s);
static void conn_close(struct rmq_ha_slave *s, const char *why);
static void recv_arm(struct rmq_ha_slave *s);

static void
set_state(struct rmq_ha_slave *s, int state)
{
    s->state = state;
    s->state_ns = s->loop->now_ns;
}

static void
check_stopped(struct rmq_ha_slave *s)
{
    if (s->stopping && s->stop_done != NULL && s->fd < 0 && s->outstanding == 0 &&
        s->ack_op.in_flight == 0) {
        void (*fn)(void *) = s->stop_done;

        s->stop_done = NULL;
        fn(s->stop_arg);
    }
}

static void
diverge(struct rmq_ha_slave *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
diverge(struct rmq_ha_slave *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->diverged, sizeof(s->diverged), fmt, ap);
    va_end(ap);
    RMQ_ERROR("ha: this slave's log does not match master %s: %s. Replication stopped and "
              "the broker will not serve from this log; rebuild this slave from the master",
              s->master, s->diverged);
    conn_close(s, NULL);
}

/* ---- acks ----------------------------------------------------------------------------------- */

static void ack_send(struct rmq_ha_slave *s);

static void
ack_issue(struct rmq_ha_slave *s)
{
    struct io_uring_sqe *sqe = rmq_loop_sqe(s->loop, &s->ack_op);

    io_uring_prep_send(sqe, s->fd, s->ack_buf + s->ack_sent, 8 - s->ack_sent, MSG_NOSIGNAL);
    rmq_loop_commit(s->loop, &s->ack_op, sqe);
}

static void
ack_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_ha_slave *s = rmq_container_of(op, struct rmq_ha_slave, ack_op);

    (void)flags;
    if (res < 0 && s->state == S_CONNECTED) {
        conn_close(s, strerror(-res));
        return;
    }
    if (s->state != S_CONNECTED) {
        conn_close(s, NULL);
        check_stopped(s);
        return;
    }
    s->ack_sent += (uint32_t)res;
    if (s->ack_sent < 8) {
        ack_issue(s);               /* the master reads 8-byte values: finish this one */
        return;
    }
    if (s->ack_dirty) {
        ack_send(s);
    }
}

/* Tell the master our log end; while the tail asked for again is still being compared,
 * only what was compared (a diverged tail must never count as replicated). */
static void
ack_send(struct rmq_ha_slave *s)
{
    uint64_t off = rmq_store_written_off(s->store);

    if (s->state != S_CONNECTED || s->ack_op.in_flight != 0) {
        s->ack_dirty = true;
        return;
    }
    if (s->expect < s->verify_end) {
        off = RMQ_MIN(off, s->expect);
    }
    s->ack_dirty = false;
    rmq_put_be64(s->ack_buf, off);
    s->ack_sent = 0;
    s->acked = off;
    s->last_ack_ns = s->loop->now_ns;
    s->stats.acks_sent++;
    ack_issue(s);
}

/* ---- appends -------------------------------------------------------------------------------- */

static void
buffer_settle(struct rmq_ha_slave *s)
{
    if (s->outstanding != 0 || s->recv_op.in_flight != 0) {
        return;
    }
    if (s->pos > 0) {
        memmove(s->rbuf, s->rbuf + s->pos, s->fill - s->pos);
        s->fill -= s->pos;
        s->pos = 0;
    }
}

static void
append_done(struct rmq_store_msg *m, int status)
{
    struct raw_append *a = rmq_container_of(m, struct raw_append, m);
    struct rmq_ha_slave *s = a->s;

    a->next_free = s->free_list;
    s->free_list = a;
    s->outstanding--;
    if (status != 0) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "ha: appending the master's bytes at %lld failed "
                   "err=%s", (long long)m->rec.phys_off, strerror(-status));
        conn_close(s, "local append failed");
    }
    if (s->state != S_CONNECTED) {
        conn_close(s, NULL);        /* closing waits for the last append */
        check_stopped(s);
        return;
    }
    if (rmq_store_written_off(s->store) > s->acked) {
        ack_send(s);
    }
    parse(s);                       /* frames left waiting for a free append */
    if (s->recv_waits && s->outstanding == 0) {
        buffer_settle(s);
        s->recv_waits = false;
        recv_arm(s);
    }
}

/* bytes [off, off + len) that this slave already has: equal to the master's? */
static bool
verify(struct rmq_ha_slave *s, uint64_t off, const uint8_t *data, uint32_t len)
{
    while (len > 0) {
        uint64_t seg = rmq_store_seg_size(s->store);
        uint32_t n = (uint32_t)RMQ_MIN((uint64_t)len, off - off % seg + seg - off);
        const uint8_t *mine;
        struct rmq_seg_map *pin;
        bool same;

        if (rmq_store_view(s->store, off, n, &mine, &pin) < 0) {
            return false;
        }
        same = memcmp(mine, data, n) == 0;
        rmq_store_unpin(s->store, pin);
        if (!same) {
            return false;
        }
        off += n;
        data += n;
        len -= n;
    }
    return true;
}

/* One frame; false stops parsing (closed, diverged, or no append free). */
static bool
frame(struct rmq_ha_slave *s, uint64_t off, const uint8_t *data, uint32_t len)
{
    struct raw_append *a;

    s->stats.master_off = off + len;
    if (s->first_frame && s->accept_any_start) {
        if (off % rmq_store_seg_size(s->store) != 0 && off != s->expect) {
            diverge(s, "the master starts this empty slave at offset %llu, not a segment start",
                    (unsigned long long)off);
            return false;
        }
        s->expect = s->verify_end = off;
    }
    s->first_frame = false;
    if (off != s->expect) {
        if (off < s->expect) {
            diverge(s, "the master's log ends at %llu, before this slave's (%llu): this slave "
                    "is ahead of its master", (unsigned long long)off,
                    (unsigned long long)s->expect);
        } else {
            diverge(s, "the master sends from %llu but this slave's log ends at %llu: the "
                    "bytes between are no longer on the master", (unsigned long long)off,
                    (unsigned long long)s->expect);
        }
        return false;
    }
    if (len == 0) {
        return true;                /* heartbeat */
    }
    if (off < s->verify_end) {
        uint32_t mine = (uint32_t)RMQ_MIN((uint64_t)len, s->verify_end - off);

        if (!verify(s, off, data, mine)) {
            diverge(s, "the bytes at [%llu, %llu) differ from the master's: the two logs "
                    "diverged", (unsigned long long)off, (unsigned long long)(off + mine));
            return false;
        }
        s->stats.verified_bytes += mine;
        s->expect += mine;
        off += mine;
        data += mine;
        len -= mine;
        if (len == 0) {
            return true;
        }
    }
    if ((a = s->free_list) == NULL) {
        return false;               /* append_done parses again */
    }
    s->free_list = a->next_free;
    memset(&a->m, 0, sizeof(a->m));
    a->m.rec.phys_off = (int64_t)off;
    a->m.rec.body = data;
    a->m.rec.body_len = len;
    a->m.done = append_done;
    s->outstanding++;
    s->expect += len;
    s->stats.frames++;
    s->stats.bytes_received += len;
    rmq_store_append_raw(s->store, &a->m);
    return true;
}

static void
parse(struct rmq_ha_slave *s)
{
    while (s->state == S_CONNECTED && s->fill - s->pos >= HDR) {
        const uint8_t *h = s->rbuf + s->pos;
        uint64_t off = rmq_get_be64(h);
        uint32_t len = rmq_get_be32(h + 8);
        uint64_t verified_before = s->stats.verified_bytes;

        if (len > MAX_FRAME) {
            RMQ_ERROR("ha: master %s sent a frame of %u bytes (at most %u): closing", s->master,
                      len, MAX_FRAME);
            conn_close(s, NULL);
            return;
        }
        if (s->fill - s->pos < HDR + len) {
            break;
        }
        if (!frame(s, off, h + HDR, len)) {
            if (s->stats.verified_bytes != verified_before && s->state == S_CONNECTED) {
                /* the verified part is done; keep the rest as a frame of its own */
                uint32_t done = (uint32_t)(s->stats.verified_bytes - verified_before);

                memmove(s->rbuf + s->pos + done, s->rbuf + s->pos, HDR);
                s->pos += done;
                rmq_put_be64(s->rbuf + s->pos, off + done);
                rmq_put_be32(s->rbuf + s->pos + 8, len - done);
            }
            return;
        }
        s->pos += HDR + len;
    }
    if (s->pos == s->fill && s->outstanding == 0 && s->recv_op.in_flight == 0) {
        s->pos = s->fill = 0;       /* (not under a recv: it writes at the old fill) */
    }
}

/* ---- connection ----------------------------------------------------------------------------- */

static void
recv_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_ha_slave *s = rmq_container_of(op, struct rmq_ha_slave, recv_op);

    (void)flags;
    if (s->state != S_CONNECTED) {
        conn_close(s, NULL);
        check_stopped(s);
        return;
    }
    if (res <= 0) {
        conn_close(s, res == 0 ? "closed by the master" : strerror(-res));
        return;
    }
    s->last_recv_ns = s->loop->now_ns;
    s->fill += (uint32_t)res;
    parse(s);
    if (s->state != S_CONNECTED) {
        return;
    }
    recv_arm(s);
}

static void
recv_arm(struct rmq_ha_slave *s)
{
    struct io_uring_sqe *sqe;

    if (RBUF - s->fill < HDR + MAX_FRAME && s->pos > 0) {
        if (s->outstanding != 0) {
            s->recv_waits = true;   /* the last append's completion compacts and re-arms */
            return;
        }
        buffer_settle(s);
    }
    if (s->fill == RBUF) {
        s->recv_waits = true;
        return;
    }
    sqe = rmq_loop_sqe(s->loop, &s->recv_op);
    io_uring_prep_recv(sqe, s->fd, s->rbuf + s->fill, RBUF - s->fill, 0);
    rmq_loop_commit(s->loop, &s->recv_op, sqe);
}

static void
connect_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_ha_slave *s = rmq_container_of(op, struct rmq_ha_slave, connect_op);
    uint64_t end = rmq_store_reserved_off(s->store);
    uint64_t min = rmq_store_min_off(s->store);
    uint64_t from;
    int one = 1;

    (void)flags;
    if (s->state != S_CONNECTING) {
        conn_close(s, NULL);
        check_stopped(s);
        return;
    }
    if (res < 0) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 30000, "ha: cannot reach master %s err=%s, retrying every "
                   "%u ms", s->master, strerror(-res), s->cfg.retry_ms);
        set_state(s, S_CLOSING);
        conn_close(s, NULL);
        return;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_state(s, S_CONNECTED);
    s->stats.connected = true;
    s->stats.connects++;
    s->last_recv_ns = s->loop->now_ns;
    s->fill = s->pos = 0;
    s->recv_waits = false;
    s->first_frame = true;
    s->accept_any_start = end == min;
    /* ask again for the tail we have, to compare it (ha.h) */
    from = end == min ? end : RMQ_MAX(min, end - RMQ_MIN(end, (uint64_t)RMQ_HA_VERIFY_BYTES));
    if (from == 0 && end > 0) {
        from = 1;                   /* 0 is "an empty slave": it would get the newest segment */
    }
    s->expect = from;
    s->verify_end = end;
    RMQ_INFO("ha: connected to master %s, log end %llu, asking from %llu", s->master,
             (unsigned long long)end, (unsigned long long)from);
    rmq_put_be64(s->ack_buf, from);
    s->ack_sent = 0;
    s->acked = from;
    s->last_ack_ns = s->loop->now_ns;
    ack_issue(s);
    recv_arm(s);
}

static void
connect_start(struct rmq_ha_slave *s)
{
    struct io_uring_sqe *sqe;

    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 30000, "ha: socket failed err=%s", strerror(errno));
        set_state(s, S_RETRY);
        return;
    }
    set_state(s, S_CONNECTING);
    sqe = rmq_loop_sqe(s->loop, &s->connect_op);
    io_uring_prep_connect(sqe, s->fd, (struct sockaddr *)&s->master_sa, sizeof(s->master_sa));
    rmq_loop_commit(s->loop, &s->connect_op, sqe);
}

static void
close_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_ha_slave *s = rmq_container_of(op, struct rmq_ha_slave, close_op);

    (void)res;
    (void)flags;
    s->fd = -1;
    if (s->state == S_CLOSING) {
        set_state(s, S_RETRY);
    }
    check_stopped(s);
}

/* Close once nothing refers to the socket or the buffer; repeatable. */
static void
conn_close(struct rmq_ha_slave *s, const char *why)
{
    struct io_uring_sqe *sqe;

    if (s->state == S_CONNECTED || s->state == S_CONNECTING) {
        if (why != NULL) {
            RMQ_WARN("ha: connection to master %s lost: %s; reconnecting in %u ms", s->master,
                     why, s->cfg.retry_ms);
        }
        set_state(s, s->diverged[0] ? S_DIVERGED : S_CLOSING);
        s->stats.connected = false;
        if (s->fd >= 0) {
            shutdown(s->fd, SHUT_RDWR);
        }
        rmq_loop_cancel(s->loop, &s->connect_op);
        rmq_loop_cancel(s->loop, &s->recv_op);
    } else if (s->diverged[0] && s->state != S_DIVERGED) {
        set_state(s, S_DIVERGED);
    }
    if (s->fd < 0 || s->connect_op.in_flight || s->recv_op.in_flight || s->ack_op.in_flight ||
        s->close_op.in_flight || s->outstanding != 0) {
        return;
    }
    sqe = rmq_loop_sqe(s->loop, &s->close_op);
    io_uring_prep_close(sqe, s->fd);
    rmq_loop_commit(s->loop, &s->close_op, sqe);
}

static void
tick_fire(struct rmq_timer *t)
{
    struct rmq_ha_slave *s = rmq_container_of(t, struct rmq_ha_slave, tick);
    uint64_t now = s->loop->now_ns;

    switch (s->state) {
    case S_IDLE:
        if (s->master[0] != '\0') {
            connect_start(s);
        }
        break;
    case S_RETRY:
        if (s->master[0] != '\0' && now - s->state_ns >= (uint64_t)s->cfg.retry_ms * 1000000u) {
            connect_start(s);
        }
        break;
    case S_CONNECTING:
        if (now - s->state_ns > CONNECT_TIMEOUT_NS) {
            rmq_loop_cancel(s->loop, &s->connect_op);   /* completes with -ECANCELED */
        }
        break;
    case S_CONNECTED:
        if (now - s->last_recv_ns > (uint64_t)s->cfg.housekeeping_ms * 1000000u) {
            conn_close(s, "nothing heard for haHousekeepingInterval");
        } else if (now - s->last_ack_ns >= (uint64_t)s->cfg.heartbeat_ms * 1000000u ||
                   rmq_store_written_off(s->store) > s->acked) {
            ack_send(s);
        }
        break;
    default:
        break;
    }
    if (!s->stopping) {
        rmq_timer_arm(s->loop, &s->tick, TICK_NS, tick_fire);
    }
}

int
rmq_ha_slave_create(struct rmq_ha_slave **out, struct rmq_loop *loop, struct rmq_store *store,
                    const struct rmq_ha_config *cfg)
{
    struct rmq_ha_slave *s = calloc(1, sizeof(*s));

    if (s == NULL || (s->rbuf = malloc(RBUF)) == NULL) {
        free(s);
        return -ENOMEM;
    }
    s->loop = loop;
    s->store = store;
    s->cfg = *cfg;
    s->cfg.batch_size = cfg->batch_size ? cfg->batch_size : 32768;
    s->cfg.heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 5000;
    s->cfg.housekeeping_ms = cfg->housekeeping_ms ? cfg->housekeeping_ms : 20000;
    s->cfg.retry_ms = cfg->retry_ms ? cfg->retry_ms : 5000;
    s->fd = -1;
    for (int i = 0; i < APPENDS; i++) {
        s->pool[i].s = s;
        s->pool[i].next_free = s->free_list;
        s->free_list = &s->pool[i];
    }
    rmq_op_init(&s->connect_op, connect_done);
    rmq_op_init(&s->recv_op, recv_done);
    rmq_op_init(&s->ack_op, ack_done);
    rmq_op_init(&s->close_op, close_done);
    set_state(s, S_IDLE);
    rmq_timer_arm(loop, &s->tick, TICK_NS, tick_fire);
    *out = s;
    return 0;
}

void
rmq_ha_slave_set_master(struct rmq_ha_slave *s, const char *addr)
{
    char host[64];
    uint16_t port;

    if (addr == NULL) {
        addr = "";
    }
    if (strcmp(addr, s->master) == 0) {
        return;
    }
    if (addr[0] != '\0') {
        if (rmq_addr_split(addr, host, sizeof(host), &port) < 0) {
            RMQ_ERROR("ha: master HA address '%s' is not ip:port, ignored", addr);
            return;
        }
        memset(&s->master_sa, 0, sizeof(s->master_sa));
        s->master_sa.sin_family = AF_INET;
        s->master_sa.sin_port = htons(port);
        if (inet_pton(AF_INET, host, &s->master_sa.sin_addr) != 1) {
            RMQ_ERROR("ha: master HA address '%s' is not an IPv4 ip:port, ignored", addr);
            return;
        }
    }
    RMQ_INFO("ha: master HA address %s (was %s)", addr[0] ? addr : "none",
             s->master[0] ? s->master : "none");
    snprintf(s->master, sizeof(s->master), "%s", addr);
    if (s->state == S_CONNECTED || s->state == S_CONNECTING) {
        conn_close(s, "the master's address changed");
    }
    if (s->state == S_RETRY) {
        s->state_ns = s->loop->now_ns - (uint64_t)s->cfg.retry_ms * 1000000u;  /* at once */
    }
}

const char *
rmq_ha_slave_diverged(const struct rmq_ha_slave *s)
{
    return s->diverged[0] ? s->diverged : NULL;
}

const struct rmq_ha_slave_stats *
rmq_ha_slave_stats(const struct rmq_ha_slave *s)
{
    return &s->stats;
}

void
rmq_ha_slave_stop(struct rmq_ha_slave *s, void (*done)(void *arg), void *arg)
{
    s->stopping = true;
    s->stop_done = done;
    s->stop_arg = arg;
    rmq_timer_cancel(s->loop, &s->tick);
    if (s->state == S_CONNECTED || s->state == S_CONNECTING) {
        conn_close(s, NULL);
    }
    check_stopped(s);
}

void
rmq_ha_slave_destroy(struct rmq_ha_slave *s)
{
    if (s == NULL) {
        return;
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    free(s->rbuf);
    free(s);
}
