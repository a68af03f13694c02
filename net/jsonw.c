/*
 * JSON body writer in the two dialects the reference emits; see json.h. Control
 * plane only: it grows one heap buffer, never on a message path.
 *
 * Strings: '"', '\\' and control characters are escaped (\n \r \t \b \f short, the
 * rest \u00XX, as fastjson does). FASTJSON passes other bytes through; STANDARD
 * escapes every non-ASCII code point, and a byte that is not well-formed UTF-8 becomes
 * \ufffd there, so the standard output is always pure ASCII that any parser accepts.
 * State: first[d] says no element is written yet at depth d, after_key that the next
 * call must be a value; the first misuse or allocation failure sticks in err.
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
rmq_jw_reset(struct rmq_jw *w, enum rmq_json_dialect dialect)
{
    char *buf = w->buf;
    size_t cap = w->cap;

    rmq_jw_init(w, dialect);
    w->buf = buf;
    w->cap = cap;
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

/*
 * One UTF-8 sequence at p: its length and code point. A byte that does not start a
 * well-formed sequence (stray continuation, overlong form, surrogate, above U+10FFFF,
 * truncated) counts as one byte of U+FFFD, so the output is always valid JSON.
 */
static size_t
utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t v;
    uint32_t min;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        goto invalid;
    }
    if (n > avail) {
        goto invalid;
    }
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80) {
            goto invalid;
        }
        v = v << 6 | (p[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        goto invalid;
    }
    *cp = v;
    return n;
invalid:
    *cp = 0xFFFD;
    return 1;
}

static void
put_u_escape(struct rmq_jw *w, uint32_t unit)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 'u', hex[unit >> 12 & 15], hex[unit >> 8 & 15], hex[unit >> 4 & 15],
                   hex[unit & 15]};

    put(w, esc, sizeof(esc));
}

static void
put_escaped(struct rmq_jw *w, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    putc_(w, '"');
    while (i < len) {
        unsigned char c = p[i];
        size_t run = i;

        /* bytes that need no escape go out in one copy: names and addresses are all such */
        while (run < len && p[run] >= 0x20 && p[run] != '"' && p[run] != '\\' &&
               (p[run] < 0x80 || w->dialect == RMQ_JSON_FASTJSON)) {
            run++;
        }
        if (run > i) {
            put(w, s + i, run - i);
            i = run;
            continue;
        }
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};

            put(w, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *short_form = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                                     : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;

            if (short_form != NULL) {
                put(w, short_form, 2);
            } else {
                put_u_escape(w, c);
            }
            i++;
        } else {
            /* STANDARD: one UTF-8 sequence as \uXXXX (a surrogate pair above the BMP). */
            uint32_t cp;
            size_t n = utf8_decode(p + i, len - i, &cp);

            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;

                put_u_escape(w, 0xD800 + (v >> 10));
                put_u_escape(w, 0xDC00 + (v & 0x3FF));
            } else {
                put_u_escape(w, cp);
            }
            i += n;
        }
    }
    putc_(w, '"');
}

/* Decimal v right-aligned at the end of buf[24]; returns its length (no NUL). Route
 * bodies are mostly small numbers, and snprintf was a visible share of a lookup. */
static size_t
fmt_i64(char buf[24], int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t i = 24;

    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        buf[--i] = '-';
    }
    return 24 - i;
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
rmq_jw_key_raw(struct rmq_jw *w, const char *json)
{
    if (before_key(w)) {
        put(w, json, strlen(json));
        putc_(w, ':');
        w->after_key = true;
    }
}

void
rmq_jw_key_i64(struct rmq_jw *w, int64_t key)
{
    char num[24];
    size_t n = fmt_i64(num, key);
    const char *digits = num + sizeof(num) - n;

    if (w->dialect == RMQ_JSON_STANDARD) {
        if (before_key(w)) {
            putc_(w, '"');
            put(w, digits, n);
            put(w, "\":", 2);
            w->after_key = true;
        }
    } else if (before_key(w)) {
        put(w, digits, n);
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
    size_t n = fmt_i64(num, v);

    before_value(w);
    put(w, num + sizeof(num) - n, n);
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

void
rmq_jw_data_version(struct rmq_jw *w, const struct rmq_data_version *v)
{
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "counter");
    rmq_jw_i64(w, v->counter);
    rmq_jw_key(w, "timestamp");
    rmq_jw_i64(w, v->timestamp);
    rmq_jw_obj_end(w);
}
