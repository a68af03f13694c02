/*
 * Client connections (spec/REMOTING.md §12.5-12.7, §12.14-12.15): HEART_BEAT,
 * UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP, NOTIFY_CONSUMER_IDS_CHANGED to a
 * group's members on every membership change, queue locks for orderly consumers, and
 * expiry of clients silent for clientChannelMaxIdleTimeSeconds.
 *
 * Groups hold connection tags (slot and generation), never pointers: a closed
 * connection's tag simply stops resolving, and its close hook removes it everywhere.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker_int.h"
#include "core/log.h"
#include "core/util.h"

#define HEARTBEAT_GROUPS_MAX 1024
#define SUBS_PER_GROUP_MAX 1024
#define GROUPS_MAX 100000
#define LOCKS_MAX 1000000

static const char *const consume_types[] = {"CONSUME_ACTIVELY", "CONSUME_PASSIVELY"};
static const char *const message_models[] = {"BROADCASTING", "CLUSTERING"};
static const char *const consume_froms[] = {
    "CONSUME_FROM_LAST_OFFSET", "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    "CONSUME_FROM_MIN_OFFSET", "CONSUME_FROM_MAX_OFFSET", "CONSUME_FROM_FIRST_OFFSET",
    "CONSUME_FROM_TIMESTAMP"};

/* ---- membership ------------------------------------------------------------------------------ */

static int
members_add(uint64_t **m, uint32_t *count, uint32_t *cap, uint64_t tag, bool *added)
{
    *added = false;
    for (uint32_t i = 0; i < *count; i++) {
        if ((*m)[i] == tag) {
            return 0;
        }
    }
    if (*count == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 4;
        uint64_t *n = realloc(*m, ncap * sizeof(*n));

        if (n == NULL) {
            return -ENOMEM;
        }
        *m = n;
        *cap = ncap;
    }
    (*m)[(*count)++] = tag;
    *added = true;
    return 0;
}

static bool
members_del(uint64_t *m, uint32_t *count, uint64_t tag)
{
    for (uint32_t i = 0; i < *count; i++) {
        if (m[i] == tag) {
            m[i] = m[--*count];
            return true;
        }
    }
    return false;
}

static void
subs_free(struct rmq_consumer_group *g)
{
    for (uint32_t i = 0; i < g->sub_count; i++) {
        free(g->subs[i].sub_string);
    }
    free(g->subs);
    g->subs = NULL;
    g->sub_count = 0;
}

static void
group_free(struct rmq_consumer_group *g)
{
    subs_free(g);
    free(g->members);
    free(g);
}

/* Tell every member of g that the member list changed (oneway, no answer expected). */
static void
notify_group(struct rmq_broker *b, const struct rmq_consumer_group *g)
{
    for (uint32_t i = 0; i < g->member_count; i++) {
        struct rmq_conn *c = rmq_broker__conn_from_tag(b, g->members[i]);
        struct rmq_conn_info *ci;
        struct rmq_header h;
        int ret;

        if (c == NULL || b->stopping) {
            continue;
        }
        ci = rmq_broker__info(b, c);
        rmq_header_init(&h, RMQ_REQ_NOTIFY_CONSUMER_IDS_CHANGED, (enum rmq_serialize)ci->serialize);
        h.flag |= RMQ_FLAG_ONEWAY;
        h.opaque = 0;
        rmq_header_add(&h, "consumerGroup", g->name);
        ret = rmq_conn_send(c, &h, NULL, 0);
        if (ret < 0) {
            RMQ_LOG_RL(RMQ_LOG_WARN, 5000, "broker: NOTIFY_CONSUMER_IDS_CHANGED not sent peer=%s "
                       "group=%s err=%s", c->peer_str, g->name, strerror(-ret));
        }
    }
}

