/* Store test harness: a store on the fake disk with a throwaway root; see harness.h. */
#include "tests/unit/store/harness.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/be.h"
#include "core/util.h"
#include "core/record.h"

struct rmq_loop loop;
struct fake_disk *fd_;
struct rmq_store *st;
struct tmsg msgs[MAXMSG];
int acked;
int finished;

static void
msg_done(struct rmq_store_msg *m, int status)
{
    struct tmsg *t = rmq_container_of(m, struct tmsg, m);

    cr_assert_not(t->done, "done twice");
    t->done = true;
    t->status = status;
    finished++;
    acked += status == 0;
}

void
fill(struct tmsg *t, int i, uint32_t body_len, int queue_id)
{
    static const uint8_t lo[4] = {127, 0, 0, 1};

    memset(t, 0, sizeof(*t));
    for (uint32_t k = 0; k < body_len; k++) {
        t->body[k] = (uint8_t)(i * 7 + k);
    }
    snprintf(t->topic, sizeof(t->topic), "T%d", queue_id % 3);
    t->m.rec.topic = t->topic;
    t->m.rec.topic_len = (uint8_t)strlen(t->topic);
    t->m.rec.queue_id = queue_id;
    t->m.rec.body = t->body;
    t->m.rec.body_len = body_len;
    t->m.rec.born_ts = 1700000000000LL + i;
    memcpy(t->m.rec.born_ip, lo, 4);
    memcpy(t->m.rec.store_ip, lo, 4);
    t->m.rec.store_port = 10911;
    t->m.rec.props = "TAGS\001A\002";
    t->m.rec.props_len = 7;
    t->m.done = msg_done;
}

