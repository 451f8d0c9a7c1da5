/* clock.h - monotonic and wall time. Time is read here and passed into modules as
 * arguments (raft_tick, lease expiry), so tests control it. */
#ifndef METASTORE_CLOCK_H
#define METASTORE_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t clock_now_ms(void);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t clock_now_ns(void);

/* CLOCK_REALTIME in milliseconds since the epoch (logs, lease IDs). */
uint64_t clock_wall_ms(void);

#endif
