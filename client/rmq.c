/*
 * rmq: the command line of libringmq — topics, clusters, brokers, sending, consuming,
 * offsets. Exit 0 on success; otherwise one line on stderr saying what failed and 1
 * (2 for a usage error).
 */
#include <ctype.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "client/ringmq.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/record.h"
#include "net/codes.h"
#include "net/json.h"

struct args {
    const char *namesrv;
    const char *topic;
    const char *group;
    const char *cluster;
    const char *broker;
    const char *tag;
    const char *keys;
    const char *body;
    const char *mode;
    const char *from;
    const char *to;
    long queues;
    long size;
    long count;
    long timeout_s;
    long delay_level;
    long queue;
    long max;
    bool json;
    bool broadcast;
    bool help;
    const char *pos;                /* a positional argument (query id) */
};

static struct args A;
static struct rmq_options O;

static int
fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "rmq: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static int
lib_fail(const char *what, int err)
{
    return fail("%s failed (%s): %s", what, rmq_error_name(err), rmq_last_error());
}

static int
usage_fail(const char *cmd, const char *why)
{
    fprintf(stderr, "rmq %s: %s (see rmq %s --help)\n", cmd, why, cmd);
    return 2;
}

/* ---- JSON helpers --------------------------------------------------------------------------------- */

static cJSON *
parse_or_fail(const char *text, const char *what)
{
    cJSON *j = rmq_json_parse(text, strlen(text));      /* fastjson's bare integer keys too */

    if (j == NULL) {
        fail("%s: the answer is not JSON", what);
    }
    return j;
}

/*
 * Bodies keyed by MessageQueue objects ({"brokerName":..,"queueId":..,"topic":..}:{...}),
 * which fastjson writes and JSON parsers refuse: each key and value parsed on its own.
 */
typedef void (*mq_fn)(void *arg, const char *broker, const char *topic, int queue_id,
                      const cJSON *val);

static void
mq_map_each(const char *text, const char *table, mq_fn fn, void *arg)
{
    const char *p = strstr(text, table);

    while (p != NULL && (p = strstr(p, "{\"brokerName\"")) != NULL) {
        const char *kend = strchr(p, '}');
        const char *vstart, *vend;
        cJSON *k, *v;

        if (kend == NULL || (vstart = strchr(kend, '{')) == NULL ||
            (vend = strchr(vstart, '}')) == NULL) {
            return;
        }
        k = cJSON_ParseWithLength(p, (size_t)(kend - p + 1));
        v = cJSON_ParseWithLength(vstart, (size_t)(vend - vstart + 1));
        if (k != NULL && v != NULL) {
            const cJSON *b = cJSON_GetObjectItem(k, "brokerName");
            const cJSON *t = cJSON_GetObjectItem(k, "topic");
            const cJSON *q = cJSON_GetObjectItem(k, "queueId");

            fn(arg, cJSON_IsString(b) ? b->valuestring : "", cJSON_IsString(t) ? t->valuestring : "",
               cJSON_IsNumber(q) ? q->valueint : -1, v);
        }
        cJSON_Delete(k);
        cJSON_Delete(v);
        p = vend + 1;
    }
}

static long long
num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);

    return cJSON_IsNumber(v) ? (long long)v->valuedouble
                             : cJSON_IsString(v) ? atoll(v->valuestring) : 0;
}

/* ---- NameServer and broker requests ------------------------------------------------------------ */

static int
call(struct rmq_admin *a, const char *addr, int code, const char *const *fields, const char *what,
     char **body)
{
    char remark[512];
    int rc;
    int ret = rmq_admin_call(a, addr, code, fields, NULL, 0, &rc, remark, sizeof(remark), body,
                             NULL);

    if (ret < 0) {
        return lib_fail(what, ret);
    }
    if (rc != RMQ_RESP_SUCCESS) {
        free(*body);
        *body = NULL;
        return fail("%s: %s answered %d (%s): %s", what, addr != NULL ? addr : "the NameServer",
                    rc, rmq_response_code_name(rc), remark[0] ? remark : "no remark");
    }
    return 0;
}

/* A JSON-answering request: with --json its body is printed as it is (*out NULL), else
 * parsed into *out. 0, or non-zero after one line on stderr. */
static int
call_json(struct rmq_admin *a, const char *addr, int code, const char *what, cJSON **out)
{
    char *body = NULL;
    int ret = call(a, addr, code, NULL, what, &body);

    *out = NULL;
    if (ret != 0) {
        return ret;
    }
    if (A.json) {
        printf("%s\n", body);
        free(body);
        return 0;
    }
    *out = parse_or_fail(body, what);
    free(body);
    return *out == NULL;
}

