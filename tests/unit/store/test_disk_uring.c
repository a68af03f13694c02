/*
 * The commitlog on real files through io_uring: segment files and names, reopen,
 * a torn tail zeroed, and real crashes: a child appending under SYNC_FLUSH is
 * killed with SIGKILL at random moments; every record it saw acknowledged must be
 * there afterwards, byte for byte.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/be.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "store/store.h"

#define SEG (64u << 10)

static char dir[64];
static struct rmq_loop loop;
static struct rmq_disk *disk;
static struct rmq_store *st;
static int write_mode = RMQ_DISK_WRITE_AUTO;    /* the default; some tests take another */

/* The real disk in the mode under test. */
static struct rmq_disk *
disk_new(void)
{
    struct rmq_disk *d = rmq_disk_uring_create(&loop, dir);

    if (d != NULL) {
        rmq_disk_uring_set_write_mode(d, write_mode);
    }
    return d;
}

struct amsg {
    struct rmq_store_msg m;
    uint8_t body[256];
    bool done;
    int status;
};

static int finished;

static void
amsg_done(struct rmq_store_msg *m, int status)
{
    struct amsg *a = rmq_container_of(m, struct amsg, m);

    a->done = true;
    a->status = status;
    finished++;
}

static void
amsg_fill(struct amsg *a, uint32_t seq)
{
    memset(a, 0, sizeof(*a));
    rmq_put_be32(a->body, seq);
    for (uint32_t i = 4; i < sizeof(a->body); i++) {
        a->body[i] = (uint8_t)(seq + i);
    }
    a->m.rec.topic = "CrashTopic";
    a->m.rec.topic_len = 10;
    a->m.rec.queue_id = (int32_t)(seq % 4);
    a->m.rec.body = a->body;
    a->m.rec.body_len = 4 + seq % (sizeof(a->body) - 4);
    a->m.done = amsg_done;
}

static void
store_up(const struct rmq_store_config *cfg)
{
    struct rmq_store_config c = *cfg;

    c.root_dir = dir;
    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    disk = disk_new();
    cr_assert_not_null(disk);
    cr_assert_eq(rmq_store_open(&st, &loop, disk, &c), 0);
}

static void
store_down(void)
{
    cr_assert_eq(rmq_store_close_wait(st, 60000000000ull), 0);
    rmq_store_destroy(st);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
}

