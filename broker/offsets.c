/* Consumer offsets; see offsets.h. */
#include "broker/offsets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/topics.h"
#include "core/file.h"
#include "core/log.h"
#include "net/json.h"

#define NONE RMQ_OFFSET_NONE

struct offset_entry {
    int64_t *offsets;               /* owned; NONE where nothing was committed */
    uint32_t count;
    char key[];                     /* "topic@group" */
};

bool
rmq_group_name_valid(const char *name, size_t len)
{
    return len > 0 && len <= RMQ_GROUP_NAME_MAX && rmq_name_chars_valid(name, len);
}

static struct offset_entry *
entry_get(const struct rmq_offsets *o, const char *topic, const char *group)
{
    char key[RMQ_TOPIC_NAME_MAX + 1 + RMQ_GROUP_NAME_MAX + 1];

    if (snprintf(key, sizeof(key), "%s@%s", topic, group) >= (int)sizeof(key)) {
        return NULL;
    }
    return rmq_strmap_get(&o->map, key);
}

static struct offset_entry *
entry_add(struct rmq_offsets *o, const char *key)
{
    size_t len = strlen(key);
    struct offset_entry *e;

    if (rmq_strmap_len(&o->map) >= RMQ_OFFSETS_ENTRIES_MAX) {
        return NULL;
    }
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL) {
        return NULL;
    }
    memcpy(e->key, key, len + 1);
    if (rmq_strmap_put(&o->map, e->key, e) < 0) {
        free(e);
        return NULL;
    }
    return e;
}

static int
entry_set(struct offset_entry *e, int32_t queue_id, int64_t offset)
{
    if ((uint32_t)queue_id >= e->count) {
        uint32_t count = (uint32_t)queue_id + 1;
        int64_t *n = realloc(e->offsets, count * sizeof(*n));

        if (n == NULL) {
            return -ENOMEM;
        }
        for (uint32_t i = e->count; i < count; i++) {
            n[i] = NONE;
        }
        e->offsets = n;
        e->count = count;
    }
    e->offsets[queue_id] = offset;
    return 0;
}

int
rmq_offsets_commit(struct rmq_offsets *o, const char *topic, const char *group,
                   int32_t queue_id, int64_t offset)
{
    char key[RMQ_TOPIC_NAME_MAX + 1 + RMQ_GROUP_NAME_MAX + 1];
    struct offset_entry *e;
    int ret;

    if (!rmq_topic_name_valid(topic, strlen(topic)) ||
        !rmq_group_name_valid(group, strlen(group)) || queue_id < 0 ||
        queue_id >= RMQ_TOPIC_QUEUES_MAX || offset == NONE) {
        return -EINVAL;
    }
    snprintf(key, sizeof(key), "%s@%s", topic, group);
    e = rmq_strmap_get(&o->map, key);
    if (e == NULL) {
        e = entry_add(o, key);
        if (e == NULL) {
            return rmq_strmap_len(&o->map) >= RMQ_OFFSETS_ENTRIES_MAX ? -ENOSPC : -ENOMEM;
        }
    }
    ret = entry_set(e, queue_id, offset);
    if (ret == 0) {
        o->dirty = true;
    }
    return ret;
}

int64_t
rmq_offsets_query(const struct rmq_offsets *o, const char *topic, const char *group,
                  int32_t queue_id)
{
    const struct offset_entry *e = entry_get(o, topic, group);

    if (e == NULL || queue_id < 0 || (uint32_t)queue_id >= e->count ||
        e->offsets[queue_id] == NONE) {
        return -1;
    }
    return e->offsets[queue_id];
}

int
rmq_offsets_persist(struct rmq_offsets *o)
{
    struct rmq_jw w;
    const char *text;
    size_t len;
    int ret;

    if (o->path == NULL || !o->dirty) {
        return 0;
    }
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_offsets_write(o, &w);
    ret = rmq_jw_finish(&w, &text, &len);
    if (ret == 0) {
        ret = rmq_file_replace(o->path, text, len);
    }
    if (ret == 0) {
        o->dirty = false;
    } else {
        RMQ_ERROR("broker: writing %s failed err=%s; offsets stay in memory, retried at the "
                  "next persist", o->path, strerror(-ret));
    }
    rmq_jw_fini(&w);
    return ret;
}

/* One "topic@group":{qid:offset,...} member; -EINVAL with why. */
static int
load_entry(struct rmq_offsets *o, const cJSON *queues, const char **why)
{
    const char *key = queues->string;
    const char *at = strchr(key, '@');
    struct offset_entry *e;
    const cJSON *q;

    if (at == NULL || !rmq_topic_name_valid(key, (size_t)(at - key)) ||
        !rmq_group_name_valid(at + 1, strlen(at + 1)) || !cJSON_IsObject(queues)) {
        *why = "entry is not \"<topic>@<group>\":{<queueId>:<offset>,...}";
        return -EINVAL;
    }
    e = rmq_strmap_get(&o->map, key);
    if (e == NULL && (e = entry_add(o, key)) == NULL) {
        *why = "too many entries or out of memory";
        return -ENOMEM;
    }
    cJSON_ArrayForEach(q, queues) {
        char *end;
        long qid = strtol(q->string, &end, 10);
        /* range before converting: an out-of-range double is undefined as an integer */
        bool whole = cJSON_IsNumber(q) && q->valuedouble >= -9.2e18 &&
                     q->valuedouble <= 9.2e18 &&
                     (double)(int64_t)q->valuedouble == q->valuedouble;
        int64_t off = whole ? (int64_t)q->valuedouble : NONE;

        if (*end != '\0' || end == q->string || qid < 0 || qid >= RMQ_TOPIC_QUEUES_MAX ||
            off == NONE) {
            *why = "queue ids must be 0..16383 with integer offsets";
            return -EINVAL;
        }
        if (entry_set(e, (int32_t)qid, off) < 0) {
            *why = "out of memory";
            return -ENOMEM;
        }
    }
    return 0;
}

