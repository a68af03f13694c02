/*
 * Offsets, topics and admin commands (spec/REMOTING.md §12.4, §12.8-12.10,
 * §12.16-12.18): QUERY/UPDATE_CONSUMER_OFFSET, GET_MAX/MIN_OFFSET,
 * SEARCH_OFFSET_BY_TIMESTAMP, GET_EARLIEST_MSG_STORETIME, VIEW_MESSAGE_BY_ID,
 * UPDATE_AND_CREATE_TOPIC, DELETE_TOPIC_IN_BROKER, GET_ALL_TOPIC_CONFIG,
 * GET_BROKER_RUNTIME_INFO, GET_BROKER_CONFIG, GET_CONSUMER_CONNECTION_LIST,
 * GET_CONSUME_STATS, GET_TOPIC_STATS_INFO.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "broker/broker_int.h"
#include "core/be.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"

#define VERSION_DESC "V4_9_4"
#define VERSION_CODE 401

static const char *const system_topics[] = {
    "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC", "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT", "TBW102",
    "BenchmarkTest", "RMQ_SYS_TRACE_TOPIC"};

struct queue_req {
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    int32_t queue_id;
};

static bool
need_queue(struct rmq_conn *c, const struct rmq_frame *req, struct queue_req *q)
{
    return rmq_broker__need_str(c, req, "topic", q->topic, sizeof(q->topic)) &&
           rmq_broker__need_i32(c, req, "queueId", &q->queue_id);
}

static void
reply_i64(struct rmq_conn *c, const struct rmq_header *req, const char *key, int64_t v)
{
    struct rmq_header resp;

    rmq_header_init_response(&resp, req, RMQ_RESP_SUCCESS);
    rmq_header_add_i64(&resp, key, v);
    rmq_broker__send_resp(c, req, &resp, NULL, 0);
}

/* ---- offsets ------------------------------------------------------------------------------ */

static void
h_query_offset(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    char group[RMQ_GROUP_NAME_MAX + 1];
    struct queue_req q;
    int64_t off;

    (void)ref;
    if (!rmq_broker__need_str(c, req, "consumerGroup", group, sizeof(group)) ||
        !need_queue(c, req, &q)) {
        return;
    }
    off = rmq_offsets_query(&b->offsets, q.topic, group, q.queue_id);
    if (off >= 0) {
        reply_i64(c, &req->h, "offset", off);
        return;
    }
    /* nothing committed: a queue that still starts at 0, with its first message still
     * in the hot-data window (or none yet), makes a new group start there (REMOTING.md
     * §12.8); else QUERY_NOT_FOUND and the client's own policy decides, rather than
     * replaying a long backlog from disk */
    if (rmq_store_queue_min(b->store, q.topic, (uint32_t)strlen(q.topic), q.queue_id) <= 0) {
        struct rmq_cq_entry e;

        if (rmq_store_queue_entry(b->store, q.topic, (uint32_t)strlen(q.topic), q.queue_id, 0,
                                  &e) < 0 ||
            rmq_store_in_memory(b->store, (uint64_t)e.phys_off)) {
            reply_i64(c, &req->h, "offset", 0);
            return;
        }
    }
    rmq_broker__reply(c, &req->h, RMQ_RESP_QUERY_NOT_FOUND,
                      "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first");
}

