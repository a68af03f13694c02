/*
 * Push consumer (spec/CLIENT.md §6-§9). One thread owns the instance: its main routine
 * rebalances, commits offsets, re-locks (orderly), hands pulled messages to the
 * callback and sends failed ones back, all with synchronous calls between loop
 * iterations; the loop's own callbacks only park pull answers on their queue. A queue
 * has at most one pull in flight, and the next one leaves only once the last answer
 * was consumed, so the committed offset is always "everything below was consumed".
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client/client_int.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "core/record.h"
#include "core/util.h"
#include "net/codes.h"

#define SUBS_MAX 32
#define TAGS_MAX 64
#define HOLD_MS 15000                   /* brokerSuspendMaxTimeMillis */
#define PULL_TIMEOUT_MS 30000           /* consumerTimeoutMillisWhenSuspend */
#define PULL_RETRY_MS 3000              /* pullTimeDelayMillsWhenException */
#define SENDBACK_RETRY_MS 5000
#define ORDERLY_SUSPEND_MS 1000
#define RELOCK_MS 20000
#define LOCK_STALE_MS 30000
#define OFFSETS_FILE_MAX (16u << 20)

struct sub {
    char topic[128];
    char expr[256];
    int64_t version;
    char tag_buf[256];
    const char *tags[TAGS_MAX];
    uint32_t tag_count;
};

/* An assigned queue and its pull state. */
struct pq {
    struct pq *next;
    struct rmq_push_consumer *pc;
    struct sub *sub;
    struct rmq_queue q;
    int64_t next_offset;            /* where the next pull starts */
    int64_t consume_offset;         /* everything below was consumed */
    int64_t committed;              /* last value sent to the broker */
    bool pulling;
    bool dropped;                   /* unassigned while a pull was out: freed by its answer */
    bool keep;                      /* rebalance scratch */
    bool locked;                    /* orderly */
    uint64_t locked_ms;
    uint64_t retry_at_ms;
    bool has_ready;
    struct rmq_pull_result ready;   /* an answer waiting for the callback */
    int32_t reconsume;              /* orderly: failures of the batch at consume_offset */
};

struct rmq_push_consumer {
    struct rmq_cli c;               /* set up on the consumer's thread */
    struct rmq_options opts;
    char group[256];
    char namesrv[1024];
    char instance[64];
    struct rmq_push_options po;
    char offsets_path[512];
    struct sub subs[SUBS_MAX + 1];  /* + the retry topic */
    uint32_t sub_count;
    uint32_t user_sub_count;        /* those the application asked for */
    rmq_consume_fn fn;
    void *arg;
    pthread_t thread;
    bool thread_up;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready;                     /* the thread finished starting */
    int start_err;
    char start_msg[512];
    _Atomic bool stop;
    _Atomic uint32_t assigned;
    struct pq *pqs;
    uint64_t rebalance_at_ms;
    uint64_t persist_at_ms;
    uint64_t relock_at_ms;
    cJSON *local_offsets;           /* broadcasting: the file as loaded */
};

static uint64_t
now_ms(void)
{
    return rmq_clock_wall_ms();
}

/* ---- set-up ------------------------------------------------------------------------------------ */

int
rmq_push_consumer_create(struct rmq_push_consumer **out, const struct rmq_options *opts,
                         const struct rmq_push_options *push)
{
    static const struct rmq_push_options none;
    struct rmq_push_consumer *pc = calloc(1, sizeof(*pc));

    *out = NULL;
    if (pc == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory creating a consumer");
    }
    pc->po = push != NULL ? *push : none;
    if (opts != NULL) {
        pc->opts = *opts;
    }
    snprintf(pc->group, sizeof(pc->group), "%s",
             pc->opts.group != NULL && pc->opts.group[0] ? pc->opts.group : "DEFAULT_CONSUMER");
    snprintf(pc->namesrv, sizeof(pc->namesrv), "%s", pc->opts.namesrv != NULL ? pc->opts.namesrv : "");
    snprintf(pc->instance, sizeof(pc->instance), "%s",
             pc->opts.instance_name != NULL ? pc->opts.instance_name : "DEFAULT");
    pc->opts.group = pc->group;
    pc->opts.namesrv = pc->namesrv[0] != '\0' ? pc->namesrv : NULL;
    pc->opts.instance_name = pc->instance;
    pc->po.batch_size = RMQ_MAX(pc->po.batch_size, 1u);
    pc->po.rebalance_ms = pc->po.rebalance_ms != 0 ? pc->po.rebalance_ms : 20000;
    pc->po.persist_ms = pc->po.persist_ms != 0 ? pc->po.persist_ms : 5000;
    if (pc->po.max_reconsume == 0 && !pc->po.orderly) {
        pc->po.max_reconsume = 16;
    }
    if (pc->po.from_where == RMQ_FROM_TIMESTAMP && pc->po.from_timestamp_ms <= 0) {
        pc->po.from_timestamp_ms = (int64_t)now_ms() - 30 * 60000;
    }
    if (pc->po.broadcasting) {
        const char *home = getenv("HOME");

        snprintf(pc->offsets_path, sizeof(pc->offsets_path), "%s/%s.json",
                 pc->po.offsets_dir != NULL ? pc->po.offsets_dir : "", pc->group);
        if (pc->po.offsets_dir == NULL) {
            snprintf(pc->offsets_path, sizeof(pc->offsets_path), "%s/.ringmq/offsets/%s/%s.json",
                     home != NULL ? home : ".", pc->instance, pc->group);
        }
    }
    pthread_mutex_init(&pc->mu, NULL);
    pthread_cond_init(&pc->cv, NULL);
    *out = pc;
    return 0;
}

