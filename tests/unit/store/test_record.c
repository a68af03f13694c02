#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/record.h"
#include "tests/unit/vectors.h"

#define PROPS "TAGS\001TagA\002KEYS\001key1 key2\002UNIQ_KEY\001" \
              "7F0000012A9F18B4AAC2000000000000\002CLUSTER\001DefaultCluster"

static void
example(struct rmq_record *r)
{
    static const uint8_t lo[4] = {127, 0, 0, 1};

    memset(r, 0, sizeof(*r));
    r->queue_id = 1;
    r->queue_off = 5;
    r->phys_off = 1234;
    r->born_ts = 1700000000000LL;
    memcpy(r->born_ip, lo, 4);
    r->born_port = 50000;
    r->store_ts = 1700000000123LL;
    memcpy(r->store_ip, lo, 4);
    r->store_port = 10911;
    r->body = (const uint8_t *)"Hello RocketMQ";
    r->body_len = 14;
    r->topic = "TopicTest";
    r->topic_len = 9;
    r->props = PROPS;
    r->props_len = (uint16_t)strlen(PROPS);
}

Test(record, encodes_the_spec_vector_byte_for_byte)
{
    struct rmq_record r;
    uint8_t *want;
    size_t len;
    uint8_t out[512];

    cr_assert_eq(rmq_test_load_hex("synthetic-store-commitlog-record.hex", &want, &len), 0);
    example(&r);
    cr_assert_eq(r.props_len, 89);
    cr_assert_eq(rmq_record_check(&r, 4 << 20), 0);
    rmq_record_seal(&r);
    cr_assert_eq(r.total_size, 203);
    cr_assert_eq(r.body_crc, 1774740973u);
    cr_assert_eq(len, 203);
    rmq_record_encode(&r, out);
    cr_assert_eq(memcmp(out, want, len), 0);
    free(want);
}

Test(record, decodes_the_spec_vector)
{
    struct rmq_record r;
    uint8_t *buf;
    size_t len;
    char id[33];
    const char *v;
    size_t vl;

    cr_assert_eq(rmq_test_load_hex("synthetic-store-commitlog-record.hex", &buf, &len), 0);
    cr_assert_eq(rmq_record_decode(buf, len, true, &r, NULL), 203);
    cr_assert_eq(r.queue_id, 1);
    cr_assert_eq(r.queue_off, 5);
    cr_assert_eq(r.phys_off, 1234);
    cr_assert_eq(r.born_port, 50000);
    cr_assert_eq(r.store_port, 10911);
    cr_assert_eq(r.store_ts, 1700000000123LL);
    cr_assert_eq(r.body_len, 14);
    cr_assert_eq(memcmp(r.body, "Hello RocketMQ", 14), 0);
    cr_assert_eq(r.topic_len, 9);
    cr_assert(rmq_props_get(r.props, r.props_len, "KEYS", &v, &vl));
    cr_assert_eq(vl, 9);
    cr_assert_eq(memcmp(v, "key1 key2", 9), 0);
    cr_assert(rmq_props_get(r.props, r.props_len, "CLUSTER", &v, &vl));   /* no trailing 0x02 */
    cr_assert_eq(vl, 14);
    cr_assert_not(rmq_props_get(r.props, r.props_len, "TAG", &v, &vl));
    rmq_msg_offset_id(id, r.store_ip, r.store_port, r.phys_off);
    cr_assert_str_eq(id, "7F00000100002A9F00000000000004D2");
    free(buf);
}

Test(record, three_part_encoding_equals_whole)
{
    struct rmq_record r;
    uint8_t whole[512];
    uint8_t parts[512];
    size_t tail;

    example(&r);
    rmq_record_seal(&r);
    rmq_record_encode(&r, whole);
    rmq_record_encode_head(&r, parts);
    memcpy(parts + RMQ_RECORD_HEAD_SIZE, r.body, r.body_len);
    tail = rmq_record_encode_tail(&r, parts + RMQ_RECORD_HEAD_SIZE + r.body_len);
    cr_assert_eq(RMQ_RECORD_HEAD_SIZE + r.body_len + tail, r.total_size);
    cr_assert_eq(memcmp(whole, parts, r.total_size), 0);
}

