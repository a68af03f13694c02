/*
 * Consume queues: per (topic, queue id) a dense array of 20-byte entries in files of
 * cq_entries entries (spec/STORE.md §11), mapped shared. The writer stores an entry
 * with one 20-byte copy into the mapping; readers use the mapping directly. The
 * files are preallocated (fallocate) so a store into the mapping never needs a new
 * block: a full disk shows up as a failed file creation, never as SIGBUS. A worker
 * writes zeros over each when it is made (the comment above cq_read_in says why).
 *
 * Queues are derived data. Recovery trusts entries for records below the checkpoint
 * offset (they were fdatasync'd before the checkpoint was written), rebuilds the
 * rest from the log, and erases whatever lies past the rebuilt end.
 *
 * Queue files are made through the ring (mkdir, open, fallocate; one at a time), the
 * next file of a queue when its last one is three quarters full, so dispatch waits only
 * for a queue's very first file. Plain syscalls on the store loop measured 199 µs on
 * average and up to 30 ms here, a stall of every append. The mmap that follows is a
 * plain call: it does no I/O. Start-up recovery, before the loop runs, makes files
 * synchronously. Deleting a queue file is still a plain unlink (retention, rare).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL              /* header only: the store links nothing new */
#include <xxhash.h>

#include "core/be.h"
#include "core/file.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store.h"
#include "store/store_int.h"

#define CQ_FILLER_SIZE 0x7FFFFFFF
#define CQ_ZERO_CHUNK (1u << 20)        /* zeros per write: makes the page cache's folios this
                                         * large (see cq_read_in) */
#define CQ_FIRST_ZERO (256u << 10)      /* a queue's first file: written with zeros before it
                                         * is used; the rest read in behind */

/* ---- the table ------------------------------------------------------------------------------ */

/* 8 bytes a step: a byte-at-a-time FNV of the topic was ~3 % of a batched append */
static uint32_t
cq_hash(const char *topic, uint32_t len, int32_t qid)
{
    return (uint32_t)XXH3_64bits_withSeed(topic, len, (uint32_t)qid);
}

struct rmq_cq *
rmq_cq_find(const struct rmq_store *s, const char *topic, uint32_t len, int32_t qid)
{
    if (s->cq_cap == 0) {
        return NULL;
    }
    for (uint32_t i = cq_hash(topic, len, qid) & (s->cq_cap - 1);; i = (i + 1) & (s->cq_cap - 1)) {
        struct rmq_cq *q = s->cqs[i];

        if (q == NULL) {
            return NULL;
        }
        if (q->queue_id == qid && q->topic_len == len && memcmp(q->topic, topic, len) == 0) {
            return q;
        }
    }
}

static void
cq_insert(struct rmq_cq **table, uint32_t cap, struct rmq_cq *q)
{
    uint32_t i = cq_hash(q->topic, q->topic_len, q->queue_id) & (cap - 1);

    while (table[i] != NULL) {
        i = (i + 1) & (cap - 1);
    }
    table[i] = q;
}

/* Control path: a queue seen for the first time is allocated once and never moves. */
struct rmq_cq *
rmq_cq_get(struct rmq_store *s, const char *topic, uint32_t len, int32_t qid)
{
    struct rmq_cq *q = rmq_cq_find(s, topic, len, qid);

    if (q != NULL) {
        return q;
    }
    if ((s->cq_count + 1) * 2 > s->cq_cap) {
        uint32_t cap = s->cq_cap ? s->cq_cap * 2 : 256;
        struct rmq_cq **nt = calloc(cap, sizeof(*nt));

        if (nt == NULL) {
            return NULL;
        }
        for (uint32_t k = 0; k < s->cq_cap; k++) {
            if (s->cqs[k] != NULL) {
                cq_insert(nt, cap, s->cqs[k]);
            }
        }
        free(s->cqs);
        s->cqs = nt;
        s->cq_cap = cap;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL || (q->topic = malloc(len + 1)) == NULL) {
        free(q);
        return NULL;
    }
    memcpy(q->topic, topic, len);
    q->topic[len] = '\0';
    q->topic_len = (uint8_t)len;
    q->queue_id = qid;
    rmq_list_init(&q->dirty_link);
    cq_insert(s->cqs, s->cq_cap, q);
    s->cq_count++;
    return q;
}

static uint64_t
cq_file_size(const struct rmq_store *s)
{
    return (uint64_t)s->cfg.cq_entries * RMQ_CQ_ENTRY_SIZE;
}

static void
cq_seg_close(const struct rmq_store *s, struct rmq_cq_seg *g)
{
    if (g->map != NULL) {
        munmap(g->map, cq_file_size(s));
    }
    if (g->fd >= 0) {
        close(g->fd);
    }
    g->map = NULL;
    g->fd = -1;
}

void
rmq_cq_free_all(struct rmq_store *s)
{
    for (uint32_t i = 0; i < s->cq_cap; i++) {
        struct rmq_cq *q = s->cqs[i];

        if (q == NULL) {
            continue;
        }
        for (int k = 0; k < q->seg_count; k++) {
            cq_seg_close(s, &q->segs[k]);
        }
        free(q->segs);
        free(q->topic);
        free(q);
    }
    free(s->cqs);
    s->cqs = NULL;
    s->cq_cap = s->cq_count = 0;
    if (s->cq_make.fd >= 0) {
        close(s->cq_make.fd);       /* torn down with a creation in flight (crash tests) */
        s->cq_make.fd = -1;
    }
}

/* ---- files ----------------------------------------------------------------------------------- */

