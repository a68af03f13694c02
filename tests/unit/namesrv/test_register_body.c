/*
 * RegisterBrokerBody decoding, JSON and compressed forms: the spec's example, the
 * field coercions the reference accepts, and refusals for malformed input,
 * including every truncation of a compressed body.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/be.h"
#include "namesrv/namesrv_int.h"

static const char spec_body[] =
    "{\"filterServerList\":[],"
    "\"topicConfigSerializeWrapper\":{"
    "\"dataVersion\":{\"counter\":5,\"timestamp\":1700000000000},"
    "\"topicConfigTable\":{"
    "\"TopicTest\":{\"order\":false,\"perm\":6,\"readQueueNums\":4,\"topicFilterType\":"
    "\"SINGLE_TAG\",\"topicName\":\"TopicTest\",\"topicSysFlag\":0,\"writeQueueNums\":4},"
    "\"TBW102\":{\"order\":false,\"perm\":7,\"readQueueNums\":8,\"topicFilterType\":"
    "\"SINGLE_TAG\",\"topicName\":\"TBW102\",\"topicSysFlag\":0,\"writeQueueNums\":8}}}}";

static int
decode(struct rmq_namesrv__register_body *rb, const char *text, const char **why)
{
    return rmq_namesrv__register_body_decode(rb, (const uint8_t *)text, (uint32_t)strlen(text),
                                             false, why);
}

Test(register_body, spec_example_decodes)
{
    struct rmq_namesrv__register_body rb;
    const char *why;

    cr_assert_eq(decode(&rb, spec_body, &why), 0);
    cr_assert(rb.has_topic_config);
    cr_assert_eq(rb.data_version.counter, 5);
    cr_assert_eq(rb.data_version.timestamp, 1700000000000);
    cr_assert_eq(rb.topic_count, 2);
    cr_assert_str_eq(rb.topics[0].topic, "TopicTest");
    cr_assert_eq(rb.topics[0].read_queue_nums, 4);
    cr_assert_eq(rb.topics[1].perm, 7);
    cr_assert_eq(rb.filter_server_count, 0);
    rmq_namesrv__register_body_fini(&rb);
}

Test(register_body, empty_body_has_no_topic_config)
{
    struct rmq_namesrv__register_body rb;
    const char *why;

    cr_assert_eq(rmq_namesrv__register_body_decode(&rb, NULL, 0, false, &why), 0);
    cr_assert_not(rb.has_topic_config);
    rmq_namesrv__register_body_fini(&rb);
}

Test(register_body, numbers_as_strings_defaults_and_filter_servers)
{
    struct rmq_namesrv__register_body rb;
    const char *why;

    cr_assert_eq(decode(&rb, "{\"filterServerList\":[\"10.0.0.5:8000\"],"
                        "\"topicConfigSerializeWrapper\":{\"dataVersion\":{\"counter\":\"9\"},"
                        "\"topicConfigTable\":{\"K\":{\"readQueueNums\":\"3\"}}}}", &why), 0);
    cr_assert_eq(rb.data_version.counter, 9);
    cr_assert_eq(rb.data_version.timestamp, 0);
    cr_assert_str_eq(rb.topics[0].topic, "K", "key when topicName is absent");
    cr_assert_eq(rb.topics[0].read_queue_nums, 3);
    cr_assert_eq(rb.topics[0].write_queue_nums, 16, "TopicConfig default");
    cr_assert_eq(rb.topics[0].perm, 6);
    cr_assert_eq(rb.filter_server_count, 1);
    cr_assert_str_eq(rb.filter_servers[0], "10.0.0.5:8000");
    rmq_namesrv__register_body_fini(&rb);
}

Test(register_body, malformed_json_bodies_are_refused)
{
    static const char *bad[] = {
        "",
        "{",
        "[]",
        "\"x\"",
        "{\"topicConfigSerializeWrapper\":[]}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":3}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{\"counter\":\"x\"}}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":[]}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":{\"T\":1}}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":"
        "{\"T\":{\"readQueueNums\":1e12}}}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":"
        "{\"T\":{\"readQueueNums\":4.5}}}}",
        "{\"topicConfigSerializeWrapper\":{\"dataVersion\":{},\"topicConfigTable\":"
        "{\"T\":{\"perm\":\"rw\"}}}}",
        "{\"filterServerList\":{}}",
        "{\"filterServerList\":[1]}",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rmq_namesrv__register_body rb;
        const char *why = NULL;
        int ret = rmq_namesrv__register_body_decode(&rb, (const uint8_t *)bad[i],
                                                    (uint32_t)strlen(bad[i]) + (bad[i][0] == 0),
                                                    false, &why);

        cr_assert_eq(ret, -EBADMSG, "body %zu: %s", i, bad[i]);
        cr_assert_not_null(why);
    }
}

/* ---- compressed form ------------------------------------------------------------------- */

