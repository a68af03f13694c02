/*
 * PULL_MESSAGE (spec/REMOTING.md §12.2) and long polling.
 *
 * Serving: the consume queue gives the records' ranges (tag filtering on the entries'
 * tag hashes, before the log is touched); the response body is those ranges of the
 * log as they lie in a read-only mapping of their segment, queued on the connection
 * as external segments. No record is re-encoded or copied in user space: the kernel
 * copies from the page cache into the socket. Adjacent records go out as one segment.
 * The mapping is pinned until the bytes are sent, so retention cannot unmap it early.
 * Responses of at least pullSpliceMinBytes go file -> pipe -> socket by splice
 * instead (net/conn.h); off by default: on loopback the copy measured faster
 * (rmq-bench broker --splice-min).
 *
 * Long polling: a pull that finds nothing (PULL_NOT_FOUND) with the SUSPEND flag is
 * parked under "topic@queueId" with a timer for its hold time. The store tells us of
 * each consume queue entry written (rmq_store_on_arrival); parked pulls of that queue
 * whose filter takes the new tag run again at once. A parked pull is always answered:
 * by an arrival, at its deadline, at shutdown; it is dropped only with its connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/log.h"
#include "core/util.h"

#define PULL_SYSFLAG_COMMIT 1
#define PULL_SYSFLAG_SUSPEND 2
#define PULL_SYSFLAG_SUBSCRIPTION 4
#define HOLD_MAX_MS 60000
#define PULL_POOL 1024

struct pull_seg {
    struct rmq_out_seg seg;
    struct rmq_pull_tx *tx;
    struct rmq_seg_map *pin;
};

/* One FOUND response's body segments; freed (to the pool) when the last is sent. */
struct rmq_pull_tx {
    struct rmq_broker *b;
    struct pull_seg segs[RMQ_PULL_MSGS_MAX];
    uint32_t nsegs;
    uint32_t left;
    struct rmq_pull_tx *next_free;
};

struct pull_args {
    const char *topic;
    uint32_t topic_len;
    const char *group;
    int32_t queue_id;
    int64_t offset;
    int32_t max_msgs;
    const int32_t *codes;           /* NULL: every tag */
    uint32_t code_count;
};

/* ---- tag expressions ------------------------------------------------------------------------ */

int
rmq_broker__parse_tags(const char *expr, size_t len, int32_t *codes, uint32_t *count, bool *all)
{
    size_t i = 0;

    *count = 0;
    *all = false;
    while (len > 0 && (expr[0] == ' ' || expr[0] == '\t')) {
        expr++;
        len--;
    }
    while (len > 0 && (expr[len - 1] == ' ' || expr[len - 1] == '\t')) {
        len--;
    }
    if (len == 0 || (len == 1 && expr[0] == '*')) {
        *all = true;
        return 0;
    }
    /* "A || B": split on "||", trim each, skip empties (the reference's parser) */
    while (i < len) {
        size_t start = i;
        size_t end;

        while (i < len && !(expr[i] == '|' && i + 1 < len && expr[i + 1] == '|')) {
            i++;
        }
        end = i;
        while (start < end && (expr[start] == ' ' || expr[start] == '\t')) {
            start++;
        }
        while (end > start && (expr[end - 1] == ' ' || expr[end - 1] == '\t')) {
            end--;
        }
        if (end > start) {
            if (*count == RMQ_PULL_CODES_MAX) {
                return -E2BIG;
            }
            codes[(*count)++] = (int32_t)rmq_tag_hash(expr + start, end - start);
        }
        i += 2;
    }
    if (*count == 0) {
        *all = true;
    }
    return 0;
}

/* ---- response bodies ------------------------------------------------------------------------ */

static struct rmq_pull_tx *
tx_get(struct rmq_broker *b)
{
    struct rmq_pull_tx *tx = b->pull_free;

    if (tx != NULL) {
        b->pull_free = tx->next_free;
        b->pull_free_count--;
    } else {
        tx = malloc(sizeof(*tx));
        if (tx == NULL) {
            return NULL;
        }
    }
    tx->b = b;
    tx->nsegs = 0;
    tx->left = 0;
    b->pulls_in_flight++;
    return tx;
}

