/*
 * The commitlog: single writer, batched vectored writes, group commit, recovery.
 * See store.h for the contract and store_int.h for the state.
 *
 * How a batch reaches the page cache (commitLogWriteMode, store/disk.h). Either way a
 * body is copied exactly once, from the buffer it was received into straight into the
 * page cache: heads and tails (topic, properties) are built in the batch's scratch
 * area, laid out so that one record's tail and the next record's head are adjacent
 * (two iovecs per record: head+previous tail, body); no staging copy.
 * - writev: one io_uring writev per segment the batch touches. ext4 has no
 *   non-blocking buffered writes, so each is a kernel worker's write: two thread
 *   wake-ups (~15-20 us here) per write, but the copy runs beside the loop.
 * - mmap: the disk copies the iovecs into a writable mapping of the segment on the
 *   loop's thread and completes in a deferred callback (before the same iteration's
 *   submit): no wake-up; the copy costs the loop.
 * - auto (default): copy while no writev is in flight, except a write of 128 KiB or
 *   more with more batches right behind it (batch_submit's `more`): that one goes to
 *   the worker, whose copy overlaps their encoding; under SYNC_FLUSH always writev
 *   (rmq_store_write_mode).
 * Measured (rmq-bench store, ext4 on a 2-vCPU VM, 256 MiB per run, medians of 3 runs,
 * all modes in the same run, 2026-11-30, after the streaming copy, core/copy.h):
 * records/s with one producer, batches of 1: 128 B writev 69k, auto 4517k; 1 KiB 51k /
 * 2652k (a copied write needs no syscall at all: the next append runs in the same
 * iteration); batches of 16, 1 KiB: 390k / 2738k; of 256: 1429k / 2549k (auto copies
 * it: nothing follows for a worker to overlap). Four producers, batches of 256, 1 KiB:
 * mmap 3108 MB/s, writev 3079, auto 2852 (another run: 2523 / 3359 / 3171; the
 * worker's copy in parallel catches up once writes are large and pipelined). SYNC_FLUSH,
 * one appender, p50: mmap 133-145 us, writev 104-128 us (each fdatasync write-protects
 * the page the next copy lands on: a fault per append). A failed write is an error code
 * either way; under mmap a SIGBUS in the copy (a page that cannot be read back) is caught
 * and becomes -EIO. An earlier measurement (655 MB/s for mmap+memcpy against 1449 for
 * writev) was taken before rmq-bench warmed the VM's memory; it does not reproduce.
 *
 * Invariants (rmq_store__check): flushed_off <= written_off <= reserved_off; the
 * in-flight batches are in log order and contiguous; written_off only moves over
 * a prefix of completed batches, so every byte below it is in the page cache.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/be.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store_int.h"

#define SCAN_CHUNK (4u << 20)
/* maxMessageSize's highest setting plus a record's head, topic and properties */
#define SCAN_RECORD_MAX ((64u << 20) + (64u << 10))
#define STORE_TS_EVERY 64u          /* records stamped per wall-clock read */

bool
rmq_store__check(const struct rmq_store *s)
{
    return s->flushed_off <= s->written_off && s->written_off <= s->reserved_off;
}

/* PREPARED and ROLLBACK records never get a consume-queue entry (STORE.md §2.1). */
static bool
takes_queue_offset(int32_t sysflag)
{
    int tx = sysflag & RMQ_SYSFLAG_TX_MASK;

    return tx != RMQ_SYSFLAG_TX_PREPARED && tx != RMQ_SYSFLAG_TX_ROLLBACK;
}

/* A delayed record's delivery time: its store time plus its level's delay. */
static int64_t
delivery_time(const struct rmq_store *s, const struct rmq_record *r, const char *lv, size_t len)
{
    long level = 0;

    for (size_t i = 0; i < len && i < 4 && lv[i] >= '0' && lv[i] <= '9'; i++) {
        level = level * 10 + (lv[i] - '0');
    }
    if (level < 1) {
        level = 1;
    }
    if ((uint32_t)level > s->cfg.delay_level_count) {
        level = (long)s->cfg.delay_level_count;
    }
    return r->store_ts + s->cfg.delay_levels_ms[level - 1];
}

/* Consume queue tag code (STORE.md §7): the TAGS property's Java hash, 0 without one;
 * for SCHEDULE_TOPIC_XXXX the delivery time, so recovery rebuilds it the same way. */
static int64_t
record_tags_code(const struct rmq_store *s, const struct rmq_record *r)
{
    const char *tag;
    size_t len;

    if (r->topic_len == sizeof(RMQ_SCHEDULE_TOPIC) - 1 &&
        memcmp(r->topic, RMQ_SCHEDULE_TOPIC, r->topic_len) == 0 &&
        rmq_props_get(r->props, r->props_len, "DELAY", &tag, &len)) {
        return delivery_time(s, r, tag, len);
    }
    if (r->topic_len == sizeof(RMQ_TIMER_TOPIC) - 1 &&
        memcmp(r->topic, RMQ_TIMER_TOPIC, r->topic_len) == 0 &&
        (rmq_props_get(r->props, r->props_len, "TIMER_OUT", &tag, &len) ||
         rmq_props_get(r->props, r->props_len, "TIMER_DELIVER_MS", &tag, &len))) {
        int64_t v = 0;

        for (size_t i = 0; i < len && i < 19 && tag[i] >= '0' && tag[i] <= '9'; i++) {
            v = v * 10 + (tag[i] - '0');
        }
        return v;
    }
    if (!rmq_props_get(r->props, r->props_len, "TAGS", &tag, &len) || len == 0) {
        return 0;
    }
    return rmq_tag_hash(tag, len);
}

/* ---- completion of messages (always from the deferred pass, never inline) ------------ */

static void submit_run(struct rmq_deferred *d);
static void sync_start(struct rmq_store *s);

static void
complete(struct rmq_store *s, struct rmq_store_msg *m, int status)
{
    m->status = status;
    rmq_list_add_tail(&s->completed, &m->link);
    rmq_loop_defer(s->loop, &s->submit);
}

static void
fail_all(struct rmq_store *s, struct rmq_link *list, int status)
{
    struct rmq_link *n;

    while ((n = rmq_list_pop(list)) != NULL) {
        complete(s, rmq_container_of(n, struct rmq_store_msg, link), status);
    }
}

static void
set_error(struct rmq_store *s, const char *what, int err)
{
    if (s->error == 0) {
        RMQ_ERROR("store: %s failed err=%s written=%llu flushed=%llu, appends rejected "
                  "until restart", what, strerror(-err), (unsigned long long)s->written_off,
                  (unsigned long long)s->flushed_off);
    }
    s->error = -EIO;
    fail_all(s, &s->pending, -EIO);
    fail_all(s, &s->flush_waiters, -EIO);
    /* Batches that completed behind one still in flight wait for it to move written;
     * it never will now. (Those not done yet fail when they complete.) */
    for (struct rmq_link *n = s->batch_inflight.next; n != &s->batch_inflight; n = n->next) {
        struct rmq_store_batch *b = rmq_container_of(n, struct rmq_store_batch, link);

        if (b->done) {
            fail_all(s, &b->msgs, -EIO);
        }
    }
}

/* ---- segments ------------------------------------------------------------------------- */

static int
seg_push(struct rmq_store *s, uint64_t start, int handle)
{
    if (s->seg_count == s->seg_cap) {
        int cap = s->seg_cap ? s->seg_cap * 2 : 16;
        struct rmq_store_seg *n = realloc(s->segs, (size_t)cap * sizeof(*n));

        if (n == NULL) {
            return -ENOMEM;
        }
        s->segs = n;
        s->seg_cap = cap;
    }
    s->segs[s->seg_count].start = start;
    s->segs[s->seg_count].handle = handle;
    s->segs[s->seg_count].map = NULL;
    s->seg_count++;
    return 0;
}

static struct rmq_store_seg *
cur_seg(struct rmq_store *s)
{
    return &s->segs[s->seg_count - 1];
}

static void
prep_retry_fire(struct rmq_timer *t)
{
    rmq_store__prep_next(rmq_container_of(t, struct rmq_store, prep_retry));
}

