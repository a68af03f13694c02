#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/be.h"
#include "net/json.h"
#include "tests/unit/vectors.h"

static const char *
finish(struct rmq_jw *w)
{
    const char *out;
    size_t len;

    cr_assert_eq(rmq_jw_finish(w, &out, &len), 0);
    cr_assert_eq(strlen(out), len);
    return out;
}

static void
write_addrs(struct rmq_jw *w)
{
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "brokerAddrs");
    rmq_jw_obj_begin(w);
    rmq_jw_key_i64(w, 0);
    rmq_jw_str(w, "127.0.0.1:10911");
    rmq_jw_key_i64(w, 1);
    rmq_jw_str(w, "127.0.0.1:10921");
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
}

Test(json_writer, fastjson_and_standard_numeric_keys)
{
    struct rmq_jw w;

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    write_addrs(&w);
    cr_assert_str_eq(finish(&w), "{\"brokerAddrs\":{0:\"127.0.0.1:10911\",1:\"127.0.0.1:10921\"}}");
    rmq_jw_fini(&w);
    rmq_jw_init(&w, RMQ_JSON_STANDARD);
    write_addrs(&w);
    cr_assert_str_eq(finish(&w),
                     "{\"brokerAddrs\":{\"0\":\"127.0.0.1:10911\",\"1\":\"127.0.0.1:10921\"}}");
    rmq_jw_fini(&w);
}

Test(json_writer, arrays_numbers_bools_null)
{
    struct rmq_jw w;

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    rmq_jw_key(&w, "a");
    rmq_jw_arr_begin(&w);
    rmq_jw_i64(&w, -9223372036854775807LL - 1);
    rmq_jw_bool(&w, true);
    rmq_jw_null(&w);
    rmq_jw_arr_begin(&w);
    rmq_jw_arr_end(&w);
    rmq_jw_arr_end(&w);
    rmq_jw_key(&w, "b");
    rmq_jw_obj_begin(&w);
    rmq_jw_obj_end(&w);
    rmq_jw_obj_end(&w);
    cr_assert_str_eq(finish(&w), "{\"a\":[-9223372036854775808,true,null,[]],\"b\":{}}");
    rmq_jw_fini(&w);
}

Test(json_writer, escapes_in_both_dialects)
{
    struct rmq_jw w;
    /* control chars, quote, backslash, then é (2 bytes), € (3 bytes), 😀 (4 bytes) */
    const char *s = "TAGS\001a\002\"q\\\n\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";

    rmq_jw_init(&w, RMQ_JSON_STANDARD);
    rmq_jw_str(&w, s);
    cr_assert_str_eq(finish(&w), "\"TAGS\\u0001a\\u0002\\\"q\\\\\\n\\u00e9\\u20ac\\ud83d\\ude00\"");
    rmq_jw_fini(&w);
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_str(&w, s);
    cr_assert_str_eq(finish(&w),
                     "\"TAGS\\u0001a\\u0002\\\"q\\\\\\n\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"");
    rmq_jw_fini(&w);
}

Test(json_writer, misuse_is_a_sticky_error)
{
    struct rmq_jw w;
    const char *out;
    size_t len;

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    rmq_jw_str(&w, "value without key");
    rmq_jw_key(&w, "k");
    rmq_jw_i64(&w, 1);
    rmq_jw_obj_end(&w);
    cr_assert_eq(rmq_jw_finish(&w, &out, &len), -EINVAL);
    rmq_jw_fini(&w);

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_arr_begin(&w);
    rmq_jw_obj_end(&w);
    cr_assert_eq(rmq_jw_finish(&w, &out, &len), -EINVAL);
    rmq_jw_fini(&w);

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    cr_assert_eq(rmq_jw_finish(&w, &out, &len), -EINVAL);      /* unbalanced */
    rmq_jw_fini(&w);

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    for (int i = 0; i <= RMQ_JSON_MAX_DEPTH; i++) {
        rmq_jw_arr_begin(&w);
    }
    cr_assert_eq(rmq_jw_finish(&w, &out, &len), -EINVAL);      /* too deep */
    rmq_jw_fini(&w);
}

Test(json_writer, invalid_utf8_becomes_replacement_in_standard)
{
    struct rmq_jw w;
    /* stray continuation, overlong '/', UTF-16 surrogate, above U+10FFFF, truncated € */
    const char *s = "a\x80" "b\xC0\xAF" "c\xED\xA0\x80" "d\xF5\x80" "e\xE2\x82";

    rmq_jw_init(&w, RMQ_JSON_STANDARD);
    rmq_jw_str(&w, s);
    cr_assert_str_eq(finish(&w), "\"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffd"
                                 "d\\ufffd\\ufffde\\ufffd\\ufffd\"");
    rmq_jw_fini(&w);
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);        /* raw bytes pass through untouched */
    rmq_jw_str_n(&w, s, strlen(s));
    cr_assert_eq(memcmp(finish(&w) + 1, s, strlen(s)), 0);
    rmq_jw_fini(&w);
}

