/* metrics.h - counters and histograms rendered as Prometheus text (GET /metrics), with etcd's
 * metric names where the meaning is the same so existing dashboards work.
 *
 * Histograms use fixed bucket bounds (etcd's: exponential from 1 ms, factor 2, 14 buckets for
 * disk latencies). Everything is plain data owned by whoever embeds it; no global registry.
 */
#ifndef METASTORE_METRICS_H
#define METASTORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;

#define METRICS_HIST_BUCKETS 14

struct metrics_hist {
    double bounds[METRICS_HIST_BUCKETS]; /* upper bounds, ascending */
    uint64_t counts[METRICS_HIST_BUCKETS];
    uint64_t count;
    double sum;
};

/* Buckets start, start*factor, ... (METRICS_HIST_BUCKETS of them). */
void metrics_hist_init(struct metrics_hist *h, double start, double factor);
void metrics_hist_observe(struct metrics_hist *h, double value);

/* Prometheus text. labels may be NULL or like `type="put"` (without braces). */
void metrics_write_help(struct buf *b, const char *name, const char *type, const char *help);
void metrics_write_sample(struct buf *b, const char *name, const char *labels, double value);
void metrics_write_hist(struct buf *b, const char *name, const char *help,
                        const struct metrics_hist *h);

#endif