static void
prep_done(struct rmq_disk_req *req, int32_t res)
{
    struct rmq_store *s = rmq_container_of(req, struct rmq_store, prep_req);

    s->prep_in_flight = false;
    if (res == -ECANCELED && s->closing) {
        rmq_loop_defer(s->loop, &s->submit);
        return;
    }
    if (res < 0) {
        /* Not sticky: nothing was lost. Appends needing the segment are refused until a
         * retry (every second) succeeds. */
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "store: preparing the next commitlog segment failed "
                   "err=%s, appends that need it are refused, retrying every second",
                   strerror(-res));
        s->prep_failed = true;
        s->prep_err = res == -ENOSPC ? -ENOSPC : -EIO;
        if (!s->closing) {
            rmq_timer_arm(s->loop, &s->prep_retry, 1000 * 1000000ull, prep_retry_fire);
        }
        rmq_loop_defer(s->loop, &s->submit);
        return;
    }
    s->prep_failed = false;
    s->next_handle = res;
    s->stats.segments_prepared++;
    rmq_loop_defer(s->loop, &s->submit);
}

/* The next segment is pre-written in step with the writer's way through the current
 * one (disk_uring.c says why); UINT64_MAX: the writer waits for it. */
static void
prep_advance(struct rmq_store *s, uint64_t target)
{
    if (s->prep_in_flight && s->disk->ops->prepare_advance != NULL) {
        s->disk->ops->prepare_advance(s->disk, target);
    }
}

/* Keep the next segment prepared ahead of the writer (preallocated, pre-written). */
void
rmq_store__prep_next(struct rmq_store *s)
{
    if (s->next_handle >= 0 || s->prep_in_flight || s->closing || s->rebase_in_flight) {
        return;                     /* (a rebase borrows prep_req; it prepares when done) */
    }
    s->prep_in_flight = true;
    s->prep_req.done = prep_done;
    s->disk->ops->prepare(s->disk, cur_seg(s)->start + s->cfg.seg_size, s->cfg.seg_size,
                          &s->prep_req);
}

/* ---- batches ---------------------------------------------------------------------------- */

static void batch_done(struct rmq_disk_req *req, int32_t res);

static struct rmq_store_batch *
batch_open(struct rmq_store *s)
{
    struct rmq_store_batch *b;
    struct rmq_link *n;

    if (s->open_batch != NULL) {
        return s->open_batch;
    }
    n = rmq_list_pop(&s->batch_free);
    if (n == NULL) {
        return NULL;        /* all in flight: continue when one completes */
    }
    b = rmq_container_of(n, struct rmq_store_batch, link);
    b->start_off = b->end_off = s->reserved_off;
    b->seg = s->seg_count - 1;
    b->last_ts = 0;
    b->done = false;
    b->res = 0;
    b->iov_cnt = 0;
    b->iov_next = 0;
    b->bytes = 0;
    b->written = 0;
    b->scratch_used = 0;
    rmq_list_init(&b->msgs);
    s->open_batch = b;
    return b;
}

static void
batch_write(struct rmq_store *s, struct rmq_store_batch *b)
{
    const struct rmq_store_seg *seg = &s->segs[b->seg];
    uint64_t off = b->start_off + b->written - seg->start;

    b->req.done = batch_done;
    s->disk->ops->writev(s->disk, seg->handle, off, b->iov + b->iov_next,
                         (int)(b->iov_cnt - b->iov_next), &b->req);
    s->stats.writes++;
}

/* more: further batches follow right away (a full batch mid-placement, a roll); the disk
 * may then hand a large write to a worker so that it overlaps them */
static void
batch_submit(struct rmq_store *s, bool more)
{
    struct rmq_store_batch *b = s->open_batch;

    if (b == NULL) {
        return;
    }
    s->open_batch = NULL;
    if (b->iov_cnt == 0 || s->error != 0) {
        /* after a failed write nothing more is written: its appends fail with the store */
        fail_all(s, &b->msgs, -EIO);
        rmq_list_add_tail(&s->batch_free, &b->link);
        return;
    }
    rmq_list_add_tail(&s->batch_inflight, &b->link);
    s->stats.batches++;
    b->req.more = more;
    batch_write(s, b);
}

/* Append bytes to the batch's scratch and its iovecs, merging with the last iovec when
 * the bytes are adjacent in scratch (a tail followed by the next head). */
static uint8_t *
scratch_take(struct rmq_store_batch *b, size_t len)
{
    uint8_t *p = b->scratch + b->scratch_used;
    struct iovec *last = b->iov_cnt ? &b->iov[b->iov_cnt - 1] : NULL;

    if (last != NULL && (uint8_t *)last->iov_base + last->iov_len == p) {
        last->iov_len += len;
    } else {
        b->iov[b->iov_cnt].iov_base = p;
        b->iov[b->iov_cnt].iov_len = len;
        b->iov_cnt++;
    }
    b->scratch_used += len;
    b->end_off += len;
    b->bytes += len;
    return p;
}

static void
iov_add(struct rmq_store_batch *b, const void *p, size_t len)
{
    if (len == 0) {
        return;
    }
    b->iov[b->iov_cnt].iov_base = (void *)(uintptr_t)p;
    b->iov[b->iov_cnt].iov_len = len;
    b->iov_cnt++;
    b->end_off += len;
    b->bytes += len;
}

/* The writer needs the next segment: 1 it is ready, 0 wait (prep_done resumes the
 * writer), or the -errno of a failed preparation to refuse the append with. */
static int
next_segment_ready(struct rmq_store *s)
{
    if (s->next_handle >= 0) {
        return 1;
    }
    if (s->prep_failed && !s->prep_in_flight) {
        s->stats.disk_full_refusals += s->prep_err == -ENOSPC;
        return s->prep_err;
    }
    if (s->closing && !s->prep_in_flight) {
        return -ESHUTDOWN;          /* closing cancels the preparation: none will come */
    }
    rmq_store__prep_next(s);
    prep_advance(s, UINT64_MAX);
    return 0;
}

/* The current segment is full up to seg_end: writing goes on in the prepared next one.
 * false after a failure (sticky, logged). */
static bool
roll(struct rmq_store *s, uint64_t seg_end)
{
    batch_submit(s, true);
    if (seg_push(s, seg_end, s->next_handle) < 0) {
        set_error(s, "segment table", -ENOMEM);
        return false;
    }
    s->next_handle = -1;
    s->stats.rolls++;
    rmq_store__prep_next(s);
    return true;
}

/* ---- a slave's copied bytes ------------------------------------------------------------- */

/* An append the store cannot take now (closing, failed, disk full): completed with why. */
static bool
refused(struct rmq_store *s, struct rmq_store_msg *m)
{
    int why = s->closing ? -ESHUTDOWN : s->error != 0 ? -EIO : 0;

    if (why == 0 && s->disk_full) {
        rmq_store__recheck_space(s);
        if (s->disk_full) {
            s->stats.disk_full_refusals++;
            why = -ENOSPC;
        }
    }
    if (why != 0) {
        complete(s, m, why);
    }
    return why != 0;
}

enum { RAW_PLACED, RAW_DONE, RAW_WAIT };

static int seg_index_of(const struct rmq_store *s, uint64_t off);

static bool
log_empty(const struct rmq_store *s)
{
    return s->seg_count == 1 && s->reserved_off == s->segs[0].start &&
           s->written_off == s->reserved_off && s->min_off == s->segs[0].start &&
           s->open_batch == NULL && rmq_list_is_empty(&s->batch_inflight);
}

static void rebase_step(struct rmq_disk_req *req, int32_t res);

/*
 * An empty log moves to the master's segment start (an empty slave is sent the
 * master's newest segment, HA.md §2.2): its empty current segment, then the prepared
 * next one, are renamed to the new starts. Once in a slave's life.
 */
/* Moving up, the prepared next segment goes first (the current one may take its name);
 * moving down, the current one does. */
static void
rebase_start(struct rmq_store *s, uint64_t to)
{
    s->rebase_in_flight = true;
    s->rebase_to = to;
    s->rebase_step = 0;
    s->prep_req.done = rebase_step;     /* prep_req is idle: no preparation in flight */
    if (s->next_handle >= 0 && to > s->segs[0].start) {
        s->rebase_step = 2;
        s->disk->ops->rename(s->disk, s->next_handle, to + s->cfg.seg_size, &s->prep_req);
        return;
    }
    s->disk->ops->rename(s->disk, s->segs[0].handle, to, &s->prep_req);
}

