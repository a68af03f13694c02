/*
 * Messages delivered at an arbitrary time (RocketMQ 5.x properties TIMER_DELIVER_MS,
 * TIMER_DELAY_MS, TIMER_DELAY_SEC), to the millisecond, up to timerMaxDelaySec ahead.
 *
 * They are kept in the timer log: a second store under <storePathRootDir>/timerlog,
 * with its own segments (mappedFileSizeTimerLog), so the commitlog's retention never
 * removes a message still waiting. Queue 0 of its topic rmq_sys_wheel_timer holds the
 * messages (tag code = delivery time); queue 1 holds one mark per delivered message
 * (tag code = its queue 0 offset). Waiting messages sit in a hierarchical timing wheel
 * (core/wheel.h) driven by one loop timer. When one comes due its record is appended to
 * its real topic and queue, the body read from the timer log's mapped segment, carrying
 * TIMER_FROM=<queue 0 offset>; then its mark is written. At start the wheel is rebuilt
 * from queue 0 minus the marks, minus the copies the commitlog walk found (a kill -9
 * between a delivery and its mark): no message is lost or delivered twice.
 *
 * Space: a segment goes as soon as every message in it was delivered (the store is told
 * with rmq_store_release_below), never by age. So that one far-off message does not
 * keep every later segment, the oldest segment is compacted when it is at most half
 * waiting messages, or when waiting messages fill at most half the log: its messages
 * not due within the next two checks (cleanResourceInterval apart) are appended again
 * at the log's head (TIMER_ROLLED_FROM names the older copy, which then gets a mark). The log stays within about twice the
 * waiting bytes plus two segments.
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
#define RETRY_MS 1000
#define ROLLS_IN_FLIGHT_MAX 1024

struct timer_item {
    struct rmq_wheel_entry e;
    struct rmq_link seg_link;       /* on its segment's list */
    int64_t q0;                     /* its offset in the timer log's queue 0 */
    uint64_t phys;
    uint32_t size;
    bool rolling;
};

/* The waiting messages of one timer log segment. */
struct rmq_timer_seg {
    struct rmq_link items;
    uint32_t count;
    uint64_t bytes;
};

enum phase {
    DELIVERING,                     /* the real message, into the commitlog */
    MARKING,                        /* its mark, into queue 1 */
    ROLLING,                        /* a copy at the timer log's head */
    ROLL_MARKING,                   /* the older copy's mark */
};

struct delivery {
    struct rmq_store_msg m;
    struct rmq_broker *b;
    struct timer_item *it;          /* NULL for a mark found by the start's walk */
    int64_t q0;                     /* what the mark names */
    struct rmq_seg_map *pin;
    struct rmq_link fifo;           /* on b->timer_fifo until the mark is written */
    uint64_t from;                  /* commitlog offset the delivery went at or after */
    enum phase phase;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    char mark[48];
    char props[];
};

static const char *const timer_props[] = {"TIMER_DELIVER_MS", "TIMER_DELAY_MS", "TIMER_DELAY_SEC",
                                          "REAL_TOPIC", "REAL_QID", RMQ_PROP_TIMER_FROM,
                                          RMQ_PROP_SCHEDULE_FROM, RMQ_PROP_TIMER_ROLLED_FROM,
                                          NULL};

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

/* ---- segments: what each still holds ------------------------------------------------------- */

static uint64_t
seg_size(const struct rmq_broker *b)
{
    return (uint64_t)b->cfg.timer_seg_size;
}

/* The bookkeeping of segment idx, made when missing; NULL below the tracked range or
 * out of memory. */
