/*
 * RegisterBrokerBody decoding (spec/REMOTING.md §11.1). Everything a peer sends is
 * checked here for shape and type; value ranges are left to the route table, so one
 * place decides what a registration may contain. A body that fails any check is
 * refused whole: the caller replies an error and changes nothing.
 *
 * Compressed form (zlib), inflated content, all integers big-endian i32:
 *   L1, DataVersion JSON (L1 bytes)
 *   N,  N times: Li, "topic read write perm filterType" (Li bytes)
 *   L2, filter server list JSON array (L2 bytes)
 */
#include "namesrv/namesrv_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/be.h"
#include "core/util.h"
#include "net/json.h"

/* Integer member (number or decimal string) within int32; missing/null -> def. */
static bool
json_i32(const cJSON *obj, const char *name, int32_t def, int32_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    char *end;
    long long x;

    if (v == NULL || cJSON_IsNull(v)) {
        *out = def;
        return true;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;

        if (!(d >= INT32_MIN && d <= INT32_MAX) || (double)(int32_t)d != d) {
            return false;
        }
        *out = (int32_t)d;
        return true;
    }
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        return false;
    }
    errno = 0;
    x = strtoll(v->valuestring, &end, 10);
    if (errno != 0 || *end != '\0' || x < INT32_MIN || x > INT32_MAX) {
        return false;
    }
    *out = (int32_t)x;
    return true;
}

/* Java long member (number or decimal string); missing/null -> 0. */
static bool
json_i64(const cJSON *obj, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (v == NULL || cJSON_IsNull(v)) {
        *out = 0;
        return true;
    }
    *out = rmq_json_get_i64(obj, name, INT64_MIN);
    return *out != INT64_MIN;
}

static bool
decode_data_version(const cJSON *dv, struct rmq_data_version *out)
{
    return cJSON_IsObject(dv) && json_i64(dv, "counter", &out->counter) &&
           json_i64(dv, "timestamp", &out->timestamp);
}

static int
decode_filters(struct rmq_namesrv__register_body *rb, const cJSON *list, const char **why)
{
    const cJSON *f;
    uint32_t n = 0;

    if (list == NULL || cJSON_IsNull(list)) {
        return 0;
    }
    if (!cJSON_IsArray(list)) {
        *why = "filterServerList is not an array";
        return -EBADMSG;
    }
    if (cJSON_GetArraySize(list) > RMQ_NAMESRV_FILTER_SERVERS_MAX) {
        *why = "filterServerList too long";
        return -EBADMSG;
    }
    if (cJSON_GetArraySize(list) == 0) {
        return 0;
    }
    rb->filter_servers = calloc((size_t)cJSON_GetArraySize(list), sizeof(char *));
    if (rb->filter_servers == NULL) {
        return -ENOMEM;
    }
    cJSON_ArrayForEach(f, list) {
        if (!cJSON_IsString(f)) {
            *why = "filterServerList entry is not a string";
            return -EBADMSG;
        }
        rb->filter_servers[n++] = f->valuestring;
    }
    rb->filter_server_count = n;
    return 0;
}

