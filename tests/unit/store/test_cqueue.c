/* Consume queues, pulls, checkpoint recovery, retention and disk-full handling. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <unistd.h>

#include "core/be.h"
#include "core/clock.h"
#include "core/util.h"
#include "core/record.h"
#include "tests/unit/store/harness.h"

TestSuite(cqueue, .init = store_setup, .fini = store_teardown, .timeout = 60);

/* Messages 0..n-1 into queue q (topic T<q%3>); every fifth carries tag B. */
static void
append_n(int from, int n, int q, uint32_t body)
{
    for (int i = from; i < from + n; i++) {
        fill(&msgs[i], i, body, q);
        if (i % 5 == 0) {
            msgs[i].m.rec.props = "TAGS\001B\002";
        }
        rmq_store_append(st, &msgs[i].m);
    }
    run_until_finished(from + n);
}

static void
get(int64_t off, uint32_t max, const int32_t *codes, uint32_t ncodes,
    struct rmq_store_range *r, struct rmq_get_result *out)
{
    rmq_store_get(st, "T0", 2, 0, off, max, codes, ncodes, r, out);
}

/* Every entry of T0/0 in [min, max) points at the record holding that queue offset. */
static void
verify_queue(int64_t want_max)
{
    static uint8_t buf[8192];
    struct rmq_cq *q = rmq_cq_find(st, "T0", 2, 0);

    cr_assert_not_null(q);
    cr_assert_eq(q->max, want_max, "max %lld want %lld", (long long)q->max,
                 (long long)want_max);
    for (int64_t i = q->min; i < q->max; i++) {
        struct rmq_cq_entry e;
        struct rmq_record r;

        rmq_cq_entry_decode(rmq_cq_entry(st, q, i), &e);
        cr_assert_eq(rmq_store_read(st, (uint64_t)e.phys_off, buf, (size_t)e.size), e.size,
                     "entry %lld unreadable", (long long)i);
        cr_assert_eq(rmq_record_decode(buf, (size_t)e.size, true, &r, NULL), e.size);
        cr_assert_eq(r.queue_off, i);
        cr_assert_eq(r.queue_id, 0);
        cr_assert_eq(e.tags_code, rmq_tag_hash(r.props + 5, 1));   /* "TAGS\001<t>\002" */
    }
}

Test(cqueue, entries_follow_the_log_and_pulls_map_to_statuses)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .cq_entries = 100};
    struct rmq_store_range r[1000];
    struct rmq_get_result g;
    int32_t tag_b = (int32_t)rmq_tag_hash("B", 1);
    int32_t nothing = 12345;
    char path[256];
    struct stat sb;
    int fd;
    uint8_t raw[RMQ_CQ_ENTRY_SIZE];
    struct rmq_cq_entry e;

    open_store(&cfg);
    append_n(0, 250, 0, 50);
    verify_queue(250);
    cr_assert_eq(rmq_store_queue_min(st, "T0", 2, 0), 0);
    cr_assert_eq(rmq_store_queue_min(st, "T9", 2, 0), -1);

    get(0, 32, NULL, 0, r, &g);
    cr_assert_eq(g.status, RMQ_GET_FOUND);
    cr_assert_eq(g.count, 32);
    cr_assert_eq(g.next_begin, 32);
    cr_assert_eq(g.max_off, 250);
    for (int i = 0; i < 32; i++) {
        cr_assert_eq(r[i].phys, (uint64_t)msgs[i].m.rec.phys_off);
        cr_assert_eq(r[i].len, msgs[i].m.rec.total_size);
    }
    /* a pull stops at the end of a consume queue file */
    get(90, 32, NULL, 0, r, &g);
    cr_assert_eq(g.count, 10);
    cr_assert_eq(g.next_begin, 100);
    /* the in-memory batch limit: 32 messages whatever the client asks */
    get(100, 1000, NULL, 0, r, &g);
    cr_assert_eq(g.count, 32);
    cr_assert_eq(g.next_begin, 132);
    /* tag filter: only B (every fifth); entries scanned count towards nextBeginOffset */
    get(1, 4, &tag_b, 1, r, &g);
    cr_assert_eq(g.status, RMQ_GET_FOUND);
    cr_assert_eq(g.count, 4);
    cr_assert_eq(r[0].phys, (uint64_t)msgs[5].m.rec.phys_off);
    cr_assert_eq(r[3].phys, (uint64_t)msgs[20].m.rec.phys_off);
    cr_assert_eq(g.next_begin, 21);
    get(0, 32, &nothing, 1, r, &g);
    cr_assert_eq(g.status, RMQ_GET_NO_MATCHED_MESSAGE);
    cr_assert_eq(g.next_begin, 100);
    /* the offset corrections */
    get(250, 32, NULL, 0, r, &g);
    cr_assert_eq(g.status, RMQ_GET_OFFSET_OVERFLOW_ONE);
    cr_assert_eq(g.next_begin, 250);
    get(300, 32, NULL, 0, r, &g);
    cr_assert_eq(g.status, RMQ_GET_OFFSET_OVERFLOW_BADLY);
    cr_assert_eq(g.next_begin, 250);
    rmq_store_get(st, "T0", 2, 7, 0, 32, NULL, 0, r, &g);
    cr_assert_eq(g.status, RMQ_GET_NO_MATCHED_LOGIC_QUEUE);
    cr_assert_str_eq(rmq_get_status_name(RMQ_GET_OFFSET_OVERFLOW_ONE), "OFFSET_OVERFLOW_ONE");

    /* files: 20-digit byte offsets, cq_entries * 20 bytes each, entries in the spec layout */
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof(path), "%s/consumequeue/T0/0/%020d", root, k * 2000);
        cr_assert_eq(stat(path, &sb), 0, "%s missing", path);
        cr_assert_eq(sb.st_size, 2000);
    }
    snprintf(path, sizeof(path), "%s/consumequeue/T0/0/%020d", root, 2000);
    fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, raw, sizeof(raw), 5 * RMQ_CQ_ENTRY_SIZE), (ssize_t)sizeof(raw));
    close(fd);
    rmq_cq_entry_decode(raw, &e);
    cr_assert_eq(e.phys_off, msgs[105].m.rec.phys_off);
    cr_assert_eq(e.size, (int32_t)msgs[105].m.rec.total_size);
    cr_assert_eq(e.tags_code, 66);             /* "B".hashCode() */

    /* an entry appears only once its record is written */
    fill(&msgs[250], 250, 10, 0);
    rmq_store_append(st, &msgs[250].m);
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 250);
    run_until_finished(251);
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 251);
}

