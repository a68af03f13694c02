/*
 * The checkpoint (spec/STORE.md §14): a 4096-byte page. Bytes 0..23 are the
 * reference's three big-endian timestamps, so a RocketMQ broker can read our store.
 * ringmq adds, at byte 256 where the reference never looks, the exact log offset below
 * which every record and every consume queue entry is durable, with a CRC:
 *
 *   256  8  magic "RINGMQCP"
 *   264  4  version (1)
 *   268  4  reserved (0)
 *   272  8  offset
 *   280  4  crc32 of bytes 256..279
 *
 * Recovery starts its scan there, so its time depends on the tail written after the
 * last checkpoint, not on the size of the log. A checkpoint is taken every
 * cq_flush_interval_ms and at close: fdatasync every consume queue file written
 * since the last one, then write and fdatasync the page. A failed fdatasync stops
 * checkpoints until restart (after a failed fsync the kernel may call dirty pages
 * clean), so recovery then starts from the last good one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/be.h"
#include "core/crc32.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store.h"
#include "store/store_int.h"

#define EXT_AT 256
#define EXT_MAGIC 0x52494E474D514350ull     /* "RINGMQCP" */
#define EXT_LEN 24

void
rmq_checkpoint_encode(const struct rmq_checkpoint *cp, uint8_t page[RMQ_CHECKPOINT_SIZE])
{
    memset(page, 0, RMQ_CHECKPOINT_SIZE);
    rmq_put_be64(page, (uint64_t)cp->physic_ts);
    rmq_put_be64(page + 8, (uint64_t)cp->logics_ts);
    rmq_put_be64(page + 16, (uint64_t)cp->index_ts);
    if (cp->has_offset) {
        rmq_put_be64(page + EXT_AT, EXT_MAGIC);
        rmq_put_be32(page + EXT_AT + 8, 1);
        rmq_put_be64(page + EXT_AT + 16, cp->offset);
        rmq_put_be32(page + EXT_AT + EXT_LEN, rmq_crc32_update(0, page + EXT_AT, EXT_LEN));
    }
}

void
rmq_checkpoint_decode(const uint8_t *page, size_t len, struct rmq_checkpoint *cp)
{
    memset(cp, 0, sizeof(*cp));
    if (len < 24) {
        return;
    }
    cp->physic_ts = (int64_t)rmq_get_be64(page);
    cp->logics_ts = (int64_t)rmq_get_be64(page + 8);
    cp->index_ts = (int64_t)rmq_get_be64(page + 16);
    if (len >= EXT_AT + EXT_LEN + 4 && rmq_get_be64(page + EXT_AT) == EXT_MAGIC &&
        rmq_get_be32(page + EXT_AT + 8) == 1 &&
        rmq_get_be32(page + EXT_AT + EXT_LEN) == rmq_crc32_update(0, page + EXT_AT, EXT_LEN)) {
        cp->has_offset = true;
        cp->offset = rmq_get_be64(page + EXT_AT + 16);
    }
}

static void cp_issue_syncs(struct rmq_store *s);

static void
cp_finish(struct rmq_store *s, bool ok, uint64_t off)
{
    s->cp_in_flight = false;
    if (ok) {
        s->cp_off = off;
        s->stats.checkpoints++;
    }
    rmq_loop_defer(s->loop, &s->submit);
}

static void
cp_page_synced(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_store *s = rmq_container_of(op, struct rmq_store, cp_sync_op);

    (void)flags;
    if (res < 0 || s->cp_err != 0) {     /* cp_err: the page write came up short */
        if (s->cp_err == 0) {
            s->cp_err = res;
            RMQ_ERROR("store: writing the checkpoint failed err=%s, checkpoints stop until "
                      "restart (recovery starts from the previous one)", strerror(-res));
        }
        cp_finish(s, false, 0);
        return;
    }
    cp_finish(s, true, s->cp_target);
}

static void
cp_page_written(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_store *s = rmq_container_of(op, struct rmq_store, cp_write_op);

    (void)flags;
    /* the linked fdatasync reports the outcome; a short write fails it here */
    if (res >= 0 && res != RMQ_CHECKPOINT_SIZE && s->cp_err == 0) {
        s->cp_err = -EIO;
        RMQ_ERROR("store: short checkpoint write res=%d, checkpoints stop until restart",
                  (int)res);
    }
}

