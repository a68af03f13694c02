/*
 * Key index files (index.h). Written through a shared mapping: a process killed with
 * -9 loses nothing that was put (the pages stay in the page cache); a machine crash
 * may leave the newest file's tail stale or torn, which costs misses until the
 * restart's re-walk from end_phys fills them in, never a wrong answer (the broker
 * confirms every hit against its record).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/file.h"
#include "core/log.h"
#include "core/util.h"
#include "index/index.h"

#define MAGIC 0x31305844494d5152ull         /* "RQMIDX01" */
#define HEAD_SIZE 64
#define ENTRY_SIZE 32
#define NAME_DIGITS 20
#define PATH_MAX_LEN 800

struct head {
    uint64_t magic;
    int64_t begin_ts;
    int64_t end_ts;
    int64_t begin_phys;
    int64_t end_phys;               /* everything below was indexed when this was written */
    uint32_t slot_count;
    uint32_t entry_max;
    uint32_t entry_count;           /* next free entry; starts at 1 */
    uint32_t reserved[3];
};
_Static_assert(sizeof(struct head) == HEAD_SIZE, "index file header");

struct entry {
    uint64_t hash;
    int64_t phys;
    int64_t store_ts;
    uint32_t prev;
    uint32_t size;
};
_Static_assert(sizeof(struct entry) == ENTRY_SIZE, "index entry");

struct ifile {
    char path[PATH_MAX_LEN];
    uint8_t *map;
    size_t len;
    struct head *h;
    uint32_t *slots;
    struct entry *entries;
};

struct rmq_index {
    struct rmq_index_config cfg;
    char dir[512];
    struct ifile *files;            /* owned; oldest first, the last one is written */
    uint32_t count;
    uint32_t cap;
    int64_t end_phys;
    int64_t end_ts;
    struct rmq_index_stats stats;
};

uint64_t
rmq_index_hash(const char *topic, size_t topic_len, const char *key, size_t key_len)
{
    XXH3_state_t st;

    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, topic, topic_len);
    XXH3_64bits_update(&st, "#", 1);
    XXH3_64bits_update(&st, key, key_len);
    return XXH3_64bits_digest(&st);
}

static size_t
file_len(const struct rmq_index *idx)
{
    return HEAD_SIZE + (size_t)idx->cfg.slot_count * 4 + (size_t)idx->cfg.entry_max * ENTRY_SIZE;
}

static int
map_file(struct rmq_index *idx, struct ifile *f, bool writable)
{
    int fd = open(f->path, writable ? O_RDWR : O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0) {
        return -errno;
    }
    if (fstat(fd, &st) < 0 || (size_t)st.st_size != file_len(idx)) {
        close(fd);
        RMQ_ERROR("index: %s is not an index file of maxHashSlotNum=%u maxIndexNum=%u "
                  "(%lld bytes, %zu expected); move it away or set the sizes it was made with",
                  f->path, idx->cfg.slot_count, idx->cfg.entry_max, (long long)st.st_size,
                  file_len(idx));
        return -EINVAL;
    }
    f->len = file_len(idx);
    f->map = mmap(NULL, f->len, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return -errno;
    }
    f->h = (struct head *)(void *)f->map;
    f->slots = (uint32_t *)(void *)(f->map + HEAD_SIZE);
    f->entries = (struct entry *)(void *)(f->map + HEAD_SIZE + (size_t)idx->cfg.slot_count * 4);
    return 0;
}

static void
unmap_file(struct ifile *f)
{
    if (f->map != NULL) {
        munmap(f->map, f->len);
        f->map = NULL;
    }
}

static int
add_slot(struct rmq_index *idx)
{
    if (idx->count == idx->cap) {
        uint32_t cap = RMQ_MAX(idx->cap * 2, 8u);
        struct ifile *f = realloc(idx->files, cap * sizeof(*f));

        if (f == NULL) {
            return -ENOMEM;
        }
        idx->files = f;
        idx->cap = cap;
    }
    memset(&idx->files[idx->count], 0, sizeof(idx->files[0]));
    return 0;
}

