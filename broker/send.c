/*
 * SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320), also batches
 * sent as 310 with m=true (spec/REMOTING.md §12.1, STORE.md §10).
 *
 * Zero copy: the record's body is the request body where it was received. The handler
 * keeps the receive buffer (rmq_bufref_acquire) until the store has written the
 * record, so the store's vectored write reads the body straight from it. Only a frame
 * the connection had to stitch across receive buffers (large or split ones) lives in
 * memory that is reused after the handler: its body and properties are copied once.
 *
 * A send context comes from a free list (no malloc per message once warm) and is
 * answered from the store's completion: SUCCESS, FLUSH_DISK_TIMEOUT (stored, not yet
 * durable), or a refusal naming the cause. A message's properties are stored exactly
 * as the producer sent them (its UNIQ_KEY included); batch entries get the batch-level
 * properties and CLUSTER appended as the reference does.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/be.h"
#include "core/log.h"
#include "core/util.h"

#define BATCH_ENTRY_HEAD 20
#define BATCH_MAX_MSGS 4096
#define DEFAULT_MAX_RECONSUME 16
#define TOPIC_NOT_EXIST_FAQ "\nSee http://rocketmq.apache.org/docs/faq/ for further details."

struct batch_msg {
    struct rmq_store_msg m;
    struct rmq_send_ctx *ctx;
};

struct rmq_send_ctx {
    struct rmq_store_msg m;                 /* single message */
    struct rmq_broker *b;
    struct rmq_conn_handle conn;
    struct rmq_saved_req req;
    struct rmq_net_loop *nl;
    int32_t bid;                            /* receive buffer held, or -1 */
    uint8_t *owned;                         /* copies for a stitched frame; batch memory */
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    struct batch_msg *batch;                /* in owned */
    uint32_t batch_n;
    uint32_t batch_left;
    int status;                             /* worst status over the batch */
    bool wait_slave;                        /* SYNC_MASTER and WAIT is not "false" */
    int32_t repl_code;                      /* SLAVE_NOT_AVAILABLE, FLUSH_SLAVE_TIMEOUT or 0 */
    struct rmq_ha_wait hw;
    struct rmq_send_ctx *next_free;
};

/* Long (code 10) and short (310, 320) names of the request fields. */
enum { F_GROUP, F_TOPIC, F_DEFTOPIC, F_DEFQUEUES, F_QUEUE, F_SYSFLAG, F_BORN, F_FLAG, F_PROPS,
       F_RECONSUME, F_UNIT, F_MAXRECONSUME, F_BATCH, F_COUNT };
static const char *const long_names[F_COUNT] = {
    "producerGroup", "topic", "defaultTopic", "defaultTopicQueueNums", "queueId", "sysFlag",
    "bornTimestamp", "flag", "properties", "reconsumeTimes", "unitMode", "maxReconsumeTimes",
    "batch"};
static const char *const short_names[F_COUNT] = {"a", "b", "c", "d", "e", "f", "g", "h", "i",
                                                 "j", "k", "l", "m"};

/* Topics clients may not write (spec/REMOTING.md §12.1 step 3). */
static const char *const forbidden_topics[] = {
    "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC", "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT"};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t
rand_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* ---- contexts ---------------------------------------------------------------------------- */

static struct rmq_send_ctx *
ctx_get(struct rmq_broker *b)
{
    struct rmq_send_ctx *x = b->send_free;

    if (x != NULL) {
        b->send_free = x->next_free;
        b->send_free_count--;
    } else {
        x = malloc(sizeof(*x));
        if (x == NULL) {
            return NULL;
        }
    }
    memset(&x->m, 0, sizeof(x->m));
    x->b = b;
    x->bid = -1;
    x->owned = NULL;
    x->batch = NULL;
    x->batch_n = 0;
    x->batch_left = 0;
    x->status = 0;
    x->wait_slave = false;
    x->repl_code = 0;
    b->sends_in_flight++;
    return x;
}

