/*
 * Route table: registration, master/slave merging per brokerName, DataVersion
 * handling, expiry, unregistration, connection loss, validation, and both JSON
 * forms of TopicRouteData against the spec's vectors (byte for byte, and parsed
 * back by our reader). rmq_routeinfo_check runs after every step.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "namesrv/routeinfo.h"
#include "net/json.h"
#include "tests/unit/vectors.h"

static struct rmq_routeinfo rt;

static void
setup(void)
{
    rmq_routeinfo_init(&rt);
}

static void
teardown(void)
{
    cr_assert(rmq_routeinfo_check(&rt));
    rmq_routeinfo_fini(&rt);
}

TestSuite(routeinfo, .init = setup, .fini = teardown);

static struct rmq_topic_queue_conf topic_test = {"TopicTest", 4, 4, 6, 0};

/* Register a broker with topics; asserts success and the invariants. */
static struct rmq_register_result
reg(const char *cluster, const char *name, int64_t id, const char *addr, int64_t dv_counter,
    const struct rmq_topic_queue_conf *topics, uint32_t n, uint64_t tag, uint64_t now_ms)
{
    struct rmq_register_req req = {
        .cluster = cluster,
        .broker_name = name,
        .broker_addr = addr,
        .ha_server_addr = id == 0 ? "127.0.0.1:10912" : "127.0.0.1:10922",
        .broker_id = id,
        .has_topic_config = true,
        .data_version = {dv_counter, 1700000000000},
        .topics = topics,
        .topic_count = n,
        .conn_tag = tag,
    };
    struct rmq_register_result res;

    cr_assert_eq(rmq_routeinfo_register(&rt, &req, now_ms, &res), 0, "register %s", addr);
    cr_assert(rmq_routeinfo_check(&rt));
    return res;
}

/* Route text of topic in dialect; NULL when -ENOENT. Caller frees. */
static char *
route(const char *topic, enum rmq_json_dialect d)
{
    struct rmq_jw w;
    const char *text;
    size_t len;
    char *out = NULL;

    rmq_jw_init(&w, d);
    if (rmq_routeinfo_write_route(&rt, topic, strlen(topic), NULL, &w) == 0) {
        cr_assert_eq(rmq_jw_finish(&w, &text, &len), 0);
        out = strdup(text);
    }
    rmq_jw_fini(&w);
    return out;
}

static bool
has_route(const char *topic)
{
    char *text = route(topic, RMQ_JSON_FASTJSON);

    free(text);
    return text != NULL;
}

static cJSON *
route_json(const char *topic)
{
    char *text = route(topic, RMQ_JSON_FASTJSON);
    cJSON *j;

    if (text == NULL) {
        return NULL;
    }
    j = rmq_json_parse(text, strlen(text));
    free(text);
    cr_assert_not_null(j);
    return j;
}

static const char *
broker_addr(cJSON *route_obj, const char *broker_name, const char *id)
{
    cJSON *bd;

    cJSON_ArrayForEach(bd, cJSON_GetObjectItem(route_obj, "brokerDatas")) {
        if (strcmp(rmq_json_get_str(bd, "brokerName"), broker_name) == 0) {
            return rmq_json_get_str(cJSON_GetObjectItem(bd, "brokerAddrs"), id);
        }
    }
    return NULL;
}

Test(routeinfo, both_json_forms_match_the_spec_vectors_byte_for_byte)
{
    const char *files[] = {"synthetic-body-route-fastjson.json",
                           "synthetic-body-route-standard.json"};
    enum rmq_json_dialect dialects[] = {RMQ_JSON_FASTJSON, RMQ_JSON_STANDARD};

    /* the slave first: the route must not depend on registration order */
    reg("DefaultCluster", "broker-a", 1, "127.0.0.1:10921", 1, &topic_test, 1, 2, 0);
    reg("DefaultCluster", "broker-a", 0, "127.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    for (int i = 0; i < 2; i++) {
        uint8_t *want;
        size_t want_len;
        char *got = route("TopicTest", dialects[i]);
        cJSON *a;
        cJSON *b;

        cr_assert_eq(rmq_test_load_raw(files[i], &want, &want_len), 0, "%s", files[i]);
        cr_assert_not_null(got);
        cr_assert_str_eq(got, (const char *)want, "%s", files[i]);
        /* parsed back by our reader: the same document as the vector parsed */
        a = rmq_json_parse(got, strlen(got));
        b = rmq_json_parse((const char *)want, want_len);
        cr_assert_not_null(a);
        cr_assert(cJSON_Compare(a, b, true));
        cr_assert_str_eq(broker_addr(a, "broker-a", "0"), "127.0.0.1:10911");
        cr_assert_str_eq(broker_addr(a, "broker-a", "1"), "127.0.0.1:10921");
        cJSON_Delete(a);
        cJSON_Delete(b);
        free(want);
        free(got);
    }
}