int
rmq_push_subscribe(struct rmq_push_consumer *pc, const char *topic, const char *tag_expr)
{
    struct sub *s;
    uint32_t n = 0;
    const char *tags[TAGS_MAX];
    char buf[256];
    int ret;

    if (pc->thread_up) {
        return rmq_cli__fail(RMQ_ERR_STATE, "subscribe before starting the consumer");
    }
    if (topic == NULL || topic[0] == '\0' || strlen(topic) >= sizeof(s->topic) ||
        (tag_expr != NULL && strlen(tag_expr) >= sizeof(s->expr))) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "topic or tag expression missing or too long");
    }
    ret = rmq_cli__parse_tags(tag_expr != NULL ? tag_expr : "*", buf, sizeof(buf), tags,
                              TAGS_MAX, &n);
    if (ret < 0) {
        return ret;
    }
    if (pc->sub_count == SUBS_MAX) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "more than %d subscriptions", SUBS_MAX);
    }
    s = &pc->subs[pc->sub_count++];
    snprintf(s->topic, sizeof(s->topic), "%s", topic);
    snprintf(s->expr, sizeof(s->expr), "%s", tag_expr != NULL && tag_expr[0] ? tag_expr : "*");
    s->version = (int64_t)now_ms();
    return rmq_cli__parse_tags(s->expr, s->tag_buf, sizeof(s->tag_buf), s->tags, TAGS_MAX,
                               &s->tag_count);
}

uint32_t
rmq_push_assigned_count(const struct rmq_push_consumer *pc)
{
    return atomic_load(&pc->assigned);
}

/* ---- heartbeats and broker-initiated requests ------------------------------------------------ */

static void
push_subs(struct rmq_jw *w, void *arg)
{
    const struct rmq_push_consumer *pc = arg;

    for (uint32_t i = 0; i < pc->sub_count; i++) {
        const struct sub *s = &pc->subs[i];

        rmq_jw_obj_begin(w);
        rmq_jw_key(w, "classFilterMode");
        rmq_jw_bool(w, false);
        rmq_jw_key(w, "codeSet");
        rmq_jw_arr_begin(w);
        for (uint32_t k = 0; k < s->tag_count; k++) {
            rmq_jw_i64(w, rmq_tag_hash(s->tags[k], strlen(s->tags[k])));
        }
        rmq_jw_arr_end(w);
        rmq_jw_key(w, "expressionType");
        rmq_jw_str(w, "TAG");
        rmq_jw_key(w, "subString");
        rmq_jw_str(w, s->expr);
        rmq_jw_key(w, "subVersion");
        rmq_jw_i64(w, s->version);
        rmq_jw_key(w, "tagsSet");
        rmq_jw_arr_begin(w);
        for (uint32_t k = 0; k < s->tag_count; k++) {
            rmq_jw_str(w, s->tags[k]);
        }
        rmq_jw_arr_end(w);
        rmq_jw_key(w, "topic");
        rmq_jw_str(w, s->topic);
        rmq_jw_obj_end(w);
    }
}

static void
push_heartbeat(struct rmq_cli *c, struct rmq_jw *w)
{
    struct rmq_push_consumer *pc = c->owner_ctx;

    rmq_cli__heartbeat_consumer(c, w, "CONSUME_PASSIVELY",
                                pc->po.broadcasting ? "BROADCASTING" : "CLUSTERING",
                                pc->po.from_where == RMQ_FROM_FIRST_OFFSET ? "CONSUME_FROM_FIRST_OFFSET"
                                : pc->po.from_where == RMQ_FROM_TIMESTAMP ? "CONSUME_FROM_TIMESTAMP"
                                                                          : "CONSUME_FROM_LAST_OFFSET",
                                push_subs, pc);
}

