/* lincheck.h - checks a recorded client history of single-key registers for linearizability.
 *
 * The fault-injection suites record every request they send (who, when, what, and what came
 * back) and hand the history here. Two independent checks:
 *
 * - lc_check: per key, is there a total order of the operations that respects real time and
 *   that a register (initially absent) would produce? The Wing-Gong search with Lowe's
 *   memoisation of (linearized set, register value), as Porcupine does, bounded per key.
 * - lc_check_revisions: do the store's revisions (etcd header.revision for writes, a read
 *   value's mod_revision) form an order consistent with real time? Cheap and sound: it only
 *   flags orders no linearization can have.
 *
 * Outcomes follow Jepsen: LC_OK completed with a known result; LC_FAIL definitely did not take
 * effect (refused before it reached the log); LC_INFO indeterminate (timed out, connection
 * broken): it may take effect at any time after its invocation, or never.
 *
 * A report never turns "could not decide" into a pass: a key whose search ran out of budget is
 * LC_UNKNOWN, and the whole result is LC_UNKNOWN unless some key is a violation.
 */
#ifndef METASTORE_TESTS_LINCHECK_H
#define METASTORE_TESTS_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The value of a key that was never written. A PUT of LC_ABSENT models a delete. Give every
 * other write its own value: the checks stay sound without that, but a report is easier to read
 * and the search is faster when a value names exactly one write. */
#define LC_ABSENT 0

enum lc_kind {
    LC_PUT, /* write value */
    LC_GET, /* read: result in read */
    LC_CAS, /* if the value is expect, write value: result in swapped */
};

enum lc_outcome {
    LC_OK,   /* completed; the result fields hold what the server answered */
    LC_FAIL, /* refused before it reached the log: it must not have taken effect */
    LC_INFO, /* indeterminate: no completion time, no result */
};

struct lc_op {
    uint32_t client; /* who sent it; only printed */
    uint32_t key;
    enum lc_kind kind;
    enum lc_outcome outcome;
    uint64_t value;       /* PUT, CAS: the value written */
    uint64_t expect;      /* CAS: the value compared against (LC_ABSENT: "does not exist") */
    uint64_t read;        /* GET and LC_OK: the value read, LC_ABSENT if there was none */
    bool swapped;         /* CAS and LC_OK: true if the comparison held and it wrote */
    uint64_t invoke_ns;   /* monotonic time the request was sent */
    uint64_t complete_ns; /* LC_OK, LC_FAIL: monotonic time the answer came; LC_INFO: ignored */
    /* Revisions, 0 when unknown; only read by lc_check_revisions. LC_OK PUT and swapped CAS: the
     * store revision of the write (header.revision). LC_OK GET: the mod_revision of the value
     * read. Every other op: ignored. */
    int64_t rev;
};

enum lc_verdict {
    LC_PASS,      /* linearizable (lc_check) / no revision order violated (lc_check_revisions) */
    LC_VIOLATION, /* proven not linearizable */
    LC_UNKNOWN,   /* the budget ran out before the search could decide */
};

/* Bounds of the search for one key; a zero field takes its default. When one is exceeded the
 * key is LC_UNKNOWN. Memory grows with steps: each step may store one (set, value) pair of
 * about n/8 + 16 bytes for a key with n operations. */
struct lc_limits {
    uint64_t max_steps; /* default 20,000,000 */
    uint64_t max_ns;    /* wall time per key; default 30 s */
    size_t max_bytes;   /* memo size per key; default 1 GiB */
};

/* At most this many operations are named in one finding. */
#define LC_FINDING_OPS 8

/* One violated key or revision rule, or one key left undecided. */
struct lc_finding {
    enum lc_verdict verdict; /* LC_VIOLATION or LC_UNKNOWN */
    uint32_t key;            /* the key; for a revision rule across keys, the later op's key */
    const char *what;        /* static text: the rule broken, or the budget that ran out */
    /* Indices into the caller's op array. lc_check, violation: ops[0] is the op that had to be
     * linearized by its completion and could not be, the others are the ops not yet placed that
     * were invoked before it completed (in invocation order). lc_check_revisions: the earlier
     * op, then the later one. */
    size_t ops[LC_FINDING_OPS];
    size_t n_ops;
    size_t placed_last; /* lc_check: the last op placed before the failure, or SIZE_MAX */
    uint64_t state;     /* lc_check: the register value at the failure point */
    size_t linearized;  /* lc_check: ops placed in the deepest partial linearization */
    size_t key_ops;     /* lc_check: ops of this key that were searched (LC_FAIL excluded) */
    uint64_t steps;     /* lc_check: search steps spent on this key */
};

/* The outcome of one check. verdict is LC_VIOLATION if any finding is, else LC_UNKNOWN if any
 * finding is, else LC_PASS. findings holds every undecided key and at most LC_MAX_FINDINGS
 * violations (n_violations counts them all). Release with lc_result_fini. */
#define LC_MAX_FINDINGS 16

struct lc_result {
    enum lc_verdict verdict;
    size_t n_keys;       /* keys in the history */
    size_t n_violations; /* lc_check: violated keys; lc_check_revisions: violated pairs */
    size_t n_unknown;    /* keys left undecided */
    uint64_t steps;      /* lc_check: search steps over all keys */
    struct lc_finding *findings;
    size_t n_findings;
};

/* Decide, per key, whether ops[0..n) is linearizable with respect to a register whose initial
 * value is LC_ABSENT. LC_FAIL ops and LC_INFO GETs are left out; LC_INFO PUTs and CASes are
 * optional and have no deadline. lim may be NULL for the defaults. ops is only read and must
 * outlive the printing of out. Returns 0 and fills *out, or -1 with errno: EINVAL if an LC_OK
 * or LC_FAIL op completes before it was invoked or a field is out of range, ENOMEM. On -1,
 * *out holds nothing to release. */
int lc_check(const struct lc_op *ops, size_t n, const struct lc_limits *lim, struct lc_result *out);

/* Check that the revisions in ops[0..n) can be a linearization's order. Rules, on LC_OK ops
 * whose rev is not 0:
 *  1. writes (PUT, swapped CAS) have distinct revisions;
 *  2. a write that completed before another write was invoked has the smaller revision;
 *  3. a GET that completed before another GET of the same key was invoked read a mod_revision
 *     no larger than the later one's (reads do not go back in time);
 *  4. a GET that completed before a write was invoked read a mod_revision smaller than the
 *     write's revision;
 *  5. a write that completed before a GET of the same key was invoked has a revision no larger
 *     than the mod_revision the GET read (GETs that read LC_ABSENT are skipped: a delete).
 * Returns 0 and fills *out, or -1 with errno EINVAL or ENOMEM (then *out holds nothing). */
int lc_check_revisions(const struct lc_op *ops, size_t n, struct lc_result *out);

/* Print a human-readable report of r to f: one line for the verdict, then each finding with
 * its ops (client, kind, values, outcome, times in ns since the first invocation in ops).
 * ops and n must be those r was computed from. */
void lc_result_print(const struct lc_result *r, const struct lc_op *ops, size_t n, FILE *f);

/* Release what lc_check or lc_check_revisions allocated in r; r may then be reused. */
void lc_result_fini(struct lc_result *r);

/* "pass", "violation" or "unknown". */
const char *lc_verdict_name(enum lc_verdict v);

#endif
