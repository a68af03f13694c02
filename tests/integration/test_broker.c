/*
 * The real rmq-broker daemon over loopback (standalone: its NameServer in the same
 * process). Each test starts build/bin/rmq-broker on 127.0.0.1 with free ports and a
 * throwaway data dir, drives it with rmq_client connections through the real codec,
 * decodes pulled records with the store's record decoder, and stops it by PID:
 * SIGTERM must exit 0 (under ASan that also proves nothing leaked); crash tests use
 * SIGKILL and restart on the same directory.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/be.h"
#include "core/clock.h"
#include "core/util.h"
#include "net/codes.h"
#include "net/json.h"
#include "core/record.h"
#include "tests/integration/harness.h"
#include "tests/unit/vectors.h"

static struct daemon B;
static uint16_t ns_port;

static void
broker_start(const char *const *extra)
{
    const char *args[32] = {"--mappedFileSizeConsumeQueue=600000"};
    int n = 1;

    for (int i = 0; extra != NULL && extra[i] != NULL && n < 31; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    ns_port = broker_spawn_standalone(&B, "broker-test", args);
}

/* client 0 and 1 to the broker, 2 to its NameServer */
static void
clients_to_broker(void)
{
    uint16_t ports[3] = {B.port, B.port, ns_port};

    clients_up_to(3, ports);
}

static void
cleanup(void)
{
    if (C.up) {
        clients_down();
    }
    cleanup_one(&B);
}

TestSuite(broker, .fini = cleanup, .timeout = 120);

/* ---- requests ------------------------------------------------------------------------------ */

static void
create_topic(int ci, const char *topic, int queues)
{
    struct rmq_header h;
    struct answer a;

    rmq_header_init(&h, RMQ_REQ_UPDATE_AND_CREATE_TOPIC, RMQ_SER_ROCKETMQ);
    rmq_header_add(&h, "topic", topic);
    rmq_header_add(&h, "defaultTopic", "TBW102");
    rmq_header_add_i64(&h, "readQueueNums", queues);
    rmq_header_add_i64(&h, "writeQueueNums", queues);
    rmq_header_add_i64(&h, "perm", 6);
    rmq_header_add(&h, "topicFilterType", "SINGLE_TAG");
    rmq_header_add(&h, "order", "false");
    call(ci, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "create topic: %s", a.remark);
    answer_free(&a);
}

static void
send_header(struct rmq_header *h, enum rmq_serialize ser, const char *topic, int queue,
            const char *props)
{
    rmq_header_init(h, RMQ_REQ_SEND_MESSAGE_V2, ser);
    rmq_header_add(h, "a", "PG_TEST");
    rmq_header_add(h, "b", topic);
    rmq_header_add(h, "c", "TBW102");
    rmq_header_add_i64(h, "d", 4);
    rmq_header_add_i64(h, "e", queue);
    rmq_header_add_i64(h, "f", 0);
    rmq_header_add_i64(h, "g", 1700000000000);
    rmq_header_add_i64(h, "h", 0);
    rmq_header_add(h, "i", props);
}

static void
send_one(int ci, const char *topic, int queue, const char *props, const char *body,
         struct answer *a)
{
    struct rmq_header h;

    send_header(&h, RMQ_SER_ROCKETMQ, topic, queue, props);
    call(ci, &h, body, a);
}

struct pull_req {
    const char *group;
    const char *topic;
    int queue;
    int64_t offset;
    int max;
    int sysflag;
    int64_t suspend_ms;
    const char *sub;
};

static void
pull_header(struct rmq_header *h, const struct pull_req *p)
{
    rmq_header_init(h, RMQ_REQ_PULL_MESSAGE, RMQ_SER_ROCKETMQ);
    rmq_header_add(h, "consumerGroup", p->group);
    rmq_header_add(h, "topic", p->topic);
    rmq_header_add_i64(h, "queueId", p->queue);
    rmq_header_add_i64(h, "queueOffset", p->offset);
    rmq_header_add_i64(h, "maxMsgNums", p->max);
    rmq_header_add_i64(h, "sysFlag", p->sysflag);
    rmq_header_add_i64(h, "commitOffset", 0);
    rmq_header_add_i64(h, "suspendTimeoutMillis", p->suspend_ms);
    rmq_header_add(h, "subscription", p->sub != NULL ? p->sub : "*");
    rmq_header_add_i64(h, "subVersion", 0);
}

static void
pull(int ci, const struct pull_req *p, struct answer *a)
{
    struct rmq_header h;

    pull_header(&h, p);
    call(ci, &h, NULL, a);
}

static int64_t
ext_i64(const struct answer *a, const char *key)
{
    const char *v = answer_ext(a, key);

    cr_assert_not_null(v, "response without %s (code %d remark %s)", key, a->code, a->remark);
    return strtoll(v, NULL, 10);
}

/* Walk the records of a pull body; fn per record. Returns the count. */
static uint32_t
each_record(const struct answer *a, void (*fn)(const struct rmq_record *r, void *arg), void *arg)
{
    uint32_t n = 0;

    for (uint32_t off = 0; off < a->body_len;) {
        struct rmq_record r;
        int64_t size = rmq_record_decode((const uint8_t *)a->body + off, a->body_len - off, true,
                                         &r, NULL);

        cr_assert_gt(size, 0, "pull body holds a bad record at %u", off);
        fn(&r, arg);
        off += (uint32_t)size;
        n++;
    }
    return n;
}

static bool
prop_is(const struct rmq_record *r, const char *name, const char *want)
{
    const char *v;
    size_t len;

    return rmq_props_get(r->props, r->props_len, name, &v, &len) && len == strlen(want) &&
           memcmp(v, want, len) == 0;
}

/* ---- pipelined sends ----------------------------------------------------------------------- */

#define WINDOW 256
#define BULK_QUEUES 8
#define BULK_COUNT 100000

struct bulk {
    struct answer slots[WINDOW];
    int free_slots[WINDOW];
    int inflight;
    uint64_t acked;
    uint64_t refused;
    int64_t next_off[BULK_QUEUES];  /* queue offsets seen in acks, must be dense */
    bool dense;
    char (*ids)[33];                /* msgId per sequence number */
    int64_t *seq_queue_off;
};

static struct bulk K;

static void
props_for(uint64_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "TAGS%c%s%cKEYS%ck%llu%cUNIQ_KEY%cU%016llX%c", 1, seq % 2 ? "B" : "A", 2, 1,
             (unsigned long long)seq, 2, 1, (unsigned long long)seq, 2);
}

static void
body_for(uint64_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "body-%llu-queue-%llu-%0*d", (unsigned long long)seq,
             (unsigned long long)(seq % BULK_QUEUES), (int)(seq % 200), 0);
}

static void
bulk_done(struct rmq_call *call, int err, struct rmq_frame *resp)
{
    struct answer *a = rmq_container_of(call, struct answer, call);
    uint64_t seq = (uint64_t)a->code;   /* stashed sequence number */

    K.inflight--;
    K.free_slots[WINDOW - 1 - K.inflight] = (int)(a - K.slots);
    if (err != 0) {
        return;                     /* connection lost: never acknowledged */
    }
    if (resp->h.code != RMQ_RESP_SUCCESS) {
        K.refused++;
        return;
    }
    {
        struct rmq_str id, qo;
        int64_t off;

        cr_assert(rmq_header_get(&resp->h, "msgId", &id) && id.len == 32);
        cr_assert(rmq_header_get(&resp->h, "queueOffset", &qo));
        off = strtoll(qo.ptr, NULL, 10);
        memcpy(K.ids[seq], id.ptr, 32);
        K.ids[seq][32] = '\0';
        K.seq_queue_off[seq] = off;
    }
    K.acked++;
}

static bool
bulk_room(void *arg)
{
    (void)arg;
    return K.inflight < WINDOW;
}

static bool
bulk_drained(void *arg)
{
    (void)arg;
    return K.inflight == 0;
}

static void
bulk_reset(void)
{
    memset(&K, 0, sizeof(K));
    for (int i = 0; i < WINDOW; i++) {
        K.free_slots[i] = i;
    }
    K.ids = calloc(BULK_COUNT, sizeof(*K.ids));
    K.seq_queue_off = calloc(BULK_COUNT, sizeof(int64_t));
}

static void
bulk_free(void)
{
    free(K.ids);
    free(K.seq_queue_off);
}

/* Send message seq (queue seq % 8) once a window slot is free. */
static void
bulk_issue(int ci, const char *topic, uint64_t seq)
{
    struct rmq_header h;
    struct answer *a;
    char props[128];
    char body[300];

    cr_assert(run_until(bulk_room, NULL, 30000));
    a = &K.slots[K.free_slots[WINDOW - 1 - K.inflight]];
    memset(a, 0, sizeof(*a));
    a->code = (int)seq;             /* the sequence number rides in the answer */
    a->call.done = bulk_done;
    props_for(seq, props, sizeof(props));
    body_for(seq, body, sizeof(body));
    send_header(&h, RMQ_SER_ROCKETMQ, topic, (int)(seq % BULK_QUEUES), props);
    cr_assert_eq(rmq_client_call(&C.cl[ci], &a->call, &h, body, (uint32_t)strlen(body), 30000), 0);
    K.inflight++;
}

static void
bulk_send(int ci, const char *topic, uint64_t count)
{
    for (uint64_t seq = 0; seq < count; seq++) {
        bulk_issue(ci, topic, seq);
    }
    cr_assert(run_until(bulk_drained, NULL, 60000));
}

struct check_ctx {
    int queue;
    int64_t expect_off;
    uint64_t seen;
};

static void
check_record(const struct rmq_record *r, void *arg)
{
    struct check_ctx *x = arg;
    uint64_t seq;
    char props[128];
    char body[300];
    char id[33];

    cr_assert_eq(r->queue_id, x->queue);
    cr_assert_eq(r->queue_off, x->expect_off, "queue %d: offset %lld, expected %lld", x->queue,
                 (long long)r->queue_off, (long long)x->expect_off);
    /* the body names its sequence number; everything else follows from it */
    cr_assert_eq(sscanf((const char *)r->body, "body-%llu", (unsigned long long *)&seq), 1);
    cr_assert_lt(seq, BULK_COUNT);
    cr_assert_eq(seq % BULK_QUEUES, (uint64_t)x->queue);
    body_for(seq, body, sizeof(body));
    props_for(seq, props, sizeof(props));
    cr_assert_eq(r->body_len, strlen(body));
    cr_assert_eq(memcmp(r->body, body, r->body_len), 0);
    cr_assert_eq(r->props_len, strlen(props), "properties must be stored as sent");
    cr_assert_eq(memcmp(r->props, props, r->props_len), 0);
    cr_assert_eq(K.seq_queue_off[seq], r->queue_off, "send response queueOffset");
    rmq_msg_offset_id(id, r->store_ip, r->store_port, r->phys_off);
    cr_assert_str_eq(K.ids[seq], id, "send response msgId is the record's offset id");
    cr_assert_eq(r->born_ts, 1700000000000);
    x->expect_off++;
    x->seen++;
}