static struct rmq_timer_seg *
seg_get(struct rmq_broker *b, uint64_t idx)
{
    uint64_t rel;

    if (idx < b->tseg_base) {
        return NULL;
    }
    rel = idx - b->tseg_base;
    if (rel >= b->tseg_cap) {
        uint32_t cap = RMQ_MAX(b->tseg_cap * 2, 16u);
        struct rmq_timer_seg **n;

        while (cap <= rel) {
            cap *= 2;
        }
        n = realloc(b->tsegs, cap * sizeof(*n));
        if (n == NULL) {
            return NULL;
        }
        memset(n + b->tseg_cap, 0, (cap - b->tseg_cap) * sizeof(*n));
        b->tsegs = n;
        b->tseg_cap = cap;
    }
    if (b->tsegs[rel] == NULL) {
        b->tsegs[rel] = calloc(1, sizeof(**b->tsegs));
        if (b->tsegs[rel] != NULL) {
            rmq_list_init(&b->tsegs[rel]->items);
        }
    }
    return b->tsegs[rel];
}

static void
item_track(struct rmq_broker *b, struct timer_item *it)
{
    struct rmq_timer_seg *sg = seg_get(b, it->phys / seg_size(b));

    rmq_list_init(&it->seg_link);
    if (sg == NULL) {
        /* untracked: its segment may go before it is delivered; log it, as that loses it */
        RMQ_ERROR("broker: timer log offset %lld not tracked (out of memory): no timer log "
                  "segment is released until a restart", (long long)it->q0);
        b->tseg_broken = true;
        return;
    }
    rmq_list_add_tail(&sg->items, &it->seg_link);
    sg->count++;
    sg->bytes += it->size;
    b->timer_waiting++;
    b->timer_waiting_bytes += it->size;
}

/* Segments below the oldest one still holding a waiting message are not needed. */
static void
release_delivered(struct rmq_broker *b)
{
    uint64_t done_below = rmq_store_dispatched_off(b->timer_store) / seg_size(b);
    uint64_t base = b->tseg_base;
    uint32_t shift = 0;

    if (b->tsegs == NULL || b->tseg_broken) {
        return;                 /* nothing tracked yet, or a message could not be */
    }
    while (base + shift < done_below && shift < b->tseg_cap &&
           (b->tsegs[shift] == NULL || b->tsegs[shift]->count == 0)) {
        free(b->tsegs[shift]);
        b->tsegs[shift] = NULL;
        shift++;
    }
    if (shift == 0) {
        return;
    }
    memmove(b->tsegs, b->tsegs + shift, (b->tseg_cap - shift) * sizeof(*b->tsegs));
    memset(b->tsegs + b->tseg_cap - shift, 0, shift * sizeof(*b->tsegs));
    b->tseg_base = base + shift;
    rmq_store_release_below(b->timer_store, b->tseg_base * seg_size(b));
}

static void
item_untrack(struct rmq_broker *b, struct timer_item *it)
{
    struct rmq_timer_seg *sg;

    if (!rmq_link_is_linked(&it->seg_link)) {
        return;
    }
    rmq_list_del(&it->seg_link);
    sg = b->tsegs[it->phys / seg_size(b) - b->tseg_base];
    sg->count--;
    sg->bytes -= it->size;
    b->timer_waiting--;
    b->timer_waiting_bytes -= it->size;
}