static void
rebase_step(struct rmq_disk_req *req, int32_t res)
{
    struct rmq_store *s = rmq_container_of(req, struct rmq_store, prep_req);

    if (res < 0) {
        RMQ_ERROR("store: moving the empty log to offset %llu (the master's) failed err=%s",
                  (unsigned long long)s->rebase_to, strerror(-res));
        s->rebase_in_flight = false;
        set_error(s, "log move", res);
        rmq_loop_defer(s->loop, &s->submit);
        return;
    }
    if (s->rebase_step == 2) {
        s->rebase_step = 3;             /* the next one moved: now the current one */
        s->disk->ops->rename(s->disk, s->segs[0].handle, s->rebase_to, req);
        return;
    }
    if (s->rebase_step == 0 || s->rebase_step == 3) {
        s->segs[0].start = s->rebase_to;
        s->min_off = s->reserved_off = s->written_off = s->flushed_off = s->rebase_to;
        s->flushed_rec_off = s->rebase_to;
        s->dispatched_off = s->raw_parse_off = s->rebase_to;
        s->release_off = RMQ_MAX(s->release_off, s->rebase_to);
        if (s->next_handle >= 0 && s->rebase_step == 0) {
            s->rebase_step = 1;
            s->disk->ops->rename(s->disk, s->next_handle, s->rebase_to + s->cfg.seg_size, req);
            return;
        }
    }
    RMQ_INFO("store: empty log moved to offset %llu (the master's segment start)",
             (unsigned long long)s->rebase_to);
    s->rebase_in_flight = false;
    rmq_store_checkpoint(s);
    rmq_store__prep_next(s);
    rmq_loop_defer(s->loop, &s->submit);
}

static int
place_raw(struct rmq_store *s, struct rmq_store_msg *m)
{
    uint64_t off = (uint64_t)m->rec.phys_off;
    uint64_t len = m->rec.body_len;
    uint64_t seg_end = cur_seg(s)->start + s->cfg.seg_size;
    struct rmq_store_batch *b;

    if (s->rebase_in_flight) {
        return RAW_WAIT;
    }
    if (off != s->reserved_off && log_empty(s) && off % s->cfg.seg_size == 0 &&
        s->disk->ops->rename != NULL) {
        if (s->prep_in_flight) {
            prep_advance(s, UINT64_MAX);    /* its file moves too: let it finish */
            return RAW_WAIT;
        }
        rebase_start(s, off);
        return RAW_WAIT;
    }
    if (s->reserved_off == seg_end && off == seg_end) {
        /* the copied filler filled the segment: this copy starts the next one */
        int ready = next_segment_ready(s);

        if (ready < 0) {
            rmq_list_del(&m->link);
            complete(s, m, ready);
            return RAW_DONE;
        }
        if (ready == 0 || !roll(s, seg_end)) {
            return RAW_WAIT;
        }
        seg_end += s->cfg.seg_size;
    }
    if (off != s->reserved_off || len > seg_end - off) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "store: copied bytes at %llu+%llu refused: the log "
                   "ends at %llu (segment end %llu)", (unsigned long long)off,
                   (unsigned long long)len, (unsigned long long)s->reserved_off,
                   (unsigned long long)seg_end);
        rmq_list_del(&m->link);
        complete(s, m, -ERANGE);
        return RAW_DONE;
    }
    b = batch_open(s);
    if (b != NULL && b->iov_cnt + 1 > RMQ_STORE_BATCH_IOV) {
        batch_submit(s, true);
        b = batch_open(s);
    }
    if (b == NULL) {
        return RAW_WAIT;                /* a batch completes: resumed */
    }
    if (!s->raw) {
        s->raw = true;
        s->raw_parse_off = s->reserved_off;
    }
    iov_add(b, m->rec.body, len);
    s->reserved_off += len;
    m->end_off = s->reserved_off;
    rmq_list_del(&m->link);
    rmq_list_add_tail(&b->msgs, &m->link);
    s->stats.raw_appends++;
    s->stats.raw_bytes += len;
    return RAW_PLACED;
}

void
rmq_store__raw_parse(struct rmq_store *s)
{
    while (s->raw && !s->raw_bad && s->raw_parse_off < s->written_off &&
           s->disp_tail - s->disp_head < RMQ_DISPATCH_CAP) {
        int i = seg_index_of(s, s->raw_parse_off);
        uint64_t seg_end = s->segs[i].start + s->cfg.seg_size;
        uint64_t end = RMQ_MIN(s->written_off, seg_end);
        uint64_t pos = s->raw_parse_off;
        struct rmq_seg_map *pin;
        const uint8_t *p;

        if (end - pos < 8 || rmq_store_view(s, pos, (uint32_t)(end - pos), &p, &pin) < 0) {
            return;
        }
        while (end - pos >= 8 && s->disp_tail - s->disp_head < RMQ_DISPATCH_CAP) {
            const uint8_t *at = p + (pos - s->raw_parse_off);
            uint32_t size = rmq_get_be32(at);
            struct rmq_record r;
            uint32_t blank = 0;
            int64_t n;

            if (rmq_get_be32(at + 4) == RMQ_RECORD_BLANK_MAGIC) {
                pos = seg_end;          /* the rest of the segment is the filler's */
                break;
            }
            if (size > end - pos && size <= s->cfg.max_message_size + 65536u &&
                end < seg_end) {
                break;                  /* ends in a later copy */
            }
            n = rmq_record_decode(at, (size_t)(end - pos), true, &r, &blank);
            if (n <= 0 || (uint64_t)r.phys_off != pos) {
                RMQ_ERROR("store: copied bytes at %llu are not a record (size %u, phys %lld): "
                          "entries stop here", (unsigned long long)pos, size,
                          (long long)(n > 0 ? r.phys_off : -1));
                s->raw_bad = true;
                s->stats.raw_bad_records++;
                break;
            }
            if (takes_queue_offset(r.sysflag)) {
                struct rmq_cq *q = rmq_cq_get(s, r.topic, r.topic_len, r.queue_id);
                struct rmq_dispatch *d;

                if (q == NULL) {
                    break;              /* out of memory: retried with the next copy */
                }
                d = &s->disp[s->disp_tail++ & (RMQ_DISPATCH_CAP - 1)];
                d->cq = q;
                d->queue_off = r.queue_off;
                d->phys = pos;
                d->size = (uint32_t)n;
                d->tags_code = record_tags_code(s, &r);
                d->store_ts = r.store_ts;
                if (r.queue_off + 1 > q->next) {
                    q->next = r.queue_off + 1;
                }
            }
            if (r.store_ts > s->last_store_ts) {
                s->last_store_ts = r.store_ts;
            }
            s->written_ts = r.store_ts;
            pos += (uint64_t)n;
        }
        rmq_store_unpin(s, pin);
        if (pos == s->raw_parse_off) {
            return;
        }
        s->raw_parse_off = pos;
    }
}

void
rmq_store_append_raw(struct rmq_store *s, struct rmq_store_msg *m)
{
    rmq_list_init(&m->link);
    m->raw = true;
    if (refused(s, m)) {
        return;
    }
    if (m->rec.body_len == 0) {
        complete(s, m, 0);
        return;
    }
    rmq_list_add_tail(&s->pending, &m->link);
    rmq_loop_defer(s->loop, &s->submit);
}

uint64_t
rmq_store_raw_parsed_off(const struct rmq_store *s)
{
    return s->raw ? s->raw_parse_off : s->written_off;
}

uint64_t
rmq_store_reserved_off(const struct rmq_store *s)
{
    return s->reserved_off;
}

uint64_t
rmq_store_seg_size(const struct rmq_store *s)
{
    return s->cfg.seg_size;
}

void
rmq_store_on_written(struct rmq_store *s, void (*fn)(void *ctx, uint64_t written), void *ctx)
{
    s->on_written = fn;
    s->on_written_ctx = ctx;
}

