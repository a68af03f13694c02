/*
 * Frame decoding and encoding for both header serializations; see frame.h.
 * Every length read from the wire is checked against what is left before use, so
 * a truncated or lying frame yields -EPROTO, never an out-of-bounds read.
 */
#include "net/frame.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/be.h"
#include "net/codes.h"
#include "net/frame_int.h"

#define DEFAULT_MAX_HEADER (128u << 10)

static int
binary_header_decode(uint8_t *p, size_t len, struct rmq_header *h)
{
    size_t off;
    uint32_t remark_len;
    uint32_t ext_len;
    size_t ext_end;

    if (len < RMQ_BIN_HEADER_MIN) {
        return -EPROTO;
    }
    h->code = (int16_t)rmq_get_be16(p);
    h->language = p[2];
    h->version = (int16_t)rmq_get_be16(p + 3);
    h->opaque = (int32_t)rmq_get_be32(p + 5);
    h->flag = (int32_t)rmq_get_be32(p + 9);
    h->serialize = RMQ_SER_ROCKETMQ;
    h->ext_count = 0;
    h->scratch_len = 0;
    remark_len = rmq_get_be32(p + 13);
    if (remark_len > len - 17 - 4) {        /* also rejects negative lengths */
        return -EPROTO;
    }
    h->has_remark = remark_len > 0;         /* the reference reads "" as no remark */
    h->remark.ptr = (const char *)p + 17;
    h->remark.len = remark_len;
    off = 17 + remark_len;
    ext_len = rmq_get_be32(p + off);
    off += 4;
    if (ext_len > len - off) {
        return -EPROTO;
    }
    ext_end = off + ext_len;
    while (off < ext_end) {
        uint16_t klen;
        uint32_t vlen;
        struct rmq_ext *e;

        if (ext_end - off < 2) {
            return -EPROTO;
        }
        klen = rmq_get_be16(p + off);
        off += 2;
        if (klen > 0x7FFF || klen > ext_end - off || ext_end - off - klen < 4) {
            return -EPROTO;
        }
        vlen = rmq_get_be32(p + off + klen);
        if (vlen > ext_end - off - klen - 4) {
            return -EPROTO;
        }
        if (klen > 0 && vlen > 0) {         /* empty strings read back as absent */
            if (h->ext_count == RMQ_FRAME_MAX_EXT) {
                return -EPROTO;
            }
            e = &h->ext[h->ext_count++];
            e->key.ptr = (const char *)p + off;
            e->key.len = klen;
            e->val.ptr = (const char *)p + off + klen + 4;
            e->val.len = vlen;
        }
        off += (size_t)klen + 4 + vlen;
    }
    /* Bytes after the ext block inside the header are not part of any field. */
    return off == len ? 0 : -EPROTO;
}

ssize_t
rmq_frame_decode(uint8_t *buf, size_t len, const struct rmq_codec_limits *lim,
                 struct rmq_frame *out)
{
    uint32_t max_frame = lim && lim->max_frame ? lim->max_frame : RMQ_FRAME_REF_MAX;
    uint32_t max_header = lim && lim->max_header ? lim->max_header : DEFAULT_MAX_HEADER;
    uint32_t frame_len;
    uint32_t header_word;
    uint32_t header_len;
    uint8_t ser;
    int ret;

    if (len < 4) {
        return 0;
    }
    frame_len = rmq_get_be32(buf);
    if (frame_len > 0x7FFFFFFFu) {
        return -EPROTO;                     /* negative i32 */
    }
    if (frame_len > max_frame) {
        return -EMSGSIZE;
    }
    if (frame_len < 4) {
        return -EPROTO;                     /* no room for the header word */
    }
    if (len < 8) {
        return 0;
    }
    header_word = rmq_get_be32(buf + 4);
    ser = (uint8_t)(header_word >> 24);
    header_len = header_word & 0xFFFFFF;
    if (ser != RMQ_SER_JSON && ser != RMQ_SER_ROCKETMQ) {
        return -EPROTO;
    }
    if (header_len > frame_len - 4) {
        return -EPROTO;
    }
    if (header_len > max_header) {
        return -EMSGSIZE;
    }
    if (len - 4 < frame_len) {
        return 0;
    }
    if (ser == RMQ_SER_JSON) {
        ret = rmq__json_header_decode(buf + 8, header_len, &out->h);
    } else {
        ret = binary_header_decode(buf + 8, header_len, &out->h);
    }
    if (ret < 0) {
        return ret;
    }
    out->body = buf + 8 + header_len;
    out->body_len = frame_len - 4 - header_len;
    out->frame_len = frame_len + 4;
    return (ssize_t)frame_len + 4;
}