static int
cq_dir(const struct rmq_store *s, const struct rmq_cq *q, char *out, size_t len, bool create)
{
    if ((size_t)snprintf(out, len, "%s/consumequeue/%s/%d", s->cfg.root_dir, q->topic,
                         (int)q->queue_id) >= len) {
        return -ENAMETOOLONG;
    }
    return create ? rmq_mkdir_p(out) : 0;
}

static int
cq_seg_path(const struct rmq_store *s, const struct rmq_cq *q, int64_t first, char *out,
            size_t len, bool create)
{
    char name[21];
    int ret = cq_dir(s, q, out, len, create);
    size_t n = strlen(out);

    if (ret < 0) {
        return ret;
    }
    rmq_disk_seg_name(name, (uint64_t)first * RMQ_CQ_ENTRY_SIZE);
    return (size_t)snprintf(out + n, len - n, "/%s", name) < len - n ? 0 : -ENAMETOOLONG;
}

static int
cq_seg_push(struct rmq_cq *q, int64_t first, int fd, uint8_t *map)
{
    if (q->seg_count == q->seg_cap) {
        int cap = q->seg_cap ? q->seg_cap * 2 : 4;
        struct rmq_cq_seg *n = realloc(q->segs, (size_t)cap * sizeof(*n));

        if (n == NULL) {
            return -ENOMEM;
        }
        q->segs = n;
        q->seg_cap = cap;
    }
    q->segs[q->seg_count++] = (struct rmq_cq_seg){.first = first, .fd = fd, .map = map};
    return 0;
}