static void
setup(void)
{
    rmq_log_set_level(RMQ_LOG_WARN);
    snprintf(dir, sizeof(dir), "/tmp/rmq-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(disk_uring, .init = setup, .fini = teardown, .timeout = 60);

static struct amsg msgs[2000];

static void
append_n(int from, int n)
{
    int want = finished + n;

    for (int i = from; i < from + n; i++) {
        amsg_fill(&msgs[i], (uint32_t)i);
        rmq_store_append(st, &msgs[i].m);
    }
    while (finished < want) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
}

static void
verify(int n)
{
    uint8_t buf[1024];

    for (int i = 0; i < n; i++) {
        struct rmq_record r;

        cr_assert_eq(msgs[i].status, 0);
        cr_assert_eq(rmq_store_read(st, (uint64_t)msgs[i].m.rec.phys_off, buf,
                                    msgs[i].m.rec.total_size),
                     (ssize_t)msgs[i].m.rec.total_size);
        cr_assert_eq(rmq_record_decode(buf, msgs[i].m.rec.total_size, true, &r, NULL),
                     msgs[i].m.rec.total_size, "record %d", i);
        cr_assert_eq(rmq_get_be32(r.body), (uint32_t)i);
    }
}

static void
roll_persist_reopen(void)
{
    struct rmq_store_config cfg = {.seg_size = SEG, .flush_type = RMQ_FLUSH_SYNC};
    uint64_t end;
    char path[128];
    struct stat sb;

    store_up(&cfg);
    append_n(0, 1000);
    verify(1000);
    end = rmq_store_written_off(st);
    cr_assert_gt(rmq_store_stats(st)->rolls, 2);
    cr_assert_eq(rmq_store_flushed_off(st), end);
    store_down();
    /* files are named by their 20-digit start offset and have the full size */
    snprintf(path, sizeof(path), "%s/%020u", dir, SEG);
    cr_assert_eq(stat(path, &sb), 0, "%s missing", path);
    cr_assert_eq((uint64_t)sb.st_size, SEG);

    store_up(&cfg);
    cr_assert_eq(rmq_store_written_off(st), end);
    cr_assert_eq(rmq_store_queue_max(st, "CrashTopic", 10, 1), 250);
    verify(1000);
    append_n(1000, 10);
    cr_assert_eq(msgs[1000].m.rec.phys_off, (int64_t)end);
    cr_assert_eq(msgs[1000].m.rec.queue_off, 250);
    store_down();
}

Test(disk_uring, segments_roll_persist_and_reopen)
{
    roll_persist_reopen();
}

Test(disk_uring, segments_roll_persist_and_reopen_with_writev)
{
    write_mode = RMQ_DISK_WRITE_WRITEV;
    roll_persist_reopen();
}

Test(disk_uring, torn_tail_is_zeroed_on_reopen)
{
    struct rmq_store_config cfg = {.seg_size = SEG};
    uint64_t end;
    uint64_t seg_start;
    char path[128];
    uint8_t junk[300];
    uint8_t back[300];
    int fd;

    store_up(&cfg);
    append_n(0, 50);
    end = rmq_store_written_off(st);
    store_down();
    /* half a record's worth of plausible-looking bytes after the end */
    seg_start = end / SEG * SEG;
    memset(junk, 0xAB, sizeof(junk));
    rmq_put_be32(junk, 250);
    rmq_put_be32(junk + 4, 0xDAA320A7u);
    snprintf(path, sizeof(path), "%s/%020llu", dir, (unsigned long long)seg_start);
    fd = open(path, O_RDWR);
    cr_assert_eq(pwrite(fd, junk, sizeof(junk), (off_t)(end - seg_start)), (ssize_t)sizeof(junk));
    close(fd);

    store_up(&cfg);
    cr_assert_eq(rmq_store_written_off(st), end);
    cr_assert_gt(rmq_store_stats(st)->truncated_bytes, 0);
    store_down();
    fd = open(path, O_RDONLY);
    cr_assert_eq(pread(fd, back, sizeof(back), (off_t)(end - seg_start)), (ssize_t)sizeof(back));
    close(fd);
    for (size_t i = 0; i < sizeof(back); i++) {
        cr_assert_eq(back[i], 0, "byte %zu of the torn tail survived", i);
    }
}

/* ---- real crashes ------------------------------------------------------------------ */

struct ack {
    uint32_t seq;
    uint32_t size;
    uint64_t phys_off;
};

static int ack_fd;

static void
child_done(struct rmq_store_msg *m, int status)
{
    struct amsg *a = rmq_container_of(m, struct amsg, m);
    struct ack ack = {rmq_get_be32(a->body), m->rec.total_size, (uint64_t)m->rec.phys_off};

    a->done = true;
    a->status = status;
    finished++;
    if (status == 0 && write(ack_fd, &ack, sizeof(ack)) != (ssize_t)sizeof(ack)) {
        _exit(3);
    }
}

/* The child appends forever (until killed) in bursts, reporting each acknowledgement. */
static void
child_main(uint32_t first_seq)
{
    static struct amsg ring[64];
    struct rmq_store_config cfg = {
        .seg_size = SEG, .flush_type = RMQ_FLUSH_SYNC, .root_dir = dir,
        .cq_entries = 1000, .cq_flush_interval_ms = 20,
    };
    uint32_t seq = first_seq;

    int ret = rmq_loop_init(&loop, NULL);

    if (ret < 0 || (disk = disk_new()) == NULL ||
        (ret = rmq_store_open(&st, &loop, disk, &cfg)) < 0) {
        fprintf(stderr, "child: store not opened: %s err=%d\n", disk == NULL ? "loop/disk" : "open",
                ret);
        rmq_log_set_level(RMQ_LOG_INFO);
        if (disk != NULL) {
            rmq_loop_run_once(&loop, 0);        /* the store's reason, buffered on the loop */
        }
        _exit(2);
    }
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (ring[i].m.done != NULL && !ring[i].done) {
                continue;           /* still in flight */
            }
            amsg_fill(&ring[i], seq++);
            ring[i].m.done = child_done;
            rmq_store_append(st, &ring[i].m);
        }
        rmq_loop_run_once(&loop, 1000000);
    }
}