static void
h_update_offset(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    char group[RMQ_GROUP_NAME_MAX + 1];
    const struct rmq_topic_config *tc;
    struct queue_req q;
    int32_t queues;
    int64_t off;
    int ret;

    (void)ref;
    if (!rmq_broker__need_str(c, req, "consumerGroup", group, sizeof(group)) ||
        !need_queue(c, req, &q) || !rmq_broker__need_i64(c, req, "commitOffset", &off)) {
        return;
    }
    /* as the reference's 5.x: only for queues that exist, else any client could grow the
     * offset table (and its file, rewritten every 5 s) without bound */
    tc = rmq_topics_get(&b->topics, q.topic, strlen(q.topic));
    if (tc == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_TOPIC_NOT_EXIST, "topic[%s] not exist", q.topic);
        return;
    }
    queues = RMQ_MAX(tc->read_queues, tc->write_queues);
    if (q.queue_id < 0 || q.queue_id >= queues) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "QueueId[%d] is invalid, topic[%s] "
                          "has %d queues", q.queue_id, q.topic, queues);
        return;
    }
    ret = rmq_offsets_commit(&b->offsets, q.topic, group, q.queue_id, off);
    if (ret == 0) {
        rmq_broker__ha_slave_commit(b, q.topic, group, q.queue_id, off);
    }
    if (ret < 0) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "offset not stored group=%s topic=%s queueId=%d: %s", group, q.topic,
                          q.queue_id, ret == -EINVAL ? "invalid group, topic or queue id"
                                      : ret == -ENOSPC ? "too many topic@group pairs"
                                                       : strerror(-ret));
        return;
    }
    rmq_broker__reply_ok(c, &req->h, NULL, 0);
}

static void
h_max_offset(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct queue_req q;
    int64_t v;

    (void)ref;
    if (!need_queue(c, req, &q)) {
        return;
    }
    v = rmq_store_queue_max(b->store, q.topic, (uint32_t)strlen(q.topic), q.queue_id);
    reply_i64(c, &req->h, "offset", v < 0 ? 0 : v);
}

static void
h_min_offset(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct queue_req q;

    (void)ref;
    if (!need_queue(c, req, &q)) {
        return;
    }
    /* a queue nothing was written to yet starts at 0, as the reference answers */
    reply_i64(c, &req->h, "offset",
              RMQ_MAX(rmq_store_queue_min(b->store, q.topic, (uint32_t)strlen(q.topic),
                                          q.queue_id), 0));
}

static void
h_search_offset(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                void *ctx)
{
    struct rmq_broker *b = ctx;
    struct queue_req q;
    int64_t ts;

    (void)ref;
    if (!need_queue(c, req, &q) || !rmq_broker__need_i64(c, req, "timestamp", &ts)) {
        return;
    }
    reply_i64(c, &req->h, "offset",
              rmq_store_queue_offset_by_time(b->store, q.topic, (uint32_t)strlen(q.topic),
                                             q.queue_id, ts));
}

static void
h_earliest_time(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                void *ctx)
{
    struct rmq_broker *b = ctx;
    struct queue_req q;

    (void)ref;
    if (!need_queue(c, req, &q)) {
        return;
    }
    reply_i64(c, &req->h, "timestamp",
              rmq_store_queue_earliest_time(b->store, q.topic, (uint32_t)strlen(q.topic),
                                            q.queue_id));
}

static void
h_view_by_id(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct rmq_store *s = b->store;
    struct rmq_seg_map *pin = NULL;
    struct rmq_record rec;
    const uint8_t *p;
    int64_t off, at;
    uint32_t size;

    (void)ref;
    if (!rmq_broker__need_i64(c, req, "offset", &off)) {
        return;
    }
    at = off;
    if (at > 0 && (at & RMQ_TIMER_LOG_ID_BIT) && b->timer_store != NULL) {
        s = b->timer_store;         /* a timed message's id from its send answer */
        at &= ~RMQ_TIMER_LOG_ID_BIT;
    }
    if (at < 0 || rmq_store_view(s, (uint64_t)at, 4, &p, &pin) < 0) {
        goto not_found;
    }
    size = rmq_get_be32(p);
    rmq_store_unpin(s, pin);
    if (size < RMQ_RECORD_MIN_SIZE || rmq_store_view(s, (uint64_t)at, size, &p, &pin) < 0) {
        goto not_found;
    }
    if (rmq_record_decode(p, size, false, &rec, NULL) != (int64_t)size) {
        rmq_store_unpin(s, pin);
        goto not_found;
    }
    rmq_broker__reply_ok(c, &req->h, p, size);
    rmq_store_unpin(s, pin);
    return;
not_found:
    rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "can not find message by the offset, %lld",
                      (long long)off);
}

