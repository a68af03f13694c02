/*
 * libringmq and the rmq command line against the real daemons on loopback: a standalone
 * broker (its NameServer inside), and for fail-over a second broker registered with it.
 * Only the public header client/ringmq.h is used for the library.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
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

static struct daemon A, B2;
static char ns[32];
static char addr_a[32];

static void
start_a(const char *const *extra)
{
    snprintf(ns, sizeof(ns), "127.0.0.1:%u", broker_spawn_standalone(&A, "client-test", extra));
    snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%u", A.port);
}

static void
start_b(void)
{
    char bin[PATH_MAX];
    char root[128];
    char nsarg[64];
    const char *argv[16];
    int argc = 0;

    daemon_path("rmq-broker", bin, sizeof(bin));
    snprintf(B2.dir, sizeof(B2.dir), "/tmp/rmq-client-test-b-XXXXXX");
    cr_assert_not_null(mkdtemp(B2.dir));
    snprintf(root, sizeof(root), "--storePathRootDir=%s/data", B2.dir);
    snprintf(nsarg, sizeof(nsarg), "--namesrvAddr=%s", ns);
    argv[argc++] = bin;
    argv[argc++] = "--brokerName=broker-b";
    argv[argc++] = "--listenPort=0";
    argv[argc++] = "--bindAddress=127.0.0.1";
    argv[argc++] = "--brokerIP1=127.0.0.1";
    argv[argc++] = "--mappedFileSizeCommitLog=67108864";
    argv[argc++] = nsarg;
    argv[argc++] = root;
    argv[argc] = NULL;
    daemon_spawn(&B2, "broker-b", argv, "broker: ready port=");
}

static void
cleanup(void)
{
    cleanup_one(&A);
    cleanup_one(&B2);
}

TestSuite(client, .fini = cleanup, .timeout = 120);

static struct rmq_options
opts(const char *group)
{
    struct rmq_options o = {.namesrv = ns, .group = group};

    return o;
}

/* UPDATE_AND_CREATE_TOPIC on the broker at addr. */
static void
create_topic(struct rmq_admin *a, const char *addr, const char *topic, int queues)
{
    char q[8];
    int code;
    char remark[256];

    snprintf(q, sizeof(q), "%d", queues);
    {
        const char *const fields[] = {"topic", topic, "readQueueNums", q, "writeQueueNums", q,
                                      "perm", "6", NULL};

        cr_assert_eq(rmq_admin_call(a, addr, RMQ_REQ_UPDATE_AND_CREATE_TOPIC, fields, NULL, 0,
                                    &code, remark, sizeof(remark), NULL, NULL), 0, "%s",
                     rmq_last_error());
    }
    cr_assert_eq(code, RMQ_RESP_SUCCESS, "%s", remark);
}

/* ---- every send mode, read back by the pull consumer ---------------------------------------- */

struct async_count {
    int ok;
    int failed;
    char ids[1000][33];
};

static void
on_sent(void *arg, int err, const struct rmq_send_result *r)
{
    struct async_count *ac = arg;

    if (err == 0) {
        memcpy(ac->ids[ac->ok], r->msg_id, 33);
        ac->ok++;
    } else {
        ac->failed++;
    }
}

struct seen {
    int count;
    int tag_a;
    bool big_ok;
    int by_prefix[8];
    char ids[2000][33];
};

static void
note(struct seen *s, const struct rmq_msg *m)
{
    static char big[10240];

    cr_assert_lt(s->count, 2000);
    snprintf(s->ids[s->count++], 33, "%s", m->msg_id);
    s->tag_a += strcmp(m->tags, "A") == 0;
    if (m->body_len == sizeof(big)) {
        memset(big, 'z', sizeof(big));
        s->big_ok = memcmp(m->body, big, sizeof(big)) == 0;
    }
    if (m->body_len > 0 && m->body[0] >= '0' && m->body[0] <= '7') {
        s->by_prefix[m->body[0] - '0']++;
    }
}

static bool
has_id(const struct seen *s, const char *id)
{
    for (int i = 0; i < s->count; i++) {
        if (strcmp(s->ids[i], id) == 0) {
            return true;
        }
    }
    return false;
}

/* Pull every queue of topic from 0 until want messages arrived (10 s at most). */
static void
pull_all(struct rmq_pull_consumer *c, const char *topic, const char *tags, int want,
         struct seen *s)
{
    struct rmq_queue *qs;
    size_t n;
    int64_t next[16] = {0};
    uint64_t end = rmq_clock_mono_ns() + 10000000000ull;

    cr_assert_eq(rmq_pull_queues(c, topic, &qs, &n), 0, "%s", rmq_last_error());
    cr_assert_leq(n, 16);
    while (s->count < want) {
        for (size_t i = 0; i < n; i++) {
            struct rmq_pull_result r;

            cr_assert_eq(rmq_pull(c, &qs[i], tags, next[i], 32, 0, &r), 0, "%s", rmq_last_error());
            for (uint32_t k = 0; k < r.count; k++) {
                note(s, &r.msgs[k]);
            }
            next[i] = r.next_offset;
            rmq_pull_result_free(&r);
        }
        cr_assert_lt(rmq_clock_mono_ns(), end, "%d of %d messages pulled", s->count, want);
    }
    free(qs);
}

