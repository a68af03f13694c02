/*
 * Store configuration keys; see options.h. Names and defaults are RocketMQ 4.9's so
 * an existing broker.conf keeps its meaning. A segment size must be a whole number
 * of 4 KiB pages (records and the filler rule assume page-aligned segment ends).
 */
#include "store/options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define OPT(field) offsetof(struct rmq_store_options, field)

static const char *const flush_types[] = {"ASYNC_FLUSH", "SYNC_FLUSH", NULL};
/* indexes are RMQ_DISK_WRITE_MMAP, _WRITEV and _AUTO */
static const char *const write_modes[] = {"mmap", "writev", "auto", NULL};

const struct rmq_config_key rmq_store_option_keys[] = {
    {"storePathRootDir", RMQ_CONFIG_STR, OPT(storePathRootDir), RMQ_STORE_PATH_MAX, "./data",
     0, 0, NULL, "root of the store: commitlog, consumequeue, index, config"},
    {"storePathCommitLog", RMQ_CONFIG_STR, OPT(storePathCommitLog), RMQ_STORE_PATH_MAX, "", 0,
     0, NULL, "commitlog directory (empty: <storePathRootDir>/commitlog)"},
    /* under 2 GiB, as RocketMQ's int: a write, a walk and a record bound are 32-bit */
    {"mappedFileSizeCommitLog", RMQ_CONFIG_I64, OPT(mappedFileSizeCommitLog), 0, "1073741824",
     65536, ((int64_t)1 << 31) - 4096, NULL, "bytes per commitlog segment (under 2 GiB)"},
    {"mappedFileSizeConsumeQueue", RMQ_CONFIG_I64, OPT(mappedFileSizeConsumeQueue), 0,
     "6000000", 20 * 1024, (int64_t)20 * 100000000, NULL,
     "bytes per consume queue file (a multiple of 20)"},
    {"flushDiskType", RMQ_CONFIG_ENUM, OPT(flushDiskType), 0, "ASYNC_FLUSH", 0, 0, flush_types,
     "when a send is acknowledged: written (ASYNC) or fdatasync'd (SYNC)"},
    {"commitLogWriteMode", RMQ_CONFIG_ENUM, OPT(commitLogWriteMode), 0, "auto", 0, 0,
     write_modes, "how records reach the page cache: mmap (copied into the segment's "
     "mapping by the store's thread), writev (io_uring writes from the receive buffers, "
     "copied by a kernel worker) or auto (copied while no writev is in flight, except "
     "writes of 128 KiB or more with more right behind; SYNC_FLUSH: writev)"},
    {"flushIntervalCommitLog", RMQ_CONFIG_I64, OPT(flushIntervalCommitLog), 0, "500", 1, 60000,
     NULL, "ASYNC_FLUSH: ms between flushes"},
    {"flushCommitLogLeastPages", RMQ_CONFIG_I64, OPT(flushCommitLogLeastPages), 0, "4", 1,
     1 << 20, NULL, "ASYNC_FLUSH: flush early once this many 4 KiB pages are unflushed"},
    {"syncFlushTimeout", RMQ_CONFIG_I64, OPT(syncFlushTimeout), 0, "5000", 1, 600000, NULL,
     "SYNC_FLUSH: ms before a send is answered FLUSH_DISK_TIMEOUT"},
    {"fileReservedTime", RMQ_CONFIG_I64, OPT(fileReservedTime), 0, "72", 1, 24 * 365 * 10,
     NULL, "hours a commitlog segment is kept"},
    {"deleteWhen", RMQ_CONFIG_STR, OPT(deleteWhen), 64, "04", 0, 0, NULL,
     "hours of the day (00-23, ';'-separated) when expired segments are deleted"},
    {"diskMaxUsedSpaceRatio", RMQ_CONFIG_I64, OPT(diskMaxUsedSpaceRatio), 0, "75", 10, 95,
     NULL, "percent of the disk in use that triggers early deletion"},
    {"accessMessageInMemoryMaxRatio", RMQ_CONFIG_I64, OPT(accessMessageInMemoryMaxRatio), 0,
     "40", 0, 100, NULL, "a pull reading further back than this percent of RAM counts as "
     "reading from disk (smaller batches; with slaveReadEnable: go to the slave)"},
    {"maxMessageSize", RMQ_CONFIG_I64, OPT(maxMessageSize), 0, "4194304", 1024, 64 << 20, NULL,
     "largest message body accepted, bytes"},
    {"flushIntervalConsumeQueue", RMQ_CONFIG_I64, OPT(flushIntervalConsumeQueue), 0, "1000", 10,
     60000, NULL, "ms between checkpoints (consume queues fdatasync'd, checkpoint written)"},
    {"diskSpaceWarningLevelRatio", RMQ_CONFIG_I64, OPT(diskSpaceWarningLevelRatio), 0, "90",
     10, 99, NULL, "percent of the disk in use at which sends are refused (disk full)"},
    {"diskSpaceCleanForciblyRatio", RMQ_CONFIG_I64, OPT(diskSpaceCleanForciblyRatio), 0, "85",
     10, 99, NULL, "percent of the disk in use at which unexpired segments are deleted too"},
    {"cleanResourceInterval", RMQ_CONFIG_I64, OPT(cleanResourceInterval), 0, "10000", 10,
     3600000, NULL, "ms between disk space and retention checks"},
    {"messageDelayLevel", RMQ_CONFIG_STR, OPT(messageDelayLevel), 512,
     "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h", 0, 0, NULL,
     "delay of each level (DELAY=1 is the first), units ms s m h d"},
};