/* Place as many pending appends as fit into batches; submit them. */
static void
place_pending(struct rmq_store *s)
{
    int64_t now = 0;
    uint32_t placed = 0;

    while (!rmq_list_is_empty(&s->pending) && s->error == 0) {
        struct rmq_store_msg *m = rmq_container_of(s->pending.next, struct rmq_store_msg, link);
        struct rmq_record *r = &m->rec;
        uint32_t size;

        if (m->raw) {
            int ret = place_raw(s, m);

            if (ret == RAW_WAIT) {
                break;
            }
            continue;
        }
        size = rmq_record_size(r->body_len, r->topic_len, r->props_len);
        uint64_t seg_end = cur_seg(s)->start + s->cfg.seg_size;
        struct rmq_store_batch *b;
        struct rmq_cq *q = NULL;
        bool takes = takes_queue_offset(r->sysflag);

        RMQ_ASSERT(seg_end - s->reserved_off >= RMQ_RECORD_END_MIN_BLANK);
        if ((uint64_t)size + RMQ_RECORD_END_MIN_BLANK > seg_end - s->reserved_off) {
            /* Does not fit: filler to the end of this segment, record in the next. */
            int ready = next_segment_ready(s);

            if (ready < 0) {
                /* no room for the next segment: refuse, nothing is written */
                rmq_list_del(&m->link);
                complete(s, m, ready);
                continue;
            }
            if (ready == 0) {
                break;              /* prep_done resumes us */
            }
            b = batch_open(s);
            if (b == NULL || b->scratch_used + RMQ_RECORD_END_MIN_BLANK > s->cfg.batch_scratch ||
                b->iov_cnt + 1 > RMQ_STORE_BATCH_IOV) {
                batch_submit(s, true);
                if (b == NULL || (b = batch_open(s)) == NULL) {
                    break;
                }
            }
            rmq_record_encode_blank(scratch_take(b, RMQ_RECORD_END_MIN_BLANK),
                                    (uint32_t)(seg_end - s->reserved_off));
            /* only the filler's 8 bytes are written; the rest of the segment stays zero */
            b->end_off = seg_end;
            s->reserved_off = seg_end;
            if (!roll(s, seg_end)) {
                break;
            }
            continue;
        }
        b = batch_open(s);
        if (b != NULL && (b->scratch_used + RMQ_RECORD_HEAD_SIZE + 3u + r->topic_len +
                          r->props_len > s->cfg.batch_scratch ||
                          b->iov_cnt + 3 > RMQ_STORE_BATCH_IOV)) {
            batch_submit(s, true);
            b = batch_open(s);
        }
        if (b == NULL || (takes && s->disp_tail - s->disp_head == RMQ_DISPATCH_CAP)) {
            break;                  /* a batch completes or dispatch catches up: resumed */
        }
        if (takes && (q = m->cq) == NULL &&
            (q = rmq_cq_get(s, r->topic, r->topic_len, r->queue_id)) == NULL) {
            rmq_list_del(&m->link);
            complete(s, m, -ENOMEM);
            continue;
        }
        /* store time, kept non-decreasing in log order: one clock read per STORE_TS_EVERY
         * records placed in one go (ms resolution; a read per record was ~5 % of a batched
         * append) */
        if (placed++ % STORE_TS_EVERY == 0) {
            now = (int64_t)rmq_clock_wall_ms();
        }
        s->last_store_ts = now > s->last_store_ts ? now : s->last_store_ts;
        r->store_ts = s->last_store_ts;
        r->phys_off = (int64_t)s->reserved_off;
        r->queue_off = takes ? q->next++ : 0;
        rmq_record_seal(r);
        if (takes) {
            struct rmq_dispatch *d = &s->disp[s->disp_tail++ & (RMQ_DISPATCH_CAP - 1)];

            d->cq = q;
            d->queue_off = r->queue_off;
            d->phys = (uint64_t)r->phys_off;
            d->size = size;
            d->tags_code = record_tags_code(s, r);
            d->store_ts = r->store_ts;
        }
        b->last_ts = r->store_ts;
        rmq_record_encode_head(r, scratch_take(b, RMQ_RECORD_HEAD_SIZE));
        iov_add(b, r->body, r->body_len);
        rmq_record_encode_tail(r, scratch_take(b, 3u + r->topic_len + r->props_len));
        s->reserved_off += size;
        m->end_off = s->reserved_off;
        RMQ_DEBUG_ASSERT(b->end_off == s->reserved_off);
        rmq_list_del(&m->link);
        rmq_list_add_tail(&b->msgs, &m->link);
        s->stats.appends++;
    }
    batch_submit(s, false);
    prep_advance(s, s->reserved_off - cur_seg(s)->start);
}

static void
release_batch(struct rmq_store *s, struct rmq_store_batch *b)
{
    rmq_list_del(&b->link);
    rmq_list_add_tail(&s->batch_free, &b->link);
}

/* written_off moves over the completed prefix of in-flight batches. */
static void
advance_written(struct rmq_store *s)
{
    bool moved = false;

    while (!rmq_list_is_empty(&s->batch_inflight)) {
        struct rmq_store_batch *b =
            rmq_container_of(s->batch_inflight.next, struct rmq_store_batch, link);
        struct rmq_link *n;

        if (!b->done) {
            break;
        }
        s->written_off = b->end_off;
        if (b->last_ts != 0) {
            s->written_ts = b->last_ts;
        }
        moved = true;
        while ((n = rmq_list_pop(&b->msgs)) != NULL) {
            struct rmq_store_msg *m = rmq_container_of(n, struct rmq_store_msg, link);

            if (s->cfg.flush_type == RMQ_FLUSH_SYNC) {
                m->enqueued_ns = s->loop->now_ns;
                rmq_list_add_tail(&s->flush_waiters, &m->link);
            } else {
                complete(s, m, 0);
            }
        }
        release_batch(s, b);
    }
    RMQ_ASSERT(rmq_store__check(s));
    if (!moved) {
        return;
    }
    rmq_store__dispatch(s);
    if (s->on_written != NULL) {
        s->on_written(s->on_written_ctx, s->written_off);
    }
    /* closing: the flush timer is not re-armed, and the close waits for flushed */
    if (s->cfg.flush_type == RMQ_FLUSH_SYNC || s->closing ||
        s->written_off - s->flushed_off >= (uint64_t)s->cfg.flush_least_pages * 4096) {
        sync_start(s);
    }
}

static void
batch_done(struct rmq_disk_req *req, int32_t res)
{
    struct rmq_store_batch *b = rmq_container_of(req, struct rmq_store_batch, req);
    struct rmq_store *s = b->s;
    uint64_t want = b->bytes;

    if (res <= 0) {
        /* failed, or no progress on a write of want > 0 bytes: not acknowledged, its
         * messages fail with the store (set_error fails those of done batches) */
        b->done = true;
        set_error(s, res < 0 ? "commitlog write" : "commitlog write (no progress)",
                  res < 0 ? res : -EIO);
        return;
    }
    b->written += (uint64_t)res;
    if (b->written < want) {
        /* short write: skip what went out and write the rest */
        uint64_t skip = (uint64_t)res;

        while (skip > 0 && b->iov_next < b->iov_cnt) {
            struct iovec *v = &b->iov[b->iov_next];

            if (skip >= v->iov_len) {
                skip -= v->iov_len;
                b->iov_next++;
            } else {
                v->iov_base = (uint8_t *)v->iov_base + skip;
                v->iov_len -= skip;
                skip = 0;
            }
        }
        batch_write(s, b);
        return;
    }
    b->done = true;
    if (s->error == 0) {
        advance_written(s);
    } else {
        /* written, but behind a failed write: `written` never covers it */
        fail_all(s, &b->msgs, -EIO);
    }
    rmq_loop_defer(s->loop, &s->submit);
}

/* ---- flush -------------------------------------------------------------------------------- */

static int
seg_index_of(const struct rmq_store *s, uint64_t off)
{
    for (int i = s->seg_count - 1; i >= 0; i--) {
        if (s->segs[i].start <= off) {
            return i;
        }
    }
    return 0;
}

static void sync_done(struct rmq_disk_req *req, int32_t res);

static void
sync_issue(struct rmq_store *s)
{
    s->sync_req.done = sync_done;
    s->disk->ops->sync(s->disk, s->segs[s->sync_seg].handle, &s->sync_req);
    s->stats.syncs++;
}

/* One fdatasync chain at a time, covering everything written when it started. */
static void
sync_start(struct rmq_store *s)
{
    if (s->sync_in_flight || s->error != 0 || s->written_off == s->flushed_off) {
        return;
    }
    s->sync_in_flight = true;
    s->sync_target = s->written_off;
    s->sync_rec_target = RMQ_MIN(s->dispatched_off, s->written_off);    /* a record start */
    s->sync_target_ts = s->written_ts;
    /* segments holding unflushed bytes: from flushed_off's segment to the target's */
    s->sync_seg = seg_index_of(s, s->flushed_off);
    sync_issue(s);
}

static void
complete_flushed(struct rmq_store *s)
{
    while (!rmq_list_is_empty(&s->flush_waiters)) {
        struct rmq_store_msg *m =
            rmq_container_of(s->flush_waiters.next, struct rmq_store_msg, link);

        if (m->end_off > s->flushed_off) {
            break;
        }
        rmq_list_del(&m->link);
        complete(s, m, 0);
    }
}

static void
sync_done(struct rmq_disk_req *req, int32_t res)
{
    struct rmq_store *s = rmq_container_of(req, struct rmq_store, sync_req);

    if (res < 0) {
        s->sync_in_flight = false;
        set_error(s, "commitlog fdatasync", res);
        return;
    }
    if (s->sync_seg < s->seg_count - 1 &&
        s->segs[s->sync_seg + 1].start < s->sync_target) {
        s->sync_seg++;
        sync_issue(s);
        return;
    }
    s->sync_in_flight = false;
    s->flushed_off = s->sync_target;
    s->flushed_rec_off = RMQ_MAX(s->flushed_rec_off, s->sync_rec_target);
    rmq_store__flushed_rec_update(s);
    s->flushed_ts = s->sync_target_ts;
    complete_flushed(s);
    if (s->cfg.flush_type == RMQ_FLUSH_SYNC || s->closing) {
        sync_start(s);      /* whatever was written meanwhile: the next group */
    }
    rmq_loop_defer(s->loop, &s->submit);
}