Test(client, every_send_mode_arrives_and_the_pull_consumer_reads_it_back)
{
    static struct async_count ac;
    static struct seen all, only_a;
    static char big[10240];
    struct rmq_options po = opts("PG_MODES");
    struct rmq_options co = opts("CG_MODES");
    struct rmq_producer *p;
    struct rmq_pull_consumer *c;
    struct rmq_admin *a;
    struct rmq_send_result r, first;
    struct rmq_message m = {.topic = "ClientModes"};
    struct rmq_message batch[10];
    char batch_ids[10][33];
    char sync_ids[100][33];
    char body[32];
    int32_t ordered_queue = -1;
    int64_t last_offset = -1, off;

    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &po), 0);
    create_topic(a, addr_a, "ClientModes", 4);
    cr_assert_eq(rmq_producer_create(&p, &po), 0, "%s", rmq_last_error());
    /* 0: sync, tags alternating */
    for (int i = 0; i < 100; i++) {
        snprintf(body, sizeof(body), "0-sync-%d", i);
        m.body = body;
        m.body_len = strlen(body);
        m.tags = i % 2 ? "A" : "B";
        m.keys = "k1 k2";
        cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
        cr_assert_eq(r.status, RMQ_SEND_OK);
        cr_assert_eq(strlen(r.msg_id), 32);
        cr_assert_eq(strlen(r.offset_msg_id), 32);
        cr_assert_eq(r.attempts, 1);
        memcpy(sync_ids[i], r.msg_id, 33);
    }
    m.tags = NULL;
    m.keys = NULL;
    /* 1: async, 1000 in flight at most */
    for (int i = 0; i < 1000; i++) {
        snprintf(body, sizeof(body), "1-async-%d", i);
        m.body = body;
        m.body_len = strlen(body);
        cr_assert_eq(rmq_producer_send_async(p, &m, on_sent, &ac), 0, "%s", rmq_last_error());
    }
    while (rmq_producer_poll(p, 1000) > 0) {
    }
    cr_assert_eq(ac.ok, 1000, "%d ok, %d failed", ac.ok, ac.failed);
    /* 2: oneway */
    for (int i = 0; i < 10; i++) {
        snprintf(body, sizeof(body), "2-oneway-%d", i);
        m.body = body;
        m.body_len = strlen(body);
        cr_assert_eq(rmq_producer_send_oneway(p, &m), 0, "%s", rmq_last_error());
    }
    /* 3: one batch of 10 */
    for (int i = 0; i < 10; i++) {
        batch[i] = (struct rmq_message){.topic = "ClientModes", .body = "3-batch", .body_len = 7};
    }
    cr_assert_eq(rmq_producer_send_batch(p, batch, 10, &first, batch_ids), 0, "%s",
                 rmq_last_error());
    cr_assert_str_eq(first.msg_id, batch_ids[0]);
    /* 4: a body over 4 KiB travels compressed and arrives whole */
    memset(big, 'z', sizeof(big));
    m.body = big;
    m.body_len = sizeof(big);
    cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
    /* 5: ordered by key: one queue, offsets in order */
    for (int i = 0; i < 50; i++) {
        snprintf(body, sizeof(body), "5-ordered-%d", i);
        m.body = body;
        m.body_len = strlen(body);
        cr_assert_eq(rmq_producer_send_ordered(p, &m, "order-7", &r), 0, "%s", rmq_last_error());
        if (ordered_queue < 0) {
            ordered_queue = r.queue.queue_id;
        }
        cr_assert_eq(r.queue.queue_id, ordered_queue, "same key, same queue");
        cr_assert_gt(r.queue_offset, last_offset);
        last_offset = r.queue_offset;
    }
    /* 6: to a chosen queue */
    m.body = "6-queue";
    m.body_len = 7;
    cr_assert_eq(rmq_producer_send_to_queue(p, &m, NULL, 2, &r), 0, "%s", rmq_last_error());
    cr_assert_eq(r.queue.queue_id, 2);
    cr_assert_eq(rmq_producer_send_to_queue(p, &m, NULL, 9, &r), RMQ_ERR_INVALID);
    rmq_producer_destroy(p);

    cr_assert_eq(rmq_pull_consumer_create(&c, &co), 0);
    pull_all(c, "ClientModes", "*", 100 + 1000 + 10 + 10 + 1 + 50 + 1, &all);
    cr_assert_eq(all.count, 1172, "nothing more, nothing less");
    cr_assert_eq(all.by_prefix[0], 100);
    cr_assert_eq(all.by_prefix[1], 1000);
    cr_assert_eq(all.by_prefix[2], 10);
    cr_assert_eq(all.by_prefix[3], 10);
    cr_assert_eq(all.by_prefix[5], 50);
    cr_assert(all.big_ok, "the compressed body came back as sent");
    for (int i = 0; i < 100; i++) {
        cr_assert(has_id(&all, sync_ids[i]), "sync msgId %s pulled with its UNIQ_KEY", sync_ids[i]);
    }
    for (int i = 0; i < 1000; i += 97) {
        cr_assert(has_id(&all, ac.ids[i]));
    }
    for (int i = 0; i < 10; i++) {
        cr_assert(has_id(&all, batch_ids[i]), "batch message %d has its own id", i);
    }
    pull_all(c, "ClientModes", "A", 50, &only_a);
    cr_assert_eq(only_a.count, 50, "the tag filter is exact");
    cr_assert_eq(only_a.tag_a, 50);
    /* offsets */
    {
        struct rmq_queue *qs;
        size_t n;

        cr_assert_eq(rmq_pull_queues(c, "ClientModes", &qs, &n), 0);
        cr_assert_eq(n, 4);
        cr_assert_eq(rmq_pull_fetch_offset(c, &qs[1], &off), 0);
        /* nothing committed: -1, or 0 by the reference's rule for a queue whose first
         * message is still in memory (REMOTING.md §12.8) */
        cr_assert_leq(off, 0, "nothing committed yet");
        cr_assert_eq(rmq_pull_commit_offset(c, &qs[1], 5), 0, "%s", rmq_last_error());
        cr_assert_eq(rmq_pull_fetch_offset(c, &qs[1], &off), 0);
        cr_assert_eq(off, 5);
        cr_assert_eq(rmq_pull_min_offset(c, &qs[1], &off), 0);
        cr_assert_eq(off, 0);
        cr_assert_eq(rmq_pull_max_offset(c, &qs[1], &off), 0);
        cr_assert_gt(off, 100);
        free(qs);
    }
    rmq_pull_consumer_destroy(c);
    rmq_admin_destroy(a);
    daemon_stop_ok_at(&A);
}

