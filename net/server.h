/*
 * Remoting server on one loop: a listening socket with multishot accept, a fixed
 * connection table sized at start, and a dispatch table indexed by request code.
 *
 * A request whose code has no handler is answered REQUEST_CODE_NOT_SUPPORTED
 * (remark " request type <code> not supported", as the reference words it) and the
 * connection stays open. Oneway requests never get a response. Responses arriving
 * from clients (to requests the server sent them) go to the response handler, or
 * are dropped with a debug line when none is set.
 */
#ifndef RMQ_NET_SERVER_H
#define RMQ_NET_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "net/conn.h"

typedef void (*rmq_request_fn)(struct rmq_conn *c, struct rmq_frame *req,
                               const struct rmq_bufref *ref, void *ctx);
/* A connection closed (err as in rmq_conn_ops.on_close); c is recycled right after. */
typedef void (*rmq_conn_close_fn)(struct rmq_conn *c, int err, void *ctx);

struct rmq_server_config {
    const char *host;               /* listen address; default "0.0.0.0" */
    uint16_t port;                  /* 0: pick a free port (see srv->port) */
    uint32_t max_conns;             /* default 1024 */
    int backlog;                    /* default 1024 */
};

struct rmq_server_stats {
    uint64_t accepted;
    uint64_t refused;               /* connection table full */
    uint64_t unknown_codes;
    uint64_t requests;
};

struct rmq_server {
    struct rmq_net_loop *nl;        /* borrowed */
    int listen_fd;
    uint16_t port;                  /* bound port, after init */
    bool accepting;
    bool stopping;
    bool accept_off;                /* rmq_server_stop_accepting: connections stay */
    struct rmq_op accept_op;
    struct rmq_op refuse_op;        /* closes sockets we cannot take */
    struct rmq_timer accept_retry;  /* accept failed (EMFILE...): retry later, no spin */
    struct rmq_conn *conns;         /* owned: max_conns entries */
    uint32_t max_conns;
    uint32_t live_conns;
    struct rmq_conn *free_conn;     /* free list through conn->owner */
    struct {
        rmq_request_fn fn;
        void *ctx;
    } handlers[RMQ_REQ_CODE_LIMIT];
    rmq_request_fn on_response;
    void *on_response_ctx;
    rmq_conn_close_fn on_conn_close;
    void *on_conn_close_ctx;
    void (*on_stopped)(struct rmq_server *srv);
    struct rmq_server_stats stats;
};

/* Bind and listen (synchronous, at start), then arm accept. -errno with a log line. */
int rmq_server_init(struct rmq_server *srv, struct rmq_net_loop *nl,
                    const struct rmq_server_config *cfg);
/* Register fn for a request code (< RMQ_REQ_CODE_LIMIT). */
void rmq_server_handle(struct rmq_server *srv, int code, rmq_request_fn fn, void *ctx);
void rmq_server_on_response(struct rmq_server *srv, rmq_request_fn fn, void *ctx);
/* Be told when a connection closes (e.g. a NameServer forgets the brokers on it). */
void rmq_server_on_conn_close(struct rmq_server *srv, rmq_conn_close_fn fn, void *ctx);
/* Index of c in the connection table (0..max_conns-1): for per-connection side tables. */
uint32_t rmq_server_conn_index(const struct rmq_server *srv, const struct rmq_conn *c);
/* Close the listening socket; connections already open are served on (graceful stop). */
void rmq_server_stop_accepting(struct rmq_server *srv);
/* Stop accepting, close every connection; on_stopped (if set) runs once all closed. */
void rmq_server_stop(struct rmq_server *srv);
bool rmq_server_is_stopped(const struct rmq_server *srv);
/* Free the table; only after the server stopped. */
void rmq_server_fini(struct rmq_server *srv);

/* A listening TCP socket on IPv4 host:port (0: any free port, *bound says which):
 * SO_REUSEADDR, CLOEXEC. The descriptor, or -errno with one log line naming who (the
 * module) and the address. Start-up only (blocking calls). */
int rmq_listen_tcp(const char *who, const char *host, uint16_t port, int backlog,
                   uint16_t *bound);

#endif
