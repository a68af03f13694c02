/*
 * Copying gathered bytes into memory nobody reads soon: a batch of records into the
 * page cache through a segment's mapping.
 */
#ifndef RMQ_CORE_COPY_H
#define RMQ_CORE_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Below this many bytes rmq_copy_iov_stream is plain memcpy. */
#define RMQ_COPY_STREAM_MIN 4096u

/*
 * Copies the iovecs' bytes to dst, one after the other, and returns how many. Every
 * whole 64-byte line of dst is written with non-temporal stores (x86-64), whichever
 * iovecs its bytes come from: the destination is not read into the cache first, which
 * halves the memory traffic of a copy into fresh pages. The bytes before dst's first
 * line boundary and after its last are plain stores. Ends with a store fence, so the
 * bytes are visible to other CPUs (and the kernel) before any later store.
 */
size_t rmq_copy_iov_stream(uint8_t *dst, const struct iovec *iov, int cnt);

/* Tests: take the SSE2 path even where AVX-512BW is there. */
void rmq_copy__no_avx512(bool on);

#endif
