/*
 * Master/slave replication of the commitlog (spec/HA.md, DESIGN.md §6).
 *
 * Master: listens on the HA port (listenPort + 1). Each slave sends its log end as a
 * bare 8-byte offset; the master streams raw log bytes from there in (offset, length,
 * bytes) frames of at most batch_size, never across a segment end, straight from the
 * store's read-only mappings (one sendmsg per run of frames, no copy in user space),
 * and an empty frame as a heartbeat when idle. The slave's acks raise the replicated
 * offset, which completes SYNC_MASTER waits in order; a wait whose deadline passes
 * fails with -ETIMEDOUT (FLUSH_SLAVE_TIMEOUT), one asked for while no slave is
 * connected or the nearest lags by max_gap or more fails at once (SLAVE_NOT_AVAILABLE).
 *
 * Slave: connects to the master's HA address, asks for its own log end minus up to
 * RMQ_HA_VERIFY_BYTES, checks that the master's bytes there equal its own (a log that
 * diverged from the master's, or one ahead of it, is detected there), then appends
 * every frame verbatim (rmq_store_append_raw) and acks its log end after each write
 * and every heartbeat interval. A diverged log is never written to again: the slave
 * stops replicating and says why (rmq_ha_slave_diverged); the broker refuses to serve
 * from it. After a network loss it reconnects every retry interval and resumes.
 *
 * Everything runs on the store's loop; sockets are io_uring ops.
 */
#ifndef RMQ_HA_HA_H
#define RMQ_HA_HA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/loop.h"
#include "store/store.h"

#define RMQ_HA_VERIFY_BYTES 4096u   /* log tail a reconnecting slave compares */

struct rmq_ha_config {
    const char *bind_addr;          /* master: listen address (IPv4) */
    uint16_t port;                  /* master: listenPort + 1; 0 = any (tests) */
    uint32_t batch_size;            /* haTransferBatchSize; default 32 KiB */
    uint32_t heartbeat_ms;          /* haSendHeartbeatInterval; default 5000 */
    uint32_t housekeeping_ms;       /* haHousekeepingInterval; default 20000 */
    uint32_t retry_ms;              /* slave: reconnect delay; default 5000 */
    uint64_t max_gap;               /* haMaxGapNotInSync; default 256 MiB */
};

/* ---- master --------------------------------------------------------------------------------- */

struct rmq_ha_master;

struct rmq_ha_master_stats {
    uint32_t slaves;                /* connections that sent their start offset */
    uint64_t acked_off;             /* push2SlaveMaxOffset: the highest ack ever */
    uint64_t bytes_sent;            /* log bytes streamed */
    uint64_t frames_sent;
    uint64_t sendmsgs;
    uint64_t waits;                 /* SYNC_MASTER waits queued */
    uint64_t wait_timeouts;
    uint64_t refused_no_slave;      /* waits refused: no slave, or too far behind */
    uint64_t slaves_refused;        /* slaves whose start offset is outside this log */
};

/* A SYNC_MASTER wait: done(w, 0) once a slave acked target, -ETIMEDOUT after the
 * deadline, -ESHUTDOWN when the master stops. Owned by the caller until done. */
struct rmq_ha_wait {
    struct rmq_link link;
    uint64_t target;
    uint64_t deadline_ns;
    void (*done)(struct rmq_ha_wait *w, int status);
};

int rmq_ha_master_create(struct rmq_ha_master **out, struct rmq_loop *loop,
                         struct rmq_store *store, const struct rmq_ha_config *cfg);
uint16_t rmq_ha_master_port(const struct rmq_ha_master *m);
/* Queue w until target is replicated: 0, or -EAGAIN at once when no slave is usable
 * (none connected, or target - acked >= max_gap); done is not called then. */
int rmq_ha_master_wait(struct rmq_ha_master *m, struct rmq_ha_wait *w, uint64_t target,
                       uint32_t timeout_ms);
const struct rmq_ha_master_stats *rmq_ha_master_stats(const struct rmq_ha_master *m);
/* Stop listening, close every slave, fail the waits with -ESHUTDOWN; done(arg) runs on
 * the loop once every socket op has completed. */
void rmq_ha_master_stop(struct rmq_ha_master *m, void (*done)(void *arg), void *arg);
void rmq_ha_master_destroy(struct rmq_ha_master *m);

/* ---- slave ---------------------------------------------------------------------------------- */

struct rmq_ha_slave;

struct rmq_ha_slave_stats {
    bool connected;
    uint64_t connects;              /* connections made */
    uint64_t bytes_received;        /* log bytes appended */
    uint64_t frames;
    uint64_t acks_sent;
    uint64_t verified_bytes;        /* tail bytes compared equal on (re)connect */
    uint64_t master_off;            /* the master's offset in its last frame */
};

int rmq_ha_slave_create(struct rmq_ha_slave **out, struct rmq_loop *loop,
                        struct rmq_store *store, const struct rmq_ha_config *cfg);
/* The master's HA address "ip:port" (from the NameServer or haMasterAddress); "" or
 * NULL forgets it. A change closes the connection to the old one. */
void rmq_ha_slave_set_master(struct rmq_ha_slave *s, const char *addr);
/* NULL while the log agrees with the master's; else why it does not (then nothing is
 * copied any more and the broker must not serve from this log). */
const char *rmq_ha_slave_diverged(const struct rmq_ha_slave *s);
const struct rmq_ha_slave_stats *rmq_ha_slave_stats(const struct rmq_ha_slave *s);
void rmq_ha_slave_stop(struct rmq_ha_slave *s, void (*done)(void *arg), void *arg);
void rmq_ha_slave_destroy(struct rmq_ha_slave *s);

#endif
