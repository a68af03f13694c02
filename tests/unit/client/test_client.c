/*
 * libringmq's pure parts: queue allocation (spec/CLIENT.md §6.2), the ordered-message
 * selector, round robin with fault avoidance, UNIQ_KEY, properties, compression and the
 * decoding of pulled records, tag expressions, route parsing.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "client/client_int.h"
#include "core/clock.h"
#include "core/record.h"
#include "net/codes.h"

/* ---- allocation ------------------------------------------------------------------------------ */

Test(client_alloc, the_spec_examples)
{
    uint32_t out[16];

    /* 8 queues, 3 consumers: q0-q2, q3-q5, q6-q7 */
    cr_assert_eq(rmq_cli__allocate_avg(8, 3, 0, out), 3);
    cr_assert(out[0] == 0 && out[1] == 1 && out[2] == 2);
    cr_assert_eq(rmq_cli__allocate_avg(8, 3, 1, out), 3);
    cr_assert(out[0] == 3 && out[1] == 4 && out[2] == 5);
    cr_assert_eq(rmq_cli__allocate_avg(8, 3, 2, out), 2);
    cr_assert(out[0] == 6 && out[1] == 7);
    /* 3 queues, 5 consumers: one each for the first three, nothing for the others */
    for (uint32_t i = 0; i < 5; i++) {
        uint32_t n = rmq_cli__allocate_avg(3, 5, i, out);

        cr_assert_eq(n, i < 3 ? 1u : 0u, "consumer %u got %u", i, n);
        if (n == 1) {
            cr_assert_eq(out[0], i);
        }
    }
    cr_assert_eq(rmq_cli__allocate_avg(8, 3, 3, out), 0, "not in the group: nothing");
    cr_assert_eq(rmq_cli__allocate_avg(0, 3, 0, out), 0);
}

Test(client_alloc, every_queue_goes_to_exactly_one_consumer)
{
    uint32_t out[64];

    for (uint32_t q = 1; q <= 40; q++) {
        for (uint32_t c = 1; c <= 12; c++) {
            uint32_t owners[64] = {0};
            uint32_t prev_end = 0;

            for (uint32_t i = 0; i < c; i++) {
                uint32_t n = rmq_cli__allocate_avg(q, c, i, out);

                for (uint32_t k = 0; k < n; k++) {
                    owners[out[k]]++;
                    /* contiguous ranges in consumer order */
                    cr_assert_eq(out[k], prev_end, "q=%u c=%u i=%u", q, c, i);
                    prev_end++;
                }
                /* sizes differ by at most one */
                cr_assert_leq(n, q / c + 1);
                cr_assert_geq(n, q >= c ? q / c : 0);
            }
            for (uint32_t k = 0; k < q; k++) {
                cr_assert_eq(owners[k], 1, "q=%u c=%u: queue %u owned %u times", q, c, k, owners[k]);
            }
        }
    }
}

/* ---- selection ------------------------------------------------------------------------------- */

Test(client_select, sharding_keys_use_java_string_hash)
{
    /* Java: "hello".hashCode() = 99162322 */
    cr_assert_eq(rmq_cli__select_by_key("hello", 8), 99162322u % 8);
    cr_assert_eq(rmq_cli__select_by_key("hello", 7), 99162322u % 7);
    /* a negative hash: "polygenelubricants".hashCode() = Integer.MIN_VALUE, abs taken */
    cr_assert_eq(rmq_cli__select_by_key("polygenelubricants", 5), 2147483648u % 5);
    for (int i = 0; i < 100; i++) {
        char k[16];

        snprintf(k, sizeof(k), "key-%d", i);
        cr_assert_eq(rmq_cli__select_by_key(k, 16), rmq_cli__select_by_key(k, 16));
        cr_assert_lt(rmq_cli__select_by_key(k, 16), 16);
    }
}

static struct rmq_cli C;

static void
two_brokers(struct rmq_cli_route *r)
{
    static struct rmq_queue qs[4];
    static struct rmq_cli_broker a = {.name = "a"}, b = {.name = "b"};

    memset(&C, 0, sizeof(C));
    rmq_strmap_init(&C.brokers);
    cr_assert_eq(rmq_strmap_put(&C.brokers, "a", &a), 0);
    cr_assert_eq(rmq_strmap_put(&C.brokers, "b", &b), 0);
    a.unavailable_until_ms = b.unavailable_until_ms = 0;
    for (int i = 0; i < 4; i++) {
        snprintf(qs[i].broker_name, sizeof(qs[i].broker_name), "%s", i < 2 ? "a" : "b");
        qs[i].queue_id = i % 2;
    }
    memset(r, 0, sizeof(*r));
    r->pub = qs;
    r->pub_count = 4;
}