static int
cq_seg_map(const struct rmq_store *s, int fd, uint8_t **map)
{
    void *p = mmap(NULL, cq_file_size(s), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

    if (p == MAP_FAILED) {
        return -errno;
    }
    *map = p;
    return 0;
}

/* A new, preallocated, zero file for entries [first, first + cq_entries); synchronous. */
static int
cq_seg_create(struct rmq_store *s, struct rmq_cq *q, int64_t first)
{
    char path[1400];
    uint8_t *map = NULL;
    int fd;
    int ret = cq_seg_path(s, q, first, path, sizeof(path), true);

    if (ret < 0) {
        return ret;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    if (fallocate(fd, 0, 0, (off_t)cq_file_size(s)) < 0) {
        ret = -errno;
        if (ret != -EOPNOTSUPP || ftruncate(fd, (off_t)cq_file_size(s)) < 0) {
            close(fd);
            unlink(path);
            return ret == -EOPNOTSUPP ? -errno : ret;
        }
    }
    ret = cq_seg_map(s, fd, &map);
    if (ret < 0 || (ret = cq_seg_push(q, first, fd, map)) < 0) {
        if (map != NULL) {
            munmap(map, cq_file_size(s));
        }
        close(fd);
        unlink(path);
        return ret;
    }
    return 0;
}

/* ---- files made through the ring ------------------------------------------------------------ */

enum {
    MAKE_CQ_DIR, MAKE_TOPIC_DIR, MAKE_QUEUE_DIR, MAKE_OPEN, MAKE_FALLOCATE, MAKE_ZERO,
    MAKE_BAD_PATH
};

bool
rmq_cq_maker_idle(const struct rmq_store *s)
{
    return s->cq_make.q == NULL;
}

/*
 * A queue file is preallocated, not written: a store into a page not in the page cache
 * faults, and the fault reads the page in, which for an unwritten extent means
 * allocating and zeroing it, with the device's whole readahead size around it (8 MiB on
 * these VMs: a new 6 MB file zeroed inside one append's fault, ~15 ms, ~8 % of the
 * store thread in a batched 1 KiB append run). So the last step of making a file writes
 * zeros over it through the ring (MAKE_ZERO), before any entry goes there: a next file,
 * made when the last is three quarters full, whole; a queue's first file, whose first
 * messages wait for it to become visible, its first CQ_FIRST_ZERO bytes. Zeros, not
 * just a read-in (fadvise WILLNEED, what this did before): a read-in leaves 4 KiB
 * folios and the writer then takes a fault per page (1,465 per 6 MB file, 3.3-4.7 ms of
 * stores), where 1 MiB writes leave large folios that a fault maps whole (10 faults,
 * 0.25-0.36 ms; and the writes took 0.6-0.8 ms against 1.4-2 ms for the read-in, more
 * on memory the host has taken back: disk_uring.c). 128 B appends, 2 GiB runs (so next
 * files are made while the clock runs): 6.38M -> 7.06M records/s, one producer.
 * The rest of a first file is read in fire-and-forget behind its first messages: never
 * zeros there, which could land after the writer and erase its entries. Not in small
 * windows just ahead of the writer either: from a loop busy on its own CPU,
 * fire-and-forget ops reached their worker 15-65 ms late here.
 */
static void
cq_read_in(struct rmq_store *s, int fd, uint64_t from)
{
    struct io_uring_sqe *sqe;

    if (from >= cq_file_size(s) || (sqe = rmq_loop_sqe_nocqe(s->loop)) == NULL) {
        return;                     /* SQ full: advice, the faults read it in */
    }
    io_uring_prep_fadvise(sqe, fd, from, (off_t)(cq_file_size(s) - from), POSIX_FADV_WILLNEED);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
}

/* Zeros go up to here before the file is used (see above cq_read_in). */
static uint64_t
cq_zero_end(const struct rmq_store *s, const struct rmq_cq *q)
{
    return q->seg_count == 0 ? RMQ_MIN((uint64_t)CQ_FIRST_ZERO, cq_file_size(s))
                             : cq_file_size(s);
}

static void
cq_make_submit(struct rmq_store *s)
{
    struct rmq_cq_maker *m = &s->cq_make;
    struct io_uring_sqe *sqe = rmq_loop_sqe(s->loop, &m->op);

    switch (m->step) {
    case MAKE_CQ_DIR:
        io_uring_prep_mkdirat(sqe, AT_FDCWD, m->cq_dir, 0755);
        break;
    case MAKE_TOPIC_DIR:
        io_uring_prep_mkdirat(sqe, AT_FDCWD, m->topic_dir, 0755);
        break;
    case MAKE_QUEUE_DIR:
        io_uring_prep_mkdirat(sqe, AT_FDCWD, m->queue_dir, 0755);
        break;
    case MAKE_OPEN:
        io_uring_prep_openat(sqe, AT_FDCWD, m->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        break;
    case MAKE_BAD_PATH:
        io_uring_prep_nop(sqe);     /* fail through the ring all the same: never inline */
        break;
    case MAKE_FALLOCATE:
        io_uring_prep_fallocate(sqe, m->fd, 0, 0, (off_t)cq_file_size(s));
        break;
    default:
        if (m->zeros != NULL) {
            io_uring_prep_write(sqe, m->fd, m->zeros,
                                (unsigned)RMQ_MIN((uint64_t)CQ_ZERO_CHUNK,
                                                  cq_zero_end(s, m->q) - m->zeroed),
                                m->zeroed);
        } else {                    /* no memory for zeros: read it in, as advice */
            io_uring_prep_fadvise(sqe, m->fd, 0, (off_t)cq_zero_end(s, m->q),
                                  POSIX_FADV_WILLNEED);
        }
        break;
    }
    rmq_loop_commit(s->loop, &m->op, sqe);
}

static void
cq_make_finish(struct rmq_store *s, int ret)
{
    struct rmq_cq_maker *m = &s->cq_make;
    struct rmq_cq *q = m->q;
    uint8_t *map = NULL;


    /* the file must still extend the queue (a first file, or right after the last one) */
    if (ret == 0 && q->seg_count > 0 &&
        m->first != q->segs[q->seg_count - 1].first + (int64_t)s->cfg.cq_entries) {
        ret = -ESTALE;
    }
    if (ret == 0) {
        ret = cq_seg_map(s, m->fd, &map);
    }
    if (ret == 0) {
        ret = cq_seg_push(q, m->first, m->fd, map);
    }
    if (ret < 0) {
        if (map != NULL) {
            munmap(map, cq_file_size(s));
        }
        if (m->fd >= 0) {
            close(m->fd);
            unlink(m->path);        /* failure path only: a half-made file must not load */
        }
        m->err = ret;
        m->err_q = q;
        m->err_first = m->first;
    } else {
        m->err = 0;                 /* an older failure (another queue's) is history now */
    }
    m->fd = -1;
    m->q = NULL;
    rmq_store__dispatch(s);
}

static void
cq_make_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_store *s = rmq_container_of(op, struct rmq_store, cq_make.op);
    struct rmq_cq_maker *m = &s->cq_make;

    (void)flags;
    switch (m->step) {
    case MAKE_CQ_DIR:
    case MAKE_TOPIC_DIR:
    case MAKE_QUEUE_DIR:
        if (res < 0 && res != -EEXIST) {
            cq_make_finish(s, res);
            return;
        }
        break;
    case MAKE_OPEN:
        if (res < 0) {
            cq_make_finish(s, res);
            return;
        }
        m->fd = res;
        break;
    case MAKE_BAD_PATH:
        cq_make_finish(s, -ENAMETOOLONG);
        return;
    case MAKE_FALLOCATE:
        /* a filesystem without fallocate gets a sparse file, as the synchronous path */
        if (res == -EOPNOTSUPP) {
            res = ftruncate(m->fd, (off_t)cq_file_size(s)) < 0 ? -errno : 0;
        }
        if (res < 0) {
            cq_make_finish(s, res);
            return;
        }
        m->zeroed = 0;
        break;
    default: {
        struct rmq_cq *q = m->q;
        bool first = q->seg_count == 0;
        uint64_t zero_end = cq_zero_end(s, q);

        if (m->zeros != NULL) {
            if (res <= 0) {         /* a file that cannot take zeros cannot take entries */
                RMQ_ERROR("store: writing zeros into a new consume queue file failed "
                          "path=%s off=%llu err=%s", m->path, (unsigned long long)m->zeroed,
                          strerror(res < 0 ? -res : EIO));
                cq_make_finish(s, res < 0 ? res : -EIO);
                return;
            }
            m->zeroed += (uint64_t)res;
            if (m->zeroed < zero_end) {
                cq_make_submit(s);
                return;
            }
        }                           /* else a read-in: advice, its result does not matter */
        cq_make_finish(s, 0);
        if (first && q->seg_count == 1) {
            cq_read_in(s, q->segs[0].fd, zero_end);    /* the rest, behind */
        }
        return;
    }
    }
    m->step++;
    cq_make_submit(s);
}

static void
cq_make_start(struct rmq_store *s, struct rmq_cq *q, int64_t first)
{
    struct rmq_cq_maker *m = &s->cq_make;
    int ret = cq_seg_path(s, q, first, m->path, sizeof(m->path), false);

    RMQ_ASSERT(m->q == NULL);
    m->q = q;
    m->first = first;
    m->fd = -1;
    if (m->zeros == NULL) {
        m->zeros = calloc(1, CQ_ZERO_CHUNK);    /* untouched: maps the zero page only */
    }
    /* the directories are the path's parents: <root>/consumequeue/<topic>/<queue>/<file> */
    if (ret == 0) {
        memcpy(m->queue_dir, m->path, sizeof(m->path));
        *strrchr(m->queue_dir, '/') = '\0';
        memcpy(m->topic_dir, m->queue_dir, sizeof(m->path));
        *strrchr(m->topic_dir, '/') = '\0';
        memcpy(m->cq_dir, m->topic_dir, sizeof(m->path));
        *strrchr(m->cq_dir, '/') = '\0';
    }
    /* a queue with files has its directories */
    m->step = ret < 0 ? MAKE_BAD_PATH : q->seg_count == 0 ? MAKE_CQ_DIR : MAKE_OPEN;
    rmq_op_init(&m->op, cq_make_done);
    cq_make_submit(s);
}

/*
 * The file for entries from `first` on: 0 when made (start-up, synchronously),
 * -EINPROGRESS while it is being made (dispatch resumes when it is), or the error
 * its making failed with.
 */
static int
cq_file_for(struct rmq_store *s, struct rmq_cq *q, int64_t first)
{
    struct rmq_cq_maker *m = &s->cq_make;
    int ret;

    if (!s->cq_async) {
        return cq_seg_create(s, q, first);
    }
    if (m->err != 0 && m->err_q == q && m->err_first == first) {
        ret = m->err;
        m->err = 0;
        return ret;
    }
    if (m->q == NULL) {
        s->stats.cq_file_waits++;
        cq_make_start(s, q, first);
    }
    return -EINPROGRESS;
}

static void
cq_seg_unlink(struct rmq_store *s, struct rmq_cq *q, struct rmq_cq_seg *g)
{
    char path[1400];

    cq_seg_close(s, g);
    if (cq_seg_path(s, q, g->first, path, sizeof(path), false) == 0 && unlink(path) < 0) {
        RMQ_WARN("store: removing consume queue file %s failed err=%s", path, strerror(errno));
    }
    s->stats.cq_files_deleted++;
}

/* ---- entries --------------------------------------------------------------------------------- */

const uint8_t *
rmq_cq_entry(const struct rmq_store *s, const struct rmq_cq *q, int64_t qoff)
{
    int64_t rel;
    int64_t i;

    if (q->seg_count == 0 || qoff < q->segs[0].first) {
        return NULL;
    }
    rel = qoff - q->segs[0].first;
    i = rel / s->cfg.cq_entries;
    if (i >= q->seg_count) {
        return NULL;
    }
    return q->segs[i].map + (uint64_t)(rel % s->cfg.cq_entries) * RMQ_CQ_ENTRY_SIZE;
}

static void
entry_put(uint8_t *p, uint64_t phys, uint32_t size, int64_t tags)
{
    const struct rmq_cq_entry e = {(int64_t)phys, (int32_t)size, tags};

    rmq_cq_entry_encode(p, &e);
}

static void
cq_mark_dirty(struct rmq_store *s, struct rmq_cq *q, struct rmq_cq_seg *g)
{
    g->dirty = true;
    if (!q->dirty) {
        q->dirty = true;
        rmq_list_add_tail(&s->cq_dirty, &q->dirty_link);
    }
}

static bool entry_zero(const uint8_t *e);

int
rmq_cq_put(struct rmq_store *s, struct rmq_cq *q, int64_t qoff, uint64_t phys, uint32_t size,
           int64_t tags_code)
{
    int64_t rel;
    struct rmq_cq_seg *g;
    int ret;

    if (q->seg_count == 0) {
        ret = cq_file_for(s, q, qoff - qoff % s->cfg.cq_entries);
        if (ret < 0) {
            return ret;         /* -EINPROGRESS: the file is made, then this put again */
        }
    }
    if (q->max == 0 && q->min == 0 && qoff > 0 && qoff >= q->segs[0].first &&
        q->seg_count == 1 && entry_zero(q->segs[0].map)) {
        /* a queue born at a non-zero offset (a slave's copy of a queue whose start it does
         * not have): filler entries before it (STORE.md §11) */
        for (int64_t k = q->segs[0].first; k < qoff && k < q->segs[0].first +
             (int64_t)s->cfg.cq_entries; k++) {
            entry_put(q->segs[0].map + (uint64_t)(k - q->segs[0].first) * RMQ_CQ_ENTRY_SIZE,
                      0, CQ_FILLER_SIZE, 0);
        }
        q->min = q->max = qoff;
    }
    if (qoff < q->segs[0].first) {
        return -ERANGE;
    }
    while (qoff >= q->segs[q->seg_count - 1].first + (int64_t)s->cfg.cq_entries) {
        ret = cq_file_for(s, q, q->segs[q->seg_count - 1].first + s->cfg.cq_entries);
        if (ret < 0) {
            return ret;
        }
    }
    rel = qoff - q->segs[0].first;
    g = &q->segs[rel / s->cfg.cq_entries];
    entry_put(g->map + (uint64_t)(rel % s->cfg.cq_entries) * RMQ_CQ_ENTRY_SIZE, phys, size,
              tags_code);
    cq_mark_dirty(s, q, g);
    /* the last file three quarters full: make the next one now, off the dispatch path */
    if (s->cq_async && s->cq_make.q == NULL && g == &q->segs[q->seg_count - 1] &&
        rel % s->cfg.cq_entries >= (int64_t)s->cfg.cq_entries / 4 * 3 &&
        !(s->cq_make.err != 0 && s->cq_make.err_q == q)) {
        cq_make_start(s, q, g->first + s->cfg.cq_entries);
    }
    return 0;
}

/* ---- dispatch: entries follow the written watermark ------------------------------------------ */

static void
dispatch_retry_fire(struct rmq_timer *t)
{
    struct rmq_store *s = rmq_container_of(t, struct rmq_store, dispatch_retry);

    rmq_store__dispatch(s);
}

void
rmq_store__dispatch(struct rmq_store *s)
{
    if (s->raw) {
        rmq_store__raw_parse(s);
    }
    while (s->disp_head != s->disp_tail) {
        struct rmq_dispatch *d = &s->disp[s->disp_head & (RMQ_DISPATCH_CAP - 1)];
        int ret;

        if (d->phys + d->size > s->written_off) {
            break;
        }
        ret = rmq_cq_put(s, d->cq, d->queue_off, d->phys, d->size, d->tags_code);
        if (ret == -EINPROGRESS) {
            s->dispatched_off = d->phys;    /* the file's completion dispatches again */
            return;
        }
        if (ret < 0) {
            /* visibility waits, nothing is lost: the log holds the record */
            RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "store: consume queue %s/%d entry %lld: file "
                       "creation failed err=%s, dispatch paused, retrying", d->cq->topic,
                       (int)d->cq->queue_id, (long long)d->queue_off, strerror(-ret));
            s->stats.dispatch_stalls++;
            if (ret == -ENOSPC) {
                s->disk_full = true;
            }
            s->dispatched_off = d->phys;
            if (!rmq_timer_is_armed(&s->dispatch_retry) && !s->closing) {
                rmq_timer_arm(s->loop, &s->dispatch_retry, 100 * 1000000u, dispatch_retry_fire);
            }
            return;
        }
        d->cq->max = d->queue_off + 1;
        s->dispatched_ts = d->store_ts;
        s->disp_head++;
        if (s->on_arrival != NULL) {
            s->on_arrival(s->on_arrival_ctx, d->cq->topic, d->cq->topic_len, d->cq->queue_id,
                          d->cq->max, d->tags_code);
        }
    }
    s->dispatched_off = s->raw ? RMQ_MIN(s->written_off, s->raw_parse_off) : s->written_off;
    rmq_store__flushed_rec_update(s);
    if (s->raw && s->raw_parse_off < s->written_off && s->disp_head == s->disp_tail &&
        !s->raw_bad) {
        rmq_store__raw_parse(s);        /* the ring was full: the rest of the copy */
        if (s->disp_head != s->disp_tail) {
            rmq_store__dispatch(s);
            return;
        }
    }
    rmq_loop_defer(s->loop, &s->submit);
}

/* ---- recovery -------------------------------------------------------------------------------- */

static bool
entry_zero(const uint8_t *e)
{
    static const uint8_t zero[RMQ_CQ_ENTRY_SIZE];

    return memcmp(e, zero, sizeof(zero)) == 0;
}

static bool
entry_filler(const uint8_t *e)
{
    return rmq_get_be64(e) == 0 && rmq_get_be32(e + 8) == CQ_FILLER_SIZE;
}

static bool
all_digits(const char *p, size_t n)
{
    if (strlen(p) != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
    }
    return true;
}

/* Map the files of one queue directory; an unusable last file (crash while it was being
 * created) is removed, any other gap or size mismatch refuses the start. */
static int
cq_load_files(struct rmq_store *s, struct rmq_cq *q, const char *dir)
{
    uint64_t *firsts = NULL;        /* first entry of each file */
    size_t n = 0;
    size_t cap = 0;
    DIR *dh = opendir(dir);
    struct dirent *de;
    int ret = 0;

    if (dh == NULL) {
        return -errno;
    }
    while ((de = readdir(dh)) != NULL) {
        uint64_t byte_off;

        if (!all_digits(de->d_name, 20)) {
            continue;
        }
        byte_off = strtoull(de->d_name, NULL, 10);
        if (byte_off % cq_file_size(s) != 0) {
            RMQ_ERROR("store: consume queue file %s/%s is not at a file boundary of %llu bytes "
                      "(mappedFileSizeConsumeQueue changed?), refusing to start", dir,
                      de->d_name, (unsigned long long)cq_file_size(s));
            ret = -EBADMSG;
            break;
        }
        if (n == cap) {
            uint64_t *nf = realloc(firsts, (cap = cap ? cap * 2 : 8) * sizeof(*nf));

            if (nf == NULL) {
                ret = -ENOMEM;
                break;
            }
            firsts = nf;
        }
        firsts[n++] = byte_off / RMQ_CQ_ENTRY_SIZE;
    }
    closedir(dh);
    if (ret == 0 && n > 0) {       /* a queue directory made just before a crash may be empty */
        qsort(firsts, n, sizeof(*firsts), rmq_cmp_u64);
    }
    for (size_t i = 0; ret == 0 && i < n; i++) {
        char path[1400];
        struct stat st;
        uint8_t *map = NULL;
        int fd;

        cq_seg_path(s, q, (int64_t)firsts[i], path, sizeof(path), false);
        if (i > 0 && firsts[i] != firsts[i - 1] + s->cfg.cq_entries) {
            RMQ_ERROR("store: consume queue %s has a gap before %s, refusing to start", dir,
                      path);
            ret = -EBADMSG;
            break;
        }
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
            ret = -errno;
            RMQ_ERROR("store: opening consume queue file %s failed err=%s", path, strerror(-ret));
            if (fd >= 0) {
                close(fd);
            }
            break;
        }
        if ((uint64_t)st.st_size != cq_file_size(s)) {
            close(fd);
            if (i == n - 1) {
                RMQ_WARN("store: consume queue file %s has %lld bytes, not %llu: removed, "
                         "rebuilt from the log", path, (long long)st.st_size,
                         (unsigned long long)cq_file_size(s));
                unlink(path);
                break;
            }
            RMQ_ERROR("store: consume queue file %s has %lld bytes, not %llu, refusing to "
                      "start", path, (long long)st.st_size, (unsigned long long)cq_file_size(s));
            ret = -EBADMSG;
            break;
        }
        ret = cq_seg_map(s, fd, &map);
        if (ret < 0 || (ret = cq_seg_push(q, (int64_t)firsts[i], fd, map)) < 0) {
            if (map != NULL) {
                munmap(map, cq_file_size(s));
            }
            close(fd);
        }
    }
    free(firsts);
    return ret;
}

