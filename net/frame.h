/*
 * Remoting frames (spec/REMOTING.md §2-§7).
 *
 *   off  size  field
 *     0     4  frameLength  = 4 + headerLength + bodyLength (counts what follows it)
 *     4     4  headerWord   = serializeType << 24 | headerLength
 *     8     H  header: JSON (type 0) or ROCKETMQ binary (type 1)
 *   8+H     B  body, opaque bytes
 *
 * Decoding is zero-copy and in place: strings in the decoded header point into the
 * frame bytes, and JSON string escapes are resolved by rewriting the header bytes
 * (an unescaped string is never longer than its escaped form). extFields values that
 * arrive as JSON numbers or booleans are kept as their canonical text ("-1", "true"),
 * null values are treated as absent. Nothing is allocated.
 */
#ifndef RMQ_NET_FRAME_H
#define RMQ_NET_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/codes.h"

#define RMQ_FRAME_PREFIX 8                  /* frameLength + headerWord */
#define RMQ_FRAME_MAX_EXT 64                /* extFields entries per header */
#define RMQ_FRAME_SCRATCH 1024              /* room for numbers formatted into a header */
#define RMQ_FRAME_REF_MAX (16u << 20)       /* the reference decoder's frame limit */
#define RMQ_BIN_HEADER_MIN 21

enum rmq_serialize {
    RMQ_SER_JSON = 0,
    RMQ_SER_ROCKETMQ = 1,
};

struct rmq_str {
    const char *ptr;                /* borrowed; not NUL-terminated */
    uint32_t len;
};

struct rmq_ext {
    struct rmq_str key;
    struct rmq_str val;
};

struct rmq_header {
    int32_t code;
    int32_t version;
    int32_t opaque;
    int32_t flag;
    uint8_t language;               /* enum rmq_language */
    uint8_t serialize;              /* enum rmq_serialize */
    bool has_remark;
    struct rmq_str remark;
    uint32_t ext_count;
    struct rmq_ext ext[RMQ_FRAME_MAX_EXT];
    uint32_t scratch_len;
    char scratch[RMQ_FRAME_SCRATCH];    /* backing for rmq_header_add_i64 */
};

struct rmq_frame {
    struct rmq_header h;
    const uint8_t *body;            /* borrowed: points into the decoded buffer */
    uint32_t body_len;
    uint32_t frame_len;             /* bytes on the wire including the 4-byte length */
};

struct rmq_codec_limits {
    uint32_t max_frame;             /* frameLength bound; default RMQ_FRAME_REF_MAX */
    uint32_t max_header;            /* headerLength bound; default 128 KiB */
};

/*
 * Decode one frame from the start of buf. Returns bytes consumed (> 0), 0 when more
 * bytes are needed, -EMSGSIZE when the frame or header is over the limits (as soon
 * as the prefix shows it), -EPROTO for a malformed frame or header. buf's header
 * bytes are rewritten (escapes resolved); out borrows from buf.
 */
ssize_t rmq_frame_decode(uint8_t *buf, size_t len, const struct rmq_codec_limits *lim,
                         struct rmq_frame *out);

/* Total wire size of the frame with this body, -EMSGSIZE if the header is too large. */
ssize_t rmq_frame_head_len(const struct rmq_header *h);

/*
 * Write frameLength, headerWord and the header (serialization h->serialize) for a body
 * of body_len bytes that the caller sends right after. Returns bytes written, or
 * -ENOBUFS when cap is too small (nothing useful written), -EMSGSIZE when the frame
 * would exceed 2^31 - 1 or the header 2^24 - 1.
 */
ssize_t rmq_frame_encode_head(const struct rmq_header *h, uint32_t body_len, uint8_t *out,
                              size_t cap);

/* Header building and reading. */
void rmq_header_init(struct rmq_header *h, int32_t code, enum rmq_serialize ser);
/* Response skeleton for req: same opaque and serialization, RESPONSE flag. */
void rmq_header_init_response(struct rmq_header *h, const struct rmq_header *req,
                              int32_t code);
void rmq_header_set_remark(struct rmq_header *h, const char *remark);
/* -ENOBUFS when RMQ_FRAME_MAX_EXT entries (or the scratch space) are used up. */
int rmq_header_add(struct rmq_header *h, const char *key, const char *val);
int rmq_header_add_n(struct rmq_header *h, const char *key, uint32_t key_len, const char *val,
                     uint32_t val_len);
int rmq_header_add_i64(struct rmq_header *h, const char *key, int64_t val);

bool rmq_header_get(const struct rmq_header *h, const char *key, struct rmq_str *val);
/* 0, -ENOENT when absent, -EINVAL when not a decimal in range (Java parseInt/parseLong). */
int rmq_header_get_i64(const struct rmq_header *h, const char *key, int64_t *out);
int rmq_header_get_i32(const struct rmq_header *h, const char *key, int32_t *out);
/* Java Boolean.parseBoolean: "true" in any case is true, anything else false. */
int rmq_header_get_bool(const struct rmq_header *h, const char *key, bool *out);

static inline bool
rmq_header_is_response(const struct rmq_header *h)
{
    return (h->flag & RMQ_FLAG_RESPONSE) != 0;
}

static inline bool
rmq_header_is_oneway(const struct rmq_header *h)
{
    return (h->flag & RMQ_FLAG_ONEWAY) != 0;
}

static inline bool
rmq_str_eq(struct rmq_str s, const char *c)
{
    size_t i = 0;

    for (; i < s.len; i++) {
        if (c[i] == '\0' || c[i] != s.ptr[i]) {
            return false;
        }
    }
    return c[i] == '\0';
}

#endif
