#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"

/* ---- timers ---------------------------------------------------------------- */

#define NTIMERS 20000

static uint64_t last_deadline;
static int fired;
static int order_violations;

static void
timer_fn(struct rmq_timer *t)
{
    if (t->deadline_ns < last_deadline) {
        order_violations++;
    }
    last_deadline = t->deadline_ns;
    fired++;
}

Test(loop_timer, many_timers_fire_in_deadline_order_and_cancel_works)
{
    struct rmq_loop_config cfg = {.max_timers = NTIMERS};
    static struct rmq_timer timers[NTIMERS];
    struct rmq_loop l;
    int cancelled = 0;

    cr_assert_eq(rmq_loop_init(&l, &cfg), 0);
    srand(1);
    for (int i = 0; i < NTIMERS; i++) {
        cr_assert_eq(rmq_timer_arm(&l, &timers[i], (uint64_t)(rand() % 20000) * 1000, timer_fn),
                     0);
    }
    for (int i = 0; i < NTIMERS; i += 3) {
        rmq_timer_cancel(&l, &timers[i]);
        cr_assert_not(rmq_timer_is_armed(&timers[i]));
        cancelled++;
    }
    while (fired < NTIMERS - cancelled) {
        cr_assert_eq(rmq_loop_run_once(&l, 50 * 1000000ull), 0);
    }
    cr_assert_eq(order_violations, 0);
    cr_assert_eq(fired, NTIMERS - cancelled);
    cr_assert_eq(l.heap_len, 0);
    rmq_loop_fini(&l);
}

Test(loop_timer, full_heap_refuses_with_enobufs)
{
    struct rmq_loop_config cfg = {.max_timers = 2};
    struct rmq_timer t[3];
    struct rmq_loop l;

    memset(t, 0, sizeof(t));
    cr_assert_eq(rmq_loop_init(&l, &cfg), 0);
    cr_assert_eq(rmq_timer_arm(&l, &t[0], 1000000000, timer_fn), 0);
    cr_assert_eq(rmq_timer_arm(&l, &t[1], 1000000000, timer_fn), 0);
    cr_assert_eq(rmq_timer_arm(&l, &t[2], 1000000000, timer_fn), -ENOBUFS);
    /* re-arming an armed timer does not take a second slot */
    cr_assert_eq(rmq_timer_arm(&l, &t[1], 5, timer_fn), 0);
    rmq_loop_fini(&l);
}

/* ---- ops, overflow list, stale completions ----------------------------------------- */

struct nop_owner {
    struct rmq_op op;
    int done;
    int32_t res;
};

static void
nop_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct nop_owner *o = rmq_container_of(op, struct nop_owner, op);

    (void)flags;
    o->done++;
    o->res = res;
}

Test(loop_ops, full_sq_parks_ops_on_overflow_and_all_complete)
{
    struct rmq_loop_config cfg = {.sq_entries = 4, .cq_entries = 256};
    static struct nop_owner owners[100];
    struct rmq_loop l;
    int total = 0;

    cr_assert_eq(rmq_loop_init(&l, &cfg), 0);
    for (int i = 0; i < 100; i++) {
        struct io_uring_sqe *sqe;

        rmq_op_init(&owners[i].op, nop_done);
        sqe = rmq_loop_sqe(&l, &owners[i].op);
        io_uring_prep_nop(sqe);
        rmq_loop_commit(&l, &owners[i].op, sqe);
    }
    cr_assert_gt(l.stats.overflow_pushes, 0);
    for (int iter = 0; iter < 1000 && total < 100; iter++) {
        cr_assert_eq(rmq_loop_run_once(&l, 10 * 1000000ull), 0);
        total = 0;
        for (int i = 0; i < 100; i++) {
            total += owners[i].done;
        }
    }
    cr_assert_eq(total, 100);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(owners[i].done, 1);
        cr_assert_eq(owners[i].op.in_flight, 0);
    }
    rmq_loop_fini(&l);
}

Test(loop_ops, stale_generation_completion_is_dropped)
{
    struct rmq_loop l;
    struct nop_owner o = {0};
    struct io_uring_sqe *sqe;

    cr_assert_eq(rmq_loop_init(&l, NULL), 0);
    rmq_op_init(&o.op, nop_done);
    sqe = rmq_loop_sqe(&l, &o.op);
    io_uring_prep_nop(sqe);
    rmq_loop_commit(&l, &o.op, sqe);
    rmq_op_reset(&o.op);            /* the owner moved on before the CQE came */
    for (int i = 0; i < 5; i++) {
        rmq_loop_run_once(&l, 1000000);
    }
    cr_assert_eq(o.done, 0);
    cr_assert_eq(l.stats.stale_cqes, 1);
    rmq_loop_fini(&l);
}

