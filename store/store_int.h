/* Private to store/ and tests/unit/store/: the store's state, for checks in tests. */
#ifndef RMQ_STORE_STORE_INT_H
#define RMQ_STORE_STORE_INT_H

#include "store/store.h"

#define RMQ_STORE_BATCHES 8             /* vectored writes in flight at once */
#define RMQ_STORE_BATCH_IOV 1024        /* IOV_MAX */

struct rmq_store_batch {
    struct rmq_disk_req req;
    struct rmq_store *s;            /* borrowed */
    struct rmq_link link;           /* free list or in-flight list (log order) */
    struct rmq_link msgs;           /* messages whose records end in this batch */
    uint64_t start_off;             /* log offset of the first byte */
    uint64_t end_off;
    int seg;                        /* index into s->segs */
    int64_t last_ts;                /* store time of the last record in the batch */
    bool done;
    int32_t res;
    uint32_t iov_cnt;
    uint32_t iov_next;              /* first iovec not yet written (short writes) */
    uint64_t bytes;                 /* bytes the iovecs carry (a filler's zero span is not written) */
    uint64_t written;               /* bytes of this batch written so far */
    uint8_t *scratch;               /* owned by the store: batch_scratch bytes */
    size_t scratch_used;
    struct iovec iov[RMQ_STORE_BATCH_IOV];
};

/* A read-only mapping of one segment for readers (rmq_store_view). A segment deleted
 * while pinned keeps its mapping on the retired list until the last pin goes. */
struct rmq_seg_map {
    const uint8_t *base;
    uint64_t size;
    int fd;                         /* own descriptor for splicing, or -1 */
    uint32_t pins;
    bool retired;
    struct rmq_seg_map *next_retired;
};

struct rmq_store_seg {
    uint64_t start;
    int handle;
    struct rmq_seg_map *map;        /* owned; NULL until the first view */
};

/* One consume queue file: cq_entries entries from entry `first`, mapped shared. */
struct rmq_cq_seg {
    int64_t first;
    int fd;
    uint8_t *map;
    bool dirty;                     /* written since the last checkpoint's fdatasync */
};

/* A consume queue; allocated once per (topic, queue id) and never moved. */
struct rmq_cq {
    char *topic;                    /* owned, NUL-terminated */
    uint8_t topic_len;
    int32_t queue_id;
    int64_t next;                   /* next queue offset the writer assigns */
    int64_t max;                    /* entries written: readers see [min, max) */
    int64_t min;
    struct rmq_cq_seg *segs;        /* owned; contiguous, ascending */
    int seg_count;
    int seg_cap;
    bool dirty;
    struct rmq_link dirty_link;
};

/* The one consume queue file creation in flight, as ring ops (mkdir, open, fallocate). */
struct rmq_cq_maker {
    struct rmq_op op;
    struct rmq_cq *q;               /* NULL: idle */
    int64_t first;                  /* first entry of the file being made */
    int step;
    int fd;
    uint64_t zeroed;                /* bytes of the file written with zeros so far */
    uint8_t *zeros;                 /* CQ_ZERO_CHUNK zero bytes, made on first use */
    int err;                        /* last failure, told to the next put for (err_q, err_first) */
    struct rmq_cq *err_q;
    int64_t err_first;
    char cq_dir[1400];              /* parents of path: made for a queue's first file */
    char topic_dir[1400];
    char queue_dir[1400];
    char path[1400];
};

/* A record waiting for its consume queue entry (placed, maybe not yet written). */
struct rmq_dispatch {
    struct rmq_cq *cq;
    int64_t queue_off;
    uint64_t phys;
    uint32_t size;
    int64_t tags_code;
    int64_t store_ts;
};

#define RMQ_DISPATCH_CAP 65536          /* placed-not-dispatched records; power of two */
/* Decode copied records below written_off into dispatch entries (commitlog.c). */
void rmq_store__raw_parse(struct rmq_store *s);

#define RMQ_CP_SYNCS 16                 /* consume queue fdatasyncs in flight at once */

struct rmq_store_cp_sync {
    struct rmq_op op;
    struct rmq_store *s;
    bool busy;
};

struct rmq_store {
    struct rmq_loop *loop;          /* borrowed */
    struct rmq_disk *disk;          /* borrowed */
    struct rmq_store_config cfg;
    int error;                      /* sticky -EIO */
    bool closing;

