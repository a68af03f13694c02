/*
 * Producer (spec/CLIENT.md §5): sync sends with retries on another broker and latency
 * fault avoidance, async and oneway sends, a chosen or key-selected queue, batches.
 * Property strings, compressed bodies and batch bodies are built in buffers the
 * producer keeps and reuses, so a send allocates nothing once they have grown.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"
#include "core/be.h"
#include "core/clock.h"
#include "core/record.h"
#include "core/util.h"
#include "net/codes.h"

struct async_send {
    struct rmq_producer *p;
    rmq_send_fn cb;
    void *arg;
    struct rmq_queue q;
    char uniq[33];
    uint64_t start_ms;
    struct async_send *next_free;
};

struct rmq_producer {
    struct rmq_cli c;
    char *props;                    /* owned: property string scratch */
    size_t props_cap;
    uint8_t *zbuf;                  /* owned: compressed body scratch */
    size_t zbuf_cap;
    uint8_t *batch;                 /* owned: batch body scratch */
    size_t batch_cap;
    struct async_send *as_mem;      /* owned: RMQ_CLI_ASYNC_MAX contexts */
    struct async_send *as_free;
};

const char *
rmq_send_status_name(int status)
{
    switch (status) {
    case RMQ_SEND_OK:
        return "SEND_OK";
    case RMQ_SEND_FLUSH_DISK_TIMEOUT:
        return "FLUSH_DISK_TIMEOUT";
    case RMQ_SEND_FLUSH_SLAVE_TIMEOUT:
        return "FLUSH_SLAVE_TIMEOUT";
    case RMQ_SEND_SLAVE_NOT_AVAILABLE:
        return "SLAVE_NOT_AVAILABLE";
    default:
        return "UNKNOWN";
    }
}

static void
heartbeat_body(struct rmq_cli *c, struct rmq_jw *w)
{
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "clientID");
    rmq_jw_str(w, c->client_id);
    rmq_jw_key(w, "producerDataSet");
    rmq_jw_arr_begin(w);
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "groupName");
    rmq_jw_str(w, c->group);
    rmq_jw_obj_end(w);
    rmq_jw_arr_end(w);
    rmq_jw_key(w, "consumerDataSet");
    rmq_jw_arr_begin(w);
    rmq_jw_arr_end(w);
    rmq_jw_obj_end(w);
}

int
rmq_cli__end_tx_unknown(const struct rmq_cli *c, const struct rmq_frame *check,
                        struct rmq_header *out)
{
    struct rmq_str tso, clo, id, txid;
    struct rmq_record rec;
    const char *v;
    size_t vl;

    if (!rmq_header_get(&check->h, "tranStateTableOffset", &tso) ||
        !rmq_header_get(&check->h, "commitLogOffset", &clo)) {
        return -EINVAL;
    }
    /* the message id is the record's UNIQ_KEY (the header's msgId as a fallback) */
    if (check->body_len > 0 &&
        rmq_record_decode(check->body, check->body_len, false, &rec, NULL) > 0 &&
        rmq_props_get(rec.props, rec.props_len, "UNIQ_KEY", &v, &vl)) {
        id.ptr = v;
        id.len = (uint32_t)vl;
    } else if (!rmq_header_get(&check->h, "msgId", &id)) {
        return -EINVAL;
    }
    rmq_header_init(out, RMQ_REQ_END_TRANSACTION, c->ser);
    out->flag |= RMQ_FLAG_ONEWAY;
    rmq_header_add(out, "producerGroup", c->group);
    rmq_header_add_n(out, "tranStateTableOffset", 20, tso.ptr, tso.len);
    rmq_header_add_n(out, "commitLogOffset", 15, clo.ptr, clo.len);
    rmq_header_add(out, "commitOrRollback", "0");
    rmq_header_add(out, "fromTransactionCheck", "true");
    rmq_header_add_n(out, "msgId", 5, id.ptr, id.len);
    if (rmq_header_get(&check->h, "transactionId", &txid)) {
        rmq_header_add_n(out, "transactionId", 13, txid.ptr, txid.len);
    }
    return 0;
}

/* Brokers ask producers about their half messages: with no local transactions, the
 * answer is "unknown", which lets the broker ask again later (REMOTING.md §12.12-13).
 * Anything else that wants an answer is told it is not supported rather than left to
 * time out. */
