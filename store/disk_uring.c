/*
 * The real disk: commitlog segment files under one directory, every data-path call
 * on the store loop's ring. Preparing a segment is a chain of ring ops (open,
 * fallocate, then zero writes over the whole file) so the writer never pays the
 * first touch of fresh pages inline: about 11 µs per 4 KiB on these VMs
 * (0.34 GiB/s first touch against 21 GiB/s re-touch, DESIGN.md §4.2).
 * The zeros are also written back during preparation, in SYNC_CHUNK steps paced by
 * the device: left dirty, the first SYNC_FLUSH fdatasync on the new segment would
 * pay for the whole segment (measured: 685 ms for 1 GiB on the first append).
 * While appends arrive, the zeros go only PREP_LEAD bytes ahead of the target the store
 * sets (the writer's position in its own segment), so their cost comes in step with
 * the traffic instead of in one burst: unpaced, the 1 GiB prepared at start-up and at
 * every roll kept an io-wq worker busy for ~3 s (ext4 has no non-blocking buffered
 * writes), and 1-in-flight sends in that window had a p99 of 2.4 ms against 150 µs
 * after it; paced by time instead (64 KiB every 2 ms) the window lasted 35 s at p99
 * 220 µs. Once the target has not moved for PREP_IDLE_NS the rest is written anyway,
 * a chunk at a time while it stays still, so a burst after a quiet spell finds its
 * segment ready and pays no first touch.
 * The page cache makes its folios as large as the write that creates them, and a mapped
 * copy takes one fault per folio, so 1 MiB zero writes were tried: 2,277 faults instead
 * of 4,071 in a 256 MiB append run, and without flushing 1 KiB appends in batches of 256
 * went from 2562-2991 to 3140-3361 MB/s. But through the broker, at the default
 * flushCommitLogLeastPages, pipelined 1 KiB sends fell from 289-405k to 184-216k msgs/s
 * (broker CPU 2.2-3.2 -> 4.5-5.4 us/msg, three alternated rounds). The profile puts it in
 * the zero writes themselves: the worker's copy into the fresh page cache was 34 % of
 * the broker's samples against 3 % (fewer bytes, too: 273 MiB against 432 in the run).
 * Likely these VMs' free page reporting: 1 MiB folios come out of high-order free
 * memory, which the host has taken back, so each first touch is a host fault. The store
 * benchmark misses it: its segments are prepared before the clock starts. So 128 KiB
 * stays here; on hosts without that, 1 MiB is worth measuring again.
 * Writes (rmq_disk_uring_set_write_mode): an io_uring writev, or a copy into a
 * writable mapping of the segment done on the loop's thread (non-temporal stores,
 * core/copy.h), completed by a deferred callback.
 * The mapped path makes two syscalls outside the ring, neither of them I/O: mmap once
 * per segment and madvise(DONTNEED) of the pages a copy filled (see mmap_writev; the
 * ring's MADVISE always runs on a worker: the wake-up this path exists to avoid); its
 * readahead, a fadvise(WILLNEED) per MiB, goes through the ring. A copy still faults
 * once per new page (the page is in the cache: prepared above), in the loop; a page
 * the kernel evicted would be read back inside that fault, which the readahead a
 * window ahead prevents, at moderate rates: from a loop busy on its own CPU, a
 * fire-and-forget ring op reached its worker 15-65 ms late here (measured on consume
 * queue read-ahead), by when a writer at GB/s is far past a 1 MiB window.
 * The synchronous calls run only during start-up recovery.
 */
#include "store/disk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/copy.h"
#include "core/log.h"
#include "core/util.h"

#define ZERO_CHUNK (128u << 10)         /* small: each is a worker's CPU slice (~0.4 ms);
                                         * larger measured worse (see the header) */
#define SYNC_CHUNK (16u << 20)          /* zeros written back per sync_file_range */
#define PREP_LEAD (64ull << 20)         /* zeros ahead of the target */
#define PREP_IDLE_NS (20ull * 1000 * 1000)
#define AUTO_COPY_MAX (128u << 10)      /* auto: smaller writes are copied, larger go to a
                                         * worker when more follow (u_writev) */