/* ---- failures --------------------------------------------------------------------------------- */

Test(client, failures_are_codes_with_reasons)
{
    static const char *const strict[] = {"--autoCreateTopicEnable=false", NULL};
    struct rmq_options o = {.namesrv = "127.0.0.1:1"};
    struct rmq_producer *p;
    struct rmq_send_result r;
    struct rmq_message m = {.topic = "Whatever", .body = "x", .body_len = 1};
    uint64_t t0;
    int ret;

    /* an unreachable NameServer: a network error at once, naming the address */
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    t0 = rmq_clock_mono_ns();
    ret = rmq_producer_send(p, &m, &r);
    cr_assert_eq(ret, RMQ_ERR_NETWORK, "%d %s", ret, rmq_last_error());
    cr_assert_lt(rmq_clock_mono_ns() - t0, 2000000000ull);
    cr_assert(strstr(rmq_last_error(), "127.0.0.1:1") != NULL, "%s", rmq_last_error());
    rmq_producer_destroy(p);
    /* bad messages never leave */
    start_a(strict);
    o = opts("PG_FAIL");
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    m.topic = "bad topic";
    cr_assert_eq(rmq_producer_send(p, &m, &r), RMQ_ERR_INVALID);
    m.topic = "Whatever";
    m.body_len = 0;
    cr_assert_eq(rmq_producer_send(p, &m, &r), RMQ_ERR_INVALID);
    cr_assert(strstr(rmq_last_error(), "empty body") != NULL, "%s", rmq_last_error());
    /* an unknown topic on a broker that does not create topics */
    m.body_len = 1;
    ret = rmq_producer_send(p, &m, &r);
    cr_assert(ret == RMQ_ERR_NO_ROUTE || ret == RMQ_ERR_BROKER, "%d %s", ret, rmq_last_error());
    cr_assert(strstr(rmq_last_error(), "Whatever") != NULL, "%s", rmq_last_error());
    rmq_producer_destroy(p);
    daemon_stop_ok_at(&A);
}

Test(client, json_headers_work_the_same)
{
    struct rmq_options o = opts("PG_JSON");
    struct rmq_producer *p;
    struct rmq_pull_consumer *c;
    struct rmq_admin *a;
    struct rmq_send_result r;
    struct rmq_message m = {.topic = "ClientJson", .tags = "J", .body = "json-1", .body_len = 6};
    static struct seen s;

    o.json_headers = true;
    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "ClientJson", 1);
    rmq_admin_destroy(a);
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
    cr_assert_eq(r.queue_offset, 0);
    rmq_producer_destroy(p);
    o.group = "CG_JSON";
    cr_assert_eq(rmq_pull_consumer_create(&c, &o), 0);
    pull_all(c, "ClientJson", "J", 1, &s);
    cr_assert_str_eq(s.ids[0], r.msg_id);
    rmq_pull_consumer_destroy(c);
    daemon_stop_ok_at(&A);
}

/* ---- retries and fault avoidance -------------------------------------------------------------- */

Test(client, sync_sends_go_to_the_other_broker_when_one_dies)
{
    struct rmq_options o = opts("PG_FAILOVER");
    struct rmq_producer *p;
    struct rmq_admin *a;
    struct rmq_send_result r;
    struct rmq_message m = {.topic = "Failover", .body = "f", .body_len = 1};
    char addr_b[32];
    int on_b = 0, retried = 0;

    start_a(NULL);
    start_b();
    snprintf(addr_b, sizeof(addr_b), "127.0.0.1:%u", B2.port);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "Failover", 2);
    create_topic(a, addr_b, "Failover", 2);
    rmq_admin_destroy(a);
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
        on_b += strcmp(r.queue.broker_name, "broker-b") == 0;
    }
    cr_assert_eq(on_b, 10, "round robin over both brokers' queues");
    cr_assert_eq(daemon_signal_wait(&B2, SIGKILL), 128 + SIGKILL);
    /* the NameServer still lists broker-b (until it expires): sends must not fail */
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "send %d: %s", i, rmq_last_error());
        cr_assert_str_eq(r.queue.broker_name, "broker-a");
        retried += r.attempts > 1;
    }
    cr_log_info("%d of 50 sends needed a second attempt", retried);
    cr_assert_geq(retried, 1, "the first send to the dead broker was retried");
    cr_assert_leq(retried, 2, "then the dead broker is avoided, not tried on every send");
    rmq_producer_destroy(p);
    daemon_stop_ok_at(&A);
}

/* ---- the command line --------------------------------------------------------------------------- */