static void
producer_request(struct rmq_conn *conn, struct rmq_frame *req, const struct rmq_bufref *ref,
                 void *ctx)
{
    struct rmq_producer *p = ctx;
    struct rmq_header h;

    (void)ref;
    if (req->h.code == RMQ_REQ_CHECK_TRANSACTION_STATE) {
        if (rmq_cli__end_tx_unknown(&p->c, req, &h) == 0) {
            rmq_conn_send(conn, &h, NULL, 0);
        }
        return;
    }
    if (!rmq_header_is_oneway(&req->h)) {
        rmq_conn_reply_not_supported(conn, &req->h);
    }
}

int
rmq_producer_create(struct rmq_producer **out, const struct rmq_options *opts)
{
    struct rmq_producer *p = calloc(1, sizeof(*p));
    int ret;

    *out = NULL;
    if (p == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory creating a producer");
    }
    ret = rmq_cli__init(&p->c, opts, "DEFAULT_PRODUCER");
    if (ret < 0) {
        free(p);
        return ret;
    }
    p->as_mem = calloc(RMQ_CLI_ASYNC_MAX, sizeof(*p->as_mem));
    if (p->as_mem == NULL) {
        rmq_cli__fini(&p->c);
        free(p);
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory creating a producer");
    }
    for (uint32_t i = 0; i < RMQ_CLI_ASYNC_MAX; i++) {
        p->as_mem[i].next_free = p->as_free;
        p->as_free = &p->as_mem[i];
    }
    p->c.heartbeat_body = heartbeat_body;
    p->c.on_request = producer_request;
    p->c.owner_ctx = p;
    *out = p;
    return 0;
}

void
rmq_producer_destroy(struct rmq_producer *p)
{
    uint64_t end;

    if (p == NULL) {
        return;
    }
    end = rmq_cli__deadline(&p->c);
    while (p->c.async_in_flight > 0 && rmq_clock_mono_ns() < end) {
        rmq_cli__run_once(&p->c, 10000000);
    }
    rmq_cli__unregister(&p->c, p->c.group, NULL);
    rmq_cli__fini(&p->c);
    free(p->props);
    free(p->zbuf);
    free(p->batch);
    free(p->as_mem);
    free(p);
}

int
rmq_producer_poll(struct rmq_producer *p, uint32_t timeout_ms)
{
    uint64_t end = rmq_clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;

    if (rmq_cli__check_thread(&p->c) < 0) {
        return rmq_cli__last_code();
    }
    do {
        uint64_t now = rmq_clock_mono_ns();

        rmq_cli__run_once(&p->c, now < end ? RMQ_MIN(end - now, 100000000ull) : 0);
    } while (p->c.async_in_flight > 0 && rmq_clock_mono_ns() < end);
    return (int)p->c.async_in_flight;
}

/* ---- one request ------------------------------------------------------------------------------- */

/* What every kind of send needs ready: properties, body, sysflag. */
struct prepared {
    const struct rmq_message *m;
    char uniq[33];
    const void *body;
    size_t body_len;
    int32_t sysflag;
    int props_len;
};

static int
prepare(struct rmq_producer *p, const struct rmq_message *m, struct prepared *out)
{
    size_t zlen = 0;
    int ret = rmq_cli__check_message(&p->c, m);

    if (ret < 0) {
        return ret;
    }
    out->m = m;
    rmq_cli__uniq_key(&p->c, out->uniq);
    out->props_len = rmq_cli__props(m, out->uniq, &p->props, &p->props_cap);
    if (out->props_len < 0) {
        return out->props_len;
    }
    out->body = m->body;
    out->body_len = m->body_len;
    out->sysflag = 0;
    ret = rmq_cli__compress(&p->c, m->body, m->body_len, &p->zbuf, &p->zbuf_cap, &zlen);
    if (ret < 0) {
        return ret;
    }
    if (ret == 1) {
        out->body = p->zbuf;
        out->body_len = zlen;
        out->sysflag = RMQ_SYSFLAG_COMPRESSED;
    }
    return 0;
}

