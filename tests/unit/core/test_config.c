/*
 * core/config: every value type at and past its edges, file syntax and error lines,
 * argument precedence and rejection, and the --help table.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
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

/* print_help's type word for each of keys[] */
static const char *const type_words[] = {"int", "bool", "string", "one of ASYNC_FLUSH|SYNC_FLUSH"};

static char err[512];

/* A struct filled with a pattern no default produces, then set to defaults. */
static void
fresh(struct cfg *c)
{
    memset(c, 0xAB, sizeof(*c));
    cr_assert_eq(rmq_config_defaults(&spec, c, err, sizeof(err)), 0, "%s", err);
}

static int
set(struct cfg *c, const char *key, const char *value)
{
    err[0] = '\0';
    return rmq_config_set(&spec, c, key, value, err, sizeof(err));
}

/* Writes text to a new file under /tmp; path must hold "/tmp/rmq-config-XXXXXX". */
static void
temp_file(char *path, const char *text)
{
    int fd;
    FILE *f;

    strcpy(path, "/tmp/rmq-config-XXXXXX");
    fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    f = fdopen(fd, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, true);
    cr_assert_eq(fclose(f), 0);
}

static int
load(struct cfg *c, const char *path)
{
    err[0] = '\0';
    return rmq_config_load_file(&spec, c, path, err, sizeof(err));
}

static int
args(struct cfg *c, int argc, char **argv)
{
    err[0] = '\0';
    return rmq_config_parse_args(&spec, c, argc, argv, err, sizeof(err));
}

/* --- defaults ----------------------------------------------------------------------------- */

Test(config, defaults_set_every_field)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(c.listenPort, 10911);
    cr_assert(c.autoCreate);
    cr_assert_str_eq(c.brokerName, "broker-a");
    cr_assert_eq(c.flushDiskType, 0);
}

Test(config, defaults_that_do_not_parse_are_einval)
{
    static const struct rmq_config_key bad[] = {
        {"listenPort", RMQ_CONFIG_I64, offsetof(struct cfg, listenPort), 0, "0", 1, 65535, NULL,
         "remoting port"},
    };
    static const struct rmq_config_spec bad_spec = {"rmq-test", bad, 1};
    struct cfg c;

    cr_assert_eq(rmq_config_defaults(&bad_spec, &c, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "'listenPort'") && strstr(err, "minimum 1"), "%s", err);
}

/* --- keys --------------------------------------------------------------------------------- */

Test(config, unknown_key_is_enoent_and_named)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "listenPortt", "1"), -ENOENT);
    cr_assert(strstr(err, "unknown config key 'listenPortt'"), "%s", err);
}

Test(config, key_prefix_is_not_a_match)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "listen", "1"), -ENOENT);
    cr_assert_eq(set(&c, "", "1"), -ENOENT);
    cr_assert_eq(set(&c, "ListenPort", "1"), -ENOENT);     /* keys are case-sensitive */
}

Test(config, err_may_be_null_or_zero_length_or_short)
{
    struct cfg c;
    char small[8];

    fresh(&c);
    cr_assert_eq(rmq_config_set(&spec, &c, "nope", "1", NULL, 0), -ENOENT);
    small[0] = 'X';
    cr_assert_eq(rmq_config_set(&spec, &c, "nope", "1", small, 0), -ENOENT);
    cr_assert_eq(small[0], 'X');
    cr_assert_eq(rmq_config_set(&spec, &c, "listenPort", "x", small, sizeof(small)), -EINVAL);
    cr_assert_eq(strlen(small), sizeof(small) - 1);     /* cut, but terminated */
}

/* --- I64 ---------------------------------------------------------------------------------- */

