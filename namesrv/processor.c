/*
 * NameServer request handlers (spec/REMOTING.md §11). Each reads its extFields,
 * acts on the route table or the KV config, and answers once. Every refusal is an
 * error code the caller can act on (SYSTEM_ERROR with the reason, TOPIC_NOT_EXIST,
 * QUERY_NOT_FOUND) plus one rate-limited log line naming the peer; a peer cannot
 * crash or stall the loop with what it sends.
 *
 * Response bodies are written into one reused JSON buffer (ns->out), so a route
 * lookup allocates nothing once the buffer has grown to the largest route.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/crc32.h"
#include "core/log.h"
#include "core/util.h"
#include "namesrv/namesrv_int.h"
#include "net/handler.h"

#define EXPIRED_LOG_MAX 64
#define REMARK_MAX 1024
#define TOPIC_NOT_EXIST_FAQ "\nSee http://rocketmq.apache.org/docs/faq/ for further details."

static uint64_t
now_ms(const struct rmq_namesrv *ns)
{
    return ns->loop->now_ns / 1000000u;
}

uint64_t
rmq_namesrv__conn_tag(const struct rmq_namesrv *ns, const struct rmq_conn *c)
{
    return ((uint64_t)rmq_server_conn_index(ns->srv, c) + 1) << 32 | c->gen;
}

static struct rmq_conn *
conn_from_tag(const struct rmq_namesrv *ns, uint64_t tag)
{
    uint64_t slot = tag >> 32;
    struct rmq_conn *c;

    if (slot == 0 || slot > ns->srv->max_conns) {
        return NULL;
    }
    c = &ns->srv->conns[slot - 1];
    return c->gen == (uint32_t)tag && rmq_conn_is_open(c) ? c : NULL;
}

/* ---- replies ------------------------------------------------------------------------- */

static void
send_reply(struct rmq_conn *c, const struct rmq_header *req, const struct rmq_header *resp,
           const void *body, size_t body_len)
{
    rmq_handler_send(c, req, resp, body, body_len, "namesrv");
}

/* An error answer with a formatted remark, and one rate-limited line saying why. */
static void __attribute__((format(printf, 4, 5)))
reply_error(struct rmq_conn *c, const struct rmq_frame *req, int32_t code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rmq_handler_vreply(c, &req->h, "namesrv", code, fmt, ap);
    va_end(ap);
}

static void
reply_ok(struct rmq_conn *c, const struct rmq_frame *req, const void *body, size_t body_len)
{
    struct rmq_header resp;

    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    send_reply(c, &req->h, &resp, body, body_len);
}

/* Finish ns->out and send it as the SUCCESS body. */
static void
reply_json(struct rmq_namesrv *ns, struct rmq_conn *c, const struct rmq_frame *req,
           struct rmq_header *resp)
{
    struct rmq_header ok;
    const char *text;
    size_t len;
    int ret = rmq_jw_finish(&ns->out, &text, &len);

    if (ret < 0) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "response body not encoded: %s",
                    strerror(-ret));
        return;
    }
    if (resp == NULL) {
        rmq_header_init_response(&ok, &req->h, RMQ_RESP_SUCCESS);
        resp = &ok;
    }
    send_reply(c, &req->h, resp, text, len);
}

/* ---- extFields (net/handler.h) ------------------------------------------------------------ */

static bool
need_str(struct rmq_conn *c, const struct rmq_frame *req, const char *name, char *buf,
         size_t cap)
{
    return rmq_need_str(c, req, "namesrv", name, buf, cap);
}

static bool
opt_str(struct rmq_conn *c, const struct rmq_frame *req, const char *name, char *buf, size_t cap)
{
    return rmq_opt_str(c, req, "namesrv", name, buf, cap);
}

static bool
need_i64(struct rmq_conn *c, const struct rmq_frame *req, const char *name, int64_t *out)
{
    return rmq_need_i64(c, req, "namesrv", name, out);
}

#define NAME_BUF (RMQ_NAMESRV_NAME_MAX + 1)
#define ADDR_BUF (RMQ_NAMESRV_ADDR_MAX + 1)
#define KV_BUF 4096

/* ---- brokers ------------------------------------------------------------------------- */