static void
tx_put(struct rmq_pull_tx *tx)
{
    struct rmq_broker *b = tx->b;

    b->pulls_in_flight--;
    if (b->pull_free_count < PULL_POOL) {
        tx->next_free = b->pull_free;
        b->pull_free = tx;
        b->pull_free_count++;
    } else {
        free(tx);
    }
}

static void
seg_release(struct rmq_out_seg *seg)
{
    struct pull_seg *ps = rmq_container_of(seg, struct pull_seg, seg);
    struct rmq_pull_tx *tx = ps->tx;

    rmq_store_unpin(tx->b->store, ps->pin);
    if (--tx->left == 0) {
        tx_put(tx);
    }
}

/* Views of the found ranges, adjacent ones merged. 0 or -errno (nothing held then). */
static int
tx_fill(struct rmq_pull_tx *tx, const struct rmq_store_range *ranges, uint32_t count)
{
    struct rmq_broker *b = tx->b;

    for (uint32_t i = 0; i < count; i++) {
        struct pull_seg *prev = tx->nsegs > 0 ? &tx->segs[tx->nsegs - 1] : NULL;
        struct rmq_seg_map *pin;
        const uint8_t *data;
        int ret = rmq_store_view(b->store, ranges[i].phys, ranges[i].len, &data, &pin);

        if (ret < 0) {
            for (uint32_t j = 0; j < tx->nsegs; j++) {
                rmq_store_unpin(b->store, tx->segs[j].pin);
            }
            tx->nsegs = 0;
            return ret;
        }
        if (prev != NULL && prev->pin == pin && prev->seg.data + prev->seg.len == data) {
            prev->seg.len += ranges[i].len;
            rmq_store_unpin(b->store, pin);
            continue;
        }
        tx->segs[tx->nsegs] = (struct pull_seg){
            .seg = {.data = data, .len = ranges[i].len, .release = seg_release},
            .tx = tx,
            .pin = pin,
        };
        tx->nsegs++;
    }
    tx->left = tx->nsegs;
    return 0;
}

/* Large responses may go file -> pipe -> socket instead (pullSpliceMinBytes). */
static void
tx_use_splice(struct rmq_pull_tx *tx)
{
    for (uint32_t i = 0; i < tx->nsegs; i++) {
        struct pull_seg *ps = &tx->segs[i];
        uint64_t off;
        int fd = rmq_store_view_file(ps->pin, ps->seg.data, &off);

        if (fd >= 0) {
            ps->seg.is_file = true;
            ps->seg.file_fd = fd;
            ps->seg.file_off = off;
        }
    }
}

/* ---- one pull ------------------------------------------------------------------------------ */

static int32_t
map_status(const struct rmq_get_result *r, int64_t offset)
{
    switch (r->status) {
    case RMQ_GET_FOUND:
        return RMQ_RESP_SUCCESS;
    case RMQ_GET_NO_MATCHED_MESSAGE:
    case RMQ_GET_MESSAGE_WAS_REMOVING:
        return RMQ_RESP_PULL_RETRY_IMMEDIATELY;
    case RMQ_GET_NO_MESSAGE_IN_QUEUE:
    case RMQ_GET_NO_MATCHED_LOGIC_QUEUE:
        return offset != 0 ? RMQ_RESP_PULL_OFFSET_MOVED : RMQ_RESP_PULL_NOT_FOUND;
    case RMQ_GET_OFFSET_TOO_SMALL:
    case RMQ_GET_OFFSET_OVERFLOW_BADLY:
        return RMQ_RESP_PULL_OFFSET_MOVED;
    default:                        /* OVERFLOW_ONE, FOUND_NULL */
        return RMQ_RESP_PULL_NOT_FOUND;
    }
}

/*
 * Look up and answer. Returns the response code, or -EAGAIN when the pull found nothing
 * and may be parked (may_park): then nothing was sent.
 */
