/*
 * Replication between two stores on one loop over real loopback sockets: the slave's
 * log becomes byte-identical to the master's (empty slave, slave behind, new appends
 * while connected), SYNC_MASTER waits complete on acks, refuse without a slave and
 * time out when the slave goes away, and a slave whose log diverged from or is ahead
 * of the master's stops instead of appending.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/be.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/util.h"
#include "ha/ha.h"
#include "store/store.h"

#define SEG (128u << 10)
#define MSGS 3000

static char root[64];
static struct rmq_loop loop;

struct side {
    char dir[128];
    struct rmq_disk *disk;
    struct rmq_store *st;
};

static struct side ms, ss;
static struct rmq_ha_master *master;
static struct rmq_ha_slave *slave;

struct amsg {
    struct rmq_store_msg m;
    uint8_t body[300];
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

static const struct rmq_ha_config ha_cfg = {
    .bind_addr = "127.0.0.1", .heartbeat_ms = 200, .housekeeping_ms = 2000, .retry_ms = 100,
};

static void
master_up(void)
{
    cr_assert_eq(rmq_ha_master_create(&master, &loop, ms.st, &ha_cfg), 0);
}

static void
slave_up(void)
{
    char addr[32];

    cr_assert_eq(rmq_ha_slave_create(&slave, &loop, ss.st, &ha_cfg), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", rmq_ha_master_port(master));
    rmq_ha_slave_set_master(slave, addr);
}

static bool stopped;

static void
stop_done(void *arg)
{
    (void)arg;
    stopped = true;
}

static void
run_until_stopped(void)
{
    for (int i = 0; i < 5000 && !stopped; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert(stopped);
    stopped = false;
}

static void
slave_down(void)
{
    rmq_ha_slave_stop(slave, stop_done, NULL);
    run_until_stopped();
    rmq_ha_slave_destroy(slave);
    slave = NULL;
}

static void
master_down(void)
{
    rmq_ha_master_stop(master, stop_done, NULL);
    run_until_stopped();
    rmq_ha_master_destroy(master);
    master = NULL;
}

static void
setup(void)
{
    rmq_log_set_level(RMQ_LOG_WARN);
    snprintf(root, sizeof(root), "/tmp/rmq-ha-XXXXXX");
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

TestSuite(ha, .init = setup, .fini = teardown, .timeout = 120);

/* Append msgs [from, from + n) to a store (the master, or a slave made to diverge). */
static void
append_to(struct rmq_store *st, int from, int n, uint8_t salt)
{
    int want = finished + n;

    for (int i = from; i < from + n; i++) {
        struct amsg *a = &msgs[i];

        memset(a, 0, sizeof(*a));
        rmq_put_be32(a->body, (uint32_t)i);
        for (size_t k = 4; k < sizeof(a->body); k++) {
            a->body[k] = (uint8_t)(i + k + salt);
        }
        a->m.rec.topic = i % 2 ? "HaTopicA" : "HaTopicB";
        a->m.rec.topic_len = 8;
        a->m.rec.queue_id = i % 4;
        a->m.rec.body = a->body;
        a->m.rec.body_len = 20 + (uint32_t)(i * 13) % (sizeof(a->body) - 20);
        a->m.done = amsg_done;
        rmq_store_append(st, &a->m);
    }
    while (finished < want) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
}

