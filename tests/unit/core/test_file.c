/* Whole-file helpers: atomic replace, read with a size cap, mkdir -p. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

static char dir[64];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/dev/shm/rmq-file-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(file, .init = setup, .fini = teardown);

Test(file, replace_makes_parents_and_reads_back)
{
    char path[128];
    char tmp[140];
    char *text;
    size_t len;

    snprintf(path, sizeof(path), "%s/a/b/config.json", dir);
    cr_assert_eq(rmq_file_replace(path, "{\"x\":1}", 7), 0);
    cr_assert_eq(rmq_file_read_all(path, 1024, &text, &len), 0);
    cr_assert_eq(len, 7);
    cr_assert_str_eq(text, "{\"x\":1}");
    free(text);
    /* a second replace overwrites whole, a shorter content leaves no tail behind */
    cr_assert_eq(rmq_file_replace(path, "{}", 2), 0);
    cr_assert_eq(rmq_file_read_all(path, 1024, &text, &len), 0);
    cr_assert_str_eq(text, "{}");
    free(text);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    cr_assert_eq(access(tmp, F_OK), -1, "the temp file is gone");
}

Test(file, read_refuses_missing_and_oversized_files)
{
    char path[128];
    char *text = NULL;
    size_t len;

    snprintf(path, sizeof(path), "%s/none.json", dir);
    cr_assert_eq(rmq_file_read_all(path, 1024, &text, &len), -ENOENT);
    snprintf(path, sizeof(path), "%s/big.json", dir);
    cr_assert_eq(rmq_file_replace(path, "0123456789", 10), 0);
    cr_assert_eq(rmq_file_read_all(path, 9, &text, &len), -EFBIG);
    cr_assert_null(text);
    cr_assert_eq(rmq_file_read_all(path, 10, &text, &len), 0);
    free(text);
}

Test(file, replace_fails_cleanly_where_the_directory_cannot_be_made)
{
    char path[128];
    char blocker[128];
    FILE *f;

    snprintf(blocker, sizeof(blocker), "%s/plain", dir);
    f = fopen(blocker, "w");
    cr_assert_not_null(f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/plain/sub/x.json", dir);   /* a file where a dir goes */
    cr_assert_eq(rmq_file_replace(path, "{}", 2), -ENOTDIR);
    cr_assert_eq(rmq_mkdir_p(""), -ENAMETOOLONG);
}