/* Run rmq with args (one shell word list); stdout+stderr into out; the exit status. */
static int
rmq(char *out, size_t cap, const char *fmt, ...)
{
    char bin[PATH_MAX];
    char args[1024];
    char cmd[PATH_MAX + 1100];
    va_list ap;
    FILE *f;
    size_t n;
    int status;

    daemon_path("rmq", bin, sizeof(bin));
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", bin, args);
    f = popen(cmd, "r");
    cr_assert_not_null(f);
    n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int
lines_with(const char *out, const char *needle)
{
    int n = 0;

    for (const char *p = out; (p = strstr(p, needle)) != NULL; p += strlen(needle)) {
        n++;
    }
    return n;
}

Test(client, the_command_line_does_what_its_help_says)
{
    static char out[65536];

    start_a(NULL);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic create -t CliTopic -q 2", ns), 0, "%s", out);
    cr_assert(strstr(out, "created CliTopic") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic list", ns), 0, "%s", out);
    cr_assert(strstr(out, "CliTopic\n") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic route -t CliTopic", ns), 0, "%s", out);
    cr_assert(strstr(out, "broker-a") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' cluster list", ns), 0, "%s", out);
    cr_assert(strstr(out, addr_a) != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' send -t CliTopic --tag T1 -k key1 --body "
                     "hello-cli --count 3", ns), 0, "%s", out);
    cr_assert_eq(lines_with(out, " SEND_OK "), 3, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' send -t CliTopic --mode async --count 5 --size "
                     "64", ns), 0, "%s", out);
    cr_assert_eq(lines_with(out, " SEND_OK "), 5, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' --json send -t CliTopic --mode oneway --count "
                     "2", ns), 0, "%s", out);
    cr_assert_eq(lines_with(out, "SENT_ONEWAY"), 2, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic status -t CliTopic --json", ns), 0, "%s",
                 out);
    cr_assert(strstr(out, "\"maxOffset\"") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' consume -t CliTopic -g CliGroup --count 10 "
                     "--timeout 10 --from first", ns), 0, "%s", out);
    cr_assert_eq(lines_with(out, "hello-cli"), 3, "%s", out);
    cr_assert_eq(lines_with(out, "keys=key1 tags=T1"), 3, "%s", out);
    /* the group committed: nothing again, and the progress shows no lag */
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' consume -t CliTopic -g CliGroup --count 1 "
                     "--timeout 1", ns), 1, "%s", out);
    cr_assert(strstr(out, "0 of 1 messages") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' consumer progress -g CliGroup --json", ns), 0,
                 "%s", out);
    cr_assert(strstr(out, "\"lag\":0") != NULL && strstr(out, "\"lag\":1") == NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' offset reset -g CliGroup -t CliTopic --to first",
                     ns), 0, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' consume -t CliTopic -g CliGroup --count 10 "
                     "--timeout 10", ns), 0, "%s", out);
    cr_assert_eq(lines_with(out, "hello-cli"), 3, "after the reset: read again");
    /* query by the offset id send printed */
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' --json send -t CliTopic --body findme", ns), 0);
    {
        char id[33];
        const char *p = strstr(out, "\"offsetMsgId\":\"");

        cr_assert_not_null(p, "%s", out);
        snprintf(id, sizeof(id), "%.32s", p + 15);
        cr_assert_eq(rmq(out, sizeof(out), "-n '%s' query id %s", ns, id), 0, "%s", out);
        cr_assert(strstr(out, "findme") != NULL, "%s", out);
    }
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' broker stats -b %s", ns, addr_a), 0, "%s", out);
    cr_assert(strstr(out, "brokerVersion") != NULL, "%s", out);
    /* errors: one clear line and a non-zero exit */
    cr_assert_eq(rmq(out, sizeof(out), "-n 127.0.0.1:1 topic list"), 1, "%s", out);
    cr_assert(strstr(out, "cannot connect to 127.0.0.1:1") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic route -t NoSuchTopic", ns), 1, "%s", out);
    cr_assert(strstr(out, "NoSuchTopic does not exist") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' consume -t NoSuchTopic -g G", ns), 1, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic create", ns), 2, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "bogus"), 2, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "send --help"), 0, "%s", out);
    cr_assert(strstr(out, "--mode sync|async|oneway") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "--help"), 0, "%s", out);
    cr_assert(strstr(out, "consumer progress") != NULL, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic delete -t CliTopic", ns), 0, "%s", out);
    cr_assert_eq(rmq(out, sizeof(out), "-n '%s' topic route -t CliTopic", ns), 1, "%s", out);
    daemon_stop_ok_at(&A);
}

/* ---- push consumers ---------------------------------------------------------------------------- */

#define SEEN_MAX 1024

/* What one push consumer's callback saw (it runs on the consumer's thread). */
struct got {
    pthread_mutex_t mu;
    int total;
    int counts[SEEN_MAX];           /* by the number in the body "<prefix><n>" */
    char prefix[8];
    int fail_left;                  /* answer LATER this many times for fail_body */
    char fail_body[32];
    int fail_seen;
    int reconsume[8];               /* reconsume_times of each fail_body delivery */
    char topic[64];                 /* of the last fail_body delivery */
    int order_errors;
    int last_seq[8];                /* orderly: per key "k<j>-<seq>" */
};

static void
got_init(struct got *g, const char *prefix)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    snprintf(g->prefix, sizeof(g->prefix), "%s", prefix);
    for (int i = 0; i < 8; i++) {
        g->last_seq[i] = -1;
    }
}

