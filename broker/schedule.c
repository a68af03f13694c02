/*
 * Delay levels, consume retry and the dead-letter queue (spec/STORE.md §7.2,
 * REMOTING.md §12.11).
 *
 * A message with DELAY=<level> is stored under SCHEDULE_TOPIC_XXXX, queue level-1,
 * with REAL_TOPIC and REAL_QID added; the store makes its consume queue tag code the
 * delivery time. One scheduler per level walks its queue in order: entries come due
 * in the order they were written (a level has one delay), so a level needs a single
 * timer, armed for its next entry's delivery time. A due record is appended again to
 * its real topic and queue, its body read straight from the mapped segment (no copy),
 * DELAY removed from its properties and SCHEDULE_FROM=<level>:<queue offset> added. A
 * level's progress moves over the entries whose re-append was stored and is persisted
 * in config/delayOffset.json (with the consumer offsets, and at shutdown) together with
 * scanFrom: the commitlog offset below which every delivered copy's progress is in the
 * file. A start walks the commitlog from scanFrom and moves each level over the copies
 * it finds, so even after kill -9 each delayed message is delivered once (timer.c's
 * messages are found by the same walk).
 *
 * CONSUMER_SEND_MSG_BACK puts a consumer's failed message into %RETRY%<group> through
 * the same delay levels (3 + reconsumeTimes unless the client names one), or into
 * %DLQ%<group> once it was consumed maxReconsumeTimes times.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/be.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "core/util.h"

#define DELAY_BATCH 32
#define RETRY_PAUSE_MS 1000
#define DEFAULT_MAX_RECONSUME 16
#define DELAY_FILE_MAX (1u << 20)

struct rmq_sched_level {
    struct rmq_broker *b;
    int32_t level;                  /* 1-based */
    int64_t offset;                 /* next schedule queue entry to deliver */
    uint64_t done_mask;             /* bit i: offset + i delivered already */
    uint64_t batch_from;            /* commitlog offset of the oldest unabsorbed delivery */
    uint32_t inflight;
    bool failed;
    struct rmq_timer timer;
};

/* One re-append: a due delayed message, or a consumer's message sent back. */
struct repost {
    struct rmq_store_msg m;
    struct rmq_broker *b;
    struct rmq_seg_map *pin;        /* the source record's mapping, for the body */
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    struct rmq_sched_level *lv;     /* scheduler re-append, or NULL */
    int64_t q;                      /* its schedule queue offset */
    struct rmq_conn_handle conn;    /* send-back: who to answer */
    struct rmq_saved_req req;
    struct rmq_ha_wait hw;          /* send-back on a SYNC_MASTER: the slave's ack */
    char props[];                   /* the new property string */
};

static uint64_t
now_ms(void)
{
    return rmq_clock_wall_ms();
}

/* ---- properties --------------------------------------------------------------------------- */

static bool
name_is(const char *p, size_t n, const char *const *names)
{
    for (; *names != NULL; names++) {
        if (strlen(*names) == n && memcmp(p, *names, n) == 0) {
            return true;
        }
    }
    return false;
}

/* Copy src's pairs except those named in skip; returns bytes written (each pair ends in
 * 0x02). dst must hold len + 1 bytes. */
size_t
rmq_broker__props_copy_without(char *dst, const char *src, size_t len, const char *const *skip)
{
    size_t out = 0;

    for (size_t i = 0; i < len;) {
        const char *pair = src + i;
        const char *end = memchr(pair, RMQ_PROP_SEP, len - i);
        size_t plen = end != NULL ? (size_t)(end - pair) : len - i;
        const char *eq = memchr(pair, RMQ_PROP_NAME_SEP, plen);

        if (plen > 0 && (eq == NULL || !name_is(pair, (size_t)(eq - pair), skip))) {
            memcpy(dst + out, pair, plen);
            out += plen;
            dst[out++] = RMQ_PROP_SEP;
        }
        i += plen + 1;
    }
    return out;
}