Test(cqueue, invalid_topic_names_are_refused)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20};

    open_store(&cfg);
    fill(&msgs[0], 0, 10, 0);
    msgs[0].m.rec.topic = "../x";
    msgs[0].m.rec.topic_len = 4;
    rmq_store_append(st, &msgs[0].m);
    run_until_finished(1);
    cr_assert_eq(msgs[0].status, -EINVAL);

    /* names are checked for queues not seen yet; one existing must not let others by */
    fill(&msgs[1], 1, 10, 0);
    rmq_store_append(st, &msgs[1].m);
    run_until_finished(2);
    cr_assert_eq(msgs[1].status, 0);
    fill(&msgs[2], 2, 10, 0);
    msgs[2].m.rec.topic = "T0/x";
    msgs[2].m.rec.topic_len = 4;
    rmq_store_append(st, &msgs[2].m);
    fill(&msgs[3], 3, 10, 0);
    msgs[3].m.rec.topic = "T0\n";
    msgs[3].m.rec.topic_len = 3;
    rmq_store_append(st, &msgs[3].m);
    run_until_finished(4);
    cr_assert_eq(msgs[2].status, -EINVAL);
    cr_assert_eq(msgs[3].status, -EINVAL);
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 1);
}

Test(cqueue, clean_restart_trusts_the_checkpoint)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .cq_entries = 100};
    char path[256];
    uint64_t end;

    open_store(&cfg);
    snprintf(path, sizeof(path), "%s/abort", root);
    cr_assert_eq(access(path, F_OK), 0, "abort file while running");
    append_n(0, 300, 0, 40);
    end = rmq_store_written_off(st);
    close_store();
    cr_assert_neq(access(path, F_OK), 0, "abort file after a clean close");

    open_store(&cfg);
    cr_assert_eq(rmq_store_stats(st)->recovery_start, end);
    cr_assert_eq(rmq_store_stats(st)->recovered_bytes, 0);
    cr_assert_eq(rmq_store_stats(st)->cq_entries_rebuilt, 0);
    verify_queue(300);
    append_n(300, 5, 0, 40);
    cr_assert_eq(msgs[304].m.rec.queue_off, 304);
    verify_queue(305);
}