static void
item_done(struct rmq_broker *b, struct timer_item *it)
{
    item_untrack(b, it);
    free(it);
    release_delivered(b);
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

static struct delivery *
delivery_new(struct rmq_broker *b, struct timer_item *it, size_t props_cap)
{
    struct delivery *d = malloc(sizeof(*d) + props_cap);

    if (d != NULL) {
        memset(d, 0, sizeof(*d));
        d->b = b;
        d->it = it;
        d->q0 = it != NULL ? it->q0 : -1;
        rmq_list_init(&d->fifo);
        b->sends_in_flight++;
    }
    return d;
}

static void
delivery_free(struct delivery *d)
{
    if (d->pin != NULL) {
        rmq_store_unpin(d->b->timer_store, d->pin);
    }
    if (rmq_link_is_linked(&d->fifo)) {
        rmq_list_del(&d->fifo);
    }
    d->b->sends_in_flight--;
    free(d);
}

static void on_stored(struct rmq_store_msg *m, int status);

/* Append the mark "queue 0 offset d->q0 is done" to queue 1, reusing d. */
static void
mark_append(struct delivery *d, enum phase phase)
{
    struct rmq_broker *b = d->b;
    int n;

    if (d->pin != NULL) {
        rmq_store_unpin(b->timer_store, d->pin);
        d->pin = NULL;
    }
    d->phase = phase;
    n = snprintf(d->mark, sizeof(d->mark), "TIMER_OUT%c%lld%c", RMQ_PROP_NAME_SEP,
                 (long long)d->q0, RMQ_PROP_SEP);
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
    d->m.done = on_stored;
    rmq_store_append(b->timer_store, &d->m);
}

static void
on_stored(struct rmq_store_msg *m, int status)
{
    struct delivery *d = rmq_container_of(m, struct delivery, m);
    struct rmq_broker *b = d->b;
    struct timer_item *it = d->it;
    bool ok = status == 0 || status == -ETIMEDOUT;

    switch (d->phase) {
    case DELIVERING:
        if (!ok) {
            RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: scheduled message for %s not stored "
                       "err=%s, retrying in %d ms", d->topic, strerror(-status), RETRY_MS);
            item_add(b, it, rmq_clock_wall_ms() + RETRY_MS);
            delivery_free(d);
            return;
        }
        d->it = NULL;
        item_done(b, it);
        mark_append(d, MARKING);
        return;
    case MARKING:
    case ROLL_MARKING:
        if (!ok) {
            /* the copy carries TIMER_FROM / the newer copy TIMER_ROLLED_FROM: the next
             * start still knows it as done, if its walk reaches it */
            RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: timer mark for offset %lld not written "
                       "err=%s", (long long)d->q0, strerror(-status));
        }
        if (d->phase == ROLL_MARKING) {
            b->timer_rolls_in_flight--;
        }
        delivery_free(d);
        return;
    case ROLLING:
        if (!ok) {
            RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: timer log compaction of offset %lld "
                       "failed err=%s; the message waits where it was", (long long)d->q0,
                       strerror(-status));
            it->rolling = false;
            item_add(b, it, it->e.due_ms);
            b->timer_rolls_in_flight--;
            delivery_free(d);
            return;
        }
        /* the new copy reached queue 0 and the wheel (timer_arrival); the old one goes */
        b->stats.timer_rolled++;
        d->it = NULL;
        item_done(b, it);
        mark_append(d, ROLL_MARKING);
        return;
    }
}

static int
prop_mark(char *props, size_t at, const char *name, long long v)
{
    char val[24];
    int n = snprintf(val, sizeof(val), "%lld", v);

    if (at + strlen(name) + (size_t)n + 2 > RMQ_RECORD_PROPS_MAX) {
        return 0;                   /* no room: this message is delivered at least once */
    }
    return (int)rmq_broker__props_add(props + at, name, val, (size_t)n);
}

