/*
 * Messages on the client side: validation, the property string, UNIQ_KEY, zlib bodies
 * (as Java clients compress them), and pulled records turned into struct rmq_msg.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "client/client_int.h"
#include "core/clock.h"
#include "core/record.h"
#include "core/util.h"

/* ---- outgoing --------------------------------------------------------------------------------- */

static bool
topic_ok(const char *t)
{
    size_t n = t != NULL ? strlen(t) : 0;

    if (n == 0 || n > 127) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '%' || ch == '|')) {
            return false;
        }
    }
    return true;
}

int
rmq_cli__check_message(const struct rmq_cli *c, const struct rmq_message *m)
{
    if (m == NULL || !topic_ok(m->topic)) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "topic '%s' is not 1..127 characters of "
                             "[a-zA-Z0-9_%%|-]", m != NULL && m->topic != NULL ? m->topic : "");
    }
    if (m->body == NULL || m->body_len == 0) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "message to %s has an empty body", m->topic);
    }
    if (m->body_len > c->opts.max_message_size) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "message body of %zu bytes is over the %u-byte "
                             "limit", m->body_len, c->opts.max_message_size);
    }
    if (m->delay_level < 0 || m->deliver_at_ms < 0) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "negative delay level or delivery time");
    }
    return 0;
}

struct pbuf {
    char **buf;
    size_t *cap;
    size_t len;
    int err;
};

static void
pb_add(struct pbuf *b, const char *name, const char *val, size_t val_len)
{
    size_t n = strlen(name);
    size_t need = b->len + n + val_len + 2;

    if (b->err != 0) {
        return;
    }
    if (need > *b->cap) {
        size_t cap = RMQ_MAX(need * 2, (size_t)256);
        char *p = realloc(*b->buf, cap);

        if (p == NULL) {
            b->err = RMQ_ERR_NOMEM;
            return;
        }
        *b->buf = p;
        *b->cap = cap;
    }
    memcpy(*b->buf + b->len, name, n);
    (*b->buf)[b->len + n] = RMQ_PROP_NAME_SEP;
    memcpy(*b->buf + b->len + n + 1, val, val_len);
    (*b->buf)[b->len + n + 1 + val_len] = RMQ_PROP_SEP;
    b->len = need;
}

static bool
clean(const char *s)
{
    return strchr(s, RMQ_PROP_NAME_SEP) == NULL && strchr(s, RMQ_PROP_SEP) == NULL;
}

int
rmq_cli__props(const struct rmq_message *m, const char *uniq, char **out, size_t *cap)
{
    struct pbuf b = {.buf = out, .cap = cap};
    char num[24];

    if ((m->tags != NULL && !clean(m->tags)) || (m->keys != NULL && !clean(m->keys))) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "tags and keys must not contain 0x01 or 0x02");
    }
    if (m->keys != NULL && m->keys[0] != '\0') {
        pb_add(&b, "KEYS", m->keys, strlen(m->keys));
    }
    if (m->tags != NULL && m->tags[0] != '\0') {
        pb_add(&b, "TAGS", m->tags, strlen(m->tags));
    }
    if (m->delay_level > 0) {
        pb_add(&b, "DELAY", num, (size_t)snprintf(num, sizeof(num), "%d", (int)m->delay_level));
    }
    if (m->deliver_at_ms > 0) {
        pb_add(&b, "TIMER_DELIVER_MS", num,
               (size_t)snprintf(num, sizeof(num), "%lld", (long long)m->deliver_at_ms));
    }
    pb_add(&b, "WAIT", "true", 4);
    if (uniq != NULL) {
        pb_add(&b, "UNIQ_KEY", uniq, strlen(uniq));
    }
    for (const char *const *p = m->properties; p != NULL && p[0] != NULL; p += 2) {
        if (p[1] == NULL || p[0][0] == '\0' || !clean(p[0]) || !clean(p[1])) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "user property '%s' has no value or holds "
                                 "0x01/0x02", p[0]);
        }
        pb_add(&b, p[0], p[1], strlen(p[1]));
    }
    if (b.err != 0) {
        return rmq_cli__fail(b.err, "out of memory building properties");
    }
    if (b.len > 32767) {
        return rmq_cli__fail(RMQ_ERR_INVALID, "properties of %zu bytes are over 32767", b.len);
    }
    return (int)b.len;
}

/* Milliseconds since the start of this month, local time, as Java's ids use. */
static uint32_t
ms_in_month(uint64_t now_ms)
{
    static _Thread_local uint64_t start_ms, next_ms;

    if (now_ms < start_ms || now_ms >= next_ms) {
        time_t t = (time_t)(now_ms / 1000);
        struct tm tm;

        localtime_r(&t, &tm);
        tm.tm_mday = 1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_isdst = -1;
        start_ms = (uint64_t)mktime(&tm) * 1000u;
        tm.tm_mon++;
        tm.tm_isdst = -1;
        next_ms = (uint64_t)mktime(&tm) * 1000u;
    }
    return (uint32_t)(now_ms - start_ms);
}

