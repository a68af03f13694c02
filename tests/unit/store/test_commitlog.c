#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/util.h"
#include "tests/unit/store/harness.h"

TestSuite(commitlog, .init = store_setup, .fini = store_teardown);

Test(commitlog, append_read_back_and_reopen)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20};
    uint64_t end;

    open_store(&cfg);
    for (int i = 0; i < 500; i++) {
        fill(&msgs[i], i, (uint32_t)(i % 500), i % 4);
        rmq_store_append(st, &msgs[i].m);
    }
    run_until_finished(500);
    cr_assert_eq(acked, 500);
    cr_assert(rmq_store__check(st));
    for (int q = 0; q < 4; q++) {
        cr_assert_eq(rmq_store_queue_max(st, msgs[q].topic, (uint32_t)strlen(msgs[q].topic), q),
                     125);
    }
    /* queue offsets per (topic, queue) are dense and in order */
    cr_assert_eq(msgs[0].m.rec.queue_off, 0);
    cr_assert_eq(msgs[4].m.rec.queue_off, 1);
    cr_assert_eq(msgs[496].m.rec.queue_off, 124);
    verify_acked(500);
    end = rmq_store_written_off(st);
    cr_assert_eq(end, msgs[499].m.end_off);
    cr_assert_lt(rmq_store_stats(st)->writes, 500u, "no batching");
    close_store();

    open_store(&cfg);
    cr_assert_eq(rmq_store_written_off(st), end);
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 125);
    fill(&msgs[500], 500, 10, 0);
    rmq_store_append(st, &msgs[500].m);
    run_until_finished(501);
    cr_assert_eq(msgs[500].m.rec.phys_off, (int64_t)end);
    cr_assert_eq(msgs[500].m.rec.queue_off, 125);
    verify_acked(501);
}

/* Record sizes: head 88 + body + 1 + topic(2) + 2 + props(7) = 100 + body. */
Test(commitlog, segment_roll_at_the_exact_boundary)
{
    struct rmq_store_config cfg = {.seg_size = 4096};

    open_store(&cfg);
    /* 4096 - 8 = 4088 bytes may hold records: 3988 + 100 fills them exactly */
    fill(&msgs[0], 0, 3888 - 0, 0);         /* 3988-byte record */
    fill(&msgs[1], 1, 0, 0);                /* 100 bytes: ends exactly 8 before the end */
    rmq_store_append(st, &msgs[0].m);
    rmq_store_append(st, &msgs[1].m);
    run_until_finished(2);
    cr_assert_eq(msgs[0].m.rec.phys_off, 0);
    cr_assert_eq(msgs[1].m.rec.phys_off, 3988);
    cr_assert_eq(msgs[1].m.end_off, 4088);
    /* one byte more no longer fits: filler + next segment */
    fill(&msgs[2], 2, 1, 0);
    rmq_store_append(st, &msgs[2].m);
    run_until_finished(3);
    cr_assert_eq(msgs[2].m.rec.phys_off, 4096);
    cr_assert_eq(rmq_store_stats(st)->rolls, 1);
    verify_acked(3);
    close_store();
    /* the filler is recognised on reopen; the log continues in the second segment */
    open_store(&cfg);
    cr_assert_eq(rmq_store_written_off(st), 4096 + 101);
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 3);
}

Test(commitlog, sync_flush_is_a_group_commit)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .flush_type = RMQ_FLUSH_SYNC};

    open_store(&cfg);
    for (int i = 0; i < 256; i++) {
        fill(&msgs[i], i, 100, i % 2);
        rmq_store_append(st, &msgs[i].m);
    }
    run_until_finished(256);
    cr_assert_eq(acked, 256);
    cr_assert_eq(rmq_store_flushed_off(st), rmq_store_written_off(st));
    cr_assert_leq(fake_disk_syncs(fd_), 4, "%llu syncs for 256 appends",
                  (unsigned long long)fake_disk_syncs(fd_));
}