Test(routeinfo, unknown_topic_has_no_route)
{
    struct rmq_jw w;

    reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    cr_assert_eq(rmq_routeinfo_write_route(&rt, "Nope", 4, NULL, &w), -ENOENT);
    /* a length-bounded name: "TopicTestX" cut to 9 bytes is TopicTest */
    cr_assert_eq(rmq_routeinfo_write_route(&rt, "TopicTestX", 9, NULL, &w), 0);
    rmq_jw_fini(&w);
}

Test(routeinfo, slave_learns_master_and_ha_address_only_when_master_is_live)
{
    struct rmq_register_result r;

    r = reg("C", "broker-a", 1, "10.0.0.2:10911", 1, NULL, 0, 2, 0);
    cr_assert_not(r.has_master);
    r = reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    cr_assert_not(r.has_master, "a master is told nothing");
    r = reg("C", "broker-a", 1, "10.0.0.2:10911", 1, NULL, 0, 2, 10);
    cr_assert(r.has_master);
    cr_assert_str_eq(r.master_addr, "10.0.0.1:10911");
    cr_assert_str_eq(r.ha_server_addr, "127.0.0.1:10912");
}

Test(routeinfo, slave_topic_config_does_not_make_routes)
{
    reg("C", "broker-a", 1, "10.0.0.2:10911", 1, &topic_test, 1, 2, 0);
    cr_assert_not(has_route("TopicTest"));
    cr_assert_eq(rmq_routeinfo_topic_count(&rt), 0);
}

Test(routeinfo, unchanged_data_version_changes_no_queue_data)
{
    struct rmq_topic_queue_conf eight = {"TopicTest", 8, 8, 6, 0};
    struct rmq_register_result r;
    cJSON *j;

    reg("C", "broker-a", 0, "10.0.0.1:10911", 5, &topic_test, 1, 1, 0);
    r = reg("C", "broker-a", 0, "10.0.0.1:10911", 5, &eight, 1, 1, 10);
    cr_assert_not(r.queues_updated);
    j = route_json("TopicTest");
    cr_assert_eq(rmq_json_get_i64(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "queueDatas"), 0),
                                  "readQueueNums", -1), 4);
    cJSON_Delete(j);
    r = reg("C", "broker-a", 0, "10.0.0.1:10911", 6, &eight, 1, 1, 20);
    cr_assert(r.queues_updated);
    j = route_json("TopicTest");
    cr_assert_eq(rmq_json_get_i64(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "queueDatas"), 0),
                                  "readQueueNums", -1), 8);
    cJSON_Delete(j);
}

Test(routeinfo, expiry_removes_silent_brokers_and_their_topics_only)
{
    struct rmq_topic_queue_conf a_only = {"OnlyA", 4, 4, 6, 0};
    struct rmq_topic_queue_conf shared[] = {{"Shared", 4, 4, 6, 0}};
    struct rmq_routeinfo_expired ex[4];
    cJSON *j;

    reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &a_only, 1, 1, 0);
    reg("C", "broker-a", 0, "10.0.0.1:10911", 2, shared, 1, 1, 1);
    reg("C", "broker-b", 0, "10.0.0.3:10911", 1, shared, 1, 3, 0);
    reg("C", "broker-b", 0, "10.0.0.3:10911", 1, shared, 1, 3, 100000);
    cr_assert_eq(rmq_routeinfo_expire(&rt, 120001, 120000, ex, 4), 0, "not yet: exactly 120 s");
    cr_assert_eq(rmq_routeinfo_expire(&rt, 120002, 120000, ex, 4), 1);
    cr_assert_str_eq(ex[0].broker_addr, "10.0.0.1:10911");
    cr_assert_eq(ex[0].conn_tag, 1);
    cr_assert(rmq_routeinfo_check(&rt));
    cr_assert_not(has_route("OnlyA"));
    j = route_json("Shared");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "queueDatas")), 1);
    cr_assert_null(broker_addr(j, "broker-a", "0"));
    cr_assert_str_eq(broker_addr(j, "broker-b", "0"), "10.0.0.3:10911");
    cJSON_Delete(j);
    cr_assert_not(rmq_routeinfo_is_live(&rt, "10.0.0.1:10911"));
}

