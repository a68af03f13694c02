/*
 * The commitlog store: one single writer on one loop, records in the RocketMQ 4.x
 * layout (core/record.h) appended to fixed-size segments.
 *
 * Append: the caller fills a struct rmq_store_msg (record fields, body pointer) and
 * keeps it and its body alive until done runs. Appends of one loop iteration form
 * a batch: heads and tails are built in the batch's scratch area, bodies are
 * referenced where they lie, and the batch goes to the disk as one vectored write
 * per segment it touches. A body is copied once, from where it lies into the page
 * cache (by the kernel's write or by the disk's copy into the segment's mapping: see
 * commitLogWriteMode in commitlog.c), never into a staging buffer.
 *
 * Watermarks (offsets in the whole log):
 *   flushed <= written <= reserved
 *   written   every write below it has completed (readers see only this much)
 *   flushed   an fdatasync covering it has completed
 * ASYNC_FLUSH answers once written covers the record, and flushes on a timer or
 * after flushCommitLogLeastPages; SYNC_FLUSH answers once flushed covers it (group
 * commit: at most one fdatasync in flight, covering everything written before it
 * was issued), or with -ETIMEDOUT after syncFlushTimeout (stored, not yet durable).
 *
 * Errors: a failed write or fdatasync is sticky: it and every later append complete
 * with -EIO and one log line says why, until the store is reopened (recovery then
 * decides what survived). Success is never reported for data that may be lost.
 *
 * Consume queues (store/cqueue.c): once written covers a record, its 20-byte entry
 * goes to <root>/consumequeue/<topic>/<queueId>/; readers (rmq_store_get) see a
 * message only when its entry exists. A checkpoint (<root>/checkpoint) records a
 * log offset below which records and entries are all durable; recovery starts
 * there, so its time depends on the unflushed tail, not on the size of the log.
 */
#ifndef RMQ_STORE_STORE_H
#define RMQ_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/loop.h"
#include "store/disk.h"
#include "core/record.h"

#define RMQ_DELAY_LEVELS_MAX 64
#define RMQ_SCHEDULE_TOPIC "SCHEDULE_TOPIC_XXXX"
/* The timer log's topic (RocketMQ 5.x's name): queue 0 holds scheduled messages, tag code
 * = TIMER_DELIVER_MS; queue 1 holds delivery marks, tag code = TIMER_OUT (the queue 0
 * offset delivered). */
#define RMQ_TIMER_TOPIC "rmq_sys_wheel_timer"

enum rmq_flush_type {
    RMQ_FLUSH_ASYNC = 0,            /* ASYNC_FLUSH */
    RMQ_FLUSH_SYNC = 1,             /* SYNC_FLUSH */
};

struct rmq_store_config {
    uint64_t seg_size;              /* mappedFileSizeCommitLog; default 1 GiB */
    int flush_type;                 /* flushDiskType */
    uint32_t flush_interval_ms;     /* flushIntervalCommitLog; default 500 */
    uint32_t flush_least_pages;     /* flushCommitLogLeastPages; default 4 */
    uint32_t sync_flush_timeout_ms; /* syncFlushTimeout; default 5000 */
    uint32_t max_message_size;      /* maxMessageSize; default 4 MiB */
    uint32_t batch_scratch;         /* bytes of heads/tails per batch; default 1 MiB */
    const char *root_dir;           /* storePathRootDir: consumequeue/, checkpoint, abort */
    uint32_t cq_entries;            /* mappedFileSizeConsumeQueue / 20; default 300000 */
    uint32_t cq_flush_interval_ms;  /* flushIntervalConsumeQueue: checkpoint period; 1000 */
    uint64_t file_reserved_ms;      /* fileReservedTime (hours) in ms; default 72 h */
    uint32_t delete_hours_mask;     /* deleteWhen: bit h = hour h of the day; default 1<<4 */
    uint32_t disk_max_used_ratio;   /* diskMaxUsedSpaceRatio, percent: delete early above */
    uint32_t disk_refuse_ratio;     /* diskSpaceWarningLevelRatio, percent: refuse appends */
    uint32_t disk_force_ratio;      /* diskSpaceCleanForciblyRatio, percent: delete unexpired */
    uint32_t clean_interval_ms;     /* cleanResourceInterval: retention check; 10000 */
    /* messageDelayLevel in ms: a SCHEDULE_TOPIC_XXXX record's consume queue tag code is
     * its delivery time, store time + delay_levels_ms[DELAY - 1] (STORE.md §7.2) */
    int64_t delay_levels_ms[RMQ_DELAY_LEVELS_MAX];
    uint32_t delay_level_count;     /* 0: the reference's 18 defaults */
    uint32_t mem_ratio;             /* accessMessageInMemoryMaxRatio, percent of RAM */
    bool mem_ratio_set;             /* else 40 */
};