static void
ctx_put(struct rmq_send_ctx *x)
{
    struct rmq_broker *b = x->b;

    if (x->bid >= 0) {
        struct rmq_bufref ref = {x->nl, x->bid};

        rmq_bufref_release(&ref);
    }
    free(x->owned);
    b->sends_in_flight--;
    if (b->send_free_count < RMQ_SEND_POOL) {
        x->next_free = b->send_free;
        b->send_free = x;
        b->send_free_count++;
    } else {
        free(x);
    }
}

void
rmq_broker__send_fini(struct rmq_broker *b)
{
    while (b->send_free != NULL) {
        struct rmq_send_ctx *x = b->send_free;

        b->send_free = x->next_free;
        free(x);
    }
    b->send_free_count = 0;
}

/* ---- answers ----------------------------------------------------------------------------- */

static int32_t
status_code(int status, const char **why)
{
    switch (status) {
    case 0:
        *why = NULL;
        return RMQ_RESP_SUCCESS;
    case -ETIMEDOUT:
        *why = "flush to disk not confirmed within syncFlushTimeout (message stored)";
        return RMQ_RESP_FLUSH_DISK_TIMEOUT;
    case -ENOSPC:
        *why = "service not available now: the broker's disk is full (over "
               "diskSpaceWarningLevelRatio, or the file system returned ENOSPC); sends resume "
               "when space returns";
        return RMQ_RESP_SERVICE_NOT_AVAILABLE;
    case -EIO:
        *why = "service not available now: the store stopped after a failed write or fdatasync "
               "(see the broker log); check the disk and restart the broker";
        return RMQ_RESP_SERVICE_NOT_AVAILABLE;
    case -ESHUTDOWN:
        *why = "service not available now: the broker is shutting down";
        return RMQ_RESP_SERVICE_NOT_AVAILABLE;
    case -EMSGSIZE:
        *why = "message too large for the store (record over maxMessageSize or properties over "
               "32767 bytes)";
        return RMQ_RESP_MESSAGE_ILLEGAL;
    case -EINVAL:
        *why = "topic not accepted by the store";
        return RMQ_RESP_MESSAGE_ILLEGAL;
    default:
        *why = "store failed";
        return RMQ_RESP_SYSTEM_ERROR;
    }
}

