/*
 * JSON header serialization (spec/REMOTING.md §4.1): a zero-allocation, in-place
 * parser and an exact-length writer.
 *
 * Why not cJSON here: it allocates a node per value and turns numbers into doubles,
 * so 13-digit timestamps survive but 64-bit offsets beyond 2^53 would not, and
 * every request would cost a dozen mallocs. This parser knows the header's shape
 * (a flat object with one nested string map) and leaves every string where it lies.
 *
 * Accepted (what real clients send): keys in any order, unknown keys skipped (any
 * JSON value, nesting bounded), extFields values as string/number/boolean (null =
 * absent), numeric strings for the top-level integers (fastjson coerces them),
 * remark absent/null/"", \uXXXX escapes incl. surrogate pairs, trailing whitespace.
 */
#include "net/frame_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "net/codes.h"

#define SKIP_DEPTH_MAX 16

struct jp {
    uint8_t *p;
    uint8_t *end;
};

static void
skip_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) {
        j->p++;
    }
}

static int
hex4(const uint8_t *p, uint32_t *out)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (uint32_t)(c - 'A' + 10);
        } else {
            return -EPROTO;
        }
    }
    *out = v;
    return 0;
}

static uint8_t *
put_utf8(uint8_t *w, uint32_t cp)
{
    if (cp < 0x80) {
        *w++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *w++ = (uint8_t)(0xC0 | cp >> 6);
        *w++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (uint8_t)(0xE0 | cp >> 12);
        *w++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (uint8_t)(0xF0 | cp >> 18);
        *w++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (uint8_t)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* At '"'. Unescapes in place; the write pointer never passes the read pointer. */
static int
parse_string(struct jp *j, struct rmq_str *out)
{
    uint8_t *r;
    uint8_t *w;
    uint8_t *start;

    if (j->p >= j->end || *j->p != '"') {
        return -EPROTO;
    }
    start = w = r = j->p + 1;
    for (;;) {
        uint32_t cp;
        uint32_t lo;

        if (r >= j->end) {
            return -EPROTO;
        }
        if (*r == '"') {
            break;
        }
        if (*r != '\\') {
            *w++ = *r++;
            continue;
        }
        if (j->end - r < 2) {
            return -EPROTO;
        }
        switch (r[1]) {
        case '"': *w++ = '"'; r += 2; continue;
        case '\\': *w++ = '\\'; r += 2; continue;
        case '/': *w++ = '/'; r += 2; continue;
        case 'b': *w++ = '\b'; r += 2; continue;
        case 'f': *w++ = '\f'; r += 2; continue;
        case 'n': *w++ = '\n'; r += 2; continue;
        case 'r': *w++ = '\r'; r += 2; continue;
        case 't': *w++ = '\t'; r += 2; continue;
        case 'u': break;
        default: return -EPROTO;
        }
        if (j->end - r < 6 || hex4(r + 2, &cp) < 0) {
            return -EPROTO;
        }
        r += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* High surrogate: a low one must follow to make a code point. */
            if (j->end - r >= 6 && r[0] == '\\' && r[1] == 'u' && hex4(r + 2, &lo) == 0 &&
                lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                r += 6;
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        w = put_utf8(w, cp);
    }
    out->ptr = (const char *)start;
    out->len = (uint32_t)(w - start);
    j->p = r + 1;
    return 0;
}

/* A JSON number; out gets its text. *is_int tells whether it has no fraction/exponent. */
static int
parse_number(struct jp *j, struct rmq_str *out, bool *is_int)
{
    uint8_t *s = j->p;
    uint8_t *p = s;

    *is_int = true;
    if (p < j->end && *p == '-') {
        p++;
    }
    if (p >= j->end || *p < '0' || *p > '9') {
        return -EPROTO;
    }
    if (*p == '0') {
        p++;
    } else {
        while (p < j->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (p < j->end && *p == '.') {
        *is_int = false;
        p++;
        if (p >= j->end || *p < '0' || *p > '9') {
            return -EPROTO;
        }
        while (p < j->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        *is_int = false;
        p++;
        if (p < j->end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p >= j->end || *p < '0' || *p > '9') {
            return -EPROTO;
        }
        while (p < j->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }
    out->ptr = (const char *)s;
    out->len = (uint32_t)(p - s);
    j->p = p;
    return 0;
}

static bool
match_word(struct jp *j, const char *w)
{
    size_t n = strlen(w);

    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, w, n) == 0) {
        j->p += n;
        return true;
    }
    return false;
}

/* Decimal text to int64 with overflow check; -EINVAL if not an integer. */
static int
text_to_i64(struct rmq_str s, int64_t *out)
{
    uint64_t v = 0;
    uint32_t i = 0;
    bool neg = false;

    if (s.len > 0 && (s.ptr[0] == '-' || s.ptr[0] == '+')) {
        neg = s.ptr[0] == '-';
        i = 1;
    }
    if (i == s.len) {
        return -EINVAL;
    }
    for (; i < s.len; i++) {
        char c = s.ptr[i];

        if (c < '0' || c > '9') {
            return -EINVAL;
        }
        if (v > (UINT64_C(1) << 63) / 10) {
            return -EINVAL;
        }
        v = v * 10 + (uint64_t)(c - '0');
        if (v > (UINT64_C(1) << 63)) {
            return -EINVAL;
        }
    }
    if (!neg && v > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* An object member's key and its colon: "key" ws : */
static int
parse_member_key(struct jp *j, struct rmq_str *key)
{
    int ret;

    skip_ws(j);
    if ((ret = parse_string(j, key)) < 0) {
        return ret;
    }
    skip_ws(j);
    if (j->p >= j->end || *j->p++ != ':') {
        return -EPROTO;
    }
    return 0;
}

/* After a member or element: 1 when a ',' says another follows, 0 at close, or -EPROTO. */
static int
next_or_close(struct jp *j, uint8_t close)
{
    skip_ws(j);
    if (j->p >= j->end) {
        return -EPROTO;
    }
    if (*j->p == ',') {
        j->p++;
        return 1;
    }
    return *j->p++ == close ? 0 : -EPROTO;
}

static int
skip_value(struct jp *j, int depth)
{
    struct rmq_str s;
    bool is_int;
    int ret;

    if (depth > SKIP_DEPTH_MAX) {
        return -EPROTO;
    }
    skip_ws(j);
    if (j->p >= j->end) {
        return -EPROTO;
    }
    switch (*j->p) {
    case '"':
        return parse_string(j, &s);
    case '{':
    case '[': {
        uint8_t close = *j->p == '{' ? '}' : ']';
        bool obj = close == '}';

        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        do {
            if (obj && (ret = parse_member_key(j, &s)) < 0) {
                return ret;
            }
            if ((ret = skip_value(j, depth + 1)) < 0) {
                return ret;
            }
        } while ((ret = next_or_close(j, close)) == 1);
        return ret;
    }
    case 't':
        return match_word(j, "true") ? 0 : -EPROTO;
    case 'f':
        return match_word(j, "false") ? 0 : -EPROTO;
    case 'n':
        return match_word(j, "null") ? 0 : -EPROTO;
    default:
        return parse_number(j, &s, &is_int);
    }
}

/* A top-level integer field: JSON integer, or a string holding one (fastjson coerces). */
static int
parse_i32_field(struct jp *j, int32_t *out)
{
    struct rmq_str s;
    bool is_int = true;
    int64_t v;
    int ret;

    skip_ws(j);
    if (j->p < j->end && *j->p == '"') {
        ret = parse_string(j, &s);
    } else {
        ret = parse_number(j, &s, &is_int);
    }
    if (ret < 0 || !is_int || text_to_i64(s, &v) < 0 || v < INT32_MIN || v > INT32_MAX) {
        return -EPROTO;
    }
    *out = (int32_t)v;
    return 0;
}

static int
parse_ext_fields(struct jp *j, struct rmq_header *h)
{
    int ret;

    skip_ws(j);
    if (match_word(j, "null")) {
        return 0;
    }
    if (j->p >= j->end || *j->p != '{') {
        return -EPROTO;
    }
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        struct rmq_str key;
        struct rmq_str val;
        bool is_int;
        bool present = true;

        if ((ret = parse_member_key(j, &key)) < 0) {
            return ret;
        }
        skip_ws(j);
        if (j->p >= j->end) {
            return -EPROTO;
        }
        if (*j->p == '"') {
            ret = parse_string(j, &val);
        } else if (match_word(j, "true")) {
            val.ptr = "true";
            val.len = 4;
        } else if (match_word(j, "false")) {
            val.ptr = "false";
            val.len = 5;
        } else if (match_word(j, "null")) {
            present = false;
        } else if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) {
            ret = parse_number(j, &val, &is_int);
        } else {
            return -EPROTO;     /* objects and arrays are not header values */
        }
        if (ret < 0) {
            return ret;
        }
        if (present) {
            if (h->ext_count == RMQ_FRAME_MAX_EXT) {
                return -EPROTO;
            }
            h->ext[h->ext_count].key = key;
            h->ext[h->ext_count].val = val;
            h->ext_count++;
        }
        if ((ret = next_or_close(j, '}')) != 1) {
            return ret;
        }
    }
}

int
rmq__json_header_decode(uint8_t *p, size_t len, struct rmq_header *h)
{
    struct jp j = {p, p + len};
    bool have_code = false;
    int ret;

    h->ext_count = 0;
    h->has_remark = false;
    h->version = 0;
    h->opaque = 0;
    h->flag = 0;
    h->language = RMQ_LANG_JAVA;
    h->serialize = RMQ_SER_JSON;
    h->scratch_len = 0;

    skip_ws(&j);
    if (j.p >= j.end || *j.p++ != '{') {
        return -EPROTO;
    }
    skip_ws(&j);
    if (j.p < j.end && *j.p == '}') {
        return -EPROTO;             /* no code: not a remoting header */
    }
    for (;;) {
        struct rmq_str key;

        if ((ret = parse_member_key(&j, &key)) < 0) {
            return ret;
        }
        if (rmq_str_eq(key, "code")) {
            ret = parse_i32_field(&j, &h->code);
            have_code = true;
        } else if (rmq_str_eq(key, "opaque")) {
            ret = parse_i32_field(&j, &h->opaque);
        } else if (rmq_str_eq(key, "flag")) {
            ret = parse_i32_field(&j, &h->flag);
        } else if (rmq_str_eq(key, "version")) {
            ret = parse_i32_field(&j, &h->version);
        } else if (rmq_str_eq(key, "language")) {
            struct rmq_str s;
            int32_t code;

            skip_ws(&j);
            if (j.p < j.end && *j.p == '"') {
                ret = parse_string(&j, &s);
                if (ret == 0) {
                    h->language = (uint8_t)rmq_language_from_name(s.ptr, s.len);
                }
            } else if ((ret = parse_i32_field(&j, &code)) == 0) {
                h->language = (uint8_t)(code >= 0 && code < 256 ? code : RMQ_LANG_OTHER);
            }
        } else if (rmq_str_eq(key, "remark")) {
            skip_ws(&j);
            if (match_word(&j, "null")) {
                ret = 0;
            } else {
                ret = parse_string(&j, &h->remark);
                h->has_remark = ret == 0 && h->remark.len > 0;
            }
        } else if (rmq_str_eq(key, "extFields")) {
            ret = parse_ext_fields(&j, h);
        } else {
            ret = skip_value(&j, 0);
        }
        if (ret < 0 || (ret = next_or_close(&j, '}')) < 0) {
            return ret;
        }
        if (ret == 0) {
            break;
        }
    }
    skip_ws(&j);
    if (j.p != j.end || !have_code) {
        return -EPROTO;
    }
    return 0;
}

/* ---- writer ----------------------------------------------------------------------- */

static size_t
i64_len(int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = v < 0 ? 2 : 1;

    while (u >= 10) {
        u /= 10;
        n++;
    }
    return n;
}

static uint8_t *
put_i64(uint8_t *w, int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    uint8_t tmp[20];
    int n = 0;

    if (v < 0) {
        *w++ = '-';
    }
    do {
        tmp[n++] = (uint8_t)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    while (n > 0) {
        *w++ = tmp[--n];
    }
    return w;
}

static size_t
str_len_escaped(struct rmq_str s)
{
    size_t n = 2;

    for (uint32_t i = 0; i < s.len; i++) {
        uint8_t c = (uint8_t)s.ptr[i];

        n += c == '"' || c == '\\' ? 2 : c < 0x20 ? 6 : 1;
    }
    return n;
}

static uint8_t *
put_str(uint8_t *w, struct rmq_str s)
{
    static const char hex[] = "0123456789abcdef";

    *w++ = '"';
    for (uint32_t i = 0; i < s.len; i++) {
        uint8_t c = (uint8_t)s.ptr[i];

        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = c;
        } else if (c < 0x20) {
            memcpy(w, "\\u00", 4);
            w[4] = (uint8_t)hex[c >> 4];
            w[5] = (uint8_t)hex[c & 15];
            w += 6;
        } else {
            *w++ = c;
        }
    }
    *w++ = '"';
    return w;
}

static uint8_t *
put_lit(uint8_t *w, const char *s)
{
    size_t n = strlen(s);

    memcpy(w, s, n);
    return w + n;
}

/*
 * Layout as the reference writes it: code, extFields (omitted when empty), flag,
 * language, opaque, remark (omitted when absent), serializeTypeCurrentRPC, version.
 */
ssize_t
rmq__json_header_len(const struct rmq_header *h)
{
    size_t n = strlen("{\"code\":") + i64_len(h->code);

    if (h->ext_count > 0) {
        n += strlen(",\"extFields\":{}") + (h->ext_count - 1);
        for (uint32_t i = 0; i < h->ext_count; i++) {
            n += str_len_escaped(h->ext[i].key) + 1 + str_len_escaped(h->ext[i].val);
        }
    }
    n += strlen(",\"flag\":") + i64_len(h->flag);
    n += strlen(",\"language\":\"\"") + strlen(rmq_language_name(h->language));
    n += strlen(",\"opaque\":") + i64_len(h->opaque);
    if (h->has_remark) {
        n += strlen(",\"remark\":") + str_len_escaped(h->remark);
    }
    n += strlen(",\"serializeTypeCurrentRPC\":\"JSON\"");
    n += strlen(",\"version\":") + i64_len(h->version) + 1;
    return n > 0xFFFFFF ? -EMSGSIZE : (ssize_t)n;
}

size_t
rmq__json_header_write(const struct rmq_header *h, uint8_t *out)
{
    uint8_t *w = out;

    w = put_lit(w, "{\"code\":");
    w = put_i64(w, h->code);
    if (h->ext_count > 0) {
        w = put_lit(w, ",\"extFields\":{");
        for (uint32_t i = 0; i < h->ext_count; i++) {
            if (i > 0) {
                *w++ = ',';
            }
            w = put_str(w, h->ext[i].key);
            *w++ = ':';
            w = put_str(w, h->ext[i].val);
        }
        *w++ = '}';
    }
    w = put_lit(w, ",\"flag\":");
    w = put_i64(w, h->flag);
    w = put_lit(w, ",\"language\":\"");
    w = put_lit(w, rmq_language_name(h->language));
    *w++ = '"';
    w = put_lit(w, ",\"opaque\":");
    w = put_i64(w, h->opaque);
    if (h->has_remark) {
        w = put_lit(w, ",\"remark\":");
        w = put_str(w, h->remark);
    }
    w = put_lit(w, ",\"serializeTypeCurrentRPC\":\"JSON\"");
    w = put_lit(w, ",\"version\":");
    w = put_i64(w, h->version);
    *w++ = '}';
    return (size_t)(w - out);
}

int
rmq__text_to_i64(struct rmq_str s, int64_t *out)
{
    return text_to_i64(s, out);
}
