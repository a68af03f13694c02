/*
 * CRC-32 (IEEE, reflected) through zlib's crc32(), which the project already links
 * for RocketMQ body compression. Measured on this VM (256 MiB buffer, one core):
 * zlib 1.2.13's braided implementation 5.6 GB/s against 1.9 GB/s for our earlier
 * slicing-by-8 tables; the commitlog computes a BODYCRC for every record it
 * appends, so this is on the send path. (The SSE4.2 crc32 instruction computes
 * CRC-32C, a different polynomial, and cannot be used here.)
 */
#include "core/crc32.h"

#include <limits.h>
#include <zlib.h>

uint32_t
rmq_crc32_update(uint32_t crc, const void *data, size_t len)
{
    const Bytef *p = data;

    /* zlib takes an unsigned int length: feed larger buffers in pieces */
    while (len > UINT_MAX) {
        crc = (uint32_t)crc32(crc, p, UINT_MAX);
        p += UINT_MAX;
        len -= UINT_MAX;
    }
    return (uint32_t)crc32(crc, p, (uInt)len);
}