static void
h_register_broker(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                  void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char cluster[NAME_BUF];
    char name[NAME_BUF];
    char addr[ADDR_BUF];
    char ha[ADDR_BUF];
    int64_t broker_id;
    bool compressed = false;
    int32_t crc = 0;
    struct rmq_namesrv__register_body rb;
    struct rmq_register_req rr;
    struct rmq_register_result res;
    struct rmq_header resp;
    const char *why;
    bool was_live;
    int ret;

    (void)ref;
    if (!need_str(c, req, "brokerName", name, sizeof(name)) ||
        !need_str(c, req, "brokerAddr", addr, sizeof(addr)) ||
        !need_str(c, req, "clusterName", cluster, sizeof(cluster)) ||
        !need_str(c, req, "haServerAddr", ha, sizeof(ha)) ||
        !need_i64(c, req, "brokerId", &broker_id)) {
        return;
    }
    rmq_header_get_bool(&req->h, "compressed", &compressed);
    if (rmq_header_get_i32(&req->h, "bodyCrc32", &crc) == 0 && crc != 0 &&
        (uint32_t)crc != rmq_crc32_masked(req->body, req->body_len)) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "crc32 not match");
        return;
    }
    ret = rmq_namesrv__register_body_decode(&rb, req->body, req->body_len, compressed, &why);
    if (ret < 0) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "register body refused broker=%s addr=%s: %s",
                    name, addr, why);
        return;
    }
    rr = (struct rmq_register_req){
        .cluster = cluster,
        .broker_name = name,
        .broker_addr = addr,
        .ha_server_addr = ha,
        .broker_id = broker_id,
        .has_topic_config = rb.has_topic_config,
        .data_version = rb.data_version,
        .topics = rb.topics,
        .topic_count = rb.topic_count,
        .filter_servers = rb.filter_servers,
        .filter_server_count = rb.filter_server_count,
        .conn_tag = rmq_namesrv__conn_tag(ns, c),
    };
    was_live = rmq_routeinfo_is_live(&ns->routes, addr);
    ret = rmq_routeinfo_validate(&rr, &why);
    if (ret == 0) {
        ret = rmq_routeinfo_register(&ns->routes, &rr, now_ms(ns), &res);
        why = ret == -ENOSPC ? "the NameServer's topic, broker or broker id limit is reached"
                             : "out of memory";
    }
    rmq_namesrv__register_body_fini(&rb);
    if (ret < 0) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "register refused broker=%s addr=%s: %s", name,
                    addr, why);
        return;
    }
    ns->conn_has_broker[rmq_server_conn_index(ns->srv, c)] = 1;
    if (!was_live) {
        RMQ_INFO("namesrv: broker registered cluster=%s broker=%s id=%lld addr=%s topics=%u "
                 "peer=%s", cluster, name, (long long)broker_id, addr, rr.topic_count,
                 c->peer_str);
    }
    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    if (res.has_master) {
        rmq_header_add(&resp, "haServerAddr", res.ha_server_addr);
        rmq_header_add(&resp, "masterAddr", res.master_addr);
    }
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    if (rmq_kvconfig_write_namespace(&ns->kv, RMQ_KV_ORDER_TOPIC_CONFIG, &ns->out)) {
        reply_json(ns, c, req, &resp);
    } else {
        send_reply(c, &req->h, &resp, NULL, 0);
    }
}

static void
h_unregister_broker(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                    void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char cluster[NAME_BUF];
    char name[NAME_BUF];
    char addr[ADDR_BUF];
    int64_t broker_id;

    (void)ref;
    if (!need_str(c, req, "brokerName", name, sizeof(name)) ||
        !need_str(c, req, "brokerAddr", addr, sizeof(addr)) ||
        !need_str(c, req, "clusterName", cluster, sizeof(cluster)) ||
        !need_i64(c, req, "brokerId", &broker_id)) {
        return;
    }
    rmq_routeinfo_unregister(&ns->routes, cluster, name, addr, broker_id);
    RMQ_INFO("namesrv: broker unregistered cluster=%s broker=%s id=%lld addr=%s", cluster, name,
             (long long)broker_id, addr);
    reply_ok(c, req, NULL, 0);
}

