/*
 * Messages delivered at an arbitrary time (RocketMQ 5.x properties TIMER_DELIVER_MS,
 * TIMER_DELAY_MS, TIMER_DELAY_SEC), to the millisecond, up to timerMaxDelaySec ahead.
 *
 * They are kept in the timer log: a second store under <storePathRootDir>/timerlog,
 * with its own segments and retention, so the commitlog's retention never removes a
 * message still waiting. Queue 0 of its topic rmq_sys_wheel_timer holds the messages
 * (tag code = delivery time); queue 1 holds one mark per delivered message (tag code =
 * its queue 0 offset). Waiting messages sit in a hierarchical timing wheel
 * (core/wheel.h) driven by one loop timer. When one comes due its record is appended to
 * its real topic and queue, the body read from the timer log's mapped segment, and only
 * then its mark is written. At start, the wheel is rebuilt from queue 0 minus the marks:
 * a graceful restart loses and repeats nothing; after kill -9, a message delivered
 * whose mark had not reached the log yet is delivered again (at least once).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "core/util.h"

#define TIMER_TOPIC_LEN (sizeof(RMQ_TIMER_TOPIC) - 1)
#define TIMER_SEG_SIZE (64ull << 20)
#define RETRY_MS 1000

struct timer_item {
    struct rmq_wheel_entry e;
    int64_t q0;                     /* its offset in the timer log's queue 0 */
    uint64_t phys;
    uint32_t size;
};

struct delivery {
    struct rmq_store_msg m;
    struct rmq_broker *b;
    struct timer_item *it;
    struct rmq_seg_map *pin;
    bool marking;                   /* the real message is stored; this is the mark */
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    char mark[48];
    char props[];
};

static const char *const timer_props[] = {"TIMER_DELIVER_MS", "TIMER_DELAY_MS", "TIMER_DELAY_SEC",
                                          "REAL_TOPIC", "REAL_QID", NULL};

/* ---- properties ------------------------------------------------------------------------ */

static int64_t
prop_i64(const char *props, size_t len, const char *name, bool *found)
{
    const char *v;
    size_t vl;
    int64_t x = 0;

    *found = rmq_props_get(props, len, name, &v, &vl);
    if (!*found) {
        return 0;
    }
    if (vl == 0 || vl > 18) {
        return -1;
    }
    for (size_t i = 0; i < vl; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

int64_t
rmq_broker__timer_deliver_ms(const struct rmq_broker *b, const char *props, size_t len)
{
    uint64_t now = rmq_clock_wall_ms();
    bool found;
    int64_t v = prop_i64(props, len, "TIMER_DELIVER_MS", &found);

    if (!found) {
        v = prop_i64(props, len, "TIMER_DELAY_MS", &found);
        if (found && v >= 0) {
            v += (int64_t)now;
        }
    }
    if (!found) {
        v = prop_i64(props, len, "TIMER_DELAY_SEC", &found);
        if (found && v >= 0) {
            v = v * 1000 + (int64_t)now;
        }
    }
    if (!found) {
        return 0;
    }
    if (v < 0 || v > (int64_t)now + b->cfg.timer_max_delay_sec * 1000) {
        return -1;
    }
    return v > (int64_t)now ? v : 0;
}

size_t
rmq_broker__timer_props(char *dst, const char *props, size_t len, const char *topic,
                        int32_t queue_id, int64_t deliver_ms)
{
    size_t n = rmq_broker__props_copy_without(dst, props, len, timer_props);

    n += (size_t)sprintf(dst + n, "REAL_TOPIC%c%s%cREAL_QID%c%d%cTIMER_DELIVER_MS%c%lld%c",
                         RMQ_PROP_NAME_SEP, topic, RMQ_PROP_SEP, RMQ_PROP_NAME_SEP,
                         (int)queue_id, RMQ_PROP_SEP, RMQ_PROP_NAME_SEP, (long long)deliver_ms,
                         RMQ_PROP_SEP);
    return n;
}

/* ---- the wheel ------------------------------------------------------------------------------- */

static void wheel_fire(struct rmq_timer *t);

static void
wheel_arm(struct rmq_broker *b)
{
    uint64_t next = rmq_wheel_next(&b->wheel);
    uint64_t now = rmq_clock_wall_ms();

    if (b->stopping || next == UINT64_MAX) {
        return;
    }
    rmq_timer_cancel(b->loop, &b->wheel_timer);
    rmq_timer_arm(b->loop, &b->wheel_timer, (next > now ? next - now : 0) * 1000000u, wheel_fire);
}

static void
item_add(struct rmq_broker *b, struct timer_item *it, uint64_t due)
{
    it->e.due_ms = due;
    rmq_wheel_add(&b->wheel, &it->e);
    wheel_arm(b);
}

static void
delivery_free(struct delivery *d)
{
    if (d->pin != NULL) {
        rmq_store_unpin(d->b->timer_store, d->pin);
    }
    d->b->sends_in_flight--;
    free(d);
}

static void
delivered(struct rmq_store_msg *m, int status)
{
    struct delivery *d = rmq_container_of(m, struct delivery, m);
    struct rmq_broker *b = d->b;
    int n;

    if (d->marking) {
        if (status != 0 && status != -ETIMEDOUT) {
            /* the message went out; a lost mark only means one more delivery after a crash */
            RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: timer mark for offset %lld not written "
                       "err=%s", (long long)d->it->q0, strerror(-status));
        }
        free(d->it);
        delivery_free(d);
        return;
    }
    if (status != 0 && status != -ETIMEDOUT) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: scheduled message for %s not stored err=%s, "
                   "retrying in %d ms", d->topic, strerror(-status), RETRY_MS);
        item_add(b, d->it, rmq_clock_wall_ms() + RETRY_MS);
        delivery_free(d);
        return;
    }
    /* stored: now its mark, in the same struct */
    rmq_store_unpin(b->timer_store, d->pin);
    d->pin = NULL;
    d->marking = true;
    n = snprintf(d->mark, sizeof(d->mark), "TIMER_OUT%c%lld%c", RMQ_PROP_NAME_SEP,
                 (long long)d->it->q0, RMQ_PROP_SEP);
    memset(&d->m.rec, 0, sizeof(d->m.rec));
    d->m.rec.queue_id = 1;
    d->m.rec.born_ts = (int64_t)rmq_clock_wall_ms();
    memcpy(d->m.rec.born_ip, b->store_ip, 4);
    memcpy(d->m.rec.store_ip, b->store_ip, 4);
    d->m.rec.store_port = (int32_t)b->srv.port;
    d->m.rec.topic = RMQ_TIMER_TOPIC;
    d->m.rec.topic_len = TIMER_TOPIC_LEN;
    d->m.rec.props = d->mark;
    d->m.rec.props_len = (uint16_t)n;
    rmq_store_append(b->timer_store, &d->m);
}

