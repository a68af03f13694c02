/*
 * Master/slave replication with the real daemons: a NameServer, a SYNC_MASTER and its
 * slave on loopback (100,000 messages, byte-identical logs, kill -9 of the master, the
 * slave drained, offsets committed there reaching the returning master), a master
 * alone (SLAVE_NOT_AVAILABLE), and the two brokers in two network namespaces joined by
 * a veth pair this test makes, so that the link between them can be cut and restored.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/ringmq.h"
#include "core/clock.h"
#include "core/util.h"
#include "net/codes.h"
#include "tests/integration/harness.h"

#define MSGS 100000
#define BATCH 100

static struct daemon NS, M, S;
static char ns_addr[64];
static char net_a[32], net_b[32];

static void
cleanup(void)
{
    char cmd[256];

    cleanup_one(&M);
    cleanup_one(&S);
    cleanup_one(&NS);
    if (net_a[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null",
                 net_a, net_b);
        if (system(cmd) != 0) {
            cr_log_warn("removing the test's network namespaces failed");
        }
    }
}

TestSuite(ha, .fini = cleanup, .timeout = 240);

/* argv prefix that runs a daemon inside network namespace net (NULL: here). */
static int
in_net(const char **argv, const char *net)
{
    if (net == NULL) {
        return 0;
    }
    argv[0] = "/usr/sbin/ip";
    argv[1] = "netns";
    argv[2] = "exec";
    argv[3] = net;
    return 4;
}

static void
namesrv_start(const char *net, const char *ip)
{
    char bin[PATH_MAX], kv[128], bind[64];
    const char *argv[16];
    int argc;

    daemon_path("rmq-namesrv", bin, sizeof(bin));
    if (NS.dir[0] == '\0') {
        snprintf(NS.dir, sizeof(NS.dir), "/tmp/rmq-ha-ns-XXXXXX");
        cr_assert_not_null(mkdtemp(NS.dir));
    }
    snprintf(kv, sizeof(kv), "--kvConfigPath=%s/kvConfig.json", NS.dir);
    snprintf(bind, sizeof(bind), "--bindAddress=%s", ip);
    argc = in_net(argv, net);
    argv[argc++] = bin;
    argv[argc++] = "--listenPort=0";
    argv[argc++] = bind;
    argv[argc++] = kv;
    argv[argc] = NULL;
    daemon_spawn(&NS, "namesrv", argv, "namesrv: serving address=");
    NS.port = daemon_log_int(&NS, "port=");
    cr_assert_neq(NS.port, 0);
    snprintf(ns_addr, sizeof(ns_addr), "%s:%u", ip, NS.port);
}

/* A broker of broker set "ha" registered with NS: role SYNC_MASTER, ASYNC_MASTER or
 * SLAVE; extra NULL-terminated --key=value arguments. */