static void
send_header(struct rmq_producer *p, struct rmq_header *h, int code, const struct rmq_queue *q,
            int32_t sysflag, int32_t flag, const char *props, size_t props_len, bool via_default)
{
    rmq_header_init(h, code, p->c.ser);
    rmq_header_add(h, "a", p->c.group);
    rmq_header_add(h, "b", q->topic);
    rmq_header_add(h, "c", RMQ_CLI_DEFAULT_TOPIC);
    rmq_header_add_i64(h, "d", via_default ? 4 : 8);
    rmq_header_add_i64(h, "e", q->queue_id);
    rmq_header_add_i64(h, "f", sysflag);
    rmq_header_add_i64(h, "g", (int64_t)rmq_clock_wall_ms());
    rmq_header_add_i64(h, "h", flag);
    rmq_header_add_n(h, "i", 1, props, (uint32_t)props_len);
    rmq_header_add_i64(h, "j", 0);
    rmq_header_add(h, "k", "false");
}

static bool
retryable(int code)
{
    return code == RMQ_RESP_TOPIC_NOT_EXIST || code == RMQ_RESP_SERVICE_NOT_AVAILABLE ||
           code == RMQ_RESP_SYSTEM_ERROR || code == RMQ_RESP_NO_PERMISSION ||
           code == RMQ_RESP_NO_BUYER_ID || code == RMQ_RESP_NOT_IN_CURRENT_UNIT ||
           code == RMQ_RESP_SYSTEM_BUSY;
}

/* A send answer into res: 0, or RMQ_ERR_BROKER. */
static int
send_result(const struct rmq_cli_resp *r, const struct rmq_queue *q, const char *uniq,
            struct rmq_send_result *res)
{
    const char *v;

    switch (r->code) {
    case RMQ_RESP_SUCCESS:
        res->status = RMQ_SEND_OK;
        break;
    case RMQ_RESP_FLUSH_DISK_TIMEOUT:
        res->status = RMQ_SEND_FLUSH_DISK_TIMEOUT;
        break;
    case RMQ_RESP_FLUSH_SLAVE_TIMEOUT:
        res->status = RMQ_SEND_FLUSH_SLAVE_TIMEOUT;
        break;
    case RMQ_RESP_SLAVE_NOT_AVAILABLE:
        res->status = RMQ_SEND_SLAVE_NOT_AVAILABLE;
        break;
    default:
        return rmq_cli__broker_fail(r, "send");
    }
    snprintf(res->msg_id, sizeof(res->msg_id), "%s", uniq);
    v = rmq_cli__ext(r, "msgId");
    snprintf(res->offset_msg_id, sizeof(res->offset_msg_id), "%.56s", v != NULL ? v : "");
    res->queue = *q;
    v = rmq_cli__ext(r, "queueId");
    res->queue.queue_id = v != NULL ? (int32_t)atoi(v) : q->queue_id;
    v = rmq_cli__ext(r, "queueOffset");
    res->queue_offset = v != NULL ? strtoll(v, NULL, 10) : -1;
    return 0;
}

/* The request bytes of one send: header fields and body. */
struct request {
    int code;                       /* SEND_MESSAGE_V2 or SEND_BATCH_MESSAGE */
    const char *uniq;               /* the id the result reports */
    int32_t sysflag;
    int32_t flag;
    const char *props;
    size_t props_len;
    const void *body;
    size_t body_len;
};

/* Send rq to q's master and wait. 0 with res, or the error; *retry says whether another
 * broker may take it. */
static int
attempt(struct rmq_producer *p, const struct request *rq, const struct rmq_queue *q,
        bool via_default, uint64_t deadline_ns, struct rmq_send_result *res, bool *retry)
{
    struct rmq_cli *c = &p->c;
    const char *addr = rmq_cli__master(c, q->broker_name);
    struct rmq_cli_broker *b = rmq_cli__broker(c, q->broker_name);
    uint64_t t0 = rmq_clock_mono_ns();
    struct rmq_header h;
    int ret;

    *retry = true;
    if (addr == NULL) {
        return rmq_cli__fail(RMQ_ERR_NO_ROUTE, "broker %s of topic %s has no master address",
                             q->broker_name, q->topic);
    }
    send_header(p, &h, rq->code, q, rq->sysflag, rq->flag, rq->props, rq->props_len,
                via_default);
    ret = rmq_cli__call(c, addr, &h, rq->body, (uint32_t)rq->body_len, deadline_ns);
    if (ret == 0) {
        ret = send_result(&c->resp, q, rq->uniq, res);
        *retry = ret < 0 && retryable(c->resp.code);
    }
    if (b != NULL) {
        /* a refusal is an answer: only silence and lost connections count as faults */
        rmq_cli__fault_update(b, (rmq_clock_mono_ns() - t0) / 1000000u,
                              ret < 0 && ret != RMQ_ERR_BROKER, rmq_clock_wall_ms());
    }
    return ret;
}

