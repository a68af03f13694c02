/* The broker's topic table: validation, versioning, topics.json round trips. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/topics.h"
#include "core/file.h"

static char dir[64];
static char path[128];
static struct rmq_topics t;
static char err[256];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/dev/shm/rmq-topics-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config/topics.json", dir);
    cr_assert_eq(rmq_topics_init(&t, path, err, sizeof(err)), 0, "%s", err);
}

static void
teardown(void)
{
    char cmd[128];

    rmq_topics_fini(&t);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(topics, .init = setup, .fini = teardown);

static struct rmq_topic_config
topic(const char *name, int32_t queues, int32_t perm)
{
    struct rmq_topic_config c = {.read_queues = queues, .write_queues = queues, .perm = perm};

    snprintf(c.name, sizeof(c.name), "%s", name);
    return c;
}

Test(topics, changes_bump_the_version_and_survive_a_reload)
{
    struct rmq_topic_config c = topic("TopicTest", 4, 6);
    const struct rmq_topic_config *got;
    struct rmq_topics again;

    cr_assert_eq(rmq_topics_put(&t, &c, NULL), 0);
    cr_assert_eq(t.version.counter, 1);
    cr_assert_eq(rmq_topics_put(&t, &c, NULL), 0);
    cr_assert_eq(t.version.counter, 1, "an unchanged config is no change");
    c.order = true;
    c.filter = RMQ_FILTER_MULTI_TAG;
    c.write_queues = 2;
    cr_assert_eq(rmq_topics_put(&t, &c, NULL), 0);
    cr_assert_eq(t.version.counter, 2);
    cr_assert_eq(rmq_topics_put(&t, &(struct rmq_topic_config){0}, NULL), -EINVAL);
    c = topic("Gone", 1, 6);
    cr_assert_eq(rmq_topics_put(&t, &c, NULL), 0);
    cr_assert_eq(rmq_topics_delete(&t, "Gone"), 0);
    cr_assert_eq(rmq_topics_delete(&t, "Gone"), -ENOENT);
    cr_assert_eq(t.version.counter, 4);

    cr_assert_eq(rmq_topics_init(&again, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(again.version.counter, 4);
    cr_assert_eq(again.version.timestamp, t.version.timestamp);
    cr_assert_eq(rmq_strmap_len(&again.map), 1);
    got = rmq_topics_get(&again, "TopicTest", 9);
    cr_assert_not_null(got);
    cr_assert_eq(got->read_queues, 4);
    cr_assert_eq(got->write_queues, 2);
    cr_assert_eq(got->perm, 6);
    cr_assert(got->order);
    cr_assert_eq(got->filter, RMQ_FILTER_MULTI_TAG);
    cr_assert_null(rmq_topics_get(&again, "Gone", 4));
    rmq_topics_fini(&again);
}

Test(topics, file_is_the_reference_format)
{
    struct rmq_topic_config c = topic("TopicTest", 4, 6);
    char *text;
    size_t len;
    char want[512];

    cr_assert_eq(rmq_topics_put(&t, &c, NULL), 0);
    cr_assert_eq(rmq_file_read_all(path, 4096, &text, &len), 0);
    snprintf(want, sizeof(want),
             "{\"dataVersion\":{\"counter\":1,\"timestamp\":%lld},\"topicConfigTable\":"
             "{\"TopicTest\":{\"order\":false,\"perm\":6,\"readQueueNums\":4,"
             "\"topicFilterType\":\"SINGLE_TAG\",\"topicName\":\"TopicTest\","
             "\"topicSysFlag\":0,\"writeQueueNums\":4}}}",
             (long long)t.version.timestamp);
    cr_assert_str_eq(text, want);
    free(text);
}

Test(topics, bad_configs_are_refused_and_change_nothing)
{
    static const struct {
        const char *name;
        int32_t queues;
        int32_t perm;
        const char *why;
    } bad[] = {
        {"", 4, 6, "name"}, {"a/b", 4, 6, "name"}, {"../x", 4, 6, "name"},
        {"T", 0, 6, "queue"}, {"T", -3, 6, "queue"}, {"T", 16385, 6, "queue"},
        {"T", 4, 16, "perm"}, {"T", 4, -1, "perm"},
    };
    char longname[200];
    const char *why;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rmq_topic_config c = topic(bad[i].name, bad[i].queues, bad[i].perm);

        why = NULL;
        cr_assert_eq(rmq_topics_put(&t, &c, &why), -EINVAL, "case %zu", i);
        cr_assert_not_null(why);
        cr_assert_not_null(strstr(why, bad[i].why), "case %zu: %s", i, why);
    }
    memset(longname, 'x', 128);
    cr_assert(!rmq_topic_name_valid(longname, 128));
    cr_assert(rmq_topic_name_valid(longname, 127));
    cr_assert(rmq_topic_name_valid("%RETRY%group_1|a-b", 18));
    cr_assert_eq(t.version.counter, 0);
    cr_assert_eq(rmq_strmap_len(&t.map), 0);
    cr_assert_eq(rmq_file_read_all(path, 4096, &(char *){NULL}, &(size_t){0}), -ENOENT,
                 "nothing written");
}

Test(topics, system_topics_are_added_once_and_kept_as_configured)
{
    struct rmq_topics_system sys = {
        .cluster = "DefaultCluster", .broker_name = "broker-a", .auto_create = true,
        .default_queues = 8,
    };
    struct rmq_topic_config c;
    const struct rmq_topic_config *tbw;

    cr_assert_eq(rmq_topics_add_system(&t, &sys), 0);
    cr_assert_eq(t.version.counter, 1);
    tbw = rmq_topics_get(&t, "TBW102", 6);
    cr_assert_not_null(tbw);
    cr_assert_eq(tbw->read_queues, 8);
    cr_assert_eq(tbw->perm, 7);
    cr_assert_not_null(rmq_topics_get(&t, "SELF_TEST_TOPIC", 15));
    cr_assert_not_null(rmq_topics_get(&t, "DefaultCluster", 14));
    cr_assert_not_null(rmq_topics_get(&t, "broker-a", 8));
    cr_assert_not_null(rmq_topics_get(&t, "OFFSET_MOVED_EVENT", 18));
    cr_assert_eq(rmq_topics_get(&t, "SCHEDULE_TOPIC_XXXX", 19)->read_queues, 18);
    cr_assert_eq(rmq_topics_get(&t, "BenchmarkTest", 13)->read_queues, 1024);
    cr_assert_not_null(rmq_topics_get(&t, "DefaultCluster_REPLY_TOPIC", 26));
    /* an operator's change to a system topic stays; a second start adds nothing */
    c = *tbw;
    c.read_queues = c.write_queues = 4;
    cr_assert_eq(rmq_topics_put(&t, &c, NULL), 0);
    cr_assert_eq(rmq_topics_add_system(&t, &sys), 0);
    cr_assert_eq(t.version.counter, 2);
    cr_assert_eq(rmq_topics_get(&t, "TBW102", 6)->read_queues, 4);
}