void
run_until_finished(int want)
{
    for (int i = 0; i < 100000 && finished < want; i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
    cr_assert_eq(finished, want, "finished %d of %d", finished, want);
    /* queue files are made through the ring: entries may follow the acks a little */
    for (int i = 0; i < 10000 && st->error == 0 &&
                    (st->dispatched_off < st->written_off || !rmq_cq_maker_idle(st)); i++) {
        cr_assert_eq(rmq_loop_run_once(&loop, 1000000), 0);
    }
}

char root[64];

void
open_store(struct rmq_store_config *cfg)
{
    cfg->root_dir = root;
    cr_assert_eq(rmq_store_open(&st, &loop, fake_disk_base(fd_), cfg), 0);
}

void
close_store(void)
{
    cr_assert_eq(rmq_store_close_wait(st, 10000000000ull), 0);
    rmq_store_destroy(st);
    st = NULL;
}

/* Remove the store root (or just empty it for the next round). */
static int
remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

void
wipe_root(bool keep)
{
    /* no rm -rf child: the crash simulation wipes thousands of times */
    cr_assert_eq(nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    if (keep) {
        cr_assert_eq(mkdir(root, 0700), 0);
    }
}

void
store_setup(void)
{
    rmq_log_set_level(RMQ_LOG_WARN);
    /* tmpfs when there is one: fdatasync is free there and the fake disk is the subject */
    snprintf(root, sizeof(root), "%s/rmq-cl-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    cr_assert_not_null(mkdtemp(root));
    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    fd_ = fake_disk_create(&loop);
    acked = finished = 0;
}

void
store_teardown(void)
{
    if (st != NULL) {
        rmq_store_destroy(st);
        st = NULL;
    }
    fake_disk_destroy(fd_);
    rmq_loop_fini(&loop);
    wipe_root(false);
}

/* Every acknowledged message reads back byte for byte from the log. */
void
verify_acked(int n)
{
    static uint8_t buf[8192];

    for (int i = 0; i < n; i++) {
        struct rmq_record r;
        struct tmsg *t = &msgs[i];

        if (!t->done || t->status != 0) {
            continue;
        }
        cr_assert_eq(rmq_store_read(st, (uint64_t)t->m.rec.phys_off, buf, t->m.rec.total_size),
                     (ssize_t)t->m.rec.total_size, "msg %d unreadable", i);
        cr_assert_eq(rmq_record_decode(buf, t->m.rec.total_size, true, &r, NULL),
                     t->m.rec.total_size, "msg %d corrupt", i);
        cr_assert_eq(r.body_len, t->m.rec.body_len);
        cr_assert_eq(memcmp(r.body, t->body, r.body_len), 0, "msg %d body differs", i);
        cr_assert_eq(r.queue_off, t->m.rec.queue_off);
        cr_assert_eq(r.queue_id, t->m.rec.queue_id);
    }
}


void
kill9_and_reopen(struct rmq_store_config *cfg)
{
    rmq_store_destroy(st);
    st = NULL;
    rmq_loop_fini(&loop);
    cr_assert_eq(rmq_loop_init(&loop, NULL), 0);
    fake_disk_attach(fd_, &loop);
    open_store(cfg);
}

void
crash_and_reopen(struct rmq_store_config *cfg, uint32_t seed)
{
    fake_disk_crash(fd_, seed);
    kill9_and_reopen(cfg);
}

void
run_for_ms(uint64_t ms)
{
    uint64_t end = rmq_clock_mono_ns() + ms * 1000000u;

    while (rmq_clock_mono_ns() < end) {
        rmq_loop_run_once(&loop, 1000000);
    }
}

void
checkpoint_now(void)
{
    uint64_t before = rmq_store_stats(st)->checkpoints;

    rmq_store__checkpoint(st);
    for (int i = 0; i < 10000 && rmq_store_stats(st)->checkpoints == before; i++) {
        rmq_loop_run_once(&loop, 1000000);
    }
    cr_assert_gt(rmq_store_stats(st)->checkpoints, before, "checkpoint did not complete");
}

void
garble_queue_tails(uint32_t seed)
{
    uint32_t rs = seed * 2654435761u + 1;
    /* a checkpoint in flight may land in the real file before the "crash": its entries
     * were fdatasync'd first, so they are as safe as the landed checkpoint's */
    uint64_t p = st->cp_in_flight ? RMQ_MAX(st->cp_off, st->cp_target) : st->cp_off;

    for (uint32_t i = 0; i < st->cq_cap; i++) {
        struct rmq_cq *q = st->cqs[i];

        if (q == NULL || q->seg_count == 0) {
            continue;
        }
        for (int64_t k = q->min; k < q->max + 4; k++) {
            uint8_t *e = (uint8_t *)rmq_cq_entry(st, q, k);
            struct rmq_cq_entry stale = {(int64_t)(st->written_off + 100u * (uint64_t)k), 100, 1};

            if (e == NULL || (k < q->max && rmq_get_be64(e) < p)) {
                continue;                   /* fdatasync'd before the checkpoint: intact */
            }
            rs = rs * 1103515245u + 12345u;
            switch ((rs >> 16) % 4) {
            case 0:
                memset(e, 0, RMQ_CQ_ENTRY_SIZE);
                break;
            case 1:
                rmq_cq_entry_encode(e, &stale);
                break;
            default:
                break;
            }
        }
    }
}

void
verify_queues_against_log(void)
{
    static uint8_t buf[8192];
    uint64_t off = st->min_off;
    uint32_t nq = 0;
    int64_t counts[64] = {0};
    struct rmq_cq *qs[64];

    while (off < st->written_off) {
        struct rmq_record r;
        uint32_t blank = 0;
        int64_t n;
        size_t len = (size_t)RMQ_MIN((uint64_t)sizeof(buf), st->written_off - off);
        uint64_t seg_end = off - off % st->cfg.seg_size + st->cfg.seg_size;
        struct rmq_cq *q;
        struct rmq_cq_entry e;
        uint32_t qi;

        len = (size_t)RMQ_MIN((uint64_t)len, seg_end - off);
        cr_assert_eq(rmq_store_read(st, off, buf, len), (ssize_t)len);
        n = rmq_record_decode(buf, len, true, &r, &blank);
        if (n == 0) {
            off = seg_end;                  /* filler */
            continue;
        }
        cr_assert_gt(n, 0, "bad record at %llu below written", (unsigned long long)off);
        q = rmq_cq_find(st, r.topic, r.topic_len, r.queue_id);
        cr_assert_not_null(q);
        for (qi = 0; qi < nq && qs[qi] != q; qi++) {
        }
        if (qi == nq) {
            qs[nq++] = q;
        }
        cr_assert_eq(r.queue_off, counts[qi], "queue offsets not dense");
        counts[qi]++;
        rmq_cq_entry_decode(rmq_cq_entry(st, q, r.queue_off), &e);
        cr_assert_eq(e.phys_off, (int64_t)off, "queue %s/%d entry %lld points at %lld, record "
                     "at %llu", q->topic, (int)q->queue_id, (long long)r.queue_off,
                     (long long)e.phys_off, (unsigned long long)off);
        cr_assert_eq(e.size, (int32_t)n);
        off += (uint64_t)n;
    }
    for (uint32_t i = 0; i < nq; i++) {
        cr_assert_eq(qs[i]->max, counts[i], "queue %s/%d max %lld, log holds %lld",
                     qs[i]->topic, (int)qs[i]->queue_id, (long long)qs[i]->max,
                     (long long)counts[i]);
        for (int64_t k = qs[i]->max; k < qs[i]->max + 4; k++) {
            static const uint8_t zero[RMQ_CQ_ENTRY_SIZE];
            const uint8_t *e = rmq_cq_entry(st, qs[i], k);

            cr_assert(e == NULL || memcmp(e, zero, sizeof(zero)) == 0,
                      "entry past max survived");
        }
    }
}