static void
h_query_data_version(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                     void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char addr[ADDR_BUF];
    struct rmq_data_version dv = {0, 0};
    struct rmq_data_version stored;
    struct rmq_header resp;
    bool has_stored;
    bool changed;
    cJSON *body;

    (void)ref;
    if (!need_str(c, req, "brokerAddr", addr, sizeof(addr))) {
        return;
    }
    body = rmq_json_parse((const char *)req->body, req->body_len);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "body is not a DataVersion JSON object");
        return;
    }
    dv.counter = rmq_json_get_i64(body, "counter", 0);
    dv.timestamp = rmq_json_get_i64(body, "timestamp", 0);
    cJSON_Delete(body);
    changed = rmq_routeinfo_query_data_version(&ns->routes, addr, &dv, now_ms(ns), &stored,
                                               &has_stored);
    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    rmq_header_add(&resp, "changed", changed ? "true" : "false");
    if (!has_stored) {
        send_reply(c, &req->h, &resp, NULL, 0);
        return;
    }
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    rmq_jw_data_version(&ns->out, &stored);
    reply_json(ns, c, req, &resp);
}

/* ---- routes and lists ---------------------------------------------------------------- */

static void
h_get_route(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    const char *order_conf = NULL;
    char topic_buf[NAME_BUF];
    struct rmq_str topic;

    (void)ref;
    if (!rmq_header_get(&req->h, "topic", &topic)) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "the custom field <topic> is null");
        return;
    }
    if (ns->cfg.order_message_enable && rmq_field_str(req, "topic", topic_buf, sizeof(topic_buf)) > 0) {
        order_conf = rmq_kvconfig_get(&ns->kv, RMQ_KV_ORDER_TOPIC_CONFIG, topic_buf);
    }
    rmq_jw_reset(&ns->out, rmq_json_route_dialect(&req->h));
    if (rmq_routeinfo_write_route(&ns->routes, topic.ptr, topic.len, order_conf, &ns->out) < 0) {
        struct rmq_header resp;
        char remark[REMARK_MAX];

        /* normal for new topics (clients then ask for TBW102): no log line */
        snprintf(remark, sizeof(remark), "No topic route info in name server for the topic: "
                 "%.*s" TOPIC_NOT_EXIST_FAQ, (int)RMQ_MIN(topic.len, 255u), topic.ptr);
        rmq_header_init_response(&resp, &req->h, RMQ_RESP_TOPIC_NOT_EXIST);
        rmq_header_set_remark(&resp, remark);
        send_reply(c, &req->h, &resp, NULL, 0);
        return;
    }
    reply_json(ns, c, req, NULL);
}

static void
h_cluster_info(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
               void *ctx)
{
    struct rmq_namesrv *ns = ctx;

    (void)ref;
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_cluster_info(&ns->routes, &ns->out);
    reply_json(ns, c, req, NULL);
}

static void
h_all_topics(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;

    (void)ref;
    if (!ns->cfg.enable_all_topic_list) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "disable");
        return;
    }
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_topic_list(&ns->routes, NULL, &ns->out);
    reply_json(ns, c, req, NULL);
}

static void
h_topics_by_cluster(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                    void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char cluster[NAME_BUF];

    (void)ref;
    if (!ns->cfg.enable_topic_list) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "disable");
        return;
    }
    if (!need_str(c, req, "cluster", cluster, sizeof(cluster))) {
        return;
    }
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_topic_list(&ns->routes, cluster, &ns->out);
    reply_json(ns, c, req, NULL);
}

static void
h_system_topics(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                void *ctx)
{
    struct rmq_namesrv *ns = ctx;

    (void)ref;
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_system_topic_list(&ns->routes, &ns->out);
    reply_json(ns, c, req, NULL);
}

/* GET_UNIT_TOPIC_LIST, GET_HAS_UNIT_SUB_TOPIC_LIST, GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST */
static void
h_unit_topics(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    int32_t code = req->h.code;

    (void)ref;
    if (!ns->cfg.enable_topic_list) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "disable");
        return;
    }
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_unit_topic_list(&ns->routes, code == RMQ_REQ_GET_UNIT_TOPIC_LIST ? 1 : 2,
                                        code == RMQ_REQ_GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
                                        &ns->out);
    reply_json(ns, c, req, NULL);
}

static void
h_delete_topic(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char topic[NAME_BUF];
    char cluster[NAME_BUF];

    (void)ref;
    if (!need_str(c, req, "topic", topic, sizeof(topic)) ||
        !opt_str(c, req, "clusterName", cluster, sizeof(cluster))) {
        return;
    }
    if (rmq_routeinfo_delete_topic(&ns->routes, topic, cluster)) {
        RMQ_INFO("namesrv: topic deleted topic=%s cluster=%s peer=%s", topic,
                 cluster[0] ? cluster : "(all)", c->peer_str);
    }
    reply_ok(c, req, NULL, 0);
}