/* ---- topics ------------------------------------------------------------------------------ */

static bool
is_system_topic(const char *t)
{
    for (size_t i = 0; i < RMQ_ARRAY_LEN(system_topics); i++) {
        if (strcmp(t, system_topics[i]) == 0) {
            return true;
        }
    }
    return strncmp(t, "rmq_sys_", 8) == 0;
}

static void
h_create_topic(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct rmq_topic_config tc;
    int32_t sys_flag = 0;
    bool order = false;
    const char *why = NULL;
    struct rmq_str filter;
    int ret;

    (void)ref;
    memset(&tc, 0, sizeof(tc));
    if (!rmq_broker__need_str(c, req, "topic", tc.name, sizeof(tc.name)) ||
        !rmq_broker__need_i32(c, req, "readQueueNums", &tc.read_queues) ||
        !rmq_broker__need_i32(c, req, "writeQueueNums", &tc.write_queues) ||
        !rmq_broker__need_i32(c, req, "perm", &tc.perm)) {
        return;
    }
    if (b->cfg.broker_role == RMQ_ROLE_SLAVE) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "Can't modify topic or subscription group from slave broker, please "
                          "execute it from master broker.");
        return;
    }
    if (is_system_topic(tc.name)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "The topic[%s] is conflict with system topic.", tc.name);
        return;
    }
    rmq_header_get_i32(&req->h, "topicSysFlag", &sys_flag);
    rmq_header_get_bool(&req->h, "order", &order);
    tc.sys_flag = sys_flag;
    tc.order = order;
    if (rmq_header_get(&req->h, "topicFilterType", &filter) && rmq_str_eq(filter, "MULTI_TAG")) {
        tc.filter = RMQ_FILTER_MULTI_TAG;
    }
    ret = rmq_topics_put(&b->topics, &tc, &why);
    if (ret == -EINVAL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "topic %s refused: %s", tc.name, why);
        return;
    }
    if (ret < 0 && rmq_topics_get(&b->topics, tc.name, strlen(tc.name)) == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "topic %s not created: %s", tc.name,
                          strerror(-ret));
        return;
    }
    if (ret < 0) {
        RMQ_ERROR("broker: topic %s changed in memory, topics.json not written err=%s", tc.name,
                  strerror(-ret));
    }
    RMQ_INFO("broker: topic updated topic=%s read=%d write=%d perm=%d peer=%s", tc.name,
             tc.read_queues, tc.write_queues, tc.perm, c->peer_str);
    rmq_broker__topics_changed(b);
    rmq_broker__reply_ok(c, &req->h, NULL, 0);
}

static void
h_delete_topic(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    int ret;

    (void)ref;
    if (!rmq_broker__need_str(c, req, "topic", topic, sizeof(topic))) {
        return;
    }
    if (is_system_topic(topic)) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "The topic[%s] is conflict with system topic.", topic);
        return;
    }
    ret = rmq_topics_delete(&b->topics, topic);
    if (ret < 0 && ret != -ENOENT) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "topic %s not deleted: %s", topic,
                          strerror(-ret));
        return;
    }
    RMQ_INFO("broker: topic deleted topic=%s peer=%s", topic, c->peer_str);
    rmq_broker__topics_changed(b);
    rmq_broker__reply_ok(c, &req->h, NULL, 0);
}