static void
kill_9_cycles(void)
{
#define PER_CYCLE 10000
    static struct ack acks[20 * PER_CYCLE];
    size_t nacks = 0;
    uint32_t next_seq = 0;

    srand((unsigned)rmq_clock_mono_ns());
    for (int cycle = 0; cycle < 20; cycle++) {
        int p[2];
        pid_t pid;
        uint64_t until;
        size_t before = nacks;

        cr_assert_eq(pipe(p), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(p[0]);
            ack_fd = p[1];
            child_main(next_seq);
        }
        close(p[1]);
        /* the kill comes at a random moment after the child's first acknowledgement
         * (recovery before it takes longer as the log grows) */
        {
            struct pollfd pf = {.fd = p[0], .events = POLLIN};

            cr_assert_eq(poll(&pf, 1, 10000), 1, "cycle %d: child never acknowledged", cycle);
        }
        until = rmq_clock_mono_ns() + (uint64_t)(rand() % 150) * 1000000u;
        while (rmq_clock_mono_ns() < until) {
            struct pollfd pf = {.fd = p[0], .events = POLLIN};

            if (nacks - before < PER_CYCLE && poll(&pf, 1, 5) == 1) {
                ssize_t r = read(p[0], acks + nacks, sizeof(struct ack));

                if (r != (ssize_t)sizeof(struct ack)) {
                    int status = 0;
                    int err = errno;

                    waitpid(pid, &status, 0);
                    cr_assert_fail("cycle %d: read %zd (errno %d); child status %d exited=%d "
                                   "code=%d signal=%d", cycle, r, err, status, WIFEXITED(status),
                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                   WIFSIGNALED(status) ? WTERMSIG(status) : -1);
                }
                nacks++;
            }
        }
        kill(pid, SIGKILL);
        /* acknowledgements written before death are still in the pipe; past PER_CYCLE
         * per cycle they are left unread (then simply not checked): fast disks ack more */
        while (nacks - before < PER_CYCLE) {
            ssize_t r = read(p[0], acks + nacks, sizeof(struct ack));

            if (r != (ssize_t)sizeof(struct ack)) {
                break;
            }
            nacks++;
        }
        close(p[0]);
        waitpid(pid, NULL, 0);
        cr_assert_gt(nacks, before, "cycle %d: the child acknowledged nothing", cycle);
        for (size_t i = before; i < nacks; i++) {
            next_seq = acks[i].seq + 1 > next_seq ? acks[i].seq + 1 : next_seq;
        }
        next_seq += 100000;         /* unacknowledged sequence numbers are never reused */

        /* recovery keeps every acknowledged record of every cycle so far */
        {
            struct rmq_store_config cfg = {
                .seg_size = SEG, .flush_type = RMQ_FLUSH_SYNC, .cq_entries = 1000,
            };
            uint8_t buf[1024];

            store_up(&cfg);
            for (size_t i = 0; i < nacks; i++) {
                struct rmq_record r;
                struct rmq_store_range range;
                struct rmq_get_result g;

                cr_assert_leq(acks[i].phys_off + acks[i].size, rmq_store_written_off(st),
                              "cycle %d: acked record seq %u lost", cycle, acks[i].seq);
                cr_assert_eq(rmq_store_read(st, acks[i].phys_off, buf, acks[i].size),
                             (ssize_t)acks[i].size);
                cr_assert_eq(rmq_record_decode(buf, acks[i].size, true, &r, NULL), acks[i].size,
                             "cycle %d: acked record seq %u corrupt", cycle, acks[i].seq);
                cr_assert_eq(rmq_get_be32(r.body), acks[i].seq);
                /* and its consume queue entry leads to it */
                rmq_store_get(st, "CrashTopic", 10, r.queue_id, r.queue_off, 1, NULL, 0, &range,
                              &g);
                cr_assert_eq(g.status, RMQ_GET_FOUND, "cycle %d seq %u: %s", cycle,
                             acks[i].seq, rmq_get_status_name(g.status));
                cr_assert_eq(range.phys, acks[i].phys_off);
            }
            store_down();
        }
    }
}

