/*
 * Codec cost: decode + encode of a SEND_MESSAGE_V2 request header shaped like the
 * one ali-ons sends (fields a..k, property string with \u0001/\u0002 escapes), in
 * JSON and in the binary serialization. Decoding rewrites escapes in place, so
 * each iteration starts from a fresh copy; the copy alone is timed too and
 * subtracted. Then the body CRC every append computes: rmq_crc32_update against
 * libdeflate's crc32 alone (its path below 256 bytes and without AVX-512), same run.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "core/clock.h"
#include "core/crc32.h"
#include "net/frame.h"

#include <libdeflate.h>

static struct rmq_frame frame;
static struct rmq_header req;
static uint8_t wire[4096];
static uint8_t work[4096];
static uint8_t out[4096];
static volatile uint64_t sink;
static uint8_t crc_buf[65536 + 1024];

static size_t
build(enum rmq_serialize ser)
{
    ssize_t n;

    rmq_header_init(&req, 310, ser);
    req.version = 121;
    req.opaque = 12345;
    rmq_header_add(&req, "a", "PG_VECTOR");
    rmq_header_add(&req, "b", "TopicTest");
    rmq_header_add(&req, "c", "TBW102");
    rmq_header_add(&req, "d", "4");
    rmq_header_add(&req, "e", "0");
    rmq_header_add(&req, "f", "0");
    rmq_header_add(&req, "g", "1700000000000");
    rmq_header_add(&req, "h", "0");
    rmq_header_add(&req, "i", "TAGS\001TagA\002KEYS\001key1 key2\002");
    rmq_header_add(&req, "j", "0");
    rmq_header_add(&req, "k", "false");
    n = rmq_frame_encode_head(&req, 0, wire, sizeof(wire));
    return n > 0 ? (size_t)n : 0;
}

static double
time_loop(size_t len, long iters, int mode)
{
    uint64_t t0 = rmq_clock_mono_ns();

    for (long i = 0; i < iters; i++) {
        memcpy(work, wire, len);
        if (mode >= 1) {
            sink += (uint64_t)rmq_frame_decode(work, len, NULL, &frame);
        }
        if (mode >= 2) {
            struct rmq_header resp;

            /* the response a broker writes: same serialization, a few ext fields */
            rmq_header_init_response(&resp, &frame.h, 0);
            rmq_header_add(&resp, "msgId", "7F00000100002A9F00000000000004D2");
            rmq_header_add(&resp, "queueId", "0");
            rmq_header_add(&resp, "queueOffset", "5");
            sink += (uint64_t)rmq_frame_encode_head(&resp, 0, out, sizeof(out));
        }
    }
    return (double)(rmq_clock_mono_ns() - t0) / (double)iters;
}

/* ns per CRC of len bytes, each independent of the last as a record's body CRC is;
 * offsets walk so no two calls see the same address */
static double
crc_loop(size_t len, long iters, bool ours)
{
    uint64_t t0 = rmq_clock_mono_ns();
    uint32_t c = 0;

    for (long i = 0; i < iters; i++) {
        const uint8_t *p = crc_buf + (i & 1023);

        c ^= ours ? rmq_crc32_update(0, p, len) : libdeflate_crc32(0, p, len);
    }
    sink += c;
    return (double)(rmq_clock_mono_ns() - t0) / (double)iters;
}

static void
crc_table(long runs)
{
    static const size_t lens[] = {128, 256, 1024, 4096, 65536};

    for (size_t i = 0; i < sizeof(crc_buf); i++) {
        crc_buf[i] = (uint8_t)(i * 131u + 7u);
    }
    printf("crc32 (BODYCRC), median of %ld runs; 512-bit folding on this CPU: %s\n", runs,
           rmq_crc32_folds_512() ? "yes" : "no");
    printf("%8s %12s %10s %16s %10s %8s\n", "bytes", "ours_ns", "GB/s", "libdeflate_ns", "GB/s",
           "ratio");
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        long iters = (long)(1e9 / (double)lens[k]);
        double ours[64];
        double theirs[64];
        double o;
        double t;

        for (long r = 0; r < runs; r++) {
            ours[r] = crc_loop(lens[k], iters, true);
            theirs[r] = crc_loop(lens[k], iters, false);
        }
        o = rmq_bench_median(ours, (size_t)runs);
        t = rmq_bench_median(theirs, (size_t)runs);
        printf("%8zu %12.1f %10.1f %16.1f %10.1f %8.2f\n", lens[k], o, (double)lens[k] / o, t,
               (double)lens[k] / t, t / o);
    }
}

int
rmq_bench_codec(int argc, char **argv)
{
    long runs = rmq_bench_arg_long(argc, argv, "runs", 5);
    long iters = rmq_bench_arg_long(argc, argv, "iterations", 200000);
    static const char *names[] = {"json", "binary"};

    printf("codec: decode+encode per request, median of %ld runs x %ld iterations\n", runs,
           iters);
    printf("%-8s %10s %12s %12s %12s\n", "header", "bytes", "decode_ns", "dec+enc_ns",
           "copy_ns");
    for (int s = 0; s < 2; s++) {
        size_t len = build((enum rmq_serialize)s);
        double dec[64];
        double both[64];
        double copy[64];

        if (runs > 64) {
            runs = 64;
        }
        for (long r = 0; r < runs; r++) {
            copy[r] = time_loop(len, iters, 0);
            dec[r] = time_loop(len, iters, 1) - copy[r];
            both[r] = time_loop(len, iters, 2) - copy[r];
        }
        printf("%-8s %10zu %12.1f %12.1f %12.1f\n", names[s], len,
               rmq_bench_median(dec, (size_t)runs), rmq_bench_median(both, (size_t)runs),
               rmq_bench_median(copy, (size_t)runs));
    }
    crc_table(runs);
    return 0;
}