#define UNMAP_BATCH (256u << 10)        /* mmap writes: filled pages unmapped this many at a
                                         * time (mmap_writev) */
#define RA_WINDOW (1ull << 20)          /* mmap writes: pages read in ahead of the writer */
#define WMAPS 2                         /* writable mappings kept: the current segment and
                                         * the one before it (a batch may end there) */

struct useg {
    int fd;
    uint64_t start;
    uint64_t size;                  /* bytes mapped by wmap */
    uint8_t *wmap;                  /* writable shared mapping (mmap writes), or NULL */
    uint64_t unmapped_to;           /* wmap pages below were copied into and unmapped */
};

struct udisk {
    struct rmq_disk base;
    char dir[PATH_MAX - 64];
    struct useg segs[RMQ_DISK_MAX_SEGS];
    uint8_t *zeros;                 /* owned: ZERO_CHUNK bytes */
    int write_mode;                 /* rmq_disk_uring_set_write_mode */
    uint32_t writev_in_flight;
    uint64_t writes_copied;         /* by the loop's thread into the mapping */
    uint64_t writes_to_worker;      /* io_uring writev */
    int wmapped[WMAPS];             /* handles with a writable mapping, most recent first */
    int ra_handle;                  /* readahead ahead of mmap writes: segment, window */
    uint64_t ra_window;

    /* the one segment preparation in flight */
    struct rmq_op prep_op;
    struct rmq_disk_req *prep_req;
    int prep_handle;
    int prep_step;                  /* enum prep_step */
    int prep_err;                   /* set before the first step: fail on completion */
    uint64_t prep_size;
    uint64_t prep_off;              /* zeros written up to here */
    uint64_t prep_clean;            /* zeros written back up to here */
    uint64_t prep_target;           /* zeros wanted up to here + PREP_LEAD */
    bool prep_parked;               /* zeros are far enough ahead: waiting for the target */
    uint64_t prep_moved_ns;         /* when the target last moved */
    struct rmq_timer prep_idle;     /* armed while parked: the target stood still */
    char prep_path[PATH_MAX];

    char rm_path[PATH_MAX];         /* the one removal in flight */
    char mv_from[PATH_MAX];         /* the one rename in flight */
    char mv_to[PATH_MAX];
    int mv_handle;
    uint64_t mv_start;
    struct rmq_op mv_op;
    struct rmq_disk_req *mv_req;
};

void
rmq_disk_seg_name(char out[21], uint64_t start)
{
    snprintf(out, 21, "%020llu", (unsigned long long)start);
}

static int
slot_new(struct udisk *d, uint64_t start, uint64_t size)
{
    for (int i = 0; i < RMQ_DISK_MAX_SEGS; i++) {
        if (d->segs[i].fd < 0) {
            d->segs[i].fd = INT_MAX;        /* reserved until the open completes */
            d->segs[i].start = start;
            d->segs[i].size = size;
            d->segs[i].wmap = NULL;
            return i;
        }
    }
    return -EMFILE;
}

static void
seg_path(const struct udisk *d, uint64_t start, char *out, size_t len)
{
    char name[21];

    rmq_disk_seg_name(name, start);
    snprintf(out, len, "%s/%s", d->dir, name);
}

enum prep_step { PREP_OPEN, PREP_FALLOCATE, PREP_ZERO, PREP_WRITEBACK, PREP_DATASYNC };

static void prep_step(struct udisk *d, int32_t res);

static void
prep_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct udisk *d = rmq_container_of(op, struct udisk, prep_op);

    (void)flags;
    if (d->prep_err < 0 && d->prep_step == PREP_OPEN && res >= 0 && d->prep_handle >= 0) {
        d->segs[d->prep_handle].fd = res;       /* abandoned right after opening: close it */
    }
    prep_step(d, d->prep_err < 0 ? d->prep_err : res);
}