static int
pull_run(struct rmq_broker *b, struct rmq_conn *c, const struct rmq_header *req,
         const struct pull_args *a, bool may_park)
{
    struct rmq_store_range ranges[RMQ_PULL_MSGS_MAX];
    struct rmq_out_seg *segp[RMQ_PULL_MSGS_MAX];
    struct rmq_get_result r;
    struct rmq_header resp;
    struct rmq_pull_tx *tx;
    uint32_t max = (uint32_t)RMQ_MIN(RMQ_MAX(a->max_msgs, 1), RMQ_PULL_MSGS_MAX);
    int32_t code;
    int ret;

    rmq_store_get(b->store, a->topic, a->topic_len, a->queue_id, a->offset, max, a->codes,
                  a->code_count, ranges, &r);
    code = map_status(&r, a->offset);
    if (code == RMQ_RESP_PULL_NOT_FOUND && may_park) {
        return -EAGAIN;
    }
    if (code == RMQ_RESP_PULL_OFFSET_MOVED && b->cfg.broker_role == RMQ_ROLE_SLAVE) {
        /* a slave does not move consumers' offsets: back to the master (HA.md §7.5) */
        code = RMQ_RESP_PULL_RETRY_IMMEDIATELY;
        r.next_begin = a->offset;
        r.suggest_slave = false;
    }
    rmq_header_init_response(&resp, req, code);
    rmq_header_set_remark(&resp, rmq_get_status_name(r.status));
    rmq_header_add_i64(&resp, "nextBeginOffset", r.next_begin);
    rmq_header_add_i64(&resp, "minOffset", r.min_off);
    rmq_header_add_i64(&resp, "maxOffset", r.max_off);
    /* whichBrokerWhenConsumeSlowly (1) for a reader far behind, else the group's brokerId
     * (0): ringmq keeps no subscription groups, so the reference's defaults */
    rmq_header_add_i64(&resp, "suggestWhichBrokerId",
                       b->cfg.slave_read_enable && r.suggest_slave ? 1 : 0);
    if (code != RMQ_RESP_SUCCESS) {
        rmq_broker__send_resp(c, req, &resp, NULL, 0);
        return code;
    }
    tx = tx_get(b);
    if (tx == NULL || (ret = tx_fill(tx, ranges, r.count)) < 0) {
        if (tx != NULL) {
            tx_put(tx);
        }
        rmq_broker__reply(c, req, RMQ_RESP_SYSTEM_ERROR, "messages of %.*s/%d not readable: %s",
                          (int)a->topic_len, a->topic, a->queue_id,
                          tx == NULL ? "out of memory" : strerror(-ret));
        return RMQ_RESP_SYSTEM_ERROR;
    }
    if (b->cfg.pull_splice_min > 0 && r.bytes >= (uint64_t)b->cfg.pull_splice_min) {
        tx_use_splice(tx);
    }
    for (uint32_t i = 0; i < tx->nsegs; i++) {
        segp[i] = &tx->segs[i].seg;
    }
    ret = rmq_conn_send_ext(c, &resp, segp, tx->nsegs);
    if (ret < 0) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: pull response not sent peer=%s err=%s, peer "
                   "will time out", c->peer_str, strerror(-ret));
        for (uint32_t i = 0, n = tx->nsegs; i < n; i++) {
            seg_release(&tx->segs[i].seg);
        }
        return code;
    }
    b->stats.get_msgs += r.count;
    b->stats.get_bytes += r.bytes;
    return code;
}

/* ---- parking ------------------------------------------------------------------------------ */

static void
park_free(struct rmq_broker *b, struct rmq_parked_pull *p)
{
    struct rmq_parked_queue *pq = p->pq;

    rmq_timer_cancel(b->loop, &p->timer);
    rmq_list_del(&p->queue_link);
    rmq_list_del(&p->conn_link);
    if (rmq_list_is_empty(&pq->pulls)) {
        rmq_strmap_del(&b->parked, pq->key);
        free(pq);
    }
    b->parked_count--;
    free(p);
}