static void
h_all_topic_config(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                   void *ctx)
{
    struct rmq_broker *b = ctx;

    (void)ref;
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_topics_write_wrapper(&b->topics, &b->out);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

/* ---- runtime info and config ------------------------------------------------------------- */

static void
kv(struct rmq_jw *w, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
kv(struct rmq_jw *w, const char *k, const char *fmt, ...)
{
    char v[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    rmq_jw_key(w, k);
    rmq_jw_str(w, v);
}

static void
h_runtime_info(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    const struct rmq_store_stats *st = rmq_store_stats(b->store);
    const struct rmq_loop_stats *ls = &b->loop->stats;
    uint64_t written = rmq_store_written_off(b->store);
    uint64_t flushed = rmq_store_flushed_off(b->store);
    uint64_t up_ms = rmq_clock_wall_ms() - b->start_ms;
    struct statvfs sv;
    double ratio = 0;
    struct rmq_jw *w = &b->out;

    (void)ref;
    if (statvfs(b->cfg.store.storePathRootDir, &sv) == 0 && sv.f_blocks > 0) {
        ratio = 1.0 - (double)sv.f_bavail / (double)sv.f_blocks;
    }
    rmq_jw_reset(w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "table");
    rmq_jw_obj_begin(w);
    kv(w, "brokerVersionDesc", "%s", VERSION_DESC);
    kv(w, "brokerVersion", "%d", VERSION_CODE);
    kv(w, "msgPutTotalTodayNow", "%llu", (unsigned long long)b->stats.put_msgs);
    kv(w, "msgGetTotalTodayNow", "%llu", (unsigned long long)b->stats.get_msgs);
    kv(w, "msgPutTotalTodayMorning", "0");
    kv(w, "msgGetTotalTodayMorning", "0");
    kv(w, "msgPutTotalYesterdayMorning", "0");
    kv(w, "msgGetTotalYesterdayMorning", "0");
    kv(w, "putTps", "%.2f", up_ms ? (double)b->stats.put_msgs * 1000.0 / (double)up_ms : 0.0);
    kv(w, "getTransferedTps", "%.2f",
       up_ms ? (double)b->stats.get_msgs * 1000.0 / (double)up_ms : 0.0);
    kv(w, "commitLogMinOffset", "%llu", (unsigned long long)rmq_store_min_off(b->store));
    kv(w, "commitLogMaxOffset", "%llu", (unsigned long long)written);
    kv(w, "remainHowManyDataToFlush", "%llu", (unsigned long long)(written - flushed));
    kv(w, "commitLogDiskRatio", "%.4f", ratio);
    kv(w, "consumeQueueDiskRatio", "%.4f", ratio);
    kv(w, "earliestMessageTimeStamp", "%lld", (long long)rmq_store_earliest_time(b->store));
    kv(w, "startAcceptSendRequestTimeStamp", "0");
    kv(w, "bootTimestamp", "%llu", (unsigned long long)b->start_ms);
    kv(w, "runtime", "[ %llu days, %llu hours, %llu minutes, %llu seconds ]",
       (unsigned long long)(up_ms / 86400000), (unsigned long long)(up_ms / 3600000 % 24),
       (unsigned long long)(up_ms / 60000 % 60), (unsigned long long)(up_ms / 1000 % 60));
    kv(w, "flushDiskType", "%s", b->cfg.store.flushDiskType ? "SYNC_FLUSH" : "ASYNC_FLUSH");
    kv(w, "brokerRole", "%s", b->cfg.broker_role == RMQ_ROLE_SLAVE ? "SLAVE"
                              : b->cfg.broker_role == RMQ_ROLE_SYNC_MASTER ? "SYNC_MASTER"
                                                                           : "ASYNC_MASTER");
    kv(w, "storeError", "%s", rmq_store_error(b->store) ? "EIO (sticky)" : "none");
    kv(w, "storeAppends", "%llu", (unsigned long long)st->appends);
    kv(w, "storeWrites", "%llu", (unsigned long long)st->writes);
    kv(w, "storeSyncs", "%llu", (unsigned long long)st->syncs);
    kv(w, "diskFullRefusals", "%llu", (unsigned long long)st->disk_full_refusals);
    kv(w, "ioUringEnters", "%llu", (unsigned long long)ls->enters);
    kv(w, "ioUringSqes", "%llu", (unsigned long long)ls->sqes);
    kv(w, "pulls", "%llu", (unsigned long long)b->stats.pulls);
    kv(w, "pullsParked", "%llu", (unsigned long long)b->stats.pulls_parked);
    kv(w, "pullsWoken", "%llu", (unsigned long long)b->stats.pulls_woken);
    kv(w, "putRefused", "%llu", (unsigned long long)b->stats.put_refused);
    kv(w, "getBytes", "%llu", (unsigned long long)b->stats.get_bytes);
    kv(w, "connections", "%u", b->srv.live_conns);
    kv(w, "pullSplices", "%llu", (unsigned long long)b->nl->stats.splices);
    kv(w, "timerPending", "%llu", (unsigned long long)b->timer_waiting);
    kv(w, "timerWaitingBytes", "%llu", (unsigned long long)b->timer_waiting_bytes);
    kv(w, "timerLogMinOffset", "%llu",
       (unsigned long long)(b->timer_store != NULL ? rmq_store_min_off(b->timer_store) : 0));
    kv(w, "timerLogMaxOffset", "%llu",
       (unsigned long long)(b->timer_store != NULL ? rmq_store_written_off(b->timer_store) : 0));
    {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) == 0) {
            kv(w, "cpuUserUs", "%lld",
               (long long)ru.ru_utime.tv_sec * 1000000 + (long long)ru.ru_utime.tv_usec);
            kv(w, "cpuSysUs", "%lld",
               (long long)ru.ru_stime.tv_sec * 1000000 + (long long)ru.ru_stime.tv_usec);
        }
    }
    kv(w, "indexEntries", "%llu",
       (unsigned long long)(b->index != NULL ? rmq_index_stats(b->index)->entries : 0));
    kv(w, "indexFiles", "%u", b->index != NULL ? rmq_index_stats(b->index)->files : 0);
    kv(w, "indexEndPhyoffset", "%lld",
       (long long)(b->index != NULL ? rmq_index_end_phys(b->index) : -1));
    kv(w, "timerRolled", "%llu", (unsigned long long)b->stats.timer_rolled);
    kv(w, "heldMarksRecovered", "%llu", (unsigned long long)b->stats.held_marks_recovered);
    if (b->ha_master != NULL) {
        const struct rmq_ha_master_stats *hs = rmq_ha_master_stats(b->ha_master);

        kv(w, "haConnections", "%u", hs->slaves);
        kv(w, "haPush2SlaveMaxOffset", "%llu", (unsigned long long)hs->acked_off);
        kv(w, "haSlaveFallBehind", "%llu", (unsigned long long)(hs->slaves == 0 ? 0 :
           written > hs->acked_off ? written - hs->acked_off : 0));
        kv(w, "haBytesSent", "%llu", (unsigned long long)hs->bytes_sent);
        kv(w, "haSendmsgs", "%llu", (unsigned long long)hs->sendmsgs);
        kv(w, "haWaits", "%llu", (unsigned long long)hs->waits);
        kv(w, "haWaitTimeouts", "%llu", (unsigned long long)hs->wait_timeouts);
        kv(w, "haRefusedNoSlave", "%llu", (unsigned long long)hs->refused_no_slave);
        kv(w, "haSlavesRefused", "%llu", (unsigned long long)hs->slaves_refused);
    }
    if (b->ha_slave != NULL) {
        const struct rmq_ha_slave_stats *hs = rmq_ha_slave_stats(b->ha_slave);
        const char *why = rmq_ha_slave_diverged(b->ha_slave);

        kv(w, "haConnected", "%s", hs->connected ? "true" : "false");
        kv(w, "haMasterAddress", "%s", b->master_addr);
        kv(w, "haMasterOffset", "%llu", (unsigned long long)hs->master_off);
        kv(w, "haBytesReceived", "%llu", (unsigned long long)hs->bytes_received);
        kv(w, "haConnects", "%llu", (unsigned long long)hs->connects);
        kv(w, "haVerifiedBytes", "%llu", (unsigned long long)hs->verified_bytes);
        kv(w, "haDiverged", "%.120s", why != NULL ? why : "");
        kv(w, "slaveSyncs", "%llu", (unsigned long long)b->stats.slave_syncs);
        kv(w, "slaveSyncFailures", "%llu", (unsigned long long)b->stats.slave_sync_failures);
        kv(w, "slaveOffsetsPushed", "%llu", (unsigned long long)b->stats.slave_offsets_pushed);
    }
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

static void
h_broker_config(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                void *ctx)
{
    struct rmq_broker *b = ctx;
    const struct rmq_config_spec *spec = rmq_broker_config_spec();
    struct rmq_header resp;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    (void)ref;
    if (f == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "out of memory");
        return;
    }
    /* java.util.Properties text, what the reference's admin tools parse */
    for (size_t i = 0; i < spec->key_count; i++) {
        const struct rmq_config_key *k = &spec->keys[i];
        const char *field = (const char *)&b->cfg + k->offset;

        switch (k->type) {
        case RMQ_CONFIG_I64:
            fprintf(f, "%s=%lld\n", k->name, (long long)*(const int64_t *)(const void *)field);
            break;
        case RMQ_CONFIG_BOOL:
            fprintf(f, "%s=%s\n", k->name, *(const bool *)field ? "true" : "false");
            break;
        case RMQ_CONFIG_STR:
            fprintf(f, "%s=%s\n", k->name, field);
            break;
        case RMQ_CONFIG_ENUM:
            fprintf(f, "%s=%s\n", k->name, k->choices[*(const int *)(const void *)field]);
            break;
        }
    }
    fclose(f);
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&b->out);
    rmq_jw_key(&b->out, "dataVersion");
    rmq_jw_data_version(&b->out, &b->topics.version);
    rmq_jw_obj_end(&b->out);
    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    {
        const char *ver;
        size_t vlen;

        if (rmq_jw_finish(&b->out, &ver, &vlen) == 0) {
            rmq_header_add(&resp, "version", ver);
        }
    }
    rmq_broker__send_resp(c, &req->h, &resp, text, len);
    free(text);
}