/* Master address of each broker named in topic's route. */
static int
route_masters(struct rmq_admin *a, const char *topic, char ***addrs, size_t *n, cJSON **route)
{
    char *json = NULL;
    const cJSON *bd;
    int ret = rmq_admin_route(a, topic, &json);

    *addrs = NULL;
    *n = 0;
    if (ret < 0) {
        return lib_fail("route lookup", ret);
    }
    *route = parse_or_fail(json, "route");
    free(json);
    if (*route == NULL) {
        return 1;
    }
    *addrs = calloc(64, sizeof(char *));
    cJSON_ArrayForEach(bd, cJSON_GetObjectItem(*route, "brokerDatas")) {
        const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(bd, "brokerAddrs"), "0");

        if (cJSON_IsString(m) && *n < 64) {
            (*addrs)[(*n)++] = strdup(m->valuestring);
        }
    }
    return 0;
}

static void
free_addrs(char **addrs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(addrs[i]);
    }
    free(addrs);
}

/* ---- topic ---------------------------------------------------------------------------------------- */

static int
topic_create(struct rmq_admin *a)
{
    char q[24];
    char **addrs = NULL;
    size_t n = 0;
    int ret = 0;

    if (A.topic == NULL) {
        return usage_fail("topic create", "-t TOPIC is required");
    }
    snprintf(q, sizeof(q), "%ld", A.queues > 0 ? A.queues : 8);
    if (A.broker != NULL) {
        addrs = calloc(1, sizeof(char *));
        addrs[0] = strdup(A.broker);
        n = 1;
    } else if ((ret = rmq_admin_masters(a, A.cluster, &addrs, &n)) < 0) {
        return lib_fail("finding brokers", ret);
    }
    for (size_t i = 0; i < n && ret == 0; i++) {
        const char *const fields[] = {"topic", A.topic, "defaultTopic", "TBW102", "readQueueNums", q,
                                      "writeQueueNums", q, "perm", "6", "topicFilterType",
                                      "SINGLE_TAG", "topicSysFlag", "0", "order", "false", NULL};
        char *body = NULL;

        ret = call(a, addrs[i], RMQ_REQ_UPDATE_AND_CREATE_TOPIC, fields, "topic create", &body);
        free(body);
        if (ret == 0) {
            printf(A.json ? "{\"topic\":\"%s\",\"broker\":\"%s\",\"queues\":%s}\n"
                          : "created %s on %s with %s queues\n", A.topic, addrs[i], q);
        }
    }
    free_addrs(addrs, n);
    return ret;
}

static int
topic_list(struct rmq_admin *a)
{
    cJSON *j;
    const cJSON *t;
    int ret = call_json(a, NULL, RMQ_REQ_GET_ALL_TOPIC_LIST_FROM_NAMESERVER, "topic list", &j);

    if (ret != 0 || j == NULL) {
        return ret;
    }
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "topicList")) {
        if (cJSON_IsString(t)) {
            printf("%s\n", t->valuestring);
        }
    }
    cJSON_Delete(j);
    return 0;
}

static int
topic_route(struct rmq_admin *a)
{
    char *json = NULL;
    cJSON *j;
    const cJSON *x;
    int ret;

    if (A.topic == NULL) {
        return usage_fail("topic route", "-t TOPIC is required");
    }
    ret = rmq_admin_route(a, A.topic, &json);
    if (ret < 0) {
        return lib_fail("route lookup", ret);
    }
    if (A.json) {
        printf("%s\n", json);
        free(json);
        return 0;
    }
    j = parse_or_fail(json, "route");
    free(json);
    if (j == NULL) {
        return 1;
    }
    printf("%-24s %-8s %-8s %-6s\n", "broker", "read", "write", "perm");
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(j, "queueDatas")) {
        const cJSON *name = cJSON_GetObjectItem(x, "brokerName");

        printf("%-24s %-8lld %-8lld %-6lld\n", cJSON_IsString(name) ? name->valuestring : "?",
               num(x, "readQueueNums"), num(x, "writeQueueNums"), num(x, "perm"));
    }
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(j, "brokerDatas")) {
        const cJSON *name = cJSON_GetObjectItem(x, "brokerName");
        const cJSON *addr;

        cJSON_ArrayForEach(addr, cJSON_GetObjectItem(x, "brokerAddrs")) {
            printf("broker %s id %s at %s\n", cJSON_IsString(name) ? name->valuestring : "?",
                   addr->string, cJSON_IsString(addr) ? addr->valuestring : "?");
        }
    }
    cJSON_Delete(j);
    return 0;
}

struct status_out {
    bool first;
};

static void
status_row(void *arg, const char *broker, const char *topic, int queue_id, const cJSON *v)
{
    struct status_out *o = arg;
    time_t t = (time_t)(num(v, "lastUpdateTimestamp") / 1000);
    char when[32] = "-";
    struct tm tm;

    (void)topic;
    if (A.json) {
        printf("%s{\"broker\":\"%s\",\"queueId\":%d,\"minOffset\":%lld,\"maxOffset\":%lld,"
               "\"lastUpdateTimestamp\":%lld}", o->first ? "" : ",", broker, queue_id,
               num(v, "minOffset"), num(v, "maxOffset"), num(v, "lastUpdateTimestamp"));
    } else {
        if (t > 0 && localtime_r(&t, &tm) != NULL) {
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        }
        printf("%-24s %-6d %-12lld %-12lld %s\n", broker, queue_id, num(v, "minOffset"),
               num(v, "maxOffset"), when);
    }
    o->first = false;
}