static void
broker_start(struct daemon *d, const char *tag, const char *role, const char *net,
             const char *ip, const char *const *extra)
{
    char bin[PATH_MAX], root[128], nsarg[96], rolearg[64], ip1[64], bind[64];
    const char *argv[40];
    int argc;

    daemon_path("rmq-broker", bin, sizeof(bin));
    if (d->dir[0] == '\0') {
        snprintf(d->dir, sizeof(d->dir), "/tmp/rmq-ha-%s-XXXXXX", tag);
        cr_assert_not_null(mkdtemp(d->dir));
    }
    snprintf(root, sizeof(root), "--storePathRootDir=%s/data", d->dir);
    snprintf(nsarg, sizeof(nsarg), "--namesrvAddr=%s", ns_addr);
    snprintf(rolearg, sizeof(rolearg), "--brokerRole=%s", role);
    snprintf(ip1, sizeof(ip1), "--brokerIP1=%s", ip);
    snprintf(bind, sizeof(bind), "--bindAddress=%s", ip);
    argc = in_net(argv, net);
    argv[argc++] = bin;
    argv[argc++] = "--brokerName=ha";
    argv[argc++] = strcmp(role, "SLAVE") == 0 ? "--brokerId=1" : "--brokerId=0";
    argv[argc++] = "--listenPort=0";
    argv[argc++] = bind;
    argv[argc++] = ip1;
    argv[argc++] = "--mappedFileSizeCommitLog=67108864";
    argv[argc++] = "--registerBrokerInterval=1000";
    argv[argc++] = "--slaveMetadataSyncInterval=500";
    argv[argc++] = "--syncFlushTimeout=1500";
    argv[argc++] = "--haHousekeepingInterval=3000";
    argv[argc++] = "--haSendHeartbeatInterval=500";
    argv[argc++] = nsarg;
    argv[argc++] = rolearg;
    argv[argc++] = root;
    for (int i = 0; extra != NULL && extra[i] != NULL && argc < 39; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    daemon_spawn(d, tag, argv, "broker: ready port=");
}

static struct rmq_options
opts(const char *group)
{
    struct rmq_options o = {.namesrv = ns_addr, .group = group};

    return o;
}

static void
create_topic(const char *addr, const char *topic)
{
    struct rmq_options o = opts("HA_ADMIN");
    const char *const fields[] = {"topic", topic, "readQueueNums", "4", "writeQueueNums", "4",
                                  "perm", "6", NULL};
    struct rmq_admin *a;
    char remark[256];
    int code;

    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    cr_assert_eq(rmq_admin_call(a, addr, RMQ_REQ_UPDATE_AND_CREATE_TOPIC, fields, NULL, 0, &code,
                                remark, sizeof(remark), NULL, NULL), 0, "%s", rmq_last_error());
    cr_assert_eq(code, RMQ_RESP_SUCCESS, "%s", remark);
    rmq_admin_destroy(a);
}

/* The topic's route lists a broker with this id ("\"0\":" the master, "\"1\":" the slave). */
static bool
id_in_route(const char *topic, const char *id)
{
    struct rmq_options o = opts("HA_ADMIN");
    struct rmq_admin *a;
    char *json = NULL;
    bool yes = false;

    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    if (rmq_admin_route(a, topic, &json) == 0) {
        yes = strstr(json, id) != NULL;
    }
    free(json);
    rmq_admin_destroy(a);
    return yes;
}

/* The slave appears in the topic's route (it copied the topic and registered it). */
static bool
slave_in_route(const char *topic)
{
    return id_in_route(topic, "\"1\":");
}

/* A request without fields to the broker at addr: its body (malloc'd; NULL unless
 * answered SUCCESS). */
static char *
admin_body(const char *addr, int code)
{
    struct rmq_options o = opts("HA_ADMIN");
    struct rmq_admin *a;
    char remark[256];
    char *body = NULL;
    size_t len = 0;
    int answer = -1;

    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    if (rmq_admin_call(a, addr, code, NULL, NULL, 0, &answer, remark, sizeof(remark), &body,
                       &len) != 0 || answer != RMQ_RESP_SUCCESS) {
        free(body);
        body = NULL;
    }
    rmq_admin_destroy(a);
    return body;
}

/* ... answered SUCCESS with want in its body. */
static bool
body_has(const char *addr, int code, const char *want)
{
    char *body = admin_body(addr, code);
    bool yes = body != NULL && strstr(body, want) != NULL;

    free(body);
    return yes;
}

/* The broker at addr says "key":"value" in its runtime info. */
static bool
runtime_says(const char *addr, const char *key, const char *value)
{
    char want[128];

    snprintf(want, sizeof(want), "\"%s\":\"%s\"", key, value);
    return body_has(addr, RMQ_REQ_GET_BROKER_RUNTIME_INFO, want);
}

/* A number from the runtime info of the broker at addr, or -1. */
static long long
runtime_num(const char *addr, const char *key)
{
    char *body = admin_body(addr, RMQ_REQ_GET_BROKER_RUNTIME_INFO);
    char want[128];
    const char *at;
    long long v = -1;

    snprintf(want, sizeof(want), "\"%s\":\"", key);
    if (body != NULL && (at = strstr(body, want)) != NULL) {
        v = atoll(at + strlen(want));
    }
    free(body);
    return v;
}

static char slave_addr[64];

/* The slave copied the topic from its master. */
static bool
slave_has_topic(const char *topic)
{
    return body_has(slave_addr, RMQ_REQ_GET_ALL_TOPIC_CONFIG, topic);
}

static bool
master_has_its_slave(const char *addr)
{
    return runtime_says(addr, "haConnections", "1");
}

static void
wait_for(bool (*cond)(const char *), const char *arg, int seconds, const char *what)
{
    uint64_t end = rmq_clock_mono_ns() + (uint64_t)seconds * 1000000000u;

    while (!cond(arg)) {
        cr_assert_lt(rmq_clock_mono_ns(), end, "waited %d s for %s", seconds, what);
        usleep(50000);
    }
}

/* Fails the test saying where segment name first differs, and how many bytes do. With
 * RMQ_TEST_KEEP=dir set, both data directories and logs are copied there first, as the
 * suite's cleanup deletes them. */
static void
report_difference(const char *name)
{
    char cmd[4 * PATH_MAX], first[256] = "", count[64] = "";
    const char *keep = getenv("RMQ_TEST_KEEP");
    FILE *f;

    if (keep != NULL) {
        snprintf(cmd, sizeof(cmd), "mkdir -p %s && cp -r %s %s/master && cp -r %s %s/slave", keep,
                 M.dir, keep, S.dir, keep);
        if (system(cmd) != 0) {
            cr_log_warn("keeping the data directories in %s failed", keep);
        }
    }
    snprintf(cmd, sizeof(cmd), "cmp %s/data/commitlog/%s %s/data/commitlog/%s 2>&1; "
             "cmp -l %s/data/commitlog/%s %s/data/commitlog/%s 2>/dev/null | wc -l",
             M.dir, name, S.dir, name, M.dir, name, S.dir, name);
    f = popen(cmd, "r");
    if (f != NULL) {
        if (fgets(first, sizeof(first), f) != NULL) {
            first[strcspn(first, "\n")] = '\0';
        }
        if (fgets(count, sizeof(count), f) != NULL) {
            count[strcspn(count, "\n")] = '\0';
        }
        pclose(f);
    }
    cr_assert_fail("commitlog segment %s differs (master first): %s; %s bytes differ", name, first,
                   count);
}

/* Every segment file of both commitlogs: same names, same bytes. */
static void
assert_logs_identical(void)
{
    char dir[PATH_MAX], cmd[3 * PATH_MAX];
    struct dirent *e;
    DIR *dm;
    int files = 0;

    snprintf(dir, sizeof(dir), "%s/data/commitlog", M.dir);
    dm = opendir(dir);
    cr_assert_not_null(dm);
    while ((e = readdir(dm)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(cmd, sizeof(cmd), "cmp -s %s/data/commitlog/%s %s/data/commitlog/%s", M.dir,
                 e->d_name, S.dir, e->d_name);
        if (system(cmd) != 0) {
            report_difference(e->d_name);
        }
        files++;
    }
    closedir(dm);
    cr_assert_geq(files, 1);
}

/* Send MSGS messages "m-<i>" in batches; every answer must be SEND_OK. */
static void
send_all(const char *topic)
{
    struct rmq_options o = opts("HA_PRODUCER");
    static struct rmq_message ms[BATCH];
    static char bodies[BATCH][16];
    struct rmq_producer *p;
    struct rmq_send_result r;

    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int i = 0; i < MSGS; i += BATCH) {
        for (int k = 0; k < BATCH; k++) {
            int n = snprintf(bodies[k], sizeof(bodies[k]), "m-%d", i + k);

            ms[k] = (struct rmq_message){.topic = topic, .body = bodies[k], .body_len = (size_t)n};
        }
        cr_assert_eq(rmq_producer_send_batch(p, ms, BATCH, &r, NULL), 0, "batch at %d: %s", i,
                     rmq_last_error());
        cr_assert_eq(r.status, RMQ_SEND_OK, "batch at %d: status %d", i, (int)r.status);
    }
    rmq_producer_destroy(p);
}

/* Pull every queue from 0 until all MSGS arrived, each exactly once; the next offsets
 * per queue into next (4 queues). */
static void
drain(struct rmq_pull_consumer *c, const char *topic, int64_t next[4])
{
    static uint8_t seen[MSGS];
    struct rmq_queue *qs;
    size_t n;
    int total = 0;
    uint64_t end = rmq_clock_mono_ns() + 60000000000ull;

    memset(seen, 0, sizeof(seen));
    cr_assert_eq(rmq_pull_queues(c, topic, &qs, &n), 0, "%s", rmq_last_error());
    cr_assert_eq(n, 4);
    for (int i = 0; i < 4; i++) {
        next[i] = 0;
    }
    while (total < MSGS) {
        for (size_t i = 0; i < n; i++) {
            struct rmq_pull_result r;

            cr_assert_eq(rmq_pull(c, &qs[i], "*", next[i], 32, 0, &r), 0, "%s",
                         rmq_last_error());
            for (uint32_t k = 0; k < r.count; k++) {
                int id = atoi((const char *)r.msgs[k].body + 2);

                cr_assert(id >= 0 && id < MSGS);
                cr_assert_eq(seen[id], 0, "m-%d twice", id);
                seen[id] = 1;
                total++;
            }
            next[i] = r.next_offset;
            rmq_pull_result_free(&r);
        }
        cr_assert_lt(rmq_clock_mono_ns(), end, "%d of %d drained", total, MSGS);
    }
    free(qs);
}

static int64_t committed[4];
static struct rmq_pull_consumer *checker;

static bool
master_has_offsets(const char *topic)
{
    struct rmq_queue *qs;
    size_t n;
    bool all = true;

    if (rmq_pull_queues(checker, topic, &qs, &n) != 0) {
        return false;
    }
    for (size_t i = 0; i < n && i < 4; i++) {
        int64_t off = -1;

        if (rmq_pull_fetch_offset(checker, &qs[i], &off) != 0 || off != committed[qs[i].queue_id]) {
            all = false;
        }
    }
    free(qs);
    return all;
}

static bool
master_in_route(const char *topic)
{
    return id_in_route(topic, "\"0\":");
}

static bool
no_master_in_route(const char *topic)
{
    return !master_in_route(topic);
}

Test(ha, sync_master_replicates_byte_for_byte_and_the_slave_serves_when_the_master_dies)
{
    struct rmq_options o = opts("CG_HA");
    struct rmq_pull_consumer *c;
    struct rmq_queue *qs;
    size_t n;
    char addr[64];
    int64_t next[4];

    namesrv_start(NULL, "127.0.0.1");
    broker_start(&M, "master", "SYNC_MASTER", NULL, "127.0.0.1", NULL);
    broker_start(&S, "slave", "SLAVE", NULL, "127.0.0.1", NULL);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", M.port);
    create_topic(addr, "HaTopic");
    snprintf(slave_addr, sizeof(slave_addr), "127.0.0.1:%u", S.port);
    wait_for(slave_has_topic, "HaTopic", 20, "the slave to copy the topic");
    wait_for(slave_in_route, "HaTopic", 20, "the slave in the route");
    wait_for(master_has_its_slave, addr, 20, "the slave's HA connection");
    send_all("HaTopic");
    assert_logs_identical();

    /* the master dies: consumers read every acknowledged message from the slave */
    cr_assert_eq(daemon_signal_wait(&M, SIGKILL), 128 + SIGKILL);
    wait_for(no_master_in_route, "HaTopic", 20, "the NameServer to drop the dead master");
    cr_assert_eq(rmq_pull_consumer_create(&c, &o), 0);
    drain(c, "HaTopic", next);
    /* offsets committed on the slave meanwhile */
    cr_assert_eq(rmq_pull_queues(c, "HaTopic", &qs, &n), 0);
    for (size_t i = 0; i < n; i++) {
        committed[qs[i].queue_id] = next[i];
        cr_assert_eq(rmq_pull_commit_offset(c, &qs[i], next[i]), 0, "%s", rmq_last_error());
    }
    free(qs);
    rmq_pull_consumer_destroy(c);

    /* the master returns (same data): it gets those offsets from the slave */
    broker_start(&M, "master", "SYNC_MASTER", NULL, "127.0.0.1", NULL);
    wait_for(master_in_route, "HaTopic", 20, "the master back in the route");
    cr_assert_eq(rmq_pull_consumer_create(&checker, &o), 0);
    wait_for(master_has_offsets, "HaTopic", 20, "the offsets committed on the slave");
    rmq_pull_consumer_destroy(checker);
    daemon_stop_ok_at(&S);
    daemon_stop_ok_at(&M);
    daemon_stop_ok_at(&NS);
}

Test(ha, a_sync_master_without_a_slave_never_answers_send_ok)
{
    struct rmq_options o = opts("HA_PRODUCER");
    struct rmq_message m = {.topic = "Lonely", .body = "x", .body_len = 1};
    struct rmq_producer *p;
    struct rmq_send_result r;
    char addr[64];

    namesrv_start(NULL, "127.0.0.1");
    broker_start(&M, "master", "SYNC_MASTER", NULL, "127.0.0.1", NULL);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", M.port);
    create_topic(addr, "Lonely");
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
        cr_assert_eq(r.status, RMQ_SEND_SLAVE_NOT_AVAILABLE, "status %d", (int)r.status);
    }
    rmq_producer_destroy(p);
    /* a consumer's send-back is not acknowledged either (the reference's SYSTEM_ERROR with
     * the status: the client then sends the message back through a producer itself) */
    {
        struct rmq_options ao = opts("HA_ADMIN");
        struct rmq_admin *a;
        char off[24], remark[256];
        int code = -1;
        const char *const fields[] = {"offset", off, "group", "CG_LONELY", "delayLevel", "0",
                                      "originMsgId", r.msg_id, "originTopic", "Lonely",
                                      "unitMode", "false", "maxReconsumeTimes", "16", NULL};

        snprintf(off, sizeof(off), "%lld", strtoll(r.offset_msg_id + 16, NULL, 16));
        cr_assert_eq(rmq_admin_create(&a, &ao), 0);
        cr_assert_eq(rmq_admin_call(a, addr, RMQ_REQ_CONSUMER_SEND_MSG_BACK, fields, NULL, 0,
                                    &code, remark, sizeof(remark), NULL, NULL), 0, "%s",
                     rmq_last_error());
        rmq_admin_destroy(a);
        cr_assert_eq(code, RMQ_RESP_SYSTEM_ERROR, "%s", remark);
        cr_assert_str_eq(remark, "SLAVE_NOT_AVAILABLE");
    }
    daemon_stop_ok_at(&M);
    daemon_stop_ok_at(&NS);
}

