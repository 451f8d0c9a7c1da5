/* faultpt.c - test-only fault points, declared in faultpt.h (meson -Dfault_points=true defines
 * MS_FAULT_POINTS; without it only the parser is built and the points are no-ops).
 *
 * Owns the armed crash point and the fsync delay, read once from the environment at start
 * (faultpt_init, or the first point passed): METASTORE_CRASH_POINT=<name>[:<n>] and
 * METASTORE_SLOW_FSYNC_MS=<ms>; and a slow clock, toggled by SIGUSR2. A crash point ends the
 * process with SIGKILL, as kill -9 would: nothing is flushed or closed. Called from the loop's
 * thread only; the delay is handed to a sync thread by value (fs.c), so nothing here is shared.
 */
#include "metastore/faultpt.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The points the server passes; a name outside this list is a typo in a test. */
static const char *const known[] = {
    "wal_before_sync",
    "wal_after_sync",
    "apply_mid_batch",
    "snapshot_install",
    "compact",
    "defrag",
    NULL,
};

bool faultpt_parse(const char *spec, char *name, size_t cap, uint64_t *n)
{
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    bool found = false;
    for (size_t i = 0; known[i] && !found; i++)
        found = strlen(known[i]) == len && strncmp(known[i], spec, len) == 0;
    if (!found || len >= cap)
        return false;
    uint64_t count = 1;
    if (colon) {
        const char *p = colon + 1;
        if (!isdigit((unsigned char)*p))
            return false; /* also refuses "-1", "+1" and " 1", which strtoull would take */
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || *end || v == 0)
            return false;
        count = v;
    }
    memcpy(name, spec, len);
    name[len] = 0;
    *n = count;
    return true;
}

#ifdef MS_FAULT_POINTS

#define FAULTPT_MAX_SLOW_MS 600000 /* ten minutes: more is a typo */

static struct {
    bool read;
    char name[32];    /* the armed crash point, "" for none */
    uint64_t at;      /* dies the at-th time it is passed */
    uint64_t passed;  /* times it was passed */
    uint64_t slow_ms; /* delay before each sync */
} fp;

/* A bad value is a broken test: say so and stop rather than run without the fault. */
static _Noreturn void refuse(const char *var, const char *v, const char *want)
{
    fprintf(stderr, "metastore: %s=%s: want %s\n", var, v, want);
    exit(2);
}

/* The slow clock, toggled by SIGUSR2 (a plain flag: all a handler may touch). */
#define FAULTPT_SLOW_CLOCK 10 /* a slow member counts one tick in ten */
static volatile sig_atomic_t slow_clock;
static uint64_t skew_carry;

static void on_usr2(int sig)
{
    (void)sig;
    slow_clock = !slow_clock;
}

void faultpt_init(void)
{
    if (fp.read)
        return;
    fp.read = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    const char *v = getenv("METASTORE_CRASH_POINT");
    if (v && *v && !faultpt_parse(v, fp.name, sizeof(fp.name), &fp.at))
        refuse("METASTORE_CRASH_POINT", v,
               "<name>[:<n>], n >= 1, name one of wal_before_sync wal_after_sync "
               "apply_mid_batch snapshot_install compact defrag");
    v = getenv("METASTORE_SLOW_FSYNC_MS");
    if (v && *v) {
        char *end;
        errno = 0;
        unsigned long long ms = strtoull(v, &end, 10);
        if (!isdigit((unsigned char)*v) || errno || *end || ms > FAULTPT_MAX_SLOW_MS)
            refuse("METASTORE_SLOW_FSYNC_MS", v, "milliseconds, at most 600000");
        fp.slow_ms = ms;
    }
}

void faultpt_hit(const char *name)
{
    faultpt_init();
    if (!fp.name[0] || strcmp(name, fp.name) != 0 || ++fp.passed != fp.at)
        return;
    fprintf(stderr, "metastore: crash point %s reached\n", name);
    raise(SIGKILL);
}

uint64_t faultpt_slow_fsync_ms(void)
{
    faultpt_init();
    return fp.slow_ms;
}

void faultpt_sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (ms && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void faultpt_slow_fsync(void)
{
    faultpt_sleep_ms(faultpt_slow_fsync_ms());
}

uint64_t faultpt_clock_ticks(uint64_t ticks)
{
    if (!slow_clock) {
        skew_carry = 0;
        return ticks;
    }
    skew_carry += ticks;
    uint64_t out = skew_carry / FAULTPT_SLOW_CLOCK;
    skew_carry %= FAULTPT_SLOW_CLOCK;
    return out;
}

#endif