size_t
rmq_broker__props_add(char *dst, const char *name, const char *val, size_t val_len)
{
    size_t n = strlen(name);

    memcpy(dst, name, n);
    dst[n] = RMQ_PROP_NAME_SEP;
    memcpy(dst + n + 1, val, val_len);
    dst[n + 1 + val_len] = RMQ_PROP_SEP;
    return n + val_len + 2;
}

size_t
rmq_broker__props_without_delay(char *dst, const char *props, size_t len)
{
    static const char *const skip[] = {"DELAY", NULL};

    return rmq_broker__props_copy_without(dst, props, len, skip);
}

size_t
rmq_broker__delay_props(char *dst, const char *props, size_t len, const char *topic,
                        int32_t queue_id)
{
    static const char *const skip[] = {"REAL_TOPIC", "REAL_QID", RMQ_PROP_SCHEDULE_FROM,
                                       RMQ_PROP_TIMER_FROM, RMQ_PROP_TIMER_ROLLED_FROM, NULL};
    char qid[16];
    size_t n = rmq_broker__props_copy_without(dst, props, len, skip);

    n += rmq_broker__props_add(dst + n, "REAL_TOPIC", topic, strlen(topic));
    snprintf(qid, sizeof(qid), "%d", (int)queue_id);
    n += rmq_broker__props_add(dst + n, "REAL_QID", qid, strlen(qid));
    return n;
}

int32_t
rmq_broker__delay_level(const struct rmq_broker *b, const char *props, size_t len)
{
    const char *v;
    size_t vl;
    long level = 0;

    if (!rmq_props_get(props, len, "DELAY", &v, &vl)) {
        return 0;
    }
    for (size_t i = 0; i < vl && i < 6; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return 0;
        }
        level = level * 10 + (v[i] - '0');
    }
    return (int32_t)RMQ_MIN(level, (long)b->delay_level_count);
}

/* ---- delayOffset.json ---------------------------------------------------------------------- */

static void
delay_path(const struct rmq_broker *b, char *out, size_t cap)
{
    snprintf(out, cap, "%s/config/delayOffset.json", b->cfg.store.storePathRootDir);
}

void
rmq_broker__delay_write(const struct rmq_broker *b, struct rmq_jw *w)
{
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "offsetTable");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; i < b->delay_level_count; i++) {
        rmq_jw_key_i64(w, b->levels[i].level);
        rmq_jw_i64(w, b->levels[i].offset);
    }
    rmq_jw_obj_end(w);
    rmq_jw_key(w, "scanFrom");
    rmq_jw_i64(w, (int64_t)rmq_broker__marks_horizon(b));
    rmq_jw_obj_end(w);
}

int
rmq_broker__delay_persist(struct rmq_broker *b)
{
    char path[RMQ_STORE_PATH_MAX + 64];
    const char *text;
    size_t len;
    int ret;
    uint64_t scan_from = rmq_broker__marks_horizon(b);

    if (!b->delay_dirty && scan_from == b->marks_saved) {
        return 0;
    }
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_broker__delay_write(b, &b->out);
    ret = rmq_jw_finish(&b->out, &text, &len);
    if (ret == 0) {
        delay_path(b, path, sizeof(path));
        ret = rmq_file_replace(path, text, len);
    }
    if (ret == 0) {
        b->delay_dirty = false;
        b->marks_saved = scan_from;
    }
    return ret;
}

static int
delay_load(struct rmq_broker *b)
{
    char path[RMQ_STORE_PATH_MAX + 64];
    char *text = NULL;
    size_t len = 0;
    const cJSON *table;
    cJSON *root;
    int ret;

    delay_path(b, path, sizeof(path));
    b->marks_scan_from = 0;         /* no file: everything in the log may be a delivery */
    ret = rmq_file_read_all(path, DELAY_FILE_MAX, &text, &len);
    if (ret == -ENOENT) {
        return 0;
    }
    if (ret < 0) {
        RMQ_ERROR("broker: %s not read err=%s", path, strerror(-ret));
        return ret;
    }
    root = rmq_json_parse(text, len);
    table = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "offsetTable") : NULL;
    if (table == NULL || !cJSON_IsObject(table)) {
        RMQ_ERROR("broker: %s is not {\"offsetTable\":{level:offset}}; fix or remove it", path);
        cJSON_Delete(root);
        free(text);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < b->delay_level_count; i++) {
        char key[16];

        snprintf(key, sizeof(key), "%d", (int)b->levels[i].level);
        b->levels[i].offset = RMQ_MAX(rmq_json_get_i64(table, key, 0), 0);
    }
    b->marks_scan_from = (uint64_t)rmq_json_get_i64(root, "scanFrom", -1);
    if (b->marks_scan_from == UINT64_MAX) {
        RMQ_INFO("broker: %s has no scanFrom (written by an older version): deliveries "
                 "since it was written are not looked for", path);
    }
    cJSON_Delete(root);
    free(text);
    return 0;
}

