/*
 * CRC-32 (IEEE, reflected: java.util.zip.CRC32, RocketMQ's BODYCRC) through
 * libdeflate, whose carry-less-multiply folding beats everything else here. Measured
 * on this VM, one core: 1 KiB buffers 13.6 GB/s against 2.8 GB/s for zlib 1.2.13's
 * braided crc32() (128 B: 9.9 against 1.2); zlib had beaten our slicing-by-8 tables
 * (5.6 against 1.9 GB/s on 256 MiB). The commitlog computes a BODYCRC for every record
 * it appends: under pipelined sends zlib's crc32 was the broker's hottest user-space
 * function (11 % of its samples). The SSE4.2 crc32 instruction computes CRC-32C, a
 * different polynomial, and cannot be used.
 *
 * On CPUs with AVX-512 and VPCLMULQDQ, buffers of VEC_MIN bytes and more are folded
 * 64 bytes per instruction instead (Debian 12's libdeflate 1.14 folds 16): four 512-bit
 * accumulators 256 bytes apart, merged into one, whose 64 bytes and the tail are then
 * handed to libdeflate. libdeflate's CRC was ~19 % of a batched commitlog append's CPU
 * with 1 KiB bodies (rmq-bench store, perf). Measured here (rmq-bench codec), one core,
 * independent calls as body CRCs are: 1 KiB 27.8 against 73.3 ns, 4 KiB 80 against 283,
 * 256 B 14.5 against 20.0; 192 B even.
 *
 * The folding: in the reflected bit order a 128-bit lane's low 64 bits are its
 * higher-degree half. Moving a lane D bits further down the message multiplies it by
 * x^D mod P: the low half by K(D + 32), the high half by K(D - 32), where K(e) is
 * x^e mod P bit-reflected over 32 bits and shifted left by one (the product of two
 * reflected values comes out one bit low). Both products fit the 128-bit lane and are
 * XORed into the lane D bits on. The unit tests recompute every constant from P.
 */
#include "core/crc32.h"

#include <libdeflate.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define VEC_MIN 256u                    /* below: libdeflate (192 B measured even) */
_Static_assert(VEC_MIN >= 256, "the four accumulators start with 256 bytes loaded");
#define K_2080 0x11542778aull           /* K(2048 + 32): four accumulators, 256 bytes on */
#define K_2016 0x1322d1430ull           /* K(2048 - 32) */
#define K_544 0x154442bd4ull            /* K(512 + 32): one accumulator, 64 bytes on */
#define K_480 0x1c6e41596ull            /* K(512 - 32) */

#define VEC_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,vpclmulqdq")))

VEC_TARGET static inline __m512i
fold(__m512i acc, __m512i k, __m512i next)
{
    __m512i lo = _mm512_clmulepi64_epi128(acc, k, 0x00);   /* low halves × K(D + 32) */
    __m512i hi = _mm512_clmulepi64_epi128(acc, k, 0x11);   /* high halves × K(D - 32) */

    return _mm512_ternarylogic_epi64(lo, hi, next, 0x96);  /* lo ^ hi ^ next */
}

VEC_TARGET static uint32_t
crc32_vpclmul(uint32_t crc, const uint8_t *p, size_t len)
{
    const __m512i k256 = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)K_2016,
                                                               (long long)K_2080));
    const __m512i k64 = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)K_480,
                                                              (long long)K_544));
    /* the running CRC (uninverted) XORed into the first four bytes continues it */
    __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512(p),
                                  _mm512_maskz_set1_epi32(1, (int)~crc));
    __m512i a1 = _mm512_loadu_si512(p + 64);
    __m512i a2 = _mm512_loadu_si512(p + 128);
    __m512i a3 = _mm512_loadu_si512(p + 192);
    uint8_t last[64];
    size_t off = 256;

    for (; len - off >= 256; off += 256) {
        a0 = fold(a0, k256, _mm512_loadu_si512(p + off));
        a1 = fold(a1, k256, _mm512_loadu_si512(p + off + 64));
        a2 = fold(a2, k256, _mm512_loadu_si512(p + off + 128));
        a3 = fold(a3, k256, _mm512_loadu_si512(p + off + 192));
    }
    a0 = fold(fold(fold(a0, k64, a1), k64, a2), k64, a3);
    for (; len - off >= 64; off += 64) {
        a0 = fold(a0, k64, _mm512_loadu_si512(p + off));
    }
    /* a0 now stands for everything before off, as 64 bytes with a zero CRC before them */
    _mm512_storeu_si512(last, a0);
    return libdeflate_crc32(libdeflate_crc32(0xFFFFFFFFu, last, sizeof(last)), p + off,
                            len - off);
}

/* reads of bits libgcc's constructor set: cheap enough to ask on every call */
static bool
vec_ok(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("vpclmulqdq");
}

bool
rmq_crc32_folds_512(void)
{
    return vec_ok();
}

uint32_t
rmq_crc32_update(uint32_t crc, const void *data, size_t len)
{
    if (len >= VEC_MIN && vec_ok()) {
        return crc32_vpclmul(crc, data, len);
    }
    return libdeflate_crc32(crc, data, len);
}

#else

bool
rmq_crc32_folds_512(void)
{
    return false;
}

uint32_t
rmq_crc32_update(uint32_t crc, const void *data, size_t len)
{
    return libdeflate_crc32(crc, data, len);
}

#endif
