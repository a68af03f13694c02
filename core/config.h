/*
 * Configuration: a table of keys (RocketMQ broker.conf names where one exists), each
 * with a type, a default, bounds and help text, bound to a field of a caller struct.
 *
 * Precedence, lowest first: defaults, the file named by --config=FILE (or --config FILE,
 * -c FILE),
 * then --key=value arguments. File syntax: one key=value per line, '#' or '!' starts a
 * comment line, blank lines ignored, whitespace around key and value trimmed
 * (java.util.Properties-compatible for what broker.conf files use). An unknown key,
 * a value of the wrong type or out of bounds is an error that names the key and,
 * for a file, the line.
 */
#ifndef RMQ_CORE_CONFIG_H
#define RMQ_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum rmq_config_type {
    RMQ_CONFIG_I64,         /* int64_t field; decimal, optional sign */
    RMQ_CONFIG_BOOL,        /* bool field; true/false (case-insensitive), also 1/0 */
    RMQ_CONFIG_STR,         /* char[str_size] field; too long is an error */
    RMQ_CONFIG_ENUM,        /* int field holding the index into choices[] */
};

struct rmq_config_key {
    const char *name;               /* e.g. "listenPort" */
    enum rmq_config_type type;
    size_t offset;                  /* offsetof(target struct, field) */
    size_t str_size;                /* RMQ_CONFIG_STR: sizeof the char array */
    const char *def;                /* default, as text (parsed like any value) */
    int64_t min, max;               /* RMQ_CONFIG_I64 bounds, inclusive */
    const char *const *choices;     /* RMQ_CONFIG_ENUM: NULL-terminated names */
    const char *help;               /* one line */
};

struct rmq_config_spec {
    const char *program;            /* for --help */
    const struct rmq_config_key *keys;
    size_t key_count;
};

/* Set every key to its default. -EINVAL if a default does not parse (a bug). */
int rmq_config_defaults(const struct rmq_config_spec *spec, void *target, char *err, size_t errlen);

/* Set one key from text. -ENOENT: unknown key; -EINVAL: bad value; err says which. */
int rmq_config_set(const struct rmq_config_spec *spec, void *target, const char *key,
                   const char *value, char *err, size_t errlen);

/* Apply a key=value file. -errno from opening/reading, or as rmq_config_set (err names line). */
int rmq_config_load_file(const struct rmq_config_spec *spec, void *target, const char *path,
                         char *err, size_t errlen);

/*
 * Defaults, then --config=FILE / -c FILE, then every --key=value, in that order.
 * Arguments that are not options (no leading '-') are an error, so are --key without
 * '=value' (except --help, which is skipped here: test rmq_config_wants_help first).
 */
int rmq_config_parse_args(const struct rmq_config_spec *spec, void *target, int argc,
                          char **argv, char *err, size_t errlen);

bool rmq_config_wants_help(int argc, char **argv);

/* Every key with its type, default and help, one per line. */
void rmq_config_print_help(const struct rmq_config_spec *spec, FILE *out);

#endif