void
rmq_cli__uniq_key(struct rmq_cli *c, char out[33])
{
    static const char hex[] = "0123456789ABCDEF";
    static _Thread_local uint32_t salt, counter;
    uint8_t b[16];
    uint32_t ms = ms_in_month(rmq_clock_wall_ms());
    uint16_t pid = (uint16_t)getpid();

    if (salt == 0) {
        salt = (uint32_t)rmq_clock_mono_ns() ^ (uint32_t)(uintptr_t)&salt ^ 0x9e3779b9u;
    }
    counter++;
    memcpy(b, c->ip, 4);
    b[4] = (uint8_t)(pid >> 8);
    b[5] = (uint8_t)pid;
    b[6] = (uint8_t)(salt >> 24);
    b[7] = (uint8_t)(salt >> 16);
    b[8] = (uint8_t)(salt >> 8);
    b[9] = (uint8_t)salt;
    b[10] = (uint8_t)(ms >> 24);
    b[11] = (uint8_t)(ms >> 16);
    b[12] = (uint8_t)(ms >> 8);
    b[13] = (uint8_t)ms;
    b[14] = (uint8_t)(counter >> 8);
    b[15] = (uint8_t)counter;
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[32] = '\0';
}

int
rmq_cli__compress(const struct rmq_cli *c, const void *body, size_t len, uint8_t **out,
                  size_t *out_cap, size_t *out_len)
{
    uLongf n = compressBound((uLong)len);

    if (len < c->opts.compress_over) {
        return 0;
    }
    if (n > *out_cap) {
        uint8_t *p = realloc(*out, n);

        if (p == NULL) {
            return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory compressing a body");
        }
        *out = p;
        *out_cap = n;
    }
    /* level 5, as Java's compressMsgBodyLevel */
    if (compress2(*out, &n, body, (uLong)len, 5) != Z_OK || n >= len) {
        return 0;                   /* no gain: sent as it is */
    }
    *out_len = n;
    return 1;
}

/* ---- incoming --------------------------------------------------------------------------------- */

int
rmq_cli__parse_tags(const char *expr, char *buf, size_t cap, const char **tags, uint32_t max,
                    uint32_t *count)
{
    char *p, *save = NULL;

    *count = 0;
    if (expr == NULL || strlen(expr) >= cap) {
        return expr == NULL ? 0 : rmq_cli__fail(RMQ_ERR_INVALID, "tag expression too long");
    }
    snprintf(buf, cap, "%s", expr);
    for (p = strtok_r(buf, "|", &save); p != NULL; p = strtok_r(NULL, "|", &save)) {
        char *end;

        while (*p == ' ') {
            p++;
        }
        end = p + strlen(p);
        while (end > p && end[-1] == ' ') {
            *--end = '\0';
        }
        if (*p == '\0') {
            continue;
        }
        if (strcmp(p, "*") == 0) {
            *count = 0;
            return 0;
        }
        if (*count == max) {
            return rmq_cli__fail(RMQ_ERR_INVALID, "more than %u tags in '%s'", max, expr);
        }
        tags[(*count)++] = p;
    }
    return 0;
}

struct pull_mem {
    uint8_t *body;                  /* the pull response's, owned */
    char *strings;                  /* NUL-terminated copies */
    uint32_t nbufs;
    uint8_t *bufs[];                /* decompressed bodies */
};

void
rmq_pull_result_free(struct rmq_pull_result *r)
{
    struct pull_mem *pm = r->mem;

    if (pm != NULL) {
        for (uint32_t i = 0; i < pm->nbufs; i++) {
            free(pm->bufs[i]);
        }
        free(pm->body);
        free(pm->strings);
        free(pm);
    }
    free(r->msgs);
    r->msgs = NULL;
    r->mem = NULL;
    r->count = 0;
}

static char *
str_put(char **at, const char *s, size_t n)
{
    char *start = *at;

    memcpy(start, s, n);
    start[n] = '\0';
    *at += n + 1;
    return start;
}

static int
inflate_body(const uint8_t *in, uint32_t len, uint8_t **out, uint32_t *out_len)
{
    size_t cap = (size_t)len * 4 + 64;

    for (int tries = 0; tries < 6; tries++, cap *= 4) {
        uint8_t *p = malloc(cap);
        uLongf n = (uLongf)cap;
        int z;

        if (p == NULL) {
            return RMQ_ERR_NOMEM;
        }
        z = uncompress(p, &n, in, len);
        if (z == Z_OK) {
            *out = p;
            *out_len = (uint32_t)n;
            return 0;
        }
        free(p);
        if (z != Z_BUF_ERROR) {
            return RMQ_ERR_INVALID;
        }
    }
    return RMQ_ERR_INVALID;
}