/*
 * Entries are written in order, so the queue is a non-zero prefix followed by zeros,
 * except that a power loss may leave holes among entries written after the last
 * checkpoint. Any non-zero→zero transition lies at or past the durable prefix; from
 * there walk back over entries that are holes or point at or past p (the checkpoint
 * offset): what remains are the entries recovery may trust.
 */
static int64_t
cq_trusted_end(const struct rmq_store *s, const struct rmq_cq *q, uint64_t p)
{
    int64_t lo = q->segs[0].first;
    int64_t hi = q->segs[q->seg_count - 1].first + s->cfg.cq_entries;
    int64_t first = lo;

    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;

        if (entry_zero(rmq_cq_entry(s, q, mid))) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    while (lo > first) {
        const uint8_t *e = rmq_cq_entry(s, q, lo - 1);

        if (!entry_filler(e) && (rmq_get_be32(e + 8) == 0 || rmq_get_be64(e) >= p)) {
            lo--;
        } else {
            break;
        }
    }
    return lo;
}

int
rmq_cq_load(struct rmq_store *s, uint64_t p)
{
    char root[1200];
    DIR *topics;
    struct dirent *te;
    int ret = 0;

    snprintf(root, sizeof(root), "%s/consumequeue", s->cfg.root_dir);
    topics = opendir(root);
    if (topics == NULL) {
        return errno == ENOENT ? 0 : -errno;
    }
    while (ret == 0 && (te = readdir(topics)) != NULL) {
        char tdir[1400];
        DIR *qids;
        struct dirent *qe;
        size_t tlen = strlen(te->d_name);

        if (!rmq_topic_name_ok(te->d_name, (uint32_t)tlen)) {
            continue;                   /* ".", "..", strangers */
        }
        if ((size_t)snprintf(tdir, sizeof(tdir), "%s/%s", root, te->d_name) >= sizeof(tdir)) {
            continue;
        }
        qids = opendir(tdir);
        if (qids == NULL) {
            continue;
        }
        while (ret == 0 && (qe = readdir(qids)) != NULL) {
            char qdir[1500];
            char *end;
            long qid = strtol(qe->d_name, &end, 10);
            struct rmq_cq *q;

            if (qe->d_name[0] == '\0' || *end != '\0' || qid < 0 || qid > INT32_MAX) {
                continue;
            }
            q = rmq_cq_get(s, te->d_name, (uint32_t)tlen, (int32_t)qid);
            if (q == NULL) {
                ret = -ENOMEM;
                break;
            }
            if ((size_t)snprintf(qdir, sizeof(qdir), "%s/%s", tdir, qe->d_name) >= sizeof(qdir)) {
                continue;
            }
            ret = cq_load_files(s, q, qdir);
            if (ret == 0 && q->seg_count > 0) {
                int64_t files_end = q->segs[q->seg_count - 1].first + s->cfg.cq_entries;
                const uint8_t *last;

                q->next = cq_trusted_end(s, q, p);
                q->min = q->segs[0].first;
                /* for rmq_cq_trim: is anything stored past the trusted end? */
                last = q->next < files_end ? rmq_cq_entry(s, q, q->next) : NULL;
                q->max = last != NULL && !entry_zero(last) ? files_end : q->next;
            }
        }
        closedir(qids);
    }
    closedir(topics);
    return ret;
}