static void
push_request(struct rmq_conn *conn, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_push_consumer *pc = ctx;

    (void)ref;
    switch (req->h.code) {
    case RMQ_REQ_NOTIFY_CONSUMER_IDS_CHANGED:
        pc->rebalance_at_ms = 0;        /* the main routine rebalances next */
        return;
    case RMQ_REQ_GET_CONSUMER_RUNNING_INFO: {
        struct rmq_jw w;
        const char *text;
        size_t len;

        rmq_jw_init(&w, RMQ_JSON_FASTJSON);
        rmq_jw_obj_begin(&w);
        rmq_jw_key(&w, "properties");
        rmq_jw_obj_begin(&w);
        rmq_jw_key(&w, "consumeType");
        rmq_jw_str(&w, "CONSUME_PASSIVELY");
        rmq_jw_key(&w, "messageModel");
        rmq_jw_str(&w, pc->po.broadcasting ? "BROADCASTING" : "CLUSTERING");
        rmq_jw_key(&w, "consumeOrderly");
        rmq_jw_str(&w, pc->po.orderly ? "true" : "false");
        rmq_jw_key(&w, "PROP_CLIENT_VERSION");
        rmq_jw_str(&w, "ringmq");
        rmq_jw_obj_end(&w);
        rmq_jw_key(&w, "assignedQueues");
        rmq_jw_i64(&w, atomic_load(&pc->assigned));
        rmq_jw_obj_end(&w);
        if (rmq_jw_finish(&w, &text, &len) == 0) {
            rmq_conn_reply(conn, &req->h, RMQ_RESP_SUCCESS, NULL, text, (uint32_t)len);
        }
        rmq_jw_fini(&w);
        return;
    }
    case RMQ_REQ_CHECK_TRANSACTION_STATE:
        return;                         /* oneway, and for producers */
    default:
        rmq_conn_reply_not_supported(conn, &req->h);
    }
}

/* ---- pulls ------------------------------------------------------------------------------------ */

static void
pq_free(struct pq *q)
{
    rmq_pull_result_free(&q->ready);
    free(q);
}

static void
pulled(struct rmq_cli *c, void *arg, int err, struct rmq_cli_resp *resp)
{
    struct pq *q = arg;
    const char *v;
    int64_t next;
    uint8_t *body;

    q->pulling = false;
    if (q->dropped) {
        pq_free(q);
        return;
    }
    if (err < 0) {
        q->retry_at_ms = now_ms() + PULL_RETRY_MS;
        return;
    }
    v = rmq_cli__ext(resp, "suggestWhichBrokerId");
    rmq_cli__suggest(c, &q->q, v != NULL ? strtoll(v, NULL, 10) : 0);
    v = rmq_cli__ext(resp, "nextBeginOffset");
    next = v != NULL ? strtoll(v, NULL, 10) : q->next_offset;
    switch (resp->code) {
    case RMQ_RESP_SUCCESS:
        body = rmq_cli__resp_take(resp);        /* the messages point into it */
        if (rmq_cli__decode_pulled(body, resp->body_len, q->q.broker_name, q->sub->tags,
                                   q->sub->tag_count, &q->ready) < 0) {
            RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "ringmq: pull of %s/%s/%d not decoded: %s",
                       q->q.topic, q->q.broker_name, (int)q->q.queue_id, rmq_last_error());
            q->retry_at_ms = now_ms() + PULL_RETRY_MS;
            return;
        }
        q->has_ready = true;
        q->next_offset = next;
        return;
    case RMQ_RESP_PULL_NOT_FOUND:
    case RMQ_RESP_PULL_RETRY_IMMEDIATELY:
    case RMQ_RESP_PULL_OFFSET_MOVED:
        /* nothing outstanding on this queue: what was skipped counts as consumed */
        q->next_offset = next;
        q->consume_offset = next;
        return;
    default:
        RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "ringmq: pull of %s/%d refused: %d %s", q->q.topic,
                   (int)q->q.queue_id, resp->code, resp->remark);
        q->retry_at_ms = now_ms() + PULL_RETRY_MS;
    }
}

