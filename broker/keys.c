/*
 * Finding messages by key (index/index.h): every written record's KEYS (split on
 * spaces) and UNIQ_KEY go into the key index as topic#key, from the store's dispatch
 * (after the record was written, off the send's answer); a start first walks the
 * commitlog from where the index stood. QUERY_MESSAGE reads the index newest first,
 * confirms each hit against its record (so neither a hash collision nor a damaged index
 * file can return another message), adds records written but not indexed yet, and
 * answers in commitlog order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"

#define QUERY_MAX 64
#define UNIQUE_QUERY_MAX 32                 /* defaultQueryMaxNum */

/* Keys waiting to be put: collected over a dispatch run with their slots prefetched,
 * put together at the end of the loop iteration (random slot-table misses overlap
 * instead of stalling one after another; the profile of pipelined sends had the put
 * at 11 % of the broker's samples). */
struct pending_key {
    uint64_t hash;
    int64_t phys;
    int64_t store_ts;
    uint32_t size;
};

static void
put_later(struct rmq_broker *b, uint64_t hash, const struct rmq_record *r, uint32_t size)
{
    struct pending_key *k;

    if (b->keys_pending_n == RMQ_BROKER_KEYS_PENDING) {
        rmq_broker__keys_flush(b);
    }
    rmq_index_prefetch(b->index, hash);
    k = &b->keys_pending[b->keys_pending_n++];
    k->hash = hash;
    k->phys = r->phys_off;
    k->store_ts = r->store_ts;
    k->size = size;
    if (!b->keys_flush_queued) {
        b->keys_flush_queued = true;
        rmq_loop_defer(b->loop, &b->keys_flush);
    }
}

void
rmq_broker__keys_flush(struct rmq_broker *b)
{
    for (uint32_t i = 0; i < b->keys_pending_n; i++) {
        const struct pending_key *k = &b->keys_pending[i];

        rmq_index_put(b->index, k->hash, k->phys, k->size, k->store_ts);
    }
    b->keys_pending_n = 0;
    if (b->keys_mark > rmq_index_end_phys(b->index)) {
        rmq_index_mark(b->index, b->keys_mark);
    }
}

static void
keys_flush_run(struct rmq_deferred *d)
{
    struct rmq_broker *b = rmq_container_of(d, struct rmq_broker, keys_flush);

    b->keys_flush_queued = false;
    if (b->index != NULL) {
        rmq_broker__keys_flush(b);
    }
}

/* Index the keys of one record (later, when deferred). */
static void
index_record(struct rmq_broker *b, const struct rmq_record *r, uint32_t size, bool deferred)
{
    const char *v;
    size_t vl;

    if ((r->sysflag & RMQ_SYSFLAG_TX_MASK) == RMQ_SYSFLAG_TX_ROLLBACK) {
        return;
    }
    if (rmq_props_get(r->props, r->props_len, "UNIQ_KEY", &v, &vl) && vl > 0) {
        uint64_t h = rmq_index_hash(r->topic, r->topic_len, v, vl);

        if (deferred) {
            put_later(b, h, r, size);
        } else {
            rmq_index_put(b->index, h, r->phys_off, size, r->store_ts);
        }
    }
    if (rmq_props_get(r->props, r->props_len, "KEYS", &v, &vl)) {
        for (size_t i = 0; i < vl;) {
            const char *sp = memchr(v + i, ' ', vl - i);
            size_t n = sp != NULL ? (size_t)(sp - (v + i)) : vl - i;

            if (n > 0) {
                uint64_t h = rmq_index_hash(r->topic, r->topic_len, v + i, n);

                if (deferred) {
                    put_later(b, h, r, size);
                } else {
                    rmq_index_put(b->index, h, r->phys_off, size, r->store_ts);
                }
            }
            i += n + 1;
        }
    }
}

void
rmq_broker__keys_arrival(struct rmq_broker *b, const char *topic, uint32_t topic_len,
                         int32_t queue_id, int64_t max)
{
    struct rmq_cq_entry ce;
    struct rmq_seg_map *pin;
    struct rmq_record rec;
    const uint8_t *p;

    if (b->index == NULL ||
        rmq_store_queue_entry(b->store, topic, topic_len, queue_id, max - 1, &ce) < 0) {
        return;
    }
    if (ce.phys_off + ce.size <= RMQ_MAX(rmq_index_end_phys(b->index), b->keys_mark)) {
        return;                         /* indexed already (by the start's walk) */
    }
    if (rmq_store_view(b->store, (uint64_t)ce.phys_off, (uint32_t)ce.size, &p, &pin) < 0) {
        return;
    }
    if (rmq_record_decode(p, (size_t)ce.size, false, &rec, NULL) == ce.size) {
        index_record(b, &rec, (uint32_t)ce.size, true);
    }
    rmq_store_unpin(b->store, pin);
    b->keys_mark = ce.phys_off + ce.size;   /* marked once its keys are put */
    if (!b->keys_flush_queued) {
        b->keys_flush_queued = true;
        rmq_loop_defer(b->loop, &b->keys_flush);
    }
}