Test(cqueue, crash_recovery_scans_only_past_the_checkpoint)
{
    struct rmq_store_config cfg = {
        .seg_size = 1 << 20, .cq_entries = 100, .flush_type = RMQ_FLUSH_SYNC,
        .cq_flush_interval_ms = 60000,
    };
    uint64_t cp;

    open_store(&cfg);
    append_n(0, 200, 0, 40);
    checkpoint_now();
    cp = rmq_store_written_off(st);
    append_n(200, 100, 0, 40);
    crash_and_reopen(&cfg, 7);
    cr_assert_eq(rmq_store_stats(st)->recovery_start, cp);
    cr_assert_eq(rmq_store_stats(st)->cq_entries_rebuilt, 100);
    cr_assert_eq(rmq_store_stats(st)->recovered_bytes,
                 rmq_store_written_off(st) - cp);
    verify_queue(300);
}

/* Power loss among queue entries written after the checkpoint: holes and stale
 * entries pointing past the log end. Recovery rebuilds the one and erases the other. */
Test(cqueue, holes_and_stale_entries_past_the_checkpoint_are_repaired)
{
    struct rmq_store_config cfg = {
        .seg_size = 1 << 20, .cq_entries = 1000, .flush_type = RMQ_FLUSH_SYNC,
        .cq_flush_interval_ms = 60000,
    };
    char path[256];
    uint8_t ent[RMQ_CQ_ENTRY_SIZE];
    uint64_t end;
    int fd;

    open_store(&cfg);
    append_n(0, 50, 0, 40);
    checkpoint_now();
    append_n(50, 50, 0, 40);
    end = rmq_store_written_off(st);
    rmq_store_destroy(st);                      /* crash */
    st = NULL;
    snprintf(path, sizeof(path), "%s/consumequeue/T0/0/%020d", root, 0);
    fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    memset(ent, 0, sizeof(ent));
    cr_assert_eq(pwrite(fd, ent, sizeof(ent), 70 * RMQ_CQ_ENTRY_SIZE), (ssize_t)sizeof(ent));
    for (int k = 100; k < 120; k++) {
        struct rmq_cq_entry e = {(int64_t)end + k * 100, 100, 65};

        rmq_cq_entry_encode(ent, &e);
        cr_assert_eq(pwrite(fd, ent, sizeof(ent), (off_t)k * RMQ_CQ_ENTRY_SIZE),
                     (ssize_t)sizeof(ent));
    }
    close(fd);
    rmq_loop_fini(&loop);
    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    fake_disk_attach(fd_, &loop);
    open_store(&cfg);
    verify_queue(100);
    for (int64_t k = 100; k < 120; k++) {
        static const uint8_t zero[RMQ_CQ_ENTRY_SIZE];
        struct rmq_cq *q = rmq_cq_find(st, "T0", 2, 0);

        cr_assert_eq(memcmp(rmq_cq_entry(st, q, k), zero, sizeof(zero)), 0,
                     "stale entry %lld survived", (long long)k);
    }
    /* new messages take the freed offsets */
    append_n(100, 3, 0, 40);
    cr_assert_eq(msgs[100].m.rec.queue_off, 100);
    verify_queue(103);
}

/* A queue's next file is made once its last one is three quarters full, so dispatch
 * waits only for a queue's first file; entries stay right across the files. */
Test(cqueue, next_queue_file_is_made_ahead)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .cq_entries = 40};
    struct rmq_cq *q;

    open_store(&cfg);
    for (int i = 0; i < 200; i += 5) {
        append_n(i, 5, 0, 50);
    }
    q = rmq_cq_find(st, "T0", 2, 0);
    cr_assert_not_null(q);
    cr_assert_eq(rmq_store_stats(st)->cq_file_waits, 1, "waits %llu",
                 (unsigned long long)rmq_store_stats(st)->cq_file_waits);
    cr_assert_eq(q->seg_count, 6, "files %d (5 used, the sixth made ahead)", q->seg_count);
    verify_queue(200);
}