static void
pull_issue(struct rmq_push_consumer *pc, struct pq *q)
{
    struct rmq_cli *c = &pc->c;
    bool commit = !pc->po.broadcasting && q->consume_offset > 0;
    struct rmq_header h;
    const char *addr = rmq_cli__queue_request(c, &q->q, RMQ_REQ_PULL_MESSAGE, pc->group, &h);

    if (addr == NULL) {
        q->retry_at_ms = now_ms() + PULL_RETRY_MS;
        return;
    }
    rmq_header_add_i64(&h, "queueOffset", q->next_offset);
    rmq_header_add_i64(&h, "maxMsgNums", 32);
    rmq_header_add_i64(&h, "sysFlag", (commit ? 1 : 0) | 2 | 4);   /* commit, suspend, sub */
    rmq_header_add_i64(&h, "commitOffset", commit ? q->consume_offset : 0);
    rmq_header_add_i64(&h, "suspendTimeoutMillis", HOLD_MS);
    rmq_header_add(&h, "subscription", q->sub->expr);
    rmq_header_add_i64(&h, "subVersion", q->sub->version);
    if (rmq_cli__call_async(c, addr, &h, NULL, 0, PULL_TIMEOUT_MS, pulled, q) < 0) {
        q->retry_at_ms = now_ms() + PULL_RETRY_MS;
        return;
    }
    if (commit) {
        q->committed = q->consume_offset;
    }
    q->pulling = true;
}

/* ---- consuming -------------------------------------------------------------------------------- */

static int
send_back(struct rmq_push_consumer *pc, const struct rmq_msg *m, int delay_level)
{
    struct rmq_cli *c = &pc->c;
    const char *addr = rmq_cli__master(c, m->broker_name);
    struct rmq_header h;
    int ret;

    if (addr == NULL) {
        return rmq_cli__fail(RMQ_ERR_NO_ROUTE, "no master of %s to send a message back to",
                             m->broker_name);
    }
    rmq_header_init(&h, RMQ_REQ_CONSUMER_SEND_MSG_BACK, c->ser);
    h.version = RMQ_MAX(h.version, 121);     /* the broker reads maxReconsumeTimes */
    rmq_header_add_i64(&h, "offset", m->commitlog_offset);
    rmq_header_add(&h, "group", pc->group);
    rmq_header_add_i64(&h, "delayLevel", delay_level);
    rmq_header_add(&h, "originMsgId", m->msg_id);
    rmq_header_add(&h, "originTopic", m->topic);
    rmq_header_add(&h, "unitMode", "false");
    rmq_header_add_i64(&h, "maxReconsumeTimes", pc->po.max_reconsume > 0 ? pc->po.max_reconsume
                                                                          : 16);
    ret = rmq_cli__call(c, addr, &h, NULL, 0, rmq_cli__deadline(c));
    if (ret == 0 && c->resp.code != RMQ_RESP_SUCCESS) {
        ret = rmq_cli__broker_fail(&c->resp, "send back");
    }
    return ret;
}

static bool
lock_fresh(const struct pq *q)
{
    return q->locked && now_ms() - q->locked_ms < LOCK_STALE_MS;
}

/* Hand q's waiting answer to the callback, batch by batch. */
static void
consume(struct rmq_push_consumer *pc, struct pq *q)
{
    struct rmq_pull_result *r = &q->ready;
    uint32_t i = 0;

    while (i < r->count && !atomic_load(&pc->stop)) {
        uint32_t n = RMQ_MIN(pc->po.batch_size, r->count - i);
        const struct rmq_msg *m = &r->msgs[i];
        int status;
        bool ok = true;

        if (pc->po.orderly && !lock_fresh(q)) {
            break;                      /* lost the lock: another consumer may own it now */
        }
        status = pc->fn(pc->arg, m, n);
        if (status != RMQ_CONSUME_SUCCESS && !pc->po.broadcasting) {
            if (pc->po.orderly) {
                q->reconsume++;
                if (pc->po.max_reconsume <= 0 || q->reconsume < pc->po.max_reconsume) {
                    q->retry_at_ms = now_ms() + ORDERLY_SUSPEND_MS;
                    break;              /* the same messages again, in place */
                }
                for (uint32_t k = 0; k < n && ok; k++) {
                    ok = send_back(pc, &m[k], -1) == 0;     /* straight to the DLQ */
                }
            } else {
                for (uint32_t k = 0; k < n && ok; k++) {
                    ok = send_back(pc, &m[k], 0) == 0;
                }
            }
            if (!ok) {
                RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "ringmq: a failed message of %s/%d was not "
                           "sent back (%s); consumed again in %d ms", q->q.topic,
                           (int)q->q.queue_id, rmq_last_error(), SENDBACK_RETRY_MS);
                q->retry_at_ms = now_ms() + SENDBACK_RETRY_MS;
                break;
            }
        }
        q->reconsume = 0;
        q->consume_offset = m[n - 1].queue_offset + 1;
        i += n;
    }
    if (i < r->count) {
        q->next_offset = r->msgs[i].queue_offset;   /* pull again from the first not done */
    } else {
        q->consume_offset = RMQ_MAX(q->consume_offset, q->next_offset);
    }
    rmq_pull_result_free(r);
    q->has_ready = false;
}

