#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/copy.h"

#define SRC_LEN (64 * 1024)
#define GUARD 128

static uint8_t src[SRC_LEN];
static uint8_t got[GUARD + SRC_LEN + GUARD + 64];
static uint8_t want[GUARD + SRC_LEN + GUARD + 64];

/* Random cuts of src[0, len) into iovecs (some empty, some short, some long). */
static int
cut(size_t len, struct iovec *iov, int max)
{
    size_t at = 0;
    int n = 0;

    while (at < len && n < max - 1) {
        size_t k = (size_t)rand() % 4 == 0 ? (size_t)rand() % 70 : (size_t)rand() % 2000;

        if (k > len - at) {
            k = len - at;
        }
        iov[n].iov_base = src + at;
        iov[n].iov_len = k;
        at += k;
        n++;
    }
    iov[n].iov_base = src + at;
    iov[n].iov_len = len - at;
    return n + 1;
}

static void
same_as_plain_gather(void)
{
    struct iovec iov[512];

    srand(11);
    for (size_t i = 0; i < SRC_LEN; i++) {
        src[i] = (uint8_t)rand();
    }
    for (int round = 0; round < 3000; round++) {
        size_t len = round < 200 ? (size_t)round * 37 : (size_t)rand() % SRC_LEN;
        size_t mis = (size_t)rand() % 64;      /* destination misalignment */
        int n = cut(len, iov, 512);
        uint8_t *d = got + GUARD + mis;

        memset(got, 0xA5, sizeof(got));
        memset(want, 0xA5, sizeof(want));
        memcpy(want + GUARD + mis, src, len);
        cr_assert_eq(rmq_copy_iov_stream(d, iov, n), len, "round %d", round);
        cr_assert(memcmp(got, want, sizeof(got)) == 0,
                  "round %d: %zu bytes in %d iovecs at misalignment %zu differ", round, len, n,
                  mis);
    }
}

Test(copy, streams_the_same_bytes_as_a_plain_gather)
{
    same_as_plain_gather();
}

Test(copy, the_sse2_path_streams_the_same_bytes_too)
{
    rmq_copy__no_avx512(true);
    same_as_plain_gather();
    rmq_copy__no_avx512(false);
}

/* Sources that end right before, or start right after, an inaccessible page: a line
 * gathered across them must not read past either edge (a fault would kill the test). */
Test(copy, never_reads_outside_the_iovecs)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t *m = mmap(NULL, (size_t)pg * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    uint8_t *mid = m + pg;
    static uint8_t out[3 * 4096 + 64];

    cr_assert_neq(m, MAP_FAILED);
    cr_assert_eq(mprotect(m, (size_t)pg, PROT_NONE), 0);
    cr_assert_eq(mprotect(m + 2 * pg, (size_t)pg, PROT_NONE), 0);
    for (long i = 0; i < pg; i++) {
        mid[i] = (uint8_t)(i * 7);
    }
    for (int pass = 0; pass < 2; pass++) {
        rmq_copy__no_avx512(pass == 1);
        for (size_t a = 1; a < 64; a += 3) {
            for (size_t mis = 0; mis < 64; mis += 5) {
                /* a bytes at the very end of the page, then a page's start, then the
                 * rest: lines straddle both edges */
                struct iovec iov[3] = {
                    {mid + pg - a, a}, {mid, 100}, {mid + 100, (size_t)pg - 100 - a},
                };
                uint8_t *d = out + mis;

                cr_assert_eq(rmq_copy_iov_stream(d, iov, 3), (size_t)pg);
                cr_assert(memcmp(d, mid + pg - a, a) == 0);
                cr_assert(memcmp(d + a, mid, (size_t)pg - a) == 0);
            }
        }
    }
    rmq_copy__no_avx512(false);
    munmap(m, (size_t)pg * 3);
}

Test(copy, empty_and_single_iovecs)
{
    struct iovec none[3] = {{src, 0}, {src, 0}, {src, 0}};
    struct iovec one = {src, 10000};

    memset(got, 0, sizeof(got));
    cr_assert_eq(rmq_copy_iov_stream(got + 1, none, 3), 0u);
    cr_assert_eq(rmq_copy_iov_stream(got + 1, &one, 1), 10000u);
    cr_assert(memcmp(got + 1, src, 10000) == 0);
    cr_assert_eq(got[0], 0);
    cr_assert_eq(got[10001], 0);
}