int
rmq_cli__decode_pulled(uint8_t *body, uint32_t len, const char *broker_name,
                       const char *const *tags, uint32_t tag_count, struct rmq_pull_result *res)
{
    size_t broker_len = strlen(broker_name);
    uint32_t n = 0, kept = 0;
    struct pull_mem *pm;
    char *at;

    for (uint32_t off = 0; off < len;) {
        struct rmq_record rec;
        int64_t size = rmq_record_decode(body + off, len - off, false, &rec, NULL);

        if (size <= 0) {
            free(body);
            return rmq_cli__fail(RMQ_ERR_INVALID, "pulled record at byte %u is malformed", off);
        }
        n++;
        off += (uint32_t)size;
    }
    pm = calloc(1, sizeof(*pm) + n * sizeof(pm->bufs[0]));
    res->msgs = calloc(n + 1, sizeof(*res->msgs));
    /* strings come from the records: never more than the body plus a terminator, an
     * offset id and the broker name per message */
    if (pm != NULL) {
        pm->strings = malloc((size_t)len + (size_t)n * (8 + 57 + broker_len + 1) + 1);
    }
    if (pm == NULL || res->msgs == NULL || pm->strings == NULL) {
        if (pm != NULL) {
            free(pm->strings);
        }
        free(pm);
        free(res->msgs);
        res->msgs = NULL;
        free(body);
        return rmq_cli__fail(RMQ_ERR_NOMEM, "out of memory decoding a pull");
    }
    pm->body = body;
    res->mem = pm;
    at = pm->strings;
    for (uint32_t off = 0; off < len;) {
        struct rmq_record rec;
        int64_t size = rmq_record_decode(body + off, len - off, false, &rec, NULL);
        struct rmq_msg *m = &res->msgs[kept];
        const char *v;
        size_t vl;
        bool match = tag_count == 0;

        off += (uint32_t)size;
        if (!match && rmq_props_get(rec.props, rec.props_len, "TAGS", &v, &vl)) {
            for (uint32_t i = 0; i < tag_count && !match; i++) {
                match = strlen(tags[i]) == vl && memcmp(tags[i], v, vl) == 0;
            }
        }
        if (!match) {
            continue;               /* the broker filtered by hash only; the offset moves on */
        }
        if (rmq_props_get(rec.props, rec.props_len, "RETRY_TOPIC", &v, &vl) &&
            strncmp(rec.topic, "%RETRY%", 7) == 0) {
            m->topic = str_put(&at, v, vl);
        } else {
            m->topic = str_put(&at, rec.topic, rec.topic_len);
        }
        m->tags = rmq_props_get(rec.props, rec.props_len, "TAGS", &v, &vl) ? str_put(&at, v, vl)
                                                                         : str_put(&at, "", 0);
        m->keys = rmq_props_get(rec.props, rec.props_len, "KEYS", &v, &vl) ? str_put(&at, v, vl)
                                                                         : str_put(&at, "", 0);
        rmq_msg_offset_id(m->offset_msg_id, rec.store_ip, rec.store_port, rec.phys_off);
        m->msg_id = rmq_props_get(rec.props, rec.props_len, "UNIQ_KEY", &v, &vl)
                        ? str_put(&at, v, RMQ_MIN(vl, 56u))
                        : str_put(&at, m->offset_msg_id, strlen(m->offset_msg_id));
        m->broker_name = str_put(&at, broker_name, broker_len);
        m->body = rec.body;
        m->body_len = rec.body_len;
        if (rec.sysflag & RMQ_SYSFLAG_COMPRESSED) {
            uint8_t *plain;
            uint32_t plain_len;
            int ret = inflate_body(rec.body, rec.body_len, &plain, &plain_len);

            if (ret < 0) {
                rmq_pull_result_free(res);
                return rmq_cli__fail(ret, "message at offset %lld: compressed body does not "
                                     "inflate", (long long)rec.queue_off);
            }
            pm->bufs[pm->nbufs++] = plain;
            m->body = plain;
            m->body_len = plain_len;
        }
        m->queue_id = rec.queue_id;
        m->queue_offset = rec.queue_off;
        m->commitlog_offset = rec.phys_off;
        m->flag = rec.flag;
        m->sysflag = rec.sysflag;
        m->reconsume_times = rec.reconsume_times;
        m->born_ms = rec.born_ts;
        m->store_ms = rec.store_ts;
        m->props = rec.props;
        m->props_len = rec.props_len;
        kept++;
    }
    res->count = kept;
    return 0;
}

const char *
rmq_msg_property(const struct rmq_msg *m, const char *name, char *buf, size_t cap)
{
    const char *v;
    size_t vl;

    if (!rmq_props_get(m->props, m->props_len, name, &v, &vl) || vl >= cap) {
        return NULL;
    }
    memcpy(buf, v, vl);
    buf[vl] = '\0';
    return buf;
}