static int
got_msgs(void *arg, const struct rmq_msg *msgs, uint32_t n)
{
    struct got *g = arg;
    int status = RMQ_CONSUME_SUCCESS;

    pthread_mutex_lock(&g->mu);
    for (uint32_t i = 0; i < n; i++) {
        char body[64];
        int k, j, seq;

        snprintf(body, sizeof(body), "%.*s", (int)RMQ_MIN(msgs[i].body_len, 63u),
                 (const char *)msgs[i].body);
        if (g->fail_body[0] != '\0' && strcmp(body, g->fail_body) == 0) {
            if (g->fail_seen < 8) {
                g->reconsume[g->fail_seen] = msgs[i].reconsume_times;
            }
            g->fail_seen++;
            snprintf(g->topic, sizeof(g->topic), "%s", msgs[i].topic);
            if (g->fail_left > 0) {
                g->fail_left--;
                status = RMQ_CONSUME_LATER;
                continue;
            }
        }
        if (sscanf(body, "k%d-%d", &j, &seq) == 2 && j >= 0 && j < 8) {
            g->order_errors += seq != g->last_seq[j] + 1;
            g->last_seq[j] = seq;
        }
        if (strncmp(body, g->prefix, strlen(g->prefix)) == 0) {
            k = atoi(body + strlen(g->prefix));
            if (k >= 0 && k < SEEN_MAX) {
                g->counts[k]++;
            }
        }
        g->total++;
    }
    pthread_mutex_unlock(&g->mu);
    return status;
}

static int
got_total(struct got *g)
{
    int n;

    pthread_mutex_lock(&g->mu);
    n = g->total;
    pthread_mutex_unlock(&g->mu);
    return n;
}

static struct rmq_push_consumer *
push_start(const char *group, const char *topic, const struct rmq_push_options *po, struct got *g)
{
    struct rmq_options o = opts(group);
    struct rmq_push_consumer *c;

    cr_assert_eq(rmq_push_consumer_create(&c, &o, po), 0, "%s", rmq_last_error());
    cr_assert_eq(rmq_push_subscribe(c, topic, "*"), 0, "%s", rmq_last_error());
    cr_assert_eq(rmq_push_consumer_start(c, got_msgs, g), 0, "%s", rmq_last_error());
    return c;
}

static void
send_n(const char *topic, const char *prefix, int from, int n)
{
    struct rmq_options o = opts("PG_PUSH");
    struct rmq_producer *p;
    struct rmq_send_result r;
    char body[32];

    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int i = from; i < from + n; i++) {
        struct rmq_message m = {.topic = topic, .body = body};

        snprintf(body, sizeof(body), "%s%d", prefix, i);
        m.body_len = strlen(body);
        cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
    }
    rmq_producer_destroy(p);
}

static void
wait_until(bool (*cond)(void *), void *arg, int seconds, const char *what)
{
    uint64_t end = rmq_clock_mono_ns() + (uint64_t)seconds * 1000000000ull;

    while (!cond(arg)) {
        cr_assert_lt(rmq_clock_mono_ns(), end, "timed out waiting for %s", what);
        usleep(20000);
    }
}

static struct rmq_push_consumer *pair[2];
static struct got *pair_got[2];
static int pair_want;

static bool
pair_settled(void *arg)
{
    (void)arg;
    return rmq_push_assigned_count(pair[0]) + (pair[1] != NULL ? rmq_push_assigned_count(pair[1]) : 0) ==
               5 && (pair[1] == NULL || (rmq_push_assigned_count(pair[0]) > 0 &&
                                         rmq_push_assigned_count(pair[1]) > 0));
}

static bool
pair_got_all(void *arg)
{
    (void)arg;
    return got_total(pair_got[0]) + (pair_got[1] != NULL ? got_total(pair_got[1]) : 0) >= pair_want;
}

Test(client, push_consumers_share_a_group_and_one_takes_over_when_the_other_stops)
{
    static struct got g1, g2;
    struct rmq_push_options po = {.from_where = RMQ_FROM_FIRST_OFFSET};
    struct rmq_options o = opts("PG_PUSH");
    struct rmq_admin *a;

    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "PushShared", 4);
    rmq_admin_destroy(a);
    got_init(&g1, "p-");
    got_init(&g2, "p-");
    pair[0] = push_start("CG_SHARED", "PushShared", &po, &g1);
    pair[1] = push_start("CG_SHARED", "PushShared", &po, &g2);
    pair_got[0] = &g1;
    pair_got[1] = &g2;
    /* 4 queues and the retry topic's 1, split between the two */
    wait_until(pair_settled, NULL, 30, "both consumers to hold queues");
    cr_log_info("assigned: %u and %u", rmq_push_assigned_count(pair[0]),
                rmq_push_assigned_count(pair[1]));
    send_n("PushShared", "p-", 0, 400);
    pair_want = 400;
    wait_until(pair_got_all, NULL, 20, "400 messages");
    usleep(300000);
    for (int i = 0; i < 400; i++) {
        cr_assert_eq(g1.counts[i] + g2.counts[i], 1, "p-%d consumed %d + %d times", i,
                     g1.counts[i], g2.counts[i]);
    }
    cr_assert_gt(g1.total, 0);
    cr_assert_gt(g2.total, 0);
    cr_log_info("split: %d and %d", g1.total, g2.total);
    /* one leaves (committing its offsets): the other takes every queue */
    rmq_push_consumer_destroy(pair[1]);
    pair[1] = NULL;
    pair_got[1] = NULL;
    wait_until(pair_settled, NULL, 30, "the remaining consumer to take every queue");
    got_init(&g1, "q-");
    send_n("PushShared", "q-", 0, 200);
    pair_want = 200;
    wait_until(pair_got_all, NULL, 20, "200 messages after the take-over");
    usleep(300000);
    for (int i = 0; i < 200; i++) {
        cr_assert_eq(g1.counts[i], 1, "q-%d consumed %d times", i, g1.counts[i]);
    }
    cr_assert_eq(g1.total, 200, "nothing from before the take-over came again");
    rmq_push_consumer_destroy(pair[0]);
    daemon_stop_ok_at(&A);
}