/* ---- offsets ---------------------------------------------------------------------------------- */

static void
local_key(const struct rmq_queue *q, char *out, size_t cap)
{
    snprintf(out, cap, "%s@%s@%d", q->topic, q->broker_name, (int)q->queue_id);
}

static void
local_load(struct rmq_push_consumer *pc)
{
    char *text = NULL;
    size_t len = 0;

    if (rmq_file_read_all(pc->offsets_path, OFFSETS_FILE_MAX, &text, &len) == 0) {
        pc->local_offsets = rmq_json_parse(text, len);
        free(text);
    }
}

static void
local_persist(struct rmq_push_consumer *pc)
{
    char dir[sizeof(pc->offsets_path)];
    char *slash;
    struct rmq_jw w;
    const char *text;
    size_t len;

    snprintf(dir, sizeof(dir), "%s", pc->offsets_path);
    slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        rmq_mkdir_p(dir);
    }
    rmq_jw_init(&w, RMQ_JSON_STANDARD);
    rmq_jw_obj_begin(&w);
    rmq_jw_key(&w, "offsetTable");
    rmq_jw_obj_begin(&w);
    for (struct pq *q = pc->pqs; q != NULL; q = q->next) {
        char key[320];

        local_key(&q->q, key, sizeof(key));
        rmq_jw_key(&w, key);
        rmq_jw_i64(&w, q->consume_offset);
    }
    rmq_jw_obj_end(&w);
    rmq_jw_obj_end(&w);
    if (rmq_jw_finish(&w, &text, &len) == 0 && rmq_file_replace(pc->offsets_path, text, len) < 0) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 60000, "ringmq: broadcasting offsets not written to %s",
                   pc->offsets_path);
    }
    rmq_jw_fini(&w);
}

static void
commit_one(struct rmq_push_consumer *pc, struct pq *q, bool wait)
{
    struct rmq_cli *c = &pc->c;
    const char *addr;
    struct rmq_header h;

    if (pc->po.broadcasting || q->consume_offset == q->committed || q->consume_offset < 0 ||
        (addr = rmq_cli__queue_request(c, &q->q, RMQ_REQ_UPDATE_CONSUMER_OFFSET, pc->group,
                                       &h)) == NULL) {
        return;
    }
    rmq_header_add_i64(&h, "commitOffset", q->consume_offset);
    if (wait ? rmq_cli__call(c, addr, &h, NULL, 0, rmq_cli__deadline(c)) == 0 &&
                   c->resp.code == RMQ_RESP_SUCCESS
             : rmq_cli__oneway(c, addr, &h, NULL, 0) == 0) {
        q->committed = q->consume_offset;
    }
}

static void
persist(struct rmq_push_consumer *pc, bool wait)
{
    if (pc->po.broadcasting) {
        local_persist(pc);
        return;
    }
    for (struct pq *q = pc->pqs; q != NULL; q = q->next) {
        commit_one(pc, q, wait);
    }
}

/* Where a newly assigned queue starts; -2 when that cannot be known now. */
static int64_t
start_offset(struct rmq_push_consumer *pc, const struct rmq_queue *q)
{
    struct rmq_cli *c = &pc->c;
    bool retry = strncmp(q->topic, "%RETRY%", 7) == 0;
    int64_t off = -1;

    if (pc->po.broadcasting) {
        char key[320];
        const cJSON *table = pc->local_offsets != NULL
                                 ? cJSON_GetObjectItemCaseSensitive(pc->local_offsets, "offsetTable")
                                 : NULL;

        local_key(q, key, sizeof(key));
        off = table != NULL ? rmq_json_get_i64(table, key, -1) : -1;
    } else if (rmq_cli__queue_offset(c, q, RMQ_REQ_QUERY_CONSUMER_OFFSET, pc->group, 0, &off) < 0) {
        return -2;
    }
    if (off >= 0) {
        return off;
    }
    switch (pc->po.from_where) {
    case RMQ_FROM_FIRST_OFFSET:
        return 0;
    case RMQ_FROM_TIMESTAMP:
        if (retry) {
            return rmq_cli__queue_offset(c, q, RMQ_REQ_GET_MAX_OFFSET, NULL, 0, &off) < 0 ? -2 : off;
        }
        return rmq_cli__queue_offset(c, q, RMQ_REQ_SEARCH_OFFSET_BY_TIMESTAMP, NULL,
                                     pc->po.from_timestamp_ms, &off) < 0 ? -2 : off;
    default:
        if (retry) {
            return 0;
        }
        return rmq_cli__queue_offset(c, q, RMQ_REQ_GET_MAX_OFFSET, NULL, 0, &off) < 0 ? -2 : off;
    }
}