Test(routeinfo, master_removal_keeps_the_slave_readable)
{
    struct rmq_routeinfo_expired ex[2];
    cJSON *j;

    reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    reg("C", "broker-a", 1, "10.0.0.2:10911", 1, NULL, 0, 2, 0);
    reg("C", "broker-a", 1, "10.0.0.2:10911", 1, NULL, 0, 2, 100000);
    cr_assert_eq(rmq_routeinfo_expire(&rt, 150000, 120000, ex, 2), 1);
    j = route_json("TopicTest");
    cr_assert_not_null(j, "the slave's broker name keeps the route");
    cr_assert_null(broker_addr(j, "broker-a", "0"));
    cr_assert_str_eq(broker_addr(j, "broker-a", "1"), "10.0.0.2:10911");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "queueDatas")), 1);
    cJSON_Delete(j);
}

Test(routeinfo, closed_connection_removes_its_brokers_at_once)
{
    reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 7, 0);
    reg("C", "broker-b", 0, "10.0.0.3:10911", 1, &topic_test, 1, 8, 0);
    cr_assert_eq(rmq_routeinfo_conn_closed(&rt, 99), 0);
    cr_assert_eq(rmq_routeinfo_conn_closed(&rt, 7), 1);
    cr_assert(rmq_routeinfo_check(&rt));
    cr_assert_not(rmq_routeinfo_is_live(&rt, "10.0.0.1:10911"));
    cr_assert(rmq_routeinfo_is_live(&rt, "10.0.0.3:10911"));
    /* broker-b re-registers on a new connection: closing the old one removes nothing */
    reg("C", "broker-b", 0, "10.0.0.3:10911", 1, &topic_test, 1, 9, 10);
    cr_assert_eq(rmq_routeinfo_conn_closed(&rt, 8), 0);
    cr_assert(rmq_routeinfo_is_live(&rt, "10.0.0.3:10911"));
}

Test(routeinfo, unregister_drops_the_broker_name_when_empty)
{
    struct rmq_jw w;
    const char *text;
    size_t len;

    reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    reg("C", "broker-a", 1, "10.0.0.2:10911", 1, NULL, 0, 2, 0);
    /* wrong id for the address: nothing happens to the BrokerData */
    rmq_routeinfo_unregister(&rt, "C", "broker-a", "10.0.0.2:10911", 5);
    cr_assert(rmq_routeinfo_check(&rt));
    rmq_routeinfo_unregister(&rt, "C", "broker-a", "10.0.0.1:10911", 0);
    cr_assert(rmq_routeinfo_check(&rt));
    cr_assert(has_route("TopicTest"));
    reg("C", "broker-a", 1, "10.0.0.2:10911", 1, NULL, 0, 2, 0);
    rmq_routeinfo_unregister(&rt, "C", "broker-a", "10.0.0.2:10911", 1);
    cr_assert(rmq_routeinfo_check(&rt));
    cr_assert_not(has_route("TopicTest"));
    cr_assert_eq(rmq_routeinfo_topic_count(&rt), 0);
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_cluster_info(&rt, &w);
    cr_assert_eq(rmq_jw_finish(&w, &text, &len), 0);
    cr_assert_str_eq(text, "{\"brokerAddrTable\":{},\"clusterAddrTable\":{}}");
    rmq_jw_fini(&w);
}

Test(routeinfo, an_address_moving_to_another_id_leaves_the_old_id)
{
    cJSON *j;

    reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    reg("C", "broker-a", 1, "10.0.0.2:10911", 1, NULL, 0, 2, 0);
    /* the slave is promoted: same address, id 0 */
    rmq_routeinfo_unregister(&rt, "C", "broker-a", "10.0.0.1:10911", 0);
    reg("C", "broker-a", 0, "10.0.0.2:10911", 2, &topic_test, 1, 2, 5);
    j = route_json("TopicTest");
    cr_assert_str_eq(broker_addr(j, "broker-a", "0"), "10.0.0.2:10911");
    cr_assert_null(broker_addr(j, "broker-a", "1"));
    cJSON_Delete(j);
}