Test(json_writer, short_escapes_and_negative_keys)
{
    struct rmq_jw w;

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    rmq_jw_key_i64(&w, -1);
    rmq_jw_str(&w, "\b\f\n\r\t\x1f");
    rmq_jw_key(&w, "q\"k");
    rmq_jw_str(&w, NULL);
    rmq_jw_obj_end(&w);
    cr_assert_str_eq(finish(&w), "{-1:\"\\b\\f\\n\\r\\t\\u001f\",\"q\\\"k\":null}");
    rmq_jw_fini(&w);
}

Test(json_writer, more_misuse)
{
    static const int cases = 5;
    const char *out;
    size_t len;

    for (int c = 0; c < cases; c++) {
        struct rmq_jw w;

        rmq_jw_init(&w, RMQ_JSON_STANDARD);
        switch (c) {
        case 0:                                     /* nothing written */
            break;
        case 1:                                     /* two top-level values */
            rmq_jw_i64(&w, 1);
            rmq_jw_i64(&w, 2);
            break;
        case 2:                                     /* key after key */
            rmq_jw_obj_begin(&w);
            rmq_jw_key(&w, "a");
            rmq_jw_key(&w, "b");
            rmq_jw_i64(&w, 1);
            rmq_jw_obj_end(&w);
            break;
        case 3:                                     /* key in an array, then a clean object */
            rmq_jw_arr_begin(&w);
            rmq_jw_key_i64(&w, 0);
            rmq_jw_arr_end(&w);
            break;
        case 4:                                     /* object closed right after its key */
            rmq_jw_obj_begin(&w);
            rmq_jw_key(&w, "a");
            rmq_jw_obj_end(&w);
            rmq_jw_null(&w);
            rmq_jw_obj_end(&w);
            break;
        }
        cr_assert_eq(rmq_jw_finish(&w, &out, &len), -EINVAL, "case %d", c);
        cr_assert_eq(rmq_jw_finish(&w, &out, &len), -EINVAL, "case %d: sticky", c);
        rmq_jw_fini(&w);
    }
}

Test(json_writer, nesting_exactly_at_the_limit)
{
    struct rmq_jw w;
    const char *out;
    char expect[2 * RMQ_JSON_MAX_DEPTH + 1];

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    for (int i = 0; i < RMQ_JSON_MAX_DEPTH; i++) {
        rmq_jw_arr_begin(&w);
    }
    for (int i = 0; i < RMQ_JSON_MAX_DEPTH; i++) {
        rmq_jw_arr_end(&w);
    }
    memset(expect, '[', RMQ_JSON_MAX_DEPTH);
    memset(expect + RMQ_JSON_MAX_DEPTH, ']', RMQ_JSON_MAX_DEPTH);
    expect[2 * RMQ_JSON_MAX_DEPTH] = '\0';
    out = finish(&w);
    cr_assert_str_eq(out, expect);
    rmq_jw_fini(&w);

    /* one past the limit: closing everything afterwards does not clear the error */
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    for (int i = 0; i <= RMQ_JSON_MAX_DEPTH; i++) {
        rmq_jw_obj_begin(&w);
        if (i < RMQ_JSON_MAX_DEPTH) {
            rmq_jw_key(&w, "k");
        }
    }
    for (int i = 0; i <= RMQ_JSON_MAX_DEPTH; i++) {
        rmq_jw_obj_end(&w);
    }
    cr_assert_eq(rmq_jw_finish(&w, &out, &(size_t){0}), -EINVAL);
    rmq_jw_fini(&w);
}

