/*
 * A slave's copy of its master's log (rmq_store_append_raw): bytes copied in chunks
 * that end anywhere inside records give a byte-identical log, consume queues equal to
 * the master's, an empty log moved to the master's segment start, and a reopen that
 * keeps every complete record and drops a half-copied one.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/be.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "store/store.h"
#include "store/store_int.h"

#define SEG (64u << 10)
#define MSGS 600

static char root[64];
static struct rmq_loop loop;

struct side {
    char dir[128];
    struct rmq_disk *disk;
    struct rmq_store *st;
};

static struct side master, slave;

struct amsg {
    struct rmq_store_msg m;
    uint8_t body[512];
    int status;
    bool done;
};

static struct amsg msgs[MSGS];
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
side_up_with(struct side *sd, const char *name, struct rmq_store_config c)
{
    snprintf(sd->dir, sizeof(sd->dir), "%s/%s", root, name);
    mkdir(sd->dir, 0755);
    c.root_dir = sd->dir;
    sd->disk = rmq_disk_uring_create(&loop, sd->dir);
    cr_assert_not_null(sd->disk);
    cr_assert_eq(rmq_store_open(&sd->st, &loop, sd->disk, &c), 0);
}

static void
side_up(struct side *sd, const char *name)
{
    side_up_with(sd, name, (struct rmq_store_config){.seg_size = SEG});
}

static void
side_down(struct side *sd)
{
    cr_assert_eq(rmq_store_close_wait(sd->st, 60000000000ull), 0);
    rmq_store_destroy(sd->st);
    rmq_disk_uring_destroy(sd->disk);
    sd->st = NULL;
}

static void
setup(void)
{
    rmq_log_set_level(RMQ_LOG_WARN);
    snprintf(root, sizeof(root), "/tmp/rmq-raw-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
}

static void
teardown(void)
{
    char cmd[128];

    rmq_loop_fini(&loop);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(raw, .init = setup, .fini = teardown, .timeout = 60);

static const char *const topics[] = {"TopicA", "TopicB", "TopicC"};

/* n records on the master: three topics, four queues, bodies of varied length. */
static void
fill_master(int n)
{
    int want = finished + n;

    for (int i = 0; i < n; i++) {
        struct amsg *a = &msgs[i];

        memset(a, 0, sizeof(*a));
        rmq_put_be32(a->body, (uint32_t)i);
        for (size_t k = 4; k < sizeof(a->body); k++) {
            a->body[k] = (uint8_t)(i * 7 + k);
        }
        a->m.rec.topic = topics[i % 3];
        a->m.rec.topic_len = 6;
        a->m.rec.queue_id = i % 4;
        a->m.rec.body = a->body;
        a->m.rec.body_len = 16 + (uint32_t)(i * 37) % (sizeof(a->body) - 16);
        a->m.done = amsg_done;
        rmq_store_append(master.st, &a->m);
    }
    while (finished < want) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(msgs[i].status, 0);
    }
}

struct copy {
    struct rmq_store_msg m;
    uint8_t buf[32768];
    bool done;
    int status;
};

static void
copy_done(struct rmq_store_msg *m, int status)
{
    struct copy *c = rmq_container_of(m, struct copy, m);

    c->done = true;
    c->status = status;
}

/* One copy of [off, off + len) of the master into the slave; its status. */
static int
copy_one(uint64_t off, uint32_t len)
{
    static struct copy c;

    memset(&c.m, 0, sizeof(c.m));
    c.done = false;
    cr_assert_eq(rmq_store_read(master.st, off, c.buf, len), (ssize_t)len);
    c.m.rec.phys_off = (int64_t)off;
    c.m.rec.body = c.buf;
    c.m.rec.body_len = len;
    c.m.done = copy_done;
    rmq_store_append_raw(slave.st, &c.m);
    while (!c.done) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    return c.status;
}

/* Copy [from, to) in chunks of pseudo-random size that never cross a segment end. */
static void
copy_range(uint64_t from, uint64_t to, uint32_t seed)
{
    uint64_t off = from;

    while (off < to) {
        uint64_t seg_end = off - off % SEG + SEG;
        uint32_t len;

        seed = seed * 1103515245u + 12345u;
        len = 1 + (seed >> 8) % 9000;
        len = (uint32_t)RMQ_MIN((uint64_t)len, RMQ_MIN(seg_end, to) - off);
        cr_assert_eq(copy_one(off, len), 0, "copy at %llu+%u", (unsigned long long)off, len);
        off += len;
    }
}