/* A GET_BROKER_RUNTIME_INFO value as a number. */
static long long
runtime_value(int ci, const char *key)
{
    struct rmq_header h;
    struct answer a;
    cJSON *j;
    const char *v;
    long long n;

    rmq_header_init(&h, RMQ_REQ_GET_BROKER_RUNTIME_INFO, RMQ_SER_JSON);
    call(ci, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    j = rmq_json_parse(a.body, a.body_len);
    cr_assert_not_null(j);
    v = rmq_json_get_str(cJSON_GetObjectItem(j, "table"), key);
    cr_assert_not_null(v, "no %s in %s", key, a.body);
    n = atoll(v);
    cJSON_Delete(j);
    answer_free(&a);
    return n;
}

static void
bulk_round_trip(const char *const *extra, bool splice)
{
    struct answer a;
    uint64_t total = 0;

    broker_start(extra);
    clients_to_broker();
    create_topic(0, "BulkTopic", BULK_QUEUES);
    bulk_reset();
    bulk_send(0, "BulkTopic", BULK_COUNT);
    cr_assert_eq(K.refused, 0);
    cr_assert_eq(K.acked, BULK_COUNT);
    for (int q = 0; q < BULK_QUEUES; q++) {
        struct check_ctx x = {.queue = q};
        struct pull_req p = {"CG_BULK", "BulkTopic", q, 0, 32, 4, 0, "*"};

        for (int waits = 0; x.seen < BULK_COUNT / BULK_QUEUES;) {
            pull(1, &p, &a);
            if (a.code == RMQ_RESP_PULL_NOT_FOUND) {
                /* acknowledged, queue entry not yet written: bounded wait */
                answer_free(&a);
                cr_assert_lt(waits++, 200, "queue %d stuck at %llu messages", q,
                             (unsigned long long)x.seen);
                usleep(10000);
                continue;
            }
            cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "pull: %d %s", a.code, a.remark);
            cr_assert_eq(each_record(&a, check_record, &x), (uint32_t)(ext_i64(&a,
                         "nextBeginOffset") - p.offset));
            p.offset = ext_i64(&a, "nextBeginOffset");
            cr_assert_eq(ext_i64(&a, "minOffset"), 0);
            cr_assert_eq(ext_i64(&a, "suggestWhichBrokerId"), 0);
            answer_free(&a);
        }
        cr_assert_eq(x.seen, BULK_COUNT / BULK_QUEUES);
        total += x.seen;
    }
    cr_assert_eq(total, BULK_COUNT);
    if (splice) {
        cr_assert_gt(runtime_value(0, "pullSplices"), 3000, "pulls did not go through splice");
    } else {
        cr_assert_eq(runtime_value(0, "pullSplices"), 0);
    }
    bulk_free();
    clients_down();
    daemon_stop_ok_at(&B);
}

Test(broker, hundred_thousand_messages_sent_and_pulled_back_exactly_once_in_order)
{
    bulk_round_trip(NULL, false);          /* pulls sent from the mapped segments */
}

Test(broker, the_same_through_the_splice_path)
{
    static const char *const splice[] = {"--pullSpliceMinBytes=1", NULL};

    bulk_round_trip(splice, true);        /* every pull file -> pipe -> socket */
}

/* ---- tag filtering ---------------------------------------------------------------------------- */

static void
only_tag_b(const struct rmq_record *r, void *arg)
{
    (void)arg;
    cr_assert(prop_is(r, "TAGS", "B"), "a record whose tag the subscription excludes");
}

Test(broker, tag_filtering_is_done_by_the_broker)
{
    struct answer a;
    char props[64];
    uint32_t got = 0;
    struct pull_req p = {"CG_TAG", "TagTopic", 0, 0, 32, 4, 0, "B || C"};

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "TagTopic", 1);
    for (int i = 0; i < 100; i++) {
        snprintf(props, sizeof(props), "TAGS%c%s%c", 1, i % 4 == 0 ? "B" : "A", 2);
        send_one(0, "TagTopic", 0, props, "x", &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        answer_free(&a);
    }
    while (p.offset < 100) {
        pull(1, &p, &a);
        cr_assert(a.code == RMQ_RESP_SUCCESS || a.code == RMQ_RESP_PULL_RETRY_IMMEDIATELY,
                  "pull: %d %s", a.code, a.remark);
        got += each_record(&a, only_tag_b, NULL);
        p.offset = ext_i64(&a, "nextBeginOffset");
        answer_free(&a);
    }
    cr_assert_eq(got, 25, "the broker sent %u tag-B records, 25 were stored", got);
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- long polling --------------------------------------------------------------------------- */

Test(broker, a_parked_pull_wakes_on_a_send_and_times_out_when_nothing_comes)
{
    struct answer pa, sa;
    struct rmq_header h;
    struct pull_req p = {"CG_LP", "LpTopic", 0, 0, 32, 2 | 4, 800, "*"};
    uint64_t t0, woke;

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "LpTopic", 1);
    /* nothing there: held for its suspend time, then PULL_NOT_FOUND */
    t0 = rmq_clock_mono_ns();
    pull(1, &p, &pa);
    woke = rmq_clock_mono_ns() - t0;
    cr_assert_eq(pa.code, RMQ_RESP_PULL_NOT_FOUND);
    cr_assert_geq(woke, 700ull * 1000000u, "answered after %llu ms, before its hold time",
                  (unsigned long long)(woke / 1000000));
    answer_free(&pa);

    /* a send wakes a parked pull long before its 20 s hold */
    p.suspend_ms = 20000;
    pull_header(&h, &p);
    memset(&pa, 0, sizeof(pa));
    pa.call.done = answer_done;
    cr_assert_eq(rmq_client_call(&C.cl[1], &pa.call, &h, NULL, 0, 30000), 0);
    for (int i = 0; i < 20; i++) {
        rmq_loop_run_once(&C.loop, 10 * 1000000u);     /* let it park */
    }
    cr_assert_not(pa.done, "the pull was answered although the queue is empty");
    send_one(0, "LpTopic", 0, "", "wake", &sa);
    cr_assert_eq(sa.code, RMQ_RESP_SUCCESS);
    t0 = rmq_clock_mono_ns();
    cr_assert(run_until(answered, &pa, 5000), "the parked pull did not wake on the send");
    woke = rmq_clock_mono_ns() - t0;
    cr_assert_eq(pa.code, RMQ_RESP_SUCCESS);
    cr_assert_eq(ext_i64(&pa, "nextBeginOffset"), 1);
    cr_log_info("parked pull answered %llu us after the send's response",
                (unsigned long long)(woke / 1000));
    answer_free(&pa);
    answer_free(&sa);
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- offsets and restarts ------------------------------------------------------------------- */

/* UPDATE_CONSUMER_OFFSET: the answer's code */
static int
commit_code(int ci, const char *group, const char *topic, int q, int64_t off)
{
    struct rmq_header h;
    struct answer a;
    int code;

    rmq_header_init(&h, RMQ_REQ_UPDATE_CONSUMER_OFFSET, RMQ_SER_JSON);
    rmq_header_add(&h, "consumerGroup", group);
    rmq_header_add(&h, "topic", topic);
    rmq_header_add_i64(&h, "queueId", q);
    rmq_header_add_i64(&h, "commitOffset", off);
    call(ci, &h, NULL, &a);
    code = a.code;
    answer_free(&a);
    return code;
}

static void
commit(int ci, const char *group, const char *topic, int q, int64_t off)
{
    cr_assert_eq(commit_code(ci, group, topic, q, off), RMQ_RESP_SUCCESS);
}

static int64_t
query(int ci, const char *group, const char *topic, int q, int *code)
{
    struct rmq_header h;
    struct answer a;
    int64_t v = -1;

    rmq_header_init(&h, RMQ_REQ_QUERY_CONSUMER_OFFSET, RMQ_SER_JSON);
    rmq_header_add(&h, "consumerGroup", group);
    rmq_header_add(&h, "topic", topic);
    rmq_header_add_i64(&h, "queueId", q);
    call(ci, &h, NULL, &a);
    *code = a.code;
    if (a.code == RMQ_RESP_SUCCESS) {
        v = ext_i64(&a, "offset");
    }
    answer_free(&a);
    return v;
}

/* The open files limit a broker finds (soft, often 1024) is raised to the hard one: one
 * descriptor stays open per consume queue file. */
/* A pull with the commit flag carries commitOffset (required): without it the request is
 * refused and the stored offset stays (it was overwritten with -1). Commits to a topic
 * or queue that does not exist are refused: no client can grow the offset table. */
Test(broker, offset_commits_need_a_value_and_a_queue_that_exists)
{
    struct rmq_header h;
    struct answer a;
    int code;

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "CommitTopic", 2);
    commit(0, "CG_C", "CommitTopic", 0, 5);
    rmq_header_init(&h, RMQ_REQ_PULL_MESSAGE, RMQ_SER_JSON);
    rmq_header_add(&h, "consumerGroup", "CG_C");
    rmq_header_add(&h, "topic", "CommitTopic");
    rmq_header_add_i64(&h, "queueId", 0);
    rmq_header_add_i64(&h, "queueOffset", 0);
    rmq_header_add_i64(&h, "maxMsgNums", 32);
    rmq_header_add_i64(&h, "sysFlag", 1 | 4);      /* commit, subscription; no commitOffset */
    rmq_header_add_i64(&h, "suspendTimeoutMillis", 0);
    rmq_header_add(&h, "subscription", "*");
    rmq_header_add_i64(&h, "subVersion", 0);
    call(0, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR, "code %d %s", a.code, a.remark);
    cr_assert(strstr(a.remark, "commitOffset") != NULL, "%s", a.remark);
    answer_free(&a);
    cr_assert_eq(query(0, "CG_C", "CommitTopic", 0, &code), 5, "the stored offset changed");
    cr_assert_eq(commit_code(0, "CG_C", "NoSuchTopic", 0, 1), RMQ_RESP_TOPIC_NOT_EXIST);
    cr_assert_eq(commit_code(0, "CG_C", "CommitTopic", 16383, 1), RMQ_RESP_SYSTEM_ERROR);
    cr_assert_eq(commit_code(0, "CG_C", "CommitTopic", -1, 1), RMQ_RESP_SYSTEM_ERROR);
    cr_assert_eq(commit_code(0, "CG_C", "CommitTopic", 1, 7), RMQ_RESP_SUCCESS);
    clients_down();
    daemon_stop_ok_at(&B);
}