Test(json_writer, grows_past_the_first_buffer)
{
    struct rmq_jw w;
    const char *out;
    size_t len;
    cJSON *root;

    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_jw_obj_begin(&w);
    for (int i = 0; i < 1000; i++) {
        rmq_jw_key_i64(&w, i);
        rmq_jw_i64(&w, 1000000LL * i);
    }
    rmq_jw_obj_end(&w);
    cr_assert_eq(rmq_jw_finish(&w, &out, &len), 0);
    cr_assert_eq(strlen(out), len);
    root = rmq_json_parse(out, len);
    cr_assert_not_null(root);
    cr_assert_eq(cJSON_GetArraySize(root), 1000);
    cr_assert_eq(rmq_json_get_i64(root, "999", 0), 999000000LL);
    cJSON_Delete(root);
    rmq_jw_fini(&w);
}

static cJSON *
parse_file(const char *name)
{
    uint8_t *buf;
    size_t len;
    cJSON *root;

    cr_assert_eq(rmq_test_load_raw(name, &buf, &len), 0, "%s", name);
    root = rmq_json_parse((const char *)buf, len);
    free(buf);
    return root;
}

static void
assert_route(cJSON *root)
{
    cJSON *bd;
    cJSON *addrs;

    cr_assert_not_null(root);
    bd = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "brokerDatas"), 0);
    cr_assert_not_null(bd);
    addrs = cJSON_GetObjectItem(bd, "brokerAddrs");
    cr_assert_str_eq(rmq_json_get_str(addrs, "0"), "127.0.0.1:10911");
    cr_assert_str_eq(rmq_json_get_str(addrs, "1"), "127.0.0.1:10921");
}

Test(json_reader, both_route_dialects_from_the_spec_vectors)
{
    cJSON *fast = parse_file("synthetic-body-route-fastjson.json");
    cJSON *std = parse_file("synthetic-body-route-standard.json");

    assert_route(fast);
    assert_route(std);
    cJSON_Delete(fast);
    cJSON_Delete(std);
}

Test(json_reader, heartbeat_body_of_the_alions_vector)
{
    static const char *const consume_types[] = {"CONSUME_ACTIVELY", "CONSUME_PASSIVELY"};
    uint8_t *frame;
    size_t len;
    uint32_t hl;
    cJSON *root;
    cJSON *cd;
    cJSON *sub;
    cJSON *codes;

    cr_assert_eq(rmq_test_load_hex("alions-req-34-HEART_BEAT.hex", &frame, &len), 0);
    hl = rmq_get_be32(frame + 4) & 0xFFFFFF;
    root = rmq_json_parse((const char *)frame + 8 + hl, len - 8 - hl);
    cr_assert_not_null(root);
    cr_assert_str_eq(rmq_json_get_str(root, "clientID"), "127.0.0.1@vector");
    cd = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "consumerDataSet"), 0);
    cr_assert_str_eq(rmq_json_get_str(cd, "groupName"), "CG_VECTOR");
    cr_assert_eq(rmq_json_get_enum(cd, "consumeType", consume_types, 2, -1), 1);
    sub = cJSON_GetArrayItem(cJSON_GetObjectItem(cd, "subscriptionDataSet"), 0);
    cr_assert_not_null(sub);
    codes = cJSON_GetObjectItem(sub, "codeSet");
    cr_assert_eq(cJSON_GetArraySize(codes), 2);
    cr_assert_eq((int64_t)cJSON_GetArrayItem(codes, 0)->valuedouble, 2598919);
    cr_assert_eq((int64_t)cJSON_GetArrayItem(codes, 1)->valuedouble, 2598920);
    cr_assert_eq(rmq_json_get_i64(sub, "subVersion", -1), 1700000000000LL);
    cJSON_Delete(root);
    free(frame);
}

Test(json_reader, coercions)
{
    static const char *const models[] = {"BROADCASTING", "CLUSTERING"};
    const char *text = "{\"ord\":1,\"ords\":\"0\",\"name\":\"CLUSTERING\",\"bad\":7,"
                       "\"big\":\"9007199254740993\",\"sv\":\"1700000000000\",\"frac\":1.5,"
                       "\"t\":\"TRUE\",\"n\":0,\"b\":false}";
    cJSON *root = rmq_json_parse(text, strlen(text));

    cr_assert_not_null(root);
    cr_assert_eq(rmq_json_get_enum(root, "ord", models, 2, -1), 1);
    cr_assert_eq(rmq_json_get_enum(root, "ords", models, 2, -1), 0);
    cr_assert_eq(rmq_json_get_enum(root, "name", models, 2, -1), 1);
    cr_assert_eq(rmq_json_get_enum(root, "bad", models, 2, -1), -1);
    cr_assert_eq(rmq_json_get_i64(root, "big", 0), 9007199254740993LL);
    cr_assert_eq(rmq_json_get_i64(root, "sv", 0), 1700000000000LL);
    cr_assert_eq(rmq_json_get_i64(root, "frac", -5), -5);
    cr_assert_eq(rmq_json_get_i64(root, "missing", -7), -7);
    cr_assert(rmq_json_get_bool(root, "t", false));
    cr_assert_not(rmq_json_get_bool(root, "n", true));
    cr_assert_not(rmq_json_get_bool(root, "b", true));
    cr_assert_null(rmq_json_get_str(root, "ord"));
    cJSON_Delete(root);
}