static void
flush_timer_fire(struct rmq_timer *t)
{
    struct rmq_store *s = rmq_container_of(t, struct rmq_store, flush_timer);

    sync_start(s);
    if (!s->closing) {
        rmq_timer_arm(s->loop, &s->flush_timer, (uint64_t)s->cfg.flush_interval_ms * 1000000u,
                      flush_timer_fire);
    }
}

/* SYNC_FLUSH waiters older than syncFlushTimeout are answered FLUSH_DISK_TIMEOUT. */
static void
timeout_fire(struct rmq_timer *t)
{
    struct rmq_store *s = rmq_container_of(t, struct rmq_store, timeout_timer);
    uint64_t limit = (uint64_t)s->cfg.sync_flush_timeout_ms * 1000000u;

    while (!rmq_list_is_empty(&s->flush_waiters)) {
        struct rmq_store_msg *m =
            rmq_container_of(s->flush_waiters.next, struct rmq_store_msg, link);

        if (s->loop->now_ns - m->enqueued_ns < limit) {
            break;
        }
        rmq_list_del(&m->link);
        s->stats.flush_timeouts++;
        complete(s, m, -ETIMEDOUT);
    }
    rmq_loop_defer(s->loop, &s->submit);
}

/* ---- the deferred pass: place appends, run callbacks --------------------------------------- */

/* A disk request of some batch has not completed yet. */
static bool
writes_outstanding(const struct rmq_store *s)
{
    for (const struct rmq_link *n = s->batch_inflight.next; n != &s->batch_inflight;
         n = n->next) {
        if (!rmq_container_of(n, const struct rmq_store_batch, link)->done) {
            return true;
        }
    }
    return false;
}

static void
root_path(const struct rmq_store *s, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", s->cfg.root_dir, name);
}

static void
cancel_timers(struct rmq_store *s)
{
    rmq_timer_cancel(s->loop, &s->flush_timer);
    rmq_timer_cancel(s->loop, &s->timeout_timer);
    rmq_timer_cancel(s->loop, &s->cp_timer);
    rmq_timer_cancel(s->loop, &s->clean_timer);
    rmq_timer_cancel(s->loop, &s->dispatch_retry);
    rmq_timer_cancel(s->loop, &s->prep_retry);
}

/* Everything is written and flushed: a last checkpoint, then the abort file goes. */
static void
close_finish(struct rmq_store *s)
{
    void (*fn)(struct rmq_store *, void *);
    char path[1200];

    if (s->cp_in_flight) {
        return;                         /* cp_finish defers us again */
    }
    if (!s->cp_final_done && s->error == 0 && s->cp_err == 0 && s->cp_off != s->written_off) {
        s->cp_final_done = true;
        rmq_store__checkpoint(s);
        if (s->cp_in_flight) {
            return;
        }
    }
    fn = s->close_done;
    s->close_done = NULL;
    cancel_timers(s);
    if (s->error == 0 && s->cp_off == s->written_off) {
        root_path(s, "abort", path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT) {
            RMQ_WARN("store: removing %s failed err=%s", path, strerror(errno));
        }
    } else {
        RMQ_WARN("store: closed with checkpoint=%llu written=%llu: the next start recovers "
                 "from the checkpoint", (unsigned long long)s->cp_off,
                 (unsigned long long)s->written_off);
    }
    fn(s, s->close_arg);
}

static void
submit_run(struct rmq_deferred *d)
{
    struct rmq_store *s = rmq_container_of(d, struct rmq_store, submit);
    struct rmq_link *n;

    place_pending(s);
    if (s->cfg.flush_type == RMQ_FLUSH_SYNC && !rmq_list_is_empty(&s->flush_waiters) &&
        !rmq_timer_is_armed(&s->timeout_timer)) {
        rmq_timer_arm(s->loop, &s->timeout_timer,
                      (uint64_t)s->cfg.sync_flush_timeout_ms * 1000000u / 4 + 1, timeout_fire);
    }
    while ((n = rmq_list_pop(&s->completed)) != NULL) {
        struct rmq_store_msg *m = rmq_container_of(n, struct rmq_store_msg, link);

        m->done(m, m->status);
    }
    if (s->closing && s->close_done != NULL && rmq_list_is_empty(&s->pending) &&
        !writes_outstanding(s) && s->open_batch == NULL && !s->sync_in_flight &&
        !s->prep_in_flight && !s->remove_in_flight && rmq_cq_maker_idle(s) &&
        (s->flushed_off == s->written_off || s->error != 0)) {
        close_finish(s);
    }
}

void
rmq_store_append(struct rmq_store *s, struct rmq_store_msg *m)
{
    int ret;

    rmq_list_init(&m->link);
    /* a queue that exists has a valid topic: the name is checked only for a new one */
    m->cq = takes_queue_offset(m->rec.sysflag)
            ? rmq_cq_find(s, m->rec.topic, m->rec.topic_len, m->rec.queue_id) : NULL;
    if (m->cq == NULL && !rmq_topic_name_ok(m->rec.topic, m->rec.topic_len) && !s->closing &&
        s->error == 0) {
        complete(s, m, -EINVAL);
        return;
    }
    if (refused(s, m)) {
        return;
    }
    ret = rmq_record_check(&m->rec, RMQ_MIN(s->cfg.max_message_size + 1024,
                                            (uint32_t)(s->cfg.seg_size - 8)));
    if (ret < 0 || m->rec.body_len > s->cfg.max_message_size) {
        complete(s, m, -EMSGSIZE);
        return;
    }
    rmq_list_add_tail(&s->pending, &m->link);
    rmq_loop_defer(s->loop, &s->submit);
}

void
rmq_store_close(struct rmq_store *s, void (*done)(struct rmq_store *s, void *arg), void *arg)
{
    s->closing = true;
    s->close_done = done;
    s->close_arg = arg;
    if (s->prep_in_flight && s->disk->ops->prepare_cancel != NULL) {
        s->disk->ops->prepare_cancel(s->disk);
    }
    sync_start(s);
    rmq_loop_defer(s->loop, &s->submit);
}

static void
close_wait_done(struct rmq_store *s, void *arg)
{
    (void)s;
    *(bool *)arg = true;
}

int
rmq_store_close_wait(struct rmq_store *s, uint64_t timeout_ns)
{
    bool closed = false;
    uint64_t end = rmq_clock_mono_ns() + timeout_ns;

    rmq_store_close(s, close_wait_done, &closed);
    while (!closed && rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(s->loop, 1000000);
    }
    return closed ? 0 : -ETIMEDOUT;
}

/* ---- open and recovery ------------------------------------------------------------------------ */

struct wait_req {
    struct rmq_disk_req req;
    bool done;
    int32_t res;
};

static void
wait_done(struct rmq_disk_req *req, int32_t res)
{
    struct wait_req *w = rmq_container_of(req, struct wait_req, req);

    w->done = true;
    w->res = res;
}

/* Start-up only: run the loop until one disk request completes. */
static int32_t
wait_for(struct rmq_loop *loop, struct wait_req *w)
{
    while (!w->done) {
        int ret = rmq_loop_run_once(loop, 1000000);   /* a CQE ends the wait early */

        if (ret < 0) {
            return ret;
        }
    }
    return w->res;
}

/*
 * A gap before the last segment file: an empty log's move to its master's offset
 * (rebase_start) renames two files, and a crash between the renames leaves the prepared
 * next segment apart from the current one. An empty prepared segment is removed (1: the
 * log starts without it; the move happens again); one holding records is a real gap (0:
 * refuse to start). -errno when it cannot be read or removed.
 */
static int
drop_stray_prepared(struct rmq_store *s, uint64_t start)
{
    struct wait_req w = {.req.done = wait_done};
    uint8_t head[8];
    int h = s->disk->ops->open_existing(s->disk, start, s->cfg.seg_size);
    int32_t ret;

    if (h < 0) {
        return h;
    }
    if (s->disk->ops->read(s->disk, h, 0, head, sizeof(head)) != (ssize_t)sizeof(head)) {
        s->disk->ops->close(s->disk, h);
        return -EIO;
    }
    if (rmq_get_be32(head) != 0 || rmq_get_be32(head + 4) != 0) {
        s->disk->ops->close(s->disk, h);
        return 0;
    }
    RMQ_WARN("store: commitlog segment %llu is empty and apart from the rest (a move of the "
             "empty log to its master's offset was interrupted): removed",
             (unsigned long long)start);
    s->disk->ops->remove(s->disk, h, &w.req);
    ret = wait_for(s->loop, &w);
    return ret < 0 ? ret : 1;
}