/* A new group on a queue that still starts at 0 is told to start there only while that
 * first message is in the hot-data window (REMOTING.md §12.8); else QUERY_NOT_FOUND and
 * its own policy decides, instead of replaying a backlog from disk. */
Test(broker, a_new_group_starts_at_0_only_while_the_first_message_is_in_memory)
{
    static const char *const cold[] = {"--accessMessageInMemoryMaxRatio=0", NULL};
    struct pull_req p = {"CG_HOT", "HotTopic", 0, 0, 32, 4, 0, NULL};
    struct answer a;
    int code;

    broker_start(cold);
    clients_to_broker();
    create_topic(0, "HotTopic", 2);
    send_one(0, "HotTopic", 0, "", "m", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    answer_free(&a);
    for (int i = 0; i < 100; i++) {         /* until the message is visible */
        pull(0, &p, &a);
        code = a.code;
        answer_free(&a);
        if (code == RMQ_RESP_SUCCESS) {
            break;
        }
        usleep(20000);
    }
    cr_assert_eq(code, RMQ_RESP_SUCCESS);
    query(0, "CG_NEW", "HotTopic", 0, &code);
    cr_assert_eq(code, RMQ_RESP_QUERY_NOT_FOUND, "a window of 0: the first message is on disk");
    cr_assert_eq(query(0, "CG_NEW", "HotTopic", 1, &code), 0, "an empty queue starts at 0");
    cr_assert_eq(code, RMQ_RESP_SUCCESS);
    clients_down();
    daemon_stop_ok_at(&B);
    broker_start(NULL);                     /* the default window: 40 % of RAM */
    clients_to_broker();
    cr_assert_eq(query(0, "CG_NEW", "HotTopic", 0, &code), 0);
    cr_assert_eq(code, RMQ_RESP_SUCCESS);
    clients_down();
    daemon_stop_ok_at(&B);
}

Test(broker, raises_its_open_files_limit_to_the_hard_one)
{
    struct rlimit mine, low;
    char path[64], line[256];
    unsigned long long soft = 0, hard = 0;
    FILE *f;

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &mine), 0);
    if (mine.rlim_max <= 512) {
        cr_skip_test("hard limit %llu: nothing to raise", (unsigned long long)mine.rlim_max);
    }
    low = mine;
    low.rlim_cur = 512;                     /* what the broker inherits */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    broker_start(NULL);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &mine), 0);
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)B.pid);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Max open files", 14) == 0) {
            cr_assert_eq(sscanf(line + 14, "%llu %llu", &soft, &hard), 2, "%s", line);
        }
    }
    fclose(f);
    cr_assert_eq(soft, (unsigned long long)mine.rlim_max, "soft %llu, hard %llu", soft, hard);
    daemon_stop_ok_at(&B);
}

Test(broker, offsets_and_messages_survive_a_graceful_restart)
{
    struct answer a;
    char path[256];
    int code;

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "OffTopic", 2);
    for (int i = 0; i < 10; i++) {
        send_one(0, "OffTopic", i % 2, "", "m", &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        answer_free(&a);
    }
    commit(0, "CG_OFF", "OffTopic", 0, 3);
    commit(0, "CG_OFF", "OffTopic", 1, -1);     /* ali-ons commits -1: stored verbatim */
    clients_down();
    daemon_stop_ok_at(&B);
    snprintf(path, sizeof(path), "%s/data/abort", B.dir);
    cr_assert_neq(access(path, F_OK), 0, "a graceful stop leaves no abort file");

    broker_start(NULL);
    clients_to_broker();
    cr_assert_eq(query(0, "CG_OFF", "OffTopic", 0, &code), 3);
    /* a stored negative reads as nothing stored: the queue starts at 0, so offset 0 */
    cr_assert_eq(query(0, "CG_OFF", "OffTopic", 1, &code), 0);
    {
        struct pull_req p = {"CG_OFF", "OffTopic", 0, 3, 32, 4, 0, "*"};

        pull(1, &p, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        cr_assert_eq(ext_i64(&a, "nextBeginOffset"), 5);
        cr_assert_eq(ext_i64(&a, "maxOffset"), 5);
        answer_free(&a);
    }
    clients_down();
    daemon_stop_ok_at(&B);
}

static void
record_body_seq(const struct rmq_record *r, void *arg)
{
    uint8_t *seen = arg;
    unsigned long long seq;

    cr_assert_eq(sscanf((const char *)r->body, "body-%llu", &seq), 1);
    cr_assert_lt(seq, BULK_COUNT);
    seen[seq] = 1;
}

Test(broker, kill_9_under_sync_flush_loses_no_acknowledged_message)
{
    static const char *const sync[] = {"--flushDiskType=SYNC_FLUSH", NULL};
    uint8_t *seen = calloc(BULK_COUNT, 1);
    uint64_t lost = 0;
    uint64_t seq;
    struct answer a;

    broker_start(sync);
    clients_to_broker();
    create_topic(0, "CrashTopic", BULK_QUEUES);
    bulk_reset();
    /* keep sending; kill -9 while sends are in flight */
    for (seq = 0; seq < 5000; seq++) {
        bulk_issue(0, "CrashTopic", seq);
    }
    cr_assert_eq(daemon_signal_wait(&B, SIGKILL), 128 + SIGKILL);
    /* every call still pending fails with the connection: those were never acknowledged */
    for (int i = 0; i < 200 && K.inflight > 0; i++) {
        rmq_loop_run_once(&C.loop, 10 * 1000000u);
    }
    clients_down();
    cr_assert_gt(K.acked, 0);
    {
        const char *const again[] = {"--flushDiskType=SYNC_FLUSH", NULL};

        broker_start(again);
    }
    clients_to_broker();
    for (int q = 0; q < BULK_QUEUES; q++) {
        struct pull_req p = {"CG_CRASH", "CrashTopic", q, 0, 32, 4, 0, "*"};

        for (;;) {
            pull(1, &p, &a);
            if (a.code != RMQ_RESP_SUCCESS) {
                answer_free(&a);
                break;
            }
            each_record(&a, record_body_seq, seen);
            p.offset = ext_i64(&a, "nextBeginOffset");
            answer_free(&a);
        }
    }
    for (uint64_t s = 0; s <= seq; s++) {
        if (K.ids[s][0] != '\0' && !seen[s]) {
            lost++;
        }
    }
    cr_assert_eq(lost, 0, "%llu acknowledged messages lost of %llu acknowledged",
                 (unsigned long long)lost, (unsigned long long)K.acked);
    cr_log_info("kill -9 after %llu sends: %llu acknowledged, all found after restart",
                (unsigned long long)seq, (unsigned long long)K.acked);
    free(seen);
    bulk_free();
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- recorded ali-ons frames -------------------------------------------------------------------- */

static int
tcp_connect(uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 20};

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Read one whole frame from fd into a malloc'd buffer; its length in *len. */
static uint8_t *
read_frame(int fd, size_t *len)
{
    uint8_t pre[4];
    uint8_t *buf;
    uint32_t n;
    size_t got = 0;

    cr_assert_eq(recv(fd, pre, 4, MSG_WAITALL), 4, "no response frame");
    n = rmq_get_be32(pre);
    cr_assert_lt(n, 64u << 20);
    buf = malloc(4 + n);
    memcpy(buf, pre, 4);
    while (got < n) {
        ssize_t r = recv(fd, buf + 4 + got, n - got, 0);

        cr_assert_gt(r, 0);
        got += (size_t)r;
    }
    *len = 4 + n;
    return buf;
}

/* Which response fields ali-ons reads, per request code. */
static const char *const *
fields_read(int code)
{
    static const char *const send[] = {"msgId", "queueId", "queueOffset", NULL};
    static const char *const pull_f[] = {"nextBeginOffset", "minOffset", "maxOffset",
                                         "suggestWhichBrokerId", NULL};
    static const char *const off[] = {"offset", NULL};
    static const char *const none[] = {NULL};

    switch (code) {
    case RMQ_REQ_SEND_MESSAGE_V2:
        return send;
    case RMQ_REQ_PULL_MESSAGE:
        return pull_f;
    case RMQ_REQ_GET_MAX_OFFSET:
        return off;
    default:
        return none;
    }
}

Test(broker, every_recorded_alions_frame_gets_a_well_formed_answer)
{
    size_t count;
    char **names = rmq_test_list_vectors("alions-req-", &count);
    int bfd, nfd;

    /* the recorded pulls ask for a 15 s hold; a short poll keeps the test short */
    static const char *const short_poll[] = {"--longPollingEnable=false",
                                             "--shortPollingTimeMills=50", NULL};

    cr_assert_gt(count, 10);
    broker_start(short_poll);
    bfd = tcp_connect(B.port);
    nfd = tcp_connect(ns_port);
    /* the recorded pulls and offsets name TopicTest: make it exist, as ali-ons's producer would */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < count; i++) {
            uint8_t *req, *resp;
            size_t len, rlen;
            struct rmq_frame f, rf;
            int code;
            bool to_ns;

            cr_assert_eq(rmq_test_load_hex(names[i], &req, &len), 0);
            code = atoi(names[i] + strlen("alions-req-"));
            /* sends and the heartbeat first (pass 0), as ali-ons does: pulls then see a topic
             * with messages and the retry topic its consumer's heartbeat created */
            if ((code == RMQ_REQ_SEND_MESSAGE_V2 || code == RMQ_REQ_HEART_BEAT) != (pass == 0)) {
                free(req);
                continue;
            }
            to_ns = code == RMQ_REQ_GET_ROUTEINFO_BY_TOPIC;
            cr_assert_gt(rmq_frame_decode(req, len, NULL, &f), 0);
            {
                int32_t opaque = f.h.opaque;

                free(req);
                cr_assert_eq(rmq_test_load_hex(names[i], &req, &len), 0);
                cr_assert_eq(send(to_ns ? nfd : bfd, req, len, 0), (ssize_t)len);
                resp = read_frame(to_ns ? nfd : bfd, &rlen);
                cr_assert_eq(rmq_frame_decode(resp, rlen, NULL, &rf), (ssize_t)rlen, "%s", names[i]);
                if (!rmq_header_is_response(&rf.h)) {
                    /* a heartbeat that adds a group member is told NOTIFY_CONSUMER_IDS_CHANGED
                     * first (oneway); the answer follows */
                    cr_assert_eq(rf.h.code, RMQ_REQ_NOTIFY_CONSUMER_IDS_CHANGED, "%s", names[i]);
                    cr_assert(rmq_header_is_oneway(&rf.h));
                    free(resp);
                    resp = read_frame(to_ns ? nfd : bfd, &rlen);
                    cr_assert_eq(rmq_frame_decode(resp, rlen, NULL, &rf), (ssize_t)rlen);
                }
                cr_assert(rmq_header_is_response(&rf.h), "%s", names[i]);
                cr_assert_eq(rf.h.opaque, opaque, "%s", names[i]);
                cr_assert_eq(rf.h.serialize, RMQ_SER_JSON, "%s: answered in the request's form",
                             names[i]);
            }
            cr_assert(rf.h.code == RMQ_RESP_SUCCESS || rf.h.code == RMQ_RESP_PULL_NOT_FOUND ||
                      rf.h.code == RMQ_RESP_PULL_OFFSET_MOVED ||
                      rf.h.code == RMQ_RESP_QUERY_NOT_FOUND,
                      "%s answered %d: %.*s", names[i], rf.h.code, (int)rf.h.remark.len,
                      rf.h.remark.ptr);
            if (code == RMQ_REQ_CONSUMER_SEND_MSG_BACK) {
                /* the recorded send-back names offset 0: the first message sent above */
                cr_assert_eq(rf.h.code, RMQ_RESP_SUCCESS, "%s", names[i]);
            }
            if (rf.h.code == RMQ_RESP_SUCCESS || code == RMQ_REQ_PULL_MESSAGE) {
                for (const char *const *k = fields_read(code); *k != NULL; k++) {
                    struct rmq_str v;

                    cr_assert(rmq_header_get(&rf.h, *k, &v), "%s: no %s in the answer", names[i],
                              *k);
                }
            }
            free(req);
            free(resp);
        }
    }
    close(bfd);
    close(nfd);
    rmq_test_free_list(names, count);
    daemon_stop_ok_at(&B);
}