/* Store root on a disk filesystem: tmpfs has no readahead, no unwritten extents. */
static void
root_on_disk(void)
{
    struct statfs fs;

    cr_assert_eq(rmdir(root), 0);
    snprintf(root, sizeof(root), "/var/tmp/rmq-cq-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    cr_assert_eq(statfs(root, &fs), 0);
    if (fs.f_type == TMPFS_MAGIC) {
        cr_skip_test("%s is on tmpfs", root);
    }
}

/* Bytes of [from, to) of fd that are written blocks (after a sync), not preallocated-only
 * (unwritten) extents or holes. */
static uint64_t
written_bytes(int fd, uint64_t from, uint64_t to)
{
    static union {
        struct fiemap fm;
        char space[sizeof(struct fiemap) + 64 * sizeof(struct fiemap_extent)];
    } u;
    uint64_t n = 0;

    memset(&u, 0, sizeof(u));
    u.fm.fm_start = from;
    u.fm.fm_length = to - from;
    u.fm.fm_flags = FIEMAP_FLAG_SYNC;
    u.fm.fm_extent_count = 64;
    cr_assert_eq(ioctl(fd, FS_IOC_FIEMAP, &u.fm), 0, "FIEMAP: %s", strerror(errno));
    for (uint32_t i = 0; i < u.fm.fm_mapped_extents; i++) {
        const struct fiemap_extent *e = &u.fm.fm_extents[i];
        uint64_t a = RMQ_MAX(e->fe_logical, from);
        uint64_t b = RMQ_MIN(e->fe_logical + e->fe_length, to);

        if (!(e->fe_flags & FIEMAP_EXTENT_UNWRITTEN) && b > a) {
            n += b - a;
        }
    }
    return n;
}

/* A queue file made ahead is written with zeros before any entry lands in it: the
 * writer's first faults there must not allocate and zero pages (or read around), and
 * find large folios, not the 4 KiB ones a read-in leaves. */
Test(cqueue, a_queue_file_made_ahead_is_written_with_zeros_before_the_writer_comes)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .cq_entries = 1024};
    unsigned char resident[8];
    struct rmq_cq *q;
    int pages = 0;

    root_on_disk();
    open_store(&cfg);
    for (int i = 0; i < 800; i += 100) {
        append_n(i, 100, 0, 50);
    }
    q = rmq_cq_find(st, "T0", 2, 0);
    cr_assert_not_null(q);
    cr_assert_eq(q->seg_count, 2, "files %d: the second is made at three quarters of the first",
                 q->seg_count);
    cr_assert_eq(q->max, 800);
    /* 20,480 bytes: five pages, none written yet */
    cr_assert_eq(mincore(q->segs[1].map, 20480, resident), 0);
    for (int i = 0; i < 5; i++) {
        pages += resident[i] & 1;
    }
    cr_assert_eq(pages, 5, "%d of 5 pages of the next queue file in the page cache", pages);
    cr_assert_eq(written_bytes(q->segs[1].fd, 0, 20480), 20480,
                 "the next file holds written zeros, not a preallocation only");
    verify_queue(800);
}

/* A queue's first file: zeros over its first 256 KiB before its first entry is visible;
 * past that only a read-in, never zeros that could land after the writer's entries. */
Test(cqueue, a_first_queue_file_gets_zeros_over_its_first_256_kib_only)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .cq_entries = 65536};
    uint64_t size = 65536 * 20;
    struct rmq_cq *q;

    root_on_disk();
    open_store(&cfg);
    append_n(0, 10, 0, 50);
    q = rmq_cq_find(st, "T0", 2, 0);
    cr_assert_not_null(q);
    cr_assert_eq(q->seg_count, 1);
    cr_assert_eq(written_bytes(q->segs[0].fd, 0, 256 << 10), 256 << 10);
    cr_assert_eq(written_bytes(q->segs[0].fd, 256 << 10, size), 0,
                 "past the first 256 KiB the file is still a preallocation");
    verify_queue(10);
}

/* The queue directory cannot be made: dispatch pauses, nothing is lost, and entries
 * appear once the obstacle is gone. */
Test(cqueue, failed_queue_file_creation_pauses_dispatch_then_resumes)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .cq_entries = 100};
    char path[256];
    int fd;

    open_store(&cfg);
    append_n(0, 3, 1, 50);                      /* consumequeue/T1 exists now */
    snprintf(path, sizeof(path), "%s/consumequeue/T0", root);
    fd = open(path, O_WRONLY | O_CREAT, 0644);  /* a file where T0's directory goes */
    cr_assert_geq(fd, 0);
    close(fd);
    for (int i = 3; i < 13; i++) {
        fill(&msgs[i], i, 50, 0);
        rmq_store_append(st, &msgs[i].m);
    }
    run_for_ms(50);
    cr_assert_eq(finished, 13);
    for (int i = 3; i < 13; i++) {
        cr_assert_eq(msgs[i].status, 0, "appends are acknowledged: the log holds them");
    }
    cr_assert_geq(rmq_store_stats(st)->dispatch_stalls, 1);
    cr_assert_null(rmq_cq_find(st, "T0", 2, 0)->segs);
    cr_assert_eq(unlink(path), 0);
    run_for_ms(300);                            /* retried every 100 ms */
    verify_queue(10);
}

