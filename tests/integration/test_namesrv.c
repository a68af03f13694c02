/*
 * The real rmq-namesrv daemon over loopback. Each test starts build/bin/rmq-namesrv
 * (found next to this binary: ../bin) on 127.0.0.1 with --listenPort=0, reads the
 * port the kernel picked from its log, uses a fresh temporary directory for the KV
 * file, and stops it by PID with SIGTERM, checking that it exits 0 (under ASan that
 * also proves it freed everything). Brokers and clients are rmq_client connections
 * driven through the real codec on this thread's loop.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/be.h"
#include "core/clock.h"
#include "core/loop.h"
#include "core/util.h"
#include "net/client.h"
#include "net/codes.h"
#include "net/conn.h"
#include "net/json.h"
#include "tests/integration/harness.h"
#include "tests/unit/vectors.h"

/* ---- the daemon ----------------------------------------------------------------------- */

static struct daemon D;             /* the one most tests use */
static struct daemon D2;            /* a second, independent NameServer */

/* Start the daemon with extra --key=value arguments (NULL-terminated). */
static void
daemon_start_at(struct daemon *d, const char *const *extra)
{
    char bin[PATH_MAX];
    char kv[128];
    const char *argv[24];
    int argc = 0;

    daemon_path("rmq-namesrv", bin, sizeof(bin));
    if (d->dir[0] == '\0') {
        snprintf(d->dir, sizeof(d->dir), "/tmp/rmq-ns-test-XXXXXX");
        cr_assert_not_null(mkdtemp(d->dir));
    }
    snprintf(kv, sizeof(kv), "--kvConfigPath=%s/kv/kvConfig.json", d->dir);
    argv[argc++] = bin;
    argv[argc++] = "--listenPort=0";
    argv[argc++] = "--bindAddress=127.0.0.1";
    argv[argc++] = kv;
    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    daemon_spawn(d, "namesrv", argv, "namesrv: serving address=127.0.0.1 port=");
}

static void
daemon_start(const char *const *extra)
{
    daemon_start_at(&D, extra);
}

static void
daemon_stop_ok(void)
{
    daemon_stop_ok_at(&D);
}

/* n clients all to D */
static void
clients_up(int n)
{
    uint16_t ports[MAX_CLIENTS];

    for (int i = 0; i < n; i++) {
        ports[i] = D.port;
    }
    clients_up_to(n, ports);
}

/* REGISTER_BROKER through client ci; topics "name:queues,..." */
static void
register_broker(int ci, const char *name, int id, const char *addr, int dv, const char *topics,
                struct answer *a)
{
    struct rmq_header h;
    char body[2048];
    size_t n;
    char list[512];
    char *save;

    n = (size_t)snprintf(body, sizeof(body), "{\"filterServerList\":[],"
                         "\"topicConfigSerializeWrapper\":{\"dataVersion\":{\"counter\":%d,"
                         "\"timestamp\":1700000000000},\"topicConfigTable\":{", dv);
    snprintf(list, sizeof(list), "%s", topics);
    for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(t, ':');

        *colon = '\0';
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s\"%s\":{\"order\":false,\"perm\":6,\"readQueueNums\":%s,"
                              "\"topicFilterType\":\"SINGLE_TAG\",\"topicName\":\"%s\","
                              "\"topicSysFlag\":0,\"writeQueueNums\":%s}",
                              body[n - 1] == '{' ? "" : ",", t, colon + 1, t, colon + 1);
    }
    snprintf(body + n, sizeof(body) - n, "}}}");
    rmq_header_init(&h, RMQ_REQ_REGISTER_BROKER, RMQ_SER_JSON);
    h.version = RMQ_VERSION_OURS;
    rmq_header_add(&h, "brokerName", name);
    rmq_header_add(&h, "brokerAddr", addr);
    rmq_header_add(&h, "clusterName", "DefaultCluster");
    rmq_header_add(&h, "haServerAddr", "127.0.0.1:10912");
    rmq_header_add_i64(&h, "brokerId", id);
    rmq_header_add(&h, "compressed", "false");
    call(ci, &h, body, a);
}