static void
prep_finish(struct udisk *d, int32_t res)
{
    struct rmq_disk_req *req = d->prep_req;

    if (res < 0 && d->prep_handle >= 0) {
        if (d->segs[d->prep_handle].fd >= 0 && d->segs[d->prep_handle].fd != INT_MAX) {
            close(d->segs[d->prep_handle].fd);
        }
        d->segs[d->prep_handle].fd = -1;
        /* a half-made file (ENOSPC mid-way) must not look like a segment at the next start;
         * an abandoned one stays: it may have existed before (made ahead by an earlier run,
         * later segments beside it), and a whole-size preallocated file reads as zeros */
        if (res != -ECANCELED && unlink(d->prep_path) < 0 && errno != ENOENT) {
            RMQ_WARN("store: removing half-prepared segment %s failed err=%s", d->prep_path,
                     strerror(errno));
        }
    }
    d->prep_req = NULL;
    req->done(req, res < 0 ? res : d->prep_handle);
}

/*
 * open → fallocate → zero writes, each SYNC_CHUNK written back before the next →
 * fdatasync (the extent metadata). Each step is one SQE, the next one prepared on
 * completion.
 */
static void prep_go(struct udisk *d);
static void prep_idle_fire(struct rmq_timer *t);

static uint64_t
prep_wanted(uint64_t target)
{
    return target > UINT64_MAX - PREP_LEAD ? UINT64_MAX : target + PREP_LEAD;
}

static void
prep_step(struct udisk *d, int32_t res)
{
    struct rmq_loop *loop = d->base.loop;
    struct io_uring_sqe *sqe;

    if (res == -ECANCELED) {
        RMQ_INFO("store: segment preparation abandoned (closing) path=%s", d->prep_path);
        prep_finish(d, res);
        return;
    }
    if (res < 0) {
        RMQ_ERROR("store: segment preparation failed path=%s step=%d err=%s", d->prep_path,
                  d->prep_step, strerror(-res));
        prep_finish(d, res);
        return;
    }
    switch (d->prep_step) {
    case PREP_OPEN:
        d->segs[d->prep_handle].fd = res;
        d->prep_step = PREP_FALLOCATE;
        sqe = rmq_loop_sqe(loop, &d->prep_op);
        io_uring_prep_fallocate(sqe, res, 0, 0, (off_t)d->prep_size);
        rmq_loop_commit(loop, &d->prep_op, sqe);
        return;
    case PREP_FALLOCATE:
        d->prep_step = PREP_ZERO;
        d->prep_off = 0;
        d->prep_clean = 0;
        break;
    case PREP_ZERO:
        if (res == 0) {
            prep_finish(d, -EIO);
            return;
        }
        d->prep_off += (uint64_t)res;
        break;
    case PREP_WRITEBACK:
        d->prep_step = PREP_ZERO;
        d->prep_clean = d->prep_off;
        break;
    default:
        prep_finish(d, 0);
        return;
    }
    prep_go(d);
}