/* ---- locks (orderly) -------------------------------------------------------------------------- */

/* LOCK_BATCH_MQ (or UNLOCK) for the queues of broker in pqs (only: when not NULL). */
static void
lock_broker(struct rmq_push_consumer *pc, const char *broker, const struct pq *only, bool unlock)
{
    struct rmq_cli *c = &pc->c;
    const char *addr = rmq_cli__master(c, broker);
    struct rmq_jw w;
    struct rmq_header h;
    const char *text;
    size_t len;
    cJSON *root;
    const cJSON *e, *set;
    uint64_t now = now_ms();

    if (addr == NULL) {
        return;
    }
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    rmq_jw_key(&w, "consumerGroup");
    rmq_jw_str(&w, pc->group);
    rmq_jw_key(&w, "clientId");
    rmq_jw_str(&w, c->client_id);
    rmq_jw_key(&w, "mqSet");
    rmq_jw_arr_begin(&w);
    for (const struct pq *q = pc->pqs; q != NULL; q = q->next) {
        if ((only == NULL || q == only) && strcmp(q->q.broker_name, broker) == 0) {
            rmq_jw_obj_begin(&w);
            rmq_jw_key(&w, "brokerName");
            rmq_jw_str(&w, q->q.broker_name);
            rmq_jw_key(&w, "queueId");
            rmq_jw_i64(&w, q->q.queue_id);
            rmq_jw_key(&w, "topic");
            rmq_jw_str(&w, q->q.topic);
            rmq_jw_obj_end(&w);
        }
    }
    rmq_jw_arr_end(&w);
    rmq_jw_obj_end(&w);
    if (rmq_jw_finish(&w, &text, &len) < 0) {
        rmq_jw_fini(&w);
        return;
    }
    rmq_header_init(&h, unlock ? RMQ_REQ_UNLOCK_BATCH_MQ : RMQ_REQ_LOCK_BATCH_MQ, c->ser);
    if (rmq_cli__call(c, addr, &h, text, (uint32_t)len, rmq_cli__deadline(c)) < 0 || unlock ||
        c->resp.code != RMQ_RESP_SUCCESS) {
        rmq_jw_fini(&w);
        return;
    }
    rmq_jw_fini(&w);
    for (struct pq *q = pc->pqs; q != NULL; q = q->next) {
        if ((only == NULL || q == only) && strcmp(q->q.broker_name, broker) == 0) {
            q->locked = false;
        }
    }
    root = rmq_json_parse((const char *)c->resp.body, c->resp.body_len);
    set = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "lockOKMQSet") : NULL;
    cJSON_ArrayForEach(e, set) {
        const char *t = rmq_json_get_str(e, "topic");
        int64_t qid = rmq_json_get_i64(e, "queueId", -1);

        for (struct pq *q = pc->pqs; q != NULL && t != NULL; q = q->next) {
            if (strcmp(q->q.topic, t) == 0 && q->q.queue_id == qid &&
                strcmp(q->q.broker_name, broker) == 0) {
                q->locked = true;
                q->locked_ms = now;
            }
        }
    }
    cJSON_Delete(root);
}

static void
relock_all(struct rmq_push_consumer *pc, bool unlock)
{
    for (struct pq *q = pc->pqs; q != NULL; q = q->next) {
        bool first = true;

        for (struct pq *p = pc->pqs; p != q; p = p->next) {
            first &= strcmp(p->q.broker_name, q->q.broker_name) != 0;
        }
        if (first) {
            lock_broker(pc, q->q.broker_name, NULL, unlock);
        }
    }
}

/* ---- rebalancing ------------------------------------------------------------------------------ */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* This client's index among the group's sorted consumer ids, as a broker of r sees it;
 * -1 when not (yet) listed or unknown. */