/* Append a due message to its real topic. */
static void
deliver(struct rmq_wheel_entry *e, void *ctx)
{
    static const char *const drop[] = {"TIMER_DELIVER_MS", "TIMER_DELAY_MS", "TIMER_DELAY_SEC",
                                       RMQ_PROP_TIMER_ROLLED_FROM, RMQ_PROP_TIMER_FROM, NULL};
    struct rmq_broker *b = ctx;
    struct timer_item *it = rmq_container_of(e, struct timer_item, e);
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    int32_t qid;
    struct delivery *d;

    if (rmq_broker__held_record(b->timer_store, it->phys, it->size, &rec, &pin, topic, &qid) < 0) {
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: scheduled message at timer log offset %lld "
                   "is unreadable, dropped", (long long)it->q0);
        item_done(b, it);
        return;
    }
    d = delivery_new(b, it, rec.props_len + 48u);
    if (d == NULL) {
        rmq_store_unpin(b->timer_store, pin);
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: out of memory delivering timer log offset "
                   "%lld, retrying in %d ms", (long long)it->q0, RETRY_MS);
        item_add(b, it, rmq_clock_wall_ms() + RETRY_MS);
        return;
    }
    d->pin = pin;
    rmq_broker__held_to_real(b, &rec, topic, qid, drop, &d->m.rec, d->topic, d->props);
    d->m.rec.props_len += (uint16_t)prop_mark(d->props, d->m.rec.props_len, RMQ_PROP_TIMER_FROM,
                                              it->q0);
    d->m.done = on_stored;
    d->phase = DELIVERING;
    d->from = rmq_store_written_off(b->store);
    rmq_list_add_tail(&b->timer_fifo, &d->fifo);
    rmq_store_append(b->store, &d->m);
}