/* Route with at least one writable queue, or NULL with the error set. */
static struct rmq_cli_route *
writable_route(struct rmq_producer *p, const char *topic)
{
    struct rmq_cli_route *r = rmq_cli__route(&p->c, topic, true);

    if (r != NULL && r->pub_count == 0) {
        rmq_cli__fail(RMQ_ERR_NO_ROUTE, "topic %s has no writable queue on a broker with a "
                      "master", topic);
        return NULL;
    }
    return r;
}

/* Sync send of rq to the topic's queues with retries on other brokers. */
static int
send_retrying(struct rmq_producer *p, struct rmq_cli_route *r, const struct request *rq,
              struct rmq_send_result *res)
{
    uint64_t deadline = rmq_cli__deadline(&p->c);
    char avoid[128] = "";
    int ret = RMQ_ERR_TIMEOUT;

    for (uint32_t i = 0; i <= p->c.opts.retries; i++) {
        uint32_t idx;
        bool retry;

        if (i > 0 && rmq_clock_mono_ns() >= deadline) {
            break;
        }
        idx = rmq_cli__select_queue(&p->c, r, avoid[0] ? avoid : NULL, rmq_clock_wall_ms());
        ret = attempt(p, rq, &r->pub[idx], r->via_default, deadline, res, &retry);
        res->attempts = i + 1;
        if (ret == 0 || !retry) {
            return ret;
        }
        snprintf(avoid, sizeof(avoid), "%s", r->pub[idx].broker_name);
    }
    return ret;
}

int
rmq_producer_send(struct rmq_producer *p, const struct rmq_message *m,
                  struct rmq_send_result *res)
{
    struct prepared pr;
    struct rmq_cli_route *r;
    struct request rq;
    int ret = rmq_cli__check_thread(&p->c);

    if (ret < 0 || (ret = prepare(p, m, &pr)) < 0) {
        return ret;
    }
    r = writable_route(p, m->topic);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    rq = (struct request){RMQ_REQ_SEND_MESSAGE_V2, pr.uniq, pr.sysflag, m->flag, p->props,
                          (size_t)pr.props_len, pr.body, pr.body_len};
    return send_retrying(p, r, &rq, res);
}

static int
send_one_queue(struct rmq_producer *p, const struct rmq_message *m, struct rmq_cli_route *r,
               uint32_t idx, struct rmq_send_result *res)
{
    struct prepared pr;
    struct request rq;
    bool retry;
    int ret = prepare(p, m, &pr);

    if (ret < 0) {
        return ret;
    }
    rq = (struct request){RMQ_REQ_SEND_MESSAGE_V2, pr.uniq, pr.sysflag, m->flag, p->props,
                          (size_t)pr.props_len, pr.body, pr.body_len};
    res->attempts = 1;
    return attempt(p, &rq, &r->pub[idx], r->via_default, rmq_cli__deadline(&p->c), res, &retry);
}

int
rmq_producer_send_to_queue(struct rmq_producer *p, const struct rmq_message *m,
                           const char *broker_name, int32_t queue_id,
                           struct rmq_send_result *res)
{
    struct rmq_cli_route *r;
    int ret = rmq_cli__check_thread(&p->c);