/* Release every queue lock clientId holds in group (NULL: in any group). */
static void
locks_release_client(struct rmq_broker *b, const char *client_id, const char *group)
{
    struct rmq_queue_lock *l;
    size_t glen = group != NULL ? strlen(group) : 0;
    uint32_t pos = 0;

    if (client_id[0] == '\0') {
        return;
    }
    while ((l = rmq_strmap_next(&b->locks, &pos)) != NULL) {
        if (strcmp(l->client_id, client_id) == 0 &&
            (group == NULL || (strncmp(l->key, group, glen) == 0 && l->key[glen] == '@'))) {
            rmq_strmap_del(&b->locks, l->key);
            free(l);
        }
    }
}

/* Remove the connection from consumer group name (or from all when NULL). */
static void
consumer_leave(struct rmq_broker *b, uint64_t tag, const char *name)
{
    struct rmq_consumer_group *g;
    uint32_t pos = 0;

    while ((g = rmq_strmap_next(&b->consumers, &pos)) != NULL) {
        if (name != NULL && strcmp(g->name, name) != 0) {
            continue;
        }
        if (!members_del(g->members, &g->member_count, tag)) {
            continue;
        }
        RMQ_INFO("broker: consumer left group=%s members=%u", g->name, g->member_count);
        if (g->member_count == 0) {
            rmq_strmap_del(&b->consumers, g->name);
            group_free(g);
        } else {
            notify_group(b, g);
        }
    }
}

static void
producer_leave(struct rmq_broker *b, uint64_t tag, const char *name)
{
    struct rmq_producer_group *g;
    uint32_t pos = 0;

    while ((g = rmq_strmap_next(&b->producers, &pos)) != NULL) {
        if ((name == NULL || strcmp(g->name, name) == 0) &&
            members_del(g->members, &g->member_count, tag) && g->member_count == 0) {
            rmq_strmap_del(&b->producers, g->name);
            free(g->members);
            free(g);
        }
    }
}

void
rmq_broker__clients_conn_closed(struct rmq_broker *b, struct rmq_conn *c)
{
    struct rmq_conn_info *ci = &b->conns[rmq_server_conn_index(&b->srv, c)];
    uint64_t tag = rmq_broker__conn_tag(b, c);

    if (!ci->known) {
        return;
    }
    consumer_leave(b, tag, NULL);
    producer_leave(b, tag, NULL);
    locks_release_client(b, ci->client_id, NULL);
}

/*
 * Two rules, each after clientChannelMaxIdleTimeSeconds: a client that stops sending
 * heartbeats, and any connection with no byte read or written (the reference's idle
 * handler), heartbeat or not: else silent sockets would hold connection slots and
 * send buffers for as long as the broker runs.
 */
void
rmq_broker__clients_scan(struct rmq_broker *b)
{
    uint64_t now = rmq_broker__now_ms(b);
    uint64_t idle = (uint64_t)b->cfg.channel_idle_s * 1000u;
    uint64_t now_ns = b->loop->now_ns;

    for (uint32_t i = 0; i < b->srv.max_conns; i++) {
        struct rmq_conn *c = &b->srv.conns[i];
        struct rmq_conn_info *ci = &b->conns[i];

        if (!rmq_conn_is_open(c)) {
            continue;
        }
        if (ci->gen == c->gen && ci->known && now - ci->last_beat_ms > idle) {
            RMQ_WARN("broker: client silent for %llu s, closing peer=%s clientId=%s",
                     (unsigned long long)((now - ci->last_beat_ms) / 1000), c->peer_str,
                     ci->client_id);
            rmq_conn_close(c, -ETIMEDOUT);
        } else if (now_ns - c->active_ns > idle * 1000000u) {
            RMQ_WARN("broker: connection idle for %llu s (nothing read or written), closing "
                     "peer=%s", (unsigned long long)((now_ns - c->active_ns) / 1000000000u),
                     c->peer_str);
            rmq_conn_close(c, -ETIMEDOUT);
        }
    }
}