static int
topic_status(struct rmq_admin *a)
{
    char **addrs;
    size_t n;
    cJSON *route = NULL;
    struct status_out o = {.first = true};
    int ret;

    if (A.topic == NULL) {
        return usage_fail("topic status", "-t TOPIC is required");
    }
    ret = route_masters(a, A.topic, &addrs, &n, &route);
    if (ret != 0) {
        return ret;
    }
    printf(A.json ? "[" : "%-24s %-6s %-12s %-12s %s\n", "broker", "queue", "minOffset",
           "maxOffset", "lastUpdate");
    for (size_t i = 0; i < n && ret == 0; i++) {
        const char *const fields[] = {"topic", A.topic, NULL};
        char *body = NULL;

        ret = call(a, addrs[i], RMQ_REQ_GET_TOPIC_STATS_INFO, fields, "topic status", &body);
        if (ret == 0) {
            mq_map_each(body, "offsetTable", status_row, &o);
        }
        free(body);
    }
    if (A.json) {
        printf("]\n");
    }
    free_addrs(addrs, n);
    cJSON_Delete(route);
    return ret;
}

static int
topic_delete(struct rmq_admin *a)
{
    char **addrs;
    size_t n;
    cJSON *route = NULL;
    char *body = NULL;
    const char *const fields[] = {"topic", A.topic, NULL};
    int ret;

    if (A.topic == NULL) {
        return usage_fail("topic delete", "-t TOPIC is required");
    }
    ret = route_masters(a, A.topic, &addrs, &n, &route);
    for (size_t i = 0; i < n && ret == 0; i++) {
        ret = call(a, addrs[i], RMQ_REQ_DELETE_TOPIC_IN_BROKER, fields, "topic delete", &body);
        free(body);
        body = NULL;
    }
    if (ret == 0) {
        /* every NameServer: they never talk to each other */
        char list[1024];
        char *save = NULL;

        snprintf(list, sizeof(list), "%s", A.namesrv);
        for (char *ns = strtok_r(list, ";, ", &save); ns != NULL && ret == 0;
             ns = strtok_r(NULL, ";, ", &save)) {
            ret = call(a, ns, RMQ_REQ_DELETE_TOPIC_IN_NAMESRV, fields, "topic delete", &body);
            free(body);
            body = NULL;
        }
    }
    if (ret == 0) {
        printf(A.json ? "{\"deleted\":\"%s\"}\n" : "deleted %s\n", A.topic);
    }
    free_addrs(addrs, n);
    cJSON_Delete(route);
    return ret;
}

/* ---- cluster, broker ------------------------------------------------------------------------------ */

static int
cluster_list(struct rmq_admin *a)
{
    cJSON *j;
    const cJSON *b;
    int ret = call_json(a, NULL, RMQ_REQ_GET_BROKER_CLUSTER_INFO, "cluster list", &j);

    if (ret != 0 || j == NULL) {
        return ret;
    }
    printf("%-20s %-24s %-4s %s\n", "cluster", "broker", "id", "address");
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(j, "brokerAddrTable")) {
        const cJSON *c = cJSON_GetObjectItem(b, "cluster");
        const cJSON *addr;

        cJSON_ArrayForEach(addr, cJSON_GetObjectItem(b, "brokerAddrs")) {
            printf("%-20s %-24s %-4s %s\n", cJSON_IsString(c) ? c->valuestring : "?", b->string,
                   addr->string, cJSON_IsString(addr) ? addr->valuestring : "?");
        }
    }
    cJSON_Delete(j);
    return 0;
}

static int
broker_stats(struct rmq_admin *a)
{
    cJSON *j;
    const cJSON *kv;
    int ret;

    if (A.broker == NULL) {
        return usage_fail("broker stats", "-b BROKER_ADDR is required");
    }
    ret = call_json(a, A.broker, RMQ_REQ_GET_BROKER_RUNTIME_INFO, "broker stats", &j);
    if (ret != 0 || j == NULL) {
        return ret;
    }
    cJSON_ArrayForEach(kv, cJSON_GetObjectItem(j, "table")) {
        printf("%-36s %s\n", kv->string, cJSON_IsString(kv) ? kv->valuestring : "");
    }
    cJSON_Delete(j);
    return 0;
}

/* ---- send ----------------------------------------------------------------------------------------- */

static int async_failed;
static long async_done;