/* Erase [q->next, end of its file) and drop later files: they point past the log end. */
static int
cq_trim_one(struct rmq_store *s, struct rmq_cq *q)
{
    int64_t rel = q->next - q->segs[0].first;
    int keep = (int)(rel / s->cfg.cq_entries);
    uint64_t from = (uint64_t)(rel % s->cfg.cq_entries) * RMQ_CQ_ENTRY_SIZE;
    int ret = 0;

    if (keep >= q->seg_count) {
        return 0;                       /* next is exactly the end of the last file */
    }
    for (int k = q->seg_count - 1; k > keep; k--) {
        cq_seg_unlink(s, q, &q->segs[k]);
        q->seg_count--;
    }
    if (from < cq_file_size(s)) {
        struct rmq_cq_seg *g = &q->segs[keep];
        off_t len = (off_t)(cq_file_size(s) - from);

        /* zero without dirtying pages; re-reserve the blocks a punched hole gave back */
        if (fallocate(g->fd, FALLOC_FL_ZERO_RANGE, (off_t)from, len) < 0 &&
            (fallocate(g->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from, len) < 0 ||
             fallocate(g->fd, 0, (off_t)from, len) < 0)) {
            ret = -errno;
            if (ret == -EOPNOTSUPP) {
                memset(g->map + from, 0, (size_t)len);
                ret = 0;
            }
        }
        cq_mark_dirty(s, q, g);
    }
    return ret;
}

