/* test_raft_sim.c - run the deterministic simulator over a range of seeds.
 *
 *   test_raft_sim [--seeds FIRST-LAST] [-v] [--chaos MS] [--heal MS]
 *       Run every seed; exit 1 if any violates an invariant (its trace is printed).
 *   test_raft_sim --expect-violation [--seeds FIRST-LAST]
 *       For planted-bug builds: run seeds (each in a child process, so that an aborting
 *       assertion also counts) until one fails; exit 0 and print the seed if one did.
 *   test_raft_sim --expect-violation --all ...
 *       Keep going after the first failing seed and report how many failed (to measure how
 *       quickly a planted bug is found).
 *   test_raft_sim --seconds N ...
 *       Stop starting new seeds after N seconds of wall time (for soaks).
 *
 * Replay a failure with: test_raft_sim --seeds S-S -v
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: test_raft_sim [--seeds A-B] [-v] [--chaos MS] [--heal MS] "
                    "[--seconds N] [--expect-violation]\n");
    exit(2);
}

/* Run one seed in a child; true if it found a violation (or the core aborted). */
static bool run_child(const struct sim_opts *o, const char **how)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        struct sim_result res;
        int rc = sim_run(o, &res);
        fflush(NULL);
        _exit(rc ? 10 : 0);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) {
        perror("waitpid");
        exit(2);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return false;
    *how = WIFEXITED(status) && WEXITSTATUS(status) == 10 ? "invariant violated"
                                                          : "core aborted (assertion)";
    return true;
}

int main(int argc, char **argv)
{
    uint64_t first = 1, last = 20;
    double seconds = 0;
    bool expect = false, all = false;
    uint64_t caught = 0, first_caught = 0;
    struct sim_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
            unsigned long long a, b;
            if (sscanf(argv[++i], "%llu-%llu", &a, &b) != 2 || b < a)
                usage();
            first = a;
            last = b;
        } else if (!strcmp(argv[i], "-v")) {
            o.verbose = true;
        } else if (!strcmp(argv[i], "--chaos") && i + 1 < argc) {
            o.chaos_ms = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--heal") && i + 1 < argc) {
            o.heal_ms = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = strtod(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--expect-violation")) {
            expect = true;
        } else if (!strcmp(argv[i], "--all")) {
            all = true;
        } else {
            usage();
        }
    }
    double t0 = now_s();
    uint64_t ran = 0, failures = 0, gave_up = 0, early_seeds = 0;
    struct sim_result tot = {0};
    for (uint64_t seed = first; seed <= last; seed++) {
        if (seconds > 0 && now_s() - t0 > seconds)
            break;
        o.seed = seed;
        ran++;
        if (expect) {
            const char *how = NULL;
            if (run_child(&o, &how)) {
                printf("planted bug caught at seed %llu after %llu seeds (%s), %.1fs\n",
                       (unsigned long long)seed, (unsigned long long)ran, how, now_s() - t0);
                if (!all)
                    return 0;
                if (!caught++)
                    first_caught = seed;
            }
            continue;
        }
        struct sim_result res;
        if (sim_run(&o, &res) != 0) {
            failures++;
            printf("seed %llu FAILED: %s\n", (unsigned long long)seed, res.what);
        }
        tot.events += res.events;
        tot.ops_ok += res.ops_ok;
        tot.ops_unknown += res.ops_unknown;
        tot.ops_failed += res.ops_failed;
        tot.leaders += res.leaders;
        tot.crashes += res.crashes;
        tot.snapshots_sent += res.snapshots_sent;
        tot.conf_changes += res.conf_changes;
        tot.early_applies += res.early_applies;
        tot.now_applies += res.now_applies;
        early_seeds += res.early_applies > 0;
        gave_up += res.lin_gave_up;
    }
    double dt = now_s() - t0;
    if (expect && caught) {
        printf("planted bug caught in %llu of %llu seeds (first: %llu), %.1fs\n",
               (unsigned long long)caught, (unsigned long long)ran,
               (unsigned long long)first_caught, dt);
        return 0;
    }
    if (expect) {
        printf("planted bug NOT caught in %llu seeds (%.1fs)\n", (unsigned long long)ran, dt);
        return 1;
    }
    printf(
        "seeds %llu-%llu: %llu run, %llu failed, %.1fs; events %llu, ops ok %llu unknown "
        "%llu failed %llu, leaders %llu, crashes %llu, snapshots sent %llu, conf changes "
        "applied %llu, Readies applied before persisting %llu in %llu seeds, commits applied while "
        "a Ready persisted %llu, linearizability searches given up %llu\n",
        (unsigned long long)first, (unsigned long long)(first + ran - 1), (unsigned long long)ran,
        (unsigned long long)failures, dt, (unsigned long long)tot.events,
        (unsigned long long)tot.ops_ok, (unsigned long long)tot.ops_unknown,
        (unsigned long long)tot.ops_failed, (unsigned long long)tot.leaders,
        (unsigned long long)tot.crashes, (unsigned long long)tot.snapshots_sent,
        (unsigned long long)tot.conf_changes, (unsigned long long)tot.early_applies,
        (unsigned long long)early_seeds, (unsigned long long)tot.now_applies,
        (unsigned long long)gave_up);
    return failures ? 1 : 0;
}
