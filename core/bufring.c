/*
 * Provided buffer ring; see bufring.h. Buffers go back to the ring in any order:
 * each return writes one ring entry with its id and publishes it with a single
 * tail store, so a release costs no syscall.
 */
#include "core/bufring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/util.h"

int
rmq_bufring_init(struct rmq_bufring *b, struct io_uring *ring, uint16_t bgid,
                 uint32_t count, uint32_t size)
{
    struct io_uring_buf_reg reg;
    size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
    int ret;

    RMQ_ASSERT(count > 0 && count <= 32768 && (count & (count - 1)) == 0);
    memset(b, 0, sizeof(*b));
    b->count = count;
    b->size = size;
    b->bgid = bgid;
    b->mask = (uint16_t)io_uring_buf_ring_mask(count);
    b->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->br == MAP_FAILED) {
        b->br = NULL;
        return -ENOMEM;
    }
    b->mem = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
                  MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->mem == MAP_FAILED) {
        b->mem = NULL;
        ret = -ENOMEM;
        goto out_ring;
    }
    b->refs = calloc(count, sizeof(*b->refs));
    b->next = calloc(count, sizeof(*b->next));
    b->len = calloc(count, sizeof(*b->len));
    if (b->refs == NULL || b->next == NULL || b->len == NULL) {
        ret = -ENOMEM;
        goto out_arrays;
    }
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)b->br;
    reg.ring_entries = count;
    reg.bgid = bgid;
    ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret < 0) {
        goto out_arrays;
    }
    io_uring_buf_ring_init(b->br);
    for (uint32_t i = 0; i < count; i++) {
        io_uring_buf_ring_add(b->br, rmq_bufring_data(b, (uint16_t)i), size, (uint16_t)i,
                              b->mask, (int)i);
    }
    io_uring_buf_ring_advance(b->br, (int)count);
    b->in_ring = count;
    return 0;

out_arrays:
    free(b->refs);
    free(b->next);
    free(b->len);
    munmap(b->mem, (size_t)count * size);
out_ring:
    munmap(b->br, ring_bytes);
    b->br = NULL;
    return ret;
}

void
rmq_bufring_fini(struct rmq_bufring *b, struct io_uring *ring)
{
    if (b->br == NULL) {
        return;
    }
    if (ring != NULL) {
        io_uring_unregister_buf_ring(ring, b->bgid);
    }
    munmap(b->br, (size_t)b->count * sizeof(struct io_uring_buf));
    munmap(b->mem, (size_t)b->count * b->size);
    free(b->refs);
    free(b->next);
    free(b->len);
    b->br = NULL;
}

void
rmq_bufring_taken(struct rmq_bufring *b, uint16_t bid)
{
    RMQ_ASSERT(bid < b->count);
    RMQ_ASSERT(b->refs[bid] == 0);
    b->refs[bid] = 1;
    b->in_ring--;
    if (b->in_ring == 0) {
        b->low_water_hits++;
    }
}

void
rmq_bufring_acquire(struct rmq_bufring *b, uint16_t bid)
{
    RMQ_ASSERT(bid < b->count);
    RMQ_ASSERT(b->refs[bid] > 0 && b->refs[bid] < UINT16_MAX);
    b->refs[bid]++;
}

void
rmq_bufring_release(struct rmq_bufring *b, uint16_t bid)
{
    RMQ_ASSERT(bid < b->count);
    RMQ_ASSERT(b->refs[bid] > 0);
    if (--b->refs[bid] > 0) {
        return;
    }
    io_uring_buf_ring_add(b->br, rmq_bufring_data(b, bid), b->size, bid, b->mask, 0);
    io_uring_buf_ring_advance(b->br, 1);
    b->in_ring++;
}