Test(config, i64_valid_values)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "listenPort", "8080"), 0, "%s", err);
    cr_assert_eq(c.listenPort, 8080);
    cr_assert_eq(set(&c, "listenPort", "+9876"), 0, "%s", err);
    cr_assert_eq(c.listenPort, 9876);
    cr_assert_eq(set(&c, "listenPort", "000123"), 0, "%s", err);
    cr_assert_eq(c.listenPort, 123);
}

Test(config, i64_at_min_and_max)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "listenPort", "1"), 0, "%s", err);
    cr_assert_eq(c.listenPort, 1);
    cr_assert_eq(set(&c, "listenPort", "65535"), 0, "%s", err);
    cr_assert_eq(c.listenPort, 65535);
}

Test(config, i64_max_plus_one_is_rejected)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "listenPort", "65536"), -EINVAL);
    cr_assert_str_eq(err, "config key 'listenPort': '65536' is above the maximum 65535");
    cr_assert_eq(c.listenPort, 10911);          /* a failed set changes nothing */
}

Test(config, i64_min_minus_one_is_rejected)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "listenPort", "0"), -EINVAL);
    cr_assert_str_eq(err, "config key 'listenPort': '0' is below the minimum 1");
    cr_assert_eq(set(&c, "listenPort", "-1"), -EINVAL);
    cr_assert(strstr(err, "below the minimum 1"), "%s", err);
    cr_assert_eq(c.listenPort, 10911);
}

Test(config, i64_overflow_is_rejected_as_out_of_bounds)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "listenPort", "99999999999999999999"), -EINVAL);
    cr_assert(strstr(err, "'listenPort'") && strstr(err, "above the maximum 65535"), "%s", err);
    cr_assert_eq(set(&c, "listenPort", "-99999999999999999999"), -EINVAL);
    cr_assert(strstr(err, "below the minimum 1"), "%s", err);
    cr_assert_eq(c.listenPort, 10911);
}

Test(config, i64_full_range_edges)
{
    static const struct rmq_config_key wide[] = {
        {"v", RMQ_CONFIG_I64, 0, 0, "0", INT64_MIN, INT64_MAX, NULL, "any"},
    };
    static const struct rmq_config_spec wide_spec = {"rmq-test", wide, 1};
    int64_t v = 0;

    cr_assert_eq(rmq_config_set(&wide_spec, &v, "v", "9223372036854775807", err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(rmq_config_set(&wide_spec, &v, "v", "-9223372036854775808", err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(v, INT64_MIN);
    cr_assert_eq(rmq_config_set(&wide_spec, &v, "v", "9223372036854775808", err, sizeof(err)),
                 -EINVAL);
    cr_assert_eq(rmq_config_set(&wide_spec, &v, "v", "-9223372036854775809", err, sizeof(err)),
                 -EINVAL);
    cr_assert_eq(v, INT64_MIN);
}

Test(config, i64_rejects_junk)
{
    static const char *const junk[] = {
        "12x", "", "+", "-", " 12", "12 ", "0x10", "1e3", "1.5", "--1", "+-1", "１",
        "99999999999999999999x",
    };
    struct cfg c;

    fresh(&c);
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        cr_assert_eq(set(&c, "listenPort", junk[i]), -EINVAL, "'%s' accepted", junk[i]);
        cr_assert(strstr(err, "is not a whole number"), "'%s': %s", junk[i], err);
    }
    cr_assert_eq(c.listenPort, 10911);
}

/* --- BOOL --------------------------------------------------------------------------------- */

Test(config, bool_accepts_true_false_any_case_and_1_0)
{
    static const char *const yes[] = {"true", "TRUE", "True", "tRuE", "1"};
    static const char *const no[] = {"false", "FALSE", "False", "0"};
    struct cfg c;

    fresh(&c);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        c.autoCreate = true;
        cr_assert_eq(set(&c, "autoCreateTopicEnable", no[i]), 0, "%s: %s", no[i], err);
        cr_assert_not(c.autoCreate, "%s", no[i]);
    }
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        c.autoCreate = false;
        cr_assert_eq(set(&c, "autoCreateTopicEnable", yes[i]), 0, "%s: %s", yes[i], err);
        cr_assert(c.autoCreate, "%s", yes[i]);
    }
}

Test(config, bool_rejects_other_words)
{
    static const char *const bad[] = {"yes", "no", "on", "", "2", "01", "truex", " true"};
    struct cfg c;

    fresh(&c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(set(&c, "autoCreateTopicEnable", bad[i]), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert(strstr(err, "'autoCreateTopicEnable'"), "%s", err);
    }
    cr_assert(c.autoCreate);
}

/* --- STR ---------------------------------------------------------------------------------- */

Test(config, str_exactly_fitting_is_kept)
{
    struct cfg c;

    fresh(&c);
    /* 15 characters and the NUL fill the 16-byte field */
    cr_assert_eq(set(&c, "brokerName", "abcdefghijklmno"), 0, "%s", err);
    cr_assert_str_eq(c.brokerName, "abcdefghijklmno");
    cr_assert_eq(set(&c, "brokerName", ""), 0, "%s", err);
    cr_assert_str_eq(c.brokerName, "");
}

Test(config, str_one_byte_too_long_is_rejected)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "brokerName", "abcdefghijklmnop"), -EINVAL);
    cr_assert(strstr(err, "'brokerName'") && strstr(err, "16 bytes") && strstr(err, "15"), "%s",
              err);
    cr_assert_str_eq(c.brokerName, "broker-a");
}