/* ---- two network namespaces ------------------------------------------------------------------ */

static void
sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* `rmq send` of count messages run inside net A; counts of each status in its output. */
static void
send_in_a(int count, int *ok, int *not_ok)
{
    char bin[PATH_MAX], cmd[PATH_MAX + 256], line[512];
    FILE *f;

    daemon_path("rmq", bin, sizeof(bin));
    snprintf(cmd, sizeof(cmd), "ip netns exec %s %s -n %s send -t NetTopic --count %d "
             "--size 100 2>&1", net_a, bin, ns_addr, count);
    f = popen(cmd, "r");
    cr_assert_not_null(f);
    *ok = *not_ok = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        *ok += strstr(line, " SEND_OK ") != NULL;
        *not_ok += strstr(line, " SLAVE_NOT_AVAILABLE ") != NULL ||
                   strstr(line, " FLUSH_SLAVE_TIMEOUT ") != NULL;
    }
    pclose(f);
}

static int ok_seen, not_ok_seen;

static bool
slave_caught_up(const char *unused)
{
    int ok, not_ok;

    (void)unused;
    send_in_a(1, &ok, &not_ok);
    return ok == 1;
}

Test(ha, a_cut_link_never_gives_send_ok_and_the_slave_catches_up_when_it_returns)
{
    int pid = (int)getpid() % 100000;
    char addr[64];

    if (geteuid() != 0 || system("ip netns add rmq-probe-$$ 2>/dev/null && "
                                 "ip netns del rmq-probe-$$") != 0) {
        cr_skip_test("network namespaces need root and iproute2");
    }
    snprintf(net_a, sizeof(net_a), "rmqa%d", pid);
    snprintf(net_b, sizeof(net_b), "rmqb%d", pid);
    sh("ip netns add %s && ip netns add %s", net_a, net_b);
    sh("ip link add va%d type veth peer name vb%d", pid, pid);
    sh("ip link set va%d netns %s && ip link set vb%d netns %s", pid, net_a, pid, net_b);
    sh("ip -n %s addr add 10.199.0.1/24 dev va%d && ip -n %s link set va%d up && "
       "ip -n %s link set lo up", net_a, pid, net_a, pid, net_a);
    sh("ip -n %s addr add 10.199.0.2/24 dev vb%d && ip -n %s link set vb%d up && "
       "ip -n %s link set lo up", net_b, pid, net_b, pid, net_b);

    namesrv_start(net_a, "10.199.0.1");
    broker_start(&M, "master", "SYNC_MASTER", net_a, "10.199.0.1", NULL);
    broker_start(&S, "slave", "SLAVE", net_b, "10.199.0.2", NULL);
    snprintf(addr, sizeof(addr), "10.199.0.1:%u", M.port);
    /* the admin connection goes from here: create the topic from inside net A */
    {
        char bin[PATH_MAX];

        daemon_path("rmq", bin, sizeof(bin));
        sh("ip netns exec %s %s -n %s topic create -t NetTopic -q 4 -b %s >/dev/null 2>&1",
           net_a, bin, ns_addr, addr);
    }
    wait_for(slave_caught_up, NULL, 30, "a first SEND_OK through the slave");
    send_in_a(200, &ok_seen, &not_ok_seen);
    cr_assert_eq(ok_seen, 200, "all SEND_OK while the link is up (%d not ok)", not_ok_seen);

    /* cut: the master must not answer SEND_OK for what the slave cannot have */
    sh("ip -n %s link set va%d down", net_a, pid);
    send_in_a(100, &ok_seen, &not_ok_seen);
    cr_assert_eq(ok_seen, 0, "SEND_OK while the slave is unreachable");
    cr_assert_eq(not_ok_seen, 100);

    /* restore: the slave reconnects and catches up; SEND_OK again */
    sh("ip -n %s link set va%d up", net_a, pid);
    wait_for(slave_caught_up, NULL, 60, "SEND_OK again after the link returned");
    /* every byte the master stored, the unreplicated ones included, is on the slave */
    daemon_stop_ok_at(&M);
    usleep(200000);
    daemon_stop_ok_at(&S);
    assert_logs_identical();
    daemon_stop_ok_at(&NS);
}

