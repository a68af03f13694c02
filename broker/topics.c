/* The broker's topic table; see topics.h. */
#include "broker/topics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"

static const char *const filter_names[] = {"SINGLE_TAG", "MULTI_TAG"};

bool
rmq_topic_name_valid(const char *name, size_t len)
{
    return len > 0 && len <= RMQ_TOPIC_NAME_MAX && rmq_name_chars_valid(name, len);
}

bool
rmq_name_chars_valid(const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '%' || ch == '|' || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return true;
}

static int
check(const struct rmq_topic_config *c, const char **why)
{
    const char *bad = NULL;

    if (!rmq_topic_name_valid(c->name, strnlen(c->name, sizeof(c->name)))) {
        bad = "topic name must be 1 to 127 of [%|a-zA-Z0-9_-]";
    } else if (c->read_queues < 1 || c->read_queues > RMQ_TOPIC_QUEUES_MAX ||
               c->write_queues < 1 || c->write_queues > RMQ_TOPIC_QUEUES_MAX) {
        bad = "queue counts must be 1 to 16384";
    } else if (c->perm < 0 || c->perm > 15) {
        bad = "perm must be 0 to 15";
    } else if (c->filter != RMQ_FILTER_SINGLE_TAG && c->filter != RMQ_FILTER_MULTI_TAG) {
        bad = "topicFilterType must be SINGLE_TAG or MULTI_TAG";
    } else if (c->sys_flag < 0) {
        bad = "topicSysFlag must not be negative";
    }
    if (why != NULL) {
        *why = bad;
    }
    return bad != NULL ? -EINVAL : 0;
}

static void
bump_version(struct rmq_topics *t)
{
    t->version.counter++;
    t->version.timestamp = (int64_t)rmq_clock_wall_ms();
}

static void
write_config(const struct rmq_topic_config *c, struct rmq_jw *w)
{
    /* field order as the reference's fastjson writes it: alphabetical */
    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "order");
    rmq_jw_bool(w, c->order);
    rmq_jw_key(w, "perm");
    rmq_jw_i64(w, c->perm);
    rmq_jw_key(w, "readQueueNums");
    rmq_jw_i64(w, c->read_queues);
    rmq_jw_key(w, "topicFilterType");
    rmq_jw_str(w, filter_names[c->filter]);
    rmq_jw_key(w, "topicName");
    rmq_jw_str(w, c->name);
    rmq_jw_key(w, "topicSysFlag");
    rmq_jw_i64(w, c->sys_flag);
    rmq_jw_key(w, "writeQueueNums");
    rmq_jw_i64(w, c->write_queues);
    rmq_jw_obj_end(w);
}

void
rmq_topics_write_wrapper(const struct rmq_topics *t, struct rmq_jw *w)
{
    const struct rmq_topic_config *c;

    rmq_jw_obj_begin(w);
    rmq_jw_key(w, "dataVersion");
    rmq_jw_data_version(w, &t->version);
    rmq_jw_key(w, "topicConfigTable");
    rmq_jw_obj_begin(w);
    for (uint32_t i = 0; (c = rmq_strmap_next(&t->map, &i)) != NULL;) {
        rmq_jw_key(w, c->name);
        write_config(c, w);
    }
    rmq_jw_obj_end(w);
    rmq_jw_obj_end(w);
}

static int
persist(const struct rmq_topics *t)
{
    struct rmq_jw w;
    const char *text;
    size_t len;
    int ret;

    if (t->path == NULL) {
        return 0;
    }
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    rmq_topics_write_wrapper(t, &w);
    ret = rmq_jw_finish(&w, &text, &len);
    if (ret == 0) {
        ret = rmq_file_replace(t->path, text, len);
    }
    if (ret < 0) {
        RMQ_ERROR("broker: writing %s failed err=%s; the change holds in memory until the "
                  "next successful write", t->path, strerror(-ret));
    }
    rmq_jw_fini(&w);
    return ret;
}

/* Insert or overwrite without persisting. */
static int
put_one(struct rmq_topics *t, const struct rmq_topic_config *c)
{
    struct rmq_topic_config *cur = rmq_strmap_get(&t->map, c->name);

    if (cur != NULL) {
        *cur = *c;
        return 0;
    }
    cur = malloc(sizeof(*cur));
    if (cur == NULL) {
        return -ENOMEM;
    }
    *cur = *c;
    if (rmq_strmap_put(&t->map, cur->name, cur) < 0) {
        free(cur);
        return -ENOMEM;
    }
    return 0;
}