static void
answer(struct rmq_send_ctx *x)
{
    struct rmq_broker *b = x->b;
    struct rmq_conn *c = rmq_conn_from_handle(x->conn);
    struct rmq_header req;
    struct rmq_header resp;
    const char *why;
    int32_t code = status_code(x->status, &why);
    bool stored;
    char one_id[33];
    char *ids = NULL;
    const struct rmq_record *first = x->batch != NULL ? &x->batch[0].m.rec : &x->m.rec;

    if (x->repl_code != 0 && (code == RMQ_RESP_SUCCESS || code == RMQ_RESP_FLUSH_DISK_TIMEOUT)) {
        /* stored, but not replicated as asked: the replication status wins (HA.md §4) */
        code = x->repl_code;
        why = code == RMQ_RESP_SLAVE_NOT_AVAILABLE
                  ? "stored on the master; no slave is connected, or it is more than "
                    "haMaxGapNotInSync behind (SYNC_MASTER)"
                  : "stored on the master; the slave did not confirm it within syncFlushTimeout "
                    "(SYNC_MASTER)";
    }
    stored = code == RMQ_RESP_SUCCESS || code == RMQ_RESP_FLUSH_DISK_TIMEOUT ||
             code == RMQ_RESP_SLAVE_NOT_AVAILABLE || code == RMQ_RESP_FLUSH_SLAVE_TIMEOUT;
    if (stored) {
        b->stats.put_msgs += x->batch != NULL ? x->batch_n : 1;
    } else {
        b->stats.put_refused++;
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: send not stored topic=%s err=%s: %s", x->topic,
                   strerror(-x->status), why);
    }
    if (c == NULL) {
        ctx_put(x);
        return;
    }
    rmq_broker__restore_req(&req, &x->req);
    rmq_header_init_response(&resp, &req, code);
    if (stored) {
        if (x->batch != NULL) {
            ids = malloc((size_t)x->batch_n * 33);
            if (ids != NULL) {
                for (uint32_t i = 0; i < x->batch_n; i++) {
                    rmq_msg_offset_id(ids + i * 33, b->store_ip, (int32_t)b->srv.port,
                                      x->batch[i].m.rec.phys_off);
                    ids[i * 33 + 32] = i + 1 < x->batch_n ? ',' : '\0';
                }
            }
            rmq_header_add(&resp, "msgId", ids != NULL ? ids : "");
        } else {
            int64_t off = first->phys_off;

            if (x->m.rec.topic == (const char *)RMQ_TIMER_TOPIC) {
                off |= RMQ_TIMER_LOG_ID_BIT;        /* the record waits in the timer log */
            }
            rmq_msg_offset_id(one_id, b->store_ip, (int32_t)b->srv.port, off);
            rmq_header_add(&resp, "msgId", one_id);
        }
        rmq_header_add_i64(&resp, "queueId", first->queue_id);
        rmq_header_add_i64(&resp, "queueOffset", first->queue_off);
        rmq_header_add(&resp, "MSG_REGION", b->cfg.region);
        rmq_header_add(&resp, "TRACE_ON", b->cfg.trace_on ? "true" : "false");
    }
    if (why != NULL) {
        rmq_header_set_remark(&resp, why);
    }
    rmq_broker__send_resp(c, &req, &resp, NULL, 0);
    free(ids);
    ctx_put(x);
}

static void
repl_done(struct rmq_ha_wait *w, int status)
{
    struct rmq_send_ctx *x = rmq_container_of(w, struct rmq_send_ctx, hw);

    if (status == -ETIMEDOUT) {
        x->repl_code = RMQ_RESP_FLUSH_SLAVE_TIMEOUT;
    } else if (status != 0) {
        x->repl_code = RMQ_RESP_SLAVE_NOT_AVAILABLE;    /* stopping */
    }
    answer(x);
}

/* The store has the message: answer now, or once a slave has it (SYNC_MASTER). */
static void
stored(struct rmq_send_ctx *x)
{
    struct rmq_broker *b = x->b;
    const struct rmq_record *last = x->batch != NULL ? &x->batch[x->batch_n - 1].m.rec
                                                     : &x->m.rec;
    int ret;

    /* a timed message waits in the timer log, which is not replicated (README: HA) */
    if (!x->wait_slave || (x->status != 0 && x->status != -ETIMEDOUT) ||
        (x->batch == NULL && x->m.rec.topic == (const char *)RMQ_TIMER_TOPIC)) {
        answer(x);
        return;
    }
    if (x->bid >= 0) {
        struct rmq_bufref ref = {x->nl, x->bid};

        rmq_bufref_release(&ref);       /* written: the receive buffer is free again */
        x->bid = -1;
    }
    x->hw.done = repl_done;
    ret = rmq_broker__ha_wait(b, &x->hw, last);
    if (ret != 0) {
        x->repl_code = ret < 0 ? RMQ_RESP_SLAVE_NOT_AVAILABLE : 0;
        answer(x);
    }
}

static void
single_done(struct rmq_store_msg *m, int status)
{
    struct rmq_send_ctx *x = rmq_container_of(m, struct rmq_send_ctx, m);

    x->status = status;
    stored(x);
}