void
rmq_broker__clients_fini(struct rmq_broker *b)
{
    uint32_t pos = 0;
    void *v;

    while ((v = rmq_strmap_next(&b->consumers, &pos)) != NULL) {
        group_free(v);
    }
    pos = 0;
    while ((v = rmq_strmap_next(&b->producers, &pos)) != NULL) {
        free(((struct rmq_producer_group *)v)->members);
        free(v);
    }
    pos = 0;
    while ((v = rmq_strmap_next(&b->locks, &pos)) != NULL) {
        free(v);
    }
}

/* ---- HEART_BEAT ------------------------------------------------------------------------------ */

static bool
name_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    return n > 0 && n <= RMQ_GROUP_NAME_MAX && rmq_name_chars_valid(s, n);
}

/* Parse a subscriptionDataSet into subs (owned). -EINVAL with *why. */
static int
parse_subs(const cJSON *set, struct rmq_subscription **out, uint32_t *count, const char **why)
{
    uint32_t n = (uint32_t)cJSON_GetArraySize(set);
    struct rmq_subscription *subs;
    uint32_t i = 0;
    const cJSON *e;

    *out = NULL;
    *count = 0;
    if (n > SUBS_PER_GROUP_MAX) {
        *why = "more than 1024 subscriptions in one group";
        return -EINVAL;
    }
    if (n == 0) {
        return 0;
    }
    subs = calloc(n, sizeof(*subs));
    if (subs == NULL) {
        *why = "out of memory";
        return -ENOMEM;
    }
    cJSON_ArrayForEach(e, set) {
        const char *topic = rmq_json_get_str(e, "topic");
        const char *sub = rmq_json_get_str(e, "subString");
        struct rmq_subscription *s = &subs[i];

        if (topic == NULL || !rmq_topic_name_valid(topic, strlen(topic))) {
            *why = "a subscription without a valid topic";
            goto fail;
        }
        snprintf(s->topic, sizeof(s->topic), "%s", topic);
        if (sub == NULL) {
            sub = "*";
        }
        s->sub_string = strdup(sub);
        if (s->sub_string == NULL) {
            *why = "out of memory";
            goto fail;
        }
        i++;
        if (rmq_broker__parse_tags(sub, strlen(sub), s->codes, &s->code_count, &s->all) < 0) {
            *why = "a subscription with more than 32 tags";
            goto fail;
        }
        s->sub_version = rmq_json_get_i64(e, "subVersion", 0);
    }
    *out = subs;
    *count = i;
    return 0;
fail:
    for (uint32_t j = 0; j < i; j++) {
        free(subs[j].sub_string);
    }
    free(subs);
    return -EINVAL;
}

static bool
subs_equal(const struct rmq_consumer_group *g, const struct rmq_subscription *s, uint32_t n)
{
    if (g->sub_count != n) {
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (strcmp(g->subs[i].topic, s[i].topic) != 0 ||
            strcmp(g->subs[i].sub_string, s[i].sub_string) != 0) {
            return false;
        }
    }
    return true;
}