const struct rmq_topic_config *
rmq_topics_get(const struct rmq_topics *t, const char *name, size_t len)
{
    return rmq_strmap_get_n(&t->map, name, len);
}

int
rmq_topics_put(struct rmq_topics *t, const struct rmq_topic_config *c, const char **why)
{
    const struct rmq_topic_config *cur;
    int ret = check(c, why);

    if (ret < 0) {
        return ret;
    }
    cur = rmq_strmap_get(&t->map, c->name);
    /* field by field: padding bytes of a caller's struct are not part of the config */
    if (cur != NULL && cur->read_queues == c->read_queues &&
        cur->write_queues == c->write_queues && cur->perm == c->perm &&
        cur->filter == c->filter && cur->sys_flag == c->sys_flag && cur->order == c->order) {
        return 0;
    }
    ret = put_one(t, c);
    if (ret < 0) {
        return ret;
    }
    bump_version(t);
    return persist(t);
}

int
rmq_topics_delete(struct rmq_topics *t, const char *name)
{
    struct rmq_topic_config *c = rmq_strmap_del(&t->map, name);

    if (c == NULL) {
        return -ENOENT;
    }
    free(c);
    bump_version(t);
    return persist(t);
}

static struct rmq_topic_config
config_of(const char *name, int32_t queues, int32_t perm)
{
    struct rmq_topic_config c = {
        .read_queues = queues, .write_queues = queues, .perm = perm,
    };

    snprintf(c.name, sizeof(c.name), "%s", name);
    return c;
}

int
rmq_topics_add_system(struct rmq_topics *t, const struct rmq_topics_system *sys)
{
    const int rw = RMQ_PERM_READ | RMQ_PERM_WRITE;
    struct rmq_topic_config want[8];
    char reply[RMQ_TOPIC_NAME_MAX + 1];
    int n = 0;
    int added = 0;

    want[n++] = config_of("SELF_TEST_TOPIC", 1, rw);
    if (sys->auto_create) {
        want[n++] = config_of("TBW102", sys->default_queues, rw | RMQ_PERM_INHERIT);
    }
    want[n++] = config_of("BenchmarkTest", 1024, rw);
    want[n++] = config_of(sys->cluster, 16, rw | RMQ_PERM_INHERIT);
    want[n++] = config_of(sys->broker_name, 1, rw | RMQ_PERM_INHERIT);
    want[n++] = config_of("OFFSET_MOVED_EVENT", 1, rw);
    want[n++] = config_of("SCHEDULE_TOPIC_XXXX", 18, rw);
    snprintf(reply, sizeof(reply), "%s_REPLY_TOPIC", sys->cluster);
    want[n++] = config_of(reply, 1, rw);
    for (int i = 0; i < n; i++) {
        const char *why;
        int ret;

        if (rmq_strmap_get(&t->map, want[i].name) != NULL) {
            continue;
        }
        if (check(&want[i], &why) < 0) {
            RMQ_ERROR("broker: system topic %s refused: %s", want[i].name, why);
            return -EINVAL;
        }
        ret = put_one(t, &want[i]);
        if (ret < 0) {
            return ret;
        }
        added++;
    }
    if (added == 0) {
        return 0;
    }
    bump_version(t);
    return persist(t);
}

/* An int32 member; a number beyond int32 reads as -1, which every check refuses. */
static int32_t
json_i32(const cJSON *obj, const char *name, int32_t def)
{
    int64_t v = rmq_json_get_i64(obj, name, def);

    return v >= INT32_MIN && v <= INT32_MAX ? (int32_t)v : -1;
}