/* Run a parked pull again (no parking this time) and forget it. */
static void
park_answer(struct rmq_broker *b, struct rmq_parked_pull *p)
{
    struct rmq_conn *c = rmq_conn_from_handle(p->conn);

    if (c != NULL) {
        struct rmq_header req;
        struct pull_args a = {
            .topic = p->topic,
            .topic_len = p->topic_len,
            .group = p->group,
            .queue_id = p->queue_id,
            .offset = p->offset,
            .max_msgs = p->max_msgs,
            .codes = p->all ? NULL : p->codes,
            .code_count = p->code_count,
        };

        rmq_broker__restore_req(&req, &p->req);
        pull_run(b, c, &req, &a, false);
    }
    park_free(b, p);
}

static void
park_expired(struct rmq_timer *t)
{
    struct rmq_parked_pull *p = rmq_container_of(t, struct rmq_parked_pull, timer);

    park_answer(p->b, p);
}

static int
park(struct rmq_broker *b, struct rmq_conn *c, const struct rmq_header *req,
     const struct pull_args *a, bool all, uint64_t hold_ms)
{
    struct rmq_conn_info *ci = rmq_broker__info(b, c);
    struct rmq_parked_queue *pq;
    struct rmq_parked_pull *p;
    char key[sizeof(pq->key)];

    if (b->parked_count >= (uint64_t)b->cfg.max_parked_pulls) {
        return -ENOSPC;
    }
    snprintf(key, sizeof(key), "%.*s@%d", (int)a->topic_len, a->topic, a->queue_id);
    pq = rmq_strmap_get(&b->parked, key);
    if (pq == NULL) {
        pq = malloc(sizeof(*pq));
        if (pq == NULL) {
            return -ENOMEM;
        }
        memcpy(pq->key, key, sizeof(key));
        rmq_list_init(&pq->pulls);
        if (rmq_strmap_put(&b->parked, pq->key, pq) < 0) {
            free(pq);
            return -ENOMEM;
        }
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        if (rmq_list_is_empty(&pq->pulls)) {
            rmq_strmap_del(&b->parked, pq->key);
            free(pq);
        }
        return -ENOMEM;
    }
    p->b = b;
    p->pq = pq;
    p->conn = rmq_conn_handle(c);
    rmq_broker__save_req(&p->req, req);
    memcpy(p->topic, a->topic, a->topic_len);
    p->topic_len = (uint8_t)a->topic_len;
    snprintf(p->group, sizeof(p->group), "%s", a->group);
    p->queue_id = a->queue_id;
    p->offset = a->offset;
    p->max_msgs = a->max_msgs;
    p->all = all;
    p->code_count = all ? 0 : a->code_count;
    memcpy(p->codes, a->codes != NULL ? a->codes : p->codes, p->code_count * sizeof(int32_t));
    rmq_list_add_tail(&pq->pulls, &p->queue_link);
    rmq_list_add_tail(&ci->parked, &p->conn_link);
    rmq_timer_arm(b->loop, &p->timer, hold_ms * 1000000u, park_expired);
    b->parked_count++;
    b->stats.pulls_parked++;
    return 0;
}

void
rmq_broker__pull_arrival(void *ctx, const char *topic, uint32_t topic_len, int32_t queue_id,
                         int64_t max, int64_t tags_code)
{
    struct rmq_broker *b = ctx;
    struct rmq_parked_queue *pq;
    char key[RMQ_TOPIC_NAME_MAX + 16];
    struct rmq_link *n;
    struct rmq_link *next;

    if (topic_len == sizeof(RMQ_SCHEDULE_TOPIC) - 1 &&
        memcmp(topic, RMQ_SCHEDULE_TOPIC, topic_len) == 0) {
        rmq_broker__delay_arrival(b, queue_id, tags_code);
        return;
    }
    if (b->parked_count == 0) {
        return;
    }
    snprintf(key, sizeof(key), "%.*s@%d", (int)topic_len, topic, queue_id);
    pq = rmq_strmap_get(&b->parked, key);
    if (pq == NULL) {
        return;
    }
    for (n = pq->pulls.next; n != &pq->pulls; n = next) {
        struct rmq_parked_pull *p = rmq_container_of(n, struct rmq_parked_pull, queue_link);
        bool match = p->all;

        next = n->next;
        for (uint32_t i = 0; !match && i < p->code_count; i++) {
            match = p->codes[i] == (int32_t)tags_code;
        }
        if (p->offset < max && match) {
            bool last = next == &pq->pulls;

            b->stats.pulls_woken++;
            park_answer(b, p);      /* may free pq when p was its last pull */
            if (last) {
                break;
            }
        }
    }
}