/* ---- bad input ------------------------------------------------------------------------------- */

static long
rss_kib(pid_t pid)
{
    char path[64];
    char line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = atol(line + 6);
        }
    }
    fclose(f);
    return kib;
}

Test(broker, bad_input_gets_clear_errors_and_everyone_else_is_still_served)
{
    static const char *const small[] = {"--maxMessageSize=65536", NULL};
    struct answer a;
    struct rmq_header h;
    int idle[1000];
    int lazy;
    long rss0, rss1;
    char *big = malloc(70000);
    struct pull_req p = {"CG_BAD", "BadTopic", 0, 0, 32, 4, 0, "*"};

    broker_start(small);
    clients_to_broker();
    create_topic(0, "BadTopic", 2);
    rss0 = rss_kib(B.pid);

    /* unknown code: an answer, the connection stays */
    rmq_header_init(&h, 4321, RMQ_SER_ROCKETMQ);
    call(0, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_REQUEST_CODE_NOT_SUPPORTED);
    answer_free(&a);
    /* oversized body: refused with size and limit */
    memset(big, 'x', 69999);
    big[69999] = '\0';
    send_one(0, "BadTopic", 0, "", big, &a);
    cr_assert_eq(a.code, RMQ_RESP_MESSAGE_ILLEGAL);
    cr_assert(strstr(a.remark, "69999") != NULL && strstr(a.remark, "65536") != NULL, "%s",
              a.remark);
    answer_free(&a);
    /* bad queue id, unknown topic with auto-creation's template refused, bad names */
    send_one(0, "BadTopic", 7, "", "x", &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
    cr_assert(strstr(a.remark, "queueId[7]") != NULL, "%s", a.remark);
    answer_free(&a);
    send_one(0, "bad topic!", 0, "", "x", &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
    answer_free(&a);
    send_one(0, "SCHEDULE_TOPIC_XXXX", 0, "", "x", &a);
    cr_assert_eq(a.code, RMQ_RESP_NO_PERMISSION);
    answer_free(&a);
    /* pulls for unknown topics, queues and offsets */
    p.topic = "NoSuchTopic";
    pull(0, &p, &a);
    cr_assert_eq(a.code, RMQ_RESP_TOPIC_NOT_EXIST);
    answer_free(&a);
    p.topic = "BadTopic";
    p.queue = 9;
    pull(0, &p, &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
    answer_free(&a);
    p.queue = 0;
    send_one(0, "BadTopic", 0, "", "x", &a);
    answer_free(&a);
    p.offset = 1000;
    /* an acknowledged message becomes readable once its queue entry is written (a new
     * queue's first file is made through the ring): allow that moment */
    for (int i = 0; i < 200; i++) {
        pull(0, &p, &a);
        if (strcmp(a.remark, "NO_MESSAGE_IN_QUEUE") != 0) {
            break;
        }
        answer_free(&a);
        usleep(10000);
    }
    cr_assert_eq(a.code, RMQ_RESP_PULL_OFFSET_MOVED);
    cr_assert_eq(ext_i64(&a, "nextBeginOffset"), 1, "nextBeginOffset %lld remark %s",
                 (long long)ext_i64(&a, "nextBeginOffset"), a.remark);
    answer_free(&a);

    /* 1,000 idle connections and one that sends pulls and never reads */
    for (int i = 0; i < 1000; i++) {
        idle[i] = tcp_connect(B.port);
    }
    lazy = tcp_connect(B.port);
    {
        uint8_t frame[4096];
        ssize_t n;
        int rcv = 4096;

        setsockopt(lazy, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
        p.offset = 0;
        p.max = 32;
        pull_header(&h, &p);
        n = rmq_frame_encode_head(&h, 0, frame, sizeof(frame));
        cr_assert_gt(n, 0);
        for (int i = 0; i < 20000; i++) {
            struct pollfd pfd = {.fd = lazy, .events = POLLOUT};

            if (poll(&pfd, 1, 50) <= 0) {
                break;              /* the broker stopped reading us: backpressure */
            }
            if (send(lazy, frame, (size_t)n, MSG_DONTWAIT) < 0) {
                break;
            }
        }
    }
    /* garbage on another connection: that connection is closed, nobody else notices */
    {
        int g = tcp_connect(B.port);
        uint8_t junk[64];
        char c;

        memset(junk, 0xff, sizeof(junk));
        cr_assert_eq(send(g, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
        cr_assert_leq(recv(g, &c, 1, 0), 0, "a garbage frame must close its connection");
        close(g);
    }
    send_one(1, "BadTopic", 1, "", "still served", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    answer_free(&a);
    rss1 = rss_kib(B.pid);
    cr_log_info("broker RSS %ld KiB -> %ld KiB with 1,001 extra connections", rss0, rss1);
    cr_assert_lt(rss1 - rss0, 128 * 1024, "memory grew by %ld KiB", rss1 - rss0);
    for (int i = 0; i < 1000; i++) {
        close(idle[i]);
    }
    close(lazy);
    free(big);
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- the command line -------------------------------------------------------------------- */

Test(broker, help_lists_keys_and_bad_arguments_are_refused)
{
    char bin[PATH_MAX];
    char cmd[PATH_MAX + 64];

    daemon_path("rmq-broker", bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "%s --help | grep -q namesrvListenPort", bin);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s --noSuchKey=1 2>/dev/null", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof(cmd), "%s --brokerName='a b' 2>/dev/null", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
}

/* ---- batches ------------------------------------------------------------------------------- */

/* Append one batch entry (spec/STORE.md §10) to out at *n. */
static void
batch_entry(uint8_t *out, size_t *n, const char *body, const char *props)
{
    uint32_t bl = (uint32_t)strlen(body);
    uint16_t pl = (uint16_t)strlen(props);

    rmq_put_be32(out + *n, 20 + bl + 2 + pl);
    rmq_put_be32(out + *n + 4, 0);
    rmq_put_be32(out + *n + 8, 0);
    rmq_put_be32(out + *n + 12, 7);         /* flag */
    rmq_put_be32(out + *n + 16, bl);
    memcpy(out + *n + 20, body, bl);
    rmq_put_be16(out + *n + 20 + bl, pl);
    memcpy(out + *n + 22 + bl, props, pl);
    *n += 22 + bl + pl;
}

struct batch_check {
    int n;
    char ids[8][33];
};

static void
check_batch_record(const struct rmq_record *r, void *arg)
{
    struct batch_check *x = arg;
    char want[32];
    char id[33];

    snprintf(want, sizeof(want), "batch-%d", x->n % 3);
    cr_assert_eq(r->body_len, strlen(want));
    cr_assert_eq(memcmp(r->body, want, r->body_len), 0);
    cr_assert_eq(r->flag, 7);
    cr_assert(prop_is(r, "CLUSTER", "DefaultCluster"), "batch entries carry CLUSTER");
    cr_assert(prop_is(r, "WHO", "batch"), "batch-level properties are appended");
    if (x->n % 3 == 1) {
        cr_assert(prop_is(r, "KEYS", "k1"), "the entry's own properties come first");
    }
    rmq_msg_offset_id(id, r->store_ip, r->store_port, r->phys_off);
    cr_assert_str_eq(id, x->ids[x->n]);
    x->n++;
}

Test(broker, batches_become_one_record_per_message_by_either_code)
{
    uint8_t body[512];
    size_t n = 0;
    struct rmq_header h;
    struct answer a;
    struct batch_check x = {0};
    char props[32];
    char entry_props[32];
    struct pull_req p = {"CG_BATCH", "BatchTopic", 0, 0, 32, 4, 0, "*"};

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "BatchTopic", 1);
    snprintf(props, sizeof(props), "WHO%cbatch%c", 1, 2);
    snprintf(entry_props, sizeof(entry_props), "KEYS%ck1", 1);
    batch_entry(body, &n, "batch-0", "");
    batch_entry(body, &n, "batch-1", entry_props);
    batch_entry(body, &n, "batch-2", "");
    for (int code = 0; code < 2; code++) {
        send_header(&h, RMQ_SER_JSON, "BatchTopic", 0, props);
        if (code == 0) {
            h.code = RMQ_REQ_SEND_BATCH_MESSAGE;
        } else {
            rmq_header_add(&h, "m", "true");    /* the cpp client's form: 310 + m=true */
        }
        call_n(0, &h, body, (uint32_t)n, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        cr_assert_eq(ext_i64(&a, "queueOffset"), code * 3);
        {
            const char *ids = answer_ext(&a, "msgId");

            cr_assert_not_null(ids);
            cr_assert_eq(strlen(ids), 3 * 33 - 1, "three comma-joined ids: %s", ids);
            for (int i = 0; i < 3; i++) {
                memcpy(x.ids[code * 3 + i], ids + i * 33, 32);
                x.ids[code * 3 + i][32] = '\0';
            }
        }
        answer_free(&a);
    }
    /* a malformed batch is refused whole */
    body[0] ^= 0x40;
    send_header(&h, RMQ_SER_JSON, "BatchTopic", 0, props);
    h.code = RMQ_REQ_SEND_BATCH_MESSAGE;
    call_n(0, &h, body, (uint32_t)n, &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
    cr_assert(strstr(a.remark, "batch") != NULL, "%s", a.remark);
    answer_free(&a);
    for (int i = 0; i < 200 && x.n < 6; i++) {
        pull(1, &p, &a);
        if (a.code == RMQ_RESP_SUCCESS) {
            each_record(&a, check_batch_record, &x);
            p.offset = ext_i64(&a, "nextBeginOffset");
        } else {
            usleep(10000);
        }
        answer_free(&a);
    }
    cr_assert_eq(x.n, 6);
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- groups, notifications, locks ------------------------------------------------------------ */

static void
heartbeat(int ci, const char *client_id, const char *group, struct answer *a)
{
    struct rmq_header h;
    char body[1024];

    snprintf(body, sizeof(body),
             "{\"clientID\":\"%s\",\"consumerDataSet\":[{\"groupName\":\"%s\","
             "\"consumeType\":\"CONSUME_PASSIVELY\",\"messageModel\":1,"
             "\"consumeFromWhere\":\"CONSUME_FROM_LAST_OFFSET\",\"subscriptionDataSet\":"
             "[{\"topic\":\"GrpTopic\",\"subString\":\"A || B\",\"subVersion\":\"17\"}]}],"
             "\"producerDataSet\":[{\"groupName\":\"PG_GRP\"}]}", client_id, group);
    rmq_header_init(&h, RMQ_REQ_HEART_BEAT, RMQ_SER_JSON);
    call(ci, &h, body, a);
}

static int notified[MAX_CLIENTS];

static void
on_server_request(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                  void *ctx)
{
    struct rmq_str g;

    (void)c;
    (void)ref;
    cr_assert_eq(req->h.code, RMQ_REQ_NOTIFY_CONSUMER_IDS_CHANGED);
    cr_assert(rmq_header_get(&req->h, "consumerGroup", &g) && rmq_str_eq(g, "CG_GRP"));
    notified[(intptr_t)ctx]++;
}

static bool
consumer_list_is(int ci, const char *want)
{
    struct rmq_header h;
    struct answer a;
    bool ok;

    rmq_header_init(&h, RMQ_REQ_GET_CONSUMER_LIST_BY_GROUP, RMQ_SER_JSON);
    rmq_header_add(&h, "consumerGroup", "CG_GRP");
    call(ci, &h, NULL, &a);
    ok = want == NULL ? a.code == RMQ_RESP_SYSTEM_ERROR
                      : a.code == RMQ_RESP_SUCCESS && strcmp(a.body, want) == 0;
    if (!ok) {
        cr_log_info("consumer list: %d %s %s", a.code, a.remark, a.body ? a.body : "");
    }
    answer_free(&a);
    return ok;
}

static const char *
lock_body(const char *client, int q, char *out, size_t cap)
{
    snprintf(out, cap, "{\"consumerGroup\":\"CG_GRP\",\"clientId\":\"%s\",\"mqSet\":"
             "[{\"topic\":\"GrpTopic\",\"brokerName\":\"broker-a\",\"queueId\":%d}]}", client, q);
    return out;
}

static bool
lock(int ci, const char *client, int q)
{
    struct rmq_header h;
    struct answer a;
    char body[512];
    bool got;

    rmq_header_init(&h, RMQ_REQ_LOCK_BATCH_MQ, RMQ_SER_JSON);
    call(ci, &h, lock_body(client, q, body, sizeof(body)), &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    got = strstr(a.body, "\"queueId\":") != NULL;
    answer_free(&a);
    return got;
}

static bool
idle_closed(void *arg)
{
    (void)arg;
    return !rmq_client_is_connected(&C.cl[1]);
}

/* A connection that never sends anything (no heartbeat either) is closed once idle for
 * clientChannelMaxIdleTimeSeconds: silent sockets cannot hold the broker's connection
 * slots and send buffers. */
/* Peers that send requests but never read the answers: each may queue up to its limit
 * in the loop's shared send pool, and two dozen of them used to empty it, which paused
 * every connection. Now they are closed as the pool runs low, and others are served. */
Test(broker, clients_that_never_read_their_answers_cannot_stall_the_others, .timeout = 120)
{
    enum { HOGS = 24, REQS = 8000 };
    static uint8_t reqs[REQS * 256];
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int hogs[HOGS];
    size_t len = 0;
    size_t got_len;
    uint8_t *resp;
    int small = 4096;
    int fd;

    broker_start(NULL);
    for (int i = 0; i < REQS; i++) {
        struct rmq_header h;
        ssize_t n;

        rmq_header_init(&h, RMQ_REQ_GET_BROKER_RUNTIME_INFO, RMQ_SER_JSON);
        h.opaque = i;
        n = rmq_frame_encode_head(&h, 0, reqs + len, sizeof(reqs) - len);
        cr_assert_gt(n, 0);
        len += (size_t)n;
    }
    sa.sin_port = htons(B.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int k = 0; k < HOGS; k++) {
        size_t off = 0;

        hogs[k] = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(hogs[k], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        cr_assert_eq(connect(hogs[k], (struct sockaddr *)&sa, sizeof(sa)), 0);
        while (off < len) {                 /* as much as the socket takes; never read */
            ssize_t n = send(hogs[k], reqs + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

            if (n <= 0) {
                break;
            }
            off += (size_t)n;
        }
    }
    usleep(500000);
    fd = tcp_connect(B.port);               /* answers within 20 s or recv fails */
    {
        struct rmq_header h;
        uint8_t frame[128];
        ssize_t n;

        rmq_header_init(&h, RMQ_REQ_GET_BROKER_RUNTIME_INFO, RMQ_SER_JSON);
        h.opaque = 424242;
        n = rmq_frame_encode_head(&h, 0, frame, sizeof(frame));
        cr_assert_gt(n, 0);
        cr_assert_eq(send(fd, frame, (size_t)n, MSG_NOSIGNAL), n);
    }
    resp = read_frame(fd, &got_len);
    cr_assert_gt(got_len, 8);
    free(resp);
    close(fd);
    for (int k = 0; k < HOGS; k++) {
        close(hogs[k]);
    }
    daemon_stop_ok_at(&B);
}

Test(broker, a_connection_that_says_nothing_is_closed_when_idle)
{
    static const char *const idle[] = {"--clientChannelMaxIdleTimeSeconds=2", NULL};
    uint64_t t0;
    char byte;
    ssize_t got;
    int fd;

    broker_start(idle);
    fd = tcp_connect(B.port);               /* its receive times out after 20 s */
    t0 = rmq_clock_mono_ns();
    got = recv(fd, &byte, 1, 0);
    cr_assert_eq(got, 0, "still open after %llu ms",
                 (unsigned long long)((rmq_clock_mono_ns() - t0) / 1000000));
    close(fd);
    daemon_stop_ok_at(&B);
}

Test(broker, heartbeats_form_groups_members_are_notified_locks_follow_their_holder)
{
    static const char *const idle[] = {"--clientChannelMaxIdleTimeSeconds=2", NULL};
    struct answer a;
    struct pull_req p = {"CG_GRP", "GrpTopic", 0, 0, 32, 2 /* no SUBSCRIPTION flag */, 0, NULL};

    broker_start(idle);
    clients_to_broker();
    C.cl[0].on_request = on_server_request;
    C.cl[0].on_request_ctx = (void *)0;
    C.cl[1].on_request = on_server_request;
    C.cl[1].on_request_ctx = (void *)1;
    create_topic(0, "GrpTopic", 2);
    /* before any heartbeat the group's subscription is unknown */
    pull(0, &p, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUBSCRIPTION_NOT_EXIST, "%d %s", a.code, a.remark);
    answer_free(&a);
    heartbeat(0, "10.0.0.1@one", "CG_GRP", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    answer_free(&a);
    /* the retry topic exists now; the registered subscription filters pulls */
    pull(0, &p, &a);
    cr_assert_eq(a.code, RMQ_RESP_PULL_NOT_FOUND, "%d %s", a.code, a.remark);
    answer_free(&a);
    p.topic = "%RETRY%CG_GRP";
    p.sysflag = 4;
    pull(0, &p, &a);
    cr_assert_eq(a.code, RMQ_RESP_PULL_NOT_FOUND, "retry topic created by the heartbeat: %s",
                 a.remark);
    answer_free(&a);
    heartbeat(1, "10.0.0.2@two", "CG_GRP", &a);
    answer_free(&a);
    cr_assert(consumer_list_is(0, "{\"consumerIdList\":[\"10.0.0.1@one\",\"10.0.0.2@two\"]}") ||
              consumer_list_is(0, "{\"consumerIdList\":[\"10.0.0.2@two\",\"10.0.0.1@one\"]}"));
    for (int i = 0; i < 20; i++) {
        rmq_loop_run_once(&C.loop, 5 * 1000000u);
    }
    cr_assert_geq(notified[0], 2, "the first member is told of itself and of the second");
    cr_assert_geq(notified[1], 1);
    /* an unchanged heartbeat changes nothing: no notification */
    {
        int before = notified[0];

        heartbeat(0, "10.0.0.1@one", "CG_GRP", &a);
        answer_free(&a);
        for (int i = 0; i < 10; i++) {
            rmq_loop_run_once(&C.loop, 5 * 1000000u);
        }
        cr_assert_eq(notified[0], before);
    }
    /* locks: one holder per queue, released when the holder's connection goes */
    cr_assert(lock(0, "10.0.0.1@one", 0));
    cr_assert(lock(0, "10.0.0.1@one", 0), "a holder relocks (refresh)");
    cr_assert_not(lock(1, "10.0.0.2@two", 0), "a live lock is not handed to another client");
    cr_assert(lock(1, "10.0.0.2@two", 1));
    /* client 1 goes silent: after clientChannelMaxIdleTimeSeconds it is closed, its queue
     * lock goes, and the remaining member is told */
    {
        int before = notified[0];
        uint64_t t0 = rmq_clock_mono_ns();

        while (!idle_closed(NULL) && rmq_clock_mono_ns() - t0 < 8000000000ull) {
            heartbeat(0, "10.0.0.1@one", "CG_GRP", &a);     /* client 0 stays alive */
            answer_free(&a);
            for (int i = 0; i < 10; i++) {
                rmq_loop_run_once(&C.loop, 10 * 1000000u);
            }
        }
        cr_assert(idle_closed(NULL), "a silent client was not closed");
        for (int i = 0; i < 20; i++) {
            rmq_loop_run_once(&C.loop, 5 * 1000000u);
        }
        cr_assert_gt(notified[0], before);
    }
    cr_assert(consumer_list_is(0, "{\"consumerIdList\":[\"10.0.0.1@one\"]}"));
    cr_assert(lock(0, "10.0.0.1@one", 1), "the closed client's lock was released");
    /* unregistering the last member empties the group */
    {
        struct rmq_header h;

        rmq_header_init(&h, RMQ_REQ_UNREGISTER_CLIENT, RMQ_SER_JSON);
        rmq_header_add(&h, "clientID", "10.0.0.1@one");
        rmq_header_add(&h, "consumerGroup", "CG_GRP");
        call(0, &h, NULL, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        answer_free(&a);
    }
    cr_assert(consumer_list_is(0, NULL));
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- topics and registration ------------------------------------------------------------------- */

static bool
route_has(int ci, const char *topic, int want_code)
{
    struct rmq_header h;
    struct answer a;
    bool ok;

    rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, RMQ_SER_JSON);
    rmq_header_add(&h, "topic", topic);
    call(ci, &h, NULL, &a);
    ok = a.code == want_code;
    answer_free(&a);
    return ok;
}

Test(broker, topics_are_created_deleted_auto_created_and_registered)
{
    static const char *const no_auto[] = {"--autoCreateTopicEnable=false",
                                          "--registerBrokerInterval=200", NULL};
    struct answer a;
    struct rmq_header h;
    uint64_t t0;

    broker_start(NULL);
    clients_to_broker();
    /* the broker registered with its embedded NameServer: TBW102 routes */
    t0 = rmq_clock_mono_ns();
    while (!route_has(2, "TBW102", RMQ_RESP_SUCCESS) && rmq_clock_mono_ns() - t0 < 5000000000ull) {
        usleep(20000);
    }
    cr_assert(route_has(2, "TBW102", RMQ_RESP_SUCCESS));
    /* a send to an unknown topic creates it from TBW102, and the route follows at once */
    send_one(0, "AutoTopic", -1, "", "x", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    cr_assert_lt(ext_i64(&a, "queueId"), 4, "auto-created with min(d=4, TBW102's 8) queues");
    answer_free(&a);
    t0 = rmq_clock_mono_ns();
    while (!route_has(2, "AutoTopic", RMQ_RESP_SUCCESS) &&
           rmq_clock_mono_ns() - t0 < 5000000000ull) {
        usleep(20000);
    }
    cr_assert(route_has(2, "AutoTopic", RMQ_RESP_SUCCESS));
    /* the topic table, in the reference's wrapper form */
    rmq_header_init(&h, RMQ_REQ_GET_ALL_TOPIC_CONFIG, RMQ_SER_JSON);
    call(0, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    cr_assert(strstr(a.body, "\"AutoTopic\":{") != NULL && strstr(a.body, "dataVersion"), "%s",
              a.body);
    answer_free(&a);
    /* system topics cannot be created or deleted; others can be deleted */
    rmq_header_init(&h, RMQ_REQ_DELETE_TOPIC_IN_BROKER, RMQ_SER_JSON);
    rmq_header_add(&h, "topic", "TBW102");
    call(0, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
    answer_free(&a);
    rmq_header_init(&h, RMQ_REQ_DELETE_TOPIC_IN_BROKER, RMQ_SER_JSON);
    rmq_header_add(&h, "topic", "AutoTopic");
    call(0, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    answer_free(&a);
    /* runtime info names the store's offsets and the ring's counters */
    rmq_header_init(&h, RMQ_REQ_GET_BROKER_RUNTIME_INFO, RMQ_SER_JSON);
    call(0, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    cr_assert(strstr(a.body, "\"commitLogMaxOffset\":\"") && strstr(a.body, "\"ioUringEnters\""),
              "%s", a.body);
    answer_free(&a);
    clients_down();
    daemon_stop_ok_at(&B);

    /* autoCreateTopicEnable=false: unknown topics are refused with a reason */
    broker_start(no_auto);
    clients_to_broker();
    send_one(0, "NotThere", 0, "", "x", &a);
    cr_assert_eq(a.code, RMQ_RESP_TOPIC_NOT_EXIST);
    cr_assert(strstr(a.remark, "NotThere") && strstr(a.remark, "autoCreateTopicEnable"), "%s",
              a.remark);
    answer_free(&a);
    /* AutoTopic was deleted before the restart and stays deleted */
    send_one(0, "AutoTopic", 0, "", "x", &a);
    cr_assert_eq(a.code, RMQ_RESP_TOPIC_NOT_EXIST);
    answer_free(&a);
    clients_down();
    daemon_stop_ok_at(&B);
}

Test(broker, committed_offsets_are_persisted_periodically_and_survive_kill_9)
{
    static const char *const fast[] = {"--flushConsumerOffsetInterval=100", NULL};
    int code;

    broker_start(fast);
    clients_to_broker();
    create_topic(0, "PerTopic", 1);
    commit(0, "CG_PER", "PerTopic", 0, 42);
    usleep(400000);                 /* a few persist intervals */
    clients_down();
    cr_assert_eq(daemon_signal_wait(&B, SIGKILL), 128 + SIGKILL);
    broker_start(fast);
    clients_to_broker();
    cr_assert_eq(query(0, "CG_PER", "PerTopic", 0, &code), 42);
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- delay levels, send-back, dead letters ---------------------------------------------------- */

struct delivered {
    char body[64];
    int64_t reconsume;
    bool has_delay;
    char real_topic[64];
    char retry_topic[64];
    bool has_origin;
    int64_t phys;
};

static void
record_delivered(const struct rmq_record *r, void *arg)
{
    struct delivered *d = arg;
    const char *v;
    size_t vl;

    snprintf(d->body, sizeof(d->body), "%.*s", (int)RMQ_MIN(r->body_len, 63u),
             (const char *)r->body);
    d->reconsume = r->reconsume_times;
    d->has_delay = rmq_props_get(r->props, r->props_len, "DELAY", &v, &vl);
    d->real_topic[0] = d->retry_topic[0] = '\0';
    if (rmq_props_get(r->props, r->props_len, "REAL_TOPIC", &v, &vl)) {
        snprintf(d->real_topic, sizeof(d->real_topic), "%.*s", (int)vl, v);
    }
    if (rmq_props_get(r->props, r->props_len, "RETRY_TOPIC", &v, &vl)) {
        snprintf(d->retry_topic, sizeof(d->retry_topic), "%.*s", (int)vl, v);
    }
    d->has_origin = rmq_props_get(r->props, r->props_len, "ORIGIN_MESSAGE_ID", &v, &vl);
    d->phys = r->phys_off;
}

/* Long-poll (topic, queue) at offset until one record arrives; ms waited. */
static uint64_t
await_one(const char *topic, int q, int64_t offset, struct delivered *d)
{
    struct pull_req p = {"CG_WAIT", topic, q, offset, 1, 2 | 4, 20000, "*"};
    uint64_t t0 = rmq_clock_mono_ns();
    struct answer a;

    for (;;) {
        pull(1, &p, &a);
        if (a.code == RMQ_RESP_SUCCESS) {
            cr_assert_eq(each_record(&a, record_delivered, d), 1);
            answer_free(&a);
            return (rmq_clock_mono_ns() - t0) / 1000000u;
        }
        cr_assert(a.code == RMQ_RESP_PULL_NOT_FOUND, "pull %s: %d %s", topic, a.code, a.remark);
        answer_free(&a);
        cr_assert_lt(rmq_clock_mono_ns() - t0, 60000000000ull, "nothing arrived in %s", topic);
    }
}

Test(broker, delay_levels_deliver_no_earlier_than_their_delay)
{
    struct answer a;
    struct delivered d;
    char props[64];
    uint64_t waited;

    broker_start(NULL);             /* the default levels: 1 is 1 s, 3 is 10 s */
    clients_to_broker();
    create_topic(0, "DelayTopic", 2);
    for (int level = 1; level <= 3; level += 2) {
        int q = level == 1 ? 0 : 1;

        snprintf(props, sizeof(props), "TAGS%cT%cDELAY%c%d%c", 1, 2, 1, level, 2);
        send_one(0, "DelayTopic", q, props, level == 1 ? "one second" : "ten seconds", &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        answer_free(&a);
        waited = await_one("DelayTopic", q, 0, &d);
        cr_log_info("level %d delivered after %llu ms", level, (unsigned long long)waited);
        /* never early; lateness is reported (timing is measured, not asserted tightly) */
        cr_assert_geq(waited, level == 1 ? 990u : 9990u, "level %d arrived after %llu ms", level,
                      (unsigned long long)waited);
        cr_assert_lt(waited, level == 1 ? 3000u : 12000u);
        cr_assert_str_eq(d.body, level == 1 ? "one second" : "ten seconds");
        cr_assert_not(d.has_delay, "a delivered message must not carry DELAY (no second delay)");
        cr_assert_str_eq(d.real_topic, "DelayTopic");
    }
    clients_down();
    daemon_stop_ok_at(&B);
}

static int
count_bodies(const char *topic, int queues, char seen[][16], int max)
{
    int n = 0;

    for (int q = 0; q < queues; q++) {
        struct pull_req p = {"CG_COUNT", topic, q, 0, 32, 4, 0, "*"};
        struct answer a;

        for (;;) {
            struct delivered d;
            uint32_t off;

            pull(1, &p, &a);
            if (a.code != RMQ_RESP_SUCCESS) {
                answer_free(&a);
                break;
            }
            for (off = 0; off < a.body_len;) {
                struct rmq_record r;
                int64_t size = rmq_record_decode((const uint8_t *)a.body + off, a.body_len - off,
                                                 true, &r, NULL);

                cr_assert_gt(size, 0);
                record_delivered(&r, &d);
                cr_assert_lt(n, max);
                snprintf(seen[n++], 16, "%.15s", d.body);
                off += (uint32_t)size;
            }
            p.offset = ext_i64(&a, "nextBeginOffset");
            answer_free(&a);
        }
    }
    return n;
}

Test(broker, a_restart_in_the_middle_of_a_delay_delivers_each_message_once)
{
    static const char *const levels[] = {"--messageDelayLevel=1s 3s", NULL};
    static char seen[200][16];
    struct answer a;
    char props[64];
    char body[16];
    int n;

    broker_start(levels);
    clients_to_broker();
    create_topic(0, "DelayRestart", 1);
    for (int i = 0; i < 40; i++) {
        snprintf(props, sizeof(props), "DELAY%c%d%c", 1, i % 2 ? 2 : 1, 2);
        snprintf(body, sizeof(body), "m%02d", i);
        send_one(0, "DelayRestart", 0, props, body, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        answer_free(&a);
    }
    usleep(1600000);                /* level 1 delivered, level 2 still pending */
    clients_down();
    daemon_stop_ok_at(&B);
    broker_start(levels);
    clients_to_broker();
    usleep(3000000);
    n = count_bodies("DelayRestart", 1, seen, 200);
    cr_assert_eq(n, 40, "%d deliveries of 40 delayed messages", n);
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            cr_assert_str_neq(seen[i], seen[j], "delivered twice: %s", seen[i]);
        }
    }
    clients_down();
    daemon_stop_ok_at(&B);
}

/* Every body "<prefix><i>" for i < n seen exactly once in (topic, queue 0..queues-1). */
static void
assert_each_once(const char *topic, int queues, const char *prefix, int n)
{
    static char seen[8192][16];
    static int counts[8192];
    int got = count_bodies(topic, queues, seen, 8192);
    size_t pl = strlen(prefix);

    cr_assert_leq(n, 8192);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < got; i++) {
        int k = atoi(seen[i] + pl);

        cr_assert(strncmp(seen[i], prefix, pl) == 0 && k >= 0 && k < n, "stray body %s", seen[i]);
        counts[k]++;
    }
    for (int k = 0; k < n; k++) {
        cr_assert_eq(counts[k], 1, "%s%d delivered %d times (%d deliveries of %d messages)",
                     prefix, k, counts[k], got, n);
    }
}

Test(broker, kill_9_in_the_middle_of_a_delay_delivers_each_message_once)
{
    static const char *const saving[] = {"--messageDelayLevel=1s 3s",
                                         "--flushConsumerOffsetInterval=200", NULL};
    /* progress never written while running: only the commitlog can tell what went out */
    static const char *const not_saving[] = {"--messageDelayLevel=1s 3s",
                                             "--flushConsumerOffsetInterval=600000", NULL};
    struct answer a;
    char props[64];
    char body[16];

    broker_start(saving);
    clients_to_broker();
    create_topic(0, "DelayKill", 1);
    for (int i = 0; i < 20; i++) {
        snprintf(props, sizeof(props), "DELAY%c1%c", 1, 2);
        snprintf(body, sizeof(body), "k%d", i);
        send_one(0, "DelayKill", 0, props, body, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        answer_free(&a);
    }
    usleep(1800000);                /* delivered, progress and scanFrom written */
    clients_down();
    cr_assert_eq(daemon_signal_wait(&B, SIGKILL), 128 + SIGKILL);
    broker_start(not_saving);
    clients_to_broker();
    cr_assert_eq(runtime_value(0, "heldMarksRecovered"), 0, "all of them were recorded");
    for (int i = 20; i < 60; i++) {
        snprintf(props, sizeof(props), "DELAY%c%d%c", 1, i % 2 ? 2 : 1, 2);
        snprintf(body, sizeof(body), "k%d", i);
        send_one(0, "DelayKill", 0, props, body, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        answer_free(&a);
    }
    usleep(1600000);                /* level 1 delivered, level 2 (3 s) still waiting */
    clients_down();
    cr_assert_eq(daemon_signal_wait(&B, SIGKILL), 128 + SIGKILL);
    broker_start(not_saving);
    clients_to_broker();
    cr_assert_eq(runtime_value(0, "heldMarksRecovered"), 20,
                 "the 20 level-1 deliveries after the last save are found in the commitlog");
    usleep(3500000);
    assert_each_once("DelayKill", 1, "k", 60);
    clients_down();
    daemon_stop_ok_at(&B);
}

static void
send_back(int ci, int64_t phys, const char *group, int max_reconsume, struct answer *a)
{
    struct rmq_header h;

    rmq_header_init(&h, RMQ_REQ_CONSUMER_SEND_MSG_BACK, RMQ_SER_JSON);
    h.version = 121;
    rmq_header_add_i64(&h, "offset", phys);
    rmq_header_add(&h, "group", group);
    rmq_header_add_i64(&h, "delayLevel", 0);
    rmq_header_add_i64(&h, "maxReconsumeTimes", max_reconsume);
    call(ci, &h, NULL, a);
}

Test(broker, sent_back_messages_return_through_the_retry_topic_then_go_to_the_dlq)
{
    static const char *const levels[] = {"--messageDelayLevel=100ms 100ms 100ms 100ms 100ms 100ms",
                                         NULL};
    struct answer a;
    struct delivered d;
    int64_t phys;

    broker_start(levels);
    clients_to_broker();
    create_topic(0, "BackTopic", 1);
    send_one(0, "BackTopic", 0, "", "fails", &a);
    answer_free(&a);
    await_one("BackTopic", 0, 0, &d);
    phys = d.phys;
    for (int round = 1; round <= 2; round++) {
        send_back(0, phys, "CG_BACK", 2, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        answer_free(&a);
        await_one("%RETRY%CG_BACK", 0, round - 1, &d);
        cr_assert_str_eq(d.body, "fails");
        cr_assert_eq(d.reconsume, round);
        cr_assert_str_eq(d.retry_topic, "BackTopic");
        cr_assert(d.has_origin, "ORIGIN_MESSAGE_ID set");
        phys = d.phys;
    }
    /* consumed twice already: the third failure goes to the dead-letter queue */
    send_back(0, phys, "CG_BACK", 2, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    answer_free(&a);
    {
        struct rmq_header h;
        struct pull_req p = {"CG_DLQ", "%DLQ%CG_BACK", 0, 0, 32, 4, 0, "*"};

        rmq_header_init(&h, RMQ_REQ_GET_MAX_OFFSET, RMQ_SER_JSON);
        rmq_header_add(&h, "topic", "%DLQ%CG_BACK");
        rmq_header_add_i64(&h, "queueId", 0);
        for (int i = 0; i < 100; i++) {
            call(0, &h, NULL, &a);
            if (ext_i64(&a, "offset") == 1) {
                break;
            }
            answer_free(&a);
            usleep(10000);
        }
        cr_assert_eq(ext_i64(&a, "offset"), 1, "the DLQ holds the message");
        answer_free(&a);
        /* a client re-sending to the retry topic past its maximum lands there too */
        send_header(&h, RMQ_SER_JSON, "%RETRY%CG_BACK", 0, "DELAY\0013\002");
        h.version = 121;
        rmq_header_add_i64(&h, "j", 3);
        rmq_header_add_i64(&h, "l", 3);
        call(0, &h, "resent", &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        cr_assert_eq(ext_i64(&a, "queueOffset"), 1, "stored as the DLQ's second message");
        answer_free(&a);
        rmq_header_init(&h, RMQ_REQ_GET_MAX_OFFSET, RMQ_SER_JSON);
        rmq_header_add(&h, "topic", "%DLQ%CG_BACK");
        rmq_header_add_i64(&h, "queueId", 0);
        for (int i = 0; i < 100; i++) {
            call(0, &h, NULL, &a);
            if (ext_i64(&a, "offset") == 2) {
                break;
            }
            answer_free(&a);
            usleep(10000);
        }
        cr_assert_eq(ext_i64(&a, "offset"), 2, "no delay on the way to the DLQ");
        answer_free(&a);
        pull(1, &p, &a);
        cr_assert_eq(a.code, RMQ_RESP_NO_PERMISSION, "a DLQ is write-only, as RocketMQ makes it");
        answer_free(&a);
    }
    /* a bad offset is refused with the reason */
    send_back(0, 123456789, "CG_BACK", 2, &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
    cr_assert(strstr(a.remark, "look message by offset failed") != NULL, "%s", a.remark);
    answer_free(&a);
    clients_down();
    daemon_stop_ok_at(&B);
}

/* ---- arbitrary delivery times --------------------------------------------------------------- */

struct timed {
    int64_t deliver[64];
    int64_t store_ts[64];
    int n;
};

static void
record_timed(const struct rmq_record *r, void *arg)
{
    struct timed *t = arg;
    long long d;

    cr_assert_lt(t->n, 64);
    cr_assert_eq(sscanf((const char *)r->body, "at-%lld", &d), 1);
    t->deliver[t->n] = d;
    t->store_ts[t->n] = r->store_ts;
    t->n++;
}

/* Pull (topic, queue 0) until want records arrived (long polls, 30 s at most). */
static void
collect_timed(const char *topic, int want, struct timed *t)
{
    struct pull_req p = {"CG_TIMED", topic, 0, 0, 32, 2 | 4, 5000, "*"};
    uint64_t t0 = rmq_clock_mono_ns();
    struct answer a;

    while (t->n < want) {
        pull(1, &p, &a);
        if (a.code == RMQ_RESP_SUCCESS) {
            each_record(&a, record_timed, t);
            p.offset = ext_i64(&a, "nextBeginOffset");
        }
        answer_free(&a);
        cr_assert_lt(rmq_clock_mono_ns() - t0, 30000000000ull, "%d of %d arrived", t->n, want);
    }
}

static void
send_at(int ci, const char *topic, const char *prop, int64_t value, int64_t deliver,
        struct answer *a)
{
    char props[96];
    char body[48];

    snprintf(props, sizeof(props), "%s%c%lld%c", prop, 1, (long long)value, 2);
    snprintf(body, sizeof(body), "at-%lld", (long long)deliver);
    send_one(ci, topic, 0, props, body, a);
}

Test(broker, arbitrary_delivery_times_arrive_in_time_order_and_never_early)
{
    struct timed t = {0};
    struct answer a;
    int64_t now = (int64_t)rmq_clock_wall_ms();
    int64_t late_max = 0;
    uint32_t seed = 7;

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "TimerTopic", 1);
    for (int i = 0; i < 20; i++) {
        int64_t at;

        seed = seed * 1103515245u + 12345u;
        at = now + 200 + (int64_t)(seed % 9800);        /* 200 ms .. 10 s, in random order */
        if (i % 3 == 0) {
            send_at(0, "TimerTopic", "TIMER_DELAY_MS", at - (int64_t)rmq_clock_wall_ms(), at, &a);
        } else {
            send_at(0, "TimerTopic", "TIMER_DELIVER_MS", at, at, &a);
        }
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        answer_free(&a);
    }
    collect_timed("TimerTopic", 20, &t);
    for (int i = 0; i < t.n; i++) {
        /* TIMER_DELAY_MS was turned into an absolute time a few ms after `at` was taken */
        cr_assert_geq(t.store_ts[i] + 20, t.deliver[i], "delivered %lld ms early",
                      (long long)(t.deliver[i] - t.store_ts[i]));
        late_max = RMQ_MAX(late_max, t.store_ts[i] - t.deliver[i]);
        if (i > 0) {
            cr_assert_geq(t.deliver[i] + 20, t.deliver[i - 1], "out of time order at %d", i);
        }
    }
    cr_log_info("20 scheduled messages, latest %lld ms after its time", (long long)late_max);
    cr_assert_lt(late_max, 1000);
    /* the offset id a send answers: a plain message's names its commitlog record, a
     * timed one's its record waiting in the timer log; VIEW_MESSAGE_BY_ID finds both */
    for (int timed = 0; timed < 2; timed++) {
        struct rmq_header h;
        struct rmq_record r;
        const char *v;
        size_t vl;
        char id[33];

        if (timed) {
            send_at(0, "TimerTopic", "TIMER_DELAY_SEC", 3600, 0, &a);
        } else {
            send_one(0, "TimerTopic", 0, "", "at-0", &a);
        }
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        snprintf(id, sizeof(id), "%s", answer_ext(&a, "msgId"));
        answer_free(&a);
        rmq_header_init(&h, RMQ_REQ_VIEW_MESSAGE_BY_ID, RMQ_SER_JSON);
        rmq_header_add_i64(&h, "offset", (int64_t)strtoull(id + 16, NULL, 16));
        call(0, &h, NULL, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "view %s: %s", id, a.remark);
        cr_assert_eq(rmq_record_decode((const uint8_t *)a.body, a.body_len, true, &r, NULL),
                     (int64_t)a.body_len);
        cr_assert(rmq_props_get(r.props, r.props_len, "REAL_TOPIC", &v, &vl) == (timed == 1));
        cr_assert_eq(r.topic_len, timed ? strlen("rmq_sys_wheel_timer") : strlen("TimerTopic"));
        answer_free(&a);
    }
    /* refusals: not a number, too far ahead */
    send_at(0, "TimerTopic", "TIMER_DELIVER_MS", -5, 0, &a);
    cr_assert_eq(a.code, RMQ_RESP_MESSAGE_ILLEGAL, "%s", a.remark);
    answer_free(&a);
    send_at(0, "TimerTopic", "TIMER_DELAY_SEC", 400LL * 86400, 0, &a);
    cr_assert_eq(a.code, RMQ_RESP_MESSAGE_ILLEGAL);
    cr_assert(strstr(a.remark, "timerMaxDelaySec") != NULL, "%s", a.remark);
    answer_free(&a);
    clients_down();
    daemon_stop_ok_at(&B);
}

Test(broker, scheduled_messages_survive_restarts_and_are_delivered_once)
{
    struct timed t = {0};
    struct answer a;
    int64_t now = (int64_t)rmq_clock_wall_ms();

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "TimerRestart", 1);
    for (int i = 0; i < 10; i++) {
        int64_t at = now + 1500 + i * 150;

        send_at(0, "TimerRestart", "TIMER_DELIVER_MS", at, at, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        answer_free(&a);
    }
    send_at(0, "TimerRestart", "TIMER_DELAY_SEC", 7 * 86400, now + 7 * 86400000LL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "a week ahead is accepted: %s", a.remark);
    answer_free(&a);
    usleep(2000000);                /* some delivered, some still waiting */
    clients_down();
    daemon_stop_ok_at(&B);
    broker_start(NULL);
    clients_to_broker();
    collect_timed("TimerRestart", 10, &t);
    usleep(300000);
    {
        struct pull_req p = {"CG_TIMED", "TimerRestart", 0, 10, 32, 4, 0, "*"};

        pull(1, &p, &a);
        cr_assert_eq(a.code, RMQ_RESP_PULL_NOT_FOUND, "a scheduled message delivered twice");
        answer_free(&a);
    }
    for (int i = 0; i < t.n; i++) {
        for (int j = i + 1; j < t.n; j++) {
            cr_assert_neq(t.deliver[i], t.deliver[j], "delivered twice");
        }
    }
    cr_assert_eq(runtime_value(0, "timerPending"), 1, "the week-ahead message waits on");
    clients_down();
    daemon_stop_ok_at(&B);
    broker_start(NULL);             /* and survives another restart */
    clients_to_broker();
    cr_assert_eq(runtime_value(0, "timerPending"), 1);
    clients_down();
    daemon_stop_ok_at(&B);
}

Test(broker, kill_9_during_a_stream_of_timed_deliveries_delivers_each_message_once)
{
    /* under SYNC_FLUSH a delivery completes, and its mark is written, only after the
     * commitlog's fdatasync: a kill in that window leaves delivered copies unmarked */
    static const char *const sync[] = {"--flushDiskType=SYNC_FLUSH", NULL};
    enum { N = 3000 };
    struct answer a;
    char props[64];
    char body[16];
    int64_t at = (int64_t)rmq_clock_wall_ms() + 1500;
    long long pending;

    broker_start(sync);
    clients_to_broker();
    create_topic(0, "TimerKill", 1);
    for (int i = 0; i < N; i++) {
        /* due over one second, three per millisecond */
        snprintf(props, sizeof(props), "TIMER_DELIVER_MS%c%lld%c", 1, (long long)(at + i / 3), 2);
        snprintf(body, sizeof(body), "t%d", i);
        send_one(0, "TimerKill", 0, props, body, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        answer_free(&a);
    }
    /* kill halfway through the stream */
    while ((pending = runtime_value(0, "timerPending")) > N / 2) {
        cr_assert_lt((int64_t)rmq_clock_wall_ms(), at + 10000, "nothing delivered");
    }
    clients_down();
    cr_assert_eq(daemon_signal_wait(&B, SIGKILL), 128 + SIGKILL);
    cr_log_info("killed with %lld of %d waiting", pending, N);
    broker_start(sync);
    clients_to_broker();
    cr_log_info("deliveries found without their mark at restart: %lld",
                runtime_value(0, "heldMarksRecovered"));
    for (int i = 0; i < 100 && runtime_value(0, "timerPending") > 0; i++) {
        usleep(50000);
    }
    usleep(200000);
    assert_each_once("TimerKill", 1, "t", N);
    clients_down();
    daemon_stop_ok_at(&B);
}

Test(broker, delivered_timer_log_segments_are_released_and_a_far_message_is_moved_forward)
{
    static const char *const small[] = {"--mappedFileSizeTimerLog=65536",
                                        "--cleanResourceInterval=100", NULL};
    static char big[1001];
    struct answer a;
    struct timed t = {0};
    int64_t far = (int64_t)rmq_clock_wall_ms() + 6000;
    long long min_off = 0, max_off;

    memset(big, 'x', 1000);
    broker_start(small);
    clients_to_broker();
    create_topic(0, "TimerFar", 1);
    create_topic(0, "TimerNear", 1);
    /* one message 6 s ahead in the first segment, then ~5 segments of near ones */
    send_at(0, "TimerFar", "TIMER_DELIVER_MS", far, far, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    answer_free(&a);
    for (int i = 0; i < 300; i++) {
        char props[64];

        snprintf(props, sizeof(props), "TIMER_DELAY_MS%c300%c", 1, 2);
        send_one(0, "TimerNear", 0, props, big, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
        answer_free(&a);
    }
    for (int i = 0; i < 60; i++) {
        min_off = runtime_value(0, "timerLogMinOffset");
        max_off = runtime_value(0, "timerLogMaxOffset");
        if (runtime_value(0, "timerRolled") == 1 && min_off >= max_off / 65536 * 65536 - 65536) {
            break;
        }
        usleep(50000);
    }
    cr_log_info("timer log after delivery: [%lld, %lld), %lld rolled", min_off, max_off,
                runtime_value(0, "timerRolled"));
    cr_assert_eq(runtime_value(0, "timerRolled"), 1, "the far message moved to the log's head");
    cr_assert_geq(min_off, max_off / 65536 * 65536 - 65536,
                  "every segment but the last two released: [%lld, %lld)", min_off, max_off);
    cr_assert_eq(runtime_value(0, "timerPending"), 1);
    clients_down();
    cr_assert_eq(daemon_signal_wait(&B, SIGKILL), 128 + SIGKILL);
    broker_start(small);
    clients_to_broker();
    cr_assert_eq(runtime_value(0, "timerPending"), 1, "one copy waits after kill -9");
    cr_assert_geq(runtime_value(0, "timerLogMinOffset"), min_off);
    collect_timed("TimerFar", 1, &t);
    cr_assert_geq(t.store_ts[0], far, "delivered %lld ms early", (long long)(far - t.store_ts[0]));
    usleep(500000);
    {
        struct pull_req p = {"CG_TIMED", "TimerFar", 0, 1, 32, 4, 0, "*"};

        pull(1, &p, &a);
        cr_assert_eq(a.code, RMQ_RESP_PULL_NOT_FOUND, "the far message delivered twice");
        answer_free(&a);
    }
    cr_assert_eq(runtime_value(0, "timerPending"), 0);
    clients_down();
    daemon_stop_ok_at(&B);
}

Test(broker, a_delivered_copy_found_in_the_commitlog_at_start_counts_as_delivered)
{
    /* The state kill -9 leaves between a delivery and its mark, made on purpose: copies
     * carrying TIMER_FROM in the commitlog, the timer log without their marks, and
     * delayOffset.json (scanFrom) gone, so the start walks the whole log. */
    struct answer a;
    char path[PATH_MAX];
    int64_t at = (int64_t)rmq_clock_wall_ms() + 2000;
    struct timed t = {0};

    broker_start(NULL);
    clients_to_broker();
    create_topic(0, "TimerFound", 1);
    send_at(0, "TimerFound", "TIMER_DELIVER_MS", at, at, &a);             /* q0 0 */
    answer_free(&a);
    send_at(0, "TimerFound", "TIMER_DELIVER_MS", at + 1, at + 1, &a);     /* q0 1 */
    answer_free(&a);
    send_at(0, "TimerFound", "TIMER_FROM", 0, at, &a);                     /* its copy */
    answer_free(&a);
    send_at(0, "TimerFound", "TIMER_FROM", 1, 12345, &a);      /* another body: not a copy */
    answer_free(&a);
    clients_down();
    daemon_stop_ok_at(&B);
    snprintf(path, sizeof(path), "%s/data/config/delayOffset.json", B.dir);
    cr_assert_eq(unlink(path), 0);
    broker_start(NULL);
    clients_to_broker();
    cr_assert_eq(runtime_value(0, "heldMarksRecovered"), 1);
    cr_assert_eq(runtime_value(0, "timerPending"), 1, "only q0 1 still waits");
    collect_timed("TimerFound", 3, &t);
    cr_assert_eq(t.deliver[2], at + 1, "q0 1 delivered at its time");
    usleep(500000);
    {
        struct pull_req p = {"CG_TIMED", "TimerFound", 0, 3, 32, 4, 0, "*"};

        pull(1, &p, &a);
        cr_assert_eq(a.code, RMQ_RESP_PULL_NOT_FOUND, "q0 0 delivered although its copy exists");
        answer_free(&a);
    }
    clients_down();
    daemon_stop_ok_at(&B);
    broker_start(NULL);             /* its mark was written: nothing found again */
    clients_to_broker();
    cr_assert_eq(runtime_value(0, "heldMarksRecovered"), 0);
    cr_assert_eq(runtime_value(0, "timerPending"), 0);
    clients_down();
    daemon_stop_ok_at(&B);
}