/*
 * A copy cut short by kill -9 leaves zeros from the cut to the record's end (nothing past
 * the write frontier is ever anything but zero). The body CRC, the lengths and the topic
 * check catch every cut but one: inside the properties after their length, which leaves
 * a record whose properties end in NUL bytes. So a record ending in a NUL byte that is
 * not followed by another record is taken for torn. (Properties a client sent ending in
 * NUL would be dropped too at the very end of the log after an unclean stop; RocketMQ's
 * encoding ends them with \002.) Found by the HA kill -9 test: a slave that kept such a
 * record no longer matched its master.
 */
static bool
torn_at_the_end(struct rmq_store *s, int i, const uint8_t *buf, uint64_t win_start,
                uint64_t win_end, uint64_t pos, int64_t n, const struct rmq_record *r)
{
    uint64_t next = pos + (uint64_t)n;
    uint8_t size[4] = {0};

    if (r->props_len == 0 || ((const uint8_t *)r->props)[r->props_len - 1] != 0) {
        return false;
    }
    if (next + sizeof(size) <= win_end) {
        memcpy(size, buf + (next - win_start), sizeof(size));
    } else if (next + sizeof(size) <= s->cfg.seg_size &&
               s->disk->ops->read(s->disk, s->segs[i].handle, next, size, sizeof(size)) !=
               (ssize_t)sizeof(size)) {
        return true;                    /* cannot tell: not trusted */
    }
    return rmq_get_be32(size) == 0;
}

/*
 * Scan segment i from byte pos: every valid record gets its consume queue entry
 * (again). Returns the offset within the segment where valid data ends, or the
 * segment size when it ended with a filler (or exactly full).
 */
static int64_t
scan_segment(struct rmq_store *s, int i, uint64_t pos, uint8_t **bufp, size_t *buf_lenp,
             bool *complete_out)
{
    const struct rmq_store_seg *seg = &s->segs[i];
    uint64_t size = s->cfg.seg_size;
    uint64_t win_start = pos;
    uint64_t win_end = pos;
    uint8_t *buf = *bufp;
    size_t buf_len = *buf_lenp;

    *complete_out = false;
    while (pos + RMQ_RECORD_END_MIN_BLANK <= size) {
        struct rmq_record r;
        uint32_t blank = 0;
        uint32_t rsize = 0;
        int64_t n;

        if (pos + 8 <= win_end) {
            rsize = rmq_get_be32(buf + (pos - win_start));
        }
        /* A record larger than the buffer (sized from today's maxMessageSize, which may
         * have been lowered since it was stored): the buffer grows to hold it, up to the
         * largest record any configuration allows. Else it would end the log here, and
         * everything after it would be zeroed. */
        if (rsize > buf_len && rsize <= RMQ_MIN(size - pos, (uint64_t)SCAN_RECORD_MAX)) {
            uint8_t *grown = realloc(buf, rsize);

            if (grown == NULL) {
                return -ENOMEM;
            }
            *bufp = buf = grown;
            *buf_lenp = buf_len = rsize;
            win_end = pos;              /* read again below */
        }
        /* keep [pos, pos + record size) inside the window whenever it can be */
        if (pos + 8 > win_end || (rsize <= buf_len && pos + rsize > win_end && win_end < size)) {
            ssize_t got = s->disk->ops->read(s->disk, seg->handle, pos, buf,
                                             (size_t)RMQ_MIN((uint64_t)buf_len, size - pos));

            if (got < 0) {
                return got;
            }
            win_start = pos;
            win_end = pos + (uint64_t)got;
            if (got < 8) {
                break;
            }
        }
        n = rmq_record_decode(buf + (pos - win_start), (size_t)(win_end - pos), true, &r,
                              &blank);
        if (n == 0) {
            if (blank == size - pos) {
                *complete_out = true;
                return (int64_t)size;
            }
            break;                      /* a filler that does not reach the end: corrupt */
        }
        if (n < 0 || (uint64_t)r.phys_off != seg->start + pos ||
            !rmq_topic_name_ok(r.topic, r.topic_len) || torn_at_the_end(s, i, buf, win_start,
                                                                        win_end, pos, n, &r)) {
            break;
        }
        if (takes_queue_offset(r.sysflag)) {
            struct rmq_cq *q = rmq_cq_get(s, r.topic, r.topic_len, r.queue_id);
            int ret;

            if (q == NULL) {
                return -ENOMEM;
            }
            if (r.queue_off != q->next && q->seg_count > 0) {
                RMQ_WARN("store: recovery: record at %lld has queue offset %lld, consume queue "
                         "%s/%d expected %lld", (long long)r.phys_off, (long long)r.queue_off,
                         q->topic, (int)q->queue_id, (long long)q->next);
            }
            ret = rmq_cq_put(s, q, r.queue_off, (uint64_t)r.phys_off, (uint32_t)n,
                             record_tags_code(s, &r));
            if (ret < 0) {
                RMQ_ERROR("store: recovery: writing consume queue %s/%d failed err=%s",
                          q->topic, (int)q->queue_id, strerror(-ret));
                return ret;
            }
            if (r.queue_off + 1 > q->next) {
                q->next = r.queue_off + 1;
            }
            s->stats.cq_entries_rebuilt++;
        }
        if (r.store_ts > s->last_store_ts) {
            s->last_store_ts = r.store_ts;
        }
        pos += (uint64_t)n;
        s->stats.recovered_bytes += (uint64_t)n;
    }
    return (int64_t)pos;
}

/* Store time of the first record of segment i, or -1. Start-up only. */
static int64_t
seg_first_ts(struct rmq_store *s, int i)
{
    uint8_t head[RMQ_RECORD_TS_PEEK];

    if (s->disk->ops->read(s->disk, s->segs[i].handle, 0, head, sizeof(head)) !=
        (ssize_t)sizeof(head)) {
        return -1;
    }
    return rmq_record_peek_store_ts(head, sizeof(head));
}

/*
 * Where the recovery scan starts: ringmq's exact checkpoint offset; else, for a
 * store last run by the reference, the newest segment whose first record is older
 * than min(physic, logics) - 3 s (STORE.md §14); else the first segment.
 */
static uint64_t
scan_start(struct rmq_store *s, const struct rmq_checkpoint *cp)
{
    char path[1200];
    struct stat st;
    uint64_t log_end = s->seg_count ? s->segs[s->seg_count - 1].start + s->cfg.seg_size : 0;

    root_path(s, "consumequeue", path, sizeof(path));
    if (s->seg_count == 0 || stat(path, &st) < 0) {
        return s->min_off;              /* no queues at all: rebuild them from the log */
    }
    if (cp->has_offset) {
        if (cp->offset >= s->min_off && cp->offset <= log_end) {
            return cp->offset;
        }
        RMQ_WARN("store: checkpoint offset %llu outside the log [%llu, %llu), scanning it "
                 "all", (unsigned long long)cp->offset, (unsigned long long)s->min_off,
                 (unsigned long long)log_end);
        return s->min_off;
    }
    if (cp->physic_ts > 0 && cp->logics_ts > 0) {
        int64_t t = RMQ_MIN(cp->physic_ts, cp->logics_ts) - 3000;

        for (int i = s->seg_count - 1; i >= 0; i--) {
            int64_t first = seg_first_ts(s, i);

            if (first >= 0 && first <= t) {
                return s->segs[i].start;
            }
        }
    }
    return s->min_off;
}

