#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

struct cfg {
    int64_t listenPort;
    bool autoCreate;
    char brokerName[16];
    int flushDiskType;
};

static const char *const flush_types[] = {"ASYNC_FLUSH", "SYNC_FLUSH", NULL};

static const struct rmq_config_key keys[] = {
    {"listenPort", RMQ_CONFIG_I64, offsetof(struct cfg, listenPort), 0, "10911", 1, 65535, NULL,
     "remoting port"},
    {"autoCreateTopicEnable", RMQ_CONFIG_BOOL, offsetof(struct cfg, autoCreate), 0, "true", 0, 0,
     NULL, "create topics on first send"},
    {"brokerName", RMQ_CONFIG_STR, offsetof(struct cfg, brokerName),
     sizeof(((struct cfg *)0)->brokerName), "broker-a", 0, 0, NULL, "broker name"},
    {"flushDiskType", RMQ_CONFIG_ENUM, offsetof(struct cfg, flushDiskType), 0, "ASYNC_FLUSH", 0,
     0, flush_types, "when a send is acknowledged"},
};

static const struct rmq_config_spec spec = {"rmq-test", keys, sizeof(keys) / sizeof(keys[0])};

static char err[256];

Test(config, defaults)
{
    struct cfg c;

    memset(&c, 0xAB, sizeof(c));
    cr_assert_eq(rmq_config_defaults(&spec, &c, err, sizeof(err)), 0);
    cr_assert_eq(c.listenPort, 10911);
    cr_assert(c.autoCreate);
    cr_assert_str_eq(c.brokerName, "broker-a");
    cr_assert_eq(c.flushDiskType, 0);
}

Test(config, unknown_key_is_named)
{
    struct cfg c;

    cr_assert_eq(rmq_config_set(&spec, &c, "listenPortt", "1", err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, "'listenPortt'"), "%s", err);
}

Test(config, int_bounds_and_junk)
{
    struct cfg c;

    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "1", err, sizeof(err)), 0);
    cr_assert_eq(c.listenPort, 1);
    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "65535", err, sizeof(err)), 0);
    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "65536", err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "maximum 65535"), "%s", err);
    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "0", err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "minimum 1"), "%s", err);
    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "12x", err, sizeof(err)), -EINVAL);
    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "", err, sizeof(err)), -EINVAL);
    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "99999999999999999999", err,
                                sizeof(err)), -EINVAL);
    cr_assert_eq(c.listenPort, 65535);      /* failed sets change nothing */
}

Test(config, bool_enum_and_string)
{
    struct cfg c;

    cr_assert_eq(rmq_config_set(&spec, &c, "autoCreateTopicEnable", "FALSE", err, sizeof(err)),
                 0);
    cr_assert_not(c.autoCreate);
    cr_assert_eq(rmq_config_set(&spec, &c, "autoCreateTopicEnable", "1", err, sizeof(err)), 0);
    cr_assert(c.autoCreate);
    cr_assert_eq(rmq_config_set(&spec, &c, "autoCreateTopicEnable", "yes", err, sizeof(err)),
                 -EINVAL);
    cr_assert_eq(rmq_config_set(&spec, &c, "flushDiskType", "SYNC_FLUSH", err, sizeof(err)), 0);
    cr_assert_eq(c.flushDiskType, 1);
    cr_assert_eq(rmq_config_set(&spec, &c, "flushDiskType", "sync", err, sizeof(err)), -EINVAL);
    /* 15 characters fit a 16-byte field, 16 do not */
    cr_assert_eq(rmq_config_set(&spec, &c, "brokerName", "abcdefghijklmno", err, sizeof(err)),
                 0);
    cr_assert_str_eq(c.brokerName, "abcdefghijklmno");
    cr_assert_eq(rmq_config_set(&spec, &c, "brokerName", "abcdefghijklmnop", err, sizeof(err)),
                 -EINVAL);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    fputs(text, f);
    fclose(f);
}

Test(config, file_syntax_and_precedence)
{
    char path[] = "/tmp/rmq-config-XXXXXX";
    int fd = mkstemp(path);
    struct cfg c;
    char arg_cfg[64];
    char *argv[] = {"prog", "--listenPort=20000", arg_cfg, NULL};

    close(fd);
    write_file(path, "# comment\n! also a comment\n\n  listenPort = 30000 \r\n"
                     "brokerName=broker-b\nflushDiskType=SYNC_FLUSH\n");
    snprintf(arg_cfg, sizeof(arg_cfg), "--config=%s", path);
    /* the file is applied before every --key=value, wherever --config stands */
    cr_assert_eq(rmq_config_parse_args(&spec, &c, 3, argv, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.listenPort, 20000);
    cr_assert_str_eq(c.brokerName, "broker-b");
    cr_assert_eq(c.flushDiskType, 1);
    unlink(path);
}

Test(config, file_errors_name_the_line)
{
    char path[] = "/tmp/rmq-config-XXXXXX";
    int fd = mkstemp(path);
    struct cfg c;

    close(fd);
    write_file(path, "listenPort=1\nno equals sign here\n");
    cr_assert_eq(rmq_config_load_file(&spec, &c, path, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, ":2:"), "%s", err);
    write_file(path, "listenPort=1\n\nbogusKey=3\n");
    cr_assert_eq(rmq_config_load_file(&spec, &c, path, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, ":3:") && strstr(err, "'bogusKey'"), "%s", err);
    unlink(path);
    cr_assert_eq(rmq_config_load_file(&spec, &c, path, err, sizeof(err)), -ENOENT);
}

Test(config, bad_arguments)
{
    struct cfg c;
    char *positional[] = {"prog", "listenPort=1", NULL};
    char *no_value[] = {"prog", "--listenPort", NULL};
    char *unknown[] = {"prog", "--nope=1", NULL};
    char *help[] = {"prog", "--help", NULL};

    cr_assert_eq(rmq_config_parse_args(&spec, &c, 2, positional, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "listenPort=1"), "%s", err);
    cr_assert_eq(rmq_config_parse_args(&spec, &c, 2, no_value, err, sizeof(err)), -EINVAL);
    cr_assert_eq(rmq_config_parse_args(&spec, &c, 2, unknown, err, sizeof(err)), -ENOENT);
    cr_assert(rmq_config_wants_help(2, help));
    cr_assert_not(rmq_config_wants_help(2, unknown));
    cr_assert_eq(rmq_config_parse_args(&spec, &c, 2, help, err, sizeof(err)), 0);
}

Test(config, help_lists_every_key_with_default)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    rmq_config_print_help(&spec, f);
    fclose(f);
    for (size_t i = 0; i < spec.key_count; i++) {
        cr_assert(strstr(text, keys[i].name), "%s missing", keys[i].name);
        cr_assert(strstr(text, keys[i].def), "default of %s missing", keys[i].name);
    }
    cr_assert(strstr(text, "ASYNC_FLUSH|SYNC_FLUSH"));
    free(text);
}
