/*
 * Pull consumer (the caller picks queues and offsets) and the admin handle (raw
 * requests for tools such as `rmq`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_int.h"
#include "core/clock.h"
#include "core/util.h"
#include "net/codes.h"

#define PULL_TAGS_MAX 64

struct rmq_pull_consumer {
    struct rmq_cli c;
};

struct rmq_admin {
    struct rmq_cli c;
};

static void
consumer_heartbeat(struct rmq_cli *c, struct rmq_jw *w)
{
    rmq_cli__heartbeat_consumer(c, w, "CONSUME_ACTIVELY", "CLUSTERING", "CONSUME_FROM_LAST_OFFSET",
                                NULL, NULL);
}

int
rmq_pull_consumer_create(struct rmq_pull_consumer **out, const struct rmq_options *opts)
{
    struct rmq_pull_consumer *c = calloc(1, sizeof(*c));
    int ret;

    *out = NULL;
    if (c == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory creating a consumer");
    }
    ret = rmq_cli__init(&c->c, opts, "DEFAULT_CONSUMER");
    if (ret < 0) {
        free(c);
        return ret;
    }
    c->c.heartbeat_body = consumer_heartbeat;
    c->c.owner_ctx = c;
    *out = c;
    return 0;
}

void
rmq_pull_consumer_destroy(struct rmq_pull_consumer *c)
{
    if (c != NULL) {
        rmq_cli__unregister(&c->c, NULL, c->c.group);
        rmq_cli__fini(&c->c);
        free(c);
    }
}

int
rmq_pull_queues(struct rmq_pull_consumer *c, const char *topic, struct rmq_queue **qs, size_t *n)
{
    struct rmq_cli_route *r;
    int ret = rmq_cli__check_thread(&c->c);

    *qs = NULL;
    *n = 0;
    if (ret < 0) {
        return ret;
    }
    r = rmq_cli__route(&c->c, topic, false);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    if (r->sub_count == 0) {
        return rmq_cli__fail(RMQ_ERR_NO_ROUTE, "topic %s has no readable queue", topic);
    }
    *qs = malloc(r->sub_count * sizeof(**qs));
    if (*qs == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory");
    }
    memcpy(*qs, r->sub, r->sub_count * sizeof(**qs));
    *n = r->sub_count;
    return 0;
}

static int64_t
ext_i64(const struct rmq_cli_resp *r, const char *key, int64_t def)
{
    const char *v = rmq_cli__ext(r, key);

    return v != NULL ? strtoll(v, NULL, 10) : def;
}

int
rmq_pull(struct rmq_pull_consumer *pc, const struct rmq_queue *q, const char *tag_expr,
         int64_t offset, uint32_t max_msgs, uint32_t hold_ms, struct rmq_pull_result *res)
{
    struct rmq_cli *c = &pc->c;
    const char *tags[PULL_TAGS_MAX];
    char tag_buf[1024];
    uint32_t tag_count = 0;
    struct rmq_header h;
    const char *addr;
    uint8_t *body;
    int ret = rmq_cli__check_thread(c);

    memset(res, 0, sizeof(*res));
    if (ret < 0 ||
        (ret = rmq_cli__parse_tags(tag_expr != NULL ? tag_expr : "*", tag_buf, sizeof(tag_buf),
                                   tags, PULL_TAGS_MAX, &tag_count)) < 0) {
        return ret;
    }
    addr = rmq_cli__queue_request(c, q, RMQ_REQ_PULL_MESSAGE, c->group, &h);
    if (addr == NULL) {
        return rmq_cli__last_code();
    }
    rmq_header_add_i64(&h, "queueOffset", offset);
    rmq_header_add_i64(&h, "maxMsgNums", RMQ_MAX(max_msgs, 1u));
    rmq_header_add_i64(&h, "sysFlag", hold_ms > 0 ? 2 | 4 : 4);    /* SUSPEND, SUBSCRIPTION */
    rmq_header_add_i64(&h, "commitOffset", 0);
    rmq_header_add_i64(&h, "suspendTimeoutMillis", hold_ms);
    rmq_header_add(&h, "subscription", tag_expr != NULL && tag_expr[0] != '\0' ? tag_expr : "*");
    rmq_header_add_i64(&h, "subVersion", 0);
    ret = rmq_cli__call(c, addr, &h, NULL, 0,
                        rmq_cli__deadline(c) + (uint64_t)hold_ms * 1000000u);
    if (ret < 0) {
        return ret;
    }
    rmq_cli__suggest(c, q, ext_i64(&c->resp, "suggestWhichBrokerId", 0));
    res->next_offset = ext_i64(&c->resp, "nextBeginOffset", offset);
    res->min_offset = ext_i64(&c->resp, "minOffset", -1);
    res->max_offset = ext_i64(&c->resp, "maxOffset", -1);
    switch (c->resp.code) {
    case RMQ_RESP_SUCCESS:
        res->status = RMQ_PULL_FOUND;
        body = rmq_cli__resp_take(&c->resp);    /* the messages point into it */
        ret = rmq_cli__decode_pulled(body, c->resp.body_len, q->broker_name, tags, tag_count,
                                     res);
        if (ret == 0 && res->count == 0) {
            res->status = RMQ_PULL_NO_MATCHED_MSG;
        }
        return ret;
    case RMQ_RESP_PULL_NOT_FOUND:
        res->status = RMQ_PULL_NO_NEW_MSG;
        return 0;
    case RMQ_RESP_PULL_RETRY_IMMEDIATELY:
        res->status = RMQ_PULL_NO_MATCHED_MSG;
        return 0;
    case RMQ_RESP_PULL_OFFSET_MOVED:
        res->status = RMQ_PULL_OFFSET_ILLEGAL;
        return 0;
    default:
        return rmq_cli__broker_fail(&c->resp, "pull");
    }
}