static int
load_text(struct rmq_offsets *o, const char *text, size_t len, const char *where, char *err,
          size_t errlen)
{
    const cJSON *table;
    const cJSON *e;
    cJSON *root = rmq_json_parse(text, len);
    int ret = 0;

    table = cJSON_GetObjectItemCaseSensitive(root, "offsetTable");
    if (root == NULL || !cJSON_IsObject(table)) {
        snprintf(err, errlen, "%s is not {\"offsetTable\":{...}} JSON", where);
        cJSON_Delete(root);
        return -EBADMSG;
    }
    cJSON_ArrayForEach(e, table) {
        const char *why = NULL;

        ret = load_entry(o, e, &why);
        if (ret < 0) {
            snprintf(err, errlen, "%s: %.300s: %s", where, e->string, why);
            break;
        }
    }
    cJSON_Delete(root);
    return ret;
}

static int
load(struct rmq_offsets *o, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int ret = rmq_file_read_all(o->path, RMQ_OFFSETS_FILE_MAX, &text, &len);

    if (ret == -ENOENT) {
        return 0;
    }
    if (ret < 0) {
        snprintf(err, errlen, "cannot read %s: %s", o->path, strerror(-ret));
        return ret;
    }
    ret = load_text(o, text, len, o->path, err, errlen);
    free(text);
    return ret;
}

int
rmq_offsets_parse(struct rmq_offsets *o, const char *text, size_t len, char *err, size_t errlen)
{
    int ret;

    memset(o, 0, sizeof(*o));
    rmq_strmap_init(&o->map);
    ret = load_text(o, text, len, "offset table", err, errlen);
    if (ret < 0) {
        rmq_offsets_fini(o);
    }
    return ret;
}

void
rmq_offsets_write(const struct rmq_offsets *o, struct rmq_jw *w)
{
    const struct offset_entry *e;

    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "offsetTable");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; (e = rmq_strmap_next(&o->map, &i)) != NULL;) {
        rmq_jw_key(w, e->key);
        rmq_jw_obj_begin(w);
        for (uint32_t q = 0; q < e->count; q++) {
            if (e->offsets[q] != NONE) {
                rmq_jw_key_i64(w, q);
                rmq_jw_i64(w, e->offsets[q]);
            }
        }
        rmq_jw_obj_end(w);
    }
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
}

void
rmq_offsets_each(const struct rmq_offsets *o, rmq_offsets_fn fn, void *ctx)
{
    const struct offset_entry *e;

    for (uint32_t i = 0; (e = rmq_strmap_next(&o->map, &i)) != NULL;) {
        for (uint32_t q = 0; q < e->count; q++) {
            if (e->offsets[q] != NONE) {
                fn(ctx, e->key, (int32_t)q, e->offsets[q]);
            }
        }
    }
}

int
rmq_offsets_set_key(struct rmq_offsets *o, const char *key, int32_t queue_id, int64_t offset)
{
    struct offset_entry *e = rmq_strmap_get(&o->map, key);
    int ret;

    if (e == NULL && (e = entry_add(o, key)) == NULL) {
        return -ENOMEM;
    }
    if (offset == NONE) {
        if ((uint32_t)queue_id < e->count) {
            e->offsets[queue_id] = NONE;
        }
        return 0;
    }
    if ((uint32_t)queue_id < e->count && e->offsets[queue_id] == offset) {
        return 0;
    }
    ret = entry_set(e, queue_id, offset);
    if (ret == 0) {
        o->dirty = true;
    }
    return ret;
}

int64_t
rmq_offsets_get_key(const struct rmq_offsets *o, const char *key, int32_t queue_id)
{
    const struct offset_entry *e = rmq_strmap_get(&o->map, key);

    return e != NULL && (uint32_t)queue_id < e->count ? e->offsets[queue_id] : NONE;
}

int
rmq_offsets_init(struct rmq_offsets *o, const char *path, char *err, size_t errlen)
{
    int ret;

    memset(o, 0, sizeof(*o));
    rmq_strmap_init(&o->map);
    if (path == NULL) {
        return 0;
    }
    o->path = strdup(path);
    if (o->path == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ret = load(o, err, errlen);
    if (ret < 0) {
        rmq_offsets_fini(o);
    }
    return ret;
}

void
rmq_offsets_fini(struct rmq_offsets *o)
{
    struct offset_entry *e;

    for (uint32_t i = 0; (e = rmq_strmap_next(&o->map, &i)) != NULL;) {
        free(e->offsets);
        free(e);
    }
    rmq_strmap_fini(&o->map);
    free(o->path);
    o->path = NULL;
}

bool
rmq_offsets_next_topic(const struct rmq_offsets *o, const char *group, uint32_t *pos, char *topic)
{
    size_t glen = strlen(group);
    void *v;

    while ((v = rmq_strmap_next(&o->map, pos)) != NULL) {
        const char *key = ((const struct offset_entry *)v)->key;
        const char *at = strchr(key, '@');      /* names hold no '@' */

        if (at != NULL && strlen(at + 1) == glen && memcmp(at + 1, group, glen) == 0 &&
            (size_t)(at - key) <= RMQ_TOPIC_NAME_MAX) {
            memcpy(topic, key, (size_t)(at - key));
            topic[at - key] = '\0';
            return true;
        }
    }
    return false;
}
