/* KV config: in-memory operations, the namespace view, atomic persistence and reload. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "namesrv/kvconfig.h"

static char dir[64];
static char path[128];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rmq-kv-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sub/kvConfig.json", dir);
}

static void
teardown(void)
{
    char cmd[160];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(kvconfig, .init = setup, .fini = teardown);

Test(kvconfig, put_get_delete_and_namespace_view)
{
    struct rmq_kvconfig kv;
    struct rmq_jw w;
    const char *text;
    size_t len;
    char err[256];

    cr_assert_eq(rmq_kvconfig_init(&kv, NULL, err, sizeof(err)), 0);
    cr_assert_null(rmq_kvconfig_get(&kv, "ns", "k"));
    cr_assert_eq(rmq_kvconfig_put(&kv, "ns", "k", "v1"), 0);
    cr_assert_eq(rmq_kvconfig_put(&kv, "ns", "k", "v2"), 0);
    cr_assert_str_eq(rmq_kvconfig_get(&kv, "ns", "k"), "v2");
    rmq_jw_init(&w, RMQ_JSON_FASTJSON);
    cr_assert(rmq_kvconfig_write_namespace(&kv, "ns", &w));
    cr_assert_eq(rmq_jw_finish(&w, &text, &len), 0);
    cr_assert_str_eq(text, "{\"table\":{\"k\":\"v2\"}}");
    cr_assert(rmq_kvconfig_delete(&kv, "ns", "k"));
    cr_assert_not(rmq_kvconfig_delete(&kv, "ns", "k"));
    rmq_jw_reset(&w, RMQ_JSON_FASTJSON);
    cr_assert_not(rmq_kvconfig_write_namespace(&kv, "ns", &w), "empty namespace is gone");
    rmq_jw_fini(&w);
    cr_assert_eq(rmq_kvconfig_persist(&kv), 0, "memory only: nothing to write");
    rmq_kvconfig_fini(&kv);
}

Test(kvconfig, persisted_file_reloads_and_leaves_no_temp_file)
{
    struct rmq_kvconfig kv;
    char err[256];
    char tmp[160];
    FILE *f;
    char buf[256] = "";

    cr_assert_eq(rmq_kvconfig_init(&kv, path, err, sizeof(err)), 0, "missing file is empty");
    cr_assert_eq(rmq_kvconfig_put(&kv, "ORDER_TOPIC_CONFIG", "TopicA", "broker-a:4"), 0);
    cr_assert_eq(rmq_kvconfig_put(&kv, "ns2", "quote\"key", "line\nvalue"), 0);
    cr_assert(kv.dirty);
    cr_assert_eq(rmq_kvconfig_persist(&kv), 0);
    cr_assert_not(kv.dirty);
    rmq_kvconfig_fini(&kv);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    cr_assert_eq(access(tmp, F_OK), -1);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_gt(fread(buf, 1, sizeof(buf) - 1, f), 0);
    fclose(f);
    cr_assert_not_null(strstr(buf, "{\"configTable\":{"), "%s", buf);
    cr_assert_not_null(strstr(buf, "\"ORDER_TOPIC_CONFIG\":{\"TopicA\":\"broker-a:4\"}"), "%s",
                       buf);
    cr_assert_eq(rmq_kvconfig_init(&kv, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(kv.dirty, "loaded is not changed");
    cr_assert_str_eq(rmq_kvconfig_get(&kv, "ORDER_TOPIC_CONFIG", "TopicA"), "broker-a:4");
    cr_assert_str_eq(rmq_kvconfig_get(&kv, "ns2", "quote\"key"), "line\nvalue");
    rmq_kvconfig_fini(&kv);
}

Test(kvconfig, malformed_file_is_an_error_naming_it)
{
    static const char *bad[] = {"not json", "[]", "{\"configTable\":[]}",
                                "{\"configTable\":{\"ns\":3}}",
                                "{\"configTable\":{\"ns\":{\"k\":1}}}"};
    struct rmq_kvconfig kv;
    char err[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f;

        snprintf(path, sizeof(path), "%s/kv%zu.json", dir, i);
        f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        err[0] = '\0';
        cr_assert_eq(rmq_kvconfig_init(&kv, path, err, sizeof(err)), -EBADMSG, "%s", bad[i]);
        cr_assert_not_null(strstr(err, path), "%s", err);
    }
}

Test(kvconfig, unwritable_directory_is_reported)
{
    struct rmq_kvconfig kv;
    char err[256];
    char file[160];
    FILE *f;

    /* the directory path runs through a regular file */
    snprintf(file, sizeof(file), "%s/plain", dir);
    f = fopen(file, "w");
    fclose(f);
    snprintf(path, sizeof(path), "%s/plain/kvConfig.json", dir);
    cr_assert_eq(rmq_kvconfig_init(&kv, path, err, sizeof(err)), -ENOTDIR);
    cr_assert_eq(rmq_kvconfig_init(&kv, NULL, err, sizeof(err)), 0);
    free(kv.path);
    kv.path = strdup(path);
    cr_assert_eq(rmq_kvconfig_put(&kv, "a", "b", "c"), 0);
    cr_assert_lt(rmq_kvconfig_persist(&kv), 0);
    cr_assert(kv.dirty, "a failed write leaves the change to persist later");
    rmq_kvconfig_fini(&kv);
}

Test(kvconfig, puts_stop_before_the_file_outgrows_what_a_start_can_load)
{
    static char value[4096];
    struct rmq_kvconfig kv;
    char err[256];
    char key[32];
    uint32_t stored = 0;
    int ret = 0;

    memset(value, 'v', sizeof(value) - 1);
    cr_assert_eq(rmq_kvconfig_init(&kv, path, err, sizeof(err)), 0);
    for (uint32_t i = 0; i < 20000 && ret == 0; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        ret = rmq_kvconfig_put(&kv, "ns", key, value);
        stored += ret == 0;
    }
    cr_assert_eq(ret, -ENOSPC, "20000 x 4 KiB values, escaped at worst, pass RMQ_KV_FILE_MAX");
    cr_assert_gt(stored, 1000u);
    cr_assert_null(rmq_kvconfig_get(&kv, "ns", key), "the refused put changed nothing");
    cr_assert_eq(rmq_kvconfig_put(&kv, "ns", "k0", "short"), 0, "shrinking is always allowed");
    cr_assert(rmq_kvconfig_delete(&kv, "ns", "k1"));
    cr_assert_eq(rmq_kvconfig_put(&kv, "ns", key, value), 0, "deleting made room");
    cr_assert_eq(rmq_kvconfig_persist(&kv), 0);
    rmq_kvconfig_fini(&kv);
    cr_assert_eq(rmq_kvconfig_init(&kv, path, err, sizeof(err)), 0, "the file loads: %s", err);
    cr_assert_str_eq(rmq_kvconfig_get(&kv, "ns", key), value);
    rmq_kvconfig_fini(&kv);
}