static int
consumer_beat(struct rmq_broker *b, uint64_t tag, const cJSON *cd, const char **why)
{
    const char *name = rmq_json_get_str(cd, "groupName");
    struct rmq_consumer_group *g;
    struct rmq_subscription *subs;
    char retry[RMQ_TOPIC_NAME_MAX + 1];
    uint32_t nsubs;
    bool added;
    bool changed;
    int ret;

    if (!name_ok(name)) {
        *why = "a consumer group name that is empty, too long or has characters outside "
               "[%|a-zA-Z0-9_-]";
        return -EINVAL;
    }
    ret = parse_subs(cJSON_GetObjectItemCaseSensitive(cd, "subscriptionDataSet"), &subs, &nsubs,
                     why);
    if (ret < 0) {
        return ret;
    }
    g = rmq_strmap_get(&b->consumers, name);
    if (g == NULL) {
        if (rmq_strmap_len(&b->consumers) >= GROUPS_MAX || (g = calloc(1, sizeof(*g))) == NULL) {
            *why = "too many consumer groups";
            goto fail;
        }
        snprintf(g->name, sizeof(g->name), "%s", name);
        if (rmq_strmap_put(&b->consumers, g->name, g) < 0) {
            free(g);
            *why = "out of memory";
            goto fail;
        }
        RMQ_INFO("broker: new consumer group=%s", name);
    }
    g->consume_type = rmq_json_get_enum(cd, "consumeType", consume_types, 2, 1);
    g->message_model = rmq_json_get_enum(cd, "messageModel", message_models, 2, 1);
    g->consume_from = rmq_json_get_enum(cd, "consumeFromWhere", consume_froms, 6, 0);
    if (members_add(&g->members, &g->member_count, &g->member_cap, tag, &added) < 0) {
        *why = "out of memory";
        goto fail;
    }
    changed = !subs_equal(g, subs, nsubs);
    if (changed) {
        subs_free(g);
        g->subs = subs;
        g->sub_count = nsubs;
    } else {
        for (uint32_t i = 0; i < nsubs; i++) {
            g->subs[i].sub_version = subs[i].sub_version;
            free(subs[i].sub_string);
        }
        free(subs);
    }
    if (snprintf(retry, sizeof(retry), "%%RETRY%%%s", name) < (int)sizeof(retry)) {
        rmq_broker__topic_ensure(b, retry, 1, RMQ_PERM_READ | RMQ_PERM_WRITE);
    }
    if (added || changed) {
        RMQ_INFO("broker: consumer group=%s %s members=%u", name,
                 added ? "member joined" : "subscriptions changed", g->member_count);
        notify_group(b, g);
    }
    return 0;
fail:
    for (uint32_t i = 0; i < nsubs; i++) {
        free(subs[i].sub_string);
    }
    free(subs);
    return -ENOMEM;
}

static int
producer_beat(struct rmq_broker *b, uint64_t tag, const cJSON *pd, const char **why)
{
    const char *name = rmq_json_get_str(pd, "groupName");
    struct rmq_producer_group *g;
    bool added;

    if (!name_ok(name)) {
        *why = "a producer group name that is empty, too long or has characters outside "
               "[%|a-zA-Z0-9_-]";
        return -EINVAL;
    }
    g = rmq_strmap_get(&b->producers, name);
    if (g == NULL) {
        if (rmq_strmap_len(&b->producers) >= GROUPS_MAX || (g = calloc(1, sizeof(*g))) == NULL) {
            *why = "too many producer groups";
            return -ENOSPC;
        }
        snprintf(g->name, sizeof(g->name), "%s", name);
        if (rmq_strmap_put(&b->producers, g->name, g) < 0) {
            free(g);
            *why = "out of memory";
            return -ENOMEM;
        }
    }
    if (members_add(&g->members, &g->member_count, &g->member_cap, tag, &added) < 0) {
        *why = "out of memory";
        return -ENOMEM;
    }
    return 0;
}