static int
walk_one(void *ctx, const struct rmq_record *rec, const uint8_t *raw, uint32_t size)
{
    struct rmq_broker *b = ctx;

    (void)raw;
    index_record(b, rec, size, false);
    rmq_index_mark(b->index, rec->phys_off + size);
    return 0;
}

int
rmq_broker__keys_init(struct rmq_broker *b)
{
    struct rmq_index_config cfg = {
        .slot_count = (uint32_t)b->cfg.index_slots, .entry_max = (uint32_t)b->cfg.index_entries,
    };
    char dir[RMQ_STORE_PATH_MAX + 16];
    uint64_t t0 = rmq_clock_mono_ns();
    int64_t from;
    int ret;

    if (!b->cfg.index_enable) {
        return 0;
    }
    snprintf(dir, sizeof(dir), "%s/index", b->cfg.store.storePathRootDir);
    cfg.dir = dir;
    b->keys_flush.fn = keys_flush_run;
    b->keys_pending = calloc(RMQ_BROKER_KEYS_PENDING, sizeof(*b->keys_pending));
    if (b->keys_pending == NULL) {
        return -ENOMEM;
    }
    ret = rmq_index_open(&b->index, &cfg);
    if (ret < 0) {
        b->index = NULL;
        return ret;
    }
    /* what was written while the index was not looking (a crash, or a clean stop in
     * between): from its resume point, or from the log start if that went by retention */
    from = RMQ_MAX(rmq_index_end_phys(b->index), (int64_t)rmq_store_min_off(b->store));
    if ((uint64_t)from < rmq_store_written_off(b->store)) {
        ret = rmq_store_walk(b->store, (uint64_t)from, walk_one, b);
        RMQ_INFO("broker: key index caught up from %lld to %llu in %llu ms%s", (long long)from,
                 (unsigned long long)rmq_store_written_off(b->store),
                 (unsigned long long)((rmq_clock_mono_ns() - t0) / 1000000u),
                 ret < 0 ? " (stopped at a damaged record)" : "");
    }
    return 0;
}

void
rmq_broker__keys_fini(struct rmq_broker *b)
{
    if (b->index != NULL) {
        rmq_broker__keys_flush(b);
    }
    if (b->keys_flush_queued) {
        rmq_list_del(&b->keys_flush.link);     /* the loop must not run it after this */
        b->keys_flush_queued = false;
    }
    free(b->keys_pending);
    b->keys_pending = NULL;
    rmq_index_close(b->index);
    b->index = NULL;
}

void
rmq_broker__keys_scan(struct rmq_broker *b)
{
    if (b->index != NULL) {
        rmq_index_release_below(b->index, (int64_t)rmq_store_min_off(b->store));
    }
}

/* ---- QUERY_MESSAGE -------------------------------------------------------------------------------- */

struct found {
    int64_t phys;
    uint32_t size;
};

struct query {
    struct rmq_broker *b;
    const char *topic;
    const char *key;
    bool unique;
    int64_t begin_ts;
    int64_t end_ts;
    struct found *out;
    uint32_t count;
    uint32_t max;
};

/* Is rec a message of q's topic carrying q's key? */
static bool
matches(const struct query *q, const struct rmq_record *rec)
{
    size_t kl = strlen(q->key);
    const char *v;
    size_t vl;

    if (rec->topic_len != strlen(q->topic) || memcmp(rec->topic, q->topic, rec->topic_len) != 0 ||
        rec->store_ts < q->begin_ts || rec->store_ts > q->end_ts) {
        return false;
    }
    if (rmq_props_get(rec->props, rec->props_len, "UNIQ_KEY", &v, &vl) && vl == kl &&
        memcmp(v, q->key, kl) == 0) {
        return true;
    }
    if (q->unique || !rmq_props_get(rec->props, rec->props_len, "KEYS", &v, &vl)) {
        return false;
    }
    for (size_t i = 0; i < vl;) {
        const char *sp = memchr(v + i, ' ', vl - i);
        size_t n = sp != NULL ? (size_t)(sp - (v + i)) : vl - i;

        if (n == kl && memcmp(v + i, q->key, kl) == 0) {
            return true;
        }
        i += n + 1;
    }
    return false;
}

static void
found_add(struct query *q, int64_t phys, uint32_t size)
{
    for (uint32_t i = 0; i < q->count; i++) {
        if (q->out[i].phys == phys) {
            return;
        }
    }
    if (q->count < q->max) {
        q->out[q->count].phys = phys;
        q->out[q->count].size = size;
        q->count++;
    }
}

