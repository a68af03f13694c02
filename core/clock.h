/*
 * Clocks. Loops read the monotonic clock once per iteration (loop->now_ns); hot
 * paths use that, never a fresh read (STYLE.md §9).
 */
#ifndef RMQ_CORE_CLOCK_H
#define RMQ_CORE_CLOCK_H

#include <stdint.h>

uint64_t rmq_clock_mono_ns(void);       /* CLOCK_MONOTONIC */
uint64_t rmq_clock_wall_ms(void);       /* CLOCK_REALTIME, ms since the epoch */

#endif
