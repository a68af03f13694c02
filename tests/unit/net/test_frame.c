#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/be.h"
#include "net/codes.h"
#include "net/frame.h"
#include "tests/unit/vectors.h"

static struct rmq_frame frame;

static void
load_decode(const char *name, uint8_t **buf, size_t *len)
{
    ssize_t r;

    cr_assert_eq(rmq_test_load_hex(name, buf, len), 0, "vector %s missing", name);
    r = rmq_frame_decode(*buf, *len, NULL, &frame);
    cr_assert_eq(r, (ssize_t)*len, "%s: decode returned %zd for %zu bytes", name, r, *len);
}

static void
assert_ext(const struct rmq_header *h, const char *key, const char *want)
{
    struct rmq_str v;

    cr_assert(rmq_header_get(h, key, &v), "missing ext %s", key);
    cr_assert_eq(v.len, strlen(want), "ext %s: %.*s != %s", key, (int)v.len, v.ptr, want);
    cr_assert_eq(memcmp(v.ptr, want, v.len), 0, "ext %s: %.*s != %s", key, (int)v.len, v.ptr,
                 want);
}

/* Logical equality of two headers (ext order may differ). */
static void
assert_same_header(const struct rmq_header *a, const struct rmq_header *b)
{
    cr_assert_eq(a->code, b->code);
    cr_assert_eq(a->opaque, b->opaque);
    cr_assert_eq(a->flag, b->flag);
    cr_assert_eq(a->version, b->version);
    cr_assert_eq(a->language, b->language);
    cr_assert_eq(a->has_remark, b->has_remark);
    if (a->has_remark) {
        cr_assert_eq(a->remark.len, b->remark.len);
        cr_assert_eq(memcmp(a->remark.ptr, b->remark.ptr, a->remark.len), 0);
    }
    cr_assert_eq(a->ext_count, b->ext_count);
    for (uint32_t i = 0; i < a->ext_count; i++) {
        struct rmq_str v;
        char key[256];

        snprintf(key, sizeof(key), "%.*s", (int)a->ext[i].key.len, a->ext[i].key.ptr);
        cr_assert(rmq_header_get(b, key, &v), "ext %s lost", key);
        cr_assert_eq(v.len, a->ext[i].val.len, "ext %s", key);
        cr_assert_eq(memcmp(v.ptr, a->ext[i].val.ptr, v.len), 0, "ext %s", key);
    }
}

/* Encode h (+ body) in serialization ser, decode it again, compare. */
static void
assert_reencodes(const struct rmq_header *h, const uint8_t *body, uint32_t body_len,
                 enum rmq_serialize ser)
{
    static struct rmq_header copy;
    static struct rmq_frame again;
    uint8_t *wire;
    ssize_t head;
    ssize_t r;

    copy = *h;
    /* copy's strings still point into the original buffer: fine for encoding */
    copy.serialize = (uint8_t)ser;
    head = rmq_frame_head_len(&copy);
    cr_assert_gt(head, 0);
    wire = malloc((size_t)head + body_len);
    cr_assert_eq(rmq_frame_encode_head(&copy, body_len, wire, (size_t)head), head);
    memcpy(wire + head, body, body_len);
    r = rmq_frame_decode(wire, (size_t)head + body_len, NULL, &again);
    cr_assert_eq(r, head + body_len);
    cr_assert_eq(again.h.serialize, ser);
    assert_same_header(h, &again.h);
    cr_assert_eq(again.body_len, body_len);
    cr_assert_eq(memcmp(again.body, body, body_len), 0);
    free(wire);
}