static int
tail_one(void *ctx, const struct rmq_record *rec, const uint8_t *raw, uint32_t size)
{
    struct query *q = ctx;

    (void)raw;
    if (matches(q, rec)) {
        found_add(q, rec->phys_off, size);
    }
    return 0;
}

static int
cmp_found(const void *a, const void *b)
{
    const struct found *x = a, *y = b;

    return (x->phys > y->phys) - (x->phys < y->phys);
}

static void
h_query(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    char key[1024];
    char unique[8] = "";
    struct rmq_index_hit hits[QUERY_MAX * 4];
    struct found found[QUERY_MAX];
    struct rmq_header resp;
    struct query q = {.b = b, .topic = topic, .key = key, .out = found};
    int32_t max_num;
    uint32_t n;
    size_t total = 0, used = 0;
    uint8_t *body;
    char num_ts[24], num_off[24];

    (void)ref;
    if (!rmq_broker__need_str(c, req, "topic", topic, sizeof(topic)) ||
        !rmq_broker__need_str(c, req, "key", key, sizeof(key)) ||
        !rmq_broker__need_i32(c, req, "maxNum", &max_num) ||
        !rmq_broker__need_i64(c, req, "beginTimestamp", &q.begin_ts) ||
        !rmq_broker__need_i64(c, req, "endTimestamp", &q.end_ts)) {
        return;
    }
    if (b->index == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "messageIndexEnable=false on this broker: no key index");
        return;
    }
    rmq_broker__keys_flush(b);          /* nothing waits between a put and a query */
    rmq_broker__field_str(req, "_UNIQUE_KEY_QUERY", unique, sizeof(unique));
    q.unique = strcmp(unique, "true") == 0;
    q.max = q.unique ? UNIQUE_QUERY_MAX : (uint32_t)RMQ_MIN(RMQ_MAX(max_num, 1), QUERY_MAX);
    /* more hits than asked for: a collision or a stale entry is dropped on confirmation */
    n = rmq_index_query(b->index, rmq_index_hash(topic, strlen(topic), key, strlen(key)),
                        q.begin_ts, q.end_ts, hits, RMQ_MIN(q.max * 4, QUERY_MAX * 4));
    for (uint32_t i = 0; i < n && q.count < q.max; i++) {
        struct rmq_seg_map *pin;
        struct rmq_record rec;
        const uint8_t *p;

        if (hits[i].phys < (int64_t)rmq_store_min_off(b->store) ||
            (uint64_t)hits[i].phys + hits[i].size > rmq_store_written_off(b->store) ||
            rmq_store_view(b->store, (uint64_t)hits[i].phys, hits[i].size, &p, &pin) < 0) {
            continue;
        }
        if (rmq_record_decode(p, hits[i].size, false, &rec, NULL) == (int64_t)hits[i].size &&
            rec.phys_off == hits[i].phys && matches(&q, &rec)) {
            found_add(&q, hits[i].phys, hits[i].size);
        }
        rmq_store_unpin(b->store, pin);
    }
    /* written but not indexed yet */
    if ((uint64_t)rmq_index_end_phys(b->index) < rmq_store_written_off(b->store) && q.count < q.max) {
        rmq_store_walk(b->store, (uint64_t)rmq_index_end_phys(b->index), tail_one, &q);
    }
    if (q.count == 0) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_QUERY_NOT_FOUND,
                          "can not find message, maybe time range not correct");
        return;
    }
    qsort(found, q.count, sizeof(found[0]), cmp_found);
    for (uint32_t i = 0; i < q.count; i++) {
        total += found[i].size;
    }
    /* a control-path answer of at most 64 records: copied into one body */
    body = malloc(total);
    if (body == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_BUSY, "broker out of memory");
        return;
    }
    for (uint32_t i = 0; i < q.count; i++) {
        if (rmq_store_read(b->store, (uint64_t)found[i].phys, body + used, found[i].size) ==
            (ssize_t)found[i].size) {
            used += found[i].size;
        }
    }
    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    snprintf(num_ts, sizeof(num_ts), "%lld", (long long)rmq_index_end_ts(b->index));
    rmq_header_add(&resp, "indexLastUpdateTimestamp", num_ts);
    snprintf(num_off, sizeof(num_off), "%lld", (long long)rmq_index_end_phys(b->index));
    rmq_header_add(&resp, "indexLastUpdatePhyoffset", num_off);
    rmq_broker__send_resp(c, &req->h, &resp, body, (uint32_t)used);
    free(body);
}

void
rmq_broker__keys_install(struct rmq_broker *b)
{
    rmq_server_handle(&b->srv, RMQ_REQ_QUERY_MESSAGE, h_query, b);
}