static void
get_route(int ci, const char *topic, int version, bool standard_only, enum rmq_serialize ser,
          struct answer *a)
{
    struct rmq_header h;

    rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, ser);
    h.version = version;
    rmq_header_add(&h, "topic", topic);
    if (standard_only) {
        rmq_header_add(&h, "acceptStandardJsonOnly", "true");
    }
    call(ci, &h, NULL, a);
}

/* Broker names in a route body, sorted, comma-separated ("" for none). */
static void
route_brokers(const struct answer *a, char *out, size_t cap)
{
    cJSON *j = rmq_json_parse(a->body, a->body_len);
    cJSON *bd;
    char names[8][64];
    int n = 0;

    cr_assert_not_null(j, "route body does not parse: %s", a->body);
    cJSON_ArrayForEach(bd, cJSON_GetObjectItem(j, "brokerDatas")) {
        snprintf(names[n++], 64, "%s", rmq_json_get_str(bd, "brokerName"));
    }
    qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", names[i]);
    }
    cJSON_Delete(j);
}

static void
cleanup(void)
{
    cleanup_one(&D);
    cleanup_one(&D2);
}

TestSuite(namesrv, .fini = cleanup, .timeout = 30);

/* ---- tests ----------------------------------------------------------------------------- */

Test(namesrv, two_brokers_appear_in_routes_in_both_json_forms)
{
    struct answer a;
    char names[128];

    daemon_start(NULL);
    clients_up(3);
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 1, "TopicTest:4,TBW102:8", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    cr_assert_null(answer_ext(&a, "masterAddr"), "a master gets no masterAddr");
    answer_free(&a);
    register_broker(1, "broker-b", 0, "127.0.0.1:20911", 1, "TopicTest:2", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    answer_free(&a);

    /* ali-ons: version 121, JSON header: unquoted numeric keys */
    get_route(2, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    cr_assert_not_null(strstr(a.body, "\"brokerAddrs\":{0:\""), "%s", a.body);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a,broker-b");
    answer_free(&a);
    /* a 4.9.4+ client, binary header: standard JSON */
    get_route(2, "TopicTest", RMQ_VERSION_V4_9_4, false, RMQ_SER_ROCKETMQ, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    cr_assert_not_null(strstr(a.body, "\"brokerAddrs\":{\"0\":\""), "%s", a.body);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a,broker-b");
    answer_free(&a);
    /* an old client asking for standard JSON */
    get_route(2, "TopicTest", RMQ_VERSION_V3_4_9, true, RMQ_SER_JSON, &a);
    cr_assert_not_null(strstr(a.body, "{\"0\":\"127.0.0.1:"), "%s", a.body);
    answer_free(&a);
    get_route(2, "TBW102", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a");
    answer_free(&a);
    get_route(2, "NoSuchTopic", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_eq(a.code, RMQ_RESP_TOPIC_NOT_EXIST);
    cr_assert_eq(strncmp(a.remark, "No topic route info in name server for the topic: NoSuchTopic",
                         61), 0, "%s", a.remark);
    cr_assert_eq(a.body_len, 0);
    answer_free(&a);

    /* a slave of broker-a learns its master */
    register_broker(2, "broker-a", 1, "127.0.0.1:10921", 1, "TopicTest:4", &a);
    cr_assert_str_eq(answer_ext(&a, "masterAddr"), "127.0.0.1:10911");
    cr_assert_str_eq(answer_ext(&a, "haServerAddr"), "127.0.0.1:10912");
    answer_free(&a);
    get_route(2, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_not_null(strstr(a.body, "{0:\"127.0.0.1:10911\",1:\"127.0.0.1:10921\"}"), "%s",
                       a.body);
    answer_free(&a);
    {
        struct rmq_header h;

        rmq_header_init(&h, RMQ_REQ_GET_BROKER_CLUSTER_INFO, RMQ_SER_JSON);
        call(2, &h, NULL, &a);
        cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
        cr_assert_not_null(strstr(a.body, "\"clusterAddrTable\":{\"DefaultCluster\":["), "%s",
                           a.body);
        answer_free(&a);
        rmq_header_init(&h, RMQ_REQ_GET_ALL_TOPIC_LIST_FROM_NAMESERVER, RMQ_SER_JSON);
        call(2, &h, NULL, &a);
        cr_assert_not_null(strstr(a.body, "\"TBW102\""), "%s", a.body);
        answer_free(&a);
    }
    clients_down();
    daemon_stop_ok();
}

/* broker-a keeps registering every 100 ms; returns when the route shows only it. */
struct expiry_wait {
    uint64_t next_reg_ns;
    bool only_a;
};

static bool
only_a_left(void *arg)
{
    struct expiry_wait *w = arg;
    struct answer a;
    char names[128];

    if (rmq_clock_mono_ns() < w->next_reg_ns) {
        return false;
    }
    w->next_reg_ns = rmq_clock_mono_ns() + 100000000ull;
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 1, "TopicTest:4", &a);
    answer_free(&a);
    get_route(2, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    route_brokers(&a, names, sizeof(names));
    answer_free(&a);
    return strcmp(names, "broker-a") == 0;
}

static bool
route_gone(void *arg)
{
    struct answer a;
    int code;

    (void)arg;
    get_route(2, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    code = a.code;
    answer_free(&a);
    return code == RMQ_RESP_TOPIC_NOT_EXIST;
}

Test(namesrv, silent_broker_expires_and_a_closed_broker_leaves_at_once)
{
    struct expiry_wait w = {0, false};
    struct answer a;
    char names[128];
    char conf[128];
    char conf_arg[160];
    const char *args[] = {"--config", conf_arg, NULL};
    FILE *f;
    uint64_t t0;

    /* the shortened expiry comes from a --config file, the way operators set it */
    snprintf(D.dir, sizeof(D.dir), "/tmp/rmq-ns-test-XXXXXX");
    cr_assert_not_null(mkdtemp(D.dir));
    snprintf(conf, sizeof(conf), "%s/namesrv.conf", D.dir);
    f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs("# test: expire fast\nbrokerExpiredMs = 700\nscanNotActiveBrokerInterval=100\n", f);
    fclose(f);
    snprintf(conf_arg, sizeof(conf_arg), "%s", conf);
    daemon_start(args);
    clients_up(3);
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 1, "TopicTest:4", &a);
    answer_free(&a);
    register_broker(1, "broker-b", 0, "127.0.0.1:20911", 1, "TopicTest:4", &a);
    answer_free(&a);
    t0 = rmq_clock_mono_ns();
    get_route(2, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a,broker-b");
    answer_free(&a);
    /* broker-b stays connected but silent: expiry, not connection loss, removes it */
    cr_assert(run_until(only_a_left, &w, 5000), "broker-b never expired");
    cr_assert_geq(rmq_clock_mono_ns() - t0, 700000000ull, "expired before brokerExpiredMs");
    cr_assert(rmq_client_is_connected(&C.cl[0]), "the registering broker was not expired");
    /* the reference closes an expired broker's connection */
    cr_assert(run_until(disconnected, &C.cl[1], 3000));
    /* broker-a's connection closes: its route goes at once, without waiting for expiry */
    client_stop(0);
    t0 = rmq_clock_mono_ns();
    cr_assert(run_until(route_gone, NULL, 2000));
    cr_assert_lt(rmq_clock_mono_ns() - t0, 700000000ull, "removed by expiry, not by the close");
    clients_down();
    daemon_stop_ok();
}

static void
kv_call(int code, const char *ns, const char *key, const char *value, struct answer *a)
{
    struct rmq_header h;

    rmq_header_init(&h, code, RMQ_SER_JSON);
    rmq_header_add(&h, "namespace", ns);
    if (key != NULL) {
        rmq_header_add(&h, "key", key);
    }
    if (value != NULL) {
        rmq_header_add(&h, "value", value);
    }
    call(0, &h, NULL, a);
}

Test(namesrv, kv_config_survives_a_restart)
{
    static const char *const order_args[] = {"--orderMessageEnable=true", NULL};
    struct answer a;
    char path[160];

    daemon_start(NULL);
    clients_up(1);
    kv_call(RMQ_REQ_PUT_KV_CONFIG, "ORDER_TOPIC_CONFIG", "TopicA", "broker-a:4", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    answer_free(&a);
    kv_call(RMQ_REQ_PUT_KV_CONFIG, "ns", "gone", "soon", &a);
    answer_free(&a);
    kv_call(RMQ_REQ_DELETE_KV_CONFIG, "ns", "gone", NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    answer_free(&a);
    clients_down();
    daemon_stop_ok();
    snprintf(path, sizeof(path), "%s/kv/kvConfig.json", D.dir);
    cr_assert_eq(access(path, R_OK), 0, "no KV file at %s", path);

    daemon_start(order_args);
    clients_up(1);
    kv_call(RMQ_REQ_GET_KV_CONFIG, "ORDER_TOPIC_CONFIG", "TopicA", NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    cr_assert_str_eq(answer_ext(&a, "value"), "broker-a:4");
    answer_free(&a);
    kv_call(RMQ_REQ_GET_KV_CONFIG, "ns", "gone", NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_QUERY_NOT_FOUND);
    cr_assert_str_eq(a.remark, "No config item, Namespace: ns Key: gone");
    answer_free(&a);
    kv_call(RMQ_REQ_GET_KVLIST_BY_NAMESPACE, "ORDER_TOPIC_CONFIG", NULL, NULL, &a);
    cr_assert_str_eq(a.body, "{\"table\":{\"TopicA\":\"broker-a:4\"}}");
    answer_free(&a);
    /* a broker's registration answer carries the ORDER_TOPIC_CONFIG table */
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 1, "TopicA:4", &a);
    cr_assert_str_eq(a.body, "{\"table\":{\"TopicA\":\"broker-a:4\"}}");
    answer_free(&a);
    /* with orderMessageEnable the route carries it as orderTopicConf */
    get_route(0, "TopicA", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_not_null(strstr(a.body, "\"orderTopicConf\":\"broker-a:4\",\"queueDatas\""),
                       "%s", a.body);
    answer_free(&a);
    clients_down();
    daemon_stop_ok();
}

/* ---- misbehaving peers ------------------------------------------------------------------ */

static int
raw_connect(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(D.port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

/* The server closed fd within 3 s (read sees EOF or a reset). */
static bool
closed_by_server(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[256];

    while (poll(&p, 1, 3000) == 1) {
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n <= 0) {
            return true;
        }
    }
    return false;
}

static void
register_raw_body(int ci, const char *body, struct answer *a)
{
    struct rmq_header h;

    rmq_header_init(&h, RMQ_REQ_REGISTER_BROKER, RMQ_SER_JSON);
    rmq_header_add(&h, "brokerName", "broker-x");
    rmq_header_add(&h, "brokerAddr", "127.0.0.1:30911");
    rmq_header_add(&h, "clusterName", "DefaultCluster");
    rmq_header_add(&h, "haServerAddr", "");
    rmq_header_add(&h, "brokerId", "0");
    call(ci, &h, body, a);
}

Test(namesrv, garbage_and_absurd_requests_get_errors_and_disturb_no_one)
{
    static const char *const bodies[] = {
        "{not json",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":"
        "{\"T\":{\"topicName\":\"T\",\"readQueueNums\":-4}}}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":"
        "{\"T\":{\"topicName\":\"T\",\"writeQueueNums\":100000000}}}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":"
        "{\"\":{\"topicName\":\"\"}}}}",
    };
    uint8_t junk[64];
    struct answer a;
    char names[128];
    int fd;

    daemon_start(NULL);
    clients_up(2);
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 1, "TopicTest:4", &a);
    answer_free(&a);

    /* a frame whose header is garbage, and a frame claiming 2 GiB: closed, nobody else */
    fd = raw_connect();
    memset(junk, 0xEE, sizeof(junk));
    rmq_put_be32(junk, sizeof(junk) - 4);
    rmq_put_be32(junk + 4, 40);
    cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    cr_assert(closed_by_server(fd));
    close(fd);
    fd = raw_connect();
    rmq_put_be32(junk, 0x7FFFFFF0u);
    cr_assert_eq(write(fd, junk, 8), 8);
    cr_assert(closed_by_server(fd));
    close(fd);

    /* malformed and absurd register bodies: an error each, nothing registered */
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        register_raw_body(1, bodies[i], &a);
        cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR, "body %zu", i);
        cr_assert_neq(a.remark[0], '\0');
        answer_free(&a);
    }
    {
        struct rmq_header h;

        rmq_header_init(&h, RMQ_REQ_REGISTER_BROKER, RMQ_SER_JSON);
        rmq_header_add(&h, "brokerName", "broker-y");
        call(1, &h, NULL, &a);
        cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
        cr_assert_str_eq(a.remark, "the custom field <brokerAddr> is null");
        answer_free(&a);
        rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, RMQ_SER_JSON);
        call(1, &h, NULL, &a);
        cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
        answer_free(&a);
        /* a topic with a NUL inside (JSON \u0000) is no known topic */
        rmq_header_init(&h, RMQ_REQ_GET_ROUTEINFO_BY_TOPIC, RMQ_SER_JSON);
        rmq_header_add_n(&h, "topic", 5, "TopicTest\0x", 11);
        call(1, &h, NULL, &a);
        cr_assert_eq(a.code, RMQ_RESP_TOPIC_NOT_EXIST);
        answer_free(&a);
        rmq_header_init(&h, 9999 % RMQ_REQ_CODE_LIMIT, RMQ_SER_JSON);
        call(1, &h, NULL, &a);
        cr_assert_eq(a.code, RMQ_RESP_REQUEST_CODE_NOT_SUPPORTED);
        answer_free(&a);
        rmq_header_init(&h, RMQ_REQ_GET_ALL_TOPIC_LIST_FROM_NAMESERVER, RMQ_SER_JSON);
        call(1, &h, NULL, &a);
        cr_assert_null(strstr(a.body, "\"T\""), "a refused body left a topic: %s", a.body);
        answer_free(&a);
    }
    /* the good broker's connection and route are untouched */
    cr_assert(rmq_client_is_connected(&C.cl[0]));
    get_route(0, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a");
    answer_free(&a);
    clients_down();
    daemon_stop_ok();
}

Test(namesrv, help_and_bad_arguments)
{
    char bin[PATH_MAX];
    char cmd[PATH_MAX + 64];

    daemon_path("rmq-namesrv", bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "%s --help >/dev/null 2>&1", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 0);
    snprintf(cmd, sizeof(cmd), "%s --brokerExpiredMs=-5 >/dev/null 2>&1", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof(cmd), "%s --noSuchKey=1 >/dev/null 2>&1", bin);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
}

Test(namesrv, a_malformed_kv_file_stops_the_start_with_a_clear_line)
{
    char bin[PATH_MAX];
    char cmd[PATH_MAX + 512];
    char kv[128];
    char log[4096] = "";
    FILE *f;

    daemon_path("rmq-namesrv", bin, sizeof(bin));
    snprintf(D.dir, sizeof(D.dir), "/tmp/rmq-ns-test-XXXXXX");
    cr_assert_not_null(mkdtemp(D.dir));
    snprintf(kv, sizeof(kv), "%s/kvConfig.json", D.dir);
    f = fopen(kv, "w");
    fputs("{\"configTable\":{\"ns\":[1,2]}}", f);
    fclose(f);
    snprintf(D.log, sizeof(D.log), "%s/namesrv.log", D.dir);
    snprintf(cmd, sizeof(cmd), "timeout 10 %s --listenPort=0 --bindAddress=127.0.0.1 "
             "--kvConfigPath=%s 2>%s", bin, kv, D.log);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 1);
    f = fopen(D.log, "r");
    cr_assert_gt(fread(log, 1, sizeof(log) - 1, f), 0);
    fclose(f);
    cr_assert_not_null(strstr(log, "KV config not loaded"), "%s", log);
    cr_assert_not_null(strstr(log, kv), "the line names the file: %s", log);
}

Test(namesrv, independent_nameservers_each_know_the_brokers_registered_with_them)
{
    struct answer a;
    char names[128];
    uint16_t ports[4];

    daemon_start(NULL);
    daemon_start_at(&D2, NULL);
    /* broker-a registers with both NameServers, broker-b only with the second */
    ports[0] = D.port;
    ports[1] = D2.port;
    ports[2] = D2.port;
    ports[3] = D.port;
    clients_up_to(4, ports);
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 1, "TopicTest:4", &a);
    answer_free(&a);
    register_broker(1, "broker-a", 0, "127.0.0.1:10911", 1, "TopicTest:4", &a);
    answer_free(&a);
    register_broker(2, "broker-b", 0, "127.0.0.1:20911", 1, "TopicTest:4", &a);
    answer_free(&a);
    /* a client may ask either; each answers from what was registered with it */
    get_route(3, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a");
    answer_free(&a);
    get_route(2, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a,broker-b");
    answer_free(&a);
    /* one NameServer going away leaves the other serving */
    daemon_stop_ok_at(&D2);
    get_route(3, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    answer_free(&a);
    clients_down();
    daemon_stop_ok();
}

/* Send a recorded client frame on a fresh socket; one response frame back into resp. */
static size_t
raw_exchange(const uint8_t *req, size_t len, uint8_t *resp, size_t cap)
{
    struct pollfd p;
    size_t got = 0;
    size_t want = 4;
    int fd = raw_connect();

    cr_assert_eq(write(fd, req, len), (ssize_t)len);
    p = (struct pollfd){.fd = fd, .events = POLLIN};
    while (got < want) {
        ssize_t n;

        cr_assert_eq(poll(&p, 1, 3000), 1, "no response");
        n = read(fd, resp + got, cap - got);
        cr_assert_gt(n, 0);
        got += (size_t)n;
        if (got >= 4) {
            want = 4 + rmq_get_be32(resp);
            cr_assert_leq(want, cap);
        }
    }
    close(fd);
    return got;
}

Test(namesrv, recorded_client_route_requests_get_routes_in_their_dialect)
{
    static uint8_t resp[1 << 16];
    struct rmq_codec_limits lim = {.max_frame = sizeof(resp), .max_header = sizeof(resp)};
    struct rmq_frame f;
    struct answer a;
    uint8_t *req;
    size_t len;
    size_t n;

    daemon_start(NULL);
    clients_up(1);
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 1, "TopicTest:4", &a);
    answer_free(&a);
    /* ali-ons 3.12 (version 121, JSON header): unquoted numeric keys, JSON answer */
    cr_assert_eq(rmq_test_load_hex("alions-req-105-GET_ROUTEINFO_BY_TOPIC.hex", &req, &len), 0);
    n = raw_exchange(req, len, resp, sizeof(resp));
    free(req);
    cr_assert_eq(rmq_frame_decode(resp, n, &lim, &f), (ssize_t)n);
    cr_assert_eq(f.h.code, RMQ_RESP_SUCCESS);
    cr_assert_eq(f.h.opaque, 1);
    cr_assert_eq(f.h.serialize, RMQ_SER_JSON);
    cr_assert(rmq_header_is_response(&f.h));
    cr_assert_not_null(memmem(f.body, f.body_len, "{0:\"127.0.0.1:10911\"}", 21));
    /* a 4.9.8 client with the binary header: standard JSON, binary answer */
    cr_assert_eq(rmq_test_load_hex("synthetic-req-binary-GET_ROUTEINFO_BY_TOPIC.hex", &req,
                                   &len), 0);
    n = raw_exchange(req, len, resp, sizeof(resp));
    free(req);
    cr_assert_eq(rmq_frame_decode(resp, n, &lim, &f), (ssize_t)n);
    cr_assert_eq(f.h.code, RMQ_RESP_SUCCESS);
    cr_assert_eq(f.h.serialize, RMQ_SER_ROCKETMQ);
    cr_assert_not_null(memmem(f.body, f.body_len, "{\"0\":\"127.0.0.1:10911\"}", 23));
    /* the retry topic of a consumer group that no broker has yet */
    cr_assert_eq(rmq_test_load_hex("alions-req-105-GET_ROUTEINFO_BY_TOPIC-retry-topic.hex", &req,
                                   &len), 0);
    n = raw_exchange(req, len, resp, sizeof(resp));
    free(req);
    cr_assert_eq(rmq_frame_decode(resp, n, &lim, &f), (ssize_t)n);
    cr_assert_eq(f.h.code, RMQ_RESP_TOPIC_NOT_EXIST);
    clients_down();
    daemon_stop_ok();
}

Test(namesrv, config_is_read_and_updated_at_runtime_except_start_only_keys)
{
    struct rmq_header h;
    struct answer a;

    daemon_start(NULL);
    clients_up(1);
    rmq_header_init(&h, RMQ_REQ_GET_NAMESRV_CONFIG, RMQ_SER_JSON);
    call(0, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    cr_assert_not_null(strstr(a.body, "brokerExpiredMs=120000\n"), "%s", a.body);
    cr_assert_not_null(strstr(a.body, "orderMessageEnable=false\n"), "%s", a.body);
    answer_free(&a);
    /* all or nothing: the bad line refuses the good one with it */
    rmq_header_init(&h, RMQ_REQ_UPDATE_NAMESRV_CONFIG, RMQ_SER_JSON);
    call(0, &h, "orderMessageEnable=true\nbrokerExpiredMs=-1\n", &a);
    cr_assert_eq(a.code, RMQ_RESP_SYSTEM_ERROR);
    cr_assert_not_null(strstr(a.remark, "brokerExpiredMs"), "%s", a.remark);
    answer_free(&a);
    rmq_header_init(&h, RMQ_REQ_UPDATE_NAMESRV_CONFIG, RMQ_SER_JSON);
    call(0, &h, "listenPort=1234\n", &a);
    cr_assert_eq(a.code, RMQ_RESP_NO_PERMISSION, "as the reference refuses configBlackList keys");
    cr_assert_not_null(strstr(a.remark, "Can not update config in black list."), "%s", a.remark);
    answer_free(&a);
    rmq_header_init(&h, RMQ_REQ_UPDATE_NAMESRV_CONFIG, RMQ_SER_JSON);
    call(0, &h, "# from mqadmin\norderMessageEnable = true\n", &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS, "%s", a.remark);
    answer_free(&a);
    rmq_header_init(&h, RMQ_REQ_GET_NAMESRV_CONFIG, RMQ_SER_JSON);
    call(0, &h, NULL, &a);
    cr_assert_not_null(strstr(a.body, "orderMessageEnable=true\n"), "%s", a.body);
    cr_assert_not_null(strstr(a.body, "brokerExpiredMs=120000\n"), "%s", a.body);
    answer_free(&a);
    clients_down();
    daemon_stop_ok();
}

Test(namesrv, broker_and_admin_commands_over_the_wire)
{
    struct rmq_header h;
    struct answer a;
    char names[128];

    daemon_start(NULL);
    clients_up(2);
    register_broker(0, "broker-a", 0, "127.0.0.1:10911", 3, "TopicTest:4,OnlyA:2", &a);
    answer_free(&a);
    register_broker(1, "broker-b", 0, "127.0.0.1:20911", 1, "TopicTest:4", &a);
    answer_free(&a);

    /* QUERY_DATA_VERSION: unchanged, then changed; the stored version comes back */
    rmq_header_init(&h, RMQ_REQ_QUERY_DATA_VERSION, RMQ_SER_JSON);
    rmq_header_add(&h, "brokerAddr", "127.0.0.1:10911");
    call(0, &h, "{\"counter\":3,\"timestamp\":1700000000000}", &a);
    cr_assert_str_eq(answer_ext(&a, "changed"), "false");
    cr_assert_str_eq(a.body, "{\"counter\":3,\"timestamp\":1700000000000}");
    answer_free(&a);
    rmq_header_init(&h, RMQ_REQ_QUERY_DATA_VERSION, RMQ_SER_JSON);
    rmq_header_add(&h, "brokerAddr", "127.0.0.1:10911");
    call(0, &h, "{\"counter\":4,\"timestamp\":1700000000000}", &a);
    cr_assert_str_eq(answer_ext(&a, "changed"), "true");
    answer_free(&a);

    /* WIPE_WRITE_PERM_OF_BROKER, then ADD_WRITE_PERM_OF_BROKER */
    rmq_header_init(&h, RMQ_REQ_WIPE_WRITE_PERM_OF_BROKER, RMQ_SER_JSON);
    rmq_header_add(&h, "brokerName", "broker-a");
    call(1, &h, NULL, &a);
    cr_assert_str_eq(answer_ext(&a, "wipeTopicCount"), "2");
    answer_free(&a);
    get_route(1, "OnlyA", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_not_null(strstr(a.body, "\"perm\":4"), "%s", a.body);
    answer_free(&a);
    rmq_header_init(&h, RMQ_REQ_ADD_WRITE_PERM_OF_BROKER, RMQ_SER_JSON);
    rmq_header_add(&h, "brokerName", "broker-a");
    call(1, &h, NULL, &a);
    cr_assert_str_eq(answer_ext(&a, "addTopicCount"), "2");
    answer_free(&a);

    /* GET_TOPICS_BY_CLUSTER, GET_SYSTEM_TOPIC_LIST_FROM_NS */
    rmq_header_init(&h, RMQ_REQ_GET_TOPICS_BY_CLUSTER, RMQ_SER_JSON);
    rmq_header_add(&h, "cluster", "DefaultCluster");
    call(1, &h, NULL, &a);
    cr_assert_not_null(strstr(a.body, "\"OnlyA\""), "%s", a.body);
    answer_free(&a);
    rmq_header_init(&h, RMQ_REQ_GET_SYSTEM_TOPIC_LIST_FROM_NS, RMQ_SER_JSON);
    call(1, &h, NULL, &a);
    cr_assert_not_null(strstr(a.body, "\"DefaultCluster\""), "%s", a.body);
    answer_free(&a);

    /* DELETE_TOPIC_IN_NAMESRV */
    rmq_header_init(&h, RMQ_REQ_DELETE_TOPIC_IN_NAMESRV, RMQ_SER_JSON);
    rmq_header_add(&h, "topic", "OnlyA");
    call(1, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    answer_free(&a);
    get_route(1, "OnlyA", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    cr_assert_eq(a.code, RMQ_RESP_TOPIC_NOT_EXIST);
    answer_free(&a);

    /* UNREGISTER_BROKER: broker-b leaves the route, broker-a stays */
    rmq_header_init(&h, RMQ_REQ_UNREGISTER_BROKER, RMQ_SER_JSON);
    rmq_header_add(&h, "brokerName", "broker-b");
    rmq_header_add(&h, "brokerAddr", "127.0.0.1:20911");
    rmq_header_add(&h, "clusterName", "DefaultCluster");
    rmq_header_add(&h, "brokerId", "0");
    call(1, &h, NULL, &a);
    cr_assert_eq(a.code, RMQ_RESP_SUCCESS);
    answer_free(&a);
    get_route(1, "TopicTest", RMQ_VERSION_V3_4_9, false, RMQ_SER_JSON, &a);
    route_brokers(&a, names, sizeof(names));
    cr_assert_str_eq(names, "broker-a");
    answer_free(&a);
    clients_down();
    daemon_stop_ok();
}