Test(disk_uring, kill_9_under_sync_flush_loses_no_acknowledged_record, .timeout = 120)
{
    kill_9_cycles();
}

Test(disk_uring, kill_9_under_sync_flush_loses_no_acknowledged_record_with_writev, .timeout = 120)
{
    write_mode = RMQ_DISK_WRITE_WRITEV;
    kill_9_cycles();
}

/*
 * A real full disk: a 6 MiB tmpfs mounted in a private mount namespace (a child
 * process; unprivileged through a user namespace when not root). Appends run into
 * ENOSPC when no next segment fits, are refused with -ENOSPC, nothing acknowledged
 * is lost or corrupted, and appends resume by themselves once space is freed.
 */
static int
private_tmpfs(const char *where, const char *opts)
{
    if (geteuid() != 0) {
        char map[64];
        uid_t uid = geteuid();
        gid_t gid = getegid();
        int fd;

        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
            return -errno;
        }
        fd = open("/proc/self/setgroups", O_WRONLY);
        if (fd >= 0) {
            (void)!write(fd, "deny", 4);
            close(fd);
        }
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
        fd = open("/proc/self/uid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0) {
            return -errno;
        }
        close(fd);
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
        fd = open("/proc/self/gid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0) {
            return -errno;
        }
        close(fd);
    } else if (unshare(CLONE_NEWNS) < 0) {
        return -errno;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("rmq-test", where, "tmpfs", 0, opts) < 0) {
        return -errno;
    }
    return 0;
}

static int
full_disk_child(void)
{
    struct rmq_store_config cfg = {
        .seg_size = SEG, .flush_type = RMQ_FLUSH_SYNC, .cq_entries = 1000,
        .disk_refuse_ratio = 99, .disk_force_ratio = 99, .disk_max_used_ratio = 99,
    };
    char ballast[128];
    int fd;
    int acked = 0;
    int refused = 0;
    int n = 0;
    int ret = private_tmpfs(dir, "size=6m");

    if (ret < 0) {
        fprintf(stderr, "full-disk test: cannot mount a private tmpfs: %s\n", strerror(-ret));
        return 10;
    }
    snprintf(ballast, sizeof(ballast), "%s/ballast", dir);
    fd = open(ballast, O_WRONLY | O_CREAT, 0644);
    if (fd < 0 || fallocate(fd, 0, 0, 5632u << 10) < 0) {     /* leaves ~512 KiB */
        return 11;
    }
    close(fd);
    cfg.root_dir = dir;
    if (rmq_loop_init(&loop, NULL) < 0 || (disk = disk_new()) == NULL ||
        rmq_store_open(&st, &loop, disk, &cfg) < 0) {
        return 12;
    }
    /* records of about 350 bytes until the disk is full: ~187 per 64 KiB segment */
    while (refused == 0 && n < 2000) {
        append_n(n, 1);
        if (msgs[n].status == 0) {
            acked++;
        } else if (msgs[n].status == -ENOSPC) {
            refused++;
        } else {
            fprintf(stderr, "full-disk test: append %d status %d\n", n, msgs[n].status);
            return 13;
        }
        n++;
    }
    if (refused == 0 || acked < 100) {
        fprintf(stderr, "full-disk test: acked %d refused %d\n", acked, refused);
        return 14;
    }
    verify(acked);
    store_down();
    /* nothing lost or corrupted across a restart on the full disk */
    store_up(&cfg);
    verify(acked);
    if (rmq_store_queue_max(st, "CrashTopic", 10, 0) != (acked + 3) / 4) {
        return 15;
    }
    /* space returns: the retry (every second) prepares the next segment */
    unlink(ballast);
    for (uint64_t end = rmq_clock_mono_ns() + 1500000000ull; rmq_clock_mono_ns() < end;) {
        rmq_loop_run_once(&loop, 10000000);
    }
    msgs[n] = msgs[acked];
    append_n(acked, 1);
    if (msgs[acked].status != 0) {
        fprintf(stderr, "full-disk test: after freeing space status %d\n", msgs[acked].status);
        return 16;
    }
    verify(acked + 1);
    store_down();
    return 0;
}

