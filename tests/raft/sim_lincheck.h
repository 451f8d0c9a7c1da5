/* sim_lincheck.h - linearizability checker for a history of register operations.
 *
 * The model is one register per key holding a u64 (0 = never written) with put, get and
 * compare-and-swap. The history is split per key (P-compositionality) and each key's history is
 * searched with the Wing-Gong algorithm plus Lowe's memoisation of (linearized set, state), as
 * Porcupine does. An operation whose outcome is unknown (the client timed out) has no return
 * time: it may take effect at any point after its invocation, or never.
 */
#ifndef SIM_LINCHECK_H
#define SIM_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LC_NEVER UINT64_MAX /* return time of an operation with unknown outcome */

enum lc_kind { LC_PUT, LC_GET, LC_CAS };

struct lc_op {
    enum lc_kind kind;
    uint32_t key;
    uint64_t arg;    /* value written (put, cas) */
    uint64_t expect; /* cas: expected current value */
    uint64_t call;   /* invocation time */
    uint64_t ret;    /* return time, LC_NEVER if unknown */
    bool unknown;    /* outcome unknown (then ret is LC_NEVER) */
    uint64_t out;    /* get: value read; cas: 1 if swapped */
};

enum lc_result { LC_OK = 0, LC_VIOLATION = 1, LC_GAVE_UP = 2 };

/* Check ops[0..n). On LC_VIOLATION *bad_key names the key whose history has no linearization.
 * max_steps bounds the search per key (LC_GAVE_UP when exhausted). Failed operations (known not
 * to have happened) and reads with unknown outcome must be left out by the caller. */
enum lc_result lc_check(const struct lc_op *ops, size_t n, uint64_t max_steps, uint32_t *bad_key);

#endif