    if (ret < 0 || (ret = rmq_cli__check_message(&p->c, m)) < 0) {
        return ret;
    }
    r = writable_route(p, m->topic);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    for (uint32_t i = 0; i < r->pub_count; i++) {
        if (r->pub[i].queue_id == queue_id &&
            (broker_name == NULL || strcmp(r->pub[i].broker_name, broker_name) == 0)) {
            return send_one_queue(p, m, r, i, res);
        }
    }
    return rmq_cli__fail(RMQ_ERR_INVALID, "topic %s has no writable queue %d%s%s", m->topic,
                         (int)queue_id, broker_name != NULL ? " on broker " : "",
                         broker_name != NULL ? broker_name : "");
}

int
rmq_producer_send_ordered(struct rmq_producer *p, const struct rmq_message *m,
                          const char *sharding_key, struct rmq_send_result *res)
{
    struct rmq_cli_route *r;
    int ret = rmq_cli__check_thread(&p->c);

    if (ret < 0 || (ret = rmq_cli__check_message(&p->c, m)) < 0) {
        return ret;
    }
    if (sharding_key == NULL) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "an ordered send needs a sharding key");
    }
    r = writable_route(p, m->topic);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    return send_one_queue(p, m, r, rmq_cli__select_by_key(sharding_key, r->pub_count), res);
}

/* ---- async and oneway ------------------------------------------------------------------------ */

static void
async_answered(struct rmq_cli *c, void *arg, int err, struct rmq_cli_resp *resp)
{
    struct async_send *a = arg;
    struct rmq_producer *p = a->p;
    struct rmq_send_result res;
    struct rmq_cli_broker *b = rmq_cli__broker(c, a->q.broker_name);
    rmq_send_fn cb = a->cb;
    void *cb_arg = a->arg;

    memset(&res, 0, sizeof(res));
    res.attempts = 1;
    if (err == 0) {
        err = send_result(resp, &a->q, a->uniq, &res);
    }
    if (b != NULL) {
        rmq_cli__fault_update(b, rmq_clock_wall_ms() - a->start_ms,
                              err < 0 && err != RMQ_ERR_BROKER, rmq_clock_wall_ms());
    }
    a->next_free = p->as_free;
    p->as_free = a;
    cb(cb_arg, err, err == 0 ? &res : NULL);
}

int
rmq_producer_send_async(struct rmq_producer *p, const struct rmq_message *m, rmq_send_fn cb,
                        void *arg)
{
    struct rmq_cli *c = &p->c;
    struct async_send *a = p->as_free;
    struct rmq_cli_route *r;
    struct prepared pr;
    char avoid[128] = "";
    int ret = c->stopping ? rmq_cli__fail(RMQ_ERR_STATE, "the producer is stopping") : 0;

    if (ret < 0 || (ret = prepare(p, m, &pr)) < 0) {
        return ret;
    }
    if (a == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "%d async sends already in flight",
                             RMQ_CLI_ASYNC_MAX);
    }
    r = writable_route(p, m->topic);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    /* retried on another broker only while nothing was written: once a request is on
     * the wire, a lost answer does not say whether it was stored */
    for (uint32_t i = 0; i <= 2; i++) {
        uint32_t idx = rmq_cli__select_queue(c, r, avoid[0] ? avoid : NULL, rmq_clock_wall_ms());
        const char *addr = rmq_cli__master(c, r->pub[idx].broker_name);
        struct rmq_header h;

        if (addr == NULL) {
            snprintf(avoid, sizeof(avoid), "%s", r->pub[idx].broker_name);
            ret = rmq_cli__fail(RMQ_ERR_NO_ROUTE, "broker %s has no master address", avoid);
            continue;
        }
        a->p = p;
        a->cb = cb;
        a->arg = arg;
        a->q = r->pub[idx];
        a->start_ms = rmq_clock_wall_ms();
        memcpy(a->uniq, pr.uniq, sizeof(a->uniq));
        send_header(p, &h, RMQ_REQ_SEND_MESSAGE_V2, &a->q, pr.sysflag, m->flag, p->props,
                    (size_t)pr.props_len, r->via_default);
        ret = rmq_cli__call_async(c, addr, &h, pr.body, (uint32_t)pr.body_len, c->opts.timeout_ms,
                                  async_answered, a);
        if (ret == 0) {
            p->as_free = a->next_free;
            return 0;
        }
        if (ret != RMQ_ERR_NETWORK) {
            return ret;
        }
        snprintf(avoid, sizeof(avoid), "%s", r->pub[idx].broker_name);
    }
    return ret;
}