static void
wait_caught_up(void)
{
    for (int i = 0; i < 20000; i++) {
        if (rmq_store_written_off(ss.st) == rmq_store_written_off(ms.st) &&
            rmq_ha_master_stats(master)->acked_off == rmq_store_written_off(ms.st)) {
            return;
        }
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert_fail("slave at %llu, master at %llu",
                   (unsigned long long)rmq_store_written_off(ss.st),
                   (unsigned long long)rmq_store_written_off(ms.st));
}

static void
assert_identical(uint64_t from)
{
    static uint8_t a[SEG], b[SEG];
    uint64_t end = rmq_store_written_off(ms.st);

    cr_assert_eq(rmq_store_written_off(ss.st), end);
    for (uint64_t off = from; off < end;) {
        uint32_t len = (uint32_t)RMQ_MIN((uint64_t)SEG - off % SEG, end - off);

        cr_assert_eq(rmq_store_read(ms.st, off, a, len), (ssize_t)len);
        cr_assert_eq(rmq_store_read(ss.st, off, b, len), (ssize_t)len);
        cr_assert(memcmp(a, b, len) == 0, "logs differ in [%llu, +%u)", (unsigned long long)off,
                  len);
        off += len;
    }
}

Test(ha, an_empty_slave_copies_the_log_and_follows_new_appends)
{
    uint64_t start;

    side_up(&ms, "m");
    side_up(&ss, "s");
    append_to(ms.st, 0, 1000, 0);
    /* an empty slave starts at the master's newest segment (HA.md §2.2) */
    start = rmq_store_written_off(ms.st) - rmq_store_written_off(ms.st) % SEG;
    cr_assert_gt(start, 0, "the test wants the master past its first segment");
    master_up();
    slave_up();
    wait_caught_up();
    cr_assert_eq(rmq_store_min_off(ss.st), start);
    assert_identical(start);
    append_to(ms.st, 1000, MSGS - 1000, 0);    /* several segments, across rolls */
    cr_assert_gt(rmq_store_written_off(ms.st), start + 3 * SEG);
    wait_caught_up();
    assert_identical(start);
    cr_assert_null(rmq_ha_slave_diverged(slave));
    cr_assert_eq(rmq_ha_master_stats(master)->slaves, 1);
    slave_down();
    master_down();
    side_down(&ss);
    side_down(&ms);
}

Test(ha, a_slave_behind_resumes_after_reconnecting_and_checks_its_tail)
{
    side_up(&ms, "m");
    side_up(&ss, "s");
    master_up();
    slave_up();
    append_to(ms.st, 0, 500, 0);
    wait_caught_up();
    slave_down();
    append_to(ms.st, 500, 1500, 0);            /* written while the slave is away */
    slave_up();
    wait_caught_up();
    assert_identical(0);
    cr_assert_gt(rmq_ha_slave_stats(slave)->verified_bytes, 0);
    slave_down();
    master_down();
    side_down(&ss);
    side_down(&ms);
}

struct wait_box {
    struct rmq_ha_wait w;
    bool done;
    int status;
};

static void
wait_done(struct rmq_ha_wait *w, int status)
{
    struct wait_box *b = rmq_container_of(w, struct wait_box, w);

    b->done = true;
    b->status = status;
}

Test(ha, sync_waits_complete_on_the_slaves_ack_refuse_without_one_and_time_out)
{
    struct wait_box b = {.w.done = wait_done};

    side_up(&ms, "m");
    side_up(&ss, "s");
    master_up();
    append_to(ms.st, 0, 10, 0);
    /* no slave: refused at once */
    cr_assert_eq(rmq_ha_master_wait(master, &b.w, rmq_store_written_off(ms.st), 1000), -EAGAIN);
    slave_up();
    wait_caught_up();
    append_to(ms.st, 10, 1, 0);
    cr_assert_eq(rmq_ha_master_wait(master, &b.w, rmq_store_written_off(ms.st), 5000), 0);
    for (int i = 0; i < 5000 && !b.done; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert(b.done);
    cr_assert_eq(b.status, 0);
    /* a target the slave acked already: answered 0 (through the loop, not inline) */
    b.done = false;
    cr_assert_eq(rmq_ha_master_wait(master, &b.w, rmq_store_written_off(ms.st) - 10, 5000), 0);
    cr_assert(!b.done);
    for (int i = 0; i < 100 && !b.done; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert(b.done);
    cr_assert_eq(b.status, 0);
    /* a target beyond anything written, while connected: the deadline answers */
    b.done = false;
    cr_assert_eq(rmq_ha_master_wait(master, &b.w, rmq_store_written_off(ms.st) + 100, 200), 0);
    for (int i = 0; i < 5000 && !b.done; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert(b.done);
    cr_assert_eq(b.status, -ETIMEDOUT);
    /* the slave leaves: refused again once the master notices */
    slave_down();
    for (int i = 0; i < 3000 && rmq_ha_master_stats(master)->slaves != 0; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert_eq(rmq_ha_master_wait(master, &b.w, rmq_store_written_off(ms.st), 1000), -EAGAIN);
    master_down();
    side_down(&ss);
    side_down(&ms);
}

static void
wait_diverged(void)
{
    for (int i = 0; i < 10000 && rmq_ha_slave_diverged(slave) == NULL; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert_not_null(rmq_ha_slave_diverged(slave));
}

Test(ha, a_slave_whose_log_diverged_stops_and_writes_nothing)
{
    uint64_t before;

    side_up(&ms, "m");
    side_up(&ss, "s");
    append_to(ms.st, 0, 300, 0);
    append_to(ss.st, 0, 300, 7);               /* same shape, other bytes */
    cr_assert_eq(rmq_store_written_off(ss.st), rmq_store_written_off(ms.st));
    append_to(ms.st, 300, 100, 0);
    before = rmq_store_written_off(ss.st);
    master_up();
    slave_up();
    wait_diverged();
    cr_assert(strstr(rmq_ha_slave_diverged(slave), "differ") != NULL, "%s",
              rmq_ha_slave_diverged(slave));
    for (int i = 0; i < 300; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert_eq(rmq_store_written_off(ss.st), before, "nothing appended after divergence");
    slave_down();
    master_down();
    side_down(&ss);
    side_down(&ms);
}

Test(ha, a_slave_ahead_of_its_master_stops)
{
    side_up(&ms, "m");
    side_up(&ss, "s");
    append_to(ms.st, 0, 100, 0);
    append_to(ss.st, 0, 200, 0);               /* the master lost its tail */
    master_up();
    slave_up();
    wait_diverged();
    cr_assert(strstr(rmq_ha_slave_diverged(slave), "ahead") != NULL, "%s",
              rmq_ha_slave_diverged(slave));
    cr_assert_eq(rmq_ha_master_stats(master)->slaves_refused, 1);
    slave_down();
    master_down();
    side_down(&ss);
    side_down(&ms);
}

/* A peer on the master's HA port that says "empty" (offset 0) and never acks anything
 * else; returns its socket once the master counts it as a slave. */
static int
empty_peer_up(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    uint8_t zero[8] = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_port = htons(rmq_ha_master_port(master));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(write(fd, zero, sizeof(zero)), (ssize_t)sizeof(zero));
    for (int i = 0; i < 2000 && rmq_ha_master_stats(master)->slaves == 0; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    return fd;
}

Test(ha, an_empty_slave_starting_at_the_newest_segment_acks_nothing_before_it)
{
    struct wait_box b = {.w.done = wait_done};
    uint64_t start;
    int fd;

    side_up(&ms, "m");
    append_to(ms.st, 0, 1000, 0);
    start = rmq_store_written_off(ms.st) - rmq_store_written_off(ms.st) % SEG;
    cr_assert_gt(start, 0);
    master_up();
    fd = empty_peer_up();
    cr_assert_eq(rmq_ha_master_stats(master)->slaves, 1);
    cr_assert_eq(rmq_ha_master_stats(master)->acked_off, 0, "it has none of the log");
    cr_assert_eq(rmq_ha_master_wait(master, &b.w, start, 200), 0);
    for (int i = 0; i < 2000 && !b.done; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert(b.done);
    cr_assert_eq(b.status, -ETIMEDOUT, "a record no slave has must not count as replicated");
    close(fd);
    master_down();
    side_down(&ms);
}

/* A slave with less than RMQ_HA_VERIFY_BYTES of log asked for offset 0, which means "an
 * empty slave": the master, past its first segment, sent the newest one, and the healthy
 * slave saw a gap and stopped for good. */
Test(ha, a_slave_with_a_small_log_is_not_taken_for_an_empty_one)
{
    side_up(&ms, "m");
    side_up(&ss, "s");
    master_up();
    slave_up();
    append_to(ms.st, 0, 5, 0);                  /* well under 4 KiB */
    wait_caught_up();
    cr_assert_lt(rmq_store_written_off(ss.st), RMQ_HA_VERIFY_BYTES);
    slave_down();
    append_to(ms.st, 5, 1500, 0);              /* the master moves past its first segment */
    cr_assert_gt(rmq_store_written_off(ms.st), SEG);
    slave_up();
    for (int i = 0; i < 3000 && rmq_ha_slave_diverged(slave) == NULL &&
                    rmq_store_written_off(ss.st) != rmq_store_written_off(ms.st); i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert_null(rmq_ha_slave_diverged(slave), "diverged: %s", rmq_ha_slave_diverged(slave));
    wait_caught_up();
    assert_identical(0);
    slave_down();
    master_down();
    side_down(&ss);
    side_down(&ms);
}

/* A reconnecting slave's first offset is where to start, not an ack: it has yet to
 * compare its tail. A diverged slave used to complete a SYNC_MASTER wait with it. */
Test(ha, a_diverged_slave_reconnecting_completes_no_wait)
{
    struct wait_box b = {.w.done = wait_done};
    uint64_t target;
    int fd;

    side_up(&ms, "m");
    side_up(&ss, "s");
    append_to(ms.st, 0, 300, 0);
    append_to(ss.st, 0, 300, 7);               /* same shape, other bytes: diverged */
    target = rmq_store_written_off(ms.st) - 2 * RMQ_HA_VERIFY_BYTES;
    master_up();
    fd = empty_peer_up();                       /* another slave: the master takes waits */
    cr_assert_eq(rmq_ha_master_wait(master, &b.w, target, 3000), 0);
    slave_up();                                 /* the diverged one */
    for (int i = 0; i < 5000 && !b.done; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert(b.done);
    cr_assert_neq(b.status, 0, "a wait answered OK although no slave has the bytes");
    cr_assert_not_null(rmq_ha_slave_diverged(slave));
    close(fd);
    slave_down();
    master_down();
    side_down(&ss);
    side_down(&ms);
}