/* ---- reads from slaves, and a slave that must not serve ------------------------------------- */

/* PULL_MESSAGE of queue 0 at offset, one message, on the broker at addr: the answer's code
 * (and its suggestWhichBrokerId into *suggest, -1 if absent). */
static int
pull_one(const char *addr, const char *topic, int64_t offset, int *suggest, char *remark,
         size_t cap)
{
    struct rmq_options o = opts("HA_ADMIN");
    struct rmq_admin *a;
    char off[24];
    const char *v;
    const char *const fields[] = {"consumerGroup", "CG_READ", "topic", topic, "queueId", "0",
                                  "queueOffset", off, "maxMsgNums", "1", "sysFlag", "4",
                                  "commitOffset", "0", "suspendTimeoutMillis", "0",
                                  "subscription", "*", "subVersion", "0", NULL};
    int code = -1;

    snprintf(off, sizeof(off), "%lld", (long long)offset);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    cr_assert_eq(rmq_admin_call(a, addr, RMQ_REQ_PULL_MESSAGE, fields, NULL, 0, &code, remark,
                                cap, NULL, NULL), 0, "%s", rmq_last_error());
    v = rmq_admin_ext(a, "suggestWhichBrokerId");
    *suggest = v != NULL ? atoi(v) : -1;
    rmq_admin_destroy(a);
    return code;
}