static int
my_index(struct rmq_push_consumer *pc, const struct rmq_cli_route *r, uint32_t *count)
{
    struct rmq_cli *c = &pc->c;
    const char *addr = r->sub_count > 0 ? rmq_cli__queue_addr(c, &r->sub[0]) : NULL;
    struct rmq_header h;
    const char *ids[1024];
    uint32_t n = 0;
    int index = -1;
    const cJSON *e, *list;
    cJSON *root;

    *count = 0;
    if (addr == NULL) {
        return -1;
    }
    rmq_header_init(&h, RMQ_REQ_GET_CONSUMER_LIST_BY_GROUP, c->ser);
    rmq_header_add(&h, "consumerGroup", pc->group);
    if (rmq_cli__call(c, addr, &h, NULL, 0, rmq_cli__deadline(c)) < 0 ||
        c->resp.code != RMQ_RESP_SUCCESS) {
        return -1;
    }
    root = rmq_json_parse((const char *)c->resp.body, c->resp.body_len);
    list = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "consumerIdList") : NULL;
    cJSON_ArrayForEach(e, list) {
        if (cJSON_IsString(e) && n < 1024) {
            ids[n++] = e->valuestring;
        }
    }
    qsort(ids, n, sizeof(ids[0]), cmp_str);     /* byte order, as every client sorts */
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(ids[i], c->client_id) == 0) {
            index = (int)i;
        }
    }
    *count = n;
    cJSON_Delete(root);
    return index;
}

static struct pq *
pq_find(struct rmq_push_consumer *pc, const struct rmq_queue *q)
{
    for (struct pq *p = pc->pqs; p != NULL; p = p->next) {
        if (p->q.queue_id == q->queue_id && strcmp(p->q.topic, q->topic) == 0 &&
            strcmp(p->q.broker_name, q->broker_name) == 0) {
            return p;
        }
    }
    return NULL;
}

/* Take the queues of sub this consumer should own now; returns whether anything changed. */
static bool
rebalance_topic(struct rmq_push_consumer *pc, struct sub *s)
{
    struct rmq_cli *c = &pc->c;
    struct rmq_cli_route *r = rmq_cli__route(c, s->topic, false);
    uint32_t idx[1024];
    uint32_t n = 0, cids = 0;
    bool changed = false;
    struct pq **link;

    if (r == NULL || r->sub_count == 0) {
        RMQ_LOG_RL(RMQ_LOG_WARN, 30000, "ringmq: no queues of %s to consume yet: %s", s->topic,
                   rmq_last_error());
        return false;
    }
    if (pc->po.broadcasting) {
        for (uint32_t i = 0; i < r->sub_count && i < 1024; i++) {
            idx[n++] = i;
        }
    } else {
        int me = my_index(pc, r, &cids);

        if (me < 0) {
            return false;               /* not listed yet: keep what we have until it is */
        }
        n = rmq_cli__allocate_avg(RMQ_MIN(r->sub_count, 1024u), cids, (uint32_t)me, idx);
    }
    for (struct pq *p = pc->pqs; p != NULL; p = p->next) {
        p->keep = p->sub != s;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct rmq_queue *q = &r->sub[idx[i]];
        struct pq *p = pq_find(pc, q);
        int64_t start;

        if (p != NULL) {
            p->keep = true;
            continue;
        }
        start = start_offset(pc, q);
        if (start < 0) {
            continue;                   /* unknown now: the next round tries again */
        }
        p = calloc(1, sizeof(*p));
        if (p == NULL) {
            continue;
        }
        p->pc = pc;
        p->sub = s;
        p->q = *q;
        p->next_offset = p->consume_offset = p->committed = start;
        p->keep = true;
        p->next = pc->pqs;
        pc->pqs = p;
        if (pc->po.orderly) {
            lock_broker(pc, q->broker_name, p, false);
        }
        changed = true;
    }
    for (link = &pc->pqs; *link != NULL;) {
        struct pq *p = *link;

        if (p->keep) {
            link = &p->next;
            continue;
        }
        /* no longer ours: its offset first, then its lock */
        commit_one(pc, p, true);
        if (pc->po.orderly && p->locked) {
            lock_broker(pc, p->q.broker_name, p, true);
        }
        *link = p->next;
        if (p->pulling) {
            p->dropped = true;          /* freed by its pull's answer */
        } else {
            pq_free(p);
        }
        changed = true;
    }
    return changed;
}

static void
rebalance(struct rmq_push_consumer *pc)
{
    bool changed = false;
    uint32_t count = 0;

    for (uint32_t i = 0; i < pc->sub_count; i++) {
        changed |= rebalance_topic(pc, &pc->subs[i]);
    }
    for (struct pq *p = pc->pqs; p != NULL; p = p->next) {
        count++;
    }
    atomic_store(&pc->assigned, count);
    if (changed) {
        rmq_cli__heartbeat_all(&pc->c);
    }
}

/* ---- the thread ------------------------------------------------------------------------------- */

static void
started(struct rmq_push_consumer *pc, int err)
{
    pthread_mutex_lock(&pc->mu);
    pc->start_err = err;
    if (err < 0) {
        snprintf(pc->start_msg, sizeof(pc->start_msg), "%s", rmq_last_error());
    }
    pc->ready = true;
    pthread_cond_signal(&pc->cv);
    pthread_mutex_unlock(&pc->mu);
}