/* Append a due message to its real topic. */
static void
deliver(struct rmq_wheel_entry *e, void *ctx)
{
    static const char *const drop[] = {"TIMER_DELIVER_MS", "TIMER_DELAY_MS", "TIMER_DELAY_SEC",
                                       NULL};
    struct rmq_broker *b = ctx;
    struct timer_item *it = rmq_container_of(e, struct timer_item, e);
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    int32_t qid;
    struct delivery *d;

    if (rmq_broker__held_record(b->timer_store, it->phys, it->size, &rec, &pin, topic, &qid) < 0) {
        goto skip;
    }
    d = malloc(sizeof(*d) + rec.props_len + 1);
    if (d == NULL) {
        rmq_store_unpin(b->timer_store, pin);
        goto skip;
    }
    memset(d, 0, sizeof(*d));
    d->b = b;
    d->it = it;
    d->pin = pin;
    rmq_broker__held_to_real(b, &rec, topic, qid, drop, &d->m.rec, d->topic, d->props);
    d->m.done = delivered;
    b->sends_in_flight++;
    rmq_store_append(b->store, &d->m);
    return;
skip:
    RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: scheduled message at timer log offset %lld is "
               "unreadable, dropped", (long long)it->q0);
    free(it);
}

static void
wheel_fire(struct rmq_timer *t)
{
    struct rmq_broker *b = rmq_container_of(t, struct rmq_broker, wheel_timer);

    if (b->stopping) {
        return;
    }
    rmq_wheel_advance(&b->wheel, rmq_clock_wall_ms(), deliver, b);
    wheel_arm(b);
}

