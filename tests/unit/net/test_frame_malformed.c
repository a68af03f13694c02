#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/be.h"
#include "net/frame.h"
#include "tests/unit/vectors.h"

static struct rmq_frame f;

/* A heap copy of exactly len bytes, so ASan sees any read past the end. */
static ssize_t
decode_exact(const uint8_t *src, size_t len, const struct rmq_codec_limits *lim)
{
    uint8_t *p = malloc(len ? len : 1);
    ssize_t r;

    memcpy(p, src, len);
    r = rmq_frame_decode(p, len, lim, &f);
    free(p);
    return r;
}

static ssize_t
decode_json_header(const char *hdr)
{
    size_t hl = strlen(hdr);
    uint8_t *wire = malloc(8 + hl);
    ssize_t r;

    rmq_put_be32(wire, (uint32_t)(4 + hl));
    rmq_put_be32(wire + 4, (uint32_t)hl);
    memcpy(wire + 8, hdr, hl);
    r = decode_exact(wire, 8 + hl, NULL);
    free(wire);
    return r;
}

Test(frame_malformed, rejects_header_longer_than_frame)
{
    uint8_t wire[16] = {0};

    rmq_put_be32(wire, 8);
    rmq_put_be32(wire + 4, 64);
    cr_assert_eq(rmq_frame_decode(wire, sizeof(wire), NULL, &f), -EPROTO);
}

Test(frame_malformed, negative_huge_and_tiny_lengths)
{
    uint8_t wire[8] = {0};
    struct rmq_codec_limits lim = {.max_frame = 1 << 20, .max_header = 1024};

    rmq_put_be32(wire, 0x80000000u);
    cr_assert_eq(decode_exact(wire, 4, NULL), -EPROTO);
    rmq_put_be32(wire, 0xFFFFFFFFu);
    cr_assert_eq(decode_exact(wire, 4, NULL), -EPROTO);
    rmq_put_be32(wire, (1 << 20) + 1);          /* known too big from 4 bytes */
    cr_assert_eq(decode_exact(wire, 4, &lim), -EMSGSIZE);
    rmq_put_be32(wire, 1 << 20);                /* exactly at the limit: just incomplete */
    cr_assert_eq(decode_exact(wire, 4, &lim), 0);
    rmq_put_be32(wire, 3);
    cr_assert_eq(decode_exact(wire, 4, NULL), -EPROTO);
    rmq_put_be32(wire, 4000);
    rmq_put_be32(wire + 4, 1025);               /* header over max_header */
    cr_assert_eq(decode_exact(wire, 8, &lim), -EMSGSIZE);
    rmq_put_be32(wire + 4, 2u << 24 | 10);      /* unknown serialize type */
    cr_assert_eq(decode_exact(wire, 8, &lim), -EPROTO);
}

Test(frame_malformed, incomplete_prefixes_need_more_bytes)
{
    uint8_t *buf;
    size_t len;

    cr_assert_eq(rmq_test_load_hex("alions-req-310-SEND_MESSAGE_V2.hex", &buf, &len), 0);
    for (size_t k = 0; k < len; k++) {
        cr_assert_eq(decode_exact(buf, k, NULL), 0, "prefix %zu", k);
    }
    cr_assert_eq(decode_exact(buf, len, NULL), (ssize_t)len);
    free(buf);
}

/* Cut every vector's header at every byte, with lengths that agree with the cut. */
static void
truncate_everywhere(const char *name)
{
    uint8_t *buf;
    size_t len;
    uint32_t hl;

    cr_assert_eq(rmq_test_load_hex(name, &buf, &len), 0, "%s", name);
    hl = rmq_get_be32(buf + 4) & 0xFFFFFF;
    for (size_t k = 8; k < len; k++) {
        uint8_t *cut = malloc(k);
        uint32_t cut_hl = (uint32_t)((k - 8) < hl ? (k - 8) : hl);
        ssize_t r;

        memcpy(cut, buf, k);
        rmq_put_be32(cut, (uint32_t)(k - 4));
        rmq_put_be32(cut + 4, (rmq_get_be32(buf + 4) & 0xFF000000u) | cut_hl);
        r = rmq_frame_decode(cut, k, NULL, &f);
        free(cut);
        /* one assertion per failure only: Criterion reports every assertion it runs */
        if (cut_hl < hl && r != -EPROTO) {
            cr_assert_fail("%s cut inside the header at %zu: got %zd", name, k, r);
        }
        if (cut_hl >= hl && r != (ssize_t)k) {
            cr_assert_fail("%s cut inside the body at %zu: got %zd", name, k, r);
        }
    }
    free(buf);
}

Test(frame_malformed, every_vector_truncated_at_every_byte)
{
    size_t n;
    char **names = rmq_test_list_vectors("alions-req-", &n);

    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++) {
        truncate_everywhere(names[i]);
    }
    rmq_test_free_list(names, n);
    truncate_everywhere("synthetic-req-binary-GET_ROUTEINFO_BY_TOPIC.hex");
    truncate_everywhere("synthetic-resp-pull-found.hex");
}