static size_t
put_field(uint8_t *p, const char *s)
{
    size_t n = strlen(s);

    rmq_put_be32(p, (uint32_t)n);
    memcpy(p + 4, s, n);
    return 4 + n;
}

/* The compressed body of two topics; returns its length. */
static size_t
compressed_body(uint8_t *out, size_t cap)
{
    uint8_t raw[512];
    size_t n = 0;
    uLongf len = cap;

    n += put_field(raw + n, "{\"counter\":7,\"timestamp\":1700000000001}");
    rmq_put_be32(raw + n, 2);
    n += 4;
    n += put_field(raw + n, "TopicTest 4 4 6 SINGLE_TAG");
    n += put_field(raw + n, "TBW102 8 8 7 SINGLE_TAG");
    n += put_field(raw + n, "[\"10.0.0.5:8000\"]");
    cr_assert_eq(compress(out, &len, raw, n), Z_OK);
    return len;
}

Test(register_body, compressed_form_decodes)
{
    struct rmq_namesrv__register_body rb;
    uint8_t body[1024];
    size_t len = compressed_body(body, sizeof(body));
    const char *why;

    cr_assert_eq(rmq_namesrv__register_body_decode(&rb, body, (uint32_t)len, true, &why), 0,
                 "%s", why);
    cr_assert(rb.has_topic_config);
    cr_assert_eq(rb.data_version.counter, 7);
    cr_assert_eq(rb.topic_count, 2);
    cr_assert_str_eq(rb.topics[1].topic, "TBW102");
    cr_assert_eq(rb.topics[1].read_queue_nums, 8);
    cr_assert_eq(rb.topics[1].perm, 7);
    cr_assert_eq(rb.filter_server_count, 1);
    rmq_namesrv__register_body_fini(&rb);
}

Test(register_body, every_truncation_of_a_compressed_body_is_refused)
{
    uint8_t body[1024];
    size_t len = compressed_body(body, sizeof(body));

    for (size_t cut = 1; cut < len; cut++) {
        struct rmq_namesrv__register_body rb;
        const char *why;

        cr_assert_eq(rmq_namesrv__register_body_decode(&rb, body, (uint32_t)cut, true, &why),
                     -EBADMSG, "cut at %zu", cut);
    }
}

Test(register_body, compressed_garbage_and_absurd_counts_are_refused)
{
    uint8_t raw[64];
    uint8_t z[128];
    uLongf zlen = sizeof(z);
    size_t n = 0;
    struct rmq_namesrv__register_body rb;
    const char *why;

    cr_assert_eq(rmq_namesrv__register_body_decode(&rb, (const uint8_t *)"not zlib", 8, true,
                                                   &why), -EBADMSG);
    n += put_field(raw, "{\"counter\":1}");
    rmq_put_be32(raw + n, 0xFFFFFFF0u);     /* a negative i32 topic count */
    n += 4;
    cr_assert_eq(compress(z, &zlen, raw, n), Z_OK);
    cr_assert_eq(rmq_namesrv__register_body_decode(&rb, z, (uint32_t)zlen, true, &why), -EBADMSG);
    /* a topic line with a non-number */
    n = put_field(raw, "{}");
    rmq_put_be32(raw + n, 1);
    n += 4;
    n += put_field(raw + n, "T x 4 6 SINGLE_TAG");
    n += put_field(raw + n, "[]");
    zlen = sizeof(z);
    cr_assert_eq(compress(z, &zlen, raw, n), Z_OK);
    cr_assert_eq(rmq_namesrv__register_body_decode(&rb, z, (uint32_t)zlen, true, &why), -EBADMSG);
}

Test(register_body, zip_bomb_stops_at_the_inflate_limit)
{
    size_t raw_len = RMQ_NAMESRV_INFLATED_MAX + 4096;
    uint8_t *raw = calloc(1, raw_len);
    uLongf zlen = compressBound(raw_len);
    uint8_t *z = malloc(zlen);
    struct rmq_namesrv__register_body rb;
    const char *why = NULL;

    cr_assert_eq(compress2(z, &zlen, raw, raw_len, 9), Z_OK);
    cr_assert_eq(rmq_namesrv__register_body_decode(&rb, z, (uint32_t)zlen, true, &why), -EBADMSG);
    cr_assert_not_null(strstr(why, "64 MiB"), "%s", why);
    free(raw);
    free(z);
}