Test(commitlog, write_failure_is_sticky)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .flush_type = RMQ_FLUSH_SYNC};

    open_store(&cfg);
    fill(&msgs[0], 0, 10, 0);
    rmq_store_append(st, &msgs[0].m);
    run_until_finished(1);
    cr_assert_eq(msgs[0].status, 0);
    fake_disk_fail_write(fd_, 1, -EIO);
    fill(&msgs[1], 1, 10, 0);
    rmq_store_append(st, &msgs[1].m);
    run_until_finished(2);
    cr_assert_eq(msgs[1].status, -EIO);
    cr_assert_eq(rmq_store_error(st), -EIO);
    /* the disk works again, the store still refuses: nothing unsafe is acknowledged */
    fill(&msgs[2], 2, 10, 0);
    rmq_store_append(st, &msgs[2].m);
    run_until_finished(3);
    cr_assert_eq(msgs[2].status, -EIO);
    close_store();
}

/* Small batches put several writes in flight; the second fails. The writes behind it
 * may succeed on disk, yet `written` cannot pass the hole: every one of those appends
 * must still be answered, and with -EIO. */
Test(commitlog, appends_behind_a_failed_write_are_answered)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .batch_scratch = 512};
    int ok = 0;

    open_store(&cfg);
    fake_disk_fail_write(fd_, 2, -EIO);
    for (int i = 0; i < 60; i++) {
        fill(&msgs[i], i, 10, 0);
        rmq_store_append(st, &msgs[i].m);
    }
    run_until_finished(60);
    cr_assert_gt(rmq_store_stats(st)->writes, 2u, "not several writes");
    for (int i = 0; i < 60; i++) {
        cr_assert(msgs[i].status == 0 || msgs[i].status == -EIO, "status %d", msgs[i].status);
        /* acknowledged ones form a prefix of the log, before the failed write */
        cr_assert(msgs[i].status != 0 || ok == i, "append %d acked after a failure", i);
        ok += msgs[i].status == 0;
    }
    cr_assert_gt(ok, 0);
    cr_assert_lt(ok, 60);
    verify_acked(ok);
    close_store();
}

/* Loop iterations while cond holds, at most about two seconds' worth. */
#define run_while(cond)                                                                    \
    do {                                                                                   \
        for (int it_ = 0; it_ < 2000 && (cond); it_++) {                                   \
            cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);                            \
        }                                                                                  \
    } while (0)

/* Append message i (body bytes) with its write's completion held back by the disk. */
static void
append_with_write_held(int i, uint32_t body)
{
    fake_disk_hold_write(fd_, 1);
    fill(&msgs[i], i, body, 0);
    rmq_store_append(st, &msgs[i].m);
    for (int k = 0; k < 1000 && !fake_disk_write_held(fd_); k++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert(fake_disk_write_held(fd_));
}

/* The second write completes first; then the first fails. The second's append waited for
 * the first to move `written`, which now never happens: it is answered all the same. */
Test(commitlog, an_append_completed_behind_a_write_that_then_fails_is_answered)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20};

    open_store(&cfg);
    append_with_write_held(0, 10);
    fill(&msgs[1], 1, 10, 0);
    rmq_store_append(st, &msgs[1].m);
    run_while(rmq_store_stats(st)->writes < 2);
    cr_assert_eq(rmq_store_stats(st)->writes, 2);
    for (int i = 0; i < 10; i++) {          /* the second write's completion comes in */
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert(!msgs[1].done, "acknowledged ahead of the write before it");
    fake_disk_release_write(fd_, -EIO);
    run_until_finished(2);
    cr_assert_eq(msgs[0].status, -EIO);
    cr_assert_eq(msgs[1].status, -EIO);
    close_store();
}

static bool closed;

static void
close_done(struct rmq_store *s, void *arg)
{
    (void)s;
    (void)arg;
    closed = true;
}

static void
close_start(void)
{
    closed = false;
    rmq_store_close(st, close_done, NULL);
}

/* A close cancels the next segment's preparation. An append that was waiting for that
 * segment is refused (nothing of it was written) and the close completes. */