Test(frame_malformed, bad_json_headers)
{
    static const char *bad[] = {
        "",
        " ",
        "{",
        "{}",
        "[]",
        "null",
        "{\"code\":}",
        "{\"code\":1,}",
        "{\"code\":1} x",
        "{\"code\":1}{}",
        "{\"code\":1.5}",
        "{\"code\":1e3}",
        "{\"code\":true}",
        "{\"code\":\"abc\"}",
        "{\"code\":99999999999}",
        "{\"code\":-}",
        "{\"code\":01}",
        "{\"code\":1,\"opaque\":[1]}",
        "{\"code\":1,\"extFields\":[1]}",
        "{\"code\":1,\"extFields\":{\"a\":{}}}",
        "{\"code\":1,\"extFields\":{\"a\":[]}}",
        "{\"code\":1,\"extFields\":{\"a\"}}",
        "{\"code\":1,\"extFields\":{\"a\":1,}}",
        "{\"code\":1,\"extFields\":{1:2}}",
        "{\"code\":1,\"extFields\":\"x\"}",
        "{\"code\":1,\"remark\":5}",
        "{\"code\":1,\"remark\":\"\\x\"}",
        "{\"code\":1,\"remark\":\"\\u12\"}",
        "{\"code\":1,\"remark\":\"\\u12zz\"}",
        "{\"code\":1,\"remark\":\"unterminated}",
        "{\"code\":1,\"language\":tru}",
        "{\"code\":1,\"x\":nul}",
        "{\"code\":1,\"x\":[1,2}",
        "{\"code\":1,\"x\":{\"a\":1]}",
        "{\"code\" 1}",
        "{code:1}",
        "{\"opaque\":1}",
        "{\"code\":1,\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(decode_json_header(bad[i]), -EPROTO, "accepted: %s", bad[i]);
    }
}

Test(frame_malformed, tolerated_json_variants)
{
    static const char *ok[] = {
        "{\"code\":1}",
        "{\"code\":1}\n",
        " {\"code\" : 1 , \"remark\" : \"\" } \r\n",
        "{\"code\":1,\"extFields\":{}}",
        "{\"code\":1,\"extFields\":null}",
        "{\"code\":\"1\",\"version\":\"409\"}",
        "{\"code\":1,\"language\":\"KOTLIN\"}",
        "{\"code\":1,\"language\":1}",
        "{\"code\":1,\"remark\":\"\\ud83d\\ude00 \\ud800 x\"}",
        "{\"code\":1,\"extFields\":{\"a\":1.5e3}}",
        "{\"code\":1,\"x\":[[[[[[[[[[1]]]]]]]]]]}",
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_gt(decode_json_header(ok[i]), 0, "rejected: %s", ok[i]);
    }
}

Test(frame_malformed, surrogate_pair_decodes_to_utf8)
{
    const char *hdr = "{\"code\":1,\"remark\":\"\\ud83d\\ude00\\u00e9\"}";
    size_t hl = strlen(hdr);
    uint8_t wire[128];

    rmq_put_be32(wire, (uint32_t)(4 + hl));
    rmq_put_be32(wire + 4, (uint32_t)hl);
    memcpy(wire + 8, hdr, hl);
    cr_assert_eq(rmq_frame_decode(wire, 8 + hl, NULL, &f), (ssize_t)(8 + hl));
    cr_assert_eq(f.h.remark.len, 6);
    cr_assert_eq(memcmp(f.h.remark.ptr, "\xF0\x9F\x98\x80\xC3\xA9", 6), 0);
}

Test(frame_malformed, too_many_ext_fields)
{
    char hdr[4096];
    int n = snprintf(hdr, sizeof(hdr), "{\"code\":1,\"extFields\":{");

    for (int i = 0; i <= RMQ_FRAME_MAX_EXT; i++) {
        n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "%s\"k%d\":1", i ? "," : "", i);
    }
    snprintf(hdr + n, sizeof(hdr) - (size_t)n, "}}");
    cr_assert_eq(decode_json_header(hdr), -EPROTO);
}

static ssize_t
decode_binary_header(const uint8_t *h, size_t hl)
{
    uint8_t wire[256];

    rmq_put_be32(wire, (uint32_t)(4 + hl));
    rmq_put_be32(wire + 4, 1u << 24 | (uint32_t)hl);
    memcpy(wire + 8, h, hl);
    return decode_exact(wire, 8 + hl, NULL);
}

Test(frame_malformed, bad_binary_headers)
{
    uint8_t h[64];

    memset(h, 0, sizeof(h));
    cr_assert_eq(decode_binary_header(h, 20), -EPROTO);         /* under 21 bytes */
    cr_assert_gt(decode_binary_header(h, 21), 0);               /* minimal is fine */
    rmq_put_be32(h + 13, 0xFFFFFFFFu);                          /* remark length -1 */
    cr_assert_eq(decode_binary_header(h, 21), -EPROTO);
    rmq_put_be32(h + 13, 1);                                    /* remark past the end */
    cr_assert_eq(decode_binary_header(h, 21), -EPROTO);
    rmq_put_be32(h + 13, 0);
    rmq_put_be32(h + 17, 5);                                    /* ext past the end */
    cr_assert_eq(decode_binary_header(h, 21), -EPROTO);
    rmq_put_be32(h + 17, 8);                                    /* key length -1 */
    rmq_put_be16(h + 21, 0xFFFF);
    cr_assert_eq(decode_binary_header(h, 29), -EPROTO);
    rmq_put_be16(h + 21, 1);                                    /* value length huge */
    h[23] = 'k';
    rmq_put_be32(h + 24, 0x7FFFFFFF);
    cr_assert_eq(decode_binary_header(h, 29), -EPROTO);
    rmq_put_be32(h + 24, 1);                                    /* "k" -> "v": valid */
    h[28] = 'v';
    cr_assert_gt(decode_binary_header(h, 29), 0);
    cr_assert_eq(f.h.ext_count, 1);
    cr_assert_eq(decode_binary_header(h, 30), -EPROTO);         /* stray byte after ext */
}