Test(json_reader, unquoted_keys_only_in_key_position)
{
    const char *text = "{-1:\"x\", 5 : [1,2,{7:\"{1:2}\"}], \"s\":\"a,1:b\"}";
    cJSON *root = rmq_json_parse(text, strlen(text));
    cJSON *arr;

    cr_assert_not_null(root);
    cr_assert_str_eq(rmq_json_get_str(root, "-1"), "x");
    arr = cJSON_GetObjectItem(root, "5");
    cr_assert_eq(cJSON_GetArraySize(arr), 3);
    cr_assert_eq(cJSON_GetArrayItem(arr, 0)->valuedouble, 1);
    cr_assert_str_eq(rmq_json_get_str(cJSON_GetArrayItem(arr, 2), "7"), "{1:2}");
    cr_assert_str_eq(rmq_json_get_str(root, "s"), "a,1:b");
    cJSON_Delete(root);
}

Test(json_reader, strings_are_never_rewritten)
{
    const char *texts[] = {
        "{\"a\":\"{1:2}\"}",
        "{\"a\\\"\":\"x,1:y\",\"b\":{2:\"z\\\\\"}}",    /* escaped quote, then \\ */
    };
    cJSON *root = rmq_json_parse(texts[0], strlen(texts[0]));

    cr_assert_not_null(root);
    cr_assert_str_eq(rmq_json_get_str(root, "a"), "{1:2}");
    cJSON_Delete(root);
    root = rmq_json_parse(texts[1], strlen(texts[1]));
    cr_assert_not_null(root);
    cr_assert_str_eq(rmq_json_get_str(root, "a\""), "x,1:y");
    cr_assert_str_eq(rmq_json_get_str(cJSON_GetObjectItem(root, "b"), "2"), "z\\");
    cJSON_Delete(root);
}

Test(json_reader, trailing_blanks_and_nul_accepted_garbage_rejected)
{
    static const char ok[] = "{0:1}\n \0";          /* the body of a frame may end in NUL */
    cJSON *root = rmq_json_parse(ok, sizeof(ok) - 1);

    cr_assert_not_null(root);
    cr_assert_eq(rmq_json_get_i64(root, "0", -1), 1);
    cJSON_Delete(root);
    cr_assert_null(rmq_json_parse("{\"a\":1}xyz", 10));
    cr_assert_null(rmq_json_parse("{\"a\":1} }", 9));
    cr_assert_null(rmq_json_parse("{\"a\":1}\0x", 9));
    cr_assert_null(rmq_json_parse("{-:1}", 5));
    cr_assert_null(rmq_json_parse("{1.5:1}", 7));
    cr_assert_null(rmq_json_parse("[1:2]", 5));
}

Test(json_reader, nesting_bomb_is_rejected)
{
    enum { DEEP = 10000 };
    char *text = malloc(2 * DEEP);

    cr_assert_not_null(text);
    memset(text, '[', DEEP);
    memset(text + DEEP, ']', DEEP);
    cr_assert_null(rmq_json_parse(text, 2 * DEEP));
    free(text);
}

