/*
 * The message record format shared by the store, pulls, batches and clients: commitlog
 * records, end-of-segment fillers and consume-queue entries in the
 * RocketMQ 4.x layout (spec/STORE.md §2, §3, §11). A record is byte for byte what a
 * PULL response carries, so it is written once and never re-encoded.
 *
 * In core although core otherwise knows nothing about messages (STYLE.md §1): this one
 * layout is the store's, the pull body's and the client's, and core is the only module
 * all three may include; a module of its own would be a fourth edge for the same bytes.
 *
 * Commitlog record, IPv4 hosts (the only layout ali-ons and the cpp client decode),
 * big-endian:
 *   off  size  field
 *     0     4  TOTALSIZE (this field included)
 *     4     4  MAGICCODE 0xDAA320A7
 *     8     4  BODYCRC (crc32 of the stored body, sign bit cleared)
 *    12     4  QUEUEID
 *    16     4  FLAG
 *    20     8  QUEUEOFFSET
 *    28     8  PHYSICALOFFSET
 *    36     4  SYSFLAG
 *    40     8  BORNTIMESTAMP
 *    48     8  BORNHOST (4-byte IPv4, i32 port)
 *    56     8  STORETIMESTAMP
 *    64     8  STOREHOST (4-byte IPv4, i32 port)
 *    72     4  RECONSUMETIMES
 *    76     8  PREPAREDTRANSACTIONOFFSET
 *    84     4  BODYLENGTH B
 *    88     B  BODY
 *  88+B     1  TOPICLENGTH T (1..127)
 *  89+B     T  TOPIC
 * 89+B+T    2  PROPERTIESLENGTH P (0..32767)
 * 91+B+T    P  PROPERTIES
 * SYSFLAG bit 4 / bit 5 widen BORNHOST / STOREHOST to 16+4 bytes (IPv6); decoding
 * accepts them, encoding writes IPv4 only.
 *
 * Filler at the end of a segment, 8 bytes: i32 remaining-bytes, i32 0xCBD43194.
 *
 * Consume-queue entry, 20 bytes:
 *   off  size  field
 *     0     8  commitlog physical offset
 *     8     4  record size
 *    12     8  tag hash code (or delivery time for SCHEDULE_TOPIC_XXXX)
 */
#ifndef RMQ_CORE_RECORD_H
#define RMQ_CORE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMQ_RECORD_MAGIC 0xDAA320A7u
#define RMQ_RECORD_BLANK_MAGIC 0xCBD43194u
#define RMQ_RECORD_HEAD_SIZE 88             /* through BODYLENGTH, IPv4 hosts */
#define RMQ_RECORD_MIN_SIZE 92              /* empty body, 1-byte topic, no properties */
#define RMQ_RECORD_END_MIN_BLANK 8
#define RMQ_RECORD_TOPIC_MAX 127
#define RMQ_RECORD_PROPS_MAX 32767
#define RMQ_CQ_ENTRY_SIZE 20

#define RMQ_SYSFLAG_COMPRESSED 0x1
#define RMQ_SYSFLAG_MULTI_TAGS 0x2
#define RMQ_SYSFLAG_TX_MASK 0xC
#define RMQ_SYSFLAG_TX_PREPARED 0x4
#define RMQ_SYSFLAG_TX_COMMIT 0x8
#define RMQ_SYSFLAG_TX_ROLLBACK 0xC
#define RMQ_SYSFLAG_BORNHOST_V6 0x10
#define RMQ_SYSFLAG_STOREHOST_V6 0x20

#define RMQ_PROP_NAME_SEP '\001'
#define RMQ_PROP_SEP '\002'

_Static_assert(RMQ_CQ_ENTRY_SIZE == 8 + 4 + 8, "consume queue entry: offset, size, tag hash");
_Static_assert(RMQ_RECORD_MIN_SIZE == RMQ_RECORD_HEAD_SIZE + 1 + 1 + 2, "smallest record");