struct rmq_store;
struct rmq_store_msg;
struct rmq_cq;
struct rmq_seg_map;

/* A message's consume queue entry was written: (topic, queue_id) now holds max entries. */
typedef void (*rmq_store_arrival_fn)(void *ctx, const char *topic, uint32_t topic_len,
                                     int32_t queue_id, int64_t max, int64_t tags_code);

/*
 * status: 0 stored (and flushed under SYNC_FLUSH); -ETIMEDOUT stored, flush not
 * confirmed in time (FLUSH_DISK_TIMEOUT); -EIO store failed (sticky); -EMSGSIZE
 * record too large; -ENOSPC disk full (not stored; appends resume by themselves
 * once space returns); -EINVAL topic not a valid RocketMQ topic name. rec.phys_off, rec.queue_off and
 * rec.store_ts hold the assigned values when stored.
 */
typedef void (*rmq_store_done_fn)(struct rmq_store_msg *m, int status);

struct rmq_store_msg {
    struct rmq_record rec;          /* caller fills all but phys_off, queue_off, store_ts */
    rmq_store_done_fn done;
    /* store-private from here */
    bool raw;                       /* rmq_store_append_raw */
    struct rmq_cq *cq;              /* its consume queue, when it existed at append */
    struct rmq_link link;
    uint64_t end_off;               /* phys_off + total_size */
    uint64_t enqueued_ns;
    int status;
};

struct rmq_store_stats {
    uint64_t appends;
    uint64_t batches;
    uint64_t writes;                /* vectored writes issued */
    uint64_t syncs;                 /* fdatasync issued */
    uint64_t rolls;                 /* segments filled */
    uint64_t segments_prepared;     /* next segments made ready in the background */
    uint64_t flush_timeouts;
    uint64_t recovered_bytes;       /* valid bytes found by the last recovery scan */
    uint64_t truncated_bytes;       /* torn tail zeroed by the last recovery */
    uint64_t recovery_start;        /* log offset the last recovery scanned from */
    uint64_t cq_entries_rebuilt;    /* consume queue entries written by the last recovery */
    uint64_t checkpoints;
    uint64_t dispatch_stalls;       /* a consume queue file could not be created */
    uint64_t cq_file_waits;         /* dispatch waited for a queue file not made ahead */
    uint64_t segments_deleted;      /* commitlog segments removed by retention */
    uint64_t cq_files_deleted;
    uint64_t disk_full_refusals;    /* appends answered -ENOSPC */
    uint64_t raw_appends;           /* rmq_store_append_raw calls written */
    uint64_t raw_bytes;
    uint64_t raw_bad_records;       /* copied bytes that are not a valid record */
};

/*
 * Open (or create) the log on disk: scan the segments after the last complete one,
 * keep every valid record, zero a torn tail, rebuild queue offsets. Runs on the
 * store's loop before it serves; blocking reads are fine here. -errno with a log line.
 */
int rmq_store_open(struct rmq_store **out, struct rmq_loop *loop, struct rmq_disk *disk,
                   const struct rmq_store_config *cfg);

/* Queue m; m->done runs later on the loop, never inline. */
void rmq_store_append(struct rmq_store *s, struct rmq_store_msg *m);

/*
 * A slave's copy of its master's log (HA): rec.body_len bytes at rec.body written
 * verbatim at log offset rec.phys_off, which must be the end of this log (for an empty
 * log: any segment start, where the log then begins). The bytes may end inside a
 * record; consume queue entries follow once a record is complete, with the queue
 * offsets the master gave it. One call never crosses a segment end; the next call after
 * the last byte of a segment starts the next segment. m->done: 0 written (flushed
 * under SYNC_FLUSH), -ERANGE not the end of the log or across a segment end, or the
 * append errors.
 */