/* One topicConfigTable entry from JSON; -EINVAL with why. */
static int
parse_config(const cJSON *obj, const char *name, struct rmq_topic_config *c, const char **why)
{
    const char *topic_name = rmq_json_get_str(obj, "topicName");

    memset(c, 0, sizeof(*c));
    if (!cJSON_IsObject(obj) || strlen(name) > RMQ_TOPIC_NAME_MAX ||
        (topic_name != NULL && strcmp(topic_name, name) != 0)) {
        *why = "entry is not an object named as its key";
        return -EINVAL;
    }
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->read_queues = json_i32(obj, "readQueueNums", 16);
    c->write_queues = json_i32(obj, "writeQueueNums", 16);
    c->perm = json_i32(obj, "perm", RMQ_PERM_READ | RMQ_PERM_WRITE);
    c->filter = rmq_json_get_enum(obj, "topicFilterType", filter_names, 2, -1);
    c->sys_flag = json_i32(obj, "topicSysFlag", 0);
    c->order = rmq_json_get_bool(obj, "order", false);
    return check(c, why);
}

/* Entries of a TopicConfigSerializeWrapper text into t (and its dataVersion); where
 * names the text's source in err. */
static int
load_text(struct rmq_topics *t, const char *text, size_t len, const char *where, char *err,
          size_t errlen)
{
    const cJSON *table;
    const cJSON *e;
    const cJSON *dv;
    cJSON *root = rmq_json_parse(text, len);
    int ret = 0;

    table = cJSON_GetObjectItemCaseSensitive(root, "topicConfigTable");
    if (root == NULL || !cJSON_IsObject(table)) {
        snprintf(err, errlen, "%s is not {\"topicConfigTable\":{...}} JSON", where);
        cJSON_Delete(root);
        return -EBADMSG;
    }
    dv = cJSON_GetObjectItemCaseSensitive(root, "dataVersion");
    t->version.counter = rmq_json_get_i64(dv, "counter", 0);
    t->version.timestamp = rmq_json_get_i64(dv, "timestamp", 0);
    cJSON_ArrayForEach(e, table) {
        struct rmq_topic_config c;
        const char *why = NULL;

        ret = parse_config(e, e->string, &c, &why);
        if (ret < 0) {
            snprintf(err, errlen, "%s: topic %.*s: %s", where, RMQ_TOPIC_NAME_MAX, e->string,
                     why);
            break;
        }
        ret = put_one(t, &c);
        if (ret < 0) {
            snprintf(err, errlen, "%s: out of memory", where);
            break;
        }
    }
    cJSON_Delete(root);
    return ret;
}

static int
load(struct rmq_topics *t, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int ret = rmq_file_read_all(t->path, RMQ_TOPICS_FILE_MAX, &text, &len);

    if (ret == -ENOENT) {
        return 0;
    }
    if (ret < 0) {
        snprintf(err, errlen, "cannot read %s: %s", t->path, strerror(-ret));
        return ret;
    }
    ret = load_text(t, text, len, t->path, err, errlen);
    free(text);
    return ret;
}

int
rmq_topics_replace(struct rmq_topics *t, const char *text, size_t len, bool *changed, char *err,
                   size_t errlen)
{
    struct rmq_topics next;
    struct rmq_topic_config *c;
    int ret;

    *changed = false;
    memset(&next, 0, sizeof(next));
    rmq_strmap_init(&next.map);
    ret = load_text(&next, text, len, "the master's topic table", err, errlen);
    if (ret < 0 || (next.version.counter == t->version.counter &&
                    next.version.timestamp == t->version.timestamp)) {
        rmq_topics_fini(&next);
        return ret;
    }
    for (uint32_t i = 0; (c = rmq_strmap_next(&t->map, &i)) != NULL;) {
        free(c);
    }
    rmq_strmap_fini(&t->map);
    t->map = next.map;
    t->version = next.version;
    *changed = true;
    return t->path != NULL ? persist(t) : 0;
}

int
rmq_topics_init(struct rmq_topics *t, const char *path, char *err, size_t errlen)
{
    int ret;

    memset(t, 0, sizeof(*t));
    rmq_strmap_init(&t->map);
    if (path == NULL) {
        return 0;
    }
    t->path = strdup(path);
    if (t->path == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ret = load(t, err, errlen);
    if (ret < 0) {
        rmq_topics_fini(t);
    }
    return ret;
}

void
rmq_topics_fini(struct rmq_topics *t)
{
    struct rmq_topic_config *c;

    for (uint32_t i = 0; (c = rmq_strmap_next(&t->map, &i)) != NULL;) {
        free(c);
    }
    rmq_strmap_fini(&t->map);
    free(t->path);
    t->path = NULL;
}