static int
name_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);

    if (n != NAME_DIGITS) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (d->d_name[i] < '0' || d->d_name[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static void
indexed_path(const struct rmq_index *idx, char *out, size_t cap)
{
    snprintf(out, cap, "%s/indexed", idx->dir);
}

int
rmq_index_open(struct rmq_index **out, const struct rmq_index_config *cfg)
{
    struct rmq_index *idx = calloc(1, sizeof(*idx));
    struct dirent **names = NULL;
    char path[PATH_MAX_LEN];
    char *text = NULL;
    size_t len = 0;
    int n, ret = 0;

    *out = NULL;
    if (idx == NULL) {
        return -ENOMEM;
    }
    idx->cfg = *cfg;
    idx->cfg.slot_count = cfg->slot_count != 0 ? cfg->slot_count : 5000000;
    idx->cfg.entry_max = cfg->entry_max != 0 ? cfg->entry_max : 20000000;
    snprintf(idx->dir, sizeof(idx->dir), "%s", cfg->dir);
    ret = rmq_mkdir_p(idx->dir);
    if (ret < 0) {
        RMQ_ERROR("index: directory %s not created err=%s", idx->dir, strerror(-ret));
        free(idx);
        return ret;
    }
    n = scandir(idx->dir, &names, name_filter, alphasort);
    if (n < 0) {
        ret = -errno;
        free(idx);
        return ret;
    }
    for (int i = 0; i < n; i++) {
        struct ifile *f;

        if (ret == 0 && (ret = add_slot(idx)) == 0) {
            f = &idx->files[idx->count];
            snprintf(f->path, sizeof(f->path), "%s/%s", idx->dir, names[i]->d_name);
            ret = map_file(idx, f, i == n - 1);
            if (ret == 0 && f->h->magic != MAGIC) {
                unmap_file(f);
                RMQ_ERROR("index: %s is not an index file (bad magic)", f->path);
                ret = -EINVAL;
            }
            if (ret == 0) {
                idx->count++;
                idx->stats.entries += f->h->entry_count > 0 ? f->h->entry_count - 1 : 0;
            }
        }
        free(names[i]);
    }
    free(names);
    if (ret < 0) {
        rmq_index_close(idx);
        return ret;
    }
    if (idx->count > 0) {
        idx->end_phys = idx->files[idx->count - 1].h->end_phys;
        idx->end_ts = idx->files[idx->count - 1].h->end_ts;
    }
    /* with no file yet (no record had keys), the last clean close said where it was */
    indexed_path(idx, path, sizeof(path));
    if (rmq_file_read_all(path, 64, &text, &len) == 0) {
        idx->end_phys = RMQ_MAX(idx->end_phys, (int64_t)strtoll(text, NULL, 10));
        free(text);
    }
    idx->stats.files = idx->count;
    *out = idx;
    return 0;
}

void
rmq_index_close(struct rmq_index *idx)
{
    char path[PATH_MAX_LEN];
    char text[32];
    int n;

    if (idx == NULL) {
        return;
    }
    if (idx->count > 0 && idx->files[idx->count - 1].map != NULL) {
        struct ifile *f = &idx->files[idx->count - 1];

        msync(f->map, HEAD_SIZE, MS_SYNC);
    }
    indexed_path(idx, path, sizeof(path));
    n = snprintf(text, sizeof(text), "%lld\n", (long long)idx->end_phys);
    if (rmq_file_replace(path, text, (size_t)n) < 0) {
        RMQ_WARN("index: %s not written: the next start re-walks more of the log", path);
    }
    for (uint32_t i = 0; i < idx->count; i++) {
        unmap_file(&idx->files[i]);
    }
    free(idx->files);
    free(idx);
}

/* A new newest file; the previous one is sealed read-only. */
static int
roll(struct rmq_index *idx, int64_t phys, int64_t store_ts)
{
    struct ifile *f;
    int64_t name = store_ts;
    int fd, ret = add_slot(idx);

    if (ret < 0) {
        return ret;
    }
    f = &idx->files[idx->count];
    if (idx->count > 0) {
        /* names must grow even when store times do not */
        const char *prev = strrchr(idx->files[idx->count - 1].path, '/') + 1;

        name = RMQ_MAX(name, (int64_t)strtoll(prev, NULL, 10) + 1);
    }
    snprintf(f->path, sizeof(f->path), "%s/%020lld", idx->dir, (long long)name);
    fd = open(f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        RMQ_LOG_RL(RMQ_LOG_ERROR, 10000, "index: %s not created err=%s", f->path, strerror(-ret));
        return ret;
    }
    if (ftruncate(fd, (off_t)file_len(idx)) < 0) {     /* sparse: pages come as entries do */
        ret = -errno;
        close(fd);
        unlink(f->path);
        RMQ_LOG_RL(RMQ_LOG_ERROR, 10000, "index: %s not sized err=%s", f->path, strerror(-ret));
        return ret;
    }
    close(fd);
    ret = map_file(idx, f, true);
    if (ret < 0) {
        unlink(f->path);
        return ret;
    }
    f->h->magic = MAGIC;
    f->h->slot_count = idx->cfg.slot_count;
    f->h->entry_max = idx->cfg.entry_max;
    f->h->entry_count = 1;
    f->h->begin_ts = store_ts;
    f->h->begin_phys = phys;
    f->h->end_ts = store_ts;
    f->h->end_phys = idx->end_phys;
    if (idx->count > 0) {
        struct ifile *old = &idx->files[idx->count - 1];

        msync(old->map, old->len, MS_ASYNC);
        mprotect(old->map, old->len, PROT_READ);
    }
    idx->count++;
    idx->stats.files = idx->count;
    idx->stats.rolls++;
    return 0;
}

int
rmq_index_put(struct rmq_index *idx, uint64_t hash, int64_t phys, uint32_t size, int64_t store_ts)
{
    struct ifile *f = idx->count > 0 ? &idx->files[idx->count - 1] : NULL;
    struct entry *e;
    uint32_t slot, n, prev;
    int ret;

    if (f == NULL || f->h->entry_count >= idx->cfg.entry_max) {
        ret = roll(idx, phys, store_ts);
        if (ret < 0) {
            return ret;
        }
        f = &idx->files[idx->count - 1];
    }
    slot = (uint32_t)(hash % f->h->slot_count);
    n = f->h->entry_count;
    prev = f->slots[slot];
    e = &f->entries[n];
    e->hash = hash;
    e->phys = phys;
    e->store_ts = store_ts;
    e->prev = prev < n ? prev : 0;
    e->size = size;
    f->slots[slot] = n;
    f->h->entry_count = n + 1;
    f->h->end_ts = RMQ_MAX(f->h->end_ts, store_ts);
    idx->end_ts = RMQ_MAX(idx->end_ts, store_ts);
    idx->stats.entries++;
    return 0;
}

void
rmq_index_prefetch(const struct rmq_index *idx, uint64_t hash)
{
    if (idx->count > 0) {
        const struct ifile *f = &idx->files[idx->count - 1];

        __builtin_prefetch(&f->slots[hash % f->h->slot_count], 1);
    }
}

void
rmq_index_mark(struct rmq_index *idx, int64_t end_phys)
{
    idx->end_phys = RMQ_MAX(idx->end_phys, end_phys);
    if (idx->count > 0) {
        idx->files[idx->count - 1].h->end_phys = idx->end_phys;
    }
}

int64_t
rmq_index_end_phys(const struct rmq_index *idx)
{
    return idx->end_phys;
}

int64_t
rmq_index_end_ts(const struct rmq_index *idx)
{
    return idx->end_ts;
}

uint32_t
rmq_index_query(const struct rmq_index *idx, uint64_t hash, int64_t begin_ts, int64_t end_ts,
                struct rmq_index_hit *out, uint32_t max)
{
    uint32_t found = 0;

    for (uint32_t i = idx->count; i-- > 0 && found < max;) {
        const struct ifile *f = &idx->files[i];
        uint32_t count = f->h->entry_count;
        uint32_t n = f->slots[hash % f->h->slot_count];

        if (f->h->end_ts < begin_ts) {
            break;                      /* this file and every older one end too early */
        }
        if (f->h->begin_ts > end_ts || count > idx->cfg.entry_max) {
            continue;
        }
        /* a chain only goes back: a torn file cannot make it loop */
        while (n != 0 && n < count && found < max) {
            const struct entry *e = &f->entries[n];
            bool dup = false;

            if (e->hash == hash && e->store_ts >= begin_ts && e->store_ts <= end_ts) {
                for (uint32_t k = 0; k < found && !dup; k++) {
                    dup = out[k].phys == e->phys;
                }
                if (!dup) {
                    out[found].phys = e->phys;
                    out[found].size = e->size;
                    out[found].store_ts = e->store_ts;
                    found++;
                }
            }
            if (e->prev >= n) {
                break;
            }
            n = e->prev;
        }
    }
    return found;
}

void
rmq_index_release_below(struct rmq_index *idx, int64_t min_phys)
{
    /* strictly below: the record at end_phys may still be in the log */
    while (idx->count > 1 && idx->files[0].h->end_phys < min_phys) {
        struct ifile *f = &idx->files[0];
        uint32_t entries = f->h->entry_count;

        RMQ_INFO("index: deleting %s (its messages are gone from the commitlog)", f->path);
        unmap_file(f);
        if (unlink(f->path) < 0) {
            RMQ_WARN("index: %s not deleted err=%s", f->path, strerror(errno));
        }
        idx->stats.entries -= entries > 0 ? entries - 1 : 0;
        memmove(idx->files, idx->files + 1, (idx->count - 1) * sizeof(*idx->files));
        idx->count--;
        idx->stats.files = idx->count;
        idx->stats.files_deleted++;
    }
}

const struct rmq_index_stats *
rmq_index_stats(const struct rmq_index *idx)
{
    return &idx->stats;
}