static struct got *bc_got[2];

static bool
bc_all(void *arg)
{
    (void)arg;
    return got_total(bc_got[0]) >= 100 && got_total(bc_got[1]) >= 100;
}

Test(client, broadcasting_consumers_each_get_everything)
{
    static struct got g1, g2;
    char dir[96];
    char file[160];
    struct rmq_push_options po = {.broadcasting = true, .from_where = RMQ_FROM_FIRST_OFFSET};
    struct rmq_push_consumer *c1, *c2;
    struct rmq_options o = opts("PG_PUSH");
    struct rmq_admin *a;

    start_a(NULL);
    snprintf(dir, sizeof(dir), "%s/offsets", A.dir);
    po.offsets_dir = dir;
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "PushBroadcast", 2);
    rmq_admin_destroy(a);
    got_init(&g1, "b-");
    got_init(&g2, "b-");
    c1 = push_start("CG_BROAD", "PushBroadcast", &po, &g1);
    c2 = push_start("CG_BROAD", "PushBroadcast", &po, &g2);
    send_n("PushBroadcast", "b-", 0, 100);
    bc_got[0] = &g1;
    bc_got[1] = &g2;
    wait_until(bc_all, NULL, 20, "100 messages at each consumer");
    usleep(300000);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(g1.counts[i], 1, "b-%d at consumer 1: %d", i, g1.counts[i]);
        cr_assert_eq(g2.counts[i], 1, "b-%d at consumer 2: %d", i, g2.counts[i]);
    }
    cr_assert_eq(rmq_push_assigned_count(c1), 2, "broadcasting takes every queue, no retry topic");
    rmq_push_consumer_destroy(c1);
    rmq_push_consumer_destroy(c2);
    snprintf(file, sizeof(file), "%s/CG_BROAD.json", dir);
    cr_assert_eq(access(file, R_OK), 0, "offsets kept in %s", file);
    /* restarted, it resumes from its file: nothing again */
    got_init(&g1, "b-");
    c1 = push_start("CG_BROAD", "PushBroadcast", &po, &g1);
    usleep(1500000);
    cr_assert_eq(got_total(&g1), 0, "a restarted broadcasting consumer resumes where it was");
    rmq_push_consumer_destroy(c1);
    daemon_stop_ok_at(&A);
}

static struct got *one_got;
static int one_want;

static bool
one_all(void *arg)
{
    (void)arg;
    return got_total(one_got) >= one_want;
}

Test(client, orderly_consumption_keeps_each_queues_order_and_retries_in_place)
{
    static struct got g;
    struct rmq_push_options po = {.orderly = true, .from_where = RMQ_FROM_FIRST_OFFSET};
    struct rmq_options o = opts("PG_ORDER");
    struct rmq_push_consumer *c;
    struct rmq_producer *p;
    struct rmq_admin *a;
    struct rmq_send_result r;
    char body[32], key[16];

    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "PushOrder", 4);
    rmq_admin_destroy(a);
    got_init(&g, "k");
    snprintf(g.fail_body, sizeof(g.fail_body), "k1-10");
    g.fail_left = 2;                /* fails twice, then goes through: order must hold */
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int seq = 0; seq < 50; seq++) {
        for (int j = 0; j < 4; j++) {
            struct rmq_message m = {.topic = "PushOrder", .body = body};

            snprintf(body, sizeof(body), "k%d-%d", j, seq);
            snprintf(key, sizeof(key), "key%d", j);
            m.body_len = strlen(body);
            cr_assert_eq(rmq_producer_send_ordered(p, &m, key, &r), 0, "%s", rmq_last_error());
        }
    }
    rmq_producer_destroy(p);
    c = push_start("CG_ORDER", "PushOrder", &po, &g);
    one_got = &g;
    one_want = 200;
    wait_until(one_all, NULL, 30, "200 ordered messages");
    cr_assert_eq(g.order_errors, 0, "per-key sequence broken %d times", g.order_errors);
    cr_assert_eq(g.fail_seen, 3, "k1-10 delivered twice more after failing");
    for (int j = 0; j < 4; j++) {
        cr_assert_eq(g.last_seq[j], 49);
    }
    rmq_push_consumer_destroy(c);
    daemon_stop_ok_at(&A);
}

Test(client, a_push_consumer_resumes_from_its_committed_offsets_after_a_restart)
{
    static struct got g;
    struct rmq_push_options po = {.from_where = RMQ_FROM_FIRST_OFFSET};
    struct rmq_options o = opts("PG_PUSH");
    struct rmq_push_consumer *c;
    struct rmq_admin *a;

    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "PushResume", 2);
    rmq_admin_destroy(a);
    send_n("PushResume", "r-", 0, 100);
    got_init(&g, "r-");
    c = push_start("CG_RESUME", "PushResume", &po, &g);
    one_got = &g;
    one_want = 100;
    wait_until(one_all, NULL, 20, "the first 100");
    rmq_push_consumer_destroy(c);
    send_n("PushResume", "r-", 100, 50);
    got_init(&g, "r-");
    c = push_start("CG_RESUME", "PushResume", &po, &g);
    one_want = 50;
    wait_until(one_all, NULL, 20, "the next 50");
    usleep(500000);
    cr_assert_eq(g.total, 50, "only what came after the commit");
    for (int i = 100; i < 150; i++) {
        cr_assert_eq(g.counts[i], 1, "r-%d: %d", i, g.counts[i]);
    }
    rmq_push_consumer_destroy(c);
    daemon_stop_ok_at(&A);
}

