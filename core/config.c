/*
 * Configuration: owns the parsing of text (defaults, a key=value file, --key=value
 * arguments) into the fields of a caller struct described by a key table; see config.h.
 * It owns no memory past a call: every value is parsed and copied into the caller's
 * struct, so the struct can be used after the file and argv are gone.
 *
 * Parsing is strict on purpose: a typo in a key or value stops the daemon at start with
 * one sentence naming the key (and for a file, path:line), rather than running with a
 * default the operator did not mean. A failed set leaves the field as it was.
 *
 * libc only, and no RMQ_ASSERT: core/config is linked into tools and tests that do not
 * carry the rest of core.
 */
#include "core/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

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

/* Properties' whitespace plus CR/LF; not isspace(), which depends on the locale. */
static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r' || c == '\n';
}

static char *
trim(char *s)
{
    char *end;

    while (is_space(*s)) {
        s++;
    }
    end = s + strlen(s);
    while (end > s && is_space(end[-1])) {
        *--end = '\0';
    }
    return s;
}

static const struct rmq_config_key *
find_key(const struct rmq_config_spec *spec, const char *name, size_t len)
{
    for (size_t i = 0; i < spec->key_count; i++) {
        const char *k = spec->keys[i].name;

        if (strncmp(k, name, len) == 0 && k[len] == '\0') {
            return &spec->keys[i];
        }
    }
    return NULL;
}

/*
 * Decimal with an optional sign and nothing else: strtoll would also take leading
 * whitespace and "0x" under base 0, and signals overflow through errno. Returns
 * -ERANGE with *out clamped to INT64_MIN/INT64_MAX, so the caller can report the
 * overflow as beyond the key's bounds, which it is.
 */
static int
parse_i64(const char *s, int64_t *out)
{
    bool neg = false;
    uint64_t limit;
    uint64_t mag = 0;

    if (*s == '+' || *s == '-') {
        neg = *s == '-';
        s++;
    }
    if (*s == '\0') {
        return -EINVAL;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; *s != '\0'; s++) {
        unsigned d;

        if (*s < '0' || *s > '9') {
            return -EINVAL;
        }
        d = (unsigned)(*s - '0');
        if (mag > (limit - d) / 10) {
            /* keep scanning: "99999999999999999999x" is junk, not overflow */
            while (*s >= '0' && *s <= '9') {
                s++;
            }
            if (*s != '\0') {
                return -EINVAL;
            }
            *out = neg ? INT64_MIN : INT64_MAX;
            return -ERANGE;
        }
        mag = mag * 10 + d;
    }
    if (neg) {
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        *out = (int64_t)mag;
    }
    return 0;
}

static int
set_i64(const struct rmq_config_key *k, char *field, const char *value, char *err,
        size_t errlen)
{
    int64_t v = 0;
    int ret = parse_i64(value, &v);

    if (ret == -EINVAL) {
        errf(err, errlen, "config key '%s': '%s' is not a whole number", k->name, value);
        return -EINVAL;
    }
    if (v < k->min || (ret == -ERANGE && v == INT64_MIN)) {
        errf(err, errlen, "config key '%s': '%s' is below the minimum %" PRId64, k->name, value,
             k->min);
        return -EINVAL;
    }
    if (v > k->max || ret == -ERANGE) {
        errf(err, errlen, "config key '%s': '%s' is above the maximum %" PRId64, k->name, value,
             k->max);
        return -EINVAL;
    }
    memcpy(field, &v, sizeof(v));
    return 0;
}

static int
set_bool(const struct rmq_config_key *k, char *field, const char *value, char *err,
         size_t errlen)
{
    bool b;

    if (strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0) {
        b = true;
    } else if (strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0) {
        b = false;
    } else {
        errf(err, errlen, "config key '%s': '%s' is not true, false, 1 or 0", k->name, value);
        return -EINVAL;
    }
    memcpy(field, &b, sizeof(b));
    return 0;
}

static int
set_str(const struct rmq_config_key *k, char *field, const char *value, char *err,
        size_t errlen)
{
    size_t len = strlen(value);

    if (k->str_size == 0 || len > k->str_size - 1) {
        errf(err, errlen, "config key '%s': value is %zu bytes long, the limit is %zu", k->name,
             len, k->str_size > 0 ? k->str_size - 1 : 0);
        return -EINVAL;
    }
    memcpy(field, value, len + 1);
    return 0;
}

