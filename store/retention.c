/*
 * Retention and disk space. Every clean_interval_ms the store looks at its disk:
 *   - used >= disk_refuse_ratio: appends are refused with -ENOSPC (a status that says
 *     "disk full"), and accepted again by themselves once usage drops below it;
 *   - the oldest segment goes when it expired (its last write is older than
 *     file_reserved_ms) and either the hour is in deleteWhen or used >=
 *     disk_max_used_ratio; when used >= disk_force_ratio it goes even unexpired, as
 *     in the reference (diskSpaceCleanForciblyRatio).
 * One segment per step, 100 ms apart while there is work, so appends never stall
 * behind a burst of unlinks. The current segment is never deleted, nor one with
 * unwritten or unflushed bytes. Consume queue files wholly below the new log start go
 * with it (the last file of a queue always stays: it carries the queue's max).
 *
 * "Last write" of a segment is the store time of the first record after it: it does
 * not depend on file times, which copies and backups change.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store.h"
#include "store/store_int.h"

#define STEP_NS (100 * 1000000ull)
#define FULL_NS (1000 * 1000000ull)

bool
rmq_topic_name_ok(const char *topic, uint32_t len)
{
    if (len == 0 || len > RMQ_RECORD_TOPIC_MAX) {
        return false;
    }
    for (uint32_t i = 0; i < len; i++) {
        char c = topic[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '%' || c == '|')) {
            return false;
        }
    }
    return true;
}

static void
remove_done(struct rmq_disk_req *req, int32_t res)
{
    struct rmq_store *s = rmq_container_of(req, struct rmq_store, remove_req);

    s->remove_in_flight = false;
    if (res < 0) {
        RMQ_WARN("store: removing an expired commitlog segment failed err=%s (file left "
                 "behind; the log no longer uses it)", strerror(-res));
    }
}

/* Space check; returns the used percentage, or -1 when unknown. */
static int
check_space(struct rmq_store *s)
{
    uint64_t total = 0;
    uint64_t avail = 0;
    int used;
    bool full;

    s->space_checked_ns = s->loop->now_ns;
    if (s->disk->ops->space(s->disk, &total, &avail) < 0 || total == 0) {
        return -1;
    }
    used = (int)((total - RMQ_MIN(avail, total)) * 100 / total);
    full = used >= (int)s->cfg.disk_refuse_ratio;
    if (full && !s->disk_full) {
        RMQ_ERROR("store: disk %d%% used (limit %u%%): appends refused until space returns",
                  used, s->cfg.disk_refuse_ratio);
    } else if (!full && s->disk_full) {
        RMQ_INFO("store: disk %d%% used: appends accepted again", used);
    }
    s->disk_full = full;
    return used;
}

void
rmq_store__recheck_space(struct rmq_store *s)
{
    if (s->loop->now_ns - s->space_checked_ns >= STEP_NS) {
        check_space(s);
    }
}

/* Delete the oldest segment when due; true when it did (more may follow). */
static bool
delete_step(struct rmq_store *s, int used)
{
    uint64_t next_start;
    int64_t last_write;
    int64_t now = (int64_t)rmq_clock_wall_ms();
    bool expired;
    bool in_window;
    bool force;
    bool released;
    time_t t = (time_t)(now / 1000);
    struct tm tm;
    int h;

    if (s->seg_count < 2 || s->remove_in_flight || s->cp_in_flight || s->closing) {
        return false;
    }
    next_start = s->segs[1].start;
    if (s->flushed_off < next_start || s->dispatched_off < next_start) {
        /* never delete what is not yet durable, nor records whose queue entries are not
         * written yet (dispatch stalled, or a slave's copy not parsed): they would point
         * at a deleted segment, and a slave's parsing could never move on */
        return false;
    }
    last_write = rmq_store__ts_at(s, next_start);
    if (last_write < 0) {
        last_write = now;
    }
    localtime_r(&t, &tm);
    expired = now - last_write > (int64_t)s->cfg.file_reserved_ms;
    in_window = (s->cfg.delete_hours_mask >> tm.tm_hour) & 1;
    /* as the reference (isSpaceToDelete): once appends are refused for space, clean now;
     * else a refuse ratio below the forcible one would refuse appends until segments expire */
    force = used >= (int)RMQ_MIN(s->cfg.disk_force_ratio, s->cfg.disk_refuse_ratio);
    released = next_start <= s->release_off;
    if (!(expired && (in_window || used >= (int)s->cfg.disk_max_used_ratio)) && !force &&
        !released) {
        return false;
    }
    RMQ_INFO("store: deleting commitlog segment start=%llu (%s, disk %d%% used)",
             (unsigned long long)s->segs[0].start,
             released ? "released by its owner" : expired ? "expired"
                                                          : "disk over diskSpaceCleanForciblyRatio",
             used);
    h = s->segs[0].handle;
    rmq_store__seg_map_drop(s, &s->segs[0]);
    memmove(s->segs, s->segs + 1, (size_t)(s->seg_count - 1) * sizeof(*s->segs));
    s->seg_count--;
    /* indices into segs held by work in flight (all in later segments) move down */
    for (struct rmq_link *n = s->batch_inflight.next; n != &s->batch_inflight; n = n->next) {
        rmq_container_of(n, struct rmq_store_batch, link)->seg--;
    }
    if (s->open_batch != NULL) {
        s->open_batch->seg--;
    }
    if (s->sync_in_flight) {
        s->sync_seg--;
    }
    s->min_off = next_start;
    rmq_cq_set_min_phys(s, s->min_off);
    s->remove_in_flight = true;
    s->remove_req.done = remove_done;
    s->disk->ops->remove(s->disk, h, &s->remove_req);
    s->stats.segments_deleted++;
    return true;
}

void
rmq_store_release_below(struct rmq_store *s, uint64_t phys)
{
    s->release_off = RMQ_MAX(s->release_off, phys);
}

static void
clean_fire(struct rmq_timer *t)
{
    struct rmq_store *s = rmq_container_of(t, struct rmq_store, clean_timer);
    int used = check_space(s);
    bool more = delete_step(s, used < 0 ? 0 : used);

    if (!s->disk_full && s->next_handle < 0) {
        rmq_store__prep_next(s);        /* a roll refused for ENOSPC can work again */
    }
    rmq_loop_defer(s->loop, &s->submit);
    if (!s->closing) {
        uint64_t next = (uint64_t)s->cfg.clean_interval_ms * 1000000u;

        /* a full disk is watched closely so appends resume soon after space returns */
        next = more ? STEP_NS : s->disk_full || s->prep_failed ? RMQ_MIN(next, FULL_NS) : next;
        rmq_timer_arm(s->loop, &s->clean_timer, next, clean_fire);
    }
}

void
rmq_store__clean_start(struct rmq_store *s)
{
    check_space(s);
    rmq_timer_arm(s->loop, &s->clean_timer, (uint64_t)s->cfg.clean_interval_ms * 1000000u,
                  clean_fire);
}