static size_t
binary_header_len(const struct rmq_header *h)
{
    size_t n = RMQ_BIN_HEADER_MIN + (h->has_remark ? h->remark.len : 0);

    for (uint32_t i = 0; i < h->ext_count; i++) {
        n += 2 + h->ext[i].key.len + 4 + h->ext[i].val.len;
    }
    return n;
}

static size_t
binary_header_write(const struct rmq_header *h, uint8_t *p)
{
    uint32_t remark_len = h->has_remark ? h->remark.len : 0;
    size_t off;
    size_t ext_start;

    rmq_put_be16(p, (uint16_t)h->code);
    p[2] = h->language;
    rmq_put_be16(p + 3, (uint16_t)h->version);
    rmq_put_be32(p + 5, (uint32_t)h->opaque);
    rmq_put_be32(p + 9, (uint32_t)h->flag);
    rmq_put_be32(p + 13, remark_len);
    if (remark_len > 0) {
        memcpy(p + 17, h->remark.ptr, remark_len);
    }
    off = 17 + remark_len;
    ext_start = off + 4;
    off = ext_start;
    for (uint32_t i = 0; i < h->ext_count; i++) {
        const struct rmq_ext *e = &h->ext[i];

        rmq_put_be16(p + off, (uint16_t)e->key.len);
        memcpy(p + off + 2, e->key.ptr, e->key.len);
        off += 2 + e->key.len;
        rmq_put_be32(p + off, e->val.len);
        memcpy(p + off + 4, e->val.ptr, e->val.len);
        off += 4 + e->val.len;
    }
    rmq_put_be32(p + ext_start - 4, (uint32_t)(off - ext_start));
    return off;
}

static ssize_t
header_len(const struct rmq_header *h)
{
    if (h->serialize == RMQ_SER_ROCKETMQ) {
        for (uint32_t i = 0; i < h->ext_count; i++) {
            if (h->ext[i].key.len > 0x7FFF) {
                return -EMSGSIZE;
            }
        }
        size_t n = binary_header_len(h);

        return n > 0xFFFFFF ? -EMSGSIZE : (ssize_t)n;
    }
    return rmq__json_header_len(h);
}

ssize_t
rmq_frame_head_len(const struct rmq_header *h)
{
    ssize_t n = header_len(h);

    return n < 0 ? n : n + RMQ_FRAME_PREFIX;
}

ssize_t
rmq_frame_encode_head(const struct rmq_header *h, uint32_t body_len, uint8_t *out, size_t cap)
{
    ssize_t hlen = header_len(h);
    size_t written;

    if (hlen < 0) {
        return hlen;
    }
    if ((uint64_t)hlen + body_len + 4 > 0x7FFFFFFFu) {
        return -EMSGSIZE;
    }
    if (cap < (size_t)hlen + RMQ_FRAME_PREFIX) {
        return -ENOBUFS;
    }
    if (h->serialize == RMQ_SER_ROCKETMQ) {
        written = binary_header_write(h, out + RMQ_FRAME_PREFIX);
    } else {
        written = rmq__json_header_write(h, out + RMQ_FRAME_PREFIX);
    }
    if (written != (size_t)hlen) {
        return -EPROTO;     /* length and writer disagree: a bug, caught by tests */
    }
    rmq_put_be32(out, (uint32_t)(4 + hlen + body_len));
    rmq_put_be32(out + 4, (uint32_t)h->serialize << 24 | (uint32_t)hlen);
    return hlen + RMQ_FRAME_PREFIX;
}

