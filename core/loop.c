/*
 * The io_uring engine: one ring per thread, ops embedded in their owners, one
 * io_uring_enter per iteration. See loop.h for the iteration order and contracts.
 *
 * Why this shape: handlers that only prepare SQEs let one enter carry a whole
 * iteration's work (the bench reports enters per request: with 64 requests in
 * flight it falls well below one). DEFER_TASKRUN keeps completion work on this
 * thread and runs it only when we enter, so there are no surprise interrupts of the
 * loop; where the kernel lacks it, COOP_TASKRUN avoids IPIs. The nearest timer
 * becomes the enter's own timeout (IORING_FEAT_EXT_ARG), so timers cost no SQE.
 */
#include "core/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/util.h"

#define UD_WAKE 1u                  /* MSG_RING wake-up: no op behind it */
#define UD_PTR_MASK ((UINT64_C(1) << 48) - 1)
#define REAP_BATCH 256
#define WAIT_MAX_NS (3600ull * 1000000000u)

static _Thread_local struct rmq_loop *current_loop;

struct rmq_loop *
rmq_loop_current(void)
{
    return current_loop;
}

/* ---- ops --------------------------------------------------------------- */

void
rmq_op_init(struct rmq_op *op, rmq_op_fn done)
{
    memset(op, 0, sizeof(*op));
    op->done = done;
    rmq_list_init(&op->link);
}

void
rmq_op_reset(struct rmq_op *op)
{
    RMQ_ASSERT(!op->overflowed);
    op->gen++;
    op->in_flight = 0;
}

static uint64_t
op_user_data(const struct rmq_op *op)
{
    uint64_t p = (uint64_t)(uintptr_t)op;

    RMQ_ASSERT((p & ~UD_PTR_MASK) == 0);   /* user space stays below 2^48 */
    RMQ_ASSERT(p > UD_WAKE);
    return (uint64_t)op->gen << 48 | p;
}

struct io_uring_sqe *
rmq_loop_sqe(struct rmq_loop *l, struct rmq_op *op)
{
    struct io_uring_sqe *sqe = NULL;

    RMQ_ASSERT(!op->overflowed);
    /* Anything already parked goes first, so SQEs reach the kernel in order. */
    if (rmq_list_is_empty(&l->overflow)) {
        sqe = io_uring_get_sqe(&l->ring);
    }
    if (sqe == NULL) {
        memset(&op->sqe, 0, sizeof(op->sqe));
        sqe = &op->sqe;
    }
    return sqe;
}

void
rmq_loop_commit(struct rmq_loop *l, struct rmq_op *op, struct io_uring_sqe *sqe)
{
    io_uring_sqe_set_data64(sqe, op_user_data(op));
    op->in_flight++;
    if (sqe == &op->sqe) {
        op->overflowed = 1;
        rmq_list_add_tail(&l->overflow, &op->link);
        l->stats.overflow_pushes++;
    }
}

struct io_uring_sqe *
rmq_loop_sqe_nocqe(struct rmq_loop *l)
{
    struct io_uring_sqe *sqe;

    if (!rmq_list_is_empty(&l->overflow)) {
        return NULL;
    }
    sqe = io_uring_get_sqe(&l->ring);
    if (sqe != NULL) {
        io_uring_prep_nop(sqe);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(sqe, 0);
    }
    return sqe;
}

/* Make room in the SQ by submitting what is queued: only when a slot is a must. */
static struct io_uring_sqe *
sqe_must(struct rmq_loop *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

    while (sqe == NULL) {
        int ret = io_uring_submit(&l->ring);

        l->stats.enters++;
        if (ret > 0) {
            l->stats.sqes += (uint64_t)ret;
        }
        sqe = io_uring_get_sqe(&l->ring);
    }
    return sqe;
}

/*
 * Move parked SQEs into the SQ, in order. With force (a cancel must follow what it
 * cancels) make room by submitting; otherwise what does not fit waits a turn.
 */
static void
overflow_drain(struct rmq_loop *l, bool force)
{
    while (!rmq_list_is_empty(&l->overflow)) {
        struct io_uring_sqe *sqe = force ? sqe_must(l) : io_uring_get_sqe(&l->ring);
        struct rmq_op *op;

        if (sqe == NULL) {
            return;
        }
        op = rmq_container_of(rmq_list_pop(&l->overflow), struct rmq_op, link);
        *sqe = op->sqe;
        op->overflowed = 0;
    }
}

