/*
 * The store's only way to the disk: a small table of operations on commitlog
 * segments, one call per batch. The real table (disk_uring.c) puts every call on the
 * store loop's io_uring; tests plug in a fake that keeps unsynced writes apart so a
 * simulated crash can drop, tear or garble them (SQLite's test6.c idea).
 *
 * Segments are addressed by handle (index into the disk's table) and byte offset
 * within the segment. Asynchronous calls complete through req->done exactly once,
 * never inline; res is bytes transferred, 0, or -errno. The synchronous calls
 * (open_existing, read, zero_tail, list) are for start-up recovery only.
 */
#ifndef RMQ_STORE_DISK_H
#define RMQ_STORE_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/list.h"
#include "core/loop.h"

#define RMQ_DISK_MAX_SEGS 4096

struct rmq_disk;
struct rmq_disk_req;

typedef void (*rmq_disk_fn)(struct rmq_disk_req *req, int32_t res);

struct rmq_disk_req {
    rmq_disk_fn done;
    struct rmq_op op;               /* used by the io_uring table */
    struct rmq_link link;           /* used by the fake */
    struct rmq_disk *disk;          /* io_uring table: where a writev went */
    struct rmq_deferred deferred;   /* io_uring table: a copied write's completion */
    int32_t res;                    /* fake, mmap writes: result to deliver */
    bool more;                      /* writev: the caller has more writes to issue now */
};

struct rmq_disk_ops {
    /* Segment starting at log offset start: create (size bytes, preallocated and
     * pre-written with zeros) or open; req->res / done res = handle (>= 0) or -errno. */
    void (*prepare)(struct rmq_disk *d, uint64_t start, uint64_t size, struct rmq_disk_req *req);
    /* Optional: stop the preparation in flight at its next step (closing: a fresh 1 GiB
     * segment takes seconds to pre-write); it completes with -ECANCELED, its file gone. */
    void (*prepare_cancel)(struct rmq_disk *d);
    /* Optional: pre-write the segment in preparation up to target (bytes into it) plus a
     * lead; without a call it stops at the lead. UINT64_MAX: all of it, now. */
    void (*prepare_advance)(struct rmq_disk *d, uint64_t target);
    void (*writev)(struct rmq_disk *d, int h, uint64_t off, const struct iovec *iov, int cnt,
                   struct rmq_disk_req *req);
    /* fdatasync of one segment. */
    void (*sync)(struct rmq_disk *d, int h, struct rmq_disk_req *req);
    /* Start offsets of existing segments, ascending; returns the count or -errno. */
    int (*list)(struct rmq_disk *d, uint64_t *starts, int max);
    int (*open_existing)(struct rmq_disk *d, uint64_t start, uint64_t size);  /* handle */
    ssize_t (*read)(struct rmq_disk *d, int h, uint64_t off, void *buf, size_t len);
    /* Zero [off, end of segment): the torn tail found by recovery. Synced. */
    int (*zero_tail)(struct rmq_disk *d, int h, uint64_t off, uint64_t size);
    void (*close)(struct rmq_disk *d, int h);
    /* Delete a segment: close its handle and remove the file (one at a time). */
    void (*remove)(struct rmq_disk *d, int h, struct rmq_disk_req *req);
    /* Optional: give segment h the name of another start offset (an empty log moving
     * to where its master's log is; one at a time). */
    void (*rename)(struct rmq_disk *d, int h, uint64_t new_start, struct rmq_disk_req *req);
    /* Read-only shared mapping of a whole segment (readers' zero-copy view), NULL with
     * errno set on failure; unmap takes it back. Mappings outlive close and remove. */
    const uint8_t *(*map)(struct rmq_disk *d, int h, uint64_t size);
    void (*unmap)(struct rmq_disk *d, const uint8_t *p, uint64_t size);
    /* A read-only descriptor of the segment for splicing (the caller closes it), or -1
     * (optional op: NULL means none). */
    int (*file_fd)(struct rmq_disk *d, int h);
    /* Size and free bytes of the segments' filesystem (statfs: no I/O). */
    int (*space)(struct rmq_disk *d, uint64_t *total, uint64_t *avail);
};

struct rmq_disk {
    const struct rmq_disk_ops *ops;
    struct rmq_loop *loop;          /* borrowed: completions run here */
};

/* io_uring-backed disk on commitlog files under dir (owned copy of the path). */
struct rmq_disk *rmq_disk_uring_create(struct rmq_loop *loop, const char *dir);
void rmq_disk_uring_destroy(struct rmq_disk *d);

/* How writev reaches the page cache (commitLogWriteMode). MMAP: copied into a
 * writable shared mapping of the segment on the loop's thread, completed by a deferred
 * callback (no worker thread, no wake-ups). WRITEV: an io_uring writev from the
 * callers' buffers (on ext4 a worker thread's write: the copy runs beside the loop,
 * after a wake-up). AUTO, the default: copied while no writev is in flight, except a
 * write of 128 KiB or more with req->more set, which goes to the worker. See
 * store/commitlog.c's header for the measurements behind it. */
enum { RMQ_DISK_WRITE_MMAP = 0, RMQ_DISK_WRITE_WRITEV = 1, RMQ_DISK_WRITE_AUTO = 2 };
void rmq_disk_uring_set_write_mode(struct rmq_disk *d, int mode);
/* Writes so far by the way they took: copied on the loop's thread, or handed to a worker. */
void rmq_disk_uring_write_counts(const struct rmq_disk *d, uint64_t *copied,
                                 uint64_t *to_worker);
/* Zeros written so far into the segment being prepared (0 when none is). */
uint64_t rmq_disk_uring_prep_progress(const struct rmq_disk *d);

/* 20-digit zero-padded segment name for a start offset. */
void rmq_disk_seg_name(char out[21], uint64_t start);

#endif
