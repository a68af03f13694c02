/*
 * Configuration keys bound to struct fields; see config.h. Parsing is strict: a
 * typo in a key or value stops the daemon at start with a line that names it,
 * rather than running with a default the operator did not mean.
 */
#include "core/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void
errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const struct rmq_config_key *
find_key(const struct rmq_config_spec *spec, const char *name, size_t len)
{
    for (size_t i = 0; i < spec->key_count; i++) {
        if (strlen(spec->keys[i].name) == len && memcmp(spec->keys[i].name, name, len) == 0) {
            return &spec->keys[i];
        }
    }
    return NULL;
}

static int
parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (*s == '\0') {
        return -EINVAL;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int
set_value(const struct rmq_config_key *k, void *target, const char *value, char *err,
          size_t errlen)
{
    char *field = (char *)target + k->offset;
    int64_t v;

    switch (k->type) {
    case RMQ_CONFIG_I64:
        if (parse_i64(value, &v) < 0) {
            errf(err, errlen, "config key '%s': '%s' is not a whole number", k->name, value);
            return -EINVAL;
        }
        if (v < k->min) {
            errf(err, errlen, "config key '%s': '%s' is below the minimum %" PRId64, k->name,
                 value, k->min);
            return -EINVAL;
        }
        if (v > k->max) {
            errf(err, errlen, "config key '%s': '%s' is above the maximum %" PRId64, k->name,
                 value, k->max);
            return -EINVAL;
        }
        memcpy(field, &v, sizeof(v));
        return 0;
    case RMQ_CONFIG_BOOL: {
        bool b;

        if (strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0) {
            b = true;
        } else if (strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0) {
            b = false;
        } else {
            errf(err, errlen, "config key '%s': '%s' is not true or false", k->name, value);
            return -EINVAL;
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    case RMQ_CONFIG_STR: {
        size_t len = strlen(value);

        if (len + 1 > k->str_size) {
            errf(err, errlen, "config key '%s': value is %zu bytes, at most %zu allowed",
                 k->name, len, k->str_size - 1);
            return -EINVAL;
        }
        memcpy(field, value, len + 1);
        return 0;
    }
    case RMQ_CONFIG_ENUM:
        for (int i = 0; k->choices != NULL && k->choices[i] != NULL; i++) {
            if (strcmp(k->choices[i], value) == 0) {
                memcpy(field, &i, sizeof(i));
                return 0;
            }
        }
        errf(err, errlen, "config key '%s': '%s' is not one of the allowed values", k->name,
             value);
        return -EINVAL;
    }
    errf(err, errlen, "config key '%s': unknown type", k->name);
    return -EINVAL;
}

int
rmq_config_defaults(const struct rmq_config_spec *spec, void *target, char *err, size_t errlen)
{
    for (size_t i = 0; i < spec->key_count; i++) {
        int ret = set_value(&spec->keys[i], target, spec->keys[i].def, err, errlen);

        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

int
rmq_config_set(const struct rmq_config_spec *spec, void *target, const char *key,
               const char *value, char *err, size_t errlen)
{
    const struct rmq_config_key *k = find_key(spec, key, strlen(key));

    if (k == NULL) {
        errf(err, errlen, "unknown config key '%s' (--help lists them)", key);
        return -ENOENT;
    }
    return set_value(k, target, value, err, errlen);
}

static char *
trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n')) {
        *--end = '\0';
    }
    return s;
}

int
rmq_config_load_file(const struct rmq_config_spec *spec, void *target, const char *path,
                     char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    int ret = 0;

    if (f == NULL) {
        ret = -errno;
        errf(err, errlen, "config file %s: %s", path, strerror(errno));
        return ret;
    }
    while (getline(&line, &cap, f) >= 0) {
        char *s = trim(line);
        char *eq;
        char msg[256];

        lineno++;
        if (*s == '\0' || *s == '#' || *s == '!') {
            continue;
        }
        eq = strchr(s, '=');
        if (eq == NULL) {
            errf(err, errlen, "%s:%d: expected key=value", path, lineno);
            ret = -EINVAL;
            break;
        }
        *eq = '\0';
        ret = rmq_config_set(spec, target, trim(s), trim(eq + 1), msg, sizeof(msg));
        if (ret < 0) {
            errf(err, errlen, "%s:%d: %s", path, lineno, msg);
            break;
        }
    }
    if (ret == 0 && ferror(f)) {
        ret = -EIO;
        errf(err, errlen, "config file %s: read error", path);
    }
    free(line);
    fclose(f);
    return ret;
}

int
rmq_config_parse_args(const struct rmq_config_spec *spec, void *target, int argc, char **argv,
                      char *err, size_t errlen)
{
    const char *file = NULL;
    int ret = rmq_config_defaults(spec, target, err, errlen);

    if (ret < 0) {
        return ret;
    }
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 == argc) {
                errf(err, errlen, "-c needs a file name");
                return -EINVAL;
            }
            file = argv[++i];
        }
    }
    if (file != NULL && (ret = rmq_config_load_file(spec, target, file, err, errlen)) < 0) {
        return ret;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq;
        char key[128];

        if (strcmp(a, "-c") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0 || strcmp(a, "--help") == 0 ||
            strcmp(a, "-h") == 0) {
            continue;
        }
        eq = strchr(a, '=');
        if (strncmp(a, "--", 2) != 0 || eq == NULL || eq == a + 2 ||
            (size_t)(eq - a - 2) >= sizeof(key)) {
            errf(err, errlen, "unexpected argument '%s' (options are --key=value)", a);
            return -EINVAL;
        }
        memcpy(key, a + 2, (size_t)(eq - a - 2));
        key[eq - a - 2] = '\0';
        ret = rmq_config_set(spec, target, key, eq + 1, err, errlen);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

bool
rmq_config_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return true;
        }
    }
    return false;
}

void
rmq_config_print_help(const struct rmq_config_spec *spec, FILE *out)
{
    size_t width = 4;

    for (size_t i = 0; i < spec->key_count; i++) {
        size_t n = strlen(spec->keys[i].name);

        width = n > width ? n : width;
    }
    fprintf(out, "usage: %s [--config=FILE] [--key=value ...]\n\n", spec->program);
    fprintf(out, "  %-*s  %-8s  %-16s  %s\n", (int)width, "key", "type", "default", "meaning");
    for (size_t i = 0; i < spec->key_count; i++) {
        const struct rmq_config_key *k = &spec->keys[i];
        const char *type = k->type == RMQ_CONFIG_I64    ? "int"
                           : k->type == RMQ_CONFIG_BOOL ? "bool"
                           : k->type == RMQ_CONFIG_STR  ? "string"
                                                        : "enum";

        fprintf(out, "  %-*s  %-8s  %-16s  %s", (int)width, k->name, type, k->def, k->help);
        if (k->type == RMQ_CONFIG_ENUM && k->choices != NULL) {
            fprintf(out, " (");
            for (int c = 0; k->choices[c] != NULL; c++) {
                fprintf(out, "%s%s", c ? "|" : "", k->choices[c]);
            }
            fprintf(out, ")");
        }
        fprintf(out, "\n");
    }
}