Test(routeinfo, cluster_info_and_topic_lists)
{
    struct rmq_topic_queue_conf b_topics[] = {{"TopicB", 2, 2, 6, 0}, {"TopicTest", 2, 2, 6, 0}};
    struct rmq_jw w;
    const char *text;
    size_t len;
    cJSON *j;

    reg("C1", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    reg("C2", "broker-b", 0, "10.0.0.3:10911", 1, b_topics, 2, 3, 0);
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_cluster_info(&rt, &w);
    cr_assert_eq(rmq_jw_finish(&w, &text, &len), 0);
    cr_assert_not_null(strstr(text, "\"broker-b\":{\"brokerAddrs\":{0:\"10.0.0.3:10911\"},"
                                    "\"brokerName\":\"broker-b\",\"cluster\":\"C2\"}"), "%s", text);
    j = rmq_json_parse(text, len);
    cr_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j,
                     "clusterAddrTable"), "C1"), 0)->valuestring, "broker-a");
    cJSON_Delete(j);
    rmq_jw_reset(&w, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_topic_list(&rt, "C1", &w);
    cr_assert_eq(rmq_jw_finish(&w, &text, &len), 0);
    cr_assert_str_eq(text, "{\"topicList\":[\"TopicTest\"]}");
    rmq_jw_reset(&w, RMQ_JSON_FASTJSON);
    rmq_routeinfo_write_topic_list(&rt, NULL, &w);
    cr_assert_eq(rmq_jw_finish(&w, &text, &len), 0);
    j = rmq_json_parse(text, len);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "topicList")), 2);
    cJSON_Delete(j);
    rmq_jw_fini(&w);
}

Test(routeinfo, write_permission_wipe_and_add_and_topic_deletion)
{
    struct rmq_topic_queue_conf b_topics[] = {{"TopicTest", 2, 2, 6, 0}};
    cJSON *j;
    cJSON *q;

    reg("C1", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    reg("C2", "broker-b", 0, "10.0.0.3:10911", 1, b_topics, 1, 3, 0);
    cr_assert_eq(rmq_routeinfo_wipe_write_perm(&rt, "broker-a"), 1);
    j = route_json("TopicTest");
    cJSON_ArrayForEach(q, cJSON_GetObjectItem(j, "queueDatas")) {
        bool is_a = strcmp(rmq_json_get_str(q, "brokerName"), "broker-a") == 0;

        cr_assert_eq(rmq_json_get_i64(q, "perm", -1), is_a ? 4 : 6);
    }
    cJSON_Delete(j);
    cr_assert_eq(rmq_routeinfo_add_write_perm(&rt, "broker-a"), 1);
    cr_assert_eq(rmq_routeinfo_wipe_write_perm(&rt, "nobody"), 0);
    /* delete only cluster C2's part, then the rest */
    cr_assert(rmq_routeinfo_delete_topic(&rt, "TopicTest", "C2"));
    j = route_json("TopicTest");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "queueDatas")), 1);
    cJSON_Delete(j);
    cr_assert(rmq_routeinfo_delete_topic(&rt, "TopicTest", NULL));
    cr_assert_not(has_route("TopicTest"));
    cr_assert_not(rmq_routeinfo_delete_topic(&rt, "TopicTest", NULL));
}

Test(routeinfo, data_version_query_refreshes_liveness_only_when_unchanged)
{
    struct rmq_data_version same = {3, 1700000000000};
    struct rmq_data_version other = {4, 1700000000000};
    struct rmq_data_version stored;
    struct rmq_routeinfo_expired ex[1];
    bool has;

    cr_assert(rmq_routeinfo_query_data_version(&rt, "10.0.0.1:10911", &same, 0, &stored, &has));
    cr_assert_not(has);
    reg("C", "broker-a", 0, "10.0.0.1:10911", 3, &topic_test, 1, 1, 0);
    cr_assert(rmq_routeinfo_query_data_version(&rt, "10.0.0.1:10911", &other, 100000, &stored,
                                               &has));
    cr_assert(has);
    cr_assert_eq(stored.counter, 3);
    cr_assert_not(rmq_routeinfo_query_data_version(&rt, "10.0.0.1:10911", &same, 100000, &stored,
                                                   &has));
    cr_assert_eq(rmq_routeinfo_expire(&rt, 200000, 120000, ex, 1), 0, "refreshed at 100 s");
    cr_assert_eq(rmq_routeinfo_expire(&rt, 220001, 120000, ex, 1), 1);
}

/* ---- validation: refused whole, table unchanged --------------------------------------- */

