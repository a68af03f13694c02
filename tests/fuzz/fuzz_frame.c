/*
 * libFuzzer target: frame prefix + header decoding (both serializations), then an
 * encode of whatever decoded and a second decode that must agree. Any crash, ASan or
 * UBSan report, or disagreement aborts. Build: ninja fuzz; run: see .ci/run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/frame.h"

static struct rmq_frame f1;
static struct rmq_frame f2;
static uint8_t work[1 << 17];
static uint8_t again[1 << 17];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rmq_codec_limits lim = {.max_frame = sizeof(work), .max_header = sizeof(work)};
    ssize_t r;
    ssize_t n;

    if (size > sizeof(work)) {
        return 0;
    }
    /* decode from an exact-size heap copy so overreads are caught */
    uint8_t *p = malloc(size ? size : 1);

    memcpy(p, data, size);
    r = rmq_frame_decode(p, size, &lim, &f1);
    if (r > 0) {
        n = rmq_frame_encode_head(&f1.h, f1.body_len, again, sizeof(again));
        if (n > 0 && (size_t)n + f1.body_len <= sizeof(again)) {
            memcpy(again + n, f1.body, f1.body_len);
            memcpy(work, again, (size_t)n + f1.body_len);
            if (rmq_frame_decode(work, (size_t)n + f1.body_len, &lim, &f2) != n + f1.body_len ||
                f2.h.code != f1.h.code || f2.h.opaque != f1.h.opaque ||
                f2.h.ext_count > f1.h.ext_count || f2.body_len != f1.body_len) {
                abort();
            }
        }
    }
    free(p);
    return 0;
}