Test(ha, a_reader_far_behind_is_sent_to_the_slave_with_slave_read_enable)
{
    const char *const read_slave[] = {"--slaveReadEnable=true",
                                      "--accessMessageInMemoryMaxRatio=0", NULL};
    struct rmq_options o = opts("HA_PRODUCER");
    struct rmq_message m = {.topic = "ReadTopic", .body = "r", .body_len = 1};
    struct rmq_producer *p;
    struct rmq_send_result r;
    char addr[64], remark[256];
    int suggest;

    namesrv_start(NULL, "127.0.0.1");
    broker_start(&M, "master", "ASYNC_MASTER", NULL, "127.0.0.1", read_slave);
    broker_start(&S, "slave", "SLAVE", NULL, "127.0.0.1", read_slave);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", M.port);
    snprintf(slave_addr, sizeof(slave_addr), "127.0.0.1:%u", S.port);
    create_topic(addr, "ReadTopic");
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(rmq_producer_send_to_queue(p, &m, "ha", 0, &r), 0, "%s", rmq_last_error());
    }
    rmq_producer_destroy(p);
    /* the window is 0 % of RAM: a reader behind the log's end goes to slave 1 */
    cr_assert_eq(pull_one(addr, "ReadTopic", 0, &suggest, remark, sizeof(remark)),
                 RMQ_RESP_SUCCESS, "%s", remark);
    cr_assert_eq(suggest, 1);
    /* the slave, once it has the topic and the messages, serves the same pull */
    wait_for(slave_has_topic, "ReadTopic", 20, "the slave to copy the topic");
    cr_assert_eq(pull_one(slave_addr, "ReadTopic", 0, &suggest, remark, sizeof(remark)),
                 RMQ_RESP_SUCCESS, "%s", remark);
    /* libringmq follows the suggestion: its second pull goes to the slave */
    {
        struct rmq_options co = opts("CG_FOLLOW");
        struct rmq_pull_consumer *c;
        struct rmq_queue *qs;
        struct rmq_pull_result pr;
        long long before = runtime_num(slave_addr, "pulls");
        size_t n;
        int64_t next = 0;

        cr_assert_eq(rmq_pull_consumer_create(&c, &co), 0);
        cr_assert_eq(rmq_pull_queues(c, "ReadTopic", &qs, &n), 0, "%s", rmq_last_error());
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(rmq_pull(c, &qs[0], "*", next, 1, 0, &pr), 0, "%s", rmq_last_error());
            cr_assert_eq(pr.count, 1);
            next = pr.next_offset;
            rmq_pull_result_free(&pr);
        }
        free(qs);
        rmq_pull_consumer_destroy(c);
        cr_assert_eq(runtime_num(slave_addr, "pulls"), before + 1, "one pull went to the slave");
    }
    daemon_stop_ok_at(&S);
    daemon_stop_ok_at(&M);
    /* without slaveReadEnable: always the master */
    broker_start(&M, "master", "ASYNC_MASTER", NULL, "127.0.0.1", NULL);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", M.port);
    cr_assert_eq(pull_one(addr, "ReadTopic", 0, &suggest, remark, sizeof(remark)),
                 RMQ_RESP_SUCCESS, "%s", remark);
    cr_assert_eq(suggest, 0);
    daemon_stop_ok_at(&M);
    daemon_stop_ok_at(&NS);
}