void
rmq_loop_cancel(struct rmq_loop *l, struct rmq_op *op)
{
    struct io_uring_sqe *sqe;
    uint64_t ud = op_user_data(op);

    if (op->overflowed) {
        /* Never reached the kernel: complete it as cancelled next dispatch. */
        rmq_list_del(&op->link);
        op->overflowed = 0;
        rmq_list_add_tail(&l->cancelled, &op->link);
        return;
    }
    if (op->in_flight == 0) {
        return;
    }
    overflow_drain(l, true);
    sqe = sqe_must(l);
    io_uring_prep_cancel64(sqe, ud, IORING_ASYNC_CANCEL_ALL);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
}

/* ---- timers: 1-based binary min-heap of pointers --------------------------- */

static void
heap_swap(struct rmq_loop *l, uint32_t a, uint32_t b)
{
    struct rmq_timer *t = l->heap[a];

    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->heap_idx = a;
    l->heap[b]->heap_idx = b;
}

static void
heap_up(struct rmq_loop *l, uint32_t i)
{
    while (i > 1 && l->heap[i]->deadline_ns < l->heap[i / 2]->deadline_ns) {
        heap_swap(l, i, i / 2);
        i /= 2;
    }
}

static void
heap_down(struct rmq_loop *l, uint32_t i)
{
    for (;;) {
        uint32_t c = 2 * i;

        if (c > l->heap_len) {
            return;
        }
        if (c + 1 <= l->heap_len && l->heap[c + 1]->deadline_ns < l->heap[c]->deadline_ns) {
            c++;
        }
        if (l->heap[i]->deadline_ns <= l->heap[c]->deadline_ns) {
            return;
        }
        heap_swap(l, i, c);
        i = c;
    }
}

void
rmq_loop_update_time(struct rmq_loop *l)
{
    l->now_ns = rmq_clock_mono_ns();
}

int
rmq_timer_arm(struct rmq_loop *l, struct rmq_timer *t, uint64_t delay_ns, rmq_timer_fn fn)
{
    if (t->heap_idx != 0) {
        rmq_timer_cancel(l, t);
    }
    if (l->heap_len == l->heap_cap) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000,
                   "loop: timer heap full loop=%s timers=%u, raise max_timers", l->name,
                   l->heap_cap);
        return -ENOBUFS;
    }
    t->fn = fn;
    t->deadline_ns = l->now_ns + delay_ns;
    l->heap[++l->heap_len] = t;
    t->heap_idx = l->heap_len;
    heap_up(l, t->heap_idx);
    return 0;
}

void
rmq_timer_cancel(struct rmq_loop *l, struct rmq_timer *t)
{
    uint32_t i = t->heap_idx;

    if (i == 0) {
        return;
    }
    RMQ_ASSERT(i <= l->heap_len && l->heap[i] == t);
    t->heap_idx = 0;
    if (i != l->heap_len) {
        struct rmq_timer *moved = l->heap[l->heap_len];

        l->heap[i] = moved;
        moved->heap_idx = i;
        l->heap_len--;
        heap_up(l, i);
        heap_down(l, moved->heap_idx);
    } else {
        l->heap_len--;
    }
}

static void
timers_run(struct rmq_loop *l)
{
    while (l->heap_len > 0 && l->heap[1]->deadline_ns <= l->now_ns) {
        struct rmq_timer *t = l->heap[1];

        rmq_timer_cancel(l, t);
        l->stats.timers_fired++;
        t->fn(t);
    }
}

void
rmq_loop_inject(struct rmq_loop *l, struct rmq_op *op, uint32_t nth, int32_t res)
{
    RMQ_ASSERT(nth > 0);
    l->inject_op = op;
    l->inject_countdown = nth;
    l->inject_res = res;
}

/* ---- deferred callbacks and cross-loop messages ------------------------------ */

void
rmq_loop_defer(struct rmq_loop *l, struct rmq_deferred *d)
{
    if (!rmq_link_is_linked(&d->link)) {
        rmq_list_add_tail(&l->deferred, &d->link);
    }
}

static void
deferred_run(struct rmq_loop *l)
{
    struct rmq_link *n;

    /* Callbacks may defer more work; it runs in this same pass. */
    while ((n = rmq_list_pop(&l->deferred)) != NULL) {
        struct rmq_deferred *d = rmq_container_of(n, struct rmq_deferred, link);

        d->fn(d);
    }
}

