/*
 * Provided buffer ring with reference-counted buffers.
 *
 * The kernel picks a free buffer for each multishot recv completion (IORING_CQE_F_BUFFER,
 * id in the CQE flags). Whoever gets the completion holds one reference; a decoded
 * message body may take more (rmq_bufring_acquire) so it can outlive its recv until,
 * say, the commitlog write that points at it completes. The buffer returns to the ring
 * only when the last reference is released. An empty ring is backpressure: recv
 * completes with -ENOBUFS and the connection waits for a release, nothing grows.
 *
 * Memory is one anonymous mapping sized at start (count * size). Loop-affine: all
 * calls on the owning loop's thread.
 */
#ifndef RMQ_CORE_BUFRING_H
#define RMQ_CORE_BUFRING_H

#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

struct rmq_bufring {
    struct io_uring_buf_ring *br;   /* owned mapping: ring entries */
    uint8_t *mem;                   /* owned mapping: count * size bytes */
    uint16_t *refs;                 /* owned: per-buffer reference count */
    uint16_t *next;                 /* owned: per-buffer link for owners' queues */
    uint32_t *len;                  /* owned: per-buffer valid length, set by owners */
    uint32_t count;                 /* power of two, <= 32768 */
    uint32_t size;                  /* bytes per buffer */
    uint32_t in_ring;               /* buffers the kernel may pick now */
    uint16_t bgid;
    uint16_t mask;
    uint64_t low_water_hits;        /* times the ring ran dry */
};

/* -ENOMEM, or the io_uring_register_buf_ring error (-EINVAL on kernels < 5.19). */
int rmq_bufring_init(struct rmq_bufring *b, struct io_uring *ring, uint16_t bgid,
                     uint32_t count, uint32_t size);
void rmq_bufring_fini(struct rmq_bufring *b, struct io_uring *ring);

static inline uint8_t *
rmq_bufring_data(const struct rmq_bufring *b, uint16_t bid)
{
    return b->mem + (uint64_t)bid * b->size;
}

/* A recv completion delivered buffer bid: the caller now holds its first reference. */
void rmq_bufring_taken(struct rmq_bufring *b, uint16_t bid);
void rmq_bufring_acquire(struct rmq_bufring *b, uint16_t bid);
/* Drop a reference; the last one hands the buffer back to the kernel. */
void rmq_bufring_release(struct rmq_bufring *b, uint16_t bid);

#endif
