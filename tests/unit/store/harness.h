/*
 * Store test harness: one loop, one fake disk, one store with a throwaway root
 * directory, and a table of test messages (bodies filled from their index).
 */
#ifndef RMQ_TESTS_STORE_HARNESS_H
#define RMQ_TESTS_STORE_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "store/store.h"
#include "store/store_int.h"
#include "tests/unit/store/fake_disk.h"

#define MAXMSG 4096

struct tmsg {
    struct rmq_store_msg m;
    int status;
    bool done;
    uint8_t body[4000];
    char topic[16];
};

extern struct rmq_loop loop;
extern struct fake_disk *fd_;
extern struct rmq_store *st;
extern struct tmsg msgs[MAXMSG];
extern int acked;
extern int finished;
extern char root[64];

/* Message i: body_len bytes, topic "T<queue_id % 3>", tag "A". */
void fill(struct tmsg *t, int i, uint32_t body_len, int queue_id);
void run_until_finished(int want);
void open_store(struct rmq_store_config *cfg);
void close_store(void);
/* Remove the store root (keep: just empty it for the next round). */
void wipe_root(bool keep);
/* Every acknowledged message among the first n reads back byte for byte. */
void verify_acked(int n);
/* The process dies (kill -9: no close, the abort file stays, the page cache keeps every
 * write), then the store opens again on a new loop. */
void kill9_and_reopen(struct rmq_store_config *cfg);
/* Simulated power loss (seeded fate of unsynced writes), then open again. */
void crash_and_reopen(struct rmq_store_config *cfg, uint32_t seed);
void run_for_ms(uint64_t ms);
/* Take a checkpoint and wait for it. */
void checkpoint_now(void);
/* Before a simulated crash: queue entries not covered by the checkpoint become holes or
 * stale pointers past the log end (what a power loss may leave of unsynced pages). */
void garble_queue_tails(uint32_t seed);
/* Walk the log: every record has its entry, queue maxima equal the records held, and
 * nothing is stored past a queue's max. */
void verify_queues_against_log(void);
void store_setup(void);
void store_teardown(void);

#endif