static const char *const alions_vectors[] = {
    "alions-req-105-GET_ROUTEINFO_BY_TOPIC-retry-topic.hex",
    "alions-req-105-GET_ROUTEINFO_BY_TOPIC.hex",
    "alions-req-11-PULL_MESSAGE-first.hex",
    "alions-req-11-PULL_MESSAGE-retry-topic.hex",
    "alions-req-11-PULL_MESSAGE-with-commit-offset.hex",
    "alions-req-14-QUERY_CONSUMER_OFFSET.hex",
    "alions-req-15-UPDATE_CONSUMER_OFFSET-negative.hex",
    "alions-req-15-UPDATE_CONSUMER_OFFSET.hex",
    "alions-req-30-GET_MAX_OFFSET.hex",
    "alions-req-310-SEND_MESSAGE_V2-compressed.hex",
    "alions-req-310-SEND_MESSAGE_V2-delay-level.hex",
    "alions-req-310-SEND_MESSAGE_V2.hex",
    "alions-req-34-HEART_BEAT.hex",
    "alions-req-35-UNREGISTER_CLIENT-consumer.hex",
    "alions-req-35-UNREGISTER_CLIENT-producer.hex",
    "alions-req-36-CONSUMER_SEND_MSG_BACK.hex",
    "alions-req-38-GET_CONSUMER_LIST_BY_GROUP.hex",
};

Test(frame_vectors, every_alions_frame_decodes_and_reencodes)
{
    static struct rmq_frame orig;

    for (size_t i = 0; i < sizeof(alions_vectors) / sizeof(alions_vectors[0]); i++) {
        const char *name = alions_vectors[i];
        uint8_t *buf;
        size_t len;
        int code;

        load_decode(name, &buf, &len);
        cr_assert_eq(sscanf(name, "alions-req-%d-", &code), 1);
        cr_assert_eq(frame.h.code, code, "%s", name);
        cr_assert_eq(frame.h.serialize, RMQ_SER_JSON);
        cr_assert_eq(frame.h.language, RMQ_LANG_JAVA);
        cr_assert_eq(frame.h.version, 121);
        cr_assert_eq(frame.h.flag, 0);
        cr_assert_eq(frame.frame_len, len);
        /* escapes are resolved in place; re-encode in both serializations */
        orig = frame;
        assert_reencodes(&orig.h, orig.body, orig.body_len, RMQ_SER_JSON);
        assert_reencodes(&orig.h, orig.body, orig.body_len, RMQ_SER_ROCKETMQ);
        free(buf);
    }
}

Test(frame_vectors, send_message_v2_fields)
{
    uint8_t *buf;
    size_t len;
    int64_t g;
    bool k = true;

    load_decode("alions-req-310-SEND_MESSAGE_V2.hex", &buf, &len);
    cr_assert_eq(frame.h.opaque, 2);
    assert_ext(&frame.h, "a", "PG_VECTOR");
    assert_ext(&frame.h, "b", "TopicTest");
    assert_ext(&frame.h, "c", "TBW102");
    assert_ext(&frame.h, "d", "4");
    assert_ext(&frame.h, "e", "0");
    assert_ext(&frame.h, "i", "TAGS\001TagA\002KEYS\001key1 key2\002");
    assert_ext(&frame.h, "k", "false");
    cr_assert_eq(rmq_header_get_i64(&frame.h, "g", &g), 0);
    cr_assert_eq(g, 1700000000000LL);
    cr_assert_eq(rmq_header_get_bool(&frame.h, "k", &k), 0);
    cr_assert_not(k);
    cr_assert_eq(frame.body_len, 14);
    cr_assert_eq(memcmp(frame.body, "Hello RocketMQ", 14), 0);
    free(buf);
}

Test(frame_vectors, compressed_send_keeps_zlib_body)
{
    uint8_t *buf;
    size_t len;
    int32_t f;

    load_decode("alions-req-310-SEND_MESSAGE_V2-compressed.hex", &buf, &len);
    cr_assert_eq(rmq_header_get_i32(&frame.h, "f", &f), 0);
    cr_assert_eq(f, 1);
    cr_assert_eq(frame.body_len, 29);
    cr_assert_eq(frame.body[0], 0x78);
    cr_assert_eq(frame.body[1], 0x9c);
    free(buf);
}