Test(topics, without_auto_create_there_is_no_template_topic)
{
    struct rmq_topics_system sys = {.cluster = "C", .broker_name = "b", .default_queues = 8};

    cr_assert_eq(rmq_topics_add_system(&t, &sys), 0);
    cr_assert_null(rmq_topics_get(&t, "TBW102", 6));
}

Test(topics, a_damaged_file_stops_the_load_with_a_reason)
{
    static const char *const files[] = {
        "not json",
        "{\"dataVersion\":{}}",
        "{\"topicConfigTable\":{\"T\":{\"readQueueNums\":4294967297,\"writeQueueNums\":1}}}",
        "{\"topicConfigTable\":{\"a/b\":{}}}",
        "{\"topicConfigTable\":{\"T\":{\"topicName\":\"U\"}}}",
        "{\"topicConfigTable\":{\"T\":{\"topicFilterType\":\"NONE\"}}}",
    };

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct rmq_topics bad;

        cr_assert_eq(rmq_file_replace(path, files[i], strlen(files[i])), 0);
        err[0] = '\0';
        cr_assert_lt(rmq_topics_init(&bad, path, err, sizeof(err)), 0, "file %zu loaded", i);
        cr_assert_not_null(strstr(err, path), "file %zu: '%s' names no file", i, err);
    }
}