static int
recover(struct rmq_store *s, const struct rmq_checkpoint *cp)
{
    uint64_t *starts = calloc(RMQ_DISK_MAX_SEGS, sizeof(*starts));
    size_t buf_len = RMQ_MAX((size_t)SCAN_CHUNK, (size_t)s->cfg.max_message_size * 2 + 4096);
    uint8_t *buf = malloc(buf_len);
    int n;
    int ret = 0;
    int end_seg = -1;
    int64_t end_pos = 0;
    int first_seg = 0;
    uint64_t p;

    if (starts == NULL || buf == NULL) {
        ret = -ENOMEM;
        goto out;
    }
    n = s->disk->ops->list(s->disk, starts, RMQ_DISK_MAX_SEGS);
    if (n < 0) {
        ret = n;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        int h;

        if (i > 0 && starts[i] != starts[i - 1] + s->cfg.seg_size) {
            if (i == n - 1 && (ret = drop_stray_prepared(s, starts[i])) != 0) {
                if (ret < 0) {
                    goto out;
                }
                ret = 0;
                break;
            }
            RMQ_ERROR("store: commitlog segments not contiguous prev=%llu next=%llu "
                      "seg_size=%llu, refusing to start",
                      (unsigned long long)starts[i - 1], (unsigned long long)starts[i],
                      (unsigned long long)s->cfg.seg_size);
            ret = -EBADMSG;
            goto out;
        }
        h = s->disk->ops->open_existing(s->disk, starts[i], s->cfg.seg_size);
        if (h < 0 || (ret = seg_push(s, starts[i], h)) < 0) {
            ret = h < 0 ? h : ret;
            goto out;
        }
    }
    s->min_off = s->seg_count ? s->segs[0].start : 0;
    p = scan_start(s, cp);
    s->stats.recovery_start = p;
    s->last_store_ts = RMQ_MAX(cp->physic_ts, 0);
    ret = rmq_cq_load(s, p);
    if (ret < 0) {
        RMQ_ERROR("store: loading consume queues failed err=%s", strerror(-ret));
        goto out;
    }
    /*
     * Scan from p: records and queue entries below it are durable. The log ends at the
     * first invalid byte: later bytes and segments are zeroed so they can never be taken
     * for records again.
     */
    while (first_seg + 1 < s->seg_count && s->segs[first_seg + 1].start <= p) {
        first_seg++;
    }
    for (int i = first_seg; i < s->seg_count; i++) {
        bool full;
        uint64_t from = i == first_seg ? p - s->segs[i].start : 0;
        int64_t pos = from >= s->cfg.seg_size ? (int64_t)s->cfg.seg_size
                                              : scan_segment(s, i, from, &buf, &buf_len, &full);

        if (from >= s->cfg.seg_size) {
            full = true;                /* p is this segment's end: its filler was flushed */
        }
        if (pos < 0) {
            ret = (int)pos;
            goto out;
        }
        if (!full) {
            end_seg = i;
            end_pos = pos;
            break;
        }
    }
    if (end_seg < 0 && s->seg_count > 0) {
        /* every segment ends with its filler: the writer continues in a new one */
        s->reserved_off = s->segs[s->seg_count - 1].start + s->cfg.seg_size;
    }
    if (end_seg >= 0) {
        for (int i = end_seg; i < s->seg_count; i++) {
            uint64_t from = i == end_seg ? (uint64_t)end_pos : 0;

            if (from < s->cfg.seg_size) {
                ret = s->disk->ops->zero_tail(s->disk, s->segs[i].handle, from,
                                              s->cfg.seg_size);
                if (ret < 0) {
                    goto out;
                }
                s->stats.truncated_bytes += s->cfg.seg_size - from;
            }
        }
        /* segments past the end stay as prepared, empty ones; forget them here */
        for (int i = end_seg + 1; i < s->seg_count; i++) {
            s->disk->ops->close(s->disk, s->segs[i].handle);
        }
        s->seg_count = end_seg + 1;
        s->reserved_off = s->segs[end_seg].start + (uint64_t)end_pos;
    }
    ret = rmq_cq_trim(s, s->unclean_start);
    if (ret < 0) {
        goto out;
    }
    rmq_cq_set_min_phys(s, s->min_off);
    s->cp_off = RMQ_MIN(p, s->reserved_off);
out:
    free(starts);
    free(buf);
    return ret;
}

/* Start-up: the checkpoint page (zeros when new) and the abort marker. */
static int
open_meta(struct rmq_store *s, struct rmq_checkpoint *cp)
{
    char path[1200];
    ssize_t got;
    int fd;
    int ret = rmq_mkdir_p(s->cfg.root_dir);

    if (ret < 0) {
        RMQ_ERROR("store: creating %s failed err=%s", s->cfg.root_dir, strerror(-ret));
        return ret;
    }
    root_path(s, "checkpoint", path, sizeof(path));
    s->cp_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->cp_fd < 0) {
        ret = -errno;
        RMQ_ERROR("store: opening %s failed err=%s", path, strerror(-ret));
        return ret;
    }
    got = pread(s->cp_fd, s->cp_page, RMQ_CHECKPOINT_SIZE, 0);
    rmq_checkpoint_decode(s->cp_page, got > 0 ? (size_t)got : 0, cp);
    root_path(s, "abort", path, sizeof(path));
    s->unclean_start = access(path, F_OK) == 0;
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        RMQ_ERROR("store: creating %s failed err=%s", path, strerror(-ret));
        return ret;
    }
    close(fd);
    return 0;
}

static void
cp_timer_fire(struct rmq_timer *t)
{
    struct rmq_store *s = rmq_container_of(t, struct rmq_store, cp_timer);

    rmq_store__checkpoint(s);
    rmq_timer_arm(s->loop, &s->cp_timer, (uint64_t)s->cfg.cq_flush_interval_ms * 1000000u,
                  cp_timer_fire);
}

static void
config_defaults(struct rmq_store_config *c)
{
#define DEFAULT(field, value) \
    do { \
        if (c->field == 0) { \
            c->field = (value); \
        } \
    } while (0)
    DEFAULT(seg_size, 1ull << 30);
    DEFAULT(flush_interval_ms, 500);
    DEFAULT(flush_least_pages, 4);
    DEFAULT(sync_flush_timeout_ms, 5000);
    DEFAULT(max_message_size, 4u << 20);
    DEFAULT(batch_scratch, 1u << 20);
    DEFAULT(cq_entries, 300000);
    DEFAULT(cq_flush_interval_ms, 1000);
    DEFAULT(file_reserved_ms, 72ull * 3600 * 1000);
    DEFAULT(delete_hours_mask, 1u << 4);
    DEFAULT(disk_max_used_ratio, 75);
    DEFAULT(disk_refuse_ratio, 90);
    DEFAULT(disk_force_ratio, 85);
    DEFAULT(clean_interval_ms, 10000);
#undef DEFAULT
}