static void
assert_same_bytes(uint64_t from, uint64_t to)
{
    static uint8_t a[SEG], b[SEG];

    for (uint64_t off = from; off < to;) {
        uint32_t len = (uint32_t)RMQ_MIN((uint64_t)SEG - off % SEG, to - off);

        cr_assert_eq(rmq_store_read(master.st, off, a, len), (ssize_t)len);
        cr_assert_eq(rmq_store_read(slave.st, off, b, len), (ssize_t)len);
        cr_assert(memcmp(a, b, len) == 0, "bytes differ in [%llu, +%u)",
                  (unsigned long long)off, len);
        off += len;
    }
}

/* Run until every complete record of both logs has its consume queue entry (queue
 * files are made through the ring, so entries may trail the written offset a little). */
static void
settle(void)
{
    for (int i = 0; i < 5000; i++) {
        if (rmq_store_dispatched_off(master.st) == rmq_store_written_off(master.st) &&
            rmq_store_dispatched_off(slave.st) == rmq_store_raw_parsed_off(slave.st)) {
            return;
        }
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert_fail("consume queues never caught up");
}

/* Every queue of the slave holds the master's entries from the slave's first one. */
static void
assert_same_queues(void)
{
    settle();
    for (int t = 0; t < 3; t++) {
        for (int q = 0; q < 4; q++) {
            int64_t max = rmq_store_queue_max(master.st, topics[t], 6, q);
            int64_t min = rmq_store_queue_min(slave.st, topics[t], 6, q);

                    cr_assert_eq(rmq_store_queue_max(slave.st, topics[t], 6, q), max, "%s/%d",
                         topics[t], q);
            cr_assert_geq(min, 0);
            for (int64_t k = min; k < max; k++) {
                struct rmq_cq_entry em, es;

                cr_assert_eq(rmq_store_queue_entry(master.st, topics[t], 6, q, k, &em), 0);
                cr_assert_eq(rmq_store_queue_entry(slave.st, topics[t], 6, q, k, &es), 0,
                             "%s/%d entry %lld", topics[t], q, (long long)k);
                cr_assert(em.phys_off == es.phys_off && em.size == es.size &&
                          em.tags_code == es.tags_code, "%s/%d entry %lld differs", topics[t], q,
                          (long long)k);
            }
        }
    }
}

Test(raw, copied_chunks_give_an_identical_log_and_identical_queues)
{
    uint64_t end;

    side_up(&master, "m");
    side_up(&slave, "s");
    fill_master(MSGS);
    end = rmq_store_written_off(master.st);
    cr_assert_gt(end, 3 * SEG, "the test wants several segments");
    copy_range(0, end, 1);
    cr_assert_eq(rmq_store_written_off(slave.st), end);
    cr_assert_eq(rmq_store_raw_parsed_off(slave.st), end);
    assert_same_bytes(0, end);
    assert_same_queues();
    cr_assert_eq(rmq_store_stats(slave.st)->raw_bad_records, 0);
    /* not the end of the log: refused, nothing written */
    cr_assert_eq(copy_one(end - 100, 50), -ERANGE);
    cr_assert_eq(rmq_store_reserved_off(slave.st), end);
    side_down(&slave);
    side_down(&master);
}

Test(raw, an_empty_log_starts_at_the_masters_newest_segment)
{
    uint64_t end, start;

    side_up(&master, "m");
    side_up(&slave, "s");
    fill_master(MSGS);
    end = rmq_store_written_off(master.st);
    start = end - end % SEG;
    cr_assert_gt(start, 0);
    copy_range(start, end, 2);
    cr_assert_eq(rmq_store_min_off(slave.st), start);
    cr_assert_eq(rmq_store_written_off(slave.st), end);
    assert_same_bytes(start, end);
    assert_same_queues();
    /* the move survives a restart */
    side_down(&slave);
    side_up(&slave, "s");
    cr_assert_eq(rmq_store_min_off(slave.st), start);
    cr_assert_eq(rmq_store_reserved_off(slave.st), end);
    assert_same_queues();
    side_down(&slave);
    side_down(&master);
}

Test(raw, a_half_copied_record_is_dropped_at_reopen_and_copied_again)
{
    uint64_t end, cut;

    side_up(&master, "m");
    side_up(&slave, "s");
    fill_master(200);
    end = rmq_store_written_off(master.st);
    /* cut inside the record of message 150 */
    cut = (uint64_t)msgs[150].m.rec.phys_off + 30;
    copy_range(0, cut, 3);
    cr_assert_eq(rmq_store_raw_parsed_off(slave.st), (uint64_t)msgs[150].m.rec.phys_off);
    settle();
    cr_assert_eq(rmq_store_queue_max(slave.st, topics[150 % 3], 6, 150 % 4),
                 msgs[150].m.rec.queue_off, "the half record has no entry");
    side_down(&slave);
    side_up(&slave, "s");
    cr_assert_eq(rmq_store_reserved_off(slave.st), (uint64_t)msgs[150].m.rec.phys_off);
    copy_range(rmq_store_reserved_off(slave.st), end, 4);
    assert_same_bytes(0, end);
    assert_same_queues();
    side_down(&slave);
    side_down(&master);
}

static void
child_check(bool ok, int line)
{
    if (!ok) {
        fprintf(stderr, "child: check at line %d failed\n", line);
        _exit(3);
    }
}

/* A slave flushes wherever its copies end, often inside a record. Its checkpoint must
 * still name a record boundary: one inside a record made recovery after a kill -9 end
 * the log there, zero the records after it that the slave had acknowledged, and stop
 * its consume queues for good ("not a record"). */
Test(raw, a_slaves_checkpoint_names_a_record_boundary_and_kill_9_keeps_its_copies)
{
    char path[256];
    uint64_t xy[2];
    pid_t pid;
    int status;
    FILE *f;

    snprintf(path, sizeof(path), "%s/xy", root);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        uint64_t x, y, cps;

        child_check(rmq_loop_init(&loop, NULL) == 0, __LINE__);    /* a ring of its own */
        side_up(&master, "m");
        /* flushes at every write: a copy ending inside a record is flushed there */
        side_up_with(&slave, "s", (struct rmq_store_config){
            .seg_size = SEG, .flush_least_pages = 1, .flush_interval_ms = 600000,
            .cq_flush_interval_ms = 600000});
        fill_master(200);
        x = (uint64_t)msgs[40].m.rec.phys_off + 30;    /* inside record 40 */
        y = (uint64_t)msgs[43].m.rec.phys_off;         /* a boundary after it */
        child_check(x < SEG / 2 && y - x < 4096u, __LINE__);
        /* [0, x): 4 KiB and more unflushed, so an fdatasync covers it: flushed = x */
        child_check(copy_one(0, (uint32_t)x) == 0, __LINE__);
        for (int i = 0; i < 5000 && rmq_store_flushed_off(slave.st) != x; i++) {
            rmq_loop_run_once(&loop, 1000000);
        }
        child_check(rmq_store_flushed_off(slave.st) == x, __LINE__);
        /* the rest of record 40 and two more: parsed and dispatched, not flushed */
        child_check(copy_one(x, (uint32_t)(y - x)) == 0, __LINE__);
        for (int i = 0; i < 5000 && rmq_store_dispatched_off(slave.st) != y; i++) {
            rmq_loop_run_once(&loop, 1000000);
        }
        child_check(rmq_store_dispatched_off(slave.st) == y, __LINE__);
        child_check(rmq_store_flushed_off(slave.st) == x, __LINE__);
        cps = rmq_store_stats(slave.st)->checkpoints;
        rmq_store_checkpoint(slave.st);
        for (int i = 0; i < 5000 && rmq_store_stats(slave.st)->checkpoints == cps; i++) {
            rmq_loop_run_once(&loop, 1000000);
        }
        child_check(rmq_store_stats(slave.st)->checkpoints > cps, __LINE__);
        side_down(&master);
        xy[0] = x;
        xy[1] = y;
        f = fopen(path, "w");
        child_check(f != NULL && fwrite(xy, sizeof(xy), 1, f) == 1, __LINE__);
        fclose(f);
        raise(SIGKILL);             /* kill -9: the page cache keeps every write */
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_eq(fread(xy, sizeof(xy), 1, f), 1u);
    fclose(f);
    side_up(&master, "m");
    side_up(&slave, "s");
    cr_assert_eq(rmq_store_reserved_off(slave.st), xy[1],
                 "the slave's log ends at %llu, not %llu: copied records were zeroed",
                 (unsigned long long)rmq_store_reserved_off(slave.st),
                 (unsigned long long)xy[1]);
    /* what HA does next: the master's bytes from there on; all of them parse */
    copy_range(rmq_store_reserved_off(slave.st), rmq_store_written_off(master.st), 5);
    for (int i = 0; i < 2000 && rmq_store_raw_parsed_off(slave.st) <
                                rmq_store_written_off(master.st); i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert_eq(rmq_store_stats(slave.st)->raw_bad_records, 0);
    cr_assert_eq(rmq_store_raw_parsed_off(slave.st), rmq_store_written_off(master.st));
    side_down(&slave);
    side_down(&master);
}