static int
decode_json(struct rmq_namesrv__register_body *rb, const uint8_t *body, uint32_t len,
            const char **why)
{
    const cJSON *wrapper;
    const cJSON *table;
    const cJSON *tc;
    int ret;

    rb->root = rmq_json_parse((const char *)body, len);
    if (!cJSON_IsObject(rb->root)) {
        *why = "body is not a JSON object";
        return -EBADMSG;
    }
    ret = decode_filters(rb, cJSON_GetObjectItemCaseSensitive(rb->root, "filterServerList"), why);
    if (ret < 0) {
        return ret;
    }
    wrapper = cJSON_GetObjectItemCaseSensitive(rb->root, "topicConfigSerializeWrapper");
    if (wrapper == NULL || cJSON_IsNull(wrapper)) {
        return 0;
    }
    if (!cJSON_IsObject(wrapper)) {
        *why = "topicConfigSerializeWrapper is not an object";
        return -EBADMSG;
    }
    rb->has_topic_config = true;
    if (!decode_data_version(cJSON_GetObjectItemCaseSensitive(wrapper, "dataVersion"),
                             &rb->data_version)) {
        *why = "dataVersion missing or not {counter, timestamp} integers";
        return -EBADMSG;
    }
    table = cJSON_GetObjectItemCaseSensitive(wrapper, "topicConfigTable");
    if (table == NULL || cJSON_IsNull(table)) {
        return 0;
    }
    if (!cJSON_IsObject(table)) {
        *why = "topicConfigTable is not an object";
        return -EBADMSG;
    }
    if (cJSON_GetArraySize(table) > RMQ_NAMESRV_TOPICS_PER_REGISTER_MAX) {
        *why = "topicConfigTable has more than 200000 topics";
        return -EBADMSG;
    }
    rb->topics = calloc((size_t)cJSON_GetArraySize(table) + 1, sizeof(*rb->topics));
    if (rb->topics == NULL) {
        return -ENOMEM;
    }
    cJSON_ArrayForEach(tc, table) {
        struct rmq_topic_queue_conf *q = &rb->topics[rb->topic_count];
        const char *name = rmq_json_get_str(tc, "topicName");

        if (!cJSON_IsObject(tc)) {
            *why = "topicConfigTable entry is not an object";
            return -EBADMSG;
        }
        /* the reference routes by the config's own topicName; the key is the fallback */
        q->topic = name != NULL ? name : tc->string;
        if (!json_i32(tc, "readQueueNums", 16, &q->read_queue_nums) ||
            !json_i32(tc, "writeQueueNums", 16, &q->write_queue_nums) ||
            !json_i32(tc, "perm", 6, &q->perm) ||
            !json_i32(tc, "topicSysFlag", 0, &q->topic_sys_flag)) {
            *why = "topic config number is not a 32-bit integer";
            return -EBADMSG;
        }
        rb->topic_count++;
    }
    return 0;
}

/* ---- compressed form ----------------------------------------------------------------- */

static int
inflate_all(const uint8_t *in, uint32_t len, char **out, size_t *out_len, const char **why)
{
    z_stream zs;
    size_t cap = RMQ_MIN((size_t)len * 4 + 256, (size_t)RMQ_NAMESRV_INFLATED_MAX);
    char *buf = malloc(cap);
    int zr;

    if (buf == NULL) {
        return -ENOMEM;
    }
    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK) {
        free(buf);
        return -ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = len;
    for (;;) {
        zs.next_out = (Bytef *)buf + zs.total_out;
        zs.avail_out = (uInt)(cap - 1 - zs.total_out);     /* room for a NUL */
        zr = inflate(&zs, Z_NO_FLUSH);
        if (zr == Z_STREAM_END) {
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            *why = "compressed body is not a zlib stream";
            goto out_bad;
        }
        if (zs.avail_out > 0) {         /* input ran out before the stream ended */
            *why = "compressed body truncated";
            goto out_bad;
        }
        if (cap >= RMQ_NAMESRV_INFLATED_MAX) {
            *why = "compressed body inflates beyond 64 MiB";
            goto out_bad;
        }
        cap = RMQ_MIN(cap * 2, (size_t)RMQ_NAMESRV_INFLATED_MAX);
        {
            char *p = realloc(buf, cap);

            if (p == NULL) {
                inflateEnd(&zs);
                free(buf);
                return -ENOMEM;
            }
            buf = p;
        }
    }
    *out_len = zs.total_out;
    buf[zs.total_out] = '\0';      /* strtoll on the last line stops here */
    inflateEnd(&zs);
    *out = buf;
    return 0;
out_bad:
    inflateEnd(&zs);
    free(buf);
    return -EBADMSG;
}

/* Next length-prefixed field at *pos; NULL when it does not fit. */
static char *
next_field(char *text, size_t len, size_t *pos, uint32_t *field_len)
{
    uint32_t n;

    if (len - *pos < 4) {
        return NULL;
    }
    n = rmq_get_be32((const uint8_t *)text + *pos);
    *pos += 4;
    if (n > len - *pos) {
        return NULL;
    }
    *field_len = n;
    *pos += n;
    return text + *pos - n;
}