static void
h_heartbeat(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct rmq_conn_info *ci = rmq_broker__info(b, c);
    uint64_t tag = rmq_broker__conn_tag(b, c);
    const char *why = NULL;
    const char *client_id;
    const cJSON *set;
    const cJSON *e;
    cJSON *root;

    (void)ref;
    root = rmq_json_parse((const char *)req->body, req->body_len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "heartbeat body is not a JSON object (%u bytes)", req->body_len);
        return;
    }
    client_id = rmq_json_get_str(root, "clientID");
    if (client_id == NULL || client_id[0] == '\0' || strlen(client_id) >= sizeof(ci->client_id)) {
        cJSON_Delete(root);
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "heartbeat without a clientID (or one over %zu bytes)",
                          sizeof(ci->client_id) - 1);
        return;
    }
    snprintf(ci->client_id, sizeof(ci->client_id), "%s", client_id);
    ci->known = true;
    ci->language = req->h.language;
    ci->serialize = req->h.serialize;
    ci->version = req->h.version;
    ci->last_beat_ms = rmq_broker__now_ms(b);
    set = cJSON_GetObjectItemCaseSensitive(root, "consumerDataSet");
    if (cJSON_GetArraySize(set) + cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
                                       root, "producerDataSet")) > HEARTBEAT_GROUPS_MAX) {
        cJSON_Delete(root);
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "heartbeat names more than %d groups", HEARTBEAT_GROUPS_MAX);
        return;
    }
    cJSON_ArrayForEach(e, set) {
        if (consumer_beat(b, tag, e, &why) < 0) {
            break;
        }
    }
    if (why == NULL) {
        set = cJSON_GetObjectItemCaseSensitive(root, "producerDataSet");
        cJSON_ArrayForEach(e, set) {
            if (producer_beat(b, tag, e, &why) < 0) {
                break;
            }
        }
    }
    cJSON_Delete(root);
    if (why != NULL) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "heartbeat refused: %s", why);
        return;
    }
    rmq_broker__reply_ok(c, &req->h, NULL, 0);
}

/* ---- UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP -------------------------------------------- */

static void
h_unregister(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    struct rmq_conn_info *ci = rmq_broker__info(b, c);
    uint64_t tag = rmq_broker__conn_tag(b, c);
    char client_id[RMQ_BROKER_CLIENT_ID_MAX];
    char pg[RMQ_GROUP_NAME_MAX + 1] = "";
    char cg[RMQ_GROUP_NAME_MAX + 1] = "";

    (void)ref;
    if (!rmq_broker__need_str(c, req, "clientID", client_id, sizeof(client_id))) {
        return;
    }
    if (rmq_broker__field_str(req, "producerGroup", pg, sizeof(pg)) > 0 && pg[0] != '\0') {
        producer_leave(b, tag, pg);
    }
    if (rmq_broker__field_str(req, "consumerGroup", cg, sizeof(cg)) > 0 && cg[0] != '\0') {
        consumer_leave(b, tag, cg);
        locks_release_client(b, client_id, cg);
    }
    (void)ci;
    rmq_broker__reply_ok(c, &req->h, NULL, 0);
}

static void
h_consumer_list(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                void *ctx)
{
    struct rmq_broker *b = ctx;
    char group[RMQ_GROUP_NAME_MAX + 1];
    const struct rmq_consumer_group *g;
    uint32_t live = 0;

    (void)ref;
    if (!rmq_broker__need_str(c, req, "consumerGroup", group, sizeof(group))) {
        return;
    }
    g = rmq_strmap_get(&b->consumers, group);
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&b->out);
    rmq_jw_key(&b->out, "consumerIdList");
    rmq_jw_arr_begin(&b->out);
    for (uint32_t i = 0; g != NULL && i < g->member_count; i++) {
        struct rmq_conn *m = rmq_broker__conn_from_tag(b, g->members[i]);

        if (m != NULL) {
            rmq_jw_str(&b->out, rmq_broker__info(b, m)->client_id);
            live++;
        }
    }
    rmq_jw_arr_end(&b->out);
    rmq_jw_obj_end(&b->out);
    if (live == 0) {
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR, "no consumer for this group, %s",
                          group);
        return;
    }
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

/* ---- LOCK_BATCH_MQ / UNLOCK_BATCH_MQ ------------------------------------------------------------ */

