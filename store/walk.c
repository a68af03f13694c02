/*
 * Walking the log record by record, for derived data that must be rebuilt from it
 * (held-message delivery marks, later the key index): each segment's stretch is viewed
 * in place once, so nothing is copied.
 */
#include <errno.h>

#include "core/log.h"
#include "core/util.h"
#include "store/store.h"
#include "store/store_int.h"

int
rmq_store_walk(struct rmq_store *s, uint64_t from, rmq_store_walk_fn fn, void *ctx)
{
    uint64_t pos = RMQ_MAX(from, s->min_off);
    uint64_t end = s->written_off;

    while (pos < end) {
        uint64_t seg_end = pos - pos % s->cfg.seg_size + s->cfg.seg_size;
        uint32_t len = (uint32_t)(RMQ_MIN(seg_end, end) - pos);
        struct rmq_seg_map *pin;
        const uint8_t *p;
        uint32_t at = 0;
        int ret = rmq_store_view(s, pos, len, &p, &pin);

        if (ret < 0) {
            return ret;
        }
        while (at < len) {
            struct rmq_record rec;
            uint32_t blank = 0;
            int64_t n = rmq_record_decode(p + at, len - at, false, &rec, &blank);

            if (n == 0) {
                break;                  /* the segment's end filler */
            }
            if (n < 0 || rec.phys_off != (int64_t)(pos + at)) {
                rmq_store_unpin(s, pin);
                RMQ_ERROR("store: no record at log offset %llu while walking from %llu",
                          (unsigned long long)(pos + at), (unsigned long long)from);
                return -EBADMSG;
            }
            ret = fn(ctx, &rec, p + at, (uint32_t)n);
            if (ret != 0) {
                rmq_store_unpin(s, pin);
                return ret < 0 ? ret : 0;
            }
            at += (uint32_t)n;
        }
        rmq_store_unpin(s, pin);
        pos = at < len ? seg_end : pos + len;
    }
    return 0;
}