static void
wake_arm(struct rmq_loop *l)
{
    struct io_uring_sqe *sqe = rmq_loop_sqe(l, &l->wake_op);

    io_uring_prep_read(sqe, l->wake_fd, &l->wake_val, sizeof(l->wake_val), 0);
    rmq_loop_commit(l, &l->wake_op, sqe);
}

static void
wake_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_loop *l = rmq_container_of(op, struct rmq_loop, wake_op);

    (void)flags;
    if (res == -ECANCELED || atomic_load(&l->stop)) {
        return;
    }
    wake_arm(l);        /* the inbox itself is drained every iteration */
}

void
rmq_loop_post(struct rmq_loop *target, struct rmq_loop_msg *m)
{
    struct rmq_loop_msg *head = atomic_load_explicit(&target->inbox, memory_order_relaxed);
    struct rmq_loop *cur;
    struct io_uring_sqe *sqe;
    uint64_t one = 1;

    do {
        m->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&target->inbox, &head, m,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    if (head != NULL) {
        return;         /* a wake-up is already on its way */
    }
    cur = current_loop;
    if (cur == target) {
        return;         /* drained before this loop next waits */
    }
    /* MSG_RING rides cur's next submit: only sure to come soon inside an iteration. */
    if (cur != NULL && cur->has_msg_ring && cur->in_iteration) {
        sqe = rmq_loop_sqe_nocqe(cur);
        if (sqe != NULL) {
            io_uring_prep_msg_ring(sqe, (int)target->ring.ring_fd, 0, UD_WAKE, 0);
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            io_uring_sqe_set_data64(sqe, 0);
            return;
        }
    }
    if (write(target->wake_fd, &one, sizeof(one)) < 0) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "loop: eventfd wake failed loop=%s err=%s",
                   target->name, strerror(errno));
    }
}

static void
inbox_drain(struct rmq_loop *l)
{
    struct rmq_loop_msg *m = atomic_exchange_explicit(&l->inbox, NULL, memory_order_acquire);
    struct rmq_loop_msg *fifo = NULL;

    while (m != NULL) {             /* the stack is LIFO: reverse to posting order */
        struct rmq_loop_msg *next = m->next;

        m->next = fifo;
        fifo = m;
        m = next;
    }
    while (fifo != NULL) {
        struct rmq_loop_msg *next = fifo->next;

        l->stats.msgs++;
        fifo->fn(fifo);
        fifo = next;
    }
}

/* ---- log buffer through the ring ------------------------------------------- */

static void log_done(struct rmq_op *op, int32_t res, uint32_t flags);

static void
log_flush(struct rmq_loop *l)
{
    struct io_uring_sqe *sqe;
    int half;

    if (l->log_writing >= 0 || l->log_sink.len == 0) {
        return;
    }
    half = l->log_sink.buf == l->log_bufs[0] ? 0 : 1;
    sqe = rmq_loop_sqe(l, &l->log_op);
    io_uring_prep_write(sqe, rmq_log_fd(), l->log_bufs[half], (unsigned)l->log_sink.len,
                        (uint64_t)-1);
    rmq_loop_commit(l, &l->log_op, sqe);
    l->log_writing = half;
    l->log_len = (uint32_t)l->log_sink.len;
    l->log_sink.buf = l->log_bufs[half ^ 1];
    l->log_sink.len = 0;
}

static void
log_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct rmq_loop *l = rmq_container_of(op, struct rmq_loop, log_op);
    uint32_t len = l->log_len;
    char *buf = l->log_bufs[l->log_writing];

    (void)flags;
    /* A short write continues synchronously: rare, and losing log lines is worse. */
    if (res > 0 && (uint32_t)res < len) {
        ssize_t n = write(rmq_log_fd(), buf + res, len - (uint32_t)res);

        (void)n;
    }
    l->log_writing = -1;
}

/*
 * At fini a log write still in flight would die with the ring (a write to a regular
 * file is punted to io-wq and cancelled), and with it the last lines, often the one
 * saying why the process stops. Wait for it, bounded; other completions are dropped
 * as closing the ring would drop them.
 */
static void
log_drain(struct rmq_loop *l)
{
    uint64_t ud = op_user_data(&l->log_op);

    if (l->log_writing >= 0 && l->log_op.overflowed) {      /* never reached the kernel */
        ssize_t n = write(rmq_log_fd(), l->log_bufs[l->log_writing], l->log_len);

        (void)n;
        l->log_writing = -1;
    }
    for (int tries = 0; l->log_writing >= 0 && tries < 20; tries++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
        struct io_uring_cqe *cqe;
        unsigned head;
        unsigned seen = 0;

        (void)io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
        io_uring_for_each_cqe(&l->ring, head, cqe) {
            if (cqe->user_data == ud) {
                log_done(&l->log_op, cqe->res, cqe->flags);
            }
            seen++;
        }
        io_uring_cq_advance(&l->ring, seen);
    }
}