Test(client_select, round_robin_retries_elsewhere_and_avoids_slow_brokers)
{
    struct rmq_cli_route r;
    struct rmq_cli_broker *a;
    uint32_t seen[4] = {0};

    two_brokers(&r);
    for (int i = 0; i < 400; i++) {
        seen[rmq_cli__select_queue(&C, &r, NULL, 1000)]++;
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(seen[i], 100, "plain round robin");
    }
    for (int i = 0; i < 50; i++) {
        cr_assert_str_eq(r.pub[rmq_cli__select_queue(&C, &r, "a", 1000)].broker_name, "b",
                         "a retry goes to another broker");
    }
    /* a 600 ms answer avoids broker a for 30 s; a failure for 10 min */
    a = rmq_cli__broker(&C, "a");
    rmq_cli__fault_update(a, 600, false, 1000);
    cr_assert_eq(a->unavailable_until_ms, 1000 + 30000);
    for (int i = 0; i < 50; i++) {
        cr_assert_str_eq(r.pub[rmq_cli__select_queue(&C, &r, NULL, 2000)].broker_name, "b");
    }
    cr_assert_str_eq(r.pub[rmq_cli__select_queue(&C, &r, NULL, 31001)].broker_name, "a",
                     "available again after 30 s");
    rmq_cli__fault_update(a, 5, true, 1000);
    cr_assert_eq(a->unavailable_until_ms, 1000 + 600000);
    rmq_cli__fault_update(a, 40, false, 1000);
    cr_assert_leq(a->unavailable_until_ms, 1000, "fast answers clear it");
    /* every broker avoided: still a queue, not on the one that just failed */
    rmq_cli__fault_update(a, 0, true, 0);
    rmq_cli__fault_update(rmq_cli__broker(&C, "b"), 0, true, 0);
    cr_assert_str_eq(r.pub[rmq_cli__select_queue(&C, &r, "b", 5)].broker_name, "a");
    C.opts.no_fault_avoidance = true;
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < 40; i++) {
        seen[rmq_cli__select_queue(&C, &r, NULL, 5)]++;
    }
    cr_assert(seen[0] == 10 && seen[3] == 10, "avoidance off: round robin");
    rmq_strmap_fini(&C.brokers);
}

/* ---- messages -------------------------------------------------------------------------------- */

Test(client_msg, uniq_keys_are_32_hex_with_ip_and_a_counter)
{
    char a[33], b[33];

    memset(&C, 0, sizeof(C));
    C.ip[0] = 10;
    C.ip[3] = 7;
    rmq_cli__uniq_key(&C, a);
    rmq_cli__uniq_key(&C, b);
    cr_assert_eq(strlen(a), 32);
    cr_assert_eq(strspn(a, "0123456789ABCDEF"), 32);
    cr_assert_eq(strncmp(a, "0A000007", 8), 0, "starts with the client IP: %s", a);
    cr_assert_str_neq(a, b);
    cr_assert_eq(strtoul(b + 28, NULL, 16), (strtoul(a + 28, NULL, 16) + 1) & 0xFFFF,
                 "the last 2 bytes count");
}

Test(client_msg, properties_carry_keys_tags_delay_uniq_and_user_pairs)
{
    static const char *const user[] = {"color", "red", NULL};
    struct rmq_message m = {.topic = "T", .tags = "TagA", .keys = "k1 k2", .delay_level = 3,
                            .properties = user};
    char *buf = NULL;
    size_t cap = 0;
    const char *v;
    size_t vl;
    int n = rmq_cli__props(&m, "UNIQ", &buf, &cap);

    cr_assert_gt(n, 0);
    cr_assert(rmq_props_get(buf, (size_t)n, "TAGS", &v, &vl) && vl == 4 && !memcmp(v, "TagA", 4));
    cr_assert(rmq_props_get(buf, (size_t)n, "KEYS", &v, &vl) && vl == 5);
    cr_assert(rmq_props_get(buf, (size_t)n, "DELAY", &v, &vl) && vl == 1 && v[0] == '3');
    cr_assert(rmq_props_get(buf, (size_t)n, "UNIQ_KEY", &v, &vl) && vl == 4);
    cr_assert(rmq_props_get(buf, (size_t)n, "color", &v, &vl) && vl == 3);
    cr_assert(rmq_props_get(buf, (size_t)n, "WAIT", &v, &vl));
    m.tags = "bad\001tag";
    cr_assert_eq(rmq_cli__props(&m, "UNIQ", &buf, &cap), RMQ_ERR_INVALID);
    free(buf);
}