int
rmq_cq_trim(struct rmq_store *s, bool unclean)
{
    for (uint32_t i = 0; i < s->cq_cap; i++) {
        struct rmq_cq *q = s->cqs[i];
        int ret;

        bool stale;

        if (q == NULL || q->seg_count == 0) {
            continue;
        }
        stale = q->max > q->next;       /* load left the files' end in max */
        q->max = q->next;
        if (!unclean && !stale) {
            continue;
        }
        ret = cq_trim_one(s, q);
        if (ret < 0) {
            RMQ_ERROR("store: erasing consume queue %s/%d past entry %lld failed err=%s",
                      q->topic, (int)q->queue_id, (long long)q->next, strerror(-ret));
            return ret;
        }
    }
    return 0;
}

/* ---- the log's front moved ------------------------------------------------------------------- */

/* First entry in [lo, hi) whose record is at or above min_phys (entries ascend). */
static int64_t
cq_first_at_or_above(const struct rmq_store *s, const struct rmq_cq *q, int64_t lo, int64_t hi,
                     uint64_t min_phys)
{
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const uint8_t *e = rmq_cq_entry(s, q, mid);

        if (e == NULL || entry_filler(e) || rmq_get_be64(e) < min_phys) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

void
rmq_cq_set_min_phys(struct rmq_store *s, uint64_t min_phys)
{
    for (uint32_t i = 0; i < s->cq_cap; i++) {
        struct rmq_cq *q = s->cqs[i];
        int drop = 0;

        if (q == NULL || q->seg_count == 0) {
            continue;
        }
        /* whole files below the log's start go; the last file always stays (it holds max) */
        while (drop < q->seg_count - 1) {
            int64_t last = q->segs[drop].first + s->cfg.cq_entries - 1;
            const uint8_t *e = rmq_cq_entry(s, q, last);

            if (last >= q->max || (!entry_filler(e) && rmq_get_be64(e) >= min_phys)) {
                break;
            }
            cq_seg_unlink(s, q, &q->segs[drop]);
            drop++;
        }
        if (drop > 0) {
            memmove(q->segs, q->segs + drop, (size_t)(q->seg_count - drop) * sizeof(*q->segs));
            q->seg_count -= drop;
        }
        q->min = cq_first_at_or_above(s, q, RMQ_MAX(q->min, q->segs[0].first), q->max, min_phys);
    }
}

/* ---- reads ----------------------------------------------------------------------------------- */

static const char *const get_status_names[] = {
    [RMQ_GET_FOUND] = "FOUND",
    [RMQ_GET_NO_MATCHED_MESSAGE] = "NO_MATCHED_MESSAGE",
    [RMQ_GET_MESSAGE_WAS_REMOVING] = "MESSAGE_WAS_REMOVING",
    [RMQ_GET_OFFSET_FOUND_NULL] = "OFFSET_FOUND_NULL",
    [RMQ_GET_OFFSET_OVERFLOW_BADLY] = "OFFSET_OVERFLOW_BADLY",
    [RMQ_GET_OFFSET_OVERFLOW_ONE] = "OFFSET_OVERFLOW_ONE",
    [RMQ_GET_OFFSET_TOO_SMALL] = "OFFSET_TOO_SMALL",
    [RMQ_GET_NO_MATCHED_LOGIC_QUEUE] = "NO_MATCHED_LOGIC_QUEUE",
    [RMQ_GET_NO_MESSAGE_IN_QUEUE] = "NO_MESSAGE_IN_QUEUE",
};

const char *
rmq_get_status_name(int status)
{
    if (status < 0 || (size_t)status >= sizeof(get_status_names) / sizeof(get_status_names[0])) {
        return "UNKNOWN";
    }
    return get_status_names[status];
}

/* The reference's batch limits (maxTransfer{Bytes,Count}OnMessageIn{Memory,Disk}). */
#define MEM_BATCH_BYTES (256u * 1024)
#define MEM_BATCH_COUNT 32u
#define DISK_BATCH_BYTES (64u * 1024)
#define DISK_BATCH_COUNT 8u

static bool
batch_full(uint32_t size, uint32_t max_msgs, uint64_t bytes, uint32_t count, bool in_memory)
{
    if (count == 0) {
        return false;               /* the first message is always taken */
    }
    if (count >= max_msgs) {
        return true;
    }
    if (in_memory) {
        return bytes + size > MEM_BATCH_BYTES || count >= MEM_BATCH_COUNT;
    }
    return bytes + size > DISK_BATCH_BYTES || count >= DISK_BATCH_COUNT;
}

static bool
code_match(const int32_t *codes, uint32_t n, int64_t tags)
{
    if (codes == NULL) {
        return true;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (codes[i] == (int32_t)tags) {
            return true;
        }
    }
    return false;
}

void
rmq_store_get(const struct rmq_store *s, const char *topic, uint32_t topic_len,
              int32_t queue_id, int64_t offset, uint32_t max_msgs, const int32_t *codes,
              uint32_t code_count, struct rmq_store_range *ranges, struct rmq_get_result *out)
{
    const struct rmq_cq *q = rmq_cq_find(s, topic, topic_len, queue_id);
    int64_t seg_end;
    int64_t limit;
    int64_t i;
    uint64_t skip_below = s->min_off;
    uint64_t last_phys = 0;

    memset(out, 0, sizeof(*out));
    if (q == NULL) {
        out->status = RMQ_GET_NO_MATCHED_LOGIC_QUEUE;
        return;
    }
    out->min_off = q->min;
    out->max_off = q->max;
    if (q->max == 0) {
        out->status = RMQ_GET_NO_MESSAGE_IN_QUEUE;
        return;
    }
    if (offset < q->min) {
        out->status = RMQ_GET_OFFSET_TOO_SMALL;
        out->next_begin = q->min;
        return;
    }
    if (offset == q->max) {
        out->status = RMQ_GET_OFFSET_OVERFLOW_ONE;
        out->next_begin = offset;
        return;
    }
    if (offset > q->max) {
        out->status = RMQ_GET_OFFSET_OVERFLOW_BADLY;
        out->next_begin = q->max;
        return;
    }
    if (rmq_cq_entry(s, q, offset) == NULL) {
        out->status = RMQ_GET_OFFSET_FOUND_NULL;
        out->next_begin = offset - offset % s->cfg.cq_entries + s->cfg.cq_entries;
        return;
    }
    /* a pull never crosses a consume queue file (STORE.md §13) */
    seg_end = offset - offset % s->cfg.cq_entries + s->cfg.cq_entries;
    limit = RMQ_MIN(RMQ_MIN(seg_end, q->max), offset + RMQ_MAX((int64_t)max_msgs, 800));
    out->status = RMQ_GET_NO_MATCHED_MESSAGE;
    for (i = offset; i < limit; i++) {
        const uint8_t *e = rmq_cq_entry(s, q, i);
        uint64_t phys = rmq_get_be64(e);
        uint32_t size = rmq_get_be32(e + 8);
        int64_t tags = (int64_t)rmq_get_be64(e + 12);
        bool in_memory = rmq_store_in_memory(s, phys);

        if (batch_full(size, max_msgs, out->bytes, out->count, in_memory)) {
            break;
        }
        last_phys = phys;
        if (!code_match(codes, code_count, tags)) {
            continue;
        }
        if (phys < skip_below || size == 0 || size == CQ_FILLER_SIZE) {
            /* its segment was deleted: skip to the log's start */
            if (out->count == 0) {
                out->status = RMQ_GET_MESSAGE_WAS_REMOVING;
            }
            continue;
        }
        ranges[out->count].phys = phys;
        ranges[out->count].len = size;
        out->count++;
        out->bytes += size;
        out->status = RMQ_GET_FOUND;
    }
    out->next_begin = i;
    out->suggest_slave = s->written_off - last_phys > s->mem_window;
}

int64_t
rmq_store_queue_min(const struct rmq_store *s, const char *topic, uint32_t topic_len,
                    int32_t queue_id)
{
    const struct rmq_cq *q = rmq_cq_find(s, topic, topic_len, queue_id);

    return q != NULL ? q->min : -1;
}

int64_t
rmq_store_queue_max(const struct rmq_store *s, const char *topic, uint32_t topic_len,
                    int32_t queue_id)
{
    const struct rmq_cq *q = rmq_cq_find(s, topic, topic_len, queue_id);

    return q != NULL ? q->max : 0;
}

bool
rmq_store_in_memory(const struct rmq_store *s, uint64_t phys)
{
    return s->written_off - RMQ_MIN(phys, s->written_off) <= s->mem_window;
}

int
rmq_store_queue_entry(const struct rmq_store *s, const char *topic, uint32_t topic_len,
                      int32_t queue_id, int64_t qoff, struct rmq_cq_entry *out)
{
    const struct rmq_cq *q = rmq_cq_find(s, topic, topic_len, queue_id);
    const uint8_t *e;

    if (q == NULL || qoff < q->min || qoff >= q->max || (e = rmq_cq_entry(s, q, qoff)) == NULL) {
        return -ENOENT;
    }
    rmq_cq_entry_decode(e, out);
    return 0;
}

/* Store time of the record entry qoff points at, or -1 when it is not readable. */
static int64_t
entry_store_ts(struct rmq_store *s, const struct rmq_cq *q, int64_t qoff)
{
    const uint8_t *e = rmq_cq_entry(s, q, qoff);

    if (e == NULL || entry_filler(e) || rmq_get_be64(e) < s->min_off) {
        return -1;
    }
    return rmq_store__ts_at(s, rmq_get_be64(e));
}

int64_t
rmq_store_queue_offset_by_time(struct rmq_store *s, const char *topic, uint32_t topic_len,
                               int32_t queue_id, int64_t ts_ms)
{
    const struct rmq_cq *q = rmq_cq_find(s, topic, topic_len, queue_id);
    int64_t lo;
    int64_t hi;
    int64_t left_ts;
    int64_t right_ts;

    if (q == NULL || q->min >= q->max) {
        return 0;
    }
    lo = q->min;
    hi = q->max;
    while (lo < hi) {                   /* first entry stored at or after ts_ms */
        int64_t mid = lo + (hi - lo) / 2;
        int64_t t = entry_store_ts(s, q, mid);

        if (t >= 0 && t < ts_ms) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == q->min) {
        return lo;
    }
    if (lo == q->max) {
        return q->max - 1;
    }
    left_ts = entry_store_ts(s, q, lo - 1);
    right_ts = entry_store_ts(s, q, lo);
    if (right_ts == ts_ms) {
        return lo;
    }
    /* the nearer neighbour; a tie goes left like the reference */
    return ts_ms - left_ts > right_ts - ts_ms ? lo : lo - 1;
}

int64_t
rmq_store_queue_earliest_time(struct rmq_store *s, const char *topic, uint32_t topic_len,
                              int32_t queue_id)
{
    const struct rmq_cq *q = rmq_cq_find(s, topic, topic_len, queue_id);

    if (q == NULL || q->min >= q->max) {
        return -1;
    }
    return entry_store_ts(s, q, q->min);
}