int
rmq_pull_fetch_offset(struct rmq_pull_consumer *c, const struct rmq_queue *q, int64_t *offset)
{
    return rmq_cli__queue_offset(&c->c, q, RMQ_REQ_QUERY_CONSUMER_OFFSET, c->c.group, 0, offset);
}

int
rmq_pull_min_offset(struct rmq_pull_consumer *c, const struct rmq_queue *q, int64_t *offset)
{
    return rmq_cli__queue_offset(&c->c, q, RMQ_REQ_GET_MIN_OFFSET, NULL, 0, offset);
}

int
rmq_pull_max_offset(struct rmq_pull_consumer *c, const struct rmq_queue *q, int64_t *offset)
{
    return rmq_cli__queue_offset(&c->c, q, RMQ_REQ_GET_MAX_OFFSET, NULL, 0, offset);
}

int
rmq_pull_offset_by_time(struct rmq_pull_consumer *c, const struct rmq_queue *q, int64_t ts_ms,
                        int64_t *offset)
{
    return rmq_cli__queue_offset(&c->c, q, RMQ_REQ_SEARCH_OFFSET_BY_TIMESTAMP, NULL, ts_ms, offset);
}

int
rmq_pull_commit_offset(struct rmq_pull_consumer *pc, const struct rmq_queue *q, int64_t offset)
{
    struct rmq_cli *c = &pc->c;
    struct rmq_header h;
    const char *addr;
    int ret = rmq_cli__check_thread(c);

    if (ret < 0) {
        return ret;
    }
    addr = rmq_cli__queue_request(c, q, RMQ_REQ_UPDATE_CONSUMER_OFFSET, c->group, &h);
    if (addr == NULL) {
        return rmq_cli__last_code();
    }
    rmq_header_add_i64(&h, "commitOffset", offset);
    ret = rmq_cli__call(c, addr, &h, NULL, 0, rmq_cli__deadline(c));
    if (ret < 0) {
        return ret;
    }
    return c->resp.code == RMQ_RESP_SUCCESS ? 0 : rmq_cli__broker_fail(&c->resp, "offset commit");
}

/* ---- admin -------------------------------------------------------------------------------------- */