/* The next step after a completed one (or after a park). */
static void
prep_go(struct udisk *d)
{
    struct rmq_loop *loop = d->base.loop;
    struct io_uring_sqe *sqe;
    int fd = d->segs[d->prep_handle].fd;

    if (d->prep_err < 0) {
        /* cancelled while parked: finish through the ring, never inline */
        sqe = rmq_loop_sqe(loop, &d->prep_op);
        io_uring_prep_nop(sqe);
        rmq_loop_commit(loop, &d->prep_op, sqe);
        return;
    }
    if (d->prep_off - d->prep_clean >= SYNC_CHUNK ||
        (d->prep_off >= d->prep_size && d->prep_clean < d->prep_off)) {
        d->prep_step = PREP_WRITEBACK;
        sqe = rmq_loop_sqe(loop, &d->prep_op);
        io_uring_prep_sync_file_range(sqe, fd, (unsigned)(d->prep_off - d->prep_clean),
                                      (off_t)d->prep_clean,
                                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
    } else if (d->prep_off >= d->prep_size) {
        d->prep_step = PREP_DATASYNC;
        sqe = rmq_loop_sqe(loop, &d->prep_op);
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    } else if (d->prep_off >= prep_wanted(d->prep_target) &&
               loop->now_ns - d->prep_moved_ns < PREP_IDLE_NS) {
        d->prep_parked = true;      /* u_prepare_advance or the idle timer goes on */
        if (!rmq_timer_is_armed(&d->prep_idle)) {
            rmq_timer_arm(loop, &d->prep_idle, d->prep_moved_ns + PREP_IDLE_NS - loop->now_ns,
                          prep_idle_fire);
        }
        return;
    } else {
        sqe = rmq_loop_sqe(loop, &d->prep_op);
        io_uring_prep_write(sqe, fd, d->zeros,
                            (unsigned)RMQ_MIN((uint64_t)ZERO_CHUNK, d->prep_size - d->prep_off),
                            d->prep_off);
    }
    rmq_loop_commit(loop, &d->prep_op, sqe);
}

static void
u_prepare(struct rmq_disk *base, uint64_t start, uint64_t size, struct rmq_disk_req *req)
{
    struct udisk *d = (struct udisk *)base;
    struct io_uring_sqe *sqe;
    int h;

    RMQ_ASSERT(d->prep_req == NULL);
    d->prep_req = req;
    d->prep_size = size;
    d->prep_step = 0;
    d->prep_target = 0;
    d->prep_parked = false;
    d->prep_moved_ns = base->loop->now_ns;
    h = slot_new(d, start, size);
    d->prep_handle = h;
    d->prep_err = h < 0 ? h : 0;
    seg_path(d, start, d->prep_path, sizeof(d->prep_path));
    rmq_op_init(&d->prep_op, prep_done);
    sqe = rmq_loop_sqe(d->base.loop, &d->prep_op);
    if (h < 0) {
        io_uring_prep_nop(sqe);     /* fail through the ring all the same: never inline */
        rmq_loop_commit(d->base.loop, &d->prep_op, sqe);
        return;
    }
    io_uring_prep_openat(sqe, AT_FDCWD, d->prep_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    rmq_loop_commit(d->base.loop, &d->prep_op, sqe);
}

static void
u_prepare_cancel(struct rmq_disk *base)
{
    struct udisk *d = (struct udisk *)base;

    if (d->prep_req != NULL) {
        d->prep_err = -ECANCELED;       /* seen by prep_done at the step in flight */
        if (rmq_timer_is_armed(&d->prep_idle)) {
            rmq_timer_cancel(base->loop, &d->prep_idle);
        }
        if (d->prep_parked) {
            d->prep_parked = false;
            prep_go(d);
        }
    }
}

static void
prep_idle_fire(struct rmq_timer *t)
{
    struct udisk *d = rmq_container_of(t, struct udisk, prep_idle);

    if (d->prep_parked) {
        d->prep_parked = false;
        prep_go(d);                 /* parks again (re-arming) if the target moved meanwhile */
    }
}

static void
u_prepare_advance(struct rmq_disk *base, uint64_t target)
{
    struct udisk *d = (struct udisk *)base;

    if (d->prep_req != NULL && target > d->prep_target) {
        d->prep_target = target;
        d->prep_moved_ns = base->loop->now_ns;
        if (d->prep_parked && d->prep_off < prep_wanted(target)) {
            if (rmq_timer_is_armed(&d->prep_idle)) {
                rmq_timer_cancel(base->loop, &d->prep_idle);
            }
            d->prep_parked = false;
            prep_go(d);
        }
    }
}

static void
req_op_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_disk_req *req = rmq_container_of(op, struct rmq_disk_req, op);

    (void)flags;
    req->done(req, res);
}

/*
 * mmap writes. A SIGBUS while copying (a page of the mapping that can no longer be
 * read back from the device, or a file cut short behind our back) must fail the
 * write, not kill the broker: the copy runs under a guard the handler jumps back to.
 * SA_NODEFER: the jump leaves the handler without sigreturn, and with savemask 0
 * (no syscall per copy) SIGBUS would otherwise stay blocked afterwards.
 */
static _Thread_local sigjmp_buf *copy_guard;
static struct sigaction sigbus_prev;
static atomic_flag sigbus_installed = ATOMIC_FLAG_INIT;

static void
on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    if (copy_guard != NULL) {
        siglongjmp(*copy_guard, 1);
    }
    /* not ours: the previous disposition takes it (a fault re-executes anyway) */
    sigaction(sig, &sigbus_prev, NULL);
    raise(sig);
}

static void
sigbus_install(void)
{
    struct sigaction sa;

    if (atomic_flag_test_and_set(&sigbus_installed)) {
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &sigbus_prev) < 0) {
        RMQ_WARN("store: SIGBUS handler not installed err=%s (an I/O error under a mapped "
                 "write will stop the process)", strerror(errno));
    }
}