static void
full_disk(void)
{
    int status = 0;
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        _exit(full_disk_child());
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit status %d (see stderr)",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

Test(disk_uring, full_disk_refuses_appends_and_resumes_when_space_returns)
{
    full_disk();
}

Test(disk_uring, full_disk_refuses_appends_and_resumes_when_space_returns_with_writev)
{
    write_mode = RMQ_DISK_WRITE_WRITEV;
    full_disk();
}

Test(disk_uring, closing_abandons_a_segment_preparation_and_the_log_reopens)
{
    /* 256 MiB: its zeros take a while to write back, so the close finds it in flight */
    struct rmq_store_config cfg = {.seg_size = 256u << 20};

    for (int round = 0; round < 3; round++) {
        store_up(&cfg);
        append_n(round * 10, 10);
        for (int i = 0; i < 3; i++) {
            rmq_loop_run_once(&loop, 1000000);  /* the next segment's preparation starts */
        }
        store_down();                           /* abandons it, keeping what was there */
    }
    /* the abandoned file (whole or cut short) is taken as the next segment */
    store_up(&cfg);
    append_n(30, 10);
    verify(40);
    store_down();
}

struct req_wait {
    struct rmq_disk_req req;
    struct iovec iov;               /* writes: read by the kernel at submission */
    bool done;
    int32_t res;
};

static void
req_wait_done(struct rmq_disk_req *req, int32_t res)
{
    struct req_wait *w = rmq_container_of(req, struct req_wait, req);

    w->done = true;
    w->res = res;
}

Test(disk_uring, a_segment_is_pre_written_a_lead_ahead_of_a_busy_writer_and_whole_when_idle)
{
    const uint64_t size = 256ull << 20, lead = 64ull << 20;
    struct req_wait w = {.req.done = req_wait_done};
    uint64_t deadline, target = 0;

    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    disk = disk_new();
    cr_assert_not_null(disk);
    disk->ops->prepare(disk, size, size, &w.req);
    /* a writer moving 64 KiB every 2 ms: the zeros stay about a lead ahead of it */
    deadline = rmq_clock_mono_ns() + 30000000000ull;
    while (rmq_clock_mono_ns() < deadline && rmq_disk_uring_prep_progress(disk) < lead) {
        disk->ops->prepare_advance(disk, target += 64u << 10);
        rmq_loop_run_once(&loop, 2000000);
    }
    for (int i = 0; i < 100; i++) {
        disk->ops->prepare_advance(disk, target += 64u << 10);
        rmq_loop_run_once(&loop, 2000000);
    }
    cr_assert(!w.done);
    cr_assert_lt(target + lead + (1u << 20), size, "the writer went too far for the test");
    cr_assert_geq(rmq_disk_uring_prep_progress(disk), lead);
    cr_assert_leq(rmq_disk_uring_prep_progress(disk), target + lead + (1u << 20),
                  "zeros beyond the lead while the writer moves");
    /* the writer stands still: the rest is written */
    deadline = rmq_clock_mono_ns() + 60000000000ull;
    while (!w.done && rmq_clock_mono_ns() < deadline) {
        rmq_loop_run_once(&loop, 10000000);
    }
    cr_assert(w.done);
    cr_assert_geq(w.res, 0);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
}

Test(disk_uring, cancelling_a_preparation_completes_it_through_the_ring)
{
    const uint64_t size = 128ull << 20;
    struct req_wait w = {.req.done = req_wait_done};
    uint64_t deadline = rmq_clock_mono_ns() + 30000000000ull;

    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    disk = disk_new();
    cr_assert_not_null(disk);
    disk->ops->prepare(disk, 0, size, &w.req);
    for (int i = 0; i < 50 && !w.done; i++) {
        rmq_loop_run_once(&loop, 10000000);     /* under way */
    }
    cr_assert(!w.done);
    disk->ops->prepare_cancel(disk);
    cr_assert(!w.done);                         /* never inline */
    while (!w.done && rmq_clock_mono_ns() < deadline) {
        rmq_loop_run_once(&loop, 10000000);
    }
    cr_assert(w.done);
    cr_assert_eq(w.res, -ECANCELED);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
}

/*
 * mmap writes: a segment cut short behind the store's back makes the copy fault
 * (SIGBUS). The append fails with -EIO, the error is sticky, the process lives on.
 */
Test(disk_uring, a_fault_under_a_mapped_write_fails_the_append_and_the_process_lives)
{
    write_mode = RMQ_DISK_WRITE_MMAP;
    struct rmq_store_config cfg = {.seg_size = SEG, .flush_type = RMQ_FLUSH_SYNC};
    char path[128];

    store_up(&cfg);
    append_n(0, 10);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(msgs[i].status, 0);
    }
    snprintf(path, sizeof(path), "%s/%020u", dir, 0u);
    cr_assert_eq(truncate(path, 0), 0);
    append_n(10, 1);
    cr_assert_eq(msgs[10].status, -EIO, "status %d", msgs[10].status);
    append_n(11, 1);
    cr_assert_eq(msgs[11].status, -EIO, "status %d (sticky)", msgs[11].status);
    (void)rmq_store_close_wait(st, 10000000000ull);
    rmq_store_destroy(st);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
}