/* ---- header building and reading ------------------------------------------------ */

void
rmq_header_init(struct rmq_header *h, int32_t code, enum rmq_serialize ser)
{
    h->code = code;
    h->version = RMQ_VERSION_OURS;
    h->opaque = 0;
    h->flag = 0;
    h->language = RMQ_LANG_JAVA;
    h->serialize = (uint8_t)ser;
    h->has_remark = false;
    h->remark.ptr = NULL;
    h->remark.len = 0;
    h->ext_count = 0;
    h->scratch_len = 0;
}

void
rmq_header_init_response(struct rmq_header *h, const struct rmq_header *req, int32_t code)
{
    rmq_header_init(h, code, (enum rmq_serialize)req->serialize);
    h->opaque = req->opaque;
    h->flag = RMQ_FLAG_RESPONSE;
}

void
rmq_header_set_remark(struct rmq_header *h, const char *remark)
{
    h->has_remark = remark != NULL && remark[0] != '\0';
    h->remark.ptr = remark;
    h->remark.len = remark ? (uint32_t)strlen(remark) : 0;
}

int
rmq_header_add_n(struct rmq_header *h, const char *key, uint32_t key_len, const char *val,
                 uint32_t val_len)
{
    if (h->ext_count == RMQ_FRAME_MAX_EXT) {
        return -ENOBUFS;
    }
    h->ext[h->ext_count].key.ptr = key;
    h->ext[h->ext_count].key.len = key_len;
    h->ext[h->ext_count].val.ptr = val;
    h->ext[h->ext_count].val.len = val_len;
    h->ext_count++;
    return 0;
}

int
rmq_header_add(struct rmq_header *h, const char *key, const char *val)
{
    return rmq_header_add_n(h, key, (uint32_t)strlen(key), val, (uint32_t)strlen(val));
}

int
rmq_header_add_i64(struct rmq_header *h, const char *key, int64_t val)
{
    char *dst = h->scratch + h->scratch_len;
    size_t room = sizeof(h->scratch) - h->scratch_len;
    int n = snprintf(dst, room, "%lld", (long long)val);

    if (n < 0 || (size_t)n >= room) {
        return -ENOBUFS;
    }
    h->scratch_len += (uint32_t)n;
    return rmq_header_add_n(h, key, (uint32_t)strlen(key), dst, (uint32_t)n);
}

bool
rmq_header_get(const struct rmq_header *h, const char *key, struct rmq_str *val)
{
    /* Last one wins, as in the reference's HashMap when a key repeats. */
    for (uint32_t i = h->ext_count; i-- > 0;) {
        if (rmq_str_eq(h->ext[i].key, key)) {
            *val = h->ext[i].val;
            return true;
        }
    }
    return false;
}

int
rmq_header_get_i64(const struct rmq_header *h, const char *key, int64_t *out)
{
    struct rmq_str s;

    if (!rmq_header_get(h, key, &s)) {
        return -ENOENT;
    }
    return rmq__text_to_i64(s, out);
}

int
rmq_header_get_i32(const struct rmq_header *h, const char *key, int32_t *out)
{
    int64_t v;
    int ret = rmq_header_get_i64(h, key, &v);

    if (ret < 0) {
        return ret;
    }
    if (v < INT32_MIN || v > INT32_MAX) {
        return -EINVAL;
    }
    *out = (int32_t)v;
    return 0;
}

int
rmq_header_get_bool(const struct rmq_header *h, const char *key, bool *out)
{
    struct rmq_str s;

    if (!rmq_header_get(h, key, &s)) {
        return -ENOENT;
    }
    *out = s.len == 4 && (s.ptr[0] | 0x20) == 't' && (s.ptr[1] | 0x20) == 'r' &&
           (s.ptr[2] | 0x20) == 'u' && (s.ptr[3] | 0x20) == 'e';
    return 0;
}
