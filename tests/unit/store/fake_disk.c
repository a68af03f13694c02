/* In-memory disk with crash simulation; see fake_disk.h. */
#include "tests/unit/store/fake_disk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define FAKE_SEGS 64

struct fake_seg {
    bool exists;
    uint64_t start;
    uint64_t size;
    uint8_t *cache;
    uint8_t *durable;
    bool mapped;                    /* a reader's view: remove keeps cache until unmap */
};

struct fake_write {
    int seg;
    uint64_t off;
    uint64_t len;
};

struct fake_disk {
    struct rmq_disk base;
    struct fake_seg segs[FAKE_SEGS];
    struct fake_write *unsynced;
    size_t unsynced_len;
    size_t unsynced_cap;
    struct rmq_link pending;        /* requests whose completion is due */
    struct rmq_link held;           /* sync completions held back */
    struct rmq_timer deliver;       /* completions arrive on the next iteration */
    int fail_write_in;
    int fail_write_err;
    int hold_write_in;
    struct rmq_disk_req *held_write;
    bool hold_prepares;
    struct rmq_disk_req *held_prepare;
    uint64_t held_prepare_start;
    uint64_t held_prepare_size;
    int fail_sync_in;
    int fail_sync_err;
    bool hold_syncs;
    uint64_t syncs;
    int prepare_err;                /* every prepare fails with this while set */
    uint8_t *retired[FAKE_SEGS];    /* removed while mapped: freed by unmap */
    uint32_t unmapped_retired;
    uint64_t space_total;
    uint64_t space_avail;
};

static void
deliver_run(struct rmq_timer *t)
{
    struct fake_disk *d = rmq_container_of(t, struct fake_disk, deliver);
    struct rmq_link batch;
    struct rmq_link *n;

    /* completions queued by callbacks run next pass, like a real ring's */
    rmq_list_init(&batch);
    while ((n = rmq_list_pop(&d->pending)) != NULL) {
        rmq_list_add_tail(&batch, n);
    }
    while ((n = rmq_list_pop(&batch)) != NULL) {
        struct rmq_disk_req *req = rmq_container_of(n, struct rmq_disk_req, link);

        req->done(req, req->res);
    }
}

static void
finish(struct fake_disk *d, struct rmq_disk_req *req, int32_t res)
{
    req->res = res;
    rmq_list_init(&req->link);
    rmq_list_add_tail(&d->pending, &req->link);
    if (!rmq_timer_is_armed(&d->deliver)) {
        rmq_timer_arm(d->base.loop, &d->deliver, 1, deliver_run);    /* due next iteration */
    }
}

static int
find_seg(const struct fake_disk *d, uint64_t start)
{
    for (int i = 0; i < FAKE_SEGS; i++) {
        if (d->segs[i].exists && d->segs[i].start == start) {
            return i;
        }
    }
    return -1;
}

static void
f_prepare(struct rmq_disk *base, uint64_t start, uint64_t size, struct rmq_disk_req *req)
{
    struct fake_disk *d = (struct fake_disk *)base;
    int h = find_seg(d, start);

    if (d->prepare_err != 0) {
        finish(d, req, d->prepare_err);
        return;
    }
    if (d->hold_prepares) {
        RMQ_ASSERT(d->held_prepare == NULL);
        d->held_prepare = req;
        d->held_prepare_start = start;
        d->held_prepare_size = size;
        return;
    }
    if (h < 0) {
        for (h = 0; h < FAKE_SEGS && d->segs[h].exists; h++) {
        }
        RMQ_ASSERT(h < FAKE_SEGS);
        d->segs[h].exists = true;
        d->segs[h].start = start;
        d->segs[h].size = size;
        d->segs[h].cache = calloc(1, size);
        d->segs[h].durable = calloc(1, size);
    }
    finish(d, req, h);
}

static void
f_prepare_cancel(struct rmq_disk *base)
{
    struct fake_disk *d = (struct fake_disk *)base;
    struct rmq_disk_req *req = d->held_prepare;

    if (req != NULL) {
        d->held_prepare = NULL;
        finish(d, req, -ECANCELED);
    }
}