static void
print_result(long i, int err, const struct rmq_send_result *r)
{
    if (err < 0) {
        if (A.json) {
            printf("{\"n\":%ld,\"error\":\"%s\",\"message\":\"%s\"}\n", i, rmq_error_name(err),
                   rmq_last_error());
        } else {
            printf("%ld FAILED %s: %s\n", i, rmq_error_name(err), rmq_last_error());
        }
        return;
    }
    if (A.json) {
        printf("{\"n\":%ld,\"status\":\"%s\",\"msgId\":\"%s\",\"offsetMsgId\":\"%s\","
               "\"broker\":\"%s\",\"queueId\":%d,\"queueOffset\":%lld}\n", i,
               rmq_send_status_name(r->status), r->msg_id, r->offset_msg_id,
               r->queue.broker_name, (int)r->queue.queue_id, (long long)r->queue_offset);
    } else {
        printf("%ld %s %s %s %d %lld\n", i, rmq_send_status_name(r->status), r->msg_id,
               r->queue.broker_name, (int)r->queue.queue_id, (long long)r->queue_offset);
    }
}

static void
sent_async(void *arg, int err, const struct rmq_send_result *r)
{
    print_result((long)(intptr_t)arg, err, r);
    async_failed += err < 0;
    async_done++;
}

static int
cmd_send(void)
{
    struct rmq_producer *p;
    struct rmq_message m = {0};
    char *body = NULL;
    long count = A.count > 0 ? A.count : 1;
    int failed = 0;
    int ret;

    if (A.topic == NULL) {
        return usage_fail("send", "-t TOPIC is required");
    }
    if (A.mode != NULL && strcmp(A.mode, "sync") != 0 && strcmp(A.mode, "async") != 0 &&
        strcmp(A.mode, "oneway") != 0) {
        return usage_fail("send", "--mode is sync, async or oneway");
    }
    if (A.body == NULL) {
        long size = A.size > 0 ? A.size : 16;

        body = malloc((size_t)size);
        if (body == NULL) {
            return fail("out of memory");
        }
        memset(body, 'x', (size_t)size);
        m.body_len = (size_t)size;
    } else {
        m.body_len = strlen(A.body);
    }
    m.body = A.body != NULL ? A.body : body;
    m.topic = A.topic;
    m.tags = A.tag;
    m.keys = A.keys;
    m.delay_level = (int32_t)A.delay_level;
    ret = rmq_producer_create(&p, &O);
    if (ret < 0) {
        free(body);
        return lib_fail("producer", ret);
    }
    for (long i = 0; i < count; i++) {
        struct rmq_send_result r;

        memset(&r, 0, sizeof(r));
        if (A.mode != NULL && strcmp(A.mode, "async") == 0) {
            ret = rmq_producer_send_async(p, &m, sent_async, (void *)(intptr_t)i);
            if (ret < 0) {
                print_result(i, ret, NULL);
                failed++;
            }
            continue;
        }
        if (A.mode != NULL && strcmp(A.mode, "oneway") == 0) {
            ret = rmq_producer_send_oneway(p, &m);
            if (ret < 0) {
                print_result(i, ret, NULL);
                failed++;
            } else {
                printf(A.json ? "{\"n\":%ld,\"status\":\"SENT_ONEWAY\"}\n" : "%ld SENT_ONEWAY\n",
                       i);
            }
            continue;
        }
        ret = A.queue >= 0 ? rmq_producer_send_to_queue(p, &m, NULL, (int32_t)A.queue, &r)
                           : rmq_producer_send(p, &m, &r);
        print_result(i, ret, &r);
        failed += ret < 0;
    }
    while (rmq_producer_poll(p, 1000) > 0) {
    }
    rmq_producer_destroy(p);
    free(body);
    failed += async_failed;
    if (failed > 0) {
        fprintf(stderr, "rmq: %d of %ld sends failed\n", failed, count);
        return 1;
    }
    return 0;
}

/* ---- consume -------------------------------------------------------------------------------------- */

static bool
printable(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!isprint(p[i]) && p[i] != '\t') {
            return false;
        }
    }
    return true;
}