Test(frame_vectors, pull_first_has_negative_commit_offset)
{
    uint8_t *buf;
    size_t len;
    int64_t v;

    load_decode("alions-req-11-PULL_MESSAGE-first.hex", &buf, &len);
    cr_assert_eq(rmq_header_get_i64(&frame.h, "commitOffset", &v), 0);
    cr_assert_eq(v, -1);
    cr_assert_eq(rmq_header_get_i64(&frame.h, "subVersion", &v), 0);
    cr_assert_eq(v, 1700000000000LL);
    cr_assert_eq(rmq_header_get_i64(&frame.h, "suspendTimeoutMillis", &v), 0);
    cr_assert_eq(v, 15000);
    assert_ext(&frame.h, "subscription", "TagA || TagB");
    cr_assert_eq(rmq_header_get_i64(&frame.h, "missing", &v), -ENOENT);
    cr_assert_eq(rmq_header_get_i64(&frame.h, "subscription", &v), -EINVAL);
    free(buf);
}

Test(frame_vectors, heartbeat_has_empty_ext_and_json_body)
{
    uint8_t *buf;
    size_t len;

    load_decode("alions-req-34-HEART_BEAT.hex", &buf, &len);
    cr_assert_eq(frame.h.ext_count, 0);
    cr_assert_eq(frame.body_len, 586);
    cr_assert_eq(frame.body[0], '{');
    free(buf);
}

Test(frame_vectors, send_msg_back_booleans_and_numbers)
{
    uint8_t *buf;
    size_t len;
    int32_t v;

    load_decode("alions-req-36-CONSUMER_SEND_MSG_BACK.hex", &buf, &len);
    assert_ext(&frame.h, "originMsgId", "7F000001000078BF0000000000000000");
    assert_ext(&frame.h, "unitMode", "false");
    cr_assert_eq(rmq_header_get_i32(&frame.h, "maxReconsumeTimes", &v), 0);
    cr_assert_eq(v, 16);
    free(buf);
}

Test(frame_vectors, binary_route_request)
{
    uint8_t *buf;
    size_t len;
    uint8_t *again;
    ssize_t n;

    load_decode("synthetic-req-binary-GET_ROUTEINFO_BY_TOPIC.hex", &buf, &len);
    cr_assert_eq(frame.h.serialize, RMQ_SER_ROCKETMQ);
    cr_assert_eq(frame.h.code, 105);
    cr_assert_eq(frame.h.language, 0);
    cr_assert_eq(frame.h.version, 409);
    cr_assert_eq(frame.h.opaque, 1);
    cr_assert_eq(frame.h.flag, 0);
    cr_assert_not(frame.h.has_remark);
    assert_ext(&frame.h, "topic", "TopicTest");
    /* one ext field: our binary encoder must give the same bytes */
    again = malloc(len);
    n = rmq_frame_encode_head(&frame.h, 0, again, len);
    cr_assert_eq(n, (ssize_t)len);
    cr_assert_eq(memcmp(again, buf, len), 0);
    free(again);
    free(buf);
}

Test(frame_vectors, binary_route_response)
{
    uint8_t *buf;
    size_t len;

    load_decode("synthetic-resp-binary-route-success.hex", &buf, &len);
    cr_assert_eq(frame.h.serialize, RMQ_SER_ROCKETMQ);
    cr_assert(rmq_header_is_response(&frame.h));
    cr_assert_eq(frame.h.code, 0);
    cr_assert_eq(frame.h.opaque, 1);
    cr_assert_eq(frame.h.ext_count, 0);
    cr_assert_eq(frame.body[0], '{');
    free(buf);
}

Test(frame_vectors, pull_found_response_reencodes_byte_identical)
{
    uint8_t *buf;
    size_t len;
    uint8_t *again;
    ssize_t head;

    load_decode("synthetic-resp-pull-found.hex", &buf, &len);
    cr_assert(rmq_header_is_response(&frame.h));
    cr_assert_eq(frame.h.opaque, 19);
    cr_assert_eq(frame.h.version, 409);
    assert_ext(&frame.h, "nextBeginOffset", "6");
    cr_assert(frame.h.has_remark);
    cr_assert_eq(frame.body_len, 203);
    /* our JSON writer lays the header out exactly as the reference does */
    head = rmq_frame_head_len(&frame.h);
    again = malloc(len);
    cr_assert_eq(rmq_frame_encode_head(&frame.h, frame.body_len, again, len), head);
    cr_assert_eq(head + frame.body_len, (ssize_t)len);
    cr_assert_eq(memcmp(again, buf, (size_t)head), 0, "header bytes differ");
    free(again);
    free(buf);
}

