#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "store/options.h"

static const struct rmq_config_spec spec = {"rmq-broker", rmq_store_option_keys, 0};

static struct rmq_config_spec
store_spec(void)
{
    struct rmq_config_spec s = spec;

    s.key_count = rmq_store_option_key_count;
    return s;
}

Test(store_options, rocketmq_defaults)
{
    struct rmq_config_spec s = store_spec();
    struct rmq_store_options o;
    struct rmq_store_config cfg = {0};
    char err[256];
    char dir[2048];

    cr_assert_eq(rmq_config_defaults(&s, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(o.mappedFileSizeCommitLog, 1073741824);
    cr_assert_eq(o.mappedFileSizeConsumeQueue, 6000000);
    cr_assert_eq(o.flushIntervalCommitLog, 500);
    cr_assert_eq(o.flushCommitLogLeastPages, 4);
    cr_assert_eq(o.syncFlushTimeout, 5000);
    cr_assert_eq(o.fileReservedTime, 72);
    cr_assert_str_eq(o.deleteWhen, "04");
    cr_assert_eq(o.diskMaxUsedSpaceRatio, 75);
    cr_assert_eq(o.maxMessageSize, 4194304);
    cr_assert_eq(rmq_store_options_apply(&o, &cfg), 0);
    cr_assert_eq(cfg.seg_size, 1u << 30);
    cr_assert_eq(cfg.flush_type, RMQ_FLUSH_ASYNC);
    cr_assert_eq(cfg.cq_entries, 300000);
    cr_assert_eq(cfg.file_reserved_ms, 72ull * 3600 * 1000);
    cr_assert_eq(cfg.delete_hours_mask, 1u << 4);
    cr_assert_eq(cfg.disk_max_used_ratio, 75);
    cr_assert_eq(cfg.disk_refuse_ratio, 90);
    cr_assert_eq(cfg.disk_force_ratio, 85);
    cr_assert_str_eq(cfg.root_dir, "./data");
    rmq_store_options_commitlog_dir(&o, dir, sizeof(dir));
    cr_assert_str_eq(dir, "./data/commitlog");
}

Test(store_options, broker_conf_names_on_the_command_line)
{
    struct rmq_config_spec s = store_spec();
    struct rmq_store_options o;
    struct rmq_store_config cfg = {0};
    char err[256];
    char dir[2048];
    char *argv[] = {"rmq-broker", "--flushDiskType=SYNC_FLUSH", "--storePathRootDir=/srv/rmq",
                    "--mappedFileSizeCommitLog=65536", "--syncFlushTimeout=250", NULL};
    char *bad[] = {"rmq-broker", "--flushDiskType=sync", NULL};
    char *small[] = {"rmq-broker", "--mappedFileSizeCommitLog=4096", NULL};
    char *big[] = {"rmq-broker", "--mappedFileSizeCommitLog=2147483648", NULL};
    char *largest[] = {"rmq-broker", "--mappedFileSizeCommitLog=2147479552", NULL};

    cr_assert_eq(rmq_config_parse_args(&s, &o, 5, argv, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(rmq_store_options_apply(&o, &cfg), 0);
    cr_assert_eq(cfg.flush_type, RMQ_FLUSH_SYNC);
    cr_assert_eq(cfg.seg_size, 65536);
    cr_assert_eq(cfg.sync_flush_timeout_ms, 250);
    rmq_store_options_commitlog_dir(&o, dir, sizeof(dir));
    cr_assert_str_eq(dir, "/srv/rmq/commitlog");
    cr_assert_eq(rmq_config_parse_args(&s, &o, 2, bad, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "flushDiskType"), "%s", err);
    cr_assert_eq(rmq_config_parse_args(&s, &o, 2, small, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "mappedFileSizeCommitLog"), "%s", err);
    /* lengths of writes and walks within a segment are 32-bit: under 2 GiB, as an int */
    cr_assert_eq(rmq_config_parse_args(&s, &o, 2, big, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "mappedFileSizeCommitLog"), "%s", err);
    cr_assert_eq(rmq_config_parse_args(&s, &o, 2, largest, err, sizeof(err)), 0, "%s", err);
}

Test(store_options, delete_when_hours)
{
    cr_assert_eq(rmq_store_delete_when_mask("04"), 1 << 4);
    cr_assert_eq(rmq_store_delete_when_mask("01;04;23"), (1 << 1) | (1 << 4) | (1 << 23));
    cr_assert_eq(rmq_store_delete_when_mask("24"), -1);
    cr_assert_eq(rmq_store_delete_when_mask("4"), -1);
    cr_assert_eq(rmq_store_delete_when_mask("04;"), -1);
    cr_assert_eq(rmq_store_delete_when_mask("04,05"), -1);
    cr_assert_eq(rmq_store_delete_when_mask(""), -1);
}

Test(store_options, commit_log_write_mode)
{
    struct rmq_config_spec s = store_spec();
    struct rmq_store_options o;
    char err[256];
    char *mm[] = {"rmq-broker", "--commitLogWriteMode=mmap", NULL};
    char *bad[] = {"rmq-broker", "--commitLogWriteMode=direct", NULL};

    cr_assert_eq(rmq_config_defaults(&s, &o, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(o.commitLogWriteMode, RMQ_DISK_WRITE_AUTO);
    /* auto copies small writes under ASYNC_FLUSH, writes through the ring under SYNC */
    cr_assert_eq(rmq_store_write_mode(o.commitLogWriteMode, RMQ_FLUSH_ASYNC), RMQ_DISK_WRITE_AUTO);
    cr_assert_eq(rmq_store_write_mode(o.commitLogWriteMode, RMQ_FLUSH_SYNC), RMQ_DISK_WRITE_WRITEV);
    cr_assert_eq(rmq_config_parse_args(&s, &o, 2, mm, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(o.commitLogWriteMode, RMQ_DISK_WRITE_MMAP);
    /* an explicit choice is kept under either flush type */
    cr_assert_eq(rmq_store_write_mode(o.commitLogWriteMode, RMQ_FLUSH_SYNC), RMQ_DISK_WRITE_MMAP);
    cr_assert_eq(rmq_config_parse_args(&s, &o, 2, bad, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "commitLogWriteMode"), "%s", err);
}