static void
wait_req(bool *done)
{
    for (int i = 0; i < 1000 && !*done; i++) {
        rmq_loop_run_once(&loop, 10000000);
    }
    cr_assert(*done);
}

static void
write_at(int h, uint64_t off, const uint8_t *p, size_t len, bool more, struct req_wait *w)
{
    *w = (struct req_wait){.req.done = req_wait_done, .req.more = more};
    w->iov = (struct iovec){.iov_base = (void *)p, .iov_len = len};
    disk->ops->writev(disk, h, off, &w->iov, 1, &w->req);
}

/* Wait for w, then write whatever a short write left (as the store does). */
static void
finish_write(int h, uint64_t off, const uint8_t *p, size_t len, struct req_wait *w)
{
    size_t done = 0;

    for (;;) {
        wait_req(&w->done);
        cr_assert_gt(w->res, 0, "write at %llu: %d", (unsigned long long)(off + done), w->res);
        done += (size_t)w->res;
        if (done == len) {
            return;
        }
        write_at(h, off + done, p + done, len - done, false, w);
    }
}

/*
 * auto: a write is copied on the loop's thread unless a writev is in flight, or it is
 * 128 KiB or more with more writes right behind it (then a worker's copy overlaps
 * them). Both ways put the same bytes at the same place.
 */
Test(disk_uring, auto_copies_unless_a_large_write_has_more_behind_it_or_a_writev_is_in_flight)
{
    const uint64_t size = 4u << 20;
    const size_t big = 200u << 10, small = 4096;
    const size_t len[4] = {big, big, small, small};
    static uint8_t src[4][200u << 10];
    static uint8_t back[200u << 10];
    struct req_wait pw = {.req.done = req_wait_done};
    struct req_wait w[4];
    uint64_t copied, to_worker, copied0, to_worker0;
    uint64_t at[4];
    char path[128];
    int h;
    int fd;

    write_mode = RMQ_DISK_WRITE_AUTO;
    at[0] = 0;
    for (int k = 0; k < 4; k++) {
        memset(src[k], 'a' + k, sizeof(src[k]));
        at[k] = k == 0 ? 0 : at[k - 1] + len[k - 1];
    }
    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    disk = disk_new();
    cr_assert_not_null(disk);
    disk->ops->prepare(disk, 0, size, &pw.req);
    disk->ops->prepare_advance(disk, UINT64_MAX);
    wait_req(&pw.done);
    cr_assert_geq(pw.res, 0);
    h = pw.res;

    write_at(h, at[0], src[0], len[0], false, &w[0]);  /* large, alone: copied */
    rmq_disk_uring_write_counts(disk, &copied, &to_worker);
    cr_assert_eq(copied, 1);
    cr_assert_eq(to_worker, 0);
    finish_write(h, at[0], src[0], len[0], &w[0]);

    rmq_disk_uring_write_counts(disk, &copied0, &to_worker0);
    write_at(h, at[1], src[1], len[1], true, &w[1]);   /* large, more behind: worker */
    write_at(h, at[2], src[2], len[2], false, &w[2]);  /* small, a writev in flight */
    rmq_disk_uring_write_counts(disk, &copied, &to_worker);
    cr_assert_eq(copied, copied0);
    cr_assert_eq(to_worker, to_worker0 + 2);
    finish_write(h, at[1], src[1], len[1], &w[1]);
    finish_write(h, at[2], src[2], len[2], &w[2]);

    rmq_disk_uring_write_counts(disk, &copied0, &to_worker0);
    write_at(h, at[3], src[3], len[3], true, &w[3]);   /* small, nothing in flight: copied */
    rmq_disk_uring_write_counts(disk, &copied, &to_worker);
    cr_assert_eq(copied, copied0 + 1);
    cr_assert_eq(to_worker, to_worker0);
    finish_write(h, at[3], src[3], len[3], &w[3]);

    snprintf(path, sizeof(path), "%s/%020u", dir, 0u);
    fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    for (int k = 0; k < 4; k++) {
        cr_assert_eq(pread(fd, back, len[k], (off_t)at[k]), (ssize_t)len[k]);
        cr_assert_eq(memcmp(back, src[k], len[k]), 0, "write %d", k);
    }
    close(fd);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
}