static bool
slave_diverged(const char *unused)
{
    (void)unused;
    return !runtime_says(slave_addr, "haDiverged", "");
}

Test(ha, a_slave_whose_log_is_not_its_masters_refuses_to_serve)
{
    struct rmq_options o = opts("HA_PRODUCER");
    struct rmq_message m = {.topic = "OwnTopic", .body = "mine", .body_len = 4};
    struct rmq_producer *p;
    struct rmq_send_result r;
    char addr[64], remark[256];
    int suggest;

    /* the future slave first runs as a master of its own set and takes messages */
    namesrv_start(NULL, "127.0.0.1");
    {
        const char *const other[] = {"--brokerName=other", NULL};

        broker_start(&S, "slave", "ASYNC_MASTER", NULL, "127.0.0.1", other);
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", S.port);
    create_topic(addr, "OwnTopic");
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
    }
    rmq_producer_destroy(p);
    daemon_stop_ok_at(&S);
    /* a master with a different history of the same length or less */
    broker_start(&M, "master", "ASYNC_MASTER", NULL, "127.0.0.1", NULL);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", M.port);
    create_topic(addr, "OwnTopic");
    /* the old log, now as this master's slave: it must notice and refuse pulls */
    broker_start(&S, "slave", "SLAVE", NULL, "127.0.0.1", NULL);
    snprintf(slave_addr, sizeof(slave_addr), "127.0.0.1:%u", S.port);
    wait_for(slave_diverged, NULL, 20, "the slave to find its log is not the master's");
    cr_assert_eq(pull_one(slave_addr, "OwnTopic", 0, &suggest, remark, sizeof(remark)),
                 RMQ_RESP_SYSTEM_ERROR);
    cr_assert(strstr(remark, "does not match") != NULL, "%s", remark);
    daemon_stop_ok_at(&S);
    daemon_stop_ok_at(&M);
    daemon_stop_ok_at(&NS);
}