static void
assert_refused(struct rmq_register_req req)
{
    struct rmq_register_result res;
    const char *why = NULL;

    cr_assert_eq(rmq_routeinfo_validate(&req, &why), -EINVAL);
    cr_assert_not_null(why);
    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 0, &res), -EINVAL);
    cr_assert_eq(rmq_routeinfo_topic_count(&rt), 1, "changed nothing");
    cr_assert_eq(rmq_routeinfo_live_count(&rt), 1);
    cr_assert(rmq_routeinfo_check(&rt));
}

Test(routeinfo, absurd_registrations_are_refused_and_change_nothing)
{
    static char long_name[RMQ_NAMESRV_NAME_MAX + 2];
    struct rmq_topic_queue_conf bad[] = {
        {"T1", -1, 4, 6, 0}, {"T2", 4, RMQ_NAMESRV_QUEUE_NUMS_MAX + 1, 6, 0}, {"T3", 4, 4, 16, 0},
        {"T4", 4, 4, -1, 0}, {"", 4, 4, 6, 0}, {"T5", 4, 4, 6, -1}, {long_name, 4, 4, 6, 0},
        {"T\n", 4, 4, 6, 0},
    };
    struct rmq_topic_queue_conf ok_then_bad[] = {{"Fine", 4, 4, 6, 0}, {"T", 4, -5, 6, 0}};
    struct rmq_register_req base = {
        .cluster = "C", .broker_name = "broker-x", .broker_addr = "10.0.0.9:10911",
        .ha_server_addr = "", .broker_id = 0, .has_topic_config = true,
    };
    struct rmq_register_req r;

    memset(long_name, 'x', sizeof(long_name) - 1);
    reg("C", "broker-a", 0, "10.0.0.1:10911", 1, &topic_test, 1, 1, 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = base;
        r.topics = &bad[i];
        r.topic_count = 1;
        assert_refused(r);
    }
    r = base;
    r.topics = ok_then_bad;
    r.topic_count = 2;
    assert_refused(r);              /* the good topic before the bad one is not applied */
    r = base;
    r.cluster = "";
    assert_refused(r);
    r = base;
    r.broker_name = "";
    assert_refused(r);
    r = base;
    r.broker_addr = "";
    assert_refused(r);
    r = base;
    r.broker_name = long_name;
    assert_refused(r);
    r = base;
    r.broker_id = -1;
    assert_refused(r);
    r = base;
    r.ha_server_addr = NULL;
    assert_refused(r);
    /* the limit itself is fine */
    r = base;
    r.topics = ok_then_bad;
    r.topic_count = 2;
    ok_then_bad[1].write_queue_nums = RMQ_NAMESRV_QUEUE_NUMS_MAX;
    {
        struct rmq_register_result res;

        cr_assert_eq(rmq_routeinfo_register(&rt, &r, 0, &res), 0);
    }
}

Test(routeinfo, too_many_ids_under_one_broker_name_are_refused)
{
    struct rmq_register_req r = {
        .cluster = "C", .broker_name = "broker-a", .ha_server_addr = "", .conn_tag = 1,
    };
    struct rmq_register_result res;
    char addr[32];

    for (int i = 0; i <= RMQ_NAMESRV_BROKER_IDS_MAX; i++) {
        snprintf(addr, sizeof(addr), "10.0.1.%d:10911", i);
        r.broker_addr = addr;
        r.broker_id = i;
        cr_assert_eq(rmq_routeinfo_register(&rt, &r, 0, &res),
                     i < RMQ_NAMESRV_BROKER_IDS_MAX ? 0 : -ENOSPC, "id %d", i);
    }
}

/* ---- scale ---------------------------------------------------------------------------- */

