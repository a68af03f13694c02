/*
 * JSON body writer in the two dialects the reference emits; see json.h. Control
 * plane only: it grows one heap buffer, never on a message path.
 */
#include "net/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum rmq_json_dialect
rmq_json_route_dialect(const struct rmq_header *req)
{
    bool standard_only = false;

    if (req->version >= RMQ_VERSION_V4_9_4 ||
        (rmq_header_get_bool(req, "acceptStandardJsonOnly", &standard_only) == 0 &&
         standard_only)) {
        return RMQ_JSON_STANDARD;
    }
    return RMQ_JSON_FASTJSON;
}

void
rmq_jw_init(struct rmq_jw *w, enum rmq_json_dialect dialect)
{
    memset(w, 0, sizeof(*w));
    w->dialect = dialect;
}

void
rmq_jw_fini(struct rmq_jw *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

static void
put(struct rmq_jw *w, const char *s, size_t n)
{
    if (w->err != 0) {
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        char *nb;

        while (cap < w->len + n + 1) {
            cap *= 2;
        }
        nb = realloc(w->buf, cap);
        if (nb == NULL) {
            w->err = -ENOMEM;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void
putc_(struct rmq_jw *w, char c)
{
    put(w, &c, 1);
}

/* Before any value: a comma when needed; a value inside an object needs a key first. */
static void
before_value(struct rmq_jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth == 0) {
        if (w->len > 0) {
            w->err = w->err ? w->err : -EINVAL;     /* two top-level values */
        }
        return;
    }
    if (w->is_obj[w->depth - 1]) {
        w->err = w->err ? w->err : -EINVAL;         /* value without a key */
        return;
    }
    if (!w->first[w->depth - 1]) {
        putc_(w, ',');
    }
    w->first[w->depth - 1] = 0;
}

static void
open_container(struct rmq_jw *w, bool obj)
{
    before_value(w);
    if (w->depth == RMQ_JSON_MAX_DEPTH) {
        w->err = w->err ? w->err : -EINVAL;
        return;
    }
    putc_(w, obj ? '{' : '[');
    w->first[w->depth] = 1;
    w->is_obj[w->depth] = obj;
    w->depth++;
}

static void
close_container(struct rmq_jw *w, bool obj)
{
    if (w->depth == 0 || w->is_obj[w->depth - 1] != obj || w->after_key) {
        w->err = w->err ? w->err : -EINVAL;
        return;
    }
    w->depth--;
    putc_(w, obj ? '}' : ']');
}

void
rmq_jw_obj_begin(struct rmq_jw *w)
{
    open_container(w, true);
}

void
rmq_jw_obj_end(struct rmq_jw *w)
{
    close_container(w, true);
}

void
rmq_jw_arr_begin(struct rmq_jw *w)
{
    open_container(w, false);
}

void
rmq_jw_arr_end(struct rmq_jw *w)
{
    close_container(w, false);
}

static void
put_escaped(struct rmq_jw *w, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    putc_(w, '"');
    while (i < len) {
        unsigned char c = p[i];
        char esc[12];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(w, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *short_form = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                                     : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;

            if (short_form != NULL) {
                put(w, short_form, 2);
            } else {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                put(w, esc, 6);
            }
            i++;
        } else if (c < 0x80 || w->dialect == RMQ_JSON_FASTJSON) {
            putc_(w, (char)c);
            i++;
        } else {
            /* STANDARD: decode one UTF-8 sequence, write it as \uXXXX (pairs above BMP). */
            uint32_t cp = 0xFFFD;
            size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
            bool ok = n > 1 && i + n <= len;

            for (size_t k = 1; ok && k < n; k++) {
                ok = (p[i + k] & 0xC0) == 0x80;
            }
            if (ok) {
                cp = n == 2 ? (uint32_t)(c & 0x1F) : n == 3 ? (uint32_t)(c & 0x0F)
                                                            : (uint32_t)(c & 0x07);
                for (size_t k = 1; k < n; k++) {
                    cp = cp << 6 | (p[i + k] & 0x3F);
                }
            } else {
                n = 1;
            }
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;

                snprintf(esc, sizeof(esc), "\\u%04x", 0xD800 + (v >> 10));
                put(w, esc, 6);
                snprintf(esc, sizeof(esc), "\\u%04x", 0xDC00 + (v & 0x3FF));
                put(w, esc, 6);
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", cp);
                put(w, esc, 6);
            }
            i += n;
        }
    }
    putc_(w, '"');
}

/* Before a key: only inside an object, after a complete member or at its start. */
static bool
before_key(struct rmq_jw *w)
{
    if (w->depth == 0 || !w->is_obj[w->depth - 1] || w->after_key) {
        w->err = w->err ? w->err : -EINVAL;
        return false;
    }
    if (!w->first[w->depth - 1]) {
        putc_(w, ',');
    }
    w->first[w->depth - 1] = 0;
    return true;
}

void
rmq_jw_key(struct rmq_jw *w, const char *key)
{
    if (before_key(w)) {
        put_escaped(w, key, strlen(key));
        putc_(w, ':');
        w->after_key = true;
    }
}

void
rmq_jw_key_i64(struct rmq_jw *w, int64_t key)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, key);

    if (w->dialect == RMQ_JSON_STANDARD) {
        rmq_jw_key(w, num);
    } else if (before_key(w)) {
        put(w, num, (size_t)n);
        putc_(w, ':');
        w->after_key = true;
    }
}

void
rmq_jw_str_n(struct rmq_jw *w, const char *s, size_t len)
{
    before_value(w);
    put_escaped(w, s, len);
}

void
rmq_jw_str(struct rmq_jw *w, const char *s)
{
    if (s == NULL) {
        rmq_jw_null(w);
        return;
    }
    rmq_jw_str_n(w, s, strlen(s));
}

void
rmq_jw_i64(struct rmq_jw *w, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);

    before_value(w);
    put(w, num, (size_t)n);
}

void
rmq_jw_bool(struct rmq_jw *w, bool v)
{
    before_value(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void
rmq_jw_null(struct rmq_jw *w)
{
    before_value(w);
    put(w, "null", 4);
}

int
rmq_jw_finish(struct rmq_jw *w, const char **out, size_t *len)
{
    if (w->err == 0 && (w->depth != 0 || w->after_key || w->len == 0)) {
        w->err = -EINVAL;
    }
    if (w->err != 0) {
        return w->err;
    }
    w->buf[w->len] = '\0';          /* put() always keeps one spare byte */
    *out = w->buf;
    *len = w->len;
    return 0;
}
