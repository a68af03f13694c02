/*
 * Remoting connections on an rmq_loop: receive, frame, dispatch, send. Shared by
 * the server side (accepted sockets) and the client side (connected sockets).
 *
 * Receive: one multishot recv per connection into the loop's provided buffer ring.
 * A frame that lies whole inside one receive buffer is decoded in place and handed
 * to on_frame with a reference to that buffer (rmq_bufref): no copy. A frame that
 * straddles buffers is stitched into the connection's assembly buffer (allocated on
 * first need, kept for the connection's life, bounded by the frame limit); such a
 * frame's bytes live only until on_frame returns.
 *
 * Send: responses and requests are encoded into fixed-size tx chunks from a pool
 * sized at start; a body may instead be an external segment the caller owns (zero
 * copy). Sends are not issued inline: a deferred flush gathers everything queued
 * this iteration into one send/sendmsg, so pipelined requests cost one SQE.
 *
 * Backpressure: when a connection has more than tx_limit bytes queued (its peer is
 * not reading) or the chunk pool runs low, the connection stops dispatching and
 * cancels its recv; frames already received wait in their buffers. It resumes when
 * the queue drains below half the limit. Nothing grows with a slow peer.
 *
 * States:
 *   OPEN     recv armed (or paused), sends allowed
 *   CLOSING  ops cancelled; waiting for every op to complete, then IORING_OP_CLOSE
 *   CLOSED   fd closed, buffers and segments released, on_close called; the owner
 *            may reuse or free the struct
 */
#ifndef RMQ_NET_CONN_H
#define RMQ_NET_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>

#include "core/bufring.h"
#include "core/list.h"
#include "core/loop.h"
#include "net/frame.h"

#define RMQ_CONN_IOV_MAX 64

struct rmq_conn;

struct rmq_net_loop;

/* Reference to the receive buffer a frame lies in; bid < 0: assembly buffer. */
struct rmq_bufref {
    struct rmq_net_loop *nl;        /* borrowed */
    int32_t bid;
};

/* Keep a frame's buffer beyond on_frame. -EAGAIN for an assembled frame (copy it). */
int rmq_bufref_acquire(const struct rmq_bufref *ref);
void rmq_bufref_release(const struct rmq_bufref *ref);

/*
 * An output segment. Chunks are segments too; external ones are the caller's. A file
 * segment (is_file) goes file -> pipe -> socket by two linked IORING_OP_SPLICEs through
 * the connection's pipe, without passing through user space; its data pointer (the
 * same bytes, mapped) is used instead if the pipe cannot be made.
 */
struct rmq_out_seg {
    struct rmq_link link;
    const uint8_t *data;            /* borrowed until release */
    uint32_t len;
    uint32_t sent;
    void (*release)(struct rmq_out_seg *seg);   /* called once, after sent or dropped */
    bool is_file;
    int file_fd;                    /* borrowed until release */
    uint64_t file_off;
};

struct rmq_net_config {
    uint32_t recv_buf_count;        /* default 1024 (power of two) */
    uint32_t recv_buf_size;         /* default 32 KiB */
    uint32_t tx_chunk_count;        /* default 4096 */
    uint32_t tx_chunk_size;         /* default 16 KiB */
    uint32_t conn_tx_limit;         /* bytes queued per connection before pausing; 4 MiB */
    struct rmq_codec_limits limits; /* frame and header limits */
};

struct rmq_net_stats {
    uint64_t frames_in;
    uint64_t frames_out;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t assembled;             /* frames stitched across receive buffers */
    uint64_t pauses;                /* connections paused by backpressure */
    uint64_t proto_errors;          /* connections closed for a bad frame */
    uint64_t recv_nobufs;           /* recv stopped because the buffer ring was empty */
    uint64_t splices;               /* file -> socket transfers through a pipe */
    uint64_t shed;                  /* closed for not reading answers as the pool ran low */
};

struct rmq_tx_chunk;

/* Per-loop networking context: the receive buffer ring and the tx chunk pool. */
struct rmq_net_loop {
    struct rmq_loop *loop;          /* borrowed */
    struct rmq_bufring bufs;
    struct rmq_net_config cfg;
    uint8_t *chunk_mem;             /* owned */
    struct rmq_tx_chunk *chunk_free;
    uint32_t chunks_free;
    struct rmq_link waiting;        /* conns paused for pool space or starved of buffers */
    struct rmq_deferred kick;       /* re-checks waiting conns after releases */
    struct rmq_deferred shed;       /* closes conns that hoard the pool (shed_run) */
    struct rmq_frame frame;         /* decode scratch: one frame is dispatched at a time */
    struct rmq_net_stats stats;
};

int rmq_net_loop_init(struct rmq_net_loop *nl, struct rmq_loop *loop,
                      const struct rmq_net_config *cfg, uint16_t bgid);
void rmq_net_loop_fini(struct rmq_net_loop *nl);