static void
print_msg(const struct rmq_msg *m)
{
    bool text = printable(m->body, m->body_len);

    if (A.json) {
        cJSON *o = cJSON_CreateObject();
        char *s;

        cJSON_AddStringToObject(o, "msgId", m->msg_id);
        cJSON_AddStringToObject(o, "topic", m->topic);
        cJSON_AddStringToObject(o, "broker", m->broker_name);
        cJSON_AddNumberToObject(o, "queueId", m->queue_id);
        cJSON_AddNumberToObject(o, "queueOffset", (double)m->queue_offset);
        cJSON_AddStringToObject(o, "keys", m->keys);
        cJSON_AddStringToObject(o, "tags", m->tags);
        cJSON_AddNumberToObject(o, "bodyLength", m->body_len);
        if (text) {
            char *b = strndup((const char *)m->body, m->body_len);

            cJSON_AddStringToObject(o, "body", b != NULL ? b : "");
            free(b);
        }
        s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    printf("%s %d %lld keys=%s tags=%s ", m->msg_id, (int)m->queue_id, (long long)m->queue_offset,
           m->keys, m->tags);
    if (text) {
        printf("%.*s\n", (int)m->body_len, (const char *)m->body);
    } else {
        printf("<%u bytes>\n", m->body_len);
    }
}

static int
cmd_consume(void)
{
    struct rmq_pull_consumer *c;
    struct rmq_queue *qs = NULL;
    int64_t *next;
    size_t n = 0;
    long got = 0;
    long want = A.count > 0 ? A.count : -1;
    uint64_t end = rmq_clock_mono_ns() + (uint64_t)(A.timeout_s > 0 ? A.timeout_s : 10) * 1000000000ull;
    bool last = A.from != NULL && strcmp(A.from, "last") == 0;
    int ret;

    if (A.topic == NULL || A.group == NULL) {
        return usage_fail("consume", "-t TOPIC and -g GROUP are required");
    }
    if (A.from != NULL && strcmp(A.from, "first") != 0 && strcmp(A.from, "last") != 0) {
        return usage_fail("consume", "--from is first or last");
    }
    O.group = A.group;
    ret = rmq_pull_consumer_create(&c, &O);
    if (ret < 0) {
        return lib_fail("consumer", ret);
    }
    ret = rmq_pull_queues(c, A.topic, &qs, &n);
    next = calloc(n + 1, sizeof(*next));
    /* start: the group's committed offset (clustering), else first or last */
    for (size_t i = 0; ret == 0 && i < n; i++) {
        next[i] = -1;
        if (!A.broadcast) {
            ret = rmq_pull_fetch_offset(c, &qs[i], &next[i]);
        }
        if (ret == 0 && next[i] < 0) {
            ret = last ? rmq_pull_max_offset(c, &qs[i], &next[i])
                       : rmq_pull_min_offset(c, &qs[i], &next[i]);
        }
    }
    while (ret == 0 && (want < 0 || got < want) && rmq_clock_mono_ns() < end) {
        bool any = false;

        for (size_t i = 0; ret == 0 && i < n && (want < 0 || got < want); i++) {
            struct rmq_pull_result r;

            ret = rmq_pull(c, &qs[i], A.tag, next[i], 32, 0, &r);
            if (ret < 0) {
                break;
            }
            for (uint32_t k = 0; k < r.count && (want < 0 || got < want); k++) {
                print_msg(&r.msgs[k]);
                next[i] = r.msgs[k].queue_offset + 1;
                got++;
            }
            if (r.count == 0 || (want < 0 || got < want)) {
                next[i] = r.count == 0 || r.next_offset > next[i] ? r.next_offset : next[i];
            }
            any |= r.status == RMQ_PULL_FOUND;
            rmq_pull_result_free(&r);
            if (!A.broadcast) {
                ret = rmq_pull_commit_offset(c, &qs[i], next[i]);
            }
        }
        if (!any && ret == 0 && n > 0) {
            /* nothing anywhere: wait on one queue a little (long polling) */
            struct rmq_pull_result r;
            static size_t turn;
            size_t i = turn++ % n;

            ret = rmq_pull(c, &qs[i], A.tag, next[i], 32, 500, &r);
            if (ret == 0) {
                for (uint32_t k = 0; k < r.count && (want < 0 || got < want); k++) {
                    print_msg(&r.msgs[k]);
                    next[i] = r.msgs[k].queue_offset + 1;
                    got++;
                }
                if (r.count == 0) {
                    next[i] = r.next_offset;
                }
                rmq_pull_result_free(&r);
                if (!A.broadcast) {
                    ret = rmq_pull_commit_offset(c, &qs[i], next[i]);
                }
            }
        }
    }
    if (ret < 0) {
        ret = lib_fail("consume", ret);
    } else if (want > 0 && got < want) {
        ret = fail("consume: %ld of %ld messages within %ld s", got, want,
                   A.timeout_s > 0 ? A.timeout_s : 10);
    }
    free(next);
    free(qs);
    rmq_pull_consumer_destroy(c);
    return ret;
}

/* ---- consumer progress, offset reset, query ---------------------------------------------------- */

static void
progress_row(void *arg, const char *broker, const char *topic, int queue_id, const cJSON *v)
{
    bool *first = arg;
    long long bo = num(v, "brokerOffset"), co = num(v, "consumerOffset");

    if (A.json) {
        printf("%s{\"topic\":\"%s\",\"broker\":\"%s\",\"queueId\":%d,\"brokerOffset\":%lld,"
               "\"consumerOffset\":%lld,\"lag\":%lld}", *first ? "" : ",", topic, broker, queue_id,
               bo, co, bo - co);
    } else {
        printf("%-24s %-20s %-6d %-12lld %-12lld %lld\n", topic, broker, queue_id, bo, co, bo - co);
    }
    *first = false;
}

static int
consumer_progress(struct rmq_admin *a)
{
    char **addrs = NULL;
    size_t n = 0;
    bool first = true;
    int ret;

    if (A.group == NULL) {
        return usage_fail("consumer progress", "-g GROUP is required");
    }
    ret = rmq_admin_masters(a, A.cluster, &addrs, &n);
    if (ret < 0) {
        return lib_fail("finding brokers", ret);
    }
    printf(A.json ? "[" : "%-24s %-20s %-6s %-12s %-12s %s\n", "topic", "broker", "queue",
           "brokerOffset", "consumerOffset", "lag");
    for (size_t i = 0; i < n && ret == 0; i++) {
        const char *const fields[] = {"consumerGroup", A.group, NULL};
        char *body = NULL;
        char remark[256];
        int rc;

        ret = rmq_admin_call(a, addrs[i], RMQ_REQ_GET_CONSUME_STATS, fields, NULL, 0, &rc, remark,
                             sizeof(remark), &body, NULL);
        if (ret < 0) {
            ret = lib_fail("consumer progress", ret);
        } else if (rc == RMQ_RESP_SUCCESS) {
            mq_map_each(body, "offsetTable", progress_row, &first);
        } else if (rc != RMQ_RESP_SUBSCRIPTION_GROUP_NOT_EXIST &&
                   rc != RMQ_RESP_CONSUMER_NOT_ONLINE) {
            ret = fail("consumer progress: %s answered %d: %s", addrs[i], rc, remark);
        }
        free(body);
    }
    if (A.json) {
        printf("]\n");
    }
    free_addrs(addrs, n);
    return ret;
}

static int
offset_reset(void)
{
    struct rmq_pull_consumer *c;
    struct rmq_queue *qs = NULL;
    size_t n = 0;
    char *endp;
    long long ts = 0;
    int ret;

    if (A.group == NULL || A.topic == NULL || A.to == NULL) {
        return usage_fail("offset reset", "-g GROUP, -t TOPIC and --to are required");
    }
    if (strcmp(A.to, "first") != 0 && strcmp(A.to, "last") != 0) {
        ts = strtoll(A.to, &endp, 10);
        if (*endp != '\0' || ts <= 0) {
            return usage_fail("offset reset", "--to is first, last or a timestamp in ms");
        }
    }
    O.group = A.group;
    ret = rmq_pull_consumer_create(&c, &O);
    if (ret < 0) {
        return lib_fail("consumer", ret);
    }
    ret = rmq_pull_queues(c, A.topic, &qs, &n);
    for (size_t i = 0; ret == 0 && i < n; i++) {
        int64_t off = 0;

        ret = ts > 0                        ? rmq_pull_offset_by_time(c, &qs[i], ts, &off)
              : strcmp(A.to, "first") == 0 ? rmq_pull_min_offset(c, &qs[i], &off)
                                           : rmq_pull_max_offset(c, &qs[i], &off);
        if (ret == 0) {
            ret = rmq_pull_commit_offset(c, &qs[i], off);
        }
        if (ret == 0) {
            printf(A.json ? "{\"broker\":\"%s\",\"queueId\":%d,\"offset\":%lld}\n"
                          : "%s %d -> %lld\n", qs[i].broker_name, (int)qs[i].queue_id,
                   (long long)off);
        }
    }
    if (ret < 0) {
        ret = lib_fail("offset reset", ret);
    }
    free(qs);
    rmq_pull_consumer_destroy(c);
    return ret;
}

static int
query_key(struct rmq_admin *a)
{
    struct rmq_pull_result r;
    int ret;

    if (A.topic == NULL || A.keys == NULL) {
        return usage_fail("query key", "-t TOPIC and -k KEY are required");
    }
    ret = rmq_admin_query(a, A.topic, A.keys, false, A.max > 0 ? (uint32_t)A.max : 64, 0, 0, &r);
    if (ret < 0) {
        return lib_fail("query key", ret);
    }
    for (uint32_t i = 0; i < r.count; i++) {
        print_msg(&r.msgs[i]);
    }
    if (r.count == 0) {
        fprintf(stderr, "rmq: no message of %s has key %s\n", A.topic, A.keys);
    }
    ret = r.count == 0;
    rmq_pull_result_free(&r);
    return ret;
}

/* A unique id (UNIQ_KEY, what send prints first) through the key index. */
static int
query_unique(struct rmq_admin *a, const char *id)
{
    struct rmq_pull_result r;
    int ret = rmq_admin_query(a, A.topic, id, true, 1, 0, 0, &r);

    if (ret < 0) {
        return lib_fail("query id", ret);
    }
    if (r.count > 0) {
        print_msg(&r.msgs[0]);
    }
    ret = r.count == 0 ? fail("query id: no message of %s has unique id %s", A.topic, id) : 0;
    rmq_pull_result_free(&r);
    return ret;
}

static int
query_id(struct rmq_admin *a)
{
    char addr[64];
    char off[32];
    unsigned ip[4], port;
    char *body = NULL;
    size_t len = 0;
    char remark[256];
    int rc, ret;
    const char *id = A.pos;

    if (id == NULL) {
        return usage_fail("query id", "MSGID is required");
    }
    if (A.topic != NULL) {
        return query_unique(a, id);     /* with a topic: a unique id, as send prints first */
    }
    if (strlen(id) != 32) {
        return usage_fail("query id", "without -t, MSGID must be a 32-hex-digit offset id");
    }
    if (sscanf(id, "%2x%2x%2x%2x%8x", &ip[0], &ip[1], &ip[2], &ip[3], &port) != 5) {
        return usage_fail("query id", "MSGID is not hexadecimal");
    }
    snprintf(addr, sizeof(addr), "%u.%u.%u.%u:%u", ip[0], ip[1], ip[2], ip[3], port);
    snprintf(off, sizeof(off), "%lld", (long long)strtoull(id + 16, NULL, 16));
    {
        const char *const fields[] = {"offset", off, NULL};

        ret = rmq_admin_call(a, addr, RMQ_REQ_VIEW_MESSAGE_BY_ID, fields, NULL, 0, &rc, remark,
                             sizeof(remark), &body, &len);
    }
    if (ret < 0) {
        return lib_fail("query id", ret);
    }
    if (rc != RMQ_RESP_SUCCESS) {
        free(body);
        return fail("query id: %s answered %d: %s", addr, rc, remark);
    }
    {
        /* the answer is one record: shown as consume shows messages */
        struct rmq_record rec;
        struct rmq_msg m = {0};
        char topic[128], tags[256] = "", keys[256] = "", uniq[64] = "";
        const char *v;
        size_t vl;

        if (rmq_record_decode((const uint8_t *)body, len, true, &rec, NULL) != (int64_t)len) {
            free(body);
            return fail("query id: %s answered with something that is not one record", addr);
        }
        snprintf(topic, sizeof(topic), "%.*s", (int)rec.topic_len, rec.topic);
        if (rmq_props_get(rec.props, rec.props_len, "TAGS", &v, &vl)) {
            snprintf(tags, sizeof(tags), "%.*s", (int)vl, v);
        }
        if (rmq_props_get(rec.props, rec.props_len, "KEYS", &v, &vl)) {
            snprintf(keys, sizeof(keys), "%.*s", (int)vl, v);
        }
        if (rmq_props_get(rec.props, rec.props_len, "UNIQ_KEY", &v, &vl)) {
            snprintf(uniq, sizeof(uniq), "%.*s", (int)vl, v);
        }
        m.topic = topic;
        m.tags = tags;
        m.keys = keys;
        m.msg_id = uniq[0] ? uniq : id;
        m.broker_name = addr;
        m.body = rec.body;
        m.body_len = rec.body_len;
        m.queue_id = rec.queue_id;
        m.queue_offset = rec.queue_off;
        print_msg(&m);
    }
    free(body);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------------------- */

struct command {
    const char *name;
    const char *usage;
    int (*admin_fn)(struct rmq_admin *a);
    int (*fn)(void);
};

static const struct command commands[] = {
    {"topic create", "-t TOPIC [-q QUEUES (8)] [-c CLUSTER | -b BROKER_ADDR]: create or update "
     "on one broker, a cluster's masters, or every master", topic_create, NULL},
    {"topic list", ": every topic the NameServer knows", topic_list, NULL},
    {"topic route", "-t TOPIC: brokers and queue counts", topic_route, NULL},
    {"topic status", "-t TOPIC: per queue min offset, max offset, last update", topic_status,
     NULL},
    {"topic delete", "-t TOPIC: from its brokers and every NameServer", topic_delete, NULL},
    {"cluster list", ": clusters, brokers, ids, addresses", cluster_list, NULL},
    {"broker stats", "-b BROKER_ADDR: the broker's runtime figures", broker_stats, NULL},
    {"send", "-t TOPIC [--tag TAG] [-k KEYS] [--body TEXT | --size BYTES] [--count N] "
     "[--mode sync|async|oneway] [--delay-level L] [--queue ID]: one line per message: n, "
     "status, msgId, broker, queueId, queueOffset", NULL, cmd_send},
    {"consume", "-t TOPIC -g GROUP [--tag EXPR] [--count N] [--timeout SECONDS (10)] "
     "[--broadcast] [--from first|last]: one line per message: msgId, queueId, queueOffset, "
     "keys, tags, body (or its length); the group's offsets are committed (not with "
     "--broadcast)", NULL, cmd_consume},
    {"query key", "-t TOPIC -k KEY [--max N (64)]: messages of TOPIC with KEY in their keys",
     query_key, NULL},
    {"query id", "MSGID [-t TOPIC]: the message with this offset id, or with -t the one with "
     "this unique id (UNIQ_KEY: the id send prints)", query_id, NULL},
    {"consumer progress", "-g GROUP [-c CLUSTER]: per queue broker offset, consumer offset, lag",
     consumer_progress, NULL},
    {"offset reset", "-g GROUP -t TOPIC --to first|last|TIMESTAMP_MS: commit new offsets (stop "
     "the group's consumers first)", NULL, offset_reset},
};

static void
help(const struct command *only)
{
    if (only != NULL) {
        printf("usage: rmq [-n NAMESRV] %s %s\n", only->name, only->usage);
        printf("  -n/--namesrv host:port;host:port  (default $NAMESRV_ADDR, else "
               "127.0.0.1:9876)\n  --json  one JSON document per line\n");
        return;
    }
    printf("usage: rmq [-n NAMESRV] [--json] COMMAND [options]\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        printf("  %-18s %s\n", commands[i].name, commands[i].usage);
    }
    printf("\n-n/--namesrv defaults to $NAMESRV_ADDR, else 127.0.0.1:9876; --help on any "
           "command. Exit 0 on success, 1 on failure, 2 on a usage error.\n");
}

int
main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"namesrv", required_argument, NULL, 'n'}, {"topic", required_argument, NULL, 't'},
        {"group", required_argument, NULL, 'g'}, {"cluster", required_argument, NULL, 'c'},
        {"broker", required_argument, NULL, 'b'}, {"queues", required_argument, NULL, 'q'},
        {"keys", required_argument, NULL, 'k'}, {"tag", required_argument, NULL, 1},
        {"body", required_argument, NULL, 2}, {"size", required_argument, NULL, 3},
        {"count", required_argument, NULL, 4}, {"mode", required_argument, NULL, 5},
        {"delay-level", required_argument, NULL, 6}, {"queue", required_argument, NULL, 7},
        {"timeout", required_argument, NULL, 8}, {"broadcast", no_argument, NULL, 9},
        {"from", required_argument, NULL, 10}, {"to", required_argument, NULL, 11},
        {"max", required_argument, NULL, 12}, {"json", no_argument, NULL, 13},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const struct command *cmd = NULL;
    char name[64] = "";
    char *words[3] = {NULL, NULL, NULL};
    int nwords = 0, opt, ret;
    struct rmq_admin *a = NULL;

    A.queue = -1;
    rmq_log_set_level(RMQ_LOG_ERROR);
    /* options anywhere: GNU getopt permutes the words of the command to the end */
    while ((opt = getopt_long(argc, argv, "n:t:g:c:b:q:k:h", longs, NULL)) != -1) {
        switch (opt) {
        case 'n': A.namesrv = optarg; break;
        case 't': A.topic = optarg; break;
        case 'g': A.group = optarg; break;
        case 'c': A.cluster = optarg; break;
        case 'b': A.broker = optarg; break;
        case 'q': A.queues = atol(optarg); break;
        case 'k': A.keys = optarg; break;
        case 1: A.tag = optarg; break;
        case 2: A.body = optarg; break;
        case 3: A.size = atol(optarg); break;
        case 4: A.count = atol(optarg); break;
        case 5: A.mode = optarg; break;
        case 6: A.delay_level = atol(optarg); break;
        case 7: A.queue = atol(optarg); break;
        case 8: A.timeout_s = atol(optarg); break;
        case 9: A.broadcast = true; break;
        case 10: A.from = optarg; break;
        case 11: A.to = optarg; break;
        case 12: A.max = atol(optarg); break;
        case 13: A.json = true; break;
        case 'h': A.help = true; break;
        default:
            fprintf(stderr, "rmq: unknown option (rmq --help lists commands)\n");
            return 2;
        }
    }
    for (int i = optind; i < argc && nwords < 3; i++) {
        words[nwords++] = argv[i];
    }
    for (size_t i = 0; words[0] != NULL && i < sizeof(commands) / sizeof(commands[0]); i++) {
        snprintf(name, sizeof(name), "%s%s%s", words[0], words[1] != NULL ? " " : "",
                 words[1] != NULL ? words[1] : "");
        if (strcmp(commands[i].name, words[0]) == 0 ||
            (words[1] != NULL && strcmp(commands[i].name, name) == 0)) {
            cmd = &commands[i];
            A.pos = strchr(cmd->name, ' ') != NULL ? words[2] : words[1];
            break;
        }
    }
    if (cmd == NULL) {
        if (A.help || words[0] == NULL) {
            help(NULL);
            return A.help ? 0 : 2;
        }
        fprintf(stderr, "rmq: unknown command '%s%s%s' (rmq --help lists them)\n", words[0],
                words[1] != NULL ? " " : "", words[1] != NULL ? words[1] : "");
        return 2;
    }
    if (A.help) {
        help(cmd);
        return 0;
    }
    if (A.namesrv == NULL) {
        A.namesrv = getenv("NAMESRV_ADDR") != NULL && getenv("NAMESRV_ADDR")[0] != '\0'
                        ? getenv("NAMESRV_ADDR") : "127.0.0.1:9876";
    }
    O.namesrv = A.namesrv;
    O.instance_name = "rmq-cli";
    if (cmd->fn != NULL) {
        return cmd->fn();
    }
    ret = rmq_admin_create(&a, &O);
    if (ret < 0) {
        return lib_fail("client", ret);
    }
    ret = cmd->admin_fn(a);
    rmq_admin_destroy(a);
    return ret;
}