/* ---- the scheduler ---------------------------------------------------------------------------- */

static void level_run(struct rmq_sched_level *lv);

static void
level_timer(struct rmq_timer *t)
{
    level_run(rmq_container_of(t, struct rmq_sched_level, timer));
}

static void
level_arm(struct rmq_sched_level *lv, uint64_t delay_ms)
{
    struct rmq_broker *b = lv->b;

    if (!b->stopping) {
        rmq_timer_cancel(b->loop, &lv->timer);
        rmq_timer_arm(b->loop, &lv->timer, delay_ms * 1000000u, level_timer);
    }
}

static void
repost_free(struct repost *r)
{
    struct rmq_broker *b = r->b;

    if (r->pin != NULL) {
        rmq_store_unpin(b->store, r->pin);
    }
    b->sends_in_flight--;
    free(r);
}

/* Move offset over the entries delivered at its front. */
static void
level_advance(struct rmq_sched_level *lv)
{
    while (lv->done_mask & 1) {
        lv->done_mask >>= 1;
        lv->offset++;
        lv->b->delay_dirty = true;
    }
}

/* A re-append of a due message completed. */
static void
sched_done(struct rmq_store_msg *m, int status)
{
    struct repost *r = rmq_container_of(m, struct repost, m);
    struct rmq_sched_level *lv = r->lv;

    if (status == 0 || status == -ETIMEDOUT || status == -EMSGSIZE || status == -EINVAL) {
        if (status == -EMSGSIZE || status == -EINVAL) {
            RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: delayed message at schedule queue %d "
                       "offset %lld can never be stored in %s err=%s, dropped",
                       (int)lv->level - 1, (long long)r->q, r->topic, strerror(-status));
        }
        lv->done_mask |= 1ull << (r->q - lv->offset);
    } else {
        lv->failed = true;
        RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: delayed message not delivered to %s level=%d "
                   "err=%s, retrying in %d ms", r->topic, (int)lv->level, strerror(-status),
                   RETRY_PAUSE_MS);
    }
    repost_free(r);
    if (--lv->inflight > 0) {
        return;
    }
    level_advance(lv);
    if (lv->failed) {
        lv->failed = false;
        level_arm(lv, RETRY_PAUSE_MS);
        return;
    }
    level_run(lv);
}

int
rmq_broker__held_record(struct rmq_store *s, uint64_t phys, uint32_t size, struct rmq_record *rec,
                        struct rmq_seg_map **pin, char *topic, int32_t *queue_id)
{
    const uint8_t *p;
    const char *rt, *rq;
    size_t rtl, rql;
    int ret = rmq_store_view(s, phys, size, &p, pin);

    if (ret < 0) {
        return ret;
    }
    if (rmq_record_decode(p, size, false, rec, NULL) != (int64_t)size ||
        !rmq_props_get(rec->props, rec->props_len, "REAL_TOPIC", &rt, &rtl) ||
        !rmq_props_get(rec->props, rec->props_len, "REAL_QID", &rq, &rql) ||
        !rmq_topic_name_valid(rt, rtl)) {
        rmq_store_unpin(s, *pin);
        return -EBADMSG;
    }
    memcpy(topic, rt, rtl);
    topic[rtl] = '\0';
    *queue_id = (int32_t)strtol(rq, NULL, 10);      /* the pair ends at a 0x02: stops there */
    return 0;
}