/* --- ENUM --------------------------------------------------------------------------------- */

Test(config, enum_stores_the_index)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(set(&c, "flushDiskType", "SYNC_FLUSH"), 0, "%s", err);
    cr_assert_eq(c.flushDiskType, 1);
    cr_assert_eq(set(&c, "flushDiskType", "ASYNC_FLUSH"), 0, "%s", err);
    cr_assert_eq(c.flushDiskType, 0);
}

Test(config, enum_rejects_other_values_and_lists_choices)
{
    static const char *const bad[] = {"sync_flush", "SYNC", "", "SYNC_FLUSH ", "2"};
    struct cfg c;

    fresh(&c);
    c.flushDiskType = 1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(set(&c, "flushDiskType", bad[i]), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert(strstr(err, "'flushDiskType'") && strstr(err, "ASYNC_FLUSH, SYNC_FLUSH"), "%s",
                  err);
    }
    cr_assert_eq(c.flushDiskType, 1);
}

/* --- files -------------------------------------------------------------------------------- */

Test(config, file_comments_blanks_crlf_and_whitespace)
{
    char path[32];
    struct cfg c;

    temp_file(path, "# comment\n"
                    "   ! also a comment = with equals\n"
                    "\n"
                    "   \t  \n"
                    "\r\n"
                    "  listenPort \t=  30000 \r\n"
                    "autoCreateTopicEnable=false\r\n"
                    "\tbrokerName = a=b \n"
                    "#flushDiskType=nonsense\n"
                    "flushDiskType=SYNC_FLUSH");      /* no newline at the end */
    fresh(&c);
    cr_assert_eq(load(&c, path), 0, "%s", err);
    cr_assert_eq(c.listenPort, 30000);
    cr_assert_not(c.autoCreate);
    cr_assert_str_eq(c.brokerName, "a=b");             /* split at the first '=' only */
    cr_assert_eq(c.flushDiskType, 1);
    unlink(path);
}

Test(config, file_empty_changes_nothing)
{
    char path[32];
    struct cfg c;

    temp_file(path, "");
    fresh(&c);
    cr_assert_eq(load(&c, path), 0, "%s", err);
    cr_assert_eq(c.listenPort, 10911);
    unlink(path);
}