int
rmq_admin_create(struct rmq_admin **out, const struct rmq_options *opts)
{
    struct rmq_admin *a = calloc(1, sizeof(*a));
    int ret;

    *out = NULL;
    if (a == NULL) {
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory");
    }
    ret = rmq_cli__init(&a->c, opts, "TOOLS_CONSUMER");
    if (ret < 0) {
        free(a);
        return ret;
    }
    *out = a;
    return 0;
}

void
rmq_admin_destroy(struct rmq_admin *a)
{
    if (a != NULL) {
        rmq_cli__fini(&a->c);
        free(a);
    }
}

int
rmq_admin_call(struct rmq_admin *a, const char *addr, int code, const char *const *fields,
               const void *body, size_t body_len, int *resp_code, char *remark, size_t cap,
               char **body_out, size_t *body_len_out)
{
    struct rmq_cli *c = &a->c;
    struct rmq_header h;
    int ret = rmq_cli__check_thread(c);

    if (ret < 0) {
        return ret;
    }
    rmq_header_init(&h, code, c->ser);
    for (const char *const *f = fields; f != NULL && f[0] != NULL; f += 2) {
        if (f[1] == NULL || rmq_header_add(&h, f[0], f[1]) < 0) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "header field %s without a value or too many "
                                 "fields", f[0]);
        }
    }
    if (addr == NULL) {
        if (body_len > 0) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "NameServer requests here carry no body");
        }
        ret = rmq_cli__call_namesrv(c, &h, rmq_cli__deadline(c));
    } else {
        ret = rmq_cli__call(c, addr, &h, body, (uint32_t)body_len, rmq_cli__deadline(c));
    }
    if (ret < 0) {
        return ret;
    }
    *resp_code = c->resp.code;
    if (remark != NULL && cap > 0) {
        snprintf(remark, cap, "%s", c->resp.remark);
    }
    if (body_out != NULL) {
        *body_out = (char *)rmq_cli__resp_take(&c->resp);
        if (*body_out == NULL) {
            *body_out = strdup("");
        }
    }
    if (body_len_out != NULL) {
        *body_len_out = body_out != NULL && *body_out != NULL ? c->resp.body_len : 0;
    }
    return 0;
}

const char *
rmq_admin_ext(const struct rmq_admin *a, const char *key)
{
    return rmq_cli__ext(&a->c.resp, key);
}

int
rmq_admin_route(struct rmq_admin *a, const char *topic, char **json)
{
    const char *const fields[] = {"topic", topic, NULL};
    char remark[256];
    int code;
    int ret = rmq_admin_call(a, NULL, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, fields, NULL, 0, &code,
                             remark, sizeof(remark), json, NULL);

    if (ret < 0) {
        return ret;
    }
    if (code == RMQ_RESP_TOPIC_NOT_EXIST) {
        free(*json);
        *json = NULL;
        return rmq_cli__fail(RMQ_ERR_NO_ROUTE, "topic %s does not exist (no route)", topic);
    }
    if (code != RMQ_RESP_SUCCESS) {
        free(*json);
        *json = NULL;
        return rmq_cli__broker_fail(&a->c.resp, "route lookup");
    }
    return 0;
}

