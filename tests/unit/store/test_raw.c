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
#include <sys/stat.h>
#include <unistd.h>

#include "core/be.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "store/store.h"

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
side_up(struct side *sd, const char *name)
{
    struct rmq_store_config c = {.seg_size = SEG};

    snprintf(sd->dir, sizeof(sd->dir), "%s/%s", root, name);
    mkdir(sd->dir, 0755);
    c.root_dir = sd->dir;
    sd->disk = rmq_disk_uring_create(&loop, sd->dir);
    cr_assert_not_null(sd->disk);
    cr_assert_eq(rmq_store_open(&sd->st, &loop, sd->disk, &c), 0);
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