Test(json_reader, coercion_edges)
{
    static const char *const models[] = {"BROADCASTING", "CLUSTERING"};
    const char *text = "{\"min\":\"-9223372036854775808\",\"over\":\"9223372036854775808\","
                       "\"plus\":\"+5\",\"sp\":\" 5\",\"tail\":\"5x\",\"neg\":-3,"
                       "\"e\":1e3,\"f\":\"False\",\"yes\":\"yes\",\"two\":2,\"arr\":[1],"
                       "\"o2\":\"2\",\"om\":-1,\"lower\":\"clustering\"}";
    cJSON *root = rmq_json_parse(text, strlen(text));

    cr_assert_not_null(root);
    cr_assert_eq(rmq_json_get_i64(root, "min", 0), INT64_MIN);
    cr_assert_eq(rmq_json_get_i64(root, "over", 7), 7);
    cr_assert_eq(rmq_json_get_i64(root, "plus", 7), 7);
    cr_assert_eq(rmq_json_get_i64(root, "sp", 7), 7);
    cr_assert_eq(rmq_json_get_i64(root, "tail", 7), 7);
    cr_assert_eq(rmq_json_get_i64(root, "neg", 7), -3);
    cr_assert_eq(rmq_json_get_i64(root, "e", 7), 1000);
    cr_assert_eq(rmq_json_get_i64(root, "arr", 7), 7);
    cr_assert_not(rmq_json_get_bool(root, "f", true));
    cr_assert(rmq_json_get_bool(root, "yes", true));            /* not coercible: def */
    cr_assert_not(rmq_json_get_bool(root, "yes", false));
    cr_assert(rmq_json_get_bool(root, "two", false));
    cr_assert(rmq_json_get_bool(root, "missing", true));
    cr_assert_null(rmq_json_get_str(root, "missing"));
    cr_assert_null(rmq_json_get_str(root, "arr"));
    cr_assert_eq(rmq_json_get_enum(root, "o2", models, 2, -1), -1);
    cr_assert_eq(rmq_json_get_enum(root, "om", models, 2, -1), -1);
    cr_assert_eq(rmq_json_get_enum(root, "lower", models, 2, -1), -1);   /* names are exact */
    cr_assert_eq(rmq_json_get_enum(root, "arr", models, 2, -1), -1);
    cr_assert_eq(rmq_json_get_enum(root, "missing", models, 2, -1), -1);
    cJSON_Delete(root);
}

Test(json_reader, invalid_input)
{
    cr_assert_null(rmq_json_parse("", 0));
    cr_assert_null(rmq_json_parse("   \n", 4));
    cr_assert_null(rmq_json_parse("{\"a\":", 5));
    cr_assert_null(rmq_json_parse("{\"a\" 1}", 7));
    cr_assert_null(rmq_json_parse("{a:1}", 5));
    cr_assert_null(rmq_json_parse("{\"unterminated", 14));
}

Test(json_reader, round_trip_through_the_writer)
{
    /* control chars, quote, backslash, 2-, 3- and 4-byte UTF-8 */
    static const char props[] = "TAGS\001TagA\002\"q\\\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";

    for (int d = 0; d < 2; d++) {
        struct rmq_jw w;
        const char *out;
        size_t len;
        cJSON *root;

        rmq_jw_init(&w, (enum rmq_json_dialect)d);
        rmq_jw_obj_begin(&w);
        rmq_jw_key(&w, "offsetTable");
        rmq_jw_obj_begin(&w);
        rmq_jw_key_i64(&w, 3);
        rmq_jw_i64(&w, 1234567890123LL);
        rmq_jw_obj_end(&w);
        rmq_jw_key(&w, "props");
        rmq_jw_str(&w, props);
        rmq_jw_obj_end(&w);
        cr_assert_eq(rmq_jw_finish(&w, &out, &len), 0);
        root = rmq_json_parse(out, len);
        cr_assert_not_null(root, "dialect %d: %s", d, out);
        cr_assert_eq(rmq_json_get_i64(cJSON_GetObjectItem(root, "offsetTable"), "3", 0),
                     1234567890123LL);
        cr_assert_str_eq(rmq_json_get_str(root, "props"), props);
        cJSON_Delete(root);
        rmq_jw_fini(&w);
    }
}

Test(json_writer, route_dialect_follows_version_and_flag)
{
    struct rmq_header h;

    rmq_header_init(&h, 105, RMQ_SER_JSON);
    h.version = 121;                                /* ali-ons */
    cr_assert_eq(rmq_json_route_dialect(&h), RMQ_JSON_FASTJSON);
    h.version = 333;                                /* rocketmq-client-cpp 2.x */
    cr_assert_eq(rmq_json_route_dialect(&h), RMQ_JSON_FASTJSON);
    h.version = 401;
    cr_assert_eq(rmq_json_route_dialect(&h), RMQ_JSON_STANDARD);
    h.version = 121;
    rmq_header_add(&h, "acceptStandardJsonOnly", "true");
    cr_assert_eq(rmq_json_route_dialect(&h), RMQ_JSON_STANDARD);
}
