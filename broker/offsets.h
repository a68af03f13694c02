/*
 * Consumer offsets (spec/REMOTING.md §12.8-12.9, STORE.md §16): per "<topic>@<group>"
 * the next offset to consume of each queue, as clients commit them. Kept in memory,
 * persisted as config/consumerOffset.json in the reference's format (unquoted queue id
 * keys) when asked, which the broker does every 5 s and at shutdown.
 *
 * Values are stored verbatim, negatives included: ali-ons commits -1 for queues it
 * never consumed, and a later query must treat that as "nothing stored".
 */
#ifndef RMQ_BROKER_OFFSETS_H
#define RMQ_BROKER_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strmap.h"
#include "net/json.h"

#define RMQ_GROUP_NAME_MAX 255          /* CHARACTER_MAX_LENGTH of the 4.x reference */
#define RMQ_OFFSETS_ENTRIES_MAX 1000000 /* topic@group pairs; a flood of names stops here */
#define RMQ_OFFSETS_FILE_MAX (256u << 20)
#define RMQ_OFFSET_NONE INT64_MIN       /* a queue with no committed offset */

struct rmq_offsets {
    struct rmq_strmap map;          /* "topic@group" -> owned entry */
    char *path;                     /* owned; NULL keeps offsets in memory only */
    bool dirty;                     /* a commit since the last successful persist */
};

/* Load path (absent: empty). -errno with the reason in err. */
int rmq_offsets_init(struct rmq_offsets *o, const char *path, char *err, size_t errlen);
void rmq_offsets_fini(struct rmq_offsets *o);

/* A consumer group name the reference accepts: [%|a-zA-Z0-9_-]{1,255}. */
bool rmq_group_name_valid(const char *name, size_t len);

/*
 * Store offset for (topic, group, queue). 0, -EINVAL for a bad name or queue id
 * (0..16383), -ENOSPC past RMQ_OFFSETS_ENTRIES_MAX pairs, -ENOMEM.
 */
int rmq_offsets_commit(struct rmq_offsets *o, const char *topic, const char *group,
                       int32_t queue_id, int64_t offset);
/* The stored offset, or -1 when none was ever committed (a stored negative reads as is). */
int64_t rmq_offsets_query(const struct rmq_offsets *o, const char *topic, const char *group,
                          int32_t queue_id);
/* The next topic (from *pos, which starts at 0) holding offsets of group, copied into
 * topic (RMQ_TOPIC_NAME_MAX + 1 bytes); false at the end. */
bool rmq_offsets_next_topic(const struct rmq_offsets *o, const char *group, uint32_t *pos,
                            char *topic);
/* Write the file if anything changed since the last write: 0 or -errno (stays dirty). */
int rmq_offsets_persist(struct rmq_offsets *o);

/* {"offsetTable":{...}}: the file's text, GET_ALL_CONSUMER_OFFSET's body. */
void rmq_offsets_write(const struct rmq_offsets *o, struct rmq_jw *w);
/* A memory-only table from such a text (a master's): 0 or -EBADMSG/-EINVAL with err. */
int rmq_offsets_parse(struct rmq_offsets *o, const char *text, size_t len, char *err,
                      size_t errlen);
/* Every stored offset: key is "topic@group". */
typedef void (*rmq_offsets_fn)(void *ctx, const char *key, int32_t queue_id, int64_t offset);
void rmq_offsets_each(const struct rmq_offsets *o, rmq_offsets_fn fn, void *ctx);
/* By "topic@group" key; RMQ_OFFSET_NONE forgets the queue's offset. 0 or -ENOMEM. */
int rmq_offsets_set_key(struct rmq_offsets *o, const char *key, int32_t queue_id,
                        int64_t offset);
int64_t rmq_offsets_get_key(const struct rmq_offsets *o, const char *key, int32_t queue_id);

#endif