    struct rmq_store_seg *segs;     /* owned; segs[seg_count-1] is being written */
    int seg_count;
    int seg_cap;
    int next_handle;                /* prepared next segment, or -1 */
    bool prep_in_flight;
    struct rmq_disk_req prep_req;

    uint64_t reserved_off;
    uint64_t written_off;
    uint64_t flushed_off;
    /* a record boundary <= flushed_off: the most a checkpoint may claim (a slave's
     * copies, and so its flushes, end anywhere inside a record) */
    uint64_t flushed_rec_off;
    int64_t last_store_ts;

    struct rmq_link pending;        /* appends not yet placed in a batch */
    struct rmq_link completed;      /* finished messages to call back (never inline) */
    struct rmq_deferred submit;
    struct rmq_store_batch batches[RMQ_STORE_BATCHES];
    uint8_t *scratch_mem;           /* owned */
    struct rmq_link batch_free;
    struct rmq_link batch_inflight;
    struct rmq_store_batch *open_batch;

    struct rmq_link flush_waiters;  /* SYNC_FLUSH: written, waiting for flushed */
    bool sync_in_flight;
    uint64_t sync_target;           /* flushed becomes this when the sync chain ends */
    uint64_t sync_rec_target;       /* and flushed_rec_off this: dispatched when it began */
    int sync_seg;                   /* segment being synced */
    struct rmq_disk_req sync_req;
    struct rmq_timer flush_timer;   /* ASYNC_FLUSH interval */
    struct rmq_timer timeout_timer; /* SYNC_FLUSH waiter timeout */

    struct rmq_cq **cqs;            /* owned: open-addressing table of owned queues */
    uint32_t cq_cap;
    uint32_t cq_count;
    struct rmq_link cq_dirty;       /* queues with entries not yet fdatasync'd */
    struct rmq_cq_maker cq_make;
    bool cq_async;                  /* open finished: queue files are made through the ring */

    struct rmq_dispatch *disp;      /* owned ring: placed records in log order */
    uint32_t disp_head;             /* next to dispatch */
    uint32_t disp_tail;             /* next free */
    uint64_t dispatched_off;        /* every entry for records below it is written */
    int64_t dispatched_ts;
    int64_t written_ts;             /* store time of the last record below written_off */
    int64_t flushed_ts;
    int64_t sync_target_ts;
    struct rmq_timer dispatch_retry;

    /* checkpoint: consume queue fdatasyncs, then the checkpoint page */
    int cp_fd;
    bool cp_in_flight;
    bool cp_final_done;             /* the close-time checkpoint completed */
    uint64_t cp_target;             /* dispatched_off when the checkpoint began */
    int64_t cp_target_ts;
    int *cp_fds;                    /* owned: fds still to fdatasync */
    uint32_t cp_fd_count;
    uint32_t cp_fd_cap;
    uint32_t cp_fd_next;
    uint32_t cp_syncs_out;
    int cp_err;
    struct rmq_store_cp_sync cp_syncs[RMQ_CP_SYNCS];
    struct rmq_op cp_write_op;
    struct rmq_op cp_sync_op;
    uint8_t *cp_page;               /* owned, 4096 bytes, aligned */
    struct rmq_timer cp_timer;
    uint64_t cp_off;                /* log offset of the last durable checkpoint */

    /* retention and disk space */
    struct rmq_timer clean_timer;
    bool disk_full;                 /* over disk_refuse_ratio, or ENOSPC seen */
    uint64_t space_checked_ns;
    bool remove_in_flight;
    struct rmq_disk_req remove_req;
    uint64_t min_off;               /* start of the first segment */
    uint64_t release_off;           /* rmq_store_release_below: nothing below is needed */
    uint64_t mem_window;            /* 40% of RAM: a pull's "in memory" distance */
    bool prep_failed;               /* the last segment preparation failed */
    int prep_err;
    struct rmq_timer prep_retry;
    bool unclean_start;             /* the abort file was there at open */

    /* a slave's copied bytes (rmq_store_append_raw) */
    bool raw;                       /* raw appends seen: entries come from parsing */
    uint64_t raw_parse_off;         /* records decoded below it */
    bool raw_bad;                   /* a copied record did not decode: parsing stopped */
    bool rebase_in_flight;          /* an empty log moving to the master's segment start */
    struct rmq_op rebase_op;
    uint64_t rebase_to;
    int rebase_step;
    void (*on_written)(void *ctx, uint64_t written);
    void *on_written_ctx;