int
rmq_producer_send_oneway(struct rmq_producer *p, const struct rmq_message *m)
{
    struct rmq_cli *c = &p->c;
    struct rmq_cli_route *r;
    struct prepared pr;
    struct rmq_header h;
    const char *addr;
    uint32_t idx;
    int ret = rmq_cli__check_thread(c);

    if (ret < 0 || (ret = prepare(p, m, &pr)) < 0) {
        return ret;
    }
    r = writable_route(p, m->topic);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    idx = rmq_cli__select_queue(c, r, NULL, rmq_clock_wall_ms());
    addr = rmq_cli__master(c, r->pub[idx].broker_name);
    if (addr == NULL) {
        return rmq_cli__fail(RMQ_ERR_NO_ROUTE, "broker %s has no master address",
                             r->pub[idx].broker_name);
    }
    send_header(p, &h, RMQ_REQ_SEND_MESSAGE_V2, &r->pub[idx], pr.sysflag, m->flag, p->props,
                (size_t)pr.props_len, r->via_default);
    return rmq_cli__oneway(c, addr, &h, pr.body, (uint32_t)pr.body_len);
}

/* ---- batches ----------------------------------------------------------------------------------- */

int
rmq_producer_send_batch(struct rmq_producer *p, const struct rmq_message *ms, size_t n,
                        struct rmq_send_result *res, char (*ids)[33])
{
    static const char batch_props[] = "WAIT\001true\002";
    struct rmq_cli_route *r;
    struct request rq;
    char first[33] = "";
    size_t len = 0;
    int ret = rmq_cli__check_thread(&p->c);

    if (ret < 0) {
        return ret;
    }
    if (n == 0 || ms == NULL) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "an empty batch");
    }
    for (size_t i = 0; i < n; i++) {
        char uniq[33];
        int plen;
        size_t need;

        ret = rmq_cli__check_message(&p->c, &ms[i]);
        if (ret < 0) {
            return ret;
        }
        if (strcmp(ms[i].topic, ms[0].topic) != 0 || ms[i].delay_level > 0 ||
            ms[i].deliver_at_ms > 0 || strncmp(ms[i].topic, "%RETRY%", 7) == 0) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "a batch takes messages of one topic, not "
                                 "a retry topic, and none delayed (message %zu)", i);
        }
        rmq_cli__uniq_key(&p->c, uniq);
        if (i == 0) {
            memcpy(first, uniq, sizeof(first));
        }
        if (ids != NULL) {
            memcpy(ids[i], uniq, 33);
        }
        plen = rmq_cli__props(&ms[i], uniq, &p->props, &p->props_cap);
        if (plen < 0) {
            return plen;
        }
        need = len + 22 + ms[i].body_len + (size_t)plen;
        if (need > p->c.opts.max_message_size + 65536u) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "batch of %zu bytes is over the message "
                                 "size limit", need);
        }
        if (need > p->batch_cap) {
            uint8_t *b = realloc(p->batch, need * 2);

            if (b == NULL) {
                return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory building a batch");
            }
            p->batch = b;
            p->batch_cap = need * 2;
        }
        /* STORE.md §10: size, magic 0, crc 0, flag, body length, body, props length, props */
        rmq_put_be32(p->batch + len, (uint32_t)(22 + ms[i].body_len + (size_t)plen));
        rmq_put_be32(p->batch + len + 4, 0);
        rmq_put_be32(p->batch + len + 8, 0);
        rmq_put_be32(p->batch + len + 12, (uint32_t)ms[i].flag);
        rmq_put_be32(p->batch + len + 16, (uint32_t)ms[i].body_len);
        memcpy(p->batch + len + 20, ms[i].body, ms[i].body_len);
        rmq_put_be16(p->batch + len + 20 + ms[i].body_len, (uint16_t)plen);
        memcpy(p->batch + len + 22 + ms[i].body_len, p->props, (size_t)plen);
        len = need;
    }
    r = writable_route(p, ms[0].topic);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    rq = (struct request){RMQ_REQ_SEND_BATCH_MESSAGE, first, 0, 0,
                          batch_props, sizeof(batch_props) - 1, p->batch, len};
    return send_retrying(p, r, &rq, res);
}