/* ---- a slave killed while copying ---------------------------------------------------------- */

static bool
caught_up(const char *unused)
{
    char master[64];
    long long m, s;

    (void)unused;
    snprintf(master, sizeof(master), "127.0.0.1:%u", M.port);
    m = runtime_num(master, "commitLogMaxOffset");
    s = runtime_num(slave_addr, "commitLogMaxOffset");
    return m > 0 && m == s;
}

Test(ha, a_slave_killed_while_copying_resumes_and_ends_identical)
{
    char addr[64], bin[PATH_MAX], nsarg[96];
    pid_t load;
    int status;

    namesrv_start(NULL, "127.0.0.1");
    broker_start(&M, "master", "ASYNC_MASTER", NULL, "127.0.0.1", NULL);
    broker_start(&S, "slave", "SLAVE", NULL, "127.0.0.1", NULL);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", M.port);
    snprintf(slave_addr, sizeof(slave_addr), "127.0.0.1:%u", S.port);
    create_topic(addr, "CrashTopic");
    wait_for(master_has_its_slave, addr, 20, "the slave's HA connection");
    /* pipelined sends from another process while the slave is killed twice */
    daemon_path("rmq-bench", bin, sizeof(bin));
    snprintf(nsarg, sizeof(nsarg), "--namesrv=%s", ns_addr);
    load = fork();
    cr_assert_geq(load, 0);
    if (load == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, 1);
        dup2(null, 2);
        execl(bin, bin, "produce", nsarg, "--topic=CrashTopic", "--count=600000", "--size=512",
              "--mode=async", "--inflight=64", (char *)NULL);
        _exit(127);
    }
    for (int round = 0; round < 2; round++) {
        usleep(400000);
        cr_assert_eq(daemon_signal_wait(&S, SIGKILL), 128 + SIGKILL);
        usleep(200000);
        broker_start(&S, "slave", "SLAVE", NULL, "127.0.0.1", NULL);
        snprintf(slave_addr, sizeof(slave_addr), "127.0.0.1:%u", S.port);
    }
    cr_assert_eq(waitpid(load, &status, 0), load);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "rmq-bench produce failed");
    wait_for(caught_up, NULL, 60, "the restarted slave to catch up");
    cr_assert(runtime_says(slave_addr, "haDiverged", ""), "a killed slave is not a diverged one");
    daemon_stop_ok_at(&S);
    daemon_stop_ok_at(&M);
    assert_logs_identical();
    daemon_stop_ok_at(&NS);
}