Test(frame_vectors, all_vector_files_are_covered)
{
    size_t n;
    char **names = rmq_test_list_vectors("alions-req-", &n);

    cr_assert_eq(n, sizeof(alions_vectors) / sizeof(alions_vectors[0]),
                 "vector set changed: review alions_vectors");
    rmq_test_free_list(names, n);
}

/* ---- building headers ------------------------------------------------------------------ */

Test(frame_build, response_mirrors_request)
{
    struct rmq_header req;
    struct rmq_header resp;

    rmq_header_init(&req, 105, RMQ_SER_ROCKETMQ);
    req.opaque = 77;
    rmq_header_init_response(&resp, &req, RMQ_RESP_TOPIC_NOT_EXIST);
    cr_assert_eq(resp.opaque, 77);
    cr_assert_eq(resp.serialize, RMQ_SER_ROCKETMQ);
    cr_assert(rmq_header_is_response(&resp));
    cr_assert_not(rmq_header_is_oneway(&resp));
    cr_assert_eq(resp.version, RMQ_VERSION_OURS);
}

Test(frame_build, add_i64_and_limits)
{
    static struct rmq_header h;
    int64_t v;
    int ret = 0;

    rmq_header_init(&h, 11, RMQ_SER_JSON);
    cr_assert_eq(rmq_header_add_i64(&h, "queueOffset", INT64_MIN), 0);
    cr_assert_eq(rmq_header_get_i64(&h, "queueOffset", &v), 0);
    cr_assert_eq(v, INT64_MIN);
    for (int i = 1; i < RMQ_FRAME_MAX_EXT && ret == 0; i++) {
        ret = rmq_header_add(&h, "k", "v");
    }
    cr_assert_eq(ret, 0);
    cr_assert_eq(rmq_header_add(&h, "one", "too many"), -ENOBUFS);
}

Test(frame_build, encode_reports_small_buffer)
{
    struct rmq_header h;
    uint8_t out[16];

    rmq_header_init(&h, 105, RMQ_SER_JSON);
    cr_assert_eq(rmq_frame_encode_head(&h, 0, out, sizeof(out)), -ENOBUFS);
}

Test(frame_build, json_escapes_control_characters)
{
    static struct rmq_header h;
    static struct rmq_frame f;
    uint8_t wire[512];
    ssize_t n;

    rmq_header_init(&h, 310, RMQ_SER_JSON);
    rmq_header_add(&h, "i", "TAGS\001a\"b\\c\002");
    rmq_header_set_remark(&h, "line\nbreak");
    n = rmq_frame_encode_head(&h, 0, wire, sizeof(wire));
    cr_assert_gt(n, 0);
    cr_assert(memmem(wire, (size_t)n, "\"TAGS\\u0001a\\\"b\\\\c\\u0002\"", 25) != NULL);
    cr_assert_eq(rmq_frame_decode(wire, (size_t)n, NULL, &f), n);
    assert_ext(&f.h, "i", "TAGS\001a\"b\\c\002");
    cr_assert_eq(f.h.remark.len, 10);
}

/* ---- random round trips ------------------------------------------------------------------ */

static void
random_str(char *dst, uint32_t *len, uint32_t max, bool nonempty)
{
    uint32_t n = (uint32_t)rand() % max + (nonempty ? 1 : 0);

    for (uint32_t i = 0; i < n; i++) {
        /* any byte except NUL; includes control characters, quotes, UTF-8 lead bytes */
        dst[i] = (char)(rand() % 255 + 1);
    }
    *len = n;
}