/* Bytes copied, or -EIO when the mapping faulted. */
static int32_t
copy_guarded(uint8_t *dst, const struct iovec *iov, int cnt)
{
    sigjmp_buf jb;
    size_t done = 0;

    if (sigsetjmp(jb, 0) != 0) {
        copy_guard = NULL;
        return -EIO;
    }
    copy_guard = &jb;
    done = rmq_copy_iov_stream(dst, iov, cnt);
    copy_guard = NULL;
    return (int32_t)done;
}

static void
wmap_drop(struct udisk *d, int h)
{
    if (d->segs[h].wmap != NULL) {
        munmap(d->segs[h].wmap, (size_t)d->segs[h].size);
        d->segs[h].wmap = NULL;
    }
    for (int i = 0; i < WMAPS; i++) {
        if (d->wmapped[i] == h) {
            d->wmapped[i] = -1;
        }
    }
}

/* The writable mapping of segment h (mapped on its first write; the oldest of WMAPS
 * goes), or NULL with errno set. */
static uint8_t *
wmap_get(struct udisk *d, int h)
{
    struct useg *g = &d->segs[h];
    int slot = WMAPS - 1;
    void *p;

    for (int i = 0; i < WMAPS; i++) {
        if (d->wmapped[i] == h) {
            slot = i;
            break;
        }
    }
    if (g->wmap == NULL) {
        if (d->wmapped[slot] >= 0) {
            wmap_drop(d, d->wmapped[slot]);
        }
        p = mmap(NULL, (size_t)g->size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
        if (p == MAP_FAILED) {
            return NULL;
        }
        g->wmap = p;
        g->unmapped_to = 0;
    }
    memmove(&d->wmapped[1], &d->wmapped[0], (size_t)slot * sizeof(d->wmapped[0]));
    d->wmapped[0] = h;
    return g->wmap;
}

/*
 * A prepared segment's pages can be evicted before the writer reaches them (memory
 * pressure); a copy into an evicted page would read it back inside the fault, on the
 * loop's thread. So each time the writer enters a new RA_WINDOW, the next one is read
 * in by a worker (fadvise WILLNEED; a page-cache lookup when all is cached).
 * Fire-and-forget: advice, nothing waits for it.
 */
static void
readahead_next(struct udisk *d, int h, uint64_t end)
{
    uint64_t w = end / RA_WINDOW;
    uint64_t from = (w + 1) * RA_WINDOW;
    struct io_uring_sqe *sqe;

    if ((d->ra_handle == h && d->ra_window == w) || from >= d->segs[h].size) {
        return;
    }
    sqe = rmq_loop_sqe_nocqe(d->base.loop);
    if (sqe == NULL) {
        return;                     /* SQ full: the next write tries again */
    }
    io_uring_prep_fadvise(sqe, d->segs[h].fd, from,
                          (off_t)RMQ_MIN(RA_WINDOW, d->segs[h].size - from), POSIX_FADV_WILLNEED);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
    d->ra_handle = h;
    d->ra_window = w;
}

static void
mmap_write_done(struct rmq_deferred *dc)
{
    struct rmq_disk_req *req = rmq_container_of(dc, struct rmq_disk_req, deferred);

    req->done(req, req->res);
}

/* The copy is done now; the completion runs as a deferred callback: never inline, and
 * still before this iteration's submit, so whatever it starts (acknowledgements, the
 * HA send, an fdatasync) leaves in the same io_uring_enter. */
static void
mmap_writev(struct udisk *d, int h, uint64_t off, uint64_t len, const struct iovec *iov,
            int cnt, struct rmq_disk_req *req)
{
    struct useg *g = &d->segs[h];
    uint8_t *map;

    if (off > g->size || len > g->size - off) {
        req->res = -EINVAL;
        RMQ_ERROR("store: write past segment %020llu refused: %llu bytes at %llu, size %llu",
                  (unsigned long long)g->start, (unsigned long long)len,
                  (unsigned long long)off, (unsigned long long)g->size);
    } else if ((map = wmap_get(d, h)) == NULL) {
        req->res = -errno;
        RMQ_ERROR("store: mapping segment %020llu for writing failed err=%s",
                  (unsigned long long)g->start, strerror(errno));
    } else {
        readahead_next(d, h, off + len);
        req->res = copy_guarded(map + off, iov, cnt);
        /* Full pages are unmapped (their dirty state goes to the page cache): left
         * mapped, every flush's writeback write-protects them one by one, each a TLB
         * shootdown IPI to this thread (measured: a quarter of the worker's time). But
         * UNMAP_BATCH at a time, not after every write: an madvise per page filled was
         * half the CPU of 1-in-flight 1 KiB appends (1.12M records/s unmapping each
         * page, 2.2-2.5M with 256 KiB batches; 64 KiB to 1 MiB measured alike). The
         * partial last page always stays mapped: the next small write goes on there
         * without a fault (unmapping it too cut 1-in-flight 128 B appends from 459k to
         * 129k/s). */
        if (req->res >= 0) {
            uint64_t to = (off + len) & ~(uint64_t)4095;

            if (to < g->unmapped_to) {
                g->unmapped_to = off & ~(uint64_t)4095;     /* rewritten below: start over */
            }
            if (to - g->unmapped_to >= UNMAP_BATCH ||
                (to + 4096 > g->size && to > g->unmapped_to)) {
                madvise(map + g->unmapped_to, (size_t)(to - g->unmapped_to), MADV_DONTNEED);
                g->unmapped_to = to;
            }
        }
        if (req->res < 0) {
            RMQ_ERROR("store: I/O error (SIGBUS) writing segment %020llu at %llu, %llu bytes",
                      (unsigned long long)g->start, (unsigned long long)off,
                      (unsigned long long)len);
        }
    }
    rmq_list_init(&req->deferred.link);
    req->deferred.fn = mmap_write_done;
    rmq_loop_defer(d->base.loop, &req->deferred);
}

static void
writev_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_disk_req *req = rmq_container_of(op, struct rmq_disk_req, op);
    struct udisk *d = (struct udisk *)req->disk;

    d->writev_in_flight--;
    req_op_done(op, res, flags);
}