void
rmq_broker__pull_conn_closed(struct rmq_broker *b, struct rmq_conn_info *ci)
{
    while (!rmq_list_is_empty(&ci->parked)) {
        park_free(b, rmq_container_of(ci->parked.next, struct rmq_parked_pull, conn_link));
    }
}

void
rmq_broker__pull_release_all(struct rmq_broker *b)
{
    struct rmq_parked_queue *pq;
    uint32_t pos = 0;

    /* answering may delete map entries; restart the walk after each queue emptied */
    while (b->parked_count > 0 && (pq = rmq_strmap_next(&b->parked, &pos)) != NULL) {
        while (!rmq_list_is_empty(&pq->pulls)) {
            struct rmq_parked_pull *p =
                rmq_container_of(pq->pulls.next, struct rmq_parked_pull, queue_link);
            bool last = p->queue_link.next == &pq->pulls;

            park_answer(b, p);
            if (last) {
                break;
            }
        }
    }
}

void
rmq_broker__pull_fini(struct rmq_broker *b)
{
    struct rmq_parked_queue *pq;
    uint32_t pos = 0;

    while ((pq = rmq_strmap_next(&b->parked, &pos)) != NULL) {
        while (!rmq_list_is_empty(&pq->pulls)) {
            struct rmq_parked_pull *p =
                rmq_container_of(pq->pulls.next, struct rmq_parked_pull, queue_link);
            bool last = p->queue_link.next == &pq->pulls;

            park_free(b, p);
            if (last) {
                break;
            }
        }
    }
    while (b->pull_free != NULL) {
        struct rmq_pull_tx *tx = b->pull_free;

        b->pull_free = tx->next_free;
        free(tx);
    }
    b->pull_free_count = 0;
}

/* ---- the request ------------------------------------------------------------------------------ */

