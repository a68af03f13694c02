/*
 * Non-temporal gather copy (copy.h). Why not memcpy per iovec: a batch's iovecs are
 * records' heads, bodies and tails of any length, so each memcpy starts and ends mid
 * line and glibc streams only copies larger than about 3/4 of the shared cache; every
 * destination line is then read from memory before it is overwritten. Here the
 * destination is walked as one run of lines, each gathered across iovec boundaries.
 */
#include "core/copy.h"

#include <string.h>

#include "core/util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdbool.h>
#define LINE 64u

/* Where the copy is in the iovecs. */
struct src {
    const struct iovec *iov;
    int i;
    size_t off;
};

/* Past the iovecs used up (and empty ones): where the next byte comes from. */
static inline const uint8_t *
src_at(struct src *s)
{
    while (s->off == s->iov[s->i].iov_len) {
        s->i++;
        s->off = 0;
    }
    return (const uint8_t *)s->iov[s->i].iov_base + s->off;
}

/* Plain copy of n bytes from the iovecs. */
static void
take(struct src *s, uint8_t *dst, size_t n)
{
    while (n > 0) {
        const uint8_t *p = src_at(s);
        size_t k = RMQ_MIN(s->iov[s->i].iov_len - s->off, n);

        memcpy(dst, p, k);
        dst += k;
        n -= k;
        s->off += k;
    }
}

static inline void
stream_line(uint8_t *dst, const uint8_t *src)
{
    __m128i a = _mm_loadu_si128((const __m128i *)src);
    __m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(src + 48));

    _mm_stream_si128((__m128i *)dst, a);
    _mm_stream_si128((__m128i *)(dst + 16), b);
    _mm_stream_si128((__m128i *)(dst + 32), c);
    _mm_stream_si128((__m128i *)(dst + 48), d);
}

/*
 * With AVX-512BW a line is composed in a register: each piece of it (the rest of one
 * iovec, a whole short one, the start of the next) is one masked load placed at its
 * offset; masked-out bytes are not read, so nothing past an iovec is touched. Gathering
 * through a buffer with memcpy per piece was a third of the copy's time for 128-byte
 * records (two of every four lines straddle iovecs).
 */
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw")))

AVX512_TARGET static uint8_t *
lines_avx512(uint8_t *dst, uint8_t *lines_end, struct src *s)
{
    while (dst < lines_end) {
        const uint8_t *p = src_at(s);
        size_t left = s->iov[s->i].iov_len - s->off;

        if (left >= LINE) {
            size_t n = RMQ_MIN(left / LINE, (size_t)(lines_end - dst) / LINE);

            for (size_t k = 0; k < n; k++) {
                _mm512_stream_si512((void *)(dst + k * LINE),
                                    _mm512_loadu_si512((const void *)(p + k * LINE)));
            }
            dst += n * LINE;
            s->off += n * LINE;
        } else {
            __m512i line = _mm512_setzero_si512();
            size_t at = 0;

            while (at < LINE) {
                size_t k;

                p = src_at(s);
                k = RMQ_MIN(s->iov[s->i].iov_len - s->off, LINE - at);
                /* lanes [at, at + k) from p: the load's base is p - at, never read below p */
                line = _mm512_mask_loadu_epi8(line, ((__mmask64)-1 >> (LINE - k)) << at,
                                              (const void *)(p - at));
                at += k;
                s->off += k;
            }
            _mm512_stream_si512((void *)dst, line);
            dst += LINE;
        }
    }
    return dst;
}

static bool no_avx512;

void
rmq_copy__no_avx512(bool on)
{
    no_avx512 = on;
}

static bool
has_avx512bw(void)
{
    static int known = -1;

    if (known < 0) {
        known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    }
    return known && !no_avx512;
}

size_t
rmq_copy_iov_stream(uint8_t *dst, const struct iovec *iov, int cnt)
{
    struct src s = {.iov = iov};
    size_t total = 0;
    uint8_t *end;
    uint8_t *lines_end;
    size_t lead;

    for (int i = 0; i < cnt; i++) {
        total += iov[i].iov_len;
    }
    if (total < RMQ_COPY_STREAM_MIN) {
        take(&s, dst, total);
        return total;
    }
    end = dst + total;
    lead = (LINE - ((uintptr_t)dst & (LINE - 1))) & (LINE - 1);
    take(&s, dst, lead);
    dst += lead;
    lines_end = (uint8_t *)((uintptr_t)end & ~(uintptr_t)(LINE - 1));
    if (has_avx512bw()) {
        dst = lines_avx512(dst, lines_end, &s);
    }
    while (dst < lines_end) {
        const uint8_t *p = src_at(&s);
        size_t left = s.iov[s.i].iov_len - s.off;

        if (left >= LINE) {
            /* whole lines from this iovec */
            size_t n = RMQ_MIN(left / LINE, (size_t)(lines_end - dst) / LINE);

            for (size_t k = 0; k < n; k++) {
                stream_line(dst + k * LINE, p + k * LINE);
            }
            dst += n * LINE;
            s.off += n * LINE;
        } else {
            /* a line that straddles iovecs: gathered first */
            _Alignas(16) uint8_t line[LINE];

            take(&s, line, LINE);
            stream_line(dst, line);
            dst += LINE;
        }
    }
    take(&s, dst, (size_t)(end - dst));
    _mm_sfence();
    return total;
}

#else

void
rmq_copy__no_avx512(bool on)
{
    (void)on;
}

size_t
rmq_copy_iov_stream(uint8_t *dst, const struct iovec *iov, int cnt)
{
    size_t total = 0;

    for (int i = 0; i < cnt; i++) {
        memcpy(dst + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    return total;
}

#endif
