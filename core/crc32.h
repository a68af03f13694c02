/*
 * CRC-32 as spec/STORE.md §6 defines it: IEEE 802.3 polynomial, reflected, init and
 * final XOR 0xFFFFFFFF, what zlib's crc32() computes (here libdeflate's, and our own
 * 512-bit folding where the CPU has it; see crc32.c). RocketMQ stores it masked with
 * 0x7FFFFFFF.
 */
#ifndef RMQ_CORE_CRC32_H
#define RMQ_CORE_CRC32_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: pass 0 to start; the result can be fed back in for the next chunk. */
uint32_t rmq_crc32_update(uint32_t crc, const void *data, size_t len);

/* Whether rmq_crc32_update folds 64 bytes at a time here (AVX-512 VPCLMULQDQ). */
bool rmq_crc32_folds_512(void);

/* BODYCRC / bodyCrc32: crc32 of the bytes with the sign bit cleared. */
static inline uint32_t
rmq_crc32_masked(const void *data, size_t len)
{
    return rmq_crc32_update(0, data, len) & 0x7FFFFFFFu;
}

#endif
