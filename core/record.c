/*
 * Record, filler and consume-queue entry codecs; the layouts are tabled in record.h.
 * Validation on decode is the recovery scanner's only defence against torn or
 * garbled tails, so every length is checked against the record size and the bytes
 * available before anything is read.
 */
#include "core/record.h"

#include <errno.h>
#include <string.h>

#include "core/be.h"
#include "core/crc32.h"
#include "core/util.h"

int
rmq_record_check(const struct rmq_record *r, uint32_t max_size)
{
    if (r->topic_len == 0 || r->topic_len > RMQ_RECORD_TOPIC_MAX ||
        r->props_len > RMQ_RECORD_PROPS_MAX) {
        return -EMSGSIZE;
    }
    if ((uint64_t)rmq_record_size(r->body_len, r->topic_len, r->props_len) > max_size) {
        return -EMSGSIZE;
    }
    return 0;
}

void
rmq_record_seal(struct rmq_record *r)
{
    RMQ_ASSERT(!(r->sysflag & (RMQ_SYSFLAG_BORNHOST_V6 | RMQ_SYSFLAG_STOREHOST_V6)));
    r->body_crc = rmq_crc32_masked(r->body, r->body_len);
    r->total_size = rmq_record_size(r->body_len, r->topic_len, r->props_len);
}

void
rmq_record_encode_head(const struct rmq_record *r, uint8_t head[RMQ_RECORD_HEAD_SIZE])
{
    rmq_put_be32(head, r->total_size);
    rmq_put_be32(head + 4, RMQ_RECORD_MAGIC);
    rmq_put_be32(head + 8, r->body_crc);
    rmq_put_be32(head + 12, (uint32_t)r->queue_id);
    rmq_put_be32(head + 16, (uint32_t)r->flag);
    rmq_put_be64(head + 20, (uint64_t)r->queue_off);
    rmq_put_be64(head + 28, (uint64_t)r->phys_off);
    rmq_put_be32(head + 36, (uint32_t)r->sysflag);
    rmq_put_be64(head + 40, (uint64_t)r->born_ts);
    memcpy(head + 48, r->born_ip, 4);
    rmq_put_be32(head + 52, (uint32_t)r->born_port);
    rmq_put_be64(head + 56, (uint64_t)r->store_ts);
    memcpy(head + 64, r->store_ip, 4);
    rmq_put_be32(head + 68, (uint32_t)r->store_port);
    rmq_put_be32(head + 72, (uint32_t)r->reconsume_times);
    rmq_put_be64(head + 76, (uint64_t)r->prepared_tx_off);
    rmq_put_be32(head + 84, r->body_len);
}

size_t
rmq_record_encode_tail(const struct rmq_record *r, uint8_t *out)
{
    out[0] = r->topic_len;
    memcpy(out + 1, r->topic, r->topic_len);
    rmq_put_be16(out + 1 + r->topic_len, r->props_len);
    if (r->props_len > 0) {
        memcpy(out + 3 + r->topic_len, r->props, r->props_len);
    }
    return 3u + r->topic_len + r->props_len;
}

void
rmq_record_encode(const struct rmq_record *r, uint8_t *out)
{
    rmq_record_encode_head(r, out);
    if (r->body_len > 0) {
        memcpy(out + RMQ_RECORD_HEAD_SIZE, r->body, r->body_len);
    }
    rmq_record_encode_tail(r, out + RMQ_RECORD_HEAD_SIZE + r->body_len);
}

void
rmq_record_encode_blank(uint8_t out[RMQ_RECORD_END_MIN_BLANK], uint32_t remaining)
{
    rmq_put_be32(out, remaining);
    rmq_put_be32(out + 4, RMQ_RECORD_BLANK_MAGIC);
}