/* ---- consumer views ---------------------------------------------------------------------- */

static const char *const consume_type_names[] = {"CONSUME_ACTIVELY", "CONSUME_PASSIVELY"};
static const char *const model_names[] = {"BROADCASTING", "CLUSTERING"};
static const char *const from_names[] = {
    "CONSUME_FROM_LAST_OFFSET", "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET", "CONSUME_FROM_MAX_OFFSET", "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP"};
static const char *const language_names[] = {"JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI",
                                             "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
                                             "OMS", "RUST", "NODE_JS"};

static void
h_consumer_connections(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                       void *ctx)
{
    struct rmq_broker *b = ctx;
    char group[RMQ_GROUP_NAME_MAX + 1];
    const struct rmq_consumer_group *g;
    struct rmq_jw *w = &b->out;

    (void)ref;
    if (!rmq_broker__need_str(c, req, "consumerGroup", group, sizeof(group))) {
        return;
    }
    g = rmq_strmap_get(&b->consumers, group);
    if (g == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_CONSUMER_NOT_ONLINE,
                          "the consumer group[%s] not online", group);
        return;
    }
    rmq_jw_reset(w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "connectionSet");
    rmq_jw_arr_begin(w);
    for (uint32_t i = 0; i < g->member_count; i++) {
        struct rmq_conn *m = rmq_broker__conn_from_tag(b, g->members[i]);
        const struct rmq_conn_info *ci;

        if (m == NULL) {
            continue;
        }
        ci = rmq_broker__info(b, m);
        rmq_jw_obj_begin(w);
        rmq_jw_key(w, "clientAddr");
        rmq_jw_str(w, m->peer_str);
        rmq_jw_key(w, "clientId");
        rmq_jw_str(w, ci->client_id);
        rmq_jw_key(w, "language");
        rmq_jw_str(w, ci->language < RMQ_ARRAY_LEN(language_names) ? language_names[ci->language]
                                                                    : "OTHER");
        rmq_jw_key(w, "version");
        rmq_jw_i64(w, ci->version);
        rmq_jw_obj_end(w);
    }
    rmq_jw_arr_end(w);
    rmq_jw_key(w, "consumeFromWhere");
    rmq_jw_str(w, from_names[g->consume_from % 6]);
    rmq_jw_key(w, "consumeType");
    rmq_jw_str(w, consume_type_names[g->consume_type & 1]);
    rmq_jw_key(w, "messageModel");
    rmq_jw_str(w, model_names[g->message_model & 1]);
    rmq_jw_key(w, "subscriptionTable");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; i < g->sub_count; i++) {
        const struct rmq_subscription *s = &g->subs[i];

        rmq_jw_key(w, s->topic);
        rmq_jw_obj_begin(w);
        rmq_jw_key(w, "classFilterMode");
        rmq_jw_bool(w, false);
        rmq_jw_key(w, "codeSet");
        rmq_jw_arr_begin(w);
        for (uint32_t k = 0; k < s->code_count; k++) {
            rmq_jw_i64(w, s->codes[k]);
        }
        rmq_jw_arr_end(w);
        rmq_jw_key(w, "expressionType");
        rmq_jw_str(w, "TAG");
        rmq_jw_key(w, "subString");
        rmq_jw_str(w, s->sub_string);
        rmq_jw_key(w, "subVersion");
        rmq_jw_i64(w, s->sub_version);
        rmq_jw_key(w, "topic");
        rmq_jw_str(w, s->topic);
        rmq_jw_obj_end(w);
    }
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