static void
u_writev(struct rmq_disk *base, int h, uint64_t off, const struct iovec *iov, int cnt,
         struct rmq_disk_req *req)
{
    struct udisk *d = (struct udisk *)base;
    struct io_uring_sqe *sqe;

    if (d->write_mode != RMQ_DISK_WRITE_WRITEV) {
        uint64_t len = 0;

        for (int i = 0; i < cnt; i++) {
            len += iov[i].iov_len;
        }
        /* auto never copies while a writev is in flight: the two on one file at once
         * measured slower than either alone. A large write goes to a worker only when
         * more follow right away, whose encoding its copy then overlaps (4 producers,
         * batches of 256 1 KiB records: writev 2707 MB/s, copies 2335); alone, nothing
         * would overlap it and copying it measured 2.2x (1 producer: 2.58M records/s
         * against 1.15M). */
        if (d->write_mode == RMQ_DISK_WRITE_MMAP ||
            (d->writev_in_flight == 0 && (len < AUTO_COPY_MAX || !req->more))) {
            d->writes_copied++;
            mmap_writev(d, h, off, len, iov, cnt, req);
            return;
        }
    }
    d->writev_in_flight++;
    d->writes_to_worker++;
    req->disk = base;
    rmq_op_init(&req->op, writev_done);
    sqe = rmq_loop_sqe(base->loop, &req->op);
    io_uring_prep_writev(sqe, d->segs[h].fd, iov, (unsigned)cnt, off);
    rmq_loop_commit(base->loop, &req->op, sqe);
}

static void
u_sync(struct rmq_disk *base, int h, struct rmq_disk_req *req)
{
    struct udisk *d = (struct udisk *)base;
    struct io_uring_sqe *sqe;

    rmq_op_init(&req->op, req_op_done);
    sqe = rmq_loop_sqe(base->loop, &req->op);
    io_uring_prep_fsync(sqe, d->segs[h].fd, IORING_FSYNC_DATASYNC);
    rmq_loop_commit(base->loop, &req->op, sqe);
}