int
rmq_admin_masters(struct rmq_admin *a, const char *cluster, char ***addrs, size_t *n)
{
    char *json = NULL;
    char remark[256];
    int code;
    cJSON *root, *table, *b;
    size_t cap = 0;
    int ret = rmq_admin_call(a, NULL, RMQ_REQ_GET_BROKER_CLUSTER_INFO, NULL, NULL, 0, &code,
                             remark, sizeof(remark), &json, NULL);

    *addrs = NULL;
    *n = 0;
    if (ret < 0) {
        return ret;
    }
    if (code != RMQ_RESP_SUCCESS) {
        free(json);
        return rmq_cli__broker_fail(&a->c.resp, "cluster info");
    }
    root = rmq_json_parse(json, strlen(json));
    free(json);
    table = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "brokerAddrTable") : NULL;
    if (!cJSON_IsObject(table)) {
        cJSON_Delete(root);
        return rmq_cli__fail(RMQ_ERR_INVALID, "cluster info without brokerAddrTable");
    }
    cJSON_ArrayForEach(b, table) {
        const char *bc = rmq_json_get_str(b, "cluster");
        const cJSON *ba = cJSON_GetObjectItemCaseSensitive(b, "brokerAddrs");
        const cJSON *master = ba != NULL ? cJSON_GetObjectItemCaseSensitive(ba, "0") : NULL;

        if (cluster != NULL && (bc == NULL || strcmp(bc, cluster) != 0)) {
            continue;
        }
        if (!cJSON_IsString(master)) {
            continue;
        }
        if (*n == cap) {
            char **grown = realloc(*addrs, (cap = cap * 2 + 4) * sizeof(*grown));

            if (grown == NULL) {
                break;
            }
            *addrs = grown;
        }
        (*addrs)[(*n)++] = strdup(master->valuestring);
    }
    cJSON_Delete(root);
    if (*n == 0) {
        return rmq_cli__fail(RMQ_ERR_NO_ROUTE, "no broker master%s%s registered", cluster != NULL
                             ? " in cluster " : "", cluster != NULL ? cluster : "");
    }
    return 0;
}

int
rmq_admin_query(struct rmq_admin *a, const char *topic, const char *key, bool unique,
                uint32_t max, int64_t begin_ms, int64_t end_ms, struct rmq_pull_result *res)
{
    struct rmq_cli *c = &a->c;
    struct rmq_cli_route *r;
    uint8_t *all = NULL;
    size_t len = 0;
    const char *first = NULL;
    int ret = rmq_cli__check_thread(c);

    memset(res, 0, sizeof(*res));
    if (ret < 0) {
        return ret;
    }
    if (key == NULL || key[0] == '\0') {
        return rmq_cli__fail(RMQ_ERR_INVALID, "a query needs a key");
    }
    r = rmq_cli__route(c, topic, false);
    if (r == NULL) {
        return rmq_cli__last_code();
    }
    for (uint32_t i = 0; i < r->sub_count; i++) {
        const char *addr;
        struct rmq_header h;
        uint8_t *grown;

        if (i > 0 && strcmp(r->sub[i].broker_name, r->sub[i - 1].broker_name) == 0) {
            continue;                   /* one request per broker */
        }
        addr = rmq_cli__queue_addr(c, &r->sub[i]);
        if (addr == NULL) {
            continue;
        }
        rmq_header_init(&h, RMQ_REQ_QUERY_MESSAGE, c->ser);
        rmq_header_add(&h, "topic", topic);
        rmq_header_add(&h, "key", key);
        rmq_header_add_i64(&h, "maxNum", RMQ_MAX(max, 1u));
        rmq_header_add_i64(&h, "beginTimestamp", begin_ms);
        rmq_header_add_i64(&h, "endTimestamp", end_ms > 0 ? end_ms : INT64_MAX);
        if (unique) {
            rmq_header_add(&h, "_UNIQUE_KEY_QUERY", "true");
        }
        ret = rmq_cli__call(c, addr, &h, NULL, 0, rmq_cli__deadline(c));
        if (ret < 0) {
            free(all);
            return ret;
        }
        if (c->resp.code == RMQ_RESP_QUERY_NOT_FOUND) {
            continue;
        }
        if (c->resp.code != RMQ_RESP_SUCCESS) {
            free(all);
            return rmq_cli__broker_fail(&c->resp, "query");
        }
        grown = realloc(all, len + c->resp.body_len + 1);
        if (grown == NULL) {
            free(all);
            return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory");
        }
        all = grown;
        memcpy(all + len, c->resp.body, c->resp.body_len);
        len += c->resp.body_len;
        first = first != NULL ? first : r->sub[i].broker_name;
    }
    if (all == NULL) {
        return 0;
    }
    ret = rmq_cli__decode_pulled(all, (uint32_t)len, first, NULL, 0, res);
    if (ret == 0 && res->count > max) {
        res->count = max;
    }
    return ret;
}