void
rmq_broker__held_to_real(const struct rmq_broker *b, const struct rmq_record *held,
                         const char *topic, int32_t queue_id, const char *const *drop,
                         struct rmq_record *out, char *topic_buf, char *props_buf)
{
    *out = *held;
    snprintf(topic_buf, RMQ_TOPIC_NAME_MAX + 1, "%s", topic);
    out->topic = topic_buf;
    out->topic_len = (uint8_t)strlen(topic_buf);
    out->queue_id = queue_id;
    out->props = props_buf;
    out->props_len =
        (uint16_t)rmq_broker__props_copy_without(props_buf, held->props, held->props_len, drop);
    out->sysflag &= ~(RMQ_SYSFLAG_BORNHOST_V6 | RMQ_SYSFLAG_STOREHOST_V6);
    memcpy(out->store_ip, b->store_ip, 4);
    out->store_port = (int32_t)b->srv.port;
}

/* Re-append the delayed record of entry e (queue offset q). 0, or -errno to skip it. */
static int
sched_repost(struct rmq_sched_level *lv, const struct rmq_cq_entry *e, int64_t q)
{
    static const char *const skip[] = {"DELAY", RMQ_PROP_SCHEDULE_FROM, RMQ_PROP_TIMER_FROM,
                                       RMQ_PROP_TIMER_ROLLED_FROM, NULL};
    char mark[40];
    int mark_len;
    struct rmq_broker *b = lv->b;
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    int32_t qid;
    struct repost *r;
    int ret = rmq_broker__held_record(b->store, (uint64_t)e->phys_off, (uint32_t)e->size, &rec,
                                      &pin, topic, &qid);

    if (ret < 0) {
        return ret;
    }
    r = malloc(sizeof(*r) + rec.props_len + 64);
    if (r == NULL) {
        rmq_store_unpin(b->store, pin);
        return -ENOMEM;
    }
    memset(r, 0, sizeof(*r));
    r->b = b;
    r->pin = pin;
    r->lv = lv;
    r->q = q;
    rmq_broker__held_to_real(b, &rec, topic, qid, skip, &r->m.rec, r->topic, r->props);
    mark_len = snprintf(mark, sizeof(mark), "%d:%lld", (int)lv->level, (long long)q);
    if (r->m.rec.props_len + sizeof(RMQ_PROP_SCHEDULE_FROM) + (size_t)mark_len + 1 <=
        RMQ_RECORD_PROPS_MAX) {
        /* (no room: delivered at least once after a crash, as without the mark) */
        r->m.rec.props_len += (uint16_t)rmq_broker__props_add(
            r->props + r->m.rec.props_len, RMQ_PROP_SCHEDULE_FROM, mark, (size_t)mark_len);
    }
    r->m.done = sched_done;
    b->sends_in_flight++;
    rmq_store_append(b->store, &r->m);
    return 0;
}

static void
level_run(struct rmq_sched_level *lv)
{
    struct rmq_broker *b = lv->b;
    uint64_t now = now_ms();
    uint32_t n = 0;
    int64_t q, end, min;

    if (lv->inflight > 0 || b->stopping) {
        return;
    }
    level_advance(lv);
    min = rmq_store_queue_min(b->store, RMQ_SCHEDULE_TOPIC, sizeof(RMQ_SCHEDULE_TOPIC) - 1,
                              lv->level - 1);
    if (min > lv->offset) {
        /* retention removed entries never delivered */
        lv->done_mask = min - lv->offset >= 64 ? 0 : lv->done_mask >> (min - lv->offset);
        lv->offset = min;
        b->delay_dirty = true;
        level_advance(lv);
    }
    if (lv->done_mask == 0) {
        lv->batch_from = rmq_store_written_off(b->store);
    }
    end = lv->offset + 64;          /* done_mask's reach */
    for (q = lv->offset; n < DELAY_BATCH && q < end; q++) {
        struct rmq_cq_entry e;

        if ((lv->done_mask >> (q - lv->offset)) & 1) {
            continue;
        }
        if (rmq_store_queue_entry(b->store, RMQ_SCHEDULE_TOPIC, sizeof(RMQ_SCHEDULE_TOPIC) - 1,
                                  lv->level - 1, q, &e) < 0) {
            break;                  /* nothing more: the arrival hook wakes us */
        }
        if ((uint64_t)e.tags_code > now) {
            level_arm(lv, (uint64_t)e.tags_code - now);
            break;
        }
        if (sched_repost(lv, &e, q) < 0) {
            RMQ_LOG_RL(RMQ_LOG_ERROR, 5000, "broker: delayed message at schedule queue %d "
                       "offset %lld unreadable or without REAL_TOPIC/REAL_QID, skipped",
                       (int)lv->level - 1, (long long)q);
            lv->done_mask |= 1ull << (q - lv->offset);
            continue;
        }
        n++;
    }
    lv->inflight = n;
    if (n == 0) {
        level_advance(lv);
        if (q == end) {
            level_arm(lv, 0);       /* a window of skipped entries: go on after them */
        }
    }
}