struct rmq_record {
    int32_t queue_id;
    int32_t flag;
    int64_t queue_off;
    int64_t phys_off;
    int32_t sysflag;
    int64_t born_ts;
    uint8_t born_ip[16];            /* 4 bytes used unless BORNHOST_V6 */
    int32_t born_port;
    int64_t store_ts;
    uint8_t store_ip[16];
    int32_t store_port;
    int32_t reconsume_times;
    int64_t prepared_tx_off;
    uint32_t body_crc;              /* decode: as stored; encode: computed from body */
    const uint8_t *body;            /* borrowed */
    uint32_t body_len;
    const char *topic;              /* borrowed, not NUL-terminated */
    uint8_t topic_len;
    const char *props;              /* borrowed, not NUL-terminated */
    uint16_t props_len;
    uint32_t total_size;
};

/* Record size for these lengths (IPv4 hosts). */
static inline uint32_t
rmq_record_size(uint32_t body_len, uint32_t topic_len, uint32_t props_len)
{
    return RMQ_RECORD_HEAD_SIZE + body_len + 1 + topic_len + 2 + props_len;
}

/*
 * Check lengths before encoding: -EMSGSIZE for a topic over 127 bytes (or empty),
 * properties over 32767 bytes, or a record over max_size.
 */
int rmq_record_check(const struct rmq_record *r, uint32_t max_size);

/*
 * Encoding in three parts so the body can stay where it was received: the 88-byte
 * head, then the body (the caller's iovec), then the tail (topic and properties,
 * 3 + T + P bytes). The head needs body_crc computed: rmq_record_seal does that and
 * sets total_size. IPv4 hosts only (asserted).
 */
void rmq_record_seal(struct rmq_record *r);
void rmq_record_encode_head(const struct rmq_record *r, uint8_t head[RMQ_RECORD_HEAD_SIZE]);
size_t rmq_record_encode_tail(const struct rmq_record *r, uint8_t *out);
/* All three parts into one buffer of r->total_size bytes (tests, small control records). */
void rmq_record_encode(const struct rmq_record *r, uint8_t *out);

/* Bytes of a record's start that hold its store time whatever the host layout. */
#define RMQ_RECORD_TS_PEEK 80

/* Store time from the first RMQ_RECORD_TS_PEEK bytes of a record; -1 when p does not
 * start a record. For reads that need nothing else (retention, time lookups). */
int64_t rmq_record_peek_store_ts(const uint8_t *p, size_t len);

/*
 * Decode and validate the record at p (len bytes available). Returns its total size,
 * 0 for an end-of-segment filler (its span is in *blank_len when non-NULL), or
 * -EBADMSG when the bytes are not a whole valid record: wrong magic, a size outside
 * [RMQ_RECORD_MIN_SIZE, len], lengths that disagree with the size, or (check_crc)
 * a body CRC mismatch. Recovery treats -EBADMSG as the end of valid data.
 */
int64_t rmq_record_decode(const uint8_t *p, size_t len, bool check_crc, struct rmq_record *out,
                          uint32_t *blank_len);

void rmq_record_encode_blank(uint8_t out[RMQ_RECORD_END_MIN_BLANK], uint32_t remaining);

struct rmq_cq_entry {
    int64_t phys_off;
    int32_t size;
    int64_t tags_code;
};

void rmq_cq_entry_encode(uint8_t out[RMQ_CQ_ENTRY_SIZE], const struct rmq_cq_entry *e);
void rmq_cq_entry_decode(const uint8_t in[RMQ_CQ_ENTRY_SIZE], struct rmq_cq_entry *e);

/* Java String.hashCode of the UTF-8 tag taken as UTF-16 code units, sign-extended. */
int64_t rmq_tag_hash(const char *tag, size_t len);

/*
 * Property lookup (spec/STORE.md §5, the 4.9.8 reader): pairs split on 0x02, each at
 * its first 0x01, both sides non-empty; a trailing 0x02 may or may not be there.
 */
bool rmq_props_get(const char *props, size_t len, const char *name, const char **val,
                   size_t *val_len);

/* Offset message id: 32 uppercase hex chars of IPv4 + port + physical offset, NUL added. */
void rmq_msg_offset_id(char out[33], const uint8_t ip[4], int32_t port, int64_t phys_off);

#endif
