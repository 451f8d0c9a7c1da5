/* log.h - structured JSON logs on stderr.
 *
 * One line per record: {"level":"info","ts":"2026-01-02T03:04:05.678Z","caller":"srv.c:12",
 * "msg":"..."}. The level threshold is process-wide and set once at start (log_set_level);
 * it is the one piece of global state outside main.c, as etcd's zap logger is.
 */
#ifndef METASTORE_LOG_H
#define METASTORE_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

/* Set the threshold. Records below it are dropped. */
void log_set_level(enum log_level lv);

/* Parse "debug" | "info" | "warn" | "error" (etcd's --log-level values). Returns false on
 * anything else and leaves *out alone. */
bool log_level_parse(const char *s, enum log_level *out);

/* True if a record at lv would be written. */
bool log_enabled(enum log_level lv);

/* Write one record. fmt is printf-style; the result is JSON-escaped into "msg". */
void log_write(enum log_level lv, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_write(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

/* Invariant check, always compiled in (Redis serverAssert). Logs and aborts. */
#define MS_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ms_assert_fail_(#cond, __FILE__, __LINE__);                                            \
    } while (0)

_Noreturn void ms_assert_fail_(const char *expr, const char *file, int line);

/* Log and abort: for failed WAL/fsync writes and other states we must not continue from. */
_Noreturn void ms_fatal_(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define ms_fatal(...) ms_fatal_(__FILE__, __LINE__, __VA_ARGS__)

#endif