Test(commitlog, closing_while_an_append_waits_for_the_next_segment_refuses_it)
{
    struct rmq_store_config cfg = {.seg_size = 4096};

    open_store(&cfg);
    run_for_ms(5);                          /* the first next segment is ready */
    fake_disk_hold_prepares(fd_, true);
    fill(&msgs[0], 0, 3888, 0);             /* fills the first segment */
    fill(&msgs[1], 1, 3888, 0);             /* the prepared second one */
    fill(&msgs[2], 2, 3888, 0);             /* needs a third: its preparation is held */
    for (int i = 0; i < 3; i++) {
        rmq_store_append(st, &msgs[i].m);
    }
    run_while(finished < 2);
    cr_assert_eq(finished, 2);
    cr_assert(!msgs[2].done);
    close_start();
    run_while(!closed);
    cr_assert(closed, "the close never completed");
    cr_assert_eq(msgs[2].status, -ESHUTDOWN);
    verify_acked(2);
    rmq_store_destroy(st);
    st = NULL;
    fake_disk_hold_prepares(fd_, false);
}

/* ASYNC_FLUSH: a write still in flight when the flush timer fires for the last time
 * (closing does not re-arm it) is flushed once it completes, and the close completes. */
Test(commitlog, a_close_flushes_writes_that_complete_after_the_last_flush_timer)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .flush_interval_ms = 1,
                                   .flush_least_pages = 1u << 20};

    open_store(&cfg);
    append_with_write_held(0, 100);
    close_start();
    run_while(rmq_timer_is_armed(&st->flush_timer));   /* fires, and is not re-armed */
    cr_assert(!closed);
    cr_assert(!rmq_timer_is_armed(&st->flush_timer));
    fake_disk_release_write(fd_, (int32_t)msgs[0].m.end_off);
    run_while(!closed);
    cr_assert(closed, "the close never completed: written %llu, flushed %llu",
              (unsigned long long)rmq_store_written_off(st),
              (unsigned long long)rmq_store_flushed_off(st));
    cr_assert_eq(msgs[0].status, 0);
    cr_assert_eq(rmq_store_flushed_off(st), rmq_store_written_off(st));
    rmq_store_destroy(st);
    st = NULL;
}

/* kill -9 keeps the page cache: recovery finds records past the checkpoint that were
 * never fdatasync'd. They must be synced before any checkpoint claims them: here the
 * next checkpoint is taken, then power is lost before the kernel wrote them back. */
Test(commitlog, a_checkpoint_after_recovery_claims_only_what_was_synced)
{
    struct rmq_store_config cfg = {.seg_size = 64 << 10, .flush_interval_ms = 60000,
                                   .flush_least_pages = 1u << 20,
                                   .cq_flush_interval_ms = 60000};
    uint8_t buf[4096];
    int n = 40;

    open_store(&cfg);
    checkpoint_now();
    for (int i = 0; i < n; i++) {
        fill(&msgs[i], i, 3000, 0);
        rmq_store_append(st, &msgs[i].m);
    }
    run_until_finished(n);
    cr_assert_gt(st->seg_count, 1);
    kill9_and_reopen(&cfg);                 /* its unsynced writes stay in the page cache */
    run_for_ms(20);
    checkpoint_now();
    fake_disk_lose_unsynced(fd_);           /* power loss */
    kill9_and_reopen(&cfg);
    for (int i = 0; i < n && (uint64_t)msgs[i].m.end_off <= rmq_store_written_off(st); i++) {
        struct rmq_record r;
        ssize_t got = rmq_store_read(st, (uint64_t)msgs[i].m.rec.phys_off, buf,
                                     msgs[i].m.rec.total_size);

        cr_assert_eq(got, (ssize_t)msgs[i].m.rec.total_size);
        cr_assert_gt(rmq_record_decode(buf, (size_t)got, true, &r, NULL), 0,
                     "record %d lies below the log end but is not there", i);
    }
    verify_queues_against_log();
}

/* maxMessageSize lowered after larger records were stored, then an unclean start: the
 * recovery scan grows its buffer for them instead of ending the log (and zeroing the
 * rest) at the first record larger than today's limit allows. */
