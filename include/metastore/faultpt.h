/* faultpt.h - test-only fault points (meson -Dfault_points=true defines MS_FAULT_POINTS), for
 * tests/fault: crashes at named points and slow syncs, so that a harness can check what a
 * restart recovers. Without MS_FAULT_POINTS every point is an empty inline function. */
#ifndef METASTORE_FAULTPT_H
#define METASTORE_FAULTPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse METASTORE_CRASH_POINT's value "<name>[:<n>]": name one of wal_before_sync,
 * wal_after_sync, apply_mid_batch, snapshot_install, compact, defrag (copied into name, cap
 * bytes with its NUL), n >= 1 decimal (1 when left out). False for anything else. Always built
 * (the unit tests run it in every build). */
bool faultpt_parse(const char *spec, char *name, size_t cap, uint64_t *n);

#ifdef MS_FAULT_POINTS
/* Read METASTORE_CRASH_POINT and METASTORE_SLOW_FSYNC_MS (once; later calls do nothing). A
 * malformed value prints why on stderr and exits 2. The other calls read them on first use. */
void faultpt_init(void);
/* The n-th time this is passed with the armed name: one line on stderr, then SIGKILL. */
void faultpt_hit(const char *name);
/* METASTORE_SLOW_FSYNC_MS, 0 if unset. */
uint64_t faultpt_slow_fsync_ms(void);
/* nanosleep for ms, resumed after signals (any thread). */
void faultpt_sleep_ms(uint64_t ms);
/* Sleep METASTORE_SLOW_FSYNC_MS: called right before an fsync/fdatasync the server issues. */
void faultpt_slow_fsync(void);
/* Raft ticks to count for ticks that passed: all of them, or one in ten while the clock is slow
 * (SIGUSR2 toggles it: a member whose timers run slow, as a skewed clock; the handler is set
 * by faultpt_init). */
uint64_t faultpt_clock_ticks(uint64_t ticks);
#else
static inline void faultpt_init(void)
{
}
static inline void faultpt_hit(const char *name)
{
    (void)name;
}
static inline void faultpt_slow_fsync(void)
{
}
static inline uint64_t faultpt_clock_ticks(uint64_t ticks)
{
    return ticks;
}
#endif

#endif