/* "name read write perm filterType": the name is cut at its space in place. */
static bool
decode_topic_line(char *line, uint32_t len, struct rmq_topic_queue_conf *q)
{
    long long v[3];
    char *sp = memchr(line, ' ', len);
    char *p;

    if (sp == NULL || sp == line) {
        return false;
    }
    *sp = '\0';
    q->topic = line;
    p = sp + 1;
    for (int i = 0; i < 3; i++) {
        char *end;

        if (p >= line + len || !(isdigit((unsigned char)*p) || *p == '-')) {
            return false;
        }
        errno = 0;
        v[i] = strtoll(p, &end, 10);
        if (errno != 0 || end > line + len || *end != ' ' || v[i] < INT32_MIN ||
            v[i] > INT32_MAX) {
            return false;
        }
        p = end + 1;
    }
    q->read_queue_nums = (int32_t)v[0];
    q->write_queue_nums = (int32_t)v[1];
    q->perm = (int32_t)v[2];
    q->topic_sys_flag = 0;          /* not carried in this form */
    return p < line + len;          /* a filter type follows */
}

static int
decode_compressed(struct rmq_namesrv__register_body *rb, const uint8_t *body, uint32_t len,
                  const char **why)
{
    size_t text_len;
    size_t pos = 0;
    uint32_t flen;
    uint32_t count;
    cJSON *dv;
    char *f;
    int ret;

    ret = inflate_all(body, len, &rb->text, &text_len, why);
    if (ret < 0) {
        return ret;
    }
    f = next_field(rb->text, text_len, &pos, &flen);
    dv = f != NULL ? rmq_json_parse(f, flen) : NULL;
    rb->has_topic_config = true;
    if (dv == NULL || !decode_data_version(dv, &rb->data_version)) {
        cJSON_Delete(dv);
        *why = "compressed body: dataVersion missing or malformed";
        return -EBADMSG;
    }
    cJSON_Delete(dv);
    if (text_len - pos < 4) {
        *why = "compressed body: topic count missing";
        return -EBADMSG;
    }
    count = rmq_get_be32((const uint8_t *)rb->text + pos);
    pos += 4;
    if (count > RMQ_NAMESRV_TOPICS_PER_REGISTER_MAX) {
        *why = "compressed body: topic count negative or above 200000";
        return -EBADMSG;
    }
    rb->topics = calloc((size_t)count + 1, sizeof(*rb->topics));
    if (rb->topics == NULL) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        f = next_field(rb->text, text_len, &pos, &flen);
        if (f == NULL || !decode_topic_line(f, flen, &rb->topics[i])) {
            *why = "compressed body: topic line truncated or malformed";
            return -EBADMSG;
        }
        rb->topic_count++;
    }
    f = next_field(rb->text, text_len, &pos, &flen);
    if (f == NULL) {
        *why = "compressed body: filter server list missing";
        return -EBADMSG;
    }
    rb->filter_root = rmq_json_parse(f, flen);
    if (rb->filter_root == NULL) {
        *why = "compressed body: filter server list is not JSON";
        return -EBADMSG;
    }
    return decode_filters(rb, rb->filter_root, why);
}

int
rmq_namesrv__register_body_decode(struct rmq_namesrv__register_body *rb, const uint8_t *body,
                                  uint32_t len, bool compressed, const char **why)
{
    int ret;

    memset(rb, 0, sizeof(*rb));
    *why = "out of memory";
    if (len == 0) {
        return 0;
    }
    ret = compressed ? decode_compressed(rb, body, len, why) : decode_json(rb, body, len, why);
    if (ret < 0) {
        rmq_namesrv__register_body_fini(rb);
    }
    return ret;
}

void
rmq_namesrv__register_body_fini(struct rmq_namesrv__register_body *rb)
{
    free(rb->topics);
    free(rb->filter_servers);
    cJSON_Delete(rb->root);
    cJSON_Delete(rb->filter_root);
    free(rb->text);
    memset(rb, 0, sizeof(*rb));
}