Test(commitlog, recovery_keeps_records_larger_than_todays_max_message_size)
{
    static uint8_t big[5 << 20];
    struct rmq_store_config cfg = {.seg_size = 32 << 20, .flush_type = RMQ_FLUSH_SYNC,
                                   .max_message_size = 8 << 20};
    uint8_t tail[4096];
    struct rmq_record r;

    memset(big, 'b', sizeof(big));
    open_store(&cfg);
    checkpoint_now();
    for (int i = 0; i < 3; i++) {
        fill(&msgs[i], i, 100, 0);
    }
    msgs[1].m.rec.body = big;
    msgs[1].m.rec.body_len = sizeof(big);
    for (int i = 0; i < 3; i++) {
        rmq_store_append(st, &msgs[i].m);
    }
    run_until_finished(3);
    cr_assert(msgs[0].status == 0 && msgs[1].status == 0 && msgs[2].status == 0);
    cfg.max_message_size = 1 << 20;         /* scan buffer: 4 MiB, the record is 5 MiB */
    kill9_and_reopen(&cfg);
    cr_assert_eq(rmq_store_written_off(st), msgs[2].m.end_off, "the log was cut at %llu",
                 (unsigned long long)rmq_store_written_off(st));
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 3);
    cr_assert_eq(rmq_store_read(st, (uint64_t)msgs[2].m.rec.phys_off, tail,
                                msgs[2].m.rec.total_size), (ssize_t)msgs[2].m.rec.total_size);
    cr_assert_gt(rmq_record_decode(tail, msgs[2].m.rec.total_size, true, &r, NULL), 0);
}

static bool renamed;

static void
rename_done(struct rmq_disk_req *req, int32_t res)
{
    req->res = res;
    renamed = true;
}

/* An empty slave's log moves to its master's offset by renaming its two files (the
 * prepared next segment first, moving up). A crash between the renames leaves the next
 * one apart from the current: the store still starts (that empty file is removed, the
 * move happens again), while a gap before a segment holding records refuses the start. */
Test(commitlog, a_move_interrupted_between_its_renames_leaves_a_log_that_starts)
{
    struct rmq_store_config cfg = {.seg_size = 4096};
    struct rmq_disk *disk = fake_disk_base(fd_);
    struct rmq_disk_req req = {.done = rename_done};
    const uint64_t to = 10 * 4096;

    open_store(&cfg);
    run_while(st->next_handle < 0);
    cr_assert_geq(st->next_handle, 0);
    renamed = false;
    disk->ops->rename(disk, st->next_handle, to + 4096, &req);  /* the first rename */
    run_while(!renamed);
    cr_assert_eq(req.res, 0);
    kill9_and_reopen(&cfg);
    cr_assert_not(fake_disk_has_seg(fd_, to + 4096), "the stray segment is still there");
    cr_assert_eq(rmq_store_written_off(st), 0);
    fill(&msgs[0], 0, 10, 0);
    rmq_store_append(st, &msgs[0].m);
    run_until_finished(1);
    cr_assert_eq(msgs[0].status, 0);
    cr_assert_eq(msgs[0].m.rec.phys_off, 0);

    /* the same gap before a file that holds data: a real gap */
    run_while(st->next_handle < 0);
    renamed = false;
    disk->ops->rename(disk, st->next_handle, to + 4096, &req);
    run_while(!renamed);
    fake_disk_poke(fd_, to + 4096, 3, 0x40);     /* a record's size field */
    rmq_store_destroy(st);
    st = NULL;
    rmq_loop_fini(&loop);
    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    fake_disk_attach(fd_, &loop);
    cfg.root_dir = root;
    cr_assert_eq(rmq_store_open(&st, &loop, disk, &cfg), -EBADMSG);
    st = NULL;
}

Test(commitlog, sync_failure_is_sticky)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20, .flush_type = RMQ_FLUSH_SYNC};

    open_store(&cfg);
    fake_disk_fail_sync(fd_, 1, -EIO);
    fill(&msgs[0], 0, 10, 0);
    rmq_store_append(st, &msgs[0].m);
    run_until_finished(1);
    cr_assert_eq(msgs[0].status, -EIO);
    fill(&msgs[1], 1, 10, 0);
    rmq_store_append(st, &msgs[1].m);
    run_until_finished(2);
    cr_assert_eq(msgs[1].status, -EIO);
    close_store();
}

