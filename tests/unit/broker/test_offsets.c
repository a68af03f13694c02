/* Consumer offsets: commit, query, negatives verbatim, consumerOffset.json round trips. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/offsets.h"
#include "core/file.h"

static char dir[64];
static char path[128];
static struct rmq_offsets o;
static char err[512];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/dev/shm/rmq-offsets-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config/consumerOffset.json", dir);
    cr_assert_eq(rmq_offsets_init(&o, path, err, sizeof(err)), 0, "%s", err);
}

static void
teardown(void)
{
    char cmd[128];

    rmq_offsets_fini(&o);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(offsets, .init = setup, .fini = teardown);

Test(offsets, commits_are_queried_back_and_negatives_kept_verbatim)
{
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 0), -1);
    cr_assert_eq(rmq_offsets_commit(&o, "T", "G", 3, 17), 0);
    cr_assert_eq(rmq_offsets_commit(&o, "T", "G", 1, -1), 0);     /* ali-ons does this */
    cr_assert_eq(rmq_offsets_commit(&o, "T", "G2", 0, 5), 0);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 3), 17);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 1), -1);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 0), -1, "a gap below a committed queue");
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 99), -1);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G2", 0), 5);
    cr_assert_eq(rmq_offsets_commit(&o, "T", "G", 3, 20), 0);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 3), 20, "a commit replaces");
}

Test(offsets, bad_names_and_queue_ids_are_refused)
{
    char group[300];

    cr_assert_eq(rmq_offsets_commit(&o, "", "G", 0, 1), -EINVAL);
    cr_assert_eq(rmq_offsets_commit(&o, "T", "", 0, 1), -EINVAL);
    cr_assert_eq(rmq_offsets_commit(&o, "T@x", "G", 0, 1), -EINVAL);
    cr_assert_eq(rmq_offsets_commit(&o, "T", "a/b", 0, 1), -EINVAL);
    cr_assert_eq(rmq_offsets_commit(&o, "T", "G", -1, 1), -EINVAL);
    cr_assert_eq(rmq_offsets_commit(&o, "T", "G", 16384, 1), -EINVAL);
    memset(group, 'g', sizeof(group) - 1);
    group[sizeof(group) - 1] = '\0';
    cr_assert_eq(rmq_offsets_commit(&o, "T", group, 0, 1), -EINVAL);
    group[255] = '\0';
    cr_assert_eq(rmq_offsets_commit(&o, "T", group, 0, 1), 0, "255 characters are fine");
    cr_assert_eq(rmq_strmap_len(&o.map), 1);
}

Test(offsets, the_file_is_the_reference_format_and_loads_back)
{
    struct rmq_offsets again;
    char *text;
    size_t len;

    cr_assert_eq(rmq_offsets_persist(&o), 0);
    cr_assert_eq(rmq_file_read_all(path, 4096, &text, &len), -ENOENT, "no change, no file");
    cr_assert_eq(rmq_offsets_commit(&o, "TopicTest", "please_rename_unique_group_name", 0, 15),
                 0);
    cr_assert_eq(rmq_offsets_commit(&o, "TopicTest", "please_rename_unique_group_name", 1, 7),
                 0);
    cr_assert_eq(rmq_offsets_persist(&o), 0);
    cr_assert(!o.dirty);
    cr_assert_eq(rmq_file_read_all(path, 4096, &text, &len), 0);
    cr_assert_str_eq(text, "{\"offsetTable\":{\"TopicTest@please_rename_unique_group_name\":"
                           "{0:15,1:7}}}");
    free(text);
    cr_assert_eq(rmq_offsets_init(&again, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(rmq_offsets_query(&again, "TopicTest", "please_rename_unique_group_name", 1), 7);
    rmq_offsets_fini(&again);
}

Test(offsets, standard_json_from_elsewhere_loads_too)
{
    static const char file[] = "{\"offsetTable\":{\"T@G\":{\"0\":3,\"2\":-1}}}";

    rmq_offsets_fini(&o);
    cr_assert_eq(rmq_file_replace(path, file, sizeof(file) - 1), 0);
    cr_assert_eq(rmq_offsets_init(&o, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 0), 3);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 2), -1);
    cr_assert_eq(rmq_offsets_query(&o, "T", "G", 1), -1);
}

Test(offsets, a_damaged_file_stops_the_load_with_a_reason)
{
    static const char *const files[] = {
        "{",
        "{\"offsetTable\":[]}",
        "{\"offsetTable\":{\"nogroup\":{0:1}}}",
        "{\"offsetTable\":{\"T@G\":{\"x\":1}}}",
        "{\"offsetTable\":{\"T@G\":{16384:1}}}",
        "{\"offsetTable\":{\"T@G\":{0:1.5}}}",
        "{\"offsetTable\":{\"T@G\":{0:1e30}}}",
        "{\"offsetTable\":{\"T@G\":{0:\"1\"}}}",
    };

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct rmq_offsets bad;

        cr_assert_eq(rmq_file_replace(path, files[i], strlen(files[i])), 0);
        err[0] = '\0';
        cr_assert_lt(rmq_offsets_init(&bad, path, err, sizeof(err)), 0, "file %zu loaded", i);
        cr_assert_not_null(strstr(err, path), "file %zu: '%s' names no file", i, err);
    }
}
