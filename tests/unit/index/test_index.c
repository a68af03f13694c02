/*
 * The key index on its own: chains newest first, collisions of the bucket (and of the
 * hash itself, forced by passing hashes directly), rolling into new files, time ranges,
 * reopening, release by commitlog offset, and files that are not what they should be.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/index.h"

static char dir[64];

static void
setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rmq-index-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(index, .init = setup, .fini = teardown);

static struct rmq_index *
open_small(uint32_t slots, uint32_t entries)
{
    struct rmq_index_config cfg = {.dir = dir, .slot_count = slots, .entry_max = entries};
    struct rmq_index *idx;

    cr_assert_eq(rmq_index_open(&idx, &cfg), 0);
    return idx;
}

static int
count_files(void)
{
    char cmd[128];
    FILE *p;
    int n = -1;

    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '^[0-9]\\{20\\}$'", dir);
    p = popen(cmd, "r");
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

Test(index, newest_first_with_bucket_and_hash_collisions)
{
    /* 4 slots: hashes 1, 5 and 9 share a bucket; 7 is another key */
    struct rmq_index *idx = open_small(4, 100);
    struct rmq_index_hit hits[16];
    uint32_t n;

    for (int i = 0; i < 10; i++) {
        uint64_t h = (uint64_t[]){1, 5, 9, 7}[i % 4];

        cr_assert_eq(rmq_index_put(idx, h, i * 100, 100, 1000 + i), 0);
        rmq_index_mark(idx, i * 100 + 100);
    }
    n = rmq_index_query(idx, 5, 0, INT64_MAX, hits, 16);
    cr_assert_eq(n, 3, "only hash 5 (i = 1, 5, 9), not its bucket neighbours");
    cr_assert_eq(hits[0].phys, 900, "newest first");
    cr_assert_eq(hits[1].phys, 500);
    cr_assert_eq(hits[2].phys, 100);
    cr_assert_eq(hits[0].size, 100);
    cr_assert_eq(rmq_index_query(idx, 1, 0, INT64_MAX, hits, 16), 3);
    cr_assert_eq(rmq_index_query(idx, 1, 0, INT64_MAX, hits, 2), 2, "max is honoured");
    cr_assert_eq(rmq_index_query(idx, 2, 0, INT64_MAX, hits, 16), 0);
    /* a forced 64-bit collision: two records under one hash both come back (the broker
     * tells them apart by reading the records) */
    cr_assert_eq(rmq_index_put(idx, 7, 2000, 50, 1100), 0);
    n = rmq_index_query(idx, 7, 0, INT64_MAX, hits, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(hits[0].phys, 2000);
    /* time range */
    n = rmq_index_query(idx, 1, 1004, 1008, hits, 16);
    cr_assert_eq(n, 2, "entries at 1004 and 1008");
    cr_assert_eq(hits[0].store_ts, 1008);
    cr_assert_eq(hits[1].store_ts, 1004);
    cr_assert_eq(rmq_index_end_phys(idx), 1000);
    rmq_index_close(idx);
}

Test(index, rolls_into_new_files_and_finds_across_them_after_a_reopen)
{
    struct rmq_index *idx = open_small(16, 10);    /* 9 entries per file (entry 0 unused) */
    struct rmq_index_hit hits[64];

    for (int i = 0; i < 40; i++) {
        cr_assert_eq(rmq_index_put(idx, (uint64_t)(i % 3), i * 10, 10, 5000 + i * 10), 0);
        rmq_index_mark(idx, i * 10 + 10);
    }
    cr_assert_eq(count_files(), 5);
    cr_assert_eq(rmq_index_stats(idx)->entries, 40);
    rmq_index_close(idx);
    idx = open_small(16, 10);
    cr_assert_eq(rmq_index_end_phys(idx), 400);
    cr_assert_eq(rmq_index_stats(idx)->entries, 40);
    cr_assert_eq(rmq_index_query(idx, 0, 0, INT64_MAX, hits, 64), 14, "i = 0, 3, ... 39");
    for (int k = 1; k < 14; k++) {
        cr_assert_lt(hits[k].phys, hits[k - 1].phys, "newest first across files");
    }
    /* a window inside the third file only */
    cr_assert_eq(rmq_index_query(idx, 0, 5180, 5240, hits, 64), 3, "i = 18, 21, 24");
    /* appends go on in the newest file after the reopen */
    cr_assert_eq(rmq_index_put(idx, 0, 400, 10, 5400), 0);
    cr_assert_eq(rmq_index_query(idx, 0, 5400, 5400, hits, 64), 1);
    /* release: files whose records all lie below the log start go, never the newest */
    rmq_index_release_below(idx, 185);
    cr_assert_eq(count_files(), 3, "the first two files end at 90 and 180");
    cr_assert_eq(rmq_index_query(idx, 0, 0, INT64_MAX, hits, 64), 9, "i = 18..39 and the last");
    rmq_index_release_below(idx, 1 << 30);
    cr_assert_eq(count_files(), 1);
    rmq_index_close(idx);
}

Test(index, the_resume_point_survives_without_files)
{
    struct rmq_index *idx = open_small(16, 10);

    rmq_index_mark(idx, 12345);     /* records without keys: no file, still progress */
    rmq_index_close(idx);
    idx = open_small(16, 10);
    cr_assert_eq(rmq_index_end_phys(idx), 12345);
    rmq_index_close(idx);
}

Test(index, damaged_files_cost_answers_never_a_crash)
{
    struct rmq_index *idx = open_small(8, 64);
    struct rmq_index_hit hits[64];
    char path[256], name[64];
    int fd;
    struct stat st;

    for (int i = 0; i < 50; i++) {
        cr_assert_eq(rmq_index_put(idx, (uint64_t)i, i, 1, 1), 0);
    }
    rmq_index_close(idx);
    /* scribble over the slots and entries: chains may point anywhere */
    {
        FILE *p;
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "ls %s | grep '^[0-9]' | head -1", dir);
        p = popen(cmd, "r");
        cr_assert_not_null(fgets(name, sizeof(name), p));
        pclose(p);
        name[strcspn(name, "\n")] = '\0';
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(fstat(fd, &st), 0);
    for (off_t off = 64; off < st.st_size; off += 7) {
        uint8_t b = (uint8_t)(off * 131);

        cr_assert_eq(pwrite(fd, &b, 1, off), 1);
    }
    close(fd);
    idx = open_small(8, 64);
    for (uint64_t h = 0; h < 100; h++) {
        cr_assert_leq(rmq_index_query(idx, h, 0, INT64_MAX, hits, 64), 64);
    }
    rmq_index_close(idx);
    /* another geometry than the files': refused with a reason */
    {
        struct rmq_index_config cfg = {.dir = dir, .slot_count = 16, .entry_max = 64};

        cr_assert_eq(rmq_index_open(&idx, &cfg), -EINVAL);
    }
}

Test(index, keys_hash_as_topic_hash_key)
{
    uint64_t a = rmq_index_hash("T", 1, "k1", 2);

    cr_assert_eq(a, rmq_index_hash("T", 1, "k1", 2));
    cr_assert_neq(a, rmq_index_hash("T", 1, "k2", 2));
    cr_assert_neq(rmq_index_hash("T#", 2, "k", 1), rmq_index_hash("T", 1, "k", 1),
                  "the separator is part of the hashed text");
}