Test(commitlog, slow_sync_answers_flush_disk_timeout)
{
    struct rmq_store_config cfg = {
        .seg_size = 1 << 20, .flush_type = RMQ_FLUSH_SYNC, .sync_flush_timeout_ms = 50,
    };

    open_store(&cfg);
    fake_disk_hold_syncs(fd_, true);
    fill(&msgs[0], 0, 10, 0);
    rmq_store_append(st, &msgs[0].m);
    run_until_finished(1);
    cr_assert_eq(msgs[0].status, -ETIMEDOUT);      /* stored, durability not confirmed */
    cr_assert_eq(rmq_store_stats(st)->flush_timeouts, 1);
    fake_disk_hold_syncs(fd_, false);
    close_store();
}

Test(commitlog, oversized_records_are_refused)
{
    struct rmq_store_config cfg = {.seg_size = 4096, .max_message_size = 500};

    open_store(&cfg);
    fill(&msgs[0], 0, 501, 0);
    rmq_store_append(st, &msgs[0].m);
    fill(&msgs[1], 1, 500, 0);
    rmq_store_append(st, &msgs[1].m);
    run_until_finished(2);
    cr_assert_eq(msgs[0].status, -EMSGSIZE);
    cr_assert_eq(msgs[1].status, 0);
}

Test(commitlog, corrupt_record_in_the_middle_ends_the_log_there)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20};
    uint64_t cut;

    open_store(&cfg);
    for (int i = 0; i < 10; i++) {
        fill(&msgs[i], i, 50, 0);
        rmq_store_append(st, &msgs[i].m);
    }
    run_until_finished(10);
    /* a crash before any checkpoint: recovery scans (and validates) from the start */
    cr_assert_eq(rmq_store_stats(st)->checkpoints, 0);
    rmq_store_destroy(st);
    st = NULL;
    cut = (uint64_t)msgs[6].m.rec.phys_off;
    fake_disk_poke(fd_, 0, cut + 88 + 3, 0xFF);      /* a body byte: CRC mismatch */
    open_store(&cfg);
    cr_assert_eq(rmq_store_written_off(st), cut);
    cr_assert_eq(rmq_store_queue_max(st, "T0", 2, 0), 6);
    fill(&msgs[10], 10, 20, 0);
    rmq_store_append(st, &msgs[10].m);
    run_until_finished(11);
    cr_assert_eq(msgs[10].m.rec.phys_off, (int64_t)cut);
    cr_assert_eq(msgs[10].m.rec.queue_off, 6);
}

/*
 * Deterministic crash simulation: a random workload under SYNC_FLUSH, a crash at a
 * random moment with every unsynced write kept, lost, torn or garbled by the seed;
 * after recovery every acknowledged record is there byte for byte, the log ends on
 * a record boundary and queue offsets agree with what survived.
 */