/* Append n records whose properties end in last_byte, from msgs[from]. */
static void
append_with_props(int from, int n, char last_byte)
{
    static char props[2000][8];
    int want = finished + n;

    for (int i = from; i < from + n; i++) {
        amsg_fill(&msgs[i], (uint32_t)i);
        memcpy(props[i], "TAGS\001A", 6);
        props[i][6] = last_byte;
        msgs[i].m.rec.props = props[i];
        msgs[i].m.rec.props_len = 7;
        rmq_store_append(st, &msgs[i].m);
    }
    while (finished < want) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
}

/* The store stops as a killed process does: no checkpoint, no clean-close mark. */
static void
store_vanish(void)
{
    for (int i = 0; i < 300; i++) {
        rmq_loop_run_once(&loop, 1000000);      /* let flushes and preparation settle */
    }
    rmq_store_destroy(st);
    rmq_disk_uring_destroy(disk);
    rmq_loop_fini(&loop);
}

/*
 * kill -9 in the middle of a copy leaves zeros from the cut to the record's end. Cut
 * inside the properties, the record still has its magic, lengths, topic and body CRC:
 * recovery must still not take it. A record whose properties really end in NUL, with
 * another record after it, is kept.
 */
Test(disk_uring, a_record_cut_inside_its_properties_is_not_recovered)
{
    struct rmq_store_config cfg = {.seg_size = SEG};
    static const uint8_t zeros[3];
    uint64_t last_off;
    char path[128];
    int fd;

    finished = 0;
    store_up(&cfg);
    append_with_props(0, 10, '\002');
    append_with_props(10, 1, '\0');             /* legitimately NUL-terminated, not last */
    append_with_props(11, 9, '\002');
    last_off = (uint64_t)msgs[19].m.rec.phys_off;
    cr_assert_lt(last_off + msgs[19].m.rec.total_size, (uint64_t)SEG);
    store_vanish();

    /* the last record's copy stopped 3 bytes short */
    snprintf(path, sizeof(path), "%s/%020u", dir, 0u);
    fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, zeros, sizeof(zeros),
                        (off_t)(last_off + msgs[19].m.rec.total_size - sizeof(zeros))),
                 (ssize_t)sizeof(zeros));
    close(fd);

    store_up(&cfg);
    cr_assert_eq(rmq_store_written_off(st), last_off, "the cut record was taken");
    cr_assert_eq(rmq_store_queue_max(st, "CrashTopic", 10, 19 % 4), (19 / 4),
                 "its queue entry was kept");
    cr_assert_eq(rmq_store_queue_max(st, "CrashTopic", 10, 10 % 4), 5,
                 "the NUL-terminated record's queue lost entries");
    store_down();
}
