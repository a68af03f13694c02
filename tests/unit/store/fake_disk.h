/*
 * An in-memory disk for store tests. Writes land in a "cache" image at once and are
 * remembered until a sync copies the segment to its "durable" image. A simulated
 * crash gives every unsynced write a seeded fate (kept, lost, torn, garbled), makes
 * the durable image what survives, and drops completions not yet delivered.
 */
#ifndef RMQ_TESTS_FAKE_DISK_H
#define RMQ_TESTS_FAKE_DISK_H

#include <stdbool.h>

#include "store/disk.h"

struct fake_disk;

struct fake_disk *fake_disk_create(struct rmq_loop *loop);
void fake_disk_destroy(struct fake_disk *d);
struct rmq_disk *fake_disk_base(struct fake_disk *d);
/* After a crash the store reopens on a new loop. */
void fake_disk_attach(struct fake_disk *d, struct rmq_loop *loop);
void fake_disk_crash(struct fake_disk *d, uint32_t seed);
/* The nth write (or sync) from now fails with err. */
void fake_disk_fail_write(struct fake_disk *d, int nth, int err);
void fake_disk_fail_sync(struct fake_disk *d, int nth, int err);
/* The nth write from now lands in the cache but its completion is held back until
 * fake_disk_release_write completes it with res: later writes complete before it. */
void fake_disk_hold_write(struct fake_disk *d, int nth);
bool fake_disk_write_held(const struct fake_disk *d);
void fake_disk_release_write(struct fake_disk *d, int32_t res);
/* Power loss where no unsynced write survives (fake_disk_crash with a fixed fate). */
void fake_disk_lose_unsynced(struct fake_disk *d);
/* Hold sync completions until released (to test flush timeouts). */
void fake_disk_hold_syncs(struct fake_disk *d, bool hold);
uint64_t fake_disk_syncs(const struct fake_disk *d);
/* Flip one byte of a segment's current image (corruption tests). */
void fake_disk_poke(struct fake_disk *d, uint64_t seg_start, uint64_t off, uint8_t xor_mask);

/* What the space op reports (default: 100 GiB, 90 free). */
void fake_disk_set_space(struct fake_disk *d, uint64_t total, uint64_t avail);
/* Segment preparations wait (a close's prepare_cancel ends one with -ECANCELED) until
 * released with false. */
void fake_disk_hold_prepares(struct fake_disk *d, bool hold);
/* Every segment preparation fails with err (0: works again). */
void fake_disk_fail_prepare(struct fake_disk *d, int err);
bool fake_disk_has_seg(const struct fake_disk *d, uint64_t start);
/* Segments removed while a reader mapped them, whose memory unmap has since freed. */
uint32_t fake_disk_unmapped_retired(const struct fake_disk *d);

#endif