Test(commitlog, crash_simulation_keeps_every_acknowledged_record, .timeout = 120)
{
    int seeds = getenv("RMQ_CRASH_SEEDS") ? atoi(getenv("RMQ_CRASH_SEEDS")) : 2000;
    long sync_acked = 0;        /* acknowledged under SYNC_FLUSH before the crash */
    long lost = 0;              /* appended, not acknowledged, gone after recovery */
    long from_checkpoint = 0;   /* recoveries that started past the log's beginning */

    for (int seed = 1; seed <= seeds; seed++) {
        struct rmq_store_config cfg = {
            .seg_size = 8192, .flush_type = (seed % 4) ? RMQ_FLUSH_SYNC : RMQ_FLUSH_ASYNC,
            .flush_least_pages = 1, .cq_entries = 50,
        };
        uint32_t rs = (uint32_t)seed * 7919u;
        int n = 0;
        int steps;
        int64_t qmax[4] = {0, 0, 0, 0};

        open_store(&cfg);
        steps = 5 + (int)(rs % 40);
        for (int step = 0; step < steps; step++) {
            int burst;

            rs = rs * 1103515245u + 12345u;
            burst = 1 + (int)((rs >> 8) % 6);
            if (step == steps / 2 && (seed & 1)) {
                /* let queue files made through the ring arrive, so the checkpoint has
                 * dispatched records to cover */
                for (int w = 0; w < 50 && (!rmq_cq_maker_idle(st) ||
                                           st->dispatched_off < st->written_off); w++) {
                    rmq_loop_run_once(&loop, 1000000);
                }
                rmq_store__checkpoint(st);  /* lands, or not, before the crash */
                for (int w = 0; w < (seed >> 1) % 8; w++) {
                    rmq_loop_run_once(&loop, 1000000);
                }
            }
            for (int k = 0; k < burst && n < 200; k++, n++) {
                rs = rs * 1103515245u + 12345u;
                fill(&msgs[n], n, (rs >> 8) % 600, (int)((rs >> 20) % 4));
                rmq_store_append(st, &msgs[n].m);
            }
            rmq_loop_run_once(&loop, 0);
        }
        rmq_loop_run_once(&loop, 0);
        /* crash: no close, pending completions vanish */
        garble_queue_tails((uint32_t)seed);
        fake_disk_crash(fd_, (uint32_t)seed);
        rmq_store_destroy(st);
        st = NULL;
        rmq_loop_fini(&loop);
        cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
        fake_disk_attach(fd_, &loop);

        open_store(&cfg);
        cr_assert(rmq_store__check(st));
        for (int i = 0; i < n; i++) {
            struct tmsg *t = &msgs[i];

            /* ASYNC_FLUSH acknowledges before fdatasync: only SYNC acks must survive */
            if (cfg.flush_type == RMQ_FLUSH_SYNC && t->done && t->status == 0) {
                sync_acked++;
                cr_assert_geq(rmq_store_written_off(st), t->m.end_off,
                              "seed %d: acked msg %d lost", seed, i);
            }
            lost += !t->done && (t->m.end_off == 0 || rmq_store_written_off(st) < t->m.end_off);
            if (t->done && t->status == 0 && rmq_store_written_off(st) >= t->m.end_off) {
                int q = t->m.rec.queue_id;

                qmax[q] = t->m.rec.queue_off + 1 > qmax[q] ? t->m.rec.queue_off + 1 : qmax[q];
            }
        }
        if (cfg.flush_type == RMQ_FLUSH_SYNC) {
            verify_acked(n);
        }
        verify_queues_against_log();
        from_checkpoint += rmq_store_stats(st)->recovery_start > 0;
        /* what survived is whole: queue offsets never below what acked records need */
        for (int q = 0; q < 4; q++) {
            char topic[8];

            snprintf(topic, sizeof(topic), "T%d", q % 3);
            cr_assert_geq(rmq_store_queue_max(st, topic, (uint32_t)strlen(topic), q), qmax[q],
                          "seed %d queue %d", seed, q);
        }
        close_store();
        fake_disk_destroy(fd_);
        fd_ = fake_disk_create(&loop);
        wipe_root(true);
        memset(msgs, 0, sizeof(struct tmsg) * (size_t)n);
        acked = finished = 0;
    }
    /* the workload really crashes mid-flight: some acknowledged, some lost */
    cr_assert_gt(sync_acked, 0);
    cr_assert_gt(lost, 0);
    cr_assert_gt(from_checkpoint, seeds / 10, "%ld of %d", from_checkpoint, seeds);
}

/* Store timestamps are wall-clock ms, read once per 64 records placed in one go: each
 * lies between the clock before and after its append, and never goes back. */
Test(commitlog, store_timestamps_follow_the_wall_clock_and_never_go_back)
{
    struct rmq_store_config cfg = {.seg_size = 1 << 20};
    int64_t before[5];
    int64_t after[5];

    open_store(&cfg);
    for (int round = 0; round < 5; round++) {
        before[round] = (int64_t)rmq_clock_wall_ms();
        for (int i = round * 100; i < round * 100 + 100; i++) {
            fill(&msgs[i], i, 16, i % 4);
            rmq_store_append(st, &msgs[i].m);
        }
        run_until_finished(round * 100 + 100);
        after[round] = (int64_t)rmq_clock_wall_ms();
        run_for_ms(3);
    }
    for (int i = 0; i < 500; i++) {
        int64_t ts = msgs[i].m.rec.store_ts;

        cr_assert_geq(ts, before[i / 100], "record %d", i);
        cr_assert_leq(ts, after[i / 100], "record %d", i);
        cr_assert(i == 0 || ts >= msgs[i - 1].m.rec.store_ts, "record %d went back", i);
    }
    cr_assert_gt(msgs[499].m.rec.store_ts, msgs[0].m.rec.store_ts, "the clock was read again");
}