Test(cqueue, lost_queue_files_are_rebuilt_from_the_log)
{
    struct rmq_store_config cfg = {.seg_size = 4096, .cq_entries = 100};

    open_store(&cfg);
    append_n(0, 60, 0, 100);
    close_store();
    wipe_root(true);                            /* consumequeue/, checkpoint, abort gone */
    open_store(&cfg);
    cr_assert_eq(rmq_store_stats(st)->recovery_start, 0);
    verify_queue(60);
}

Test(cqueue, offset_by_time_and_earliest_store_time)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20};
    int64_t t0;
    int64_t t1;
    int64_t t2;

    open_store(&cfg);
    cr_assert_eq(rmq_store_earliest_time(st), -1);
    append_n(0, 10, 0, 10);
    run_for_ms(30);
    append_n(10, 10, 0, 10);
    run_for_ms(30);
    append_n(20, 10, 0, 10);
    t0 = msgs[0].m.rec.store_ts;
    t1 = msgs[10].m.rec.store_ts;
    t2 = msgs[20].m.rec.store_ts;
    cr_assert_gt(t1, msgs[9].m.rec.store_ts);
    cr_assert_gt(t2, msgs[19].m.rec.store_ts);
    cr_assert_eq(rmq_store_earliest_time(st), t0);
    cr_assert_eq(rmq_store_queue_earliest_time(st, "T0", 2, 0), t0);
    cr_assert_eq(rmq_store_queue_earliest_time(st, "T0", 2, 5), -1);
    /* exact hit: the first message stored at that time */
    cr_assert_eq(rmq_store_queue_offset_by_time(st, "T0", 2, 0, t1), 10);
    cr_assert_eq(rmq_store_queue_offset_by_time(st, "T0", 2, 0, t2), 20);
    /* before everything, after everything, nearer neighbour */
    cr_assert_eq(rmq_store_queue_offset_by_time(st, "T0", 2, 0, t0 - 1000), 0);
    cr_assert_eq(rmq_store_queue_offset_by_time(st, "T0", 2, 0, t2 + 100000), 29);
    cr_assert_eq(rmq_store_queue_offset_by_time(st, "T0", 2, 0, t1 - 1), 10);
    cr_assert_eq(rmq_store_queue_offset_by_time(st, "T0", 2, 0,
                                                msgs[9].m.rec.store_ts + 1), 9);
    cr_assert_eq(rmq_store_queue_offset_by_time(st, "T0", 2, 9, t1), 0);
}

Test(cqueue, retention_deletes_old_segments_and_queue_files)
{
    /* records of 300 bytes: 13 per 4 KiB segment; 10 entries per queue file */
    struct rmq_store_config cfg = {
        .seg_size = 4096, .cq_entries = 10, .flush_type = RMQ_FLUSH_SYNC,
        .file_reserved_ms = 1, .delete_hours_mask = 0xFFFFFF, .clean_interval_ms = 5,
    };
    struct rmq_store_range r[32];
    struct rmq_get_result g;
    int64_t min;
    uint64_t last_seg;

    open_store(&cfg);
    append_n(0, 130, 0, 200);
    last_seg = (uint64_t)msgs[129].m.rec.phys_off / 4096 * 4096;
    for (int i = 0; i < 2000 && rmq_store_min_off(st) < last_seg; i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert_eq(rmq_store_min_off(st), last_seg, "min %llu want %llu",
                 (unsigned long long)rmq_store_min_off(st), (unsigned long long)last_seg);
    cr_assert_eq(st->seg_count, 1);
    cr_assert_not(fake_disk_has_seg(fd_, 0));
    cr_assert_gt(rmq_store_stats(st)->cq_files_deleted, 0);
    min = rmq_store_queue_min(st, "T0", 2, 0);
    cr_assert_eq((uint64_t)msgs[min].m.rec.phys_off, last_seg, "queue min %lld", (long long)min);
    cr_assert_eq((uint64_t)msgs[min - 1].m.rec.phys_off < last_seg, true);
    get(0, 32, NULL, 0, r, &g);
    cr_assert_eq(g.status, RMQ_GET_OFFSET_TOO_SMALL);
    cr_assert_eq(g.next_begin, min);
    get(min, 32, NULL, 0, r, &g);
    cr_assert_eq(g.status, RMQ_GET_FOUND);
    cr_assert_eq(r[0].phys, last_seg);
    verify_queue(130);
    /* appends go on; after a restart the log starts where retention left it */
    append_n(130, 5, 0, 200);
    close_store();
    open_store(&cfg);
    cr_assert_geq(rmq_store_min_off(st), last_seg);
    verify_queue(135);
}

Test(cqueue, disk_over_the_warning_ratio_refuses_until_space_returns)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .clean_interval_ms = 5};

    fake_disk_set_space(fd_, 1000, 50);         /* 95% used */
    open_store(&cfg);
    fill(&msgs[0], 0, 10, 0);
    rmq_store_append(st, &msgs[0].m);
    run_until_finished(1);
    cr_assert_eq(msgs[0].status, -ENOSPC);
    cr_assert_eq(rmq_store_stats(st)->disk_full_refusals, 1);
    fake_disk_set_space(fd_, 1000, 500);
    run_for_ms(30);
    fill(&msgs[1], 1, 10, 0);
    rmq_store_append(st, &msgs[1].m);
    run_until_finished(2);
    cr_assert_eq(msgs[1].status, 0);
}