static void
h_pull(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    char group[RMQ_GROUP_NAME_MAX + 1];
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    int32_t codes[RMQ_PULL_CODES_MAX];
    uint32_t code_count = 0;
    bool all = true;
    int32_t queue_id, max_msgs, sysflag;
    int64_t offset, commit = -1, suspend = 0;
    const struct rmq_topic_config *tc;
    struct rmq_str v;
    struct pull_args a;
    uint64_t hold;
    int ret;

    (void)ref;
    b->stats.pulls++;
    if (rmq_broker__ha_unusable(b) != NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "this slave does not serve reads: "
                          "its log does not match its master's (%s)", rmq_broker__ha_unusable(b));
        return;
    }
    if (!rmq_broker__need_str(c, req, "consumerGroup", group, sizeof(group)) ||
        !rmq_broker__need_str(c, req, "topic", topic, sizeof(topic)) ||
        !rmq_broker__need_i32(c, req, "queueId", &queue_id) ||
        !rmq_broker__need_i64(c, req, "queueOffset", &offset) ||
        !rmq_broker__need_i32(c, req, "maxMsgNums", &max_msgs) ||
        !rmq_broker__need_i32(c, req, "sysFlag", &sysflag) ||
        /* required (REMOTING.md): a commit flag without a value used to store -1 */
        !rmq_broker__need_i64(c, req, "commitOffset", &commit) ||
        !rmq_broker__need_i64(c, req, "suspendTimeoutMillis", &suspend)) {
        return;
    }
    if (!(b->cfg.broker_permission & RMQ_PERM_READ)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_NO_PERMISSION,
                          "the broker[%s] pulling message is forbidden", b->cfg.broker_name);
        return;
    }
    tc = rmq_topics_get(&b->topics, topic, strlen(topic));
    if (tc == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_TOPIC_NOT_EXIST,
                          "topic[%s] not exist, apply first please!", topic);
        return;
    }
    if (!(tc->perm & RMQ_PERM_READ)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_NO_PERMISSION,
                          "the topic[%s] pulling message is forbidden", topic);
        return;
    }
    if (queue_id < 0 || queue_id >= tc->read_queues) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "queueId[%d] is illegal, topic:[%s] topicConfig.readQueueNums:[%d] "
                          "consumer:[%s]", queue_id, topic, tc->read_queues, c->peer_str);
        return;
    }
    if (rmq_header_get(&req->h, "expressionType", &v) && v.len > 0 && !rmq_str_eq(v, "TAG")) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "The broker does not support consumer to filter message by %.*s",
                          (int)RMQ_MIN(v.len, 32u), v.ptr);
        return;
    }
    if (sysflag & PULL_SYSFLAG_SUBSCRIPTION) {
        struct rmq_str sub = {"", 0};

        rmq_header_get(&req->h, "subscription", &sub);
        if (rmq_broker__parse_tags(sub.ptr, sub.len, codes, &code_count, &all) < 0) {
            rmq_broker__reply(c, &req->h, RMQ_RESP_SUBSCRIPTION_PARSE_FAILED,
                              "parse the consumer's subscription[%.*s] failed: more than %d tags",
                              (int)RMQ_MIN(sub.len, 256u), sub.ptr, RMQ_PULL_CODES_MAX);
            return;
        }
    } else {
        const struct rmq_consumer_group *g = rmq_strmap_get(&b->consumers, group);
        const struct rmq_subscription *s = NULL;

        for (uint32_t i = 0; g != NULL && i < g->sub_count; i++) {
            if (strcmp(g->subs[i].topic, topic) == 0) {
                s = &g->subs[i];
            }
        }
        if (s == NULL) {
            rmq_broker__reply(c, &req->h, RMQ_RESP_SUBSCRIPTION_NOT_EXIST,
                              "the consumer's subscription not exist, group: %s topic: %s "
                              "(send a heartbeat first, or set the SUBSCRIPTION pull flag)",
                              group, topic);
            return;
        }
        all = s->all;
        code_count = s->code_count;
        memcpy(codes, s->codes, code_count * sizeof(int32_t));
    }
    if ((sysflag & PULL_SYSFLAG_COMMIT) && b->cfg.broker_role != RMQ_ROLE_SLAVE) {
        ret = rmq_offsets_commit(&b->offsets, topic, group, queue_id, commit);
        if (ret < 0) {
            RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: pull's commit offset not stored group=%s "
                       "topic=%s queue=%d err=%s", group, topic, queue_id, strerror(-ret));
        }
    }
    a = (struct pull_args){
        .topic = topic,
        .topic_len = (uint32_t)strlen(topic),
        .group = group,
        .queue_id = queue_id,
        .offset = offset,
        .max_msgs = max_msgs,
        .codes = all ? NULL : codes,
        .code_count = code_count,
    };
    hold = b->cfg.long_polling ? (uint64_t)RMQ_MIN(RMQ_MAX(suspend, 0), HOLD_MAX_MS)
                               : (uint64_t)b->cfg.short_polling_ms;
    ret = pull_run(b, c, &req->h, &a, (sysflag & PULL_SYSFLAG_SUSPEND) && hold > 0 && !b->stopping);
    if (ret == -EAGAIN && park(b, c, &req->h, &a, all, hold) < 0) {
        pull_run(b, c, &req->h, &a, false);
    }
}

void
rmq_broker__pull_install(struct rmq_broker *b)
{
    rmq_server_handle(&b->srv, RMQ_REQ_PULL_MESSAGE, h_pull, b);
}