static bool
retried_twice(void *arg)
{
    struct got *g = arg;
    bool done;

    pthread_mutex_lock(&g->mu);
    done = g->fail_seen >= 3;
    pthread_mutex_unlock(&g->mu);
    return done;
}

Test(client, failed_messages_come_back_through_the_retry_topic)
{
    static const char *const fast[] = {"--messageDelayLevel=100ms 100ms 100ms 100ms 100ms "
                                       "100ms 100ms 100ms", NULL};
    static struct got g;
    struct rmq_push_options po = {.from_where = RMQ_FROM_FIRST_OFFSET};
    struct rmq_options o = opts("PG_PUSH");
    struct rmq_push_consumer *c;
    struct rmq_admin *a;

    start_a(fast);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "PushRetry", 1);
    rmq_admin_destroy(a);
    got_init(&g, "x-");
    snprintf(g.fail_body, sizeof(g.fail_body), "x-7");
    g.fail_left = 2;
    c = push_start("CG_RETRY", "PushRetry", &po, &g);
    send_n("PushRetry", "x-", 0, 10);
    wait_until(retried_twice, &g, 30, "x-7 to come back twice");
    one_got = &g;
    one_want = 10;
    wait_until(one_all, NULL, 10, "all 10");
    cr_assert_eq(g.reconsume[0], 0);
    cr_assert_eq(g.reconsume[1], 1, "came back through %%RETRY%% with reconsumeTimes 1");
    cr_assert_eq(g.reconsume[2], 2);
    cr_assert_str_eq(g.topic, "PushRetry", "shown with its original topic");
    cr_assert_eq(g.counts[7], 1, "consumed successfully once");
    rmq_push_consumer_destroy(c);
    daemon_stop_ok_at(&A);
}

static int
runtime_index_files(struct rmq_admin *a)
{
    char *body = NULL;
    char remark[128];
    int code;
    const char *p;
    int n = -1;

    cr_assert_eq(rmq_admin_call(a, addr_a, RMQ_REQ_GET_BROKER_RUNTIME_INFO, NULL, NULL, 0, &code,
                                remark, sizeof(remark), &body, NULL), 0);
    p = strstr(body, "\"indexFiles\":\"");
    if (p != NULL) {
        n = atoi(p + strlen("\"indexFiles\":\""));
    }
    free(body);
    return n;
}

/* ---- the key index ------------------------------------------------------------------------------ */

/* n messages "v-<i>" with KEYS "key-<i> common", in batches of 1000; their UNIQ_KEYs. */
static void
send_keyed(const char *topic, int from, int n, char (*ids)[33])
{
    static struct rmq_message batch[1000];
    static char bodies[1000][24], keys[1000][32];
    struct rmq_options o = opts("PG_KEYS");
    struct rmq_producer *p;
    struct rmq_send_result r;

    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    for (int done = 0; done < n;) {
        int k = RMQ_MIN(1000, n - done);

        for (int i = 0; i < k; i++) {
            snprintf(bodies[i], sizeof(bodies[i]), "v-%d", from + done + i);
            snprintf(keys[i], sizeof(keys[i]), "key-%d common", from + done + i);
            batch[i] = (struct rmq_message){.topic = topic, .keys = keys[i], .body = bodies[i],
                                            .body_len = strlen(bodies[i])};
        }
        cr_assert_eq(rmq_producer_send_batch(p, batch, (size_t)k, &r,
                                             ids != NULL ? ids + from + done : NULL), 0, "%s",
                     rmq_last_error());
        done += k;
    }
    rmq_producer_destroy(p);
}

/* The query for key-<i> returns exactly message v-<i>; with unique, by its UNIQ_KEY. */
static void
assert_found(struct rmq_admin *a, const char *topic, int i, const char *uniq)
{
    struct rmq_pull_result r;
    char key[32], want[24];

    snprintf(key, sizeof(key), "key-%d", i);
    snprintf(want, sizeof(want), "v-%d", i);
    cr_assert_eq(rmq_admin_query(a, topic, uniq != NULL ? uniq : key, uniq != NULL, 64, 0, 0, &r),
                 0, "%s", rmq_last_error());
    cr_assert_eq(r.count, 1, "%s: %u results", uniq != NULL ? uniq : key, r.count);
    cr_assert_eq(r.msgs[0].body_len, strlen(want));
    cr_assert_eq(memcmp(r.msgs[0].body, want, strlen(want)), 0, "%s found %.*s", key,
                 (int)r.msgs[0].body_len, (const char *)r.msgs[0].body);
    rmq_pull_result_free(&r);
}