static int
u_list(struct rmq_disk *base, uint64_t *starts, int max)
{
    struct udisk *d = (struct udisk *)base;
    DIR *dir = opendir(d->dir);
    struct dirent *e;
    int n = 0;

    if (dir == NULL) {
        return -errno;
    }
    while ((e = readdir(dir)) != NULL) {
        char *end;
        unsigned long long v;

        if (strlen(e->d_name) != 20 || strspn(e->d_name, "0123456789") != 20) {
            continue;
        }
        v = strtoull(e->d_name, &end, 10);
        if (n == max) {
            closedir(dir);
            return -E2BIG;
        }
        starts[n++] = v;
    }
    closedir(dir);
    qsort(starts, (size_t)n, sizeof(*starts), rmq_cmp_u64);
    return n;
}

static int
u_open_existing(struct rmq_disk *base, uint64_t start, uint64_t size)
{
    struct udisk *d = (struct udisk *)base;
    char path[PATH_MAX];
    struct stat st;
    int h = slot_new(d, start, size);
    int fd;

    if (h < 0) {
        return h;
    }
    seg_path(d, start, path, sizeof(path));
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        int err = -errno;

        if (fd >= 0) {
            close(fd);
        }
        d->segs[h].fd = -1;
        return err;
    }
    /* a segment cut short (crash while creating it) reads as zeros past its end */
    if ((uint64_t)st.st_size < size && ftruncate(fd, (off_t)size) < 0) {
        int err = -errno;

        close(fd);
        d->segs[h].fd = -1;
        return err;
    }
    d->segs[h].fd = fd;
    return h;
}

static ssize_t
u_read(struct rmq_disk *base, int h, uint64_t off, void *buf, size_t len)
{
    struct udisk *d = (struct udisk *)base;
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(d->segs[h].fd, (uint8_t *)buf + done, len - done,
                          (off_t)(off + done));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int
u_zero_tail(struct rmq_disk *base, int h, uint64_t off, uint64_t size)
{
    struct udisk *d = (struct udisk *)base;
    int fd = d->segs[h].fd;

    if (off >= size) {
        return 0;
    }
    /* cheapest first: ZERO_RANGE keeps the blocks allocated; else write zeros */
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)(size - off)) < 0) {
        for (uint64_t p = off; p < size;) {
            ssize_t n = pwrite(fd, d->zeros, (size_t)RMQ_MIN((uint64_t)ZERO_CHUNK, size - p),
                               (off_t)p);

            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return n < 0 ? -errno : -EIO;
            }
            p += (uint64_t)n;
        }
    }
    return fdatasync(fd) < 0 ? -errno : 0;
}

static void
u_close(struct rmq_disk *base, int h)
{
    struct udisk *d = (struct udisk *)base;

    if (h >= 0 && h < RMQ_DISK_MAX_SEGS && d->segs[h].fd >= 0) {
        wmap_drop(d, h);
        close(d->segs[h].fd);
        d->segs[h].fd = -1;
    }
}

static void
u_remove(struct rmq_disk *base, int h, struct rmq_disk_req *req)
{
    struct udisk *d = (struct udisk *)base;
    struct io_uring_sqe *sqe;

    seg_path(d, d->segs[h].start, d->rm_path, sizeof(d->rm_path));
    u_close(base, h);
    rmq_op_init(&req->op, req_op_done);
    sqe = rmq_loop_sqe(d->base.loop, &req->op);
    io_uring_prep_unlinkat(sqe, AT_FDCWD, d->rm_path, 0);
    rmq_loop_commit(d->base.loop, &req->op, sqe);
}

static void
mv_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct udisk *d = rmq_container_of(op, struct udisk, mv_op);
    struct rmq_disk_req *req = d->mv_req;

    (void)flags;
    d->mv_req = NULL;
    if (res == 0) {
        d->segs[d->mv_handle].start = d->mv_start;
    }
    req->done(req, res);
}