static void
f_writev(struct rmq_disk *base, int h, uint64_t off, const struct iovec *iov, int cnt,
         struct rmq_disk_req *req)
{
    struct fake_disk *d = (struct fake_disk *)base;
    struct fake_seg *seg = &d->segs[h];
    uint64_t p = off;

    if (d->fail_write_in > 0 && --d->fail_write_in == 0) {
        finish(d, req, d->fail_write_err);
        return;
    }
    for (int i = 0; i < cnt; i++) {
        RMQ_ASSERT(p + iov[i].iov_len <= seg->size);
        memcpy(seg->cache + p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    if (d->unsynced_len == d->unsynced_cap) {
        d->unsynced_cap = d->unsynced_cap ? d->unsynced_cap * 2 : 64;
        d->unsynced = realloc(d->unsynced, d->unsynced_cap * sizeof(*d->unsynced));
    }
    d->unsynced[d->unsynced_len].seg = h;
    d->unsynced[d->unsynced_len].off = off;
    d->unsynced[d->unsynced_len].len = p - off;
    d->unsynced_len++;
    if (d->hold_write_in > 0 && --d->hold_write_in == 0) {
        req->res = (int32_t)(p - off);
        d->held_write = req;
        return;
    }
    finish(d, req, (int32_t)(p - off));
}

static void
f_sync(struct rmq_disk *base, int h, struct rmq_disk_req *req)
{
    struct fake_disk *d = (struct fake_disk *)base;
    struct fake_seg *seg = &d->segs[h];
    size_t keep = 0;

    d->syncs++;
    if (d->fail_sync_in > 0 && --d->fail_sync_in == 0) {
        finish(d, req, d->fail_sync_err);
        return;
    }
    memcpy(seg->durable, seg->cache, seg->size);
    for (size_t i = 0; i < d->unsynced_len; i++) {
        if (d->unsynced[i].seg != h) {
            d->unsynced[keep++] = d->unsynced[i];
        }
    }
    d->unsynced_len = keep;
    if (d->hold_syncs) {
        req->res = 0;
        rmq_list_init(&req->link);
        rmq_list_add_tail(&d->held, &req->link);
        return;
    }
    finish(d, req, 0);
}

static int
f_list(struct rmq_disk *base, uint64_t *starts, int max)
{
    struct fake_disk *d = (struct fake_disk *)base;
    int n = 0;

    for (int i = 0; i < FAKE_SEGS; i++) {
        if (d->segs[i].exists && n < max) {
            starts[n++] = d->segs[i].start;
        }
    }
    for (int i = 1; i < n; i++) {           /* insertion sort: a handful of segments */
        for (int k = i; k > 0 && starts[k - 1] > starts[k]; k--) {
            uint64_t t = starts[k];

            starts[k] = starts[k - 1];
            starts[k - 1] = t;
        }
    }
    return n;
}

static int
f_open_existing(struct rmq_disk *base, uint64_t start, uint64_t size)
{
    struct fake_disk *d = (struct fake_disk *)base;
    int h = find_seg(d, start);

    return h < 0 || d->segs[h].size != size ? -ENOENT : h;
}

static ssize_t
f_read(struct rmq_disk *base, int h, uint64_t off, void *buf, size_t len)
{
    struct fake_disk *d = (struct fake_disk *)base;
    struct fake_seg *seg = &d->segs[h];

    if (off >= seg->size) {
        return 0;
    }
    len = (size_t)RMQ_MIN((uint64_t)len, seg->size - off);
    memcpy(buf, seg->cache + off, len);
    return (ssize_t)len;
}

static int
f_zero_tail(struct rmq_disk *base, int h, uint64_t off, uint64_t size)
{
    struct fake_disk *d = (struct fake_disk *)base;
    struct fake_seg *seg = &d->segs[h];

    memset(seg->cache + off, 0, size - off);
    memset(seg->durable + off, 0, size - off);      /* zero_tail is synced */
    return 0;
}

static void
f_close(struct rmq_disk *base, int h)
{
    (void)base;
    (void)h;
}

static void
f_remove(struct rmq_disk *base, int h, struct rmq_disk_req *req)
{
    struct fake_disk *d = (struct fake_disk *)base;
    struct fake_seg *seg = &d->segs[h];

    if (seg->mapped) {
        for (int i = 0; i < FAKE_SEGS; i++) {
            if (d->retired[i] == NULL) {
                d->retired[i] = seg->cache;
                seg->cache = NULL;
                break;
            }
        }
    }
    free(seg->cache);
    free(seg->durable);
    memset(seg, 0, sizeof(*seg));
    finish(d, req, 0);
}

static void
f_rename(struct rmq_disk *base, int h, uint64_t new_start, struct rmq_disk_req *req)
{
    struct fake_disk *d = (struct fake_disk *)base;

    d->segs[h].start = new_start;
    finish(d, req, 0);
}

static int
f_space(struct rmq_disk *base, uint64_t *total, uint64_t *avail)
{
    struct fake_disk *d = (struct fake_disk *)base;

    *total = d->space_total;
    *avail = d->space_avail;
    return 0;
}

void
fake_disk_set_space(struct fake_disk *d, uint64_t total, uint64_t avail)
{
    d->space_total = total;
    d->space_avail = avail;
}

void
fake_disk_fail_prepare(struct fake_disk *d, int err)
{
    d->prepare_err = err;
}

bool
fake_disk_has_seg(const struct fake_disk *d, uint64_t start)
{
    return find_seg(d, start) >= 0;
}

/* The fake's segment memory is its page cache: a view reads it directly. */
static const uint8_t *
f_map(struct rmq_disk *base, int h, uint64_t size)
{
    struct fake_disk *d = (struct fake_disk *)base;

    if (d->segs[h].cache == NULL || d->segs[h].size < size) {
        errno = ENODEV;
        return NULL;
    }
    d->segs[h].mapped = true;
    return d->segs[h].cache;
}

static void
f_unmap(struct rmq_disk *base, const uint8_t *p, uint64_t size)
{
    struct fake_disk *d = (struct fake_disk *)base;

    (void)size;
    for (int i = 0; i < FAKE_SEGS; i++) {
        if (d->retired[i] == p) {
            free(d->retired[i]);
            d->retired[i] = NULL;
            d->unmapped_retired++;
        }
    }
}

uint32_t
fake_disk_unmapped_retired(const struct fake_disk *d)
{
    return d->unmapped_retired;
}

static const struct rmq_disk_ops fake_ops = {
    .prepare = f_prepare,
    .prepare_cancel = f_prepare_cancel,
    .writev = f_writev,
    .sync = f_sync,
    .list = f_list,
    .open_existing = f_open_existing,
    .read = f_read,
    .zero_tail = f_zero_tail,
    .close = f_close,
    .remove = f_remove,
    .map = f_map,
    .unmap = f_unmap,
    .space = f_space,
    .rename = f_rename,
};

struct fake_disk *
fake_disk_create(struct rmq_loop *loop)
{
    struct fake_disk *d = calloc(1, sizeof(*d));

    d->base.ops = &fake_ops;
    d->space_total = 100ull << 30;
    d->space_avail = 90ull << 30;
    d->base.loop = loop;
    rmq_list_init(&d->pending);
    rmq_list_init(&d->held);
    return d;
}

void
fake_disk_destroy(struct fake_disk *d)
{
    rmq_timer_cancel(d->base.loop, &d->deliver);
    for (int i = 0; i < FAKE_SEGS; i++) {
        free(d->segs[i].cache);
        free(d->segs[i].durable);
        free(d->retired[i]);
    }
    free(d->unsynced);
    free(d);
}

struct rmq_disk *
fake_disk_base(struct fake_disk *d)
{
    return &d->base;
}

void
fake_disk_attach(struct fake_disk *d, struct rmq_loop *loop)
{
    d->base.loop = loop;
    d->deliver.heap_idx = 0;        /* the old loop, and its timer heap, are gone */
}

static uint32_t
next_rand(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return *state >> 8;
}

void
fake_disk_crash(struct fake_disk *d, uint32_t seed)
{
    uint32_t st = seed * 2654435761u + 1;

    for (size_t i = 0; i < d->unsynced_len; i++) {
        struct fake_write *w = &d->unsynced[i];
        struct fake_seg *seg = &d->segs[w->seg];
        uint64_t len = w->len;

        switch (next_rand(&st) % 4) {
        case 0:                         /* reached the disk */
            memcpy(seg->durable + w->off, seg->cache + w->off, len);
            break;
        case 1:                         /* lost */
            break;
        case 2:                         /* torn: only a prefix made it */
            len = next_rand(&st) % (len + 1);
            memcpy(seg->durable + w->off, seg->cache + w->off, len);
            break;
        default: {                      /* garbled: written, then some bytes are noise */
            uint64_t from = next_rand(&st) % len;
            uint64_t n = 1 + next_rand(&st) % (len - from);

            memcpy(seg->durable + w->off, seg->cache + w->off, len);
            for (uint64_t k = 0; k < n; k++) {
                seg->durable[w->off + from + k] = (uint8_t)next_rand(&st);
            }
            break;
        }
        }
    }
    fake_disk_lose_unsynced(d);
}

void
fake_disk_hold_write(struct fake_disk *d, int nth)
{
    d->hold_write_in = nth;
}

bool
fake_disk_write_held(const struct fake_disk *d)
{
    return d->held_write != NULL;
}

void
fake_disk_release_write(struct fake_disk *d, int32_t res)
{
    struct rmq_disk_req *req = d->held_write;

    RMQ_ASSERT(req != NULL);
    d->held_write = NULL;
    finish(d, req, res);
}

void
fake_disk_hold_prepares(struct fake_disk *d, bool hold)
{
    struct rmq_disk_req *req = d->held_prepare;

    d->hold_prepares = hold;
    if (!hold && req != NULL) {
        d->held_prepare = NULL;
        f_prepare(&d->base, d->held_prepare_start, d->held_prepare_size, req);
    }
}

/* What is durable becomes all there is. */
void
fake_disk_lose_unsynced(struct fake_disk *d)
{
    d->unsynced_len = 0;
    for (int i = 0; i < FAKE_SEGS; i++) {
        if (d->segs[i].exists) {
            memcpy(d->segs[i].cache, d->segs[i].durable, d->segs[i].size);
        }
    }
    /* the process died: nothing it was waiting for completes */
    rmq_list_init(&d->pending);
    rmq_list_init(&d->held);
    d->held_write = NULL;
    d->held_prepare = NULL;
    rmq_timer_cancel(d->base.loop, &d->deliver);
}

void
fake_disk_fail_write(struct fake_disk *d, int nth, int err)
{
    d->fail_write_in = nth;
    d->fail_write_err = err;
}

void
fake_disk_fail_sync(struct fake_disk *d, int nth, int err)
{
    d->fail_sync_in = nth;
    d->fail_sync_err = err;
}

void
fake_disk_hold_syncs(struct fake_disk *d, bool hold)
{
    struct rmq_link *n;

    d->hold_syncs = hold;
    if (!hold) {
        while ((n = rmq_list_pop(&d->held)) != NULL) {
            struct rmq_disk_req *req = rmq_container_of(n, struct rmq_disk_req, link);

            finish(d, req, 0);
        }
    }
}

uint64_t
fake_disk_syncs(const struct fake_disk *d)
{
    return d->syncs;
}

void
fake_disk_poke(struct fake_disk *d, uint64_t seg_start, uint64_t off, uint8_t xor_mask)
{
    int h = find_seg(d, seg_start);

    RMQ_ASSERT(h >= 0);
    d->segs[h].cache[off] ^= xor_mask;
    d->segs[h].durable[off] ^= xor_mask;
}