void rmq_store_append_raw(struct rmq_store *s, struct rmq_store_msg *m);
/* Copied bytes decoded into records up to here (the rest ends inside a record). */
uint64_t rmq_store_raw_parsed_off(const struct rmq_store *s);
/* The log end: where the next byte goes (a slave's max offset). */
uint64_t rmq_store_reserved_off(const struct rmq_store *s);
/* mappedFileSizeCommitLog: segments start at multiples of it. */
uint64_t rmq_store_seg_size(const struct rmq_store *s);

/* Flush everything written, then call done (on the loop). New appends get -ESHUTDOWN. */
void rmq_store_close(struct rmq_store *s, void (*done)(struct rmq_store *s, void *arg),
                     void *arg);
/* Close and run the loop until that is done: for tools and tests that own the loop.
 * 0, or -ETIMEDOUT when it took longer than timeout_ns (the store is still closing). */
int rmq_store_close_wait(struct rmq_store *s, uint64_t timeout_ns);

/* Take a checkpoint now (one runs every cq_flush_interval_ms anyway); stats.checkpoints
 * counts the completed ones. */
void rmq_store_checkpoint(struct rmq_store *s);

/* Free; only after close completed (or if open failed half way). */
void rmq_store_destroy(struct rmq_store *s);

uint64_t rmq_store_written_off(const struct rmq_store *s);
uint64_t rmq_store_flushed_off(const struct rmq_store *s);
/* Every record below has its consume queue entry and its arrival call. */
uint64_t rmq_store_dispatched_off(const struct rmq_store *s);
/* Next queue offset of (topic, queue_id): how many records it holds. */
int64_t rmq_store_queue_max(const struct rmq_store *s, const char *topic, uint32_t topic_len,
                            int32_t queue_id);
const struct rmq_store_stats *rmq_store_stats(const struct rmq_store *s);
/* -EIO once a write or sync failed; 0 otherwise. */
int rmq_store_error(const struct rmq_store *s);

/* Read len bytes of the log at phys_off (below written_off). Synchronous: tests, tools. */
ssize_t rmq_store_read(struct rmq_store *s, uint64_t phys_off, void *buf, size_t len);

/*
 * Readers' zero-copy access: *data points at len bytes of the log at phys, inside a
 * read-only shared mapping of its segment, valid until rmq_store_unpin(s, *pin) even
 * if retention deletes the segment meanwhile. The range must lie below written_off
 * and inside one segment (a record or a run of records always does). 0, -ERANGE, or
 * the mapping's -errno.
 */
int rmq_store_view(struct rmq_store *s, uint64_t phys, uint32_t len, const uint8_t **data,
                   struct rmq_seg_map **pin);
void rmq_store_unpin(struct rmq_store *s, struct rmq_seg_map *pin);
/* The segment file behind a view, for splicing: a descriptor valid while pinned (or
 * -1 when the disk has none) and the view's offset in it. */
int rmq_store_view_file(const struct rmq_seg_map *pin, const uint8_t *data, uint64_t *file_off);

/* Be told whenever written_off moved (replication). One hook; NULL clears. */
void rmq_store_on_written(struct rmq_store *s, void (*fn)(void *ctx, uint64_t written),
                          void *ctx);

/* Be told of every consume queue entry written (long polling). One hook; NULL clears. */
void rmq_store_on_arrival(struct rmq_store *s, rmq_store_arrival_fn fn, void *ctx);

/* ---- reads (spec/STORE.md §13); run on the store's loop ------------------------------- */

enum rmq_get_status {
    RMQ_GET_FOUND = 0,
    RMQ_GET_NO_MATCHED_MESSAGE,
    RMQ_GET_MESSAGE_WAS_REMOVING,
    RMQ_GET_OFFSET_FOUND_NULL,
    RMQ_GET_OFFSET_OVERFLOW_BADLY,
    RMQ_GET_OFFSET_OVERFLOW_ONE,
    RMQ_GET_OFFSET_TOO_SMALL,
    RMQ_GET_NO_MATCHED_LOGIC_QUEUE,
    RMQ_GET_NO_MESSAGE_IN_QUEUE,
};