static void
batch_done(struct rmq_store_msg *m, int status)
{
    struct batch_msg *bm = rmq_container_of(m, struct batch_msg, m);
    struct rmq_send_ctx *x = bm->ctx;

    /* the worst outcome decides: any refusal beats a flush timeout beats success */
    if (status != 0 && (x->status == 0 || x->status == -ETIMEDOUT)) {
        x->status = status;
    }
    if (--x->batch_left == 0) {
        stored(x);
    }
}

/* ---- request ---------------------------------------------------------------------------- */

struct send_fields {
    struct rmq_str group;
    struct rmq_str topic;
    struct rmq_str def_topic;
    int32_t def_queues;
    int32_t queue_id;
    int32_t sysflag;
    int64_t born_ts;
    int32_t flag;
    struct rmq_str props;
    int32_t reconsume;
    int32_t max_reconsume;          /* -1: not sent (or version < 121) */
    bool batch;
};

static bool
read_fields(struct rmq_conn *c, const struct rmq_frame *req, struct send_fields *f)
{
    const char *const *n = req->h.code == RMQ_REQ_SEND_MESSAGE ? long_names : short_names;
    int64_t v;

    memset(f, 0, sizeof(*f));
    if (!rmq_header_get(&req->h, n[F_GROUP], &f->group) ||
        !rmq_header_get(&req->h, n[F_TOPIC], &f->topic) ||
        !rmq_header_get(&req->h, n[F_DEFTOPIC], &f->def_topic)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "the custom field <producerGroup/topic/defaultTopic> is null");
        return false;
    }
    if (!rmq_broker__need_i32(c, req, n[F_DEFQUEUES], &f->def_queues) ||
        !rmq_broker__need_i32(c, req, n[F_QUEUE], &f->queue_id) ||
        !rmq_broker__need_i32(c, req, n[F_SYSFLAG], &f->sysflag) ||
        !rmq_broker__need_i64(c, req, n[F_BORN], &f->born_ts) ||
        !rmq_broker__need_i32(c, req, n[F_FLAG], &f->flag)) {
        return false;
    }
    rmq_header_get(&req->h, n[F_PROPS], &f->props);
    if (rmq_header_get_i64(&req->h, n[F_RECONSUME], &v) == 0 && v >= 0 && v <= INT32_MAX) {
        f->reconsume = (int32_t)v;
    }
    f->max_reconsume = -1;
    if (req->h.version >= 121 && rmq_header_get_i64(&req->h, n[F_MAXRECONSUME], &v) == 0 &&
        v >= 0 && v <= INT32_MAX) {
        f->max_reconsume = (int32_t)v;
    }
    rmq_header_get_bool(&req->h, n[F_BATCH], &f->batch);
    if (req->h.code == RMQ_REQ_SEND_BATCH_MESSAGE) {
        f->batch = true;
    }
    return true;
}