static void *
run(void *arg)
{
    struct rmq_push_consumer *pc = arg;
    struct rmq_cli *c = &pc->c;
    int ret = rmq_cli__init(c, &pc->opts, pc->group);

    if (ret < 0) {
        started(pc, ret);
        return NULL;
    }
    c->owner_ctx = pc;
    c->heartbeat_body = push_heartbeat;
    c->on_request = push_request;
    if (pc->po.broadcasting) {
        local_load(pc);
    }
    /* the routes first, so that the heartbeat reaches every broker of them (the retry
     * topic's route appears once a broker saw that heartbeat) */
    for (uint32_t i = 0; i < pc->user_sub_count; i++) {
        if (rmq_cli__route(c, pc->subs[i].topic, false) == NULL) {
            ret = rmq_cli__last_code();
            break;
        }
    }
    if (ret < 0) {
        rmq_cli__fini(c);
        started(pc, ret);
        return NULL;
    }
    rmq_cli__heartbeat_all(c);
    started(pc, 0);
    while (!atomic_load(&pc->stop)) {
        uint64_t now = now_ms();

        if (now >= pc->rebalance_at_ms) {
            pc->rebalance_at_ms = now + pc->po.rebalance_ms;
            rebalance(pc);
        }
        if (pc->po.orderly && now >= pc->relock_at_ms) {
            pc->relock_at_ms = now + RELOCK_MS;
            relock_all(pc, false);
        }
        if (now >= pc->persist_at_ms) {
            pc->persist_at_ms = now + pc->po.persist_ms;
            persist(pc, false);
        }
        for (struct pq *q = pc->pqs; q != NULL; q = q->next) {
            if (q->has_ready) {
                consume(pc, q);
            }
        }
        now = now_ms();
        for (struct pq *q = pc->pqs; q != NULL && !atomic_load(&pc->stop); q = q->next) {
            if (!q->pulling && !q->has_ready && now >= q->retry_at_ms &&
                (!pc->po.orderly || lock_fresh(q))) {
                pull_issue(pc, q);
            }
        }
        rmq_cli__run_once(c, 50000000);
    }
    persist(pc, true);
    if (pc->po.orderly) {
        relock_all(pc, true);
    }
    rmq_cli__unregister(c, NULL, pc->group);
    rmq_cli__fini(c);                   /* pulls still out end here, with -ECANCELED */
    while (pc->pqs != NULL) {
        struct pq *q = pc->pqs;

        pc->pqs = q->next;
        pq_free(q);
    }
    return NULL;
}

int
rmq_push_consumer_start(struct rmq_push_consumer *pc, rmq_consume_fn fn, void *arg)
{
    struct rmq_push_consumer *p = pc;
    int err;

    if (pc->thread_up || fn == NULL) {
        return rmq_cli__fail(RMQ_ERR_STATE, "already started, or no consume callback");
    }
    if (pc->sub_count == 0) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "subscribe to a topic before starting");
    }
    pc->user_sub_count = pc->sub_count;
    if (!pc->po.broadcasting) {
        /* clustering consumers also take their retried messages back */
        struct sub *s = &pc->subs[pc->sub_count];

        memset(s, 0, sizeof(*s));
        snprintf(s->topic, sizeof(s->topic), "%%RETRY%%%.*s", (int)sizeof(s->topic) - 8,
                 pc->group);
        snprintf(s->expr, sizeof(s->expr), "*");
        s->version = (int64_t)now_ms();
        pc->sub_count++;
    }
    pc->fn = fn;
    pc->arg = arg;
    if (pthread_create(&pc->thread, NULL, run, p) != 0) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "consumer thread not started");
    }
    pc->thread_up = true;
    pthread_mutex_lock(&pc->mu);
    while (!pc->ready) {
        pthread_cond_wait(&pc->cv, &pc->mu);
    }
    err = pc->start_err;
    pthread_mutex_unlock(&pc->mu);
    if (err < 0) {
        pthread_join(pc->thread, NULL);
        pc->thread_up = false;
        return rmq_cli__fail(err, "%s", pc->start_msg);
    }
    return 0;
}

void
rmq_push_consumer_destroy(struct rmq_push_consumer *pc)
{
    if (pc == NULL) {
        return;
    }
    if (pc->thread_up) {
        atomic_store(&pc->stop, true);
        pthread_join(pc->thread, NULL);
    }
    cJSON_Delete(pc->local_offsets);
    pthread_mutex_destroy(&pc->mu);
    pthread_cond_destroy(&pc->cv);
    free(pc);
}