    struct rmq_seg_map *retired_maps;   /* deleted segments still pinned by readers */
    rmq_store_arrival_fn on_arrival;
    void *on_arrival_ctx;

    void (*close_done)(struct rmq_store *s, void *arg);
    void *close_arg;

    struct rmq_store_stats stats;
};

/* Invariant check for tests: flushed <= written <= reserved. */
bool rmq_store__check(const struct rmq_store *s);
/* Store time of the record at log offset phys (below written_off), or -1. */
int64_t rmq_store__ts_at(struct rmq_store *s, uint64_t phys);

/* A segment leaves the log (retention): drop its mapping, or retire it while pinned. */
void rmq_store__seg_map_drop(struct rmq_store *s, struct rmq_store_seg *seg);

/* ---- consume queues (cqueue.c) ---------------------------------------------------------- */

struct rmq_cq *rmq_cq_find(const struct rmq_store *s, const char *topic, uint32_t len,
                           int32_t qid);
/* Find or create (in memory; files come with the first entry). NULL: out of memory. */
struct rmq_cq *rmq_cq_get(struct rmq_store *s, const char *topic, uint32_t len, int32_t qid);
/* Write entry qoff; creates the queue's file when needed. 0 or -errno. */
int rmq_cq_put(struct rmq_store *s, struct rmq_cq *q, int64_t qoff, uint64_t phys,
               uint32_t size, int64_t tags_code);
/* The mapped entry qoff, or NULL when its file is not there. */
const uint8_t *rmq_cq_entry(const struct rmq_store *s, const struct rmq_cq *q, int64_t qoff);
void rmq_cq_free_all(struct rmq_store *s);
bool rmq_cq_maker_idle(const struct rmq_store *s);
/* Recovery: map every queue on disk; next = entries for records below log offset p. */
int rmq_cq_load(struct rmq_store *s, uint64_t p);
/* Recovery end: max = next; entries past it are erased (they point past the log end).
 * A clean start erases only where the files hold entries past the rebuilt end. */
int rmq_cq_trim(struct rmq_store *s, bool unclean);
/* The log now starts at min_phys: move queue minimums, delete files wholly below. */
void rmq_cq_set_min_phys(struct rmq_store *s, uint64_t min_phys);
/* Move written records' entries into their queues (after written_off moved). */
void rmq_store__dispatch(struct rmq_store *s);

/* dispatched_off is a record boundary: once flushed covers it, a checkpoint may claim it. */
static inline void
rmq_store__flushed_rec_update(struct rmq_store *s)
{
    if (s->dispatched_off <= s->flushed_off && s->dispatched_off > s->flushed_rec_off) {
        s->flushed_rec_off = s->dispatched_off;
    }
}

/* ---- checkpoint (checkpoint.c) ------------------------------------------------------------ */

#define RMQ_CHECKPOINT_SIZE 4096

struct rmq_checkpoint {
    int64_t physic_ts;              /* the reference's three timestamps (STORE.md §14) */
    int64_t logics_ts;
    int64_t index_ts;
    bool has_offset;                /* ringmq's extension present and intact */
    uint64_t offset;                /* records and entries below it are durable */
};

void rmq_checkpoint_encode(const struct rmq_checkpoint *cp, uint8_t page[RMQ_CHECKPOINT_SIZE]);
void rmq_checkpoint_decode(const uint8_t *page, size_t len, struct rmq_checkpoint *cp);
/* Begin a checkpoint (no-op while one runs). */
void rmq_store__checkpoint(struct rmq_store *s);

/* ---- retention (retention.c) --------------------------------------------------------------- */

void rmq_store__clean_start(struct rmq_store *s);
/* While the disk is full: look again (at most every 100 ms) whether space returned. */
void rmq_store__recheck_space(struct rmq_store *s);
/* Prepare the next segment unless one is ready or being prepared (commitlog.c). */
void rmq_store__prep_next(struct rmq_store *s);
void rmq_store__checkpoint_init(struct rmq_store *s);
/* A topic name the reference accepts: [%|a-zA-Z0-9_-]{1,127}. */
bool rmq_topic_name_ok(const char *topic, uint32_t len);

#endif
