/* metrics.c - histogram bookkeeping and Prometheus text exposition (format 0.0.4). */
#include "metastore/metrics.h"

#include "metastore/buf.h"

#include <math.h>

void metrics_hist_init(struct metrics_hist *h, double start, double factor)
{
    double b = start;
    for (int i = 0; i < METRICS_HIST_BUCKETS; i++) {
        h->bounds[i] = b;
        h->counts[i] = 0;
        b *= factor;
    }
    h->count = 0;
    h->sum = 0;
}

void metrics_hist_observe(struct metrics_hist *h, double value)
{
    for (int i = 0; i < METRICS_HIST_BUCKETS; i++) {
        if (value <= h->bounds[i]) {
            h->counts[i]++;
            break;
        }
    }
    h->count++;
    h->sum += value;
}

void metrics_write_help(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_value(struct buf *b, double v)
{
    if (isinf(v))
        buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == (double)(int64_t)v && fabs(v) < 1e15)
        buf_put_i64(b, (int64_t)v);
    else
        buf_printf(b, "%.17g", v);
}

void metrics_write_sample(struct buf *b, const char *name, const char *labels, double value)
{
    buf_puts(b, name);
    if (labels && *labels)
        buf_printf(b, "{%s}", labels);
    buf_putc(b, ' ');
    write_value(b, value);
    buf_putc(b, '\n');
}

void metrics_write_hist(struct buf *b, const char *name, const char *help,
                        const struct metrics_hist *h)
{
    metrics_write_help(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    buf_printf(b, "%s_sum ", name);
    write_value(b, h->sum);
    buf_printf(b, "\n%s_count %llu\n", name, (unsigned long long)h->count);
}