uint64_t
rmq_broker__marks_horizon(const struct rmq_broker *b)
{
    uint64_t h = RMQ_MIN(rmq_store_written_off(b->store), rmq_broker__timer_horizon(b));

    for (uint32_t i = 0; i < b->delay_level_count; i++) {
        if (b->levels[i].inflight > 0 || b->levels[i].done_mask != 0) {
            h = RMQ_MIN(h, b->levels[i].batch_from);
        }
    }
    return h;
}

struct mark_walk {
    struct rmq_broker *b;
    uint32_t delayed;
    uint32_t timer_cap;
    uint64_t records;
};

/* Body CRC of the record behind (topic, queue_id, qoff) of s, or -1. */
static int64_t
entry_body_crc(struct rmq_store *s, const char *topic, int32_t queue_id, int64_t qoff)
{
    struct rmq_cq_entry ce;
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    const uint8_t *p;
    int64_t crc = -1;

    if (rmq_store_queue_entry(s, topic, (uint32_t)strlen(topic), queue_id, qoff, &ce) < 0 ||
        rmq_store_view(s, (uint64_t)ce.phys_off, (uint32_t)ce.size, &p, &pin) < 0) {
        return -1;
    }
    if (rmq_record_decode(p, (size_t)ce.size, false, &rec, NULL) == ce.size) {
        crc = (int64_t)(uint32_t)rec.body_crc;
    }
    rmq_store_unpin(s, pin);
    return crc;
}

static int
mark_seen(void *ctx, const struct rmq_record *rec, const uint8_t *raw, uint32_t size)
{
    struct mark_walk *w = ctx;
    struct rmq_broker *b = w->b;
    const char *v;
    size_t vl;

    (void)raw;
    (void)size;
    w->records++;
    if (rmq_props_get(rec->props, rec->props_len, RMQ_PROP_SCHEDULE_FROM, &v, &vl)) {
        char *colon;
        long level = strtol(v, &colon, 10);
        long long q = *colon == ':' ? strtoll(colon + 1, NULL, 10) : -1;
        struct rmq_sched_level *lv;

        if (level < 1 || level > (long)b->delay_level_count) {
            return 0;
        }
        lv = &b->levels[level - 1];
        /* a copy of this very entry (same body), not a forwarded look-alike */
        if (q >= lv->offset && q < lv->offset + 64 &&
            entry_body_crc(b->store, RMQ_SCHEDULE_TOPIC, (int32_t)level - 1, q) ==
                (int64_t)rec->body_crc) {
            lv->done_mask |= 1ull << (q - lv->offset);
            w->delayed++;
        }
    } else if (rmq_props_get(rec->props, rec->props_len, RMQ_PROP_TIMER_FROM, &v, &vl)) {
        struct rmq_timer_found *f;

        if (b->timer_found_count == w->timer_cap) {
            uint32_t cap = RMQ_MAX(w->timer_cap * 2, 64u);

            f = realloc(b->timer_found, cap * sizeof(*f));
            if (f == NULL) {
                return -ENOMEM;
            }
            b->timer_found = f;
            w->timer_cap = cap;
        }
        f = &b->timer_found[b->timer_found_count++];
        f->q0 = strtoll(v, NULL, 10);
        f->body_crc = rec->body_crc;
        f->phys = (uint64_t)rec->phys_off;
    }
    return 0;
}