static void
h_write_perm(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    bool wipe = req->h.code == RMQ_REQ_WIPE_WRITE_PERM_OF_BROKER;
    char name[NAME_BUF];
    struct rmq_header resp;
    uint32_t n;

    (void)ref;
    if (!need_str(c, req, "brokerName", name, sizeof(name))) {
        return;
    }
    n = wipe ? rmq_routeinfo_wipe_write_perm(&ns->routes, name)
             : rmq_routeinfo_add_write_perm(&ns->routes, name);
    RMQ_INFO("namesrv: write permission %s broker=%s topics=%u peer=%s",
             wipe ? "wiped" : "added", name, n, c->peer_str);
    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    rmq_header_add_i64(&resp, wipe ? "wipeTopicCount" : "addTopicCount", n);
    send_reply(c, &req->h, &resp, NULL, 0);
}

/* ---- KV config ----------------------------------------------------------------------- */

static void
h_put_kv(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char nspace[NAME_BUF];
    char key[NAME_BUF];
    char value[KV_BUF];
    int ret;

    (void)ref;
    if (!need_str(c, req, "namespace", nspace, sizeof(nspace)) ||
        !need_str(c, req, "key", key, sizeof(key)) ||
        !need_str(c, req, "value", value, sizeof(value))) {
        return;
    }
    ret = rmq_kvconfig_put(&ns->kv, nspace, key, value);
    if (ret == -ENOSPC) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "KV config full namespace=%s key=%s: the "
                    "file would pass %u MiB and not load at the next start; delete keys first",
                    nspace, key, RMQ_KV_FILE_MAX >> 20);
        return;
    }
    if (ret == 0) {
        ret = rmq_kvconfig_persist(&ns->kv);
    }
    if (ret < 0) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "KV config not saved namespace=%s key=%s "
                    "path=%s: %s", nspace, key, ns->kv.path ? ns->kv.path : "-", strerror(-ret));
        return;
    }
    RMQ_INFO("namesrv: KV config put namespace=%s key=%s value=%s", nspace, key, value);
    reply_ok(c, req, NULL, 0);
}

static void
h_get_kv(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char nspace[NAME_BUF];
    char key[NAME_BUF];
    struct rmq_header resp;
    const char *value;

    (void)ref;
    if (!need_str(c, req, "namespace", nspace, sizeof(nspace)) ||
        !need_str(c, req, "key", key, sizeof(key))) {
        return;
    }
    value = rmq_kvconfig_get(&ns->kv, nspace, key);
    if (value == NULL) {
        struct rmq_header nf;
        char remark[REMARK_MAX];

        /* a lookup miss is an answer, not a fault: no log line */
        snprintf(remark, sizeof(remark), "No config item, Namespace: %s Key: %s", nspace, key);
        rmq_header_init_response(&nf, &req->h, RMQ_RESP_QUERY_NOT_FOUND);
        rmq_header_set_remark(&nf, remark);
        send_reply(c, &req->h, &nf, NULL, 0);
        return;
    }
    rmq_header_init_response(&resp, &req->h, RMQ_RESP_SUCCESS);
    rmq_header_add(&resp, "value", value);
    send_reply(c, &req->h, &resp, NULL, 0);
}

static void
h_delete_kv(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char nspace[NAME_BUF];
    char key[NAME_BUF];
    int ret;

    (void)ref;
    if (!need_str(c, req, "namespace", nspace, sizeof(nspace)) ||
        !need_str(c, req, "key", key, sizeof(key))) {
        return;
    }
    if (rmq_kvconfig_delete(&ns->kv, nspace, key)) {
        ret = rmq_kvconfig_persist(&ns->kv);
        if (ret < 0) {
            reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "KV config not saved namespace=%s key=%s "
                        "path=%s: %s", nspace, key, ns->kv.path, strerror(-ret));
            return;
        }
        RMQ_INFO("namesrv: KV config deleted namespace=%s key=%s", nspace, key);
    }
    reply_ok(c, req, NULL, 0);
}

