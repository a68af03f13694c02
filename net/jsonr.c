/*
 * Lenient JSON body reader; see json.h. fastjson writes integer map keys without
 * quotes ({0:"addr"}), which strict parsers reject, so the text is first copied
 * with such keys quoted, then handed to cJSON. The copy tracks only what it must:
 * string boundaries (escapes included, so nothing inside a string is touched) and
 * whether the innermost container is an object, which tells a key position (after
 * '{' or an object's ',') from a value. Everything else is cJSON's job to validate.
 * Integer strings go through strtoll, not a double, so 64-bit values stay exact.
 */
#include "net/json.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Length of an optionally negative decimal integer at s, 0 when there is none. */
static size_t
int_len(const char *s, size_t len)
{
    size_t i = len > 0 && s[0] == '-' ? 1 : 0;
    size_t start = i;

    while (i < len && isdigit((unsigned char)s[i])) {
        i++;
    }
    return i > start ? i : 0;
}

/* Copy text, quoting bare (optionally negative) integer keys in key position. */
static char *
quote_numeric_keys(const char *s, size_t len, size_t *out_len)
{
    /* each key gains two quotes; a key needs at least 3 input bytes ("{1:") */
    char *out = malloc(len + 2 * (len / 2) + 1);
    bool obj_stack[RMQ_JSON_MAX_DEPTH * 4];
    int depth = 0;
    bool key_pos = false;
    size_t o = 0;
    size_t k;

    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '"') {
            size_t j = i + 1;

            while (j < len && s[j] != '"') {
                j += s[j] == '\\' ? 2 : 1;
            }
            if (j >= len) {
                j = len - 1;
            }
            memcpy(out + o, s + i, j - i + 1);
            o += j - i + 1;
            i = j;
            key_pos = false;
            continue;
        }
        if (key_pos && (k = int_len(s + i, len - i)) > 0) {
            out[o++] = '"';
            memcpy(out + o, s + i, k);
            o += k;
            out[o++] = '"';
            i += k - 1;
            key_pos = false;
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == (int)(sizeof(obj_stack) / sizeof(obj_stack[0]))) {
                free(out);                  /* no RocketMQ body nests this deep */
                return NULL;
            }
            obj_stack[depth++] = c == '{';
            key_pos = c == '{';
        } else if (c == '}' || c == ']') {
            depth = depth > 0 ? depth - 1 : 0;
            key_pos = false;
        } else if (c == ',') {
            key_pos = depth > 0 && obj_stack[depth - 1];
        } else if (!isspace((unsigned char)c)) {
            key_pos = false;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

cJSON *
rmq_json_parse(const char *text, size_t len)
{
    size_t n;
    char *norm;
    const char *end = NULL;
    cJSON *root;

    while (len > 0 && (text[len - 1] == '\0' || isspace((unsigned char)text[len - 1]))) {
        len--;
    }
    if (len == 0) {
        return NULL;
    }
    norm = quote_numeric_keys(text, len, &n);
    if (norm == NULL) {
        return NULL;
    }
    /*
     * Length n + 1 takes in the NUL so cJSON's null-terminated check can run; the end
     * check then rejects anything after the value (plain cJSON_ParseWithLength
     * ignores trailing garbage such as {"a":1}xyz).
     */
    root = cJSON_ParseWithLengthOpts(norm, n + 1, &end, true);
    if (root != NULL && end != norm + n) {
        cJSON_Delete(root);
        root = NULL;
    }
    free(norm);
    return root;
}

static bool
str_to_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    /* strtoll alone would also take leading blanks and "+" */
    if (s == NULL || !(isdigit((unsigned char)s[0]) || s[0] == '-')) {
        return false;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

int64_t
rmq_json_get_i64(const cJSON *obj, const char *name, int64_t def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    int64_t out;

    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;

        /* range first: converting an out-of-range double is undefined (NaN fails too) */
        if (!(d >= -9.2e18 && d <= 9.2e18) || (double)(int64_t)d != d) {
            return def;
        }
        return (int64_t)d;
    }
    if (cJSON_IsString(v) && str_to_i64(v->valuestring, &out)) {
        return out;
    }
    return def;
}

bool
rmq_json_get_bool(const cJSON *obj, const char *name, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (cJSON_IsBool(v)) {
        return cJSON_IsTrue(v);
    }
    if (cJSON_IsString(v)) {
        if (strcasecmp(v->valuestring, "true") == 0) {
            return true;
        }
        if (strcasecmp(v->valuestring, "false") == 0) {
            return false;
        }
        return def;
    }
    if (cJSON_IsNumber(v)) {
        return v->valuedouble != 0;
    }
    return def;
}

const char *
rmq_json_get_str(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int
rmq_json_get_enum(const cJSON *obj, const char *name, const char *const *names, int n, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    int64_t ord;

    if (cJSON_IsString(v)) {
        for (int i = 0; i < n; i++) {
            if (strcmp(v->valuestring, names[i]) == 0) {
                return i;
            }
        }
        if (str_to_i64(v->valuestring, &ord) && ord >= 0 && ord < n) {
            return (int)ord;
        }
        return def;
    }
    if (cJSON_IsNumber(v)) {
        ord = rmq_json_get_i64(obj, name, -1);
        return ord >= 0 && ord < n ? (int)ord : def;
    }
    return def;
}