Test(loop_ops, cancel_of_parked_op_completes_it_as_cancelled)
{
    struct rmq_loop_config cfg = {.sq_entries = 1};
    struct nop_owner a = {0};
    struct nop_owner b = {0};
    struct io_uring_sqe *sqe;
    struct rmq_loop l;

    cr_assert_eq(rmq_loop_init(&l, &cfg), 0);
    rmq_loop_run_once(&l, 0);       /* flush the loop's own start-up SQE */
    rmq_op_init(&a.op, nop_done);
    rmq_op_init(&b.op, nop_done);
    sqe = rmq_loop_sqe(&l, &a.op);
    io_uring_prep_nop(sqe);
    rmq_loop_commit(&l, &a.op, sqe);
    sqe = rmq_loop_sqe(&l, &b.op);   /* SQ of one: b is parked */
    io_uring_prep_nop(sqe);
    rmq_loop_commit(&l, &b.op, sqe);
    cr_assert(b.op.overflowed);
    rmq_loop_cancel(&l, &b.op);
    for (int i = 0; i < 5; i++) {
        rmq_loop_run_once(&l, 1000000);
    }
    cr_assert_eq(a.done, 1);
    cr_assert_eq(a.res, 0);
    cr_assert_eq(b.done, 1);
    cr_assert_eq(b.res, -ECANCELED);
    rmq_loop_fini(&l);
}

/* ---- cross-thread and cross-loop messages ------------------------------------------------ */

#define NMSG 1000

struct counted_msg {
    struct rmq_loop_msg m;
    int seq;
};

static struct counted_msg msgs[NMSG];
static int next_expected;
static int misordered;
static struct rmq_loop *target_loop;

static void
msg_fn(struct rmq_loop_msg *m)
{
    struct counted_msg *cm = rmq_container_of(m, struct counted_msg, m);

    if (cm->seq != next_expected) {
        misordered++;
    }
    next_expected++;
    if (next_expected == NMSG) {
        rmq_loop_stop(target_loop);
    }
}

static void *
poster_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < NMSG; i++) {
        msgs[i].seq = i;
        msgs[i].m.fn = msg_fn;
        rmq_loop_post(target_loop, &msgs[i].m);
    }
    return NULL;
}

Test(loop_msg, posts_from_another_thread_arrive_in_order, .timeout = 20)
{
    struct rmq_loop l;
    pthread_t th;

    cr_assert_eq(rmq_loop_init(&l, NULL), 0);
    target_loop = &l;
    pthread_create(&th, NULL, poster_thread, NULL);
    cr_assert_eq(rmq_loop_run(&l), 0);
    pthread_join(th, NULL);
    cr_assert_eq(next_expected, NMSG);
    cr_assert_eq(misordered, 0);
    rmq_loop_fini(&l);
}

/* Loop A posts to loop B from A's thread: the wake-up rides A's ring as MSG_RING. */
struct two_loops {
    struct rmq_loop b;
    pthread_barrier_t ready;
    int got;
};

static struct two_loops two;

static void
b_msg(struct rmq_loop_msg *m)
{
    (void)m;
    if (++two.got == 3) {
        rmq_loop_stop(&two.b);
    }
}

static void *
loop_b_thread(void *arg)
{
    (void)arg;
    rmq_loop_init(&two.b, NULL);
    pthread_barrier_wait(&two.ready);
    rmq_loop_run(&two.b);
    return NULL;
}

Test(loop_msg, loop_to_loop_wakeup_uses_msg_ring, .timeout = 20)
{
    static struct rmq_loop_msg m[3];
    struct rmq_loop a;
    pthread_t th;

    pthread_barrier_init(&two.ready, NULL, 2);
    pthread_create(&th, NULL, loop_b_thread, NULL);
    cr_assert_eq(rmq_loop_init(&a, NULL), 0);
    pthread_barrier_wait(&two.ready);
    for (int i = 0; i < 3; i++) {
        m[i].fn = b_msg;
        rmq_loop_post(&two.b, &m[i]);
        /* each post after the first found the inbox non-empty or was drained; submit */
        rmq_loop_run_once(&a, 0);
    }
    pthread_join(th, NULL);
    cr_assert_eq(two.got, 3);
    cr_assert(a.has_msg_ring);
    rmq_loop_fini(&a);
    rmq_loop_fini(&two.b);
}

/* ---- file operations through the ring ------------------------------------------------ */

struct file_op {
    struct rmq_op op;
    int32_t res;
    int done;
};