/* ---- init / fini ------------------------------------------------------------ */

static int
ring_setup(struct rmq_loop *l, uint32_t sq, uint32_t cq)
{
    static const uint32_t attempts[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;

    for (size_t i = 0; i < RMQ_ARRAY_LEN(attempts); i++) {
        struct io_uring_params p;

        memset(&p, 0, sizeof(p));
        p.flags = attempts[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = cq;
        ret = io_uring_queue_init_params(sq, &l->ring, &p);
        if (ret == 0) {
            l->setup_flags = p.flags;
            if (!(p.features & IORING_FEAT_EXT_ARG)) {
                io_uring_queue_exit(&l->ring);
                return -EOPNOTSUPP;
            }
            return 0;
        }
        if (ret != -EINVAL) {
            break;          /* EPERM, ENOMEM, ENOSYS: another flag set will not help */
        }
    }
    return ret;
}

static void
log_setup_failure(int ret)
{
    char disabled[8] = "?";
    int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        ssize_t n = read(fd, disabled, sizeof(disabled) - 1);

        disabled[n > 0 ? n : 0] = '\0';
        disabled[strcspn(disabled, "\n")] = '\0';
        close(fd);
    }
    if (ret == -EOPNOTSUPP) {
        RMQ_ERROR("loop: io_uring lacks IORING_FEAT_EXT_ARG (needs Linux >= 5.11), "
                  "cannot start; upgrade the kernel");
    } else if (ret == -EPERM || ret == -ENOSYS) {
        RMQ_ERROR("loop: io_uring_setup failed err=%s kernel.io_uring_disabled=%s, cannot "
                  "start; likely cause: io_uring disabled by sysctl (set "
                  "kernel.io_uring_disabled=0) or blocked by a seccomp profile (containers: "
                  "allow io_uring_setup/io_uring_enter/io_uring_register)",
                  strerror(-ret), disabled);
    } else if (ret == -ENOMEM) {
        RMQ_ERROR("loop: io_uring_setup failed err=ENOMEM, cannot start; likely cause: "
                  "RLIMIT_MEMLOCK too low on a kernel older than 5.12 (ulimit -l unlimited, "
                  "or LimitMEMLOCK=infinity in the service unit), or fewer sq_entries");
    } else {
        RMQ_ERROR("loop: io_uring_setup failed err=%s, cannot start", strerror(-ret));
    }
}

int
rmq_loop_init(struct rmq_loop *l, const struct rmq_loop_config *cfg)
{
    static const struct { int op; const char *name; } needed[] = {
        {IORING_OP_ACCEPT, "accept"}, {IORING_OP_RECV, "recv"}, {IORING_OP_SEND, "send"},
        {IORING_OP_SENDMSG, "sendmsg"}, {IORING_OP_WRITEV, "writev"},
        {IORING_OP_READ, "read"}, {IORING_OP_WRITE, "write"}, {IORING_OP_FSYNC, "fsync"},
        {IORING_OP_FALLOCATE, "fallocate"}, {IORING_OP_SPLICE, "splice"},
        {IORING_OP_ASYNC_CANCEL, "async_cancel"}, {IORING_OP_CLOSE, "close"},
        {IORING_OP_CONNECT, "connect"}, {IORING_OP_PROVIDE_BUFFERS, "provide_buffers"},
    };
    struct rmq_loop_config def = {0};
    struct io_uring_probe *probe;
    uint32_t sq, cq;
    int ret;

    if (cfg == NULL) {
        cfg = &def;
    }
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", cfg->name ? cfg->name : "main");
    sq = cfg->sq_entries ? cfg->sq_entries : 1024;
    cq = cfg->cq_entries ? cfg->cq_entries : 4 * sq;
    l->heap_cap = cfg->max_timers ? cfg->max_timers : 65536;
    rmq_list_init(&l->overflow);
    rmq_list_init(&l->deferred);
    rmq_list_init(&l->cancelled);
    l->log_writing = -1;
    l->wake_fd = -1;

    ret = ring_setup(l, sq, cq);
    if (ret < 0) {
        log_setup_failure(ret);
        return ret;
    }
    probe = io_uring_get_probe_ring(&l->ring);
    if (probe == NULL) {
        ret = -ENOMEM;
        goto out_ring;
    }
    for (size_t i = 0; i < RMQ_ARRAY_LEN(needed); i++) {
        if (!io_uring_opcode_supported(probe, needed[i].op)) {
            RMQ_ERROR("loop: io_uring op %s not supported by this kernel, cannot start",
                      needed[i].name);
            io_uring_free_probe(probe);
            ret = -EOPNOTSUPP;
            goto out_ring;
        }
    }
    l->has_msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    io_uring_free_probe(probe);
    l->ring_fd_registered = io_uring_register_ring_fd(&l->ring) == 1;

    l->heap = calloc((size_t)l->heap_cap + 1, sizeof(*l->heap));
    l->log_bufs[0] = malloc(cfg->log_buf_size ? cfg->log_buf_size : 65536);
    l->log_bufs[1] = malloc(cfg->log_buf_size ? cfg->log_buf_size : 65536);
    if (l->heap == NULL || l->log_bufs[0] == NULL || l->log_bufs[1] == NULL) {
        ret = -ENOMEM;
        goto out_mem;
    }
    l->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (l->wake_fd < 0) {
        ret = -errno;
        RMQ_ERROR("loop: eventfd failed err=%s, cannot start", strerror(errno));
        goto out_mem;
    }
    rmq_op_init(&l->wake_op, wake_done);
    rmq_op_init(&l->log_op, log_done);
    l->log_sink.buf = l->log_bufs[0];
    l->log_sink.cap = cfg->log_buf_size ? cfg->log_buf_size : 65536;
    l->now_ns = rmq_clock_mono_ns();
    current_loop = l;
    wake_arm(l);

    RMQ_INFO("loop: ring ready loop=%s sq=%u cq=%u single_issuer=%s defer_taskrun=%s "
             "coop_taskrun=%s registered_ring_fd=%s msg_ring=%s ext_arg=yes",
             l->name, l->ring.sq.ring_entries, l->ring.cq.ring_entries,
             (l->setup_flags & IORING_SETUP_SINGLE_ISSUER) ? "yes" : "no",
             (l->setup_flags & IORING_SETUP_DEFER_TASKRUN) ? "yes" : "no",
             (l->setup_flags & IORING_SETUP_COOP_TASKRUN) ? "yes" : "no",
             l->ring_fd_registered ? "yes" : "no", l->has_msg_ring ? "yes" : "no");
    rmq_log_sink_install(&l->log_sink);
    return 0;

out_mem:
    free(l->heap);
    free(l->log_bufs[0]);
    free(l->log_bufs[1]);
out_ring:
    io_uring_queue_exit(&l->ring);
    return ret;
}

void
rmq_loop_fini(struct rmq_loop *l)
{
    rmq_log_sink_install(NULL);
    log_drain(l);
    /* Closing the ring cancels the wake-up read. */
    io_uring_queue_exit(&l->ring);
    if (l->log_sink.len > 0) {
        ssize_t n = write(rmq_log_fd(), l->log_sink.buf, l->log_sink.len);

        (void)n;
    }
    if (l->wake_fd >= 0) {
        close(l->wake_fd);
    }
    free(l->heap);
    free(l->log_bufs[0]);
    free(l->log_bufs[1]);
    if (current_loop == l) {
        current_loop = NULL;
    }
}

void
rmq_loop_stop(struct rmq_loop *l)
{
    uint64_t one = 1;

    atomic_store(&l->stop, true);
    if (current_loop != l && write(l->wake_fd, &one, sizeof(one)) < 0) {
        RMQ_ERROR("loop: stop wake-up failed loop=%s err=%s", l->name, strerror(errno));
    }
}

/* ---- the iteration ------------------------------------------------------------ */

struct cqe_copy {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

static void
dispatch(struct rmq_loop *l, const struct cqe_copy *c)
{
    struct rmq_op *op;

    if (c->user_data == 0) {
        /* A fire-and-forget SQE failed: a cancel that found nothing is normal. */
        if (c->res != -ENOENT && c->res != -EALREADY) {
            RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "loop: untracked op failed loop=%s err=%s",
                       l->name, strerror(-c->res));
        }
        return;
    }
    if (c->user_data == UD_WAKE) {
        return;
    }
    op = (struct rmq_op *)(uintptr_t)(c->user_data & UD_PTR_MASK);
    if ((uint16_t)(c->user_data >> 48) != op->gen) {
        l->stats.stale_cqes++;
        return;
    }
    if (!(c->flags & IORING_CQE_F_MORE)) {
        RMQ_ASSERT(op->in_flight > 0);
        op->in_flight--;
    }
    if (RMQ_UNLIKELY(op == l->inject_op) && --l->inject_countdown == 0) {
        l->inject_op = NULL;
        op->done(op, l->inject_res, c->flags);
        return;
    }
    op->done(op, c->res, c->flags);
}

static unsigned
reap(struct rmq_loop *l)
{
    struct cqe_copy batch[REAP_BATCH];
    unsigned total = 0;

    for (;;) {
        struct io_uring_cqe *cqe;
        unsigned head;
        unsigned n = 0;

        io_uring_for_each_cqe(&l->ring, head, cqe) {
            batch[n].user_data = cqe->user_data;
            batch[n].res = cqe->res;
            batch[n].flags = cqe->flags;
            if (++n == REAP_BATCH) {
                break;
            }
        }
        if (n == 0) {
            break;
        }
        io_uring_cq_advance(&l->ring, n);
        l->stats.cqes += n;
        total += n;
        /* Callbacks run after the CQ head moved, never inside the CQ walk. */
        for (unsigned i = 0; i < n; i++) {
            dispatch(l, &batch[i]);
        }
        if (n < REAP_BATCH) {
            break;
        }
    }
    return total;
}

static void
synth_run(struct rmq_loop *l)
{
    struct rmq_link *n;

    while ((n = rmq_list_pop(&l->cancelled)) != NULL) {
        struct rmq_op *op = rmq_container_of(n, struct rmq_op, link);

        op->in_flight--;
        op->done(op, -ECANCELED, 0);
    }
}

int
rmq_loop_run_once(struct rmq_loop *l, uint64_t timeout_ns)
{
    struct io_uring_cqe *cqe;
    unsigned queued;
    bool busy;
    int ret;

    /* now_ns was read once, right after the previous wait (or at init). */
    l->stats.iterations++;
    l->in_iteration = true;
    timers_run(l);
    inbox_drain(l);
    deferred_run(l);
    synth_run(l);
    overflow_drain(l, false);
    log_flush(l);

    l->stats.cq_overflow = *l->ring.cq.koverflow;
    busy = !rmq_list_is_empty(&l->deferred) ||
           atomic_load_explicit(&l->inbox, memory_order_relaxed) != NULL ||
           !rmq_list_is_empty(&l->cancelled) || io_uring_cq_ready(&l->ring) > 0 ||
           timeout_ns == 0 || atomic_load_explicit(&l->stop, memory_order_relaxed);
    queued = io_uring_sq_ready(&l->ring);
    if (busy) {
        /* DEFER_TASKRUN posts completions only when we enter with GETEVENTS. */
        if (queued > 0 || (l->setup_flags & IORING_SETUP_DEFER_TASKRUN)) {
            ret = io_uring_submit_and_get_events(&l->ring);
            l->stats.enters++;
        } else {
            ret = 0;
        }
        ret = ret < 0 ? ret : 0;
    } else {
        struct __kernel_timespec ts;
        uint64_t wait_ns = RMQ_MIN(timeout_ns, WAIT_MAX_NS);

        if (l->heap_len > 0) {
            uint64_t due = l->heap[1]->deadline_ns;

            wait_ns = due <= l->now_ns ? 0 : RMQ_MIN(wait_ns, due - l->now_ns);
        }
        ts.tv_sec = (long long)(wait_ns / 1000000000u);
        ts.tv_nsec = (long long)(wait_ns % 1000000000u);
        /* Always pass a timeout: it keeps liburing on the single-enter EXT_ARG path. */
        ret = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
        l->stats.enters++;
    }
    if (ret >= 0 || ret == -ETIME) {
        l->stats.sqes += queued;
    } else if (ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        RMQ_ERROR("loop: io_uring_enter failed loop=%s err=%s", l->name, strerror(-ret));
        l->in_iteration = false;
        return ret;
    }
    l->now_ns = rmq_clock_mono_ns();
    reap(l);
    synth_run(l);
    l->in_iteration = false;
    return 0;
}

int
rmq_loop_run(struct rmq_loop *l)
{
    int ret = 0;

    current_loop = l;
    rmq_log_sink_install(&l->log_sink);
    while (!atomic_load(&l->stop)) {
        ret = rmq_loop_run_once(l, UINT64_MAX);
        if (ret < 0) {
            break;
        }
    }
    atomic_store(&l->stop, false);
    return ret;
}