/* A message reached the timer log's queue 0: into the wheel. */
static void
timer_arrival(void *ctx, const char *topic, uint32_t topic_len, int32_t queue_id, int64_t max,
              int64_t tags_code)
{
    struct rmq_broker *b = ctx;
    struct rmq_cq_entry ce;
    struct timer_item *it;

    (void)topic;
    (void)topic_len;
    if (queue_id != 0 ||
        rmq_store_queue_entry(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0, max - 1, &ce) < 0) {
        return;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL) {
        RMQ_ERROR("broker: out of memory scheduling timer log offset %lld; it is delivered "
                  "after a restart", (long long)(max - 1));
        return;
    }
    it->q0 = max - 1;
    it->phys = (uint64_t)ce.phys_off;
    it->size = (uint32_t)ce.size;
    item_add(b, it, (uint64_t)tags_code);
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

/* The wheel from the log: every queue 0 entry without a mark in queue 1. */
static int
rebuild(struct rmq_broker *b)
{
    int64_t min0 = rmq_store_queue_min(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0);
    int64_t max0 = rmq_store_queue_max(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0);
    int64_t min1 = rmq_store_queue_min(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 1);
    int64_t max1 = rmq_store_queue_max(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 1);
    uint8_t *done;
    uint64_t pending = 0;

    if (min0 < 0 || max0 <= min0) {
        return 0;
    }
    done = calloc((size_t)(max0 - min0 + 7) / 8, 1);
    if (done == NULL) {
        return -ENOMEM;
    }
    for (int64_t q = RMQ_MAX(min1, 0); q < max1; q++) {
        struct rmq_cq_entry ce;

        if (rmq_store_queue_entry(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 1, q, &ce) == 0 &&
            ce.tags_code >= min0 && ce.tags_code < max0) {
            int64_t i = ce.tags_code - min0;

            done[i / 8] |= (uint8_t)(1u << (i % 8));
        }
    }
    for (int64_t q = min0; q < max0; q++) {
        struct rmq_cq_entry ce;
        struct timer_item *it;
        int64_t i = q - min0;

        if ((done[i / 8] >> (i % 8)) & 1 ||
            rmq_store_queue_entry(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0, q, &ce) < 0) {
            continue;
        }
        it = calloc(1, sizeof(*it));
        if (it == NULL) {
            free(done);
            return -ENOMEM;
        }
        it->q0 = q;
        it->phys = (uint64_t)ce.phys_off;
        it->size = (uint32_t)ce.size;
        it->e.due_ms = (uint64_t)ce.tags_code;
        rmq_wheel_add(&b->wheel, &it->e);
        pending++;
    }
    free(done);
    if (pending > 0) {
        RMQ_INFO("broker: %llu scheduled messages waiting in the timer log",
                 (unsigned long long)pending);
    }
    return 0;
}

int
rmq_broker__timer_init(struct rmq_broker *b)
{
    struct rmq_store_config cfg;
    char dir[RMQ_STORE_PATH_MAX + 32];
    int ret;

    rmq_wheel_init(&b->wheel, rmq_clock_wall_ms());
    memset(&cfg, 0, sizeof(cfg));
    ret = rmq_store_options_apply(&b->cfg.store, &cfg);
    if (ret < 0) {
        return ret;
    }
    snprintf(b->timer_root, sizeof(b->timer_root), "%s/timerlog", b->cfg.store.storePathRootDir);
    snprintf(dir, sizeof(dir), "%s/commitlog", b->timer_root);
    ret = rmq_mkdir_p(dir);
    if (ret < 0) {
        RMQ_ERROR("broker: timer log directory %s not created err=%s", dir, strerror(-ret));
        return ret;
    }
    /* its own segments, kept until every message in them was delivered (a year at most) */
    cfg.root_dir = b->timer_root;
    cfg.seg_size = TIMER_SEG_SIZE;
    cfg.file_reserved_ms = 365ull * 86400000;
    cfg.disk_force_ratio = 99;
    b->timer_disk = rmq_disk_uring_create(b->loop, dir);
    if (b->timer_disk == NULL) {
        return -ENOMEM;
    }
    ret = rmq_store_open(&b->timer_store, b->loop, b->timer_disk, &cfg);
    if (ret < 0) {
        b->timer_store = NULL;
        return ret;
    }
    rmq_store_on_arrival(b->timer_store, timer_arrival, b);
    return rebuild(b);
}

void
rmq_broker__timer_start(struct rmq_broker *b)
{
    wheel_arm(b);
}

void
rmq_broker__timer_stop(struct rmq_broker *b)
{
    rmq_timer_cancel(b->loop, &b->wheel_timer);
}

static void
free_item(struct rmq_wheel_entry *e, void *ctx)
{
    (void)ctx;
    free(rmq_container_of(e, struct timer_item, e));
}

void
rmq_broker__timer_fini(struct rmq_broker *b)
{
    rmq_timer_cancel(b->loop, &b->wheel_timer);
    rmq_wheel_advance(&b->wheel, UINT64_MAX >> 1, free_item, NULL);
    rmq_store_destroy(b->timer_store);
    b->timer_store = NULL;
    if (b->timer_disk != NULL) {
        rmq_disk_uring_destroy(b->timer_disk);
        b->timer_disk = NULL;
    }
}