static void
h_kv_list(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    char nspace[NAME_BUF];

    (void)ref;
    if (!need_str(c, req, "namespace", nspace, sizeof(nspace))) {
        return;
    }
    rmq_jw_reset(&ns->out, RMQ_JSON_FASTJSON);
    if (!rmq_kvconfig_write_namespace(&ns->kv, nspace, &ns->out)) {
        struct rmq_header nf;
        char remark[REMARK_MAX];

        snprintf(remark, sizeof(remark), "No config item, Namespace: %s", nspace);
        rmq_header_init_response(&nf, &req->h, RMQ_RESP_QUERY_NOT_FOUND);
        rmq_header_set_remark(&nf, remark);
        send_reply(c, &req->h, &nf, NULL, 0);
        return;
    }
    reply_json(ns, c, req, NULL);
}

/* ---- NameServer config (mqadmin getNamesrvConfig / updateNamesrvConfig) -------------- */

/* Keys a running NameServer cannot take: they were used once, at start. */
static bool
key_is_fixed(const char *key)
{
    static const char *const fixed[] = {"listenPort", "bindAddress", "maxConnections",
                                        "kvConfigPath"};

    for (size_t i = 0; i < RMQ_ARRAY_LEN(fixed); i++) {
        if (strcmp(key, fixed[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void
h_get_config(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    const struct rmq_config_spec *spec = &rmq_namesrv_config_spec;
    const char *base = (const char *)&ns->cfg;
    char text[8192];
    size_t n = 0;

    (void)ref;
    /* java.util.Properties text, one key=value per line, as the reference answers */
    for (size_t i = 0; i < spec->key_count; i++) {
        const struct rmq_config_key *k = &spec->keys[i];
        const void *field = base + k->offset;
        int w = 0;

        switch (k->type) {
        case RMQ_CONFIG_I64:
            w = snprintf(text + n, sizeof(text) - n, "%s=%lld\n", k->name,
                         (long long)*(const int64_t *)field);
            break;
        case RMQ_CONFIG_BOOL:
            w = snprintf(text + n, sizeof(text) - n, "%s=%s\n", k->name,
                         *(const bool *)field ? "true" : "false");
            break;
        case RMQ_CONFIG_STR:
            w = snprintf(text + n, sizeof(text) - n, "%s=%s\n", k->name, (const char *)field);
            break;
        case RMQ_CONFIG_ENUM:
            w = snprintf(text + n, sizeof(text) - n, "%s=%s\n", k->name,
                         k->choices[*(const int *)field]);
            break;
        }
        if (w < 0 || (size_t)w >= sizeof(text) - n) {
            reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "config text longer than %zu bytes",
                        sizeof(text));
            return;
        }
        n += (size_t)w;
    }
    reply_ok(c, req, text, n);
}

static char *
trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t' || *s == '\r') {
        s++;
    }
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
        *--e = '\0';
    }
    return s;
}

static void
h_update_config(struct rmq_conn *c, struct rmq_frame *req, const struct rmq_bufref *ref,
                void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    struct rmq_namesrv_config next = ns->cfg;
    char text[8192];
    char err[256];
    char *save;
    uint32_t changed = 0;

    (void)ref;
    if (req->body_len == 0 || req->body_len >= sizeof(text) ||
        memchr(req->body, '\0', req->body_len) != NULL) {
        reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "body must be key=value lines, 1..%zu bytes",
                    sizeof(text) - 1);
        return;
    }
    memcpy(text, req->body, req->body_len);
    text[req->body_len] = '\0';
    /* every line is checked against a copy first: all keys apply, or none */
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq;
        char *key;

        line = trim(line);
        if (line[0] == '\0' || line[0] == '#' || line[0] == '!') {
            continue;
        }
        eq = strchr(line, '=');
        if (eq == NULL) {
            reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "config line without '=': %s", line);
            return;
        }
        *eq = '\0';
        key = trim(line);
        if (key_is_fixed(key)) {
            /* the reference's code and remark for its configBlackList keys */
            reply_error(c, req, RMQ_RESP_NO_PERMISSION, "Can not update config in black list. "
                        "%s is read once at start", key);
            return;
        }
        if (rmq_config_set(&rmq_namesrv_config_spec, &next, key, trim(eq + 1), err,
                           sizeof(err)) < 0) {
            reply_error(c, req, RMQ_RESP_SYSTEM_ERROR, "%s", err);
            return;
        }
        changed++;
    }
    ns->cfg = next;
    rmq_log_set_level((enum rmq_log_level)ns->cfg.log_level);
    RMQ_INFO("namesrv: config updated keys=%u peer=%s brokerExpiredMs=%lld "
             "scanNotActiveBrokerInterval=%lld orderMessageEnable=%d", changed, c->peer_str,
             (long long)ns->cfg.broker_expired_ms,
             (long long)ns->cfg.scan_not_active_broker_interval, ns->cfg.order_message_enable);
    reply_ok(c, req, NULL, 0);
}

