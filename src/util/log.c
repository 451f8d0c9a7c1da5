/* log.c - JSON lines on stderr. Owns the process-wide level threshold (set once at start).
 * Must not allocate: it is called on OOM and fatal paths. */
#include "metastore/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_INFO;

void log_set_level(enum log_level lv)
{
    log_threshold = lv;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

bool log_enabled(enum log_level lv)
{
    return lv >= log_threshold && lv < LOG_OFF;
}

/* Append s to out (capacity cap, current *n) JSON-escaped. Truncates silently. */
static void esc_append(char *out, size_t cap, size_t *n, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s && *n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*n)++] = '\\';
            out[(*n)++] = (char)c;
        } else if (c == '\n') {
            out[(*n)++] = '\\';
            out[(*n)++] = 'n';
        } else if (c < 0x20) {
            out[(*n)++] = '\\';
            out[(*n)++] = 'u';
            out[(*n)++] = '0';
            out[(*n)++] = '0';
            out[(*n)++] = hex[c >> 4];
            out[(*n)++] = hex[c & 15];
        } else {
            out[(*n)++] = (char)c;
        }
    }
}

__attribute__((format(printf, 4, 0))) static void log_vwrite(enum log_level lv, const char *file,
                                                             int line, const char *fmt, va_list ap)
{
    char msg[2048];
    char out[4096];
    size_t n = 0;
    struct timespec ts;
    struct tm tm;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    n = (size_t)snprintf(out, sizeof(out),
                         "{\"level\":\"%s\",\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
                         "\"caller\":\"%s:%d\",\"msg\":\"",
                         level_names[lv], tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                         tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, base, line);
    if (n >= sizeof(out))
        n = sizeof(out) - 1;
    esc_append(out, sizeof(out), &n, msg);
    if (n + 3 < sizeof(out)) {
        out[n++] = '"';
        out[n++] = '}';
        out[n++] = '\n';
    }
    /* One write(2) per record so concurrent processes do not interleave lines. */
    ssize_t w = write(STDERR_FILENO, out, n);
    (void)w;
}

void log_write(enum log_level lv, const char *file, int line, const char *fmt, ...)
{
    if (!log_enabled(lv))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lv, file, line, fmt, ap);
    va_end(ap);
}

_Noreturn void ms_assert_fail_(const char *expr, const char *file, int line)
{
    log_write(LOG_ERROR, file, line, "assertion failed: %s", expr);
    abort();
}

_Noreturn void ms_fatal_(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(LOG_ERROR, file, line, fmt, ap);
    va_end(ap);
    abort();
}