Test(client_msg, tag_expressions)
{
    const char *tags[8];
    char buf[128];
    uint32_t n;

    cr_assert_eq(rmq_cli__parse_tags("A || B||C ", buf, sizeof(buf), tags, 8, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(tags[0], "A");
    cr_assert_str_eq(tags[1], "B");
    cr_assert_str_eq(tags[2], "C");
    cr_assert_eq(rmq_cli__parse_tags("*", buf, sizeof(buf), tags, 8, &n), 0);
    cr_assert_eq(n, 0, "* is every tag");
    cr_assert_eq(rmq_cli__parse_tags("A||*", buf, sizeof(buf), tags, 8, &n), 0);
    cr_assert_eq(n, 0);
}

/* A pull body of records with these bodies (compressed ones flagged) and tags. */
static uint8_t *
records(const char *const *bodies, const char *const *tags, const bool *zipped, int n,
        uint32_t *len)
{
    uint8_t *out = malloc(1 << 20);
    uint32_t at = 0;

    for (int i = 0; i < n; i++) {
        struct rmq_record r;
        char props[64];
        uLongf zl = 1 << 16;
        static uint8_t z[1 << 16];

        memset(&r, 0, sizeof(r));
        r.topic = "T";
        r.topic_len = 1;
        r.queue_off = i;
        r.phys_off = at;
        snprintf(props, sizeof(props), "TAGS\001%s\002UNIQ_KEY\001ID%d\002", tags[i], i);
        r.props = props;
        r.props_len = (uint16_t)strlen(props);
        r.body = (const uint8_t *)bodies[i];
        r.body_len = (uint32_t)strlen(bodies[i]);
        if (zipped[i]) {
            cr_assert_eq(compress2(z, &zl, r.body, r.body_len, 5), Z_OK);
            r.body = z;
            r.body_len = (uint32_t)zl;
            r.sysflag = RMQ_SYSFLAG_COMPRESSED;
        }
        r.total_size = rmq_record_size(r.body_len, r.topic_len, r.props_len);
        rmq_record_seal(&r);
        rmq_record_encode(&r, out + at);
        at += r.total_size;
    }
    *len = at;
    return out;
}

Test(client_msg, pulled_records_are_decoded_filtered_and_inflated)
{
    static char big[20000];
    const char *bodies[] = {"one", big, "three"};
    const char *tags[] = {"A", "B", "C"};
    const bool zipped[] = {false, true, false};
    const char *want[] = {"A", "B"};
    struct rmq_pull_result res = {0};
    uint32_t len;
    uint8_t *body;

    memset(big, 'z', sizeof(big) - 1);
    body = records(bodies, tags, zipped, 3, &len);
    cr_assert_eq(rmq_cli__decode_pulled(body, len, "broker-a", want, 2, &res), 0);
    cr_assert_eq(res.count, 2, "C is filtered out");
    cr_assert_str_eq(res.msgs[0].tags, "A");
    cr_assert_eq(res.msgs[0].body_len, 3);
    cr_assert_str_eq(res.msgs[0].msg_id, "ID0");
    cr_assert_str_eq(res.msgs[0].broker_name, "broker-a");
    cr_assert_eq(res.msgs[1].body_len, sizeof(big) - 1, "inflated");
    cr_assert_eq(memcmp(res.msgs[1].body, big, sizeof(big) - 1), 0);
    cr_assert_eq(res.msgs[1].queue_offset, 1);
    rmq_pull_result_free(&res);
    /* a truncated body is refused, and nothing leaks */
    body = records(bodies, tags, zipped, 3, &len);
    cr_assert_eq(rmq_cli__decode_pulled(body, len - 1, "broker-a", NULL, 0, &res),
                 RMQ_ERR_INVALID);
}

Test(client_route, publish_and_subscribe_queues_from_a_route)
{
    /* b is read-only (perm 4); c has no master: not writable */
    static const char route[] =
        "{\"queueDatas\":[{\"brokerName\":\"b\",\"readQueueNums\":2,\"writeQueueNums\":2,"
        "\"perm\":4},{\"brokerName\":\"a\",\"readQueueNums\":2,\"writeQueueNums\":3,\"perm\":6},"
        "{\"brokerName\":\"c\",\"readQueueNums\":1,\"writeQueueNums\":1,\"perm\":6}],"
        "\"brokerDatas\":[{\"cluster\":\"x\",\"brokerName\":\"a\",\"brokerAddrs\":{0:\"1.2.3.4:10911\"}},"
        "{\"cluster\":\"x\",\"brokerName\":\"b\",\"brokerAddrs\":{0:\"1.2.3.5:10911\"}},"
        "{\"cluster\":\"x\",\"brokerName\":\"c\",\"brokerAddrs\":{1:\"1.2.3.6:10911\"}}]}";
    struct rmq_cli_route r = {.topic = "T"};

    memset(&C, 0, sizeof(C));
    rmq_strmap_init(&C.brokers);
    cr_assert_eq(rmq_cli__route_parse(&C, &r, route, sizeof(route) - 1, 0), 0);
    cr_assert_eq(r.pub_count, 3, "a's 3 write queues only");
    cr_assert_str_eq(r.pub[0].broker_name, "a");
    cr_assert_eq(r.pub[2].queue_id, 2);
    cr_assert_eq(r.sub_count, 5, "a 2 + b 2 + c 1, sorted by broker");
    cr_assert_str_eq(r.sub[0].broker_name, "a");
    cr_assert_str_eq(r.sub[2].broker_name, "b");
    cr_assert_str_eq(r.sub[4].broker_name, "c");
    cr_assert_str_eq(rmq_cli__master(&C, "a"), "1.2.3.4:10911");
    cr_assert_null(rmq_cli__master(&C, "c"));
    /* TBW102 fallback: at most 4 queues per broker */
    cr_assert_eq(rmq_cli__route_parse(&C, &r, route, sizeof(route) - 1, 1), 0);
    cr_assert_eq(r.pub_count, 1);
    free(r.pub);
    free(r.sub);
    {
        uint32_t pos = 0;
        void *v;

        while ((v = rmq_strmap_next(&C.brokers, &pos)) != NULL) {
            free(v);
        }
    }
    rmq_strmap_fini(&C.brokers);
}

Test(client_tx, a_transaction_check_is_answered_unknown_with_the_messages_ids)
{
    const char *bodies[] = {"half"};
    const char *tags[] = {"T"};
    const bool zipped[] = {false};
    struct rmq_frame check;
    struct rmq_header out;
    struct rmq_str v;
    uint32_t len;
    uint8_t *body = records(bodies, tags, zipped, 1, &len);

    memset(&C, 0, sizeof(C));
    snprintf(C.group, sizeof(C.group), "PG_TX");
    C.ser = RMQ_SER_ROCKETMQ;
    memset(&check, 0, sizeof(check));
    rmq_header_init(&check.h, RMQ_REQ_CHECK_TRANSACTION_STATE, RMQ_SER_JSON);
    check.h.flag |= RMQ_FLAG_ONEWAY;
    rmq_header_add(&check.h, "tranStateTableOffset", "17");
    rmq_header_add(&check.h, "commitLogOffset", "123456");
    rmq_header_add(&check.h, "msgId", "FROM-HEADER");
    rmq_header_add(&check.h, "transactionId", "TX-1");
    check.body = body;
    check.body_len = len;
    cr_assert_eq(rmq_cli__end_tx_unknown(&C, &check, &out), 0);
    cr_assert_eq(out.code, RMQ_REQ_END_TRANSACTION);
    cr_assert(rmq_header_is_oneway(&out), "END_TRANSACTION goes oneway");
    cr_assert(rmq_header_get(&out, "commitOrRollback", &v) && rmq_str_eq(v, "0"), "unknown");
    cr_assert(rmq_header_get(&out, "fromTransactionCheck", &v) && rmq_str_eq(v, "true"));
    cr_assert(rmq_header_get(&out, "producerGroup", &v) && rmq_str_eq(v, "PG_TX"));
    cr_assert(rmq_header_get(&out, "tranStateTableOffset", &v) && rmq_str_eq(v, "17"));
    cr_assert(rmq_header_get(&out, "commitLogOffset", &v) && rmq_str_eq(v, "123456"));
    cr_assert(rmq_header_get(&out, "msgId", &v) && rmq_str_eq(v, "ID0"),
              "the record's UNIQ_KEY, not the header's");
    cr_assert(rmq_header_get(&out, "transactionId", &v) && rmq_str_eq(v, "TX-1"));
    /* without a body, the header's msgId; without offsets, nothing */
    check.body_len = 0;
    cr_assert_eq(rmq_cli__end_tx_unknown(&C, &check, &out), 0);
    cr_assert(rmq_header_get(&out, "msgId", &v) && rmq_str_eq(v, "FROM-HEADER"));
    rmq_header_init(&check.h, RMQ_REQ_CHECK_TRANSACTION_STATE, RMQ_SER_JSON);
    cr_assert_eq(rmq_cli__end_tx_unknown(&C, &check, &out), -EINVAL);
    free(body);
}

/* ---- a sync call's answer and an async one in the same loop iteration -------------------- */

/* A peer that reads two requests and answers both with one write, the sync call's (code
 * GET_CONSUMER_LIST_BY_GROUP) first: the client then completes both in one iteration. */
static void *
answer_both_at_once(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    static uint8_t in[8192];
    uint8_t out[1024];
    struct rmq_frame req[2];
    size_t have = 0, used = 0, len = 0;
    int n = 0;

    cr_assert_geq(fd, 0);
    while (n < 2) {
        ssize_t got = read(fd, in + have, sizeof(in) - have);
        ssize_t k;

        cr_assert_gt(got, 0);
        have += (size_t)got;
        while (n < 2 && (k = rmq_frame_decode(in + used, have - used, NULL, &req[n])) > 0) {
            used += (size_t)k;
            n++;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 2; i++) {
            bool is_sync = req[i].h.code == RMQ_REQ_GET_CONSUMER_LIST_BY_GROUP;
            const char *body = is_sync ? "{\"consumerIdList\":[\"me\"]}" : "pulled records";
            struct rmq_header h;
            ssize_t w;

            if (is_sync != (pass == 0)) {
                continue;
            }
            rmq_header_init_response(&h, &req[i].h, RMQ_RESP_SUCCESS);
            w = rmq_frame_encode_head(&h, (uint32_t)strlen(body), out + len, sizeof(out) - len);
            cr_assert_gt(w, 0);
            len += (size_t)w;
            memcpy(out + len, body, strlen(body));
            len += strlen(body);
        }
    }
    cr_assert_eq(write(fd, out, len), (ssize_t)len);
    while (read(fd, in, sizeof(in)) > 0) {
    }
    close(fd);
    return NULL;
}

static uint8_t *taken_async_body;

/* As the push consumer's pull callback does: the answer's body is taken. */
static void
take_async_answer(struct rmq_cli *c, void *arg, int err, struct rmq_cli_resp *resp)
{
    (void)c;
    (void)arg;
    cr_assert_eq(err, 0);
    taken_async_body = rmq_cli__resp_take(resp);
}

Test(client_calls, a_sync_answer_survives_an_async_answer_completed_right_after_it)
{
    static struct rmq_cli c;
    struct rmq_options o = {.namesrv = "127.0.0.1:1"};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    struct rmq_header pull, list;
    char addr[64];
    pthread_t peer;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(lfd, 0);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(lfd, 1), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    cr_assert_eq(pthread_create(&peer, NULL, answer_both_at_once, &lfd), 0);
    cr_assert_eq(rmq_cli__init(&c, &o, "CG"), 0);

    rmq_header_init(&pull, RMQ_REQ_PULL_MESSAGE, c.ser);
    cr_assert_eq(rmq_cli__call_async(&c, addr, &pull, NULL, 0, 5000, take_async_answer, NULL), 0,
                 "%s", rmq_last_error());
    rmq_header_init(&list, RMQ_REQ_GET_CONSUMER_LIST_BY_GROUP, c.ser);
    cr_assert_eq(rmq_cli__call(&c, addr, &list, NULL, 0, rmq_clock_mono_ns() + 5000000000ull),
                 0, "%s", rmq_last_error());
    cr_assert_not_null(taken_async_body, "both answers were to complete in one iteration");
    cr_assert_str_eq((const char *)taken_async_body, "pulled records");
    cr_assert_eq(c.resp.code, RMQ_RESP_SUCCESS);
    cr_assert_not_null(c.resp.body, "the sync answer's body was taken by the async callback");
    cr_assert_str_eq((const char *)c.resp.body, "{\"consumerIdList\":[\"me\"]}");

    free(taken_async_body);
    rmq_cli__fini(&c);
    pthread_join(peer, NULL);
    close(lfd);
}