static void
file_done(struct rmq_op *op, int32_t res, uint32_t flags)
{
    struct file_op *f = rmq_container_of(op, struct file_op, op);

    (void)flags;
    f->res = res;
    f->done++;
}

/* Submit one prepared SQE for f and run the loop until it completes. */
static int32_t
run_op(struct rmq_loop *l, struct file_op *f)
{
    for (int i = 0; i < 1000 && f->done == 0; i++) {
        rmq_loop_run_once(l, 10 * 1000000ull);
    }
    cr_assert_eq(f->done, 1);
    f->done = 0;
    return f->res;
}

Test(loop_file, fallocate_writev_fdatasync_read_splice)
{
    char path[] = "/tmp/rmq-loop-XXXXXX";
    int fd = mkstemp(path);
    struct rmq_loop l;
    struct file_op f;
    struct io_uring_sqe *sqe;
    char a[] = "hello ";
    char b[] = "ring";
    struct iovec iov[2] = {{a, 6}, {b, 4}};
    char back[16] = {0};
    int pipefd[2];

    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(pipe(pipefd), 0);
    cr_assert_eq(rmq_loop_init(&l, NULL), 0);
    rmq_op_init(&f.op, file_done);
    f.done = 0;

    sqe = rmq_loop_sqe(&l, &f.op);
    io_uring_prep_fallocate(sqe, fd, 0, 0, 1 << 20);
    rmq_loop_commit(&l, &f.op, sqe);
    cr_assert_eq(run_op(&l, &f), 0);

    sqe = rmq_loop_sqe(&l, &f.op);
    io_uring_prep_writev(sqe, fd, iov, 2, 4096);
    rmq_loop_commit(&l, &f.op, sqe);
    cr_assert_eq(run_op(&l, &f), 10);

    sqe = rmq_loop_sqe(&l, &f.op);
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    rmq_loop_commit(&l, &f.op, sqe);
    cr_assert_eq(run_op(&l, &f), 0);

    sqe = rmq_loop_sqe(&l, &f.op);
    io_uring_prep_read(sqe, fd, back, 10, 4096);
    rmq_loop_commit(&l, &f.op, sqe);
    cr_assert_eq(run_op(&l, &f), 10);
    cr_assert_str_eq(back, "hello ring");

    /* file → pipe without user space: the path pulls will take */
    sqe = rmq_loop_sqe(&l, &f.op);
    io_uring_prep_splice(sqe, fd, 4096 + 6, pipefd[1], -1, 4, 0);
    rmq_loop_commit(&l, &f.op, sqe);
    cr_assert_eq(run_op(&l, &f), 4);
    memset(back, 0, sizeof(back));
    cr_assert_eq(read(pipefd[0], back, sizeof(back)), 4);
    cr_assert_str_eq(back, "ring");

    /* the injection hook rewrites a result, so error paths can be driven */
    sqe = rmq_loop_sqe(&l, &f.op);
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    rmq_loop_commit(&l, &f.op, sqe);
    rmq_loop_inject(&l, &f.op, 1, -EIO);
    cr_assert_eq(run_op(&l, &f), -EIO);

    rmq_loop_fini(&l);
    close(fd);
    close(pipefd[0]);
    close(pipefd[1]);
}

Test(loop_log, a_line_whose_write_is_in_flight_at_fini_reaches_the_file)
{
    char path[] = "/tmp/rmq-loop-log-XXXXXX";
    int fd = mkstemp(path);
    char want[64];
    char got[4096];
    ssize_t n;

    cr_assert_geq(fd, 0);
    unlink(path);
    /* a regular file: io_uring punts the write to io-wq, where closing the ring used
     * to cancel it; the race lost about one run in twenty, so try it many times */
    for (int i = 0; i < 200; i++) {
        struct rmq_loop l;
        struct rmq_loop_config cfg = {.name = "log"};

        cr_assert_eq(ftruncate(fd, 0), 0);
        cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
        rmq_log_set_fd(fd);
        cr_assert_eq(rmq_loop_init(&l, &cfg), 0);
        snprintf(want, sizeof(want), "last words %d", i);
        RMQ_ERROR("%s", want);
        cr_assert_eq(rmq_loop_run_once(&l, 0), 0);    /* submits the log write */
        rmq_loop_fini(&l);
        rmq_log_set_fd(2);
        n = pread(fd, got, sizeof(got) - 1, 0);
        cr_assert_gt(n, 0, "run %d wrote nothing", i);
        got[n] = '\0';
        cr_assert_not_null(strstr(got, want), "run %d lost its last line: %s", i, got);
    }
    close(fd);
}