/* The topic to write, auto-created when allowed; NULL after answering why not. */
static const struct rmq_topic_config *
resolve_topic(struct rmq_broker *b, struct rmq_conn *c, const struct rmq_frame *req,
              const struct send_fields *f, char *topic)
{
    const struct rmq_topic_config *tc;
    char def[RMQ_TOPIC_NAME_MAX + 1];

    if (!rmq_topic_name_valid(f->topic.ptr, f->topic.len)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "The specified topic[%.*s] is not valid: 1 to 127 characters of "
                          "[%%|a-zA-Z0-9_-]", (int)RMQ_MIN(f->topic.len, 200u), f->topic.ptr);
        return NULL;
    }
    memcpy(topic, f->topic.ptr, f->topic.len);
    topic[f->topic.len] = '\0';
    for (size_t i = 0; i < RMQ_ARRAY_LEN(forbidden_topics); i++) {
        if (strcmp(topic, forbidden_topics[i]) == 0) {
            rmq_broker__reply(c, &req->h, RMQ_RESP_NO_PERMISSION,
                              "Sending message to topic[%s] is forbidden.", topic);
            return NULL;
        }
    }
    tc = rmq_topics_get(&b->topics, topic, f->topic.len);
    if (tc == NULL && strncmp(topic, "%RETRY%", 7) == 0) {
        rmq_broker__topic_ensure(b, topic, 1, RMQ_PERM_READ | RMQ_PERM_WRITE);
        tc = rmq_topics_get(&b->topics, topic, f->topic.len);
    } else if (tc == NULL && b->cfg.auto_create_topic && f->def_topic.len <= RMQ_TOPIC_NAME_MAX) {
        const struct rmq_topic_config *tpl;

        memcpy(def, f->def_topic.ptr, f->def_topic.len);
        def[f->def_topic.len] = '\0';
        tpl = rmq_topics_get(&b->topics, def, f->def_topic.len);
        if (tpl != NULL && (tpl->perm & RMQ_PERM_INHERIT)) {
            int32_t q = RMQ_MIN(RMQ_MAX(f->def_queues, 1), tpl->write_queues);

            rmq_broker__topic_ensure(b, topic, q, tpl->perm & ~RMQ_PERM_INHERIT);
            tc = rmq_topics_get(&b->topics, topic, f->topic.len);
        }
    }
    if (tc == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_TOPIC_NOT_EXIST,
                          "topic[%s] not exist, apply first please!%s", topic,
                          b->cfg.auto_create_topic ? "" : " (autoCreateTopicEnable=false)");
        return NULL;
    }
    if (!(tc->perm & RMQ_PERM_WRITE)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_NO_PERMISSION,
                          "the topic[%s] sending message is forbidden", topic);
        return NULL;
    }
    return tc;
}

static void
fill_record(struct rmq_broker *b, struct rmq_conn *c, const struct send_fields *f,
            const char *topic, int32_t queue_id, struct rmq_record *r)
{
    const struct sockaddr_in *peer = (const struct sockaddr_in *)&c->peer;

    memset(r, 0, sizeof(*r));
    r->queue_id = queue_id;
    r->flag = f->flag;
    r->sysflag = f->sysflag & ~(RMQ_SYSFLAG_BORNHOST_V6 | RMQ_SYSFLAG_STOREHOST_V6);
    r->born_ts = f->born_ts;
    if (c->peer.ss_family == AF_INET) {
        memcpy(r->born_ip, &peer->sin_addr, 4);
        r->born_port = ntohs(peer->sin_port);
    }
    memcpy(r->store_ip, b->store_ip, 4);
    r->store_port = (int32_t)b->srv.port;
    r->reconsume_times = f->reconsume;
    r->topic = topic;
    r->topic_len = (uint8_t)strlen(topic);
}

/* Copy len bytes of src into *dst (stitched frames only); advances *dst. */
static const void *
keep(uint8_t **dst, const void *src, size_t len)
{
    void *p = *dst;

    memcpy(p, src, len);
    *dst += len;
    return p;
}