static void
u_rename(struct rmq_disk *base, int h, uint64_t new_start, struct rmq_disk_req *req)
{
    struct udisk *d = (struct udisk *)base;
    struct io_uring_sqe *sqe;

    seg_path(d, d->segs[h].start, d->mv_from, sizeof(d->mv_from));
    seg_path(d, new_start, d->mv_to, sizeof(d->mv_to));
    d->mv_handle = h;
    d->mv_start = new_start;
    RMQ_ASSERT(d->mv_req == NULL);
    d->mv_req = req;
    rmq_op_init(&d->mv_op, mv_done);
    sqe = rmq_loop_sqe(d->base.loop, &d->mv_op);
    io_uring_prep_renameat(sqe, AT_FDCWD, d->mv_from, AT_FDCWD, d->mv_to, RENAME_NOREPLACE);
    rmq_loop_commit(d->base.loop, &d->mv_op, sqe);
}

static const uint8_t *
u_map(struct rmq_disk *base, int h, uint64_t size)
{
    struct udisk *d = (struct udisk *)base;
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, d->segs[h].fd, 0);

    return p == MAP_FAILED ? NULL : p;
}

static void
u_unmap(struct rmq_disk *base, const uint8_t *p, uint64_t size)
{
    (void)base;
    munmap((void *)p, (size_t)size);
}

static int
u_file_fd(struct rmq_disk *base, int h)
{
    struct udisk *d = (struct udisk *)base;

    return fcntl(d->segs[h].fd, F_DUPFD_CLOEXEC, 0);
}

static int
u_space(struct rmq_disk *base, uint64_t *total, uint64_t *avail)
{
    struct udisk *d = (struct udisk *)base;
    struct statvfs sv;

    if (statvfs(d->dir, &sv) < 0) {
        return -errno;
    }
    *total = (uint64_t)sv.f_blocks * sv.f_frsize;
    *avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    return 0;
}

static const struct rmq_disk_ops uring_ops = {
    .prepare = u_prepare,
    .writev = u_writev,
    .sync = u_sync,
    .list = u_list,
    .open_existing = u_open_existing,
    .read = u_read,
    .zero_tail = u_zero_tail,
    .close = u_close,
    .remove = u_remove,
    .rename = u_rename,
    .prepare_cancel = u_prepare_cancel,
    .prepare_advance = u_prepare_advance,
    .map = u_map,
    .unmap = u_unmap,
    .file_fd = u_file_fd,
    .space = u_space,
};

struct rmq_disk *
rmq_disk_uring_create(struct rmq_loop *loop, const char *dir)
{
    struct udisk *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        return NULL;
    }
    d->zeros = calloc(1, ZERO_CHUNK);
    if (d->zeros == NULL || strlen(dir) >= sizeof(d->dir)) {
        free(d->zeros);
        free(d);
        return NULL;
    }
    snprintf(d->dir, sizeof(d->dir), "%s", dir);
    d->base.ops = &uring_ops;
    d->base.loop = loop;
    for (int i = 0; i < RMQ_DISK_MAX_SEGS; i++) {
        d->segs[i].fd = -1;
    }
    for (int i = 0; i < WMAPS; i++) {
        d->wmapped[i] = -1;
    }
    d->ra_handle = -1;
    rmq_disk_uring_set_write_mode(&d->base, RMQ_DISK_WRITE_AUTO);
    return &d->base;
}

void
rmq_disk_uring_set_write_mode(struct rmq_disk *base, int mode)
{
    struct udisk *d = (struct udisk *)base;

    d->write_mode = mode;
    if (mode != RMQ_DISK_WRITE_WRITEV) {
        sigbus_install();
    }
}

void
rmq_disk_uring_write_counts(const struct rmq_disk *base, uint64_t *copied, uint64_t *to_worker)
{
    const struct udisk *d = (const struct udisk *)base;

    *copied = d->writes_copied;
    *to_worker = d->writes_to_worker;
}

uint64_t
rmq_disk_uring_prep_progress(const struct rmq_disk *base)
{
    const struct udisk *d = (const struct udisk *)base;

    return d->prep_req != NULL ? d->prep_off : 0;
}

void
rmq_disk_uring_destroy(struct rmq_disk *base)
{
    struct udisk *d = (struct udisk *)base;

    if (d == NULL) {
        return;
    }
    for (int i = 0; i < RMQ_DISK_MAX_SEGS; i++) {
        u_close(base, i);
    }
    free(d->zeros);
    free(d);
}