static void
h_lock(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_broker *b = ctx;
    bool unlock = req->h.code == RMQ_REQ_UNLOCK_BATCH_MQ;
    uint64_t now = rmq_broker__now_ms(b);
    const char *group, *client;
    const cJSON *set, *e;
    cJSON *root;

    (void)ref;
    root = rmq_json_parse((const char *)req->body, req->body_len);
    group = root != NULL ? rmq_json_get_str(root, "consumerGroup") : NULL;
    client = root != NULL ? rmq_json_get_str(root, "clientId") : NULL;
    set = root != NULL ? cJSON_GetObjectItemCaseSensitive(root, "mqSet") : NULL;
    if (!name_ok(group) || client == NULL || client[0] == '\0' ||
        strlen(client) >= RMQ_BROKER_CLIENT_ID_MAX || !cJSON_IsArray(set)) {
        cJSON_Delete(root);
        rmq_broker__reply(c, &req->h, RMQ_RESP_SYSTEM_ERROR,
                          "lock body needs consumerGroup, clientId and mqSet");
        return;
    }
    rmq_jw_reset(&b->out, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&b->out);
    rmq_jw_key(&b->out, "lockOKMQSet");
    rmq_jw_arr_begin(&b->out);
    cJSON_ArrayForEach(e, set) {
        const char *topic = rmq_json_get_str(e, "topic");
        const char *bname = rmq_json_get_str(e, "brokerName");
        int64_t qid = rmq_json_get_i64(e, "queueId", -1);
        struct rmq_queue_lock *l;
        char key[sizeof(l->key)];

        if (topic == NULL || !rmq_topic_name_valid(topic, strlen(topic)) || qid < 0 ||
            qid > 65535) {
            continue;
        }
        snprintf(key, sizeof(key), "%s@%s@%d", group, topic, (int)qid);
        l = rmq_strmap_get(&b->locks, key);
        if (unlock) {
            if (l != NULL && strcmp(l->client_id, client) == 0) {
                rmq_strmap_del(&b->locks, key);
                free(l);
            }
            continue;
        }
        if (l == NULL) {
            if (rmq_strmap_len(&b->locks) >= LOCKS_MAX || (l = calloc(1, sizeof(*l))) == NULL) {
                continue;
            }
            memcpy(l->key, key, sizeof(key));
            if (rmq_strmap_put(&b->locks, l->key, l) < 0) {
                free(l);
                continue;
            }
        } else if (strcmp(l->client_id, client) != 0 && now - l->last_ms <= RMQ_LOCK_MAX_LIVE_MS) {
            continue;               /* held by a live other client */
        }
        snprintf(l->client_id, sizeof(l->client_id), "%s", client);
        l->last_ms = now;
        rmq_jw_obj_begin(&b->out);
        rmq_jw_key(&b->out, "brokerName");
        rmq_jw_str(&b->out, bname != NULL ? bname : b->cfg.broker_name);
        rmq_jw_key(&b->out, "queueId");
        rmq_jw_i64(&b->out, qid);
        rmq_jw_key(&b->out, "topic");
        rmq_jw_str(&b->out, topic);
        rmq_jw_obj_end(&b->out);
    }
    rmq_jw_arr_end(&b->out);
    rmq_jw_obj_end(&b->out);
    cJSON_Delete(root);
    if (unlock) {
        rmq_broker__reply_ok(c, &req->h, NULL, 0);
        return;
    }
    rmq_broker__reply_json(b, c, &req->h, NULL);
}

void
rmq_broker__clients_install(struct rmq_broker *b)
{
    rmq_server_handle(&b->srv, RMQ_REQ_HEART_BEAT, h_heartbeat, b);
    rmq_server_handle(&b->srv, RMQ_REQ_UNREGISTER_CLIENT, h_unregister, b);
    rmq_server_handle(&b->srv, RMQ_REQ_GET_CONSUMER_LIST_BY_GROUP, h_consumer_list, b);
    rmq_server_handle(&b->srv, RMQ_REQ_LOCK_BATCH_MQ, h_lock, b);
    rmq_server_handle(&b->srv, RMQ_REQ_UNLOCK_BATCH_MQ, h_lock, b);
}