Test(config, file_line_without_equals_names_path_and_line)
{
    char path[32];
    char want[64];
    struct cfg c;

    temp_file(path, "# header\nlistenPort=1\n\nno equals sign here\nbrokerName=x\n");
    fresh(&c);
    cr_assert_eq(load(&c, path), -EINVAL);
    snprintf(want, sizeof(want), "%s:4:", path);
    cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
    cr_assert(strstr(err, "no equals sign here"), "%s", err);
    cr_assert_str_eq(c.brokerName, "broker-a");        /* stopped at the bad line */
    unlink(path);
}

Test(config, file_bad_value_names_line_and_key)
{
    char path[32];
    char want[128];
    struct cfg c;

    temp_file(path, "listenPort=1\r\nlistenPort=70000\r\n");
    fresh(&c);
    cr_assert_eq(load(&c, path), -EINVAL);
    snprintf(want, sizeof(want),
             "%s:2: config key 'listenPort': '70000' is above the maximum 65535", path);
    cr_assert_str_eq(err, want);
    unlink(path);
}

Test(config, file_unknown_key_is_enoent_with_line)
{
    char path[32];
    struct cfg c;

    temp_file(path, "listenPort=1\n\nbogusKey = 3\n");
    fresh(&c);
    cr_assert_eq(load(&c, path), -ENOENT);
    cr_assert(strstr(err, ":3: ") && strstr(err, "'bogusKey'"), "%s", err);
    unlink(path);
}

Test(config, file_empty_key_is_einval)
{
    char path[32];
    struct cfg c;

    temp_file(path, "  = 5\n");
    fresh(&c);
    cr_assert_eq(load(&c, path), -EINVAL);
    cr_assert(strstr(err, ":1:"), "%s", err);
    unlink(path);
}

Test(config, file_long_lines)
{
    size_t n = 100000;
    char *text = malloc(2 * n + 64);
    char path[32];
    struct cfg c;
    size_t off;

    cr_assert_not_null(text);
    /* a long comment, then a long value that must be rejected for its length */
    text[0] = '#';
    memset(text + 1, 'c', n);
    off = n + 1;
    off += (size_t)sprintf(text + off, "\nlistenPort=2\nbrokerName=");
    memset(text + off, 'v', n);
    strcpy(text + off + n, "\n");
    temp_file(path, text);
    fresh(&c);
    cr_assert_eq(load(&c, path), -EINVAL);
    cr_assert(strstr(err, ":3: ") && strstr(err, "'brokerName'"), "%s", err);
    cr_assert_eq(c.listenPort, 2);
    free(text);
    unlink(path);
}

Test(config, file_missing_is_enoent)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(load(&c, "/tmp/rmq-config-does-not-exist/x.conf"), -ENOENT);
    cr_assert(strstr(err, "/tmp/rmq-config-does-not-exist/x.conf"), "%s", err);
}

Test(config, file_read_error_is_errno)
{
    struct cfg c;

    fresh(&c);
    cr_assert_eq(load(&c, "/tmp"), -EISDIR, "%s", err);
    cr_assert(strstr(err, "/tmp"), "%s", err);
}

/* --- arguments ---------------------------------------------------------------------------- */

Test(config, args_none_gives_defaults)
{
    char *argv[] = {"prog", NULL};
    struct cfg c;

    memset(&c, 0xAB, sizeof(c));
    cr_assert_eq(args(&c, 1, argv), 0, "%s", err);
    cr_assert_eq(c.listenPort, 10911);
    cr_assert_str_eq(c.brokerName, "broker-a");
}

Test(config, args_set_each_type)
{
    char *argv[] = {"prog", "--listenPort=20000", "--autoCreateTopicEnable=false",
                    "--brokerName=b=c", "--flushDiskType=SYNC_FLUSH", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 5, argv), 0, "%s", err);
    cr_assert_eq(c.listenPort, 20000);
    cr_assert_not(c.autoCreate);
    cr_assert_str_eq(c.brokerName, "b=c");
    cr_assert_eq(c.flushDiskType, 1);
}