Test(frame_random, decode_encode_decode_round_trips_both_serializations)
{
    static char pool[RMQ_FRAME_MAX_EXT * 2 + 1][64];
    static struct rmq_header h;
    static struct rmq_frame f1;
    static struct rmq_frame f2;
    static uint8_t wire1[65536];
    static uint8_t wire2[65536];
    static uint8_t pristine[65536];
    uint8_t body[100];

    srand(12345);
    for (int iter = 0; iter < 3000; iter++) {
        enum rmq_serialize ser = (enum rmq_serialize)(iter & 1);
        uint32_t next = ser == RMQ_SER_ROCKETMQ ? 1 : 0;
        uint32_t body_len = (uint32_t)rand() % sizeof(body);
        uint32_t n_ext = (uint32_t)rand() % 12;
        ssize_t n1;
        ssize_t n2;

        rmq_header_init(&h, rand() % 400, ser);
        h.opaque = rand();
        h.flag = rand() % 4;
        h.version = rand() % 500;
        h.language = (uint8_t)(rand() % 13);
        if (rand() % 2) {
            uint32_t len;

            random_str(pool[0], &len, 40, true);
            h.remark.ptr = pool[0];
            h.remark.len = len;
            h.has_remark = true;
        }
        for (uint32_t i = 0; i < n_ext; i++) {
            struct rmq_ext *e = &h.ext[h.ext_count++];

            /* distinct keys: prefix with the index */
            pool[1 + 2 * i][0] = (char)('A' + i);
            random_str(pool[1 + 2 * i] + 1, &e->key.len, 20, false);
            e->key.len++;
            e->key.ptr = pool[1 + 2 * i];
            random_str(pool[2 + 2 * i], &e->val.len, 60, next == 1);
            e->val.ptr = pool[2 + 2 * i];
        }
        for (uint32_t i = 0; i < body_len; i++) {
            body[i] = (uint8_t)rand();
        }
        n1 = rmq_frame_encode_head(&h, body_len, wire1, sizeof(wire1));
        cr_assert_gt(n1, 0);
        memcpy(wire1 + n1, body, body_len);
        memcpy(pristine, wire1, (size_t)n1);     /* decoding unescapes in place */
        cr_assert_eq(rmq_frame_decode(wire1, (size_t)n1 + body_len, NULL, &f1), n1 + body_len,
                     "iter %d", iter);
        assert_same_header(&h, &f1.h);
        n2 = rmq_frame_encode_head(&f1.h, f1.body_len, wire2, sizeof(wire2));
        cr_assert_eq(n2, n1, "iter %d", iter);
        cr_assert_eq(memcmp(pristine, wire2, (size_t)n1), 0, "iter %d: re-encode differs", iter);
        memcpy(wire2 + n2, f1.body, f1.body_len);
        cr_assert_eq(rmq_frame_decode(wire2, (size_t)n2 + body_len, NULL, &f2), n2 + body_len);
        assert_same_header(&f1.h, &f2.h);
    }
}

Test(frame_random, json_values_as_strings_numbers_booleans_null)
{
    static struct rmq_frame f;
    const char *hdr = "{\"code\":\"14\",\"opaque\":5,\"extFields\":{\"queueId\":0,\"s\":\"x\","
                      "\"b\":true,\"n\":null,\"big\":9223372036854775807,\"neg\":-42},"
                      "\"remark\":null,\"serializeTypeCurrentRPC\":\"JSON\","
                      "\"unknown\":{\"deep\":[1,2,{\"x\":null}]}}\n";
    uint8_t wire[512];
    size_t hl = strlen(hdr);
    int64_t v;

    rmq_put_be32(wire, (uint32_t)(4 + hl));
    rmq_put_be32(wire + 4, (uint32_t)hl);
    memcpy(wire + 8, hdr, hl);
    cr_assert_eq(rmq_frame_decode(wire, 8 + hl, NULL, &f), (ssize_t)(8 + hl));
    cr_assert_eq(f.h.code, 14);
    cr_assert_not(f.h.has_remark);
    cr_assert_eq(f.h.ext_count, 5);    /* null dropped */
    assert_ext(&f.h, "queueId", "0");
    assert_ext(&f.h, "b", "true");
    cr_assert_eq(rmq_header_get_i64(&f.h, "big", &v), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(rmq_header_get_i64(&f.h, "neg", &v), 0);
    cr_assert_eq(v, -42);
}