/* {"brokerName":"b","queueId":0,"topic":"t"}: the MessageQueue as a map key */
static void
mq_key(struct rmq_broker *b, const char *topic, int32_t qid)
{
    char key[RMQ_BROKER_NAME_MAX + RMQ_TOPIC_NAME_MAX + 64];

    snprintf(key, sizeof(key), "{\"brokerName\":\"%s\",\"queueId\":%d,\"topic\":\"%s\"}",
             b->cfg.broker_name, qid, topic);
    rmq_jw_key_raw(&b->out, key);
}

static void
consume_stats_topic(struct rmq_broker *b, const char *group, const struct rmq_topic_config *tc)
{
    struct rmq_jw *w = &b->out;
    uint32_t tlen = (uint32_t)strlen(tc->name);

    for (int32_t q = 0; q < tc->read_queues; q++) {
        int64_t max = rmq_store_queue_max(b->store, tc->name, tlen, q);
        int64_t off = rmq_offsets_query(&b->offsets, tc->name, group, q);

        mq_key(b, tc->name, q);
        rmq_jw_obj_begin(w);
        rmq_jw_key(w, "brokerOffset");
        rmq_jw_i64(w, max < 0 ? 0 : max);
        rmq_jw_key(w, "consumerOffset");
        rmq_jw_i64(w, off < 0 ? 0 : off);
        rmq_jw_key(w, "lastTimestamp");
        rmq_jw_i64(w, 0);
        rmq_jw_obj_end(w);
    }
}

