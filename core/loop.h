/*
 * rmq_loop: one thread, one io_uring ring. Everything that can block is an SQE on a
 * loop's ring; handlers only prepare SQEs and the loop submits once per iteration,
 * so one io_uring_enter carries every SQE of that iteration and waits for the next
 * completions (DESIGN.md §3, STYLE.md §9).
 *
 * Ops: a struct rmq_op is embedded in its owner (connection, timer-less waiter, ...).
 * user_data carries the op's address and its 16-bit generation; a completion whose
 * generation no longer matches (the owner reset the op with rmq_op_reset) is
 * dropped and counted. Getting an SQE never fails: when the SQ is full the op's own
 * embedded SQE is used and the op waits on the overflow list, which is drained, in
 * order, before anything new next iteration.
 *
 * Iteration: run due timers → drain posted messages → run deferred callbacks → move
 * overflowed SQEs into the SQ → flush the log buffer → one io_uring_enter (submit +
 * wait with the nearest timer deadline) → read the clock once (loop->now_ns) → copy
 * all ready CQEs out, advance the CQ once, then dispatch them. Timers of the next
 * iteration compare against that same reading: dispatch is short by design.
 *
 * Threading: every function here runs on the loop's thread, except rmq_loop_post
 * and rmq_loop_stop which may be called from any thread.
 */
#ifndef RMQ_CORE_LOOP_H
#define RMQ_CORE_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

#include "core/list.h"
#include "core/log.h"

struct rmq_loop;
struct rmq_op;

/* res is the CQE's res; cqe_flags its flags (IORING_CQE_F_MORE, F_BUFFER, ...). */
typedef void (*rmq_op_fn)(struct rmq_op *op, int32_t res, uint32_t cqe_flags);

struct rmq_op {
    rmq_op_fn done;
    uint16_t gen;                   /* current generation; stale CQEs carry an older one */
    uint16_t in_flight;             /* SQEs of this op not yet finally completed */
    uint8_t overflowed;             /* sqe below is queued on the loop's overflow list */
    struct rmq_link link;           /* overflow list */
    struct io_uring_sqe sqe;        /* staging copy when the SQ was full */
};

struct rmq_timer;
typedef void (*rmq_timer_fn)(struct rmq_timer *t);

struct rmq_timer {
    uint64_t deadline_ns;           /* on loop->now_ns's clock */
    uint32_t heap_idx;              /* 0 = not armed; else 1-based heap position */
    rmq_timer_fn fn;
};

/* Deferred callback: runs once, on the loop, just before the next submit. */
struct rmq_deferred {
    struct rmq_link link;
    void (*fn)(struct rmq_deferred *d);
};

/* Cross-thread message; delivered on the target loop in the order posted per sender. */
struct rmq_loop_msg {
    struct rmq_loop_msg *next;      /* inbox stack link, owned by the loop while queued */
    void (*fn)(struct rmq_loop_msg *m);
};

struct rmq_loop_stats {
    uint64_t enters;                /* io_uring_enter calls (submit and/or wait) */
    uint64_t sqes;                  /* SQEs submitted */
    uint64_t cqes;                  /* CQEs reaped */
    uint64_t overflow_pushes;       /* ops parked because the SQ was full */
    uint64_t cq_overflow;           /* kernel-side CQ overflow count seen */
    uint64_t stale_cqes;            /* completions dropped by the generation check */
    uint64_t iterations;
    uint64_t timers_fired;
    uint64_t msgs;                  /* cross-loop messages delivered */
};

struct rmq_loop_config {
    uint32_t sq_entries;            /* default 1024 */
    uint32_t cq_entries;            /* default 4 * sq_entries */
    uint32_t max_timers;            /* armed at once; default 65536 */
    uint32_t log_buf_size;          /* per half of the double buffer; default 64 KiB */
    const char *name;               /* for log lines */
};

struct rmq_loop {
    struct io_uring ring;
    uint64_t now_ns;                /* monotonic, read once per iteration */
    struct rmq_loop_stats stats;
    uint32_t setup_flags;           /* flags the ring was created with */
    bool ring_fd_registered;
    bool has_msg_ring;
    bool in_iteration;              /* inside rmq_loop_run_once: a submit is coming */
    _Atomic bool stop;

    struct rmq_link overflow;       /* ops with a staged SQE */
    struct rmq_link deferred;       /* rmq_deferred to run before submit */
    struct rmq_link cancelled;      /* ops cancelled before reaching the kernel */

    struct rmq_timer **heap;        /* owned; 1-based min-heap by deadline */
    uint32_t heap_len;
    uint32_t heap_cap;