/* Split a batch body into entries, each its own record (spec/STORE.md §10). */
static int
batch_prepare(struct rmq_broker *b, struct rmq_send_ctx *x, struct rmq_conn *c,
              const struct send_fields *f, const uint8_t *body, uint32_t len, int32_t queue_id,
              const char **why)
{
    uint32_t n = 0;
    size_t props_total = 0;
    size_t tail_len = f->props.len + 1 + 8 + strlen(b->cfg.cluster) + 1;
    uint8_t *mem;
    char *pp;

    for (uint32_t off = 0; off < len; n++) {
        uint32_t total, blen;
        uint16_t plen;

        if (len - off < BATCH_ENTRY_HEAD + 2 || n >= BATCH_MAX_MSGS) {
            *why = n >= BATCH_MAX_MSGS ? "batch has more than 4096 messages" : "batch truncated";
            return -EBADMSG;
        }
        total = rmq_get_be32(body + off);
        blen = rmq_get_be32(body + off + 16);
        if (blen > len - off - BATCH_ENTRY_HEAD - 2) {
            *why = "batch entry body runs past the batch";
            return -EBADMSG;
        }
        plen = rmq_get_be16(body + off + BATCH_ENTRY_HEAD + blen);
        if (total != BATCH_ENTRY_HEAD + blen + 2u + plen || total > len - off || plen > 32767) {
            *why = "batch entry size does not match its parts";
            return -EBADMSG;
        }
        if (blen > (uint32_t)b->cfg.store.maxMessageSize) {
            *why = "a batch entry's body is over maxMessageSize";
            return -EMSGSIZE;
        }
        props_total += plen + 1 + tail_len;
        off += total;
    }
    if (n == 0) {
        *why = "empty batch";
        return -EBADMSG;
    }
    mem = malloc(n * sizeof(struct batch_msg) + props_total + (x->bid < 0 ? len : 0));
    if (mem == NULL) {
        *why = "out of memory";
        return -ENOMEM;
    }
    x->owned = mem;
    x->batch = (struct batch_msg *)mem;
    x->batch_n = x->batch_left = n;
    pp = (char *)(mem + n * sizeof(struct batch_msg));
    if (x->bid < 0) {
        uint8_t *dst = (uint8_t *)pp + props_total;

        body = keep(&dst, body, len);
    }
    for (uint32_t i = 0, off = 0; i < n; i++) {
        struct batch_msg *bm = &x->batch[i];
        uint32_t blen = rmq_get_be32(body + off + 16);
        uint16_t plen = rmq_get_be16(body + off + BATCH_ENTRY_HEAD + blen);
        const char *eprops = (const char *)body + off + BATCH_ENTRY_HEAD + blen + 2;
        char *start = pp;

        memset(&bm->m, 0, sizeof(bm->m));
        bm->ctx = x;
        fill_record(b, c, f, x->topic, queue_id, &bm->m.rec);
        bm->m.rec.flag = (int32_t)rmq_get_be32(body + off + 12);
        bm->m.rec.body = body + off + BATCH_ENTRY_HEAD;
        bm->m.rec.body_len = blen;
        memcpy(pp, eprops, plen);
        pp += plen;
        if (plen > 0 && eprops[plen - 1] != RMQ_PROP_SEP) {
            *pp++ = RMQ_PROP_SEP;
        }
        if (f->props.len > 0) {
            memcpy(pp, f->props.ptr, f->props.len);
            pp += f->props.len;
            if (f->props.ptr[f->props.len - 1] != RMQ_PROP_SEP) {
                *pp++ = RMQ_PROP_SEP;
            }
        }
        pp += sprintf(pp, "CLUSTER%c%s", RMQ_PROP_NAME_SEP, b->cfg.cluster);
        if (pp - start > RMQ_RECORD_PROPS_MAX) {
            *why = "a batch entry's properties are over 32767 bytes";
            return -EMSGSIZE;
        }
        bm->m.rec.props = start;
        bm->m.rec.props_len = (uint16_t)(pp - start);
        bm->m.done = batch_done;
        off += BATCH_ENTRY_HEAD + blen + 2u + plen;
    }
    return 0;
}