/* Appends are refused from diskSpaceWarningLevelRatio on; set below the forcible ratio,
 * segments must go from there too, or appends stay refused until some expire. */
Test(cqueue, refusing_for_space_below_the_forcible_ratio_still_cleans)
{
    struct rmq_store_config cfg = {
        .seg_size = 4096, .cq_entries = 10, .flush_type = RMQ_FLUSH_SYNC,
        .clean_interval_ms = 5, .disk_refuse_ratio = 80, .disk_force_ratio = 85,
    };

    open_store(&cfg);
    append_n(0, 60, 0, 200);                    /* about 5 segments, none expired */
    fake_disk_set_space(fd_, 1000, 180);        /* 82 % used */
    for (int i = 0; i < 3000 && st->seg_count > 1; i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert_eq(st->seg_count, 1, "%d segments kept", st->seg_count);
    cr_assert_geq(rmq_store_stats(st)->segments_deleted, 4);
    fill(&msgs[60], 60, 10, 0);
    rmq_store_append(st, &msgs[60].m);
    run_until_finished(61);
    cr_assert_eq(msgs[60].status, -ENOSPC, "still full: the fake's space does not change");
}

/* Dispatch stalls (a queue file cannot be made: a plain file sits where its topic's
 * directory goes) while the disk is over the forcible ratio. Retention keeps every
 * segment from the first record without its queue entry on: once dispatch resumes, the
 * entries point at records that exist. */
Test(cqueue, retention_keeps_segments_whose_records_are_not_dispatched)
{
    struct rmq_store_config cfg = {
        .seg_size = 4096, .cq_entries = 10, .flush_type = RMQ_FLUSH_SYNC,
        .clean_interval_ms = 5, .disk_refuse_ratio = 99, .disk_force_ratio = 85,
    };
    struct rmq_store_range r[8];
    struct rmq_get_result g;
    uint64_t stalled_at;
    char blocker[128];
    int fd;

    open_store(&cfg);
    append_n(0, 30, 0, 200);                    /* T0/0: its files exist */
    snprintf(blocker, sizeof(blocker), "%s/consumequeue/T1", root);
    fd = open(blocker, O_WRONLY | O_CREAT | O_EXCL, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    fill(&msgs[30], 30, 200, 1);                /* T1/1: a new queue, its file cannot be made */
    rmq_store_append(st, &msgs[30].m);
    for (int i = 31; i < 61; i++) {             /* more T0/0 behind it, two segments' worth */
        fill(&msgs[i], i, 200, 0);
        rmq_store_append(st, &msgs[i].m);
    }
    for (int i = 0; i < 3000 && finished < 61; i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert_eq(finished, 61);
    run_for_ms(20);                             /* dispatch tries, and stalls */
    stalled_at = (uint64_t)msgs[30].m.rec.phys_off;
    cr_assert_eq(rmq_store_dispatched_off(st), stalled_at, "dispatch did not stall");
    cr_assert_gt(rmq_store_stats(st)->dispatch_stalls, 0);
    fake_disk_set_space(fd_, 1000, 50);         /* 95 % used: forcible deletion */
    for (int i = 0; i < 3000 && rmq_store_stats(st)->segments_deleted == 0; i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    run_for_ms(300);                            /* steps 100 ms apart: all that may go */
    cr_assert_gt(rmq_store_stats(st)->segments_deleted, 0, "nothing was due anyway");
    cr_assert_leq(rmq_store_min_off(st), stalled_at, "a segment with undispatched records went");
    cr_assert_eq(unlink(blocker), 0);
    fake_disk_set_space(fd_, 1000, 900);
    for (int i = 0; i < 3000 && rmq_store_dispatched_off(st) < rmq_store_written_off(st); i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert_eq(rmq_store_dispatched_off(st), rmq_store_written_off(st));
    rmq_store_get(st, "T1", 2, 1, 0, 8, NULL, 0, r, &g);
    cr_assert_eq(g.status, RMQ_GET_FOUND);
    cr_assert_eq(r[0].phys, stalled_at);
}

/* A queue's next file failed to be made ahead of time; another queue's file was made
 * since, and the cause went away. When the queue reaches that file it is made then:
 * the old failure is not reported again as if it were new (a dispatch stall). */
Test(cqueue, an_old_failure_to_make_a_queue_file_is_not_reported_again)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .cq_entries = 10};
    char blocker[160];

    open_store(&cfg);
    /* where T0/0's second file goes (entry 10, byte 200), a directory: opening it fails */
    snprintf(blocker, sizeof(blocker), "%s/consumequeue/T0/0/%020d", root, 200);
    append_n(0, 1, 0, 50);
    cr_assert_eq(mkdir(blocker, 0755), 0);
    append_n(1, 7, 0, 50);                      /* entries 1-7: the early make (from 6) fails */
    fill(&msgs[8], 8, 50, 1);                   /* T1/1: a new queue's file is made */
    rmq_store_append(st, &msgs[8].m);
    run_until_finished(9);
    cr_assert_eq(rmdir(blocker), 0);
    cr_assert_eq(rmq_store_stats(st)->dispatch_stalls, 0);
    append_n(9, 4, 0, 50);                      /* entries 8-11: 10 and 11 in the second file */
    cr_assert_eq(rmq_store_stats(st)->dispatch_stalls, 0, "a stale failure stalled dispatch");
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 12);
}

Test(cqueue, no_room_for_the_next_segment_refuses_then_resumes)
{
    struct rmq_store_config cfg = {.seg_size = 4096, .flush_type = RMQ_FLUSH_SYNC};
    int refused = 0;
    int n = 0;

    open_store(&cfg);
    run_for_ms(5);                              /* the next segment is prepared */
    fake_disk_fail_prepare(fd_, -ENOSPC);
    for (; n < 60; n++) {                       /* ~4.5 segments worth of 300-byte records */
        fill(&msgs[n], n, 200, 0);
        rmq_store_append(st, &msgs[n].m);
        run_until_finished(n + 1);
        refused += msgs[n].status == -ENOSPC;
        cr_assert(msgs[n].status == 0 || msgs[n].status == -ENOSPC, "status %d",
                  msgs[n].status);
    }
    cr_assert_gt(refused, 0);
    cr_assert_lt(refused, 60);
    fake_disk_fail_prepare(fd_, 0);
    run_for_ms(1200);                           /* the retry runs every second */
    fill(&msgs[n], n, 200, 0);
    rmq_store_append(st, &msgs[n].m);
    run_until_finished(n + 1);
    cr_assert_eq(msgs[n].status, 0);
    verify_acked(n + 1);
}

static int arrivals;
static int64_t arrival_max;

static void
count_arrival(void *ctx, const char *topic, uint32_t topic_len, int32_t queue_id, int64_t max,
              int64_t tags_code)
{
    (void)ctx;
    (void)topic;
    (void)topic_len;
    (void)tags_code;
    if (queue_id == 0) {
        arrivals++;
        arrival_max = max;
    }
}

Test(cqueue, views_read_records_in_place_and_outlive_retention_while_pinned)
{
    struct rmq_store_config cfg = {
        .seg_size = 4096, .cq_entries = 10, .flush_type = RMQ_FLUSH_SYNC,
        .file_reserved_ms = 1, .delete_hours_mask = 0xFFFFFF, .clean_interval_ms = 5,
    };
    struct rmq_seg_map *pin, *pin2;
    struct rmq_record r;
    const uint8_t *p, *p2;
    uint64_t last_seg;

    open_store(&cfg);
    rmq_store_on_arrival(st, count_arrival, NULL);
    append_n(0, 3, 0, 200);
    cr_assert_eq(arrivals, 3, "one arrival per queue entry written");
    cr_assert_eq(arrival_max, 3);
    /* a view is the record itself, in place */
    cr_assert_eq(rmq_store_view(st, (uint64_t)msgs[0].m.rec.phys_off, msgs[0].m.rec.total_size,
                                &p, &pin), 0);
    cr_assert_eq(rmq_record_decode(p, msgs[0].m.rec.total_size, true, &r, NULL),
                 (int64_t)msgs[0].m.rec.total_size);
    cr_assert_eq(memcmp(r.body, msgs[0].body, r.body_len), 0);
    /* nothing past written, nothing across a segment end */
    cr_assert_eq(rmq_store_view(st, rmq_store_written_off(st), 1, &p2, &pin2), -ERANGE);
    cr_assert_eq(rmq_store_view(st, 4000, 200, &p2, &pin2), -ERANGE);
    /* retention deletes the pinned segment: the view stays readable until unpinned */
    append_n(3, 60, 0, 200);
    last_seg = (uint64_t)msgs[62].m.rec.phys_off / 4096 * 4096;
    for (int i = 0; i < 2000 && rmq_store_min_off(st) < last_seg; i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert_gt(rmq_store_min_off(st), 0, "segment 0 was not deleted");
    cr_assert_not(fake_disk_has_seg(fd_, 0));
    cr_assert_eq(fake_disk_unmapped_retired(fd_), 0, "unmapped while pinned");
    cr_assert_eq(rmq_record_decode(p, msgs[0].m.rec.total_size, true, &r, NULL),
                 (int64_t)msgs[0].m.rec.total_size, "a pinned view changed under its reader");
    cr_assert_eq(rmq_store_view(st, 0, 4, &p2, &pin2), -ERANGE, "deleted range viewable");
    rmq_store_unpin(st, pin);
    cr_assert_eq(fake_disk_unmapped_retired(fd_), 1, "the last unpin unmaps");
}

struct walked {
    int n;
    int first;
    int stop_after;
};

static int
walk_check(void *ctx, const struct rmq_record *rec, const uint8_t *raw, uint32_t size)
{
    struct walked *w = ctx;
    struct tmsg *t = &msgs[w->first + w->n];

    cr_assert_eq(rec->phys_off, t->m.rec.phys_off, "record %d", w->first + w->n);
    cr_assert_eq(size, (uint32_t)(t->m.end_off - (uint64_t)t->m.rec.phys_off));
    cr_assert_eq(rec->body_len, t->m.rec.body_len);
    cr_assert_eq(memcmp(rec->body, t->body, rec->body_len), 0);
    cr_assert_eq(raw + size, rec->body + rec->body_len + 1 + rec->topic_len + 2 + rec->props_len,
                 "raw bytes and the decoded record disagree");
    w->n++;
    return w->n == w->stop_after;
}

Test(cqueue, walk_visits_records_across_segments_and_release_lets_old_segments_go)
{
    /* 300-byte records: 13 per 4 KiB segment, so 40 records fill 4 segments */
    struct rmq_store_config cfg = {
        .seg_size = 4096, .cq_entries = 10, .flush_type = RMQ_FLUSH_SYNC, .clean_interval_ms = 5,
    };
    struct walked w = {0};
    uint64_t keep;

    open_store(&cfg);
    append_n(0, 40, 0, 200);
    cr_assert_eq(rmq_store_walk(st, 0, walk_check, &w), 0);
    cr_assert_eq(w.n, 40);
    w = (struct walked){.first = 20};
    cr_assert_eq(rmq_store_walk(st, (uint64_t)msgs[20].m.rec.phys_off, walk_check, &w), 0);
    cr_assert_eq(w.n, 20);
    w = (struct walked){.first = 13, .stop_after = 3};      /* from a segment start; stops */
    cr_assert_eq(rmq_store_walk(st, 4096, walk_check, &w), 0);
    cr_assert_eq(w.n, 3);
    w = (struct walked){0};
    cr_assert_eq(rmq_store_walk(st, 5, walk_check, &w), -EBADMSG, "not a record boundary");
    /* nothing expired: only the release lets segments go, and only those wholly below */
    run_for_ms(30);
    cr_assert_eq(rmq_store_min_off(st), 0);
    keep = (uint64_t)msgs[27].m.rec.phys_off / 4096 * 4096;
    rmq_store_release_below(st, (uint64_t)msgs[27].m.rec.phys_off);
    for (int i = 0; i < 2000 && rmq_store_min_off(st) < keep; i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    run_for_ms(30);
    cr_assert_eq(rmq_store_min_off(st), keep);
    w = (struct walked){.first = 26};
    cr_assert_eq(rmq_store_walk(st, 0, walk_check, &w), 0, "a walk below the log starts at it");
    cr_assert_eq(w.n, 14);
    cr_assert_eq((uint64_t)msgs[26].m.rec.phys_off, keep);
}