const size_t rmq_store_option_key_count =
    sizeof(rmq_store_option_keys) / sizeof(rmq_store_option_keys[0]);

int64_t
rmq_store_delete_when_mask(const char *s)
{
    int64_t mask = 0;

    while (*s != '\0') {
        int h;

        if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' ||
            (h = (s[0] - '0') * 10 + (s[1] - '0')) > 23) {
            return -1;
        }
        mask |= (int64_t)1 << h;
        s += 2;
        if (*s == ';') {
            s++;
            if (*s == '\0') {
                return -1;
            }
        } else if (*s != '\0') {
            return -1;
        }
    }
    return mask != 0 ? mask : -1;
}

int
rmq_store_parse_delay_levels(const char *text, int64_t *ms, uint32_t max)
{
    uint32_t n = 0;
    const char *p = text;

    while (*p != '\0') {
        char *end;
        long long v;
        int64_t unit;

        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        v = strtoll(p, &end, 10);
        if (end == p || v <= 0 || n == max) {
            return -EINVAL;
        }
        p = end;
        if (p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p += 2;
        } else if (*p == 's' || *p == 'm' || *p == 'h' || *p == 'd') {
            unit = *p == 's' ? 1000 : *p == 'm' ? 60000 : *p == 'h' ? 3600000 : 86400000;
            p++;
        } else {
            return -EINVAL;
        }
        if (*p != ' ' && *p != '\0') {
            return -EINVAL;
        }
        ms[n++] = (int64_t)v * unit;
    }
    return n > 0 ? (int)n : -EINVAL;
}

int
rmq_store_options_apply(const struct rmq_store_options *o, struct rmq_store_config *out)
{
    int64_t mask = rmq_store_delete_when_mask(o->deleteWhen);
    int levels = rmq_store_parse_delay_levels(o->messageDelayLevel, out->delay_levels_ms,
                                              RMQ_DELAY_LEVELS_MAX);

    if (levels < 0) {
        RMQ_ERROR("config: messageDelayLevel=\"%s\" is not a list of delays like \"1s 5s 2m 1h\" "
                  "(units ms s m h d, at most %d)", o->messageDelayLevel, RMQ_DELAY_LEVELS_MAX);
        return -EINVAL;
    }
    out->delay_level_count = (uint32_t)levels;
    if (mask < 0) {
        RMQ_ERROR("config: deleteWhen=\"%s\" is not hours 00-23 separated by ';' (e.g. 04 or "
                  "01;04)", o->deleteWhen);
        return -EINVAL;
    }
    out->seg_size = (uint64_t)o->mappedFileSizeCommitLog & ~(uint64_t)4095;
    out->flush_type = o->flushDiskType == 1 ? RMQ_FLUSH_SYNC : RMQ_FLUSH_ASYNC;
    out->flush_interval_ms = (uint32_t)o->flushIntervalCommitLog;
    out->flush_least_pages = (uint32_t)o->flushCommitLogLeastPages;
    out->sync_flush_timeout_ms = (uint32_t)o->syncFlushTimeout;
    out->max_message_size = (uint32_t)o->maxMessageSize;
    out->root_dir = o->storePathRootDir;
    out->cq_entries = (uint32_t)(o->mappedFileSizeConsumeQueue / RMQ_CQ_ENTRY_SIZE);
    out->cq_flush_interval_ms = (uint32_t)o->flushIntervalConsumeQueue;
    out->file_reserved_ms = (uint64_t)o->fileReservedTime * 3600 * 1000;
    out->delete_hours_mask = (uint32_t)mask;
    out->disk_max_used_ratio = (uint32_t)o->diskMaxUsedSpaceRatio;
    out->mem_ratio = (uint32_t)o->accessMessageInMemoryMaxRatio;
    out->mem_ratio_set = true;
    out->disk_refuse_ratio = (uint32_t)o->diskSpaceWarningLevelRatio;
    out->disk_force_ratio = (uint32_t)o->diskSpaceCleanForciblyRatio;
    out->clean_interval_ms = (uint32_t)o->cleanResourceInterval;
    return 0;
}

void
rmq_store_options_commitlog_dir(const struct rmq_store_options *o, char *out, size_t len)
{
    if (o->storePathCommitLog[0] != '\0') {
        snprintf(out, len, "%s", o->storePathCommitLog);
    } else {
        snprintf(out, len, "%s/commitlog", o->storePathRootDir);
    }
}

int
rmq_store_write_mode(int configured, int flush_type)
{
    /* SYNC_FLUSH: every write is followed by an fdatasync that write-protects the page
     * the next write goes on, so a copy faults each time; measured 10-25 us slower at
     * p50 than writev for one appender (rmq-bench store) */
    if (configured == RMQ_DISK_WRITE_AUTO && flush_type == RMQ_FLUSH_SYNC) {
        return RMQ_DISK_WRITE_WRITEV;
    }
    return configured;
}