struct rmq_conn_ops {
    /* Every decoded frame, request or response. The frame is valid during the call. */
    void (*on_frame)(struct rmq_conn *c, struct rmq_frame *f, const struct rmq_bufref *ref);
    /* The connection is CLOSED; err is why (0 = local close, -ECONNRESET, -EPROTO, ...). */
    void (*on_close)(struct rmq_conn *c, int err);
};

enum rmq_conn_state {
    RMQ_CONN_CLOSED = 0,
    RMQ_CONN_OPEN,
    RMQ_CONN_CLOSING,
};

struct rmq_conn {
    struct rmq_net_loop *nl;        /* borrowed */
    const struct rmq_conn_ops *ops; /* borrowed */
    void *owner;                    /* borrowed: server or client */
    int fd;
    uint32_t gen;                   /* bumped on every open: stale handles fail */
    uint8_t state;
    bool recv_armed;                /* a multishot recv is in flight */
    bool paused;                    /* not dispatching (backpressure) */
    bool starved;                   /* recv ended with -ENOBUFS: re-arm when buffers return */
    bool waiting;                   /* on nl->waiting */
    bool eof;                       /* peer closed its side: close once tx drains */
    int close_err;

    struct rmq_op recv_op;
    struct rmq_op send_op;          /* send, sendmsg, or the pipe -> socket splice */
    struct rmq_op close_op;
    struct rmq_op splice_op;        /* file -> pipe, linked before send_op */
    int pipe_rd;                    /* made on the first file segment; -1 until then */
    int pipe_wr;
    uint32_t pipe_bytes;            /* spliced into the pipe, not yet to the socket */
    bool send_is_splice;
    int splice_err;

    /* receive buffers taken but not yet fully dispatched, linked through bufs.next */
    int32_t pend_head;
    int32_t pend_tail;
    uint32_t pend_off;              /* bytes of pend_head already dispatched */

    uint8_t *asm_buf;               /* owned: partial frame stitched across buffers */
    uint32_t asm_len;
    uint32_t asm_cap;

    struct rmq_link txq;            /* rmq_out_seg in send order */
    uint64_t tx_queued;             /* bytes queued and not yet sent */
    bool send_in_flight;
    struct rmq_deferred flush;
    struct iovec iov[RMQ_CONN_IOV_MAX];
    struct msghdr msg;

    uint64_t active_ns;             /* last byte in or out, loop clock (idle checks) */
    struct rmq_link link;           /* waiting list */
    struct sockaddr_storage peer;
    char peer_str[INET6_ADDRSTRLEN + 8];
};

/* A (conn, gen) pair: lets a late reply detect that its connection went away. */
struct rmq_conn_handle {
    struct rmq_conn *conn;
    uint32_t gen;
};

/* Start serving fd (owned by conn from here). */
void rmq_conn_open(struct rmq_conn *c, struct rmq_net_loop *nl, int fd,
                   const struct rmq_conn_ops *ops, void *owner);
/* Begin closing; on_close follows once every op completed. Idempotent. */
void rmq_conn_close(struct rmq_conn *c, int err);

static inline bool
rmq_conn_is_open(const struct rmq_conn *c)
{
    return c->state == RMQ_CONN_OPEN;
}

static inline struct rmq_conn_handle
rmq_conn_handle(struct rmq_conn *c)
{
    struct rmq_conn_handle h = {c, c->gen};

    return h;
}

/* The connection if still the same open one, else NULL. */
struct rmq_conn *rmq_conn_from_handle(struct rmq_conn_handle h);

/*
 * Queue a frame: the header encoded into tx chunks, then body_len bytes of body
 * copied after it (control-plane bodies). -ENOTCONN when not open, -ENOBUFS when the
 * chunk pool cannot take it (nothing queued), -EMSGSIZE for an oversized header.
 */
int rmq_conn_send(struct rmq_conn *c, const struct rmq_header *h, const void *body,
                  uint32_t body_len);
/* Same, with the body as caller-owned segments sent without copying (may be empty). */
int rmq_conn_send_ext(struct rmq_conn *c, const struct rmq_header *h,
                      struct rmq_out_seg **segs, uint32_t seg_count);

/*
 * Send resp (built with rmq_header_init_response) as the answer to req, unless req
 * is oneway: then nothing is sent and 0 returned. Handlers answer through this (or
 * rmq_conn_reply) so that no oneway request is ever answered.
 */
int rmq_conn_respond(struct rmq_conn *c, const struct rmq_header *req,
                     const struct rmq_header *resp, const void *body, uint32_t body_len);

/*
 * Answer req: same opaque and serialization, RESPONSE flag, optional remark and
 * body. A oneway request gets nothing (returns 0).
 */
int rmq_conn_reply(struct rmq_conn *c, const struct rmq_header *req, int32_t code,
                   const char *remark, const void *body, uint32_t body_len);

/* REQUEST_CODE_NOT_SUPPORTED with the reference's remark " request type N not supported". */
int rmq_conn_reply_not_supported(struct rmq_conn *c, const struct rmq_header *req);

#endif