uint64_t
rmq_broker__timer_horizon(const struct rmq_broker *b)
{
    if (rmq_list_is_empty(&b->timer_fifo)) {
        return UINT64_MAX;
    }
    return rmq_container_of(b->timer_fifo.next, struct delivery, fifo)->from;
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

static struct timer_item *
item_new(struct rmq_broker *b, int64_t q0, const struct rmq_cq_entry *ce)
{
    struct timer_item *it = calloc(1, sizeof(*it));

    if (it == NULL) {
        return NULL;
    }
    it->q0 = q0;
    it->phys = (uint64_t)ce->phys_off;
    it->size = (uint32_t)ce->size;
    item_track(b, it);
    return it;
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
    it = item_new(b, max - 1, &ce);
    if (it == NULL) {
        RMQ_ERROR("broker: out of memory scheduling timer log offset %lld; it is delivered "
                  "after a restart", (long long)(max - 1));
        return;
    }
    item_add(b, it, (uint64_t)tags_code);
}

/* ---- compaction: the oldest segment's far-off messages move to the head ----------------- */

static void
roll_one(struct rmq_broker *b, struct timer_item *it)
{
    static const char *const drop[] = {RMQ_PROP_TIMER_ROLLED_FROM, NULL};
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    int32_t qid;
    struct delivery *d;

    if (rmq_broker__held_record(b->timer_store, it->phys, it->size, &rec, &pin, topic, &qid) < 0) {
        return;                     /* its delivery reports it */
    }
    d = delivery_new(b, it, rec.props_len + 48u);
    if (d == NULL) {
        rmq_store_unpin(b->timer_store, pin);
        return;
    }
    rmq_wheel_del(&b->wheel, &it->e);
    it->rolling = true;
    d->pin = pin;
    d->phase = ROLLING;
    rmq_broker__held_to_real(b, &rec, RMQ_TIMER_TOPIC, 0, drop, &d->m.rec, d->topic, d->props);
    d->m.rec.props_len += (uint16_t)prop_mark(d->props, d->m.rec.props_len,
                                              RMQ_PROP_TIMER_ROLLED_FROM, it->q0);
    d->m.done = on_stored;
    b->timer_rolls_in_flight++;
    rmq_store_append(b->timer_store, &d->m);
}

static void
compact_oldest(struct rmq_broker *b)
{
    uint64_t done_below = rmq_store_dispatched_off(b->timer_store) / seg_size(b);
    uint64_t segs = done_below + 1 - b->tseg_base;
    uint64_t ahead = rmq_clock_wall_ms() + 2 * (uint64_t)b->cfg.store.cleanResourceInterval;
    struct rmq_timer_seg *sg;
    struct rmq_link *n, *next;

    if (b->tsegs == NULL || b->tseg_broken || b->tseg_base + 1 >= done_below ||
        b->timer_rolls_in_flight > 0 || (sg = b->tsegs[0]) == NULL || sg->count == 0) {
        /* the oldest is the current one or the one before it (where a message rolled a
         * moment ago may sit: moving it on again would only churn), or busy */
        return;
    }
    if (sg->bytes > seg_size(b) / 2 && b->timer_waiting_bytes > segs * seg_size(b) / 2) {
        return;                     /* dense enough: copying it would gain little */
    }
    for (n = sg->items.next; n != &sg->items && b->timer_rolls_in_flight < ROLLS_IN_FLIGHT_MAX;
         n = next) {
        struct timer_item *it = rmq_container_of(n, struct timer_item, seg_link);

        next = n->next;
        if (!it->rolling && it->e.due_ms > ahead &&
            rmq_link_is_linked(&it->e.link)) {
            roll_one(b, it);
        }
    }
}

static void
gc_fire(struct rmq_timer *t)
{
    struct rmq_broker *b = rmq_container_of(t, struct rmq_broker, timer_gc_timer);

    if (b->stopping) {
        return;
    }
    release_delivered(b);
    compact_oldest(b);
    rmq_timer_arm(b->loop, &b->timer_gc_timer,
                  (uint64_t)b->cfg.store.cleanResourceInterval * 1000000u, gc_fire);
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

static void
set_done(uint8_t *done, int64_t min0, int64_t q)
{
    done[(q - min0) / 8] |= (uint8_t)(1u << ((q - min0) % 8));
}

static bool
is_done(const uint8_t *done, int64_t min0, int64_t q)
{
    return (done[(q - min0) / 8] >> ((q - min0) % 8)) & 1;
}

/* Body CRC of queue 0's message q, or -1. */
static int64_t
q0_body_crc(struct rmq_broker *b, int64_t q, int64_t *rolled_from)
{
    struct rmq_cq_entry ce;
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    const uint8_t *p;
    const char *v;
    size_t vl;
    int64_t crc = -1;

    *rolled_from = -1;
    if (rmq_store_queue_entry(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0, q, &ce) < 0 ||
        rmq_store_view(b->timer_store, (uint64_t)ce.phys_off, (uint32_t)ce.size, &p, &pin) < 0) {
        return -1;
    }
    if (rmq_record_decode(p, (size_t)ce.size, false, &rec, NULL) == ce.size) {
        crc = (int64_t)(uint32_t)rec.body_crc;
        if (rmq_props_get(rec.props, rec.props_len, RMQ_PROP_TIMER_ROLLED_FROM, &v, &vl)) {
            *rolled_from = strtoll(v, NULL, 10);    /* the pair ends at 0x02 */
        }
    }
    rmq_store_unpin(b->timer_store, pin);
    return crc;
}

/* The start walk found the delivered copy f of a message whose mark is missing: write it. */
static int
mark_found(struct rmq_broker *b, const struct rmq_timer_found *f)
{
    struct delivery *d = delivery_new(b, NULL, 0);

    if (d == NULL) {
        return -ENOMEM;
    }
    d->q0 = f->q0;
    d->from = f->phys;              /* holds scanFrom back until the mark is written */
    rmq_list_add_tail(&b->timer_fifo, &d->fifo);
    mark_append(d, MARKING);
    return 0;
}

/* The wheel from the log: every queue 0 entry without a mark in queue 1, without a
 * newer copy, and without a delivered copy in the commitlog. */
static int
rebuild(struct rmq_broker *b)
{
    int64_t min0 = rmq_store_queue_min(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0);
    int64_t max0 = rmq_store_queue_max(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0);
    int64_t min1 = rmq_store_queue_min(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 1);
    int64_t max1 = rmq_store_queue_max(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 1);
    uint64_t pending = 0, found = 0;
    uint8_t *done;

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
            set_done(done, min0, ce.tags_code);
        }
    }
    /* a compaction copy whose older copy's mark was not written yet */
    for (int64_t q = min0; q < max0; q++) {
        int64_t from;

        if (!is_done(done, min0, q) && q0_body_crc(b, q, &from) >= 0 && from >= min0 && from < q) {
            set_done(done, min0, from);
        }
    }
    for (uint32_t i = 0; i < b->timer_found_count; i++) {
        const struct rmq_timer_found *f = &b->timer_found[i];
        int64_t from;

        if (f->q0 < min0 || f->q0 >= max0 || is_done(done, min0, f->q0) ||
            q0_body_crc(b, f->q0, &from) != (int64_t)f->body_crc) {
            continue;
        }
        set_done(done, min0, f->q0);
        if (mark_found(b, f) < 0) {
            free(done);
            return -ENOMEM;
        }
        found++;
    }
    b->stats.held_marks_recovered += found;
    for (int64_t q = min0; q < max0; q++) {
        struct rmq_cq_entry ce;
        struct timer_item *it;

        if (is_done(done, min0, q) ||
            rmq_store_queue_entry(b->timer_store, RMQ_TIMER_TOPIC, TIMER_TOPIC_LEN, 0, q, &ce) < 0) {
            continue;
        }
        it = item_new(b, q, &ce);
        if (it == NULL) {
            free(done);
            return -ENOMEM;
        }
        it->e.due_ms = (uint64_t)ce.tags_code;
        rmq_wheel_add(&b->wheel, &it->e);
        pending++;
    }
    free(done);
    if (pending > 0 || found > 0) {
        RMQ_INFO("broker: %llu scheduled messages waiting in the timer log; %llu delivered "
                 "before a crash without their mark, marked now", (unsigned long long)pending,
                 (unsigned long long)found);
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
    /* segments go when their messages were delivered (release_delivered), never by age
     * or disk pressure: a waiting message is an acknowledged one */
    cfg.root_dir = b->timer_root;
    cfg.seg_size = seg_size(b);
    cfg.file_reserved_ms = UINT64_MAX / 2;
    cfg.disk_force_ratio = 101;
    b->timer_disk = rmq_disk_uring_create(b->loop, dir);
    if (b->timer_disk == NULL) {
        return -ENOMEM;
    }
    rmq_disk_uring_set_write_mode(b->timer_disk,
                                  rmq_store_write_mode(b->cfg.store.commitLogWriteMode,
                                                       cfg.flush_type));
    ret = rmq_store_open(&b->timer_store, b->loop, b->timer_disk, &cfg);
    if (ret < 0) {
        b->timer_store = NULL;
        return ret;
    }
    b->tseg_base = rmq_store_min_off(b->timer_store) / seg_size(b);
    rmq_store_on_arrival(b->timer_store, timer_arrival, b);
    ret = rebuild(b);
    free(b->timer_found);
    b->timer_found = NULL;
    b->timer_found_count = 0;
    return ret;
}

void
rmq_broker__timer_start(struct rmq_broker *b)
{
    wheel_arm(b);
    rmq_timer_arm(b->loop, &b->timer_gc_timer, 0, gc_fire);
}

void
rmq_broker__timer_stop(struct rmq_broker *b)
{
    rmq_timer_cancel(b->loop, &b->wheel_timer);
    rmq_timer_cancel(b->loop, &b->timer_gc_timer);
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
    rmq_broker__timer_stop(b);
    rmq_wheel_advance(&b->wheel, UINT64_MAX >> 1, free_item, NULL);
    for (uint32_t i = 0; i < b->tseg_cap; i++) {
        free(b->tsegs[i]);
    }
    free(b->tsegs);
    b->tsegs = NULL;
    b->tseg_cap = 0;
    free(b->timer_found);
    b->timer_found = NULL;
    rmq_store_destroy(b->timer_store);
    b->timer_store = NULL;
    if (b->timer_disk != NULL) {
        rmq_disk_uring_destroy(b->timer_disk);
        b->timer_disk = NULL;
    }
}
