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

struct rmq_store_seg {
    uint64_t start;
    int handle;
};

struct rmq_store_qoff {
    char *topic;                    /* owned */
    uint8_t topic_len;
    int32_t queue_id;
    int64_t next;
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
    int sync_seg;                   /* segment being synced */
    struct rmq_disk_req sync_req;
    struct rmq_timer flush_timer;   /* ASYNC_FLUSH interval */
    struct rmq_timer timeout_timer; /* SYNC_FLUSH waiter timeout */

    struct rmq_store_qoff *qoffs;   /* owned: open-addressing table */
    uint32_t qoff_cap;
    uint32_t qoff_count;

    void (*close_done)(struct rmq_store *s, void *arg);
    void *close_arg;

    struct rmq_store_stats stats;
};

/* Invariant check for tests: flushed <= written <= reserved. */
bool rmq_store__check(const struct rmq_store *s);

#endif
