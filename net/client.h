/*
 * Remoting client side on one loop: one connection to one address, requests
 * matched to responses by opaque, timeouts, server-initiated requests delivered to
 * a handler, reconnect with capped exponential backoff.
 *
 * A call is caller-owned (embed struct rmq_call in whatever waits for the answer);
 * its done callback runs exactly once on the loop: err 0 with the response frame
 * (valid during the callback), or -ETIMEDOUT, -ECONNRESET (connection lost),
 * -ECANCELED (client stopped). Calls made while disconnected fail at once with
 * -ENOTCONN (and a connect is started), as the Java client fails fast.
 */
#ifndef RMQ_NET_CLIENT_H
#define RMQ_NET_CLIENT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/conn.h"
#include "net/server.h"

struct rmq_call;
typedef void (*rmq_call_fn)(struct rmq_call *call, int err, struct rmq_frame *resp);

struct rmq_call {
    rmq_call_fn done;
    struct rmq_timer timer;
    struct rmq_client *client;      /* borrowed while pending */
    int32_t opaque;
};

struct rmq_client_config {
    const char *host;               /* IPv4 address */
    uint16_t port;
    uint32_t max_pending;           /* calls in flight at once; default 4096 */
    uint32_t connect_timeout_ms;    /* default 3000 */
    uint32_t reconnect_min_ms;      /* first retry delay; default 100 */
    uint32_t reconnect_max_ms;      /* cap; default 5000 */
    bool no_reconnect;              /* stay disconnected after a loss */
};

enum rmq_client_state {
    RMQ_CLIENT_DISCONNECTED,
    RMQ_CLIENT_CONNECTING,
    RMQ_CLIENT_CONNECTED,
    RMQ_CLIENT_STOPPING,
    RMQ_CLIENT_STOPPED,
};

struct rmq_client_stats {
    uint64_t calls;
    uint64_t timeouts;
    uint64_t unmatched;             /* responses with no pending call (late or unknown) */
    uint64_t connects;
    uint64_t connect_failures;
};

struct rmq_client {
    struct rmq_net_loop *nl;        /* borrowed */
    struct rmq_conn conn;
    struct sockaddr_in addr;
    char addr_str[48];
    uint8_t state;
    int sock_fd;                    /* socket being connected */
    struct rmq_op connect_op;
    struct rmq_timer connect_timer;
    struct rmq_timer reconnect_timer;
    uint32_t backoff_ms;
    struct rmq_client_config cfg;
    struct rmq_call **pending;      /* owned: open table indexed by opaque & mask */
    uint32_t pending_mask;
    uint32_t pending_count;
    uint32_t next_opaque;
    rmq_request_fn on_request;      /* server-initiated requests */
    void *on_request_ctx;
    void (*on_state)(struct rmq_client *cl);    /* after connect, loss and stop */
    struct rmq_client_stats stats;
};

/* Allocate the pending table and start connecting. -EINVAL for a bad address. */
int rmq_client_init(struct rmq_client *cl, struct rmq_net_loop *nl,
                    const struct rmq_client_config *cfg);
/*
 * Send req (its opaque is assigned here; flag RESPONSE cleared) with an optional
 * body copied into the connection's tx chunks. 0: call->done will run once.
 * -ENOTCONN, -ENOBUFS (too many pending or tx pool full), -EMSGSIZE: done won't run.
 */
int rmq_client_call(struct rmq_client *cl, struct rmq_call *call, struct rmq_header *req,
                    const void *body, uint32_t body_len, uint32_t timeout_ms);
/* Oneway: sets the ONEWAY flag; no answer is expected or matched. */
int rmq_client_oneway(struct rmq_client *cl, struct rmq_header *req, const void *body,
                      uint32_t body_len);
/* Close and fail pending calls with -ECANCELED; state becomes STOPPED when all is done. */
void rmq_client_stop(struct rmq_client *cl);
/* Free the table; only once STOPPED. */
void rmq_client_fini(struct rmq_client *cl);

/* "host:port" split at its last ':' into host (NUL-terminated, cap bytes) and a port in
 * 1..65535: 0, or -EINVAL when addr is not that shape. */
int rmq_addr_split(const char *addr, char *host, size_t cap, uint16_t *port);

static inline bool
rmq_client_is_connected(const struct rmq_client *cl)
{
    return cl->state == RMQ_CLIENT_CONNECTED;
}

#endif