Test(client, a_million_keys_each_query_returns_exactly_its_message, .timeout = 300)
{
    /* small index files, so a million messages (two million keys) roll through several */
    static const char *const small[] = {"--maxHashSlotNum=100000", "--maxIndexNum=600000", NULL};
    static char ids[1000000][33];
    struct rmq_options o = opts("PG_KEYS");
    struct rmq_admin *a;
    struct rmq_pull_result r;
    uint32_t seed = 11;
    uint64_t t0;

    start_a(small);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "Keyed", 4);
    t0 = rmq_clock_mono_ns();
    send_keyed("Keyed", 0, 1000000, ids);
    cr_log_info("1,000,000 keyed messages sent in %llu ms",
                (unsigned long long)((rmq_clock_mono_ns() - t0) / 1000000u));
    t0 = rmq_clock_mono_ns();
    for (int k = 0; k < 2000; k++) {
        int i;

        seed = seed * 1103515245u + 12345u;
        i = (int)(seed % 1000000);
        assert_found(a, "Keyed", i, k % 2 ? ids[i] : NULL);
    }
    cr_log_info("2,000 queries (key and unique id) in %llu ms",
                (unsigned long long)((rmq_clock_mono_ns() - t0) / 1000000u));
    /* a key nobody has, and another topic's keys */
    cr_assert_eq(rmq_admin_query(a, "Keyed", "key-1000000", false, 64, 0, 0, &r), 0);
    cr_assert_eq(r.count, 0);
    rmq_pull_result_free(&r);
    /* a key many messages share: the newest 64 */
    cr_assert_eq(rmq_admin_query(a, "Keyed", "common", false, 64, 0, 0, &r), 0);
    cr_assert_eq(r.count, 64);
    rmq_pull_result_free(&r);
    cr_assert_geq(runtime_index_files(a), 3, "the index rolled into several files");
    rmq_admin_destroy(a);
    daemon_stop_ok_at(&A);
}

Test(client, queries_stay_exact_after_kill_9_and_after_index_damage)
{
    static char ids[50000][33];
    struct rmq_options o = opts("PG_KEYS");
    struct rmq_admin *a;
    char cmd[256];

    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "KeyedKill", 2);
    send_keyed("KeyedKill", 0, 50000, ids);
    rmq_admin_destroy(a);
    cr_assert_eq(daemon_signal_wait(&A, SIGKILL), 128 + SIGKILL);
    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    for (int i = 0; i < 50000; i += 499) {
        assert_found(a, "KeyedKill", i, i % 2 ? ids[i] : NULL);
    }
    /* written after the restart too */
    send_keyed("KeyedKill", 50000, 1000, NULL);
    assert_found(a, "KeyedKill", 50999, NULL);
    rmq_admin_destroy(a);
    daemon_stop_ok_at(&A);
    /* scribble over the index files (headers kept): answers may go missing, never wrong */
    snprintf(cmd, sizeof(cmd), "for f in %s/data/index/0*; do dd if=/dev/urandom of=$f bs=4096 "
             "seek=1 count=64 conv=notrunc 2>/dev/null; done", A.dir);
    cr_assert_eq(system(cmd), 0);
    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    {
        int found = 0;

        for (int i = 0; i < 50000; i += 97) {
            struct rmq_pull_result r;
            char key[32], want[24];

            snprintf(key, sizeof(key), "key-%d", i);
            snprintf(want, sizeof(want), "v-%d", i);
            cr_assert_eq(rmq_admin_query(a, "KeyedKill", key, false, 64, 0, 0, &r), 0);
            for (uint32_t k = 0; k < r.count; k++) {
                cr_assert(r.msgs[k].body_len == strlen(want) &&
                          memcmp(r.msgs[k].body, want, strlen(want)) == 0,
                          "%s returned another message", key);
            }
            found += r.count > 0;
            rmq_pull_result_free(&r);
        }
        cr_log_info("after damage: %d of %d sampled keys still found, none wrong", found,
                    50000 / 97 + 1);
    }
    rmq_admin_destroy(a);
    daemon_stop_ok_at(&A);
    /* the index is derived data: gone entirely, a start rebuilds it from the commitlog */
    snprintf(cmd, sizeof(cmd), "rm -rf %s/data/index", A.dir);
    cr_assert_eq(system(cmd), 0);
    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    for (int i = 0; i < 51000; i += 251) {
        assert_found(a, "KeyedKill", i, i % 2 && i < 50000 ? ids[i] : NULL);
    }
    rmq_admin_destroy(a);
    daemon_stop_ok_at(&A);
}

Test(client, a_handle_left_idle_longer_than_its_timeout_still_sends)
{
    /* its loop only runs inside calls: a timeout armed after a pause must count from then */
    struct rmq_options o = opts("PG_IDLE");
    struct rmq_producer *p;
    struct rmq_admin *a;
    struct rmq_send_result r;
    struct rmq_message m = {.topic = "IdleTopic", .body = "x", .body_len = 1};

    o.timeout_ms = 400;
    start_a(NULL);
    cr_assert_eq(rmq_admin_create(&a, &o), 0);
    create_topic(a, addr_a, "IdleTopic", 1);
    cr_assert_eq(rmq_producer_create(&p, &o), 0);
    cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "%s", rmq_last_error());
    usleep(900000);
    cr_assert_eq(rmq_producer_send(p, &m, &r), 0, "after a pause: %s", rmq_last_error());
    usleep(900000);
    {
        int code;

        cr_assert_eq(rmq_admin_call(a, addr_a, RMQ_REQ_GET_BROKER_RUNTIME_INFO, NULL, NULL, 0,
                                    &code, NULL, 0, NULL, NULL), 0, "%s", rmq_last_error());
    }
    rmq_producer_destroy(p);
    rmq_admin_destroy(a);
    daemon_stop_ok_at(&A);
}
