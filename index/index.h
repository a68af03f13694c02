/*
 * The key index (DESIGN.md §5; our own format, not RocketMQ's): which commitlog
 * offsets hold a message with key K in topic T, newest first.
 *
 * Files under one directory, named by the store time of their first entry (20 digits,
 * ms). Each: a 64-byte header, a table of slot_count 32-bit slots, then entry_max
 * 32-byte entries (64-bit hash, commitlog offset, record size, store time, previous
 * entry of the same slot). A slot holds the newest entry number of its bucket; entry 0
 * is unused, so 0 ends a chain. The writer appends to the newest file through a shared
 * mapping and rolls when it is full; older files are mapped read-only.
 *
 * Hashes are the full 64 bits of XXH3 over "topic#key" and are compared in full, so a
 * lookup returns other keys only on a 64-bit collision; the broker still confirms each
 * hit against the record (and nothing else reads the index), so a collision or a torn
 * file after a crash can cost a miss at worst, never a wrong message.
 *
 * The index knows nothing of the commitlog layout: the broker feeds it (hash, offset,
 * size, time) for each key of each written record and says, after each record, up to
 * where everything is indexed (end_phys), which is where a restart resumes.
 */
#ifndef RMQ_INDEX_INDEX_H
#define RMQ_INDEX_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_index_config {
    const char *dir;                /* created if missing */
    uint32_t slot_count;            /* maxHashSlotNum; default 5,000,000 */
    uint32_t entry_max;             /* maxIndexNum; default 20,000,000 */
};

struct rmq_index_hit {
    int64_t phys;
    uint32_t size;
    int64_t store_ts;
};

struct rmq_index_stats {
    uint64_t entries;               /* in every file */
    uint32_t files;
    uint64_t rolls;
    uint64_t files_deleted;
};

struct rmq_index;

/* Open (or create) the index in cfg->dir. A file that is not an index file of this
 * geometry refuses the start with a log line. 0 or -errno. */
int rmq_index_open(struct rmq_index **out, const struct rmq_index_config *cfg);
/* Write the newest file's header and unmap everything. */
void rmq_index_close(struct rmq_index *idx);

/* XXH3 64 of "topic#key". */
uint64_t rmq_index_hash(const char *topic, size_t topic_len, const char *key, size_t key_len);

/* Add one key of the record at phys. 0, -ENOSPC when a new file cannot be made (the key
 * is not indexed; the next put tries again), -errno. */
int rmq_index_put(struct rmq_index *idx, uint64_t hash, int64_t phys, uint32_t size,
                  int64_t store_ts);
/* Start loading hash's slot into the cache (a put of it follows soon): puts collected
 * and prefetched in a row overlap their cache misses on the slot table. */
void rmq_index_prefetch(const struct rmq_index *idx, uint64_t hash);
/* Every record below end_phys is indexed (called after each record's keys). */
void rmq_index_mark(struct rmq_index *idx, int64_t end_phys);
/* Where indexing stands: a restart walks the commitlog from here. */
int64_t rmq_index_end_phys(const struct rmq_index *idx);
int64_t rmq_index_end_ts(const struct rmq_index *idx);

/* Up to max entries with this hash stored in [begin_ts, end_ts], newest first; the
 * count. Duplicates of one offset (a re-walk after a crash) are returned once. */
uint32_t rmq_index_query(const struct rmq_index *idx, uint64_t hash, int64_t begin_ts,
                         int64_t end_ts, struct rmq_index_hit *out, uint32_t max);

/* Delete files whose records all lie below min_phys, the commitlog's start now (never
 * the newest file). */
void rmq_index_release_below(struct rmq_index *idx, int64_t min_phys);

const struct rmq_index_stats *rmq_index_stats(const struct rmq_index *idx);

#endif