/* The reference's status name (a pull response's remark). */
const char *rmq_get_status_name(int status);

/* One found message: where its record lies in the log. */
struct rmq_store_range {
    uint64_t phys;
    uint32_t len;
};

struct rmq_get_result {
    int status;                     /* enum rmq_get_status */
    int64_t next_begin;             /* nextBeginOffset per spec/REMOTING.md §12.2 */
    int64_t min_off;
    int64_t max_off;
    uint32_t count;                 /* ranges filled */
    uint64_t bytes;
    bool suggest_slave;             /* the last entry is beyond the in-memory window */
};

/*
 * Look up to max_msgs messages of (topic, queue_id) from offset. codes/code_count:
 * tag hashes to accept (NULL = every tag). ranges must hold max_msgs entries; the
 * reference's batch limits (32 messages / 256 KiB in memory, 8 / 64 KiB on disk)
 * apply. Reads only the consume queue: the records are the caller's to send.
 */
void rmq_store_get(const struct rmq_store *s, const char *topic, uint32_t topic_len,
                   int32_t queue_id, int64_t offset, uint32_t max_msgs, const int32_t *codes,
                   uint32_t code_count, struct rmq_store_range *ranges,
                   struct rmq_get_result *out);

/* Whether the record at log offset phys lies within the hot-data window
 * (accessMessageInMemoryMaxRatio of RAM behind the written end). */
bool rmq_store_in_memory(const struct rmq_store *s, uint64_t phys);

/* Entry qoff of (topic, queue_id): 0, or -ENOENT when not readable (unknown queue,
 * outside [min, max), or its file gone). Delay scheduling reads delivery times here. */
int rmq_store_queue_entry(const struct rmq_store *s, const char *topic, uint32_t topic_len,
                          int32_t queue_id, int64_t qoff, struct rmq_cq_entry *out);

/* messageDelayLevel text ("1s 5s 10s 30s 1m ... 2h"; units ms s m h d) into ms per level.
 * The level count, or -EINVAL when a level is malformed or there are more than
 * RMQ_DELAY_LEVELS_MAX. */
int rmq_store_parse_delay_levels(const char *text, int64_t *ms, uint32_t max);

/* First queue offset still readable, or -1 for an unknown queue. */
int64_t rmq_store_queue_min(const struct rmq_store *s, const char *topic, uint32_t topic_len,
                            int32_t queue_id);
/* Queue offset whose store time is closest to ts_ms (exact hit or nearer neighbour);
 * 0 for an unknown or empty queue. Reads records: control path. */
int64_t rmq_store_queue_offset_by_time(struct rmq_store *s, const char *topic,
                                       uint32_t topic_len, int32_t queue_id, int64_t ts_ms);
/* Store time of the message at the queue's min offset, or -1. Reads one record. */
int64_t rmq_store_queue_earliest_time(struct rmq_store *s, const char *topic,
                                      uint32_t topic_len, int32_t queue_id);
/* Store time of the first record in the log, or -1 when it is empty. */
int64_t rmq_store_earliest_time(struct rmq_store *s);
/* Lowest log offset still on disk (start of the first segment). */
uint64_t rmq_store_min_off(const struct rmq_store *s);

/* One record met by rmq_store_walk: decoded (rec->phys_off is where it lies) and its
 * raw bytes, both valid during the call only. Non-zero stops the walk (< 0: an error
 * the walk returns). */
typedef int (*rmq_store_walk_fn)(void *ctx, const struct rmq_record *rec, const uint8_t *raw,
                                 uint32_t size);
/*
 * Visit the records from `from` up to written_off in log order, in place (no copy).
 * from must be a record boundary: a value written_off had, a record's phys_off or
 * a segment start; below the log start it starts there. 0, fn's error, or -EBADMSG
 * when something other than a record lies where one must (logged). Control path.
 */
int rmq_store_walk(struct rmq_store *s, uint64_t from, rmq_store_walk_fn fn, void *ctx);

/* The owner needs nothing below phys any more (the timer log's delivered messages):
 * segments wholly below it go at the next retention steps, whatever their age and
 * deleteWhen. The current segment and unflushed ones stay, as always. */
void rmq_store_release_below(struct rmq_store *s, uint64_t phys);

#endif