Test(config, args_later_key_wins_and_empty_value_allowed)
{
    char *argv[] = {"prog", "--listenPort=1", "--listenPort=2", "--brokerName=", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 4, argv), 0, "%s", err);
    cr_assert_eq(c.listenPort, 2);
    cr_assert_str_eq(c.brokerName, "");
}

Test(config, args_override_file_when_config_comes_last)
{
    char path[32];
    char opt[64];
    char *argv[] = {"prog", "--listenPort=20000", opt, NULL};
    struct cfg c;

    temp_file(path, "listenPort=30000\nbrokerName=broker-b\n");
    snprintf(opt, sizeof(opt), "--config=%s", path);
    cr_assert_eq(args(&c, 3, argv), 0, "%s", err);
    cr_assert_eq(c.listenPort, 20000);
    cr_assert_str_eq(c.brokerName, "broker-b");
    unlink(path);
}

Test(config, args_override_file_when_config_comes_first)
{
    char path[32];
    char *argv[] = {"prog", "-c", path, "--listenPort=20000", NULL};
    struct cfg c;

    temp_file(path, "listenPort=30000\nflushDiskType=SYNC_FLUSH\n");
    cr_assert_eq(args(&c, 4, argv), 0, "%s", err);
    cr_assert_eq(c.listenPort, 20000);
    cr_assert_eq(c.flushDiskType, 1);
    unlink(path);
}

Test(config, args_config_with_the_file_as_next_argument)
{
    char path[32];
    char *argv[] = {"prog", "--config", path, "--listenPort=20000", NULL};
    char *missing[] = {"prog", "--config", NULL};
    struct cfg c;

    temp_file(path, "listenPort=30000\nflushDiskType=SYNC_FLUSH\n");
    cr_assert_eq(args(&c, 4, argv), 0, "%s", err);
    cr_assert_eq(c.listenPort, 20000);
    cr_assert_eq(c.flushDiskType, 1);
    unlink(path);
    cr_assert_eq(args(&c, 2, missing), -EINVAL);
    cr_assert(strstr(err, "'--config' needs a file name"), "%s", err);
}

Test(config, args_positional_is_rejected_and_named)
{
    char *argv[] = {"prog", "--listenPort=2", "listenPort=1", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 3, argv), -EINVAL);
    cr_assert(strstr(err, "'listenPort=1'"), "%s", err);
}

Test(config, args_key_without_value_is_rejected)
{
    char *argv[] = {"prog", "--listenPort", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 2, argv), -EINVAL);
    cr_assert(strstr(err, "'--listenPort'"), "%s", err);
}

Test(config, args_other_single_dash_and_bare_dashes_are_rejected)
{
    static const char *const bad[] = {"-x", "-cfile", "-", "--", "--=1", "-listenPort=1"};
    struct cfg c;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"prog", (char *)bad[i], NULL};

        cr_assert_eq(args(&c, 2, argv), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert(strstr(err, bad[i]), "%s", err);
    }
}

Test(config, args_unknown_key_is_enoent)
{
    char *argv[] = {"prog", "--nope=1", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 2, argv), -ENOENT);
    cr_assert(strstr(err, "'nope'"), "%s", err);
}

Test(config, args_bad_value_is_einval)
{
    char *argv[] = {"prog", "--listenPort=70000", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 2, argv), -EINVAL);
    cr_assert(strstr(err, "'listenPort'") && strstr(err, "maximum 65535"), "%s", err);
}

Test(config, args_missing_config_file_is_enoent)
{
    char *argv[] = {"prog", "--config=/tmp/rmq-config-does-not-exist/x.conf", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 2, argv), -ENOENT);
    cr_assert(strstr(err, "/tmp/rmq-config-does-not-exist/x.conf"), "%s", err);
}