    _Atomic(struct rmq_loop_msg *) inbox;  /* MPSC stack, reversed on drain */
    int wake_fd;                    /* eventfd for wake-ups from non-loop threads */
    uint64_t wake_val;
    struct rmq_op wake_op;

    struct rmq_log_sink log_sink;
    char *log_bufs[2];              /* owned; one filling, one being written */
    int log_writing;                /* index of the half in flight, or -1 */
    uint32_t log_len;               /* bytes of that half being written */
    struct rmq_op log_op;

    /* test hook (rmq_loop_inject): rewrite res of the Nth completion of one op */
    struct rmq_op *inject_op;
    uint32_t inject_countdown;
    int32_t inject_res;

    char name[32];
};

/*
 * Create the ring and everything sized from cfg (NULL = defaults). Probes
 * SINGLE_ISSUER, DEFER_TASKRUN / COOP_TASKRUN and the registered ring fd, and logs
 * one line listing what it found. Must be called on the thread that will run the
 * loop (SINGLE_ISSUER). -errno on failure, with one log line naming the likely
 * cause (io_uring_disabled sysctl, seccomp, RLIMIT_MEMLOCK).
 */
int rmq_loop_init(struct rmq_loop *l, const struct rmq_loop_config *cfg);
/* Tear down; every op must have completed (owners closed first). */
void rmq_loop_fini(struct rmq_loop *l);

/* Run until rmq_loop_stop. Returns 0, or -errno if io_uring_enter fails hard. */
int rmq_loop_run(struct rmq_loop *l);
/* One iteration; wait for at most timeout_ns (0 = don't wait). For tests and embedding. */
int rmq_loop_run_once(struct rmq_loop *l, uint64_t timeout_ns);
/* Any thread. The loop finishes its current iteration and rmq_loop_run returns. */
void rmq_loop_stop(struct rmq_loop *l);

/* The loop running on the calling thread, or NULL. */
struct rmq_loop *rmq_loop_current(void);

void rmq_op_init(struct rmq_op *op, rmq_op_fn done);
/* Forget in-flight completions: they will be counted stale and dropped. */
void rmq_op_reset(struct rmq_op *op);

/*
 * An SQE to prepare for op. Never fails: when the SQ is full the op's staging SQE is
 * returned and the op is parked on the overflow list. Prepare it with
 * io_uring_prep_*, then call rmq_loop_commit(l, op, sqe) before preparing another.
 */
struct io_uring_sqe *rmq_loop_sqe(struct rmq_loop *l, struct rmq_op *op);
void rmq_loop_commit(struct rmq_loop *l, struct rmq_op *op, struct io_uring_sqe *sqe);

/*
 * A fire-and-forget SQE (no completion wanted on success: IOSQE_CQE_SKIP_SUCCESS).
 * Returns NULL when the SQ is full; the caller decides what that means.
 */
struct io_uring_sqe *rmq_loop_sqe_nocqe(struct rmq_loop *l);

/* Cancel every in-flight SQE of op (ASYNC_CANCEL by user_data). Completions follow. */
void rmq_loop_cancel(struct rmq_loop *l, struct rmq_op *op);

/* Timers. Arm fails with -ENOBUFS when max_timers are armed (log names the key). */
int rmq_timer_arm(struct rmq_loop *l, struct rmq_timer *t, uint64_t delay_ns, rmq_timer_fn fn);
/* Read the clock into now_ns (libuv's uv_update_time). A loop its caller drives only
 * now and then must do this before arming timers from outside an iteration: now_ns is
 * otherwise as old as the last iteration, and a timeout armed from it fires early. */
void rmq_loop_update_time(struct rmq_loop *l);
void rmq_timer_cancel(struct rmq_loop *l, struct rmq_timer *t);
static inline bool
rmq_timer_is_armed(const struct rmq_timer *t)
{
    return t->heap_idx != 0;
}

void rmq_loop_defer(struct rmq_loop *l, struct rmq_deferred *d);

/*
 * Test hook: the nth (1-based) completion of op from now on reaches op->done with
 * res replaced by res (its flags unchanged). Drives CQE error paths on purpose.
 */
void rmq_loop_inject(struct rmq_loop *l, struct rmq_op *op, uint32_t nth, int32_t res);

/*
 * Any thread: queue m for target and wake it. From a loop thread the wake-up is an
 * IORING_OP_MSG_RING riding that loop's next submit; from other threads an eventfd
 * write. m must stay valid until m->fn runs on the target.
 */
void rmq_loop_post(struct rmq_loop *target, struct rmq_loop_msg *m);

#endif