static void
h_send(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct send_fields f;
    const struct rmq_topic_config *tc;
    struct rmq_send_ctx *x;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    const char *why = NULL;
    int32_t queue_id, level, tx;
    int64_t deliver;
    bool dead;
    int ret;

    b->stats.put_bytes += req->body_len;
    if (!read_fields(c, req, &f)) {
        return;
    }
    if (b->stopping) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SERVICE_NOT_AVAILABLE,
                          "service not available now: the broker is shutting down");
        return;
    }
    if (!(b->cfg.broker_permission & RMQ_PERM_WRITE) || b->cfg.broker_role == RMQ_ROLE_SLAVE) {
        rmq_broker__reply(c, &req->h, b->cfg.broker_role == RMQ_ROLE_SLAVE
                                          ? RMQ_RESP_SERVICE_NOT_AVAILABLE : RMQ_RESP_NO_PERMISSION,
                          "the broker[%s] sending message is forbidden%s", b->cfg.broker_name,
                          b->cfg.broker_role == RMQ_ROLE_SLAVE ? " (slave)" : "");
        return;
    }
    tc = resolve_topic(b, c, req, &f, topic);
    if (tc == NULL) {
        return;
    }
    if (f.queue_id >= RMQ_MAX(tc->write_queues, tc->read_queues)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "request queueId[%d] is illegal, topic[%s] writeQueueNums[%d] "
                          "readQueueNums[%d]", f.queue_id, topic, tc->write_queues,
                          tc->read_queues);
        return;
    }
    queue_id = f.queue_id >= 0 ? f.queue_id : (int32_t)(rand_u32() % (uint32_t)tc->write_queues);
    dead = strncmp(topic, "%RETRY%", 7) == 0 && !f.batch &&
           f.reconsume >= (f.max_reconsume >= 0 ? f.max_reconsume : DEFAULT_MAX_RECONSUME);
    if (dead) {
        /* consumed too often: to %DLQ%<group>, without its delay (REMOTING.md §12.1, 6) */
        char dlq[RMQ_TOPIC_NAME_MAX + 1];

        if (snprintf(dlq, sizeof(dlq), "%%DLQ%%%s", topic + 7) >= (int)sizeof(dlq) ||
            rmq_broker__topic_ensure(b, dlq, 1, RMQ_PERM_WRITE) < 0) {
            rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "topic[%%DLQ%%%s] not created",
                              topic + 7);
            return;
        }
        memcpy(topic, dlq, strlen(dlq) + 1);
        queue_id = 0;
    }
    if (tc->filter == RMQ_FILTER_MULTI_TAG) {
        f.sysflag |= RMQ_SYSFLAG_MULTI_TAGS;
    }
    if (!f.batch && req->body_len > (uint64_t)b->cfg.store.maxMessageSize) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_MESSAGE_ILLEGAL,
                          "the message body size %u is over the limit, MAX: %lld (maxMessageSize)",
                          req->body_len, (long long)b->cfg.store.maxMessageSize);
        return;
    }
    if (f.props.len > RMQ_RECORD_PROPS_MAX) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_MESSAGE_ILLEGAL,
                          "the message properties are %u bytes, over the limit of 32767",
                          f.props.len);
        return;
    }
    deliver = f.batch || dead ? 0 : rmq_broker__timer_deliver_ms(b, f.props.ptr, f.props.len);
    if (deliver < 0) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_MESSAGE_ILLEGAL,
                          "TIMER_DELIVER_MS / TIMER_DELAY_MS / TIMER_DELAY_SEC is not a number or "
                          "lies more than timerMaxDelaySec (%lld s) ahead",
                          (long long)b->cfg.timer_max_delay_sec);
        return;
    }
    x = ctx_get(b);
    if (x == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_BUSY, "broker out of memory");
        return;
    }
    x->conn = rmq_conn_handle(c);
    x->nl = ref->nl;
    if (b->cfg.broker_role == RMQ_ROLE_SYNC_MASTER) {
        const char *wait;
        size_t wait_len;

        x->wait_slave = !(rmq_props_get(f.props.ptr, f.props.len, "WAIT", &wait, &wait_len) &&
                          wait_len == 5 && memcmp(wait, "false", 5) == 0);
    }
    rmq_broker__save_req(&x->req, &req->h);
    memcpy(x->topic, topic, strlen(topic) + 1);
    if (rmq_bufref_acquire(ref) == 0) {
        x->bid = ref->bid;
    }
    if (f.batch) {
        ret = batch_prepare(b, x, c, &f, req->body, req->body_len, queue_id, &why);
        if (ret < 0) {
            rmq_broker__reply(c, &req->h, ret == -EMSGSIZE ? RMQ_RESP_MESSAGE_ILLEGAL
                                                           : RMQ_RESP_SYSTEM_ERROR,
                              "batch refused: %s", why);
            ctx_put(x);
            return;
        }
        for (uint32_t i = 0; i < x->batch_n; i++) {
            rmq_store_append(b->store, &x->batch[i].m);
        }
        return;
    }
    fill_record(b, c, &f, x->topic, queue_id, &x->m.rec);
    x->m.rec.body = req->body;
    x->m.rec.body_len = req->body_len;
    x->m.rec.props = f.props.ptr;
    x->m.rec.props_len = (uint16_t)f.props.len;
    level = dead ? 0 : rmq_broker__delay_level(b, f.props.ptr, f.props.len);
    tx = f.sysflag & RMQ_SYSFLAG_TX_MASK;
    if (level > 0 && ((tx != 0 && tx != RMQ_SYSFLAG_TX_COMMIT) ||
                      strcmp(x->topic, RMQ_SCHEDULE_TOPIC) == 0)) {
        level = 0;
    }
    /* a message kept aside until due, or on its way to the DLQ, gets new properties; the
     * body moves along only when the frame was stitched (else it stays in its buffer) */
    if (deliver > 0 || dead || level > 0 || x->bid < 0) {
        size_t body_copy = x->bid < 0 ? req->body_len : 0;
        uint8_t *dst = malloc(body_copy + f.props.len + 256);
        size_t n;

        if (dst == NULL) {
            rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_BUSY, "broker out of memory");
            ctx_put(x);
            return;
        }
        x->owned = dst;
        if (body_copy > 0) {
            x->m.rec.body = keep(&dst, req->body, req->body_len);
        }
        if (deliver > 0) {          /* kept in the timer log until then (timer.c) */
            n = rmq_broker__timer_props((char *)dst, f.props.ptr, f.props.len, x->topic,
                                        queue_id, deliver);
        } else if (dead) {
            n = rmq_broker__props_without_delay((char *)dst, f.props.ptr, f.props.len);
        } else if (level > 0) {     /* SCHEDULE_TOPIC_XXXX queue level-1 (schedule.c) */
            n = rmq_broker__delay_props((char *)dst, f.props.ptr, f.props.len, x->topic,
                                        queue_id);
        } else {
            memcpy(dst, f.props.ptr, f.props.len);
            n = f.props.len;
        }
        if (n > RMQ_RECORD_PROPS_MAX) {
            rmq_broker__reply(c, &req->h, RMQ_RESP_MESSAGE_ILLEGAL,
                              "the message's properties would exceed 32767 bytes once it is "
                              "scheduled");
            ctx_put(x);
            return;
        }
        x->m.rec.props = (const char *)dst;
        x->m.rec.props_len = (uint16_t)n;
    }
    x->m.done = single_done;
    if (deliver > 0) {
        x->m.rec.topic = RMQ_TIMER_TOPIC;
        x->m.rec.topic_len = sizeof(RMQ_TIMER_TOPIC) - 1;
        x->m.rec.queue_id = 0;
        rmq_store_append(b->timer_store, &x->m);
        return;
    }
    if (level > 0) {
        x->m.rec.topic = RMQ_SCHEDULE_TOPIC;
        x->m.rec.topic_len = sizeof(RMQ_SCHEDULE_TOPIC) - 1;
        x->m.rec.queue_id = level - 1;
    }
    rmq_store_append(b->store, &x->m);
}

void
rmq_broker__send_install(struct rmq_broker *b)
{
    rmq_server_handle(&b->srv, RMQ_REQ_SEND_MESSAGE, h_send, b);
    rmq_server_handle(&b->srv, RMQ_REQ_SEND_MESSAGE_V2, h_send, b);
    rmq_server_handle(&b->srv, RMQ_REQ_SEND_BATCH_MESSAGE, h_send, b);
}