static void
h_consume_stats(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    char group[RMQ_GROUP_NAME_MAX + 1];
    char topic[RMQ_TOPIC_NAME_MAX + 1] = "";
    const struct rmq_consumer_group *g;
    struct rmq_jw *w = &b->out;

    (void)ref;
    if (!rmq_broker__need_str(c, req, "consumerGroup", group, sizeof(group))) {
        return;
    }
    rmq_broker__field_str(req, "topic", topic, sizeof(topic));
    g = rmq_strmap_get(&b->consumers, group);
    rmq_jw_reset(w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "consumeTps");
    rmq_jw_i64(w, 0);
    rmq_jw_key(w, "offsetTable");
    rmq_jw_obj_begin(w);
    if (topic[0] != '\0') {
        const struct rmq_topic_config *tc = rmq_topics_get(&b->topics, topic, strlen(topic));

        if (tc != NULL) {
            consume_stats_topic(b, group, tc);
        }
    } else {
        char t[RMQ_TOPIC_NAME_MAX + 1];
        uint32_t pos = 0;

        for (uint32_t i = 0; g != NULL && i < g->sub_count; i++) {
            const struct rmq_topic_config *tc =
                rmq_topics_get(&b->topics, g->subs[i].topic, strlen(g->subs[i].topic));

            if (tc != NULL) {
                consume_stats_topic(b, group, tc);
            }
        }
        /* and, as the reference does for groups not online, the topics it committed on */
        while (rmq_offsets_next_topic(&b->offsets, group, &pos, t)) {
            const struct rmq_topic_config *tc = rmq_topics_get(&b->topics, t, strlen(t));
            bool subscribed = false;

            for (uint32_t i = 0; g != NULL && i < g->sub_count && !subscribed; i++) {
                subscribed = strcmp(g->subs[i].topic, t) == 0;
            }
            if (tc != NULL && !subscribed) {
                consume_stats_topic(b, group, tc);
            }
        }
    }
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

static void
h_topic_stats(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    char topic[RMQ_TOPIC_NAME_MAX + 1];
    const struct rmq_topic_config *tc;
    struct rmq_jw *w = &b->out;
    uint32_t tlen;

    (void)ref;
    if (!rmq_broker__need_str(c, req, "topic", topic, sizeof(topic))) {
        return;
    }
    tc = rmq_topics_get(&b->topics, topic, strlen(topic));
    if (tc == NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_TOPIC_NOT_EXIST, "topic[%s] not exist", topic);
        return;
    }
    tlen = (uint32_t)strlen(topic);
    rmq_jw_reset(w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "offsetTable");
    rmq_jw_obj_begin(w);
    for (int32_t q = 0; q < tc->write_queues; q++) {
        int64_t min = rmq_store_queue_min(b->store, topic, tlen, q);
        int64_t max = rmq_store_queue_max(b->store, topic, tlen, q);
        mq_key(b, topic, q);
        rmq_jw_obj_begin(w);
        rmq_jw_key(w, "lastUpdateTimestamp");
        rmq_jw_i64(w, 0);
        rmq_jw_key(w, "maxOffset");
        rmq_jw_i64(w, max < 0 ? 0 : max);
        rmq_jw_key(w, "minOffset");
        rmq_jw_i64(w, min < 0 ? 0 : min);
        rmq_jw_obj_end(w);
    }
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

void
rmq_broker__admin_install(struct rmq_broker *b)
{
    struct rmq_server *s = &b->srv;

    rmq_server_handle(s, RMQ_REQ_QUERY_CONSUMER_OFFSET, h_query_offset, b);
    rmq_server_handle(s, RMQ_REQ_UPDATE_CONSUMER_OFFSET, h_update_offset, b);
    rmq_server_handle(s, RMQ_REQ_GET_MAX_OFFSET, h_max_offset, b);
    rmq_server_handle(s, RMQ_REQ_GET_MIN_OFFSET, h_min_offset, b);
    rmq_server_handle(s, RMQ_REQ_SEARCH_OFFSET_BY_TIMESTAMP, h_search_offset, b);
    rmq_server_handle(s, RMQ_REQ_GET_EARLIEST_MSG_STORETIME, h_earliest_time, b);
    rmq_server_handle(s, RMQ_REQ_VIEW_MESSAGE_BY_ID, h_view_by_id, b);
    rmq_server_handle(s, RMQ_REQ_UPDATE_AND_CREATE_TOPIC, h_create_topic, b);
    rmq_server_handle(s, RMQ_REQ_DELETE_TOPIC_IN_BROKER, h_delete_topic, b);
    rmq_server_handle(s, RMQ_REQ_GET_ALL_TOPIC_CONFIG, h_all_topic_config, b);
    rmq_server_handle(s, RMQ_REQ_GET_BROKER_RUNTIME_INFO, h_runtime_info, b);
    rmq_server_handle(s, RMQ_REQ_GET_BROKER_CONFIG, h_broker_config, b);
    rmq_server_handle(s, RMQ_REQ_GET_CONSUMER_CONNECTION_LIST, h_consumer_connections, b);
    rmq_server_handle(s, RMQ_REQ_GET_CONSUME_STATS, h_consume_stats, b);
    rmq_server_handle(s, RMQ_REQ_GET_TOPIC_STATS_INFO, h_topic_stats, b);
}