/* ---- liveness ------------------------------------------------------------------------ */

static void
on_conn_close(struct rmq_conn *c, int err, void *ctx)
{
    struct rmq_namesrv *ns = ctx;
    uint32_t slot = rmq_server_conn_index(ns->srv, c);
    uint32_t n;

    if (!ns->conn_has_broker[slot]) {
        return;                     /* a client: nothing registered on it */
    }
    ns->conn_has_broker[slot] = 0;
    n = rmq_routeinfo_conn_closed(&ns->routes, rmq_namesrv__conn_tag(ns, c));
    if (n > 0) {
        RMQ_INFO("namesrv: broker connection closed peer=%s err=%s, removed brokers=%u",
                 c->peer_str, err ? strerror(-err) : "none", n);
    }
}

void
rmq_namesrv__scan(struct rmq_namesrv *ns)
{
    struct rmq_routeinfo_expired expired[EXPIRED_LOG_MAX];
    uint32_t n = rmq_routeinfo_expire(&ns->routes, now_ms(ns),
                                      (uint64_t)ns->cfg.broker_expired_ms, expired,
                                      EXPIRED_LOG_MAX);

    for (uint32_t i = 0; i < RMQ_MIN(n, (uint32_t)EXPIRED_LOG_MAX); i++) {
        struct rmq_conn *c = conn_from_tag(ns, expired[i].conn_tag);

        RMQ_WARN("namesrv: broker expired addr=%s after brokerExpiredMs=%lld without "
                 "registering, removed from routes", expired[i].broker_addr,
                 (long long)ns->cfg.broker_expired_ms);
        if (c != NULL) {
            rmq_conn_close(c, 0);   /* as the reference does: it may reconnect and register */
        }
    }
    if (n > EXPIRED_LOG_MAX) {
        RMQ_WARN("namesrv: brokers expired count=%u (first %d listed)", n, EXPIRED_LOG_MAX);
    }
}

void
rmq_namesrv__handlers_install(struct rmq_namesrv *ns, bool install)
{
    static const struct {
        int code;
        rmq_request_fn fn;
    } table[] = {
        {RMQ_REQ_PUT_KV_CONFIG, h_put_kv},
        {RMQ_REQ_GET_KV_CONFIG, h_get_kv},
        {RMQ_REQ_DELETE_KV_CONFIG, h_delete_kv},
        {RMQ_REQ_GET_KVLIST_BY_NAMESPACE, h_kv_list},
        {RMQ_REQ_REGISTER_BROKER, h_register_broker},
        {RMQ_REQ_UNREGISTER_BROKER, h_unregister_broker},
        {RMQ_REQ_QUERY_DATA_VERSION, h_query_data_version},
        {RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, h_get_route},
        {RMQ_REQ_GET_BROKER_CLUSTER_INFO, h_cluster_info},
        {RMQ_REQ_GET_ALL_TOPIC_LIST_FROM_NAMESERVER, h_all_topics},
        {RMQ_REQ_GET_TOPICS_BY_CLUSTER, h_topics_by_cluster},
        {RMQ_REQ_GET_SYSTEM_TOPIC_LIST_FROM_NS, h_system_topics},
        {RMQ_REQ_GET_UNIT_TOPIC_LIST, h_unit_topics},
        {RMQ_REQ_GET_HAS_UNIT_SUB_TOPIC_LIST, h_unit_topics},
        {RMQ_REQ_GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST, h_unit_topics},
        {RMQ_REQ_DELETE_TOPIC_IN_NAMESRV, h_delete_topic},
        {RMQ_REQ_WIPE_WRITE_PERM_OF_BROKER, h_write_perm},
        {RMQ_REQ_ADD_WRITE_PERM_OF_BROKER, h_write_perm},
        {RMQ_REQ_GET_NAMESRV_CONFIG, h_get_config},
        {RMQ_REQ_UPDATE_NAMESRV_CONFIG, h_update_config},
    };

    for (size_t i = 0; i < RMQ_ARRAY_LEN(table); i++) {
        rmq_server_handle(ns->srv, table[i].code, install ? table[i].fn : NULL,
                          install ? ns : NULL);
    }
    rmq_server_on_conn_close(ns->srv, install ? on_conn_close : NULL, install ? ns : NULL);
}