Test(record, corruption_is_rejected_never_read_past)
{
    struct rmq_record r;
    uint8_t good[512];
    uint8_t bad[512];

    example(&r);
    rmq_record_seal(&r);
    rmq_record_encode(&r, good);
    /* every truncation */
    for (uint32_t k = 0; k < r.total_size; k++) {
        uint8_t *cut = malloc(k ? k : 1);

        memcpy(cut, good, k);
        if (rmq_record_decode(cut, k, true, &r, NULL) != -EBADMSG) {
            cr_assert_fail("truncated at %u accepted", k);
        }
        free(cut);
    }
    example(&r);
    rmq_record_seal(&r);
    /* every single-byte flip is caught (CRC on for the body, lengths for the rest) */
    for (uint32_t i = 0; i < r.total_size; i++) {
        int64_t ret;

        memcpy(bad, good, r.total_size);
        bad[i] ^= 0x5A;
        ret = rmq_record_decode(bad, r.total_size, true, &r, NULL);
        /* fields that are plain values (ids, offsets, times, topic/props text) still
         * decode; what must never happen is a size other than the record's */
        cr_assert(ret == -EBADMSG || ret == 203, "flip at %u gave %lld", i, (long long)ret);
        if (i >= RMQ_RECORD_HEAD_SIZE && i < RMQ_RECORD_HEAD_SIZE + 14) {
            cr_assert_eq(ret, -EBADMSG, "body flip at %u not caught by the CRC", i);
        }
        if (i < 8) {
            cr_assert_eq(ret, -EBADMSG, "size/magic flip at %u accepted", i);
        }
    }
}

Test(record, filler_head_matches_vector)
{
    uint8_t *want;
    size_t len;
    uint8_t out[8];
    uint32_t blank = 0;
    struct rmq_record r;

    cr_assert_eq(rmq_test_load_hex("synthetic-store-blank-record-head.hex", &want, &len), 0);
    rmq_record_encode_blank(out, 100);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(out, want, 8), 0);
    cr_assert_eq(rmq_record_decode(out, 8, true, &r, &blank), 0);
    cr_assert_eq(blank, 100);
    free(want);
}

Test(record, consume_queue_entry_matches_vector)
{
    uint8_t *want;
    size_t len;
    uint8_t out[RMQ_CQ_ENTRY_SIZE];
    struct rmq_cq_entry e = {1234, 203, 2598919};
    struct rmq_cq_entry back;

    cr_assert_eq(rmq_test_load_hex("synthetic-store-consumequeue-entry.hex", &want, &len), 0);
    rmq_cq_entry_encode(out, &e);
    cr_assert_eq(len, RMQ_CQ_ENTRY_SIZE);
    cr_assert_eq(memcmp(out, want, len), 0);
    rmq_cq_entry_decode(want, &back);
    cr_assert_eq(back.phys_off, 1234);
    cr_assert_eq(back.size, 203);
    cr_assert_eq(back.tags_code, rmq_tag_hash("TagA", 4));
    free(want);
}

Test(record, tag_hash_is_java_string_hashcode)
{
    /* values from Java's String.hashCode (UTF-16 code units, int32 wrap-around) */
    cr_assert_eq(rmq_tag_hash("TagA", 4), 2598919);
    cr_assert_eq(rmq_tag_hash("TagB", 4), 2598920);
    cr_assert_eq(rmq_tag_hash("*", 1), 42);
    cr_assert_eq(rmq_tag_hash("", 0), 0);
    cr_assert_eq(rmq_tag_hash("TopicTest", 9), -1902610879);
    cr_assert_eq(rmq_tag_hash("\xC3\xA9", 2), 233);                /* é */
    cr_assert_eq(rmq_tag_hash("\xF0\x9F\x98\x80", 4), 1772899);    /* 😀: surrogate pair */
    cr_assert_eq(rmq_tag_hash("a-very-long-tag-name-that-overflows-int32", 41), 754558677);
}

Test(record, limits)
{
    struct rmq_record r;

    example(&r);
    r.topic_len = 128;
    cr_assert_eq(rmq_record_check(&r, 4 << 20), -EMSGSIZE);
    r.topic_len = 0;
    cr_assert_eq(rmq_record_check(&r, 4 << 20), -EMSGSIZE);
    example(&r);
    r.props_len = 32768;
    cr_assert_eq(rmq_record_check(&r, 4 << 20), -EMSGSIZE);
    example(&r);
    cr_assert_eq(rmq_record_check(&r, 203), 0);
    cr_assert_eq(rmq_record_check(&r, 202), -EMSGSIZE);
}

Test(record, properties_with_and_without_trailing_separator)
{
    const char *v;
    size_t vl;
    const char *a = "TAGS\001x\002KEYS\001k\002";
    const char *b = "TAGS\001x\002EMPTY\001\002\001novalue\002KEYS\001k";

    cr_assert(rmq_props_get(a, strlen(a), "KEYS", &v, &vl) && vl == 1 && *v == 'k');
    cr_assert(rmq_props_get(b, strlen(b), "KEYS", &v, &vl) && vl == 1 && *v == 'k');
    cr_assert_not(rmq_props_get(b, strlen(b), "EMPTY", &v, &vl));
    cr_assert(rmq_props_get(b, strlen(b), "TAGS", &v, &vl) && vl == 1 && *v == 'x');
}
