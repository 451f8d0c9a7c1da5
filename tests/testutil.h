/* testutil.h - helpers shared by the test suites (never linked into the server). */
#ifndef METASTORE_TESTUTIL_H
#define METASTORE_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Run one suite with Check's runner; returns the process exit code. */
int tu_run_suite(Suite *s);

/* A fresh temporary directory under $TMPDIR (or /tmp); caller frees the string and may
 * remove the tree with tu_rmtree. */
char *tu_mkdtemp(const char *prefix);
void tu_rmtree(const char *path);

/* Compare a byte string with a C string. */
int tu_bytes_eq(const uint8_t *p, size_t n, const char *s);

#endif
