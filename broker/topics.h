/*
 * The broker's topic table (spec/STORE.md §16, REMOTING.md §10): one TopicConfig per
 * topic, a DataVersion bumped on every change, persisted as config/topics.json in the
 * reference's format so a RocketMQ broker's file loads here and ours loads there.
 *
 * Every change is validated whole before anything moves: a refused change leaves the
 * table, the version and the file as they were. Changes are rare admin operations
 * (or a topic auto-created once); each rewrites the file atomically (core/file.h).
 */
#ifndef RMQ_BROKER_TOPICS_H
#define RMQ_BROKER_TOPICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/strmap.h"
#include "net/json.h"

#define RMQ_TOPIC_NAME_MAX 127          /* TOPIC_MAX_LENGTH of the 4.x reference */
#define RMQ_TOPIC_QUEUES_MAX 16384      /* what the NameServer accepts per topic */
#define RMQ_TOPICS_FILE_MAX (64u << 20)

/* PermName bits */
#define RMQ_PERM_PRIORITY 8
#define RMQ_PERM_READ 4
#define RMQ_PERM_WRITE 2
#define RMQ_PERM_INHERIT 1

enum rmq_topic_filter { RMQ_FILTER_SINGLE_TAG, RMQ_FILTER_MULTI_TAG };

struct rmq_topic_config {
    char name[RMQ_TOPIC_NAME_MAX + 1];
    int32_t read_queues;
    int32_t write_queues;
    int32_t perm;
    int32_t filter;                 /* enum rmq_topic_filter */
    int32_t sys_flag;
    bool order;
};

struct rmq_topics {
    struct rmq_strmap map;          /* name -> owned struct rmq_topic_config */
    struct rmq_data_version version;
    char *path;                     /* owned; NULL keeps the table in memory only */
};

/* What a broker registers at start (STORE.md §16). */
struct rmq_topics_system {
    const char *cluster;            /* the cluster name becomes a topic */
    const char *broker_name;        /* so does the broker name */
    bool auto_create;               /* TBW102, the template for auto-created topics */
    int32_t default_queues;         /* TBW102's queue count (defaultTopicQueueNums) */
};

/* Load path (absent: empty table). -errno with the reason in err. */
int rmq_topics_init(struct rmq_topics *t, const char *path, char *err, size_t errlen);
void rmq_topics_fini(struct rmq_topics *t);

/* A topic name the reference accepts: [%|a-zA-Z0-9_-]{1,127}. */
bool rmq_topic_name_valid(const char *name, size_t len);
/* Only [%|a-zA-Z0-9_-] (topic and group names), any length. */
bool rmq_name_chars_valid(const char *name, size_t len);

const struct rmq_topic_config *rmq_topics_get(const struct rmq_topics *t, const char *name,
                                              size_t len);

/*
 * Create or replace c->name. 0 (also when nothing changed: no version bump, no write),
 * -EINVAL with *why for a bad config, -ENOMEM, or the file write's -errno (the table
 * keeps the change in memory; the next successful write persists it).
 */
int rmq_topics_put(struct rmq_topics *t, const struct rmq_topic_config *c, const char **why);
/* Remove a topic: 0, -ENOENT, or the file write's -errno. */
int rmq_topics_delete(struct rmq_topics *t, const char *name);
/* Add the system topics that are missing; existing ones are left as configured. */
int rmq_topics_add_system(struct rmq_topics *t, const struct rmq_topics_system *sys);

/* A slave takes its master's table: text is a TopicConfigSerializeWrapper. When its
 * dataVersion differs from ours, the table is replaced and persisted (*changed).
 * 0, -EBADMSG with why in err (the table stays), or the file write's -errno. */
int rmq_topics_replace(struct rmq_topics *t, const char *text, size_t len, bool *changed,
                       char *err, size_t errlen);

/* {"dataVersion":{...},"topicConfigTable":{...}}: the TopicConfigSerializeWrapper. */
void rmq_topics_write_wrapper(const struct rmq_topics *t, struct rmq_jw *w);

#endif