Test(config, args_c_without_file_is_rejected)
{
    char *argv[] = {"prog", "--listenPort=2", "-c", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 3, argv), -EINVAL);
    cr_assert(strstr(err, "'-c'"), "%s", err);
}

Test(config, args_config_twice_is_rejected)
{
    char *argv[] = {"prog", "--config=/tmp/a.conf", "-c", "/tmp/b.conf", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 4, argv), -EINVAL);
    cr_assert(strstr(err, "/tmp/a.conf") && strstr(err, "/tmp/b.conf"), "%s", err);
}

Test(config, args_help_is_skipped)
{
    char *argv[] = {"prog", "--help", "--listenPort=3", "-h", NULL};
    struct cfg c;

    cr_assert_eq(args(&c, 4, argv), 0, "%s", err);
    cr_assert_eq(c.listenPort, 3);
}

Test(config, wants_help)
{
    char *long_form[] = {"prog", "--listenPort=1", "--help", NULL};
    char *short_form[] = {"prog", "-h", NULL};
    char *none[] = {"prog", "--listenPort=1", "--helpme", "-help", NULL};
    char *prog_only[] = {"--help", NULL};

    cr_assert(rmq_config_wants_help(3, long_form));
    cr_assert(rmq_config_wants_help(2, short_form));
    cr_assert_not(rmq_config_wants_help(4, none));
    cr_assert_not(rmq_config_wants_help(1, prog_only));    /* argv[0] is the program */
}

/* --- help --------------------------------------------------------------------------------- */

static char *
help_text(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    cr_assert_not_null(f);
    rmq_config_print_help(&spec, f);
    cr_assert_eq(fclose(f), 0);
    return text;
}

Test(config, help_lists_every_key_type_and_default)
{
    static const char usage[] = "usage: rmq-test [--config=FILE] [--key=value ...]\n";
    char *text = help_text();

    cr_assert(strncmp(text, usage, strlen(usage)) == 0, "%s", text);
    for (size_t i = 0; i < spec.key_count; i++) {
        const char *line = strstr(text, keys[i].name);

        cr_assert_not_null(line, "%s missing:\n%s", keys[i].name, text);
        cr_assert(strstr(line, type_words[i]), "type of %s missing:\n%s", keys[i].name, text);
        cr_assert(strstr(line, keys[i].def), "default of %s missing:\n%s", keys[i].name, text);
        cr_assert(strstr(line, keys[i].help), "help of %s missing:\n%s", keys[i].name, text);
    }
    free(text);
}

Test(config, help_columns_are_aligned)
{
    char *text = help_text();
    char *save = NULL;
    long col[4] = {-1, -1, -1, -1};         /* type, default and help columns, line width */
    size_t lines = 0;

    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        const struct rmq_config_key *k = NULL;
        const char *type = NULL;
        long at[3];

        for (size_t i = 0; i < spec.key_count; i++) {
            if (strncmp(line + 2, keys[i].name, strlen(keys[i].name)) == 0) {
                k = &keys[i];
                type = type_words[i];
            }
        }
        if (k == NULL) {
            continue;
        }
        lines++;
        /* the type word starts after the padded name, the help after the padded default */
        at[0] = (long)strspn(line + 2 + strlen(k->name), " ") + 2 + (long)strlen(k->name);
        cr_assert(strncmp(line + at[0], type, strlen(type)) == 0, "'%s'", line);
        /* search past the type word: the enum's default also appears in it */
        at[1] = (long)(strstr(line + at[0] + strlen(type), k->def) - line);
        at[2] = (long)(strstr(line, k->help) - line);
        for (int j = 0; j < 3; j++) {
            if (col[j] < 0) {
                col[j] = at[j];
            }
            cr_assert_eq(at[j], col[j], "column %d of '%s' misaligned", j, line);
        }
        cr_assert_neq(line[strlen(line) - 1], ' ', "trailing blank in '%s'", line);
    }
    cr_assert_eq(lines, spec.key_count);
    free(text);
}