int
rmq_store_open(struct rmq_store **out, struct rmq_loop *loop, struct rmq_disk *disk,
               const struct rmq_store_config *cfg)
{
    struct rmq_store *s = calloc(1, sizeof(*s));
    struct rmq_checkpoint cp;
    long pages = sysconf(_SC_PHYS_PAGES);
    int ret;

    if (s == NULL) {
        return -ENOMEM;
    }
    s->loop = loop;
    s->disk = disk;
    s->cfg = *cfg;
    if (s->cfg.delay_level_count == 0) {
        s->cfg.delay_level_count = (uint32_t)rmq_store_parse_delay_levels(
            "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h", s->cfg.delay_levels_ms,
            RMQ_DELAY_LEVELS_MAX);
    }
    s->cp_fd = -1;
    config_defaults(&s->cfg);
    s->next_handle = -1;
    s->mem_window = (uint64_t)(pages > 0 ? pages : 262144) * 4096 / 100 *
                    (s->cfg.mem_ratio_set ? s->cfg.mem_ratio : 40);
    rmq_list_init(&s->pending);
    rmq_list_init(&s->completed);
    rmq_list_init(&s->batch_free);
    rmq_list_init(&s->batch_inflight);
    s->cq_make.fd = -1;
    rmq_list_init(&s->flush_waiters);
    rmq_list_init(&s->cq_dirty);
    rmq_list_init(&s->submit.link);
    s->submit.fn = submit_run;
    rmq_store__checkpoint_init(s);
    if (s->cfg.root_dir == NULL) {
        RMQ_ERROR("store: no root directory (storePathRootDir) given");
        free(s);
        return -EINVAL;
    }
    s->scratch_mem = malloc((size_t)s->cfg.batch_scratch * RMQ_STORE_BATCHES);
    s->disp = malloc(RMQ_DISPATCH_CAP * sizeof(*s->disp));
    if (s->scratch_mem == NULL || s->disp == NULL ||
        posix_memalign((void **)&s->cp_page, 4096, RMQ_CHECKPOINT_SIZE) != 0) {
        s->cp_page = NULL;
        rmq_store_destroy(s);
        return -ENOMEM;
    }
    memset(s->cp_page, 0, RMQ_CHECKPOINT_SIZE);
    for (int i = 0; i < RMQ_STORE_BATCHES; i++) {
        s->batches[i].s = s;
        s->batches[i].scratch = s->scratch_mem + (size_t)i * s->cfg.batch_scratch;
        rmq_list_add_tail(&s->batch_free, &s->batches[i].link);
    }
    ret = open_meta(s, &cp);
    if (ret == 0) {
        ret = recover(s, &cp);
    }
    if (ret < 0) {
        RMQ_ERROR("store: recovery failed err=%s, cannot start", strerror(-ret));
        rmq_store_destroy(s);
        return ret;
    }
    if (s->seg_count == 0 || s->reserved_off == cur_seg(s)->start + s->cfg.seg_size) {
        struct wait_req w = {.req.done = wait_done};

        disk->ops->prepare(disk, s->reserved_off, s->cfg.seg_size, &w.req);
        if (disk->ops->prepare_advance != NULL) {
            disk->ops->prepare_advance(disk, UINT64_MAX);   /* start-up waits for this one */
        }
        ret = wait_for(loop, &w);
        if (ret < 0 || (ret = seg_push(s, s->reserved_off, ret)) < 0) {
            RMQ_ERROR("store: creating the first commitlog segment failed err=%s",
                      strerror(-ret));
            rmq_store_destroy(s);
            return ret;
        }
        if (s->seg_count == 1) {
            s->min_off = s->reserved_off;
        }
    }
    s->written_off = s->dispatched_off = s->reserved_off;
    s->written_ts = s->dispatched_ts = s->last_store_ts;
    /* Durable: what the checkpoint covered. Records recovery found past it may sit only in
     * the page cache (a kill -9 keeps it); no checkpoint may claim them before the sync
     * chain started below has covered them (flushed_ts 0 until then: no time claimed). */
    s->flushed_off = s->flushed_rec_off = RMQ_MIN(s->cp_off, s->reserved_off);
    s->flushed_ts = s->flushed_off == s->reserved_off ? s->last_store_ts : 0;
    if (s->cfg.flush_type == RMQ_FLUSH_ASYNC) {
        rmq_timer_arm(loop, &s->flush_timer, (uint64_t)s->cfg.flush_interval_ms * 1000000u,
                      flush_timer_fire);
    }
    rmq_timer_arm(loop, &s->cp_timer, (uint64_t)s->cfg.cq_flush_interval_ms * 1000000u,
                  cp_timer_fire);
    s->cq_async = true;
    rmq_store__clean_start(s);
    rmq_store__prep_next(s);
    sync_start(s);
    RMQ_INFO("store: commitlog ready (%s start) segments=%d min=%llu write_off=%llu "
             "scanned_from=%llu recovered_bytes=%llu queue_entries_rebuilt=%llu "
             "zeroed_bytes=%llu queues=%u flush=%s", s->unclean_start ? "unclean" : "clean",
             s->seg_count, (unsigned long long)s->min_off, (unsigned long long)s->reserved_off,
             (unsigned long long)s->stats.recovery_start,
             (unsigned long long)s->stats.recovered_bytes,
             (unsigned long long)s->stats.cq_entries_rebuilt,
             (unsigned long long)s->stats.truncated_bytes, s->cq_count,
             s->cfg.flush_type == RMQ_FLUSH_SYNC ? "SYNC_FLUSH" : "ASYNC_FLUSH");
    *out = s;
    return 0;
}

static void
map_free(struct rmq_store *s, struct rmq_seg_map *m)
{
    s->disk->ops->unmap(s->disk, m->base, m->size);
    if (m->fd >= 0) {
        close(m->fd);
    }
    free(m);
}

void
rmq_store_destroy(struct rmq_store *s)
{
    if (s == NULL) {
        return;
    }
    if (rmq_link_is_linked(&s->submit.link)) {
        rmq_list_del(&s->submit.link);
    }
    cancel_timers(s);
    for (int i = 0; i < s->seg_count; i++) {
        rmq_store__seg_map_drop(s, &s->segs[i]);
        s->disk->ops->close(s->disk, s->segs[i].handle);
    }
    while (s->retired_maps != NULL) {
        struct rmq_seg_map *m = s->retired_maps;

        /* a reader still pinning here at destroy is a caller bug: say so, free anyway */
        RMQ_WARN("store: segment mapping still pinned at destroy pins=%u", m->pins);
        s->retired_maps = m->next_retired;
        map_free(s, m);
    }
    if (s->next_handle >= 0) {
        s->disk->ops->close(s->disk, s->next_handle);
    }
    rmq_cq_free_all(s);
    if (s->cp_fd >= 0) {
        close(s->cp_fd);
    }
    free(s->cp_fds);
    free(s->cp_page);
    free(s->disp);
    free(s->segs);
    free(s->scratch_mem);
    free(s->cq_make.zeros);
    free(s);
}

uint64_t
rmq_store_written_off(const struct rmq_store *s)
{
    return s->written_off;
}

uint64_t
rmq_store_flushed_off(const struct rmq_store *s)
{
    return s->flushed_off;
}

uint64_t
rmq_store_dispatched_off(const struct rmq_store *s)
{
    return s->dispatched_off;
}

uint64_t
rmq_store_min_off(const struct rmq_store *s)
{
    return s->min_off;
}

int64_t
rmq_store__ts_at(struct rmq_store *s, uint64_t phys)
{
    uint8_t head[RMQ_RECORD_TS_PEEK];

    if (rmq_store_read(s, phys, head, sizeof(head)) != (ssize_t)sizeof(head)) {
        return -1;
    }
    return rmq_record_peek_store_ts(head, sizeof(head));
}

int64_t
rmq_store_earliest_time(struct rmq_store *s)
{
    return rmq_store__ts_at(s, s->min_off);
}

const struct rmq_store_stats *
rmq_store_stats(const struct rmq_store *s)
{
    return &s->stats;
}

int
rmq_store_error(const struct rmq_store *s)
{
    return s->error;
}

/* ---- readers' views ---------------------------------------------------------------------- */

void
rmq_store__seg_map_drop(struct rmq_store *s, struct rmq_store_seg *seg)
{
    struct rmq_seg_map *m = seg->map;

    if (m == NULL) {
        return;
    }
    seg->map = NULL;
    if (m->pins > 0) {
        m->retired = true;
        m->next_retired = s->retired_maps;
        s->retired_maps = m;
        return;
    }
    map_free(s, m);
}

int
rmq_store_view(struct rmq_store *s, uint64_t phys, uint32_t len, const uint8_t **data,
               struct rmq_seg_map **pin)
{
    struct rmq_store_seg *seg;
    struct rmq_seg_map *m;
    int i;

    if (s->seg_count == 0 || phys < s->min_off || phys + len > s->written_off) {
        return -ERANGE;
    }
    i = seg_index_of(s, phys);
    seg = &s->segs[i];
    if (phys < seg->start || phys + len > seg->start + s->cfg.seg_size) {
        return -ERANGE;
    }
    m = seg->map;
    if (m == NULL) {
        m = calloc(1, sizeof(*m));
        if (m == NULL) {
            return -ENOMEM;
        }
        m->size = s->cfg.seg_size;
        m->base = s->disk->ops->map(s->disk, seg->handle, m->size);
        if (m->base == NULL) {
            int err = errno ? -errno : -EIO;

            RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "store: segment start=%llu not mapped for reading "
                       "err=%s", (unsigned long long)seg->start, strerror(-err));
            free(m);
            return err;
        }
        m->fd = s->disk->ops->file_fd != NULL ? s->disk->ops->file_fd(s->disk, seg->handle) : -1;
        seg->map = m;
    }
    m->pins++;
    *data = m->base + (phys - seg->start);
    *pin = m;
    return 0;
}

void
rmq_store_unpin(struct rmq_store *s, struct rmq_seg_map *m)
{
    if (--m->pins > 0 || !m->retired) {
        return;
    }
    for (struct rmq_seg_map **pp = &s->retired_maps; *pp != NULL; pp = &(*pp)->next_retired) {
        if (*pp == m) {
            *pp = m->next_retired;
            break;
        }
    }
    map_free(s, m);
}

int
rmq_store_view_file(const struct rmq_seg_map *pin, const uint8_t *data, uint64_t *file_off)
{
    *file_off = (uint64_t)(data - pin->base);
    return pin->fd;
}

void
rmq_store_on_arrival(struct rmq_store *s, rmq_store_arrival_fn fn, void *ctx)
{
    s->on_arrival = fn;
    s->on_arrival_ctx = ctx;
}

ssize_t
rmq_store_read(struct rmq_store *s, uint64_t phys_off, void *buf, size_t len)
{
    int i = seg_index_of(s, phys_off);
    const struct rmq_store_seg *seg = &s->segs[i];

    if (s->seg_count == 0 || phys_off + len > s->written_off || phys_off < seg->start ||
        phys_off + len > seg->start + s->cfg.seg_size) {
        return -ERANGE;
    }
    return s->disk->ops->read(s->disk, seg->handle, phys_off - seg->start, buf, len);
}
