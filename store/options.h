/*
 * The store's configuration keys, with RocketMQ's broker.conf names and defaults,
 * for the daemons' key tables (core/config.h). rmq_store_options_apply turns them
 * into the runtime struct rmq_store_config.
 */
#ifndef RMQ_STORE_OPTIONS_H
#define RMQ_STORE_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "store/store.h"

#define RMQ_STORE_PATH_MAX 1024

struct rmq_store_options {
    char storePathRootDir[RMQ_STORE_PATH_MAX];
    char storePathCommitLog[RMQ_STORE_PATH_MAX];    /* "" = <storePathRootDir>/commitlog */
    int64_t mappedFileSizeCommitLog;
    int64_t mappedFileSizeConsumeQueue;
    int flushDiskType;                              /* index: ASYNC_FLUSH, SYNC_FLUSH */
    int commitLogWriteMode;                         /* RMQ_DISK_WRITE_MMAP, _WRITEV, _AUTO */
    int64_t flushIntervalCommitLog;
    int64_t flushCommitLogLeastPages;
    int64_t syncFlushTimeout;
    int64_t fileReservedTime;                       /* hours */
    char deleteWhen[64];                            /* hours of the day, "04" or "01;04" */
    int64_t diskMaxUsedSpaceRatio;                  /* percent */
    int64_t maxMessageSize;
    int64_t flushIntervalConsumeQueue;
    int64_t diskSpaceWarningLevelRatio;             /* percent */
    int64_t diskSpaceCleanForciblyRatio;            /* percent */
    int64_t cleanResourceInterval;
    char messageDelayLevel[512];
    int64_t accessMessageInMemoryMaxRatio;          /* percent of RAM */
};

extern const struct rmq_config_key rmq_store_option_keys[];
extern const size_t rmq_store_option_key_count;

/* Runtime config from options; out->... fields not covered keep their defaults.
 * out->root_dir points into o: o must outlive the store. -EINVAL with a log line for a
 * deleteWhen that is not hours 00-23 separated by ';'. */
int rmq_store_options_apply(const struct rmq_store_options *o, struct rmq_store_config *out);

/* deleteWhen ("04", "01;04") as a bit mask of hours; -1 when malformed. */
int64_t rmq_store_delete_when_mask(const char *s);

/* The disk write mode to use (RMQ_DISK_WRITE_*) for commitLogWriteMode and flushDiskType:
 * auto under SYNC_FLUSH is writev. */
int rmq_store_write_mode(int configured, int flush_type);

/* The commitlog directory these options name (storePathCommitLog or the root's). */
void rmq_store_options_commitlog_dir(const struct rmq_store_options *o, char *out, size_t len);

#endif