int
rmq_broker__marks_recover(struct rmq_broker *b)
{
    struct mark_walk w = {.b = b};
    uint64_t from = b->marks_scan_from;
    uint64_t to = rmq_store_written_off(b->store);
    uint64_t t0 = rmq_clock_mono_ns();
    int ret;

    b->marks_saved = UINT64_MAX;    /* written again at the first persist */
    if (from == UINT64_MAX || from >= to) {
        return 0;
    }
    ret = rmq_store_walk(b->store, from, mark_seen, &w);
    if (ret < 0) {
        RMQ_ERROR("broker: commitlog walk for delivered scheduled messages from %llu failed "
                  "err=%s", (unsigned long long)from, strerror(-ret));
        return ret;
    }
    for (uint32_t i = 0; i < b->delay_level_count; i++) {
        struct rmq_sched_level *lv = &b->levels[i];

        lv->batch_from = from;      /* bits not absorbed yet keep scanFrom here */
        level_advance(lv);
    }
    b->stats.held_marks_recovered += w.delayed;
    RMQ_INFO("broker: walked %llu records (%llu bytes) from scanFrom in %llu ms: %u delayed "
             "and %u timer messages found delivered", (unsigned long long)w.records,
             (unsigned long long)(to - from),
             (unsigned long long)((rmq_clock_mono_ns() - t0) / 1000000u), w.delayed,
             b->timer_found_count);
    return 0;
}

void
rmq_broker__delay_arrival(struct rmq_broker *b, int32_t queue_id, int64_t tags_code)
{
    struct rmq_sched_level *lv;
    uint64_t now = now_ms();

    if (queue_id < 0 || (uint32_t)queue_id >= b->delay_level_count) {
        return;
    }
    lv = &b->levels[queue_id];
    if (lv->inflight > 0 || rmq_timer_is_armed(&lv->timer)) {
        return;                     /* the running batch or the armed timer gets to it */
    }
    level_arm(lv, (uint64_t)tags_code > now ? (uint64_t)tags_code - now : 0);
}

int
rmq_broker__delay_init(struct rmq_broker *b)
{
    int64_t ms[RMQ_DELAY_LEVELS_MAX];
    int n = rmq_store_parse_delay_levels(b->cfg.store.messageDelayLevel, ms, RMQ_DELAY_LEVELS_MAX);

    if (n < 0) {
        return n;
    }
    b->levels = calloc((size_t)n, sizeof(*b->levels));
    if (b->levels == NULL) {
        return -ENOMEM;
    }
    b->delay_level_count = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        b->levels[i].b = b;
        b->levels[i].level = i + 1;
    }
    return delay_load(b);
}

void
rmq_broker__delay_start(struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->delay_level_count; i++) {
        level_arm(&b->levels[i], 0);        /* a backlog from before a restart */
    }
}

void
rmq_broker__delay_stop(struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->delay_level_count; i++) {
        rmq_timer_cancel(b->loop, &b->levels[i].timer);
    }
}

void
rmq_broker__delay_fini(struct rmq_broker *b)
{
    if (b->levels != NULL) {
        rmq_broker__delay_stop(b);
    }
    free(b->levels);
    b->levels = NULL;
}

/* ---- CONSUMER_SEND_MSG_BACK --------------------------------------------------------------------- */

/* status: the store's, or 1 SLAVE_NOT_AVAILABLE / 2 FLUSH_SLAVE_TIMEOUT (SYNC_MASTER) */
static void
sendback_answer(struct repost *r, int status)
{
    struct rmq_conn *c = rmq_conn_from_handle(r->conn);

    if (c != NULL) {
        struct rmq_header req;

        rmq_broker__restore_req(&req, &r->req);
        if (status == 0 || status == -ETIMEDOUT) {
            rmq_broker__reply_ok(c, &req, NULL, 0);
        } else if (status > 0) {
            /* the reference's answer: the client then sends the message back itself */
            rmq_broker__reply(c, &req, RMQ_RESP_SYSTEM_ERROR, "%s",
                              status == 1 ? "SLAVE_NOT_AVAILABLE" : "FLUSH_SLAVE_TIMEOUT");
        } else {
            rmq_broker__reply(c, &req, RMQ_RESP_SYSTEM_ERROR, "message not stored in %s: %s",
                              r->topic, strerror(-status));
        }
    }
    repost_free(r);
}