Test(routeinfo, ten_thousand_topics_on_two_hundred_brokers)
{
    enum { TOPICS = 10000, BROKERS = 200, PER_BROKER = 100 };
    static struct rmq_topic_queue_conf confs[PER_BROKER];
    static char names[TOPICS][16];
    struct rmq_routeinfo_expired ex[4];
    char bname[32];
    char addr[32];

    for (int t = 0; t < TOPICS; t++) {
        snprintf(names[t], sizeof(names[t]), "T%05d", t);
    }
    /* broker b hosts topics b*50 .. b*50+99: every topic on one or two brokers */
    for (int b = 0; b < BROKERS; b++) {
        for (int k = 0; k < PER_BROKER; k++) {
            confs[k] = (struct rmq_topic_queue_conf){names[(b * 50 + k) % TOPICS], 8, 8, 6, 0};
        }
        snprintf(bname, sizeof(bname), "broker-%03d", b);
        snprintf(addr, sizeof(addr), "10.1.%d.%d:10911", b / 256, b % 256);
        reg("C", bname, 0, addr, 1, confs, PER_BROKER, (uint64_t)b + 1, (uint64_t)b);
    }
    cr_assert_eq(rmq_routeinfo_topic_count(&rt), TOPICS);
    cr_assert_eq(rmq_routeinfo_live_count(&rt), BROKERS);
    for (int t = 0; t < TOPICS; t++) {
        char *r = route(names[t], RMQ_JSON_STANDARD);

        cr_assert_not_null(r, "%s", names[t]);
        free(r);
    }
    /* broker-000 expires (registered at 0 ms); the others registered 1..199 ms later */
    cr_assert_eq(rmq_routeinfo_expire(&rt, 120000 + 1, 120000, ex, 4), 1);
    cr_assert_str_eq(ex[0].broker_addr, "10.1.0.0:10911");
    cr_assert(rmq_routeinfo_check(&rt));
    {
        char *r = route("T00050", RMQ_JSON_FASTJSON);     /* still on broker-001 */

        cr_assert_not_null(r);
        free(r);
    }
    {
        char *r = route("T00000", RMQ_JSON_FASTJSON);     /* broker-000 and broker-199 */

        cr_assert_not_null(r);
        cr_assert_null(strstr(r, "broker-000"));
        free(r);
    }
}

Test(routeinfo, filter_servers_appear_in_the_route_until_the_broker_drops_them)
{
    const char *filters[] = {"10.0.0.1:8000", "10.0.0.1:8001"};
    struct rmq_register_req req = {
        .cluster = "C", .broker_name = "broker-a", .broker_addr = "10.0.0.1:10911",
        .ha_server_addr = "", .has_topic_config = true, .data_version = {1, 1},
        .topics = &topic_test, .topic_count = 1, .filter_servers = filters,
        .filter_server_count = 2, .conn_tag = 1,
    };
    struct rmq_register_result res;
    char *r;

    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 0, &res), 0);
    cr_assert(rmq_routeinfo_check(&rt));
    r = route("TopicTest", RMQ_JSON_FASTJSON);
    cr_assert_not_null(strstr(r, "\"filterServerTable\":{\"10.0.0.1:10911\":[\"10.0.0.1:8000\","
                                 "\"10.0.0.1:8001\"]}"), "%s", r);
    free(r);
    req.filter_server_count = 0;
    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 1, &res), 0);
    cr_assert(rmq_routeinfo_check(&rt));
    r = route("TopicTest", RMQ_JSON_FASTJSON);
    cr_assert_not_null(strstr(r, "\"filterServerTable\":{}"), "%s", r);
    free(r);
    req.filter_server_count = 1;
    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 2, &res), 0);
    cr_assert_eq(rmq_routeinfo_conn_closed(&rt, 1), 1);
    cr_assert(rmq_routeinfo_check(&rt));
    cr_assert_eq(rt.filter_live_count, 0);
}

Test(routeinfo, table_wide_caps_refuse_whole_registrations)
{
    struct rmq_topic_queue_conf three[] = {{"A", 1, 1, 6, 0}, {"B", 1, 1, 6, 0},
                                           {"C", 1, 1, 6, 0}};
    struct rmq_register_req req = {
        .cluster = "C", .broker_name = "broker-a", .broker_addr = "10.0.0.1:10911",
        .ha_server_addr = "", .has_topic_config = true, .data_version = {1, 1},
        .topics = three, .topic_count = 2, .conn_tag = 1,
    };
    struct rmq_register_result res;

    rt.max_topics = 2;
    rt.max_brokers = 1;
    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 0, &res), 0);
    req.topic_count = 3;                /* one topic more than fits: nothing applied */
    req.data_version.counter = 2;
    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 1, &res), -ENOSPC);
    cr_assert_eq(rmq_routeinfo_topic_count(&rt), 2);
    req.topics = &three[1];             /* known topics only: fine */
    req.topic_count = 1;
    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 2, &res), 0);
    req.broker_name = "broker-b";       /* a second broker name and address */
    req.broker_addr = "10.0.0.2:10911";
    cr_assert_eq(rmq_routeinfo_register(&rt, &req, 3, &res), -ENOSPC);
    cr_assert_eq(rmq_routeinfo_live_count(&rt), 1);
}