int64_t
rmq_record_decode(const uint8_t *p, size_t len, bool check_crc, struct rmq_record *out,
                  uint32_t *blank_len)
{
    uint32_t size;
    uint32_t magic;
    size_t born_len;
    size_t store_len;
    size_t off;
    uint32_t topic_len;
    uint32_t props_len;

    if (len < 8) {
        return -EBADMSG;
    }
    size = rmq_get_be32(p);
    magic = rmq_get_be32(p + 4);
    if (magic == RMQ_RECORD_BLANK_MAGIC) {
        if (blank_len != NULL) {
            *blank_len = size;
        }
        return 0;
    }
    if (magic != RMQ_RECORD_MAGIC || size < RMQ_RECORD_MIN_SIZE || size > len) {
        return -EBADMSG;
    }
    out->total_size = size;
    out->body_crc = rmq_get_be32(p + 8);
    out->queue_id = (int32_t)rmq_get_be32(p + 12);
    out->flag = (int32_t)rmq_get_be32(p + 16);
    out->queue_off = (int64_t)rmq_get_be64(p + 20);
    out->phys_off = (int64_t)rmq_get_be64(p + 28);
    out->sysflag = (int32_t)rmq_get_be32(p + 36);
    out->born_ts = (int64_t)rmq_get_be64(p + 40);
    born_len = (out->sysflag & RMQ_SYSFLAG_BORNHOST_V6) ? 16 : 4;
    store_len = (out->sysflag & RMQ_SYSFLAG_STOREHOST_V6) ? 16 : 4;
    /* fixed part with these host sizes, before the body */
    off = 48;
    if (size < off + born_len + 4 + 8 + store_len + 4 + 4 + 8 + 4 + 1 + 1 + 2) {
        return -EBADMSG;
    }
    memset(out->born_ip, 0, sizeof(out->born_ip));
    memcpy(out->born_ip, p + off, born_len);
    out->born_port = (int32_t)rmq_get_be32(p + off + born_len);
    off += born_len + 4;
    out->store_ts = (int64_t)rmq_get_be64(p + off);
    off += 8;
    memset(out->store_ip, 0, sizeof(out->store_ip));
    memcpy(out->store_ip, p + off, store_len);
    out->store_port = (int32_t)rmq_get_be32(p + off + store_len);
    off += store_len + 4;
    out->reconsume_times = (int32_t)rmq_get_be32(p + off);
    out->prepared_tx_off = (int64_t)rmq_get_be64(p + off + 4);
    out->body_len = rmq_get_be32(p + off + 12);
    off += 16;
    if (out->body_len > size - off - 3) {
        return -EBADMSG;
    }
    out->body = p + off;
    off += out->body_len;
    topic_len = p[off];
    if (topic_len == 0 || topic_len > RMQ_RECORD_TOPIC_MAX || topic_len > size - off - 3) {
        return -EBADMSG;
    }
    out->topic_len = (uint8_t)topic_len;
    out->topic = (const char *)p + off + 1;
    off += 1 + topic_len;
    props_len = rmq_get_be16(p + off);
    if (props_len > RMQ_RECORD_PROPS_MAX || off + 2 + props_len != size) {
        return -EBADMSG;
    }
    out->props_len = (uint16_t)props_len;
    out->props = (const char *)p + off + 2;
    if (check_crc && rmq_crc32_masked(out->body, out->body_len) != out->body_crc) {
        return -EBADMSG;
    }
    return size;
}

void
rmq_cq_entry_encode(uint8_t out[RMQ_CQ_ENTRY_SIZE], const struct rmq_cq_entry *e)
{
    rmq_put_be64(out, (uint64_t)e->phys_off);
    rmq_put_be32(out + 8, (uint32_t)e->size);
    rmq_put_be64(out + 12, (uint64_t)e->tags_code);
}

void
rmq_cq_entry_decode(const uint8_t in[RMQ_CQ_ENTRY_SIZE], struct rmq_cq_entry *e)
{
    e->phys_off = (int64_t)rmq_get_be64(in);
    e->size = (int32_t)rmq_get_be32(in + 8);
    e->tags_code = (int64_t)rmq_get_be64(in + 12);
}

int64_t
rmq_tag_hash(const char *tag, size_t len)
{
    const uint8_t *p = (const uint8_t *)tag;
    uint32_t h = 0;
    size_t i = 0;

    /* Decode UTF-8 to code points, then hash UTF-16 code units (Java strings). */
    while (i < len) {
        uint32_t cp = p[i];
        size_t n = cp >= 0xF0 ? 4 : cp >= 0xE0 ? 3 : cp >= 0xC0 ? 2 : 1;

        if (n > 1 && i + n <= len) {
            cp &= n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07;
            for (size_t k = 1; k < n; k++) {
                cp = cp << 6 | (p[i + k] & 0x3F);
            }
        } else {
            n = 1;
            cp = cp < 0x80 ? cp : 0xFFFD;   /* Java decodes a stray byte to U+FFFD */
        }
        i += n;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            h = 31 * h + (0xD800 + (cp >> 10));
            h = 31 * h + (0xDC00 + (cp & 0x3FF));
        } else {
            h = 31 * h + cp;
        }
    }
    return (int64_t)(int32_t)h;
}

bool
rmq_props_get(const char *props, size_t len, const char *name, const char **val,
              size_t *val_len)
{
    size_t name_len = strlen(name);
    size_t i = 0;

    while (i < len) {
        const char *pair = props + i;
        const char *end = memchr(pair, RMQ_PROP_SEP, len - i);
        size_t pair_len = end != NULL ? (size_t)(end - pair) : len - i;
        const char *sep = memchr(pair, RMQ_PROP_NAME_SEP, pair_len);

        if (sep != NULL && (size_t)(sep - pair) == name_len && name_len > 0 &&
            memcmp(pair, name, name_len) == 0 && pair_len > name_len + 1) {
            *val = sep + 1;
            *val_len = pair_len - name_len - 1;
            return true;
        }
        i += pair_len + 1;
    }
    return false;
}

void
rmq_msg_offset_id(char out[33], const uint8_t ip[4], int32_t port, int64_t phys_off)
{
    static const char hex[] = "0123456789ABCDEF";
    uint8_t raw[16];

    memcpy(raw, ip, 4);
    rmq_put_be32(raw + 4, (uint32_t)port);
    rmq_put_be64(raw + 8, (uint64_t)phys_off);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[32] = '\0';
}

int64_t
rmq_record_peek_store_ts(const uint8_t *p, size_t len)
{
    size_t at = 56;

    if (len < RMQ_RECORD_TS_PEEK || rmq_get_be32(p + 4) != RMQ_RECORD_MAGIC) {
        return -1;
    }
    if (rmq_get_be32(p + 36) & RMQ_SYSFLAG_BORNHOST_V6) {
        at += 12;                   /* 16-byte born address instead of 4 */
    }
    return (int64_t)rmq_get_be64(p + at);
}