static void
cp_write_page(struct rmq_store *s)
{
    struct rmq_checkpoint cp = {.has_offset = true};
    struct io_uring_sqe *sqe;

    /* every record below the offset must be durable in the log too */
    s->cp_target = RMQ_MIN(s->cp_target, s->flushed_rec_off);
    cp.offset = s->cp_target;
    cp.physic_ts = cp.logics_ts = RMQ_MIN(s->cp_target_ts, s->flushed_ts);
    cp.index_ts = cp.physic_ts;
    rmq_checkpoint_encode(&cp, s->cp_page);
    sqe = rmq_loop_sqe(s->loop, &s->cp_write_op);
    io_uring_prep_write(sqe, s->cp_fd, s->cp_page, RMQ_CHECKPOINT_SIZE, 0);
    sqe->flags |= IOSQE_IO_LINK;
    rmq_loop_commit(s->loop, &s->cp_write_op, sqe);
    sqe = rmq_loop_sqe(s->loop, &s->cp_sync_op);
    io_uring_prep_fsync(sqe, s->cp_fd, IORING_FSYNC_DATASYNC);
    rmq_loop_commit(s->loop, &s->cp_sync_op, sqe);
}

static void
cp_queue_synced(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_store_cp_sync *cs = rmq_container_of(op, struct rmq_store_cp_sync, op);
    struct rmq_store *s = cs->s;

    (void)flags;
    cs->busy = false;
    s->cp_syncs_out--;
    if (res < 0 && s->cp_err == 0) {
        s->cp_err = res;
        RMQ_ERROR("store: consume queue fdatasync failed err=%s, checkpoints stop until "
                  "restart (recovery rebuilds the queues from the last good one)",
                  strerror(-res));
    }
    cp_issue_syncs(s);
}

static void
cp_issue_syncs(struct rmq_store *s)
{
    for (int i = 0; i < RMQ_CP_SYNCS && s->cp_fd_next < s->cp_fd_count && s->cp_err == 0; i++) {
        struct rmq_store_cp_sync *cs = &s->cp_syncs[i];
        struct io_uring_sqe *sqe;

        if (cs->busy) {
            continue;
        }
        cs->busy = true;
        sqe = rmq_loop_sqe(s->loop, &cs->op);
        io_uring_prep_fsync(sqe, s->cp_fds[s->cp_fd_next++], IORING_FSYNC_DATASYNC);
        rmq_loop_commit(s->loop, &cs->op, sqe);
        s->cp_syncs_out++;
    }
    if (s->cp_syncs_out > 0) {
        return;
    }
    if (s->cp_err != 0) {
        cp_finish(s, false, 0);
        return;
    }
    cp_write_page(s);
}

void
rmq_store__checkpoint(struct rmq_store *s)
{
    struct rmq_link *n;
    uint32_t need = 0;

    if (s->cp_in_flight || s->cp_fd < 0 || s->cp_err != 0) {
        return;
    }
    for (n = s->cq_dirty.next; n != &s->cq_dirty; n = n->next) {
        const struct rmq_cq *q = rmq_container_of(n, struct rmq_cq, dirty_link);

        for (int k = 0; k < q->seg_count; k++) {
            need += q->segs[k].dirty;
        }
    }
    if (need > s->cp_fd_cap) {
        int *nf = realloc(s->cp_fds, need * sizeof(*nf));

        if (nf == NULL) {
            return;                     /* the files stay dirty: next time */
        }
        s->cp_fds = nf;
        s->cp_fd_cap = need;
    }
    s->cp_in_flight = true;
    s->cp_target = s->dispatched_off;
    s->cp_target_ts = s->dispatched_ts;
    s->cp_fd_count = s->cp_fd_next = 0;
    while ((n = rmq_list_pop(&s->cq_dirty)) != NULL) {
        struct rmq_cq *q = rmq_container_of(n, struct rmq_cq, dirty_link);

        q->dirty = false;
        for (int k = 0; k < q->seg_count; k++) {
            if (q->segs[k].dirty) {
                q->segs[k].dirty = false;
                s->cp_fds[s->cp_fd_count++] = q->segs[k].fd;
            }
        }
    }
    cp_issue_syncs(s);
}

void
rmq_store__checkpoint_init(struct rmq_store *s)
{
    rmq_op_init(&s->cp_write_op, cp_page_written);
    rmq_op_init(&s->cp_sync_op, cp_page_synced);
    for (int i = 0; i < RMQ_CP_SYNCS; i++) {
        rmq_op_init(&s->cp_syncs[i].op, cp_queue_synced);
        s->cp_syncs[i].s = s;
    }
}

void
rmq_store_checkpoint(struct rmq_store *s)
{
    rmq_store__checkpoint(s);
}