static int
set_enum(const struct rmq_config_key *k, char *field, const char *value, char *err,
         size_t errlen)
{
    char allowed[256];
    size_t used = 0;

    for (int i = 0; k->choices != NULL && k->choices[i] != NULL; i++) {
        if (strcmp(k->choices[i], value) == 0) {
            memcpy(field, &i, sizeof(i));
            return 0;
        }
    }
    /* list the choices, so the operator need not look them up */
    allowed[0] = '\0';
    for (int i = 0; k->choices != NULL && k->choices[i] != NULL && used < sizeof(allowed); i++) {
        int n = snprintf(allowed + used, sizeof(allowed) - used, "%s%s", i > 0 ? ", " : "",
                         k->choices[i]);

        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
    errf(err, errlen, "config key '%s': '%s' is not one of %s", k->name, value, allowed);
    return -EINVAL;
}

static int
set_value(const struct rmq_config_key *k, void *target, const char *value, char *err,
          size_t errlen)
{
    char *field = (char *)target + k->offset;

    switch (k->type) {
    case RMQ_CONFIG_I64:
        return set_i64(k, field, value, err, errlen);
    case RMQ_CONFIG_BOOL:
        return set_bool(k, field, value, err, errlen);
    case RMQ_CONFIG_STR:
        return set_str(k, field, value, err, errlen);
    case RMQ_CONFIG_ENUM:
        return set_enum(k, field, value, err, errlen);
    }
    errf(err, errlen, "config key '%s': unknown type %d", k->name, (int)k->type);
    return -EINVAL;
}

/* rmq_config_set with a key that need not be NUL-terminated (an argv "--key=value"). */
static int
set_key(const struct rmq_config_spec *spec, void *target, const char *key, size_t key_len,
        const char *value, char *err, size_t errlen)
{
    const struct rmq_config_key *k = find_key(spec, key, key_len);

    if (k == NULL) {
        errf(err, errlen, "unknown config key '%.*s' (--help lists them)", (int)key_len, key);
        return -ENOENT;
    }
    return set_value(k, target, value, err, errlen);
}

int
rmq_config_defaults(const struct rmq_config_spec *spec, void *target, char *err, size_t errlen)
{
    for (size_t i = 0; i < spec->key_count; i++) {
        const struct rmq_config_key *k = &spec->keys[i];
        int ret;

        if (k->def == NULL) {
            errf(err, errlen, "config key '%s' has no default", k->name);
            return -EINVAL;
        }
        ret = set_value(k, target, k->def, err, errlen);
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
    return set_key(spec, target, key, strlen(key), value, err, errlen);
}

/*
 * Writes "path:line: " into err, then lets set_key finish the sentence after it, so a
 * long message is cut only by errlen and not by an intermediate buffer.
 */
static int
set_from_line(const struct rmq_config_spec *spec, void *target, const char *path,
              unsigned long lineno, const char *key, const char *value, char *err,
              size_t errlen)
{
    int n = 0;

    if (err != NULL && errlen > 0) {
        n = snprintf(err, errlen, "%s:%lu: ", path, lineno);
        if (n < 0 || (size_t)n >= errlen) {
            n = (int)errlen - 1;
        }
    }
    return set_key(spec, target, key, strlen(key), value, err != NULL ? err + n : NULL,
                   errlen - (size_t)n);
}

int
rmq_config_load_file(const struct rmq_config_spec *spec, void *target, const char *path,
                     char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    int ret = 0;

    if (f == NULL) {
        ret = -errno;
        errf(err, errlen, "cannot open config file %s: %s", path, strerror(-ret));
        return ret;
    }
    for (;;) {
        char *s;
        char *eq;
        char *key;

        errno = 0;
        len = getline(&line, &cap, f);
        if (len < 0) {
            break;
        }
        lineno++;
        if (strlen(line) != (size_t)len) {
            /* a NUL would silently cut the key or value short */
            errf(err, errlen, "%s:%lu: line contains a NUL byte", path, lineno);
            ret = -EINVAL;
            break;
        }
        s = trim(line);
        if (*s == '\0' || *s == '#' || *s == '!') {
            continue;
        }
        eq = strchr(s, '=');
        if (eq == NULL) {
            errf(err, errlen, "%s:%lu: expected key=value, got '%s'", path, lineno, s);
            ret = -EINVAL;
            break;
        }
        *eq = '\0';
        key = trim(s);
        if (*key == '\0') {
            errf(err, errlen, "%s:%lu: no key before '='", path, lineno);
            ret = -EINVAL;
            break;
        }
        ret = set_from_line(spec, target, path, lineno, key, trim(eq + 1), err, errlen);
        if (ret < 0) {
            break;
        }
    }
    if (ret == 0 && !feof(f)) {
        /* getline returns -1 for both EOF and error (EISDIR, EIO, ENOMEM) */
        ret = errno != 0 ? -errno : -EIO;
        errf(err, errlen, "cannot read config file %s: %s", path, strerror(-ret));
    }
    free(line);
    fclose(f);
    return ret;
}

static bool
is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

int
rmq_config_parse_args(const struct rmq_config_spec *spec, void *target, int argc, char **argv,
                      char *err, size_t errlen)
{
    static const char config_opt[] = "--config=";
    const size_t config_len = sizeof(config_opt) - 1;
    const char *file = NULL;
    int ret;

    /*
     * Pass 1: check the shape of every argument and find the config file, so a typo
     * anywhere on the command line is reported before any file is read.
     */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *this_file = NULL;

        if (strncmp(a, config_opt, config_len) == 0) {
            this_file = a + config_len;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                errf(err, errlen, "option '%s' needs a file name after it", a);
                return -EINVAL;
            }
            this_file = argv[++i];
        } else if (is_help(a)) {
            continue;
        } else if (strncmp(a, "--", 2) != 0 || a[2] == '=' || strchr(a, '=') == NULL) {
            errf(err, errlen, "unexpected argument '%s' (options are --key=value)", a);
            return -EINVAL;
        }
        if (this_file != NULL) {
            /* two files would leave one silently half-applied or ignored */
            if (file != NULL) {
                errf(err, errlen, "config file given twice: '%s' and '%s'", file, this_file);
                return -EINVAL;
            }
            if (*this_file == '\0') {
                errf(err, errlen, "option '--config=' needs a file name");
                return -EINVAL;
            }
            file = this_file;
        }
    }

    ret = rmq_config_defaults(spec, target, err, errlen);
    if (ret < 0) {
        return ret;
    }
    if (file != NULL) {
        ret = rmq_config_load_file(spec, target, file, err, errlen);
        if (ret < 0) {
            return ret;
        }
    }

    /* Pass 2: arguments override the file whatever their position relative to it. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq;

        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, config_opt, config_len) == 0 || is_help(a)) {
            continue;
        }
        eq = strchr(a, '=');
        ret = set_key(spec, target, a + 2, (size_t)(eq - (a + 2)), eq + 1, err, errlen);
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
        if (is_help(argv[i])) {
            return true;
        }
    }
    return false;
}

/* Prints the type word ("int", "one of a|b|c") when out != NULL; returns its length. */
static size_t
type_word(const struct rmq_config_key *k, FILE *out)
{
    const char *word = "?";
    size_t len;

    switch (k->type) {
    case RMQ_CONFIG_I64:
        word = "int";
        break;
    case RMQ_CONFIG_BOOL:
        word = "bool";
        break;
    case RMQ_CONFIG_STR:
        word = "string";
        break;
    case RMQ_CONFIG_ENUM:
        len = strlen("one of ");
        if (out != NULL) {
            fputs("one of ", out);
        }
        for (int i = 0; k->choices != NULL && k->choices[i] != NULL; i++) {
            len += (i > 0) + strlen(k->choices[i]);
            if (out != NULL) {
                fprintf(out, "%s%s", i > 0 ? "|" : "", k->choices[i]);
            }
        }
        return len;
    }
    if (out != NULL) {
        fputs(word, out);
    }
    return strlen(word);
}

/* An empty default shows as "" so the column is not blank. */
static const char *
shown_default(const struct rmq_config_key *k)
{
    return k->def == NULL || k->def[0] == '\0' ? "\"\"" : k->def;
}

void
rmq_config_print_help(const struct rmq_config_spec *spec, FILE *out)
{
    size_t name_w = 0;
    size_t type_w = 0;
    size_t def_w = 0;

    for (size_t i = 0; i < spec->key_count; i++) {
        const struct rmq_config_key *k = &spec->keys[i];
        size_t n = strlen(k->name);
        size_t t = type_word(k, NULL);
        size_t d = strlen(shown_default(k));

        name_w = n > name_w ? n : name_w;
        type_w = t > type_w ? t : type_w;
        def_w = d > def_w ? d : def_w;
    }
    fprintf(out, "usage: %s [--config=FILE] [--key=value ...]\n",
            spec->program != NULL ? spec->program : "PROGRAM");
    for (size_t i = 0; i < spec->key_count; i++) {
        const struct rmq_config_key *k = &spec->keys[i];
        size_t t;

        fprintf(out, "  %-*s  ", (int)name_w, k->name);
        t = type_word(k, out);
        fprintf(out, "%*s  ", (int)(type_w - t), "");
        if (k->help != NULL && k->help[0] != '\0') {
            fprintf(out, "%-*s  %s\n", (int)def_w, shown_default(k), k->help);
        } else {
            fprintf(out, "%s\n", shown_default(k));    /* no trailing blanks */
        }
    }
}