static void
sendback_replicated(struct rmq_ha_wait *w, int status)
{
    struct repost *r = rmq_container_of(w, struct repost, hw);

    sendback_answer(r, status == 0 ? 0 : status == -ETIMEDOUT ? 2 : 1);
}

static void
sendback_done(struct rmq_store_msg *m, int status)
{
    struct repost *r = rmq_container_of(m, struct repost, m);
    struct rmq_broker *b = r->b;

    if (status == 0 || status == -ETIMEDOUT) {
        int ret;

        r->hw.done = sendback_replicated;
        ret = rmq_broker__ha_wait(b, &r->hw, &m->rec);
        if (ret == 0) {
            return;
        }
        status = ret < 0 ? 1 : status;
    }
    sendback_answer(r, status);
}

static void
h_sendback(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    static const char *const skip[] = {"DELAY", "REAL_TOPIC", "REAL_QID", "WAIT",
                                       RMQ_PROP_SCHEDULE_FROM, RMQ_PROP_TIMER_FROM,
                                       RMQ_PROP_TIMER_ROLLED_FROM, NULL};
    struct rmq_broker *b = ctx;
    char group[RMQ_GROUP_NAME_MAX + 1];
    char retry[RMQ_TOPIC_NAME_MAX + 1];
    char dlq[RMQ_TOPIC_NAME_MAX + 1];
    char origin[33];
    char level_s[16];
    int64_t off;
    int32_t delay_level = 0, max_reconsume = DEFAULT_MAX_RECONSUME;
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    const uint8_t *p;
    const char *v;
    size_t vl, n;
    struct repost *r;
    bool to_dlq;
    int32_t level;

    (void)ref;
    if (!rmq_broker__need_i64(c, req, "offset", &off) ||
        !rmq_broker__need_str(c, req, "group", group, sizeof(group)) ||
        !rmq_broker__need_i32(c, req, "delayLevel", &delay_level)) {
        return;
    }
    if (!rmq_group_name_valid(group, strlen(group))) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SUBSCRIPTION_GROUP_NOT_EXIST,
                          "subscription group not exist, %s", group);
        return;
    }
    if (!(b->cfg.broker_permission & RMQ_PERM_WRITE) || b->cfg.broker_role == RMQ_ROLE_SLAVE) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_NO_PERMISSION,
                          "the broker[%s] sending message is forbidden", b->cfg.broker_name);
        return;
    }
    if (req->h.version >= 121) {
        rmq_header_get_i32(&req->h, "maxReconsumeTimes", &max_reconsume);
    }
    snprintf(retry, sizeof(retry), "%%RETRY%%%.*s", RMQ_TOPIC_NAME_MAX - 7, group);
    snprintf(dlq, sizeof(dlq), "%%DLQ%%%.*s", RMQ_TOPIC_NAME_MAX - 5, group);
    if (strlen(retry) != strlen(group) + 7 ||
        rmq_broker__topic_ensure(b, retry, 1, RMQ_PERM_READ | RMQ_PERM_WRITE) < 0) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "topic[%s] not exist", retry);
        return;
    }
    if (off < 0 || rmq_store_view(b->store, (uint64_t)off, 4, &p, &pin) < 0) {
        goto not_found;
    }
    n = rmq_get_be32(p);
    rmq_store_unpin(b->store, pin);
    if (n < RMQ_RECORD_MIN_SIZE || rmq_store_view(b->store, (uint64_t)off, (uint32_t)n, &p, &pin) < 0) {
        goto not_found;
    }
    if (rmq_record_decode(p, n, false, &rec, NULL) != (int64_t)n) {
        rmq_store_unpin(b->store, pin);
        goto not_found;
    }
    to_dlq = rec.reconsume_times >= max_reconsume || delay_level < 0;
    level = delay_level > 0 ? delay_level : 3 + rec.reconsume_times;
    level = RMQ_MIN(level, (int32_t)b->delay_level_count);
    if (to_dlq && rmq_broker__topic_ensure(b, dlq, 1, RMQ_PERM_WRITE) < 0) {
        rmq_store_unpin(b->store, pin);
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "topic[%s] not exist", dlq);
        return;
    }
    /* old properties + RETRY_TOPIC + ORIGIN_MESSAGE_ID (+ DELAY, REAL_TOPIC, REAL_QID) */
    r = malloc(sizeof(*r) + rec.props_len + 2 * RMQ_TOPIC_NAME_MAX + 128);
    if (r == NULL) {
        rmq_store_unpin(b->store, pin);
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_BUSY, "broker out of memory");
        return;
    }
    memset(r, 0, sizeof(*r));
    r->b = b;
    r->pin = pin;
    r->conn = rmq_conn_handle(c);
    rmq_broker__save_req(&r->req, &req->h);
    snprintf(r->topic, sizeof(r->topic), "%s", to_dlq ? dlq : retry);
    n = rmq_broker__props_copy_without(r->props, rec.props, rec.props_len, skip);
    if (!rmq_props_get(rec.props, rec.props_len, "RETRY_TOPIC", &v, &vl)) {
        n += rmq_broker__props_add(r->props + n, "RETRY_TOPIC", rec.topic, rec.topic_len);
    }
    if (!rmq_props_get(rec.props, rec.props_len, "ORIGIN_MESSAGE_ID", &v, &vl)) {
        rmq_msg_offset_id(origin, rec.store_ip, rec.store_port, rec.phys_off);
        n += rmq_broker__props_add(r->props + n, "ORIGIN_MESSAGE_ID", origin, 32);
    }
    r->m.rec = rec;
    r->m.rec.reconsume_times = rec.reconsume_times + 1;
    r->m.rec.sysflag &= ~(RMQ_SYSFLAG_BORNHOST_V6 | RMQ_SYSFLAG_STOREHOST_V6);
    memcpy(r->m.rec.store_ip, b->store_ip, 4);
    r->m.rec.store_port = (int32_t)b->srv.port;
    if (to_dlq) {
        r->m.rec.topic = r->topic;
        r->m.rec.queue_id = 0;
    } else {
        /* through the delay levels: stored for SCHEDULE_TOPIC_XXXX, re-put when due */
        snprintf(level_s, sizeof(level_s), "%d", (int)level);
        n += rmq_broker__props_add(r->props + n, "DELAY", level_s, strlen(level_s));
        n += rmq_broker__props_add(r->props + n, "REAL_TOPIC", r->topic, strlen(r->topic));
        n += rmq_broker__props_add(r->props + n, "REAL_QID", "0", 1);
        r->m.rec.topic = RMQ_SCHEDULE_TOPIC;
        r->m.rec.queue_id = level - 1;
    }
    r->m.rec.topic_len = (uint8_t)strlen(r->m.rec.topic);
    if (n > RMQ_RECORD_PROPS_MAX) {
        rmq_store_unpin(b->store, pin);
        free(r);
        rmq_broker__reply(c, &req->h, RMQ_RESP_MESSAGE_ILLEGAL,
                          "the sent-back message's properties would exceed 32767 bytes");
        return;
    }
    r->m.rec.props = r->props;
    r->m.rec.props_len = (uint16_t)n;
    r->m.done = sendback_done;
    b->sends_in_flight++;
    RMQ_DEBUG("broker: message sent back group=%s offset=%lld to=%s reconsume=%d", group,
              (long long)off, r->topic, (int)r->m.rec.reconsume_times);
    rmq_store_append(b->store, &r->m);
    return;
not_found:
    rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "look message by offset failed, %lld",
                      (long long)off);
}

void
rmq_broker__delay_install(struct rmq_broker *b)
{
    rmq_server_handle(&b->srv, RMQ_REQ_CONSUMER_SEND_MSG_BACK, h_sendback, b);
}
